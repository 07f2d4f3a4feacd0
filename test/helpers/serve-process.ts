/**
 * A real `qvl serve` as a child process, for the fuzz suite and the soak: spawn, wait until the
 * model is loaded, read its memory, watch /health from the side.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { Worker } from 'node:worker_threads';
import path from 'node:path';

export const REPO = path.resolve(import.meta.dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'qvl.mjs');

export interface ServeProcess {
  url: string;
  pid: number;
  proc: ChildProcess;
  /** Set once the process has exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  alive(): boolean;
  /** Resolves true once the process has exited, or false after `ms`. */
  waitExit(ms: number): Promise<boolean>;
  /** The last `chars` characters the server wrote to stderr. */
  stderrTail(chars?: number): string;
  stop(): Promise<void>;
}

export interface ServeOptions {
  model: string;
  /** Extra `qvl serve` flags. */
  args?: string[];
  /** How long model loading may take. */
  readyTimeoutMs?: number;
}

/** Starts `qvl serve --port 0` and resolves once GET /health answers 200. */
export async function startServeProcess(o: ServeOptions): Promise<ServeProcess> {
  const args = [BIN, 'serve', '-m', o.model, '--host', '127.0.0.1', '--port', '0', ...(o.args ?? [])];
  const proc = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const sp: ServeProcess = {
    url: '',
    pid: proc.pid ?? -1,
    proc,
    exit: null,
    alive: () => sp.exit === null,
    waitExit: (ms) =>
      sp.exit !== null
        ? Promise.resolve(true)
        : new Promise((resolve) => {
            const t = setTimeout(() => resolve(false), ms);
            proc.once('exit', () => {
              clearTimeout(t);
              resolve(true);
            });
          }),
    stderrTail: (chars = 2000) => stderr.slice(-chars),
    stop: async () => {
      if (sp.exit !== null) return;
      const gone = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    },
  };
  proc.on('exit', (code, signal) => (sp.exit = { code, signal }));
  const deadline = Date.now() + (o.readyTimeoutMs ?? 120_000);
  sp.url = await new Promise<string>((resolve, reject) => {
    const fail = (why: string) => reject(new Error(`qvl serve ${why}\n${stderr.slice(-4000)}`));
    const t = setTimeout(() => fail('printed no listening address'), Math.max(0, deadline - Date.now()));
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (s: string) => {
      // Keep a bounded tail: a long soak must not grow this without end.
      stderr = (stderr + s).slice(-64_000);
      const m = /listening on (http:\/\/[^\s]+)/.exec(stderr);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    proc.once('exit', (code, signal) => fail(`exited (code ${code}, signal ${signal}) before listening`));
  });
  while (true) {
    if (!sp.alive()) throw new Error(`qvl serve exited while loading (${JSON.stringify(sp.exit)})\n${sp.stderrTail(4000)}`);
    try {
      const r = await fetch(`${sp.url}/health`, { signal: AbortSignal.timeout(5000) });
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch {
      // not answering yet
    }
    if (Date.now() > deadline) {
      await sp.stop();
      throw new Error(`qvl serve did not become healthy in time\n${sp.stderrTail(4000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return sp;
}

/** Resident memory of a process in KiB (Linux), or null where /proc is not readable. */
export function readRssKb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export interface HealthSample {
  start: number;
  end: number;
  ms: number;
  status: number | 'error';
  /** why the probe failed, when it did */
  error?: string;
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across threads. */
export const now = () => performance.timeOrigin + performance.now();

// The probe loop runs on its own thread: a busy test process (building or checking a large
// request) must not show up as a slow server.
const PROBE_LOOP = `
const { parentPort, workerData } = require('node:worker_threads');
const http = require('node:http');
const now = () => performance.timeOrigin + performance.now();
let url = workerData.url;
let running = true;
parentPort.on('message', (m) => {
  if (m.url) url = m.url;
  if (m.stop) running = false;
});
function probe() {
  return new Promise((resolve) => {
    const start = now();
    parentPort.postMessage({ inflight: start });
    const finish = (status, error) => {
      const end = now();
      parentPort.postMessage({ sample: { start, end, ms: end - start, status, ...(error ? { error } : {}) } });
      resolve();
    };
    const req = http.get(url + '/health', { agent: false, timeout: workerData.timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => finish(res.statusCode));
      res.on('error', (e) => finish('error', e.message));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within ' + workerData.timeoutMs + ' ms')));
    req.on('error', (e) => finish('error', e.message));
  });
}
(async () => {
  while (running) {
    await probe();
    await new Promise((r) => setTimeout(r, workerData.intervalMs));
  }
  parentPort.postMessage({ stopped: true });
})();
`;

/**
 * Polls GET /health one probe at a time, from a worker thread, on a fresh connection each time.
 * A probe's latency is how long the server's event loop kept it waiting, so a request that
 * blocks the loop shows up as a slow probe that overlaps it. Times are `now()` values.
 */
export class HealthMonitor {
  readonly samples: HealthSample[] = [];
  private inflight: number | null = null;
  private worker: Worker | null = null;
  private lastUrl = '';

  constructor(
    private url: () => string,
    private intervalMs = 25,
    private probeTimeoutMs = 30_000,
  ) {}

  start(): void {
    if (this.worker) return;
    this.lastUrl = this.url();
    this.worker = new Worker(PROBE_LOOP, { eval: true, workerData: { url: this.lastUrl, intervalMs: this.intervalMs, timeoutMs: this.probeTimeoutMs } });
    this.worker.on('message', (m: { inflight?: number; sample?: HealthSample }) => {
      if (m.inflight !== undefined) this.inflight = m.inflight;
      if (m.sample) {
        this.samples.push(m.sample);
        this.inflight = null;
      }
    });
    this.worker.unref();
  }

  /** Follows a restarted server (its new URL). */
  follow(): void {
    const u = this.url();
    if (u !== this.lastUrl) {
      this.lastUrl = u;
      this.worker?.postMessage({ url: u });
    }
  }

  async stop(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    this.worker = null;
    await new Promise<void>((r) => {
      w.on('message', (m: { stopped?: boolean }) => m.stopped && r());
      w.postMessage({ stop: true });
    });
    await w.terminate();
  }

  /**
   * The probes overlapping [from, to]: the slowest latency and the last that did not answer 200.
   * A probe still waiting after `to` is awaited up to `settleMs` longer and counts with its
   * latency so far.
   */
  async during(from: number, to: number, settleMs: number): Promise<{ maxMs: number; failed: HealthSample | null }> {
    this.follow();
    const deadline = now() + settleMs;
    // let the worker's messages in, then wait for a probe that was running at `to` to report
    await new Promise((r) => setTimeout(r, 2));
    while (this.inflight !== null && this.inflight <= to && now() < deadline) await new Promise((r) => setTimeout(r, 5));
    let maxMs = 0;
    let failed: HealthSample | null = null;
    for (let i = this.samples.length - 1; i >= 0; i--) {
      const s = this.samples[i];
      if (s.end < from) break;
      if (s.start > to) continue;
      maxMs = Math.max(maxMs, s.ms);
      if (s.status !== 200) failed = s;
    }
    if (this.inflight !== null && this.inflight <= to) maxMs = Math.max(maxMs, now() - this.inflight);
    return { maxMs, failed };
  }
}

/** GET on a fresh connection (no keep-alive socket the server may be closing): the status. */
export function getStatus(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** The q-quantile (0..1) of `xs`, nearest rank. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** Why `body` is not OpenAI's error shape `{error: {message, type, param, code}}`, or null if it is. */
export function errorShapeProblem(body: string): string | null {
  let j: unknown;
  try {
    j = JSON.parse(body);
  } catch {
    return 'the body is not JSON';
  }
  const e = (j as { error?: Record<string, unknown> } | null)?.error;
  if (typeof e !== 'object' || e === null) return 'no "error" object';
  if (typeof e.message !== 'string' || e.message === '') return 'error.message is not a non-empty string';
  if (typeof e.type !== 'string' || e.type === '') return 'error.type is not a non-empty string';
  if (!('param' in e) || (e.param !== null && typeof e.param !== 'string')) return 'error.param is not a string or null';
  if (!('code' in e) || (e.code !== null && typeof e.code !== 'string')) return 'error.code is not a string or null';
  return null;
}
