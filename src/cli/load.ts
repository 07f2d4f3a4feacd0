import { Option, type Command } from 'commander';
import { Qwen3VL } from '../api/qwen3vl.ts';
import type { BackendName } from '../kernels/select.ts';
import { intArg } from './options.ts';
import { clearStatus, statusLine } from './options.ts';
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
    .option('--threads <n>', 'threads for the native backend (default: physical cores)', intArg(1, 1024))
    .addOption(new Option('--quant <type>', 'quantize float weights while loading (q8: int8 blocks; q4: 4-bit text decoder)').choices(['q8', 'q4']));
}

/** Loads the model named by the flags, showing progress on a terminal. */
export async function loadModel(flags: ModelFlags): Promise<Qwen3VL> {
  // a repo id is looked up in (or downloaded to) the Hugging Face cache; a folder is used as is
  const { dir } = await resolveModelDir(flags.model);
  const t0 = performance.now();
  statusLine(`loading ${dir} …`);
  const model = await Qwen3VL.fromPretrained(dir, {
    backend: flags.backend,
    threads: flags.threads,
    quant: flags.quant,
    onProgress: (done, total) => statusLine(`loading ${dir}: ${Math.round((100 * done) / total)}%`),
  });
  clearStatus();
  if (process.stderr.isTTY) {
    process.stderr.write(`loaded ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${model.backendName} backend)\n`);
  }
  return model;
}
