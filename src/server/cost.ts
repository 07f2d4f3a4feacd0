/**
 * POST /v1/tokenize: the prompt-token cost of a chat request (same body as chat completions)
 * without running the model: per image, video and PDF page its size after resizing, its grid and
 * its tokens, and the whole prompt's length. Headers only; no pixel is decoded. The work (media
 * fetching, ffprobe, PDF parsing, tokenizing) runs on a preparation worker, and at most as many
 * previews run at once as requests may wait for the model.
 */
import type { Context } from 'hono';
import { prepOptions } from './prep-options.ts';
import type { ServerContext } from './context.ts';
import { HttpError } from './errors.ts';
import { requestUsage } from './request-log.ts';
import { parseChatRequest } from './request.ts';

export async function handleCost(c: Context, ctx: ServerContext, body: unknown): Promise<Response> {
  const req = parseChatRequest(body, ctx.limits, ctx.modelNames, ctx.modelBounds);
  const limit = ctx.limits.maxQueue + 1;
  if (ctx.costing.active >= limit) {
    throw new HttpError(429, `the server is busy: ${ctx.costing.active} token counts are in progress (the limit); retry in a second`, {
      code: 'queue_full',
      headers: { 'Retry-After': '1' },
    });
  }
  ctx.costing.active++;
  let cost;
  try {
    // the preview answers for any prompt length: no token limit
    cost = await ctx.preparer.cost(req.messages, { ...prepOptions(req, ctx.engine.info()?.maxPositions), maxPromptTokens: undefined }, c.req.raw.signal);
  } finally {
    ctx.costing.active--;
  }
  requestUsage(c, { promptTokens: cost.promptTokens });
  const o = req.options;
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
