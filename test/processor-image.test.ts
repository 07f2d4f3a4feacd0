import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { DEFAULT_IMAGE_CONFIG, DEFAULT_VIDEO_CONFIG, loadProcessorConfig } from '../src/processor/config.ts';
import { preprocessImage } from '../src/processor/image-processor.ts';
import {
  asF32,
  asI64,
  decodePng,
  firstBitDifference,
  readProcessorCases,
  readSafetensors,
  RESIZE_DIR,
  sha256F32,
  tensor,
  TINY,
} from './helpers/processor-fixtures.ts';

const cfg = loadProcessorConfig(TINY);

test('case_b: pixel_values and grid are bit-identical to HF', async () => {
  const st = readSafetensors(join(TINY, 'case_b_image.safetensors'));
  const r = preprocessImage(await decodePng(join(TINY, 'image_b.png')), cfg.image);
  assert.deepEqual(r.grid, asI64(tensor(st, 'image_grid_thw')));
  assert.deepEqual(r.resized, { width: 320, height: 224 });
  assert.deepEqual(tensor(st, 'pixel_values').shape, [280, 1536]);
  assert.equal(firstBitDifference(r.pixelValues, asF32(tensor(st, 'pixel_values'))), -1);
});

test('case_c: two images (min-pixels upscale, round-half-even) concatenate to HF pixel_values', async () => {
  const st = readSafetensors(join(TINY, 'case_c_two_images.safetensors'));
  const a = preprocessImage(await decodePng(join(TINY, 'image_c1.png')), cfg.image);
  const b = preprocessImage(await decodePng(join(TINY, 'image_c2.png')), cfg.image);
  assert.deepEqual([...a.grid, ...b.grid], asI64(tensor(st, 'image_grid_thw')));
  const both = new Float32Array(a.pixelValues.length + b.pixelValues.length);
  both.set(a.pixelValues);
  both.set(b.pixelValues, a.pixelValues.length);
  assert.equal(firstBitDifference(both, asF32(tensor(st, 'pixel_values'))), -1);
});

test('HF image processor reference cases: downscale, budget overrides, no-op resize, extreme aspect', async () => {
  const cases = readProcessorCases().images as any[];
  assert.ok(cases.length >= 5);
  for (const c of cases) {
    const img = await decodePng(join(RESIZE_DIR, c.image));
    const opts = { minPixels: c.options.min_pixels, maxPixels: c.options.max_pixels };
    const r = preprocessImage(img, cfg.image, opts);
    const what = `${c.image} ${JSON.stringify(c.options)}`;
    assert.deepEqual(r.grid, c.grid, what);
    assert.deepEqual([r.resized.width, r.resized.height], c.resized_wh, what);
    assert.equal(r.pixelValues.length, c.pixel_values_shape[0] * c.pixel_values_shape[1], what);
    assert.equal(sha256F32(r.pixelValues), c.pixel_values_sha256, what);
  }
});

test('values are (x − 127.5) / 127.5 in float32, both temporal slots equal, merge-window row order', () => {
  // 64×64 image whose red channel encodes the patch index, so row order is visible.
  const w = 64;
  const data = new Uint8Array(w * w * 3);
  for (let y = 0; y < w; y++) for (let x = 0; x < w; x++) data[(y * w + x) * 3] = (Math.floor(y / 16) * 4 + Math.floor(x / 16)) * 10;
  const r = preprocessImage({ width: w, height: w, data }, cfg.image, { minPixels: 4096 });
  assert.deepEqual(r.grid, [1, 4, 4]);
  const patchOfRow = (row: number) => Math.round(r.pixelValues[row * 1536] * 127.5 + 127.5) / 10;
  // window (0,0) holds patches (0,0),(0,1),(1,0),(1,1) = 0,1,4,5; window (0,1) holds 2,3,6,7
  assert.deepEqual(Array.from({ length: 16 }, (_, k) => patchOfRow(k)), [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]);
  for (let row = 0; row < 16; row++) {
    for (let c = 0; c < 3; c++) {
      for (let k = 0; k < 256; k++) assert.equal(r.pixelValues[row * 1536 + c * 512 + k], r.pixelValues[row * 1536 + c * 512 + 256 + k]);
    }
  }
  assert.equal(r.pixelValues[1536 * 1 + 0], Math.fround((10 - 127.5) / 127.5));
  assert.equal(r.pixelValues[512], -1); // green channel 0 → −1
});

test('bad images are refused with a clear error', () => {
  assert.throws(
    () => preprocessImage({ width: 64, height: 64, data: new Uint8Array(100) }, cfg.image),
    (e) => isQvlError(e, 'IMAGE_DECODE') && /100 bytes/.test(e.message),
  );
  assert.throws(
    () => preprocessImage({ width: 20, height: 64, data: new Uint8Array(20 * 64 * 3) }, cfg.image),
    (e) => isQvlError(e, 'IMAGE_TOO_SMALL') && /20×64/.test(e.message),
  );
  assert.throws(
    () => preprocessImage({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) }, cfg.image, { minPixels: 5000, maxPixels: 4000 }),
    (e) => isQvlError(e, 'OPTION_INVALID') && /minPixels/.test(e.message),
  );
  assert.throws(
    () => preprocessImage({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 3) }, cfg.image, { maxPixels: 0.5 }),
    (e) => isQvlError(e, 'OPTION_INVALID') && /maxPixels must be a positive integer/.test(e.message),
  );
});

test('loadProcessorConfig reads the checkpoint files, the legacy keys and falls back to Qwen3-VL values', () => {
  assert.equal(cfg.image.minPixels, 65536);
  assert.equal(cfg.image.maxPixels, 16777216);
  assert.equal(cfg.video.minPixels, 4096);
  assert.equal(cfg.video.maxPixels, 25165824);
  assert.deepEqual(cfg.image.imageMean, [0.5, 0.5, 0.5]);

  const empty = mkdtempSync(join(tmpdir(), 'qvl-proc-'));
  const d = loadProcessorConfig(empty);
  assert.deepEqual(d.image, { ...DEFAULT_IMAGE_CONFIG });
  assert.deepEqual(d.video, { ...DEFAULT_VIDEO_CONFIG });

  const legacy = mkdtempSync(join(tmpdir(), 'qvl-proc-'));
  writeFileSync(
    join(legacy, 'preprocessor_config.json'),
    JSON.stringify({ min_pixels: 3136, max_pixels: 1003520, size: { shortest_edge: 1, longest_edge: 2 }, patch_size: 14, image_mean: [0.48, 0.45, 0.4] }),
  );
  writeFileSync(
    join(legacy, 'video_preprocessor_config.json'),
    JSON.stringify({ min_pixels: 999, size: { longest_edge: 777777 }, fps: 1, max_frames: 64, do_sample_frames: false }),
  );
  const l = loadProcessorConfig(legacy);
  assert.equal(l.image.minPixels, 3136); // legacy keys override size for images, as in HF
  assert.equal(l.image.maxPixels, 1003520);
  assert.equal(l.image.patchSize, 14);
  assert.deepEqual(l.image.imageMean, [0.48, 0.45, 0.4]);
  assert.equal(l.video.minPixels, 999); // size has no shortest_edge: the legacy key fills the gap
  assert.equal(l.video.maxPixels, 777777);
  assert.equal(l.video.fps, 1);
  assert.equal(l.video.maxFrames, 64);
  assert.equal(l.video.doSampleFrames, false);
});

test('loadProcessorConfig refuses broken files, naming file and key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qvl-proc-'));
  writeFileSync(join(dir, 'preprocessor_config.json'), '{ not json');
  assert.throws(() => loadProcessorConfig(dir), (e) => isQvlError(e, 'CONFIG_INVALID') && /preprocessor_config\.json/.test(e.message));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ patch_size: -16 }));
  assert.throws(() => loadProcessorConfig(dir), (e) => isQvlError(e, 'CONFIG_INVALID') && /"patch_size"/.test(e.message));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ image_std: [0.5, 0, 0.5] }));
  assert.throws(() => loadProcessorConfig(dir), (e) => isQvlError(e, 'CONFIG_INVALID') && /image_std/.test(e.message));
  writeFileSync(join(dir, 'preprocessor_config.json'), JSON.stringify({ size: { shortest_edge: 100, longest_edge: 10 } }));
  assert.throws(() => loadProcessorConfig(dir), (e) => isQvlError(e, 'CONFIG_INVALID') && /exceed/.test(e.message));
});
