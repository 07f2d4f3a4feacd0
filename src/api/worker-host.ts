/**
 * Runs a model on a worker thread and offers the library's surface (`prepare`, `chat`, `stream`)
 * from the calling thread, whose event loop stays free while matmuls run: an HTTP server keeps
 * answering, a spinner keeps spinning. Requests start in order, `parallel` at a time (decoded
 * together in the worker); aborting a request's signal stops its generation at the next token (or
 * drops it from the line if it has not started).
 */
import { Worker } from 'node:worker_threads';
import { QvlError } from '../errors.ts';
import type { BackendName, InstructionSet } from '../kernels/select.ts';
import type { QuantMode } from '../weights/quant-plan.ts';
import type { KvType } from '../kernels/kv.ts';
import type { RopeScalingOverride } from '../model/config.ts';
import type { ChatResult } from './qwen3vl.ts';
import type { PreparedPrompt } from './prompt.ts';
import { deserializeError } from './serialized-error.ts';
import type { EngineStats, HostMessage, PromptInfo, WorkerChatOptions, WorkerInit, WorkerMessage, WorkerModelInfo } from './worker-protocol.ts';

export type { PromptInfo, WorkerChatOptions, WorkerModelInfo } from './worker-protocol.ts';

export interface WorkerLoadOptions {
  /** 'auto' (default), 'native' or 'ts' */
  backend?: BackendName;
  threads?: number;
  /** force a native kernel set (default 'best'), for the worker's thread */
  isa?: InstructionSet;
  /** quantize float weights while loading (q8, or q4 text decoder + q8 rest), as in-process loading */
  quant?: QuantMode;
  kvType?: KvType;
  context?: number;
  ropeScaling?: RopeScalingOverride;
  /** generations run at once, decoded together (default 1: one after another, in order) */
  parallel?: number;
  /** prefix cache and vision-embedding cache budgets in bytes (default 0: off) */
  prefixCacheBytes?: number;
  visionCacheBytes?: number;
  /** weight loading progress */
  onProgress?: (done: number, total: number) => void;
}

export interface WorkerCallOptions extends WorkerChatOptions {
  signal?: AbortSignal;
}

/** A streamed answer: iterate for text deltas; `prompt` resolves before the first delta, `result` at the end. */
export interface WorkerChatStream extends AsyncIterable<string> {
  prompt: Promise<PromptInfo>;
  result: Promise<ChatResult>;
}

/** The host's node flags minus a `--import tsx` (registering the loader twice breaks module loading). */
export function withoutTsxImport(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--import' && /(^|[\\/])tsx([\\/]|$)/.test(argv[i + 1] ?? '')) {
      i++;
      continue;
    }
    if (/^--import=.*\btsx\b/.test(a)) continue;
    out.push(a);
  }
  return out;
}

/** The message for a job (and buffers to move rather than copy), given its id and plain options. */
type JobBuilder = (id: number, opts: WorkerChatOptions) => { message: HostMessage; transfer?: ArrayBuffer[] };

interface Pending {
  onMessage(m: WorkerMessage): void;
  fail(e: QvlError): void;
}

/** A single-consumer queue of text deltas that ends with a value or an error. */
class DeltaChannel implements AsyncIterator<string> {
  private items: string[] = [];
  private waiting?: { resolve: (r: IteratorResult<string>) => void; reject: (e: unknown) => void };
  private ended = false;
  private error: unknown;

  push(text: string): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w.resolve({ value: text, done: false });
    } else this.items.push(text);
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      if (error !== undefined) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<string>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
    if (this.ended) return this.error !== undefined ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }
}

export class WorkerModel {
  readonly info: WorkerModelInfo;
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** requests start in order, at most `parallel` at a time */
  private readonly line: Array<() => void> = [];
  private inFlight = 0;
  private readonly parallel: number;
  private latestStats?: EngineStats;
  private dead?: QvlError;
  private readonly deathListeners: ((e: QvlError) => void)[] = [];

  private constructor(worker: Worker, info: WorkerModelInfo, parallel: number) {
    this.parallel = parallel;
    this.worker = worker;
    this.info = info;
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'stats') this.latestStats = m.stats;
      else if ('id' in m) this.pending.get(m.id)?.onMessage(m);
    });
    const die = (e: QvlError) => {
      this.dead ??= e;
      for (const p of [...this.pending.values()]) p.fail(this.dead);
      this.pending.clear();
      for (const f of this.deathListeners.splice(0)) f(this.dead);
    };
    worker.on('error', (e) => die(new QvlError('INTERNAL', `the inference worker failed: ${e.stack ?? e.message}`)));
    worker.on('exit', (code) => die(new QvlError('INTERNAL', `the inference worker exited (code ${code})`, { code })));
  }

  /** Starts a worker and loads the model folder `dir` in it. */
  static load(dir: string, opts: WorkerLoadOptions = {}): Promise<WorkerModel> {
    const worker = new Worker(new URL('./worker-bootstrap.mjs', import.meta.url), {
      workerData: {
        dir,
        backend: opts.backend ?? 'auto',
        threads: opts.threads,
        isa: opts.isa,
        quant: opts.quant,
        kvType: opts.kvType,
        context: opts.context,
        ropeScaling: opts.ropeScaling,
        parallel: opts.parallel,
        prefixCacheBytes: opts.prefixCacheBytes,
        visionCacheBytes: opts.visionCacheBytes,
      } satisfies WorkerInit,
      // the bootstrap registers the TypeScript loader itself
      execArgv: withoutTsxImport(process.execArgv),
    });
    return new Promise((resolve, reject) => {
      const onExit = (code: number) => reject(new QvlError('INTERNAL', `the inference worker exited while loading ${dir} (code ${code})`, { dir, code }));
      const onError = (e: Error) => reject(new QvlError('INTERNAL', `the inference worker failed while loading ${dir}: ${e.stack ?? e.message}`, { dir }));
      const onMessage = (m: WorkerMessage) => {
        if (m.type === 'progress') opts.onProgress?.(m.done, m.total);
        else if (m.type === 'ready' || m.type === 'load-error') {
          worker.off('message', onMessage).off('exit', onExit).off('error', onError);
          if (m.type === 'ready') resolve(new WorkerModel(worker, m.info, opts.parallel ?? 1));
          else {
            void worker.terminate();
            reject(deserializeError(m.error));
          }
        }
      };
      worker.on('message', onMessage).on('exit', onExit).on('error', onError);
    });
  }

  /** Renders and preprocesses a request in the worker (PDF parts expanded), without generating. */
  prepare(messages: unknown, opts: WorkerCallOptions = {}): Promise<PreparedPrompt> {
    return new Promise((resolve, reject) => {
      this.enqueue((id, plain) => ({ message: { type: 'prepare', id, messages, opts: plain } }), opts, {
        onMessage: (m) => {
          if (m.type === 'prepared') resolve(m.prepared);
          else if (m.type === 'error') reject(deserializeError(m.error));
        },
        fail: reject,
      });
    });
  }

  async chat(messages: unknown, opts: WorkerCallOptions = {}): Promise<ChatResult> {
    const s = this.stream(messages, opts);
    for await (const _ of s) {
      // the result carries the whole text
    }
    return s.result;
  }

  stream(messages: unknown, opts: WorkerCallOptions = {}): WorkerChatStream {
    return this.streamJob((id, plain) => ({ message: { type: 'generate', id, messages, opts: plain } }), opts);
  }

  /**
   * Generates from a prompt prepared elsewhere (`prepare`, or a preparation worker): the model's
   * thread only runs the model. The prompt's buffers are moved to the worker, not copied.
   */
  streamPrepared(prepared: PreparedPrompt, opts: WorkerCallOptions = {}): WorkerChatStream {
    const transfer = [prepared.ids, prepared.pixelValues, prepared.pixelValuesVideos]
      .filter((a): a is Int32Array | Float32Array => a !== undefined && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength)
      .map((a) => a.buffer as ArrayBuffer);
    return this.streamJob((id, plain) => ({ message: { type: 'generate-prepared', id, prepared, opts: plain }, transfer }), opts);
  }

  private streamJob(build: JobBuilder, opts: WorkerCallOptions): WorkerChatStream {
    const channel = new DeltaChannel();
    let resolvePrompt!: (p: PromptInfo) => void;
    let rejectPrompt!: (e: unknown) => void;
    let resolveResult!: (r: ChatResult) => void;
    let rejectResult!: (e: unknown) => void;
    const prompt = new Promise<PromptInfo>((res, rej) => ((resolvePrompt = res), (rejectPrompt = rej)));
    const result = new Promise<ChatResult>((res, rej) => ((resolveResult = res), (rejectResult = rej)));
    // Callers that only use one of the three must not get unhandled rejections from the others.
    prompt.catch(() => {});
    result.catch(() => {});
    const fail = (e: QvlError) => {
      rejectPrompt(e);
      rejectResult(e);
      channel.end(e);
    };
    const id = this.enqueue(build, opts, {
      onMessage: (m) => {
        if (m.type === 'prompt') resolvePrompt(m.info);
        else if (m.type === 'delta') channel.push(m.text);
        else if (m.type === 'done') {
          resolveResult(m.result);
          channel.end();
        } else if (m.type === 'error') fail(deserializeError(m.error));
      },
      fail,
    });
    const iterator: AsyncIterator<string> = {
      next: () => channel.next(),
      // Leaving the loop early cancels the generation.
      return: async () => {
        this.abort(id);
        return { value: undefined, done: true };
      },
    };
    return { [Symbol.asyncIterator]: () => iterator, prompt, result };
  }

  /** The model thread's latest counters (batch, KV pool, caches); undefined before the first report. */
  stats(): EngineStats | undefined {
    return this.latestStats;
  }

  /** Called once if the worker dies (crash, out of memory, exit) or is closed. */
  onDeath(listener: (e: QvlError) => void): void {
    this.deathListeners.push(listener);
  }

  /** Stops the worker (pending requests fail). */
  async close(): Promise<void> {
    this.dead ??= new QvlError('ABORTED', 'the model was closed');
    await this.worker.terminate();
  }

  private abort(id: number): void {
    const p = this.pending.get(id) as (Pending & { started?: boolean }) | undefined;
    if (!p) return;
    if (p.started) this.worker.postMessage({ type: 'abort', id } satisfies HostMessage);
    else {
      this.pending.delete(id);
      p.fail(new QvlError('ABORTED', 'the request was cancelled before it started'));
    }
  }

  private enqueue(build: JobBuilder, opts: WorkerCallOptions, handler: Pending): number {
    const id = this.nextId++;
    const { signal, ...plain } = opts;
    let finished = false;
    const settle = () => {
      if (finished) return;
      finished = true;
      if (entry.started) {
        this.inFlight--;
        this.pump();
      }
    };
    const entry: Pending & { started?: boolean } = {
      onMessage: (m) => {
        if (m.type === 'done' || m.type === 'error' || m.type === 'prepared') {
          this.pending.delete(id);
          signal?.removeEventListener('abort', onAbort);
          settle();
        }
        handler.onMessage(m);
      },
      fail: (e) => {
        signal?.removeEventListener('abort', onAbort);
        settle();
        handler.fail(e);
      },
    };
    const onAbort = () => this.abort(id);
    if (this.dead) {
      queueMicrotask(() => handler.fail(this.dead!));
      return id;
    }
    if (signal?.aborted) {
      queueMicrotask(() => handler.fail(new QvlError('ABORTED', 'the request was cancelled before it started')));
      return id;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    this.pending.set(id, entry);
    const start = () => {
      // dropped while waiting (aborted): nothing to run
      if (!this.pending.has(id)) return;
      if (this.dead) return entry.fail(this.dead);
      entry.started = true;
      this.inFlight++;
      try {
        const job = build(id, plain);
        this.worker.postMessage(job.message, job.transfer ?? []);
      } catch (e) {
        // A message that cannot be cloned (too deep, a function) fails its request, not the process.
        this.pending.delete(id);
        entry.fail(new QvlError('MESSAGE_INVALID', `the request cannot be passed to the inference worker: ${(e as Error).message}`, {}));
      }
    };
    this.line.push(start);
    this.pump();
    return id;
  }

  /** Starts waiting requests while fewer than `parallel` run. */
  private pump(): void {
    while (this.inFlight < this.parallel && this.line.length) this.line.shift()!();
  }
}
