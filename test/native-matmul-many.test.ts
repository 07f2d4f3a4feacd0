// matmulMany (native/int8_many.inc): several weights over one x, which the model uses for a
// layer's q, k and v and its gate and up. Each result must be what matmul gives that weight, bit
// for bit, in every kernel set: the repacked q4 / q8 lists run as one job whose tasks cross from
// one matrix's rows into the next one's, and every other list falls back to a matmul at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import type { PreparedWeight } from '../src/kernels/backend.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { nearestHalfScale } from '../src/weights/convert.ts';
import { isQvlError, type QvlErrorCode } from '../src/errors.ts';
import { activationLevels, backend, firstViolation, isas, matmulBounds, q4, randn, rng, skipReason, WEIGHT_SPECS } from './native-util.ts';

type Make = (r: () => number, rows: number, cols: number) => WeightData;

const spec = (label: string): Make => WEIGHT_SPECS.find((s) => s.label === label)!.make;
const half = (make: Make): Make => (r, rows, cols) => {
  const w = make(r, rows, cols);
  if (w.format !== 'q8' && w.format !== 'q4') throw new Error(`binary16 scales of a ${w.format} weight`);
  return { ...w, scales: Float32Array.from(w.scales, (v) => nearestHalfScale(v)) };
};

// lists the model makes (every weight of one kind) and lists that must fall back
const LISTS: Array<[string, Make[]]> = [
  ['q4 g32 zeros', [0, 1, 2].map(() => (r, rows, cols) => q4(r, rows, cols, 32, true, false, 16))],
  ['q4 g32 zeros binary16 scales', [0, 1, 2].map(() => half((r, rows, cols) => q4(r, rows, cols, 32, true, false, 16)))],
  ['q4 g128 symmetric', [0, 1].map(() => (r, rows, cols) => q4(r, rows, cols, 128, false, false))],
  ['q8', [0, 1, 2].map(() => spec('q8'))],
  ['q8 binary16 scales', [0, 1].map(() => half(spec('q8')))],
  ['bf16', [0, 1, 2].map(() => spec('bf16'))],
  // one job needs one kind: these go a matmul at a time
  ['q4 and q8', [(r, rows, cols) => q4(r, rows, cols, 32, true, false, 16), spec('q8')]],
  ['q4 groups 32 and 64', [(r, rows, cols) => q4(r, rows, cols, 32, true, false, 16), (r, rows, cols) => q4(r, rows, cols, 64, true, false, 16)]],
  ['q4 and bf16', [(r, rows, cols) => q4(r, rows, cols, 32, false, false), spec('bf16')]],
  ['q4 act-order', [0, 1].map(() => (r, rows, cols) => q4(r, rows, cols, 32, true, true))],
];

// heights: a last partial row group, an odd count of row groups (the pair kernels), several tasks
// per matrix so that a task runs from one matrix into the next; 4 weights at most
const SHAPES: Array<[number[], number]> = [
  [[13, 40, 7], 96],
  [[136, 40, 41, 8], 64],
  [[520, 264, 264], 300],
];

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

test('matmulMany gives each weight what matmul gives it, bit for bit, in every kernel set and at every token count', { skip: skipReason }, () => {
  const nb = backend();
  const addon = loadAddon();
  const pairsFromCpu = addon.info().int8Gemv512;
  const sets = isas(nb);
  try {
    for (const isa of ['best' as const, ...sets]) {
      nb.useInstructionSet(isa);
      for (const pairs of isa === 'avx512vnni' ? [true, false] : [null]) {
        if (pairs !== null) addon.setInt8Gemv512(pairs);
        for (const [label, makes] of LISTS)
          for (const [heights, cols] of SHAPES) {
            const r = rng(label.length * 31 + heights.length);
            const ws = heights.slice(0, makes.length).map((rows, i) => nb.prepare(makes[i % makes.length](r, rows, cols)));
            const biases = ws.map((w, i) => (i === 1 ? randn(r, w.rows) : null));
            for (const n of [1, 2, 3, 5, 8, 9, 17]) {
              const x = randn(r, n * cols);
              for (let c = 0; c < cols; c++) x[c] *= 50; // tokens of different magnitudes
              const got = nb.matmulMany(x, n, ws, biases);
              assert.equal(got.length, ws.length);
              ws.forEach((w, i) => {
                const want = bits(nb.matmul(x, n, w, biases[i]));
                const bad = bits(got[i]).findIndex((v, j) => v !== want[j]);
                assert.equal(bad, -1, `${isa}${pairs === null ? '' : pairs ? ' pairs' : ' no pairs'} ${label} [${heights}×${cols}] n=${n}: weight ${i}, y[${bad}] differs from its own matmul`);
              });
            }
          }
      }
    }
  } finally {
    addon.setInt8Gemv512(null);
    nb.useInstructionSet('best');
  }
  assert.equal(addon.info().int8Gemv512, pairsFromCpu);
});

test('matmulMany agrees with the TypeScript oracle within the int8 bound, into the given outs', { skip: skipReason }, () => {
  const nb = backend();
  const ts = new TsBackend();
  const r = rng(3);
  const cols = 200;
  const data = [4096 / 64, 1024 / 64, 1024 / 64].map((rows) => q4(r, rows, cols, 32, true, false, 16));
  const ws = data.map((w) => nb.prepare(w));
  const isa = nb.useInstructionSet('best');
  for (const n of [1, 4, 8, 12]) {
    const x = randn(r, n * cols);
    const outs = ws.map((w) => new Float32Array(n * w.rows).fill(Number.NaN));
    const got = nb.matmulMany(x, n, ws, undefined, outs);
    got.forEach((y, i) => {
      assert.equal(y, outs[i], 'written into the given out');
      const want = ts.matmul(x, n, ts.prepare(data[i]));
      const bound = matmulBounds(x, n, data[i], activationLevels(isa, n, data[i]));
      const bad = firstViolation(y, want, (j) => bound[j]);
      assert.equal(bad, -1, `n=${n} weight ${i}: y[${bad}] = ${y[bad]}, oracle ${want[bad]} ± ${bound[bad]}`);
    });
  }
});

test('matmulMany refuses, naming the problem, on both backends', { skip: skipReason }, () => {
  const r = rng(9);
  for (const be of [new TsBackend(), backend()]) {
    const w = (rows: number, cols: number): PreparedWeight => be.prepare(q4(r, rows, cols, 32, true, false, 16));
    const a = w(8, 64), b = w(16, 64), c = w(8, 96);
    const x = randn(r, 2 * 64);
    const refuses = (f: () => unknown, code: QvlErrorCode, re: RegExp, what: string) =>
      assert.throws(f, (e) => isQvlError(e, code) && re.test((e as Error).message), `${be.name}: ${what}`);
    refuses(() => be.matmulMany(x, 2, []), 'OPTION_INVALID', /ws must be an array of 1\.\.4 weights/, 'no weights');
    refuses(() => be.matmulMany(x, 2, [a, b, a, b, a]), 'OPTION_INVALID', /1\.\.4/, 'five weights');
    refuses(() => be.matmulMany(x, 2, [a, c]), 'TENSOR_SHAPE', /x has 128 values, expected 2×96 \(the columns of ws\[1\]\)/, 'a weight of other columns');
    refuses(() => be.matmulMany(x, 2, [a, b], [null]), 'TENSOR_SHAPE', /biases has 1 entries, expected 2/, 'biases short');
    refuses(() => be.matmulMany(x, 2, [a, b], [null, new Float32Array(3)]), 'TENSOR_SHAPE', /bias\[1\] has 3 values, expected 16/, 'a bias of the wrong length');
    const shared = new Float32Array(2 * 8 + 2 * 16);
    refuses(() => be.matmulMany(x, 2, [a, b], undefined, [shared.subarray(0, 16), shared.subarray(8, 40)]), 'TENSOR_SHAPE', /outs\[1\] overlaps outs\[0\]/, 'overlapping outs');
    refuses(() => be.matmulMany(x, 2, [a, b], undefined, [new Float32Array(16), new Float32Array(31)]), 'TENSOR_SHAPE', /out\[1\] has 31 values, expected 2×16/, 'an out of the wrong length');
    refuses(() => be.matmulMany(x, 2, [a, b], undefined, [x.subarray(0, 16), new Float32Array(32)]), 'TENSOR_SHAPE', /out\[0\] overlaps x/, 'an out over x');
  }
});
