/**
 * Local media files: a plain path or a `file://` URL, checked against the directories the caller
 * allows. The check runs on the path as written and again on the real path (symlinks and `..`
 * resolved), so a link inside an allowed directory cannot lead outside it.
 */
import { lstatSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QvlError } from '../errors.ts';

export function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Whether `p`, as written, lies in one of the allowed directories (or no allow-list is given);
 * decided without touching the file system, so nothing outside them is ever looked at.
 */
export function lexicallyAllowed(p: string, allowedLocalDirs: readonly string[] | undefined): boolean {
  if (allowedLocalDirs === undefined) return true;
  const abs = path.resolve(p);
  return allowedLocalDirs.some((d) => {
    const dir = path.resolve(d);
    if (isInside(dir, abs)) return true;
    try {
      return isInside(realpathSync(dir), abs);
    } catch {
      return false;
    }
  });
}

/**
 * Where `p` leads: its real path when it exists; otherwise the real path of its deepest existing
 * folder joined with the rest, following dangling links too, so that a missing target is judged
 * by where it would be.
 */
function resolveAsFar(p: string, hops = 0): { real: string; exists: boolean } | undefined {
  try {
    return { real: realpathSync(p), exists: true };
  } catch {
    // missing, dangling or unreadable: look closer below
  }
  if (hops > 40) return undefined; // a link loop
  try {
    if (lstatSync(p).isSymbolicLink()) return resolveAsFar(path.resolve(path.dirname(p), readlinkSync(p)), hops + 1);
  } catch {
    // not there at all: its folder decides
  }
  const parent = path.dirname(p);
  if (parent === p) return undefined;
  const up = resolveAsFar(parent, hops);
  return up && { real: path.join(up.real, path.basename(p)), exists: false };
}

/**
 * The real path of a local media file the caller may read.
 * `viaFileUrl`: the source was a `file://` URL, which needs an explicit allow-list.
 *
 * With an allow-list, messages never show the resolved path and say the same for a path outside
 * the allowed directories whether or not it exists, so a request cannot probe the rest of the
 * file system; "no such file" is said only inside them.
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
  const abs = path.resolve(p);
  const noSuchFile = () => new QvlError('MEDIA_SOURCE', `${source}: no such file`, { source });
  if (allowedLocalDirs === undefined) {
    let real: string;
    try {
      real = realpathSync(abs);
    } catch {
      throw noSuchFile();
    }
    if (!statSync(real).isFile()) throw new QvlError('MEDIA_SOURCE', `${source}: not a regular file`, { source });
    return real;
  }
  const outside = () => new QvlError('MEDIA_FORBIDDEN', `${source}: outside the allowed directories`, { source });
  const realDirs = allowedLocalDirs.flatMap((d) => {
    try {
      return [realpathSync(path.resolve(d))];
    } catch {
      return [];
    }
  });
  // lexical check first (resolve already folded `..`): nothing outside is looked at
  if (!lexicallyAllowed(abs, allowedLocalDirs)) throw outside();
  // then where it really leads, so a symlink inside cannot point outside
  const target = resolveAsFar(abs);
  if (target === undefined || !realDirs.some((d) => isInside(d, target.real))) throw outside();
  if (!target.exists) throw noSuchFile();
  if (!statSync(target.real).isFile()) throw new QvlError('MEDIA_SOURCE', `${source}: not a regular file`, { source });
  return target.real;
}

export async function readLocalFile(real: string, source: string, maxBytes: number): Promise<Uint8Array> {
  const size = statSync(real).size;
  if (size > maxBytes) {
    throw new QvlError('MEDIA_TOO_LARGE', `${source}: ${size} bytes, over the limit of ${maxBytes}`, { source, size, limit: maxBytes });
  }
  const buf = await readFile(real);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
