import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QvlError } from '../../errors.ts';

/** Handle of a weight prepared by the addon (opaque). */
export type NativeWeightHandle = { readonly __nativeWeight: unique symbol };

/** What the compiled addon (native/, built by node-gyp into build/Release/qvl_native.node) exports. */
export interface NativeAddon {
  info(): { isa: string; threads: number; physicalCores: number; avx512: boolean; avx512vnni: boolean; avx2: boolean };
  setIsa(name: 'best' | 'avx512vnni' | 'avx512' | 'avx2' | 'scalar'): string;
  setThreads(n: number): number;
  prepare(desc: NativeWeightDesc): NativeWeightHandle;
  matmul(x: Float32Array, n: number, w: NativeWeightHandle, bias: Float32Array | null, y: Float32Array): void;
  gatherRows(w: NativeWeightHandle, ids: Int32Array, out: Float32Array): void;
  rmsNorm(x: Float32Array, dim: number, weight: Float32Array, eps: number, out: Float32Array): void;
  layerNorm(x: Float32Array, dim: number, weight: Float32Array, bias: Float32Array, eps: number, out: Float32Array): void;
  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array): void;
  attention(
    q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array,
    nQ: number, nKv: number, heads: number, kvHeads: number, headDim: number,
    scale: number, causal: boolean, qOffset: number, segments: Int32Array | null,
  ): void;
  siluMul(gate: Float32Array, up: Float32Array, out: Float32Array): void;
  gelu(x: Float32Array, erf: boolean): void;
  add(a: Float32Array, b: Float32Array): void;
  mmapFile(path: string): ArrayBuffer;
  adviseDontNeed(buffer: ArrayBuffer, offset: number, length: number): number;
  /** Total GFLOP/s of `iters` FMA rounds on every pool thread. */
  probeFma(iters: number): number;
  /** Reads the whole buffer on the pool (the caller times it); returns the sum. */
  probeRead(buffer: Float32Array): number;
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
  groupSize?: number;
  nGroups?: number;
  blockRows?: number;
  blockCols?: number;
}

const ADDON_NAME = 'qvl_native.node';

function candidatePaths(): string[] {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const paths = [join(root, 'build', 'Release', ADDON_NAME), join(root, 'build', 'Debug', ADDON_NAME)];
  const override = process.env.QVL_NATIVE_ADDON;
  return override ? [override, ...paths] : paths;
}

let cached: NativeAddon | null = null;
let loadError: QvlError | null = null;

/** Loads the compiled addon once; throws BACKEND_UNAVAILABLE with the reason if it cannot. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  if (loadError) throw loadError;
  const paths = candidatePaths();
  const found = paths.find((p) => existsSync(p));
  if (!found) {
    loadError = new QvlError(
      'BACKEND_UNAVAILABLE',
      `the native backend is not built (looked for ${paths.join(', ')}); run "npm run build:native" ` +
        '(needs a C++ compiler, make and Python for node-gyp) or use the TypeScript backend',
      { paths },
    );
    throw loadError;
  }
  try {
    const require = createRequire(import.meta.url);
    cached = require(found) as NativeAddon;
    return cached;
  } catch (e) {
    loadError = new QvlError(
      'BACKEND_UNAVAILABLE',
      `the native backend at ${found} could not be loaded: ${(e as Error).message}; rebuild it with "npm run build:native"`,
      { path: found },
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
