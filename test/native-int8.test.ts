import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { nearestHalfScale } from '../src/weights/convert.ts';
import { backend, firstViolation, INT8_MAX_TOKENS_Q4, INT8_PASS_TOKENS, int8MaxTokensQ4, isas, matmulBounds, q4 as randomQ4, randn, rng, skipReason, usesInt8Activations } from './native-util.ts';

// The int8-activation GEMV (native/gemv_int8.inc, gemv_int8_avx2.inc) on every kernel set that
// has one, forced one at a time. Shapes: odd K (a q4 row ends mid-byte), K just under / over the
// 32-column blocks and the 64-column AVX2 q4 chunks (a last chunk with one or two blocks), and
// a long row where the rounding of the scales would show. Up to MAX_TOKENS tokens share one pass
// over the weights (batched decode).
const ts = new TsBackend();
const MAX_TOKENS = 8;
const INT8_ISAS = ['avx512vnni', 'avx512', 'avx2vnni', 'avx2'] as const;
const SHAPES: Array<[number, number]> = [
  [1, 2],
  [3, 63],
  [5, 65],
  [7, 95],
  [33, 97],
  [2, 128],
  [67, 1001],
  [6, 4097],
];

function q8(r: () => number, rows: number, cols: number): WeightData {
  const qs = new Int8Array(rows * cols);
  for (let i = 0; i < qs.length; i++) qs[i] = Math.floor(r() * 256) - 128; // −128 included
  const scales = new Float32Array(rows * Math.ceil(cols / 32));
  for (let i = 0; i < scales.length; i++) scales[i] = 0.001 + 0.01 * r();
  return { format: 'q8', rows, cols, qs, scales };
}

/** Zero points 0–15: the 4-bit range the int8 kernels are written for. */
const q4 = (r: () => number, rows: number, cols: number, groupSize: number, zeros: boolean) => randomQ4(r, rows, cols, groupSize, zeros, false, 16);

/** The int8 kernel sets this CPU can run; the others are named as untested. */
function runnableInt8Isas(t: { diagnostic(m: string): void }, nb: ReturnType<typeof backend>): (typeof INT8_ISAS)[number][] {
  const have = isas(nb);
  for (const isa of INT8_ISAS) if (!have.includes(isa)) t.diagnostic(`${isa}: this CPU cannot execute it, not tested here`);
  return INT8_ISAS.filter((isa) => have.includes(isa));
}

const SPECS: Array<[string, (r: () => number, rows: number, cols: number) => WeightData]> = [
  ['q8', q8],
  ['q4 g32', (r, rows, cols) => q4(r, rows, cols, 32, false)],
  ['q4 g32 zeros', (r, rows, cols) => q4(r, rows, cols, 32, true)],
  ['q4 g64 zeros', (r, rows, cols) => q4(r, rows, cols, 64, true)],
  ['q4 g128', (r, rows, cols) => q4(r, rows, cols, 128, false)],
  ['q4 g192 zeros', (r, rows, cols) => q4(r, rows, cols, 192, true)],
];

test('int8-activation GEMV agrees with the oracle within its bound on every kernel set', { skip: skipReason }, (t) => {
  const nb = backend();
  for (const isa of runnableInt8Isas(t, nb)) {
    nb.useInstructionSet(isa);
    for (const [label, make] of SPECS) {
      const r = rng(label.length * 31 + 5);
      for (const [rows, cols] of SHAPES) {
        const w = make(r, rows, cols);
        const pn = nb.prepare(w);
        const pt = ts.prepare(w);
        const bias = randn(r, rows);
        for (let n = 1; n <= MAX_TOKENS; n++) {
          const x = randn(r, n * cols);
          // one token's activations with a large outlier and a block of zeros (scale 0)
          x[Math.floor(r() * cols)] = 40;
          for (let c = 0; c < Math.min(32, cols); c++) x[(n - 1) * cols + c] = 0;
          const withBias = n !== 2;
          const got = nb.matmul(x, n, pn, withBias ? bias : null);
          const want = ts.matmul(x, n, pt, withBias ? bias : null);
          // the format rule is the shared one; the int8 path now serves up to MAX_TOKENS tokens
          const int8 = usesInt8Activations(isa, 1, w);
          const bound = matmulBounds(x, n, w, int8 ? 127 : 0);
          const bad = firstViolation(got, want, (i) => bound[i] + (withBias ? Math.abs(want[i]) * 2 ** -23 : 0));
          assert.equal(bad, -1, `${isa} ${label} [${rows}×${cols}] n=${n}: y[${bad}] = ${got[bad]}, oracle ${want[bad]}, bound ${bound[bad]}`);
        }
      }
    }
  }
  nb.useInstructionSet('best');
});

// Rounding x to steps of d = max|x_b|/127 adds noise of rms d/√12 ≈ 0.6% of σ_x for Gaussian
// blocks of 32 (max ≈ 2.5σ), hence the 1% limit; the bound above allows ~1/254 per block.
test('int8-activation GEMV: typical error far below the bound (relative rms < 1%)', { skip: skipReason }, (t) => {
  const nb = backend();
  for (const isa of runnableInt8Isas(t, nb)) {
    nb.useInstructionSet(isa);
    for (const [label, make] of SPECS) {
      const r = rng(7);
      const w = make(r, 48, 2560);
      const x = randn(r, 2560);
      const got = nb.matmul(x, 1, nb.prepare(w));
      const want = ts.matmul(x, 1, ts.prepare(w));
      let num = 0;
      let den = 0;
      for (let i = 0; i < w.rows; i++) {
        num += (got[i] - want[i]) ** 2;
        den += want[i] ** 2;
      }
      assert.ok(Math.sqrt(num / den) < 0.01, `${isa} ${label}: relative rms error ${Math.sqrt(num / den)}`);
    }
  }
  nb.useInstructionSet('best');
});

// Batched decode runs several sequences through one call and needs each token's output to be
// exactly what a 1-token call gives (each token is quantized and accumulated on its own). Rows
// not a multiple of the 32-row tasks nor of the 2- and 4-row register blocks; K off the 64-column
// chunks.
const BATCH_SPECS: Array<[string, (r: () => number, rows: number, cols: number) => WeightData]> = [
  ['q8', q8],
  ['q4 g32', (r, rows, cols) => q4(r, rows, cols, 32, false)],
  ['q4 g32 zeros', (r, rows, cols) => q4(r, rows, cols, 32, true)],
  ['q4 g128', (r, rows, cols) => q4(r, rows, cols, 128, false)],
  ['q4 g128 zeros', (r, rows, cols) => q4(r, rows, cols, 128, true)],
];
const BATCH_SHAPES: Array<[number, number]> = [
  [1, 33],
  [67, 1001],
  [45, 2500],
];

test('int8-activation GEMV: each token of an n-token call is bit-identical to a 1-token call (n = 1…8)', { skip: skipReason }, (t) => {
  const nb = backend();
  for (const isa of runnableInt8Isas(t, nb)) {
    nb.useInstructionSet(isa);
    for (const [label, make] of BATCH_SPECS) {
      const r = rng(label.length * 17 + 3);
      for (const [rows, cols] of BATCH_SHAPES) {
        const w = make(r, rows, cols);
        assert.ok(usesInt8Activations(isa, 1, w), `${isa} ${label}: expected the int8 path`);
        const pn = nb.prepare(w);
        const bias = randn(r, rows);
        const x = randn(r, MAX_TOKENS * cols);
        // tokens of very different magnitudes, so that a shared scale would show
        for (let c = 0; c < cols; c++) x[cols + c] *= 1000;
        for (let c = 0; c < cols; c++) x[2 * cols + c] *= 1e-3;
        const single = Array.from({ length: MAX_TOKENS }, (_, k) => nb.matmul(x.subarray(k * cols, (k + 1) * cols), 1, pn, bias));
        for (let n = 1; n <= MAX_TOKENS; n++) {
          const got = nb.matmul(x.subarray(0, n * cols), n, pn, bias);
          for (let k = 0; k < n; k++) {
            const a = new Uint32Array(got.buffer, got.byteOffset + k * rows * 4, rows);
            const b = new Uint32Array(single[k].buffer, single[k].byteOffset, rows);
            const bad = a.findIndex((v, i) => v !== b[i]);
            assert.equal(bad, -1, `${isa} ${label} [${rows}×${cols}] n=${n} token ${k}: y[${bad}] = ${got[k * rows + bad]}, 1-token call ${single[k][bad]}`);
          }
        }
      }
    }
  }
  nb.useInstructionSet('best');
});

// The VNNI sets fold a repacked q4 weight's zero points into the integer sums (vpdpbusd takes
// q + 128 − z; native/gemv_q4x8.inc), the others apply them in float per group (vpmaddubsw's int16
// sums have no room): within each kind the sets agree bit for bit, and q8 and row-major q4 agree
// across all of them.
const FOLDS_Q4X8: ReadonlySet<string> = new Set(['avx512vnni', 'avx2vnni']);

test('the int8 GEMVs of every kernel set give identical results within each kind (same integer sums, same float order); q8 and row-major q4 across all', { skip: skipReason }, (t) => {
  const nb = backend();
  const sets = runnableInt8Isas(t, nb);
  if (sets.length < 2) {
    t.skip(`this CPU runs ${sets.length} int8 kernel set: nothing to compare`);
    return;
  }
  let crossKind = 0;
  for (const [label, make] of SPECS) {
    const r = rng(11);
    for (const [rows, cols] of SHAPES) {
      const w = make(r, rows, cols);
      for (const n of [1, 3, MAX_TOKENS]) {
        const x = randn(r, n * cols);
        const run = (isa: (typeof INT8_ISAS)[number]) => {
          nb.useInstructionSet(isa);
          const pw = nb.prepare(w);
          return { y: nb.matmul(x, n, pw), folds: FOLDS_Q4X8.has(isa) && nb.layoutOf(pw).startsWith('q4x8') };
        };
        const results = sets.map((isa) => ({ isa, ...run(isa) }));
        results.forEach((a, i) =>
          results.slice(i + 1).forEach((b) => {
            if (a.folds !== b.folds) return;
            if (FOLDS_Q4X8.has(a.isa) !== FOLDS_Q4X8.has(b.isa)) crossKind++;
            assert.deepEqual(a.y, b.y, `${label} [${rows}×${cols}] n=${n}: ${a.isa} against ${b.isa}`);
          }),
        );
      }
    }
  }
  // q8 compares across the two kinds wherever both run (a guard that the rule above skips only q4x8)
  if (sets.some((s) => FOLDS_Q4X8.has(s)) && sets.some((s) => !FOLDS_Q4X8.has(s))) assert.ok(crossKind > 0, 'no comparison across the two kinds of set');
  nb.useInstructionSet('best');
});

// The AVX-512 VNNI set puts two eight-row groups in each 512-bit register for passes of 2 or more
// tokens where the datapath is 512 bits wide (native/int8_pair512.inc), one per 256-bit register
// elsewhere: each lane does the same arithmetic, so both give the same bits. Row counts that leave
// a last odd row group, a partial one, or one row group alone; binary16 and float32 scales.
test('the AVX-512 VNNI int8 GEMVs give the same bits with two row groups per 512-bit register as with one', { skip: skipReason }, (t) => {
  const nb = backend();
  if (!isas(nb).includes('avx512vnni')) {
    t.skip('this CPU cannot execute avx512vnni: not tested here');
    return;
  }
  const addon = loadAddon();
  const fromCpu = addon.info().int8Gemv512;
  // 'best' is a mixed table exactly on AMD CPUs with AVX-512 (the test below)
  const amd = nb.useInstructionSet('best').startsWith('avx512vnni+');
  assert.equal(fromCpu, amd && !addon.info().splits512BitOps, 'the CPU default: pairs on AMD CPUs whose 512-bit operations are not split');
  const half = (w: WeightData): WeightData => {
    if (w.format !== 'q8' && w.format !== 'q4') throw new Error(`binary16 scales of a ${w.format} weight`);
    return { ...w, scales: Float32Array.from(w.scales, (v) => nearestHalfScale(v)) };
  };
  const specs: Array<[string, (r: () => number, rows: number, cols: number) => WeightData, string]> = [
    ['q8', q8, 'q8x8'],
    ['q8 binary16 scales', (r, rows, cols) => half(q8(r, rows, cols)), 'q8x8-f16'],
    ['q4 g32 zeros', (r, rows, cols) => q4(r, rows, cols, 32, true), 'q4x8'],
    ['q4 g32 zeros binary16 scales', (r, rows, cols) => half(q4(r, rows, cols, 32, true)), 'q4x8-f16'],
    // group 32 takes a kernel of its own for each scale form, with and without zero points
    ['q4 g32 symmetric', (r, rows, cols) => q4(r, rows, cols, 32, false), 'q4x8'],
    ['q4 g32 symmetric binary16 scales', (r, rows, cols) => half(q4(r, rows, cols, 32, false)), 'q4x8-f16'],
    ['q4 g128 binary16 scales', (r, rows, cols) => half(q4(r, rows, cols, 128, false)), 'q4x8-f16'],
    ['q4 g64 zeros', (r, rows, cols) => q4(r, rows, cols, 64, true), 'q4x8'],
  ];
  nb.useInstructionSet('avx512vnni');
  try {
    for (const [label, make, layout] of specs) {
      const r = rng(label.length * 13 + 1);
      for (const [rows, cols] of [[8, 64], [16, 96], [13, 2560], [24, 200], [77, 1001], [400, 320], [1000, 96]] as const) {
        const w = make(r, rows, cols);
        const pw = nb.prepare(w);
        assert.equal(nb.layoutOf(pw), layout, `${label} [${rows}×${cols}]: expected the ${layout} stream`);
        const bias = randn(r, rows);
        for (let n = 1; n <= MAX_TOKENS; n++) {
          const x = randn(r, n * cols);
          for (let c = 0; c < cols; c++) x[c] *= 100; // tokens of different magnitudes
          const withBias = n % 2 === 1 ? bias : null;
          assert.equal(addon.setInt8Gemv512(true), true);
          const wide = nb.matmul(x, n, pw, withBias);
          assert.equal(addon.setInt8Gemv512(false), false);
          const narrow = nb.matmul(x, n, pw, withBias);
          const a = new Uint32Array(wide.buffer, wide.byteOffset, wide.length);
          const b = new Uint32Array(narrow.buffer, narrow.byteOffset, narrow.length);
          const bad = a.findIndex((v, i) => v !== b[i]);
          assert.equal(bad, -1, `${label} [${rows}×${cols}] n=${n}: y[${bad}] = ${wide[bad]} with pairs, ${narrow[bad]} without`);
        }
      }
    }
  } finally {
    assert.equal(addon.setInt8Gemv512(null), fromCpu, 'null gives the choice back to the CPU');
    nb.useInstructionSet('best');
  }
});

test("'best' on an AMD CPU with AVX-512: the 1-token float GEMV (and, where 512-bit operations run as two halves and the CPU has AVX-VNNI, the int8 GEMV) is the AVX2 set's, everything else avx512vnni's", { skip: skipReason }, (t) => {
  const nb = backend();
  const best = nb.useInstructionSet('best');
  const narrow = best === 'avx512vnni+avx2vnni-gemv' ? 'avx2vnni' : best === 'avx512vnni+avx2-gemv' ? 'avx2' : null;
  if (!narrow) {
    t.skip(`'best' is ${best} here: no mixed set to check`);
    return;
  }
  const r = rng(23);
  // float cases where the two sets' results differ, so the check can tell which one ran (the
  // int8 GEMVs of all sets give identical results, as the test above checks: there only the
  // table's name says which one runs)
  let discriminating = 0;
  for (const [label, make] of [...SPECS, ['bf16', (rr: () => number, rows: number, cols: number) => bf16(rr, rows, cols)] as const]) {
    // 4096 columns: the activations just fit the one-row GEMV's 16 KiB (native/kernels.h); 4097 do not
    for (const [rows, cols] of [[33, 97], [6, 4096], [6, 4097]] as const) {
      const w = make(r, rows, cols);
      for (const n of [1, 2, MAX_TOKENS, MAX_TOKENS + 1, 40]) {
        const x = randn(r, n * cols);
        const run = (isa: 'best' | 'avx512vnni' | 'avx2vnni' | 'avx2') => {
          nb.useInstructionSet(isa);
          return nb.matmul(x, n, nb.prepare(w));
        };
        const got = run('best');
        const int8: boolean = narrow === 'avx2vnni' && usesInt8Activations('avx2vnni', n, w);
        const oneRow = w.format === 'bf16' && n === 1 && cols * 4 <= 16384;
        const from: 'avx512vnni' | 'avx2vnni' | 'avx2' = int8 || oneRow ? narrow : 'avx512vnni';
        assert.deepEqual(got, run(from), `${label} [${rows}×${cols}] n=${n}: expected ${from}'s result`);
        if (int8) assert.deepEqual(run('avx512vnni'), got, `${label} [${rows}×${cols}] n=${n}: the int8 GEMVs differ`);
        else if (from === narrow && run('avx512vnni').some((v, i) => v !== got[i])) discriminating++;
      }
    }
  }
  assert.ok(discriminating > 0, 'the two float GEMVs never differed: the check cannot tell which one ran');
  nb.useInstructionSet('best');
});

test("'best' on an AMD CPU with AVX-512 takes the int8 GEMV from the AVX-VNNI set exactly where 512-bit operations run as two halves", { skip: skipReason }, (t) => {
  const nb = backend();
  const best = nb.useInstructionSet('best');
  const info = loadAddon().info();
  if (!best.startsWith('avx512vnni+')) {
    t.skip(`'best' is ${best} here: not an AMD CPU with AVX-512`);
    return;
  }
  const vnni256 = isas(nb).includes('avx2vnni');
  assert.equal(best, info.splits512BitOps && vnni256 ? 'avx512vnni+avx2vnni-gemv' : 'avx512vnni+avx2-gemv', `splits512BitOps ${info.splits512BitOps}, AVX-VNNI ${vnni256}`);
});

function bf16(r: () => number, rows: number, cols: number): WeightData {
  const f = new Float32Array(rows * cols);
  for (let i = 0; i < f.length; i++) f[i] = (r() - 0.5) * 0.1;
  return { format: 'bf16', rows, cols, data: new Uint16Array(f.buffer).filter((_, i) => i % 2 === 1) };
}

test(`prompts over q4 (${INT8_PASS_TOKENS + 1}…${INT8_MAX_TOKENS_Q4} tokens; any length in the AVX2 sets and over repacked q4) take int8 passes of ${INT8_PASS_TOKENS} tokens, each as a call with those tokens alone; q8 keeps float activations`, { skip: skipReason }, (t) => {
  const nb = backend();
  for (const isa of runnableInt8Isas(t, nb)) {
    nb.useInstructionSet(isa);
    for (const [label, make] of BATCH_SPECS) {
      const r = rng(label.length * 7 + 1);
      const [rows, cols] = [45, 300];
      const w = make(r, rows, cols);
      if (w.format !== 'q4') continue; // q8 past one pass: the float bound in native-matmul.test.ts
      const pn = nb.prepare(w);
      const bias = randn(r, rows);
      const long = int8MaxTokensQ4(isa, nb.layoutOf(pn) !== 'row-major') > INT8_MAX_TOKENS_Q4 ? [INT8_MAX_TOKENS_Q4 + 13] : [];
      for (const n of [INT8_PASS_TOKENS + 1, 21, INT8_MAX_TOKENS_Q4, ...long]) {
        assert.ok(usesInt8Activations(isa, n, w), `${isa} ${label} n=${n}: expected int8 passes`);
        const x = randn(r, n * cols);
        const got = nb.matmul(x, n, pn, bias);
        for (let t0 = 0; t0 < n; t0 += INT8_PASS_TOKENS) {
          const m = Math.min(INT8_PASS_TOKENS, n - t0);
          const pass = nb.matmul(x.subarray(t0 * cols, (t0 + m) * cols), m, pn, bias);
          const a = new Uint32Array(got.buffer, got.byteOffset + t0 * rows * 4, m * rows);
          const bad = a.findIndex((v, i) => v !== new Uint32Array(pass.buffer, pass.byteOffset, m * rows)[i]);
          assert.equal(bad, -1, `${isa} ${label} n=${n} pass at token ${t0}: y[${bad}] differs from the ${m}-token call`);
        }
      }
    }
  }
  nb.useInstructionSet('best');
});
