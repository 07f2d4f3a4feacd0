/**
 * Antialiased bicubic resize of 8-bit images, bit-identical to what HF's processors run:
 * torchvision `resize(uint8, BICUBIC, antialias=True)` on CPU, i.e. PyTorch's uint8 kernel
 * (aten/src/ATen/native/cpu/UpSampleKernel.cpp, a port of Pillow's ImagingResample):
 *  - separable: a horizontal pass (width) into a uint8 intermediate, then a vertical pass;
 *    a pass whose size does not change is skipped, and a same-size resize returns the input;
 *  - filter: Keys cubic with a = −0.5, support scaled by the downscale ratio;
 *  - weights computed in float64, normalised, then quantised to int16 at the largest precision
 *    that keeps the biggest weight under 2^15 (one precision per pass);
 *  - integer accumulation with a half-LSB offset, arithmetic shift, clamp to [0, 255].
 */
import type { RgbImage } from '../media/rgb.ts';
import { QvlError } from '../errors.ts';

/** PyTorch `HelperInterpCubic::aa_filter` (a = −0.5), in its operation order. */
function cubicAa(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/** Quantised filter taps of one pass: output i reads `size[i]` inputs from `start[i]`. */
export interface AxisTaps {
  start: Int32Array;
  size: Int32Array;
  /** `stride` int weights per output, the first `size[i]` used */
  weights: Int32Array;
  stride: number;
  precision: number;
}

/** PyTorch `_compute_index_ranges_int16_weights` for antialiased bicubic, align_corners = false. */
export function computeAxisTaps(inSize: number, outSize: number): AxisTaps {
  const scale = inSize / outSize; // area_pixel_compute_scale without an explicit scale factor
  const support = scale >= 1 ? 2 * scale : 2;
  const stride = Math.ceil(support) * 2 + 1;
  const invscale = scale >= 1 ? 1 / scale : 1;
  const start = new Int32Array(outSize);
  const size = new Int32Array(outSize);
  const real = new Float64Array(outSize * stride);
  let wtMax = 0;
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5);
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    // Rounding can make the range one longer than the buffer; PyTorch clips it.
    const xsize = Math.min(Math.max(Math.min(Math.trunc(center + support + 0.5), inSize) - xmin, 0), stride);
    const row = i * stride;
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const w = cubicAa((j + xmin - center + 0.5) * invscale);
      real[row + j] = w;
      total += w;
    }
    if (total !== 0) {
      for (let j = 0; j < xsize; j++) {
        real[row + j] /= total;
        if (real[row + j] > wtMax) wtMax = real[row + j];
      }
    }
    start[i] = xmin;
    size[i] = xsize;
  }
  let precision = 0;
  for (; precision < 22; precision++) {
    if (Math.trunc(0.5 + wtMax * 2 ** (precision + 1)) >= 1 << 15) break;
  }
  const weights = new Int32Array(outSize * stride);
  const mul = 2 ** precision;
  for (let k = 0; k < real.length; k++) {
    const v = real[k] * mul;
    weights[k] = v < 0 ? Math.trunc(-0.5 + v) : Math.trunc(0.5 + v);
  }
  return { start, size, weights, stride, precision };
}

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Horizontal pass: every row, interleaved channels. */
function resizeRows(src: Uint8Array, inW: number, h: number, ch: number, outW: number, taps: AxisTaps): Uint8Array {
  const dst = new Uint8Array(outW * h * ch);
  const { start, size, weights, stride, precision } = taps;
  const half = 1 << (precision - 1);
  const acc = new Float64Array(ch);
  for (let y = 0; y < h; y++) {
    const rowIn = y * inW * ch;
    let o = y * outW * ch;
    for (let x = 0; x < outW; x++) {
      const n = size[x];
      const wBase = x * stride;
      const pBase = rowIn + start[x] * ch;
      if (ch === 3) {
        let r = half;
        let g = half;
        let b = half;
        for (let j = 0; j < n; j++) {
          const w = weights[wBase + j];
          const p = pBase + j * 3;
          r += w * src[p];
          g += w * src[p + 1];
          b += w * src[p + 2];
        }
        dst[o++] = clampByte(r >> precision);
        dst[o++] = clampByte(g >> precision);
        dst[o++] = clampByte(b >> precision);
      } else {
        acc.fill(half);
        for (let j = 0; j < n; j++) {
          const w = weights[wBase + j];
          const p = pBase + j * ch;
          for (let c = 0; c < ch; c++) acc[c] += w * src[p + c];
        }
        for (let c = 0; c < ch; c++) dst[o++] = clampByte(acc[c] >> precision);
      }
    }
  }
  return dst;
}

/** Vertical pass: whole rows at a time (row-major friendly). */
function resizeColumns(src: Uint8Array, w: number, ch: number, outH: number, taps: AxisTaps): Uint8Array {
  const rowLen = w * ch;
  const dst = new Uint8Array(rowLen * outH);
  const { start, size, weights, stride, precision } = taps;
  const half = 1 << (precision - 1);
  const acc = new Int32Array(rowLen);
  for (let y = 0; y < outH; y++) {
    acc.fill(half);
    const n = size[y];
    for (let j = 0; j < n; j++) {
      const wt = weights[y * stride + j];
      const rowIn = (start[y] + j) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] += wt * src[rowIn + i];
    }
    const o = y * rowLen;
    for (let i = 0; i < rowLen; i++) dst[o + i] = clampByte(acc[i] >> precision);
  }
  return dst;
}

/**
 * Resizes interleaved 8-bit pixels (`channels` per pixel, rows without padding).
 * Returns `src` itself when the size does not change, as torchvision does.
 */
export function resizeBicubicAa(
  src: Uint8Array,
  width: number,
  height: number,
  channels: number,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  for (const [name, v] of [['width', width], ['height', height], ['output width', outWidth], ['output height', outHeight], ['channels', channels]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new QvlError('OPTION_INVALID', `resize: ${name} must be a positive integer, got ${v}`, { [name]: v });
  }
  if (src.length !== width * height * channels) {
    throw new QvlError('IMAGE_DECODE', `resize: pixel buffer has ${src.length} bytes, expected ${width}×${height}×${channels} = ${width * height * channels}`, {
      width,
      height,
      channels,
      bytes: src.length,
    });
  }
  if (width === outWidth && height === outHeight) return src;
  let cur = src;
  if (outWidth !== width) cur = resizeRows(cur, width, height, channels, outWidth, computeAxisTaps(width, outWidth));
  if (outHeight !== height) cur = resizeColumns(cur, outWidth, channels, outHeight, computeAxisTaps(height, outHeight));
  return cur;
}

/** RGB convenience wrapper; the same object comes back when no resize is needed. */
export function resizeRgbBicubic(img: RgbImage, outWidth: number, outHeight: number): RgbImage {
  if (img.width === outWidth && img.height === outHeight) return img;
  return { width: outWidth, height: outHeight, data: resizeBicubicAa(img.data, img.width, img.height, 3, outWidth, outHeight) };
}
