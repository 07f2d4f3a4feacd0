/**
 * A byte-level pushdown automaton that accepts exactly the JSON texts a grammar (json-schema.ts)
 * allows, one byte at a time. States are immutable (a frame plus a link to the frame below), so a
 * state can be tried with many continuations: that is how the vocabulary mask is computed.
 *
 * Bounds that keep generation finite whatever the model does: whitespace between tokens is either
 * one space or one newline followed by at most MAX_INDENT spaces/tabs (as llama.cpp's JSON grammar
 * does; pretty-printed JSON fits, runaway blank lines do not), numbers of at most MAX_INT_DIGITS / MAX_FRAC_DIGITS / MAX_EXP_DIGITS digits, and free-form
 * values nested at most FREE_DEPTH deep. Strings must be valid UTF-8 without raw control bytes.
 */
import { anyNode, type JsonNode } from './json-schema.ts';

export const MAX_INDENT = 20;
export const MAX_INT_DIGITS = 16;
export const MAX_FRAC_DIGITS = 16;
export const MAX_EXP_DIGITS = 3;

const VALUE = 0;
const STR = 1;
const NUM = 2;
const LIT = 3;
const OBJ = 4;
const ARR = 5;
const END = 6;

type ObjectNode = Extract<JsonNode, { kind: 'object' }>;
type ArrayNode = Extract<JsonNode, { kind: 'array' }>;

interface Alt {
  bytes: Uint8Array;
  next: JsonState;
}

type Frame =
  | { k: typeof VALUE; node: JsonNode; ws: number }
  | { k: typeof STR; min: number; max: number; len: number; need: number; esc: number }
  | { k: typeof NUM; integer: boolean; phase: number; n: number }
  | { k: typeof LIT; alts: Alt[]; pos: number; done: JsonState | null }
  | { k: typeof OBJ; node: ObjectNode; phase: number; next: number; ws: number; cands: number[] | null; pos: number; chosen: number }
  | { k: typeof ARR; node: ArrayNode; phase: number; count: number; ws: number }
  | { k: typeof END };

/** An automaton state: the frame that reads the next byte, and the frames below it. */
export interface JsonState {
  readonly f: Frame;
  readonly up: JsonState | null;
}

const mk = (f: Frame, up: JsonState | null): JsonState => ({ f, up });

export const END_STATE: JsonState = mk({ k: END }, null);

// number phases
const N_START = 0;
const N_MINUS = 1;
const N_ZERO = 2;
const N_INT = 3;
const N_DOT = 4;
const N_FRAC = 5;
const N_EXP = 6;
const N_EXP_SIGN = 7;
const N_EXP_DIGITS = 8;
const numComplete = (p: number) => p === N_ZERO || p === N_INT || p === N_FRAC || p === N_EXP_DIGITS;

// object phases
const O_OPEN = 0;
const O_KEY = 1;
const O_COLON = 2;
const O_AFTER_VALUE = 3;
const O_AFTER_COMMA = 4;

// array phases
const A_OPEN = 0;
const A_AFTER_VALUE = 1;
const A_AFTER_COMMA = 2;

const isWs = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/**
 * Whitespace counter of a gap: 0 nothing yet, 1 a single space (nothing more), 2 + k a newline and
 * k indentation bytes. Returns the next counter, or -1 when `b` is not allowed here.
 */
function wsStep(ws: number, b: number): number {
  if (ws === 0) return b === 0x20 ? 1 : b === 0x0a ? 2 : -1;
  if (ws >= 2 && ws - 2 < MAX_INDENT && (b === 0x20 || b === 0x09)) return ws + 1;
  return -1;
}
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);

const utf8 = new TextEncoder();
const TRUE = utf8.encode('true');
const FALSE = utf8.encode('false');
const NULL = utf8.encode('null');

const anyNodes: JsonNode[] = [];
const anyObjects: ObjectNode[] = [];
const anyArrays: ArrayNode[] = [];
function anyAt(depth: number): JsonNode {
  return (anyNodes[depth] ??= anyNode(depth));
}
function anyObjectAt(depth: number): ObjectNode {
  return (anyObjects[depth] ??= { kind: 'object', props: [], free: true, depth });
}
function anyArrayAt(depth: number): ArrayNode {
  return (anyArrays[depth] ??= { kind: 'array', items: anyAt(depth), min: 0, max: Infinity });
}

/** A state expecting one value of `node` (leading whitespace allowed), then `then`. */
export function valueState(node: JsonNode, then: JsonState = END_STATE): JsonState {
  return mk({ k: VALUE, node, ws: 0 }, then);
}

/** A state expecting one of several literal texts, each followed by its own continuation. */
export function choiceState(alts: ReadonlyArray<{ text: string; then: JsonState }>): JsonState {
  return mk({ k: LIT, alts: alts.map((a) => ({ bytes: utf8.encode(a.text), next: a.then })), pos: 0, done: null }, null);
}

/** A state expecting exactly `text`, then `then`. */
export function literalState(text: string, then: JsonState): JsonState {
  return choiceState([{ text, then }]);
}

/** The state after reading byte `b`, or null when the grammar does not allow it. */
export function step(s: JsonState, b: number): JsonState | null {
  const f = s.f;
  switch (f.k) {
    case VALUE:
      if (isWs(b)) {
        const ws = wsStep(f.ws, b);
        return ws < 0 ? null : mk({ k: VALUE, node: f.node, ws }, s.up);
      }
      return start(f.node, b, s.up!);
    case STR:
      return strStep(f, b, s.up!);
    case NUM:
      return numStep(f, b, s.up!);
    case LIT:
      return litStep(f, b);
    case OBJ:
      return objStep(f, b, s.up!);
    case ARR:
      return arrStep(f, b, s.up!);
    case END:
      return null;
  }
}

/** Feeds a byte string; null when some byte is refused. */
export function stepBytes(s: JsonState, bytes: Uint8Array): JsonState | null {
  let cur: JsonState | null = s;
  for (let i = 0; i < bytes.length && cur !== null; i++) cur = step(cur, bytes[i]!);
  return cur;
}

/** True when the text read so far is complete (the model may stop here). */
export function acceptsEnd(s: JsonState): boolean {
  const f = s.f;
  if (f.k === END) return true;
  if (f.k === NUM) return numComplete(f.phase) && acceptsEnd(s.up!);
  if (f.k === LIT) return f.done !== null && acceptsEnd(f.done);
  return false;
}

/** True when nothing but the end may follow. */
export function isFinished(s: JsonState): boolean {
  return s.f.k === END;
}

/** The string frame's counters when `s` reads string content with no escape or UTF-8 sequence open. */
export function plainStringRoom(s: JsonState): number | undefined {
  const f = s.f;
  if (f.k !== STR || f.need !== 0 || f.esc !== 0) return undefined;
  return f.max - f.len;
}

function start(node: JsonNode, b: number, up: JsonState): JsonState | null {
  switch (node.kind) {
    case 'any':
      if (b === 0x7b /* { */) return node.depth > 0 ? mk(objFrame(anyObjectAt(node.depth - 1)), up) : null;
      if (b === 0x5b /* [ */) return node.depth > 0 ? mk({ k: ARR, node: anyArrayAt(node.depth - 1), phase: A_OPEN, count: 0, ws: 0 }, up) : null;
      if (b === 0x22) return mk({ k: STR, min: 0, max: Infinity, len: 0, need: 0, esc: 0 }, up);
      if (b === 0x2d || isDigit(b)) return numStep({ k: NUM, integer: false, phase: N_START, n: 0 }, b, up);
      return litStart([TRUE, FALSE, NULL], b, up);
    case 'object':
      return b === 0x7b ? mk(objFrame(node), up) : null;
    case 'array':
      return b === 0x5b ? mk({ k: ARR, node, phase: A_OPEN, count: 0, ws: 0 }, up) : null;
    case 'string':
      return b === 0x22 ? mk({ k: STR, min: node.min, max: node.max, len: 0, need: 0, esc: 0 }, up) : null;
    case 'number':
      return numStep({ k: NUM, integer: node.integer, phase: N_START, n: 0 }, b, up);
    case 'literal':
      return litStart(node.values, b, up);
    case 'union':
      for (const o of node.options) {
        const r = start(o, b, up);
        if (r !== null) return r;
      }
      return null;
  }
}

function objFrame(node: ObjectNode): Frame {
  return { k: OBJ, node, phase: O_OPEN, next: 0, ws: 0, cands: null, pos: 0, chosen: -1 };
}

function strStep(f: Extract<Frame, { k: typeof STR }>, b: number, up: JsonState): JsonState | null {
  const at = (g: Partial<typeof f>) => mk({ ...f, ...g }, up);
  if (f.esc === 1) {
    if (b === 0x75 /* u */) return at({ esc: 2 });
    // " \ / b f n r t
    return b === 0x22 || b === 0x5c || b === 0x2f || b === 0x62 || b === 0x66 || b === 0x6e || b === 0x72 || b === 0x74 ? at({ esc: 0 }) : null;
  }
  if (f.esc >= 2) return isHex(b) ? at({ esc: f.esc === 5 ? 0 : f.esc + 1 }) : null;
  if (f.need > 0) return b >= 0x80 && b <= 0xbf ? at({ need: f.need - 1 }) : null;
  if (b === 0x22) return f.len >= f.min ? up : null;
  if (b < 0x20) return null;
  if (f.len >= f.max) return null;
  if (b === 0x5c) return at({ len: f.len + 1, esc: 1 });
  if (b < 0x80) return at({ len: f.len + 1 });
  if (b >= 0xc2 && b <= 0xdf) return at({ len: f.len + 1, need: 1 });
  if (b >= 0xe0 && b <= 0xef) return at({ len: f.len + 1, need: 2 });
  if (b >= 0xf0 && b <= 0xf4) return at({ len: f.len + 1, need: 3 });
  return null;
}

function numStep(f: Extract<Frame, { k: typeof NUM }>, b: number, up: JsonState): JsonState | null {
  const to = (phase: number, n: number) => mk({ k: NUM, integer: f.integer, phase, n }, up);
  const digit = isDigit(b);
  switch (f.phase) {
    case N_START:
    case N_MINUS:
      if (b === 0x2d && f.phase === N_START) return to(N_MINUS, 0);
      if (b === 0x30) return to(N_ZERO, 1);
      return digit ? to(N_INT, 1) : null;
    case N_ZERO:
    case N_INT:
      if (digit && f.phase === N_INT && f.n < MAX_INT_DIGITS) return to(N_INT, f.n + 1);
      if (!f.integer && b === 0x2e) return to(N_DOT, 0);
      if (!f.integer && (b === 0x65 || b === 0x45)) return to(N_EXP, 0);
      break;
    case N_DOT:
      return digit ? to(N_FRAC, 1) : null;
    case N_FRAC:
      if (digit && f.n < MAX_FRAC_DIGITS) return to(N_FRAC, f.n + 1);
      if (b === 0x65 || b === 0x45) return to(N_EXP, 0);
      break;
    case N_EXP:
      if (b === 0x2b || b === 0x2d) return to(N_EXP_SIGN, 0);
      return digit ? to(N_EXP_DIGITS, 1) : null;
    case N_EXP_SIGN:
      return digit ? to(N_EXP_DIGITS, 1) : null;
    case N_EXP_DIGITS:
      if (digit && f.n < MAX_EXP_DIGITS) return to(N_EXP_DIGITS, f.n + 1);
      break;
  }
  // A complete number ends at the first byte that cannot extend it; that byte belongs to the parent.
  return numComplete(f.phase) ? step(up, b) : null;
}

function litStart(values: readonly Uint8Array[], b: number, up: JsonState): JsonState | null {
  return litStep({ k: LIT, alts: values.map((bytes) => ({ bytes, next: up })), pos: 0, done: null }, b);
}

function litStep(f: Extract<Frame, { k: typeof LIT }>, b: number): JsonState | null {
  const pos = f.pos;
  const alts: Alt[] = [];
  for (const a of f.alts) if (a.bytes.length > pos && a.bytes[pos] === b) alts.push(a);
  if (alts.length === 0) return f.done !== null ? step(f.done, b) : null;
  const p = pos + 1;
  let done: JsonState | null = null;
  let open = false;
  for (const a of alts) {
    if (a.bytes.length === p) done = a.next;
    else open = true;
  }
  if (!open) return done;
  return mk({ k: LIT, alts, pos: p, done }, null);
}

function canClose(node: ObjectNode, next: number): boolean {
  if (node.free) return true;
  for (let i = next; i < node.props.length; i++) if (node.props[i]!.required) return false;
  return true;
}

/** Properties that may come next: up to and including the first required one. */
function keyCandidates(node: ObjectNode, next: number): number[] {
  const out: number[] = [];
  for (let i = next; i < node.props.length; i++) {
    out.push(i);
    if (node.props[i]!.required) break;
  }
  return out;
}

function objStep(f: Extract<Frame, { k: typeof OBJ }>, b: number, up: JsonState): JsonState | null {
  const node = f.node;
  const at = (g: Partial<typeof f>) => mk({ ...f, ...g }, up);
  const ws = () => {
    const n = wsStep(f.ws, b);
    return n < 0 ? null : at({ ws: n });
  };
  switch (f.phase) {
    case O_OPEN:
    case O_AFTER_COMMA:
      if (isWs(b)) return ws();
      if (b === 0x7d /* } */) return f.phase === O_OPEN && canClose(node, f.next) ? up : null;
      if (b !== 0x22) return null;
      if (node.free) return mk({ k: STR, min: 0, max: Infinity, len: 0, need: 0, esc: 0 }, at({ phase: O_COLON, ws: 0, chosen: -1 }));
      {
        const cands = keyCandidates(node, f.next);
        return cands.length > 0 ? at({ phase: O_KEY, cands, pos: 1, ws: 0 }) : null;
      }
    case O_KEY: {
      const cands = f.cands!.filter((i) => node.props[i]!.key[f.pos] === b);
      if (cands.length === 0) return null;
      const p = f.pos + 1;
      // Quoted keys are prefix-free: a key that ends here is the only candidate left.
      const whole = cands.find((i) => node.props[i]!.key.length === p);
      if (whole !== undefined) return at({ phase: O_COLON, cands: null, pos: 0, chosen: whole, ws: 0 });
      return at({ cands, pos: p });
    }
    case O_COLON:
      if (isWs(b)) return ws();
      if (b !== 0x3a /* : */) return null;
      {
        const child = node.free ? anyAt(node.depth) : node.props[f.chosen]!.node;
        const after = at({ phase: O_AFTER_VALUE, next: node.free ? 0 : f.chosen + 1, ws: 0, chosen: -1 });
        return mk({ k: VALUE, node: child, ws: 0 }, after);
      }
    case O_AFTER_VALUE:
      if (isWs(b)) return ws();
      if (b === 0x2c /* , */) return node.free || f.next < node.props.length ? at({ phase: O_AFTER_COMMA, ws: 0 }) : null;
      if (b === 0x7d) return canClose(node, f.next) ? up : null;
      return null;
  }
  return null;
}

function arrStep(f: Extract<Frame, { k: typeof ARR }>, b: number, up: JsonState): JsonState | null {
  const node = f.node;
  const at = (g: Partial<typeof f>) => mk({ ...f, ...g }, up);
  if (isWs(b)) {
    const n = wsStep(f.ws, b);
    return n < 0 ? null : at({ ws: n });
  }
  switch (f.phase) {
    case A_OPEN:
      if (b === 0x5d /* ] */) return node.min === 0 ? up : null;
      if (node.max === 0) return null;
      return start(node.items, b, at({ phase: A_AFTER_VALUE, count: 1, ws: 0 }));
    case A_AFTER_VALUE:
      if (b === 0x2c) return f.count < node.max ? at({ phase: A_AFTER_COMMA, ws: 0 }) : null;
      if (b === 0x5d) return f.count >= node.min ? up : null;
      return null;
    case A_AFTER_COMMA:
      return start(node.items, b, at({ phase: A_AFTER_VALUE, count: f.count + 1, ws: 0 }));
  }
  return null;
}
