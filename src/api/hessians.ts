import type { Backend, PreparedWeight } from '../kernels/backend.ts';
import type { Gemm } from '../weights/quant/gptq-quantize.ts';
import { GptqScratch } from '../weights/quant/gptq-scratch.ts';

/** Rows gathered before one product adds them: a deep product runs several times faster than a shallow one. */
const BATCH_ROWS = 2048;
/**
 * Hessians of SYMMETRIC_MIN columns or more are computed in blocks of about SYMMETRIC_SPAN
 * columns, those on and above the diagonal only (at 9728 columns, 8 × 8 blocks: 36 of 64
 * products' work). One 2048-row batch, 2 Zen 5 cores: 9728 wide 1.47–1.49 → 1.18–1.24 s, 4096
 * wide 375–385 → 308–320 ms; at 2560 columns, 2 blocks took 146 ms against 121 whole.
 */
const SYMMETRIC_MIN = 4096;
const SYMMETRIC_SPAN = 1216;
/** Columns per tile of the copies (the rows transposed, the mirror). */
const TILE = 64;

/**
 * H = Σ x·xᵀ over the rows x of one matrix's inputs (n × n, row-major, float64): what GPTQ
 * needs to know about the inputs a layer sees. Rows are gathered, transposed, up to BATCH_ROWS;
 * each batch X then adds Xᵀ·X, computed by a float32 GEMM and summed in float64 (from
 * SYMMETRIC_MIN columns on, only its blocks on and above the diagonal: the rest are copied when
 * `h` is read).
 * Read `h` after `flush`.
 */
export class InputHessian {
  readonly #h: Float64Array;
  #lowerStale = false;
  readonly #parts: number;
  #pending: Float32Array[] = [];
  #pendingRows = 0;

  constructor(
    readonly n: number,
    readonly gemm: Gemm,
    /** where H, the gathered rows and each product go (a calibration's, reused layer after layer) */
    readonly scratch = new GptqScratch(),
    /** H's role in the scratch: Hessians held at the same time need different names */
    name = 'h',
    /** columns per block of the product (about), and the width from which it is blocked (tests take narrow ones) */
    blocks: { span: number; minWidth: number } = { span: SYMMETRIC_SPAN, minWidth: SYMMETRIC_MIN },
  ) {
    this.#parts = n >= blocks.minWidth ? Math.max(1, Math.round(n / blocks.span)) : 1;
    // zeroed here: a kept array may hold the last layer's sums (a fresh 0.76 GB one took 2 s of page faults at 9728 wide)
    this.#h = scratch.f64(`hessian:${name}`, n * n).fill(0);
  }

  add(x: Float32Array, rows: number): void {
    this.#pending.push(x.slice(0, rows * this.n));
    this.#pendingRows += rows;
    if (this.#pendingRows >= BATCH_ROWS) this.flush();
  }

  flush(): void {
    const rows = this.#pendingRows;
    if (rows === 0) return;
    const n = this.n;
    const xt = this.scratch.f32('xt', n * rows);
    let r0 = 0;
    for (const x of this.#pending) {
      const k = x.length / n;
      // by tiles of columns: a row's values land on TILE lines of xt, which the next rows reuse
      for (let c0 = 0; c0 < n; c0 += TILE) {
        const c1 = Math.min(n, c0 + TILE);
        for (let r = 0; r < k; r++) {
          const o = r * n;
          for (let c = c0; c < c1; c++) xt[c * rows + r0 + r] = x[o + c];
        }
      }
      r0 += k;
    }
    this.#pending = [];
    this.#pendingRows = 0;
    // Xᵀ·X is symmetric: only the blocks on and above the diagonal are computed and added to H;
    // `h` copies them below when read (every value is a product over the rows in the same order,
    // so H is what the whole product gives)
    const parts = this.#parts;
    const span = Math.ceil(n / parts);
    const h = this.#h;
    for (let i0 = 0; i0 < n; i0 += span) {
      const i1 = Math.min(n, i0 + span);
      for (let j0 = i0; j0 < n; j0 += span) {
        const j1 = Math.min(n, j0 + span);
        const w = j1 - j0;
        const p = this.gemm(xt.subarray(i0 * rows, i1 * rows), i1 - i0, rows, xt.subarray(j0 * rows, j1 * rows), w, this.scratch.f32('xtx', span * span).subarray(0, (i1 - i0) * w));
        for (let i = i0; i < i1; i++) {
          const o = (i - i0) * w - j0;
          for (let j = j0; j < j1; j++) h[i * n + j] += p[o + j];
        }
      }
    }
    this.#lowerStale = parts > 1;
  }

  /** H after `flush`: the blocks below the diagonal are copied from those above once, when read. */
  get h(): Float64Array {
    if (this.#lowerStale) {
      const n = this.n;
      const a = this.#h;
      const span = Math.ceil(n / this.#parts);
      for (let i0 = span; i0 < n; i0 += span)
        for (let j0 = 0; j0 < i0; j0 += TILE)
          for (let i = i0; i < Math.min(n, i0 + span); i++) {
            const j1 = Math.min(i0, j0 + TILE);
            for (let j = j0; j < j1; j++) a[i * n + j] = a[j * n + i];
          }
      this.#lowerStale = false;
    }
    return this.#h;
  }
}

/**
 * `inner` with every matmul's input also handed to `onInput` (once per matmulMany call: its
 * weights share one input), before the product is computed. Every other method is `inner`'s own.
 */
export function recordingBackend(inner: Backend, onInput: (ws: readonly PreparedWeight[], x: Float32Array, n: number) => void): Backend {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'matmul') {
        return (x: Float32Array, n: number, w: PreparedWeight, ...rest: [Float32Array | null | undefined, Float32Array | undefined]) => {
          onInput([w], x, n);
          return target.matmul(x, n, w, ...rest);
        };
      }
      if (prop === 'matmulMany') {
        return (x: Float32Array, n: number, ws: readonly PreparedWeight[], ...rest: [(readonly (Float32Array | null | undefined)[])?, (readonly Float32Array[])?]) => {
          onInput(ws, x, n);
          return target.matmulMany(x, n, ws, ...rest);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
