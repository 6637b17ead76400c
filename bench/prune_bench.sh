#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
#
# prune_bench.sh — the quality, size and speed table of pruning (issue 20):
# magnitude pruning at 0/10/20/30/50%, 2:4, and expert dropping at
# 0/12.5/25/37.5%, each converted to Q8_0 (sparse storage where smaller).
#
#   sh bench/prune_bench.sh OUTDIR [BIG_CKPT]
#
# Part 1, quality: the trained demo model (models/demo-hf) on the 23 held-out
# KJV chapters (`ds perplexity --ctx 256`, as models/README.md), its file
# size and decode speed. Expert dropping is calibrated on 60 training
# chapters (`ds calibrate`), never on the held-out text.
# Part 2, size and speed at scale (only with BIG_CKPT, a V2-Lite-shaped
# random checkpoint: tests/gen/make_checkpoint.py --big-gb 0 --layers 3 DIR):
# file size, routed-expert bytes, decode tokens/s resident, and at a fixed
# expert cache (--cache-mb = 25% of the dense file's routed-expert bytes)
# the hit rate and decode tokens/s. Files already in OUTDIR (big-NAME.dsm,
# sealed with $BIG_KEY or OUTDIR/big.key) are reused. Its values are random: quality there
# means nothing, speed and bytes do.
#
# Writes OUTDIR/quality.csv, OUTDIR/speed.csv and OUTDIR/table.md, and
# prints the tables. Needs build/ds (make), numpy, and the bible-kjv-text
# package for the corpus (tools/train/README.md). Threads: $THREADS (2).
# SKIP_DEMO=1 keeps part 1's quality.csv and runs part 2 only.
set -eu
OUT=${1:?usage: sh bench/prune_bench.sh OUTDIR [BIG_CKPT]}
BIG=${2:-}
DS=${DS:-build/ds}
THREADS=${THREADS:-2}
PY=$(sh tools/find_python.sh)
KEY=models/demo.key
mkdir -p "$OUT"

# ---- the texts -------------------------------------------------------------
if [ ! -f "$OUT/kjv/val.txt" ]; then
    "$PY" tools/train/kjv_corpus.py "$OUT/kjv" >/dev/null
    "$PY" -c 'import json,sys; print("\n\n".join(json.loads(l)["text"] for l in open(sys.argv[1])))' \
        "$OUT/kjv/kjv_val.jsonl" >"$OUT/kjv/val.txt"
    "$PY" -c 'import json,sys; L=open(sys.argv[1]).readlines(); print("\n\n".join(json.loads(l)["text"] for l in L[::19][:60]))' \
        "$OUT/kjv/kjv_train.jsonl" >"$OUT/kjv/calib.txt"
    head -c 20000 "$OUT/kjv/calib.txt" >"$OUT/kjv/calib_small.txt"
fi
VAL=$OUT/kjv/val.txt
CAL=$OUT/kjv/calib.txt

SETTINGS="dense:
prune10:--prune 0.1
prune20:--prune 0.2
prune30:--prune 0.3
prune50:--prune 0.5
s2of4:--prune-structured 2:4
drop12.5:--drop-experts 0.125
drop25:--drop-experts 0.25
drop37.5:--drop-experts 0.375"

# json_get FILE KEY: a number after "KEY": in a one-line JSON
json_get() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); k=sys.argv[2].split("."); 
for x in k: d=d[x]
print(d)' "$1" "$2"; }

# ---- part 1: the demo model ------------------------------------------------
if [ "${SKIP_DEMO:-0}" != 1 ]; then
"$DS" calibrate models/demo.dsm --key-file "$KEY" --file "$CAL" --ctx 256 -t "$THREADS" --out "$OUT/demo_calib.json" >/dev/null
echo "setting,flags,file_bytes,perplexity,perplexity_stderr,decode_tok_s,prefill_tok_s" >"$OUT/quality.csv"
echo "$SETTINGS" | while IFS=: read -r name flags; do
    f=$OUT/demo-$name.dsm
    case "$flags" in *drop-experts*) flags="$flags --calib $OUT/demo_calib.json" ;; esac
    # shellcheck disable=SC2086
    "$DS" convert models/demo-hf "$f" --key-file "$KEY" --force $flags >/dev/null 2>&1
    "$DS" perplexity "$f" --key-file "$KEY" --file "$VAL" --ctx 256 --threads "$THREADS" --json >"$OUT/ppl-$name.json" 2>/dev/null
    "$DS" bench "$f" --key-file "$KEY" -p 128 -n 128 -r 5 -t "$THREADS" --json >"$OUT/bench-demo-$name.json" 2>/dev/null
    echo "$name,$flags,$(stat -L -c %s "$f"),$(json_get "$OUT/ppl-$name.json" perplexity),$(json_get "$OUT/ppl-$name.json" stderr),$(json_get "$OUT/bench-demo-$name.json" run.decode_tok_s),$(json_get "$OUT/bench-demo-$name.json" run.prefill_tok_s)" >>"$OUT/quality.csv"
done

fi

# ---- part 2: size and speed at scale ----------------------------------------
if [ -n "$BIG" ]; then
    BKEY=${BIG_KEY:-$OUT/big.key}
    [ -f "$BKEY" ] || "$DS" keygen "$BKEY" >/dev/null
    echo "setting,file_bytes,expert_bytes,decode_tok_s,prefill_tok_s,cache_mb,hit_rate,cached_decode_tok_s,slot_bytes,n_slots" >"$OUT/speed.csv"
    CACHE=
    echo "$SETTINGS" | while IFS=: read -r name flags; do
        f=$OUT/big-$name.dsm
        if [ ! -f "$f" ]; then
            case "$flags" in *drop-experts*)
                [ -f "$OUT/big_calib.json" ] || "$DS" calibrate "$OUT/big-dense.dsm" --key-file "$BKEY" \
                    --file "$OUT/kjv/calib_small.txt" --ctx 512 -t "$THREADS" --out "$OUT/big_calib.json" >/dev/null
                flags="$flags --calib $OUT/big_calib.json" ;;
            esac
            # shellcheck disable=SC2086
            "$DS" convert "$BIG" "$f" --key-file "$BKEY" --force $flags >/dev/null 2>&1
        fi
        "$DS" bench "$f" --key-file "$BKEY" -p 64 -n 64 -r 3 -t "$THREADS" --json >"$OUT/bench-big-$name.json" 2>/dev/null
        eb=$(json_get "$OUT/bench-big-$name.json" run.expert_bytes)
        # the budget: a quarter of the dense file's routed experts, for every setting
        [ -n "$CACHE" ] || CACHE=$("$PY" -c "print(max(1, int($eb / 4 / 1048576)))")
        "$DS" bench "$f" --key-file "$BKEY" -p 16 -n 64 -r 3 -t "$THREADS" --cache-mb "$CACHE" --json \
            >"$OUT/bench-big-$name-cache.json" 2>/dev/null
        c=$OUT/bench-big-$name-cache.json
        echo "$name,$(stat -L -c %s "$f"),$eb,$(json_get "$OUT/bench-big-$name.json" run.decode_tok_s),$(json_get "$OUT/bench-big-$name.json" run.prefill_tok_s),$CACHE,$(json_get "$c" run.hit_rate),$(json_get "$c" run.decode_tok_s),$(json_get "$c" run.decode_pager.slot_bytes),$(json_get "$c" run.decode_pager.n_slots)" >>"$OUT/speed.csv"
    done
fi

"$PY" - "$OUT" <<'EOF'
import csv, os, sys
out = sys.argv[1]
lines = []
q = list(csv.DictReader(open(os.path.join(out, "quality.csv"))))
base = q[0]
lines.append("| setting | file bytes | vs dense | perplexity (KJV val) | vs dense | decode tok/s | prefill tok/s |")
lines.append("|---|---:|---:|---:|---:|---:|---:|")
for r in q:
    lines.append("| %s | %s | %.3f | %.2f ± %.2f | %+.1f%% | %.0f | %.0f |" % (
        r["setting"], r["file_bytes"], int(r["file_bytes"]) / int(base["file_bytes"]), float(r["perplexity"]),
        float(r["perplexity_stderr"]), 100 * (float(r["perplexity"]) / float(base["perplexity"]) - 1),
        float(r["decode_tok_s"]), float(r["prefill_tok_s"])))
sp = os.path.join(out, "speed.csv")
if os.path.exists(sp):
    s = list(csv.DictReader(open(sp)))
    b = s[0]
    lines.append("")
    lines.append("| setting | file bytes | expert bytes | decode tok/s | vs dense | prefill tok/s | cache MiB | slots | hit rate | decode tok/s cached |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in s:
        lines.append("| %s | %s | %s | %.2f | %.2f× | %.1f | %s | %s | %.3f | %.2f |" % (
            r["setting"], r["file_bytes"], r["expert_bytes"], float(r["decode_tok_s"]),
            float(r["decode_tok_s"]) / float(b["decode_tok_s"]), float(r["prefill_tok_s"]), r["cache_mb"],
            r["n_slots"], float(r["hit_rate"]), float(r["cached_decode_tok_s"])))
open(os.path.join(out, "table.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
