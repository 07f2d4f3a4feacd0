import type { WeightData } from '../../kernels/weight.ts';
import type { TensorSource } from '../tensor-reader.ts';

/**
 * Returns the module's weight when the checkpoint stores it quantized (FP8 block, AWQ, GPTQ,
 * compressed-tensors), or undefined when it is a plain floating-point `.weight`.
 */
export function detectQuantizedLinear(
  _src: TensorSource,
  _prefix: string,
  _rows: number,
  _cols: number,
  _quantConfig?: Record<string, unknown>,
): WeightData | undefined {
  return undefined;
}
