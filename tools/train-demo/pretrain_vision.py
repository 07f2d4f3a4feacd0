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

import batched
import dense
import hf_io
import tasks

# Pictures stage 1 draws, by task: single shapes (shape, colour), scenes of 1-5 shapes (count), scenes
# of 1-3 different shapes (boxes), words and numbers (characters).
PRETRAIN_MIX = {"shape": 0.55, "count": 0.2, "grounding": 0.15, "ocr": 0.1}
TEXT_CHARS, TEXT_SLOTS = tasks.TEXT_CHARS, tasks.TEXT_SLOTS


AUX_CLASSES = {"shape": tasks.SHAPES, "colour": tasks.COLOUR_NAMES, "count": [1, 2, 3, 4, 5]}


def aux_labels_of(labels: list[dict]) -> torch.Tensor:
    """Per picture: class index of its shape, colour and count, -1 where unknown."""
    rows = [[AUX_CLASSES[k].index(lab[k]) if k in lab else -1 for k in AUX_CLASSES] for lab in labels]
    return torch.tensor(rows, dtype=torch.long).reshape(-1, len(AUX_CLASSES))


def picture_means(merged: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
    """Each picture's mean merger token (pictures in processor order), without a per-picture loop."""
    sizes = grid_thw.prod(-1) // 4
    owner = torch.repeat_interleave(torch.arange(len(sizes), device=merged.device), sizes)
    sums = merged.new_zeros(len(sizes), merged.shape[1]).index_add_(0, owner, merged)
    return sums / sizes.unsqueeze(1).to(merged.dtype)


def padded_pictures(merged: torch.Tensor, grid_thw: torch.Tensor, which: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The merger tokens of pictures `which`, padded to the longest: (len(which), longest, dim) and the
    mask of real tokens."""
    sizes = (grid_thw.prod(-1) // 4).tolist()
    starts = [sum(sizes[:i]) for i in which]
    lengths = torch.tensor([sizes[i] for i in which])
    longest = int(lengths.max())
    slot = torch.arange(longest)
    valid = slot.unsqueeze(0) < lengths.unsqueeze(1)
    index = torch.where(valid, torch.tensor(starts).unsqueeze(1) + slot, 0).to(merged.device)
    return merged[index], valid.to(merged.device)


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
        pooled = picture_means(merged, grid_thw)
        total = merged.new_zeros(())
        acc = {}
        for k, (name, head) in enumerate(zip(AUX_CLASSES, self.heads)):
            has = labels[:, k] >= 0
            if bool(has.any()):
                logits = head(pooled)
                total = total + F.cross_entropy(logits, labels[:, k], ignore_index=-1)
                acc[f"{name}_acc"] = (logits[has].argmax(1) == labels[has, k]).float().mean().detach()
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

    def loss(self, tokens: torch.Tensor, valid: torch.Tensor, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: (pictures, longest, dim), padded; valid: (pictures, longest), False at padding."""
        x = self.norm(tokens)
        scores = self.queries @ self.key(x).transpose(1, 2) / math.sqrt(x.shape[-1])  # (pictures, slots, longest)
        w = torch.softmax(scores.masked_fill(~valid[:, None, :], float("-inf")), dim=-1)
        logits = self.out(w @ x)  # (pictures, slots, classes)
        tgt = torch.tensor([[TEXT_CHARS.index(c) for c in s] + [len(TEXT_CHARS)] * (TEXT_SLOTS - len(s)) for s in texts],
                           device=logits.device)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        exact = (logits.argmax(-1) == tgt).all(1).float().mean().detach()
        return loss, exact


def vision_lr_at(step: int, progress: float, peak: float, hold: float, warm: int) -> float:
    """Linear warm-up, the peak held for a `hold` fraction of the run, then a cosine to 10% of it.
    Shape is learnt late (after tens of thousands of pictures) and only at a high rate: with a cosine
    from the start, shape accuracy stalled near 70% while the rate decayed."""
    if step < warm:
        return peak * (step + 1) / warm
    if progress < hold:
        return peak
    p = min(1.0, (progress - hold) / max(1e-9, 1 - hold))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def draw_pictures(rng: np.random.Generator, n: int) -> list[tuple[object, dict]]:
    """n (picture, labels) pairs from PRETRAIN_MIX; labels as tasks.make_sample gives them."""
    names = list(PRETRAIN_MIX)
    probs = np.array([PRETRAIN_MIX[t] for t in names])
    out = []
    for i in rng.choice(len(names), size=n, p=probs / probs.sum()):
        s = tasks.make_sample(rng, names[i])
        out.append((s["images"][0], dict(s["labels"][0])))
    return out


def encode_pictures(image_processor, vision_config, pairs) -> dict:
    """Processor inputs (pixels as resized uint8: hf_io.normalize_pixels), every training target, and the
    vision tower's precomputed position tables."""
    enc = image_processor(images=[p for p, _ in pairs], return_tensors="pt", do_rescale=False, do_normalize=False)
    labels = [lab for _, lab in pairs]
    grid = enc["image_grid_thw"]
    texts = [(i, lab["text"]) for i, lab in enumerate(labels) if "text" in lab]
    return {
        "pixel_values": enc["pixel_values"],
        "image_grid_thw": grid,
        "aux_labels": aux_labels_of(labels),
        "dense": dense.batch_targets(labels, grid),
        "texts": texts,
        "vision": {k.removeprefix("image_"): v for k, v in batched.vision_inputs(vision_config, grid, "image_").items()},
    }


class PictureBatches(torch.utils.data.IterableDataset):
    """Stage-1 batches made by DataLoader workers, each from its own seeded generator."""

    def __init__(self, image_processor, vision_config, seed: int, steps: int, batch: int):
        self.args = image_processor, vision_config, seed, steps, batch

    def __iter__(self):
        image_processor, vision_config, seed, steps, batch = self.args
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        torch.set_num_threads(1)
        rng = np.random.default_rng([seed, 1, w])
        for step in range(w, steps, n):
            yield step, encode_pictures(image_processor, vision_config, draw_pictures(rng, batch))


def to_device(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


class VisionHeads(torch.nn.Module):
    """Every training-only head on the tower's merger tokens: pooled (AuxHeads), per token (DenseHeads),
    and the characters of a drawn text (TextHeads). Used in both stages; never saved."""

    def __init__(self, dim: int):
        super().__init__()
        self.aux = AuxHeads(dim)
        self.dense = dense.DenseHeads(dim)
        self.text = TextHeads(dim)

    def losses(self, merged: torch.Tensor, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Loss terms (tensors) and accuracies (detached tensors: no device sync) for the pictures of `batch` (encode_pictures keys)."""
        grid = batch["image_grid_thw"]
        pooled, acc = self.aux.loss_and_accuracy(merged, grid, batch["aux_labels"])
        terms = {"pooled": pooled}
        terms.update({f"dense_{k}": v for k, v in self.dense.losses(merged, batch["dense"]).items()})
        if batch["texts"]:
            tokens, valid = padded_pictures(merged, grid, [i for i, _ in batch["texts"]])
            tl, exact = self.text.loss(tokens, valid, [t for _, t in batch["texts"]])
            terms["text"] = tl
            acc["text_exact"] = exact
        return terms, acc


def pretrain_vision(visual, image_processor, heads: VisionHeads, vision_out, args, log) -> None:
    """Trains `visual` (HF's Qwen3-VL vision tower, in place) for args.vision_steps batches of
    args.vision_batch pictures, or until args.vision_seconds have passed (the schedule follows whichever
    comes first). `heads` stay in use in stage 2; `vision_out` is train.py's VisionOutputs (the same
    output-scale penalty as stage 2)."""
    params = [p for p in visual.parameters() if p.requires_grad]
    head_params = list(heads.parameters())
    opt = torch.optim.AdamW([{"params": params, "weight_decay": 0.01}, {"params": head_params, "weight_decay": 0.0}],
                            lr=args.vision_lr, betas=(0.9, 0.98), fused=args.device.startswith("cuda"))
    steps, warm = args.vision_steps, 30
    data = PictureBatches(image_processor, visual.config, args.seed, steps, args.vision_batch)
    loader = (torch.utils.data.DataLoader(data, batch_size=None, num_workers=args.workers, prefetch_factor=2,
                                          pin_memory=args.device.startswith("cuda"))
              if args.workers else data)
    t0 = time.time()
    hist: dict[str, list] = {}
    done = 0
    waited, t_ready = 0.0, time.time()
    for step, batch in loader:
        waited += time.time() - t_ready  # time the step loop spent waiting for batches
        elapsed = time.time() - t0
        progress = max(step / steps, elapsed / args.vision_seconds if args.vision_seconds else 0.0)
        if progress >= 1:
            break
        lr = vision_lr_at(step, progress, args.vision_lr, args.vision_hold, warm)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = hf_io.normalize_pixels(to_device(batch, args.device))
        merged = visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"], **batch["vision"]).pooler_output
        vision_out.take_mergers()
        pen = vision_out.penalty()
        terms, acc = heads.losses(merged, batch)
        loss = sum(terms.values()) + args.vision_l2 * pen
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params + head_params, 1.0)
        opt.step()
        done = step + 1
        hist.setdefault("loss", []).append(loss.detach())
        for k, v in terms.items():
            if k.startswith("dense_"):
                hist.setdefault(k, []).append(v.detach())
        for k, v in acc.items():
            hist.setdefault(k, []).append(v)
        if (step + 1) % args.log_every == 0:
            stats = " ".join(f"{k}={np.mean([float(x) for x in v]):.3f}" for k, v in hist.items())
            log(f"vision step {step + 1} pictures {(step + 1) * args.vision_batch} t={time.time() - t0:.0f}s "
                f"data_wait={waited / (time.time() - t0):.0%} "
                f"lr={lr:.2e} {stats}")
            hist.clear()
        t_ready = time.time()
    log(f"stage 1: {done} batches ({done * args.vision_batch} pictures) in {time.time() - t0:.0f}s")
