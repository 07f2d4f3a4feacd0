/**
 * One generation at a time on the model, up to `maxQueue` requests waiting in line, and a clear
 * 429 (with Retry-After) past that. A waiting request whose client goes away leaves the line.
 */
import { HttpError } from './errors.ts';

export type Release = () => void;

interface Waiter {
  resolve: (r: Release) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort: () => void;
}

export class Scheduler {
  private busy = false;
  private readonly waiting: Waiter[] = [];
  /** moving average of how long a request holds the model, for Retry-After */
  private avgMs = 5000;
  private readonly maxQueue: number;

  constructor(maxQueue: number) {
    this.maxQueue = maxQueue;
  }

  get running(): number {
    return this.busy ? 1 : 0;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Seconds a client should wait before trying again. */
  retryAfter(): number {
    return Math.max(1, Math.ceil(((this.waiting.length + 1) * this.avgMs) / 1000));
  }

  /** Waits for the model; throws a 429 HttpError when the line is full. */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (!this.busy) {
      this.busy = true;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.maxQueue) {
      const retry = this.retryAfter();
      return Promise.reject(
        new HttpError(429, `the server is busy: 1 request running and ${this.waiting.length} waiting (the limit); retry in about ${retry} s`, {
          code: 'queue_full',
          headers: { 'Retry-After': String(retry) },
        }),
      );
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
      } else this.busy = false;
    };
  }
}
