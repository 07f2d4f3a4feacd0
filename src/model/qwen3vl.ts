import { QvlError } from '../errors.ts';
import type { Backend } from '../kernels/backend.ts';
import type { Qwen3VLConfig } from './config.ts';
import { DEFAULT_KV_BLOCK_TOKENS, DEFAULT_KV_TYPE, KvLayout, type KvType } from '../kernels/kv.ts';
import { KVCache } from './kv-cache.ts';
import { KvPool } from './kv-pool.ts';
import { ropeIndex, type Grid, type RopePositions } from './rope-index.ts';
import { TextModel, type DeepstackInjection } from './text.ts';
import type { Trace } from './trace.ts';
import { VisionTower, type VisionOutput } from './vision.ts';
import type { ModelWeights } from './weights.ts';
import { concatF32 } from '../util/concat.ts';

/** One prompt's token ids and its preprocessed media. */
export interface ModelInputs {
  ids: ArrayLike<number>;
  /** [Σ patches, 1536] for all images, in prompt order */
  pixelValues?: Float32Array;
  imageGrids?: Grid[];
  pixelValuesVideos?: Float32Array;
  videoGrids?: Grid[];
}

/**
 * Long prompts run in chunks of this many tokens: the activations of a chunk (the MLP's 3 × tokens ×
 * intermediate floats dominate) then stay around 0.1 GB for a 4B model instead of growing with the
 * prompt, and the matmuls are as efficient at 512 rows as at 2048.
 */
export const DEFAULT_PREFILL_CHUNK = 512;

export interface PrefillOptions {
  /** tokens per forward chunk; default DEFAULT_PREFILL_CHUNK (all at once when tracing) */
  chunkSize?: number;
  /** return logits for every prompt position instead of the last only */
  allLogits?: boolean;
  trace?: Trace;
  /** vision features computed earlier for these same media (skips the vision tower) */
  vision?: { image?: VisionOutput; video?: VisionOutput };
}

export interface PrefillResult {
  positions: RopePositions;
  /** [rows, vocab]: the last position, or all of them with allLogits */
  logits: Float32Array;
  vision: { image?: VisionOutput; video?: VisionOutput };
}

/** A prefill in steps (see `Qwen3VLModel.prefillRun`). */
export type PrefillRun = Generator<void, PrefillResult, void>;

/** How the KV cache is stored: its type, block size and the pool's budget per type. */
export interface KvOptions {
  /** default 'bf16' */
  type?: KvType;
  /** tokens per block (default 256) */
  blockTokens?: number;
  /** most bytes each pool may allocate (default: no limit) */
  maxBytes?: number;
  /** prompt + answer tokens of one sequence (default: max_position_embeddings) */
  context?: number;
}

/** Qwen3-VL: vision tower, embedding merge with DeepStack, text decoder, logits. */
export class Qwen3VLModel {
  readonly vision: VisionTower;
  readonly text: TextModel;

  readonly kvOptions: Required<Pick<KvOptions, 'type' | 'blockTokens'>> & { maxBytes?: number };
  /** prompt + answer tokens one sequence may hold */
  readonly contextLength: number;
  private readonly pools = new Map<KvType, KvPool>();

  constructor(
    readonly cfg: Qwen3VLConfig,
    readonly weights: ModelWeights,
    readonly backend: Backend,
    kv: KvOptions = {},
  ) {
    this.kvOptions = { type: kv.type ?? DEFAULT_KV_TYPE, blockTokens: kv.blockTokens ?? DEFAULT_KV_BLOCK_TOKENS, maxBytes: kv.maxBytes };
    this.contextLength = Math.min(kv.context ?? cfg.text.maxPositionEmbeddings, cfg.text.maxPositionEmbeddings);
    this.vision = new VisionTower(cfg.vision, weights.vision, backend);
    this.text = new TextModel(cfg.text, weights.text, backend);
  }

  /** The pool of KV blocks of one cache type (made on first use; every sequence of that type shares it). */
  kvPool(type: KvType = this.kvOptions.type): KvPool {
    let pool = this.pools.get(type);
    if (!pool) {
      const t = this.cfg.text;
      pool = new KvPool(new KvLayout(type, t.numLayers, t.numKvHeads, t.headDim, this.kvOptions.blockTokens), { maxBytes: this.kvOptions.maxBytes });
      this.pools.set(type, pool);
    }
    return pool;
  }

  /** An empty KV cache (the model's KV type unless `type` says otherwise); `release()` it when done. */
  newCache(opts: { type?: KvType } = {}): KVCache {
    return new KVCache(this.kvPool(opts.type));
  }

  /** Positions and rope delta for a prompt (HF get_rope_index). */
  positions(inputs: ModelInputs): RopePositions {
    return ropeIndex(inputs.ids, inputs.imageGrids ?? [], inputs.videoGrids ?? [], this.cfg, this.cfg.vision.spatialMergeSize);
  }

  /** Encodes the media of `inputs` (exposed so callers can cache vision features). */
  encodeMedia(inputs: ModelInputs, trace?: Trace): { image?: VisionOutput; video?: VisionOutput } {
    const out: { image?: VisionOutput; video?: VisionOutput } = {};
    if (inputs.imageGrids?.length) {
      if (!inputs.pixelValues) throw new QvlError('TOKEN_COUNT_MISMATCH', 'image grids were given without pixel values', {});
      out.image = this.vision.forward(inputs.pixelValues, inputs.imageGrids, prefixTrace(trace, 'image'));
    }
    if (inputs.videoGrids?.length) {
      if (!inputs.pixelValuesVideos) throw new QvlError('TOKEN_COUNT_MISMATCH', 'video grids were given without pixel values', {});
      out.video = this.vision.forward(inputs.pixelValuesVideos, inputs.videoGrids, prefixTrace(trace, 'video'));
    }
    return out;
  }

  /** Runs the prompt into an empty `cache` and returns logits. */
  prefill(inputs: ModelInputs, cache: KVCache, opts: PrefillOptions = {}): PrefillResult {
    const run = this.prefillRun(inputs, cache, opts);
    for (;;) {
      const r = run.next();
      if (r.done) return r.value;
    }
  }

  /**
   * `prefill` in steps: the vision tower, then each chunk of the prompt, pausing after each (so
   * that a scheduler can decode other sequences in between); returns what `prefill` returns.
   */
  *prefillRun(inputs: ModelInputs, cache: KVCache, opts: PrefillOptions = {}): PrefillRun {
    if (cache.length !== 0) throw new QvlError('INTERNAL', 'prefill needs an empty KV cache', {});
    const { cfg } = this;
    const ids = inputs.ids;
    const L = ids.length;
    if (L === 0) throw new QvlError('MESSAGE_INVALID', 'the prompt is empty', {});
    const positions = this.positions(inputs);
    const vision = opts.vision ?? this.encodeMedia(inputs, opts.trace);
    if (vision.image || vision.video) yield;

    const H = cfg.text.hiddenSize;
    const embeds = this.text.embed(ids);
    const visRows: number[] = [];
    const imgRows: number[] = [];
    const vidRows: number[] = [];
    for (let i = 0; i < L; i++) {
      if (ids[i] === cfg.imageTokenId) {
        imgRows.push(i);
        visRows.push(i);
      } else if (ids[i] === cfg.videoTokenId) {
        vidRows.push(i);
        visRows.push(i);
      }
    }
    checkCount('image', imgRows.length, vision.image?.tokens ?? 0);
    checkCount('video', vidRows.length, vision.video?.tokens ?? 0);
    scatterRows(embeds, H, imgRows, vision.image?.embeds);
    scatterRows(embeds, H, vidRows, vision.video?.embeds);

    // DeepStack features in sequence order: each visual position takes the next row of its kind.
    const taps = cfg.vision.deepstackVisualIndexes.length;
    const features: Float32Array[] = [];
    if (visRows.length > 0) {
      for (let k = 0; k < taps; k++) {
        const f = new Float32Array(visRows.length * H);
        let ii = 0;
        let vi = 0;
        visRows.forEach((row, r) => {
          const src = ids[row] === cfg.imageTokenId ? vision.image!.deepstack[k].subarray(ii++ * H, ii * H) : vision.video!.deepstack[k].subarray(vi++ * H, vi * H);
          f.set(src, r * H);
        });
        features.push(f);
      }
    }

    const chunk = Math.max(1, opts.chunkSize ?? (opts.trace ? L : Math.min(L, DEFAULT_PREFILL_CHUNK)));
    const logitRows: Float32Array[] = [];
    for (let s = 0; s < L; s += chunk) {
      const e = Math.min(L, s + chunk);
      const n = e - s;
      let ds: DeepstackInjection | undefined;
      if (features.length) {
        const lo = lowerBound(visRows, s);
        const hi = lowerBound(visRows, e);
        if (hi > lo) {
          ds = {
            rows: Int32Array.from(visRows.slice(lo, hi), (r) => r - s),
            features: features.map((f) => f.subarray(lo * H, hi * H)),
          };
        }
      }
      const hidden = this.text.forward(
        embeds.subarray(s * H, e * H),
        n,
        { t: positions.t.subarray(s, e), h: positions.h.subarray(s, e), w: positions.w.subarray(s, e) },
        cache,
        ds,
        chunk === L ? opts.trace : undefined,
      );
      if (opts.allLogits) logitRows.push(this.text.logits(hidden, n));
      else if (e === L) logitRows.push(this.text.logits(hidden.subarray((n - 1) * H), 1));
      if (e < L) yield;
    }
    return { positions, logits: concatF32(logitRows), vision };
  }

  /** One generated token at the next cache slot; positions continue at cache index + delta. */
  decode(id: number, cache: KVCache, delta: number): Float32Array {
    const p = cache.length + delta;
    const one = [p];
    const x = this.text.embed([id]);
    const hidden = this.text.forward(x, 1, { t: one, h: one, w: one }, cache);
    return this.text.logits(hidden, 1);
  }

  /**
   * One generated token for each of several sequences in one pass over the weights: token ids[i]
   * continues caches[i] (rope delta deltas[i]). Returns logits [n, vocab], row i for sequence i.
   */
  decodeBatch(ids: readonly number[], caches: readonly KVCache[], deltas: readonly number[]): Float32Array {
    const n = ids.length;
    if (caches.length !== n || deltas.length !== n) {
      throw new QvlError('INTERNAL', `decodeBatch: ${n} ids, ${caches.length} caches and ${deltas.length} deltas must match`, {});
    }
    if (new Set(caches).size !== n) throw new QvlError('INTERNAL', 'decodeBatch: a cache appears twice in one batch', {});
    if (n === 1) return this.decode(ids[0], caches[0], deltas[0]);
    const p = caches.map((c, i) => c.length + deltas[i]);
    const hidden = this.text.forwardBatch(this.text.embed(ids), { t: p, h: p, w: p }, caches);
    return this.text.logits(hidden, n);
  }
}

function checkCount(kind: string, pads: number, tokens: number): void {
  if (pads !== tokens) {
    throw new QvlError(
      'TOKEN_COUNT_MISMATCH',
      `the prompt has ${pads} ${kind} pad tokens but the ${kind} features have ${tokens} rows; they must match exactly`,
      { kind, pads, features: tokens },
    );
  }
}

function scatterRows(dst: Float32Array, width: number, rows: number[], src?: Float32Array): void {
  if (!src) return;
  rows.forEach((row, r) => dst.set(src.subarray(r * width, (r + 1) * width), row * width));
}

function lowerBound(a: number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}


function prefixTrace(trace: Trace | undefined, kind: string): Trace | undefined {
  return trace && ((stage, data, shape) => trace(stage.replace(/^vision\./, `${kind}.`), data, shape));
}
