import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { isQvlError } from '../src/errors.ts';
import { E4M3_TABLE, f32ToBf16 } from '../src/kernels/dtypes.ts';
import { backend, firstViolation, isas, randn, rng, skipReason, WEIGHT_SPECS } from './native-util.ts';

const ts = new TsBackend();
const U = 2 ** -24;

function forEachIsa(f: (isa: string) => void): void {
  const nb = backend();
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    f(isa);
  }
  nb.useInstructionSet('best');
}

test('native gatherRows decodes rows bit-exactly for every format', { skip: skipReason }, () => {
  const nb = backend();
  forEachIsa((isa) => {
    for (const spec of WEIGHT_SPECS) {
      const r = rng(17);
      const w = spec.make(r, 29, 77);
      if (w.format === 'fp8') w.qs[5] = 0x7f; // a NaN code must come out as NaN
      const ids = [0, 28, 5, 5, 13];
      const got = nb.gatherRows(nb.prepare(w), ids);
      const want = ts.gatherRows(ts.prepare(w), ids);
      assert.equal(firstViolation(got, want, () => 0), -1, `${isa} ${spec.label}`);
    }
  });
});

test('native fp8 decoding matches the e4m3 table for all 256 codes', { skip: skipReason }, () => {
  const nb = backend();
  const qs = Uint8Array.from({ length: 256 }, (_, i) => i);
  const got = nb.gatherRows(nb.prepare({ format: 'fp8', rows: 1, cols: 256, qs, scales: Float32Array.of(1), blockRows: 128, blockCols: 128 * 2 }), [0]);
  assert.equal(firstViolation(got, E4M3_TABLE, () => 0), -1);
});

test('native gatherRows rejects ids outside the table', { skip: skipReason }, () => {
  const nb = backend();
  const w = nb.prepare({ format: 'f32', rows: 3, cols: 2, data: new Float32Array(6) });
  assert.throws(() => nb.gatherRows(w, [0, 3]), (e) => isQvlError(e, 'OPTION_INVALID') && /id 3 \(position 1\) is outside 0..2/.test(e.message));
  assert.throws(() => nb.gatherRows(w, [-1]), (e) => isQvlError(e, 'OPTION_INVALID'));
});

test('native rmsNorm and layerNorm agree with the oracle', { skip: skipReason }, () => {
  forEachIsa((isa) => {
    const nb = backend();
    for (const [rows, dim] of [[1, 1], [3, 7], [17, 64], [5, 2560], [2, 33]]) {
      const r = rng(rows * 31 + dim);
      const x = randn(r, rows * dim, 3);
      const w = randn(r, dim);
      const b = randn(r, dim);
      const got = nb.rmsNorm(x, dim, w, 1e-6);
      const want = ts.rmsNorm(x, dim, w, 1e-6);
      // both accumulate in float64 and round once or twice: 2 ulp
      assert.equal(firstViolation(got, want, (i) => 4 * U * Math.abs(want[i])), -1, `${isa} rmsNorm ${rows}×${dim}`);
      const gotL = nb.layerNorm(x, dim, w, b, 1e-6);
      const wantL = ts.layerNorm(x, dim, w, b, 1e-6);
      assert.equal(firstViolation(gotL, wantL, (i) => 4 * U * Math.abs(wantL[i]) + 1e-12), -1, `${isa} layerNorm ${rows}×${dim}`);
      // into a caller's buffer, or over x itself: the same values
      const into = new Float32Array(x.length).fill(Number.NaN);
      assert.equal(nb.layerNorm(x, dim, w, b, 1e-6, into), into);
      assert.deepEqual(into, gotL, `${isa} layerNorm into out`);
      const inPlace = x.slice();
      nb.layerNorm(inPlace, dim, w, b, 1e-6, inPlace);
      assert.deepEqual(inPlace, gotL, `${isa} layerNorm in place`);
      assert.deepEqual(ts.layerNorm(x, dim, w, b, 1e-6, into), wantL, 'oracle layerNorm into out');
    }
  });
});

test('native rope is bit-identical to the oracle (float64 evaluation, one rounding)', { skip: skipReason }, () => {
  forEachIsa((isa) => {
    const nb = backend();
    for (const [n, heads, hd] of [[1, 1, 2], [5, 3, 16], [17, 4, 128], [2, 2, 6]]) {
      const r = rng(n * heads * hd);
      const x = randn(r, n * heads * hd);
      const ang = randn(r, n * hd, 3);
      const cos = ang.map(Math.cos);
      const sin = ang.map(Math.sin);
      const a = x.slice();
      const b = x.slice();
      nb.rope(a, n, heads, hd, cos, sin);
      ts.rope(b, n, heads, hd, cos, sin);
      assert.equal(firstViolation(a, b, () => 0), -1, `${isa} rope n=${n} heads=${heads} hd=${hd}`);
    }
  });
});

test('native rope over rows a stride apart (views into wider rows) matches the oracle and leaves the gaps alone', { skip: skipReason }, () => {
  forEachIsa((isa) => {
    const nb = backend();
    for (const [n, heads, hd, stride] of [[1, 1, 2, 5], [7, 2, 16, 96], [33, 4, 8, 40]]) {
      const r = rng(n + stride);
      const wide = randn(r, (n - 1) * stride + heads * hd + 3);
      const ang = randn(r, n * hd, 3);
      const cos = ang.map(Math.cos);
      const sin = ang.map(Math.sin);
      const a = wide.slice();
      const b = wide.slice();
      nb.rope(a.subarray(3), n, heads, hd, cos, sin, stride);
      ts.rope(b.subarray(3), n, heads, hd, cos, sin, stride);
      assert.equal(firstViolation(a, b, () => 0), -1, `${isa} rope n=${n} stride=${stride}`);
      // the same rotation as packed rows; everything outside the rows unchanged
      const packed = new Float32Array(n * heads * hd);
      for (let i = 0; i < n; i++) packed.set(wide.subarray(3 + i * stride, 3 + i * stride + heads * hd), i * heads * hd);
      nb.rope(packed, n, heads, hd, cos, sin);
      for (let i = 0; i < a.length; i++) {
        const row = Math.floor((i - 3) / stride), col = (i - 3) % stride;
        const inRow = i >= 3 && row < n && col < heads * hd;
        assert.equal(a[i], inRow ? packed[row * heads * hd + col] : wide[i], `${isa} rope stride=${stride} value ${i}`);
      }
    }
  });
  const nb = backend();
  const x = new Float32Array(10);
  assert.throws(() => nb.rope(x, 2, 1, 4, new Float32Array(8), new Float32Array(8), 3), (e) => isQvlError(e, 'OPTION_INVALID') && /stride must be an integer ≥ 4/.test(e.message));
  assert.throws(() => nb.rope(x, 2, 1, 4, new Float32Array(8), new Float32Array(8), 7), (e) => isQvlError(e, 'TENSOR_SHAPE') && /expected 11 for 2 rows 7 apart/.test(e.message));
});

test('native siluMul, gelu (tanh and erf) and addInPlace agree with the oracle', { skip: skipReason }, () => {
  forEachIsa((isa) => {
    const nb = backend();
    for (const len of [1, 7, 16, 33, 100_003]) {
      const r = rng(len);
      const g = randn(r, len, 4);
      g[0] = len > 1 ? -120 : g[0]; // far tail: e^x saturates, the result is ~0 either way
      const u = randn(r, len, 2);
      const got = nb.siluMul(g, u);
      const want = ts.siluMul(g, u);
      // e^x to ~2e-7 relative, then one division and one product
      assert.equal(firstViolation(got, want, (i) => 1e-6 * Math.abs(want[i]) + 1e-30), -1, `${isa} siluMul ${len}`);

      for (const kind of ['tanh', 'erf'] as const) {
        const a = g.slice();
        const b = g.slice();
        nb.gelu(a, kind);
        ts.gelu(b, kind);
        // tanh is evaluated as u·σ(2z) in float32: the rounding of 2z (a few ulp of |2z|) becomes a
        // relative error of the result; the oracle's own 1 + tanh(z) loses ~1e-16 absolute for very
        // negative u, hence the last term
        const z2 = (v: number) => 1.6 * Math.abs(v + 0.044715 * v ** 3);
        const tol =
          kind === 'tanh'
            ? (i: number) => Math.abs(b[i]) * (1e-6 + 8 * U * z2(g[i])) + 1e-15 * Math.abs(g[i]) + 1e-30
            : (i: number) => 2 * U * Math.abs(b[i]) + 1e-30;
        assert.equal(firstViolation(a, b, tol), -1, `${isa} gelu ${kind} ${len}`);
      }

      const s = g.slice();
      const t = g.slice();
      nb.addInPlace(s, u);
      ts.addInPlace(t, u);
      assert.equal(firstViolation(s, t, () => 0), -1, `${isa} add ${len}`);
    }
  });
});

test('native gelu keeps 1e-4 accuracy over the whole float range used by vision', { skip: skipReason }, () => {
  const nb = backend();
  const x = Float32Array.from({ length: 4001 }, (_, i) => -20 + i * 0.01);
  for (const kind of ['tanh', 'erf'] as const) {
    const a = x.slice();
    const b = x.slice();
    nb.gelu(a, kind);
    ts.gelu(b, kind);
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.ok(worst < 1e-6, `${kind}: max abs error ${worst}`);
  }
});

test('native argmax picks what the oracle picks: first of equal values, NaN skipped, across lanes, tails and chunks', { skip: skipReason }, () => {
  forEachIsa((isa) => {
    const nb = backend();
    // lengths around the vector widths, the one-thread limit (65,536) and the vocabulary
    for (const len of [0, 1, 2, 7, 15, 16, 17, 31, 33, 65_535, 65_536, 65_537, 151_936, 300_001]) {
      const r = rng(len + 3);
      const x = randn(r, len);
      const cases: Array<[string, Float32Array]> = [['random', x]];
      if (len > 0) {
        const at = (f: number) => Math.min(len - 1, Math.floor(f * len));
        // the largest value twice: in another lane, another chunk, the tail
        for (const [a, b] of [[0.1, 0.9], [0.5, 0.51], [0, 1], [0.99, 0.3]]) {
          const y = x.slice();
          y[at(a)] = 7;
          y[at(b)] = 7;
          cases.push([`ties ${a}/${b}`, y]);
        }
        const nan = x.slice();
        for (let i = 0; i < len; i += 5) nan[i] = Number.NaN;
        nan[at(0.7)] = Number.NaN;
        cases.push(['NaN every 5th', nan]);
        cases.push(['all NaN', new Float32Array(len).fill(Number.NaN)]);
        cases.push(['all −∞', new Float32Array(len).fill(-Infinity)]);
        const late = new Float32Array(len).fill(Number.NaN);
        late[len - 1] = -Infinity;
        cases.push(['NaN then one −∞ last', late]);
        const inf = x.slice();
        inf[at(0.6)] = Infinity;
        cases.push(['+∞', inf]);
        const zeros = new Float32Array(len).fill(-1);
        zeros[at(0.8)] = 0;
        zeros[at(0.2)] = -0;
        cases.push(['−0 before +0', zeros]);
      }
      for (const [name, y] of cases) assert.equal(nb.argmax(y), ts.argmax(y), `${isa} length ${len}: ${name}`);
    }
  });
});

test('native element-wise ops reject mismatched lengths', { skip: skipReason }, () => {
  const nb = backend();
  assert.throws(() => nb.siluMul(new Float32Array(3), new Float32Array(4)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /gate has 3 values, up has 4/.test(e.message));
  assert.throws(() => nb.addInPlace(new Float32Array(3), new Float32Array(4)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /lengths 3 and 4 differ/.test(e.message));
  assert.throws(() => nb.rmsNorm(new Float32Array(10), 4, new Float32Array(4), 1e-6), (e) => isQvlError(e, 'TENSOR_SHAPE') && /not a multiple of dim 4/.test(e.message));
  assert.throws(() => nb.layerNorm(new Float32Array(8), 4, new Float32Array(4), new Float32Array(3), 1e-6), (e) => isQvlError(e, 'TENSOR_SHAPE'));
  assert.throws(() => nb.rope(new Float32Array(6), 1, 2, 3, new Float32Array(3), new Float32Array(3)), (e) => isQvlError(e, 'OPTION_INVALID') && /headDim must be even/.test(e.message));
  assert.throws(() => nb.gelu(new Float32Array(2), 'relu' as never), (e) => isQvlError(e, 'OPTION_INVALID') && /relu/.test(e.message));
  assert.throws(() => nb.argmax(new Float64Array(3) as never), (e) => isQvlError(e, 'OPTION_INVALID') && /argmax: x must be a Float32Array, got Float64Array/.test(e.message));
});

test('native ops handle empty inputs', { skip: skipReason }, () => {
  const nb = backend();
  assert.equal(nb.rmsNorm(new Float32Array(0), 4, new Float32Array(4), 1e-6).length, 0);
  assert.equal(nb.siluMul(new Float32Array(0), new Float32Array(0)).length, 0);
  const w = nb.prepare({ format: 'bf16', rows: 3, cols: 2, data: Uint16Array.from([1, 2, 3, 4, 5, 6].map(f32ToBf16)) });
  assert.equal(nb.matmul(new Float32Array(0), 0, w).length, 0);
  assert.equal(nb.gatherRows(w, []).length, 0);
});
