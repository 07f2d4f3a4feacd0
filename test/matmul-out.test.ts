/**
 * `matmul(x, n, w, bias, out)`: the result is written into `out` (the model reuses its largest
 * activations across layers that way) and is the same as a fresh one; a wrong size or an `out`
 * that overlaps x is refused before anything is written.
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
  const shared = new Float32Array(24);
  assert.throws(() => be.matmul(shared.subarray(0, 16), 2, w, null, shared.subarray(12, 20)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /out overlaps x/.test(e.message));
  assert.deepEqual([...be.matmul(shared.subarray(0, 16), 2, w, null, shared.subarray(16, 24))], new Array(8).fill(0), 'an out next to x (not overlapping) is accepted');
}

test('TypeScript matmul writes into out', () => checkOut(new TsBackend()));
test('native matmul writes into out', { skip: skipReason }, () => checkOut(backend()));
