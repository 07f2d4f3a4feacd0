// The eight-row q4 and q8 layouts (native/q4x8.h, q8x8.h): which weights prepare repacks, that
// every reader of a repacked stream (int8 GEMV, GEMM decode, gatherRows) sees the weight the
// oracle sees, and that repacking a weight that lies in a file mapping releases its pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { mmapFile, NativeBackend } from '../src/kernels/native/index.ts';
import type { Q4Weight, WeightData } from '../src/kernels/weight.ts';
import { halfExactScale } from '../src/weights/convert.ts';
import { residentKiB } from './helpers/smaps.ts';
import { activationLevels, backend, firstViolation, isas, matmulBounds, q4, randn, rng, skipReason, WEIGHT_SPECS } from './native-util.ts';

const ts = new TsBackend();
// rows around the 8-row groups; columns off the 32-column blocks, odd (a row ends mid-byte)
const ROWS = [1, 7, 8, 9, 13, 17];
const COLS = [1, 31, 33, 63, 65, 150, 300];
// 96: a multiple of 32 that the row-major int8 kernels do not take
const GROUPS = [32, 64, 96, 128];

/** A random q4 weight; halfScales: its scales rounded to binary16 (what qvl's quantizer makes). */
function randomQ4(r: () => number, rows: number, cols: number, gs: number, zeros: boolean, halfScales: boolean): Q4Weight {
  const w = q4(r, rows, cols, gs, zeros, false, 16) as Q4Weight;
  if (halfScales) w.scales = w.scales.map(halfExactScale);
  return w;
}

test('prepare repacks q8, and q4 whose group size is a multiple of 32; act-order, other q4 sizes, other formats and repack: false stay row-major', { skip: skipReason }, () => {
  const nb = backend();
  const rowMajor = new NativeBackend(loadAddon(), { repack: false });
  const r = rng(5);
  for (const gs of GROUPS) {
    assert.equal(nb.layoutOf(nb.prepare(q4(r, 9, 70, gs, true, false))), 'q4x8', `g${gs}`);
    assert.equal(nb.layoutOf(nb.prepare(randomQ4(r, 9, 70, gs, true, true))), 'q4x8-f16', `g${gs}, binary16 scales`);
    assert.equal(rowMajor.layoutOf(rowMajor.prepare(q4(r, 9, 70, gs, true, false))), 'row-major', `g${gs} repack: false`);
  }
  // what the kernels stream: nibbles, then 2 (binary16) or 4 bytes of scale and 1 of zero per group
  assert.equal(nb.prepare(randomQ4(r, 16, 64, 32, true, true)).bytes, 16 * 32 + 16 * 2 * 3);
  assert.equal(nb.prepare(randomQ4(r, 16, 64, 32, false, false)).bytes, 16 * 32 + 16 * 2 * 4);
  // one scale that binary16 cannot hold (below its normal range) keeps the matrix's scales float32
  const tiny = randomQ4(r, 9, 70, 32, false, true);
  tiny.scales[5] = 1e-6;
  assert.equal(nb.layoutOf(nb.prepare(tiny)), 'q4x8');
  tiny.scales[5] = 0;
  assert.equal(nb.layoutOf(nb.prepare(tiny)), 'q4x8-f16', 'a zero scale is a binary16 value');
  assert.equal(nb.layoutOf(nb.prepare(q4(r, 9, 70, 32, true, true))), 'row-major', 'act-order');
  assert.equal(nb.layoutOf(nb.prepare(q4(r, 9, 70, 48, false, false))), 'row-major', 'group size 48');
  const q8 = { format: 'q8' as const, rows: 2, cols: 32, qs: new Int8Array(64), scales: Float32Array.of(0, 0.0999755859375) };
  assert.equal(nb.layoutOf(nb.prepare(q8)), 'q8x8-f16', 'binary16 scales');
  assert.equal(nb.prepare(q8).bytes, 8 * (32 + 2), 'a q8 row group of 8 rows, padded, 2 bytes a scale');
  q8.scales[1] = 0.1;
  assert.equal(nb.layoutOf(nb.prepare(q8)), 'q8x8', 'a scale that binary16 cannot hold keeps them float32');
  assert.equal(nb.prepare(q8).bytes, 8 * (32 + 4));
  assert.equal(rowMajor.layoutOf(rowMajor.prepare(q8)), 'row-major');
  assert.equal(nb.layoutOf(nb.prepare({ format: 'bf16', rows: 2, cols: 4, data: new Uint16Array(8) })), 'row-major');
  // over 64 MiB on the JavaScript heap: a copy would leave the arrays resident until V8 collects them
  const big = { format: 'q8' as const, rows: 8200, cols: 8192, qs: new Int8Array(8200 * 8192), scales: new Float32Array(8200 * 256) };
  assert.equal(nb.layoutOf(nb.prepare(big)), 'row-major', 'a large q8 weight on the heap');
  assert.equal(big.qs.length, 8200 * 8192, 'kept as the caller gave it');
  // given away (quantized at load): repacked whatever its size, and its arrays detached at once
  const given = nb.prepare(big, { consume: true });
  assert.equal(nb.layoutOf(given), 'q8x8-f16', 'a large q8 weight the caller gives away');
  assert.equal(big.qs.length, 0, 'its values array is detached');
  assert.equal(big.scales.length, 0, 'its scales are detached');
});

test('a consumed weight reads as the oracle read it before; a view of a larger buffer is not detached', { skip: skipReason }, () => {
  const nb = backend();
  const r = rng(29);
  const x = randn(r, 3 * 96);
  for (const make of [() => randomQ4(r, 13, 96, 32, true, true), () => q8Spec.make(r, 13, 96)]) {
    const w = make();
    // the oracle's dequantization, and the same kernels over a copy that was not given away
    const wantRows = ts.gatherRows(ts.prepare(w), [0, 12]);
    const want = nb.matmul(x, 3, nb.prepare(structuredClone(w)));
    const p = nb.prepare(w, { consume: true });
    assert.notEqual(nb.layoutOf(p), 'row-major', `${w.format}: repacked`);
    assert.equal((w as { qs: Uint8Array }).qs.length, 0, `${w.format}: its bytes are detached`);
    assert.deepEqual(nb.gatherRows(p, [0, 12]), wantRows, `${w.format}: rows decode as the oracle's`);
    assert.deepEqual(nb.matmul(x, 3, p), want, `${w.format}: the matmul is the copy's, bit for bit`);
  }
  // scales that share one buffer with other data stay readable
  const shared = new Float32Array(13 * 3 + 5).fill(0.5);
  const q8 = { format: 'q8' as const, rows: 13, cols: 96, qs: new Int8Array(13 * 96).fill(3), scales: shared.subarray(0, 13 * 3) };
  nb.layoutOf(nb.prepare(q8, { consume: true }));
  assert.equal(q8.qs.length, 0, 'a whole buffer is detached');
  assert.equal(shared.length, 44, 'a buffer that holds more than the weight is left alone');
});

/** A repacked-weight case: a label and a maker of random weights of any shape. */
type Case = [string, (r: () => number, rows: number, cols: number) => WeightData];

const q8Spec = WEIGHT_SPECS.find((s) => s.label === 'q8')!;

/** q4 in every group size with and without zero points, binary16 scales when `half(rows, cols)`; then q8. */
function cases(half: (rows: number, cols: number) => boolean, zeros: (gs: number) => boolean[]): Case[] {
  const q4Cases = GROUPS.flatMap((gs) =>
    zeros(gs).map((z): Case => [`g${gs}${z ? ' zeros' : ''}`, (r, rows, cols) => randomQ4(r, rows, cols, gs, z, half(rows, cols))]),
  );
  return [...q4Cases, ['q8', q8Spec.make]];
}

test('gatherRows from repacked q4 and q8 gives the oracle dequantization bit for bit, every shape and kernel set', { skip: skipReason }, () => {
  const nb = backend();
  const r = rng(17);
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    for (const [label, make] of cases((rows, cols) => (rows + cols) % 2 === 0, () => [false, true]))
      for (const rows of ROWS)
        for (const cols of COLS) {
          const w = make(r, rows, cols);
          const ids = Array.from({ length: rows }, (_, i) => rows - 1 - i);
          const got = nb.gatherRows(nb.prepare(w), ids);
          const want = ts.gatherRows(ts.prepare(w), ids);
          const bad = firstViolation(got, want, () => 0);
          assert.equal(bad, -1, `${isa} ${label} [${rows}×${cols}]: value ${bad} is ${got[bad]}, oracle ${want[bad]}`);
        }
  }
  nb.useInstructionSet('best');
});

test('matmul over repacked q4 and q8 agrees with the oracle within its bound: GEMV passes, several passes and the GEMM', { skip: skipReason }, () => {
  const nb = backend();
  const r = rng(23);
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    for (const [label, make] of cases((rows) => rows !== 17, (gs) => [gs !== 64]))
      for (const [rows, cols] of [
        [13, 33],
        [17, 300],
        [40, 129],
      ] as const) {
        const w = make(r, rows, cols);
        const pn = nb.prepare(w);
        const pt = ts.prepare(w);
        const bias = randn(r, rows);
        for (const n of [1, 2, 5, 8, 9, 17, 65]) {
          const x = randn(r, n * cols);
          const got = nb.matmul(x, n, pn, n % 2 ? bias : null);
          const want = ts.matmul(x, n, pt, n % 2 ? bias : null);
          const bound = matmulBounds(x, n, w, activationLevels(isa, n, w));
          const bad = firstViolation(got, want, (i) => bound[i] + Math.abs(want[i]) * 2 ** -22);
          assert.equal(bad, -1, `${isa} ${label} [${rows}×${cols}] n=${n}: y[${bad}] = ${got[bad]}, oracle ${want[bad]}, bound ${bound[bad]}`);
        }
      }
  }
  nb.useInstructionSet('best');
});

test('repacking a weight held in a file mapping releases its pages, whatever its size; the arrays still read the file', { skip: skipReason }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'qvl-q4x8-'));
  try {
    const rows = 256;
    const cols = 1024;
    const w = q4(rng(3), rows, cols, 32, true, false) as Q4Weight;
    const file = join(dir, 'q4.bin');
    // qs, then scales, then zeros, each at a 4-byte boundary (the Float32Array view needs it)
    const parts = [w.qs, new Uint8Array(w.scales.buffer), w.zeros!];
    const size = parts.reduce((s, p) => s + p.byteLength, 0);
    const bytes = new Uint8Array(size);
    let off = 0;
    for (const p of parts) {
      bytes.set(p, off);
      off += p.byteLength;
    }
    writeFileSync(file, bytes);
    const ab = mmapFile(file);
    const mapped: Q4Weight = {
      ...w,
      qs: new Uint8Array(ab, 0, w.qs.length),
      scales: new Float32Array(ab, w.qs.length, w.scales.length),
      zeros: new Uint8Array(ab, w.qs.length + w.scales.byteLength, w.zeros!.length),
    };
    const nb = backend();
    // a large weight in a mapping is repacked: its pages are released
    const bigFile = join(dir, 'q8.bin');
    const bigRows = 8200;
    writeFileSync(bigFile, new Uint8Array(bigRows * 8192 + bigRows * 256 * 4));
    const bigMap = mmapFile(bigFile);
    const big = { format: 'q8' as const, rows: bigRows, cols: 8192, qs: new Int8Array(bigMap, 0, bigRows * 8192), scales: new Float32Array(bigMap, bigRows * 8192, bigRows * 256) };
    assert.equal(nb.layoutOf(nb.prepare(big)), 'q8x8-f16', 'a large q8 weight in a mapping');
    const x = randn(rng(4), 3 * cols);
    const want = nb.matmul(x, 3, new NativeBackend(loadAddon(), { repack: false }).prepare(mapped));
    const before = residentKiB(file);
    const p = nb.prepare(mapped);
    const after = residentKiB(file);
    if (before !== null && after !== null) {
      assert.ok(before >= (size >> 10) - 8, `the row-major kernel read the whole mapping (${before} KiB resident)`);
      assert.ok(after <= 8, `${after} KiB of the mapping stay resident after repacking`);
    }
    assert.deepEqual(new Uint8Array(ab), bytes, 'released pages come back from the file');
    const got = nb.matmul(x, 3, p);
    const bound = matmulBounds(x, 3, w, 127);
    const bad = firstViolation(got, want, (i) => 2 * bound[i]);
    assert.equal(bad, -1, `y[${bad}] = ${got[bad]}, row-major kernels ${want[bad]}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
