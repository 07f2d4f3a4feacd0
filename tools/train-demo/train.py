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
import batched  # noqa: E402
import dense  # noqa: E402
import hf_io  # noqa: E402
import pretrain_vision  # noqa: E402
import tasks  # noqa: E402

# How often each task is drawn: the harder ones (boxes, reading, timestamps) get more practice.
TASK_WEIGHTS = {
    "colour": 0.5,
    "shape": 1.0,
    "count": 1.5,
    "ocr": 2.5,
    "grounding": 3.0,
    "two_images": 1.0,
    "video_time": 2.0,
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


def lr_at(step: int, progress: float, peak: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then a cosine to 5% over the run's progress (0..1)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


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
    texts += list(tasks.TEXT_CHARS) + tasks.WORDS
    for t in texts:
        ids.update(tok(t, add_special_tokens=False)["input_ids"])
    return sorted(ids)


class LmChars:
    """Per-token reading targets for the language model: at each image token that a drawn character
    covers (dense.py's `char` target), the model's final hidden state is asked, through the tied head,
    for that character's own token. The tower already tells characters apart (stage 1), but the answer
    positions have to learn where to look and how to say what they find; with this, the image positions
    themselves say which character they hold, in the vocabulary the answer is written in."""

    def __init__(self, tokenizer, image_token_id: int, device):
        ids = [tokenizer.convert_tokens_to_ids(c) for c in tasks.TEXT_CHARS]
        assert all(isinstance(i, int) and i >= 0 for i in ids), "every character must be one token"
        self.char_ids = torch.tensor(ids, device=device)
        self.image_token_id = image_token_id

    def loss(self, last: torch.Tensor, input_ids: torch.Tensor, chars: torch.Tensor, vocab: "ActiveVocab") -> torch.Tensor:
        # image tokens in (row, position) order are the pictures' merger tokens in processor order
        h = last[input_ids == self.image_token_id]
        if h.shape[0] != chars.shape[0]:
            raise AssertionError(f"{h.shape[0]} image tokens but {chars.shape[0]} per-token targets")
        sel = chars >= 0
        if not bool(sel.any()):
            return last.new_zeros(())
        return vocab.loss(h[sel], self.char_ids[chars[sel]]).mean()


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




EMBED = "model.language_model.embed_tokens.weight"


def trained_rows(emb: torch.Tensor) -> torch.Tensor:
    """Ids of the embedding rows that are not all zero (the trained vocabulary)."""
    return torch.nonzero(emb.abs().sum(1) > 0).squeeze(1)


def compact_weights(src: Path, dst: Path) -> None:
    """A model.safetensors without its all-zero vocabulary rows (a quarter of the size): the rest as saved,
    plus the trained rows and their ids. For moving a checkpoint to a training machine (--init)."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(src))
    emb = sd.pop(EMBED)
    ids = trained_rows(emb)
    save_file({**sd, "embed_ids": ids, "embed_rows": emb[ids].contiguous()}, str(dst))


def load_weights(model, vocab: ActiveVocab, path: Path) -> None:
    """--init: a saved demo model (or compact_weights' file) into the model and the active vocabulary."""
    from safetensors.torch import load_file

    sd = load_file(str(path))
    if EMBED in sd:
        emb = sd.pop(EMBED)
        ids = trained_rows(emb)
        rows = emb[ids]
    else:
        ids, rows = sd.pop("embed_ids"), sd.pop("embed_rows")
    known = set(vocab.ids.tolist())
    if not set(ids.tolist()) <= known:
        raise SystemExit(f"{path}: trained vocabulary rows outside this run's active vocabulary")
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    if unexpected or set(missing) - {EMBED, "lm_head.weight"}:
        raise SystemExit(f"{path}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    with torch.no_grad():
        vocab.rows.zero_()
        vocab.rows[vocab.remap[ids.to(vocab.remap.device)]] = rows.float().to(vocab.rows.device)


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


def encode_batch(processor, config, samples: list[dict]) -> dict:
    """Model inputs with answer labels, the pictures' training-only targets (the stage-1 heads'), and the
    position tables computed here rather than on the device (batched.py)."""
    batch = batched.precompute(config, hf_io.encode(processor, samples, with_answer=True, raw_pixels=True))
    labels = [lab for s in samples for lab in s["labels"]]
    if labels:
        grid = batch["image_grid_thw"]
        batch["aux_labels"] = pretrain_vision.aux_labels_of(labels)
        batch["dense"] = dense.batch_targets(labels, grid)
        batch["texts"] = [(i, lab["text"]) for i, lab in enumerate(labels) if "text" in lab]
    return batch


class WorkerBatches(torch.utils.data.IterableDataset):
    """Encoded batches made by DataLoader workers (GPU runs): worker w makes steps w, w + W, w + 2W, ...
    from its own seeded generator; the loader's round-robin order hands them out as steps 0, 1, 2, ..."""

    def __init__(self, processor, config, mix: TaskMix, seed: int, steps: int, batch: int):
        self.processor, self.config, self.mix, self.seed, self.steps, self.batch = processor, config, mix, seed, steps, batch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, n = (info.id, info.num_workers) if info else (0, 1)
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, w])
        for step in range(w, self.steps, n):
            samples = self.mix.draw(rng, step, self.batch)
            yield step, [s["task"] for s in samples], encode_batch(self.processor, self.config, samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000, help="stage 2 steps (at most; see --seconds)")
    ap.add_argument("--seconds", type=float, default=0, help="stage 2 wall-clock budget (0: none); the schedule "
                    "follows whichever of --steps and --seconds runs out first")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="model folder to write (omit for a pilot)")
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--tasks", default=",".join(TASK_WEIGHTS), help="comma-separated subset (pilots)")
    ap.add_argument("--weights", default="", help="task weights replacing TASK_WEIGHTS', e.g. ocr=4,grounding=4")
    ap.add_argument("--basic-steps", type=int, default=150, help="steps drawing only WARMUP_TASKS")
    ap.add_argument("--vision-steps", type=int, default=3500, help="stage 1: vision-only batches (pretrain_vision.py)")
    ap.add_argument("--vision-seconds", type=float, default=0, help="stage 1 wall-clock budget (0: none)")
    ap.add_argument("--vision-batch", type=int, default=32)
    ap.add_argument("--vision-lr", type=float, default=1e-3)
    ap.add_argument("--vision-lr-mult", type=float, default=0.25, help="stage 2: the vision tower's rate / --lr")
    ap.add_argument("--vision-hold", type=float, default=0.6, help="stage 1: fraction of the run at the peak rate")
    ap.add_argument("--vision-l2", type=float, default=0.01, help="weight of the penalty on vision output scale")
    ap.add_argument("--aux", type=float, default=1.0, help="stage 2: weight of the training-only vision heads' loss")
    ap.add_argument("--lm-chars", type=float, default=0.0,
                    help="stage 2: weight of the per-token character loss on the language model (LmChars)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers making batches (0: in the loop)")
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these weights: a model.safetensors, or compact_weights' smaller file")
    ap.add_argument("--check", action="store_true", help="first compare the fast forward with HF's own (batched.py)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    fh = open(args.log, "a") if args.log else None

    work = Path(tempfile.mkdtemp(prefix="qvl-demo-"))
    processor = hf_io.load_processor(work)
    model = build_model(work)
    for item in filter(None, args.weights.split(",")):
        task, weight = item.split("=")
        if task not in TASK_WEIGHTS:
            raise SystemExit(f"--weights: unknown task {task!r}")
        TASK_WEIGHTS[task] = float(weight)
    names = [t for t in TASK_WEIGHTS if t in args.tasks.split(",")]
    mix = TaskMix(names, args.basic_steps)
    if args.check:
        sample = encode_batch(processor, model.config, mix.draw(np.random.default_rng([args.seed, 9]), 10**9, 24))
        diff = batched.check_equivalence(model, hf_io.normalize_pixels(sample))
        log_line(fh, f"fast forward vs HF's: max difference {diff:.2e}")
    else:
        batched.use_padded_vision_attention(model.model.visual)
    model = model.to(args.device)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight, "the head must be tied"
    vocab = ActiveVocab(model, task_vocabulary(processor, np.random.default_rng(args.seed + 1)))
    if args.init:
        load_weights(model, vocab, args.init)
        log_line(fh, f"# weights from {args.init}")
    vision_out = VisionOutputs(model.model.visual)
    heads = pretrain_vision.VisionHeads(model.config.vision_config.out_hidden_size).to(args.device)

    if args.vision_steps:
        log_line(fh, f"# stage 1: vision tower alone, up to {args.vision_steps} batches of {args.vision_batch} pictures"
                     f"{f' or {args.vision_seconds:.0f} s' if args.vision_seconds else ''}, lr {args.vision_lr} "
                     f"(held for {args.vision_hold:.0%} of the run), device {args.device}, workers {args.workers}")
        pretrain_vision.pretrain_vision(model.model.visual, processor.image_processor, heads, vision_out, args,
                                        lambda m: log_line(fh, m))

    # Parameter groups: (vision tower or not) x (weight decay or not); the tower's rate is scaled by
    # --vision-lr-mult so that stage 2 refines what stage 1 taught it instead of overwriting it.
    groups: dict[tuple[bool, bool], list] = {(v, d): [] for v in (False, True) for d in (False, True)}
    groups[(False, False)] += [vocab.rows, *heads.parameters()]
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[(".visual." in f".{name}", not (p.ndim < 2 or "norm" in name))].append(p)
    params = [p for ps in groups.values() for p in ps]
    opt = torch.optim.AdamW(
        [{"params": ps, "weight_decay": 0.01 if d else 0.0, "mult": args.vision_lr_mult if v else 1.0}
         for (v, d), ps in groups.items() if ps],
        lr=args.lr, betas=(0.9, 0.98), eps=1e-8, fused=args.device.startswith("cuda"),
    )

    n_train = sum(p.numel() for p in params) - sum(p.numel() for p in heads.parameters())
    log_line(fh, f"# qvl demo training: seed {args.seed}, up to {args.steps} steps"
                 f"{f' or {args.seconds:.0f} s' if args.seconds else ''} (first {args.basic_steps} on "
                 f"{'/'.join(WARMUP_TASKS)}), batch {args.batch}, lr {args.lr} (vision tower x{args.vision_lr_mult}), "
                 f"threads {args.threads}, device {args.device}, workers {args.workers}, torch {torch.__version__}, "
                 f"trained model params {n_train:,} "
                 f"(active vocabulary {len(vocab.ids)} of {vocab.vocab_size} rows)")

    def batches():
        if args.workers:
            yield from torch.utils.data.DataLoader(
                WorkerBatches(processor, model.config, mix, args.seed, args.steps, args.batch), batch_size=None,
                num_workers=args.workers, prefetch_factor=2, pin_memory=args.device.startswith("cuda"))
            return
        for step in range(args.steps):
            samples = mix.draw(rng, step, args.batch)
            yield step, [s["task"] for s in samples], encode_batch(processor, model.config, samples)

    pen_hist: list[torch.Tensor] = []
    heads_hist: list[torch.Tensor] = []
    chars_hist: list[torch.Tensor] = []
    lm_chars = LmChars(processor.tokenizer, model.config.image_token_id, args.device)
    t0 = time.time()
    done = 0
    acc_loss: dict[str, list[float]] = defaultdict(list)
    waited, t_ready = 0.0, time.time()
    for step, batch_tasks, batch in batches():
        waited += time.time() - t_ready  # time the step loop spent waiting for batches
        progress = max(step / args.steps, (time.time() - t0) / args.seconds if args.seconds else 0.0)
        if progress >= 1:
            break
        batch = hf_io.normalize_pixels(pretrain_vision.to_device(batch, args.device))
        lr = lr_at(step, progress, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr * g["mult"]
        last = batched.forward(model, batched.forward_inputs(batch))
        h, tgt, rows = hf_io.answer_positions(last, batch["labels"])
        tok = vocab.loss(h, tgt)
        # Mean over samples of each sample's mean token loss, so long answers (boxes) do not drown short ones.
        per_row = torch.zeros(args.batch, device=tok.device).index_add_(0, rows, tok)
        counts = torch.zeros(args.batch, device=tok.device).index_add_(0, rows, torch.ones_like(tok))
        row_loss = per_row / counts
        vis_pen = vision_out.penalty()
        mergers = vision_out.take_mergers()
        heads_loss = torch.zeros((), device=args.device)
        if "aux_labels" in batch:
            terms, _ = heads.losses(mergers[0], batch)
            heads_loss = sum(terms.values())
        chars_loss = torch.zeros((), device=args.device)
        if args.lm_chars and "dense" in batch:
            chars_loss = lm_chars.loss(last, batch["input_ids"], batch["dense"]["char"], vocab)
        loss = row_loss.mean() + args.vision_l2 * vis_pen + args.aux * heads_loss + args.lm_chars * chars_loss
        pen_hist.append(vis_pen.detach())
        heads_hist.append(heads_loss.detach())
        chars_hist.append(chars_loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        done = step + 1
        for t, l in zip(batch_tasks, row_loss.detach().tolist()):
            acc_loss[t].append(l)
        if done % args.log_every == 0:
            per_task = " ".join(f"{t}={np.mean(acc_loss[t]):.3f}" for t in names if acc_loss[t])
            all_l = np.mean([v for t in names for v in acc_loss[t]])
            log_line(fh, f"step {done} t={time.time() - t0:.0f}s data_wait={waited / (time.time() - t0):.0%} "
                         f"lr={lr:.2e} loss={all_l:.4f} "
                         f"gnorm={float(gnorm):.2f} vision_ms={float(torch.stack(pen_hist).mean()):.3f} "
                         f"heads={float(torch.stack(heads_hist).mean()):.3f} "
                         f"lm_chars={float(torch.stack(chars_hist).mean()):.3f} {per_task}")
            acc_loss.clear()
            pen_hist.clear()
            heads_hist.clear()
            chars_hist.clear()
        t_ready = time.time()

    log_line(fh, f"trained {done} steps in {time.time() - t0:.0f}s")
    if args.out:
        vocab.export(model)
        save_demo(model, args.out)
        log_line(fh, f"saved BF16 model to {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
