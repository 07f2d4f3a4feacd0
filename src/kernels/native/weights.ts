import { QvlError } from '../../errors.ts';
import { Q8_BLOCK, type WeightData } from '../weight.ts';
import type { NativeWeightDesc } from './addon.ts';

/** Format codes shared with native/kernels.h. */
const FORMAT_CODE: Record<WeightData['format'], number> = { f32: 0, bf16: 1, f16: 2, q8: 3, q4: 4, fp8: 5 };

function need(what: string, have: number, want: number, name: string): void {
  if (have < want) {
    throw new QvlError('TENSOR_SHAPE', `${name}: ${what} has ${have} elements, the shape needs ${want}`, { what, have, want });
  }
}

function positiveInt(v: number, what: string, name: string): void {
  if (!Number.isInteger(v) || v < 1) throw new QvlError('QUANT_INVALID', `${name}: ${what} must be a positive integer, got ${v}`, { what, value: v });
}

/**
 * Checks a weight against its declared shape and returns what the addon reads. The addon
 * checks the sizes again, but errors from here name the problem in qvl's terms.
 */
export function describeWeight(w: WeightData, name = 'weight'): NativeWeightDesc {
  if (!(w.format in FORMAT_CODE)) {
    throw new QvlError('DTYPE_UNSUPPORTED', `${name}: weight format '${String((w as { format: unknown }).format)}' is not supported`, {
      format: (w as { format: unknown }).format,
    });
  }
  if (!Number.isInteger(w.rows) || !Number.isInteger(w.cols) || w.rows < 0 || w.cols < 0) {
    throw new QvlError('TENSOR_SHAPE', `${name}: shape [${w.rows}, ${w.cols}] is not a valid matrix shape`, { rows: w.rows, cols: w.cols });
  }
  const elems = w.rows * w.cols;
  const base = { format: FORMAT_CODE[w.format], rows: w.rows, cols: w.cols };
  switch (w.format) {
    case 'f32':
    case 'bf16':
    case 'f16':
      need('data', w.data.length, elems, name);
      return { ...base, data: w.data };
    case 'q8':
      need('qs', w.qs.length, elems, name);
      need('scales', w.scales.length, w.rows * Math.ceil(w.cols / Q8_BLOCK), name);
      return { ...base, qs: w.qs, scales: w.scales };
    case 'q4': {
      positiveInt(w.groupSize, 'groupSize', name);
      positiveInt(w.nGroups, 'nGroups', name);
      need('qs', w.qs.length, w.rows * Math.ceil(w.cols / 2), name);
      need('scales', w.scales.length, w.rows * w.nGroups, name);
      if (w.zeros) need('zeros', w.zeros.length, w.rows * w.nGroups, name);
      if (w.gIdx) {
        need('gIdx', w.gIdx.length, w.cols, name);
        for (let c = 0; c < w.cols; c++) {
          const g = w.gIdx[c];
          if (g < 0 || g >= w.nGroups) {
            throw new QvlError('QUANT_INVALID', `${name}: gIdx[${c}] = ${g} is outside 0..${w.nGroups - 1}`, { column: c, group: g });
          }
        }
      } else if (w.nGroups < Math.ceil(w.cols / w.groupSize)) {
        throw new QvlError(
          'QUANT_INVALID',
          `${name}: nGroups ${w.nGroups} is less than ceil(${w.cols} / groupSize ${w.groupSize})`,
          { nGroups: w.nGroups, groupSize: w.groupSize, cols: w.cols },
        );
      }
      return { ...base, qs: w.qs, scales: w.scales, zeros: w.zeros, gIdx: w.gIdx, groupSize: w.groupSize, nGroups: w.nGroups };
    }
    case 'fp8':
      positiveInt(w.blockRows, 'blockRows', name);
      positiveInt(w.blockCols, 'blockCols', name);
      need('qs', w.qs.length, elems, name);
      need('scales', w.scales.length, Math.ceil(w.rows / w.blockRows) * Math.ceil(w.cols / w.blockCols), name);
      return { ...base, qs: w.qs, scales: w.scales, blockRows: w.blockRows, blockCols: w.blockCols };
  }
}
