import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluate, formatEvalReport, loadDataset } from '../src/eval/index.ts';
import { nativeAvailable } from '../src/kernels/native/index.ts';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import type { KvType } from '../src/kernels/kv.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const MODEL = `${ROOT}models/demo`;
const DATASET = `${ROOT}datasets/demo-heldout`;

async function assertSameAsHf(backend: 'ts' | 'native', perTask: number, kvType?: KvType): Promise<void> {
  const model = kvType ? await Qwen3VL.fromPretrained(MODEL, { backend, kvType }) : undefined;
  const report = await evaluate(MODEL, DATASET, { backend, perTask, model });
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

// HF's answers come from float32 arithmetic: with a float32 KV cache every answer must be HF's.
// The default f16 cache moves one item of the held-out set (a box digit at an HF top-2 margin of
// 3.6e-4), one of this slice.
test('the trained demo model answers a held-out slice with exactly HF transformers\' tokens (native backend, float32 KV cache)', {
  skip: nativeAvailable() ? false : 'the native addon is not built',
}, async () => {
  await assertSameAsHf('native', 10, 'f32');
});

test('the trained demo model answers one item of every task with HF\'s tokens on the TypeScript backend', async () => {
  await assertSameAsHf('ts', 1);
});

test('teacher forcing follows the answer: a same answer has no miss, a differing one misses first where it differs (native, q4)', {
  skip: nativeAvailable() ? false : 'the native addon is not built',
}, async () => {
  // q4 changes most grounding answers (box digits at small HF margins), so both kinds occur
  const report = await evaluate(MODEL, DATASET, { backend: 'native', quant: 'q4', tasks: ['grounding', 'ocr'], perTask: 8, teacherForced: true });
  const differing = report.items.filter((r) => !r.hf!.same);
  assert.ok(differing.length > 0 && differing.length < report.items.length, `${differing.length} of ${report.items.length} differ`);
  for (const r of report.items) {
    const f = r.forced!;
    const hfIds = loadDataset(DATASET).items.find((i) => i.id === r.id)!.hfTokenIds!;
    assert.equal(f.positions, hfIds.length, `${r.id}: every HF token is a position`);
    assert.equal(f.agree + f.misses.length, f.positions);
    // until the first difference both runs computed the same prefixes
    if (r.hf!.same) assert.deepEqual(f.misses, [], `${r.id}: same answer, no miss`);
    else assert.equal(f.misses[0], r.hf!.firstDiff, `${r.id}: the first miss is where the answers part`);
  }
  assert.ok(report.overall.forced!.agree < report.overall.forced!.positions);
});
