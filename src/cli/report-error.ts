import { QvlError } from '../errors.ts';

/** Prints an error the way a user can act on it: the message, and the code for scripts. */
export function reportError(e: unknown): void {
  if (e instanceof QvlError) {
    process.stderr.write(`qvl: ${e.message} [${e.code}]\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`qvl: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  }
}
