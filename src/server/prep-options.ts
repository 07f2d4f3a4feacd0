/** A chat request as a preparation worker takes it: the prompt options and the limits it enforces. */
import type { PrepOptions } from '../api/prep-protocol.ts';
import type { ServerContext } from './context.ts';
import type { ChatRequest } from './request.ts';

export function prepOptions(req: ChatRequest, ctx: ServerContext): PrepOptions {
  const o = req.options;
  const maxPositions = ctx.engine.info()?.maxPositions ?? Infinity;
  return {
    tools: o.tools,
    templateKwargs: o.templateKwargs,
    minPixels: o.minPixels,
    maxPixels: o.maxPixels,
    fps: o.fps,
    maxFrames: o.maxFrames,
    media: o.media,
    pdf: o.pdf,
    maxMediaItems: o.maxMediaItems,
    maxPromptTokens: Math.min(o.maxContext ?? Infinity, maxPositions),
  };
}

