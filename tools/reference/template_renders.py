#!/usr/bin/env python3
"""Reference chat-template renders, made with Python jinja2 configured as transformers does.

transformers (`utils/chat_template_utils.py`) renders chat templates in
`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])`
with its own `tojson` (json.dumps, ensure_ascii=False by default), `raise_exception` and
`strftime_now`, and calls `render(messages=..., tools=..., documents=..., add_generation_prompt=...,
**kwargs, **special_tokens)`. This script does the same for:

  - "thinking": the Qwen3-VL Thinking chat template (test/fixtures/templates/qwen3-vl-thinking/),
  - "instruct": the Qwen3-VL Instruct chat template (test/fixtures/tiny/chat_template.json),
  - "probe":    a small template exercising every tojson option,

and writes test/fixtures/templates/renders.json (inputs and outputs). Needs only jinja2 >= 3.1.

    python3 tools/reference/template_renders.py
"""
import hashlib
import json
import os
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
THINKING = os.path.join(ROOT, "test/fixtures/templates/qwen3-vl-thinking/chat_template.json")
INSTRUCT = os.path.join(ROOT, "test/fixtures/tiny/chat_template.json")
OUT = os.path.join(ROOT, "test/fixtures/templates/renders.json")

# What transformers passes from Qwen3-VL's tokenizer_config.json (special_tokens_map).
SPECIAL_TOKENS = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}

PROBE = "\n".join(
    [
        "{{ v | tojson }}",
        "{{ v | tojson(indent=2) }}",
        "{{ v | tojson(indent='\\t') }}",
        "{{ v | tojson(indent=0) }}",
        "{{ v | tojson(sort_keys=true) }}",
        "{{ v | tojson(ensure_ascii=true) }}",
        "{{ v | tojson(separators=(',', ':')) }}",
        "{{ v | tojson(true) }}",
        "{{ (7 / 2) | tojson }}|{{ (4 / 2) | tojson }}|{{ 3.0 | tojson }}|{{ 123456789.125 | tojson }}",
    ]
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Météo actuelle d'une ville — 天气 <b>&amp;</b> \"quoted\" \\ back\\slash\ttab",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "threshold": {"type": "number", "minimum": -0.25, "maximum": 0.5, "multipleOf": 1e-05},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "flags": {"type": "array", "items": {"type": "boolean"}, "default": [True, False, None]},
                "nested": {"type": "object", "properties": {"ключ": {"type": "string"}, "emoji😀": {}}},
            },
            "required": ["city"],
        },
    },
}
CALC_TOOL = {
    "type": "function",
    "function": {"name": "calc", "description": "Evaluate an expression", "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}}},
}

PROBE_VALUE = {
    "b": 1.5,
    "a": 1e-05,
    "é": [0.1, -2.75, 1e-07, 123456789.125, 3.0e-5, "x<y&z>\u2028", "tab\there\nnl\u0001", None, True, False, []],
    "z": {"inner": {}, "list": [1, [2, [3]]], "😀": "emoji"},
    "Z": "upper",
}


# Floats whose Python repr differs from JavaScript's String(x) in one way or another.
FLOATS = [0.1, 1.5, -2.75, 1e-05, 0.0001, 0.00012345, 1.5e-07, 1e16, 1.2345e16, 9999999999999998.0, 1e100, 5e-324,
          1.7976931348623157e308, 123456789.125, 2.0, -0.0, 0.0, 1e22, 3.0e-5, 0.30000000000000004]


def env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    e.filters["tojson"] = tojson
    e.globals["raise_exception"] = raise_exception
    e.globals["strftime_now"] = strftime_now
    return e


def cases():
    img = {"type": "image"}
    vid = {"type": "video"}
    text = lambda s: {"type": "text", "text": s}
    multi_turn = [
        {"role": "system", "content": "You are careful."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Simple arithmetic."},
        {"role": "user", "content": [img, text("And this picture?")]},
        {"role": "assistant", "content": "A cat.", "reasoning_content": "\nI see whiskers.\n"},
    ]
    tool_flow = [
        {"role": "system", "content": [text("Use tools "), text("when needed.")]},
        {"role": "user", "content": "Weather in Zürich and 2*21?"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "Need two tools.",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "threshold": 0.5, "flags": [True, None]}}},
                {"type": "function", "function": {"name": "calc", "arguments": "{\"expr\":\"2*21\"}"}},
            ],
        },
        {"role": "tool", "content": "{\"temp\": 21.5}", "tool_call_id": "a"},
        {"role": "tool", "content": [text("chart: "), img], "tool_call_id": "b"},
    ]
    out = []
    for gen in (True, False):
        out += [
            ("thinking", "user_only", [{"role": "user", "content": "Hello!"}], {"add_generation_prompt": gen}),
            ("thinking", "multi_turn_reasoning", multi_turn, {"add_generation_prompt": gen}),
            ("thinking", "tool_flow", tool_flow, {"add_generation_prompt": gen, "tools": [WEATHER_TOOL, CALC_TOOL]}),
        ]
    out += [
        ("thinking", "tool_flow_then_answer", tool_flow + [{"role": "assistant", "content": "It is 21.5°C; 2*21 = 42.", "reasoning_content": "Combine."}], {"add_generation_prompt": False, "tools": [WEATHER_TOOL]}),
        ("thinking", "think_in_content", [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<think>\nold reasoning\n</think>\n\nold answer"},
            {"role": "user", "content": "Again"},
            {"role": "assistant", "content": "<think>\nnew reasoning\n</think>\n\nnew answer"},
        ], {"add_generation_prompt": False}),
        ("thinking", "empty_reasoning_last", [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello.", "reasoning_content": ""},
        ], {"add_generation_prompt": False}),
        ("thinking", "vision_ids", [
            {"role": "user", "content": [img, img, text("Compare with "), vid]},
            {"role": "assistant", "content": "Done."},
            {"role": "user", "content": [vid, img, text("and these")]},
        ], {"add_generation_prompt": True, "add_vision_id": True}),
        ("thinking", "late_system", [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "mid-chat instruction"},
            {"role": "user", "content": "b"},
        ], {"add_generation_prompt": True}),
        ("thinking", "user_tool_response_text", [
            {"role": "user", "content": "Real question"},
            {"role": "assistant", "content": "calling", "tool_calls": [{"type": "function", "function": {"name": "calc", "arguments": {"expr": "1"}}}]},
            {"role": "user", "content": "<tool_response>\n1\n</tool_response>"},
        ], {"add_generation_prompt": True}),
        ("thinking", "tools_no_system", [{"role": "user", "content": "hi"}], {"add_generation_prompt": True, "tools": [CALC_TOOL]}),
        ("instruct", "tools_tricky_json", [
            {"role": "system", "content": [text("Be brief.")]},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "threshold": -0.25, "nested": {"ключ": "значение"}}}},
                {"name": "calc", "arguments": "{\"expr\": \"1+1\"}"},
            ]},
            {"role": "tool", "content": "sunny"},
            {"role": "tool", "content": [img, text("radar")]},
            {"role": "assistant", "content": [text("Sunny, "), text("21°C.")]},
        ], {"add_generation_prompt": True, "tools": [WEATHER_TOOL, CALC_TOOL]}),
        ("instruct", "vision_ids_across_turns", [
            {"role": "user", "content": [vid, img, text("first")]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [img, vid, text("second")]},
        ], {"add_generation_prompt": True, "add_vision_id": True}),
        ("instruct", "reasoning_ignored", multi_turn, {"add_generation_prompt": True}),
        ("probe", "tojson_options", [{"role": "user", "content": "x"}], {"v": PROBE_VALUE}),
    ]
    return out


def main():
    templates = {
        "thinking": json.load(open(THINKING, encoding="utf-8"))["chat_template"],
        "instruct": json.load(open(INSTRUCT, encoding="utf-8"))["chat_template"],
        "probe": PROBE,
    }
    e = env()
    compiled = {k: e.from_string(v) for k, v in templates.items()}
    records = []
    for template, name, messages, kwargs in cases():
        kw = dict(kwargs)
        tools = kw.pop("tools", None)
        gen = kw.pop("add_generation_prompt", False)
        rendered = compiled[template].render(
            messages=messages, tools=tools, documents=None, add_generation_prompt=gen, **kw, **SPECIAL_TOKENS
        )
        records.append({"template": template, "name": name, "messages": messages, "kwargs": kwargs, "rendered": rendered})
    doc = {
        "about": "renders by tools/reference/template_renders.py: Python jinja2 in transformers' chat-template environment",
        "jinja2": jinja2.__version__,
        "template_sha256": {k: hashlib.sha256(v.encode()).hexdigest() for k, v in templates.items()},
        "special_tokens": SPECIAL_TOKENS,
        "float_reprs": [{"input": repr(x), "repr": repr(x)} for x in FLOATS],
        "cases": records,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(records)} renders to {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
