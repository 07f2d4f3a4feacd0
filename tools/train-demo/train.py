"""Train the demo Qwen3-VL model from scratch on synthetic tasks (CPU, a few tens of minutes).

Usage (from the repository root):
  /work/venv/bin/python tools/train-demo/train.py --steps 1500 --out models/demo --log tools/train-demo/train.log

The model is HF's own Qwen3VLForConditionalGeneration; inputs come from HF's Qwen3VLProcessor and chat
template (see hf_io.py). The loss covers the assistant answer tokens only, and the full-vocabulary head
(151936 tied rows) runs only at those positions.
"""
from __future__ import annotations

import os

# OpenMP threads that spin while waiting slow everything down badly when other processes share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import math
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_io  # noqa: E402
import pretrain_vision  # noqa: E402
import tasks  # noqa: E402

# How often each task is drawn: the harder ones (boxes, reading, timestamps) get more practice.
TASK_WEIGHTS = {
    "colour": 1.0,
    "shape": 1.0,
    "count": 1.5,
    "ocr": 1.75,
    "grounding": 2.5,
    "two_images": 1.0,
    "video_time": 1.5,
}
# The first steps draw only these: a from-scratch vision tower needs an easy visual signal to get going.
# Mixing in the harder tasks from step 0 lets the text side learn the answer formats first and leaves
# the image tokens unused (a plateau at chance level on colour seen in a first run).
WARMUP_TASKS = ["colour", "shape", "count"]


def log_line(fh, msg: str) -> None:
    print(msg, flush=True)
    if fh:
        fh.write(msg + "\n")
        fh.flush()


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def build_model(work: Path):
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    cfg = AutoConfig.from_pretrained(str(work))
    model = Qwen3VLForConditionalGeneration(cfg).to(torch.float32)  # config says bfloat16: train in float32
    model.train()
    use_linear_patch_embed(model.model.visual.patch_embed)
    return model


def use_linear_patch_embed(pe) -> None:
    """Training speed only: the Conv3d with kernel == stride is the same dot product over each 1536-wide
    pixel row (weight flattened in the row's (channel, time, y, x) order), but CPU conv3d is far slower
    than a matmul. The weights and the saved model are untouched."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        w = pe.proj.weight.view(pe.embed_dim, -1)
        return F.linear(x.view(-1, w.shape[1]).to(w.dtype), w, pe.proj.bias)

    pe.forward = forward


class ActiveVocab:
    """The tied embedding restricted to the tokens the tasks use; every other row is fixed at exactly zero.

    Only a few hundred of the 151936 ids ever occur in these prompts and answers. Their rows are trained;
    all others stay zero, so their logits are exactly 0 and the full-vocabulary softmax is exact and cheap:
    logsumexp over all rows = logsumexp(active logits, log(number of zero rows)). The saved checkpoint is
    an ordinary tied Qwen3-VL embedding whose unused rows are zero."""

    def __init__(self, model, ids: list[int]):
        emb = model.model.language_model.embed_tokens
        dev = emb.weight.device
        self.vocab_size = emb.weight.shape[0]
        self.ids = torch.tensor(sorted(set(ids)), dtype=torch.long, device=dev)
        self.remap = torch.full((self.vocab_size,), -1, dtype=torch.long, device=dev)
        self.remap[self.ids] = torch.arange(len(self.ids), device=dev)
        self.rows = torch.nn.Parameter(emb.weight.detach()[self.ids].clone())
        self.log_zero_rows = math.log(self.vocab_size - len(self.ids))
        emb.weight.requires_grad_(False)

        def forward(input_ids: torch.Tensor) -> torch.Tensor:
            idx = self.remap[input_ids]
            if bool((idx < 0).any()):
                bad = sorted(set(input_ids[idx < 0].tolist()))[:10]
                raise ValueError(f"token ids outside the active vocabulary: {bad}")
            return F.embedding(idx, self.rows)

        emb.forward = forward

    def loss(self, h: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Exact full-vocabulary cross-entropy per position."""
        logits = h @ self.rows.T
        zero = torch.full((h.shape[0], 1), self.log_zero_rows, dtype=logits.dtype, device=logits.device)
        lse = torch.logsumexp(torch.cat([logits, zero], dim=1), dim=1)
        return lse - logits.gather(1, self.remap[tgt].unsqueeze(1)).squeeze(1)

    def export(self, model) -> None:
        """Write the trained rows into the model's (tied) embedding; all other rows become zero."""
        w = torch.zeros_like(model.model.language_model.embed_tokens.weight)
        w[self.ids] = self.rows.detach()
        with torch.no_grad():
            model.model.language_model.embed_tokens.weight.copy_(w)


def task_vocabulary(processor, rng: np.random.Generator, per_task: int = 300) -> list[int]:
    """Every token id the prompts and answers can contain (the task language is a small closed set)."""
    tok = processor.tokenizer
    ids: set[int] = set(tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                                   "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]))
    texts = [hf_io.prompt_text(processor, tasks.make_sample(rng, t), with_answer=True)
             for t in tasks.TASKS for _ in range(per_task)]
    texts += [f"<{x / 20:.1f} seconds>" for x in range(0, 400)]
    texts += [str(d) for d in range(10)] + tasks.WORDS
    for t in texts:
        ids.update(tok(t, add_special_tokens=False)["input_ids"])
    return sorted(ids)


class VisionOutputs:
    """Keeps the vision tower's outputs of the current forward (merger tokens and DeepStack features).

    The text side only sees them through RMSNorm and the DeepStack addition, so nothing in the task loss
    stops their scale from drifting up; in a first run it reached a norm of ~400 per token (the text
    embeddings: ~1), almost all of it one constant vector, and the vision tower stopped learning shapes.
    A small L2 penalty on these outputs keeps them near the text scale."""

    def __init__(self, visual):
        self.outputs: list[torch.Tensor] = []
        self.mergers: list[torch.Tensor] = []
        visual.register_forward_hook(self._hook)

    def _hook(self, module, args, out) -> None:
        self.mergers.append(out.pooler_output)
        self.outputs.append(out.pooler_output)
        self.outputs.extend(out.deepstack_features)

    def penalty(self) -> torch.Tensor:
        p = sum(o.pow(2).mean() for o in self.outputs)
        self.outputs.clear()
        return p

    def take_mergers(self) -> list[torch.Tensor]:
        """Merger outputs of this forward, one tensor per vision call (images first, then videos)."""
        m, self.mergers = self.mergers, []
        return m


def aux_labels(samples: list[dict]) -> torch.Tensor:
    """aux_labels_of for every picture of a batch, in processor order."""
    return pretrain_vision.aux_labels_of([lab for s in samples for lab in s["labels"]])


def save_demo(model, out: Path) -> None:
    """BF16 weights via save_pretrained, then the 4.57-layout config.json and the verbatim side files."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bf16 = model.to("cpu", torch.bfloat16)
        bf16.save_pretrained(tmp)
        model.to(torch.float32)
        names = [p.name for p in Path(tmp).iterdir()]
        assert names.count("model.safetensors") == 1, f"expected one safetensors file, got {names}"
        shutil.copyfile(Path(tmp) / "model.safetensors", out / "model.safetensors")
    hf_io.write_model_files(out, with_tokenizer=False)


class TaskMix:
    """Which tasks a step draws from (the warm-up tasks first, then the full mix)."""

    def __init__(self, names: list[str], basic_steps: int):
        self.names = names
        self.basic_steps = basic_steps
        probs = np.array([TASK_WEIGHTS[t] for t in names])
        self.probs = probs / probs.sum()
        basic = np.array([TASK_WEIGHTS[t] if t in WARMUP_TASKS else 0.0 for t in names])
        self.basic = basic / basic.sum() if basic.sum() > 0 else self.probs

    def draw(self, rng: np.random.Generator, step: int, batch: int) -> list[dict]:
        task_ids = rng.choice(len(self.names), size=batch, p=self.basic if step < self.basic_steps else self.probs)
        return [tasks.make_sample(rng, self.names[i]) for i in task_ids]


def encode_with_aux(processor, samples: list[dict]) -> dict:
    batch = hf_io.encode(processor, samples, with_answer=True)
    batch["aux_labels"] = aux_labels(samples)
    return batch


class WorkerBatches(torch.utils.data.IterableDataset):
    """Encoded batches made by DataLoader workers (GPU runs): worker w makes steps w, w + W, w + 2W, ...
    from its own seeded generator; the loader's round-robin order hands them out as steps 0, 1, 2, ..."""

    def __init__(self, processor, mix: TaskMix, seed: int, steps: int, batch: int):
        self.processor, self.mix, self.seed, self.steps, self.batch = processor, mix, seed, steps, batch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, w])
        for step in range(w, self.steps, n):
            samples = self.mix.draw(rng, step, self.batch)
            yield step, [s["task"] for s in samples], encode_with_aux(self.processor, samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="model folder to write (omit for a pilot)")
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--ckpt", type=Path, default=None, help="float32 checkpoint file for resuming")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--tasks", default=",".join(TASK_WEIGHTS), help="comma-separated subset (pilots)")
    ap.add_argument("--basic-steps", type=int, default=150, help="steps drawing only WARMUP_TASKS")
    ap.add_argument("--vision-steps", type=int, default=3500, help="stage 1: vision-only batches (pretrain_vision.py)")
    ap.add_argument("--vision-batch", type=int, default=32)
    ap.add_argument("--vision-lr", type=float, default=1e-3)
    ap.add_argument("--vision-lr-mult", type=float, default=0.25, help="stage 2: the vision tower's rate / --lr")
    ap.add_argument("--vision-hold", type=float, default=0.6, help="stage 1: fraction of the steps at the peak rate")
    ap.add_argument("--vision-l2", type=float, default=0.01, help="weight of the penalty on vision output scale")
    ap.add_argument("--aux", type=float, default=1.0, help="weight of the training-only vision probes' loss")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers making batches (0: in the loop)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    fh = open(args.log, "a") if args.log else None

    work = Path(tempfile.mkdtemp(prefix="qvl-demo-"))
    processor = hf_io.load_processor(work)
    model = build_model(work).to(args.device)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight, "the head must be tied"
    vocab = ActiveVocab(model, task_vocabulary(processor, np.random.default_rng(args.seed + 1)))
    vision_out = VisionOutputs(model.model.visual)
    aux = pretrain_vision.AuxHeads(model.config.vision_config.out_hidden_size).to(args.device)

    # Parameter groups: (vision tower or not) x (weight decay or not); the tower's rate is scaled by
    # --vision-lr-mult so that stage 2 refines what stage 1 taught it instead of overwriting it.
    groups: dict[tuple[bool, bool], list] = {(v, d): [] for v in (False, True) for d in (False, True)}
    groups[(False, False)] += [vocab.rows, *aux.parameters()]
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[(".visual." in f".{name}", not (p.ndim < 2 or "norm" in name))].append(p)
    decay = groups[(False, True)] + groups[(True, True)]
    no_decay = groups[(False, False)] + groups[(True, False)]
    params = decay + no_decay
    opt = torch.optim.AdamW(
        [{"params": ps, "weight_decay": 0.01 if d else 0.0, "mult": args.vision_lr_mult if v else 1.0}
         for (v, d), ps in groups.items() if ps],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-8,
    )

    start = 0
    if args.ckpt and args.ckpt.exists() and args.workers:
        raise SystemExit("--ckpt resume works with --workers 0 only")
    if args.ckpt and args.ckpt.exists():
        state = torch.load(args.ckpt, weights_only=False, map_location=args.device)
        model.load_state_dict(state["model"])
        aux.load_state_dict(state["aux"])
        with torch.no_grad():
            vocab.rows.copy_(state["rows"])
        opt.load_state_dict(state["opt"])
        rng = state["rng"]
        start = state["step"]
        log_line(fh, f"resumed from {args.ckpt} at step {start}")

    if not (args.ckpt and args.ckpt.exists()) and args.vision_steps:
        log_line(fh, f"# stage 1: vision tower alone, {args.vision_steps} batches of {args.vision_batch} pictures, "
                     f"lr {args.vision_lr} (held for {args.vision_hold:.0%} of them)")
        pretrain_vision.pretrain_vision(model.model.visual, processor.image_processor, aux, vision_out, args,
                                        np.random.default_rng([args.seed, 1]), lambda m: log_line(fh, m))
        if args.ckpt:
            torch.save({"model": model.state_dict(), "aux": aux.state_dict(), "opt": opt.state_dict(),
                        "rows": vocab.rows.detach(), "rng": rng, "step": 0}, args.ckpt)

    n_train = sum(p.numel() for p in params)
    log_line(fh, f"# qvl demo training: seed {args.seed}, steps {args.steps} (first {args.basic_steps} on "
                 f"{'/'.join(WARMUP_TASKS)}), batch {args.batch}, lr {args.lr} (vision tower x{args.vision_lr_mult}), "
                 f"threads {args.threads}, device {args.device}, workers {args.workers}, torch {torch.__version__}, "
                 f"trained params {n_train:,} "
                 f"(active vocabulary {len(vocab.ids)} of {vocab.vocab_size} rows)")
    names = [t for t in TASK_WEIGHTS if t in args.tasks.split(",")]
    mix = TaskMix(names, args.basic_steps)

    def batches():
        if args.workers:
            loader = torch.utils.data.DataLoader(
                WorkerBatches(processor, mix, args.seed, args.steps, args.batch), batch_size=None,
                num_workers=args.workers, prefetch_factor=4, persistent_workers=False)
            yield from loader
            return
        for step in range(start, args.steps):
            samples = mix.draw(rng, step, args.batch)
            yield step, [s["task"] for s in samples], encode_with_aux(processor, samples)

    pen_hist: list[float] = []
    aux_hist: list[float] = []
    t0 = time.time()
    acc_loss: dict[str, list[float]] = defaultdict(list)
    for step, batch_tasks, batch in batches():
        batch = {k: v.to(args.device) for k, v in batch.items()}
        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr * g["mult"]
        h, tgt, rows = hf_io.answer_hidden(model, batch)
        tok = vocab.loss(h, tgt)
        # Mean over samples of each sample's mean token loss, so long answers (boxes) do not drown short ones.
        per_row = torch.zeros(args.batch, device=tok.device).index_add_(0, rows, tok)
        counts = torch.zeros(args.batch, device=tok.device).index_add_(0, rows, torch.ones_like(tok))
        row_loss = per_row / counts
        vis_pen = vision_out.penalty()
        mergers = vision_out.take_mergers()
        aux_loss = (aux.loss(mergers[0], batch["image_grid_thw"], batch["aux_labels"])
                    if "image_grid_thw" in batch else torch.zeros((), device=args.device))
        loss = row_loss.mean() + args.vision_l2 * vis_pen + args.aux * aux_loss
        pen_hist.append(float(vis_pen))
        aux_hist.append(float(aux_loss))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        for t, l in zip(batch_tasks, row_loss.detach().tolist()):
            acc_loss[t].append(l)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            per_task = " ".join(f"{t}={np.mean(acc_loss[t]):.3f}" for t in names if acc_loss[t])
            all_l = np.mean([v for t in names for v in acc_loss[t]])
            log_line(fh, f"step {step + 1} t={time.time() - t0:.0f}s lr={lr:.2e} loss={all_l:.4f} "
                         f"gnorm={float(gnorm):.2f} vision_ms={np.mean(pen_hist):.3f} aux={np.mean(aux_hist):.3f} {per_task}")
            acc_loss.clear()
            pen_hist.clear()
            aux_hist.clear()
        if args.ckpt and ((step + 1) % 250 == 0 or step + 1 == args.steps):
            torch.save({"model": model.state_dict(), "aux": aux.state_dict(), "opt": opt.state_dict(),
                        "rows": vocab.rows.detach(), "rng": rng,
                        "step": step + 1}, args.ckpt)

    log_line(fh, f"trained {args.steps - start} steps in {time.time() - t0:.0f}s")
    if args.out:
        vocab.export(model)
        save_demo(model, args.out)
        log_line(fh, f"saved BF16 model to {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
