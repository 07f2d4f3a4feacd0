import { QvlError } from '../errors.ts';
import { type KvLayout, type KvView, writeKvAt } from '../kernels/kv.ts';
import type { KvPool } from './kv-pool.ts';

/** Returns a dropped cache's blocks to its pool (a safety net: `release` is the normal way). */
const orphans = new FinalizationRegistry<{ pool: KvPool; ids: number[] }>(({ pool, ids }) => {
  for (const id of ids) pool.release(id);
});

/**
 * Keys and values of every decoder layer for one sequence, in blocks from a KvPool, stored in
 * the pool's type (f32, bf16, f16 or q8) and read in place by attention. Appends convert the new
 * rows once; growing takes another block, never copies.
 *
 * With `layers` (a pool whose blocks hold one layer), the cache is a window onto one layer at a
 * time: every layer's rows share that storage, and a layer overwrites the one before it. For a
 * pass that runs layer by layer and never returns to an earlier one (calibration holds every
 * sample's prefill at once, paused between layers), in one layer's memory. Going back to a layer
 * it has left is refused.
 */
export class KVCache {
  readonly layout: KvLayout;
  /** block ids, in token order */
  private readonly ids: number[] = [];
  /** (slab, byte offset) per block, what the kernels read; grows by doubling */
  private table = new Int32Array(16);
  /** positions filled per layer (the same for every layer once a forward pass completes) */
  private readonly filled: number[];
  /** a one-layer window: the layer whose rows it holds now (−1 before the first) */
  private readonly window: boolean;
  private windowLayer = -1;
  private released = false;
  private readonly token = {};

  constructor(
    readonly pool: KvPool,
    opts: { layers?: number } = {},
  ) {
    this.layout = pool.layout;
    this.window = opts.layers !== undefined;
    if (this.window && (this.layout.layers !== 1 || !Number.isInteger(opts.layers) || opts.layers! < 1)) {
      throw new QvlError('INTERNAL', `a KV window needs a one-layer pool and a layer count, got ${this.layout.layers} and ${opts.layers}`, {});
    }
    this.filled = new Array(opts.layers ?? this.layout.layers).fill(0);
    orphans.register(this, { pool, ids: this.ids }, this.token);
  }

  get layers(): number {
    return this.filled.length;
  }

  /** Positions held (by layer 0, which is written first in a forward pass). */
  get length(): number {
    return this.filled[0];
  }

  /** Positions the blocks held now can take without another block. */
  get capacity(): number {
    return this.ids.length * this.layout.blockTokens;
  }

  /** Bytes of the blocks this sequence holds. */
  get bytes(): number {
    return this.ids.length * this.layout.blockBytes;
  }

  /** Appends n rows of keys and values for `layer` ([n, kvHeads·headDim] each) and returns the layer's view. */
  append(layer: number, k: Float32Array, v: Float32Array, n: number): KvView {
    const L = this.layout;
    if (k.length < n * L.rowElems || v.length < n * L.rowElems) {
      throw new QvlError('TENSOR_SHAPE', `KV append: ${n} rows need ${n * L.rowElems} values, got ${k.length}/${v.length}`, { n });
    }
    const { view, past } = this.extend(layer, n);
    writeKvAt(view, past, k, v, n);
    return view;
  }

  /**
   * Makes room for n more positions of `layer` and counts them as filled, without writing them:
   * the caller writes rows past..past+n−1 of the returned view (a backend's appendAttendKv).
   */
  extend(layer: number, n: number): { view: KvView; past: number } {
    if (this.released) throw new QvlError('INTERNAL', 'the KV cache was released', {});
    if (this.window) {
      if (layer < this.windowLayer) throw new QvlError('INTERNAL', `the KV window holds layer ${this.windowLayer}; layer ${layer} was overwritten`, { layer });
      this.windowLayer = layer;
    }
    const past = this.filled[layer];
    this.reserve(past + n);
    this.filled[layer] = past + n;
    return { view: this.view(layer), past };
  }

  /** Uncounts the last n positions of `layer` (a layer that runs again writes them again). */
  rewind(layer: number, n: number): void {
    if (n < 0 || n > this.filled[layer]) throw new QvlError('INTERNAL', `KV rewind: ${n} of ${this.filled[layer]} positions`, { layer, n });
    this.filled[layer] -= n;
  }

  /** Layer `layer`'s keys and values as attention reads them. */
  view(layer: number): KvView {
    if (this.window && layer !== this.windowLayer) throw new QvlError('INTERNAL', `the KV window holds layer ${this.windowLayer}, not ${layer}`, { layer });
    return { layout: this.layout, layer: this.window ? 0 : layer, length: this.filled[layer], slabs: this.pool.slabs, blocks: this.table.subarray(0, 2 * this.ids.length) };
  }

  /**
   * Starts an empty cache with shared blocks (a cached prompt prefix): each gets one more owner,
   * and every layer holds their tokens. Appends go to new blocks after them, so they are never written.
   */
  adopt(ids: readonly number[]): void {
    if (this.released || this.ids.length || this.length || this.window) throw new QvlError('INTERNAL', 'adopt needs an empty KV cache of every layer', {});
    for (const id of ids) {
      this.pool.retain(id);
      this.push(id);
    }
    this.filled.fill(ids.length * this.layout.blockTokens);
  }

  /**
   * Appends a private copy of block `src` whose first `n` positions continue this cache (the common
   * start of a cached block another sequence wrote): positions past `n` are overwritten as it fills.
   */
  adoptCopy(src: number, n: number): void {
    if (this.released || this.window || this.length % this.layout.blockTokens !== 0 || this.capacity !== this.length) {
      throw new QvlError('INTERNAL', 'adoptCopy needs a cache that ends on a whole block', {});
    }
    const L = this.layout;
    if (!Number.isInteger(n) || n < 0 || n > L.blockTokens) throw new QvlError('INTERNAL', `adoptCopy: ${n} positions of a ${L.blockTokens}-token block`, {});
    const before = this.length;
    this.reserve(before + 1);
    const id = this.ids[this.ids.length - 1];
    // only the n positions kept: a block spans every layer (37.7 MB at the 4B shape in bf16), and
    // copying it whole cost up to ~100 ms per admitted request, stalling every running stream
    const from = new Uint8Array(this.pool.slabs[this.pool.slabOf(src)]);
    const to = new Uint8Array(this.pool.slabs[this.pool.slabOf(id)]);
    const src0 = this.pool.offsetOf(src);
    const dst0 = this.pool.offsetOf(id);
    // each array of a layer is head-major, [kvHead][token][…]: the first n tokens of every head
    const copyHeads = (off: number, tokenBytes: number) => {
      for (let h = 0; h < L.kvHeads; h++) {
        const o = off + h * L.blockTokens * tokenBytes;
        to.set(from.subarray(src0 + o, src0 + o + n * tokenBytes), dst0 + o);
      }
    };
    for (let l = 0; l < L.layers; l++) {
      copyHeads(L.kOffset(l), L.headDim * L.elemBytes);
      copyHeads(L.vOffset(l), L.headDim * L.elemBytes);
      if (L.scaleBytes) {
        copyHeads(L.kScaleOffset(l), 4);
        copyHeads(L.vScaleOffset(l), 4);
      }
    }
    this.filled.fill(before + n);
  }

  /** Appends block `id` to the sequence and to the table the kernels read. */
  private push(id: number): void {
    const b = this.ids.length;
    if (2 * b + 2 > this.table.length) {
      const t = new Int32Array(this.table.length * 2);
      t.set(this.table);
      this.table = t;
    }
    this.ids.push(id);
    this.table[2 * b] = this.pool.slabOf(id);
    this.table[2 * b + 1] = this.pool.offsetOf(id);
  }

  /** Makes room for `tokens` positions (takes blocks from the pool; throws OUT_OF_MEMORY past its budget). */
  reserve(tokens: number): void {
    while (this.capacity < tokens) {
      this.push(this.pool.alloc());
    }
  }

  /**
   * Marks positions [length, length+n) as filled in every layer without writing them (their
   * contents are whatever the blocks hold): for benchmarks that time decoding at a long context.
   */
  fillSynthetic(n: number): void {
    const total = this.length + n;
    this.reserve(total);
    this.filled.fill(total);
  }

  /** Drops every position from `length` on, returning whole blocks past it to the pool. */
  truncate(length: number): void {
    for (let l = 0; l < this.layers; l++) this.filled[l] = Math.min(this.filled[l], length);
    const keep = Math.ceil(Math.max(0, length) / this.layout.blockTokens);
    while (this.ids.length > keep) this.pool.release(this.ids.pop()!);
  }

  /** Returns every block to the pool; the cache cannot be used afterwards. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const id of this.ids) this.pool.release(id);
    this.ids.length = 0;
    this.filled.fill(0);
    orphans.unregister(this.token);
  }

  /** Block ids held (for tests and the pool's accounting). */
  get blockIds(): readonly number[] {
    return this.ids;
  }
}
