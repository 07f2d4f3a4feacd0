import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { registerBatch } from './batch.ts';
import { registerChat } from './chat.ts';
import { registerDownload } from './download.ts';
import { registerEval } from './eval.ts';
import { registerParity } from './parity.ts';
import { registerQuantize } from './quantize.ts';
import { registerRun } from './run.ts';
import { registerServe } from './serve.ts';
import { registerTokens } from './tokens.ts';
import { registerWorker } from './worker.ts';
import { PROJECT_ROOT } from './paths.ts';

/**
 * Every qvl command and its flags. Command modules load their heavy parts (models, server, media
 * decoders) inside their actions, so building the program, `--help` and `--version` stay quick.
 */
export function createProgram(): Command {
  const { version } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  const program = new Command();
  program
    .name('qvl')
    .version(version, '-V, --version', 'print the qvl version')
    .description('Qwen3-VL in TypeScript: run vision-language models from Hugging Face checkpoints on your own machine')
    .showHelpAfterError('(run "qvl <command> --help" for the options of a command)');

  registerRun(program);
  registerChat(program);
  registerServe(program);
  registerDownload(program);
  registerTokens(program);
  registerParity(program);
  registerEval(program);
  registerQuantize(program);
  registerBatch(program);
  registerWorker(program);
  return program;
}
