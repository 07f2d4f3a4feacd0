import { QvlError } from '../errors.ts';
import type { Backend } from '../kernels/backend.ts';
import type { Qwen3VLConfig } from './config.ts';
import { DEFAULT_KV_BLOCK_TOKENS, DEFAULT_KV_TYPE, KvLayout, type KvType } from '../kernels/kv.ts';
import { KVCache } from './kv-cache.ts';
import { KvPool } from './kv-pool.ts';
import { ropeIndex, type Grid, type RopePositions } from './rope-index.ts';
import { TextModel, type DeepstackInjection, type TextPositions } from './text.ts';
import type { Trace } from './trace.ts';
import { VisionTower, type VisionOutput } from './vision.ts';
import { VisionCache, mediaKey } from './vision-cache.ts';
import { PrefixCache, positionIdentities, type MediaSpan } from './prefix-cache.ts';
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
  /**
   * between decoder layers hold only the rows the next layer reads, handing the rest of the layer
   * scratch back (for many runs held paused side by side: calibration)
   */
  lean?: boolean;
}

export interface PrefillResult {
  positions: RopePositions;
  /** [rows, vocab]: the last position, or all of them with allLogits */
  logits: Float32Array;
  vision: { image?: VisionOutput; video?: VisionOutput };
}

/** One sequence's rows in a batched pass (`Qwen3VLModel.forwardRows`): token ids, the cache they continue, their positions. */
export interface BatchRows {
  ids: ArrayLike<number>;
  cache: KVCache;
  positions: TextPositions;
}

/** A prefill in steps (see `Qwen3VLModel.prefillRun`); `next(true)` after a decoder layer runs that layer again (`TextModel.forwardSteps`). */
export type PrefillRun = Generator<void, PrefillResult, boolean | undefined>;

/** How the KV cache is stored: its type, block size and the pool's budget per type. */
export interface KvOptions {
  /** default 'f16' (DEFAULT_KV_TYPE) */
  type?: KvType;
  /** tokens per block (default 256) */
  blockTokens?: number;
  /** most bytes each pool may allocate (default: no limit) */
  maxBytes?: number;
  /** prompt + answer tokens of one sequence (default: max_position_embeddings) */
  context?: number;
}

/** Reuse across requests (both off by default). */
export interface ReuseOptions {
  /** bytes of KV blocks kept for prompts that start the same way (prefix cache); 0: off */
  prefixCacheBytes?: number;
  /** bytes of vision-tower outputs kept per picture or video; 0: off */
  visionCacheBytes?: number;
}

/** Qwen3-VL: vision tower, embedding merge with DeepStack, text decoder, logits. */
export class Qwen3VLModel {
  readonly vision: VisionTower;
  readonly text: TextModel;

  readonly kvOptions: Required<Pick<KvOptions, 'type' | 'blockTokens'>> & { maxBytes?: number };
  /** prompt + answer tokens one sequence may hold */
  readonly contextLength: number;
  /** by KV type, and by block size and layers where they are not the model's */
  private readonly pools = new Map<string, KvPool>();
  /** prompt prefixes' KV blocks (the model's KV type), when enabled */
  readonly prefixCache?: PrefixCache;
  /** vision-tower outputs by content, when enabled */
  readonly visionCache?: VisionCache;
  private readonly keys = new WeakMap<ModelInputs, { image: string[]; video: string[] }>();

  constructor(
    readonly cfg: Qwen3VLConfig,
    readonly weights: ModelWeights,
    readonly backend: Backend,
    kv: KvOptions = {},
    reuse: ReuseOptions = {},
  ) {
    this.kvOptions = { type: kv.type ?? DEFAULT_KV_TYPE, blockTokens: kv.blockTokens ?? DEFAULT_KV_BLOCK_TOKENS, maxBytes: kv.maxBytes };
    this.contextLength = Math.min(kv.context ?? cfg.text.maxPositionEmbeddings, cfg.text.maxPositionEmbeddings);
    this.vision = new VisionTower(cfg.vision, weights.vision, backend);
    this.text = new TextModel(cfg.text, weights.text, backend);
    if (reuse.prefixCacheBytes) this.prefixCache = new PrefixCache(this.kvPool(), reuse.prefixCacheBytes);
    if (reuse.visionCacheBytes) this.visionCache = new VisionCache(reuse.visionCacheBytes);
  }

  /** Content hashes of the prompt's images and videos, in order (computed once per inputs object). */
  mediaKeys(inputs: ModelInputs): { image: string[]; video: string[] } {
    let k = this.keys.get(inputs);
    if (!k) {
      const keysOf = (kind: 'image' | 'video', pixels: Float32Array | undefined, grids: Grid[] = []) => {
        let off = 0;
        return grids.map((g) => {
          const n = g[0] * g[1] * g[2] * this.patchWidth;
          const key = mediaKey(kind, g, pixels!.subarray(off, off + n));
          off += n;
          return key;
        });
      };
      k = { image: keysOf('image', inputs.pixelValues, inputs.imageGrids), video: keysOf('video', inputs.pixelValuesVideos, inputs.videoGrids) };
      this.keys.set(inputs, k);
    }
    return k;
  }

  /** Values per vision patch row (channels × temporal patch × patch²). */
  private get patchWidth(): number {
    const v = this.cfg.vision;
    return v.inChannels * v.temporalPatchSize * v.patchSize * v.patchSize;
  }

  /** LLM tokens of one media item. */
  private itemTokens(g: Grid): number {
    const m = this.cfg.vision.spatialMergeSize;
    return (g[0] * g[1] * g[2]) / (m * m);
  }

  /**
   * The prompt's runs of vision pad tokens with their media's content hash (what the prefix cache
   * keys vision positions by): each image's or video's pads, in order, split where text interrupts them.
   */
  mediaSpans(inputs: ModelInputs): MediaSpan[] {
    const { cfg } = this;
    const keys = this.mediaKeys(inputs);
    const spans: MediaSpan[] = [];
    const cursor = { image: { item: 0, used: 0 }, video: { item: 0, used: 0 } };
    const grids = { image: inputs.imageGrids ?? [], video: inputs.videoGrids ?? [] };
    let last: MediaSpan | undefined;
    for (let i = 0; i < inputs.ids.length; i++) {
      const kind = inputs.ids[i] === cfg.imageTokenId ? 'image' : inputs.ids[i] === cfg.videoTokenId ? 'video' : undefined;
      if (!kind) {
        last = undefined;
        continue;
      }
      const c = cursor[kind];
      const key = keys[kind][c.item];
      if (key === undefined) return spans; // more pads than media: prefill refuses this prompt
      if (last && last.key === key && last.start + last.length === i) last.length++;
      else spans.push((last = { start: i, length: 1, key: `${key}#${c.used}` }));
      if (++c.used === this.itemTokens(grids[kind][c.item])) {
        c.item++;
        c.used = 0;
        last = undefined;
      }
    }
    return spans;
  }

  /** What the prefix cache matches positions by (`ids`: a prompt, then what was generated after it). */
  prefixIdentities(inputs: ModelInputs, ids: ArrayLike<number> = inputs.ids, length = ids.length): Int32Array {
    return positionIdentities(ids, this.mediaSpans(inputs), length);
  }

  /**
   * The pool of KV blocks of one cache type (made on first use; every sequence of that type
   * shares it). A block size other than the model's, or blocks of one layer (`oneLayer`: for
   * layer windows), make pools of their own, each within the same budget.
   */
  kvPool(type: KvType = this.kvOptions.type, opts: { blockTokens?: number; oneLayer?: boolean } = {}): KvPool {
    const blockTokens = opts.blockTokens ?? this.kvOptions.blockTokens;
    if (!Number.isInteger(blockTokens) || blockTokens < 1) {
      throw new QvlError('OPTION_INVALID', `blockTokens must be a positive integer, got ${blockTokens}`, { blockTokens });
    }
    const t = this.cfg.text;
    const layers = opts.oneLayer ? 1 : t.numLayers;
    const key = blockTokens === this.kvOptions.blockTokens && !opts.oneLayer ? type : `${type}/${blockTokens}/${layers}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new KvPool(new KvLayout(type, layers, t.numKvHeads, t.headDim, blockTokens), {
        maxBytes: this.kvOptions.maxBytes,
        allocSlab: this.backend.allocPages?.bind(this.backend),
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /**
   * An empty KV cache (the model's KV type and block size unless `opts` says otherwise);
   * `release()` it when done. Smaller blocks waste less on many short sequences held at once;
   * `layerWindow` keeps one decoder layer's rows at a time (KVCache), for a pass that never goes
   * back to an earlier layer.
   */
  newCache(opts: { type?: KvType; blockTokens?: number; layerWindow?: boolean } = {}): KVCache {
    const pool = this.kvPool(opts.type, { blockTokens: opts.blockTokens, oneLayer: opts.layerWindow });
    return new KVCache(pool, opts.layerWindow ? { layers: this.cfg.text.numLayers } : {});
  }

  /** Positions and rope delta for a prompt (HF get_rope_index). */
  positions(inputs: ModelInputs): RopePositions {
    return ropeIndex(inputs.ids, inputs.imageGrids ?? [], inputs.videoGrids ?? [], this.cfg, this.cfg.vision.spatialMergeSize);
  }

  /**
   * Encodes the media of `inputs` (exposed so callers can cache vision features). `needed(kind, i)`
   * false skips an item (its rows stay zero: a reused prefix already holds it); with a vision
   * cache, items seen before are not encoded again.
   */
  encodeMedia(inputs: ModelInputs, trace?: Trace, needed?: (kind: 'image' | 'video', index: number) => boolean): { image?: VisionOutput; video?: VisionOutput } {
    const run = this.encodeMediaSteps(inputs, trace, needed);
    for (;;) {
      const r = run.next();
      if (r.done) return r.value;
    }
  }

  /** `encodeMedia`, pausing after each vision block. */
  *encodeMediaSteps(
    inputs: ModelInputs,
    trace?: Trace,
    needed?: (kind: 'image' | 'video', index: number) => boolean,
  ): Generator<void, { image?: VisionOutput; video?: VisionOutput }, unknown> {
    const out: { image?: VisionOutput; video?: VisionOutput } = {};
    if (inputs.imageGrids?.length) {
      if (!inputs.pixelValues) throw new QvlError('TOKEN_COUNT_MISMATCH', 'image grids were given without pixel values', {});
      out.image = yield* this.encodeKind('image', inputs, inputs.pixelValues, inputs.imageGrids, trace, needed);
    }
    if (inputs.videoGrids?.length) {
      if (!inputs.pixelValuesVideos) throw new QvlError('TOKEN_COUNT_MISMATCH', 'video grids were given without pixel values', {});
      out.video = yield* this.encodeKind('video', inputs, inputs.pixelValuesVideos, inputs.videoGrids, trace, needed);
    }
    return out;
  }

  private *encodeKind(
    kind: 'image' | 'video',
    inputs: ModelInputs,
    pixels: Float32Array,
    grids: Grid[],
    trace?: Trace,
    needed?: (kind: 'image' | 'video', index: number) => boolean,
  ): Generator<void, VisionOutput, unknown> {
    const cache = this.visionCache;
    if (!cache && !needed) return yield* this.vision.forwardSteps(pixels, grids, prefixTrace(trace, kind));
    const W = this.patchWidth;
    const H = this.cfg.text.hiddenSize;
    const taps = this.cfg.vision.deepstackVisualIndexes.length;
    const keys = cache ? this.mediaKeys(inputs)[kind] : [];
    const got: (VisionOutput | undefined)[] = [];
    const misses: number[] = [];
    grids.forEach((_, i) => {
      if (needed && !needed(kind, i)) return;
      const hit = cache?.get(keys[i]);
      if (hit) got[i] = hit;
      else misses.push(i);
    });
    // the items not cached run through the tower together, then are split per item
    const offsets: number[] = [];
    let rows = 0;
    for (const g of grids) {
      offsets.push(rows);
      rows += g[0] * g[1] * g[2];
    }
    if (misses.length) {
      const sel = misses.map((i) => pixels.subarray(offsets[i] * W, (offsets[i] + grids[i][0] * grids[i][1] * grids[i][2]) * W));
      const o = yield* this.vision.forwardSteps(misses.length === grids.length ? pixels : concatF32(sel), misses.map((i) => grids[i]), prefixTrace(trace, kind));
      let t = 0;
      for (const i of misses) {
        const n = this.itemTokens(grids[i]);
        const item: VisionOutput = { embeds: o.embeds.slice(t * H, (t + n) * H), deepstack: o.deepstack.map((d) => d.slice(t * H, (t + n) * H)), tokens: n };
        t += n;
        got[i] = item;
        cache?.set(keys[i], item);
      }
    }
    const total = grids.reduce((a, g) => a + this.itemTokens(g), 0);
    const res: VisionOutput = { embeds: new Float32Array(total * H), deepstack: Array.from({ length: taps }, () => new Float32Array(total * H)), tokens: total };
    let t = 0;
    grids.forEach((g, i) => {
      const item = got[i];
      if (item) {
        res.embeds.set(item.embeds, t * H);
        item.deepstack.forEach((d, k) => res.deepstack[k].set(d, t * H));
      }
      t += this.itemTokens(g);
    });
    return res;
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
   * `prefill` in steps, pausing after each vision block and each decoder layer of each chunk (so
   * that a scheduler can decode other sequences in between: at the 4B shape a pause comes every
   * second or so); returns what `prefill` returns.
   */
  *prefillRun(inputs: ModelInputs, cache: KVCache, opts: PrefillOptions = {}): PrefillRun {
    const { cfg } = this;
    const ids = inputs.ids;
    const L = ids.length;
    if (L === 0) throw new QvlError('MESSAGE_INVALID', 'the prompt is empty', {});
    // a cache may already hold this prompt's first positions (a reused prefix): prefill continues after them
    const start = cache.length;
    if (start >= L || (start > 0 && (opts.trace || opts.allLogits))) {
      throw new QvlError('INTERNAL', `prefill: the KV cache holds ${start} of the prompt's ${L} positions`, {});
    }
    const positions = this.positions(inputs);
    const needed = start > 0 ? this.itemsAfter(inputs, start) : undefined;
    const vision = opts.vision ?? (yield* this.encodeMediaSteps(inputs, opts.trace, needed));

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
    // chunk boundaries at multiples of `chunk` wherever prefill starts, as a prefill from 0 has them
    for (let s = start; s < L; s = Math.floor(s / chunk) * chunk + chunk) {
      const e = Math.min(L, Math.floor(s / chunk) * chunk + chunk);
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
      const hidden = yield* this.text.forwardSteps(
        embeds.subarray(s * H, e * H),
        n,
        { t: positions.t.subarray(s, e), h: positions.h.subarray(s, e), w: positions.w.subarray(s, e) },
        cache,
        ds,
        chunk === L ? opts.trace : undefined,
        opts.lean,
      );
      if (opts.allLogits) logitRows.push(this.text.logits(hidden, n));
      else if (e === L) logitRows.push(this.text.logits(hidden.subarray((n - 1) * H), 1));
      yield;
    }
    return { positions, logits: concatF32(logitRows), vision };
  }

  /** Which media items have pad tokens at or after `start` (those a prefill from `start` needs). */
  private itemsAfter(inputs: ModelInputs, start: number): (kind: 'image' | 'video', index: number) => boolean {
    const lastRow = { image: [] as number[], video: [] as number[] };
    const grids = { image: inputs.imageGrids ?? [], video: inputs.videoGrids ?? [] };
    const cursor = { image: { item: 0, used: 0 }, video: { item: 0, used: 0 } };
    for (let i = 0; i < inputs.ids.length; i++) {
      const kind = inputs.ids[i] === this.cfg.imageTokenId ? 'image' : inputs.ids[i] === this.cfg.videoTokenId ? 'video' : undefined;
      if (!kind) continue;
      const c = cursor[kind];
      lastRow[kind][c.item] = i;
      if (c.item < grids[kind].length && ++c.used === this.itemTokens(grids[kind][c.item])) {
        c.item++;
        c.used = 0;
      }
    }
    return (kind, index) => (lastRow[kind][index] ?? Infinity) >= start;
  }

  /**
   * One generated token at the next cache slot; positions continue at cache index + delta. Logits
   * go to `out` when given ([vocab]).
   */
  decode(id: number, cache: KVCache, delta: number, out?: Float32Array): Float32Array {
    const p = cache.length + delta;
    const one = [p];
    const x = this.text.embed([id]);
    const hidden = this.text.forward(x, 1, { t: one, h: one, w: one }, cache);
    return this.text.logits(hidden, 1, out);
  }

  /**
   * One generated token for each of several sequences in one pass over the weights: token ids[i]
   * continues caches[i] (rope delta deltas[i]). Returns logits [n, vocab], row i for sequence i
   * (in `out` when given).
   */
  decodeBatch(ids: readonly number[], caches: readonly KVCache[], deltas: readonly number[], out?: Float32Array): Float32Array {
    const n = ids.length;
    if (caches.length !== n || deltas.length !== n) {
      throw new QvlError('INTERNAL', `decodeBatch: ${n} ids, ${caches.length} caches and ${deltas.length} deltas must match`, {});
    }
    if (n === 1) return this.decode(ids[0], caches[0], deltas[0], out);
    return this.forwardRows(ids.map((id, i) => this.tokenRows(id, caches[i], deltas[i])), out);
  }

  /** A generated token as the rows of a batched pass (`forwardRows`). */
  tokenRows(id: number, cache: KVCache, delta: number): BatchRows {
    const p = [cache.length + delta];
    return { ids: [id], cache, positions: { t: p, h: p, w: p } };
  }

  /**
   * The rest of a prompt (from the cache's length on: all of it, or what a reused prefix left) as
   * the rows of a batched pass, with the prompt's positions; undefined when those rows hold image
   * or video pads (their media must be encoded first: `prefillRun`) or none are left.
   */
  promptRows(inputs: ModelInputs, cache: KVCache): { rows: BatchRows; positions: RopePositions } | undefined {
    const { ids } = inputs;
    const start = cache.length;
    if (start >= ids.length) return undefined;
    for (let i = start; i < ids.length; i++) if (ids[i] === this.cfg.imageTokenId || ids[i] === this.cfg.videoTokenId) return undefined;
    const positions = this.positions(inputs);
    const rows = Array.from({ length: ids.length - start }, (_, i) => ids[start + i]);
    return { rows: { ids: rows, cache, positions: { t: positions.t.subarray(start), h: positions.h.subarray(start), w: positions.w.subarray(start) } }, positions };
  }

  /**
   * Several sequences' rows in one pass over the weights (generated tokens and prompt rests
   * alike: `tokenRows`, `promptRows`), each appended to its own cache. Returns logits [parts,
   * vocab]: row i for the last of parts[i]'s rows (in `out` when given: a caller that keeps one
   * array from step to step spares the pages of a fresh one, 0.6 MB a row at the 4B shape).
   */
  forwardRows(parts: readonly BatchRows[], out?: Float32Array): Float32Array {
    if (!parts.length) throw new QvlError('INTERNAL', 'forwardRows: no rows', {});
    if (new Set(parts.map((p) => p.cache)).size !== parts.length) throw new QvlError('INTERNAL', 'forwardRows: a cache appears twice in one pass', {});
    const H = this.cfg.text.hiddenSize;
    const counts = parts.map((p) => p.ids.length);
    if (counts.some((c, i) => c < 1 || parts[i].positions.t.length !== c || parts[i].positions.h.length !== c || parts[i].positions.w.length !== c)) {
      throw new QvlError('INTERNAL', `forwardRows: every part needs at least one row and a position per row (rows ${counts.join(', ')})`, {});
    }
    const n = counts.reduce((s, c) => s + c, 0);
    const ids = new Int32Array(n);
    const pos = { t: new Int32Array(n), h: new Int32Array(n), w: new Int32Array(n) };
    let r = 0;
    for (const p of parts) {
      ids.set(Array.from(p.ids), r);
      pos.t.set(Array.from(p.positions.t), r);
      pos.h.set(Array.from(p.positions.h), r);
      pos.w.set(Array.from(p.positions.w), r);
      r += p.ids.length;
    }
    const hidden = this.text.forwardRows(this.text.embed(ids), pos, parts.map((p) => ({ cache: p.cache, rows: p.ids.length })));
    if (n === parts.length) return this.text.logits(hidden, n, out);
    // the logits of each part's last row only
    const last = new Float32Array(parts.length * H);
    let end = 0;
    counts.forEach((c, i) => {
      end += c;
      last.set(hidden.subarray((end - 1) * H, end * H), i * H);
    });
    return this.text.logits(last, parts.length, out);
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
