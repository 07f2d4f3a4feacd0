import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { StreamingDetokenizer } from '../src/tokenizer/stream-decoder.ts';

const tok = await loadTokenizer();

function stream(ids: readonly number[], skipSpecialTokens = false): string[] {
  const s = new StreamingDetokenizer(tok, { skipSpecialTokens });
  const deltas = ids.map((id) => s.push(id));
  deltas.push(s.flush());
  return deltas;
}

/** No lone surrogate anywhere (String.prototype.isWellFormed is not in every Node 20 typing). */
function wellFormed(s: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

test('an emoji split over several tokens comes out whole, once its last byte arrives', () => {
  const ids = tok.encode('🫠');
  assert.ok(ids.length >= 2, 'the emoji needs several byte-level tokens');
  const deltas = stream(ids);
  assert.deepEqual(deltas.slice(0, ids.length - 1), new Array(ids.length - 1).fill(''));
  assert.equal(deltas[ids.length - 1], '🫠');
  assert.equal(deltas.at(-1), '');
});

test('deltas are well-formed and concatenate to decode(all) on multilingual text', () => {
  const ref = JSON.parse(readFileSync('test/fixtures/tokenizer/encode_reference.json', 'utf8')) as {
    cases: { text: string }[];
  };
  for (const { text } of ref.cases) {
    const ids = tok.encode(text);
    for (const skip of [false, true]) {
      const deltas = stream(ids, skip);
      for (const d of deltas) {
        assert.ok(wellFormed(d), `lone surrogate in ${JSON.stringify(d)}`);
        assert.ok(!d.includes('\uFFFD'), `replacement char for ${JSON.stringify(text)}`);
      }
      assert.equal(deltas.join(''), tok.decode(ids, { skipSpecialTokens: skip }), JSON.stringify(text));
    }
  }
});

test('CJK, ZWJ sequences and flags stream without splitting characters', () => {
  const text = '東京 👨‍👩‍👧‍👦 🇫🇷 naïve 한국어';
  const ids = tok.encode(text);
  const deltas = stream(ids);
  assert.equal(deltas.join(''), text);
  // Every delta ends on a code point boundary: re-encoding it to UTF-8 and back is lossless.
  for (const d of deltas) assert.equal(new TextDecoder().decode(new TextEncoder().encode(d)), d);
});

test('special tokens are skipped on request; <think> is not special', () => {
  const ids = tok.encode('<|im_start|>assistant\n<think>\nx\n</think>\n\ny<|im_end|>');
  assert.equal(stream(ids, true).join(''), 'assistant\n<think>\nx\n</think>\n\ny');
  assert.equal(stream(ids, false).join(''), '<|im_start|>assistant\n<think>\nx\n</think>\n\ny<|im_end|>');
});

test('a stream cut inside a character flushes U+FFFD, exactly like decode', () => {
  const ids = tok.encode('ok 🫠').slice(0, -1);
  const deltas = stream(ids);
  assert.equal(deltas.join(''), tok.decode(ids));
  assert.equal(deltas.at(-1), '\uFFFD');
});

test('unknown ids are ignored, and the detokenizer is reusable after flush', () => {
  const s = new StreamingDetokenizer(tok);
  assert.equal(s.push(151900), '');
  const [h] = tok.encode('Hello');
  assert.equal(s.push(h!), 'Hello');
  assert.equal(s.flush(), '');
  const part = tok.encode('🫠');
  s.push(part[0]!);
  assert.equal(s.flush(), '\uFFFD');
  assert.equal(s.push(h!), 'Hello', 'nothing from the previous stream leaks');
});

test('property: random id sequences (broken UTF-8 included) stream to exactly decode(all)', () => {
  // Deterministic PRNG (mulberry32), so a failure is reproducible.
  let seed = 0x5eed1234;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  // Single-byte tokens for 0x80..0xFF make lead/continuation bytes in every combination.
  const byteTokens: number[] = [];
  for (let id = 0; id < 300; id++) {
    const bytes = tok.tokenBytes(id)!;
    if (bytes.length === 1 && bytes[0]! >= 0x80) byteTokens.push(id);
  }
  assert.ok(byteTokens.length >= 64, `found ${byteTokens.length} single high-byte tokens`);
  for (let round = 0; round < 300; round++) {
    const ids: number[] = [];
    const n = 1 + Math.floor(rand() * 12);
    for (let k = 0; k < n; k++) {
      const r = rand();
      ids.push(
        r < 0.6
          ? byteTokens[Math.floor(rand() * byteTokens.length)]!
          : r < 0.9
            ? Math.floor(rand() * 151669)
            : 151643 + Math.floor(rand() * 26),
      );
    }
    for (const skip of [false, true]) {
      const deltas = stream(ids, skip);
      for (const d of deltas) assert.ok(wellFormed(d));
      assert.equal(deltas.join(''), tok.decode(ids, { skipSpecialTokens: skip }), `ids ${JSON.stringify(ids)}`);
    }
  }
});
