#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""logit_error.py -- how far the C runtime's logits are from PyTorch's.

The measurement behind the Q8_0 margin threshold of tests/test_demo.c. For
each golden sequence (prompt + the reference's 64 greedy ids, teacher-forced)
it computes the logits of the 64 decision positions with PyTorch (F32 on the
committed F16 weights, as make_demo_goldens.py) and with `ds logits` on a
container, and reports:

  max |dlogit|      over every vocabulary entry and position
  max |dgap|        over positions and the reference's 20 best candidates j:
                    the change of l[top1] - l[j], which is what must exceed
                    the reference's margin for greedy decoding to flip

Containers: the committed Q8_0 models/demo.dsm (int8 activations, as `ds run`)
and an F32 container converted here from models/demo-hf.

    logit_error.py [--ds build-train/ds]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)


def ds_logits(ds, model, key, ids, out):
    cmd = [ds, "logits", model, "--tokens", ",".join(map(str, ids)), "--out", out]
    if key:
        cmd[3:3] = ["--key-file", key]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4").reshape(len(ids), -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ds", default=os.path.join(ROOT, "build-train", "ds"))
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    a = ap.parse_args()
    import torch
    import make_demo_goldens as mg
    torch.set_num_threads(2)
    gold = json.load(open(os.path.join(a.models, "demo_goldens.json"), encoding="utf-8"))
    model = mg.load_model(os.path.join(a.models, "demo-hf"))
    tmp = tempfile.mkdtemp(prefix="ds_logit_error_")
    f32 = os.path.join(tmp, "demo-f32.dsm")
    subprocess.run([a.ds, "convert", os.path.join(a.models, "demo-hf"), f32, "--quant", "f32", "--no-encrypt"],
                   check=True, stdout=subprocess.DEVNULL)
    runs = {"q8": (os.path.join(a.models, "demo.dsm"), os.path.join(a.models, "demo.key")), "f32": (f32, None)}
    for name, (path, key) in runs.items():
        max_d, max_gap, gaps = 0.0, 0.0, []
        for g in gold["prompts"]:
            seq = g["prompt_ids"] + g["ids"][:-1]
            with torch.no_grad():
                ref = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0].numpy()
            got = ds_logits(a.ds, path, key, seq, os.path.join(tmp, "l.f32"))
            p0 = len(g["prompt_ids"]) - 1
            ref, got = ref[p0:], got[p0:]
            max_d = max(max_d, float(np.abs(ref - got).max()))
            for r, q in zip(ref, got):
                top = np.argsort(r)[::-1][:20]
                dg = np.abs((q[top[0]] - q[top[1:]]) - (r[top[0]] - r[top[1:]])).max()
                gaps.append(float(dg))
                max_gap = max(max_gap, float(dg))
        gaps = np.array(gaps)
        print("%s: max |dlogit| %.3g; |dgap| to the 20 best: max %.3g, 99th percentile %.3g, median %.3g (%d positions)"
              % (name, max_d, max_gap, np.percentile(gaps, 99), np.median(gaps), len(gaps)))
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
