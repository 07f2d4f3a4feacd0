/**
 * The hashes the Hub names files by: sha256 of the contents for LFS files (the `X-Linked-Etag`),
 * and git's blob sha1 (`sha1("blob <size>\0" + contents)`) for files kept in git (the `ETag`).
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';

export type HashKind = 'sha256' | 'git-sha1';

/** Strips quotes and a weak-validator prefix: `W/"abc"` → `abc`. */
export function normalizeEtag(etag: string | undefined): string | undefined {
  if (!etag) return undefined;
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

/** A 64-hex etag is an LFS sha256; a 40-hex one is a git blob sha1. */
export function hashKindOf(etag: string): HashKind | undefined {
  if (/^[0-9a-f]{64}$/.test(etag)) return 'sha256';
  if (/^[0-9a-f]{40}$/.test(etag)) return 'git-sha1';
  return undefined;
}

export async function hashFile(file: string, kind: HashKind): Promise<string> {
  const h = createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') h.update(`blob ${statSync(file).size}\0`);
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

export function hashBytes(bytes: Uint8Array, kind: HashKind): string {
  const h = createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') h.update(`blob ${bytes.byteLength}\0`);
  h.update(bytes);
  return h.digest('hex');
}
