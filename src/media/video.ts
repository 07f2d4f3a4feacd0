/**
 * Video → sampled RGB frames. ffprobe reads the frame rate and frame count from the container,
 * the processor's sampling rule picks the frame indices, and one ffmpeg pass decodes exactly those
 * frames (index-based `select`) as raw rgb24. Like HF's decoders (PyAV, torchcodec), frames are
 * taken as stored: the container's rotation flag is not applied unless asked.
 */
import { QvlError } from '../errors.ts';
import { sampleFrameIndices, type FrameSamplingOptions } from '../processor/video-sampling.ts';
import { confinedInput, FFMPEG, FFPROBE, requireFfmpeg, runTool } from './ffmpeg.ts';
import type { RgbImage, VideoFrames } from './rgb.ts';
import { loadMediaFile, type MediaSource } from './source.ts';
import type { MediaSourceOptions } from './source-options.ts';

export interface VideoProbe {
  width: number;
  height: number;
  /** average frame rate of the stream; undefined when the container does not say */
  fps: number | undefined;
  totalFrames: number;
  durationSeconds: number | undefined;
  codec: string;
}

export interface VideoDecodeLimits {
  /** refuse to decode more frames than this (default 768, the processor's maximum) */
  maxDecodedFrames?: number;
  /** refuse frames larger than this many pixels (default 3840×2160) */
  maxPixelsPerFrame?: number;
  /** refuse when all decoded frames together would take more bytes (default 2 GiB) */
  maxDecodedBytes?: number;
  /** deadline for each ffprobe/ffmpeg run (default 120 s) */
  timeoutMs?: number;
  /** apply the container's rotation (default false, as HF's decoders) */
  autorotate?: boolean;
}

export interface VideoLoadOptions extends MediaSourceOptions, FrameSamplingOptions, VideoDecodeLimits {
  /** per-request resize budget for the processor (pixels over all frames), passed through */
  minPixels?: number;
  maxPixels?: number;
}

export interface LoadedVideo extends VideoFrames {
  indices: number[];
  totalFrames: number;
  width: number;
  height: number;
  /** names the source in messages */
  source: string;
  minPixels?: number;
  maxPixels?: number;
}

const DEFAULTS = {
  maxDecodedFrames: 768,
  maxPixelsPerFrame: 3840 * 2160,
  maxDecodedBytes: 2 * 1024 * 1024 * 1024,
  timeoutMs: 120_000,
};

function parseRate(r: unknown): number | undefined {
  if (typeof r !== 'string') return undefined;
  const [n, d] = r.split('/').map(Number);
  const v = d === undefined ? n! : n! / d;
  return Number.isFinite(v) && v > 0 ? v : undefined;
}

/** Stream facts from ffprobe, reading the container only (packets are counted when it has no frame count). */
export async function probeVideoFile(
  file: string,
  opts: { label?: string; timeoutMs?: number; signal?: AbortSignal; autorotate?: boolean } = {},
): Promise<VideoProbe> {
  const label = opts.label ?? file;
  requireFfmpeg(label);
  const run = (extra: string[]) =>
    runTool(
      FFPROBE,
      ['-v', 'error', '-select_streams', 'v:0', ...extra, '-show_entries', 'stream=width,height,avg_frame_rate,r_frame_rate,nb_frames,nb_read_packets,duration,codec_name:stream_side_data=rotation:format=duration', '-of', 'json', ...confinedInput(file)],
      { timeoutMs: opts.timeoutMs ?? DEFAULTS.timeoutMs, maxOutputBytes: 1 << 20, signal: opts.signal, label, input: file },
    );
  let info = JSON.parse((await run([])).toString('utf8'));
  let s = info.streams?.[0];
  if (!s) throw new QvlError('VIDEO_INVALID', `${label}: no video stream found`, { source: label });
  let total = Number(s.nb_frames);
  if (!(Number.isInteger(total) && total > 0)) {
    // WebM/MKV and some streams carry no frame count: count packets (demuxing only, no decoding).
    info = JSON.parse((await run(['-count_packets'])).toString('utf8'));
    s = info.streams?.[0] ?? s;
    total = Number(s.nb_read_packets);
  }
  if (!(Number.isInteger(total) && total > 0)) throw new QvlError('VIDEO_INVALID', `${label}: the video stream has no frames`, { source: label });
  let width = Number(s.width);
  let height = Number(s.height);
  if (!(width > 0 && height > 0)) throw new QvlError('VIDEO_INVALID', `${label}: the video stream gives no frame size`, { source: label });
  const rotation = Number(s.side_data_list?.find((d: { rotation?: number }) => d.rotation !== undefined)?.rotation ?? 0);
  if (opts.autorotate && Math.abs(rotation) % 180 === 90) [width, height] = [height, width];
  const duration = Number(s.duration ?? info.format?.duration);
  return {
    width,
    height,
    fps: parseRate(s.avg_frame_rate) ?? parseRate(s.r_frame_rate),
    totalFrames: total,
    durationSeconds: Number.isFinite(duration) ? duration : undefined,
    codec: String(s.codec_name ?? 'unknown'),
  };
}

function checkDecodeBudget(label: string, count: number, width: number, height: number, o: Required<Omit<VideoDecodeLimits, 'autorotate'>>): void {
  if (width * height > o.maxPixelsPerFrame) {
    throw new QvlError('IMAGE_TOO_LARGE', `${label}: frames of ${width}x${height} exceed the limit of ${o.maxPixelsPerFrame} pixels per frame`, {
      source: label,
      width,
      height,
      limit: o.maxPixelsPerFrame,
    });
  }
  if (count > o.maxDecodedFrames) {
    throw new QvlError('VIDEO_INVALID', `${label}: ${count} frames requested, over the limit of ${o.maxDecodedFrames}`, {
      source: label,
      frames: count,
      limit: o.maxDecodedFrames,
    });
  }
  if (count * width * height * 3 > o.maxDecodedBytes) {
    throw new QvlError('MEDIA_TOO_LARGE', `${label}: ${count} frames of ${width}x${height} need ${count * width * height * 3} bytes, over the limit of ${o.maxDecodedBytes}`, {
      source: label,
      limit: o.maxDecodedBytes,
    });
  }
}

/**
 * The `select` expression true exactly for frame numbers in `sorted` (ascending, distinct): runs of
 * consecutive numbers become `between`, and the terms are summed as a balanced tree. ffmpeg's
 * expression parser nests one level per `+` of a flat sum and refuses more than 100 terms (the error
 * then surfaces as "Cannot allocate memory"), while sampling may ask for up to 768 frames.
 */
export function selectExpression(sorted: readonly number[]): string {
  const terms: string[] = [];
  for (let k = 0; k < sorted.length; ) {
    let end = k;
    while (end + 1 < sorted.length && sorted[end + 1] === sorted[end]! + 1) end++;
    terms.push(end === k ? `eq(n\\,${sorted[k]})` : `between(n\\,${sorted[k]}\\,${sorted[end]})`);
    k = end + 1;
  }
  const sum = (from: number, to: number): string => {
    if (to - from === 1) return terms[from]!;
    const mid = (from + to) >> 1;
    return `(${sum(from, mid)}+${sum(mid, to)})`;
  };
  return terms.length === 0 ? '0' : sum(0, terms.length);
}

/** Decodes the frames with the given source indices (sorted, distinct) as RGB. */
export async function decodeVideoFrames(
  file: string,
  indices: readonly number[],
  probe: VideoProbe,
  opts: VideoDecodeLimits & { label?: string; signal?: AbortSignal } = {},
): Promise<RgbImage[]> {
  const label = opts.label ?? file;
  const o = { ...DEFAULTS, ...stripUndefined(opts) };
  const unique = [...new Set(indices)].sort((a, b) => a - b);
  checkDecodeBudget(label, unique.length, probe.width, probe.height, o);
  const frameBytes = probe.width * probe.height * 3;
  // one pass; `select` keeps frames by decode index n, and passthrough keeps ffmpeg from duplicating or dropping any
  const select = `select='${selectExpression(unique)}'`;
  const args = ['-v', 'error', '-nostdin'];
  if (!opts.autorotate) args.push('-noautorotate');
  args.push(...confinedInput(file), '-map', '0:v:0', '-an', '-sn', '-vf', select, '-fps_mode', 'passthrough', '-frames:v', String(unique.length), '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
  const out = await runTool(FFMPEG, args, { timeoutMs: o.timeoutMs, maxOutputBytes: unique.length * frameBytes, signal: opts.signal, label, input: file });
  const got = Math.floor(out.length / frameBytes);
  if (out.length % frameBytes !== 0 || got < unique.length) {
    throw new QvlError('VIDEO_INVALID', `${label}: decoded ${got} of ${unique.length} requested frames (the container's frame count may be wrong)`, {
      source: label,
      decoded: got,
      requested: unique.length,
    });
  }
  const byIndex = new Map<number, RgbImage>();
  unique.forEach((idx, k) => {
    byIndex.set(idx, { width: probe.width, height: probe.height, data: new Uint8Array(out.buffer, out.byteOffset + k * frameBytes, frameBytes) });
  });
  return indices.map((i) => byIndex.get(i)!);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Resolves a video source (path, URL, data URI, Base64, bytes), samples its frames and decodes them. */
export async function loadVideo(source: MediaSource, opts: VideoLoadOptions = {}): Promise<LoadedVideo> {
  const media = await loadMediaFile(source, 'video', opts);
  try {
    const probe = await probeVideoFile(media.path, { label: media.label, timeoutMs: opts.timeoutMs, signal: opts.signal, autorotate: opts.autorotate });
    const indices = sampleFrameIndices(probe.totalFrames, probe.fps, {
      fps: opts.fps,
      minFrames: opts.minFrames,
      maxFrames: opts.maxFrames,
      numFrames: opts.numFrames,
    });
    const frames = await decodeVideoFrames(media.path, indices, probe, { ...opts, label: media.label });
    const out: LoadedVideo = {
      frames,
      // HF assumes 24 fps when the source does not say; keep that visible to the timestamp code
      fps: probe.fps ?? 24,
      indices,
      totalFrames: probe.totalFrames,
      width: probe.width,
      height: probe.height,
      source: media.label,
    };
    if (opts.minPixels !== undefined) out.minPixels = opts.minPixels;
    if (opts.maxPixels !== undefined) out.maxPixels = opts.maxPixels;
    return out;
  } finally {
    await media.cleanup();
  }
}
