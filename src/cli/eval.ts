import { Option, type Command } from 'commander';
import type { KvType } from '../kernels/kv.ts';
import type { BackendName, InstructionSet } from '../kernels/select.ts';
import type { QuantMode } from '../weights/quant-plan.ts';
import { describeBackend, isaOption, quantOption } from './load.ts';
import { clearStatus, collect, countProgress, intArg, statusLine } from './options.ts';

interface EvalFlags {
  backend: BackendName;
  threads?: number;
  isa?: InstructionSet;
  quant?: QuantMode;
  kvType?: KvType;
  limit?: number;
  perTask?: number;
  task: string[];
  maxTokens?: number;
  teacherForced?: boolean;
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('run a held-out set (items.jsonl with expected and HF transformers\' answers) and print accuracy per task, mean IoU for grounding, and the share of answers identical to HF\'s')
    .argument('<model-dir>', 'the model folder')
    .argument('<dataset-dir>', 'folder with items.jsonl and its media (e.g. datasets/demo-heldout)')
    .option('--backend <name>', 'compute backend: auto, native or ts', 'auto')
    .option('-t, --threads <n>', 'threads for the native backend (default: physical cores)', intArg(1, 1024))
    .addOption(isaOption())
    .addOption(quantOption('quantize the weights at load (compare the answers with HF\'s float ones)'))
    .addOption(new Option('--kv-type <type>', 'KV cache storage (compare the answers with HF\'s float ones): f16 (default), bf16, q8 or f32').choices(['f16', 'bf16', 'q8', 'f32']))
    .option('--limit <n>', 'at most this many items', intArg(1))
    .option('--per-task <n>', 'at most this many items of each task', intArg(1))
    .option('--task <name>', 'only this task (repeatable)', collect, [])
    .option('--max-tokens <n>', 'answer length (default: the dataset\'s)', intArg(1))
    .option('--teacher-forced', 'also run each item along HF\'s answer tokens and count the positions where qvl\'s top token is HF\'s (one changed digit no longer changes the rest of the answer; doubles the time)')
    .addHelpText('after', '\nExample:\n  qvl eval models/demo datasets/demo-heldout')
    .action(async (modelDir: string, datasetDir: string, f: EvalFlags) => {
      const [{ evaluate, formatEvalReport }, { Qwen3VL }] = await Promise.all([import('../eval/index.ts'), import('../api/qwen3vl.ts')]);
      statusLine(`loading ${modelDir} …`);
      const model = await Qwen3VL.fromPretrained(modelDir, { backend: f.backend, threads: f.threads, isa: f.isa, quant: f.quant, kvType: f.kvType });
      const progress = evalProgress(`${modelDir} (${describeBackend(model.info())})`);
      const report = await evaluate(modelDir, datasetDir, {
        model,
        quant: f.quant,
        limit: f.limit,
        perTask: f.perTask,
        tasks: f.task.length ? f.task : undefined,
        maxNewTokens: f.maxTokens,
        teacherForced: f.teacherForced,
        onItem: (_r, done, total) => progress(done, total),
      });
      clearStatus();
      process.stdout.write(formatEvalReport(report) + '\n');
    });
}

/**
 * Progress on stderr while items run (the report goes to stdout): on a terminal one line that
 * rewrites itself after every item; otherwise (a log, CI) a line at every tenth of the items.
 */
export function evalProgress(what: string, tty = process.stderr.isTTY === true): (done: number, total: number) => void {
  return countProgress((done, total, s) => `evaluating ${what}: ${done}/${total} items, ${s.toFixed(0)} s`, { tty });
}
