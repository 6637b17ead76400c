#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""lora_corpus.py -- the Jargon File as a second domain for the demo LoRA adapter.

Source: Debian's jargon-text package (main, section doc), "The Jargon File"
4.4.7 by Eric S. Raymond et al., which its authors put in the public domain.
It is modern English prose about computing and hacker culture (1970s-2003):
short dictionary entries with cross-references, usage labels and anecdotes,
nothing like the King James Bible the demo model was trained on. The package
holds the whole file as plain text, /usr/share/doc/jargon-text/jargon.txt.gz.

    sudo apt-get install -y jargon-text       # then:  lora_corpus.py OUTDIR
    apt-get download jargon-text              # or, without installing anything:
    lora_corpus.py OUTDIR --deb jargon-text_4.4.7-4.1_all.deb
    lora_corpus.py OUTDIR --fetch             # runs `apt-get download` itself

(The .deb route also works where dpkg is told to skip /usr/share/doc, as in
some minimal container images.)

Cleaning, deterministic and from the text alone:
  - kept: Part I (chapters 1-12 and their sections), the lexicon entries of
    Part II, the appendices of Part III; dropped: the front matter (contents,
    glyph test page), the glossary lists (the headword indexes before the
    lexicon and before each letter), tables (any paragraph with box-drawing
    characters), the Crunchly cartoon pointers, and the bibliography;
  - one document per lexicon entry (2,300 or so) and per Part I / appendix
    section; an entry starts with its headword and part of speech
    ("ABEND, n."; the pronunciations between slashes are dropped);
  - paragraphs are unwrapped to one line each (lines joined with spaces)
    unless their lines are indented differently (examples, verse, code:
    kept line by line); paragraphs are separated by one newline, as the KJV
    verses are;
  - cross-reference braces are removed ("{crash}" -> "crash"), typographic
    quotes, dashes and a few symbols become ASCII (the demo tokenizer was
    trained on the ASCII KJV: curly quotes would cost 3 byte tokens each).
Every 25th document (index 24, 49, ...; 4% of them) is held out for
validation; the rest is training text.

    lora_corpus.py OUTDIR [--deb FILE | --fetch]
        writes OUTDIR/jargon_train.jsonl, OUTDIR/jargon_val.jsonl (one
        {"title", "text"} per line) and OUTDIR/jargon_info.json (package,
        version, sha256 of the source text, counts)
"""
import argparse
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

PACKAGE = "jargon-text"
MEMBER = "usr/share/doc/jargon-text/jargon.txt.gz"
VAL_EVERY = 25  # document i is validation when i % VAL_EVERY == VAL_EVERY - 1

ASCII = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--", "\u2013": "-",
    "\u00b4": "'", "\u00b7": "-", "\u00a0": " ", "\u2022": "*", "\u2192": "->", "\u2190": "<-",
    "\u00d7": "x", "\u2212": "-", "\u2122": "(TM)", "\u00a9": "(C)", "\u00ae": "(R)", "\u2026": "...",
}
BOX = re.compile("[\u2500-\u257f]")
ENTRY = re.compile(r"^   :([^:]+):\s*(.*)$")
TERMINAL = tuple('.!?:;"\')')


def read_installed():
    path = "/" + MEMBER
    try:
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", PACKAGE], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, check=True).stdout.decode().strip()
    except (FileNotFoundError, subprocess.CalledProcessError):
        version = ""
    if not version or not os.path.exists(path):
        raise SystemExit("lora_corpus.py: %s is not installed (or %s is missing); "
                         "sudo apt-get install -y %s, or pass --deb FILE / --fetch" % (PACKAGE, path, PACKAGE))
    with open(path, "rb") as f:
        return gzip.decompress(f.read()), version, path


def read_deb(deb):
    fields = {}
    for k in ("Package", "Version"):
        fields[k] = subprocess.run(["dpkg-deb", "-f", deb, k], stdout=subprocess.PIPE,
                                   check=True).stdout.decode().strip()
    if fields["Package"] != PACKAGE:
        raise SystemExit("lora_corpus.py: %s is package %r, not %s" % (deb, fields["Package"], PACKAGE))
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["dpkg-deb", "-x", deb, d], check=True)
        with open(os.path.join(d, MEMBER), "rb") as f:
            data = gzip.decompress(f.read())
    return data, fields["Version"], "%s:/%s" % (os.path.basename(deb), MEMBER)


def fetch():
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["apt-get", "download", PACKAGE], cwd=d, check=True)
        debs = [f for f in os.listdir(d) if f.endswith(".deb")]
        if len(debs) != 1:
            raise SystemExit("lora_corpus.py: apt-get download left %r" % debs)
        return read_deb(os.path.join(d, debs[0]))


def to_ascii(s):
    for k, v in ASCII.items():
        s = s.replace(k, v)
    return s.replace("{", "").replace("}", "")


def paragraphs(lines):
    """Groups of consecutive non-blank lines."""
    cur = []
    for ln in lines:
        if ln.strip():
            cur.append(ln.rstrip())
        elif cur:
            yield cur
            cur = []
    if cur:
        yield cur


def indent(s):
    return len(s) - len(s.lstrip(" "))


def render(par):
    """A paragraph as text: one line when its lines share one indentation."""
    if len({indent(l) for l in par}) == 1:
        return to_ascii(" ".join(l.strip() for l in par))
    base = min(indent(l) for l in par)
    return to_ascii("\n".join(l[base:] for l in par))


def entry_header(head, rest):
    rest = re.sub(r"/[^/]*/", "", rest)
    rest = re.sub(r"^[\s,]+", "", rest).strip()
    rest = re.sub(r"\s+,", ",", rest)
    head = to_ascii(head.strip())
    return head + (", " + to_ascii(rest) if rest else "")


def parse(text):
    """Returns [(title, [paragraph texts])] in file order."""
    lines = text.replace("\u00a0", " ").split("\n")
    try:
        start = next(i for i, l in enumerate(lines) if l.startswith("Chapter 1. "))
        end = next(i for i, l in enumerate(lines) if l == "Bibliography")
    except StopIteration:
        raise SystemExit("lora_corpus.py: no 'Chapter 1.' or 'Bibliography' line; not the Jargon File 4.4.x?")
    headwords = {m.group(1).strip() for m in (ENTRY.match(l) for l in lines) if m}
    docs = []
    doc = None          # (title, paragraphs) being filled, or None while skipping
    in_toc = False
    for par in paragraphs(lines[start:end]):
        first = par[0]
        if indent(first) == 0 and BOX.search(first):
            continue                                 # a table set at the margin
        if indent(first) == 0:                       # a chapter, section or appendix heading
            title = to_ascii(" ".join(l.strip() for l in par))
            doc = None if title == "Glossary" else (title, [title])
            if doc:
                docs.append(doc)
            in_toc = False
            continue
        if indent(first) > 3 and len(par) == 1 and re.match(r"^Part [IVX]+\.", first.strip()):
            doc, in_toc = None, False                # "Part II. The Jargon Lexicon": skip its preamble
            continue
        m = ENTRY.match(first)
        if m and indent(first) == 3:
            doc = (m.group(1).strip(), [entry_header(m.group(1), m.group(2))])
            docs.append(doc)
            in_toc = False
            if len(par) > 1:
                doc[1].append(render(par[1:]))
            continue
        body = " ".join(l.strip() for l in par)
        if body == "Table of Contents":
            in_toc = True
            continue
        if in_toc and len(par) == 1 and not body.endswith(TERMINAL):
            continue                                 # a contents line
        in_toc = False
        if doc is None:
            continue
        if BOX.search(body):
            continue                                 # a table
        if "cartoon in the Crunchly saga" in body or body.startswith("(The next cartoon") \
                or body.startswith("(The previous cartoon"):
            continue
        if len(par) == 1 and (body in headwords or len(body) == 1):
            continue                                 # a line of a per-letter glossary list
        doc[1].append(render(par))
    return [(t, p) for t, p in docs if len(p) > 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--deb", help="read the text from this jargon-text .deb (apt-get download jargon-text)")
    g.add_argument("--fetch", action="store_true", help="run `apt-get download jargon-text` first")
    a = ap.parse_args()
    if a.deb:
        raw, version, source = read_deb(a.deb)
    elif a.fetch:
        raw, version, source = fetch()
    else:
        raw, version, source = read_installed()
    text = raw.decode("utf-8")
    docs = parse(text)
    os.makedirs(a.outdir, exist_ok=True)
    sizes = {"train": 0, "val": 0}
    counts = {"train": 0, "val": 0}
    non_ascii = 0
    with open(os.path.join(a.outdir, "jargon_train.jsonl"), "w", encoding="utf-8") as ft, \
            open(os.path.join(a.outdir, "jargon_val.jsonl"), "w", encoding="utf-8") as fv:
        for i, (title, pars) in enumerate(docs):
            split = "val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"
            body = "\n".join(pars)
            non_ascii += sum(1 for ch in body if ord(ch) > 127)
            (fv if split == "val" else ft).write(json.dumps({"title": title, "text": body}) + "\n")
            sizes[split] += len(body)
            counts[split] += 1
    info = {
        "package": PACKAGE,
        "version": version,
        "source": source,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "documents": len(docs),
        "val_every": VAL_EVERY,
        "train_documents": counts["train"], "train_chars": sizes["train"],
        "val_documents": counts["val"], "val_chars": sizes["val"],
        "non_ascii_chars_left": non_ascii,
        "license": "public domain (the Jargon File's own notice, /usr/share/doc/jargon-text/copyright)",
    }
    with open(os.path.join(a.outdir, "jargon_info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print("lora_corpus: %s %s, %d documents; train %d (%d chars), val %d (%d chars, %.2f%%); %d non-ASCII left"
          % (PACKAGE, version, len(docs), counts["train"], sizes["train"], counts["val"], sizes["val"],
             100.0 * sizes["val"] / (sizes["train"] + sizes["val"]), non_ascii))


if __name__ == "__main__":
    sys.exit(main())
