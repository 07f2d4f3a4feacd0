/**
 * Connections to the Redis that holds the batch queue and its results. Three kinds, because they
 * fail differently on purpose: a command a person runs (submit, status, results) gives up within
 * seconds with a message naming the URL; the server keeps reconnecting but fails each request
 * while Redis is away (503); a worker waits for Redis to come back (a restart pauses it, never
 * ends it), which BullMQ requires of its worker connections anyway.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { QvlError } from '../errors.ts';

export type RedisRole = 'command' | 'service' | 'worker';

export function redisOptions(role: RedisRole): RedisOptions {
  const base: RedisOptions = { connectTimeout: 5000, lazyConnect: false };
  if (role === 'worker') return { ...base, maxRetriesPerRequest: null, retryStrategy: (n) => Math.min(100 * n, 2000) };
  if (role === 'service') return { ...base, maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(100 * n, 2000) };
  return { ...base, maxRetriesPerRequest: 1, retryStrategy: (n) => (n > 3 ? null : 100 * n) };
}

/** The URL without its password, for messages. */
export function describeRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

export function connectRedis(url: string, role: RedisRole): Redis {
  checkRedisUrl(url);
  const r = new Redis(url, redisOptions(role));
  // Errors surface on the commands that hit them; without a listener ioredis prints each retry.
  r.on('error', () => {});
  return r;
}

export function checkRedisUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new QvlError('OPTION_INVALID', `--redis: "${url}" is not a URL; expected redis://host:port (or rediss:// for TLS)`, { param: 'redis' });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new QvlError('OPTION_INVALID', `--redis: "${describeRedisUrl(url)}" must start with redis:// or rediss://`, { param: 'redis' });
  }
}

/** A Redis failure as an error a user can act on; `detail.unavailable` lets the server answer 503. */
export function redisUnavailable(url: string, e: unknown): QvlError {
  if (e instanceof QvlError) return e;
  const why = e instanceof Error ? e.message : String(e);
  return new QvlError('INTERNAL', `Redis at ${describeRedisUrl(url)} is not available: ${why}`, { redis: describeRedisUrl(url), unavailable: true });
}

/** Fails fast, naming the URL, when Redis cannot be reached. */
export async function pingRedis(redis: Redis, url: string): Promise<void> {
  try {
    await redis.ping();
  } catch (e) {
    throw redisUnavailable(url, e);
  }
}
