/**
 * GPTQ's column-by-column sweep in the addon (native/gptq_sweep.inc) against the TypeScript
 * sweep of src/weights/quant/gptq-quantize.ts, the reference: the same codes, scales and zero
 * points bit for bit, on every instruction set (scalar runs the portable build) and pool size,
 * and the same refusal where the sweep's updates leave float32's range.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QvlError } from '../src/errors.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { nativeGptqSweepAvailable } from '../src/kernels/native/gptq-sweep.ts';
import type { F32Weight, Q4Weight } from '../src/kernels/weight.ts';
import { gptqQuantizeQ4, inverseHessianFactor } from '../src/weights/quant/gptq-quantize.ts';
import { forEachSetting, randn, rng, skipReason } from './native-util.ts';

// in CI a missing addon fails the test instead of skipping it
const nativeSkip = process.env.CI === 'true' ? false : skipReason;

/** H = XᵀX + a ridge for `tokens` inputs whose features are mixed (correlated, so errors do spread). */
function hessian(seed: number, tokens: number, n: number): Float64Array {
  const r = rng(seed);
  const k = Math.max(2, n >> 3);
  const mix = randn(r, k * n);
  const z = randn(r, tokens * k);
  const noise = randn(r, tokens * n, 0.1);
  const x = new Float64Array(tokens * n);
  for (let t = 0; t < tokens; t++)
    for (let i = 0; i < n; i++) {
      let s = noise[t * n + i];
      for (let j = 0; j < k; j++) s += z[t * k + j] * mix[j * n + i];
      x[t * n + i] = s;
    }
  const h = new Float64Array(n * n);
  for (let t = 0; t < tokens; t++)
    for (let i = 0; i < n; i++) {
      const xi = x[t * n + i];
      if (xi !== 0) for (let j = 0; j < n; j++) h[i * n + j] += xi * x[t * n + j];
    }
  return h;
}

/**
 * Weights that reach every branch of a group's choice: Gaussian rows; an all-zero group (scale
 * 0); a −0 group; one group of huge and one of subnormal weights; a row of one outlier per group
 * (the clipped candidate ranges win there).
 */
function weights(seed: number, rows: number, cols: number): F32Weight {
  const r = rng(seed);
  const data = randn(r, rows * cols, 0.05);
  if (rows > 1) data.fill(0, cols, cols + Math.min(cols, 32));
  if (rows > 2) data.fill(-0, 2 * cols, 2 * cols + Math.min(cols, 32));
  if (rows > 3) for (let c = 0; c < Math.min(cols, 32); c++) data[3 * cols + c] *= 1e30;
  if (rows > 4) for (let c = 0; c < Math.min(cols, 32); c++) data[4 * cols + c] *= 1e-36;
  if (rows > 5) for (let c = 0; c < cols; c += 16) data[5 * cols + c] = 2;
  return { format: 'f32', rows, cols, data };
}

/** The first field whose bits differ, or '' when none. */
function difference(a: Q4Weight, b: Q4Weight): string {
  const fields: Array<[string, ArrayBufferView, ArrayBufferView | undefined]> = [
    ['qs', a.qs, b.qs],
    ['scales', a.scales, b.scales],
    ['zeros', a.zeros!, b.zeros],
  ];
  for (const [name, x, y] of fields) {
    if (!y) return `${name} missing`;
    const p = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    const q = new Uint8Array(y.buffer, y.byteOffset, y.byteLength);
    if (p.length !== q.length) return `${name} length ${p.length} vs ${q.length}`;
    for (let i = 0; i < p.length; i++) if (p[i] !== q[i]) return `${name} byte ${i}: ${p[i]} vs ${q[i]}`;
  }
  return '';
}

// [rows, cols, group]: one row; a partial last group; widths past one block of 128 columns (the
// sweep then runs in halves, each half's errors carried by a product); every group size
const SHAPES: Array<[number, number, number]> = [
  [1, 32, 32],
  [7, 130, 32],
  [6, 300, 64],
  [9, 257, 128],
  [13, 640, 32],
];

test('the native GPTQ sweep gives the TypeScript sweep\'s codes, scales and zero points bit for bit, on every instruction set and pool size', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  assert.ok(nativeGptqSweepAvailable(), 'the addon has no gptqSweepQ4');
  const cases = SHAPES.map(([rows, cols, g], i) => {
    const u = inverseHessianFactor(hessian(100 + i, 2 * cols, cols), cols);
    const w = weights(200 + i, rows, cols);
    return { label: `${rows}×${cols}, group ${g}`, w, u, g, want: gptqQuantizeQ4(w, u, { groupSize: g, native: false }) };
  });
  // the clipped candidates did win somewhere (the outlier row), and errors did move codes off
  // round-to-nearest: the TypeScript sweep with a diagonal factor gives other codes
  const c = cases[4];
  const diagonal = new Float32Array(c.w.cols * c.w.cols);
  for (let i = 0; i < c.w.cols; i++) diagonal[i * c.w.cols + i] = 1;
  assert.notEqual(difference(gptqQuantizeQ4(c.w, diagonal, { groupSize: c.g, native: false }), c.want), '');
  forEachSetting((setting) => {
    for (const k of cases) assert.equal(difference(gptqQuantizeQ4(k.w, k.u, { groupSize: k.g }), k.want), '', `${k.label}, ${setting}`);
  });
});

test('a sweep whose updates leave float32\'s range is refused alike by both, naming the weight', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  // column 0's rounding error over U[0,0] = 1e-6, times U[0,40] = 1e6, lands far past float32's
  // range on column 40 of row 1: the second group meets +Infinity there
  const n = 64;
  const u = new Float32Array(n * n);
  for (let i = 0; i < n; i++) u[i * n + i] = 1;
  u[0] = 1e-6;
  u[40] = -1e6;
  const data = randn(rng(7), 2 * n, 0.05);
  data[n] = 3e37;
  data[n + 1] = -3e37;
  data[n + 2] = 1.1e37;
  const w: F32Weight = { format: 'f32', rows: 2, cols: n, data };
  const refusal = (native: boolean) => {
    try {
      gptqQuantizeQ4(w, u, { native });
    } catch (e) {
      assert.ok(e instanceof QvlError && e.code === 'QUANT_INVALID', String(e));
      return e.message;
    }
    assert.fail(`the ${native ? 'native' : 'TypeScript'} sweep did not refuse`);
  };
  const ts = refusal(false);
  assert.match(ts, /weight \[1, 40\] became Infinity in the sweep/);
  assert.equal(refusal(true), ts);
});

test('the addon refuses arrays too short for the shape and a range that is not one, naming them', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const addon = loadAddon();
  const rows = 2;
  const n = 64;
  const identity = new Float32Array(n * n);
  for (let i = 0; i < n; i++) identity[i * n + i] = 1;
  const args = () => ({
    w: new Float32Array(rows * n), u: identity, err: new Float32Array(rows * n),
    qs: new Uint8Array(rows * n / 2), scales: new Float32Array(rows * 2), zeros: new Uint8Array(rows * 2),
  });
  const call = (a: ReturnType<typeof args>, k0 = 0, k1 = n) => addon.gptqSweepQ4!(a.w, rows, n, k0, k1, 32, a.u, a.err, a.qs, a.scales, a.zeros);
  assert.equal(call(args()), -1);
  assert.throws(() => call({ ...args(), u: new Float32Array(n * n - 1) }), /u has 4095 elements, the shape needs 4096/);
  assert.throws(() => call({ ...args(), zeros: new Uint8Array(3) }), /zeros has 3 elements, the shape needs 4/);
  assert.throws(() => call({ ...args(), qs: new Uint8Array(63) }), /qs has 63 elements/);
  assert.throws(() => call(args(), 16, 64), /k0 must be a multiple of groupSize/);
  assert.throws(() => call(args(), 32, 32), /non-empty range within cols/);
  assert.throws(() => call(args(), 0, 65), /non-empty range within cols/);
});
