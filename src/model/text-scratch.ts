import type { TextLayerWeights } from './weights.ts';

/**
 * One pass's activations, overwritten by every layer. A decode step used to allocate ~15 arrays
 * per layer; V8 answered that churn of external memory with GC work at every step (4 batched
 * sequences on 2 cores: 80 events other than scavenges in 32 steps, its marking threads taking a
 * third of a core from the kernels), and a 512-token prompt's fresh 20 MB MLP pages were faulted
 * in at each layer.
 */
export interface LayerScratch {
  a: Float32Array; // the normed input [n, hidden]
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  att: Float32Array;
  y: Float32Array; // after attention and the residual
  b: Float32Array; // y normed
  gate: Float32Array; // gate, then silu(gate)·up [n, intermediate]
  up: Float32Array;
  /** the layer outputs, alternately: a layer's input stays readable while it writes its output */
  out: [Float32Array, Float32Array];
}

/** A pass's scratch, and how to hand it back when the pass ends. */
export interface ScratchLease {
  scratch: LayerScratch;
  release(): void;
}

/** Values per row of each scratch array, in LayerScratch's order (out twice). */
function rowWidths(hidden: number, w: TextLayerWeights | undefined): number[] {
  const rows = (m: { rows: number } | undefined) => m?.rows ?? 0;
  return [hidden, rows(w?.q), rows(w?.k), rows(w?.v), w?.o.cols ?? 0, hidden, hidden, rows(w?.gate), rows(w?.up), hidden, hidden];
}

function views(arrays: Float32Array[], widths: number[], n: number): LayerScratch {
  const [a, q, k, v, att, y, b, gate, up, o0, o1] = arrays.map((x, i) => x.subarray(0, n * widths[i]));
  return { a, q, k, v, att, y, b, gate, up, out: [o0, o1] };
}

/**
 * Scratch for passes of up to `maxRows` rows, kept from one pass to the next. Fresh pages are
 * faulted in on first write, one fault per 4 KiB page (~7 µs each in a VM here, 2 cores): an
 * 8-row decode step at the 4B shape touched 1.3 MB of new scratch, and every step paid for it.
 * Passes in flight at once (a prompt's layers interleaved with decode steps) each lease their own
 * set; longer passes (prompts) get a set of their own, dropped when they end.
 */
export class ScratchPool {
  readonly #widths: number[];
  /** idle sets, each sized for `rows` rows */
  readonly #free: { rows: number; arrays: Float32Array[] }[] = [];

  constructor(
    hidden: number,
    layer: TextLayerWeights | undefined,
    readonly maxRows = 64,
    readonly maxIdle = 3,
  ) {
    this.#widths = rowWidths(hidden, layer);
  }

  /**
   * A set for n rows; past maxRows a set of its own, dropped when released, unless `pooled` (a
   * pass that leases and releases at every layer: its sets go back to the idle ones, whose row
   * counts are then rounded up to a multiple of maxRows).
   */
  lease(n: number, pooled = false): ScratchLease {
    const alloc = (rows: number) => this.#widths.map((w) => new Float32Array(rows * w));
    if (n > this.maxRows && !pooled) return { scratch: views(alloc(n), this.#widths, n), release: () => {} };
    // the smallest idle set that holds n rows, else a new one with room to grow into
    let best = -1;
    this.#free.forEach((s, i) => {
      if (s.rows >= n && (best < 0 || s.rows < this.#free[best].rows)) best = i;
    });
    const rows = n > this.maxRows ? Math.ceil(n / this.maxRows) * this.maxRows : Math.min(this.maxRows, 2 ** Math.ceil(Math.log2(n)));
    const set = best >= 0 ? this.#free.splice(best, 1)[0] : { rows, arrays: [] as Float32Array[] };
    if (!set.arrays.length) set.arrays = alloc(set.rows);
    let released = false;
    return {
      scratch: views(set.arrays, this.#widths, n),
      release: () => {
        if (released) return;
        released = true;
        this.#free.push(set);
        // the largest sets stay: any pass that fits a small one fits them
        if (this.#free.length > this.maxIdle) {
          this.#free.sort((x, y) => y.rows - x.rows);
          this.#free.length = this.maxIdle;
        }
      },
    };
  }

  /** Idle sets kept (for tests). */
  get idle(): number {
    return this.#free.length;
  }
}
