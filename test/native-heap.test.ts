/**
 * Freed large buffers leave the process (native/heap.cc): with the addon loaded, 4 MiB
 * ArrayBuffers interleaved with smaller long-lived ones are unmapped when collected, instead of
 * staying resident in glibc's arenas (the threshold it raises after the first large free). Runs
 * in a child process, so that its resident size is not the test runner's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { locateAddon } from '../src/kernels/native/addon.ts';
import { skipReason } from './native-util.ts';

const child = `
const v8 = require('node:v8');
const vm = require('node:vm');
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const rssKiB = () => Number(/VmRSS:\\s+(\\d+)/.exec(require('node:fs').readFileSync('/proc/self/status', 'utf8'))[1]);
// V8 frees collected backing stores on a background thread
const settle = () => new Promise((r) => setTimeout(() => { gc(); setTimeout(r, 200); }, 200));
(async () => {
  if (process.argv[1]) require(process.argv[1]);
  let warm = new Uint8Array(8 << 20).fill(1); // a first large block, freed: glibc raises its threshold
  warm = null;
  gc();
  await settle();
  let big = [];
  const keep = [];
  for (let i = 0; i < 48; i++) {
    big.push(new Uint8Array(4 << 20).fill(1));
    keep.push(new Uint8Array(256 << 10).fill(1));
  }
  const before = rssKiB();
  big = null;
  gc();
  await settle();
  process.stdout.write(JSON.stringify({ releasedKiB: before - rssKiB(), kept: keep.length }));
})();
`;

test('freed 4 MiB buffers are returned to the system once the addon is loaded', { skip: skipReason ?? (process.platform !== 'linux' ? 'Linux only (/proc, glibc)' : undefined) }, () => {
  const run = (addon?: string) => JSON.parse(execFileSync(process.execPath, ['-e', child, ...(addon ? [addon] : [])], { encoding: 'utf8' })) as { releasedKiB: number };
  const withAddon = run(locateAddon());
  // 48 × 4 MiB = 192 MiB were freed; all but a few pages must have left (without the addon,
  // glibc 2.36 kept all of them: −224 KiB released)
  assert.ok(withAddon.releasedKiB > 180 * 1024, `with the addon: ${withAddon.releasedKiB} KiB released of 196608`);
});
