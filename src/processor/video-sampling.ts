/**
 * Which source frames a video contributes, as HF's Qwen3-VL video processor chooses them:
 * n = trunc(total / sourceFps · fps), clamped to [minFrames, maxFrames] and to the frame count,
 * then `round(numpy.linspace(0, total − 1, n))` with ties to even. n is not forced even (an odd
 * count is padded later by repeating the last frame). A source without a known frame rate is
 * taken as 24 fps, HF's fallback.
 */
import { QvlError } from '../errors.ts';
import { numpyLinspace, pyInt, roundHalfEven } from './python-math.ts';

export const DEFAULT_SOURCE_FPS = 24;

export interface FrameSamplingOptions {
  /** target frames per second (default 2) */
  fps?: number;
  /** default 4 */
  minFrames?: number;
  /** default 768 */
  maxFrames?: number;
  /** take exactly this many frames, evenly spread (replaces the fps rule; not combinable with `fps`) */
  numFrames?: number;
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new QvlError('OPTION_INVALID', `${name} must be a positive integer, got ${v}`, { [name]: v });
}

export function sampleFrameIndices(totalFrames: number, sourceFps: number | undefined, opts: FrameSamplingOptions = {}): number[] {
  if (!Number.isInteger(totalFrames) || totalFrames <= 0) {
    throw new QvlError('VIDEO_INVALID', `a video needs at least one frame, got a frame count of ${totalFrames}`, { totalFrames });
  }
  if (sourceFps !== undefined && !(Number.isFinite(sourceFps) && sourceFps > 0)) {
    throw new QvlError('VIDEO_INVALID', `the video's frame rate must be a positive number, got ${sourceFps}`, { fps: sourceFps });
  }
  if (opts.fps !== undefined && opts.numFrames !== undefined) {
    throw new QvlError('OPTION_INVALID', 'give either fps or numFrames for frame sampling, not both', { fps: opts.fps, numFrames: opts.numFrames });
  }
  let n: number;
  if (opts.numFrames !== undefined) {
    checkPositiveInt('numFrames', opts.numFrames);
    n = opts.numFrames;
  } else {
    const fps = opts.fps ?? 2;
    const minFrames = opts.minFrames ?? 4;
    const maxFrames = opts.maxFrames ?? 768;
    if (!(Number.isFinite(fps) && fps > 0)) throw new QvlError('OPTION_INVALID', `fps must be a positive number, got ${fps}`, { fps });
    checkPositiveInt('minFrames', minFrames);
    checkPositiveInt('maxFrames', maxFrames);
    n = pyInt((totalFrames / (sourceFps ?? DEFAULT_SOURCE_FPS)) * fps);
    n = Math.min(Math.max(n, minFrames), maxFrames, totalFrames);
  }
  return numpyLinspace(0, totalFrames - 1, n).map(roundHalfEven);
}

/**
 * HF's rule as `loadVideo`'s `chooseFrames`: `loadVideo(src, { chooseFrames: frameSampler({ fps: 2 }) })`.
 * Typed by the probe's fields only, so this file needs nothing from media/.
 */
export function frameSampler(opts: FrameSamplingOptions = {}): (probe: { totalFrames: number; fps: number | undefined }) => number[] {
  return (probe) => sampleFrameIndices(probe.totalFrames, probe.fps, opts);
}
