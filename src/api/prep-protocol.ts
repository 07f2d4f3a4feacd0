/**
 * Messages between a preparation worker and its host. A preparation worker turns a chat request
 * into a prepared prompt (media fetched, decoded and resized; text rendered and tokenized) or
 * into its token cost, away from both the host's event loop and the model's thread. Every job
 * carries an id and gets exactly one `prepared`, `cost` or `error` answer.
 */
import type { PromptCost } from './prompt-cost.ts';
import type { PreparedPrompt, PromptOptions } from './prompt.ts';
import type { SerializedError, WorkerMediaOptions } from './worker-protocol.ts';

export interface PrepInit {
  /** the model folder: tokenizer, chat template and processor configuration */
  dir: string;
}

/** PromptOptions that can cross threads, plus the request limits checked while preparing. */
export interface PrepOptions extends Omit<PromptOptions, 'media'> {
  media?: WorkerMediaOptions;
  /** refuse requests with more images and videos than this (PDF pages count as images) */
  maxMediaItems?: number;
  /** refuse prompts of this many tokens or more, before decoding media when the cost already says so */
  maxPromptTokens?: number;
}

export type PrepJob =
  | { type: 'prepare'; id: number; messages: unknown; opts: PrepOptions }
  | { type: 'cost'; id: number; messages: unknown; opts: PrepOptions }
  | { type: 'abort'; id: number };

export type PrepReply =
  | { type: 'ready' }
  | { type: 'load-error'; error: SerializedError }
  | { type: 'prepared'; id: number; prepared: PreparedPrompt }
  | { type: 'cost'; id: number; cost: PromptCost }
  | { type: 'error'; id: number; error: SerializedError };
