import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quantizeQ8 } from '../src/weights/convert.ts';
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

test('refitQ8: no block gets a larger squared error than round-to-nearest with max/127', () => {
  const r = rng(3);
  // a partial last block, a zero block and an outlier
  const rows = 64;
  const cols = 300;
  const data = randn(r, rows * cols, 0.02);
  data.fill(0, 5 * cols, 5 * cols + 32);
  data[7 * cols + 3] = 1.5;
  const w: WeightData = { format: 'f32', rows, cols, data };
  const before = blockErrors(w, quantizeQ8(w));
  const q = refitQ8(quantizeQ8(w), w);
  const after = blockErrors(w, q);
  let sb = 0;
  let sa = 0;
  for (let i = 0; i < before.length; i++) {
    // the stored scale is rounded to float32 after the fit: allow that rounding
    assert.ok(after[i] <= before[i] * (1 + 1e-6) + 1e-30, `block ${i}: ${after[i]} > ${before[i]}`);
    sb += before[i];
    sa += after[i];
  }
  assert.ok(sa < sb, `total squared error ${sa} against ${sb}`);
  for (const v of q.qs) assert.ok(v >= -127 && v <= 127);
});
