/**
 * What the HTTP layer needs from a model: a streamed chat. The real engine is a WorkerModel
 * (inference on its own thread); tests inject scripted engines to exercise parsing and response
 * shapes without a trained model.
 */
import type { PromptInfo, WorkerCallOptions, WorkerChatStream, WorkerModelInfo } from '../api/worker-host.ts';
import { WorkerModel, type WorkerLoadOptions } from '../api/worker-host.ts';
import { QvlError } from '../errors.ts';

export type EngineState = 'loading' | 'ready' | 'failed';

export interface ServerEngine {
  state(): EngineState;
  /** why loading failed */
  failure(): QvlError | undefined;
  /** model facts, once ready */
  info(): WorkerModelInfo | undefined;
  stream(messages: unknown, opts: WorkerCallOptions): WorkerChatStream;
  close(): Promise<void>;
}

export type { PromptInfo, WorkerChatStream };

/** A WorkerModel that loads in the background: the server listens (answering 503) meanwhile. */
export class WorkerEngine implements ServerEngine {
  private model?: WorkerModel;
  private error?: QvlError;
  readonly loaded: Promise<void>;

  constructor(dir: string, opts: WorkerLoadOptions = {}) {
    this.loaded = WorkerModel.load(dir, opts).then(
      (m) => {
        this.model = m;
      },
      (e) => {
        this.error = e instanceof QvlError ? e : new QvlError('INTERNAL', String(e));
      },
    );
  }

  state(): EngineState {
    return this.model ? 'ready' : this.error ? 'failed' : 'loading';
  }

  failure(): QvlError | undefined {
    return this.error;
  }

  info(): WorkerModelInfo | undefined {
    return this.model?.info;
  }

  stream(messages: unknown, opts: WorkerCallOptions): WorkerChatStream {
    if (!this.model) throw new QvlError('INTERNAL', 'the model is not loaded');
    return this.model.stream(messages, opts);
  }

  async close(): Promise<void> {
    await this.loaded;
    await this.model?.close();
  }
}
