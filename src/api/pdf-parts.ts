/**
 * PDF documents inside chat messages. A PDF content part becomes one image part per page,
 * rendered within a pixel budget (media/pdf.ts), before the usual message handling; the model
 * never sees a PDF, only page images in order.
 *
 * Accepted spellings of a PDF part:
 *  - OpenAI file part: `{type: 'file', file: {file_data: 'data:application/pdf;base64,…', filename?}}`
 *    (bare Base64 of a PDF is accepted too);
 *  - `{type: 'image_url', image_url: {url: 'data:application/pdf;base64,…'}}`;
 *  - `{type: 'pdf', pdf: <path | URL | data URI>}` (sources obey the same media limits as images).
 * Optional on the part: `pages` (1-based list), `min_pixels` / `max_pixels` (per page image).
 */
import sharp from 'sharp';
import { QvlError } from '../errors.ts';
import { pageScale, probePdf, renderPdf, type PdfRenderOptions } from '../media/pdf.ts';
import type { RgbImage } from '../media/rgb.ts';
import { loadMediaBytes, type MediaBytes } from '../media/source.ts';
import type { MediaSourceOptions } from '../media/source-options.ts';

export interface PdfRef {
  /** where it sits: message and part index */
  message: number;
  part: number;
  source: string;
  pages?: number[];
  minPixels?: number;
  maxPixels?: number;
}

export interface PdfPartOptions {
  /** render resolution (default 144 dpi) */
  dpi?: number;
  /** largest rendered page in pixels (default 1280·1280) */
  maxPagePixels?: number;
  /** most pages one document may contribute (default 64) */
  maxPages?: number;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

const PDF_MAGIC_BASE64 = 'JVBERi'; // "%PDF-"

function fail(message: number, part: number, problem: string): never {
  throw new QvlError('MESSAGE_INVALID', `messages[${message}].content[${part}]: ${problem}`, { message, part });
}

/** The PDF source of a content part, or undefined when the part is not a PDF. */
function pdfSource(raw: Record<string, unknown>, m: number, p: number): string | undefined {
  if (raw.type === 'pdf') {
    const v = raw.pdf ?? raw.url ?? raw.path;
    if (typeof v !== 'string' || v.length === 0) fail(m, p, 'pdf part needs "pdf": "<path, URL or data URI>"');
    return v;
  }
  if (raw.type === 'file') {
    const file = raw.file;
    if (!isRecord(file)) fail(m, p, 'file part needs "file": {"file_data": "data:application/pdf;base64,…"}');
    if (file.file_id !== undefined) fail(m, p, 'file_id is not supported (no file store); send the document as file_data');
    const data = file.file_data;
    if (typeof data !== 'string' || data.length === 0) fail(m, p, 'file part needs "file_data" holding a PDF as a data URI or Base64');
    const isPdfUri = /^data:application\/(x-)?pdf[;,]/i.test(data);
    const isPdfBase64 = !data.startsWith('data:') && data.trimStart().startsWith(PDF_MAGIC_BASE64);
    if (!isPdfUri && !isPdfBase64) {
      const mime = /^data:([^;,]*)/i.exec(data)?.[1];
      fail(m, p, `only PDF files are supported in file parts${mime ? `, got ${mime}` : ''}`);
    }
    return data;
  }
  if (raw.type === 'image_url') {
    const v = raw.image_url;
    const url = typeof v === 'string' ? v : isRecord(v) ? v.url : undefined;
    if (typeof url === 'string' && /^data:application\/(x-)?pdf[;,]/i.test(url)) return url;
  }
  return undefined;
}

function positiveInt(raw: Record<string, unknown>, key: string, m: number, p: number): number | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(m, p, `${key} must be a positive integer`);
  return v;
}

/** Finds the PDF parts of a message list (without reading them). */
export function findPdfParts(messages: unknown): PdfRef[] {
  if (!Array.isArray(messages)) return [];
  const out: PdfRef[] = [];
  messages.forEach((msg, m) => {
    if (!isRecord(msg) || !Array.isArray(msg.content)) return;
    msg.content.forEach((part, p) => {
      if (!isRecord(part)) return;
      const source = pdfSource(part, m, p);
      if (source === undefined) return;
      if (msg.role !== 'user' && msg.role !== 'tool') fail(m, p, `documents are only accepted in user and tool messages, not in ${String(msg.role)} messages`);
      const ref: PdfRef = { message: m, part: p, source };
      if (part.pages !== undefined) {
        if (!Array.isArray(part.pages) || part.pages.length === 0 || !part.pages.every((x) => Number.isInteger(x) && x > 0)) {
          fail(m, p, 'pages must be a non-empty list of 1-based page numbers');
        }
        ref.pages = part.pages as number[];
      }
      const minPixels = positiveInt(part, 'min_pixels', m, p);
      const maxPixels = positiveInt(part, 'max_pixels', m, p);
      if (minPixels !== undefined) ref.minPixels = minPixels;
      if (maxPixels !== undefined) ref.maxPixels = maxPixels;
      out.push(ref);
    });
  });
  return out;
}

/** Replaces each PDF part with what `pagesOf` returns for it (a list of parts), keeping everything else. */
async function replacePdfParts(messages: unknown, refs: PdfRef[], pagesOf: (ref: PdfRef) => Promise<object[]>): Promise<unknown> {
  if (refs.length === 0) return messages;
  const list = [...(messages as Record<string, unknown>[])];
  const byMessage = new Map<number, Map<number, object[]>>();
  for (const ref of refs) {
    const parts = await pagesOf(ref);
    if (!byMessage.has(ref.message)) byMessage.set(ref.message, new Map());
    byMessage.get(ref.message)!.set(ref.part, parts);
  }
  for (const [m, parts] of byMessage) {
    const msg = list[m]!;
    const content = (msg.content as unknown[]).flatMap((part, p) => parts.get(p) ?? [part]);
    list[m] = { ...msg, content };
  }
  return list;
}

/** PDF parts → text placeholders: lets the rest of a request be validated without reading documents. */
export function withoutPdfParts(messages: unknown): unknown {
  const refs = findPdfParts(messages);
  if (refs.length === 0) return messages;
  const list = [...(messages as Record<string, unknown>[])];
  for (const ref of refs) {
    const msg = list[ref.message]!;
    const content = [...(msg.content as unknown[])];
    content[ref.part] = { type: 'text', text: '' };
    list[ref.message] = { ...msg, content };
  }
  return list;
}

function renderOptions(ref: PdfRef, o: PdfPartOptions, media: MediaSourceOptions): PdfRenderOptions {
  return { ...media, dpi: o.dpi, maxPagePixels: o.maxPagePixels, maxPages: o.maxPages, pages: ref.pages };
}

function pagePart(image: Uint8Array | { width: number; height: number }, ref: PdfRef): object {
  const part: Record<string, unknown> = { type: 'image', image };
  if (ref.minPixels !== undefined) part.min_pixels = ref.minPixels;
  if (ref.maxPixels !== undefined) part.max_pixels = ref.maxPixels;
  return part;
}

/** Renders every PDF part into page image parts (lossless PNG bytes, decoded again like any image). */
export async function expandPdfParts(messages: unknown, opts: PdfPartOptions = {}, media: MediaSourceOptions = {}): Promise<unknown> {
  const refs = findPdfParts(messages);
  return replacePdfParts(messages, refs, async (ref) => {
    const doc = await renderPdf(ref.source, renderOptions(ref, opts, media));
    const parts: object[] = [];
    for (const page of doc.pages) {
      const png = await sharp(page.data, { raw: { width: page.width, height: page.height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
      parts.push(pagePart(new Uint8Array(png.buffer, png.byteOffset, png.byteLength), ref));
    }
    return parts;
  });
}

/** The pages of one PDF part as RGB images, in the order `planPdfPages` lists them. */
export async function renderPdfPages(ref: PdfRef, opts: PdfPartOptions = {}, media: MediaSourceOptions = {}, fetched?: MediaBytes): Promise<RgbImage[]> {
  const doc = await renderPdf(ref.source, { ...renderOptions(ref, opts, media), fetched });
  return doc.pages.map((p) => ({ width: p.width, height: p.height, data: p.data }));
}

export interface PdfPagePlan {
  page: number;
  width: number;
  height: number;
}

/** The size each page will be rendered at, from the document's page sizes only (no rendering). */
export async function planPdfPages(ref: PdfRef, opts: PdfPartOptions = {}, media: MediaSourceOptions = {}, fetched?: MediaBytes): Promise<PdfPagePlan[]> {
  const got = fetched ?? (await loadMediaBytes(ref.source, 'pdf', media));
  const sizes = await probePdf(got.bytes, got.label);
  const wanted = ref.pages ?? sizes.map((s) => s.page);
  const maxPages = opts.maxPages ?? 64;
  if (wanted.length > maxPages) {
    throw new QvlError('MEDIA_TOO_LARGE', `${got.label}: ${wanted.length} pages, over the limit of ${maxPages}; choose pages to render`, {
      source: got.label,
      pages: wanted.length,
      limit: maxPages,
    });
  }
  return wanted.map((n) => {
    const s = sizes[n - 1];
    if (!s) throw new QvlError('OPTION_INVALID', `${got.label}: page ${n} does not exist (the document has ${sizes.length} pages)`, { source: got.label, page: n });
    const scale = pageScale(s.widthPt, s.heightPt, opts.dpi ?? 144, opts.maxPagePixels ?? 1280 * 1280);
    return { page: n, width: Math.ceil(s.widthPt * scale), height: Math.ceil(s.heightPt * scale) };
  });
}
