/**
 * The server under hostile or careless clients, each case through a real server (inference on a
 * worker thread, requests prepared on a preparation worker): deep nesting, huge text, pixel
 * budgets, slow media hosts, /v1/tokenize floods, shutdown, and a dying inference worker.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { WorkerEngine } from '../src/server/engine.ts';
import { startServer, type RunningServer } from '../src/server/serve.ts';
import { startServeProcess } from './helpers/serve-process.ts';
import { dataUri } from './server-util.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const DEMO = path.join(import.meta.dirname, '..', 'models', 'demo');
const IMG_B = dataUri(path.join(TINY, 'image_b.png'), 'image/png');

let server: RunningServer;
let engine: WorkerEngine;
const logged: string[] = [];

const LIMITS = {
  maxQueue: 2,
  maxContext: 2048,
  defaultMaxTokens: 8,
  media: { allowedAddresses: ['127.0.0.1'], maxInputPixels: 4_000_000, readTimeoutMs: 60_000 },
};

before(async () => {
  engine = new WorkerEngine(TINY, { backend: 'ts' });
  server = await startServer({ engine, modelDir: TINY, modelNames: ['tiny'], port: 0, limits: LIMITS, log: (l) => logged.push(l) });
  await engine.loaded;
});

after(async () => {
  await server?.close();
});

const post = (url: string, route: string, body: unknown, signal?: AbortSignal) =>
  fetch(`${url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), signal });

type ErrorBody = { error: { message: string; code: string | null; param: string | null } };

async function health(url: string): Promise<{ status: number; ms: number; body: { status: string; queue: Record<string, number> } }> {
  const t0 = performance.now();
  const r = await fetch(`${url}/health`);
  return { status: r.status, body: (await r.json()) as never, ms: performance.now() - t0 };
}

/** Polls /health until `done` resolves; returns the slowest answer in ms. */
async function slowestHealth(url: string, done: Promise<unknown>): Promise<number> {
  let finished = false;
  void done.finally(() => (finished = true));
  let worst = 0;
  while (!finished) {
    worst = Math.max(worst, (await health(url)).ms);
    await new Promise((r) => setTimeout(r, 20));
  }
  return worst;
}

/** Reads a server-sent event stream to its end; `got` is what was read before. Returns the `data:` payloads. */
async function remainingEvents(reader: ReadableStreamDefaultReader<Uint8Array>, got: string): Promise<string[]> {
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    got += new TextDecoder().decode(r.value);
  }
  return got
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6));
}

/** A media host that sends headers, then one byte every `everyMs`: a download that never ends in useful time. */
async function startDribbleHost(everyMs: number): Promise<{ url: string; close: () => Promise<void> }> {
  const timers = new Set<NodeJS.Timeout>();
  const srv = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': '100000' });
    const t = setInterval(() => res.write('x'), everyMs);
    timers.add(t);
    res.on('close', () => clearInterval(t));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/slow.png`,
    close: async () => {
      for (const t of timers) clearInterval(t);
      srv.closeAllConnections();
      await new Promise((r) => srv.close(() => r(undefined)));
    },
  };
}

test('deep JSON nesting in an unknown field is refused with 400, and the server lives on (it crashed the process)', async () => {
  const deep = '['.repeat(3500) + ']'.repeat(3500);
  const body = `{"model":"tiny","max_tokens":1,"messages":[{"role":"user","content":"hi","x":${deep}}]}`;
  for (const route of ['/v1/chat/completions', '/v1/tokenize']) {
    const r = await post(server.url, route, body);
    assert.equal(r.status, 400, route);
    const e = (await r.json()) as ErrorBody;
    assert.match(e.error.message, /more than 64 levels deep/);
  }
  // Moderate nesting in unknown fields is dropped, not carried to the workers: the request runs.
  const nested = JSON.parse('['.repeat(40) + ']'.repeat(40));
  const ok = await post(server.url, '/v1/chat/completions', {
    model: 'tiny',
    max_tokens: 1,
    messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', extra: nested }], x: nested }],
    unknown_top_level: nested,
  });
  assert.equal(ok.status, 200, await ok.clone().text());
  assert.equal((await health(server.url)).status, 200);
});

test('one log line per request: method, path, status, prompt and completion tokens, milliseconds', async () => {
  logged.length = 0;
  await post(server.url, '/v1/chat/completions', { model: 'tiny', max_tokens: 3, messages: [{ role: 'user', content: 'x' }] });
  const stream = await post(server.url, '/v1/chat/completions', { model: 'tiny', max_tokens: 2, stream: true, messages: [{ role: 'user', content: 'x' }] });
  await stream.text();
  await post(server.url, '/v1/chat/completions', { model: 'nope', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(logged.length, 3, logged.join('\n'));
  assert.match(logged[0]!, /^POST \/v1\/chat\/completions 200 prompt_tokens=\d+ completion_tokens=3 \d+ms$/);
  assert.match(logged[1]!, /^POST \/v1\/chat\/completions 200 prompt_tokens=\d+ completion_tokens=2 \d+ms$/);
  assert.match(logged[2]!, /^POST \/v1\/chat\/completions 404 \d+ms$/);
});

test('text is bounded in characters before tokenizing; tokenizing runs off the event loop', async () => {
  // 8 characters per token of context: 2048 → 16,384 characters
  const big = 'lorem ipsum '.repeat(40_000);
  for (const route of ['/v1/chat/completions', '/v1/tokenize']) {
    const t0 = performance.now();
    const r = await post(server.url, route, { model: 'tiny', messages: [{ role: 'user', content: big }] });
    const ms = performance.now() - t0;
    assert.equal(r.status, 400, route);
    const e = (await r.json()) as ErrorBody;
    assert.equal(e.error.code, 'context_length_exceeded');
    assert.match(e.error.message, /480000 characters of text; this server accepts at most 16384/);
    console.log(`${route}: 480,000 characters refused in ${ms.toFixed(0)} ms`);
  }
  // Within the limit, a costly text (CJK: one token a character) is tokenized on the preparation
  // worker: /health keeps answering meanwhile.
  const cjk = '漢字'.repeat(8000);
  const counting = post(server.url, '/v1/tokenize', { model: 'tiny', messages: [{ role: 'user', content: cjk }] });
  const worst = await slowestHealth(server.url, counting);
  const r = await counting;
  assert.equal(r.status, 200);
  assert.ok(((await r.json()) as { prompt_tokens: number }).prompt_tokens >= 16_000);
  console.log(`/health while 16,000 CJK characters were tokenized: slowest ${worst.toFixed(0)} ms`);
  assert.ok(worst < 1000, `health took ${worst} ms`);
});

test("pixel budgets are capped at the model's maximum by default; an image that cannot fit the context is refused before it is resized", async () => {
  // The demo model's processor allows at most this many pixels per image.
  const limit = (JSON.parse(fs.readFileSync(path.join(DEMO, 'preprocessor_config.json'), 'utf8')) as { size: { longest_edge: number } }).size.longest_edge;
  const demoEngine = new WorkerEngine(DEMO, { backend: 'auto' });
  const demo = await startServer({ engine: demoEngine, modelDir: DEMO, modelNames: ['demo'], port: 0 });
  try {
    await demoEngine.loaded;
    const png = dataUri(path.join(DEMO, 'example.png'), 'image/png');
    const ask = (extra: object, part: object = {}) =>
      post(demo.url, '/v1/chat/completions', {
        model: 'demo',
        max_tokens: 1,
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: png }, ...part }, { type: 'text', text: 'colour?' }] }],
        ...extra,
      });
    let r = await ask({ min_pixels: 16_000_000, max_pixels: 16_000_000 });
    assert.equal(r.status, 400);
    let e = (await r.json()) as ErrorBody;
    assert.equal(e.error.param, 'max_pixels');
    assert.match(e.error.message, new RegExp(`over the server's limit of ${limit} pixels`));
    r = await ask({ min_pixels: 16_000_000 });
    assert.equal(((await r.json()) as ErrorBody).error.param, 'min_pixels');
    r = await ask({}, { min_pixels: 16_000_000 });
    assert.equal(r.status, 400);
    e = (await r.json()) as ErrorBody;
    assert.equal(e.error.param, 'messages[0].content[0].min_pixels');
    r = await ask({});
    assert.equal(r.status, 200, await r.clone().text());
  } finally {
    await demo.close();
  }
  // The tiny model allows Qwen's 16.7M pixels per image, far more tokens than a 2048-token
  // context: the header says so, and the image is refused without being decoded or resized.
  const t0 = performance.now();
  const r = await post(server.url, '/v1/chat/completions', {
    model: 'tiny',
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: IMG_B } }, { type: 'text', text: 'x' }] }],
    min_pixels: 16_000_000,
    max_pixels: 16_000_000,
  });
  const e = (await r.json()) as ErrorBody;
  assert.equal(r.status, 400);
  assert.equal(e.error.code, 'context_length_exceeded');
  assert.match(e.error.message, /the prompt is at least \d+ tokens/);
  console.log(`16M-pixel image on a 2048-token context refused in ${(performance.now() - t0).toFixed(0)} ms`);
});

test('a slow media URL delays no other request: media is fetched before a request takes the model', async () => {
  const slow = await startDribbleHost(1000);
  const ac = new AbortController();
  try {
    let slowSettled = false;
    const stuck = post(
      server.url,
      '/v1/chat/completions',
      { model: 'tiny', max_tokens: 1, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: slow.url } }] }] },
      ac.signal,
    )
      .catch(() => undefined)
      .finally(() => (slowSettled = true));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    const r = await post(server.url, '/v1/chat/completions', { model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: 'quick' }] });
    const ms = performance.now() - t0;
    assert.equal(r.status, 200);
    assert.equal(slowSettled, false, 'the slow download should still be running');
    console.log(`a text request finished in ${ms.toFixed(0)} ms while a media URL dribbled one byte a second`);
    const h = await health(server.url);
    assert.equal(h.body.queue.preparing, 1);
    ac.abort();
    await stuck;
  } finally {
    await slow.close();
  }
});

test('/v1/tokenize is bounded: past the limit it answers 429, and its downloads run off the main thread', async () => {
  const slow = await startDribbleHost(1000);
  const ac = new AbortController();
  try {
    const body = { model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: slow.url } }] }] };
    // maxQueue 2: three previews at once are allowed, the fourth is refused
    const held = [0, 1, 2].map(() => post(server.url, '/v1/tokenize', body, ac.signal).catch(() => undefined));
    for (;;) {
      if ((await health(server.url)).body.queue.tokenizing === 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await post(server.url, '/v1/tokenize', body);
    assert.equal(r.status, 429);
    assert.equal(((await r.json()) as ErrorBody).error.code, 'queue_full');
    ac.abort();
    await Promise.all(held);
    for (;;) {
      if ((await health(server.url)).body.queue.tokenizing === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await slow.close();
  }
});

test('a dead inference worker: the request it held gets a clear 500, /health says 503 until the worker is back, then requests run', async () => {
  const res = await post(server.url, '/v1/chat/completions', { model: 'tiny', max_tokens: 1500, stream: true, messages: [{ role: 'user', content: 'Go on.' }] });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  let got = '';
  while ((got.match(/data: /g) ?? []).length < 3) got += new TextDecoder().decode((await reader.read()).value);
  // what a crash of the thread looks like from outside (a native fault, an out-of-memory kill)
  const model = (engine as unknown as { model: { worker: Worker } }).model;
  await model.worker.terminate();
  const events = await remainingEvents(reader, got);
  assert.equal(events.at(-1), '[DONE]');
  const err = JSON.parse(events.at(-2)!) as ErrorBody;
  assert.match(err.error.message, /inference worker exited/);
  const during = await health(server.url);
  assert.equal(during.status, 503);
  assert.equal(during.body.status, 'restarting');
  const refused = await post(server.url, '/v1/chat/completions', { model: 'tiny', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] });
  assert.equal(refused.status, 503);
  assert.equal(((await refused.json()) as ErrorBody).error.code, 'model_restarting');
  for (;;) {
    if ((await health(server.url)).status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await post(server.url, '/v1/chat/completions', { model: 'tiny', max_tokens: 2, messages: [{ role: 'user', content: 'again' }] });
  assert.equal(r.status, 200);
  assert.equal(engine.restarts, 1);
});

test('SIGTERM: a running stream ends with an error event and [DONE], a waiting request gets 503, new connections are refused, exit code 0', async () => {
  const sp = await startServeProcess({ model: TINY, args: ['--backend', 'ts', '--shutdown-grace', '1', '--max-queue', '2', '--parallel', '1'] });
  try {
    const body = (content: string) => ({ model: TINY, max_tokens: 1500, stream: true, messages: [{ role: 'user', content }] });
    const running = await post(sp.url, '/v1/chat/completions', body('first'));
    const reader = running.body!.getReader();
    let got = '';
    while ((got.match(/data: /g) ?? []).length < 2) got += new TextDecoder().decode((await reader.read()).value);
    const waiting = post(sp.url, '/v1/chat/completions', body('second'));
    for (;;) {
      if ((await health(sp.url)).body.queue.waiting === 1) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const exited = new Promise<number | null>((r) => sp.proc.once('exit', (code) => r(code)));
    sp.proc.kill('SIGTERM');
    const second = await waiting;
    assert.equal(second.status, 503);
    assert.equal(((await second.json()) as ErrorBody).error.code, 'shutting_down');
    const events = await remainingEvents(reader, got);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal((JSON.parse(events.at(-2)!) as ErrorBody).error.code, 'shutting_down');
    assert.equal(await exited, 0);
    await assert.rejects(fetch(`${sp.url}/health`));
  } finally {
    await sp.stop();
  }
});
