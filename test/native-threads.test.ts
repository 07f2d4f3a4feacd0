/**
 * The native addon's thread pools belong to the JS thread (main or worker) that loaded the addon,
 * and are joined when that thread's Node environment ends: Node unloads the addon with the last
 * environment that used it, and a pool thread still running then crashed the process (exit 139
 * after `qvl chat` on the native backend with two threads).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { skipReason } from './native-util.ts';

const ROOT = path.join(import.meta.dirname, '..');
const require = createRequire(import.meta.url);
const addonFile = (): string => (require('node-gyp-build') as { resolve(dir: string): string }).resolve(ROOT);

test('workers that load the addon and end right after a parallel kernel: the process exits cleanly', { skip: skipReason }, () => {
  // Each worker ends while its pool threads are still spinning after the last job; before pools
  // were joined at environment teardown, most runs of this script died with SIGSEGV.
  const script = `
    const { Worker } = require('node:worker_threads');
    const body = \`
      const a = require(require('node:worker_threads').workerData);
      a.setThreads(2);
      const x = new Float32Array(1 << 16).fill(1), y = new Float32Array(1 << 16);
      for (let i = 0; i < 3; i++) a.siluMul(x, x, y);
    \`;
    (async () => {
      for (let i = 0; i < 40; i++) {
        const w = new Worker(body, { eval: true, workerData: process.argv[1] });
        await new Promise((res, rej) => w.on('exit', res).on('error', rej));
      }
      console.log('40 workers done');
    })();`;
  const r = spawnSync(process.execPath, ['-e', script, addonFile()], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /40 workers done/);
});

test("a worker's thread count and instruction set are its own; the main thread's stay as they were", { skip: skipReason }, async () => {
  const addon = require(addonFile()) as { setThreads(n: number): number; setIsa(isa: string): string; info(): { threads: number; isa: string } };
  addon.setThreads(2);
  const isa = addon.info().isa;
  const inWorker = await new Promise<{ threads: number; isa: string }>((resolve, reject) => {
    const w = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const a = require(workerData);
       a.setThreads(1);
       a.setIsa('scalar');
       parentPort.postMessage(a.info());`,
      { eval: true, workerData: addonFile() },
    );
    w.once('message', resolve).once('error', reject);
  });
  assert.deepEqual(inWorker, { ...inWorker, threads: 1, isa: 'scalar' });
  assert.equal(addon.info().threads, 2);
  assert.equal(addon.info().isa, isa);
});

test('qvl chat on the native backend with two threads, piped input: answers and exits 0', { skip: skipReason }, () => {
  const qvl = path.join(ROOT, 'bin', 'qvl.mjs');
  const image = path.join(ROOT, 'models', 'demo', 'example.png');
  // with /exit, and with the input simply ending (Ctrl-D)
  for (const input of [`/image ${image}\nWhat colour is the shape?\n/exit\n`, `/image ${image}\nWhat colour is the shape?\n`]) {
    const r = spawnSync(process.execPath, [qvl, 'chat', '--backend', 'native', '--threads', '2', '--temp', '0'], { input, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Red\./);
  }
});
