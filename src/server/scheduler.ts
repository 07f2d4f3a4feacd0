/**
 * Admission and the line for the model. A request is admitted first (while it is prepared on a
 * preparation worker), then waits for one of the model's `parallel` slots (generations decoded
 * together). At most `maxQueue` requests besides the running ones are admitted; past that the
 * answer is a clear 429 with Retry-After. A waiting request whose client goes away leaves the line.
 */
import { HttpError } from './errors.ts';

export type Release = () => void;

interface Waiter {
  resolve: (r: Release) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort: () => void;
}

/** One admitted request: it waits for the model with `model()` and leaves with `done()`. */
export interface Admission {
  model(signal?: AbortSignal): Promise<Release>;
  /** idempotent; call when the request is over, whatever happened */
  done(): void;
}

export class Scheduler {
  private busy = 0;
  private readonly waiting: Waiter[] = [];
  private admitted = 0;
  private closedWith?: HttpError;
  /** moving average of how long a request holds the model, for Retry-After */
  private avgMs = 5000;
  private readonly maxQueue: number;

  constructor(
    maxQueue: number,
    readonly parallel = 1,
  ) {
    this.maxQueue = maxQueue;
  }

  get running(): number {
    return this.busy;
  }

  /** waiting for the model */
  get queued(): number {
    return this.waiting.length;
  }

  /** admitted and not yet waiting for or holding the model: being prepared */
  get preparing(): number {
    return Math.max(0, this.admitted - this.running - this.queued);
  }

  /** requests admitted and not done */
  get active(): number {
    return this.admitted;
  }

  /** Seconds a client should wait before trying again. */
  retryAfter(): number {
    return Math.max(1, Math.ceil(((this.waiting.length / this.parallel + 1) * this.avgMs) / 1000));
  }

  /** Admits a request or throws a 429 HttpError when the line is full (or the error given to `close`). */
  admit(): Admission {
    if (this.closedWith) throw this.closedWith;
    if (this.admitted >= this.maxQueue + this.parallel) {
      const retry = this.retryAfter();
      throw new HttpError(429, `the server is busy: ${this.admitted} requests admitted (${this.parallel} running, ${this.maxQueue} waiting is the limit); retry in about ${retry} s`, {
        code: 'queue_full',
        headers: { 'Retry-After': String(retry) },
      });
    }
    this.admitted++;
    let left = false;
    return {
      model: (signal) => this.acquire(signal),
      done: () => {
        if (left) return;
        left = true;
        this.admitted--;
      },
    };
  }

  /** Refuses new requests with `error` and rejects those waiting for the model with it. */
  close(error: HttpError): void {
    this.closedWith = error;
    for (const w of this.waiting.splice(0)) {
      w.signal?.removeEventListener('abort', w.onAbort);
      w.reject(error);
    }
  }

  private acquire(signal?: AbortSignal): Promise<Release> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (signal?.aborted) return Promise.reject(new HttpError(499, 'the client went away while waiting', { code: 'aborted' }));
    if (this.busy < this.parallel) {
      this.busy++;
      return Promise.resolve(this.releaser());
    }
    return new Promise<Release>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(new HttpError(499, 'the client went away while waiting', { code: 'aborted' }));
        },
      };
      signal?.addEventListener('abort', w.onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  private releaser(): Release {
    const t0 = performance.now();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.avgMs = 0.7 * this.avgMs + 0.3 * (performance.now() - t0);
      const next = this.waiting.shift();
      if (next) {
        next.signal?.removeEventListener('abort', next.onAbort);
        next.resolve(this.releaser());
      } else this.busy--;
    };
  }
}
