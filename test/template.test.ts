import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { ChatTemplate, loadChatTemplate } from '../src/template/chat-template.ts';
import { pyFloatRepr } from '../src/template/py-json.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';

const TINY = 'test/fixtures/tiny';
const instruct = await loadChatTemplate(TINY);
const tok = await loadTokenizer();

interface FixtureRender {
  name: string;
  messages: object[];
  kwargs: { add_generation_prompt?: boolean; tools?: object[]; add_vision_id?: boolean; [k: string]: unknown };
  rendered: string;
  token_ids?: number[];
}

interface OracleRenders {
  template_sha256: Record<string, string>;
  special_tokens: Record<string, string>;
  float_reprs: { input: string; repr: string }[];
  cases: (FixtureRender & { template: string })[];
}

const oracle = JSON.parse(readFileSync('test/fixtures/templates/renders.json', 'utf8')) as OracleRenders;

function renderCase(t: ChatTemplate, c: FixtureRender): string {
  const { add_generation_prompt, tools, add_vision_id, ...extra } = c.kwargs;
  return t.render(c.messages, { addGenerationPrompt: add_generation_prompt, tools, addVisionId: add_vision_id, extra });
}

const tempDirs: string[] = [];
after(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'qvl-tpl-'));
  tempDirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function expectQvl(code: string, pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(isQvlError(e), `expected a QvlError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, pattern);
    return true;
  };
}

test('the tiny folder loads chat_template.json', () => {
  assert.equal(instruct.origin, join(TINY, 'chat_template.json'));
});

test('every HF render in the fixtures is byte-identical, and so are its token ids', () => {
  const fx = JSON.parse(readFileSync(join(TINY, 'chat_template_renders.json'), 'utf8')) as {
    cases: FixtureRender[];
    plain_jinja2_default_env_tools_render: string;
  };
  assert.equal(fx.cases.length, 16);
  for (const c of fx.cases) {
    const out = renderCase(instruct, c);
    assert.equal(out, c.rendered, c.name);
    assert.deepEqual(tok.encode(out), c.token_ids, c.name);
  }
  // A default jinja2 environment (HTML-safe, key-sorting tojson) renders the tools case differently.
  const tools = fx.cases.find((c) => c.name === 'tools' && c.kwargs.add_generation_prompt)!;
  assert.notEqual(renderCase(instruct, tools), fx.plain_jinja2_default_env_tools_render);
});

test("each reference case's messages render to its prompt_text", () => {
  let n = 0;
  for (const file of readdirSync(TINY).filter((f) => /^case_.*\.json$/.test(f))) {
    const c = JSON.parse(readFileSync(join(TINY, file), 'utf8')) as { messages?: object[]; prompt_text?: string };
    if (c.messages === undefined || c.prompt_text === undefined) continue;
    assert.equal(instruct.render(c.messages, { addGenerationPrompt: true }), c.prompt_text, file);
    n++;
  }
  assert.ok(n >= 5, `checked ${n} cases`);
});

test('Instruct renders with tricky tool JSON, vision ids and tool images match Python jinja2', () => {
  const cases = oracle.cases.filter((c) => c.template === 'instruct');
  assert.ok(cases.length >= 3);
  const src = JSON.parse(readFileSync(join(TINY, 'chat_template.json'), 'utf8')).chat_template as string;
  const t = new ChatTemplate(src, { specialTokens: oracle.special_tokens });
  for (const c of cases) assert.equal(renderCase(t, c), c.rendered, c.name);
});

test('tojson matches Python json.dumps for indent, sort_keys, ensure_ascii, separators and floats', () => {
  const probe = new ChatTemplate(
    [
      '{{ v | tojson }}',
      '{{ v | tojson(indent=2) }}',
      "{{ v | tojson(indent='\\t') }}",
      '{{ v | tojson(indent=0) }}',
      '{{ v | tojson(sort_keys=true) }}',
      '{{ v | tojson(ensure_ascii=true) }}',
      "{{ v | tojson(separators=(',', ':')) }}",
      '{{ v | tojson(true) }}',
      '{{ (7 / 2) | tojson }}|{{ (4 / 2) | tojson }}|{{ 3.0 | tojson }}|{{ 123456789.125 | tojson }}',
    ].join('\n'),
  );
  const c = oracle.cases.find((x) => x.template === 'probe')!;
  assert.equal(renderCase(probe, c), c.rendered);
});

test("Python's float repr", () => {
  assert.ok(oracle.float_reprs.length >= 15);
  for (const { input, repr } of oracle.float_reprs) assert.equal(pyFloatRepr(Number(input)), repr, input);
});

test('special tokens from tokenizer_config.json are template variables, as in transformers', () => {
  const dir = tempDir({
    'chat_template.jinja': '{{ eos_token }}|{{ pad_token }}|{{ bos_token is defined }}',
    'tokenizer_config.json': readFileSync(join(TINY, 'tokenizer_config.json'), 'utf8'),
  });
  return loadChatTemplate(dir).then((t) => {
    // bos_token is null in Qwen's config, and transformers leaves unset tokens out.
    assert.equal(t.render([{ role: 'user', content: 'x' }]), '<|im_end|>|<|endoftext|>|false');
  });
});

test('template sources: .jinja beats .json beats tokenizer_config.json; named templates', async () => {
  const both = tempDir({
    'chat_template.jinja': 'JINJA',
    'chat_template.json': JSON.stringify({ chat_template: 'JSON' }),
    'tokenizer_config.json': JSON.stringify({ chat_template: 'CONFIG' }),
  });
  assert.equal((await loadChatTemplate(both)).render([{}]), 'JINJA');
  const json = tempDir({
    'chat_template.json': JSON.stringify({ chat_template: 'JSON' }),
    'tokenizer_config.json': JSON.stringify({ chat_template: 'CONFIG' }),
  });
  assert.equal((await loadChatTemplate(json)).render([{}]), 'JSON');
  const config = tempDir({ 'tokenizer_config.json': JSON.stringify({ chat_template: 'CONFIG' }) });
  const fromConfig = await loadChatTemplate(config);
  assert.equal(fromConfig.render([{}]), 'CONFIG');
  assert.equal(fromConfig.origin, join(config, 'tokenizer_config.json'));
  const named = tempDir({
    'tokenizer_config.json': JSON.stringify({
      chat_template: [
        { name: 'default', template: 'DEFAULT' },
        { name: 'tool_use', template: 'TOOLS' },
      ],
    }),
  });
  assert.equal((await loadChatTemplate(named)).render([{}]), 'DEFAULT');
  assert.equal((await loadChatTemplate(named, { name: 'tool_use' })).render([{}]), 'TOOLS');
  await assert.rejects(loadChatTemplate(named, { name: 'rag' }), expectQvl('TEMPLATE_ERROR', /no template named "rag"/));
});

test('loading errors name the file', async () => {
  await assert.rejects(loadChatTemplate(tempDir({})), expectQvl('FILE_NOT_FOUND', /no chat template in .*chat_template\.jinja/));
  await assert.rejects(
    loadChatTemplate(tempDir({ 'chat_template.json': JSON.stringify({ template: 'x' }) })),
    expectQvl('TEMPLATE_ERROR', /chat_template\.json has no "chat_template" key/),
  );
  await assert.rejects(
    loadChatTemplate(tempDir({ 'chat_template.json': '{oops' })),
    expectQvl('CONFIG_INVALID', /chat_template\.json is not valid JSON/),
  );
  await assert.rejects(
    loadChatTemplate(tempDir({ 'chat_template.jinja': '{% if %}' })),
    expectQvl('TEMPLATE_ERROR', /chat_template\.jinja: cannot parse the chat template/),
  );
});

test('render errors become TEMPLATE_ERROR with the reason', () => {
  const raising = new ChatTemplate("{{ raise_exception('System message must be at the beginning.') }}", {
    origin: 'my template',
  });
  assert.throws(
    () => raising.render([{ role: 'user', content: 'x' }]),
    expectQvl('TEMPLATE_ERROR', /my template refused the messages: System message must be at the beginning\./),
  );
  assert.throws(() => instruct.render([]), expectQvl('TEMPLATE_ERROR', /no messages to render/));
  const undefinedJson = new ChatTemplate('{{ messages[0].missing | tojson }}');
  assert.throws(
    () => undefinedJson.render([{ role: 'user', content: 'x' }]),
    expectQvl('TEMPLATE_ERROR', /Undefined is not JSON serializable/),
  );
  const badKwarg = new ChatTemplate('{{ messages | tojson(width=3) }}');
  assert.throws(() => badKwarg.render([{}]), expectQvl('TEMPLATE_ERROR', /unexpected keyword argument 'width'/));
  const circular: Record<string, unknown> = { role: 'user', content: 'x' };
  circular.self = circular;
  assert.throws(() => instruct.render([circular]), expectQvl('TEMPLATE_ERROR', /circular reference/));
});

test('binary media in messages is not walked by the template', () => {
  const big = Buffer.alloc(8 << 20);
  const t0 = performance.now();
  const out = instruct.render([{ role: 'user', content: [{ type: 'image', image: big }, { type: 'text', text: 'hi' }] }]);
  assert.equal(out, '<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n');
  assert.ok(performance.now() - t0 < 1000, 'rendering must not iterate over the bytes');
});

test('strftime_now and range work like Python', () => {
  const t = new ChatTemplate("{{ strftime_now('%Y-%m') }}|{% for i in range(3) %}{{ i }}{% endfor %}|{{ range(5, 0, -2) | join(',') }}");
  const now = new Date();
  const ym = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`;
  assert.equal(t.render([{}]), `${ym}|012|5,3,1`);
});
