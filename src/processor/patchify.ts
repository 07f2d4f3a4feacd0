/**
 * Normalisation and patch flattening shared by images and videos.
 *
 * Values are HF's fused rescale+normalise in float32: mean' = f32(mean)·f32(1/rescale) and
 * std' likewise (127.5 for Qwen3-VL), then v = f32(f32(x − mean') / std').
 *
 * Row layout: one row per 16×16 patch, columns (channel, time, y, x), i.e.
 * `c·T·P² + t·P² + y·P + x`. Row order: temporal groups outermost, then merge windows (m×m
 * patches) in raster order, then the patches of a window in raster order — the order the
 * vision tower's merger, position embedding and rotary tables all assume.
 */
import { QvlError } from '../errors.ts';
import type { ImageProcessorConfig } from './config.ts';

const fround = Math.fround;

/** Per-channel lookup table: `table[c * 256 + x]` is the normalised value of byte x in channel c. */
export function normalizationTable(cfg: Pick<ImageProcessorConfig, 'imageMean' | 'imageStd' | 'rescaleFactor'>): Float32Array {
  const table = new Float32Array(3 * 256);
  const inv = fround(1 / cfg.rescaleFactor);
  for (let c = 0; c < 3; c++) {
    const mean = fround(fround(cfg.imageMean[c]) * inv);
    const std = fround(fround(cfg.imageStd[c]) * inv);
    for (let x = 0; x < 256; x++) table[c * 256 + x] = fround(fround(x - mean) / std);
  }
  return table;
}

export interface PatchGrid {
  /** temporal groups */
  t: number;
  /** patch rows */
  h: number;
  /** patch columns */
  w: number;
}

/**
 * Flattens `frames` (RGB, `width`×`height`, count a multiple of temporalPatchSize) into
 * `[t·h·w, 3·T·P·P]` float32 rows. Sides must be multiples of patch × merge.
 */
export function patchifyFrames(
  frames: readonly Uint8Array[],
  width: number,
  height: number,
  cfg: Pick<ImageProcessorConfig, 'patchSize' | 'temporalPatchSize' | 'mergeSize' | 'imageMean' | 'imageStd' | 'rescaleFactor'>,
): { pixelValues: Float32Array; grid: PatchGrid } {
  const P = cfg.patchSize;
  const T = cfg.temporalPatchSize;
  const m = cfg.mergeSize;
  if (frames.length === 0 || frames.length % T !== 0) {
    throw new QvlError('INTERNAL', `patchify needs a positive multiple of ${T} frames, got ${frames.length}`);
  }
  if (width % (P * m) !== 0 || height % (P * m) !== 0) {
    throw new QvlError('INTERNAL', `patchify needs sides that are multiples of ${P * m}, got ${width}×${height}`);
  }
  const table = normalizationTable(cfg);
  const gt = frames.length / T;
  const gh = height / P;
  const gw = width / P;
  const PP = P * P;
  const rowLen = 3 * T * PP;
  const out = new Float32Array(gt * gh * gw * rowLen);
  let row = 0;
  for (let g = 0; g < gt; g++) {
    for (let br = 0; br < gh / m; br++) {
      for (let bc = 0; bc < gw / m; bc++) {
        for (let ir = 0; ir < m; ir++) {
          for (let ic = 0; ic < m; ic++) {
            const py = (br * m + ir) * P;
            const px = (bc * m + ic) * P;
            const base = row * rowLen;
            for (let t = 0; t < T; t++) {
              const frame = frames[g * T + t];
              for (let y = 0; y < P; y++) {
                let src = ((py + y) * width + px) * 3;
                const col = base + t * PP + y * P;
                for (let x = 0; x < P; x++, src += 3) {
                  out[col + x] = table[frame[src]];
                  out[col + T * PP + x] = table[256 + frame[src + 1]];
                  out[col + 2 * T * PP + x] = table[512 + frame[src + 2]];
                }
              }
            }
            row++;
          }
        }
      }
    }
  }
  return { pixelValues: out, grid: { t: gt, h: gh, w: gw } };
}
