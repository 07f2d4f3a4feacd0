import assert from 'node:assert/strict';
import path from 'node:path';
import test from 'node:test';
import { buildHint } from '../src/kernels/native/addon.ts';

test('a missing addon is explained for where qvl is: a clone builds it itself, an installed package through its allowed install script', () => {
  const installed = buildHint(path.join(path.sep, 'home', 'me', 'app', 'node_modules', 'qvl'));
  assert.match(installed, /"allowScripts": \{ "qvl": true \}/);
  assert.match(installed, /npm rebuild qvl/);
  assert.doesNotMatch(installed, /build:native/);
  const clone = buildHint(path.join(path.sep, 'home', 'me', 'qvl'));
  assert.match(clone, /npm run build:native/);
  assert.doesNotMatch(clone, /allowScripts|rebuild/);
  // a folder merely named like node_modules is not an install
  assert.match(buildHint(path.join(path.sep, 'home', 'me', 'node_modules_backup', 'qvl')), /build:native/);
});
