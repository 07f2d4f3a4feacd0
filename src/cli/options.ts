import { InvalidArgumentError } from 'commander';

/** commander parsers that refuse bad values with a message naming the rule. */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got "${v}"`);
    return n;
  };
}

export function floatArg(min: number, max = Number.POSITIVE_INFINITY) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}, got "${v}"`);
    return n;
  };
}

export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** Writes a one-line, self-overwriting status to stderr when it is a terminal. */
export function statusLine(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`);
}

export function clearStatus(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}
