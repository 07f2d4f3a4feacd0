import { QvlError } from '../../errors.ts';
import type { WeightData } from '../weight.ts';
import { loadAddon } from './addon.ts';

/**
 * Maps a whole file read-only (a private mapping) and returns it as an ArrayBuffer backed by
 * the page cache; the mapping is released when the buffer is garbage-collected. Writing into
 * the buffer crashes the process: treat it as read-only.
 */
export function mmapFile(path: string): ArrayBuffer {
  const addon = loadAddon();
  try {
    return addon.mmapFile(path);
  } catch (e) {
    const errno = (e as { errno?: number }).errno;
    const code = errno === 2 ? 'FILE_NOT_FOUND' : 'NATIVE_ERROR';
    throw new QvlError(code, (e as Error).message, { path, errno });
  }
}

/**
 * Tells the OS that bytes [offset, offset+length) of a buffer from `mmapFile` are not needed
 * for now (after a weight was repacked elsewhere), so the page cache can drop them from this
 * process. Reading them again is still valid: the pages come back from the file. Returns the
 * number of bytes released (whole pages only).
 */
export function adviseDontNeed(buffer: ArrayBuffer, offset = 0, length = buffer.byteLength - offset): number {
  try {
    return loadAddon().adviseDontNeed(buffer, offset, length);
  } catch (e) {
    throw new QvlError('NATIVE_ERROR', (e as Error).message, { offset, length });
  }
}

/**
 * After a weight was converted at load (quantized), releases the pages of its source arrays that
 * lie in a buffer from `mmapFile`; arrays elsewhere are left alone. Without it every BF16 page
 * read by the quantizer stays resident: a 4B model quantized to q4 at load held 11.5 GiB.
 */
export function releaseMappedWeight(w: WeightData): void {
  const arrays: ArrayBufferView[] = 'data' in w ? [w.data] : [w.qs, w.scales];
  for (const a of arrays) {
    if (!a.byteLength) continue;
    try {
      loadAddon().adviseDontNeed(a.buffer as ArrayBuffer, a.byteOffset, a.byteLength);
    } catch {
      // not a mapping (read into memory): nothing to release
    }
  }
}
