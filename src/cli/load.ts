import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Option, type Command } from 'commander';
import type { Qwen3VL } from '../api/qwen3vl.ts';
import type { BackendName } from '../kernels/select.ts';
import { clearStatus, intArg, statusLine } from './options.ts';
import { resolveModelDir } from './model-dir.ts';

export interface ModelFlags {
  model?: string;
  backend: BackendName;
  threads?: number;
  quant?: 'q8' | 'q4';
}

/** The flags every command that loads a model shares. */
export function addModelFlags(cmd: Command): Command {
  return cmd
    .option('-m, --model <dir|org/name>', 'model folder (Hugging Face layout) or Hugging Face repo id, downloaded to the HF cache if missing; default: the bundled demo model')
    .option('--backend <name>', 'compute backend: auto, native or ts', 'auto')
    .option('-t, --threads <n>', 'threads for the native backend (default: physical cores)', intArg(1, 1024))
    .addOption(quantOption('quantize float weights while loading (q8: int8 blocks; q4: 4-bit text decoder)'));
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
  const model = await Qwen3VL.fromPretrained(dir, {
    backend: flags.backend,
    threads: flags.threads,
    quant: flags.quant,
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
