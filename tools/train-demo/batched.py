"""Training speed on a GPU: HF's Qwen3-VL with its per-picture and per-sample loops taken out.

With 100+ pictures a batch, three parts of HF's forward issue small operations picture by picture
(and wait for the device between them): the vision attention (one attention call per picture), the
vision tower's position tables (built per picture from grid_thw), and the text model's MRoPE index
(per sample, with .tolist()). Here the first runs as one padded, masked attention over all pictures,
and the other two are computed on the CPU in the batch-making process and handed to HF's forward as
the precomputed inputs it accepts; the tower's outputs reach HF's forward whole (`forward`). The
arithmetic is HF's; `check_equivalence` compares the outputs with the untouched model. Written
against transformers 5.18 (the names of the precomputed inputs).
"""
from __future__ import annotations

import functools
import types

import torch
import torch.nn.functional as F


def vision_inputs(vision_config, grid_thw: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """HF's own vision position tables for a batch, computed on the CPU (prefix "image_" or "video_")."""
    from transformers import vision_utils as vu

    side = int(vision_config.num_position_embeddings ** 0.5)
    merge = vision_config.spatial_merge_size
    # Qwen3VLVisionModel's own settings (fixed in its __init__, not in the config).
    idx, w = vu.get_vision_interpolation_indices_and_weights(grid_thw, num_grid_per_side=side, mode="bilinear",
                                                             align_corners=True, spatial_merge_size=merge)
    cu = vu.get_vision_cu_seqlens(grid_thw)
    return {
        f"{prefix}interp_indices": idx,
        f"{prefix}interp_weights": w,
        f"{prefix}position_ids": vu.get_vision_position_ids(grid_thw, merge),
        f"{prefix}cu_seqlens": cu,
    }


def rope_positions(config, batch: dict) -> torch.Tensor:
    """The text model's MRoPE position ids (3, batch, length), by HF's get_rope_index, on the CPU."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    holder = types.SimpleNamespace(config=config)
    holder.get_vision_position_ids = functools.partial(Qwen3VLModel.get_vision_position_ids, holder)
    pos, _ = Qwen3VLModel.get_rope_index(
        holder, batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"],
        image_grid_thw=batch.get("image_grid_thw"), video_grid_thw=batch.get("video_grid_thw"),
        attention_mask=batch["attention_mask"])
    return pos


def precompute(config, batch: dict) -> dict:
    """Adds the CPU-side tables to an encoded batch (called where batches are made)."""
    out = dict(batch)
    out["position_ids"] = rope_positions(config, batch)
    for kind in ("image", "video"):
        grid = batch.get(f"{kind}_grid_thw")
        if grid is not None:
            out.update(vision_inputs(config.vision_config, grid, f"{kind}_"))
    return out


class _Segments:
    """Where each picture (attention segment) of the packed vision sequence sits in a padded layout."""

    def __init__(self, cu_seqlens: torch.Tensor):
        cu = cu_seqlens.cpu().long()
        lengths = cu[1:] - cu[:-1]
        n, longest = len(lengths), int(lengths.max())
        slot = torch.arange(longest).unsqueeze(0)
        self.valid = slot < lengths.unsqueeze(1)  # (segments, longest)
        total = int(cu[-1])
        # Padded slot -> packed row; padding points at an extra zero row appended after the packed rows.
        self.gather = torch.where(self.valid, cu[:-1].unsqueeze(1) + slot, torch.full_like(slot, total))
        self.shape = (n, longest)
        self.key = cu_seqlens

    def to(self, device):
        self.gather = self.gather.to(device, non_blocking=True)
        self.valid = self.valid.to(device, non_blocking=True)
        self.flat_valid = self.valid.reshape(-1)
        return self


def use_padded_vision_attention(visual) -> None:
    """Replace the per-picture attention loop of every vision block by one masked attention over a
    padded batch of pictures (same result: padded keys get zero weight)."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    cache: dict[str, _Segments] = {}

    def segments(cu_seqlens: torch.Tensor) -> _Segments:
        seg = cache.get("s")
        if seg is None or seg.key is not cu_seqlens:
            seg = _Segments(cu_seqlens).to(cu_seqlens.device)
            cache["s"] = seg
        return seg

    for blk in visual.blocks:
        attn = blk.attn

        def forward(hidden_states, cu_seqlens, position_embeddings=None, max_seqlen=None, attn=attn, **kwargs):
            n = hidden_states.shape[0]
            q, k, v = attn.qkv(hidden_states).reshape(n, 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
            cos, sin = position_embeddings
            q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
            seg = segments(cu_seqlens)
            b, length = seg.shape

            def padded(x):  # (n, heads, hd) -> (b, heads, length, hd)
                x = torch.cat([x, x.new_zeros(1, *x.shape[1:])])
                return x[seg.gather].transpose(1, 2)

            out = F.scaled_dot_product_attention(padded(q), padded(k), padded(v),
                                                 attn_mask=seg.valid[:, None, None, :], scale=attn.scaling)
            out = out.transpose(1, 2).reshape(b * length, -1)[seg.flat_valid]
            return attn.proj(out)

        attn.forward = forward


def forward(model, inputs: dict) -> torch.Tensor:
    """The model's final hidden states (batch, length, hidden) for `precompute`d inputs.

    The vision tower runs here, once per kind, and its outputs go to HF's forward whole
    (`mm_encoder_outputs`), where HF's own call would split them picture by picture and join them
    again (four splits of 100+ pieces a step, forward and backward)."""
    inputs = dict(inputs)
    encoded = {}
    for kind, pixels_key in (("image", "pixel_values"), ("video", "pixel_values_videos")):
        pixels = inputs.pop(pixels_key, None)
        tables = {k.removeprefix(f"{kind}_"): inputs.pop(k) for k in list(inputs)
                  if k.startswith(f"{kind}_") and k != f"{kind}_grid_thw"}
        if pixels is None:
            continue
        out = model.model.visual(pixels.type(model.model.visual.dtype), grid_thw=inputs[f"{kind}_grid_thw"], **tables)
        out.pooler_output = (out.pooler_output,)
        out.deepstack_features = [(f,) for f in out.deepstack_features]
        encoded[kind] = out
    return model.model(**inputs, mm_encoder_outputs=encoded, use_cache=False).last_hidden_state


def check_equivalence(model, batch: dict, atol: float = 1e-4) -> float:
    """Largest difference between the fast forward (`batch` from `precompute`) and HF's own on the same
    inputs; raises if it exceeds atol. Call on a model whose attention is not yet replaced."""
    import copy

    ref = copy.deepcopy(model)
    fast = model
    use_padded_vision_attention(fast.model.visual)
    names = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "pixel_values_videos",
             "video_grid_thw", "mm_token_type_ids")
    plain = {k: batch[k] for k in names if k in batch}
    with torch.no_grad():
        a = ref.model(**plain, use_cache=False).last_hidden_state
        b = forward(fast, forward_inputs(batch))
    diff = float((a - b).abs().max())
    if not diff <= atol:
        raise AssertionError(f"fast forward differs from HF's by {diff:g} (> {atol:g})")
    return diff


def forward_inputs(batch: dict) -> dict:
    """The keys of a precomputed batch that the model's forward takes."""
    skip = {"labels", "aux_labels", "dense", "texts"}
    return {k: v for k, v in batch.items() if k not in skip}
