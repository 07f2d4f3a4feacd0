"""config.json for a fixture spec, in either spelling HF loads:

- "4.57": the layout of the released Qwen/Qwen3-VL-*-Instruct config.json (transformers 4.57):
  text_config.rope_scaling (+ rope_theta beside it), vision_config.model_type "qwen3_vl".
- "5.x": what transformers 5.x save_pretrained writes: text_config.rope_parameters holding
  rope_theta, vision_config.model_type "qwen3_vl_vision" with rope_parameters {10000, axial}.
"""

IMAGE_TOKEN_ID = 151655
VIDEO_TOKEN_ID = 151656
VISION_START_TOKEN_ID = 151652
VISION_END_TOKEN_ID = 151653
VOCAB_SIZE = 151936


def _text_rope(rope: dict) -> dict:
    out = {"mrope_interleaved": True, "mrope_section": list(rope["mrope_section"]), "rope_type": "default"}
    if "yarn" in rope:
        out["rope_type"] = "yarn"
        out["factor"] = float(rope["yarn"]["factor"])
        out["original_max_position_embeddings"] = int(rope["yarn"]["original_max_position_embeddings"])
    return out


def build_config(spec: dict, layout: str) -> dict:
    if layout not in ("4.57", "5.x"):
        raise ValueError(f"layout must be '4.57' or '5.x', got {layout!r}")
    t, v = spec["text"], spec["vision"]
    tie = bool(t["tie_word_embeddings"])
    rope = _text_rope(t["rope"])
    text = {
        "attention_bias": bool(t.get("attention_bias", False)),
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "dtype": "bfloat16",
        "eos_token_id": 151645,
        "head_dim": t["head_dim"],
        "hidden_act": "silu",
        "hidden_size": t["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": t["intermediate_size"],
        "max_position_embeddings": t.get("max_position_embeddings", 262144),
        "model_type": "qwen3_vl_text",
        "num_attention_heads": t["num_attention_heads"],
        "num_hidden_layers": t["num_hidden_layers"],
        "num_key_value_heads": t["num_key_value_heads"],
        "rms_norm_eps": 1e-06,
    }
    if layout == "4.57":
        text["rope_scaling"] = rope
        text["rope_theta"] = t["rope"]["theta"]
    else:
        text["pad_token_id"] = None
        text["rope_parameters"] = {**rope, "rope_theta": t["rope"]["theta"]}
    text.update({"tie_word_embeddings": tie, "use_cache": True, "vocab_size": VOCAB_SIZE})

    vision = {
        "deepstack_visual_indexes": list(v["deepstack_visual_indexes"]),
        "depth": v["depth"],
        "hidden_act": v.get("hidden_act", "gelu_pytorch_tanh"),
        "hidden_size": v["hidden_size"],
        "in_channels": 3,
        "initializer_range": 0.02,
        "intermediate_size": v["intermediate_size"],
        "model_type": "qwen3_vl" if layout == "4.57" else "qwen3_vl_vision",
        "num_heads": v["num_heads"],
        "num_position_embeddings": v["num_position_embeddings"],
        "out_hidden_size": t["hidden_size"],
        "patch_size": 16,
    }
    if layout == "5.x":
        vision["rope_parameters"] = {"rope_theta": 10000.0, "rope_type": "axial"}
    vision.update({"spatial_merge_size": 2, "temporal_patch_size": 2})

    cfg = {"architectures": ["Qwen3VLForConditionalGeneration"]}
    if layout == "5.x":
        cfg["dtype"] = "bfloat16"
    cfg.update({
        "image_token_id": IMAGE_TOKEN_ID,
        "model_type": "qwen3_vl",
        "text_config": text,
        "tie_word_embeddings": tie,
        "transformers_version": "4.57.0.dev0" if layout == "4.57" else "5.18.0",
        "video_token_id": VIDEO_TOKEN_ID,
        "vision_config": vision,
        "vision_end_token_id": VISION_END_TOKEN_ID,
        "vision_start_token_id": VISION_START_TOKEN_ID,
    })
    return cfg


def describe_model(spec: dict) -> list[str]:
    """README lines for the model sizes."""
    t, v = spec["text"], spec["vision"]
    r = t["rope"]
    rope = f"rope_theta {r['theta']}, mrope_section {r['mrope_section']} (interleaved)"
    if "yarn" in r:
        y = r["yarn"]
        rope += f", YaRN factor {y['factor']} over original_max_position_embeddings {y['original_max_position_embeddings']}"
    gqa = t["num_attention_heads"] // t["num_key_value_heads"]
    side = int(round(v["num_position_embeddings"] ** 0.5))
    return [
        f"- text: vocab {VOCAB_SIZE}, hidden {t['hidden_size']}, intermediate {t['intermediate_size']}, layers {t['num_hidden_layers']}, "
        f"heads {t['num_attention_heads']} / kv heads {t['num_key_value_heads']} (GQA {gqa}), head_dim {t['head_dim']}, "
        f"max_position_embeddings {t.get('max_position_embeddings', 262144)}, {rope}, "
        f"tie_word_embeddings {str(bool(t['tie_word_embeddings'])).lower()}"
        + (", attention_bias true" if t.get("attention_bias") else ""),
        f"- vision: depth {v['depth']}, hidden {v['hidden_size']}, intermediate {v['intermediate_size']}, heads {v['num_heads']} "
        f"(head dim {v['hidden_size'] // v['num_heads']}), patch 16, temporal_patch 2, spatial_merge 2, out_hidden {t['hidden_size']}, "
        f"num_position_embeddings {v['num_position_embeddings']} ({side}x{side} learned grid), "
        f"deepstack_visual_indexes {v['deepstack_visual_indexes']}, act {v.get('hidden_act', 'gelu_pytorch_tanh')}",
    ]
