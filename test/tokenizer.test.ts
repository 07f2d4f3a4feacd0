import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { bundledTokenizerFiles, loadTokenizer } from '../src/tokenizer/tokenizer.ts';

const TINY = 'test/fixtures/tiny';
const tok = await loadTokenizer();

/** int64 tensor `name` of a safetensors file, as numbers. */
function readInt64(file: string, name: string): number[] | undefined {
  const buf = readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; data_offsets: [number, number] }
  >;
  const entry = header[name];
  if (entry === undefined) return undefined;
  assert.equal(entry.dtype, 'I64');
  const start = 8 + headerLen + entry.data_offsets[0];
  const out: number[] = [];
  for (let p = start; p < 8 + headerLen + entry.data_offsets[1]; p += 8) out.push(Number(buf.readBigInt64LE(p)));
  return out;
}

test('vocabulary size and the Qwen special tokens', () => {
  assert.equal(tok.vocabSize, 151669);
  const ids: Record<string, number> = {
    '<|endoftext|>': 151643,
    '<|im_start|>': 151644,
    '<|im_end|>': 151645,
    '<|vision_start|>': 151652,
    '<|vision_end|>': 151653,
    '<|image_pad|>': 151655,
    '<|video_pad|>': 151656,
    '<tool_call>': 151657,
    '<tool_response>': 151665,
    '<think>': 151667,
    '</think>': 151668,
  };
  for (const [token, id] of Object.entries(ids)) {
    assert.equal(tok.tokenToId(token), id, token);
    assert.equal(tok.idToToken(id), token);
    assert.deepEqual(tok.encode(token), [id], `${token} encodes to one id`);
  }
  for (let id = 151643; id <= 151656; id++) assert.equal(tok.isSpecial(id), true, `id ${id}`);
  for (let id = 151657; id <= 151668; id++) assert.equal(tok.isSpecial(id), false, `id ${id}`);
  assert.equal(tok.isSpecial(9707), false);
  assert.equal(tok.idToToken(151669), undefined);
  assert.equal(tok.idToToken(-1), undefined);
  assert.equal(tok.tokenToId('no such token'), undefined);
});

test('encode gives HF ids for every chat-template render in the fixtures', () => {
  const renders = JSON.parse(readFileSync(join(TINY, 'chat_template_renders.json'), 'utf8')) as {
    cases: { name: string; rendered: string; token_ids: number[] }[];
  };
  assert.ok(renders.cases.length >= 16);
  for (const c of renders.cases) assert.deepEqual(tok.encode(c.rendered), c.token_ids, c.name);
});

test('encode gives the input_ids of every reference case; decode gives its generated text', () => {
  const cases = readdirSync(TINY).filter((f) => /^case_.*\.json$/.test(f));
  let checkedIds = 0;
  let checkedText = 0;
  for (const file of cases) {
    const c = JSON.parse(readFileSync(join(TINY, file), 'utf8')) as {
      prompt_text?: string;
      expanded_prompt_text?: string;
      generated_ids?: number[];
      generated_text?: string;
    };
    const ids = readInt64(join(TINY, file.replace(/\.json$/, '.safetensors')), 'input_ids');
    const text = c.expanded_prompt_text ?? c.prompt_text;
    if (ids !== undefined && text !== undefined) {
      assert.deepEqual(tok.encode(text), ids, file);
      checkedIds++;
    }
    if (c.generated_ids !== undefined && c.generated_text !== undefined) {
      assert.equal(tok.decode(c.generated_ids, { skipSpecialTokens: true }), c.generated_text, file);
      checkedText++;
    }
  }
  assert.ok(checkedIds >= 6, `checked ${checkedIds} input_ids`);
  assert.ok(checkedText >= 5, `checked ${checkedText} generated texts`);
});

test('encode agrees with the independent Python BPE reference on tricky text', () => {
  const ref = JSON.parse(readFileSync('test/fixtures/tokenizer/encode_reference.json', 'utf8')) as {
    tokenizer_sha256: string;
    cases: { text: string; ids: number[] }[];
  };
  const sha = createHash('sha256').update(readFileSync(bundledTokenizerFiles().tokenizer)).digest('hex');
  assert.equal(sha, ref.tokenizer_sha256, 'the reference was made from the bundled tokenizer.json');
  for (const c of ref.cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
    // Byte-level BPE is lossless up to the NFC normalizer.
    assert.equal(tok.decode(c.ids), c.text.normalize('NFC'), JSON.stringify(c.text));
  }
});

test('decode: special tokens are skipped on request, <think> is kept', () => {
  const ids = tok.encode('<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHi!<|im_end|><|endoftext|>');
  assert.equal(tok.decode(ids), '<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHi!<|im_end|><|endoftext|>');
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'assistant\n<think>\nhmm\n</think>\n\nHi!');
});

test('decode: unknown ids are dropped, broken UTF-8 becomes U+FFFD, empty input is empty', () => {
  const hello = tok.encode('Hello');
  assert.equal(tok.decode([...hello, 151700, 151935, -1, 2 ** 31]), 'Hello');
  assert.equal(tok.decode([]), '');
  assert.deepEqual(tok.encode(''), []);
  // An emoji spread over several byte-level tokens: any strict prefix is an incomplete sequence.
  const emoji = tok.encode('🫠');
  assert.ok(emoji.length > 1, 'the emoji needs several tokens');
  assert.equal(tok.decode(emoji), '🫠');
  assert.equal(tok.decode(emoji.slice(0, -1)), '\uFFFD');
  assert.equal(tok.decode(Uint32Array.from(emoji)), '🫠', 'typed arrays work too');
});

test('tokenBytes gives the raw bytes of byte-level tokens', () => {
  const [space] = tok.encode(' ');
  assert.deepEqual([...tok.tokenBytes(space!)!], [0x20]);
  const ids = tok.encode('é');
  const bytes = ids.flatMap((id) => [...tok.tokenBytes(id)!]);
  assert.deepEqual(bytes, [0xc3, 0xa9]);
  assert.deepEqual([...tok.tokenBytes(151644)!], [...Buffer.from('<|im_start|>')]);
  assert.equal(tok.tokenBytes(151669), undefined);
});

test("the tiny fixture folder has no tokenizer.json: the bundled one is used with the folder's config", async () => {
  const t = await loadTokenizer(TINY);
  assert.equal(t.source, bundledTokenizerFiles().tokenizer);
  assert.equal(t.vocabSize, 151669);
  assert.equal(t.isSpecial(151645), true);
});

/** A tiny byte-level BPE tokenizer.json: a, b, c, space, comma, the merge "a b", one added token <x>. */
function tinyTokenizerJson(): object {
  return {
    version: '1.0',
    added_tokens: [
      { id: 5, content: '<x>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: { a: 0, b: 1, ab: 2, 'Ġ': 3, c: 4, ',': 6 },
      merges: [['a', 'b']],
    },
  };
}

const tempDirs: string[] = [];
after(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

function tempModelDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'qvl-tok-'));
  tempDirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

test("a model folder's own tokenizer.json wins over the bundled one", async () => {
  // No tokenizer_config.json: the bundled Qwen config must not be mixed into a foreign tokenizer.
  const dir = tempModelDir({ 'tokenizer.json': JSON.stringify(tinyTokenizerJson()) });
  const t = await loadTokenizer(dir);
  assert.equal(t.source, join(dir, 'tokenizer.json'));
  assert.equal(t.vocabSize, 7);
  assert.deepEqual(t.encode('ab<x>c a ,'), [2, 5, 4, 3, 0, 3, 6]);
  assert.equal(t.decode([2, 5, 4, 3, 0, 3, 6]), 'ab<x>c a ,');
  assert.equal(t.decode([2, 5, 4], { skipSpecialTokens: true }), 'abc');
});

test("tokenizer_config.json's added_tokens_decoder adds tokens and sets the special flag", async () => {
  const dir = tempModelDir({
    'tokenizer.json': JSON.stringify(tinyTokenizerJson()),
    'tokenizer_config.json': JSON.stringify({
      added_tokens_decoder: {
        '5': { content: '<x>', special: false },
        '7': { content: '<y>', special: true, normalized: false },
      },
    }),
  });
  const t = await loadTokenizer(dir);
  assert.equal(t.isSpecial(5), false);
  assert.equal(t.isSpecial(7), true);
  assert.deepEqual(t.encode('a<y>b'), [0, 7, 1]);
  assert.equal(t.vocabSize, 8);
});

test('clean_up_tokenization_spaces is honoured when the config asks for it', async () => {
  const dir = tempModelDir({
    'tokenizer.json': JSON.stringify(tinyTokenizerJson()),
    'tokenizer_config.json': JSON.stringify({ clean_up_tokenization_spaces: true }),
  });
  const t = await loadTokenizer(dir);
  // transformers' clean_up_tokenization turns " ," into ",".
  assert.equal(t.decode([0, 3, 6, 3, 2]), 'a, ab');
});

test('loading errors name the problem', async () => {
  await assert.rejects(loadTokenizer('/no/such/model/folder'), (e) => {
    assert.ok(isQvlError(e, 'FILE_NOT_FOUND'));
    assert.match(e.message, /\/no\/such\/model\/folder/);
    return true;
  });
  const bad = tempModelDir({ 'tokenizer.json': '{ not json', 'tokenizer_config.json': '{}' });
  await assert.rejects(loadTokenizer(bad), (e) => {
    assert.ok(isQvlError(e, 'CONFIG_INVALID'));
    assert.match(e.message, /tokenizer\.json is not valid JSON/);
    return true;
  });
  const notBpe = tempModelDir({
    'tokenizer.json': JSON.stringify({ model: { type: 'WordPiece', vocab: {} } }),
    'tokenizer_config.json': '{}',
  });
  await assert.rejects(loadTokenizer(notBpe), (e) => {
    assert.ok(isQvlError(e, 'CONFIG_INVALID'));
    assert.match(e.message, /expected a BPE model/);
    return true;
  });
  const conflict = tempModelDir({
    'tokenizer.json': JSON.stringify(tinyTokenizerJson()),
    'tokenizer_config.json': JSON.stringify({ added_tokens_decoder: { '5': { content: '<z>', special: true } } }),
  });
  await assert.rejects(loadTokenizer(conflict), (e) => {
    assert.ok(isQvlError(e, 'CONFIG_INVALID'));
    assert.match(e.message, /added token 5 is "<z>" but tokenizer\.json says "<x>"/);
    return true;
  });
});
