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
  const err = e as Error;
  return { code: 'INTERNAL', message: err?.stack ?? String(e), detail: {} };
}

export function deserializeError(e: SerializedError): QvlError {
  return new QvlError(e.code, e.message, e.detail);
}
