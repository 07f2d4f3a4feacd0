/**
 * Qwen-VL "smart resize": the output size whose sides are multiples of `factor` (patch × merge,
 * 32 for Qwen3-VL), closest to the input's aspect ratio, with the pixel count inside
 * [minPixels, maxPixels]. Arithmetic follows HF's Python line by line (float64, Python `round`
 * ties to even: 720 / 32 = 22.5 → 22), so sizes and token counts match HF exactly.
 */
import { QvlError } from '../errors.ts';
import { pyInt, roundHalfEven } from './python-math.ts';

export interface SmartResizeOptions {
  /** patch_size × merge_size */
  factor: number;
  minPixels: number;
  maxPixels: number;
}

export interface VideoSmartResizeOptions extends SmartResizeOptions {
  /** temporal_patch_size */
  temporalFactor: number;
}

export interface Size {
  width: number;
  height: number;
}

const MAX_ASPECT = 200;

function checkAspect(height: number, width: number, what: string): void {
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > MAX_ASPECT) {
    throw new QvlError(
      'IMAGE_ASPECT',
      `${what} is ${width}×${height} px, an aspect ratio of ${ratio.toFixed(1)}; Qwen3-VL accepts at most ${MAX_ASPECT}:1. Crop or pad it first.`,
      { width, height, ratio },
    );
  }
}

function checkSide(value: number, name: string, what: string): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new QvlError('IMAGE_DECODE', `${what} has an invalid ${name} ${value}; expected a positive integer.`, { [name]: value });
  }
}

/** Rounds the budget-respecting size the way HF does once the sides are known. */
function fitToBudget(
  height: number,
  width: number,
  count: number,
  budgetCount: number,
  { factor, minPixels, maxPixels }: SmartResizeOptions,
): Size {
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (budgetCount * h * w > maxPixels) {
    const beta = Math.sqrt((count * height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (budgetCount * h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (count * height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { width: w, height: h };
}

/**
 * Image variant (HF `Qwen2VLImageProcessor` smart_resize). Sides under `factor` pixels are refused,
 * as transformers 4.57 (the release the checkpoints shipped with) refuses them.
 */
export function smartResizeImage(width: number, height: number, opts: SmartResizeOptions): Size {
  checkSide(width, 'width', 'image');
  checkSide(height, 'height', 'image');
  if (height < opts.factor || width < opts.factor) {
    throw new QvlError(
      'IMAGE_TOO_SMALL',
      `image is ${width}×${height} px; both sides must be at least ${opts.factor} px. Upscale or pad it first.`,
      { width, height, minSide: opts.factor },
    );
  }
  checkAspect(height, width, 'image');
  return fitToBudget(height, width, 1, 1, opts);
}

/**
 * Video variant (HF `Qwen3VLVideoProcessor` smart_resize) for `numFrames` sampled frames of one size.
 * The budget compares t̄·h·w with t̄ = round(n / temporal) · temporal, while β uses n·H·W. Frames under
 * `factor` pixels are first scaled up with truncation to int, as transformers 5.x does (a 112×20 frame is sized as if it were 179×32).
 */
export function smartResizeVideo(numFrames: number, width: number, height: number, opts: VideoSmartResizeOptions): Size {
  checkSide(width, 'width', 'video frame');
  checkSide(height, 'height', 'video frame');
  if (!Number.isInteger(numFrames) || numFrames < opts.temporalFactor) {
    throw new QvlError(
      'VIDEO_INVALID',
      `a video needs at least ${opts.temporalFactor} frames after sampling, got ${numFrames}.`,
      { numFrames, minFrames: opts.temporalFactor },
    );
  }
  let h = height;
  let w = width;
  if (h < opts.factor || w < opts.factor) {
    const scale = Math.max(opts.factor / h, opts.factor / w);
    h = pyInt(h * scale);
    w = pyInt(w * scale);
  }
  checkAspect(h, w, 'video frame');
  const tBar = roundHalfEven(numFrames / opts.temporalFactor) * opts.temporalFactor;
  return fitToBudget(h, w, numFrames, tBar, opts);
}
