"""Vision-only experiments: the demo's vision tower (HF's Qwen3VLVisionModel, the demo config) plus a small
head, trained directly on one synthetic property. Minutes per run; used to find a setup in which the
from-scratch tower learns shape, count, position and digits before paying for a full training run.

Usage (from the repository root):
  /work/venv/bin/python tools/train-demo/probe_vision.py --task shape --steps 300 --min-pixels 16384

Pictures go through HF's image processor (the demo's preprocessor_config with --min-pixels as its
shortest_edge), exactly as in training. Accuracy is measured on a fixed set of fresh pictures.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_io  # noqa: E402
import tasks  # noqa: E402
import dense  # noqa: E402


def sample(rng: np.random.Generator, task: str, classes: int):
    """(picture, target): class index (shape, count, digits) or the target's box centre and size (box)."""
    if task == "shape":
        while True:
            s = tasks.make_sample(rng, "shape")
            k = tasks.SHAPES.index(s["labels"][0]["shape"])
            if k < classes:
                return s["images"][0], k, s["labels"][0]
    if task == "count":
        s = tasks.make_sample(rng, "count")
        return s["images"][0], s["labels"][0]["count"] - 1, s["labels"][0]
    if task == "box":
        # One shape (the text side does the selecting in the full model): its box on the 0-1 scale.
        while True:
            w, h = tasks._random_size(rng, 64, 320, max_aspect=2.5)
            item = (tasks.SHAPES[rng.integers(5)], tasks.COLOUR_NAMES[rng.integers(6)])
            out = tasks._scene(rng, w, h, [item], 0.2, 0.45)
            if out:
                x1, y1, x2, y2 = out[1][0]
                return out[0], [x1 / w, y1 / h, x2 / w, y2 / h], tasks._scene_labels([item], out[1], out[2])
    raise ValueError(task)


class BagEmbed(torch.nn.Module):
    """The tower's own patch embedding applied to each of the 4 patches of a window."""

    def __init__(self, proj):
        super().__init__()
        self.w = torch.nn.Parameter(proj.weight.detach().reshape(proj.weight.shape[0], -1).clone())

    def forward(self, x):
        return (x.view(-1, self.w.shape[1]) @ self.w.T).view(x.shape[0], -1)


class Probe(torch.nn.Module):
    def __init__(self, visual, n_out: int, pool: str, bag: bool = False):
        super().__init__()
        self.visual = visual
        self.bag = torch.nn.Sequential(BagEmbed(visual.patch_embed.proj), torch.nn.Linear(4 * 128, 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                                       torch.nn.GELU(), torch.nn.Linear(256, visual.config.out_hidden_size)) if bag else None
        d = visual.config.out_hidden_size
        self.pool = pool
        self.query = torch.nn.Parameter(torch.randn(d) * 0.02)
        self.norm = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, n_out)

    def forward(self, pixels, grid, with_tokens=False):
        if self.bag is not None:
            # Baseline without attention: each 2x2 window of patches on its own through an MLP.
            tok = self.bag(pixels.view(-1, 4 * pixels.shape[1]))
        else:
            tok = self.visual(pixels, grid_thw=grid).pooler_output
        sizes = (grid.prod(-1) // 4).tolist()
        pooled = []
        for t in torch.split(tok, sizes):
            t = self.norm(t)
            if self.pool == "mean":
                pooled.append(t.mean(0))
            else:
                w = torch.softmax(t @ self.query / math.sqrt(t.shape[1]), 0)
                pooled.append((w[:, None] * t).sum(0))
        out = self.head(torch.stack(pooled))
        return (out, tok) if with_tokens else out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="shape", choices=["shape", "count", "box"])
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pe-lr-mult", type=float, default=1.0, help="lr multiplier of the patch embedding")
    ap.add_argument("--min-pixels", type=int, default=65536)
    ap.add_argument("--max-pixels", type=int, default=256 * 32 * 32)
    ap.add_argument("--bag", action="store_true", help="baseline: per-window MLP instead of the vision tower")
    ap.add_argument("--dense", type=float, default=0.0, help="weight of the per-token losses (dense.py)")
    ap.add_argument("--trivial", default="", help="data: bw (white shape on black), square (128x128 pictures)")
    ap.add_argument("--flat-bg", action="store_true", help="data: flat backgrounds only")
    ap.add_argument("--pool", default="mean", choices=["mean", "attn"])
    ap.add_argument("--init", type=float, default=0.02, help="vision initializer_range")
    ap.add_argument("--pos-init", type=float, default=None, help="std of the position table (default: --init)")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-n", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers making batches")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop (after an evaluation) once this much time passed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if "bw" in args.trivial:
        def trivial(rng, w, h):
            return tasks.Image.new("RGB", (w, h), (0, 0, 0))
        tasks._background = trivial
        tasks._shape_colour = lambda rng, name: (255, 255, 255)
    if "blackbg" in args.trivial:
        tasks._background = lambda rng, w, h: tasks.Image.new("RGB", (w, h), (0, 0, 0))
    if "square" in args.trivial:
        tasks._random_size = lambda rng, lo, hi, max_aspect=3.0: (128, 128)
    if args.flat_bg:
        orig_bg = tasks._background

        def flat(rng, w, h):
            g = rng.uniform(0, 255)
            return tasks.Image.new("RGB", (w, h), (int(g),) * 3)
        tasks._background = flat
    torch.manual_seed(args.seed)

    from transformers import Qwen3VLVisionModel
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLVisionConfig
    from transformers import AutoImageProcessor
    import json
    import tempfile

    vcfg = dict(hf_io.DEMO_CONFIG["vision_config"])
    vcfg["initializer_range"] = args.init
    cfg = Qwen3VLVisionConfig(**vcfg)
    visual = Qwen3VLVisionModel._from_config(cfg).float()
    if args.pos_init is not None:
        with torch.no_grad():
            visual.pos_embed.weight.normal_(0, args.pos_init)
    from train import use_linear_patch_embed

    use_linear_patch_embed(visual.patch_embed)

    with tempfile.TemporaryDirectory() as tmp:
        pc = json.loads((hf_io.FIXTURE_DIR / "preprocessor_config.json").read_text())
        pc["size"] = {"shortest_edge": args.min_pixels, "longest_edge": args.max_pixels}
        Path(tmp, "preprocessor_config.json").write_text(json.dumps(pc))
        improc = AutoImageProcessor.from_pretrained(tmp)

    n_out = {"shape": args.classes, "count": 5, "box": 4}[args.task]
    model = Probe(visual, n_out, args.pool, args.bag)
    heads = dense.DenseHeads(cfg.out_hidden_size)
    model.dense = heads
    pe = [p for n, p in model.named_parameters() if n.startswith("visual.patch_embed")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("visual.patch_embed")]
    opt = torch.optim.AdamW([{"params": rest, "mult": 1.0}, {"params": pe, "mult": args.pe_lr_mult}],
                            lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)

    def encode(imgs):
        b = improc(images=imgs, return_tensors="pt")
        return b["pixel_values"], b["image_grid_thw"]

    def loss_fn(out, tgt):
        if args.task == "box":
            return F.smooth_l1_loss(torch.sigmoid(out), tgt, beta=0.05)
        return F.cross_entropy(out, tgt)

    def targets(ts):
        return torch.tensor(ts, dtype=torch.float32 if args.task == "box" else torch.long)

    erng = np.random.default_rng(10_000 + args.seed)
    ev = [sample(erng, args.task, args.classes) for _ in range(args.eval_n)]
    ev_batches = [(encode([e[0] for e in ev[i:i + 64]]), targets([e[1] for e in ev[i:i + 64]])) for i in range(0, len(ev), 64)]

    def evaluate() -> str:
        model.eval()
        with torch.no_grad():
            outs = [(model(px.to(args.device), g.to(args.device)).cpu(), t) for (px, g), t in ev_batches]
        model.train()
        if args.task == "box":
            p = torch.sigmoid(torch.cat([o for o, _ in outs]))
            t = torch.cat([t for _, t in outs])
            ix = (torch.minimum(p[:, 2], t[:, 2]) - torch.maximum(p[:, 0], t[:, 0])).clamp(min=0)
            iy = (torch.minimum(p[:, 3], t[:, 3]) - torch.maximum(p[:, 1], t[:, 1])).clamp(min=0)
            inter = ix * iy
            area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
            iou = inter / (area(p) + area(t) - inter + 1e-9)
            return f"mIoU={iou.mean():.3f} iou>=.5={(iou >= 0.5).float().mean():.3f}"
        acc = np.mean([(o.argmax(1) == t).float().mean().item() for o, t in outs])
        return f"acc={acc:.3f}"

    model.to(args.device)

    def make_batch(rng):
        ss = [sample(rng, args.task, args.classes) for _ in range(args.batch)]
        (px, grid), tgt = encode([s[0] for s in ss]), targets([s[1] for s in ss])
        dt = dense.batch_targets([s[2] for s in ss], grid) if args.dense else None
        return px, grid, tgt, dt

    class Batches(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            w, n = (info.id, info.num_workers) if info else (0, 1)
            torch.set_num_threads(1)
            r = np.random.default_rng([args.seed, w])
            for _ in range(w, args.steps, n):
                yield make_batch(r)

    if args.workers:
        batch_iter = iter(torch.utils.data.DataLoader(Batches(), batch_size=None, num_workers=args.workers, prefetch_factor=4))
    else:
        rng = np.random.default_rng(args.seed)
        batch_iter = (make_batch(rng) for _ in range(args.steps))
    t0 = time.time()
    t_data = 0.0
    hist = []
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr * g["mult"]
        td = time.time()
        px, grid, tgt, dt = next(batch_iter)
        px, grid, tgt = px.to(args.device), grid.to(args.device), tgt.to(args.device)
        if dt is not None:
            dt = {k: v.to(args.device) for k, v in dt.items()}
        t_data += time.time() - td
        out, tok = model(px, grid, with_tokens=True)
        loss = loss_fn(out, tgt)
        if dt is not None:
            dl = model.dense.losses(tok, dt)
            loss = loss + args.dense * sum(dl.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        hist.append(loss.item())
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            el = time.time() - t0
            print(f"step {step + 1} imgs {(step + 1) * args.batch} t={el:.0f}s ({(step + 1) * args.batch / el:.1f} img/s, "
                  f"data {t_data / el:.0%}) loss={np.mean(hist):.3f} {evaluate()} patches/img={px.shape[0] / args.batch:.0f}",
                  flush=True)
            hist.clear()
            if args.max_seconds and el > args.max_seconds:
                break


if __name__ == "__main__":
    main()
