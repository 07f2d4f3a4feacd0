import { parseGrounding } from '../generate/parse/grounding.ts';

/** [x1, y1, x2, y2] with x1 ≤ x2 and y1 ≤ y2, on the 0–1000 relative scale Qwen3-VL answers in. */
export type Box = [number, number, number, number];

/** Intersection over union of two boxes; 0 when they do not overlap or both are empty. */
export function iou(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const iy = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = ix * iy;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/** The `bbox_2d` boxes of a grounding answer (the project's own output parser: fenced or bare JSON, prose tolerated). */
export function answerBoxes(text: string): Box[] {
  return parseGrounding(text).boxes.map((b) => b.bbox2d);
}

/**
 * Grounding score of one answer: the IoU of its first box with the first expected box (the
 * question names one object). An answer with no parseable box scores 0.
 */
export function groundingIou(answer: string, expected: readonly Box[]): number {
  const got = answerBoxes(answer);
  if (got.length === 0 || expected.length === 0) return 0;
  return iou(got[0], expected[0]);
}
