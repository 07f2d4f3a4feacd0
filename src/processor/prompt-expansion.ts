/**
 * Expands the one-token media placeholders of a rendered chat prompt into as many pad tokens as the
 * vision tower will produce, exactly as HF's Qwen3VLProcessor does:
 *  - each `<|image_pad|>` → grid t·h·w / merge² copies of itself (k-th pad ↔ k-th image);
 *  - each video → per temporal group `<{t:.1f} seconds><|vision_start|>` + h·w / merge² `<|video_pad|>`
 *    + `<|vision_end|>`. Two layouts exist:
 *      'v4.57' (default; transformers 4.57, which the checkpoints shipped with, and vLLM): the template's
 *        whole `<|vision_start|><|video_pad|><|vision_end|>` is replaced, so no outer pair remains;
 *      'v5' (transformers 5.x): only `<|video_pad|>` is replaced and the template's outer pair stays.
 */
import { QvlError } from '../errors.ts';
import type { GridThw } from './image-processor.ts';
import { pyFormat1f } from './python-math.ts';

export const IMAGE_PAD = '<|image_pad|>';
export const VIDEO_PAD = '<|video_pad|>';
export const VISION_START = '<|vision_start|>';
export const VISION_END = '<|vision_end|>';
const VIDEO_TRIPLE = VISION_START + VIDEO_PAD + VISION_END;

export type VideoPromptLayout = 'v4.57' | 'v5';

export interface ExpansionVideo {
  grid: GridThw;
  /** seconds, one per temporal group */
  timestamps: readonly number[];
}

export interface ExpansionMedia {
  /** grids of the images, in prompt order */
  images?: readonly GridThw[];
  /** grids and timestamps of the videos, in prompt order */
  videos?: readonly ExpansionVideo[];
}

export interface ExpansionOptions {
  videoLayout?: VideoPromptLayout;
  /** spatial merge size (2 for Qwen3-VL) */
  mergeSize?: number;
}

function countOf(text: string, token: string): number {
  let n = 0;
  for (let i = text.indexOf(token); i !== -1; i = text.indexOf(token, i + token.length)) n++;
  return n;
}

function tokensPerGroup(grid: GridThw, merge2: number, what: string): number {
  const [t, h, w] = grid;
  if (![t, h, w].every((v) => Number.isInteger(v) && v > 0) || (h * w) % merge2 !== 0) {
    throw new QvlError('TOKEN_COUNT_MISMATCH', `${what} has an invalid grid [${grid.join(', ')}]`, { grid });
  }
  return (h * w) / merge2;
}

/** The text one video's placeholder becomes: a timestamp and a vision block per temporal group. */
export function videoPlaceholder(video: ExpansionVideo, mergeSize = 2, what = 'video'): string {
  const perGroup = tokensPerGroup(video.grid, mergeSize * mergeSize, what);
  const groups = video.grid[0];
  if (video.timestamps.length !== groups) {
    throw new QvlError('TOKEN_COUNT_MISMATCH', `${what} has ${groups} temporal groups but ${video.timestamps.length} timestamps`, {
      groups,
      timestamps: video.timestamps.length,
    });
  }
  const pads = VIDEO_PAD.repeat(perGroup);
  let out = '';
  for (const ts of video.timestamps) out += `<${pyFormat1f(ts)} seconds>${VISION_START}${pads}${VISION_END}`;
  return out;
}

/** The text one image's placeholder becomes. */
export function imagePlaceholder(grid: GridThw, mergeSize = 2, what = 'image'): string {
  return IMAGE_PAD.repeat(grid[0] * tokensPerGroup(grid, mergeSize * mergeSize, what));
}

/** Replaces each occurrence of `token`, in order, with the next replacement. */
function replaceInOrder(text: string, token: string, replacements: readonly string[]): string {
  const parts = text.split(token);
  let out = parts[0];
  for (let k = 1; k < parts.length; k++) out += replacements[k - 1] + parts[k];
  return out;
}

/**
 * transformers 4.57: each video, in order, takes the first remaining `<|vision_start|><|video_pad|><|vision_end|>`
 * if there is one, else the first remaining bare `<|video_pad|>`. Text already produced by an
 * expansion is never searched again.
 */
function expandVideosV457(text: string, replacements: readonly string[]): string {
  const pieces: { raw: boolean; s: string }[] = [{ raw: true, s: text }];
  for (const rep of replacements) {
    let target = VIDEO_TRIPLE;
    let at = pieces.findIndex((p) => p.raw && p.s.includes(VIDEO_TRIPLE));
    if (at === -1) {
      target = VIDEO_PAD;
      at = pieces.findIndex((p) => p.raw && p.s.includes(VIDEO_PAD));
    }
    const piece = pieces[at];
    const i = piece.s.indexOf(target);
    pieces.splice(at, 1, { raw: true, s: piece.s.slice(0, i) }, { raw: false, s: rep }, { raw: true, s: piece.s.slice(i + target.length) });
  }
  return pieces.map((p) => p.s).join('');
}

export function expandPrompt(text: string, media: ExpansionMedia, opts: ExpansionOptions = {}): string {
  const images = media.images ?? [];
  const videos = media.videos ?? [];
  const mergeSize = opts.mergeSize ?? 2;
  const layout = opts.videoLayout ?? 'v4.57';
  if (layout !== 'v4.57' && layout !== 'v5') {
    throw new QvlError('OPTION_INVALID', `videoLayout must be 'v4.57' or 'v5', got ${JSON.stringify(layout)}`, { videoLayout: layout });
  }
  const imageSlots = countOf(text, IMAGE_PAD);
  const videoSlots = countOf(text, VIDEO_PAD);
  if (imageSlots !== images.length) {
    throw new QvlError(
      'TOKEN_COUNT_MISMATCH',
      `the prompt has ${imageSlots} image placeholder${imageSlots === 1 ? '' : 's'} (${IMAGE_PAD}) but ${images.length} image${images.length === 1 ? ' was' : 's were'} given`,
      { placeholders: imageSlots, images: images.length },
    );
  }
  if (videoSlots !== videos.length) {
    throw new QvlError(
      'TOKEN_COUNT_MISMATCH',
      `the prompt has ${videoSlots} video placeholder${videoSlots === 1 ? '' : 's'} (${VIDEO_PAD}) but ${videos.length} video${videos.length === 1 ? ' was' : 's were'} given`,
      { placeholders: videoSlots, videos: videos.length },
    );
  }
  const imageReps = images.map((g, k) => imagePlaceholder(g, mergeSize, `image ${k}`));
  const videoReps = videos.map((v, k) => videoPlaceholder(v, mergeSize, `video ${k}`));
  const withImages = imageReps.length > 0 ? replaceInOrder(text, IMAGE_PAD, imageReps) : text;
  if (videoReps.length === 0) return withImages;
  return layout === 'v5' ? replaceInOrder(withImages, VIDEO_PAD, videoReps) : expandVideosV457(withImages, videoReps);
}
