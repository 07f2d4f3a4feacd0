import type { Backend, PreparedWeight } from '../kernels/backend.ts';
import type { Gemm } from '../weights/quant/gptq-quantize.ts';
import { GptqScratch } from '../weights/quant/gptq-scratch.ts';

/** Rows gathered before one product adds them: a deep product runs several times faster than a shallow one. */
const BATCH_ROWS = 2048;

/**
 * H = Σ x·xᵀ over the rows x of one matrix's inputs (n × n, row-major, float64): what GPTQ
 * needs to know about the inputs a layer sees. Rows are gathered, transposed, up to BATCH_ROWS;
 * each batch X then adds Xᵀ·X, computed by a float32 GEMM and summed in float64. Read `h`
 * after `flush`.
 */
export class InputHessian {
  readonly h: Float64Array;
  #pending: Float32Array[] = [];
  #pendingRows = 0;

  constructor(
    readonly n: number,
    readonly gemm: Gemm,
    /** where H, the gathered rows and each product go (a calibration's, reused layer after layer) */
    readonly scratch = new GptqScratch(),
    /** H's role in the scratch: Hessians held at the same time need different names */
    name = 'h',
  ) {
    // zeroed here: a kept array may hold the last layer's sums (a fresh 0.76 GB one took 2 s of page faults at 9728 wide)
    this.h = scratch.f64(`hessian:${name}`, n * n).fill(0);
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
      for (let r = 0; r < k; r++) {
        const o = r * n;
        for (let c = 0; c < n; c++) xt[c * rows + r0 + r] = x[o + c];
      }
      r0 += k;
    }
    this.#pending = [];
    this.#pendingRows = 0;
    const p = this.gemm(xt, n, rows, xt, n, this.scratch.f32('xtx', n * n));
    const h = this.h;
    for (let i = 0; i < n * n; i++) h[i] += p[i];
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
