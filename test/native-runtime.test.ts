import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { isQvlError } from '../src/errors.ts';
import { adviseDontNeed, loadNativeBackend, mmapFile, nativeAvailable } from '../src/kernels/native/index.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { backend, isas, randn, rng, skipReason } from './native-util.ts';

test('nativeAvailable reports the addon on this machine', { skip: skipReason }, () => {
  assert.equal(nativeAvailable(), true);
  assert.match(backend().isa, /^(avx512vnni\+avx2(?:vnni)?-gemv|avx512vnni|avx512|avx2vnni|avx2|scalar)$/);
});

test('native results do not depend on the thread count', { skip: skipReason }, () => {
  const nb = backend();
  const before = nb.threads;
  const r = rng(11);
  const rows = 301;
  const cols = 517;
  const w = nb.prepare({ format: 'f32', rows, cols, data: randn(r, rows * cols) });
  const x = randn(r, 19 * cols);
  const x1 = x.subarray(0, cols);
  const results: Float32Array[] = [];
  for (const threads of [1, 3, 2]) {
    const b = loadNativeBackend({ threads });
    assert.equal(b.threads, threads);
    results.push(b.matmul(x, 19, w), b.matmul(x1, 1, w));
  }
  // every output element is computed by one thread in a fixed order: identical bits
  for (let i = 2; i < results.length; i++) assert.deepEqual(results[i], results[i % 2]);
  const want = new TsBackend().matmul(x1, 1, new TsBackend().prepare({ format: 'f32', rows, cols, data: (w.impl as { weight: { data: Float32Array } }).weight.data }));
  for (let i = 0; i < rows; i++) assert.ok(Math.abs(results[1][i] - want[i]) < 1e-3);
  nb.setThreads(before);
});

test('many small jobs in a row (a decode step) give the same results on 1, 2 and 4 threads', { skip: skipReason }, () => {
  // thousands of short parallel_for jobs back to back: a worker that joins a job late, or a
  // job slot reused too early, would show up as a wrong or missing row
  const nb = backend();
  const before = nb.threads;
  const r = rng(5);
  const rows = 67;
  const cols = 96;
  const weights = [0, 1, 2].map(() => nb.prepare({ format: 'f32', rows, cols, data: randn(r, rows * cols) }));
  const x = randn(r, cols);
  const run = () => {
    const out: Float32Array[] = [];
    for (let i = 0; i < 1500; i++) out.push(nb.matmul(x, 1, weights[i % 3]));
    return out;
  };
  nb.setThreads(1);
  const want = run();
  for (const threads of [2, 4]) {
    nb.setThreads(threads);
    const got = run();
    for (let i = 0; i < got.length; i++) assert.deepEqual(got[i], want[i], `threads ${threads}, job ${i}`);
  }
  nb.setThreads(before);
});

test('loadNativeBackend rejects a bad thread count', { skip: skipReason }, () => {
  assert.throws(() => loadNativeBackend({ threads: 0 }), (e) => isQvlError(e, 'OPTION_INVALID') && /threads must be a positive integer, got 0/.test(e.message));
});

test('mmapFile reads a file back and adviseDontNeed keeps it readable', { skip: skipReason }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'qvl-mmap-'));
  try {
    const path = join(dir, 'weights.bin');
    const bytes = new Uint8Array(3 * 4096 + 123);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 255;
    writeFileSync(path, bytes);
    const ab = mmapFile(path);
    assert.equal(ab.byteLength, bytes.length);
    assert.deepEqual(new Uint8Array(ab), bytes);
    // only the whole pages inside the range are released
    assert.equal(adviseDontNeed(ab, 100, 2 * 4096 + 50), 4096);
    assert.equal(adviseDontNeed(ab), 3 * 4096);
    assert.deepEqual(new Uint8Array(ab), bytes, 'released pages come back from the file');
    // weights can be used in place from the mapping
    const f = new Float32Array(ab, 0, 1024);
    const nb = backend();
    const w = nb.prepare({ format: 'f32', rows: 32, cols: 32, data: f });
    const y = nb.matmul(new Float32Array(32).fill(1), 1, w);
    assert.equal(y.length, 32);

    const empty = join(dir, 'empty.bin');
    writeFileSync(empty, new Uint8Array(0));
    assert.equal(mmapFile(empty).byteLength, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mmapFile and adviseDontNeed fail with clear errors', { skip: skipReason }, () => {
  assert.throws(() => mmapFile('/nonexistent/qvl/model.safetensors'), (e) => isQvlError(e, 'FILE_NOT_FOUND') && /nonexistent\/qvl\/model.safetensors/.test(e.message));
  assert.throws(() => mmapFile(tmpdir()), (e) => isQvlError(e, 'NATIVE_ERROR') && /not a regular file/.test(e.message));
  assert.throws(() => adviseDontNeed(new ArrayBuffer(8192)), (e) => isQvlError(e, 'NATIVE_ERROR') && /not a mapping made by mmapFile/.test(e.message));
});

test('the int8 probe measures each kernel set\'s dot product: within ¼ and 16 times the FMA probe\'s multiply-adds on the AVX2 sets, 0 on scalar', { skip: skipReason }, () => {
  const addon = loadAddon();
  const nb = backend();
  try {
    for (const isa of isas(nb)) {
      nb.useInstructionSet(isa);
      const int8 = addon.probeInt8(2e6);
      if (isa === 'scalar') {
        assert.equal(int8, 0, 'the scalar set has no int8 dot product');
        continue;
      }
      // an int8 dot product does 32 multiply-adds per instruction (64 in the 512-bit registers
      // of the AVX-512 VNNI set's pair kernels) against a vector FMA's 8 (ymm) or 16 (zmm) at
      // about the same issue rate: a ratio far outside means the probe's loop was folded or its
      // chains serialized
      const fmaMacs = addon.probeFma(2e6) / 2;
      assert.ok(int8 > fmaMacs / 4 && int8 < fmaMacs * 16, `${isa}: int8 ${int8.toFixed(1)} GMAC/s against FMA ${fmaMacs.toFixed(1)} GMAC/s`);
    }
  } finally {
    nb.useInstructionSet('best');
  }
});

test('a float matrix read in place from a file mapping gives the same bits after prepare copies it out', { skip: skipReason }, () => {
  // prepare copies mapped float matrices of 1 MiB or more into memory of its own and releases the
  // mapping's pages: the results must be those of the same values on the heap, bit for bit
  const dir = mkdtempSync(join(tmpdir(), 'qvl-mapped-float-'));
  try {
    const nb = backend();
    const r = rng(23);
    const rows = 2300;
    const cols = 1030; // 4.7 MB of bf16 (copied in 2 MiB pieces, the last one short), rows not a multiple of 64 bytes
    const bits = new Uint16Array(rows * cols);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const src = randn(r, rows * cols);
    for (let i = 0; i < bits.length; i++) {
      f[0] = src[i];
      bits[i] = u[0] >>> 16;
    }
    const path = join(dir, 'w.bin');
    writeFileSync(path, new Uint8Array(bits.buffer, 0, bits.byteLength));
    const mapped = new Uint16Array(mmapFile(path), 0, rows * cols);
    const x = randn(r, 3 * cols);
    for (const isa of isas(nb)) {
      nb.useInstructionSet(isa);
      const fromMap = nb.prepare({ format: 'bf16', rows, cols, data: mapped });
      const fromHeap = nb.prepare({ format: 'bf16', rows, cols, data: bits.slice() });
      for (const n of [1, 3]) assert.deepEqual(nb.matmul(x.subarray(0, n * cols), n, fromMap), nb.matmul(x.subarray(0, n * cols), n, fromHeap), `${isa}, ${n} token(s)`);
      assert.deepEqual(nb.gatherRows(fromMap, [0, 5, 1100, 2100, rows - 1]), nb.gatherRows(fromHeap, [0, 5, 1100, 2100, rows - 1]), isa);
    }
    nb.useInstructionSet('best');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
