// The `isa` load option (`--isa` on the command line): one native kernel set instead of the
// widest the CPU runs, in process and in a worker; refused where it cannot apply.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { Qwen3VL } from '../src/api/qwen3vl.ts';
import { isQvlError } from '../src/errors.ts';
import { loadAddon } from '../src/kernels/native/addon.ts';
import { INSTRUCTION_SETS, KERNEL_SETS } from '../src/kernels/native/instruction-sets.ts';
import { SafetensorsFile } from '../src/weights/safetensors.ts';
import { readInts } from '../src/weights/tensor-reader.ts';
import { backend, isas, skipReason } from './native-util.ts';

const TINY = new URL('./fixtures/tiny/', import.meta.url).pathname;
const BIN = new URL('../bin/qvl.mjs', import.meta.url).pathname;
const nativeSkip = process.env.CI === 'true' ? false : skipReason;
const question = [{ role: 'user', content: 'Name three primary colors and explain why.' }];
const hfTokens = () => readInts(SafetensorsFile.open(`${TINY}case_a_text.safetensors`), 'generated_ids');

test('isa: refused with the ts backend, with a backend passed in, and when it names no set', async () => {
  await assert.rejects(Qwen3VL.fromPretrained(TINY, { backend: 'ts', isa: 'avx2' }), (e: unknown) => isQvlError(e, 'OPTION_INVALID') && /isa "avx2"/.test(e.message) && /ts backend/.test(e.message));
  const { TsBackend } = await import('../src/kernels/ts/backend.ts');
  await assert.rejects(Qwen3VL.fromPretrained(TINY, { backend: new TsBackend(), isa: 'avx2' }), (e: unknown) => isQvlError(e, 'OPTION_INVALID') && /isa/.test(e.message));
  await assert.rejects(
    Qwen3VL.fromPretrained(TINY, { isa: 'avx9' as never }),
    (e: unknown) => isQvlError(e, 'OPTION_INVALID') && /isa must be one of best, avx512vnni, avx512, avx2vnni, avx2, scalar, got "avx9"/.test(e.message),
  );
});

test('isa: the command line refuses an unknown set and a set with the ts backend', () => {
  const unknown = spawnSync(process.execPath, [BIN, 'run', '-m', TINY, '--isa', 'avx9', 'hi'], { encoding: 'utf8' });
  assert.notEqual(unknown.status, 0);
  assert.match(unknown.stderr, /--isa <set>' argument 'avx9' is invalid/);
  const ts = spawnSync(process.execPath, [BIN, 'run', '-m', TINY, '--backend', 'ts', '--isa', 'avx2', 'hi'], { encoding: 'utf8' });
  assert.notEqual(ts.status, 0);
  assert.match(ts.stderr, /isa "avx2" picks native kernels; the ts backend has none/);
});

test('isa: each set this CPU runs is the one info() reports, with HF\'s greedy tokens', { skip: nativeSkip, timeout: 120_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const sets = isas(backend());
  assert.ok(sets.includes('scalar'), 'the portable set runs everywhere');
  try {
    for (const isa of sets) {
      const model = await Qwen3VL.fromPretrained(TINY, { backend: 'native', isa });
      assert.equal(model.info().isa, isa);
      const r = await model.chat(question, { temperature: 0, maxNewTokens: 8 });
      assert.deepEqual(r.tokenIds, hfTokens(), `${isa}: greedy tokens`);
    }
  } finally {
    backend().useInstructionSet('best');
  }
});

test('isa: the addon knows every name the library offers, and no other', { skip: nativeSkip }, () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const addon = loadAddon();
  try {
    for (const isa of INSTRUCTION_SETS) {
      try {
        addon.setIsa(isa);
      } catch (e) {
        // a set the CPU lacks; a name the addon does not know would say "unknown"
        assert.match((e as Error).message, new RegExp(`^instruction set '${isa}' is not available on this CPU$`), isa);
      }
    }
    assert.throws(() => addon.setIsa('avx9' as never), /^RangeError: unknown instruction set 'avx9'$/);
  } finally {
    addon.setIsa('best');
  }
});

test('isa: a set this CPU lacks is an error naming it, not a fallback', { skip: nativeSkip }, async (t) => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const missing = KERNEL_SETS.find((s) => !isas(backend()).includes(s));
  if (!missing) return t.skip('this CPU runs every kernel set');
  await assert.rejects(Qwen3VL.fromPretrained(TINY, { isa: missing }), (e: unknown) => isQvlError(e, 'BACKEND_UNAVAILABLE') && e.message.includes(`'${missing}'`));
});

test('isa: a worker runs the set it was given; the loading thread keeps its own', { skip: nativeSkip, timeout: 120_000 }, async () => {
  assert.ok(!skipReason, `CI=true and ${skipReason}`);
  const { WorkerModel } = await import('../src/api/worker-host.ts');
  const here = backend().isa;
  const w = await WorkerModel.load(TINY, { backend: 'native', isa: 'scalar' });
  try {
    assert.equal(w.info.isa, 'scalar');
    assert.equal(backend().isa, here, 'the main thread kept its kernel set');
    const r = await w.chat(question, { temperature: 0, maxNewTokens: 8 });
    assert.deepEqual(r.tokenIds, hfTokens());
  } finally {
    await w.close();
  }
});
