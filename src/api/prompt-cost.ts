/**
 * What a request will cost in prompt tokens, without running the model or decoding pixels: the
 * prompt is rendered with the model's template, each image, video and PDF page is sized from its
 * header (ffprobe for video files, page boxes for PDFs), and the placeholders are expanded by the
 * processor's own planning code, then tokenized. The count equals what `prepare` produces.
 */
import { QvlError } from '../errors.ts';
import { probeImage } from '../media/image.ts';
import { loadMediaBytes, loadMediaFile } from '../media/source.ts';
import type { MediaSourceOptions } from '../media/source-options.ts';
import { probeVideoFile } from '../media/video.ts';
import { expandPrompt, planImage, planVideo, type GridThw } from '../processor/index.ts';
import { normalizeMessages, type MediaRef } from '../template/messages.ts';
import { findPdfParts, planPdfPages, type PdfPartOptions } from './pdf-parts.ts';
import type { PromptOptions, PromptParts } from './prompt.ts';

export interface PromptCostItem {
  kind: 'image' | 'video';
  /** names the source: a path, a URL without its query, "data URI (…)", "PDF page 2" */
  source: string;
  width: number;
  height: number;
  resized: { width: number; height: number };
  grid: GridThw;
  tokens: number;
  /** videos: frames used, and the time of each temporal group in seconds */
  frames?: number;
  timestamps?: number[];
}

export interface PromptCost {
  /** the whole prompt, media expanded */
  promptTokens: number;
  /** image and video pad tokens */
  mediaTokens: number;
  items: PromptCostItem[];
}

export interface PromptCostOptions extends PromptOptions {
  pdf?: PdfPartOptions;
}

const PAGE_MARK = '\u0000qvl-pdf-page:';

export async function estimatePromptCost(parts: PromptParts, messages: unknown, opts: PromptCostOptions = {}): Promise<PromptCost> {
  const media = opts.media ?? {};
  // PDF pages become image parts whose size is known from the page box.
  const pages = new Map<string, { width: number; height: number; label: string }>();
  let withPages = messages;
  const refs = findPdfParts(messages);
  if (refs.length > 0) {
    const list = [...(messages as Record<string, unknown>[])];
    const replaced = new Map<number, Map<number, object[]>>();
    for (const ref of refs) {
      const plan = await planPdfPages(ref, opts.pdf, media);
      const imgs = plan.map((p) => {
        const key = `${PAGE_MARK}${pages.size}`;
        pages.set(key, { width: p.width, height: p.height, label: `PDF page ${p.page}` });
        const part: Record<string, unknown> = { type: 'image', image: key };
        if (ref.minPixels !== undefined) part.min_pixels = ref.minPixels;
        if (ref.maxPixels !== undefined) part.max_pixels = ref.maxPixels;
        return part;
      });
      if (!replaced.has(ref.message)) replaced.set(ref.message, new Map());
      replaced.get(ref.message)!.set(ref.part, imgs);
    }
    for (const [m, byPart] of replaced) {
      const msg = list[m]!;
      list[m] = { ...msg, content: (msg.content as unknown[]).flatMap((part, p) => byPart.get(p) ?? [part]) };
    }
    withPages = list;
  }

  const chat = normalizeMessages(withPages);
  const text = parts.template.render(chat.messages, {
    addGenerationPrompt: opts.addGenerationPrompt ?? true,
    tools: opts.tools,
    addVisionId: opts.addVisionId,
    extra: opts.templateKwargs,
  });
  const items: PromptCostItem[] = [];
  const images: GridThw[] = [];
  const videos: { grid: GridThw; timestamps: number[] }[] = [];
  for (const ref of chat.media) {
    const minPixels = ref.options.minPixels ?? opts.minPixels;
    const maxPixels = ref.options.maxPixels ?? opts.maxPixels;
    if (ref.kind === 'image') {
      const size = await imageSize(ref, pages, media);
      const plan = planImage(size.width, size.height, parts.processor.image, { minPixels, maxPixels });
      images.push(plan.grid);
      items.push({ kind: 'image', source: size.label, width: size.width, height: size.height, resized: plan.resized, grid: plan.grid, tokens: plan.tokens });
    } else {
      const fps = ref.options.fps ?? opts.fps;
      const maxFrames = ref.options.maxFrames ?? opts.maxFrames;
      const v = await videoShape(ref, fps, media);
      // As prepare: a frame list is the clip at its own rate; a file is sampled at `fps`.
      const capPixelsPerFrame = ref.options.capPixelsPerFrame ?? opts.capPixelsPerFrame;
      const plan = planVideo(v.shape, parts.processor.video, v.list ? { minPixels, maxPixels, maxFrames, capPixelsPerFrame } : { fps, maxFrames, minPixels, maxPixels, capPixelsPerFrame });
      videos.push({ grid: plan.grid, timestamps: plan.timestamps });
      items.push({
        kind: 'video',
        source: v.label,
        width: v.shape.width,
        height: v.shape.height,
        resized: plan.resized,
        grid: plan.grid,
        tokens: plan.tokens,
        frames: plan.sampledIndices.length,
        timestamps: plan.timestamps,
      });
    }
  }
  const expanded = expandPrompt(text, { images, videos }, { videoLayout: opts.videoLayout ?? 'v4.57', mergeSize: parts.mergeSize });
  return {
    promptTokens: parts.tokenizer.encode(expanded).length,
    mediaTokens: items.reduce((a, i) => a + i.tokens, 0),
    items,
  };
}

async function imageSize(ref: MediaRef, pages: Map<string, { width: number; height: number; label: string }>, media: MediaSourceOptions) {
  if (typeof ref.source === 'string' && pages.has(ref.source)) return pages.get(ref.source)!;
  if (Array.isArray(ref.source)) throw new QvlError('MESSAGE_INVALID', 'an image part holds a list; lists of frames are videos', {});
  const got = await loadMediaBytes(ref.source, 'image', media);
  const h = await probeImage(got.bytes, { ...media, label: got.label });
  return { width: h.width, height: h.height, label: got.label };
}

async function videoShape(ref: MediaRef, fps: number | undefined, media: MediaSourceOptions) {
  if (Array.isArray(ref.source)) {
    const first = await loadMediaBytes(ref.source[0]!, 'image', media);
    const h = await probeImage(first.bytes, { label: first.label });
    return { list: true, label: `video of ${ref.source.length} images`, shape: { frameCount: ref.source.length, width: h.width, height: h.height, fps: fps ?? 2 } };
  }
  const file = await loadMediaFile(ref.source, 'video', media);
  try {
    const p = await probeVideoFile(file.path, { label: file.label, signal: media.signal });
    return { list: false, label: file.label, shape: { frameCount: p.totalFrames, width: p.width, height: p.height, fps: p.fps } };
  } finally {
    await file.cleanup();
  }
}
