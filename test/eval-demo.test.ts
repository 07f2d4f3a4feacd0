import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluate, formatEvalReport, loadDataset } from '../src/eval/index.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const MODEL = `${ROOT}models/demo`;
const DATASET = `${ROOT}datasets/demo-heldout`;

test('the trained demo model answers a held-out slice with exactly HF transformers\' tokens (TypeScript backend)', async () => {
  const report = await evaluate(MODEL, DATASET, { backend: 'ts', perTask: 2 });
  const tasks = new Set(loadDataset(DATASET).items.map((i) => i.task));
  assert.equal(report.items.length, 2 * tasks.size, 'two items of every task');
  assert.equal(report.backend, 'ts');
  const differing = report.items.filter((r) => !r.hf?.same);
  assert.deepEqual(differing.map((r) => r.id), [], formatEvalReport(report));
  // Same tokens, same scores: qvl's accuracy on the slice is HF's.
  for (const t of report.tasks) {
    assert.equal(t.accuracy, t.hfAccuracy, `${t.task}: qvl and HF score alike`);
    assert.equal(t.meanIou, t.hfMeanIou, `${t.task}: same IoU`);
  }
});
