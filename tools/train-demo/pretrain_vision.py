"""Stage 1 of the demo training: the vision tower alone, supervised with what the generator knows.

Trained only through the language model, a from-scratch ViT this small learns colour (a mean over
pixels) but stays near chance on shape: the text side has to learn to look at image tokens that carry
nothing yet, and each picture gives one weak signal. Run on its own, the tower takes about 88
pictures a second on 2 cores (the whole model with its processor and chat template: about 30 samples
a second), and the generator's labels give it many signals per picture: the shape, colour and number
of shapes (heads on the pooled merger tokens), per merger token the shape and colour that covers it, that shape's box and whether its
centre lies there (dense.py), and the characters of a drawn word (TextHeads). In vision-only runs of
these heads, shape accuracy stayed near 30% for the first ~30k pictures and then rose to ~95% by ~90k.
The heads are training-only; nothing but the tower's own weights is saved.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

import dense
import tasks

# Pictures stage 1 draws, by task: single shapes (shape, colour), scenes of 1-5 shapes (count), scenes
# of 1-3 different shapes (boxes), words and numbers (characters).
PRETRAIN_MIX = {"shape": 0.55, "count": 0.2, "grounding": 0.15, "ocr": 0.1}
TEXT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TEXT_SLOTS = 5  # the longest word or number the OCR task draws


AUX_CLASSES = {"shape": tasks.SHAPES, "colour": tasks.COLOUR_NAMES, "count": [1, 2, 3, 4, 5]}


def aux_labels_of(labels: list[dict]) -> torch.Tensor:
    """Per picture: class index of its shape, colour and count, -1 where unknown."""
    rows = [[AUX_CLASSES[k].index(lab[k]) if k in lab else -1 for k in AUX_CLASSES] for lab in labels]
    return torch.tensor(rows, dtype=torch.long).reshape(-1, len(AUX_CLASSES))


class AuxHeads(torch.nn.Module):
    """Training-only linear probes on each picture's mean merger token (not saved).

    From scratch, the vision tower gets its only signal through the language model, which first has to
    learn to look at the image tokens: a run without these heads stayed at chance on shape and count
    (and a linear probe on its vision features was at chance too). Supervising the pooled vision
    features directly with the labels the generator knows breaks that circle."""

    def __init__(self, dim: int):
        super().__init__()
        self.heads = torch.nn.ModuleList([torch.nn.Linear(dim, len(c)) for c in AUX_CLASSES.values()])

    def loss(self, merged: torch.Tensor, grid_thw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_and_accuracy(merged, grid_thw, labels)[0]

    def loss_and_accuracy(self, merged: torch.Tensor, grid_thw: torch.Tensor, labels: torch.Tensor):
        """The summed cross-entropy, and each head's accuracy on the pictures that have its label."""
        sizes = (grid_thw.prod(-1) // 4).tolist()
        pooled = torch.stack([t.mean(0) for t in torch.split(merged, sizes)])
        total = merged.new_zeros(())
        acc = {}
        for k, (name, head) in enumerate(zip(AUX_CLASSES, self.heads)):
            has = labels[:, k] >= 0
            if bool(has.any()):
                logits = head(pooled)
                total = total + F.cross_entropy(logits, labels[:, k], ignore_index=-1)
                acc[f"{name}_acc"] = (logits[has].argmax(1) == labels[has, k]).float().mean().item()
        return total, acc


class TextHeads(torch.nn.Module):
    """One attention-pooling query per character slot over a picture's merger tokens; each predicts that
    slot's character or 'none' (past the end of the text)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.queries = torch.nn.Parameter(torch.randn(TEXT_SLOTS, dim) * 0.02)
        self.key = torch.nn.Linear(dim, dim)
        self.out = torch.nn.Linear(dim, len(TEXT_CHARS) + 1)

    def loss(self, tokens: list[torch.Tensor], texts: list[str]) -> tuple[torch.Tensor, float]:
        logits = []
        for t in tokens:
            x = self.norm(t)
            w = torch.softmax(self.queries @ self.key(x).T / math.sqrt(x.shape[1]), dim=1)
            logits.append(self.out(w @ x))
        logits = torch.stack(logits)  # (pictures, slots, classes)
        tgt = torch.tensor([[TEXT_CHARS.index(c) for c in s] + [len(TEXT_CHARS)] * (TEXT_SLOTS - len(s)) for s in texts],
                           device=logits.device)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        exact = (logits.argmax(-1) == tgt).all(1).float().mean().item()
        return loss, exact


def vision_lr_at(step: int, steps: int, peak: float, hold: float, warm: int) -> float:
    """Linear warm-up, the peak held for a `hold` fraction of the steps, then a cosine to 10% of it.
    Shape is learnt late (after tens of thousands of pictures) and only at a high rate: with a cosine
    from the start, shape accuracy stalled near 70% while the rate decayed."""
    if step < warm:
        return peak * (step + 1) / warm
    held = int(hold * steps)
    if step < held:
        return peak
    p = (step - held) / max(1, steps - held)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def _draw(rng: np.random.Generator, names: list[str], probs: np.ndarray, n: int) -> list[tuple[object, dict]]:
    """n (picture, labels) pairs; OCR pictures get {"text": ...} as labels."""
    out = []
    for i in rng.choice(len(names), size=n, p=probs):
        s = tasks.make_sample(rng, names[i])
        lab = dict(s["labels"][0]) if s["labels"] and s["labels"][0] else {}
        if names[i] == "ocr":
            lab = {"text": s["answer"]}
        out.append((s["images"][0], lab))
    return out


def pretrain_vision(visual, image_processor, aux, vision_out, args, rng: np.random.Generator, log) -> None:
    """Trains `visual` (HF's Qwen3-VL vision tower, in place) for args.vision_steps batches of
    args.vision_batch pictures. `aux` (AuxHeads) stays in use in stage 2; `vision_out` is train.py's
    VisionOutputs (the same output-scale penalty as stage 2)."""
    dim = visual.config.out_hidden_size
    dense_heads = dense.DenseHeads(dim).to(args.device)
    text_heads = TextHeads(dim).to(args.device)
    params = [p for p in visual.parameters() if p.requires_grad]
    head_params = [*aux.parameters(), *dense_heads.parameters(), *text_heads.parameters()]
    opt = torch.optim.AdamW([{"params": params, "weight_decay": 0.01}, {"params": head_params, "weight_decay": 0.0}],
                            lr=args.vision_lr, betas=(0.9, 0.98))
    names = list(PRETRAIN_MIX)
    probs = np.array([PRETRAIN_MIX[t] for t in names])
    probs = probs / probs.sum()
    steps, warm = args.vision_steps, 30
    t0 = time.time()
    hist: dict[str, list[float]] = {}
    for step in range(steps):
        lr = vision_lr_at(step, steps, args.vision_lr, args.vision_hold, warm)
        for g in opt.param_groups:
            g["lr"] = lr
        pairs = _draw(rng, names, probs, args.vision_batch)
        enc = image_processor(images=[p for p, _ in pairs], return_tensors="pt")
        pixels, grid = enc["pixel_values"].to(args.device), enc["image_grid_thw"].to(args.device)
        labels = [lab for _, lab in pairs]
        merged = visual(pixels, grid_thw=grid).pooler_output
        vision_out.take_mergers()
        pen = vision_out.penalty()
        pooled_loss, pooled_acc = aux.loss_and_accuracy(merged, grid, aux_labels_of(labels).to(args.device))
        dl = dense_heads.losses(merged, {k: v.to(args.device) for k, v in dense.batch_targets(labels, grid.cpu()).items()})
        loss = pooled_loss + sum(dl.values()) + args.vision_l2 * pen
        per_pic = torch.split(merged, (grid.prod(-1) // 4).tolist())
        text_idx = [i for i, lab in enumerate(labels) if "text" in lab]
        if text_idx:
            tl, exact = text_heads.loss([per_pic[i] for i in text_idx], [labels[i]["text"] for i in text_idx])
            loss = loss + tl
            hist.setdefault("text_exact", []).append(exact)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params + head_params, 1.0)
        opt.step()
        hist.setdefault("loss", []).append(loss.item())
        for k, v in dl.items():
            hist.setdefault(f"dense_{k}", []).append(v.item())
        for k, v in pooled_acc.items():
            hist.setdefault(k, []).append(v)
        if (step + 1) % args.log_every == 0 or step + 1 == steps:
            stats = " ".join(f"{k}={np.mean(v):.3f}" for k, v in hist.items())
            log(f"vision step {step + 1} pictures {(step + 1) * args.vision_batch} t={time.time() - t0:.0f}s "
                f"lr={lr:.2e} {stats}")
            hist.clear()
