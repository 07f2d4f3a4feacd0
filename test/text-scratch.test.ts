/** The decoder's scratch pool: a pass's arrays, kept for the next pass of a size that fits. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ScratchPool } from '../src/model/text-scratch.ts';
import type { TextLayerWeights } from '../src/model/weights.ts';

// only the row counts of the matrices matter to the pool
const m = (rows: number, cols: number) => ({ rows, cols }) as unknown as TextLayerWeights['q'];
const layer = { q: m(8, 4), k: m(2, 4), v: m(2, 4), o: m(4, 8), gate: m(12, 4), up: m(12, 4), down: m(4, 12) } as unknown as TextLayerWeights;

test('a lease holds each array at n rows; a released set serves the next pass that fits', () => {
  const pool = new ScratchPool(4, layer, 16, 2);
  const a = pool.lease(3);
  const s = a.scratch;
  assert.deepEqual(
    [s.a, s.q, s.k, s.v, s.att, s.y, s.b, s.gate, s.up, ...s.out].map((x) => x.length),
    [12, 24, 6, 6, 24, 12, 12, 36, 36, 12, 12],
  );
  // passes in flight at once never share memory
  const b = pool.lease(3);
  assert.notEqual(b.scratch.q.buffer, s.q.buffer);
  a.release();
  a.release(); // twice is once
  assert.equal(pool.idle, 1);
  const c = pool.lease(2);
  assert.equal(c.scratch.q.buffer, s.q.buffer, 'a set of 4 rows (3 rounded up) is reused for 2');
  assert.equal(c.scratch.q.length, 16);
  assert.equal(pool.idle, 0);
  c.release();
  b.release();
  // a pass past maxRows gets arrays of its own, never kept
  const big = pool.lease(17);
  assert.equal(big.scratch.gate.length, 17 * 12);
  big.release();
  assert.equal(pool.idle, 2);
  // at most maxIdle sets stay, the largest ones
  const held = [pool.lease(16), pool.lease(1), pool.lease(1)];
  for (const h of held) h.release();
  assert.equal(pool.idle, 2);
  assert.equal(pool.lease(9).scratch.q.buffer.byteLength, 16 * 8 * 4, 'the 16-row set stayed');
});
