#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_checkpoint.py -- tiny random DeepSeek checkpoints in Hugging Face format.

Writes, for each model family, a directory holding what a real Hugging Face
release holds: config.json, tokenizer.json, tokenizer_config.json and
safetensors weights (one file, or shards plus model.safetensors.index.json),
with the real tensor names, shapes and dtypes of that family, random values,
and beside them expected.safetensors: every tensor the converter must keep, as
F32, holding the true values decoded here independently of the C code (BF16 by
bit shift, F16 by numpy, FP8 e4m3fn through our own table times the 128x128
block scale_inv).

    make_checkpoint.py --all OUTDIR            every family into OUTDIR/<family>/
    make_checkpoint.py --family NAME OUTDIR    one family into OUTDIR/
    make_checkpoint.py --big-gb X OUTDIR       a V2-Lite-shaped BF16 checkpoint of
                                               about X GB, written tensor by tensor
        --zipf S                               ... with Zipf-skewed expert popularity
        --layers N                             ... with exactly N layers (X may be 0)
    make_checkpoint.py --family pager OUTDIR   the expert-pager RSS model (~310 MB,
                                               not part of --all)
    make_checkpoint.py --zipf-check S          simulate --zipf S routing on random
                                               hidden states, print the frequencies
    options: --seed N (default 0), -v (say what was written)

Only Python 3 and numpy. Output is deterministic for a given seed. Nothing is
printed on success without -v.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

# ============================================================================
# Number formats
# ============================================================================


def f32_to_bf16_bits(x):
    """float32 array -> uint16 BF16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def fp8_e4m3_table():
    """The 256 values of OCP FP8 e4m3fn: bias 7, subnormals, no infinities,
    0x7f and 0xff are NaN."""
    v = np.arange(256, dtype=np.int64)
    sign = (v >> 7) & 1
    exp = (v >> 3) & 15
    man = (v & 7).astype(np.float64)
    mag = np.where(exp == 0, man / 8.0 * 2.0 ** -6, (1.0 + man / 8.0) * np.exp2(exp - 7.0))
    val = np.where(sign == 1, -mag, mag)
    val[(v & 0x7F) == 0x7F] = np.nan
    return val.astype(np.float32)


FP8_TABLE = fp8_e4m3_table()
FP8_MAX = 448.0
_FP8_POS = FP8_TABLE[:0x7F].astype(np.float64)  # codes 0x00..0x7e, increasing


def f32_to_fp8_codes(x):
    """Nearest e4m3fn code for each value (|x| <= 448 assumed; never NaN)."""
    a = np.minimum(np.abs(x.astype(np.float64)), FP8_MAX)
    hi = np.clip(np.searchsorted(_FP8_POS, a), 1, 0x7E)
    lo = hi - 1
    pick = np.where(a - _FP8_POS[lo] <= _FP8_POS[hi] - a, lo, hi).astype(np.uint8)
    return np.where(x < 0, pick | 0x80, pick).astype(np.uint8)


def fp8_quantize_blocks(w):
    """Quantize a 2-D float32 matrix the way the DeepSeek-V3 release stores it:
    e4m3 codes plus weight_scale_inv of shape (ceil(rows/128), ceil(cols/128)),
    value = fp8(code) * scale_inv[r // 128, c // 128]. Returns (codes, scale_inv,
    true_values)."""
    rows, cols = w.shape
    br, bc = -(-rows // 128), -(-cols // 128)
    scale = np.empty((br, bc), dtype=np.float32)
    codes = np.empty((rows, cols), dtype=np.uint8)
    true = np.empty((rows, cols), dtype=np.float32)
    for i in range(br):
        for j in range(bc):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            s = np.float32(max(float(np.max(np.abs(blk))), 1e-12) / FP8_MAX)
            q = f32_to_fp8_codes(blk / s)
            scale[i, j] = s
            codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = q
            true[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] = FP8_TABLE[q] * s
    return codes, scale, true


# ============================================================================
# safetensors writer (our own: 8-byte LE header length, JSON header, data)
# ============================================================================

ST_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1}


def st_header(entries, metadata=None):
    """entries: [(name, dtype, shape)] in data order. Returns the header bytes
    (length prefix included, padded with spaces to a multiple of 8 as the
    reference writer does) and the total data size. Header keys are written
    in sorted order, which generally differs from the data order."""
    offs = {}
    pos = 0
    for name, dt, shape in entries:
        n = ST_SIZE[dt]
        for d in shape:
            n *= d
        offs[name] = (dt, list(shape), pos, pos + n)
        pos += n
    hdr = {}
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name in sorted(offs):
        dt, shape, b, e = offs[name]
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [b, e]}
    js = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    js += b" " * ((8 - len(js) % 8) % 8)
    return len(js).to_bytes(8, "little") + js, pos


def st_write(path, tensors, metadata=None):
    """tensors: [(name, dtype, numpy array with the stored bytes)]."""
    entries = [(n, dt, a.shape) for n, dt, a in tensors]
    head, _ = st_header(entries, metadata if metadata is not None else {"format": "pt"})
    with open(path, "wb") as f:
        f.write(head)
        for _, _, a in tensors:
            f.write(np.ascontiguousarray(a).tobytes())


# ============================================================================
# Tokenizer: a small byte-level BPE in the tokenizers JSON format
# ============================================================================


def bytes_to_unicode():
    """GPT-2's byte -> printable character table, in its order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, [chr(c) for c in cs]


BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
CHAT_TOKENS = [  # (content, special), as in the DeepSeek-V3 release
    ("<｜fim▁hole｜>", False), ("<｜fim▁begin｜>", False), ("<｜fim▁end｜>", False),
    ("<｜User｜>", False), ("<｜Assistant｜>", False), ("<|EOT|>", True),
    ("<｜tool▁calls▁begin｜>", False), ("<｜tool▁calls▁end｜>", False),
    ("<｜tool▁call▁begin｜>", False), ("<｜tool▁call▁end｜>", False),
    ("<｜tool▁outputs▁begin｜>", False), ("<｜tool▁outputs▁end｜>", False),
    ("<｜tool▁output▁begin｜>", False), ("<｜tool▁output▁end｜>", False),
    ("<｜tool▁sep｜>", False),
]
N_PLACEHOLDERS = 8

# The pre-tokenizer of the DeepSeek-V3 release (digits in runs of up to 3, CJK
# runs, then the word/punctuation/space regex), then ByteLevel without regex.
PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"},
         "behavior": "Isolated", "invert": False},
        {"type": "Split",
         "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
                              "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}

CORPUS = """
DeepSeek models use a mixture of experts: every token is routed to a few experts chosen by a gate,
and shared experts see every token. The attention uses a compressed latent for keys and values, so
the cache holds one small vector per token instead of the full keys and values of every head.
Hello, world! Hello, my dog is cute. The quick brown fox jumps over the lazy dog.
The model is stored in a sealed container file, and the experts are decrypted when they are needed.
A page cache keeps the experts that were used recently, and the prefetcher guesses the next layer.
int main(void) { return 0; } for (int i = 0; i < n; i++) { sum += x[i] * w[i]; }
def forward(self, hidden_states): return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
The tokenizer splits the text into pieces, then merges pairs of bytes into larger tokens.
Numbers like 2024, 3.14159 and 1,000,000 are split into groups of at most three digits.
User: What is the capital of France? Assistant: The capital of France is Paris.
混合专家模型在每一层中只激活少量专家。你好，世界！深度学习模型需要大量的计算。
日本語のテキストとカタカナ。 Привет, мир! Ελληνικά γράμματα. café naïve résumé
"""


def train_merges(n_merges, b2u):
    """Deterministic BPE training on CORPUS; returns merges as (left, right)."""
    import re
    words = {}
    for piece in re.findall(r" ?[^\W\d_]+| ?\d{1,3}| ?[^\w\s]+|\s+", CORPUS):
        w = tuple(b2u[b] for b in piece.encode("utf-8"))
        words[w] = words.get(w, 0) + 1
    merges = []
    for _ in range(n_merges):
        counts = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        joined = best[0] + best[1]
        new = {}
        for w, c in words.items():
            out = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == best[0] and w[i + 1] == best[1]:
                    out.append(joined)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            t = tuple(out)
            new[t] = new.get(t, 0) + c
        words = new
    return merges


_TOKENIZER_CACHE = {}


def make_tokenizer(vocab_size):
    """tokenizer.json text for a tokenizer whose ids all lie below vocab_size
    (which must be >= 300). Layout follows the V3 release: the three special
    tokens at 0..2 (also in model.vocab), the 256 byte tokens in GPT-2 order,
    merged tokens, placeholders, then the chat tokens at the top."""
    key = vocab_size
    if key in _TOKENIZER_CACHE:
        return _TOKENIZER_CACHE[key]
    top = min(vocab_size, 512)
    n_chat = len(CHAT_TOKENS)
    n_merges = top - 3 - 256 - N_PLACEHOLDERS - n_chat
    assert n_merges > 0
    bs, b2u_list = bytes_to_unicode()
    b2u = dict(zip(bs, b2u_list))
    vocab = {BOS: 0, EOS: 1, PAD: 2}
    for i, ch in enumerate(b2u_list):
        vocab[ch] = 3 + i
    merges = train_merges(n_merges, b2u)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate((BOS, EOS, PAD))]
    nid = len(vocab)
    for k in range(top - n_chat - nid):
        added.append({"id": nid + k, "content": "<｜place▁holder▁no▁%d｜>" % k, "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    for k, (c, special) in enumerate(CHAT_TOKENS):
        added.append({"id": top - n_chat + k, "content": c, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": True, "special": special})
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": PRE_TOKENIZER,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": ["%s %s" % m for m in merges]},
    }
    text = json.dumps(tok, ensure_ascii=False, indent=1)
    _TOKENIZER_CACHE[key] = text
    return text


V3_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}"
    "{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}{%- else %}"
    "{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}"
    "{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
    "tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + "
    "'<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}"
    "{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + "
    "'```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
    "{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}{%- else %}"
    "{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
    "{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}"
)

# DeepSeek-V2(-Lite)-Chat and DeepSeek-MoE-16B-Chat style.
V2_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ 'Assistant:' }}{% endif %}"
)


def tokenizer_config(template, max_len):
    def tok(c):
        return {"__type": "AddedToken", "content": c, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": tok(BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": tok(EOS),
        "legacy": True,
        "model_max_length": max_len,
        "pad_token": tok(EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": template,
    }


# ============================================================================
# Families: config.json and the tensor list
# ============================================================================

TINY = dict(hidden=64, vocab=512, layers=3, experts=8, topk=2, moe_inter=32, inter=96, heads=4,
            kv_lora=32, q_lora=96, nope=16, rope=8, v_head=16)

YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512, "beta_fast": 32,
        "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}


def v2_config(t, q_lora, topk_method, n_group, topk_group, rope_scaling, tie, dtype,
              scaling=1.0, n_shared=2, max_pos=2048):
    return {
        "architectures": ["DeepseekV2ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config",
                     "AutoModel": "modeling_deepseek.DeepseekV2Model",
                     "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"},
        "aux_loss_alpha": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": 1,
        "hidden_act": "silu",
        "hidden_size": t["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": t["inter"],
        "kv_lora_rank": t["kv_lora"],
        "max_position_embeddings": max_pos,
        "model_type": "deepseek_v2",
        "moe_intermediate_size": t["moe_inter"],
        "moe_layer_freq": 1,
        "n_group": n_group,
        "n_routed_experts": t["experts"],
        "n_shared_experts": n_shared,
        "norm_topk_prob": False,
        "num_attention_heads": t["heads"],
        "num_experts_per_tok": t["topk"],
        "num_hidden_layers": t["layers"],
        "num_key_value_heads": t["heads"],
        "pretraining_tp": 1,
        "q_lora_rank": q_lora,
        "qk_nope_head_dim": t["nope"],
        "qk_rope_head_dim": t["rope"],
        "rms_norm_eps": 1e-06,
        "rope_scaling": rope_scaling,
        "rope_theta": 10000,
        "routed_scaling_factor": scaling,
        "scoring_func": "softmax",
        "seq_aux": True,
        "tie_word_embeddings": tie,
        "topk_group": topk_group,
        "topk_method": topk_method,
        "torch_dtype": dtype,
        "transformers_version": "4.39.3",
        "use_cache": True,
        "v_head_dim": t["v_head"],
        "vocab_size": t["vocab"],
    }


def v3_config(t):
    rope = {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 256, "type": "yarn"}
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                     "AutoModel": "modeling_deepseek.DeepseekV3Model",
                     "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
        "aux_loss_alpha": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": 1,
        "hidden_act": "silu",
        "hidden_size": t["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": 160,  # > 128 and not a multiple of it: partial FP8 blocks
        "kv_lora_rank": t["kv_lora"],
        "max_position_embeddings": 10240,
        "model_type": "deepseek_v3",
        "moe_intermediate_size": t["moe_inter"],
        "moe_layer_freq": 1,
        "n_group": 4,
        "n_routed_experts": t["experts"],
        "n_shared_experts": 1,
        "norm_topk_prob": True,
        "num_attention_heads": t["heads"],
        "num_experts_per_tok": t["topk"],
        "num_hidden_layers": t["layers"],
        "num_key_value_heads": t["heads"],
        "num_nextn_predict_layers": 1,
        "q_lora_rank": t["q_lora"],
        "qk_nope_head_dim": t["nope"],
        "qk_rope_head_dim": t["rope"],
        "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                "weight_block_size": [128, 128]},
        "rms_norm_eps": 1e-06,
        "rope_scaling": rope,
        "rope_theta": 10000,
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": 2,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "v_head_dim": t["v_head"],
        "vocab_size": t["vocab"],
    }


def moe16b_config(t):
    return {
        "architectures": ["DeepseekForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekConfig",
                     "AutoModel": "modeling_deepseek.DeepseekModel",
                     "AutoModelForCausalLM": "modeling_deepseek.DeepseekForCausalLM"},
        "aux_loss_alpha": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "first_k_dense_replace": 1,
        "hidden_act": "silu",
        "hidden_size": t["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": t["inter"],
        "max_position_embeddings": 4096,
        "model_type": "deepseek",
        "moe_intermediate_size": t["moe_inter"],
        "moe_layer_freq": 1,
        "n_routed_experts": t["experts"],
        "n_shared_experts": 2,
        "norm_topk_prob": False,
        "num_attention_heads": t["heads"],
        "num_experts_per_tok": t["topk"],
        "num_hidden_layers": t["layers"],
        "num_key_value_heads": t["heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000,
        "scoring_func": "softmax",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.36.0",
        "use_cache": True,
        "vocab_size": t["vocab"],
    }


def is_moe_layer(c, i):
    n = c.get("n_routed_experts") or 0
    return n > 0 and i >= c.get("first_k_dense_replace", 0) and i % c.get("moe_layer_freq", 1) == 0


def tensor_list(c):
    """The tensors of the architecture in the order the converter writes them
    (mirrors dsi_arch_tensor_specs). Items: (name, shape, kind, layer, expert)
    with kind one of embed, head, norm, mat, gate, bias."""
    arch = c["architectures"][0]
    H = c["hidden_size"]
    L = c["num_hidden_layers"]
    out = [("model.embed_tokens.weight", (c["vocab_size"], H), "embed", -1, -1)]
    nh = c["num_attention_heads"]
    for i in range(L):
        p = "model.layers.%d." % i
        out.append((p + "input_layernorm.weight", (H,), "norm", i, -1))
        if arch == "DeepseekForCausalLM":
            hd = H // nh
            kvh = c.get("num_key_value_heads") or nh
            out.append((p + "self_attn.q_proj.weight", (nh * hd, H), "mat", i, -1))
            out.append((p + "self_attn.k_proj.weight", (kvh * hd, H), "mat", i, -1))
            out.append((p + "self_attn.v_proj.weight", (kvh * hd, H), "mat", i, -1))
            out.append((p + "self_attn.o_proj.weight", (H, nh * hd), "mat", i, -1))
        else:
            qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
            ql = c.get("q_lora_rank")
            kl = c["kv_lora_rank"]
            if ql:
                out.append((p + "self_attn.q_a_proj.weight", (ql, H), "mat", i, -1))
                out.append((p + "self_attn.q_a_layernorm.weight", (ql,), "norm", i, -1))
                out.append((p + "self_attn.q_b_proj.weight", (nh * qk, ql), "mat", i, -1))
            else:
                out.append((p + "self_attn.q_proj.weight", (nh * qk, H), "mat", i, -1))
            out.append((p + "self_attn.kv_a_proj_with_mqa.weight", (kl + c["qk_rope_head_dim"], H), "mat", i, -1))
            out.append((p + "self_attn.kv_a_layernorm.weight", (kl,), "norm", i, -1))
            out.append((p + "self_attn.kv_b_proj.weight",
                        (nh * (c["qk_nope_head_dim"] + c["v_head_dim"]), kl), "mat", i, -1))
            out.append((p + "self_attn.o_proj.weight", (H, nh * c["v_head_dim"]), "mat", i, -1))
        out.append((p + "post_attention_layernorm.weight", (H,), "norm", i, -1))
        if is_moe_layer(c, i):
            E = c["n_routed_experts"]
            mi = c["moe_intermediate_size"]
            out.append((p + "mlp.gate.weight", (E, H), "gate", i, -1))
            if c.get("topk_method") == "noaux_tc":
                out.append((p + "mlp.gate.e_score_correction_bias", (E,), "bias", i, -1))
            ns = c.get("n_shared_experts") or 0
            if ns:
                out.append((p + "mlp.shared_experts.gate_proj.weight", (mi * ns, H), "mat", i, -1))
                out.append((p + "mlp.shared_experts.up_proj.weight", (mi * ns, H), "mat", i, -1))
                out.append((p + "mlp.shared_experts.down_proj.weight", (H, mi * ns), "mat", i, -1))
            for e in range(E):
                q = p + "mlp.experts.%d." % e
                out.append((q + "gate_proj.weight", (mi, H), "mat", i, e))
                out.append((q + "up_proj.weight", (mi, H), "mat", i, e))
                out.append((q + "down_proj.weight", (H, mi), "mat", i, e))
        else:
            I = c["intermediate_size"]
            out.append((p + "mlp.gate_proj.weight", (I, H), "mat", i, -1))
            out.append((p + "mlp.up_proj.weight", (I, H), "mat", i, -1))
            out.append((p + "mlp.down_proj.weight", (H, I), "mat", i, -1))
    out.append(("model.norm.weight", (H,), "norm", L, -1))
    if not c.get("tie_word_embeddings"):
        out.append(("lm_head.weight", (c["vocab_size"], H), "head", L, -1))
    return out


def mtp_list(c):
    """A DeepSeek-V3 multi-token-prediction layer (index num_hidden_layers):
    present in the release, skipped by the converter."""
    H = c["hidden_size"]
    p = "model.layers.%d." % c["num_hidden_layers"]
    return [
        (p + "embed_tokens.weight", (c["vocab_size"], H), "embed"),
        (p + "enorm.weight", (H,), "norm"),
        (p + "hnorm.weight", (H,), "norm"),
        (p + "eh_proj.weight", (H, 2 * H), "mat"),
        (p + "input_layernorm.weight", (H,), "norm"),
        (p + "self_attn.kv_a_proj_with_mqa.weight", (c["kv_lora_rank"] + c["qk_rope_head_dim"], H), "mat"),
        (p + "mlp.gate.weight", (c["n_routed_experts"], H), "gate"),
        (p + "mlp.experts.0.up_proj.weight", (c["moe_intermediate_size"], H), "mat"),
        (p + "shared_head.norm.weight", (H,), "norm"),
        (p + "shared_head.head.weight", (c["vocab_size"], H), "head"),
    ]


# Per family: config, how tensors are stored (kind -> source dtype), shards.
def family_v2lite():
    c = v2_config(TINY, None, "greedy", 1, 1, None, False, "bfloat16")
    # mixed sources: attention and norms F32, MLPs, experts, router, embeddings BF16
    def dt(name, kind):
        return "F32" if kind == "norm" or ".self_attn." in name else "BF16"
    return c, dt, 1, V2_CHAT_TEMPLATE


def family_v2():
    # topk_group 1 < top_k: group limiting changes the choice (with 2 kept groups
    # and top-2 it would always agree with plain greedy)
    c = v2_config(TINY, TINY["q_lora"], "group_limited_greedy", 4, 1, None, False, "bfloat16", scaling=16.0)
    return c, (lambda name, kind: "BF16"), 1, V2_CHAT_TEMPLATE


def family_v3():
    c = v3_config(TINY)
    def dt(name, kind):
        if kind == "mat":
            return "F8_E4M3"
        return "F32" if kind == "bias" else "BF16"
    return c, dt, 1, V3_CHAT_TEMPLATE


# DeepSeek-V3's routing at its real expert count: 256 routed experts, top-8,
# 8 groups of 32 with the best 4 kept (noaux_tc, sigmoid, correction bias,
# routed_scaling_factor 2.5, norm_topk_prob), one dense layer and two MoE
# layers at the tiny widths (FP8 experts: ~3 MB of weights). Expert tables,
# pager slots and routing are sized by the expert count, so this is where a
# limit of 64 or 128 experts would show.
V3E256 = dict(TINY, experts=256, topk=8)


def family_v3e256():
    c = v3_config(V3E256)
    c["n_group"] = 8
    c["topk_group"] = 4
    return c, family_v3()[1], 1, V3_CHAT_TEMPLATE


def family_moe16b():
    c = moe16b_config(TINY)
    return c, (lambda name, kind: "BF16"), 1, V2_CHAT_TEMPLATE


def family_v2lite_sharded():
    c = v2_config(TINY, None, "greedy", 1, 1, None, False, "float16")
    return c, (lambda name, kind: "F16"), 3, V2_CHAT_TEMPLATE


def family_yarn():
    # also ties the output head to the embeddings (no lm_head.weight)
    c = v2_config(TINY, None, "greedy", 1, 1, dict(YARN), True, "bfloat16", max_pos=2048)
    return c, (lambda name, kind: "BF16"), 1, V2_CHAT_TEMPLATE


FAMILIES = {
    "v2lite": family_v2lite,
    "v2": family_v2,
    "v3": family_v3,
    "moe16b": family_moe16b,
    "v2lite_sharded": family_v2lite_sharded,
    "yarn": family_yarn,
    "v3e256": family_v3e256,   # last: the families before keep their seeds
}
FAMILY_ORDER = list(FAMILIES)


# ============================================================================
# Writing a tiny family
# ============================================================================


def rand_values(rng, shape, kind):
    if kind == "norm":
        return (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    if kind == "bias":
        return (0.01 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    return (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


def encode(rng, name, shape, kind, dt):
    """Returns ([(name, dtype, stored array)], true float32 values)."""
    w = rand_values(rng, shape, kind)
    if dt == "F32":
        return [(name, "F32", w)], w
    if dt == "BF16":
        b = f32_to_bf16_bits(w).reshape(shape)
        return [(name, "BF16", b)], bf16_bits_to_f32(b).reshape(shape)
    if dt == "F16":
        h = w.astype(np.float16)
        return [(name, "F16", h.view(np.uint16))], h.astype(np.float32)
    if dt == "F8_E4M3":
        codes, scale, true = fp8_quantize_blocks(w)
        base = name[:-len(".weight")] if name.endswith(".weight") else name
        assert base + ".weight" == name
        return [(name, "F8_E4M3", codes), (name + "_scale_inv", "F32", scale)], true
    raise ValueError(dt)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def write_tokenizer_files(outdir, vocab_size, template, max_len):
    with open(os.path.join(outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(make_tokenizer(vocab_size))
    write_json(os.path.join(outdir, "tokenizer_config.json"), tokenizer_config(template, max_len))


def write_family(name, outdir, seed, verbose):
    t0 = time.time()
    cfg, dtype_of, n_shards, template = FAMILIES[name]()
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng([seed, FAMILY_ORDER.index(name)])
    stored = []     # (name, dtype, array) in file order
    expected = []   # (name, "F32", array)
    for tname, shape, kind, _, _ in tensor_list(cfg):
        parts, true = encode(rng, tname, shape, kind, dtype_of(tname, kind))
        stored.extend(parts)
        expected.append((tname, "F32", true))
    if cfg["architectures"][0] == "DeepseekV3ForCausalLM":
        for tname, shape, kind in mtp_list(cfg):
            parts, _ = encode(rng, tname, shape, kind, dtype_of(tname, kind))
            stored.extend(parts)

    # remove stale weights from an earlier run with another layout
    for f in os.listdir(outdir):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(outdir, f))

    if n_shards == 1:
        st_write(os.path.join(outdir, "model.safetensors"), stored)
    else:
        sizes = [a.nbytes for _, _, a in stored]
        total = sum(sizes)
        shards = [[] for _ in range(n_shards)]
        acc = 0
        for item, sz in zip(stored, sizes):
            k = min(n_shards - 1, acc * n_shards // total)
            shards[k].append(item)
            acc += sz
        weight_map = {}
        for k, items in enumerate(shards):
            fname = "model-%05d-of-%05d.safetensors" % (k + 1, n_shards)
            st_write(os.path.join(outdir, fname), items)
            for n, _, _ in items:
                weight_map[n] = fname
        write_json(os.path.join(outdir, "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})

    write_json(os.path.join(outdir, "config.json"), cfg)
    write_tokenizer_files(outdir, cfg["vocab_size"], template, 16384)
    st_write(os.path.join(outdir, "expected.safetensors"), expected, {"format": "expected-f32"})
    if verbose:
        print("%-15s %3d tensors in checkpoint, %3d expected, %8d bytes of weights, %.2fs"
              % (name, len(stored), len(expected), sum(a.nbytes for _, _, a in stored), time.time() - t0))


# ============================================================================
# Zipf-skewed routing (--zipf S)
# ============================================================================
#
# Goal: with random weights every routed expert is about equally popular,
# which is the worst case for an expert cache. Real routers are skewed. With
# --zipf S the router rows are scaled so that expert popularity follows a
# capped Zipf law: the expert of popularity rank r (1 = most used) is chosen
# by a fraction f_r = min(CAP, c * r^-S) of the tokens, with c such that the
# fractions add up to top_k (every token picks top_k experts).
#
# How: the router logit of expert e for a normalised hidden state x is
# w_e . x. With random rows w_e = sigma_e * g_e (g_e iid noise) and hidden
# states that do not line up with them, the logits across tokens are close to
# independent N(0, sigma_e^2 |g_e|^2 |x|^2): an expert with a wider logit
# distribution lands in the top-k more often. RMSNorm fixes |x|, so only the
# ratios of the sigma_e matter -- nothing depends on how large the residual
# stream grows with depth. (Adding a bias direction d to the rows instead
# would need hidden states with a consistent sign along d; isotropic ones
# favour the low ranks for half the tokens and the high ranks for the other
# half.) A zero-mean logit is in the top-k for at most half of the tokens
# (when it is hugely negative it never wins), hence the cap: CAP = 0.45.
#
# The sigma_e are fitted numerically: P(expert e in the top-k) for
# independent zero-mean Gaussian logits with standard deviations sigma is an
# integral over expert e's own value t of the probability that fewer than k of
# the others exceed sigma_e * t (a Poisson-binomial count, computed by dynamic
# programming on a grid of t), and a damped fixed-point iteration moves each
# sigma_e until that probability matches f_r. --zipf-check S compares the fit
# with a Monte Carlo simulation on random RMS-normalised hidden states.
# Which expert gets which rank is a fixed random permutation per layer.

ZIPF_CAP = 0.45
_ZIPF_GRID = np.linspace(-7.0, 7.0, 281)
_ZIPF_PHI = np.exp(-0.5 * _ZIPF_GRID ** 2) / np.sqrt(2.0 * np.pi) * (_ZIPF_GRID[1] - _ZIPF_GRID[0])
_ZIPF_CACHE = {}


def _erfc(x):
    """Complementary error function (Abramowitz & Stegun 7.1.26, |error| <
    1.5e-7), for numpy arrays, without scipy."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * z)
    y = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    y = y * np.exp(-z * z)
    return np.where(x >= 0, y, 2.0 - y)


def zipf_targets(n_experts, top_k, s, cap=ZIPF_CAP):
    """Selection frequency per popularity rank: min(cap, c * r^-s), summing to top_k."""
    r = np.arange(1, n_experts + 1, dtype=np.float64) ** -float(s)
    if cap * n_experts < top_k:
        raise ValueError("top_k %d of %d experts cannot be met with a cap of %g" % (top_k, n_experts, cap))
    lo, hi = 0.0, float(top_k) / r[-1] + 1.0
    for _ in range(200):
        c = 0.5 * (lo + hi)
        if np.minimum(cap, c * r).sum() > top_k:
            hi = c
        else:
            lo = c
    return np.minimum(cap, lo * r)


def topk_frequencies(sigma, top_k):
    """P(expert e is among the top_k) for independent logits N(0, sigma_e^2)."""
    n = len(sigma)
    thr = sigma[:, None] * _ZIPF_GRID[None, :] / np.sqrt(2.0)   # (expert e, t)
    dp = np.zeros((top_k, n, _ZIPF_GRID.size))                  # P(#others above = i)
    dp[0] = 1.0
    for j in range(n):
        q = 0.5 * _erfc(thr / sigma[j])                         # P(logit_j > sigma_e t)
        q[j] = 0.0
        new = dp * (1.0 - q)
        new[1:] += dp[:-1] * q
        dp = new
    return (dp.sum(0) * _ZIPF_PHI).sum(1)


def zipf_router_scales(n_experts, top_k, s):
    """Per-rank router row scales (root mean square 1) giving Zipf-like
    selection frequencies; returns (scales, target frequencies, fitted)."""
    key = (n_experts, top_k, float(s))
    if key in _ZIPF_CACHE:
        return _ZIPF_CACHE[key]
    f = zipf_targets(n_experts, top_k, s)
    sigma = np.sqrt(f / f.mean())            # a start in the right direction
    sigma /= np.sqrt(np.mean(sigma * sigma))
    for _ in range(200):
        p = topk_frequencies(sigma, top_k)
        if np.max(np.abs(p / f - 1.0)) < 0.01:
            break
        sigma *= (f / p) ** 0.3
        sigma /= np.sqrt(np.mean(sigma * sigma))
    _ZIPF_CACHE[key] = (sigma, f, p)
    return _ZIPF_CACHE[key]


def zipf_scale_rows(w, scales):
    """Rescales router rows w (experts, hidden) to norm scale * 0.02 * sqrt(hidden):
    exact norms, so the chi-distributed norms of random rows add no noise of
    their own to the popularity (a tail expert's frequency is steep in its
    logit width)."""
    w = w.astype(np.float64)
    norms = np.sqrt(np.sum(w * w, axis=1))
    want = np.asarray(scales, dtype=np.float64) * 0.02 * np.sqrt(w.shape[1])
    return (w * (want / np.maximum(norms, 1e-30))[:, None]).astype(np.float32)


def zipf_rank_permutation(seed, layer, n_experts):
    """perm[rank - 1] = the expert of that popularity rank in this layer."""
    return np.random.default_rng([seed, 3000, layer]).permutation(n_experts)


def loglog_slope(freq, lo, hi):
    """Least-squares slope of log(freq) against log(rank) over ranks lo..hi."""
    r = np.arange(lo, hi + 1, dtype=np.float64)
    y = np.log(np.maximum(freq[lo - 1:hi], 1e-12))
    return float(np.polyfit(np.log(r), y, 1)[0])


def zipf_check(s, n_experts, top_k, hidden, tokens, seed):
    """Fits the scales, then routes random RMS-normalised hidden states
    through random router rows scaled by them and prints the observed
    selection frequency per rank beside the target."""
    t0 = time.time()
    sigma, f, p = zipf_router_scales(n_experts, top_k, s)
    fit_s = time.time() - t0
    rng = np.random.default_rng([seed, 4000])
    w = zipf_scale_rows(rng.standard_normal((n_experts, hidden), dtype=np.float32), sigma)
    counts = np.zeros(n_experts)
    done = 0
    while done < tokens:
        m = min(4096, tokens - done)
        x = rng.standard_normal((m, hidden), dtype=np.float32)
        x /= np.sqrt(np.mean(x * x, axis=1, keepdims=True))
        logits = x @ w.T
        sel = np.argpartition(-logits, top_k - 1, axis=1)[:, :top_k]
        counts += np.bincount(sel.ravel(), minlength=n_experts)
        done += m
    obs = counts / tokens
    first = int(np.sum(f >= ZIPF_CAP - 1e-9)) + 1   # first uncapped rank
    print("zipf check: S=%g, %d experts, top-%d, hidden %d, %d random tokens (fit %.2fs)"
          % (s, n_experts, top_k, hidden, tokens, fit_s))
    print("%5s %8s %10s %10s %10s" % ("rank", "scale", "target", "fitted", "simulated"))
    for r in range(n_experts):
        if r < 12 or r % 8 == 7 or r == n_experts - 1:
            print("%5d %8.3f %10.4f %10.4f %10.4f" % (r + 1, sigma[r], f[r], p[r], obs[r]))
    hi = n_experts
    print("log-log slope over ranks %d..%d: target %.3f, simulated %.3f (a Zipf law of exponent S has slope -S)"
          % (first, hi, loglog_slope(f, first, hi), loglog_slope(obs, first, hi)))
    print("most / least used expert: %.1fx; max |simulated/target - 1| = %.3f; selections per token %.3f"
          % (obs.max() / max(obs.min(), 1e-12), float(np.max(np.abs(obs / f - 1.0))), obs.sum()))
    return 0


# ============================================================================
# The big streaming checkpoint
# ============================================================================

BIG = dict(hidden=2048, vocab=102400, experts=64, topk=6, n_shared=2, moe_inter=1408, inter=10944,
           heads=16, kv_lora=512, nope=128, rope=64, v_head=128)
SHARD_LIMIT = 5 * 10 ** 9   # bytes per shard, as save_pretrained's default


def big_config(n_layers):
    t = dict(TINY)
    t.update(BIG)
    t["layers"] = n_layers
    c = v2_config(t, None, "greedy", 1, 1, None, False, "bfloat16", n_shared=BIG["n_shared"], max_pos=163840)
    return c


def tensor_bytes(shape):
    n = 2
    for d in shape:
        n *= d
    return n


def noise_pool(rng, pool_n):
    """BF16 bit patterns of N(0, 0.02) noise: tensors copy windows of it from
    random offsets, so they (and experts) differ without generating every value."""
    return np.concatenate([f32_to_bf16_bits(0.02 * rng.standard_normal(1 << 20, dtype=np.float32))
                           for _ in range(pool_n >> 20)])


def pool_values(rng, pool, count, chunk):
    """Yields the BF16 windows of one tensor (the same draws as ever)."""
    pool_n = pool.size
    done = 0
    while done < count:
        m = min(chunk, count - done)
        off = int(rng.integers(0, pool_n - m + 1))
        yield pool[off:off + m]
        done += m


def write_big(outdir, gb, seed, verbose, zipf=None, layers=None):
    """A V2-Lite-shaped BF16 checkpoint: as many layers as reach gb GB (or
    exactly `layers`); with zipf, router rows scaled for Zipf-like expert
    popularity (every other tensor is byte-identical to the plain one)."""
    t0 = time.time()
    target = gb * 1e9
    if layers is not None:
        n_layers = layers
        c = big_config(n_layers)
        size = sum(tensor_bytes(s) for _, s, _, _, _ in tensor_list(c))
    else:
        # layers: one dense layer, then MoE layers until the size is reached
        n_layers = 2
        while True:
            c = big_config(n_layers)
            size = sum(tensor_bytes(s) for _, s, _, _, _ in tensor_list(c))
            if size >= target:
                break
            if n_layers >= 1024:
                break
            n_layers += 1
    tensors = tensor_list(c)
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json" or f == "routing.json":
            os.remove(os.path.join(outdir, f))

    # split into shards of at most SHARD_LIMIT bytes
    shards = [[]]
    acc = 0
    for item in tensors:
        sz = tensor_bytes(item[1])
        if shards[-1] and acc + sz > SHARD_LIMIT:
            shards.append([])
            acc = 0
        shards[-1].append(item)
        acc += sz

    E, K = c["n_routed_experts"], c["num_experts_per_tok"]
    scales = zipf_router_scales(E, K, zipf)[0] if zipf is not None else None
    routing = {}
    rng = np.random.default_rng([seed, 1000])
    pool_n = 1 << 23
    pool = noise_pool(rng, pool_n)
    chunk = 1 << 22
    weight_map = {}
    for k, items in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else "model-%05d-of-%05d.safetensors" % (k + 1, len(shards))
        entries = [(n, "BF16", s) for n, s, _, _, _ in items]
        head, _ = st_header(entries, {"format": "pt"})
        with open(os.path.join(outdir, fname), "wb") as f:
            f.write(head)
            for n, shape, kind, layer, _ in items:
                weight_map[n] = fname
                count = int(np.prod(shape))
                if kind == "norm":
                    f.write(f32_to_bf16_bits(rand_values(rng, (count,), "norm")).tobytes())
                    continue
                if kind == "gate" and scales is not None:
                    w = bf16_bits_to_f32(np.concatenate(list(pool_values(rng, pool, count, chunk)))).reshape(shape)
                    perm = zipf_rank_permutation(seed, layer, E)
                    by_expert = np.empty(E)
                    by_expert[perm] = scales
                    f.write(f32_to_bf16_bits(zipf_scale_rows(w, by_expert)).tobytes())
                    routing[str(layer)] = [int(x) for x in perm]
                    continue
                for window in pool_values(rng, pool, count, chunk):
                    f.write(window.tobytes())
    if len(shards) > 1:
        write_json(os.path.join(outdir, "model.safetensors.index.json"),
                   {"metadata": {"total_size": size}, "weight_map": dict(sorted(weight_map.items()))})
    write_json(os.path.join(outdir, "config.json"), c)
    write_tokenizer_files(outdir, c["vocab_size"], V2_CHAT_TEMPLATE, 32768)
    if scales is not None:
        sigma, freq, _ = zipf_router_scales(E, K, zipf)
        write_json(os.path.join(outdir, "routing.json"),
                   {"zipf_exponent": zipf, "cap": ZIPF_CAP,
                    "target_frequency_by_rank": [round(float(x), 6) for x in freq],
                    "router_scale_by_rank": [round(float(x), 6) for x in sigma],
                    "expert_by_rank": routing})
    if verbose:
        print("big: %d layers, %d tensors, %.3f GB in %d file(s)%s, %.1fs"
              % (n_layers, len(tensors), size / 1e9, len(shards),
                 "" if zipf is None else ", Zipf routing S=%g" % zipf, time.time() - t0))


# ============================================================================
# The pager family: small matrices, many experts (the RSS proof)
# ============================================================================
#
# V2-Lite-like: hidden 512, vocab 512 (the tiny tokenizer), 4 layers (layer 0
# dense, 1-3 MoE), 64 routed experts top-4, 1 shared expert, moe_intermediate
# 512. Each routed expert is 3 x 512 x 512 parameters: 835,584 bytes in Q8_0
# (34 bytes per 32), so the 192 routed experts hold 160.4 MB in Q8_0 while
# everything else is about 5 MB. BF16 source (~310 MB), streamed from a noise
# pool as the big checkpoint is; no expected.safetensors. Not part of --all.

PAGER = dict(hidden=512, vocab=512, layers=4, experts=64, topk=4, moe_inter=512, inter=1024, heads=4,
             kv_lora=128, q_lora=None, nope=32, rope=16, v_head=32)


def pager_config():
    return v2_config(PAGER, None, "greedy", 1, 1, None, False, "bfloat16", n_shared=1, max_pos=2048)


def write_pager(outdir, seed, verbose):
    t0 = time.time()
    c = pager_config()
    tensors = tensor_list(c)
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(outdir, f))
    rng = np.random.default_rng([seed, 2000])
    pool_n = 1 << 22
    pool = noise_pool(rng, pool_n)
    entries = [(n, "BF16", s) for n, s, _, _, _ in tensors]
    head, size = st_header(entries, {"format": "pt"})
    with open(os.path.join(outdir, "model.safetensors"), "wb") as f:
        f.write(head)
        for _, shape, kind, _, _ in tensors:
            count = int(np.prod(shape))
            if kind == "norm":
                f.write(f32_to_bf16_bits(rand_values(rng, (count,), "norm")).tobytes())
                continue
            for window in pool_values(rng, pool, count, 1 << 21):
                f.write(window.tobytes())
    write_json(os.path.join(outdir, "config.json"), c)
    write_tokenizer_files(outdir, c["vocab_size"], V2_CHAT_TEMPLATE, 16384)
    if verbose:
        mi, H = c["moe_intermediate_size"], c["hidden_size"]
        n_moe = sum(1 for i in range(c["num_hidden_layers"]) if is_moe_layer(c, i))
        q8 = n_moe * c["n_routed_experts"] * 3 * mi * (H // 32 * 34)
        print("pager: %d tensors, %.1f MB of BF16 weights, routed experts %.1f MB in Q8_0, %.2fs"
              % (len(tensors), size / 1e6, q8 / 1e6, time.time() - t0))


EXTRA_FAMILIES = {"pager": write_pager}   # --family only, never --all


# ============================================================================


def main(argv):
    ap = argparse.ArgumentParser(description="Write tiny random DeepSeek checkpoints in Hugging Face format.")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--all", metavar="OUTDIR", help="every family into OUTDIR/<family>/")
    g.add_argument("--family", nargs=2, metavar=("NAME", "OUTDIR"),
                   help="one family (%s) into OUTDIR" % ", ".join(FAMILY_ORDER + list(EXTRA_FAMILIES)))
    g.add_argument("--big-gb", nargs=2, metavar=("X", "OUTDIR"),
                   help="a V2-Lite-shaped BF16 checkpoint of about X GB")
    g.add_argument("--zipf-check", metavar="S", type=float,
                   help="simulate --zipf S routing on random hidden states and print the frequencies")
    ap.add_argument("--zipf", metavar="S", type=float,
                    help="with --big-gb: router rows scaled so expert popularity is Zipf-like, exponent S")
    ap.add_argument("--layers", metavar="N", type=int,
                    help="with --big-gb: exactly N layers (1 dense + N-1 MoE); X may then be 0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if (a.zipf is not None or a.layers is not None) and not a.big_gb:
        ap.error("--zipf and --layers go with --big-gb")
    for s in (a.zipf, a.zipf_check):
        if s is not None and not 0 <= s <= 4:
            ap.error("the Zipf exponent must be between 0 and 4")
    if a.all:
        for name in FAMILY_ORDER:
            write_family(name, os.path.join(a.all, name), a.seed, a.verbose)
    elif a.family:
        name, outdir = a.family
        if name in EXTRA_FAMILIES:
            EXTRA_FAMILIES[name](outdir, a.seed, a.verbose)
        elif name not in FAMILIES:
            ap.error("unknown family %r (have: %s)" % (name, ", ".join(FAMILY_ORDER + list(EXTRA_FAMILIES))))
        else:
            write_family(name, outdir, a.seed, a.verbose)
    elif a.zipf_check is not None:
        return zipf_check(a.zipf_check, BIG["experts"], BIG["topk"], BIG["hidden"], 50000, a.seed)
    else:
        try:
            gb = float(a.big_gb[0])
        except ValueError:
            ap.error("--big-gb needs a number of GB")
        if a.layers is not None and a.layers < 2:
            ap.error("--layers needs at least 2 (one dense layer, then MoE layers)")
        if not gb > 0 and a.layers is None:
            ap.error("--big-gb needs a positive size")
        write_big(a.big_gb[1], gb, a.seed, a.verbose, a.zipf, a.layers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
