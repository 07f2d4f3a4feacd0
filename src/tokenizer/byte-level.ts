/**
 * GPT-2 style byte-level alphabet used by Qwen's BPE: every byte 0..255 is stored in
 * tokenizer.json as one printable code point. Decoding maps each code point of a token
 * back to its byte.
 */

/** code point → byte, for the 256 code points of the byte-level alphabet. */
const CHAR_TO_BYTE: ReadonlyMap<number, number> = buildCharToByte();

function buildCharToByte(): Map<number, number> {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const isPrintable = new Set(printable);
  const map = new Map<number, number>();
  for (const b of printable) map.set(b, b);
  // The remaining bytes (controls, space, 0x7f-0xa0, 0xad) are shifted to 256, 257, ...
  let next = 0;
  for (let b = 0; b < 256; b++) {
    if (!isPrintable.has(b)) map.set(256 + next++, b);
  }
  return map;
}

const UTF8 = new TextEncoder();

/**
 * Bytes of one token string, as the tokenizers library's ByteLevel decoder computes them:
 * if every code point belongs to the byte-level alphabet, the mapped bytes; otherwise the
 * token's own UTF-8 bytes (this is what happens to added tokens outside the alphabet).
 */
export function byteLevelTokenBytes(token: string): Uint8Array {
  const out: number[] = [];
  for (const ch of token) {
    const b = CHAR_TO_BYTE.get(ch.codePointAt(0)!);
    if (b === undefined) return UTF8.encode(token);
    out.push(b);
  }
  return Uint8Array.from(out);
}
