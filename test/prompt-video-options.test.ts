/**
 * Video options from a request to the pixels: `max_frames` and `cap_pixels_per_frame` per part or per
 * request, the frames resized as they are decoded (only resized frames held) giving the very pixel
 * values of preprocessing full frames, and the cost preview promising what prepare delivers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { estimatePromptCost } from '../src/api/prompt-cost.ts';
import { promptPartsLoader } from '../src/api/prompt-parts.ts';
import { preparePrompt } from '../src/api/prompt.ts';
import { ffmpegAvailable } from '../src/media/ffmpeg.ts';
import { loadVideo } from '../src/media/video.ts';
import { preprocessVideo } from '../src/processor/video-processor.ts';
import { frameSampler } from '../src/processor/video-sampling.ts';
import { isQvlError } from '../src/errors.ts';
import { HttpError } from '../src/server/errors.ts';
import { resolveLimits } from '../src/server/limits.ts';
import { parseChatRequest } from '../src/server/request.ts';
import { normalizeMessages } from '../src/template/messages.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const CLIP = path.join(import.meta.dirname, 'fixtures', 'media', 'clip_h264.mp4'); // 25 frames of 64×48 at 25 fps
const skip = ffmpegAvailable() ? false : 'ffmpeg/ffprobe not installed (Debian: apt-get install ffmpeg)';

test('a video file: frames resized at decode give the pixel values of full frames; the cap and max_frames change the plan as asked', { skip }, async () => {
  const parts = await promptPartsLoader(TINY)();
  const cfg = parts.processor.video;
  const full = await loadVideo(CLIP, { chooseFrames: frameSampler({ fps: 25, maxFrames: 12 }) });
  // a budget where the cap's floor binds: each of 12 frames gets at least int(1.05 · 3072) pixels, more than 24576 / 12
  const budget = { min_pixels: 3072, max_pixels: 24576 };
  const grids: string[] = [];
  for (const cap of [false, true]) {
    const part = { type: 'video', video: CLIP, fps: 25, max_frames: 12, cap_pixels_per_frame: cap, ...budget };
    const messages = [{ role: 'user', content: [part, { type: 'text', text: 'What happens?' }] }];
    const prepared = await preparePrompt(parts, messages);
    const want = preprocessVideo(full, cfg, { minPixels: budget.min_pixels, maxPixels: budget.max_pixels, maxFrames: 12, capPixelsPerFrame: cap });
    assert.deepEqual(prepared.videoGrids, [want.grid], `cap ${cap}`);
    assert.ok(Buffer.from(prepared.pixelValuesVideos!.buffer).equals(Buffer.from(want.pixelValues.buffer)), `cap ${cap}: pixel values`);
    assert.deepEqual([prepared.media[0]!.width, prepared.media[0]!.height], [64, 48], 'the source size is reported, not the resized one');
    const cost = await estimatePromptCost(parts, messages);
    assert.equal(cost.promptTokens, prepared.ids.length, `cap ${cap}: preview`);
    assert.equal(cost.items[0]!.frames, 12);
    grids.push(want.grid.join('x'));
  }
  assert.notEqual(grids[0], grids[1], 'the cap made no difference: the case does not test it');
  // the request-wide option is the default for every video; a part's own value wins
  const opts = { capPixelsPerFrame: true, minPixels: budget.min_pixels, maxPixels: budget.max_pixels, fps: 25, maxFrames: 12 };
  const wide = await preparePrompt(parts, [{ role: 'user', content: [{ type: 'video', video: CLIP }] }], opts);
  const own = await preparePrompt(parts, [{ role: 'user', content: [{ type: 'video', video: CLIP, cap_pixels_per_frame: false }] }], opts);
  assert.deepEqual([wide.videoGrids[0]!.join('x'), own.videoGrids[0]!.join('x')], [grids[1], grids[0]]);
});

test('requests: cap_pixels_per_frame is a boolean, per request or per video part, and nothing else', () => {
  const limits = resolveLimits();
  const body = (extra: object, part: object = {}) => ({
    model: 'm',
    messages: [{ role: 'user', content: [{ type: 'video', video: 'https://example.com/v.mp4', ...part }] }],
    ...extra,
  });
  assert.equal(parseChatRequest(body({ cap_pixels_per_frame: true }), limits, ['m']).options.capPixelsPerFrame, true);
  assert.equal(parseChatRequest(body({}), limits, ['m']).options.capPixelsPerFrame, undefined);
  const refused = (b: object, field: RegExp) =>
    assert.throws(
      () => parseChatRequest(b, limits, ['m']),
      // the body's schema answers with an HttpError; a part's options are checked with the messages (MESSAGE_INVALID, also a 400)
      (e: unknown) => (e instanceof HttpError ? e.status === 400 && field.test(`${e.param ?? ''} ${e.message}`) : isQvlError(e) && e.code === 'MESSAGE_INVALID' && field.test(e.message)),
    );
  refused(body({ cap_pixels_per_frame: 'yes' }), /cap_pixels_per_frame/);
  refused(body({}, { cap_pixels_per_frame: 1 }), /cap_pixels_per_frame/);
  // the library refuses it on an image (the server drops keys an image part does not have before that)
  assert.throws(
    () => normalizeMessages([{ role: 'user', content: [{ type: 'image', image: 'a.png', cap_pixels_per_frame: true }] }]),
    /cap_pixels_per_frame only applies to videos/,
  );
});
