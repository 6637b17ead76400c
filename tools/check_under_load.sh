#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# tools/check_under_load.sh — runs `make check` N times in a row while B
# processes burn CPU beside it (busy loops at normal priority), to show the
# suite does not depend on timing or on an idle machine.
#
#   sh tools/check_under_load.sh            (5 runs, 2 burners)
#   RUNS=3 BURNERS=4 sh tools/check_under_load.sh
#
# Prints one line per run (passed/failed counts and seconds) and exits 1 when
# any run failed; each run's full output is kept in $LOGDIR (default
# build/check-under-load/).
set -u
RUNS=${RUNS:-5}
BURNERS=${BURNERS:-2}
LOGDIR=${LOGDIR:-build/check-under-load}
mkdir -p "$LOGDIR"
pids=""
i=0
while [ "$i" -lt "$BURNERS" ]; do
    sh -c 'while :; do :; done' &
    pids="$pids $!"
    i=$((i + 1))
done
trap 'kill $pids 2>/dev/null' EXIT INT TERM
echo "check_under_load: $RUNS runs of make check beside $BURNERS CPU burners ($(nproc) CPUs)"
bad=0
r=1
while [ "$r" -le "$RUNS" ]; do
    t0=$(date +%s)
    if make check > "$LOGDIR/run$r.log" 2>&1; then st=ok; else st=FAILED; bad=$((bad + 1)); fi
    t1=$(date +%s)
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOGDIR/run$r.log" | tail -n 1)
    echo "run $r: $st, ${summary:-no summary line}, $((t1 - t0)) s"
    grep -E '^FAIL' "$LOGDIR/run$r.log" | head -n 20
    r=$((r + 1))
done
echo "check_under_load: $((RUNS - bad)) of $RUNS runs passed"
[ "$bad" -eq 0 ]
