/** A chat request as a preparation worker takes it: the prompt options and the limits it enforces. */
import type { PrepOptions } from '../api/prep-protocol.ts';
import type { ChatRequest } from './request.ts';

/** `maxPositions`: the model's context, once known; the prompt is bounded by it and the request's limit. */
export function prepOptions(req: ChatRequest, maxPositions = Infinity): PrepOptions {
  const o = req.options;
  return {
    tools: o.tools,
    templateKwargs: o.templateKwargs,
    minPixels: o.minPixels,
    maxPixels: o.maxPixels,
    fps: o.fps,
    maxFrames: o.maxFrames,
    capPixelsPerFrame: o.capPixelsPerFrame,
    media: o.media,
    pdf: o.pdf,
    maxMediaItems: o.maxMediaItems,
    maxPromptTokens: Math.min(o.maxContext ?? Infinity, maxPositions),
  };
}

