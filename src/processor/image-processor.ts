/**
 * One image → Qwen3-VL `pixel_values` and `image_grid_thw`, as HF's image processor computes them:
 * smart_resize → uint8 antialiased bicubic → float32 normalise → the frame repeated
 * temporal_patch_size times → rows in merge-window order.
 */
import type { RgbImage } from '../media/rgb.ts';
import { QvlError } from '../errors.ts';
import type { ImageProcessorConfig } from './config.ts';
import { patchifyFrames } from './patchify.ts';
import { resizeRgbBicubic } from './resize-bicubic.ts';
import { smartResizeImage, type Size } from './smart-resize.ts';

export interface PixelBudgetOptions {
  /** overrides the config's minimum H·W of the resized image */
  minPixels?: number;
  /** overrides the config's maximum H·W of the resized image */
  maxPixels?: number;
}

/** grid_thw: temporal groups, patch rows, patch columns */
export type GridThw = [number, number, number];

export interface ImagePlan {
  resized: Size;
  grid: GridThw;
  /** LLM tokens (`<|image_pad|>` count) = t·h·w / merge² */
  tokens: number;
}

export interface PreprocessedImage {
  /** `[grid t·h·w, 3·T·P·P]` row-major */
  pixelValues: Float32Array;
  grid: GridThw;
  resized: Size;
}

/** Resolves the pixel budget, refusing options that make no sense. */
export function resolvePixelBudget(cfg: { minPixels: number; maxPixels: number }, opts: PixelBudgetOptions = {}): { minPixels: number; maxPixels: number } {
  const minPixels = opts.minPixels ?? cfg.minPixels;
  const maxPixels = opts.maxPixels ?? cfg.maxPixels;
  for (const [name, v] of [['minPixels', minPixels], ['maxPixels', maxPixels]] as const) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new QvlError('OPTION_INVALID', `${name} must be a positive integer, got ${v}`, { [name]: v });
    }
  }
  if (minPixels > maxPixels) {
    throw new QvlError('OPTION_INVALID', `minPixels (${minPixels}) is larger than maxPixels (${maxPixels})`, { minPixels, maxPixels });
  }
  return { minPixels, maxPixels };
}

/** Size, grid and token count of an image of `width`×`height`, without touching pixels. */
export function planImage(width: number, height: number, cfg: ImageProcessorConfig, opts: PixelBudgetOptions = {}): ImagePlan {
  const factor = cfg.patchSize * cfg.mergeSize;
  const resized = smartResizeImage(width, height, { factor, ...resolvePixelBudget(cfg, opts) });
  const grid: GridThw = [1, resized.height / cfg.patchSize, resized.width / cfg.patchSize];
  return { resized, grid, tokens: (grid[0] * grid[1] * grid[2]) / (cfg.mergeSize * cfg.mergeSize) };
}

export function checkRgbImage(img: RgbImage, what = 'image'): void {
  const { width, height, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new QvlError('IMAGE_DECODE', `${what} has an invalid size ${width}×${height}`, { width, height });
  }
  if (!(data instanceof Uint8Array) || data.length !== width * height * 3) {
    throw new QvlError('IMAGE_DECODE', `${what} is ${width}×${height} but holds ${data?.length} bytes; expected ${width * height * 3} (RGB, 3 bytes per pixel)`, {
      width,
      height,
      bytes: data?.length,
    });
  }
}

export function preprocessImage(img: RgbImage, cfg: ImageProcessorConfig, opts: PixelBudgetOptions = {}): PreprocessedImage {
  checkRgbImage(img);
  const plan = planImage(img.width, img.height, cfg, opts);
  const resized = resizeRgbBicubic(img, plan.resized.width, plan.resized.height);
  const frames = new Array<Uint8Array>(cfg.temporalPatchSize).fill(resized.data);
  const { pixelValues } = patchifyFrames(frames, resized.width, resized.height, cfg);
  return { pixelValues, grid: plan.grid, resized: plan.resized };
}
