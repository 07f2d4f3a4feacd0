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

/** 9 queries of ones against 300 keys whose key j is 0.1·j in every dimension: scores climb by 0.1·hd·scale a key. */
function climbingScores(hd: number, seed: number): { q: Float32Array; k: Float32Array; v: Float32Array; nQ: number; nKv: number } {
  const nKv = 300, nQ = 9;
  const q = new Float32Array(nQ * hd).fill(1);
  const k = new Float32Array(nKv * hd);
  for (let j = 0; j < nKv; j++) k.fill(0.1 * j, j * hd, (j + 1) * hd);
  return { q, k, v: randn(rng(seed), nKv * hd), nQ, nKv };
}

test('native attention: key blocks whose scores climb far past the running max (the reference max moves)', { skip: skipReason }, () => {
  // score of key j = 1.6·j: every key block tops the last one's max by far more than kAttLazyMax
  const hd = 16;
  const { q, k, v, nQ, nKv } = climbingScores(hd, 5);
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

// ---- int16 products (native/attention_i16.inc: the vision tower of a quantized model) ----

const I16_MAX = 8191;
const f32 = Math.fround;
/** Round half to even, as vcvtps2dq does. */
function rne(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
/** Codes × scale of values[i] for i in idx, quantized together as the kernel quantizes a block (float32 steps). */
function quantBlock(values: Float32Array, idx: number[], out: Float32Array): void {
  let amax = 0;
  for (const i of idx) amax = Math.max(amax, Math.abs(values[i]));
  const inv = amax > 0 ? f32(I16_MAX / amax) : 0;
  const d = f32(amax / I16_MAX);
  for (const i of idx) out[i] = rne(f32(values[i] * inv)) * d;
}

/**
 * The int16 kernel against the float64 oracle run on what the kernel multiplies: q·scale and k
 * quantized per row and block of 32 dimensions, v per block of 32 keys and dimension (emulated
 * here step by step). What remains, row by row:
 * - float32 rounding: a score is an exact int32 sum per block, converted and scaled (3 roundings
 *   each) and summed over the blocks, so it is off by δ ≤ (3 + blocks)·u·Σ|q||k|; the output, a
 *   mix of v rows, by max|v|·(e^(2δ) − 1), plus (8 + key blocks)·u·max|v| for the mix itself;
 * - the softmax weights' rounding: each weight of a block of 32 keys is off by at most half a
 *   step, pmax/16382, so the output moves by at most max|v|·Σ_blocks 32·pmax_b/(16382·l).
 */
function checkInt16(label: string, q: Float32Array, k: Float32Array, v: Float32Array, o: AttentionOptions): void {
  const { nQ, nKv, heads, kvHeads, headDim: hd } = o;
  const qd = new Float32Array(q.length), kd = new Float32Array(k.length), vd = new Float32Array(v.length);
  const qs = q.map((x) => f32(x * o.scale));
  for (let r = 0; r < nQ * heads; r++)
    for (let b = 0; b < hd; b += 32) quantBlock(qs, Array.from({ length: Math.min(32, hd - b) }, (_, d) => r * hd + b + d), qd);
  for (let r = 0; r < nKv * kvHeads; r++)
    for (let b = 0; b < hd; b += 32) quantBlock(k, Array.from({ length: Math.min(32, hd - b) }, (_, d) => r * hd + b + d), kd);
  for (let kh = 0; kh < kvHeads; kh++)
    for (let d = 0; d < hd; d++)
      for (let j0 = 0; j0 < nKv; j0 += 32)
        quantBlock(v, Array.from({ length: Math.min(32, nKv - j0) }, (_, j) => ((j0 + j) * kvHeads + kh) * hd + d), vd);
  const nb = backend();
  const got = nb.attention(q, k, v, { ...o, int16: true });
  const want = ts.attention(qd, kd, vd, { ...o, scale: 1, int16: undefined });
  let vmax = 0;
  for (const x of vd) vmax = Math.max(vmax, Math.abs(x));
  const u = 2 ** -24;
  const group = heads / kvHeads;
  const rowTol = new Float64Array(nQ * heads);
  const seg = o.segments;
  for (let i = 0, sg = 0; i < nQ; i++) {
    let lo = 0, hi = nKv;
    if (seg) {
      while (seg[sg + 1] <= i) sg++;
      lo = seg[sg];
      hi = seg[sg + 1];
    } else if (o.causal) hi = Math.min(nKv, (o.qOffset ?? 0) + i + 1);
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      const s: number[] = [];
      let absMax = 0;
      for (let j = lo; j < hi; j++) {
        let t = 0, a = 0;
        for (let d = 0; d < hd; d++) {
          const x = qd[(i * heads + h) * hd + d] * kd[(j * kvHeads + kh) * hd + d];
          t += x;
          a += Math.abs(x);
        }
        s.push(t);
        absMax = Math.max(absMax, a);
      }
      const m = Math.max(...s);
      const p = s.map((x) => Math.exp(x - m));
      const l = p.reduce((a, b) => a + b, 0);
      const blockMax = new Map<number, number>();
      p.forEach((x, n) => blockMax.set(Math.floor((lo + n) / 32), Math.max(blockMax.get(Math.floor((lo + n) / 32)) ?? 0, x)));
      let sumMax = 0;
      for (const x of blockMax.values()) sumMax += x;
      const delta = (3 + Math.ceil(hd / 32)) * u * absMax;
      rowTol[i * heads + h] = vmax * (Math.expm1(2 * delta) + (8 + Math.ceil(nKv / 32)) * u + (32 * sumMax) / (16382 * l));
    }
  }
  const bad = firstViolation(got, want, (idx) => rowTol[Math.floor(idx / hd)]);
  assert.equal(bad, -1, `${label}: out[${bad}] = ${got[bad]}, oracle ${want[bad]}, tol ${rowTol[Math.floor(bad / hd)]}`);
  // the float kernel differs from it: the test would notice a kernel that ignored the option
  const plain = nb.attention(q, k, v, o);
  assert.ok(plain.some((x, idx) => x !== got[idx]), `${label}: int16 output equals the float kernel's`);
}

function runInt16(label: string, seed: number, o: AttentionOptions): void {
  const r = rng(seed);
  checkInt16(label, randn(r, o.nQ * o.heads * o.headDim, 2), randn(r, o.nKv * o.kvHeads * o.headDim, 2), randn(r, o.nKv * o.kvHeads * o.headDim), o);
}

/** The kernel sets with int16 products: the x86 ones (the baseline set computes in float32). */
function forEachInt16Isa(f: (isa: string) => void): void {
  forEachIsa((isa) => {
    if (isa !== 'scalar') f(isa);
  });
}

test('native int16 attention (quantized vision) agrees with the oracle on what it multiplies', { skip: skipReason }, () => {
  forEachInt16Isa((isa) => {
    for (const seg of [[0, 16], [0, 16, 16, 40], [0, 3, 70, 71, 100], [0, 65, 200]]) {
      const n = seg[seg.length - 1];
      runInt16(`${isa} segments ${seg.join(',')}`, n + seg.length, {
        nQ: n, nKv: n, heads: 3, kvHeads: 3, headDim: 64, scale: 0.125, causal: false, segments: Int32Array.from(seg),
      });
    }
    // head sizes off the 32-dimension blocks, GQA, a causal prefill, rows fewer than a micro-tile
    for (const [hd, heads, kvHeads] of [[8, 2, 1], [40, 4, 2], [72, 3, 1], [80, 2, 2]]) {
      runInt16(`${isa} hd=${hd} heads=${heads}/${kvHeads}`, hd, { nQ: 37, nKv: 37, heads, kvHeads, headDim: hd, scale: hd ** -0.5, causal: false });
    }
    runInt16(`${isa} causal`, 7, { nQ: 90, nKv: 90, heads: 2, kvHeads: 1, headDim: 64, scale: 0.125, causal: true });
    runInt16(`${isa} causal, qOffset`, 8, { nQ: 20, nKv: 150, heads: 4, kvHeads: 2, headDim: 32, scale: 0.2, causal: true, qOffset: 130 });
  });
});

test('native int16 attention: climbing scores move the reference max; a NaN value stays in its dimension', { skip: skipReason }, () => {
  const hd = 32;
  const { q, k, v, nQ, nKv } = climbingScores(hd, 9);
  const r = rng(10);
  forEachInt16Isa((isa) => {
    const o: AttentionOptions = { nQ, nKv, heads: 1, kvHeads: 1, headDim: hd, scale: 0.5, causal: false };
    checkInt16(`${isa} climbing scores`, q, k, v, o);
    checkInt16(`${isa} falling scores`, q, k.slice().reverse(), v, o);
    const vn = v.slice();
    vn[5 * hd + 3] = Number.NaN;
    const got = backend().attention(randn(r, nQ * hd), randn(r, nKv * hd), vn, { ...o, int16: true });
    for (let i = 0; i < nQ; i++)
      for (let d = 0; d < hd; d++) {
        if (d === 3) assert.ok(Number.isNaN(got[i * hd + d]), `${isa}: row ${i} dim 3 is NaN`);
        else assert.ok(Number.isFinite(got[i * hd + d]), `${isa}: row ${i} dim ${d} is finite`);
      }
  });
});

test('attention over q, k and v that are views into fused rows (the vision tower\'s q|k|v) equals it over packed copies', { skip: skipReason }, () => {
  const nb = backend();
  for (const [heads, kvHeads, hd, n, causal] of [[3, 3, 64, 70, false], [4, 2, 16, 21, true], [2, 1, 8, 5, false]] as const) {
    const r = rng(heads * n + hd);
    const qw = heads * hd, kvw = kvHeads * hd, stride = qw + 2 * kvw + 1; // one spare value per row
    const fused = randn(r, n * stride);
    const part = (off: number, width: number) => {
      const p = new Float32Array(n * width);
      for (let i = 0; i < n; i++) p.set(fused.subarray(i * stride + off, i * stride + off + width), i * width);
      return p;
    };
    const o: AttentionOptions = { nQ: n, nKv: n, heads, kvHeads, headDim: hd, scale: hd ** -0.5, causal };
    const views = [fused, fused.subarray(qw), fused.subarray(qw + kvw)] as const;
    const strided: AttentionOptions = { ...o, qStride: stride, kvStride: stride };
    assert.deepEqual(ts.attention(...views, strided), ts.attention(part(0, qw), part(qw, kvw), part(qw + kvw, kvw), o), `oracle heads=${heads}/${kvHeads}`);
    forEachIsa((isa) => {
      for (const int16 of [false, true]) {
        const packed = nb.attention(part(0, qw), part(qw, kvw), part(qw + kvw, kvw), { ...o, int16 });
        assert.deepEqual(nb.attention(...views, { ...strided, int16 }), packed, `${isa} heads=${heads}/${kvHeads} int16=${int16}`);
      }
    });
  }
  const a = new Float32Array(40);
  const o: AttentionOptions = { nQ: 2, nKv: 2, heads: 1, kvHeads: 1, headDim: 4, scale: 1, causal: false };
  assert.throws(() => nb.attention(a, a, a, { ...o, qStride: 3 }), (e) => isQvlError(e, 'OPTION_INVALID') && /qStride must be an integer ≥ 4/.test(e.message));
  assert.throws(() => nb.attention(a.subarray(0, 12), a, a, { ...o, qStride: 9 }), (e) => isQvlError(e, 'TENSOR_SHAPE') && /q has 12 values, expected 13/.test(e.message));
  assert.throws(() => nb.attention(a.subarray(0, 8), a.subarray(0, 10), a, { ...o, kvStride: 7 }), (e) => isQvlError(e, 'TENSOR_SHAPE') && /k\/v have 10\/40 values, expected 11/.test(e.message));
});

test('attention rejects an int16 option that is not a boolean', { skip: skipReason }, () => {
  const o = { nQ: 1, nKv: 1, heads: 1, kvHeads: 1, headDim: 4, scale: 1, causal: false, int16: 1 as unknown as boolean };
  const a = new Float32Array(4);
  assert.throws(() => backend().attention(a, a, a, o), (e) => isQvlError(e, 'OPTION_INVALID') && /int16 must be true or false/.test(e.message));
  assert.throws(() => ts.attention(a, a, a, o), (e) => isQvlError(e, 'OPTION_INVALID') && /int16 must be true or false/.test(e.message));
});
