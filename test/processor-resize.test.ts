import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { computeAxisTaps, resizeBicubicAa, resizeRgbBicubic } from '../src/processor/resize-bicubic.ts';
import { decodePng, readSafetensors, RESIZE_DIR, tensor, TINY } from './helpers/processor-fixtures.ts';

function countDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

test('reproduces the uint8 images HF resized in the tiny fixtures (torchvision backend), bit for bit', async () => {
  const cases: [string, string, string][] = [
    ['case_b_image', 'image_b.png', 'image0_resized_uint8_torchvision'],
    ['case_c_two_images', 'image_c1.png', 'image0_resized_uint8_torchvision'],
    ['case_c_two_images', 'image_c2.png', 'image1_resized_uint8_torchvision'],
  ];
  for (const [file, png, name] of cases) {
    const expected = tensor(readSafetensors(join(TINY, `${file}.safetensors`)), name);
    const [h, w] = expected.shape;
    const out = resizeRgbBicubic(await decodePng(join(TINY, png)), w, h);
    assert.equal(countDiff(out.data, expected.bytes), 0, `${png} → ${w}×${h}`);
    // and it is not Pillow's result, which differs on a few values
    const pil = tensor(readSafetensors(join(TINY, `${file}.safetensors`)), name.replace('torchvision', 'pil'));
    assert.ok(countDiff(out.data, pil.bytes) > 0);
  }
});

test('matches torchvision on downscales, upscales, one-axis and 1-pixel cases', async () => {
  const manifest = JSON.parse(readFileSync(join(RESIZE_DIR, 'cases.json'), 'utf8'));
  assert.ok(manifest.cases.length >= 10);
  for (const c of manifest.cases) {
    const input = await decodePng(join(RESIZE_DIR, c.input));
    const expected = await decodePng(join(RESIZE_DIR, c.output));
    assert.deepEqual([input.width, input.height], c.input_wh);
    const out = resizeRgbBicubic(input, c.output_wh[0], c.output_wh[1]);
    assert.deepEqual([out.width, out.height], c.output_wh);
    assert.equal(countDiff(out.data, expected.data), 0, c.name);
  }
});

test('same size returns the input unchanged; a one-axis resize skips the other pass', () => {
  const data = new Uint8Array(5 * 4 * 3).map((_, i) => (i * 53) & 255);
  const img = { width: 5, height: 4, data };
  assert.equal(resizeRgbBicubic(img, 5, 4), img);
  // Only the vertical pass runs: a constant-per-row image stays constant along each row.
  const rows = new Uint8Array(7 * 6 * 3).map((_, i) => (Math.floor(i / 21) * 40) & 255);
  const out = resizeBicubicAa(rows, 7, 6, 3, 7, 3);
  for (let y = 0; y < 3; y++) for (let x = 1; x < 7; x++) assert.equal(out[(y * 7 + x) * 3], out[y * 7 * 3]);
});

test('filter weights sum to 2^precision and fit int16 (PyTorch precision rule)', () => {
  for (const [i, o] of [[1031, 320], [97, 448], [777, 9], [2, 1], [1, 7]]) {
    const t = computeAxisTaps(i, o);
    let maxW = 0;
    for (let k = 0; k < o; k++) {
      let sum = 0;
      for (let j = 0; j < t.size[k]; j++) {
        sum += t.weights[k * t.stride + j];
        maxW = Math.max(maxW, t.weights[k * t.stride + j]);
      }
      assert.ok(Math.abs(sum - 2 ** t.precision) <= t.size[k], `${i}→${o} output ${k}`);
      assert.ok(t.start[k] >= 0 && t.start[k] + t.size[k] <= i);
    }
    assert.ok(maxW < 2 ** 15 && maxW >= 2 ** 14, `${i}→${o} max weight ${maxW}`);
  }
});

test('refuses a buffer that does not match its size', () => {
  assert.throws(
    () => resizeRgbBicubic({ width: 4, height: 4, data: new Uint8Array(47) }, 8, 8),
    (e) => isQvlError(e, 'IMAGE_DECODE') && /47 bytes/.test(e.message) && /48/.test(e.message),
  );
  assert.throws(() => resizeBicubicAa(new Uint8Array(12), 2, 2, 3, 0, 2), (e) => isQvlError(e, 'OPTION_INVALID') && /output width/.test(e.message));
});
