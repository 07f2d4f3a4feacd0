/**
 * Image and video processor settings, read from a checkpoint's `preprocessor_config.json` and
 * `video_preprocessor_config.json`. Missing files or fields fall back to the values every released
 * Qwen3-VL checkpoint ships (not HF's class defaults, whose CLIP mean/std and patch 14 would be wrong).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { QvlError } from '../errors.ts';

export interface ImageProcessorConfig {
  patchSize: number;
  temporalPatchSize: number;
  mergeSize: number;
  /** smallest allowed H·W of the resized image (`size.shortest_edge`, legacy `min_pixels`) */
  minPixels: number;
  /** largest allowed H·W (`size.longest_edge`, legacy `max_pixels`) */
  maxPixels: number;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  rescaleFactor: number;
}

/** For videos, minPixels/maxPixels bound t̄·H·W over all sampled frames, not one frame. */
export interface VideoProcessorConfig extends ImageProcessorConfig {
  /** target sampling rate, frames per second of video */
  fps: number;
  minFrames: number;
  maxFrames: number;
  doSampleFrames: boolean;
  /**
   * `cap_pixels_per_frame`: bound each frame's pixels as qwen-vl-utils does (see planVideo). Off unless
   * the file says true, as in transformers ≤ 5.21 (5.22 is announced to switch it on for good).
   */
  capPixelsPerFrame: boolean;
  /** `max_video_tokens`: the per-frame token ceiling of that cap (default 768) */
  maxVideoTokens: number;
}

export interface ProcessorConfig {
  image: ImageProcessorConfig;
  video: VideoProcessorConfig;
}

export const DEFAULT_IMAGE_CONFIG: Readonly<ImageProcessorConfig> = Object.freeze({
  patchSize: 16,
  temporalPatchSize: 2,
  mergeSize: 2,
  minPixels: 65536,
  maxPixels: 16777216,
  imageMean: [0.5, 0.5, 0.5] as [number, number, number],
  imageStd: [0.5, 0.5, 0.5] as [number, number, number],
  rescaleFactor: 1 / 255,
});

export const DEFAULT_VIDEO_CONFIG: Readonly<VideoProcessorConfig> = Object.freeze({
  ...DEFAULT_IMAGE_CONFIG,
  minPixels: 4096,
  maxPixels: 25165824,
  fps: 2,
  minFrames: 4,
  maxFrames: 768,
  doSampleFrames: true,
  capPixelsPerFrame: false,
  maxVideoTokens: 768,
});

type Json = Record<string, unknown>;

function readJson(path: string): Json | undefined {
  if (!existsSync(path)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new QvlError('CONFIG_INVALID', `${path} is not valid JSON: ${(e as Error).message}`, { file: path });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new QvlError('CONFIG_INVALID', `${path} must hold a JSON object`, { file: path });
  }
  return parsed as Json;
}

function positiveInt(obj: Json, key: string, file: string, fallback: number): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new QvlError('CONFIG_INVALID', `${file}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`, { file, key, value: v });
  }
  return v;
}

function positiveNumber(obj: Json, key: string, file: string, fallback: number): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new QvlError('CONFIG_INVALID', `${file}: "${key}" must be a positive number, got ${JSON.stringify(v)}`, { file, key, value: v });
  }
  return v;
}

function triple(obj: Json, key: string, file: string, fallback: [number, number, number]): [number, number, number] {
  const v = obj[key];
  if (v === undefined || v === null) return [...fallback];
  const arr = typeof v === 'number' ? [v, v, v] : v;
  if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    throw new QvlError('CONFIG_INVALID', `${file}: "${key}" must be a number or a list of 3 numbers, got ${JSON.stringify(v)}`, { file, key, value: v });
  }
  return arr as [number, number, number];
}

/**
 * Pixel bounds from `size` and the legacy `min_pixels` / `max_pixels`. For images the legacy keys win
 * when present (HF's Qwen2VLImageProcessor lets them override `size`); for videos `size` wins and the
 * legacy keys only fill gaps (HF's video processor reads `size` alone).
 */
function pixelBounds(obj: Json, file: string, fallback: { minPixels: number; maxPixels: number }, legacyWins: boolean) {
  const size = obj.size;
  const sizeObj: Json = size && typeof size === 'object' && !Array.isArray(size) ? (size as Json) : {};
  if (size !== undefined && size !== null && sizeObj !== size) {
    throw new QvlError('CONFIG_INVALID', `${file}: "size" must be an object, got ${JSON.stringify(size)}`, { file, key: 'size' });
  }
  const fromSize = {
    min: sizeObj.shortest_edge ?? sizeObj.min_pixels,
    max: sizeObj.longest_edge ?? sizeObj.max_pixels,
  };
  const legacy = { min: obj.min_pixels, max: obj.max_pixels };
  const pick = (a: unknown, b: unknown) => (legacyWins ? (b ?? a) : (a ?? b));
  const tmp: Json = { min_pixels: pick(fromSize.min, legacy.min), max_pixels: pick(fromSize.max, legacy.max) };
  const minPixels = positiveInt(tmp, 'min_pixels', file, fallback.minPixels);
  const maxPixels = positiveInt(tmp, 'max_pixels', file, fallback.maxPixels);
  if (minPixels > maxPixels) {
    throw new QvlError('CONFIG_INVALID', `${file}: min pixels ${minPixels} exceed max pixels ${maxPixels}`, { file, minPixels, maxPixels });
  }
  return { minPixels, maxPixels };
}

export function parseImageProcessorConfig(obj: Json, file = 'preprocessor_config.json'): ImageProcessorConfig {
  const d = DEFAULT_IMAGE_CONFIG;
  const cfg: ImageProcessorConfig = {
    patchSize: positiveInt(obj, 'patch_size', file, d.patchSize),
    temporalPatchSize: positiveInt(obj, 'temporal_patch_size', file, d.temporalPatchSize),
    mergeSize: positiveInt(obj, 'merge_size', file, d.mergeSize),
    ...pixelBounds(obj, file, d, true),
    imageMean: triple(obj, 'image_mean', file, d.imageMean),
    imageStd: triple(obj, 'image_std', file, d.imageStd),
    rescaleFactor: positiveNumber(obj, 'rescale_factor', file, d.rescaleFactor),
  };
  if (cfg.imageStd.some((s) => s === 0)) {
    throw new QvlError('CONFIG_INVALID', `${file}: "image_std" must not contain 0`, { file, key: 'image_std' });
  }
  return cfg;
}

export function parseVideoProcessorConfig(obj: Json, file = 'video_preprocessor_config.json'): VideoProcessorConfig {
  const d = DEFAULT_VIDEO_CONFIG;
  const base = parseImageProcessorConfig({ ...obj, min_pixels: undefined, max_pixels: undefined, size: {} }, file);
  const sample = obj.do_sample_frames;
  if (sample !== undefined && sample !== null && typeof sample !== 'boolean') {
    throw new QvlError('CONFIG_INVALID', `${file}: "do_sample_frames" must be true or false, got ${JSON.stringify(sample)}`, { file });
  }
  const cap = obj.cap_pixels_per_frame;
  if (cap !== undefined && cap !== null && typeof cap !== 'boolean') {
    throw new QvlError('CONFIG_INVALID', `${file}: "cap_pixels_per_frame" must be true, false or null, got ${JSON.stringify(cap)}`, { file });
  }
  const cfg: VideoProcessorConfig = {
    ...base,
    ...pixelBounds(obj, file, d, false),
    fps: positiveNumber(obj, 'fps', file, d.fps),
    minFrames: positiveInt(obj, 'min_frames', file, d.minFrames),
    maxFrames: positiveInt(obj, 'max_frames', file, d.maxFrames),
    doSampleFrames: typeof sample === 'boolean' ? sample : d.doSampleFrames,
    // HF: null or absent = the uncapped behaviour (with a deprecation warning)
    capPixelsPerFrame: cap === true,
    maxVideoTokens: positiveInt(obj, 'max_video_tokens', file, d.maxVideoTokens),
  };
  if (cfg.minFrames > cfg.maxFrames) {
    throw new QvlError('CONFIG_INVALID', `${file}: min_frames ${cfg.minFrames} exceeds max_frames ${cfg.maxFrames}`, { file });
  }
  return cfg;
}

/** Reads both processor configs of a model folder; either file may be absent. */
export function loadProcessorConfig(modelDir: string): ProcessorConfig {
  const imageFile = join(modelDir, 'preprocessor_config.json');
  const videoFile = join(modelDir, 'video_preprocessor_config.json');
  const imageJson = readJson(imageFile);
  const videoJson = readJson(videoFile);
  return {
    image: imageJson ? parseImageProcessorConfig(imageJson, imageFile) : { ...DEFAULT_IMAGE_CONFIG, imageMean: [...DEFAULT_IMAGE_CONFIG.imageMean], imageStd: [...DEFAULT_IMAGE_CONFIG.imageStd] },
    video: videoJson
      ? parseVideoProcessorConfig(videoJson, videoFile)
      : { ...DEFAULT_VIDEO_CONFIG, imageMean: [...DEFAULT_VIDEO_CONFIG.imageMean], imageStd: [...DEFAULT_VIDEO_CONFIG.imageStd] },
  };
}
