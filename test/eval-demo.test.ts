import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluate, formatEvalReport, loadDataset } from '../src/eval/index.ts';
import { nativeAvailable } from '../src/kernels/native/index.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const MODEL = `${ROOT}models/demo`;
const DATASET = `${ROOT}datasets/demo-heldout`;

async function assertSameAsHf(backend: 'ts' | 'native', perTask: number): Promise<void> {
  const report = await evaluate(MODEL, DATASET, { backend, perTask });
  const tasks = new Set(loadDataset(DATASET).items.map((i) => i.task));
  assert.equal(report.items.length, perTask * tasks.size, `${perTask} items of every task`);
  assert.equal(report.backend, backend);
  const differing = report.items.filter((r) => !r.hf?.same);
  assert.deepEqual(differing.map((r) => r.id), [], formatEvalReport(report));
  // Same tokens, same scores: qvl's accuracy on the slice is HF's.
  for (const t of report.tasks) {
    assert.equal(t.accuracy, t.hfAccuracy, `${t.task}: qvl and HF score alike`);
    assert.equal(t.meanIou, t.hfMeanIou, `${t.task}: same IoU`);
  }
}

test('the trained demo model answers a held-out slice with exactly HF transformers\' tokens (native backend)', {
  skip: nativeAvailable() ? false : 'the native addon is not built',
}, async () => {
  await assertSameAsHf('native', 10);
});

test('the trained demo model answers one item of every task with HF\'s tokens on the TypeScript backend', async () => {
  await assertSameAsHf('ts', 1);
});
