import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadProcessorConfig } from '../src/processor/config.ts';
import { preprocessImage } from '../src/processor/image-processor.ts';
import { expandPrompt, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START } from '../src/processor/prompt-expansion.ts';
import { imageTokenCost, videoTokenCost } from '../src/processor/token-cost.ts';
import { preprocessVideo } from '../src/processor/video-processor.ts';
import { readCaseJson, synthFrame, TINY } from './helpers/processor-fixtures.ts';

const cfg = loadProcessorConfig(TINY);

function count(text: string, token: string): number {
  return text.split(token).length - 1;
}

test('image token cost: fixture sizes and the spec example', () => {
  assert.equal(imageTokenCost(96, 64, cfg.image).tokens, 70); // case_b: 70 image embeddings
  assert.equal(imageTokenCost(100, 37, cfg.image).tokens + imageTokenCost(336, 272, cfg.image).tokens, 150); // case_c
  const hd = imageTokenCost(1280, 720, cfg.image);
  assert.deepEqual(hd.resized, { width: 1280, height: 704 });
  assert.equal(hd.tokens, 880);
  assert.equal(imageTokenCost(448, 448, cfg.image).tokens, 196); // the spec's rope worked example
  assert.equal(imageTokenCost(8000, 8000, cfg.image).tokens, 16384); // capped at 16M pixels
  assert.equal(imageTokenCost(1000, 1000, cfg.image, { maxPixels: 1024 * 32 * 32 }).tokens <= 1024, true);
});

test('image token cost equals what preprocessing and prompt expansion produce', () => {
  for (const [w, h] of [[64, 64], [250, 37], [517, 313], [40, 1000]]) {
    const cost = imageTokenCost(w, h, cfg.image);
    const r = preprocessImage(synthFrame(w, h, 0), cfg.image);
    assert.deepEqual(cost.grid, r.grid);
    assert.equal(cost.tokens * 4, r.pixelValues.length / 1536);
    assert.equal(count(expandPrompt(`${VISION_START}${IMAGE_PAD}${VISION_END}`, { images: [r.grid] }), IMAGE_PAD), cost.tokens);
  }
});

test('video token cost equals what preprocessing and prompt expansion produce (case_d)', () => {
  const d = readCaseJson('case_d_video');
  const cost = videoTokenCost({ frameCount: 8, fps: 2, width: 112, height: 80 }, cfg.video);
  assert.equal(cost.tokens, 32); // case_d: 32 video embeddings
  assert.equal(cost.groups, 4);
  assert.deepEqual(cost.timestampTexts, ['<0.2 seconds>', '<1.2 seconds>', '<2.2 seconds>', '<3.2 seconds>']);
  const frames = Array.from({ length: 7 }, (_, k) => synthFrame(300, 170, k));
  const c2 = videoTokenCost({ frameCount: 7, fps: 3, width: 300, height: 170 }, cfg.video);
  const r = preprocessVideo({ frames, fps: 3 }, cfg.video);
  assert.deepEqual(c2.grid, r.grid);
  assert.deepEqual(c2.sampledIndices, r.sampledIndices);
  assert.equal(c2.tokens * 4, r.pixelValues.length / 1536);
  const text = expandPrompt(d.prompt_text, { videos: [r] });
  assert.equal(count(text, VIDEO_PAD), c2.tokens);
  for (const ts of c2.timestampTexts) assert.ok(text.includes(ts + VISION_START));
});
