#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# hugepages_ab.sh — weights in transparent huge pages against 4 KiB pages,
# paired on one model: the memory probe (bench/membw.c, --pages huge|small),
# then ds bench resident and with an expert cache, each with and without
# --no-huge-pages. The order alternates every round (ABBA), so neither
# setting always runs second. Prints one line per run and, at the end, the
# median of each setting and of the per-round ratios huge/small.
#
#     bench/hugepages_ab.sh DS MODEL.dsm MEMBW [ROUNDS] [CACHE_MB] [GEN] [MEMBW_MB]
#
# DS: a ds binary; MEMBW: a membw binary (cc -O2 -pthread bench/membw.c);
# ROUNDS pairs per configuration (default 7); CACHE_MB the paged run's expert
# cache (default 300); GEN decode tokens (default 64); MEMBW_MB the probe's
# buffer (default 4096). The model opens with --allow-plaintext semantics (a
# --no-encrypt file needs no key). Results in bench/results/hugepages/.
set -eu
[ $# -ge 3 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
DS=$1 MODEL=$2 MEMBW=$3 ROUNDS=${4:-7} CACHE=${5:-300} GEN=${6:-64} MBW_MB=${7:-4096}
THREADS=$(nproc)

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) uname -r: $(uname -r); THP enabled: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null);" \
     "defrag: $(cat /sys/kernel/mm/transparent_hugepage/defrag 2>/dev/null); $THREADS CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# model $MODEL ($(stat -c %s "$MODEL") bytes), $ROUNDS rounds, cache $CACHE MiB, $GEN decode tokens, membw $MBW_MB MB"

# one run -> "round config setting value huge_mb" on stdout
membw_run() {   # $1 round, $2 huge|small
  line=$($MEMBW --threads "$THREADS" --mb "$MBW_MB" --runs 5 --pages "$2")
  echo "RAW $1 membw $2 $line"
  gbs=$(echo "$line" | sed 's/.*median_gbs=\([0-9.]*\).*/\1/')
  ahp=$(echo "$line" | sed 's/.*anon_huge_mb=\([0-9.-]*\).*/\1/')
  echo "RUN $1 membw $2 $gbs $ahp"
}
bench_run() {   # $1 round, $2 res|pag, $3 huge|small
  extra=""; [ "$2" = pag ] && extra="--cache-mb $CACHE --page-cache-mb 4096"
  flag=""; [ "$3" = small ] && flag="--no-huge-pages"
  out=$($DS bench "$MODEL" --threads "$THREADS" --prompt-tokens 8 --gen-tokens "$GEN" $extra $flag 2>&1)
  echo "$out" | sed "s/^/RAW $1 $2 $3 /"
  tps=$(echo "$out" | sed -n 's/^decode  *[0-9]* tokens in [0-9.]* s: \([0-9.]*\) tok\/s.*/\1/p')
  ahp=$(echo "$out" | sed -n 's/^huge pages .*after the decode: \([0-9.]*\) MB.*/\1/p')
  echo "RUN $1 $2 $3 ${tps:-nan} ${ahp:-0}"
}

for r in $(seq 1 "$ROUNDS"); do
  order="huge small"; [ $((r % 2)) -eq 0 ] && order="small huge"
  for s in $order; do membw_run "$r" "$s"; done
  for cfg in res pag; do
    for s in $order; do bench_run "$r" "$cfg" "$s"; done
  done
done | tee /dev/stderr | grep '^RUN' | awk '
  { v[$3 " " $4 " " $2] = $5; h[$3 " " $4 " " $2] = $6; cfgs[$3] = 1; rounds[$2] = 1 }
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    printf "\n%-6s %12s %12s %12s %10s %16s\n", "config", "median huge", "median small", "median ratio", "pairs", "huge MB (median)"
    for (c in cfgs) {
      n = 0
      for (r in rounds) {
        if ((c " huge " r) in v && (c " small " r) in v && v[c " small " r] > 0) {
          n++; H[n] = v[c " huge " r]; S[n] = v[c " small " r]; R[n] = v[c " huge " r] / v[c " small " r]; M[n] = h[c " huge " r]
        }
      }
      if (n) printf "%-6s %12.3f %12.3f %12.3f %10d %16.1f\n", c, median(H, n), median(S, n), median(R, n), n, median(M, n)
    }
    print "(membw: GB/s, median of 5 reads; res/pag: decode tok/s; ratio = huge / small within a round)"
  }'
