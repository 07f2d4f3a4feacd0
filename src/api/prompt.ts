import { QvlError } from '../errors.ts';
import { decodeImage, loadVideo, loadVideoFromImages, type MediaSourceOptions, type RgbImage, type VideoFrames } from '../media/index.ts';
import type { MediaBytes, MediaFile } from '../media/source.ts';
import type { Grid } from '../model/rope-index.ts';
import { preprocessImage, preprocessVideo, videoFrameResizer, type ProcessorConfig, type VideoProcessorConfig, type VideoPromptLayout } from '../processor/index.ts';
import type { ChatTemplate } from '../template/chat-template.ts';
import type { QwenTokenizer } from '../tokenizer/tokenizer.ts';
import { concatF32 } from '../util/concat.ts';
import { renderPdfPages, type PdfPartOptions, type PdfRef } from './pdf-parts.ts';

import { planRequest, type PlannedMedia, type PlanOptions, type RequestPlan } from './request-plan.ts';

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

/**
 * messages → plan (template, sizes, expansion, ids: see request-plan.ts) → decode and preprocess
 * exactly what the plan says. A prompt that cannot fit `maxPromptTokens` is refused by the plan,
 * before any pixel is decoded.
 */
export async function preparePrompt(parts: PromptParts, messages: unknown, opts: PlanOptions = {}): Promise<PreparedPrompt> {
  const plan = await planRequest(parts, messages, opts);
  try {
    const images: { pixels: Float32Array; grid: Grid }[] = [];
    const videos: { pixels: Float32Array; grid: Grid; timestamps: number[] }[] = [];
    const media: PreparedPrompt['media'] = [];
    const pdfPages = new Map<PdfRef, RgbImage[]>();
    for (const item of plan.media) {
      if (item.kind === 'image') {
        const img = await decodePlannedImage(item, plan, pdfPages, opts);
        const p = preprocessImage(img, parts.processor.image, item.options);
        checkPlanned(item, p.grid);
        images.push({ pixels: p.pixelValues, grid: p.grid });
        media.push({ kind: 'image', width: img.width, height: img.height, resizedWidth: p.resized.width, resizedHeight: p.resized.height, tokens: tokens(p.grid, parts.mergeSize) });
      } else {
        const video = await loadPlannedVideo(item, plan, parts.processor.video, opts.media);
        // the source's size: frames of a file were resized as they were decoded
        const p = preprocessVideo(video, parts.processor.video, { ...item.options, sourceSize: { width: item.width, height: item.height } });
        checkPlanned(item, p.grid);
        videos.push({ pixels: p.pixelValues, grid: p.grid, timestamps: p.timestamps });
        media.push({
          kind: 'video',
          width: item.width,
          height: item.height,
          resizedWidth: p.resized.width,
          resizedHeight: p.resized.height,
          tokens: tokens(p.grid, parts.mergeSize),
          timestamps: p.timestamps,
        });
      }
    }
    return {
      text: plan.expanded,
      ids: plan.ids,
      pixelValues: images.length ? concatF32(images.map((i) => i.pixels)) : undefined,
      imageGrids: images.map((i) => i.grid),
      pixelValuesVideos: videos.length ? concatF32(videos.map((v) => v.pixels)) : undefined,
      videoGrids: videos.map((v) => v.grid),
      media,
    };
  } finally {
    await plan.release();
  }
}

/** What was decoded must be what was planned (a source that changed between reads, a decoder that disagrees with its header). */
function checkPlanned(item: PlannedMedia, grid: Grid): void {
  if (grid.join() !== item.grid.join()) {
    throw new QvlError('TOKEN_COUNT_MISMATCH', `${item.source}: decoded to a ${grid.join('×')} grid, but its header promised ${item.grid.join('×')}`, { source: item.source });
  }
}

async function decodePlannedImage(item: PlannedMedia, plan: RequestPlan, pdfPages: Map<PdfRef, RgbImage[]>, opts: PlanOptions): Promise<RgbImage> {
  if (item.pdfPage) {
    const { pdf, page } = item.pdfPage;
    let rendered = pdfPages.get(pdf);
    if (!rendered) {
      rendered = await renderPdfPages(pdf, opts.pdf, opts.media, plan.fetched.get(pdf) as MediaBytes | undefined);
      pdfPages.set(pdf, rendered);
    }
    const order = pdf.pages ?? rendered.map((_, i) => i + 1);
    return rendered[order.indexOf(page)]!;
  }
  const got = plan.fetched.get(item.ref) as MediaBytes;
  return decodeImage(got.bytes, { ...opts.media, label: got.label });
}

/**
 * A frame list is the whole clip at the stated rate (HF samples from it like from a decoded file);
 * a file, URL or data URI (fetched by the plan) decodes only the planned frames, each resized to
 * the planned size as it arrives (an hour of full-HD frames is never held).
 */
async function loadPlannedVideo(item: PlannedMedia, plan: RequestPlan, cfg: VideoProcessorConfig, o: MediaSourceOptions = {}): Promise<VideoFrames> {
  const ref = item.ref;
  if (Array.isArray(ref.source)) {
    const v = await loadVideoFromImages(ref.source, { ...o, fps: item.fps ?? 2 });
    return { frames: v.frames, fps: v.fps };
  }
  const indices = item.sampledIndices!;
  const v = await loadVideo(ref.source, {
    ...o,
    fetched: plan.fetched.get(ref) as MediaFile,
    chooseFrames: () => indices,
    prepareFrames: videoFrameResizer(cfg, { ...item.options, fps: item.fps }),
  });
  return { frames: v.frames, fps: v.fps, indices: v.indices, totalFrames: v.totalFrames };
}

function tokens(g: Grid, merge: number): number {
  return (g[0] * g[1] * g[2]) / (merge * merge);
}
