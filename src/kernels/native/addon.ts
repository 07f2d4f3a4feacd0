import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QvlError } from '../../errors.ts';
import type { InstructionSet } from './instruction-sets.ts';

/** How the addon keeps a prepared weight (see native/q4x8.h). */
export type NativeWeightLayout = 'q4x8' | 'q4x8-f16' | 'q8x8' | 'q8x8-f16' | 'row-major';

/** Handle of a weight prepared by the addon (opaque). */
export type NativeWeightHandle = { readonly __nativeWeight: unique symbol };

/** What the compiled addon (native/; built by node-gyp into build/Release, or prebuilt in prebuilds/) exports. */
export interface NativeAddon {
  /**
   * `splits512BitOps`: an AMD CPU with AVX-512 whose datapath is 256 bits wide (Zen 4), as `best`
   * decides it. `int8Gemv512`: the AVX-512 VNNI set's int8 GEMVs put two row groups in each
   * 512-bit register for passes of 2 or more tokens (native/int8_pair512.inc; by default on AMD
   * CPUs whose 512-bit operations are not split).
   */
  info(): { isa: string; threads: number; physicalCores: number; avx512: boolean; avx512vnni: boolean; avx2: boolean; splits512BitOps: boolean; int8Gemv512: boolean };
  /** Forces `int8Gemv512` for the process (null: the CPU's choice again); returns the setting. Speed only: results are bit-identical. */
  setInt8Gemv512(on: boolean | null): boolean;
  setIsa(name: InstructionSet): string;
  setThreads(n: number): number;
  prepare(desc: NativeWeightDesc): NativeWeightHandle;
  /**
   * Frees what prepare allocated for the weight (its repacked stream, copied floats) now rather
   * than at some later collection; the handle is refused from then on.
   */
  releaseWeight?(handle: NativeWeightHandle): void;
  /** 'q4x8' / 'q4x8-f16' / 'q8x8' / 'q8x8-f16' when prepare repacked the weight (native/q4x8.h, q8x8.h) with the stream's bytes, else 'row-major'; fineActivations: a q8 weight prepared for fine GEMV activations. */
  weightLayout(w: NativeWeightHandle): { layout: NativeWeightLayout; bytes?: number; fineActivations: boolean };
  matmul(x: Float32Array, n: number, w: NativeWeightHandle, bias: Float32Array | null, y: Float32Array): void;
  /** matmul over each of 1..4 weights of the same x (native/kernels.h, matmulMany); biases[i] may be null. */
  matmulMany(x: Float32Array, n: number, ws: NativeWeightHandle[], biases: (Float32Array | null)[], ys: Float32Array[]): void;
  gatherRows(w: NativeWeightHandle, ids: Int32Array, out: Float32Array): void;
  rmsNorm(x: Float32Array, dim: number, weight: Float32Array, eps: number, out: Float32Array): void;
  layerNorm(x: Float32Array, dim: number, weight: Float32Array, bias: Float32Array, eps: number, out: Float32Array): void;
  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array, stride: number): void;
  attention(
    q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array,
    nQ: number, nKv: number, heads: number, kvHeads: number, headDim: number,
    scale: number, causal: boolean, qOffset: number, segments: Int32Array | null, int16: boolean,
    qStride: number, kvStride: number,
  ): void;
  attentionKv(
    q: Float32Array, out: Float32Array, slabs: ArrayBuffer[], blocks: Int32Array, layout: Float64Array,
    nQ: number, nKv: number, heads: number, kvHeads: number, headDim: number,
    scale: number, causal: boolean, qOffset: number, segments: null,
  ): void;
  /** parts: [rows, past, first block, blocks] per sequence, its blocks a range of `blocks` */
  attentionKvBatch(
    q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, slabs: ArrayBuffer[], blocks: Int32Array, layout: Float64Array,
    parts: Int32Array, heads: number, kvHeads: number, headDim: number, scale: number,
  ): void;
  siluMul(gate: Float32Array, up: Float32Array, out: Float32Array): void;
  gelu(x: Float32Array, erf: boolean): void;
  add(a: Float32Array, b: Float32Array): void;
  argmax(x: Float32Array): number;
  /**
   * Quantizes a float matrix (f32, bf16 or f16) into q8 (bits 8: Int8Array codes) or q4 (bits 4:
   * packed Uint8Array codes, zero points unless symmetric) on the pool, q8 refitted like refitQ8
   * when refit is 1, with binary16 scales when 2; returns −1, or
   * row·cols + col of the first NaN/±Infinity weight.
   */
  quantize(
    src: NativeWeightDesc, bits: 4 | 8, refit: 0 | 1 | 2, groupSize: number, symmetric: boolean,
    qs: Int8Array | Uint8Array, scales: Float32Array, zeros: Uint8Array | null,
  ): number;
  /**
   * quantize's q4 (group size a multiple of 32) written straight into the eight-row stream
   * prepare makes (binary16 scales unless one needs float32), as a prepared weight's handle; or
   * row·cols + col of the first NaN/±Infinity weight.
   */
  quantizeQ4x8?(src: NativeWeightDesc, groupSize: number, symmetric: boolean): NativeWeightHandle | number;
  /**
   * GPTQ's sweep of columns [k0, k1) of every row of `w` (gptqQuantizeQ4's column-by-column step)
   * on the pool: asymmetric q4 codes OR-ed into qs, scales and zero points at each group's first
   * column, each column's error over U[c,c] into err; returns −1, or row·cols + col of the first
   * NaN/±Infinity weight a group met.
   */
  gptqSweepQ4?(
    w: Float32Array, rows: number, cols: number, k0: number, k1: number, groupSize: number,
    u: Float32Array, err: Float32Array, qs: Uint8Array, scales: Float32Array, zeros: Uint8Array,
  ): number;
  mmapFile(path: string): ArrayBuffer;
  allocPages(bytes: number): ArrayBuffer;
  adviseDontNeed(buffer: ArrayBuffer, offset: number, length: number): number;
  /** Total GFLOP/s of `iters` FMA rounds on every pool thread. */
  probeFma(iters: number): number;
  /** Reads the whole buffer on the pool (the caller times it); returns the sum. */
  probeRead(buffer: Float32Array): number;
  /** Total GMAC/s of `iters` rounds of the int8 dot product the q4 / q8 GEMVs use, on every pool thread (0: the set has none). */
  probeInt8(iters: number): number;
}

/** The fields the addon reads from a weight (format as a code, see native/kernels.h). */
export interface NativeWeightDesc {
  format: number;
  rows: number;
  cols: number;
  data?: Float32Array | Uint16Array;
  qs?: Int8Array | Uint8Array;
  scales?: Float32Array;
  zeros?: Uint8Array;
  gIdx?: Int32Array;
  /** q4, q8: repack into the eight-row layouts (native/q4x8.h, q8x8.h) where the weight allows it */
  pack?: boolean;
  /** the arrays are the caller's to give away: repack whatever the size, then detach them */
  consume?: boolean;
  /** q8: the int8 GEMV's activations on the fine grid (PrepareOptions.fineActivations) */
  fineActivations?: boolean;
  groupSize?: number;
  nGroups?: number;
  blockRows?: number;
  blockCols?: number;
}

/** The package root: src/kernels/native/ and dist/kernels/native/ are both three levels down. */
const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * How to build the missing addon: from a clone, `npm run build:native`; where a project installed
 * qvl, its install script does it, which npm 12 runs only for dependencies the project allows
 * (npm 11.16 and later list the unlisted ones at install).
 */
export function buildHint(packageRoot: string): string {
  return packageRoot.split(sep).includes('node_modules')
    ? 'allow qvl\'s install script in your project (package.json: "allowScripts": { "qvl": true }) and run `npm rebuild qvl`; building needs a C++ compiler, make and Python'
    : 'run `npm run build:native`; building needs a C++ compiler, make and Python';
}

/** Written by scripts/install-native.mjs when building the addon from source failed at install. */
export const INSTALL_BUILD_LOG = join(PACKAGE_ROOT, 'build', 'native-build-failed.log');

const require = createRequire(import.meta.url);

/**
 * The addon's file, found the way node-gyp-build finds it: a local build (build/Release) first,
 * then the prebuilt binary for this platform, architecture and libc (prebuilds/linux-x64/...).
 * QVL_NATIVE_ADDON names a file directly.
 */
export function locateAddon(): string {
  const override = process.env.QVL_NATIVE_ADDON;
  if (override) return override;
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  try {
    return nodeGypBuild.resolve(PACKAGE_ROOT);
  } catch {
    const where = `${process.platform}-${process.arch}${process.platform === 'linux' ? ` (${libcName()})` : ''}`;
    const install = existsSync(INSTALL_BUILD_LOG)
      ? `building it from source at install failed (compiler output: ${INSTALL_BUILD_LOG})`
      : `it has not been built: ${buildHint(PACKAGE_ROOT)}`;
    throw new QvlError('BACKEND_UNAVAILABLE', `there is no prebuilt native addon for ${where} and ${install}`, { root: PACKAGE_ROOT });
  }
}

/** The libc node-gyp-build matches prebuilt binaries against (it tells musl by Alpine's marker). */
function libcName(): string {
  return existsSync('/etc/alpine-release') ? 'musl' : 'glibc';
}

let cached: NativeAddon | null = null;
let loadError: QvlError | null = null;

/** Loads the compiled addon once; throws BACKEND_UNAVAILABLE with the reason if it cannot. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  if (loadError) throw loadError;
  let file: string;
  try {
    file = locateAddon();
  } catch (e) {
    loadError = e as QvlError;
    throw loadError;
  }
  try {
    cached = require(file) as NativeAddon;
    return cached;
  } catch (e) {
    loadError = new QvlError(
      'BACKEND_UNAVAILABLE',
      `the native addon at ${file} does not load on this machine: ${(e as Error).message.split('\n')[0]}; rebuild it with "npm run build:native"`,
      { path: file },
    );
    throw loadError;
  }
}

export function addonAvailable(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}
