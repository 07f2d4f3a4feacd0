/**
 * Image bytes → 8-bit RGB, the way Hugging Face's `load_image` does it: Pillow decodes,
 * `ImageOps.exif_transpose` applies the EXIF orientation, `convert("RGB")` drops alpha without
 * compositing and ignores ICC profiles. sharp does the decoding; where its defaults differ from
 * Pillow (CMYK, 16-bit grey, GIF transparency, ICC) the Pillow result is rebuilt from raw samples.
 * The pixel count is checked from the header before any pixel is decoded.
 */
import sharp, { type Metadata, type Sharp } from 'sharp';
import { QvlError } from '../errors.ts';
import { gifTransparentColour } from './gif-transparency.ts';
import type { RgbImage } from './rgb.ts';
import { loadMediaBytes, type MediaSource } from './source.ts';
import { DEFAULT_MAX_INPUT_PIXELS, type MediaSourceOptions } from './source-options.ts';

export { DEFAULT_MAX_INPUT_PIXELS };

const SUPPORTED = new Set(['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif']);

export interface ImageDecodeOptions {
  /** refuse images with more pixels than this (default 89,478,485, Pillow's bomb threshold) */
  maxInputPixels?: number;
  /** names the image in errors */
  label?: string;
}

export interface ImageHeader {
  /** size after the EXIF orientation is applied (what the model will see) */
  width: number;
  height: number;
  format: string;
  /** EXIF orientation 1–8 (1 when absent) */
  orientation: number;
  hasAlpha: boolean;
}

/** Per-request resize budget for the processor (H·W pixel counts), passed through untouched. */
export interface ImageBudget {
  minPixels?: number;
  maxPixels?: number;
}

export interface LoadedImage extends RgbImage, ImageBudget {
  /** names the source (path, URL without query, "data URI (…)") */
  source: string;
  format: string;
}

function decodeError(label: string, e: unknown): QvlError {
  const msg = e instanceof Error ? e.message : String(e);
  return new QvlError('IMAGE_DECODE', `${label}: cannot decode image (${msg.split('\n')[0]})`, { source: label, reason: msg });
}

/** Reads only the header: size (after EXIF orientation), format, alpha. */
export async function probeImage(bytes: Uint8Array, opts: ImageDecodeOptions = {}): Promise<ImageHeader> {
  const label = opts.label ?? 'image';
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false, pages: 1 }).metadata();
  } catch (e) {
    throw decodeError(label, e);
  }
  const format = meta.format === 'heif' && meta.compression === 'av1' ? 'avif' : String(meta.format ?? 'unknown');
  if (!SUPPORTED.has(meta.format ?? '') || (meta.format === 'heif' && format !== 'avif')) {
    throw new QvlError('IMAGE_DECODE', `${label}: unsupported image format ${format} (JPEG, PNG, WebP, GIF, TIFF or AVIF expected)`, {
      source: label,
      format,
    });
  }
  const w = meta.width ?? 0;
  const h = meta.pageHeight ?? meta.height ?? 0;
  if (!(w > 0 && h > 0)) throw new QvlError('IMAGE_DECODE', `${label}: the header gives no size`, { source: label });
  const limit = opts.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  if (w * h > limit) {
    throw new QvlError('IMAGE_TOO_LARGE', `${label}: ${w}x${h} = ${w * h} pixels, over the limit of ${limit}`, {
      source: label,
      width: w,
      height: h,
      limit,
    });
  }
  const orientation = meta.orientation ?? 1;
  const swap = orientation >= 5 && orientation <= 8;
  return { width: swap ? h : w, height: swap ? w : h, format, orientation, hasAlpha: meta.hasAlpha ?? false };
}

/** Decodes the first frame/page of an image to RGB as HF's `load_image` does. */
export async function decodeImage(bytes: Uint8Array, opts: ImageDecodeOptions = {}): Promise<RgbImage> {
  const label = opts.label ?? 'image';
  const header = await probeImage(bytes, opts);
  const limit = opts.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { pages: 1 }).metadata();
    // Pillow ignores embedded ICC profiles; so do we. autoOrient = exif_transpose.
    const base = () => sharp(bytes, { limitInputPixels: limit, failOn: 'error', pages: 1, ignoreIcc: true, autoOrient: true });
    if (meta.space === 'cmyk') return cmykToRgb(await raw(base().pipelineColourspace('cmyk').toColourspace('cmyk')));
    if (meta.channels === 1 && meta.depth === 'ushort') return grey16ToRgb(await raw(base().toColourspace('grey16'), 'ushort'));
    if (meta.format === 'gif' && header.hasAlpha) {
      const rgba = await raw(base().ensureAlpha().toColourspace('srgb'));
      return gifToRgb(rgba, gifTransparentColour(bytes));
    }
    const rgb = await raw(base().removeAlpha().toColourspace('srgb'));
    if (rgb.channels !== 3) throw new Error(`decoder produced ${rgb.channels} channels`);
    return { width: rgb.width, height: rgb.height, data: rgb.data };
  } catch (e) {
    if (e instanceof QvlError) throw e;
    throw decodeError(label, e);
  }
}

/** Resolves a source (path, URL, data URI, Base64, bytes) and decodes it. */
export async function loadImage(
  source: MediaSource,
  opts: MediaSourceOptions & ImageDecodeOptions & ImageBudget = {},
): Promise<LoadedImage> {
  const media = await loadMediaBytes(source, 'image', opts);
  const img = await decodeImage(media.bytes, { ...opts, label: opts.label ?? media.label });
  const out: LoadedImage = { ...img, source: media.label, format: (await probeImage(media.bytes, { ...opts, label: media.label })).format };
  if (opts.minPixels !== undefined) out.minPixels = opts.minPixels;
  if (opts.maxPixels !== undefined) out.maxPixels = opts.maxPixels;
  return out;
}

interface Raw {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array;
  words?: Uint16Array;
}

async function raw(pipeline: Sharp, depth: 'uchar' | 'ushort' = 'uchar'): Promise<Raw> {
  const { data, info } = await pipeline.raw({ depth }).toBuffer({ resolveWithObject: true });
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out: Raw = { width: info.width, height: info.height, channels: info.channels, data: bytes };
  if (depth === 'ushort') out.words = new Uint16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  return out;
}

/** (a·b)/255 rounded, in Pillow's integer form. */
function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/** Pillow's CMYK → RGB: no colour management, R = (255−K) − C·(255−K)/255. */
export function cmykToRgb(src: Raw): RgbImage {
  const n = src.width * src.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const nk = 255 - src.data[i * 4 + 3]!;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.max(0, nk - mulDiv255(src.data[i * 4 + c]!, nk));
  }
  return { width: src.width, height: src.height, data: out };
}

/** Pillow opens 16-bit greyscale as mode I;16, and its conversion to RGB clips at 255 (no scaling). */
export function grey16ToRgb(src: Raw): RgbImage {
  const n = src.width * src.height;
  const words = src.words!;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const v = Math.min(words[i * src.channels]!, 255);
    out[i * 3] = v;
    out[i * 3 + 1] = v;
    out[i * 3 + 2] = v;
  }
  return { width: src.width, height: src.height, data: out };
}

function gifToRgb(src: Raw, transparent: [number, number, number] | undefined): RgbImage {
  const n = src.width * src.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const clear = transparent !== undefined && src.data[i * 4 + 3] === 0;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = clear ? transparent[c]! : src.data[i * 4 + c]!;
  }
  return { width: src.width, height: src.height, data: out };
}
