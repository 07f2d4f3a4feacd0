/**
 * `matmul(x, n, w, bias, out)` and `siluMul(gate, up, out)`: the result is written into `out`
 * (the model reuses its largest activations across layers that way) and is the same as a fresh
 * one; a wrong size, or a matmul `out` that overlaps x, is refused before anything is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvlError } from '../src/errors.ts';
import type { Backend } from '../src/kernels/backend.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
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

test('TypeScript matmul and siluMul write into out', () => {
  checkOut(new TsBackend());
  checkSiluMulOut(new TsBackend());
});
test('native matmul and siluMul write into out', { skip: skipReason }, () => {
  checkOut(backend());
  checkSiluMulOut(backend());
});
