#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# ab_bench.sh — two builds of ds, paired: prefill and decode of the pager test
# models (q8 and f16, converted plaintext by bench/bitcheck.sh into MODELS),
# resident and with a 25% expert cache. The order alternates every round
# (ABBA), so neither build always runs on the page cache the other left.
#
#     bench/ab_bench.sh OLD_DS NEW_DS MODELS_DIR [ROUNDS]
set -eu
[ $# -ge 3 ] || { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
OLD=$1 NEW=$2 MODELS=$3 ROUNDS=${4:-4}
for r in $(seq 1 $ROUNDS); do
  order="old new"; [ $((r % 2)) -eq 0 ] && order="new old"
  for m in pager-q8 pager-f16; do
    for mode in res pag; do
      extra=""; [ $mode = pag ] && extra="--cache-mb $([ $m = pager-q8 ] && echo 40 || echo 75)"
      for which in $order; do
        DS=$OLD; [ $which = new ] && DS=$NEW
        line=$($DS bench $MODELS/$m.dsm --threads 2 --prompt-tokens 128 --gen-tokens 64 $extra 2>&1 | grep -E "^prefill  |^decode  " | tr -s ' ' | tr '\n' ' ')
        echo "$r $m $mode $which $line"
      done
    done
  done
done
