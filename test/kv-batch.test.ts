/**
 * appendAttendKv: one decoder layer of several sequences in one call. The native op writes the new
 * keys and values into the cache blocks bit for bit as the TypeScript writer does, for every KV
 * type, and attends each sequence's rows as the oracle does, on every kernel set.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isQvlError } from '../src/errors.ts';
import type { Backend, KvBatchPart } from '../src/kernels/backend.ts';
import { KV_TYPES, KvLayout, KvRowReader, type KvType, type KvView } from '../src/kernels/kv.ts';
import { TsBackend } from '../src/kernels/ts/backend.ts';
import { KVCache } from '../src/model/kv-cache.ts';
import { KvPool } from '../src/model/kv-pool.ts';
import { backend, firstViolation, isas, kvAttentionTolerance, randn, rng, skipReason } from './native-util.ts';

const nativeSkip = process.env.CI === 'true' ? false : skipReason;
const ts = new TsBackend();

interface Case {
  type: KvType;
  heads: number;
  kvHeads: number;
  hd: number;
  block: number;
  /** per sequence: positions already cached, and rows this call adds */
  past: number[];
  rows: number[];
}

/** Caches holding `past` positions of the same random rows on layers 0 and 1, in a pool of their own. */
function caches(c: Case, seed: number): { pool: KvPool; caches: KVCache[] } {
  const layout = new KvLayout(c.type, 2, c.kvHeads, c.hd, c.block);
  // a slab of just the blocks needed (the default slab is 64 MB, and every run compares them all)
  const blocks = c.past.reduce((s, p, i) => s + Math.ceil((p + c.rows[i]) / c.block), 0);
  const pool = new KvPool(layout, { maxBytes: blocks * layout.blockBytes });
  const r = rng(seed);
  const out = c.past.map((p) => {
    const cache = new KVCache(pool);
    if (p) {
      const k = randn(r, p * c.kvHeads * c.hd, 2);
      const v = randn(r, p * c.kvHeads * c.hd);
      cache.append(0, k, v, p);
      cache.append(1, k, v, p);
    }
    return cache;
  });
  return { pool, caches: out };
}

/** Every key and value a view holds, as float32 (what the tolerance's maxima are taken over). */
function stored(view: KvView, which: 0 | 1): Float32Array {
  const L = view.layout;
  const reader = new KvRowReader(view, which);
  const out = new Float32Array(view.length * L.rowElems);
  for (let j = 0; j < view.length; j++) for (let h = 0; h < L.kvHeads; h++) out.set(reader.row(j, h), (j * L.kvHeads + h) * L.headDim);
  return out;
}

function concat(arrays: Float32Array[]): Float32Array {
  const out = new Float32Array(arrays.reduce((s, a) => s + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

function run(be: Backend, c: Case, seed: number, special: false | 'values' | 'bits' = false) {
  const { pool, caches: cs } = caches(c, seed);
  const n = c.rows.reduce((s, x) => s + x, 0);
  const r = rng(seed + 1);
  const q = randn(r, n * c.heads * c.hd);
  const k = randn(r, n * c.kvHeads * c.hd, 2);
  const v = randn(r, n * c.kvHeads * c.hd);
  if (special) {
    // what the writers must agree on too: NaN, infinities, signed zero, halfway cases, tiny values
    const odd = [NaN, Infinity, -Infinity, -0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 2 ** -130, 65520, -1e-9, 127.5 / 127, 1e6, -7e4];
    odd.forEach((x, i) => {
      k[i * 7] = x;
      v[i * 5 + 1] = x;
    });
    if (special === 'bits') {
      // every other value an arbitrary bit pattern, weighted to binary16's edges: exponents of
      // its subnormals and of its overflow, mantissas at and beside the halfway points
      const bits = new Uint32Array(k.buffer, k.byteOffset, k.length);
      const vbits = new Uint32Array(v.buffer, v.byteOffset, v.length);
      const word = (): number => {
        const u = Math.floor(r() * 2 ** 32) >>> 0;
        const pick = Math.floor(r() * 4);
        if (pick === 0) return u;
        const exp = pick === 1 ? 100 + Math.floor(r() * 15) : pick === 2 ? 140 + Math.floor(r() * 4) : Math.floor(r() * 256);
        // the bits that binary16 rounds away: 13, or more below its normal range (a subnormal)
        const cut = exp >= 113 ? 13 : Math.min(24, 126 - exp);
        const half = 2 ** (cut - 1);
        let mant = u & 0x7fffff;
        if (r() < 0.6) mant = (mant - (mant % (2 * half)) + [half, half - 1, half + 1, 0][Math.floor(r() * 4)]) & 0x7fffff;
        return ((u & 0x80000000) | (exp << 23) | mant) >>> 0;
      };
      for (let i = 0; i < bits.length; i += 2) bits[i] = word();
      for (let i = 1; i < vbits.length; i += 2) vbits[i] = word();
    }
  }
  const parts: KvBatchPart[] = cs.map((cache, i) => ({ ...cache.extend(1, c.rows[i]), rows: c.rows[i] }));
  const out = be.appendAttendKv(q, k, v, parts, { heads: c.heads, scale: 1 / Math.sqrt(c.hd) }, new Float32Array(q.length));
  return { pool, parts, q, out };
}

/**
 * The first byte where two slabs differ, or −1. With `nanScales` (q8), two float32 words that are
 * both NaN count as equal: a q8 row with a NaN has a NaN scale, and which NaN JavaScript's
 * arithmetic makes is not defined.
 */
function firstDifference(a: ArrayBuffer, b: ArrayBuffer, nanScales: boolean): number {
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  if (x.length !== y.length) return 0;
  if (Buffer.compare(x, y) === 0) return -1;
  const fx = new Float32Array(a, 0, x.length >> 2);
  const fy = new Float32Array(b, 0, y.length >> 2);
  for (let j = 0; j < x.length; j++) {
    if (x[j] === y[j]) continue;
    if (nanScales && Number.isNaN(fx[j >> 2]) && Number.isNaN(fy[j >> 2])) continue;
    return j;
  }
  return -1;
}

const CASES: Case[] = [
  // decode steps: past 0 (a first write), the last position of a block, the first of a new one
  { type: 'bf16', heads: 4, kvHeads: 2, hd: 24, block: 16, past: [0, 15, 16, 40], rows: [1, 1, 1, 1] },
  // prompt rests beside decode rows: 3 rows (the row kernel), 40 rows (the tiled kernel), across blocks
  { type: 'bf16', heads: 8, kvHeads: 2, hd: 40, block: 16, past: [15, 0, 20, 70], rows: [1, 3, 40, 1] },
  // one sequence alone (it may split its keys), a long one
  { type: 'bf16', heads: 2, kvHeads: 1, hd: 64, block: 256, past: [1200], rows: [1] },
  { type: 'bf16', heads: 32, kvHeads: 8, hd: 128, block: 256, past: [90, 70, 255, 3, 120, 88, 91, 60], rows: [1, 1, 1, 1, 1, 1, 1, 1] },
];

test('appendAttendKv: native writes the TypeScript writer\'s bytes and attends as the oracle, every KV type and kernel set', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const nb = backend();
  const threads = nb.threads;
  try {
    for (const base of CASES) {
      for (const type of KV_TYPES) {
        const c = { ...base, type };
        const seed = c.hd * 31 + c.past.length;
        // the oracle once; every kernel set at the pool's size, and the best set at 4 threads too
        // (where a sequence alone splits its keys)
        const want = run(ts, c, seed);
        const tol = kvAttentionTolerance(want.q, concat(want.parts.map((p) => stored(p.view, 0))), concat(want.parts.map((p) => stored(p.view, 1))), c.hd, 1 / Math.sqrt(c.hd));
        const runs: Array<[string, number]> = [...isas(nb).map((isa): [string, number] => [isa, threads]), ['best', 4]];
        for (const [isa, threadCount] of runs) {
          nb.setThreads(threadCount);
          nb.useInstructionSet(isa as 'best');
          const got = run(nb, c, seed);
          const what = `${isa} ${threadCount} threads ${type} ${c.heads}/${c.kvHeads}×${c.hd} past ${c.past} rows ${c.rows}`;
          assert.equal(got.pool.slabs.length, want.pool.slabs.length);
          got.pool.slabs.forEach((s, i) => assert.equal(firstDifference(s, want.pool.slabs[i], false), -1, `${what}: KV bytes differ`));
          const bad = firstViolation(got.out, want.out, () => tol);
          assert.equal(bad, -1, `${what}: out[${bad}] = ${got.out[bad]}, oracle ${want.out[bad]}`);
        }
      }
    }
  } finally {
    nb.setThreads(threads);
    nb.useInstructionSet('best');
  }
});

test('appendAttendKv: NaN, infinities, zeros, halfway values and arbitrary bit patterns are written as the TypeScript writer writes them, every kernel set', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const nb = backend();
  try {
    for (const isa of isas(nb)) {
      nb.useInstructionSet(isa);
      for (const type of KV_TYPES) {
        // hd 16: whole vectors on every set; hd 20: rows with a tail on the AVX2 and AVX-512 sets
        // (the scalar writer), whole vectors on the portable one
        for (const hd of [16, 20]) {
          for (const [special, seed] of [['values', 5], ['bits', 6], ['bits', 7]] as const) {
            const c: Case = { type, heads: 4, kvHeads: 2, hd, block: 8, past: [3, 7], rows: [2, 9] };
            const want = run(ts, c, seed, special);
            const got = run(nb, c, seed, special);
            got.pool.slabs.forEach((s, i) => assert.equal(firstDifference(s, want.pool.slabs[i], type === 'q8'), -1, `${isa} ${type} hd ${hd} ${special} seed ${seed}: KV bytes differ`));
          }
        }
      }
    }
  } finally {
    nb.useInstructionSet('best');
  }
});

test('appendAttendKv refuses parts that do not fit: both backends, the same errors', { skip: nativeSkip }, () => {
  const layout = new KvLayout('bf16', 2, 2, 8, 16);
  const pool = new KvPool(layout);
  const a = new KVCache(pool);
  const b = new KVCache(pool);
  const other = new KVCache(new KvPool(new KvLayout('bf16', 2, 2, 8, 16)));
  const q = new Float32Array(2 * 4 * 8);
  const kv = () => new Float32Array(2 * 2 * 8);
  const pa = { ...a.extend(0, 1), rows: 1 };
  const pb = { ...b.extend(0, 1), rows: 1 };
  const o = { heads: 4, scale: 0.3 };
  const backends: Backend[] = skipReason ? [ts] : [ts, backend()];
  for (const be of backends) {
    const fails = (parts: KvBatchPart[], pattern: RegExp, qq = q, out = new Float32Array(q.length)) =>
      assert.throws(() => be.appendAttendKv(qq, kv(), kv(), parts, o, out), (e) => isQvlError(e) && pattern.test(e.message));
    fails([], /no parts/);
    fails([pa, { ...pb, rows: 2 }], /holds 1 positions, expected past \+ rows = 2/);
    fails([pa, { ...pb, view: { ...pb.view, layer: 1 } }], /another layer, cache layout or KV pool/);
    fails([pa, { ...other.extend(0, 1), rows: 1 }], /another layer, cache layout or KV pool/);
    fails([pa, pb], /q has 16 values/, q.subarray(0, 16));
    fails([pa, pb], /out overlaps q/, q, q);
    fails([pa, { ...pb, view: { ...pb.view, blocks: new Int32Array(0) } }], /0 blocks of 16 tokens cannot hold 1/);
  }
});
