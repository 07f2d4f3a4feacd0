"""The bundled example picture (models/demo/example.png) and HF's answers to the questions about it.

Usage (from the repository root, after training):
  /work/venv/bin/python tools/train-demo/make_example.py
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_io  # noqa: E402
import tasks  # noqa: E402
from make_heldout import hf_answer, load_hf_model  # noqa: E402

QUESTIONS = [tasks.QUESTIONS["colour"], tasks.QUESTIONS["shape"], tasks.grounding_question("red", "circle")]


def draw_example() -> Image.Image:
    """A red circle on a light grey background, off-centre, in a non-square picture."""
    img = Image.new("RGB", (240, 180), (226, 226, 220))
    ImageDraw.Draw(img).ellipse([122, 48, 201, 127], fill=tasks.COLOURS["red"])
    return img


def main() -> None:
    torch.set_num_threads(2)
    out = hf_io.REPO / "models" / "demo" / "example.png"
    draw_example().save(out, optimize=True)
    image = Image.open(out).convert("RGB")
    with tempfile.TemporaryDirectory() as tmp:
        model = load_hf_model(hf_io.REPO / "models" / "demo", Path(tmp))
        processor = hf_io.load_processor(Path(tmp))
        for q in QUESTIONS:
            sample = {"task": "", "images": [image], "video": None, "question": q, "answer": None, "boxes": None}
            r = hf_answer(model, processor, sample)
            print(f"{q!r} -> {r['hf_answer']!r} (smallest top-2 margin {min(r['hf_top2_margin']):.3f})")
    # The expected box of the circle on the 0-1000 scale, for comparison with the grounding answer.
    print("expected bbox_2d:", [round(122 / 240 * 1000), round(48 / 180 * 1000), round(202 / 240 * 1000), round(128 / 180 * 1000)])


if __name__ == "__main__":
    main()
