#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# test_docs.sh — the documentation against the programs it describes.
#
#   docs-1.*   relative links (and #anchors) in README.md, CHANGELOG.md,
#              docs/*.md and tests/server/README.md lead to files (and
#              headings) that exist
#   docs-2     every command of `ds --help` is shown in README.md as build/ds CMD
#   docs-3.*   every option of every `ds CMD --help` is in man/ds.1 (skipped
#              while man/ds.1 does not exist)
#   docs-4, 5  every option of `ds-server --help` is in docs/server.md and
#              man/ds-server.1 (skipped without build/ds-server)
#   docs-6     every metric tools/server/server.c exports is in both
#   docs-7     every endpoint it routes is in docs/server.md
#   docs-8     every error code it answers with is in both
#   docs-9     no README code line calls a bare `ds` except next to make install
#              (the README promises its commands run as written)
#   docs-10    the README's model tables are what tools/model_sizes.py prints
#   docs-11.*  tools/model_sizes.py agrees with ds convert + ds inspect --json
#              (parameters and bytes per class, segments, the file's layout)
#              on small checkpoints of each family and each recipe
#   docs-12    the README's "Try it" commands run, as written, from a copy of
#              the repository root
#   docs-13    CHANGELOG.md has an entry for the version in deepseek.h
#
# Prints "ok <id>" / "FAIL <id>: ..." / "SKIP <id>: ..." per case and ends with
#     RESULT test_docs: N passed, N failed, N skipped
#
#   sh tests/test_docs.sh                (after make; from the repository root)
#   BUILD=build-san DS_TESTDATA=dir PYTHON=python3 sh tests/test_docs.sh

set -u
BUILD=${BUILD:-build}
DS=${DS:-$BUILD/ds}
SERVER=${SERVER:-$BUILD/ds-server}
TD=${DS_TESTDATA:-$BUILD/testdata}
PY=${PYTHON:-python3}
ROOT=$(pwd)

T=$(mktemp -d "${TMPDIR:-/tmp}/test_docs.XXXXXX") || { echo "RESULT test_docs: 0 passed, 1 failed, 0 skipped"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

if [ ! -x "$DS" ] || ! "$PY" -c 'import json, re' 2>/dev/null; then
    echo "FAIL docs-0: need $DS (make) and a python3 ($PY)"
    echo "RESULT test_docs: 0 passed, 1 failed, 0 skipped"
    exit 1
fi

# The help texts the checks compare against, as files.
"$DS" --help >"$T/ds.help" 2>&1
for c in $(sed -n 's/^  \([a-z][a-z]*\) .*/\1/p' "$T/ds.help"); do
    case $c in ds) continue ;; esac
    "$DS" "$c" --help >"$T/ds-$c.help" 2>&1
done
if [ -x "$SERVER" ]; then "$SERVER" --help >"$T/server.help" 2>&1; fi

# The checks live in one Python program; it prints the case lines and the
# RESULT line, and runs ds where a case needs it.
DS="$DS" SERVER="$SERVER" TD="$TD" HELP="$T" WORK="$T/work" ROOT="$ROOT" BUILD="$BUILD" PY="$PY" \
"$PY" - <<'EOF'
import glob, json, os, re, shutil, subprocess, sys

DS, TD, HELP, WORK, ROOT, BUILD, PY = (os.environ[k] for k in ("DS", "TD", "HELP", "WORK", "ROOT", "BUILD", "PY"))
passed = failed = skipped = 0


def ok(cid):
    global passed
    passed += 1
    print("ok " + cid)


def bad(cid, why):
    global failed
    failed += 1
    print("FAIL %s: %s" % (cid, why))


def skip(cid, why):
    global skipped
    skipped += 1
    print("SKIP %s: %s" % (cid, why))


def check(cid, missing, what):
    """ok when missing is empty; else a failure naming what is missing."""
    if missing:
        bad(cid, "%s: %s" % (what, ", ".join(missing)))
    else:
        ok(cid)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


OPT = r"(?<![\w-])(--[a-z0-9][a-z0-9-]*|-[a-zA-Z])(?![\w-])"


def options(text):
    return sorted(set(re.findall(OPT, text)))


def mentions(text, opt):
    return re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", text) is not None


def roff_text(src):
    """A man page's text with roff's escapes undone (\\- is -, fonts gone)."""
    s = re.sub(r"\\f(\(..|\[[^\]]*\]|.)", "", src)
    return s.replace("\\-", "-").replace("\\&", "").replace("\\(mu", "x").replace("\\e", "\\")


def strip_code(md):
    """Markdown without fenced blocks and inline code (links there are not links)."""
    md = re.sub(r"(?ms)^```.*?^```", "", md)
    return re.sub(r"`[^`\n]*`", "", md)


def slug(heading):
    s = re.sub(r"`", "", heading.strip().lower())
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(md):
    return {slug(h) for h in re.findall(r"(?m)^#{1,6} +(.*?) *#*$", re.sub(r"(?ms)^```.*?^```", "", md))}


# ---- docs-1: links ----------------------------------------------------------
docs = ["README.md", "CHANGELOG.md", "tests/server/README.md"] + sorted(glob.glob("docs/*.md"))
for d in docs:
    cid = "docs-1." + d
    if not os.path.exists(d):
        bad(cid, "missing")
        continue
    src = read(d)
    body = strip_code(src)
    targets = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", body)
    targets += re.findall(r"(?m)^\[[^\]]+\]:\s*(\S+)", body)
    missing = []
    for t in targets:
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t):
            continue                                   # http:, https:, mailto:
        path, _, frag = t.partition("#")
        target = os.path.normpath(os.path.join(os.path.dirname(d), path)) if path else d
        if not os.path.exists(target):
            missing.append(t)
        elif frag and target.endswith(".md") and frag not in anchors(read(target)):
            missing.append(t + " (no such heading)")
    if not targets:
        bad(cid, "no links found (the link pattern is broken?)") if d == "README.md" else ok(cid)
    else:
        check(cid, missing, "links to nothing")

readme = read("README.md")

# ---- docs-2: every ds command in the README ---------------------------------
cmds = re.findall(r"(?m)^  ([a-z]+) ", read(os.path.join(HELP, "ds.help")))
cmds = [c for c in cmds if c != "ds"]
if len(cmds) < 8:
    bad("docs-2", "found only %d commands in ds --help: %s" % (len(cmds), cmds))
else:
    check("docs-2", [c for c in cmds if not re.search(r"build/ds %s\b" % c, readme)],
          "ds commands the README never shows as build/ds CMD")

# ---- docs-3: every ds option in man/ds.1 -------------------------------------
if not os.path.exists("man/ds.1"):
    skip("docs-3", "man/ds.1 does not exist yet")
else:
    man = roff_text(read("man/ds.1"))
    for c in cmds:
        opts = options(read(os.path.join(HELP, "ds-%s.help" % c)))
        check("docs-3." + c, [o for o in opts if not mentions(man, o)], "options of ds %s missing from man/ds.1" % c)

# ---- docs-4..8: ds-server ----------------------------------------------------
server_md = read("docs/server.md") if os.path.exists("docs/server.md") else ""
server_man = roff_text(read("man/ds-server.1")) if os.path.exists("man/ds-server.1") else ""
src = "".join(read(p) for p in sorted(glob.glob("tools/server/*.c")))
if not os.path.exists(os.path.join(HELP, "server.help")):
    skip("docs-4", "no %s (libmicrohttpd not found at build time)" % os.environ["SERVER"])
    skip("docs-5", "no ds-server")
else:
    sopts = options(read(os.path.join(HELP, "server.help")))
    if len(sopts) < 25:
        bad("docs-4", "found only %d options in ds-server --help" % len(sopts))
    else:
        check("docs-4", [o for o in sopts if not mentions(server_md, o)], "ds-server options missing from docs/server.md")
        check("docs-5", [o for o in sopts if not mentions(server_man, o)],
              "ds-server options missing from man/ds-server.1")
metrics = sorted(set(re.findall(r'put_family\(\s*&?\w+,\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', src)))
if len(metrics) < 20:
    bad("docs-6", "found only %d metrics in tools/server (the pattern is broken?)" % len(metrics))
else:
    check("docs-6", [m + " (docs/server.md)" for m in metrics if not mentions(server_md, m)] +
          [m + " (man/ds-server.1)" for m in metrics if not mentions(server_man, m)], "metrics not documented")
eps = sorted(set(re.findall(r'strn?cmp\(url, "(/[^"]*)"', src)))
if len(eps) < 7:
    bad("docs-7", "found only %d endpoints in tools/server" % len(eps))
else:
    check("docs-7", [e for e in eps if e not in server_md], "endpoints missing from docs/server.md")
codes = set(re.findall(r'reply_error\(\s*\w+,\s*\w+,\s*\d+,\s*"([a-z_]+)"', src))
codes |= set(re.findall(r'\bbad\(\s*\w+,\s*[^,]+,\s*"([a-z_]+)"', src))
codes |= set(re.findall(r'error_body\(\s*[^,]+,\s*\d+,\s*"([a-z_]+)"', src))
codes = sorted(codes)
if len(codes) < 12:
    bad("docs-8", "found only %d error codes in tools/server: %s" % (len(codes), codes))
else:
    check("docs-8", [c + " (docs/server.md)" for c in codes if "`%s`" % c not in server_md] +
          [c + " (man/ds-server.1)" for c in codes if not re.search(r"\b%s\b" % c, server_man)],
          "error codes not documented")

# ---- docs-9: the README's commands name build/ds -------------------------------
bare = []
for block in re.findall(r"(?ms)^```(?:sh|bash|console)?\n(.*?)^```", readme):
    if "make install" in block:
        continue
    for line in block.splitlines():
        if re.match(r"^\s*(\$ )?ds(-server)? ", line) or re.search(r"[|;&]\s*ds(-server)? ", line):
            bare.append(line.strip()[:60])
check("docs-9", bare, "README code lines call a bare ds (write build/ds)")

# ---- docs-10: the model tables -------------------------------------------------
m = re.search(r"<!-- model_sizes begin[^>]*-->\n(.*?)<!-- model_sizes end -->", readme, re.S)
gen = subprocess.run([PY, "tools/model_sizes.py"], capture_output=True, text=True)
if not m:
    bad("docs-10", "README.md has no <!-- model_sizes begin --> ... <!-- model_sizes end --> block")
elif gen.returncode != 0:
    bad("docs-10", "tools/model_sizes.py failed: " + gen.stderr.strip()[-300:])
elif m.group(1) != gen.stdout:
    bad("docs-10", "README.md's tables differ from `python3 tools/model_sizes.py` (paste its output between the markers)")
else:
    ok("docs-10")


# ---- docs-11: model_sizes.py against the converter ------------------------------
def inspect_json(text):
    """ds inspect --json (its "header" object holds the public header and
    "auth", what the open proved of it)."""
    return json.loads(text)


os.makedirs(WORK, exist_ok=True)
recipes = [("q8", ["--quant", "q8"]), ("f16", ["--quant", "f16"]), ("q4", ["--quant", "q4"]),
           ("mixed", ["--quant-experts", "q4", "--quant-core", "q8"]), ("f32-router-q8", ["--quant", "f32", "--quant-router", "q8"])]
sources = [("demo", "models/demo-hf")] + [(f, os.path.join(TD, f)) for f in ("v2lite", "v2", "v3", "moe16b")]
for name, hf in sources:
    if not os.path.exists(os.path.join(hf, "config.json")):
        skip("docs-11." + name, "no checkpoint in %s (make testdata)" % hf)
        continue
    for label, r in recipes:
        cid = "docs-11.%s.%s" % (name, label)
        out = os.path.join(WORK, "m.dsm")
        conv = subprocess.run([DS, "convert", hf, out, "--no-encrypt", "--force"] + r, capture_output=True, text=True)
        if conv.returncode != 0:
            bad(cid, "ds convert failed: " + conv.stderr.strip()[-300:])
            continue
        ins = subprocess.run([DS, "inspect", out, "--json"], capture_output=True, text=True)
        want = subprocess.run([PY, "tools/model_sizes.py", "--config", os.path.join(hf, "config.json"), "--json"] + r,
                              capture_output=True, text=True)
        if ins.returncode != 0 or want.returncode != 0:
            bad(cid, "ds inspect or model_sizes.py failed: " + (ins.stderr + want.stderr).strip()[-300:])
            continue
        got, w = inspect_json(ins.stdout), json.loads(want.stdout)
        diffs = []
        for cls in ("core", "experts", "router"):
            g = got.get("classes", {}).get(cls, {})
            if g.get("parameters", 0) != w["params"][cls]:
                diffs.append("%s parameters %s, script %d" % (cls, g.get("parameters"), w["params"][cls]))
            if g.get("bytes", 0) != w["bytes"][cls]:
                diffs.append("%s bytes %s, script %d" % (cls, g.get("bytes"), w["bytes"][cls]))
        if len(got.get("segments", [])) != w["segments"]:
            diffs.append("%d segments, script %d" % (len(got.get("segments", [])), w["segments"]))
        elif [g["plain_bytes"] for g in got["segments"]] != w["segment_bytes"]:
            diffs.append("segment sizes differ")
        if got.get("totals", {}).get("stored_bytes") != w["sealed_bytes"]:
            diffs.append("%s bytes sealed, script %d" % (got.get("totals", {}).get("stored_bytes"), w["sealed_bytes"]))
        hdr = got.get("header", {})
        if hdr.get("meta_offset") != w["file_before_metadata"]:
            diffs.append("metadata at %s, script %d" % (hdr.get("meta_offset"), w["file_before_metadata"]))
        experts = [s["plain_bytes"] for s in got.get("segments", []) if s.get("kind") == "expert"]
        if max(experts or [0]) != w["largest_expert"]:
            diffs.append("largest expert %d, script %d" % (max(experts or [0]), w["largest_expert"]))
        check(cid, diffs, "model_sizes.py disagrees with ds inspect")

# ---- docs-12: the "Try it" commands run -------------------------------------------
m = re.search(r"<!-- test_docs: run -->\n```sh\n(.*?)^```", readme, re.S | re.M)
if not m:
    bad("docs-12", "README.md has no <!-- test_docs: run --> block")
else:
    root = os.path.join(WORK, "root")
    os.makedirs(root)
    # the repository root as the commands see it, with this build as build/
    for entry in os.listdir(ROOT):
        if entry not in ("build", ".git"):
            os.symlink(os.path.join(ROOT, entry), os.path.join(root, entry))
    os.symlink(os.path.join(ROOT, BUILD), os.path.join(root, "build"))
    lines = [l for l in m.group(1).splitlines() if l.strip() and not l.lstrip().startswith("#")]
    fails = []
    for line in lines:
        r = subprocess.run(["sh", "-c", line], cwd=root, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            fails.append("`%s` exited %d: %s" % (line[:70], r.returncode, r.stderr.strip()[-200:]))
    if len(lines) < 8:
        bad("docs-12", "only %d commands in the block" % len(lines))
    else:
        check("docs-12", fails, "README commands that fail")

# ---- docs-13: the changelog has this version ------------------------------------
# the version is written once, as three numbers (DS_VERSION_STRING is made from them)
nums = [re.search(r"#define DS_VERSION_%s (\d+)" % k, read("deepseek.h")) for k in ("MAJOR", "MINOR", "PATCH")]
ver = None if not all(nums) else re.match(r"(.*)", ".".join(n.group(1) for n in nums))
log = read("CHANGELOG.md") if os.path.exists("CHANGELOG.md") else ""
if not ver:
    bad("docs-13", "no DS_VERSION_MAJOR/MINOR/PATCH in deepseek.h")
elif not re.search(r"(?m)^## \[%s\]" % re.escape(ver.group(1)), log):
    bad("docs-13", "CHANGELOG.md has no '## [%s]' entry" % ver.group(1))
else:
    ok("docs-13")

print("RESULT test_docs: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(1 if failed else 0)
EOF
