import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { loadModelFromDir } from '../src/api/load-model.ts';
import { registerQuantize } from '../src/cli/quantize.ts';
import { isQvlError } from '../src/errors.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { loadConfig } from '../src/model/config.ts';
import { Qwen3VLModel } from '../src/model/qwen3vl.ts';
import { loadModelWeights } from '../src/model/weights.ts';
import { readLinear } from '../src/weights/linear.ts';
import { canonicalView } from '../src/weights/names.ts';
import { makeQuantConvert, quantTarget, quantizeForPlan } from '../src/weights/quant-plan.ts';
import { quantizeCheckpoint } from '../src/api/quantize-checkpoint.ts';
import { SafetensorsCheckpoint, SafetensorsFile } from '../src/weights/safetensors.ts';
import { PAD_TENSOR_PREFIX } from '../src/weights/safetensors-writer.ts';
import { readMatrix } from '../src/weights/tensor-reader.ts';
import { tempDir } from './helpers/safetensors-bytes.ts';
import { QUANT, TINY, fakeMap, loadCase } from './quant-util.ts';

const tiny = SafetensorsFile.open(path.join(TINY, 'model.safetensors'));

for (const mode of ['q4', 'q8'] as const) {
  test(`qvl quantize --quant ${mode}: every matrix reads back, zero-copy, exactly as the load-time quantizer makes it`, () => {
    const out = path.join(tempDir(), 'out');
    const s = quantizeCheckpoint(TINY, out, { mode });
    // the embedding (tied head) is quantized in q4 mode only (float in q8 mode: see quant-plan.ts)
    assert.equal(s.quantized, 3 * 7 + 4 * 4 + 4 * 2 + (mode === 'q4' ? 1 : 0), '21 text + 16 vision block + 8 merger Linears (+ the embedding in q4)');
    // q8 keeps the embedding float, and in the tiny model it is most of the bytes
    assert.ok(s.outputBytes < s.inputBytes * (mode === 'q4' ? 0.6 : 1), `${s.outputBytes} vs ${s.inputBytes}`);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    const qc = cfg.quantization_config;
    assert.equal(qc.quant_method, 'qvl');
    assert.equal(qc.format_version, 1);
    assert.equal(qc.mode, mode);
    for (const f of ['generation_config.json', 'chat_template.json', 'preprocessor_config.json', 'video_preprocessor_config.json', 'tokenizer_config.json']) {
      assert.deepEqual(fs.readFileSync(path.join(out, f)), fs.readFileSync(path.join(TINY, f)), f);
    }
    const file = SafetensorsFile.open(path.join(out, 'model.safetensors'), { map: fakeMap });
    assert.equal(file.metadata.qvl_format_version, '1');
    for (const info of file.tensors.values()) {
      if (!info.name.startsWith(PAD_TENSOR_PREFIX)) assert.equal(info.start % 64, 0, `${info.name} is 64-byte aligned`);
    }
    const plan = { mode };
    for (const [name, info] of tiny.tensors) {
      const prefix = name.slice(0, -'.weight'.length);
      if (name.endsWith('.weight') && info.shape.length === 2 && quantTarget(prefix, mode)) {
        const [rows, cols] = info.shape;
        const got = readLinear(file, prefix, rows, cols, qc);
        const want = quantizeForPlan(readMatrix(tiny, name, rows, cols), prefix, plan);
        assert.equal(got.format, want.format, prefix);
        assert.deepEqual(got, want, prefix);
        // zero copy: the arrays are views of the mapped file
        const qs = (got as { qs: Uint8Array }).qs;
        assert.equal(qs.buffer, file.bytes(`${prefix}.qvl_${got.format}.qs`).buffer, `${prefix} qs is a view`);
        assert.equal((got as { scales: Float32Array }).scales.buffer, qs.buffer, `${prefix} scales is a view`);
        assert.ok(!file.has(name), `${name} is replaced`);
      } else {
        assert.deepEqual(file.bytes(name), tiny.bytes(name), `${name} is copied as it is`);
        assert.deepEqual(file.info(name).shape, info.shape);
      }
    }
    file.close();
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  });
}

test(
  'a qvl quantize folder loads through the model loader and gives the load-time quantized logits',
  () => {
    const out = path.join(tempDir(), 'out');
    try {
      quantizeCheckpoint(TINY, out, { mode: 'q4' });
      const be = new TsBackend();
      const fromFile = loadModelFromDir(out, { backend: be });
      const cfg = loadConfig(TINY);
      const ck = SafetensorsCheckpoint.open(TINY);
      const atLoad = new Qwen3VLModel(cfg, loadModelWeights(canonicalView(ck), cfg, be, { convert: makeQuantConvert({ mode: 'q4' }) }), be);
      const { inputs } = loadCase('case_a_text');
      const a = fromFile.prefill(inputs, fromFile.newCache({ type: 'f32' })).logits;
      const b = atLoad.prefill(inputs, atLoad.newCache({ type: 'f32' })).logits;
      assert.deepEqual(a, b);
    } finally {
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
    }
  },
);

test('qvl quantize refuses a quantized input, an occupied or identical output folder, and a missing input', () => {
  const dir = tempDir();
  const check = (fn: () => unknown, code: string, part: string) =>
    assert.throws(fn, (e) => isQvlError(e) && e.code === code && e.message.includes(part), `${code}: ${part}`);
  check(() => quantizeCheckpoint(path.join(QUANT, 'awq-gemm-g32'), path.join(dir, 'o1'), { mode: 'q4' }), 'QUANT_INVALID', 'already quantized (quant_method "awq")');
  fs.writeFileSync(path.join(dir, 'keep.txt'), 'x');
  check(() => quantizeCheckpoint(TINY, dir, { mode: 'q8' }), 'OPTION_INVALID', 'is not empty');
  check(() => quantizeCheckpoint(TINY, TINY, { mode: 'q8' }), 'OPTION_INVALID', 'must differ');
  check(() => quantizeCheckpoint(path.join(dir, 'nope'), path.join(dir, 'o2'), { mode: 'q8' }), 'FILE_NOT_FOUND', 'nope');
  check(() => quantizeCheckpoint(TINY, path.join(dir, 'o3'), { mode: 'q4', groupSize: 48 }), 'OPTION_INVALID', '32 or 128');
  // quantized tensors without a quantization_config are refused too
  const sneaky = path.join(dir, 'sneaky');
  fs.mkdirSync(sneaky);
  const cfg = JSON.parse(fs.readFileSync(path.join(QUANT, 'awq-gemm-g32', 'config.json'), 'utf8'));
  delete cfg.quantization_config;
  fs.writeFileSync(path.join(sneaky, 'config.json'), JSON.stringify(cfg));
  fs.copyFileSync(path.join(QUANT, 'awq-gemm-g32', 'model.safetensors'), path.join(sneaky, 'model.safetensors'));
  check(() => quantizeCheckpoint(sneaky, path.join(dir, 'o4'), { mode: 'q8' }), 'QUANT_INVALID', '.qweight');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the qvl quantize command: flags, group size 128, symmetric, and a refused mode', async () => {
  const dir = tempDir();
  const out = path.join(dir, 'q4s');
  const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  registerQuantize(program);
  // the command's own line is kept; everything else goes through, since the test runner reports
  // the file's other tests on stdout while this one awaits (swallowing that hid their results)
  const write = process.stdout.write;
  let printed = '';
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (typeof chunk === 'string' && chunk.startsWith('wrote ')) return ((printed += chunk), true);
    return (write as (...a: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['node', 'qvl', 'quantize', TINY, out, '--quant', 'q4', '--group-size', '128', '--symmetric']);
  } finally {
    process.stdout.write = write;
  }
  assert.match(printed, /46 matrices quantized \(q4\)/);
  const qc = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).quantization_config;
  assert.deepEqual(qc, { quant_method: 'qvl', format_version: 1, mode: 'q4', group_size: 128, symmetric: true });
  const f = SafetensorsFile.open(path.join(out, 'model.safetensors'));
  const w = readLinear(f, 'model.language_model.layers.2.mlp.down_proj', 64, 128, qc);
  assert.ok(w.format === 'q4' && w.groupSize === 128 && w.zeros === undefined);
  f.close();
  await assert.rejects(
    () => new Command().exitOverride().configureOutput({ writeErr: () => {} }).addCommand(program.commands[0]).parseAsync(['node', 'qvl', 'quantize', TINY, path.join(dir, 'x'), '--quant', 'q3']),
    /Allowed choices are q8, q4/,
  );
  fs.rmSync(dir, { recursive: true, force: true });
});
