/**
 * `newCache({ blockTokens, layerWindow })`, what calibration holds every sample's prefill in: a
 * cache of smaller blocks than the model's, or one that keeps one layer at a time, gives the
 * prefill the model's own cache gives, bit for bit, from a pool of its own; a layer window refuses
 * to go back to a layer it has overwritten.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { isQvlError } from '../src/errors.ts';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import type { ModelInputs, PrefillRun } from '../src/model/qwen3vl.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');

function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

for (const backend of ['ts', 'native'] as const) {
  test(`${backend}: a prefill and a decode step over caches of 16- and 5-token blocks give the model's own blocks' logits`, async (t) => {
    let qvl: Qwen3VL;
    try {
      qvl = await Qwen3VL.fromPretrained(TINY, { kvType: 'f16', backend });
    } catch (e) {
      if (backend === 'native' && process.env.CI !== 'true' && isQvlError(e)) return t.skip(`native backend: ${(e as Error).message}`);
      throw e;
    }
    const m = qvl.model;
    const p = await qvl.prepare([{ role: 'user', content: [{ type: 'image', image: path.join(TINY, 'image_b.png') }, { type: 'text', text: 'What is this?' }] }]);
    const inputs: ModelInputs = { ids: p.ids, pixelValues: p.pixelValues, imageGrids: p.imageGrids };
    const run = (blockTokens?: number) => {
      const cache = m.newCache(blockTokens === undefined ? {} : { blockTokens });
      const r = m.prefill(inputs, cache, { allLogits: true });
      const step = m.decode(7, cache, r.positions.delta).slice();
      const out = { prefill: r.logits, step, blockTokens: cache.layout.blockTokens, blocks: cache.bytes / cache.layout.blockBytes };
      cache.release();
      return out;
    };
    const want = run();
    assert.ok(want.blockTokens > p.ids.length, `the model's blocks (${want.blockTokens} tokens) hold the whole prompt (${p.ids.length})`);
    for (const b of [16, 5]) {
      const got = run(b);
      assert.equal(got.blockTokens, b);
      assert.equal(got.blocks, Math.ceil((p.ids.length + 1) / b), `blocks of ${b} tokens`);
      assert.ok(sameBytes(got.prefill, want.prefill), `prefill logits, blocks of ${b}`);
      assert.ok(sameBytes(got.step, want.step), `decode logits, blocks of ${b}`);
    }
    // the model's own pool is not where they came from
    assert.equal(m.kvPool().stats.used, 0);
    assert.notEqual(m.kvPool(undefined, { blockTokens: 16 }), m.kvPool());
    assert.equal(m.kvPool(undefined, { blockTokens: 16 }), m.kvPool(undefined, { blockTokens: 16 }));
    for (const bad of [0, -16, 2.5, Number.NaN]) {
      assert.throws(() => m.newCache({ blockTokens: bad }), (e) => isQvlError(e, 'OPTION_INVALID') && /blockTokens must be a positive integer/.test((e as Error).message), String(bad));
    }

    // a layer window, run as calibration runs it: lean, paused after every layer, each layer run
    // twice; against the model's own cache run the same way
    const L = m.cfg.text.numLayers;
    const paused = (cache: ReturnType<typeof m.newCache>) => {
      let layer = -1;
      const run: PrefillRun = m.prefillRun(inputs, cache, {
        lean: true,
        trace: (stage) => {
          if (stage.startsWith('text.layer_input.')) layer = Number(stage.slice('text.layer_input.'.length));
        },
      });
      const order: number[] = [];
      for (let l = 0; l < L; l++) {
        while (layer < l) assert.equal(run.next().done, false);
        order.push(layer);
        if (l + 1 < L) run.next(true);
      }
      let r = run.next();
      while (!r.done) r = run.next();
      return { logits: r.value.logits, order };
    };
    const whole = m.newCache();
    const window = m.newCache({ blockTokens: 16, layerWindow: true });
    const a = paused(whole);
    const b = paused(window);
    assert.deepEqual(b.order, Array.from({ length: L }, (_, i) => i));
    assert.ok(sameBytes(b.logits, a.logits), 'a layer window gives the whole cache\'s logits');
    assert.equal(window.layers, L);
    assert.equal(window.layout.layers, 1);
    assert.equal(window.length, p.ids.length);
    // one layer's worth: the blocks hold 16 tokens of one layer
    assert.equal(window.bytes, Math.ceil(p.ids.length / 16) * window.layout.blockBytes);
    assert.equal(window.layout.blockBytes * L, m.kvPool(undefined, { blockTokens: 16 }).layout.blockBytes);
    // layer 0 was overwritten: a decode step (which starts at layer 0) is refused, not wrong
    assert.throws(() => m.decode(7, window, 0), (e) => isQvlError(e, 'INTERNAL') && /the KV window holds layer \d+; layer 0 was overwritten/.test((e as Error).message));
    assert.throws(() => window.view(0), (e) => isQvlError(e, 'INTERNAL') && /the KV window holds layer/.test((e as Error).message));
    whole.release();
    window.release();
  });
}
