"""Reference data for the processor beyond test/fixtures/tiny (written to test/fixtures/processor/cases.json).

Everything is computed by HF transformers' own code (Qwen2VLImageProcessor = the torchvision backend
that `Qwen2VLImageProcessorFast` resolves to, Qwen3VLVideoProcessor, Qwen3VLProcessor._calculate_timestamps,
the smart_resize functions) with the Qwen3-VL configs in test/fixtures/tiny:
  - smart_resize of many sizes (image and video variants),
  - frame sampling indices for many (frame count, source fps, options),
  - Python "{:.1f}" of many floats,
  - full image / video preprocessing of synthetic inputs: grid, resized size, sampled indices,
    timestamps and the SHA-256 of pixel_values (float32, little-endian).

Synthetic video frames come from a formula (`synth_frame`) that the tests reproduce, so no frames are
stored; images are PNGs already in test/fixtures/resize.

Usage:
  python tools/reference/make_processor_cases.py           # (re)write test/fixtures/processor/cases.json
  python tools/reference/make_processor_cases.py --check   # recompute and compare with the stored file
"""

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as image_smart_resize
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize as video_smart_resize
from transformers.video_utils import VideoMetadata

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "fixtures" / "tiny"
RESIZE = ROOT / "test" / "fixtures" / "resize"
OUT = ROOT / "test" / "fixtures" / "processor" / "cases.json"


def synth_frame(width: int, height: int, k: int) -> np.ndarray:
    """HWC uint8 frame k of a synthetic clip (mirrored in test/helpers/processor-fixtures.ts)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    chans = [((x * 37 + y * 91 + k * 53 + c * 17) ^ ((x * y) >> 3) ^ (k * 29 * c)) & 255 for c in range(3)]
    return np.stack(chans, axis=-1).astype(np.uint8)


def sha(t: torch.Tensor) -> str:
    assert t.dtype == torch.float32
    return hashlib.sha256(t.contiguous().numpy().astype("<f4").tobytes()).hexdigest()


def smart_resize_cases(rng: random.Random) -> dict:
    sizes = [(1280, 720), (336, 272), (100, 37), (96, 64), (32, 32), (33, 6600), (32, 6400), (6401, 32), (4096, 4096),
             (4097, 4096), (8000, 6000), (20000, 100), (48, 80), (1, 1), (31, 500), (720, 1280)]
    for _ in range(150):
        sizes.append((rng.randint(32, 9000), rng.randint(32, 9000)))
    image = []
    for w, h in sizes:
        for mn, mx in [(65536, 16777216), (4096, 1003520), (200000, 300000)]:
            try:
                rh, rw = image_smart_resize(h, w, factor=32, min_pixels=mn, max_pixels=mx)
                image.append({"wh": [w, h], "min": mn, "max": mx, "out_wh": [rw, rh]})
            except ValueError as e:
                image.append({"wh": [w, h], "min": mn, "max": mx, "error": str(e)})
    video = []
    vsizes = sizes[:16] + [(20, 50), (112, 20), (3, 7), (10, 31), (31, 31), (1, 40)]
    for _ in range(60):
        vsizes.append((rng.randint(8, 3000), rng.randint(8, 3000)))
    for w, h in vsizes:
        for n in [2, 3, 4, 5, 7, 8, 20, 61, 768]:
            for mn, mx in [(4096, 25165824), (4096, 1000000)]:
                try:
                    rh, rw = video_smart_resize(n, h, w, temporal_factor=2, factor=32, min_pixels=mn, max_pixels=mx)
                    video.append({"n": n, "wh": [w, h], "min": mn, "max": mx, "out_wh": [rw, rh]})
                except ValueError as e:
                    video.append({"n": n, "wh": [w, h], "min": mn, "max": mx, "error": str(e)})
    return {"image": image, "video": video}


def sampling_cases() -> list:
    vp = Qwen3VLVideoProcessor(**json.loads((TINY / "video_preprocessor_config.json").read_text()))
    out = []
    totals = [1, 2, 3, 4, 5, 7, 8, 10, 30, 31, 97, 100, 299, 300, 1001, 4000, 100000]
    rates = [1.0, 2.0, 4.0, 23.976, 24.0, 25.0, 29.97, 30.0, 60.0, None]
    for total in totals:
        for fps in rates:
            meta = VideoMetadata(total_num_frames=total, fps=fps)
            idx = [int(i) for i in vp.sample_frames(meta)]
            out.append({"total": total, "fps": fps, "indices": idx})
    for total, fps, target in [(300, 30.0, 1.0), (300, 30.0, 0.5), (300, 30.0, 4.0), (1000, 25.0, 3.3)]:
        meta = VideoMetadata(total_num_frames=total, fps=fps)
        out.append({"total": total, "fps": fps, "target_fps": target, "indices": [int(i) for i in vp.sample_frames(meta, fps=target)]})
    for total, num in [(20, 6), (8, 8), (5, 9), (1000, 7)]:
        meta = VideoMetadata(total_num_frames=total, fps=30.0)
        out.append({"total": total, "fps": 30.0, "num_frames": num, "indices": [int(i) for i in vp.sample_frames(meta, num_frames=num)]})
    return out


def format_cases(rng: random.Random) -> list:
    values = [0.0, -0.0, 0.05, 0.15, 0.25, 0.35, 0.45, 0.75, 1.25, 2.675, 3.25, 9.95, 99.95, 1e-7, 123456.75, -0.25, -1.35]
    values += [k / 8 for k in range(0, 40)] + [k / 20 for k in range(0, 60)] + [k / 30 for k in range(0, 60)]
    values += [(a / 29.97 + b / 29.97) / 2 for a, b in [(0, 15), (16, 31), (283, 299), (1, 2)]]
    values += [rng.uniform(0, 500) for _ in range(100)]
    return [{"value": v, "text": f"{v:.1f}"} for v in values]


def image_cases() -> list:
    ip = Qwen2VLImageProcessor(**json.loads((TINY / "preprocessor_config.json").read_text()))
    specs = [
        ("down_big_in.png", {}),
        ("down_big_in.png", {"max_pixels": 200000}),
        ("up_odd_in.png", {"min_pixels": 300000}),
        ("same_size_in.png", {}),
        ("down_slight_out.png", {}),  # 320x224: already a valid size, no resize
        ("wide_extreme_in.png", {}),
    ]
    out = []
    for name, opts in specs:
        img = np.array(Image.open(RESIZE / name).convert("RGB"))
        kwargs = dict(opts)
        if "min_pixels" in opts or "max_pixels" in opts:
            kwargs = {"size": {"shortest_edge": opts.get("min_pixels", ip.size["shortest_edge"]),
                               "longest_edge": opts.get("max_pixels", ip.size["longest_edge"])}}
        res = ip(images=[img], return_tensors="pt", **kwargs)
        grid = [int(v) for v in res["image_grid_thw"][0]]
        out.append({
            "image": name,
            "wh": [img.shape[1], img.shape[0]],
            "options": opts,
            "grid": grid,
            "resized_wh": [grid[2] * 16, grid[1] * 16],
            "pixel_values_shape": list(res["pixel_values"].shape),
            "pixel_values_sha256": sha(res["pixel_values"]),
        })
    return out


def video_cases() -> list:
    cfg = json.loads((TINY / "video_preprocessor_config.json").read_text())
    vp = Qwen3VLVideoProcessor(**cfg)
    specs = [
        # name, frames, w, h, fps, processor kwargs, our options
        ("odd_no_sampling", 5, 112, 80, 2.0, {"do_sample_frames": False}, {"sample": False}),
        ("sample_30fps", 30, 64, 48, 30.0, {}, {}),
        ("small_frames", 6, 20, 50, 1.0, {}, {}),
        ("budget_max", 8, 640, 480, 2.0, {"size": {"shortest_edge": 4096, "longest_edge": 1000000}}, {"maxPixels": 1000000}),
        ("cap_per_frame", 4, 1280, 960, 2.0, {"cap_pixels_per_frame": True}, {"capPixelsPerFrame": True}),
        ("num_frames", 20, 96, 64, 10.0, {"num_frames": 6, "fps": None}, {"numFrames": 6}),
        ("fps_missing", 50, 64, 64, None, {}, {}),
        ("target_fps", 12, 64, 96, 4.0, {"fps": 1}, {"fps": 1}),
    ]
    out = []
    for name, n, w, h, fps, kwargs, ours in specs:
        frames = np.stack([synth_frame(w, h, k) for k in range(n)])
        meta = {"total_num_frames": n, "fps": fps, "duration": None if fps is None else n / fps,
                "frames_indices": list(range(n)), "height": h, "width": w}
        kw = {"cap_pixels_per_frame": False, **kwargs}
        res = vp(videos=[frames], video_metadata=[meta], return_metadata=True, return_tensors="pt", **kw)
        md = res["video_metadata"][0]
        indices = [int(i) for i in md.frames_indices]
        ts = Qwen3VLProcessor._calculate_timestamps(None, list(indices), md.fps, 2)
        grid = [int(v) for v in res["video_grid_thw"][0]]
        out.append({
            "name": name,
            "frames": n,
            "wh": [w, h],
            "fps": fps,
            "hf_kwargs": kwargs,
            "options": ours,
            "sampled_indices": indices,
            "timestamps": ts,
            "timestamp_texts": [f"<{t:.1f} seconds>" for t in ts],
            "grid": grid,
            "resized_wh": [grid[2] * 16, grid[1] * 16],
            "pixel_values_shape": list(res["pixel_values_videos"].shape),
            "pixel_values_sha256": sha(res["pixel_values_videos"]),
        })
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="compare against the stored cases instead of writing")
    args = ap.parse_args()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")
    rng = random.Random(20250101)
    data = {
        "what": "HF transformers reference values for the processor tests; see tools/reference/make_processor_cases.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "smart_resize": smart_resize_cases(rng),
        "sampling": sampling_cases(),
        "format_1f": format_cases(rng),
        "images": image_cases(),
        "videos": video_cases(),
    }
    if args.check:
        stored = json.loads(OUT.read_text())
        fresh = json.loads(json.dumps(data))
        bad = [k for k in ("smart_resize", "sampling", "format_1f", "images", "videos") if stored[k] != fresh[k]]
        for k in bad:
            print(f"{k}: MISMATCH")
        print("all sections match" if not bad else f"{len(bad)} section(s) differ")
        return 1 if bad else 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
