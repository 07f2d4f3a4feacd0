/** What every route shares: the engine, the preparer, the line in front of the model, the limits and the served names. */
import type { Preparer, ServerEngine } from './engine.ts';
import { HttpError } from './errors.ts';
import type { ServerLimits } from './limits.ts';
import type { ServerMetrics } from './metrics.ts';
import type { ModelBounds } from './request.ts';
import type { Scheduler } from './scheduler.ts';

export interface ServerContext {
  engine: ServerEngine;
  preparer: Preparer;
  scheduler: Scheduler;
  /** `/v1/tokenize` requests in progress (bounded like the line for the model) */
  costing: { active: number };
  limits: ServerLimits;
  /** the checkpoint's own pixel bounds */
  modelBounds: ModelBounds;
  /** names a request's `model` may use; the first is the one listed */
  modelNames: readonly string[];
  /** aborted when a stopping server gives up on running answers */
  stopping: AbortSignal;
  /** this server's Prometheus registry and per-request figures (GET /metrics) */
  metrics: ServerMetrics;
  /** 503 unless the model is loaded and the server is not stopping */
  requireReady(): void;
}

export const SHUTTING_DOWN = () => new HttpError(503, 'the server is shutting down; retry on another instance or later', { code: 'shutting_down', headers: { Connection: 'close' } });

export function readinessCheck(engine: ServerEngine, stopping: () => boolean): () => void {
  return () => {
    if (stopping()) throw SHUTTING_DOWN();
    const state = engine.state();
    if (state === 'ready') return;
    if (state === 'loading' || state === 'restarting') {
      const what = state === 'loading' ? 'the model is still loading' : 'the inference worker is being restarted';
      throw new HttpError(503, `${what}; retry shortly`, { code: state === 'loading' ? 'model_loading' : 'model_restarting', headers: { 'Retry-After': '5' } });
    }
    throw new HttpError(503, `the model failed to load: ${engine.failure()?.message ?? 'unknown error'}`, { code: 'model_load_failed' });
  };
}
