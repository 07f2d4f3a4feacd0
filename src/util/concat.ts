/** Concatenates typed arrays of one kind (returns the only part itself when there is one). */
export function concatTyped<T extends Float32Array | Int32Array>(parts: readonly T[], make: (n: number) => T): T {
  if (parts.length === 1) return parts[0];
  const out = make(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export const concatF32 = (parts: readonly Float32Array[]): Float32Array => concatTyped(parts, (n) => new Float32Array(n));
export const concatI32 = (parts: readonly Int32Array[]): Int32Array => concatTyped(parts, (n) => new Int32Array(n));
