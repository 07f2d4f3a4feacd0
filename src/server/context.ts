/** What every route shares: the engine, the line in front of it, the limits and the served names. */
import type { PromptParts } from '../api/prompt.ts';
import type { ServerEngine } from './engine.ts';
import { HttpError } from './errors.ts';
import type { ServerLimits } from './limits.ts';
import type { Scheduler } from './scheduler.ts';

export interface ServerContext {
  engine: ServerEngine;
  scheduler: Scheduler;
  limits: ServerLimits;
  /** names a request's `model` may use; the first is the one listed */
  modelNames: readonly string[];
  /** tokenizer, template and processor config for the cost preview (loaded on first use) */
  promptParts: () => Promise<PromptParts>;
  /** 503 unless the model is loaded */
  requireReady(): void;
}

export function readinessCheck(engine: ServerEngine): () => void {
  return () => {
    const state = engine.state();
    if (state === 'ready') return;
    if (state === 'loading') {
      throw new HttpError(503, 'the model is still loading; retry shortly', { code: 'model_loading', headers: { 'Retry-After': '5' } });
    }
    throw new HttpError(503, `the model failed to load: ${engine.failure()?.message ?? 'unknown error'}`, { code: 'model_load_failed' });
  };
}
