/** QvlErrors as plain data, so they cross a worker boundary with their code, message and detail. */
import { QvlError } from '../errors.ts';
import type { SerializedError } from './worker-protocol.ts';

export function serializeError(e: unknown): SerializedError {
  if (e instanceof QvlError) {
    let detail: Record<string, unknown> = {};
    try {
      detail = JSON.parse(JSON.stringify(e.detail ?? {}));
    } catch {
      detail = {};
    }
    return { code: e.code, message: e.message, detail };
  }
  // The stack stays in the detail, for logs: messages reach clients, and a stack names source paths.
  const err = e as Error;
  return { code: 'INTERNAL', message: err instanceof Error ? err.message : String(e), detail: err instanceof Error && err.stack ? { stack: err.stack } : {} };
}

export function deserializeError(e: SerializedError): QvlError {
  return new QvlError(e.code, e.message, e.detail);
}
