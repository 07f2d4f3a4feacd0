/**
 * Scores of one held-out item and of a whole run.
 *
 * Task accuracy: normalized exact match (normalize.ts) for every task but grounding, where an
 * answer is correct when its box has IoU ≥ 0.5 with the expected one (and the mean IoU is reported).
 * Agreement with HF: the generated token ids equal HF's (end-of-sequence tokens aside). When they
 * differ, the first differing step is located and HF's top-1/top-2 logit margin there tells whether
 * HF itself was at a near tie (< NEAR_TIE), where float rounding may legitimately pick either token.
 */
import type { EvalItem } from './dataset.ts';
import { groundingIou } from './iou.ts';
import { answersMatch } from './normalize.ts';
import type { ForcedAgreement } from './teacher-forced.ts';

export const IOU_CORRECT = 0.5;
export const NEAR_TIE = 1e-3;
/** Qwen3-VL's end-of-sequence ids (<|im_end|>, <|endoftext|>): qvl does not return them, HF does. */
export const EOS_IDS: ReadonlySet<number> = new Set([151645, 151643]);

export interface HfComparison {
  same: boolean;
  /** first generated position where the ids differ (absent when same) */
  firstDiff?: number;
  /** HF's top-1 minus top-2 logit at that position, when HF recorded it */
  hfMargin?: number;
  /** the difference starts where HF was at a near tie */
  nearTie?: boolean;
}

export interface ItemResult {
  id: string;
  task: string;
  expected: string;
  answer: string;
  correct: boolean;
  /** grounding only */
  iou?: number;
  tokenIds: number[];
  hfAnswer?: string;
  hf?: HfComparison;
  /** along HF's answer tokens (EvaluateOptions.teacherForced) */
  forced?: ForcedAgreement;
  ms?: number;
}

export interface TaskSummary {
  task: string;
  n: number;
  accuracy: number;
  /** grounding only */
  meanIou?: number;
  /** the same rules applied to HF's recorded answers (when the set has them) */
  hfAccuracy?: number;
  hfMeanIou?: number;
  /** items compared with HF, and how many of them gave HF's exact tokens */
  hfCompared: number;
  sameAsHf: number;
  /** teacher-forced positions and those with HF's token on top (when the run forced any) */
  forced?: { positions: number; agree: number };
}

export interface EvalReport {
  modelDir: string;
  datasetDir: string;
  backend: string;
  /** weights quantized at load, if they were */
  quant?: string;
  maxNewTokens: number;
  items: ItemResult[];
  tasks: TaskSummary[];
  overall: {
    n: number;
    accuracy: number;
    hfCompared: number;
    sameAsHf: number;
    /** sameAsHf / hfCompared (NaN when nothing was compared) */
    sameAsHfShare: number;
    /** differing items whose first difference is at an HF near tie */
    differingAtNearTie: number;
    /** teacher-forced positions, those with HF's token on top, and items with a miss */
    forced?: { positions: number; agree: number; itemsWithMiss: number };
  };
  ms: number;
}

function withoutEos(ids: readonly number[]): number[] {
  let n = ids.length;
  while (n > 0 && EOS_IDS.has(ids[n - 1])) n--;
  return ids.slice(0, n);
}

/** qvl's generated ids against HF's recorded ones. */
export function compareWithHf(tokenIds: readonly number[], hfTokenIds: readonly number[], hfTop2Margin?: readonly number[]): HfComparison {
  const a = withoutEos(tokenIds);
  const b = withoutEos(hfTokenIds);
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  if (i === a.length && i === b.length) return { same: true };
  const out: HfComparison = { same: false, firstDiff: i };
  if (hfTop2Margin && i < hfTop2Margin.length) {
    out.hfMargin = hfTop2Margin[i];
    out.nearTie = hfTop2Margin[i] < NEAR_TIE;
  }
  return out;
}

/** Task correctness (and IoU for grounding) of one answer. */
export function scoreAnswer(item: EvalItem, answer: string): { correct: boolean; iou?: number } {
  if (item.task === 'grounding') {
    const v = groundingIou(answer, item.expectedBoxes ?? []);
    return { correct: v >= IOU_CORRECT, iou: v };
  }
  return { correct: answersMatch(answer, item.expected) };
}

export function scoreItem(item: EvalItem, answer: string, tokenIds: readonly number[], ms?: number): ItemResult {
  const s = scoreAnswer(item, answer);
  const r: ItemResult = { id: item.id, task: item.task, expected: item.expected, answer, correct: s.correct, tokenIds: [...tokenIds] };
  if (s.iou !== undefined) r.iou = s.iou;
  if (item.hfAnswer !== undefined) r.hfAnswer = item.hfAnswer;
  if (item.hfTokenIds) r.hf = compareWithHf(tokenIds, item.hfTokenIds, item.hfTop2Margin);
  if (ms !== undefined) r.ms = ms;
  return r;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Per-task summaries in first-seen task order; `items` supplies HF's answers for HF's own accuracy. */
export function summarize(results: readonly ItemResult[], items: readonly EvalItem[]): { tasks: TaskSummary[]; overall: EvalReport['overall'] } {
  const byId = new Map(items.map((i) => [i.id, i]));
  const groups = new Map<string, ItemResult[]>();
  for (const r of results) {
    if (!groups.has(r.task)) groups.set(r.task, []);
    groups.get(r.task)!.push(r);
  }
  const tasks: TaskSummary[] = [];
  for (const [task, rs] of groups) {
    const t: TaskSummary = {
      task,
      n: rs.length,
      accuracy: rs.filter((r) => r.correct).length / rs.length,
      hfCompared: rs.filter((r) => r.hf).length,
      sameAsHf: rs.filter((r) => r.hf?.same).length,
    };
    if (task === 'grounding') t.meanIou = mean(rs.map((r) => r.iou ?? 0));
    const f = forcedTotals(rs);
    if (f) t.forced = { positions: f.positions, agree: f.agree };
    const hf = rs.map((r) => byId.get(r.id)).filter((i): i is EvalItem => i?.hfAnswer !== undefined);
    if (hf.length === rs.length) {
      const scored = hf.map((i) => scoreAnswer(i, i.hfAnswer!));
      t.hfAccuracy = scored.filter((s) => s.correct).length / scored.length;
      if (task === 'grounding') t.hfMeanIou = mean(scored.map((s) => s.iou ?? 0));
    }
    tasks.push(t);
  }
  const compared = results.filter((r) => r.hf);
  const same = compared.filter((r) => r.hf!.same).length;
  const forced = forcedTotals(results);
  return {
    tasks,
    overall: {
      ...(forced ? { forced } : {}),
      n: results.length,
      accuracy: results.length ? results.filter((r) => r.correct).length / results.length : NaN,
      hfCompared: compared.length,
      sameAsHf: same,
      sameAsHfShare: compared.length ? same / compared.length : NaN,
      differingAtNearTie: compared.filter((r) => r.hf!.nearTie).length,
    },
  };
}

/** Teacher-forced totals over the results that were forced, or undefined when none was. */
function forcedTotals(rs: readonly ItemResult[]): { positions: number; agree: number; itemsWithMiss: number } | undefined {
  const f = rs.filter((r) => r.forced).map((r) => r.forced!);
  if (!f.length) return undefined;
  return {
    positions: f.reduce((a, x) => a + x.positions, 0),
    agree: f.reduce((a, x) => a + x.agree, 0),
    itemsWithMiss: f.filter((x) => x.misses.length > 0).length,
  };
}
