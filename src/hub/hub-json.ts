/** GET a small JSON document from a hub API, with the hub's error messages (401 → token hint). */
import { QvlError } from '../errors.ts';
import { httpGet } from '../media/http-get.ts';
import { hubHttpError, type HttpSettings } from './download-file.ts';

const MAX_JSON_BYTES = 32 * 1024 * 1024;

export async function getJson(url: string, headers: Record<string, string>, http: HttpSettings, label: string): Promise<unknown> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await getJsonOnce(url, headers, http, label);
    } catch (e) {
      const again = e instanceof QvlError && e.detail.retriable === true && attempt < http.retries && !http.signal?.aborted;
      if (!again) throw e;
    }
  }
}

async function getJsonOnce(url: string, headers: Record<string, string>, http: HttpSettings, label: string): Promise<unknown> {
  let got;
  try {
    got = await httpGet(url, {
      headers: { accept: 'application/json', ...headers },
      maxRedirects: http.maxRedirects,
      connectTimeoutMs: http.connectTimeoutMs,
      readTimeoutMs: http.readTimeoutMs,
      allowPrivateNetwork: true,
      signal: http.signal,
      errorCode: 'DOWNLOAD_FAILED',
      label,
    });
  } catch (e) {
    if (e instanceof QvlError && e.code === 'DOWNLOAD_FAILED') e.detail.retriable = true;
    throw e;
  }
  const { response, close } = got;
  try {
    const status = response.statusCode ?? 0;
    if (status !== 200) {
      const err = hubHttpError(status, label, 'authorization' in headers, response.headers['x-error-code'] as string | undefined);
      if (status >= 500 || status === 429) err.detail.retriable = true;
      throw err;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of response as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > MAX_JSON_BYTES) throw new QvlError('DOWNLOAD_FAILED', `${label}: answer larger than ${MAX_JSON_BYTES} bytes`, { url: label });
      chunks.push(c);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new QvlError('DOWNLOAD_FAILED', `${label}: the hub answered with something that is not JSON`, { url: label });
    }
  } finally {
    close();
  }
}
