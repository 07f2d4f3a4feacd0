"""Scoring of HF's held-out answers, the same rules as src/eval/ (TypeScript) applies to qvl's.

normalize: trim, collapse runs of whitespace to one space, lower-case, drop trailing periods.
grounding: the first "bbox_2d" in the answer (JSON inside a ```json fence or bare), clamped to 0-1000
with its corners put in order; correct when IoU with the expected box >= 0.5; no box counts as IoU 0.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict


def normalize(s: str) -> str:
    s = re.sub(r"\s+", " ", s.strip()).lower()
    return re.sub(r"[\s.]+$", "", s)


def parse_boxes(text: str) -> list[list[float]]:
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    body = m.group(1) if m else text
    start, end = body.find("["), body.rfind("]")
    if start < 0 or end <= start:
        return []
    try:
        data = json.loads(body[start:end + 1])
    except json.JSONDecodeError:
        return []
    if isinstance(data, dict):
        data = [data]
    boxes = []
    for obj in data if isinstance(data, list) else []:
        b = obj.get("bbox_2d") if isinstance(obj, dict) else None
        if isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b):
            c = [min(1000.0, max(0.0, float(v))) for v in b]
            boxes.append([min(c[0], c[2]), min(c[1], c[3]), max(c[0], c[2]), max(c[1], c[3])])
    return boxes


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_items(items: list[dict], key: str = "hf_answer") -> str:
    per = defaultdict(lambda: {"n": 0, "ok": 0, "iou": 0.0})
    for it in items:
        ans = it.get(key) or ""
        p = per[it["task"]]
        p["n"] += 1
        if it["task"] == "grounding":
            boxes = parse_boxes(ans)
            v = iou(boxes[0], it["expected_boxes"][0]) if boxes else 0.0
            p["iou"] += v
            p["ok"] += v >= 0.5
        else:
            p["ok"] += normalize(ans) == normalize(it["expected"])
    lines = [f"{'task':<12} {'n':>4} {'accuracy':>9} {'mean IoU':>9}"]
    for task, p in per.items():
        miou = f"{p['iou'] / p['n']:.3f}" if task == "grounding" else ""
        lines.append(f"{task:<12} {p['n']:>4} {p['ok'] / p['n']:>9.3f} {miou:>9}")
    return "\n".join(lines)
