import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QvlError } from '../src/errors.ts';
import { f32ToBf16, f32ToF16 } from '../src/kernels/dtypes.ts';
import { nativeQuantizeQ4, nativeQuantizeQ8, type NativeQuantized } from '../src/kernels/native/quantize.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { nonFinite, quantizeQ4, quantizeQ8, type Q4Options } from '../src/weights/convert.ts';
import { quantizeForPlan } from '../src/weights/quant-plan.ts';
import { refitQ8 } from '../src/weights/quant/q8-refit.ts';
import { forEachSetting, randn, rng, skipReason } from './native-util.ts';

// The addon's quantizers must give the TypeScript's bytes exactly (native/quantize.inc).
const nativeSkip = process.env.CI === 'true' ? false : skipReason;

type Source = 'f32' | 'bf16' | 'f16';
type Floats = Extract<WeightData, { format: Source }>;

function weight(format: Source, rows: number, cols: number, values: Float32Array): Floats {
  if (format === 'f32') return { format, rows, cols, data: values };
  return { format, rows, cols, data: Uint16Array.from(values, format === 'bf16' ? f32ToBf16 : f32ToF16) };
}

function bytes(a: ArrayBufferView | undefined): Uint8Array | undefined {
  return a && new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The first field whose bytes differ (scales compared as bits: −0 and +0 differ), or '' when none. */
function difference(got: WeightData, want: WeightData): string {
  if (got.format !== want.format || got.rows !== want.rows || got.cols !== want.cols) return `shape ${got.format} ${got.rows}x${got.cols}`;
  const fields = got.format === 'q4' && want.format === 'q4'
    ? { qs: [got.qs, want.qs], scales: [got.scales, want.scales], zeros: [got.zeros, want.zeros] }
    : got.format === 'q8' && want.format === 'q8'
      ? { qs: [got.qs, want.qs], scales: [got.scales, want.scales] }
      : {};
  if (got.format === 'q4' && want.format === 'q4' && (got.groupSize !== want.groupSize || got.nGroups !== want.nGroups)) return 'groups';
  for (const [name, [g, w]] of Object.entries(fields)) {
    const a = bytes(g);
    const b = bytes(w);
    if (!a || !b) {
      if (a !== b) return `${name} present on one side only`;
      continue;
    }
    if (a.length !== b.length) return `${name} length ${a.length} vs ${b.length}`;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `${name} byte ${i}: ${a[i]} vs ${b[i]}`;
  }
  return '';
}

function unwrap<W>(r: NativeQuantized<W> | undefined, what: string): W {
  assert.ok(r, `${what}: the native quantizer did not run`);
  assert.ok(!('nonFinite' in r), `${what}: unexpected non-finite weight ${JSON.stringify((r as { nonFinite: unknown }).nonFinite)}`);
  return r.weight;
}

/**
 * Values that exercise every branch: Gaussian weights; weights on the rounding grid with exact
 * ties (a block whose max is 127 has scale 1, and one whose least-squares scale is also 1);
 * all-zero and −0 groups; huge values whose sums overflow; subnormal ones.
 */
const GENERATORS: Record<string, (r: () => number, rows: number, cols: number, format: Source) => Float32Array> = {
  gaussian: (r, rows, cols) => randn(r, rows * cols, 0.05),
  ties: (r, rows, cols) => {
    // halves on a grid whose scale is exactly ±1, by row: q8 (each block of 32 holds ±127),
    // asymmetric q4 (−7.5 and 7.5 in each 32), symmetric q4 (±8 first in each 32)
    const v = new Float32Array(rows * cols);
    for (let i = 0; i < v.length; i++) {
      const row = Math.floor(i / cols);
      const k = (i % cols) % 32;
      const half = (Math.floor(r() * 31) - 15) / 2;
      const sign = r() < 0.5 ? -1 : 1;
      v[i] = row % 3 === 0 ? (k === 0 ? 127 * sign : half) : row % 3 === 1 ? (k === 1 ? 7.5 : k === 2 ? -7.5 : half) : k === 0 ? 8 * sign : half;
    }
    return v;
  },
  refitTies: (r, rows, cols) => {
    // [±127, ±2.5, ±1.25 ×6]: Σw·q = Σq² = 16144, so the refit's scale is 1 and 2.5 is a tie again
    const block = [127, 2.5, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25];
    const v = new Float32Array(rows * cols);
    for (let i = 0; i < v.length; i++) {
      const c = i % cols;
      const row = Math.floor(i / cols);
      const k = c % 32;
      v[i] = k < block.length ? ((row + (c >> 5)) % 2 ? -block[k] : block[k]) : 0;
    }
    return v;
  },
  mirror: (r, rows, cols) => {
    // each block of 32 holds 16 values and, mirrored, their negatives: q4's two clipped ranges,
    // [min, 0.9·max] and [0.9·min, max], then score alike in exact arithmetic, and the float32
    // sums decide (their lane order and fold: another fold picks otherwise in 3–16% of groups)
    const v = randn(r, rows * cols, 0.05);
    for (let i = 0; i < v.length; i++) {
      const k = (i % cols) % 32;
      if (k >= 16) v[i] = -v[i + 31 - 2 * k]; // the negative of column 31 − k of the same block
    }
    return v;
  },
  zeros: (r, rows, cols) => {
    const v = randn(r, rows * cols, 1);
    for (let i = 0; i < v.length; i++) {
      const g = Math.floor((i % cols) / 32);
      if (g % 3 === 0) v[i] = 0;
      else if (g % 3 === 1) v[i] = r() < 0.5 ? -0 : v[i];
    }
    return v;
  },
  extremes: (r, rows, cols, format) => {
    const v = new Float32Array(rows * cols);
    // the largest values of the format (in f32 and bf16 a group's sum overflows to Infinity,
    // which the TypeScript does not count as a non-finite weight), f32 and bf16 subnormals,
    // f16 subnormals
    const huge = format === 'f16' ? 65504 : 3.38e38;
    for (let i = 0; i < v.length; i++) {
      const g = Math.floor((i % cols) / 16) % 4;
      const s = r() < 0.5 ? -1 : 1;
      v[i] = s * (g === 0 ? huge * (1 - r() / 4) : g === 1 ? 1e-44 * Math.floor(r() * 8) : g === 2 ? 2 ** -130 * r() : 6e-8 * Math.floor(r() * 64));
    }
    return v;
  },
};

const SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 31],
  [3, 32],
  [2, 33],
  [4, 63],
  [3, 65],
  [5, 100],
  [2, 127],
  [3, 129],
  [2, 257],
  [1, 300],
  [1, 1100], // eight whole groups of 128 and more
  [40, 2000], // several pool tasks
];

const Q4_OPTIONS: Q4Options[] = [
  { groupSize: 32 },
  { groupSize: 32, symmetric: true },
  { groupSize: 64 },
  { groupSize: 64, symmetric: true },
  { groupSize: 128 },
  { groupSize: 128, symmetric: true },
  { groupSize: 7 },
  { groupSize: 33, symmetric: true },
  { groupSize: 5000 },
];

interface Case {
  label: string;
  w: Floats;
  q8: WeightData;
  q8refit: WeightData;
  q8refitHalf: WeightData;
  q4: WeightData[];
}

/** Every source format × shape × generator, with the TypeScript's output computed once. */
function cases(): Case[] {
  const out: Case[] = [];
  let seed = 1;
  for (const format of ['f32', 'bf16', 'f16'] as const) {
    for (const [rows, cols] of SHAPES) {
      for (const [gen, make] of Object.entries(GENERATORS)) {
        // the large shapes (several pool tasks, many eight-group runs) with the generators that need them
        if (rows * cols > 10_000 && gen !== 'gaussian' && gen !== 'ties' && gen !== 'mirror') continue;
        const w = weight(format, rows, cols, make(rng(seed++), rows, cols, format));
        out.push({
          label: `${format} ${rows}x${cols} ${gen}`,
          w,
          q8: quantizeQ8(w),
          q8refit: refitQ8(quantizeQ8(w), w),
          q8refitHalf: refitQ8(quantizeQ8(w), w, true),
          q4: Q4_OPTIONS.map((o) => quantizeQ4(w, o)),
        });
      }
    }
  }
  return out;
}

test('native q8 (without the refit, with it, with it in binary16) and q4 are bit-identical to the TypeScript quantizers', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const all = cases();
  forEachSetting((setting) => {
    for (const c of all) {
      const at = `${c.label} (${setting})`;
      assert.equal(difference(unwrap(nativeQuantizeQ8(c.w, { refit: false }), at), c.q8), '', `q8 ${at}`);
      assert.equal(difference(unwrap(nativeQuantizeQ8(c.w, { refit: true }), at), c.q8refit), '', `q8 refit ${at}`);
      assert.equal(difference(unwrap(nativeQuantizeQ8(c.w, { refit: true, half: true }), at), c.q8refitHalf), '', `q8 refit, binary16 scales ${at}`);
      Q4_OPTIONS.forEach((o, i) => {
        assert.equal(difference(unwrap(nativeQuantizeQ4(c.w, o), at), c.q4[i]), '', `q4 ${JSON.stringify(o)} ${at}`);
      });
    }
  });
});

test('the ties cases do reach the rounding ties they are built for', () => {
  // quantizeQ8 of [127, 2.5, …] has scale 1 and rounds 2.5 away to 3; the refit keeps scale 1
  const w = weight('f32', 1, 8, GENERATORS.refitTies(rng(1), 1, 8, 'f32'));
  const q = refitQ8(quantizeQ8(w), w);
  assert.deepEqual(Array.from(q.qs), [127, 3, 1, 1, 1, 1, 1, 1]);
  assert.equal(q.scales[0], 1);
  // q4 asymmetric over [−7.5, 7.5]: scale 1, zero 8 (7.5 rounded away), 0.5 → 9
  const g = quantizeQ4(weight('f32', 1, 3, Float32Array.of(7.5, -7.5, 0.5)), { groupSize: 32 });
  assert.equal(g.scales[0], 1);
  assert.equal(g.zeros![0], 8);
  assert.deepEqual(Array.from(g.qs), [15 | (0 << 4), 9]);
  // q4 symmetric led by 8: scale −1, so 2.5 → −2.5 → −3 (away from zero) → 5
  const s = quantizeQ4(weight('f32', 1, 2, Float32Array.of(8, 2.5)), { groupSize: 32, symmetric: true });
  assert.equal(s.scales[0], -1);
  assert.deepEqual(Array.from(s.qs), [0 | (5 << 4)]);
});

test('the load-time plan gives the TypeScript output through the native quantizers', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const r = rng(9);
  const w = weight('bf16', 48, 160, randn(r, 48 * 160, 0.03));
  const text = 'model.language_model.layers.0.mlp.down_proj';
  const vision = 'model.visual.blocks.0.mlp.linear_fc1';
  assert.equal(difference(quantizeForPlan(w, text, { mode: 'q4' }), quantizeQ4(w)), '');
  const sym = { groupSize: 128, symmetric: true };
  assert.equal(difference(quantizeForPlan(w, text, { mode: 'q4', ...sym }), quantizeQ4(w, sym)), '');
  // q8 blocks get binary16 scales in both modes (q4 mode's vision tower and head)
  assert.equal(difference(quantizeForPlan(w, vision, { mode: 'q4' }), refitQ8(quantizeQ8(w), w, true)), '');
  assert.equal(difference(quantizeForPlan(w, 'lm_head', { mode: 'q4' }), refitQ8(quantizeQ8(w), w, true)), '');
  assert.equal(difference(quantizeForPlan(w, text, { mode: 'q8' }), refitQ8(quantizeQ8(w), w, true)), '');
  assert.equal(difference(quantizeForPlan(w, vision, { mode: 'q8' }), refitQ8(quantizeQ8(w), w, true)), '');
});

test('the native quantizers leave what they do not handle to the TypeScript', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const q8 = quantizeQ8(weight('f32', 2, 40, randn(rng(2), 80)));
  assert.equal(nativeQuantizeQ8(q8, { refit: true }), undefined);
  assert.equal(nativeQuantizeQ4(q8), undefined);
  const w = weight('bf16', 2, 40, randn(rng(3), 80));
  // a group size the TypeScript refuses is refused there, with its own error
  assert.equal(nativeQuantizeQ4(w, { groupSize: 0 }), undefined);
  assert.throws(() => quantizeQ4(w, { groupSize: 0 }), (e: unknown) => e instanceof QvlError && e.code === 'OPTION_INVALID');
});

/** What the TypeScript throws for `run`, or undefined. */
function tsError(run: () => unknown): QvlError | undefined {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof QvlError, String(e));
    return e;
  }
  return undefined;
}

function nativeError<W>(r: NativeQuantized<W> | undefined): QvlError | undefined {
  assert.ok(r, 'the native quantizer did not run');
  return 'nonFinite' in r ? nonFinite(r.nonFinite.row, r.nonFinite.col, r.nonFinite.value) : undefined;
}

test('NaN and ±Infinity weights: the native quantizers name the same weight as the TypeScript', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const rows = 60;
  const cols = 2050; // many rows per pool task, a partial last block
  // [row, col, value] planted in each case; the first in row-major order is the one reported
  const plants: Array<Array<[number, number, number]>> = [
    [[0, 0, NaN]],
    [[59, 2049, Infinity]],
    [[30, 31, -Infinity], [30, 32, NaN]],
    [[45, 7, NaN], [12, 2000, -Infinity], [12, 1999, Infinity], [50, 3, Infinity]],
    [[7, 100, NaN], [7, 101, 3.3e38]],
  ];
  const base = randn(rng(5), rows * cols, 0.1);
  for (let p = 0; p < plants.length; p++) {
    for (const format of ['f32', 'bf16', 'f16'] as const) {
      const values = base.slice();
      for (const [r, c, v] of plants[p]) values[r * cols + c] = v;
      const w = weight(format, rows, cols, values);
      const want8 = tsError(() => quantizeQ8(w));
      const want4 = Q4_OPTIONS.map((o) => tsError(() => quantizeQ4(w, o)));
      assert.ok(want8, 'the TypeScript refuses a non-finite weight');
      forEachSetting((setting) => {
        const at = `case ${p} ${format} (${setting})`;
        for (const got of [nativeError(nativeQuantizeQ8(w, { refit: true })), nativeError(nativeQuantizeQ8(w, { refit: false }))]) {
          assert.ok(got, at);
          assert.equal(got.code, 'QUANT_INVALID');
          assert.equal(got.message, want8.message, at);
          assert.deepEqual(got.detail, want8.detail, at);
        }
        Q4_OPTIONS.forEach((o, i) => {
          const got = nativeError(nativeQuantizeQ4(w, o));
          assert.equal(got?.message, want4[i]?.message, `${JSON.stringify(o)} ${at}`);
          assert.deepEqual(got?.detail, want4[i]?.detail, `${JSON.stringify(o)} ${at}`);
        });
      });
    }
  }
});

test('the load-time plan names the matrix and the weight of a non-finite value', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const values = randn(rng(6), 4 * 64, 0.1);
  values[2 * 64 + 5] = -Infinity;
  const w = weight('bf16', 4, 64, values);
  const name = 'model.language_model.layers.3.self_attn.q_proj';
  assert.throws(
    () => quantizeForPlan(w, name, { mode: 'q4' }),
    (e: unknown) =>
      e instanceof QvlError &&
      e.code === 'QUANT_INVALID' &&
      e.message === `${name}: cannot quantize: weight [2, 5] is -Infinity` &&
      (e.detail as Record<string, unknown>).module === name &&
      (e.detail as Record<string, unknown>).row === 2,
  );
});
