import type { Q4Weight } from '../../kernels/weight.ts';
import type { TensorSource } from '../tensor-reader.ts';
import { ModuleTensors, actOrder, configString } from './tensors.ts';

/** The `weights` quantization args of one compressed-tensors config group. */
interface WeightArgs {
  group: string;
  numBits: number;
  type: string;
  symmetric: boolean;
  strategy: string;
  groupSize?: number;
  format?: string;
  targets?: unknown;
}

/**
 * compressed-tensors `pack-quantized` (llm-compressor W4A16, AWQ or GPTQ flavoured):
 * `weight_packed` I32 [out, ⌈in/8⌉] (input i at bits 4·(i mod 8), stored offset-binary q + 8),
 * `weight_scale` [out, groups], `weight_shape` I64 [2], asymmetric only `weight_zero_point`
 * I32 [⌈out/8⌉, groups] packed along the output axis with the same offset, optional
 * `weight_g_idx` I32 [in] (activation order). W[o,i] = (q − zp) · scale[o, g(i)].
 * Stored nibbles are u = q + 8 and uz = zp + 8, so q4 holds them as they are (zero = uz, or 8).
 * A column count under the group size makes one partial group, as compressed-tensors allows.
 */
export function readPackQuantized(src: TensorSource, prefix: string, rows: number, cols: number, qc?: Record<string, unknown>): Q4Weight {
  const m = new ModuleTensors(src, prefix, 'compressed-tensors pack-quantized');
  const globalFormat = configString(qc, 'format');
  const packed = m.info('weight_packed', ['I32']);
  const wordsPerRow = Math.ceil(cols / 8);
  m.shape(packed, [rows, wordsPerRow], `(8 four-bit values per int32 for a [${rows}, ${cols}] Linear)`);
  if (m.has('weight_shape')) {
    const ws = m.ints('weight_shape');
    if (ws.length !== 2 || ws[0] !== rows || ws[1] !== cols) {
      throw m.invalid(`weight_shape says [${ws.join(', ')}] but the Linear is [${rows}, ${cols}]`, { weightShape: ws });
    }
  }
  const sInfo = m.info('weight_scale', ['BF16', 'F16', 'F32']);
  if (sInfo.shape.length !== 2 || sInfo.shape[0] !== rows) {
    m.shape(sInfo, [rows, sInfo.shape.length === 2 ? sInfo.shape[1] : 1], '(one scale row per output feature)');
  }
  const nG = sInfo.shape[1];
  const hasZp = m.has('weight_zero_point');
  const args = chooseArgs(m, weightArgs(qc), cols, nG, hasZp);
  if (args) {
    const fmt = args.format ?? globalFormat;
    if (fmt !== undefined && fmt !== 'pack-quantized' && fmt !== 'mixed-precision') {
      throw m.invalid(`format "${fmt}" is not supported here; qvl reads "pack-quantized"`, { format: fmt });
    }
    if (args.numBits !== 4) throw m.invalid(`num_bits is ${args.numBits} (config group ${args.group}); qvl reads 4-bit pack-quantized only`, { bits: args.numBits });
    if (args.type !== 'int') throw m.invalid(`weights type "${args.type}" is not supported; expected "int"`);
    if (!args.symmetric && !hasZp) {
      m.info('weight_zero_point'); // config group says asymmetric: the zero points must be there
    }
  } else if (globalFormat !== undefined && globalFormat !== 'pack-quantized' && globalFormat !== 'mixed-precision') {
    throw m.invalid(`format "${globalFormat}" is not supported here; qvl reads "pack-quantized"`, { format: globalFormat });
  }
  const g = args?.strategy === 'channel' || nG === 1 ? Math.max(cols, args?.groupSize ?? 0) : (args?.groupSize ?? cols / nG);
  if (!Number.isInteger(g) || g <= 0 || Math.ceil(cols / g) !== nG) {
    throw m.invalid(`weight_scale has ${nG} groups per row, which does not fit ${cols} input features in groups of ${g}`, { groups: nG });
  }

  // Our q4 row is the little-endian bytes of the packed words, minus the padding of a last
  // partial word; when in % 8 == 0 it is the tensor itself (no copy under a memory mapping).
  const rowBytes = Math.ceil(cols / 2);
  let qs: Uint8Array;
  const raw = m.u8('weight_packed');
  if (rowBytes === wordsPerRow * 4) {
    qs = raw;
  } else {
    qs = new Uint8Array(rows * rowBytes);
    for (let r = 0; r < rows; r++) qs.set(raw.subarray(r * wordsPerRow * 4, r * wordsPerRow * 4 + rowBytes), r * rowBytes);
    if (cols & 1) for (let r = 0; r < rows; r++) qs[r * rowBytes + rowBytes - 1] &= 15;
  }
  const scales = m.scales('weight_scale');
  let zeros: Uint8Array | undefined;
  if (hasZp) zeros = readZeroPoints(m, rows, nG);
  let gIdx: Int32Array | undefined;
  if (m.has('weight_g_idx')) {
    const gi = m.info('weight_g_idx', ['I32', 'I64']);
    m.shape(gi, [cols], '(one group index per input feature)');
    const v = m.ints('weight_g_idx');
    // compressed-tensors writes −1 everywhere when activation order was not used
    const unset = v.every((x) => x === -1);
    if (!unset) gIdx = actOrder(v, cols, g, nG, gi.name);
  }
  return { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs, scales, ...(zeros ? { zeros } : {}), ...(gIdx ? { gIdx } : {}) };
}

/** Zero points packed along the output axis ([⌈out/8⌉, groups]) or unpacked ([out, groups], signed). */
function readZeroPoints(m: ModuleTensors, rows: number, nG: number): Uint8Array {
  const info = m.info('weight_zero_point', ['I32', 'I8', 'I16', 'I64']);
  const zeros = new Uint8Array(rows * nG);
  if (info.dtype === 'I32' && info.shape.length === 2 && info.shape[0] === Math.ceil(rows / 8) && info.shape[1] === nG && rows !== Math.ceil(rows / 8)) {
    const zp = m.i32('weight_zero_point');
    for (let o = 0; o < rows; o++) {
      const base = (o >> 3) * nG;
      const shift = 4 * (o & 7);
      for (let gi = 0; gi < nG; gi++) zeros[o * nG + gi] = (zp[base + gi] >>> shift) & 15;
    }
    return zeros;
  }
  m.shape(info, [rows, nG], `(zero points, packed [${Math.ceil(rows / 8)}, ${nG}] or unpacked [${rows}, ${nG}])`);
  const v = m.ints('weight_zero_point');
  for (let i = 0; i < v.length; i++) {
    if (v[i] < -8 || v[i] > 7) throw m.invalid(`weight_zero_point[${i}] = ${v[i]} is outside the 4-bit range −8..7`);
    zeros[i] = v[i] + 8;
  }
  return zeros;
}

function weightArgs(qc?: Record<string, unknown>): WeightArgs[] {
  const groups = qc?.config_groups;
  if (!groups || typeof groups !== 'object') return [];
  const out: WeightArgs[] = [];
  for (const [name, grp] of Object.entries(groups as Record<string, unknown>)) {
    const w = (grp as { weights?: Record<string, unknown> })?.weights;
    if (!w || typeof w !== 'object') continue;
    out.push({
      group: name,
      numBits: typeof w.num_bits === 'number' ? w.num_bits : 4,
      type: typeof w.type === 'string' ? w.type : 'int',
      symmetric: w.symmetric !== false,
      strategy: typeof w.strategy === 'string' ? w.strategy : 'group',
      groupSize: typeof w.group_size === 'number' && w.group_size > 0 ? w.group_size : undefined,
      format: typeof (grp as Record<string, unknown>).format === 'string' ? ((grp as Record<string, unknown>).format as string) : undefined,
      targets: (grp as Record<string, unknown>).targets,
    });
  }
  return out;
}

/**
 * The config group that describes this module: among those whose `targets` name it (or all,
 * when none does), the one whose group size and symmetry agree with the tensors present.
 */
function chooseArgs(m: ModuleTensors, all: WeightArgs[], cols: number, nG: number, hasZp: boolean): WeightArgs | undefined {
  if (all.length === 0) return undefined;
  const targeted = all.filter((a) => targetsMatch(a.targets, m.prefix));
  const pool = targeted.length ? targeted : all;
  const fits = (a: WeightArgs) => {
    const groups = a.strategy === 'channel' ? 1 : Math.ceil(cols / (a.groupSize ?? cols));
    return groups === nG && (a.symmetric ? true : hasZp);
  };
  const good = pool.filter(fits);
  if (good.length) return good[0];
  const a = pool[0];
  const expect = a.strategy === 'channel' ? 1 : Math.ceil(cols / (a.groupSize ?? cols));
  if (expect !== nG) {
    throw m.invalid(
      `weight_scale has ${nG} groups per row, but config group ${a.group} (strategy ${a.strategy}, group_size ${a.groupSize ?? 'none'}) gives ${expect} for ${cols} input features`,
      { groups: nG, expected: expect },
    );
  }
  return a;
}

function targetsMatch(targets: unknown, prefix: string): boolean {
  if (!Array.isArray(targets)) return false;
  return targets.some((t) => {
    if (typeof t !== 'string') return false;
    if (t === 'Linear') return true;
    if (t.startsWith('re:')) {
      try {
        return new RegExp(t.slice(3)).test(prefix);
      } catch {
        return false;
      }
    }
    return prefix === t || prefix.endsWith(`.${t}`);
  });
}
