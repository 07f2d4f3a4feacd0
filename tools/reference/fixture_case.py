"""One reference case: HF's processor and Qwen3VLForConditionalGeneration on one chat prompt,
with the same tensor names and JSON fields as test/fixtures/tiny (see its README.md)."""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fixture_config import VOCAB_SIZE
from fixture_media import read_png

SPECIAL_IDS = list(range(151643, 151669))
N_SELECTED = 512


def _capture_expanded_text(processor):
    """Wraps processor.get_text_with_replacements so the exact text handed to the tokenizer is kept."""
    box = {}
    orig = processor.get_text_with_replacements

    def wrapped(*args, **kwargs):
        out = orig(*args, **kwargs)
        box["text"] = out[0]
        return out

    processor.get_text_with_replacements = wrapped
    return box, lambda: delattr(processor, "get_text_with_replacements")


def _unpatchify_first_frame(rows: torch.Tensor, grid_hw: tuple[int, int], exact: bool, merge: int = 2, patch: int = 16) -> np.ndarray:
    """Merge-block-ordered patch rows of one still image back to its [H, W, RGB] uint8 pixels
    (exact: the rows must be float32 (u8 - 127.5) / 127.5 bit for bit, as the torchvision path gives)."""
    gh, gw = grid_hw
    # rows: (bh, bw, mh, mw) x (c, t, y, x); keep t = 0, then lay out as (bh, mh, y) x (bw, mw, x) x c
    x = rows.reshape(gh // merge, gw // merge, merge, merge, 3, 2, patch, patch)[:, :, :, :, :, 0]
    x = x.permute(0, 2, 5, 1, 3, 6, 4).reshape(gh * patch, gw * patch, 3)
    u8 = torch.round(x * 127.5 + 127.5)
    if exact and not torch.equal((u8 - 127.5) / 127.5, x):
        raise AssertionError("pixel_values are not (u8 - 127.5) / 127.5 of a uint8 image")
    return u8.to(torch.uint8).numpy()


class Hooks:
    """Forward hooks on the vision tower and the decoder, reset per call."""

    def __init__(self, model):
        self.store: dict[str, torch.Tensor] = {}
        m = model.model
        self.handles = [
            m.visual.patch_embed.register_forward_hook(lambda mod, a, out: self._put("patch_embed", out)),
            m.visual.blocks[0].register_forward_pre_hook(self._block0_input, with_kwargs=True),
            m.language_model.norm.register_forward_hook(lambda mod, a, out: self._put("final_hidden", out)),
        ]
        for i, layer in enumerate(m.language_model.layers):
            self.handles.append(layer.register_forward_pre_hook(self._layer_input(i), with_kwargs=True))

    def _put(self, key, t):
        self.store[key] = t.detach().clone()

    def _block0_input(self, mod, args, kwargs):
        self._put("block0_input", args[0] if args else kwargs["hidden_states"])

    def _layer_input(self, i):
        def hook(mod, args, kwargs):
            self._put(f"text_layer_input_{i}", args[0] if args else kwargs["hidden_states"])
        return hook

    def clear(self):
        self.store = {}

    def remove(self):
        for h in self.handles:
            h.remove()


def _vision_stages(model, hooks: Hooks, kind: str, pixels: torch.Tensor, grid: torch.Tensor, out: OrderedDict) -> None:
    hooks.clear()
    with torch.no_grad():
        feats = model.model.get_image_features(pixels, grid, return_dict=True)
    out[f"{kind}_vision_last_hidden"] = feats.last_hidden_state
    out[f"{kind}_embeds"] = torch.cat(list(feats.pooler_output), 0)
    for k, f in enumerate(feats.deepstack_features):
        out[f"{kind}_deepstack_{k}"] = torch.cat(list(f), 0)
    out[f"{kind}_patch_embed"] = hooks.store["patch_embed"]
    # block-0 input minus the patch embedding = the interpolated learned position embedding
    out[f"{kind}_pos_embed_interp"] = hooks.store["block0_input"] - hooks.store["patch_embed"]


def _model_inputs(inputs) -> dict:
    keep = ["input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"]
    return {k: inputs[k] for k in keep if k in inputs}


def _logits(model, mi: dict) -> torch.Tensor:
    model.model.rope_deltas = None  # never reuse positions from a previous call
    with torch.no_grad():
        return model(**mi).logits[0]


def run_case(ctx, case: dict, folder: Path) -> tuple[dict, OrderedDict, dict]:
    """Returns (case JSON, tensors, facts for the README). ctx holds processor, model, pil_processor,
    alt models (sdpa, f64, other config spelling) and the seed."""
    processor, model = ctx.processor, ctx.model
    messages, images, image_files, video = [], [], [], None
    content = []
    for part in case["content"]:
        if "text" in part:
            content.append({"type": "text", "text": part["text"]})
        elif "image" in part:
            content.append({"type": "image"})
            image_files.append(part["image"]["file"])
            images.append(read_png(folder / part["image"]["file"]))
        elif "video" in part:
            if video is not None:
                raise ValueError("one video per case (qvl parity reads a single frame list)")
            content.append({"type": "video"})
            video = part["video"]
    messages.append({"role": "user", "content": content})

    j: dict = {"case": case["name"], "messages": messages}
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    j["prompt_text"] = prompt
    call = {"text": [prompt], "return_tensors": "pt"}
    if images:
        pil_images = [Image.fromarray(a) for a in images]
        call["images"] = pil_images
        if len(images) == 1:
            j["image_file"], j["image_size_wh"] = image_files[0], [images[0].shape[1], images[0].shape[0]]
        else:
            j["image_files"], j["image_sizes_wh"] = image_files, [[a.shape[1], a.shape[0]] for a in images]
    if video is not None:
        files = [f"{video['prefix']}_frame_{k:02d}.png" for k in range(video["frames"])]
        frames = np.stack([read_png(folder / f) for f in files])
        T, H, W, _ = frames.shape
        meta = {"total_num_frames": T, "fps": float(video["fps"]), "duration": T / float(video["fps"]),
                "frames_indices": list(range(T)), "height": H, "width": W}
        call["videos"] = [frames]
        call["video_metadata"] = [dict(meta)]
        vp = processor.video_processor(videos=[frames], video_metadata=[dict(meta)], return_metadata=True, return_tensors="pt")
        sampled = [int(i) for i in vp["video_metadata"][0].frames_indices]
        stamps = processor._calculate_timestamps(list(sampled), meta["fps"], processor.video_processor.temporal_patch_size)
        j.update({"frame_files": files, "frame_size_wh": [W, H], "num_frames": T, "video_fps": meta["fps"],
                  "video_metadata_passed": meta, "sampled_frame_indices": sampled,
                  "timestamps_seconds": [float(s) for s in stamps],
                  "processor_call": "processor(text=[prompt], " + ("images=[...], " if images else "")
                  + "videos=[frames_uint8_THWC], video_metadata=[video_metadata_passed], return_tensors='pt')"})

    box, restore = _capture_expanded_text(processor)
    inputs = processor(**call)
    restore()
    expanded = box["text"][0]
    if images or video is not None:
        j["expanded_prompt_text"] = expanded
    if video is not None and not torch.equal(vp["pixel_values_videos"], inputs["pixel_values_videos"]):
        raise AssertionError("video processor called alone disagrees with the processor")

    t: OrderedDict = OrderedDict()
    ids = inputs["input_ids"]
    L = ids.shape[1]
    if processor.tokenizer(expanded, return_tensors="pt")["input_ids"].tolist() != ids.tolist():
        raise AssertionError("expanded prompt does not tokenize to input_ids")

    facts: dict = {}
    if images:
        grids = inputs["image_grid_thw"]
        offsets = np.cumsum([0] + [int(g.prod()) for g in grids])
        pil_out = ctx.pil_processor(images=[Image.fromarray(a) for a in images], return_tensors="pt")
        comparisons, hw = [], []
        for k, g in enumerate(grids):
            rows = inputs["pixel_values"][offsets[k] : offsets[k + 1]]
            tv = _unpatchify_first_frame(rows, (int(g[1]), int(g[2])), exact=True)
            prow = pil_out["pixel_values"][offsets[k] : offsets[k + 1]]
            pil = _unpatchify_first_frame(prow, (int(g[1]), int(g[2])), exact=False)
            t[f"image{k}_resized_uint8_torchvision"] = torch.from_numpy(tv)
            t[f"image{k}_resized_uint8_pil"] = torch.from_numpy(pil)
            d = np.abs(tv.astype(np.int32) - pil.astype(np.int32))
            comparisons.append({"resized_hw": [tv.shape[0], tv.shape[1]], "max_abs_uint8_diff": int(d.max()),
                                "fraction_of_values_differing": float((d > 0).mean())})
            hw.append([tv.shape[0], tv.shape[1]])
        if not torch.equal(pil_out["image_grid_thw"], grids):
            raise AssertionError("PIL backend chose another grid")
        j["smart_resize_hw"] = hw
        j["pil_backend_comparison"] = comparisons
        j["pil_vs_torchvision_pixel_values_max_abs"] = float((pil_out["pixel_values"] - inputs["pixel_values"]).abs().max())
        facts["smart_resize_hw"] = hw

    t["input_ids"] = ids[0]
    t["attention_mask"] = inputs["attention_mask"][0]
    t["mm_token_type_ids"] = inputs["mm_token_type_ids"][0].to(torch.int64)
    if images:
        t["pixel_values"] = inputs["pixel_values"]
        t["image_grid_thw"] = inputs["image_grid_thw"]
    if video is not None:
        t["pixel_values_videos"] = inputs["pixel_values_videos"]
        t["video_grid_thw"] = inputs["video_grid_thw"]

    mi = _model_inputs(inputs)
    model.model.rope_deltas = None
    with torch.no_grad():
        pos, deltas = model.model.get_rope_index(
            ids, mm_token_type_ids=inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"), attention_mask=inputs["attention_mask"])
    t["position_ids"] = pos[:, 0, :]
    t["rope_deltas"] = deltas.reshape(-1).to(torch.int64)
    j["rope_deltas"] = [int(x) for x in t["rope_deltas"]]

    hooks = ctx.hooks
    if images:
        _vision_stages(model, hooks, "image", inputs["pixel_values"], inputs["image_grid_thw"], t)
    if video is not None:
        _vision_stages(model, hooks, "video", inputs["pixel_values_videos"], inputs["video_grid_thw"], t)

    hooks.clear()
    logits = _logits(model, mi)
    for i in range(len(model.model.language_model.layers)):
        t[f"text_layer_input_{i}"] = hooks.store[f"text_layer_input_{i}"][0]
    t["final_hidden"] = hooks.store["final_hidden"][0]
    top = torch.topk(logits, 16, dim=-1)
    t["logits_top16_ids"] = top.indices
    t["logits_top16_vals"] = top.values

    # Tolerance evidence: rerun, sdpa, float64, the other config spelling
    tol = {"rerun_f32_max_abs": float((_logits(model, mi) - logits).abs().max())}
    tol["eager_vs_sdpa_max_abs"] = float((_logits(ctx.sdpa_model, mi) - logits).abs().max())
    mi64 = {k: (v.double() if v.is_floating_point() else v) for k, v in mi.items()}
    l64 = _logits(ctx.f64_model, mi64)
    d64 = (l64 - logits.double()).abs()
    tol["f32_vs_f64_max_abs"] = float(d64.max())
    tol["f32_vs_f64_max_rel_to_row_absmax"] = float((d64 / l64.abs().amax(-1, keepdim=True)).max())
    # the same weights behind the other config.json spelling (4.57 <-> 5.x), named as in tiny
    tol["released_config_vs_v5_config_max_abs"] = float((_logits(ctx.alt_model, mi) - logits).abs().max())
    tol["logit_std"] = float(logits.std())
    tol["logit_absmax"] = float(logits.abs().max())
    j["tolerances"] = tol

    # Greedy decoding with the KV cache, raw logits per step
    n = case["max_new_tokens"]
    model.model.rope_deltas = None
    with torch.no_grad():
        g = model.generate(**mi, do_sample=False, max_new_tokens=n, output_logits=True, return_dict_in_generate=True,
                           top_k=None, top_p=None, temperature=None)
    gen = g.sequences[0, L:]
    steps = torch.stack([s[0] for s in g.logits])
    j["generated_ids"] = [int(x) for x in gen]
    j["generated_text"] = processor.tokenizer.decode(gen, skip_special_tokens=True)
    j["gen_first_step_matches_forward_last_row_max_abs"] = float((steps[0] - logits[-1]).abs().max())
    full = dict(mi)
    full["input_ids"] = g.sequences
    full["attention_mask"] = torch.ones_like(g.sequences)
    full["mm_token_type_ids"] = torch.cat([mi["mm_token_type_ids"], torch.zeros(1, len(gen), dtype=mi["mm_token_type_ids"].dtype)], 1)
    nocache = _logits(model, full)[L - 1 : L - 1 + len(gen)]
    j["gen_cache_vs_nocache_step_logits_max_abs"] = float((nocache - steps).abs().max())
    j["gen_nocache_argmax_equals_generate"] = bool(torch.equal(nocache.argmax(-1), gen))
    j["seq_len"] = L
    j["vocab_size"] = VOCAB_SIZE

    t["generated_ids"] = gen
    stop = torch.topk(steps, 16, dim=-1)
    t["gen_step_top16_ids"] = stop.indices
    t["gen_step_top16_vals"] = stop.values
    rng = np.random.default_rng(ctx.seed + len(case["name"]) * 7919 + L)
    chosen = set(SPECIAL_IDS) | set(j["generated_ids"]) | set(int(x) for x in top.indices[-1])
    while len(chosen) < N_SELECTED:
        chosen.add(int(rng.integers(0, VOCAB_SIZE)))
    sel = torch.tensor(sorted(chosen), dtype=torch.int64)
    t["logits_sel_ids"] = sel
    t["logits_sel"] = logits[:, sel]
    t["gen_step_logits_sel"] = steps[:, sel]
    t["logits_last1"] = logits[-1:].clone()

    facts.update({"seq_len": L, "rope_deltas": j["rope_deltas"], "generated_ids": j["generated_ids"],
                  "generated_text": j["generated_text"], "tolerances": tol})
    if video is not None:
        facts.update({"sampled_frame_indices": j["sampled_frame_indices"], "timestamps_seconds": j["timestamps_seconds"],
                      "video_grid_thw": [int(x) for x in inputs["video_grid_thw"][0]]})
    if images:
        facts["image_grid_thw"] = [[int(x) for x in g] for g in inputs["image_grid_thw"]]
    # dtypes as in tiny: float32, int64, and uint8 for the resized images
    for k, v in t.items():
        dtype = torch.float32 if v.is_floating_point() else torch.uint8 if v.dtype == torch.uint8 else torch.int64
        t[k] = v.to(dtype).contiguous()
    j["tensors"] = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in t.items()}
    return j, t, facts
