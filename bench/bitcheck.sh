#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# bitcheck.sh — are two builds of ds bit-identical? Converts every generated
# test family at q8 and f16 (with OLD), then compares, byte for byte, what
# OLD and NEW give: the logits of a 40-token batch (2 threads, 1 thread, and
# with a small expert cache) and 24 greedy tokens (resident and paged).
#
#     bench/bitcheck.sh OLD_DS NEW_DS [TESTDATA [WORKDIR]]
#
# TESTDATA defaults to build/testdata (make testdata); prints one line per
# difference and a closing "N same, N different".
set -eu
[ $# -ge 2 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
OLD=$1 NEW=$2 TD=${3:-build/testdata} W=${4:-$(mktemp -d)}
mkdir -p "$W/old" "$W/new"
TOK=3,17,101,7,55,200,9,42,130,66,1,250,77,12,19,23,180,41,99,5,61,140,33,8,222,15,90,45,160,2,70,111,38,201,13,88,150,27,64,190
same=0 diff=0
for f in v2 v2lite v3 moe16b yarn pager; do
    [ -f "$TD/$f/config.json" ] || continue
    for q in q8 f16; do
        m="$W/$f-$q.dsm"
        [ -f "$m" ] || "$OLD" convert "$TD/$f" "$m" --quant $q --no-encrypt >/dev/null 2>&1
        cache=1; [ $f = pager ] && cache=24
        for b in old new; do
            DS=$OLD; [ $b = new ] && DS=$NEW
            o="$W/$b/$f-$q"
            "$DS" logits "$m" --tokens $TOK --out "$o.res.f32" --threads 2 >/dev/null 2>&1
            "$DS" logits "$m" --tokens $TOK --out "$o.t1.f32" --threads 1 >/dev/null 2>&1
            "$DS" logits "$m" --tokens $TOK --out "$o.pag.f32" --threads 2 --cache-mb $cache >/dev/null 2>&1
            "$DS" run "$m" -p "the quick brown fox" -n 24 --temp 0 --threads 2 > "$o.run.txt" 2>/dev/null
            "$DS" run "$m" -p "the quick brown fox" -n 24 --temp 0 --threads 2 --cache-mb $cache > "$o.runp.txt" 2>/dev/null
        done
        for k in res.f32 t1.f32 pag.f32 run.txt runp.txt; do
            if cmp -s "$W/old/$f-$q.$k" "$W/new/$f-$q.$k"; then same=$((same + 1))
            else diff=$((diff + 1)); echo "different: $f-$q.$k"; fi
        done
    done
done
echo "$same same, $diff different"
