/**
 * The index of the largest value, the first of equal ones; NaN is never chosen, and 0 is the
 * answer when there is nothing else to choose (every value NaN, or none). The native backend's
 * kernel answers the same.
 */
export function argmax(x: Float32Array): number {
  let best = -1;
  let bv = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    // the first value that is not NaN stands even if it is −∞
    if (v > bv || (best < 0 && v === v)) {
      bv = v;
      best = i;
    }
  }
  return best < 0 ? 0 : best;
}
