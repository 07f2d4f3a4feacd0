import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttentionOptions } from '../src/kernels/backend.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { isQvlError } from '../src/errors.ts';
import { backend, firstViolation, isas, randn, rng, skipReason } from './native-util.ts';

const ts = new TsBackend();

/**
 * float32 scores carry an absolute error of about headDim·u·|q|·|k|·scale; through the softmax
 * that is a relative error of each weight, so the output (a convex mix of v rows) moves by at
 * most ~2·that·max|v| (plus float32 rounding of the mix itself).
 */
function check(label: string, q: Float32Array, k: Float32Array, v: Float32Array, o: AttentionOptions): void {
  const nb = backend();
  const got = nb.attention(q, k, v, o);
  const want = ts.attention(q, k, v, o);
  let vmax = 0;
  for (const x of v) vmax = Math.max(vmax, Math.abs(x));
  let qmax = 0;
  for (const x of q) qmax = Math.max(qmax, Math.abs(x));
  let kmax = 0;
  for (const x of k) kmax = Math.max(kmax, Math.abs(x));
  const scoreErr = 2 * o.headDim * 2 ** -24 * qmax * kmax * o.scale * o.headDim;
  const tol = vmax * (4 * scoreErr + 64 * 2 ** -24);
  const bad = firstViolation(got, want, () => tol);
  assert.equal(bad, -1, `${label}: out[${bad}] = ${got[bad]}, oracle ${want[bad]}, tol ${tol}`);
  // into a caller's buffer: the same values (every one written)
  const into = new Float32Array(got.length).fill(Number.NaN);
  assert.equal(nb.attention(q, k, v, o, into), into);
  assert.deepEqual(into, got, `${label}: into out`);
}

function run(label: string, seed: number, o: AttentionOptions): void {
  const r = rng(seed);
  const q = randn(r, o.nQ * o.heads * o.headDim);
  const k = randn(r, o.nKv * o.kvHeads * o.headDim);
  const v = randn(r, o.nKv * o.kvHeads * o.headDim);
  check(label, q, k, v, o);
}

function forEachIsa(f: (isa: string) => void): void {
  const nb = backend();
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    f(isa);
  }
  nb.useInstructionSet('best');
}

test('native causal attention (prefill) with GQA ratios 1, 2, 4 agrees with the oracle', { skip: skipReason }, () => {
  forEachIsa((isa) => {
    for (const [heads, kvHeads] of [[2, 2], [4, 2], [8, 2]]) {
      for (const [n, hd] of [[1, 16], [17, 64], [70, 128], [5, 12]]) {
        run(`${isa} causal n=${n} heads=${heads}/${kvHeads} hd=${hd}`, n * heads + hd, {
          nQ: n, nKv: n, heads, kvHeads, headDim: hd, scale: 1 / Math.sqrt(hd), causal: true,
        });
      }
    }
  });
});

test('native causal attention with qOffset > 0 (chunked prefill and decode over a cache)', { skip: skipReason }, () => {
  forEachIsa((isa) => {
    for (const [nQ, qOffset] of [[1, 0], [1, 37], [1, 200], [3, 61], [20, 100]]) {
      for (const [heads, kvHeads] of [[4, 4], [4, 1], [8, 2]]) {
        run(`${isa} nQ=${nQ} qOffset=${qOffset} heads=${heads}/${kvHeads}`, nQ * 1000 + qOffset + heads, {
          nQ, nKv: qOffset + nQ, heads, kvHeads, headDim: 32, scale: 1 / Math.sqrt(32), causal: true, qOffset,
        });
      }
    }
  });
});

test('native non-causal block-diagonal attention over segments (vision)', { skip: skipReason }, () => {
  forEachIsa((isa) => {
    for (const seg of [[0, 1], [0, 16], [0, 16, 16, 40], [0, 3, 70, 71, 100], [0, 65, 130]]) {
      const n = seg[seg.length - 1];
      run(`${isa} segments ${seg.join(',')}`, n + seg.length, {
        nQ: n, nKv: n, heads: 3, kvHeads: 3, headDim: 64, scale: 0.125, causal: false, segments: Int32Array.from(seg),
      });
    }
    run(`${isa} full non-causal`, 5, { nQ: 9, nKv: 130, heads: 2, kvHeads: 1, headDim: 8, scale: 0.3, causal: false });
  });
});

test('native attention is stable with large scores (online softmax rescaling)', { skip: skipReason }, () => {
  const r = rng(3);
  const n = 150;
  const hd = 16;
  const q = randn(r, n * hd, 6);
  const k = randn(r, n * hd, 6);
  const v = randn(r, n * hd);
  // scores reach ~±500: exp would overflow without the running max
  const o: AttentionOptions = { nQ: n, nKv: n, heads: 1, kvHeads: 1, headDim: hd, scale: 1, causal: true };
  const got = backend().attention(q, k, v, o);
  assert.ok(got.every(Number.isFinite), 'all outputs finite');
  check('large scores', q, k, v, { ...o, scale: 0.05 });
});

test('native attention: key blocks whose scores climb far past the running max (the reference max moves)', { skip: skipReason }, () => {
  // score of key j = 1.6·j: every key block tops the last one's max by far more than kAttLazyMax
  const hd = 16, nKv = 300, nQ = 9;
  const r = rng(5);
  const q = new Float32Array(nQ * hd).fill(1);
  const k = new Float32Array(nKv * hd);
  for (let j = 0; j < nKv; j++) k.fill(0.1 * j, j * hd, (j + 1) * hd);
  const v = randn(r, nKv * hd);
  forEachIsa((isa) => {
    check(`${isa} climbing scores`, q, k, v, { nQ, nKv, heads: 1, kvHeads: 1, headDim: hd, scale: 1, causal: false });
    // and falling ones: the first block holds the max
    check(`${isa} falling scores`, q, k.slice().reverse(), v, { nQ, nKv, heads: 1, kvHeads: 1, headDim: hd, scale: 1, causal: false });
  });
});

test('native attention rejects bad options with a QvlError', { skip: skipReason }, () => {
  const nb = backend();
  const base: AttentionOptions = { nQ: 2, nKv: 2, heads: 3, kvHeads: 2, headDim: 4, scale: 0.5, causal: true };
  const a = new Float32Array(24);
  assert.throws(() => nb.attention(a, a, a, base), (e) => isQvlError(e, 'OPTION_INVALID') && /heads 3 is not a multiple of kvHeads 2/.test(e.message));
  const ok = { ...base, heads: 2, kvHeads: 1 };
  assert.throws(() => nb.attention(new Float32Array(15), a, a, ok), (e) => isQvlError(e, 'TENSOR_SHAPE') && /q has 15 values/.test(e.message));
  assert.throws(
    () => nb.attention(new Float32Array(16), a, a, { ...ok, causal: false, segments: Int32Array.of(0, 1) }),
    (e) => isQvlError(e, 'OPTION_INVALID') && /segments must run from 0 to 2/.test(e.message),
  );
  assert.throws(
    () => nb.attention(new Float32Array(16), a, a, { ...ok, causal: false, nKv: 3, segments: Int32Array.of(0, 2) }),
    (e) => isQvlError(e, 'OPTION_INVALID') && /segments need nQ = nKv/.test(e.message),
  );
});
