#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Golden data for tests/test_tokenizer.c, made with the reference: the
`tokenizers` library from PyPI (the Rust tokenizer Hugging Face ships).

    python3 -m venv /tmp/tokenv
    /tmp/tokenv/bin/pip install tokenizers==0.23.3 jinja2
    /tmp/tokenv/bin/python tests/tok/make_corpus.py \
        --v3 ../shared/tokenizers/deepseek-v3 --tiny build/testdata/v2lite

(build/testdata comes from `make testdata`.) Writes, all deterministic:

  corpus_v3.jsonl        >= 2000 strings (many scripts, digits of many kinds
                         and lengths, whitespace runs, emoji sequences, code,
                         added tokens in text) with the DeepSeek-V3 ids;
                         lines with "no_special" were encoded with special
                         tokens treated as text
  decode_v3.jsonl        random id sequences and their decoded text
                         (invalid UTF-8 replaced by U+FFFD)
  corpus_tiny.jsonl      300 strings for the tiny generated tokenizer (the
                         first line holds that file's SHA-256)
  v2style/tokenizer.json the tiny vocabulary with DeepSeek-V2's pre-tokenizer
                         (the explicit letter class, "\\s+$", Digits)
  gpt2style/tokenizer.json  the tiny vocabulary with a GPT-2 ByteLevel
                         pre-tokenizer (use_regex, add_prefix_space)
  corpus_v2style.jsonl, corpus_gpt2style.jsonl   300 strings each
  regex_cases.jsonl      Split pre-tokenizer cases (pattern, behavior,
                         invert, text) and the pieces the reference makes
"""
import argparse
import hashlib
import json
import os
import random

from tokenizers import Regex, Tokenizer
from tokenizers import pre_tokenizers as pt

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# Text material
# ---------------------------------------------------------------------------
SENTENCES = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "DeepSeek-V3 routes every token to 8 of 256 experts; 3 dense layers come first.",
    "Ça va? Où est la bibliothèque? Voilà, déjà vu — naïve façade, crème brûlée.",
    "Größere Übungen für Äpfel und Öl: Straße, Maß, weiß.",
    "¿Dónde está el niño? ¡Qué bien! Año, señor, corazón.",
    "Zażółć gęślą jaźń. Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Tiếng Việt có dấu: Người ơi, trời đẹp quá!",
    "Türkçe: İstanbul'da ılık bir gün; çiğdem, şeker, öğretmen.",
    "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Україна, Київ — ґанок, їжак, єнот.",
    "Ελληνικά: Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο.",
    "العربية: مرحبا بالعالم! كيف حالك؟ ١٢٣ ٤٥٦",
    "עברית: שלום עולם, מה שלומך? הַקֹּדֶשׁ",
    "हिन्दी: नमस्ते दुनिया! यह एक परीक्षण है। १२३४५",
    "বাংলা: আমি বাংলায় গান গাই। ০১২৩",
    "தமிழ்: வணக்கம் உலகம்",
    "ภาษาไทย: สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "ລາວ: ສະບາຍດີ",
    "ქართული: გამარჯობა მსოფლიო",
    "Հայերեն: Բարեւ աշխարհ",
    "አማርኛ: ሰላም ልዑል",
    "中文：你好，世界！深度求索发布了混合专家模型。",
    "繁體中文：這是一個測試，龍與鳳。",
    "日本語のテキストとカタカナ、ひらがな、漢字。東京タワーは３３３メートルです。",
    "ｶﾀｶﾅ半角とＡＢＣ全角、１２３。",
    "한국어 텍스트: 안녕하세요, 세계! 가나다라마바사.",
    "Mongolian: Монгол хэл ᠮᠣᠩᠭᠣᠯ",
    "Tibetan: བོད་ཡིག",
    "Sinhala: ශ්‍රී ලංකා",
    "Khmer: ភាសាខ្មែរ",
    "Myanmar: မြန်မာဘာသာ",
    "Cherokee: ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ½; ∫₀¹ f(x) dx ≈ π/4 ≠ ∞.",
    "Currency: $100, €50, £20, ¥1000, ₹500, ₿0.01, ₩3000.",
    "Arrows and boxes: ← ↑ → ↓ ⇒ ⇔ ┌─┐ │ │ └─┘ ■ □ ▲ ●",
    "Emoji: 😀😃😄 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵🇺🇸 1️⃣ ❤️ 🫠 🪿",
    "Combining: e\u0301 a\u0308 n\u0303 o\u0302\u0323 Z\u0351\u036b\u0343\u036a",
    "Zero width: a\u200bb\u200cc\u200dd\ufeffe",
    "Bidi: \u202eabc\u202c \u2066x\u2069",
]

CODE = [
    "def forward(self, x):\n    return self.down(F.silu(self.gate(x)) * self.up(x))\n",
    "int main(void) {\n\tfor (int i = 0; i < n; i++) sum += a[i] * b[i];\n\treturn 0;\n}\n",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{:?}\", v); }",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name HAVING COUNT(*) > 1;",
    "<div class=\"box\"><a href='https://example.com/?q=1&r=2'>link</a></div>",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}",
    "const f = async (a, b) => { await g(a ?? b); return a?.b ?? `t${a}`; };",
    "#include <stdio.h>\n#define MAX(a,b) ((a)>(b)?(a):(b))\n",
    "x = [i**2 for i in range(100) if i % 3 == 0]  # squares\n",
    "$ ls -la /usr/local/bin | grep -E '^-rwx' && echo \"done\" >> log.txt 2>&1",
    "    indented\n        more\n\t\ttabs\n",
    "a+=1;b-=2;c*=3;d/=4;e%=5;f<<=6;g>>=7;h&=8;i|=9;j^=10;",
    "matrix[0][1] = vec![1.0f32; 128]; // comment /* block */",
    "@decorator\nclass Foo(Bar, metaclass=Meta):\n    '''Doc.'''\n    pass\n",
]

WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r", " \n", "\n ",
              " \t \n", "\u00a0", "\u3000", "\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\u2003",
              "\u202f", "\u205f", "\u1680", "    \n    ", "\r\n\r\n"]

PUNCT = ["!", "?", "...", "!!!", "?!", ".", ",", ";", ":", "--", "—", "–", "(", ")", "[", "]", "{", "}",
         "\"", "'", "`", "«", "»", "“", "”", "‘", "’", "、", "。", "！", "？", "：", "；", "（", "）",
         "【", "】", "《", "》", "@", "#", "$", "%", "^", "&", "*", "+", "=", "<", ">", "/", "\\",
         "|", "~", "_", "->", "=>", "::", "...", "…", "·", "•", "§", "¶", "©", "®", "™", "°"]

WORDS = ["the", "The", "model", "token", "expert", "routing", "DeepSeek", "MoE", "attention",
         "don't", "it's", "we'll", "they're", "I'm", "you've", "she'd", "HELLO", "CamelCase",
         "snake_case", "kebab-case", "x86_64", "v2.5", "GPT-4o", "naïve", "café", "über",
         "мир", "слово", "λόγος", "نص", "שלום", "नमस्ते", "สวัสดี", "中文", "汉字", "專家",
         "日本", "カタカナ", "ひらがな", "한국어", "テスト", "ｈａｌｆ", "ａｂｃ", "Ωmega", "ǅemal",
         "ﬁnance", "Ⅻ", "ⅷ", "ᴀᴅᴍɪɴ", "𝐛𝐨𝐥𝐝", "𝔣𝔯𝔞𝔨", "ꓘ", "𐐷", "ᏣᎳᎩ"]

EMOJI = ["😀", "🤖", "🚀", "🔥", "👍", "👍🏻", "👍🏿", "👩‍💻", "👨‍👩‍👧‍👦", "🧑🏽‍🚀", "🏳️‍🌈",
         "🏴‍☠️", "🇺🇸", "🇫🇷", "🇨🇳", "1️⃣", "#️⃣", "❤️", "✨", "☕", "⚡", "🫠", "🪿", "🫨",
         "🩷", "🛜", "🦀", "🐍", "🧬", "🌍"]

DIGITS = "0123456789"
DIGIT_SETS = ["0123456789", "٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹", "०१२३४५६७८९", "০১২৩৪৫৬৭৮৯",
              "０１２３４５６７８９", "๐๑๒๓๔๕๖๗๘๙", "၀၁၂၃၄၅၆၇၈၉", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗"]
NUMERIC_OTHER = ["½", "¼", "¾", "²", "³", "¹", "⅓", "Ⅳ", "Ⅻ", "①", "⑳", "㈠", "〇", "〡", "𐄇"]

# Unicode blocks to sample single characters from (start, end).
BLOCKS = [(0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF),
          (0x400, 0x52F), (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x700, 0x74F),
          (0x780, 0x7BF), (0x800, 0x8FF), (0x900, 0x97F), (0x980, 0xDFF), (0xE00, 0xEFF),
          (0xF00, 0xFFF), (0x1000, 0x109F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1200, 0x139F),
          (0x13A0, 0x13FF), (0x1400, 0x167F), (0x1680, 0x16FF), (0x1780, 0x17FF), (0x1800, 0x18AF),
          (0x1AB0, 0x1AFF), (0x1C80, 0x1CFF), (0x1D00, 0x1DFF), (0x1E00, 0x1FFF), (0x2000, 0x206F),
          (0x2070, 0x209F), (0x20A0, 0x20CF), (0x20D0, 0x20FF), (0x2100, 0x218F), (0x2190, 0x23FF),
          (0x2400, 0x27BF), (0x2800, 0x28FF), (0x2900, 0x2BFF), (0x2C00, 0x2DFF), (0x2E00, 0x2E7F),
          (0x2E80, 0x2FDF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x3100, 0x31FF), (0x3200, 0x33FF),
          (0x3400, 0x4DBF), (0x4DC0, 0x4DFF), (0x4E00, 0x9FFF), (0xA000, 0xA4CF), (0xA4D0, 0xA6FF),
          (0xA700, 0xA7FF), (0xA800, 0xABFF), (0xAC00, 0xD7AF), (0xD7B0, 0xD7FF), (0xE000, 0xE0FF),
          (0xF900, 0xFAFF), (0xFB00, 0xFDFF), (0xFE00, 0xFE6F), (0xFE70, 0xFEFF), (0xFF00, 0xFFEF),
          (0xFFF0, 0xFFFD), (0x10000, 0x1007F), (0x10300, 0x1034F), (0x10400, 0x1047F),
          (0x11000, 0x1107F), (0x11F00, 0x11F5F), (0x13000, 0x1342F), (0x16A40, 0x16A6F),
          (0x1D400, 0x1D7FF), (0x1E030, 0x1E08F), (0x1E4D0, 0x1E4FF), (0x1E900, 0x1E95F),
          (0x1F000, 0x1F0FF), (0x1F100, 0x1F1FF), (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F),
          (0x1F680, 0x1F6FF), (0x1F700, 0x1F7FF), (0x1F900, 0x1F9FF), (0x1FA70, 0x1FAFF),
          (0x20000, 0x2A6DF), (0x2B740, 0x2B81F), (0x2EBF0, 0x2EE5F), (0x30000, 0x3134F),
          (0x31350, 0x323AF), (0xE0000, 0xE007F), (0xF0000, 0xF00FF)]


def rand_char(rng):
    lo, hi = rng.choice(BLOCKS)
    while True:
        c = rng.randint(lo, hi)
        if not (0xD800 <= c <= 0xDFFF):
            return chr(c)


def rand_number(rng):
    kind = rng.random()
    n = rng.choice([1, 1, 2, 3, 3, 4, 5, 6, 7, 9, 12, 16, 25, 40])
    if kind < 0.55:
        s = "".join(rng.choice(DIGITS) for _ in range(n))
    elif kind < 0.8:
        ds = rng.choice(DIGIT_SETS)
        s = "".join(rng.choice(ds) for _ in range(n))
    elif kind < 0.9:
        s = "".join(rng.choice(DIGITS) for _ in range(n)) + rng.choice([".", ",", "e", "/", ":", "-"]) + \
            "".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 6)))
    else:
        s = "".join(rng.choice(NUMERIC_OTHER + list(DIGITS)) for _ in range(rng.randint(1, 5)))
    return s


def fragment(rng, specials):
    r = rng.random()
    if r < 0.22:
        return rng.choice(WORDS)
    if r < 0.34:
        return rand_number(rng)
    if r < 0.46:
        return rng.choice(WHITESPACE)
    if r < 0.56:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 4)))
    if r < 0.64:
        return "".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 3)))
    if r < 0.72:
        return "".join(rand_char(rng) for _ in range(rng.randint(1, 6)))
    if r < 0.78:
        return rng.choice(specials)
    if r < 0.86:
        s = rng.choice(SENTENCES)
        a = rng.randint(0, len(s))
        return s[a:a + rng.randint(1, 40)]
    if r < 0.92:
        s = rng.choice(CODE)
        a = rng.randint(0, len(s))
        return s[a:a + rng.randint(1, 60)]
    return " " + rng.choice(WORDS)


def make_strings(rng, count, specials, n_fixed=None):
    """count distinct strings: the fixed material (or n_fixed of it, chosen
    at random), then random mixtures of fragments."""
    out = []
    seen = set()
    # fixed material first
    fixed = list(SENTENCES) + list(CODE) + WHITESPACE + EMOJI + WORDS + PUNCT + DIGIT_SETS + NUMERIC_OTHER
    fixed += [s + " " + s for s in SENTENCES[:10]]
    fixed += ["".join(DIGITS[(i * 7 + k) % 10] for k in range(n)) for i, n in enumerate(range(1, 30))]
    fixed += [" " * n + "x" for n in range(1, 12)] + ["x" + " " * n for n in range(1, 12)]
    fixed += ["\n" * n + "y" + "\t" * n for n in range(1, 6)] + [" \n" * n for n in range(1, 6)]
    fixed += ["", " ", "a", "\u3000\u3000", "\r\n\r\n  \n", "  leading", "trailing  ", "a  b   c    d"]
    fixed += ["%s%s%s" % (a, sp, b) for a in specials[:12] for sp, b in (("", "x"), (" ", "y"))]
    fixed += ["text" + s + "text" for s in specials] + [s + s for s in specials[:8]]
    fixed += ["<｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜>", "<｜end▁of▁sentence", "｜>", "<|EOT|>x",
              "<｜<｜User｜>｜>", " <｜User｜> ", "<｜place▁holder▁no▁5｜>", "<｜fim▁begin｜>def f():<｜fim▁hole｜><｜fim▁end｜>"]
    if n_fixed is not None:
        fixed = rng.sample(fixed, n_fixed)
    for s in fixed:
        if s not in seen:
            seen.add(s)
            out.append(s)
    while len(out) < count:
        n = rng.choice([1, 2, 3, 4, 6, 8, 12, 20])
        s = "".join(fragment(rng, specials) for _ in range(n))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------
def dump(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print("wrote %s (%d lines, %d bytes)" % (path, len(rows), os.path.getsize(path)))


def encode_rows(tok, texts, rng=None, no_special_share=0.0):
    rows = []
    for t in texts:
        ns = rng is not None and rng.random() < no_special_share
        tok.encode_special_tokens = ns
        ids = tok.encode(t, add_special_tokens=False).ids
        row = {"text": t, "ids": ids}
        if ns:
            row["no_special"] = True
        rows.append(row)
    tok.encode_special_tokens = False
    return rows


def v2_letter_class():
    # DeepSeek-V2's cased-letter class, written with escapes so that no
    # editor or normalizer can change it.
    ranges = [(0x41, 0x5A), (0x61, 0x7A), (0xB5, 0xB5), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA),
              (0x1BC, 0x1BF), (0x1C4, 0x293), (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x377),
              (0x37B, 0x37D), (0x37F, 0x37F), (0x386, 0x386), (0x388, 0x38A), (0x38C, 0x38C),
              (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481), (0x48A, 0x52F), (0x531, 0x556),
              (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF),
              (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15), (0x1F18, 0x1F1D),
              (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59, 0x1F59), (0x1F5B, 0x1F5B),
              (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE),
              (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC),
              (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102), (0x2107, 0x2107), (0x210A, 0x2113),
              (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126), (0x2128, 0x2128),
              (0x212A, 0x212D), (0x212F, 0x2134), (0x2139, 0x2139), (0x213C, 0x213F), (0x2145, 0x2149),
              (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE),
              (0x2CF2, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F), (0xA771, 0xA787),
              (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A),
              (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB),
              (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943)]
    return "".join(chr(a) if a == b else "%s-%s" % (chr(a), chr(b)) for a, b in ranges)


def split_step(rx, behavior="Isolated"):
    return {"type": "Split", "pattern": {"Regex": rx}, "behavior": behavior, "invert": False}


V2_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        split_step("[\r\n]"),
        split_step("\\s?[" + v2_letter_class() + "]+"),
        split_step("\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"),
        split_step("\\s+$"),
        split_step("[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"),
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}

GPT2_PRE_TOKENIZER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}

# Split cases for the regex engine: (pattern, behavior, invert, texts).
REGEX_CASES = [
    (r"\p{N}{1,3}", "Isolated", False, ["12345678", "a1b22c333d4444", "٣٤٥٦ ½¾ 𝟏𝟐𝟑𝟒"]),
    (r"[一-龥぀-ゟ゠-ヿ]+", "Isolated", False, ["日本語のテキストとカタカナ", "中文abc漢字", "ｶﾀｶﾅ"]),
    (r"\s+(?!\S)", "Isolated", False, ["a   b", "a \t\n b  ", "   ", "x\u3000\u3000y"]),
    (r"\s+(?!\S)|\s+", "Removed", False, ["a   b  c ", "\n\n x"]),
    (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", "Isolated", False,
     ["Hello world's 123 !!  ok\n\n", "it's they're I'm we'll you've he'd", "  a", "x  "]),
    (r"\s+$", "Isolated", False, ["a  \n  b  \n", "end   ", "  \n  "]),
    (r"^\s+", "Isolated", False, [" a\n  b", "\n\n x"]),
    (r"\d", "Removed", False, ["a12b3"]),
    (r"\d", "MergedWithPrevious", False, ["a12b3", "1a2"]),
    (r"\d", "MergedWithNext", False, ["a12b3", "1a2"]),
    (r"\d", "Contiguous", False, ["a12b3", "1a2"]),
    (r"\d", "MergedWithPrevious", True, ["a12b3"]),
    (r"\d", "Removed", True, ["a12b3"]),
    (r"x*", "Isolated", False, ["abxxc", "xx", ""]),
    (r"\s*", "Isolated", False, ["ab c"]),
    (r"(?=b)", "Isolated", False, ["abab"]),
    (r"a|ab", "Removed", False, ["abab"]),
    (r"(a|ab)(c|bcd)", "Removed", False, ["abcd"]),
    (r"a??b", "Removed", False, ["aab"]),
    (r"a{2,3}?", "Removed", False, ["aaaaaaa"]),
    (r"a*?b", "Removed", False, ["aaab"]),
    (r"(|a)+", "Removed", False, ["aab"]),
    (r"(a|)*b", "Removed", False, ["aab"]),
    (r"(a*)*b", "Removed", False, ["aaab"]),
    (r"(?:ab)+", "Removed", False, ["ababab abx"]),
    (r"(?:ab){2}", "Removed", False, ["ababab"]),
    (r"a{,2}", "Removed", False, ["aaab"]),
    (r"a{x", "Removed", False, ["a{xb"]),
    (r"a{3,1}a", "Removed", False, ["aaa", "aaaa"]),
    (r"(?:ab){3,1}ab", "Removed", False, ["ababab"]),
    (r"a{3,1}?a", "Removed", False, ["aaa"]),
    (r"a{2}{2}", "Removed", False, ["aaaaa"]),
    (r"a{,}|a{}|a{1,x}", "Removed", False, ["a{,}a{}a{1,x}"]),
    (r"(?<=a)b", "Removed", False, ["abcb"]),
    (r"(?<!a)b", "Removed", False, ["abcb"]),
    (r"(?>a+)b", "Removed", False, ["aab"]),
    (r"a*+a", "Removed", False, ["aaa"]),
    (r"\x41\u0042\x{43}\101", "Removed", False, ["ABCA"]),
    (r"[\x41-\x43]", "Removed", False, ["ABCD"]),
    (r"[a-]", "Removed", False, ["a-b"]),
    (r"[]a]", "Removed", False, ["]ab"]),
    (r"\bab\b", "Removed", False, ["ab cab ab"]),
    (r"\Bb", "Removed", False, ["ab b"]),
    (r"\Ab", "Removed", False, ["bab"]),
    (r"b\z", "Removed", False, ["bab\n", "bab"]),
    (r"b\Z", "Removed", False, ["bab\n"]),
    (r"b$", "Removed", False, ["bab\nb"]),
    (r".", "Removed", False, ["a\r\nb"]),
    (r"\w+", "Isolated", False, ["ab_٣ c\u0301d ²x Ⓐ\u200d"]),
    (r"\W+", "Isolated", False, ["ab, cd! ²"]),
    (r"\h+", "Isolated", False, ["0af g"]),
    (r"\S+", "Isolated", False, ["ab\u3000cd\u00a0e\u200bf"]),
    (r"\D+", "Isolated", False, ["a1٣b"]),
    (r"\p{^L}+", "Isolated", False, ["ab12cd"]),
    (r"\P{L}+", "Isolated", False, ["ab12cd"]),
    (r"\p{Letter}+", "Isolated", False, ["ab12cd"]),
    (r"[\p{Lu}\p{Nd}]+", "Isolated", False, ["aBC12dE"]),
    (r"[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+", "Isolated", False, ["1abc 2de\u0301f\n\ngh"]),
    (r"\q\i", "Removed", False, ["aqib"]),
    (r"\t\n\r\f\v\a\e", "Removed", False, ["x\t\n\r\f\x0b\x07\x1by"]),
    (r"[\s\S]", "Removed", False, ["ab"]),
    (r"(?<n>a)b", "Removed", False, ["abab"]),
]


def regex_rows():
    rows = []
    for pat, beh, inv, texts in REGEX_CASES:
        p = pt.Split(Regex(pat), beh.lower().replace("mergedwithprevious", "merged_with_previous")
                     .replace("mergedwithnext", "merged_with_next"), invert=inv)
        for t in texts:
            pieces = [x[0] for x in p.pre_tokenize_str(t)]
            rows.append({"pattern": pat, "behavior": beh, "invert": inv, "text": t, "pieces": pieces})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--v3", required=True, help="folder with the DeepSeek-V3 tokenizer.json")
    ap.add_argument("--tiny", required=True, help="folder with the tiny generated tokenizer.json")
    ap.add_argument("--out", default=HERE)
    a = ap.parse_args()

    rng = random.Random(20250131)
    v3_path = os.path.join(a.v3, "tokenizer.json")
    v3 = Tokenizer.from_file(v3_path)
    v3_json = json.load(open(v3_path, encoding="utf-8"))
    specials = [t["content"] for t in v3_json["added_tokens"]]
    specials = specials[:3] + [s for s in specials if "place" not in s] + specials[3:12]

    texts = make_strings(rng, 2200, specials)
    dump(os.path.join(a.out, "corpus_v3.jsonl"), encode_rows(v3, texts, rng, 0.08))

    # random id sequences, many of them cutting UTF-8 characters
    rows = []
    n_ids = v3.get_vocab_size(with_added_tokens=True)
    for i in range(300):
        k = rng.randint(1, 12)
        ids = [rng.randrange(n_ids) if rng.random() < 0.6 else rng.randrange(3, 300) for _ in range(k)]
        rows.append({"ids": ids, "text": v3.decode(ids, skip_special_tokens=False)})
    # truncated and broken UTF-8 sequences from byte tokens, some of them
    # exactly as long as their U+FFFD replacements
    bs = list(range(33, 127)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    for b in range(256):
        if b not in bs:
            cs.append(256 + len(bs) - 188)   # GPT-2: the k-th unprintable byte -> U+0100 + k
            bs.append(b)
    byte_id = {b: v3.token_to_id(chr(c)) for b, c in zip(bs, cs)}
    broken = [[0xF0, 0x9D, 0x91, 0x6F], [0xE2, 0x82, 0x78], [0xE2, 0x82], [0xF0], [0xC3], [0x80, 0x80],
              [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xF0, 0x9F, 0x98],
              [0xF0, 0x9F, 0x98, 0x80], [0xE4, 0xBD, 0xA0, 0xE5], [0xFF, 0xFE], [0xF8, 0x88, 0x80, 0x80, 0x80]]
    for seq in broken:
        for tail in ([], [byte_id[0x41]], [0]):
            ids = [byte_id[b] for b in seq] + tail
            rows.append({"ids": ids, "text": v3.decode(ids, skip_special_tokens=False)})
    dump(os.path.join(a.out, "decode_v3.jsonl"), rows)

    tiny_path = os.path.join(a.tiny, "tokenizer.json")
    tiny_bytes = open(tiny_path, "rb").read()
    tiny = Tokenizer.from_file(tiny_path)
    small_specials = [t["content"] for t in json.loads(tiny_bytes)["added_tokens"]]
    small = make_strings(random.Random(7), 300, small_specials, n_fixed=150)
    rows = [{"tokenizer_sha256": hashlib.sha256(tiny_bytes).hexdigest()}] + encode_rows(tiny, small)
    dump(os.path.join(a.out, "corpus_tiny.jsonl"), rows)

    for name, pre, seed in (("v2style", V2_PRE_TOKENIZER, 11), ("gpt2style", GPT2_PRE_TOKENIZER, 13)):
        j = json.loads(tiny_bytes)
        j["pre_tokenizer"] = pre
        os.makedirs(os.path.join(a.out, name), exist_ok=True)
        p = os.path.join(a.out, name, "tokenizer.json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
        tk = Tokenizer.from_file(p)
        strings = make_strings(random.Random(seed), 300, small_specials, n_fixed=150)
        dump(os.path.join(a.out, "corpus_%s.jsonl" % name), encode_rows(tk, strings))

    dump(os.path.join(a.out, "regex_cases.jsonl"), regex_rows())


if __name__ == "__main__":
    main()
