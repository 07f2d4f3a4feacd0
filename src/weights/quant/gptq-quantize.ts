import { QvlError } from '../../errors.ts';
import { dequantRow } from '../../kernels/ts/dequant.ts';
import type { Backend } from '../../kernels/backend.ts';
import { nativeGptqSweepAvailable, nativeGptqSweepQ4 } from '../../kernels/native/gptq-sweep.ts';
import type { Q4Weight, WeightData } from '../../kernels/weight.ts';
import { asymmetricGroup, nonFinite, roundAway } from '../convert.ts';
import { GptqScratch } from './gptq-scratch.ts';

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

/** C = A·Bᵀ for row-major float32 A [m, k] and B [n, k]; returns C [m, n] (in `out` when given). */
export type Gemm = (a: Float32Array, m: number, k: number, b: Float32Array, n: number, out?: Float32Array) => Float32Array;

export const plainGemm: Gemm = (a, m, k, b, n, out) => {
  const c = out ?? new Float32Array(m * n);
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
  return (a, m, k, b, n, out) => {
    const w = be.prepare({ format: 'f32', rows: n, cols: k, data: b });
    try {
      return be.matmul(a, m, w, null, out);
    } finally {
      be.release?.(w);
    }
  };
}

export interface FactorOptions {
  /** a fraction of H's mean diagonal added to it; default 0.01 */
  damp?: number;
  gemm?: Gemm;
  scratch?: GptqScratch;
  /** the factor may work in H's own array (H is lost): at 9728 columns that spares a 0.76 GB copy */
  consumeH?: boolean;
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
 * round-to-nearest codes and spreads nothing. With `opts.scratch`, U is the scratch's array: valid
 * until the next factor of the same width on that scratch.
 */
export function inverseHessianFactor(h: Float64Array, n: number, opts: FactorOptions = {}): Float32Array {
  const { damp = 0.01, gemm = plainGemm, scratch = new GptqScratch() } = opts;
  if (h.length !== n * n) throw new QvlError('TENSOR_SHAPE', `Hessian has ${h.length} values, expected ${n}×${n}`, { n });
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i];
  mean /= n;
  if (!Number.isFinite(mean)) throw new QvlError('QUANT_INVALID', 'the calibration Hessian is not finite', { n });
  const add = damp * (mean > 0 ? mean : 1);
  // a = P·H·P (H turned half a turn), damped
  let a: Float64Array;
  if (opts.consumeH) {
    a = h;
    for (let i = 0, k = n * n - 1; i < k; i++, k--) {
      const t = a[i];
      a[i] = a[k];
      a[k] = t;
    }
  } else {
    a = scratch.f64('a', n * n);
    for (let i = 0; i < n; i++) {
      const ri = (n - 1 - i) * n;
      for (let j = 0; j < n; j++) a[i * n + j] = h[ri + (n - 1 - j)];
    }
  }
  for (let i = 0; i < n; i++) {
    if (a[i * n + i] === 0) a[i * n + i] = 1;
    a[i * n + i] += add;
  }
  const li = scratch.f32('li', n * n);
  choleskyInverse(a, 0, n, n, gemm, scratch, li);
  // U = P·L⁻¹·P, in the scratch's array when there is one (0.38 GB at 9728 columns)
  const u = opts.scratch ? scratch.f32('u', n * n) : new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    u.fill(0, i * n, i * n + i);
    for (let j = i; j < n; j++) u[i * n + j] = li[(n - 1 - i) * n + (n - 1 - j)];
  }
  return u;
}

/**
 * L⁻¹ (lower, A = L·Lᵀ) into `out` (n × n, every value written), for A the n × n block of `a` at
 * `off` with rows `lda` apart. Where n > BASE, by halves: four products per level, with L21 =
 * A21·L11⁻ᵀ and the Schur complement A22 − L21·L21ᵀ, formed in place in A22, factored in turn
 * (A is used up). A level's arrays come from `scratch` by role and length: the lengths shrink
 * level by level, so no level takes another's, and the two halves of one level run one after the
 * other.
 */
function choleskyInverse(a: Float64Array, off: number, lda: number, n: number, gemm: Gemm, scratch: GptqScratch, out: Float32Array): void {
  if (n <= BASE) return choleskyInverseDirect(a, off, lda, n, out);
  const n1 = n >> 1;
  const n2 = n - n1;
  const low = scratch.f32('low', n2 * n1);
  for (let i = 0; i < n2; i++) {
    const r = off + (n1 + i) * lda;
    low.set(a.subarray(r, r + n1), i * n1);
  }
  const li1 = scratch.f32('li1', n1 * n1);
  choleskyInverse(a, off, lda, n1, gemm, scratch, li1);
  // L21 = A21·L11⁻ᵀ, then the Schur complement A22 − L21·L21ᵀ
  const l21 = gemm(low, n2, n1, li1, n1, scratch.f32('l21', n2 * n1));
  const s = gemm(l21, n2, n1, l21, n2, scratch.f32('s', n2 * n2));
  const off22 = off + n1 * lda + n1;
  for (let i = 0; i < n2; i++) {
    const r = off22 + i * lda;
    const o = i * n2;
    for (let j = 0; j < n2; j++) a[r + j] -= s[o + j];
  }
  const li2 = scratch.f32('li2', n2 * n2);
  choleskyInverse(a, off22, lda, n2, gemm, scratch, li2);
  // (L⁻¹)21 = −L22⁻¹·L21·L11⁻¹
  const t = gemm(l21, n2, n1, transpose(li1, n1, n1, scratch.f32('li1t', n1 * n1)), n1, scratch.f32('t', n2 * n1));
  const li21 = gemm(li2, n2, n2, transpose(t, n2, n1, scratch.f32('tt', n1 * n2)), n1, scratch.f32('li21', n2 * n1));
  for (let i = 0; i < n1; i++) {
    out.set(li1.subarray(i * n1, (i + 1) * n1), i * n);
    out.fill(0, i * n + n1, (i + 1) * n);
  }
  for (let i = 0; i < n2; i++) {
    const r = (n1 + i) * n;
    const o = i * n1;
    for (let j = 0; j < n1; j++) out[r + j] = -li21[o + j];
    out.set(li2.subarray(i * n2, (i + 1) * n2), r + n1);
  }
}

/** Tiles of this many rows and columns keep a transpose's reads and writes within the cache. */
const TILE = 64;

/** mᵀ (cols × rows) into `out`; m's rows start at `off` and lie `ld` apart (a block of a wider matrix). */
function transpose(m: Float32Array, rows: number, cols: number, out: Float32Array, off = 0, ld = cols): Float32Array {
  for (let i0 = 0; i0 < rows; i0 += TILE) {
    const i1 = Math.min(rows, i0 + TILE);
    for (let j0 = 0; j0 < cols; j0 += TILE) {
      const j1 = Math.min(cols, j0 + TILE);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * rows + i] = m[off + i * ld + j];
    }
  }
  return out;
}

/** `choleskyInverse` for small n, in float64: the Cholesky factorization, then the triangular inverse. */
function choleskyInverseDirect(src: Float64Array, off: number, lda: number, n: number, out: Float32Array): void {
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) a.set(src.subarray(off + i * lda, off + i * lda + n), i * n);
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
  out.set(inv);
}

/**
 * One step of the sweep: columns [k0, k1) of every row of `wf` (the weights as earlier columns'
 * errors left them), each column quantized and its error, divided by U[c,c], written to `err`
 * and taken off the later columns of the range along U's row c.
 */
type DirectSweep = (wf: Float32Array, err: Float32Array, k0: number, k1: number) => void;

/**
 * The GPTQ sweep over every row of `w`: each column is quantized and its error, divided by
 * U[c,c], taken off the later columns along U's row c; a group's range is chosen at its first
 * column, from the weights as the earlier columns' errors left them. The spreading is lazy, by
 * halves: a range of columns sweeps its first half, one product carries that half's errors to
 * the second half, then the second half sweeps; ranges of BLOCK columns or fewer spread column
 * by column (`direct`). The products are then wide (the top one is rows × n/2 × n/2), which the
 * GEMM runs at several times the speed of BLOCK-deep ones.
 */
function sweep(w: WeightData, u: Float32Array, gemm: Gemm, scratch: GptqScratch, direct: DirectSweep): void {
  const { rows, cols: n } = w;
  if (u.length !== n * n) throw new QvlError('TENSOR_SHAPE', `inverse Hessian factor has ${u.length} values for a matrix of ${n} columns`, { cols: n });
  const wf = scratch.f32('w', rows * n);
  if (w.format === 'f32') wf.set(w.data.subarray(0, rows * n));
  else for (let r = 0; r < rows; r++) dequantRow(w, r, wf.subarray(r * n, (r + 1) * n));
  for (let i = 0; i < rows * n; i++) if (!Number.isFinite(wf[i])) throw nonFinite(Math.floor(i / n), i % n, wf[i]);
  // every column's error, divided by U[c,c]
  const err = scratch.f32('err', rows * n);
  const range = (k0: number, k1: number) => {
    if (k1 - k0 <= BLOCK) return direct(wf, err, k0, k1);
    // split on a multiple of BLOCK, so that no group straddles two halves
    const mid = k0 + Math.ceil((k1 - k0) / 2 / BLOCK) * BLOCK;
    range(k0, mid);
    const b = mid - k0;
    const m = k1 - mid;
    // a level's arrays are free again by the time the second half runs (and the first has finished)
    const e = scratch.f32('e', rows * b);
    for (let r = 0; r < rows; r++) e.set(err.subarray(r * n + k0, r * n + mid), r * b);
    const ut = transpose(u, b, m, scratch.f32('ut', m * b), k0 * n + mid, n);
    const d = gemm(e, rows, b, ut, m, scratch.f32('d', rows * m));
    for (let r = 0; r < rows; r++) {
      const o = r * n + mid;
      const dr = r * m;
      for (let j = 0; j < m; j++) wf[o + j] -= d[dr + j];
    }
    range(mid, k1);
  };
  range(0, n);
}

/** The error for a weight that the sweep's updates took past float32's range. */
function sweptNonFinite(r: number, c: number, v: number): QvlError {
  return new QvlError('QUANT_INVALID', `GPTQ: weight [${r}, ${c}] became ${v} in the sweep (the weights or the inverse Hessian factor are too large for float32)`, { row: r, col: c, value: v });
}

/** The q4 weight GPTQ writes: codes OR-ed in column by column, a scale and zero point per group. */
interface Q4Out {
  rows: number;
  cols: number;
  g: number;
  u: Float32Array;
  qs: Uint8Array;
  scales: Float32Array;
  zeros: Uint8Array;
}

/** The reference `direct` step: row by row, column by column, as the arithmetic is defined. */
function tsDirectQ4(o: Q4Out): DirectSweep {
  const { rows, cols: n, g, u, qs, scales, zeros } = o;
  const nG = Math.ceil(n / g);
  const rowBytes = Math.ceil(n / 2);
  return (wf, err, k0, k1) => {
    for (let r = 0; r < rows; r++) {
      const row = wf.subarray(r * n, (r + 1) * n);
      let d = 0;
      let id = 0;
      let z = 0;
      for (let c = k0; c < k1; c++) {
        if (c % g === 0) {
          const c1 = Math.min(n, c + g);
          for (let t = c; t < c1; t++) if (!Number.isFinite(row[t])) throw sweptNonFinite(r, t, row[t]);
          [d, z] = asymmetricGroup(row, c, c1);
          id = d === 0 ? 0 : 1 / d;
          scales[r * nG + c / g] = d;
          zeros[r * nG + c / g] = z;
        }
        const v = row[c];
        let k = z;
        if (d !== 0) {
          k = roundAway(v * id) + z;
          k = k < 0 ? 0 : k > 15 ? 15 : k;
        }
        qs[r * rowBytes + (c >> 1)] |= k << ((c & 1) * 4);
        const e = (v - (k - z) * d) / u[c * n + c];
        err[r * n + c] = e;
        if (e === 0) continue;
        const uc = c * n;
        for (let j = c + 1; j < k1; j++) row[j] -= e * u[uc + j];
      }
    }
  };
}

/** The same step in the addon (native/gptq_sweep.inc), rows in parallel; undefined without it. */
function nativeDirectQ4(o: Q4Out): DirectSweep | undefined {
  if (!nativeGptqSweepAvailable()) return undefined;
  const { rows, cols, g, u, qs, scales, zeros } = o;
  return (wf, err, k0, k1) => {
    const bad = nativeGptqSweepQ4({ w: wf, rows, cols, k0, k1, groupSize: g, u, err, qs, scales, zeros });
    if (bad >= 0) throw sweptNonFinite(Math.floor(bad / cols), bad % cols, wf[bad]);
  };
}

/**
 * q4 with zero points, groups of `groupSize` along each row, as `quantizeQ4` (asymmetric) lays
 * them out: each group's scale and zero point are chosen (the same clipped-range search) from
 * its weights as the earlier columns' errors left them, then its codes are taken column by column.
 * The column-by-column steps run in the addon where it has them (`native`, default true), with
 * the same bits.
 */
export function gptqQuantizeQ4(w: WeightData, u: Float32Array, opts: { groupSize?: number; gemm?: Gemm; scratch?: GptqScratch; native?: boolean } = {}): Q4Weight {
  const { rows, cols } = w;
  const g = opts.groupSize ?? 32;
  if (!Number.isInteger(g) || g <= 0 || BLOCK % g !== 0) throw new QvlError('OPTION_INVALID', `q4 group size must divide ${BLOCK}, got ${g}`, { groupSize: g });
  const nG = Math.ceil(cols / g);
  const out: Q4Out = { rows, cols, g, u, qs: new Uint8Array(rows * Math.ceil(cols / 2)), scales: new Float32Array(rows * nG), zeros: new Uint8Array(rows * nG) };
  const direct = ((opts.native ?? true) && nativeDirectQ4(out)) || tsDirectQ4(out);
  sweep(w, u, opts.gemm ?? plainGemm, opts.scratch ?? new GptqScratch(), direct);
  return { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs: out.qs, scales: out.scales, zeros: out.zeros };
}
