"""Held-out set for the demo model, and HF transformers' own greedy answers to it.

Usage (from the repository root):
  /work/venv/bin/python tools/train-demo/make_heldout.py                 # generate + answer
  /work/venv/bin/python tools/train-demo/make_heldout.py --answer-only   # keep the pictures, redo the answers

The items come from tasks.py with a seed the training never used. Pictures and video frames are written
as PNG; HF is then run on the decoded PNGs (what anyone reading the files gets), with the model loaded in
float32 with attn_implementation="eager", greedy decoding (do_sample=False) and MAX_NEW_TOKENS.
Each item records HF's answer, its token ids and, per generated token, the raw-logit margin between the
top-1 and top-2 candidates.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_io  # noqa: E402
import tasks  # noqa: E402
from scoring import score_items  # noqa: E402

HELDOUT_SEED = 20240917
PER_TASK = 30
MAX_NEW_TOKENS = 48


def generate(out: Path, seed: int, per_task: int) -> None:
    rng = np.random.default_rng(seed)
    if out.exists():
        for sub in ["img", "vid"]:
            shutil.rmtree(out / sub, ignore_errors=True)
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "vid").mkdir(parents=True, exist_ok=True)
    items = []
    n = 0
    for task in tasks.TASKS:
        for _ in range(per_task):
            n += 1
            item_id = f"{n:04d}"
            s = tasks.make_sample(rng, task)
            media: list = []
            if s["video"] is not None:
                vdir = out / "vid" / item_id
                vdir.mkdir(parents=True)
                paths = []
                for k, frame in enumerate(s["video"]["frames"]):
                    frame.save(vdir / f"f{k}.png", optimize=True)
                    paths.append(f"vid/{item_id}/f{k}.png")
                media.append(paths)
            for k, im in enumerate(s["images"]):
                name = f"img/{item_id}.png" if len(s["images"]) == 1 else f"img/{item_id}_{k + 1}.png"
                im.save(out / name, optimize=True)
                media.append(name)
            item = {
                "id": item_id,
                "task": task,
                "messages": [{"role": "user", "content": hf_io.user_content(s, media)}],
                "expected": s["answer"],
            }
            if s["boxes"] is not None:
                item["expected_boxes"] = s["boxes"]
            items.append(item)
    write_items(out, items)
    print(f"wrote {len(items)} items to {out}")


def write_items(out: Path, items: list[dict]) -> None:
    with open(out / "items.jsonl", "w") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")


def read_items(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines() if line.strip()]


def sample_from_item(item: dict, root: Path) -> dict:
    """Rebuild the task sample (decoded PNG pictures, question) that hf_io encodes."""
    images, video, question = [], None, None
    for part in item["messages"][0]["content"]:
        if part["type"] == "image":
            images.append(Image.open(root / part["image"]).convert("RGB"))
        elif part["type"] == "video":
            video = {"frames": [Image.open(root / p).convert("RGB") for p in part["video"]], "fps": part["fps"]}
        elif part["type"] == "text":
            question = part["text"]
    return {"task": item["task"], "images": images, "video": video, "question": question, "answer": None, "boxes": None}


def load_hf_model(model_dir: Path, work: Path):
    """float32 + eager attention, as the reference fixtures were made; tokenizer.json only in a temp copy."""
    from transformers import Qwen3VLForConditionalGeneration

    for p in model_dir.iterdir():
        if p.is_file():
            shutil.copyfile(p, work / p.name)
    hf_io.write_model_files(work, with_tokenizer=True)
    model = Qwen3VLForConditionalGeneration.from_pretrained(str(work), dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


@torch.no_grad()
def hf_answer(model, processor, sample: dict) -> dict:
    batch = hf_io.encode(processor, [sample], with_answer=False)
    out = model.generate(**batch, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, output_logits=True,
                         return_dict_in_generate=True, temperature=None, top_k=None, top_p=None)
    new = out.sequences[0, batch["input_ids"].shape[1]:].tolist()
    margins = []
    for step_logits in out.logits:
        top = torch.topk(step_logits[0].float(), 2).values
        margins.append(float(top[0] - top[1]))
    eos = {151645, 151643}
    text_ids = [t for t in new if t not in eos]
    return {
        "hf_answer": processor.tokenizer.decode(text_ids, skip_special_tokens=True),
        "hf_token_ids": new,
        "hf_top2_margin": [round(m, 6) for m in margins],
    }


def answer(out: Path, model_dir: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    items = read_items(out)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = load_hf_model(model_dir, work)
        processor = hf_io.load_processor(work)
        for i, item in enumerate(items):
            item.update(hf_answer(model, processor, sample_from_item(item, out)))
            if (i + 1) % 25 == 0:
                print(f"answered {i + 1}/{len(items)}", flush=True)
    write_items(out, items)
    import transformers

    meta = {
        "max_new_tokens": MAX_NEW_TOKENS,
        "seed": HELDOUT_SEED,
        "model": "models/demo",
        "video_prompt_layout": "v4.57",
        "hf": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "dtype": "float32",
            "attn_implementation": "eager",
            "do_sample": False,
        },
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(score_items(items))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=hf_io.REPO / "datasets" / "demo-heldout")
    ap.add_argument("--model", type=Path, default=hf_io.REPO / "models" / "demo")
    ap.add_argument("--seed", type=int, default=HELDOUT_SEED)
    ap.add_argument("--per-task", type=int, default=PER_TASK)
    ap.add_argument("--answer-only", action="store_true")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not args.answer_only:
        generate(args.out, args.seed, args.per_task)
    if not args.generate_only:
        answer(args.out, args.model, args.threads)


if __name__ == "__main__":
    main()
