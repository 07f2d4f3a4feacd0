import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { KvType } from '../src/kernels/kv.ts';
import { runParity } from '../src/parity/run-parity.ts';
import type { StageCheck } from '../src/parity/compare.ts';
import { skipReason } from './native-util.ts';

// Every HF reference folder with a model: the tiny one and those made by tools/reference.
const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const FOLDERS = fs
  .readdirSync(FIXTURES)
  .map((d) => path.join(FIXTURES, d))
  .filter((d) => fs.existsSync(path.join(d, 'model.safetensors')) && fs.readdirSync(d).some((f) => /^case_.*\.json$/.test(f)));

async function checks(dir: string, kvType: KvType, only?: string[]): Promise<StageCheck[]> {
  return runParity(dir, { backend: 'native', kvType, only });
}

test('a 16-bit KV cache (bf16, f16) keeps HF\'s greedy tokens on every parity fixture', { skip: skipReason, timeout: 300_000 }, async () => {
  assert.ok(FOLDERS.length >= 5, `expected the tiny folder and the parity-* folders, found ${FOLDERS.map((f) => path.basename(f))}`);
  let cases = 0;
  for (const dir of FOLDERS) {
    for (const kvType of ['bf16', 'f16'] as const) {
      const all = await checks(dir, kvType);
      const greedy = all.filter((c) => c.stage === 'greedy_tokens' || c.stage === 'generated_text');
      for (const c of greedy) assert.ok(c.ok, `${path.basename(dir)} ${c.case} ${kvType}: ${c.stage} ${c.diff} differ ${c.detail ?? ''}`);
      if (kvType === 'bf16') cases += greedy.filter((c) => c.stage === 'greedy_tokens').length;
    }
  }
  // a guard: the comparison must really have run on the fixtures' generations
  assert.ok(cases >= 10, `only ${cases} cases with greedy generations were checked`);
});

test('a q8 KV cache keeps HF\'s top-1 token at ≥ 99% of positions of the long-text, video and long-context fixtures', { skip: skipReason, timeout: 300_000 }, async (t) => {
  const wanted: Array<[string, string[]]> = [
    [path.join(FIXTURES, 'tiny'), ['case_e_long_text', 'case_d_video']],
    [path.join(FIXTURES, 'parity-longctx-yarn'), ['case_']],
  ];
  let flips = 0;
  let positions = 0;
  const seen: string[] = [];
  for (const [dir, only] of wanted) {
    if (!fs.existsSync(path.join(dir, 'model.safetensors'))) continue;
    for (const c of await checks(dir, 'q8', only)) {
      if (c.stage !== 'top1(all positions)') continue;
      flips += c.diff;
      positions += c.total ?? 0;
      seen.push(`${path.basename(dir)}/${c.case}: ${c.detail}`);
    }
  }
  assert.ok(seen.length >= 2 && positions >= 380, `top-1 was compared on too little: ${seen.join('; ')}`);
  const agree = 1 - flips / positions;
  t.diagnostic(`q8 KV top-1 agreement ${(100 * agree).toFixed(2)}% of ${positions} positions: ${seen.join('; ')}`);
  assert.ok(agree >= 0.99, `q8 KV: top-1 identical at ${(100 * agree).toFixed(2)}% of ${positions} positions (${seen.join('; ')})`);
});
