import { QvlError } from '../errors.ts';
import type { Backend } from './backend.ts';
import { TsBackend } from './ts/backend.ts';

export type BackendName = 'ts' | 'native' | 'auto';

export interface BackendChoice {
  backend: Backend;
  /** maps a weight file into memory (native backend), so tensors are read from the page cache */
  map?: (file: string) => ArrayBuffer;
}

/**
 * 'native' needs the C++ addon (built at npm install); 'auto' takes it when it loads and falls
 * back to the TypeScript kernels otherwise; 'ts' always uses the TypeScript kernels.
 */
export async function selectBackend(name: BackendName = 'auto', opts: { threads?: number } = {}): Promise<BackendChoice> {
  if (name === 'ts') return { backend: new TsBackend() };
  if (name !== 'native' && name !== 'auto') {
    throw new QvlError('OPTION_INVALID', `backend must be "ts", "native" or "auto", got "${String(name)}"`, { backend: name });
  }
  try {
    const native = await import('./native/index.ts');
    const backend = native.loadNativeBackend({ threads: opts.threads });
    return { backend, map: native.mmapFile };
  } catch (e) {
    if (name === 'native') {
      if (e instanceof QvlError) throw e;
      throw new QvlError('BACKEND_UNAVAILABLE', `the native backend could not be loaded: ${(e as Error).message}`, {});
    }
    return { backend: new TsBackend() };
  }
}
