/**
 * A random-weight Qwen3-VL checkpoint at a real model's shape, written once into a cache folder
 * (config.json + BF16 safetensors shards, like a downloaded model) so that the model benchmark
 * loads it exactly as a user's model is loaded: memory-mapped, converted at load when asked.
 */
import fs from 'node:fs';
import path from 'node:path';
import { writeSafetensorsShards, type TensorToWrite } from '../src/weights/safetensors-writer.ts';

export type ModelSize = '2B' | '4B' | '8B';

interface Shape {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  inter: number;
  tie: boolean;
  vDepth: number;
  vHidden: number;
  vInter: number;
  taps: number[];
}

/** The released sizes (docs: qwen3vl-spec.md §1.1). */
const SHAPES: Record<ModelSize, Shape> = {
  '2B': { hidden: 2048, layers: 28, heads: 16, kvHeads: 8, inter: 6144, tie: true, vDepth: 24, vHidden: 1024, vInter: 4096, taps: [5, 11, 17] },
  '4B': { hidden: 2560, layers: 36, heads: 32, kvHeads: 8, inter: 9728, tie: true, vDepth: 24, vHidden: 1024, vInter: 4096, taps: [5, 11, 17] },
  '8B': { hidden: 4096, layers: 36, heads: 32, kvHeads: 8, inter: 12288, tie: false, vDepth: 27, vHidden: 1152, vInter: 4304, taps: [8, 16, 24] },
};

export const VOCAB = 151936;
const HEAD_DIM = 128;

export function configJson(size: ModelSize): Record<string, unknown> {
  const s = SHAPES[size];
  return {
    architectures: ['Qwen3VLForConditionalGeneration'],
    model_type: 'qwen3_vl',
    image_token_id: 151655,
    video_token_id: 151656,
    vision_start_token_id: 151652,
    vision_end_token_id: 151653,
    tie_word_embeddings: s.tie,
    text_config: {
      model_type: 'qwen3_vl_text',
      attention_bias: false,
      head_dim: HEAD_DIM,
      hidden_act: 'silu',
      hidden_size: s.hidden,
      intermediate_size: s.inter,
      max_position_embeddings: 262144,
      num_attention_heads: s.heads,
      num_hidden_layers: s.layers,
      num_key_value_heads: s.kvHeads,
      rms_norm_eps: 1e-6,
      rope_scaling: { mrope_interleaved: true, mrope_section: [24, 20, 20], rope_type: 'default' },
      rope_theta: 5000000,
      tie_word_embeddings: s.tie,
      vocab_size: VOCAB,
      dtype: 'bfloat16',
    },
    vision_config: {
      model_type: 'qwen3_vl',
      deepstack_visual_indexes: s.taps,
      depth: s.vDepth,
      hidden_act: 'gelu_pytorch_tanh',
      hidden_size: s.vHidden,
      in_channels: 3,
      intermediate_size: s.vInter,
      num_heads: 16,
      num_position_embeddings: 2304,
      out_hidden_size: s.hidden,
      patch_size: 16,
      spatial_merge_size: 2,
      temporal_patch_size: 2,
    },
  };
}

/** Every tensor of the checkpoint: name, shape, and how it is filled. */
function tensorList(size: ModelSize): Array<{ name: string; shape: number[]; fill: 'weight' | 'ones' | 'bias' }> {
  const s = SHAPES[size];
  const out: Array<{ name: string; shape: number[]; fill: 'weight' | 'ones' | 'bias' }> = [];
  const lin = (p: string, rows: number, cols: number, bias: boolean) => {
    out.push({ name: `${p}.weight`, shape: [rows, cols], fill: 'weight' });
    if (bias) out.push({ name: `${p}.bias`, shape: [rows], fill: 'bias' });
  };
  const ln = (p: string, n: number) => {
    out.push({ name: `${p}.weight`, shape: [n], fill: 'ones' });
    out.push({ name: `${p}.bias`, shape: [n], fill: 'bias' });
  };
  const v = 'model.visual';
  const D = s.vHidden;
  out.push({ name: `${v}.patch_embed.proj.weight`, shape: [D, 3, 2, 16, 16], fill: 'weight' });
  out.push({ name: `${v}.patch_embed.proj.bias`, shape: [D], fill: 'bias' });
  out.push({ name: `${v}.pos_embed.weight`, shape: [2304, D], fill: 'weight' });
  for (let i = 0; i < s.vDepth; i++) {
    const p = `${v}.blocks.${i}`;
    ln(`${p}.norm1`, D);
    ln(`${p}.norm2`, D);
    lin(`${p}.attn.qkv`, 3 * D, D, true);
    lin(`${p}.attn.proj`, D, D, true);
    lin(`${p}.mlp.linear_fc1`, s.vInter, D, true);
    lin(`${p}.mlp.linear_fc2`, D, s.vInter, true);
  }
  const M = 4 * D;
  const merger = (p: string, normWidth: number) => {
    ln(`${p}.norm`, normWidth);
    lin(`${p}.linear_fc1`, M, M, true);
    lin(`${p}.linear_fc2`, s.hidden, M, true);
  };
  merger(`${v}.merger`, D);
  s.taps.forEach((_, k) => merger(`${v}.deepstack_merger_list.${k}`, M));
  const t = 'model.language_model';
  out.push({ name: `${t}.embed_tokens.weight`, shape: [VOCAB, s.hidden], fill: 'weight' });
  for (let j = 0; j < s.layers; j++) {
    const p = `${t}.layers.${j}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [s.hidden], fill: 'ones' });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [s.hidden], fill: 'ones' });
    lin(`${p}.self_attn.q_proj`, s.heads * HEAD_DIM, s.hidden, false);
    lin(`${p}.self_attn.k_proj`, s.kvHeads * HEAD_DIM, s.hidden, false);
    lin(`${p}.self_attn.v_proj`, s.kvHeads * HEAD_DIM, s.hidden, false);
    lin(`${p}.self_attn.o_proj`, s.hidden, s.heads * HEAD_DIM, false);
    out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [HEAD_DIM], fill: 'ones' });
    out.push({ name: `${p}.self_attn.k_norm.weight`, shape: [HEAD_DIM], fill: 'ones' });
    lin(`${p}.mlp.gate_proj`, s.inter, s.hidden, false);
    lin(`${p}.mlp.up_proj`, s.inter, s.hidden, false);
    lin(`${p}.mlp.down_proj`, s.hidden, s.inter, false);
  }
  out.push({ name: `${t}.norm.weight`, shape: [s.hidden], fill: 'ones' });
  if (!s.tie) out.push({ name: 'lm_head.weight', shape: [VOCAB, s.hidden], fill: 'weight' });
  return out;
}

/** Parameter count of the checkpoint (tied head counted once). */
export function parameterCount(size: ModelSize): number {
  return tensorList(size).reduce((a, t) => a + t.shape.reduce((x, d) => x * d, 1), 0);
}

/**
 * A pool of BF16 values ~ N(0, σ) (sum of four uniforms), from which tensors take slices at
 * pseudo-random offsets: random enough for timing (nothing is compressed or shared), and fast.
 */
function makePool(n: number, sigma: number, seed: number): Uint16Array {
  const pool = new Uint16Array(n);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let s = seed >>> 0;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  const k = sigma * Math.sqrt(3); // var of (sum of 4 U(-1,1))/2 is 1/3
  for (let i = 0; i < n; i++) {
    f[0] = ((next() + next() + next() + next() - 2) / 2) * 2 * k;
    pool[i] = u[0] >>> 16;
  }
  return pool;
}

const POOL_SIZE = 1 << 24;

/** Writes the checkpoint into `dir` unless a complete one is already there; returns `dir`. */
export function ensureCheckpoint(dir: string, size: ModelSize, log: (s: string) => void): string {
  const stamp = path.join(dir, 'bench-complete.json');
  if (fs.existsSync(stamp)) return dir;
  fs.mkdirSync(dir, { recursive: true });
  const weights = makePool(POOL_SIZE, 0.02, 1234);
  const biases = makePool(POOL_SIZE, 0.01, 99);
  let seed = 7;
  const offset = () => ((seed = (seed * 1103515245 + 12345) >>> 0) % (POOL_SIZE >> 1));
  const tensors: TensorToWrite[] = tensorList(size).map((t) => ({
    name: t.name,
    dtype: 'BF16',
    shape: t.shape,
    data: () => {
      const n = t.shape.reduce((a, d) => a * d, 1);
      const out = new Uint16Array(n);
      if (t.fill === 'ones') out.fill(0x3f80);
      else {
        const src = t.fill === 'weight' ? weights : biases;
        for (let o = 0; o < n; ) {
          const start = offset();
          const len = Math.min(n - o, POOL_SIZE - start);
          out.set(src.subarray(start, start + len), o);
          o += len;
        }
      }
      return new Uint8Array(out.buffer);
    },
  }));
  const t0 = Date.now();
  log(`writing a random ${size} checkpoint into ${dir} (once) …`);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configJson(size), null, 2) + '\n');
  writeSafetensorsShards(dir, tensors, { maxShardBytes: 2 * 1024 ** 3 });
  fs.writeFileSync(stamp, JSON.stringify({ size, parameters: parameterCount(size) }) + '\n');
  log(`  written in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return dir;
}
