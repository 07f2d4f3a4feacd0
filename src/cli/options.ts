import { InvalidArgumentError, Option, type Command } from 'commander';

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

/**
 * Progress of a counted task on stderr: on a terminal one line that rewrites itself at every
 * step; otherwise (a log, CI) at most `lines` lines (default 10: one per tenth of the total, and
 * the last; Infinity: one per step). `line` gets the count and the seconds since the first call.
 */
export function countProgress(line: (done: number, total: number, seconds: number) => string, opts: { lines?: number; tty?: boolean } = {}): (done: number, total: number) => void {
  const tty = opts.tty ?? process.stderr.isTTY === true;
  const t0 = performance.now();
  let printed = 0;
  return (done, total) => {
    const text = line(done, total, (performance.now() - t0) / 1000);
    if (tty) return statusLine(text);
    const step = Math.max(1, Math.ceil(total / (opts.lines ?? 10)));
    if (done === total || done - printed >= step) {
      printed = done;
      process.stderr.write(text + '\n');
    }
  };
}

/** Answer-generation flags shared by `run` and `chat`. */
export interface GenerationFlags {
  system?: string;
  maxTokens: number;
  temp?: number;
  /** the long spelling of --temp */
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  minPixels?: number;
  maxPixels?: number;
}

export function addGenerationFlags(cmd: Command, defaultMaxTokens: number): Command {
  return cmd
    .option('-s, --system <text>', 'a system message')
    .option('-n, --max-tokens <n>', 'most tokens per answer', intArg(1), defaultMaxTokens)
    .option('--temp <t>', "sampling temperature (also --temperature); 0 = greedy (default: the model's generation_config)", floatArg(0, 100))
    .addOption(new Option('--temperature <t>').argParser(floatArg(0, 100)).hideHelp())
    .option('--top-p <p>', 'nucleus sampling mass', floatArg(0, 1))
    .option('--top-k <k>', 'sample among the k most likely tokens', intArg(0))
    .option('--seed <n>', 'random seed for reproducible sampling', intArg(0))
    .option('--min-pixels <n>', 'smallest resized image area in pixels', intArg(1))
    .option('--max-pixels <n>', 'largest resized image area in pixels', intArg(1));
}

/** The generation options the flags ask for, as `chat`/`stream` take them. */
export function generationOptions(flags: GenerationFlags) {
  return {
    maxNewTokens: flags.maxTokens,
    temperature: flags.temp ?? flags.temperature,
    topP: flags.topP,
    topK: flags.topK,
    seed: flags.seed,
    minPixels: flags.minPixels,
    maxPixels: flags.maxPixels,
  };
}
