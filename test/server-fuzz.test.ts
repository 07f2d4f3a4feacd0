/**
 * The server under hostile input: a real `qvl serve` child process gets seeded, generated junk
 * (malformed JSON, deep nesting, bad media, forbidden sources, long text) and must never crash,
 * answer 5xx, read a file it may not, leak a path, or stall its event loop.
 *
 * Env: QVL_FUZZ_SEED (seed), QVL_FUZZ_RUNS (runs per property, scaled per property),
 * QVL_FUZZ_SURVEY=1 (record every violation instead of stopping at the first, then fail listing
 * each kind once), QVL_FUZZ_HEALTH_MS (the /health latency bound), QVL_FUZZ_TIMEOUT_MS (per request).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { bombPng } from './server-util.ts';
import { errorShapeProblem, HealthMonitor, now, quantile, REPO, startServeProcess, type ServeProcess } from './helpers/serve-process.ts';
import { EXAMPLE_PNG, loadMediaFiles, toDataUri } from './helpers/request-mix.ts';
import { ffmpegAvailable } from '../src/media/ffmpeg.ts';

// the canaries are made by ffmpeg, and half the media the fuzzer sends is video
const noFfmpeg = ffmpegAvailable() ? false : 'ffmpeg/ffprobe not installed (Debian: apt-get install ffmpeg)';

const SEED = Number(process.env.QVL_FUZZ_SEED ?? 20_261_203);
const RUNS = Number(process.env.QVL_FUZZ_RUNS ?? 50);
const SURVEY = process.env.QVL_FUZZ_SURVEY === '1';
// generous for 2 shared cores: a healthy server answers in tens of ms; the stalls this guards against last seconds
const HEALTH_BOUND_MS = Number(process.env.QVL_FUZZ_HEALTH_MS ?? 1500);
const REQUEST_TIMEOUT_MS = Number(process.env.QVL_FUZZ_TIMEOUT_MS ?? 30_000);
// Shrinking sends real requests: bound its time so a failing property still ends in seconds.
const SHRINK_BUDGET_MS = 20_000;

const MODEL = 'models/demo';
const CHAT = '/v1/chat/completions';
const TOKENIZE = '/v1/tokenize';
const ROUTES = [CHAT, TOKENIZE] as const;

// ---------------------------------------------------------------------------------------------
// the world: an allowed media folder, canary files outside it, a canary host on loopback

let tmp: string;
let allowed: string;
let outside: string;
let canaryMp4: string;
let canaryPng: string;
let canaryHost: { port: number; hits: () => number; close: () => Promise<void> };
let main: ServeProcess;
let slowServer: ServeProcess;
let monitor: HealthMonitor;
let secrets: { what: string; re: RegExp }[] = [];
const media = loadMediaFiles();

const stats = { requests: 0, statuses: new Map<string | number, number>(), fiveXx: 0, crashes: 0, canaryReads: 0, pathLeaks: 0 };
const crashLog: string[] = [];
const slowest: { ms: number; what: string }[] = [];
let worstHealth = { ms: 0, during: '' };
function noteSlow(ms: number, c: Case) {
  if (slowest.length >= 6 && ms <= slowest[slowest.length - 1].ms) return;
  slowest.push({ ms, what: `${c.label} -> ${c.route}` });
  slowest.sort((a, b) => b.ms - a.ms);
  slowest.length = Math.min(slowest.length, 6);
}
const survey = new Map<string, Map<string, string>>();

// --max-tokens bounds the answers of requests whose max_tokens the fuzzer removed or nulled.
const serverArgs = () => ['--allowed-local-media-path', allowed, '--max-queue', '4', '--max-tokens', '8'];

before(async () => {
  if (noFfmpeg) return;
  tmp = mkdtempSync(path.join(os.tmpdir(), 'qvl-fuzz-'));
  allowed = path.join(tmp, 'allowed');
  outside = path.join(tmp, 'outside');
  mkdirSync(allowed);
  mkdirSync(outside);
  // Real, decodable canaries with sizes and dimensions no fixture has: if the server ever reads
  // one, its numbers show up in a response.
  canaryMp4 = path.join(outside, 'canary.mp4');
  canaryPng = path.join(outside, 'canary.png');
  const ff = (args: string[]) => execFileSync('ffmpeg', ['-loglevel', 'error', '-y', ...args], { stdio: 'pipe' });
  ff(['-f', 'lavfi', '-i', 'testsrc2=size=88x56:rate=25', '-t', '4.24', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', canaryMp4]);
  ff(['-f', 'lavfi', '-i', 'nullsrc=s=77x45,geq=random(1)*255:128:128', '-frames:v', '1', canaryPng]);
  copyFileSync(EXAMPLE_PNG, path.join(allowed, 'ok.png'));
  copyFileSync(path.join(REPO, 'test', 'fixtures', 'media', 'clip_h264.mp4'), path.join(allowed, 'ok.mp4'));
  symlinkSync(canaryMp4, path.join(allowed, 'link.mp4'));
  symlinkSync(canaryPng, path.join(allowed, 'link.png'));
  symlinkSync(outside, path.join(allowed, 'linkdir'));
  symlinkSync('/dev/zero', path.join(allowed, 'zero.png'));
  // Files inside the allowed folder whose content points outside it.
  const hls = (target: string) => `#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:4.24,\n${target}\n#EXT-X-ENDLIST\n`;
  writeFileSync(path.join(allowed, 'evil.m3u8'), hls(canaryMp4));
  writeFileSync(path.join(allowed, 'evil-rel.m3u8'), hls('../outside/canary.mp4'));
  writeFileSync(path.join(allowed, 'evil-hls.mp4'), hls(`file://${canaryMp4}`));
  writeFileSync(path.join(allowed, 'evil.ffconcat'), `ffconcat version 1.0\nfile '${canaryMp4}'\n`);
  writeFileSync(path.join(allowed, 'evil-concat.mp4'), `ffconcat version 1.0\nfile '../outside/canary.mp4'\n`);
  execFileSync('mkfifo', [path.join(allowed, 'fifo.png')]);

  const size = (f: string) => String(statSync(f).size);
  const lit = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  secrets = [
    { what: 'the canary folder path', re: lit(outside) },
    { what: 'the canary video size', re: new RegExp(`(?<![\\w.])${size(canaryMp4)}(?![\\w.])`) },
    { what: 'the canary image size', re: new RegExp(`(?<![\\w.])${size(canaryPng)}(?![\\w.])`) },
    { what: 'the canary video duration', re: /(?<![\w.])4\.240*(?!\w)/ },
    { what: 'the canary video dimensions', re: /"width":\s*88,\s*"height":\s*56(?!\d)/ },
    { what: 'the canary image dimensions', re: /"width":\s*77,\s*"height":\s*45(?!\d)/ },
  ];

  canaryHost = await startCanaryHost(readFileSync(canaryPng));
  [main, slowServer] = await Promise.all([
    startServeProcess({ model: MODEL, args: serverArgs() }),
    // a second instance that may fetch from loopback, for the slow-host property
    startServeProcess({ model: MODEL, args: ['--allow-private-urls', '--max-queue', '4', '--max-tokens', '8'] }),
  ]);
  monitor = new HealthMonitor(() => main.url);
  monitor.start();
});

after(async () => {
  await monitor?.stop();
  await main?.stop();
  await slowServer?.stop();
  await canaryHost?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** An HTTP server on loopback that counts requests: the fuzzed server must never reach it. */
async function startCanaryHost(png: Buffer) {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': png.length }).end(png);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, hits: () => hits, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function ensureMain(): Promise<void> {
  if (main.alive()) return;
  main = await startServeProcess({ model: MODEL, args: serverArgs() });
  // probes of the dead server must not be charged to the next request
  monitor.follow();
  await new Promise((r) => setTimeout(r, 200));
}

// ---------------------------------------------------------------------------------------------
// a request, how it prints, and what must hold of its answer

interface Expect {
  /** must be answered 4xx (a forbidden or meaningless source) */
  refuse?: boolean;
  /** must be refused by policy (`media_forbidden`), not by a failed connection */
  forbidden?: boolean;
  /** a body over --max-body: the server may answer 413 and close before the client has sent it all */
  mayCloseEarly?: boolean;
}

class Case {
  constructor(
    readonly label: string,
    readonly route: string,
    readonly body: Buffer | null,
    readonly opts: { method?: string; contentType?: string | null; headers?: Record<string, string>; chunked?: boolean; expect?: Expect } = {},
  ) {}

  [fc.toStringMethod](): string {
    try {
      return this.describe();
    } catch (e) {
      // a report must never fail on its own
      return `${this.label}: ${this.opts.method ?? 'POST'} ${this.route} (${this.body?.length ?? 0} bytes; not printable: ${(e as Error).message})`;
    }
  }

  describe(): string {
    const o = this.opts;
    const ct = o.contentType === undefined ? 'application/json' : o.contentType;
    const extra = o.headers ? ` ${JSON.stringify(o.headers)}` : '';
    return `${this.label}: ${o.method ?? 'POST'} ${abbreviate(this.route, 200)} [${ct ?? 'no content-type'}${extra}${o.chunked ? ', chunked' : ''}] ${this.body === null ? '(no body)' : abbreviate(this.body.toString('utf8'), 1500)} (${this.body?.length ?? 0} bytes)`;
  }
}

/** Readable for a report: long runs folded, data URIs shown decoded when they are short text. */
function abbreviate(s: string, max: number): string {
  let t = s.length > 4_000_000 ? s.slice(0, 4_000_000) : s;
  t = t.replace(/data:([^;,"]*)((?:;[^;,"]*)*),([A-Za-z0-9+/=]*)/g, (m, mime: string, params: string, payload: string) => {
    if (!params.includes('base64')) return m.length > 200 ? `${m.slice(0, 200)}…` : m;
    const bytes = Buffer.from(payload, 'base64');
    const text = bytes.toString('utf8');
    if (bytes.length <= 400 && /^[\x09\x0a\x0d\x20-\x7e]*$/.test(text)) return `data:${mime}${params},«${JSON.stringify(text)}»`;
    return `data:${mime}${params},«${bytes.length} bytes: ${bytes.subarray(0, 16).toString('hex')}…»`;
  });
  t = foldRuns(t);
  return t.length > max ? `${t.slice(0, max)}…(+${t.length - max} chars)` : t;
}

/** Folds a unit of up to 40 characters repeated 8 times or more into ⟨unit⟩×count. */
function foldRuns(s: string): string {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    let folded = false;
    for (let len = 1; len <= 40 && i + len * 8 <= s.length; len++) {
      const unit = s.slice(i, i + len);
      let n = 1;
      while (i + (n + 1) * len <= s.length && s.startsWith(unit, i + n * len)) n++;
      if (n >= 8) {
        out.push(`⟨${unit}⟩×${n}`);
        i += n * len;
        folded = true;
        break;
      }
    }
    if (!folded) out.push(s[i++]);
  }
  return out.join('');
}

const RAW = '@@RAW:';
/** A JSON token JSON.stringify cannot write (1e999, -0, a 30-digit integer), spliced in as is. */
const raw = (token: string) => `${RAW}${token}@@`;
const toJson = (v: unknown) => JSON.stringify(v).replace(/"@@RAW:([^@"]*)@@"/g, '$1');
const jsonCase = (label: string, route: string, v: unknown, expect?: Expect) => new Case(label, route, Buffer.from(toJson(v)), { expect });

interface Exchange {
  status: number | null;
  contentType: string;
  text: string;
  error?: string;
  t0: number;
  t1: number;
}

/** Sends `c` on a fresh connection (node:http, so odd methods, paths and bodies go out as they are). */
function exchange(c: Case): Promise<Exchange> {
  const t0 = now();
  const o = c.opts;
  const headers: Record<string, string> = { ...o.headers };
  const ct = o.contentType === undefined ? 'application/json' : o.contentType;
  if (ct !== null) headers['content-type'] = ct;
  if (c.body && !o.chunked) headers['content-length'] = String(c.body.length);
  const u = new URL(main.url);
  return new Promise<Exchange>((resolve) => {
    let status: number | null = null;
    let contentType = '';
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ status, contentType, text: Buffer.concat(chunks).toString('utf8'), t0, t1: now(), ...(error ? { error } : {}) });
    };
    let req: http.ClientRequest;
    try {
      req = http.request({ host: u.hostname, port: u.port, path: c.route, method: o.method ?? 'POST', headers, agent: false }, (res) => {
        status = res.statusCode ?? null;
        contentType = String(res.headers['content-type'] ?? '');
        res.on('data', (b: Buffer) => chunks.push(b));
        res.on('end', () => done());
        res.on('error', (e) => done(`the response was cut off: ${e.message}`));
      });
    } catch (e) {
      done(`the request could not be sent: ${(e as Error).message}`);
      return;
    }
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
    req.on('error', (e) => done(status === null ? e.message : `the response was cut off: ${e.message}`));
    void (async () => {
      if (c.body && o.chunked) {
        for (let i = 0; i < c.body.length && !req.destroyed; i += 1 << 20) {
          if (!req.write(c.body.subarray(i, i + (1 << 20)))) {
            await new Promise<void>((r) => {
              const go = () => {
                req.off('drain', go).off('close', go);
                r();
              };
              req.on('drain', go).on('close', go);
            });
          }
        }
        req.end();
      } else req.end(c.body ?? undefined);
    })();
  });
}

/** Everything the request itself carried, in plain text: what the server may echo back. */
function knownText(c: Case): string {
  const parts = [c.route, safeDecode(c.route)];
  if (c.body && c.body.length < 8_000_000) {
    const s = c.body.toString('utf8');
    parts.push(s);
    for (const m of s.matchAll(/[A-Za-z0-9+/]{8,}={0,2}/g)) parts.push(Buffer.from(m[0], 'base64').toString('utf8'));
    try {
      const stack: unknown[] = [JSON.parse(s)];
      while (stack.length > 0 && parts.length < 100_000) {
        const v = stack.pop();
        if (typeof v === 'string') parts.push(v, safeDecode(v));
        else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) stack.push(k, x);
      }
    } catch {
      // not JSON: the raw text above is all there is
    }
  }
  return parts.join('\n');
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Error messages of a response: the JSON error body, or `data: {"error": …}` events of a stream. */
function errorMessages(x: Exchange): string[] {
  const out: string[] = [];
  const add = (j: string) => {
    try {
      const m = (JSON.parse(j) as { error?: { message?: unknown } })?.error?.message;
      if (typeof m === 'string') out.push(m);
    } catch {
      // not JSON
    }
  };
  if (x.contentType.includes('text/event-stream')) for (const e of x.text.split('\n\n')) e.startsWith('data: ') && add(e.slice(6));
  else add(x.text);
  return out;
}

/**
 * Absolute file-system paths an error message names (file: URLs included). A slash-led token
 * counts only when its first segment exists at the root, so JSON pointers (/properties/a) and
 * routes (/v1/models) are not taken for paths.
 */
function pathsIn(message: string): string[] {
  const found: string[] = [];
  for (const m of message.matchAll(/file:\/\/(?:localhost)?(\/[^\s"'`,;()<>|]*)/gi)) found.push(safeDecode(m[1]));
  for (const m of message.matchAll(/(?<![\w\]:/.%@~-])\/[^\s"'`,;()<>[\]{}|]+/g)) found.push(m[0]);
  return found
    .map((p) => p.replace(/(:\d+)*[.:,;!?]*$/, ''))
    .filter((p) => {
      const first = p.split('/')[1];
      return first !== undefined && first !== '' && existsSync(`/${first}`);
    });
}

const inside = (p: string, dir: string) => {
  const r = path.relative(dir, path.resolve(p));
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
};

async function check(c: Case): Promise<string[]> {
  await ensureMain();
  const hitsBefore = canaryHost.hits();
  const x = await exchange(c);
  const v: string[] = [];
  stats.requests++;
  noteSlow(x.t1 - x.t0, c);
  const key = x.status ?? 'no answer';
  stats.statuses.set(key, (stats.statuses.get(key) ?? 0) + 1);

  // A server that refuses an oversized body before reading it may close the connection while
  // the client is still sending: the client then sees a reset instead of the 413.
  const closedEarly = c.opts.expect?.mayCloseEarly === true && /EPIPE|ECONNRESET|socket hang up/.test(x.error ?? '');
  if (x.status === null && !closedEarly) v.push(`no response: ${x.error}`);
  else if (x.status !== null && x.error && !closedEarly) v.push(`status ${x.status}, then ${x.error}`);
  if (x.status !== null) {
    if (x.status >= 500) {
      stats.fiveXx++;
      v.push(`status ${x.status}: ${x.text.slice(0, 500)}`);
    }
    const accepted = x.status >= 200 && x.status < 300;
    // a HEAD answer has no body to shape
    if (!accepted && c.opts.method !== 'HEAD') {
      const p = errorShapeProblem(x.text);
      if (p) v.push(`status ${x.status} without OpenAI's error shape (${p}): ${x.text.slice(0, 300)}`);
    }
    if (accepted && c.opts.expect?.refuse) v.push(`accepted (${x.status}) a request that must be refused: ${x.text.slice(0, 300)}`);
    if (x.contentType.includes('text/event-stream')) {
      // an error after the stream started arrives as an event, in the same shape
      for (const e of x.text.split('\n\n')) {
        if (!e.startsWith('data: {"error"')) continue;
        const p = errorShapeProblem(e.slice(6));
        if (p) v.push(`a stream error event without OpenAI's error shape (${p}): ${e.slice(0, 300)}`);
      }
    }
    if (c.opts.expect?.forbidden && x.status < 500) {
      let code: unknown;
      try {
        code = (JSON.parse(x.text) as { error?: { code?: unknown } }).error?.code;
      } catch {
        code = undefined;
      }
      // Refused before any fetch (a bad part, say) is fine; a network error means it tried to connect.
      const tried = code === 'media_source' || /connect|EHOSTUNREACH|ECONNREFUSED|ENETUNREACH|ETIMEDOUT|no connection within|resolve host|socket/i.test(x.text);
      if (code !== 'media_forbidden' && tried) v.push(`a private address was not refused by policy (status ${x.status}, code ${JSON.stringify(code)}): ${x.text.slice(0, 300)}`);
    }
    const known = knownText(c);
    for (const s of secrets) {
      if (s.re.test(x.text) && !s.re.test(known)) {
        stats.canaryReads++;
        v.push(`the response reveals ${s.what}: ${x.text.slice(0, 400)}`);
      }
    }
    for (const msg of errorMessages(x)) {
      for (const p of new Set(pathsIn(msg))) {
        if (inside(p, allowed) || known.includes(p)) continue;
        stats.pathLeaks++;
        v.push(`an error message names ${p}, outside the allowed folder and not in the request: ${msg.slice(0, 300)}`);
      }
    }
  }
  // A dropped connection may be a dying server: give its exit a moment to be seen.
  if (x.status === null || x.error) await main.waitExit(1500);
  const hits = canaryHost.hits() - hitsBefore;
  if (hits > 0) {
    stats.canaryReads++;
    v.push(`the server fetched from the loopback canary host (${hits} request(s))`);
  }
  if (!main.alive()) {
    stats.crashes++;
    crashLog.push(`${String(c[fc.toStringMethod]()).slice(0, 300)} -> ${JSON.stringify(main.exit)}`);
    v.push(`the server exited (${JSON.stringify(main.exit)}); stderr: ${main.stderrTail(1500)}`);
  } else {
    const h = await monitor.during(x.t0, x.t1, HEALTH_BOUND_MS * 2);
    if (h.maxMs > worstHealth.ms) worstHealth = { ms: h.maxMs, during: `${c.label} -> ${c.route}` };
    if (h.failed && (await main.waitExit(1500))) {
      stats.crashes++;
      crashLog.push(`${String(c[fc.toStringMethod]()).slice(0, 300)} -> ${JSON.stringify(main.exit)}`);
      v.push(`the server exited (${JSON.stringify(main.exit)}); stderr: ${main.stderrTail(1500)}`);
    }
    if (h.maxMs > HEALTH_BOUND_MS) v.push(`GET /health took ${Math.round(h.maxMs)} ms while this request ran (bound ${HEALTH_BOUND_MS} ms; the request took ${Math.round(x.t1 - x.t0)} ms)`);
    if (h.failed) v.push(`GET /health answered ${h.failed.status}${h.failed.error ? ` (${h.failed.error})` : ''} while this request ran`);
  }
  return v;
}

/** Runs one property: every generated case (and every example) must pass `check`. */
async function fuzz(name: string, arb: fc.Arbitrary<Case>, numRuns: number, examples: Case[], seedOffset: number): Promise<void> {
  let failedAt: number | null = null;
  const prop = fc.asyncProperty(arb, async (c) => {
    // Shrinking budget spent: report the smallest counterexample found so far.
    if (failedAt !== null && performance.now() - failedAt > SHRINK_BUDGET_MS) return;
    const v = await check(c);
    if (v.length === 0) return;
    if (SURVEY) {
      const kinds = survey.get(name) ?? new Map<string, string>();
      survey.set(name, kinds);
      for (const one of v) {
        const kind = one.replace(/\d+/g, 'N').slice(0, 60);
        if (!kinds.has(kind)) kinds.set(kind, `${one.slice(0, 600)}\n      input: ${c[fc.toStringMethod]()}`);
      }
      return;
    }
    failedAt ??= performance.now();
    throw new Error(v.join('\n'));
  });
  // examples count towards numRuns: add them so every property also gets its generated runs
  await fc.assert(prop, { seed: SEED + seedOffset, numRuns: numRuns + examples.length, examples: examples.map((e) => [e] as [Case]), includeErrorInReport: true });
  const kinds = survey.get(name);
  if (kinds && kinds.size > 0) assert.fail(`${name}: ${kinds.size} kind(s) of violation\n${[...kinds.values()].map((k) => `  - ${k}`).join('\n')}`);
}

const runs = (factor: number) => Math.max(1, Math.round(RUNS * factor));

// ---------------------------------------------------------------------------------------------
// generators

const RAW_NUMBERS = ['1e999', '-1e999', '-0', '1e-400', '123456789012345678901234567890', '9007199254740993', '1E+308', '0.1e-999999'];
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    true,
    false,
    0,
    -1,
    1,
    0.5,
    -0.5,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    -(2 ** 53),
    1e308,
    -1e308,
    5e-324,
    '',
    ' ',
    '0',
    '-1',
    'NaN',
    'Infinity',
    '1e999',
    'null',
    'true',
    '[]',
    '{}',
    '\u0000',
    '\ud800',
    'user',
    'auto',
    MODEL,
    ...RAW_NUMBERS.map(raw),
  ),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

/** Junk for max_tokens that cannot make the model write long: no null, no valid count above 4. */
const countJunk = junk.filter((v) => v !== null && !(typeof v === 'number' && Number.isInteger(v) && v > 4 && v <= Number.MAX_SAFE_INTEGER));

const count = fc.oneof(fc.integer({ min: -2, max: 10 }), fc.constantFrom<unknown>(1e9, 2 ** 31, 2 ** 53, 1e308, 0.5, -1, raw('1e999')), junk);

const { schema } = fc.letrec<{ schema: unknown }>((tie) => ({
  schema: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ type: fc.constantFrom('string', 'integer', 'number', 'boolean', 'null', 'object', 'array', 'bogus') }),
    fc.record(
      {
        type: fc.constant('object'),
        properties: fc.dictionary(fc.string({ maxLength: 5 }), tie('schema'), { maxKeys: 3 }),
        required: fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
        additionalProperties: fc.oneof(fc.boolean(), tie('schema')),
      },
      { requiredKeys: ['type'] },
    ),
    fc.record({ type: fc.constant('array'), items: tie('schema'), minItems: count, maxItems: count }, { requiredKeys: ['type'] }),
    fc.record({ type: fc.constant('string'), minLength: count, maxLength: count, pattern: fc.string({ maxLength: 8 }), format: fc.string({ maxLength: 8 }) }, { requiredKeys: ['type'] }),
    fc.record({ anyOf: fc.array(tie('schema'), { maxLength: 3 }) }),
    fc.record({ oneOf: fc.array(tie('schema'), { maxLength: 3 }) }),
    fc.record({ enum: fc.oneof(fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }), junk) }),
    fc.record({ const: fc.jsonValue({ maxDepth: 2 }) }),
    fc.record({
      $ref: fc.constantFrom('#', '#/$defs/a', '#/definitions/x', '#/$defs/a/b', 'http://169.254.169.254/schema', `file://${'/etc/passwd'}`, '#/properties/0'),
      $defs: fc.oneof(fc.constant({ a: { $ref: '#/$defs/a' } }), fc.dictionary(fc.constantFrom('a', 'b'), tie('schema'), { maxKeys: 2 })),
    }),
    fc.record({ type: fc.array(fc.constantFrom('string', 'null', 'object', 'integer', 7), { maxLength: 3 }) }),
    junk,
  ),
}));

const toolsArb = fc.oneof(
  junk,
  fc.array(
    fc.record(
      {
        type: fc.oneof(fc.constant('function'), junk),
        function: fc.oneof(
          junk,
          fc.record({ name: fc.oneof(fc.string({ maxLength: 12 }), junk), description: junk, parameters: fc.oneof(schema, junk), strict: junk }, { requiredKeys: ['name'] }),
        ),
      },
      { requiredKeys: ['function'] },
    ),
    { maxLength: 3 },
  ),
);
const toolChoiceArb = fc.oneof(
  fc.constantFrom<unknown>('auto', 'none', 'required', 'any', 'function'),
  fc.record({ type: fc.oneof(fc.constant('function'), junk), function: fc.oneof(fc.record({ name: fc.oneof(fc.string({ maxLength: 8 }), junk) }), junk) }),
  junk,
);
const responseFormatArb = fc.oneof(
  fc.record(
    {
      type: fc.oneof(fc.constantFrom('text', 'json_object', 'json_schema', 'regex', 'grammar'), junk),
      json_schema: fc.oneof(junk, fc.record({ name: junk, strict: junk, schema: fc.oneof(schema, junk) }, { requiredKeys: ['schema'] })),
    },
    { requiredKeys: ['type'] },
  ),
  junk,
);
const kwargsArb = fc.oneof(
  junk,
  fc.dictionary(
    fc.oneof(fc.constantFrom('enable_thinking', 'add_vision_id', 'tools', 'messages', 'add_generation_prompt', '__proto__', 'constructor', 'bos_token', 'documents', 'raise_exception'), fc.string({ maxLength: 8 })),
    junk,
    { maxKeys: 3 },
  ),
);

const roleArb = fc.oneof(fc.constantFrom<unknown>('system', 'developer', 'user', 'assistant', 'tool', 'function', 'ipython', '', 'USER', 'user ', '__proto__', 'constructor'), junk);
const partTypeArb = fc.oneof(
  fc.constantFrom<unknown>('text', 'image_url', 'image', 'video_url', 'video', 'file', 'pdf', 'input_audio', 'audio', 'refusal', 'input_text', 'image_file', '__proto__', ''),
  junk,
);
const partArb = fc.oneof(
  fc.record({ type: partTypeArb, text: fc.oneof(fc.string({ maxLength: 30 }), junk) }, { requiredKeys: ['type'] }),
  fc.record({ type: partTypeArb, image_url: fc.oneof(junk, fc.record({ url: fc.oneof(fc.string({ maxLength: 20 }), junk), detail: junk }, { requiredKeys: [] })) }, { requiredKeys: ['type'] }),
  fc.record({ type: partTypeArb, video: fc.oneof(junk, fc.array(junk, { maxLength: 3 })), fps: junk, max_frames: junk }, { requiredKeys: ['type'] }),
  fc.record({ type: partTypeArb, file: fc.oneof(junk, fc.record({ file_data: junk, filename: junk, file_id: junk }, { requiredKeys: [] })), pages: junk }, { requiredKeys: ['type'] }),
  junk,
);
const toolCallsArb = fc.oneof(
  junk,
  fc.array(
    fc.record(
      {
        id: junk,
        type: fc.oneof(fc.constant('function'), junk),
        function: fc.oneof(junk, fc.record({ name: fc.oneof(fc.string({ maxLength: 8 }), junk), arguments: fc.oneof(fc.json({ maxDepth: 3 }), fc.string({ maxLength: 20 }), junk) })),
      },
      { requiredKeys: ['function'] },
    ),
    { maxLength: 2 },
  ),
);
const messageArb = fc.oneof(
  fc.record(
    {
      role: roleArb,
      content: fc.oneof(fc.string({ maxLength: 40 }), fc.array(partArb, { maxLength: 4 }), junk),
      name: junk,
      tool_calls: toolCallsArb,
      tool_call_id: junk,
      reasoning_content: junk,
    },
    { requiredKeys: ['role'] },
  ),
  junk,
);
const messagesArb = fc.oneof(fc.array(messageArb, { maxLength: 4 }), junk);

const FIELDS = [
  'model',
  'messages',
  'stream',
  'stream_options',
  'temperature',
  'top_p',
  'top_k',
  'min_p',
  'presence_penalty',
  'frequency_penalty',
  'repetition_penalty',
  'seed',
  'stop',
  'max_tokens',
  'max_completion_tokens',
  'n',
  'tools',
  'tool_choice',
  'response_format',
  'chat_template_kwargs',
  'min_pixels',
  'max_pixels',
  'fps',
  'max_frames',
  'logprobs',
  'top_logprobs',
  'logit_bias',
  'parallel_tool_calls',
  'user',
] as const;

function fieldArb(f: (typeof FIELDS)[number]): fc.Arbitrary<unknown> {
  switch (f) {
    case 'messages':
      return messagesArb;
    case 'tools':
      return toolsArb;
    case 'tool_choice':
      return toolChoiceArb;
    case 'response_format':
      return responseFormatArb;
    case 'chat_template_kwargs':
      return kwargsArb;
    case 'stop':
      return fc.oneof(junk, fc.string({ maxLength: 10 }), fc.array(fc.string({ maxLength: 10 }), { maxLength: 20 }));
    case 'stream_options':
      return fc.oneof(junk, fc.record({ include_usage: junk }));
    case 'max_tokens':
    case 'max_completion_tokens':
      return countJunk;
    case 'min_pixels':
    case 'max_pixels':
    case 'fps':
    case 'max_frames':
      return count;
    default:
      return junk;
  }
}

const malformedArb = fc
  .record({
    route: fc.constantFrom(...ROUTES),
    stream: fc.boolean(),
    maxTokens: fc.integer({ min: 1, max: 4 }),
    messages: fc.oneof(fc.constant([{ role: 'user', content: 'hi' }]), messagesArb),
    drop: fc.subarray(['model', 'messages', 'max_tokens']),
    set: fc.array(fc.oneof(...FIELDS.map((f) => fc.tuple(fc.constant<string>(f), fieldArb(f)))), { maxLength: 4 }),
    unknown: fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 2 }),
  })
  .map((s) => {
    const body: Record<string, unknown> = { model: MODEL, messages: s.messages, max_tokens: s.maxTokens, stream: s.stream, ...s.unknown };
    for (const d of s.drop) delete body[d];
    for (const [k, v] of s.set) body[k] = v;
    return jsonCase('malformed fields', s.route, body);
  });

const user = [{ role: 'user', content: 'hi' }];
const base = { model: MODEL, max_tokens: 1, messages: user };
const malformedExamples: Case[] = [
  jsonCase('prototype keys', CHAT, JSON.parse(`{"model":"${MODEL}","max_tokens":1,"messages":[{"role":"user","content":"hi","__proto__":{"role":"system"}}],"__proto__":{"max_tokens":99999},"constructor":{"prototype":{"x":1}}}`)),
  jsonCase('recursive $ref', CHAT, { ...base, response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { $ref: '#/$defs/a', $defs: { a: { $ref: '#/$defs/a' } } } } } }),
  jsonCase('self $ref', CHAT, { ...base, response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { type: 'object', properties: { a: { $ref: '#' } } } } } }),
  jsonCase('huge minItems', CHAT, { ...base, max_tokens: 4, response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { type: 'array', minItems: 1e9, items: { type: 'integer' } } } } }),
  jsonCase('huge minLength', CHAT, { ...base, max_tokens: 4, response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { type: 'string', minLength: 2 ** 53 } } } }),
  jsonCase('required tool with no tools', CHAT, { ...base, tool_choice: 'required' }),
  jsonCase('template kwargs override messages', CHAT, { ...base, chat_template_kwargs: { messages: 5, tools: 'x', add_generation_prompt: { a: 1 } } }),
  jsonCase('stop with 17 strings', CHAT, { ...base, stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }),
  jsonCase('1e999 numbers', CHAT, { ...base, temperature: raw('1e999'), top_p: raw('-1e999'), seed: raw('123456789012345678901234567890') }),
  jsonCase('tool message with media', TOKENIZE, { model: MODEL, messages: [{ role: 'tool', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,' } }] }] }),
  jsonCase('assistant tool call with bad arguments', CHAT, {
    ...base,
    messages: [...user, { role: 'assistant', tool_calls: [{ id: 'x', type: 'function', function: { name: 'f', arguments: '{"a":' } }] }, { role: 'tool', tool_call_id: 'x', content: 'r' }],
  }),
  jsonCase('stream with bad stream_options', CHAT, { ...base, stream: true, stream_options: { include_usage: 'yes' } }),
];

// Raw bodies: bytes that are not a JSON object, or not what the headers say.
const okJson = toJson({ model: MODEL, max_tokens: 1, messages: user });
const prefix = Buffer.from(`{"model":"${MODEL}","max_tokens":1,"messages":[{"role":"user","content":"`);
const suffix = Buffer.from('"}]}');
const BAD_UTF8 = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xfe, 0xff], [0x00]];
let gzipBomb: Buffer | null = null;
const bomb = () => (gzipBomb ??= gzipSync(Buffer.alloc(100 * 1024 * 1024, 0x20)));

const rawBodyArb: fc.Arbitrary<Case> = fc.oneof(
  fc
    .record({ route: fc.constantFrom(...ROUTES), bad: fc.array(fc.constantFrom(...BAD_UTF8), { minLength: 1, maxLength: 4 }), text: fc.string({ maxLength: 10 }) })
    .map((s) => new Case('invalid UTF-8 in a string', s.route, Buffer.concat([prefix, Buffer.from(s.text), ...s.bad.map((b) => Buffer.from(b)), suffix]))),
  fc.record({ route: fc.constantFrom(...ROUTES), cut: fc.nat({ max: okJson.length - 1 }) }).map((s) => new Case('truncated JSON', s.route, Buffer.from(okJson.slice(0, s.cut)))),
  fc.record({ route: fc.constantFrom(...ROUTES), bytes: fc.uint8Array({ maxLength: 256 }) }).map((s) => new Case('random bytes', s.route, Buffer.from(s.bytes))),
  fc
    .record({ route: fc.constantFrom(...ROUTES), v: fc.jsonValue({ maxDepth: 3 }) })
    .map((s) => new Case('a JSON value that is not a request', s.route, Buffer.from(JSON.stringify(s.v) ?? 'null'))),
  fc
    .record({
      route: fc.constantFrom(...ROUTES),
      ct: fc.constantFrom<string | null>(
        null,
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/json; charset=utf-16',
        'application/json; charset=latin1',
        'application/xml',
        'application/json; charset=utf-8; boundary=',
        '*/*',
        'application/jsonx',
      ),
      utf16: fc.boolean(),
    })
    .map((s) => new Case('wrong content type', s.route, s.utf16 ? Buffer.from(`\ufeff${okJson}`, 'utf16le') : Buffer.from(okJson), { contentType: s.ct })),
  fc
    .record({
      route: fc.constantFrom(...ROUTES, '/v1/models', '/health', '/'),
      method: fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
    })
    .map((s) => new Case('odd method', s.route, s.method === 'GET' || s.method === 'HEAD' ? null : Buffer.from(okJson), { method: s.method })),
  fc
    .record({
      route: fc.oneof(
        fc.constantFrom('/v1/chat/completions/', '/v1//chat/completions', '/V1/CHAT/COMPLETIONS', '/v1/chat/completions?x=%ff', '/v1/models/..%2f..%2f..%2fetc%2fpasswd', '/v1/models/%00', '/%2e%2e/%2e%2e/etc/passwd'),
        fc.webPath().map((p) => `/v1/models/${p}`),
      ),
      method: fc.constantFrom('GET', 'POST'),
    })
    .map((s) => new Case('odd path', s.route, s.method === 'GET' ? null : Buffer.from(okJson), { method: s.method })),
  fc
    .record({ route: fc.constantFrom(...ROUTES), enc: fc.constantFrom('gzip', 'deflate', 'br', 'identity, gzip', 'x-junk') })
    .map((s) => new Case('content-encoding that the body is not', s.route, Buffer.from(okJson), { headers: { 'content-encoding': s.enc } })),
);

const rawBodyExamples: Case[] = [
  new Case('empty body', CHAT, Buffer.alloc(0)),
  new Case('BOM before JSON', CHAT, Buffer.from(`\ufeff${okJson}`)),
  new Case('duplicate keys', CHAT, Buffer.from(`{"model":"${MODEL}","model":5,"max_tokens":1,"messages":[],"messages":[{"role":"user","content":"hi"}]}`)),
  new Case('gzip bomb (100 MiB of spaces)', CHAT, null, { headers: { 'content-encoding': 'gzip' } }),
  new Case('a body over --max-body (65 MiB)', CHAT, null, { expect: { mayCloseEarly: true } }),
  new Case('a chunked body over --max-body (65 MiB)', TOKENIZE, null, { chunked: true, expect: { mayCloseEarly: true } }),
  new Case('NUL in JSON', TOKENIZE, Buffer.from(okJson.replace('"hi"', '"h\u0000i"'))),
  new Case('lone surrogate escape', TOKENIZE, Buffer.from(okJson.replace('"hi"', '"\\ud800\\udbff"'))),
  new Case('content-length: 0 with JSON type', TOKENIZE, Buffer.alloc(0)),
];
// Built on first use (they are large); the Case objects above are placeholders for label and route.
function materialize(c: Case): Case {
  if (c.body !== null) return c;
  if (c.label.startsWith('gzip bomb')) return new Case(c.label, c.route, bomb(), c.opts);
  if (c.label.includes('over --max-body')) {
    const pad = Buffer.alloc(65 * 1024 * 1024, 0x20);
    return new Case(c.label, c.route, Buffer.concat([Buffer.from(okJson.slice(0, -1)), Buffer.from(',"x":"'), pad, Buffer.from('"}')]), c.opts);
  }
  return c;
}

// Deep nesting, written as text: JSON.stringify itself would overflow the stack.
const DEEP_WHERE = [
  'unknown field (arrays)',
  'unknown field (objects)',
  'message content (arrays)',
  'content part field',
  'chat_template_kwargs',
  'schema properties',
  'schema items',
  'schema anyOf',
  'schema $defs chain',
  'tool parameters',
  'tool call arguments (a JSON string)',
  'message name',
  'stop',
  'messages (arrays)',
] as const;

function deepCase(where: (typeof DEEP_WHERE)[number], depth: number, route: string): Case {
  const arr = (d: number, leaf: string) => '['.repeat(d) + leaf + ']'.repeat(d);
  const obj = (d: number, leaf: string) => '{"a":'.repeat(d) + leaf + '}'.repeat(d);
  const head = `{"model":"${MODEL}","max_tokens":1`;
  const msgs = `"messages":[{"role":"user","content":"hi"}]`;
  const props = (d: number) => '{"type":"object","properties":{"a":'.repeat(d) + '{"type":"string"}' + '}}'.repeat(d);
  const rf = (s: string) => `"response_format":{"type":"json_schema","json_schema":{"name":"d","schema":${s}}}`;
  let text: string;
  switch (where) {
    case 'unknown field (arrays)':
      text = `${head},${msgs},"x":${arr(depth, '1')}}`;
      break;
    case 'unknown field (objects)':
      text = `${head},${msgs},"x":${obj(depth, '1')}}`;
      break;
    case 'message content (arrays)':
      text = `${head},"messages":[{"role":"user","content":${arr(depth, '"hi"')}}]}`;
      break;
    case 'content part field':
      text = `${head},"messages":[{"role":"user","content":[{"type":"text","text":"hi","x":${obj(depth, '1')}}]}]}`;
      break;
    case 'chat_template_kwargs':
      text = `${head},${msgs},"chat_template_kwargs":{"enable_thinking":${obj(depth, 'true')},"x":${arr(depth, '1')}}}`;
      break;
    case 'schema properties':
      text = `${head},${msgs},${rf(props(depth))}}`;
      break;
    case 'schema items':
      text = `${head},${msgs},${rf('{"type":"array","items":'.repeat(depth) + '{}' + '}'.repeat(depth))}}`;
      break;
    case 'schema anyOf':
      text = `${head},${msgs},${rf('{"anyOf":['.repeat(depth) + '{"type":"null"}' + ']}'.repeat(depth))}}`;
      break;
    case 'schema $defs chain': {
      const defs = Array.from({ length: depth }, (_, i) => `"a${i}":{"$ref":"#/$defs/a${i + 1}"}`).join(',');
      text = `${head},${msgs},${rf(`{"$ref":"#/$defs/a0","$defs":{${defs},"a${depth}":{"type":"string"}}}`)}}`;
      break;
    }
    case 'tool parameters':
      text = `${head},${msgs},"tools":[{"type":"function","function":{"name":"f","parameters":${props(depth)}}}],"tool_choice":"required"}`;
      break;
    case 'tool call arguments (a JSON string)':
      text = `${head},"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"${'{\\"a\\":'.repeat(depth)}1${'}'.repeat(depth)}"}}]},{"role":"tool","tool_call_id":"c","content":"ok"}]}`;
      break;
    case 'message name':
      text = `${head},"messages":[{"role":"user","content":"hi","name":${obj(depth, '"n"')}}]}`;
      break;
    case 'stop':
      text = `${head},${msgs},"stop":${arr(depth, '"x"')}}`;
      break;
    case 'messages (arrays)':
      text = `${head},"messages":${arr(depth, '{"role":"user","content":"hi"}')}}`;
      break;
  }
  return new Case(`deep nesting (${depth} levels) in ${where}`, route, Buffer.from(text));
}

const deepArb = fc
  .record({
    where: fc.constantFrom(...DEEP_WHERE),
    depth: fc.oneof(fc.integer({ min: 100, max: 20_000 }), fc.constantFrom(50_000, 200_000)),
    route: fc.constantFrom(...ROUTES),
  })
  .map((s) => deepCase(s.where, s.depth, s.route));
const deepExamples = [...DEEP_WHERE.map((w) => deepCase(w, 20_000, CHAT)), deepCase('unknown field (arrays)', 1_000_000, CHAT), deepCase('unknown field (objects)', 100_000, TOKENIZE)];

// Bad media: junk bytes, damaged real files, bomb headers, broken data URIs, absurd budgets.
const MIMES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/svg+xml', 'image/tiff', 'video/mp4', 'video/webm', 'application/pdf', 'text/plain', 'application/octet-stream', 'x/y'];
const PART_KINDS = ['image_url', 'image', 'video_url', 'video', 'file', 'pdf'] as const;
const realFile = fc.constantFrom(...media);

function mediaBody(kind: (typeof PART_KINDS)[number], url: string | string[], params: Record<string, unknown>, top: Record<string, unknown>, stream = false) {
  let part: Record<string, unknown>;
  if (kind === 'image_url') part = { type: 'image_url', image_url: { url }, ...params };
  else if (kind === 'video_url') part = { type: 'video_url', video_url: { url }, ...params };
  else if (kind === 'file') part = { type: 'file', file: { filename: 'f', file_data: url }, ...params };
  else part = { type: kind, [kind]: url, ...params };
  return { model: MODEL, max_tokens: 2, ...top, ...(stream ? { stream: true } : {}), messages: [{ role: 'user', content: [part, { type: 'text', text: 'What is it?' }] }] };
}

const paramsArb = fc.dictionary(fc.constantFrom('min_pixels', 'max_pixels', 'fps', 'max_frames', 'pages'), fc.oneof(count, fc.constantFrom<unknown>(1e12, 2 ** 40, [1, 2, 1e9], [0], [-1])), {
  maxKeys: 2,
});

const sourceArb: fc.Arbitrary<{ label: string; url: string | string[] }> = fc.oneof(
  fc.record({ mime: fc.constantFrom(...MIMES), bytes: fc.uint8Array({ maxLength: 2048 }) }).map((s) => ({ label: `random bytes as ${s.mime}`, url: toDataUri(Buffer.from(s.bytes), s.mime) })),
  fc.record({ f: realFile, cut: fc.nat() }).map((s) => ({ label: `${s.f.name} truncated`, url: toDataUri(s.f.bytes.subarray(0, s.cut % s.f.bytes.length), s.f.mime) })),
  fc
    .record({ f: realFile, flips: fc.array(fc.tuple(fc.oneof(fc.nat({ max: 64 }), fc.nat()), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }) })
    .map((s) => {
      const b = Buffer.from(s.f.bytes);
      for (const [pos, val] of s.flips) b[pos % b.length] = val;
      return { label: `${s.f.name} corrupted`, url: toDataUri(b, s.f.mime) };
    }),
  fc
    .record({ w: fc.oneof(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.constantFrom(0, 65_535, 100_000, 2 ** 31 - 1)), h: fc.oneof(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.constantFrom(0, 65_535, 100_000, 2 ** 31 - 1)) })
    .map((s) => ({ label: `bomb PNG ${s.w}x${s.h}`, url: toDataUri(bombPng(s.w, s.h), 'image/png') })),
  fc.record({ f: realFile, mime: fc.constantFrom(...MIMES) }).map((s) => ({ label: `${s.f.name} labelled ${s.mime}`, url: toDataUri(s.f.bytes, s.mime) })),
  fc
    .record({ f: realFile, junk: fc.constantFrom('!', '%', ' ', '\n', '=', '-', '_', '==', '\u0000', 'é'), at: fc.nat() })
    .map((s) => {
      const b64 = s.f.bytes.toString('base64');
      const i = s.at % (b64.length + 1);
      return { label: `${s.f.name} with bad base64`, url: `data:${s.f.mime};base64,${b64.slice(0, i)}${s.junk}${b64.slice(i)}` };
    }),
  fc.constantFrom(
    ...['data:', 'data:;base64,', 'data:image/png;base64', 'data:image/png,rawtext', 'data:image/png;charset=utf-8;base64,AAAA', 'data:image/png;base64,', 'data:,', 'data:image/png;base64,====', 'iVBORw0KGgo=', 'AAAA'].map((url) => ({
      label: 'odd data URI',
      url,
    })),
  ),
  fc.record({ f: realFile }).map((s) => ({ label: `${s.f.name} as plain Base64`, url: s.f.bytes.toString('base64') })),
  fc
    .record({ sizes: fc.array(fc.constantFrom(...media.filter((m) => m.kind === 'image')), { minLength: 1, maxLength: 40 }) })
    .map((s) => ({ label: `a frame list of ${s.sizes.length}`, url: s.sizes.map((m) => toDataUri(m.bytes, m.mime)) })),
);

const badMediaArb = fc
  .record({ route: fc.constantFrom(...ROUTES), kind: fc.constantFrom(...PART_KINDS), src: sourceArb, params: paramsArb, top: paramsArb, stream: fc.boolean() })
  .map((s) => jsonCase(`bad media (${s.src.label}) as ${s.kind}`, s.route, mediaBody(s.kind, s.src.url, s.params, s.top, s.stream)));

const png = media.find((m) => m.name === 'example.png')!;
const svgWithRef = () => `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64"><image xlink:href="file://${canaryPng}" width="64" height="64"/></svg>`;
const badMediaExamples = () => [
  jsonCase('huge min_pixels', CHAT, mediaBody('image_url', toDataUri(png.bytes, png.mime), { min_pixels: 1e12 }, {})),
  jsonCase('huge max_pixels', CHAT, mediaBody('image_url', toDataUri(png.bytes, png.mime), {}, { max_pixels: 2 ** 53 })),
  jsonCase('bomb PNG 100000x100000', TOKENIZE, mediaBody('image_url', toDataUri(bombPng(100_000, 100_000), 'image/png'), {}, {})),
  jsonCase('bomb PNG 2^31-1 square', CHAT, mediaBody('image', toDataUri(bombPng(2 ** 31 - 1, 2 ** 31 - 1), 'image/png'), {}, {})),
  jsonCase('SVG that references the canary', TOKENIZE, mediaBody('image_url', toDataUri(svgWithRef(), 'image/svg+xml'), {}, {})),
  jsonCase('SVG that references the canary', CHAT, mediaBody('image_url', toDataUri(svgWithRef(), 'image/svg+xml'), {}, {})),
  jsonCase('PDF pages far out of range', CHAT, mediaBody('file', toDataUri(media.find((m) => m.kind === 'pdf')!.bytes, 'application/pdf'), { pages: [1e9, -1, 0] }, {})),
  jsonCase('40 frames', TOKENIZE, mediaBody('video', Array.from({ length: 40 }, () => toDataUri(png.bytes, png.mime)), {}, {})),
  jsonCase('video with fps 1e9', TOKENIZE, mediaBody('video_url', toDataUri(media.find((m) => m.kind === 'video')!.bytes, 'video/mp4'), { fps: 1e9, max_frames: 2 ** 31 }, {})),
];

// Forbidden sources: private addresses in every spelling, paths outside the allowed folder,
// links out of it, and playlists whose entries point at the canary.
const PRIVATE_HOSTS = [
  '127.0.0.1',
  'localhost',
  'LOCALHOST',
  '127.1',
  '0x7f.1',
  '0x7f000001',
  '017700000001',
  '0177.0.0.1',
  '2130706433',
  '127.000.000.001',
  '%31%32%37.0.0.1',
  '0',
  '0.0.0.0',
  '[::1]',
  '[0:0:0:0:0:0:0:1]',
  '[::]',
  '[::ffff:127.0.0.1]',
  '[::ffff:7f00:1]',
  '[0:0:0:0:0:ffff:7f00:1]',
  '[::ffff:0:7f00:1]',
  '[::ffff:0:127.0.0.1]',
  '[::127.0.0.1]',
  '[64:ff9b::7f00:1]',
  '[64:ff9b::127.0.0.1]',
  '[64:ff9b:1::7f00:1]',
  '[64:ff9b:1::127.0.0.1]',
  '[2002:7f00:1::]',
  '[::ffff:169.254.169.254]',
  '[64:ff9b::a9fe:a9fe]',
  '[64:ff9b:1::a9fe:a9fe]',
  '[fe80::1]',
  '[fc00::1]',
  '[fd00::1]',
  '169.254.169.254',
  '10.0.0.1',
  '172.16.0.1',
  '192.168.1.1',
  '100.64.0.1',
  '198.18.0.1',
  '224.0.0.1',
  '255.255.255.255',
];
const privateUrlArb = fc
  .record({
    host: fc.constantFrom(...PRIVATE_HOSTS),
    port: fc.constantFrom('canary', '', ':80', ':1'),
    file: fc.constantFrom('x.png', 'latest/meta-data/', 'clip.mp4', 'doc.pdf'),
    scheme: fc.constantFrom('http', 'https', 'HTTP'),
    kind: fc.constantFrom(...PART_KINDS),
    route: fc.constantFrom(...ROUTES),
  })
  .map((s) => {
    const port = s.port === 'canary' ? `:${canaryHost.port}` : s.port;
    const url = `${s.scheme}://${s.host}${port}/${s.file}`;
    return jsonCase(`private URL`, s.route, mediaBody(s.kind, url, {}, {}), { refuse: true, forbidden: true });
  });

const outsideSpellings = () => {
  const rel = path.relative(REPO, canaryMp4);
  const viaDots = `${allowed}/../outside/canary.mp4`;
  return [
    canaryMp4,
    `file://${canaryMp4}`,
    `file://localhost${canaryMp4}`,
    `file:${canaryMp4}`,
    `FILE://${canaryMp4}`,
    ` file://${canaryMp4}`,
    `file://${canaryMp4}?x=1`,
    `file://${canaryMp4}#f`,
    `file://${canaryMp4.replace(/\//g, '%2f')}`,
    `file://${canaryMp4}%00.png`,
    `/${canaryMp4}`,
    `${canaryMp4}/.`,
    viaDots,
    `file://${viaDots}`,
    `file://${allowed}/%2e%2e/outside/canary.mp4`,
    `file://${allowed}/..%2foutside%2fcanary.mp4`,
    `${allowed}/./../outside/./canary.mp4`,
    rel,
    `./${rel}`,
    `${allowed}/link.mp4`,
    `file://${allowed}/link.png`,
    `${allowed}/linkdir/canary.mp4`,
    `file://${allowed}/linkdir/canary.png`,
    `file://${allowed}/linkdir/../linkdir/canary.mp4`,
    canaryPng,
    `${allowed}/zero.png`,
    '/dev/zero',
    '/dev/stdin',
    '/proc/self/environ',
    '/proc/self/cwd/package.json',
    '/etc/passwd',
    `concat:${canaryMp4}`,
    `subfile,,start,0,end,0,,:${canaryMp4}`,
    `file://${allowed}/evil.m3u8`,
    `${allowed}/evil-rel.m3u8`,
    `file://${allowed}/evil-hls.mp4`,
    `${allowed}/evil.ffconcat`,
    `file://${allowed}/evil-concat.mp4`,
    '\\\\server\\share\\x.png',
    'gopher://127.0.0.1/x',
    'ftp://127.0.0.1/x.png',
    'tcp://127.0.0.1:1',
    'pipe:0',
    'fd:3',
  ];
};

const playlists = () => {
  const hls = (t: string) => `#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:4.24,\n${t}\n#EXT-X-ENDLIST\n`;
  return [
    `#EXTM3U\n#EXTINF:1,\nfile://${canaryMp4}\n`,
    hls(canaryMp4),
    hls(`file://${canaryMp4}`),
    hls('../outside/canary.mp4'),
    hls(`${allowed}/link.mp4`),
    `ffconcat version 1.0\nfile '${canaryMp4}'\n`,
    `ffconcat version 1.0\nfile 'file:${canaryMp4}'\n`,
    `ffconcat version 1.0\nfile 'subfile,,start,0,end,0,,:${canaryMp4}'\n`,
  ];
};
const PLAYLIST_MIMES = ['video/mp4', 'application/vnd.apple.mpegurl', 'application/x-mpegURL', 'video/x-m3u8', 'video/webm', 'image/png', 'application/octet-stream'];

const sourcesArb = () =>
  fc.oneof(
    privateUrlArb,
    fc
      .record({ src: fc.constantFrom(...outsideSpellings()), kind: fc.constantFrom(...PART_KINDS), route: fc.constantFrom(...ROUTES) })
      .map((s) => jsonCase('a path outside the allowed folder', s.route, mediaBody(s.kind, s.src, {}, {}), { refuse: true })),
    fc
      .record({ pl: fc.constantFrom(...playlists()), mime: fc.constantFrom(...PLAYLIST_MIMES), kind: fc.constantFrom(...PART_KINDS), route: fc.constantFrom(...ROUTES) })
      .map((s) => jsonCase('a playlist pointing at the canary', s.route, mediaBody(s.kind, toDataUri(s.pl, s.mime), {}, {}), { refuse: true })),
  );
const sourcesExamples = () => [
  ...['[::ffff:0:7f00:1]', '[64:ff9b:1::7f00:1]', '169.254.169.254', '0x7f.1', '2130706433'].map((h) =>
    jsonCase('private URL', TOKENIZE, mediaBody('image_url', `http://${h}:${canaryHost.port}/x.png`, {}, {}), { refuse: true, forbidden: true }),
  ),
  jsonCase('a playlist pointing at the canary', TOKENIZE, mediaBody('video_url', toDataUri(playlists()[1], 'video/mp4'), {}, {}), { refuse: true }),
  jsonCase('a playlist pointing at the canary', CHAT, mediaBody('video_url', toDataUri(playlists()[0], 'video/mp4'), {}, {}), { refuse: true }),
  jsonCase('a playlist pointing at the canary', TOKENIZE, mediaBody('video_url', toDataUri(playlists()[5], 'video/mp4'), {}, {}), { refuse: true }),
  ...[`file://${allowed}/evil.m3u8`, `${allowed}/evil-hls.mp4`, `${allowed}/evil.ffconcat`, `${allowed}/link.mp4`, `${allowed}/linkdir/canary.png`, `${allowed}/../outside/canary.mp4`, '/proc/self/environ'].map((src) =>
    jsonCase('a path outside the allowed folder', TOKENIZE, mediaBody('video_url', src, {}, {}), { refuse: true }),
  ),
  jsonCase('a FIFO in the allowed folder', TOKENIZE, mediaBody('image_url', `file://${allowed}/fifo.png`, {}, {})),
];

// Long text: big strings in every place a string fits.
const LONG_WHERE = ['content', 'text part', 'system message', 'tool description', 'stop', 'model', 'unknown field', 'image URL', 'assistant reasoning'] as const;
function longCase(where: (typeof LONG_WHERE)[number], unit: string, chars: number, route: string): Case {
  const s = unit.repeat(Math.ceil(chars / unit.length)).slice(0, chars);
  const msg = (content: unknown) => [{ role: 'user', content }];
  const b: Record<string, unknown> = { model: MODEL, max_tokens: 1, messages: msg('hi') };
  if (where === 'content') b.messages = msg(s);
  else if (where === 'text part') b.messages = msg([{ type: 'text', text: s }]);
  else if (where === 'system message') b.messages = [{ role: 'system', content: s }, ...msg('hi')];
  else if (where === 'tool description') b.tools = [{ type: 'function', function: { name: 'f', description: s, parameters: { type: 'object' } } }];
  else if (where === 'stop') b.stop = [s.slice(0, chars / 4), s.slice(0, chars / 8)];
  else if (where === 'model') b.model = s;
  else if (where === 'unknown field') b.x = s;
  else if (where === 'image URL') b.messages = msg([{ type: 'image_url', image_url: { url: `http://example.com/${s}` } }]);
  else b.messages = [...msg('hi'), { role: 'assistant', content: 'a', reasoning_content: s }, ...msg('again')];
  return jsonCase(`${chars} chars of ${JSON.stringify(unit)} in ${where}`, route, b);
}
const longArb = fc
  .record({
    where: fc.constantFrom(...LONG_WHERE),
    unit: fc.oneof(fc.constantFrom('x', 'a b ', '漢', '😀', 'e\u0301', '<|im_start|>', '{{ x }}'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 })),
    chars: fc.constantFrom(500_000, 100_000),
    route: fc.constantFrom(...ROUTES),
  })
  .map((s) => longCase(s.where, s.unit, s.chars, s.route));
const longExamples = [longCase('content', 'x', 500_000, TOKENIZE), longCase('content', 'a b ', 500_000, CHAT), longCase('text part', '漢', 500_000, TOKENIZE), longCase('unknown field', 'x', 500_000, CHAT)];

// ---------------------------------------------------------------------------------------------
// the properties

test('fuzz: malformed fields, wrong types, odd roles and parts, tool and schema junk', { skip: noFfmpeg }, async () => {
  await fuzz('malformed', malformedArb, runs(2.5), malformedExamples, 1);
});

test('fuzz: bodies that are not JSON objects, wrong content types and encodings, odd routes', { skip: noFfmpeg }, async () => {
  await fuzz('raw bodies', rawBodyArb, runs(1), rawBodyExamples.map(materialize), 2);
});

test('fuzz: deeply nested JSON in every field', { skip: noFfmpeg }, async () => {
  await fuzz('deep nesting', deepArb, runs(0.5), deepExamples, 3);
});

test('fuzz: bad media (junk bytes, damaged files, bombs, broken data URIs, absurd budgets)', { skip: noFfmpeg }, async () => {
  await fuzz('bad media', badMediaArb, runs(2), badMediaExamples(), 4);
});

test('fuzz: forbidden sources (private addresses, outside paths, symlinks, playlists)', { skip: noFfmpeg }, async () => {
  await fuzz('forbidden sources', sourcesArb(), runs(2), sourcesExamples(), 5);
});

test('fuzz: very long strings (100k and 500k characters)', { skip: noFfmpeg }, async () => {
  await fuzz('long text', longArb, runs(0.1), longExamples, 6);
});

test('a media host that sends one byte every 2 s does not hold up a text chat', { skip: noFfmpeg }, async () => {
  let sawRequest: () => void = () => {};
  const requested = new Promise<void>((r) => (sawRequest = r));
  const timers = new Set<NodeJS.Timeout>();
  const dribble = http.createServer((req, res) => {
    sawRequest();
    res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': 1_000_000 });
    res.write(png.bytes.subarray(0, 8));
    const t = setInterval(() => res.write(Buffer.from([0])), 2000);
    timers.add(t);
    res.on('close', () => clearInterval(t));
  });
  await new Promise<void>((r) => dribble.listen(0, '127.0.0.1', r));
  const slowUrl = `http://127.0.0.1:${(dribble.address() as AddressInfo).port}/slow.png`;
  const slowAbort = new AbortController();
  const post = (body: unknown, signal: AbortSignal) => fetch(`${slowServer.url}${CHAT}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
  const slow = post(mediaBody('image_url', slowUrl, {}, {}), slowAbort.signal).then(
    (r) => r.text(),
    () => 'aborted',
  );
  try {
    await Promise.race([requested, new Promise((_, rej) => setTimeout(() => rej(new Error('the server never fetched from the slow host')), 15_000))]);
    await new Promise((r) => setTimeout(r, 500));
    const t0 = performance.now();
    let status: number | string;
    try {
      const r = await post({ model: MODEL, max_tokens: 2, messages: user }, AbortSignal.timeout(20_000));
      await r.text();
      status = r.status;
    } catch (e) {
      status = (e as Error).name;
    }
    const ms = Math.round(performance.now() - t0);
    console.log(`slow media host: a text chat took ${ms} ms (status ${status}) while another request read from a host sending 1 byte every 2 s`);
    assert.equal(status, 200);
    assert.ok(ms < 5000, `the text chat took ${ms} ms behind a request reading a slow media host`);
  } finally {
    slowAbort.abort();
    await slow;
    for (const t of timers) clearInterval(t);
    dribble.closeAllConnections();
    await new Promise<void>((r) => dribble.close(() => r()));
  }
  assert.ok(slowServer.alive(), 'the second server exited');
});

test('the server is alive and healthy after the fuzzing; summary', { skip: noFfmpeg }, async () => {
  await monitor.stop();
  const ok = monitor.samples.filter((s) => s.status === 200).map((s) => s.ms);
  const max = ok.length ? Math.max(...ok) : NaN;
  const p99 = quantile(ok, 0.99);
  const statuses = Object.fromEntries([...stats.statuses.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0]))));
  console.log(
    `fuzz: ${stats.requests} requests, statuses ${JSON.stringify(statuses)}, 5xx ${stats.fiveXx}, crashes ${stats.crashes}, canary reads ${stats.canaryReads}, path leaks ${stats.pathLeaks}, ` +
      `health ${monitor.samples.length} probes, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms (seed ${SEED}, runs ${RUNS})`,
  );
  console.log(`fuzz: slowest requests: ${slowest.map((s) => `${Math.round(s.ms)} ms ${s.what}`).join('; ')}`);
  console.log(`fuzz: slowest /health during a request: ${Math.round(worstHealth.ms)} ms, during ${worstHealth.during}`);
  assert.ok(main.alive(), `the server exited: ${JSON.stringify(main.exit)}`);
  const h = await fetch(`${main.url}/health`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(h.status, 200);
  assert.equal(stats.crashes, 0, `the server crashed ${stats.crashes} time(s):\n${crashLog.join('\n')}`);
  assert.ok(max <= HEALTH_BOUND_MS, `GET /health took up to ${max.toFixed(0)} ms (bound ${HEALTH_BOUND_MS} ms)`);
});
