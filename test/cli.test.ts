/**
 * The qvl commands this part adds (chat, serve, download, tokens, run --draw), run as a user
 * runs them: child processes of bin/qvl.mjs on the tiny model.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ChatSession } from '../src/cli/chat.ts';
import { sizeArg } from '../src/cli/limit-flags.ts';
import { startFakeHub } from './hub-fake-server.ts';

const ROOT = path.join(import.meta.dirname, '..');
const QVL = path.join(ROOT, 'bin', 'qvl.mjs');
const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const IMG_B = path.join(TINY, 'image_b.png');
const FIXTURE_B = JSON.parse(readFileSync(path.join(TINY, 'case_b_image.json'), 'utf8')) as { generated_text: string; seq_len: number };

function qvl(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, [QVL, ...args], { input: opts.input, encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('every command explains itself in --help', () => {
  const top = qvl(['--help']);
  assert.equal(top.code, 0);
  for (const cmd of ['run', 'chat', 'serve', 'download', 'tokens']) assert.match(top.stdout, new RegExp(`\\n  ${cmd} `), cmd);
  const expect: Record<string, RegExp[]> = {
    chat: [/\/image <path\|url>/, /\/video/, /\/clear/, /\/exit/, /--model/],
    serve: [/--port/, /--served-model-name/, /--max-queue/, /--allowed-local-media-path/, /--allow-private-urls/, /--max-images/, /--max-body/, /--host/],
    download: [/--revision/, /Qwen\/Qwen3-VL/],
    tokens: [/--image/, /--video/, /--pdf/, /--max-pixels/],
    run: [/--draw <file>/, /Hugging\s+Face\s+repo\s+id/],
  };
  for (const [cmd, patterns] of Object.entries(expect)) {
    const h = qvl([cmd, '--help']);
    assert.equal(h.code, 0, cmd);
    for (const p of patterns) assert.match(h.stdout, p, `${cmd}: ${p}`);
  }
});

test('qvl tokens: the prompt length HF computed for the same request, without running the model', () => {
  const r = qvl(['tokens', '-m', TINY, '-i', IMG_B, '--json', 'Describe this image.']);
  assert.equal(r.code, 0, r.stderr);
  const cost = JSON.parse(r.stdout);
  assert.equal(cost.promptTokens, FIXTURE_B.seq_len);
  assert.deepEqual(cost.items[0].grid, [1, 14, 20]);
  const text = qvl(['tokens', '-m', TINY, '-i', IMG_B, '--pdf', path.join(import.meta.dirname, 'fixtures', 'media', 'two_pages.pdf'), 'x']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /96x64 → 320x224, grid 1x14x20: 70 tokens/);
  assert.match(text.stdout, /PDF page 2/);
  const missing = qvl(['tokens', '-m', TINY, '-i', '/no/such/image.png', 'x']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /\/no\/such\/image\.png/);
});

test('qvl chat: attach with /image, answers stream, the conversation goes on; the answer is HF\'s', () => {
  const input = ['/help', `/image ${IMG_B}`, 'Describe this image.', '/image /no/such/file.png', 'And now?', '/clear', '/exit', ''].join('\n');
  const r = qvl(['chat', '-m', TINY, '--backend', 'ts', '--temp', '0', '-n', '8'], { input });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\/video <path\|url\|folder> \[fps\]/);
  assert.match(r.stdout, /attached image/);
  // the fixture's greedy answer for exactly this turn
  assert.ok(r.stdout.includes(FIXTURE_B.generated_text), r.stdout);
  assert.match(r.stdout, /no such file: \/no\/such\/file\.png/);
  assert.match(r.stdout, /conversation cleared/);
});

test('chat session: history, attachments and commands', () => {
  const s = new ChatSession('Be brief.');
  assert.match(String(s.command(`/image ${IMG_B}`)), /attached image/);
  assert.match(String(s.command('/video /no/such/dir 2')), /no such file or folder/);
  const first = s.turn('What is it?');
  assert.deepEqual(first.map((m) => m.role), ['system', 'user']);
  assert.deepEqual((first[1]!.content as object[]).length, 2);
  s.commit(first[1]!, 'A square.');
  assert.deepEqual(s.attachments, []);
  const second = s.turn('Sure?');
  assert.deepEqual(second.map((m) => m.role), ['system', 'user', 'assistant', 'user']);
  assert.equal(second[3]!.content, 'Sure?');
  assert.equal(s.command('/exit'), 'exit');
  assert.match(String(s.command('/nope')), /unknown command/);
  s.command('/clear');
  assert.deepEqual(s.messages, []);
});

test('qvl run --draw: refuses without an image; says so when the answer has no boxes', () => {
  const none = qvl(['run', '-m', TINY, '--backend', 'ts', '--draw', '/tmp/x.png', 'hi']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /--draw needs an image/);
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'qvl-cli-')), 'boxes.png');
  const r = qvl(['run', '-m', TINY, '--backend', 'ts', '-n', '4', '-i', IMG_B, '--draw', out, 'Find the square.']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /no boxes or points/);
  assert.equal(existsSync(out), false);
});

test('qvl download: into the Hugging Face cache layout with the hub at HF_ENDPOINT; prints the folder', async () => {
  const files = {
    'config.json': { data: readFileSync(path.join(TINY, 'config.json')), lfs: false },
    'model.safetensors': { data: Buffer.alloc(4096, 7), lfs: true },
    'README.md': { data: Buffer.from('# readme'), lfs: false },
  };
  const hub = await startFakeHub({ repoId: 'qvl-test/Tiny', commit: 'c'.repeat(40), files });
  try {
    const cache = mkdtempSync(path.join(tmpdir(), 'qvl-dl-'));
    const env = { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cache, HF_TOKEN: '' };
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [QVL, 'download', 'qvl-test/Tiny'], { env: { ...process.env, ...env } });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    assert.equal(r.code, 0, r.stderr);
    const dir = r.stdout.trim();
    assert.equal(dir, path.join(cache, 'models--qvl-test--Tiny', 'snapshots', 'c'.repeat(40)));
    assert.deepEqual(readFileSync(path.join(dir, 'model.safetensors')), files['model.safetensors'].data);
    assert.equal(existsSync(path.join(dir, 'README.md')), false);
    assert.match(r.stderr, /downloaded 2 files/);
  } finally {
    await hub.close();
  }
});

test('qvl serve: listens, loads, answers, stops on SIGTERM', async () => {
  const p = spawn(process.execPath, [QVL, 'serve', '-m', TINY, '--backend', 'ts', '--port', '0', '--served-model-name', 'tiny', '--max-queue', '2']);
  let stderr = '';
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening" line: ${stderr}`)), 60_000);
      p.stderr.on('data', (d) => {
        stderr += d;
        const m = /listening on (http:\/\/[^\s]+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    for (let i = 0; ; i++) {
      const h = await fetch(`${url}/health`);
      if (h.status === 200) break;
      assert.equal(h.status, 503);
      assert.ok(i < 600, 'the model did not load');
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image', image: `data:image/png;base64,${readFileSync(IMG_B).toString('base64')}` }, { type: 'text', text: 'Describe this image.' }] }], max_tokens: 8, temperature: 0 }),
    });
    const body = (await r.json()) as { choices: { message: { content: string } }[] };
    assert.equal(body.choices[0]!.message.content, FIXTURE_B.generated_text);
    // local files are refused by default
    const local = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: [{ type: 'image', image: IMG_B }] }] }),
    });
    assert.equal(local.status, 400);
  } finally {
    p.kill('SIGTERM');
    const code = await new Promise((r) => p.on('close', r));
    assert.equal(code, 0, stderr);
  }
});

test('size options read like people write them', () => {
  assert.equal(sizeArg('64mb'), 64 * 1024 * 1024);
  assert.equal(sizeArg('512k'), 512 * 1024);
  assert.equal(sizeArg('1000'), 1000);
  assert.throws(() => sizeArg('lots'), /expected a size/);
  const bad = qvl(['serve', '--max-body', 'lots']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /expected a size such as 64mb/);
});
