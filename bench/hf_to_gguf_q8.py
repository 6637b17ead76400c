#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""hf_to_gguf_q8.py -- a DeepSeek-V2(-Lite) Hugging Face checkpoint as a GGUF
file for llama.cpp (architecture deepseek2) holding exactly the numbers that
`ds convert --quant q8` (or --quant q4, --quant f16) puts in our container.

    hf_to_gguf_q8.py HF_DIR OUT.gguf --type q8|q4|f16|bf16 [--check HARNESS] [-v]
    hf_to_gguf_q8.py --selftest HARNESS [HF_DIR]

Q8_0 is quantized here with a numpy copy of dsi_quantize_row_q8_0
(deepseek_impl/quant.c): per 32 values amax/127 in float32, converted to the
nearest F16 and then rounded UP to the next F16 when below amax/127 (our
converter's choice, not llama.cpp's, which rounds to nearest), x * (1/scale)
in float32, clamped to +-127 and rounded half to even. The block bytes (F16
scale + 32 int8) are llama.cpp's block_q8_0 byte for byte, so both runtimes
hold the same quantized numbers. F16 is round-to-nearest-even, as ours.
--check / --selftest compare this numpy code with the C code through
bench/q8_check.c (linked against libdeepseek.a) on real tensors of the
checkpoint and on edge cases, and fail on any differing byte.
Q4_0 (--type q4) is written the same way: a numpy copy of
dsi_quantize_row_q4_0 (see quantize_q4_0 below), llama.cpp's block_q4_0
byte for byte; attn_k_b then holds our dequantized Q4_0 values in F32.

What goes where (our converter keeps norms and the router F32; so does this):

    model.embed_tokens            token_embd            Q8_0 / F16
    lm_head                       output                Q8_0 / F16
    *layernorm, model.norm        *_norm                F32
    self_attn.q_proj              attn_q                Q8_0 / F16
    kv_a_proj_with_mqa            attn_kv_a_mqa         Q8_0 / F16
    kv_b_proj  (rows h*(nope+v) + 0..nope-1)  attn_k_b  F32 (q8) / F16, transposed per head
               (rows h*(nope+v) + nope + j)   attn_v_b  Q8_0 / F16, rows unchanged
    o_proj                        attn_output           Q8_0 / F16
    mlp.gate (router)             ffn_gate_inp          F32
    mlp.experts.E.*_proj          ffn_*_exps (stacked)  Q8_0 / F16
    mlp.shared_experts.*_proj     ffn_*_shexp           Q8_0 / F16
    mlp.*_proj (dense layers)     ffn_*                 Q8_0 / F16

llama.cpp's MLA path wants kv_b split into attn_k_b (n_head, kv_lora, nope) --
the nope part transposed -- and attn_v_b (n_head, v, kv_lora). v_b's rows are
kv_b's rows, so its Q8_0 blocks are ours verbatim; k_b's rows run along the
other axis, where our blocks cannot be re-used, so in the q8 file k_b holds
our dequantized kv_b values (int8 x F16 scale) exactly, in F32: 3 MB more per
layer, < 1% of the bytes a decode step reads.

Needs numpy and the gguf package (pip install gguf).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

QK = 32          # values per Q8_0 block
QB = 34          # bytes per Q8_0 block: F16 scale + 32 int8

# ============================================================================
# Our Q8_0 and F16 encoders, in numpy
# ============================================================================


def f32_to_f16_bits(x):
    """float32 -> IEEE half bit patterns, round to nearest even (numpy's cast
    is IEEE RNE, subnormals and overflow to inf included, like dsi_f32_to_f16)."""
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float16).view(np.uint16)


def quantize_q8_0(x):
    """x: float32 (rows, cols), cols % 32 == 0 -> uint8 (rows, cols/32*34),
    the bytes dsi_quantize_row_q8_0 writes for each row."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    assert cols % QK == 0
    xb = x.reshape(rows, cols // QK, QK)
    amax = np.max(np.abs(xb), axis=2)                       # float32
    want = amax / np.float32(127.0)                          # float32 division, as in C
    s16 = f32_to_f16_bits(want).copy()
    inf = (s16 & 0x7C00) == 0x7C00
    # C: clamp an overflow to the largest finite half, else round the scale up
    below = ~inf & (s16.view(np.float16).astype(np.float32) < want)
    s16[inf] = 0x7BFF
    s16[below] += 1
    scale = s16.view(np.float16).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(scale > 0, np.float32(1.0) / scale, np.float32(0.0)).astype(np.float32)
    v = xb * inv[:, :, None]                                 # float32 product
    np.clip(v, np.float32(-127.0), np.float32(127.0), out=v)
    q = np.rint(v).astype(np.int8)                           # half to even, as x + 1.5*2^23 - 1.5*2^23
    out = np.empty((rows, cols // QK, QB), dtype=np.uint8)
    out[:, :, 0:2] = s16.astype("<u2").view(np.uint8).reshape(rows, cols // QK, 2)
    out[:, :, 2:] = q.view(np.uint8)
    return out.reshape(rows, cols // QK * QB)


def dequantize_q8_0(b, cols):
    """Inverse of quantize_q8_0: uint8 (rows, cols/32*34) -> float32 (rows, cols),
    int8 times the F16 scale, exact in float32."""
    rows = b.shape[0]
    bb = b.reshape(rows, cols // QK, QB)
    scale = np.ascontiguousarray(bb[:, :, 0:2]).view("<u2").view(np.float16).astype(np.float32)
    q = np.ascontiguousarray(bb[:, :, 2:]).view(np.int8).astype(np.float32)
    return (q * scale).reshape(rows, cols)


Q4B = 18         # bytes per Q4_0 block: F16 scale + 16 bytes of nibbles


def quantize_q4_0(x):
    """x: float32 (rows, cols), cols % 32 == 0 -> uint8 (rows, cols/32*18),
    the bytes dsi_quantize_row_q4_0 writes (llama.cpp's block_q4_0 layout;
    our rule: the first value of largest magnitude m maps to -8, |d| = |m|/8
    rounded UP to the next F16, d negative when m > 0; q = rint(x/d) in
    [-8, 7], half to even; nibble j = value j, high nibble j = value j+16)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, cols = x.shape
    assert cols % QK == 0
    xb = x.reshape(rows, cols // QK, QK)
    ax = np.abs(xb)
    i = np.argmax(ax, axis=2)                                # first index of the maximum
    amax = np.take_along_axis(ax, i[:, :, None], 2)[:, :, 0]
    m = np.take_along_axis(xb, i[:, :, None], 2)[:, :, 0]
    want = amax / np.float32(8.0)
    s16 = f32_to_f16_bits(want).copy()
    inf = (s16 & 0x7C00) == 0x7C00
    below = ~inf & (s16.view(np.float16).astype(np.float32) < want)
    s16[inf] = 0x7BFF
    s16[below] += 1
    s16[m > 0] |= 0x8000
    zero = amax == 0
    s16[zero] = 0
    d = s16.view(np.float16).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(zero, np.float32(0.0), np.float32(1.0) / np.where(zero, np.float32(1.0), d)).astype(np.float32)
    v = xb * inv[:, :, None]
    np.clip(v, np.float32(-8.0), np.float32(7.0), out=v)
    q = (np.rint(v).astype(np.int16) + 8).astype(np.uint8)
    out = np.empty((rows, cols // QK, Q4B), dtype=np.uint8)
    out[:, :, 0:2] = s16.astype("<u2").view(np.uint8).reshape(rows, cols // QK, 2)
    out[:, :, 2:] = q[:, :, :16] | (q[:, :, 16:] << 4)
    return out.reshape(rows, cols // QK * Q4B)


def dequantize_q4_0(b, cols):
    """Inverse of quantize_q4_0: (nibble - 8) times the F16 scale, exact in float32."""
    rows = b.shape[0]
    bb = b.reshape(rows, cols // QK, Q4B)
    d = np.ascontiguousarray(bb[:, :, 0:2]).view("<u2").view(np.float16).astype(np.float32)
    qs = bb[:, :, 2:]
    q = np.concatenate([qs & 15, qs >> 4], axis=2).astype(np.float32) - np.float32(8.0)
    return (q * d).reshape(rows, cols)


def f32_to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest even (exact for values
    that came from BF16; NaN is not expected in weights)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def encode(x, qtype):
    """A 2-D float32 matrix in the file's type: ('Q8_0'/'Q4_0', uint8 bytes), ('F16', float16)
    or ('BF16', uint16 bit patterns)."""
    if qtype == "q8":
        return quantize_q8_0(x)
    if qtype == "q4":
        return quantize_q4_0(x)
    if qtype == "bf16":
        return f32_to_bf16_bits(x)
    return f32_to_f16_bits(x).view(np.float16)


# ============================================================================
# safetensors (BF16 / F16 / F32) by memory map
# ============================================================================

ST_NP = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}


class Checkpoint:
    def __init__(self, hf_dir):
        self.dir = hf_dir
        with open(os.path.join(hf_dir, "config.json")) as f:
            self.config = json.load(f)
        idx = os.path.join(hf_dir, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.tensors = {}
        for fn in files:
            path = os.path.join(hf_dir, fn)
            with open(path, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                hdr = json.loads(f.read(n))
            base = 8 + n
            for name, t in hdr.items():
                if name == "__metadata__":
                    continue
                self.tensors[name] = (path, base, t)
        self._maps = {}

    def has(self, name):
        return name in self.tensors

    def get(self, name):
        """The tensor as float32 (BF16 widened exactly)."""
        path, base, t = self.tensors[name]
        dt = t["dtype"]
        if dt not in ST_NP:
            raise SystemExit("hf_to_gguf_q8: %s: dtype %s is not supported here (BF16, F16, F32)" % (name, dt))
        if path not in self._maps:
            self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
        b, e = t["data_offsets"]
        raw = self._maps[path][base + b:base + e].view(ST_NP[dt]).reshape(t["shape"])
        if dt == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)


# ============================================================================
# Self-test against the C code
# ============================================================================


def run_harness(harness, mode, x):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.f32"), os.path.join(d, "out")
        np.ascontiguousarray(x, dtype=np.float32).tofile(src)
        subprocess.run([harness, mode, src, dst], check=True)
        return np.fromfile(dst, dtype=np.uint8)


def edge_cases():
    """Blocks that probe the scale rounding: zeros, subnormal and huge
    amax, ties at .5 after scaling, amax exactly representable, mixed signs."""
    rng = np.random.default_rng(7)
    blocks = [np.zeros(QK, np.float32), np.full(QK, 1e-30, np.float32), np.full(QK, -7e-8, np.float32),
              np.full(QK, 6.0e4, np.float32), np.full(QK, 1.0e6, np.float32),
              np.full(QK, 127.0 * 65510.0, np.float32), np.full(QK, 1e10, np.float32),
              np.float32(127.0) * np.linspace(-1, 1, QK, dtype=np.float32),
              np.arange(QK, dtype=np.float32) - np.float32(15.5),
              (np.arange(QK, dtype=np.float32) + np.float32(0.5)) * np.float32(2.0 ** -10)]
    for e in (-30, -20, -14, -10, -3, 0, 5, 12, 15, 16):
        blocks.append((rng.standard_normal(QK) * 2.0 ** e).astype(np.float32))
    blocks.append(rng.standard_normal(QK * 4096).astype(np.float32) * np.float32(0.02))
    blocks.append(rng.uniform(-1, 1, QK * 4096).astype(np.float32) * np.float32(3.7))
    return np.concatenate(blocks)


def selftest(harness, ckpt=None, verbose=True):
    """numpy vs C on edge cases and (with a checkpoint) a few real tensors; returns
    the number of differing bytes (0 = bit-exact)."""
    cases = [("edge cases", edge_cases())]
    if ckpt is not None:
        for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.kv_b_proj.weight",
                     "model.layers.1.mlp.experts.0.down_proj.weight", "model.layers.1.self_attn.q_proj.weight",
                     "lm_head.weight"):
            if ckpt.has(name):
                x = ckpt.get(name)
                x = x[: max(1, (1 << 21) // x.shape[-1])]          # the first ~2M values
                cases.append((name, x.reshape(-1)))
    bad_total = 0
    for label, x in cases:
        flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        for mode in ("q8", "q4", "f16"):
            want = run_harness(harness, mode, flat)
            if mode == "q8":
                got = quantize_q8_0(flat.reshape(1, -1)).reshape(-1)
            elif mode == "q4":
                got = quantize_q4_0(flat.reshape(1, -1)).reshape(-1)
            else:
                with np.errstate(over="ignore"):
                    got = f32_to_f16_bits(flat).view(np.uint8).reshape(-1)
            bad = int(np.count_nonzero(want != got)) if want.size == got.size else max(want.size, got.size)
            bad_total += bad
            if verbose:
                print("  %-4s %-48s %9d values: %s" % (mode, label, flat.size,
                                                         "bit-exact" if bad == 0 else "%d bytes differ" % bad))
    return bad_total


# ============================================================================
# GGUF
# ============================================================================


def tokenizer_meta(hf_dir, n_vocab):
    """Token list padded to the model's vocabulary, types, merges, special ids."""
    import gguf
    with open(os.path.join(hf_dir, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    vocab = dict(tok["model"]["vocab"])
    types = {}
    for a in tok.get("added_tokens", []):
        vocab[a["content"]] = a["id"]
        types[a["id"]] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    by_id = {i: s for s, i in vocab.items()}
    tokens, ttypes = [], []
    for i in range(n_vocab):
        if i in by_id:
            tokens.append(by_id[i])
            ttypes.append(types.get(i, gguf.TokenType.NORMAL))
        else:
            tokens.append("[PAD%d]" % i)
            ttypes.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"].get("merges", [])]
    return tokens, ttypes, merges


def plan(ck, qtype, kv_b_whole=False):
    """[(gguf name, numpy shape, dtype, nbytes, raw_dtype, producer)] in file order;
    producer() returns the array to write."""
    import gguf
    T, M = gguf.TENSOR_NAMES, gguf.MODEL_TENSOR
    c = ck.config
    H, L, nh = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
    nope, vdim, kl = c.get("qk_nope_head_dim", 0), c.get("v_head_dim", 0), c.get("kv_lora_rank", 0)
    E = c.get("n_routed_experts") or 0
    k_dense = c.get("first_k_dense_replace", 0)
    freq = c.get("moe_layer_freq", 1)
    items = []

    def mat_info(rows, cols):
        if qtype == "q8":
            return (rows, cols // QK * QB), np.uint8, rows * cols // QK * QB, gguf.GGMLQuantizationType.Q8_0
        if qtype == "q4":
            return (rows, cols // QK * Q4B), np.uint8, rows * cols // QK * Q4B, gguf.GGMLQuantizationType.Q4_0
        if qtype == "bf16":
            return (rows, cols), np.uint16, rows * cols * 2, gguf.GGMLQuantizationType.BF16
        return (rows, cols), np.float16, rows * cols * 2, None

    def add_mat(gname, hfname):
        rows, cols = ck.tensors[hfname][2]["shape"]
        shape, dt, nb, raw = mat_info(rows, cols)
        items.append((gname, shape, dt, nb, raw, lambda: encode(ck.get(hfname), qtype)))

    def add_f32(gname, hfname):
        shape = tuple(ck.tensors[hfname][2]["shape"])
        items.append((gname, shape, np.float32, int(np.prod(shape)) * 4, None, lambda: ck.get(hfname)))

    def add_stack(gname, names):
        rows, cols = ck.tensors[names[0]][2]["shape"]
        shape, dt, nb, raw = mat_info(rows, cols)

        def make():
            out = np.empty((len(names),) + shape, dtype=dt)
            for e, n in enumerate(names):
                out[e] = encode(ck.get(n), qtype)
            return out
        items.append((gname, (len(names),) + shape, dt, nb * len(names), raw, make))

    def kv_b_parts(hfname):
        """attn_k_b (nh, kl, nope) and attn_v_b (nh, vdim, kl) from kv_b (nh*(nope+vdim), kl)."""
        w = ck.get(hfname)
        if qtype == "q8":
            qb = quantize_q8_0(w)                       # our converter's bytes for kv_b
            deq = dequantize_q8_0(qb, kl)               # its exact values
            qb = qb.reshape(nh, nope + vdim, kl // QK * QB)
            k_b = np.ascontiguousarray(deq.reshape(nh, nope + vdim, kl)[:, :nope, :].transpose(0, 2, 1))
            v_b = np.ascontiguousarray(qb[:, nope:, :])
            return k_b.astype(np.float32), v_b
        if qtype == "q4":
            qb = quantize_q4_0(w)
            deq = dequantize_q4_0(qb, kl)
            qb = qb.reshape(nh, nope + vdim, kl // QK * Q4B)
            k_b = np.ascontiguousarray(deq.reshape(nh, nope + vdim, kl)[:, :nope, :].transpose(0, 2, 1))
            return k_b.astype(np.float32), np.ascontiguousarray(qb[:, nope:, :])
        if qtype == "bf16":
            w16 = f32_to_bf16_bits(w).reshape(nh, nope + vdim, kl)
        else:
            w16 = f32_to_f16_bits(w).view(np.float16).reshape(nh, nope + vdim, kl)
        return np.ascontiguousarray(w16[:, :nope, :].transpose(0, 2, 1)), np.ascontiguousarray(w16[:, nope:, :])

    def add_ffn(i, p, n):
        if E and i >= k_dense and i % freq == 0:
            add_f32(n(M.FFN_GATE_INP), p + "mlp.gate.weight")
            for t, w in ((M.FFN_GATE_EXP, "gate_proj"), (M.FFN_UP_EXP, "up_proj"), (M.FFN_DOWN_EXP, "down_proj")):
                add_stack(n(t), [p + "mlp.experts.%d.%s.weight" % (e, w) for e in range(E)])
            if (c.get("n_shared_experts") or 0) > 0:
                add_mat(n(M.FFN_GATE_SHEXP), p + "mlp.shared_experts.gate_proj.weight")
                add_mat(n(M.FFN_UP_SHEXP), p + "mlp.shared_experts.up_proj.weight")
                add_mat(n(M.FFN_DOWN_SHEXP), p + "mlp.shared_experts.down_proj.weight")
        else:
            add_mat(n(M.FFN_GATE), p + "mlp.gate_proj.weight")
            add_mat(n(M.FFN_UP), p + "mlp.up_proj.weight")
            add_mat(n(M.FFN_DOWN), p + "mlp.down_proj.weight")

    mha = c.get("architectures", [None])[0] == "DeepseekForCausalLM"
    add_mat(T[M.TOKEN_EMBD] + ".weight", "model.embed_tokens.weight")
    for i in range(L):
        p = "model.layers.%d." % i

        def n(t):
            return T[t].format(bid=i) + ".weight"
        add_f32(n(M.ATTN_NORM), p + "input_layernorm.weight")
        if mha:
            # DeepSeek-MoE: llama.cpp's "deepseek" permutes q and k rows per head
            # (rotary pairs interleaved) and keeps v and o as they are
            for t, hfn, heads in ((M.ATTN_Q, "q_proj", nh), (M.ATTN_K, "k_proj", c.get("num_key_value_heads") or nh)):
                rows, cols = ck.tensors[p + "self_attn.%s.weight" % hfn][2]["shape"]
                shape, dt, nb, raw = mat_info(rows, cols)

                def make(hfname=p + "self_attn.%s.weight" % hfn, heads=heads):
                    x = ck.get(hfname)
                    x = x.reshape(heads, 2, x.shape[0] // heads // 2, x.shape[1]).swapaxes(1, 2).reshape(x.shape)
                    return encode(np.ascontiguousarray(x), qtype)
                items.append((n(t), shape, dt, nb, raw, make))
            add_mat(n(M.ATTN_V), p + "self_attn.v_proj.weight")
            add_mat(n(M.ATTN_OUT), p + "self_attn.o_proj.weight")
            add_f32(n(M.FFN_NORM), p + "post_attention_layernorm.weight")
            add_ffn(i, p, n)
            continue
        if c.get("q_lora_rank"):
            add_mat(n(M.ATTN_Q_A), p + "self_attn.q_a_proj.weight")
            add_f32(n(M.ATTN_Q_A_NORM), p + "self_attn.q_a_layernorm.weight")
            add_mat(n(M.ATTN_Q_B), p + "self_attn.q_b_proj.weight")
        else:
            add_mat(n(M.ATTN_Q), p + "self_attn.q_proj.weight")
        add_mat(n(M.ATTN_KV_A_MQA), p + "self_attn.kv_a_proj_with_mqa.weight")
        add_f32(n(M.ATTN_KV_A_NORM), p + "self_attn.kv_a_layernorm.weight")
        cache = {}
        if kv_b_whole:
            # the layout of GGUF files written before llama.cpp split kv_b
            add_mat(n(M.ATTN_KV_B), p + "self_attn.kv_b_proj.weight")

        def part(k, hfname=p + "self_attn.kv_b_proj.weight", cache=cache):
            if "kv" not in cache:
                cache["kv"] = kv_b_parts(hfname)
            v = cache["kv"][k]
            if k == 1:
                cache.clear()                           # v_b is written right after k_b
            return v
        if kv_b_whole:
            pass
        elif qtype in ("q8", "q4"):
            bb, gt = (QB, gguf.GGMLQuantizationType.Q8_0) if qtype == "q8" else (Q4B, gguf.GGMLQuantizationType.Q4_0)
            items.append((n(M.ATTN_K_B), (nh, kl, nope), np.float32, nh * kl * nope * 4, None, lambda part=part: part(0)))
            items.append((n(M.ATTN_V_B), (nh, vdim, kl // QK * bb), np.uint8, nh * vdim * kl // QK * bb,
                          gt, lambda part=part: part(1)))
        else:
            dt, raw = (np.uint16, gguf.GGMLQuantizationType.BF16) if qtype == "bf16" else (np.float16, None)
            items.append((n(M.ATTN_K_B), (nh, kl, nope), dt, nh * kl * nope * 2, raw, lambda part=part: part(0)))
            items.append((n(M.ATTN_V_B), (nh, vdim, kl), dt, nh * vdim * kl * 2, raw, lambda part=part: part(1)))
        add_mat(n(M.ATTN_OUT), p + "self_attn.o_proj.weight")
        add_f32(n(M.FFN_NORM), p + "post_attention_layernorm.weight")
        add_ffn(i, p, n)
    add_f32(T[M.OUTPUT_NORM] + ".weight", "model.norm.weight")
    if not c.get("tie_word_embeddings"):
        add_mat(T[M.OUTPUT] + ".weight", "lm_head.weight")
    return items


def write_gguf(ck, out_path, qtype, verbose, kv_b_whole=False):
    import gguf
    c = ck.config
    arch = c.get("architectures", [None])[0]
    if arch not in ("DeepseekV2ForCausalLM", "DeepseekForCausalLM"):
        raise SystemExit("hf_to_gguf_q8: %s is not a DeepseekV2ForCausalLM or DeepseekForCausalLM checkpoint" % ck.dir)
    mha = arch == "DeepseekForCausalLM"
    if c.get("scoring_func", "softmax") != "softmax" or \
            (c.get("topk_method") or "greedy") not in ("greedy", "group_limited_greedy"):
        raise SystemExit("hf_to_gguf_q8: only softmax scoring with greedy or group-limited top-k (V2) is written here")
    t0 = time.time()
    tmp = out_path + ".tmp"
    w = gguf.GGUFWriter(tmp, "deepseek" if mha else "deepseek2")
    E = c.get("n_routed_experts") or 0
    w.add_name("deepseek.h bench model (%d layers, random weights)" % c["num_hidden_layers"])
    w.add_file_type({"q8": gguf.LlamaFileType.MOSTLY_Q8_0, "q4": gguf.LlamaFileType.MOSTLY_Q4_0,
                     "bf16": gguf.LlamaFileType.MOSTLY_BF16}.get(
        qtype, gguf.LlamaFileType.MOSTLY_F16))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_block_count(c["num_hidden_layers"])
    w.add_head_count(c["num_attention_heads"])
    if mha:
        w.add_head_count_kv(c.get("num_key_value_heads") or c["num_attention_heads"])
    else:
        w.add_head_count_kv(c["num_attention_heads"] if kv_b_whole else 1)   # MLA as MQA over the latent
    w.add_rope_freq_base(float(c.get("rope_theta", 10000)))
    w.add_layer_norm_rms_eps(float(c["rms_norm_eps"]))
    w.add_vocab_size(c["vocab_size"])
    if mha:
        w.add_rope_dimension_count(c["hidden_size"] // c["num_attention_heads"])
    else:
        # llama.cpp reads q_lora_rank unless the layer count says "Lite" (26/27
        # layers); 0 selects the plain q projection (attn_q)
        w.add_q_lora_rank(c.get("q_lora_rank") or 0)
        w.add_kv_lora_rank(c["kv_lora_rank"])
        if kv_b_whole:
            # before the split: per-head sizes in key_length / value_length
            w.add_key_length(c["qk_nope_head_dim"] + c["qk_rope_head_dim"])
            w.add_value_length(c["v_head_dim"])
        else:
            w.add_key_length(c["kv_lora_rank"] + c["qk_rope_head_dim"])
            w.add_value_length(c["kv_lora_rank"])
            w.add_key_length_mla(c["qk_nope_head_dim"] + c["qk_rope_head_dim"])
            w.add_value_length_mla(c["v_head_dim"])
        w.add_rope_dimension_count(c["qk_rope_head_dim"])
    rs = c.get("rope_scaling")
    if rs:
        if rs.get("type", rs.get("rope_type")) != "yarn":
            raise SystemExit("hf_to_gguf_q8: rope_scaling other than YaRN is not written here")
        # llama.cpp's converter: factor, the original context, and
        # 0.1 * mscale_all_dim as the log multiplier (mscale is dropped)
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(rs["factor"]))
        w.add_rope_scaling_orig_ctx_len(int(rs["original_max_position_embeddings"]))
        w.add_rope_scaling_yarn_log_mul(0.1 * float(rs.get("mscale_all_dim", 0.0)))
    else:
        w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    if E:
        w.add_leading_dense_block_count(c.get("first_k_dense_replace", 0))
        w.add_expert_count(E)
        w.add_expert_used_count(c["num_experts_per_tok"])
        w.add_expert_shared_count(c.get("n_shared_experts") or 0)
        w.add_expert_feed_forward_length(c["moe_intermediate_size"])
        w.add_expert_weights_scale(float(c.get("routed_scaling_factor") or 1.0))
        w.add_expert_weights_norm(bool(c.get("norm_topk_prob", False)))
        if not mha:
            w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
        if c.get("topk_method") == "group_limited_greedy":
            w.add_expert_group_count(int(c["n_group"]))
            w.add_expert_group_used_count(int(c["topk_group"]))
    tokens, ttypes, merges = tokenizer_meta(ck.dir, c["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("deepseek-v3")                      # the pre-tokenizer regexes of our tokenizer.json
    w.add_token_list(tokens)
    w.add_token_types(ttypes)
    w.add_token_merges(merges)
    w.add_bos_token_id(c.get("bos_token_id", 0))
    w.add_eos_token_id(c.get("eos_token_id", 1))
    w.add_add_bos_token(True)
    tc_path = os.path.join(ck.dir, "tokenizer_config.json")
    if os.path.exists(tc_path):
        with open(tc_path, encoding="utf-8") as f:
            tmpl = json.load(f).get("chat_template")
        if isinstance(tmpl, str):
            w.add_chat_template(tmpl)                   # as llama.cpp's converter does

    items = plan(ck, qtype, kv_b_whole)
    for name, shape, dt, nb, raw, _ in items:
        w.add_tensor_info(name, shape, np.dtype(dt), nb, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for k, (name, shape, dt, nb, raw, make) in enumerate(items):
        a = make()
        assert a.dtype == dt and a.nbytes == nb, (name, a.dtype, a.shape, nb)
        w.write_tensor_data(a)
        total += nb
        if verbose:
            print("  [%3d/%d] %-28s %-5s %s" % (k + 1, len(items), name,
                                               raw.name if raw is not None else np.dtype(dt).name, list(shape)),
                  flush=True)
        del a
    w.close()
    os.replace(tmp, out_path)
    print("wrote %s: %d tensors, %.3f GB of tensor data (%s), %.0f s"
          % (out_path, len(items), total / 1e9, qtype, time.time() - t0))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("hf_dir", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--type", choices=("q8", "q4", "f16", "bf16"), default="q8")
    ap.add_argument("--check", metavar="HARNESS", help="first prove the numpy encoders bit-exact against bench/q8_check.c")
    ap.add_argument("--selftest", metavar="HARNESS", help="only the numpy-vs-C comparison (HF_DIR optional)")
    ap.add_argument("--kv-b-whole", action="store_true",
                    help="write attn_kv_b whole, as GGUF files from before llama.cpp's MLA split (for tests)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if a.selftest:
        ck = Checkpoint(a.hf_dir) if a.hf_dir else None
        bad = selftest(a.selftest, ck)
        print("numpy vs C encoders: %s" % ("bit-exact" if bad == 0 else "%d bytes differ" % bad))
        return 0 if bad == 0 else 1
    if not a.hf_dir or not a.out:
        ap.error("HF_DIR and OUT.gguf are needed")
    ck = Checkpoint(a.hf_dir)
    if a.check:
        bad = selftest(a.check, ck, a.verbose)
        if bad:
            print("hf_to_gguf_q8: the numpy encoders differ from the C ones (%d bytes): not writing" % bad,
                  file=sys.stderr)
            return 1
        print("numpy vs C encoders: bit-exact")
    write_gguf(ck, a.out, a.type, a.verbose, a.kv_b_whole)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
