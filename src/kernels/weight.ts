/**
 * Host-side weight matrices in every storage format the kernels multiply with.
 *
 * A matrix is always [rows = out features, cols = in features], row-major, like a PyTorch
 * Linear weight. Checkpoint readers (weights/) produce these; backends (kernels/) consume them
 * and may repack them into their own layouts in `Backend.prepare`.
 */

export type WeightFormat = 'f32' | 'bf16' | 'f16' | 'q8' | 'q4' | 'fp8';

interface MatrixShape {
  /** out features */
  rows: number;
  /** in features */
  cols: number;
}

export interface F32Weight extends MatrixShape {
  format: 'f32';
  data: Float32Array;
}

/** Raw bf16 or f16 bit patterns, one u16 per element. */
export interface HalfWeight extends MatrixShape {
  format: 'bf16' | 'f16';
  data: Uint16Array;
}

/**
 * int8 blocks of Q8_BLOCK along each row, one f32 scale per block: w = q · scale.
 * A row whose length is not a multiple of the block ends with a short block.
 */
export interface Q8Weight extends MatrixShape {
  format: 'q8';
  /** rows·cols int8 values */
  qs: Int8Array;
  /** rows·ceil(cols/Q8_BLOCK) scales */
  scales: Float32Array;
}

/**
 * 4-bit groups along each row: w[r,c] = (q[r,c] − zero[r,g]) · scale[r,g], g = group of column c.
 * q is unsigned 0..15. Symmetric formats store zero = 8. This form holds AWQ, GPTQ (v1/v2, with
 * act-order g_idx) and compressed-tensors weights without loss.
 */
export interface Q4Weight extends MatrixShape {
  format: 'q4';
  /** 32 or 128 */
  groupSize: number;
  /** rows·ceil(cols/2) bytes; element (r,c) in byte r·ceil(cols/2)+⌊c/2⌋, low nibble for even c */
  qs: Uint8Array;
  /** rows·nGroups scales, nGroups = ceil(cols/groupSize) unless gIdx says otherwise */
  scales: Float32Array;
  /** rows·nGroups integer zero points (0..255; GPTQ v1 can reach 16); absent means 8 */
  zeros?: Uint8Array;
  /** act-order: group of each input column (GPTQ desc_act); absent means ⌊c/groupSize⌋ */
  gIdx?: Int32Array;
  /** number of groups per row (equals ceil(cols/groupSize) when gIdx is absent) */
  nGroups: number;
}

/** FP8 e4m3fn bytes with one f32 multiplier per 128×128 block ("weight_scale_inv"). */
export interface Fp8Weight extends MatrixShape {
  format: 'fp8';
  /** rows·cols e4m3fn bytes */
  qs: Uint8Array;
  /** ceil(rows/blockRows)·ceil(cols/blockCols) scales, row-major over blocks */
  scales: Float32Array;
  blockRows: number;
  blockCols: number;
}

export type WeightData = F32Weight | HalfWeight | Q8Weight | Q4Weight | Fp8Weight;

export const Q8_BLOCK = 32;

export function q4GroupOf(w: Q4Weight, col: number): number {
  return w.gIdx ? w.gIdx[col] : Math.floor(col / w.groupSize);
}

/** Bytes the matrix occupies in its storage format (for memory accounting and benchmarks). */
export function weightBytes(w: WeightData): number {
  switch (w.format) {
    case 'f32':
      return w.data.byteLength;
    case 'bf16':
    case 'f16':
      return w.data.byteLength;
    case 'q8':
      return w.qs.byteLength + w.scales.byteLength;
    case 'q4':
      return w.qs.byteLength + w.scales.byteLength + (w.zeros?.byteLength ?? 0) + (w.gIdx?.byteLength ?? 0);
    case 'fp8':
      return w.qs.byteLength + w.scales.byteLength;
  }
}
