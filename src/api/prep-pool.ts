/**
 * Preparation workers seen from the host: requests are prepared (media fetched, decoded and
 * resized, prompts rendered and tokenized) or costed on worker threads, several at a time, so
 * neither the host's event loop nor the model's thread waits on a slow download or a large image.
 * A worker that dies (out of memory, a crash) fails only the jobs it held and is started again.
 */
import { Worker } from 'node:worker_threads';
import { QvlError } from '../errors.ts';
import type { PrepInit, PrepJob, PrepOptions, PrepReply } from './prep-protocol.ts';
import type { PromptCost } from './prompt-cost.ts';
import type { PreparedPrompt } from './prompt.ts';
import { deserializeError } from './serialized-error.ts';
import { withoutTsxImport } from './worker-host.ts';

export interface PrepPoolOptions {
  /** worker threads (default 1: jobs still overlap inside a worker while they wait on I/O) */
  workers?: number;
  /** heap limit of each worker in MiB (default 2048): a request that needs more fails alone */
  maxHeapMb?: number;
}

interface Job {
  resolve(v: PreparedPrompt | PromptCost): void;
  reject(e: QvlError): void;
}

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  jobs: Set<number>;
  /** the worker loaded the model's prompt files (a worker that never did is not started again) */
  loaded: boolean;
}

export class PrepPool {
  private readonly slots: Slot[] = [];
  private readonly jobs = new Map<number, Job>();
  private nextId = 1;
  private closed = false;
  private readonly init: PrepInit;
  private readonly maxHeapMb: number;
  /** workers started again after dying */
  restarts = 0;

  constructor(dir: string, opts: PrepPoolOptions = {}) {
    this.init = { dir };
    this.maxHeapMb = opts.maxHeapMb ?? 2048;
    for (let i = 0; i < Math.max(1, opts.workers ?? 1); i++) this.slots.push(this.start());
  }

  /** Requests being prepared or costed now. */
  get active(): number {
    return this.jobs.size;
  }

  prepare(messages: unknown, opts: PrepOptions, signal?: AbortSignal): Promise<PreparedPrompt> {
    return this.submit('prepare', messages, opts, signal) as Promise<PreparedPrompt>;
  }

  cost(messages: unknown, opts: PrepOptions, signal?: AbortSignal): Promise<PromptCost> {
    return this.submit('cost', messages, opts, signal) as Promise<PromptCost>;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const [id, job] of this.jobs) {
      this.jobs.delete(id);
      job.reject(new QvlError('ABORTED', 'the server is shutting down'));
    }
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private start(): Slot {
    const worker = new Worker(new URL('./prep-bootstrap.mjs', import.meta.url), {
      workerData: this.init,
      execArgv: withoutTsxImport(process.execArgv),
      resourceLimits: { maxOldGenerationSizeMb: this.maxHeapMb },
    });
    let markReady!: () => void;
    let markFailed!: (e: QvlError) => void;
    const ready = new Promise<void>((res, rej) => ((markReady = res), (markFailed = rej)));
    ready.catch(() => {});
    const slot: Slot = { worker, ready, jobs: new Set(), loaded: false };
    worker.on('message', (m: PrepReply) => {
      if (m.type === 'ready') {
        slot.loaded = true;
        return markReady();
      }
      if (m.type === 'load-error') return markFailed(deserializeError(m.error));
      const job = this.jobs.get(m.id);
      if (!job) return;
      this.jobs.delete(m.id);
      slot.jobs.delete(m.id);
      if (m.type === 'error') job.reject(deserializeError(m.error));
      else job.resolve(m.type === 'prepared' ? m.prepared : m.cost);
    });
    let died = false;
    const die = (why: QvlError) => {
      if (died) return;
      died = true;
      markFailed(why);
      for (const id of slot.jobs) {
        const job = this.jobs.get(id);
        this.jobs.delete(id);
        job?.reject(why);
      }
      slot.jobs.clear();
      // A load failure would repeat; the slot stays failed and its jobs get the load error.
      if (this.closed || !slot.loaded) return;
      const i = this.slots.indexOf(slot);
      if (i >= 0) {
        this.restarts++;
        this.slots[i] = this.start();
      }
    };
    worker.on('error', (e: Error & { code?: string }) => {
      if (e.code === 'ERR_WORKER_OUT_OF_MEMORY') {
        die(new QvlError('MEDIA_TOO_LARGE', `preparing the request needed more than the ${this.maxHeapMb} MiB of memory a request may use`, { limitMb: this.maxHeapMb }));
      } else die(new QvlError('INTERNAL', `request preparation failed: ${e.message}`));
    });
    worker.on('exit', (code) => die(new QvlError('INTERNAL', `the preparation worker exited (code ${code})`, { code })));
    return slot;
  }

  private submit(type: 'prepare' | 'cost', messages: unknown, opts: PrepOptions, signal?: AbortSignal): Promise<PreparedPrompt | PromptCost> {
    if (this.closed) return Promise.reject(new QvlError('ABORTED', 'the server is shutting down'));
    if (signal?.aborted) return Promise.reject(new QvlError('ABORTED', 'the request was cancelled'));
    const slot = this.slots.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a));
    const id = this.nextId++;
    return new Promise<PreparedPrompt | PromptCost>((resolve, reject) => {
      const onAbort = () => {
        if (this.jobs.has(id)) slot.worker.postMessage({ type: 'abort', id } satisfies PrepJob);
      };
      const done = () => signal?.removeEventListener('abort', onAbort);
      this.jobs.set(id, {
        resolve: (v) => (done(), resolve(v)),
        reject: (e) => (done(), reject(e)),
      });
      slot.jobs.add(id);
      signal?.addEventListener('abort', onAbort, { once: true });
      slot.ready.then(
        () => {
          if (!this.jobs.has(id)) return;
          try {
            slot.worker.postMessage({ type, id, messages, opts } satisfies PrepJob);
          } catch (e) {
            // Data that cannot be cloned fails its own request only.
            this.jobs.delete(id);
            slot.jobs.delete(id);
            reject(new QvlError('MESSAGE_INVALID', `the request cannot be prepared: ${(e as Error).message}`, {}));
            done();
          }
        },
        (e: QvlError) => {
          if (!this.jobs.has(id)) return;
          this.jobs.delete(id);
          slot.jobs.delete(id);
          done();
          reject(e);
        },
      );
    });
  }
}
