import type { TextRope } from './config.ts';

const f = Math.fround;

/**
 * Text inverse frequencies (float32, length headDim/2): 1 / θ^(2j/d), with YaRN's
 * per-frequency blend between interpolated and original frequencies when configured.
 */
export function textInvFreq(rope: TextRope, headDim: number): Float32Array {
  const half = headDim / 2;
  const inv0 = new Float32Array(half);
  // HF: 1 / base ** (arange(0, d, 2, int64).float() / d), the exponent in float32.
  for (let j = 0; j < half; j++) inv0[j] = f(1 / f(Math.pow(rope.theta, f((2 * j) / headDim))));
  if (rope.type === 'default') return inv0;

  const { factor, betaFast, betaSlow, originalMaxPositionEmbeddings: L0, theta } = rope;
  const corr = (rot: number) => (headDim * Math.log(L0 / (rot * 2 * Math.PI))) / (2 * Math.log(theta));
  let lo = corr(betaFast);
  let hi = corr(betaSlow);
  if (rope.truncate) {
    lo = Math.floor(lo);
    hi = Math.ceil(hi);
  }
  lo = Math.max(lo, 0);
  hi = Math.min(hi, headDim - 1);
  if (lo === hi) hi += 0.001;
  const out = new Float32Array(half);
  for (let j = 0; j < half; j++) {
    const ramp = Math.min(1, Math.max(0, f(f(j - lo) / f(hi - lo))));
    const extrapolationFactor = f(1 - ramp);
    const posFreq = f(Math.pow(theta, f((2 * j) / headDim)));
    const interp = f(1 / f(factor * posFreq));
    out[j] = f(f(interp * f(1 - extrapolationFactor)) + f(inv0[j] * extrapolationFactor));
  }
  return out;
}

/**
 * Which position axis (0 = T, 1 = H, 2 = W) drives each frequency j under interleaved MRoPE:
 * H at j ≡ 1 (mod 3) below 3·section[1], W at j ≡ 2 (mod 3) below 3·section[2], T elsewhere.
 */
export function mropeAxes(section: readonly [number, number, number], half: number): Uint8Array {
  const axes = new Uint8Array(half);
  for (let j = 0; j < half; j++) {
    if (j % 3 === 1 && j < 3 * section[1]) axes[j] = 1;
    else if (j % 3 === 2 && j < 3 * section[2]) axes[j] = 2;
  }
  return axes;
}

/**
 * cos/sin tables [n, headDim] for tokens whose (T, H, W) positions are pos[0][i], pos[1][i],
 * pos[2][i]. Layout cat(freqs, freqs) for the split-half rotation, times the attention factor.
 */
export class TextRotary {
  readonly headDim: number;
  private readonly inv: Float32Array;
  private readonly axes: Uint8Array;
  private readonly scale: number;

  constructor(rope: TextRope, headDim: number) {
    this.headDim = headDim;
    this.inv = textInvFreq(rope, headDim);
    this.axes = mropeAxes(rope.mropeSection, headDim / 2);
    this.scale = rope.attentionFactor;
  }

  tables(t: ArrayLike<number>, h: ArrayLike<number>, w: ArrayLike<number>): { cos: Float32Array; sin: Float32Array } {
    const n = t.length;
    const d = this.headDim;
    const half = d / 2;
    const cos = new Float32Array(n * d);
    const sin = new Float32Array(n * d);
    const axis = [t, h, w];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < half; j++) {
        const angle = f(axis[this.axes[j]][i] * this.inv[j]);
        const c = f(f(Math.cos(angle)) * this.scale);
        const s = f(f(Math.sin(angle)) * this.scale);
        cos[i * d + j] = c;
        cos[i * d + j + half] = c;
        sin[i * d + j] = s;
        sin[i * d + j + half] = s;
      }
    }
    return { cos, sin };
  }
}
