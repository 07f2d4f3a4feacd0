/**
 * An OpenAI chat-completions request body → what the engine runs: validated with zod, with
 * every refusal naming the field (`param`) and the rule. The messages themselves are checked by
 * the library's message normalization here, before the request waits for the model, so a bad
 * content part costs nothing.
 */
import { z } from 'zod';
import { findPdfParts, withoutPdfParts } from '../api/pdf-parts.ts';
import type { WorkerChatOptions } from '../api/worker-protocol.ts';
import { QvlError } from '../errors.ts';
import { compileJsonSchema } from '../generate/parse/json-schema.ts';
import type { ConstraintSpec } from '../generate/parse/json-constraint.ts';
import { normalizeMessages } from '../template/messages.ts';
import { HttpError } from './errors.ts';
import { CHARS_PER_CONTEXT_TOKEN, DEFAULT_CONTEXT_CAP, promptCharLimit, type ServerLimits } from './limits.ts';
import { MAX_JSON_DEPTH } from './json-body.ts';
import { deepArguments, promptChars, sanitizeMessages } from './request-messages.ts';

const positiveInt = z.number().int().positive();

const FunctionTool = z.object({
  type: z.literal('function', { error: 'only "function" tools are supported' }),
  function: z.object({
    name: z.string().min(1, 'a function needs a name'),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});

const ToolChoice = z.union([
  z.enum(['none', 'auto', 'required'], { error: 'expected "none", "auto", "required" or {"type": "function", "function": {"name": …}}' }),
  z.looseObject({ type: z.literal('function'), function: z.looseObject({ name: z.string() }) }),
]);

const ResponseFormat = z.discriminatedUnion(
  'type',
  [
    z.looseObject({ type: z.literal('text') }),
    z.looseObject({ type: z.literal('json_object') }),
    z.looseObject({
      type: z.literal('json_schema'),
      json_schema: z.looseObject({ name: z.string().optional(), schema: z.record(z.string(), z.unknown()).optional(), strict: z.boolean().nullish() }),
    }),
  ],
  { error: 'type must be "text", "json_object" or "json_schema"' },
);

export const ChatRequestSchema = z.object({
  model: z.string({ error: 'model is required (see GET /v1/models)' }),
  messages: z.array(z.unknown(), { error: 'messages must be an array' }).min(1, 'messages is empty'),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)], { error: 'stop must be a string or a list of at most 16 strings' }).nullish(),
  max_tokens: positiveInt.nullish(),
  max_completion_tokens: positiveInt.nullish(),
  n: z.number().int().nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().nullish(),
  tools: z.array(FunctionTool).nullish(),
  tool_choice: ToolChoice.nullish(),
  response_format: ResponseFormat.nullish(),
  // qvl extensions (also accepted inside image and video parts)
  min_pixels: positiveInt.nullish(),
  max_pixels: positiveInt.nullish(),
  fps: z.number().positive().nullish(),
  max_frames: positiveInt.nullish(),
  cap_pixels_per_frame: z.boolean().nullish(),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
});

export type ChatRequestBody = z.infer<typeof ChatRequestSchema>;

export interface ChatRequest {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  messages: unknown;
  options: WorkerChatOptions;
  /** parse `<tool_call>` blocks from the output */
  toolCalls: boolean;
}

/** The first zod issue as an HttpError naming the field. */
export function zodToHttp(error: z.ZodError): HttpError {
  const issue = error.issues[0]!;
  const param = issue.path.map(String).join('.') || undefined;
  let msg = issue.message;
  if (issue.code === 'invalid_union' && 'errors' in issue) {
    const inner = (issue.errors as z.core.$ZodIssue[][]).flat().find((i) => i.message && i.message !== 'Invalid input');
    if (inner) msg = inner.message;
  }
  return new HttpError(400, param ? `${param}: ${msg}` : msg, { param, code: 'invalid_value' });
}

function badParam(param: string, message: string): never {
  throw new HttpError(400, `${param}: ${message}`, { param, code: 'invalid_value' });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const jsonLength = (v: unknown): number => (v === undefined || v === null ? 0 : JSON.stringify(v).length);

const IMAGE_PARTS = new Set(['image', 'image_url', 'file', 'pdf']);
const VIDEO_PARTS = new Set(['video', 'video_url']);

function checkBudget(param: string, key: string, v: unknown, cap: number, what: string): void {
  if (typeof v === 'number' && v > cap) badParam(param, `${key} ${v} is over the server's limit of ${cap} pixels per ${what}`);
}

/**
 * Caps every image's and video's resize budget at the server's limits (the model's own maximum
 * unless configured lower): a part or request asking for more, as min_pixels or max_pixels, is
 * refused; image parts without their own max_pixels get the cap.
 */
function capPixels(messages: unknown[], caps: { image: number; video: number }, request: { min?: number; max?: number }): unknown[] {
  const both = Math.min(caps.image, caps.video);
  checkBudget('max_pixels', 'max_pixels', request.max, both, 'image');
  checkBudget('min_pixels', 'min_pixels', request.min, both, 'image');
  return messages.map((msg, m) => {
    if (!isRecord(msg) || !Array.isArray(msg.content)) return msg;
    const content = msg.content.map((part, p) => {
      if (!isRecord(part) || typeof part.type !== 'string') return part;
      const isImage = IMAGE_PARTS.has(part.type);
      if (!isImage && !VIDEO_PARTS.has(part.type)) return part;
      const cap = isImage ? caps.image : caps.video;
      for (const key of ['min_pixels', 'max_pixels']) checkBudget(`messages[${m}].content[${p}].${key}`, key, part[key], cap, isImage ? 'image' : 'video');
      if (!isImage || (part.max_pixels !== undefined && part.max_pixels !== null)) return part;
      return { ...part, max_pixels: Math.min(cap, request.max ?? cap) };
    });
    return { ...msg, content };
  });
}

/** Model-wide limits that come from the checkpoint rather than the server's flags. */
export interface ModelBounds {
  /** the processor's largest image and video budgets in pixels */
  maxImagePixels: number;
  maxVideoPixels: number;
}

/** Validates a request body against the server's limits. Throws HttpError. */
export function parseChatRequest(body: unknown, limits: ServerLimits, modelNames: readonly string[], model?: ModelBounds): ChatRequest {
  const parsed = ChatRequestSchema.safeParse(body);
  if (!parsed.success) throw zodToHttp(parsed.error);
  const b = parsed.data;
  if (!modelNames.includes(b.model)) {
    throw new HttpError(404, `the model "${b.model}" does not exist; this server serves ${modelNames.map((n) => `"${n}"`).join(', ')}`, {
      param: 'model',
      code: 'model_not_found',
    });
  }
  if (b.n !== undefined && b.n !== null && b.n !== 1) badParam('n', `only n = 1 is supported, got ${b.n}`);
  if (b.logprobs) badParam('logprobs', 'log probabilities are not supported');
  if (b.top_logprobs) badParam('top_logprobs', 'log probabilities are not supported');
  if (b.min_pixels != null && b.max_pixels != null && b.min_pixels > b.max_pixels) badParam('min_pixels', `${b.min_pixels} is larger than max_pixels (${b.max_pixels})`);

  let messages = sanitizeMessages(b.messages);
  // Tool-call arguments are JSON inside a string; they are parsed for the template, so their
  // nesting is bounded like the body's.
  const deep = deepArguments(messages, MAX_JSON_DEPTH);
  if (deep) badParam(deep, `the arguments nest arrays and objects more than ${MAX_JSON_DEPTH} levels deep`);
  // Text is bounded in characters before anything tokenizes it.
  const chars = promptChars(messages) + jsonLength(b.tools) + jsonLength(b.chat_template_kwargs);
  const charLimit = promptCharLimit(limits);
  if (chars > charLimit) {
    throw new HttpError(400, `the request holds ${chars} characters of text; this server accepts at most ${charLimit} (about ${CHARS_PER_CONTEXT_TOKEN} per token of context)`, {
      param: 'messages',
      code: 'context_length_exceeded',
    });
  }
  const imageCap = Math.min(limits.maxImagePixels ?? Infinity, model?.maxImagePixels ?? Infinity);
  const videoCap = Math.min(limits.maxVideoPixels ?? Infinity, model?.maxVideoPixels ?? Infinity);
  if (Number.isFinite(imageCap) || Number.isFinite(videoCap)) {
    messages = capPixels(messages, { image: imageCap, video: videoCap }, { min: b.min_pixels ?? undefined, max: b.max_pixels ?? undefined });
  }

  // Everything about the messages except the PDF documents is checked now.
  const chat = normalizeMessages(withoutPdfParts(messages));
  const items = chat.media.length + findPdfParts(messages).length;
  if (items > limits.maxImages) {
    throw new QvlError('MEDIA_TOO_LARGE', `the request holds ${items} images, videos and documents; the limit is ${limits.maxImages}`, {
      items,
      limit: limits.maxImages,
      param: 'messages',
    });
  }

  // Tools: offered to the model (rendered into the system prompt) unless tool_choice is "none".
  const tools = b.tools ?? [];
  const choice = b.tool_choice ?? (tools.length ? 'auto' : 'none');
  if (b.tool_choice != null && b.tool_choice !== 'none' && tools.length === 0) badParam('tool_choice', 'tool_choice needs tools');
  let constraint: ConstraintSpec | undefined;
  const asSpec = (t: (typeof tools)[number]) => ({ name: t.function.name, parameters: t.function.parameters });
  if (choice === 'required') constraint = { kind: 'tool_call', tools: tools.map(asSpec) };
  else if (typeof choice === 'object') {
    const t = tools.find((x) => x.function.name === choice.function.name);
    if (!t) badParam('tool_choice', `no tool is named "${choice.function.name}"`);
    constraint = { kind: 'tool_call', tools: [asSpec(t)] };
  }

  const rf = b.response_format;
  if (rf && rf.type !== 'text') {
    if (constraint) badParam('response_format', 'cannot be combined with a required tool call');
    if (rf.type === 'json_object') constraint = { kind: 'json_object' };
    else {
      const schema = (rf as { json_schema: { schema?: Record<string, unknown> } }).json_schema.schema;
      if (schema === undefined) badParam('response_format.json_schema.schema', 'a JSON schema is required');
      try {
        compileJsonSchema(schema);
      } catch (e) {
        if (e instanceof QvlError) badParam('response_format.json_schema.schema', e.message);
        throw e;
      }
      constraint = { kind: 'json_schema', schema };
    }
  }

  const options: WorkerChatOptions = {
    maxNewTokens: b.max_completion_tokens ?? b.max_tokens ?? limits.defaultMaxTokens,
    maxContext: limits.maxContext ?? DEFAULT_CONTEXT_CAP,
    maxMediaItems: limits.maxImages,
    media: { ...limits.media },
    pdf: limits.pdf,
  };
  const set = <K extends keyof WorkerChatOptions>(k: K, v: WorkerChatOptions[K] | null | undefined) => {
    if (v !== undefined && v !== null) options[k] = v;
  };
  set('temperature', b.temperature);
  set('topP', b.top_p);
  // OpenAI-compatible servers use -1 (and 0) for "no top-k"
  set('topK', b.top_k === -1 ? 0 : b.top_k);
  set('minP', b.min_p);
  set('presencePenalty', b.presence_penalty);
  set('frequencyPenalty', b.frequency_penalty);
  set('repetitionPenalty', b.repetition_penalty);
  set('seed', b.seed);
  set('stop', b.stop);
  set('minPixels', b.min_pixels);
  set('maxPixels', b.max_pixels);
  set('fps', b.fps);
  set('maxFrames', b.max_frames);
  set('capPixelsPerFrame', b.cap_pixels_per_frame);
  set('templateKwargs', b.chat_template_kwargs);
  if (choice !== 'none' && tools.length > 0) options.tools = tools;
  if (constraint) options.constraint = constraint;

  return {
    model: b.model,
    stream: b.stream ?? false,
    includeUsage: b.stream_options?.include_usage ?? false,
    messages,
    options,
    toolCalls: options.tools !== undefined,
  };
}
