// q8 weights prepared with fineActivations (q8 mode's text decoder): the int8 GEMV quantizes the
// activations on a grid 64 times finer than int8's, as two int8 halves (native/int8_act256.inc, gemv_q8x8.inc). Checked
// against the float oracle within the bound of that grid, finer than int8 in fact and not just in
// the bound, bit-identical across token counts, kernel sets, the pair kernels and matmulMany, and
// asked for by the model loader exactly for the text decoder's matrices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { NativeBackend } from '../src/kernels/native/backend.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { loadModelFromDir } from '../src/api/load-model.ts';
import { makeQuantConvert } from '../src/weights/quant-plan.ts';
import { backend, firstViolation, isas, matmulBounds, randn, rng, skipReason, WEIGHT_SPECS } from './native-util.ts';

// in CI a missing addon fails these tests instead of skipping them
const nativeSkip = process.env.CI === 'true' ? false : skipReason;
const ts = new TsBackend();
const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
/** The fine grid's levels per block: q = round(x/d), d = max|x|/(64·128). */
const FINE_LEVELS = 64 * 128;
const SPECS = WEIGHT_SPECS.filter((s) => s.label === 'q8' || s.label === 'q8 binary16 scales');
// K under, at and over the 32-column blocks, rows off the 8-row groups and the pairs of them
const SHAPES: Array<[number, number]> = [
  [1, 2],
  [5, 63],
  [7, 97],
  [17, 128],
  [67, 1001],
  [6, 4097],
];

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function sameBits(a: Float32Array, b: Float32Array): number {
  const x = bits(a);
  const y = bits(b);
  return x.findIndex((v, i) => v !== y[i]);
}

/** Activations with an outlier, a block of zeros (scale 0) and, when asked, a NaN in the last token. */
function inputs(r: () => number, n: number, cols: number, nan = false): Float32Array {
  const x = randn(r, n * cols);
  x[Math.floor(r() * cols)] = 40;
  for (let c = 0; c < Math.min(32, cols); c++) x[(n - 1) * cols + c] = 0;
  if (nan && cols > 40) x[(n - 1) * cols + 40] = Number.NaN;
  return x;
}

test('fine q8 GEMV agrees with the float oracle within the bound of the fine grid, every kernel set, repacked or row-major, 1–8 tokens', { skip: nativeSkip }, () => {
  const nb = backend();
  // the instruction set belongs to the thread: both backends run the one chosen
  const flat = new NativeBackend(loadAddon(), { repack: false });
  try {
    for (const isa of ['best' as const, ...isas(nb)]) {
      nb.useInstructionSet(isa);
      for (const { label, make } of SPECS) {
        const r = rng(label.length * 7 + 3);
        for (const [rows, cols] of SHAPES) {
          const w = make(r, rows, cols);
          const pt = ts.prepare(w);
          for (const repack of [true, false]) {
            const pn = (repack ? nb : flat).prepare(w, { fineActivations: true });
            assert.equal(nb.layoutOf(pn) === 'row-major', !repack);
            const bias = randn(r, rows);
            for (let n = 1; n <= 8; n++) {
              const x = inputs(r, n, cols, n === 3);
              const got = nb.matmul(x, n, pn, bias);
              const want = ts.matmul(x, n, pt, bias);
              // row-major fine q8 declines the int8 GEMV: float activations; scalar has no int8 GEMV
              const levels = repack && isa !== 'scalar' ? FINE_LEVELS : 0;
              const bound = matmulBounds(x, n, w, levels);
              const bad = firstViolation(got, want, (i) => bound[i] + Math.abs(want[i]) * 2 ** -23);
              assert.equal(bad, -1, `${isa} ${label} ${repack ? 'repacked' : 'row-major'} [${rows}×${cols}] n=${n}: y[${bad}] = ${got[bad]}, oracle ${want[bad]}, bound ${bound[bad]}`);
            }
          }
        }
      }
    }
  } finally {
    nb.useInstructionSet('best');
  }
});

// int8 steps (max|x|/127) leave a relative rms error of about 0.6% on Gaussian activations; steps
// 64 times finer, about 0.01%. The same weights without the flag must show the coarser one.
test('fine activations are finer in fact: relative rms error below 3e-4 where int8 activations give above 2e-3', { skip: nativeSkip }, () => {
  const nb = backend();
  const rel = (got: Float32Array, want: Float32Array) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < want.length; i++) {
      num += (got[i] - want[i]) ** 2;
      den += want[i] ** 2;
    }
    return Math.sqrt(num / den);
  };
  try {
    for (const isa of isas(nb).filter((s) => s !== 'scalar')) {
      nb.useInstructionSet(isa);
      for (const { label, make } of SPECS) {
        const r = rng(11);
        const w = make(r, 64, 2560);
        const x = randn(rng(5), 4 * 2560);
        const want = ts.matmul(x, 4, ts.prepare(w));
        const fine = rel(nb.matmul(x, 4, nb.prepare(w, { fineActivations: true })), want);
        const int8 = rel(nb.matmul(x, 4, nb.prepare(w)), want);
        assert.ok(fine < 3e-4, `${isa} ${label}: fine relative rms error ${fine}`);
        assert.ok(int8 > 2e-3, `${isa} ${label}: int8 relative rms error ${int8} (the comparison means nothing if int8 were this fine)`);
      }
    }
  } finally {
    nb.useInstructionSet('best');
  }
});

test('fine q8: each token of an n-token call is the 1-token call bit for bit, and every kernel set and pair setting gives the same bits', { skip: nativeSkip }, () => {
  const nb = backend();
  const addon = loadAddon();
  const sets = isas(nb).filter((s) => s !== 'scalar');
  try {
    for (const { label, make } of SPECS) {
      const r = rng(label.length + 29);
      for (const [rows, cols] of [[45, 2500], [136, 96], [3, 33]] as Array<[number, number]>) {
        const w = make(r, rows, cols);
        const bias = randn(r, rows);
        const x = randn(r, 8 * cols);
        for (let c = 0; c < cols; c++) x[5 * cols + c] *= 1000; // tokens of different magnitudes
        let reference: Float32Array | null = null;
        let refName = '';
        for (const isa of sets) {
          nb.useInstructionSet(isa);
          const pn = nb.prepare(w, { fineActivations: true });
          for (const pairs of isa === 'avx512vnni' ? [true, false] : [null]) {
            if (pairs !== null) addon.setInt8Gemv512(pairs);
            const where = `${isa}${pairs === null ? '' : pairs ? ' pairs' : ' no pairs'} ${label} [${rows}×${cols}]`;
            const all = nb.matmul(x, 8, pn, bias);
            for (let n = 1; n <= 8; n++) {
              const some = nb.matmul(x.subarray(0, n * cols), n, pn, bias);
              const bad = sameBits(some, all.subarray(0, n * rows));
              assert.equal(bad, -1, `${where}: n=${n} y[${bad}] differs from the 8-token call's`);
            }
            for (let t = 0; t < 8; t++) {
              const one = nb.matmul(x.subarray(t * cols, (t + 1) * cols), 1, pn, bias);
              assert.equal(sameBits(one, all.subarray(t * rows, (t + 1) * rows)), -1, `${where}: token ${t} alone differs`);
            }
            if (reference === null) {
              reference = all;
              refName = where;
            } else {
              const bad = sameBits(all, reference);
              assert.equal(bad, -1, `${where}: y[${bad}] = ${all[bad]} differs from ${refName}'s ${reference[bad]}`);
            }
          }
          addon.setInt8Gemv512(null);
        }
      }
    }
  } finally {
    addon.setInt8Gemv512(null);
    nb.useInstructionSet('best');
  }
});

test('fine q8 in matmulMany: each weight gets its own matmul bit for bit, also in a list that mixes fine and int8 weights', { skip: nativeSkip }, () => {
  const nb = backend();
  const r = rng(41);
  const make = SPECS[0].make;
  try {
    for (const isa of ['best' as const, ...isas(nb)]) {
      nb.useInstructionSet(isa);
      const data = [136, 40, 41].map((rows) => make(r, rows, 300));
      for (const fine of [[true, true, true], [true, false, true]]) {
        const ws = data.map((w, i) => nb.prepare(w, { fineActivations: fine[i] }));
        const biases = [null, randn(r, 40), null];
        for (const n of [1, 2, 5, 8]) {
          const x = randn(r, n * 300);
          const got = nb.matmulMany(x, n, ws, biases);
          ws.forEach((w, i) => {
            const bad = sameBits(got[i], nb.matmul(x, n, w, biases[i]));
            assert.equal(bad, -1, `${isa} fine ${fine} n=${n}: weight ${i}, y[${bad}] differs from its own matmul`);
          });
        }
      }
    }
  } finally {
    nb.useInstructionSet('best');
  }
});

test('the model loader asks for fine activations on the text decoder\'s q8 matrices only (not the head, not the vision tower)', { skip: nativeSkip }, () => {
  const nb = backend();
  for (const mode of ['q8', 'q4'] as const) {
    const model = loadModelFromDir(TINY, { backend: nb, convert: makeQuantConvert({ mode, head: 'q8' }) });
    const { text, vision } = model.weights;
    for (const [j, l] of text.layers.entries())
      for (const name of ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const) {
        assert.equal(l[name].format, mode, `${mode}: layer ${j} ${name} is ${mode}`);
        assert.equal(nb.hasFineActivations(l[name]), mode === 'q8', `${mode}: layer ${j} ${name}`);
      }
    assert.equal(text.lmHead.format, 'q8', `${mode}: the head is q8 (head: 'q8')`);
    assert.equal(nb.hasFineActivations(text.lmHead), false, `${mode}: the head keeps int8 activations`);
    assert.equal(vision.blocks[0].fc1.w.format, 'q8');
    assert.equal(nb.hasFineActivations(vision.blocks[0].fc1.w), false, `${mode}: the vision tower keeps int8 activations`);
  }
});
