import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isQvlError } from '../src/errors.ts';
import { loadChatTemplate } from '../src/template/chat-template.ts';
import { normalizeMessages } from '../src/template/messages.ts';

const TINY = 'test/fixtures/tiny';
const instruct = await loadChatTemplate(TINY);
const fixture = JSON.parse(readFileSync(`${TINY}/chat_template_renders.json`, 'utf8')) as {
  cases: { name: string; messages: object[]; kwargs: Record<string, unknown>; rendered: string }[];
};

function fixtureCase(name: string, gen = true) {
  return fixture.cases.find((c) => c.name === name && c.kwargs.add_generation_prompt === gen)!;
}

function invalid(pattern: RegExp, detail?: Record<string, unknown>) {
  return (e: unknown) => {
    assert.ok(isQvlError(e, 'MESSAGE_INVALID'), `expected MESSAGE_INVALID, got ${String(e)}`);
    assert.match(e.message, pattern);
    if (detail !== undefined) for (const [k, v] of Object.entries(detail)) assert.equal(e.detail[k], v, k);
    return true;
  };
}

test('HF-style fixture messages normalize to the same render, media in order', () => {
  const img = fixtureCase('user_with_image');
  const a = normalizeMessages(img.messages);
  assert.equal(instruct.render(a.messages, { addGenerationPrompt: true }), img.rendered);
  assert.deepEqual(a.media, [{ kind: 'image', source: 'image_b.png', options: {} }]);

  const vid = fixtureCase('user_with_video');
  const b = normalizeMessages(vid.messages);
  assert.equal(instruct.render(b.messages, { addGenerationPrompt: true }), vid.rendered);
  assert.deepEqual(b.media, [{ kind: 'video', source: ['video_frame_0.png', 'video_frame_1.png'], options: {} }]);

  for (const name of ['text_only_user', 'text_only_user_structured', 'system_and_user', 'tools']) {
    const c = fixtureCase(name);
    const n = normalizeMessages(c.messages);
    assert.equal(
      instruct.render(n.messages, { addGenerationPrompt: true, tools: c.kwargs.tools as object[] | undefined }),
      c.rendered,
      name,
    );
    assert.deepEqual(n.media, []);
  }
});

test('OpenAI-style parts render like their HF equivalents', () => {
  const img = fixtureCase('user_with_image');
  for (const image_url of ['image_b.png', { url: 'image_b.png', detail: 'high' }]) {
    const { messages, media } = normalizeMessages([
      { role: 'user', content: [{ type: 'image_url', image_url }, { type: 'text', text: 'Describe this image.' }] },
    ]);
    assert.equal(instruct.render(messages, { addGenerationPrompt: true }), img.rendered);
    assert.deepEqual(media, [{ kind: 'image', source: 'image_b.png', options: {} }]);
  }
  const vid = fixtureCase('user_with_video');
  for (const part of [
    { type: 'video_url', video_url: { url: 'clip.mp4' } },
    { type: 'video_url', video_url: 'clip.mp4' },
    { type: 'video', video: ['f0.png', 'f1.png'], fps: 2 },
  ]) {
    const { messages } = normalizeMessages([{ role: 'user', content: [part, { type: 'text', text: 'What happens?' }] }]);
    assert.equal(instruct.render(messages, { addGenerationPrompt: true }), vid.rendered);
  }
});

test('media come out in prompt order with their options, across user and tool messages', () => {
  const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
  const { messages, media } = normalizeMessages([
    {
      role: 'user',
      content: [
        { type: 'text', text: 'A' },
        { type: 'image', image: bytes, min_pixels: 4096, max_pixels: 1048576 },
        { type: 'video', url: 'https://example.com/v.mp4', fps: 1.5, max_frames: 16, max_pixels: 200704 },
        { type: 'image', path: '/tmp/x.jpg' },
      ],
    },
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'shot', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: 'c1', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' }, max_pixels: 65536 }] },
    { role: 'user', content: [{ type: 'video', video: Uint8Array.of(1, 2, 3) }] },
  ]);
  assert.deepEqual(
    media.map((m) => [m.kind, m.options]),
    [
      ['image', { minPixels: 4096, maxPixels: 1048576 }],
      ['video', { fps: 1.5, maxFrames: 16, maxPixels: 200704 }],
      ['image', {}],
      ['image', { maxPixels: 65536 }],
      ['video', {}],
    ],
  );
  assert.equal(media[0]!.source, bytes, 'bytes are passed through, not copied');
  assert.equal(media[1]!.source, 'https://example.com/v.mp4');
  assert.equal(media[2]!.source, '/tmp/x.jpg');
  assert.equal(media[3]!.source, 'data:image/png;base64,AAAA');
  assert.deepEqual(media[4]!.source, Uint8Array.of(1, 2, 3));
  // The k-th media item is the k-th vision block of the prompt.
  const prompt = instruct.render(messages, { addGenerationPrompt: true, addVisionId: true });
  const blocks = [...prompt.matchAll(/(Picture|Video) \d+: <\|vision_start\|><\|(image|video)_pad\|>/g)].map((m) => m[2]);
  assert.deepEqual(blocks, media.map((m) => m.kind));
  // The template never sees the bytes.
  assert.deepEqual(messages[0]!.content, [{ type: 'text', text: 'A' }, { type: 'image' }, { type: 'video' }, { type: 'image' }]);
});

test('assistant tool calls: OpenAI JSON-string arguments become objects, as in the HF fixture', () => {
  const c = fixtureCase('tools');
  const { messages } = normalizeMessages([
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: "What's the weather in Paris?" },
    {
      role: 'assistant',
      content: null,
      tool_calls: [
        { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' } },
      ],
    },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": 21, "condition": "sunny"}' },
  ]);
  assert.equal(instruct.render(messages, { addGenerationPrompt: true, tools: c.kwargs.tools as object[] }), c.rendered);
  assert.deepEqual(messages[2]!.tool_calls, [
    { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } } },
  ]);
  assert.equal(messages[2]!.content, '');
  assert.equal(messages[3]!.tool_call_id, 'call_1');
});

test('tool-call argument forms', () => {
  const calls = (args: unknown, opts = {}) =>
    normalizeMessages(
      [{ role: 'assistant', content: 'x', tool_calls: [{ type: 'function', function: { name: 'f', arguments: args } }] }],
      opts,
    ).messages[0]!.tool_calls![0]!.function.arguments;
  assert.deepEqual(calls('{"a": [1, 2]}'), { a: [1, 2] });
  assert.equal(calls('not json'), 'not json', 'kept verbatim, as the template prints strings');
  assert.equal(calls('[1, 2]'), '[1, 2]', 'only JSON objects are parsed');
  assert.deepEqual(calls(''), {});
  assert.deepEqual(calls(undefined), {});
  assert.deepEqual(calls({ a: 1 }), { a: 1 });
  assert.equal(calls('{"a": 1}', { parseToolArguments: false }), '{"a": 1}');
  // Flat {name, arguments} without the "function" wrapper.
  const flat = normalizeMessages([{ role: 'assistant', content: '', tool_calls: [{ name: 'g', arguments: { b: 2 } }] }]);
  assert.deepEqual(flat.messages[0]!.tool_calls, [{ type: 'function', function: { name: 'g', arguments: { b: 2 } } }]);
});

test('roles: developer is system; reasoning_content is kept on assistant turns', () => {
  const { messages } = normalizeMessages([
    { role: 'developer', content: 'Be terse.' },
    { role: 'user', content: 'hi', name: 'ann' },
    { role: 'assistant', content: 'hello', reasoning_content: 'greet back' },
    { role: 'assistant', content: null, reasoning_content: 'only thoughts' },
  ]);
  assert.equal(messages[0]!.role, 'system');
  assert.equal(messages[1]!.name, 'ann');
  assert.equal(messages[2]!.reasoning_content, 'greet back');
  assert.equal(messages[3]!.content, '');
});

test('refusals name the message and part', () => {
  const user = (content: unknown) => [{ role: 'user', content }];
  const cases: [unknown, RegExp, Record<string, unknown>?][] = [
    [{ role: 'user' }, /messages must be an array/],
    [[], /messages is empty/],
    [['hi'], /messages\[0\]: expected an object, got "hi"/, { message: 0 }],
    [[{ content: 'x' }], /messages\[0\]: role is missing/],
    [[{ role: 'user', content: 'a' }, { role: 'robot', content: 'x' }], /messages\[1\]: unknown role "robot"/, { message: 1 }],
    [[{ role: 'user' }], /messages\[0\]: content is missing/],
    [[{ role: 'assistant', content: null }], /messages\[0\]: content is missing/],
    [user(42), /messages\[0\]: content must be a string or an array of parts, got number/],
    [user(['hi']), /messages\[0\]\.content\[0\]: expected a content part object/, { message: 0, part: 0 }],
    [user([{ text: 'hi' }]), /messages\[0\]\.content\[0\]: content part has no "type"/],
    [
      [{ role: 'user', content: 'a' }, { role: 'user', content: [{ type: 'text', text: 'ok' }, { type: 'audio', audio: 'a.wav' }] }],
      /messages\[1\]\.content\[1\]: unknown content part type "audio"/,
      { message: 1, part: 1 },
    ],
    [user([{ type: 'text' }]), /text part needs a string "text"/],
    [user([{ type: 'image' }]), /messages\[0\]\.content\[0\]: image part needs "image", "url" or "path"/],
    [user([{ type: 'image', image: 7 }]), /image "image" must be a string .* or bytes, got number/],
    [user([{ type: 'image', image: '' }]), /image "image" is empty/],
    [user([{ type: 'image_url', image_url: {} }]), /image_url part needs "image_url"/],
    [user([{ type: 'video_url' }]), /video_url part needs "video_url"/],
    [user([{ type: 'video' }]), /video part needs "video", "url" or "path"/],
    [user([{ type: 'video', video: [] }]), /video "video" has no frames/],
    [user([{ type: 'video', video: ['a.png', 3] }]), /video frame 1 must be a non-empty string, got number/],
    [user([{ type: 'image', image: 'a.png', min_pixels: 0 }]), /min_pixels must be a positive integer, got number/],
    [user([{ type: 'image', image: 'a.png', max_pixels: 1.5 }]), /max_pixels must be a positive integer/],
    [user([{ type: 'image', image: 'a.png', max_pixels: '100' }]), /max_pixels must be a positive integer, got "100"/],
    [user([{ type: 'image', image: 'a.png', min_pixels: 100, max_pixels: 10 }]), /min_pixels \(100\) is larger than max_pixels \(10\)/],
    [user([{ type: 'image', image: 'a.png', fps: 2 }]), /fps only applies to videos/],
    [user([{ type: 'video', video: 'v.mp4', fps: -1 }]), /fps must be a positive number/],
    [user([{ type: 'video', video: 'v.mp4', max_frames: 0 }]), /max_frames must be a positive integer/],
    [[{ role: 'system', content: [{ type: 'image', image: 'a.png' }] }], /images are only accepted in user and tool messages, not in system/],
    [
      [{ role: 'user', content: 'q' }, { role: 'assistant', content: [{ type: 'video_url', video_url: 'v.mp4' }] }],
      /messages\[1\]\.content\[0\]: videos are only accepted in user and tool messages, not in assistant/,
    ],
    [[{ role: 'user', content: 'x', tool_calls: [] }], /tool_calls are only allowed on assistant messages/],
    [[{ role: 'assistant', content: '', tool_calls: {} }], /tool_calls must be an array/],
    [[{ role: 'assistant', content: '', tool_calls: [{ type: 'function', function: {} }] }], /messages\[0\]\.tool_calls\[0\]: function name is missing/, { call: 0 }],
    [[{ role: 'assistant', content: '', tool_calls: [{ type: 'code', function: { name: 'f' } }] }], /type must be "function", got "code"/],
    [[{ role: 'assistant', content: '', tool_calls: [{ function: { name: 'f', arguments: 3 } }] }], /arguments must be a JSON string or an object, got number/],
    [[{ role: 'assistant', content: '', reasoning_content: 5 }], /reasoning_content must be a string/],
    [[{ role: 'user', content: 'x', reasoning_content: 'r' }], /reasoning_content is only allowed on assistant messages/],
    [[{ role: 'tool', content: 'x', tool_call_id: 12 }], /tool_call_id must be a string/],
  ];
  for (const [input, pattern, detail] of cases) {
    assert.throws(() => normalizeMessages(input), invalid(pattern, detail), String(pattern));
  }
});
