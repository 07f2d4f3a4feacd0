import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { estimateMediaCost } from '../src/api/media-cost.ts';
import { ffmpegAvailable } from '../src/media/ffmpeg.ts';
import { renderPdf } from '../src/media/pdf.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const MEDIA = path.join(import.meta.dirname, 'fixtures', 'media');

test('image cost from the header equals the HF fixture (image_b.png: 70 image tokens)', async () => {
  // case_b_image.json: 96x64 input → 224x320 → 70 rows of image_embeds
  const c = await estimateMediaCost({ kind: 'image', source: path.join(TINY, 'image_b.png') });
  assert.equal(c.tokens, 70);
  assert.deepEqual(c.items[0]!.resized, { width: 320, height: 224 });
});

test('per-request pixel budgets change the image cost', async () => {
  // case_c_two_images: 336x272 → 256x320 at default budget; smaller maxPixels gives fewer tokens
  const full = await estimateMediaCost({ kind: 'image', source: path.join(TINY, 'image_c2.png') });
  assert.deepEqual(full.items[0]!.resized, { width: 320, height: 256 });
  const small = await estimateMediaCost({ kind: 'image', source: path.join(TINY, 'image_c2.png'), minPixels: 1024, maxPixels: 32 * 32 * 20 });
  assert.ok(small.tokens < full.tokens && small.tokens <= 20);
});

test('video cost comes from ffprobe facts and the sampling rule', { skip: ffmpegAvailable() ? false : 'ffmpeg not installed' }, async () => {
  const c = await estimateMediaCost({ kind: 'video', source: path.join(MEDIA, 'clip_h264.mp4') });
  const item = c.items[0]!;
  assert.deepEqual([item.frames, item.totalFrames, item.fps], [5, 25, 10]);
  // 5 frames → 3 temporal groups; 64x48 is below the video min pixels and is scaled up to a multiple of 32
  assert.equal(item.grid[0], 3);
  assert.equal(c.tokens, (item.grid[0] * item.grid[1] * item.grid[2]) / 4);
  // indices 0,6,12,18,24 at 10 fps, padded to 6 with 24: groups at 0.3, 1.5, 2.4 s
  assert.deepEqual(item.timestampTexts, ['<0.3 seconds>', '<1.5 seconds>', '<2.4 seconds>']);
});

test('PDF cost: one image per page at the size renderPdf produces', async () => {
  const file = path.join(MEDIA, 'two_pages.pdf');
  const c = await estimateMediaCost({ kind: 'pdf', source: file, maxPagePixels: 100_000 });
  const rendered = await renderPdf(readFileSync(file), { maxPagePixels: 100_000 });
  assert.equal(c.items.length, 2);
  c.items.forEach((it, i) => assert.deepEqual([it.width, it.height], [rendered.pages[i]!.width, rendered.pages[i]!.height]));
  assert.equal(c.tokens, c.items[0]!.tokens + c.items[1]!.tokens);
});
