/**
 * What qvl keeps in Redis beside BullMQ's own keys, all under `qvl-batch:<queue>:`:
 *
 *   batches               sorted set of batch ids by creation time
 *   batch:<id>            hash: the batch record, one JSON value per field
 *   batch:<id>:ids        list: custom_id of request i at index i
 *   batch:<id>:pending    set: indexes of requests with no outcome yet
 *   batch:<id>:out        hash: custom_id → output line (answered)
 *   batch:<id>:err        hash: custom_id → output line (failed for good)
 *   file:<id>             hash: uploaded file record and content
 *   workers, worker-info  live workers (heartbeat times) and what each serves
 *
 * Outcomes are keyed by custom_id and written by scripts that run atomically, so a request has
 * at most one outcome whatever the order of deliveries: an answer replaces an earlier failure, a
 * failure never replaces an answer.
 */
import type { Redis } from 'ioredis';
import type { BatchRecord, BatchStatus, FileRecord } from './format.ts';

/** HSET out; HDEL err; SREM pending; returns how many requests are left. KEYS: out, err, pending. ARGV: custom_id, line, index. */
const STORE_RESULT = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[3])
return redis.call('SCARD', KEYS[3])`;

/**
 * The failure unless the request has an answer (or, with ARGV[4] = '1', any outcome); returns
 * {stored 0/1, requests left}. KEYS: out, err, pending. ARGV: custom_id, line, index, only-if-none.
 */
const STORE_ERROR = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {0, redis.call('SCARD', KEYS[3])} end
if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {0, redis.call('SCARD', KEYS[3])} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SREM', KEYS[3], ARGV[3])
return {1, redis.call('SCARD', KEYS[3])}`;

/** Compare-and-set of the status. KEYS: batch. ARGV: expected statuses (JSON list), new status, then field/value pairs. */
const SET_STATUS = `
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return nil end
for _, s in ipairs(cjson.decode(ARGV[1])) do
  if cur == cjson.encode(s) then
    redis.call('HSET', KEYS[1], 'status', cjson.encode(ARGV[2]))
    for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
    return cjson.encode(ARGV[2])
  end
end
return cur`;

export interface WorkerInfo {
  name: string;
  host: string;
  pid: number;
  models: string[];
  parallel: number;
  started_at: number;
  completed: number;
  failed: number;
}

const now = () => Math.floor(Date.now() / 1000);

export class BatchStore {
  readonly redis: Redis;
  private readonly root: string;

  constructor(redis: Redis, queue: string) {
    this.redis = redis;
    this.root = `qvl-batch:${queue}`;
  }

  private key(id: string, part?: 'ids' | 'pending' | 'out' | 'err'): string {
    return part ? `${this.root}:batch:${id}:${part}` : `${this.root}:batch:${id}`;
  }

  async createBatch(rec: BatchRecord): Promise<void> {
    const fields: string[] = [];
    for (const [k, v] of Object.entries(rec)) if (v !== undefined) fields.push(k, JSON.stringify(v));
    await this.redis.multi().hset(this.key(rec.id), ...fields).zadd(`${this.root}:batches`, Date.now(), rec.id).exec();
  }

  /** Appends requests `first`, `first + 1`, … to the batch (ids and pending). */
  async addRequests(id: string, first: number, customIds: string[]): Promise<void> {
    if (customIds.length === 0) return;
    const indexes = customIds.map((_, i) => String(first + i));
    await this.redis.multi().rpush(this.key(id, 'ids'), ...customIds).sadd(this.key(id, 'pending'), ...indexes).exec();
  }

  async getBatch(id: string): Promise<BatchRecord | undefined> {
    const h = await this.redis.hgetall(this.key(id));
    if (!h.id) return undefined;
    const rec: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(h)) rec[k] = JSON.parse(v);
    return rec as unknown as BatchRecord;
  }

  async status(id: string): Promise<BatchStatus | undefined> {
    const s = await this.redis.hget(this.key(id), 'status');
    return s === null ? undefined : (JSON.parse(s) as BatchStatus);
  }

  /** Moves the batch to `to` if it is in one of `from`, stamping `<to>_at`; returns the status it has after. */
  async transition(id: string, from: BatchStatus[], to: BatchStatus, extra: Record<string, unknown> = {}): Promise<BatchStatus | undefined> {
    const fields = [`${to}_at`, JSON.stringify(now())];
    for (const [k, v] of Object.entries(extra)) fields.push(k, JSON.stringify(v));
    const r = (await this.redis.eval(SET_STATUS, 1, this.key(id), JSON.stringify(from), to, ...fields)) as string | null;
    return r === null ? undefined : (JSON.parse(r) as BatchStatus);
  }

  async counts(id: string): Promise<{ completed: number; failed: number; pending: number }> {
    const r = await this.redis.multi().hlen(this.key(id, 'out')).hlen(this.key(id, 'err')).scard(this.key(id, 'pending')).exec();
    const n = (i: number) => Number(r?.[i]?.[1] ?? 0);
    return { completed: n(0), failed: n(1), pending: n(2) };
  }

  /** What a worker checks before running a request, in one round trip: the batch's status, and whether it is answered. */
  async before(id: string, customId: string): Promise<{ status?: BatchStatus; answered: boolean }> {
    const r = await this.redis.multi().hget(this.key(id), 'status').hexists(this.key(id, 'out'), customId).exec();
    const status = r?.[0]?.[1];
    return { status: typeof status === 'string' ? (JSON.parse(status) as BatchStatus) : undefined, answered: r?.[1]?.[1] === 1 };
  }

  /** Stores an answer; returns how many requests of the batch are left without an outcome. */
  async storeResult(id: string, index: number, customId: string, line: string): Promise<number> {
    return (await this.redis.eval(STORE_RESULT, 3, this.key(id, 'out'), this.key(id, 'err'), this.key(id, 'pending'), customId, line, String(index))) as number;
  }

  /** Stores a failure unless the request was answered (`onlyIfNone`: unless it has any outcome). */
  async storeError(id: string, index: number, customId: string, line: string, onlyIfNone = false): Promise<{ stored: boolean; left: number }> {
    const r = (await this.redis.eval(STORE_ERROR, 3, this.key(id, 'out'), this.key(id, 'err'), this.key(id, 'pending'), customId, line, String(index), onlyIfNone ? '1' : '0')) as [number, number];
    return { stored: r[0] === 1, left: r[1] };
  }

  /** Once no request is left: in_progress → completed, cancelling → cancelled. */
  async finish(id: string): Promise<void> {
    if ((await this.transition(id, ['in_progress'], 'completed')) === 'cancelling') await this.transition(id, ['cancelling'], 'cancelled');
  }

  /**
   * The requests without an outcome, in chunks of about `chunk`: [index, custom_id]. Members
   * removed while this runs may or may not be seen; members present throughout are seen once.
   */
  async *pending(id: string, chunk = 1000): AsyncIterable<{ index: number; customId: string }[]> {
    // SSCAN may return a member twice: remember what was yielded
    const seen = new Set<number>();
    let cursor = '0';
    do {
      const [next, members] = await this.redis.sscan(this.key(id, 'pending'), cursor, 'COUNT', chunk);
      cursor = next;
      const fresh = members.map(Number).filter((i) => !seen.has(i));
      if (fresh.length === 0) continue;
      for (const i of fresh) seen.add(i);
      const p = this.redis.pipeline();
      for (const i of fresh) p.lindex(this.key(id, 'ids'), i);
      const r = (await p.exec()) ?? [];
      yield fresh.flatMap((index, k) => (typeof r[k]?.[1] === 'string' ? [{ index, customId: r[k]![1] as string }] : []));
    } while (cursor !== '0');
  }

  /**
   * Every outcome once, in input order: `output` (answers), `errors` (failures) or both. Walks the
   * id list rather than scanning the hashes, which may repeat entries while Redis resizes them.
   */
  async *lines(id: string, kind: 'output' | 'errors' | 'all'): AsyncIterable<string> {
    const total = await this.redis.llen(this.key(id, 'ids'));
    for (let i = 0; i < total; i += 1000) {
      const ids = await this.redis.lrange(this.key(id, 'ids'), i, i + 999);
      if (ids.length === 0) break;
      const [out, err] = await Promise.all([
        kind === 'errors' ? ids.map(() => null) : this.redis.hmget(this.key(id, 'out'), ...ids),
        kind === 'output' ? ids.map(() => null) : this.redis.hmget(this.key(id, 'err'), ...ids),
      ]);
      for (let k = 0; k < ids.length; k++) {
        const line = out[k] ?? err[k];
        if (line) yield line;
      }
    }
  }

  /** Batch ids, newest first; `after`: continue after this id. */
  async listBatches(limit: number, after?: string): Promise<string[]> {
    const key = `${this.root}:batches`;
    let max = '+inf';
    if (after) {
      const score = await this.redis.zscore(key, after);
      if (score !== null) max = `(${score}`;
    }
    return this.redis.zrevrangebyscore(key, max, '-inf', 'LIMIT', 0, limit);
  }

  async putFile(rec: FileRecord, content: Buffer): Promise<void> {
    await this.redis.hset(`${this.root}:file:${rec.id}`, 'record', JSON.stringify(rec), 'content', content);
  }

  async getFile(id: string): Promise<FileRecord | undefined> {
    const r = await this.redis.hget(`${this.root}:file:${id}`, 'record');
    return r === null ? undefined : (JSON.parse(r) as FileRecord);
  }

  async fileContent(id: string): Promise<Buffer | undefined> {
    return (await this.redis.hgetBuffer(`${this.root}:file:${id}`, 'content')) ?? undefined;
  }

  async heartbeat(info: WorkerInfo): Promise<void> {
    const t = Date.now();
    await this.redis
      .multi()
      .zadd(`${this.root}:workers`, t, info.name)
      .hset(`${this.root}:worker-info`, info.name, JSON.stringify(info))
      // forget workers silent for an hour
      .zremrangebyscore(`${this.root}:workers`, '-inf', t - 3_600_000)
      .exec();
  }

  async removeWorker(name: string): Promise<void> {
    await this.redis.multi().zrem(`${this.root}:workers`, name).hdel(`${this.root}:worker-info`, name).exec();
  }

  /** Workers that sent a heartbeat within `withinMs`. */
  async liveWorkers(withinMs: number): Promise<WorkerInfo[]> {
    const names = await this.redis.zrangebyscore(`${this.root}:workers`, Date.now() - withinMs, '+inf');
    if (names.length === 0) return [];
    const infos = await this.redis.hmget(`${this.root}:worker-info`, ...names);
    return infos.filter((s): s is string => s !== null).map((s) => JSON.parse(s) as WorkerInfo);
  }
}
