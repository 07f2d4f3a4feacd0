/**
 * Downloads a media URL into memory or into a file, within a byte cap and a deadline, refusing
 * answers whose Content-Type is not media (an HTML error page decoded as an image helps nobody).
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { QvlError } from '../errors.ts';
import { describeUrl, httpGet } from './http-get.ts';
import type { ResolvedLimits } from './source-options.ts';

export interface FetchedMedia {
  bytes: Uint8Array;
  contentType: string | undefined;
  finalUrl: string;
}

export interface FetchedFile {
  size: number;
  contentType: string | undefined;
  finalUrl: string;
}

interface FetchParams {
  limits: ResolvedLimits;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export function fetchToMemory(url: string, p: FetchParams): Promise<FetchedMedia> {
  const chunks: Buffer[] = [];
  return download(url, p, {
    write: async (c) => void chunks.push(c),
    finish: async () => undefined,
    abandon: () => void (chunks.length = 0),
  }).then(({ size, contentType, finalUrl }) => {
    const all = Buffer.concat(chunks, size);
    return { bytes: new Uint8Array(all.buffer, all.byteOffset, all.byteLength), contentType, finalUrl };
  });
}

/**
 * The file is opened with the first byte of an accepted answer, not before: a refused URL (a
 * private address, an HTTP error) never opens it, and a download abandoned after that waits for
 * the file to close. Opened early, a refusal left the open in flight while the caller removed the
 * file's directory, and its ENOENT (naming the temporary path) surfaced in the request.
 */
export function fetchToFile(url: string, file: string, p: FetchParams): Promise<FetchedFile> {
  let out: WriteStream | undefined;
  let failure: Error | undefined;
  const open = (): WriteStream => {
    if (!out) {
      out = createWriteStream(file, { flags: 'w' });
      out.on('error', (e) => void (failure ??= e));
    }
    if (failure) throw failure;
    return out;
  };
  return download(url, p, {
    write: async (c) => {
      const s = open();
      if (!s.write(c)) await new Promise<void>((res, rej) => s.once('drain', res).once('error', rej));
    },
    finish: () => {
      const s = open(); // an empty answer is an empty file
      return new Promise<void>((res, rej) => s.end((e?: Error | null) => (e ? rej(e) : failure ? rej(failure) : res())));
    },
    abandon: () => {
      const s = out;
      if (!s || s.closed) return;
      return new Promise<void>((res) => {
        s.once('close', () => res());
        s.destroy();
      });
    },
  });
}

interface Sink {
  write(chunk: Buffer): Promise<void>;
  finish(): Promise<void>;
  /** Drops what was written; a promise where something must close first. */
  abandon(): void | Promise<void>;
}

async function download(url: string, p: FetchParams, sink: Sink): Promise<FetchedFile> {
  const label = describeUrl(url);
  const { limits } = p;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), limits.totalTimeoutMs);
  const onOuterAbort = () => deadline.abort();
  p.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const timedOut = () =>
    new QvlError('MEDIA_SOURCE', `${label}: download did not finish within ${limits.totalTimeoutMs} ms`, {
      source: label,
      reason: 'total timeout',
    });
  try {
    let got;
    try {
      got = await httpGet(url, {
        headers: { 'user-agent': 'qvl', 'accept-encoding': 'identity', ...(p.headers ?? {}) },
        maxRedirects: limits.maxRedirects,
        connectTimeoutMs: limits.connectTimeoutMs,
        readTimeoutMs: limits.readTimeoutMs,
        allowPrivateNetwork: limits.allowPrivateNetwork,
        allowedAddresses: limits.allowedAddresses,
        signal: deadline.signal,
        errorCode: 'MEDIA_SOURCE',
        label,
      });
    } catch (e) {
      if (deadline.signal.aborted && !p.signal?.aborted) throw timedOut();
      throw e;
    }
    const { response, finalUrl, close } = got;
    try {
      const status = response.statusCode ?? 0;
      if (status !== 200) {
        throw new QvlError('MEDIA_SOURCE', `${label}: HTTP ${status} ${response.statusMessage ?? ''}`.trim(), { source: label, status });
      }
      const contentType = response.headers['content-type']?.split(';')[0]!.trim().toLowerCase();
      if (contentType && !limits.contentTypes.some((prefix) => contentType.startsWith(prefix))) {
        throw new QvlError('MEDIA_SOURCE', `${label}: the server answered with Content-Type ${contentType}, which is not media of the expected kind`, {
          source: label,
          contentType,
        });
      }
      const declared = Number(response.headers['content-length']);
      if (Number.isFinite(declared) && declared > limits.maxBytes) throw tooLarge(label, declared, limits.maxBytes);
      let size = 0;
      for await (const chunk of response as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > limits.maxBytes) throw tooLarge(label, size, limits.maxBytes, true);
        await sink.write(chunk);
      }
      if (Number.isFinite(declared) && size !== declared) {
        throw new QvlError('MEDIA_SOURCE', `${label}: connection closed after ${size} of ${declared} bytes`, { source: label });
      }
      await sink.finish();
      return { size, contentType, finalUrl: finalUrl.href };
    } finally {
      close();
    }
  } catch (e) {
    await sink.abandon();
    if (deadline.signal.aborted && !p.signal?.aborted && !(e instanceof QvlError && e.code !== 'ABORTED')) throw timedOut();
    if (e instanceof QvlError) throw e;
    if (deadline.signal.aborted && !p.signal?.aborted) throw timedOut();
    throw new QvlError('MEDIA_SOURCE', `${label}: ${(e as Error).message}`, { source: label });
  } finally {
    clearTimeout(timer);
    p.signal?.removeEventListener('abort', onOuterAbort);
  }
}

function tooLarge(label: string, size: number, limit: number, partial = false): QvlError {
  return new QvlError('MEDIA_TOO_LARGE', `${label}: ${partial ? 'more than ' : ''}${size} bytes, over the limit of ${limit}`, {
    source: label,
    size,
    limit,
  });
}
