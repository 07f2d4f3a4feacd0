import { QvlError } from '../errors.ts';
import type { Backend, PreparedWeight } from '../kernels/backend.ts';
import type { WeightData } from '../kernels/weight.ts';
import { nativeQuantizeQ4, nativeQuantizeQ8, type NativeQuantized } from '../kernels/native/quantize.ts';
import { nonFinite, quantizeQ4, quantizeQ8 } from './convert.ts';
import { refitQ8 } from './quant/q8-refit.ts';

export type QuantMode = 'q8' | 'q4';
/** the token embedding / LM head: kept as the checkpoint stores it ('float'), or quantized */
export type HeadMode = 'float' | QuantMode;

export interface QuantPlanOptions {
  mode: QuantMode;
  /** q4 columns per scale: 32 (default) or 128 */
  groupSize?: number;
  /** q4 without zero points (GGML Q4_0 style); default false = asymmetric, zero points */
  symmetric?: boolean;
  /**
   * the token embedding and LM head (tied or not). Default: 'float' in q8 mode, 'q8' in q4
   * mode. The head is read whole at every decode step (4B model: 0.78 GB in BF16, 0.41 GB at
   * q8, 0.25 GB at q4 g32) and its error reaches every logit: on the demo model's held-out
   * items, a q8 head alone changes more answers than every other q8 matrix together.
   */
  head?: HeadMode;
}

const TEXT_LINEAR = /^model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$/;
const VISION_LINEAR = /^model\.visual\.(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.linear_fc[12])|(merger|deepstack_merger_list\.\d+)\.linear_fc[12])$/;
const EMBED_OR_HEAD = /^(model\.language_model\.embed_tokens|lm_head)$/;

/**
 * Which format each matrix gets (names are the Linear prefixes the model loader passes to
 * `convert`). Like llama.cpp, the token embedding / output head and the vision tower (the
 * "mmproj" that llama.cpp ships at f16 or q8_0 next to a 4-bit text model) keep 8 bits in q4
 * mode: errors there reach every token or every image row, while they are a small share of
 * the bytes. Norms, biases, the patch embedding and the position table stay float.
 *
 * | matrix                                   | q8 | q4 |
 * |------------------------------------------|----|----|
 * | text q/k/v/o, gate/up/down               | q8 | q4 |
 * | vision qkv/proj/fc1/fc2, mergers         | q8 | q8 |
 * | embed_tokens (and the tied head), lm_head| float | q8 |
 *
 * (`head` overrides the last row.) q8 block scales are then refitted by least squares
 * (`refitQ8`), rounded to binary16. q4 groups take the best of three ranges (convert.ts,
 * clippedRange).
 */
export function quantTarget(name: string, mode: QuantMode, head?: HeadMode): QuantMode | undefined {
  if (TEXT_LINEAR.test(name)) return mode;
  if (EMBED_OR_HEAD.test(name)) {
    const h = head ?? (mode === 'q8' ? 'float' : 'q8');
    return h === 'float' ? undefined : h;
  }
  if (VISION_LINEAR.test(name)) return 'q8';
  return undefined;
}

/** Quantizes one float matrix as the plan says (returns `w` itself when the plan keeps it). */
export function quantizeForPlan(w: WeightData, name: string, opts: QuantPlanOptions): WeightData {
  const target = quantTarget(name, opts.mode, opts.head);
  // Already quantized in the checkpoint (FP8, AWQ, …): re-quantizing would only add error.
  if (!target || (w.format !== 'f32' && w.format !== 'bf16' && w.format !== 'f16')) return w;
  try {
    const q4 = { groupSize: opts.groupSize, symmetric: opts.symmetric };
    // The addon's quantizers give the same bytes and the same error, several times faster (a
    // 4B load: ~13 s against ~110 s before q4's range search, which made the TypeScript q4 3.5×
    // slower: a 2560 × 2560 matrix 48 → 170 ms); the TypeScript runs where they do not apply
    // (no addon).
    // q8 blocks get binary16 scales, which the kernels stream in 2 bytes: 4.87 → 4.64 GB a token
    // at 4B in q8 mode, and the q8 head of q4 mode 0.44 → 0.41 GB
    const half = true;
    const native = target === 'q8' ? nativeQuantizeQ8(w, { refit: true, half }) : nativeQuantizeQ4(w, q4);
    if (native) return unwrap<WeightData>(native);
    return target === 'q8' ? refitQ8(quantizeQ8(w), w, half) : quantizeQ4(w, q4);
  } catch (e) {
    if (e instanceof QvlError) throw new QvlError(e.code, `${name}: ${e.message}`, { ...e.detail, module: name });
    throw e;
  }
}

function unwrap<W>(r: NativeQuantized<W>): W {
  if ('nonFinite' in r) throw nonFinite(r.nonFinite.row, r.nonFinite.col, r.nonFinite.value);
  return r.weight;
}

/**
 * The loader's hook for re-encoding a matrix after reading it: `convert` itself, and optionally
 * `prepare`, which does the conversion and the backend's `prepare` in one step where it can
 * (undefined: convert, then prepare).
 */
export type WeightConvert = ((w: WeightData, name: string) => WeightData) & {
  prepare?: (backend: Backend, w: WeightData, name: string) => PreparedWeight | undefined;
};

/**
 * `backend.prepare(quantizeForPlan(w, name, opts))` in one step where the plan makes `w` q4 and
 * the backend quantizes straight into its own layout (Backend.prepareQ4: the same bytes, no
 * row-major copy to allocate, fill and repack); undefined otherwise.
 */
export function prepareForPlan(backend: Backend, w: WeightData, name: string, opts: QuantPlanOptions): PreparedWeight | undefined {
  if (!backend.prepareQ4 || quantTarget(name, opts.mode, opts.head) !== 'q4') return undefined;
  if (w.format !== 'f32' && w.format !== 'bf16' && w.format !== 'f16') return undefined;
  try {
    const r = backend.prepareQ4(w, { groupSize: opts.groupSize ?? 32, symmetric: opts.symmetric ?? false });
    return r && unwrap(r);
  } catch (e) {
    if (e instanceof QvlError) throw new QvlError(e.code, `${name}: ${e.message}`, { ...e.detail, module: name });
    throw e;
  }
}

/** The `convert` hook for `Qwen3VL.fromPretrained(dir, { convert })` / `loadModelWeights`. */
export function makeQuantConvert(opts: QuantPlanOptions): WeightConvert {
  checkQuantOptions(opts);
  return Object.assign((w: WeightData, name: string) => quantizeForPlan(w, name, opts), {
    prepare: (backend: Backend, w: WeightData, name: string) => prepareForPlan(backend, w, name, opts),
  });
}

export function checkQuantOptions(opts: QuantPlanOptions): void {
  if (opts.mode !== 'q8' && opts.mode !== 'q4') {
    throw new QvlError('OPTION_INVALID', `quant must be "q8" or "q4", got ${JSON.stringify(opts.mode)}`, { quant: opts.mode });
  }
  if (opts.head !== undefined && opts.head !== 'float' && opts.head !== 'q8' && opts.head !== 'q4') {
    throw new QvlError('OPTION_INVALID', `head quant must be "float", "q8" or "q4", got ${JSON.stringify(opts.head)}`, { head: opts.head });
  }
  if (opts.groupSize !== undefined && opts.groupSize !== 32 && opts.groupSize !== 128) {
    throw new QvlError('OPTION_INVALID', `q4 group size must be 32 or 128, got ${opts.groupSize}`, { groupSize: opts.groupSize });
  }
}

/**
 * The load-time `convert` for `Qwen3VL.fromPretrained`: the quantization plan for `quant`, or
 * the caller's own `convert`; asking for both is refused (which would run first is not obvious).
 */
export function loadTimeConvert(quant: QuantMode | undefined, convert: WeightConvert | undefined): WeightConvert | undefined {
  if (quant === undefined) return convert;
  if (convert) throw new QvlError('OPTION_INVALID', 'give either quant or convert, not both', { quant });
  return makeQuantConvert({ mode: quant });
}
