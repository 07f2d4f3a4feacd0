/**
 * Batches as the CLI and the server see them: submit (every line validated before anything is
 * enqueued), status with request counts, cancel, results, uploaded input files. Workers write the
 * outcomes; this side also settles requests whose job ended without one (a job that stalled too
 * often, a job Redis lost), so every custom_id ends with exactly one line.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QvlError } from '../errors.ts';
import { BATCH_ENDPOINT, batchJson, errorLine, fileJson, newBatchId, newFileId, resultFile, type BatchJson, type BatchRecord, type FileRecord } from './format.ts';
import { jobId, jobOptions, openQueue, type JobData } from './queue.ts';
import { checkQueueName } from './queue-name.ts';
import { connectRedis, pingRedis, redisUnavailable, type RedisRole } from './redis.ts';
import { BatchStore, type WorkerInfo } from './store.ts';
import { BatchValidator, type LineRules } from './validate.ts';

/** The lines of an input, readable more than once: validated in full first, then read again to enqueue. */
export type LineSource = () => AsyncIterable<string>;

export interface SubmitOptions {
  rules: LineRules;
  /** times a request is tried before its failure is final (default 3) */
  attempts?: number;
  inputFileId?: string;
  completionWindow?: string;
  metadata?: Record<string, string> | null;
  /** lines checked so far (first pass) and requests enqueued so far (second pass) */
  onProgress?: (phase: 'validating' | 'enqueuing', done: number) => void;
}

/** Requests enqueued per round trip. */
const CHUNK = 500;
/** Pending requests looked up one by one when settling a batch; more means the batch is still running. */
const SETTLE_LIMIT = 1000;
/** A worker that sent no heartbeat for this long is not counted as live. */
export const WORKER_TTL_MS = 15_000;

export function batchNotFound(id: string): QvlError {
  return new QvlError('FILE_NOT_FOUND', `no batch "${id}" in this queue (a Redis restarted without persistence loses its batches)`, { param: 'batch_id', notFound: true });
}

export class BatchService {
  readonly store: BatchStore;
  readonly queue: Queue<JobData>;
  readonly url: string;
  readonly queueName: string;
  private readonly redis: Redis;

  private constructor(redis: Redis, url: string, queueName: string) {
    this.redis = redis;
    this.url = url;
    this.queueName = queueName;
    this.store = new BatchStore(redis, queueName);
    this.queue = openQueue(queueName, redis);
    // connection errors reach the calls that hit them
    this.queue.on('error', () => {});
  }

  /** Connects and checks that Redis answers (an error naming the URL otherwise). */
  static async connect(url: string, o: { queue: string; role?: RedisRole }): Promise<BatchService> {
    checkQueueName(o.queue);
    const redis = connectRedis(url, o.role ?? 'command');
    try {
      await pingRedis(redis, url);
    } catch (e) {
      redis.disconnect();
      throw e;
    }
    return new BatchService(redis, url, o.queue);
  }

  /** Runs a Redis operation, turning connection failures into an error naming the URL. */
  private async io<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw redisUnavailable(this.url, e);
    }
  }

  async submit(source: LineSource, o: SubmitOptions): Promise<BatchJson> {
    const first = new BatchValidator(o.rules);
    let line = 0;
    for await (const text of source()) {
      first.check(text, ++line);
      if (line % 1000 === 0) o.onProgress?.('validating', line);
    }
    if (first.count === 0) throw new QvlError('MESSAGE_INVALID', 'the input holds no requests (one JSON object a line)', { param: 'input' });

    const id = newBatchId();
    const rec: BatchRecord = {
      id,
      status: 'validating',
      model: first.model!,
      total: first.count,
      endpoint: BATCH_ENDPOINT,
      input_file_id: o.inputFileId ?? '',
      completion_window: o.completionWindow ?? '24h',
      created_at: Math.floor(Date.now() / 1000),
      metadata: o.metadata ?? null,
      errors: [],
    };
    await this.io(() => this.store.createBatch(rec));

    // Second pass: the same checks again (the input is read anew), then enqueue in chunks.
    const again = new BatchValidator(o.rules);
    const attempts = o.attempts ?? 3;
    let chunk: { index: number; customId: string; line: number; body: Record<string, unknown> }[] = [];
    let enqueued = 0;
    const flush = async () => {
      if (chunk.length === 0) return;
      const jobs = chunk;
      chunk = [];
      await this.store.addRequests(id, jobs[0]!.index, jobs.map((j) => j.customId));
      await this.queue.addBulk(
        jobs.map((j) => ({ name: 'chat', data: { batch: id, index: j.index, custom_id: j.customId, line: j.line, body: j.body }, opts: jobOptions(id, j.index, attempts) })),
      );
      enqueued += jobs.length;
      o.onProgress?.('enqueuing', enqueued);
    };
    try {
      line = 0;
      for await (const text of source()) {
        const r = again.check(text, ++line);
        if (!r) continue;
        chunk.push({ ...r, index: again.count - 1 });
        if (chunk.length >= CHUNK) await flush();
      }
      await flush();
      if (again.count !== first.count) throw new QvlError('MESSAGE_INVALID', `the input changed while it was submitted (${first.count} requests, then ${again.count})`, {});
      await this.store.transition(id, ['validating'], 'in_progress');
    } catch (e) {
      const err = e instanceof QvlError ? e : redisUnavailable(this.url, e);
      const message = `${err.message} (after ${enqueued} of ${first.count} requests were enqueued; the batch is marked failed and workers skip its requests)`;
      await this.store.transition(id, ['validating'], 'failed', { errors: [{ message }] }).catch(() => {});
      throw new QvlError(err.code, message, { ...err.detail, batch: id });
    }
    return this.retrieve(id);
  }

  /** The batch object; settles requests whose jobs ended without an outcome, and finishes the batch when none is left. */
  async retrieve(id: string): Promise<BatchJson> {
    return this.io(async () => {
      let rec = await this.store.getBatch(id);
      if (!rec) throw batchNotFound(id);
      let counts = await this.store.counts(id);
      if ((rec.status === 'in_progress' || rec.status === 'cancelling') && counts.pending > 0 && counts.pending <= SETTLE_LIMIT) {
        await this.settle(id);
        counts = await this.store.counts(id);
      }
      if ((rec.status === 'in_progress' || rec.status === 'cancelling') && counts.pending === 0) {
        await this.store.finish(id);
        rec = (await this.store.getBatch(id))!;
      }
      return batchJson(rec, { total: rec.total, completed: counts.completed, failed: counts.failed });
    });
  }

  /** Requests whose job failed in BullMQ itself (stalled too often) or is gone get their error line. */
  private async settle(id: string): Promise<void> {
    for await (const chunk of this.store.pending(id)) {
      await Promise.all(
        chunk.map(async ({ index, customId }) => {
          const job = await this.queue.getJob(jobId(id, index));
          const state = job ? await job.getState() : 'unknown';
          if (state === 'failed') {
            const line = errorLine(customId, { code: 'job_failed', message: job!.failedReason || 'the job failed', attempts: job!.attemptsStarted });
            await this.store.storeError(id, index, customId, line, true);
          } else if (state === 'unknown' || state === 'completed') {
            // a finished job's outcome is stored before BullMQ drops it, so the script keeps a real answer
            const line = errorLine(customId, { code: 'job_lost', message: 'the job is no longer in Redis (was Redis restarted without persistence?)' });
            await this.store.storeError(id, index, customId, line, true);
          }
        }),
      );
    }
  }

  /**
   * Stops a batch: waiting and retrying requests are removed and fail with `batch_cancelled`;
   * running ones are stopped by their workers (or finish first). Finished batches stay as they are.
   */
  async cancel(id: string): Promise<BatchJson> {
    await this.io(async () => {
      const rec = await this.store.getBatch(id);
      if (!rec) throw batchNotFound(id);
      const now = await this.store.transition(id, ['validating', 'in_progress'], 'cancelling');
      if (now !== 'cancelling') return;
      for await (const chunk of this.store.pending(id)) {
        await Promise.all(
          chunk.map(async ({ index, customId }) => {
            // 0: a worker holds it (it sees the cancellation) or it is already gone
            if ((await this.queue.remove(jobId(id, index))) === 1) {
              await this.store.storeError(id, index, customId, errorLine(customId, { code: 'batch_cancelled', message: 'the batch was cancelled before this request ran' }));
            }
          }),
        );
      }
    });
    return this.retrieve(id);
  }

  /** Output lines (answers and failures; or one of the two), each custom_id once, in input order. */
  async results(id: string, kind: 'output' | 'errors' | 'all' = 'all'): Promise<{ batch: BatchJson; lines: AsyncIterable<string> }> {
    const batch = await this.retrieve(id);
    const store = this.store;
    const url = this.url;
    async function* lines() {
      try {
        yield* store.lines(id, kind);
      } catch (e) {
        throw redisUnavailable(url, e);
      }
    }
    return { batch, lines: lines() };
  }

  async list(limit: number, after?: string): Promise<BatchJson[]> {
    const ids = await this.io(() => this.store.listBatches(limit, after));
    const out: BatchJson[] = [];
    for (const id of ids) {
      try {
        out.push(await this.retrieve(id));
      } catch (e) {
        if (!(e instanceof QvlError && e.detail.notFound)) throw e;
      }
    }
    return out;
  }

  async uploadFile(filename: string, purpose: string, content: Buffer): Promise<ReturnType<typeof fileJson>> {
    const rec: FileRecord = { id: newFileId(), bytes: content.length, created_at: Math.floor(Date.now() / 1000), filename, purpose };
    await this.io(() => this.store.putFile(rec, content));
    return fileJson(rec);
  }

  /** The bytes of an uploaded file, or undefined when there is none. */
  async uploaded(id: string): Promise<Buffer | undefined> {
    return this.io(async () => ((await this.store.getFile(id)) ? ((await this.store.fileContent(id)) ?? Buffer.alloc(0)) : undefined));
  }

  /** An uploaded file, or the output / error file of a finished batch; undefined when there is none. */
  async file(id: string): Promise<{ record: ReturnType<typeof fileJson>; content: () => AsyncIterable<Buffer> } | undefined> {
    const store = this.store;
    const made = resultFile(id);
    if (made) {
      const batch = await this.retrieve(made.batchId).catch((e) => {
        if (e instanceof QvlError && e.detail.notFound) return undefined;
        throw e;
      });
      if (!batch || (made.kind === 'output' ? batch.output_file_id : batch.error_file_id) !== id) return undefined;
      const lines = () => store.lines(made.batchId, made.kind);
      let bytes = 0;
      for await (const l of lines()) bytes += Buffer.byteLength(l) + 1;
      const record = fileJson({ id, bytes, created_at: batch.completed_at ?? batch.cancelled_at ?? batch.created_at, filename: `${made.batchId}_${made.kind}.jsonl`, purpose: 'batch_output' });
      return {
        record,
        content: async function* () {
          for await (const l of lines()) yield Buffer.from(`${l}\n`);
        },
      };
    }
    return this.io(async () => {
      const rec = await this.store.getFile(id);
      if (!rec) return undefined;
      return {
        record: fileJson(rec),
        content: async function* () {
          yield (await store.fileContent(id)) ?? Buffer.alloc(0);
        },
      };
    });
  }

  async workers(): Promise<WorkerInfo[]> {
    return this.io(() => this.store.liveWorkers(WORKER_TTL_MS));
  }

  async close(): Promise<void> {
    await this.queue.close().catch(() => {});
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
