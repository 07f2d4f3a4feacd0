import { QvlError } from '../errors.ts';
import type { Backend, PreparedWeight } from '../kernels/backend.ts';
import type { WeightData } from '../kernels/weight.ts';
import { readBias, readLinear } from '../weights/linear.ts';
import type { WeightConvert } from '../weights/quant-plan.ts';
import { hasLinearWeight } from '../weights/quant/index.ts';
import { readF32, readMatrix, type TensorSource } from '../weights/tensor-reader.ts';
import type { Qwen3VLConfig } from './config.ts';

export interface Linear {
  w: PreparedWeight;
  b?: Float32Array;
}

export interface Norm {
  w: Float32Array;
  b?: Float32Array;
}

export interface VisionBlockWeights {
  norm1: Norm;
  norm2: Norm;
  qkv: Linear;
  proj: Linear;
  fc1: Linear;
  fc2: Linear;
}

export interface MergerWeights {
  norm: Norm;
  fc1: Linear;
  fc2: Linear;
}

export interface VisionWeights {
  patchEmbed: Linear;
  /** [numPositionEmbeddings, hidden] */
  posEmbed: Float32Array;
  blocks: VisionBlockWeights[];
  merger: MergerWeights;
  deepstack: MergerWeights[];
}

export interface TextLayerWeights {
  inputNorm: Float32Array;
  postNorm: Float32Array;
  q: PreparedWeight;
  k: PreparedWeight;
  v: PreparedWeight;
  o: PreparedWeight;
  qNorm: Float32Array;
  kNorm: Float32Array;
  /** projection biases, only when the config asks for them (attention_bias) */
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  oBias?: Float32Array;
  gate: PreparedWeight;
  up: PreparedWeight;
  down: PreparedWeight;
}

export interface TextWeights {
  embed: PreparedWeight;
  layers: TextLayerWeights[];
  norm: Float32Array;
  /** the tied embedding when the config ties them */
  lmHead: PreparedWeight;
}

export interface ModelWeights {
  vision: VisionWeights;
  text: TextWeights;
}

export interface LoadWeightsOptions {
  /** re-encode the big matrices after reading (e.g. `--quant q8`); its `prepare`, where it has one, first */
  convert?: WeightConvert;
  /** called with each source matrix that `convert` replaced (releases mapped pages: BackendChoice.release) */
  release?: (w: WeightData) => void;
  /** called after each tensor group, for progress reporting */
  onProgress?: (done: number, total: number) => void;
}

/** Walks the checkpoint by the released tensor names and prepares every weight for `backend`. */
export function loadModelWeights(
  src: TensorSource & { names(): string[] },
  cfg: Qwen3VLConfig,
  backend: Backend,
  opts: LoadWeightsOptions = {},
): ModelWeights {
  const q = cfg.quantization;
  const vec = (name: string, len: number) => readF32(src, name, [len]);
  const convert = opts.convert ?? ((w: WeightData) => w);
  const total = cfg.vision.depth + cfg.vision.deepstackVisualIndexes.length + cfg.text.numLayers + 4;
  let done = 0;
  const step = () => opts.onProgress?.(++done, total);
  // a matrix that convert replaced (quantized at load) is ours alone: prepare may take its arrays
  const prepareConverted = (source: WeightData, name: string, fineActivations = false): PreparedWeight => {
    const direct = opts.convert?.prepare?.(backend, source, name);
    if (direct) {
      opts.release?.(source);
      return direct;
    }
    const w = convert(source, name);
    if (w !== source) opts.release?.(source);
    return backend.prepare(w, { consume: w !== source, fineActivations });
  };
  const linear = (prefix: string, rows: number, cols: number, bias: boolean, fineActivations = false): Linear => {
    const w = prepareConverted(readLinear(src, prefix, rows, cols, q), prefix, fineActivations);
    if (!bias) return { w };
    const b = readBias(src, prefix, rows);
    if (!b) throw new QvlError('TENSOR_MISSING', `tensor ${prefix}.bias is missing from the checkpoint`, { tensor: `${prefix}.bias` });
    return { w, b };
  };
  const mat = (prefix: string, rows: number, cols: number) => linear(prefix, rows, cols, false).w;
  // The text decoder's q8 matrices decode with fine activations (PrepareOptions): with int8
  // ones they moved more of the demo model's held-out answers than q8 weights did. The head
  // keeps int8 activations (q4 mode's q8 head is there for bytes and speed).
  const textMat = (prefix: string, rows: number, cols: number) => linear(prefix, rows, cols, false, true).w;
  const layerNorm = (prefix: string, len: number): Norm => ({ w: vec(`${prefix}.weight`, len), b: vec(`${prefix}.bias`, len) });

  // Vision tower
  const v = cfg.vision;
  const D = v.hiddenSize;
  const vp = 'model.visual';
  const patchCols = v.inChannels * v.temporalPatchSize * v.patchSize * v.patchSize;
  const pe = readMatrix(src, `${vp}.patch_embed.proj.weight`, D, patchCols);
  const peInfo = src.info(`${vp}.patch_embed.proj.weight`);
  const expectPe = [D, v.inChannels, v.temporalPatchSize, v.patchSize, v.patchSize];
  if (peInfo.shape.length !== 5 || peInfo.shape.some((d, i) => d !== expectPe[i])) {
    if (!(peInfo.shape.length === 2 && peInfo.shape[1] === patchCols)) {
      throw new QvlError('TENSOR_SHAPE', `tensor ${peInfo.name} has shape [${peInfo.shape.join(', ')}], expected [${expectPe.join(', ')}]`, {
        tensor: peInfo.name,
      });
    }
  }
  const patchBias = readBias(src, `${vp}.patch_embed.proj`, D);
  if (!patchBias) throw new QvlError('TENSOR_MISSING', `tensor ${vp}.patch_embed.proj.bias is missing (Qwen3-VL's patch embedding has a bias)`, {});
  const vision: VisionWeights = {
    patchEmbed: { w: backend.prepare(pe), b: patchBias },
    posEmbed: readF32(src, `${vp}.pos_embed.weight`, [v.numPositionEmbeddings, D]),
    blocks: [],
    merger: undefined as unknown as MergerWeights,
    deepstack: [],
  };
  step();
  for (let i = 0; i < v.depth; i++) {
    const p = `${vp}.blocks.${i}`;
    vision.blocks.push({
      norm1: layerNorm(`${p}.norm1`, D),
      norm2: layerNorm(`${p}.norm2`, D),
      qkv: linear(`${p}.attn.qkv`, 3 * D, D, true),
      proj: linear(`${p}.attn.proj`, D, D, true),
      fc1: linear(`${p}.mlp.linear_fc1`, v.intermediateSize, D, true),
      fc2: linear(`${p}.mlp.linear_fc2`, D, v.intermediateSize, true),
    });
    step();
  }
  const M = D * v.spatialMergeSize ** 2;
  const merger = (p: string, normWidth: number): MergerWeights => ({
    norm: layerNorm(`${p}.norm`, normWidth),
    fc1: linear(`${p}.linear_fc1`, M, M, true),
    fc2: linear(`${p}.linear_fc2`, v.outHiddenSize, M, true),
  });
  vision.merger = merger(`${vp}.merger`, D);
  step();
  for (let k = 0; k < v.deepstackVisualIndexes.length; k++) {
    vision.deepstack.push(merger(`${vp}.deepstack_merger_list.${k}`, M));
    step();
  }

  // Text model
  const t = cfg.text;
  const H = t.hiddenSize;
  const tp = 'model.language_model';
  const embed = prepareConverted(readLinear(src, `${tp}.embed_tokens`, t.vocabSize, H, q), `${tp}.embed_tokens`);
  step();
  const layers: TextLayerWeights[] = [];
  const qDim = t.numHeads * t.headDim;
  const kvDim = t.numKvHeads * t.headDim;
  for (let j = 0; j < t.numLayers; j++) {
    const p = `${tp}.layers.${j}`;
    const bias = (name: string, len: number) => (t.attentionBias ? vec(`${p}.self_attn.${name}.bias`, len) : undefined);
    layers.push({
      qBias: bias('q_proj', qDim),
      kBias: bias('k_proj', kvDim),
      vBias: bias('v_proj', kvDim),
      oBias: bias('o_proj', H),
      inputNorm: vec(`${p}.input_layernorm.weight`, H),
      postNorm: vec(`${p}.post_attention_layernorm.weight`, H),
      q: textMat(`${p}.self_attn.q_proj`, qDim, H),
      k: textMat(`${p}.self_attn.k_proj`, kvDim, H),
      v: textMat(`${p}.self_attn.v_proj`, kvDim, H),
      o: textMat(`${p}.self_attn.o_proj`, H, qDim),
      qNorm: vec(`${p}.self_attn.q_norm.weight`, t.headDim),
      kNorm: vec(`${p}.self_attn.k_norm.weight`, t.headDim),
      gate: textMat(`${p}.mlp.gate_proj`, t.intermediateSize, H),
      up: textMat(`${p}.mlp.up_proj`, t.intermediateSize, H),
      down: textMat(`${p}.mlp.down_proj`, H, t.intermediateSize),
    });
    step();
  }
  const norm = vec(`${tp}.norm.weight`, H);
  let lmHead: PreparedWeight;
  if (t.tieWordEmbeddings) {
    // A tied checkpoint may still carry a redundant lm_head.weight; the tie wins, as in HF.
    lmHead = embed;
  } else {
    if (!hasLinearWeight(src, 'lm_head')) {
      throw new QvlError('TENSOR_MISSING', 'config.json says the word embeddings are not tied, but the checkpoint has no lm_head.weight', {
        tensor: 'lm_head.weight',
      });
    }
    lmHead = mat('lm_head', t.vocabSize, H);
  }
  step();
  return { vision, text: { embed, layers, norm, lmHead } };
}
