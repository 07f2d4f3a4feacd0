/**
 * A video given as a list of images (paths, URLs, data URIs, Base64 or bytes) and a frame rate:
 * every image is one frame, already sampled (as qwen-vl-utils treats frame lists), so frame k is
 * at k / fps seconds. Each image is decoded like a still image (HF loads them with `load_image`).
 */
import { QvlError } from '../errors.ts';
import { loadImage, type ImageDecodeOptions } from './image.ts';
import type { MediaSource } from './source.ts';
import type { MediaSourceOptions } from './source-options.ts';
import type { LoadedVideo } from './video.ts';

export interface ImageListVideoOptions extends MediaSourceOptions, ImageDecodeOptions {
  /** frames per second of the list (default 2, the rate HF samples videos at) */
  fps?: number;
  /** refuse longer lists (default 768) */
  maxDecodedFrames?: number;
  /** refuse frames larger than this many pixels (default 3840×2160) */
  maxPixelsPerFrame?: number;
  minPixels?: number;
  maxPixels?: number;
}

export async function loadVideoFromImages(sources: readonly MediaSource[], opts: ImageListVideoOptions = {}): Promise<LoadedVideo> {
  const fps = opts.fps ?? 2;
  const label = `video of ${sources.length} images`;
  if (!(Number.isFinite(fps) && fps > 0)) throw new QvlError('OPTION_INVALID', `${label}: fps must be a positive number, got ${fps}`, { fps });
  if (sources.length === 0) throw new QvlError('VIDEO_INVALID', 'a video given as images needs at least one image', { source: label });
  const maxFrames = opts.maxDecodedFrames ?? 768;
  if (sources.length > maxFrames) {
    throw new QvlError('VIDEO_INVALID', `${label}: over the limit of ${maxFrames} frames`, { source: label, frames: sources.length, limit: maxFrames });
  }
  const perFrame = opts.maxPixelsPerFrame ?? 3840 * 2160;
  const frames = [];
  for (const [k, src] of sources.entries()) {
    if (opts.signal?.aborted) throw new QvlError('ABORTED', `${label}: aborted`, { source: label });
    const { minPixels: _a, maxPixels: _b, ...decodeOpts } = opts;
    const img = await loadImage(src, { ...decodeOpts, maxInputPixels: Math.min(opts.maxInputPixels ?? perFrame, perFrame) });
    if (frames.length > 0 && (img.width !== frames[0]!.width || img.height !== frames[0]!.height)) {
      throw new QvlError('VIDEO_INVALID', `${label}: frame ${k} (${img.source}) is ${img.width}x${img.height}, frame 0 is ${frames[0]!.width}x${frames[0]!.height}; all frames must have one size`, {
        source: label,
        frame: k,
      });
    }
    frames.push({ width: img.width, height: img.height, data: img.data });
  }
  const out: LoadedVideo = {
    frames,
    fps,
    indices: frames.map((_, i) => i),
    totalFrames: frames.length,
    width: frames[0]!.width,
    height: frames[0]!.height,
    source: label,
  };
  if (opts.minPixels !== undefined) out.minPixels = opts.minPixels;
  if (opts.maxPixels !== undefined) out.maxPixels = opts.maxPixels;
  return out;
}
