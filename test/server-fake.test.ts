/**
 * Server behaviour that a random-weight model cannot show by itself (tool calls, reasoning,
 * grounding, loading, error mapping): the server runs over a scripted engine that answers
 * canned model output, so the parsing and the response shapes are checked exactly.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { ChatResult } from '../src/api/qwen3vl.ts';
import type { PromptInfo, WorkerCallOptions, WorkerChatStream } from '../src/api/worker-host.ts';
import { QvlError, type QvlErrorCode } from '../src/errors.ts';
import { parseOutput } from '../src/generate/parse/output.ts';
import type { PromptCost } from '../src/api/prompt-cost.ts';
import type { PreparedPrompt } from '../src/api/prompt.ts';
import type { EngineState, Preparer, ServerEngine } from '../src/server/engine.ts';
import { STATUS_OF, toHttpError } from '../src/server/errors.ts';
import { startServer, type RunningServer } from '../src/server/serve.ts';
import path from 'node:path';
import { readSse } from './server-util.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');

interface Script {
  text: string;
  startsInThink?: boolean;
  media?: PromptInfo['media'];
  /** fail before the first token (as media errors do) */
  failPrompt?: QvlError;
  /** fail after this many deltas */
  failAfter?: { deltas: number; error: QvlError };
}

/** A scripted model that also plays the preparer: it records what it was asked and prepares nothing. */
class ScriptedEngine implements ServerEngine, Preparer {
  current: EngineState = 'ready';
  script: Script = { text: 'ok' };
  seen: { messages: unknown; opts: WorkerCallOptions }[] = [];
  private lastMessages: unknown;
  async prepare(messages: unknown): Promise<PreparedPrompt> {
    this.lastMessages = messages;
    return { text: '', ids: new Int32Array(10), imageGrids: [], videoGrids: [], media: [] };
  }
  async cost(): Promise<PromptCost> {
    return { promptTokens: 10, mediaTokens: 0, items: [] };
  }
  state() {
    return this.current;
  }
  failure() {
    return this.current === 'failed' ? new QvlError('CONFIG_INVALID', 'config.json is broken') : undefined;
  }
  info() {
    return undefined;
  }
  async close() {}
  streamPrepared(_prepared: PreparedPrompt, opts: WorkerCallOptions): WorkerChatStream {
    this.seen.push({ messages: this.lastMessages, opts });
    const sc = this.script;
    const media = sc.media ?? [];
    const prompt = sc.failPrompt ? Promise.reject(sc.failPrompt) : Promise.resolve({ promptTokens: 10, media, startsInThink: sc.startsInThink ?? false });
    // the text in small pieces, as a model streams it
    const pieces = sc.text.match(/[\s\S]{1,3}/g) ?? [];
    let resolve!: (r: ChatResult) => void;
    let reject!: (e: unknown) => void;
    const result = new Promise<ChatResult>((res, rej) => ((resolve = res), (reject = rej)));
    prompt.catch(() => {});
    result.catch(() => {});
    // like the worker: a request that fails before its first token settles `result` at once
    if (sc.failPrompt) reject(sc.failPrompt);
    async function* run(): AsyncGenerator<string> {
      try {
        await prompt;
        for (const [i, p] of pieces.entries()) {
          if (sc.failAfter && i === sc.failAfter.deltas) throw sc.failAfter.error;
          if (opts.signal?.aborted) throw new QvlError('ABORTED', 'cancelled');
          yield p;
        }
        resolve({
          text: sc.text,
          tokenIds: [],
          finishReason: 'stop',
          usage: { promptTokens: 10, completionTokens: pieces.length, totalTokens: 10 + pieces.length },
          timings: { prefillMs: 0, decodeMs: 0 },
          media,
          // parsed as the model's thread parses it (the server uses this, never parsing again)
          output: parseOutput(sc.text, { startsInThink: sc.startsInThink ?? false, toolCalls: (opts.tools?.length ?? 0) > 0, media }),
        });
      } catch (e) {
        reject(e);
        throw e;
      }
    }
    const it = run();
    return { [Symbol.asyncIterator]: () => it, prompt, result };
  }
}

const engine = new ScriptedEngine();
let server: RunningServer;
let client: OpenAI;

before(async () => {
  server = await startServer({ engine, preparer: engine, modelDir: TINY, modelNames: ['m'], port: 0, limits: { maxImagePixels: 512 * 512 } });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(() => server?.close());

const TOOLS: OpenAI.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } },
];
const CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';
const user = (content: string) => [{ role: 'user' as const, content }];

test('503 while the model loads (with Retry-After) and after it failed to load', async () => {
  engine.current = 'loading';
  let h = await fetch(`${server.url}/health`);
  assert.equal(h.status, 503);
  assert.equal(((await h.json()) as { status: string }).status, 'loading');
  await assert.rejects(client.chat.completions.create({ model: 'm', messages: user('hi') }), (e: InstanceType<typeof OpenAI.APIError>) => {
    assert.equal(e.status, 503);
    assert.equal(e.headers?.get('retry-after'), '5');
    return e.code === 'model_loading';
  });
  engine.current = 'failed';
  h = await fetch(`${server.url}/health`);
  assert.equal(h.status, 503);
  assert.match(((await h.json()) as { error: string }).error, /config.json is broken/);
  engine.current = 'ready';
});

test('tool calls, non-streaming: parsed into message.tool_calls, finish_reason "tool_calls"', async () => {
  engine.script = { text: `Let me check.\n${CALL}` };
  const r = await client.chat.completions.create({ model: 'm', messages: user('Weather in Paris?'), tools: TOOLS });
  const msg = r.choices[0]!.message;
  assert.equal(r.choices[0]!.finish_reason, 'tool_calls');
  assert.equal(msg.content, 'Let me check.');
  assert.equal(msg.tool_calls!.length, 1);
  const call = msg.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_/);
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
  // the tools reached the engine (to be rendered into the prompt), no constraint for "auto"
  const seen = engine.seen.at(-1)!.opts;
  assert.deepEqual(seen.tools, TOOLS);
  assert.equal(seen.constraint, undefined);
  // only a call: content is null, as OpenAI sends it
  engine.script = { text: CALL };
  const only = await client.chat.completions.create({ model: 'm', messages: user('x'), tools: TOOLS });
  assert.equal(only.choices[0]!.message.content, null);
});

test('tool calls, streaming: OpenAI delta chunks that the openai client assembles; never a half call as content', async () => {
  engine.script = { text: `Checking.\n${CALL}\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>` };
  const stream = await client.chat.completions.create({ model: 'm', messages: user('x'), tools: TOOLS, stream: true });
  let content = '';
  const calls: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
  let finish: string | null = null;
  for await (const ch of stream) {
    const c = ch.choices[0];
    if (!c) continue;
    content += c.delta.content ?? '';
    calls.push(...(c.delta.tool_calls ?? []));
    finish = c.finish_reason ?? finish;
  }
  assert.equal(content, 'Checking.');
  assert.deepEqual(calls.map((c) => [c.index, c.function?.name]), [[0, 'get_weather'], [1, 'get_time']]);
  assert.equal(finish, 'tool_calls');
  // the client's own stream helper accumulates the deltas into a message
  const runner = client.chat.completions.stream({ model: 'm', messages: user('x'), tools: TOOLS });
  const final = await runner.finalChatCompletion();
  const names = final.choices[0]!.message.tool_calls!.map((c) => (c as OpenAI.ChatCompletionMessageFunctionToolCall).function.name);
  assert.deepEqual(names, ['get_weather', 'get_time']);
});

test('a malformed tool call stays content; tool_choice "none" keeps tools out of the prompt and the parser', async () => {
  engine.script = { text: '<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>' };
  let r = await client.chat.completions.create({ model: 'm', messages: user('x'), tools: TOOLS });
  assert.equal(r.choices[0]!.message.content, engine.script.text);
  assert.equal(r.choices[0]!.finish_reason, 'stop');
  engine.script = { text: CALL };
  r = await client.chat.completions.create({ model: 'm', messages: user('x'), tools: TOOLS, tool_choice: 'none' });
  assert.equal(r.choices[0]!.message.content, CALL);
  assert.equal(engine.seen.at(-1)!.opts.tools, undefined);
});

test('tool_choice "required" and a named function become a grammar constraint; unknown names are refused', async () => {
  engine.script = { text: CALL };
  await client.chat.completions.create({ model: 'm', messages: user('x'), tools: TOOLS, tool_choice: 'required' });
  assert.deepEqual(engine.seen.at(-1)!.opts.constraint, { kind: 'tool_call', tools: TOOLS.map((t) => ({ name: (t as OpenAI.ChatCompletionFunctionTool).function.name, parameters: (t as OpenAI.ChatCompletionFunctionTool).function.parameters })) });
  await client.chat.completions.create({ model: 'm', messages: user('x'), tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_time' } } });
  assert.deepEqual(engine.seen.at(-1)!.opts.constraint, { kind: 'tool_call', tools: [{ name: 'get_time', parameters: { type: 'object', properties: {} } }] });
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: user('x'), tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }),
    (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === 'tool_choice' && /no tool is named "nope"/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: user('x'), tool_choice: 'required' }),
    (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && /needs tools/.test(e.message),
  );
});

test('Thinking models: reasoning_content apart from the answer, streamed as reasoning deltas first', async () => {
  engine.script = { text: 'The user greets me.\n</think>\n\nHello!', startsInThink: true };
  const r = await client.chat.completions.create({ model: 'm', messages: user('hi') });
  const msg = r.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string };
  assert.equal(msg.reasoning_content, 'The user greets me.');
  assert.equal(msg.content, 'Hello!');
  const events = (await readSse(await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: user('hi'), stream: true }) })))
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d).choices[0]?.delta ?? {});
  const reasoning = events.map((d) => d.reasoning_content ?? '').join('');
  const content = events.map((d) => d.content ?? '').join('');
  assert.equal(reasoning, 'The user greets me.');
  assert.equal(content, 'Hello!');
  const lastReasoning = events.findLastIndex((d) => d.reasoning_content);
  const firstContent = events.findIndex((d) => d.content);
  assert.ok(lastReasoning < firstContent);
});

test('grounding: boxes in original-image pixels as an extension field (message, or the last chunk when streaming)', async () => {
  engine.script = {
    text: '```json\n[{"bbox_2d": [100, 200, 500, 800], "label": "cat"}]\n```',
    media: [{ kind: 'image', width: 640, height: 480, resizedWidth: 640, resizedHeight: 480, tokens: 300 }],
  };
  const r = await client.chat.completions.create({ model: 'm', messages: user('Find the cat.') });
  const g = (r.choices[0]!.message as unknown as { grounding: { image: number; width: number; boxes: { label: string; bbox_2d: number[]; box: number[] }[] } }).grounding;
  assert.deepEqual(g, { image: 0, width: 640, height: 480, boxes: [{ label: 'cat', bbox_2d: [100, 200, 500, 800], box: [64, 96, 320, 384] }], points: [] });
  const events = (await readSse(await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: user('x'), stream: true }) })))
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d));
  const last = events.at(-1).choices[0];
  assert.equal(last.finish_reason, 'stop');
  assert.deepEqual(last.delta.grounding, g);
  // no grounding field when the answer has none
  engine.script = { text: 'just words' };
  const plain = await client.chat.completions.create({ model: 'm', messages: user('x') });
  assert.equal('grounding' in plain.choices[0]!.message, false);
});

test('errors map to statuses: before the answer as HTTP errors (also when streaming), after it as an SSE error event', async () => {
  const cases: [QvlErrorCode, number][] = [
    ['IMAGE_DECODE', 400],
    ['MEDIA_TOO_LARGE', 413],
    ['INTERNAL', 500],
  ];
  for (const [code, status] of cases) {
    engine.script = { text: 'x', failPrompt: new QvlError(code, `failure ${code}`) };
    for (const stream of [false, true]) {
      const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: user('x'), stream }) });
      assert.equal(res.status, status, `${code} stream=${stream}`);
      const body = (await res.json()) as { error: { message: string; code: string; type: string } };
      assert.equal(body.error.message, `failure ${code}`);
      assert.equal(body.error.code, code.toLowerCase());
      assert.equal(body.error.type, status >= 500 ? 'server_error' : 'invalid_request_error');
    }
  }
  engine.script = { text: 'abcdefghijkl', failAfter: { deltas: 2, error: new QvlError('NATIVE_ERROR', 'kernel failed') } };
  const stream = await client.chat.completions.create({ model: 'm', messages: user('x'), stream: true });
  let got = '';
  await assert.rejects(
    (async () => {
      for await (const ch of stream) got += ch.choices[0]?.delta.content ?? '';
    })(),
    (e: Error) => /kernel failed/.test(e.message),
  );
  assert.equal(got, 'abcdef');
});

test('every QvlError code has a status; unknown errors are 500', () => {
  for (const [code, status] of Object.entries(STATUS_OF)) assert.ok([400, 413, 429, 499, 500, 503].includes(status), code);
  assert.equal(toHttpError(new Error('boom')).status, 500);
  assert.equal(toHttpError(new QvlError('CONTEXT_TOO_LONG', 'x')).code, 'context_length_exceeded');
});

test('request fields reach the engine as library options', async () => {
  engine.script = { text: 'ok' };
  await client.chat.completions.create({
    model: 'm',
    messages: user('x'),
    temperature: 0.3,
    top_p: 0.9,
    seed: 7,
    stop: ['END'],
    max_tokens: 50,
    max_completion_tokens: 20,
    presence_penalty: 1.5,
    frequency_penalty: 0.5,
    // vLLM-style extras
    top_k: -1,
    min_p: 0.05,
    repetition_penalty: 1.1,
    chat_template_kwargs: { enable_thinking: false },
    fps: 1,
    max_frames: 8,
  } as never);
  const o = engine.seen.at(-1)!.opts;
  assert.deepEqual(
    [o.temperature, o.topP, o.seed, o.stop, o.maxNewTokens, o.presencePenalty, o.frequencyPenalty, o.topK, o.minP, o.repetitionPenalty, o.templateKwargs, o.fps, o.maxFrames],
    [0.3, 0.9, 7, ['END'], 20, 1.5, 0.5, 0, 0.05, 1.1, { enable_thinking: false }, 1, 8],
  );
  // defaults: server max tokens, server media policy (no local files, no private addresses)
  await client.chat.completions.create({ model: 'm', messages: user('x') });
  const d = engine.seen.at(-1)!.opts;
  assert.equal(d.maxNewTokens, 2048);
  assert.deepEqual([d.media?.allowedLocalDirs, d.media?.allowPrivateNetwork], [[], false]);
});

test('--max-pixels: images get the cap as their budget; asking for more is refused', async () => {
  engine.script = { text: 'ok' };
  const img = { type: 'image_url', image_url: { url: 'http://example.com/a.png' } };
  await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: [img] }] } as never);
  const parts = (engine.seen.at(-1)!.messages as { content: { max_pixels?: number }[] }[])[0]!.content;
  assert.equal(parts[0]!.max_pixels, 512 * 512);
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: [{ ...img, max_pixels: 1024 * 1024 }] }] } as never),
    (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === 'messages[0].content[0].max_pixels',
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: [img] }], max_pixels: 1024 * 1024 } as never),
    (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === 'max_pixels',
  );
});

test('unknown routes and models answer in the OpenAI error shape', async () => {
  const r = await fetch(`${server.url}/v1/completions`, { method: 'POST' });
  assert.equal(r.status, 404);
  assert.deepEqual(Object.keys(((await r.json()) as { error: object }).error).sort(), ['code', 'message', 'param', 'type']);
  const m = await fetch(`${server.url}/v1/models/other`);
  assert.equal(m.status, 404);
});
