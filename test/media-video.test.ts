import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { ffmpegAvailable } from '../src/media/ffmpeg.ts';
import { decodeVideoFrames, loadVideo, probeVideoFile } from '../src/media/video.ts';
import { loadVideoFromImages } from '../src/media/video-images.ts';

const DIR = path.join(import.meta.dirname, 'fixtures', 'media');
const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
// Written by tools/reference/make_video_fixtures.py: PyAV's frames (transformers' video reader).
const REF = JSON.parse(readFileSync(path.join(DIR, 'video_reference.json'), 'utf8')) as {
  clips: Record<string, { fps: number; width: number; height: number; indices: number[]; decoded_frames: number; rgb: string }>;
};
const skip = ffmpegAvailable() ? false : 'ffmpeg/ffprobe not installed (Debian: apt-get install ffmpeg)';

for (const [name, ref] of Object.entries(REF.clips)) {
  test(`loadVideo samples and decodes ${name} exactly as PyAV + HF sampling`, { skip }, async () => {
    const v = await loadVideo(path.join(DIR, name));
    assert.equal(v.fps, ref.fps);
    assert.equal(v.totalFrames, ref.decoded_frames);
    assert.deepEqual(v.indices, ref.indices);
    assert.deepEqual([v.width, v.height], [ref.width, ref.height]);
    const expected = readFileSync(path.join(DIR, ref.rgb));
    const frameBytes = ref.width * ref.height * 3;
    assert.equal(v.frames.length, ref.indices.length);
    v.frames.forEach((f, k) => assert.deepEqual(Buffer.from(f.data), expected.subarray(k * frameBytes, (k + 1) * frameBytes), `frame ${k}`));
  });
}

test('sampling options reach the frame choice; Base64 and data-URI videos work', { skip }, async () => {
  const file = path.join(DIR, 'clip_h264.mp4');
  const v = await loadVideo(file, { numFrames: 3 });
  assert.deepEqual(v.indices, [0, 12, 24]);
  const all = await loadVideo(file, { fps: 10 });
  assert.equal(all.indices.length, 25);
  const capped = await loadVideo(file, { fps: 10, maxFrames: 8, minPixels: 1024, maxPixels: 65536 });
  assert.equal(capped.indices.length, 8);
  assert.deepEqual([capped.minPixels, capped.maxPixels], [1024, 65536]);
  const b64 = readFileSync(file).toString('base64');
  const fromData = await loadVideo(`data:video/mp4;base64,${b64}`, { numFrames: 3 });
  assert.deepEqual(Buffer.from(fromData.frames[1]!.data), Buffer.from(v.frames[1]!.data));
  const fromB64 = await loadVideo(b64, { numFrames: 3 });
  assert.deepEqual(Buffer.from(fromB64.frames[2]!.data), Buffer.from(v.frames[2]!.data));
});

test('probeVideoFile counts packets when the container has no frame count (WebM)', { skip }, async () => {
  const p = await probeVideoFile(path.join(DIR, 'clip_vp9.webm'));
  assert.deepEqual([p.totalFrames, p.fps, p.width, p.height, p.codec], [25, 10, 64, 48, 'vp9']);
});

test('video limits and bad input give clear errors', { skip }, async () => {
  const file = path.join(DIR, 'clip_h264.mp4');
  await assert.rejects(loadVideo(file, { fps: 10, maxDecodedFrames: 10 }), (e) => {
    assert.ok(isQvlError(e, 'VIDEO_INVALID'));
    assert.match(e.message, /25 frames requested, over the limit of 10/);
    return true;
  });
  await assert.rejects(loadVideo(file, { maxPixelsPerFrame: 1000 }), (e) => isQvlError(e, 'IMAGE_TOO_LARGE') && /64x48/.test(e.message));
  await assert.rejects(loadVideo(file, { maxDecodedBytes: 10000 }), (e) => isQvlError(e, 'MEDIA_TOO_LARGE'));
  await assert.rejects(loadVideo(path.join(DIR, 'rgba.png.pil.rgb')), (e) => {
    assert.ok(isQvlError(e, 'VIDEO_INVALID'));
    assert.match(e.message, /rgba\.png\.pil\.rgb: ffprobe failed/);
    return true;
  });
  const probe = await probeVideoFile(file);
  // a frame count larger than the file holds (a lying container) is caught, not padded with garbage
  await assert.rejects(decodeVideoFrames(file, [0, 30], { ...probe, totalFrames: 40 }), (e) => isQvlError(e, 'VIDEO_INVALID') && /decoded 1 of 2/.test(e.message));
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(decodeVideoFrames(file, [0], probe, { signal: ac.signal }), (e) => isQvlError(e, 'ABORTED'));
  await assert.rejects(decodeVideoFrames(file, [0, 24], probe, { timeoutMs: 1 }), (e) => isQvlError(e, 'VIDEO_INVALID') && /did not finish within 1 ms/.test(e.message));
});

test('a video given as a list of images: one frame per image at the given fps', async () => {
  const files = [0, 1, 2, 3].map((i) => path.join(TINY, `video_frame_${i}.png`));
  const v = await loadVideoFromImages(files, { fps: 4 });
  assert.equal(v.frames.length, 4);
  assert.deepEqual(v.indices, [0, 1, 2, 3]);
  assert.equal(v.fps, 4);
  assert.equal(v.frames[0]!.data.length, v.width * v.height * 3);
  await assert.rejects(loadVideoFromImages(files, { maxDecodedFrames: 2 }), (e) => isQvlError(e, 'VIDEO_INVALID') && /limit of 2 frames/.test(e.message));
  await assert.rejects(loadVideoFromImages([files[0]!, path.join(DIR, 'rgba.png')]), (e) => {
    assert.ok(isQvlError(e, 'VIDEO_INVALID'));
    assert.match(e.message, /frame 1 .*rgba\.png.* is 40x24/);
    return true;
  });
  await assert.rejects(loadVideoFromImages([]), (e) => isQvlError(e, 'VIDEO_INVALID'));
});
