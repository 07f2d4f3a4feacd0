/**
 * Continuous batching: sequences decoded together give what each gives alone. At the model level
 * (one decode step for several caches against one step per cache) and through the library
 * (concurrent chats of mixed kinds: text, image, video frames, JSON-constrained, stop strings,
 * sampling with a seed, different lengths), on the native backend with float and q4 weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Qwen3VL, type ChatOptions, type ChatResult } from '../src/api/qwen3vl.ts';
import { createConstraint } from '../src/generate/parse/json-constraint.ts';
import { isQvlError } from '../src/errors.ts';
import { skipReason } from './native-util.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const img = (name: string) => ({ type: 'image', image: path.join(TINY, name) });
const frames = Array.from({ length: 8 }, (_, i) => path.join(TINY, `video_frame_${i}.png`));
const nativeSkip = process.env.CI === 'true' ? false : skipReason;
const user = (content: unknown) => [{ role: 'user', content }];

function maxAbs(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// q4 mode quantizes every matrix, the head too (q8), and the int8 kernels treat rows independently: bit-identical rows
for (const quant of [undefined, 'q4'] as const) {
  test(`decodeBatch: each row equals that sequence's own decode step (${quant ?? 'bf16'} weights)`, { skip: nativeSkip }, async () => {
    assert.ok(!skipReason, `CI=true and ${skipReason}`);
    const qvl = await Qwen3VL.fromPretrained(TINY, { backend: 'native', quant, kvType: 'f32' });
    const m = qvl.model;
    const prompts = [
      user('Count to ten.'),
      user([img('image_b.png'), { type: 'text', text: 'What is this?' }]),
      user([{ type: 'video', video: frames, fps: 2 }, { type: 'text', text: 'What happens?' }]),
      user('A much longer question that makes this prompt several tokens longer than the first one is.'),
      user([img('image_c1.png'), img('image_c2.png'), { type: 'text', text: 'Compare.' }]),
      user('Hi'),
      user('Name three colours.'),
      user('And two more, please?'),
    ];
    // 8 rows: the widest batched pass of the dense and int8 GEMVs
    const prepared = await Promise.all(prompts.map((p) => qvl.prepare(p)));
    // two copies of every sequence: one decoded alone, one in the batch
    const alone = prepared.map(() => m.newCache());
    const batched = prepared.map(() => m.newCache());
    const deltas: number[] = [];
    const next: number[] = [];
    prepared.forEach((p, i) => {
      const a = m.prefill(p, alone[i]);
      m.prefill(p, batched[i]);
      deltas.push(a.positions.delta);
      next.push(1000 + 37 * i);
    });
    try {
      let worst = 0;
      for (let step = 0; step < 4; step++) {
        const rows = m.decodeBatch(next, batched, deltas);
        const V = rows.length / next.length;
        next.forEach((id, i) => {
          const one = m.decode(id, alone[i], deltas[i]);
          const row = rows.subarray(i * V, (i + 1) * V);
          worst = Math.max(worst, maxAbs(row, one));
          if (quant === 'q4') assert.equal(Buffer.compare(Buffer.from(row.buffer, row.byteOffset, row.byteLength), Buffer.from(one.buffer)), 0, `q4 row ${i} step ${step} is not bit-identical`);
        });
        next.forEach((_, i) => (next[i] = (next[i] * 7 + step) % 150000));
      }
      assert.ok(worst <= 1e-4, `batched logits differ from one-at-a-time by ${worst}`);
      assert.deepEqual(
        batched.map((c) => c.length),
        alone.map((c) => c.length),
      );
    } finally {
      for (const c of [...alone, ...batched]) c.release();
    }
  });
}

test('concurrent chats share decode steps and answer exactly what each answers alone', { skip: nativeSkip, timeout: 120_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const solo = await Qwen3VL.fromPretrained(TINY, { backend: 'native', parallel: 1 });
  const shared = await Qwen3VL.fromPretrained(TINY, { backend: 'native', parallel: 4 });
  const schema = { type: 'object', properties: { colour: { enum: ['red', 'blue'] }, n: { type: 'integer' } }, required: ['colour', 'n'] };
  const jobs: Array<{ messages: unknown; opts: (q: Qwen3VL) => ChatOptions }> = [
    { messages: user('Tell me a story.'), opts: () => ({ maxNewTokens: 40, temperature: 0 }) },
    { messages: user([img('image_b.png'), { type: 'text', text: 'What is this?' }]), opts: () => ({ maxNewTokens: 12, temperature: 0 }) },
    { messages: user([{ type: 'video', video: frames, fps: 2 }, { type: 'text', text: 'What happens?' }]), opts: () => ({ maxNewTokens: 25, temperature: 0 }) },
    {
      messages: user('Reply in JSON.'),
      opts: (q) => ({ maxNewTokens: 60, seed: 5, logitsProcessor: createConstraint(q.tokenizer, { kind: 'json_schema', schema }, q.generation.eosTokenIds).logitsProcessor() }),
    },
    { messages: user('Say something.'), opts: () => ({ maxNewTokens: 30, temperature: 0.8, seed: 11, repetitionPenalty: 1.1 }) },
    { messages: user('Write words.'), opts: () => ({ maxNewTokens: 30, temperature: 0, stop: [' the', 'a'] }) },
  ];
  const want: ChatResult[] = [];
  for (const j of jobs) want.push(await solo.chat(j.messages, j.opts(solo)));
  // spy on the batch sizes the shared model runs
  const sizes: number[] = [];
  const decodeBatch = shared.model.decodeBatch.bind(shared.model);
  shared.model.decodeBatch = (ids, caches, deltas) => {
    sizes.push(ids.length);
    return decodeBatch(ids, caches, deltas);
  };
  const got = await Promise.all(jobs.map((j) => shared.chat(j.messages, j.opts(shared))));
  got.forEach((g, i) => {
    assert.deepEqual(g.tokenIds, want[i].tokenIds, `job ${i}: tokens`);
    assert.equal(g.text, want[i].text, `job ${i}: text`);
    assert.equal(g.finishReason, want[i].finishReason, `job ${i}: finish reason`);
    assert.deepEqual(g.usage, want[i].usage, `job ${i}: usage`);
  });
  assert.ok(Math.max(...sizes) === 4, `at most 4 run together and 4 did at some step: ${[...new Set(sizes)]}`);
  assert.equal(shared.batcher.active + shared.batcher.queued, 0, 'every sequence left the batch');
  // every KV block went back to the pool
  assert.equal(shared.model.kvPool().stats.used, 0);
});

test('an abort in the middle of a batch ends that answer only; the others are unchanged', { skip: nativeSkip, timeout: 60_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const q = await Qwen3VL.fromPretrained(TINY, { backend: 'native', parallel: 3 });
  const prompts = [user('One two three.'), user('Four five six.'), user('Seven eight nine.')];
  const opts = { maxNewTokens: 30, temperature: 0 };
  const want: ChatResult[] = [];
  for (const p of prompts) want.push(await q.chat(p, opts));
  const ac = new AbortController();
  let seen = 0;
  const victim = q.stream(prompts[1], { ...opts, signal: ac.signal });
  const consume = (async () => {
    for await (const _ of victim) if (++seen === 3) ac.abort();
  })();
  const others = Promise.all([q.chat(prompts[0], opts), q.chat(prompts[2], opts)]);
  await assert.rejects(consume, (e: unknown) => isQvlError(e, 'ABORTED'));
  const [a, c] = await others;
  assert.deepEqual(a.tokenIds, want[0].tokenIds);
  assert.deepEqual(c.tokenIds, want[2].tokenIds);
  assert.equal(q.model.kvPool().stats.used, 0);
});

test('a worker with parallel 3 runs three answers at once, each as it answers alone', { skip: nativeSkip, timeout: 120_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const { WorkerModel } = await import('../src/api/worker-host.ts');
  const w = await WorkerModel.load(TINY, { backend: 'native', parallel: 3 });
  try {
    const prompts = [user('Alpha beta.'), user([img('image_b.png'), { type: 'text', text: 'Colour?' }]), user('Gamma delta epsilon.')];
    const opts = { maxNewTokens: 20, temperature: 0 };
    const want: ChatResult[] = [];
    for (const p of prompts) want.push(await w.chat(p, opts));
    const events: string[] = [];
    const got = await Promise.all(
      prompts.map(async (p, i) => {
        const s = w.stream(p, opts);
        void s.prompt.then(() => events.push(`start ${i}`));
        for await (const _ of s) {
          // collected in the result
        }
        events.push(`done ${i}`);
        return s.result;
      }),
    );
    got.forEach((g, i) => assert.deepEqual(g.tokenIds, want[i]!.tokenIds, `answer ${i}`));
    // all three started before the first finished: they ran together
    assert.ok(events.indexOf('start 2') < events.findIndex((e) => e.startsWith('done')), events.join(', '));
  } finally {
    await w.close();
  }
});

test('the server scheduler: parallel slots, then a line, then 429 past the queue', async () => {
  const { Scheduler } = await import('../src/server/scheduler.ts');
  const s = new Scheduler(1, 2);
  const a = s.admit();
  const b = s.admit();
  const c = s.admit();
  assert.throws(() => s.admit(), /2 running, 1 waiting is the limit/);
  const ra = await a.model();
  await b.model();
  let third = false;
  const rc = c.model().then((r) => ((third = true), r));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual([s.running, s.queued, third], [2, 1, false]);
  ra();
  (await rc)();
  assert.equal(third, true);
});

test('a prompt prefills in steps (vision blocks, decoder layers) between the running answers\' decode steps', { skip: nativeSkip, timeout: 60_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const q = await Qwen3VL.fromPretrained(TINY, { backend: 'native', parallel: 2 });
  // the tiny model's steps take microseconds: no time slice, one prefill step per decode step
  q.batcher.prefillSliceMs = 0;
  const log: string[] = [];
  const prefillRun = q.model.prefillRun.bind(q.model);
  q.model.prefillRun = function* (inputs, cache, opts) {
    const tag = inputs.imageGrids?.length ? 'B' : 'A';
    const r = yield* (function* () {
      const g = prefillRun(inputs, cache, opts);
      for (;;) {
        const s = g.next();
        if (s.done) return s.value;
        log.push(`${tag} prefill step`);
        yield;
      }
    })();
    return r;
  };
  const a = q.stream(user('Count slowly.'), { maxNewTokens: 40, temperature: 0 });
  let b: Promise<unknown> | undefined;
  let n = 0;
  for await (const _ of a) {
    log.push('A token');
    if (++n === 2) b = q.chat(user([img('image_b.png'), { type: 'text', text: 'What is this?' }]), { maxNewTokens: 4, temperature: 0 });
  }
  await b;
  const first = log.indexOf('B prefill step');
  const last = log.lastIndexOf('B prefill step');
  const steps = log.filter((e) => e === 'B prefill step').length;
  const cfg = q.model.cfg;
  assert.ok(steps >= cfg.vision.depth + cfg.text.numLayers, `B prefilled in ${steps} steps`);
  assert.ok(log.slice(first, last).includes('A token'), `A made no progress while B prefilled: ${log.join(', ')}`);
});
