import { QvlError } from '../errors.ts';

export interface GenerationLimits {
  /** prompt + generated tokens this request may use */
  maxContext: number;
  /** tokens it may generate: what was asked, cut to what the context leaves */
  maxNewTokens: number;
}

/**
 * The limits of one generation, resolved in one place: the request's context limit (if any) within
 * the model's, and its max new tokens within what the prompt leaves. A prompt that fills the
 * context is refused.
 */
export function resolveLimits(promptTokens: number, asked: { maxContext?: number; maxNewTokens: number }, contextLength: number): GenerationLimits {
  if (!Number.isInteger(asked.maxNewTokens) || asked.maxNewTokens < 0) {
    throw new QvlError('OPTION_INVALID', `max_tokens must be a non-negative integer, got ${asked.maxNewTokens}`, { value: asked.maxNewTokens });
  }
  const maxContext = Math.min(asked.maxContext ?? Infinity, contextLength);
  if (promptTokens >= maxContext) {
    throw new QvlError('CONTEXT_TOO_LONG', `the prompt is ${promptTokens} tokens; this model accepts fewer than ${maxContext}`, { promptTokens, maxContext });
  }
  return { maxContext, maxNewTokens: Math.min(asked.maxNewTokens, maxContext - promptTokens) };
}
