/**
 * The blocked kernels at sizes that cross every block boundary: GEMM row blocks (8 micro-tiles
 * of 12/6/4 rows), token blocks (16 panels of 32/16/8 tokens), 256-column slices; tiled
 * attention query blocks (48/24/16 rows), key blocks (128/64/32 keys), head dims that are not a
 * multiple of a panel, segments that end mid-block. Every ISA, against the TypeScript oracle.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttentionOptions } from '../src/kernels/backend.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { activationLevels, backend, firstViolation, isas, matmulBounds, randn, rng, skipReason, WEIGHT_SPECS } from './native-util.ts';

const ts = new TsBackend();

test('blocked GEMM agrees with the oracle across row, token and column blocks', { skip: skipReason }, () => {
  const nb = backend();
  const list = isas(nb);
  // 530 tokens: two token blocks on AVX-512 and AVX2 (512 each), five portable (128);
  // 110 rows: a partial row block and a partial micro-tile; 300 columns: a partial slice
  const [n, rows, cols] = [530, 110, 300];
  // q4 without act-order takes int8 passes instead of the GEMM in the AVX2 sets (their bound
  // then includes the activation rounding); act-order q4 reaches the GEMM in every set
  for (const label of ['bf16', 'q4 g32 zeros', 'q4 g32 act-order', 'q8', 'fp8', 'f32']) {
    const spec = WEIGHT_SPECS.find((s) => s.label === label)!;
    const r = rng(label.length * 7 + 1);
    const w = spec.make(r, rows, cols);
    const x = randn(r, n * cols);
    const bias = randn(r, rows);
    const want = ts.matmul(x, n, ts.prepare(w), bias);
    const floatBound = matmulBounds(x, n, w, 0);
    const pn = nb.prepare(w);
    for (const isa of list) {
      nb.useInstructionSet(isa);
      const levels = activationLevels(isa, n, w);
      const bound = levels ? matmulBounds(x, n, w, levels) : floatBound;
      const got = nb.matmul(x, n, pn, bias);
      const bad = firstViolation(got, want, (i) => bound[i] + Math.abs(want[i]) * 2 ** -23);
      assert.equal(bad, -1, `${isa} ${label}: y[${bad}] (token ${Math.floor(bad / rows)}, row ${bad % rows}) = ${got[bad]}, oracle ${want[bad]}`);
    }
  }
  nb.useInstructionSet('best');
});

test('long GEMMs run in chunks of token blocks with the same results', { skip: skipReason }, () => {
  // ≥ 32 row blocks make every chunk one token block: 530 tokens are 2 (AVX-512, AVX2) or 5 chunks.
  // The output (17 MB) is past the 16 MiB from which AVX2 writes it with non-temporal stores
  // (whole 8-row tiles, 16-byte aligned; native/gemm.inc): a fresh buffer takes that path, an
  // `out` shifted by one float the cached one, and the last row block (4 rows) the element-wise tail.
  const nb = backend();
  const [n, rows, cols] = [530, 8020, 24];
  assert.ok(n * rows * 4 >= 16 << 20);
  const shifted = new Float32Array(n * rows + 1).subarray(1);
  // bf16 through the float GEMM, q8 through the int16-activation one (native/gemm_q8i16.inc)
  for (const label of ['bf16', 'q8 binary16 scales']) {
    const r = rng(77);
    const w = WEIGHT_SPECS.find((s) => s.label === label)!.make(r, rows, cols);
    const x = randn(r, n * cols);
    const want = ts.matmul(x, n, ts.prepare(w));
    const pn = nb.prepare(w);
    for (const isa of isas(nb)) {
      nb.useInstructionSet(isa);
      const bound = matmulBounds(x, n, w, activationLevels(isa, n, w));
      for (const [how, got] of [['fresh', nb.matmul(x, n, pn)], ['shifted', nb.matmul(x, n, pn, null, shifted)]] as const) {
        const bad = firstViolation(got, want, (i) => bound[i]);
        assert.equal(bad, -1, `${isa} ${label} ${how} out: y[${bad}] (token ${Math.floor(bad / rows)}, row ${bad % rows}) = ${got[bad]}, oracle ${want[bad]}`);
      }
    }
  }
  nb.useInstructionSet('best');
});

/** Same tolerance as test/native-attention.test.ts: score error through the softmax, times max|v|. */
function attentionCheck(label: string, seed: number, o: AttentionOptions): void {
  const r = rng(seed);
  const q = randn(r, o.nQ * o.heads * o.headDim);
  const k = randn(r, o.nKv * o.kvHeads * o.headDim);
  const v = randn(r, o.nKv * o.kvHeads * o.headDim);
  const want = ts.attention(q, k, v, o);
  const max = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const scoreErr = 2 * o.headDim * 2 ** -24 * max(q) * max(k) * o.scale * o.headDim;
  const tol = max(v) * (4 * scoreErr + 64 * 2 ** -24);
  const nb = backend();
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    const got = nb.attention(q, k, v, o);
    const bad = firstViolation(got, want, () => tol);
    assert.equal(bad, -1, `${isa} ${label}: out[${bad}] = ${got[bad]}, oracle ${want[bad]}, tol ${tol}`);
  }
  nb.useInstructionSet('best');
}

test('tiled attention: vision segments that end mid-block, head dims 64 and 72', { skip: skipReason }, () => {
  for (const hd of [64, 72]) {
    attentionCheck(`vision hd=${hd}`, hd, {
      nQ: 300, nKv: 300, heads: 2, kvHeads: 2, headDim: hd, scale: 1 / Math.sqrt(hd), causal: false, segments: Int32Array.of(0, 130, 131, 131, 300),
    });
  }
  attentionCheck('one long segment', 5, { nQ: 270, nKv: 270, heads: 1, kvHeads: 1, headDim: 64, scale: 0.125, causal: false, segments: Int32Array.of(0, 270) });
});

test('tiled attention: causal prefill with GQA, a cache offset and several key blocks', { skip: skipReason }, () => {
  attentionCheck('prefill gqa4 hd128', 11, { nQ: 150, nKv: 150, heads: 8, kvHeads: 2, headDim: 128, scale: 128 ** -0.5, causal: true });
  attentionCheck('chunk after 200 cached', 12, { nQ: 70, nKv: 270, heads: 4, kvHeads: 1, headDim: 128, scale: 128 ** -0.5, causal: true, qOffset: 200 });
  attentionCheck('gqa8 two queries', 13, { nQ: 2, nKv: 333, heads: 16, kvHeads: 2, headDim: 40, scale: 0.2, causal: true, qOffset: 331 });
  attentionCheck('non-causal, more keys than queries', 14, { nQ: 20, nKv: 300, heads: 2, kvHeads: 2, headDim: 16, scale: 0.25, causal: false });
});
