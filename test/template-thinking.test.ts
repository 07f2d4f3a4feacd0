import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ChatTemplate, loadChatTemplate } from '../src/template/chat-template.ts';
import { normalizeMessages } from '../src/template/messages.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';

const DIR = 'test/fixtures/templates/qwen3-vl-thinking';
/** sha256 of the Qwen3-VL-8B-Thinking chat_template, as published by other projects that pin it. */
const PUBLISHED_SHA256 = '36e042fe45641f067b1f2381fcc8955d10d956a3ed333ecdf7f7eb0916f68956';

const oracle = JSON.parse(readFileSync('test/fixtures/templates/renders.json', 'utf8')) as {
  template_sha256: Record<string, string>;
  special_tokens: Record<string, string>;
  cases: {
    template: string;
    name: string;
    messages: object[];
    kwargs: { add_generation_prompt?: boolean; tools?: object[]; add_vision_id?: boolean };
    rendered: string;
  }[];
};
const loaded = await loadChatTemplate(DIR);
const thinking = new ChatTemplate(loaded.source, { specialTokens: oracle.special_tokens });
const cases = oracle.cases.filter((c) => c.template === 'thinking');

function render(c: (typeof cases)[number], messages: object[] = c.messages): string {
  return thinking.render(messages, {
    addGenerationPrompt: c.kwargs.add_generation_prompt,
    tools: c.kwargs.tools,
    addVisionId: c.kwargs.add_vision_id,
  });
}

test('the fixture holds the published Qwen3-VL Thinking template', () => {
  const sha = createHash('sha256').update(loaded.source).digest('hex');
  assert.equal(sha, PUBLISHED_SHA256);
  assert.equal(oracle.template_sha256.thinking, PUBLISHED_SHA256, 'the renders were made from the same text');
});

test('every Thinking render matches Python jinja2 in the transformers environment', () => {
  assert.ok(cases.length >= 10);
  for (const c of cases) assert.equal(render(c), c.rendered, c.name);
});

test('the generation prompt opens the think block, and <think> tokenizes to its own id', async () => {
  const c = cases.find((x) => x.name === 'user_only' && x.kwargs.add_generation_prompt)!;
  const out = render(c);
  assert.ok(out.endsWith('<|im_start|>assistant\n<think>\n'));
  const tok = await loadTokenizer();
  // <|im_start|> assistant \n <think> \n  (the first three ids as in the Instruct fixture renders)
  assert.deepEqual(tok.encode(out).slice(-5), [151644, 77091, 198, 151667, 198]);
});

test('reasoning before the last user query is dropped, after it is kept', () => {
  const c = cases.find((x) => x.name === 'multi_turn_reasoning' && !x.kwargs.add_generation_prompt)!;
  const out = render(c);
  assert.ok(!out.includes('Simple arithmetic.'), 'earlier turn loses its reasoning');
  assert.ok(out.includes('<think>\nI see whiskers.\n</think>\n\nA cat.'), 'the last turn keeps it');
});

test('an OpenAI-style request renders like the equivalent HF messages', () => {
  const c = cases.find((x) => x.name === 'tool_flow' && x.kwargs.add_generation_prompt)!;
  const openai = [
    { role: 'system', content: [{ type: 'text', text: 'Use tools ' }, { type: 'text', text: 'when needed.' }] },
    { role: 'user', content: 'Weather in Zürich and 2*21?' },
    {
      role: 'assistant',
      content: null,
      reasoning_content: 'Need two tools.',
      tool_calls: [
        {
          id: 'a',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"city":"Zürich","threshold":0.5,"flags":[true,null]}' },
        },
        { id: 'b', type: 'function', function: { name: 'calc', arguments: '{"expr":"2*21"}' } },
      ],
    },
    { role: 'tool', tool_call_id: 'a', content: '{"temp": 21.5}' },
    {
      role: 'tool',
      tool_call_id: 'b',
      content: [
        { type: 'text', text: 'chart: ' },
        { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
      ],
    },
  ];
  // The HF case passed the calc arguments as a string (printed verbatim) and get_weather's as an object.
  const { messages, media } = normalizeMessages(openai);
  const calc = messages[2]!.tool_calls![1]!;
  calc.function.arguments = '{"expr":"2*21"}';
  assert.equal(render(c, messages), c.rendered);
  assert.deepEqual(
    media.map((m) => m.kind),
    ['image'],
  );
});
