#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_bench_adapters.py -- random PEFT LoRA adapters over a big checkpoint,
for bench_lora (what an adapter costs at decode, and in memory).

    make_bench_adapters.py CHECKPOINT_DIR OUTDIR [--rank 16] [--count 4]

Writes OUTDIR/attn<i>/ (i = 0..count-1): PEFT adapter directories with
r = rank, lora_alpha = 2 r, on every attention projection of every layer
(q_proj or q_a_proj/q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj), each
with its own seed. The values are random: the cost of applying an adapter
does not depend on them. Python 3 and numpy only (tests/gen/make_peft.py's
writer).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gen"))
from make_peft import Case, shapes  # noqa: E402

ATTN = ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("outdir")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--count", type=int, default=4)
    a = ap.parse_args()
    mods = sorted(p for p in shapes(a.checkpoint) if p.rsplit(".", 1)[-1] in ATTN and ".self_attn." in p)
    targets = sorted({p.rsplit(".", 1)[-1] for p in mods})
    for i in range(a.count):
        c = Case(a.outdir, "attn%d" % i, a.checkpoint, r=a.rank, alpha=2.0 * a.rank, targets=targets)
        for p in mods:
            c.add(p, ref=False)
        c.write(False)
        print("%s: r %d on %d matrices (%s)" % (c.dir, a.rank, len(mods), ", ".join(targets)))


if __name__ == "__main__":
    main()
