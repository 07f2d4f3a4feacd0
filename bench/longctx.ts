/**
 * Long-context benchmark (`npm run bench -- --only longctx`): at the 4B shape with 4-bit weights,
 * per KV cache type, decode tok/s at several context lengths, prefill tok/s at a long prompt
 * against a short one, the KV bytes per token, what 256K tokens need, and peak RSS.
 *
 *   npm run bench -- --only longctx [--kv bf16,f16,q8,f32] [--contexts 4096,32768,131072]
 *                    [--long-prefill 512,8192] [--prefill-layers 4] [--decode-steps 5]
 *                    [--weights DIR] [--threads N] [--isa best|avx2|…] [--cache-dir DIR]
 *
 * Decode at a long context times real decode steps over a cache whose earlier positions hold
 * synthetic keys and values (one real block of random rows copied into every block: every byte
 * is read from memory, as in a real cache; prefilling 128K tokens would take hours on 2 cores).
 * Prefill runs the real prompt path in chunks; to keep it to minutes it uses the first
 * `--prefill-layers` decoder layers of the same shape — the per-layer work, and so the ratio
 * of long to short prefill, is that of the full model (the head runs once, for the last token).
 * Weights: `--weights DIR` loads a checkpoint as it is (e.g. one written by `qvl quantize
 * --quant q4`); otherwise the cached random BF16 checkpoint is quantized to q4 at load.
 * Each KV type runs in its own process, so its peak RSS is its own.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { loadModelFromDir } from '../src/api/load-model.ts';
import { argmax } from '../src/kernels/ts/argmax.ts';
import { KvLayout, type KvType } from '../src/kernels/kv.ts';
import { adviseDontNeed, loadNativeBackend, mmapFile, type InstructionSet } from '../src/kernels/native/index.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { loadConfig } from '../src/model/config.ts';
import type { KVCache } from '../src/model/kv-cache.ts';
import type { Qwen3VLModel } from '../src/model/qwen3vl.ts';
import { formatBytes } from '../src/util/format-bytes.ts';
import { makeQuantConvert } from '../src/weights/quant-plan.ts';
import { ensureCheckpoint } from './model-checkpoint.ts';

const KV: KvType[] = ['bf16', 'f16', 'q8', 'f32'];
const TARGETS = { fit256kBytes: 22e9, decode32kVs4k: 0.6, prefillLongVsShort: 0.7 };
const FULL_CONTEXT = 262144;

interface Args {
  kv: KvType[];
  contexts: number[];
  longPrefill: number[];
  prefillLayers: number;
  decodeSteps: number;
  weights: string;
  threads: number;
  isa: InstructionSet;
  cacheDir: string;
  child: boolean;
}

interface ChildResult {
  kv: KvType;
  isa: string;
  bytesPerToken: number;
  decode: Record<string, number | string>;
  prefill: Record<string, number>;
  peakRssAfter: Record<string, number>;
  /** bytes of every weight tensor the model holds (mapped or not) */
  weightBytes: number;
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

export function parseLongContextArgs(argv: string[], root: string): Args {
  const a: Args = {
    kv: ['bf16', 'f16', 'q8'],
    contexts: [4096, 32768, 131072],
    longPrefill: [512, 8192],
    prefillLayers: 4,
    decodeSteps: 5,
    weights: '',
    threads: 2,
    isa: 'best',
    cacheDir: path.join(root, '.tmp', 'bench-cache'),
    child: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--kv') {
      a.kv = list(v()).map((t) => {
        if (!KV.includes(t as KvType)) throw new Error(`--kv: '${t}' is not one of ${KV.join(', ')}`);
        return t as KvType;
      });
    } else if (k === '--contexts') a.contexts = ints(v(), '--contexts');
    else if (k === '--long-prefill') a.longPrefill = ints(v(), '--long-prefill');
    else if (k === '--prefill-layers') a.prefillLayers = ints(v(), '--prefill-layers')[0];
    else if (k === '--decode-steps') a.decodeSteps = ints(v(), '--decode-steps')[0];
    else if (k === '--weights') a.weights = v();
    else if (k === '--threads') a.threads = ints(v(), '--threads')[0];
    else if (k === '--isa') a.isa = v() as InstructionSet;
    else if (k === '--cache-dir') a.cacheDir = v();
    else if (k === '--child') a.child = true;
    else if (k === '--only') v(); // the dispatcher's own flag
    else throw new Error(`unknown option ${k} (see the header of bench/longctx.ts)`);
  }
  return a;
}

const maxRss = () => process.resourceUsage().maxRSS * 1024;
const gc = () => (globalThis as { gc?: () => void }).gc?.();

let seed = 77;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
}
const randomIds = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 151000));

function gauss(n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - rand())), t = 2 * Math.PI * rand();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/** Fills positions [length, length+n) of every layer with copies of one block of real random rows. */
function fillSynthetic(model: Qwen3VLModel, cache: KVCache, n: number): void {
  const L = cache.layout;
  const scratch = model.newCache({ type: L.type });
  const rows = gauss(L.blockTokens * L.rowElems);
  for (let l = 0; l < L.layers; l++) scratch.append(l, rows, rows, L.blockTokens);
  const pool = cache.pool;
  const src = new Uint8Array(pool.slabs[pool.slabOf(scratch.blockIds[0])], pool.offsetOf(scratch.blockIds[0]), L.blockBytes).slice();
  scratch.release();
  const start = cache.blockIds.length;
  cache.fillSynthetic(n);
  for (const id of cache.blockIds.slice(start)) new Uint8Array(pool.slabs[pool.slabOf(id)], pool.offsetOf(id), L.blockBytes).set(src);
}

function load(a: Args, kv: KvType, layers?: number): Qwen3VLModel {
  const backend = loadNativeBackend({ threads: a.threads });
  backend.useInstructionSet(a.isa);
  const dir = a.weights || path.join(a.cacheDir, '4B');
  const cfg = loadConfig(dir);
  if (layers) cfg.text = { ...cfg.text, numLayers: Math.min(layers, cfg.text.numLayers) };
  let convert: ((w: WeightData, name: string) => WeightData) | undefined;
  if (!a.weights) {
    const quantize = makeQuantConvert({ mode: 'q4' });
    convert = (w, name) => {
      const out = quantize(w, name);
      if (out !== w && w.format !== 'q8' && w.format !== 'q4' && w.format !== 'fp8') {
        try {
          adviseDontNeed(w.data.buffer as ArrayBuffer, w.data.byteOffset, w.data.byteLength);
        } catch {
          // not a mapping
        }
      }
      return out;
    };
  }
  return loadModelFromDir(dir, { backend, map: mmapFile, convert, config: cfg, kv: { type: kv } });
}

/** Bytes of the typed arrays reachable from `root`, each counted once (a tied head shares the embedding's). */
function heldBytes(root: unknown): number {
  const seen = new Set<unknown>();
  const views = new Map<ArrayBufferLike, Array<[number, number]>>();
  const walk = (v: unknown): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (ArrayBuffer.isView(v)) {
      const list = views.get(v.buffer) ?? [];
      list.push([v.byteOffset, v.byteOffset + v.byteLength]);
      views.set(v.buffer, list);
      return;
    }
    for (const x of Array.isArray(v) ? v : Object.values(v)) walk(x);
  };
  walk(root);
  let bytes = 0;
  for (const list of views.values()) {
    // overlapping views of one buffer count once
    list.sort((x, y) => x[0] - y[0]);
    let end = -1;
    for (const [s, e] of list) {
      if (e > end) bytes += e - Math.max(s, end);
      end = Math.max(end, e);
    }
  }
  return bytes;
}

function childMain(a: Args): void {
  const kv = a.kv[0];
  const log = (s: string) => process.stderr.write(`[${kv}] ${s}\n`);
  const model = load(a, kv);
  const t = model.cfg.text;
  const layout = new KvLayout(kv, t.numLayers, t.numKvHeads, t.headDim);
  const res: ChildResult = {
    kv,
    isa: (model.backend as { isa?: string }).isa ?? '?',
    bytesPerToken: layout.bytesPerToken,
    decode: {},
    prefill: {},
    peakRssAfter: { load: maxRss() },
    weightBytes: heldBytes(model.weights),
  };
  for (const ctx of a.contexts) {
    const need = Math.ceil(ctx / layout.blockTokens + 1) * layout.blockBytes;
    const free = os.freemem();
    if (need > free - 1.5 * 2 ** 30) {
      res.decode[ctx] = `skipped: needs ${formatBytes(need)} of KV, ${formatBytes(free)} free`;
      log(`decode at ${ctx}: ${res.decode[ctx]}`);
      continue;
    }
    const cache = model.newCache();
    const t0 = performance.now();
    fillSynthetic(model, cache, ctx - 1);
    log(`filled ${ctx - 1} positions (${formatBytes(cache.bytes)}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    let id = 1000;
    const steps: number[] = [];
    for (let s = 0; s < a.decodeSteps + 1; s++) {
      const s0 = performance.now();
      id = argmax(model.decode(id, cache, 0));
      if (s > 0) steps.push((performance.now() - s0) / 1000); // the first step warms the pool
    }
    steps.sort((x, y) => x - y);
    res.decode[ctx] = 1 / steps[steps.length >> 1];
    res.peakRssAfter[`decode ${ctx}`] = maxRss();
    log(`decode at ${ctx}: ${(res.decode[ctx] as number).toFixed(2)} tok/s`);
    cache.release();
    gc();
  }
  if (a.longPrefill.length) {
    const small = load(a, kv, a.prefillLayers);
    for (const n of a.longPrefill) {
      const cache = small.newCache();
      const ids = randomIds(n);
      const s0 = performance.now();
      argmax(small.prefill({ ids }, cache).logits);
      res.prefill[n] = n / ((performance.now() - s0) / 1000);
      res.peakRssAfter[`prefill ${n}`] = maxRss();
      log(`prefill ${n} (${a.prefillLayers} layers): ${res.prefill[n].toFixed(1)} tok/s`);
      cache.release();
      gc();
    }
  }
  process.stdout.write(JSON.stringify(res) + '\n');
}

function runChild(a: Args, kv: KvType): ChildResult | string {
  const script = fileURLToPath(import.meta.url);
  const args = [
    '--expose-gc', '--import', 'tsx', script, '--child', '--kv', kv,
    '--contexts', a.contexts.join(','), '--long-prefill', a.longPrefill.join(',') || '0',
    '--prefill-layers', String(a.prefillLayers), '--decode-steps', String(a.decodeSteps),
    '--threads', String(a.threads), '--isa', a.isa, '--cache-dir', a.cacheDir,
    ...(a.weights ? ['--weights', a.weights] : []),
  ].filter((x) => x !== '0');
  const p = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 24 });
  const last = p.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as ChildResult;
  } catch {
    return `exit ${p.status}${p.signal ? ` (${p.signal})` : ''}`;
  }
}

const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
const pct = (x: number) => `${Math.round(100 * x)}%`;

export function longContextMain(a: Args): void {
  if (a.child) return childMain(a);
  if (!a.weights) ensureCheckpoint(path.join(a.cacheDir, '4B'), '4B', (s) => console.log(s));
  const nb = loadNativeBackend({ threads: a.threads });
  const isa = nb.useInstructionSet(a.isa);
  nb.useInstructionSet('best');
  console.log(`qvl long-context benchmark: Qwen3-VL-4B shape, q4 weights (${a.weights || 'quantized at load from the cached BF16 checkpoint'})`);
  console.log(`kernels: ${isa}; ${a.threads} threads; CPU: ${os.cpus()[0]?.model ?? '?'}; memory ${formatBytes(os.totalmem())}, ${formatBytes(os.freemem())} free; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`decode: median of ${a.decodeSteps} steps over a cache filled to the context; prefill: ${a.prefillLayers} of 36 decoder layers, chunks of 512\n`);
  for (const kv of a.kv) {
    const r = runChild(a, kv);
    if (typeof r === 'string') {
      console.log(`${kv}: the run failed (${r})`);
      continue;
    }
    console.log(`KV ${kv}: ${formatBytes(r.bytesPerToken)} per token (${r.bytesPerToken} bytes); weights ${gb(r.weightBytes)} (${formatBytes(r.weightBytes)})`);
    const fit = r.weightBytes + FULL_CONTEXT * r.bytesPerToken;
    console.log(
      `  256K tokens: ${gb(FULL_CONTEXT * r.bytesPerToken)} of KV + ${gb(r.weightBytes)} of weights = ${gb(fit)} (${formatBytes(fit)}) · target ≤ ${gb(TARGETS.fit256kBytes)}: ${fit <= TARGETS.fit256kBytes ? 'within' : 'OVER'}`,
    );
    const base = typeof r.decode[a.contexts[0]] === 'number' ? (r.decode[a.contexts[0]] as number) : undefined;
    for (const ctx of a.contexts) {
      const d = r.decode[ctx];
      if (typeof d !== 'number') {
        console.log(`  decode at ${String(ctx).padStart(6)} tokens: ${d}`);
        continue;
      }
      const ratio = base && ctx !== a.contexts[0] ? ` = ${pct(d / base)} of ${a.contexts[0]}${ctx === 32768 ? ` · target ≥ ${pct(TARGETS.decode32kVs4k)}: ${d / base >= TARGETS.decode32kVs4k ? 'met' : 'not met'}` : ''}` : '';
      const rss = r.peakRssAfter[`decode ${ctx}`];
      console.log(`  decode at ${String(ctx).padStart(6)} tokens: ${d.toFixed(2)} tok/s${ratio}; peak RSS ${gb(rss)} (KV ${gb(ctx * r.bytesPerToken)})`);
    }
    const ns = Object.keys(r.prefill).map(Number).sort((x, y) => x - y);
    for (const n of ns) {
      const ratio = n !== ns[0] ? ` = ${pct(r.prefill[n] / r.prefill[ns[0]])} of ${ns[0]} · target ≥ ${pct(TARGETS.prefillLongVsShort)}: ${r.prefill[n] / r.prefill[ns[0]] >= TARGETS.prefillLongVsShort ? 'met' : 'not met'}` : '';
      console.log(`  prefill ${String(n).padStart(6)} tokens: ${r.prefill[n].toFixed(1)} tok/s (${a.prefillLayers} layers)${ratio}`);
    }
    console.log('');
  }
}

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  longContextMain(parseLongContextArgs(process.argv.slice(2), ROOT));
}
