/** Shared helpers of the native backend tests: seeded inputs, weights of every format, bounds. */
import { E4M3_TABLE, f32ToBf16, f32ToF16 } from '../src/kernels/dtypes.ts';
import { dequantRow } from '../src/kernels/ts/dequant.ts';
import { Q8_BLOCK, q4GroupOf, type WeightData } from '../src/kernels/weight.ts';
import { nearestHalfScale } from '../src/weights/convert.ts';
import { KERNEL_SETS, nativeAvailable, loadNativeBackend, type KernelSet, type NativeBackend } from '../src/kernels/native/index.ts';

/** Why the native tests skip, or null when the addon loads. */
export const skipReason: string | false = nativeAvailable()
  ? false
  : 'native addon not built (run "npm run build:native"); native tests skipped';

export function backend(): NativeBackend {
  return loadNativeBackend();
}

/** Instruction sets this CPU can run, best first. */
export function isas(nb: NativeBackend): KernelSet[] {
  const out: KernelSet[] = [];
  for (const isa of KERNEL_SETS) {
    try {
      nb.useInstructionSet(isa);
      out.push(isa);
    } catch {
      // not supported here
    }
  }
  nb.useInstructionSet('best');
  return out;
}

/** The thread-pool sizes and the instruction sets (scalar runs the portable build) to cover. */
export function forEachSetting(f: (setting: string) => void): void {
  const nb = backend();
  const before = nb.threads;
  try {
    for (const isa of isas(nb)) {
      nb.useInstructionSet(isa);
      for (const threads of [1, 2]) {
        nb.setThreads(threads);
        f(`${isa}, ${threads} thread${threads > 1 ? 's' : ''}`);
      }
    }
  } finally {
    nb.useInstructionSet('best');
    nb.setThreads(before);
  }
}

export { rng } from './helpers/rng.ts';

export function randn(r: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

export interface WeightSpec {
  label: string;
  make: (r: () => number, rows: number, cols: number) => WeightData;
}

/** A random q4 weight; `zeroLevels`: zero points drawn from 0 … zeroLevels − 1 (17: GPTQ v1's zero + 1 reaches 16). */
export function q4(r: () => number, rows: number, cols: number, groupSize: number, zeros: boolean, actOrder: boolean, zeroLevels = 17): WeightData {
  const nGroups = Math.ceil(cols / groupSize);
  const qs = new Uint8Array(rows * Math.ceil(cols / 2));
  for (let i = 0; i < qs.length; i++) qs[i] = Math.floor(r() * 256);
  const scales = new Float32Array(rows * nGroups);
  for (let i = 0; i < scales.length; i++) scales[i] = 0.01 + 0.1 * r();
  const w: WeightData = { format: 'q4', rows, cols, groupSize, nGroups, qs, scales };
  if (zeros) {
    w.zeros = new Uint8Array(rows * nGroups);
    for (let i = 0; i < w.zeros.length; i++) w.zeros[i] = Math.floor(r() * zeroLevels);
  }
  if (actOrder) {
    // GPTQ desc_act: each group still holds groupSize columns, scattered over the row
    const perm = Array.from({ length: cols }, (_, i) => i);
    for (let i = cols - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    w.gIdx = new Int32Array(cols);
    for (let c = 0; c < cols; c++) w.gIdx[perm[c]] = Math.floor(c / groupSize);
  }
  return w;
}

/** Random q8 codes and scales; half: scales that binary16 holds (the repacked stream keeps 2 bytes). */
function q8(r: () => number, rows: number, cols: number, half: boolean): WeightData {
  const qs = new Int8Array(rows * cols);
  for (let i = 0; i < qs.length; i++) qs[i] = Math.floor(r() * 256) - 128;
  const scales = new Float32Array(rows * Math.ceil(cols / Q8_BLOCK));
  for (let i = 0; i < scales.length; i++) scales[i] = half ? nearestHalfScale(0.001 + 0.01 * r()) : 0.001 + 0.01 * r();
  return { format: 'q8', rows, cols, qs, scales };
}

export const WEIGHT_SPECS: WeightSpec[] = [
  { label: 'f32', make: (r, rows, cols) => ({ format: 'f32', rows, cols, data: randn(r, rows * cols, 0.5) }) },
  {
    label: 'bf16',
    make: (r, rows, cols) => ({ format: 'bf16', rows, cols, data: Uint16Array.from(randn(r, rows * cols, 0.5), f32ToBf16) }),
  },
  {
    label: 'f16',
    make: (r, rows, cols) => ({ format: 'f16', rows, cols, data: Uint16Array.from(randn(r, rows * cols, 0.5), f32ToF16) }),
  },
  { label: 'q8', make: (r, rows, cols) => q8(r, rows, cols, false) },
  { label: 'q8 binary16 scales', make: (r, rows, cols) => q8(r, rows, cols, true) },
  { label: 'q4 g32', make: (r, rows, cols) => q4(r, rows, cols, 32, false, false) },
  { label: 'q4 g32 zeros', make: (r, rows, cols) => q4(r, rows, cols, 32, true, false) },
  { label: 'q4 g128', make: (r, rows, cols) => q4(r, rows, cols, 128, false, false) },
  { label: 'q4 g128 zeros', make: (r, rows, cols) => q4(r, rows, cols, 128, true, false) },
  { label: 'q4 g32 act-order', make: (r, rows, cols) => q4(r, rows, cols, 32, true, true) },
  { label: 'q4 g128 act-order', make: (r, rows, cols) => q4(r, rows, cols, 128, false, true) },
  {
    label: 'fp8',
    make: (r, rows, cols) => {
      const qs = new Uint8Array(rows * cols);
      for (let i = 0; i < qs.length; i++) {
        let b = Math.floor(r() * 256);
        if ((b & 0x7f) === 0x7f) b ^= 1; // NaN codes are checked by the gatherRows test
        qs[i] = b;
      }
      const blockRows = 16;
      const blockCols = 24;
      const scales = new Float32Array(Math.ceil(rows / blockRows) * Math.ceil(cols / blockCols));
      for (let i = 0; i < scales.length; i++) scales[i] = 0.001 + 0.01 * r();
      return { format: 'fp8', rows, cols, qs, scales, blockRows, blockCols };
    },
  },
];

/**
 * Tokens per int8 GEMV pass, and the most tokens that take int8 passes over q4 weights in the
 * AVX-512 sets and the mixed one (native/kernels.h); the AVX2 sets take every q4 matmul there.
 */
export const INT8_PASS_TOKENS = 8;
export const INT8_MAX_TOKENS_Q4 = 64;

/** The most tokens for which `isa` runs a q4 matmul as int8 passes (`packed`: repacked at prepare, any length). */
export function int8MaxTokensQ4(isa: string, packed = false): number {
  return packed || isa === 'avx2' || isa === 'avx2vnni' ? Infinity : INT8_MAX_TOKENS_Q4;
}

/**
 * Whether the kernels quantize the activations to int8 for this call (see native/gemv_int8.inc);
 * `packed`: the weight was prepared with repack (the default), which every group size that is a
 * multiple of 32 takes (native/q4x8.h).
 */
export function usesInt8Activations(isa: string, n: number, w: WeightData, packed = true): boolean {
  if (isa === 'scalar') return false;
  const repacked = packed && w.format === 'q4' && !w.gIdx && w.groupSize % 32 === 0;
  if (n > (w.format === 'q4' ? int8MaxTokensQ4(isa, repacked) : INT8_PASS_TOKENS)) return false;
  if (w.format === 'q8') return true;
  if (w.format !== 'q4' || w.gIdx) return false;
  if (repacked) return true;
  // AVX2 reads one scale per 64 columns, AVX-512 per 128 (a mixed set with AVX-VNNI takes AVX2's int8 GEMV)
  const wide = isa.startsWith('avx512') && !isa.endsWith('+avx2vnni-gemv');
  return w.groupSize === 32 || w.groupSize === 64 || w.groupSize % (wide ? 128 : 64) === 0;
}

/**
 * How finely the kernels quantize the activations for this call: 127 levels (int8, see
 * usesInt8Activations), 32767 (int16: q8 prompts and vision layers, native/gemm_q8i16.inc) or
 * 0 (float32). `packed` as for usesInt8Activations: row-major q8 prompts of up to 32 tokens take
 * float passes of the dense GEMV on AVX-512 (8 on AVX2, whose GEMM is faster from 9 tokens).
 */
export function activationLevels(isa: string, n: number, w: WeightData, packed = true): number {
  if (usesInt8Activations(isa, n, w, packed)) return 127;
  if (isa === 'scalar' || w.format !== 'q8') return 0;
  const floatPasses = !packed && isa.startsWith('avx512') ? 32 : INT8_PASS_TOKENS;
  return n > floatPasses ? 32767 : 0;
}

const U = 2 ** -24;

/**
 * Largest |native − oracle| that float32 arithmetic allows for each output of x·Wᵀ:
 * (K + 8)·u·Σ|x_k·w_k| for a float32 dot product (the oracle sums in float64). With activations
 * quantized to `levels` per block (activationLevels; 0: float), add Σ_b (d_b/2)·Σ_{k∈b}|w_k| (each
 * activation moves by at most half its block's step d_b = max|x_b|/levels), and measure the
 * rounding against Σ|x̂|·(|q| + z)·s for q4, whose zero-point term is subtracted after the sum.
 */
export function matmulBounds(x: Float32Array, n: number, w: WeightData, levels: number): Float64Array {
  const int8 = levels > 0;
  const K = w.cols;
  const bound = new Float64Array(n * w.rows);
  const row = new Float32Array(K);
  const step = new Float64Array(n * Math.ceil(K / 32));
  for (let t = 0; t < n; t++) {
    for (let b = 0; b * 32 < K; b++) {
      let m = 0;
      for (let c = b * 32; c < Math.min(K, b * 32 + 32); c++) m = Math.max(m, Math.abs(x[t * K + c]));
      step[t * Math.ceil(K / 32) + b] = int8 ? m / levels : 0;
    }
  }
  for (let r = 0; r < w.rows; r++) {
    dequantRow(w, r, row);
    for (let t = 0; t < n; t++) {
      let mag = 0;
      let quant = 0;
      for (let c = 0; c < K; c++) {
        const xa = Math.abs(x[t * K + c]);
        const d = step[t * Math.ceil(K / 32) + Math.floor(c / 32)];
        if (int8 && w.format === 'q4') {
          const g = r * w.nGroups + q4GroupOf(w, c);
          const byte = w.qs[r * Math.ceil(K / 2) + (c >> 1)];
          const q = c & 1 ? byte >> 4 : byte & 15;
          mag += (xa + d) * (q + (w.zeros ? w.zeros[g] : 8)) * w.scales[g];
        } else {
          mag += xa * Math.abs(row[c]) + (int8 ? d * Math.abs(row[c]) : 0);
        }
        if (int8) quant += 0.5 * d * Math.abs(row[c]);
      }
      bound[t * w.rows + r] = (int8 ? 4 : 1) * (K + 8) * U * mag + quant * 1.001 + 1e-30;
    }
  }
  return bound;
}

/** Index of the first element where |a − b| > tol(i) (NaN equals NaN), or −1. */
export function firstViolation(a: Float32Array, b: Float32Array, tol: (i: number) => number): number {
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue;
    if (!(Math.abs(a[i] - b[i]) <= tol(i))) return i;
  }
  return -1;
}

export { E4M3_TABLE };

/** As test/native-attention.test.ts: score error through the softmax, times max|v|. */
export function kvAttentionTolerance(q: Float32Array, k: Float32Array, v: Float32Array, hd: number, scale: number): number {
  const mx = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scoreErr = 2 * hd * 2 ** -24 * mx(q) * mx(k) * scale * hd;
  return mx(v) * (4 * scoreErr + 64 * 2 ** -24);
}
