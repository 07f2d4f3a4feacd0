import { QvlError } from '../../errors.ts';
import { dequantRow } from '../../kernels/ts/dequant.ts';
import type { Backend } from '../../kernels/backend.ts';
import type { Q4Weight, WeightData } from '../../kernels/weight.ts';
import { asymmetricGroup, nonFinite, roundAway } from '../convert.ts';

/**
 * GPTQ (Frantar et al., 2022, "Accurate post-training quantization for generative pre-trained
 * transformers"): a matrix's input columns are quantized one at a time, and each column's
 * rounding error is spread over the columns not yet quantized, through the inverse of the
 * Hessian H = Σ x·xᵀ of the layer's inputs x on calibration data. Round-to-nearest makes
 * ‖W − Ŵ‖ small; this makes ‖(W − Ŵ)·x‖ small for inputs like the calibration set's, which is
 * what the next layer sees. The output is the kernels' asymmetric q4 format, with scales chosen
 * and rounded to binary16 as the round-to-nearest quantizer of convert.ts does: only the codes,
 * and the groups' ranges that follow from them, differ.
 *
 * The O(n³) work (the factor of H⁻¹, and spreading a block of columns' errors over the rest)
 * is matrix products, handed to a `Gemm`: the backend's float32 GEMM at the 4B shape (a
 * 9728-wide Hessian), plain loops in tests. As in GPTQ's reference code, the arithmetic is
 * float32 there.
 */

/** C = A·Bᵀ for row-major float32 A [m, k] and B [n, k]; returns C [m, n]. */
export type Gemm = (a: Float32Array, m: number, k: number, b: Float32Array, n: number) => Float32Array;

export const plainGemm: Gemm = (a, m, k, b, n) => {
  const c = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * k + t] * b[j * k + t];
      c[i * n + j] = s;
    }
  }
  return c;
};

/** `Gemm` on a backend's float32 matmul (B taken as a float32 weight). */
export function backendGemm(be: Backend): Gemm {
  return (a, m, k, b, n) => be.matmul(a, m, be.prepare({ format: 'f32', rows: n, cols: k, data: b }));
}

/** Columns whose errors are spread one by one, within the block (a multiple of every group size). */
const BLOCK = 128;
/** Factors this wide or smaller are computed directly, in float64. */
const BASE = 128;

/**
 * The upper-triangular U (float32, n × n) with H⁻¹ = Uᵀ·U, for H (n × n, row-major, symmetric)
 * plus damping: GPTQ's `cholesky(inverse(H), upper=True)`. With P the reversal permutation,
 * P·H·P = L·Lᵀ gives H = R·Rᵀ where R = P·L·P is upper triangular, so H⁻¹ = R⁻ᵀ·R⁻¹ and
 * U = R⁻¹ = P·L⁻¹·P: one Cholesky factorization and one triangular inverse, computed together.
 * A column no calibration input reached (H[i,i] = 0) gets H[i,i] = 1: its weight then keeps
 * round-to-nearest codes and spreads nothing.
 */
export function inverseHessianFactor(h: Float64Array, n: number, damp = 0.01, gemm: Gemm = plainGemm): Float32Array {
  if (h.length !== n * n) throw new QvlError('TENSOR_SHAPE', `Hessian has ${h.length} values, expected ${n}×${n}`, { n });
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i];
  mean /= n;
  if (!Number.isFinite(mean)) throw new QvlError('QUANT_INVALID', 'the calibration Hessian is not finite', { n });
  const add = damp * (mean > 0 ? mean : 1);
  // a = P·H·P, damped
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = (n - 1 - i) * n;
    for (let j = 0; j < n; j++) a[i * n + j] = h[ri + (n - 1 - j)];
    if (a[i * n + i] === 0) a[i * n + i] = 1;
    a[i * n + i] += add;
  }
  const { li } = choleskyInverse(a, n, gemm);
  // U = P·L⁻¹·P
  const u = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)];
  return u;
}

/** L (lower, a = L·Lᵀ) and L⁻¹, n × n. Where n > BASE, by halves: four products per level. */
function choleskyInverse(a: Float64Array, n: number, gemm: Gemm): { l: Float32Array; li: Float32Array } {
  if (n <= BASE) return choleskyInverseDirect(a, n);
  const n1 = n >> 1;
  const n2 = n - n1;
  const top = new Float64Array(n1 * n1);
  const low = new Float32Array(n2 * n1);
  for (let i = 0; i < n1; i++) for (let j = 0; j < n1; j++) top[i * n1 + j] = a[i * n + j];
  for (let i = 0; i < n2; i++) for (let j = 0; j < n1; j++) low[i * n1 + j] = a[(n1 + i) * n + j];
  const f1 = choleskyInverse(top, n1, gemm);
  // L21 = A21·L11⁻ᵀ, then the Schur complement A22 − L21·L21ᵀ
  const l21 = gemm(low, n2, n1, f1.li, n1);
  const s = gemm(l21, n2, n1, l21, n2);
  const rest = new Float64Array(n2 * n2);
  for (let i = 0; i < n2; i++) for (let j = 0; j < n2; j++) rest[i * n2 + j] = a[(n1 + i) * n + n1 + j] - s[i * n2 + j];
  const f2 = choleskyInverse(rest, n2, gemm);
  // (L⁻¹)21 = −L22⁻¹·L21·L11⁻¹
  const t = gemm(l21, n2, n1, transpose(f1.li, n1, n1), n1);
  const li21 = gemm(f2.li, n2, n2, transpose(t, n2, n1), n1);
  const l = new Float32Array(n * n);
  const li = new Float32Array(n * n);
  for (let i = 0; i < n1; i++) {
    l.set(f1.l.subarray(i * n1, i * n1 + i + 1), i * n);
    li.set(f1.li.subarray(i * n1, i * n1 + i + 1), i * n);
  }
  for (let i = 0; i < n2; i++) {
    const r = (n1 + i) * n;
    l.set(l21.subarray(i * n1, (i + 1) * n1), r);
    for (let j = 0; j < n1; j++) li[r + j] = -li21[i * n1 + j];
    l.set(f2.l.subarray(i * n2, i * n2 + i + 1), r + n1);
    li.set(f2.li.subarray(i * n2, i * n2 + i + 1), r + n1);
  }
  return { l, li };
}

function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = m[i * cols + j];
  return t;
}

function choleskyInverseDirect(src: Float64Array, n: number): { l: Float32Array; li: Float32Array } {
  const a = Float64Array.from(src);
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j];
    for (let k = 0; k < j; k++) d -= a[rj + k] * a[rj + k];
    if (!(d > 0)) throw new QvlError('QUANT_INVALID', 'the calibration Hessian is not positive definite (raise the damping)', {});
    d = Math.sqrt(d);
    a[rj + j] = d;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
      a[ri + j] = s / d;
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    inv[ri + i] = 1 / a[ri + i];
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= a[ri + k] * inv[k * n + j];
      inv[ri + j] = s / a[ri + i];
    }
  }
  const l = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) l[i * n + j] = a[i * n + j];
  return { l, li: Float32Array.from(inv) };
}

/** How one kind of code quantizes a row: `start` at each group's first column, then `code` per column (returns the dequantized value). */
interface RowCoder {
  group: number;
  start(r: number, row: Float32Array, c0: number, c1: number): void;
  code(r: number, c: number, v: number): number;
}

/**
 * The GPTQ sweep over every row of `w`: each column is quantized and its error, divided by
 * U[c,c], taken off the later columns along U's row c; a group's range is chosen at its first
 * column, from the weights as the earlier columns' errors left them. The spreading is lazy, by
 * halves: a range of columns sweeps its first half, one product carries that half's errors to
 * the second half, then the second half sweeps; ranges of BLOCK columns or fewer spread column
 * by column. The products are then wide (the top one is rows × n/2 × n/2), which the GEMM
 * runs at several times the speed of BLOCK-deep ones.
 */
function sweep(w: WeightData, u: Float32Array, gemm: Gemm, coder: RowCoder): void {
  const { rows, cols: n } = w;
  if (u.length !== n * n) throw new QvlError('TENSOR_SHAPE', `inverse Hessian factor has ${u.length} values for a matrix of ${n} columns`, { cols: n });
  const wf = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const row = wf.subarray(r * n, (r + 1) * n);
    dequantRow(w, r, row);
    for (let c = 0; c < n; c++) if (!Number.isFinite(row[c])) throw nonFinite(r, c, row[c]);
  }
  // every column's error, divided by U[c,c]
  const err = new Float32Array(rows * n);
  const g = coder.group;
  const direct = (k0: number, k1: number) => {
    for (let r = 0; r < rows; r++) {
      const row = wf.subarray(r * n, (r + 1) * n);
      for (let c = k0; c < k1; c++) {
        if (c % g === 0) coder.start(r, row, c, Math.min(n, c + g));
        const v = row[c];
        const e = (v - coder.code(r, c, v)) / u[c * n + c];
        err[r * n + c] = e;
        if (e === 0) continue;
        const uc = c * n;
        for (let j = c + 1; j < k1; j++) row[j] -= e * u[uc + j];
      }
    }
  };
  const range = (k0: number, k1: number) => {
    if (k1 - k0 <= BLOCK) return direct(k0, k1);
    // split on a multiple of BLOCK, so that no group straddles two halves
    const mid = k0 + Math.ceil((k1 - k0) / 2 / BLOCK) * BLOCK;
    range(k0, mid);
    const b = mid - k0;
    const m = k1 - mid;
    const e = new Float32Array(rows * b);
    for (let r = 0; r < rows; r++) e.set(err.subarray(r * n + k0, r * n + mid), r * b);
    const ut = new Float32Array(m * b);
    for (let c = 0; c < b; c++) {
      const uc = (k0 + c) * n + mid;
      for (let j = 0; j < m; j++) ut[j * b + c] = u[uc + j];
    }
    const d = gemm(e, rows, b, ut, m);
    for (let r = 0; r < rows; r++) {
      const o = r * n + mid;
      const dr = r * m;
      for (let j = 0; j < m; j++) wf[o + j] -= d[dr + j];
    }
    range(mid, k1);
  };
  range(0, n);
}

/**
 * q4 with zero points, groups of `groupSize` along each row, as `quantizeQ4` (asymmetric) lays
 * them out: each group's scale and zero point are chosen (the same clipped-range search) from
 * its weights as the earlier columns' errors left them, then its codes are taken column by column.
 */
export function gptqQuantizeQ4(w: WeightData, u: Float32Array, opts: { groupSize?: number; gemm?: Gemm } = {}): Q4Weight {
  const { rows, cols } = w;
  const g = opts.groupSize ?? 32;
  if (BLOCK % g !== 0) throw new QvlError('OPTION_INVALID', `q4 group size must divide ${BLOCK}, got ${g}`, { groupSize: g });
  const nG = Math.ceil(cols / g);
  const rowBytes = Math.ceil(cols / 2);
  const qs = new Uint8Array(rows * rowBytes);
  const scales = new Float32Array(rows * nG);
  const zeros = new Uint8Array(rows * nG);
  let d = 0;
  let id = 0;
  let z = 0;
  sweep(w, u, opts.gemm ?? plainGemm, {
    group: g,
    start(r, row, c0, c1) {
      [d, z] = asymmetricGroup(row, c0, c1);
      id = d === 0 ? 0 : 1 / d;
      scales[r * nG + c0 / g] = d;
      zeros[r * nG + c0 / g] = z;
    },
    code(r, c, v) {
      let k = z;
      if (d !== 0) {
        k = roundAway(v * id) + z;
        k = k < 0 ? 0 : k > 15 ? 15 : k;
      }
      qs[r * rowBytes + (c >> 1)] |= k << ((c & 1) * 4);
      return (k - z) * d;
    },
  });
  return { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs, scales, zeros };
}
