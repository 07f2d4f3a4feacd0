import { Q8_BLOCK, type Q4Weight, type Q8Weight } from '../../kernels/weight.ts';
import type { TensorSource } from '../tensor-reader.ts';
import { ModuleTensors, actOrder, configInt, view } from './tensors.ts';

/**
 * qvl's own quantized checkpoint layout (written by `qvl quantize`, docs/quantization.md).
 * Per Linear `<prefix>`:
 *   q8: `<prefix>.qvl_q8.qs` I8 [out, in], `<prefix>.qvl_q8.scales` F32 [out, ⌈in/32⌉]
 *   q4: `<prefix>.qvl_q4.qs` U8 [out, ⌈in/2⌉] (low nibble = even column),
 *       `<prefix>.qvl_q4.scales` F32 [out, groups], optional `<prefix>.qvl_q4.zeros` U8
 *       [out, groups] (absent = symmetric, zero 8), optional `<prefix>.qvl_q4.g_idx` I32 [in]
 * These are the kernels' own arrays, so a memory-mapped file is used without copying.
 * config.json carries `quantization_config: {quant_method: "qvl", format_version: 1,
 * group_size, …}`; the q4 group size comes from there.
 */
export const QVL_FORMAT_VERSION = 1;

export const QVL_SUFFIX = {
  q8: { qs: 'qvl_q8.qs', scales: 'qvl_q8.scales' },
  q4: { qs: 'qvl_q4.qs', scales: 'qvl_q4.scales', zeros: 'qvl_q4.zeros', gIdx: 'qvl_q4.g_idx' },
} as const;

export function hasQvlQ8(src: TensorSource, prefix: string): boolean {
  return src.has(`${prefix}.${QVL_SUFFIX.q8.qs}`);
}

export function hasQvlQ4(src: TensorSource, prefix: string): boolean {
  return src.has(`${prefix}.${QVL_SUFFIX.q4.qs}`);
}

export function readQvlQ8(src: TensorSource, prefix: string, rows: number, cols: number): Q8Weight {
  const m = new ModuleTensors(src, prefix, 'qvl q8');
  const s = QVL_SUFFIX.q8;
  m.shape(m.info(s.qs, ['I8']), [rows, cols], `(the Linear is [${rows}, ${cols}])`);
  m.shape(m.info(s.scales, ['F32']), [rows, Math.ceil(cols / Q8_BLOCK)], `(one scale per ${Q8_BLOCK} columns)`);
  return { format: 'q8', rows, cols, qs: view(m.u8(s.qs), 1, Int8Array), scales: m.scales(s.scales) };
}

export function readQvlQ4(src: TensorSource, prefix: string, rows: number, cols: number, qc?: Record<string, unknown>): Q4Weight {
  const m = new ModuleTensors(src, prefix, 'qvl q4');
  const s = QVL_SUFFIX.q4;
  const g = configInt(qc, ['group_size'], 'quantization_config');
  if (g === undefined || g <= 0) {
    throw m.invalid('config.json quantization_config.group_size (a positive integer) is needed to read qvl q4 weights', { groupSize: g });
  }
  m.shape(m.info(s.qs, ['U8']), [rows, Math.ceil(cols / 2)], `(two 4-bit values per byte for a [${rows}, ${cols}] Linear)`);
  const sInfo = m.info(s.scales, ['F32']);
  let gIdx: Int32Array | undefined;
  let nG = Math.ceil(cols / g);
  if (m.has(s.gIdx)) {
    const gi = m.info(s.gIdx, ['I32']);
    m.shape(gi, [cols], '(one group index per input feature)');
    if (sInfo.shape.length === 2) nG = sInfo.shape[1];
    gIdx = actOrder(m.i32(s.gIdx), cols, g, nG, gi.name);
    if (!gIdx) nG = Math.ceil(cols / g);
  }
  m.shape(sInfo, [rows, nG], `(group_size ${g})`);
  let zeros: Uint8Array | undefined;
  if (m.has(s.zeros)) {
    m.shape(m.info(s.zeros, ['U8']), [rows, nG], `(group_size ${g})`);
    zeros = m.u8(s.zeros);
  }
  return { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs: m.u8(s.qs), scales: m.scales(s.scales), ...(zeros ? { zeros } : {}), ...(gIdx ? { gIdx } : {}) };
}
