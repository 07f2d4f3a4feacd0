import { QvlError } from '../errors.ts';
import type { AttentionOptions, KvAttentionOptions } from './backend.ts';
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

function checkHeads(op: string, heads: number, kvHeads: number, headDim: number): void {
  checkInt(op, 'heads', heads, 1);
  checkInt(op, 'kvHeads', kvHeads, 1);
  checkInt(op, 'headDim', headDim, 1);
  if (heads % kvHeads) throw new QvlError('OPTION_INVALID', `${op}: heads ${heads} is not a multiple of kvHeads ${kvHeads}`, { heads, kvHeads });
}

export function checkAttention(q: Float32Array, k: Float32Array, v: Float32Array, o: AttentionOptions): void {
  const { nQ, nKv, heads, kvHeads, headDim } = o;
  checkInt('attention', 'nQ', nQ);
  checkInt('attention', 'nKv', nKv);
  checkHeads('attention', heads, kvHeads, headDim);
  checkInt('attention', 'qOffset', o.qOffset ?? 0);
  if (q.length !== nQ * heads * headDim) throw shapeError('attention', `q has ${q.length} values, expected ${nQ}×${heads}×${headDim}`, { nQ, heads, headDim });
  if (k.length < nKv * kvHeads * headDim || v.length < nKv * kvHeads * headDim) {
    throw shapeError('attention', `k/v have ${k.length}/${v.length} values, expected ${nKv}×${kvHeads}×${headDim}`, { nKv, kvHeads, headDim });
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
}

export function checkAttentionKv(q: Float32Array, kv: KvView, o: KvAttentionOptions): void {
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
}
