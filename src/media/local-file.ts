/**
 * Local media files: a plain path or a `file://` URL, checked against the directories the caller
 * allows. The check runs on the real path (symlinks and `..` resolved), so a link inside an
 * allowed directory cannot lead outside it.
 */
import { realpathSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QvlError } from '../errors.ts';

export function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * The real path of a local media file the caller may read.
 * `viaFileUrl`: the source was a `file://` URL, which needs an explicit allow-list.
 */
export function checkLocalPath(source: string, allowedLocalDirs: readonly string[] | undefined, viaFileUrl: boolean): string {
  let p = source;
  if (viaFileUrl) {
    if (allowedLocalDirs === undefined || allowedLocalDirs.length === 0) {
      throw new QvlError('MEDIA_FORBIDDEN', `${source}: file:// URLs are not allowed here (no allowed local directories are configured)`, {
        source,
      });
    }
    try {
      p = fileURLToPath(source);
    } catch (e) {
      throw new QvlError('MEDIA_SOURCE', `${source}: not a usable file URL (${(e as Error).message})`, { source });
    }
  } else if (allowedLocalDirs !== undefined && allowedLocalDirs.length === 0) {
    throw new QvlError('MEDIA_FORBIDDEN', `${source}: reading local files is not allowed here`, { source });
  }
  let real: string;
  try {
    real = realpathSync(path.resolve(p));
  } catch {
    throw new QvlError('MEDIA_SOURCE', `${source}: no such file`, { source, path: p });
  }
  if (allowedLocalDirs !== undefined) {
    const ok = allowedLocalDirs.some((d) => {
      try {
        return isInside(realpathSync(path.resolve(d)), real);
      } catch {
        return false;
      }
    });
    if (!ok) {
      throw new QvlError('MEDIA_FORBIDDEN', `${source}: resolves to ${real}, which is outside the allowed directories`, { source, path: real });
    }
  }
  const st = statSync(real);
  if (!st.isFile()) throw new QvlError('MEDIA_SOURCE', `${source}: not a regular file`, { source, path: real });
  return real;
}

export async function readLocalFile(real: string, source: string, maxBytes: number): Promise<Uint8Array> {
  const size = statSync(real).size;
  if (size > maxBytes) {
    throw new QvlError('MEDIA_TOO_LARGE', `${source}: ${size} bytes, over the limit of ${maxBytes}`, { source, size, limit: maxBytes });
  }
  const buf = await readFile(real);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
