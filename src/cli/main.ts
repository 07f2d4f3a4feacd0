import { Command } from 'commander';
import { registerChat } from './chat.ts';
import { registerDownload } from './download.ts';
import { registerEval } from './eval.ts';
import { registerParity } from './parity.ts';
import { registerQuantize } from './quantize.ts';
import { registerRun } from './run.ts';
import { registerServe } from './serve.ts';
import { registerTokens } from './tokens.ts';
import { reportError } from './report-error.ts';

// `qvl … | head` closes the pipe early; that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const program = new Command();
program
  .name('qvl')
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

program.parseAsync(process.argv).catch((e) => {
  reportError(e);
  process.exitCode = process.exitCode || 1;
});
