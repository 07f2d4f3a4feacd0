import fs from 'node:fs';
import path from 'node:path';
import { QvlError } from '../errors.ts';

/** Rotary settings of the text model, from either config spelling (4.57 or 5.x). */
export interface TextRope {
  theta: number;
  /** [T, H, W] frequency counts; their sum is headDim / 2 */
  mropeSection: [number, number, number];
  type: 'default' | 'yarn';
  /** YaRN only */
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast: number;
  betaSlow: number;
  /** multiplier on cos and sin (YaRN's attention factor); 1 for default RoPE */
  attentionFactor: number;
  truncate: boolean;
}

export interface TextConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v/o projections carry biases (false in every released Qwen3-VL) */
  attentionBias: boolean;
  rope: TextRope;
}

export interface VisionConfig {
  depth: number;
  hiddenSize: number;
  intermediateSize: number;
  numHeads: number;
  headDim: number;
  inChannels: number;
  patchSize: number;
  temporalPatchSize: number;
  spatialMergeSize: number;
  outHiddenSize: number;
  numPositionEmbeddings: number;
  deepstackVisualIndexes: number[];
  hiddenAct: 'gelu_pytorch_tanh' | 'gelu';
  ropeTheta: number;
  layerNormEps: number;
}

export interface Qwen3VLConfig {
  text: TextConfig;
  vision: VisionConfig;
  imageTokenId: number;
  videoTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
  /** the raw `quantization_config`, if any (read by weights/quant) */
  quantization?: Record<string, unknown>;
  /** the raw JSON as loaded */
  raw: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function fail(msg: string, detail: Json = {}): never {
  throw new QvlError('CONFIG_INVALID', msg, detail);
}

function num(o: Json, key: string, where: string, dflt?: number): number {
  const v = o[key];
  if (v === undefined || v === null) {
    if (dflt !== undefined) return dflt;
    fail(`config.json: ${where}.${key} is missing`, { key: `${where}.${key}` });
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`config.json: ${where}.${key} must be a number, got ${JSON.stringify(v)}`, { key });
  return v;
}

function posInt(o: Json, key: string, where: string, dflt?: number): number {
  const v = num(o, key, where, dflt);
  if (!Number.isInteger(v) || v <= 0) fail(`config.json: ${where}.${key} must be a positive integer, got ${v}`, { key });
  return v;
}

function parseTextRope(t: Json, headDim: number): TextRope {
  // 4.57: text_config.rope_scaling + rope_theta; 5.x: text_config.rope_parameters holding both.
  const rp = (t.rope_parameters ?? t.rope_scaling ?? {}) as Json;
  const theta = num(rp, 'rope_theta', 'text_config.rope_parameters', num(t, 'rope_theta', 'text_config', 10000));
  const sec = (rp.mrope_section ?? [24, 20, 20]) as unknown;
  if (!Array.isArray(sec) || sec.length !== 3 || !sec.every((x) => Number.isInteger(x) && x >= 0)) {
    fail(`config.json: mrope_section must be three non-negative integers, got ${JSON.stringify(sec)}`);
  }
  const [s0, s1, s2] = sec as number[];
  if (s0 + s1 + s2 !== headDim / 2) {
    fail(`config.json: mrope_section ${JSON.stringify(sec)} sums to ${s0 + s1 + s2}, but head_dim/2 is ${headDim / 2}`);
  }
  if (s1 > s0 || s2 > s0) fail(`config.json: interleaved MRoPE needs mrope_section[0] ≥ the other two, got ${JSON.stringify(sec)}`);
  const typeRaw = (rp.rope_type ?? rp.type ?? 'default') as string;
  if (typeRaw !== 'default' && typeRaw !== 'yarn') {
    fail(`config.json: rope_type "${typeRaw}" is not supported (qvl supports "default" and "yarn")`, { rope_type: typeRaw });
  }
  const maxPos = num(t, 'max_position_embeddings', 'text_config', 262144);
  if (typeRaw === 'default') {
    return { theta, mropeSection: [s0, s1, s2], type: 'default', factor: 1, originalMaxPositionEmbeddings: maxPos, betaFast: 32, betaSlow: 1, attentionFactor: 1, truncate: true };
  }
  const orig = num(rp, 'original_max_position_embeddings', 'rope_scaling', maxPos);
  // As transformers 5.x and vLLM: the configured factor; the length ratio only when it is absent.
  const factor = rp.factor === undefined || rp.factor === null ? maxPos / orig : num(rp, 'factor', 'rope_scaling');
  if (!(factor >= 1)) fail(`config.json: YaRN factor must be ≥ 1, got ${factor}`);
  const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  let attentionFactor: number;
  if (rp.attention_factor !== undefined && rp.attention_factor !== null) attentionFactor = num(rp, 'attention_factor', 'rope_scaling');
  else if (rp.mscale !== undefined && rp.mscale_all_dim !== undefined) {
    attentionFactor = mscale(factor, rp.mscale as number) / mscale(factor, rp.mscale_all_dim as number);
  } else attentionFactor = mscale(factor);
  return {
    theta,
    mropeSection: [s0, s1, s2],
    type: 'yarn',
    factor,
    originalMaxPositionEmbeddings: orig,
    betaFast: num(rp, 'beta_fast', 'rope_scaling', 32),
    betaSlow: num(rp, 'beta_slow', 'rope_scaling', 1),
    attentionFactor,
    truncate: rp.truncate === undefined ? true : Boolean(rp.truncate),
  };
}

export function parseConfig(raw: Json): Qwen3VLConfig {
  const mt = raw.model_type;
  if (mt !== undefined && mt !== 'qwen3_vl') {
    fail(`config.json: model_type is "${String(mt)}"; qvl runs dense Qwen3-VL ("qwen3_vl")`, { model_type: mt });
  }
  const t = raw.text_config as Json | undefined;
  const v = raw.vision_config as Json | undefined;
  if (!t || typeof t !== 'object') fail('config.json: text_config is missing');
  if (!v || typeof v !== 'object') fail('config.json: vision_config is missing');
  if (t.model_type !== undefined && t.model_type !== 'qwen3_vl_text') {
    fail(`config.json: text_config.model_type is "${String(t.model_type)}"; expected "qwen3_vl_text" (MoE models are not supported)`);
  }
  if (v.model_type !== undefined && v.model_type !== 'qwen3_vl' && v.model_type !== 'qwen3_vl_vision') {
    fail(`config.json: vision_config.model_type is "${String(v.model_type)}"; expected "qwen3_vl" or "qwen3_vl_vision"`);
  }

  const hiddenSize = posInt(t, 'hidden_size', 'text_config');
  const numHeads = posInt(t, 'num_attention_heads', 'text_config');
  const numKvHeads = posInt(t, 'num_key_value_heads', 'text_config', numHeads);
  // head_dim comes from the config (4B: 128 while hidden/heads = 80).
  const headDim = posInt(t, 'head_dim', 'text_config', hiddenSize / numHeads);
  if (numHeads % numKvHeads !== 0) fail(`config.json: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (headDim % 2 !== 0) fail(`config.json: head_dim ${headDim} must be even`);
  const tieRaw = t.tie_word_embeddings ?? raw.tie_word_embeddings ?? false;
  const text: TextConfig = {
    hiddenSize,
    intermediateSize: posInt(t, 'intermediate_size', 'text_config'),
    numLayers: posInt(t, 'num_hidden_layers', 'text_config'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: posInt(t, 'vocab_size', 'text_config'),
    rmsNormEps: num(t, 'rms_norm_eps', 'text_config', 1e-6),
    maxPositionEmbeddings: posInt(t, 'max_position_embeddings', 'text_config', 262144),
    tieWordEmbeddings: Boolean(tieRaw),
    attentionBias: t.attention_bias === true,
    rope: parseTextRope(t, headDim),
  };
  if (t.hidden_act !== undefined && t.hidden_act !== 'silu') fail(`config.json: text_config.hidden_act "${String(t.hidden_act)}" is not supported (expected "silu")`);

  const vHidden = posInt(v, 'hidden_size', 'vision_config');
  const vHeads = posInt(v, 'num_heads', 'vision_config');
  if (vHidden % vHeads !== 0) fail(`config.json: vision hidden_size ${vHidden} is not a multiple of num_heads ${vHeads}`);
  const act = (v.hidden_act ?? 'gelu_pytorch_tanh') as string;
  if (act !== 'gelu_pytorch_tanh' && act !== 'gelu') fail(`config.json: vision_config.hidden_act "${act}" is not supported`);
  const depth = posInt(v, 'depth', 'vision_config');
  const ds = (v.deepstack_visual_indexes ?? []) as unknown;
  if (!Array.isArray(ds) || !ds.every((i) => Number.isInteger(i) && i >= 0 && i < depth)) {
    fail(`config.json: deepstack_visual_indexes ${JSON.stringify(ds)} must be block indexes below depth ${depth}`);
  }
  const deepstack = ds as number[];
  if (new Set(deepstack).size !== deepstack.length) fail(`config.json: deepstack_visual_indexes ${JSON.stringify(ds)} repeats a block`);
  if (deepstack.length > text.numLayers) {
    fail(`config.json: ${deepstack.length} DeepStack taps but only ${text.numLayers} decoder layers to receive them`);
  }
  const numPos = posInt(v, 'num_position_embeddings', 'vision_config');
  if (!Number.isInteger(Math.sqrt(numPos))) fail(`config.json: num_position_embeddings ${numPos} is not a square`);
  const vRope = (v.rope_parameters ?? {}) as Json;
  const vision: VisionConfig = {
    depth,
    hiddenSize: vHidden,
    intermediateSize: posInt(v, 'intermediate_size', 'vision_config'),
    numHeads: vHeads,
    headDim: vHidden / vHeads,
    inChannels: posInt(v, 'in_channels', 'vision_config', 3),
    patchSize: posInt(v, 'patch_size', 'vision_config', 16),
    temporalPatchSize: posInt(v, 'temporal_patch_size', 'vision_config', 2),
    spatialMergeSize: posInt(v, 'spatial_merge_size', 'vision_config', 2),
    outHiddenSize: posInt(v, 'out_hidden_size', 'vision_config', text.hiddenSize),
    numPositionEmbeddings: numPos,
    deepstackVisualIndexes: deepstack,
    hiddenAct: act,
    ropeTheta: num(vRope, 'rope_theta', 'vision_config.rope_parameters', 10000),
    layerNormEps: 1e-6,
  };
  if (vision.outHiddenSize !== text.hiddenSize) {
    fail(`config.json: vision out_hidden_size ${vision.outHiddenSize} differs from text hidden_size ${text.hiddenSize}`);
  }
  return {
    text,
    vision,
    imageTokenId: posInt(raw, 'image_token_id', 'config', 151655),
    videoTokenId: posInt(raw, 'video_token_id', 'config', 151656),
    visionStartTokenId: posInt(raw, 'vision_start_token_id', 'config', 151652),
    visionEndTokenId: posInt(raw, 'vision_end_token_id', 'config', 151653),
    quantization: raw.quantization_config as Json | undefined,
    raw,
  };
}

/**
 * A context extension chosen at load time, as Qwen documents it for long inputs: YaRN over the
 * trained context (`original`, default the config's max_position_embeddings), stretched by
 * `factor`; the model then accepts factor × original positions.
 */
export interface RopeScalingOverride {
  type: 'yarn';
  factor: number;
  originalMaxPositionEmbeddings?: number;
}

/**
 * The raw config with `rope_scaling` (4.57 spelling) or `rope_parameters` (5.x) replaced by the
 * override, and max_position_embeddings set to what it reaches — what a user editing
 * config.json by hand, as the model card says, would write.
 */
export function applyRopeScaling(raw: Json, o: RopeScalingOverride): Json {
  if (o.type !== 'yarn') fail(`rope scaling "${String(o.type)}" is not supported (only "yarn")`, { type: o.type });
  if (!(Number.isFinite(o.factor) && o.factor > 1)) {
    throw new QvlError('OPTION_INVALID', `the YaRN factor must be a number above 1, got ${o.factor}`, { factor: o.factor });
  }
  const t = { ...((raw.text_config ?? {}) as Json) };
  const key = t.rope_parameters ? 'rope_parameters' : 'rope_scaling';
  const prev = (t[key] ?? {}) as Json;
  const orig = o.originalMaxPositionEmbeddings ?? (prev.rope_type === 'yarn' && typeof prev.original_max_position_embeddings === 'number' ? prev.original_max_position_embeddings : num(t, 'max_position_embeddings', 'text_config', 262144));
  if (!(Number.isInteger(orig) && orig > 0)) {
    throw new QvlError('OPTION_INVALID', `the original context must be a positive integer, got ${orig}`, { originalMaxPositionEmbeddings: orig });
  }
  const { attention_factor: _a, mscale: _m, mscale_all_dim: _d, ...keep } = prev;
  t[key] = { ...keep, rope_type: 'yarn', factor: o.factor, original_max_position_embeddings: orig };
  if (key === 'rope_scaling') delete (t[key] as Json).type;
  t.max_position_embeddings = Math.floor(o.factor * orig);
  return { ...raw, text_config: t };
}

export function loadConfig(dir: string, opts: { ropeScaling?: RopeScalingOverride } = {}): Qwen3VLConfig {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new QvlError('FILE_NOT_FOUND', `no config.json in ${dir}: is this a Qwen3-VL model folder?`, { file });
  }
  let raw: Json;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new QvlError('CONFIG_INVALID', `${file} is not valid JSON (${(e as Error).message})`, { file });
  }
  return parseConfig(opts.ropeScaling ? applyRopeScaling(raw, opts.ropeScaling) : raw);
}
