/**
 * The whole output pipeline for one answer: think split → tool calls (in the answer part only) →
 * grounding (boxes and points in the answer, mapped to the first image's pixels). The streaming
 * parser and parseOutput give the same result for the same text.
 */
import { parseGrounding, type Grounding, type GroundingOptions, type ImageSize } from './grounding.ts';
import { splitThinking, ThinkStreamSplitter } from './think.ts';
import { parseToolCalls, ToolCallStreamParser, type ParsedToolCall } from './tool-calls.ts';

export interface OutputParseOptions {
  /** the prompt ended inside `<think>` (see promptOpensThink) */
  startsInThink?: boolean;
  /** extract `<tool_call>` blocks (true when the request offered tools) */
  toolCalls?: boolean;
  /** the request's media (original sizes): grounding coordinates are mapped to the first image */
  media?: ReadonlyArray<{ kind: string } & ImageSize>;
}

/** Boxes and points of an answer, in pixels of the image `image` (an index into the request's media). */
export interface OutputGrounding extends Grounding {
  image?: number;
  width?: number;
  height?: number;
}

export interface ParsedOutput {
  /** the answer without reasoning and tool calls */
  content: string;
  reasoning?: string;
  /** the think block never closed: all output was reasoning */
  reasoningTruncated?: boolean;
  toolCalls: ParsedToolCall[];
  /** present when the answer holds grounding JSON (bbox_2d / point_2d) */
  grounding?: OutputGrounding;
}

export function parseOutput(text: string, opts: OutputParseOptions = {}): ParsedOutput {
  const split = splitThinking(text, opts.startsInThink ?? false);
  const out: ParsedOutput = { content: split.content, toolCalls: [] };
  if (split.reasoning !== undefined) out.reasoning = split.reasoning;
  if (split.reasoningTruncated) out.reasoningTruncated = true;
  if (opts.toolCalls) {
    const t = parseToolCalls(split.content);
    out.content = t.content;
    out.toolCalls = t.toolCalls;
  }
  const g = groundingFor(out.content, opts.media ?? []);
  if (g) out.grounding = g;
  return out;
}

/** Grounding of an answer against the request's images: the first image sets the pixel scale. */
export function groundingFor(content: string, media: ReadonlyArray<{ kind: string } & ImageSize>, opts?: GroundingOptions): OutputGrounding | undefined {
  const index = media.findIndex((m) => m.kind === 'image');
  const size = index >= 0 ? { width: media[index]!.width, height: media[index]!.height } : undefined;
  const g = parseGrounding(content, size, opts);
  if (g.boxes.length === 0 && g.points.length === 0) return undefined;
  return size ? { image: index, ...size, ...g } : g;
}

export type OutputEvent = { type: 'reasoning'; text: string } | { type: 'content'; text: string } | { type: 'tool_call'; call: ParsedToolCall };

export class OutputStreamParser {
  private readonly think: ThinkStreamSplitter;
  private readonly tools?: ToolCallStreamParser;

  constructor(opts: OutputParseOptions = {}) {
    this.think = new ThinkStreamSplitter(opts.startsInThink ?? false);
    if (opts.toolCalls) this.tools = new ToolCallStreamParser();
  }

  push(delta: string): OutputEvent[] {
    return this.route(this.think.push(delta), false);
  }

  finish(): OutputEvent[] {
    return this.route(this.think.flush(), true);
  }

  private route(d: { reasoning: string; content: string }, final: boolean): OutputEvent[] {
    const out: OutputEvent[] = [];
    if (d.reasoning) out.push({ type: 'reasoning', text: d.reasoning });
    if (!this.tools) {
      if (d.content) out.push({ type: 'content', text: d.content });
      return out;
    }
    const events = d.content ? this.tools.push(d.content) : [];
    if (final) events.push(...this.tools.flush());
    out.push(...events);
    return out;
  }
}
