/** Result of checking one stage of one case against the reference. */
export interface StageCheck {
  case: string;
  stage: string;
  /** max absolute difference (numbers), or count of mismatches (ids, texts) */
  diff: number;
  tolerance: number;
  ok: boolean;
  detail?: string;
  /** for counts: how many items were compared */
  total?: number;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}

/** Count of positions that differ (plus the length difference). */
export function mismatches(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = Math.abs(a.length - b.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) n++;
  return n;
}

/** Where two strings first differ, for a readable failure. */
export function textDiff(ours: string, ref: string): string | undefined {
  if (ours === ref) return undefined;
  let i = 0;
  while (i < ours.length && i < ref.length && ours[i] === ref[i]) i++;
  const show = (s: string) => JSON.stringify(s.slice(Math.max(0, i - 20), i + 40));
  return `first difference at character ${i}: ours ${show(ours)} vs reference ${show(ref)}`;
}

export function check(caseName: string, stage: string, diff: number, tolerance: number, detail?: string): StageCheck {
  return { case: caseName, stage, diff, tolerance, ok: diff <= tolerance, detail };
}

export function formatCheck(c: StageCheck): string {
  const exact = c.tolerance === 0 && Number.isInteger(c.diff);
  const d = exact ? (c.diff === 0 ? 'identical' : `${c.diff} differ`) : `max|Δ| ${c.diff.toExponential(2)}`;
  const tol = exact ? 'exact' : `tol ${c.tolerance.toExponential(0)}`;
  return `${c.ok ? 'ok  ' : 'FAIL'}  ${c.case.padEnd(28)} ${c.stage.padEnd(26)} ${d.padEnd(20)} ${tol}${c.detail ? `  ${c.detail}` : ''}`;
}
