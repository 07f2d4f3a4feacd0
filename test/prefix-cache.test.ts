/**
 * Reuse across requests: the prefix cache (KV blocks of prompts that start the same way, pictures
 * matched by content) and the vision-embedding cache. A hit must answer what a miss answers; the
 * budgets bound what is kept; blocks go back to the pool.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadPromptParts } from '../src/api/prompt-parts.ts';
import { preparePrompt, type PreparedPrompt } from '../src/api/prompt.ts';
import { loadModelFromDir } from '../src/api/load-model.ts';
import { DecodeBatcher } from '../src/generate/batch.ts';
import type { GenerateResult } from '../src/generate/generate.ts';
import { loadGenerationDefaults } from '../src/generate/generation-config.ts';
import { selectBackend } from '../src/kernels/select.ts';
import { blockKeys, positionIdentities } from '../src/model/prefix-cache.ts';
import type { ReuseOptions } from '../src/model/qwen3vl.ts';
import { usageOf } from '../src/server/completion.ts';
import { skipReason } from './native-util.ts';

const TINY = path.join(import.meta.dirname, 'fixtures', 'tiny');
const img = (name: string) => ({ type: 'image', image: path.join(TINY, name) });
const nativeSkip = process.env.CI === 'true' ? false : skipReason;
const BLOCK = 16;

async function setup(reuse: ReuseOptions) {
  const { backend } = await selectBackend('native', {});
  const model = loadModelFromDir(TINY, { backend, kv: { blockTokens: BLOCK, type: 'f32' }, reuse });
  const batcher = new DecodeBatcher(model, { maxParallel: 2 });
  const parts = await loadPromptParts(TINY);
  const eos = loadGenerationDefaults(TINY).eosTokenIds;
  const run = async (p: PreparedPrompt, maxNewTokens = 12): Promise<GenerateResult> => {
    const g = batcher.submit(p, { maxNewTokens, eosTokenIds: eos, temperature: 0 });
    for await (const _ of g) {
      // the result holds the tokens
    }
    return g.result;
  };
  return { model, batcher, run, prepare: (messages: unknown) => preparePrompt(parts, messages), parts };
}

const turn1 = [{ role: 'user', content: [img('image_b.png'), { type: 'text', text: 'What colour is the shape? Answer in a few words.' }] }];

test('the next turn about the same picture reuses the first turn\'s blocks and answers what a fresh model answers', { skip: nativeSkip }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const cached = await setup({ prefixCacheBytes: 64 * 1024 * 1024, visionCacheBytes: 64 * 1024 * 1024 });
  const fresh = await setup({});
  const p1 = await cached.prepare(turn1);
  const a1 = await cached.run(p1);
  assert.equal(a1.cachedTokens, 0, 'nothing to reuse on the first request');
  const answer = cached.parts.tokenizer.decode(a1.tokens, { skipSpecialTokens: true });
  const turn2 = [...turn1, { role: 'assistant', content: answer }, { role: 'user', content: 'And its shape?' }];
  const p2 = await cached.prepare(turn2);
  const hit = await cached.run(p2);
  const miss = await fresh.run(await fresh.prepare(turn2));
  assert.deepEqual(hit.tokens, miss.tokens, 'a cache hit answers what a miss answers');
  // the shared part: the whole first prompt (the picture's pads among it) and what the answers share
  let shared = 0;
  while (shared < p1.ids.length && p1.ids[shared] === p2.ids[shared]) shared++;
  assert.equal(shared, p1.ids.length, 'turn 2 starts with turn 1');
  assert.ok(hit.cachedTokens! >= shared, `reused ${hit.cachedTokens} of the ${shared} shared tokens`);
  assert.ok(hit.cachedTokens! < p2.ids.length);
  const stats = cached.model.prefixCache!;
  assert.equal(stats.cachedTokens, hit.cachedTokens);
  // every block held now is held by the cache alone
  assert.equal(cached.model.kvPool().stats.used, stats.blocks);
  stats.clear();
  assert.equal(cached.model.kvPool().stats.used, 0);
});

test('another picture of the same size is not matched; the same picture after other text hits the vision cache', { skip: nativeSkip }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const c = await setup({ prefixCacheBytes: 64 * 1024 * 1024, visionCacheBytes: 64 * 1024 * 1024 });
  const fresh = await setup({});
  const ask = (image: string, before = '') => [{ role: 'user', content: [{ type: 'text', text: before }, img(image), { type: 'text', text: 'Describe it.' }] }];
  const first = await c.prepare(ask('video_frame_0.png'));
  const other = await c.prepare(ask('video_frame_3.png'));
  assert.deepEqual(first.imageGrids, other.imageGrids, 'the two pictures must have one size for this test');
  await c.run(first);
  const r = await c.run(other);
  // only the positions before the picture's first pad can match
  const firstPad = Array.from(other.ids).indexOf(c.model.cfg.imageTokenId);
  assert.ok(r.cachedTokens! <= firstPad && r.cachedTokens! > 0, `reused ${r.cachedTokens} tokens across different pictures (first pad at ${firstPad})`);
  assert.deepEqual(r.tokens, (await fresh.run(await fresh.prepare(ask('video_frame_3.png')))).tokens);
  // different text first: the prefix differs, the picture's vision output is reused
  const vc = c.model.visionCache!;
  const hits = vc.hits;
  const moved = await c.prepare(ask('video_frame_0.png', 'A long preamble that changes every position after it, so no block matches. '));
  const got = await c.run(moved);
  assert.equal(vc.hits, hits + 1, 'the vision cache answered');
  assert.deepEqual(got.tokens, (await fresh.run(await fresh.prepare(ask('video_frame_0.png', 'A long preamble that changes every position after it, so no block matches. ')))).tokens);
});

test('a small budget keeps only the most recent blocks; eviction returns them to the pool', { skip: nativeSkip }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const { model } = await setup({});
  const blockBytes = model.kvPool().layout.blockBytes;
  const c = await setup({ prefixCacheBytes: 3 * blockBytes });
  const long = (n: number) => [{ role: 'user', content: `${'word '.repeat(60)} number ${n}` }];
  for (let i = 0; i < 3; i++) await c.run(await c.prepare(long(i)), 4);
  const cache = c.model.prefixCache!;
  assert.ok(cache.blocks <= 3, `${cache.blocks} blocks kept over a budget of 3`);
  assert.equal(c.model.kvPool().stats.used, cache.blocks);
  // the last request's leading blocks (shared by all three) are still there: a fourth reuses them
  const r = await c.run(await c.prepare(long(9)), 4);
  assert.ok(r.cachedTokens! >= BLOCK, `reused ${r.cachedTokens}`);
});

test('block keys: chained, and vision pads keyed by their picture', () => {
  const ids = Array.from({ length: 40 }, (_, i) => (i >= 8 && i < 24 ? 7 : i));
  const idA = positionIdentities(ids, [{ start: 8, length: 16, key: 'picture-A' }]);
  const a = blockKeys(idA, 16);
  const b = blockKeys(positionIdentities(ids, [{ start: 8, length: 16, key: 'picture-B' }]), 16);
  assert.equal(a.length, 2, 'only whole blocks');
  assert.ok(idA[8] < 0 && idA[7] === 7, 'pads are negative, text keeps its id');
  assert.notEqual(a[0], b[0]);
  assert.notEqual(a[1], b[1], 'a later block differs when an earlier one does');
  // a changed text token (position 30) changes its block's key, not the one before
  const c = blockKeys(positionIdentities([...ids.slice(0, 30), 99, ...ids.slice(31)], [{ start: 8, length: 16, key: 'picture-A' }]), 16);
  assert.equal(c[0], a[0]);
  assert.notEqual(c[1], a[1]);
});

test('the server reports reused tokens as OpenAI does', () => {
  const u = usageOf({ usage: { promptTokens: 100, cachedTokens: 64, completionTokens: 5, totalTokens: 105 } } as never);
  assert.deepEqual(u, { prompt_tokens: 100, completion_tokens: 5, total_tokens: 105, prompt_tokens_details: { cached_tokens: 64 } });
});

test('a video conversation: turn 2 reuses the frames (pads split by timestamps) and answers what a fresh model answers', { skip: nativeSkip }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const c = await setup({ prefixCacheBytes: 64 * 1024 * 1024 });
  const fresh = await setup({});
  const frames = Array.from({ length: 8 }, (_, i) => path.join(TINY, `video_frame_${i}.png`));
  const t1 = [{ role: 'user', content: [{ type: 'video', video: frames, fps: 2 }, { type: 'text', text: 'What happens?' }] }];
  const p1 = await c.prepare(t1);
  const spans = c.model.mediaSpans(p1);
  assert.ok(spans.length >= 2, `the video's pads come in ${spans.length} runs`);
  const a1 = await c.run(p1, 8);
  const t2 = [...t1, { role: 'assistant', content: c.parts.tokenizer.decode(a1.tokens, { skipSpecialTokens: true }) }, { role: 'user', content: 'Again?' }];
  const hit = await c.run(await c.prepare(t2), 8);
  assert.ok(hit.cachedTokens! >= p1.ids.length, `reused ${hit.cachedTokens} of ${p1.ids.length}`);
  assert.deepEqual(hit.tokens, (await fresh.run(await fresh.prepare(t2), 8)).tokens);
});
