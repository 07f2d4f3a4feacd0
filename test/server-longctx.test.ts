import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO, startServeProcess } from './helpers/serve-process.ts';
import { skipReason } from './native-util.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const BIN = path.join(REPO, 'bin', 'qvl.mjs');

test('qvl serve --kv-type q8 --context N: logs the memory plan, reports both in /health, and N bounds a request', { skip: skipReason, timeout: 120_000 }, async () => {
  const s = await startServeProcess({ model: TINY, args: ['--kv-type', 'q8', '--context', '600', '--backend', 'native'] });
  try {
    assert.match(s.stderrTail(), /memory: context 600 tokens needs .* KV \(q8, /);
    const health = (await (await fetch(`${s.url}/health`)).json()) as Record<string, unknown>;
    assert.equal(health.kv_type, 'q8');
    assert.equal(health.context, 600);
    const ask = (text: string, max_tokens = 4) =>
      fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: TINY, messages: [{ role: 'user', content: text }], max_tokens, temperature: 0 }),
      });
    const ok = await ask('Hello there');
    assert.equal(ok.status, 200);
    const long = await ask('word '.repeat(700));
    assert.equal(long.status, 400);
    assert.equal(((await long.json()) as { error: { code: string } }).error.code, 'context_length_exceeded');
  } finally {
    await s.stop();
  }
});

test('qvl run refuses a context beyond the model\'s positions before loading, and suggests YaRN', () => {
  const r = spawnSync(process.execPath, [BIN, 'run', '-m', TINY, '--context', '600000', 'hi'], { encoding: 'utf8', cwd: REPO });
  assert.notEqual(r.status, 0, r.stderr);
  assert.match(r.stderr, /accepts 262,144 positions; a 600,000-token context needs YaRN \(--rope-scaling yarn --rope-factor 3\) \[CONTEXT_TOO_LONG\]/);
  const y = spawnSync(process.execPath, [BIN, 'run', '-m', TINY, '--rope-scaling', 'yarn', '--rope-factor', '3', '--context', '600000', '--max-tokens', '2', 'hi'], { encoding: 'utf8', cwd: REPO });
  assert.equal(y.status, 0, y.stderr);
  assert.match(y.stderr, /memory: context 600,000 tokens needs/);
  const bad = spawnSync(process.execPath, [BIN, 'run', '-m', TINY, '--rope-factor', '3', 'hi'], { encoding: 'utf8', cwd: REPO });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--rope-factor needs --rope-scaling yarn/);
});
