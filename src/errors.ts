/**
 * The one error type of qvl. `code` is stable (tests, the server's status mapping and users'
 * scripts rely on it); `message` says what is wrong and what to do; `detail` carries the
 * offending value (a file name, a tensor name, a size) for programs.
 */
export type QvlErrorCode =
  // checkpoints and files
  | 'FILE_NOT_FOUND'
  | 'SAFETENSORS_INVALID'
  | 'TENSOR_MISSING'
  | 'TENSOR_SHAPE'
  | 'DTYPE_UNSUPPORTED'
  | 'CONFIG_INVALID'
  | 'QUANT_INVALID'
  // inputs
  | 'IMAGE_TOO_SMALL'
  | 'IMAGE_ASPECT'
  | 'IMAGE_TOO_LARGE'
  | 'IMAGE_DECODE'
  | 'VIDEO_INVALID'
  | 'MEDIA_SOURCE'
  | 'MEDIA_FORBIDDEN'
  | 'MEDIA_TOO_LARGE'
  | 'MESSAGE_INVALID'
  | 'TOKEN_COUNT_MISMATCH'
  | 'CONTEXT_TOO_LONG'
  | 'TEMPLATE_ERROR'
  | 'OPTION_INVALID'
  // runtime
  | 'BACKEND_UNAVAILABLE'
  | 'NATIVE_ERROR'
  | 'DOWNLOAD_FAILED'
  | 'OUT_OF_MEMORY'
  | 'BUSY'
  | 'ABORTED'
  | 'INTERNAL';

export class QvlError extends Error {
  readonly code: QvlErrorCode;
  readonly detail: Record<string, unknown>;

  constructor(code: QvlErrorCode, message: string, detail: Record<string, unknown> = {}) {
    super(message);
    this.name = 'QvlError';
    this.code = code;
    this.detail = detail;
  }
}

export function isQvlError(e: unknown, code?: QvlErrorCode): e is QvlError {
  return e instanceof QvlError && (code === undefined || e.code === code);
}
