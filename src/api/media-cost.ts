/**
 * What an input will cost in LLM tokens, known before any pixel is decoded: image size from the
 * header, video frame count / fps / size from ffprobe, PDF page sizes from the document. The
 * token arithmetic is the processor's own (`processor/token-cost.ts`, built on the same planning
 * code as preprocessing), so the preview and the real run cannot disagree.
 */
import { DEFAULT_IMAGE_CONFIG, DEFAULT_VIDEO_CONFIG, type ProcessorConfig } from '../processor/config.ts';
import type { GridThw, PixelBudgetOptions } from '../processor/image-processor.ts';
import { imageTokenCost, videoTokenCost } from '../processor/token-cost.ts';
import type { VideoOptions } from '../processor/video-processor.ts';
import { probeImage } from '../media/image.ts';
import { pageScale, probePdf, type PdfRenderOptions } from '../media/pdf.ts';
import { loadMediaBytes, loadMediaFile, type MediaSource } from '../media/source.ts';
import type { MediaSourceOptions } from '../media/source-options.ts';
import { probeVideoFile } from '../media/video.ts';

export type CostRequest =
  | ({ kind: 'image'; source: MediaSource } & PixelBudgetOptions)
  | ({ kind: 'video'; source: MediaSource } & VideoOptions)
  | ({ kind: 'pdf'; source: MediaSource } & PixelBudgetOptions & Pick<PdfRenderOptions, 'dpi' | 'maxPagePixels' | 'pages'>);

/** One image or video as the model will see it: sizes, patch grid, tokens. */
export interface MediaGeometry {
  /** size of the decoded input (a PDF page: as rendered) */
  width: number;
  height: number;
  /** size after smart_resize */
  resized: { width: number; height: number };
  grid: GridThw;
  tokens: number;
  /** videos: the frames that will be decoded */
  frames?: number;
}

export interface CostItem extends MediaGeometry {
  /** "image", "video", "page 3" */
  what: string;
  /** videos: the source's frame count and rate */
  totalFrames?: number;
  fps?: number;
  /** videos: the text before each temporal group, e.g. "<0.2 seconds>" (tokenize it for the exact prompt length) */
  timestampTexts?: string[];
}

export interface MediaCost {
  source: string;
  tokens: number;
  items: CostItem[];
}

const DEFAULT_CONFIG: ProcessorConfig = { image: DEFAULT_IMAGE_CONFIG, video: DEFAULT_VIDEO_CONFIG };

/** Token cost of one input, from headers only. `config`: the model's processor config (default: Qwen3-VL's). */
export async function estimateMediaCost(req: CostRequest, config: ProcessorConfig = DEFAULT_CONFIG, opts: MediaSourceOptions = {}): Promise<MediaCost> {
  if (req.kind === 'image') {
    const media = await loadMediaBytes(req.source, 'image', opts);
    const h = await probeImage(media.bytes, { label: media.label });
    const plan = imageTokenCost(h.width, h.height, config.image, req);
    return { source: media.label, tokens: plan.tokens, items: [{ what: 'image', width: h.width, height: h.height, resized: plan.resized, grid: plan.grid, tokens: plan.tokens }] };
  }
  if (req.kind === 'video') {
    const file = await loadMediaFile(req.source, 'video', opts);
    try {
      const p = await probeVideoFile(file.path, { label: file.label, signal: opts.signal });
      const plan = videoTokenCost({ frameCount: p.totalFrames, width: p.width, height: p.height, fps: p.fps }, config.video, req);
      return {
        source: file.label,
        tokens: plan.tokens,
        items: [
          {
            what: 'video',
            width: p.width,
            height: p.height,
            resized: plan.resized,
            grid: plan.grid,
            tokens: plan.tokens,
            frames: plan.sampledIndices.length,
            totalFrames: p.totalFrames,
            fps: p.fps,
            timestampTexts: plan.timestampTexts,
          },
        ],
      };
    } finally {
      await file.cleanup();
    }
  }
  const media = await loadMediaBytes(req.source, 'pdf', opts);
  const sizes = await probePdf(media.bytes, media.label);
  const wanted = new Set(req.pages ?? sizes.map((s) => s.page));
  const items: CostItem[] = [];
  for (const s of sizes) {
    if (!wanted.has(s.page)) continue;
    const scale = pageScale(s.widthPt, s.heightPt, req.dpi ?? 144, req.maxPagePixels ?? 1280 * 1280);
    const width = Math.ceil(s.widthPt * scale);
    const height = Math.ceil(s.heightPt * scale);
    const plan = imageTokenCost(width, height, config.image, req);
    items.push({ what: `page ${s.page}`, width, height, resized: plan.resized, grid: plan.grid, tokens: plan.tokens });
  }
  return { source: media.label, tokens: items.reduce((a, b) => a + b.tokens, 0), items };
}
