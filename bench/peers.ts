/**
 * Side by side with llama.cpp (`npm run bench:peers`): qvl's model benchmark and llama.cpp's
 * `llama-bench` (decode, prefill) and `llama-mtmd-cli` (vision tower, first token) on GGUF files
 * of the same shape, one after the other in the same run, printing qvl / llama.cpp per line.
 *
 *   npm run bench:peers -- --llama-bin DIR [--gguf-dir DIR | --q4 F --q8 F --bf16 F --mmproj F]
 *        [--threads 2] [--isa avx2] [--quant q4,q8,bf16] [--only decode,prefill,vision,ttft]
 *        [--prefill 512] [--images 448,1024] [--decode-tokens 16] [--reps 3] [--rounds 1] [--cache-dir DIR]
 *
 * `--gguf-dir` picks `*Q4_0*.gguf`, `*Q8_0*.gguf`, `*bf16*.gguf` and `mmproj*.gguf` from one
 * folder. The GGUF files should hold the same shape as qvl's checkpoint (`--size 4B`, random
 * weights are fine: only time is compared). A weight type without its GGUF file runs qvl only.
 * `--isa` defaults to avx2: the kernel set most users' CPUs run, and the one the llama.cpp AVX2
 * builds use; pass `best` to compare the widest set this CPU has.
 *
 * Ratios: decode and prefill are qvl tok/s ÷ llama.cpp tok/s (higher is better for qvl);
 * vision and first token are qvl seconds ÷ llama.cpp seconds (lower is better for qvl). qvl's
 * vision time is the tower only (preprocessing excluded), as is llama.cpp's "encoding done" time.
 * `--rounds N` runs the whole comparison N times, qvl and llama.cpp alternating, and prints each
 * side's median with the median of the N per-round ratios: on a shared machine the memory
 * bandwidth moves with other tenants, and one round can favour either engine.
 * First token (`ttft`): a 1024×1024 image (1024 image tokens) and a short question, from pixels
 * to the first token's logits; llama.cpp's is its "prompt eval time" (image encoding, the image
 * tokens' prefill and the text's), without its image decoding and preprocessing, which qvl's
 * figure includes. Each weight type runs with its own GGUF, the mmproj beside it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ensureCheckpoint, type ModelSize } from './model-checkpoint.ts';
import type { Quant, RunResult } from './model-run.ts';

type Part = 'decode' | 'prefill' | 'vision' | 'ttft';
const PARTS: Part[] = ['decode', 'prefill', 'vision', 'ttft'];
const TTFT_SIDE = 1024; // bench/model-run.ts's first-token image
const GGUF_TYPE: Record<Quant, string> = { q4: 'Q4_0', q8: 'Q8_0', bf16: 'BF16' };

interface Args {
  llamaBin: string;
  gguf: Partial<Record<Quant | 'mmproj', string>>;
  threads: number;
  isa: string;
  quants: Quant[];
  only: Part[];
  prefill: number;
  images: number[];
  decodeTokens: number;
  reps: number;
  rounds: number;
  size: ModelSize;
  cacheDir: string;
}

function parseArgs(argv: string[]): Args {
  const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
  const a: Args = {
    llamaBin: process.env.QVL_LLAMA_BIN ?? '',
    gguf: {},
    threads: 2,
    isa: 'avx2',
    quants: ['q4', 'q8', 'bf16'],
    only: [...PARTS],
    prefill: 512,
    images: [448, 1024],
    decodeTokens: 16,
    reps: 3,
    rounds: 1,
    size: '4B',
    cacheDir: path.join(root, '.tmp', 'bench-cache'),
  };
  let dir = '';
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--llama-bin') a.llamaBin = v();
    else if (k === '--gguf-dir') dir = v();
    else if (k === '--q4' || k === '--q8' || k === '--bf16' || k === '--mmproj') a.gguf[k.slice(2) as Quant] = v();
    else if (k === '--threads') a.threads = Number(v());
    else if (k === '--isa') a.isa = v();
    else if (k === '--quant') a.quants = v().split(',') as Quant[];
    else if (k === '--only') a.only = v().split(',') as Part[];
    else if (k === '--prefill') a.prefill = Number(v());
    else if (k === '--images') a.images = v().split(',').map(Number);
    else if (k === '--decode-tokens') a.decodeTokens = Number(v());
    else if (k === '--reps') a.reps = Number(v());
    else if (k === '--rounds') a.rounds = Number(v());
    else if (k === '--size') a.size = v() as ModelSize;
    else if (k === '--cache-dir') a.cacheDir = v();
    else throw new Error(`unknown option ${k} (see the header of bench/peers.ts)`);
  }
  if (dir) {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.gguf'));
    const pick = (re: RegExp) => files.find((f) => re.test(f));
    for (const [key, re] of [['q4', /q4_0/i], ['q8', /q8_0/i], ['bf16', /bf16/i], ['mmproj', /^mmproj/i]] as const) {
      const f = pick(re);
      if (f && !a.gguf[key] && !(key !== 'mmproj' && /^mmproj/i.test(f))) a.gguf[key] = path.join(dir, f);
    }
  }
  if (!a.llamaBin) throw new Error('--llama-bin DIR (the folder with llama-bench and llama-mtmd-cli) is required');
  for (const q of a.quants) if (!(q in GGUF_TYPE)) throw new Error(`--quant: '${q}' is not one of q4, q8, bf16`);
  if (!Number.isInteger(a.rounds) || a.rounds < 1) throw new Error(`--rounds: a positive integer, got ${a.rounds}`);
  for (const p of a.only) if (!PARTS.includes(p)) throw new Error(`--only: '${p}' is not one of ${PARTS.join(', ')}`);
  return a;
}

/**
 * Drops a file from the page cache (GNU dd: `iflag=nocache count=0` advises it away whole), so
 * that a peer's GGUF pages cannot crowd out the checkpoint qvl maps next: the 4B BF16 files
 * together (~17 GB) are close to a 24 GB machine's memory.
 */
function dropFromPageCache(file: string): void {
  spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
}

/** llama-bench tok/s for one model: prefill (n_prompt) and decode (n_gen) lines of its JSON. */
function llamaBench(a: Args, model: string): { prefill?: number; decode?: number; error?: string } {
  const args = ['-m', model, '-t', String(a.threads), '-r', String(a.reps), '-o', 'json'];
  args.push('-p', a.only.includes('prefill') ? String(a.prefill) : '0', '-n', a.only.includes('decode') ? '32' : '0');
  const p = spawnSync(path.join(a.llamaBin, 'llama-bench'), args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  dropFromPageCache(model);
  if (p.status !== 0) return { error: `llama-bench exit ${p.status}: ${(p.stderr ?? '').trim().split('\n').pop()}` };
  const rows = JSON.parse(p.stdout) as Array<{ n_prompt: number; n_gen: number; avg_ts: number }>;
  const out: { prefill?: number; decode?: number } = {};
  for (const r of rows) {
    if (r.n_prompt > 0 && r.n_gen === 0) out.prefill = r.avg_ts;
    if (r.n_gen > 0 && r.n_prompt === 0) out.decode = r.avg_ts;
  }
  return out;
}

interface MtmdRun {
  /** seconds encoding the image ("encoding done") */
  encode: number;
  /** seconds from the image's encoding to the first token ("prompt eval time") */
  firstToken: number;
}

/**
 * One llama-mtmd-cli run on a side×side image and a short question, 1 token generated, with
 * its verbose timings. Runs are kept by model, side and round: the vision rows and the
 * first-token row of the same model and image share one.
 */
const mtmdRuns = new Map<string, MtmdRun | string>();
async function llamaMtmd(a: Args, model: string, mmproj: string, side: number, tmp: string, round: number): Promise<MtmdRun | string> {
  const key = `${model}|${side}|${round}`;
  const known = mtmdRuns.get(key);
  if (known) return known;
  const img = path.join(tmp, `img${side}.png`);
  if (!fs.existsSync(img)) {
    const px = Buffer.alloc(side * side * 3);
    for (let y = 0; y < side; y++)
      for (let x = 0; x < side; x++) {
        const o = (y * side + x) * 3;
        px[o] = (x * 255) / side;
        px[o + 1] = (y * 255) / side;
        px[o + 2] = (x ^ y) & 255;
      }
    await sharp(px, { raw: { width: side, height: side, channels: 3 } }).png().toFile(img);
  }
  const tokens = String((side / 32) ** 2);
  const args = ['-m', model, '--mmproj', mmproj, '--image', img, '-p', 'Describe.', '-n', '1', '-t', String(a.threads),
    '--image-min-tokens', tokens, '--image-max-tokens', tokens, '-c', String(Number(tokens) + 1024), '--temp', '0', '-v'];
  const p = spawnSync(path.join(a.llamaBin, 'llama-mtmd-cli'), args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  dropFromPageCache(model);
  dropFromPageCache(mmproj);
  const text = `${p.stdout}\n${p.stderr}`;
  const enc = /encoding done in (\d+(?:\.\d+)?) ms/.exec(text) ?? /image slice encoded in (\d+(?:\.\d+)?) ms/.exec(text);
  const eval_ = /prompt eval time =\s*(\d+(?:\.\d+)?) ms/.exec(text);
  const run: MtmdRun | string =
    enc && eval_
      ? { encode: Number(enc[1]) / 1000, firstToken: Number(eval_[1]) / 1000 }
      : `llama-mtmd-cli exit ${p.status}, no ${enc ? 'prompt eval' : 'encoding'} time in its output`;
  mtmdRuns.set(key, run);
  return run;
}

/** One qvl weight type in its own process (bench/model.ts --child): the JSON RunResult. */
function qvlRun(a: Args, quant: Quant): RunResult | string {
  const script = fileURLToPath(new URL('./model.ts', import.meta.url));
  const only = a.only.filter((p) => p !== 'vision' || a.images.length > 0);
  const args = ['--expose-gc', '--import', 'tsx', script, '--child', '--size', a.size, '--quant', quant, '--threads',
    String(a.threads), '--isa', a.isa, '--only', only.join(','), '--prefill', String(a.prefill), '--decode-tokens',
    String(a.decodeTokens), '--images', a.images.join(',') || '448', '--cache-dir', a.cacheDir];
  const p = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 24 });
  try {
    return JSON.parse(p.stdout.trim().split('\n').pop() ?? '') as RunResult;
  } catch {
    return `qvl run exit ${p.status}`;
  }
}

const f2 = (x: number) => x.toFixed(2);
const median = (v: number[]) => {
  const s = [...v].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  let a: Args;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`bench:peers: ${(e as Error).message}`);
    process.exit(2);
  }
  ensureCheckpoint(path.join(a.cacheDir, a.size), a.size, (s) => console.log(s));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'qvl-peers-'));
  // each row's values over the rounds (a string: why a side has no number); `detail` joins the
  // label once a round has it, so that a round whose qvl run failed stays on the same row
  type Row = { q: Array<number | undefined>; l: Array<number | string | undefined>; unit: string; higherBetter: boolean; detail?: string };
  const rows = new Map<string, Row>();
  const row = (label: string, q: number | undefined, l: number | string | undefined, unit: string, higherBetter: boolean, detail?: string) => {
    const r = rows.get(label) ?? { q: [], l: [], unit, higherBetter };
    r.q.push(q);
    r.l.push(l);
    r.detail ??= detail;
    rows.set(label, r);
  };
  console.log(`qvl vs llama.cpp: Qwen3-VL-${a.size} shape, random weights, ${a.threads} threads, qvl kernels --isa ${a.isa}`);
  console.log(`load average at start: ${os.loadavg().map(f2).join(' ')}`);
  for (let round = 0; round < a.rounds; round++) {
    for (const q of a.quants) {
      if (a.rounds > 1) console.log(`round ${round + 1} of ${a.rounds}: ${q}`);
      const r = qvlRun(a, q);
      const model = a.gguf[q];
      const lb = model && (a.only.includes('decode') || a.only.includes('prefill')) ? llamaBench(a, model) : {};
      if (typeof r === 'string') console.log(`${q}: ${r}`);
      if ('error' in lb && lb.error) console.log(`${GGUF_TYPE[q]}: ${lb.error}`);
      const res = typeof r === 'string' ? undefined : r;
      const peer = model ? GGUF_TYPE[q] : `${GGUF_TYPE[q]} (no GGUF given)`;
      if (a.only.includes('decode')) {
        const streams = res ? ` (qvl streams ${f2(res.decodeBytes / 1e9)} GB/token)` : undefined;
        row(`decode ${q} / ${peer}`, res?.decode ? 1 / res.decode.perToken.wall : undefined, lb.decode, 'tok/s', true, streams);
      }
      if (a.only.includes('prefill')) {
        const t = res?.prefill[String(a.prefill)];
        row(`prefill ${a.prefill} ${q} / ${peer}`, t ? a.prefill / t.wall : undefined, lb.prefill, 'tok/s', true);
      }
      const mm = a.gguf.mmproj;
      if (a.only.includes('vision') && a.images.length) {
        // the tower is the same for every weight type on llama.cpp's side: one text model runs it
        const text = a.gguf.q4 ?? a.gguf.q8 ?? a.gguf.bf16;
        for (const side of a.images) {
          const t = res?.vision[String(side)];
          const l = mm && text ? await llamaMtmd(a, text, mm, side, tmp, round) : 'no mmproj given';
          row(`vision ${side}×${side} (qvl ${q} tower / mmproj)`, t?.wall, typeof l === 'string' ? l : l.encode, 's', false);
        }
      }
      if (a.only.includes('ttft')) {
        const l = mm && model ? await llamaMtmd(a, model, mm, TTFT_SIDE, tmp, round) : `no ${mm ? GGUF_TYPE[q] : 'mmproj'} given`;
        const label = `first token, ${TTFT_SIDE}² image + question, ${q} / ${peer}`;
        row(label, res?.ttft?.wall, typeof l === 'string' ? l : l.firstToken, 's', false);
      }
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  const lines: Array<[string, string, string, string]> = [];
  for (const [label, r] of rows) {
    const nums = (v: Array<number | string | undefined>) => v.filter((x): x is number => typeof x === 'number');
    const fmt = (v: Array<number | string | undefined>) => {
      const n = nums(v);
      return n.length ? `${f2(median(n))} ${r.unit}` : String(v.find((x) => typeof x === 'string') ?? '—');
    };
    const ratios = r.q.flatMap((q, i) => (typeof q === 'number' && typeof r.l[i] === 'number' ? [q / (r.l[i] as number)] : []));
    let ratio = ratios.length ? `${f2(median(ratios))}×${r.higherBetter ? '' : ' (time)'}` : '';
    if (ratios.length > 1) ratio += ` [${ratios.map(f2).join(', ')}]`;
    lines.push([label + (r.detail ?? ''), fmt(r.q), fmt(r.l), ratio]);
  }
  const w = [0, 1, 2, 3].map((i) => Math.max(...lines.map((l) => l[i].length), ['', 'qvl', 'llama.cpp', 'qvl/llama.cpp'][i].length));
  console.log('');
  const sides = a.rounds > 1 ? ` (medians of ${a.rounds} rounds; the ratio is the median of the rounds' ratios, each listed)` : '';
  console.log(`${''.padEnd(w[0])}  ${'qvl'.padStart(w[1])}  ${'llama.cpp'.padStart(w[2])}  qvl/llama.cpp${sides}`);
  for (const l of lines) console.log(`${l[0].padEnd(w[0])}  ${l[1].padStart(w[1])}  ${l[2].padStart(w[2])}  ${l[3]}`);
  console.log(`load average at end: ${os.loadavg().map(f2).join(' ')}`);
}

await main();
