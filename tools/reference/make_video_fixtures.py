"""Writes small test videos under test/fixtures/media/ and the frames PyAV decodes from them.

PyAV is what transformers' video loader uses (`read_video_pyav`): frames as stored, converted with
`frame.to_ndarray(format="rgb24")`, fps = the stream's `average_rate`, frame count = `stream.frames`.
For each clip this records the sampled indices of HF's rule (fps 2, min 4, max 768) and those
frames as raw RGB (`<clip>.pyav.rgb`), plus the facts in `video_reference.json`.
Needs ffmpeg on PATH and Python with PyAV and NumPy:  python tools/reference/make_video_fixtures.py
"""
import json
import os
import subprocess
import sys

import av
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "media")


def make(name, args):
    path = os.path.join(OUT, name)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=2.5", *args, path], check=True)
    return path


def hf_indices(total, fps, target=2.0, min_frames=4, max_frames=768):
    n = int(total / fps * target)
    n = min(max(n, min_frames), max_frames, total)
    return np.round(np.linspace(0, total - 1, n)).astype(int).tolist()


def main():
    clips = {
        "clip_h264.mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "20", "-g", "10", "-bf", "2"],
        "clip_vp9.webm": ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "200k", "-deadline", "realtime"],
    }
    ref = {"pyav": av.__version__, "clips": {}}
    for name, args in clips.items():
        path = make(name, args)
        with av.open(path) as c:
            s = c.streams.video[0]
            fps = float(s.average_rate)
            stream_frames = s.frames
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        total = stream_frames if stream_frames > 0 else len(frames)
        idx = hf_indices(total, fps)
        np.stack([frames[i] for i in idx]).tofile(path + ".pyav.rgb")
        h, w, _ = frames[0].shape
        ref["clips"][name] = {
            "fps": fps,
            "stream_frames": stream_frames,
            "decoded_frames": len(frames),
            "width": w,
            "height": h,
            "indices": idx,
            "rgb": name + ".pyav.rgb",
        }
    with open(os.path.join(OUT, "video_reference.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(ref, indent=1, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
