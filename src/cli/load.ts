import type { Command } from 'commander';
import { Qwen3VL } from '../api/qwen3vl.ts';
import type { BackendName } from '../kernels/select.ts';
import { intArg } from './options.ts';
import { clearStatus, statusLine } from './options.ts';
import { DEMO_MODEL_DIR } from './paths.ts';

export interface ModelFlags {
  model?: string;
  backend: BackendName;
  threads?: number;
}

/** The flags every command that loads a model shares. */
export function addModelFlags(cmd: Command): Command {
  return cmd
    .option('-m, --model <dir>', 'model folder (Hugging Face layout); default: the bundled demo model')
    .option('--backend <name>', 'compute backend: auto, native or ts', 'auto')
    .option('--threads <n>', 'threads for the native backend (default: physical cores)', intArg(1, 1024));
}

/** Loads the model named by the flags, showing progress on a terminal. */
export async function loadModel(flags: ModelFlags): Promise<Qwen3VL> {
  const dir = flags.model ?? DEMO_MODEL_DIR;
  const t0 = performance.now();
  statusLine(`loading ${dir} …`);
  const model = await Qwen3VL.fromPretrained(dir, {
    backend: flags.backend,
    threads: flags.threads,
    onProgress: (done, total) => statusLine(`loading ${dir}: ${Math.round((100 * done) / total)}%`),
  });
  clearStatus();
  if (process.stderr.isTTY) {
    process.stderr.write(`loaded ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${model.backendName} backend)\n`);
  }
  return model;
}
