/**
 * GPTQ (src/weights/quant/gptq-quantize.ts): the inverse-Hessian factor against its definition,
 * the sweep against round-to-nearest where they must agree (no correlation between inputs) and
 * against the layer-output error it exists to lower (correlated inputs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { dequantRow } from '../src/kernels/ts/dequant.ts';
import type { F32Weight, WeightData } from '../src/kernels/weight.ts';
import { quantizeQ4 } from '../src/weights/convert.ts';
import { backendGemm, gptqQuantizeQ4, inverseHessianFactor, plainGemm } from '../src/weights/quant/gptq-quantize.ts';
import { GptqScratch } from '../src/weights/quant/gptq-scratch.ts';
import { rng } from './helpers/rng.ts';
import { backend, skipReason } from './native-util.ts';

// in CI a missing addon fails the native test instead of skipping it
const nativeSkip = process.env.CI === 'true' ? false : skipReason;

function gaussian(next: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
}

/** `tokens` inputs of width n whose features are mixed (correlated), as a layer's inputs are; and H = XᵀX. */
function correlatedInputs(seed: number, tokens: number, n: number): { x: Float64Array; h: Float64Array } {
  const next = rng(seed);
  const k = Math.max(2, n >> 2);
  const mix = Float64Array.from({ length: k * n }, () => gaussian(next));
  const x = new Float64Array(tokens * n);
  for (let t = 0; t < tokens; t++) {
    const z = Float64Array.from({ length: k }, () => gaussian(next));
    for (let i = 0; i < n; i++) {
      let s = 0.1 * gaussian(next);
      for (let j = 0; j < k; j++) s += z[j] * mix[j * n + i];
      x[t * n + i] = s * (1 + (i % 5));
    }
  }
  return { x, h: gram(x, tokens, n) };
}

function gram(x: Float64Array, tokens: number, n: number): Float64Array {
  const h = new Float64Array(n * n);
  for (let t = 0; t < tokens; t++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j] += x[t * n + i] * x[t * n + j];
  return h;
}

function randomWeight(seed: number, rows: number, cols: number): F32Weight {
  const next = rng(seed);
  return { format: 'f32', rows, cols, data: Float32Array.from({ length: rows * cols }, () => 0.05 * gaussian(next)) };
}

function dense(w: WeightData): Float32Array {
  const out = new Float32Array(w.rows * w.cols);
  for (let r = 0; r < w.rows; r++) dequantRow(w, r, out.subarray(r * w.cols, (r + 1) * w.cols));
  return out;
}

/** Σ over tokens and rows of ((W − Ŵ)·x)²: the layer-output error on the inputs x. */
function outputError(w: WeightData, q: WeightData, x: Float64Array, tokens: number): number {
  const a = dense(w);
  const b = dense(q);
  const n = w.cols;
  let s = 0;
  for (let r = 0; r < w.rows; r++) {
    for (let t = 0; t < tokens; t++) {
      let d = 0;
      for (let c = 0; c < n; c++) d += (a[r * n + c] - b[r * n + c]) * x[t * n + c];
      s += d * d;
    }
  }
  return s;
}

/** max |A·(Uᵀ·U) − I| for A = H damped as inverseHessianFactor damps it */
function factorResidual(h: Float64Array, n: number, u: Float32Array, damp: number): number {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i];
  mean /= n;
  const a = Float64Array.from(h);
  // (no input at all: the damping is taken relative to 1)
  for (let i = 0; i < n; i++) a[i * n + i] = (a[i * n + i] === 0 ? 1 : a[i * n + i]) + damp * (mean > 0 ? mean : 1);
  const inv = new Float64Array(n * n);
  for (let m = 0; m < n; m++) for (let k = m; k < n; k++) for (let j = m; j < n; j++) inv[k * n + j] += u[m * n + k] * u[m * n + j];
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i * n + k] * inv[k * n + j];
      worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

test('inverseHessianFactor: upper triangular U with Uᵀ·U = (H + damp·mean(diag H)·I)⁻¹; an unreached column counts as 1', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 1e6 }), fc.boolean(), (n, seed, dead) => {
      const { h } = correlatedInputs(seed, n + 3, n);
      if (dead) for (let j = 0; j < n; j++) h[j] = h[j * n] = 0; // column 0 never reached
      const u = inverseHessianFactor(h, n, { damp: 0.01 });
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0);
      const worst = factorResidual(h, n, u, 0.01);
      assert.ok(worst < 1e-4, `|A·UᵀU − I| = ${worst}`);
    }),
    { numRuns: 30 },
  );
});

test('inverseHessianFactor past 128 columns (computed by halves, through the products): the same definition, to float32 accuracy', () => {
  for (const n of [129, 200, 301]) {
    const { h } = correlatedInputs(n, 2 * n, n);
    const u = inverseHessianFactor(h, n, { gemm: plainGemm });
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0);
    const worst = factorResidual(h, n, u, 0.01);
    assert.ok(worst < 2e-3, `n ${n}: |A·UᵀU − I| = ${worst}`);
  }
});

test('a scratch reused across calls (other inputs, other shapes, as calibration layers pass), and H\'s own array, give what fresh arrays give, bit for bit', () => {
  const scratch = new GptqScratch();
  const same = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  // 300 twice (the second over the first's leftovers), then 200, then 300 again after it
  for (const [seed, n] of [[5, 300], [6, 300], [7, 200], [8, 300]]) {
    const { h } = correlatedInputs(seed, 2 * n, n);
    const fresh = inverseHessianFactor(h, n, { gemm: plainGemm });
    const reused = inverseHessianFactor(h, n, { gemm: plainGemm, scratch });
    assert.ok(same(reused, fresh), `factor, n ${n}, seed ${seed}`);
    // calibration lets the factor turn H in its own array
    const own = Float64Array.from(h);
    assert.ok(same(inverseHessianFactor(own, n, { gemm: plainGemm, scratch, consumeH: true }), fresh), `factor in H's array, n ${n}, seed ${seed}`);
    assert.ok(!same(own, h), 'H was used up');
    for (const rows of [5, 12]) {
      const w = randomWeight(seed * 10 + rows, rows, n);
      const a = gptqQuantizeQ4(w, fresh);
      const b = gptqQuantizeQ4(w, fresh, { scratch });
      assert.ok(same(a.qs, b.qs) && same(a.scales, b.scales) && same(a.zeros!, b.zeros!), `codes, ${rows} × ${n}, seed ${seed}`);
    }
  }
  assert.ok(scratch.bytes > 0, 'the scratch was used');
});

test('inputs that never correlate (diagonal H): GPTQ spreads no error and gives round-to-nearest bytes', () => {
  for (const [rows, cols] of [
    [3, 64],
    [5, 70],
    [2, 33],
    [4, 300],
  ]) {
    const w = randomWeight(rows * 100 + cols, rows, cols);
    const h = new Float64Array(cols * cols);
    const next = rng(cols);
    for (let i = 0; i < cols; i++) h[i * cols + i] = 0.5 + next();
    const u = inverseHessianFactor(h, cols);
    const g = gptqQuantizeQ4(w, u);
    const rtn = quantizeQ4(w);
    assert.deepEqual(g.qs, rtn.qs);
    assert.deepEqual(g.scales, rtn.scales);
    assert.deepEqual(g.zeros, rtn.zeros);
    assert.equal(g.groupSize, 32);
    assert.equal(g.nGroups, Math.ceil(cols / 32));
  }
});

test('correlated inputs: GPTQ lowers the layer-output error of round-to-nearest q4, within a block of 128 columns and across blocks', () => {
  for (const [seed, n] of [
    [1, 96],
    [2, 96],
    [3, 300],
  ]) {
    const rows = 12;
    const tokens = 4 * n;
    const w = randomWeight(seed, rows, n);
    const { x, h } = correlatedInputs(seed + 10, tokens, n);
    const u = inverseHessianFactor(h, n);
    const g4 = outputError(w, gptqQuantizeQ4(w, u), x, tokens);
    const r4 = outputError(w, quantizeQ4(w), x, tokens);
    assert.ok(g4 < 0.8 * r4, `seed ${seed}: q4 output error ${g4} against round-to-nearest ${r4}`);
  }
});

test('refusals: a factor of the wrong size, a group size that does not divide the block, a NaN weight, a Hessian that is not finite', () => {
  const w = randomWeight(5, 2, 40);
  const h = correlatedInputs(3, 50, 40).h;
  const u = inverseHessianFactor(h, 40);
  assert.throws(() => gptqQuantizeQ4(w, u.subarray(0, 39 * 39)), /inverse Hessian factor has 1521 values for a matrix of 40 columns/);
  assert.throws(() => gptqQuantizeQ4(w, u, { groupSize: 48 }), /group size must divide 128/);
  const bad = { ...w, data: Float32Array.from(w.data) };
  bad.data[45] = NaN;
  assert.throws(() => gptqQuantizeQ4(bad, u), /weight \[1, 5\] is NaN/);
  const hn = Float64Array.from(h);
  hn[0] = Infinity;
  assert.throws(() => inverseHessianFactor(hn, 40), /not finite/);
  assert.throws(() => inverseHessianFactor(h, 41), /expected 41×41/);
});

test("the backend's GEMM in place of plain loops (calibrateQ4's route): the factor and the codes agree to float32 rounding", { skip: nativeSkip }, () => {
  const nb = backend();
  const gemm = backendGemm(nb);
  const n = 300;
  const rows = 16;
  const tokens = 4 * n;
  const { x, h } = correlatedInputs(77, tokens, n);
  const u0 = inverseHessianFactor(h, n, { gemm: plainGemm });
  const u1 = inverseHessianFactor(h, n, { gemm });
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < n * n; i++) {
    scale = Math.max(scale, Math.abs(u0[i]));
    diff = Math.max(diff, Math.abs(u0[i] - u1[i]));
  }
  assert.ok(diff < 1e-4 * scale, `factor differs by ${diff} (largest entry ${scale})`);
  const w = randomWeight(78, rows, n);
  const a = gptqQuantizeQ4(w, u0);
  const b = gptqQuantizeQ4(w, u0, { gemm });
  let same = 0;
  const da = dense(a);
  const db = dense(b);
  for (let i = 0; i < da.length; i++) if (da[i] === db[i]) same++;
  // a code may flip where a weight lies within float32 rounding of a rounding boundary; its error then moves the later ones
  assert.ok(same >= 0.97 * da.length, `${same} of ${da.length} weights alike`);
  const ea = outputError(w, a, x, tokens);
  const eb = outputError(w, b, x, tokens);
  assert.ok(Math.abs(ea - eb) < 0.02 * ea, `output errors ${ea} and ${eb}`);
});
