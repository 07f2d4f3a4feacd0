/**
 * POST /v1/tokenize: the prompt-token cost of a chat request (same body as chat completions)
 * without running the model: per image, video and PDF page its size after resizing, its grid and
 * its tokens, and the whole prompt's length. Headers only; no pixel is decoded.
 */
import type { Context } from 'hono';
import { estimatePromptCost } from '../api/prompt-cost.ts';
import type { ServerContext } from './context.ts';
import { parseChatRequest } from './request.ts';

export async function handleCost(c: Context, ctx: ServerContext, body: unknown): Promise<Response> {
  const req = parseChatRequest(body, ctx.limits, ctx.modelNames);
  const parts = await ctx.promptParts();
  const o = req.options;
  const cost = await estimatePromptCost(parts, req.messages, {
    tools: o.tools,
    templateKwargs: o.templateKwargs,
    minPixels: o.minPixels,
    maxPixels: o.maxPixels,
    fps: o.fps,
    maxFrames: o.maxFrames,
    media: { ...o.media, signal: c.req.raw.signal },
    pdf: o.pdf,
  });
  return c.json({
    object: 'prompt.cost',
    model: req.model,
    prompt_tokens: cost.promptTokens,
    media_tokens: cost.mediaTokens,
    max_context: o.maxContext ?? null,
    items: cost.items.map((i) => ({
      type: i.kind,
      source: i.source,
      width: i.width,
      height: i.height,
      resized_width: i.resized.width,
      resized_height: i.resized.height,
      grid_thw: i.grid,
      tokens: i.tokens,
      ...(i.frames !== undefined ? { frames: i.frames, timestamps: i.timestamps } : {}),
    })),
  });
}
