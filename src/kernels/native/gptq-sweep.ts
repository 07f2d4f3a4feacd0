import { addonAvailable, loadAddon } from './addon.ts';

/**
 * GPTQ's column-by-column sweep of a range of columns in the addon, rows in parallel on the
 * calling thread's pool (native/gptq_sweep.inc): bit-identical to the TypeScript sweep of
 * src/weights/quant/gptq-quantize.ts, which stays the reference.
 */
export interface GptqSweepQ4Args {
  /** [rows, cols] the weights as earlier columns' errors left them; updated in place */
  w: Float32Array;
  rows: number;
  cols: number;
  /** the columns to sweep, [k0, k1); k0 a multiple of groupSize */
  k0: number;
  k1: number;
  groupSize: number;
  /** [cols, cols] the upper-triangular factor of H⁻¹ */
  u: Float32Array;
  /** [rows, cols] each swept column's error over U[c,c] */
  err: Float32Array;
  /** packed codes (zeroed by the caller), scales and zero points of the q4 weight */
  qs: Uint8Array;
  scales: Float32Array;
  zeros: Uint8Array;
}

/** Whether the addon has the sweep (none, or one built before it had it: not). */
export function nativeGptqSweepAvailable(): boolean {
  return addonAvailable() && typeof loadAddon().gptqSweepQ4 === 'function';
}

/**
 * Runs the sweep (nativeGptqSweepAvailable first); returns −1 when done, else row·cols + col of
 * the first NaN/±Infinity weight a group met (its row's sweep stopped there).
 */
export function nativeGptqSweepQ4(a: GptqSweepQ4Args): number {
  return loadAddon().gptqSweepQ4!(a.w, a.rows, a.cols, a.k0, a.k1, a.groupSize, a.u, a.err, a.qs, a.scales, a.zeros);
}
