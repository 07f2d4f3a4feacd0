/**
 * JSON mode does not let a model fill its answer with whitespace: decoding that prefers
 * whitespace tokens above all others still opens with the value and leaves at most one
 * whitespace byte between two tokens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createConstraint, JsonConstraint, constraintStart, toolCallState } from '../src/generate/parse/json-constraint.ts';
import { parseToolCalls } from '../src/generate/parse/tool-calls.ts';
import { loadTokenizer, type QwenTokenizer } from '../src/tokenizer/tokenizer.ts';

const EOS = [151645, 151643];
const VOCAB = 151936;
const tokenizer: QwenTokenizer = await loadTokenizer();

// Scores that put every token made only of spaces, tabs and newlines first (longest first), then
// the rest in a fixed pseudo-random order: the worst case for whitespace.
const scores = new Float32Array(VOCAB);
{
  let x = 7;
  for (let id = 0; id < VOCAB; id++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    scores[id] = x / 2 ** 32;
    const bytes = id < tokenizer.vocabSize && !tokenizer.isSpecial(id) ? tokenizer.tokenBytes(id) : undefined;
    if (bytes && bytes.length > 0 && bytes.every((b) => b === 0x20 || b === 0x09 || b === 0x0a)) scores[id] = 10 + bytes.length;
  }
  // ending is never the model's first wish
  for (const id of EOS) scores[id] = -1;
}

function greedy(c: JsonConstraint, maxSteps: number): { text: string; ended: boolean } {
  const proc = c.logitsProcessor();
  const ids: number[] = [];
  const logits = new Float32Array(VOCAB);
  for (let s = 0; s < maxSteps; s++) {
    logits.set(scores);
    proc(logits, ids);
    let best = 0;
    for (let i = 1; i < VOCAB; i++) if (logits[i]! > logits[best]!) best = i;
    if (EOS.includes(best)) return { text: tokenizer.decode(ids), ended: true };
    ids.push(best);
  }
  return { text: tokenizer.decode(ids), ended: false };
}

/** The longest run of whitespace outside JSON strings. */
function longestGap(json: string): number {
  let inString = false;
  let escaped = false;
  let run = 0;
  let longest = 0;
  for (const ch of json) {
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') longest = Math.max(longest, ++run);
    else {
      run = 0;
      if (ch === '"') inString = true;
    }
  }
  return longest;
}

const SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 6 }, n: { type: 'integer' }, tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 2 } },
  required: ['name', 'n', 'tags'],
};

test('without the cap, whitespace-loving decoding opens with a run of whitespace (what the cap prevents)', () => {
  const c = new JsonConstraint(tokenizer, constraintStart({ kind: 'json_object' }), EOS);
  const r = greedy(c, 12);
  assert.match(r.text, /^\s{5,}/, JSON.stringify(r.text));
});

test('json_object: the answer starts with "{" and no gap holds more than one whitespace byte', () => {
  const r = greedy(createConstraint(tokenizer, { kind: 'json_object' }, EOS), 60);
  assert.equal(r.text[0], '{', JSON.stringify(r.text));
  assert.ok(longestGap(r.text) <= 1, JSON.stringify(r.text));
});

test('json_schema: complete, valid JSON with single-byte gaps', () => {
  const r = greedy(createConstraint(tokenizer, { kind: 'json_schema', schema: SCHEMA }, EOS), 200);
  assert.ok(r.ended, JSON.stringify(r.text));
  const v = JSON.parse(r.text);
  assert.deepEqual(Object.keys(v), ['name', 'n', 'tags']);
  assert.ok(longestGap(r.text) <= 1, JSON.stringify(r.text));
  const wider = greedy(createConstraint(tokenizer, { kind: 'json_schema', schema: SCHEMA }, EOS, { maxWhitespace: 3 }), 200);
  assert.equal(longestGap(wider.text), 3, JSON.stringify(wider.text));
});

test('whitespace the grammar requires stays: a forced tool call and a Thinking prefix still complete', () => {
  const tools = [{ name: 'get_time', parameters: { type: 'object', properties: { utc: { type: 'boolean' } }, required: ['utc'] } }];
  const call = greedy(new JsonConstraint(tokenizer, toolCallState(tools), EOS, { maxWhitespace: 1 }), 100);
  assert.ok(call.ended, JSON.stringify(call.text));
  const parsed = parseToolCalls(call.text);
  assert.equal(parsed.toolCalls.length, 1, call.text);
  assert.equal(typeof JSON.parse(parsed.toolCalls[0]!.function.arguments).utc, 'boolean');
  const think = greedy(createConstraint(tokenizer, { kind: 'json_schema', schema: SCHEMA }, EOS, { prefix: '</think>\n\n' }), 200);
  assert.ok(think.ended && think.text.startsWith('</think>\n\n{'), JSON.stringify(think.text));
});
