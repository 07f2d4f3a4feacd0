/** Builds safetensors files byte by byte, including deliberately broken ones, for reader tests. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface RawEntry {
  dtype: string;
  shape: number[];
  data: Uint8Array;
  /** override the computed offsets (to make inconsistent headers) */
  offsets?: [number, number];
}

export function buildSafetensors(entries: Record<string, RawEntry>, opts: { metadata?: Record<string, string>; headerLenOverride?: number } = {}): Buffer {
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  let off = 0;
  const parts: Uint8Array[] = [];
  for (const [name, e] of Object.entries(entries)) {
    header[name] = { dtype: e.dtype, shape: e.shape, data_offsets: e.offsets ?? [off, off + e.data.length] };
    parts.push(e.data);
    off += e.data.length;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(opts.headerLenOverride ?? json.length));
  return Buffer.concat([len, Buffer.from(json), ...parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))]);
}

export function tempDir(prefix = 'qvl-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
