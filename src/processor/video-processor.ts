/**
 * One video → Qwen3-VL `pixel_values_videos`, `video_grid_thw` and per-group timestamps, as HF's
 * Qwen3VLVideoProcessor computes them: frame sampling → one smart_resize for all frames (budget over
 * t̄·H·W) → uint8 antialiased bicubic per frame → an odd frame count padded with the last frame →
 * float32 normalise → rows grouped by temporal pair, merge-window order inside each group.
 */
import type { RgbImage, VideoFrames } from '../media/rgb.ts';
import { QvlError } from '../errors.ts';
import type { VideoProcessorConfig } from './config.ts';
import { checkRgbImage, resolvePixelBudget, type GridThw, type PixelBudgetOptions } from './image-processor.ts';
import { patchifyFrames } from './patchify.ts';
import { pyInt } from './python-math.ts';
import { resizeRgbBicubic } from './resize-bicubic.ts';
import { smartResizeVideo, type Size } from './smart-resize.ts';
import { DEFAULT_SOURCE_FPS, sampleFrameIndices } from './video-sampling.ts';

export interface VideoOptions extends PixelBudgetOptions {
  /** target sampling rate in frames per second (default: the config's, 2) */
  fps?: number;
  minFrames?: number;
  maxFrames?: number;
  /** sample exactly this many frames instead of using the fps rule */
  numFrames?: number;
  /** false: use every frame given (default: the config's do_sample_frames, true) */
  sample?: boolean;
  /**
   * Per-frame pixel cap (`cap_pixels_per_frame` of transformers 5.18+, what qwen-vl-utils does): the
   * budget becomes n · max(min(maxVideoTokens · factor², ⌊maxPixels / n⌋), int(1.05 · minPixels)) for
   * n sampled frames, so a short clip no longer spends the whole video budget on a few frames.
   * Default: the config's `cap_pixels_per_frame`, false when absent (HF's default up to 5.21).
   */
  capPixelsPerFrame?: boolean;
  /**
   * Per-frame token ceiling of that cap (default: the config's `max_video_tokens`, 768). HF reads it
   * from the config only and ignores it per call; here a per-call value overrides the config.
   */
  maxVideoTokens?: number;
  /**
   * The source's frame size, when the frames given were already resized to this plan's size as they
   * were decoded (`videoFrameResizer`): planning uses the source size, and frames that already have the
   * planned size are used as they are (HF's resize of a frame to its own size is the identity too).
   */
  sourceSize?: Size;
}

/** What a video becomes, computed from its frame count, size and frame rate alone. */
export interface VideoPlan {
  /** source frame index of each frame used (before odd-count padding) */
  sampledIndices: number[];
  resized: Size;
  grid: GridThw;
  /** seconds, one per temporal group: mean of the group's first and last frame times */
  timestamps: number[];
  /** `<|video_pad|>` tokens per temporal group = h·w / merge² */
  tokensPerGroup: number;
  /** all `<|video_pad|>` tokens = t·h·w / merge² */
  tokens: number;
}

export interface PreprocessedVideo {
  /** `[t·h·w, 3·T·P·P]` row-major */
  pixelValues: Float32Array;
  grid: GridThw;
  timestamps: number[];
  sampledIndices: number[];
  resized: Size;
}

export interface VideoShape {
  /** frames available (all of a clip, or the already-sampled ones when `indices` is given) */
  frameCount: number;
  width: number;
  height: number;
  /** source frame rate; undefined means unknown (24 is assumed, as HF does) */
  fps?: number;
  /** source indices of already-sampled frames; no further sampling happens then */
  indices?: readonly number[];
}

/**
 * HF `_calculate_timestamps`: pad the indices to a multiple of the temporal patch by repeating the
 * last, convert to seconds, and give each group the mean of its first and last frame times.
 */
export function videoTimestamps(indices: readonly number[], fps: number, temporalPatchSize: number): number[] {
  const padded = [...indices];
  while (padded.length % temporalPatchSize !== 0) padded.push(padded[padded.length - 1]);
  const seconds = padded.map((i) => i / fps);
  const out: number[] = [];
  for (let i = 0; i < seconds.length; i += temporalPatchSize) out.push((seconds[i] + seconds[i + temporalPatchSize - 1]) / 2);
  return out;
}

/**
 * HF `Qwen3VLVideoProcessor.resize` with `cap_pixels_per_frame`: each of the n frames (sampled, before
 * the odd-count padding) may have at most min(maxVideoTokens · factor², ⌊maxPixels / n⌋) pixels, but
 * never fewer than int(minPixels · 1.05); the video's budget becomes that times n. minPixels stays as
 * it is, and smart_resize then compares t̄·h·w (t̄ = n rounded to even) with the new budget as usual.
 */
export function capPixelsPerFrame(n: number, factor: number, minPixels: number, maxPixels: number, maxVideoTokens: number): { maxPixels: number; pixelsPerFrame: number } {
  if (!Number.isInteger(maxVideoTokens) || maxVideoTokens <= 0) {
    throw new QvlError('OPTION_INVALID', `maxVideoTokens must be a positive integer, got ${maxVideoTokens}`, { maxVideoTokens });
  }
  const frameCap = maxVideoTokens * factor * factor;
  const pixelsPerFrame = Math.max(Math.min(frameCap, Math.floor(maxPixels / n)), pyInt(minPixels * 1.05));
  return { maxPixels: pixelsPerFrame * n, pixelsPerFrame };
}

function sourceFps(fps: number | undefined): number {
  if (fps === undefined) return DEFAULT_SOURCE_FPS;
  if (!(Number.isFinite(fps) && fps > 0)) {
    throw new QvlError('VIDEO_INVALID', `the video's frame rate must be a positive number, got ${fps}`, { fps });
  }
  return fps;
}

function chooseFrames(shape: VideoShape, cfg: VideoProcessorConfig, opts: VideoOptions): number[] {
  if (shape.indices) {
    const idx = shape.indices;
    if (idx.length !== shape.frameCount) {
      throw new QvlError('VIDEO_INVALID', `the video has ${shape.frameCount} frames but ${idx.length} source indices`, {
        frames: shape.frameCount,
        indices: idx.length,
      });
    }
    const bad = idx.find((i) => !Number.isInteger(i) || i < 0);
    if (bad !== undefined) throw new QvlError('VIDEO_INVALID', `frame index ${bad} is not a non-negative integer`, { index: bad });
    return [...idx];
  }
  if (!(opts.sample ?? cfg.doSampleFrames)) {
    if (!Number.isInteger(shape.frameCount) || shape.frameCount <= 0) {
      throw new QvlError('VIDEO_INVALID', `a video needs at least one frame, got ${shape.frameCount}`, { frames: shape.frameCount });
    }
    return Array.from({ length: shape.frameCount }, (_, i) => i);
  }
  const numFrames = opts.numFrames;
  return sampleFrameIndices(shape.frameCount, shape.fps, {
    fps: numFrames === undefined ? (opts.fps ?? cfg.fps) : opts.fps,
    minFrames: opts.minFrames ?? cfg.minFrames,
    maxFrames: opts.maxFrames ?? cfg.maxFrames,
    numFrames,
  });
}

/** Sampling, size, grid, timestamps and token counts of a video, without touching pixels. */
export function planVideo(shape: VideoShape, cfg: VideoProcessorConfig, opts: VideoOptions = {}): VideoPlan {
  const fps = sourceFps(shape.fps);
  const sampledIndices = chooseFrames(shape, cfg, opts);
  const n = sampledIndices.length;
  const factor = cfg.patchSize * cfg.mergeSize;
  const budget = resolvePixelBudget(cfg, opts);
  const { minPixels } = budget;
  // a per-call value wins over the config's, as in HF (`capPixelsPerFrame: false` undoes a config's true)
  const cap = opts.capPixelsPerFrame ?? cfg.capPixelsPerFrame ?? false;
  const maxPixels = cap ? capPixelsPerFrame(n, factor, minPixels, budget.maxPixels, opts.maxVideoTokens ?? cfg.maxVideoTokens ?? 768).maxPixels : budget.maxPixels;
  const resized = smartResizeVideo(n, shape.width, shape.height, {
    factor,
    temporalFactor: cfg.temporalPatchSize,
    minPixels,
    maxPixels,
  });
  const grid: GridThw = [Math.ceil(n / cfg.temporalPatchSize), resized.height / cfg.patchSize, resized.width / cfg.patchSize];
  const merge2 = cfg.mergeSize * cfg.mergeSize;
  return {
    sampledIndices,
    resized,
    grid,
    timestamps: videoTimestamps(sampledIndices, fps, cfg.temporalPatchSize),
    tokensPerGroup: (grid[1] * grid[2]) / merge2,
    tokens: (grid[0] * grid[1] * grid[2]) / merge2,
  };
}

export function preprocessVideo(video: VideoFrames, cfg: VideoProcessorConfig, opts: VideoOptions = {}): PreprocessedVideo {
  const frames = video.frames;
  if (!Array.isArray(frames) || frames.length === 0) {
    throw new QvlError('VIDEO_INVALID', 'the video has no frames', { frames: 0 });
  }
  const { width, height } = frames[0];
  frames.forEach((f, k) => {
    checkRgbImage(f, `video frame ${k}`);
    if (f.width !== width || f.height !== height) {
      throw new QvlError('VIDEO_INVALID', `video frame ${k} is ${f.width}×${f.height} but frame 0 is ${width}×${height}; all frames must share one size`, {
        frame: k,
      });
    }
  });
  const source = opts.sourceSize ?? { width, height };
  const plan = planVideo({ frameCount: frames.length, width: source.width, height: source.height, fps: video.fps, indices: video.indices }, cfg, opts);
  const atSource = width === source.width && height === source.height;
  if (!atSource && !(width === plan.resized.width && height === plan.resized.height)) {
    throw new QvlError(
      'VIDEO_INVALID',
      `the video frames are ${width}×${height}, neither the source size ${source.width}×${source.height} nor the planned ${plan.resized.width}×${plan.resized.height}`,
      { width, height },
    );
  }
  // Pre-sampled frames are used in order; otherwise the plan's indices point into `frames`.
  const used = video.indices ? frames : plan.sampledIndices.map((i) => frames[i]);
  const data = used.map((f) => resizeRgbBicubic(f, plan.resized.width, plan.resized.height).data);
  while (data.length % cfg.temporalPatchSize !== 0) data.push(data[data.length - 1]);
  const { pixelValues } = patchifyFrames(data, plan.resized.width, plan.resized.height, cfg);
  return { pixelValues, grid: plan.grid, timestamps: plan.timestamps, sampledIndices: plan.sampledIndices, resized: plan.resized };
}

/** The frame facts a resize-at-decode needs (what loadVideo's `prepareFrames` receives). */
export interface DecodePlanFacts {
  probe: { width: number; height: number; fps?: number };
  /** source indices of the frames about to be decoded */
  indices: readonly number[];
}

/**
 * For `loadVideo(src, { prepareFrames: videoFrameResizer(cfg, opts) })`: plans the video from the probe
 * and the sampled indices before decoding, and resizes each frame to the planned size as it arrives, so
 * that only resized frames are held (768 full-HD frames are 4.8 GB; resized to the 224×128 that
 * 768 frames get, 66 MB). Then `preprocessVideo(video, cfg, { ...opts, sourceSize: { width, height } })`
 * with the same cfg and opts and the source size gives exactly what decoding full frames would.
 */
export function videoFrameResizer(cfg: VideoProcessorConfig, opts: VideoOptions = {}) {
  return ({ probe, indices }: DecodePlanFacts) => {
    const plan = planVideo({ frameCount: indices.length, width: probe.width, height: probe.height, fps: probe.fps, indices }, cfg, opts);
    const { width, height } = plan.resized;
    // the decoder reuses a frame's buffer: a frame kept at its own size is copied
    return (frame: RgbImage): RgbImage =>
      frame.width === width && frame.height === height ? { width, height, data: frame.data.slice() } : resizeRgbBicubic(frame, width, height);
  };
}
