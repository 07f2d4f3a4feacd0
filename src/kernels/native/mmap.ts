import { QvlError } from '../../errors.ts';
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
