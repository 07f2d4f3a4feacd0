import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isQvlError } from '../src/errors.ts';
import type { RgbImage } from '../src/media/rgb.ts';
import { loadProcessorConfig } from '../src/processor/config.ts';
import { planVideo, preprocessVideo, videoTimestamps } from '../src/processor/video-processor.ts';
import { sampleFrameIndices } from '../src/processor/video-sampling.ts';
import {
  asF32,
  asI64,
  decodePng,
  firstBitDifference,
  readCaseJson,
  readProcessorCases,
  readSafetensors,
  sha256F32,
  synthFrame,
  tensor,
  TINY,
} from './helpers/processor-fixtures.ts';

const cfg = loadProcessorConfig(TINY);
const framesP: Promise<RgbImage[]> = Promise.all(Array.from({ length: 8 }, (_, k) => decodePng(join(TINY, `video_frame_${k}.png`))));

test('case_d: 8 frames at 2 fps, all kept; pixel_values, grid and timestamps as HF', async () => {
  const st = readSafetensors(join(TINY, 'case_d_video.safetensors'));
  const j = readCaseJson('case_d_video');
  const r = preprocessVideo({ frames: await framesP, fps: j.video_fps }, cfg.video);
  assert.deepEqual(r.sampledIndices, j.sampled_frame_indices);
  assert.deepEqual(r.timestamps, j.timestamps_seconds);
  assert.deepEqual(r.grid, asI64(tensor(st, 'video_grid_thw')));
  assert.deepEqual(r.resized, { width: 128, height: 64 });
  assert.equal(firstBitDifference(r.pixelValues, asF32(tensor(st, 'pixel_values_videos'))), -1);
});

test('case_d2: the same frames said to be 4 fps are sampled down to [0, 2, 5, 7]', async () => {
  const st = readSafetensors(join(TINY, 'case_d2_video_sampling.safetensors'));
  const j = readCaseJson('case_d2_video_sampling');
  const r = preprocessVideo({ frames: await framesP, fps: j.video_fps }, cfg.video);
  assert.deepEqual(r.sampledIndices, [0, 2, 5, 7]);
  assert.deepEqual(r.sampledIndices, j.sampled_frame_indices);
  assert.deepEqual(r.timestamps, j.timestamps_seconds);
  assert.deepEqual(r.grid, asI64(tensor(st, 'video_grid_thw')));
  assert.equal(firstBitDifference(r.pixelValues, asF32(tensor(st, 'pixel_values_videos'))), -1);
});

test('pre-sampled frames (indices given) are used as they are', async () => {
  const all = await framesP;
  const st = readSafetensors(join(TINY, 'case_d2_video_sampling.safetensors'));
  const r = preprocessVideo({ frames: [all[0], all[2], all[5], all[7]], fps: 4, indices: [0, 2, 5, 7], totalFrames: 8 }, cfg.video);
  assert.deepEqual(r.sampledIndices, [0, 2, 5, 7]);
  assert.deepEqual(r.timestamps, [0.25, 1.5]);
  assert.equal(firstBitDifference(r.pixelValues, asF32(tensor(st, 'pixel_values_videos'))), -1);
});

test('HF video processor reference cases: odd counts, small frames, budgets, per-frame cap, fps rules', () => {
  const cases = readProcessorCases().videos as any[];
  assert.ok(cases.length >= 8);
  for (const c of cases) {
    const frames = Array.from({ length: c.frames }, (_, k) => synthFrame(c.wh[0], c.wh[1], k));
    const r = preprocessVideo({ frames, fps: c.fps ?? undefined } as any, cfg.video, c.options);
    assert.deepEqual(r.sampledIndices, c.sampled_indices, c.name);
    assert.deepEqual(r.timestamps, c.timestamps, c.name);
    assert.deepEqual(r.grid, c.grid, c.name);
    assert.deepEqual([r.resized.width, r.resized.height], c.resized_wh, c.name);
    assert.equal(r.pixelValues.length, c.pixel_values_shape[0] * c.pixel_values_shape[1], c.name);
    assert.equal(sha256F32(r.pixelValues), c.pixel_values_sha256, c.name);
  }
});

test('sampleFrameIndices agrees with HF sample_frames over many frame counts and rates', () => {
  const cases = readProcessorCases().sampling as any[];
  assert.ok(cases.length > 150);
  for (const c of cases) {
    const opts = c.num_frames !== undefined ? { numFrames: c.num_frames } : c.target_fps !== undefined ? { fps: c.target_fps } : {};
    assert.deepEqual(sampleFrameIndices(c.total, c.fps ?? undefined, opts), c.indices, JSON.stringify({ ...c, indices: undefined }));
  }
});

test('the spec example: 10 s at 30 fps, 1280×720', () => {
  const plan = planVideo({ frameCount: 300, fps: 30, width: 1280, height: 720 }, cfg.video);
  assert.equal(plan.sampledIndices.length, 20);
  assert.deepEqual(plan.sampledIndices.slice(0, 3), [0, 16, 31]);
  assert.equal(plan.sampledIndices[19], 299);
  assert.deepEqual(plan.resized, { width: 1280, height: 704 });
  assert.deepEqual(plan.grid, [10, 44, 80]);
  assert.equal(plan.tokensPerGroup, 880);
  assert.equal(plan.tokens, 8800);
});

test('timestamps: padded to the temporal patch, mean of first and last frame of each group', () => {
  assert.deepEqual(videoTimestamps([0, 1, 2, 3, 4], 2, 2), [0.25, 1.25, 2]);
  assert.deepEqual(videoTimestamps([0, 16, 33, 49], 24, 2), [(0 + 16 / 24) / 2, (33 / 24 + 49 / 24) / 2]);
});

test('bad videos and options are refused with a clear error', async () => {
  const f = await framesP;
  const other = synthFrame(64, 64, 0);
  assert.throws(() => preprocessVideo({ frames: [], fps: 2 }, cfg.video), (e) => isQvlError(e, 'VIDEO_INVALID') && /no frames/.test(e.message));
  assert.throws(
    () => preprocessVideo({ frames: [f[0], other, f[2], f[3]], fps: 2 }, cfg.video),
    (e) => isQvlError(e, 'VIDEO_INVALID') && /frame 1 is 64×64/.test(e.message),
  );
  assert.throws(
    () => preprocessVideo({ frames: [f[0]], fps: 2 }, cfg.video),
    (e) => isQvlError(e, 'VIDEO_INVALID') && /at least 2 frames/.test(e.message),
  );
  assert.throws(
    () => preprocessVideo({ frames: f.slice(0, 2), fps: 2, indices: [0] }, cfg.video),
    (e) => isQvlError(e, 'VIDEO_INVALID') && /2 frames but 1 source indices/.test(e.message),
  );
  assert.throws(() => preprocessVideo({ frames: f, fps: -1 }, cfg.video), (e) => isQvlError(e, 'VIDEO_INVALID') && /frame rate/.test(e.message));
  assert.throws(() => sampleFrameIndices(10, 30, { fps: 2, numFrames: 4 }), (e) => isQvlError(e, 'OPTION_INVALID') && /not both/.test(e.message));
  assert.throws(() => sampleFrameIndices(0, 30), (e) => isQvlError(e, 'VIDEO_INVALID'));
  assert.throws(() => sampleFrameIndices(10, 30, { maxFrames: 0 }), (e) => isQvlError(e, 'OPTION_INVALID') && /maxFrames/.test(e.message));
});
