/**
 * Working arrays that GPTQ reuses from one call to the next, by role and length. At the 4B shape
 * the factor, the sweep and the Hessian products take arrays of 0.1–0.8 GB; fresh ones cost the
 * kernel's page faults and zeroing on first touch, which took longer than the loops that fill
 * them (the 9728-wide factor: 8 s of system time in a 17 s run). A calibration uses one scratch
 * for all its layers, whose shapes repeat. Contents are left from the last use: callers write
 * every value they read.
 */
export class GptqScratch {
  readonly #f32 = new Map<string, Float32Array>();
  readonly #f64 = new Map<string, Float64Array>();

  /** A float32 array of `length` for `role` (the same array each time for the same role and length). */
  f32(role: string, length: number): Float32Array {
    const key = `${role}:${length}`;
    let a = this.#f32.get(key);
    if (!a) this.#f32.set(key, (a = new Float32Array(length)));
    return a;
  }

  f64(role: string, length: number): Float64Array {
    const key = `${role}:${length}`;
    let a = this.#f64.get(key);
    if (!a) this.#f64.set(key, (a = new Float64Array(length)));
    return a;
  }

  /** Bytes held. */
  get bytes(): number {
    let b = 0;
    for (const a of this.#f32.values()) b += a.byteLength;
    for (const a of this.#f64.values()) b += a.byteLength;
    return b;
  }
}
