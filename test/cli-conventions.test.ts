/**
 * The conventions a newcomer from llama.cpp or ollama expects: `-t` is threads, `--temp` sets the
 * temperature, `--version`, one meaning per short flag, a mistyped local path is an error and
 * never a download, `exit`/`quit` end a chat, `run --pdf`, and commands that say what they are doing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { locateModel } from '../src/api/model-location.ts';
import { isQvlError } from '../src/errors.ts';
import { ChatSession } from '../src/cli/chat.ts';
import { evalProgress } from '../src/cli/eval.ts';
import { addGenerationFlags, generationOptions, type GenerationFlags } from '../src/cli/options.ts';
import { createProgram } from '../src/cli/program.ts';
import { skipReason as nativeSkip } from './native-util.ts';

const ROOT = path.join(import.meta.dirname, '..');
const QVL = path.join(ROOT, 'bin', 'qvl.mjs');
const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const PDF = path.join(import.meta.dirname, 'fixtures', 'media', 'two_pages.pdf');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
// a hub that refuses every connection: a request that reached it would fail differently
const NO_HUB = { HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_OFFLINE: '' };

function qvl(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [QVL, ...args], { input: opts.input, cwd: opts.cwd ?? ROOT, encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--version and -V print the package version', () => {
  for (const flag of ['--version', '-V']) {
    const r = qvl([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), VERSION);
  }
});

test('a short flag means the same in every command; -t is --threads and -q is --quant', () => {
  const meaning = new Map<string, Set<string>>();
  const walk = (cmd: Command, where: string) => {
    for (const o of cmd.options) {
      if (!o.short) continue;
      if (!meaning.has(o.short)) meaning.set(o.short, new Set());
      meaning.get(o.short)!.add(`${o.long}`);
    }
    for (const sub of cmd.commands) walk(sub, `${where} ${sub.name()}`);
  };
  const program = createProgram();
  walk(program, 'qvl');
  const clashes = [...meaning].filter(([, longs]) => longs.size > 1).map(([s, longs]) => `${s}: ${[...longs].join(', ')}`);
  assert.deepEqual(clashes, []);
  assert.deepEqual([...meaning.get('-t')!], ['--threads']);
  assert.deepEqual([...meaning.get('-q')!], ['--quant']);
  const withThreads = program.commands.filter((c) => c.options.some((o) => o.long === '--threads')).map((c) => c.name());
  for (const name of ['run', 'chat', 'serve', 'eval', 'parity']) assert.ok(withThreads.includes(name), `${name} has no --threads`);
});

test('--temp and --temperature set the same option', () => {
  const parse = (args: string[]) => {
    const cmd = addGenerationFlags(new Command().exitOverride(), 16);
    cmd.parse(args, { from: 'user' });
    return generationOptions(cmd.opts<GenerationFlags>()).temperature;
  };
  assert.equal(parse(['--temp', '0.3']), 0.3);
  assert.equal(parse(['--temperature', '0']), 0);
  assert.equal(parse([]), undefined);
  assert.throws(() => parse(['-t', '0']), /unknown option '-t'/);
});

test('local-looking model paths are folders or errors, never hub ids', () => {
  const cwd = process.cwd();
  process.chdir(ROOT);
  try {
    const missing = ['./models/dem', 'models/dem', path.join(ROOT, 'no-such-model'), '~/no-such-model', 'a/b/c', 'models\\dem'];
    for (const m of missing) assert.throws(() => locateModel(m), (e: unknown) => isQvlError(e, 'FILE_NOT_FOUND') && /no such folder/.test(e.message), m);
    assert.throws(() => locateModel('demo'), (e: unknown) => isQvlError(e, 'FILE_NOT_FOUND') && /not a hub id/.test(e.message));
    assert.throws(() => locateModel('models/demo/config.json'), (e: unknown) => isQvlError(e, 'FILE_NOT_FOUND') && /is a file/.test(e.message));
    assert.deepEqual(locateModel('models/demo'), { kind: 'local', dir: path.join(ROOT, 'models', 'demo') });
    assert.deepEqual(locateModel('Qwen/Qwen3-VL-4B-Instruct'), { kind: 'hub', id: 'Qwen/Qwen3-VL-4B-Instruct' });
    assert.deepEqual(locateModel('hf:models/dem'), { kind: 'hub', id: 'hf:models/dem' });
    assert.deepEqual(locateModel('modelscope:Qwen/Qwen3-VL-2B-Instruct'), { kind: 'hub', id: 'modelscope:Qwen/Qwen3-VL-2B-Instruct' });
  } finally {
    process.chdir(cwd);
  }
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'qvl-home-'));
  const prev = process.env.HOME;
  process.env.HOME = home;
  try {
    fs.mkdirSync(path.join(home, 'm'));
    assert.deepEqual(locateModel('~/m'), { kind: 'local', dir: path.join(home, 'm') });
  } finally {
    process.env.HOME = prev;
  }
});

test('qvl run -m models/dem: "no such folder", exit 2, and no request to the hub', () => {
  const r = qvl(['run', '-m', 'models/dem', 'hi'], { env: NO_HUB });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /no such folder: models\/dem/);
  assert.doesNotMatch(r.stderr, /127\.0\.0\.1|ECONNREFUSED|fetch/i);
});

test('chat: "exit" and "quit" typed alone end the chat instead of going to the model', () => {
  for (const word of ['exit', 'quit', 'QUIT', '  exit ']) assert.ok(ChatSession.isExit(word), word);
  for (const line of ['exit now', 'please quit', '/image x']) assert.ok(!ChatSession.isExit(line), line);
  const r = qvl(['chat', '-m', TINY, '--backend', 'ts', '-n', '4'], { input: 'quit\nDescribe this image.\n' });
  assert.equal(r.code, 0, r.stderr);
  // only the first prompt was printed: nothing was generated and the second line was never read
  assert.equal(r.stdout.trim(), '>');
});

test('qvl run --pdf: the pages are images of the prompt (the same token count as qvl tokens), --stats names the backend', () => {
  const tokens = qvl(['tokens', '-m', TINY, '--pdf', PDF, '--json', 'Summarize.']);
  assert.equal(tokens.code, 0, tokens.stderr);
  const want = (JSON.parse(tokens.stdout) as { promptTokens: number }).promptTokens;
  const r = qvl(['run', '-m', TINY, '--backend', 'ts', '-n', '2', '--temp', '0', '--pdf', PDF, '--stats', 'Summarize.']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`prompt ${want} tokens`));
  assert.match(r.stderr, /\(ts backend\)/);
});

test('--stats on the native backend names its instruction set and threads', { skip: nativeSkip }, () => {
  const r = qvl(['run', '--backend', 'native', '-t', '2', '--temp', '0', '-i', path.join(ROOT, 'models', 'demo', 'example.png'), '--stats', 'What colour is the shape?']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Red\./);
  assert.match(r.stderr, /\(native backend, (avx512vnni\+avx2(?:vnni)?-gemv|avx512vnni|avx512|avx2vnni|avx2|scalar), 2 threads\)/);
});

test('qvl eval reports progress on stderr while it runs, the report on stdout', () => {
  const r = qvl(['eval', 'models/demo', 'datasets/demo-heldout', '--limit', '3', '--backend', 'auto']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => /^evaluating /.test(l));
  assert.deepEqual(lines.map((l) => /(\d+\/\d+) items/.exec(l)?.[1]), ['1/3', '2/3', '3/3'], r.stderr);
  assert.match(lines[0]!, /models\/demo \((native|ts) backend/);
  assert.match(r.stdout, /colour/);
  // a long run logs a line per tenth, not per item
  const seen: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => (seen.push(s), true)) as typeof process.stderr.write;
  try {
    const progress = evalProgress('x', false);
    for (let i = 1; i <= 200; i++) progress(i, 200);
  } finally {
    process.stderr.write = write;
  }
  assert.equal(seen.length, 10);
  assert.match(seen.at(-1)!, /200\/200 items/);
});

test('--quant on a float checkpoint prints one hint about qvl quantize; without --quant there is none', () => {
  const r = qvl(['run', '-m', 'models/demo', '--quant', 'q8', '--temp', '0', '--max-tokens', '2', 'Hi']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((r.stderr.match(/hint: --quant q8 quantizes at every load; `qvl quantize \S*models\/demo \S*models\/demo-q8 --quant q8`/g) ?? []).length, 1, r.stderr);
  const plain = qvl(['run', '-m', 'models/demo', '--temp', '0', '--max-tokens', '2', 'Hi']);
  assert.doesNotMatch(plain.stderr, /hint:/);
});
