import type { NonFiniteWeight } from '../backend.ts';
import { bf16ToF32, f16ToF32 } from '../dtypes.ts';
import { Q8_BLOCK, type Q4Weight, type Q8Weight, type WeightData } from '../weight.ts';
import { addonAvailable, loadAddon, type NativeAddon, type NativeWeightHandle } from './addon.ts';

/**
 * The load-time quantizers of weights/convert.ts (quantizeQ8 with refitQ8's least-squares
 * scales, quantizeQ4) run in the addon, on the calling thread's pool (native/quantize.inc). The
 * output is bit-identical to the TypeScript, which stays the reference: these return undefined
 * wherever they do not apply (no addon, or one built before it had them; a source that is not
 * f32 / bf16 / f16; an option the TypeScript would refuse), and the caller runs the TypeScript.
 */

export type { NonFiniteWeight };

export type NativeQuantized<W> = { weight: W } | { nonFinite: NonFiniteWeight };

const SOURCE_CODE: Partial<Record<WeightData['format'], number>> = { f32: 0, bf16: 1, f16: 2 };

type FloatWeight = Extract<WeightData, { format: 'f32' | 'bf16' | 'f16' }>;

function source(w: WeightData): FloatWeight | undefined {
  const code = SOURCE_CODE[w.format];
  if (code === undefined || !Number.isInteger(w.rows) || !Number.isInteger(w.cols) || w.rows < 0 || w.cols < 0) return undefined;
  const f = w as FloatWeight;
  if (f.data.length < w.rows * w.cols || !addonAvailable() || typeof loadAddon().quantize !== 'function') return undefined;
  return f;
}

function valueAt(w: FloatWeight, i: number): number {
  return w.format === 'f32' ? w.data[i] : w.format === 'bf16' ? bf16ToF32(w.data[i]) : f16ToF32(w.data[i]);
}

function result<W>(w: FloatWeight, bad: number, weight: W): NativeQuantized<W> {
  if (bad < 0) return { weight };
  return { nonFinite: { row: Math.floor(bad / w.cols), col: bad % w.cols, value: valueAt(w, bad) } };
}

function describe(w: FloatWeight) {
  return { format: SOURCE_CODE[w.format]!, rows: w.rows, cols: w.cols, data: w.data };
}

/**
 * quantizeQ8(w), refitted like refitQ8 when `refit` (with binary16 scales when `half`); undefined
 * where only the TypeScript applies.
 */
export function nativeQuantizeQ8(w: WeightData, opts: { refit: boolean; half?: boolean }): NativeQuantized<Q8Weight> | undefined {
  const f = source(w);
  if (!f) return undefined;
  const { rows, cols } = f;
  const qs = new Int8Array(rows * cols);
  const scales = new Float32Array(rows * Math.ceil(cols / Q8_BLOCK));
  const bad = loadAddon().quantize(describe(f), 8, opts.refit ? (opts.half ? 2 : 1) : 0, Q8_BLOCK, false, qs, scales, null);
  return result(f, bad, { format: 'q8', rows, cols, qs, scales });
}

/**
 * quantizeQ4(w, opts) straight into the eight-row stream `prepare` would repack it into, as a
 * prepared weight's handle (native/quantize.inc); undefined where it does not apply (a group size
 * not a multiple of 32, an addon without it).
 */
export function nativeQuantizeQ4x8(addon: NativeAddon, w: WeightData, opts: { groupSize: number; symmetric: boolean }): NativeQuantized<NativeWeightHandle> | undefined {
  const g = opts.groupSize;
  if (!Number.isInteger(g) || g <= 0 || g % 32 !== 0 || g > 2 ** 30 || typeof addon.quantizeQ4x8 !== 'function') return undefined;
  const f = source(w);
  if (!f || f.rows < 1 || f.cols < 1) return undefined;
  const r = addon.quantizeQ4x8(describe(f), g, opts.symmetric);
  if (typeof r === 'number') return result(f, r, undefined as never);
  return { weight: r };
}

/** quantizeQ4(w, opts); undefined where only the TypeScript applies (it also refuses a bad group size). */
export function nativeQuantizeQ4(w: WeightData, opts: { groupSize?: number; symmetric?: boolean } = {}): NativeQuantized<Q4Weight> | undefined {
  const g = opts.groupSize ?? 32;
  if (!Number.isInteger(g) || g <= 0 || g > 2 ** 30) return undefined;
  const f = source(w);
  if (!f) return undefined;
  const { rows, cols } = f;
  const sym = opts.symmetric ?? false;
  const nG = Math.ceil(cols / g);
  const qs = new Uint8Array(rows * Math.ceil(cols / 2));
  const scales = new Float32Array(rows * nG);
  const zeros = sym ? null : new Uint8Array(rows * nG);
  const bad = loadAddon().quantize(describe(f), 4, 0, g, sym, qs, scales, zeros);
  return result(f, bad, { format: 'q4', rows, cols, groupSize: g, nGroups: nG, qs, scales, ...(zeros ? { zeros } : {}) });
}
