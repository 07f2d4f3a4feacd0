import fs from 'node:fs';
import path from 'node:path';
import { QvlError } from '../errors.ts';
import { DTYPE_BYTES } from './safetensors.ts';

/** One tensor to write; `data` is called once, when its turn comes, so at most one is in memory. */
export interface TensorToWrite {
  name: string;
  dtype: string;
  shape: number[];
  data: () => Uint8Array;
}

export interface WriteOptions {
  /** `__metadata__` string map */
  metadata?: Record<string, string>;
  /** byte alignment of every tensor's start in the file (default 64) */
  align?: number;
}

/** Name prefix of the filler tensors that keep the next tensor aligned (loaders ignore them). */
export const PAD_TENSOR_PREFIX = '__qvl_pad__.';

const CHUNK = 1 << 24;

export function tensorBytes(t: { name: string; dtype: string; shape: number[] }): number {
  const el = DTYPE_BYTES[t.dtype];
  if (el === undefined) throw new QvlError('DTYPE_UNSUPPORTED', `cannot write tensor ${t.name}: unknown dtype ${t.dtype}`, { tensor: t.name });
  return t.shape.reduce((a, d) => a * d, 1) * el;
}

/**
 * Writes one .safetensors file, streaming tensor by tensor (the header is planned from shapes
 * first). Every tensor starts at a multiple of `align` bytes from the start of the file, so
 * typed-array views over a memory mapping of it never need a copy; the gaps are filled by
 * explicit U8 tensors named `__qvl_pad__.<next tensor>`, because safetensors readers (the Python library
 * included) require the data section to be covered without holes. Writes `<file>.partial` and
 * renames it at the end, so an interrupted run leaves no file that looks complete.
 */
export function writeSafetensors(file: string, tensors: readonly TensorToWrite[], opts: WriteOptions = {}): number {
  const align = opts.align ?? 64;
  const seen = new Set<string>();
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  const plan: { t: TensorToWrite | null; start: number; len: number }[] = [];
  let off = 0;
  // The header length depends on the offsets written in it; plan with a generous reserved size,
  // then pad the JSON with spaces up to it (the safetensors convention for alignment).
  const entries: [string, { dtype: string; shape: number[]; data_offsets: [number, number] }][] = [];
  for (const t of tensors) {
    if (seen.has(t.name)) throw new QvlError('INTERNAL', `tensor ${t.name} is written twice`, { tensor: t.name });
    seen.add(t.name);
    const len = tensorBytes(t);
    const gap = (align - (off % align)) % align;
    if (gap) {
      // named after the tensor it aligns, so pads stay unique across the shards of a folder
      const name = `${PAD_TENSOR_PREFIX}${t.name}`;
      entries.push([name, { dtype: 'U8', shape: [gap], data_offsets: [off, off + gap] }]);
      plan.push({ t: null, start: off, len: gap });
      off += gap;
    }
    entries.push([t.name, { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + len] }]);
    plan.push({ t, start: off, len });
    off += len;
  }
  for (const [k, v] of entries) header[k] = v;
  let json = JSON.stringify(header);
  const headerBytes = Buffer.byteLength(json);
  const padded = Math.ceil((8 + headerBytes) / align) * align - 8;
  json += ' '.repeat(padded - headerBytes);

  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.partial`;
  const fd = fs.openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(padded));
    writeAll(fd, len);
    writeAll(fd, Buffer.from(json, 'utf8'));
    const zeros = new Uint8Array(align);
    for (const p of plan) {
      if (!p.t) {
        writeAll(fd, zeros.subarray(0, p.len));
        continue;
      }
      const data = p.t.data();
      if (data.byteLength !== p.len) {
        throw new QvlError('INTERNAL', `tensor ${p.t.name}: ${data.byteLength} bytes produced, but dtype ${p.t.dtype} × shape [${p.t.shape.join(', ')}] needs ${p.len}`, {
          tensor: p.t.name,
        });
      }
      writeAll(fd, data);
    }
    fs.closeSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.renameSync(tmp, file);
  return 8 + padded + off;
}

function writeAll(fd: number, data: Uint8Array): void {
  for (let done = 0; done < data.byteLength; ) {
    done += fs.writeSync(fd, data, done, Math.min(CHUNK, data.byteLength - done));
  }
}

export interface ShardOptions extends WriteOptions {
  /** start a new shard once one would exceed this many bytes (default 4 GiB) */
  maxShardBytes?: number;
}

/**
 * Writes a checkpoint folder's weights: `model.safetensors`, or `model-0000k-of-0000n.safetensors`
 * shards plus `model.safetensors.index.json` when they exceed `maxShardBytes`. Returns the files.
 */
export function writeSafetensorsShards(dir: string, tensors: readonly TensorToWrite[], opts: ShardOptions = {}): string[] {
  const max = opts.maxShardBytes ?? 4 * 1024 ** 3;
  const shards: TensorToWrite[][] = [[]];
  let size = 0;
  let total = 0;
  for (const t of tensors) {
    const len = tensorBytes(t);
    total += len;
    if (size > 0 && size + len > max) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1].push(t);
    size += len + 64;
  }
  if (shards.length === 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, opts);
    return ['model.safetensors'];
  }
  const n = shards.length;
  const names = shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = {};
  shards.forEach((s, i) => {
    writeSafetensors(path.join(dir, names[i]), s, opts);
    for (const t of s) weightMap[t.name] = names[i];
  });
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
  return [...names, 'model.safetensors.index.json'];
}
