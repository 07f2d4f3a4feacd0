/**
 * Qwen's (Hermes-style) tool calls: `<tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>`,
 * possibly several, after optional text. Parsed into OpenAI `tool_calls`; a block that is not a
 * JSON object with a string `name` stays in the content as written, so nothing is ever lost.
 */
import { randomBytes } from 'node:crypto';
import { partialSuffix } from './think.ts';

export const TOOL_CALL_OPEN = '<tool_call>';
export const TOOL_CALL_CLOSE = '</tool_call>';

export interface ParsedToolCall {
  /** OpenAI-style id, `call_…` */
  id: string;
  type: 'function';
  function: {
    name: string;
    /** the arguments as a JSON text (OpenAI sends strings) */
    arguments: string;
  };
}

export function newToolCallId(): string {
  return 'call_' + randomBytes(12).toString('hex');
}

/** One block's inner text → a tool call, or undefined when it is not one. */
export function parseToolCallBody(body: string): ParsedToolCall | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body.trim());
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.name !== 'string' || o.name.length === 0) return undefined;
  const args = o.arguments ?? o.parameters ?? {};
  let text: string;
  if (typeof args === 'string') text = args;
  else if (typeof args === 'object') text = JSON.stringify(args);
  else return undefined;
  return { id: newToolCallId(), type: 'function', function: { name: o.name, arguments: text } };
}

export type ToolStreamEvent = { type: 'content'; text: string } | { type: 'tool_call'; call: ParsedToolCall };

/**
 * Incremental tool-call extraction: push text deltas, get content deltas and whole tool calls.
 * Text that might be the start of `<tool_call>` is held back; a block is only released when it is
 * closed (or the output ends), so a client never sees half a call as content. Whitespace that
 * separates text and calls is framing and is dropped around calls.
 */
export class ToolCallStreamParser {
  private buf = '';
  private inCall = false;
  /** whitespace held after content, emitted only if more content follows */
  private pendingWs = '';
  private afterCall = false;
  private calls = 0;

  get callCount(): number {
    return this.calls;
  }

  push(delta: string): ToolStreamEvent[] {
    this.buf += delta;
    return this.drain(false);
  }

  flush(): ToolStreamEvent[] {
    return this.drain(true);
  }

  private drain(final: boolean): ToolStreamEvent[] {
    const out: ToolStreamEvent[] = [];
    for (;;) {
      if (this.inCall) {
        const close = this.buf.indexOf(TOOL_CALL_CLOSE);
        if (close < 0 && !final) return out;
        const body = close < 0 ? this.buf : this.buf.slice(0, close);
        const raw = TOOL_CALL_OPEN + (close < 0 ? this.buf : this.buf.slice(0, close + TOOL_CALL_CLOSE.length));
        this.buf = close < 0 ? '' : this.buf.slice(close + TOOL_CALL_CLOSE.length);
        this.inCall = false;
        const call = parseToolCallBody(body);
        if (call) {
          this.calls++;
          this.pendingWs = '';
          this.afterCall = true;
          out.push({ type: 'tool_call', call });
        } else {
          this.content(raw, out);
        }
        continue;
      }
      const open = this.buf.indexOf(TOOL_CALL_OPEN);
      if (open >= 0) {
        this.content(this.buf.slice(0, open), out, true);
        this.buf = this.buf.slice(open + TOOL_CALL_OPEN.length);
        this.inCall = true;
        continue;
      }
      const keep = final ? 0 : partialSuffix(this.buf, TOOL_CALL_OPEN);
      // At the end, whitespace after text is kept unless it only separated text from calls.
      this.content(this.buf.slice(0, this.buf.length - keep), out, !final || this.calls > 0);
      this.buf = this.buf.slice(this.buf.length - keep);
      if (final && this.pendingWs && this.calls === 0) {
        out.push({ type: 'content', text: this.pendingWs });
        this.pendingWs = '';
      }
      return out;
    }
  }

  /** Emits text as content, keeping trailing whitespace back when `hold` (it may precede a call). */
  private content(text: string, out: ToolStreamEvent[], hold = false): void {
    if (this.afterCall) {
      text = text.trimStart();
      if (text.length === 0) return;
      this.afterCall = false;
    }
    let t = this.pendingWs + text;
    this.pendingWs = '';
    if (hold) {
      const trimmed = t.trimEnd();
      this.pendingWs = t.slice(trimmed.length);
      t = trimmed;
    }
    if (t.length > 0) out.push({ type: 'content', text: t });
  }
}

/** Splits a whole output into content and tool calls. */
export function parseToolCalls(text: string): { content: string; toolCalls: ParsedToolCall[] } {
  const p = new ToolCallStreamParser();
  const events = [...p.push(text), ...p.flush()];
  let content = '';
  const toolCalls: ParsedToolCall[] = [];
  for (const e of events) {
    if (e.type === 'content') content += e.text;
    else toolCalls.push(e.call);
  }
  return { content, toolCalls };
}
