import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadModelFromDir } from '../src/api/load-model.ts';
import { isQvlError } from '../src/errors.ts';
import { generateTokens } from '../src/generate/generate.ts';
import { argmax } from '../src/kernels/ts/argmax.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { SafetensorsFile } from '../src/weights/safetensors.ts';
import { readF32, readInts } from '../src/weights/tensor-reader.ts';

const TINY = new URL('./fixtures/tiny/', import.meta.url).pathname;
const model = loadModelFromDir(TINY, { backend: new TsBackend() });
const caseB = SafetensorsFile.open(TINY + 'case_b_image.safetensors');
const g = readInts(caseB, 'image_grid_thw');
const imageInputs = { ids: readInts(caseB, 'input_ids'), pixelValues: readF32(caseB, 'pixel_values'), imageGrids: [[g[0], g[1], g[2]] as [number, number, number]] };
const V = model.cfg.text.vocabSize;

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('a KV-cache decode step gives the logits of a full recompute', () => {
  const cache = model.newCache();
  const pre = model.prefill(imageInputs, cache);
  const next = argmax(pre.logits);
  const step = model.decode(next, cache, pre.positions.delta);
  // Oracle: the prompt plus that token, run from scratch (the token's positions continue at max + 1).
  const full = model.prefill({ ...imageInputs, ids: [...imageInputs.ids, next] }, model.newCache(), { allLogits: true });
  const L = imageInputs.ids.length;
  assert.ok(maxDiff(step, full.logits.subarray(L * V)) < 1e-4);
});

test('chunked prefill (chunks splitting the image block) equals one pass', () => {
  const whole = model.prefill(imageInputs, model.newCache());
  for (const chunk of [7, 32]) {
    const cache = model.newCache();
    const parts = model.prefill(imageInputs, cache, { chunkSize: chunk });
    assert.ok(maxDiff(whole.logits, parts.logits) < 1e-4, `chunk ${chunk}`);
    assert.equal(cache.length, imageInputs.ids.length);
  }
});

test('generation stops at EOS (not emitted), at max tokens, and refuses prompts past the context', () => {
  const greedy = [...generateTokens(model, imageInputs, { maxNewTokens: 3, eosTokenIds: [], temperature: 0 })];
  assert.equal(greedy.length, 3);
  const it = generateTokens(model, imageInputs, { maxNewTokens: 10, eosTokenIds: [greedy[1]], temperature: 0 });
  const got: number[] = [];
  let r = it.next();
  while (!r.done) {
    got.push(r.value);
    r = it.next();
  }
  assert.deepEqual(got, [greedy[0]], 'stops before the EOS id');
  assert.equal(r.value.finishReason, 'stop');
  assert.throws(
    () => generateTokens(model, imageInputs, { maxNewTokens: 1, eosTokenIds: [], maxContext: 50 }).next(),
    (e: unknown) => isQvlError(e, 'CONTEXT_TOO_LONG') && /84 tokens/.test(e.message),
  );
});

test('pad tokens and vision features must agree in number', () => {
  const ids = [...imageInputs.ids];
  const first = ids.indexOf(model.cfg.imageTokenId);
  ids.splice(first, 4); // drop one merged window's worth of pads
  assert.throws(
    () => model.prefill({ ...imageInputs, ids }, model.newCache()),
    (e: unknown) => isQvlError(e, 'TOKEN_COUNT_MISMATCH') && /66 pad tokens/.test(e.message) && /70/.test(e.message),
  );
});
