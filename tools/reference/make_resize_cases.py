"""Reference cases for the uint8 antialiased bicubic resize (test/fixtures/resize/).

Writes synthetic RGB inputs as PNG and, for each case, the expected output of
torchvision.transforms.v2.functional.resize(uint8 CHW, [h, w], BICUBIC, antialias=True) on CPU,
the call HF's Qwen2VL/Qwen3VL processors make. Where torchvision cannot be imported, the script
calls torch.nn.functional.interpolate(mode="bicubic", antialias=True, align_corners=False) on the
uint8 tensor directly, which is exactly what torchvision runs on CPU for uint8 bicubic input
(and --check confirms both agree where torchvision is present).

Usage:
  python tools/reference/make_resize_cases.py            # (re)write test/fixtures/resize/
  python tools/reference/make_resize_cases.py --check    # recompute and compare with the stored outputs
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

OUT_DIR = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "resize"

# name, input (width, height), output (width, height), pattern
CASES = [
    ("down_big", (1031, 777), (320, 224), "mixed"),
    ("down_extreme", (777, 1031), (9, 5), "mixed"),
    ("down_slight", (321, 224), (320, 224), "stripes"),
    ("up_odd", (97, 61), (448, 288), "mixed"),
    ("up_tiny", (13, 7), (29, 31), "noise"),
    ("width_only", (257, 190), (96, 190), "mixed"),
    ("height_only", (333, 251), (333, 128), "mixed"),
    ("strip_1px_wide", (1, 50), (7, 13), "noise"),
    ("strip_1px_tall", (640, 1), (32, 1), "noise"),
    ("wide_extreme", (2000, 33), (1000, 32), "stripes"),
    ("down_mixed_up", (500, 40), (35, 96), "mixed"),
    ("same_size", (64, 48), (64, 48), "noise"),
]


def make_input(width: int, height: int, pattern: str, seed: int) -> np.ndarray:
    """Deterministic HWC uint8 content with hard edges (to hit clamping) and fine detail (aliasing)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    if pattern == "noise":
        return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if pattern == "stripes":
        r = ((x // 1) % 2) * 255
        g = ((x // 3 + y // 2) % 2) * 255
        b = (x * 7 + y * 3) % 256
        return np.stack([r, g, b], axis=-1).astype(np.uint8)
    # mixed: gradients, a checkerboard, a hard-edged disc, and a noisy block
    r = (x * 255 // max(width - 1, 1)).astype(np.int64)
    g = (((x // 4) + (y // 4)) % 2) * 255
    b = (y * 255 // max(height - 1, 1)).astype(np.int64)
    img = np.stack([r, g, b], axis=-1)
    cy, cx, rad = height / 2, width / 3, min(width, height) / 4
    disc = (y - cy) ** 2 + (x - cx) ** 2 < rad**2
    img[disc] = [255, 0, 255]
    bh, bw = min(24, height), min(24, width)
    img[:bh, width - bw :] = rng.integers(0, 256, size=(bh, bw, 3))
    return img.astype(np.uint8)


def reference_resize(img: np.ndarray, out_w: int, out_h: int, use_torchvision: bool) -> np.ndarray:
    chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    if use_torchvision:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as tvF

        out = tvF.resize(chw, [out_h, out_w], interpolation=InterpolationMode.BICUBIC, antialias=True)
    else:
        if (out_h, out_w) == tuple(chw.shape[-2:]):
            out = chw  # torchvision returns the input unchanged for a same-size resize
        else:
            out = torch.nn.functional.interpolate(
                chw[None], size=[out_h, out_w], mode="bicubic", align_corners=False, antialias=True
            )[0]
    assert out.dtype == torch.uint8
    return out.permute(1, 2, 0).contiguous().numpy()


def torchvision_available() -> bool:
    try:
        from torchvision.transforms.v2 import functional  # noqa: F401

        return True
    except Exception:
        return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="compare against the stored outputs instead of writing")
    args = ap.parse_args()
    use_tv = torchvision_available()
    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"using {'torchvision' if use_tv else 'torch.nn.functional.interpolate'}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    manifest = []
    failures = 0
    for i, (name, (w, h), (ow, oh), pattern) in enumerate(CASES):
        src_path = OUT_DIR / f"{name}_in.png"
        exp_path = OUT_DIR / f"{name}_out.png"
        if args.check:
            img = np.array(Image.open(src_path).convert("RGB"))
        else:
            img = make_input(w, h, pattern, seed=1000 + i)
        out = reference_resize(img, ow, oh, use_tv)
        if args.check:
            expected = np.array(Image.open(exp_path).convert("RGB"))
            same = expected.shape == out.shape and np.array_equal(expected, out)
            failures += 0 if same else 1
            print(f"{name}: {'OK' if same else 'MISMATCH'}")
        else:
            Image.fromarray(img).save(src_path, optimize=True)
            Image.fromarray(out).save(exp_path, optimize=True)
        manifest.append(
            {
                "name": name,
                "input": src_path.name,
                "input_wh": [w, h],
                "output": exp_path.name,
                "output_wh": [ow, oh],
                "output_sha256": hashlib.sha256(out.tobytes()).hexdigest(),
            }
        )
    if not args.check:
        meta = {
            "what": "torchvision resize(uint8, BICUBIC, antialias=True) on CPU; inputs and outputs are RGB PNG (HWC)",
            "torch": torch.__version__,
            "via": "torchvision" if use_tv else "torch.nn.functional.interpolate (the op torchvision calls on CPU for uint8)",
            "cases": manifest,
        }
        (OUT_DIR / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(f"wrote {len(manifest)} cases to {OUT_DIR}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
