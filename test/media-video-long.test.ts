/**
 * Long videos through the media path: a 20-minute file (30,000 frames at 25 fps, generated here with
 * ffmpeg) is sampled at HF's indices with HF's exact timestamps (test/fixtures/processor/video-cap,
 * transformers 5.18.0), only the sampled frames are kept, keyframe segments give the very frames one
 * pass gives, and resizing at decode time gives the very pixel values preprocessing full frames gives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { estimateMediaCost } from '../src/api/media-cost.ts';
import { FFMPEG, ffmpegAvailable } from '../src/media/ffmpeg.ts';
import { decodeVideoFrames, loadVideo, planDecodeSegments, probeFrameIndex, probeVideoFile, type VideoDecodeReport } from '../src/media/video.ts';
import { DEFAULT_VIDEO_CONFIG } from '../src/processor/config.ts';
import { pyFormat1f } from '../src/processor/python-math.ts';
import { frameSampler } from '../src/processor/video-sampling.ts';
import { preprocessVideo, videoFrameResizer, type VideoOptions } from '../src/processor/video-processor.ts';

const REF = JSON.parse(readFileSync(path.join(import.meta.dirname, 'fixtures', 'processor', 'video-cap', 'cases.json'), 'utf8'));
const long = (name: string) => REF.long_sampling.find((c: any) => c.name === name);
const skip = ffmpegAvailable() ? false : 'ffmpeg/ffprobe not installed (Debian: apt-get install ffmpeg)';
const cfg = DEFAULT_VIDEO_CONFIG;

let dir: string | undefined;
let made: string | undefined;
/** 20 minutes of 64×64 at 25 fps, B-frames, a keyframe every 100 s (about 3 s to encode). */
function longFile(): string {
  if (made) return made;
  dir = mkdtempSync(path.join(tmpdir(), 'qvl-long-'));
  made = path.join(dir, 'twenty-minutes.mp4');
  const args = ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=64x64:rate=25', '-t', '1200'];
  args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-bf', '2', '-g', '2500', '-keyint_min', '2500', '-sc_threshold', '0', '-pix_fmt', 'yuv420p', made);
  const r = spawnSync(FFMPEG, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return made;
}
test.after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});
/** The default sampling (fps 2, at most 768 frames) of the long file, decoded once for all tests. */
let sampled: ReturnType<typeof loadVideo> | undefined;
const sampledLong = () => (sampled ??= loadVideo(longFile(), { chooseFrames: frameSampler() }));

test('a 20-minute video: HF indices at fps 2 (768 frames), exact timestamps and texts, only those frames kept', { skip }, async () => {
  const ref = long('twenty_min_25fps_fps2');
  const file = longFile();
  const v = await sampledLong();
  assert.deepEqual([v.totalFrames, v.fps, v.width, v.height], [ref.total_frames, ref.fps, 64, 64]);
  assert.deepEqual(v.indices, ref.sampled_indices);
  assert.equal(v.frames.length, 768);
  // the frames live in one buffer of exactly the sampled frames: nothing else was held
  assert.equal(v.frames[0]!.data.buffer.byteLength, 768 * 64 * 64 * 3);
  const p = preprocessVideo(v, cfg);
  assert.deepEqual(p.timestamps, ref.timestamps);
  assert.deepEqual(
    p.timestamps.map((t) => `<${pyFormat1f(t)} seconds>`),
    ref.timestamp_texts,
  );
  assert.deepEqual(p.grid, [384, 4, 4]);
  // the cost preview (ffprobe only) promises the same frames and texts
  const cost = await estimateMediaCost({ kind: 'video', source: file });
  assert.equal(cost.items[0]!.frames, 768);
  assert.deepEqual(cost.items[0]!.timestampTexts, ref.timestamp_texts);
});

test('keyframe segments decode exactly the frames one pass decodes (B-frames, 12 keyframes)', { skip }, async () => {
  const ref = long('twenty_min_25fps_fps2');
  const file = longFile();
  const probe = await probeVideoFile(file);
  const index = await probeFrameIndex(file, probe);
  assert.ok(index);
  assert.equal(index.pts.length, 30000);
  assert.deepEqual(index.keyframes, Array.from({ length: 12 }, (_, k) => k * 2500));
  // frame i has the i-th timestamp: 512 ticks of 1/12800 s a frame at 25 fps
  assert.deepEqual([index.pts[0], index.pts[1], index.pts[29999]], [0, 512, 29999 * 512]);
  // every 128th sampled frame (7, in 6 keyframe intervals), each interval decoded by its own ffmpeg from its keyframe
  const picks = [0, 128, 256, 384, 512, 640, 767];
  const indices = picks.map((k) => ref.sampled_indices[k]);
  const segments = planDecodeSegments(indices, index.keyframes, { overheadFrames: 0, lanes: 2 });
  assert.ok(segments.length >= 6 && segments.slice(1).every((s) => s.start > 0));
  const reports: VideoDecodeReport[] = [];
  const seeked = await decodeVideoFrames(file, indices, probe, { seek: 'always', decodeConcurrency: 2, onDecodeReport: (r) => reports.push(r) });
  assert.deepEqual(reports, [{ method: 'segments', segments: segments.length }]);
  const onePass = await sampledLong();
  picks.forEach((k, j) => assert.ok(Buffer.from(seeked[j]!.data).equals(Buffer.from(onePass.frames[k]!.data)), `frame ${indices[j]}`));
  // and they are different frames, not one repeated
  assert.ok(!Buffer.from(seeked[0]!.data).equals(Buffer.from(seeked[1]!.data)));
});

test('a segment that misses its frames falls back to one pass; short clips are decoded in one pass', { skip }, async () => {
  const file = path.join(import.meta.dirname, 'fixtures', 'media', 'clip_h264.mp4'); // keyframes at 0, 10, 20; B-frames
  const probe = await probeVideoFile(file);
  const indices = [3, 12, 24];
  const reports: VideoDecodeReport[] = [];
  const want = await decodeVideoFrames(file, indices, probe, { onDecodeReport: (r) => reports.push(r) });
  const seeked = await decodeVideoFrames(file, indices, probe, { seek: 'always', onDecodeReport: (r) => reports.push(r) });
  // a container start time 1 s off sends the seeks 10 frames too far: the segments come up short
  const wrong = await decodeVideoFrames(file, indices, { ...probe, formatStartTime: -1 }, { seek: 'always', onDecodeReport: (r) => reports.push(r) });
  assert.deepEqual(
    reports.map((r) => r.method),
    ['one-pass', 'segments', 'one-pass-fallback'],
  );
  for (const got of [seeked, wrong]) got.forEach((f, k) => assert.ok(Buffer.from(f.data).equals(Buffer.from(want[k]!.data)), `frame ${indices[k]}`));
});

test('resizing at decode time (videoFrameResizer) gives the pixel values of preprocessing full frames, cap off and on', { skip }, async () => {
  const file = path.join(import.meta.dirname, 'fixtures', 'media', 'clip_h264.mp4');
  // 25 frames of 64×48; with the cap, the per-frame floor int(1.05 · 1024) stays under the budget's share
  const full = await loadVideo(file, { chooseFrames: frameSampler({ fps: 10 }) });
  for (const capPixelsPerFrame of [false, true]) {
    const o: VideoOptions = { minPixels: 1024, maxPixels: 25 * 1536, capPixelsPerFrame };
    const small = await loadVideo(file, { chooseFrames: frameSampler({ fps: 10 }), prepareFrames: videoFrameResizer(cfg, o) });
    const a = preprocessVideo(full, cfg, o);
    const b = preprocessVideo(small, cfg, { ...o, sourceSize: { width: small.width, height: small.height } });
    assert.deepEqual([a.resized.width, a.resized.height], [32, 32]);
    assert.deepEqual([small.frames[0]!.width, small.frames[0]!.height, small.width, small.height], [32, 32, 64, 48]);
    assert.deepEqual(b.grid, a.grid);
    assert.deepEqual(b.timestamps, a.timestamps);
    assert.ok(Buffer.from(b.pixelValues.buffer).equals(Buffer.from(a.pixelValues.buffer)), `cap ${capPixelsPerFrame}`);
  }
});

test('planDecodeSegments: seeks where it saves more than a process start, then splits for parallel lanes', () => {
  const keys = [0, 250, 500, 750, 1000];
  // far-apart frames, free processes: one segment per keyframe interval, each from its keyframe
  assert.deepEqual(planDecodeSegments([10, 300, 620, 990], keys, { overheadFrames: 0, lanes: 1 }), [
    { start: 0, targets: [10] },
    { start: 250, targets: [300] },
    { start: 500, targets: [620] },
    { start: 750, targets: [990] },
  ]);
  // a start costing 1000 frames is never worth it with one lane
  assert.deepEqual(planDecodeSegments([10, 300, 620, 990], keys, { overheadFrames: 1000, lanes: 1 }), [{ start: 0, targets: [10, 300, 620, 990] }]);
  // a start costing 300 frames: no seek saves that much, but two lanes split once, where the halves balance
  assert.deepEqual(planDecodeSegments([10, 300, 620, 990], keys, { overheadFrames: 300, lanes: 2 }), [
    { start: 0, targets: [10, 300] },
    { start: 500, targets: [620, 990] },
  ]);
  // no keyframe but the first: nothing to split at
  assert.deepEqual(planDecodeSegments([5, 50, 95], [0], { overheadFrames: 0, lanes: 4 }), [{ start: 0, targets: [5, 50, 95] }]);
  assert.deepEqual(planDecodeSegments([], keys, { overheadFrames: 0, lanes: 4 }), []);
});
