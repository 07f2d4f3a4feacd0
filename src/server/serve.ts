/**
 * Starts qvl's OpenAI-compatible server: listens at once (answering 503 until the model is
 * loaded), prepares requests on preparation workers, runs the model on an inference worker, and
 * stops gracefully.
 */
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { PrepPool } from '../api/prep-pool.ts';
export { promptPartsLoader } from '../api/prompt-parts.ts';
import { loadProcessorConfig } from '../processor/index.ts';
import { createApp } from './app.ts';
import { mountBatchRoutes, type BatchContext } from './batch-routes.ts';
import { readinessCheck, SHUTTING_DOWN, type ServerContext } from './context.ts';
import type { Preparer, ServerEngine } from './engine.ts';
import { resolveLimits, type ServerLimits } from './limits.ts';
import { ServerMetrics } from './metrics.ts';
import { Scheduler } from './scheduler.ts';

export interface ServeOptions {
  engine: ServerEngine;
  /** the model folder (tokenizer, template and processor config for preparing requests) */
  modelDir: string;
  /** names clients use for `model`; the first is listed by /v1/models */
  modelNames: string[];
  host?: string;
  /** 0 picks a free port */
  port?: number;
  limits?: Partial<ServerLimits>;
  log?: (line: string) => void;
  /** prepares requests (default: preparation workers on `modelDir`) */
  preparer?: Preparer;
  /** the OpenAI Batch routes (/v1/files, /v1/batches) on a Redis queue; closed with the server */
  batch?: BatchContext;
}

export interface RunningServer {
  url: string;
  port: number;
  context: ServerContext;
  /**
   * Stops: no new connections or requests (503), requests not yet at the model are refused,
   * running answers get `shutdownGraceSeconds` to finish and then end with an error (an error
   * event and `[DONE]` when streaming); then the engine and the preparation workers stop.
   */
  close(): Promise<void>;
}

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const limits = resolveLimits(o.limits);
  const processor = loadProcessorConfig(o.modelDir);
  const stopping = new AbortController();
  let draining = false;
  const preparer = o.preparer ?? new PrepPool(o.modelDir, { workers: limits.prepWorkers });
  const scheduler = new Scheduler(limits.maxQueue, limits.parallel);
  const context: ServerContext = {
    engine: o.engine,
    preparer,
    scheduler,
    costing: { active: 0 },
    limits,
    modelBounds: { maxImagePixels: processor.image.maxPixels, maxVideoPixels: processor.video.maxPixels },
    modelNames: o.modelNames,
    stopping: stopping.signal,
    // per server, never prom-client's global registry: one process may run several servers
    metrics: new ServerMetrics({ engine: o.engine, scheduler }),
    requireReady: readinessCheck(o.engine, () => draining),
  };
  const app = createApp(context, o.log, () => draining);
  if (o.batch) mountBatchRoutes(app, context, o.batch);
  const host = o.host ?? '127.0.0.1';
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: o.port ?? 8000 }, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  const connections = server as unknown as { closeAllConnections?: () => void; closeIdleConnections?: () => void };
  let closing: Promise<void> | undefined;
  const close = async () => {
    draining = true;
    // Requests waiting for the model get a 503 now; running ones may finish within the grace period.
    context.scheduler.close(SHUTTING_DOWN());
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    connections.closeIdleConnections?.();
    const deadline = Date.now() + limits.shutdownGraceSeconds * 1000;
    while (context.scheduler.active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (context.scheduler.active > 0) {
      stopping.abort();
      // streams write their error event and [DONE] once the engine acknowledges the abort
      const flushBy = Date.now() + 5000;
      while (context.scheduler.active > 0 && Date.now() < flushBy) await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 50));
    connections.closeAllConnections?.();
    await closed;
    await Promise.all([o.engine.close(), preparer.close(), o.batch?.service.close()]);
  };
  return {
    url: `http://${shown}:${port}`,
    port,
    context,
    close: () => (closing ??= close()),
  };
}
