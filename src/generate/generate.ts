import { QvlError } from '../errors.ts';
import type { KVCache } from '../model/kv-cache.ts';
import type { ModelInputs, PrefillOptions, Qwen3VLModel } from '../model/qwen3vl.ts';
import { resolveLimits } from './limits.ts';
import { Sampler, type SamplingOptions } from './sampler.ts';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** generation ends (without emitting it) at any of these ids */
  eosTokenIds: readonly number[];
  /** masks or edits the logits before sampling (constrained decoding); `generated` so far */
  logitsProcessor?: (logits: Float32Array, generated: readonly number[]) => void;
  /** cap on prompt + generated tokens (the model's context) */
  maxContext?: number;
  prefill?: PrefillOptions;
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length';

export interface GenerateResult {
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  /** prompt tokens whose KV was reused from earlier requests (prefix cache) */
  cachedTokens?: number;
  /** wall time of prefill and of decoding, in ms */
  prefillMs: number;
  decodeMs: number;
}

/**
 * The decoding loop: prefill once, then one token per step with the KV cache; positions
 * continue at cache index + rope delta. Yields each generated id as soon as it is chosen (EOS
 * is not yielded); the caller may stop early by breaking out.
 */
export function* generateTokens(
  model: Qwen3VLModel,
  inputs: ModelInputs,
  opts: GenerateOptions,
  cache?: KVCache,
): Generator<number, GenerateResult, void> {
  // a cache made here is returned to the pool when generation ends, however it ends
  const own = cache ? null : model.newCache();
  try {
    return yield* decodeLoop(model, inputs, opts, cache ?? own!);
  } finally {
    own?.release();
  }
}

function* decodeLoop(model: Qwen3VLModel, inputs: ModelInputs, opts: GenerateOptions, cache: KVCache): Generator<number, GenerateResult, void> {
  const L = inputs.ids.length;
  const budget = resolveLimits(L, opts, model.contextLength).maxNewTokens;
  const sampler = new Sampler(opts, inputs.ids, model.backend);
  const eos = new Set(opts.eosTokenIds);
  const tokens: number[] = [];
  const t0 = performance.now();
  checkAbort(opts.signal);
  const pre = model.prefill(inputs, cache, opts.prefill);
  const prefillMs = performance.now() - t0;
  let logits = pre.logits;
  // one array for every step's logits: a fresh one would be faulted in page by page each step
  let stepLogits: Float32Array | undefined;
  let finishReason: FinishReason = 'length';
  const t1 = performance.now();
  for (let step = 0; step < budget; step++) {
    checkAbort(opts.signal);
    opts.logitsProcessor?.(logits, tokens);
    const id = sampler.pick(logits);
    if (eos.has(id)) {
      finishReason = 'stop';
      break;
    }
    sampler.accept(id);
    tokens.push(id);
    yield id;
    if (step + 1 < budget) logits = stepLogits = model.decode(id, cache, pre.positions.delta, stepLogits);
  }
  return { tokens, finishReason, promptTokens: L, prefillMs, decodeMs: performance.now() - t1 };
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new QvlError('ABORTED', 'generation was cancelled', {});
}
