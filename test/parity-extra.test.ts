import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runParity } from '../src/parity/run-parity.ts';

// Reference folders made by tools/reference/make_fixture.py (HF transformers on other configs).
const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;

type Json = Record<string, any>;

const readJson = (file: string): Json => JSON.parse(fs.readFileSync(file, 'utf8'));

/** Tensor names in a safetensors header (read directly, independent of qvl's reader). */
function safetensorNames(file: string): Set<string> {
  const fd = fs.openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const header = Buffer.alloc(Number(len.readBigUInt64LE(0)));
    fs.readSync(fd, header, 0, header.length, 8);
    return new Set(Object.keys(JSON.parse(header.toString('utf8'))).filter((k) => k !== '__metadata__'));
  } finally {
    fs.closeSync(fd);
  }
}

/** The stages a case must produce, from its own JSON and the folder's config.json. */
function expectedStages(dir: string, caseName: string): string[] {
  const cfg = readJson(path.join(dir, 'config.json'));
  const j = readJson(path.join(dir, `${caseName}.json`));
  const tensors = Object.keys(j.tensors ?? {});
  const layers: number = cfg.text_config.num_hidden_layers;
  const taps: number = cfg.vision_config.deepstack_visual_indexes.length;
  const want = ['render', 'input_ids', 'mm_token_type_ids', 'position_ids', 'rope_deltas', 'text.final_hidden', 'logits(selected ids)', 'logits(last 1)', 'decode_step_logits', 'greedy_tokens', 'generated_text'];
  for (let l = 0; l < layers; l++) want.push(`text.layer_input.${l}`);
  const images: string[] = j.image_files ?? (j.image_file ? [j.image_file] : []);
  if (images.length) {
    want.push('pixel_values', 'image_grid_thw', 'image.patch_embed', 'image.pos_embed', 'image.last_hidden', 'image.embeds');
    images.forEach((_, k) => want.push(`image${k}.resized_uint8`));
    for (let k = 0; k < taps; k++) want.push(`image.deepstack.${k}`);
  }
  if (Array.isArray(j.frame_files)) {
    want.push('pixel_values_videos', 'video_grid_thw', 'sampled_frame_indices', 'timestamps', 'video.patch_embed', 'video.pos_embed', 'video.last_hidden', 'video.embeds');
    for (let k = 0; k < taps; k++) want.push(`video.deepstack.${k}`);
  }
  if (images.length || Array.isArray(j.frame_files)) want.push(j.frame_files ? 'expanded_prompt(v5)' : 'expanded_prompt(v4.57)');
  assert.ok(tensors.includes('logits_last1'), `${caseName}: fixture lacks logits_last1`);
  return want;
}

/** What each folder is there to cover; checked on the fixture files so a regeneration cannot drop it. */
const COVERAGE: Record<string, (cfg: Json, weights: Set<string>, cases: Json[]) => void> = {
  'parity-untied-gqa4': (cfg, weights, cases) => {
    const t = cfg.text_config;
    assert.equal(t.tie_word_embeddings, false);
    assert.ok(weights.has('lm_head.weight'), 'untied head stored');
    assert.equal(t.num_attention_heads / t.num_key_value_heads, 4);
    assert.equal(t.head_dim, 8);
    assert.ok(t.rope_scaling && t.rope_theta, 'released 4.57 spelling');
    assert.equal(cfg.vision_config.num_heads, 4);
    assert.equal(cfg.vision_config.num_position_embeddings, 64);
    assert.deepEqual(cfg.vision_config.deepstack_visual_indexes, [1]);
    assert.ok(cases.some((c) => c.video_fps === 3 && c.sampled_frame_indices.length % 2 === 1), 'odd sampled frame count at 3 fps');
    assert.ok(cases.some((c) => JSON.stringify(c.image_size_wh) === '[33,900]'));
  },
  'parity-mixed-v5': (cfg, weights, cases) => {
    const t = cfg.text_config;
    assert.ok(t.rope_parameters && t.rope_scaling === undefined && t.rope_theta === undefined, '5.x spelling');
    assert.equal(cfg.vision_config.model_type, 'qwen3_vl_vision');
    assert.ok(!weights.has('lm_head.weight'));
    assert.equal(t.num_attention_heads, t.num_key_value_heads);
    assert.equal(t.head_dim, 32);
    assert.equal(cfg.vision_config.num_heads, 1);
    assert.deepEqual(cfg.vision_config.deepstack_visual_indexes, [0, 1]);
    assert.ok(cases.some((c) => c.image_files?.length === 2 && c.video_fps === 29.97 && c.sampled_frame_indices.length % 2 === 1), 'two images and an odd-frame video in one prompt');
  },
  'parity-yarn': (cfg, _weights, cases) => {
    const t = cfg.text_config;
    assert.equal(t.rope_scaling.rope_type, 'yarn');
    assert.equal(t.rope_scaling.factor, 3);
    assert.equal(t.max_position_embeddings, 3 * t.rope_scaling.original_max_position_embeddings);
    assert.equal(t.head_dim, 24);
    // 517x311 rounds to 512x320 = 163840 pixels, above this folder's max_pixels
    const c = cases.find((x) => JSON.stringify(x.image_size_wh) === '[517,311]');
    assert.ok(c, 'a 517x311 image');
    const [h, w] = c.smart_resize_hw[0];
    assert.ok(h * w < 512 * 320, 'the image was downscaled');
  },
  'parity-deep-yarn-v5': (cfg, _weights, cases) => {
    const t = cfg.text_config;
    assert.equal(t.rope_parameters.rope_type, 'yarn');
    assert.equal(t.num_key_value_heads, 1);
    assert.ok(t.num_hidden_layers > cfg.vision_config.deepstack_visual_indexes.length);
    assert.ok(cases.some((c) => c.sampled_frame_indices?.length % 2 === 1 && c.image_file), 'odd-frame video and an image');
  },
};

for (const [name, coverage] of Object.entries(COVERAGE)) {
  const dir = path.join(FIXTURES, name);
  test(`${name}: every stage matches HF transformers (TypeScript backend)`, { timeout: 120_000 }, async () => {
    const caseNames = fs.readdirSync(dir).filter((f) => /^case_.*\.json$/.test(f)).map((f) => f.slice(0, -5)).sort();
    const cfg = readJson(path.join(dir, 'config.json'));
    coverage(cfg, safetensorNames(path.join(dir, 'model.safetensors')), caseNames.map((c) => readJson(path.join(dir, `${c}.json`))));

    const checks = await runParity(dir, { backend: 'ts' });
    const failed = checks.filter((c) => !c.ok);
    assert.deepEqual(failed, [], failed.map((c) => `${c.case} ${c.stage} ${c.diff} ${c.detail ?? ''}`).join('\n'));
    // A stage that silently stopped being checked must fail this test.
    for (const c of caseNames) {
      const have = new Set(checks.filter((x) => x.case === c).map((x) => x.stage));
      for (const s of expectedStages(dir, c)) assert.ok(have.has(s), `${name}/${c}: stage ${s} was not checked`);
    }
  });
}
