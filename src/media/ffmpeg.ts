/**
 * Running ffmpeg and ffprobe (Debian's, found on PATH or via QVL_FFMPEG / QVL_FFPROBE) as child
 * processes with a deadline, an output cap and abort: a hostile file cannot make them run or
 * write for ever, and the process is killed whenever the caller gives up. Inputs go through
 * `confinedInput`, so a file cannot make them open anything but itself.
 */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
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

/**
 * The demuxers a video may be read with: containers and raw streams that hold their frames
 * themselves. Playlists (hls, dash), concat lists, image sequences and the like open further
 * files or URLs named inside the input, so a data URI could make ffmpeg read any local file and
 * the cost preview report its size and duration. Each entry was checked on ffmpeg 5.1.
 */
export const VIDEO_DEMUXERS = [
  'mov', // mov, mp4, m4a, 3gp, 3g2, mj2 (external data references stay off: enable_drefs defaults to 0)
  'matroska', // matroska, webm
  'avi',
  'flv',
  'mpegts',
  'mpeg', // program stream (.mpg, .vob)
  'mpegvideo', // raw MPEG-1/2 video
  'm4v', // raw MPEG-4 part 2
  'h264',
  'hevc',
  'obu', // raw AV1
  'ivf', // VP8, VP9, AV1
  'ogg',
  'asf', // wmv
  'nut',
  'dv',
  'yuv4mpegpipe', // y4m
  'gif',
  'apng',
] as const;

/**
 * ffmpeg / ffprobe arguments that read one local file and nothing else: only the file protocol,
 * only the demuxers above, and the absolute path behind a `file:` prefix so that no part of it
 * is taken for another protocol (`concat:`, `subfile,`, `pipe:`).
 */
export function confinedInput(file: string): string[] {
  return ['-protocol_whitelist', 'file', '-format_whitelist', VIDEO_DEMUXERS.join(','), '-i', `file:${path.resolve(file)}`];
}

/** Demuxers that read a list of further files or URLs (named in messages as what they are). */
const REFERRING = new Set(['hls', 'dash', 'webm_dash_manifest', 'concat', 'imf']);

/** A refusal of the whitelists above, in words a user can act on (undefined for other failures). */
function whitelistRefusal(stderr: string, bin: string, label: string): QvlError | undefined {
  const format = /\[(\w+) @ [^\]]*\] Format not on whitelist/.exec(stderr)?.[1];
  if (format !== undefined && REFERRING.has(format)) {
    return new QvlError('VIDEO_INVALID', `${label}: playlists and concat lists are not accepted (the input is ${format}, which names further files to read); give one self-contained video file`, {
      source: label,
      format,
    });
  }
  if (format !== undefined) {
    return new QvlError(
      'VIDEO_INVALID',
      `${label}: not a video format qvl reads (${bin} sees ${format}); accepted are MP4/MOV, WebM/MKV, AVI, FLV, MPEG-TS/PS, Ogg, WMV, NUT, DV, Y4M, raw H.264/HEVC/AV1, IVF, GIF and APNG`,
      { source: label, format },
    );
  }
  if (/Protocol '[^']*' not on whitelist/.test(stderr)) {
    return new QvlError('VIDEO_INVALID', `${label}: the video refers to other files or URLs, which is not accepted; give one self-contained video file`, {
      source: label,
    });
  }
  return undefined;
}

export interface RunOptions {
  timeoutMs: number;
  /** the most stdout bytes accepted; more kills the process */
  maxOutputBytes: number;
  signal?: AbortSignal;
  label: string;
  /** the input file's path: shown as the label in quoted errors (it may be a private temporary path) */
  input?: string;
  /**
   * Receives stdout as it arrives instead of collecting it (the promise then resolves with an empty
   * Buffer): large outputs go straight where they belong, never held twice. A throw stops the tool and
   * rejects with that error.
   */
  onData?: (chunk: Buffer) => void;
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
      if (failure) return;
      outBytes += c.length;
      if (outBytes > o.maxOutputBytes) {
        stop(new QvlError('MEDIA_TOO_LARGE', `${o.label}: decoded output exceeds ${o.maxOutputBytes} bytes`, { source: o.label, limit: o.maxOutputBytes }));
        return;
      }
      if (!o.onData) {
        out.push(c);
        return;
      }
      try {
        o.onData(c);
      } catch (e) {
        stop(e instanceof QvlError ? e : new QvlError('VIDEO_INVALID', `${o.label}: ${(e as Error).message}`, { source: o.label }));
      }
    });
    child.stderr.on('data', (c: Buffer) => {
      // the end says why it failed; the start can be a long echo of the arguments
      err = (err + c.toString('utf8')).slice(-16_000);
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
        const refused = whitelistRefusal(err, bin, o.label);
        if (refused) return reject(refused);
        let text = err;
        if (o.input !== undefined) text = text.split(`file:${path.resolve(o.input)}`).join(o.label).split(path.resolve(o.input)).join(o.label);
        const lines = text.trim().split('\n').slice(-3);
        const why = lines.map((l) => (l.length > 300 ? `${l.slice(0, 300)}…` : l)).join(' | ') || `exit code ${code}`;
        return reject(new QvlError('VIDEO_INVALID', `${o.label}: ${bin} failed: ${why}`, { source: o.label, exitCode: code }));
      }
      resolve(o.onData ? Buffer.alloc(0) : Buffer.concat(out, outBytes));
    });
  });
}
