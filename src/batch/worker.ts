/**
 * A batch worker: one model loaded once, BullMQ jobs taken from the queue (`parallel` held at a
 * time: while one generates, the next is fetched and prepared), each answered exactly as the
 * server would answer the same body. A job is acknowledged only after its outcome is stored under
 * its custom_id, so a worker that dies (SIGKILL, power loss) loses nothing: its jobs stall and
 * another worker runs them, and an answer stored twice is still one answer. On stop it takes
 * nothing new, lets running jobs finish for the grace period, then puts the rest back in the
 * queue without spending one of their attempts.
 */
import os from 'node:os';
import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { PrepPool } from '../api/prep-pool.ts';
import type { WorkerLoadOptions } from '../api/worker-host.ts';
import { QvlError } from '../errors.ts';
import { loadProcessorConfig } from '../processor/index.ts';
import { WorkerEngine } from '../server/engine.ts';
import { toHttpError } from '../server/errors.ts';
import type { ServerLimits } from '../server/limits.ts';
import type { ChatRequest } from '../server/request.ts';
import { chatCompletion } from '../server/completion.ts';
import { prepOptions } from '../server/prep-options.ts';
import { errorLine, resultLine } from './format.ts';
import { BULL_PREFIX, type JobData } from './queue.ts';
import { checkQueueName } from './queue-name.ts';
import { connectRedis, describeRedisUrl } from './redis.ts';
import { BatchStore, type WorkerInfo } from './store.ts';
import { checkChatBody, type LineRules } from './validate.ts';

export interface BatchWorkerOptions {
  redisUrl: string;
  queue: string;
  modelDir: string;
  /** the `model` values this worker answers (a job naming another fails with model_not_found) */
  modelNames: string[];
  load?: WorkerLoadOptions;
  limits: ServerLimits;
  /** jobs held at once (default 2: while one generates, the next is fetched and prepared) */
  parallel?: number;
  /** a job whose worker sends no lock renewal for this long is given to another worker (default 30 s) */
  lockDurationMs?: number;
  log?: (line: string) => void;
}

/** A seed from the custom_id (FNV-1a), so a sampled answer is the same whichever worker or attempt makes it. */
export function seedFor(customId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < customId.length; i++) {
    h ^= customId.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

interface Running {
  batch: string;
  ac: AbortController;
}

const HEARTBEAT_MS = 5000;
const CANCEL_CHECK_MS = 1000;

export class BatchWorker {
  readonly name: string;
  readonly stats = { completed: 0, failed: 0, released: 0 };
  private readonly o: BatchWorkerOptions;
  private readonly log: (line: string) => void;
  private readonly redis: Redis;
  private readonly store: BatchStore;
  private readonly engine: WorkerEngine;
  private readonly prep: PrepPool;
  private readonly rules: LineRules;
  private worker?: Worker<JobData>;
  private readonly running = new Set<Running>();
  private timers: NodeJS.Timeout[] = [];
  private readonly startedAt = Math.floor(Date.now() / 1000);
  private stopping?: Promise<void>;
  /** set when a stop's grace has run out: a job that only now starts is stopped at once */
  private graceOver = false;

  private constructor(o: BatchWorkerOptions) {
    checkQueueName(o.queue);
    this.o = o;
    this.log = o.log ?? (() => {});
    this.name = `${os.hostname()}-${process.pid}`;
    this.redis = connectRedis(o.redisUrl, 'worker');
    this.store = new BatchStore(this.redis, o.queue);
    const processor = loadProcessorConfig(o.modelDir);
    this.rules = { limits: o.limits, modelNames: o.modelNames, modelBounds: { maxImagePixels: processor.image.maxPixels, maxVideoPixels: processor.video.maxPixels } };
    this.engine = new WorkerEngine(o.modelDir, o.load ?? {}, this.log);
    this.prep = new PrepPool(o.modelDir, { workers: 1 });
    this.watchConnection();
  }

  /** Loads the model, then starts taking jobs. */
  static async start(o: BatchWorkerOptions): Promise<BatchWorker> {
    const w = new BatchWorker(o);
    await w.engine.loaded;
    if (w.engine.state() === 'failed') {
      const e = w.engine.failure();
      await w.close();
      throw e ?? new QvlError('INTERNAL', 'the model failed to load');
    }
    w.run();
    return w;
  }

  private run(): void {
    const lockDuration = this.o.lockDurationMs ?? 30_000;
    this.worker = new Worker<JobData>(this.o.queue, (job, token) => this.process(job, token), {
      connection: this.redis,
      prefix: BULL_PREFIX,
      name: this.name,
      concurrency: this.o.parallel ?? 2,
      lockDuration,
      stalledInterval: lockDuration,
      // a job whose worker died twice is tried a third time; one that kills every worker fails
      maxStalledCount: 2,
    });
    let lastError = '';
    this.worker.on('error', (e) => {
      // the same connection error repeats on every retry: say it once
      if (e.message !== lastError) this.log(`queue error: ${(lastError = e.message)}`);
    });
    this.worker.on('stalled', (id) => this.log(`job ${id} stalled (its worker stopped renewing its lock); it runs again`));
    this.timers.push(setInterval(() => void this.heartbeat(), HEARTBEAT_MS));
    this.timers.push(setInterval(() => void this.checkCancelled(), CANCEL_CHECK_MS));
    void this.heartbeat();
    this.log(`worker ${this.name}: taking jobs from queue "${this.o.queue}" at ${describeRedisUrl(this.o.redisUrl)} (model ${this.o.modelNames.map((n) => `"${n}"`).join(', ')}, ${this.o.parallel ?? 2} at a time)`);
  }

  private watchConnection(): void {
    let lost = false;
    this.redis.on('close', () => {
      if (!lost && !this.stopping) this.log(`lost the connection to Redis at ${describeRedisUrl(this.o.redisUrl)}; retrying (jobs wait, nothing is lost)`);
      lost = true;
    });
    this.redis.on('ready', () => {
      if (lost) this.log('connected to Redis again');
      lost = false;
    });
  }

  private info(): WorkerInfo {
    return {
      name: this.name,
      host: os.hostname(),
      pid: process.pid,
      models: this.o.modelNames,
      parallel: this.o.parallel ?? 2,
      started_at: this.startedAt,
      completed: this.stats.completed,
      failed: this.stats.failed,
    };
  }

  private async heartbeat(): Promise<void> {
    if (this.stopping) return;
    await this.store.heartbeat(this.info()).catch(() => {});
  }

  /** Stops running jobs of batches that were cancelled meanwhile. */
  private async checkCancelled(): Promise<void> {
    const batches = new Set([...this.running].map((r) => r.batch));
    for (const b of batches) {
      const status = await this.store.status(b).catch(() => 'in_progress');
      if (status === 'in_progress' || status === 'validating') continue;
      for (const r of this.running) if (r.batch === b) r.ac.abort('cancel');
    }
  }

  /** The model, once loaded again after its thread died. */
  private async engineReady(signal: AbortSignal): Promise<void> {
    while (this.engine.state() === 'restarting' || this.engine.state() === 'loading') {
      if (signal.aborted) throw new QvlError('ABORTED', 'stopped while the model was being loaded again');
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async process(job: Job<JobData>, token?: string): Promise<string> {
    const d = job.data;
    const what = `${d.batch} line ${d.line} (custom_id ${JSON.stringify(d.custom_id)})`;
    const { status, answered } = await this.store.before(d.batch, d.custom_id);
    if (status === undefined || status === 'cancelling' || status === 'cancelled' || status === 'failed') {
      const code = status === 'failed' ? 'batch_failed' : 'batch_cancelled';
      await this.settled(d.batch, await this.store.storeError(d.batch, d.index, d.custom_id, errorLine(d.custom_id, { code, message: `the batch is ${status ?? 'gone'}; this request did not run` }), true));
      return 'skipped';
    }
    // a second delivery of an answered request (its worker died after storing, before acknowledging)
    if (answered) return 'answered before';

    const t0 = performance.now();
    const run: Running = { batch: d.batch, ac: new AbortController() };
    this.running.add(run);
    // taken just before the stop and registered after the grace ran out: put back like the others
    if (this.graceOver) run.ac.abort('shutdown');
    const signal = run.ac.signal;
    try {
      const req = checkChatBody(d.body, this.rules, this.o.modelNames);
      await this.engineReady(signal);
      const prepared = await this.prep.prepare(req.messages, prepOptions(req, this.engine.info()?.maxPositions), signal);
      const s = this.engine.streamPrepared(prepared, { ...req.options, seed: req.options.seed ?? seedFor(d.custom_id), signal });
      await s.prompt;
      for await (const _ of s) {
        // the result carries the text
      }
      const r = await s.result;
      await this.settled(d.batch, await this.store.storeResult(d.batch, d.index, d.custom_id, resultLine(d.custom_id, chatCompletion(req, r))));
      this.stats.completed++;
      this.log(`${what}: answered in ${Math.round(performance.now() - t0)} ms (${r.usage.promptTokens}+${r.usage.completionTokens} tokens)`);
      return 'answered';
    } catch (e) {
      if (signal.aborted && signal.reason === 'shutdown' && token) {
        // back to the queue as it was: the attempt is not counted
        await job.moveToWait(token);
        this.stats.released++;
        this.log(`${what}: put back in the queue (worker stopping)`);
        throw new WaitingError();
      }
      if (signal.aborted && signal.reason === 'cancel') {
        await this.settled(d.batch, await this.store.storeError(d.batch, d.index, d.custom_id, errorLine(d.custom_id, { code: 'batch_cancelled', message: 'the batch was cancelled while this request ran' }), true));
        this.log(`${what}: stopped (batch cancelled)`);
        return 'cancelled';
      }
      const h = toHttpError(e);
      // a request the server would refuse fails the same way every time: no retry
      const permanent = h.status < 500;
      const tries = job.opts.attempts ?? 1;
      const final = permanent || job.attemptsMade + 1 >= tries;
      if (final) {
        await this.settled(d.batch, await this.store.storeError(d.batch, d.index, d.custom_id, errorLine(d.custom_id, { code: h.code ?? 'error', message: h.message, param: h.param, attempts: job.attemptsStarted })));
        this.stats.failed++;
      }
      this.log(`${what}: failed${final ? '' : ` (attempt ${job.attemptsMade + 1} of ${tries}; it will be retried)`}: ${h.message}`);
      throw permanent ? new UnrecoverableError(h.message) : e;
    } finally {
      this.running.delete(run);
    }
  }

  /** The last outcome of a batch finishes it (completed_at is when it was done, not when someone looked). */
  private async settled(batch: string, left: number | { left: number }): Promise<void> {
    if ((typeof left === 'number' ? left : left.left) === 0) await this.store.finish(batch);
  }

  /**
   * Stops taking jobs; running ones get `graceMs` to finish, then are stopped and put back in the
   * queue for another worker. Resolves when everything is closed.
   */
  stop(graceMs: number): Promise<void> {
    return (this.stopping ??= (async () => {
      const timer = setTimeout(() => {
        this.graceOver = true;
        for (const r of this.running) r.ac.abort('shutdown');
      }, graceMs);
      await this.worker?.close().catch(() => {});
      clearTimeout(timer);
      await this.close();
    })());
  }

  private async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.store.removeWorker(this.name).catch(() => {});
    await Promise.all([this.engine.close(), this.prep.close()]);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
