/**
 * Serving benchmark (`npm run bench:serve`): a real `qvl serve` child process at the Qwen3-VL-4B
 * shape with random weights, driven over HTTP by the `openai` npm client, per weight type:
 *
 * 1. throughput: aggregate generated tokens/s with 1, 2, 4, 8 concurrent streams (short text
 *    prompts, `max_tokens`, temperature 0; tokens counted from each stream's usage), and the
 *    ratio against one stream (targets: 4 streams ≥ 3×, 8 streams ≥ 5×);
 * 2. image: first-token time of turn 1 and turn 2 of a conversation about one 1024×1024 picture
 *    (turn 2 sends turn 1's messages, the assistant's answer and a new question; target ≤ 3 s);
 * 3. gap: the longest pause between two tokens of a running stream while another request's
 *    1024×1024 picture is encoded and prefilled (target ≤ 2 s);
 * 4. the server's peak RSS (VmHWM of its process) and its /metrics, when it serves one.
 *
 *   npm run bench:serve -- [--quant q4,bf16] [--streams 1,2,4,8] [--max-tokens 128]
 *                          [--only throughput,image,gap] [--weights DIR] [--weights-q4 DIR]
 *                          [--threads N] [--isa avx2] [--parallel 8] [--context 8192] [--image-tokens 16]
 *                          [--cache-dir DIR] [--serve-args "<more qvl serve flags>"]
 *
 * Weights: `--weights DIR` is the BF16 checkpoint (default: the random 4B checkpoint that
 * bench/model-checkpoint.ts writes once into `<cache-dir>/4B`, cache-dir default
 * .tmp/bench-cache). q4 is that checkpoint quantized at load (`qvl serve --quant q4`), or with
 * `--weights-q4 DIR` a folder written by `qvl quantize --quant q4`, loaded as it is. The server
 * gets a temporary model folder of symlinks to the weights plus whatever the weights folder lacks
 * of the real Qwen3-VL chat template, processor and tokenizer configs (from test/fixtures/tiny;
 * tokenizer.json falls back to the bundled Qwen3 one); the weights folders are never modified.
 * The server runs with `--backend native` (a later `--serve-args "--backend auto"` overrides it);
 * `--isa` forces its kernel set (`qvl serve --isa`), e.g. avx2 to measure what an AVX2 CPU gets on
 * an AVX-512 machine. The "server ready" line gives the set that ran.
 * The server's stderr goes to a log file whose path is printed. The server is killed on exit,
 * on an error and on Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionCreateParamsStreaming, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import sharp from 'sharp';
import { INSTRUCTION_SETS } from '../src/kernels/select.ts';
import { formatBytes } from '../src/util/format-bytes.ts';
import { ensureCheckpoint } from './model-checkpoint.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'bin', 'qvl.mjs');
/** the real Qwen3-VL template and processor files */
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'tiny');
const SIDE_FILES = ['chat_template.json', 'preprocessor_config.json', 'tokenizer_config.json', 'generation_config.json'];
const MODEL = 'qvl-bench-4b';

type Quant = 'q4' | 'bf16';
type Part = 'throughput' | 'image' | 'gap';
const PARTS: Part[] = ['throughput', 'image', 'gap'];

const TARGETS = { streams4: 3, streams8: 5, turn2FirstTokenS: 3, gapS: 2 };

interface Args {
  quants: Quant[];
  streams: number[];
  maxTokens: number;
  only: Part[];
  weights: string;
  weightsQ4: string;
  threads?: number;
  isa?: string;
  parallel: number;
  context: number;
  imageTokens: number;
  cacheDir: string;
  /** further `qvl serve` flags */
  serveArgs: string[];
}

function list(v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

function ints(v: string, what: string): number[] {
  return list(v).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${what}: '${s}' is not a positive integer`);
    return n;
  });
}

function oneOf<T extends string>(v: string, allowed: readonly T[], what: string): T[] {
  return list(v).map((s) => {
    if (!allowed.includes(s as T)) throw new Error(`${what}: '${s}' is not one of ${allowed.join(', ')}`);
    return s as T;
  });
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    quants: ['q4', 'bf16'],
    streams: [1, 2, 4, 8],
    // answers of 128 tokens: with 32, the prefill of the streams' prompts (once per stream, so
    // eight times over with 8 streams) was a quarter of the 8-stream wall time, and the ratio
    // measured prompt handling more than decoding together
    maxTokens: 128,
    only: [...PARTS],
    weights: '',
    weightsQ4: '',
    parallel: 8,
    context: 8192,
    imageTokens: 16,
    cacheDir: path.join(ROOT, '.tmp', 'bench-cache'),
    serveArgs: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--quant') a.quants = oneOf(v(), ['q4', 'bf16'] as const, '--quant');
    else if (k === '--streams') a.streams = ints(v(), '--streams');
    else if (k === '--max-tokens') a.maxTokens = ints(v(), '--max-tokens')[0];
    else if (k === '--only') a.only = oneOf(v(), PARTS, '--only');
    else if (k === '--weights') a.weights = path.resolve(v());
    else if (k === '--weights-q4') a.weightsQ4 = path.resolve(v());
    else if (k === '--threads') a.threads = ints(v(), '--threads')[0];
    else if (k === '--isa') a.isa = oneOf(v(), INSTRUCTION_SETS, '--isa')[0];
    else if (k === '--parallel') a.parallel = ints(v(), '--parallel')[0];
    else if (k === '--context') a.context = ints(v(), '--context')[0];
    else if (k === '--image-tokens') a.imageTokens = ints(v(), '--image-tokens')[0];
    else if (k === '--cache-dir') a.cacheDir = path.resolve(v());
    else if (k === '--serve-args') a.serveArgs = v().split(/\s+/).filter(Boolean);
    else throw new Error(`unknown option ${k} (see the header of bench/serve.ts)`);
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// the server child process

interface Server {
  url: string;
  pid: number;
  proc: ChildProcess;
  logFile: string;
  exited: { code: number | null; signal: NodeJS.Signals | null } | null;
  tail(): string;
}

const servers = new Set<Server>();

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
async function stopServer(s: Server, graceMs = 5000): Promise<void> {
  servers.delete(s);
  if (s.exited) return;
  const gone = new Promise<void>((r) => s.proc.once('exit', () => r()));
  s.proc.kill('SIGTERM');
  const t = setTimeout(() => s.proc.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(t);
}

/** Last resort on exit (synchronous): no server outlives the benchmark. */
process.on('exit', () => {
  for (const s of servers) if (!s.exited) s.proc.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping the server`);
    void Promise.all([...servers].map((s) => stopServer(s, 2000))).finally(() => process.exit(130));
  });
}

/** A model folder the server can load: symlinks to `src`'s files plus the side files it lacks. */
function modelFolder(src: string, into: string): string {
  fs.mkdirSync(into, { recursive: true });
  for (const f of fs.readdirSync(src)) fs.symlinkSync(path.join(src, f), path.join(into, f));
  for (const f of SIDE_FILES) if (!fs.existsSync(path.join(into, f))) fs.copyFileSync(path.join(FIXTURE, f), path.join(into, f));
  return into;
}

async function startServer(a: Args, dir: string, quantAtLoad: boolean, logFile: string): Promise<Server> {
  const args = [
    BIN, 'serve', '-m', dir, '--host', '127.0.0.1', '--port', '0', '--served-model-name', MODEL,
    '--parallel', String(a.parallel), '--max-queue', String(Math.max(16, 2 * a.parallel)), '--context', String(a.context),
    '--shutdown-grace', '1',
    // the native kernels or a clear failure, never a silent fallback to the (20× slower) TypeScript backend
    '--backend', 'native',
    ...(quantAtLoad ? ['--quant', 'q4'] : []),
    ...(a.threads ? ['--threads', String(a.threads)] : []),
    ...(a.isa ? ['--isa', a.isa] : []),
    ...a.serveArgs,
  ];
  const log = fs.createWriteStream(logFile);
  log.write(`$ ${process.execPath} ${args.join(' ')}\n`);
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let tail = '';
  const s: Server = { url: '', pid: proc.pid ?? -1, proc, logFile, exited: null, tail: () => tail };
  servers.add(s);
  proc.on('exit', (code, signal) => {
    s.exited = { code, signal };
    log.end();
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    log.write(chunk);
    tail = (tail + chunk).slice(-8000);
  });
  const failed = (why: string) => new Error(`qvl serve ${why} (server log: ${logFile})\n${tail.slice(-3000)}`);
  const deadline = Date.now() + 20 * 60_000; // quantizing 4B at load on 2 cores takes minutes
  s.url = await new Promise<string>((resolve, reject) => {
    const onData = () => {
      const m = /listening on (http:\/\/\S+)/.exec(tail);
      if (m) {
        proc.stderr!.off('data', onData);
        resolve(m[1]);
      }
    };
    proc.stderr!.on('data', onData);
    proc.once('exit', (code, signal) => reject(failed(`exited (code ${code}, signal ${signal}) before listening`)));
  });
  let lastPct = '';
  while (true) {
    if (s.exited) throw failed(`exited while loading (${JSON.stringify(s.exited)})`);
    try {
      const r = await fetch(`${s.url}/health`, { signal: AbortSignal.timeout(5000) });
      const body = (await r.json()) as Record<string, unknown>;
      if (r.status === 200) {
        console.log(`  server ready: ${JSON.stringify(body)}`);
        break;
      }
      if (body.status === 'failed') throw failed('failed to load the model');
    } catch (e) {
      if ((e as Error).message.startsWith('qvl serve')) throw e;
      // not answering yet
    }
    const pct = /loading [^\n]*: (\d+)%\s*$/.exec(tail.trimEnd())?.[1];
    if (pct && pct !== lastPct && process.stdout.isTTY) process.stdout.write(`  loading ${(lastPct = pct)}%\r`);
    if (Date.now() > deadline) throw failed('did not become healthy in 20 minutes');
    await new Promise((r) => setTimeout(r, 500));
  }
  return s;
}

function procStatusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// requests

interface StreamResult {
  sent: number;
  /** arrival of the first chunk carrying generated text (or a tool call) */
  firstToken: number | null;
  /** arrival of every chunk carrying generated text (≈ one per token) */
  tokenTimes: number[];
  end: number;
  promptTokens: number;
  /** usage.prompt_tokens_details.cached_tokens, when the server reports it */
  cachedTokens: number | null;
  completionTokens: number;
  finish: string | null;
  text: string;
  aborted: boolean;
}

async function streamChat(
  client: OpenAI,
  body: Omit<ChatCompletionCreateParamsStreaming, 'model' | 'stream'>,
  o: { signal?: AbortSignal; onToken?: (n: number) => void } = {},
): Promise<StreamResult> {
  const r: StreamResult = { sent: performance.now(), firstToken: null, tokenTimes: [], end: 0, promptTokens: 0, cachedTokens: null, completionTokens: 0, finish: null, text: '', aborted: false };
  try {
    const stream = await client.chat.completions.create(
      { ...body, model: MODEL, stream: true, stream_options: { include_usage: true } },
      { signal: o.signal },
    );
    for await (const chunk of stream as AsyncIterable<ChatCompletionChunk>) {
      const t = performance.now();
      if (chunk.usage) {
        r.promptTokens = chunk.usage.prompt_tokens;
        r.completionTokens = chunk.usage.completion_tokens;
        r.cachedTokens = chunk.usage.prompt_tokens_details?.cached_tokens ?? null;
      }
      const c = chunk.choices[0];
      if (!c) continue;
      const d = c.delta as { content?: string | null; reasoning_content?: string; tool_calls?: unknown[] };
      const text = (d.content ?? '') + (d.reasoning_content ?? '');
      if (text || d.tool_calls?.length) {
        r.firstToken ??= t;
        r.tokenTimes.push(t);
        r.text += text;
        o.onToken?.(r.tokenTimes.length);
      }
      if (c.finish_reason) r.finish = c.finish_reason;
    }
  } catch (e) {
    if (!o.signal?.aborted) throw e;
    r.aborted = true;
  }
  r.end = performance.now();
  return r;
}

/** A short text prompt per stream (random weights rarely end early on any of them). */
const storyPrompt = (i: number) => `Tell me a long story about lighthouse keeper number ${i + 1} and the ${['storm', 'whale', 'map', 'clock', 'garden', 'ship', 'letter', 'bell'][i % 8]}.`;

/** A deterministic 1024×1024 PNG: gradients, a grid of coloured squares, a circle and stripes. */
async function makeImage(variant: number): Promise<string> {
  const N = 1024;
  const px = Buffer.alloc(N * N * 3);
  const cx = 512 + 100 * variant, cy = 480, rad = 220;
  for (let y = 0; y < N; y++) {
    for (let x = 0; x < N; x++) {
      const o = 3 * (y * N + x);
      let r = (x * 255) / N, g = (y * 255) / N, b = 128 + 64 * Math.sin((x + y + 37 * variant) / 40);
      if (x % 128 < 64 && y % 128 < 64) [r, g, b] = [((x >> 7) * 37 + variant * 50) % 256, ((y >> 7) * 53) % 256, ((x >> 7) * (y >> 7) * 19) % 256];
      if ((x - cx) ** 2 + (y - cy) ** 2 < rad * rad) [r, g, b] = [220, 40 + 30 * variant, 40];
      if (y > 900 && ((x >> 4) & 1)) [r, g, b] = [20, 20, 20];
      px[o] = r;
      px[o + 1] = g;
      px[o + 2] = b;
    }
  }
  const png = await sharp(px, { raw: { width: N, height: N, channels: 3 } }).png({ compressionLevel: 6 }).toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}

const imageMessage = (url: string, text: string): ChatCompletionMessageParam => ({
  role: 'user',
  content: [
    { type: 'image_url', image_url: { url } },
    { type: 'text', text },
  ],
});

// ---------------------------------------------------------------------------------------------
// the parts

const cached = (r: StreamResult) => (r.cachedTokens === null ? '' : ` (${r.cachedTokens} cached)`);
const s1 = (ms: number) => (ms / 1000).toFixed(1);
const s2 = (ms: number) => (ms / 1000).toFixed(2);
const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met');

function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((x, y) => x - y);
  return s[s.length >> 1];
}

function gaps(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]);
}

async function throughput(client: OpenAI, a: Args): Promise<void> {
  console.log(`  throughput: max_tokens ${a.maxTokens}, temperature 0, --parallel ${a.parallel}`);
  console.log(`    ${'streams'.padStart(7)} ${'tokens'.padStart(7)} ${'wall s'.padStart(7)} ${'tok/s'.padStart(7)} ${'× 1'.padStart(6)} ${'steady tok/s'.padStart(13)} ${'gap p50 ms'.padStart(11)} ${'1st tok s'.padStart(9)}  ${'prompt'.padStart(6)}  notes`);
  let base: number | null = null;
  for (const n of a.streams) {
    const t0 = performance.now();
    const rs = await Promise.all(
      Array.from({ length: n }, (_, i) => streamChat(client, { messages: [{ role: 'user', content: storyPrompt(i) }], max_tokens: a.maxTokens, temperature: 0 })),
    );
    const wall = Math.max(...rs.map((r) => r.end)) - t0;
    const tokens = rs.reduce((s, r) => s + r.completionTokens, 0);
    const rate = tokens / (wall / 1000);
    // steady state: the stretch in which every stream was producing tokens
    const from = Math.max(...rs.map((r) => r.firstToken ?? Infinity));
    const to = Math.min(...rs.map((r) => r.tokenTimes.at(-1) ?? -Infinity));
    const inWindow = rs.reduce((s, r) => s + r.tokenTimes.filter((t) => t > from && t <= to).length, 0);
    const steady = to - from > 500 && inWindow >= n ? `${(inWindow / ((to - from) / 1000)).toFixed(2)}` : 'n/a';
    const gapP50 = median(rs.flatMap((r) => gaps(r.tokenTimes)));
    const ttft = median(rs.map((r) => (r.firstToken ?? r.end) - r.sent));
    const short = rs.filter((r) => r.completionTokens < a.maxTokens);
    const notes = short.length ? `${short.length} stream(s) ended early (${short.map((r) => `${r.completionTokens} tok, ${r.finish}`).join('; ')})` : '';
    if (n === a.streams[0] && n === 1) base = rate;
    let ratio = '';
    let target = '';
    if (base !== null) {
      ratio = `${(rate / base).toFixed(2)}×`;
      if (n === 4) target = ` · target ≥ ${TARGETS.streams4}×: ${verdict(rate / base >= TARGETS.streams4)}`;
      if (n === 8) target = ` · target ≥ ${TARGETS.streams8}×: ${verdict(rate / base >= TARGETS.streams8)}`;
    }
    console.log(
      `    ${String(n).padStart(7)} ${String(tokens).padStart(7)} ${s1(wall).padStart(7)} ${rate.toFixed(2).padStart(7)} ${ratio.padStart(6)} ${steady.padStart(13)} ${gapP50.toFixed(0).padStart(11)} ${s2(ttft).padStart(9)}  ${String(rs[0].promptTokens).padStart(6)}  ${notes}${target}`,
    );
  }
  if (base === null) console.log('    (ratios need --streams to start with 1)');
}

async function imageTurns(client: OpenAI, a: Args, image: string): Promise<void> {
  console.log(`  image conversation: one 1024×1024 PNG, max_tokens ${a.imageTokens}`);
  const turn1: ChatCompletionMessageParam[] = [imageMessage(image, 'Describe this picture in detail.')];
  const r1 = await streamChat(client, { messages: turn1, max_tokens: a.imageTokens, temperature: 0 });
  const ft1 = r1.firstToken === null ? NaN : r1.firstToken - r1.sent;
  console.log(`    turn 1: first token ${s2(ft1)} s, ${r1.promptTokens} prompt tokens${cached(r1)}, ${r1.completionTokens} generated, done in ${s1(r1.end - r1.sent)} s`);
  const turn2: ChatCompletionMessageParam[] = [...turn1, { role: 'assistant', content: r1.text }, { role: 'user', content: 'Which colour is the circle, and where is it?' }];
  const r2 = await streamChat(client, { messages: turn2, max_tokens: a.imageTokens, temperature: 0 });
  const ft2 = r2.firstToken === null ? NaN : r2.firstToken - r2.sent;
  console.log(
    `    turn 2: first token ${s2(ft2)} s, ${r2.promptTokens} prompt tokens${cached(r2)}, ${r2.completionTokens} generated · target ≤ ${TARGETS.turn2FirstTokenS} s: ${verdict(ft2 <= TARGETS.turn2FirstTokenS * 1000)}${r2.firstToken === null ? ' (no token came)' : ''}`,
  );
}

async function gapUnderImage(client: OpenAI, a: Args, image: string): Promise<void> {
  const maxTokens = Math.max(64, a.context - 256);
  console.log(`  token gap: a text stream (max_tokens ${maxTokens}) while a 1024×1024 image request is encoded and prefilled`);
  const ctl = new AbortController();
  let count = 0;
  let wake: (() => void) | null = null;
  const waitFor = (n: number, ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      const check = () => {
        if (count >= n) {
          clearTimeout(t);
          resolve();
        } else wake = check;
      };
      check();
    });
  const A = streamChat(client, { messages: [{ role: 'user', content: storyPrompt(0) }], max_tokens: maxTokens, temperature: 0 }, {
    signal: ctl.signal,
    onToken: (n) => {
      count = n;
      const w = wake;
      wake = null;
      w?.();
    },
  });
  let aDone = false;
  void A.then(() => (aDone = true));
  await waitFor(4, 120_000);
  const bSent = performance.now();
  const countAtB = count;
  // a picture no earlier request sent: nothing about it can be cached
  const B = await streamChat(client, { messages: [imageMessage(image, 'What is in this picture?')], max_tokens: 1, temperature: 0 });
  const bDone = performance.now();
  await waitFor(count + 3, 30_000);
  ctl.abort();
  const r = await A;
  const t = r.tokenTimes;
  // the gaps between A's tokens that overlap [bSent, bDone]
  let maxGap = 0;
  let at = 0;
  for (let i = 1; i < t.length; i++) {
    if (t[i] < bSent || t[i - 1] > bDone) continue;
    if (t[i] - t[i - 1] > maxGap) [maxGap, at] = [t[i] - t[i - 1], t[i - 1]];
  }
  const before = gaps(t.filter((x) => x <= bSent));
  const during = t.filter((x) => x >= bSent && x <= bDone).length;
  const endedEarly = aDone && !r.aborted && (r.end < bDone);
  console.log(`    image request: ${B.promptTokens} prompt tokens${cached(B)}, first token after ${s1((B.firstToken ?? B.end) - B.sent)} s (alongside the stream)`);
  console.log(`    stream: ${countAtB} tokens before, ${during} during the image request (${s1(bDone - bSent)} s), median gap before ${median(before).toFixed(0)} ms`);
  console.log(
    `    longest gap while the image was encoded and prefilled: ${s2(maxGap)} s (${s1(at - bSent)} s after it was sent) · target ≤ ${TARGETS.gapS} s: ${verdict(maxGap <= TARGETS.gapS * 1000 && !endedEarly)}${endedEarly ? ` (the stream ended before the image request did: ${r.finish}, ${r.completionTokens} tokens)` : ''}`,
  );
}

async function serverFigures(s: Server): Promise<void> {
  const hwm = procStatusKb(s.pid, 'VmHWM');
  const rss = procStatusKb(s.pid, 'VmRSS');
  console.log(`  server memory: peak RSS (VmHWM) ${hwm === null ? 'n/a' : formatBytes(hwm * 1024)}, RSS now ${rss === null ? 'n/a' : formatBytes(rss * 1024)}`);
  try {
    const r = await fetch(`${s.url}/metrics`, { signal: AbortSignal.timeout(5000) });
    const text = await r.text();
    if (r.status !== 200) {
      console.log(`  /metrics: ${r.status} (not served)`);
      return;
    }
    const lines = text.split('\n').filter((l) => l && !l.startsWith('#') && !/_bucket\{/.test(l));
    console.log(`  /metrics (histogram buckets left out): ${lines.length} samples${lines.length > 40 ? ' (first 40)' : ''}`);
    for (const l of lines.slice(0, 40)) console.log(`    ${l}`);
  } catch (e) {
    console.log(`  /metrics: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------

async function runQuant(a: Args, quant: Quant, bf16Dir: string, tmp: string, images: () => Promise<[string, string]>): Promise<void> {
  const src = quant === 'q4' && a.weightsQ4 ? a.weightsQ4 : bf16Dir;
  const quantAtLoad = quant === 'q4' && !a.weightsQ4;
  const dir = modelFolder(src, path.join(tmp, `model-${quant}`));
  const logFile = path.join(tmp, `serve-${quant}.log`);
  console.log(`\n${quant}: ${src}${quantAtLoad ? ' quantized to q4 at load (--quant q4)' : ''}; server log ${logFile}`);
  const t0 = performance.now();
  let server: Server;
  try {
    server = await startServer(a, dir, quantAtLoad, logFile);
  } catch (e) {
    console.log(`  FAILED to start: ${(e as Error).message}`);
    process.exitCode = 1;
    for (const s of servers) await stopServer(s);
    return;
  }
  console.log(`  loaded in ${s1(performance.now() - t0)} s; server pid ${server.pid} at ${server.url}`);
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30 * 60_000 });
    // warm-up: threads started, mapped weights paged in
    const w = await streamChat(client, { messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0 });
    console.log(`  warm-up: ${w.completionTokens} tokens in ${s1(w.end - w.sent)} s`);
    if (a.only.includes('throughput')) await throughput(client, a);
    if (a.only.includes('image') || a.only.includes('gap')) {
      const [img1, img2] = await images();
      if (a.only.includes('image')) await imageTurns(client, a, img1);
      if (a.only.includes('gap')) await gapUnderImage(client, a, img2);
    }
    await serverFigures(server);
  } catch (e) {
    console.log(`  FAILED: ${(e as Error).message}`);
    console.log(`  server ${server.exited ? `exited ${JSON.stringify(server.exited)}` : 'alive'}; log ${logFile}; its end:\n${server.tail().slice(-3000)}`);
    process.exitCode = 1;
  } finally {
    await stopServer(server);
  }
}

async function main(): Promise<void> {
  let a: Args;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`bench:serve: ${(e as Error).message}`);
    process.exit(2);
  }
  const bf16Dir = a.weights || ensureCheckpoint(path.join(a.cacheDir, '4B'), '4B', (s) => console.log(s));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qvl-bench-serve-'));
  console.log('qvl serving benchmark: a `qvl serve` child process at the Qwen3-VL-4B shape (random weights), the openai client');
  console.log(`CPU: ${os.cpus()[0]?.model ?? '?'} × ${os.cpus().length}; memory ${formatBytes(os.totalmem())}, ${formatBytes(os.freemem())} free; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`targets: 4 streams ≥ ${TARGETS.streams4}× and 8 streams ≥ ${TARGETS.streams8}× one stream's tok/s; turn-2 first token ≤ ${TARGETS.turn2FirstTokenS} s; longest token gap under an image prefill ≤ ${TARGETS.gapS} s`);
  console.log(`work folder ${tmp} (server logs; model folders of symlinks)`);
  let imgs: Promise<[string, string]> | null = null;
  const images = () => (imgs ??= Promise.all([makeImage(0), makeImage(1)]));
  for (const q of a.quants) {
    await runQuant(a, q, bf16Dir, tmp, images);
  }
  // the logs stay; the symlink folders go
  for (const q of a.quants) fs.rmSync(path.join(tmp, `model-${q}`), { recursive: true, force: true });
}

await main();
