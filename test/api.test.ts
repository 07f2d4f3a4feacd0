import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import { isQvlError } from '../src/errors.ts';
import { SafetensorsFile } from '../src/weights/safetensors.ts';
import { readInts } from '../src/weights/tensor-reader.ts';

const TINY = new URL('./fixtures/tiny/', import.meta.url).pathname;
const model = await Qwen3VL.fromPretrained(TINY, { backend: 'ts' });
const fixtureIds = (c: string, t: string) => readInts(SafetensorsFile.open(`${TINY}${c}.safetensors`), t);

test('chat: an image message gives HF\'s ids and HF\'s greedy tokens', async () => {
  const r = await model.chat([{ role: 'user', content: [{ type: 'image', image: TINY + 'image_b.png' }, { type: 'text', text: 'Describe this image.' }] }], {
    temperature: 0,
    maxNewTokens: 8,
  });
  assert.deepEqual(r.tokenIds, fixtureIds('case_b_image', 'generated_ids'));
  assert.equal(r.usage.promptTokens, 84);
  assert.equal(r.usage.completionTokens, 8);
  assert.equal(r.finishReason, 'length');
  assert.deepEqual(r.media[0], { kind: 'image', width: 96, height: 64, resizedWidth: 320, resizedHeight: 224, tokens: 70 });
});

test('OpenAI-style parts (data URI image) prepare to the same ids as HF-style parts', async () => {
  const png = fs.readFileSync(TINY + 'image_b.png').toString('base64');
  const a = await model.prepare([{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } }, { type: 'text', text: 'Describe this image.' }] }]);
  assert.deepEqual([...a.ids], fixtureIds('case_b_image', 'input_ids'));
});

test('a frame-list video in the 4.57 layout gives the reference ids and tokens', async () => {
  const frames = Array.from({ length: 8 }, (_, i) => `${TINY}video_frame_${i}.png`);
  const s = model.stream([{ role: 'user', content: [{ type: 'video', video: frames, fps: 2 }, { type: 'text', text: 'What happens in this video?' }] }], {
    temperature: 0,
    maxNewTokens: 8,
  });
  let text = '';
  for await (const d of s) text += d;
  const r = await s.result;
  assert.equal(text, r.text, 'the deltas add up to the final text');
  assert.deepEqual(r.tokenIds, fixtureIds('case_d3_video_v457_layout', 'generated_ids'));
  assert.equal(r.usage.promptTokens, fixtureIds('case_d3_video_v457_layout', 'input_ids').length);
});

test('a stop string ends the answer and is not part of it', async () => {
  const full = await model.chat([{ role: 'user', content: 'Name three primary colors and explain why.' }], { temperature: 0, maxNewTokens: 8 });
  const cut = full.text.slice(2, 5);
  const r = await model.chat([{ role: 'user', content: 'Name three primary colors and explain why.' }], { temperature: 0, maxNewTokens: 8, stop: [cut] });
  assert.equal(r.text, full.text.slice(0, full.text.indexOf(cut)));
  assert.equal(r.finishReason, 'stop');
});

test('bad requests fail before the model runs, naming the problem', async () => {
  await assert.rejects(model.chat([{ role: 'user', content: [{ type: 'audio', audio: 'x' }] }]), (e: unknown) => isQvlError(e, 'MESSAGE_INVALID') && /content\[0\]/.test(e.message));
  await assert.rejects(model.chat([{ role: 'user', content: 'hi' }], { topP: 5 }), (e: unknown) => isQvlError(e, 'OPTION_INVALID') && /top_p/.test(e.message));
  await assert.rejects(Qwen3VL.fromPretrained('/no/such/model'), (e: unknown) => isQvlError(e, 'FILE_NOT_FOUND'));
});

test('fromPretrained with a hub id downloads into the cache, then loads offline', async () => {
  const { startFakeHub } = await import('./hub-fake-server.ts');
  const { tempDir } = await import('./helpers/safetensors-bytes.ts');
  const small = (f: string) => ({ data: fs.readFileSync(TINY + f), lfs: f.endsWith('.safetensors') });
  const files = Object.fromEntries(
    ['config.json', 'generation_config.json', 'preprocessor_config.json', 'video_preprocessor_config.json', 'tokenizer_config.json', 'chat_template.json', 'model.safetensors'].map((f) => [f, small(f)]),
  );
  const hub = await startFakeHub({ repoId: 'qvl-test/tiny', commit: 'c'.repeat(40), files });
  const cacheDir = tempDir('qvl-hf-cache-');
  try {
    const m = await Qwen3VL.fromPretrained('qvl-test/tiny', { backend: 'ts', hub: { endpoint: hub.endpoint, cacheDir } });
    const r = await m.chat([{ role: 'user', content: 'Name three primary colors and explain why.' }], { temperature: 0, maxNewTokens: 4 });
    assert.deepEqual(r.tokenIds, fixtureIds('case_a_text', 'generated_ids').slice(0, 4));
    const before = hub.requests.length;
    await Qwen3VL.fromPretrained('qvl-test/tiny', { backend: 'ts', hub: { endpoint: hub.endpoint, cacheDir, offline: true } });
    assert.equal(hub.requests.length, before, 'offline load makes no request');
  } finally {
    await hub.close();
  }
});

test('a PDF part becomes one image per page, in order', async () => {
  const p = await model.prepare([{ role: 'user', content: [{ type: 'pdf', pdf: new URL('./fixtures/media/two_pages.pdf', import.meta.url).pathname }, { type: 'text', text: 'Summarize.' }] }]);
  assert.equal(p.media.length, 2);
  assert.ok(p.media.every((m) => m.kind === 'image'));
  assert.ok(p.media[0].width > p.media[0].height && p.media[1].height > p.media[1].width, 'page 1 is landscape, page 2 portrait');
  assert.equal(p.imageGrids.length, 2);
});
