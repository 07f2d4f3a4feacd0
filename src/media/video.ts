/**
 * Video → sampled RGB frames. ffprobe reads the frame rate and frame count from the container,
 * the caller's `chooseFrames` picks the frame indices (HF's rule is the processor's `frameSampler`;
 * media/ does not import processor/), and ffmpeg decodes exactly those frames as
 * raw rgb24, streamed into one buffer (or through a per-frame transform) so that no other frame is
 * ever held. Like HF's decoders (PyAV, torchcodec), frames are taken as stored: the container's
 * rotation flag is not applied unless asked.
 *
 * Short clips are decoded in one pass that keeps frames by their decode index (`select` on n). A long
 * MP4/MOV or Matroska/WebM file whose sampled frames are far apart is instead split into segments,
 * each decoded by its own ffmpeg from a keyframe before its first frame and stopped after its last
 * (several at once): frame i is the frame with the i-th smallest presentation timestamp among the
 * stream's packets (read by demuxing alone, as torchcodec's exact mode does), and a segment keeps its
 * frames by those timestamps. Whenever the packets do not give a clean one-to-one index, or a segment
 * does not yield exactly its frames, the one-pass decode is used instead.
 */
import { availableParallelism } from 'node:os';
import { QvlError } from '../errors.ts';
import { confinedInput, FFMPEG, FFPROBE, requireFfmpeg, runTool } from './ffmpeg.ts';
import type { RgbImage, VideoFrames } from './rgb.ts';
import { loadMediaFile, type MediaFile, type MediaSource } from './source.ts';
import type { MediaSourceOptions } from './source-options.ts';

export interface VideoProbe {
  width: number;
  height: number;
  /** average frame rate of the stream; undefined when the container does not say */
  fps: number | undefined;
  totalFrames: number;
  durationSeconds: number | undefined;
  codec: string;
  /** the stream's time base [num, den] (timestamps are in these units); absent when not reported */
  timeBase?: [number, number];
  /** the container's start time in seconds (what `-ss` counts from) */
  formatStartTime?: number;
  /** ffprobe's format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm" */
  formatName?: string;
}

/**
 * How the sampled frames of a file are reached: `'auto'` (default) decodes long MP4/MOV/Matroska files
 * in keyframe segments when that is estimated to be faster than one pass, `'never'` always decodes the
 * stream in one pass, `'always'` uses segments whenever the file allows it (for tests and measurements).
 */
export type VideoSeekMode = 'auto' | 'never' | 'always';

export interface VideoDecodeLimits {
  /** refuse to decode more frames than this (default 768, the processor's maximum) */
  maxDecodedFrames?: number;
  /** refuse frames larger than this many pixels (default 3840×2160) */
  maxPixelsPerFrame?: number;
  /**
   * refuse when the kept frames together would take more bytes (default 2 GiB): the decoded frames,
   * or with `frameTransform` what the transform returns
   */
  maxDecodedBytes?: number;
  /** deadline for each ffprobe run and for the whole decode (default 120 s) */
  timeoutMs?: number;
  /** apply the container's rotation (default false, as HF's decoders) */
  autorotate?: boolean;
  /** one pass or keyframe segments (default 'auto') */
  seek?: VideoSeekMode;
  /** ffmpeg processes run at once for segments (default: the machine's cores, at most 4) */
  decodeConcurrency?: number;
}

/**
 * Called with each decoded frame (source index `index`) as it arrives; what it returns is kept in
 * place of the frame. `frame.data` is reused after the call: copy what must outlive it.
 */
export type VideoFrameTransform = (frame: RgbImage, index: number) => RgbImage;

/** Picks the source frames to decode (indices in 0..totalFrames−1, any order, repeats allowed). */
export type FrameChooser = (probe: VideoProbe) => readonly number[];

export interface VideoLoadOptions extends MediaSourceOptions, VideoDecodeLimits {
  /** which frames to decode, from the probe (e.g. `frameSampler({ fps })` from processor/ for HF's rule) */
  chooseFrames: FrameChooser;
  /** per-request resize budget for the processor (pixels over all frames), passed through */
  minPixels?: number;
  maxPixels?: number;
  /**
   * Given the probe and the sampled indices before any frame is decoded, returns a transform applied to
   * each frame as it is decoded (e.g. the processor's resize, so that full-size frames of a long video
   * are never all held at once), or undefined to keep the frames as decoded.
   */
  prepareFrames?: (facts: { probe: VideoProbe; indices: readonly number[] }) => VideoFrameTransform | undefined;
  /** the file, already fetched from `source` (used instead of fetching again; the caller removes it) */
  fetched?: MediaFile;
  /** told how the frames were decoded (one pass or keyframe segments) */
  onDecodeReport?: (r: VideoDecodeReport) => void;
}

export interface LoadedVideo extends VideoFrames {
  indices: number[];
  totalFrames: number;
  /** the source's frame size (the frames' own size differs when `prepareFrames` transformed them) */
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

function parseTimeBase(r: unknown): [number, number] | undefined {
  if (typeof r !== 'string') return undefined;
  const [n, d] = r.split('/').map(Number);
  return Number.isInteger(n) && Number.isInteger(d) && n! > 0 && d! > 0 ? [n!, d!] : undefined;
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
      [
        '-v',
        'error',
        '-select_streams',
        'v:0',
        ...extra,
        '-show_entries',
        'stream=width,height,avg_frame_rate,r_frame_rate,nb_frames,nb_read_packets,duration,codec_name,time_base:stream_side_data=rotation:format=duration,start_time,format_name',
        '-of',
        'json',
        ...confinedInput(file),
      ],
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
  const probe: VideoProbe = {
    width,
    height,
    fps: parseRate(s.avg_frame_rate) ?? parseRate(s.r_frame_rate),
    totalFrames: total,
    durationSeconds: Number.isFinite(duration) ? duration : undefined,
    codec: String(s.codec_name ?? 'unknown'),
  };
  const timeBase = parseTimeBase(s.time_base);
  if (timeBase) probe.timeBase = timeBase;
  const start = Number(info.format?.start_time);
  if (info.format?.start_time !== undefined && Number.isFinite(start)) probe.formatStartTime = start;
  if (typeof info.format?.format_name === 'string') probe.formatName = info.format.format_name;
  return probe;
}

function checkDecodeBudget(label: string, count: number, width: number, height: number, o: Required<Pick<VideoDecodeLimits, 'maxDecodedFrames' | 'maxPixelsPerFrame' | 'maxDecodedBytes'>>, rawKept: boolean): void {
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
  if (rawKept && count * width * height * 3 > o.maxDecodedBytes) {
    throw new QvlError('MEDIA_TOO_LARGE', `${label}: ${count} frames of ${width}x${height} need ${count * width * height * 3} bytes, over the limit of ${o.maxDecodedBytes}`, {
      source: label,
      limit: o.maxDecodedBytes,
    });
  }
}

/** `a+b+…` as a balanced tree: ffmpeg's expression parser nests one level per `+` of a flat sum and refuses more than 100. */
function balancedSum(terms: readonly string[]): string {
  const sum = (from: number, to: number): string => {
    if (to - from === 1) return terms[from]!;
    const mid = (from + to) >> 1;
    return `(${sum(from, mid)}+${sum(mid, to)})`;
  };
  return terms.length === 0 ? '0' : sum(0, terms.length);
}

/** Runs of consecutive numbers in an ascending list, as [first, last] positions. */
function runs(sorted: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (let k = 0; k < sorted.length; ) {
    let end = k;
    while (end + 1 < sorted.length && sorted[end + 1] === sorted[end]! + 1) end++;
    out.push([k, end]);
    k = end + 1;
  }
  return out;
}

/**
 * The `select` expression true exactly for frame numbers in `sorted` (ascending, distinct): runs of
 * consecutive numbers become `between`, and the terms are summed as a balanced tree. ffmpeg's
 * expression parser nests one level per `+` of a flat sum and refuses more than 100 terms (the error
 * then surfaces as "Cannot allocate memory"), while sampling may ask for up to 768 frames.
 */
export function selectExpression(sorted: readonly number[]): string {
  return balancedSum(runs(sorted).map(([a, b]) => (a === b ? `eq(n\\,${sorted[a]})` : `between(n\\,${sorted[a]}\\,${sorted[b]})`)));
}

/** The same, for frames known by presentation index `sorted`, selected by their timestamps `pts[i]`. */
function ptsSelectExpression(sorted: readonly number[], pts: readonly number[]): string {
  return balancedSum(runs(sorted).map(([a, b]) => (a === b ? `eq(pts\\,${pts[sorted[a]!]})` : `between(pts\\,${pts[sorted[a]!]}\\,${pts[sorted[b]!]})`)));
}

// ---- keyframe segments ----

/** Frame i ↔ timestamp, and where decoding may start, from the stream's packets (demuxed, not decoded). */
export interface FrameIndex {
  /** presentation timestamps (stream time base), ascending: frame i of the decoded stream has pts[i] */
  pts: number[];
  /** frames (by presentation index) from which every later frame decodes: keyframes that no earlier-decoded packet follows in time */
  keyframes: number[];
}

/**
 * Reads every packet's pts and flags with ffprobe (demuxing only). Undefined when the packets do not
 * map one-to-one onto the probe's frames: a missing or repeated timestamp, a packet the demuxer marks
 * to discard, or a count other than the frame count.
 */
export async function probeFrameIndex(
  file: string,
  probe: VideoProbe,
  opts: { label?: string; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<FrameIndex | undefined> {
  const label = opts.label ?? file;
  const out = await runTool(
    FFPROBE,
    ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts,flags', '-of', 'csv=p=0', ...confinedInput(file)],
    { timeoutMs: opts.timeoutMs ?? DEFAULTS.timeoutMs, maxOutputBytes: 64 * probe.totalFrames + 4096, signal: opts.signal, label, input: file },
  );
  const lines = out.toString('latin1').split('\n');
  const decodeOrder: number[] = [];
  const clean: number[] = [];
  let latest = -Infinity;
  for (const line of lines) {
    if (line === '') continue;
    const [ptsText, flags = ''] = line.split(',');
    const pts = Number(ptsText);
    if (!Number.isSafeInteger(pts) || flags.includes('D')) return undefined;
    // a keyframe that every earlier-decoded packet precedes in time: decoding from it yields all later frames
    if (flags.includes('K') && pts > latest) clean.push(pts);
    latest = Math.max(latest, pts);
    decodeOrder.push(pts);
  }
  if (decodeOrder.length !== probe.totalFrames) return undefined;
  const pts = [...decodeOrder].sort((a, b) => a - b);
  for (let i = 1; i < pts.length; i++) if (pts[i] === pts[i - 1]) return undefined;
  const position = new Map(pts.map((p, i) => [p, i]));
  return { pts, keyframes: clean.map((p) => position.get(p)!).sort((a, b) => a - b) };
}

/** Frames decoded by one ffmpeg: from keyframe `start` (presentation index; 0 = the file's start) through its last target. */
export interface DecodeSegment {
  start: number;
  /** presentation indices to keep, ascending */
  targets: number[];
}

/** Frames a segment decodes (about: decode order differs from presentation order by a few frames). */
const segmentFrames = (s: DecodeSegment) => s.targets[s.targets.length - 1]! - s.start + 1;

/**
 * Splits sorted, distinct frame indices into segments. A new segment starts where seeking to the
 * keyframe before a frame saves more decoding than starting a process costs (`overheadFrames`, the
 * cost of one ffmpeg start in frames decoded); then the longest segments are split further at
 * keyframes until there are `lanes` of them, so that the processes run in parallel.
 */
export function planDecodeSegments(targets: readonly number[], keyframes: readonly number[], o: { overheadFrames: number; lanes: number }): DecodeSegment[] {
  if (targets.length === 0) return [];
  // the last keyframe at or before frame t (0: the start of the file)
  const keyBefore = (t: number): number => {
    let lo = 0;
    let hi = keyframes.length - 1;
    let best = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (keyframes[mid]! <= t) {
        best = keyframes[mid]!;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best;
  };
  const segments: DecodeSegment[] = [{ start: keyBefore(targets[0]!), targets: [targets[0]!] }];
  for (const t of targets.slice(1)) {
    const cur = segments[segments.length - 1]!;
    const prev = cur.targets[cur.targets.length - 1]!;
    const k = keyBefore(t);
    if (k > prev && t - prev > o.overheadFrames + (t - k)) segments.push({ start: k, targets: [t] });
    else cur.targets.push(t);
  }
  // split the longest segment at its best keyframe while that shortens the longest lane
  while (segments.length < o.lanes) {
    let worst = 0;
    segments.forEach((s, i) => {
      if (segmentFrames(s) > segmentFrames(segments[worst]!)) worst = i;
    });
    const s = segments[worst]!;
    let best: { at: number; cost: number } | undefined;
    for (let j = 1; j < s.targets.length; j++) {
      const k = keyBefore(s.targets[j]!);
      if (k <= s.start) continue;
      const cost = Math.max(s.targets[j - 1]! - s.start + 1, s.targets[s.targets.length - 1]! - k + 1);
      if (!best || cost < best.cost) best = { at: j, cost };
    }
    if (!best || best.cost + o.overheadFrames >= segmentFrames(s)) break;
    const right: DecodeSegment = { start: keyBefore(s.targets[best.at]!), targets: s.targets.slice(best.at) };
    segments.splice(worst, 1, { start: s.start, targets: s.targets.slice(0, best.at) }, right);
  }
  return segments;
}

/** Pixels one ffmpeg decodes per second, and what starting one costs, for choosing a plan (estimates). */
const DECODE_PIXELS_PER_SECOND = 5e8;
const PROCESS_START_SECONDS = 0.25;
/** one-pass decodes shorter than this (in pixels; ~3 s) are not worth probing packets for */
const AUTO_MIN_PIXELS = 1.5e9;

/** Containers whose demuxers seek by an index of keyframes. */
const SEEKABLE_FORMAT = /(^|,)(mov|mp4|matroska|webm)(,|$)/;

function defaultConcurrency(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/** A segment's frames did not come out as planned: the caller falls back to one pass. */
class SegmentMismatch extends Error {}

/** Collects raw rgb24 output frame by frame into `slot(k)`, calling `done(k)` as each frame completes. */
function frameSink(count: number, frameBytes: number, slot: (k: number) => Uint8Array, done: (k: number) => void) {
  let k = 0;
  let filled = 0;
  let target = count > 0 ? slot(0) : new Uint8Array(0);
  const push = (chunk: Buffer) => {
    let off = 0;
    while (off < chunk.length) {
      if (k >= count) throw new QvlError('VIDEO_INVALID', `ffmpeg gave more than the ${count} frames requested`, { requested: count });
      const n = Math.min(frameBytes - filled, chunk.length - off);
      target.set(chunk.subarray(off, off + n), filled);
      filled += n;
      off += n;
      if (filled === frameBytes) {
        done(k);
        k++;
        filled = 0;
        if (k < count) target = slot(k);
      }
    }
  };
  return { push, complete: () => k, partial: () => filled !== 0 };
}

/** How a decode went, for logs and tests: one pass, keyframe segments, or segments given up for one pass. */
export type VideoDecodeReport = { method: 'one-pass' } | { method: 'segments'; segments: number } | { method: 'one-pass-fallback'; segments: number; reason: string };

/** Decodes the frames with the given source indices (any order, repeats allowed) as RGB. */
export async function decodeVideoFrames(
  file: string,
  indices: readonly number[],
  probe: VideoProbe,
  opts: VideoDecodeLimits & { label?: string; signal?: AbortSignal; frameTransform?: VideoFrameTransform; onDecodeReport?: (r: VideoDecodeReport) => void } = {},
): Promise<RgbImage[]> {
  const label = opts.label ?? file;
  const o = { ...DEFAULTS, ...stripUndefined(opts) };
  const unique = [...new Set(indices)].sort((a, b) => a - b);
  const transform = opts.frameTransform;
  checkDecodeBudget(label, unique.length, probe.width, probe.height, o, !transform);
  const { width, height } = probe;
  const frameBytes = width * height * 3;

  // Without a transform every frame is written straight into one buffer; with one, through a scratch
  // frame per running ffmpeg, keeping only what the transform returns.
  const whole = transform ? undefined : Buffer.allocUnsafe(unique.length * frameBytes);
  const kept: RgbImage[] = new Array(unique.length);
  let keptBytes = 0;
  const output = (first: number) => {
    const scratch = transform ? new Uint8Array(frameBytes) : undefined;
    return {
      slot: (k: number) => (scratch ? scratch : whole!.subarray((first + k) * frameBytes, (first + k + 1) * frameBytes)),
      done: (k: number) => {
        const frame: RgbImage = { width, height, data: scratch ?? whole!.subarray((first + k) * frameBytes, (first + k + 1) * frameBytes) };
        if (!transform) {
          kept[first + k] = frame;
          return;
        }
        const out = transform(frame, unique[first + k]!);
        keptBytes += out.data.length;
        if (keptBytes > o.maxDecodedBytes) {
          throw new QvlError('MEDIA_TOO_LARGE', `${label}: the kept frames need more than the limit of ${o.maxDecodedBytes} bytes`, { source: label, limit: o.maxDecodedBytes });
        }
        kept[first + k] = out;
      },
    };
  };

  // one deadline for the whole decode, whatever number of ffmpeg runs it takes
  const started = Date.now();
  const remaining = () => Math.max(1, o.timeoutMs - (Date.now() - started));
  const timedOut = () => new QvlError('VIDEO_INVALID', `${label}: ${FFMPEG} did not finish within ${o.timeoutMs} ms`, { source: label, reason: 'timeout' });
  const head = ['-v', 'error', '-nostdin', ...(opts.autorotate ? [] : ['-noautorotate'])];
  const tail = ['-map', '0:v:0', '-an', '-sn'];

  const onePass = async () => {
    // `select` keeps frames by decode index n, and passthrough keeps ffmpeg from duplicating or dropping any
    const args = [...head, ...confinedInput(file), ...tail, '-vf', `select='${selectExpression(unique)}'`, '-fps_mode', 'passthrough'];
    args.push('-frames:v', String(unique.length), '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
    const { slot, done } = output(0);
    const sink = frameSink(unique.length, frameBytes, slot, done);
    const t = remaining();
    await runTool(FFMPEG, args, { timeoutMs: t, maxOutputBytes: unique.length * frameBytes, signal: opts.signal, label, input: file, onData: sink.push }).catch((e) => {
      throw isTimeout(e) ? timedOut() : e;
    });
    const got = sink.complete();
    if (sink.partial() || got < unique.length) {
      throw new QvlError('VIDEO_INVALID', `${label}: decoded ${got} of ${unique.length} requested frames (the container's frame count may be wrong)`, {
        source: label,
        decoded: got,
        requested: unique.length,
      });
    }
  };

  const segmented = await planSegments(file, unique, probe, o, { label, signal: opts.signal, timeoutMs: remaining() });
  if (segmented) {
    try {
      await decodeSegments(file, segmented, frameBytes, { head, tail, label, signal: opts.signal, remaining, concurrency: o.decodeConcurrency ?? defaultConcurrency(), output });
      opts.onDecodeReport?.({ method: 'segments', segments: segmented.segments.length });
    } catch (e) {
      if (!(e instanceof SegmentMismatch)) throw isTimeout(e) ? timedOut() : e;
      keptBytes = 0;
      await onePass();
      opts.onDecodeReport?.({ method: 'one-pass-fallback', segments: segmented.segments.length, reason: e.message });
    }
  } else {
    await onePass();
    opts.onDecodeReport?.({ method: 'one-pass' });
  }
  const byIndex = new Map<number, RgbImage>();
  unique.forEach((idx, k) => byIndex.set(idx, kept[k]!));
  return indices.map((i) => byIndex.get(i)!);
}

function isTimeout(e: unknown): boolean {
  return e instanceof QvlError && e.detail.reason === 'timeout';
}

interface SegmentPlan {
  index: FrameIndex;
  segments: DecodeSegment[];
  timeBase: [number, number];
  /** the container's start time, seconds: `-ss` counts from it */
  startTime: number;
}

/** Decides between one pass (undefined) and keyframe segments. */
async function planSegments(
  file: string,
  unique: readonly number[],
  probe: VideoProbe,
  o: VideoDecodeLimits,
  run: { label: string; signal?: AbortSignal; timeoutMs: number },
): Promise<SegmentPlan | undefined> {
  const mode = o.seek ?? 'auto';
  if (mode === 'never' || unique.length === 0 || !probe.timeBase || !SEEKABLE_FORMAT.test(probe.formatName ?? '')) return undefined;
  const pixels = probe.width * probe.height;
  const onePassFrames = unique[unique.length - 1]! + 1;
  if (mode === 'auto' && onePassFrames * pixels < AUTO_MIN_PIXELS) return undefined;
  let index: FrameIndex | undefined;
  try {
    index = await probeFrameIndex(file, probe, run);
  } catch (e) {
    // more packets than the container's frame count promised: one pass finds out what is really there
    if (e instanceof QvlError && e.code === 'MEDIA_TOO_LARGE') return undefined;
    throw e;
  }
  if (!index) return undefined;
  const lanes = Math.max(1, Math.floor(o.decodeConcurrency ?? defaultConcurrency()));
  const overheadFrames = (PROCESS_START_SECONDS * DECODE_PIXELS_PER_SECOND) / pixels;
  const segments = planDecodeSegments(unique, index.keyframes, { overheadFrames: mode === 'always' ? 0 : overheadFrames, lanes });
  if (mode === 'auto') {
    // estimated wall time in frames: the longest lane, or all the work spread over the lanes
    const work = segments.map((s) => segmentFrames(s) + overheadFrames);
    const planned = Math.max(Math.max(...work), work.reduce((a, b) => a + b, 0) / lanes);
    if (planned >= 0.75 * onePassFrames) return undefined;
  }
  return { index, segments, timeBase: probe.timeBase, startTime: probe.formatStartTime ?? 0 };
}

/** Runs the segments, `concurrency` ffmpeg processes at a time; the first failure stops the others. */
async function decodeSegments(
  file: string,
  plan: SegmentPlan,
  frameBytes: number,
  c: {
    head: string[];
    tail: string[];
    label: string;
    signal?: AbortSignal;
    remaining: () => number;
    concurrency: number;
    output: (first: number) => { slot: (k: number) => Uint8Array; done: (k: number) => void };
  },
): Promise<void> {
  const { pts } = plan.index;
  const [tbNum, tbDen] = plan.timeBase;
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  c.signal?.addEventListener('abort', onAbort, { once: true });
  if (c.signal?.aborted) stop.abort();
  let firstOf = 0;
  const jobs = plan.segments.map((s) => {
    const first = firstOf;
    firstOf += s.targets.length;
    return { s, first };
  });
  let failure: unknown;
  const runOne = async ({ s, first }: { s: DecodeSegment; first: number }) => {
    const args = [...c.head];
    if (s.start > 0) {
      // the keyframe's time, rounded up to the microsecond `-ss` reads (never before the keyframe, so never
      // an earlier one; the demuxer then goes to the keyframe at or before it), from the container's start
      const seconds = (pts[s.start]! * tbNum) / tbDen - plan.startTime;
      args.push('-noaccurate_seek', '-ss', (Math.ceil(Math.max(0, seconds) * 1e6) / 1e6).toFixed(6));
    }
    args.push('-copyts', ...confinedInput(file), ...c.tail, '-vf', `select='${ptsSelectExpression(s.targets, pts)}'`, '-fps_mode', 'passthrough');
    args.push('-frames:v', String(s.targets.length), '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
    const { slot, done } = c.output(first);
    const sink = frameSink(s.targets.length, frameBytes, slot, done);
    try {
      await runTool(FFMPEG, args, {
        timeoutMs: c.remaining(),
        maxOutputBytes: s.targets.length * frameBytes,
        signal: stop.signal,
        label: c.label,
        input: file,
        onData: sink.push,
      });
    } catch (e) {
      // a refused or timed-out run is final; any other failure of a segment is retried as one pass
      if (e instanceof QvlError && (e.code === 'ABORTED' || e.code === 'MEDIA_TOO_LARGE' || isTimeout(e))) throw e;
      throw new SegmentMismatch(String(e));
    }
    if (sink.partial() || sink.complete() !== s.targets.length) throw new SegmentMismatch(`segment at ${s.start}: ${sink.complete()} of ${s.targets.length} frames`);
  };
  let next = 0;
  const lane = async () => {
    while (next < jobs.length && failure === undefined) {
      const job = jobs[next++]!;
      try {
        await runOne(job);
      } catch (e) {
        failure ??= e;
        stop.abort();
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(c.concurrency, jobs.length) }, lane));
  } finally {
    c.signal?.removeEventListener('abort', onAbort);
  }
  if (failure !== undefined) {
    // an outer abort surfaces as such, not as the abort of the sibling runs it caused
    if (c.signal?.aborted) throw new QvlError('ABORTED', `${c.label}: video decoding aborted`, { source: c.label });
    throw failure;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A chooser's indices, checked here so that a bad one fails by name rather than as a short decode. */
function checkChosenFrames(label: string, chosen: readonly number[], totalFrames: number): number[] {
  const bad = chosen.find((i) => !(Number.isInteger(i) && i >= 0 && i < totalFrames));
  if (bad !== undefined) {
    throw new QvlError('OPTION_INVALID', `${label}: frame ${bad} was chosen, but the video has frames 0..${totalFrames - 1}`, { source: label, frame: bad, totalFrames });
  }
  return [...chosen];
}

/** Resolves a video source (path, URL, data URI, Base64, bytes), picks its frames with `chooseFrames` and decodes them. */
export async function loadVideo(source: MediaSource, opts: VideoLoadOptions): Promise<LoadedVideo> {
  const media = opts.fetched ?? (await loadMediaFile(source, 'video', opts));
  try {
    const probe = await probeVideoFile(media.path, { label: media.label, timeoutMs: opts.timeoutMs, signal: opts.signal, autorotate: opts.autorotate });
    const indices = checkChosenFrames(media.label, opts.chooseFrames(probe), probe.totalFrames);
    const frameTransform = opts.prepareFrames?.({ probe, indices });
    const frames = await decodeVideoFrames(media.path, indices, probe, { ...opts, label: media.label, frameTransform });
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
    // a file the caller fetched stays the caller's to remove
    if (!opts.fetched) await media.cleanup();
  }
}
