import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { parseGrounding, toPixel } from '../src/generate/parse/grounding.ts';
import { groundingFor, parseOutput } from '../src/generate/parse/output.ts';
import { drawGrounding, groundingSvg } from '../src/cli/draw-grounding.ts';

// Answers in the shape of QwenLM/Qwen3-VL's spatial-understanding cookbook.
const FENCED = 'Here are the objects:\n```json\n[\n  {"bbox_2d": [100, 200, 500, 800], "label": "cat"},\n  {"bbox_2d": [600, 50, 950, 400], "label": "dog"}\n]\n```\nHope this helps.';

test('boxes in a ```json fence with prose around: 0–1000 coordinates → original pixels', () => {
  const g = parseGrounding(FENCED, { width: 640, height: 480 });
  assert.equal(g.boxes.length, 2);
  assert.deepEqual(g.boxes[0], { label: 'cat', bbox2d: [100, 200, 500, 800], box: [64, 96, 320, 384] });
  assert.deepEqual(g.boxes[1]!.box, [384, 24, 608, 192]);
  assert.deepEqual(g.points, []);
});

test('points, a single bare object, and coordinates without an image size', () => {
  const g = parseGrounding('The cup is at {"point_2d": [250, 750], "label": "cup"}.', { width: 1000, height: 200 });
  assert.deepEqual(g.points, [{ label: 'cup', point2d: [250, 750], point: [250, 150] }]);
  const raw = parseGrounding('[{"point_2d": [1, 2]}]');
  assert.deepEqual(raw.points, [{ point2d: [1, 2] }]);
});

test('truncated output keeps the complete objects; out-of-range values are clamped; swapped corners ordered', () => {
  const cut = '```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "a"}, {"bbox_2d": [1200, -5, 900, 100], "label": "b"}, {"bbox_2d": [5, 6,';
  const g = parseGrounding(cut, { width: 2000, height: 1000 });
  assert.equal(g.boxes.length, 2);
  assert.deepEqual(g.boxes[1]!.bbox2d, [900, 0, 1000, 100]);
  assert.deepEqual(g.boxes[1]!.box, [1800, 0, 2000, 100]);
});

test('not grounding: no boxes (and no crash) for prose, other JSON, or malformed boxes', () => {
  for (const t of ['no json here', '{"answer": 42}', '[{"bbox_2d": [1, 2, 3]}]', '{"bbox_2d": "0,0,1,1"}', '{{{{', '']) {
    const g = parseGrounding(t, { width: 10, height: 10 });
    assert.deepEqual(g, { boxes: [], points: [] }, t);
  }
});

test('a trailing comma (a common model slip) is forgiven; nested lists are found', () => {
  const g = parseGrounding('{"objects": [{"bbox_2d": [0, 0, 1000, 1000], "label": "all",},]}', { width: 3, height: 3 });
  assert.deepEqual(g.boxes[0]!.box, [0, 0, 3, 3]);
});

test('pixels are rounded to 0.1 and stay inside the image', () => {
  assert.equal(toPixel(333, 100), 33.3);
  assert.equal(toPixel(1000, 77), 77);
});

test('library output: grounding maps to the first image of the request', () => {
  const media = [
    { kind: 'video', width: 64, height: 48 },
    { kind: 'image', width: 200, height: 100 },
  ];
  const out = parseOutput(FENCED, { media });
  assert.equal(out.grounding!.image, 1);
  assert.deepEqual(out.grounding!.boxes[0]!.box, [20, 20, 100, 80]);
  assert.equal(groundingFor('plain text', media), undefined);
});

test('drawing: boxes and points land on the right pixels', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'qvl-draw-'));
  const src = path.join(dir, 'white.png');
  await sharp({ create: { width: 200, height: 100, channels: 3, background: '#ffffff' } }).png().toFile(src);
  const g = parseGrounding('[{"bbox_2d": [100, 200, 500, 800]}, {"point_2d": [900, 500], "label": "p"}]', { width: 200, height: 100 });
  assert.match(groundingSvg(g, 200, 100), /<rect x="20" y="20" width="80" height="60"/);
  const out = path.join(dir, 'drawn.png');
  await drawGrounding(src, g, out);
  const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
  const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
  assert.deepEqual([info.width, info.height], [200, 100]);
  assert.notDeepEqual(px(20, 50), [255, 255, 255], 'left edge of the box is drawn');
  assert.deepEqual(px(60, 50), [255, 255, 255], 'inside of the box is untouched');
  assert.notDeepEqual(px(180, 50), [255, 255, 255], 'the point is drawn');
  assert.deepEqual(px(5, 95), [255, 255, 255], 'far corner untouched');
});
