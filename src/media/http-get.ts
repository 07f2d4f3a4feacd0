/**
 * One HTTP(S) request with the guards a server needs when it fetches what a user names:
 * connect and idle-read time-outs, an overall deadline, a redirect limit, abort, and an address
 * policy applied to every address a host name resolves to, at every redirect hop. The connection
 * is pinned to an address that was checked, so a second DNS answer cannot swap in another one.
 * Used by media downloads and by model downloads (src/hub/).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { QvlError, type QvlErrorCode } from '../errors.ts';
import { forbiddenAddressReason } from './ip-policy.ts';

export interface HttpGetOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** follow at most this many redirects (0: a redirect is an error) */
  maxRedirects: number;
  connectTimeoutMs: number;
  /** longest silence while waiting for the response or its next bytes */
  readTimeoutMs: number;
  /** connect to loopback/private/link-local addresses too (tests, trusted intranets) */
  allowPrivateNetwork: boolean;
  /** exact addresses allowed even though private (a known intranet host); the rest stay refused */
  allowedAddresses?: readonly string[];
  signal?: AbortSignal;
  /** code of the QvlError for network failures, bad status, too many redirects */
  errorCode: QvlErrorCode;
  /** name of what is fetched, for messages (defaults to the URL without its query) */
  label?: string;
  /** headers for the next hop of a redirect; the default drops Authorization when the host changes */
  redirectHeaders?: (from: URL, to: URL, headers: Record<string, string>) => Record<string, string>;
  /** do not follow redirects: return the 3xx response to the caller */
  manualRedirect?: boolean;
}

export interface HttpGetResult {
  response: http.IncomingMessage;
  finalUrl: URL;
  /** the URLs visited, first to last */
  hops: URL[];
  /** destroy the connection (idempotent) */
  close(): void;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** A URL for messages: no credentials, no query string (it may hold signatures or tokens). */
export function describeUrl(url: URL | string): string {
  try {
    const u = typeof url === 'string' ? new URL(url) : url;
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return String(url).slice(0, 200);
  }
}

export function dropAuthAcrossHosts(from: URL, to: URL, headers: Record<string, string>): Record<string, string> {
  if (from.host === to.host && from.protocol === to.protocol) return headers;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() !== 'authorization' && k.toLowerCase() !== 'cookie') out[k] = v;
  return out;
}

/** Resolves a host and checks every address it has; returns the one to connect to. */
export async function resolveCheckedAddress(
  host: string,
  allowPrivate: boolean,
  label: string,
  errorCode: QvlErrorCode = 'MEDIA_SOURCE',
  allowedAddresses: readonly string[] = [],
): Promise<LookupAddress> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  let addresses: LookupAddress[];
  if (isIP(bare)) addresses = [{ address: bare, family: isIP(bare) }];
  else {
    try {
      addresses = await dnsLookup(bare, { all: true, verbatim: true });
    } catch (e) {
      throw new QvlError(errorCode, `${label}: cannot resolve host ${bare} (${(e as Error).message})`, { source: label, host: bare });
    }
  }
  if (addresses.length === 0) throw new QvlError(errorCode, `${label}: host ${bare} has no address`, { source: label, host: bare });
  if (!allowPrivate) {
    for (const a of addresses) {
      if (allowedAddresses.includes(a.address)) continue;
      const why = forbiddenAddressReason(a.address);
      if (why !== undefined) {
        throw new QvlError('MEDIA_FORBIDDEN', `${label}: host ${bare} resolves to ${why}; fetching from private networks is not allowed`, {
          source: label,
          host: bare,
          address: a.address,
        });
      }
    }
  }
  return addresses[0]!;
}

export async function httpGet(url: string | URL, opts: HttpGetOptions): Promise<HttpGetResult> {
  let current = typeof url === 'string' ? parseUrl(url, opts) : url;
  let headers = { ...(opts.headers ?? {}) };
  const hops: URL[] = [];
  const label = opts.label ?? describeUrl(current);
  for (let redirects = 0; ; redirects++) {
    hops.push(current);
    const result = await requestOnce(current, headers, opts, label);
    const status = result.response.statusCode ?? 0;
    if (opts.manualRedirect || !REDIRECTS.has(status)) return { ...result, finalUrl: current, hops };
    const location = result.response.headers.location;
    result.close();
    if (!location) throw new QvlError(opts.errorCode, `${label}: HTTP ${status} redirect without a Location header`, { source: label, status });
    if (redirects >= opts.maxRedirects) {
      throw new QvlError(opts.errorCode, `${label}: more than ${opts.maxRedirects} redirects`, { source: label, limit: opts.maxRedirects });
    }
    const next = parseUrl(new URL(location, current).href, opts, label);
    headers = (opts.redirectHeaders ?? dropAuthAcrossHosts)(current, next, headers);
    current = next;
  }
}

function parseUrl(text: string, opts: HttpGetOptions, label?: string): URL {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new QvlError(opts.errorCode, `${label ?? 'URL'}: ${JSON.stringify(text.slice(0, 200))} is not a valid URL`, { source: label ?? text });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new QvlError('MEDIA_FORBIDDEN', `${label ?? describeUrl(u)}: only http and https URLs can be fetched, not ${u.protocol}`, {
      source: label ?? describeUrl(u),
    });
  }
  return u;
}

function requestOnce(
  url: URL,
  headers: Record<string, string>,
  opts: HttpGetOptions,
  label: string,
): Promise<Omit<HttpGetResult, 'finalUrl' | 'hops'>> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let req: http.ClientRequest | undefined;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      req?.destroy();
      reject(e);
    };
    const onAbort = () => fail(new QvlError('ABORTED', `${label}: download aborted`, { source: label }));
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const connectTimer = setTimeout(
      () => fail(new QvlError(opts.errorCode, `${label}: no connection within ${opts.connectTimeoutMs} ms`, { source: label, reason: 'connect timeout' })),
      opts.connectTimeoutMs,
    );
    resolveCheckedAddress(url.hostname, opts.allowPrivateNetwork, label, opts.errorCode, opts.allowedAddresses).then(
      (pinned) => {
        if (settled) return;
        const lib = url.protocol === 'https:' ? https : http;
        req = lib.request(url, {
          method: opts.method ?? 'GET',
          headers,
          // connect only to the address that was checked
          lookup: ((_host: string, o: { all?: boolean }, cb: (...a: unknown[]) => void) => {
            if (o?.all) cb(null, [pinned]);
            else cb(null, pinned.address, pinned.family);
          }) as never,
          agent: false,
        });
        req.on('socket', (socket) => {
          const connected = () => clearTimeout(connectTimer);
          if (url.protocol === 'https:') socket.once('secureConnect', connected);
          else socket.once('connect', connected);
        });
        req.setTimeout(opts.readTimeoutMs, () =>
          fail(new QvlError(opts.errorCode, `${label}: no data for ${opts.readTimeoutMs} ms`, { source: label, reason: 'read timeout' })),
        );
        req.on('error', (e) => fail(new QvlError(opts.errorCode, `${label}: ${e.message}`, { source: label, reason: e.message })));
        req.on('response', (response) => {
          if (settled) return response.destroy();
          settled = true;
          clearTimeout(connectTimer);
          const r = req!;
          const close = () => {
            opts.signal?.removeEventListener('abort', closeOnAbort);
            r.destroy();
            response.destroy();
          };
          const closeOnAbort = () => response.destroy(new QvlError('ABORTED', `${label}: download aborted`, { source: label }));
          opts.signal?.removeEventListener('abort', onAbort);
          opts.signal?.addEventListener('abort', closeOnAbort, { once: true });
          response.once('close', () => opts.signal?.removeEventListener('abort', closeOnAbort));
          // the request's idle timer keeps guarding the body; turn its error into the stream's
          r.removeAllListeners('timeout');
          r.setTimeout(opts.readTimeoutMs, () =>
            response.destroy(new QvlError(opts.errorCode, `${label}: no data for ${opts.readTimeoutMs} ms`, { source: label, reason: 'read timeout' })),
          );
          r.removeAllListeners('error');
          r.on('error', (e) => response.destroy(e));
          resolve({ response, close });
        });
        req.end();
      },
      (e: Error) => fail(e),
    );
  });
}
