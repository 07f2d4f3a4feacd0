import type { Q4Weight } from '../../kernels/weight.ts';
import type { TensorSource } from '../tensor-reader.ts';
import { ModuleTensors, actOrder, configInt, configString } from './tensors.ts';

/**
 * GPTQ (AutoGPTQ / GPTQModel / optimum, `quant_method: "gptq"`): `qweight` I32 [in/8, out]
 * (input i in word ⌊i/8⌋ at bits 4·(i mod 8)), `qzeros` I32 [groups, out/8] (output o at bits
 * 4·(o mod 8)), `scales` F16 [groups, out], optional `g_idx` I32 [in] (act-order, any order).
 * Wᵀ[i,o] = scales[g,o] · (q[i,o] − zero[g,o]) with g = g_idx[i] (default ⌊i/group_size⌋).
 * `checkpoint_format` "gptq" (v1, the default) stores zero − 1, so zero = nibble + 1 (up to 16);
 * "gptq_v2" stores the zero itself. Groups may be partial (groups = ⌈in/g⌉, as AutoGPTQ writes).
 */
export function readGptq(src: TensorSource, prefix: string, rows: number, cols: number, qc?: Record<string, unknown>): Q4Weight {
  // GPTQModel writes `format` in newer configs, `checkpoint_format` in older ones and in HF's
  const fmt = (configString(qc, 'checkpoint_format') ?? configString(qc, 'format') ?? 'gptq').toLowerCase();
  const m = new ModuleTensors(src, prefix, fmt === 'gptq_v2' ? 'GPTQ v2' : 'GPTQ');
  if (fmt !== 'gptq' && fmt !== 'gptq_v2') {
    throw m.invalid(`checkpoint_format "${fmt}" is not supported; qvl reads "gptq" (v1) and "gptq_v2"`, { checkpointFormat: fmt });
  }
  const bits = configInt(qc, ['bits'], 'quantization_config');
  if (bits !== undefined && bits !== 4) throw m.invalid(`quantization_config.bits is ${bits}; qvl reads 4-bit GPTQ only`, { bits });
  if (cols % 8 !== 0) throw m.invalid(`GPTQ packs 8 input features per int32, but in_features ${cols} is not a multiple of 8`);
  if (rows % 8 !== 0) throw m.invalid(`GPTQ packs 8 zero points per int32, but out_features ${rows} is not a multiple of 8`);
  const qw = m.info('qweight', ['I32']);
  m.shape(qw, [cols / 8, rows], `(GPTQ packs [in/8, out] for a [${rows}, ${cols}] Linear)`);
  const sInfo = m.info('scales', ['F16', 'BF16', 'F32']);
  let g = configInt(qc, ['group_size'], 'quantization_config');
  if (g === -1) g = cols;
  if (g === undefined) {
    if (sInfo.shape.length !== 2 || sInfo.shape[0] <= 0) throw m.invalid(`cannot infer the group size from scales of shape [${sInfo.shape.join(', ')}]`);
    g = Math.ceil(cols / sInfo.shape[0]);
  }
  if (g <= 0) throw m.invalid(`group_size ${g} must be positive`);
  const nG = Math.ceil(cols / g);
  m.shape(sInfo, [nG, rows], `(group_size ${g}: ⌈${cols}/${g}⌉ groups)`);
  const qzInfo = m.info('qzeros', ['I32']);
  m.shape(qzInfo, [nG, rows / 8], `(group_size ${g})`);
  let gIdx: Int32Array | undefined;
  if (m.has('g_idx')) {
    const gi = m.info('g_idx', ['I32', 'I64']);
    m.shape(gi, [cols], '(one group index per input feature)');
    gIdx = actOrder(m.ints('g_idx'), cols, g, nG, gi.name);
  }

  // Our q4 row (low nibble = even column) is byte-for-byte the little-endian words of one
  // output column of qweight, so transposing the words is the whole conversion.
  const qweight = m.i32('qweight');
  const wordsPerRow = cols / 8;
  const out32 = new Int32Array(rows * wordsPerRow);
  for (let r8 = 0; r8 < wordsPerRow; r8++) {
    const base = r8 * rows;
    for (let o = 0; o < rows; o++) out32[o * wordsPerRow + r8] = qweight[base + o];
  }
  const qs = new Uint8Array(out32.buffer);

  const qzeros = m.i32('qzeros');
  const sIn = m.scales('scales');
  const add = fmt === 'gptq' ? 1 : 0;
  const zw = rows / 8;
  const scales = new Float32Array(rows * nG);
  const zeros = new Uint8Array(rows * nG);
  for (let gi = 0; gi < nG; gi++) {
    for (let o = 0; o < rows; o++) {
      scales[o * nG + gi] = sIn[gi * rows + o];
      zeros[o * nG + gi] = ((qzeros[gi * zw + (o >> 3)] >>> (4 * (o & 7))) & 15) + add;
    }
  }
  return { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs, scales, zeros, ...(gIdx ? { gIdx } : {}) };
}
