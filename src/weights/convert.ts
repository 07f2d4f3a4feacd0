import { QvlError } from '../errors.ts';
import { dequantRow } from '../kernels/ts/dequant.ts';
import { Q8_BLOCK, type Q4Weight, type Q8Weight, type WeightData } from '../kernels/weight.ts';

/**
 * Round-to-nearest quantizers from float weights into the kernels' q8 / q4 formats. Every
 * scale is rounded to float32 before use; a value is quantized as round(w · (1/scale)) with the
 * reciprocal and the product in double precision and ties rounded away from zero, so an
 * independent implementation (tools/reference/make_quant_checkpoints.py) reproduces the
 * output bit for bit.
 */

/** Round half away from zero for |v| < 2^31 (Math.round would round −2.5 to −2). */
export function roundAway(v: number): number {
  return v < 0 ? -((0.5 - v) | 0) : (v + 0.5) | 0;
}

/**
 * q8: int8 blocks of 32 along each row, scale = max|w| / 127 (as float32), q = round(w / scale).
 * The symmetric 8-bit grid with a per-32 scale keeps the error near 0.4% of the block's max.
 */
export function quantizeQ8(w: WeightData): Q8Weight {
  const { rows, cols } = w;
  const nb = Math.ceil(cols / Q8_BLOCK);
  const qs = new Int8Array(rows * cols);
  const scales = new Float32Array(rows * nb);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    dequantRow(w, r, row);
    const base = r * cols;
    for (let b = 0; b < nb; b++) {
      const c0 = b * Q8_BLOCK;
      const c1 = Math.min(cols, c0 + Q8_BLOCK);
      let amax = 0;
      let sum = 0;
      for (let c = c0; c < c1; c++) {
        const a = Math.abs(row[c]);
        sum += a;
        if (a > amax) amax = a;
      }
      if (!Number.isFinite(sum)) checkFinite(row, r, c0, c1);
      const d = Math.fround(amax / 127);
      scales[r * nb + b] = d;
      if (d === 0) continue;
      const id = 1 / d;
      for (let c = c0; c < c1; c++) {
        const q = roundAway(row[c] * id);
        qs[base + c] = q > 127 ? 127 : q < -127 ? -127 : q;
      }
    }
  }
  return { format: 'q8', rows, cols, qs, scales };
}

export interface Q4Options {
  /** columns per scale (default 32); the last group of a row may be partial */
  groupSize?: number;
  /**
   * false (default): asymmetric — scale = (max − min) / 15 over the group's range widened to
   * include 0, or over that range with its max or its min pulled in by a tenth, whichever gives
   * the group the least squared error (clippedRange); integer zero point = round(−min / scale),
   * q = round(w / scale) + zero.
   * true: symmetric like GGML Q4_0 — scale = m / −8 with m the value of largest magnitude,
   * zero 8, q = round(w / scale) + 8. Both clamp q to 0..15, and round the scale up to binary16
   * first where it can hold it (halfExactScale).
   */
  symmetric?: boolean;
}

const scaleF32 = new Float32Array(1);
const scaleU32 = new Uint32Array(scaleF32.buffer);

/**
 * A q4 scale within binary16's normal range (2^-14 … 65504 in magnitude), its magnitude rounded
 * up to the next binary16 value; others are kept. The kernels then stream the scales of a
 * matrix in 2 bytes each (native/q4x8.h), as GGML's Q4_0 does, while they stay float32 in every
 * file and array. Up, not to nearest: a step no smaller keeps the group's range on the grid.
 */
export function halfExactScale(d: number): number {
  scaleF32[0] = d;
  const a = scaleU32[0] & 0x7fffffff;
  if (a < 0x38800000 || a > 0x477fe000 || (a & 0x1fff) === 0) return scaleF32[0];
  scaleU32[0] = (scaleU32[0] & 0x80000000) | ((a & ~0x1fff) + 0x2000);
  return scaleF32[0];
}

/**
 * A q8 block scale within binary16's normal range, rounded to the nearest binary16 value (ties to
 * even); others, and those that would round past 65504, are kept. The least-squares refit
 * (refitQ8) picks its scale with this rounding, so that the kernels can stream q8 scales in 2
 * bytes too (native/q8x8.h).
 */
export function nearestHalfScale(d: number): number {
  scaleF32[0] = d;
  const u = scaleU32[0];
  const a = u & 0x7fffffff;
  if (a < 0x38800000 || a >= 0x7f800000) return scaleF32[0];
  const r = ((a + 0xfff + ((a >>> 13) & 1)) & ~0x1fff) >>> 0;
  if (r > 0x477fe000) return scaleF32[0];
  scaleU32[0] = ((u & 0x80000000) | r) >>> 0;
  return scaleF32[0];
}

export function quantizeQ4(w: WeightData, opts: Q4Options = {}): Q4Weight {
  const { rows, cols } = w;
  const g = opts.groupSize ?? 32;
  if (!Number.isInteger(g) || g <= 0) throw new QvlError('OPTION_INVALID', `q4 group size must be a positive integer, got ${g}`, { groupSize: g });
  const sym = opts.symmetric ?? false;
  const nG = Math.ceil(cols / g);
  const rowBytes = Math.ceil(cols / 2);
  const qs = new Uint8Array(rows * rowBytes);
  const scales = new Float32Array(rows * nG);
  const zeros = sym ? undefined : new Uint8Array(rows * nG);
  const row = new Float32Array(cols);
  const q = new Uint8Array(cols + 1);
  for (let r = 0; r < rows; r++) {
    dequantRow(w, r, row);
    for (let gi = 0; gi < nG; gi++) {
      const c0 = gi * g;
      const c1 = Math.min(cols, c0 + g);
      let d: number;
      let z: number;
      if (sym) {
        let big = 0;
        let abig = 0;
        let sum = 0;
        for (let c = c0; c < c1; c++) {
          const a = Math.abs(row[c]);
          sum += a;
          if (a > abig) {
            abig = a;
            big = row[c];
          }
        }
        if (!Number.isFinite(sum)) checkFinite(row, r, c0, c1);
        d = big === 0 ? 0 : halfExactScale(Math.fround(big / -8));
        z = 8;
      } else {
        let sum = 0;
        for (let c = c0; c < c1; c++) sum += row[c];
        if (!Number.isFinite(sum)) checkFinite(row, r, c0, c1);
        [d, z] = asymmetricGroup(row, c0, c1);
        zeros![r * nG + gi] = z;
      }
      scales[r * nG + gi] = d;
      if (d === 0) {
        q.fill(z, c0, c1);
        continue;
      }
      const id = 1 / d;
      for (let c = c0; c < c1; c++) {
        const v = roundAway(row[c] * id) + z;
        q[c] = v < 0 ? 0 : v > 15 ? 15 : v;
      }
    }
    q[cols] = 0;
    const base = r * rowBytes;
    for (let b = 0; b < rowBytes; b++) qs[base + b] = q[2 * b] | (q[2 * b + 1] << 4);
  }
  return { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs, scales, ...(zeros ? { zeros } : {}) };
}

/**
 * Asymmetric q4 ranges tried for each group: its [min, max] (0 included), then with the max or
 * the min pulled in by a tenth. The grid's step shrinks with the range, so one clipped outlier
 * can buy every other weight a finer step.
 */
const Q4_CLIPS: readonly (readonly [number, number])[] = [
  [1, 1],
  [1, 0.9],
  [0.9, 1],
];

/** Scale and zero point of one group's range [lo, hi] (lo ≤ 0 ≤ hi): scale rounded up to binary16. */
function rangeScale(lo: number, hi: number): [number, number] {
  const d = halfExactScale(Math.fround((hi - lo) / 15));
  return [d, d === 0 ? 0 : Math.min(15, Math.max(0, roundAway(-lo * (1 / d))))];
}

/**
 * The scale and zero point of the Q4_CLIPS candidate with the smallest squared error over
 * row[c0, c1) (rangeError; the first on a tie, so no group does worse than plain min/max, up to
 * float32 rounding of the errors).
 */
const rangeLanes = new Float32Array(8);

function clippedRange(row: Float32Array, c0: number, c1: number, mn: number, mx: number): [number, number] {
  const lanes = rangeLanes;
  const first = rangeScale(mn, mx);
  // an all-zero group, or weights so large or so small that float32 cannot score the ranges
  // (a reciprocal or an error past its range): plain min/max
  if (first[0] === 0 || !Number.isFinite(Math.fround(1 / first[0]))) return first;
  let best = first;
  let bestErr = rangeError(row, c0, c1, first[0], first[1], lanes);
  if (!Number.isFinite(bestErr)) return first;
  for (let k = 1; k < Q4_CLIPS.length; k++) {
    const [a, b] = Q4_CLIPS[k];
    const cand = rangeScale(Math.fround(mn * a), Math.fround(mx * b));
    if (cand[0] === 0 || !Number.isFinite(Math.fround(1 / cand[0]))) continue;
    const err = rangeError(row, c0, c1, cand[0], cand[1], lanes);
    if (err < bestErr) {
      bestErr = err;
      best = cand;
    }
  }
  return best;
}

/** Asymmetric q4's scale and zero point for row[c0, c1): its [min, max] with 0 included, through the clipped-range search. */
export function asymmetricGroup(row: Float32Array, c0: number, c1: number): [number, number] {
  let mn = 0;
  let mx = 0;
  for (let c = c0; c < c1; c++) {
    const v = row[c];
    if (v < mn) mn = v;
    else if (v > mx) mx = v;
  }
  return clippedRange(row, c0, c1, mn, mx);
}

/**
 * Σ (x − (q − z)·d)² over row[c0, c1) in float32, as the native quantizer computes it eight
 * columns at a time (native/quantize.inc, q4_range_error): q = clamp(trunc(x·(1/d) ± 0.5) + z,
 * 0, 15) with 1/d rounded to float32, the squares summed in eight lanes by column mod 8, folded
 * ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)). Every step is one float32 operation
 * (Math.fround of a double result is that operation's float32 result), so both pick alike.
 */
function rangeError(row: Float32Array, c0: number, c1: number, d: number, z: number, lanes: Float32Array): number {
  const f = Math.fround;
  const idf = f(1 / d);
  lanes.fill(0);
  for (let c = c0; c < c1; c++) {
    const x = row[c];
    let q = Math.trunc(f(f(x * idf) + (x < 0 || Object.is(x, -0) ? -0.5 : 0.5))) + z;
    q = q < 0 ? 0 : q > 15 ? 15 : q;
    const e = f(x - f((q - z) * d));
    const k = (c - c0) & 7;
    lanes[k] = f(lanes[k] + f(e * e));
  }
  return f(f(f(lanes[0] + lanes[4]) + f(lanes[1] + lanes[5])) + f(f(lanes[2] + lanes[6]) + f(lanes[3] + lanes[7])));
}

/** Called when a group's sum is not finite: names the first NaN/±Infinity weight (a sum of huge finite weights passes). */
function checkFinite(row: Float32Array, r: number, c0: number, c1: number): void {
  for (let c = c0; c < c1; c++) if (!Number.isFinite(row[c])) throw nonFinite(r, c, row[c]);
}

/** The error for a NaN/±Infinity weight at [r, c] (the native quantizers report the same one). */
export function nonFinite(r: number, c: number, v: number): QvlError {
  return new QvlError('QUANT_INVALID', `cannot quantize: weight [${r}, ${c}] is ${v}`, { row: r, col: c, value: v });
}
