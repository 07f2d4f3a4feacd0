import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { estimatePromptCost } from '../src/api/prompt-cost.ts';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import { WorkerModel } from '../src/api/worker-host.ts';
import { isQvlError } from '../src/errors.ts';
import { ffmpegAvailable } from '../src/media/ffmpeg.ts';
import { promptPartsLoader } from '../src/server/serve.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const MEDIA = path.join(import.meta.dirname, 'fixtures', 'media');
const image = (name: string) => ({ type: 'image', image: path.join(TINY, name) });
const frames = Array.from({ length: 8 }, (_, i) => path.join(TINY, `video_frame_${i}.png`));

let model: WorkerModel;
after(() => model?.close());

test('loads a model on a worker thread, reporting progress', async () => {
  const seen: number[] = [];
  model = await WorkerModel.load(TINY, { backend: 'ts', onProgress: (d, t) => seen.push(d / t) });
  assert.equal(model.info.backend, 'ts');
  assert.equal(model.info.thinking, false);
  assert.deepEqual(model.info.generation.eosTokenIds, [151645, 151643]);
  assert.ok(seen.length > 0 && seen.at(-1) === 1, String(seen));
});

test('the worker answers exactly what the library answers on the calling thread', async () => {
  const messages = [{ role: 'user', content: [image('image_b.png'), { type: 'text', text: 'What is this?' }] }];
  const opts = { maxNewTokens: 12, temperature: 0 };
  const local = await Qwen3VL.fromPretrained(TINY, { backend: 'ts' });
  const want = await local.chat(messages, opts);
  const s = model.stream(messages, opts);
  let text = '';
  for await (const d of s) text += d;
  const got = await s.result;
  assert.equal(text, want.text);
  assert.deepEqual(got.tokenIds, want.tokenIds);
  assert.deepEqual(got.usage, want.usage);
  const prompt = await s.prompt;
  assert.equal(prompt.promptTokens, want.usage.promptTokens);
  assert.equal(prompt.startsInThink, false);
  assert.equal(prompt.media[0]!.tokens, 70);
});

test('the calling thread stays responsive while the worker computes', async () => {
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 5);
  const t0 = performance.now();
  const r = await model.chat([{ role: 'user', content: [image('image_c2.png'), image('image_b.png'), { type: 'text', text: 'Compare.' }] }], { maxNewTokens: 20, temperature: 0 });
  const busyMs = performance.now() - t0;
  clearInterval(timer);
  assert.equal(r.usage.completionTokens, 20);
  // On the calling thread the prefill alone would block the timer for its whole length.
  assert.ok(busyMs > 300, `generation took ${busyMs} ms`);
  assert.ok(maxGap < Math.max(100, r.timings.prefillMs / 2), `timer gap ${maxGap.toFixed(0)} ms during a ${r.timings.prefillMs.toFixed(0)} ms prefill`);
});

test('aborting stops generation at the next token, and the worker takes the next request', async () => {
  const ac = new AbortController();
  const s = model.stream([{ role: 'user', content: 'Count to a thousand.' }], { maxNewTokens: 400, temperature: 0, signal: ac.signal });
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const _ of s) if (++n === 3) ac.abort();
    })(),
    (e) => isQvlError(e, 'ABORTED'),
  );
  assert.ok(n >= 3 && n <= 5, `${n} deltas arrived`);
  await assert.rejects(s.result, (e) => isQvlError(e, 'ABORTED'));
  // leaving a loop early cancels too
  const s2 = model.stream([{ role: 'user', content: 'Again.' }], { maxNewTokens: 400, temperature: 0 });
  for await (const _ of s2) break;
  await assert.rejects(s2.result, (e) => isQvlError(e, 'ABORTED'));
  const r = await model.chat([{ role: 'user', content: 'Hi' }], { maxNewTokens: 3, temperature: 0 });
  assert.equal(r.usage.completionTokens, 3);
});

test('requests run one at a time in order; a request aborted while waiting never starts', async () => {
  const order: string[] = [];
  const a = model.chat([{ role: 'user', content: 'a' }], { maxNewTokens: 4, temperature: 0 }).then(() => order.push('a'));
  const ac = new AbortController();
  const b = model.chat([{ role: 'user', content: 'b' }], { maxNewTokens: 4, temperature: 0, signal: ac.signal });
  ac.abort();
  const c = model.chat([{ role: 'user', content: 'c' }], { maxNewTokens: 4, temperature: 0 }).then(() => order.push('c'));
  await assert.rejects(b, (e) => isQvlError(e, 'ABORTED') && /before it started/.test(e.message));
  await Promise.all([a, c]);
  assert.deepEqual(order, ['a', 'c']);
});

test('errors cross the thread with their code and message; the worker survives', async () => {
  await assert.rejects(
    model.chat([{ role: 'user', content: [{ type: 'image', image: 'data:image/png;base64,not*base64' }, { type: 'text', text: 'x' }] }], { maxNewTokens: 2 }),
    (e) => isQvlError(e, 'MEDIA_SOURCE') && /not valid Base64/.test(e.message),
  );
  await assert.rejects(
    model.chat([{ role: 'user', content: [image('image_b.png'), image('image_c1.png'), { type: 'text', text: 'x' }] }], { maxNewTokens: 2, maxMediaItems: 1 }),
    (e) => isQvlError(e, 'MEDIA_TOO_LARGE') && /limit is 1/.test(e.message),
  );
  await assert.rejects(
    model.chat([{ role: 'user', content: 'word '.repeat(200) }], { maxNewTokens: 2, maxContext: 100 }),
    (e) => isQvlError(e, 'CONTEXT_TOO_LONG') && /accepts fewer than 100/.test(e.message),
  );
  const r = await model.chat([{ role: 'user', content: 'still alive?' }], { maxNewTokens: 2, temperature: 0 });
  assert.equal(r.usage.completionTokens, 2);
});

test('max_new_tokens is cut to what the context leaves', async () => {
  const r = await model.chat([{ role: 'user', content: 'Hello there' }], { maxNewTokens: 500, maxContext: 20, temperature: 0 });
  assert.ok(r.usage.totalTokens <= 20, JSON.stringify(r.usage));
  assert.equal(r.finishReason, 'length');
});

test('the cost preview equals what preparing the prompt in the worker produces (images, frame list, PDF, video file)', async () => {
  const parts = await promptPartsLoader(TINY)();
  const content: object[] = [
    image('image_c2.png'),
    { type: 'video', video: frames, fps: 4 },
    { type: 'pdf', pdf: path.join(MEDIA, 'two_pages.pdf'), max_pixels: 128 * 128 },
    { type: 'image', image: path.join(TINY, 'image_b.png'), max_pixels: 64 * 64 * 4 },
  ];
  if (ffmpegAvailable()) content.push({ type: 'video', video: path.join(MEDIA, 'clip_h264.mp4') });
  content.push({ type: 'text', text: 'Describe everything.' });
  const messages = [{ role: 'user', content }];
  const cost = await estimatePromptCost(parts, messages, { minPixels: 32 * 32 * 4 });
  const prepared = await model.prepare(messages, { minPixels: 32 * 32 * 4 });
  assert.equal(cost.promptTokens, prepared.ids.length);
  assert.deepEqual(
    cost.items.map((i) => [i.kind, i.tokens, i.resized.width, i.resized.height]),
    prepared.media.map((m) => [m.kind, m.tokens, m.resizedWidth, m.resizedHeight]),
  );
  // two PDF pages became two images
  assert.equal(cost.items.filter((i) => i.source.startsWith('PDF page')).length, 2);
});

test('constrained decoding runs in the worker: JSON that the schema allows', async () => {
  const schema = { type: 'object', properties: { colour: { enum: ['red', 'blue'] }, n: { type: 'integer' } }, required: ['colour', 'n'] };
  const r = await model.chat([{ role: 'user', content: 'Reply in JSON.' }], { maxNewTokens: 120, seed: 5, constraint: { kind: 'json_schema', schema } });
  assert.equal(r.finishReason, 'stop', r.text);
  const v = JSON.parse(r.text);
  assert.ok(['red', 'blue'].includes(v.colour) && Number.isInteger(v.n), r.text);
});
