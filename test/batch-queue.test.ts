/**
 * Batches against a real redis-server and real `qvl worker` processes on the demo model: submit,
 * validation, progress and results through the CLI; a worker SIGKILLed mid-job; duplicate
 * delivery; cancel; failed requests; the OpenAI Batch routes of `qvl serve --redis` through the
 * official client; Redis restarted during a run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import { jobId } from '../src/batch/queue.ts';
import { BatchService } from '../src/batch/service.ts';
import { resolveLimits } from '../src/server/limits.ts';
import { redisSkip, startRedisServer, type RedisServer } from './helpers/redis-server.ts';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';

const skip = redisSkip();
const ROOT = path.resolve(import.meta.dirname, '..');
const QVL = path.join(ROOT, 'bin', 'qvl.mjs');
const DATA = path.join(ROOT, 'datasets', 'demo-heldout');
const TMP = mkdtempSync(path.join(os.tmpdir(), 'qvl-batch-test-'));

let redis: RedisServer;
let svc: BatchService;
const workers: WorkerProcess[] = [];

// ---------------------------------------------------------------- requests

type Body = Record<string, unknown>;

/** Picture questions from the held-out set, media as absolute paths, greedy. */
function datasetBodies(n: number): Body[] {
  const items = readFileSync(path.join(DATA, 'items.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { task: string; messages: { content: { type: string; image?: string }[] }[] })
    .filter((i) => i.task !== 'video_time');
  return Array.from({ length: n }, (_, k) => {
    const messages = structuredClone(items[k % items.length]!.messages);
    for (const m of messages) for (const p of m.content) if (p.image) p.image = path.join(DATA, p.image);
    return { model: 'demo', messages, temperature: 0, max_tokens: 48 };
  });
}

/** A request that takes seconds: the schema forces a long string before the model may stop. */
function slowBody(): Body {
  return {
    model: 'demo',
    messages: [{ role: 'user', content: [{ type: 'image', image: path.join(ROOT, 'models', 'demo', 'example.png') }, { type: 'text', text: 'What colour is the shape?' }] }],
    temperature: 0,
    max_tokens: 220,
    response_format: { type: 'json_schema', json_schema: { name: 'slow', schema: { type: 'object', properties: { a: { type: 'string', minLength: 200 } }, required: ['a'] } } },
  };
}

/** Submits from this process (what `qvl batch submit` does, without its start-up time). */
function submit(file: string) {
  const lines = async function* () {
    yield* readFileSync(file, 'utf8').trim().split('\n');
  };
  return svc.submit(lines, { rules: { limits: resolveLimits({ media: { allowedLocalDirs: [ROOT] } }) } });
}

function writeInput(name: string, bodies: Body[], prefix = name): { file: string; ids: string[] } {
  const ids = bodies.map((_, i) => `${prefix}-${i}`);
  const file = path.join(TMP, `${name}.jsonl`);
  writeFileSync(file, bodies.map((body, i) => JSON.stringify({ custom_id: ids[i], method: 'POST', url: '/v1/chat/completions', body })).join('\n') + '\n');
  return { file, ids };
}

// ---------------------------------------------------------------- processes

function qvl(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [QVL, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

interface WorkerProcess {
  proc: ChildProcess;
  /** the name BullMQ records as a job's processedBy */
  name: string;
  log: () => string;
  exited: Promise<void>;
}

async function startWorker(grace = 5): Promise<WorkerProcess> {
  const args = [QVL, 'worker', '--redis', redis.url, '--threads', '1', '--lock-duration', '2', '--shutdown-grace', String(grace), '--allowed-local-media-path', ROOT];
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (d) => (log = (log + d).slice(-200_000)));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const w = { proc, name: `${os.hostname()}-${proc.pid}`, log: () => log, exited };
  await waitFor(() => /taking jobs from queue/.test(log) || proc.exitCode !== null, 90_000, 'the worker to start');
  assert.equal(proc.exitCode, null, `the worker exited: ${log}`);
  workers.push(w);
  return w;
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function finished(id: string, timeoutMs = 90_000) {
  let b = await svc.retrieve(id);
  await waitFor(
    async () => {
      b = await svc.retrieve(id);
      return ['completed', 'cancelled', 'failed'].includes(b.status);
    },
    timeoutMs,
    `batch ${id} to finish`,
  );
  return b;
}

interface OutLine {
  custom_id: string;
  response: { status_code: number; body: { choices: { message: { content: string } }[] } } | null;
  error: { code: string; message: string; attempts?: number } | null;
}

async function outcomes(id: string): Promise<OutLine[]> {
  const { lines } = await svc.results(id);
  const out: OutLine[] = [];
  for await (const l of lines) out.push(JSON.parse(l) as OutLine);
  return out;
}

function assertEachOnce(lines: OutLine[], ids: string[]): void {
  assert.deepEqual(lines.map((l) => l.custom_id).sort(), [...ids].sort(), 'every custom_id exactly once');
  for (const l of lines) assert.ok((l.response === null) !== (l.error === null), `${l.custom_id}: response or error, not both`);
}

const contentOf = (l: OutLine) => l.response?.body.choices[0]?.message.content;

/**
 * Waits until `w` has just started one of the (slow, several-second) jobs of `batch`, and returns
 * its id: started under a second ago, so it is still running when the test acts on it.
 */
async function heldBy(w: WorkerProcess, batch: string): Promise<string> {
  let held: string | undefined;
  await waitFor(
    async () => {
      const active = await svc.queue.getActive();
      held = active.find((j) => j.processedBy === w.name && j.data.batch === batch && Date.now() - (j.processedOn ?? 0) < 1000)?.id;
      return held !== undefined;
    },
    60_000,
    `a job of ${batch} on ${w.name}`,
  );
  return held!;
}

// ---------------------------------------------------------------- setup

before(async () => {
  if (skip) return;
  redis = await startRedisServer();
  svc = await BatchService.connect(redis.url, { queue: 'qvl', role: 'service' });
  await Promise.all([startWorker(), startWorker()]);
});

after(async () => {
  if (skip) return;
  for (const w of workers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  await svc?.close();
  await redis?.close();
});

// ---------------------------------------------------------------- tests

test('a malformed line is refused with its number before anything is enqueued', { skip }, async () => {
  const good = writeInput('bad', datasetBodies(5));
  const lines = readFileSync(good.file, 'utf8').trim().split('\n');
  lines[3] = lines[3]!.replace('"role":"user"', '"role":"narrator"');
  writeFileSync(good.file, lines.join('\n') + '\n');
  const r = await qvl(['batch', 'submit', good.file, '--redis', redis.url, '--allowed-local-media-path', ROOT]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /bad\.jsonl line 4: body: messages\[0\]: unknown role "narrator".*nothing was enqueued/);
  assert.deepEqual(await svc.list(10), []);
  assert.equal(await svc.queue.count(), 0);
});

test('submit, progress and results through the CLI: every custom_id once, the answers of qvl run', { skip }, async () => {
  const bodies = datasetBodies(24);
  const input = writeInput('good', bodies);
  const sub = await qvl(['batch', 'submit', input.file, '--redis', redis.url, '--allowed-local-media-path', ROOT]);
  assert.equal(sub.code, 0, sub.stderr);
  const id = sub.stdout.trim();
  assert.match(id, /^batch_[0-9a-f]{24}$/);
  assert.match(sub.stderr, /24 requests for model "demo"/);

  const st = await qvl(['batch', 'status', id, '--redis', redis.url, '--watch', '--interval', '1']);
  assert.equal(st.code, 0, st.stderr);
  assert.match(st.stdout, /\[█{30}\] 100%  24\/24  \(24 answered, 0 failed\)  completed/);

  const out = path.join(TMP, 'good-results.jsonl');
  const res = await qvl(['batch', 'results', id, '--redis', redis.url, '--out', out]);
  assert.equal(res.code, 0, res.stderr);
  const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as OutLine);
  assertEachOnce(lines, input.ids);

  // what `qvl run` computes for each request: the library in this process, greedy
  const model = await Qwen3VL.fromPretrained(path.join(ROOT, 'models', 'demo'), { threads: 1 });
  for (const [i, body] of bodies.entries()) {
    const want = await model.chat(body.messages as never, { temperature: 0, maxNewTokens: 48 });
    assert.equal(contentOf(lines.find((l) => l.custom_id === input.ids[i])!), want.text, input.ids[i]);
  }
});

test('a worker SIGKILLed mid-job loses nothing: its job stalls and the other worker completes it', { skip }, async () => {
  const [a, b] = workers.slice(-2) as [WorkerProcess, WorkerProcess];
  const input = writeInput('kill', Array.from({ length: 4 }, slowBody));
  const batch = await submit(input.file);
  const held = await heldBy(a, batch.id);
  a.proc.kill('SIGKILL');
  await a.exited;
  const done = await finished(batch.id);
  assert.deepEqual(done.request_counts, { total: 4, completed: 4, failed: 0 });
  assert.match(b.log(), new RegExp(`job ${held} stalled`), 'the surviving worker recovered the dead worker\'s job');
  const lines = await outcomes(batch.id);
  assertEachOnce(lines, input.ids);
  // the same greedy request, whoever ran it and however often: the same answer
  assert.equal(new Set(lines.map(contentOf)).size, 1);
  assert.ok(contentOf(lines[0]!)!.length > 200);
  await startWorker(0);
});

test('SIGTERM: a worker with no grace left puts its job back in the queue and exits 0; the job is answered once', { skip }, async () => {
  const w = workers.at(-1)!;
  const input = writeInput('term', Array.from({ length: 3 }, slowBody));
  const batch = await submit(input.file);
  const held = await heldBy(w, batch.id);
  w.proc.kill('SIGTERM');
  await w.exited;
  assert.equal(w.proc.exitCode, 0, w.log());
  assert.match(w.log(), /line \d+ \(custom_id "term-\d"\): put back in the queue \(worker stopping\)/);
  assert.match(w.log(), /stopped \(\d+ answered, 0 failed, [12] put back\)/);
  const done = await finished(batch.id);
  assert.deepEqual(done.request_counts, { total: 3, completed: 3, failed: 0 });
  assertEachOnce(await outcomes(batch.id), input.ids);
  assert.equal(await svc.queue.getJob(held), undefined, 'the released job was completed (and dropped) by the other worker');
});

test('a duplicate delivery of an answered request is not run again and not duplicated in the results', { skip }, async () => {
  const input = writeInput('dup', datasetBodies(3));
  const batch = await submit(input.file);
  await finished(batch.id);
  const before = await outcomes(batch.id);
  // BullMQ delivering the first request again (as after a worker died between storing and acknowledging)
  const first = (await svc.queue.getJob(jobId(batch.id, 0))) ?? { data: { batch: batch.id, index: 0, custom_id: input.ids[0]!, line: 1, body: datasetBodies(1)[0]! } };
  const dup = await svc.queue.add('chat', first.data, { jobId: `${batch.id}-again` });
  await waitFor(async () => (await dup.getState()) === 'completed', 30_000, 'the duplicate to be processed');
  assert.equal((await svc.queue.getJob(dup.id!))?.returnvalue, 'answered before');
  const again = await outcomes(batch.id);
  assertEachOnce(again, input.ids);
  assert.deepEqual(again, before, 'the stored answer is untouched');
  assert.deepEqual((await svc.retrieve(batch.id)).request_counts, { total: 3, completed: 3, failed: 0 });

  // the store keeps one outcome per custom_id whatever the order: an answer replaces a failure, never the reverse
  const s = svc.store;
  assert.equal((await s.storeError(batch.id, 1, input.ids[1]!, '{"x":1}')).stored, false);
  await s.storeResult(batch.id, 1, input.ids[1]!, JSON.stringify(again[1]));
  assert.equal((await outcomes(batch.id)).length, 3);
});

test('cancel: waiting requests fail with batch_cancelled, running ones stop, each custom_id once', { skip }, async () => {
  const input = writeInput('cancel', Array.from({ length: 8 }, slowBody));
  const sub = await qvl(['batch', 'submit', input.file, '--redis', redis.url, '--allowed-local-media-path', ROOT]);
  assert.equal(sub.code, 0, sub.stderr);
  const id = sub.stdout.trim();
  await waitFor(async () => (await svc.queue.getActive()).some((j) => j.data.batch === id), 30_000, 'a job to start');
  const c = await qvl(['batch', 'cancel', id, '--redis', redis.url]);
  assert.equal(c.code, 0, c.stderr);
  assert.match(c.stdout, /cancell(ing|ed)/);
  const done = await finished(id, 30_000);
  assert.equal(done.status, 'cancelled');
  const lines = await outcomes(id);
  assertEachOnce(lines, input.ids);
  const cancelled = lines.filter((l) => l.error?.code === 'batch_cancelled');
  // each live worker held at most 2 (its --parallel); the rest never ran
  assert.ok(cancelled.length >= 8 - 2 * workers.filter((w) => w.proc.exitCode === null).length, `${cancelled.length} cancelled`);
  assert.equal(done.request_counts.completed + done.request_counts.failed, 8);
  // a worker acknowledges its job only after storing the outcome, so the batch can read as
  // finished while that job is still 'active' for a moment: wait for the queue, then check it
  const mine = async () => (await svc.queue.getJobs(['waiting', 'delayed', 'active'])).filter((j) => j.data.batch === id);
  await waitFor(async () => (await mine()).length === 0, 10_000, `the jobs of cancelled batch ${id} to leave the queue`).catch(() => {});
  assert.deepEqual(await mine(), []);
});

test('a request that fails keeps its error and attempt count; the others are answered', { skip }, async () => {
  const bodies = datasetBodies(2);
  bodies[1] = { ...bodies[1], messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,bm90IGEgcGljdHVyZQ==' } }, { type: 'text', text: 'x' }] }] };
  const input = writeInput('fail', bodies);
  const sub = await qvl(['batch', 'submit', input.file, '--redis', redis.url, '--allowed-local-media-path', ROOT]);
  assert.equal(sub.code, 0, sub.stderr);
  const id = sub.stdout.trim();
  const done = await finished(id);
  assert.deepEqual(done.request_counts, { total: 2, completed: 1, failed: 1 });
  const errs = await qvl(['batch', 'results', id, '--redis', redis.url, '--only', 'errors']);
  const line = JSON.parse(errs.stdout.trim()) as OutLine;
  assert.equal(line.custom_id, input.ids[1]);
  assert.equal(line.error?.code, 'image_decode');
  assert.equal(line.error?.attempts, 1, 'a request the server would refuse is not retried');
  const job = await svc.queue.getJob(jobId(id, 1));
  assert.equal(await job?.getState(), 'failed');
  assert.match(job!.failedReason, /image/i);
});

test('the OpenAI Batch routes of qvl serve --redis, through the official client', { skip }, async () => {
  let server: ServeProcess | undefined;
  try {
    server = await startServeProcess({ model: path.join(ROOT, 'models', 'demo'), args: ['--redis', redis.url, '--allowed-local-media-path', ROOT, '--served-model-name', 'demo'] });
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const input = writeInput('api', datasetBodies(6));
    const file = await client.files.create({ file: await toFile(readFileSync(input.file), 'api.jsonl'), purpose: 'batch' });
    assert.equal(file.bytes, readFileSync(input.file).length);
    let b = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h', metadata: { job: 'test' } });
    assert.equal(b.request_counts?.total, 6);
    await waitFor(
      async () => {
        b = await client.batches.retrieve(b.id);
        return b.status === 'completed';
      },
      60_000,
      'the batch over HTTP',
    );
    assert.deepEqual(b.request_counts, { total: 6, completed: 6, failed: 0 });
    assert.equal(b.error_file_id, null);
    const text = await (await client.files.content(b.output_file_id!)).text();
    assertEachOnce(text.trim().split('\n').map((l) => JSON.parse(l) as OutLine), input.ids);
    assert.equal((await client.batches.list()).data.some((x) => x.id === b.id), true);

    const bad = writeInput('api-bad', [datasetBodies(1)[0]!, { model: 'demo', messages: [] }]);
    const badFile = await client.files.create({ file: await toFile(readFileSync(bad.file), 'bad.jsonl'), purpose: 'batch' });
    await assert.rejects(client.batches.create({ input_file_id: badFile.id, endpoint: '/v1/chat/completions', completion_window: '24h' }), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(e.status, 400);
      assert.match(e.message, /line 2: body: messages: messages is empty; nothing was enqueued/);
      return true;
    });
    await assert.rejects(client.batches.retrieve('batch_000000000000000000000000'), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404);
  } finally {
    await server?.stop();
  }
});

test('Redis restarted during a run: the commands say so clearly, the jobs survive (append-only file) and finish', { skip }, async () => {
  const input = writeInput('restart', datasetBodies(24));
  const batch = await submit(input.file);
  await waitFor(async () => (await svc.retrieve(batch.id)).request_counts.completed >= 3, 30_000, 'a few answers');
  await redis.stop();
  const t0 = Date.now();
  const down = await qvl(['batch', 'status', batch.id, '--redis', redis.url]);
  assert.equal(down.code, 2);
  assert.match(down.stderr, /Redis at redis:\/\/127\.0\.0\.1:\d+ is not available/);
  assert.ok(Date.now() - t0 < 15_000, 'the command gives up within seconds');
  await redis.start();
  const done = await finished(batch.id, 90_000);
  assert.deepEqual(done.request_counts, { total: 24, completed: 24, failed: 0 });
  assertEachOnce(await outcomes(batch.id), input.ids);
  assert.ok(workers.some((w) => /connected to Redis again/.test(w.log())));
});
