/**
 * The messages of a request, reduced to the fields qvl reads. Everything else a client sends
 * (unknown keys on messages, parts, tool calls, files) is dropped here, so it never travels to
 * the workers; the values kept are checked afterwards by the library's message normalization,
 * which names the field of each refusal. Also counts the characters of text to tokenize.
 */
import { jsonDepth } from './json-body.ts';

const MESSAGE_KEYS = ['role', 'content', 'name', 'tool_calls', 'tool_call_id', 'reasoning_content'] as const;
const MEDIA_BUDGET_KEYS = ['min_pixels', 'max_pixels'] as const;
// a Map: part types come from clients, and "__proto__" must not find Object.prototype
const PART_KEYS: ReadonlyMap<string, readonly string[]> = new Map(Object.entries({
  text: ['text'],
  image: ['image', 'url', 'path', ...MEDIA_BUDGET_KEYS],
  image_url: ['image_url', ...MEDIA_BUDGET_KEYS],
  video: ['video', 'url', 'path', 'fps', 'max_frames', 'cap_pixels_per_frame', ...MEDIA_BUDGET_KEYS],
  video_url: ['video_url', 'fps', 'max_frames', 'cap_pixels_per_frame', ...MEDIA_BUDGET_KEYS],
  file: ['file', 'pages', ...MEDIA_BUDGET_KEYS],
  pdf: ['pdf', 'url', 'path', 'pages', ...MEDIA_BUDGET_KEYS],
}));

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function pick(v: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (v[k] !== undefined) out[k] = v[k];
  return out;
}

/** `{url, detail}` objects keep those two keys; strings and anything else stay as they are (and are judged later). */
function urlField(v: unknown): unknown {
  return isRecord(v) ? pick(v, ['url', 'detail']) : v;
}

function part(raw: unknown): unknown {
  if (!isRecord(raw) || typeof raw.type !== 'string') return raw;
  const keys = PART_KEYS.get(raw.type);
  // an unknown part type keeps only its type: normalization refuses it by name
  if (keys === undefined) return { type: raw.type };
  const out = pick(raw, ['type', ...keys]);
  if ('image_url' in out) out.image_url = urlField(out.image_url);
  if ('video_url' in out) out.video_url = urlField(out.video_url);
  if (isRecord(out.file)) out.file = pick(out.file, ['file_data', 'filename', 'file_id']);
  return out;
}

function toolCall(raw: unknown): unknown {
  if (!isRecord(raw)) return raw;
  const out = pick(raw, ['id', 'type', 'function', 'name', 'arguments']);
  if (isRecord(out.function)) out.function = pick(out.function, ['name', 'arguments']);
  return out;
}

function message(raw: unknown): unknown {
  if (!isRecord(raw)) return raw;
  const out = pick(raw, MESSAGE_KEYS);
  if (Array.isArray(out.content)) out.content = out.content.map(part);
  if (Array.isArray(out.tool_calls)) out.tool_calls = out.tool_calls.map(toolCall);
  return out;
}

export function sanitizeMessages(messages: readonly unknown[]): unknown[] {
  return messages.map(message);
}

const textLength = (v: unknown): number => (typeof v === 'string' ? v.length : v === undefined || v === null ? 0 : JSON.stringify(v).length);

/** Characters of text the prompt will hold (contents, text parts, reasoning, tool-call arguments), media excluded. */
export function promptChars(messages: readonly unknown[]): number {
  let n = 0;
  for (const m of messages) {
    if (!isRecord(m)) continue;
    n += textLength(m.reasoning_content) + textLength(m.name);
    if (typeof m.content === 'string') n += m.content.length;
    else if (Array.isArray(m.content)) for (const p of m.content) if (isRecord(p) && p.type === 'text') n += textLength(p.text);
    if (Array.isArray(m.tool_calls)) {
      for (const c of m.tool_calls) {
        const fn = isRecord(c) && isRecord(c.function) ? c.function : c;
        if (isRecord(fn)) n += textLength(fn.name) + textLength(fn.arguments);
      }
    }
  }
  return n;
}

/** The field of the first tool-call `arguments` string nesting deeper than `maxDepth`, if any. */
export function deepArguments(messages: readonly unknown[], maxDepth: number): string | undefined {
  for (const [i, m] of messages.entries()) {
    if (!isRecord(m) || !Array.isArray(m.tool_calls)) continue;
    for (const [k, c] of m.tool_calls.entries()) {
      const nested = isRecord(c) && isRecord(c.function);
      const fn = nested ? (c.function as Record<string, unknown>) : c;
      if (isRecord(fn) && typeof fn.arguments === 'string' && jsonDepth(fn.arguments, maxDepth) > maxDepth) {
        return `messages[${i}].tool_calls[${k}].${nested ? 'function.' : ''}arguments`;
      }
    }
  }
  return undefined;
}
