import type { Q4Weight } from '../../kernels/weight.ts';
import type { TensorSource } from '../tensor-reader.ts';
import { ModuleTensors, configInt, configString } from './tensors.ts';

/** Nibble k (bits 4k…4k+3) of an AutoAWQ word holds output column 8c + AWQ_ORDER[k]. */
export const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7] as const;

/**
 * AutoAWQ GEMM (`quant_method: "awq"`, `version: "gemm"`): `qweight` I32 [in, out/8] (nibble
 * order AWQ_ORDER), `qzeros` I32 [in/g, out/8] (same order), `scales` F16 [in/g, out], with
 * Wᵀ[i,o] = (q[i,o] − z[⌊i/g⌋,o]) · s[⌊i/g⌋,o]. Transposed losslessly to a q4 [out, in] weight
 * with zero points. The layout cannot express a partial group, so in % g must be 0.
 */
export function readAwqGemm(src: TensorSource, prefix: string, rows: number, cols: number, qc?: Record<string, unknown>): Q4Weight {
  const m = new ModuleTensors(src, prefix, 'AWQ GEMM');
  const bits = configInt(qc, ['bits', 'w_bit'], 'quantization_config');
  if (bits !== undefined && bits !== 4) throw m.invalid(`quantization_config.bits is ${bits}; qvl reads 4-bit AWQ only`, { bits });
  const version = configString(qc, 'version');
  if (version !== undefined && version.toLowerCase() !== 'gemm') {
    throw m.invalid(`AWQ version "${version}" is not supported; qvl reads the GEMM layout (version "gemm")`, { version });
  }
  if (rows % 8 !== 0) throw m.invalid(`AWQ packs 8 output features per int32, but out_features ${rows} is not a multiple of 8`);
  const qw = m.info('qweight', ['I32']);
  m.shape(qw, [cols, rows / 8], `(AWQ packs [in, out/8] for a [${rows}, ${cols}] Linear)`);
  const sInfo = m.info('scales', ['F16', 'BF16', 'F32']);
  let g = configInt(qc, ['group_size', 'q_group_size'], 'quantization_config');
  if (g === -1) g = cols;
  if (g === undefined) {
    // no config: the scales' row count fixes the group size
    if (sInfo.shape.length !== 2 || sInfo.shape[0] <= 0 || cols % sInfo.shape[0] !== 0) {
      throw m.invalid(`cannot infer the group size: scales has shape [${sInfo.shape.join(', ')}] for ${cols} input features`);
    }
    g = cols / sInfo.shape[0];
  }
  if (g <= 0) throw m.invalid(`group_size ${g} must be positive`);
  if (cols % g !== 0) {
    throw m.invalid(`in_features ${cols} is not a multiple of group_size ${g}; AWQ's [in/g, out] scales cannot hold a partial group`, { groupSize: g });
  }
  const nG = cols / g;
  m.shape(sInfo, [nG, rows], `(group_size ${g})`);
  const qzInfo = m.info('qzeros', ['I32']);
  m.shape(qzInfo, [nG, rows / 8], `(group_size ${g})`);

  const qweight = m.i32('qweight');
  const qzeros = m.i32('qzeros');
  const sIn = m.scales('scales');
  const words = rows / 8;
  const rowBytes = Math.ceil(cols / 2);
  const qs = new Uint8Array(rows * rowBytes);
  const unpacked = new Uint8Array(rows);
  // Walk input features in pairs so each output byte (two adjacent inputs) is written once.
  for (let i = 0; i < cols; i += 2) {
    unpackRow(qweight, i * words, words, unpacked);
    const byteCol = i >> 1;
    if (i + 1 < cols) {
      const base1 = (i + 1) * words;
      for (let c = 0; c < words; c++) {
        const w = qweight[base1 + c];
        for (let k = 0; k < 8; k++) {
          const o = 8 * c + AWQ_ORDER[k];
          qs[o * rowBytes + byteCol] = unpacked[o] | (((w >>> (4 * k)) & 15) << 4);
        }
      }
    } else {
      for (let o = 0; o < rows; o++) qs[o * rowBytes + byteCol] = unpacked[o];
    }
  }
  const scales = new Float32Array(rows * nG);
  const zeros = new Uint8Array(rows * nG);
  for (let gi = 0; gi < nG; gi++) {
    unpackRow(qzeros, gi * words, words, unpacked);
    for (let o = 0; o < rows; o++) {
      scales[o * nG + gi] = sIn[gi * rows + o];
      zeros[o * nG + gi] = unpacked[o];
    }
  }
  return { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs, scales, zeros };
}

/** One AWQ-packed row of `words` int32 → 8·words nibbles in natural column order. */
function unpackRow(src: Int32Array, base: number, words: number, out: Uint8Array): void {
  for (let c = 0; c < words; c++) {
    const w = src[base + c];
    for (let k = 0; k < 8; k++) out[8 * c + AWQ_ORDER[k]] = (w >>> (4 * k)) & 15;
  }
}
