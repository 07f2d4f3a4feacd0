import type { WeightData } from '../kernels/weight.ts';
import { readF32, readMatrix, type TensorSource } from './tensor-reader.ts';
import { detectQuantizedLinear } from './quant/index.ts';

/**
 * Reads the weight of the Linear module `prefix` ([rows = out, cols = in]) in whatever form the
 * checkpoint stores it: plain BF16/F16/F32 `prefix.weight`, or one of the quantized layouts
 * (decided per module from the tensors present, as HF does).
 */
export function readLinear(
  src: TensorSource,
  prefix: string,
  rows: number,
  cols: number,
  quantConfig?: Record<string, unknown>,
): WeightData {
  const q = detectQuantizedLinear(src, prefix, rows, cols, quantConfig);
  if (q) return q;
  return readMatrix(src, `${prefix}.weight`, rows, cols);
}

export function readBias(src: TensorSource, prefix: string, rows: number): Float32Array | undefined {
  const name = `${prefix}.bias`;
  return src.has(name) ? readF32(src, name, [rows]) : undefined;
}
