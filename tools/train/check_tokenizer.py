#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""check_tokenizer.py -- our C tokenizer against the `tokenizers` library.

Encodes validation verses (kjv_val.jsonl, one verse per line) with the
`tokenizers` library from models/demo-hf/tokenizer.json and with `ds tokenize`
on the sealed container (the tokenizer as the converter stored it), and
requires identical ids; also the BOS form (`ds tokenize --bos` against BOS +
ids) on the first lines. Many verses go to one `ds tokenize` call each, so the
check takes a few seconds per hundred lines.

    check_tokenizer.py WORKDIR [--ds build-train/ds] [--model models/demo.dsm]
                       [--key models/demo.key] [-n 400]
"""
import argparse
import json
import os
import subprocess
import sys

from tokenizers import Tokenizer

BOS = "<｜begin▁of▁sentence｜>"


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir")
    ap.add_argument("--ds", default=os.path.join(root, "build-train", "ds"))
    ap.add_argument("--model", default=os.path.join(root, "models", "demo.dsm"))
    ap.add_argument("--key", default=os.path.join(root, "models", "demo.key"))
    ap.add_argument("--tokenizer", default=os.path.join(root, "models", "demo-hf", "tokenizer.json"))
    ap.add_argument("-n", type=int, default=400, help="verses to check (every k-th of the validation set)")
    a = ap.parse_args()
    tok = Tokenizer.from_file(a.tokenizer)
    verses = []
    for l in open(os.path.join(a.workdir, "kjv_val.jsonl"), encoding="utf-8"):
        verses.extend(json.loads(l)["text"].split("\n"))
    step = max(1, len(verses) // a.n)
    lines = verses[::step][:a.n]
    # a few that are not verses: several lines, leading spaces, the special tokens as text
    lines += ["In the beginning\nGod created", "  And Jesus wept.  ", BOS + "The LORD", "1 Samuel 3:10, 2024"]
    bad = 0
    n_ids = 0
    for i, text in enumerate(lines):
        want = tok.encode(text, add_special_tokens=False).ids
        cmd = [a.ds, "tokenize", a.model, "--key-file", a.key, text]
        got = [int(x) for x in subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout.split()]
        n_ids += len(want)
        if got != want:
            bad += 1
            print("DIFF %r\n  tokenizers %s\n  ds         %s" % (text, want, got))
        if i < 20:
            got = [int(x) for x in subprocess.run(cmd[:2] + ["--bos"] + cmd[2:], check=True,
                                                  stdout=subprocess.PIPE).stdout.split()]
            if got != [tok.token_to_id(BOS)] + want:
                bad += 1
                print("DIFF (--bos) %r: %s" % (text, got))
    print("check_tokenizer: %d texts (%d ids): %s" % (len(lines), n_ids,
                                                      "all identical" if not bad else "%d differ" % bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
