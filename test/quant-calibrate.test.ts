/**
 * Calibrated q4 end to end on the demo model: `calibrateQ4` runs calibration items through the
 * model one decoder layer at a time, each layer again on its GPTQ matrices, `quantizeCheckpoint` writes its matrices, the folder
 * loads and answers; `qvl quantize --calibration` refuses what it cannot do before any work.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { calibrateQ4 } from '../src/api/calibrate.ts';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import { quantizeCheckpoint } from '../src/api/quantize-checkpoint.ts';
import { loadDataset, resolveMedia } from '../src/eval/dataset.ts';
import type { Q4Weight } from '../src/kernels/weight.ts';
import { InputHessian } from '../src/api/hessians.ts';
import { backendGemm, gptqQuantizeQ4, inverseHessianFactor, plainGemm } from '../src/weights/quant/gptq-quantize.ts';
import { GptqScratch } from '../src/weights/quant/gptq-scratch.ts';
import { canonicalView } from '../src/weights/names.ts';
import { SafetensorsCheckpoint } from '../src/weights/safetensors.ts';
import { readMatrix } from '../src/weights/tensor-reader.ts';
import { tempDir } from './helpers/safetensors-bytes.ts';

const ROOT = path.join(import.meta.dirname, '..');
const DEMO = path.join(ROOT, 'models', 'demo');
const CALIBRATION = path.join(ROOT, 'datasets', 'demo-calibration');
const QVL = path.join(ROOT, 'bin', 'qvl.mjs');

/** one item per task */
function samples() {
  const ds = loadDataset(CALIBRATION);
  const seen = new Set<string>();
  return ds.items.filter((i) => !seen.has(i.task) && seen.add(i.task)).map((i) => ({ messages: resolveMedia(ds.dir, i.messages), answer: i.expected }));
}

/**
 * GPTQ's sequential order: the last decoder layer's q_proj is GPTQ's answer for the inputs that the
 * calibrated layers before it give. Oracle: whole prefills of the calibrated folder, the last
 * layer's input traced, its Hessian summed in the same order, the same quantizer.
 */
async function assertSequential(q: Qwen3VL, s: ReturnType<typeof samples>, weights: Map<string, Q4Weight>) {
  const m = q.model;
  const cfg = m.cfg.text;
  const H = cfg.hiddenSize;
  const be = m.text.backend;
  const gemm = backendGemm(be);
  const last = cfg.numLayers - 1;
  const h = new InputHessian(H, gemm);
  const imEnd = q.tokenizer.encode('<|im_end|>');
  for (const x of s) {
    const p = await q.prepare(x.messages);
    const ids = Int32Array.from([...p.ids, ...q.tokenizer.encode(x.answer), ...imEnd]);
    let input: Float32Array | undefined;
    m.prefill({ ids, pixelValues: p.pixelValues, imageGrids: p.imageGrids, pixelValuesVideos: p.pixelValuesVideos, videoGrids: p.videoGrids }, m.newCache(), {
      trace: (stage, t) => {
        if (stage === `text.layer_input.${last}`) input = t;
      },
    });
    h.add(be.rmsNorm(input!, H, m.text.w.layers[last].inputNorm, cfg.rmsNormEps), ids.length);
  }
  h.flush();
  const name = `model.language_model.layers.${last}.self_attn.q_proj`;
  const ck = SafetensorsCheckpoint.open(DEMO);
  try {
    const w = readMatrix(canonicalView(ck), `${name}.weight`, cfg.numHeads * cfg.headDim, H);
    const want = gptqQuantizeQ4(w, inverseHessianFactor(h.h, h.n, { damp: 0.01, gemm }), { groupSize: 32, gemm });
    const got = weights.get(name)!;
    assert.ok(Buffer.from(got.qs).equals(Buffer.from(want.qs)), `${name}: the codes GPTQ gives for the calibrated model's inputs`);
    assert.deepEqual(got.scales, want.scales);
    assert.deepEqual(got.zeros, want.zeros);
  } finally {
    ck.close();
  }
}

test('calibrateQ4 → quantizeCheckpoint: every text matrix GPTQ-quantized and written as it is, the rest as round-to-nearest writes it; the folder loads and answers', async () => {
  const s = samples();
  assert.equal(s.length, 7);
  const layers: number[] = [];
  const r = await calibrateQ4(DEMO, s, { onProgress: (stage, done) => stage === 'layers' && layers.push(done) });
  assert.equal(r.samples, 7);
  assert.deepEqual(layers, [1, 2, 3, 4, 5, 6]);
  assert.equal(r.weights.size, 6 * 7);
  const model = await Qwen3VL.fromPretrained(DEMO);
  let tokens = 0;
  for (const x of s) tokens += (await model.prepare(x.messages)).ids.length + model.tokenizer.encode(x.answer).length + 1;
  assert.equal(r.tokens, tokens);

  const dirs = tempDir('qvl-calibrated-');
  const cal = path.join(dirs, 'cal');
  const rtn = path.join(dirs, 'rtn');
  const info = { method: 'gptq', samples: r.samples, tokens: r.tokens };
  quantizeCheckpoint(DEMO, cal, { mode: 'q4', calibrated: { weights: r.weights, info } });
  quantizeCheckpoint(DEMO, rtn, { mode: 'q4' });
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(cal, 'config.json'), 'utf8')).quantization_config.calibration, info);
  const a = SafetensorsCheckpoint.open(cal);
  const b = SafetensorsCheckpoint.open(rtn);
  try {
    let differing = 0;
    for (const name of b.names()) {
      const prefix = name.replace(/\.qvl_q4\.(qs|scales|zeros)$/, '');
      const w = r.weights.get(prefix) as Q4Weight | undefined;
      const bytes = Buffer.from(a.bytes(name));
      if (w) {
        const want = name.endsWith('.qs') ? w.qs : name.endsWith('.zeros') ? w.zeros! : w.scales;
        assert.ok(bytes.equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)), name);
        if (!bytes.equals(Buffer.from(b.bytes(name)))) differing++;
      } else {
        assert.ok(bytes.equals(Buffer.from(b.bytes(name))), `${name}: not a calibrated matrix, so round-to-nearest's bytes`);
      }
    }
    assert.ok(differing >= 6 * 7, `${differing} calibrated tensors differ from round-to-nearest`);
  } finally {
    a.close();
    b.close();
  }
  const q = await Qwen3VL.fromPretrained(cal);
  await assertSequential(q, s, r.weights);
  const out = await q.chat([{ role: 'user', content: [{ type: 'image', image: path.join(DEMO, 'example.png') }, { type: 'text', text: 'What colour is the shape?' }] }], { maxNewTokens: 8 });
  assert.equal(out.text, 'Red.');
});

test('refusals: calibrated matrices for q8, symmetric q4 or another group size; an empty sample list; a bad damping', async () => {
  const w: Q4Weight = { format: 'q4', rows: 128, cols: 128, groupSize: 128, nGroups: 1, qs: new Uint8Array(128 * 64), scales: new Float32Array(128), zeros: new Uint8Array(128) };
  const weights = new Map([['model.language_model.layers.0.self_attn.q_proj', w]]);
  const out = tempDir('qvl-calibrated-refusal-');
  assert.throws(() => quantizeCheckpoint(DEMO, path.join(out, 'a'), { mode: 'q8', calibrated: { weights, info: {} } }), /calibration makes asymmetric q4 matrices/);
  assert.throws(() => quantizeCheckpoint(DEMO, path.join(out, 'b'), { mode: 'q4', symmetric: true, calibrated: { weights, info: {} } }), /without --symmetric/);
  assert.throws(() => quantizeCheckpoint(DEMO, path.join(out, 'c'), { mode: 'q4', calibrated: { weights, info: {} } }), /calibrated model\.language_model\.layers\.0\.self_attn\.q_proj is not an asymmetric q4 \[128, 128\] matrix of group 32/);
  await assert.rejects(calibrateQ4(DEMO, []), /at least one sample/);
  await assert.rejects(calibrateQ4(DEMO, samples(), { damp: 0 }), /damp must be a positive number/);
});

test('qvl quantize: calibration flags without --calibration, or --calibration with q8, are refused before any work', () => {
  const out = path.join(tempDir('qvl-calibrated-cli-'), 'out');
  const run = (args: string[]) => spawnSync(process.execPath, [QVL, 'quantize', DEMO, out, ...args], { encoding: 'utf8', timeout: 60_000 });
  const a = run(['--quant', 'q4', '--damp', '0.1']);
  assert.equal(a.status, 2, a.stderr);
  assert.match(a.stderr, /--calibration-limit and --damp need --calibration/);
  const b = run(['--quant', 'q8', '--calibration', CALIBRATION]);
  assert.equal(b.status, 2, b.stderr);
  assert.match(b.stderr, /use it with --quant q4/);
  assert.equal(fs.existsSync(out), false);
});

test('qvl quantize --calibration in a log (stderr not a terminal): a line per decoder layer with the time left; the folder records the calibration', () => {
  const out = path.join(tempDir('qvl-calibrated-log-'), 'out');
  const r = spawnSync(process.execPath, [QVL, 'quantize', DEMO, out, '--quant', 'q4', '--calibration', CALIBRATION, '--calibration-limit', '2'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const layers = r.stderr.split('\n').filter((l) => l.startsWith('calibration: decoder layer'));
  assert.deepEqual(layers.map((l) => /layer (\d+\/\d+) quantized, \d+ s \(about \d+ s left\)$/.exec(l)?.[1]), ['1/6', '2/6', '3/6', '4/6', '5/6', '6/6'], r.stderr);
  assert.match(r.stderr, /^calibration: prepared 2\/2 items, \d+ s$/m);
  assert.doesNotMatch(r.stderr, /\x1b\[/, 'no terminal escapes in a log');
  assert.match(r.stdout, /calibrated the text decoder on 2 items \(\d+ tokens\)/);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).quantization_config.calibration.samples, 2);
});

test('InputHessian in blocks (those above the diagonal only, mirrored): the bits of the whole product, batch by batch', () => {
  // 520 columns: eight blocks of 65; 2300 rows in pieces of 100: a batch of 2100 (the first past
  // 2048), then one of 200
  const n = 520;
  const rows = 2300;
  const x = Float32Array.from({ length: rows * n }, (_, i) => Math.sin(i * 0.37) * (1 + (i % n) / 64));
  // the whole product of each batch as plainGemm computes it (float64 sums over the rows in order,
  // stored as float32), added in float64
  const want = new Float64Array(n * n);
  for (const [r0, r1] of [[0, 2100], [2100, rows]]) {
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let t = 0;
        for (let r = r0; r < r1; r++) t += x[r * n + i] * x[r * n + j];
        want[i * n + j] += Math.fround(t);
      }
  }
  const h = new InputHessian(n, plainGemm, undefined, 'h', { span: 65, minWidth: 0 });
  for (let r = 0; r < rows; r += 100) h.add(x.subarray(r * n, Math.min(rows, r + 100) * n), Math.min(100, rows - r));
  h.flush();
  const got = h.h;
  for (let i = 0; i < n * n; i++) assert.ok(Object.is(got[i], want[i]), `entry [${Math.floor(i / n)}, ${i % n}]: ${got[i]} against ${want[i]}`);
});

test('InputHessian: Σ x·xᵀ over every row added, in batches past 2048 rows; a scratch reused by the next layer starts from zero', () => {
  const n = 24;
  const scratch = new GptqScratch();
  for (const [seed, rows] of [[1, 3000], [2, 70]]) {
    const x = Float32Array.from({ length: rows * n }, (_, i) => Math.sin(seed * 1000 + i * 0.37) * (1 + (i % n) / 8));
    const want = new Float64Array(n * n);
    for (let r = 0; r < rows; r++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) want[i * n + j] += x[r * n + i] * x[r * n + j];
    const h = new InputHessian(n, plainGemm, scratch, 'attn');
    // in pieces of 100 rows, as the layer's matmuls hand them over
    for (let r = 0; r < rows; r += 100) {
      const k = Math.min(100, rows - r);
      h.add(x.subarray(r * n, (r + k) * n), k);
    }
    h.flush();
    for (let i = 0; i < n * n; i++) assert.ok(Math.abs(h.h[i] - want[i]) <= 1e-5 * Math.abs(want[i]) + 1e-3, `seed ${seed}, entry ${i}: ${h.h[i]} against ${want[i]}`);
  }
});
