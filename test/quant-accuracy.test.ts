/**
 * Load-time quantization (`Qwen3VL.fromPretrained(dir, { quant })`) against transformers' float32
 * logits of the tiny fixtures. The tiny model has random weights: its top-1 logit is ~18 with a
 * top-2 gap under 0.1 at ~9% of positions, so a logit error of a few hundredths (q8 moves the
 * top logits by up to ~0.35, 2%) flips those near-ties. The thresholds below are what RTN
 * quantization achieves on it (docs/quantization.md lists the numbers); real checkpoints with
 * trained, well-separated logits agree far more often.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import { isQvlError } from '../src/errors.ts';
import { readF32, readInts } from '../src/weights/tensor-reader.ts';
import { TINY, argmax, cosine, loadCase } from './quant-util.ts';

const CASES = ['case_b_image', 'case_c_two_images'];

interface Stats {
  positions: number;
  top1: number;
  /** HF top-2 gaps at the positions whose greedy token changed */
  flipGaps: number[];
  selCosMin: number;
  selCosMean: number;
  fullCosMin: number;
}

async function measure(quant: 'q8' | 'q4'): Promise<{ stats: Stats; model: Qwen3VL }> {
  const model = await Qwen3VL.fromPretrained(TINY, { backend: 'ts', quant });
  const V = model.model.cfg.text.vocabSize;
  const s: Stats = { positions: 0, top1: 0, flipGaps: [], selCosMin: 1, selCosMean: 0, fullCosMin: 1 };
  for (const name of CASES) {
    const { inputs, file } = loadCase(name);
    const L = inputs.ids.length;
    const logits = model.model.prefill(inputs, model.model.newCache({ type: 'f32' }), { allLogits: true }).logits;
    const topIds = readInts(file, 'logits_top16_ids');
    const topVals = readF32(file, 'logits_top16_vals');
    const selIds = readInts(file, 'logits_sel_ids');
    const sel = readF32(file, 'logits_sel');
    const full = readF32(file, 'logits_last1');
    for (let p = 0; p < L; p++) {
      s.positions++;
      if (argmax(logits, p * V, (p + 1) * V) === topIds[p * 16]) s.top1++;
      else s.flipGaps.push(topVals[p * 16] - topVals[p * 16 + 1]);
      const c = cosine(
        Array.from(selIds, (id) => logits[p * V + id]),
        sel.subarray(p * selIds.length, (p + 1) * selIds.length),
      );
      s.selCosMin = Math.min(s.selCosMin, c);
      s.selCosMean += c;
    }
    s.fullCosMin = Math.min(s.fullCosMin, cosine(logits.subarray((L - 1) * V, L * V), full));
  }
  s.selCosMean /= s.positions;
  const gap = s.flipGaps.length ? Math.max(...s.flipGaps).toFixed(3) : '-';
  console.log(
    `${quant}: top-1 agreement ${s.top1}/${s.positions} (${((100 * s.top1) / s.positions).toFixed(1)}%, largest flipped top-2 gap ${gap}), ` +
      `logit cosine min ${s.selCosMin.toFixed(5)} mean ${s.selCosMean.toFixed(5)} (512 ids/position), full-vocab last position min ${s.fullCosMin.toFixed(5)}`,
  );
  return { stats: s, model };
}

test('q8 at load: weights are q8 (embedding / head float), logits cosine ≥ 0.999, greedy token kept except at near-ties', async () => {
  const { stats: s, model } = await measure('q8');
  const w = model.model.weights;
  assert.equal(w.text.layers[0].gate.format, 'q8');
  assert.equal(w.text.embed.format, 'bf16', 'the embedding / tied head stays as the checkpoint has it');
  assert.equal(w.text.lmHead, w.text.embed, 'the tied head is the embedding');
  assert.equal(w.vision.blocks[0].fc1.w.format, 'q8');
  assert.equal(w.vision.patchEmbed.w.format, 'bf16', 'patch embedding stays float');
  assert.ok(s.selCosMin >= 0.999, `min cosine ${s.selCosMin}`);
  assert.ok(s.fullCosMin >= 0.999, `full-vocab cosine ${s.fullCosMin}`);
  assert.ok(s.top1 / s.positions >= 0.95, `top-1 agreement ${s.top1}/${s.positions}`);
  for (const g of s.flipGaps) assert.ok(g < 0.25, `greedy token changed where the float model's top-2 gap is ${g}`);
});

test('q4 at load: text decoder q4 (group 32, zero points), the rest q8; logits stay close', async () => {
  const { stats: s, model } = await measure('q4');
  const w = model.model.weights;
  assert.equal(w.text.layers[2].down.format, 'q4');
  assert.equal(w.text.embed.format, 'q8');
  assert.equal(w.vision.deepstack[0].fc2.w.format, 'q8');
  assert.ok(s.selCosMean >= 0.96, `mean cosine ${s.selCosMean}`);
  assert.ok(s.selCosMin >= 0.9, `min cosine ${s.selCosMin}`);
  assert.ok(s.fullCosMin >= 0.95, `full-vocab cosine ${s.fullCosMin}`);
  assert.ok(s.top1 / s.positions >= 0.55, `top-1 agreement ${s.top1}/${s.positions}`);
});

test('fromPretrained refuses quant together with convert, and an unknown quant', async () => {
  await assert.rejects(
    () => Qwen3VL.fromPretrained(TINY, { backend: 'ts', quant: 'q8', convert: (w) => w }),
    (e) => isQvlError(e, 'OPTION_INVALID') && e.message.includes('not both'),
  );
  await assert.rejects(
    () => Qwen3VL.fromPretrained(TINY, { backend: 'ts', quant: 'int4' as 'q4' }),
    (e) => isQvlError(e, 'OPTION_INVALID') && e.message.includes('"int4"'),
  );
});
