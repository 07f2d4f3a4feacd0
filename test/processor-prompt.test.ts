import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvlError } from '../src/errors.ts';
import type { GridThw } from '../src/processor/image-processor.ts';
import { expandPrompt, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START } from '../src/processor/prompt-expansion.ts';
import { asI64, readCaseJson, readSafetensors, tensor, TINY } from './helpers/processor-fixtures.ts';
import { join } from 'node:path';

function grids(file: string, name: string): GridThw[] {
  const v = asI64(tensor(readSafetensors(join(TINY, file)), name));
  const out: GridThw[] = [];
  for (let i = 0; i < v.length; i += 3) out.push([v[i], v[i + 1], v[i + 2]]);
  return out;
}

test('images: each <|image_pad|> becomes t·h·w/4 pads (cases b and c)', () => {
  const b = readCaseJson('case_b_image');
  assert.equal(expandPrompt(b.prompt_text, { images: grids('case_b_image.safetensors', 'image_grid_thw') }), b.expanded_prompt_text);
  const c = readCaseJson('case_c_two_images');
  assert.equal(expandPrompt(c.prompt_text, { images: grids('case_c_two_images.safetensors', 'image_grid_thw') }), c.expanded_prompt_text);
});

test('video, transformers 5.x layout keeps the outer vision_start/end (case_d, case_d2)', () => {
  const d = readCaseJson('case_d_video');
  const [grid] = grids('case_d_video.safetensors', 'video_grid_thw');
  assert.equal(expandPrompt(d.prompt_text, { videos: [{ grid, timestamps: d.timestamps_seconds }] }, { videoLayout: 'v5' }), d.expanded_prompt_text);
  const d2 = readCaseJson('case_d2_video_sampling');
  const [grid2] = grids('case_d2_video_sampling.safetensors', 'video_grid_thw');
  assert.equal(expandPrompt(d2.prompt_text, { videos: [{ grid: grid2, timestamps: d2.timestamps_seconds }] }, { videoLayout: 'v5' }), d2.expanded_prompt_text);
});

test('video, transformers 4.57 layout (the default) replaces the whole triple (case_d3)', () => {
  const d = readCaseJson('case_d_video');
  const d3 = readCaseJson('case_d3_video_v457_layout');
  const [grid] = grids('case_d3_video_v457_layout.safetensors', 'video_grid_thw');
  const out = expandPrompt(d.prompt_text, { videos: [{ grid, timestamps: d3.timestamps_seconds }] });
  assert.equal(out, d3.expanded_prompt_text);
  assert.ok(out.includes('<0.2 seconds><|vision_start|>') && out.includes('<3.2 seconds>')); // ties round to even
});

test('4.57 layout: a bare <|video_pad|> is expanded too, and triples are taken first, as HF 4.57 does', () => {
  const v = (t: number) => ({ grid: [1, 2, 2] as GridThw, timestamps: [t] });
  const block = (t: string) => `<${t} seconds>${VISION_START}${VIDEO_PAD}${VISION_END}`;
  assert.equal(expandPrompt(`a${VIDEO_PAD}b`, { videos: [v(0.25)] }), `a${block('0.2')}b`);
  const text = `x${VIDEO_PAD}y${VISION_START}${VIDEO_PAD}${VISION_END}z`;
  assert.equal(expandPrompt(text, { videos: [v(1), v(2)] }), `x${block('2.0')}y${block('1.0')}z`);
  assert.equal(expandPrompt(text, { videos: [v(1), v(2)] }, { videoLayout: 'v5' }), `x${block('1.0')}y${VISION_START}${block('2.0')}${VISION_END}z`);
});

test('images and videos together keep their own order', () => {
  const text = `${VISION_START}${IMAGE_PAD}${VISION_END}${VISION_START}${VIDEO_PAD}${VISION_END}${VISION_START}${IMAGE_PAD}${VISION_END}`;
  const out = expandPrompt(text, { images: [[1, 2, 2], [1, 4, 2]], videos: [{ grid: [2, 2, 4], timestamps: [0.5, 1.5] }] });
  assert.equal(
    out,
    `${VISION_START}${IMAGE_PAD}${VISION_END}` +
      `<0.5 seconds>${VISION_START}${VIDEO_PAD.repeat(2)}${VISION_END}<1.5 seconds>${VISION_START}${VIDEO_PAD.repeat(2)}${VISION_END}` +
      `${VISION_START}${IMAGE_PAD.repeat(2)}${VISION_END}`,
  );
});

test('placeholder/media count mismatches and malformed grids are refused', () => {
  const two = `${IMAGE_PAD} and ${IMAGE_PAD}`;
  assert.throws(
    () => expandPrompt(two, { images: [[1, 2, 2]] }),
    (e) => isQvlError(e, 'TOKEN_COUNT_MISMATCH') && /2 image placeholders/.test(e.message) && /1 image was given/.test(e.message),
  );
  assert.throws(
    () => expandPrompt('no media here', { videos: [{ grid: [1, 2, 2], timestamps: [0] }] }),
    (e) => isQvlError(e, 'TOKEN_COUNT_MISMATCH') && /0 video placeholders/.test(e.message),
  );
  assert.throws(
    () => expandPrompt(VIDEO_PAD, { videos: [{ grid: [2, 2, 2], timestamps: [0] }] }),
    (e) => isQvlError(e, 'TOKEN_COUNT_MISMATCH') && /2 temporal groups but 1 timestamps/.test(e.message),
  );
  assert.throws(() => expandPrompt(IMAGE_PAD, { images: [[1, 3, 3]] }), (e) => isQvlError(e, 'TOKEN_COUNT_MISMATCH') && /invalid grid/.test(e.message));
  assert.throws(() => expandPrompt(IMAGE_PAD, { images: [[1, 2, 2]] }, { videoLayout: 'v6' as any }), (e) => isQvlError(e, 'OPTION_INVALID'));
});
