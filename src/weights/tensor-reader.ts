import { QvlError } from '../errors.ts';
import type { WeightData } from '../kernels/weight.ts';
import { E4M3_TABLE, bf16ArrayToF32, f16ArrayToF32 } from '../kernels/dtypes.ts';
import type { TensorInfo } from './safetensors.ts';

/** What the readers below need from a checkpoint (a folder, one file, or a test double). */
export interface TensorSource {
  has(name: string): boolean;
  info(name: string): TensorInfo;
  bytes(name: string): Uint8Array;
}

function typedView<T>(bytes: Uint8Array, el: number, ctor: new (b: ArrayBufferLike, o: number, n: number) => T): T {
  // Views need aligned offsets; a misaligned tensor (possible after odd-sized ones) is copied.
  const b = bytes.byteOffset % el === 0 ? bytes : bytes.slice();
  return new ctor(b.buffer, b.byteOffset, b.byteLength / el);
}

export function checkShape(info: TensorInfo, expected: readonly number[]): void {
  const same = info.shape.length === expected.length && info.shape.every((d, i) => d === expected[i]);
  if (!same) {
    throw new QvlError(
      'TENSOR_SHAPE',
      `tensor ${info.name} in ${info.file} has shape [${info.shape.join(', ')}], expected [${expected.join(', ')}]`,
      { tensor: info.name, file: info.file, shape: info.shape, expected },
    );
  }
}

/** Any floating tensor as float32, shape-checked when `shape` is given. */
export function readF32(src: TensorSource, name: string, shape?: readonly number[]): Float32Array {
  const info = src.info(name);
  if (shape) checkShape(info, shape);
  const bytes = src.bytes(name);
  switch (info.dtype) {
    case 'F32':
      return Float32Array.from(typedView(bytes, 4, Float32Array));
    case 'BF16':
      return bf16ArrayToF32(typedView(bytes, 2, Uint16Array));
    case 'F16':
      return f16ArrayToF32(typedView(bytes, 2, Uint16Array));
    case 'F64':
      return Float32Array.from(typedView(bytes, 8, Float64Array));
    case 'F8_E4M3': {
      const out = new Float32Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) out[i] = E4M3_TABLE[bytes[i]];
      return out;
    }
    default:
      throw new QvlError('DTYPE_UNSUPPORTED', `tensor ${name} in ${info.file} is ${info.dtype}; expected a floating-point dtype`, {
        tensor: name,
        dtype: info.dtype,
      });
  }
}

/** An integer tensor as plain numbers (I64 values must fit in 2^53). */
export function readInts(src: TensorSource, name: string, shape?: readonly number[]): number[] {
  const info = src.info(name);
  if (shape) checkShape(info, shape);
  const bytes = src.bytes(name);
  switch (info.dtype) {
    case 'I64':
      return Array.from(typedView(bytes, 8, BigInt64Array), (v) => Number(v));
    case 'I32':
      return Array.from(typedView(bytes, 4, Int32Array));
    case 'I16':
      return Array.from(typedView(bytes, 2, Int16Array));
    case 'I8':
      return Array.from(typedView(bytes, 1, Int8Array));
    case 'U8':
    case 'BOOL':
      return Array.from(bytes);
    default:
      throw new QvlError('DTYPE_UNSUPPORTED', `tensor ${name} in ${info.file} is ${info.dtype}; expected an integer dtype`, {
        tensor: name,
        dtype: info.dtype,
      });
  }
}

/** Raw int32 words (packed quantized weights), zero-copy when aligned. */
export function readI32(src: TensorSource, name: string, shape?: readonly number[]): Int32Array {
  const info = src.info(name);
  if (shape) checkShape(info, shape);
  if (info.dtype !== 'I32') {
    throw new QvlError('DTYPE_UNSUPPORTED', `tensor ${name} in ${info.file} is ${info.dtype}; expected I32`, { tensor: name, dtype: info.dtype });
  }
  return typedView(src.bytes(name), 4, Int32Array);
}

/**
 * A [rows, cols] matrix kept in its stored precision (bf16/f16 stay 16-bit, zero-copy when the
 * source is memory-mapped). Other float dtypes become f32. Tensors with more than two dims
 * (a Conv3d kernel) are flattened to [shape[0], rest] when `rows`/`cols` agree.
 */
export function readMatrix(src: TensorSource, name: string, rows: number, cols: number): WeightData {
  const info = src.info(name);
  const count = info.shape.reduce((a, d) => a * d, 1);
  if (info.shape[0] !== rows || count !== rows * cols) checkShape(info, [rows, cols]);
  if (info.dtype === 'BF16' || info.dtype === 'F16') {
    const data = typedView(src.bytes(name), 2, Uint16Array);
    return { format: info.dtype === 'BF16' ? 'bf16' : 'f16', rows, cols, data };
  }
  return { format: 'f32', rows, cols, data: readF32(src, name) };
}
