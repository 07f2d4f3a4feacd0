/**
 * The vision tower's output (merged embeddings and DeepStack features) per image or video, kept by a
 * hash of its pixel values and grid within a byte budget, least recently used first out: the next
 * turn of a conversation about the same picture skips the tower.
 */
import { createHash } from 'node:crypto';
import type { Grid } from './rope-index.ts';
import type { VisionOutput } from './vision.ts';

/** A media item's identity: its kind, grid and pixel values. */
export function mediaKey(kind: 'image' | 'video', grid: Grid, pixels: Float32Array): string {
  const h = createHash('sha256');
  h.update(`${kind}:${grid.join('x')}:`);
  h.update(new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength));
  return h.digest('base64');
}

const bytesOf = (o: VisionOutput) => o.embeds.byteLength + o.deepstack.reduce((a, d) => a + d.byteLength, 0);

export class VisionCache {
  private readonly entries = new Map<string, VisionOutput>();
  private used = 0;
  lookups = 0;
  hits = 0;

  constructor(readonly maxBytes: number) {}

  get bytes(): number {
    return this.used;
  }

  get(key: string): VisionOutput | undefined {
    this.lookups++;
    const out = this.entries.get(key);
    if (!out) return undefined;
    this.hits++;
    // most recently used last
    this.entries.delete(key);
    this.entries.set(key, out);
    return out;
  }

  set(key: string, out: VisionOutput): void {
    const size = bytesOf(out);
    if (size > this.maxBytes || this.entries.has(key)) return;
    this.entries.set(key, out);
    this.used += size;
    for (const [k, v] of this.entries) {
      if (this.used <= this.maxBytes) break;
      this.entries.delete(k);
      this.used -= bytesOf(v);
    }
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }
}
