/** Reading the reference fixtures for the processor tests: a minimal safetensors parser and PNG decoding. */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { RgbImage } from '../../src/media/rgb.ts';

export const TINY = join(import.meta.dirname, '..', 'fixtures', 'tiny');

export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** All tensors of one safetensors file, as raw little-endian bytes. */
export function readSafetensors(path: string): Map<string, RawTensor> {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;
  const out = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset + base + t.data_offsets[0], t.data_offsets[1] - t.data_offsets[0]);
    out.set(name, { dtype: t.dtype, shape: t.shape, bytes: bytes.slice() });
  }
  return out;
}

export function asF32(t: RawTensor): Float32Array {
  return new Float32Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength / 4);
}

export function asI64(t: RawTensor): number[] {
  const v = new BigInt64Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength / 8);
  return Array.from(v, Number);
}

export function tensor(file: Map<string, RawTensor>, name: string): RawTensor {
  const t = file.get(name);
  if (!t) throw new Error(`fixture tensor ${name} missing`);
  return t;
}

export async function decodePng(path: string): Promise<RgbImage> {
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function readCaseJson(name: string): Record<string, any> {
  return JSON.parse(readFileSync(join(TINY, `${name}.json`), 'utf8'));
}

/** Index of the first differing element, or -1; compares bit patterns (so −0 ≠ +0, NaN = NaN). */
export function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (ua.length !== ub.length) return Math.min(ua.length, ub.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

export const PROCESSOR_CASES = join(import.meta.dirname, '..', 'fixtures', 'processor', 'cases.json');
export const RESIZE_DIR = join(import.meta.dirname, '..', 'fixtures', 'resize');

export function readProcessorCases(): Record<string, any> {
  return JSON.parse(readFileSync(PROCESSOR_CASES, 'utf8'));
}

/** Frame k of a synthetic clip; the same formula as `synth_frame` in tools/reference/make_processor_cases.py. */
export function synthFrame(width: number, height: number, k: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  let o = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) data[o++] = ((x * 37 + y * 91 + k * 53 + c * 17) ^ ((x * y) >> 3) ^ (k * 29 * c)) & 255;
    }
  }
  return { width, height, data };
}

export function sha256F32(values: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');
}
