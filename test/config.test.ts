import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { isQvlError } from '../src/errors.ts';
import { loadConfig, parseConfig } from '../src/model/config.ts';

const TINY = new URL('./fixtures/tiny/', import.meta.url).pathname;
const json = (f: string) => JSON.parse(fs.readFileSync(TINY + f, 'utf8'));

/** The released configs' shape-relevant fields (spec §1.1 table). */
function released(size: '2B' | '4B' | '8B' | '32B') {
  const t = { '2B': [2048, 28, 16, 8, 6144, true], '4B': [2560, 36, 32, 8, 9728, true], '8B': [4096, 36, 32, 8, 12288, false], '32B': [5120, 64, 64, 8, 25600, false] }[size];
  const v = { '2B': [24, 1024, 4096, [5, 11, 17]], '4B': [24, 1024, 4096, [5, 11, 17]], '8B': [27, 1152, 4304, [8, 16, 24]], '32B': [27, 1152, 4304, [8, 16, 24]] }[size];
  return {
    architectures: ['Qwen3VLForConditionalGeneration'],
    model_type: 'qwen3_vl',
    image_token_id: 151655,
    video_token_id: 151656,
    vision_start_token_id: 151652,
    vision_end_token_id: 151653,
    tie_word_embeddings: t[5],
    text_config: {
      model_type: 'qwen3_vl_text', vocab_size: 151936, head_dim: 128, hidden_act: 'silu', rms_norm_eps: 1e-6, rope_theta: 5000000,
      max_position_embeddings: 262144, hidden_size: t[0], num_hidden_layers: t[1], num_attention_heads: t[2], num_key_value_heads: t[3],
      intermediate_size: t[4], tie_word_embeddings: t[5], rope_scaling: { rope_type: 'default', mrope_section: [24, 20, 20], mrope_interleaved: true },
    },
    vision_config: {
      model_type: 'qwen3_vl', hidden_act: 'gelu_pytorch_tanh', in_channels: 3, num_heads: 16, patch_size: 16, temporal_patch_size: 2, spatial_merge_size: 2,
      num_position_embeddings: 2304, depth: v[0], hidden_size: v[1], intermediate_size: v[2], deepstack_visual_indexes: v[3], out_hidden_size: t[0],
    },
  };
}

test('both config spellings (4.57 rope_scaling, 5.x rope_parameters) parse to the same model', () => {
  const a = parseConfig(json('config.json'));
  const b = parseConfig(json('config.transformers-5.18.0.json'));
  assert.deepEqual({ ...a, raw: null }, { ...b, raw: null });
  assert.deepEqual(a.text.rope.mropeSection, [4, 2, 2]);
  assert.equal(a.text.rope.theta, 5000000);
  assert.equal(a.vision.headDim, 16);
  assert.deepEqual(a.vision.deepstackVisualIndexes, [0, 2, 3]);
});

test('all dense sizes: head_dim from the config, GQA, tie, vision widths', () => {
  const expect = { '2B': [2048, 16, 8, true, 64], '4B': [2560, 32, 8, true, 64], '8B': [4096, 32, 8, false, 72], '32B': [5120, 64, 8, false, 72] } as const;
  for (const size of ['2B', '4B', '8B', '32B'] as const) {
    const c = parseConfig(released(size));
    const [hidden, heads, kv, tie, vhd] = expect[size];
    assert.equal(c.text.hiddenSize, hidden, size);
    assert.equal(c.text.headDim, 128, `${size}: head_dim comes from the config, not hidden/heads`);
    assert.equal(c.text.numHeads, heads);
    assert.equal(c.text.numKvHeads, kv);
    assert.equal(c.text.tieWordEmbeddings, tie, `${size} tie`);
    assert.equal(c.vision.headDim, vhd, `${size} vision head_dim`);
    assert.equal(c.vision.outHiddenSize, hidden);
  }
});

test('YaRN settings are read from either spelling', () => {
  const raw = released('4B');
  raw.text_config.max_position_embeddings = 1000000;
  (raw.text_config as any).rope_scaling = { rope_type: 'yarn', factor: 3, original_max_position_embeddings: 262144, mrope_section: [24, 20, 20], mrope_interleaved: true };
  const c = parseConfig(raw);
  assert.equal(c.text.rope.type, 'yarn');
  assert.equal(c.text.rope.factor, 3);
  assert.ok(Math.abs(c.text.rope.attentionFactor - (0.1 * Math.log(3) + 1)) < 1e-12);
});

test('bad configs are refused with the field named', () => {
  const cases: [string, (r: any) => void, RegExp][] = [
    ['missing hidden size', (r) => delete r.text_config.hidden_size, /text_config\.hidden_size is missing/],
    ['MoE model', (r) => (r.text_config.model_type = 'qwen3_vl_moe_text'), /MoE/],
    ['mrope sections that do not add up', (r) => (r.text_config.rope_scaling.mrope_section = [24, 20, 21]), /sums to 65/],
    ['unknown rope type', (r) => (r.text_config.rope_scaling.rope_type = 'longrope'), /longrope/],
    ['deepstack tap beyond the vision depth', (r) => (r.vision_config.deepstack_visual_indexes = [5, 30]), /deepstack_visual_indexes/],
    ['heads not a multiple of kv heads', (r) => (r.text_config.num_key_value_heads = 7), /multiple of num_key_value_heads/],
    ['vision output width differs from text width', (r) => (r.vision_config.out_hidden_size = 1000), /out_hidden_size 1000/],
  ];
  for (const [what, edit, msg] of cases) {
    const r = released('4B');
    edit(r);
    assert.throws(() => parseConfig(r), (e: unknown) => isQvlError(e, 'CONFIG_INVALID') && msg.test(e.message), what);
  }
});

test('a folder without config.json is named', () => {
  assert.throws(() => loadConfig('/nonexistent-model'), (e: unknown) => isQvlError(e, 'FILE_NOT_FOUND') && /config\.json/.test(e.message));
});
