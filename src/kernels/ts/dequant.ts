import { E4M3_TABLE, f16ToF32 } from '../dtypes.ts';
import { Q8_BLOCK, q4GroupOf, type WeightData } from '../weight.ts';

/**
 * Writes row `r` of `w` as float32 into `out` (length ≥ w.cols). The reference definition of
 * every weight format: native kernels and checkpoint converters are tested against it.
 */
export function dequantRow(w: WeightData, r: number, out: Float32Array): void {
  const cols = w.cols;
  switch (w.format) {
    case 'f32':
      out.set(w.data.subarray(r * cols, (r + 1) * cols));
      return;
    case 'bf16': {
      const o32 = new Uint32Array(out.buffer, out.byteOffset, cols);
      const base = r * cols;
      for (let c = 0; c < cols; c++) o32[c] = w.data[base + c] << 16;
      return;
    }
    case 'f16': {
      const base = r * cols;
      for (let c = 0; c < cols; c++) out[c] = f16ToF32(w.data[base + c]);
      return;
    }
    case 'q8': {
      const nb = Math.ceil(cols / Q8_BLOCK);
      const base = r * cols;
      for (let c = 0; c < cols; c++) out[c] = w.qs[base + c] * w.scales[r * nb + Math.floor(c / Q8_BLOCK)];
      return;
    }
    case 'q4': {
      const rowBytes = Math.ceil(cols / 2);
      const base = r * rowBytes;
      for (let c = 0; c < cols; c++) {
        const byte = w.qs[base + (c >> 1)];
        const q = c & 1 ? byte >> 4 : byte & 15;
        const g = r * w.nGroups + q4GroupOf(w, c);
        const z = w.zeros ? w.zeros[g] : 8;
        out[c] = (q - z) * w.scales[g];
      }
      return;
    }
    case 'fp8': {
      const nbc = Math.ceil(cols / w.blockCols);
      const br = Math.floor(r / w.blockRows);
      const base = r * cols;
      for (let c = 0; c < cols; c++) {
        out[c] = E4M3_TABLE[w.qs[base + c]] * w.scales[br * nbc + Math.floor(c / w.blockCols)];
      }
      return;
    }
  }
}

/** The whole matrix as float32 [rows, cols]. */
export function dequantize(w: WeightData): Float32Array {
  const out = new Float32Array(w.rows * w.cols);
  for (let r = 0; r < w.rows; r++) dequantRow(w, r, out.subarray(r * w.cols, (r + 1) * w.cols));
  return out;
}
