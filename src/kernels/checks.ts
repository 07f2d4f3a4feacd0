import { QvlError } from '../errors.ts';
import type { AttentionOptions, KvAttentionOptions, KvBatchOptions, KvBatchPart, PreparedWeight } from './backend.ts';
import type { KvView } from './kv.ts';

/**
 * Argument checks every backend runs before a kernel, so that both report the same QvlError
 * for the same mistake (the native addon re-checks sizes as a last line of defence).
 */

export function shapeError(op: string, message: string, detail: Record<string, unknown>): QvlError {
  return new QvlError('TENSOR_SHAPE', `${op}: ${message}`, { op, ...detail });
}

export function checkInt(op: string, name: string, v: number, min = 0): void {
  if (!Number.isInteger(v) || v < min) throw new QvlError('OPTION_INVALID', `${op}: ${name} must be an integer ≥ ${min}, got ${v}`, { op, name, value: v });
}

export function checkFloat32(op: string, name: string, x: unknown): void {
  if (x instanceof Float32Array) return;
  const got = x === null ? 'null' : typeof x === 'object' ? (x.constructor?.name ?? 'an object') : typeof x;
  throw new QvlError('OPTION_INVALID', `${op}: ${name} must be a Float32Array, got ${got}`, { op, name });
}

function checkHeads(op: string, heads: number, kvHeads: number, headDim: number): void {
  checkInt(op, 'heads', heads, 1);
  checkInt(op, 'kvHeads', kvHeads, 1);
  checkInt(op, 'headDim', headDim, 1);
  if (heads % kvHeads) throw new QvlError('OPTION_INVALID', `${op}: heads ${heads} is not a multiple of kvHeads ${kvHeads}`, { heads, kvHeads });
}

export function checkAttention(q: Float32Array, k: Float32Array, v: Float32Array, o: AttentionOptions, out?: Float32Array): void {
  const { nQ, nKv, heads, kvHeads, headDim } = o;
  checkInt('attention', 'nQ', nQ);
  checkInt('attention', 'nKv', nKv);
  checkHeads('attention', heads, kvHeads, headDim);
  checkInt('attention', 'qOffset', o.qOffset ?? 0);
  if (o.int16 !== undefined && typeof o.int16 !== 'boolean') {
    throw new QvlError('OPTION_INVALID', `attention: int16 must be true or false, got ${String(o.int16)}`, { int16: String(o.int16) });
  }
  checkStridedRows('attention', 'q', q.length, nQ, heads, headDim, 'nQ', 'qStride', o.qStride);
  const kvStride = o.kvStride ?? kvHeads * headDim;
  if (o.kvStride !== undefined) checkInt('attention', 'kvStride', o.kvStride, kvHeads * headDim);
  const kvNeed = rowsSpan(nKv, kvStride, kvHeads * headDim);
  if (k.length < kvNeed || v.length < kvNeed) {
    const rows = o.kvStride === undefined ? `${nKv}×${kvHeads}×${headDim}` : `${kvNeed} for ${nKv} rows ${kvStride} apart`;
    throw shapeError('attention', `k/v have ${k.length}/${v.length} values, expected ${rows}`, { nKv, kvHeads, headDim });
  }
  const seg = o.segments;
  if (seg) {
    if (nQ !== nKv) throw new QvlError('OPTION_INVALID', `attention: segments need nQ = nKv, got ${nQ} and ${nKv}`, { nQ, nKv });
    if (seg.length < 2 || seg[0] !== 0 || seg[seg.length - 1] !== nQ) {
      throw new QvlError('OPTION_INVALID', `attention: segments must run from 0 to ${nQ}`, { segments: Array.from(seg) });
    }
    for (let i = 1; i < seg.length; i++) {
      if (seg[i] < seg[i - 1]) throw new QvlError('OPTION_INVALID', `attention: segments must be non-decreasing (at ${i})`, { index: i });
    }
  }
  if (out !== undefined) {
    const shape = `${nQ}×${heads}×${headDim}`;
    const len = nQ * heads * headDim;
    checkOut('attention', out, len, shape, q, 'q');
    checkOut('attention', out, len, shape, k, 'k');
    checkOut('attention', out, len, shape, v, 'v');
  }
}

export function checkAttentionKv(q: Float32Array, kv: KvView, o: KvAttentionOptions, out?: Float32Array): void {
  const { nQ, heads, qOffset } = o;
  const { kvHeads, headDim, blockTokens } = kv.layout;
  checkInt('attentionKv', 'nQ', nQ);
  checkInt('attentionKv', 'qOffset', qOffset);
  checkHeads('attentionKv', heads, kvHeads, headDim);
  if (q.length !== nQ * heads * headDim) throw shapeError('attentionKv', `q has ${q.length} values, expected ${nQ}×${heads}×${headDim}`, { nQ, heads, headDim });
  if (!(kv.layer >= 0 && kv.layer < kv.layout.layers)) throw new QvlError('OPTION_INVALID', `attentionKv: layer ${kv.layer} is outside 0..${kv.layout.layers - 1}`, { layer: kv.layer });
  if (kv.blocks.length * blockTokens < 2 * kv.length) {
    throw shapeError('attentionKv', `${kv.blocks.length / 2} blocks of ${blockTokens} tokens cannot hold ${kv.length} tokens`, { length: kv.length });
  }
  if (out !== undefined) checkOut('attentionKv', out, q.length, `${nQ}×${heads}×${headDim}`, q, 'q');
}

/** Returns the rows of all parts together. */
export function checkAppendAttendKv(q: Float32Array, k: Float32Array, v: Float32Array, parts: readonly KvBatchPart[], o: KvBatchOptions, out: Float32Array): number {
  const op = 'appendAttendKv';
  if (!parts.length) throw new QvlError('OPTION_INVALID', `${op}: no parts`, { op });
  const { layout, layer } = parts[0].view;
  const { kvHeads, headDim, blockTokens } = layout;
  checkHeads(op, o.heads, kvHeads, headDim);
  if (!(layer >= 0 && layer < layout.layers)) throw new QvlError('OPTION_INVALID', `${op}: layer ${layer} is outside 0..${layout.layers - 1}`, { layer });
  let n = 0;
  parts.forEach(({ view, rows, past }, i) => {
    checkInt(op, `parts[${i}].rows`, rows, 1);
    checkInt(op, `parts[${i}].past`, past);
    if (view.layout !== layout || view.layer !== layer || view.slabs !== parts[0].view.slabs) {
      throw new QvlError('OPTION_INVALID', `${op}: parts[${i}] is of another layer, cache layout or KV pool than parts[0]`, { part: i });
    }
    if (view.length !== past + rows) throw shapeError(op, `parts[${i}]: the view holds ${view.length} positions, expected past + rows = ${past + rows}`, { part: i });
    if (view.blocks.length * blockTokens < 2 * view.length) {
      throw shapeError(op, `parts[${i}]: ${view.blocks.length / 2} blocks of ${blockTokens} tokens cannot hold ${view.length} tokens`, { part: i });
    }
    n += rows;
  });
  if (q.length !== n * o.heads * headDim) throw shapeError(op, `q has ${q.length} values, expected ${n}×${o.heads}×${headDim}`, { rows: n });
  for (const [name, a] of [['k', k], ['v', v]] as const) {
    if (a.length !== n * kvHeads * headDim) throw shapeError(op, `${name} has ${a.length} values, expected ${n}×${kvHeads}×${headDim}`, { rows: n });
  }
  checkOut(op, out, q.length, `${n}×${o.heads}×${headDim}`, q, 'q');
  checkOut(op, out, q.length, `${n}×${o.heads}×${headDim}`, k, 'k');
  checkOut(op, out, q.length, `${n}×${o.heads}×${headDim}`, v, 'v');
  return n;
}

export function checkMatmul(x: Float32Array, n: number, w: PreparedWeight, bias?: Float32Array | null, out?: Float32Array, op = 'matmul', at = ''): void {
  checkInt(op, 'n', n);
  if (x.length !== n * w.cols) throw shapeError(op, `x has ${x.length} values, expected ${n}×${w.cols}${at && ` (the columns of ws${at})`}`, { n, cols: w.cols, length: x.length });
  if (bias && bias.length !== w.rows) throw shapeError(op, `bias${at} has ${bias.length} values, expected ${w.rows}`, { rows: w.rows, length: bias.length });
  if (out !== undefined) checkOut(op, out, n * w.rows, `${n}×${w.rows}`, x, 'x', at);
}

/** The most weights one `matmulMany` takes (native/kernels.h, kMatmulManyMax). */
export const MATMUL_MANY_MAX = 4;

export function checkMatmulMany(
  x: Float32Array, n: number, ws: readonly PreparedWeight[], biases?: readonly (Float32Array | null | undefined)[], outs?: readonly Float32Array[],
): void {
  const op = 'matmulMany';
  if (!Array.isArray(ws) || ws.length < 1 || ws.length > MATMUL_MANY_MAX) {
    throw new QvlError('OPTION_INVALID', `${op}: ws must be an array of 1..${MATMUL_MANY_MAX} weights`, { op, count: Array.isArray(ws) ? ws.length : null });
  }
  if (biases !== undefined && biases.length !== ws.length) throw shapeError(op, `biases has ${biases.length} entries, expected ${ws.length} (one per weight)`, {});
  if (outs !== undefined && outs.length !== ws.length) throw shapeError(op, `outs has ${outs.length} entries, expected ${ws.length} (one per weight)`, {});
  for (let i = 0; i < ws.length; i++) {
    checkMatmul(x, n, ws[i], biases?.[i], outs?.[i], op, `[${i}]`);
    for (let j = 0; outs && j < i; j++) {
      if (overlaps(outs[i], outs[j])) throw shapeError(op, `outs[${i}] overlaps outs[${j}]`, {});
    }
  }
}

/**
 * An op's caller-given output: a Float32Array of `length` values that does not overlap its
 * input (the op reads other values than the one it is writing).
 */
function checkOut(op: string, out: Float32Array, length: number, shape: string, input: Float32Array, inputName: string, at = ''): void {
  if (!(out instanceof Float32Array)) throw shapeError(op, `out${at} must be a Float32Array`, {});
  if (out.length !== length) throw shapeError(op, `out${at} has ${out.length} values, expected ${shape}`, { length: out.length });
  if (overlaps(out, input)) throw shapeError(op, `out${at} overlaps ${inputName}`, {});
}

/** Whether two views share any byte. */
function overlaps(a: Float32Array, b: Float32Array): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** The ids as an Int32Array, each checked to name a row. */
export function checkRowIds(w: PreparedWeight, ids: ArrayLike<number>): Int32Array {
  const idx = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!(Number.isInteger(id) && id >= 0 && id < w.rows)) {
      throw new QvlError('OPTION_INVALID', `gatherRows: id ${id} (position ${i}) is outside 0..${w.rows - 1}`, { id, position: i, rows: w.rows });
    }
    idx[i] = id;
  }
  return idx;
}

function checkRows(op: string, x: Float32Array, dim: number): void {
  checkInt(op, 'dim', dim, 1);
  if (x.length % dim) throw shapeError(op, `x has ${x.length} values, not a multiple of dim ${dim}`, { dim, length: x.length });
}

export function checkRmsNorm(x: Float32Array, dim: number, weight: Float32Array, out?: Float32Array): void {
  checkRows('rmsNorm', x, dim);
  if (weight.length !== dim) throw shapeError('rmsNorm', `weight has ${weight.length} values, expected ${dim}`, { dim });
  // out may be x itself (each row is reduced before it is written), not a shifted view of it
  if (out !== undefined && out !== x) checkOut('rmsNorm', out, x.length, `${x.length}`, x, 'x (other than being x itself)');
}

export function checkLayerNorm(x: Float32Array, dim: number, weight: Float32Array, bias: Float32Array, out?: Float32Array): void {
  checkRows('layerNorm', x, dim);
  if (weight.length !== dim || bias.length !== dim) {
    throw shapeError('layerNorm', `weight/bias have ${weight.length}/${bias.length} values, expected ${dim}`, { dim });
  }
  // as rmsNorm: each row is reduced before it is written
  if (out !== undefined && out !== x) checkOut('layerNorm', out, x.length, `${x.length}`, x, 'x (other than being x itself)');
}

/** Values that n rows of `width`, each `stride` after the last, reach over. */
function rowsSpan(n: number, stride: number, width: number): number {
  return n > 0 ? (n - 1) * stride + width : 0;
}

/**
 * An array of n rows of heads·headDim values: packed (exactly that many values), or with a row
 * `stride` (at least the row's width; the array reaches the last row's end).
 */
function checkStridedRows(op: string, name: string, length: number, n: number, heads: number, headDim: number, nName: string, strideName: string, stride?: number): void {
  if (stride === undefined) {
    if (length !== n * heads * headDim) throw shapeError(op, `${name} has ${length} values, expected ${n}×${heads}×${headDim}`, { [nName]: n, heads, headDim });
    return;
  }
  checkInt(op, strideName, stride, heads * headDim);
  const need = rowsSpan(n, stride, heads * headDim);
  if (length < need) throw shapeError(op, `${name} has ${length} values, expected ${need} for ${n} rows ${stride} apart`, { [nName]: n, [strideName]: stride });
}

export function checkRope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array, stride?: number): void {
  checkInt('rope', 'n', n);
  checkInt('rope', 'heads', heads, 1);
  checkInt('rope', 'headDim', headDim, 2);
  if (headDim % 2) throw new QvlError('OPTION_INVALID', `rope: headDim must be even, got ${headDim}`, { headDim });
  checkStridedRows('rope', 'x', x.length, n, heads, headDim, 'n', 'stride', stride);
  if (cos.length < n * headDim || sin.length < n * headDim) {
    throw shapeError('rope', `cos/sin have ${cos.length}/${sin.length} values, expected ${n}×${headDim}`, { n, headDim });
  }
}

export function checkSameLength(op: string, a: Float32Array, b: Float32Array, names?: [string, string]): void {
  if (a.length === b.length) return;
  throw shapeError(op, names ? `${names[0]} has ${a.length} values, ${names[1]} has ${b.length}` : `lengths ${a.length} and ${b.length} differ`, {});
}

/** siluMul's operands: gate, up and (when given) out of one length. */
export function checkSiluMul(gate: Float32Array, up: Float32Array, out?: Float32Array): void {
  checkSameLength('siluMul', gate, up, ['gate', 'up']);
  if (out) checkSameLength('siluMul', gate, out, ['gate', 'out']);
}

export function checkGeluKind(kind: string): void {
  if (kind !== 'tanh' && kind !== 'erf') throw new QvlError('OPTION_INVALID', `gelu: kind must be 'tanh' or 'erf', got '${String(kind)}'`, { kind });
}
