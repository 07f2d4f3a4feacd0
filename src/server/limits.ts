/** The server's limits and defaults, with the values used when an option is not given. */
import type { PdfPartOptions } from '../api/pdf-parts.ts';
import type { WorkerMediaOptions } from '../api/worker-protocol.ts';
import { DEFAULT_MAX_INPUT_PIXELS } from '../media/source-options.ts';

export interface ServerLimits {
  /** requests waiting for the model besides the running ones (default 16); more get 429 */
  maxQueue: number;
  /** requests generating at once, decoded together (default 1); the engine must run as many */
  parallel: number;
  /** largest request body in bytes (default 64 MiB; data URIs count) */
  maxBodyBytes: number;
  /** images, videos and documents per request (default 32; PDF pages count as images once rendered) */
  maxImages: number;
  /** prompt + generated tokens (default: the model's context, at most 32768) */
  maxContext?: number;
  /** most resized pixels per image; larger min_pixels / max_pixels are refused (default: the model's own maximum) */
  maxImagePixels?: number;
  /** most resized pixels per video, over all its frames (default: the model's own maximum) */
  maxVideoPixels?: number;
  /** characters of text per request, checked before tokenizing (default: 8 per token of context) */
  maxPromptChars?: number;
  /** threads that prepare requests (fetch, decode, resize, tokenize) before they take the model (default 1) */
  prepWorkers: number;
  /** seconds a running answer may take to finish when the server is stopped (default 10) */
  shutdownGraceSeconds: number;
  /** max_tokens when a request gives none (default 2048) */
  defaultMaxTokens: number;
  /** where media may come from: local dirs (none by default), private addresses, sizes */
  media: WorkerMediaOptions;
  pdf?: PdfPartOptions;
}

export const DEFAULT_CONTEXT_CAP = 32768;

/** Characters allowed per token of context before tokenizing (English runs ~4 a token; code and whitespace more). */
export const CHARS_PER_CONTEXT_TOKEN = 8;

/** The text character limit in force. */
export function promptCharLimit(l: ServerLimits): number {
  return l.maxPromptChars ?? CHARS_PER_CONTEXT_TOKEN * (l.maxContext ?? DEFAULT_CONTEXT_CAP);
}

export function resolveLimits(o: Partial<ServerLimits> = {}): ServerLimits {
  return {
    maxQueue: o.maxQueue ?? 16,
    parallel: o.parallel ?? 1,
    maxBodyBytes: o.maxBodyBytes ?? 64 * 1024 * 1024,
    maxImages: o.maxImages ?? 32,
    maxContext: o.maxContext,
    maxImagePixels: o.maxImagePixels,
    maxVideoPixels: o.maxVideoPixels,
    maxPromptChars: o.maxPromptChars,
    prepWorkers: o.prepWorkers ?? 1,
    shutdownGraceSeconds: o.shutdownGraceSeconds ?? 10,
    defaultMaxTokens: o.defaultMaxTokens ?? 2048,
    media: { allowedLocalDirs: [], allowPrivateNetwork: false, maxInputPixels: DEFAULT_MAX_INPUT_PIXELS, ...o.media },
    pdf: o.pdf,
  };
}
