#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# run_pager_bench.sh — the expert pager on a model that does not fit its cache.
#
#     bench/run_pager_bench.sh OUTDIR [options]
#
# Generates a V2-Lite-shaped checkpoint twice (tests/gen/make_checkpoint.py
# --big-gb: hidden 2048, 64 routed experts top-6, 2 shared, vocab 102400),
# once with uniform routing and once with Zipf-skewed expert popularity
# (--zipf S), converts each to an encrypted Q8_0 container (>= 2 GB), and runs
#
#     ds bench MODEL --key-file KEY --sweep 100,50,25,12.5 --threads 2
#
# on each: every budget with and without prefetch, each run in its own
# process. Writes OUTDIR/uniform/ and OUTDIR/zipf/ (sweep.csv, sweep_runs.csv,
# sweep.png, bench.txt), OUTDIR/summary.txt (the combined table) and, with
# gnuplot, OUTDIR/pager_bench.png (both routings in one figure).
#
# Options:
#   --gb X          BF16 checkpoint size (default 4: 1 dense + 3 MoE layers,
#                   2.4 GB in Q8_0)
#   --layers N      exactly N layers instead (overrides --gb)
#   --zipf S        Zipf exponent of the skewed model (default 1.0)
#   --threads N     compute threads (default 2)
#   --sweep LIST    budgets in % of the routed experts (default 100,50,25,12.5)
#   --prompt P      prompt tokens (default 128)
#   --gen G         decode tokens (default 64)
#   --repeat R      runs per setting, median reported (default 1)
#   --prefetch M    the prefetch mode of the runs with prefetch: auto
#                   (default), always (see ds bench --help)
#   --work DIR      where the multi-GB checkpoints and containers go
#                   (default OUTDIR/work; removed at the end unless --keep)
#   --keep          keep the containers (a later --reuse skips generation)
#   --reuse         use WORK/uniform.dsm and WORK/zipf.dsm if present
# Environment: DS (default build/ds), PYTHON (default python3).
#
# Needs about 2 x 4.5 GB of disk for the checkpoints (each removed once
# converted) + 2 x 2.4 GB for the containers, and 3 GB of memory. Not part of
# make test: about 15 minutes on 2 cores.
set -eu

usage() {
    sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; -*) echo "run_pager_bench.sh: OUTDIR first" >&2; exit 2 ;; esac
OUT=$1
shift
GB=4 LAYERS="" ZIPF=1.0 THREADS=2 SWEEP=100,50,25,12.5 PROMPT=128 GEN=64 REPEAT=1 WORK="" KEEP=0 REUSE=0 PREFETCH=auto
while [ $# -gt 0 ]; do
    case $1 in
        --gb) GB=$2; shift ;;
        --layers) LAYERS=$2; shift ;;
        --zipf) ZIPF=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --sweep) SWEEP=$2; shift ;;
        --prompt) PROMPT=$2; shift ;;
        --gen) GEN=$2; shift ;;
        --repeat) REPEAT=$2; shift ;;
        --prefetch) PREFETCH=$2; shift ;;
        --work) WORK=$2; shift ;;
        --keep) KEEP=1 ;;
        --reuse) REUSE=1; KEEP=1 ;;
        -h|--help) usage ;;
        *) echo "run_pager_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DS=${DS:-$ROOT/build/ds}
PYTHON=${PYTHON:-$(sh "$ROOT/tools/find_python.sh")} || exit 1
WORK=${WORK:-$OUT/work}
mkdir -p "$OUT" "$WORK"

if ! "$DS" bench --help > /dev/null 2>&1; then
    echo "run_pager_bench.sh: $DS has no 'bench' command (make build/ds, or set DS=...)" >&2
    exit 1
fi

KEY=$WORK/bench.key
[ -f "$KEY" ] || "$DS" keygen "$KEY" > /dev/null

# make_checkpoint.py wants OUTDIR right after --big-gb X
BIG_X=$GB LAYER_ARGS="" SIZE_DESC="--big-gb $GB"
[ -z "$LAYERS" ] || { BIG_X=0; LAYER_ARGS="--layers $LAYERS"; SIZE_DESC="--layers $LAYERS"; }

for mode in uniform zipf; do
    dsm=$WORK/$mode.dsm
    if [ "$REUSE" = 1 ] && [ -f "$dsm" ]; then
        echo "== $mode: reusing $dsm"
    else
        hf=$WORK/hf-$mode
        extra=""
        [ "$mode" = uniform ] || extra="--zipf $ZIPF"
        echo "== $mode: generating the checkpoint ($SIZE_DESC $extra)"
        # shellcheck disable=SC2086
        "$PYTHON" "$ROOT/tests/gen/make_checkpoint.py" --big-gb "$BIG_X" "$hf" $LAYER_ARGS $extra -v
        echo "== $mode: converting (Q8_0, AES-256-GCM)"
        rm -f "$dsm"
        "$DS" convert "$hf" "$dsm" --quant q8 --key-file "$KEY"
        [ ! -f "$hf/routing.json" ] || cp "$hf/routing.json" "$OUT/routing-$mode.json"
        rm -rf "$hf"
    fi
    mkdir -p "$OUT/$mode"
    echo "== $mode: ds bench --sweep $SWEEP --threads $THREADS"
    "$DS" bench "$dsm" --key-file "$KEY" --sweep "$SWEEP" --threads "$THREADS" --prompt-tokens "$PROMPT" \
        --gen-tokens "$GEN" --repeat "$REPEAT" --prefetch "$PREFETCH" --out "$OUT/$mode" | tee "$OUT/$mode/bench.txt"
done

# ---- the combined table ---------------------------------------------------
table() {
    for mode in uniform zipf; do
        awk -F, -v mode="$mode" '
            NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            { pf = $col["prefetch"] == 2 ? "always" : $col["prefetch"] == 1 ? "auto" : "off"
              printf "%-8s %8s %9.1f %6s %10.2f %10.3f %9.2f %7.1f %8.2f %8.3f %7.1f %9.1f %9.2f %9.2f\n",
                     mode, $col["budget_pct"], $col["budget_mb"], pf,
                     $col["prefill_tok_s"], $col["decode_tok_s"], $col["decode_ms_per_tok"],
                     100 * $col["hit_rate"], $col["decrypt_gbs"], $col["wait_s"],
                     100 * $col["prediction_accuracy"], $col["peak_rss_mb"],
                     $col["compute_ms_per_tok"], $col["decrypt_ms_per_tok"] }' "$OUT/$mode/sweep.csv"
    done
}
{
    echo "expert pager sweep: $SIZE_DESC, Zipf S=$ZIPF for 'zipf', $THREADS threads, $PROMPT prompt + $GEN decode tokens"
    printf "%-8s %8s %9s %6s %10s %10s %9s %7s %8s %8s %7s %9s %9s %9s\n" routing budget% "budget MB" pf \
        prefill/s decode/s ms/tok hit% "dec GB/s" "wait s" pred% "peak MB" "cmp ms" "dec ms"
    table
    echo "(cmp ms: the resident run's decode time per token; dec ms: decrypt seconds per decode token,"
    echo " summed over threads; hit% and pager figures cover the decode only; 100% = no expert cache)"
} | tee "$OUT/summary.txt"

# ---- the combined plot ----------------------------------------------------
if command -v gnuplot > /dev/null 2>&1; then
    gp=$OUT/pager_bench.gp
    plots=""
    for mode in uniform zipf; do
        for pf in 2 1 0; do
            dat=$OUT/$mode/plot-prefetch$pf.dat
            awk -F, -v pf=$pf '
                NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
                $col["prefetch"] == pf { print $col["budget_pct"], $col["decode_tok_s"], 100 * $col["hit_rate"] }' \
                "$OUT/$mode/sweep.csv" > "$dat"
            [ -s "$dat" ] || continue
            onoff=off; dt=2; pt=6
            [ $pf = 0 ] || { onoff=auto; dt=1; pt=7; }
            [ $pf != 2 ] || { onoff=always; dt=3; pt=9; }
            lc="#1f77b4"
            [ $mode = uniform ] || lc="#d62728"
            plots="$plots '$dat' using 1:COL with linespoints lw 2 dt $dt pt $pt lc rgb '$lc' title '$mode, prefetch $onoff',"
        done
    done
    plots=${plots%,}
    {
        echo "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1200,480 font ',10' } else { set terminal png size 1200,480 }"
        echo "set output '$OUT/pager_bench.png'"
        echo "set multiplot layout 1,2 title 'expert pager: uniform vs Zipf (S=$ZIPF) routing, $THREADS threads'"
        echo "set logscale x 2; set xrange [*:*] reverse; set grid; set key bottom left"
        echo "set xlabel 'expert cache budget (% of routed-expert bytes)'"
        echo "set xtics (100, 50, 25, 12.5, 6.25, 3.125)"
        echo "set ylabel 'decode tokens/s'; set yrange [0:*]"
        echo "plot $plots" | sed 's/COL/2/g'
        echo "set ylabel 'expert cache hit rate (%)'; set yrange [0:105]"
        echo "plot $plots" | sed 's/COL/3/g'
        echo "unset multiplot"
    } > "$gp"
    if gnuplot "$gp"; then echo "plot: $OUT/pager_bench.png"; else echo "gnuplot failed on $gp"; fi
else
    echo "gnuplot not installed (apt-get install gnuplot-nox): no combined plot"
fi

if [ "$KEEP" = 0 ]; then
    rm -f "$WORK/uniform.dsm" "$WORK/zipf.dsm" "$KEY"
    rmdir "$WORK" 2> /dev/null || true
fi
