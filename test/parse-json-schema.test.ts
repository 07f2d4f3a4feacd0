import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvlError } from '../src/errors.ts';
import { acceptsEnd, stepBytes, valueState, type JsonState } from '../src/generate/parse/json-automaton.ts';
import { createConstraint, JsonConstraint, toolCallState } from '../src/generate/parse/json-constraint.ts';
import { anyObjectNode, compileJsonSchema, anyNode } from '../src/generate/parse/json-schema.ts';
import { parseToolCalls } from '../src/generate/parse/tool-calls.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';

const utf8 = new TextEncoder();
const accepts = (s: JsonState, text: string) => {
  const end = stepBytes(s, utf8.encode(text));
  return end !== null && acceptsEnd(end);
};

// A small JSON Schema validator for the supported subset, written from the JSON Schema
// definitions (independent of the automaton it checks).
function validate(v: unknown, s: Record<string, any>): boolean {
  if (s.const !== undefined) return JSON.stringify(v) === JSON.stringify(s.const);
  if (s.enum) return s.enum.some((e: unknown) => JSON.stringify(e) === JSON.stringify(v));
  if (s.anyOf) return s.anyOf.some((a: Record<string, any>) => validate(v, a));
  const types: string[] = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
  const typeOf = (x: unknown) => (x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x === 'number' ? (Number.isInteger(x) ? 'integer' : 'number') : typeof x);
  if (types.length && !types.some((t) => t === typeOf(v) || (t === 'number' && typeOf(v) === 'integer'))) return false;
  if (typeof v === 'string') {
    const n = [...v].length;
    if (s.minLength !== undefined && n < s.minLength) return false;
    if (s.maxLength !== undefined && n > s.maxLength) return false;
  }
  if (Array.isArray(v)) {
    if (s.minItems !== undefined && v.length < s.minItems) return false;
    if (s.maxItems !== undefined && v.length > s.maxItems) return false;
    if (s.items && !v.every((x) => validate(x, s.items))) return false;
  }
  if (typeOf(v) === 'object') {
    const o = v as Record<string, unknown>;
    for (const r of s.required ?? []) if (!(r in o)) return false;
    for (const [k, x] of Object.entries(o)) {
      if (s.properties?.[k]) {
        if (!validate(x, s.properties[k])) return false;
      } else if (s.additionalProperties === false) return false;
    }
  }
  return true;
}

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 6 },
    age: { type: 'integer' },
    score: { type: 'number' },
    tags: { type: 'array', items: { enum: ['red', 'green', 'blue'] }, maxItems: 3 },
    ok: { type: 'boolean' },
    note: { anyOf: [{ type: 'string', maxLength: 4 }, { type: 'null' }] },
    kind: { const: 'pet' },
  },
  required: ['name', 'age', 'tags', 'ok', 'kind'],
  additionalProperties: false,
};

test('unsupported schema keywords are refused, each named with where it is', () => {
  const schema = { type: 'object', properties: { a: { type: 'string', pattern: '^x' }, b: { type: 'integer', minimum: 3 } }, format: 'x' };
  assert.throws(
    () => compileJsonSchema(schema),
    (e) => isQvlError(e, 'OPTION_INVALID') && /pattern \(at \/properties\/a\)/.test(e.message) && /minimum \(at \/properties\/b\)/.test(e.message) && /format \(at \/\)/.test(e.message),
  );
  assert.throws(() => compileJsonSchema({ anyOf: [{ type: 'string' }, { enum: ['x'] }] }), (e) => isQvlError(e, 'OPTION_INVALID') && /same character/.test(e.message));
  assert.throws(() => compileJsonSchema({ $defs: { n: { type: 'array', items: { $ref: '#/$defs/n' } } }, $ref: '#/$defs/n' }), (e) => isQvlError(e, 'OPTION_INVALID') && /recursive/.test(e.message));
  assert.throws(() => compileJsonSchema({ type: 'object', properties: {}, required: ['x'] }), (e) => isQvlError(e, 'OPTION_INVALID') && /"x"/.test(e.message));
  // annotations are fine, and so are local references
  compileJsonSchema({ title: 'T', description: 'd', $defs: { s: { type: 'string' } }, type: 'object', properties: { a: { $ref: '#/$defs/s', description: 'x' } } });
});

test('free-form JSON: the automaton accepts what JSON.parse accepts (within its whitespace rules)', () => {
  const s = valueState(anyNode());
  const good = [
    '{"a":[1,2.5e3,-0,true,null,"x\\u00e9\\n"],"b":{}}',
    '[]',
    '"é🍤"',
    '-12.5E-3',
    JSON.stringify({ deep: [[{ x: [1, { y: 'z' }] }]], t: 'tab\tnew\nline' }, null, 2),
    '{ "a": 1 }',
  ];
  const bad = ['{"a":01}', '[1,]', '{"a" 1}', '"\\x"', '"\u0001"', 'tru', '1.', '-', '{,}', '{"a":1,}', '["a"', '"a', '[1 2]', '{"a":1}}', 'nul', '.5', '"\\u12G4"', '{\n\n"a":1}'];
  for (const t of good) {
    JSON.parse(t);
    assert.ok(accepts(s, t), `should accept ${JSON.stringify(t)}`);
  }
  for (const t of bad) assert.ok(!accepts(s, t), `should refuse ${JSON.stringify(t)}`);
  // invalid UTF-8 inside strings is refused
  assert.equal(stepBytes(s, Uint8Array.from([0x22, 0xc3, 0x28])), null);
});

test('schema grammar: required properties, lengths, items, enums, unions', () => {
  const s = valueState(compileJsonSchema(SCHEMA));
  const ok = { name: 'Rex', age: 3, tags: ['red'], ok: true, kind: 'pet' };
  assert.ok(accepts(s, JSON.stringify(ok)));
  assert.ok(accepts(s, JSON.stringify({ name: 'Rex', age: -3, score: 1.5, tags: [], ok: false, note: null, kind: 'pet' })));
  assert.ok(accepts(s, JSON.stringify(ok, null, 2)));
  const refused = [
    { ...ok, name: '' }, // minLength
    { ...ok, name: 'toolongname' }, // maxLength
    { ...ok, age: 1.5 }, // integer
    { ...ok, tags: ['pink'] }, // enum
    { ...ok, tags: ['red', 'red', 'red', 'red'] }, // maxItems
    { ...ok, kind: 'cat' }, // const
    { name: 'Rex', age: 3, tags: [], ok: true }, // required kind missing
    { ...ok, extra: 1 }, // no undeclared property
    { ...ok, note: 'toolong' },
  ];
  for (const v of refused) assert.ok(!accepts(s, JSON.stringify(v)), JSON.stringify(v));
  // properties come in schema order
  assert.ok(!accepts(s, JSON.stringify({ age: 3, name: 'Rex', tags: [], ok: true, kind: 'pet' })));
});

let tokenizer: Awaited<ReturnType<typeof loadTokenizer>>;
const EOS = [151645, 151643];
test('load the Qwen tokenizer', async () => {
  tokenizer = await loadTokenizer();
});

test('the vocabulary mask equals trying every token byte by byte', () => {
  const c = createConstraint(tokenizer, { kind: 'json_schema', schema: SCHEMA }, EOS);
  const start = valueState(compileJsonSchema(SCHEMA));
  const prefixes = ['', '{"na', '{"name": "R', '{"name":"Rex","age":12', '{"name":"Rex","age":1,"tags":["gr', '{"name":"Rex","age":1,"tags":[],"ok":true,"kind":"pet"}'];
  for (const prefix of prefixes) {
    const state = stepBytes(start, utf8.encode(prefix))!;
    assert.ok(state, prefix);
    const probe = new JsonConstraint(tokenizer, state, EOS);
    const got = probe.allowedTokens(151936);
    let mismatches = 0;
    let allowed = 0;
    for (let id = 0; id < 151936; id++) {
      const bytes = id < tokenizer.vocabSize && !tokenizer.isSpecial(id) ? tokenizer.tokenBytes(id) : undefined;
      let want = bytes !== undefined && bytes.length > 0 && stepBytes(state, bytes) !== null;
      if (EOS.includes(id)) want = acceptsEnd(state);
      if (want) allowed++;
      if ((got[id] === 1) !== want) mismatches++;
    }
    assert.equal(mismatches, 0, `prefix ${JSON.stringify(prefix)}`);
    assert.ok(allowed > 0, prefix);
  }
  assert.ok(c);
});

/** Greedy decoding over seeded random logits: the constraint alone decides what is valid. */
function randomWalk(c: JsonConstraint, seed: number, maxSteps: number): { ids: number[]; ended: boolean; maskMs: number[] } {
  let x = seed;
  const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const proc = c.logitsProcessor();
  const ids: number[] = [];
  const maskMs: number[] = [];
  const logits = new Float32Array(151936);
  for (let step = 0; step < maxSteps; step++) {
    for (let i = 0; i < logits.length; i++) logits[i] = rnd();
    const t0 = performance.now();
    proc(logits, ids);
    maskMs.push(performance.now() - t0);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
    if (EOS.includes(best)) return { ids, ended: true, maskMs };
    ids.push(best);
  }
  return { ids, ended: false, maskMs };
}

test('constrained random decoding always yields JSON that the schema validates', () => {
  const times: number[] = [];
  for (let seed = 1; seed <= 6; seed++) {
    const c = createConstraint(tokenizer, { kind: 'json_schema', schema: SCHEMA }, EOS);
    const r = randomWalk(c, seed, 600);
    const text = tokenizer.decode(r.ids);
    assert.ok(r.ended, `seed ${seed} did not finish: ${JSON.stringify(text)}`);
    const v = JSON.parse(text);
    assert.ok(validate(v, SCHEMA), `seed ${seed}: ${text}`);
    times.push(...r.maskMs);
  }
  times.sort((a, b) => a - b);
  // One mask costs a few ms here; a walk that re-scanned the vocabulary per byte would take seconds.
  assert.ok(times[times.length >> 1]! < 100, `median mask time ${times[times.length >> 1]} ms`);
});

test('json_object mode yields an object; a forced tool call yields a parsable call with valid arguments', () => {
  const obj = createConstraint(tokenizer, { kind: 'json_object' }, EOS);
  const r = randomWalk(obj, 42, 120);
  if (r.ended) {
    const v = JSON.parse(tokenizer.decode(r.ids));
    assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v));
  } else {
    // free-form objects may run long; what exists must still be a valid prefix
    assert.ok(stepBytes(valueState(anyObjectNode()), utf8.encode(tokenizer.decode(r.ids))) !== null);
  }
  const tools = [
    { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 5 } }, required: ['city'] } },
    { name: 'get_time', parameters: { type: 'object', properties: { utc: { type: 'boolean' } }, required: ['utc'] } },
  ];
  for (let seed = 1; seed <= 3; seed++) {
    const c = new JsonConstraint(tokenizer, toolCallState(tools), EOS);
    const w = randomWalk(c, seed, 400);
    assert.ok(w.ended);
    const parsed = parseToolCalls(tokenizer.decode(w.ids));
    assert.equal(parsed.toolCalls.length, 1, tokenizer.decode(w.ids));
    assert.equal(parsed.content, '');
    const call = parsed.toolCalls[0]!.function;
    const tool = tools.find((t) => t.name === call.name)!;
    assert.ok(tool, call.name);
    assert.ok(validate(JSON.parse(call.arguments), tool.parameters), call.arguments);
  }
});

test('a Thinking prompt: the forced prefix closes the think block and the answer holds the JSON', async () => {
  const { parseOutput } = await import('../src/generate/parse/output.ts');
  const c = createConstraint(tokenizer, { kind: 'json_schema', schema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } }, EOS, { prefix: '</think>\n\n' });
  const w = randomWalk(c, 9, 100);
  assert.ok(w.ended);
  const text = tokenizer.decode(w.ids);
  assert.ok(text.startsWith('</think>\n\n'), text);
  const out = parseOutput(text, { startsInThink: true });
  assert.equal(out.reasoning, '');
  assert.equal(typeof JSON.parse(out.content).ok, 'boolean');
});
