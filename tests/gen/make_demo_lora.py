#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_demo_lora.py -- a random PEFT LoRA adapter directory for a checkpoint.

Writes OUTDIR/adapter_config.json and OUTDIR/adapter_model.safetensors (F32)
as PEFT saves them, for the Hugging Face checkpoint HF_DIR (models/demo-hf by
default): lora_A (r, in) and lora_B (out, r) of every layer's TARGETS,
shapes read from the checkpoint's model.safetensors. Unlike PEFT's own
initialisation (B = 0, an adapter that changes nothing), both matrices are
random (N(0, 0.05^2)), so the adapter moves the logits: the command-line and
server tests (tests/test_cli.sh, tests/server/) check that it does, and that
scale 0 gives the base's logits exactly.

    make_demo_lora.py OUTDIR [--hf DIR] [--seed N] [--rank R] [--alpha A]
                      [--targets q_proj,kv_b_proj]

Only Python 3 and numpy; deterministic for a seed.
"""
import argparse
import json
import os
import struct

import numpy as np


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    hdr.pop("__metadata__", None)
    return hdr


def st_write(path, tensors):
    """tensors: name -> float32 array, written as F32 safetensors."""
    hdr, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        hdr[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hdr["__metadata__"] = {"format": "pt"}
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--hf", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                 "models", "demo-hf"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=8)
    ap.add_argument("--targets", default="q_proj,kv_b_proj")
    a = ap.parse_args()
    targets = a.targets.split(",")
    hdr = {}
    for fn in sorted(os.listdir(a.hf)):
        if fn.endswith(".safetensors"):
            hdr.update(st_header(os.path.join(a.hf, fn)))
    rng = np.random.default_rng(a.seed)
    tensors = {}
    for name in sorted(hdr):
        # model.layers.L.self_attn.q_proj.weight -> base_model.model.model.layers.L.self_attn.q_proj.lora_A.weight
        parts = name.split(".")
        if len(parts) < 3 or parts[-1] != "weight" or parts[-2] not in targets or ".layers." not in name:
            continue
        out_f, in_f = hdr[name]["shape"]
        stem = "base_model.model." + name[: -len(".weight")]
        tensors[stem + ".lora_A.weight"] = rng.normal(0, 0.05, (a.rank, in_f)).astype(np.float32)
        tensors[stem + ".lora_B.weight"] = rng.normal(0, 0.05, (out_f, a.rank)).astype(np.float32)
    if not tensors:
        raise SystemExit("make_demo_lora.py: no %s in %s" % (a.targets, a.hf))
    os.makedirs(a.outdir, exist_ok=True)
    cfg = {"peft_type": "LORA", "r": a.rank, "lora_alpha": a.alpha, "target_modules": targets, "bias": "none",
           "fan_in_fan_out": False, "use_rslora": False, "lora_dropout": 0.0, "task_type": "CAUSAL_LM"}
    with open(os.path.join(a.outdir, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    st_write(os.path.join(a.outdir, "adapter_model.safetensors"), tensors)


if __name__ == "__main__":
    main()
