/**
 * Splits a Thinking model's output into reasoning and answer.
 *
 * Qwen3-VL Thinking templates end the generation prompt with `<think>\n`, so the output starts
 * inside the think block and only carries the closing `</think>`. Other models may open the block
 * themselves. Which case applies is read from the rendered prompt, never guessed from the output:
 * an answer that merely mentions `</think>` must not lose its first half.
 */

export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';
const IM_START = '<|im_start|>';

/** True when the prompt leaves the model inside an open `<think>` block (the last turn opened it). */
export function promptOpensThink(promptText: string): boolean {
  const turn = promptText.lastIndexOf(IM_START);
  const tail = turn < 0 ? promptText : promptText.slice(turn);
  const open = tail.lastIndexOf(THINK_OPEN);
  return open >= 0 && tail.indexOf(THINK_CLOSE, open) < 0;
}

export interface ThinkSplit {
  /** undefined when the output has no think block */
  reasoning?: string;
  content: string;
  /** the think block never closed (generation stopped inside it) */
  reasoningTruncated: boolean;
}

/** Splits a whole output. `startsInThink`: what promptOpensThink said about the prompt. */
export function splitThinking(text: string, startsInThink: boolean): ThinkSplit {
  let body: string;
  if (startsInThink) body = text;
  else {
    const lead = text.length - text.trimStart().length;
    if (!text.startsWith(THINK_OPEN, lead)) return { content: text, reasoningTruncated: false };
    body = text.slice(lead + THINK_OPEN.length);
  }
  const close = body.indexOf(THINK_CLOSE);
  if (close < 0) return { reasoning: trimReasoning(body), content: '', reasoningTruncated: true };
  return { reasoning: trimReasoning(body.slice(0, close)), content: body.slice(close + THINK_CLOSE.length).trimStart(), reasoningTruncated: false };
}

/** The template writes `<think>\n{reasoning}\n</think>`: the newlines are framing, not reasoning. */
function trimReasoning(s: string): string {
  return s.replace(/^\n/, '').trimEnd();
}

export interface ThinkDelta {
  reasoning: string;
  content: string;
}

type Mode = 'undecided' | 'reasoning' | 'content';

/**
 * The streaming form of splitThinking: push text deltas, get reasoning and content deltas whose
 * concatenations equal splitThinking's fields. A possible tag prefix at the end of the buffer is
 * held back until the next delta decides it; so is trailing whitespace of the reasoning.
 */
export class ThinkStreamSplitter {
  private mode: Mode;
  private buf = '';
  /** reasoning emitted so far is empty (to drop the template's leading newline) */
  private atReasoningStart = true;
  /** content emitted so far is empty (to drop the blank line after `</think>`) */
  private atContentStart = false;
  private sawThink = false;

  constructor(startsInThink: boolean) {
    this.mode = startsInThink ? 'reasoning' : 'undecided';
    this.sawThink = startsInThink;
  }

  /** The output opened a think block (or the prompt did). */
  get thinking(): boolean {
    return this.sawThink;
  }

  /** Still inside the think block. */
  get inReasoning(): boolean {
    return this.mode === 'reasoning';
  }

  push(delta: string): ThinkDelta {
    this.buf += delta;
    return this.drain(false);
  }

  flush(): ThinkDelta {
    return this.drain(true);
  }

  private drain(final: boolean): ThinkDelta {
    const out: ThinkDelta = { reasoning: '', content: '' };
    for (;;) {
      if (this.mode === 'undecided') {
        const lead = this.buf.trimStart();
        if (lead.startsWith(THINK_OPEN)) {
          this.buf = lead.slice(THINK_OPEN.length);
          this.mode = 'reasoning';
          this.sawThink = true;
          continue;
        }
        if (!final && THINK_OPEN.startsWith(lead)) return out;
        this.mode = 'content';
        continue;
      }
      if (this.mode === 'content') {
        let text = this.buf;
        this.buf = '';
        if (this.atContentStart) {
          text = text.trimStart();
          if (text.length > 0) this.atContentStart = false;
        }
        out.content += text;
        return out;
      }
      // reasoning
      const close = this.buf.indexOf(THINK_CLOSE);
      if (close >= 0) {
        out.reasoning += this.emitReasoning(this.buf.slice(0, close), true);
        this.buf = this.buf.slice(close + THINK_CLOSE.length);
        this.mode = 'content';
        this.atContentStart = true;
        continue;
      }
      if (final) {
        out.reasoning += this.emitReasoning(this.buf, true);
        this.buf = '';
        return out;
      }
      // Hold back a possible start of `</think>` and trailing whitespace (dropped if the tag follows).
      let keep = partialSuffix(this.buf, THINK_CLOSE);
      const body = this.buf.slice(0, this.buf.length - keep);
      const trimmed = body.trimEnd();
      keep += body.length - trimmed.length;
      out.reasoning += this.emitReasoning(trimmed, false);
      this.buf = this.buf.slice(this.buf.length - keep);
      return out;
    }
  }

  private emitReasoning(text: string, end: boolean): string {
    let t = end ? text.trimEnd() : text;
    if (this.atReasoningStart) {
      if (t.length === 0) return '';
      t = t.replace(/^\n/, '');
      this.atReasoningStart = false;
    }
    return t;
  }
}

/** Length of the longest suffix of `text` that is a proper prefix of `tag`. */
export function partialSuffix(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(tag.slice(0, n))) return n;
  }
  return 0;
}
