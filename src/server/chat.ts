/**
 * POST /v1/chat/completions: validate, wait for the model, run, and answer as OpenAI does, either
 * as one JSON object or as server-sent events (`chat.completion.chunk` objects, an optional usage
 * chunk, then `data: [DONE]`). The prompt is prepared (media fetched and decoded) before any
 * byte of the answer is sent, so bad media gets a proper status code even when streaming. The
 * request is prepared on a preparation worker before it waits for the model, so a slow download
 * or a large image holds neither the event loop nor the model.
 *
 * Extensions: `message.reasoning_content` (Thinking models), and `message.grounding` — boxes and
 * points the answer names, mapped to pixels of the first image (in the last chunk when streaming).
 */
import { randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import type { ChatResult } from '../api/qwen3vl.ts';
import { groundingFor, OutputStreamParser } from '../generate/parse/output.ts';
import type { ParsedToolCall } from '../generate/parse/tool-calls.ts';
import { chatCompletion, finishReason, groundingJson, usageOf } from './completion.ts';
import { SHUTTING_DOWN, type ServerContext } from './context.ts';
import type { PromptInfo } from './engine.ts';
import { HttpError, toHttpError } from './errors.ts';
import type { RequestRecord } from './metrics.ts';
import { prepOptions } from './prep-options.ts';
import { deferRequestLog, requestUsage } from './request-log.ts';
import { parseChatRequest, type ChatRequest } from './request.ts';

export async function handleChat(c: Context, ctx: ServerContext, body: unknown): Promise<Response> {
  const rec = ctx.metrics.startRequest();
  try {
    return await runChat(c, ctx, body, rec);
  } catch (e) {
    const status = toHttpError(e).status;
    rec.end(status === 499 ? 'aborted' : 'error', status);
    throw e;
  }
}

async function runChat(c: Context, ctx: ServerContext, body: unknown, rec: RequestRecord): Promise<Response> {
  const req = parseChatRequest(body, ctx.limits, ctx.modelNames, ctx.modelBounds);
  ctx.requireReady();
  const clientGone = c.req.raw.signal;
  // Admitted before any work; prepared (fetch, decode, tokenize) before it waits for the model,
  // so the model is held only while it computes.
  const admission = ctx.scheduler.admit();
  let handedOver = false;
  try {
    const prepared = await ctx.preparer.prepare(req.messages, prepOptions(req, ctx.engine.info()?.maxPositions), clientGone);
    const release = await admission.model(clientGone);
    try {
      // the inference worker may have died or the server started stopping while this one waited
      ctx.requireReady();
    } catch (e) {
      release();
      throw e;
    }
    const ac = new AbortController();
    const onGone = () => ac.abort();
    clientGone.addEventListener('abort', onGone, { once: true });
    ctx.stopping.addEventListener('abort', onGone, { once: true });
    if (clientGone.aborted || ctx.stopping.aborted) ac.abort();
    let s;
    try {
      s = ctx.engine.streamPrepared(prepared, { ...req.options, signal: ac.signal });
    } catch (e) {
      release();
      throw e;
    }
    handedOver = true;
    // The slot is free when the engine is: after the answer, an error, or an acknowledged abort.
    s.result
      .then(release, release)
      .finally(() => {
        clientGone.removeEventListener('abort', onGone);
        ctx.stopping.removeEventListener('abort', onGone);
        admission.done();
      });
    let prompt: PromptInfo;
    try {
      prompt = await s.prompt;
    } catch (e) {
      // The prompt failed: nothing will run, so the slot is free now, even if the engine settles
      // its result later (the worker serializes requests anyway).
      ac.abort();
      release();
      throw e;
    }
    requestUsage(c, { promptTokens: prompt.promptTokens });
    const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
    const created = Math.floor(Date.now() / 1000);
    if (!req.stream) {
      for await (const _ of s) {
        // the result has the text
        rec.firstToken();
      }
      const r = await s.result;
      requestUsage(c, { completionTokens: r.usage.completionTokens });
      rec.end(r.finishReason, 200, r.usage);
      return c.json(chatCompletion(req, r, id, created));
    }
    const finish = deferRequestLog(c);
    return streamSSE(c, (stream) =>
      streamChat(stream, s, { id, created, req, prompt, abort: () => ac.abort(), stopping: ctx.stopping, rec }).then((completionTokens) => finish({ completionTokens })),
    );
  } catch (e) {
    if (ctx.stopping.aborted || (e instanceof HttpError && e.code === 'shutting_down')) throw SHUTTING_DOWN();
    throw e;
  } finally {
    if (!handedOver) admission.done();
  }
}

interface StreamParams {
  id: string;
  created: number;
  req: ChatRequest;
  prompt: PromptInfo;
  abort: () => void;
  /** aborted when the server stops: the stream then ends with an error event and [DONE] */
  stopping: AbortSignal;
  rec: RequestRecord;
}

/** Streams the answer as chunks; resolves to the completion tokens (0 when it failed). */
async function streamChat(stream: SSEStreamingApi, s: AsyncIterable<string> & { result: Promise<ChatResult> }, p: StreamParams): Promise<number> {
  stream.onAbort(p.abort);
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
    id: p.id,
    object: 'chat.completion.chunk',
    created: p.created,
    model: p.req.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  const send = async (data: unknown) => {
    if (stream.aborted || stream.closed) return;
    try {
      await stream.writeSSE({ data: typeof data === 'string' ? data : JSON.stringify(data) });
    } catch {
      // the client left; the abort handler stops generation
    }
  };
  const parser = new OutputStreamParser({ startsInThink: p.prompt.startsInThink, toolCalls: p.req.toolCalls });
  let content = '';
  let calls = 0;
  let completionTokens = 0;
  const emit = async (events: ReturnType<OutputStreamParser['push']>) => {
    for (const e of events) {
      if (e.type === 'reasoning') await send(chunk({ reasoning_content: e.text }));
      else if (e.type === 'content') {
        content += e.text;
        await send(chunk({ content: e.text }));
      } else await send(chunk({ tool_calls: [toolCallDelta(e.call, calls++)] }));
    }
  };
  await send(chunk({ role: 'assistant', content: '' }));
  try {
    for await (const delta of s) {
      p.rec.firstToken();
      await emit(parser.push(delta));
    }
    await emit(parser.finish());
    const r = await s.result;
    const final: Record<string, unknown> = {};
    const g = groundingFor(content, p.prompt.media);
    if (g) final.grounding = groundingJson(g);
    await send(chunk(final, finishReason(r, calls)));
    if (p.req.includeUsage) await send({ id: p.id, object: 'chat.completion.chunk', created: p.created, model: p.req.model, choices: [], usage: usageOf(r) });
    completionTokens = r.usage.completionTokens;
    p.rec.end(r.finishReason, 200, r.usage);
  } catch (e) {
    // the headers said 200; the metrics count the status the failure would have had
    if (stream.aborted) {
      p.rec.end('aborted', 499);
      return 0;
    }
    const err = p.stopping.aborted ? SHUTTING_DOWN() : toHttpError(e);
    p.rec.end(err.status === 499 ? 'aborted' : 'error', err.status);
    await send(err.body());
  }
  await send('[DONE]');
  return completionTokens;
}

function toolCallDelta(call: ParsedToolCall, index: number) {
  return { index, id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } };
}
