/**
 * Streams text while watching for stop strings: text that might be the start of a stop string
 * is held back until it is decided, and the stop string itself is never emitted.
 */
export class StopStringFilter {
  private readonly stops: string[];
  private readonly hold: number;
  private pending = '';
  stopped = false;

  constructor(stops: readonly string[] = []) {
    this.stops = stops.filter((s) => s.length > 0);
    this.hold = Math.max(0, ...this.stops.map((s) => s.length - 1));
  }

  /** Feeds new text; returns what can be emitted now. Sets `stopped` when a stop string appears. */
  push(text: string): string {
    if (this.stopped) return '';
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return out;
    }
    // Keep only a suffix that could still grow into a stop string.
    let keep = 0;
    for (let n = Math.min(this.hold, this.pending.length); n > 0; n--) {
      const tail = this.pending.slice(this.pending.length - n);
      if (this.stops.some((s) => s.startsWith(tail))) {
        keep = n;
        break;
      }
    }
    let emitLen = this.pending.length - keep;
    // Never split a surrogate pair.
    if (emitLen > 0 && emitLen < this.pending.length && isHighSurrogate(this.pending.charCodeAt(emitLen - 1))) emitLen--;
    const out = this.pending.slice(0, emitLen);
    this.pending = this.pending.slice(emitLen);
    return out;
  }

  /** At the end of generation: whatever is still held back. */
  flush(): string {
    const out = this.stopped ? '' : this.pending;
    this.pending = '';
    return out;
  }
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
