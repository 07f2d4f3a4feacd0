/**
 * Turns user-supplied chat messages (Hugging Face or OpenAI spelling) into the messages the
 * chat template renders plus the ordered list of images and videos they reference.
 *
 * Media order is prompt order: the k-th media entry belongs to the k-th
 * `<|vision_start|>…<|vision_end|>` block of the rendered prompt. Both Qwen3-VL templates
 * render media only in user and tool messages, so media anywhere else is refused instead of
 * silently vanishing from the prompt.
 */
import { QvlError } from '../errors.ts';
import type { TemplateContentPart, TemplateMessage, TemplateRole, TemplateToolCall } from './types.ts';

export interface MediaOptions {
  minPixels?: number;
  maxPixels?: number;
  fps?: number;
  maxFrames?: number;
  /** videos: bound each frame's pixels as qwen-vl-utils does (`cap_pixels_per_frame`) */
  capPixelsPerFrame?: boolean;
}

/** A path, http(s) URL or data: URI; raw file bytes; or (videos) a list of frame paths/URLs. */
export type MediaSource = string | Uint8Array | string[];

export interface MediaRef {
  kind: 'image' | 'video';
  source: MediaSource;
  options: MediaOptions;
}

export interface NormalizedChat {
  messages: TemplateMessage[];
  media: MediaRef[];
}

export interface NormalizeOptions {
  /**
   * Parse OpenAI-style JSON-string tool-call `arguments` into objects (default true), so the
   * template prints them with Python's json.dumps spacing, the form the model was trained on.
   * A string that is not a JSON object is kept verbatim.
   */
  parseToolArguments?: boolean;
}

const ROLES: ReadonlyMap<string, TemplateRole> = new Map([
  ['system', 'system'],
  ['developer', 'system'], // OpenAI's newer name for the system role
  ['user', 'user'],
  ['assistant', 'assistant'],
  ['tool', 'tool'],
]);

type Where = { message: number; part?: number; call?: number };

function fail(where: Where, problem: string): never {
  let path = `messages[${where.message}]`;
  if (where.part !== undefined) path += `.content[${where.part}]`;
  if (where.call !== undefined) path += `.tool_calls[${where.call}]`;
  throw new QvlError('MESSAGE_INVALID', `${path}: ${problem}`, { ...where });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return 'binary data';
  return typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v) : typeof v;
}

export function normalizeMessages(input: unknown, opts: NormalizeOptions = {}): NormalizedChat {
  if (!Array.isArray(input)) {
    throw new QvlError('MESSAGE_INVALID', `messages must be an array, got ${describe(input)}`);
  }
  if (input.length === 0) throw new QvlError('MESSAGE_INVALID', 'messages is empty');
  const parseArgs = opts.parseToolArguments !== false;
  const media: MediaRef[] = [];
  const messages = input.map((raw, i) => normalizeMessage(raw, i, media, parseArgs));
  return { messages, media };
}

function normalizeMessage(raw: unknown, i: number, media: MediaRef[], parseArgs: boolean): TemplateMessage {
  const at: Where = { message: i };
  if (!isRecord(raw)) fail(at, `expected an object, got ${describe(raw)}`);
  if (typeof raw.role !== 'string') fail(at, 'role is missing');
  const role = ROLES.get(raw.role);
  if (role === undefined) {
    fail(at, `unknown role ${JSON.stringify(raw.role)} (expected system, user, assistant or tool)`);
  }

  const toolCalls = raw.tool_calls === undefined || raw.tool_calls === null ? undefined : raw.tool_calls;
  if (toolCalls !== undefined && role !== 'assistant') fail(at, `tool_calls are only allowed on assistant messages`);
  const calls = toolCalls === undefined ? undefined : normalizeToolCalls(toolCalls, i, parseArgs);

  let reasoning: string | undefined;
  if (raw.reasoning_content !== undefined && raw.reasoning_content !== null) {
    if (typeof raw.reasoning_content !== 'string') fail(at, 'reasoning_content must be a string');
    if (role !== 'assistant') fail(at, 'reasoning_content is only allowed on assistant messages');
    reasoning = raw.reasoning_content;
  }

  let content: TemplateMessage['content'];
  if (raw.content === undefined || raw.content === null) {
    // OpenAI sends null content with tool calls; the templates need a string there.
    if (role === 'assistant' && ((calls?.length ?? 0) > 0 || reasoning !== undefined)) content = '';
    else fail(at, 'content is missing');
  } else if (typeof raw.content === 'string') {
    content = raw.content;
  } else if (Array.isArray(raw.content)) {
    content = raw.content.map((part, j) => normalizePart(part, { message: i, part: j }, role, media));
  } else {
    fail(at, `content must be a string or an array of parts, got ${describe(raw.content)}`);
  }

  const out: TemplateMessage = { role, content };
  if (calls !== undefined) out.tool_calls = calls;
  if (reasoning !== undefined) out.reasoning_content = reasoning;
  if (role === 'tool' && raw.tool_call_id !== undefined && raw.tool_call_id !== null) {
    if (typeof raw.tool_call_id !== 'string') fail(at, 'tool_call_id must be a string');
    out.tool_call_id = raw.tool_call_id;
  }
  if (typeof raw.name === 'string') out.name = raw.name;
  return out;
}

function normalizePart(raw: unknown, at: Where, role: TemplateRole, media: MediaRef[]): TemplateContentPart {
  if (!isRecord(raw)) fail(at, `expected a content part object, got ${describe(raw)}`);
  if (typeof raw.type !== 'string') fail(at, 'content part has no "type"');
  const type = raw.type;
  if (type === 'text') {
    if (typeof raw.text !== 'string') fail(at, 'text part needs a string "text"');
    return { type: 'text', text: raw.text };
  }
  const kind = type === 'image' || type === 'image_url' ? 'image' : type === 'video' || type === 'video_url' ? 'video' : undefined;
  if (kind === undefined) {
    fail(at, `unknown content part type ${JSON.stringify(type)} (expected text, image, image_url, video or video_url)`);
  }
  if (role !== 'user' && role !== 'tool') {
    fail(at, `${kind}s are only accepted in user and tool messages, not in ${role} messages`);
  }
  const source =
    type === 'image'
      ? imageSource(raw, at)
      : type === 'image_url'
        ? urlSource(raw, 'image_url', at)
        : type === 'video'
          ? videoSource(raw, at)
          : urlSource(raw, 'video_url', at);
  media.push({ kind, source, options: mediaOptions(raw, kind, at) });
  return { type: kind };
}

function imageSource(raw: Record<string, unknown>, at: Where): MediaSource {
  const key = ['image', 'url', 'path'].find((k) => raw[k] !== undefined && raw[k] !== null);
  if (key === undefined) fail(at, 'image part needs "image", "url" or "path"');
  const v = raw[key];
  if (typeof v === 'string') {
    if (v.length === 0) fail(at, `image "${key}" is empty`);
    return v;
  }
  if (v instanceof Uint8Array) {
    if (v.length === 0) fail(at, `image "${key}" is empty`);
    return v;
  }
  return fail(at, `image "${key}" must be a string (path, URL, data URI) or bytes, got ${describe(v)}`);
}

function videoSource(raw: Record<string, unknown>, at: Where): MediaSource {
  const key = ['video', 'url', 'path'].find((k) => raw[k] !== undefined && raw[k] !== null);
  if (key === undefined) fail(at, 'video part needs "video", "url" or "path"');
  const v = raw[key];
  if (typeof v === 'string' || v instanceof Uint8Array) {
    if (v.length === 0) fail(at, `video "${key}" is empty`);
    return v;
  }
  if (Array.isArray(v)) {
    if (v.length === 0) fail(at, `video "${key}" has no frames`);
    v.forEach((f, k) => {
      if (typeof f !== 'string' || f.length === 0) fail(at, `video frame ${k} must be a non-empty string, got ${describe(f)}`);
    });
    return [...(v as string[])];
  }
  return fail(at, `video "${key}" must be a path/URL, a list of frame paths/URLs, or bytes, got ${describe(v)}`);
}

/** OpenAI `image_url` / `video_url`: a string or `{url, detail?}`. */
function urlSource(raw: Record<string, unknown>, key: 'image_url' | 'video_url', at: Where): MediaSource {
  const v = raw[key];
  const url = typeof v === 'string' ? v : isRecord(v) ? v.url : undefined;
  if (typeof url !== 'string' || url.length === 0) fail(at, `${key} part needs "${key}": "<url>" or {"url": "<url>"}`);
  return url;
}

function mediaOptions(raw: Record<string, unknown>, kind: 'image' | 'video', at: Where): MediaOptions {
  const options: MediaOptions = {};
  const positiveInt = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(at, `${key} must be a positive integer, got ${describe(v)}`);
    return v;
  };
  const minPixels = positiveInt('min_pixels');
  const maxPixels = positiveInt('max_pixels');
  if (minPixels !== undefined) options.minPixels = minPixels;
  if (maxPixels !== undefined) options.maxPixels = maxPixels;
  if (minPixels !== undefined && maxPixels !== undefined && minPixels > maxPixels) {
    fail(at, `min_pixels (${minPixels}) is larger than max_pixels (${maxPixels})`);
  }
  if (kind === 'video') {
    const fps = raw.fps;
    if (fps !== undefined && fps !== null) {
      if (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0) fail(at, `fps must be a positive number, got ${describe(fps)}`);
      options.fps = fps;
    }
    const maxFrames = positiveInt('max_frames');
    if (maxFrames !== undefined) options.maxFrames = maxFrames;
    const cap = raw.cap_pixels_per_frame;
    if (cap !== undefined && cap !== null) {
      if (typeof cap !== 'boolean') fail(at, `cap_pixels_per_frame must be true or false, got ${describe(cap)}`);
      options.capPixelsPerFrame = cap;
    }
  } else {
    for (const key of ['fps', 'max_frames', 'cap_pixels_per_frame']) {
      if (raw[key] !== undefined && raw[key] !== null) fail(at, `${key} only applies to videos`);
    }
  }
  return options;
}

function normalizeToolCalls(raw: unknown, i: number, parseArgs: boolean): TemplateToolCall[] {
  if (!Array.isArray(raw)) fail({ message: i }, `tool_calls must be an array, got ${describe(raw)}`);
  return raw.map((call, k) => {
    const at: Where = { message: i, call: k };
    if (!isRecord(call)) fail(at, `expected an object, got ${describe(call)}`);
    if (call.type !== undefined && call.type !== 'function') fail(at, `type must be "function", got ${describe(call.type)}`);
    // OpenAI nests name/arguments under "function"; a flat {name, arguments} is accepted too.
    const fn = call.function === undefined ? call : call.function;
    if (!isRecord(fn)) fail(at, `function must be an object, got ${describe(fn)}`);
    if (typeof fn.name !== 'string' || fn.name.length === 0) fail(at, 'function name is missing');
    const out: TemplateToolCall = {
      type: 'function',
      function: { name: fn.name, arguments: toolArguments(fn.arguments, at, parseArgs) },
    };
    if (typeof call.id === 'string') out.id = call.id;
    return out;
  });
}

function toolArguments(args: unknown, at: Where, parseArgs: boolean): unknown {
  if (args === undefined || args === null) return {};
  if (isRecord(args)) return args;
  if (typeof args !== 'string') fail(at, `arguments must be a JSON string or an object, got ${describe(args)}`);
  if (!parseArgs) return args;
  if (args.trim().length === 0) return {};
  try {
    const parsed: unknown = JSON.parse(args);
    return isRecord(parsed) ? parsed : args;
  } catch {
    return args;
  }
}
