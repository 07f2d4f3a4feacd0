/**
 * GET /metrics over a scripted engine: the exposition parses, per-request counters add up the
 * engine's usages, the line's gauges follow held requests, the engine's counters pass through,
 * and two servers in one process keep their own counts.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { ChatResult } from '../src/api/qwen3vl.ts';
import type { PromptCost } from '../src/api/prompt-cost.ts';
import type { PreparedPrompt } from '../src/api/prompt.ts';
import type { WorkerCallOptions, WorkerChatStream } from '../src/api/worker-host.ts';
import type { EngineStats } from '../src/api/worker-protocol.ts';
import { createApp } from '../src/server/app.ts';
import type { EngineState, Preparer, ServerEngine } from '../src/server/engine.ts';
import { startServer, type RunningServer } from '../src/server/serve.ts';
import { readSse } from './server-util.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');

const STATS: EngineStats = {
  running: 2,
  waiting: 3,
  kvBlocksUsed: 40,
  kvBlocksAllocated: 128,
  kvBytes: 8_388_608,
  decodeSteps: 100,
  decodeRows: 250,
  cachedPromptTokens: 30,
  computedPromptTokens: 90,
  joinedPrompts: 7,
  visionLookups: 8,
  visionHits: 6,
  visionCacheBytes: 3_145_728,
};

interface Answer {
  text: string;
  finishReason: ChatResult['finishReason'];
  promptTokens: number;
  cachedTokens?: number;
  completionTokens: number;
}

/** Answers scripted usages; while `hold` is set, generations wait until `open()` is called. */
class FakeEngine implements ServerEngine, Preparer {
  current: EngineState = 'ready';
  report: EngineStats | undefined = STATS;
  answers: Answer[] = [];
  hold = false;
  private gates: (() => void)[] = [];
  started = 0;
  async prepare(): Promise<PreparedPrompt> {
    return { text: '', ids: new Int32Array(5), imageGrids: [], videoGrids: [], media: [] };
  }
  async cost(): Promise<PromptCost> {
    return { promptTokens: 5, mediaTokens: 0, items: [] };
  }
  state() {
    return this.current;
  }
  failure() {
    return undefined;
  }
  info() {
    return undefined;
  }
  stats() {
    return this.report;
  }
  async close() {}
  open() {
    for (const g of this.gates.splice(0)) g();
  }
  streamPrepared(_p: PreparedPrompt, _opts: WorkerCallOptions): WorkerChatStream {
    this.started++;
    const a = this.answers.shift() ?? { text: 'ok', finishReason: 'stop', promptTokens: 1, completionTokens: 1 };
    const gate = this.hold ? new Promise<void>((r) => this.gates.push(r)) : Promise.resolve();
    let resolve!: (r: ChatResult) => void;
    const result = new Promise<ChatResult>((r) => (resolve = r));
    const prompt = Promise.resolve({ promptTokens: a.promptTokens, media: [], startsInThink: false });
    async function* run(): AsyncGenerator<string> {
      await gate;
      yield a.text;
      resolve({
        text: a.text,
        tokenIds: [],
        finishReason: a.finishReason,
        usage: { promptTokens: a.promptTokens, cachedTokens: a.cachedTokens, completionTokens: a.completionTokens, totalTokens: a.promptTokens + a.completionTokens },
        timings: { prefillMs: 0, decodeMs: 0 },
        media: [],
        output: { content: a.text, toolCalls: [] },
      });
    }
    const it = run();
    return { [Symbol.asyncIterator]: () => it, prompt, result };
  }
}

interface Family {
  help?: string;
  type?: string;
  samples: { name: string; labels: Record<string, string>; value: number }[];
}

/** Parses the Prometheus text format into families; every sample must belong to a HELP/TYPE'd family. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const fam = (name: string) => families.get(name) ?? families.set(name, { samples: [] }).get(name)!;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# (HELP|TYPE) (\w+) (.*)$/.exec(line);
    if (m) {
      if (m[1] === 'HELP') fam(m[2]).help = m[3];
      else fam(m[2]).type = m[3];
      continue;
    }
    m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    const value = Number(m[3]);
    assert.ok(!Number.isNaN(value), line);
    const base = [...families.keys()].find((f) => m![1] === f || (families.get(f)!.type === 'histogram' && /^_(bucket|sum|count)$/.test(m![1].slice(f.length)) && m![1].startsWith(f)));
    assert.ok(base, `sample ${m[1]} has no HELP/TYPE before it`);
    fam(base).samples.push({ name: m[1], labels, value });
  }
  for (const [name, f] of families) {
    assert.ok(f.help, `${name} has no HELP`);
    assert.ok(f.type, `${name} has no TYPE`);
    assert.ok(name.startsWith('qvl_'), `${name} has no qvl_ prefix`);
  }
  return families;
}

/** The value of `name` (with `labels`, if given); undefined when absent. */
function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of families.values()) {
    const s = f.samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
    if (s) return s.value;
  }
  return undefined;
}

async function scrape(server: RunningServer): Promise<Map<string, Family>> {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), server.context.metrics.contentType);
  return parseExposition(await res.text());
}

const servers: RunningServer[] = [];
async function start(engine: FakeEngine): Promise<RunningServer> {
  const s = await startServer({ engine, preparer: engine, modelDir: TINY, modelNames: ['m'], port: 0, limits: { parallel: 1, maxQueue: 4 } });
  servers.push(s);
  return s;
}
after(() => Promise.all(servers.map((s) => s.close())));

const chat = (server: RunningServer, body: Record<string, unknown>) =>
  fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...body }) });

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), 'timed out waiting');
}

test("every metric has HELP and TYPE, the content type is the registry's, and /metrics answers while loading", async () => {
  const engine = new FakeEngine();
  engine.current = 'loading';
  engine.report = undefined;
  const server = await start(engine);
  const m = await scrape(server);
  for (const name of [
    'qvl_requests_running',
    'qvl_requests_waiting',
    'qvl_requests_preparing',
    'qvl_sequences_running',
    'qvl_sequences_waiting',
    'qvl_kv_blocks_used',
    'qvl_kv_blocks_allocated',
    'qvl_kv_bytes',
    'qvl_vision_cache_bytes',
    'qvl_generation_tokens_per_second',
    'qvl_prefix_cache_hit_ratio',
    'qvl_vision_cache_hit_ratio',
  ])
    assert.equal(m.get(name)?.type, 'gauge', name);
  for (const name of [
    'qvl_requests_total',
    'qvl_prompt_tokens_total',
    'qvl_generation_tokens_total',
    'qvl_prompt_tokens_cached_total',
    'qvl_prefill_tokens_total',
    'qvl_decode_steps_total',
    'qvl_decode_rows_total',
    'qvl_prompts_joined_total',
    'qvl_vision_cache_lookups_total',
    'qvl_vision_cache_hits_total',
  ])
    assert.equal(m.get(name)?.type, 'counter', name);
  for (const name of ['qvl_time_to_first_token_seconds', 'qvl_request_duration_seconds']) assert.equal(m.get(name)?.type, 'histogram', name);
  assert.match(server.context.metrics.contentType, /^text\/plain/);
  // no engine report yet: the model's figures read 0
  assert.equal(value(m, 'qvl_kv_blocks_used'), 0);
  assert.equal(value(m, 'qvl_decode_steps_total'), 0);
  assert.equal(value(m, 'qvl_vision_cache_hit_ratio'), 0);
  // a refused request is counted; /metrics and /health are not requests
  assert.equal((await chat(server, {})).status, 503);
  await fetch(`${server.url}/health`);
  const again = await scrape(server);
  assert.equal(value(again, 'qvl_requests_total', { outcome: 'error', status: '5xx' }), 1);
  assert.equal(m.get('qvl_requests_total')!.samples.length, 0);
  assert.equal(again.get('qvl_requests_total')!.samples.length, 1);
  // and while the server is stopping (the listener is closed by then: ask the app itself)
  const res = await createApp(server.context, () => {}, () => true).request('/metrics');
  assert.equal(res.status, 200);
  parseExposition(await res.text());
});

test('two requests: line gauges while they are held, then token counters, outcomes and engine stats', async () => {
  const engine = new FakeEngine();
  const server = await start(engine);
  engine.hold = true;
  engine.answers = [
    { text: 'first answer', finishReason: 'stop', promptTokens: 11, cachedTokens: 4, completionTokens: 7 },
    { text: 'second', finishReason: 'length', promptTokens: 13, cachedTokens: 8, completionTokens: 5 },
  ];
  const a = chat(server, {});
  await until(() => engine.started === 1);
  const b = chat(server, { stream: true, stream_options: { include_usage: true } });
  await until(() => server.context.scheduler.queued === 1);
  let m = await scrape(server);
  assert.equal(value(m, 'qvl_requests_running'), 1);
  assert.equal(value(m, 'qvl_requests_waiting'), 1);
  assert.equal(value(m, 'qvl_requests_preparing'), 0);
  assert.equal(value(m, 'qvl_requests_total', { outcome: 'stop' }), undefined);

  engine.hold = false;
  engine.open();
  const ra = await a;
  assert.equal(ra.status, 200);
  const body = (await ra.json()) as { usage: { prompt_tokens: number; completion_tokens: number } };
  assert.deepEqual([body.usage.prompt_tokens, body.usage.completion_tokens], [11, 7]);
  const rb = await b;
  const events = await readSse(rb);
  assert.equal(events.at(-1), '[DONE]');
  assert.equal(((JSON.parse(events.at(-2)!) as { usage: { completion_tokens: number } }).usage.completion_tokens), 5);
  // an invalid request counts as a 4xx error
  assert.equal((await chat(server, { model: 'nope' })).status, 404);

  m = await scrape(server);
  assert.equal(value(m, 'qvl_requests_running'), 0);
  assert.equal(value(m, 'qvl_requests_waiting'), 0);
  assert.equal(value(m, 'qvl_prompt_tokens_total'), 11 + 13);
  assert.equal(value(m, 'qvl_generation_tokens_total'), 7 + 5);
  assert.equal(value(m, 'qvl_prompt_tokens_cached_total'), 4 + 8);
  assert.equal(value(m, 'qvl_prefix_cache_hit_ratio'), 12 / 24);
  assert.equal(value(m, 'qvl_requests_total', { outcome: 'stop', status: '2xx' }), 1);
  assert.equal(value(m, 'qvl_requests_total', { outcome: 'length', status: '2xx' }), 1);
  assert.equal(value(m, 'qvl_requests_total', { outcome: 'error', status: '4xx' }), 1);
  assert.equal(value(m, 'qvl_request_duration_seconds_count'), 3);
  assert.equal(value(m, 'qvl_time_to_first_token_seconds_count'), 2);
  const tps = value(m, 'qvl_generation_tokens_per_second')!;
  assert.ok(tps > 0 && tps <= 1.2 + 1e-9, `tokens/s ${tps}`);
  // the engine's report, passed through
  assert.equal(value(m, 'qvl_sequences_running'), STATS.running);
  assert.equal(value(m, 'qvl_sequences_waiting'), STATS.waiting);
  assert.equal(value(m, 'qvl_kv_blocks_used'), STATS.kvBlocksUsed);
  assert.equal(value(m, 'qvl_kv_blocks_allocated'), STATS.kvBlocksAllocated);
  assert.equal(value(m, 'qvl_kv_bytes'), STATS.kvBytes);
  assert.equal(value(m, 'qvl_decode_steps_total'), STATS.decodeSteps);
  assert.equal(value(m, 'qvl_decode_rows_total'), STATS.decodeRows);
  assert.equal(value(m, 'qvl_prompts_joined_total'), STATS.joinedPrompts);
  assert.equal(value(m, 'qvl_prefill_tokens_total'), STATS.computedPromptTokens);
  assert.equal(value(m, 'qvl_vision_cache_lookups_total'), STATS.visionLookups);
  assert.equal(value(m, 'qvl_vision_cache_hits_total'), STATS.visionHits);
  assert.equal(value(m, 'qvl_vision_cache_bytes'), STATS.visionCacheBytes);
  assert.equal(value(m, 'qvl_vision_cache_hit_ratio'), 6 / 8);
  // read at scrape time, not stored
  engine.report = { ...STATS, decodeSteps: 101, kvBlocksUsed: 0 };
  m = await scrape(server);
  assert.equal(value(m, 'qvl_decode_steps_total'), 101);
  assert.equal(value(m, 'qvl_kv_blocks_used'), 0);
});

test('two servers in one process keep separate counts', async () => {
  const e1 = new FakeEngine();
  const e2 = new FakeEngine();
  e2.report = { ...STATS, kvBytes: 1 };
  const s1 = await start(e1);
  const s2 = await start(e2);
  e1.answers = [{ text: 'x', finishReason: 'stop', promptTokens: 3, completionTokens: 2 }];
  e2.answers = [
    { text: 'y', finishReason: 'stop', promptTokens: 4, completionTokens: 1 },
    { text: 'z', finishReason: 'stop', promptTokens: 6, completionTokens: 9 },
  ];
  assert.equal((await chat(s1, {})).status, 200);
  assert.equal((await chat(s2, {})).status, 200);
  assert.equal((await chat(s2, {})).status, 200);
  const m1 = await scrape(s1);
  const m2 = await scrape(s2);
  assert.equal(value(m1, 'qvl_requests_total', { outcome: 'stop' }), 1);
  assert.equal(value(m2, 'qvl_requests_total', { outcome: 'stop' }), 2);
  assert.equal(value(m1, 'qvl_prompt_tokens_total'), 3);
  assert.equal(value(m2, 'qvl_prompt_tokens_total'), 10);
  assert.equal(value(m1, 'qvl_generation_tokens_total'), 2);
  assert.equal(value(m2, 'qvl_generation_tokens_total'), 10);
  assert.equal(value(m1, 'qvl_kv_bytes'), STATS.kvBytes);
  assert.equal(value(m2, 'qvl_kv_bytes'), 1);
});

test('/v1/models is unchanged by the metrics', async () => {
  const server = await start(new FakeEngine());
  const res = await fetch(`${server.url}/v1/models`);
  const body = (await res.json()) as { object: string; data: { id: string; object: string; owned_by: string }[] };
  assert.equal(body.object, 'list');
  assert.deepEqual(
    body.data.map((d) => [d.id, d.object, d.owned_by]),
    [['m', 'model', 'qvl']],
  );
  assert.deepEqual(Object.keys(body.data[0]).sort(), ['created', 'id', 'object', 'owned_by']);
});
