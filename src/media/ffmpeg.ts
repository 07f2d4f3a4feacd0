/**
 * Running ffmpeg and ffprobe (Debian's, found on PATH or via QVL_FFMPEG / QVL_FFPROBE) as child
 * processes with a deadline, an output cap and abort: a hostile file cannot make them run or
 * write for ever, and the process is killed whenever the caller gives up.
 */
import { spawn, spawnSync } from 'node:child_process';
import { QvlError } from '../errors.ts';

export const FFMPEG = process.env.QVL_FFMPEG ?? 'ffmpeg';
export const FFPROBE = process.env.QVL_FFPROBE ?? 'ffprobe';

let available: boolean | undefined;

/** Whether ffmpeg and ffprobe can be run here (checked once). */
export function ffmpegAvailable(): boolean {
  if (available === undefined) {
    available = [FFMPEG, FFPROBE].every((bin) => {
      const r = spawnSync(bin, ['-version'], { stdio: 'ignore', timeout: 10_000 });
      return r.status === 0;
    });
  }
  return available;
}

export function requireFfmpeg(label: string): void {
  if (!ffmpegAvailable()) {
    throw new QvlError('VIDEO_INVALID', `${label}: video needs ffmpeg and ffprobe on PATH (Debian: apt-get install ffmpeg)`, { source: label });
  }
}

export interface RunOptions {
  timeoutMs: number;
  /** the most stdout bytes accepted; more kills the process */
  maxOutputBytes: number;
  signal?: AbortSignal;
  label: string;
}

/** Runs a tool to completion and returns its stdout; errors name the source and quote stderr. */
export function runTool(bin: string, args: readonly string[], o: RunOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    let failure: QvlError | undefined;
    const stop = (e: QvlError) => {
      failure ??= e;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(
      () => stop(new QvlError('VIDEO_INVALID', `${o.label}: ${bin} did not finish within ${o.timeoutMs} ms`, { source: o.label, reason: 'timeout' })),
      o.timeoutMs,
    );
    const onAbort = () => stop(new QvlError('ABORTED', `${o.label}: video decoding aborted`, { source: o.label }));
    if (o.signal?.aborted) onAbort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (c: Buffer) => {
      outBytes += c.length;
      if (outBytes > o.maxOutputBytes) {
        stop(new QvlError('MEDIA_TOO_LARGE', `${o.label}: decoded output exceeds ${o.maxOutputBytes} bytes`, { source: o.label, limit: o.maxOutputBytes }));
        return;
      }
      out.push(c);
    });
    child.stderr.on('data', (c: Buffer) => {
      if (err.length < 4000) err += c.toString('utf8');
    });
    let settled = false;
    const finish = () => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      return true;
    };
    child.on('error', (e) => {
      if (finish()) reject(failure ?? new QvlError('VIDEO_INVALID', `${o.label}: cannot run ${bin} (${e.message}); install ffmpeg`, { source: o.label }));
    });
    child.on('close', (code) => {
      if (!finish()) return;
      if (failure) return reject(failure);
      if (code !== 0) {
        const why = err.trim().split('\n').slice(-3).join(' | ') || `exit code ${code}`;
        return reject(new QvlError('VIDEO_INVALID', `${o.label}: ${bin} failed: ${why}`, { source: o.label, exitCode: code }));
      }
      resolve(Buffer.concat(out, outBytes));
    });
  });
}
