"""Reference inverse frequencies and attention factors for qvl's text RoPE (default and YaRN),
computed by transformers' own rope initialisation for Qwen3-VL text configs.
Writes test/fixtures/rope/rope_reference.json."""
import json, sys
import torch
from transformers import Qwen3VLTextConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

cases = [
    {"name": "4b_default", "head_dim": 128, "max_position_embeddings": 262144,
     "rope_parameters": {"rope_type": "default", "rope_theta": 5000000, "mrope_section": [24, 20, 20], "mrope_interleaved": True}},
    {"name": "4b_yarn3_1m", "head_dim": 128, "max_position_embeddings": 1000000,
     "rope_parameters": {"rope_type": "yarn", "rope_theta": 5000000, "factor": 3.0, "original_max_position_embeddings": 262144,
                         "mrope_section": [24, 20, 20], "mrope_interleaved": True}},
    {"name": "tiny_yarn2", "head_dim": 16, "max_position_embeddings": 8192,
     "rope_parameters": {"rope_type": "yarn", "rope_theta": 5000000, "factor": 2.0, "original_max_position_embeddings": 4096,
                         "mrope_section": [4, 2, 2], "mrope_interleaved": True}},
    {"name": "yarn_no_factor_ratio", "head_dim": 64, "max_position_embeddings": 65536,
     "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000, "factor": 4.0, "original_max_position_embeddings": 16384,
                         "beta_fast": 16, "beta_slow": 2, "mrope_section": [12, 10, 10], "mrope_interleaved": True}},
]
out = []
for c in cases:
    cfg = Qwen3VLTextConfig(hidden_size=c["head_dim"] * 4, num_attention_heads=4, num_key_value_heads=2, head_dim=c["head_dim"],
                            max_position_embeddings=c["max_position_embeddings"], rope_parameters=c["rope_parameters"])
    inv, att = ROPE_INIT_FUNCTIONS[c["rope_parameters"]["rope_type"]](cfg, "cpu") if c["rope_parameters"]["rope_type"] != "default" \
        else (1.0 / (c["rope_parameters"]["rope_theta"] ** (torch.arange(0, c["head_dim"], 2, dtype=torch.int64).float() / c["head_dim"])), 1.0)
    out.append({"name": c["name"], "text_config": {"head_dim": c["head_dim"], "max_position_embeddings": c["max_position_embeddings"],
                "rope_parameters": c["rope_parameters"]}, "inv_freq": [float(x) for x in inv.tolist()], "attention_factor": float(att)})
json.dump({"transformers": __import__("transformers").__version__, "cases": out}, open(sys.argv[1], "w"), indent=1)
