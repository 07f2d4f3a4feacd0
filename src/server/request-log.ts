/**
 * One log line per request: method, path, status, prompt and completion tokens, milliseconds.
 * A streamed answer is logged when its stream ends, with the tokens it produced.
 */
import type { Context, MiddlewareHandler } from 'hono';

interface Entry {
  t0: number;
  promptTokens?: number;
  completionTokens?: number;
  /** the handler logs this request itself, later (streams) */
  deferred?: boolean;
  status?: number;
  line?: () => void;
}

const entries = new WeakMap<Request, Entry>();

export function requestLogger(log: (line: string) => void): MiddlewareHandler {
  return async (c, next) => {
    const e: Entry = { t0: performance.now() };
    entries.set(c.req.raw, e);
    const line = () => {
      const tokens = e.promptTokens === undefined ? '' : ` prompt_tokens=${e.promptTokens} completion_tokens=${e.completionTokens ?? 0}`;
      log(`${c.req.method} ${c.req.path} ${e.status ?? c.res.status}${tokens} ${Math.round(performance.now() - e.t0)}ms`);
    };
    e.line = line;
    try {
      await next();
    } finally {
      if (!e.deferred) line();
    }
  };
}

/** Token counts for this request's log line. */
export function requestUsage(c: Context, u: { promptTokens?: number; completionTokens?: number }): void {
  const e = entries.get(c.req.raw);
  if (!e) return;
  if (u.promptTokens !== undefined) e.promptTokens = u.promptTokens;
  if (u.completionTokens !== undefined) e.completionTokens = u.completionTokens;
}

/** Takes over this request's log line; call the returned function when the stream has ended. */
export function deferRequestLog(c: Context): (u: { completionTokens?: number }) => void {
  const e = entries.get(c.req.raw);
  if (!e) return () => {};
  e.deferred = true;
  e.status = 200;
  return (u) => {
    requestUsage(c, u);
    e.line?.();
  };
}
