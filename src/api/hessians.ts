import type { Backend, PreparedWeight } from '../kernels/backend.ts';

/**
 * H = Σ x·xᵀ over the rows x of one matrix's inputs (n × n, row-major, float64): what GPTQ
 * needs to know about the inputs a layer sees. Each batch of rows X adds Xᵀ·X, computed by the
 * backend's float GEMM (Xᵀ multiplied by itself as a float32 weight) and summed in float64.
 */
export class InputHessian {
  readonly h: Float64Array;
  tokens = 0;

  constructor(readonly n: number) {
    this.h = new Float64Array(n * n);
  }

  add(be: Backend, x: Float32Array, rows: number): void {
    const n = this.n;
    const xt = new Float32Array(n * rows);
    for (let r = 0; r < rows; r++) {
      const o = r * n;
      for (let c = 0; c < n; c++) xt[c * rows + r] = x[o + c];
    }
    const w = be.prepare({ format: 'f32', rows: n, cols: rows, data: xt });
    const p = be.matmul(xt, n, w);
    const h = this.h;
    for (let i = 0; i < n * n; i++) h[i] += p[i];
    this.tokens += rows;
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
