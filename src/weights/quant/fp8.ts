import type { Fp8Weight } from '../../kernels/weight.ts';
import type { TensorSource } from '../tensor-reader.ts';
import { ModuleTensors, configInt } from './tensors.ts';

/**
 * Fine-grained FP8 (the official `Qwen/Qwen3-VL-*-FP8` repos, HF `quant_method: "fp8"`):
 * `weight` F8_E4M3 [out, in] and `weight_scale_inv` [⌈out/br⌉, ⌈in/bc⌉] with
 * W[o,i] = e4m3(Wq[o,i]) · S[⌊o/br⌋, ⌊i/bc⌋] — the "inv" scale multiplies. The block [br, bc]
 * comes from `weight_block_size` (default [128, 128]); a single scale means one per tensor.
 * Partial edge blocks (out or in not a multiple of the block) simply use the last scale row/column.
 */
export function readFp8Block(src: TensorSource, prefix: string, rows: number, cols: number, qc?: Record<string, unknown>): Fp8Weight {
  const m = new ModuleTensors(src, prefix, 'FP8 block');
  const w = m.info('weight', ['F8_E4M3']);
  m.shape(w, [rows, cols], `(the Linear is [${rows}, ${cols}])`);
  const s = m.info('weight_scale_inv', ['F32', 'BF16', 'F16']);
  const count = s.shape.reduce((a, d) => a * d, 1);
  let br: number;
  let bc: number;
  const block = qc?.weight_block_size;
  if (Array.isArray(block)) {
    if (block.length !== 2 || !block.every((b) => Number.isInteger(b) && b > 0)) {
      throw m.invalid(`quantization_config.weight_block_size must be two positive integers, got ${JSON.stringify(block)}`);
    }
    [br, bc] = block as number[];
  } else if (count === 1) {
    [br, bc] = [rows, cols];
  } else {
    [br, bc] = [128, 128];
  }
  const grid = [Math.ceil(rows / br), Math.ceil(cols / bc)];
  // a single block may store its scale as [], [1] or [1, 1]
  const single = grid[0] * grid[1] === 1 && count === 1;
  if (!single) m.shape(s, grid, `(weight [${rows}, ${cols}] in ${br}×${bc} blocks)`);
  return { format: 'fp8', rows, cols, qs: m.u8('weight'), scales: m.scales('weight_scale_inv'), blockRows: br, blockCols: bc };
}

/**
 * compressed-tensors `float-quantized` FP8 (llm-compressor "FP8-Dynamic"/"W8A8-FP8" repos):
 * `weight` F8_E4M3 [out, in] and `weight_scale` per tensor ([] or [1]), per output channel
 * ([out, 1]) or per group ([out, in/g]), W = e4m3(Wq) · scale. Activation scales (static
 * schemes) are not used: qvl keeps activations in float32.
 */
export function readFp8Scaled(src: TensorSource, prefix: string, rows: number, cols: number, qc?: Record<string, unknown>): Fp8Weight {
  const m = new ModuleTensors(src, prefix, 'compressed-tensors FP8');
  const w = m.info('weight', ['F8_E4M3']);
  m.shape(w, [rows, cols], `(the Linear is [${rows}, ${cols}])`);
  const s = m.info('weight_scale', ['F32', 'BF16', 'F16']);
  const count = s.shape.reduce((a, d) => a * d, 1);
  let br: number;
  let bc: number;
  if (count === 1) {
    [br, bc] = [rows, cols];
  } else if (s.shape.length === 2 && s.shape[0] === rows) {
    // channel ([out, 1]) or group ([out, ⌈in/g⌉]) strategy
    const g = s.shape[1] === 1 ? cols : (groupSizeOf(qc) ?? cols / s.shape[1]);
    if (!Number.isInteger(g) || g <= 0 || Math.ceil(cols / g) !== s.shape[1]) {
      throw m.invalid(`weight_scale has ${s.shape[1]} groups per row, which no group size divides ${cols} columns into`);
    }
    [br, bc] = [1, g];
  } else if (s.shape.length === 2) {
    const bs = blockStructureOf(qc) ?? [128, 128];
    [br, bc] = bs;
    m.shape(s, [Math.ceil(rows / br), Math.ceil(cols / bc)], `(weight [${rows}, ${cols}] in ${br}×${bc} blocks)`);
  } else {
    throw m.invalid(`weight_scale has shape [${s.shape.join(', ')}]; expected a scalar, [${rows}, 1] or [${rows}, groups]`);
  }
  return { format: 'fp8', rows, cols, qs: m.u8('weight'), scales: m.scales('weight_scale'), blockRows: br, blockCols: bc };
}

function weightArgs(qc?: Record<string, unknown>): Record<string, unknown>[] {
  const groups = qc?.config_groups;
  if (!groups || typeof groups !== 'object') return [];
  return Object.values(groups as Record<string, unknown>)
    .map((g) => (g as { weights?: unknown })?.weights)
    .filter((w): w is Record<string, unknown> => !!w && typeof w === 'object');
}

function groupSizeOf(qc?: Record<string, unknown>): number | undefined {
  for (const w of weightArgs(qc)) {
    const g = configInt(w, ['group_size'], 'config_groups.*.weights');
    if (g !== undefined && g > 0) return g;
  }
  return undefined;
}

function blockStructureOf(qc?: Record<string, unknown>): [number, number] | undefined {
  for (const w of weightArgs(qc)) {
    const b = w.block_structure;
    if (Array.isArray(b) && b.length === 2 && b.every((x) => Number.isInteger(x) && x > 0)) return [b[0], b[1]];
  }
  return undefined;
}
