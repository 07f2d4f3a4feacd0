import type { Command } from 'commander';
import type { BackendName } from '../kernels/select.ts';
import { intArg } from './options.ts';

export function registerParity(program: Command): void {
  program
    .command('parity')
    .description('check a model folder against reference tensors computed by HF transformers, stage by stage')
    .argument('<fixture-dir>', 'folder with config.json, model.safetensors and case_*.json / case_*.safetensors')
    .option('--backend <name>', 'compute backend: auto, native or ts', 'auto')
    .option('-t, --threads <n>', 'threads for the native backend', intArg(1, 1024))
    .option('--only <name...>', 'run only cases whose name contains one of these')
    .option('--quiet', 'print failures and the summary only')
    .action(async (dir: string, flags: { backend: BackendName; threads?: number; only?: string[]; quiet?: boolean }) => {
      const [{ formatCheck }, { runParity }] = await Promise.all([import('../parity/compare.ts'), import('../parity/run-parity.ts')]);
      let failed = 0;
      const checks = await runParity(dir, {
        backend: flags.backend,
        threads: flags.threads,
        only: flags.only,
        onCheck: (c) => {
          if (!c.ok) failed++;
          if (!flags.quiet || !c.ok) process.stdout.write(formatCheck(c) + '\n');
        },
      });
      process.stdout.write(`\n${checks.length - failed} of ${checks.length} checks within tolerance${failed ? `, ${failed} FAILED` : ''}\n`);
      if (failed) process.exitCode = 1;
    });
}
