#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_drop_goldens.py -- reference logits for models with dropped experts.

For the v2lite (softmax, greedy) and v3 (sigmoid, noaux_tc, 4 groups) test
checkpoints of tests/gen/make_checkpoint.py, runs transformers' own model on
the true F32 weights (as make_goldens.py does) with some routed experts
masked out of the router: their router logits are -infinity (the output of
the router's F.linear gets -inf in those columns) and, for V3, their
e_score_correction_bias too, so they are never chosen and group scores see
only the experts left. That is the rule the runtime documents for a
container converted with `ds convert --drop-experts` (whose router rows of
the dropped experts are gone). The 32 tokens are make_goldens.py's.

    make_drop_goldens.py --testdata build/testdata [--out tests/ref/goldens/drop]

Writes <family>.logits.f32 ([32][vocab] float32 little-endian) and
<family>.json (the dropped experts per layer, versions). tests/test_drop_experts.sh
makes a calibration file that drops exactly these experts and compares.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens as mg  # noqa: E402

# layer -> dropped expert ids (8 experts, top-2; v3: groups of 2, topk_group 2)
DROP = {
    "v2lite": {1: [0, 5], 2: [3, 6]},
    # layer 1: groups 0 and 1 keep one expert each (their scores are -inf);
    # layer 2: group 3 loses both
    "v3": {1: [1, 2], 2: [6, 7]},
}


def install_masks(model, drop):
    """Wraps the modeling module's F.linear so that each masked router's
    logits get -inf in the dropped columns."""
    masks = {}
    for l, ids in drop.items():
        gate = model.model.layers[l].mlp.gate
        m = torch.zeros(gate.weight.shape[0], dtype=torch.float32)
        m[ids] = float("-inf")
        masks[gate.weight.data_ptr()] = m
        b = getattr(gate, "e_score_correction_bias", None)
        if b is not None:
            with torch.no_grad():
                b[ids] = float("-inf")
    mod = sys.modules[type(model.model.layers[1].mlp.gate).__module__]
    real = torch.nn.functional

    class Shim:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def linear(x, w, b=None):
            y = real.linear(x, w, b)
            m = masks.get(w.data_ptr())
            return y + m if m is not None else y

    mod.F = Shim()
    return len(masks)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--testdata", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens", "drop"))
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    import transformers
    ids = mg.token_ids()
    for fam, drop in DROP.items():
        famdir = os.path.join(a.testdata, fam)
        cfg = mg.load_config(famdir)
        expected = mg.load_expected(famdir)
        model = mg.build_hf_native(famdir, cfg, expected)
        plain = mg.run_full(model, ids)
        n = install_masks(model, drop)
        assert n == len(drop)
        logits = mg.run_full(model, ids)
        assert np.isfinite(logits).all()
        logits.astype("<f4").tofile(os.path.join(a.out, fam + ".logits.f32"))
        side = {"family": fam, "tokens": ids, "shape": list(logits.shape),
                "dropped": {str(k): v for k, v in drop.items()},
                "max_abs_change_from_unpruned": float(np.abs(logits - plain).max()),
                "transformers": transformers.__version__, "torch": torch.__version__}
        with open(os.path.join(a.out, fam + ".json"), "w", encoding="utf-8") as f:
            json.dump(side, f, indent=1)
            f.write("\n")
        print("%s: dropped %s; logits change by up to %.4f" % (fam, drop, side["max_abs_change_from_unpruned"]))


if __name__ == "__main__":
    main(sys.argv[1:])
