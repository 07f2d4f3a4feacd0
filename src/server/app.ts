/**
 * The HTTP application (Hono): OpenAI-compatible routes over a ServerEngine.
 *
 *   POST /v1/chat/completions   chat, JSON or SSE
 *   POST /v1/tokenize           prompt-token cost of a chat request, without running the model
 *   GET  /v1/models             the served model names
 *   GET  /health                200 when the model is loaded; 503 while loading, while the
 *                               inference worker is restarted, after a failure, or when stopping
 *   GET  /metrics               Prometheus text exposition (always answers, also while loading)
 */
import type { Context } from 'hono';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { handleChat } from './chat.ts';
import type { ServerContext } from './context.ts';
import { handleCost } from './cost.ts';
import { QvlError } from '../errors.ts';
import { HttpError, toHttpError } from './errors.ts';
import { parseJsonBody } from './json-body.ts';
import { requestLogger } from './request-log.ts';

function errorResponse(c: Context, e: HttpError): Response {
  for (const [k, v] of Object.entries(e.headers)) c.header(k, v);
  return c.json(e.body(), e.status as 400);
}

async function jsonBody(c: Context): Promise<unknown> {
  return parseJsonBody(await c.req.text());
}

export function createApp(ctx: ServerContext, log: (line: string) => void = () => {}, isStopping: () => boolean = () => false): Hono {
  const app = new Hono();
  app.use('/v1/*', requestLogger(log));
  const created = Math.floor(Date.now() / 1000);
  const limit = bodyLimit({
    maxSize: ctx.limits.maxBodyBytes,
    onError: () => {
      // The rest of the body is not read: the connection cannot carry another request.
      throw new HttpError(413, `the request body is over the limit of ${ctx.limits.maxBodyBytes} bytes`, { code: 'body_too_large', headers: { Connection: 'close' } });
    },
  });

  app.post('/v1/chat/completions', limit, async (c) => handleChat(c, ctx, await jsonBody(c)));
  app.post('/v1/tokenize', limit, async (c) => handleCost(c, ctx, await jsonBody(c)));

  const modelCard = (id: string) => ({ id, object: 'model', created, owned_by: 'qvl' });
  app.get('/v1/models', (c) => c.json({ object: 'list', data: ctx.modelNames.map(modelCard) }));
  app.get('/v1/models/:id{.+}', (c) => {
    const id = c.req.param('id');
    if (!ctx.modelNames.includes(id)) throw new HttpError(404, `the model "${id}" does not exist`, { code: 'model_not_found', param: 'model' });
    return c.json(modelCard(id));
  });

  app.get('/health', (c) => {
    const state = isStopping() ? 'stopping' : ctx.engine.state();
    const body: Record<string, unknown> = {
      status: state === 'ready' ? 'ok' : state,
      model: ctx.modelNames[0],
      queue: {
        running: ctx.scheduler.running,
        waiting: ctx.scheduler.queued,
        preparing: ctx.scheduler.preparing,
        limit: ctx.limits.maxQueue,
        tokenizing: ctx.costing.active,
      },
    };
    const info = ctx.engine.info();
    if (info) Object.assign(body, { backend: info.backend, isa: info.isa ?? null, threads: info.threads ?? null, weights: info.weights, kv_type: info.kvType ?? null, context: info.context ?? null });
    if (state === 'failed') body.error = ctx.engine.failure()?.message;
    return c.json(body, state === 'ready' ? 200 : 503);
  });

  app.get('/metrics', async (c) => c.body(await ctx.metrics.text(), 200, { 'Content-Type': ctx.metrics.contentType }));

  app.notFound((c) => errorResponse(c, new HttpError(404, `no route for ${c.req.method} ${c.req.path}`, { code: 'not_found' })));
  app.onError((e, c) => {
    const h = toHttpError(e);
    if (h.status >= 500) {
      const workerStack = e instanceof QvlError && typeof e.detail.stack === 'string' ? `\n(in a worker) ${e.detail.stack}` : '';
      log(`error ${c.req.method} ${c.req.path}: ${(e as Error).stack ?? e}${workerStack}`);
    }
    return errorResponse(c, h);
  });
  return app;
}
