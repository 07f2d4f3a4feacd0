import { QvlError } from '../../errors.ts';
import { addonAvailable, loadAddon } from './addon.ts';
import { NativeBackend } from './backend.ts';

export { NativeBackend } from './backend.ts';
export { INSTRUCTION_SETS, KERNEL_SETS, type InstructionSet, type KernelSet } from './instruction-sets.ts';
export { adviseDontNeed, mmapFile, releaseMappedWeight } from './mmap.ts';

/** True when the compiled addon is present and loads on this machine. */
export function nativeAvailable(): boolean {
  return addonAvailable();
}

/**
 * The native backend, with the thread pool sized to `threads` (default: the physical cores
 * this process may use). Throws QvlError BACKEND_UNAVAILABLE if the addon is not built or
 * does not load.
 */
export function loadNativeBackend(opts: { threads?: number } = {}): NativeBackend {
  const addon = loadAddon();
  const backend = new NativeBackend(addon);
  if (opts.threads !== undefined) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) {
      throw new QvlError('OPTION_INVALID', `threads must be a positive integer, got ${opts.threads}`, { threads: opts.threads });
    }
    backend.setThreads(opts.threads);
  }
  return backend;
}
