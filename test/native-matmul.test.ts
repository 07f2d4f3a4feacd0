import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { isQvlError } from '../src/errors.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { NativeBackend } from '../src/kernels/native/index.ts';
import { activationLevels, backend, firstViolation, isas, matmulBounds, randn, rng, skipReason, WEIGHT_SPECS } from './native-util.ts';

const ts = new TsBackend();
// (rows, cols) pairs with sizes off every block: 32-col q8 blocks, 32/128 q4 groups, the
// 64-byte int8 chunks, the GEMM's 12/6/4-row tiles and 256-col slices, fp8 16×24 test blocks;
// 2053 rows: the GEMVs split them into several tasks of 256 rows and a last one of 5.
const SHAPES: Array<[number, number]> = [
  [1, 1],
  [3, 31],
  [13, 33],
  [37, 300],
  [25, 257],
  [50, 129],
  [2053, 150],
];
// Token counts: every fused GEMV width (1–8; AVX2 runs 5–8 as 4 tokens, then the rest over the
// same rows), passes of 8 with a short last one (9, 17, 33 on AVX-512, whose passes go to 32),
// and the GEMM past them.
const TOKENS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 32, 33, 64, 65];

test('native matmul agrees with the oracle for every format, shape, token count and ISA', { skip: skipReason }, () => {
  const nb = backend();
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    for (const spec of WEIGHT_SPECS) {
      const r = rng(spec.label.length * 1000 + 7);
      for (const [rows, cols] of SHAPES) {
        const w = spec.make(r, rows, cols);
        const pn = nb.prepare(w);
        const pt = ts.prepare(w);
        const bias = randn(r, rows);
        for (const n of TOKENS) {
          if (rows * cols * n > 400_000 && n > 17) continue;
          const x = randn(r, n * cols);
          const withBias = n % 2 === 1;
          const got = nb.matmul(x, n, pn, withBias ? bias : null);
          const want = ts.matmul(x, n, pt, withBias ? bias : null);
          const bound = matmulBounds(x, n, w, activationLevels(isa, n, w));
          const bad = firstViolation(got, want, (i) => bound[i] + (withBias ? Math.abs(want[i]) * 2 ** -23 : 0));
          assert.equal(
            bad,
            -1,
            `${isa} ${spec.label} [${rows}×${cols}] n=${n}: y[${bad}] = ${got[bad]}, oracle ${want[bad]}, bound ${bound[bad]}`,
          );
        }
      }
    }
  }
  nb.useInstructionSet('best');
});

// Float weights of ≥ 2048 columns and 5–8 tokens: AVX-512 walks each task's rows slice by slice
// (native/gemv_sliced512.inc). 2063 columns: two 1024-column slices and 15 left for the tail;
// tasks of whole 3-row groups, the last ones of 13 and 2 rows (a group and a row, two rows alone).
test('the sliced batched GEMV of float weights agrees with the oracle on every ISA', { skip: skipReason }, () => {
  const nb = backend();
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    for (const spec of WEIGHT_SPECS.filter((s) => ['f32', 'bf16', 'f16'].includes(s.label))) {
      const r = rng(spec.label.length * 77 + 3);
      for (const [rows, cols] of [[157, 3100], [200, 2063]] as const) {
        const w = spec.make(r, rows, cols);
        const pn = nb.prepare(w);
        const pt = ts.prepare(w);
        const bias = randn(r, rows);
        for (const n of [5, 6, 7, 8, 13]) {
          const x = randn(r, n * cols);
          const withBias = n !== 6;
          const got = nb.matmul(x, n, pn, withBias ? bias : null);
          const want = ts.matmul(x, n, pt, withBias ? bias : null);
          const bound = matmulBounds(x, n, w, activationLevels(isa, n, w));
          const bad = firstViolation(got, want, (i) => bound[i] + (withBias ? Math.abs(want[i]) * 2 ** -23 : 0));
          assert.equal(bad, -1, `${isa} ${spec.label} [${rows}×${cols}] n=${n}: y[${bad}] = ${got[bad]}, oracle ${want[bad]}, bound ${bound[bad]}`);
        }
      }
    }
  }
  nb.useInstructionSet('best');
});

test('row-major q8 (repack: false): the prompt paths agree with the oracle on every ISA', { skip: skipReason }, () => {
  // past the int8 GEMV's 8 tokens, AVX-512 takes float passes of the dense GEMV over the
  // row-major bytes up to 32 tokens; the rest go to the int16-activation GEMM, which reads
  // row-major bytes as well as the repacked stream
  const nb = new NativeBackend(loadAddon(), { repack: false });
  const spec = WEIGHT_SPECS.find((s) => s.label === 'q8')!;
  const r = rng(91);
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    for (const [rows, cols] of [[37, 300], [25, 257]] as const) {
      const w = spec.make(r, rows, cols);
      const pn = nb.prepare(w);
      assert.equal(nb.layoutOf(pn), 'row-major');
      const pt = ts.prepare(w);
      for (const n of [9, 16, 31, 32, 33]) {
        const x = randn(r, n * cols);
        const got = nb.matmul(x, n, pn);
        const want = ts.matmul(x, n, pt);
        const bound = matmulBounds(x, n, w, activationLevels(isa, n, w, false));
        const bad = firstViolation(got, want, (i) => bound[i]);
        assert.equal(bad, -1, `${isa} [${rows}×${cols}] n=${n}: y[${bad}] = ${got[bad]}, oracle ${want[bad]}, bound ${bound[bad]}`);
      }
    }
  }
});

test('native matmul over zero columns gives the bias on every ISA', { skip: skipReason }, () => {
  // the kernels size their prefetch and task plans from the row length: 0 must not trip them
  const nb = backend();
  const bias = Float32Array.of(1, -2, 3, -4, 5);
  for (const isa of isas(nb)) {
    nb.useInstructionSet(isa);
    for (const spec of WEIGHT_SPECS.filter((s) => !s.label.startsWith('q4'))) {
      const p = nb.prepare(spec.make(rng(1), bias.length, 0));
      for (const n of [1, 3, 9]) {
        const y = nb.matmul(new Float32Array(0), n, p, bias);
        for (let i = 0; i < y.length; i++) assert.equal(y[i], bias[i % bias.length], `${isa} ${spec.label} n=${n}: y[${i}]`);
      }
    }
  }
  nb.useInstructionSet('best');
});

test('native int8-activation GEMV stays close to the exact product, not just within the bound', { skip: skipReason }, () => {
  // the bound above allows ~1/254 relative error per block; typical error is far smaller
  const nb = backend();
  const r = rng(99);
  const rows = 64;
  const cols = 2560;
  for (const spec of WEIGHT_SPECS.filter((s) => s.label === 'q8' || s.label === 'q4 g128')) {
    const w = spec.make(r, rows, cols);
    const x = randn(r, cols);
    const got = nb.matmul(x, 1, nb.prepare(w));
    const want = ts.matmul(x, 1, ts.prepare(w));
    let num = 0;
    let den = 0;
    for (let i = 0; i < rows; i++) {
      num += (got[i] - want[i]) ** 2;
      den += want[i] ** 2;
    }
    assert.ok(Math.sqrt(num / den) < 0.01, `${spec.label}: relative rms error ${Math.sqrt(num / den)}`);
  }
});

test('native matmul rejects mismatched shapes with a QvlError', { skip: skipReason }, () => {
  const nb = backend();
  const w = nb.prepare({ format: 'f32', rows: 4, cols: 8, data: new Float32Array(32) });
  assert.throws(() => nb.matmul(new Float32Array(9), 1, w), (e) => isQvlError(e, 'TENSOR_SHAPE') && /x has 9 values, expected 1×8/.test(e.message));
  assert.throws(() => nb.matmul(new Float32Array(8), 1, w, new Float32Array(3)), (e) => isQvlError(e, 'TENSOR_SHAPE') && /bias has 3/.test(e.message));
  assert.throws(() => nb.matmul(new Float32Array(8), 1.5, w), (e) => isQvlError(e, 'OPTION_INVALID') && /n must be an integer/.test(e.message));
});

test('native prepare rejects inconsistent weights with a QvlError naming the field', { skip: skipReason }, () => {
  const nb = backend();
  assert.throws(
    () => nb.prepare({ format: 'bf16', rows: 4, cols: 8, data: new Uint16Array(31) }),
    (e) => isQvlError(e, 'TENSOR_SHAPE') && /data has 31 elements, the shape needs 32/.test(e.message),
  );
  assert.throws(
    () => nb.prepare({ format: 'q8', rows: 2, cols: 40, qs: new Int8Array(80), scales: new Float32Array(3) }),
    (e) => isQvlError(e, 'TENSOR_SHAPE') && /scales has 3 elements, the shape needs 4/.test(e.message),
  );
  const gIdx = new Int32Array(8).fill(0);
  gIdx[5] = 7;
  assert.throws(
    () => nb.prepare({ format: 'q4', rows: 1, cols: 8, groupSize: 4, nGroups: 2, qs: new Uint8Array(4), scales: new Float32Array(2), gIdx }),
    (e) => isQvlError(e, 'QUANT_INVALID') && /gIdx\[5\] = 7 is outside 0..1/.test(e.message),
  );
  assert.throws(
    () => nb.prepare({ format: 'q4', rows: 1, cols: 300, groupSize: 128, nGroups: 2, qs: new Uint8Array(150), scales: new Float32Array(2) }),
    (e) => isQvlError(e, 'QUANT_INVALID') && /nGroups 2 is less than/.test(e.message),
  );
  assert.throws(
    () => nb.prepare({ format: 'fp8', rows: 1, cols: 8, qs: new Uint8Array(8), scales: new Float32Array(1), blockRows: 0, blockCols: 128 }),
    (e) => isQvlError(e, 'QUANT_INVALID') && /blockRows must be a positive integer/.test(e.message),
  );
  assert.throws(
    () => nb.prepare({ format: 'int3', rows: 1, cols: 1 } as never),
    (e) => isQvlError(e, 'DTYPE_UNSUPPORTED') && /int3/.test(e.message),
  );
});

test('native matmul uses a released weight only with a clear error', { skip: skipReason }, () => {
  const nb = backend();
  const w = nb.prepare({ format: 'f32', rows: 2, cols: 2, data: new Float32Array(4) });
  nb.release(w);
  assert.throws(() => nb.matmul(new Float32Array(2), 1, w), (e) => isQvlError(e, 'INTERNAL') && /released/.test(e.message));
});

test('release frees a repacked weight at once, and the addon refuses its handle after', { skip: skipReason }, () => {
  const nb = backend();
  const addon = loadAddon();
  const rows = 4096;
  const cols = 8192;
  const w = WEIGHT_SPECS.find((s) => s.label === 'q4 g32 zeros')!.make(rng(41), rows, cols);
  const p = nb.prepare(w);
  const handle = (p.impl as { handle: never }).handle;
  const layout = addon.weightLayout(handle);
  assert.ok(layout.layout.startsWith('q4x8') && layout.bytes! > 16e6, `expected a repacked q4 weight, got ${JSON.stringify(layout)}`);
  const rss = process.memoryUsage().rss;
  nb.release(p);
  // the stream's pages went back before any collection could run (the handle is still referenced
  // here): Node runs add-on finalizers from the event loop, and a synchronous loop that released
  // weight after weight (a calibration) kept them all until it ended
  const freed = rss - process.memoryUsage().rss;
  assert.ok(freed >= 0.9 * layout.bytes!, `release returned ${freed} bytes of a ${layout.bytes}-byte stream`);
  assert.throws(() => addon.matmul(new Float32Array(cols), 1, handle, null, new Float32Array(rows)), /the weight was released/);
  nb.release(p);
});

test('a NaN or ±Inf activation makes that token’s outputs non-finite on every path, int8 and int16 ones included', { skip: skipReason }, () => {
  // the integer paths quantize blocks of activations: without a check, a NaN became a finite code
  // and its token's outputs finite garbage (repacked and row-major layouts, every token count)
  const backends = [backend(), new NativeBackend(loadAddon(), { repack: false })];
  const [rows, cols] = [40, 300];
  for (const nb of backends) {
    for (const isa of isas(nb)) {
      nb.useInstructionSet(isa);
      for (const label of ['q8', 'q8 binary16 scales', 'q4 g32 zeros', 'q4 g128', 'bf16']) {
        const r = rng(label.length + 3);
        const pn = nb.prepare(WEIGHT_SPECS.find((s) => s.label === label)!.make(r, rows, cols));
        for (const n of [1, 3, 9, 40]) {
          const x = randn(r, n * cols);
          x[5] = NaN;
          if (n > 1) x[cols + 7] = -Infinity;
          const y = nb.matmul(x, n, pn);
          const where = `${isa} ${nb.layoutOf(pn)} ${label} n=${n}`;
          for (let i = 0; i < rows; i++) assert.ok(Number.isNaN(y[i]), `${where}: token 0 (NaN) row ${i} = ${y[i]}`);
          for (let i = rows; i < Math.min(n, 2) * rows; i++) assert.ok(!Number.isFinite(y[i]), `${where}: token 1 (−Inf) row ${i - rows} = ${y[i]}`);
          for (let i = 2 * rows; i < n * rows; i++) assert.ok(Number.isFinite(y[i]), `${where}: token ${Math.floor(i / rows)} row ${i % rows} = ${y[i]}`);
        }
      }
    }
    nb.useInstructionSet('best');
  }
});
