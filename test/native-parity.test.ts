import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runParity } from '../src/parity/run-parity.ts';
import { backend, isas, skipReason } from './native-util.ts';

// The tiny cases against HF transformers on the native backend with the AVX2 kernel sets
// forced: what a CPU without AVX-512 runs, checked on any machine that can execute it.
const TINY = new URL('./fixtures/tiny/', import.meta.url).pathname;

for (const isa of ['avx2', 'avx2vnni'] as const) {
  test(`every stage of every tiny case matches HF transformers (native backend, --isa ${isa})`, { skip: skipReason, timeout: 300_000 }, async (t) => {
    const nb = backend();
    if (!isas(nb).includes(isa)) {
      t.skip(`this CPU cannot execute the ${isa} kernel set`);
      return;
    }
    nb.useInstructionSet(isa);
    try {
      const checks = await runParity(TINY, { backend: nb });
      const failed = checks.filter((c) => !c.ok);
      assert.deepEqual(failed, [], failed.map((c) => `${c.case} ${c.stage} ${c.diff} ${c.detail ?? ''}`).join('\n'));
      assert.ok(checks.some((c) => c.stage === 'greedy_tokens'), 'the generation stages ran');
    } finally {
      nb.useInstructionSet('best');
    }
  });
}
