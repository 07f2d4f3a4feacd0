import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runParity } from '../src/parity/run-parity.ts';

const TINY = new URL('./fixtures/tiny/', import.meta.url).pathname;

test('every stage of every tiny case matches HF transformers (TypeScript backend)', { timeout: 300_000 }, async () => {
  const checks = await runParity(TINY, { backend: 'ts' });
  const failed = checks.filter((c) => !c.ok);
  assert.deepEqual(failed, [], failed.map((c) => `${c.case} ${c.stage} ${c.diff} ${c.detail ?? ''}`).join('\n'));
  const stages = (name: string) => new Set(checks.filter((c) => c.case === name).map((c) => c.stage));
  // A stage that silently stopped being checked must fail this test.
  const expected: Record<string, string[]> = {
    case_a_text: ['render', 'input_ids', 'position_ids', 'text.layer_input.0', 'text.layer_input.2', 'text.final_hidden', 'logits(all)', 'decode_step_logits', 'greedy_tokens', 'generated_text'],
    case_b_image: ['image0.resized_uint8', 'pixel_values', 'image_grid_thw', 'expanded_prompt(v4.57)', 'input_ids', 'position_ids', 'rope_deltas',
      'image.patch_embed', 'image.pos_embed', 'image.last_hidden', 'image.embeds', 'image.deepstack.0', 'image.deepstack.1', 'image.deepstack.2',
      'text.layer_input.1', 'text.final_hidden', 'logits(selected ids)', 'logits(last 1)', 'decode_step_logits', 'greedy_tokens'],
    case_c_two_images: ['image0.resized_uint8', 'image1.resized_uint8', 'pixel_values', 'image.deepstack.2', 'greedy_tokens'],
    case_d_video: ['pixel_values_videos', 'sampled_frame_indices', 'timestamps', 'expanded_prompt(v5)', 'video.pos_embed', 'video.deepstack.1', 'greedy_tokens'],
    case_d2_video_sampling: ['pixel_values_videos', 'sampled_frame_indices', 'timestamps', 'expanded_prompt(v5)', 'input_ids', 'position_ids'],
    case_d3_video_v457_layout: ['expanded_prompt(v4.57)', 'input_ids', 'video.embeds', 'decode_step_logits', 'greedy_tokens'],
    case_e_long_text: ['input_ids', 'logits(last 5)', 'greedy_tokens'],
  };
  for (const [c, want] of Object.entries(expected)) {
    const have = stages(c);
    for (const s of want) assert.ok(have.has(s), `${c}: stage ${s} was not checked`);
  }
  assert.ok(checks.filter((c) => c.case === 'chat_template_renders').length >= 32, 'every template render checked');
});
