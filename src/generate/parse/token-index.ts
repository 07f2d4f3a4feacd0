/**
 * The tokenizer's vocabulary arranged for constrained decoding, built once per tokenizer: every
 * token's bytes sorted lexicographically with the common-prefix length to the previous one (a
 * trie laid out flat, walked without building nodes), plus the "plain string" tokens: text that
 * can sit inside a JSON string as is (no quote, backslash, control byte, complete UTF-8), which
 * a string state allows wholesale instead of byte by byte. Special tokens are left out.
 */

export interface VocabSource {
  readonly vocabSize: number;
  tokenBytes(id: number): Uint8Array | undefined;
  isSpecial(id: number): boolean;
}

export interface SortedTokens {
  ids: Int32Array;
  bytes: Uint8Array[];
  /** common prefix length with the previous entry (0 for the first) */
  lcp: Uint16Array;
  /** index of the first entry whose first byte differs from entry i's */
  groupEnd: Int32Array;
}

export interface TokenIndex {
  all: SortedTokens;
  /** tokens that are not plain string content */
  nonPlain: SortedTokens;
  plainIds: Int32Array;
  /** characters (code points) of each plain token */
  plainChars: Uint16Array;
  maxTokenBytes: number;
}

const cache = new WeakMap<object, TokenIndex>();

/** Counts code points when `b` is a complete, valid UTF-8 text free of `"`, `\` and control bytes. */
function plainChars(b: Uint8Array): number {
  let chars = 0;
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    let n: number;
    if (c < 0x20 || c === 0x22 || c === 0x5c) return -1;
    if (c < 0x80) n = 0;
    else if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) n = 2;
    else if (c >= 0xf0 && c <= 0xf4) n = 3;
    else return -1;
    if (i + n >= b.length) return -1;
    for (let k = 1; k <= n; k++) {
      const d = b[i + k]!;
      if (d < 0x80 || d > 0xbf) return -1;
    }
    i += n + 1;
    chars++;
  }
  return chars;
}

function sortTokens(entries: Array<{ id: number; bytes: Uint8Array; key: string }>): SortedTokens {
  entries.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id - b.id));
  const n = entries.length;
  const ids = new Int32Array(n);
  const bytes: Uint8Array[] = new Array(n);
  const lcp = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const e = entries[i]!;
    ids[i] = e.id;
    bytes[i] = e.bytes;
    if (i > 0) {
      const p = entries[i - 1]!.bytes;
      const m = Math.min(p.length, e.bytes.length);
      let k = 0;
      while (k < m && p[k] === e.bytes[k]) k++;
      lcp[i] = k;
    }
  }
  const groupEnd = new Int32Array(n);
  for (let i = n - 1; i >= 0; i--) {
    groupEnd[i] = i + 1 < n && bytes[i + 1]![0] === bytes[i]![0] ? groupEnd[i + 1]! : i + 1;
  }
  return { ids, bytes, lcp, groupEnd };
}

export function buildTokenIndex(vocab: VocabSource): TokenIndex {
  const hit = cache.get(vocab);
  if (hit) return hit;
  const all: Array<{ id: number; bytes: Uint8Array; key: string }> = [];
  const nonPlain: typeof all = [];
  const plainIds: number[] = [];
  const plainCounts: number[] = [];
  let maxTokenBytes = 0;
  for (let id = 0; id < vocab.vocabSize; id++) {
    if (vocab.isSpecial(id)) continue;
    const bytes = vocab.tokenBytes(id);
    if (bytes === undefined || bytes.length === 0) continue;
    // Latin-1 strings sort exactly like their bytes.
    const e = { id, bytes, key: String.fromCharCode(...bytes) };
    all.push(e);
    maxTokenBytes = Math.max(maxTokenBytes, bytes.length);
    const chars = plainChars(bytes);
    if (chars > 0) {
      plainIds.push(id);
      plainCounts.push(chars);
    } else nonPlain.push(e);
  }
  const index: TokenIndex = {
    all: sortTokens(all),
    nonPlain: sortTokens(nonPlain),
    plainIds: Int32Array.from(plainIds),
    plainChars: Uint16Array.from(plainCounts),
    maxTokenBytes,
  };
  cache.set(vocab, index);
  return index;
}
