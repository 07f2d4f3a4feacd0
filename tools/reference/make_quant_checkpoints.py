"""Quantized checkpoints of the tiny Qwen3-VL (test/fixtures/tiny) in every published layout qvl
reads, plus reference values, for test/quant-*.test.ts.

Writes test/fixtures/quant/<format>/ with
  config.json           the tiny config plus the format's quantization_config
  model.safetensors     only the quantized Linears' tensors (the tests take every other tensor
                        from test/fixtures/tiny/model.safetensors, as a checkpoint that left
                        those modules unquantized would hold them)
  reference.safetensors F32 `<module>.weight`: the dequantized weight each format defines
and, for the formats run through the whole model, hf_case_b.safetensors: transformers' own
Qwen3-VL forward on case_b with the text Linears replaced by those dequantized weights.
qvl's own q8/q4 quantizers have their reference in make_rtn_reference.py.

Every packer is written from the format definitions (docs/quantization.md, the spec's section 6):
AutoAWQ GEMM, GPTQ v1/v2 (act-order), compressed-tensors pack-quantized and float-quantized,
fine-grained FP8. The FP8 packer and dequantizer are cross-checked against transformers' own
(`integrations.finegrained_fp8.Fp8Quantize / Fp8Dequantize`). compressed-tensors, AutoAWQ and
GPTQModel are not installable here, so the other layouts were checked by reading their sources.

usage: /work/venv/bin/python tools/reference/make_quant_checkpoints.py
"""
import copy
import json
import os
import sys
import types

import numpy as np
import torch
from safetensors.numpy import load_file as np_load, save_file as np_save
from safetensors.torch import load_file as torch_load, save_file as torch_save

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TINY = os.path.join(ROOT, 'test', 'fixtures', 'tiny')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'quant')
RNG = np.random.default_rng(20240611)

WEIGHTS = {k: v.float().numpy() for k, v in torch_load(os.path.join(TINY, 'model.safetensors')).items()}
TINY_CONFIG = json.load(open(os.path.join(TINY, 'config.json')))
N_LAYERS = TINY_CONFIG['text_config']['num_hidden_layers']
TEXT_LINEARS = [f'model.language_model.layers.{j}.{m}' for j in range(N_LAYERS)
                for m in ('self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
                          'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj')]


# ---------------------------------------------------------------- bit packing helpers

def pack_rows_seq(u):
    """[R, C] nibbles (0..15) -> int32 [R, ceil(C/8)], column c at bits 4*(c%8) of word c//8."""
    r, c = u.shape
    w = (c + 7) // 8
    p = np.zeros((r, w * 8), dtype=np.uint64)
    p[:, :c] = u
    p = p.reshape(r, w, 8)
    words = np.zeros((r, w), dtype=np.uint64)
    for k in range(8):
        words |= p[:, :, k] << np.uint64(4 * k)
    return words.astype(np.uint32).view(np.int32)


def pack_rows_awq(u):
    """[R, C] nibbles -> int32 [R, C/8]; nibble k of word j holds column 8j + [0,2,4,6,1,3,5,7][k]."""
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    r, c = u.shape
    assert c % 8 == 0
    g = u.reshape(r, c // 8, 8).astype(np.uint64)
    words = np.zeros((r, c // 8), dtype=np.uint64)
    for k in range(8):
        words |= g[:, :, order[k]] << np.uint64(4 * k)
    return words.astype(np.uint32).view(np.int32)


def f16(x):
    return np.asarray(x, dtype=np.float16)


def bf16_round(x):
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)


def deq(q, z, s):
    """(q - z) * s, evaluated in float64 and rounded once to float32 (as qvl's reference does)."""
    return ((q.astype(np.float64) - z.astype(np.float64)) * s.astype(np.float64)).astype(np.float32)


# ---------------------------------------------------------------- group statistics over [out, in]

def groups_of(cols, g, g_idx=None):
    gi = np.arange(cols) // g if g_idx is None else g_idx
    return gi, int(gi.max()) + 1


def minmax_asym(w, gi, n_groups, levels=15):
    """Per (row, group): scale = (max - min)/levels over the range widened to include 0,
    zero = round(-min/scale). Returns float64 scale and int zero, [rows, groups]."""
    rows = w.shape[0]
    mn = np.zeros((rows, n_groups))
    mx = np.zeros((rows, n_groups))
    for g in range(n_groups):
        cols = w[:, gi == g]
        mn[:, g] = np.minimum(cols.min(1), 0)
        mx[:, g] = np.maximum(cols.max(1), 0)
    return mn, mx


# ---------------------------------------------------------------- formats

def fp8_block(w, br, bc):
    """Fine-grained FP8: scale_inv = amax/448 per block (F32), q = e4m3(w / scale_inv)."""
    rows, cols = w.shape
    nr, nc = -(-rows // br), -(-cols // bc)
    s = np.zeros((nr, nc), dtype=np.float32)
    for i in range(nr):
        for j in range(nc):
            a = np.abs(w[i * br:(i + 1) * br, j * bc:(j + 1) * bc]).max()
            s[i, j] = np.float32(a / 448.0) if a > 0 else np.float32(1.0)
    full = np.repeat(np.repeat(s, br, 0), bc, 1)[:rows, :cols]
    q = torch.from_numpy((w / full).astype(np.float32)).clamp(-448, 448).to(torch.float8_e4m3fn)
    return q, s, fp8_dequant(q, s, br, bc)


def fp8_dequant(q, s, br, bc):
    rows, cols = q.shape
    full = np.repeat(np.repeat(s, br, 0), bc, 1)[:rows, :cols]
    return (q.float().numpy().astype(np.float64) * full.astype(np.float64)).astype(np.float32)


def check_fp8_against_transformers(w):
    """transformers' own FP8 quantizer/dequantizer (divisible 32x32 blocks) against ours: each
    side's dequantization of the other's bytes is bit-identical; the bytes themselves may differ
    where transformers' scale (1 / (448 / amax)) and ours (amax / 448) round differently."""
    from transformers import FineGrainedFP8Config
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize, Fp8Quantize
    hq = types.SimpleNamespace(quantization_config=FineGrainedFP8Config(weight_block_size=[32, 32]))
    out = Fp8Quantize(hq)._quantize_one('m.weight', torch.from_numpy(w))
    hf_q, hf_s = out['m.weight'], out['m.weight_scale_inv']
    q, s, ref = fp8_block(w, 32, 32)
    hf_deq = lambda q_, s_: Fp8Dequantize(hq)._dequantize_one(q_, torch.from_numpy(np.asarray(s_)), output_dtype=torch.float32).numpy()
    assert np.array_equal(fp8_dequant(hf_q, hf_s.numpy(), 32, 32), hf_deq(hf_q, hf_s.numpy())), 'FP8 dequantization differs from transformers'
    assert np.array_equal(hf_deq(q, s), ref), 'transformers dequantizes our FP8 bytes differently'
    same = (hf_q.view(torch.uint8) == q.view(torch.uint8)).float().mean().item()
    print(f'fp8 cross-check with transformers {__import__("transformers").__version__}: dequantization identical, '
          f'{100 * same:.2f}% of bytes identical, scales max rel diff {np.abs(hf_s.numpy() / s - 1).max():.1e}')


def fp8_channel(w):
    """compressed-tensors float-quantized, channel strategy: BF16 scale [out, 1] = amax/448."""
    s = bf16_round(np.abs(w).max(1, keepdims=True) / 448.0)
    sf = s.float().numpy()
    q = torch.from_numpy((w / sf).astype(np.float32)).clamp(-448, 448).to(torch.float8_e4m3fn)
    ref = (q.float().numpy().astype(np.float64) * sf.astype(np.float64)).astype(np.float32)
    return q, s, ref


def awq_gemm(w, g):
    """AutoAWQ GEMM: min/max zero-point quantization per (out, group of g inputs), F16 scales."""
    rows, cols = w.shape
    gi, ng = groups_of(cols, g)
    mn, mx = minmax_asym(w, gi, ng)
    s = f16(np.maximum((mx - mn) / 15, 1e-5))
    sf = s.astype(np.float64)
    z = np.clip(np.round(-mn / sf), 0, 15).astype(np.int64)
    q = np.clip(np.round(w / sf[:, gi]) + z[:, gi], 0, 15).astype(np.int64)
    ref = deq(q, z[:, gi], sf[:, gi])
    tensors = {
        'qweight': pack_rows_awq(q.T),          # [in, out/8]
        'qzeros': pack_rows_awq(z.T),           # [in/g, out/8]
        'scales': s.T.copy(),                   # [in/g, out] F16
    }
    return tensors, ref


def gptq(w, g, sym, act_order, v2):
    """GPTQ round-to-nearest packing (the layout is what matters here, not the Hessian update):
    qweight [in/8, out] sequential, qzeros [groups, out/8] (v1 stores zero - 1), F16 scales, g_idx."""
    rows, cols = w.shape
    if act_order:
        perm = RNG.permutation(cols)           # stands in for GPTQ's descending-Hessian order
        g_idx = np.empty(cols, dtype=np.int64)
        g_idx[perm] = np.arange(cols) // g
    else:
        g_idx = np.arange(cols) // g
    gi, ng = groups_of(cols, g, g_idx)
    mn, mx = minmax_asym(w, gi, ng)
    if sym:
        amax = np.maximum(-mn, mx)
        s = f16(np.maximum(2 * amax / 15, 1e-5))
        z = np.full((rows, ng), 8, dtype=np.int64)
    else:
        s = f16(np.maximum((mx - mn) / 15, 1e-5))
        z = np.clip(np.round(-mn / s.astype(np.float64)), 0, 15).astype(np.int64)
    sf = s.astype(np.float64)
    q = np.clip(np.round(w / sf[:, gi]) + z[:, gi], 0, 15).astype(np.int64)
    ref = deq(q, z[:, gi], sf[:, gi])
    stored_z = z if v2 else z - 1
    assert stored_z.min() >= 0, 'GPTQ v1 cannot store a zero point of 0'
    tensors = {
        'qweight': pack_rows_seq(q).T.copy(),    # pack along in: [out, in/8] -> [in/8, out]
        'qzeros': pack_rows_seq(stored_z.T),     # [groups, out/8]
        'scales': s.T.copy(),                    # [groups, out] F16
        'g_idx': g_idx.astype(np.int32),
    }
    return tensors, ref


def pack_quantized(w, g, sym, act_order):
    """compressed-tensors pack-quantized W4A16: q in [-8, 7] stored +8, BF16 scales [out, groups],
    asymmetric zero points packed along the output axis, weight_g_idx for activation order."""
    rows, cols = w.shape
    if act_order:
        perm = RNG.permutation(cols)
        g_idx = np.empty(cols, dtype=np.int64)
        g_idx[perm] = np.arange(cols) // g
    else:
        g_idx = None
    gi, ng = groups_of(cols, g, g_idx)
    mn, mx = minmax_asym(w, gi, ng)
    if sym:
        s = bf16_round(np.maximum(np.maximum(-mn, mx) / 7.5, 1e-5))
        sf = s.float().numpy().astype(np.float64)
        zp = np.zeros((rows, ng), dtype=np.int64)
    else:
        s = bf16_round(np.maximum((mx - mn) / 15, 1e-5))
        sf = s.float().numpy().astype(np.float64)
        zp = np.clip(np.round(-8 - mn / sf), -8, 7).astype(np.int64)
    q = np.clip(np.round(w / sf[:, gi]) + zp[:, gi], -8, 7).astype(np.int64)
    ref = deq(q, zp[:, gi], sf[:, gi])
    tensors = {
        'weight_packed': pack_rows_seq(q + 8),                    # [out, ceil(in/8)]
        'weight_scale': s,                                        # [out, groups] BF16
        'weight_shape': np.array([rows, cols], dtype=np.int64),
    }
    if not sym:
        tensors['weight_zero_point'] = pack_rows_seq((zp + 8).T).T.copy()  # [ceil(out/8), groups]
    if act_order:
        tensors['weight_g_idx'] = g_idx.astype(np.int32)
    return tensors, ref


# ---------------------------------------------------------------- writing

FORMATS = {
    'fp8-block128': dict(
        qc={'quant_method': 'fp8', 'fmt': 'e4m3', 'activation_scheme': 'dynamic', 'weight_block_size': [128, 128],
            'modules_to_not_convert': ['lm_head', 'model.visual']},
        pack=lambda w: (lambda q, s, r: ({'weight': q, 'weight_scale_inv': torch.from_numpy(s)}, r))(*fp8_block(w, 128, 128)),
        model_run=True),
    'fp8-channel-ct': dict(
        qc={'quant_method': 'compressed-tensors', 'format': 'float-quantized', 'quantization_status': 'compressed',
            'config_groups': {'group_0': {'targets': ['Linear'], 'weights': {
                'num_bits': 8, 'type': 'float', 'symmetric': True, 'strategy': 'channel', 'dynamic': False, 'observer': 'minmax'},
                'input_activations': {'num_bits': 8, 'type': 'float', 'symmetric': True, 'strategy': 'token', 'dynamic': True}}},
            'ignore': ['lm_head', 're:model.visual.*']},
        pack=lambda w: (lambda q, s, r: ({'weight': q, 'weight_scale': s}, r))(*fp8_channel(w))),
    'awq-gemm-g32': dict(
        qc={'quant_method': 'awq', 'bits': 4, 'group_size': 32, 'version': 'gemm', 'zero_point': True,
            'modules_to_not_convert': ['visual']},
        pack=lambda w: awq_gemm(w, 32), model_run=True),
    'gptq-v1-g32': dict(
        qc={'quant_method': 'gptq', 'bits': 4, 'group_size': 32, 'desc_act': False, 'sym': False,
            'checkpoint_format': 'gptq', 'damp_percent': 0.01, 'true_sequential': True},
        pack=lambda w: gptq(w, 32, sym=False, act_order=False, v2=False)),
    'gptq-v1-actorder-sym-g32': dict(
        qc={'quant_method': 'gptq', 'bits': 4, 'group_size': 32, 'desc_act': True, 'sym': True,
            'checkpoint_format': 'gptq', 'damp_percent': 0.01, 'true_sequential': True},
        pack=lambda w: gptq(w, 32, sym=True, act_order=True, v2=False)),
    'gptq-v2-actorder-g32': dict(
        qc={'quant_method': 'gptq', 'bits': 4, 'group_size': 32, 'desc_act': True, 'sym': False,
            'checkpoint_format': 'gptq_v2', 'damp_percent': 0.01, 'true_sequential': True},
        pack=lambda w: gptq(w, 32, sym=False, act_order=True, v2=True)),
    'ct-w4a16-sym-g128': dict(
        qc=None, ct=dict(sym=True, g=128, actorder=None),
        pack=lambda w: pack_quantized(w, 128, sym=True, act_order=False)),
    'ct-w4a16-asym-g32': dict(
        qc=None, ct=dict(sym=False, g=32, actorder=None),
        pack=lambda w: pack_quantized(w, 32, sym=False, act_order=False), model_run=True),
    'ct-w4a16-actorder-g32': dict(
        qc=None, ct=dict(sym=True, g=32, actorder='group'),
        pack=lambda w: pack_quantized(w, 32, sym=True, act_order=True)),
}


def ct_config(sym, g, actorder):
    return {'quant_method': 'compressed-tensors', 'format': 'pack-quantized', 'quantization_status': 'compressed',
            'config_groups': {'group_0': {'targets': ['Linear'], 'weights': {
                'num_bits': 4, 'type': 'int', 'symmetric': sym, 'strategy': 'group', 'group_size': g,
                'actorder': actorder, 'dynamic': False, 'observer': 'minmax'},
                'input_activations': None, 'output_activations': None}},
            'ignore': ['lm_head', 're:model.visual.*']}


def to_torch(v):
    if isinstance(v, torch.Tensor):
        return v.contiguous()
    return torch.from_numpy(np.ascontiguousarray(v))


def hf_case_b(refs, dst):
    """transformers' Qwen3-VL on case_b with the text Linears set to the dequantized weights."""
    from transformers import Qwen3VLForConditionalGeneration
    model = Qwen3VLForConditionalGeneration.from_pretrained(TINY, dtype=torch.float32, attn_implementation='eager').eval()
    sd = model.state_dict()
    with torch.no_grad():
        for name, w in refs.items():
            sd[name].copy_(torch.from_numpy(w))
    case = torch_load(os.path.join(TINY, 'case_b_image.safetensors'))
    inputs = {k: case[k][None] for k in ('input_ids', 'attention_mask', 'mm_token_type_ids')}
    inputs['pixel_values'] = case['pixel_values']
    inputs['image_grid_thw'] = case['image_grid_thw']
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    sel = case['logits_sel_ids']
    torch_save({'logits_sel_ids': sel, 'logits_sel': logits[:, sel].contiguous(),
                'argmax': logits.argmax(-1).contiguous()}, dst,
               metadata={'transformers': __import__('transformers').__version__})


def main():
    check_fp8_against_transformers(WEIGHTS['model.language_model.layers.0.mlp.down_proj.weight'])
    for name, spec in FORMATS.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        qc = spec['qc'] if spec['qc'] is not None else ct_config(**spec['ct'])
        cfg = copy.deepcopy(TINY_CONFIG)
        cfg['quantization_config'] = qc
        json.dump(cfg, open(os.path.join(d, 'config.json'), 'w'), indent=2)
        tensors, refs = {}, {}
        for prefix in TEXT_LINEARS:
            t, ref = spec['pack'](WEIGHTS[prefix + '.weight'])
            for k, v in t.items():
                tensors[f'{prefix}.{k}'] = to_torch(v)
            refs[prefix + '.weight'] = ref
        torch_save(tensors, os.path.join(d, 'model.safetensors'), metadata={'format': 'pt'})
        np_save(refs, os.path.join(d, 'reference.safetensors'))
        if spec.get('model_run'):
            hf_case_b(refs, os.path.join(d, 'hf_case_b.safetensors'))
        for f in os.listdir(d):
            os.chmod(os.path.join(d, f), 0o644)
        print(name, len(tensors), 'tensors')


if __name__ == '__main__':
    sys.exit(main())
