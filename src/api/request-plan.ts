/**
 * One request's plan: messages and options turned into what the prompt holds and costs, before any
 * pixel is decoded. PDF parts become their pages, every image, video and page is sized from its
 * header (ffprobe for video files, page boxes for PDFs) and planned by the processor's own code
 * (resize, grid, sampled frames, timestamps), the placeholders are expanded and the prompt is
 * tokenized. The cost preview is the plan; `preparePrompt` decodes exactly what it says. Each
 * source is fetched once per request: what the plan fetched (image and PDF bytes, a video file)
 * is kept for decoding until `release()`.
 */
import { QvlError } from '../errors.ts';
import { probeImage } from '../media/image.ts';
import { loadMediaBytes, loadMediaFile, type MediaBytes, type MediaFile } from '../media/source.ts';
import type { MediaSourceOptions } from '../media/source-options.ts';
import { probeVideoFile } from '../media/video.ts';
import { expandPrompt, planImage, planVideo, type VideoOptions } from '../processor/index.ts';
import { normalizeMessages, type MediaRef, type NormalizedChat } from '../template/messages.ts';
import { findPdfParts, planPdfPages, type PdfPartOptions, type PdfRef } from './pdf-parts.ts';
import type { PromptCostItem } from './prompt-cost.ts';
import type { PromptOptions, PromptParts } from './prompt.ts';

/** A planned image or video: its cost-preview facts, and what decoding it needs. */
export interface PlannedMedia extends PromptCostItem {
  /** the message part it came from */
  ref: MediaRef;
  /** the processor options it was planned with (request defaults and the part's own, resolved) */
  options: VideoOptions;
  /** videos: source frame indices to decode (files), or the frame list's rate */
  sampledIndices?: number[];
  fps?: number;
  /** a page of a PDF part: the document and the page number */
  pdfPage?: { pdf: PdfRef; page: number };
}

export interface RequestPlan {
  /** the messages as the template sees them (PDF parts replaced by their pages) */
  chat: NormalizedChat;
  /** the rendered prompt with one pad per image/video, and with the pads expanded */
  text: string;
  expanded: string;
  ids: Int32Array;
  media: PlannedMedia[];
  promptTokens: number;
  mediaTokens: number;
  /** what the plan fetched, by media part, kept for decoding */
  fetched: Map<MediaRef | PdfRef, MediaBytes | MediaFile>;
  /** removes temporary files kept for decoding; call when done with the plan */
  release(): Promise<void>;
}

export interface PlanOptions extends PromptOptions {
  pdf?: PdfPartOptions;
  /** refuse requests with more images and videos than this (PDF pages count), before reading any */
  maxMediaItems?: number;
}

/** Placeholder sources of PDF page parts while the messages are normalized. */
const PAGE_MARK = '\u0000qvl-pdf-page:';

export async function planRequest(parts: PromptParts, messages: unknown, opts: PlanOptions = {}): Promise<RequestPlan> {
  const media = opts.media ?? {};
  const fetched = new Map<MediaRef | PdfRef, MediaBytes | MediaFile>();
  const files: MediaFile[] = [];
  const release = async () => {
    await Promise.all(files.splice(0).map((f) => f.cleanup()));
  };
  try {
    // PDF parts become image parts whose size is known from the page box
    const pages = new Map<string, { width: number; height: number; label: string; pdf: PdfRef; page: number }>();
    let withPages = messages;
    const refs = findPdfParts(messages);
    if (refs.length > 0) {
      const list = [...(messages as Record<string, unknown>[])];
      const replaced = new Map<number, Map<number, object[]>>();
      for (const ref of refs) {
        const bytes = await loadMediaBytes(ref.source, 'pdf', media);
        fetched.set(ref, bytes);
        const plan = await planPdfPages(ref, opts.pdf, media, bytes);
        const imgs = plan.map((p) => {
          const key = `${PAGE_MARK}${pages.size}`;
          pages.set(key, { width: p.width, height: p.height, label: `PDF page ${p.page}`, pdf: ref, page: p.page });
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
    if (opts.maxMediaItems !== undefined && chat.media.length > opts.maxMediaItems) {
      const n = chat.media.length;
      throw new QvlError('MEDIA_TOO_LARGE', `the request holds ${n} images and videos (PDF pages included); the limit is ${opts.maxMediaItems}`, { items: n, limit: opts.maxMediaItems });
    }
    const text = parts.template.render(chat.messages, {
      addGenerationPrompt: opts.addGenerationPrompt ?? true,
      tools: opts.tools,
      addVisionId: opts.addVisionId,
      extra: opts.templateKwargs,
    });
    // the text alone (one pad per item) is a lower bound: a prompt that cannot fit is refused before any media is read
    const limit = opts.maxPromptTokens;
    const check = (tokens: number, atLeast: boolean) => {
      if (limit !== undefined && tokens >= limit) {
        throw new QvlError('CONTEXT_TOO_LONG', `the prompt is ${atLeast ? 'at least ' : ''}${tokens} tokens; this model accepts fewer than ${limit}`, {
          promptTokens: tokens,
          maxContext: limit,
        });
      }
    };
    let lowerBound = limit === undefined ? 0 : parts.tokenizer.encode(text).length;
    check(lowerBound, true);
    const planned: PlannedMedia[] = [];
    for (const ref of chat.media) {
      const minPixels = ref.options.minPixels ?? opts.minPixels;
      const maxPixels = ref.options.maxPixels ?? opts.maxPixels;
      if (ref.kind === 'image') {
        const page = typeof ref.source === 'string' ? pages.get(ref.source) : undefined;
        const size = page ?? (await imageHeader(ref, media, fetched));
        const p = planImage(size.width, size.height, parts.processor.image, { minPixels, maxPixels });
        const item: PlannedMedia = { kind: 'image', source: size.label, width: size.width, height: size.height, resized: p.resized, grid: p.grid, tokens: p.tokens, ref, options: { minPixels, maxPixels } };
        if (page) item.pdfPage = { pdf: page.pdf, page: page.page };
        planned.push(item);
      } else {
        const fps = ref.options.fps ?? opts.fps;
        const maxFrames = ref.options.maxFrames ?? opts.maxFrames;
        const capPixelsPerFrame = ref.options.capPixelsPerFrame ?? opts.capPixelsPerFrame;
        const v = await videoShape(ref, fps, media, fetched, files);
        // a frame list is the clip at its own rate (fps); a file is sampled at `fps`
        const options: VideoOptions = { minPixels, maxPixels, maxFrames, capPixelsPerFrame };
        const p = planVideo(v.shape, parts.processor.video, v.list ? options : { ...options, fps });
        planned.push({
          kind: 'video',
          source: v.label,
          width: v.shape.width,
          height: v.shape.height,
          resized: p.resized,
          grid: p.grid,
          tokens: p.tokens,
          frames: p.sampledIndices.length,
          timestamps: p.timestamps,
          ref,
          options,
          sampledIndices: p.sampledIndices,
          fps: v.list ? v.shape.fps : fps,
        });
      }
      lowerBound += planned[planned.length - 1]!.tokens - 1;
      check(lowerBound, true);
    }
    const images = planned.filter((m) => m.kind === 'image').map((m) => m.grid);
    const videos = planned.filter((m) => m.kind === 'video').map((m) => ({ grid: m.grid, timestamps: m.timestamps! }));
    const expanded = expandPrompt(text, { images, videos }, { videoLayout: opts.videoLayout ?? 'v4.57', mergeSize: parts.mergeSize });
    const ids = Int32Array.from(parts.tokenizer.encode(expanded));
    check(ids.length, false);
    return {
      chat,
      text,
      expanded,
      ids,
      media: planned,
      promptTokens: ids.length,
      mediaTokens: planned.reduce((a, m) => a + m.tokens, 0),
      fetched,
      release,
    };
  } catch (e) {
    await release();
    throw e;
  }
}

async function imageHeader(ref: MediaRef, media: MediaSourceOptions, fetched: RequestPlan['fetched']) {
  if (Array.isArray(ref.source)) throw new QvlError('MESSAGE_INVALID', 'an image part holds a list; lists of frames are videos', {});
  const got = await loadMediaBytes(ref.source, 'image', media);
  fetched.set(ref, got);
  const h = await probeImage(got.bytes, { ...media, label: got.label });
  return { width: h.width, height: h.height, label: got.label };
}

async function videoShape(ref: MediaRef, fps: number | undefined, media: MediaSourceOptions, fetched: RequestPlan['fetched'], files: MediaFile[]) {
  if (Array.isArray(ref.source)) {
    const first = await loadMediaBytes(ref.source[0]!, 'image', media);
    const h = await probeImage(first.bytes, { label: first.label });
    return { list: true, label: `video of ${ref.source.length} images`, shape: { frameCount: ref.source.length, width: h.width, height: h.height, fps: fps ?? 2 } };
  }
  const file = await loadMediaFile(ref.source, 'video', media);
  files.push(file);
  fetched.set(ref, file);
  const p = await probeVideoFile(file.path, { label: file.label, signal: media.signal });
  return { list: false, label: file.label, shape: { frameCount: p.totalFrames, width: p.width, height: p.height, fps: p.fps } };
}
