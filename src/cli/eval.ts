import { Option, type Command } from 'commander';
import { evaluate, formatEvalReport } from '../eval/index.ts';
import type { BackendName } from '../kernels/select.ts';
import type { QuantMode } from '../weights/quant-plan.ts';
import { clearStatus, collect, intArg, statusLine } from './options.ts';

interface EvalFlags {
  backend: BackendName;
  quant?: QuantMode;
  limit?: number;
  perTask?: number;
  task: string[];
  maxTokens?: number;
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('run a held-out set (items.jsonl with expected and HF transformers\' answers) and print accuracy per task, mean IoU for grounding, and the share of answers identical to HF\'s')
    .argument('<model-dir>', 'the model folder')
    .argument('<dataset-dir>', 'folder with items.jsonl and its media (e.g. datasets/demo-heldout)')
    .option('--backend <name>', 'compute backend: auto, native or ts', 'auto')
    .addOption(new Option('--quant <type>', 'quantize the weights at load (compare the answers with HF\'s float ones)').choices(['q8', 'q4']))
    .option('--limit <n>', 'at most this many items', intArg(1))
    .option('--per-task <n>', 'at most this many items of each task', intArg(1))
    .option('--task <name>', 'only this task (repeatable)', collect, [])
    .option('--max-tokens <n>', 'answer length (default: the dataset\'s)', intArg(1))
    .addHelpText('after', '\nExample:\n  qvl eval models/demo datasets/demo-heldout')
    .action(async (modelDir: string, datasetDir: string, f: EvalFlags) => {
      const report = await evaluate(modelDir, datasetDir, {
        backend: f.backend,
        quant: f.quant,
        limit: f.limit,
        perTask: f.perTask,
        tasks: f.task.length ? f.task : undefined,
        maxNewTokens: f.maxTokens,
        onItem: (_r, done, total) => statusLine(`evaluating: ${done}/${total}`),
      });
      clearStatus();
      process.stdout.write(formatEvalReport(report) + '\n');
    });
}
