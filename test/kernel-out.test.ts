/**
 * `matmul(x, n, w, bias, out)`, `siluMul(gate, up, out)`, `rmsNorm(x, dim, w, eps, out)` and
 * `attentionKv(q, kv, opts, out)`: the result is written into `out` (the model reuses its
 * activations across layers and decode steps that way) and is the same as a fresh one; a wrong
 * size, or an `out` that overlaps the input (other than rmsNorm's in place), is refused before
 * anything is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvlError } from '../src/errors.ts';
import type { Backend } from '../src/kernels/backend.ts';
import { KvLayout } from '../src/kernels/kv.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { KvPool } from '../src/model/kv-pool.ts';
import { backend, randn, rng, skipReason, WEIGHT_SPECS } from './native-util.ts';

function checkOut(be: Backend): void {
  const [n, rows, cols] = [7, 13, 40];
  for (const label of ['f32', 'bf16', 'q8', 'q4 g32 zeros']) {
    const r = rng(label.length + 3);
    const w = be.prepare(WEIGHT_SPECS.find((s) => s.label === label)!.make(r, rows, cols));
    const x = randn(r, n * cols);
    const bias = randn(r, rows);
    const fresh = be.matmul(x, n, w, bias);
    const out = new Float32Array(n * rows).fill(Number.NaN);
    const got = be.matmul(x, n, w, bias, out);
    assert.equal(got, out, `${be.name} ${label}: the result is out itself`);
    assert.deepEqual(out, fresh, `${be.name} ${label}: out holds the same values as a fresh result`);
  }
  const w = be.prepare({ format: 'f32', rows: 4, cols: 8, data: new Float32Array(32).fill(1) });
  const x = new Float32Array(16).fill(1);
  const short = new Float32Array(7).fill(5);
  assert.throws(() => be.matmul(x, 2, w, null, short), (e) => isQvlError(e, 'TENSOR_SHAPE') && /out has 7 values, expected 2×4/.test(e.message));
  assert.deepEqual([...short], new Array(7).fill(5), 'a refused out is left as it was');
  // x = 0, 1, …, 15 (two tokens) and all-ones weights: each token's outputs are the sum of its 8 values
  const shared = new Float32Array(24).map((_, i) => (i < 16 ? i : Number.NaN));
  assert.throws(() => be.matmul(shared.subarray(0, 16), 2, w, null, shared.subarray(12, 20)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /out overlaps x/.test(e.message));
  assert.deepEqual([...be.matmul(shared.subarray(0, 16), 2, w, null, shared.subarray(16, 24))], [28, 28, 28, 28, 92, 92, 92, 92], 'an out next to x (not overlapping) is accepted');
  assert.deepEqual([...shared.subarray(0, 16)], Array.from({ length: 16 }, (_, i) => i), 'x is left as it was');
}

function checkSiluMulOut(be: Backend): void {
  const r = rng(11);
  const gate = randn(r, 37);
  const up = randn(r, 37);
  const fresh = be.siluMul(gate, up);
  const g2 = gate.slice();
  assert.equal(be.siluMul(g2, up, g2), g2, `${be.name}: the result is out itself`);
  assert.deepEqual(g2, fresh, `${be.name}: silu(gate)·up computed in place over gate equals a fresh result`);
  const u2 = up.slice();
  be.siluMul(gate, u2, u2);
  assert.deepEqual(u2, fresh, `${be.name}: in place over up too`);
  assert.throws(() => be.siluMul(gate, up, new Float32Array(36)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /gate has 37 values, out has 36/.test(e.message));
}

function checkRmsNormOut(be: Backend): void {
  const r = rng(17);
  const [dim, rows] = [24, 5];
  const x = randn(r, dim * rows, 3);
  const w = randn(r, dim);
  const fresh = be.rmsNorm(x, dim, w, 1e-6);
  const out = new Float32Array(x.length).fill(Number.NaN);
  assert.equal(be.rmsNorm(x, dim, w, 1e-6, out), out, `${be.name}: the result is out itself`);
  assert.deepEqual(out, fresh, `${be.name}: out holds the same values as a fresh result`);
  const inPlace = x.slice();
  be.rmsNorm(inPlace, dim, w, 1e-6, inPlace);
  assert.deepEqual(inPlace, fresh, `${be.name}: in place over x too`);
  assert.throws(() => be.rmsNorm(x, dim, w, 1e-6, new Float32Array(x.length - 1)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /out has 119 values, expected 120/.test(e.message));
  // a view of the same memory shifted by one row would read rows already overwritten
  const shared = new Float32Array(x.length + dim);
  shared.set(x);
  const before = shared.slice();
  assert.throws(() => be.rmsNorm(shared.subarray(0, x.length), dim, w, 1e-6, shared.subarray(dim)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /out overlaps x/.test(e.message));
  assert.deepEqual(shared, before, 'a refused out is left as it was');
}

function checkAttentionKvOut(be: Backend): void {
  const r = rng(23);
  const layout = new KvLayout('bf16', 1, 2, 16, 4);
  const cache = new KVCache(new KvPool(layout));
  const n = 9;
  const view = cache.append(0, randn(r, n * layout.rowElems), randn(r, n * layout.rowElems), n);
  const o = { nQ: 3, heads: 4, scale: 0.25, qOffset: n - 3 };
  const q = randn(r, 3 * 4 * 16);
  const fresh = be.attentionKv(q, view, o);
  const out = new Float32Array(q.length).fill(Number.NaN);
  assert.equal(be.attentionKv(q, view, o, out), out, `${be.name}: the result is out itself`);
  assert.deepEqual(out, fresh, `${be.name}: out holds the same values as a fresh result`);
  assert.throws(() => be.attentionKv(q, view, o, new Float32Array(q.length + 1)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /out has 193 values, expected 3×4×16/.test(e.message));
  assert.throws(() => be.attentionKv(q, view, o, q), (e) => isQvlError(e, 'TENSOR_SHAPE') && /out overlaps q/.test(e.message));
  cache.release();
}

test('TypeScript matmul, siluMul, rmsNorm and attentionKv write into out', () => {
  checkOut(new TsBackend());
  checkSiluMulOut(new TsBackend());
  checkRmsNormOut(new TsBackend());
  checkAttentionKvOut(new TsBackend());
});
test('native matmul, siluMul, rmsNorm and attentionKv write into out', { skip: skipReason }, () => {
  checkOut(backend());
  checkSiluMulOut(backend());
  checkRmsNormOut(backend());
  checkAttentionKvOut(backend());
});
