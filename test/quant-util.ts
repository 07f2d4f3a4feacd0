/** Shared helpers of the quantization tests: fixture folders, editable tensor sources, cases. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { QvlError } from '../src/errors.ts';
import type { ModelInputs } from '../src/model/qwen3vl.ts';
import { SafetensorsFile, type TensorInfo } from '../src/weights/safetensors.ts';
import { readF32, readInts, type TensorSource } from '../src/weights/tensor-reader.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TINY = path.join(HERE, 'fixtures', 'tiny');
export const QUANT = path.join(HERE, 'fixtures', 'quant');

/** Every published layout in test/fixtures/quant (made by tools/reference/make_quant_checkpoints.py). */
export const FORMATS = [
  'fp8-block128',
  'fp8-channel-ct',
  'awq-gemm-g32',
  'gptq-v1-g32',
  'gptq-v1-actorder-sym-g32',
  'gptq-v2-actorder-g32',
  'ct-w4a16-sym-g128',
  'ct-w4a16-asym-g32',
  'ct-w4a16-actorder-g32',
] as const;

/** Reads a whole file into its own ArrayBuffer: stands in for a memory mapping in tests. */
export function fakeMap(file: string): ArrayBuffer {
  const b = fs.readFileSync(file);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

export interface FormatFixture {
  dir: string;
  src: SafetensorsFile;
  ref: SafetensorsFile;
  qc: Record<string, unknown>;
  config: Record<string, unknown>;
}

export function openFormat(name: string, opts: { map?: (f: string) => ArrayBuffer } = {}): FormatFixture {
  const dir = path.join(QUANT, name);
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  return {
    dir,
    src: SafetensorsFile.open(path.join(dir, 'model.safetensors'), opts),
    ref: SafetensorsFile.open(path.join(dir, 'reference.safetensors')),
    qc: config.quantization_config,
    config,
  };
}

type Source = TensorSource & { names(): string[] };

/** Tensors of several sources, the first that has a name winning (quantized layers over the tiny model). */
export function overlay(...layers: Source[]): Source {
  const pick = (n: string) => layers.find((l) => l.has(n));
  return {
    has: (n) => !!pick(n),
    info: (n) => (pick(n) ?? layers[layers.length - 1]).info(n),
    bytes: (n) => (pick(n) ?? layers[layers.length - 1]).bytes(n),
    names: () => [...new Set(layers.flatMap((l) => l.names()))],
  };
}

export function fileSource(f: SafetensorsFile): Source {
  return { has: (n) => f.has(n), info: (n) => f.info(n), bytes: (n) => f.bytes(n), names: () => [...f.tensors.keys()] };
}

/** A source whose tensors can be removed or replaced (to build broken checkpoints). */
export class EditableSource implements TensorSource {
  private readonly extra = new Map<string, { info: TensorInfo; data: Uint8Array }>();
  private readonly removed = new Set<string>();
  constructor(private readonly base: TensorSource) {}

  has(n: string): boolean {
    return this.extra.has(n) || (!this.removed.has(n) && this.base.has(n));
  }
  info(n: string): TensorInfo {
    const e = this.extra.get(n);
    if (e) return e.info;
    if (this.removed.has(n)) throw new QvlError('TENSOR_MISSING', `tensor ${n} was removed`, { tensor: n });
    return this.base.info(n);
  }
  bytes(n: string): Uint8Array {
    const e = this.extra.get(n);
    return e ? e.data.slice() : this.base.bytes(n);
  }
  remove(n: string): this {
    this.removed.add(n);
    this.extra.delete(n);
    return this;
  }
  set(n: string, dtype: string, shape: number[], data: ArrayBufferView): this {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    this.extra.set(n, { info: { name: n, dtype, shape, start: 0, byteLength: bytes.byteLength, file: 'edited' }, data: bytes });
    return this;
  }
  /** Same bytes, another header (dtype or shape). */
  relabel(n: string, dtype: string, shape: number[]): this {
    return this.set(n, dtype, shape, this.bytes(n));
  }
}

/** A fixture case's model inputs and the tensors that describe its expected outputs. */
export function loadCase(name: string): { inputs: ModelInputs; file: SafetensorsFile } {
  const file = SafetensorsFile.open(path.join(TINY, `${name}.safetensors`));
  const inputs: ModelInputs = { ids: readInts(file, 'input_ids') };
  if (file.has('pixel_values')) {
    inputs.pixelValues = readF32(file, 'pixel_values');
    const g = readInts(file, 'image_grid_thw');
    const grids: [number, number, number][] = [];
    for (let i = 0; i < g.length; i += 3) grids.push([g[i], g[i + 1], g[i + 2]]);
    inputs.imageGrids = grids;
  }
  return { inputs, file };
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let x = 0;
  let y = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    x += a[i] * a[i];
    y += b[i] * b[i];
  }
  return d / Math.sqrt(x * y);
}

export function argmax(a: ArrayLike<number>, from = 0, to = a.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (a[i] > a[best]) best = i;
  return best - from;
}
