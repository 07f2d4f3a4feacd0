import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promptOpensThink, splitThinking, ThinkStreamSplitter } from '../src/generate/parse/think.ts';

// What the Qwen3-VL Thinking template renders as the generation prompt, and what the Instruct one does.
const THINKING_PROMPT = '<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n<think>\n';
const INSTRUCT_PROMPT = '<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n';

test('the prompt says whether output starts inside <think>', () => {
  assert.equal(promptOpensThink(THINKING_PROMPT), true);
  assert.equal(promptOpensThink(INSTRUCT_PROMPT), false);
  // an earlier turn's closed think block does not count
  const earlier = '<|im_start|>assistant\n<think>\na\n</think>\n\nb<|im_end|>\n' + INSTRUCT_PROMPT;
  assert.equal(promptOpensThink(earlier), false);
  // a user who writes "<think>" does not open one for the model
  assert.equal(promptOpensThink('<|im_start|>user\n<think><|im_end|>\n<|im_start|>assistant\n'), false);
});

test('Thinking output: reasoning before </think>, answer after; framing newlines dropped', () => {
  const r = splitThinking('Let me look.\nIt is blue.\n</think>\n\nThe sky is blue.', true);
  assert.deepEqual(r, { reasoning: 'Let me look.\nIt is blue.', content: 'The sky is blue.', reasoningTruncated: false });
});

test('no </think>: everything is reasoning, marked truncated', () => {
  assert.deepEqual(splitThinking('still thinking about', true), { reasoning: 'still thinking about', content: '', reasoningTruncated: true });
});

test('a model that opens <think> itself is split too; plain answers are left alone', () => {
  assert.deepEqual(splitThinking('<think>\nhmm\n</think>\n\nyes', false), { reasoning: 'hmm', content: 'yes', reasoningTruncated: false });
  const plain = 'The answer mentions </think> but is not reasoning.';
  assert.deepEqual(splitThinking(plain, false), { content: plain, reasoningTruncated: false });
});

function streamed(text: string, startsInThink: boolean, cut: number): { reasoning: string; content: string } {
  const s = new ThinkStreamSplitter(startsInThink);
  let reasoning = '';
  let content = '';
  for (let i = 0; i < text.length; i += cut) {
    const d = s.push(text.slice(i, i + cut));
    reasoning += d.reasoning;
    content += d.content;
  }
  const d = s.flush();
  return { reasoning: reasoning + d.reasoning, content: content + d.content };
}

test('streaming in any chunking gives what the whole-text split gives', () => {
  const cases: [string, boolean][] = [
    ['Let me look.\nIt is blue.\n</think>\n\nThe sky is blue.', true],
    ['\nfirst line\n\n</think>\n\nanswer\nwith lines\n', true],
    ['never closes <', true],
    ['<think>\nhmm\n</think>\n\nyes', false],
    ['  <think>x</think>y', false],
    ['<thin but not a tag', false],
    ['plain answer </think> text', false],
    ['</think>only answer', true],
  ];
  for (const [text, inside] of cases) {
    const whole = splitThinking(text, inside);
    for (const cut of [1, 2, 3, 7, 100]) {
      const got = streamed(text, inside, cut);
      assert.deepEqual(got, { reasoning: whole.reasoning ?? '', content: whole.content }, `${JSON.stringify(text)} cut ${cut}`);
    }
  }
});

test('the streaming splitter never emits part of the closing tag as reasoning', () => {
  const s = new ThinkStreamSplitter(true);
  let reasoning = '';
  for (const piece of ['abc', '</', 'thi', 'nk>', '\n\nok']) reasoning += s.push(piece).reasoning;
  assert.equal(reasoning, 'abc');
});
