"""Synthetic RGB inputs for the reference fixtures: seeded, with enough edges and gradients that
bicubic antialiased resizing, patch order and position interpolation all show up in the numbers."""

from pathlib import Path

import numpy as np
from PIL import Image


def synth_image(width: int, height: int, style: str, rng: np.random.Generator) -> np.ndarray:
    """HWC uint8 image."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    if style == "bands":
        # diagonal colour bands plus a hard-edged checker in one corner
        r = 127.5 + 120 * np.sin(2 * np.pi * (3 * u + 5 * v))
        g = 255 * v
        b = 127.5 + 120 * np.cos(2 * np.pi * 7 * u)
        img = np.stack([r, g, b], -1)
        checker = ((x // 6 + y // 6) % 2 == 0) & (u < 0.5) & (v < 0.3)
        img[checker] = [250, 250, 20]
    elif style == "blobs":
        img = np.stack([60 + 80 * u, 90 + 60 * v, 200 - 120 * u * v], -1)
        for _ in range(7):
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            rad = rng.uniform(0.08, 0.3) * min(width, height) + 2
            colour = rng.integers(0, 256, size=3)
            img[(x - cx) ** 2 + (y - cy) ** 2 < rad**2] = colour
    elif style == "noise":
        base = np.stack([255 * u, 255 * (1 - v), 128 + 0 * u], -1)
        img = base + rng.normal(0, 40, size=(height, width, 3))
    else:
        raise ValueError(f"unknown image style {style!r}")
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def synth_frame(width: int, height: int, k: int, n: int) -> np.ndarray:
    """Frame k of n: a bright square sliding left to right over a slowly shifting gradient."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    t = k / max(n - 1, 1)
    img = np.stack([40 + 150 * x / width, 200 * t + 0 * x, 80 + 100 * y / height], -1)
    side = max(4, min(width, height) // 2)
    x0 = int(t * (width - side))
    y0 = (height - side) // 2
    img[y0 : y0 + side, x0 : x0 + side] = [255, 240 - 200 * t, 30]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_png(path: Path, hwc: np.ndarray) -> None:
    Image.fromarray(hwc, mode="RGB").save(path, format="PNG", optimize=True)


def read_png(path: Path) -> np.ndarray:
    """Decoded PNG as HWC uint8: the reference is computed from what the file holds."""
    return np.array(Image.open(path).convert("RGB"))
