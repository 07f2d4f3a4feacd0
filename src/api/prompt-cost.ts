/**
 * What a request will cost in prompt tokens, without running the model or decoding pixels: the
 * request's plan (request-plan.ts), which `prepare` then follows, so the counts are equal.
 */
import type { MediaGeometry } from './media-cost.ts';
import type { PdfPartOptions } from './pdf-parts.ts';
import type { PromptOptions, PromptParts } from './prompt.ts';
import { planRequest } from './request-plan.ts';

export interface PromptCostItem extends MediaGeometry {
  kind: 'image' | 'video';
  /** names the source: a path, a URL without its query, "data URI (…)", "PDF page 2" */
  source: string;
  /** videos: the time of each temporal group in seconds */
  timestamps?: number[];
}

export interface PromptCost {
  /** the whole prompt, media expanded */
  promptTokens: number;
  /** image and video pad tokens */
  mediaTokens: number;
  items: PromptCostItem[];
}

export interface PromptCostOptions extends PromptOptions {
  pdf?: PdfPartOptions;
}

/** The plan's counts (request-plan.ts): what `prepare` will produce, without decoding a pixel. */
export async function estimatePromptCost(parts: PromptParts, messages: unknown, opts: PromptCostOptions = {}): Promise<PromptCost> {
  const plan = await planRequest(parts, messages, opts);
  await plan.release();
  return {
    promptTokens: plan.promptTokens,
    mediaTokens: plan.mediaTokens,
    items: plan.media.map((m) => {
      const item: PromptCostItem = { kind: m.kind, source: m.source, width: m.width, height: m.height, resized: m.resized, grid: m.grid, tokens: m.tokens };
      if (m.frames !== undefined) item.frames = m.frames;
      if (m.timestamps !== undefined) item.timestamps = m.timestamps;
      return item;
    }),
  };
}
