#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# prefill_ab.sh — builds (or settings) of ds side by side on one plaintext
# model: R rounds, each running every command once, the order rotated by one
# per round (this VM's speed drifts, so only runs taken side by side
# compare). Prints one line per run, then per label the median prefill and
# decode tok/s and, against the first label, the median of the per-round
# prefill ratios.
#
#     bench/prefill_ab.sh MODEL ROUNDS LABEL=COMMAND ...
#     bench/prefill_ab.sh m.dsm 6 base=build/ds blas=build-blas/ds "blas4=VAR=1 build-blas/ds"
#
# Each run: COMMAND bench MODEL --allow-plaintext --prompt-tokens 128
# --gen-tokens 16 --threads 2 (PROMPT, GEN and THREADS override).
set -eu
[ $# -ge 3 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
MODEL=$1 ROUNDS=$2
shift 2
K=$#
log=$(mktemp)
for i in $(seq 1 "$ROUNDS"); do
    j=0
    while [ $j -lt "$K" ]; do
        idx=$(( (j + i - 1) % K + 1 ))
        eval spec=\${$idx}
        label=${spec%%=*} cmd=${spec#*=}
        out=$(env $cmd bench "$MODEL" --allow-plaintext --prompt-tokens "${PROMPT:-128}" \
              --gen-tokens "${GEN:-16}" --threads "${THREADS:-2}" 2>&1) || true
        p=$(echo "$out" | sed -n 's/^prefill .*: \([0-9.]*\) tok\/s/\1/p')
        d=$(echo "$out" | sed -n 's/^decode .*: \([0-9.]*\) tok\/s.*/\1/p')
        echo "$i $label prefill ${p:-?} decode ${d:-?}" | tee -a "$log"
        j=$((j + 1))
    done
done
python3 - "$log" "${1%%=*}" <<'PY'
import sys, statistics, collections
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
base = sys.argv[2]
runs = collections.defaultdict(list); by_round = collections.defaultdict(dict)
for r in rows:
    if r[3] == "?" or r[5] == "?":
        continue
    runs[r[1]].append((float(r[3]), float(r[5])))
    by_round[r[0]][r[1]] = float(r[3])
for lab, v in runs.items():
    p = [x[0] for x in v]
    line = "%-10s %d runs: prefill median %.2f tok/s (%.2f-%.2f), decode median %.2f" % (
        lab, len(v), statistics.median(p), min(p), max(p), statistics.median(x[1] for x in v))
    if lab != base:
        rat = [by_round[k][lab] / by_round[k][base] for k in by_round if lab in by_round[k] and base in by_round[k]]
        if rat:
            line += "; /%s per round: median %.3f (%s)" % (base, statistics.median(rat), " ".join("%.2f" % x for x in rat))
    print(line)
PY
rm -f "$log"
