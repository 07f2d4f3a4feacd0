// Quantizing at load must not leave the float checkpoint resident: every source weight that the
// load-time conversion replaced is handed to `release`, which drops its mapped pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { loadModelFromDir } from '../src/api/load-model.ts';
import { mmapFile, releaseMappedWeight } from '../src/kernels/native/index.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import type { WeightData } from '../src/kernels/weight.ts';
import { makeQuantConvert } from '../src/weights/quant-plan.ts';
import { residentKiB } from './helpers/smaps.ts';
import { backend, skipReason } from './native-util.ts';

const DEMO = resolve(import.meta.dirname, '../models/demo');

test('loadModelFromDir hands release exactly the source weights that convert replaced', () => {
  const quantize = makeQuantConvert({ mode: 'q8' });
  const replaced = new Set<WeightData>();
  const released: WeightData[] = [];
  loadModelFromDir(DEMO, {
    backend: new TsBackend(),
    convert: (w, name) => {
      const out = quantize(w, name);
      if (out !== w) replaced.add(w);
      return out;
    },
    release: (w) => released.push(w),
  });
  assert.ok(replaced.size > 10, `q8 at load replaced ${replaced.size} weights`);
  assert.equal(released.length, replaced.size);
  for (const w of released) assert.ok(replaced.has(w), 'a weight that convert kept was released');
});

test('q8 at load from a mapped checkpoint: the pages of the quantized float weights do not stay resident', { skip: skipReason }, () => {
  const file = resolve(DEMO, 'model.safetensors');
  const quantize = makeQuantConvert({ mode: 'q8' });
  let convertedBytes = 0;
  const model = loadModelFromDir(DEMO, {
    backend: backend(),
    map: mmapFile,
    convert: (w, name) => {
      const out = quantize(w, name);
      if (out !== w && 'data' in w) convertedBytes += w.data.byteLength;
      return out;
    },
    release: releaseMappedWeight,
  });
  assert.ok(convertedBytes > 1 << 20, `${convertedBytes} bytes quantized`);
  const kept = residentKiB(file);
  // what stays resident is the float vectors read in place (norms, biases): far less than the
  // quantized matrices, which all were read (without release: more than all of them)
  if (kept !== null) assert.ok(kept * 1024 < convertedBytes / 4, `${kept} KiB of the checkpoint stay resident; ${convertedBytes >> 10} KiB were quantized`);
  assert.ok(model);
});
