/**
 * Downloads a media URL into memory or into a file, within a byte cap and a deadline, refusing
 * answers whose Content-Type is not media (an HTML error page decoded as an image helps nobody).
 */
import { createWriteStream } from 'node:fs';
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

export function fetchToFile(url: string, file: string, p: FetchParams): Promise<FetchedFile> {
  const out = createWriteStream(file, { flags: 'w' });
  const opened = new Promise<void>((res, rej) => out.once('open', () => res()).once('error', rej));
  return download(url, p, {
    write: async (c) => {
      await opened;
      if (!out.write(c)) await new Promise<void>((res, rej) => out.once('drain', res).once('error', rej));
    },
    finish: () => new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res()))),
    abandon: () => out.destroy(),
  });
}

interface Sink {
  write(chunk: Buffer): Promise<void>;
  finish(): Promise<void>;
  abandon(): void;
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
    sink.abandon();
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
