/**
 * `qvl batch submit | status | results | cancel | list`: OpenAI Batch files on a Redis-backed
 * queue that any number of `qvl worker` processes drain. Also the queue flags that submitters
 * and workers share (the Redis URL and the queue); the request limits are in limit-flags.ts.
 */
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import path from 'node:path';
import readline from 'node:readline';
import { type Command, InvalidArgumentError } from 'commander';
import type { BatchJson } from '../batch/format.ts';
import { DEFAULT_QUEUE } from '../batch/queue-name.ts';
import type { BatchService } from '../batch/service.ts';
import { QvlError } from '../errors.ts';
import { addLimitFlags, limitsFromFlags, type LimitFlags } from './limit-flags.ts';
import { clearStatus, collect, intArg, statusLine } from './options.ts';

export interface QueueFlags {
  redis: string;
  queue: string;
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export function addQueueFlags(cmd: Command): Command {
  return cmd
    .option('--redis <url>', 'the Redis holding the queue (redis://[:password@]host:port[/db]; default $QVL_REDIS_URL or redis://127.0.0.1:6379)', process.env.QVL_REDIS_URL ?? DEFAULT_REDIS_URL)
    .option('--queue <name>', 'queue name; use one queue per model', DEFAULT_QUEUE);
}

function keyValue(v: string, prev: Record<string, string> = {}): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError(`expected key=value, got "${v}"`);
  return { ...prev, [v.slice(0, i)]: v.slice(i + 1) };
}

/** A text bar: `[█████░░░░░]  50%`. */
export function progressBar(done: number, total: number, width = 30): string {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const full = Math.floor(f * width);
  return `[${'█'.repeat(full)}${'░'.repeat(width - full)}] ${String(Math.floor(f * 100)).padStart(3)}%`;
}

const FINAL = new Set(['completed', 'cancelled', 'failed', 'expired']);

function describeBatch(b: BatchJson): string {
  const c = b.request_counts;
  const done = c.completed + c.failed;
  return `${progressBar(done, c.total)}  ${done}/${c.total}  (${c.completed} answered, ${c.failed} failed)  ${b.status}`;
}

async function withService<T>(flags: QueueFlags, f: (s: BatchService) => Promise<T>): Promise<T> {
  // loaded here: building the program (and --help) stays quick
  const { BatchService } = await import('../batch/service.ts');
  const s = await BatchService.connect(flags.redis, { queue: flags.queue });
  try {
    return await f(s);
  } finally {
    await s.close();
  }
}

function fileLines(file: string) {
  return () => readline.createInterface({ input: createReadStream(file), crlfDelay: Infinity });
}

interface SubmitFlags extends QueueFlags, LimitFlags {
  attempts: number;
  metadata?: Record<string, string>;
  json?: boolean;
}

async function submit(file: string, flags: SubmitFlags): Promise<void> {
  if (!existsSync(file) || !statSync(file).isFile()) throw new QvlError('FILE_NOT_FOUND', `${file}: no such file`, { file });
  const name = path.basename(file);
  await withService(flags, async (s) => {
    let batch: BatchJson;
    try {
      batch = await s.submit(fileLines(file), {
        rules: { limits: limitsFromFlags(flags) },
        attempts: flags.attempts,
        inputFileId: path.resolve(file),
        metadata: flags.metadata ?? null,
        onProgress: (phase, n) => statusLine(phase === 'validating' ? `checking ${name}: line ${n}` : `enqueuing: ${n} requests`),
      });
    } catch (e) {
      clearStatus();
      // a line refused before the batch existed (the first pass): nothing reached Redis
      if (e instanceof QvlError && typeof e.detail.line === 'number' && e.detail.batch === undefined) {
        throw new QvlError(e.code, `${name} ${e.message}; nothing was enqueued`, e.detail);
      }
      throw e;
    }
    clearStatus();
    if (flags.json) process.stdout.write(`${JSON.stringify(batch)}\n`);
    else process.stdout.write(`${batch.id}\n`);
    process.stderr.write(`submitted ${batch.id}: ${batch.request_counts.total} requests for model "${batch.model}" on queue "${flags.queue}"\n`);
    const workers = await s.workers();
    const serving = workers.filter((w) => w.models.includes(batch.model));
    if (serving.length === 0) {
      process.stderr.write(`no live worker serves "${batch.model}" on this queue yet: start one with  qvl worker --redis ${flags.redis} --queue ${flags.queue}\n`);
    } else process.stderr.write(`${serving.length} live worker(s) serve it; follow with  qvl batch status ${batch.id} --watch\n`);
  });
}

interface StatusFlags extends QueueFlags {
  json?: boolean;
  watch?: boolean;
  interval: number;
}

async function status(id: string, flags: StatusFlags): Promise<void> {
  await withService(flags, async (s) => {
    const show = async (): Promise<BatchJson> => {
      const [b, workers] = await Promise.all([s.retrieve(id), s.workers()]);
      if (flags.json) process.stdout.write(`${JSON.stringify(b)}\n`);
      else {
        const line = `${describeBatch(b)}  ·  ${workers.length} live worker(s)`;
        if (flags.watch && process.stdout.isTTY) process.stdout.write(`\r\x1b[K${line}`);
        else process.stdout.write(`${line}\n`);
      }
      return b;
    };
    if (!flags.json) {
      const b = await s.retrieve(id);
      process.stdout.write(`${b.id}  model "${b.model}"  created ${new Date(b.created_at * 1000).toISOString()}\n`);
    }
    let b = await show();
    while (flags.watch && !FINAL.has(b.status)) {
      await new Promise((r) => setTimeout(r, flags.interval * 1000));
      b = await show();
    }
    if (flags.watch && process.stdout.isTTY && !flags.json) process.stdout.write('\n');
    if (b.status === 'failed' && b.errors) for (const e of b.errors.data) process.stderr.write(`batch failed: ${e.message}\n`);
  });
}

interface ResultsFlags extends QueueFlags {
  out?: string;
  only?: 'output' | 'errors';
}

async function results(id: string, flags: ResultsFlags): Promise<void> {
  await withService(flags, async (s) => {
    const { batch, lines } = await s.results(id, flags.only ?? 'all');
    const out: NodeJS.WritableStream = flags.out ? createWriteStream(flags.out) : process.stdout;
    let n = 0;
    for await (const line of lines) {
      n++;
      if (!out.write(`${line}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    if (flags.out) {
      out.end();
      await finished(out);
    }
    const c = batch.request_counts;
    process.stderr.write(`${n} lines${flags.out ? ` written to ${flags.out}` : ''} (${c.completed} answered, ${c.failed} failed, of ${c.total})\n`);
    if (!FINAL.has(batch.status)) process.stderr.write(`the batch is ${batch.status}: ${c.total - c.completed - c.failed} requests have no outcome yet\n`);
  });
}

export function registerBatch(program: Command): void {
  const batch = program
    .command('batch')
    .description('batch jobs on a Redis queue (OpenAI Batch format): submit, status, results, cancel, list; `qvl worker` processes them')
    .addHelpText(
      'after',
      `
Example:
  qvl batch submit requests.jsonl --redis redis://queue-host:6379     # prints the batch id
  qvl worker --redis redis://queue-host:6379                          # on every machine
  qvl batch status batch_… --watch
  qvl batch results batch_… --out results.jsonl

Each line of the input: {"custom_id": "…", "method": "POST", "url": "/v1/chat/completions", "body": {chat request}}.
See docs/batch.md.`,
    );

  addLimitFlags(
    addQueueFlags(
      batch
        .command('submit')
        .description('validate every line of an OpenAI Batch input file, then enqueue it as one batch (prints its id)')
        .argument('<input.jsonl>', 'one request a line')
        .option('--attempts <n>', 'times a request is tried before its failure is final', intArg(1, 100), 3)
        .option('--metadata <key=value>', 'stored with the batch (repeatable)', keyValue)
        .option('--json', 'print the batch object instead of its id'),
    ),
  ).action(submit);

  addQueueFlags(
    batch
      .command('status')
      .description('request counts and a progress bar')
      .argument('<batch-id>')
      .option('--watch', 'refresh until the batch is finished')
      .option('--interval <seconds>', 'refresh period with --watch', intArg(1, 3600), 2)
      .option('--json', 'print the OpenAI batch object'),
  ).action(status);

  addQueueFlags(
    batch
      .command('results')
      .description('write the output in OpenAI Batch output format: one line per custom_id, with "response" or "error"')
      .argument('<batch-id>')
      .option('-o, --out <file>', 'write here instead of to stdout')
      .option('--only <kind>', '"output" (answers) or "errors" (failures) only', (v) => {
        if (v !== 'output' && v !== 'errors') throw new InvalidArgumentError('expected "output" or "errors"');
        return v;
      }),
  ).action(results);

  addQueueFlags(batch.command('cancel').description('cancel a batch: waiting requests fail with batch_cancelled, running ones are stopped').argument('<batch-id>')).action(
    async (id: string, flags: QueueFlags) => {
      await withService(flags, async (s) => process.stdout.write(`${id}  ${describeBatch(await s.cancel(id))}\n`));
    },
  );

  addQueueFlags(batch.command('list').description('batches on the queue, newest first').option('--limit <n>', 'how many', intArg(1, 1000), 20)).action(
    async (flags: QueueFlags & { limit: number }) => {
      await withService(flags, async (s) => {
        for (const b of await s.list(flags.limit)) process.stdout.write(`${b.id}  ${new Date(b.created_at * 1000).toISOString()}  ${describeBatch(b)}\n`);
      });
    },
  );
}
