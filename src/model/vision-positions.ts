import type { Grid } from './rope-index.ts';

const f = Math.fround;

/**
 * Patch coordinates in processor order: frames outermost, then 2×2 (merge×merge) windows in
 * raster order, then the patches of a window in raster order. Shared by the position-embedding
 * resampling, the 2-D rotary table and the mergers' 4-row grouping.
 */
export function mergeOrderCoords(grid: Grid, merge: number): { row: Int32Array; col: Int32Array } {
  const [t, h, w] = grid;
  const n = t * h * w;
  const row = new Int32Array(n);
  const col = new Int32Array(n);
  let i = 0;
  for (let tt = 0; tt < t; tt++) {
    for (let br = 0; br < h / merge; br++) {
      for (let bc = 0; bc < w / merge; bc++) {
        for (let ir = 0; ir < merge; ir++) {
          for (let ic = 0; ic < merge; ic++) {
            row[i] = br * merge + ir;
            col[i] = bc * merge + ic;
            i++;
          }
        }
      }
    }
  }
  return { row, col };
}

/** PyTorch's float32 linspace: the first half counts up from start, the second down from end. */
export function linspaceF32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const step = f((end - start) / (n - 1));
  const half = Math.floor(n / 2);
  for (let k = 0; k < n; k++) out[k] = k < half ? f(start + f(step * k)) : f(end - f(step * (n - 1 - k)));
  return out;
}

/**
 * The learned side×side position table resampled to an h×w patch grid (bilinear,
 * align-corners), returned in merge order and repeated for every frame: [t·h·w, dim].
 */
export function interpolatePosEmbed(table: Float32Array, side: number, dim: number, grid: Grid, merge: number): Float32Array {
  const [t, h, w] = grid;
  const hs = linspaceF32(0, side - 1, h);
  const ws = linspaceF32(0, side - 1, w);
  const { row, col } = mergeOrderCoords([1, h, w], merge);
  const frame = new Float32Array(h * w * dim);
  for (let i = 0; i < h * w; i++) {
    const y = hs[row[i]];
    const x = ws[col[i]];
    const y0 = Math.trunc(y);
    const x0 = Math.trunc(x);
    const y1 = Math.min(y0 + 1, side - 1);
    const x1 = Math.min(x0 + 1, side - 1);
    const dy = f(y - y0);
    const dx = f(x - x0);
    const wts = [f(f(1 - dy) * f(1 - dx)), f(f(1 - dy) * dx), f(dy * f(1 - dx)), f(dy * dx)];
    const idx = [y0 * side + x0, y0 * side + x1, y1 * side + x0, y1 * side + x1];
    const o = i * dim;
    for (let d = 0; d < dim; d++) {
      // left-to-right float32 sum of the four weighted corners, as HF adds them
      let s = f(table[idx[0] * dim + d] * wts[0]);
      s = f(s + f(table[idx[1] * dim + d] * wts[1]));
      s = f(s + f(table[idx[2] * dim + d] * wts[2]));
      s = f(s + f(table[idx[3] * dim + d] * wts[3]));
      frame[o + d] = s;
    }
  }
  if (t === 1) return frame;
  const out = new Float32Array(t * frame.length);
  for (let k = 0; k < t; k++) out.set(frame, k * frame.length);
  return out;
}

/**
 * 2-D rotary tables [n, headDim] for patches at (row, col): angles [row·inv, col·inv]
 * (headDim/2 values) duplicated for the split-half rotation.
 */
export function visionRotary(row: Int32Array, col: Int32Array, headDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const dim = headDim / 2;
  const nInv = dim / 2;
  const inv = new Float32Array(nInv);
  for (let k = 0; k < nInv; k++) inv[k] = f(1 / f(Math.pow(theta, f((2 * k) / dim))));
  const n = row.length;
  const cos = new Float32Array(n * headDim);
  const sin = new Float32Array(n * headDim);
  for (let i = 0; i < n; i++) {
    const o = i * headDim;
    for (let k = 0; k < nInv; k++) {
      const a = f(row[i] * inv[k]);
      const b = f(col[i] * inv[k]);
      cos[o + k] = cos[o + k + dim] = f(Math.cos(a));
      sin[o + k] = sin[o + k + dim] = f(Math.sin(a));
      cos[o + nInv + k] = cos[o + nInv + k + dim] = f(Math.cos(b));
      sin[o + nInv + k] = sin[o + nInv + k + dim] = f(Math.sin(b));
    }
  }
  return { cos, sin };
}
