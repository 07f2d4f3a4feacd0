import type { KvView } from './kv.ts';
import type { WeightData } from './weight.ts';

/**
 * The compute interface that model code calls. Activations are row-major Float32Arrays
 * ([rows, width]); weights are prepared once per backend. Every op returns a new array unless
 * it says "in place".
 *
 * Two implementations: `ts/` (plain TypeScript, the oracle) and `native/` (the C++ addon).
 * Tests check that they agree op by op on random inputs for every weight format.
 */
export interface PrepareOptions {
  /**
   * `w`'s arrays are the caller's to give away (freshly quantized at load): a backend that
   * copies them into its own layout may detach them, so that their memory goes at once instead
   * of at V8's next collection. They read as empty afterwards.
   */
  consume?: boolean;
  /**
   * q8: the native int8 GEMV (decode) quantizes the activations on a grid 64 times finer than
   * int8's, as two int8 halves, for twice the integer dot products (native/gemv_q8x8.inc).
   * q8 mode's text decoder asks for it (src/model/weights.ts); other formats and the TypeScript
   * backend, whose activations stay float32, ignore it.
   */
  fineActivations?: boolean;
}

export interface Backend {
  readonly name: string;

  /** Makes a weight usable by this backend (may repack, may keep a reference to `w`). */
  prepare(w: WeightData, opts?: PrepareOptions): PreparedWeight;

  /**
   * y[n, w.rows] = x[n, w.cols] · Wᵀ (+ bias[w.rows]), written into `out` when given (exactly
   * n·w.rows values, not overlapping x) and returned. Reusing one large `out` across layers
   * spares the page faults of a fresh buffer at every call.
   */
  matmul(x: Float32Array, n: number, w: PreparedWeight, bias?: Float32Array | null, out?: Float32Array): Float32Array;

  /**
   * `matmul` of one x over each of 1 to 4 weights of x's width (a layer's q, k and v; gate and
   * up): result i is x · ws[i]ᵀ (+ biases[i]), into outs[i] when given (outs not overlapping x or
   * each other), what `matmul` gives it bit for bit. The native backend computes repacked q4 / q8
   * weights in one job over activations quantized once.
   */
  matmulMany(x: Float32Array, n: number, ws: readonly PreparedWeight[], biases?: readonly (Float32Array | null | undefined)[], outs?: readonly Float32Array[]): Float32Array[];

  /** Rows `ids` of a [vocab, dim] table, as float32 ([ids.length, dim]). */
  gatherRows(w: PreparedWeight, ids: ArrayLike<number>): Float32Array;

  /**
   * Row-wise RMSNorm over width `dim`: w ⊙ x / sqrt(mean(x²) + eps); written into `out` when
   * given (x.length values; it may be `x` itself) and returned.
   */
  rmsNorm(x: Float32Array, dim: number, weight: Float32Array, eps: number, out?: Float32Array): Float32Array;

  /**
   * Row-wise LayerNorm over width `dim` with affine weight and bias; written into `out` when given
   * (x.length values; it may be `x` itself) and returned.
   */
  layerNorm(x: Float32Array, dim: number, weight: Float32Array, bias: Float32Array, eps: number, out?: Float32Array): Float32Array;

  /**
   * In place, split-half ("rotate_half") rotary embedding: for token i and head h,
   * x' = x·cos[i] + rotate_half(x)·sin[i], rotate_half(v) = concat(−v[d/2:], v[:d/2]).
   * x is [n, heads·headDim]; cos and sin are [n, headDim]. With `stride`, token i's row starts at
   * i·stride (a view into wider rows, such as the vision tower's fused q|k|v): the values between
   * rows are left alone.
   */
  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array, stride?: number): void;

  /**
   * Scaled dot-product attention. q is [nQ, heads·headDim]; k, v are [nKv, kvHeads·headDim];
   * query head h reads kv head ⌊h / (heads/kvHeads)⌋. Returns [nQ, heads·headDim], written into
   * `out` when given (not overlapping q, k or v).
   */
  attention(q: Float32Array, k: Float32Array, v: Float32Array, opts: AttentionOptions, out?: Float32Array): Float32Array;

  /**
   * Causal attention over a KV cache layer (any KvType), read in place from its blocks: q is
   * [nQ, heads·headDim]; query i sits at absolute position qOffset + i and sees keys
   * 0..qOffset+i of the view (at most view.length). Returns [nQ, heads·headDim], written into
   * `out` when given (not overlapping q).
   */
  attentionKv(q: Float32Array, kv: KvView, opts: KvAttentionOptions, out?: Float32Array): Float32Array;

  /**
   * One decoder layer's attention for several sequences at once (a batched decode step): part i
   * takes the next `rows` rows of q, k, v and out. Its keys and values are written into its view
   * at positions past..past+rows−1 (view.length = past + rows, blocks already held: KVCache.extend),
   * then its queries attend causally to its view, as `attentionKv` with qOffset = past. Every
   * view is of the same layer and layout. Returns out.
   */
  appendAttendKv(q: Float32Array, k: Float32Array, v: Float32Array, parts: readonly KvBatchPart[], opts: KvBatchOptions, out: Float32Array): Float32Array;

  /**
   * silu(gate) ⊙ up, element-wise; written into `out` when given (the same length; it may be
   * `gate` or `up` itself, each element being read before it is written) and returned.
   */
  siluMul(gate: Float32Array, up: Float32Array, out?: Float32Array): Float32Array;

  /** In place GELU: 'tanh' = PyTorch approximate='tanh', 'erf' = exact. */
  gelu(x: Float32Array, kind: 'tanh' | 'erf'): void;

  /** In place a += b (same length). */
  addInPlace(a: Float32Array, b: Float32Array): void;

  /**
   * The index of the largest value of `x`, the first of equal ones; NaN is never chosen, and 0 is
   * the answer when nothing else is (every value NaN, or none). Greedy decoding's pick.
   */
  argmax(x: Float32Array): number;

  /** Frees what `prepare` allocated outside the JS heap (no-op for the TS backend). */
  release?(w: PreparedWeight): void;

  /**
   * A zero-filled buffer of `bytes` for the KV cache's slabs, in memory the backend's kernels
   * read best (the native backend's: huge pages); without it the pool uses `new ArrayBuffer`.
   */
  allocPages?(bytes: number): ArrayBuffer;

  /**
   * A float matrix quantized to q4 (weights/convert.ts's quantizeQ4, asymmetric unless
   * `symmetric`) straight into this backend's own layout: what `prepare(quantizeQ4(w), { consume:
   * true })` holds, bit for bit, without the row-major copy in between. `nonFinite` names the
   * first NaN / ±Infinity weight; undefined where it does not apply (the caller quantizes, then
   * prepares).
   */
  prepareQ4?(w: WeightData, opts: { groupSize: number; symmetric: boolean }): { weight: PreparedWeight } | { nonFinite: NonFiniteWeight } | undefined;
}

/** The first NaN or ±Infinity weight of a matrix in row-major order: the one the quantizers name. */
export interface NonFiniteWeight {
  row: number;
  col: number;
  value: number;
}

export interface AttentionOptions {
  nQ: number;
  nKv: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** multiplier on q·k, usually headDim^-1/2 */
  scale: number;
  /**
   * Causal: query i (absolute position qOffset + i) sees keys 0..qOffset+i. Used for text
   * prefill (qOffset = tokens already in the cache) and decode (nQ = 1).
   */
  causal: boolean;
  qOffset?: number;
  /**
   * Non-causal block-diagonal attention (vision): cu_seqlens-style boundaries
   * [0, s1, s2, …, nQ]; a query sees only keys of its own segment. Requires nQ = nKv.
   */
  segments?: Int32Array;
  /**
   * Values from one query's row to the next (default heads·headDim), and from one key's or
   * value's row to the next (default kvHeads·headDim): q, k and v may be views into wider rows
   * (the vision tower's fused q|k|v). The output stays [nQ, heads·headDim].
   */
  qStride?: number;
  kvStride?: number;
  /**
   * Allows the products in int16 (queries, keys, softmax weights and values quantized per block
   * of 32; native x86 kernel sets, native/attention_i16.inc): the vision tower of a quantized
   * model, whose matmuls take int16 activations already. Other backends compute in float32.
   */
  int16?: boolean;
}

export interface KvAttentionOptions {
  nQ: number;
  heads: number;
  scale: number;
  qOffset: number;
}

/** One sequence's rows in `appendAttendKv`. */
export interface KvBatchPart {
  view: KvView;
  rows: number;
  /** positions the view held before these rows */
  past: number;
}

export interface KvBatchOptions {
  heads: number;
  scale: number;
}

/** What `Backend.prepare` returns: the shape plus whatever the backend keeps. */
export interface PreparedWeight {
  readonly rows: number;
  readonly cols: number;
  readonly format: WeightData['format'];
  /** bytes the backend reads for the weight (weightBytes of what was prepared, or of its repacked form) */
  readonly bytes: number;
  /** the backend's own representation */
  readonly impl: unknown;
}
