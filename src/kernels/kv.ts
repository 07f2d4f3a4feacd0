/**
 * The memory format of the KV cache, shared by the cache (model/kv-cache.ts), which writes it,
 * and the attention kernels of every backend, which read it in place.
 *
 * Tokens live in fixed-size blocks. One block holds `blockTokens` consecutive tokens of every
 * decoder layer: for each layer its keys, its values and (q8) their scales, each a head-major
 * [kvHead][token][headDim] array of the cache type (scales [kvHead][token]), so that the rows
 * one attention task reads are contiguous and stream from memory at full speed. Blocks sit in large ArrayBuffers (slabs);
 * a sequence is a list of blocks, so it grows without copying and returns them when done.
 */
import { QvlError } from '../errors.ts';
import { bf16ToF32 as fromBf16, f16ToF32 as fromF16, f32ToBf16 as toBf16, f32ToF16 as toF16 } from './dtypes.ts';

export type KvType = 'f32' | 'bf16' | 'f16' | 'q8';
export const KV_TYPES: readonly KvType[] = ['f16', 'bf16', 'q8', 'f32'];
/**
 * f16 by default, as llama.cpp's cache: its 10-bit mantissa against bf16's 7 kept the demo model's
 * held-out answers HF's on 209 of 210 items against 207 (q8 mode, with its fine decode
 * activations: 209 against 206), for the same bytes and speed; finite values past ±65504 are
 * written as ±65504 (toF16Saturating).
 */
export const DEFAULT_KV_TYPE: KvType = 'f16';
/** Codes the native addon uses (native/kernels.h KvType). */
export const KV_TYPE_CODE: Record<KvType, number> = { f32: 0, bf16: 1, f16: 2, q8: 3 };
export const DEFAULT_KV_BLOCK_TOKENS = 256;

const ALIGN = 64;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const ELEM_BYTES: Record<KvType, number> = { f32: 4, bf16: 2, f16: 2, q8: 1 };

/** Byte layout of one KV block. */
export class KvLayout {
  readonly elemBytes: number;
  /** bytes of one layer's keys (or values) in a block */
  readonly dataBytes: number;
  /** bytes of one layer's key (or value) scales in a block (q8; 0 otherwise) */
  readonly scaleBytes: number;
  readonly layerBytes: number;
  readonly blockBytes: number;
  /** values per token and layer, keys or values: kvHeads · headDim */
  readonly rowElems: number;

  constructor(
    readonly type: KvType,
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly blockTokens: number = DEFAULT_KV_BLOCK_TOKENS,
  ) {
    this.elemBytes = ELEM_BYTES[type];
    this.rowElems = kvHeads * headDim;
    this.dataBytes = align(blockTokens * this.rowElems * this.elemBytes);
    this.scaleBytes = type === 'q8' ? align(blockTokens * kvHeads * 4) : 0;
    this.layerBytes = 2 * this.dataBytes + 2 * this.scaleBytes;
    this.blockBytes = layers * this.layerBytes;
  }

  kOffset(layer: number): number {
    return layer * this.layerBytes;
  }
  vOffset(layer: number): number {
    return layer * this.layerBytes + this.dataBytes;
  }
  kScaleOffset(layer: number): number {
    return layer * this.layerBytes + 2 * this.dataBytes;
  }
  vScaleOffset(layer: number): number {
    return layer * this.layerBytes + 2 * this.dataBytes + this.scaleBytes;
  }

  /** Bytes a token costs across all layers (what a context of n tokens needs, n × this). */
  get bytesPerToken(): number {
    return this.blockBytes / this.blockTokens;
  }
}

/** What attention reads: one layer of a sequence's cache, tokens 0..length-1. */
export interface KvView {
  readonly layout: KvLayout;
  readonly layer: number;
  readonly length: number;
  /** the pool's slabs (append-only: an index stays valid) */
  readonly slabs: readonly ArrayBuffer[];
  /** per block of the sequence, in order: slab index, byte offset in the slab */
  readonly blocks: Int32Array;
}

// ---- writing (float32 rows in, the cache type out) ----

// The cache types' scalar codecs are the checkpoint ones (one definition, in dtypes.ts).
export { f32ToBf16 as toBf16, f32ToF16 as toF16, f16ToF32 as fromF16, bf16ToF32 as fromBf16 } from './dtypes.ts';

/**
 * The f16 cache's writer: toF16, except that a finite value beyond binary16's range becomes
 * ±65504 instead of ±Infinity. An infinite key turns a whole attention row into NaN; a clipped
 * one stays a large finite value (NaN and ±Infinity are kept as they are).
 */
export function toF16Saturating(x: number): number {
  const h = toF16(x);
  return (h & 0x7fff) === 0x7c00 && Number.isFinite(x) ? (h & 0x8000) | 0x7bff : h;
}

/**
 * Writes n rows of keys and values ([n, kvHeads·headDim] each) into a view's layer at positions
 * t0..t0+n−1, across its blocks (which must already hold them).
 */
export function writeKvAt(view: KvView, t0: number, k: Float32Array, v: Float32Array, n: number): void {
  const L = view.layout;
  const B = L.blockTokens;
  if (2 * Math.ceil((t0 + n) / B) > view.blocks.length) {
    throw new QvlError('TENSOR_SHAPE', `KV write: positions ${t0}..${t0 + n - 1} need ${Math.ceil((t0 + n) / B)} blocks, the view has ${view.blocks.length / 2}`, { t0, n });
  }
  for (let t = t0; t < t0 + n; ) {
    const b = Math.floor(t / B);
    const tb = t - b * B;
    const m = Math.min(B - tb, t0 + n - t);
    const slab = view.slabs[view.blocks[2 * b]];
    const off = view.blocks[2 * b + 1];
    const r = t - t0;
    writeKvRows(L, slab, off, view.layer, 0, tb, k.subarray(r * L.rowElems, (r + m) * L.rowElems), m);
    writeKvRows(L, slab, off, view.layer, 1, tb, v.subarray(r * L.rowElems, (r + m) * L.rowElems), m);
    t += m;
  }
}

/**
 * Writes rows `src` [n, kvHeads·headDim] (keys when `which` is 0, values when 1) of `layer`
 * into a block at token `t0`. q8: each head's row gets its own scale max|x|/127 and values
 * round(x/scale) in −127..127.
 */
export function writeKvRows(layout: KvLayout, slab: ArrayBuffer, blockOffset: number, layer: number, which: 0 | 1, t0: number, src: Float32Array, n: number): void {
  const { rowElems, headDim, kvHeads, blockTokens: B } = layout;
  const dataOff = blockOffset + (which ? layout.vOffset(layer) : layout.kOffset(layer));
  const all = B * rowElems;
  const type = layout.type;
  const d =
    type === 'f32' ? new Float32Array(slab, dataOff, all) : type === 'q8' ? new Int8Array(slab, dataOff, all) : new Uint16Array(slab, dataOff, all);
  const sc = type === 'q8' ? new Float32Array(slab, blockOffset + (which ? layout.vScaleOffset(layer) : layout.kScaleOffset(layer)), B * kvHeads) : null;
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < kvHeads; h++) {
      const o = (t * kvHeads + h) * headDim; // source: token-major rows
      const e = (h * B + t0 + t) * headDim; // block: head-major
      if (type === 'f32') (d as Float32Array).set(src.subarray(o, o + headDim), e);
      else if (type === 'bf16') for (let c = 0; c < headDim; c++) d[e + c] = toBf16(src[o + c]);
      else if (type === 'f16') for (let c = 0; c < headDim; c++) d[e + c] = toF16Saturating(src[o + c]);
      else {
        let amax = 0;
        for (let c = 0; c < headDim; c++) amax = Math.max(amax, Math.abs(src[o + c]));
        const scale = Math.fround(amax / 127);
        sc![h * B + t0 + t] = scale;
        const inv = scale > 0 ? 1 / scale : 0;
        for (let c = 0; c < headDim; c++) d[e + c] = Math.max(-127, Math.min(127, Math.round(src[o + c] * inv)));
      }
    }
  }
}

/**
 * Reads keys (which = 0) or values (1) of a view row by row as float32 — the definition every
 * kernel must match: bf16/f16 widen exactly, q8 is one float32 product q·scale.
 */
export class KvRowReader {
  private readonly data: (Float32Array | Uint16Array | Int8Array)[] = [];
  private readonly scales: Float32Array[] = [];
  private readonly out: Float32Array;

  constructor(
    private readonly view: KvView,
    which: 0 | 1,
  ) {
    const L = view.layout;
    const n = Math.ceil(view.length / L.blockTokens);
    const count = L.blockTokens * L.rowElems;
    for (let b = 0; b < n; b++) {
      const slab = view.slabs[view.blocks[2 * b]];
      const base = view.blocks[2 * b + 1];
      const off = base + (which ? L.vOffset(view.layer) : L.kOffset(view.layer));
      if (L.type === 'f32') this.data.push(new Float32Array(slab, off, count));
      else if (L.type === 'q8') {
        this.data.push(new Int8Array(slab, off, count));
        this.scales.push(new Float32Array(slab, base + (which ? L.vScaleOffset(view.layer) : L.kScaleOffset(view.layer)), L.blockTokens * L.kvHeads));
      } else this.data.push(new Uint16Array(slab, off, count));
    }
    this.out = new Float32Array(L.headDim);
  }

  /** Token j, kv head kh: [headDim] float32, valid until the next call. */
  row(j: number, kh: number): Float32Array {
    const L = this.view.layout;
    const b = Math.floor(j / L.blockTokens);
    const t = j - b * L.blockTokens;
    const e0 = (kh * L.blockTokens + t) * L.headDim;
    const hd = L.headDim;
    const src = this.data[b];
    const dst = this.out;
    switch (L.type) {
      case 'f32':
        return (src as Float32Array).subarray(e0, e0 + hd);
      case 'bf16':
        for (let c = 0; c < hd; c++) dst[c] = fromBf16(src[e0 + c]);
        return dst;
      case 'f16':
        for (let c = 0; c < hd; c++) dst[c] = fromF16(src[e0 + c]);
        return dst;
      case 'q8': {
        const scale = this.scales[b][kh * L.blockTokens + t];
        for (let c = 0; c < hd; c++) dst[c] = Math.fround(src[e0 + c] * scale);
        return dst;
      }
    }
  }
}

/** Checks a KV cache type named by a user (option, flag, request). */
export function parseKvType(v: unknown, what = 'kvType'): KvType {
  if (typeof v === 'string' && (KV_TYPES as readonly string[]).includes(v)) return v as KvType;
  throw new QvlError('OPTION_INVALID', `${what} must be one of ${KV_TYPES.join(', ')}, got ${JSON.stringify(v)}`, { [what]: v });
}
