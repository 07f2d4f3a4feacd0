/**
 * A media source, as users write it, turned into bytes (or a file, for ffmpeg) under the limits
 * of `MediaSourceOptions`. Accepted: a local path, a `file://` URL, an http(s) URL, a `data:`
 * URI, bare Base64, or the bytes themselves.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import { decodeBase64Strict, parseDataUri } from './base64.ts';
import { fetchToFile, fetchToMemory } from './fetch-url.ts';
import { describeUrl } from './http-get.ts';
import { checkLocalPath, lexicallyAllowed, readLocalFile } from './local-file.ts';
import { type MediaKind, type MediaSourceOptions, resolveLimits } from './source-options.ts';

export type MediaSource = string | URL | Uint8Array | ArrayBuffer;

export type SourceType = 'bytes' | 'data-uri' | 'base64' | 'http' | 'file-url' | 'path';

export interface MediaBytes {
  bytes: Uint8Array;
  /** from a data URI or the HTTP Content-Type, when known */
  mimeType?: string;
  /** names the source in messages (a URL without its query, a path, "data URI (…)") */
  label: string;
  type: SourceType;
}

export interface MediaFile {
  path: string;
  mimeType?: string;
  label: string;
  type: SourceType;
  /** removes the temporary copy (a no-op for local files) */
  cleanup(): Promise<void>;
}

const BASE64_CHARS = /^[A-Za-z0-9+/\-_=\s]+$/;

/**
 * What kind of source a value is, without touching the network. With `allowedLocalDirs`, only
 * paths inside them are looked up on disk, so the answer cannot tell whether a file elsewhere exists.
 */
export function classifySource(source: MediaSource, allowedLocalDirs?: readonly string[]): SourceType {
  if (source instanceof URL) return classifySource(source.href, allowedLocalDirs);
  if (typeof source !== 'string') return 'bytes';
  const s = source.trim();
  if (/^data:/i.test(s)) return 'data-uri';
  if (/^https?:\/\//i.test(s)) return 'http';
  if (/^file:/i.test(s)) return 'file-url';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    throw new QvlError('MEDIA_FORBIDDEN', `${describeUrl(s)}: unsupported URL scheme (use http, https, file or data)`, { source: describeUrl(s) });
  }
  // Base64 never contains '.', and real file paths nearly always do (extensions); a long
  // dot-free string of Base64 characters that is not an existing file is taken as Base64.
  if (BASE64_CHARS.test(s) && !s.includes('.') && (s.length > 255 || !lexicallyAllowed(s, allowedLocalDirs) || !existsSync(s))) return 'base64';
  return 'path';
}

function labelOf(source: MediaSource, type: SourceType): string {
  if (type === 'bytes') return `in-memory ${(source as Uint8Array).byteLength ?? 0}-byte input`;
  const s = source instanceof URL ? source.href : (source as string).trim();
  if (type === 'http') return describeUrl(s);
  if (type === 'data-uri') return `data URI (${s.length} characters)`;
  if (type === 'base64') return `Base64 input (${s.length} characters)`;
  return s;
}

/** Resolves any source into bytes in memory. */
export async function loadMediaBytes(source: MediaSource, kind: MediaKind, opts: MediaSourceOptions = {}): Promise<MediaBytes> {
  const limits = resolveLimits(kind, opts);
  const type = classifySource(source, opts.allowedLocalDirs);
  const label = labelOf(source, type);
  const tooLarge = (size: number) =>
    new QvlError('MEDIA_TOO_LARGE', `${label}: ${size} bytes, over the limit of ${limits.maxBytes}`, { source: label, size, limit: limits.maxBytes });
  switch (type) {
    case 'bytes': {
      const bytes = source instanceof ArrayBuffer ? new Uint8Array(source) : (source as Uint8Array);
      if (bytes.byteLength > limits.maxBytes) throw tooLarge(bytes.byteLength);
      return { bytes, label, type };
    }
    case 'data-uri': {
      const { bytes, mimeType } = parseDataUri(String(source).trim(), limits.maxBytes);
      return { bytes, mimeType, label, type };
    }
    case 'base64': {
      const text = String(source).trim();
      if (Math.floor((text.length * 3) / 4) > limits.maxBytes + 3) throw tooLarge(Math.floor((text.length * 3) / 4));
      return { bytes: decodeBase64Strict(text, `${label} (neither an existing file nor valid Base64)`), label, type };
    }
    case 'http': {
      const got = await fetchToMemory(String(source).trim(), { limits, headers: opts.headers, signal: opts.signal });
      return { bytes: got.bytes, mimeType: got.contentType, label, type };
    }
    case 'file-url':
    case 'path': {
      const s = String(source).trim();
      const real = checkLocalPath(s, opts.allowedLocalDirs, type === 'file-url');
      return { bytes: await readLocalFile(real, s, limits.maxBytes), label, type };
    }
  }
}

/**
 * Resolves a source into a file on disk (what ffmpeg and ffprobe read). Local files are used in
 * place; downloads and in-memory data go to a private temporary directory that `cleanup` removes.
 */
export async function loadMediaFile(source: MediaSource, kind: MediaKind, opts: MediaSourceOptions = {}): Promise<MediaFile> {
  const limits = resolveLimits(kind, opts);
  const type = classifySource(source, opts.allowedLocalDirs);
  const label = labelOf(source, type);
  if (type === 'path' || type === 'file-url') {
    const s = String(source instanceof URL ? source.href : source).trim();
    const real = checkLocalPath(s, opts.allowedLocalDirs, type === 'file-url');
    const { size } = statSync(real);
    if (size > limits.maxBytes) {
      throw new QvlError('MEDIA_TOO_LARGE', `${s}: ${size} bytes, over the limit of ${limits.maxBytes}`, { source: s, size, limit: limits.maxBytes });
    }
    return { path: real, label, type, cleanup: async () => undefined };
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'qvl-media-'));
  const file = path.join(dir, 'input');
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    if (type === 'http') {
      const got = await fetchToFile(String(source instanceof URL ? source.href : source).trim(), file, {
        limits,
        headers: opts.headers,
        signal: opts.signal,
      });
      return { path: file, mimeType: got.contentType, label, type, cleanup };
    }
    const mem = await loadMediaBytes(source, kind, opts);
    await writeFile(file, mem.bytes, { mode: 0o600 });
    return { path: file, mimeType: mem.mimeType, label, type, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
