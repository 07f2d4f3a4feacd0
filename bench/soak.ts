/**
 * Server soak (`npm run soak`): a real `qvl serve` child process under mixed load for a while
 * (chats with and without pictures, streaming or not, /v1/tokenize, bad requests, clients that
 * hang up mid-stream, fresh connections), then a report: requests per kind and status, p50/p95
 * latency, /health latency, and the server's resident memory after warm-up against after the
 * soak, less what its caches grew by meanwhile (target: within 10%). The prefix and vision caches
 * fill up to their budgets (`--kv-cache-mem`, `--vision-cache-mem`) over a long soak; their bytes
 * come from /metrics (`qvl_kv_bytes`, `qvl_vision_cache_bytes`), so what is left is a leak.
 *
 *   npm run soak -- [--minutes 2] [--concurrency 4] [--model models/demo] [--seed 1]
 *                   [--serve-args="--kv-cache-mem 0 --parallel 8"]
 *
 * Exits 1 on a 5xx, a crash, an unexpected status or memory over the target.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { HealthMonitor, now, quantile, readRssKb, startServeProcess, type ServeProcess } from '../test/helpers/serve-process.ts';
import { badRequest, loadValidMedia, validChatBody } from '../test/helpers/request-mix.ts';
import { rng } from '../test/helpers/rng.ts';

const RSS_TARGET = 1.1;

const { values: opts } = parseArgs({
  options: {
    minutes: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '4' },
    model: { type: 'string', default: 'models/demo' },
    seed: { type: 'string', default: '1' },
    'warmup-seconds': { type: 'string', default: '20' },
    'serve-args': { type: 'string', default: '' },
  },
});
const minutes = Number(opts.minutes);
const concurrency = Number(opts.concurrency);
const warmupSeconds = Number(opts['warmup-seconds']);
const seed = Number(opts.seed);
if (!(minutes > 0) || !Number.isInteger(concurrency) || concurrency < 1 || !(warmupSeconds >= 0) || !Number.isFinite(seed)) {
  console.error('usage: soak [--minutes N>0] [--concurrency K>=1] [--model dir] [--seed N] [--warmup-seconds S]');
  process.exit(2);
}

type Kind = 'chat' | 'chat-stream' | 'chat-media' | 'chat-media-stream' | 'tokenize' | 'bad' | 'abort-stream' | 'reconnect';
const WEIGHTS: [Kind, number][] = [
  ['chat', 3],
  ['chat-stream', 3],
  ['chat-media', 2],
  ['chat-media-stream', 2],
  ['tokenize', 3],
  ['bad', 2],
  ['abort-stream', 2],
  ['reconnect', 1],
];
/** Statuses each kind may get; anything else is reported as unexpected. */
const EXPECTED: Record<Kind, number[]> = {
  chat: [200],
  'chat-stream': [200],
  'chat-media': [200],
  'chat-media-stream': [200],
  tokenize: [200],
  bad: [400, 404, 413],
  'abort-stream': [200],
  reconnect: [200],
};

const media = await loadValidMedia();
const images = media.filter((m) => m.kind === 'image');
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: concurrency * 2 });

interface Result {
  kind: Kind;
  status: number | null;
  ms: number;
  error?: string;
  aborted?: boolean;
}

/** One request; `abortAfterFirstChunk` hangs up as soon as the first bytes of the answer arrive. */
function send(server: ServeProcess, route: string, body: string, o: { contentType?: string; fresh?: boolean; abortAfterFirstChunk?: boolean; timeoutMs?: number }): Promise<Omit<Result, 'kind'>> {
  const t0 = now();
  const u = new URL(server.url);
  return new Promise((resolve) => {
    let status: number | null = null;
    let settled = false;
    const done = (r: Partial<Omit<Result, 'kind'>>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ status, ms: now() - t0, ...r });
    };
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: route,
        method: 'POST',
        agent: o.fresh ? false : keepAlive,
        headers: { 'content-type': o.contentType ?? 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        status = res.statusCode ?? null;
        res.on('data', () => {
          if (o.abortAfterFirstChunk && status === 200) {
            req.destroy();
            done({ aborted: true });
          }
        });
        res.on('end', () => done({}));
        res.on('error', (e) => done({ error: e.message }));
      },
    );
    const timer = setTimeout(() => req.destroy(new Error('timed out')), o.timeoutMs ?? 120_000);
    req.on('error', (e) => done(settled ? {} : { error: e.message }));
    req.end(body);
  });
}

async function one(server: ServeProcess, kind: Kind, rand: () => number, model: string): Promise<Result> {
  const chat = (withMedia: boolean, stream: boolean) => JSON.stringify(validChatBody(rand, model, withMedia ? (rand() < 0.8 ? images : media) : null, stream));
  const C = '/v1/chat/completions';
  let r: Omit<Result, 'kind'>;
  switch (kind) {
    case 'chat':
      r = await send(server, C, chat(false, false), {});
      break;
    case 'chat-stream':
      r = await send(server, C, chat(false, true), {});
      break;
    case 'chat-media':
      r = await send(server, C, chat(true, false), {});
      break;
    case 'chat-media-stream':
      r = await send(server, C, chat(true, true), {});
      break;
    case 'tokenize':
      r = await send(server, '/v1/tokenize', chat(rand() < 0.5, false), {});
      break;
    case 'bad': {
      const b = badRequest(rand, model);
      r = await send(server, b.route, b.body, { contentType: b.contentType });
      break;
    }
    case 'abort-stream': {
      const body = validChatBody(rand, model, rand() < 0.5 ? images : null, true);
      body.max_tokens = 64;
      r = await send(server, C, JSON.stringify(body), { abortAfterFirstChunk: true });
      break;
    }
    case 'reconnect':
      r = await send(server, C, chat(rand() < 0.3, rand() < 0.5), { fresh: true });
      break;
  }
  return { kind, ...r };
}

function pickKind(rand: () => number): Kind {
  const total = WEIGHTS.reduce((s, [, w]) => s + w, 0);
  let x = rand() * total;
  for (const [k, w] of WEIGHTS) if ((x -= w) < 0) return k;
  return WEIGHTS[0][0];
}

/** K clients sending back to back until `until` (a now() time). */
async function load(server: ServeProcess, until: number, rand: () => number, model: string, results: Result[]): Promise<void> {
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (now() < until && server.alive()) results.push(await one(server, pickKind(rand), rand, model));
    }),
  );
}

const mib = (kb: number | null) => (kb === null ? 'n/a' : `${(kb / 1024).toFixed(1)} MiB`);

/** KiB held by the server's KV pool and vision-embedding cache (/metrics), or null where unreadable. */
async function cacheKb(url: string): Promise<number | null> {
  try {
    const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    let bytes = 0;
    for (const name of ['qvl_kv_bytes', 'qvl_vision_cache_bytes']) {
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      if (!m || !Number.isFinite(Number(m[1]))) return null;
      bytes += Number(m[1]);
    }
    return bytes / 1024;
  } catch {
    return null;
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** RSS once the server has been idle a moment: the lowest of a few readings. */
async function settledRss(pid: number): Promise<number | null> {
  await sleep(2000);
  const xs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const v = readRssKb(pid);
    if (v !== null) xs.push(v);
    await sleep(200);
  }
  return xs.length ? Math.min(...xs) : null;
}

async function main(): Promise<number> {
  const model = opts.model!;
  console.log(`soak: ${minutes} min, concurrency ${concurrency}, model ${model}, seed ${seed}, warm-up ${warmupSeconds} s${opts['serve-args'] ? `, serve ${opts['serve-args']}` : ''}`);
  const serveArgs = opts['serve-args']!.split(/\s+/).filter(Boolean);
  const server = await startServeProcess({ model, args: ['--max-queue', String(concurrency), ...serveArgs] });
  const stop = () => void server.stop().then(() => process.exit(130));
  process.once('SIGINT', stop);
  console.log(`server pid ${server.pid} at ${server.url}; RSS after load ${mib(readRssKb(server.pid))}`);
  // every request body names the served model: ask the server what that is
  const served = ((await (await fetch(`${server.url}/v1/models`)).json()) as { data: { id: string }[] }).data[0].id;
  const rand = rng(seed);

  const warm: Result[] = [];
  // every kind at least once, then mixed load
  for (const [k] of WEIGHTS) warm.push(await one(server, k, rand, served));
  await load(server, now() + warmupSeconds * 1000, rand, served, warm);
  const rssWarm = await settledRss(server.pid);
  const cacheWarm = await cacheKb(server.url);
  console.log(`warm-up: ${warm.length} requests; RSS ${mib(rssWarm)}, caches ${mib(cacheWarm)}`);

  const health = new HealthMonitor(() => server.url, 100);
  health.start();
  const results: Result[] = [];
  let rssMax = rssWarm ?? 0;
  const sampler = setInterval(() => (rssMax = Math.max(rssMax, readRssKb(server.pid) ?? 0)), 1000);
  const t0 = now();
  const progress = setInterval(
    () => void cacheKb(server.url).then((c) => console.log(`  ${((now() - t0) / 1000).toFixed(0)} s: ${results.length} requests, RSS ${mib(readRssKb(server.pid))}, caches ${mib(c)}`)),
    30_000,
  );
  await load(server, t0 + minutes * 60_000, rand, served, results);
  clearInterval(progress);
  clearInterval(sampler);
  const wall = (now() - t0) / 1000;
  await health.stop();
  const alive = server.alive();
  const rssAfter = alive ? await settledRss(server.pid) : null;
  const cacheAfter = alive ? await cacheKb(server.url) : null;
  // what the caches took on during the soak is theirs, within their budgets, not a leak
  const cacheGrowth = cacheWarm !== null && cacheAfter !== null ? Math.max(0, cacheAfter - cacheWarm) : null;

  // report
  const byKind = new Map<Kind, Result[]>();
  for (const r of results) byKind.set(r.kind, [...(byKind.get(r.kind) ?? []), r]);
  const statusCount = (rs: Result[]) => {
    const m: Record<string, number> = {};
    for (const r of rs) {
      const k = r.status === null ? `error` : String(r.status);
      m[k] = (m[k] ?? 0) + 1;
    }
    return m;
  };
  console.log(`\n${'kind'.padEnd(18)}${'n'.padStart(6)}  ${'p50 ms'.padStart(8)}${'p95 ms'.padStart(8)}  statuses`);
  for (const [k] of WEIGHTS) {
    const rs = byKind.get(k) ?? [];
    const ms = rs.map((r) => r.ms);
    console.log(`${k.padEnd(18)}${String(rs.length).padStart(6)}  ${quantile(ms, 0.5).toFixed(0).padStart(8)}${quantile(ms, 0.95).toFixed(0).padStart(8)}  ${JSON.stringify(statusCount(rs))}`);
  }
  const fiveXx = results.filter((r) => r.status !== null && r.status >= 500);
  const unexpected = results.filter((r) => r.status === null || !EXPECTED[r.kind].includes(r.status));
  const hms = health.samples.filter((s) => s.status === 200).map((s) => s.ms);
  const healthBad = health.samples.filter((s) => s.status !== 200);
  const ratio = rssWarm && rssAfter && cacheGrowth !== null ? (rssAfter - cacheGrowth) / rssWarm : NaN;
  console.log(
    `\ntotal ${results.length} requests in ${wall.toFixed(0)} s (${(results.length / wall).toFixed(1)}/s), statuses ${JSON.stringify(statusCount(results))}, 5xx ${fiveXx.length}, unexpected ${unexpected.length}`,
  );
  console.log(`health: ${health.samples.length} probes, p50 ${quantile(hms, 0.5).toFixed(1)} ms, p99 ${quantile(hms, 0.99).toFixed(1)} ms, max ${Math.max(0, ...hms).toFixed(1)} ms, not 200: ${healthBad.length}`);
  console.log(
    `RSS: after warm-up ${mib(rssWarm)}, after soak ${mib(rssAfter)}, peak ${mib(rssMax)}; caches ${mib(cacheWarm)} → ${mib(cacheAfter)}; after soak less the caches' growth / after warm-up ${ratio.toFixed(3)} (target ≤ ${RSS_TARGET})`,
  );
  if (alive && cacheGrowth === null) console.log('memory check: the caches\' bytes could not be read from /metrics');
  console.log(`server: ${alive ? 'alive' : `EXITED ${JSON.stringify(server.exit)}\n${server.stderrTail(3000)}`}`);
  for (const r of unexpected.slice(0, 10)) console.log(`  unexpected: ${r.kind} -> ${r.status ?? r.error} after ${r.ms.toFixed(0)} ms`);
  console.log(
    `soak-json: ${JSON.stringify({ minutes, concurrency, model, seed, requests: results.length, statuses: statusCount(results), fiveXx: fiveXx.length, unexpected: unexpected.length, crashed: !alive, rssWarmKb: rssWarm, rssAfterKb: rssAfter, rssPeakKb: rssMax, cacheWarmKb: cacheWarm, cacheAfterKb: cacheAfter, ratio, healthP99: quantile(hms, 0.99), healthMax: Math.max(0, ...hms) })}`,
  );
  await server.stop();
  keepAlive.destroy();
  const ok = alive && fiveXx.length === 0 && unexpected.length === 0 && healthBad.length === 0 && ratio <= RSS_TARGET;
  console.log(ok ? 'soak: ok' : 'soak: FAILED');
  return ok ? 0 : 1;
}

process.exitCode = await main();
