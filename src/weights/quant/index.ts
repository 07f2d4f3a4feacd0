import { QvlError } from '../../errors.ts';
import type { WeightData } from '../../kernels/weight.ts';
import type { TensorSource } from '../tensor-reader.ts';
import { readAwqGemm } from './awq.ts';
import { readPackQuantized } from './compressed-tensors.ts';
import { readFp8Block, readFp8Scaled } from './fp8.ts';
import { readGptq } from './gptq.ts';
import { hasQvlQ4, hasQvlQ8, readQvlQ4, readQvlQ8 } from './qvl-format.ts';
import { configString } from './tensors.ts';

/**
 * Returns the module's weight when the checkpoint stores it quantized, or undefined when it is
 * a plain floating-point `.weight`. The layout is decided per module from the tensors present
 * (as HF does: an `ignore`d or `modules_to_not_convert` module simply has a BF16 `.weight`);
 * `quantization_config` supplies only parameters (group size, block size, v1/v2, bits).
 *
 * | tensors present                          | format                               | result |
 * |------------------------------------------|--------------------------------------|--------|
 * | `qvl_q8.qs` / `qvl_q4.qs`                | qvl's own (`qvl quantize`)           | q8/q4  |
 * | `weight_packed`                          | compressed-tensors pack-quantized    | q4     |
 * | `qweight` [in, out/8]                    | AutoAWQ GEMM                         | q4     |
 * | `qweight` [in/8, out]                    | GPTQ v1 / v2                         | q4     |
 * | `weight_scale_inv`                       | fine-grained FP8 (official Qwen FP8) | fp8    |
 * | `weight` F8_E4M3 + `weight_scale`        | compressed-tensors float-quantized   | fp8    |
 */
export function detectQuantizedLinear(
  src: TensorSource,
  prefix: string,
  rows: number,
  cols: number,
  quantConfig?: Record<string, unknown>,
): WeightData | undefined {
  if (hasQvlQ4(src, prefix)) return readQvlQ4(src, prefix, rows, cols, quantConfig);
  if (hasQvlQ8(src, prefix)) return readQvlQ8(src, prefix, rows, cols);
  if (src.has(`${prefix}.weight_packed`)) return readPackQuantized(src, prefix, rows, cols, quantConfig);
  if (src.has(`${prefix}.qweight`)) {
    return isAwq(src, prefix, rows, cols, quantConfig) ? readAwqGemm(src, prefix, rows, cols, quantConfig) : readGptq(src, prefix, rows, cols, quantConfig);
  }
  if (src.has(`${prefix}.weight_scale_inv`)) return readFp8Block(src, prefix, rows, cols, quantConfig);
  const w = `${prefix}.weight`;
  const dtype = src.has(w) ? src.info(w).dtype : undefined;
  if (dtype === 'F8_E4M3') {
    if (src.has(`${prefix}.weight_scale`)) return readFp8Scaled(src, prefix, rows, cols, quantConfig);
    throw new QvlError('TENSOR_MISSING', `tensor ${prefix}.weight_scale_inv is missing: ${w} is F8_E4M3 and needs its block scales`, {
      tensor: `${prefix}.weight_scale_inv`,
      module: prefix,
    });
  }
  if (dtype === 'I8' || dtype === 'U8' || dtype === 'I32' || dtype === 'I16') {
    // e.g. compressed-tensors int-quantized (W8A8) or bitsandbytes: integer weights qvl cannot interpret
    throw new QvlError(
      'QUANT_INVALID',
      `tensor ${w} is ${dtype}: this quantized layout (quant_method ${JSON.stringify(configString(quantConfig, 'quant_method') ?? 'unknown')}) is not supported; ` +
        'qvl reads FP8, AWQ GEMM, GPTQ, compressed-tensors pack-quantized / float-quantized and its own q8/q4',
      { tensor: w, dtype },
    );
  }
  return undefined;
}

/** Whether the checkpoint holds a weight for Linear `prefix` in any layout qvl reads. */
export function hasLinearWeight(src: TensorSource, prefix: string): boolean {
  return ['weight', 'qweight', 'weight_packed', 'qvl_q8.qs', 'qvl_q4.qs'].some((s) => src.has(`${prefix}.${s}`));
}

/**
 * AWQ and GPTQ share tensor names; `quant_method` says which, and without it the packed axis
 * does ([in, out/8] is AWQ, [in/8, out] is GPTQ; the two never coincide).
 */
function isAwq(src: TensorSource, prefix: string, rows: number, cols: number, qc?: Record<string, unknown>): boolean {
  const method = configString(qc, 'quant_method')?.toLowerCase();
  if (method === 'awq') return true;
  if (method === 'gptq') return false;
  const shape = src.info(`${prefix}.qweight`).shape;
  return shape.length === 2 && shape[0] === cols && shape[1] * 8 === rows;
}
