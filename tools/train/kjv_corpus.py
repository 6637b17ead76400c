#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""kjv_corpus.py -- the King James Bible as training text, split train/validation.

Source: Debian's bible-kjv-text package (public domain; the text of the
Authorized Version), which ships the text compressed and indexed in
/usr/lib/bible.data. Its companion program `bible` (package bible-kjv, pulled
in as a dependency) prints any range of verses, so the whole book is read with

    bible -l100000 Gen1:1-Rev22:21

(one verse per line with a wide line width). Install with

    sudo apt-get install -y bible-kjv-text

The output is parsed into chapters ("Genesis 1", then "  N verse text"
lines). A chapter is one document: its verses, without numbers, one per line.
Every 50th chapter (index 49, 99, ...; 23 of 1189, about 2% of the text) is held
out for validation; the rest is training text.

    kjv_corpus.py OUTDIR       writes OUTDIR/kjv_train.jsonl, OUTDIR/kjv_val.jsonl
                               (one {"book", "chapter", "text"} per line)
"""
import json
import os
import re
import subprocess
import sys

VAL_EVERY = 50  # chapter i is validation when i % VAL_EVERY == VAL_EVERY - 1
EXPECT_CHAPTERS = 1189
EXPECT_VERSES = 31102


def read_bible():
    env = dict(os.environ, COLUMNS="100000")
    try:
        out = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, check=True, env=env).stdout
    except FileNotFoundError:
        raise SystemExit("kjv_corpus.py: no `bible` program; sudo apt-get install -y bible-kjv-text")
    return out.decode("ascii")


def parse(text):
    """Returns [(book, chapter, [verse texts])] in canonical order."""
    chapters = []
    head = re.compile(r"^(\S.*\S) (\d+)$")
    verse = re.compile(r"^\s+(\d+) (.*)$")
    for line in text.splitlines():
        if not line.strip():
            continue
        m = head.match(line)
        if m:
            chapters.append((m.group(1), int(m.group(2)), []))
            continue
        m = verse.match(line)
        if not m or not chapters:
            raise SystemExit("kjv_corpus.py: cannot parse line %r" % line[:80])
        vs = chapters[-1][2]
        if int(m.group(1)) != len(vs) + 1:
            raise SystemExit("kjv_corpus.py: %s %d: verse %s out of order" % (chapters[-1][0], chapters[-1][1],
                                                                            m.group(1)))
        vs.append(" ".join(m.group(2).split()))
    return chapters


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    chapters = parse(read_bible())
    n_verses = sum(len(v) for _, _, v in chapters)
    if len(chapters) != EXPECT_CHAPTERS or n_verses != EXPECT_VERSES:
        raise SystemExit("kjv_corpus.py: got %d chapters, %d verses; expected %d, %d"
                         % (len(chapters), n_verses, EXPECT_CHAPTERS, EXPECT_VERSES))
    sizes = {"train": 0, "val": 0}
    counts = {"train": 0, "val": 0}
    with open(os.path.join(outdir, "kjv_train.jsonl"), "w", encoding="utf-8") as ft, \
            open(os.path.join(outdir, "kjv_val.jsonl"), "w", encoding="utf-8") as fv:
        for i, (book, ch, verses) in enumerate(chapters):
            split = "val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"
            doc = {"book": book, "chapter": ch, "text": "\n".join(verses)}
            (fv if split == "val" else ft).write(json.dumps(doc) + "\n")
            sizes[split] += len(doc["text"])
            counts[split] += 1
    print("kjv_corpus: %d chapters, %d verses; train %d chapters (%d chars), val %d chapters (%d chars, %.2f%%)"
          % (len(chapters), n_verses, counts["train"], sizes["train"], counts["val"], sizes["val"],
             100.0 * sizes["val"] / (sizes["train"] + sizes["val"])))


if __name__ == "__main__":
    main()
