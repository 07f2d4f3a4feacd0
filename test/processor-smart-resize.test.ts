import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvlError } from '../src/errors.ts';
import { smartResizeImage, smartResizeVideo } from '../src/processor/smart-resize.ts';
import { readCaseJson, readProcessorCases } from './helpers/processor-fixtures.ts';

const IMG = { factor: 32, minPixels: 65536, maxPixels: 16777216 };
const VID = { factor: 32, temporalFactor: 2, minPixels: 4096, maxPixels: 25165824 };

test('image smart_resize: the spec and fixture examples', () => {
  assert.deepEqual(smartResizeImage(1280, 720, IMG), { width: 1280, height: 704 });
  assert.deepEqual(smartResizeImage(336, 272, IMG), { width: 320, height: 256 });
  assert.deepEqual(smartResizeImage(100, 37, IMG), { width: 448, height: 160 });
  assert.deepEqual(smartResizeImage(96, 64, IMG), { width: 320, height: 224 });
  const c = readCaseJson('case_c_two_images');
  c.image_sizes_wh.forEach(([w, h]: number[], k: number) => {
    const [rh, rw] = c.smart_resize_hw[k];
    assert.deepEqual(smartResizeImage(w, h, IMG), { width: rw, height: rh });
  });
});

test('video smart_resize: 10 s of 1280×720 at 30 fps (20 frames) keeps 1280×704; 112×80 frames become 128×64', () => {
  assert.deepEqual(smartResizeVideo(20, 1280, 720, VID), { width: 1280, height: 704 });
  assert.deepEqual(smartResizeVideo(8, 112, 80, VID), { width: 128, height: 64 });
});

test('image smart_resize agrees with HF on hundreds of sizes and budgets', () => {
  const cases = readProcessorCases().smart_resize.image as any[];
  let checked = 0;
  for (const c of cases) {
    const [w, h] = c.wh;
    const opts = { factor: 32, minPixels: c.min, maxPixels: c.max };
    if (w < 32 || h < 32) {
      // transformers 5.x resizes these; 4.57 (and qvl) refuse them.
      assert.throws(() => smartResizeImage(w, h, opts), (e) => isQvlError(e, 'IMAGE_TOO_SMALL'));
    } else if (c.error) {
      assert.throws(() => smartResizeImage(w, h, opts), (e) => isQvlError(e, 'IMAGE_ASPECT'), `${w}×${h}`);
    } else {
      assert.deepEqual(smartResizeImage(w, h, opts), { width: c.out_wh[0], height: c.out_wh[1] }, `${w}×${h} ${c.min}..${c.max}`);
      checked++;
    }
  }
  assert.ok(checked > 400);
});

test('video smart_resize agrees with HF, including frames under 32 px that get scaled up', () => {
  const cases = readProcessorCases().smart_resize.video as any[];
  let small = 0;
  for (const c of cases) {
    const [w, h] = c.wh;
    const opts = { ...VID, minPixels: c.min, maxPixels: c.max };
    if (c.error) {
      assert.throws(() => smartResizeVideo(c.n, w, h, opts), (e) => isQvlError(e, 'IMAGE_ASPECT'), `${c.n}×${w}×${h}`);
    } else {
      assert.deepEqual(smartResizeVideo(c.n, w, h, opts), { width: c.out_wh[0], height: c.out_wh[1] }, `${c.n}×${w}×${h}`);
      if (w < 32 || h < 32) small++;
    }
  }
  assert.ok(small > 10);
});

test('refusals: too small, extreme aspect ratio, too few frames', () => {
  assert.throws(
    () => smartResizeImage(31, 500, IMG),
    (e) => isQvlError(e, 'IMAGE_TOO_SMALL') && /31×500/.test(e.message) && /32 px/.test(e.message),
  );
  assert.throws(
    () => smartResizeImage(6432, 32, IMG),
    (e) => isQvlError(e, 'IMAGE_ASPECT') && /6432×32/.test(e.message) && /201\.0/.test(e.message),
  );
  assert.deepEqual(smartResizeImage(6400, 32, IMG).height, 32); // exactly 200:1 is allowed
  assert.throws(() => smartResizeVideo(1, 64, 64, VID), (e) => isQvlError(e, 'VIDEO_INVALID') && /at least 2 frames/.test(e.message));
  assert.throws(() => smartResizeImage(0, 64, IMG), (e) => isQvlError(e, 'IMAGE_DECODE') && /width 0/.test(e.message));
});
