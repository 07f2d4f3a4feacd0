import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvlError } from '../src/errors.ts';
import type { Backend } from '../src/kernels/backend.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { backend, skipReason } from './native-util.ts';

/** Each bad call, made on a backend: both must refuse it with the same QvlError code. */
const BAD: Array<[string, (b: Backend) => unknown]> = [
  ['matmul x too short', (b) => b.matmul(new Float32Array(3), 1, b.prepare({ format: 'f32', rows: 2, cols: 4, data: new Float32Array(8) }))],
  ['matmul bias too long', (b) => b.matmul(new Float32Array(4), 1, b.prepare({ format: 'f32', rows: 2, cols: 4, data: new Float32Array(8) }), new Float32Array(3))],
  ['matmul n fractional', (b) => b.matmul(new Float32Array(4), 0.5, b.prepare({ format: 'f32', rows: 2, cols: 4, data: new Float32Array(8) }))],
  ['gatherRows id out of range', (b) => b.gatherRows(b.prepare({ format: 'f32', rows: 2, cols: 4, data: new Float32Array(8) }), [2])],
  ['gatherRows id fractional', (b) => b.gatherRows(b.prepare({ format: 'f32', rows: 2, cols: 4, data: new Float32Array(8) }), [0.5])],
  ['rmsNorm ragged rows', (b) => b.rmsNorm(new Float32Array(5), 2, new Float32Array(2), 1e-6)],
  ['rmsNorm weight length', (b) => b.rmsNorm(new Float32Array(4), 2, new Float32Array(3), 1e-6)],
  ['layerNorm bias length', (b) => b.layerNorm(new Float32Array(4), 2, new Float32Array(2), new Float32Array(1), 1e-6)],
  ['layerNorm out length', (b) => b.layerNorm(new Float32Array(4), 2, new Float32Array(2), new Float32Array(2), 1e-6, new Float32Array(2))],
  ['layerNorm out a shifted view of x', (b) => {
    const buf = new Float32Array(6);
    return b.layerNorm(buf.subarray(0, 4), 2, new Float32Array(2), new Float32Array(2), 1e-6, buf.subarray(2, 6));
  }],
  ['rope odd head size', (b) => b.rope(new Float32Array(3), 1, 1, 3, new Float32Array(3), new Float32Array(3))],
  ['rope short tables', (b) => b.rope(new Float32Array(8), 2, 1, 4, new Float32Array(4), new Float32Array(8))],
  ['attention GQA ratio', (b) => b.attention(new Float32Array(3 * 4), new Float32Array(8), new Float32Array(8), { nQ: 1, nKv: 1, heads: 3, kvHeads: 2, headDim: 4, scale: 1, causal: true })],
  ['attention q length', (b) => b.attention(new Float32Array(5), new Float32Array(4), new Float32Array(4), { nQ: 1, nKv: 1, heads: 1, kvHeads: 1, headDim: 4, scale: 1, causal: true })],
  ['attention segments', (b) => b.attention(new Float32Array(8), new Float32Array(8), new Float32Array(8), { nQ: 2, nKv: 2, heads: 1, kvHeads: 1, headDim: 4, scale: 1, causal: false, segments: Int32Array.from([0, 1]) })],
  ['attention out length', (b) => b.attention(new Float32Array(4), new Float32Array(4), new Float32Array(4), { nQ: 1, nKv: 1, heads: 1, kvHeads: 1, headDim: 4, scale: 1, causal: true }, new Float32Array(3))],
  ['attention out overlaps v', (b) => {
    const buf = new Float32Array(12);
    return b.attention(buf.subarray(0, 4), buf.subarray(4, 8), buf.subarray(8, 12), { nQ: 1, nKv: 1, heads: 1, kvHeads: 1, headDim: 4, scale: 1, causal: true }, buf.subarray(8, 12));
  }],
  ['siluMul lengths', (b) => b.siluMul(new Float32Array(2), new Float32Array(3))],
  ['gelu kind', (b) => b.gelu(new Float32Array(2), 'relu' as 'tanh')],
  ['addInPlace lengths', (b) => b.addInPlace(new Float32Array(2), new Float32Array(3))],
  ['argmax of numbers', (b) => b.argmax([1, 2] as unknown as Float32Array)],
];

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return isQvlError(e) ? e.code : `not a QvlError: ${(e as Error).name}: ${(e as Error).message}`;
  }
  return 'accepted';
}

test('the TypeScript and native backends refuse the same bad calls with the same error code', { skip: skipReason }, () => {
  const ts = new TsBackend();
  const nb = backend();
  for (const [label, call] of BAD) {
    const a = codeOf(() => call(ts));
    const b = codeOf(() => call(nb));
    assert.ok(a === 'TENSOR_SHAPE' || a === 'OPTION_INVALID', `${label}: ts backend: ${a}`);
    assert.equal(b, a, `${label}: native ${b}, ts ${a}`);
  }
});
