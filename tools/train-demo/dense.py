"""Per-token training targets for the vision tower, from the generator's instance masks.

An image-level label (one shape name per picture) gives a from-scratch ViT one weak signal per picture,
and nothing local to learn from. The generator knows which pixels each shape covers, so every merger
token (a 32x32-pixel cell of the resized picture, in HF's row-major order) can get its own targets: the
shape and colour of the instance that covers most of it, that instance's box, and whether the
instance's centre lies in it; in a drawn text, the character over it and that character's place. These train only the vision tower, through small heads that are not saved.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import tasks

COVER = 0.25  # a token belongs to the instance covering at least this fraction of it
CHAR_COVER = 0.15  # characters are narrower than a token in small pictures


def _cells(n_px: int, n_cells: int) -> np.ndarray:
    """Cell boundaries in original pixels (the processor stretches the picture uniformly onto the grid)."""
    return np.round(np.linspace(0, n_px, n_cells + 1)).astype(int)


def token_targets(labels: dict, th: int, tw: int) -> dict[str, np.ndarray]:
    """Targets for a th x tw grid of merger tokens; all arrays are row-major over the grid.

    shape, colour: class index, -1 for background (no instance covers COVER of the token);
    box: the covering instance's box (x1, y1, x2, y2) on the 0-1 scale, valid where shape >= 0;
    centre: 1 where an instance's box centre falls in the token."""
    n = th * tw
    out = {
        "shape": np.full(n, -1, np.int64),
        "colour": np.full(n, -1, np.int64),
        "box": np.zeros((n, 4), np.float32),
        "centre": np.zeros(n, np.float32),
        "char": np.full(n, -1, np.int64),
        "char_pos": np.full(n, -1, np.int64),
    }
    if labels.get("chars") is not None:
        _char_targets(out, labels["text"], np.asarray(labels["chars"]), th, tw)
    mask = labels.get("mask")
    objects = labels.get("objects")
    if mask is None or not objects:
        return out
    m = np.asarray(mask)
    h, w = m.shape
    ys, xs = _cells(h, th), _cells(w, tw)
    best = np.zeros(n, np.float32)
    for k, obj in enumerate(objects):
        frac = _cell_fractions(m == k + 1, ys, xs)
        take = (frac >= COVER) & (frac > best)
        best[take] = frac[take]
        out["shape"][take] = tasks.SHAPES.index(obj["shape"])
        out["colour"][take] = tasks.COLOUR_NAMES.index(obj["colour"])
        x1, y1, x2, y2 = obj["box"]
        out["box"][take] = [x1 / w, y1 / h, x2 / w, y2 / h]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        r = min(th - 1, int(np.searchsorted(ys, cy, side="right") - 1))
        col = min(tw - 1, int(np.searchsorted(xs, cx, side="right") - 1))
        out["centre"][r * tw + col] = 1.0
    return out


def _cell_fractions(hit: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Fraction of each grid cell that `hit` covers, row-major (2-D prefix sums)."""
    c = np.pad(hit.astype(np.float32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    area = c[ys[1:], :][:, xs[1:]] - c[ys[:-1], :][:, xs[1:]] - c[ys[1:], :][:, xs[:-1]] + c[ys[:-1], :][:, xs[:-1]]
    cell = np.outer(np.diff(ys), np.diff(xs)).astype(np.float32)
    return (area / np.maximum(cell, 1)).reshape(-1)


def _char_targets(out: dict, text: str, cells: np.ndarray, th: int, tw: int) -> None:
    """char, char_pos: the character (index in TEXT_CHARS) whose advance cell covers most of each token,
    and its place in the text; -1 where none covers CHAR_COVER of it."""
    h, w = cells.shape
    ys, xs = _cells(h, th), _cells(w, tw)
    best = np.zeros(th * tw, np.float32)
    for k, ch in enumerate(text):
        frac = _cell_fractions(cells == k + 1, ys, xs)
        take = (frac >= CHAR_COVER) & (frac > best)
        best[take] = frac[take]
        out["char"][take] = tasks.TEXT_CHARS.index(ch)
        out["char_pos"][take] = k


def batch_targets(labels: list[dict], grid_thw: torch.Tensor, merge: int = 2) -> dict[str, torch.Tensor]:
    """token_targets for each picture of a processor batch (images in processor order), concatenated."""
    parts = [token_targets(lab, int(g[1]) // merge, int(g[2]) // merge) for lab, g in zip(labels, grid_thw)]
    return {k: torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in parts[0]}


class DenseHeads(torch.nn.Module):
    """Training-only heads on each merger token: shape, colour, box, centre, character and its place."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.shape = torch.nn.Linear(dim, len(tasks.SHAPES) + 1)
        self.colour = torch.nn.Linear(dim, len(tasks.COLOUR_NAMES) + 1)
        self.box = torch.nn.Linear(dim, 4)
        self.centre = torch.nn.Linear(dim, 1)
        self.char = torch.nn.Linear(dim, len(tasks.TEXT_CHARS) + 1)
        self.char_pos = torch.nn.Linear(dim, tasks.TEXT_SLOTS + 1)

    def losses(self, tokens: torch.Tensor, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.norm(tokens)
        bg_shape = torch.where(t["shape"] < 0, len(tasks.SHAPES), t["shape"])
        bg_colour = torch.where(t["colour"] < 0, len(tasks.COLOUR_NAMES), t["colour"])
        out = {
            "shape": torch.nn.functional.cross_entropy(self.shape(x), bg_shape),
            "colour": torch.nn.functional.cross_entropy(self.colour(x), bg_colour),
            "centre": torch.nn.functional.binary_cross_entropy_with_logits(self.centre(x).squeeze(1), t["centre"]),
            "char": torch.nn.functional.cross_entropy(
                self.char(x), torch.where(t["char"] < 0, len(tasks.TEXT_CHARS), t["char"])),
            "char_pos": torch.nn.functional.cross_entropy(
                self.char_pos(x), torch.where(t["char_pos"] < 0, tasks.TEXT_SLOTS, t["char_pos"])),
        }
        fg = t["shape"] >= 0
        if bool(fg.any()):
            out["box"] = torch.nn.functional.smooth_l1_loss(torch.sigmoid(self.box(x[fg])), t["box"][fg], beta=0.05) * 10
        return out
