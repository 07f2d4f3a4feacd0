/**
 * PDF pages → RGB images, one per page, each within a pixel budget (a long document becomes a
 * run of page images in the prompt). pdf.js renders onto @napi-rs/canvas (both install from npm
 * prebuilt, no build step); scripting and eval are off, and nothing is fetched from the network.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import type { RgbImage } from './rgb.ts';
import { loadMediaBytes, type MediaBytes, type MediaSource } from './source.ts';
import type { MediaSourceOptions } from './source-options.ts';

export interface PdfPageSize {
  /** 1-based page number */
  page: number;
  /** page size in PDF points (1/72 inch), after the page's own rotation */
  widthPt: number;
  heightPt: number;
}

export interface PdfRenderOptions extends MediaSourceOptions {
  /** render resolution before the budget applies (default 144 dpi) */
  dpi?: number;
  /** the most pixels (W·H) one rendered page may have; larger pages are scaled down (default 1280·1280) */
  maxPagePixels?: number;
  /** 1-based pages to render (default: all, up to maxPages) */
  pages?: readonly number[];
  /** refuse documents with more pages than this unless `pages` picks some (default 64) */
  maxPages?: number;
  /** the document's bytes, already fetched from `source` (they are used instead of fetching again) */
  fetched?: MediaBytes;
  /** per-request resize budget for the processor (per page image), passed through */
  minPixels?: number;
  maxPixels?: number;
}

export interface PdfPageImage extends RgbImage, PdfPageSize {}

export interface RenderedPdf {
  pageCount: number;
  pages: PdfPageImage[];
  source: string;
  minPixels?: number;
  maxPixels?: number;
}

const DEFAULT_MAX_PAGE_PIXELS = 1280 * 1280;

type PdfJs = typeof import('pdfjs-dist/legacy/build/pdf.mjs');
let pdfjs: Promise<PdfJs> | undefined;
function loadPdfJs(): Promise<PdfJs> {
  pdfjs ??= import('pdfjs-dist/legacy/build/pdf.mjs');
  return pdfjs;
}

function pdfjsAssets(): { standardFontDataUrl: string; cMapUrl: string } {
  const dir = path.dirname(createRequire(import.meta.url).resolve('pdfjs-dist/package.json'));
  return { standardFontDataUrl: path.join(dir, 'standard_fonts') + path.sep, cMapUrl: path.join(dir, 'cmaps') + path.sep };
}

async function openPdf(bytes: Uint8Array, label: string) {
  const { getDocument, VerbosityLevel } = await loadPdfJs();
  try {
    // pdf.js takes ownership of (detaches) the buffer it is given: hand it a copy
    const task = getDocument({
      data: new Uint8Array(bytes),
      isEvalSupported: false,
      enableXfa: false,
      disableFontFace: true,
      useSystemFonts: false,
      verbosity: VerbosityLevel.ERRORS,
      ...pdfjsAssets(),
      cMapPacked: true,
    });
    return await task.promise;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new QvlError('IMAGE_DECODE', `${label}: cannot read PDF (${msg})`, { source: label, reason: msg });
  }
}

/** Page count and page sizes, without rendering. */
export async function probePdf(bytes: Uint8Array, label = 'PDF'): Promise<PdfPageSize[]> {
  const doc = await openPdf(bytes, label);
  try {
    const out: PdfPageSize[] = [];
    for (let i = 1; i <= doc.numPages; i++) {
      const vp = (await doc.getPage(i)).getViewport({ scale: 1 });
      out.push({ page: i, widthPt: vp.width, heightPt: vp.height });
    }
    return out;
  } finally {
    await doc.destroy();
  }
}

/** The render scale for a page: `dpi/72`, reduced so that W·H stays within the budget. */
export function pageScale(widthPt: number, heightPt: number, dpi: number, maxPagePixels: number): number {
  let scale = dpi / 72;
  const px = widthPt * scale * heightPt * scale;
  if (px > maxPagePixels) scale *= Math.sqrt(maxPagePixels / px);
  // ceil() of the canvas size may add a pixel per side: shave until the rounded size fits
  while (Math.ceil(widthPt * scale) * Math.ceil(heightPt * scale) > maxPagePixels && scale > 1e-6) scale *= 0.999;
  return scale;
}

export async function renderPdf(source: MediaSource, opts: PdfRenderOptions = {}): Promise<RenderedPdf> {
  const media = opts.fetched ?? (await loadMediaBytes(source, 'pdf', opts));
  const label = media.label;
  const dpi = opts.dpi ?? 144;
  const budget = opts.maxPagePixels ?? DEFAULT_MAX_PAGE_PIXELS;
  for (const [name, v] of [['dpi', dpi], ['maxPagePixels', budget]] as const) {
    if (!(Number.isFinite(v) && v > 0)) throw new QvlError('OPTION_INVALID', `${name} must be a positive number, got ${v}`, { [name]: v });
  }
  const doc = await openPdf(media.bytes, label);
  try {
    const count = doc.numPages;
    const maxPages = opts.maxPages ?? 64;
    const wanted = opts.pages ?? Array.from({ length: count }, (_, i) => i + 1);
    for (const p of wanted) {
      if (!Number.isInteger(p) || p < 1 || p > count) {
        throw new QvlError('OPTION_INVALID', `${label}: page ${p} does not exist (the document has ${count} pages)`, { source: label, page: p });
      }
    }
    if (wanted.length > maxPages) {
      throw new QvlError('MEDIA_TOO_LARGE', `${label}: ${wanted.length} pages, over the limit of ${maxPages}; choose pages to render`, {
        source: label,
        pages: wanted.length,
        limit: maxPages,
      });
    }
    const pages: PdfPageImage[] = [];
    for (const n of wanted) {
      if (opts.signal?.aborted) throw new QvlError('ABORTED', `${label}: PDF rendering aborted`, { source: label });
      const page = await doc.getPage(n);
      const unit = page.getViewport({ scale: 1 });
      const viewport = page.getViewport({ scale: pageScale(unit.width, unit.height, dpi, budget) });
      const w = Math.ceil(viewport.width);
      const h = Math.ceil(viewport.height);
      const factory = doc.canvasFactory as { create(w: number, h: number): { canvas: unknown; context: CanvasRenderingContext2D } };
      const { canvas, context } = factory.create(w, h);
      try {
        await page.render({ canvasContext: context, viewport, canvas: canvas as HTMLCanvasElement }).promise;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        throw new QvlError('IMAGE_DECODE', `${label}: cannot render page ${n} (${msg})`, { source: label, page: n });
      }
      const rgba = context.getImageData(0, 0, w, h).data;
      const rgb = new Uint8Array(w * h * 3);
      // pdf.js paints an opaque white page first, so alpha is 255 everywhere
      for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
        rgb[i] = rgba[j]!;
        rgb[i + 1] = rgba[j + 1]!;
        rgb[i + 2] = rgba[j + 2]!;
      }
      pages.push({ page: n, widthPt: unit.width, heightPt: unit.height, width: w, height: h, data: rgb });
      page.cleanup();
    }
    const out: RenderedPdf = { pageCount: count, pages, source: label };
    if (opts.minPixels !== undefined) out.minPixels = opts.minPixels;
    if (opts.maxPixels !== undefined) out.maxPixels = opts.maxPixels;
    return out;
  } finally {
    await doc.destroy();
  }
}
