/**
 * Constrained decoding: before each sampling step, every token whose bytes the JSON automaton
 * would refuse gets logit −∞, and end-of-sequence is allowed only once the value is complete. The
 * result is always a prefix of valid JSON matching the grammar, and complete JSON unless the token
 * budget runs out first.
 *
 * Cost per step: one walk over the sorted vocabulary sharing prefixes (a token is refused at its
 * first bad byte, and so are all tokens that share that prefix); inside strings the plain-text
 * tokens are allowed in one sweep and only the rest is walked.
 *
 * Whitespace: JSON allows it between any two tokens, and a model that is not steered towards JSON
 * (json_object mode, a small model) happily spends its answer on it — the automaton's own bound
 * (a newline and 20 spaces or tabs per gap) still let answers open with runs of tabs. Constraints
 * made by createConstraint therefore also cap optional whitespace: at most `maxWhitespace` bytes
 * (default 1) in a gap between tokens, and none before the value. Whitespace the grammar requires
 * (inside literals such as `<tool_call>\n`) is always allowed and counts towards the gap.
 */
import { QvlError } from '../../errors.ts';
import { acceptsEnd, choiceState, isFinished, literalState, plainStringRoom, step, valueState, END_STATE, type JsonState } from './json-automaton.ts';
import { anyObjectNode, compileJsonSchema, literalBytes, type JsonNode } from './json-schema.ts';
import { buildTokenIndex, type SortedTokens, type TokenIndex, type VocabSource } from './token-index.ts';
import { TOOL_CALL_CLOSE, TOOL_CALL_OPEN } from './tool-calls.ts';

/** Default cap on optional whitespace between two JSON tokens (bytes). */
export const MAX_GAP_WHITESPACE = 1;

const isWs = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
/** Bytes that start or continue a JSON token: if a state takes one of them, whitespace there is optional. */
const TOKEN_BYTES = new TextEncoder().encode('{}[],:"-0123456789tfn');

/** Whitespace at `s` is optional (a gap between tokens), not part of a string or a required literal. */
function optionalWhitespaceAt(s: JsonState): boolean {
  if (plainStringRoom(s) !== undefined) return false;
  for (const b of TOKEN_BYTES) if (step(s, b) !== null) return true;
  return false;
}

export interface JsonConstraintOptions {
  /**
   * Most optional whitespace bytes in a gap between tokens, and before the value none; undefined:
   * only the automaton's own bounds.
   */
  maxWhitespace?: number;
}

export class JsonConstraint {
  private state: JsonState;
  private readonly index: TokenIndex;
  private readonly vocab: VocabSource;
  private readonly eos: readonly number[];
  private readonly stack: (JsonState | null)[];
  /** whitespace bytes in the current gap, per walk depth (like `stack`) */
  private readonly gapStack: Int32Array;
  private readonly maxGap: number;
  /** whitespace bytes in the gap the text read so far ends with */
  private gap: number;
  private allowed = new Uint8Array(0);
  private consumed = 0;

  constructor(vocab: VocabSource, start: JsonState, eosTokenIds: readonly number[], opts: JsonConstraintOptions = {}) {
    this.vocab = vocab;
    this.index = buildTokenIndex(vocab);
    this.state = start;
    this.eos = eosTokenIds;
    this.stack = new Array(this.index.maxTokenBytes + 1).fill(null);
    this.gapStack = new Int32Array(this.index.maxTokenBytes + 1);
    this.maxGap = opts.maxWhitespace ?? Infinity;
    // a full gap at the start: the answer opens with the value, not with whitespace
    this.gap = opts.maxWhitespace === undefined ? 0 : this.maxGap;
  }

  /**
   * The state after byte `b`, with the gap's whitespace count written to `gapOut[0]`, or null when
   * the grammar or the whitespace cap refuses it.
   */
  private next(s: JsonState, gap: number, b: number, gapOut: Int32Array, at: number): JsonState | null {
    if (!isWs(b) || plainStringRoom(s) !== undefined) {
      const n = step(s, b);
      gapOut[at] = 0;
      return n;
    }
    if (gap >= this.maxGap && optionalWhitespaceAt(s)) return null;
    gapOut[at] = gap + 1;
    return step(s, b);
  }

  /** The value is complete: only end-of-sequence may follow. */
  get finished(): boolean {
    return isFinished(this.state);
  }

  get canEnd(): boolean {
    return acceptsEnd(this.state);
  }

  /** Advances over a generated token. */
  accept(id: number): void {
    const bytes = this.vocab.isSpecial(id) ? undefined : this.vocab.tokenBytes(id);
    let cur: JsonState | null = bytes === undefined ? null : this.state;
    const gap = new Int32Array(1);
    gap[0] = this.gap;
    for (let i = 0; bytes !== undefined && i < bytes.length && cur !== null; i++) cur = this.next(cur, gap[0]!, bytes[i]!, gap, 0);
    if (cur === null) throw new QvlError('INTERNAL', `constrained decoding: token ${id} does not fit the grammar`, { token: id });
    this.state = cur;
    this.gap = gap[0]!;
  }

  /** 1 for every token id the grammar allows next (a reused buffer of `size` entries). */
  allowedTokens(size: number): Uint8Array {
    if (this.allowed.length !== size) this.allowed = new Uint8Array(size);
    const allowed = this.allowed;
    allowed.fill(0);
    const room = plainStringRoom(this.state);
    if (room !== undefined) {
      const { plainIds, plainChars } = this.index;
      for (let i = 0; i < plainIds.length; i++) if (plainChars[i]! <= room) allowed[plainIds[i]!] = 1;
      this.walk(this.index.nonPlain, allowed);
    } else {
      this.walk(this.index.all, allowed);
    }
    if (acceptsEnd(this.state)) for (const id of this.eos) if (id < size) allowed[id] = 1;
    return allowed;
  }

  /** Sets every refused logit to −∞. */
  mask(logits: Float32Array): void {
    const allowed = this.allowedTokens(logits.length);
    let any = false;
    for (let i = 0; i < logits.length; i++) {
      if (allowed[i] === 0) logits[i] = -Infinity;
      else any = true;
    }
    if (!any) throw new QvlError('INTERNAL', 'constrained decoding reached a state no token can continue', {});
  }

  /** A `logitsProcessor` for ChatOptions: follows the generated ids and masks each step. */
  logitsProcessor(): (logits: Float32Array, generated: readonly number[]) => void {
    return (logits, generated) => {
      while (this.consumed < generated.length) this.accept(generated[this.consumed++]!);
      this.mask(logits);
    };
  }

  private walk(list: SortedTokens, allowed: Uint8Array): void {
    const { ids, bytes, lcp, groupEnd } = list;
    const stack = this.stack;
    const gaps = this.gapStack;
    stack[0] = this.state;
    gaps[0] = this.gap;
    let valid = 0;
    const n = ids.length;
    let i = 0;
    while (i < n) {
      const tb = bytes[i]!;
      let j = Math.min(lcp[i]!, valid);
      for (; j < tb.length; j++) {
        const next = this.next(stack[j]!, gaps[j]!, tb[j]!, gaps, j + 1);
        if (next === null) break;
        stack[j + 1] = next;
      }
      valid = j;
      if (j === tb.length) {
        allowed[ids[i]!] = 1;
        i++;
        continue;
      }
      // Every following token that shares the refused prefix is refused too.
      if (j === 0) {
        i = groupEnd[i]!;
        continue;
      }
      i++;
      while (i < n && lcp[i]! > j) i++;
    }
  }
}

/** What the model must produce: any JSON object, a schema, or a call of one of the offered tools. */
export type ConstraintSpec =
  | { kind: 'json_object' }
  | { kind: 'json_schema'; schema: unknown }
  | { kind: 'tool_call'; tools: ReadonlyArray<{ name: string; parameters?: unknown }> };

/** The start state of a constraint (schemas are compiled here; bad ones throw OPTION_INVALID). */
export function constraintStart(spec: ConstraintSpec): JsonState {
  if (spec.kind === 'json_object') return valueState(anyObjectNode());
  if (spec.kind === 'json_schema') return valueState(compileJsonSchema(spec.schema));
  return toolCallState(spec.tools);
}

/**
 * One tool call as the Qwen templates teach it: `<tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>`.
 * The name picks the arguments' schema; a tool whose parameters cannot be enforced gets any object.
 */
export function toolCallState(tools: ReadonlyArray<{ name: string; parameters?: unknown }>): JsonState {
  if (tools.length === 0) throw new QvlError('OPTION_INVALID', 'a tool call was required but no tools were given', {});
  const tail = literalState(`}\n${TOOL_CALL_CLOSE}`, END_STATE);
  const alts = tools.map((t) => {
    let args: JsonNode;
    try {
      args = t.parameters === undefined ? anyObjectNode() : compileJsonSchema(t.parameters);
    } catch {
      args = anyObjectNode();
    }
    const name = new TextDecoder().decode(literalBytes(t.name));
    return { text: `{"name": ${name}, "arguments": `, then: valueState(args, tail) };
  });
  return literalState(`${TOOL_CALL_OPEN}\n`, choiceState(alts));
}

/**
 * A constraint ready for a tokenizer. `prefix`: literal text forced before the value — for a
 * Thinking model whose prompt opened `<think>`, "</think>\n\n" closes the (empty) reasoning so the
 * answer part holds the JSON.
 */
export function createConstraint(
  vocab: VocabSource,
  spec: ConstraintSpec,
  eosTokenIds: readonly number[],
  opts: { prefix?: string; maxWhitespace?: number } = {},
): JsonConstraint {
  const start = constraintStart(spec);
  return new JsonConstraint(vocab, opts.prefix ? literalState(opts.prefix, start) : start, eosTokenIds, { maxWhitespace: opts.maxWhitespace ?? MAX_GAP_WHITESPACE });
}
