/**
 * Working arrays that GPTQ reuses from one call to the next, by role and length. At the 4B shape
 * the factor, the sweep and the Hessian products take arrays of 0.1–0.8 GB; fresh ones cost the
 * kernel's page faults and zeroing on first touch, which took longer than the loops that fill
 * them (the 9728-wide factor: 8 s of system time in a 17 s run). A calibration uses one scratch
 * for all its layers, whose shapes repeat. Contents are left from the last use: callers write
 * every value they read.
 */
export class GptqScratch {
  readonly #arrays = new Map<string, Float32Array | Float64Array>();

  /** A float32 array of `length` for `role` (the same array each time for the same role and length). */
  f32(role: string, length: number): Float32Array {
    return this.#take(`f32:${role}:${length}`, () => new Float32Array(length)) as Float32Array;
  }

  f64(role: string, length: number): Float64Array {
    return this.#take(`f64:${role}:${length}`, () => new Float64Array(length)) as Float64Array;
  }

  /** Bytes held. */
  get bytes(): number {
    let b = 0;
    for (const a of this.#arrays.values()) b += a.byteLength;
    return b;
  }

  #take(key: string, make: () => Float32Array | Float64Array): Float32Array | Float64Array {
    let a = this.#arrays.get(key);
    if (!a) this.#arrays.set(key, (a = make()));
    return a;
  }
}
