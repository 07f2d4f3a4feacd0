import type { Backend } from '../kernels/backend.ts';
import type { TextConfig } from './config.ts';
import type { KVCache } from './kv-cache.ts';
import { TextRotary } from './rope.ts';
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

function drain<T>(g: Generator<void, T, void>): T {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
  }
}

/** The MLP's gate and up outputs [n, intermediate] (gate then silu(gate)·up), reused by every layer of one pass. */
interface MlpScratch {
  gate: Float32Array;
  up: Float32Array;
}

/** Consecutive rows of one forward pass that belong to one sequence. */
interface SequenceRows {
  cache: KVCache;
  rows: number;
  /** positions the cache held before this pass */
  past: number;
}

/** The Qwen3 decoder: q/k-normed GQA attention with interleaved MRoPE, SiLU-gated MLP. */
export class TextModel {
  readonly rotary: TextRotary;

  constructor(
    readonly cfg: TextConfig,
    readonly w: TextWeights,
    readonly backend: Backend,
  ) {
    this.rotary = new TextRotary(cfg.rope, cfg.headDim);
  }

  embed(ids: ArrayLike<number>): Float32Array {
    return this.backend.gatherRows(this.w.embed, ids);
  }

  /**
   * Runs `n` new tokens (embeddings `x`, [n, hidden]) through every layer, appending their keys
   * and values to `cache`, and returns the final-norm hidden states [n, hidden].
   */
  forward(x: Float32Array, n: number, pos: TextPositions, cache: KVCache, deepstack?: DeepstackInjection, trace?: Trace): Float32Array {
    return drain(this.run(x, n, pos, [{ cache, rows: n, past: cache.length }], deepstack, trace));
  }

  /** `forward`, pausing after each layer (a scheduler decodes other sequences in between). */
  forwardSteps(x: Float32Array, n: number, pos: TextPositions, cache: KVCache, deepstack?: DeepstackInjection, trace?: Trace): Generator<void, Float32Array, void> {
    return this.run(x, n, pos, [{ cache, rows: n, past: cache.length }], deepstack, trace);
  }

  /**
   * One token for each of several sequences (row i of `x` continues `caches[i]`): every weight
   * matrix is read once for all rows, and each row attends to its own cache. Row i's result is
   * what `forward` gives that sequence alone (bit for bit where the matmul kernels treat rows
   * independently, as the quantized decode kernels do).
   */
  forwardBatch(x: Float32Array, pos: TextPositions, caches: readonly KVCache[]): Float32Array {
    return drain(this.run(x, caches.length, pos, caches.map((cache) => ({ cache, rows: 1, past: cache.length }))));
  }

  private *run(x: Float32Array, n: number, pos: TextPositions, seqs: SequenceRows[], deepstack?: DeepstackInjection, trace?: Trace): Generator<void, Float32Array, void> {
    const { cfg, backend: be } = this;
    const H = cfg.hiddenSize;
    const { cos, sin } = this.rotary.tables(pos.t, pos.h, pos.w);
    // the MLP's gate and up projections, overwritten by every layer: the widest activations
    // (a 512-token prompt at the 4B shape: 20 MB each), whose fresh pages would be faulted in
    // again at each layer
    const I = this.w.layers[0]?.gate.rows ?? 0;
    const mlp: MlpScratch = { gate: new Float32Array(n * I), up: new Float32Array(n * I) };
    let h = x;
    for (let l = 0; l < cfg.numLayers; l++) {
      trace?.(`text.layer_input.${l}`, h, [n, H]);
      h = this.layer(h, n, l, this.w.layers[l], cos, sin, seqs, mlp);
      const feat = deepstack?.features[l];
      if (feat) {
        for (let r = 0; r < deepstack.rows.length; r++) {
          const o = deepstack.rows[r] * H;
          for (let c = 0; c < H; c++) h[o + c] += feat[r * H + c];
        }
      }
      if (l + 1 < cfg.numLayers) yield;
    }
    const out = be.rmsNorm(h, H, this.w.norm, cfg.rmsNormEps);
    trace?.('text.final_hidden', out, [n, H]);
    return out;
  }

  /** Logits [n, vocab] for hidden rows [n, hidden]. */
  logits(hidden: Float32Array, n: number): Float32Array {
    return this.backend.matmul(hidden, n, this.w.lmHead);
  }

  private layer(
    x: Float32Array,
    n: number,
    l: number,
    w: TextLayerWeights,
    cos: Float32Array,
    sin: Float32Array,
    seqs: readonly SequenceRows[],
    mlp: MlpScratch,
  ): Float32Array {
    const { cfg, backend: be } = this;
    const H = cfg.hiddenSize;
    const hd = cfg.headDim;
    const a = be.rmsNorm(x, H, w.inputNorm, cfg.rmsNormEps);
    // q_norm / k_norm act on each head's vector, before the rotation.
    const q = be.rmsNorm(be.matmul(a, n, w.q, w.qBias), hd, w.qNorm, cfg.rmsNormEps);
    const k = be.rmsNorm(be.matmul(a, n, w.k, w.kBias), hd, w.kNorm, cfg.rmsNormEps);
    const v = be.matmul(a, n, w.v, w.vBias);
    be.rope(q, n, cfg.numHeads, hd, cos, sin);
    be.rope(k, n, cfg.numKvHeads, hd, cos, sin);
    const att = this.attend(l, q, k, v, seqs);
    const y = be.matmul(att, n, w.o, w.oBias);
    be.addInPlace(y, x);
    const b = be.rmsNorm(y, H, w.postNorm, cfg.rmsNormEps);
    const act = be.siluMul(be.matmul(b, n, w.gate, null, mlp.gate), be.matmul(b, n, w.up, null, mlp.up), mlp.gate);
    const z = be.matmul(act, n, w.down);
    be.addInPlace(z, y);
    return z;
  }

  /** Appends each sequence's keys and values to its cache and attends its rows to it. */
  private attend(l: number, q: Float32Array, k: Float32Array, v: Float32Array, seqs: readonly SequenceRows[]): Float32Array {
    const { cfg, backend: be } = this;
    const opts = (rows: number, past: number) => ({ nQ: rows, heads: cfg.numHeads, scale: 1 / Math.sqrt(cfg.headDim), qOffset: past });
    if (seqs.length === 1) {
      const { cache, rows, past } = seqs[0];
      return be.attentionKv(q, cache.append(l, k, v, rows), opts(rows, past));
    }
    const qw = cfg.numHeads * cfg.headDim;
    const kw = cfg.numKvHeads * cfg.headDim;
    const out = new Float32Array(q.length);
    let r = 0;
    for (const { cache, rows, past } of seqs) {
      const view = cache.append(l, k.subarray(r * kw, (r + rows) * kw), v.subarray(r * kw, (r + rows) * kw), rows);
      out.set(be.attentionKv(q.subarray(r * qw, (r + rows) * qw), view, opts(rows, past)), r * qw);
      r += rows;
    }
    return out;
  }
}
