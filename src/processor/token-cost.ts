/**
 * Token cost of an image or video known only by its size (and frame count / rate), without decoding
 * pixels. The numbers come from the same planning code that preprocessImage / preprocessVideo use,
 * so a cost quoted here is the cost paid.
 */
import type { ImageProcessorConfig, VideoProcessorConfig } from './config.ts';
import { planImage, type GridThw, type PixelBudgetOptions } from './image-processor.ts';
import { pyFormat1f } from './python-math.ts';
import type { Size } from './smart-resize.ts';
import { planVideo, type VideoOptions, type VideoShape } from './video-processor.ts';

export interface ImageTokenCost {
  /** `<|image_pad|>` tokens */
  tokens: number;
  grid: GridThw;
  resized: Size;
}

export interface VideoTokenCost {
  /** `<|video_pad|>` tokens over all groups */
  tokens: number;
  /** temporal groups, each its own `<t seconds><|vision_start|>…<|vision_end|>` block */
  groups: number;
  tokensPerGroup: number;
  grid: GridThw;
  resized: Size;
  sampledIndices: number[];
  timestamps: number[];
  /** the text before each group, e.g. "<0.2 seconds>"; tokenize it for the exact prompt length */
  timestampTexts: string[];
}

export function imageTokenCost(width: number, height: number, cfg: ImageProcessorConfig, opts: PixelBudgetOptions = {}): ImageTokenCost {
  const plan = planImage(width, height, cfg, opts);
  return { tokens: plan.tokens, grid: plan.grid, resized: plan.resized };
}

export function videoTokenCost(shape: VideoShape, cfg: VideoProcessorConfig, opts: VideoOptions = {}): VideoTokenCost {
  const plan = planVideo(shape, cfg, opts);
  return {
    tokens: plan.tokens,
    groups: plan.grid[0],
    tokensPerGroup: plan.tokensPerGroup,
    grid: plan.grid,
    resized: plan.resized,
    sampledIndices: plan.sampledIndices,
    timestamps: plan.timestamps,
    timestampTexts: plan.timestamps.map((t) => `<${pyFormat1f(t)} seconds>`),
  };
}
