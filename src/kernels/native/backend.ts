import { QvlError } from '../../errors.ts';
import type { InstructionSet } from './instruction-sets.ts';
import type { AttentionOptions, Backend, KvAttentionOptions, KvBatchOptions, KvBatchPart, NonFiniteWeight, PreparedWeight, PrepareOptions } from '../backend.ts';
import {
  checkAppendAttendKv,
  checkAttention,
  checkAttentionKv,
  checkFloat32,
  checkGeluKind,
  checkInt,
  checkLayerNorm,
  checkMatmul,
  checkMatmulMany,
  checkRmsNorm,
  checkRope,
  checkRowIds,
  checkSameLength,
  checkSiluMul,
} from '../checks.ts';
import { KV_TYPE_CODE, type KvLayout, type KvView } from '../kv.ts';
import { weightBytes, type WeightData } from '../weight.ts';
import { loadAddon, type NativeAddon, type NativeWeightHandle, type NativeWeightLayout } from './addon.ts';
import { nativeQuantizeQ4x8 } from './quantize.ts';
import { describeWeight } from './weights.ts';

/** What a native PreparedWeight keeps: the addon's handle and the arrays it points into. */
interface NativeImpl {
  handle: NativeWeightHandle | null;
  /** keeps the caller's typed arrays alive while the addon reads them in place (null: it keeps a repacked copy) */
  weight: WeightData | null;
}

export interface NativeBackendOptions {
  /**
   * Repack q4 and q8 weights at `prepare` into the eight-row layouts the int8 GEMV streams
   * (native/q4x8.h, native/q8x8.h; default true). The addon then holds the only copy the kernels
   * read: the caller's arrays can be dropped. false keeps them row-major (the tests compare both).
   * A weight over 64 MB is repacked only when `prepare` may consume its arrays or they lie in a
   * file mapping (`mmapFile`): otherwise the caller's copy would stay resident beside the
   * repacked one until V8 collects it, so it stays row-major, where GEMVs of several tokens run
   * 1.6–2.6× slower (the 4B head, 4 and 8 tokens, bench/kernels.ts); `layoutOf(w)` tells which.
   */
  repack?: boolean;
}

/**
 * The C++ backend (native/): SIMD kernels chosen for the CPU at load (AVX-512, AVX2 or
 * portable), run on a persistent thread pool. Weights are read in place from the caller's
 * arrays (or an mmapped checkpoint); nothing is copied at `prepare`.
 *
 * The thread count and instruction set belong to the calling thread (the main thread or one
 * worker): every instance on that thread shares them; another thread's are its own.
 */
export class NativeBackend implements Backend {
  readonly name = 'native';
  readonly #addon: NativeAddon;

  readonly #repack: boolean;

  constructor(addon: NativeAddon = loadAddon(), opts: NativeBackendOptions = {}) {
    this.#addon = addon;
    this.#repack = opts.repack ?? true;
  }

  /** Kernel set in use: a KernelSet name, or a mix such as 'avx512vnni+avx2-gemv' that 'best' may pick. */
  get isa(): string {
    return this.#addon.info().isa;
  }

  get threads(): number {
    return this.#addon.info().threads;
  }

  /** Resizes the thread pool (call between ops, not during one). */
  setThreads(n: number): void {
    checkInt('setThreads', 'threads', n, 1);
    this.#addon.setThreads(n);
  }

  /** Forces an instruction set, e.g. to test the portable kernels on an AVX-512 machine. */
  useInstructionSet(isa: InstructionSet): string {
    try {
      return this.#addon.setIsa(isa);
    } catch (e) {
      throw new QvlError('BACKEND_UNAVAILABLE', (e as Error).message, { isa });
    }
  }

  prepare(w: WeightData, opts: PrepareOptions = {}): PreparedWeight {
    const desc = { ...describeWeight(w), pack: this.#repack, consume: opts.consume === true, fineActivations: opts.fineActivations === true };
    const handle = this.#call('prepare', () => this.#addon.prepare(desc));
    const kept = this.#addon.weightLayout(handle);
    const impl: NativeImpl = { handle, weight: kept.layout === 'row-major' ? w : null };
    return { rows: w.rows, cols: w.cols, format: w.format, bytes: kept.bytes ?? weightBytes(w), impl };
  }

  prepareQ4(w: WeightData, opts: { groupSize: number; symmetric: boolean }): { weight: PreparedWeight } | { nonFinite: NonFiniteWeight } | undefined {
    if (!this.#repack) return undefined;
    const r = this.#call('prepareQ4', () => nativeQuantizeQ4x8(this.#addon, w, opts));
    if (!r || 'nonFinite' in r) return r;
    const handle = r.weight;
    const impl: NativeImpl = { handle, weight: null };
    return { weight: { rows: w.rows, cols: w.cols, format: 'q4', bytes: this.#addon.weightLayout(handle).bytes!, impl } };
  }

  /** How the addon keeps a prepared weight: 'q4x8' / 'q4x8-f16' / 'q8x8' (repacked) or 'row-major' (the caller's arrays). */
  layoutOf(w: PreparedWeight): NativeWeightLayout {
    return this.#addon.weightLayout(this.#handle(w, 'layoutOf')).layout;
  }

  /** Whether prepare marked this q8 weight for fine activations in the int8 GEMV (PrepareOptions.fineActivations). */
  hasFineActivations(w: PreparedWeight): boolean {
    return this.#addon.weightLayout(this.#handle(w, 'hasFineActivations')).fineActivations;
  }

  release(w: PreparedWeight): void {
    const impl = w.impl as NativeImpl;
    // freed now (an addon built before releaseWeight leaves it to the handle's collection)
    if (impl.handle) this.#addon.releaseWeight?.(impl.handle);
    impl.handle = null;
    impl.weight = null;
  }

  matmul(x: Float32Array, n: number, w: PreparedWeight, bias?: Float32Array | null, out?: Float32Array): Float32Array {
    checkMatmul(x, n, w, bias, out);
    const y = out ?? new Float32Array(n * w.rows);
    const h = this.#handle(w, 'matmul');
    this.#call('matmul', () => this.#addon.matmul(x, n, h, bias ?? null, y));
    return y;
  }

  matmulMany(x: Float32Array, n: number, ws: readonly PreparedWeight[], biases?: readonly (Float32Array | null | undefined)[], outs?: readonly Float32Array[]): Float32Array[] {
    checkMatmulMany(x, n, ws, biases, outs);
    const ys = ws.map((w, i) => outs?.[i] ?? new Float32Array(n * w.rows));
    const hs = ws.map((w) => this.#handle(w, 'matmulMany'));
    this.#call('matmulMany', () => this.#addon.matmulMany(x, n, hs, ws.map((_, i) => biases?.[i] ?? null), ys));
    return ys;
  }

  gatherRows(w: PreparedWeight, ids: ArrayLike<number>): Float32Array {
    const idx = checkRowIds(w, ids);
    const out = new Float32Array(ids.length * w.cols);
    const h = this.#handle(w, 'gatherRows');
    this.#call('gatherRows', () => this.#addon.gatherRows(h, idx, out));
    return out;
  }

  rmsNorm(x: Float32Array, dim: number, weight: Float32Array, eps: number, into?: Float32Array): Float32Array {
    checkRmsNorm(x, dim, weight, into);
    const out = into ?? new Float32Array(x.length);
    if (x.length) this.#call('rmsNorm', () => this.#addon.rmsNorm(x, dim, weight, eps, out));
    return out;
  }

  layerNorm(x: Float32Array, dim: number, weight: Float32Array, bias: Float32Array, eps: number, into?: Float32Array): Float32Array {
    checkLayerNorm(x, dim, weight, bias, into);
    const out = into ?? new Float32Array(x.length);
    if (x.length) this.#call('layerNorm', () => this.#addon.layerNorm(x, dim, weight, bias, eps, out));
    return out;
  }

  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array, stride?: number): void {
    checkRope(x, n, heads, headDim, cos, sin, stride);
    if (n) this.#call('rope', () => this.#addon.rope(x, n, heads, headDim, cos, sin, stride ?? 0));
  }

  attention(q: Float32Array, k: Float32Array, v: Float32Array, o: AttentionOptions, into?: Float32Array): Float32Array {
    checkAttention(q, k, v, o, into);
    const { nQ, nKv, heads, kvHeads, headDim } = o;
    const out = into ?? new Float32Array(nQ * heads * headDim);
    this.#call('attention', () =>
      this.#addon.attention(q, k, v, out, nQ, nKv, heads, kvHeads, headDim, o.scale, o.causal, o.qOffset ?? 0, o.segments ?? null, o.int16 ?? false,
        o.qStride ?? 0, o.kvStride ?? 0),
    );
    return out;
  }

  attentionKv(q: Float32Array, kv: KvView, o: KvAttentionOptions, into?: Float32Array): Float32Array {
    checkAttentionKv(q, kv, o, into);
    const L = kv.layout;
    const layout = layerLayout(L, kv.layer);
    const out = into ?? new Float32Array(o.nQ * o.heads * L.headDim);
    this.#call('attentionKv', () =>
      this.#addon.attentionKv(q, out, kv.slabs as ArrayBuffer[], kv.blocks, layout, o.nQ, kv.length, o.heads, L.kvHeads, L.headDim, o.scale, true, o.qOffset, null),
    );
    return out;
  }

  appendAttendKv(q: Float32Array, k: Float32Array, v: Float32Array, parts: readonly KvBatchPart[], o: KvBatchOptions, out: Float32Array): Float32Array {
    checkAppendAttendKv(q, k, v, parts, o, out);
    const { layout: L, layer, slabs } = parts[0].view;
    // the parts' block tables one after another, each part naming its range
    const tables = new Int32Array(parts.reduce((s, p) => s + p.view.blocks.length, 0));
    const meta = new Int32Array(4 * parts.length);
    let at = 0;
    parts.forEach(({ view, rows, past }, i) => {
      tables.set(view.blocks, at);
      meta.set([rows, past, at / 2, view.blocks.length / 2], 4 * i);
      at += view.blocks.length;
    });
    this.#call('appendAttendKv', () =>
      this.#addon.attentionKvBatch(q, k, v, out, slabs as ArrayBuffer[], tables, layerLayout(L, layer), meta, o.heads, L.kvHeads, L.headDim, o.scale),
    );
    return out;
  }

  siluMul(gate: Float32Array, up: Float32Array, into?: Float32Array): Float32Array {
    checkSiluMul(gate, up, into);
    const out = into ?? new Float32Array(gate.length);
    this.#call('siluMul', () => this.#addon.siluMul(gate, up, out));
    return out;
  }

  gelu(x: Float32Array, kind: 'tanh' | 'erf'): void {
    checkGeluKind(kind);
    this.#call('gelu', () => this.#addon.gelu(x, kind === 'erf'));
  }

  addInPlace(a: Float32Array, b: Float32Array): void {
    checkSameLength('addInPlace', a, b);
    this.#call('addInPlace', () => this.#addon.add(a, b));
  }

  argmax(x: Float32Array): number {
    checkFloat32('argmax', 'x', x);
    return this.#call('argmax', () => this.#addon.argmax(x));
  }

  allocPages(bytes: number): ArrayBuffer {
    checkInt('allocPages', 'bytes', bytes, 1);
    return this.#call('allocPages', () => this.#addon.allocPages(bytes));
  }

  #handle(w: PreparedWeight, op: string): NativeWeightHandle {
    const impl = w.impl as NativeImpl | undefined;
    if (!impl || !('handle' in impl)) throw new QvlError('INTERNAL', `${op}: the weight was not prepared by the native backend`, { op });
    if (!impl.handle) throw new QvlError('INTERNAL', `${op}: the weight was released`, { op });
    return impl.handle;
  }

  #call<T>(op: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof QvlError) throw e;
      throw new QvlError('NATIVE_ERROR', `${op}: ${(e as Error).message}`, { op });
    }
  }
}

/** A KV layer's layout as the addon reads it (native/addon.cc kvLayout). */
function layerLayout(L: KvLayout, layer: number): Float64Array {
  return new Float64Array([KV_TYPE_CODE[L.type], L.blockTokens, L.blockBytes, L.kOffset(layer), L.vOffset(layer), L.kScaleOffset(layer), L.vScaleOffset(layer)]);
}
