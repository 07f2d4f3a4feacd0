/**
 * Kernel benchmark of the native backend at Qwen3-VL-4B shapes, each number printed next to
 * the machine limit measured in the same run (FMA peak for GEMM and attention, read bandwidth
 * for GEMV, and for q4 / q8 GEMVs of several tokens the int8 dot product's peak, per kernel set).
 * Run: node --import tsx bench/kernels.ts [--threads N] [--quick]
 *   [--isa best|all|avx512vnni,avx512,avx2vnni,avx2,scalar] [--only gemm,gemv,attention]
 *   [--formats bf16,q4,q8,fp8,f32,f16] [--q4-group 32|128] [--q4-symmetric] [--tokens 1,2,4,8]
 *   [--layout repacked|row-major|both]   (q4 and q8: as prepare repacks them, or row-major)
 * q4 weights are the model's own kind unless told otherwise: groups of 32 with zero points.
 * `--tokens`: GEMV passes of that many tokens at once (batched decode reads the weights once
 * per pass); each count after the first is also printed as a multiple of the first one's time.
 * `--isa all` runs every kernel set this CPU can execute, one after the other (the narrower
 * ones are what users of older CPUs get).
 */
import { performance } from 'node:perf_hooks';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { KERNEL_SETS, loadNativeBackend, NativeBackend, type InstructionSet } from '../src/kernels/native/index.ts';
import type { AttentionOptions } from '../src/kernels/backend.ts';
import { weightBytes, type WeightData, type WeightFormat } from '../src/kernels/weight.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const threadsArg = args.indexOf('--threads');
const threads = threadsArg >= 0 ? Number(args[threadsArg + 1]) : undefined;
const argOf = (k: string, d: string) => (args.indexOf(k) >= 0 ? args[args.indexOf(k) + 1] : d);
const isaArg = argOf('--isa', 'best');
const only = argOf('--only', 'gemm,gemv,attention').split(',');
// the model's own q4 by default (src/weights/convert.ts: groups of 32 with zero points)
const q4Group = Number(argOf('--q4-group', '32'));
const q4Symmetric = args.includes('--q4-symmetric');
const tokenCounts = argOf('--tokens', '1').split(',').map(Number);
const layout = argOf('--layout', 'repacked');
if (!['repacked', 'row-major', 'both'].includes(layout)) throw new Error(`--layout: repacked, row-major or both, got ${layout}`);
if (tokenCounts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--tokens: positive integers, got ${argOf('--tokens', '')}`);

const nb = loadNativeBackend(threads ? { threads } : {});
const addon = loadAddon();
// q4 and q8 as prepare repacks them by default (native/q4x8.h, q8x8.h), or in the caller's row-major arrays
const nbRowMajor = new NativeBackend(addon, { repack: false });
const ALL_ISAS: readonly InstructionSet[] = KERNEL_SETS;
const isaList = (isaArg === 'all' ? ALL_ISAS : (isaArg.split(',') as InstructionSet[])).filter((i) => {
  try {
    nb.useInstructionSet(i);
    return true;
  } catch {
    if (isaArg !== 'all') console.log(`(kernel set ${i} cannot run on this CPU: skipped)`);
    return false;
  }
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * Median seconds of `reps` timed runs after one warm-up. The machine is shared, so the
 * process CPU time is kept too: cpu / threads is what the run would take on idle cores
 * (reported in brackets as "idle-core" figures when it differs from the wall clock by > 15%).
 */
let lastCpu = 0;
function time(f: () => void, reps: number): number {
  f();
  const ts: number[] = [];
  // CPU time over all the runs, not per run: Linux adds a thread's time to the process's at that
  // thread's scheduler ticks, so a sub-millisecond call timed alone read about half of it on 2
  // threads; runs shorter than a few ticks in all give no figure
  const c0 = process.cpuUsage();
  const l0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    f();
    ts.push((performance.now() - t0) / 1000);
  }
  const c = process.cpuUsage(c0);
  lastCpu = performance.now() - l0 >= 50 ? (c.user + c.system) / 1e6 / reps / nb.threads : 0;
  return median(ts);
}

/** " [idle-core: …]" when the CPU time says the wall clock was inflated by other jobs. */
function idle(wall: number, fmt: (s: number) => string): string {
  return lastCpu > 0 && wall > 1.15 * lastCpu ? ` [idle-core ${fmt(lastCpu)}]` : '';
}

/** Fills an array with pseudo-random values quickly (a random block, then doubling copies). */
function fill<T extends Float32Array | Uint16Array | Uint8Array | Int8Array>(a: T, gen: () => number): T {
  const block = Math.min(a.length, 1 << 16);
  for (let i = 0; i < block; i++) a[i] = gen();
  for (let n = block; n < a.length; n *= 2) a.copyWithin(n, 0, Math.min(n, a.length - n));
  return a;
}

let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);

function makeWeight(format: WeightFormat, rows: number, cols: number): WeightData {
  switch (format) {
    case 'f32':
      return { format, rows, cols, data: fill(new Float32Array(rows * cols), () => rand() - 0.5) };
    case 'bf16':
    case 'f16':
      return { format, rows, cols, data: fill(new Uint16Array(rows * cols), () => (format === 'bf16' ? 0x3c00 : 0x2c00) + Math.floor(rand() * 512)) };
    case 'q8':
      return { format, rows, cols, qs: fill(new Int8Array(rows * cols), () => Math.floor(rand() * 256) - 128), scales: fill(new Float32Array(rows * Math.ceil(cols / 32)), () => 0.01) };
    case 'q4': {
      const groupSize = q4Group;
      const nGroups = Math.ceil(cols / groupSize);
      const zeros = q4Symmetric ? {} : { zeros: fill(new Uint8Array(rows * nGroups), () => Math.floor(rand() * 16)) };
      return { format, rows, cols, groupSize, nGroups, qs: fill(new Uint8Array(rows * Math.ceil(cols / 2)), () => Math.floor(rand() * 256)), scales: fill(new Float32Array(rows * nGroups), () => 0.01), ...zeros };
    }
    case 'fp8':
      return { format, rows, cols, blockRows: 128, blockCols: 128, qs: fill(new Uint8Array(rows * cols), () => Math.floor(rand() * 120)), scales: fill(new Float32Array(Math.ceil(rows / 128) * Math.ceil(cols / 128)), () => 0.01) };
  }
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
const info = addon.info();
console.log(`qvl kernel benchmark: isa ${info.isa}, ${nb.threads} threads (${info.physicalCores} physical cores)${quick ? ', quick' : ''}`);

// ---- machine limits ----
const fma1 = (() => {
  nb.setThreads(1);
  const g = median([0, 1, 2].map(() => addon.probeFma(2e7)));
  nb.setThreads(threads ?? info.threads);
  return g;
})();
const fmaN = median([0, 1, 2].map(() => addon.probeFma(2e7)));
// the int8 dot product's rate, what q4 / q8 GEMVs of several tokens are bound by: per kernel set
let int8N = 0;
const bwBuf = fill(new Float32Array((quick ? 64 : 256) << 20), () => rand());
// with the active set's loads and, under an AVX-512 set, with 256-bit ones too: the faster is the
// machine's bandwidth (2 Zen 5 cores: 54–59 GB/s with 256-bit loads, 45–49 with 512-bit ones)
const readProbe = (): { wall: number; cpu: number } => {
  const wall = time(() => addon.probeRead(bwBuf), 5);
  return { wall, cpu: lastCpu };
};
let bwRun = readProbe();
let bwLoads = String(info.isa).startsWith('avx512') ? '512-bit loads' : info.isa === 'scalar' ? 'scalar loads' : '256-bit loads';
if (String(info.isa).startsWith('avx512')) {
  nb.useInstructionSet('avx2');
  const narrow = readProbe();
  nb.useInstructionSet(isaList.at(-1) ?? 'best'); // the set the filter above left active
  if (narrow.wall < bwRun.wall) {
    bwRun = narrow;
    bwLoads = '256-bit loads';
  }
}
const bwWall = bwBuf.byteLength / bwRun.wall / 1e9;
const bwIdle = bwRun.cpu > 0 ? bwBuf.byteLength / bwRun.cpu / 1e9 : 0;
// the kernels' GB/s below are wall-clock figures, so they are compared with the wall-clock bandwidth
const bw = bwWall;
console.log(`FMA peak (per thread-CPU-second, i.e. idle cores): ${fma1.toFixed(1)} GFLOP/s on 1 thread, ${fmaN.toFixed(1)} on ${nb.threads}`);
console.log(`read bandwidth: ${bwWall.toFixed(1)} GB/s wall clock${bwIdle > 1.15 * bwWall ? ` [idle-core ${bwIdle.toFixed(1)}]` : ''} (${bwLoads})`);
console.log(`load average at start: ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')}`);

// ---- GEMM (prefill / vision) ----
const formats = argOf('--formats', 'bf16,q4,q8,fp8,f32,f16').split(',') as WeightFormat[];
/** Each format with the backend that prepares it, q4 and q8 once per layout asked for. */
const cases = formats.flatMap((f): Array<{ f: WeightFormat; label: string; be: NativeBackend }> =>
  f !== 'q4' && f !== 'q8'
    ? [{ f, label: f, be: nb }]
    : [
        ...(layout !== 'row-major' ? [{ f, label: layout === 'both' ? `${f} repacked` : f, be: nb }] : []),
        ...(layout !== 'repacked' ? [{ f, label: layout === 'both' ? `${f} row-major` : f, be: nbRowMajor }] : []),
      ],
);

function benchGemm(): void {
  const M = quick ? 128 : 512;
  const gemmShapes: Array<[string, number, number]> = quick ? [['2560→9728', 9728, 2560]] : [['2560→9728 (gate/up)', 9728, 2560], ['9728→2560 (down)', 2560, 9728], ['2560→4096 (q)', 4096, 2560]];
  console.log(`\nGEMM, ${M} tokens: GFLOP/s (share of the ${nb.threads}-thread FMA peak)`);
  for (const [label, rows, cols] of gemmShapes) {
    const cells: string[] = [];
    for (const { f, label: fl, be } of cases) {
      const w = makeWeight(f, rows, cols);
      const pw = be.prepare(w, { consume: true });
      const x = fill(new Float32Array(M * cols), () => rand() - 0.5);
      // into one output array, as the model's scratch does: a fresh 20 MB array per call timed
      // the first touch of its pages too (2 Zen 5 cores in a VM, avx2: 2560→9728 q8 211 GFLOP/s
      // into fresh arrays, 320 into one, two runs of this bench)
      const out = new Float32Array(M * rows);
      const s = time(() => be.matmul(x, M, pw, null, out), quick ? 1 : 3);
      const gflops = (t: number) => (2 * M * rows * cols) / t / 1e9;
      cells.push(`${fl} ${gflops(s).toFixed(1)} (${pct(gflops(s) / fmaN)})${idle(s, (t) => `${gflops(t).toFixed(1)} (${pct(gflops(t) / fmaN)})`)}`);
    }
    console.log(`  ${label.padEnd(22)} ${cells.join('\n' + ' '.repeat(25))}`);
  }

}

// ---- GEMV (decode) ----
function benchGemv(): void {
  console.log(`\nGEMV, ${tokenCounts.join('/')} token(s) per pass: ms and GB/s of weight bytes (share of the measured read bandwidth);`);
  console.log(`  each case cycles through copies of the matrix (≥ ${quick ? 256 : 512} MB in all) so that weights come from DRAM, not the L3`);
  if (int8N > 0 && tokenCounts.some((n) => n > 1)) console.log(`  q4 / q8 past one token: also GMAC/s (share of the int8 dot-product peak), the bound there`);
  const gemvShapes: Array<[string, number, number]> = [['2560→9728', 9728, 2560], ['9728→2560', 2560, 9728], ['4096→2560', 2560, 4096], ['2560→1024', 1024, 2560]];
  if (!quick) gemvShapes.push(['head 2560→151936', 151936, 2560]);
  for (const [label, rows, cols] of gemvShapes) {
    const cells: string[] = [];
    for (const { f, label: fl, be } of cases) {
      if (label.startsWith('head') && (f === 'f32' || f === 'f16' || f === 'fp8')) continue;
      const first = makeWeight(f, rows, cols);
      const copies = Math.max(1, Math.ceil(((quick ? 256 : 512) << 20) / weightBytes(first)));
      // consumed, as the model's loader gives its converted weights: the addon repacks arrays it
      // may take at any size, but keeps caller-held ones past 64 MB row-major (native/addon.cc
      // repackPays), which would time the head in a layout the model never reads
      const pws = [be.prepare(first, { consume: true })];
      for (let i = 1; i < copies; i++) pws.push(be.prepare(makeWeight(f, rows, cols), { consume: true }));
      let firstTime = 0;
      for (const n of tokenCounts) {
        const x = fill(new Float32Array(cols * n), () => rand() - 0.5);
        const out = new Float32Array(n * rows); // written in place: no fresh pages to fault in per call
        let next = 0;
        const s = time(() => be.matmul(x, n, pws[next++ % copies], null, out), label.startsWith('head') ? 6 : 30);
        if (n === tokenCounts[0]) firstTime = s;
        // the bytes the kernel streams (the repacked layout's, scales and zero points included)
        const gbs = (t: number) => pws[0].bytes / t / 1e9;
        const cell = (t: number) => `${(t * 1e3).toFixed(2)} ms ${gbs(t).toFixed(1)} GB/s (${pct(gbs(t) / bw)})`;
        const times = n === tokenCounts[0] ? '' : ` ${(s / firstTime).toFixed(2)}× the ${tokenCounts[0]}-token time`;
        const gmac = (rows * cols * n) / s / 1e9;
        const int8 = int8N > 0 && n > 1 && (f === 'q4' || f === 'q8') ? `, ${gmac.toFixed(1)} GMAC/s (${pct(gmac / int8N)} of int8 peak)` : '';
        cells.push(`${fl}${tokenCounts.length > 1 ? ` ×${n}` : ''} ${cell(s)}${int8}${times}${idle(s, cell)}`);
      }
    }
    console.log(`  ${label.padEnd(18)} ${cells.join('\n' + ' '.repeat(21))}`);
  }
}

// ---- attention ----
function benchAttention(): void {
  console.log(`\nattention: ms and GFLOP/s (share of the FMA peak)`);
  const attCases: Array<[string, AttentionOptions]> = [
    ['text prefill 512, causal, 32/8 heads × 128', { nQ: 512, nKv: 512, heads: 32, kvHeads: 8, headDim: 128, scale: 128 ** -0.5, causal: true }],
    ['text decode over 4096, 32/8 heads × 128', { nQ: 1, nKv: 4096, heads: 32, kvHeads: 8, headDim: 128, scale: 128 ** -0.5, causal: true, qOffset: 4095 }],
    ['vision 4096 patches, 16 heads × 64', { nQ: 4096, nKv: 4096, heads: 16, kvHeads: 16, headDim: 64, scale: 0.125, causal: false, segments: Int32Array.of(0, 4096) }],
  ];
  for (const [label, o] of quick ? attCases.slice(0, 2) : attCases) {
    const q = fill(new Float32Array(o.nQ * o.heads * o.headDim), () => rand() - 0.5);
    const k = fill(new Float32Array(o.nKv * o.kvHeads * o.headDim), () => rand() - 0.5);
    const v = fill(new Float32Array(o.nKv * o.kvHeads * o.headDim), () => rand() - 0.5);
    const s = time(() => nb.attention(q, k, v, o), o.nQ > 1000 ? 1 : 3);
    const off = o.qOffset ?? 0;
    let pairs = 0;
    for (let i = 0; i < o.nQ; i++) pairs += o.causal ? Math.min(o.nKv, off + i + 1) : o.nKv;
    const cell = (t: number) => {
      const gf = (4 * pairs * o.headDim * o.heads) / t / 1e9;
      return `${(t * 1e3).toFixed(1)} ms  ${gf.toFixed(1)} GFLOP/s (${pct(gf / fmaN)})`;
    };
    console.log(`  ${label.padEnd(44)} ${cell(s)}${idle(s, cell)}`);
  }
}

for (const isa of isaList) {
  const used = nb.useInstructionSet(isa);
  if (isaList.length > 1 || isa !== 'best') console.log(`\n=== kernel set ${used} ===`);
  if (only.includes('gemm')) benchGemm();
  if (only.includes('gemv')) {
    int8N = median([0, 1, 2].map(() => addon.probeInt8(2e7)));
    if (int8N > 0) console.log(`\nint8 dot-product peak (the q4 / q8 GEMVs' instruction, per thread-CPU-second): ${int8N.toFixed(1)} GMAC/s on ${nb.threads} threads`);
    benchGemv();
  }
  if (only.includes('attention')) benchAttention();
}
