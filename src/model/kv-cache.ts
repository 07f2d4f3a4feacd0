/**
 * Keys and values of every decoder layer for one sequence, [position, kvHeads·headDim] row-major,
 * grown by doubling so that appends are amortized O(1).
 */
export class KVCache {
  readonly layers: number;
  readonly width: number;
  private keys: Float32Array[];
  private values: Float32Array[];
  private capacity: number;
  /** positions filled (the same for every layer once a forward pass completes) */
  private filled: number[];

  constructor(layers: number, width: number, initialCapacity = 256) {
    this.layers = layers;
    this.width = width;
    this.capacity = initialCapacity;
    this.keys = Array.from({ length: layers }, () => new Float32Array(initialCapacity * width));
    this.values = Array.from({ length: layers }, () => new Float32Array(initialCapacity * width));
    this.filled = new Array(layers).fill(0);
  }

  /** Positions held (by layer 0, which is written first in a forward pass). */
  get length(): number {
    return this.filled[0];
  }

  /** Appends n rows for `layer` and returns views over all of that layer's keys and values. */
  append(layer: number, k: Float32Array, v: Float32Array, n: number): { k: Float32Array; v: Float32Array; total: number } {
    const start = this.filled[layer];
    const total = start + n;
    if (total > this.capacity) this.grow(total);
    this.keys[layer].set(k.subarray(0, n * this.width), start * this.width);
    this.values[layer].set(v.subarray(0, n * this.width), start * this.width);
    this.filled[layer] = total;
    return { k: this.keys[layer].subarray(0, total * this.width), v: this.values[layer].subarray(0, total * this.width), total };
  }

  /** Drops every position from `length` on (e.g. to reuse a shared prompt prefix). */
  truncate(length: number): void {
    for (let l = 0; l < this.layers; l++) this.filled[l] = Math.min(this.filled[l], length);
  }

  /** Bytes held by the cache buffers. */
  get bytes(): number {
    return 2 * this.layers * this.capacity * this.width * 4;
  }

  private grow(need: number): void {
    let cap = this.capacity;
    while (cap < need) cap *= 2;
    for (let l = 0; l < this.layers; l++) {
      const nk = new Float32Array(cap * this.width);
      nk.set(this.keys[l].subarray(0, this.filled[l] * this.width));
      this.keys[l] = nk;
      const nv = new Float32Array(cap * this.width);
      nv.set(this.values[l].subarray(0, this.filled[l] * this.width));
      this.values[l] = nv;
    }
    this.capacity = cap;
  }
}
