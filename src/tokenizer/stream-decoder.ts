/**
 * Incremental detokenization for streaming output.
 *
 * Byte-level BPE tokens can end in the middle of a multi-byte UTF-8 character (an emoji is
 * often 2–4 tokens). Feeding each token's bytes to a streaming UTF-8 decoder holds back an
 * incomplete character until its last byte arrives, so `push` never returns half a character
 * or a lone surrogate. WHATWG streaming decoding yields exactly the one-shot result, so the
 * concatenation of all deltas plus `flush()` equals `tokenizer.decode(allIds)` (for configs with
 * `clean_up_tokenization_spaces: false`, as Qwen's; that cleanup is not prefix-stable).
 */
import type { DecodeOptions, QwenTokenizer } from './tokenizer.ts';

export class StreamingDetokenizer {
  private readonly tokenizer: QwenTokenizer;
  private readonly skipSpecialTokens: boolean;
  private decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  constructor(tokenizer: QwenTokenizer, opts: DecodeOptions = {}) {
    this.tokenizer = tokenizer;
    this.skipSpecialTokens = opts.skipSpecialTokens === true;
  }

  /** Adds one generated id; returns the text completed by it (possibly empty). */
  push(id: number): string {
    if (this.skipSpecialTokens && this.tokenizer.isSpecial(id)) return '';
    const bytes = this.tokenizer.tokenBytes(id);
    if (bytes === undefined) return '';
    return this.decoder.decode(bytes, { stream: true });
  }

  /** Ends the stream: an unfinished trailing character becomes U+FFFD, as in `decode`. */
  flush(): string {
    const rest = this.decoder.decode();
    this.decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
    return rest;
  }
}
