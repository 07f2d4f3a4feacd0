import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isQvlError } from '../src/errors.ts';
import { fromBf16, fromF16, KV_TYPES, KvLayout, KvRowReader, toBf16, toF16, toF16Saturating, type KvType } from '../src/kernels/kv.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { KvPool } from '../src/model/kv-pool.ts';
import { backend, firstViolation, isas, kvAttentionTolerance, randn, rng, skipReason } from './native-util.ts';

const ts = new TsBackend();

/** The float32 neighbours of x among values `decode` can produce, found by bisection over the codes. */
function nearestIsChosen(x: number, enc: (x: number) => number, dec: (h: number) => number, maxFinite: number): boolean {
  const got = dec(enc(x));
  if (Math.abs(x) > maxFinite * (1 + 2 ** -8)) return !Number.isFinite(got) || Math.abs(got) >= maxFinite;
  // no code decodes strictly closer to x than the chosen one (checked on the code's neighbours)
  const h = enc(x);
  for (const d of [-1, 1]) {
    const other = dec((h + d) & 0xffff);
    if (!Number.isFinite(other) || Math.sign(other) !== Math.sign(got) && got !== 0) continue;
    if (Math.abs(other - x) < Math.abs(got - x)) return false;
  }
  return true;
}

test('bf16 and f16 conversions round to the nearest representable value (ties to even)', () => {
  fc.assert(
    fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (x) => nearestIsChosen(x, toBf16, fromBf16, 3.3895313892515355e38)),
    { seed: 11, numRuns: 5000 },
  );
  fc.assert(
    fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: -70000, max: 70000 }), (x) => nearestIsChosen(x, toF16, fromF16, 65504)),
    { seed: 12, numRuns: 5000 },
  );
  // exact values survive; ties go to the even code
  for (const x of [0, 1, -2, 0.5, 65504, 2 ** -24, -(2 ** -14)]) assert.equal(fromF16(toF16(x)), x);
  assert.equal(toF16(1 + 2 ** -11), toF16(1)); // tie between 1 and 1+2^-10: even mantissa
  assert.equal(toF16(1 + 3 * 2 ** -11), toF16(1 + 2 ** -9)); // tie between odd and even: even
  assert.equal(fromF16(toF16(1e6)), Infinity);
  assert.ok(Number.isNaN(fromBf16(toBf16(NaN))));
  assert.equal(toBf16(1 + 2 ** -8), toBf16(1));
});

test('the f16 cache keeps a finite value finite: past ±65504 it saturates, NaN and infinities stay, the rest is toF16', () => {
  for (const [x, want] of [[1e6, 65504], [-7e4, -65504], [65520, 65504], [3.4e38, 65504], [Infinity, Infinity], [-Infinity, -Infinity], [65504, 65504], [-1.5, -1.5]] as const)
    assert.equal(fromF16(toF16Saturating(x)), want, `${x}`);
  assert.ok(Number.isNaN(fromF16(toF16Saturating(NaN))));
  fc.assert(
    fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: -65504, max: 65504 }), (x) => toF16Saturating(x) === toF16(x)),
    { seed: 13, numRuns: 3000 },
  );
  // through the cache: a row written and read back
  const layout = new KvLayout('f16', 1, 1, 4, 4);
  const cache = new KVCache(new KvPool(layout, { maxBytes: layout.blockBytes }));
  cache.append(0, Float32Array.of(1e6, -1e6, 2, NaN), Float32Array.of(-7e4, 7e4, Infinity, 0.5), 1);
  const view = cache.view(0);
  assert.deepEqual(Array.from(new KvRowReader(view, 0).row(0, 0)), [65504, -65504, 2, NaN]);
  assert.deepEqual(Array.from(new KvRowReader(view, 1).row(0, 0)), [-65504, 65504, Infinity, 0.5]);
});

test('KV blocks: a pool hands out, reuses and bounds blocks; caches grow and shrink by whole blocks', () => {
  const layout = new KvLayout('bf16', 3, 2, 8, 4);
  const pool = new KvPool(layout, { maxBytes: 5 * layout.blockBytes });
  const a = new KVCache(pool);
  const k = randn(rng(1), 10 * layout.rowElems);
  for (let l = 0; l < 3; l++) a.append(l, k, k, 10);
  assert.equal(a.length, 10);
  assert.equal(a.blockIds.length, 3); // 4 + 4 + 2
  assert.deepEqual(pool.stats, { used: 3, free: 0, bytes: 3 * layout.blockBytes, limit: 5 });
  const b = new KVCache(pool);
  for (let l = 0; l < 3; l++) b.append(l, k, k, 8);
  assert.equal(pool.stats.used, 5);
  // the budget is spent: one more block is refused with a clear error, and nothing changes
  const c = new KVCache(pool);
  assert.throws(() => c.append(0, k, k, 1), (e) => isQvlError(e, 'OUT_OF_MEMORY') && /KV cache is full/.test(e.message));
  assert.equal(c.length, 0);
  // truncating returns the blocks past the new end; released blocks are reused, not reallocated
  a.truncate(5);
  assert.equal(a.blockIds.length, 2);
  assert.equal(pool.stats.free, 1);
  const before = pool.stats.bytes;
  c.append(0, k, k, 1);
  assert.equal(pool.stats.bytes, before);
  b.release();
  a.release();
  c.release();
  assert.equal(pool.stats.used, 0);
  assert.equal(pool.stats.free, 5);
  // shared blocks (a common prefix) are freed only by their last owner
  const d = new KVCache(pool);
  d.append(0, k, k, 1);
  const id = d.blockIds[0];
  pool.retain(id);
  d.release();
  assert.equal(pool.owners(id), 1);
  pool.release(id);
  assert.equal(pool.owners(id), 0);
  assert.throws(() => pool.release(id), (e) => isQvlError(e, 'INTERNAL'));
  assert.throws(() => new KvPool(layout, { maxBytes: layout.blockBytes - 1 }), (e) => isQvlError(e, 'OUT_OF_MEMORY'));
});

test("KV slabs: the pool makes them with the allocator it is given, and one that fails is the budget's refusal", () => {
  const layout = new KvLayout('bf16', 2, 2, 8, 4);
  const made: number[] = [];
  const pool = new KvPool(layout, { allocSlab: (bytes) => (made.push(bytes), new ArrayBuffer(bytes)) });
  const cache = new KVCache(pool);
  const k = randn(rng(3), 6 * layout.rowElems);
  for (let l = 0; l < 2; l++) cache.append(l, k, k, 6);
  assert.equal(made.length, 1, 'one slab holds both blocks');
  assert.equal(made[0], pool.blocksPerSlab * layout.blockBytes);
  assert.equal(pool.slabs[0].byteLength, made[0]);
  const failing = new KvPool(layout, { allocSlab: () => { throw new RangeError('no memory'); } });
  assert.throws(() => new KVCache(failing).append(0, k, k, 1), (e) => isQvlError(e, 'OUT_OF_MEMORY') && /could not allocate/.test(e.message));
  assert.equal(failing.stats.bytes, 0);
});

test('KV slabs from the native backend (allocPages): zero-filled, writable, exactly the size asked; bad sizes refused naming the field', { skip: skipReason }, () => {
  const nb = backend();
  for (const bytes of [1, 4096 + 3, (2 << 20) + 64]) {
    const buf = nb.allocPages(bytes);
    assert.ok(buf instanceof ArrayBuffer);
    assert.equal(buf.byteLength, bytes);
    const u = new Uint8Array(buf);
    assert.equal(u.findIndex((v) => v !== 0), -1, `${bytes} bytes: zero-filled`);
    u.fill(0xa5);
    assert.equal(u[bytes - 1], 0xa5);
  }
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => nb.allocPages(bad), (e) => isQvlError(e) && /allocPages/.test(e.message) && /bytes/.test(e.message), String(bad));
  }
  // more than any address space: the mapping fails, with the system's reason
  assert.throws(() => nb.allocPages(2 ** 52), (e) => isQvlError(e) && /allocPages: cannot map 4503599627370496 bytes: \S/.test(e.message));
  // a model's pool takes its slabs from there: the cache on them reads back what it was given
  const layout = new KvLayout('f32', 1, 2, 8, 4);
  const cache = new KVCache(new KvPool(layout, { allocSlab: (b) => nb.allocPages(b) }));
  const k = randn(rng(5), 5 * layout.rowElems);
  cache.append(0, k, k, 5);
  const view = cache.view(0);
  for (const which of [0, 1] as const) {
    const reader = new KvRowReader(view, which);
    for (let t = 0; t < 5; t++)
      for (let h = 0; h < 2; h++) assert.deepEqual(reader.row(t, h), k.subarray(t * layout.rowElems + h * 8, t * layout.rowElems + (h + 1) * 8));
  }
});

test('KV rows read back as written: f32 exactly, bf16/f16 to half an ulp, q8 to half a step of its row scale', () => {
  const r = rng(7);
  for (const type of KV_TYPES) {
    const layout = new KvLayout(type, 2, 3, 24, 5);
    const cache = new KVCache(new KvPool(layout));
    const n = 13;
    const k = randn(r, n * layout.rowElems, 3);
    const v = randn(r, n * layout.rowElems, 0.01);
    // two appends that straddle a block boundary
    cache.append(1, k.subarray(0, 7 * layout.rowElems), v.subarray(0, 7 * layout.rowElems), 7);
    const view = cache.append(1, k.subarray(7 * layout.rowElems), v.subarray(7 * layout.rowElems), n - 7);
    for (const [which, src] of [[0, k], [1, v]] as const) {
      const reader = new KvRowReader(view, which);
      for (let j = 0; j < n; j++) {
        for (let kh = 0; kh < 3; kh++) {
          const row = reader.row(j, kh);
          const o = j * layout.rowElems + kh * 24;
          let amax = 0;
          for (let c = 0; c < 24; c++) amax = Math.max(amax, Math.abs(src[o + c]));
          for (let c = 0; c < 24; c++) {
            const x = src[o + c];
            const tol = type === 'f32' ? 0 : type === 'q8' ? (amax / 127) * 0.5 * (1 + 1e-6) : Math.abs(x) * (type === 'bf16' ? 2 ** -8 : 2 ** -11) + 2 ** -25;
            assert.ok(Math.abs(row[c] - x) <= tol, `${type} ${which ? 'v' : 'k'}[${j}][${kh}][${c}] = ${row[c]}, wrote ${x}`);
          }
        }
      }
    }
  }
});

/** Keys and values written to a cache of `type` and the float32 rows they read back as. */
function filledCache(type: KvType, kvHeads: number, hd: number, n: number, blockTokens: number, seed: number) {
  const r = rng(seed);
  const layout = new KvLayout(type, 2, kvHeads, hd, blockTokens);
  const cache = new KVCache(new KvPool(layout));
  const k = randn(r, n * layout.rowElems, 2);
  const v = randn(r, n * layout.rowElems);
  cache.append(0, k, v, n);
  const view = cache.append(1, k, v, n);
  // the stored values as float32 arrays, through the reference reader
  const kf = new Float32Array(k.length);
  const vf = new Float32Array(v.length);
  const kr = new KvRowReader(view, 0);
  const vr = new KvRowReader(view, 1);
  for (let j = 0; j < n; j++) {
    for (let h = 0; h < kvHeads; h++) {
      kf.set(kr.row(j, h), j * layout.rowElems + h * hd);
      vf.set(vr.row(j, h), j * layout.rowElems + h * hd);
    }
  }
  return { view, kf, vf };
}

test('the TypeScript oracle reads every KV type in place exactly as float32 attention over the same values', () => {
  for (const type of KV_TYPES) {
    const { view, kf, vf } = filledCache(type, 2, 12, 23, 8, 3);
    const q = randn(rng(4), 5 * 4 * 12);
    const got = ts.attentionKv(q, view, { nQ: 5, heads: 4, scale: 0.3, qOffset: 18 });
    const want = ts.attention(q, kf, vf, { nQ: 5, nKv: 23, heads: 4, kvHeads: 2, headDim: 12, scale: 0.3, causal: true, qOffset: 18 });
    assert.deepEqual(got, want, type);
  }
});


test('native attention over KV blocks agrees with the oracle for every KV type, ISA, block size and length', { skip: skipReason }, () => {
  const nb = backend();
  const threads = nb.threads;
  try {
    for (const isa of isas(nb)) {
      nb.useInstructionSet(isa);
      for (const type of KV_TYPES) {
        // decode (1 row), a few rows, prefill chunks (tiled kernel); blocks of 16 and 256 tokens;
        // odd head sizes; lengths that end inside a block
        const cases: Array<[nQ: number, nKv: number, heads: number, kvHeads: number, hd: number, block: number]> = [
          [1, 1, 2, 1, 16, 16],
          [1, 300, 4, 2, 24, 16],
          [3, 77, 8, 2, 40, 16],
          [20, 20, 4, 4, 32, 16],
          [33, 190, 8, 2, 64, 256],
          [64, 1500, 4, 1, 128, 256],
        ];
        for (const [nQ, nKv, heads, kvHeads, hd, block] of cases) {
          const { view, kf, vf } = filledCache(type, kvHeads, hd, nKv, block, nQ * 7 + nKv);
          const q = randn(rng(nKv + hd), nQ * heads * hd);
          const o = { nQ, heads, scale: 1 / Math.sqrt(hd), qOffset: nKv - nQ };
          const want = ts.attentionKv(q, view, o);
          const tol = kvAttentionTolerance(q, kf, vf, hd, o.scale);
          const got = nb.attentionKv(q, view, o);
          const bad = firstViolation(got, want, () => tol);
          assert.equal(bad, -1, `${isa} ${type} nQ=${nQ} nKv=${nKv} ${heads}/${kvHeads}×${hd} block ${block}: out[${bad}] = ${got[bad]}, oracle ${want[bad]}`);
        }
      }
    }
    // long decode with few kv heads splits the keys across tasks (merged partial softmax sums)
    nb.useInstructionSet('best');
    nb.setThreads(4);
    for (const type of KV_TYPES) {
      const { view, kf, vf } = filledCache(type, 1, 64, 5000, 256, 99);
      const q = randn(rng(5), 2 * 64);
      const o = { nQ: 1, heads: 2, scale: 0.125, qOffset: 4999 };
      const bad = firstViolation(nb.attentionKv(q, view, o), ts.attentionKv(q, view, o), () => kvAttentionTolerance(q, kf, vf, 64, 0.125));
      assert.equal(bad, -1, `split decode ${type}`);
    }
  } finally {
    nb.setThreads(threads);
    nb.useInstructionSet('best');
  }
});

test('native attentionKv refuses a view whose blocks cannot hold its length, or lie outside their slab', { skip: skipReason }, () => {
  const nb = backend();
  const { view } = filledCache('q8', 1, 16, 20, 16, 1);
  const q = new Float32Array(16);
  assert.throws(() => nb.attentionKv(q, { ...view, length: 40 }, { nQ: 1, heads: 1, scale: 1, qOffset: 0 }), (e) => isQvlError(e, 'TENSOR_SHAPE'));
  const blocks = view.blocks.slice();
  blocks[1] = 1 << 30;
  assert.throws(() => nb.attentionKv(q, { ...view, blocks }, { nQ: 1, heads: 1, scale: 1, qOffset: 0 }), (e) => isQvlError(e, 'NATIVE_ERROR') && /outside its slab/.test(e.message));
  assert.throws(() => nb.attentionKv(q, { ...view, layer: 5 }, { nQ: 1, heads: 1, scale: 1, qOffset: 0 }), (e) => isQvlError(e, 'OPTION_INVALID'));
});

test('adoptCopy: the copy holds the source block\'s first n positions of every layer, keys and values, bit for bit; the source stays as it was', () => {
  const r = rng(11);
  for (const type of KV_TYPES) {
    const layout = new KvLayout(type, 3, 3, 24, 8);
    const pool = new KvPool(layout);
    const src = new KVCache(pool);
    const rows = randn(r, 8 * layout.rowElems, 2);
    for (let l = 0; l < 3; l++) src.append(l, rows, rows.map((x) => -x), 8);
    const read = (c: KVCache, l: number, which: 0 | 1, j: number, h: number) => Array.from(new KvRowReader(c.view(l), which).row(j, h));
    const before = [0, 1, 2].map((l) => [0, 1].map((w) => Array.from({ length: 8 }, (_, j) => [0, 1, 2].map((h) => read(src, l, w as 0 | 1, j, h)))));
    for (const n of [0, 1, 5, 8]) {
      const copy = new KVCache(pool);
      copy.adoptCopy(src.blockIds[0], n);
      assert.equal(copy.length, n);
      for (let l = 0; l < 3; l++)
        for (const w of [0, 1] as const)
          for (let j = 0; j < n; j++)
            for (let h = 0; h < 3; h++) assert.deepEqual(read(copy, l, w, j, h), before[l][w][j][h], `${type} n=${n} layer ${l} ${w ? 'v' : 'k'}[${j}][${h}]`);
      // the copy fills on from n without touching the source
      if (n < 8) {
        const more = randn(r, (8 - n) * layout.rowElems, 5);
        for (let l = 0; l < 3; l++) copy.append(l, more, more, 8 - n);
        for (let l = 0; l < 3; l++)
          for (const w of [0, 1] as const)
            for (let j = 0; j < 8; j++)
              for (let h = 0; h < 3; h++) assert.deepEqual(read(src, l, w, j, h), before[l][w][j][h], `${type} source after a copy of ${n}`);
      }
      copy.release();
    }
  }
});
