// q4 quantized straight into the eight-row stream (Backend.prepareQ4, native/quantize.inc's
// q4x8_row_group): the weight must read exactly as `prepare(quantizeQ4(w))` reads, on every kernel
// set and thread count, or the quantizer must decline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f32ToBf16, f32ToF16 } from '../src/kernels/dtypes.ts';
import type { PreparedWeight } from '../src/kernels/backend.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { NativeBackend } from '../src/kernels/native/index.ts';
import { nativeQuantizeQ4 } from '../src/kernels/native/quantize.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { quantizeQ4 } from '../src/weights/convert.ts';
import { makeQuantConvert, prepareForPlan } from '../src/weights/quant-plan.ts';
import { isQvlError } from '../src/errors.ts';
import { backend, forEachSetting, randn, rng, skipReason } from './native-util.ts';

const nativeSkip = process.env.CI === 'true' ? false : skipReason;

type Source = 'f32' | 'bf16' | 'f16';

function weight(format: Source, rows: number, cols: number, values: Float32Array): WeightData {
  if (format === 'f32') return { format, rows, cols, data: values };
  return { format, rows, cols, data: Uint16Array.from(values, format === 'bf16' ? f32ToBf16 : f32ToF16) };
}

// rows around the 8-row groups, columns off the 32-column blocks and groups, one shape of several pool tasks
const SHAPES: Array<[number, number]> = [
  [1, 1],
  [3, 31],
  [8, 32],
  [9, 33],
  [7, 65],
  [17, 129],
  [5, 300],
  [24, 2000],
];
const OPTIONS = [
  { groupSize: 32, symmetric: false },
  { groupSize: 32, symmetric: true },
  { groupSize: 64, symmetric: false },
  { groupSize: 128, symmetric: false },
  { groupSize: 128, symmetric: true },
];

const GENERATORS: Record<string, (r: () => number, n: number, cols: number) => Float32Array> = {
  gaussian: (r, n) => randn(r, n, 0.05),
  // whole groups of zeros and of −0 (scale 0), others of large and of tiny-but-binary16 ranges
  mixed: (r, n, cols) => {
    const v = randn(r, n, 1);
    for (let i = 0; i < n; i++) {
      const g = Math.floor((i % cols) / 32) % 4;
      if (g === 0) v[i] = 0;
      else if (g === 1) v[i] = -0;
      else if (g === 2) v[i] *= 3000;
      else v[i] *= 0.01;
    }
    return v;
  },
};

/** Every row as the backend reads it, and matmuls of 1, 3, 8 and 20 tokens: bit for bit the same or the first difference. */
function difference(a: PreparedWeight, b: PreparedWeight, cols: number, r: () => number): string {
  const nb = backend();
  const rows = Array.from({ length: a.rows }, (_, i) => i);
  const ga = nb.gatherRows(a, rows);
  const gb = nb.gatherRows(b, rows);
  for (let i = 0; i < ga.length; i++) if (!Object.is(ga[i], gb[i])) return `row ${Math.floor(i / cols)} col ${i % cols}: ${ga[i]} vs ${gb[i]}`;
  for (const n of [1, 3, 8, 20]) {
    const x = randn(r, n * cols, 1);
    const ya = nb.matmul(x, n, a);
    const yb = nb.matmul(x, n, b);
    for (let i = 0; i < ya.length; i++) if (!Object.is(ya[i], yb[i])) return `matmul n=${n} at ${i}: ${ya[i]} vs ${yb[i]}`;
  }
  return '';
}

test('q4 quantized into the eight-row stream reads as prepare(quantizeQ4(w)) does, on every kernel set', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const nb = backend();
  let seed = 1;
  let direct = 0;
  const layouts = new Set<string>();
  forEachSetting((setting) => {
    for (const format of ['f32', 'bf16', 'f16'] as const) {
      for (const [rows, cols] of SHAPES) {
        for (const [gen, make] of Object.entries(GENERATORS)) {
          const r = rng(seed++);
          const w = weight(format, rows, cols, make(r, rows * cols, cols));
          for (const o of OPTIONS) {
            const at = `${format} ${rows}x${cols} ${gen} g${o.groupSize}${o.symmetric ? ' symmetric' : ''} (${setting})`;
            const twoStep = nb.prepare(quantizeQ4(w, o), { consume: true });
            const got = nb.prepareQ4(w, o);
            assert.ok(got && 'weight' in got, `${at}: quantized straight into the stream`);
            direct++;
            assert.equal(nb.layoutOf(got.weight), nb.layoutOf(twoStep), at);
            layouts.add(nb.layoutOf(got.weight));
            assert.equal(got.weight.bytes, twoStep.bytes, `${at}: bytes`);
            assert.equal(got.weight.format, 'q4');
            assert.equal(difference(got.weight, twoStep, cols, r), '', at);
          }
        }
      }
    }
  });
  assert.ok(direct > 0);
  // binary16 scales (qvl's quantizer rounds them so), and float32 where a group's range is below
  // binary16's (a lone column past the last 32, or the tiny groups of the mixed cases)
  assert.deepEqual([...layouts].sort(), ['q4x8', 'q4x8-f16']);
});

test('one scale below binary16 gives a stream of float32 scales, as prepare gives; the first non-finite weight is named', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const nb = backend();
  const r = rng(7);
  // one group's range ~1e-5: its scale is below binary16's normal range
  const v = randn(r, 9 * 96, 1);
  for (let c = 32; c < 64; c++) v[4 * 96 + c] *= 1e-5;
  const tiny = weight('f32', 9, 96, v);
  const got = prepareForPlan(nb, tiny, 'model.language_model.layers.0.mlp.up_proj', { mode: 'q4' });
  assert.ok(got);
  const twoStep = nb.prepare(quantizeQ4(tiny, { groupSize: 32 }));
  assert.equal(nb.layoutOf(twoStep), 'q4x8', 'the two-step form: float32 scales');
  assert.equal(nb.layoutOf(got), 'q4x8');
  assert.equal(difference(got, twoStep, 96, r), '');

  for (const [row, col] of [
    [0, 0],
    [13, 69],
    [5, 33],
  ]) {
    const bad = randn(r, 14 * 70, 1);
    bad[row * 70 + col] = NaN;
    bad[13 * 70 + 69] = Infinity; // a later one: the first is named
    const w = weight('bf16', 14, 70, bad);
    const want = nativeQuantizeQ4(w, { groupSize: 32 });
    const got = nb.prepareQ4(w, { groupSize: 32, symmetric: false });
    assert.ok(got && 'nonFinite' in got && want && 'nonFinite' in want);
    assert.deepEqual(got.nonFinite, want.nonFinite);
    assert.deepEqual([got.nonFinite.row, got.nonFinite.col], [row, col]);
    assert.throws(
      () => prepareForPlan(nb, w, 'model.language_model.layers.3.self_attn.q_proj', { mode: 'q4' }),
      (e) => isQvlError(e, 'QUANT_INVALID') && e.message.startsWith('model.language_model.layers.3.self_attn.q_proj:') && e.message.includes(`[${row}, ${col}]`),
    );
  }
});

test('the quantization plan prepares q4 matrices in one step and leaves others to convert and prepare', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const nb = backend();
  const r = rng(11);
  const w = weight('bf16', 16, 64, randn(r, 16 * 64, 0.1));
  const convert = makeQuantConvert({ mode: 'q4' });
  const p = convert.prepare!(nb, w, 'model.language_model.layers.0.mlp.down_proj');
  assert.ok(p, 'a text matrix in q4 mode');
  assert.equal(difference(p, nb.prepare(convert(w, 'model.language_model.layers.0.mlp.down_proj'), { consume: true }), 64, r), '');
  // q8 targets (the head, the vision tower, q8 mode) and kept matrices take the two steps
  assert.equal(convert.prepare!(nb, w, 'lm_head'), undefined);
  assert.equal(convert.prepare!(nb, w, 'model.visual.blocks.0.attn.qkv'), undefined);
  assert.equal(makeQuantConvert({ mode: 'q8' }).prepare!(nb, w, 'model.language_model.layers.0.mlp.down_proj'), undefined);
  assert.ok(makeQuantConvert({ mode: 'q4', head: 'q4' }).prepare!(nb, w, 'lm_head'), 'a q4 head');
  // already quantized in the checkpoint: kept as it is
  assert.equal(convert.prepare!(nb, quantizeQ4(w, { groupSize: 32 }), 'model.language_model.layers.0.mlp.down_proj'), undefined);
  // repack: false keeps q4 row-major, which the stream cannot give
  assert.equal(new NativeBackend(loadAddon(), { repack: false }).prepareQ4(w, { groupSize: 32, symmetric: false }), undefined);
});
