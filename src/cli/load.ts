import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import type { Qwen3VL } from '../api/qwen3vl.ts';
import { INSTRUCTION_SETS, type BackendName, type InstructionSet } from '../kernels/select.ts';
import { InvalidArgumentError } from 'commander';
import { describePlan, planMemory, type MemoryPlan } from '../api/memory-plan.ts';
import { DEFAULT_KV_TYPE, type KvType } from '../kernels/kv.ts';
import { loadConfig, type RopeScalingOverride } from '../model/config.ts';
import { clearStatus, floatArg, intArg, statusLine } from './options.ts';
import { resolveModelDir } from './model-dir.ts';

export interface ModelFlags {
  model?: string;
  backend: BackendName;
  threads?: number;
  isa?: InstructionSet;
  quant?: 'q8' | 'q4';
  kvType?: KvType;
  context?: number;
  ropeScaling?: 'yarn';
  ropeFactor?: number;
  ropeOriginalContext?: number;
}

/** What loading a model takes from the flags (the same for in-process and worker loading). */
export interface LoadSettings {
  backend: BackendName;
  threads?: number;
  isa?: InstructionSet;
  quant?: 'q8' | 'q4';
  kvType?: KvType;
  context?: number;
  ropeScaling?: RopeScalingOverride;
}

export function loadSettings(flags: ModelFlags): LoadSettings {
  if (flags.ropeFactor !== undefined && !flags.ropeScaling) throw new InvalidArgumentError('--rope-factor needs --rope-scaling yarn');
  if (flags.ropeScaling && flags.ropeFactor === undefined) throw new InvalidArgumentError('--rope-scaling yarn needs --rope-factor (e.g. 4 for 1M positions on a 256K model)');
  const ropeScaling: RopeScalingOverride | undefined = flags.ropeScaling
    ? { type: 'yarn', factor: flags.ropeFactor!, originalMaxPositionEmbeddings: flags.ropeOriginalContext }
    : undefined;
  return { backend: flags.backend, threads: flags.threads, isa: flags.isa, quant: flags.quant, kvType: flags.kvType, context: flags.context, ropeScaling };
}

/** The memory plan of a model folder under these settings (refuses a context that cannot fit). */
export function planQuietly(dir: string, s: LoadSettings): MemoryPlan {
  const cfg = loadConfig(dir, { ropeScaling: s.ropeScaling });
  return planMemory(dir, cfg, { kvType: s.kvType ?? DEFAULT_KV_TYPE, context: s.context, quant: s.quant });
}

/**
 * Works out the memory the flags' context needs before anything is loaded and says it on
 * stderr (on a terminal, or whenever a context setting was given); refuses a context that
 * cannot fit with an error naming what would.
 */
export function planAndReport(dir: string, s: LoadSettings, flags: ModelFlags): MemoryPlan {
  const plan = planQuietly(dir, s);
  if (process.stderr.isTTY || flags.context !== undefined || flags.kvType !== undefined || flags.ropeScaling !== undefined) {
    process.stderr.write(`${describePlan(plan)}\n`);
  }
  return plan;
}

/** The flags every command that loads a model shares. */
export function addModelFlags(cmd: Command): Command {
  return cmd
    .option('-m, --model <dir|org/name>', 'model folder (Hugging Face layout) or Hugging Face repo id, downloaded to the HF cache if missing; default: the bundled demo model')
    .option('--backend <name>', 'compute backend: auto, native or ts', 'auto')
    .option('-t, --threads <n>', 'threads for the native backend (default: physical cores)', intArg(1, 1024))
    .addOption(isaOption())
    .addOption(quantOption('quantize float weights while loading (q8: int8 blocks; q4: 4-bit text decoder)'))
    .addOption(new Option('--kv-type <type>', 'KV cache storage: f16 (default), bf16, q8 (about half of f16) or f32').choices(['f16', 'bf16', 'q8', 'f32']))
    .option('--context <n>', "prompt + answer tokens per sequence (default: the model's when it fits in memory, else what fits)", intArg(16))
    .addOption(new Option('--rope-scaling <type>', 'extend the context beyond the trained one (with --rope-factor)').choices(['yarn']))
    .option('--rope-factor <x>', 'YaRN factor: the context becomes factor × the trained one', floatArg(1.0001, 64))
    .option('--rope-original-context <n>', "YaRN: the trained context (default: the model's max_position_embeddings)", intArg(16));
}

/** `--isa <set>`: one native kernel set instead of the widest this CPU runs. */
export function isaOption(): Option {
  return new Option('--isa <set>', "native kernels: best (default: the widest this CPU runs) or one set, e.g. avx2 to see what an AVX2 CPU gets").choices([...INSTRUCTION_SETS]);
}

/** `-q, --quant q8|q4`: the one meaning of `-q` in every command. */
export function quantOption(description: string): Option {
  return new Option('-q, --quant <type>', description).choices(['q8', 'q4']);
}

/** Loads the model named by the flags, showing progress on a terminal. */
export async function loadModel(flags: ModelFlags): Promise<Qwen3VL> {
  // a repo id is looked up in (or downloaded to) the Hugging Face cache; a folder is used as is
  const { dir } = await resolveModelDir(flags.model);
  const t0 = performance.now();
  statusLine(`loading ${dir} …`);
  const { Qwen3VL } = await import('../api/qwen3vl.ts');
  const settings = loadSettings(flags);
  planAndReport(dir, settings, flags);
  const model = await Qwen3VL.fromPretrained(dir, {
    ...settings,
    onProgress: (done, total) => statusLine(`loading ${dir}: ${Math.round((100 * done) / total)}%`),
  });
  clearStatus();
  if (process.stderr.isTTY) {
    process.stderr.write(`loaded ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${describeBackend(model.info())})\n`);
  }
  if (flags.quant && !preQuantized(dir)) {
    process.stderr.write(`hint: --quant ${flags.quant} quantizes at every load; \`qvl quantize ${dir} ${dir}-${flags.quant} --quant ${flags.quant}\` writes a copy that loads at once\n`);
  }
  return model;
}

/** The folder's config.json names a quantization (a published or a `qvl quantize` checkpoint). */
function preQuantized(dir: string): boolean {
  try {
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const text = cfg.text_config as Record<string, unknown> | undefined;
    return cfg.quantization_config !== undefined || text?.quantization_config !== undefined;
  } catch {
    return false;
  }
}

/** "native backend, avx512vnni, 2 threads" or "ts backend". */
export function describeBackend(info: { backend: string; isa?: string; threads?: number }): string {
  const parts = [`${info.backend} backend`];
  if (info.isa) parts.push(info.isa);
  if (info.threads !== undefined) parts.push(`${info.threads} thread${info.threads === 1 ? '' : 's'}`);
  return parts.join(', ');
}
