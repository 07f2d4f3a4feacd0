#!/usr/bin/env node
import { createProgram } from './program.ts';
import { reportError } from './report-error.ts';

// `qvl … | head` closes the pipe early; that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

createProgram().parseAsync(process.argv).catch((e) => {
  reportError(e);
  process.exitCode = process.exitCode || 1;
});
