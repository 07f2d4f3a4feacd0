/**
 * One file from a model hub into the cache's blobs/ folder, resumable: bytes go to
 * `<blob>.incomplete`, an interrupted transfer continues with an HTTP Range request from the bytes
 * already there, and the blob only gets its final name once its size and hash are verified.
 */
import { createWriteStream, existsSync, mkdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import { dropAuthAcrossHosts, httpGet } from '../media/http-get.ts';
import { hashFile, hashKindOf, normalizeEtag } from './hashes.ts';

export interface HttpSettings {
  connectTimeoutMs: number;
  readTimeoutMs: number;
  maxRedirects: number;
  /** network failures are retried this many times, resuming where the data stopped */
  retries: number;
  signal?: AbortSignal;
}

export interface RemoteFileInfo {
  /** sha256 (LFS) or git blob sha1, the blob's file name */
  etag: string;
  size?: number;
  /** commit the hub served the file from (`X-Repo-Commit`) */
  commit?: string;
}

/** What a hub's answer says about a file, from the first response (before any CDN redirect). */
export function fileInfoFromHeaders(h: Record<string, string | string[] | undefined>): Partial<RemoteFileInfo> {
  const one = (k: string) => (Array.isArray(h[k]) ? (h[k] as string[])[0] : (h[k] as string | undefined));
  const etag = normalizeEtag(one('x-linked-etag') ?? one('etag'));
  const size = Number(one('x-linked-size') ?? NaN);
  return { etag, size: Number.isFinite(size) ? size : undefined, commit: one('x-repo-commit') };
}

export function hubHttpError(status: number, label: string, hasToken: boolean, errorCode?: string): QvlError {
  const detail = { file: label, status, hubError: errorCode };
  if (status === 401 || status === 403) {
    const hint = hasToken
      ? 'the token was refused: check that it is valid and that you accepted the model licence on its page'
      : 'the repository is gated or private: set HF_TOKEN (or pass a token) and accept its licence on the model page';
    return new QvlError('DOWNLOAD_FAILED', `${label}: HTTP ${status}, ${hint}`, detail);
  }
  if (status === 404) return new QvlError('DOWNLOAD_FAILED', `${label}: not found (HTTP 404${errorCode ? `, ${errorCode}` : ''})`, detail);
  return new QvlError('DOWNLOAD_FAILED', `${label}: HTTP ${status}`, detail);
}

export interface BlobDownload {
  url: string;
  blobPath: string;
  expected: { etag: string; size?: number };
  headers: Record<string, string>;
  label: string;
  http: HttpSettings;
  /** called as bytes arrive: bytes of this file on disk so far, and its size when known */
  onBytes?: (done: number, total: number | undefined) => void;
}

/** Downloads (or finishes downloading) a blob and verifies it. Returns its size. */
export async function downloadBlob(d: BlobDownload): Promise<number> {
  if (existsSync(d.blobPath)) return statSync(d.blobPath).size;
  mkdirSync(path.dirname(d.blobPath), { recursive: true });
  const incomplete = `${d.blobPath}.incomplete`;
  for (let attempt = 0; ; attempt++) {
    try {
      await transfer(d, incomplete);
      break;
    } catch (e) {
      const retriable = e instanceof QvlError && e.code === 'DOWNLOAD_FAILED' && e.detail.retriable === true;
      if (!retriable || attempt >= d.http.retries || d.http.signal?.aborted) throw e;
    }
  }
  const size = statSync(incomplete).size;
  if (d.expected.size !== undefined && size !== d.expected.size) {
    unlinkSync(incomplete);
    throw new QvlError('DOWNLOAD_FAILED', `${d.label}: downloaded ${size} bytes, expected ${d.expected.size}`, { file: d.label });
  }
  const kind = hashKindOf(d.expected.etag);
  if (kind !== undefined) {
    const got = await hashFile(incomplete, kind);
    if (got !== d.expected.etag) {
      unlinkSync(incomplete);
      throw new QvlError('DOWNLOAD_FAILED', `${d.label}: corrupted download, ${kind} is ${got} but the hub lists ${d.expected.etag}; it was deleted, run again`, {
        file: d.label,
        expected: d.expected.etag,
        actual: got,
      });
    }
  }
  renameSync(incomplete, d.blobPath);
  return size;
}

function retriable(e: unknown, label: string): QvlError {
  if (e instanceof QvlError && e.code !== 'DOWNLOAD_FAILED') return e; // aborted and friends
  const msg = e instanceof Error ? e.message : String(e);
  return new QvlError('DOWNLOAD_FAILED', e instanceof QvlError ? msg : `${label}: ${msg}`, { file: label, retriable: true });
}

async function transfer(d: BlobDownload, incomplete: string): Promise<void> {
  const have = existsSync(incomplete) ? statSync(incomplete).size : 0;
  if (d.expected.size !== undefined && have === d.expected.size) return; // complete but not yet verified
  if (d.expected.size !== undefined && have > d.expected.size) unlinkSync(incomplete);
  const start = existsSync(incomplete) ? have : 0;
  const headers: Record<string, string> = { 'accept-encoding': 'identity', ...d.headers };
  if (start > 0) headers.range = `bytes=${start}-`;
  let got;
  try {
    got = await httpGet(d.url, {
      headers,
      maxRedirects: d.http.maxRedirects,
      connectTimeoutMs: d.http.connectTimeoutMs,
      readTimeoutMs: d.http.readTimeoutMs,
      allowPrivateNetwork: true, // the endpoint is chosen by whoever configures qvl, not by a request
      signal: d.http.signal,
      errorCode: 'DOWNLOAD_FAILED',
      label: d.label,
      redirectHeaders: dropAuthAcrossHosts,
    });
  } catch (e) {
    throw retriable(e, d.label);
  }
  const { response, close } = got;
  try {
    const status = response.statusCode ?? 0;
    if (status === 416 && start > 0) {
      // the server has nothing past what we hold: the partial file may be whole, verification decides
      return;
    }
    if (status !== 200 && status !== 206) {
      const err = hubHttpError(status, d.label, 'authorization' in d.headers, response.headers['x-error-code'] as string | undefined);
      if (status >= 500 || status === 429) err.detail.retriable = true;
      throw err;
    }
    let offset = 0;
    if (status === 206) {
      const m = /^bytes (\d+)-/.exec(String(response.headers['content-range'] ?? ''));
      offset = m ? Number(m[1]) : -1;
      if (offset !== start) throw new QvlError('DOWNLOAD_FAILED', `${d.label}: the server resumed at byte ${offset}, not ${start}`, { file: d.label });
    }
    // 200 means the whole file again: start over
    const out = createWriteStream(incomplete, { flags: status === 206 ? 'a' : 'w' });
    let done = offset;
    const total = d.expected.size;
    try {
      for await (const chunk of response as AsyncIterable<Buffer>) {
        done += chunk.length;
        if (total !== undefined && done > total) {
          throw new QvlError('DOWNLOAD_FAILED', `${d.label}: the server sent more than the ${total} bytes listed`, { file: d.label });
        }
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', r));
        d.onBytes?.(done, total);
      }
    } catch (e) {
      if (e instanceof QvlError && !(e.detail.retriable === true) && e.code === 'DOWNLOAD_FAILED') throw e;
      throw retriable(e, d.label);
    } finally {
      await new Promise<void>((r) => out.end(() => r()));
    }
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && done - offset < declared) {
      throw new QvlError('DOWNLOAD_FAILED', `${d.label}: connection closed after ${done} bytes`, { file: d.label, retriable: true });
    }
  } finally {
    close();
  }
}
