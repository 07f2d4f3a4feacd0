import { QvlError } from '../errors.ts';
import type { KvLayout } from '../kernels/kv.ts';
import { formatBytes } from '../util/format-bytes.ts';

/** Slabs are allocated in steps of about this many bytes (at least one block each). */
const SLAB_BYTES = 64 * 1024 * 1024;

export interface KvPoolStats {
  /** blocks handed out now */
  used: number;
  /** blocks allocated and free for reuse */
  free: number;
  /** bytes of blocks allocated (used + free) */
  bytes: number;
  /** the budget in blocks (Infinity: none) */
  limit: number;
}

/**
 * Fixed-size KV blocks (see kernels/kv.ts) for every sequence of one model: allocated on demand
 * in slabs, handed out by id, returned to a free list and reused, never copied or moved. A
 * block can be held by several owners (a shared prompt prefix): it is free when the last
 * releases it. `maxBytes` bounds what the pool may allocate; past it `alloc` refuses.
 */
export class KvPool {
  readonly blocksPerSlab: number;
  readonly maxBlocks: number;
  /** append-only: a slab index stays valid for the pool's life */
  readonly slabs: ArrayBuffer[] = [];
  private readonly freeList: number[] = [];
  private readonly refs: number[] = [];
  private created = 0;

  private readonly allocSlab: (bytes: number) => ArrayBuffer;

  /**
   * `allocSlab` makes each slab (zero-filled; default `new ArrayBuffer`): the native backend's
   * gives memory in huge pages (Backend.allocPages).
   */
  constructor(
    readonly layout: KvLayout,
    opts: { maxBytes?: number; allocSlab?: (bytes: number) => ArrayBuffer } = {},
  ) {
    this.allocSlab = opts.allocSlab ?? ((bytes) => new ArrayBuffer(bytes));
    this.blocksPerSlab = Math.max(1, Math.floor(SLAB_BYTES / layout.blockBytes));
    const maxBytes = opts.maxBytes ?? Infinity;
    if (!(maxBytes > 0)) throw new QvlError('OPTION_INVALID', `the KV cache budget must be positive, got ${maxBytes}`, { maxBytes });
    this.maxBlocks = Math.floor(maxBytes / layout.blockBytes);
    if (this.maxBlocks < 1) {
      throw new QvlError('OUT_OF_MEMORY', `a KV cache budget of ${maxBytes} bytes holds no block (one block of ${layout.blockTokens} tokens is ${layout.blockBytes} bytes)`, { maxBytes, blockBytes: layout.blockBytes });
    }
  }

  /** A block for one owner; throws OUT_OF_MEMORY past the budget. */
  alloc(): number {
    let id = this.freeList.pop();
    if (id === undefined) {
      if (this.created >= this.maxBlocks) {
        const L = this.layout;
        throw new QvlError(
          'OUT_OF_MEMORY',
          `the KV cache is full: ${this.maxBlocks} blocks of ${L.blockTokens} tokens (${formatBytes(this.maxBlocks * L.blockBytes)}, ${L.type}) are in use`,
          { blocks: this.maxBlocks, blockTokens: L.blockTokens, kvType: L.type },
        );
      }
      id = this.created++;
      const slab = Math.floor(id / this.blocksPerSlab);
      if (slab === this.slabs.length) {
        const n = Math.min(this.blocksPerSlab, this.maxBlocks - slab * this.blocksPerSlab);
        try {
          this.slabs.push(this.allocSlab(n * this.layout.blockBytes));
        } catch {
          this.created--;
          throw new QvlError('OUT_OF_MEMORY', `could not allocate ${formatBytes(n * this.layout.blockBytes)} more for the KV cache`, { bytes: n * this.layout.blockBytes });
        }
      }
    }
    this.refs[id] = 1;
    return id;
  }

  /** One more owner of a block that is in use. */
  retain(id: number): void {
    if (!(this.refs[id] > 0)) throw new QvlError('INTERNAL', `KV block ${id} is not in use`, { id });
    this.refs[id]++;
  }

  /** An owner is done with a block; the last one returns it to the free list. */
  release(id: number): void {
    if (!(this.refs[id] > 0)) throw new QvlError('INTERNAL', `KV block ${id} was released twice`, { id });
    if (--this.refs[id] === 0) this.freeList.push(id);
  }

  /** Owners of a block (0: free). */
  owners(id: number): number {
    return this.refs[id] ?? 0;
  }

  slabOf(id: number): number {
    return Math.floor(id / this.blocksPerSlab);
  }

  offsetOf(id: number): number {
    return (id % this.blocksPerSlab) * this.layout.blockBytes;
  }

  get stats(): KvPoolStats {
    return { used: this.created - this.freeList.length, free: this.freeList.length, bytes: this.created * this.layout.blockBytes, limit: this.maxBlocks };
  }
}
