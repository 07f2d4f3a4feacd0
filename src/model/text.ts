import type { Backend } from '../kernels/backend.ts';
import type { TextConfig } from './config.ts';
import type { KVCache } from './kv-cache.ts';
import { TextRotary } from './rope.ts';
import { type LayerScratch, type ScratchLease, ScratchPool } from './text-scratch.ts';
import type { Trace } from './trace.ts';
import type { TextLayerWeights, TextWeights } from './weights.ts';

/** Vision features to add after the first decoder layers (prefill only). */
export interface DeepstackInjection {
  /** row indexes (within this forward's tokens) of the vision pad tokens, in order */
  rows: Int32Array;
  /** feature k is added after decoder layer k: [rows.length, hidden] each */
  features: Float32Array[];
}

export interface TextPositions {
  t: ArrayLike<number>;
  h: ArrayLike<number>;
  w: ArrayLike<number>;
}

function drain<T, N>(g: Generator<void, T, N>): T {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
  }
}

/** Consecutive rows of one forward pass that belong to one sequence. */
interface SequenceRows {
  cache: KVCache;
  rows: number;
}

/** The Qwen3 decoder: q/k-normed GQA attention with interleaved MRoPE, SiLU-gated MLP. */
export class TextModel {
  readonly rotary: TextRotary;
  readonly #scratch: ScratchPool;

  constructor(
    readonly cfg: TextConfig,
    readonly w: TextWeights,
    readonly backend: Backend,
  ) {
    this.rotary = new TextRotary(cfg.rope, cfg.headDim);
    this.#scratch = new ScratchPool(cfg.hiddenSize, w.layers[0]);
  }

  embed(ids: ArrayLike<number>): Float32Array {
    return this.backend.gatherRows(this.w.embed, ids);
  }

  /**
   * Runs `n` new tokens (embeddings `x`, [n, hidden]) through every layer, appending their keys
   * and values to `cache`, and returns the final-norm hidden states [n, hidden].
   */
  forward(x: Float32Array, n: number, pos: TextPositions, cache: KVCache, deepstack?: DeepstackInjection, trace?: Trace): Float32Array {
    return drain(this.run(x, n, pos, [{ cache, rows: n }], deepstack, trace));
  }

  /**
   * `forward`, pausing after each layer but the last (a scheduler decodes other sequences in
   * between); resumed with `next(true)`, it runs the layer it paused after again, on the same input.
   */
  forwardSteps(x: Float32Array, n: number, pos: TextPositions, cache: KVCache, deepstack?: DeepstackInjection, trace?: Trace, lean = false): Generator<void, Float32Array, boolean | undefined> {
    return this.run(x, n, pos, [{ cache, rows: n }], deepstack, trace, lean);
  }

  /**
   * Rows of several sequences in one pass (the first `parts[0].rows` rows of `x` continue
   * `parts[0].cache`, and so on: a generated token, or the rest of a prompt): every weight matrix is
   * read once for all rows, and each sequence's rows attend to its own cache. A sequence's result is
   * what `forward` gives it alone (bit for bit where the matmul kernels treat rows independently,
   * as the quantized ones do).
   */
  forwardRows(x: Float32Array, pos: TextPositions, parts: readonly { cache: KVCache; rows: number }[]): Float32Array {
    const n = parts.reduce((s, p) => s + p.rows, 0);
    return drain(this.run(x, n, pos, parts.map(({ cache, rows }) => ({ cache, rows }))));
  }

  /**
   * `lean`: between layers the pass holds only the two rows of layer outputs (the next layer's
   * input, and the last one's for a rerun) and hands the rest of its scratch back, leasing it
   * again for the next layer; for passes held paused for long side by side (calibration holds
   * every item's prefill: at the 4B shape the rest is ~160 KB per token).
   */
  private *run(x: Float32Array, n: number, pos: TextPositions, seqs: SequenceRows[], deepstack?: DeepstackInjection, trace?: Trace, lean = false): Generator<void, Float32Array, boolean | undefined> {
    const { cfg, backend: be } = this;
    const H = cfg.hiddenSize;
    const { cos, sin } = this.rotary.tables(pos.t, pos.h, pos.w);
    let lease: ScratchLease | undefined = this.#scratch.lease(n, lean);
    const outs: [Float32Array, Float32Array] = lean ? [new Float32Array(n * H), new Float32Array(n * H)] : lease.scratch.out;
    try {
      let h = x;
      for (let l = 0; l < cfg.numLayers; l++) {
        // the layer's input stays intact while it runs (it writes the other scratch row), so it can run again
        const input = h;
        for (;;) {
          trace?.(`text.layer_input.${l}`, input.slice(), [n, H]); // a copy: h is overwritten two layers on
          lease ??= this.#scratch.lease(n, lean);
          h = this.layer(input, n, l, this.w.layers[l], cos, sin, seqs, lease.scratch, outs[l & 1]);
          const feat = deepstack?.features[l];
          if (feat) {
            for (let r = 0; r < deepstack.rows.length; r++) {
              const o = deepstack.rows[r] * H;
              for (let c = 0; c < H; c++) h[o + c] += feat[r * H + c];
            }
          }
          if (l + 1 === cfg.numLayers) break;
          if (lean) {
            lease.release();
            lease = undefined;
          }
          // `next(true)` runs layer l again, on its weights as they are now (calibration swaps in quantized ones)
          const again = yield;
          if (again !== true) break;
          for (const s of seqs) s.cache.rewind(l, s.rows);
        }
      }
      // a fresh array: the scratch goes on to the next pass
      const out = be.rmsNorm(h, H, this.w.norm, cfg.rmsNormEps);
      trace?.('text.final_hidden', out, [n, H]);
      return out;
    } finally {
      lease?.release();
    }
  }

  /** Logits [n, vocab] for hidden rows [n, hidden], into `out` when given. */
  logits(hidden: Float32Array, n: number, out?: Float32Array): Float32Array {
    return this.backend.matmul(hidden, n, this.w.lmHead, null, out);
  }

  private layer(
    x: Float32Array,
    n: number,
    l: number,
    w: TextLayerWeights,
    cos: Float32Array,
    sin: Float32Array,
    seqs: readonly SequenceRows[],
    s: LayerScratch,
    out: Float32Array,
  ): Float32Array {
    const { cfg, backend: be } = this;
    const H = cfg.hiddenSize;
    const hd = cfg.headDim;
    const eps = cfg.rmsNormEps;
    const a = be.rmsNorm(x, H, w.inputNorm, eps, s.a);
    // q, k and v in one call (repacked q4 / q8: one job over a quantized once); q_norm / k_norm
    // act on each head's vector, before the rotation.
    be.matmulMany(a, n, [w.q, w.k, w.v], [w.qBias, w.kBias, w.vBias], [s.q, s.k, s.v]);
    const q = be.rmsNorm(s.q, hd, w.qNorm, eps, s.q);
    const k = be.rmsNorm(s.k, hd, w.kNorm, eps, s.k);
    const v = s.v;
    be.rope(q, n, cfg.numHeads, hd, cos, sin);
    be.rope(k, n, cfg.numKvHeads, hd, cos, sin);
    const att = this.attend(l, q, k, v, seqs, s.att);
    const y = be.matmul(att, n, w.o, w.oBias, s.y);
    be.addInPlace(y, x);
    const b = be.rmsNorm(y, H, w.postNorm, eps, s.b);
    be.matmulMany(b, n, [w.gate, w.up], [null, null], [s.gate, s.up]);
    const act = be.siluMul(s.gate, s.up, s.gate);
    const z = be.matmul(act, n, w.down, null, out);
    be.addInPlace(z, y);
    return z;
  }

  /**
   * Appends each sequence's keys and values to its cache and attends its rows to it: one backend
   * call for all of them (a batched decode step's sequences share the threads' job).
   */
  private attend(l: number, q: Float32Array, k: Float32Array, v: Float32Array, seqs: readonly SequenceRows[], out: Float32Array): Float32Array {
    const { cfg, backend: be } = this;
    const parts = seqs.map(({ cache, rows }) => ({ ...cache.extend(l, rows), rows }));
    return be.appendAttendKv(q, k, v, parts, { heads: cfg.numHeads, scale: 1 / Math.sqrt(cfg.headDim) }, out);
  }

}
