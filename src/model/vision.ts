import { QvlError } from '../errors.ts';
import type { Backend } from '../kernels/backend.ts';
import type { VisionConfig } from './config.ts';
import type { Grid } from './rope-index.ts';
import type { Trace } from './trace.ts';
import { interpolatePosEmbed, mergeOrderCoords, visionRotary } from './vision-positions.ts';
import type { Linear, MergerWeights, VisionBlockWeights, VisionWeights } from './weights.ts';
import { concatI32 } from '../util/concat.ts';

export interface VisionOutput {
  /** merger output, one row per LLM token: [Σ t·h·w/4, outHidden] */
  embeds: Float32Array;
  /** one per DeepStack tap, same shape as embeds */
  deepstack: Float32Array[];
  tokens: number;
}

/**
 * Activations that every block of one encode overwrites, reused instead of allocated at each
 * block: the first touch of a fresh buffer's pages costs more than the op that writes it (a
 * 4096×1024 LayerNorm on 2 cores: 2 ms into a used buffer, 8–10 ms into a new one). The largest
 * (qkv is 3·D wide, the MLP's hidden layer 4·D: 50 and 67 MB for a 1024² image) once cost more
 * than a quarter of the tower's GEMM time.
 */
interface BlockScratch {
  /** q|k|v of each token in one row; rope and attention read the three parts in place */
  qkv: Float32Array;
  hid: Float32Array;
  /** LayerNorm outputs (dead once the next matmul has read them) */
  norm: Float32Array;
  att: Float32Array;
  /** the attention half's residual sum, read again at the end of the block */
  y: Float32Array;
  /** block outputs, alternately: a block's input is the other one */
  out: [Float32Array, Float32Array];
}

/**
 * The Qwen3-VL ViT: Conv3d patch embedding (a linear map on 1536-wide rows), resampled learned
 * positions, blocks with 2-D rotary attention restricted to each frame, and the mergers.
 * Several images (or videos) run in one pass; attention stays block-diagonal.
 */
export class VisionTower {
  constructor(
    readonly cfg: VisionConfig,
    readonly w: VisionWeights,
    readonly backend: Backend,
  ) {}

  forward(pixels: Float32Array, grids: readonly Grid[], trace?: Trace): VisionOutput {
    const run = this.forwardSteps(pixels, grids, trace);
    for (;;) {
      const r = run.next();
      if (r.done) return r.value;
    }
  }

  /** `forward`, pausing after each block (a scheduler decodes other sequences in between). */
  *forwardSteps(pixels: Float32Array, grids: readonly Grid[], trace?: Trace): Generator<void, VisionOutput, unknown> {
    const { cfg, backend: be } = this;
    const D = cfg.hiddenSize;
    const m = cfg.spatialMergeSize;
    const rowWidth = cfg.inChannels * cfg.temporalPatchSize * cfg.patchSize * cfg.patchSize;
    let n = 0;
    for (const g of grids) {
      if (g[1] % m !== 0 || g[2] % m !== 0) {
        throw new QvlError('VIDEO_INVALID', `grid ${JSON.stringify(g)} is not divisible by the merge size ${m}`, { grid: g });
      }
      n += g[0] * g[1] * g[2];
    }
    if (pixels.length !== n * rowWidth) {
      throw new QvlError('TOKEN_COUNT_MISMATCH', `pixel rows (${pixels.length / rowWidth}) do not match the grids (${n} patches)`, {
        rows: pixels.length / rowWidth,
        patches: n,
      });
    }

    const x = be.matmul(pixels, n, this.w.patchEmbed.w, this.w.patchEmbed.b);
    trace?.('vision.patch_embed', x, [n, D]);

    const side = Math.round(Math.sqrt(cfg.numPositionEmbeddings));
    const pos = new Float32Array(n * D);
    const rows: Int32Array[] = [];
    const cols: Int32Array[] = [];
    const segments: number[] = [0];
    let off = 0;
    for (const g of grids) {
      const p = interpolatePosEmbed(this.w.posEmbed, side, D, g, m);
      pos.set(p, off * D);
      const c = mergeOrderCoords(g, m);
      rows.push(c.row);
      cols.push(c.col);
      for (let k = 0; k < g[0]; k++) segments.push(segments[segments.length - 1] + g[1] * g[2]);
      off += g[0] * g[1] * g[2];
    }
    trace?.('vision.pos_embed', pos, [n, D]);
    be.addInPlace(x, pos);

    const rot = visionRotary(concatI32(rows), concatI32(cols), cfg.headDim, cfg.ropeTheta);
    const seg = Int32Array.from(segments);

    const deepstack: Float32Array[] = [];
    const scratch: BlockScratch = {
      qkv: new Float32Array(n * 3 * D),
      hid: new Float32Array(n * (this.w.blocks[0]?.fc1.w.rows ?? 0)),
      norm: new Float32Array(n * D),
      att: new Float32Array(n * D),
      y: new Float32Array(n * D),
      out: [new Float32Array(n * D), new Float32Array(n * D)],
    };
    // the patch embedding and the position table are a step of their own (~0.2 s at 1024² on 2
    // cores), not added to the first half block's pause of running streams
    yield;
    let h = x;
    for (let i = 0; i < cfg.depth; i++) {
      h = yield* this.block(h, n, this.w.blocks[i], rot, seg, scratch, scratch.out[i & 1]);
      // Features are injected in vision-block order; the merger is the one listed for this block.
      const tap = cfg.deepstackVisualIndexes.indexOf(i);
      if (tap >= 0) {
        yield; // a DeepStack merger (two matmuls over the merged tokens) is a step of its own
        deepstack.push(this.merge(h, n, this.w.deepstack[tap], true));
      }
      yield;
    }
    trace?.('vision.last_hidden', h, [n, D]);
    const embeds = this.merge(h, n, this.w.merger, false);
    const tokens = n / (m * m);
    trace?.('vision.embeds', embeds, [tokens, cfg.outHiddenSize]);
    deepstack.forEach((d, k) => trace?.(`vision.deepstack.${k}`, d, [tokens, cfg.outHiddenSize]));
    return { embeds, deepstack, tokens };
  }

  /**
   * One block, its output written into `out` (not `x`'s buffer); it pauses between its attention
   * and MLP halves, so a running stream waits for half a block, not a whole one.
   */
  private *block(
    x: Float32Array,
    n: number,
    w: VisionBlockWeights,
    rot: { cos: Float32Array; sin: Float32Array },
    segments: Int32Array,
    s: BlockScratch,
    out: Float32Array,
  ): Generator<void, Float32Array, unknown> {
    const { cfg, backend: be } = this;
    const D = cfg.hiddenSize;
    const eps = cfg.layerNormEps;
    const a = be.layerNorm(x, D, w.norm1.w, w.norm1.b!, eps, s.norm);
    const qkv = be.matmul(a, n, w.qkv.w, w.qkv.b, s.qkv);
    // q, k and v stay in their fused rows (3·D apart): copying them out was 2% of a 448² tower
    const q = qkv, k = qkv.subarray(D), v = qkv.subarray(2 * D);
    be.rope(q, n, cfg.numHeads, cfg.headDim, rot.cos, rot.sin, 3 * D);
    be.rope(k, n, cfg.numHeads, cfg.headDim, rot.cos, rot.sin, 3 * D);
    const att = be.attention(q, k, v, {
      nQ: n,
      nKv: n,
      heads: cfg.numHeads,
      kvHeads: cfg.numHeads,
      headDim: cfg.headDim,
      scale: 1 / Math.sqrt(cfg.headDim),
      causal: false,
      segments,
      qStride: 3 * D,
      kvStride: 3 * D,
      // int16 products where the block's own matmuls are integer ones (q8: int16 activations)
      int16: w.qkv.w.format === 'q8' || w.qkv.w.format === 'q4',
    }, s.att);
    const y = be.matmul(att, n, w.proj.w, w.proj.b, s.y);
    be.addInPlace(y, x);
    yield;
    const b = be.layerNorm(y, D, w.norm2.w, w.norm2.b!, eps, s.norm);
    const hid = be.matmul(b, n, w.fc1.w, w.fc1.b, s.hid);
    be.gelu(hid, cfg.hiddenAct === 'gelu' ? 'erf' : 'tanh');
    const z = be.matmul(hid, n, w.fc2.w, w.fc2.b, out);
    be.addInPlace(z, y);
    return z;
  }

  /**
   * Groups each 2×2 window (4 consecutive rows) into one token. The final merger normalizes
   * each patch before grouping; the DeepStack mergers normalize the grouped vector.
   */
  private merge(x: Float32Array, n: number, w: MergerWeights, postShuffleNorm: boolean): Float32Array {
    const { cfg, backend: be } = this;
    const D = cfg.hiddenSize;
    const M = D * cfg.spatialMergeSize ** 2;
    const tokens = (n * D) / M;
    const normed = postShuffleNorm ? be.layerNorm(x, M, w.norm.w, w.norm.b!, cfg.layerNormEps) : be.layerNorm(x, D, w.norm.w, w.norm.b!, cfg.layerNormEps);
    const hid = linear(be, normed, tokens, w.fc1);
    be.gelu(hid, 'erf');
    return linear(be, hid, tokens, w.fc2);
  }
}

function linear(be: Backend, x: Float32Array, n: number, l: Linear): Float32Array {
  return be.matmul(x, n, l.w, l.b);
}

