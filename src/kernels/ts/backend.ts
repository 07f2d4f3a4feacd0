import type { AttentionOptions, Backend, KvAttentionOptions, KvBatchOptions, KvBatchPart, PreparedWeight } from '../backend.ts';
import { checkAppendAttendKv, checkAttention, checkAttentionKv, checkFloat32, checkGeluKind, checkLayerNorm, checkMatmul, checkMatmulMany, checkRmsNorm, checkRope, checkRowIds, checkSameLength, checkSiluMul } from '../checks.ts';
import { KvRowReader, type KvView, writeKvAt } from '../kv.ts';
import { weightBytes, type WeightData } from '../weight.ts';
import { argmax } from './argmax.ts';
import { dequantRow } from './dequant.ts';

/**
 * Plain TypeScript kernels: the oracle every other backend is checked against. Sums are
 * accumulated in float64 so that the oracle is at least as accurate as any float32 kernel.
 * Arguments are checked by the same functions as the native backend's (kernels/checks.ts).
 */
export class TsBackend implements Backend {
  readonly name = 'ts';

  prepare(w: WeightData): PreparedWeight {
    return { rows: w.rows, cols: w.cols, format: w.format, bytes: weightBytes(w), impl: w };
  }

  matmul(x: Float32Array, n: number, pw: PreparedWeight, bias?: Float32Array | null, out?: Float32Array): Float32Array {
    const w = pw.impl as WeightData;
    checkMatmul(x, n, pw, bias, out);
    const { rows, cols } = w;
    const y = out ?? new Float32Array(n * rows);
    const row = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      dequantRow(w, r, row);
      const b = bias ? bias[r] : 0;
      for (let i = 0; i < n; i++) {
        let s = 0;
        const off = i * cols;
        for (let c = 0; c < cols; c++) s += x[off + c] * row[c];
        y[i * rows + r] = s + b;
      }
    }
    return y;
  }

  matmulMany(x: Float32Array, n: number, ws: readonly PreparedWeight[], biases?: readonly (Float32Array | null | undefined)[], outs?: readonly Float32Array[]): Float32Array[] {
    checkMatmulMany(x, n, ws, biases, outs);
    return ws.map((w, i) => this.matmul(x, n, w, biases?.[i], outs?.[i]));
  }

  gatherRows(pw: PreparedWeight, ids: ArrayLike<number>): Float32Array {
    const w = pw.impl as WeightData;
    checkRowIds(pw, ids);
    const out = new Float32Array(ids.length * w.cols);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      dequantRow(w, id, out.subarray(i * w.cols, (i + 1) * w.cols));
    }
    return out;
  }

  rmsNorm(x: Float32Array, dim: number, weight: Float32Array, eps: number, into?: Float32Array): Float32Array {
    checkRmsNorm(x, dim, weight, into);
    const out = into ?? new Float32Array(x.length);
    for (let off = 0; off < x.length; off += dim) {
      let ss = 0;
      for (let c = 0; c < dim; c++) ss += x[off + c] * x[off + c];
      const inv = 1 / Math.sqrt(ss / dim + eps);
      for (let c = 0; c < dim; c++) out[off + c] = weight[c] * Math.fround(x[off + c] * inv);
    }
    return out;
  }

  layerNorm(x: Float32Array, dim: number, weight: Float32Array, bias: Float32Array, eps: number, into?: Float32Array): Float32Array {
    checkLayerNorm(x, dim, weight, bias, into);
    const out = into ?? new Float32Array(x.length);
    for (let off = 0; off < x.length; off += dim) {
      let mean = 0;
      for (let c = 0; c < dim; c++) mean += x[off + c];
      mean /= dim;
      let v = 0;
      for (let c = 0; c < dim; c++) v += (x[off + c] - mean) ** 2;
      const inv = 1 / Math.sqrt(v / dim + eps);
      for (let c = 0; c < dim; c++) out[off + c] = (x[off + c] - mean) * inv * weight[c] + bias[c];
    }
    return out;
  }

  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array, stride?: number): void {
    checkRope(x, n, heads, headDim, cos, sin, stride);
    const half = headDim / 2;
    const rowStride = stride ?? heads * headDim;
    for (let i = 0; i < n; i++) {
      const cs = i * headDim;
      for (let h = 0; h < heads; h++) {
        const off = i * rowStride + h * headDim;
        for (let d = 0; d < half; d++) {
          const a = x[off + d];
          const b = x[off + d + half];
          x[off + d] = a * cos[cs + d] - b * sin[cs + d];
          x[off + d + half] = b * cos[cs + d + half] + a * sin[cs + d + half];
        }
      }
    }
  }

  attention(q: Float32Array, k: Float32Array, v: Float32Array, o: AttentionOptions, into?: Float32Array): Float32Array {
    checkAttention(q, k, v, o, into);
    const { kvHeads, headDim } = o;
    const kvStride = o.kvStride ?? kvHeads * headDim;
    const rowOf = (src: Float32Array) => (j: number, kh: number) => src.subarray(j * kvStride + kh * headDim, j * kvStride + (kh + 1) * headDim);
    const out = sdpa(q, rowOf(k), rowOf(v), o);
    if (!into) return out;
    into.set(out);
    return into;
  }

  attentionKv(q: Float32Array, kv: KvView, o: KvAttentionOptions, into?: Float32Array): Float32Array {
    checkAttentionKv(q, kv, o, into);
    const L = kv.layout;
    const keys = new KvRowReader(kv, 0);
    const values = new KvRowReader(kv, 1);
    const out = sdpa(q, (j, kh) => keys.row(j, kh), (j, kh) => values.row(j, kh), {
      nQ: o.nQ,
      nKv: kv.length,
      heads: o.heads,
      kvHeads: L.kvHeads,
      headDim: L.headDim,
      scale: o.scale,
      causal: true,
      qOffset: o.qOffset,
    });
    if (!into) return out;
    into.set(out);
    return into;
  }

  appendAttendKv(q: Float32Array, k: Float32Array, v: Float32Array, parts: readonly KvBatchPart[], o: KvBatchOptions, out: Float32Array): Float32Array {
    checkAppendAttendKv(q, k, v, parts, o, out);
    const { kvHeads, headDim } = parts[0].view.layout;
    const qw = o.heads * headDim;
    const kw = kvHeads * headDim;
    let r = 0;
    for (const { view, rows, past } of parts) {
      writeKvAt(view, past, k.subarray(r * kw, (r + rows) * kw), v.subarray(r * kw, (r + rows) * kw), rows);
      this.attentionKv(q.subarray(r * qw, (r + rows) * qw), view, { nQ: rows, heads: o.heads, scale: o.scale, qOffset: past }, out.subarray(r * qw, (r + rows) * qw));
      r += rows;
    }
    return out;
  }

  siluMul(gate: Float32Array, up: Float32Array, into?: Float32Array): Float32Array {
    checkSiluMul(gate, up, into);
    const out = into ?? new Float32Array(gate.length);
    for (let i = 0; i < gate.length; i++) {
      const g = gate[i];
      out[i] = (g / (1 + Math.exp(-g))) * up[i];
    }
    return out;
  }

  gelu(x: Float32Array, kind: 'tanh' | 'erf'): void {
    checkGeluKind(kind);
    if (kind === 'tanh') {
      const c = Math.sqrt(2 / Math.PI);
      for (let i = 0; i < x.length; i++) {
        const u = x[i];
        x[i] = 0.5 * u * (1 + Math.tanh(c * (u + 0.044715 * u * u * u)));
      }
    } else {
      for (let i = 0; i < x.length; i++) {
        const u = x[i];
        x[i] = 0.5 * u * (1 + erf(u / Math.SQRT2));
      }
    }
  }

  addInPlace(a: Float32Array, b: Float32Array): void {
    checkSameLength('addInPlace', a, b);
    for (let i = 0; i < a.length; i++) a[i] += b[i];
  }

  argmax(x: Float32Array): number {
    checkFloat32('argmax', 'x', x);
    return argmax(x);
  }
}

/** Row j of kv head kh as float32 [headDim] (valid until the next call). */
type RowOf = (j: number, kh: number) => Float32Array;

/** Softmax attention in float64, one (query, head) row at a time, keys and values read by row. */
function sdpa(q: Float32Array, keyRow: RowOf, valueRow: RowOf, o: AttentionOptions): Float32Array {
  const { nQ, nKv, heads, kvHeads, headDim, scale } = o;
  const qOffset = o.qOffset ?? 0;
  const group = heads / kvHeads;
  const outStride = heads * headDim;
  const qStride = o.qStride ?? outStride;
  const out = new Float32Array(nQ * outStride);
  const scores = new Float64Array(nKv);
  const acc = new Float64Array(headDim);
  const seg = o.segments;
  let segIdx = 0;
  for (let i = 0; i < nQ; i++) {
    let lo = 0;
    let hi = nKv;
    if (seg) {
      while (seg[segIdx + 1] <= i) segIdx++;
      lo = seg[segIdx];
      hi = seg[segIdx + 1];
    } else if (o.causal) {
      hi = Math.min(nKv, qOffset + i + 1);
    }
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      const qo = i * qStride + h * headDim;
      const oo = i * outStride + h * headDim;
      let max = -Infinity;
      for (let j = lo; j < hi; j++) {
        const k = keyRow(j, kh);
        let s = 0;
        for (let d = 0; d < headDim; d++) s += q[qo + d] * k[d];
        s *= scale;
        scores[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = lo; j < hi; j++) {
        const e = Math.exp(scores[j] - max);
        scores[j] = e;
        sum += e;
      }
      acc.fill(0);
      for (let j = lo; j < hi; j++) {
        const p = scores[j] / sum;
        const v = valueRow(j, kh);
        for (let d = 0; d < headDim; d++) acc[d] += p * v[d];
      }
      for (let d = 0; d < headDim; d++) out[oo + d] = acc[d];
    }
  }
  return out;
}

/** erf to double precision (W. J. Cody's rational approximations, |error| < 1e-15). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 0.5) {
    const t = x * x;
    const p = (((0.1857777061846032 * t + 3.161123743870566) * t + 113.864154151050156) * t + 377.485237685302021) * t + 3209.37758913846947;
    const q = (((t + 23.6012909523441209) * t + 244.024637934444173) * t + 1282.61652607737228) * t + 2844.23683343917062;
    return (x * p) / q;
  }
  return x < 0 ? -1 + erfcPos(ax) : 1 - erfcPos(ax);
}

function erfcPos(x: number): number {
  if (x < 4) {
    const p =
      ((((((((2.15311535474403846e-8 * x + 0.564188496988670089) * x + 8.88314979438837594) * x + 66.1191906371416295) * x +
        298.635138197400131) * x + 881.95222124176909) * x + 1712.04761263407058) * x + 2051.07837782607147) * x +
        1230.33935479799725);
    const q =
      (((((((x + 15.7449261107098347) * x + 117.693950891312499) * x + 537.181101862009858) * x + 1621.38957456669019) * x +
        3290.79923573345963) * x + 4362.61909014324716) * x + 3439.36767414372164) * x + 1230.33935480374942;
    return (Math.exp(-x * x) * p) / q;
  }
  const z = 1 / (x * x);
  const p = ((((0.0163153871373020978 * z + 0.305326634961232344) * z + 0.360344899949804439) * z + 0.125781726111229246) * z +
    0.0160837851487422766) * z + 0.000658749161529837803;
  const q = ((((z + 2.56852019228982242) * z + 1.87295284992346725) * z + 0.527905102951428412) * z + 0.0605183413124413191) * z +
    0.00233520497626869185;
  return (Math.exp(-x * x) / x) * (1 / Math.sqrt(Math.PI) - (z * p) / q);
}
