/**
 * The few Python / NumPy numeric behaviours the HF processors depend on, reproduced exactly.
 * JavaScript's own `Math.round` and `toFixed` round ties up, Python rounds them to even.
 */

/** Python `round(x)` / NumPy `round`: nearest integer, ties to even, on the exact double. */
export function roundHalfEven(x: number): number {
  if (!Number.isFinite(x)) return x;
  const f = Math.floor(x);
  const d = x - f; // exact for every double below 2^52, and 0 above it
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Python `int(x)` on a float: truncation toward zero. */
export function pyInt(x: number): number {
  return Math.trunc(x);
}

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

/** Exact decomposition of a finite double: |x| = mant · 2^exp with integer mant. */
function decompose(x: number): { neg: boolean; mant: bigint; exp: number } {
  f64[0] = x;
  const lo = u32[0];
  const hi = u32[1];
  const neg = hi >>> 31 === 1;
  const biased = (hi >>> 20) & 0x7ff;
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (biased === 0) return { neg, mant: frac, exp: -1074 };
  return { neg, mant: frac | (1n << 52n), exp: biased - 1075 };
}

/**
 * Python `format(x, ".{digits}f")`: the exact binary value rounded half-to-even at `digits`
 * decimals (0.25 → "0.2", 0.35 → "0.3" since 0.35 is stored just below the tie, 1.25 → "1.2").
 */
export function pyFormatFixed(x: number, digits: number): string {
  if (!Number.isInteger(digits) || digits < 0) throw new RangeError(`digits must be a non-negative integer, got ${digits}`);
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  const { neg, mant, exp } = decompose(x);
  const scale = 10n ** BigInt(digits);
  let n: bigint;
  if (exp >= 0) {
    n = (mant << BigInt(exp)) * scale;
  } else {
    const num = mant * scale;
    const den = 1n << BigInt(-exp);
    n = num / den;
    const twice = (num % den) * 2n;
    if (twice > den || (twice === den && n % 2n === 1n)) n += 1n;
  }
  let s = n.toString();
  if (digits > 0) {
    s = s.padStart(digits + 1, '0');
    s = `${s.slice(0, s.length - digits)}.${s.slice(s.length - digits)}`;
  }
  return neg ? `-${s}` : s;
}

/** Python `f"{x:.1f}"`, the format of Qwen3-VL's video timestamps. */
export function pyFormat1f(x: number): string {
  return pyFormatFixed(x, 1);
}

/**
 * `numpy.linspace(start, stop, num)` in float64, computed the way NumPy does it:
 * `i * ((stop - start) / (num - 1)) + start`, with the last element set to `stop` exactly.
 */
export function numpyLinspace(start: number, stop: number, num: number): number[] {
  if (!Number.isInteger(num) || num < 0) throw new RangeError(`num must be a non-negative integer, got ${num}`);
  const out = new Array<number>(num);
  const delta = stop - start;
  const div = num - 1;
  if (div > 0) {
    const step = delta / div;
    for (let i = 0; i < num; i++) out[i] = (step === 0 ? (i / div) * delta : i * step) + start;
    out[num - 1] = stop;
  } else {
    for (let i = 0; i < num; i++) out[i] = i * delta + start;
  }
  return out;
}
