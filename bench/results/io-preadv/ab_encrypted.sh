#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# ab_encrypted.sh — two builds of ds, paired (ABBA), on the encrypted Q8_0
# pager model: prefill, decode and the pager's decryption rate at expert
# caches of 0 (resident), 10, 40 and 200 MiB (200: every expert cached after
# the prefill, a warm cache).
#     OLD=old/ds NEW=new/ds M=pager-q8e.dsm K=k.key [CACHES="10 40"] [ROUNDS=6] sh ab_encrypted.sh
OLD=${OLD:?} NEW=${NEW:?} M=${M:?} K=${K:?}
ROUNDS=${ROUNDS:-4}
for r in $(seq 1 $ROUNDS); do
  order="old new"; [ $((r % 2)) -eq 0 ] && order="new old"
  for cache in ${CACHES:-0 10 40 200}; do
    for which in $order; do
      DS=$OLD; [ $which = new ] && DS=$NEW
      line=$($DS bench $M --key-file $K --threads 2 --prompt-tokens 64 --gen-tokens 128 --cache-mb $cache 2>&1 | grep -E "^open |^prefill  |^decode  |^decrypted " | tr -s ' ' | tr '\n' ' ')
      echo "$r cache=$cache $which $line"
    done
  done
done
