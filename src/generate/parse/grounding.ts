/**
 * Qwen3-VL grounding output → boxes and points in the original image's pixels.
 *
 * The model answers with JSON such as `[{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}]` or
 * `[{"point_2d": [x, y], "label": "…"}]`, usually inside a ```json fence, with coordinates on a
 * 0–1000 scale relative to the image (independent of how the processor resized it):
 * `x_px = x / 1000 · width`. Prose around the JSON and a truncated list are tolerated; values
 * outside the scale are clamped, and corners given in the wrong order are swapped.
 */
import { findJsonObjects } from './lenient-json.ts';

export interface ImageSize {
  width: number;
  height: number;
}

export interface GroundingBox {
  label?: string;
  /** as the model wrote it, clamped to [0, scale] and ordered (x1 ≤ x2, y1 ≤ y2) */
  bbox2d: [number, number, number, number];
  /** original-image pixels [x1, y1, x2, y2]; absent when no image size was given */
  box?: [number, number, number, number];
}

export interface GroundingPoint {
  label?: string;
  point2d: [number, number];
  /** original-image pixels [x, y]; absent when no image size was given */
  point?: [number, number];
}

export interface Grounding {
  boxes: GroundingBox[];
  points: GroundingPoint[];
}

export interface GroundingOptions {
  /** the coordinate range the model uses (1000 for Qwen3-VL; its GUI-agent prompts use 999) */
  scale?: number;
}

function numbers(v: unknown, n: number): number[] | undefined {
  if (!Array.isArray(v) || v.length !== n) return undefined;
  const out = v.map((x) => (typeof x === 'string' && x.trim() !== '' ? Number(x) : x));
  return out.every((x) => typeof x === 'number' && Number.isFinite(x)) ? (out as number[]) : undefined;
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

function labelOf(o: Record<string, unknown>): string | undefined {
  const l = o.label ?? o.name ?? o.text;
  return typeof l === 'string' ? l : typeof l === 'number' ? String(l) : undefined;
}

/** Boxes and points found in `text`; pixel coordinates when `size` (the original image) is given. */
export function parseGrounding(text: string, size?: ImageSize, opts: GroundingOptions = {}): Grounding {
  const scale = opts.scale ?? 1000;
  const boxes: GroundingBox[] = [];
  const points: GroundingPoint[] = [];
  const objects = findJsonObjects(text, (o) => numbers(o.bbox_2d, 4) !== undefined || numbers(o.point_2d, 2) !== undefined);
  for (const o of objects) {
    const label = labelOf(o);
    const b = numbers(o.bbox_2d, 4);
    if (b) {
      const [x1, x2] = [clamp(Math.min(b[0], b[2]), 0, scale), clamp(Math.max(b[0], b[2]), 0, scale)];
      const [y1, y2] = [clamp(Math.min(b[1], b[3]), 0, scale), clamp(Math.max(b[1], b[3]), 0, scale)];
      const box: GroundingBox = { bbox2d: [x1, y1, x2, y2] };
      if (label !== undefined) box.label = label;
      if (size) box.box = [toPixel(x1, size.width, scale), toPixel(y1, size.height, scale), toPixel(x2, size.width, scale), toPixel(y2, size.height, scale)];
      boxes.push(box);
      continue;
    }
    const p = numbers(o.point_2d, 2)!;
    const [x, y] = [clamp(p[0], 0, scale), clamp(p[1], 0, scale)];
    const point: GroundingPoint = { point2d: [x, y] };
    if (label !== undefined) point.label = label;
    if (size) point.point = [toPixel(x, size.width, scale), toPixel(y, size.height, scale)];
    points.push(point);
  }
  return { boxes, points };
}

/** A 0–scale coordinate → pixels of a side of `length`, rounded to 0.1 px and kept inside the image. */
export function toPixel(v: number, length: number, scale = 1000): number {
  return clamp(Math.round((v / scale) * length * 10) / 10, 0, length);
}
