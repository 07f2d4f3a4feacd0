import { QvlError } from '../../errors.ts';
import { dequantRow } from '../../kernels/ts/dequant.ts';
import { Q8_BLOCK, type Q4Weight, type Q8Weight, type WeightData } from '../../kernels/weight.ts';
import { clippedRange, halfExactScale, nonFinite, roundAway } from '../convert.ts';

/**
 * GPTQ (Frantar et al., 2022, "Accurate post-training quantization for generative pre-trained
 * transformers"): a matrix's input columns are quantized one at a time, and each column's
 * rounding error is spread over the columns not yet quantized, through the inverse of the
 * Hessian H = Σ x·xᵀ of the layer's inputs x on calibration data. Round-to-nearest makes
 * ‖W − Ŵ‖ small; this makes ‖(W − Ŵ)·x‖ small for inputs like the calibration set's, which is
 * what the next layer sees. The output is the kernels' q4 / q8 formats, with the same scales
 * (rounded to binary16 the same way) as the round-to-nearest quantizers of convert.ts: only the
 * codes, and the groups' ranges that follow from them, differ.
 */

export interface HessianQuantOptions {
  /** added to H's diagonal, as a fraction of its mean (GPTQ's percdamp); default 0.01 */
  damp?: number;
  /** rows quantized together (memory: rows·cols floats); default 256 */
  rowChunk?: number;
}

/**
 * The upper-triangular U with H⁻¹ = Uᵀ·U, for H (n × n, row-major, symmetric) plus damping:
 * GPTQ's `cholesky(inverse(H), upper=True)`, computed as one Cholesky factorization and one
 * triangular inverse. With P the reversal permutation, P·H·P = L·Lᵀ gives H = R·Rᵀ where
 * R = P·L·P is upper triangular, so H⁻¹ = R⁻ᵀ·R⁻¹ and U = R⁻¹ = P·L⁻¹·P.
 * A column no calibration input reached (H[i,i] = 0) gets H[i,i] = 1: its weight then keeps
 * round-to-nearest codes and spreads nothing.
 */
export function inverseHessianFactor(h: Float64Array, n: number, damp = 0.01): Float64Array {
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
  // Cholesky, lower, in place: a = L·Lᵀ
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j];
    for (let k = 0; k < j; k++) d -= a[rj + k] * a[rj + k];
    if (!(d > 0)) throw new QvlError('QUANT_INVALID', `the calibration Hessian is not positive definite at column ${n - 1 - j}`, { column: n - 1 - j });
    d = Math.sqrt(d);
    a[rj + j] = d;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
      a[ri + j] = s / d;
    }
  }
  // L⁻¹ (lower), column by column of the identity: forward substitution
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
  // U = P·L⁻¹·P
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = inv[(n - 1 - i) * n + (n - 1 - j)];
  return u;
}

/**
 * The GPTQ sweep over one row (the rows are independent given U), in the order `perm` (U is
 * the factor of H permuted alike): column perm[k] is quantized by `code`, which returns its
 * dequantized value, and the error, divided by U[k,k], is taken off the later columns along
 * U's row k. `before(c)` runs first, with the row as the earlier columns' errors left it.
 */
function sweepRow(row: Float32Array, u: Float64Array, perm: Int32Array, before: (c: number) => void, code: (c: number, v: number) => number): void {
  const n = perm.length;
  for (let k = 0; k < n; k++) {
    const c = perm[k];
    before(c);
    const v = row[c];
    const e = (v - code(c, v)) / u[k * n + k];
    if (e === 0) continue;
    const rk = k * n;
    for (let j = k + 1; j < n; j++) row[perm[j]] -= e * u[rk + j];
  }
}

/**
 * GPTQ's column order: by decreasing H[i,i] ("act order"), so that the columns with the largest
 * inputs are quantized first, while the most columns are left to absorb their errors; or the
 * natural order. Ties keep the natural order.
 */
export function hessianOrder(h: Float64Array, n: number, actOrder: boolean): Int32Array {
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  if (actOrder) perm.sort((a, b) => h[b * n + b] - h[a * n + a] || a - b);
  return perm;
}

/** H with rows and columns taken in the order `perm`. */
export function permuteHessian(h: Float64Array, perm: Int32Array): Float64Array {
  const n = perm.length;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = perm[i] * n;
    for (let j = 0; j < n; j++) out[i * n + j] = h[ri + perm[j]];
  }
  return out;
}

function checkShapes(w: WeightData, u: Float64Array, perm: Int32Array): void {
  if (perm.length !== w.cols) throw new QvlError('TENSOR_SHAPE', `column order has ${perm.length} entries for a matrix of ${w.cols} columns`, { cols: w.cols });
  if (u.length !== w.cols * w.cols) throw new QvlError('TENSOR_SHAPE', `inverse Hessian factor has ${u.length} values for a matrix of ${w.cols} columns`, { cols: w.cols });
}

function checkRow(row: Float32Array, r: number): void {
  for (let c = 0; c < row.length; c++) if (!Number.isFinite(row[c])) throw nonFinite(r, c, row[c]);
}

/**
 * q4 with zero points, groups of `groupSize` along each row, as `quantizeQ4` (asymmetric) lays
 * them out: each group's scale and zero point are chosen (the same clipped-range search) from
 * its weights as the earlier columns' errors left them, then its codes are taken column by column.
 */
export function gptqQuantizeQ4(w: WeightData, u: Float64Array, perm: Int32Array, opts: { groupSize?: number } = {}): Q4Weight {
  checkShapes(w, u, perm);
  const { rows, cols } = w;
  const g = opts.groupSize ?? 32;
  const nG = Math.ceil(cols / g);
  const rowBytes = Math.ceil(cols / 2);
  const qs = new Uint8Array(rows * rowBytes);
  const scales = new Float32Array(rows * nG);
  const zeros = new Uint8Array(rows * nG);
  const row = new Float32Array(cols);
  const q = new Uint8Array(cols + 1);
  let d = 0;
  let id = 0;
  let z = 0;
  const started = new Uint8Array(nG);
  for (let r = 0; r < rows; r++) {
    dequantRow(w, r, row);
    checkRow(row, r);
    started.fill(0);
    sweepRow(
      row,
      u,
      perm,
      (col) => {
        const gi = (col / g) | 0;
        if (started[gi]) {
          d = scales[r * nG + gi];
          z = zeros[r * nG + gi];
          id = d === 0 ? 0 : 1 / d;
          return;
        }
        started[gi] = 1;
        const c = gi * g;
        const c1 = Math.min(cols, c + g);
        let mn = 0;
        let mx = 0;
        for (let k = c; k < c1; k++) {
          const v = row[k];
          if (v < mn) mn = v;
          else if (v > mx) mx = v;
        }
        [d, z] = clippedRange(row, c, c1, mn, mx);
        id = d === 0 ? 0 : 1 / d;
        scales[r * nG + gi] = d;
        zeros[r * nG + gi] = z;
      },
      (c, v) => {
        if (d === 0) {
          q[c] = z;
          return 0;
        }
        let k = roundAway(v * id) + z;
        k = k < 0 ? 0 : k > 15 ? 15 : k;
        q[c] = k;
        return (k - z) * d;
      },
    );
    q[cols] = 0;
    const base = r * rowBytes;
    for (let b = 0; b < rowBytes; b++) qs[base + b] = q[2 * b] | (q[2 * b + 1] << 4);
  }
  return { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs, scales, zeros };
}

/**
 * q8 blocks of 32 along each row, symmetric: each block's scale is max|w| / 127 of its weights as
 * the earlier columns' errors left them, rounded up to binary16 (so that no weight of the block
 * is clipped and the kernels stream the scale in 2 bytes).
 */
export function gptqQuantizeQ8(w: WeightData, u: Float64Array, perm: Int32Array): Q8Weight {
  checkShapes(w, u, perm);
  const { rows, cols } = w;
  const nb = Math.ceil(cols / Q8_BLOCK);
  const qs = new Int8Array(rows * cols);
  const scales = new Float32Array(rows * nb);
  const row = new Float32Array(cols);
  let d = 0;
  let id = 0;
  const started = new Uint8Array(nb);
  for (let r = 0; r < rows; r++) {
    dequantRow(w, r, row);
    checkRow(row, r);
    started.fill(0);
    const base = r * cols;
    sweepRow(
      row,
      u,
      perm,
      (col) => {
        const b = (col / Q8_BLOCK) | 0;
        if (started[b]) {
          d = scales[r * nb + b];
          id = d === 0 ? 0 : 1 / d;
          return;
        }
        started[b] = 1;
        const c = b * Q8_BLOCK;
        const c1 = Math.min(cols, c + Q8_BLOCK);
        let amax = 0;
        for (let k = c; k < c1; k++) amax = Math.max(amax, Math.abs(row[k]));
        d = halfExactScale(Math.fround(amax / 127));
        id = d === 0 ? 0 : 1 / d;
        scales[r * nb + b] = d;
      },
      (c, v) => {
        let k = roundAway(v * id);
        k = k > 127 ? 127 : k < -127 ? -127 : k;
        qs[base + c] = k;
        return k * d;
      },
    );
  }
  return { format: 'q8', rows, cols, qs, scales };
}

