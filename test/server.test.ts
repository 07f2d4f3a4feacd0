/**
 * The OpenAI-compatible server end to end: a real `qvl serve` (in-process, inference on a worker
 * thread) on the tiny random-weight model, driven by the official openai client and raw HTTP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import OpenAI from 'openai';
import { ffmpegAvailable } from '../src/media/ffmpeg.ts';
import { WorkerEngine } from '../src/server/engine.ts';
import { startServer, type RunningServer } from '../src/server/serve.ts';
import { bombPng, dataUri, readSse, startMediaHost } from './server-util.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const MEDIA = path.join(import.meta.dirname, 'fixtures', 'media');
const IMG_B = dataUri(path.join(TINY, 'image_b.png'), 'image/png');

let server: RunningServer;
let engine: WorkerEngine;
let host: Awaited<ReturnType<typeof startMediaHost>>;
let client: OpenAI;

before(async () => {
  host = await startMediaHost(TINY);
  engine = new WorkerEngine(TINY, { backend: 'ts' });
  server = await startServer({
    engine,
    modelDir: TINY,
    modelNames: ['tiny', 'qvl-tiny'],
    port: 0,
    limits: {
      maxQueue: 1,
      maxImages: 4,
      maxContext: 2048,
      maxBodyBytes: 1024 * 1024,
      defaultMaxTokens: 16,
      // the media host is on loopback: this one address is allowed, other private ones are not
      media: { allowedAddresses: ['127.0.0.1'], allowedLocalDirs: [TINY], maxInputPixels: 4_000_000 },
    },
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  await engine.loaded;
});

after(async () => {
  await server?.close();
  await host?.close();
});

const post = (route: string, body: unknown) =>
  fetch(`${server.url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });

async function cost(messages: unknown, extra: object = {}): Promise<{ prompt_tokens: number; items: { type: string; tokens: number }[] }> {
  const r = await post('/v1/tokenize', { model: 'tiny', messages, ...extra });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as never;
}

/** The error an openai-client user sees. */
async function refused(body: Record<string, unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await client.chat.completions.create({ model: 'tiny', max_tokens: 2, ...body } as never);
  } catch (e) {
    if (e instanceof OpenAI.APIError) return e;
    throw e;
  }
  assert.fail('the request was accepted');
}

test('health answers 200 once loaded; models are listed', async () => {
  const h = await fetch(`${server.url}/health`);
  assert.equal(h.status, 200);
  assert.deepEqual(((await h.json()) as { status: string }).status, 'ok');
  const models = await client.models.list();
  assert.deepEqual(
    models.data.map((m) => m.id),
    ['tiny', 'qvl-tiny'],
  );
});

test('non-streaming chat with an image as a data URI: OpenAI response shape, the answer HF gives, usage equal to the cost preview', async () => {
  // test/fixtures/tiny/case_b_image.json: HF transformers' greedy answer to this very request
  const fixture = JSON.parse(readFileSync(path.join(TINY, 'case_b_image.json'), 'utf8')) as { generated_text: string; seq_len: number };
  const messages = [{ role: 'user' as const, content: [{ type: 'image_url' as const, image_url: { url: IMG_B } }, { type: 'text' as const, text: 'Describe this image.' }] }];
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, temperature: 0 });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, 'tiny');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0]!.message.role, 'assistant');
  assert.equal(r.choices[0]!.message.content, fixture.generated_text);
  assert.equal(r.choices[0]!.finish_reason, 'length');
  assert.deepEqual(r.usage, { prompt_tokens: fixture.seq_len, completion_tokens: 8, total_tokens: fixture.seq_len + 8, prompt_tokens_details: { cached_tokens: 0 } });
  const c = await cost(messages);
  assert.equal(c.prompt_tokens, fixture.seq_len);
  assert.deepEqual(c.items.map((i) => [i.type, i.tokens]), [['image', 70]]);
  // the alias name works too
  const again = await client.chat.completions.create({ model: 'qvl-tiny', messages, max_tokens: 8, temperature: 0 });
  assert.equal(again.choices[0]!.message.content, fixture.generated_text);
});

test('streaming: deltas add up to the non-streamed answer; usage chunk; data: [DONE]', async () => {
  const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
  const whole = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, temperature: 0 });
  const stream = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  const finish: (string | null)[] = [];
  let usage: OpenAI.CompletionUsage | undefined | null;
  let first = true;
  for await (const ch of stream) {
    assert.equal(ch.object, 'chat.completion.chunk');
    if (ch.usage) usage = ch.usage;
    if (ch.choices.length === 0) continue;
    if (first) assert.equal(ch.choices[0]!.delta.role, 'assistant');
    first = false;
    text += ch.choices[0]!.delta.content ?? '';
    finish.push(ch.choices[0]!.finish_reason);
  }
  assert.equal(text, whole.choices[0]!.message.content);
  assert.equal(finish.at(-1), 'length');
  assert.ok(finish.slice(0, -1).every((f) => f === null));
  assert.deepEqual(usage, whole.usage);
  const raw = await readSse(await post('/v1/chat/completions', { model: 'tiny', messages, max_tokens: 2, stream: true }));
  assert.equal(raw.at(-1), '[DONE]');
});

test('images by URL (a local media host) and two images in one message', async () => {
  const messages = [
    {
      role: 'user' as const,
      content: [
        { type: 'image_url' as const, image_url: { url: host.url('image_b.png') } },
        { type: 'image_url' as const, image_url: { url: host.url('image_c1.png') } },
        { type: 'text' as const, text: 'Compare them.' },
      ],
    },
  ];
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 3 });
  const c = await cost(messages);
  assert.equal(c.items.length, 2);
  assert.equal(r.usage!.prompt_tokens, c.prompt_tokens);
});

test('file:// media only under --allowed-local-media-path', async () => {
  const inside = pathToFileURL(path.join(TINY, 'image_b.png')).href;
  const r = await client.chat.completions.create({ model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: inside } }] }] });
  assert.equal(r.usage!.completion_tokens, 2);
  const e = await refused({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: pathToFileURL(path.join(MEDIA, 'rgba.png')).href } }] }] });
  assert.equal(e.status, 400);
  assert.equal(e.code, 'media_forbidden');
});

test('video as a list of frames (URLs, with fps)', async () => {
  const frames = Array.from({ length: 8 }, (_, i) => host.url(`video_frame_${i}.png`));
  const messages = [{ role: 'user', content: [{ type: 'video', video: frames, fps: 4 }, { type: 'text', text: 'What happens?' }] }];
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 2 } as never);
  const c = await cost(messages);
  assert.equal(c.items[0]!.type, 'video');
  assert.equal(r.usage!.prompt_tokens, c.prompt_tokens);
});

test('video file as a data URI in video_url', { skip: ffmpegAvailable() ? false : 'ffmpeg is not installed' }, async () => {
  const messages = [{ role: 'user', content: [{ type: 'video_url', video_url: { url: dataUri(path.join(MEDIA, 'clip_h264.mp4'), 'video/mp4') } }, { type: 'text', text: 'Describe.' }] }];
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 2 } as never);
  const c = await cost(messages);
  assert.equal(c.items[0]!.type, 'video');
  assert.equal(r.usage!.prompt_tokens, c.prompt_tokens);
});

test('a PDF as a file part becomes one image per page', async () => {
  const pdf = dataUri(path.join(MEDIA, 'two_pages.pdf'), 'application/pdf');
  const messages = [{ role: 'user', content: [{ type: 'file', file: { file_data: pdf, filename: 'doc.pdf' }, max_pixels: 300 * 300 }, { type: 'text', text: 'Summarize.' }] }];
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 2 } as never);
  const c = await cost(messages);
  assert.deepEqual(c.items.map((i) => i.type), ['image', 'image']);
  assert.equal(r.usage!.prompt_tokens, c.prompt_tokens);
  // the same document as an image_url data URI
  const r2 = await client.chat.completions.create({ model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: pdf }, max_pixels: 300 * 300 }, { type: 'text', text: 'Summarize.' }] }] } as never);
  assert.equal(r2.usage!.prompt_tokens, c.prompt_tokens);
});

test('per-request min_pixels / max_pixels change the image cost', async () => {
  const messages = [{ role: 'user', content: [{ type: 'image_url', image_url: { url: IMG_B } }, { type: 'text', text: 'x' }] }];
  const small = await cost(messages, { max_pixels: 64 * 64 * 4, min_pixels: 32 * 32 });
  const big = await cost(messages);
  assert.ok(small.items[0]!.tokens < big.items[0]!.tokens, `${small.items[0]!.tokens} vs ${big.items[0]!.tokens}`);
  const r = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 1, max_pixels: 64 * 64 * 4, min_pixels: 32 * 32 } as never);
  assert.equal(r.usage!.prompt_tokens, small.prompt_tokens);
});

test('json_schema: constrained decoding makes even the random model produce valid, conforming JSON', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 8 },
      age: { type: 'integer' },
      colours: { type: 'array', items: { enum: ['red', 'green'] }, maxItems: 2 },
      ok: { type: 'boolean' },
    },
    required: ['name', 'age', 'colours', 'ok'],
    additionalProperties: false,
  };
  for (const seed of [1]) {
    const r = await client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'Describe a person as JSON.' }],
      max_tokens: 200,
      seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } },
    });
    const text = r.choices[0]!.message.content!;
    assert.equal(r.choices[0]!.finish_reason, 'stop', text);
    const v = JSON.parse(text);
    assert.deepEqual(Object.keys(v), ['name', 'age', 'colours', 'ok']);
    assert.ok(typeof v.name === 'string' && [...v.name].length <= 8, text);
    assert.ok(Number.isInteger(v.age), text);
    assert.ok(Array.isArray(v.colours) && v.colours.length <= 2 && v.colours.every((c: string) => c === 'red' || c === 'green'), text);
    assert.equal(typeof v.ok, 'boolean');
  }
  const e = await refused({ messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: 'a+' } } } });
  assert.equal(e.status, 400);
  assert.equal(e.param, 'response_format.json_schema.schema');
  assert.match(e.message, /pattern/);
});

test('refused inputs: each with the status and message a client sees', async () => {
  const user = (content: unknown) => ({ messages: [{ role: 'user', content }] });
  // a body over --max-body (an oversized image)
  const huge = 'data:image/png;base64,' + Buffer.alloc(1024 * 1024).toString('base64');
  let e = await refused(user([{ type: 'image_url', image_url: { url: huge } }]));
  assert.equal(e.status, 413);
  assert.match(e.message, /over the limit of 1048576 bytes/);
  // a decompression bomb: a small file whose header claims 60000x60000 pixels
  e = await refused(user([{ type: 'image_url', image_url: { url: `data:image/png;base64,${bombPng(60000, 60000).toString('base64')}` } }]));
  assert.equal(e.status, 413);
  assert.equal(e.code, 'image_too_large');
  assert.match(e.message, /60000x60000/);
  // a private address (the cloud metadata service), not on the allow list
  e = await refused(user([{ type: 'image_url', image_url: { url: 'http://169.254.169.254/latest/meta-data/x.png' } }]));
  assert.equal(e.status, 400);
  assert.equal(e.code, 'media_forbidden');
  // bad Base64
  e = await refused(user([{ type: 'image_url', image_url: { url: 'data:image/png;base64,iVBOR$w0KGgo' } }]));
  assert.equal(e.status, 400);
  assert.match(e.message, /not valid Base64: unexpected character "\$"/);
  // an unknown content part
  e = await refused(user([{ type: 'input_audio', input_audio: { data: 'x', format: 'wav' } }]));
  assert.equal(e.status, 400);
  assert.match(e.message, /messages\[0\]\.content\[0\]: unknown content part type "input_audio"/);
  assert.equal(e.param, 'messages[0].content[0]');
  // a prompt longer than the context
  e = await refused(user('lorem ipsum '.repeat(1500)));
  assert.equal(e.status, 400);
  assert.equal(e.code, 'context_length_exceeded');
  // more images than --max-images
  e = await refused(user(Array.from({ length: 5 }, () => ({ type: 'image_url', image_url: { url: IMG_B } }))));
  assert.equal(e.status, 413);
  assert.match(e.message, /limit is 4/);
  // options
  e = await refused({ ...user('x'), n: 2 });
  assert.equal([e.status, e.param].join(), '400,n');
  e = await refused({ ...user('x'), temperature: 5 });
  assert.equal([e.status, e.param].join(), '400,temperature');
  e = await refused({ ...user('x'), model: 'gpt-4o' });
  assert.equal([e.status, e.code].join(), '404,model_not_found');
  const bad = await post('/v1/chat/completions', '{"model": "tiny", ');
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { error: { message: string } }).error.message, /not valid JSON/);
});

test('a client that disconnects mid-stream frees the model at once', async () => {
  const ac = new AbortController();
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'Go on forever.' }], max_tokens: 1500, stream: true }),
    signal: ac.signal,
  });
  const reader = res.body!.getReader();
  let got = '';
  while ((got.match(/data: /g) ?? []).length < 4) got += new TextDecoder().decode((await reader.read()).value);
  ac.abort();
  // 1500 tokens would hold the model for a minute or more; the abort frees it within a token or two
  const t0 = performance.now();
  for (;;) {
    const h = (await (await fetch(`${server.url}/health`)).json()) as { queue: { running: number } };
    if (h.queue.running === 0) break;
    assert.ok(performance.now() - t0 < 10_000, 'the slot was not freed');
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Next.' }], max_tokens: 2 });
  assert.equal(r.usage!.completion_tokens, 2);
});

test('429 with Retry-After when one request runs and the line (max 1) is full', async () => {
  const long = (ac: AbortController) =>
    fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'Long answer please.' }], max_tokens: 1500, stream: true }),
      signal: ac.signal,
    }).catch(() => undefined);
  const a = new AbortController();
  const b = new AbortController();
  void long(a);
  await new Promise((r) => setTimeout(r, 300));
  void long(b);
  for (;;) {
    const h = (await (await fetch(`${server.url}/health`)).json()) as { queue: { running: number; waiting: number } };
    if (h.queue.running === 1 && h.queue.waiting === 1) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const e = await refused({ messages: [{ role: 'user', content: 'me too' }] });
  assert.equal(e.status, 429);
  assert.equal(e.code, 'queue_full');
  assert.ok(Number(e.headers?.get('retry-after')) >= 1);
  a.abort();
  b.abort();
  for (;;) {
    const h = (await (await fetch(`${server.url}/health`)).json()) as { queue: { running: number; waiting: number } };
    if (h.queue.running === 0 && h.queue.waiting === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
});

test('--quant reaches the inference worker: /health names the weights it loaded, and it answers', async () => {
  const plain = (await (await fetch(`${server.url}/health`)).json()) as { weights: string };
  assert.notEqual(plain.weights, 'q8');
  const qEngine = new WorkerEngine(TINY, { backend: 'ts', quant: 'q8' });
  const q = await startServer({ engine: qEngine, modelDir: TINY, modelNames: ['tiny'], port: 0, limits: { defaultMaxTokens: 2 } });
  try {
    await qEngine.loaded;
    const h = (await (await fetch(`${q.url}/health`)).json()) as { weights: string; backend: string };
    assert.deepEqual([h.weights, h.backend], ['q8', 'ts']);
    const r = await fetch(`${q.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(r.status, 200);
  } finally {
    await q.close();
  }
});
