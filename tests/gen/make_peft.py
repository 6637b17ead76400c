#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_peft.py -- PEFT LoRA adapter directories over the test checkpoints.

For the tiny checkpoints of make_checkpoint.py (TESTDATA/<family>/), writes
adapter directories as PEFT saves them (adapter_config.json,
adapter_model.safetensors) into OUTDIR/<case>/: good ones in every form the
converter must read (F32, BF16, F16; names with and without ".weight" and
with the "default" adapter name; target_modules as a list, a name or a
regular expression; rsLoRA; fan_in_fan_out exports with transposed
matrices; DeepSeek-V2, V3 and DeepSeek-MoE bases), and broken ones, one
fault each, that the converter must refuse.

Beside each good case, expected.safetensors holds the references computed
here with numpy, independently of the C code, all F32:
  <module>.lora_A / .lora_B   the matrices upright, (r, in) and (out, r), as
                              the file's dtype decodes them
  <module>.lora_A.f16 / .lora_B.f16   the same rounded to F16 by numpy
  <module>.delta              s * B A (s = alpha / r, or alpha / sqrt(r))
  <module>.merged             W + s * B A, W from the checkpoint's
                              expected.safetensors (the true F32 weights)
and expected.json the adapter's summary (r, alpha, scale, targets, n_params).

    make_peft.py TESTDATA OUTDIR

Only Python 3 and numpy; deterministic.
"""
import json
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_checkpoint import f32_to_bf16_bits, bf16_bits_to_f32, st_write  # noqa: E402


def st_read_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
    hdr.pop("__metadata__", None)
    return hdr, 8 + n


def st_read(path):
    """name -> float32 array (F32 files only: expected.safetensors)."""
    hdr, start = st_read_header(path)
    data = open(path, "rb").read()
    out = {}
    for name, t in hdr.items():
        assert t["dtype"] == "F32", name
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[start + b:start + e], dtype="<f4").reshape(t["shape"])
    return out


def shapes(family_dir):
    """module path -> (out, in) of every 2-D weight of the checkpoint."""
    hdr, _ = st_read_header(os.path.join(family_dir, "model.safetensors"))
    return {n[:-7]: tuple(t["shape"]) for n, t in hdr.items() if n.endswith(".weight") and len(t["shape"]) == 2}


def encode(a, dt):
    """(stored array, the values it decodes to as float32)."""
    if dt == "F32":
        a = a.astype(np.float32)
        return a, a
    if dt == "F16":
        h = a.astype(np.float16)
        return h.view(np.uint16), h.astype(np.float32)
    b = f32_to_bf16_bits(a)
    return b, bf16_bits_to_f32(b).reshape(a.shape)


class Case:
    def __init__(self, out, name, family_dir, r=4, alpha=8.0, targets=None, **cfg):
        self.dir = os.path.join(out, name)
        os.makedirs(self.dir, exist_ok=True)
        self.family_dir = family_dir
        self.shapes = shapes(family_dir)
        self.r, self.alpha = r, alpha
        self.cfg = {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
            "target_modules": targets, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
            "use_rslora": False, "use_dora": False, "modules_to_save": None, "rank_pattern": {},
            "alpha_pattern": {}, "inference_mode": True, "init_lora_weights": True,
            "base_model_name_or_path": "tests/" + os.path.basename(family_dir), "revision": None,
            "layers_to_transform": None, "layers_pattern": None,
        }
        self.cfg.update(cfg)
        self.tensors = []          # (name, dtype, stored array)
        self.expected = []         # (name, "F32", array)
        self.modules = []
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))

    def scale(self):
        return self.alpha / (np.sqrt(self.r) if self.cfg.get("use_rslora") else self.r)

    def add(self, path, dt_a="F32", dt_b="F32", name_a=None, name_b=None, transpose=False, rank=None,
            in_=None, skip_b=False, ref=True):
        out, inn = self.shapes[path]
        if in_ is not None:
            inn = in_
        r = rank or self.r
        A = self.rng.normal(0, 0.2, (r, inn)).astype(np.float32)
        B = self.rng.normal(0, 0.2, (out, r)).astype(np.float32)
        sa, A = encode(A, dt_a)
        sb, B = encode(B, dt_b)
        if transpose:
            sa, sb = np.ascontiguousarray(sa.T), np.ascontiguousarray(sb.T)
        na = name_a or "base_model.model.%s.lora_A.weight" % path
        nb = name_b or "base_model.model.%s.lora_B.weight" % path
        self.tensors.append((na, dt_a, sa))
        if not skip_b:
            self.tensors.append((nb, dt_b, sb))
        if ref:
            self.modules.append(path)
            self.expected += [(path + ".lora_A", "F32", A), (path + ".lora_B", "F32", B),
                              (path + ".lora_A.f16", "F32", A.astype(np.float16).astype(np.float32)),
                              (path + ".lora_B.f16", "F32", B.astype(np.float16).astype(np.float32))]
            delta = (self.scale() * (B.astype(np.float64) @ A.astype(np.float64))).astype(np.float32)
            self.expected.append((path + ".delta", "F32", delta))

    def write(self, good=True):
        with open(os.path.join(self.dir, "adapter_config.json"), "w") as f:
            json.dump(self.cfg, f, indent=2)
        st_write(os.path.join(self.dir, "adapter_model.safetensors"), self.tensors)
        if not good:
            return
        base = st_read(os.path.join(self.family_dir, "expected.safetensors"))
        exp = list(self.expected)
        for m in self.modules:
            W = base[m + ".weight"].astype(np.float64)
            delta = [a for n, _, a in self.expected if n == m + ".delta"][0]
            exp.append((m + ".merged", "F32", (W + delta.astype(np.float64)).astype(np.float32)))
        st_write(os.path.join(self.dir, "expected.safetensors"), exp)
        mods = set()
        for m in self.modules:
            mods.add(m.rsplit(".", 1)[1])
        n_params = sum(self.r * (self.shapes[m][0] + self.shapes[m][1]) for m in self.modules)
        with open(os.path.join(self.dir, "expected.json"), "w") as f:
            json.dump({"r": self.r, "alpha": self.alpha, "scale": self.scale(), "targets": sorted(mods),
                       "modules": self.modules, "n_params": n_params}, f, indent=1)


def attn(layers, names):
    return ["model.layers.%d.self_attn.%s" % (l, n) for l in layers for n in names]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    td, out = sys.argv[1], sys.argv[2]
    v2, v3, mha = (os.path.join(td, f) for f in ("v2lite", "v3", "moe16b"))
    L = range(3)

    # -- good ------------------------------------------------------------
    c = Case(out, "good", v2, targets=["q_proj", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    for p in attn(L, ["q_proj", "kv_b_proj", "o_proj"]):
        c.add(p)
    for n in ("gate_proj", "up_proj", "down_proj"):
        c.add("model.layers.0.mlp.%s" % n)
        for l in (1, 2):
            c.add("model.layers.%d.mlp.shared_experts.%s" % (l, n))
        for x in range(8):
            c.add("model.layers.1.mlp.experts.%d.%s" % (x, n))
    for x in (0, 3):   # some experts, some of their matrices
        for n in ("up_proj", "down_proj"):
            c.add("model.layers.2.mlp.experts.%d.%s" % (x, n))
    c.write()

    # BF16 and F16, PEFT's in-memory names, a regular expression, rsLoRA
    c = Case(out, "mixed", v2, r=4, alpha=6.0, targets=r".*\.(q_proj|kv_a_proj_with_mqa)$", use_rslora=True)
    for p in attn(L, ["q_proj", "kv_a_proj_with_mqa"]):
        c.add(p, dt_a="BF16", dt_b="F16", name_a="base_model.model.%s.lora_A.default.weight" % p,
              name_b="base_model.model.%s.lora_B" % p)
    c.write()

    # fan_in_fan_out exports: A as (in, r), B as (r, out)
    c = Case(out, "fifo", v2, r=2, alpha=2.0, targets=["o_proj", "down_proj"], fan_in_fan_out=True)
    for p in attn(L, ["o_proj"]) + ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.shared_experts.down_proj"]:
        c.add(p, transpose=True)
    c.write()

    c = Case(out, "mha", mha, r=8, alpha=16.0, targets=["q_proj", "k_proj", "v_proj", "o_proj"])
    for p in attn(L, ["q_proj", "k_proj", "v_proj", "o_proj"]):
        c.add(p)
    c.write()

    c = Case(out, "v3", v3, r=4, alpha=4.0, targets="q_b_proj")
    for p in attn(L, ["q_b_proj"]):
        c.add(p, dt_a="BF16", dt_b="BF16")
    c.write()

    # -- broken: one fault each --------------------------------------------
    c = Case(out, "bad_vproj", v2, targets=["q_proj", "v_proj"])
    c.add("model.layers.0.self_attn.q_proj")
    c.write(False)

    c = Case(out, "bad_v3_qproj", v3, targets=["q_proj"])
    c.add("model.layers.0.self_attn.q_b_proj", ref=False)
    c.write(False)

    c = Case(out, "bad_stray", v2, targets="all-linear")
    c.add("model.layers.0.self_attn.q_proj")
    c.add("model.layers.1.mlp.gate", ref=False)   # the router
    c.write(False)

    c = Case(out, "bad_unlisted", v2, targets=["q_proj"])
    c.add("model.layers.0.self_attn.q_proj")
    c.add("model.layers.0.self_attn.o_proj")
    c.write(False)

    c = Case(out, "bad_noB", v2, targets=["q_proj"])
    c.add("model.layers.0.self_attn.q_proj")
    c.add("model.layers.1.self_attn.q_proj", skip_b=True)
    c.write(False)

    c = Case(out, "bad_shape", v2, targets=["q_proj"])
    c.add("model.layers.0.self_attn.q_proj")
    c.add("model.layers.2.self_attn.q_proj", in_=63)
    c.write(False)

    c = Case(out, "bad_rank", v2, targets=["q_proj"])
    c.add("model.layers.0.self_attn.q_proj", rank=8)
    c.write(False)

    c = Case(out, "bad_empty", v2, targets=["q_proj"])
    c.write(False)

    c = Case(out, "bad_pattern", v2, targets=["q_proj"], rank_pattern={"q_proj": 8})
    c.add("model.layers.0.self_attn.q_proj")
    c.write(False)

    c = Case(out, "bad_bias", v2, targets=["q_proj"], bias="lora_only")
    c.add("model.layers.0.self_attn.q_proj")
    c.write(False)

    # PEFT on transformers 5: routed experts fused into 3-D parameters
    c = Case(out, "bad_fused", v2, targets="(?!)")
    c.add("model.layers.0.self_attn.q_proj")
    c.tensors.append(("base_model.model.model.layers.1.mlp.experts.lora_A.weight", "F32",
                      np.zeros((8 * 4, 32), np.float32)))
    c.write(False)

    c = Case(out, "bad_alpha", v2, targets=["q_proj"], lora_alpha=0)
    c.add("model.layers.0.self_attn.q_proj")
    c.write(False)

    c = Case(out, "bad_type", v2, targets=["q_proj"], peft_type="IA3")
    c.add("model.layers.0.self_attn.q_proj")
    c.write(False)


if __name__ == "__main__":
    main()
