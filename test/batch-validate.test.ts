/**
 * Batch input lines are judged before anything is enqueued: each refusal names the line and the
 * field. No Redis needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveLimits } from '../src/server/limits.ts';
import { BatchValidator } from '../src/batch/validate.ts';
import { errorFileId, outputFileId, resultFile } from '../src/batch/format.ts';
import { seedFor } from '../src/batch/worker.ts';
import { progressBar } from '../src/cli/batch.ts';

const limits = resolveLimits({ media: { allowedLocalDirs: ['/srv/media'] } });

const line = (customId: string, body: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/chat/completions', body, ...extra });
const ask = (text: string, model = 'demo') => ({ model, messages: [{ role: 'user', content: text }] });
const image = (src: string) => ({ model: 'demo', messages: [{ role: 'user', content: [{ type: 'image', image: src }, { type: 'text', text: 'x' }] }] });

/** The refusal of the last of `lines` (the others must pass). */
function refusal(lines: string[], rules = { limits }): { message: string; line: unknown; param: unknown } {
  const v = new BatchValidator(rules);
  try {
    lines.forEach((l, i) => v.check(l, i + 1));
  } catch (e) {
    const err = e as Error & { detail: Record<string, unknown> };
    return { message: err.message, line: err.detail.line, param: err.detail.param };
  }
  assert.fail(`every line passed: ${lines.at(-1)}`);
}

test('good lines pass; blank lines are skipped but counted for line numbers', () => {
  const v = new BatchValidator({ limits });
  assert.equal(v.check(line('a', ask('hi')), 1)?.customId, 'a');
  assert.equal(v.check('   ', 2), undefined);
  const r = v.check(line('b', image('/srv/media/x.png')), 3);
  assert.deepEqual([r?.customId, r?.line, v.count, v.model], ['b', 3, 2, 'demo']);
});

test('each malformed line is refused with its number and field', () => {
  const ok = line('a', ask('hi'));
  const cases: [string, RegExp, string | null][] = [
    ['{"custom_id": "x", ', /^line 2: the line is not valid JSON/, null],
    ['[1, 2]', /^line 2: expected a JSON object/, null],
    [line('a', ask('again')), /^line 2: custom_id: "a" appears on an earlier line/, 'custom_id'],
    [line('', ask('x')), /^line 2: custom_id: a non-empty string is required/, 'custom_id'],
    [line('b', ask('x'), { method: 'GET' }), /^line 2: method: expected "POST", got "GET"/, 'method'],
    [line('b', ask('x'), { url: '/v1/embeddings' }), /^line 2: url: expected "\/v1\/chat\/completions"/, 'url'],
    [line('b', ask('x', 'other')), /^line 2: body.model: "other" differs from the batch's model "demo"/, 'body.model'],
    [line('b', { model: 'demo', messages: [] }), /^line 2: body: messages: messages is empty/, 'body.messages'],
    [line('b', { ...ask('x'), temperature: 7 }), /^line 2: body: temperature: /, 'body.temperature'],
    [line('b', { ...ask('x'), stream: true }), /^line 2: body: stream: a batch request cannot stream/, 'body.stream'],
    [line('b', { model: 'demo', messages: [{ role: 'user', content: [{ type: 'audio' }] }] }), /^line 2: body: messages\[0\]\.content\[0\]: unknown content part type "audio"/, 'body.messages[0].content[0]'],
    [line('b', image('img/0001.png')), /^line 2: body: messages\[0\]\.content\[0\]: img\/0001\.png: a local path in a batch must be absolute/, 'body.messages[0].content[0]'],
    [line('b', image('/etc/secret.png')), /^line 2: body: messages\[0\]\.content\[0\]: \/etc\/secret\.png: outside the folders local media may be read from/, 'body.messages[0].content[0]'],
    [line('b', image('file:///srv/other/a.png')), /outside the folders/, 'body.messages[0].content[0]'],
    [line('b', image('ftp://example.com/a.png')), /^line 2: body: messages\[0\]\.content\[0\]: .*unsupported URL scheme/, 'body.messages[0].content[0]'],
  ];
  for (const [bad, message, param] of cases) {
    const r = refusal([ok, bad]);
    assert.match(r.message, message, bad);
    assert.equal(r.line, 2, bad);
    assert.equal(r.param, param, bad);
  }
});

test('without an allowed folder no local file passes; URLs and data URIs do', () => {
  const none = { limits: resolveLimits({}) };
  assert.match(refusal([line('a', image('/srv/media/x.png'))], none).message, /local files are not readable here/);
  const v = new BatchValidator(none);
  v.check(line('a', image('https://example.com/cat.jpg')), 1);
  v.check(line('b', image('data:image/png;base64,iVBORw0KGgo=')), 2);
  assert.equal(v.count, 2);
});

test('a server names its models: a line naming another is refused', () => {
  const r = refusal([line('a', ask('x', 'gpt-4o'))], { limits, modelNames: ['demo'] } as never);
  assert.match(r.message, /^line 1: body: the model "gpt-4o" does not exist; this server serves "demo"/);
  assert.equal(r.param, 'body.model');
});

test('a line over the request size limit is refused before it is parsed', () => {
  const small = { limits: resolveLimits({ maxBodyBytes: 100 }) };
  assert.match(refusal([line('a', ask('x'.repeat(200)))], small).message, /^line 1: the line is over the limit of 100 bytes/);
});

test('result files map back to their batch; seeds are stable; the bar fills', () => {
  const id = 'batch_0123456789abcdef01234567';
  assert.deepEqual(resultFile(outputFileId(id)), { batchId: id, kind: 'output' });
  assert.deepEqual(resultFile(errorFileId(id)), { batchId: id, kind: 'errors' });
  assert.equal(resultFile('file-0123456789abcdef01234567'), undefined);
  assert.equal(seedFor('req-1'), seedFor('req-1'));
  assert.notEqual(seedFor('req-1'), seedFor('req-2'));
  assert.equal(progressBar(1, 4, 8), '[██░░░░░░]  25%');
  assert.equal(progressBar(4, 4, 8), '[████████] 100%');
});
