/**
 * One weight type of the model benchmark, run in its own process (so that its peak RSS is its
 * own): loads the cached random checkpoint as a user would (memory-mapped, `--quant` applied at
 * load by the project's converter) and times the real model code — Qwen3VLModel.prefill /
 * decode / encodeMedia — printing one JSON line of results on stdout.
 */
import { performance } from 'node:perf_hooks';
import { loadModelFromDir } from '../src/api/load-model.ts';
import { argmax } from '../src/kernels/ts/argmax.ts';
import type { PreparedWeight } from '../src/kernels/backend.ts';
import { loadNativeBackend, mmapFile, releaseMappedWeight, type InstructionSet } from '../src/kernels/native/index.ts';
import { weightBytes, type WeightData } from '../src/kernels/weight.ts';
import type { Qwen3VLModel } from '../src/model/qwen3vl.ts';
import { DEFAULT_IMAGE_CONFIG, preprocessImage } from '../src/processor/index.ts';
import { makeQuantConvert } from '../src/weights/quant-plan.ts';

export type Phase = 'load' | 'decode' | 'prefill' | 'vision' | 'ttft';
export type Quant = 'bf16' | 'q8' | 'q4';

export interface RunOptions {
  dir: string;
  quant: Quant;
  threads: number;
  isa: InstructionSet;
  only: Phase[];
  prefillTokens: number[];
  decodeTokens: number;
  imageSides: number[];
  /** prefill in chunks of this many tokens (Qwen3VLModel.prefill's chunkSize); 0 = all at once */
  prefillChunk: number;
  /** the token embedding / LM head when quantizing (default: quant-plan.ts's) */
  head?: 'float' | 'q8' | 'q4';
}

/** Wall and idle-core seconds of one step (idle-core: process CPU time / threads). */
export interface Timing {
  wall: number;
  cpu: number;
}

export interface RunResult {
  quant: Quant;
  isa: string;
  threads: number;
  /** bytes of every weight as stored for the kernels (matrices, norms, biases, tables) */
  weightBytes: number;
  /** bytes a decode step streams: text decoder matrices and the head */
  decodeBytes: number;
  load: Timing;
  decode?: { perToken: Timing; tokens: number };
  prefill: Record<string, Timing>;
  vision: Record<string, Timing & { patches: number; preprocess: number }>;
  ttft?: Timing & { promptTokens: number };
  /** largest KV cache allocated by any step */
  kvBytes: number;
  peakRssBytes: number;
  rssAfterLoadBytes: number;
  /** peak RSS (bytes) reached by the end of each step */
  peakRssAfter: Record<string, number>;
}

const IM_START = 151644;
const IM_END = 151645;
const VISION_START = 151652;
const VISION_END = 151653;
const IMAGE_PAD = 151655;
// "user", "\n", "assistant" and a short question ("Describe this image in one sentence.")
const USER = 872;
const NL = 198;
const ASSISTANT = 77091;
const QUESTION = [74785, 419, 2168, 304, 825, 11652, 13];

function timed<T>(f: () => T): [T, Timing] {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = f();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return [r, { wall, cpu: (c.user + c.system) / 1e6 }];
}

function maxRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

let seed = 4242;
function randomIds(n: number): number[] {
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    ids.push(seed % 151000);
  }
  return ids;
}

/** A smooth synthetic RGB picture (the content does not matter to the timing). */
function syntheticImage(side: number): { width: number; height: number; data: Uint8Array } {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++)
    for (let x = 0; x < side; x++) {
      const o = (y * side + x) * 3;
      data[o] = (x * 255) / side;
      data[o + 1] = (y * 255) / side;
      data[o + 2] = ((x ^ y) & 255) as number;
    }
  return { width: side, height: side, data };
}

/** Weight bytes held by the model: prepared matrices (tied ones once) and float vectors. */
function modelWeightBytes(model: Qwen3VLModel): { total: number; decode: number } {
  const seen = new Set<unknown>();
  let total = 0;
  const walk = (o: unknown): void => {
    if (!o || typeof o !== 'object' || seen.has(o)) return;
    seen.add(o);
    if (o instanceof Float32Array) {
      total += o.byteLength;
      return;
    }
    if ('impl' in o && 'rows' in o) {
      total += (o as PreparedWeight).bytes;
      return;
    }
    for (const v of Object.values(o)) walk(v);
  };
  walk(model.weights);
  const bytesOf = (p: PreparedWeight) => p.bytes;
  let decode = bytesOf(model.weights.text.lmHead);
  for (const l of model.weights.text.layers) for (const m of [l.q, l.k, l.v, l.o, l.gate, l.up, l.down]) decode += bytesOf(m);
  return { total, decode };
}

export function runModel(opts: RunOptions, log: (s: string) => void): RunResult {
  const backend = loadNativeBackend({ threads: opts.threads });
  const isa = backend.useInstructionSet(opts.isa);
  let convert: ((w: WeightData, name: string) => WeightData) | undefined;
  if (opts.quant !== 'bf16') {
    convert = makeQuantConvert({ mode: opts.quant, head: opts.head });
  }
  log(`[${opts.quant}] loading …`);
  const [model, load] = timed(() => loadModelFromDir(opts.dir, { backend, map: mmapFile, release: releaseMappedWeight, convert }));
  const bytes = modelWeightBytes(model);
  gc();
  const result: RunResult = {
    quant: opts.quant,
    isa,
    threads: backend.threads,
    weightBytes: bytes.total,
    decodeBytes: bytes.decode,
    load,
    prefill: {},
    vision: {},
    kvBytes: 0,
    peakRssBytes: 0,
    rssAfterLoadBytes: process.memoryUsage.rss(),
    peakRssAfter: { load: maxRss() },
  };
  log(`[${opts.quant}] loaded in ${load.wall.toFixed(1)} s (${(bytes.total / 1e9).toFixed(2)} GB of weights)`);
  const has = (p: Phase) => opts.only.includes(p);

  if (has('decode')) {
    const cache = model.newCache();
    const pre = model.prefill({ ids: randomIds(16) }, cache);
    let id = argmax(pre.logits);
    const steps: Timing[] = [];
    for (let i = 0; i < opts.decodeTokens + 2; i++) {
      const [logits, t] = timed(() => model.decode(id, cache, pre.positions.delta));
      id = argmax(logits);
      if (i >= 2) steps.push(t); // the first steps warm the pool and the page cache
    }
    const med = (k: keyof Timing) => steps.map((s) => s[k]).sort((a, b) => a - b)[steps.length >> 1];
    result.decode = { perToken: { wall: med('wall'), cpu: med('cpu') }, tokens: steps.length };
    result.kvBytes = Math.max(result.kvBytes, cache.bytes);
    cache.release();
    log(`[${opts.quant}] decode ${(1 / result.decode.perToken.wall).toFixed(2)} tok/s`);
    result.peakRssAfter.decode = maxRss();
    gc();
  }

  if (has('prefill')) {
    for (const n of opts.prefillTokens) {
      const cache = model.newCache();
      const [, t] = timed(() => argmax(model.prefill({ ids: randomIds(n) }, cache, { chunkSize: opts.prefillChunk || undefined }).logits));
      result.prefill[n] = t;
      result.kvBytes = Math.max(result.kvBytes, cache.bytes);
      cache.release();
      log(`[${opts.quant}] prefill ${n}: ${(n / t.wall).toFixed(1)} tok/s`);
      result.peakRssAfter[`prefill ${n}`] = maxRss();
      gc();
    }
  }

  if (has('vision')) {
    for (const side of opts.imageSides) {
      const [img, pt] = timed(() => preprocessImage(syntheticImage(side), DEFAULT_IMAGE_CONFIG));
      const patches = img.grid[0] * img.grid[1] * img.grid[2];
      const [, t] = timed(() => model.encodeMedia({ ids: [], pixelValues: img.pixelValues, imageGrids: [img.grid] }));
      result.vision[side] = { ...t, patches, preprocess: pt.wall };
      log(`[${opts.quant}] vision ${side}×${side} (${patches} patches): ${t.wall.toFixed(2)} s`);
      result.peakRssAfter[`vision ${side}`] = maxRss();
      gc();
    }
  }

  if (has('ttft')) {
    const side = 1024;
    const [r, t] = timed(() => {
      const img = preprocessImage(syntheticImage(side), DEFAULT_IMAGE_CONFIG);
      const pads = (img.grid[0] * img.grid[1] * img.grid[2]) / 4;
      const ids = [IM_START, USER, NL, VISION_START, ...new Array<number>(pads).fill(IMAGE_PAD), VISION_END, ...QUESTION, IM_END, NL, IM_START, ASSISTANT, NL];
      const cache = model.newCache();
      argmax(model.prefill({ ids, pixelValues: img.pixelValues, imageGrids: [img.grid] }, cache, { chunkSize: opts.prefillChunk || undefined }).logits);
      const kv = cache.bytes;
      cache.release();
      return { tokens: ids.length, kv };
    });
    result.ttft = { ...t, promptTokens: r.tokens };
    result.kvBytes = Math.max(result.kvBytes, r.kv);
    log(`[${opts.quant}] time to first token (1024×1024 image + question, ${r.tokens} tokens): ${t.wall.toFixed(1)} s`);
  }

  result.peakRssAfter.ttft = maxRss();
  result.peakRssBytes = maxRss();
  return result;
}
