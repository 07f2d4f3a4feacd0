/**
 * Batch benchmark on the demo model, with a private redis-server on a free port:
 *
 *   node --import tsx bench/batch.ts [--requests 300] [--lock-duration 5] [--rounds 3] [--only reference,kill,throughput]
 *
 * 1. reference: the requests one by one through the library in one process (what `qvl run`
 *    does, greedy), plus a sample through `qvl run` itself; the answers every batch must give.
 * 2. kill: 3 `qvl worker` processes (1 thread each); one is SIGKILLed while it holds a job once a
 *    third of the batch is answered, and started again 2 s later. Every custom_id must be answered
 *    exactly once, with the reference answer.
 * 3. throughput: the same batch with 1 worker of 2 threads and with 2 workers of 1 thread,
 *    alternated for `--rounds`; requests per second from submission to the last answer (workers
 *    loaded before), and the workers' CPU time per request, which other load disturbs less.
 *
 * The machine is often shared: the load average before and after each phase is printed with it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import { BatchService } from '../src/batch/service.ts';
import { resolveLimits } from '../src/server/limits.ts';
import { startRedisServer, type RedisServer } from '../test/helpers/redis-server.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const QVL = path.join(ROOT, 'bin', 'qvl.mjs');
const DATA = path.join(ROOT, 'datasets', 'demo-heldout');
const DEMO = path.join(ROOT, 'models', 'demo');

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const N = Number(arg('requests', '300'));
const LOCK = Number(arg('lock-duration', '5'));
const ONLY = new Set(arg('only', 'reference,kill,throughput').split(','));
const ROUNDS = Number(arg('rounds', '3'));
const MAX_TOKENS = 48;

interface Item {
  task: string;
  messages: { role: string; content: { type: string; image?: string; text?: string }[] }[];
}

/** N picture questions from the held-out set (cycled), media as absolute paths, greedy. */
function requests(): { customId: string; body: { model: string; messages: Item['messages']; temperature: number; max_tokens: number } }[] {
  const items = readFileSync(path.join(DATA, 'items.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Item)
    .filter((i) => i.task !== 'video_time');
  return Array.from({ length: N }, (_, k) => {
    const messages = structuredClone(items[k % items.length]!.messages);
    for (const m of messages) for (const p of m.content) if (p.image) p.image = path.join(DATA, p.image);
    return { customId: `page-${String(k).padStart(4, '0')}`, body: { model: 'demo', messages, temperature: 0, max_tokens: MAX_TOKENS } };
  });
}

const load = () => os.loadavg()[0]!.toFixed(1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Worker {
  proc: ChildProcess;
  name: string;
  log: () => string;
  exited: Promise<void>;
}

/** User + system CPU seconds of a process so far, all its threads (Linux, 100 ticks a second). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function startWorker(redis: RedisServer, threads: number, queue = 'qvl'): Promise<Worker> {
  const proc = spawn(
    process.execPath,
    [QVL, 'worker', '--redis', redis.url, '--queue', queue, '--threads', String(threads), '--lock-duration', String(LOCK), '--allowed-local-media-path', DATA],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  proc.stderr!.on('data', (d) => (log = (log + d).slice(-100_000)));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  while (!/taking jobs from queue/.test(log)) {
    if (proc.exitCode !== null) throw new Error(`worker exited: ${log}`);
    await sleep(50);
  }
  return { proc, name: `${os.hostname()}-${proc.pid}`, log: () => log, exited };
}

async function stopWorkers(ws: Worker[]): Promise<void> {
  for (const w of ws) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGTERM');
  await Promise.all(ws.map((w) => w.exited));
}

async function submit(svc: BatchService, reqs: ReturnType<typeof requests>): Promise<string> {
  const lines = async function* () {
    for (const r of reqs) yield JSON.stringify({ custom_id: r.customId, method: 'POST', url: '/v1/chat/completions', body: r.body });
  };
  const b = await svc.submit(lines, { rules: { limits: resolveLimits({ media: { allowedLocalDirs: [DATA] } }) } });
  return b.id;
}

async function waitDone(svc: BatchService, id: string, onProgress?: (done: number) => Promise<void>): Promise<void> {
  for (;;) {
    const b = await svc.retrieve(id);
    const c = b.request_counts;
    await onProgress?.(c.completed + c.failed);
    if (b.status === 'completed') return;
    await sleep(100);
  }
}

/** custom_id → answer text; throws unless every custom_id has exactly one line with a response. */
async function answers(svc: BatchService, id: string, reqs: ReturnType<typeof requests>): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const { lines } = await svc.results(id);
  for await (const l of lines) {
    const j = JSON.parse(l) as { custom_id: string; response?: { body: { choices: { message: { content: string } }[] } }; error?: unknown };
    if (out.has(j.custom_id)) throw new Error(`${j.custom_id} appears twice`);
    if (!j.response) throw new Error(`${j.custom_id} failed: ${JSON.stringify(j.error)}`);
    out.set(j.custom_id, j.response.body.choices[0]!.message.content);
  }
  const missing = reqs.filter((r) => !out.has(r.customId));
  if (missing.length > 0) throw new Error(`${missing.length} custom_ids have no line (first: ${missing[0]!.customId})`);
  return out;
}

function sameAs(ref: Map<string, string>, got: Map<string, string>): number {
  let same = 0;
  for (const [k, v] of ref) if (got.get(k) === v) same++;
  return same;
}

async function main(): Promise<void> {
  const reqs = requests();
  const report: Record<string, unknown> = { requests: N, cores: os.availableParallelism(), lock_duration_s: LOCK };
  const ref = new Map<string, string>();

  // 1. reference: one by one, in one process, as `qvl run` computes
  {
    const l0 = load();
    const model = await Qwen3VL.fromPretrained(DEMO, { threads: 2 });
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (const r of reqs) ref.set(r.customId, (await model.chat(r.body.messages as never, { temperature: 0, maxNewTokens: MAX_TOKENS })).text);
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    report.reference = { seconds: +s.toFixed(2), requests_per_s: +(N / s).toFixed(2), cpu_ms_per_request: +((c.user + c.system) / 1000 / N).toFixed(1), load_before: l0, load_after: load() };
    // the CLI itself on a sample: the same answers
    let cliSame = 0;
    const sample = reqs.filter((_, i) => i % Math.ceil(N / 10) === 0);
    for (const r of sample) {
      const parts = r.body.messages[0]!.content;
      const args = [QVL, 'run', '--temp', '0', '-n', String(MAX_TOKENS)];
      for (const p of parts) if (p.image) args.push('--image', p.image);
      args.push(parts.find((p) => p.type === 'text')!.text!);
      const out = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' }).stdout.replace(/\n$/, '');
      if (out === ref.get(r.customId)) cliSame++;
    }
    (report.reference as Record<string, unknown>).qvl_run_sample_identical = `${cliSame}/${sample.length}`;
    console.error(`reference: ${N} requests in ${s.toFixed(1)} s; qvl run gives the same answer on ${cliSame} of ${sample.length} sampled`);
  }

  const redis = await startRedisServer();
  try {
    // 2. kill test: 3 workers, one SIGKILLed mid-job and started again
    if (ONLY.has('kill')) {
      const svc = await BatchService.connect(redis.url, { queue: 'qvl', role: 'service' });
      const l0 = load();
      const ws = await Promise.all([startWorker(redis, 1), startWorker(redis, 1), startWorker(redis, 1)]);
      const t0 = performance.now();
      const id = await submit(svc, reqs);
      let killed: { job: string; atDone: number } | undefined;
      let restarted: Promise<void> | undefined;
      const victim = ws[0]!;
      await waitDone(svc, id, async (done) => {
        if (killed || done < N / 3) return;
        const held = (await svc.queue.getActive()).find((j) => j.processedBy === victim.name);
        if (!held) return;
        victim.proc.kill('SIGKILL');
        killed = { job: held.id!, atDone: done };
        console.error(`kill: SIGKILLed ${victim.name} holding ${held.id} at ${done}/${N}`);
        restarted = sleep(2000).then(() => startWorker(redis, 1)).then((w) => void ws.push(w));
      });
      const s = (performance.now() - t0) / 1000;
      const got = await answers(svc, id, reqs);
      const b = await svc.retrieve(id);
      await restarted;
      const recovered = ws.filter((w) => new RegExp(`job ${killed?.job} stalled`).test(w.log())).length > 0;
      report.kill = {
        workers: 3,
        killed_holding: killed?.job,
        killed_at: killed?.atDone,
        seconds: +s.toFixed(2),
        request_counts: b.request_counts,
        each_custom_id_once: got.size === N,
        identical_to_reference: `${sameAs(ref, got)}/${N}`,
        stalled_job_recovered_by_another_worker: recovered,
        load_before: l0,
        load_after: load(),
      };
      console.error(`kill: ${JSON.stringify(report.kill)}`);
      await stopWorkers(ws);
      await svc.close();
    }

    // 3. throughput: 1 worker × 2 threads against 2 workers × 1 thread, alternated over rounds so
    //    that other load on the machine falls on both alike; CPU time per request beside wall time
    if (ONLY.has('throughput')) {
      const configs = [
        { label: '1 worker, 2 threads', queue: 'tp1', workers: 1, threads: 2 },
        { label: '2 workers, 1 thread each', queue: 'tp2', workers: 2, threads: 1 },
      ];
      const pools = new Map<string, { svc: BatchService; ws: Worker[] }>();
      for (const c of configs) {
        const ws: Worker[] = [];
        for (let i = 0; i < c.workers; i++) ws.push(await startWorker(redis, c.threads, c.queue));
        pools.set(c.label, { svc: await BatchService.connect(redis.url, { queue: c.queue, role: 'service' }), ws });
      }
      const runs: Record<string, { seconds: number; requests_per_s: number; cpu_ms_per_request: number; load: string }[]> = {};
      for (let round = 0; round < ROUNDS; round++) {
        for (const c of configs) {
          const { svc, ws } = pools.get(c.label)!;
          const l0 = load();
          const cpu0 = ws.reduce((a, w) => a + cpuSeconds(w.proc.pid!), 0);
          const t0 = performance.now();
          const id = await submit(svc, reqs);
          await waitDone(svc, id);
          const s = (performance.now() - t0) / 1000;
          const cpu = ws.reduce((a, w) => a + cpuSeconds(w.proc.pid!), 0) - cpu0;
          const got = await answers(svc, id, reqs);
          if (sameAs(ref, got) !== N) throw new Error(`${c.label}: ${N - sameAs(ref, got)} answers differ from the reference`);
          const run = { seconds: +s.toFixed(2), requests_per_s: +(N / s).toFixed(2), cpu_ms_per_request: +((1000 * cpu) / N).toFixed(1), load: `${l0}→${load()}` };
          (runs[c.label] ??= []).push(run);
          console.error(`throughput, ${c.label}, round ${round + 1}: ${JSON.stringify(run)}`);
        }
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const rate = (label: string) => median(runs[label]!.map((r) => r.requests_per_s));
      report.throughput = {
        runs,
        identical_to_reference: 'all',
        median_requests_per_s: Object.fromEntries(configs.map((c) => [c.label, rate(c.label)])),
        ratio_2_workers_over_1: +(rate(configs[1]!.label) / rate(configs[0]!.label)).toFixed(2),
        round_ratios: runs[configs[1]!.label]!.map((r, i) => +(r.requests_per_s / runs[configs[0]!.label]![i]!.requests_per_s).toFixed(2)),
      };
      for (const { svc, ws } of pools.values()) {
        await stopWorkers(ws);
        await svc.close();
      }
    }
  } finally {
    await redis.close();
  }
  console.log(JSON.stringify(report, null, 2));
}

await main();
// everything is closed above; a stray handle must not keep the benchmark waiting
process.exit(0);
