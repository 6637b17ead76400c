#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# pager_ab.sh — two builds of ds, interleaved, on one paged model: the
# paired comparison the pager's notes quote (this VM's speed drifts by up to
# 2x within an hour, so only runs taken side by side compare).
#
#     bench/pager_ab.sh OLD_DS NEW_DS MODEL KEY [options]
#
# Each round runs, for every budget, OLD then NEW:
#     ds bench MODEL --key-file KEY --threads T --cache-mb MB [--prefetch P]
# and prints decode tok/s and the per-token decode, compute, decrypt and wait.
#
# Options:
#   --rounds R      rounds (default 3)
#   --threads T     compute threads (default 2)
#   --cache-mb L    comma-separated budgets in MiB (default 421,210: 25% and
#                   12.5% of the bench models' routed experts)
#   --prefetch P    passed to both (auto, always, off); default: neither is
#                   given one (each build's default)
#   --drop          drop MODEL from the page cache before every run (the
#                   storage-bound case; needs python3)
set -eu
[ $# -ge 4 ] || { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
OLD=$1 NEW=$2 MODEL=$3 KEY=$4
shift 4
ROUNDS=3 THREADS=2 BUDGETS=421,210 PF="" DROP=0
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --cache-mb) BUDGETS=$2; shift ;;
        --prefetch) PF=$2; shift ;;
        --drop) DROP=1 ;;
        *) echo "pager_ab.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
drop() {
    python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)' "$MODEL"
}
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for mb in $(echo "$BUDGETS" | tr ',' ' '); do
        for which in old new; do
            ds=$OLD
            [ "$which" = old ] || ds=$NEW
            [ "$DROP" = 0 ] || drop
            if [ -n "$PF" ]; then
                out=$("$ds" bench "$MODEL" --key-file "$KEY" --threads "$THREADS" --cache-mb "$mb" --prefetch "$PF" 2>&1)
            else
                out=$("$ds" bench "$MODEL" --key-file "$KEY" --threads "$THREADS" --cache-mb "$mb" 2>&1)
            fi
            tps=$(echo "$out" | sed -n 's/^decode .*: \([0-9.]*\) tok\/s.*/\1/p')
            per=$(echo "$out" | sed -n 's/^per token *//p' | sed 's/ (decode - wait)//')
            echo "round $r  ${mb} MiB  $which: ${tps:-failed} tok/s | $per"
        done
    done
    r=$((r + 1))
done
