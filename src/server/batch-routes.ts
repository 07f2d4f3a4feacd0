/**
 * OpenAI's Batch API on `qvl serve --redis URL`, enough for the official clients'
 * `files.create / retrieve / content` and `batches.create / retrieve / cancel / list`:
 *
 *   POST /v1/files                    upload an input file (multipart: file, purpose "batch")
 *   GET  /v1/files/{id}               the file object (uploads, and a finished batch's output and error files)
 *   GET  /v1/files/{id}/content       its bytes
 *   POST /v1/batches                  {input_file_id, endpoint, completion_window, metadata}: validate every line, enqueue
 *   GET  /v1/batches/{id}             the batch object with request_counts
 *   POST /v1/batches/{id}/cancel
 *   GET  /v1/batches                  newest first (limit, after)
 *
 * Lines are checked with this server's limits and model names, exactly as its chat route checks
 * a request; the work is done by `qvl worker` processes on the same queue.
 */
import { Readable } from 'node:stream';
import type { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { z } from 'zod';
import { BATCH_ENDPOINT } from '../batch/format.ts';
import type { BatchService } from '../batch/service.ts';
import { QvlError } from '../errors.ts';
import type { ServerContext } from './context.ts';
import { HttpError, toHttpError } from './errors.ts';
import { parseJsonBody } from './json-body.ts';
import { zodToHttp } from './request.ts';

export interface BatchContext {
  service: BatchService;
  /** largest upload (default 200 MiB, OpenAI's limit for batch input files) */
  maxFileBytes?: number;
}

const CreateBatch = z.object({
  input_file_id: z.string({ error: 'input_file_id is required (upload the file with POST /v1/files, purpose "batch")' }).min(1),
  endpoint: z.literal(BATCH_ENDPOINT, { error: `endpoint: only "${BATCH_ENDPOINT}" is supported` }),
  completion_window: z.literal('24h', { error: 'completion_window: only "24h" is supported' }),
  metadata: z.record(z.string(), z.string()).nullish(),
});

/** Batch errors as HTTP: unknown ids are 404, an unreachable Redis is 503, a bad line names itself. */
function asHttp(e: unknown, fileId?: string): HttpError {
  if (e instanceof QvlError) {
    if (e.detail.notFound) return new HttpError(404, e.message, { code: 'not_found', param: typeof e.detail.param === 'string' ? e.detail.param : undefined });
    if (e.detail.unavailable) return new HttpError(503, e.message, { code: 'queue_unavailable', headers: { 'Retry-After': '5' } });
    if (typeof e.detail.line === 'number') {
      const param = typeof e.detail.param === 'string' ? `line ${e.detail.line}: ${e.detail.param}` : `line ${e.detail.line}`;
      // refused in the first pass, before the batch existed, unless the error names the batch
      const after = e.detail.batch === undefined ? '; nothing was enqueued' : '';
      return new HttpError(400, `input file ${fileId}: ${e.message}${after}`, { code: 'invalid_batch_line', param });
    }
  }
  return toHttpError(e);
}

async function guarded<T>(f: () => Promise<T>, fileId?: string): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw asHttp(e, fileId);
  }
}

function bufferLines(buf: Buffer) {
  return async function* () {
    const text = buf.toString('utf8');
    let start = 0;
    while (start <= text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const line = text.slice(start, end);
      yield line.endsWith('\r') ? line.slice(0, -1) : line;
      start = end + 1;
    }
  };
}

const fileNotFound = (id: string) => new HttpError(404, `no file "${id}"`, { code: 'not_found', param: 'file_id' });

export function mountBatchRoutes(app: Hono, ctx: ServerContext, batch: BatchContext): void {
  const s = batch.service;
  const maxFileBytes = batch.maxFileBytes ?? 200 * 1024 * 1024;
  const uploadLimit = bodyLimit({
    maxSize: maxFileBytes,
    onError: () => {
      throw new HttpError(413, `the file is over the limit of ${maxFileBytes} bytes`, { code: 'body_too_large', headers: { Connection: 'close' } });
    },
  });
  const jsonLimit = bodyLimit({
    maxSize: 1024 * 1024,
    onError: () => {
      throw new HttpError(413, 'the request body is over the limit of 1 MiB', { code: 'body_too_large', headers: { Connection: 'close' } });
    },
  });

  app.post('/v1/files', uploadLimit, async (c) => {
    const form = await c.req.parseBody().catch(() => {
      throw new HttpError(400, 'expected a multipart/form-data body with "file" and "purpose"', { code: 'invalid_value' });
    });
    if (form.purpose !== 'batch') throw new HttpError(400, `purpose: only "batch" files are accepted, got ${JSON.stringify(form.purpose ?? null)}`, { code: 'invalid_value', param: 'purpose' });
    const file = form.file;
    if (!(file instanceof File)) throw new HttpError(400, 'file: expected a file part named "file"', { code: 'invalid_value', param: 'file' });
    const content = Buffer.from(await file.arrayBuffer());
    return c.json(await guarded(() => s.uploadFile(file.name || 'upload.jsonl', 'batch', content)));
  });

  app.get('/v1/files/:id', async (c) => {
    const f = await guarded(() => s.file(c.req.param('id')));
    if (!f) throw fileNotFound(c.req.param('id'));
    return c.json(f.record);
  });

  app.get('/v1/files/:id/content', async (c) => {
    const f = await guarded(() => s.file(c.req.param('id')));
    if (!f) throw fileNotFound(c.req.param('id'));
    const body = Readable.toWeb(Readable.from(f.content())) as ReadableStream;
    return c.body(body, 200, { 'Content-Type': 'application/octet-stream' });
  });

  app.post('/v1/batches', jsonLimit, async (c) => {
    const parsed = CreateBatch.safeParse(parseJsonBody(await c.req.text()));
    if (!parsed.success) throw zodToHttp(parsed.error);
    const b = parsed.data;
    const content = await guarded(() => s.uploaded(b.input_file_id));
    if (!content) throw new HttpError(404, `no file "${b.input_file_id}"`, { code: 'not_found', param: 'input_file_id' });
    const created = await guarded(
      () =>
        s.submit(bufferLines(content), {
          rules: { limits: ctx.limits, modelNames: ctx.modelNames, modelBounds: ctx.modelBounds },
          inputFileId: b.input_file_id,
          completionWindow: b.completion_window,
          metadata: b.metadata ?? null,
        }),
      b.input_file_id,
    );
    return c.json(created);
  });

  app.get('/v1/batches/:id', async (c) => c.json(await guarded(() => s.retrieve(c.req.param('id')))));
  app.post('/v1/batches/:id/cancel', async (c) => c.json(await guarded(() => s.cancel(c.req.param('id')))));

  app.get('/v1/batches', async (c) => {
    const limit = Math.min(100, Math.max(1, Number(c.req.query('limit') ?? 20) || 20));
    const data = await guarded(() => s.list(limit + 1, c.req.query('after')));
    const page = data.slice(0, limit);
    return c.json({ object: 'list', data: page, first_id: page[0]?.id ?? null, last_id: page.at(-1)?.id ?? null, has_more: data.length > limit });
  });
}
