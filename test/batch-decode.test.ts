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
import { DecodeBatcher } from '../src/generate/batch.ts';
import { loadModelFromDir } from '../src/api/load-model.ts';
import { selectBackend } from '../src/kernels/select.ts';
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
      // every step's logits into the same arrays (as the batcher and generate keep them), refilled
      // with NaN first: a value not written by the step would show
      const V = m.cfg.text.vocabSize;
      const out = new Float32Array(next.length * V);
      const oneOut = new Float32Array(V);
      for (let step = 0; step < 4; step++) {
        const rows = m.decodeBatch(next, batched, deltas, step & 1 ? out.fill(NaN) : undefined);
        if (step & 1) assert.equal(rows, out, 'the logits are written into the array given');
        next.forEach((id, i) => {
          const one = m.decode(id, alone[i], deltas[i], step & 1 ? oneOut.fill(NaN) : undefined);
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

// prompt rows joining a pass with generated tokens: each part's last-row logits and its cache are
// what the sequence gets alone (prefill, decode); q4's int8 kernels make them bit-identical
for (const quant of [undefined, 'q4'] as const) {
  test(`forwardRows: prompt rests and generated tokens in one pass, each as alone (${quant ?? 'bf16'} weights)`, { skip: nativeSkip }, async () => {
    assert.ok(!skipReason, `CI=true and ${skipReason}`);
    const qvl = await Qwen3VL.fromPretrained(TINY, { backend: 'native', quant, kvType: 'f32' });
    const m = qvl.model;
    const same = (a: Float32Array, b: Float32Array, what: string) => {
      assert.ok(maxAbs(a, b) <= 1e-4, `${what}: differs by ${maxAbs(a, b)}`);
      if (quant === 'q4') assert.equal(Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)), 0, `${what}: not bit-identical`);
    };
    const [text, long, pic, talk] = await Promise.all(
      [user('Count to ten.'), user('A much longer question that makes this prompt several tokens longer than the first one is.'), user([img('image_b.png'), { type: 'text', text: 'What is this shape, and what colour is it?' }]), user('Hi')].map((p) => qvl.prepare(p)),
    );
    const caches: ReturnType<typeof m.newCache>[] = [];
    const cache = () => {
      const c = m.newCache();
      caches.push(c);
      return c;
    };
    try {
      // a sequence that is decoding (its next token 4242), alone and in the pass
      const decA = cache();
      const decB = cache();
      const delta = m.prefill(talk, decA).positions.delta;
      m.prefill(talk, decB);
      // the picture's prompt with its first rows (the image pads among them) already in the cache,
      // as a reused prefix leaves it: its text rest joins
      const k = Array.from(pic.ids).lastIndexOf(m.cfg.imageTokenId) + 3;
      const picHead = { ...pic, ids: Array.from(pic.ids).slice(0, k) };
      const picB = cache();
      m.prefill(picHead, picB);
      assert.equal(m.promptRows(pic, cache()), undefined, 'a rest with image pads must prefill (its picture is encoded there)');
      const textB = cache();
      const longB = cache();
      const rests = [m.promptRows(text, textB), m.promptRows(pic, picB), m.promptRows(long, longB)];
      assert.ok(rests.every(Boolean));
      assert.equal(rests[1]!.rows.ids.length, pic.ids.length - k);
      // the rope delta a rest reports is the whole prompt's
      assert.equal(rests[1]!.positions.delta, m.positions(pic).delta);
      const got = m.forwardRows([m.tokenRows(4242, decB, delta), ...rests.map((r) => r!.rows)]);
      const V = got.length / 4;
      const row = (i: number) => got.subarray(i * V, (i + 1) * V);
      same(row(0), m.decode(4242, decA, delta), 'the generated token');
      same(row(1), m.prefill(text, cache()).logits, 'a whole prompt');
      same(row(2), m.prefill(pic, cache()).logits, 'a prompt after a reused prefix');
      same(row(3), m.prefill(long, cache()).logits, 'a longer prompt');
      assert.deepEqual([decB, textB, picB, longB].map((c) => c.length), [talk.ids.length + 1, text.ids.length, pic.ids.length, long.ids.length]);
      assert.throws(() => m.forwardRows([m.tokenRows(1, decB, delta), m.tokenRows(2, decB, delta)]), /a cache appears twice/);
      assert.throws(() => m.forwardRows([]), /no rows/);
    } finally {
      for (const c of caches) c.release();
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
  let joined = 0;
  const forwardRows = shared.model.forwardRows.bind(shared.model);
  shared.model.forwardRows = (parts) => {
    sizes.push(parts.length);
    // the text-only prompts' rows go through these passes (the others prefill their media first)
    if (parts.some((p) => p.ids.length > 1)) joined++;
    return forwardRows(parts);
  };
  const got = await Promise.all(jobs.map((j) => shared.chat(j.messages, j.opts(shared))));
  got.forEach((g, i) => {
    assert.deepEqual(g.tokenIds, want[i].tokenIds, `job ${i}: tokens`);
    assert.equal(g.text, want[i].text, `job ${i}: text`);
    assert.equal(g.finishReason, want[i].finishReason, `job ${i}: finish reason`);
    assert.deepEqual(g.usage, want[i].usage, `job ${i}: usage`);
  });
  assert.ok(Math.max(...sizes) === 4, `at most 4 run together and 4 did at some step: ${[...new Set(sizes)]}`);
  assert.ok(joined > 0, 'no prompt joined a pass');
  assert.equal(shared.batcher.active + shared.batcher.queued, 0, 'every sequence left the batch');
  // every KV block went back to the pool
  assert.equal(shared.model.kvPool().stats.used, 0);
});

test('prompts that arrive together are computed in one pass; longer ones, and joinRows 0, prefill alone', { skip: nativeSkip, timeout: 60_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const q = await Qwen3VL.fromPretrained(TINY, { backend: 'native', parallel: 4 });
  const prompts = [user('One two three.'), user('Four five six.'), user('Seven eight nine.'), user('Ten.')];
  const opts = { maxNewTokens: 6, temperature: 0 };
  const want: ChatResult[] = [];
  for (const p of prompts) want.push(await q.chat(p, opts));
  const passes: number[][] = [];
  let prefills = 0;
  const forwardRows = q.model.forwardRows.bind(q.model);
  q.model.forwardRows = (parts) => {
    passes.push(parts.map((p) => p.ids.length));
    return forwardRows(parts);
  };
  const prefillRun = q.model.prefillRun.bind(q.model);
  q.model.prefillRun = (...a) => {
    prefills++;
    return prefillRun(...a);
  };
  const run = async () => {
    passes.length = 0;
    prefills = 0;
    const got = await Promise.all(prompts.map((p) => q.chat(p, opts)));
    got.forEach((g, i) => assert.deepEqual(g.tokenIds, want[i].tokenIds, `prompt ${i}`));
  };
  const joinedBefore = q.stats().joinedPrompts;
  await run();
  const lengths = (await Promise.all(prompts.map((p) => q.prepare(p)))).map((p) => p.ids.length);
  assert.deepEqual(passes[0], lengths, 'the four prompts make the first pass');
  assert.equal(q.stats().joinedPrompts - joinedBefore, 4);
  assert.ok(passes.slice(1).every((p) => p.length <= 4 && p.every((n) => n === 1)), `then one token each: ${JSON.stringify(passes)}`);
  assert.equal(prefills, 0);
  // while a stream decodes, a budget smaller than two prompts lets one prompt join each pass
  q.batcher.joinRows = lengths[0] + 1;
  passes.length = 0;
  const first = q.stream(prompts[0], opts)[Symbol.asyncIterator]();
  await first.next();
  const later = Promise.all(prompts.slice(1).map((p) => q.chat(p, opts)));
  while (!(await first.next()).done);
  (await later).forEach((g, i) => assert.deepEqual(g.tokenIds, want[i + 1].tokenIds, `prompt ${i + 1} joining`));
  const joined = passes.slice(1).map((p) => p.filter((n) => n > 1).length);
  assert.ok(joined.every((n) => n <= 1) && joined.filter((n) => n === 1).length === 3, `one prompt per pass: ${JSON.stringify(passes)}`);
  assert.equal(prefills, 0);
  // a prompt longer than the budget prefills on its own; so does every prompt with 0
  q.batcher.joinRows = lengths[0] - 1;
  await run();
  assert.equal(prefills, lengths.filter((n) => n > lengths[0] - 1).length);
  q.batcher.joinRows = 0;
  const joinedThen = q.stats().joinedPrompts;
  await run();
  assert.equal(prefills, 4);
  assert.equal(q.stats().joinedPrompts, joinedThen);
  assert.ok(passes.every((p) => p.every((n) => n === 1)));
  assert.equal(q.model.kvPool().stats.used, 0);
  assert.throws(() => new DecodeBatcher(q.model, { joinRows: -1 }), (e: unknown) => isQvlError(e, 'OPTION_INVALID'));
});

test('a KV pool with no room for a sequence ends that sequence only; the one beside it answers as alone', { skip: nativeSkip, timeout: 60_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const { backend } = await selectBackend('native', {});
  const probe = loadModelFromDir(TINY, { backend, kv: { blockTokens: 16, type: 'f32' } });
  const blockBytes = probe.kvPool().layout.blockBytes;
  // 4 blocks of 16 positions in all: each 12-token prompt with 40 answer tokens needs 4 alone
  const model = loadModelFromDir(TINY, { backend, kv: { blockTokens: 16, type: 'f32', maxBytes: 4 * blockBytes } });
  const prompts = [0, 1].map((k) => ({ ids: Int32Array.from({ length: 12 }, (_, i) => 1000 + 97 * i + 13 * k) }));
  const opts = { maxNewTokens: 40, eosTokenIds: [], temperature: 0 };
  const batcher = new DecodeBatcher(model, { maxParallel: 2 });
  const alone: number[][] = [];
  for (const p of prompts) alone.push((await batcher.submit(p, opts).result).tokens);
  assert.deepEqual(alone.map((t) => t.length), [40, 40]);
  // together they outgrow the pool (2 blocks each, then a third): the first to ask fails alone
  const both = await Promise.allSettled(prompts.map((p) => batcher.submit(p, opts).result));
  const failed = both.filter((r) => r.status === 'rejected');
  assert.equal(failed.length, 1, `exactly one sequence ends: ${both.map((r) => r.status)}`);
  assert.ok(isQvlError((failed[0] as PromiseRejectedResult).reason, 'OUT_OF_MEMORY'));
  const k = both.findIndex((r) => r.status === 'fulfilled');
  assert.deepEqual((both[k] as PromiseFulfilledResult<{ tokens: number[] }>).value.tokens, alone[k]);
  assert.equal(model.kvPool().stats.used, 0);
});

test('an abort in the middle of a batch, or before a joining prompt\'s pass, ends that answer only; the others are unchanged', { skip: nativeSkip, timeout: 60_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const q = await Qwen3VL.fromPretrained(TINY, { backend: 'native', parallel: 3 });
  const prompts = [user('One two three.'), user('Four five six.'), user('Seven eight nine.')];
  const opts = { maxNewTokens: 30, temperature: 0 };
  const want: ChatResult[] = [];
  for (const p of prompts) want.push(await q.chat(p, opts));
  const besides = async (cancelled: Promise<unknown>, others: Promise<ChatResult[]>) => {
    await assert.rejects(cancelled, (e: unknown) => isQvlError(e, 'ABORTED'));
    const [a, c] = await others;
    assert.deepEqual(a.tokenIds, want[0].tokenIds);
    assert.deepEqual(c.tokenIds, want[2].tokenIds);
    assert.equal(q.model.kvPool().stats.used, 0);
  };
  // after its third token
  const ac = new AbortController();
  let seen = 0;
  const victim = q.stream(prompts[1], { ...opts, signal: ac.signal });
  const consume = (async () => {
    for await (const _ of victim) if (++seen === 3) ac.abort();
  })();
  await besides(consume, Promise.all([q.chat(prompts[0], opts), q.chat(prompts[2], opts)]));
  // cancelled while its prompt waits to join: a budget of one prompt per pass, and the other
  // prompt submitted first takes it
  q.batcher.joinRows = Math.max(...(await Promise.all(prompts.map((p) => q.prepare(p)))).map((p) => p.ids.length));
  const [prep1, prep2] = await Promise.all([q.prepare(prompts[1]), q.prepare(prompts[2])]);
  const first = q.stream(prompts[0], opts)[Symbol.asyncIterator]();
  const firstTokens: string[] = [];
  firstTokens.push((await first.next()).value as string);
  let promptParts = 0;
  const forwardRows = q.model.forwardRows.bind(q.model);
  q.model.forwardRows = (parts) => {
    promptParts += parts.filter((p) => p.ids.length > 1).length;
    return forwardRows(parts);
  };
  const third = (async () => {
    const g = q.generateText(prep2, opts);
    for (;;) {
      const r = await g.next();
      if (r.done) return r.value;
    }
  })();
  const ac2 = new AbortController();
  const pending = q.generateText(prep1, { ...opts, signal: ac2.signal }).next();
  // the step that gave this token took the third prompt's rows; the second still waits
  firstTokens.push((await first.next()).value as string);
  ac2.abort();
  await assert.rejects(pending, (e: unknown) => isQvlError(e, 'ABORTED'));
  assert.deepEqual((await third).tokenIds, want[2].tokenIds);
  for (let r = await first.next(); !r.done; r = await first.next()) firstTokens.push(r.value as string);
  assert.equal(firstTokens.join(''), want[0].text);
  assert.equal(promptParts, 1, 'the cancelled prompt was computed');
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
