"""HF reference values for the per-frame pixel cap and for long videos (test/fixtures/processor/video-cap/).

transformers 5.18 adds `cap_pixels_per_frame` to Qwen3VLVideoProcessor (off unless asked for; 5.22 is
announced to make it the default) and `max_video_tokens` (768). With the cap, `resize` gives each of the
n sampled frames at most min(max_video_tokens * factor**2, size.longest_edge // n) pixels, at least
int(size.shortest_edge * 1.05), and runs smart_resize with max_pixels = that * n.

Writes `cases.json` with, for each case and for cap off / on:
  - "full" cases: HF's whole video processor on synthetic frames (`synth_frame`, reproduced by the tests):
    sampled indices, timestamps, grid, resized size, SHA-256 of pixel_values_videos, and for one small
    case pixel_values_videos itself (`<name>.cap.f32`, float32 little-endian);
  - "plan" cases (long videos, hundreds of frames, frame sizes up to 1080p): HF's own sample_frames on
    metadata only (no frames decoded), and HF's own `resize` run on a zero-stride tensor of the right
    shape with the final pixel resize stubbed out, so only its size arithmetic runs; token counts are
    cross-checked with `get_num_of_video_patches`;
  - "long_sampling": frame indices, timestamps and "<t seconds>" texts of hour-long videos from metadata
    (sample_frames + Qwen3VLProcessor._calculate_timestamps), at several source rates, target rates and
    max_frames.

Needs Python with torch, torchvision, transformers 5.18.0, numpy:
  python tools/reference/make_video_cap_fixtures.py           # (re)write the fixtures
  python tools/reference/make_video_cap_fixtures.py --check   # recompute and compare with the stored ones
"""

import argparse
import hashlib
import json
import math
import sys
import types
from fractions import Fraction
from pathlib import Path

# The torchvision wheel of the local mirror is a CUDA build whose C ops do not load on this machine, and
# its import fails registering fake kernels for them. Only its pure-Python transforms are used here
# (resize of CPU tensors), so skip those registrations; a working torchvision loses nothing by it.
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import numpy as np
import torch
import transformers
from transformers.image_utils import SizeDict
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.video_utils import VideoMetadata

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "fixtures" / "tiny"
OUT = ROOT / "test" / "fixtures" / "processor" / "video-cap"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_processor_cases import synth_frame  # noqa: E402  (mirrored in test/helpers/processor-fixtures.ts)


def sha(t: torch.Tensor) -> str:
    assert t.dtype == torch.float32
    return hashlib.sha256(t.contiguous().numpy().astype("<f4").tobytes()).hexdigest()


def base_config() -> dict:
    return json.loads((TINY / "video_preprocessor_config.json").read_text())


def timestamps(indices: list, fps: float) -> list:
    return Qwen3VLProcessor._calculate_timestamps(None, list(indices), fps, 2)


def texts(ts: list) -> list:
    return [f"<{t:.1f} seconds>" for t in ts]


# name, frames, w, h, source fps, config additions (the checkpoint file), per-call HF kwargs, qvl options,
# store pixel values of the capped run
FULL = [
    # 4 frames of 1280x720: the 768-token (786,432 px) frame cap binds; without it each frame keeps 1280x704
    ("short_hd", 4, 1280, 720, 2.0, {}, {}, {}, False),
    # max_video_tokens from the config file (4 tokens = 4096 px per frame): a small capped output
    ("config_tokens", 4, 160, 120, 2.0, {"max_video_tokens": 4}, {}, {}, True),
    # 3 frames: t_bar = round(3 / 2) * 2 = 4 exceeds n, while the budget is n * per-frame
    ("odd_three", 3, 1100, 800, 2.0, {}, {}, {}, False),
    # 30 frames at 7.5 fps sampled to 8, a 32-token frame cap from the config
    ("sampled_tokens", 30, 320, 240, 7.5, {"max_video_tokens": 32}, {}, {}, False),
    # the cap's floor: longest_edge // 10 < int(1.05 * shortest_edge) raises the budget above longest_edge
    ("floor_raises", 10, 96, 64, 2.0, {}, {"size": {"shortest_edge": 4096, "longest_edge": 20000}}, {"maxPixels": 20000}, False),
]

# name, total frames, source fps, w, h, per-call HF size, qvl options, target fps, whether the cap changes the size
PLAN = [
    # one hour at 25 fps, 1080p: 768 frames; 25,165,824 // 768 = 32,768 exactly, so the cap changes nothing
    ("hour_1080p", 90000, 25.0, 1920, 1080, None, {}, 2.0, False),
    # an hour at 23.976 fps, 1280x720, fps 0.5: 768 frames, no change either
    ("hour_720p", 86314, 24000 / 1001, 1280, 720, None, {"fps": 0.5}, 0.5, False),
    # 767 frames (odd): t_bar = 768 and 768 * 256 * 128 = 25,165,824 fits the plain budget, but not the capped
    # 767 * (25,165,824 // 767) = 25,165,270; beta (from 767 * 130 * 256) > 1 then shrinks the width
    ("frames_767", 767, 2.0, 256, 130, None, {}, 2.0, True),
    # an hour of 320x240 with a 2,000,000-pixel budget: the floor (int(4096 * 1.05) = 4300 px a frame)
    # lifts the budget to 768 * 4300 = 3,302,400
    ("hour_small_budget", 90000, 25.0, 320, 240, {"shortest_edge": 4096, "longest_edge": 2000000}, {"maxPixels": 2000000}, 2.0, True),
    # 10 minutes of 4K at 29.97 fps, fps 0.05: 29 frames, so the 768-token frame cap binds
    ("ten_min_4k_sparse", 17982, 30000 / 1001, 3840, 2160, None, {"fps": 0.05}, 0.05, True),
]

# name, total frames, source fps as a fraction (PyAV's average_rate), target fps, max_frames (processor config)
LONG = [
    ("hour_25fps_fps2", 90000, Fraction(25), 2.0, 768),
    ("hour_25fps_fps0.5", 90000, Fraction(25), 0.5, 768),
    ("hour_25fps_fps0.5_max2048", 90000, Fraction(25), 0.5, 2048),
    ("hour_29.97fps_fps2", 107892, Fraction(30000, 1001), 2.0, 768),
    ("hour_23.976fps_fps1", 86314, Fraction(24000, 1001), 1.0, 768),
    ("hour_60fps_fps2", 216000, Fraction(60), 2.0, 768),
    ("three_hours_25fps_fps2", 270000, Fraction(25), 2.0, 768),
    # the media test's file: 20 minutes of 25 fps
    ("twenty_min_25fps_fps2", 30000, Fraction(25), 2.0, 768),
    ("twenty_min_25fps_fps0.05", 30000, Fraction(25), 0.05, 768),
]


def full_cases(store: dict) -> list:
    out = []
    for name, n, w, h, fps, cfg_extra, kwargs, ours, keep_pixels in FULL:
        vp = Qwen3VLVideoProcessor(**{**base_config(), **cfg_extra})
        frames = np.stack([synth_frame(w, h, k) for k in range(n)])
        meta = {"total_num_frames": n, "fps": fps, "duration": n / fps, "frames_indices": list(range(n)), "height": h, "width": w}
        entry = {"name": name, "frames": n, "wh": [w, h], "fps": fps, "config": cfg_extra, "hf_kwargs": kwargs, "options": ours, "runs": {}}
        for cap in (False, True):
            res = vp(videos=[frames], video_metadata=[meta], return_metadata=True, return_tensors="pt", cap_pixels_per_frame=cap, **kwargs)
            md = res["video_metadata"][0]
            indices = [int(i) for i in md.frames_indices]
            ts = timestamps(indices, md.fps)
            grid = [int(v) for v in res["video_grid_thw"][0]]
            pv = res["pixel_values_videos"]
            run = {
                "sampled_indices": indices,
                "timestamps": ts,
                "timestamp_texts": texts(ts),
                "grid": grid,
                "resized_wh": [grid[2] * 16, grid[1] * 16],
                "pixel_values_shape": list(pv.shape),
                "pixel_values_sha256": sha(pv),
            }
            if cap and keep_pixels:
                run["pixel_values_file"] = f"{name}.cap.f32"
                store[run["pixel_values_file"]] = pv.contiguous().numpy().astype("<f4").tobytes()
            entry["runs"]["cap" if cap else "nocap"] = run
        assert entry["runs"]["cap"]["grid"] != entry["runs"]["nocap"]["grid"], f"{name}: the cap should change the size"
        out.append(entry)
    return out


class SizeOnly(Exception):
    pass


def hf_resized_size(vp: Qwen3VLVideoProcessor, n: int, w: int, h: int, size: dict, cap: bool) -> tuple:
    """Runs Qwen3VLVideoProcessor.resize on a zero-stride n-frame tensor; the parent's pixel resize is
    replaced by a stub that reports the target size, so only HF's own size arithmetic runs."""
    parent = next(c for c in type(vp).__mro__[1:] if "resize" in c.__dict__)
    seen = {}
    original = parent.resize

    def stub(self, image, size, resample=None, **kw):
        seen["hw"] = (size.height, size.width)
        raise SizeOnly()

    parent.resize = stub
    try:
        videos = torch.zeros(1, 1, 3, 1, 1, dtype=torch.uint8).expand(1, n, 3, h, w)
        try:
            vp.resize(videos=videos, size=SizeDict(**size), resample=vp.resample, factor=vp.patch_size * vp.merge_size,
                      temporal_factor=vp.temporal_patch_size, cap_pixels_per_frame=cap)
        except SizeOnly:
            pass
    finally:
        parent.resize = original
    return seen["hw"]


def plan_cases() -> list:
    out = []
    for name, total, fps, w, h, size, ours, target, changes in PLAN:
        vp = Qwen3VLVideoProcessor(**base_config())
        size = size or dict(vp.size)
        indices = [int(i) for i in vp.sample_frames(VideoMetadata(total_num_frames=total, fps=fps), fps=target)]
        n = len(indices)
        ts = timestamps(indices, fps)
        entry = {"name": name, "total_frames": total, "fps": fps, "wh": [w, h], "size": size, "target_fps": target, "options": ours,
                 "sampled_indices": indices, "timestamps": ts, "timestamp_texts": texts(ts), "runs": {}}
        for cap in (False, True):
            rh, rw = hf_resized_size(vp, n, w, h, size, cap)
            grid = [math.ceil(n / vp.temporal_patch_size), rh // vp.patch_size, rw // vp.patch_size]
            kw = {"size": size, **({"cap_pixels_per_frame": True} if cap else {})}
            assert vp.get_num_of_video_patches(n, h, w, kw) == grid[0] * grid[1] * grid[2], name
            entry["runs"]["cap" if cap else "nocap"] = {"grid": grid, "resized_wh": [rw, rh], "tokens": grid[0] * grid[1] * grid[2] // 4}
        assert (entry["runs"]["cap"]["grid"] != entry["runs"]["nocap"]["grid"]) == changes, name
        out.append(entry)
    return out


def long_sampling() -> list:
    out = []
    for name, total, rate, target, max_frames in LONG:
        vp = Qwen3VLVideoProcessor(**{**base_config(), "max_frames": max_frames})
        fps = float(rate)  # what PyAV's float(stream.average_rate) gives
        indices = [int(i) for i in vp.sample_frames(VideoMetadata(total_num_frames=total, fps=fps), fps=target)]
        ts = timestamps(indices, fps)
        out.append({"name": name, "total_frames": total, "fps": fps, "fps_fraction": [rate.numerator, rate.denominator],
                    "target_fps": target, "max_frames": max_frames, "sampled_indices": indices, "timestamps": ts,
                    "timestamp_texts": texts(ts)})
    return out


def build() -> tuple:
    store = {}
    data = {
        "what": "HF reference values for cap_pixels_per_frame and long videos; see tools/reference/make_video_cap_fixtures.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "config": base_config(),
        "full": full_cases(store),
        "plan": plan_cases(),
        "long_sampling": long_sampling(),
    }
    return data, store


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="compare against the stored fixtures instead of writing")
    args = ap.parse_args()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    data, store = build()
    if args.check:
        stored = json.loads((OUT / "cases.json").read_text())
        fresh = json.loads(json.dumps(data))
        bad = [k for k in ("full", "plan", "long_sampling") if stored[k] != fresh[k]]
        bad += [f for f, b in store.items() if (OUT / f).read_bytes() != b]
        print("all match" if not bad else f"differ: {bad}")
        return 1 if bad else 0
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cases.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")
    for f, b in store.items():
        (OUT / f).write_bytes(b)
    for p in sorted(OUT.iterdir()):
        print(f"wrote {p.relative_to(ROOT)} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
