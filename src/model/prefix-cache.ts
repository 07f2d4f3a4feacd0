/**
 * Prefix cache: the KV blocks of earlier sequences, kept by the identity of the tokens they hold, so
 * that a new prompt that starts the same way (the next turn of a conversation, a shared system
 * prompt, the same picture) reuses them instead of computing them again.
 *
 * A position's identity is its token id, or for an image or video pad the content hash of its media
 * and its offset in it: the same picture matches, another picture of the same size does not. A whole
 * block is found by a key that chains the previous block's key with its identities. Where a new
 * prompt parts from a cached one inside a block (the last, partly filled block of a finished answer,
 * or a block where the prompts diverge), the common positions are copied into a fresh block: cached
 * blocks are shared read-only and never written. The cache holds one reference per block, released
 * when the block is evicted, least recently used first, past the byte budget.
 */
import { createHash } from 'node:crypto';
import type { KVCache } from './kv-cache.ts';
import type { KvPool } from './kv-pool.ts';

/** A run of vision pad tokens: prompt rows [start, start + length) of the media item `key`. */
export interface MediaSpan {
  start: number;
  length: number;
  key: string;
}

/** Per position: the token id (≥ 0), or for a vision pad a negative hash of its media and offset. */
export function positionIdentities(ids: ArrayLike<number>, spans: readonly MediaSpan[], length = ids.length): Int32Array {
  const out = new Int32Array(length);
  for (let i = 0; i < length; i++) out[i] = ids[i];
  for (const m of spans) {
    const d = createHash('sha256').update(m.key).digest();
    const base = d.readInt32LE(0);
    for (let j = 0; j < m.length && m.start + j < length; j++) out[m.start + j] = -1 - ((Math.imul(base ^ j, 0x9e3779b1) >>> 1) & 0x3fffffff);
  }
  return out;
}

/** The chain key of each whole block of `identities`. */
export function blockKeys(identities: Int32Array, blockTokens: number): string[] {
  const keys: string[] = [];
  let prev = '';
  for (let b = 0; (b + 1) * blockTokens <= identities.length; b++) {
    const block = identities.subarray(b * blockTokens, (b + 1) * blockTokens);
    prev = createHash('sha256').update(prev).update(new Uint8Array(block.buffer, block.byteOffset, block.byteLength)).digest('base64');
    keys.push(prev);
  }
  return keys;
}

interface Entry {
  /** the chain key of the block before it ('' for a sequence's first block) */
  parent: string;
  block: number;
  /** identities of the positions it holds (fewer than a block's worth for a last, partial block) */
  identities: Int32Array;
}

export class PrefixCache {
  /** whole blocks by their chain key; Map order is the LRU order (oldest first) */
  private readonly whole = new Map<string, Entry>();
  /** partial blocks by parent key + a running id */
  private readonly partial = new Map<string, Entry>();
  private partialId = 0;
  /** prompt tokens looked up, and how many came from the cache */
  lookedUpTokens = 0;
  cachedTokens = 0;

  constructor(
    readonly pool: KvPool,
    readonly maxBytes: number,
  ) {}

  /** blocks held */
  get blocks(): number {
    return this.whole.size + this.partial.size;
  }

  /**
   * Gives the empty `cache` the longest cached prefix of `identities` (at most `maxTokens`
   * positions): whole blocks shared, and the common start of the next block copied. Returns the
   * positions it holds.
   */
  attach(identities: Int32Array, cache: KVCache, maxTokens: number): number {
    const B = this.pool.layout.blockTokens;
    this.lookedUpTokens += identities.length;
    const keys = blockKeys(identities, B);
    const shared: Entry[] = [];
    for (let b = 0; b < keys.length && (b + 1) * B <= maxTokens; b++) {
      const e = this.whole.get(keys[b]);
      if (!e) break;
      shared.push(e);
    }
    // most recently used last, a chain's first blocks after its later ones: eviction takes a chain's tail first
    for (let i = shared.length - 1; i >= 0; i--) this.touch(this.whole, keys[i]);
    // then the longest common start among the blocks that follow the last shared one
    const at = shared.length * B;
    const parent = shared.length ? keys[shared.length - 1] : '';
    const want = identities.subarray(at, Math.min(identities.length, at + B, maxTokens));
    let best: { e: Entry; n: number; map: Map<string, Entry>; key: string } | undefined;
    for (const [map, list] of [
      [this.whole, this.whole],
      [this.partial, this.partial],
    ] as const) {
      for (const [key, e] of list) {
        if (e.parent !== parent) continue;
        let n = 0;
        while (n < want.length && n < e.identities.length && e.identities[n] === want[n]) n++;
        if (n > (best?.n ?? 0)) best = { e, n, map, key };
      }
    }
    if (shared.length) cache.adopt(shared.map((e) => e.block));
    let tokens = at;
    if (best) {
      this.touch(best.map, best.key);
      cache.adoptCopy(best.e.block, best.n);
      tokens += best.n;
    }
    this.cachedTokens += tokens;
    return tokens;
  }

  /** Keeps the blocks of a finished sequence: its whole blocks, and its last, partial one. */
  store(identities: Int32Array, cache: KVCache): void {
    const B = this.pool.layout.blockTokens;
    const length = Math.min(identities.length, cache.length);
    const ids = identities.subarray(0, length);
    const keys = blockKeys(ids, B);
    const held = cache.blockIds;
    for (let b = keys.length - 1; b >= 0; b--) {
      if (this.whole.has(keys[b])) {
        this.touch(this.whole, keys[b]);
        continue;
      }
      this.pool.retain(held[b]);
      this.whole.set(keys[b], { parent: b ? keys[b - 1] : '', block: held[b], identities: ids.slice(b * B, (b + 1) * B) });
    }
    const rest = length - keys.length * B;
    if (rest > 0) {
      const parent = keys.length ? keys[keys.length - 1] : '';
      const tail = ids.slice(keys.length * B);
      // a partial block that another one already covers adds nothing
      const covered = [...this.partial.values(), ...this.whole.values()].some(
        (e) => e.parent === parent && e.identities.length >= tail.length && tail.every((x, i) => e.identities[i] === x),
      );
      if (!covered) {
        this.pool.retain(held[keys.length]);
        this.partial.set(`${parent}/${this.partialId++}`, { parent, block: held[keys.length], identities: tail });
      }
    }
    this.evict(this.maxBytes);
  }

  /** Releases blocks, least recently used first (partial ones before whole ones), until at most `bytes` are held. */
  evict(bytes: number): void {
    const blockBytes = this.pool.layout.blockBytes;
    for (const map of [this.partial, this.whole]) {
      for (const [k, e] of map) {
        if (this.blocks * blockBytes <= bytes) return;
        map.delete(k);
        this.pool.release(e.block);
      }
    }
  }

  clear(): void {
    this.evict(0);
  }

  private touch(map: Map<string, Entry>, key: string): void {
    const e = map.get(key)!;
    map.delete(key);
    map.set(key, e);
  }
}
