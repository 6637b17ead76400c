#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""prequant_q4.py -- a copy of a tiny test checkpoint whose matrices already
hold Q4_0 numbers, for the exactness test of the 4-bit path (test_cli.sh).

    prequant_q4.py SRC_DIR OUT_DIR

Every 2-D tensor of model.safetensors except the routers (mlp.gate.weight,
which the converter keeps F32) is replaced, row by row, by the values of its
Q4_0 blocks under the numpy rule of make_q4_golden.py (q * d), stored as
F32. Converting OUT_DIR with --quant q4 then re-quantizes those values
without loss, so the Q4_0 forward pass with exact (F32) activations must
match the F32 conversion of OUT_DIR to float rounding; a wrong nibble order,
scale or sign would not. 1-D tensors are copied as F32; config.json and the
tokenizer files are copied unchanged. The source's dtypes: F32, F16, BF16.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_q4_golden import quantize_q4_0  # noqa: E402


def read_st(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    hdr = json.loads(blob[8:8 + n])
    base = 8 + n
    out = []
    for name, e in hdr.items():
        if name == "__metadata__":
            continue
        b, t = e["data_offsets"]
        raw = blob[base + b:base + t]
        dt = e["dtype"]
        if dt == "F32":
            a = np.frombuffer(raw, "<f4")
        elif dt == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float32)
        elif dt == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            sys.exit(f"{name}: dtype {dt} not handled")
        out.append((b, name, a.reshape(e["shape"]).astype(np.float32)))
    return [(name, a) for _, name, a in sorted(out, key=lambda x: x[0])]


def write_st(path, tensors):
    hdr, pos = {}, 0
    for name, a in tensors:
        hdr[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [pos, pos + a.nbytes]}
        pos += a.nbytes
    js = json.dumps(hdr, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js)
        for _, a in tensors:
            f.write(np.ascontiguousarray(a, "<f4").tobytes())


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(src):
        if f.endswith(".json"):
            shutil.copy(os.path.join(src, f), out)
    tensors = []
    n_q = 0
    for name, a in read_st(os.path.join(src, "model.safetensors")):
        if a.ndim == 2 and not name.endswith("mlp.gate.weight") and a.shape[1] % 32 == 0:
            a = np.stack([quantize_q4_0(r)[1] for r in a])
            n_q += 1
        tensors.append((name, a))
    write_st(os.path.join(out, "model.safetensors"), tensors)
    print(f"{out}: {n_q} of {len(tensors)} tensors hold Q4_0 values")


if __name__ == "__main__":
    main()
