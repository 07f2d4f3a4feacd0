/**
 * A finished generation as OpenAI's `chat.completion` object: the output parsed (reasoning, tool
 * calls, grounding) into the wire form. The server answers with it, and batch jobs store it, so
 * an online answer and a batch answer to one body read the same.
 */
import { randomBytes } from 'node:crypto';
import type { ChatResult } from '../api/qwen3vl.ts';
import type { OutputGrounding } from '../generate/parse/output.ts';
import type { ChatRequest } from './request.ts';

export function usageOf(r: ChatResult) {
  return {
    prompt_tokens: r.usage.promptTokens,
    completion_tokens: r.usage.completionTokens,
    total_tokens: r.usage.totalTokens,
    // as OpenAI reports prompt caching: prompt tokens whose KV was reused
    prompt_tokens_details: { cached_tokens: r.usage.cachedTokens ?? 0 },
  };
}

export function finishReason(r: ChatResult, toolCalls: number): string {
  return toolCalls > 0 ? 'tool_calls' : r.finishReason;
}

/** The completion object of a finished answer (its output was parsed on the model's thread: reasoning, tool calls, grounding). */
export function chatCompletion(
  req: ChatRequest,
  r: ChatResult,
  id = `chatcmpl-${randomBytes(12).toString('hex')}`,
  created = Math.floor(Date.now() / 1000),
) {
  const out = r.output;
  const message: Record<string, unknown> = { role: 'assistant', content: out.toolCalls.length > 0 && out.content === '' ? null : out.content };
  if (out.reasoning !== undefined) message.reasoning_content = out.reasoning;
  if (out.toolCalls.length > 0) message.tool_calls = out.toolCalls;
  if (out.grounding) message.grounding = groundingJson(out.grounding);
  return {
    id,
    object: 'chat.completion',
    created,
    model: req.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(r, out.toolCalls.length) }],
    usage: usageOf(r),
  };
}

/** The wire form of grounding: snake_case like the rest of the API. */
export function groundingJson(g: OutputGrounding) {
  return {
    image: g.image ?? null,
    width: g.width ?? null,
    height: g.height ?? null,
    boxes: g.boxes.map((b) => ({ label: b.label ?? null, bbox_2d: b.bbox2d, box: b.box ?? null })),
    points: g.points.map((p) => ({ label: p.label ?? null, point_2d: p.point2d, point: p.point ?? null })),
  };
}
