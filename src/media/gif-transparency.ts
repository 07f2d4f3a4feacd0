/**
 * The colour Pillow gives the transparent pixels of a GIF's first frame. Pillow decodes a GIF
 * to palette indices and `convert("RGB")` looks the transparent index up in the palette like
 * any other; decoders that produce RGBA (sharp's) zero those pixels instead. Reading the
 * header (palette and the first Graphic Control Extension) is enough to restore Pillow's colour.
 */

/** RGB of the first frame's transparent index, or undefined when the frame has none. */
export function gifTransparentColour(bytes: Uint8Array): [number, number, number] | undefined {
  const sig = String.fromCharCode(...bytes.subarray(0, 6));
  if (sig !== 'GIF87a' && sig !== 'GIF89a') return undefined;
  let p = 6;
  const flags = bytes[p + 4]!;
  p += 7; // logical screen descriptor
  let globalTable: Uint8Array | undefined;
  if (flags & 0x80) {
    const size = 3 * (1 << ((flags & 7) + 1));
    globalTable = bytes.subarray(p, p + size);
    p += size;
  }
  let transparentIndex: number | undefined;
  while (p < bytes.length) {
    const block = bytes[p]!;
    if (block === 0x21) {
      const label = bytes[p + 1]!;
      if (label === 0xf9 && bytes[p + 2] === 4) {
        const gceFlags = bytes[p + 3]!;
        transparentIndex = gceFlags & 1 ? bytes[p + 6]! : undefined;
      }
      p += 2;
      while (p < bytes.length && bytes[p] !== 0) p += bytes[p]! + 1; // sub-blocks
      p += 1;
    } else if (block === 0x2c) {
      if (transparentIndex === undefined) return undefined;
      const imgFlags = bytes[p + 9]!;
      const table = imgFlags & 0x80 ? bytes.subarray(p + 10, p + 10 + 3 * (1 << ((imgFlags & 7) + 1))) : globalTable;
      if (!table || 3 * transparentIndex + 2 >= table.length) return [0, 0, 0];
      return [table[3 * transparentIndex]!, table[3 * transparentIndex + 1]!, table[3 * transparentIndex + 2]!];
    } else {
      return undefined; // trailer or garbage before the first frame
    }
  }
  return undefined;
}
