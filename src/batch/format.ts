/**
 * The OpenAI Batch API's shapes: ids, the output line of a request (`response` or `error`), the
 * batch object, file objects. Results are keyed by `custom_id`, so a request answered twice
 * (a retry, a duplicate delivery) still has one line.
 */
import { randomBytes } from 'node:crypto';

export const BATCH_ENDPOINT = '/v1/chat/completions';

/** The statuses of OpenAI's batch object that a qvl batch goes through. */
export type BatchStatus = 'validating' | 'in_progress' | 'completed' | 'failed' | 'cancelling' | 'cancelled';

export const newBatchId = (): string => `batch_${randomBytes(12).toString('hex')}`;
export const newFileId = (): string => `file-${randomBytes(12).toString('hex')}`;

const BATCH_ID = /^batch_[0-9a-f]{24}$/;
export const isBatchId = (id: string): boolean => BATCH_ID.test(id);

/** The files a finished batch offers: its answers and its failures (made from the results when read). */
export const outputFileId = (batchId: string): string => `file-${batchId.slice('batch_'.length)}-output`;
export const errorFileId = (batchId: string): string => `file-${batchId.slice('batch_'.length)}-errors`;

/** `file-<hex>-output` → the batch and which half of its results, or undefined for an uploaded file. */
export function resultFile(fileId: string): { batchId: string; kind: 'output' | 'errors' } | undefined {
  const m = /^file-([0-9a-f]{24})-(output|errors)$/.exec(fileId);
  return m ? { batchId: `batch_${m[1]}`, kind: m[2] as 'output' | 'errors' } : undefined;
}

export interface RequestError {
  code: string;
  message: string;
  param?: string | null;
  /** times the request was started (a delivery to a worker that died counts) */
  attempts?: number;
}

/** One line of the output file for an answered request. */
export function resultLine(customId: string, body: { id: string }): string {
  return JSON.stringify({
    id: `batch_req_${randomBytes(12).toString('hex')}`,
    custom_id: customId,
    response: { status_code: 200, request_id: body.id, body },
    error: null,
  });
}

/** One line of the error file for a request that failed for good. */
export function errorLine(customId: string, error: RequestError): string {
  return JSON.stringify({ id: `batch_req_${randomBytes(12).toString('hex')}`, custom_id: customId, response: null, error });
}

/** What Redis holds about a batch, as strings. */
export interface BatchRecord {
  id: string;
  status: BatchStatus;
  model: string;
  total: number;
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  created_at: number;
  in_progress_at?: number;
  cancelling_at?: number;
  cancelled_at?: number;
  completed_at?: number;
  failed_at?: number;
  metadata: Record<string, string> | null;
  errors: { message: string; line?: number }[];
}

export interface RequestCounts {
  total: number;
  completed: number;
  failed: number;
}

/** OpenAI's batch object. */
export function batchJson(b: BatchRecord, counts: RequestCounts) {
  const finished = b.status === 'completed' || b.status === 'cancelled' || b.status === 'failed';
  return {
    id: b.id,
    object: 'batch',
    endpoint: b.endpoint,
    model: b.model,
    errors: b.errors.length > 0 ? { object: 'list', data: b.errors.map((e) => ({ code: 'enqueue_failed', message: e.message, param: null, line: e.line ?? null })) } : null,
    input_file_id: b.input_file_id,
    completion_window: b.completion_window,
    status: b.status,
    output_file_id: finished && counts.completed > 0 ? outputFileId(b.id) : null,
    error_file_id: finished && counts.failed > 0 ? errorFileId(b.id) : null,
    created_at: b.created_at,
    in_progress_at: b.in_progress_at ?? null,
    // completion_window is recorded, not enforced: a batch is never expired
    expires_at: null,
    finalizing_at: b.completed_at ?? null,
    completed_at: b.completed_at ?? null,
    failed_at: b.failed_at ?? null,
    expired_at: null,
    cancelling_at: b.cancelling_at ?? null,
    cancelled_at: b.cancelled_at ?? null,
    request_counts: counts,
    metadata: b.metadata,
  };
}

export type BatchJson = ReturnType<typeof batchJson>;

export interface FileRecord {
  id: string;
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
}

/** OpenAI's file object. */
export function fileJson(f: FileRecord) {
  return { id: f.id, object: 'file', bytes: f.bytes, created_at: f.created_at, filename: f.filename, purpose: f.purpose, status: 'processed', expires_at: null, status_details: null };
}
