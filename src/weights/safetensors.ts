import fs from 'node:fs';
import path from 'node:path';
import { QvlError } from '../errors.ts';

/** Element sizes of the safetensors dtypes qvl reads. */
export const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
};

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** absolute byte offset in the file */
  start: number;
  byteLength: number;
  file: string;
}

/** How a file's bytes are reached: a memory mapping (zero copy) or positioned reads. */
export type MapFile = (file: string) => ArrayBuffer;

const MAX_HEADER = 100 * 1024 * 1024;
const READ_CHUNK = 1 << 30;

/**
 * One .safetensors file: header validated on open (length, JSON, offsets inside the data,
 * shape × dtype = byte span, no overlaps), tensors read on demand.
 */
export class SafetensorsFile {
  readonly file: string;
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private fd: number | null;
  private mapped: ArrayBuffer | null = null;

  private constructor(file: string, fd: number, tensors: Map<string, TensorInfo>, metadata: Record<string, string>) {
    this.file = file;
    this.fd = fd;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  static open(file: string, opts: { map?: MapFile } = {}): SafetensorsFile {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new QvlError('FILE_NOT_FOUND', `cannot open ${file}: ${(e as Error).message}`, { file });
    }
    try {
      const st = fs.fstatSync(fd);
      const { tensors, metadata } = parseHeader(fd, st.size, file);
      const f = new SafetensorsFile(file, fd, tensors, metadata);
      if (opts.map && st.size > 0) f.mapped = opts.map(file);
      return f;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new QvlError('TENSOR_MISSING', `tensor ${name} is not in ${this.file}`, { file: this.file, tensor: name });
    return t;
  }

  /** The tensor's raw little-endian bytes (a view of the mapping when mapped, else a copy). */
  bytes(name: string): Uint8Array {
    const t = this.info(name);
    if (this.mapped) return new Uint8Array(this.mapped, t.start, t.byteLength);
    if (this.fd === null) throw new QvlError('INTERNAL', `${this.file} is closed`, { file: this.file });
    const out = new Uint8Array(t.byteLength);
    for (let done = 0; done < t.byteLength; ) {
      const n = fs.readSync(this.fd, out, done, Math.min(READ_CHUNK, t.byteLength - done), t.start + done);
      if (n <= 0) {
        throw new QvlError('SAFETENSORS_INVALID', `${this.file}: unexpected end of file reading ${name}`, { file: this.file, tensor: name });
      }
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function parseHeader(fd: number, size: number, file: string): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const bad = (msg: string, detail: Record<string, unknown> = {}) =>
    new QvlError('SAFETENSORS_INVALID', `${file}: ${msg}`, { file, ...detail });
  if (size < 8) throw bad(`file is ${size} bytes, too short for a safetensors header`);
  const lenBuf = Buffer.alloc(8);
  fs.readSync(fd, lenBuf, 0, 8, 0);
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER) throw bad(`header length ${headerLen} exceeds ${MAX_HEADER} bytes`);
  if (8 + headerLen > size) throw bad(`header length ${headerLen} runs past the end of the file (${size} bytes); the file is truncated`);
  const hb = Buffer.alloc(headerLen);
  fs.readSync(fd, hb, 0, headerLen, 8);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(hb.toString('utf8'));
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = size - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = (v ?? {}) as Record<string, string>;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e?.dtype !== 'string') throw bad(`tensor ${name} has no dtype`, { tensor: name });
    const elBytes = DTYPE_BYTES[e.dtype];
    if (elBytes === undefined) {
      throw new QvlError('DTYPE_UNSUPPORTED', `${file}: tensor ${name} has dtype ${e.dtype}, which qvl does not read (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`, {
        file,
        tensor: name,
        dtype: e.dtype,
      });
    }
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw bad(`tensor ${name} has an invalid shape ${JSON.stringify(e.shape)}`, { tensor: name });
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isInteger(o) && o >= 0) || off[1] < off[0]) {
      throw bad(`tensor ${name} has invalid data_offsets ${JSON.stringify(off)}`, { tensor: name });
    }
    const shape = e.shape as number[];
    const [b, end] = off as number[];
    const expect = shape.reduce((a, d) => a * d, 1) * elBytes;
    if (end - b !== expect) {
      throw bad(`tensor ${name}: shape ${JSON.stringify(shape)} × ${e.dtype} needs ${expect} bytes but data_offsets span ${end - b}`, { tensor: name });
    }
    if (end > dataLen) {
      throw bad(`tensor ${name}: data_offsets [${b}, ${end}] run past the end of the data (${dataLen} bytes); the file is truncated or corrupt`, { tensor: name });
    }
    tensors.set(name, { name, dtype: e.dtype, shape, start: dataStart + b, byteLength: end - b, file });
  }
  const spans = [...tensors.values()].filter((t) => t.byteLength > 0).sort((x, y) => x.start - y.start);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].start < spans[i - 1].start + spans[i - 1].byteLength) {
      throw bad(`tensors ${spans[i - 1].name} and ${spans[i].name} overlap`, { tensor: spans[i].name });
    }
  }
  return { tensors, metadata };
}

/**
 * All tensors of a checkpoint folder: `model.safetensors`, or the shards named by
 * `model.safetensors.index.json`, or every `*.safetensors` file when there is no index.
 */
export class SafetensorsCheckpoint {
  readonly dir: string;
  private readonly files: SafetensorsFile[];
  private readonly where = new Map<string, SafetensorsFile>();

  private constructor(dir: string, files: SafetensorsFile[]) {
    this.dir = dir;
    this.files = files;
    for (const f of files) {
      for (const name of f.tensors.keys()) {
        const prev = this.where.get(name);
        if (prev) {
          throw new QvlError('SAFETENSORS_INVALID', `tensor ${name} appears in both ${prev.file} and ${f.file}`, { tensor: name });
        }
        this.where.set(name, f);
      }
    }
  }

  static open(dir: string, opts: { map?: MapFile } = {}): SafetensorsCheckpoint {
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    const single = path.join(dir, 'model.safetensors');
    const opened: SafetensorsFile[] = [];
    try {
      if (fs.existsSync(indexPath)) {
        let index: { weight_map?: Record<string, string> };
        try {
          index = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
        } catch (e) {
          throw new QvlError('SAFETENSORS_INVALID', `${indexPath} is not valid JSON (${(e as Error).message})`, { file: indexPath });
        }
        const map = index.weight_map;
        if (!map || typeof map !== 'object') {
          throw new QvlError('SAFETENSORS_INVALID', `${indexPath} has no weight_map`, { file: indexPath });
        }
        const shardNames = [...new Set(Object.values(map))];
        for (const s of shardNames) opened.push(SafetensorsFile.open(path.join(dir, s), opts));
        const ck = new SafetensorsCheckpoint(dir, opened);
        for (const [name, shard] of Object.entries(map)) {
          const f = ck.where.get(name);
          if (!f) throw new QvlError('TENSOR_MISSING', `${indexPath} lists ${name} in ${shard}, but that file does not contain it`, { tensor: name, file: shard });
          if (path.basename(f.file) !== shard) {
            throw new QvlError('SAFETENSORS_INVALID', `${indexPath} lists ${name} in ${shard}, but it is in ${path.basename(f.file)}`, { tensor: name });
          }
        }
        return ck;
      }
      if (fs.existsSync(single)) {
        opened.push(SafetensorsFile.open(single, opts));
        return new SafetensorsCheckpoint(dir, opened);
      }
      const any = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort() : [];
      if (any.length === 0) {
        throw new QvlError('FILE_NOT_FOUND', `no model.safetensors, model.safetensors.index.json or *.safetensors in ${dir}`, { dir });
      }
      for (const s of any) opened.push(SafetensorsFile.open(path.join(dir, s), opts));
      return new SafetensorsCheckpoint(dir, opened);
    } catch (e) {
      for (const f of opened) f.close();
      throw e;
    }
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.where.get(name);
    if (!f) throw new QvlError('TENSOR_MISSING', `tensor ${name} is not in the checkpoint at ${this.dir}`, { tensor: name, dir: this.dir });
    return f.info(name);
  }

  bytes(name: string): Uint8Array {
    this.info(name);
    return this.where.get(name)!.bytes(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
