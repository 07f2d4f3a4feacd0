/**
 * Errors as OpenAI clients expect them: `{error: {message, type, param, code}}` with a status
 * code. Every QvlError code maps to a status in one table, so a refusal deep in the media or
 * model code reaches the client with the right status and its own message.
 */
import { QvlError, type QvlErrorCode } from '../errors.ts';

/** QvlError code → HTTP status. */
export const STATUS_OF: Record<QvlErrorCode, number> = {
  // the request is wrong
  MESSAGE_INVALID: 400,
  OPTION_INVALID: 400,
  TEMPLATE_ERROR: 400,
  IMAGE_TOO_SMALL: 400,
  IMAGE_ASPECT: 400,
  IMAGE_DECODE: 400,
  VIDEO_INVALID: 400,
  MEDIA_SOURCE: 400,
  MEDIA_FORBIDDEN: 400,
  FILE_NOT_FOUND: 400,
  TOKEN_COUNT_MISMATCH: 400,
  CONTEXT_TOO_LONG: 400,
  // the request is too big
  IMAGE_TOO_LARGE: 413,
  MEDIA_TOO_LARGE: 413,
  // the server is busy or the client left
  BUSY: 429,
  // the KV cache budget is spent (other requests hold it, or this one needs more than it allows)
  OUT_OF_MEMORY: 503,
  ABORTED: 499,
  // the server's own fault
  SAFETENSORS_INVALID: 500,
  TENSOR_MISSING: 500,
  TENSOR_SHAPE: 500,
  DTYPE_UNSUPPORTED: 500,
  CONFIG_INVALID: 500,
  QUANT_INVALID: 500,
  BACKEND_UNAVAILABLE: 500,
  NATIVE_ERROR: 500,
  DOWNLOAD_FAILED: 500,
  INTERNAL: 500,
};

/** OpenAI's `type` for a status. */
export function errorType(status: number): string {
  if (status === 429) return 'rate_limit_error';
  if (status === 404) return 'not_found_error';
  if (status >= 500) return status === 503 ? 'service_unavailable_error' : 'server_error';
  return 'invalid_request_error';
}

/** OpenAI-style `code` for a QvlError (the ones OpenAI clients know keep their names). */
function openAiCode(code: QvlErrorCode): string {
  if (code === 'CONTEXT_TOO_LONG') return 'context_length_exceeded';
  if (code === 'BUSY') return 'queue_full';
  return code.toLowerCase();
}

/** An error with everything an HTTP answer needs. */
export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | null;
  readonly param: string | null;
  readonly headers: Record<string, string>;

  constructor(status: number, message: string, opts: { code?: string; param?: string; type?: string; headers?: Record<string, string> } = {}) {
    super(message);
    this.status = status;
    this.type = opts.type ?? errorType(status);
    this.code = opts.code ?? null;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** `messages[1].content[0]` from message normalization's error detail. */
function messageParam(d: Record<string, unknown>): string | undefined {
  if (typeof d.message !== 'number') return undefined;
  let p = `messages[${d.message}]`;
  if (typeof d.part === 'number') p += `.content[${d.part}]`;
  if (typeof d.call === 'number') p += `.tool_calls[${d.call}]`;
  return p;
}

/** Any thrown value → an HttpError (QvlErrors through the table; anything else is a 500). */
export function toHttpError(e: unknown, param?: string): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof QvlError) {
    const detailParam = typeof e.detail.param === 'string' ? e.detail.param : messageParam(e.detail);
    return new HttpError(STATUS_OF[e.code] ?? 500, e.message, { code: openAiCode(e.code), param: detailParam ?? param });
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new HttpError(500, `internal error: ${msg}`, { code: 'internal' });
}
