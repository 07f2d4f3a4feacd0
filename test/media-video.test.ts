import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { isQvlError } from '../src/errors.ts';
import { estimateMediaCost } from '../src/api/media-cost.ts';
import { FFMPEG, ffmpegAvailable } from '../src/media/ffmpeg.ts';
import { decodeVideoFrames, loadVideo, probeVideoFile, selectExpression } from '../src/media/video.ts';
import { loadVideoFromImages } from '../src/media/video-images.ts';
import { frameSampler } from '../src/processor/video-sampling.ts';

const DIR = path.join(import.meta.dirname, 'fixtures', 'media');
const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
// Written by tools/reference/make_video_fixtures.py: PyAV's frames (transformers' video reader).
const REF = JSON.parse(readFileSync(path.join(DIR, 'video_reference.json'), 'utf8')) as {
  clips: Record<string, { fps: number; width: number; height: number; indices: number[]; decoded_frames: number; rgb: string }>;
};
const skip = ffmpegAvailable() ? false : 'ffmpeg/ffprobe not installed (Debian: apt-get install ffmpeg)';

for (const [name, ref] of Object.entries(REF.clips)) {
  test(`loadVideo samples and decodes ${name} exactly as PyAV + HF sampling`, { skip }, async () => {
    const v = await loadVideo(path.join(DIR, name), { chooseFrames: frameSampler() });
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
  const v = await loadVideo(file, { chooseFrames: frameSampler({ numFrames: 3 }) });
  assert.deepEqual(v.indices, [0, 12, 24]);
  const all = await loadVideo(file, { chooseFrames: frameSampler({ fps: 10 }) });
  assert.equal(all.indices.length, 25);
  const capped = await loadVideo(file, { chooseFrames: frameSampler({ fps: 10, maxFrames: 8 }), minPixels: 1024, maxPixels: 65536 });
  assert.equal(capped.indices.length, 8);
  assert.deepEqual([capped.minPixels, capped.maxPixels], [1024, 65536]);
  const b64 = readFileSync(file).toString('base64');
  const fromData = await loadVideo(`data:video/mp4;base64,${b64}`, { chooseFrames: frameSampler({ numFrames: 3 }) });
  assert.deepEqual(Buffer.from(fromData.frames[1]!.data), Buffer.from(v.frames[1]!.data));
  const fromB64 = await loadVideo(b64, { chooseFrames: frameSampler({ numFrames: 3 }) });
  assert.deepEqual(Buffer.from(fromB64.frames[2]!.data), Buffer.from(v.frames[2]!.data));
});

test('probeVideoFile counts packets when the container has no frame count (WebM)', { skip }, async () => {
  const p = await probeVideoFile(path.join(DIR, 'clip_vp9.webm'));
  assert.deepEqual([p.totalFrames, p.fps, p.width, p.height, p.codec], [25, 10, 64, 48, 'vp9']);
});

test('video limits and bad input give clear errors', { skip }, async () => {
  const file = path.join(DIR, 'clip_h264.mp4');
  await assert.rejects(loadVideo(file, { chooseFrames: frameSampler({ fps: 10 }), maxDecodedFrames: 10 }), (e) => {
    assert.ok(isQvlError(e, 'VIDEO_INVALID'));
    assert.match(e.message, /25 frames requested, over the limit of 10/);
    return true;
  });
  await assert.rejects(loadVideo(file, { chooseFrames: frameSampler(), maxPixelsPerFrame: 1000 }), (e) => isQvlError(e, 'IMAGE_TOO_LARGE') && /64x48/.test(e.message));
  await assert.rejects(loadVideo(file, { chooseFrames: frameSampler(), maxDecodedBytes: 10000 }), (e) => isQvlError(e, 'MEDIA_TOO_LARGE'));
  await assert.rejects(loadVideo(path.join(DIR, 'rgba.png.pil.rgb'), { chooseFrames: frameSampler() }), (e) => {
    assert.ok(isQvlError(e, 'VIDEO_INVALID'));
    assert.match(e.message, /rgba\.png\.pil\.rgb: not a video format qvl reads \(ffprobe sees rawvideo\)/);
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

// ---- ffmpeg reads the one file it is given, nothing else ----

const ffmpegMake = (args: string[]) => {
  const r = spawnSync(FFMPEG, ['-v', 'error', '-y', ...args], { encoding: 'utf8' });
  return r.status === 0;
};

test('the container allow-list takes every common video format', { skip }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'qvl-fmt-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const src = ['-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=25', '-frames:v', '6'];
  const formats: [string, string[]][] = [
    ['a.mp4', ['-c:v', 'libx264', '-pix_fmt', 'yuv420p']],
    ['a.mov', ['-c:v', 'mpeg4']],
    ['a.mkv', ['-c:v', 'mpeg4']],
    ['a.webm', ['-c:v', 'libvpx']],
    ['a.avi', ['-c:v', 'mpeg4']],
    ['a.flv', ['-c:v', 'flv']],
    ['a.ts', ['-c:v', 'mpeg2video']],
    ['a.mpg', ['-c:v', 'mpeg1video', '-f', 'mpeg']],
    ['a.m2v', ['-c:v', 'mpeg2video', '-f', 'mpeg2video']],
    ['a.m4v', ['-c:v', 'mpeg4', '-f', 'm4v']],
    ['a.ogv', ['-c:v', 'libtheora']],
    ['a.wmv', ['-c:v', 'wmv2']],
    ['a.nut', ['-c:v', 'ffv1']],
    ['a.h264', ['-c:v', 'libx264', '-f', 'h264']],
    ['a.ivf', ['-c:v', 'libvpx', '-f', 'ivf']],
    ['a.y4m', ['-pix_fmt', 'yuv420p']],
    ['a.gif', []],
    ['a.apng', ['-f', 'apng']],
  ];
  const made = formats.filter(([name, args]) => ffmpegMake([...src, ...args, path.join(dir, name)]));
  assert.ok(made.length >= 12, `only ${made.map((f) => f[0]).join(', ')} could be written`);
  for (const [name] of made) {
    // without the extension too, as data URIs and downloads are stored
    const bare = path.join(dir, `input-${name.slice(2)}`);
    copyFileSync(path.join(dir, name), bare);
    for (const file of [path.join(dir, name), bare]) {
      const v = await loadVideo(file, { chooseFrames: frameSampler({ numFrames: 2 }) });
      assert.deepEqual([v.width, v.height, v.frames.length], [64, 48, 2], file);
    }
  }
});

test('playlists and concat lists are refused by the probe and by the decoder; other non-video input says what it is', { skip }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'qvl-list-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const clip = path.join(DIR, 'clip_h264.mp4');
  const lists = {
    'hls-url.m3u8': `#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:2.5,\n${pathToFileURL(clip).href}\n#EXT-X-ENDLIST\n`,
    'hls-path': `#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:2.5,\n${clip}\n#EXT-X-ENDLIST\n`,
    'hls-relative': `#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:2.5,\n${path.relative(dir, clip)}\n#EXT-X-ENDLIST\n`,
    'list.ffconcat': `ffconcat version 1.0\nfile '${clip}'\n`,
  };
  const probe = await probeVideoFile(clip);
  for (const [name, text] of Object.entries(lists)) {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    const refused = (e: unknown) => isQvlError(e, 'VIDEO_INVALID') && /playlists and concat lists are not accepted \(the input is (hls|concat)/.test(e.message);
    await assert.rejects(probeVideoFile(file), refused, name);
    await assert.rejects(decodeVideoFrames(file, [0, 1], probe), refused, name);
    const data = `data:video/mp4;base64,${Buffer.from(text).toString('base64')}`;
    await assert.rejects(loadVideo(data, { chooseFrames: frameSampler() }), refused, name);
    await assert.rejects(estimateMediaCost({ kind: 'video', source: data }), refused, name);
  }
  // a still image is not a video container here
  await assert.rejects(loadVideo(path.join(DIR, 'rgba.png'), { chooseFrames: frameSampler() }), (e) => isQvlError(e, 'VIDEO_INVALID') && /not a video format qvl reads \(ffprobe sees \w+\)/.test(e.message));
  // other ffmpeg failures quote ffmpeg, with the source's label in place of the temporary file
  await assert.rejects(loadVideo(`data:video/mp4;base64,${Buffer.alloc(3000, 0x41).toString('base64')}`, { chooseFrames: frameSampler() }), (e) => {
    assert.ok(isQvlError(e, 'VIDEO_INVALID'));
    assert.match(e.message, /^data URI \(\d+ characters\): ffprobe failed: /);
    assert.doesNotMatch(e.message, /qvl-media-/);
    return true;
  });
});

test('selectExpression: runs become between(), terms are summed as a balanced tree', () => {
  assert.equal(selectExpression([3]), 'eq(n\\,3)');
  assert.equal(selectExpression([0, 1, 2, 5, 7, 8]), '(between(n\\,0\\,2)+(eq(n\\,5)+between(n\\,7\\,8)))');
  const many = Array.from({ length: 768 }, (_, i) => i * 3);
  const expr = selectExpression(many);
  let depth = 0;
  let deepest = 0;
  for (const c of expr) {
    if (c === '(') deepest = Math.max(deepest, ++depth);
    if (c === ')') depth--;
  }
  assert.ok(deepest <= 12, `nesting ${deepest}`);
});

test('a 3000-frame GIF decodes (240 sampled frames), and the cost preview plans the same frames', { skip }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'qvl-gif-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const gif = path.join(dir, 'long.gif');
  assert.ok(ffmpegMake(['-f', 'lavfi', '-i', 'testsrc=size=32x32:rate=25', '-frames:v', '3000', gif]));
  const cost = await estimateMediaCost({ kind: 'video', source: gif });
  const v = await loadVideo(gif, { chooseFrames: frameSampler() });
  assert.equal(v.totalFrames, 3000);
  assert.equal(v.frames.length, cost.items[0]!.frames);
  assert.equal(v.frames.length, 240);
  // frame k of testsrc differs from frame k+12: the frames really are the sampled ones, not repeats
  assert.notDeepEqual(Buffer.from(v.frames[0]!.data), Buffer.from(v.frames[1]!.data));
  const all = await loadVideo(gif, { chooseFrames: frameSampler({ fps: 25, maxFrames: 768 }), maxDecodedFrames: 768 });
  assert.equal(all.frames.length, 768);
});
