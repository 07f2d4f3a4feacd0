import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { dequantize } from '../src/kernels/ts/dequant.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { f16ToF32, f32ToF16 } from '../src/kernels/dtypes.ts';
import { rng } from './helpers/rng.ts';
import { halfExactScale, quantizeQ4, quantizeQ8 } from '../src/weights/convert.ts';
import { makeQuantConvert, quantTarget, quantizeForPlan } from '../src/weights/quant-plan.ts';
import { SafetensorsFile } from '../src/weights/safetensors.ts';
import { readF32, readMatrix } from '../src/weights/tensor-reader.ts';
import { QUANT, TINY } from './quant-util.ts';

const ref = SafetensorsFile.open(path.join(QUANT, 'rtn', 'reference.safetensors'));
const tiny = SafetensorsFile.open(path.join(TINY, 'model.safetensors'));

function input(p: string): WeightData {
  if (p === 'odd') {
    const [rows, cols] = ref.info('odd.input').shape;
    return { format: 'f32', rows, cols, data: readF32(ref, 'odd.input') };
  }
  const [rows, cols] = tiny.info(`${p}.weight`).shape;
  return readMatrix(tiny, `${p}.weight`, rows, cols);
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => {
  assert.equal(a.length, b.length, `${what}: length`);
  let bad = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) bad++;
  assert.equal(bad, 0, `${what}: ${bad} of ${a.length} differ`);
};

const PICKS = [
  'model.language_model.layers.0.self_attn.q_proj',
  'model.language_model.layers.1.mlp.down_proj',
  'model.visual.blocks.0.attn.qkv',
  'model.visual.blocks.1.mlp.linear_fc2',
  'model.visual.merger.linear_fc1',
  'odd',
];

test('q8 and q4 quantizers reproduce the independent Python reference bit for bit', () => {
  for (const p of PICKS) {
    const w = input(p);
    const q8 = quantizeQ8(w);
    same(q8.qs, new Int8Array(ref.bytes(`${p}.q8.qs`).slice().buffer), `${p} q8 qs`);
    same(q8.scales, readF32(ref, `${p}.q8.scales`), `${p} q8 scales`);
    for (const [key, o] of [
      ['q4a32', { groupSize: 32 }],
      ['q4a128', { groupSize: 128 }],
      ['q4s32', { groupSize: 32, symmetric: true }],
    ] as const) {
      const q = quantizeQ4(w, o);
      same(q.qs, ref.bytes(`${p}.${key}.qs`), `${p} ${key} qs`);
      same(q.scales, readF32(ref, `${p}.${key}.scales`), `${p} ${key} scales`);
      if ('symmetric' in o) assert.equal(q.zeros, undefined);
      else same(q.zeros!, ref.bytes(`${p}.${key}.zeros`), `${p} ${key} zeros`);
    }
  }
});

test('round-trip error bounds: q8 within half a step; q4 within half a step inside its grid, clamped to it outside, and no group worse than plain min/max', () => {
  const w = input('model.language_model.layers.2.mlp.gate_proj');
  const x = dequantize(w);
  const q8 = quantizeQ8(w);
  const y8 = dequantize(q8);
  const nb = Math.ceil(w.cols / 32);
  for (let r = 0; r < w.rows; r++) {
    for (let c = 0; c < w.cols; c++) {
      const d = q8.scales[r * nb + Math.floor(c / 32)];
      assert.ok(Math.abs(x[r * w.cols + c] - y8[r * w.cols + c]) <= d / 2 + 1e-7, `q8 [${r}, ${c}]`);
    }
  }
  let clippedGroups = 0;
  for (const symmetric of [false, true]) {
    const q4 = quantizeQ4(w, { groupSize: 32, symmetric });
    const y4 = dequantize(q4);
    let err = 0;
    let norm = 0;
    for (let r = 0; r < w.rows; r++) {
      for (let g = 0; g < q4.nGroups; g++) {
        const d = q4.scales[r * q4.nGroups + g];
        const z = q4.zeros ? q4.zeros[r * q4.nGroups + g] : 8;
        // the group's plain min/max range (0 included), quantized as the unclipped candidate
        let mn = 0;
        let mx = 0;
        for (let c = g * 32; c < Math.min(w.cols, g * 32 + 32); c++) {
          mn = Math.min(mn, x[r * w.cols + c]);
          mx = Math.max(mx, x[r * w.cols + c]);
        }
        const d0 = halfExactScale(Math.fround((mx - mn) / 15));
        const z0 = Math.min(15, Math.max(0, Math.round(-mn / d0)));
        let groupErr = 0;
        let plainErr = 0;
        for (let c = g * 32; c < Math.min(w.cols, g * 32 + 32); c++) {
          const v = x[r * w.cols + c];
          const e = Math.abs(v - y4[r * w.cols + c]);
          const lo = Math.min(-z * d, (15 - z) * d);
          const hi = Math.max(-z * d, (15 - z) * d);
          // within the grid (and half a step past its ends) the nearest point; past it, the end
          if (v >= lo - Math.abs(d) / 2 && v <= hi + Math.abs(d) / 2) assert.ok(e <= Math.abs(d) / 2 + 1e-7, `q4 [${r}, ${c}] error ${e} > ${Math.abs(d) / 2}`);
          else assert.ok(Math.abs(y4[r * w.cols + c] - (v < lo ? lo : hi)) <= 1e-7, `q4 [${r}, ${c}] past the grid goes to its end`);
          groupErr += e * e;
          plainErr += (v - (Math.min(15, Math.max(0, Math.round(v / d0) + z0)) - z0) * d0) ** 2;
          err += e * e;
          norm += v ** 2;
        }
        if (!symmetric) {
          assert.ok(groupErr <= plainErr * (1 + 1e-5) + 1e-12, `q4 [${r}, group ${g}]: error ${groupErr} over plain min/max's ${plainErr}`);
          if (d !== d0) clippedGroups++;
        }
      }
    }
    assert.ok(Math.sqrt(err / norm) < 0.1, `q4 ${symmetric ? 'symmetric' : 'asymmetric'} relative RMS error ${Math.sqrt(err / norm)}`);
  }
  assert.ok(clippedGroups > 0, 'some groups take a clipped range');
  // q8 relative RMS error on Gaussian-like weights is about half a percent
  let e8 = 0;
  let n8 = 0;
  for (let i = 0; i < x.length; i++) {
    e8 += (x[i] - y8[i]) ** 2;
    n8 += x[i] ** 2;
  }
  assert.ok(Math.sqrt(e8 / n8) < 0.01, `q8 relative RMS error ${Math.sqrt(e8 / n8)}`);
});

test('zero rows, partial groups and odd widths', () => {
  const w: WeightData = { format: 'f32', rows: 2, cols: 37, data: new Float32Array(74) };
  w.data.fill(0.5, 37); // second row constant
  for (const q of [quantizeQ8(w), quantizeQ4(w, { groupSize: 32 }), quantizeQ4(w, { groupSize: 32, symmetric: true })]) {
    const y = dequantize(q);
    // q4 scales are rounded up to binary16: up to 15 steps of a scale at most 2^-10 too large
    const tol = q.format === 'q4' ? 0.5 * 2 ** -10 : 1e-6;
    for (let c = 0; c < 37; c++) assert.equal(y[c], 0, `${q.format} zero row`);
    for (let c = 37; c < 74; c++) assert.ok(Math.abs(y[c] - 0.5) <= tol, `${q.format} constant row [${c - 37}] = ${y[c]}`);
  }
  const q4 = quantizeQ4(w, { groupSize: 32 });
  assert.equal(q4.nGroups, 2);
  assert.equal(q4.qs.length, 2 * 19);
  // ties round away from zero on both sides (scale exactly 1 here)
  const ties = quantizeQ8({ format: 'f32', rows: 1, cols: 6, data: new Float32Array([127, -2.5, 2.5, -0.5, 0.5, -126.5]) });
  assert.deepEqual(Array.from(ties.qs), [127, -3, 3, -1, 1, -127]);
  assert.equal(ties.scales[0], 1);
});

test('q4 scales: binary16 values no smaller in magnitude, within one binary16 step; kept outside its normal range', () => {
  const r = rng(41);
  for (let i = 0; i < 20000; i++) {
    const d = Math.fround((r() - 0.5) * 2 ** Math.floor(r() * 40 - 20));
    const h = halfExactScale(d);
    const a = Math.abs(d);
    if (a < 2 ** -14 || a > 65504) {
      assert.ok(Object.is(h, d), `${d} kept`);
      continue;
    }
    assert.equal(f16ToF32(f32ToF16(h)), h, `${d} → ${h} is a binary16 value`);
    assert.ok(Math.abs(h) >= a && Math.sign(h) === Math.sign(d), `${d} → ${h} rounded up in magnitude`);
    assert.ok(Math.abs(h) - a < a * 2 ** -10, `${d} → ${h} within one step`);
    assert.equal(halfExactScale(h), h, 'idempotent');
  }
  assert.equal(halfExactScale(65504), 65504);
  assert.equal(halfExactScale(2 ** -14), 2 ** -14);
});

test('non-finite weights and bad group sizes are refused', () => {
  const w: WeightData = { format: 'f32', rows: 1, cols: 4, data: new Float32Array([1, NaN, 2, 3]) };
  assert.throws(() => quantizeQ8(w), (e) => isQvlError(e, 'QUANT_INVALID') && e.message.includes('[0, 1] is NaN'));
  assert.throws(() => quantizeQ4(w), (e) => isQvlError(e, 'QUANT_INVALID'));
  const inf: WeightData = { format: 'f32', rows: 1, cols: 2, data: new Float32Array([1, -Infinity]) };
  assert.throws(
    () => quantizeForPlan(inf, 'model.language_model.layers.0.mlp.up_proj', { mode: 'q8' }),
    (e) => isQvlError(e, 'QUANT_INVALID') && e.message.startsWith('model.language_model.layers.0.mlp.up_proj: ') && e.message.includes('-Infinity'),
  );
  assert.throws(() => quantizeQ4(w, { groupSize: 0 }), (e) => isQvlError(e, 'OPTION_INVALID'));
  assert.throws(() => makeQuantConvert({ mode: 'q3' as 'q4' }), (e) => isQvlError(e, 'OPTION_INVALID') && e.message.includes('"q3"'));
  assert.throws(() => makeQuantConvert({ mode: 'q4', groupSize: 64 }), (e) => isQvlError(e, 'OPTION_INVALID') && e.message.includes('32 or 128'));
});

test('the plan: head: q4 puts the embedding / LM head (only) in 4 bits', () => {
  for (const n of ['model.language_model.embed_tokens', 'lm_head']) {
    assert.equal(quantTarget(n, 'q4', 'q4'), 'q4', n);
    assert.equal(quantTarget(n, 'q4'), 'q8', n);
  }
  assert.equal(quantTarget('model.visual.blocks.3.attn.qkv', 'q4', 'q4'), 'q8');
  assert.equal(quantTarget('model.language_model.layers.2.mlp.down_proj', 'q8', 'q4'), 'q8');
  const embed = input('model.language_model.embed_tokens' as string);
  const w = makeQuantConvert({ mode: 'q4', head: 'q4' })(embed, 'model.language_model.embed_tokens');
  assert.equal(w.format, 'q4');
  assert.throws(() => makeQuantConvert({ mode: 'q4', head: 'q2' as 'q4' }), (e) => isQvlError(e, 'OPTION_INVALID') && e.message.includes('"q2"'));
});

test('the plan: 4-bit text decoder, 8-bit embeddings/head/vision, everything else untouched', () => {
  const text = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
  for (const m of text) {
    assert.equal(quantTarget(`model.language_model.layers.11.${m}`, 'q4'), 'q4');
    assert.equal(quantTarget(`model.language_model.layers.11.${m}`, 'q8'), 'q8');
  }
  for (const n of ['model.language_model.embed_tokens', 'lm_head']) {
    assert.equal(quantTarget(n, 'q4'), 'q8', n);
    assert.equal(quantTarget(n, 'q8'), undefined, `${n}: float in q8 mode`);
    assert.equal(quantTarget(n, 'q8', 'q8'), 'q8', n);
  }
  const eight = [
    'model.visual.blocks.3.attn.qkv',
    'model.visual.blocks.3.attn.proj',
    'model.visual.blocks.3.mlp.linear_fc1',
    'model.visual.blocks.3.mlp.linear_fc2',
    'model.visual.merger.linear_fc1',
    'model.visual.deepstack_merger_list.2.linear_fc2',
  ];
  for (const n of eight) for (const mode of ['q4', 'q8'] as const) assert.equal(quantTarget(n, mode), 'q8', `${n} ${mode}`);
  for (const n of ['model.visual.patch_embed.proj', 'model.visual.pos_embed', 'model.language_model.layers.0.self_attn.q_norm', 'model.language_model.norm']) {
    assert.equal(quantTarget(n, 'q4'), undefined, n);
  }
  const convert = makeQuantConvert({ mode: 'q4' });
  const up = input('model.language_model.layers.0.mlp.up_proj' as string);
  assert.equal(convert(up, 'model.language_model.layers.0.mlp.up_proj').format, 'q4');
  assert.equal(convert(up, 'model.visual.blocks.0.mlp.linear_fc1').format, 'q8');
  assert.equal(convert(up, 'model.visual.patch_embed.proj'), up);
  // an already quantized matrix (an FP8 or AWQ checkpoint) is kept as it is
  const q8 = quantizeQ8(up);
  assert.equal(convert(q8, 'model.language_model.layers.0.mlp.up_proj'), q8);
});
