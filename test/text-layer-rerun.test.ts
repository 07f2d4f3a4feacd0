/**
 * A paused prefill resumed with `next(true)` runs the decoder layer it paused after again, on that
 * layer's weights as they are then and on the same input, and replaces the layer's KV rows
 * (calibration swaps in a layer's quantized matrices this way). Oracle: a prefill that had those
 * weights from the start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import type { ModelInputs, PrefillRun } from '../src/model/qwen3vl.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');

async function setup() {
  const qvl = await Qwen3VL.fromPretrained(TINY, { kvType: 'f32' });
  const p = await qvl.prepare([{ role: 'user', content: [{ type: 'image', image: path.join(TINY, 'image_b.png') }, { type: 'text', text: 'What is this?' }] }]);
  const inputs: ModelInputs = { ids: p.ids, pixelValues: p.pixelValues, imageGrids: p.imageGrids };
  return { qvl, m: qvl.model, inputs };
}

/** Runs a traced prefill to the pause after decoder layer `l`, calls `atPause`, resumes with `again`, and finishes. */
function prefillWithPause(m: Qwen3VL['model'], inputs: ModelInputs, l: number, again: boolean | undefined, atPause: () => void) {
  const cache = m.newCache();
  const layerRuns: number[] = [];
  let layer = -1;
  const run: PrefillRun = m.prefillRun(inputs, cache, {
    allLogits: true,
    trace: (stage) => {
      if (stage.startsWith('text.layer_input.')) layerRuns.push((layer = Number(stage.slice('text.layer_input.'.length))));
    },
  });
  while (layer < l) assert.equal(run.next().done, false);
  atPause();
  let r = run.next(again);
  while (!r.done) r = run.next();
  return { logits: r.value.logits, cache, layerRuns };
}

/** Bit-identical arrays (a diff of large arrays would take minutes to print). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** The bytes of every KV block the cache holds (all layers' keys and values). */
function kvBytes(cache: ReturnType<Qwen3VL['model']['newCache']>): Uint8Array {
  const v = cache.view(0);
  return Buffer.concat(Array.from({ length: v.blocks.length / 2 }, (_, b) => new Uint8Array(v.slabs[v.blocks[2 * b]], v.blocks[2 * b + 1], v.layout.blockBytes)));
}

test('next(true) after a decoder layer runs it again: the same layer weights give the same logits and KV cache as one run', async () => {
  const { m, inputs } = await setup();
  const L = m.cfg.text.numLayers;
  assert.ok(L >= 3, 'the tiny model needs three layers for a middle one');
  const once = m.prefill(inputs, m.newCache(), { allLogits: true });
  const plain = prefillWithPause(m, inputs, 1, undefined, () => {});
  const twice = prefillWithPause(m, inputs, 1, true, () => {});
  assert.deepEqual(plain.layerRuns, Array.from({ length: L }, (_, i) => i));
  assert.deepEqual(twice.layerRuns, [0, 1, ...Array.from({ length: L - 1 }, (_, i) => i + 1)]);
  assert.ok(sameBytes(twice.logits, once.logits), 'logits after the layer ran twice');
  assert.ok(sameBytes(plain.logits, once.logits), 'logits of the paused prefill');
  assert.equal(twice.cache.length, inputs.ids.length);
  for (let l = 0; l < L; l++) assert.equal(twice.cache.view(l).length, inputs.ids.length, `layer ${l}'s KV rows counted once`);
  assert.ok(sameBytes(kvBytes(twice.cache), kvBytes(plain.cache)), 'KV cache after the layer ran twice');
});

test('next(true) after weights are swapped: what a prefill with those weights from the start gives', async () => {
  const { m, inputs } = await setup();
  const layers = m.text.w.layers;
  const orig = { ...layers[1] };
  // layer 2's matrices in layer 1 (same shapes): a change that moves every later value
  const swap = () => Object.assign(layers[1], { q: layers[2].q, k: layers[2].k, v: layers[2].v, o: layers[2].o, gate: layers[2].gate, up: layers[2].up, down: layers[2].down });
  try {
    const rerun = prefillWithPause(m, inputs, 1, true, swap);
    const fromStart = m.prefill(inputs, m.newCache(), { allLogits: true });
    const cache = m.newCache();
    m.prefill(inputs, cache, { allLogits: true });
    Object.assign(layers[1], orig);
    const before = m.prefill(inputs, m.newCache(), { allLogits: true });
    assert.ok(sameBytes(rerun.logits, fromStart.logits), 'logits of the layer run again on the swapped weights');
    assert.ok(!sameBytes(rerun.logits, before.logits), 'the swap changes the output, so the check above could fail');
    assert.ok(sameBytes(kvBytes(rerun.cache), kvBytes(cache)), 'layer 1 rewrote its KV rows');
  } finally {
    Object.assign(layers[1], orig);
  }
});

test('lean prefills held paused side by side, interleaved layer by layer with reruns and other passes, give what each gives alone', async () => {
  const { qvl, m } = await setup();
  const L = m.cfg.text.numLayers;
  const text = async (t: string): Promise<ModelInputs> => ({ ids: (await qvl.prepare([{ role: 'user', content: t }])).ids });
  const [a, b, c] = await Promise.all([text('Name three colours.'), text('Count to five, slowly.'), text('What is a square?')]);
  const alone = [a, b].map((x) => m.prefill(x, m.newCache(), { allLogits: true }).logits);
  // both paused after each layer (the trace names it) and each layer run twice, taking turns as
  // calibration's items do; between them another prompt's whole prefill leases the scratch the
  // lean runs handed back, and writes over all of it
  const runs = [a, b].map((x) => {
    const s = { layer: -1, run: undefined as unknown as PrefillRun };
    s.run = m.prefillRun(x, m.newCache(), { allLogits: true, lean: true, trace: (stage) => {
      if (stage.startsWith('text.layer_input.')) s.layer = Number(stage.slice('text.layer_input.'.length));
    } });
    return s;
  });
  for (let l = 0; l + 1 < L; l++) {
    for (const r of runs) while (r.layer < l) assert.equal(r.run.next().done, false);
    m.prefill(c, m.newCache());
    for (const r of runs) r.run.next(true);
    m.prefill(c, m.newCache());
  }
  const got = runs.map((r) => {
    let x = r.run.next();
    while (!x.done) x = r.run.next();
    return x.value.logits;
  });
  got.forEach((g, i) => assert.ok(sameBytes(g, alone[i]), `prompt ${i}: logits of the interleaved lean run`));
});
