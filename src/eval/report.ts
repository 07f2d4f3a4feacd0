import type { EvalReport } from './score.ts';

const pct = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : `${(v * 100).toFixed(1)}%`);
const num = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(3));

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

/** A plain-text table: per task accuracy, grounding IoU, HF's own accuracy and agreement with HF. */
export function formatEvalReport(report: EvalReport): string {
  const o = report.overall;
  const forced = o.forced !== undefined;
  const rows: string[][] = [['task', 'n', 'accuracy', 'mean IoU', 'HF accuracy', 'HF mean IoU', 'same as HF', ...(forced ? ['HF token on top'] : [])]];
  const ratio = (f?: { positions: number; agree: number }) => (f ? `${f.agree}/${f.positions}` : '-');
  for (const t of report.tasks) {
    rows.push([
      t.task,
      String(t.n),
      pct(t.accuracy),
      t.meanIou === undefined ? '' : num(t.meanIou),
      pct(t.hfAccuracy),
      t.task === 'grounding' ? num(t.hfMeanIou) : '',
      t.hfCompared ? `${t.sameAsHf}/${t.hfCompared}` : '-',
      ...(forced ? [ratio(t.forced)] : []),
    ]);
  }
  rows.push(['all', String(o.n), pct(o.accuracy), '', '', '', o.hfCompared ? `${o.sameAsHf}/${o.hfCompared}` : '-', ...(forced ? [ratio(o.forced)] : [])]);
  const lines = [
    `model ${report.modelDir} · dataset ${report.datasetDir} · backend ${report.backend}${report.quant ? ` · weights ${report.quant}` : ''} · max ${report.maxNewTokens} new tokens · ${(report.ms / 1000).toFixed(1)} s`,
    '',
    table(rows),
  ];
  if (o.forced) {
    lines.push(
      '',
      `teacher-forced along HF's answers: HF's token on top at ${o.forced.agree} of ${o.forced.positions} positions; ` +
        `${o.forced.positions - o.forced.agree} elsewhere, in ${o.forced.itemsWithMiss} items`,
    );
  }
  const differing = report.items.filter((r) => r.hf && !r.hf.same);
  if (differing.length) {
    lines.push('', `answers that differ from HF: ${differing.length} (${o.differingAtNearTie} start where HF's top-2 margin was < 1e-3)`);
    for (const r of differing) {
      const m = r.hf!.hfMargin === undefined ? 'margin unknown' : `HF margin ${r.hf!.hfMargin.toExponential(2)}${r.hf!.nearTie ? ' (near tie)' : ''}`;
      lines.push(`  ${r.id} ${r.task}: token ${r.hf!.firstDiff}, ${m}: qvl ${JSON.stringify(r.answer)} vs HF ${JSON.stringify(r.hfAnswer ?? '')}`);
    }
  }
  return lines.join('\n');
}
