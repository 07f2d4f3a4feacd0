import { QvlError } from '../errors.ts';
import type { Backend } from './backend.ts';
import type { WeightData } from './weight.ts';
import { INSTRUCTION_SETS, type InstructionSet } from './native/instruction-sets.ts';
import { TsBackend } from './ts/backend.ts';

export { INSTRUCTION_SETS, type InstructionSet };

export type BackendName = 'ts' | 'native' | 'auto';

export interface BackendChoice {
  backend: Backend;
  /** maps a weight file into memory (native backend), so tensors are read from the page cache */
  map?: (file: string) => ArrayBuffer;
  /** releases the mapped pages of a source weight once it was converted at load */
  release?: (w: WeightData) => void;
}

let fallbackNoticed = false;

/** Says once per thread, on stderr, that `auto` fell back to the (much slower) TypeScript kernels, and why. */
function noticeFallback(why: string): void {
  if (fallbackNoticed) return;
  fallbackNoticed = true;
  process.stderr.write(`qvl: using the TypeScript backend (about 20x slower than native): ${why}\n`);
}

/**
 * 'native' needs the C++ addon (prebuilt, or built at npm install); 'auto' takes it when it
 * loads and otherwise falls back to the TypeScript kernels, saying so once on stderr; 'ts'
 * always uses the TypeScript kernels. `isa` forces one native kernel set (on the calling thread);
 * with it, 'auto' does not fall back: a set that is asked for and missing is an error.
 */
export async function selectBackend(name: BackendName = 'auto', opts: { threads?: number; isa?: InstructionSet } = {}): Promise<BackendChoice> {
  if (opts.isa !== undefined && !INSTRUCTION_SETS.includes(opts.isa)) {
    throw new QvlError('OPTION_INVALID', `isa must be one of ${INSTRUCTION_SETS.join(', ')}, got "${String(opts.isa)}"`, { isa: opts.isa });
  }
  if (name === 'ts') {
    if (opts.isa !== undefined) throw new QvlError('OPTION_INVALID', `isa "${opts.isa}" picks native kernels; the ts backend has none`, { isa: opts.isa, backend: name });
    return { backend: new TsBackend() };
  }
  if (name !== 'native' && name !== 'auto') {
    throw new QvlError('OPTION_INVALID', `backend must be "ts", "native" or "auto", got "${String(name)}"`, { backend: name });
  }
  try {
    const native = await import('./native/index.ts');
    const backend = native.loadNativeBackend({ threads: opts.threads });
    if (opts.isa !== undefined) backend.useInstructionSet(opts.isa);
    return { backend, map: native.mmapFile, release: native.releaseMappedWeight };
  } catch (e) {
    if (name === 'native' || opts.isa !== undefined) {
      if (e instanceof QvlError) throw e;
      throw new QvlError('BACKEND_UNAVAILABLE', `the native backend could not be loaded: ${(e as Error).message}`, {});
    }
    noticeFallback((e as Error).message);
    return { backend: new TsBackend() };
  }
}
