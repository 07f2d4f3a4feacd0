import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { parseConfig } from '../src/model/config.ts';
import { mropeAxes, textInvFreq } from '../src/model/rope.ts';
import { ropeIndex } from '../src/model/rope-index.ts';
import { isQvlError } from '../src/errors.ts';

const ref = JSON.parse(fs.readFileSync(new URL('./fixtures/rope/rope_reference.json', import.meta.url), 'utf8'));

test('text inverse frequencies and attention factor match transformers (default and YaRN)', () => {
  for (const c of ref.cases) {
    const t = c.text_config;
    const raw = {
      text_config: { hidden_size: t.head_dim * 4, num_attention_heads: 4, num_key_value_heads: 2, head_dim: t.head_dim, intermediate_size: 8, num_hidden_layers: 1,
        vocab_size: 10, max_position_embeddings: t.max_position_embeddings, rope_parameters: t.rope_parameters },
      vision_config: { depth: 1, hidden_size: 8, intermediate_size: 8, num_heads: 1, num_position_embeddings: 4, out_hidden_size: t.head_dim * 4 },
    };
    const cfg = parseConfig(raw);
    const inv = textInvFreq(cfg.text.rope, t.head_dim);
    let m = 0;
    for (let j = 0; j < inv.length; j++) m = Math.max(m, Math.abs(inv[j] - c.inv_freq[j]) / c.inv_freq[j]);
    assert.ok(m < 2e-7, `${c.name}: relative inv_freq difference ${m}`);
    assert.ok(Math.abs(cfg.text.rope.attentionFactor - c.attention_factor) < 1e-12, `${c.name}: attention factor`);
  }
});

test('interleaved MRoPE: H and W every third frequency, T elsewhere (4B and tiny sections)', () => {
  const a = mropeAxes([24, 20, 20], 64);
  assert.equal([...a].filter((x) => x === 0).length, 24);
  assert.equal([...a].filter((x) => x === 1).length, 20);
  assert.equal([...a].filter((x) => x === 2).length, 20);
  assert.deepEqual([...a.slice(0, 6)], [0, 1, 2, 0, 1, 2]);
  assert.deepEqual([...a.slice(60)], [0, 0, 0, 0]);
  assert.deepEqual([...mropeAxes([4, 2, 2], 8)], [0, 1, 2, 0, 1, 2, 0, 0]);
});

test('get_rope_index: worked example from the spec (448×448 image, 4B)', () => {
  const IMG = 151655;
  const ids = [151644, 872, 198, 151652, ...new Array(196).fill(IMG), 151653, 1, 2, 3];
  const p = ropeIndex(ids, [[1, 28, 28]], [], { imageTokenId: IMG, videoTokenId: 151656 }, 2);
  assert.deepEqual([p.t[3], p.t[4], p.h[4 + 15], p.w[4 + 15]], [3, 4, 5, 5]);
  assert.equal(p.t[200], 18, 'vision_end after 4 + max(1, 14, 14)');
  assert.equal(p.delta, 18 + 3 + 1 - ids.length);
});

test('pad count that does not match the grid is refused', () => {
  const IMG = 151655;
  assert.throws(
    () => ropeIndex([1, ...new Array(3).fill(IMG), 2], [[1, 4, 4]], [], { imageTokenId: IMG, videoTokenId: 151656 }, 2),
    (e: unknown) => isQvlError(e, 'TOKEN_COUNT_MISMATCH') && /has 3 pad tokens/.test(e.message) && /needs 4/.test(e.message),
  );
  assert.throws(
    () => ropeIndex([1, IMG, IMG, IMG, IMG, 2], [], [], { imageTokenId: IMG, videoTokenId: 151656 }, 2),
    (e: unknown) => isQvlError(e, 'TOKEN_COUNT_MISMATCH') && /more image blocks/.test(e.message),
  );
});
