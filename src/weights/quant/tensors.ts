import { QvlError } from '../../errors.ts';
import { bf16ArrayToF32, f16ArrayToF32 } from '../../kernels/dtypes.ts';
import type { TensorInfo } from '../safetensors.ts';
import type { TensorSource } from '../tensor-reader.ts';

/**
 * Checked access to the tensors of one quantized Linear. Every failure names the module, the
 * tensor and what was expected, so a truncated or mixed-up checkpoint is easy to diagnose.
 */
export class ModuleTensors {
  constructor(
    readonly src: TensorSource,
    /** module prefix, e.g. `model.language_model.layers.0.mlp.up_proj` */
    readonly prefix: string,
    /** format name for messages, e.g. "AWQ" */
    readonly format: string,
  ) {}

  name(suffix: string): string {
    return `${this.prefix}.${suffix}`;
  }

  has(suffix: string): boolean {
    return this.src.has(this.name(suffix));
  }

  /** The tensor's header entry; a missing tensor is a TENSOR_MISSING error naming the format. */
  info(suffix: string, dtypes?: readonly string[]): TensorInfo {
    const name = this.name(suffix);
    if (!this.src.has(name)) {
      throw new QvlError('TENSOR_MISSING', `tensor ${name} is missing: module ${this.prefix} is stored as ${this.format}, which needs it`, {
        tensor: name,
        module: this.prefix,
        format: this.format,
      });
    }
    const info = this.src.info(name);
    if (dtypes && !dtypes.includes(info.dtype)) {
      throw new QvlError('QUANT_INVALID', `tensor ${name} (${this.format}) is ${info.dtype}; expected ${dtypes.join(' or ')}`, {
        tensor: name,
        dtype: info.dtype,
        expected: dtypes,
      });
    }
    return info;
  }

  /** Fails with TENSOR_SHAPE unless the tensor has exactly `shape`; `why` explains the expectation. */
  shape(info: TensorInfo, shape: readonly number[], why: string): void {
    const same = info.shape.length === shape.length && info.shape.every((d, i) => d === shape[i]);
    if (!same) {
      throw new QvlError(
        'TENSOR_SHAPE',
        `tensor ${info.name} (${this.format}) has shape [${info.shape.join(', ')}], expected [${shape.join(', ')}] ${why}`,
        { tensor: info.name, file: info.file, shape: info.shape, expected: shape },
      );
    }
  }

  invalid(msg: string, detail: Record<string, unknown> = {}): QvlError {
    return new QvlError('QUANT_INVALID', `module ${this.prefix} (${this.format}): ${msg}`, { module: this.prefix, format: this.format, ...detail });
  }

  u8(suffix: string): Uint8Array {
    return this.src.bytes(this.name(suffix));
  }

  /** I32 words, a view of the file when it is aligned (packed weights are read, never written). */
  i32(suffix: string): Int32Array {
    return view(this.src.bytes(this.name(suffix)), 4, Int32Array);
  }

  /** Integer tensor values (I64, I32, I16, I8, U8) as numbers. */
  ints(suffix: string): number[] {
    const info = this.info(suffix);
    const b = this.src.bytes(info.name);
    switch (info.dtype) {
      case 'I64':
        return Array.from(view(b, 8, BigInt64Array), Number);
      case 'I32':
        return Array.from(view(b, 4, Int32Array));
      case 'I16':
        return Array.from(view(b, 2, Int16Array));
      case 'I8':
        return Array.from(view(b, 1, Int8Array));
      case 'U8':
        return Array.from(b);
      default:
        throw new QvlError('QUANT_INVALID', `tensor ${info.name} (${this.format}) is ${info.dtype}; expected an integer dtype`, { tensor: info.name });
    }
  }

  /**
   * Scales as float32: an F32 tensor stays a view of the file, BF16/F16 are widened exactly.
   * Every scale must be finite (a NaN scale silently poisons every output it touches).
   */
  scales(suffix: string): Float32Array {
    const info = this.info(suffix, ['F32', 'BF16', 'F16']);
    const b = this.src.bytes(info.name);
    const out =
      info.dtype === 'F32' ? view(b, 4, Float32Array) : info.dtype === 'BF16' ? bf16ArrayToF32(view(b, 2, Uint16Array)) : f16ArrayToF32(view(b, 2, Uint16Array));
    for (let i = 0; i < out.length; i++) {
      if (!Number.isFinite(out[i])) {
        throw new QvlError('QUANT_INVALID', `tensor ${info.name} (${this.format}) holds a non-finite scale (${out[i]}) at flat index ${i}`, {
          tensor: info.name,
          index: i,
        });
      }
    }
    return out;
  }
}

/** A typed view over bytes; copied only when the offset is not a multiple of the element size. */
export function view<T>(bytes: Uint8Array, el: number, ctor: new (b: ArrayBufferLike, o: number, n: number) => T): T {
  const b = bytes.byteOffset % el === 0 ? bytes : bytes.slice();
  return new ctor(b.buffer, b.byteOffset, b.byteLength / el);
}

/** A positive integer parameter of `quantization_config`, or undefined when absent. */
export function configInt(qc: Record<string, unknown> | undefined, keys: readonly string[], where: string): number | undefined {
  if (!qc) return undefined;
  for (const k of keys) {
    const v = qc[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw new QvlError('QUANT_INVALID', `config.json ${where}.${k} must be an integer, got ${JSON.stringify(v)}`, { key: `${where}.${k}`, value: v });
    }
    return v;
  }
  return undefined;
}

export function configString(qc: Record<string, unknown> | undefined, key: string): string | undefined {
  const v = qc?.[key];
  return typeof v === 'string' ? v : undefined;
}

/** Group index of every column, or undefined when it is the plain ⌊c/groupSize⌋ order. */
export function actOrder(gIdx: ArrayLike<number>, cols: number, groupSize: number, nGroups: number, where: string): Int32Array | undefined {
  let trivial = true;
  for (let c = 0; c < cols; c++) {
    const g = gIdx[c];
    if (!(Number.isInteger(g) && g >= 0 && g < nGroups)) {
      throw new QvlError('QUANT_INVALID', `${where}[${c}] = ${g} is outside the ${nGroups} groups 0..${nGroups - 1}`, { tensor: where, index: c, value: g });
    }
    if (g !== Math.floor(c / groupSize)) trivial = false;
  }
  return trivial ? undefined : Int32Array.from(gIdx);
}
