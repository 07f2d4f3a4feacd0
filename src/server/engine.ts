/**
 * What the HTTP layer needs from a model: requests prepared off the model's thread, then a
 * streamed chat from the prepared prompt. The real engine is a WorkerModel (inference on its own
 * thread) restarted if its thread dies, with a PrepPool in front; tests inject scripted engines
 * to exercise parsing and response shapes without a trained model.
 */
import type { PrepOptions } from '../api/prep-protocol.ts';
import type { PromptCost } from '../api/prompt-cost.ts';
import type { PreparedPrompt } from '../api/prompt.ts';
import type { PromptInfo, WorkerCallOptions, WorkerChatStream, WorkerModelInfo } from '../api/worker-host.ts';
import { WorkerModel, type WorkerLoadOptions } from '../api/worker-host.ts';
import type { EngineStats } from '../api/worker-protocol.ts';
import { QvlError } from '../errors.ts';

export type EngineState = 'loading' | 'ready' | 'restarting' | 'failed';

/** Turns requests into prepared prompts or token costs (fetching, decoding, tokenizing). */
export interface Preparer {
  prepare(messages: unknown, opts: PrepOptions, signal?: AbortSignal): Promise<PreparedPrompt>;
  cost(messages: unknown, opts: PrepOptions, signal?: AbortSignal): Promise<PromptCost>;
  close(): Promise<void>;
}

export interface ServerEngine {
  state(): EngineState;
  /** why loading failed */
  failure(): QvlError | undefined;
  /** model facts, once ready */
  info(): WorkerModelInfo | undefined;
  streamPrepared(prepared: PreparedPrompt, opts: WorkerCallOptions): WorkerChatStream;
  /** the model thread's latest counters (batch, KV pool, caches), when the engine reports them */
  stats?(): EngineStats | undefined;
  close(): Promise<void>;
}

export type { PromptInfo, WorkerChatStream };

/**
 * A WorkerModel that loads in the background (the server listens, answering 503, meanwhile) and
 * is loaded again if its thread dies; the requests it held fail with a 500 that says so.
 */
export class WorkerEngine implements ServerEngine {
  private model?: WorkerModel;
  private error?: QvlError;
  private restarting = false;
  private closing = false;
  /** settles when the first load has (resolved or failed) */
  readonly loaded: Promise<void>;
  /** how many times the worker was started again after dying */
  restarts = 0;
  private readonly dir: string;
  private readonly opts: WorkerLoadOptions;
  private readonly log: (line: string) => void;

  constructor(dir: string, opts: WorkerLoadOptions = {}, log: (line: string) => void = () => {}) {
    this.dir = dir;
    this.opts = opts;
    this.log = log;
    this.loaded = this.load(opts);
  }

  private load(opts: WorkerLoadOptions): Promise<void> {
    return WorkerModel.load(this.dir, opts).then(
      (m) => {
        if (this.closing) return void m.close();
        this.model = m;
        this.restarting = false;
        m.onDeath((e) => this.onDeath(m, e));
      },
      (e) => {
        this.error = e instanceof QvlError ? e : new QvlError('INTERNAL', String(e));
        this.restarting = false;
      },
    );
  }

  private onDeath(m: WorkerModel, e: QvlError): void {
    if (this.closing || this.model !== m) return;
    this.model = undefined;
    this.restarting = true;
    this.restarts++;
    this.log(`the inference worker died (${e.message}); loading the model again`);
    void this.load({ ...this.opts, onProgress: undefined });
  }

  state(): EngineState {
    if (this.model) return 'ready';
    if (this.restarting) return 'restarting';
    return this.error ? 'failed' : 'loading';
  }

  failure(): QvlError | undefined {
    return this.error;
  }

  info(): WorkerModelInfo | undefined {
    return this.model?.info;
  }

  stats(): EngineStats | undefined {
    return this.model?.stats();
  }

  streamPrepared(prepared: PreparedPrompt, opts: WorkerCallOptions): WorkerChatStream {
    if (!this.model) throw new QvlError('INTERNAL', this.restarting ? 'the inference worker is being restarted' : 'the model is not loaded');
    return this.model.streamPrepared(prepared, opts);
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.loaded;
    await this.model?.close();
  }
}
