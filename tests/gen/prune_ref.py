#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""prune_ref.py -- the pruning rule of `ds convert --prune` in numpy, as the
independent reference for tests/test_prune.c.

Reads a checkpoint made by make_checkpoint.py (its expected.safetensors: every
tensor the converter keeps, as the true F32 values), prunes the matrices the
converter prunes, and writes a checkpoint directory holding the pruned values
as F32 (with the source's config.json and tokenizer files). Converting that
directory WITHOUT pruning must give the same tensors as converting the source
WITH pruning, bit for bit in F32.

    prune_ref.py SRC_DIR OUT_DIR --ratio R [--only core|experts]
    prune_ref.py SRC_DIR OUT_DIR --nm N:M  [--only core|experts]

The rule (deepseek.h, ds_convert_params.prune):
  - which matrices: 2-D weights except model.embed_tokens.weight,
    lm_head.weight and each MoE layer's router (mlp.gate.weight); routed
    experts (mlp.experts.E.*) are the class "experts", the rest "core".
  - --ratio R: in each matrix of n entries, the floor(R * n) entries of
    smallest |w| become 0; ties in |w| go to the entry earlier in row-major
    order (a stable argsort of |w|).
  - --nm N:M: in every M consecutive entries of a row, the N of smallest |w|
    become 0, ties to the earlier entry (a stable argsort per group).
Only Python 3 and numpy.
"""
import argparse
import json
import math
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_checkpoint import st_write  # noqa: E402


def st_read(path):
    """{name: float32 array} of a safetensors file holding F32 tensors."""
    with open(path, "rb") as f:
        raw = f.read()
    hl = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + hl])
    base = 8 + hl
    out = {}
    for name, ent in hdr.items():
        if name == "__metadata__":
            continue
        if ent["dtype"] != "F32":
            raise SystemExit("%s: %s is %s, expected F32" % (path, name, ent["dtype"]))
        b, e = ent["data_offsets"]
        out[name] = np.frombuffer(raw[base + b:base + e], dtype="<f4").reshape(ent["shape"]).copy()
    return out


def prunable(name, shape, only):
    if len(shape) != 2 or name in ("model.embed_tokens.weight", "lm_head.weight"):
        return False
    if re.search(r"\.mlp\.gate\.weight$", name):
        return False
    cls = "experts" if re.search(r"\.mlp\.experts\.\d+\.", name) else "core"
    return only is None or only == cls


def prune_ratio(w, ratio):
    flat = w.reshape(-1).copy()
    k = math.floor(ratio * flat.size)
    order = np.argsort(np.abs(flat), kind="stable")
    flat[order[:k]] = 0.0
    return flat.reshape(w.shape)


def prune_nm(w, n, m):
    rows, cols = w.shape
    if cols % m:
        raise SystemExit("rows of %d values are not whole groups of %d" % (cols, m))
    g = w.reshape(rows, cols // m, m).copy()
    order = np.argsort(np.abs(g), axis=-1, kind="stable")
    np.put_along_axis(g, order[..., :n], 0.0, axis=-1)
    return g.reshape(rows, cols)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--ratio", type=float)
    ap.add_argument("--nm")
    ap.add_argument("--only", choices=["core", "experts"])
    a = ap.parse_args()
    if (a.ratio is None) == (a.nm is None):
        ap.error("give one of --ratio R and --nm N:M")
    if a.nm:
        n, m = (int(x) for x in a.nm.split(":"))
    tensors = st_read(os.path.join(a.src, "expected.safetensors"))
    os.makedirs(a.out, exist_ok=True)
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(a.src, f)):
            shutil.copyfile(os.path.join(a.src, f), os.path.join(a.out, f))
    outs, zeroed, entries, mats = [], 0, 0, 0
    for name in sorted(tensors):
        w = tensors[name]
        if prunable(name, w.shape, a.only):
            w = prune_nm(w, n, m) if a.nm else prune_ratio(w, a.ratio)
            mats += 1
            entries += w.size
            zeroed += int(np.count_nonzero(w == 0))
        outs.append((name, "F32", w.astype("<f4")))
    st_write(os.path.join(a.out, "model.safetensors"), outs)
    with open(os.path.join(a.out, "prune_stats.json"), "w") as f:
        json.dump({"matrices": mats, "entries": entries, "zeroed": zeroed}, f)


if __name__ == "__main__":
    main()
