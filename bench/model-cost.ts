/**
 * What each benchmarked step must at least do, from the config alone: floating-point operations
 * (a multiply-add is 2) and weight bytes read, so that a time can be put next to the machine's
 * FMA peak or read bandwidth.
 */
import type { Qwen3VLConfig } from '../src/model/config.ts';

/** Multiply-adds ×2 of the text decoder's projections for one token (no head, no attention). */
export function textLinearFlops(cfg: Qwen3VLConfig): number {
  const t = cfg.text;
  const q = t.numHeads * t.headDim;
  const kv = t.numKvHeads * t.headDim;
  const perLayer = t.hiddenSize * (q + 2 * kv) + q * t.hiddenSize + 3 * t.hiddenSize * t.intermediateSize;
  return 2 * t.numLayers * perLayer;
}

/** Attention score and mix flops of a causal prefill of `n` tokens after `past` cached ones. */
export function textAttentionFlops(cfg: Qwen3VLConfig, n: number, past = 0): number {
  const t = cfg.text;
  let pairs = 0;
  for (let i = 0; i < n; i++) pairs += past + i + 1;
  return 4 * t.numLayers * t.numHeads * t.headDim * pairs;
}

export function headFlops(cfg: Qwen3VLConfig): number {
  return 2 * cfg.text.vocabSize * cfg.text.hiddenSize;
}

/** Prefill of `n` tokens: projections, attention, and the head for the last token only. */
export function prefillFlops(cfg: Qwen3VLConfig, n: number): number {
  return n * textLinearFlops(cfg) + textAttentionFlops(cfg, n) + headFlops(cfg);
}

/** The vision tower on one image of `patches` patches (one attention segment). */
export function visionFlops(cfg: Qwen3VLConfig, patches: number): number {
  const v = cfg.vision;
  const D = v.hiddenSize;
  const rowWidth = v.inChannels * v.temporalPatchSize * v.patchSize * v.patchSize;
  const block = 2 * patches * (3 * D * D + D * D + 2 * D * v.intermediateSize) + 4 * patches * patches * D;
  const M = D * v.spatialMergeSize ** 2;
  const tokens = patches / v.spatialMergeSize ** 2;
  const merger = 2 * tokens * (M * M + M * v.outHiddenSize);
  return 2 * patches * rowWidth * D + v.depth * block + (1 + v.deepstackVisualIndexes.length) * merger;
}
