/**
 * Whole-model benchmark (`npm run bench`): random weights at a real Qwen3-VL shape, loaded like a
 * user's checkpoint, timed through the real model code, each result next to the machine limit
 * measured in the same run (FMA peak, read bandwidth) and to the speed targets of issue 5.
 *
 *   npm run bench -- [--size 2B|4B|8B] [--quant bf16,q8,q4] [--threads N]
 *                    [--isa best|all|avx512vnni,avx512,avx2vnni,avx2,scalar]
 *                    [--only load,decode,prefill,vision,ttft] [--prefill 512,2048] [--decode-tokens 16]
 *                    [--images 448,1024] [--prefill-chunk N] [--cache-dir DIR] [--head float|q8|q4]
 *   npm run bench -- --only longctx …   (long context and KV cache types: see bench/longctx.ts)
 *
 * The checkpoint (BF16, ~9 GB for 4B) is written once into the cache folder (default
 * .tmp/bench-cache/<size>, git-ignored). Each weight type runs in its own process so that its
 * peak RSS is its own. The machine is often shared: every time is printed as wall clock and,
 * when other jobs inflated it by more than 15%, with the idle-core figure (process CPU time /
 * threads) in brackets. `--isa` takes a list, or `all` for every SIMD kernel set this CPU can
 * run (widest first): an AVX-512 machine then also measures the AVX2 path most CPUs take.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { KERNEL_SETS, loadNativeBackend, type InstructionSet } from '../src/kernels/native/index.ts';
import { parseConfig } from '../src/model/config.ts';
import { configJson, ensureCheckpoint, type ModelSize } from './model-checkpoint.ts';
import { longContextMain, parseLongContextArgs } from './longctx.ts';
import { headFlops, prefillFlops, visionFlops } from './model-cost.ts';
import { runModel, type Phase, type Quant, type RunOptions, type RunResult } from './model-run.ts';

const PHASES: Phase[] = ['load', 'decode', 'prefill', 'vision', 'ttft'];
const ISAS = KERNEL_SETS;
/** `--isa all`: the SIMD sets (the portable one would take hours at these shapes) */
const ALL_ISAS = ISAS.filter((i) => i !== 'scalar');
const QUANTS: Quant[] = ['bf16', 'q8', 'q4'];

/** Issue 5's targets (Qwen3-VL-4B, 2 threads, the documented 2-core AVX-512 machine). */
const TARGETS = {
  decode: { bf16: 2.0, q8: 3.8, q4: 6.5 } as Record<Quant, number>,
  prefill512: { bf16: 25, q4: 25 } as Partial<Record<Quant, number>>,
  vision: { 448: 3.5, 1024: 24 } as Record<string, number>,
  ttft: 65,
  rssFactor: 1.15,
};

interface Args extends Omit<RunOptions, 'dir' | 'quant' | 'isa'> {
  isas: InstructionSet[];
  isa: InstructionSet;
  size: ModelSize;
  quants: Quant[];
  cacheDir: string;
  child: boolean;
}

function list<T extends string>(v: string, allowed: readonly T[] | null, what: string): T[] {
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (allowed && !allowed.includes(i as T)) throw new Error(`${what}: '${i}' is not one of ${allowed.join(', ')}`);
  return items as T[];
}

function numbers(v: string, what: string): number[] {
  return v.split(',').map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${what}: '${s}' is not a positive integer`);
    return n;
  });
}

function parseArgs(argv: string[]): Args {
  const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
  const a: Args = {
    size: '4B',
    quants: [...QUANTS],
    threads: 2,
    isas: ['best'],
    isa: 'best',
    only: [...PHASES],
    prefillTokens: [512, 2048],
    decodeTokens: 16,
    imageSides: [448, 1024],
    prefillChunk: 0,
    cacheDir: '',
    child: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--size') a.size = list(v(), ['2B', '4B', '8B'] as const, '--size')[0];
    else if (k === '--quant') a.quants = list(v(), QUANTS, '--quant');
    else if (k === '--threads') a.threads = numbers(v(), '--threads')[0];
    else if (k === '--isa') a.isas = list(v(), ['best', 'all', ...ISAS] as const, '--isa').flatMap((i) => (i === 'all' ? ALL_ISAS : [i]));
    else if (k === '--only') a.only = list(v(), PHASES, '--only');
    else if (k === '--prefill') a.prefillTokens = numbers(v(), '--prefill');
    else if (k === '--decode-tokens') a.decodeTokens = numbers(v(), '--decode-tokens')[0];
    else if (k === '--images') a.imageSides = numbers(v(), '--images');
    else if (k === '--prefill-chunk') a.prefillChunk = numbers(v(), '--prefill-chunk')[0];
    else if (k === '--cache-dir') a.cacheDir = v();
    else if (k === '--head') a.head = list(v(), ['float', 'q8', 'q4'] as const, '--head')[0];
    else if (k === '--child') a.child = true;
    else throw new Error(`unknown option ${k} (see the header of bench/model.ts)`);
  }
  if (!a.cacheDir) a.cacheDir = path.join(root, '.tmp', 'bench-cache');
  a.isa = a.isas[0];
  return a;
}

/**
 * FMA peak (GFLOP per thread-CPU-second, summed over the pool) and read bandwidth (GB/s). Both
 * are the best of several runs: other jobs on a shared machine only ever make a run slower. The
 * read probe runs with the kernel set's vector width and, on an AVX-512 set, with the AVX2 set's
 * too, and the faster counts: the machine's bandwidth does not depend on the set under test, and
 * on 2 Zen 5 cores 256-bit loads read 54–59 GB/s where 512-bit ones read 45–49 (one process,
 * alternated), so a 512-bit probe would flatter every share of it.
 */
function machineLimits(threads: number, isa: InstructionSet): { fma: number; bwWall: number; bwIdle: number; isa: string; bwIsa: string } {
  const nb = loadNativeBackend({ threads });
  const used = nb.useInstructionSet(isa);
  const addon = loadAddon();
  const fma = Math.max(...[0, 1, 2, 3, 4].map(() => addon.probeFma(2e7)));
  let buf: Float32Array | null = new Float32Array(256 << 20); // 1 GiB: far beyond the caches
  for (let i = 0; i < buf.length; i += 1024) buf[i] = i;
  const probe = (): { wall: number; cpu: number } => {
    addon.probeRead(buf!);
    const walls: number[] = [];
    const cpus: number[] = [];
    for (let r = 0; r < 7; r++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      addon.probeRead(buf!);
      walls.push((performance.now() - t0) / 1000);
      const c = process.cpuUsage(c0);
      cpus.push((c.user + c.system) / 1e6 / nb.threads);
    }
    return { wall: Math.min(...walls), cpu: Math.min(...cpus) };
  };
  let best = probe();
  let bwIsa = used;
  if (used.startsWith('avx512')) {
    nb.useInstructionSet('avx2');
    const narrow = probe();
    if (narrow.wall < best.wall) {
      best = narrow;
      bwIsa = 'avx2';
    }
    nb.useInstructionSet(isa);
  }
  const bytes = buf.byteLength;
  buf = null;
  return { fma, bwWall: bytes / best.wall / 1e9, bwIdle: bytes / best.cpu / 1e9, isa: used, bwIsa };
}

const ISA_NAMES: Record<string, string> = {
  avx512vnni: 'AVX-512F/BW/DQ/VL + VNNI (vpdpbusd in the int8 GEMV) + FMA/F16C',
  'avx512vnni+avx2vnni-gemv': 'AVX-512 kernels, with the 256-bit AVX-VNNI int8 GEMV and the AVX2 1-token float GEMV (AMD, 512-bit operations split in two)',
  'avx512vnni+avx2-gemv': 'AVX-512 kernels, with the AVX2 1-token float GEMV (AMD)',
  avx512: 'AVX-512F/BW/DQ/VL + FMA/F16C (no VNNI, no AVX512-BF16, no AMX)',
  avx2vnni: 'AVX2 + AVX-VNNI (256-bit vpdpbusd in the int8 GEMV) + FMA/F16C',
  avx2: 'AVX2 + FMA/F16C (int8 GEMV with vpmaddubsw/vpmaddwd)',
  scalar: 'portable (SSE2 baseline)',
};

function childMain(a: Args): void {
  const dir = path.join(a.cacheDir, a.size);
  const r = runModel({ ...a, dir, quant: a.quants[0] }, (s) => process.stderr.write(s + '\n'));
  process.stdout.write(JSON.stringify(r) + '\n');
}

function runChild(a: Args, quant: Quant): RunResult | string {
  const script = fileURLToPath(import.meta.url);
  const args = [
    '--expose-gc', '--import', 'tsx', script, '--child',
    '--size', a.size, '--quant', quant, '--threads', String(a.threads), '--isa', a.isa,
    '--only', a.only.join(','), '--prefill', a.prefillTokens.join(','), '--decode-tokens', String(a.decodeTokens),
    '--images', a.imageSides.join(','), '--cache-dir', a.cacheDir,
    ...(a.prefillChunk ? ['--prefill-chunk', String(a.prefillChunk)] : []),
    ...(a.head ? ['--head', a.head] : []),
  ];
  const p = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 24 });
  const last = p.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as RunResult;
  } catch {
    return `exit ${p.status}${p.signal ? ` (${p.signal})` : ''}`;
  }
}

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const pct = (x: number) => `${Math.round(100 * x)}%`;

function main(): void {
  const argv = process.argv.slice(2);
  const only = argv.indexOf('--only');
  if (only >= 0 && argv[only + 1]?.split(',').includes('longctx')) {
    if (argv[only + 1] !== 'longctx') {
      console.error('bench: --only longctx runs on its own (its options are in bench/longctx.ts)');
      process.exit(2);
    }
    const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
    return longContextMain(parseLongContextArgs(argv, root));
  }
  let a: Args;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    process.exit(2);
  }
  if (a.child) return childMain(a);
  const cfg = parseConfig(configJson(a.size));
  const dir = ensureCheckpoint(path.join(a.cacheDir, a.size), a.size, (s) => console.log(s));
  const nb = loadNativeBackend({ threads: a.threads });
  const runnable = a.isas.filter((isa) => {
    try {
      nb.useInstructionSet(isa);
      return true;
    } catch {
      console.log(`(kernel set ${isa} cannot run on this CPU: skipped)`);
      return false;
    }
  });
  nb.useInstructionSet('best');
  for (const isa of runnable) {
    if (runnable.length > 1) console.log(`\n======== --isa ${isa} ========`);
    benchIsa({ ...a, isa }, cfg, dir);
  }
}

function benchIsa(a: Args, cfg: ReturnType<typeof parseConfig>, dir: string): void {
  const load0 = os.loadavg();
  const lim = machineLimits(a.threads, a.isa);
  console.log(`qvl model benchmark: Qwen3-VL-${a.size} shape, random BF16 checkpoint in ${dir}`);
  console.log(`kernels: ${lim.isa} — ${ISA_NAMES[lim.isa] ?? lim.isa}; ${a.threads} threads; CPU: ${os.cpus()[0]?.model ?? '?'}`);
  console.log(
    `machine limits (same run, best of several): FMA peak ${f1(lim.fma)} GFLOP/s (${lim.isa} kernels, per thread-CPU-second, ${a.threads} threads); ` +
      `read bandwidth ${f1(lim.bwWall)} GB/s wall clock${lim.bwIdle > 1.15 * lim.bwWall ? ` [idle-core ${f1(lim.bwIdle)}]` : ''} (${lim.bwIsa.startsWith('avx512') ? '512-bit loads' : lim.bwIsa === 'scalar' ? 'scalar loads' : '256-bit loads'})`,
  );
  console.log(`load average at start: ${load0.map(f2).join(' ')}${a.prefillChunk ? `; prefill in chunks of ${a.prefillChunk} tokens` : ''}`);

  const results: Array<[Quant, RunResult | string]> = [];
  for (const q of a.quants) results.push([q, runChild(a, q)]);
  const load1 = os.loadavg();
  const bw = Math.max(lim.bwWall, lim.bwIdle);

  // one line per measurement and weight type: wall [idle-core] · share of the limit · vs target
  const show = (label: string, t: { wall: number; cpu: number }, fmt: (s: number) => string, extra: (s: number) => string) => {
    const idle = t.cpu / a.threads;
    const inflated = t.wall > 1.15 * idle;
    console.log(`  ${label.padEnd(34)} ${fmt(t.wall)}${extra(t.wall)}${inflated ? `   [idle-core ${fmt(idle)}${extra(idle)}]` : ''}`);
  };
  console.log('');
  for (const [q, r] of results) {
    if (typeof r === 'string') {
      console.log(`${q}: the run failed (${r})`);
      continue;
    }
    console.log(`${q} weights (${f2(r.weightBytes / 1e9)} GB; decode streams ${f2(r.decodeBytes / 1e9)} GB per token):`);
    show('load', r.load, (s) => `${f1(s)} s`, () => '');
    if (r.decode) {
      const target = TARGETS.decode[q];
      show(`decode (median of ${r.decode.tokens} tokens)`, r.decode.perToken, (s) => `${f2(1 / s)} tok/s`, (s) =>
        ` = ${f1(r.decodeBytes / s / 1e9)} GB/s (${pct(r.decodeBytes / s / 1e9 / bw)} of read bw) · target ${target} tok/s: ${pct(1 / s / target)}`,
      );
    }
    for (const [n, t] of Object.entries(r.prefill)) {
      const target = Number(n) === 512 ? TARGETS.prefill512[q] : undefined;
      show(`prefill ${n} tokens`, t, (s) => `${f1(Number(n) / s)} tok/s`, (s) =>
        ` = ${f1(prefillFlops(cfg, Number(n)) / s / 1e9)} GFLOP/s (${pct(prefillFlops(cfg, Number(n)) / s / 1e9 / lim.fma)} of FMA peak)` +
          (target ? ` · target ${target} tok/s: ${pct(Number(n) / s / target)}` : ''),
      );
    }
    for (const [side, t] of Object.entries(r.vision)) {
      const target = q === 'bf16' ? TARGETS.vision[side] : undefined;
      const fl = visionFlops(cfg, t.patches);
      show(`vision ${side}×${side} (${t.patches} patches)`, t, (s) => `${f2(s)} s`, (s) =>
        ` = ${f1(fl / s / 1e9)} GFLOP/s (${pct(fl / s / 1e9 / lim.fma)} of FMA peak)` + (target ? ` · target ${target} s: ${pct(target / s)}` : '') +
          ` (+ preprocessing ${f2(t.preprocess)} s)`,
      );
    }
    if (r.ttft) {
      show(`first token, 1024² image + question`, r.ttft, (s) => `${f1(s)} s`, (s) => ` (${r.ttft!.promptTokens} prompt tokens) · target ${TARGETS.ttft} s: ${pct(TARGETS.ttft / s)}`);
    }
    const limit = TARGETS.rssFactor * r.weightBytes + r.kvBytes;
    console.log(
      `  ${'peak RSS'.padEnd(34)} ${f2(r.peakRssBytes / 1e9)} GB = ${f2(r.peakRssBytes / r.weightBytes)} × weights` +
        ` · limit 1.15 × weights + KV cache (${f2(r.kvBytes / 1e9)} GB) = ${f2(limit / 1e9)} GB: ${r.peakRssBytes <= limit ? 'within' : 'OVER'}`,
    );
    console.log(`  ${''.padEnd(34)} (peak so far after ${Object.entries(r.peakRssAfter).map(([k, v]) => `${k} ${f2(v / 1e9)}`).join(', ')} GB)`);
  }
  console.log(`\nload average at end: ${load1.map(f2).join(' ')}; head flops per token ${f1(headFlops(cfg) / 1e9)} GFLOP`);
}

main();
