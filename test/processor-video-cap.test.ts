/**
 * `cap_pixels_per_frame` (transformers 5.18's per-frame pixel cap) and long-video plans, against
 * test/fixtures/processor/video-cap/ (tools/reference/make_video_cap_fixtures.py, transformers 5.18.0).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { loadProcessorConfig, parseVideoProcessorConfig, type VideoProcessorConfig } from '../src/processor/config.ts';
import { pyFormat1f } from '../src/processor/python-math.ts';
import { videoTokenCost } from '../src/processor/token-cost.ts';
import { capPixelsPerFrame, planVideo, preprocessVideo, type VideoOptions } from '../src/processor/video-processor.ts';
import { sampleFrameIndices } from '../src/processor/video-sampling.ts';
import { firstBitDifference, sha256F32, synthFrame } from './helpers/processor-fixtures.ts';

const DIR = join(import.meta.dirname, 'fixtures', 'processor', 'video-cap');
const REF = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8'));
const RUNS = [
  ['nocap', false],
  ['cap', true],
] as const;

function config(extra: Record<string, unknown> = {}): VideoProcessorConfig {
  return parseVideoProcessorConfig({ ...REF.config, ...extra });
}

test('the fixtures come from transformers 5.18.0', () => {
  assert.equal(REF.transformers, '5.18.0');
  assert.ok(REF.full.length >= 5 && REF.plan.length >= 5 && REF.long_sampling.length >= 8);
});

test('full HF runs: grid, size, indices, timestamps and pixel_values with the cap off and on', () => {
  for (const c of REF.full) {
    const cfg = config(c.config);
    const frames = Array.from({ length: c.frames }, (_, k) => synthFrame(c.wh[0], c.wh[1], k));
    for (const [key, cap] of RUNS) {
      const want = c.runs[key];
      const what = `${c.name} ${key}`;
      const r = preprocessVideo({ frames, fps: c.fps }, cfg, { ...c.options, capPixelsPerFrame: cap });
      assert.deepEqual(r.sampledIndices, want.sampled_indices, what);
      assert.deepEqual(r.timestamps, want.timestamps, what);
      assert.deepEqual(r.timestamps.map((t) => `<${pyFormat1f(t)} seconds>`), want.timestamp_texts, what);
      assert.deepEqual(r.grid, want.grid, what);
      assert.deepEqual([r.resized.width, r.resized.height], want.resized_wh, what);
      assert.equal(r.pixelValues.length, want.pixel_values_shape[0] * want.pixel_values_shape[1], what);
      if (want.pixel_values_file) {
        const buf = readFileSync(join(DIR, want.pixel_values_file));
        const expected = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
        assert.equal(firstBitDifference(r.pixelValues, expected), -1, what);
      }
      assert.equal(sha256F32(r.pixelValues), want.pixel_values_sha256, what);
    }
  }
});

test('long videos planned from metadata alone: sampled indices, timestamps, sizes with the cap off and on', () => {
  const cfg = config();
  for (const c of REF.plan) {
    for (const [key, cap] of RUNS) {
      const want = c.runs[key];
      const what = `${c.name} ${key}`;
      const opts: VideoOptions = { ...c.options, minPixels: c.size.shortest_edge, maxPixels: c.size.longest_edge, capPixelsPerFrame: cap };
      const plan = planVideo({ frameCount: c.total_frames, width: c.wh[0], height: c.wh[1], fps: c.fps }, cfg, opts);
      assert.deepEqual(plan.sampledIndices, c.sampled_indices, what);
      assert.deepEqual(plan.timestamps, c.timestamps, what);
      assert.deepEqual(plan.grid, want.grid, what);
      assert.deepEqual([plan.resized.width, plan.resized.height], want.resized_wh, what);
      assert.equal(plan.tokens, want.tokens, what);
      const cost = videoTokenCost({ frameCount: c.total_frames, width: c.wh[0], height: c.wh[1], fps: c.fps }, cfg, opts);
      assert.deepEqual(cost.timestampTexts, c.timestamp_texts, what);
      assert.equal(cost.tokens, want.tokens, what);
    }
  }
});

test('hour-long sampling: indices, exact timestamps and "<t seconds>" texts as HF, at several rates', () => {
  const cfg = config();
  for (const c of REF.long_sampling) {
    // the source rate as ffprobe gives it (a fraction) and as PyAV gives it (float(average_rate)) is one double
    assert.equal(c.fps_fraction[0] / c.fps_fraction[1], c.fps, c.name);
    assert.deepEqual(sampleFrameIndices(c.total_frames, c.fps, { fps: c.target_fps, maxFrames: c.max_frames }), c.sampled_indices, c.name);
    const plan = planVideo({ frameCount: c.total_frames, width: 64, height: 64, fps: c.fps }, { ...cfg, maxFrames: c.max_frames }, { fps: c.target_fps });
    assert.deepEqual(plan.sampledIndices, c.sampled_indices, c.name);
    assert.deepEqual(plan.timestamps, c.timestamps, c.name);
    assert.deepEqual(plan.timestamps.map((t) => `<${pyFormat1f(t)} seconds>`), c.timestamp_texts, c.name);
  }
});

test('cap_pixels_per_frame and max_video_tokens are read from video_preprocessor_config.json; a per-call value wins', () => {
  const d = config();
  assert.equal(d.capPixelsPerFrame, false);
  assert.equal(d.maxVideoTokens, 768);
  assert.equal(config({ cap_pixels_per_frame: null }).capPixelsPerFrame, false);
  const on = config({ cap_pixels_per_frame: true, max_video_tokens: 4 });
  assert.equal(on.capPixelsPerFrame, true);
  assert.equal(on.maxVideoTokens, 4);

  const dir = mkdtempSync(join(tmpdir(), 'qvl-cap-'));
  writeFileSync(join(dir, 'video_preprocessor_config.json'), JSON.stringify({ ...REF.config, cap_pixels_per_frame: true }));
  const fromFile = loadProcessorConfig(dir).video;
  assert.equal(fromFile.capPixelsPerFrame, true);

  const hd = REF.full.find((c: any) => c.name === 'short_hd');
  const shape = { frameCount: hd.frames, width: hd.wh[0], height: hd.wh[1], fps: hd.fps };
  assert.deepEqual(planVideo(shape, fromFile).grid, hd.runs.cap.grid); // the file's true applies
  assert.deepEqual(planVideo(shape, fromFile, { capPixelsPerFrame: false }).grid, hd.runs.nocap.grid); // per call: off
  assert.deepEqual(planVideo(shape, d, { capPixelsPerFrame: true }).grid, hd.runs.cap.grid);
  // a config's max_video_tokens (4 tokens = 4096 px a frame) applies through the cap, a per-call one overrides it
  const tok = REF.full.find((c: any) => c.name === 'config_tokens');
  const tshape = { frameCount: tok.frames, width: tok.wh[0], height: tok.wh[1], fps: tok.fps };
  assert.deepEqual(planVideo(tshape, config(tok.config), { capPixelsPerFrame: true }).grid, tok.runs.cap.grid);
  assert.deepEqual(planVideo(tshape, d, { capPixelsPerFrame: true, maxVideoTokens: 4 }).grid, tok.runs.cap.grid);

  assert.throws(() => config({ cap_pixels_per_frame: 'yes' }), (e) => isQvlError(e, 'CONFIG_INVALID') && /cap_pixels_per_frame/.test(e.message));
  assert.throws(() => config({ max_video_tokens: 0 }), (e) => isQvlError(e, 'CONFIG_INVALID') && /max_video_tokens/.test(e.message));
  assert.throws(() => planVideo(shape, d, { capPixelsPerFrame: true, maxVideoTokens: 1.5 }), (e) => isQvlError(e, 'OPTION_INVALID'));
});

test('capPixelsPerFrame: the arithmetic of HF resize', () => {
  // 4 frames, default budget: the 768-token frame cap (768 · 32² = 786,432 px) binds
  assert.deepEqual(capPixelsPerFrame(4, 32, 4096, 25165824, 768), { pixelsPerFrame: 786432, maxPixels: 4 * 786432 });
  // 768 frames: the even share 25,165,824 // 768 = 32,768
  assert.deepEqual(capPixelsPerFrame(768, 32, 4096, 25165824, 768), { pixelsPerFrame: 32768, maxPixels: 25165824 });
  // the floor int(4096 · 1.05) = 4300 can lift the budget above maxPixels
  assert.deepEqual(capPixelsPerFrame(768, 32, 4096, 2000000, 768), { pixelsPerFrame: 4300, maxPixels: 768 * 4300 });
});
