import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describePlan, planMemory } from '../src/api/memory-plan.ts';
import { isQvlError } from '../src/errors.ts';
import { KvLayout } from '../src/kernels/kv.ts';
import { applyRopeScaling, loadConfig, parseConfig } from '../src/model/config.ts';
import { textInvFreq } from '../src/model/rope.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const GiB = 1024 ** 3;
const cfg = loadConfig(TINY);
const t = cfg.text;
const perToken = new KvLayout('bf16', t.numLayers, t.numKvHeads, t.headDim).bytesPerToken;

test('the memory plan: the model\'s context when it fits, else the longest that does; a context that cannot fit is refused', () => {
  const roomy = planMemory(TINY, cfg, { kvType: 'bf16', machine: { limitBytes: 64 * GiB, availableBytes: 32 * GiB } });
  assert.equal(roomy.context, t.maxPositionEmbeddings);
  assert.equal(roomy.capped, false);
  assert.equal(roomy.kvBytesPerToken, perToken);
  assert.equal(roomy.kvBytes, Math.ceil(roomy.context / 256) * 256 * perToken);
  assert.equal(roomy.totalBytes, roomy.weightsBytes + roomy.kvBytes + roomy.workBytes);

  // room for the weights, the work allowance and 1000 tokens: capped to whole blocks below that
  const room = roomy.weightsBytes + roomy.workBytes + 1000 * perToken;
  const tight = planMemory(TINY, cfg, { kvType: 'bf16', machine: { limitBytes: 64 * GiB, availableBytes: room } });
  assert.equal(tight.context, 768);
  assert.equal(tight.capped, true);
  assert.match(describePlan(tight), /context 768 tokens \(the model accepts 262,144; capped to what fits/);

  // an explicit context beyond the machine: refused, naming what would fit and the smaller type
  assert.throws(
    () => planMemory(TINY, cfg, { kvType: 'bf16', context: 100_000, machine: { limitBytes: room, availableBytes: room } }),
    (e) => isQvlError(e, 'OUT_OF_MEMORY') && /at most 768 tokens fit with the bf16 KV cache/.test(e.message) && /--kv-type q8/.test(e.message),
  );
  // q8 takes about half: more tokens fit in the same room
  const q8 = planMemory(TINY, cfg, { kvType: 'q8', machine: { limitBytes: 64 * GiB, availableBytes: room } });
  assert.ok(q8.context >= 2 * 768 - 256 && q8.kvBytesPerToken < 0.65 * perToken, `${q8.context} ${q8.kvBytesPerToken}`);
  // beyond the model's positions: the YaRN factor that would reach it
  assert.throws(
    () => planMemory(TINY, cfg, { kvType: 'q8', context: 1_000_000, machine: { limitBytes: 64 * GiB, availableBytes: 64 * GiB } }),
    (e) => isQvlError(e, 'CONTEXT_TOO_LONG') && /--rope-scaling yarn --rope-factor 4/.test(e.message),
  );
});

test('a YaRN override reads as the config Qwen documents: factor over the original context, positions stretched', () => {
  const raw = { model_type: 'qwen3_vl', text_config: { max_position_embeddings: 262144, rope_scaling: { rope_type: 'default', mrope_section: [4, 2, 2], mrope_interleaved: true }, rope_theta: 5e6 } };
  const y = applyRopeScaling(raw, { type: 'yarn', factor: 4 });
  const tc = y.text_config as Record<string, any>;
  assert.equal(tc.max_position_embeddings, 1048576);
  assert.deepEqual(tc.rope_scaling, { rope_type: 'yarn', mrope_section: [4, 2, 2], mrope_interleaved: true, factor: 4, original_max_position_embeddings: 262144 });
  // the parsed config: YaRN with HF's default attention factor 0.1·ln(4) + 1, and inv freqs blended
  const withYarn = loadConfig(TINY, { ropeScaling: { type: 'yarn', factor: 4 } });
  assert.equal(withYarn.text.rope.type, 'yarn');
  assert.equal(withYarn.text.maxPositionEmbeddings, 4 * t.maxPositionEmbeddings);
  assert.ok(Math.abs(withYarn.text.rope.attentionFactor - (0.1 * Math.log(4) + 1)) < 1e-12);
  const base = textInvFreq(t.rope, t.headDim);
  const yarn = textInvFreq(withYarn.text.rope, t.headDim);
  assert.equal(yarn[0], base[0]); // the fastest frequency is extrapolated, unchanged
  assert.ok(Math.abs(yarn[yarn.length - 1] - base[base.length - 1] / 4) < 1e-6 * base[base.length - 1]); // the slowest interpolated
  // an override on a config that already has YaRN keeps its original context
  const tinyRaw = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'));
  const twice = parseConfig(applyRopeScaling(applyRopeScaling(tinyRaw, { type: 'yarn', factor: 2 }), { type: 'yarn', factor: 4 }));
  assert.equal(twice.text.maxPositionEmbeddings, 4 * t.maxPositionEmbeddings);
  assert.throws(() => applyRopeScaling(raw, { type: 'yarn', factor: 1 }), (e) => isQvlError(e, 'OPTION_INVALID'));
});
