import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseToolCalls, ToolCallStreamParser, type ToolStreamEvent } from '../src/generate/parse/tool-calls.ts';
import { OutputStreamParser, parseOutput } from '../src/generate/parse/output.ts';

// The form Qwen's chat template teaches (see the tool section of its system prompt).
const ONE = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n</tool_call>';
const TWO = ONE + '\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>';

test('one tool call: name and arguments (as a JSON string, as OpenAI sends them)', () => {
  const r = parseToolCalls(ONE);
  assert.equal(r.content, '');
  assert.equal(r.toolCalls.length, 1);
  const c = r.toolCalls[0]!;
  assert.match(c.id, /^call_[0-9a-f]{24}$/);
  assert.equal(c.type, 'function');
  assert.equal(c.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(c.function.arguments), { city: 'Paris', unit: 'C' });
});

test('text before calls is content; the newlines that separate calls are not', () => {
  const r = parseToolCalls('Let me check.\n' + TWO);
  assert.equal(r.content, 'Let me check.');
  assert.deepEqual(
    r.toolCalls.map((c) => c.function.name),
    ['get_weather', 'get_time'],
  );
  assert.notEqual(r.toolCalls[0]!.id, r.toolCalls[1]!.id);
});

test('malformed JSON, a missing name or a non-object stays in the content, verbatim', () => {
  for (const bad of ['<tool_call>\n{"name": "f", "arguments": {\n</tool_call>', '<tool_call>{"arguments": {}}</tool_call>', '<tool_call>[1, 2]</tool_call>']) {
    const text = `Before\n${bad}\nafter`;
    const r = parseToolCalls(text);
    assert.deepEqual(r.toolCalls, []);
    assert.equal(r.content, text);
  }
});

test('string arguments are kept as given; an unclosed last call still counts when its JSON is whole', () => {
  const r = parseToolCalls('<tool_call>\n{"name": "f", "arguments": "{\\"a\\": 1}"}');
  assert.equal(r.toolCalls.length, 1);
  assert.equal(r.toolCalls[0]!.function.arguments, '{"a": 1}');
});

test('text without calls is returned exactly, trailing whitespace included', () => {
  for (const t of ['hello\n', 'a < b and <tool not a tag', '']) assert.equal(parseToolCalls(t).content, t);
});

function run(text: string, cut: number): ToolStreamEvent[] {
  const p = new ToolCallStreamParser();
  const out: ToolStreamEvent[] = [];
  for (let i = 0; i < text.length; i += cut) out.push(...p.push(text.slice(i, i + cut)));
  out.push(...p.flush());
  return out;
}

test('streaming: never half a call as content, whatever the chunking; same result as the whole text', () => {
  const texts = ['Let me check.\n' + TWO, ONE + '\nDone.', 'no calls at all\n', 'x <tool_call>{bad</tool_call> y'];
  for (const text of texts) {
    const whole = parseToolCalls(text);
    for (const cut of [1, 2, 5, 11, 1000]) {
      const events = run(text, cut);
      const content = events.filter((e) => e.type === 'content').map((e) => (e as { text: string }).text);
      const calls = events.filter((e) => e.type === 'tool_call').map((e) => (e as { call: { function: object } }).call.function);
      assert.equal(content.join(''), whole.content, `${JSON.stringify(text)} cut ${cut}`);
      assert.deepEqual(calls, whole.toolCalls.map((c) => c.function));
      if (whole.toolCalls.length > 0) for (const c of content) assert.ok(!c.includes('tool_call') && !c.includes('"name"'), c);
    }
  }
});

test('output: reasoning, then tool calls parsed only from the answer', () => {
  const text = 'I need the weather.\n</think>\n\n' + ONE;
  const whole = parseOutput(text, { startsInThink: true, toolCalls: true });
  assert.equal(whole.reasoning, 'I need the weather.');
  assert.equal(whole.content, '');
  assert.equal(whole.toolCalls[0]!.function.name, 'get_weather');
  // without tools offered, the block is just text
  assert.equal(parseOutput(ONE, { toolCalls: false }).content, ONE);
  const p = new OutputStreamParser({ startsInThink: true, toolCalls: true });
  const events = [...[...text].flatMap((ch) => p.push(ch)), ...p.finish()];
  assert.equal(events.filter((e) => e.type === 'reasoning').map((e) => (e as { text: string }).text).join(''), 'I need the weather.');
  assert.equal(events.filter((e) => e.type === 'tool_call').length, 1);
  assert.equal(events.filter((e) => e.type === 'content').length, 0);
});
