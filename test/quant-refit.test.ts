import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nearestHalfScale, quantizeQ8 } from '../src/weights/convert.ts';
import { refitQ8 } from '../src/weights/quant/q8-refit.ts';
import { dequantRow } from '../src/kernels/ts/dequant.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { randn, rng } from './native-util.ts';

/** Σ(w − ŵ)² per block of 32 of each row. */
function blockErrors(src: WeightData, q: WeightData): Float64Array {
  const nb = Math.ceil(src.cols / 32);
  const out = new Float64Array(src.rows * nb);
  const a = new Float32Array(src.cols);
  const b = new Float32Array(src.cols);
  for (let r = 0; r < src.rows; r++) {
    dequantRow(src, r, a);
    dequantRow(q, r, b);
    for (let c = 0; c < src.cols; c++) out[r * nb + (c >> 5)] += (a[c] - b[c]) ** 2;
  }
  return out;
}

/** Gaussian weights with a partial last block, a zero block and an outlier. */
function refitCase(): WeightData {
  const r = rng(3);
  const rows = 64;
  const cols = 300;
  const data = randn(r, rows * cols, 0.02);
  data.fill(0, 5 * cols, 5 * cols + 32);
  data[7 * cols + 3] = 1.5;
  return { format: 'f32', rows, cols, data };
}

/**
 * Asserts that no block's error exceeds its bound (up to float rounding); returns the summed
 * errors `sa` and the summed `base` errors `sb`.
 */
function noBlockWorse(after: ArrayLike<number>, bound: ArrayLike<number>, base: ArrayLike<number>): { sa: number; sb: number } {
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < bound.length; i++) {
    assert.ok(after[i] <= bound[i] * (1 + 1e-6) + 1e-30, `block ${i}: ${after[i]} > ${bound[i]}`);
    sa += after[i];
    sb += base[i];
  }
  return { sa, sb };
}

test('refitQ8: no block gets a larger squared error than round-to-nearest with max/127', () => {
  const w = refitCase();
  const before = blockErrors(w, quantizeQ8(w));
  const q = refitQ8(quantizeQ8(w), w);
  // the stored scale is rounded to float32 after the fit: allow that rounding
  const { sa, sb } = noBlockWorse(blockErrors(w, q), before, before);
  assert.ok(sa < sb, `total squared error ${sa} against ${sb}`);
  for (const v of q.qs) assert.ok(v >= -127 && v <= 127);
});

test('refitQ8, half: binary16 scales, and no block gets a larger squared error than round-to-nearest with max/127 in binary16', () => {
  const w = refitCase();
  const rtn = quantizeQ8(w);
  const rtnF32 = blockErrors(w, rtn);
  // the same codes with max/127 rounded to the nearest binary16: the scales the refit chooses among
  const rtnHalf = blockErrors(w, { ...rtn, scales: rtn.scales.map(nearestHalfScale) });
  const q = refitQ8(quantizeQ8(w), w, true);
  // the candidates are compared with the error in double, the blocks here summed in float32
  const { sa, sb } = noBlockWorse(blockErrors(w, q), rtnHalf, rtnF32);
  assert.ok(sa < sb, `total squared error ${sa} against ${sb} for round-to-nearest in float32`);
  for (const v of q.qs) assert.ok(v >= -127 && v <= 127);
  for (const d of q.scales) assert.equal(nearestHalfScale(d), d, `scale ${d} is a binary16 value`);
});

test('nearestHalfScale: the nearest binary16 value, ties to even; out of its normal range kept', () => {
  assert.equal(nearestHalfScale(1 + 2 ** -11), 1, 'a tie rounds to the even neighbour');
  assert.equal(nearestHalfScale(1 + 3 * 2 ** -11), 1 + 2 ** -9, 'a tie rounds to the even neighbour, up');
  assert.equal(nearestHalfScale(1 + 2 ** -11 + 2 ** -20), 1 + 2 ** -10);
  assert.equal(nearestHalfScale(-0.1), -Math.fround(0.0999755859375), 'the sign is kept');
  assert.equal(nearestHalfScale(2 ** -15), 2 ** -15, 'below 2^-14: kept');
  assert.equal(nearestHalfScale(65519), 65504);
  assert.equal(nearestHalfScale(65520), 65520, 'would round past 65504: kept');
  assert.equal(nearestHalfScale(0), 0);
});
