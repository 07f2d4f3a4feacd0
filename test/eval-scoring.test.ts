import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { isQvlError } from '../src/errors.ts';
import { teacherForcing, type ForcedAgreement } from '../src/eval/teacher-forced.ts';
import {
  answerBoxes,
  compareWithHf,
  evaluate,
  formatEvalReport,
  groundingIou,
  iou,
  loadDataset,
  normalizeAnswer,
  parseItem,
  resolveMedia,
  scoreItem,
  selectItems,
  summarize,
  type EvalItem,
  type EvalReport,
} from '../src/eval/index.ts';

test('normalization forgives case, spacing and trailing periods only', () => {
  assert.equal(normalizeAnswer('  The  first\nimage. '), 'the first image');
  assert.equal(normalizeAnswer('Red.'), normalizeAnswer('red'));
  assert.equal(normalizeAnswer('At 2.5 seconds.'), 'at 2.5 seconds');
  assert.equal(normalizeAnswer('3...'), '3');
  assert.notEqual(normalizeAnswer('3'), normalizeAnswer('three'));
  assert.notEqual(normalizeAnswer('At 2.2 seconds.'), normalizeAnswer('At 2.3 seconds.'));
});

test('IoU of boxes: identity, disjoint, half overlap, containment', () => {
  assert.equal(iou([0, 0, 10, 10], [0, 0, 10, 10]), 1);
  assert.equal(iou([0, 0, 10, 10], [20, 20, 30, 30]), 0);
  assert.equal(iou([0, 0, 10, 10], [10, 0, 20, 10]), 0, 'touching edges do not overlap');
  // 50 shared of 150 covered
  assert.equal(iou([0, 0, 10, 10], [5, 0, 15, 10]), 1 / 3);
  // a 5x5 box inside a 10x10 one
  assert.equal(iou([0, 0, 10, 10], [2, 2, 7, 7]), 0.25);
  assert.equal(iou([3, 3, 3, 3], [3, 3, 3, 3]), 0, 'empty boxes have no IoU');
});

test('grounding answers: fenced JSON, bare JSON with prose, nothing parseable', () => {
  const fenced = '```json\n[\n\t{"bbox_2d": [100, 200, 300, 400], "label": "red circle"}\n]\n```';
  assert.deepEqual(answerBoxes(fenced), [[100, 200, 300, 400]]);
  assert.equal(groundingIou(fenced, [[100, 200, 300, 400]]), 1);
  assert.deepEqual(answerBoxes('It is here: [{"bbox_2d": [300, 400, 100, 200]}] I think.'), [[100, 200, 300, 400]], 'corners are put in order');
  assert.equal(groundingIou('no idea', [[0, 0, 10, 10]]), 0);
  assert.equal(groundingIou('```json\n[{"bbox_2d": [1, 2, 3]}]\n```', [[0, 0, 10, 10]]), 0, 'three numbers are no box');
  // only the first box is scored
  assert.equal(groundingIou('[{"bbox_2d": [500, 500, 600, 600]}, {"bbox_2d": [0, 0, 10, 10]}]', [[0, 0, 10, 10]]), 0);
});

test('comparison with HF ids: equal, first difference, near tie, end-of-sequence ignored', () => {
  assert.deepEqual(compareWithHf([1, 2, 3], [1, 2, 3, 151645], [9, 9, 9, 9]), { same: true });
  assert.deepEqual(compareWithHf([1, 5, 3], [1, 2, 3, 151645], [9, 0.0004, 9, 9]), { same: false, firstDiff: 1, hfMargin: 0.0004, nearTie: true });
  assert.deepEqual(compareWithHf([1, 2], [1, 2, 3, 151645], [9, 9, 2, 9]), { same: false, firstDiff: 2, hfMargin: 2, nearTie: false });
  // qvl went on where HF stopped: the difference is HF's end-of-sequence step
  assert.deepEqual(compareWithHf([1, 2, 7], [1, 2, 151645], [9, 9, 0.5]), { same: false, firstDiff: 2, hfMargin: 0.5, nearTie: false });
  assert.deepEqual(compareWithHf([4], [1]), { same: false, firstDiff: 0 }, 'no margins recorded: no near-tie verdict');
});

const item = (o: Partial<EvalItem> & { id: string; task: string }): EvalItem => ({
  messages: [{ role: 'user', content: 'q' }],
  expected: 'Red.',
  ...o,
});

test('item scores and per-task summary, with HF\'s own accuracy beside qvl\'s', () => {
  const items = [
    item({ id: 'a', task: 'colour', hfAnswer: 'Red.', hfTokenIds: [6033, 13, 151645] }),
    item({ id: 'b', task: 'colour', hfAnswer: 'Blue.', hfTokenIds: [10331, 13, 151645] }),
    item({ id: 'c', task: 'grounding', expected: 'x', expectedBoxes: [[0, 0, 100, 100]], hfAnswer: '[{"bbox_2d": [0, 0, 100, 50]}]', hfTokenIds: [1], hfTop2Margin: [0.0001] }),
  ];
  const results = [
    scoreItem(items[0], 'red', [6033, 13]),
    scoreItem(items[1], 'Blue.', [10331, 13]),
    scoreItem(items[2], '[{"bbox_2d": [0, 0, 100, 100]}]', [2]),
  ];
  assert.deepEqual(results.map((r) => r.correct), [true, false, true]);
  assert.equal(results[2].iou, 1);
  const { tasks, overall } = summarize(results, items);
  assert.deepEqual(tasks.map((t) => [t.task, t.n, t.accuracy, t.hfAccuracy, t.sameAsHf, t.hfCompared]), [
    ['colour', 2, 0.5, 0.5, 2, 2],
    ['grounding', 1, 1, 1, 0, 1],
  ]);
  assert.equal(tasks[1].meanIou, 1);
  assert.equal(tasks[1].hfMeanIou, 0.5);
  assert.deepEqual(overall, { n: 3, accuracy: 2 / 3, hfCompared: 3, sameAsHf: 2, sameAsHfShare: 2 / 3, differingAtNearTie: 1 });

  const report: EvalReport = { modelDir: 'm', datasetDir: 'd', backend: 'ts', maxNewTokens: 48, items: results, tasks, overall, ms: 1234 };
  const text = formatEvalReport(report);
  assert.match(text, /^colour\s+2\s+50\.0%\s+50\.0%\s+2\/2$/m);
  assert.match(text, /^grounding\s+1\s+100\.0%\s+1\.000\s+100\.0%\s+0\.500\s+0\/1$/m);
  assert.match(text, /^all\s+3\s+66\.7%\s+2\/3$/m);
  assert.match(text, /answers that differ from HF: 1 \(1 start where HF's top-2 margin was < 1e-3\)/);
  assert.match(text, /c grounding: token 0, HF margin 1\.00e-4 \(near tie\)/);
});

test('teacher forcing counts the positions where the top logit is HF\'s token, then leaves only that token', () => {
  fc.assert(
    fc.property(fc.array(fc.array(fc.integer({ min: -50, max: 50 }), { minLength: 6, maxLength: 6 }), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(5), { minLength: 8, maxLength: 8 }), (steps, hf) => {
      const rec: ForcedAgreement = { positions: 0, agree: 0, misses: [] };
      const force = teacherForcing(hf, rec);
      const misses: number[] = [];
      steps.forEach((values, pos) => {
        const logits = Float32Array.from(values);
        // the first of the largest values, as greedy decoding picks
        const top = values.indexOf(Math.max(...values));
        if (top !== hf[pos]) misses.push(pos);
        force(logits, hf.slice(0, pos));
        assert.equal(logits[hf[pos]], values[hf[pos]], 'HF\'s token keeps its logit');
        assert.ok(logits.every((v, t) => t === hf[pos] || v === -Infinity), 'every other token is ruled out');
      });
      assert.deepEqual(rec, { positions: steps.length, agree: steps.length - misses.length, misses });
    }),
  );
  // either end-of-sequence id on top agrees with HF's; past HF's answer nothing is counted
  const rec: ForcedAgreement = { positions: 0, agree: 0, misses: [] };
  const force = teacherForcing([151645], rec);
  const logits = new Float32Array(151936);
  logits[151643] = 3;
  logits[151645] = 2;
  force(logits, []);
  force(new Float32Array(151936), [151645]);
  assert.deepEqual(rec, { positions: 1, agree: 1, misses: [] });
  // a non-finite logit at HF's token still leaves it the only choice
  const nan = Float32Array.of(1, Number.NaN, 0);
  teacherForcing([1], rec)(nan, []);
  assert.deepEqual(Array.from(nan), [-Infinity, 0, -Infinity]);
});

test('the report shows teacher-forced agreement per task and in all when a run forced', () => {
  const items = [item({ id: 'a', task: 'colour', hfTokenIds: [6033, 13, 151645] }), item({ id: 'b', task: 'count', hfTokenIds: [18, 151645] })];
  const results = [scoreItem(items[0], 'red', [6033, 13]), scoreItem(items[1], '4', [19])];
  results[0].forced = { positions: 3, agree: 3, misses: [] };
  results[1].forced = { positions: 2, agree: 1, misses: [0] };
  const { tasks, overall } = summarize(results, items);
  assert.deepEqual(tasks.map((t) => t.forced), [{ positions: 3, agree: 3 }, { positions: 2, agree: 1 }]);
  assert.deepEqual(overall.forced, { positions: 5, agree: 4, itemsWithMiss: 1 });
  const text = formatEvalReport({ modelDir: 'm', datasetDir: 'd', backend: 'ts', maxNewTokens: 48, items: results, tasks, overall, ms: 1 });
  assert.match(text, /^count\s+1\s+0\.0%\s+-\s+0\/1\s+1\/2$/m);
  assert.match(text, /^all\s+2\s+50\.0%\s+1\/2\s+4\/5$/m);
  assert.match(text, /HF's token on top at 4 of 5 positions; 1 elsewhere, in 1 items/);
});

test('item selection: per task, limit, tasks and ids, in file order', () => {
  const items = ['colour', 'colour', 'shape', 'colour', 'shape', 'count'].map((task, i) => item({ id: String(i), task }));
  assert.deepEqual(selectItems(items, { perTask: 1 }).map((i) => i.id), ['0', '2', '5']);
  assert.deepEqual(selectItems(items, { perTask: 2, limit: 3 }).map((i) => i.id), ['0', '1', '2']);
  assert.deepEqual(selectItems(items, { tasks: ['shape'] }).map((i) => i.id), ['2', '4']);
  assert.deepEqual(selectItems(items, { ids: ['4', '1'] }).map((i) => i.id), ['1', '4']);
  assert.throws(() => selectItems(items, { tasks: ['ocr'] }), (e: unknown) => isQvlError(e, 'OPTION_INVALID') && /no task "ocr"/.test(e.message));
  assert.throws(() => selectItems(items, { ids: ['9'] }), (e: unknown) => isQvlError(e, 'OPTION_INVALID') && /no item "9"/.test(e.message));
  assert.throws(() => selectItems(items, { limit: 0 }), (e: unknown) => isQvlError(e, 'OPTION_INVALID') && /limit/.test(e.message));
});

test('media paths become absolute against the dataset folder; URLs stay', () => {
  const msgs = resolveMedia('/data/set', [
    {
      role: 'user',
      content: [
        { type: 'image', image: 'img/1.png' },
        { type: 'image', image: 'https://example.com/a.png' },
        { type: 'video', video: ['vid/1/f0.png', '/abs/f1.png'], fps: 2 },
        { type: 'text', text: 'img/1.png' },
      ],
    },
  ]);
  assert.deepEqual(msgs, [
    {
      role: 'user',
      content: [
        { type: 'image', image: '/data/set/img/1.png' },
        { type: 'image', image: 'https://example.com/a.png' },
        { type: 'video', video: ['/data/set/vid/1/f0.png', '/abs/f1.png'], fps: 2 },
        { type: 'text', text: 'img/1.png' },
      ],
    },
  ]);
});

test('bad dataset lines are refused with the file, line and field named', async () => {
  const bad = (line: string, re: RegExp) =>
    assert.throws(() => parseItem(line, 'items.jsonl', 7), (e: unknown) => isQvlError(e, 'MESSAGE_INVALID') && re.test(e.message) && e.message.startsWith('items.jsonl:7:'));
  bad('{"id": "1", "task": "colour"', /not valid JSON/);
  bad('[1]', /JSON object/);
  bad('{"id": "1", "task": "colour", "messages": [{}]}', /"expected"/);
  bad('{"id": "1", "task": "colour", "expected": "x", "messages": []}', /"messages"/);
  bad('{"id": "1", "task": "grounding", "expected": "x", "messages": [{}]}', /needs "expected_boxes"/);
  bad('{"id": "1", "task": "grounding", "expected": "x", "messages": [{}], "expected_boxes": [[1, 2, 3]]}', /expected_boxes/);
  bad('{"id": "1", "task": "colour", "expected": "x", "messages": [{}], "hf_top2_margin": ["a"]}', /hf_top2_margin/);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qvl-eval-'));
  try {
    assert.throws(() => loadDataset(dir), (e: unknown) => isQvlError(e, 'FILE_NOT_FOUND') && /items\.jsonl/.test(e.message));
    const line = '{"id": "1", "task": "colour", "expected": "x", "messages": [{}]}';
    fs.writeFileSync(path.join(dir, 'items.jsonl'), `${line}\n${line}\n`);
    assert.throws(() => loadDataset(dir), (e: unknown) => isQvlError(e, 'MESSAGE_INVALID') && /:2: duplicate item id "1"/.test(e.message));
    fs.writeFileSync(path.join(dir, 'items.jsonl'), `${line}\n`);
    fs.writeFileSync(path.join(dir, 'dataset.json'), '{"max_new_tokens": -1}');
    assert.throws(() => loadDataset(dir), (e: unknown) => isQvlError(e, 'MESSAGE_INVALID') && /max_new_tokens/.test(e.message));
    fs.writeFileSync(path.join(dir, 'dataset.json'), '{"max_new_tokens": 12}');
    const ds = loadDataset(dir);
    assert.equal(ds.items.length, 1);
    assert.equal(ds.meta.maxNewTokens, 12);
    // teacher forcing needs HF's tokens: refused before any model is loaded
    await assert.rejects(
      evaluate(path.join(dir, 'no-model'), dir, { teacherForced: true }),
      (e: unknown) => isQvlError(e, 'OPTION_INVALID') && /none of the 1 selected items has hf_token_ids/.test(e.message),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
