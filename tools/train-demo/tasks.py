"""Synthetic vision tasks for the demo model: pictures drawn with Pillow, a question, the answer.

Every sample is a dict:
  task      one of TASKS
  images    list of PIL RGB images (image tasks) or []
  video     None or {"frames": [PIL RGB], "fps": float}
  question  the user text
  answer    the assistant text the model is trained to produce
  boxes     grounding only: [[x1, y1, x2, y2]] on the 0-1000 relative scale
  labels    per picture, what is known of it: {"shape", "colour", "count"} (any subset)
All randomness comes from the numpy Generator passed in, so a seed fixes the data.
"""
from __future__ import annotations

import json
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TASKS = ["colour", "shape", "count", "ocr", "grounding", "two_images", "video_time"]

SHAPES = ["circle", "square", "triangle", "star", "cross"]
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 165, 60),
    "blue": (40, 75, 215),
    "yellow": (240, 215, 40),
    "purple": (140, 55, 185),
    "orange": (245, 135, 25),
}
COLOUR_NAMES = list(COLOURS)
WORDS = [
    "CAT", "DOG", "SUN", "MOON", "STAR", "TREE", "FISH", "BIRD", "BOOK", "DOOR",
    "STOP", "OPEN", "EXIT", "HELLO", "RIVER", "APPLE", "HOUSE", "TRAIN", "PLANT", "CLOUD",
    "NODE", "DATA", "CODE", "BLUE", "GOLD", "ROAD", "SHIP", "LAMP", "ZERO", "WIND",
]

# Every character a drawn text can hold (WORDS and decimal numbers).
TEXT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TEXT_SLOTS = 5  # the longest word or number make_ocr draws

QUESTIONS = {
    "colour": "What colour is the shape?",
    "shape": "What shape is it?",
    "count": "How many shapes are there?",
    "ocr": "Read the text in the image.",
    "two_images": "Which image has more shapes?",
}


def grounding_question(colour: str, shape: str) -> str:
    return f"Where is the {colour} {shape}? Answer with bbox_2d."


def video_question(shape: str) -> str:
    return f"At what time does the {shape} appear?"


def grounding_answer(box: list[int], label: str) -> str:
    # The layout Qwen3-VL uses for grounding: a fenced JSON list, one object per line, tab-indented.
    obj = json.dumps({"bbox_2d": box, "label": label})
    return "```json\n[\n\t" + obj + "\n]\n```"


def format_seconds(t: float) -> str:
    # Python's "{:.1f}" (round-half-even on the exact double), exactly what the HF processor writes.
    return f"{t:.1f}"


# ---------------------------------------------------------------- drawing


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Neutral (low-saturation) backgrounds: flat, gradient, or noisy, light or dark."""
    def neutral() -> np.ndarray:
        g = rng.uniform(0, 255)
        tint = rng.uniform(-18, 18, size=3)
        return np.clip(g + tint, 0, 255)

    kind = rng.choice(["flat", "gradient", "noise"], p=[0.45, 0.3, 0.25])
    a = neutral()
    if kind == "gradient":
        b = neutral()
        if rng.random() < 0.5:
            ramp = np.linspace(0, 1, w)[None, :, None].repeat(h, 0)
        else:
            ramp = np.linspace(0, 1, h)[:, None, None].repeat(w, 1)
        arr = a * (1 - ramp) + b * ramp
    else:
        arr = np.broadcast_to(a, (h, w, 3)).astype(np.float64)
    if kind == "noise":
        arr = arr + rng.normal(0, rng.uniform(4, 14), size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _shape_colour(rng: np.random.Generator, name: str) -> tuple[int, int, int]:
    base = np.array(COLOURS[name], dtype=np.float64)
    return tuple(int(v) for v in np.clip(base + rng.uniform(-18, 18, size=3), 0, 255))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x0: float, y0: float, s: float, fill) -> None:
    x1, y1 = x0 + s, y0 + s
    cx, cy = x0 + s / 2, y0 + s / 2
    if shape == "circle":
        draw.ellipse([x0, y0, x1 - 1, y1 - 1], fill=fill)
    elif shape == "square":
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    elif shape == "star":
        pts = []
        for k in range(10):
            r = s / 2 if k % 2 == 0 else s / 5
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + r * math.cos(a), cy + r * math.sin(a)))
        draw.polygon(pts, fill=fill)
    elif shape == "cross":
        t = s / 3
        draw.rectangle([x0 + t, y0, x1 - t - 1, y1 - 1], fill=fill)
        draw.rectangle([x0, y0 + t, x1 - 1, y1 - t - 1], fill=fill)
    else:
        raise ValueError(shape)


def _shape_box(shape: str, x0: float, y0: float, s: float) -> tuple[float, float, float, float]:
    """Tight box of the drawn shape in pixel coordinates (right/bottom edges exclusive)."""
    if shape == "star":
        # The 5-point star's outer points: top at -90 degrees, lowest two at +54 degrees.
        r = s / 2
        cx, cy = x0 + r, y0 + r
        return (cx - r * math.cos(math.radians(18)), cy - r, cx + r * math.cos(math.radians(18)),
                cy + r * math.sin(math.radians(54)))
    return (x0, y0, x0 + s, y0 + s)


def _random_size(rng: np.random.Generator, lo: int, hi: int, max_aspect: float = 3.0) -> tuple[int, int]:
    while True:
        w, h = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
        if max(w, h) / min(w, h) <= max_aspect:
            return w, h


def _place(rng: np.random.Generator, w: int, h: int, sizes: list[float], gap: float) -> list[tuple[float, float]] | None:
    """Non-overlapping top-left corners for squares of the given sides; None when they do not fit."""
    placed: list[tuple[float, float, float]] = []
    for s in sizes:
        for _ in range(200):
            x0 = rng.uniform(1, w - s - 1)
            y0 = rng.uniform(1, h - s - 1)
            if all(x0 + s + gap <= px or px + ps + gap <= x0 or y0 + s + gap <= py or py + ps + gap <= y0
                   for px, py, ps in placed):
                placed.append((x0, y0, s))
                break
        else:
            return None
    return [(x, y) for x, y, _ in placed]


def _scene(rng: np.random.Generator, w: int, h: int, items: list[tuple[str, str]], rel_lo: float, rel_hi: float):
    """Draw shapes (shape, colour) on a fresh background; returns (image, boxes in pixels, instance mask)
    or None. The mask (mode L) holds k + 1 where shape k was drawn, 0 elsewhere."""
    m = min(w, h)
    sizes = [max(8.0, rng.uniform(rel_lo, rel_hi) * m) for _ in items]
    corners = _place(rng, w, h, sizes, gap=max(2.0, 0.04 * m))
    if corners is None:
        return None
    img = _background(rng, w, h)
    draw = ImageDraw.Draw(img)
    # The same shapes drawn as instance ids (1, 2, ...): which pixel belongs to which shape.
    mask = Image.new("L", (w, h), 0)
    mdraw = ImageDraw.Draw(mask)
    boxes = []
    for k, ((shape, colour), (x0, y0), s) in enumerate(zip(items, corners, sizes)):
        _draw_shape(draw, shape, x0, y0, s, _shape_colour(rng, colour))
        _draw_shape(mdraw, shape, x0, y0, s, k + 1)
        boxes.append(_shape_box(shape, x0, y0, s))
    return img, boxes, mask


def _rel_box(box, w: int, h: int) -> list[int]:
    x1, y1, x2, y2 = box
    return [int(round(x1 / w * 1000)), int(round(y1 / h * 1000)), int(round(x2 / w * 1000)), int(round(y2 / h * 1000))]


# ---------------------------------------------------------------- tasks


def _scene_labels(items, boxes, mask) -> dict:
    """What the generator knows about a picture: for training-only vision losses, never for the answers."""
    objects = [{"shape": sh, "colour": c, "box": b} for (sh, c), b in zip(items, boxes)]
    return {"count": len(items), "objects": objects, "mask": mask}


def _single_shape(rng):
    while True:
        w, h = _random_size(rng, 40, 320)
        shape, colour = SHAPES[rng.integers(len(SHAPES))], COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
        out = _scene(rng, w, h, [(shape, colour)], 0.3, 0.75)
        if out:
            img, boxes, mask = out
            labels = _scene_labels([(shape, colour)], boxes, mask)
            labels.update(shape=shape, colour=colour)
            return img, labels


def make_colour(rng):
    img, labels = _single_shape(rng)
    return {"images": [img], "question": QUESTIONS["colour"], "answer": labels["colour"].capitalize() + ".",
            "labels": [labels]}


def make_shape(rng):
    img, labels = _single_shape(rng)
    return {"images": [img], "question": QUESTIONS["shape"], "answer": labels["shape"].capitalize() + ".",
            "labels": [labels]}


def _count_scene(rng, n: int):
    while True:
        w, h = _random_size(rng, 64, 320, max_aspect=2.5)
        items = [(SHAPES[rng.integers(len(SHAPES))], COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]) for _ in range(n)]
        out = _scene(rng, w, h, items, 0.14, 0.26)
        if out:
            return out[0], _scene_labels(items, out[1], out[2])


def make_count(rng):
    n = int(rng.integers(1, 6))
    img, labels = _count_scene(rng, n)
    return {"images": [img], "question": QUESTIONS["count"], "answer": f"{n}.", "labels": [labels]}


def make_two_images(rng):
    a, b = rng.choice(np.arange(1, 6), size=2, replace=False)
    (img_a, lab_a), (img_b, lab_b) = _count_scene(rng, int(a)), _count_scene(rng, int(b))
    return {"images": [img_a, img_b], "question": QUESTIONS["two_images"], "labels": [lab_a, lab_b],
            "answer": "The first image." if a > b else "The second image."}


def _contrast_colour(rng, bg_mean: float) -> tuple[int, int, int]:
    if rng.random() < 0.5:
        return (20, 20, 20) if bg_mean > 110 else (240, 240, 240)
    name = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
    return _shape_colour(rng, name)


def make_ocr(rng):
    if rng.random() < 0.5:
        text = WORDS[rng.integers(len(WORDS))]
    else:
        text = str(int(rng.integers(0, 10 ** int(rng.integers(1, 5)))))
    while True:
        w, h = _random_size(rng, 64, 320, max_aspect=3.0)
        size = int(rng.uniform(0.5, 1.0) * min(0.5 * h, 1.4 * w / max(2, len(text))))
        if size < 12:
            continue
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = font.getbbox(text)
        tw, th = right - left, bottom - top
        if tw + 4 > w or th + 4 > h:
            continue
        img = _background(rng, w, h)
        x = rng.uniform(2, w - tw - 2) - left
        y = rng.uniform(2, h - th - 2) - top
        mean = float(np.asarray(img).mean())
        # Keep the text readable: skip colour/background pairs with weak luminance contrast.
        col = _contrast_colour(rng, mean)
        if abs(0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2] - mean) < 70:
            continue
        ImageDraw.Draw(img).text((x, y), text, font=font, fill=col)
        return {"images": [img], "question": QUESTIONS["ocr"], "answer": text,
                "labels": [{"text": text, "chars": _char_cells(font, text, x, y, w, h)}]}


def _char_cells(font, text: str, x: float, y: float, w: int, h: int) -> Image.Image:
    """Where each character of a drawn text sits (mode L: k + 1 over character k's advance cell, from the
    text's top to its bottom), for training-only per-token targets. Uses no randomness."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    _, top, _, bottom = font.getbbox(text)
    for k in range(len(text)):
        x0, x1 = x + font.getlength(text[:k]), x + font.getlength(text[:k + 1])
        draw.rectangle([x0, y + top, x1 - 1, y + bottom - 1], fill=k + 1)
    return mask


def make_grounding(rng):
    while True:
        n = int(rng.integers(1, 4))
        pairs = set()
        while len(pairs) < n:
            pairs.add((SHAPES[rng.integers(len(SHAPES))], COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]))
        items = sorted(pairs)
        rng.shuffle(items)
        w, h = _random_size(rng, 64, 320, max_aspect=2.5)
        out = _scene(rng, w, h, items, 0.2, 0.45)
        if out:
            break
    img, boxes, mask = out
    k = int(rng.integers(n))
    shape, colour = items[k]
    box = _rel_box(boxes[k], w, h)
    label = f"{colour} {shape}"
    return {"images": [img], "question": grounding_question(colour, shape), "labels": [_scene_labels(items, boxes, mask)],
            "answer": grounding_answer(box, label), "boxes": [box]}


def sampled_indices(total: int, src_fps: float, fps: float = 2.0, min_frames: int = 4, max_frames: int = 768) -> list[int]:
    """The frame indices HF's Qwen3VLVideoProcessor keeps (its default fps=2 sampling)."""
    n = int(total / src_fps * fps)
    n = min(max(n, min_frames), max_frames, total)
    return [int(v) for v in np.linspace(0, total - 1, n).round().astype(int)]


def group_times(indices: list[int], src_fps: float) -> list[float]:
    """Timestamp of each temporal pair, as the HF processor computes it."""
    idx = list(indices)
    if len(idx) % 2:
        idx.append(idx[-1])
    return [(idx[i] / src_fps + idx[i + 1] / src_fps) / 2 for i in range(0, len(idx), 2)]


def make_video_time(rng):
    fps = float(rng.choice([1.0, 2.0, 4.0], p=[0.25, 0.5, 0.25]))
    total = int({1.0: rng.integers(4, 9), 2.0: rng.integers(4, 13), 4.0: rng.integers(8, 21)}[fps])
    w, h = _random_size(rng, 48, 128, max_aspect=2.0)
    idx = sampled_indices(total, fps)
    pairs = [(idx[i], idx[min(i + 1, len(idx) - 1)]) for i in range(0, len(idx), 2)]
    times = group_times(idx, fps)
    g = int(rng.integers(len(pairs)))
    # The target first shows in a frame of pair g: the earlier one, or only the later one.
    lo = pairs[g - 1][1] + 1 if g > 0 else 0
    appear = int(rng.integers(lo, pairs[g][1] + 1))
    shapes = [str(s) for s in rng.permutation(SHAPES)]
    target = shapes[0]
    n_distract = int(rng.integers(0, 3))
    items = [(target, COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))])]
    items += [(shapes[1 + j], COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]) for j in range(n_distract)]
    m = min(w, h)
    sizes = [rng.uniform(0.25, 0.4) * m for _ in items]
    while (corners := _place(rng, w, h, sizes, gap=2.0)) is None:
        sizes = [s * 0.9 for s in sizes]
    bg = _background(rng, w, h)
    colours = [_shape_colour(rng, c) for _, c in items]
    frames = []
    for f in range(total):
        img = bg.copy()
        draw = ImageDraw.Draw(img)
        for j, ((shape, _), (x0, y0), s) in enumerate(zip(items, corners, sizes)):
            if j == 0 and f < appear:
                continue
            _draw_shape(draw, shape, x0, y0, s, colours[j])
        frames.append(img)
    answer = f"At {format_seconds(times[g])} seconds."
    return {"images": [], "video": {"frames": frames, "fps": fps}, "question": video_question(target), "answer": answer}


MAKERS = {
    "colour": make_colour,
    "shape": make_shape,
    "count": make_count,
    "ocr": make_ocr,
    "grounding": make_grounding,
    "two_images": make_two_images,
    "video_time": make_video_time,
}


def make_sample(rng: np.random.Generator, task: str) -> dict:
    s = MAKERS[task](rng)
    s.setdefault("video", None)
    s.setdefault("boxes", None)
    # What is known about each picture (shape, colour, number of shapes), for auxiliary training losses.
    s.setdefault("labels", [{} for _ in s["images"]])
    s["task"] = task
    return s
