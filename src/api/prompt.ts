import { QvlError } from '../errors.ts';
import { decodeImage, loadImage, loadMediaBytes, loadVideo, loadVideoFromImages, probeImage, type MediaSourceOptions, type RgbImage, type VideoFrames } from '../media/index.ts';
import type { Grid } from '../model/rope-index.ts';
import {
  expandPrompt,
  frameSampler,
  planImage,
  preprocessImage,
  preprocessVideo,
  videoFrameResizer,
  type ProcessorConfig,
  type VideoOptions,
  type VideoProcessorConfig,
  type VideoPromptLayout,
} from '../processor/index.ts';
import type { ChatTemplate } from '../template/chat-template.ts';
import { normalizeMessages, type MediaRef } from '../template/messages.ts';
import type { QwenTokenizer } from '../tokenizer/tokenizer.ts';
import { concatF32 } from '../util/concat.ts';
import { expandPdfParts, type PdfPartOptions } from './pdf-parts.ts';

/** Per-request preprocessing options (defaults for every image/video of the request). */
export interface PromptOptions {
  tools?: object[];
  addVisionId?: boolean;
  /** extra chat-template variables (e.g. enable_thinking) */
  templateKwargs?: Record<string, unknown>;
  /** append the assistant header (default true) */
  addGenerationPrompt?: boolean;
  /** 'v4.57' (default, what the checkpoints shipped with) or 'v5' */
  videoLayout?: VideoPromptLayout;
  minPixels?: number;
  maxPixels?: number;
  /** video sampling rate (frames per second), default 2 */
  fps?: number;
  maxFrames?: number;
  /**
   * videos: bound each frame's pixels as qwen-vl-utils does (transformers' `cap_pixels_per_frame`);
   * default: the model's video_preprocessor_config.json, off when it does not say
   */
  capPixelsPerFrame?: boolean;
  /** where media may come from (see media/source-options) */
  media?: MediaSourceOptions;
  /** how PDF parts are rendered into page images (resolution, page budget) */
  pdf?: PdfPartOptions;
  /**
   * Refuse (CONTEXT_TOO_LONG) prompts of this many tokens or more. Images are sized from their
   * headers first, so a prompt that cannot fit is refused before its pixels are decoded.
   */
  maxPromptTokens?: number;
}

/** Everything the model needs for one prompt, as plain data (can cross a worker boundary). */
export interface PreparedPrompt {
  text: string;
  ids: Int32Array;
  pixelValues?: Float32Array;
  imageGrids: Grid[];
  pixelValuesVideos?: Float32Array;
  videoGrids: Grid[];
  /** per media item, what it became */
  media: Array<{ kind: 'image' | 'video'; width: number; height: number; resizedWidth: number; resizedHeight: number; tokens: number; timestamps?: number[] }>;
}

export interface PromptParts {
  tokenizer: QwenTokenizer;
  template: ChatTemplate;
  processor: ProcessorConfig;
  mergeSize: number;
}

/** messages → template → media decode → preprocessing → expansion → ids. */
export async function preparePrompt(parts: PromptParts, messages: unknown, opts: PromptOptions = {}): Promise<PreparedPrompt> {
  // PDF parts become one image part per page before anything else sees the messages.
  const chat = normalizeMessages(await expandPdfParts(messages, opts.pdf, opts.media));
  const text = parts.template.render(chat.messages, {
    addGenerationPrompt: opts.addGenerationPrompt ?? true,
    tools: opts.tools,
    addVisionId: opts.addVisionId,
    extra: opts.templateKwargs,
  });
  const budget = opts.maxPromptTokens === undefined ? undefined : new TokenBudget(opts.maxPromptTokens, chat.media.length > 0 ? parts.tokenizer.encode(text).length : 0);
  const images: { pixels: Float32Array; grid: Grid }[] = [];
  const videos: { pixels: Float32Array; grid: Grid; timestamps: number[] }[] = [];
  const media: PreparedPrompt['media'] = [];
  for (const ref of chat.media) {
    const o = { ...ref.options };
    const minPixels = o.minPixels ?? opts.minPixels;
    const maxPixels = o.maxPixels ?? opts.maxPixels;
    if (ref.kind === 'image') {
      const img = await loadImageRef(ref, opts.media, budget && ((w, h) => budget.charge(planImage(w, h, parts.processor.image, { minPixels, maxPixels }).tokens)));
      const p = preprocessImage(img, parts.processor.image, { minPixels, maxPixels });
      images.push({ pixels: p.pixelValues, grid: p.grid });
      media.push({ kind: 'image', width: img.width, height: img.height, resizedWidth: p.resized.width, resizedHeight: p.resized.height, tokens: tokens(p.grid, parts.mergeSize) });
    } else {
      const fps = o.fps ?? opts.fps;
      const maxFrames = o.maxFrames ?? opts.maxFrames;
      const vo: VideoOptions = { minPixels, maxPixels, maxFrames, capPixelsPerFrame: o.capPixelsPerFrame ?? opts.capPixelsPerFrame };
      const video = await loadVideoRef(ref, { fps, maxFrames }, parts.processor.video, vo, opts.media);
      // `fps` was used above: the rate of a frame list, or the sampling rate of a decoded file.
      const p = preprocessVideo(video, parts.processor.video, { ...vo, sourceSize: video.sourceSize });
      budget?.charge(tokens(p.grid, parts.mergeSize));
      videos.push({ pixels: p.pixelValues, grid: p.grid, timestamps: p.timestamps });
      media.push({
        kind: 'video',
        width: video.sourceSize.width,
        height: video.sourceSize.height,
        resizedWidth: p.resized.width,
        resizedHeight: p.resized.height,
        tokens: tokens(p.grid, parts.mergeSize),
        timestamps: p.timestamps,
      });
    }
  }
  const expanded = expandPrompt(
    text,
    { images: images.map((i) => i.grid), videos: videos.map((v) => ({ grid: v.grid, timestamps: v.timestamps })) },
    { videoLayout: opts.videoLayout ?? 'v4.57', mergeSize: parts.mergeSize },
  );
  const ids = Int32Array.from(parts.tokenizer.encode(expanded));
  budget?.check(ids.length);
  return {
    text: expanded,
    ids,
    pixelValues: images.length ? concatF32(images.map((i) => i.pixels)) : undefined,
    imageGrids: images.map((i) => i.grid),
    pixelValuesVideos: videos.length ? concatF32(videos.map((v) => v.pixels)) : undefined,
    videoGrids: videos.map((v) => v.grid),
    media,
  };
}

function tokens(g: Grid, merge: number): number {
  return (g[0] * g[1] * g[2]) / (merge * merge);
}

/**
 * A prompt's token count, bounded from below while media is still being sized: the rendered text
 * holds one pad token per image or video, which expansion turns into `tokens` pads.
 */
class TokenBudget {
  private lowerBound: number;

  constructor(
    private readonly limit: number,
    textTokens: number,
  ) {
    this.lowerBound = textTokens;
    this.check(this.lowerBound);
  }

  charge(mediaTokens: number): void {
    this.lowerBound += mediaTokens - 1;
    this.check(this.lowerBound);
  }

  check(tokens: number): void {
    if (tokens >= this.limit) {
      throw new QvlError('CONTEXT_TOO_LONG', `the prompt is ${tokens === this.lowerBound ? 'at least ' : ''}${tokens} tokens; this model accepts fewer than ${this.limit}`, {
        promptTokens: tokens,
        maxContext: this.limit,
      });
    }
  }
}

/** Loads an image; `sized` sees its header size before any pixel is decoded (and may refuse it). */
async function loadImageRef(ref: MediaRef, o: MediaSourceOptions = {}, sized?: (width: number, height: number) => void): Promise<RgbImage> {
  if (Array.isArray(ref.source)) throw new QvlError('MESSAGE_INVALID', 'an image part holds a list; lists of frames are videos', {});
  if (!sized) return loadImage(ref.source, { ...o });
  const got = await loadMediaBytes(ref.source, 'image', o);
  const decodeOpts = { ...o, label: got.label };
  const header = await probeImage(got.bytes, decodeOpts);
  sized(header.width, header.height);
  return decodeImage(got.bytes, decodeOpts);
}

/**
 * A frame list is the whole clip at the stated rate (HF samples from it like from a decoded
 * file); a file, URL or data URI is probed and only the frames the sampler picks are decoded,
 * each resized to the processor's size as it arrives (an hour of full-HD frames is never held).
 */
async function loadVideoRef(
  ref: MediaRef,
  s: { fps?: number; maxFrames?: number },
  cfg: VideoProcessorConfig,
  vo: VideoOptions,
  o?: MediaSourceOptions,
): Promise<VideoFrames & { sourceSize: { width: number; height: number } }> {
  if (Array.isArray(ref.source)) {
    const v = await loadVideoFromImages(ref.source, { ...o, fps: s.fps ?? 2 });
    return { frames: v.frames, fps: v.fps, sourceSize: { width: v.width, height: v.height } };
  }
  const v = await loadVideo(ref.source, { ...o, chooseFrames: frameSampler({ fps: s.fps, maxFrames: s.maxFrames }), prepareFrames: videoFrameResizer(cfg, vo) });
  return { frames: v.frames, fps: v.fps, indices: v.indices, totalFrames: v.totalFrames, sourceSize: { width: v.width, height: v.height } };
}

