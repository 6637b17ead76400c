#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# realsize.sh — a full DeepSeek-V2-Lite-shaped model (27 layers, 15.7 B
# parameters) under memory caps: deepseek.h's expert pager against llama.cpp
# on the same weights, inside the same memory cgroup.
#
#     bench/realsize.sh OUTDIR [options]
#
# Per routing (uniform, then Zipf-skewed):
# 1. writes the random checkpoint shard by shard (tests/gen/make_checkpoint.py
#    --big-gb 0 --layers N [--zipf S]: 31.4 GB of BF16 at 27 layers), converts
#    it with `ds convert --quant q8` (or q4; its peak memory measured) and,
#    from the same values, to a GGUF of the same recipe for llama.cpp
#    (bench/hf_to_gguf_q8.py), then deletes the checkpoint;
# 2. measures the storage (bench/storage_read.py: random expert-sized reads
#    from the container, page cache dropped, by 1 and by 4 readers) and one
#    core's AES-256-GCM decryption (bench/aead_speed.c);
# 3. runs, each in a fresh process started with the page cache dropped and
#    measured by bench/cgroup_run.py (the cgroup's peak charge, peak RSS, OOM
#    kills, wall time):
#      ours resident; llama.cpp resident (no cap);
#      for each budget B (% of the routed-expert bytes): ours with
#      --cache-mb B and llama.cpp with its defaults (mmap), both in a memory
#      cgroup capped at dense bytes + B + 512 MiB (swap off);
# 4. bench/realsize_report.py writes OUTDIR/realsize.md (the table, the
#    storage bound, token identity), OUTDIR/realsize.csv and
#    OUTDIR/realsize.svg (the plot).
#
# Options:
#   --layers N        layers (default 27 = DeepSeek-V2-Lite; 1 dense + N-1 MoE)
#   --routings LIST   "uniform zipf" (default), or one of them
#   --zipf S          the skew of the zipf routing (default 1.0)
#   --budgets LIST    percentages of the routed-expert bytes (default "50 25 12.5")
#   --quant q8|q4     the recipe of both engines' files (default q8: Q8_0; q4:
#                     Q4_0 as `ds convert --quant q4`); runs of q4 are named
#                     <routing>-q4 in the report
#   --prompt P        prompt tokens (default 32)
#   --gen G           decode tokens of our runs (default 32)
#   --llama-gen G     decode tokens of llama.cpp's capped runs (default 16:
#                     at well under 1 token/s inside a cap)
#   --threads N       compute threads for both engines (default 2)
#   --no-llama        our runs only
#   --no-repack       llama.cpp without its CPU repacking (run_llama.py
#                     --no-repack: weights stay in its mapping; with its
#                     defaults an AVX2 CPU copies Q4_0 weights into anonymous
#                     memory, and a cap kills it); its runs are named
#                     <routing>nr-llama-<setting>
#   --keep            keep the containers and GGUF files (default: each
#                     routing's are deleted once measured, to fit the disk)
#   --prepare         stop after making the files of the first routing
# Environment: DS (default build/ds), PYTHON (default: tools/find_python.sh),
# VENV (llama-cpp-python's venv, default OUTDIR/venv: installed as
# bench/compare_llamacpp.sh does, 30-60 min on 2 cores), CC.
#
# Disk: at 27 layers, 31.4 GB of checkpoint + 16.9 GB container + 16.9 GB
# GGUF at the peak (about 66 GB), one routing at a time. Needs root for the
# cgroups and for dropping the page cache. Not part of make test. Run on a
# quiet machine: the load average is recorded before and after every run.
set -eu

usage() {
    sed -n '2,59p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; -*) echo "realsize.sh: OUTDIR first" >&2; exit 2 ;; esac
OUT=$1
shift
LAYERS=27 ROUTINGS="uniform zipf" ZIPF=1.0 BUDGETS="50 25 12.5" PROMPT=32 GEN=32 LGEN=16 THREADS=2
NOLLAMA=0 KEEP=0 PREPARE=0 QUANT=q8 NOREPACK=""
while [ $# -gt 0 ]; do
    case $1 in
        --layers) LAYERS=$2; shift ;;
        --routings) ROUTINGS=$2; shift ;;
        --zipf) ZIPF=$2; shift ;;
        --budgets) BUDGETS=$2; shift ;;
        --quant) QUANT=$2; shift ;;
        --prompt) PROMPT=$2; shift ;;
        --gen) GEN=$2; shift ;;
        --llama-gen) LGEN=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --no-llama) NOLLAMA=1 ;;
        --no-repack) NOREPACK=--no-repack ;;
        --keep) KEEP=1 ;;
        --prepare) PREPARE=1 ;;
        -h|--help) usage ;;
        *) echo "realsize.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
case $QUANT in q8|q4) ;; *) echo "realsize.sh: --quant takes q8 or q4, not $QUANT" >&2; exit 2 ;; esac
for r in $ROUTINGS; do
    case $r in uniform|zipf) ;; *) echo "realsize.sh: --routings takes uniform and/or zipf, not $r" >&2; exit 2 ;; esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DS=${DS:-$ROOT/build/ds}
PYTHON=${PYTHON:-$(sh "$ROOT/tools/find_python.sh" 2>/dev/null || echo python3)}
CC=${CC:-cc}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
VENV=${VENV:-$OUT/venv}
VPY=$VENV/bin/python
WORK=$OUT/work RUNS=$OUT/runs BIN=$OUT/bin
mkdir -p "$WORK" "$RUNS" "$BIN"
CG="$PYTHON $ROOT/bench/cgroup_run.py"

say() { printf '== %s\n' "$*"; }
die() { printf 'realsize.sh: %s\n' "$*" >&2; exit 1; }
load1() { cut -d' ' -f1 /proc/loadavg; }

[ "$(id -u)" = 0 ] || die "needs root (memory cgroups, dropping the page cache)"
"$DS" bench --help > /dev/null 2>&1 || die "$DS has no 'bench' command (make, or set DS=...)"
if [ "$NOLLAMA" = 0 ] && ! "$VPY" -c 'import llama_cpp, gguf, numpy' 2> /dev/null; then
    die "llama-cpp-python is not in $VENV: install it as bench/compare_llamacpp.sh --prepare does, or --no-llama"
fi
$CC -O2 "$ROOT/bench/aead_speed.c" -lsodium -o "$BIN/aead_speed"
KEY=$WORK/bench.key
[ -f "$KEY" ] || "$DS" keygen "$KEY" > /dev/null

# The machine, once
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs"
    echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); swap: $(awk '/SwapTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "storage: $(df -h "$WORK" | awk 'NR == 2 { print $1 }') ($(df -T "$WORK" | awk 'NR == 2 { print $2 }'))"
    "$BIN/aead_speed" 256
    [ "$NOLLAMA" = 1 ] || echo "llama_cpp_python=$("$VPY" -c 'import llama_cpp; print(llama_cpp.__version__)')"
    echo "ds=$("$DS" --version 2>&1 | head -1)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# run ID CAP CMD...: one measured run; CAP in bytes or none
run() {
    id=$1 cap=$2
    shift 2
    l0=$(load1)
    $CG --limit "$cap" --drop-caches --name "ds-realsize" --stdout "$RUNS/$id.out" --stderr "$RUNS/$id.err" \
        --json "$RUNS/$id.cg.json" -- "$@"
    printf '{"load_before": %s, "load_after": %s}\n' "$l0" "$(load1)" > "$RUNS/$id.load.json"
    echo "   $id: $("$PYTHON" -c '
import json, sys
c = json.load(open(sys.argv[1]))
print("exit %s, peak %.0f MiB (cap %s), %.0f s%s" % (c["exit_status"], c["peak_bytes"] / 2**20,
      "none" if c["limit_bytes"] is None else "%.0f MiB" % (c["limit_bytes"] / 2**20), c["wall_seconds"],
      ", OOM-killed" if c["oom_kills"] else ""))' "$RUNS/$id.cg.json")"
}

LABELS=""
for R0 in $ROUTINGS; do
    R=$R0
    [ "$QUANT" = q8 ] || R=$R0-$QUANT   # the runs' names, and the report's rows
    LABELS="$LABELS $R"
    DSM=$WORK/$R.dsm GG=$WORK/$R.gguf HF=$WORK/hf-$R0
    if [ ! -f "$DSM" ] || { [ "$NOLLAMA" = 0 ] && [ ! -f "$GG" ]; }; then
        if [ ! -f "$HF/.complete" ]; then
            say "$R: writing the $LAYERS-layer checkpoint (tests/gen/make_checkpoint.py)"
            rm -rf "$HF"
            zf=""
            [ "$R0" = uniform ] || zf="--zipf $ZIPF"
            # shellcheck disable=SC2086
            "$PYTHON" "$ROOT/tests/gen/make_checkpoint.py" --big-gb 0 "$HF" --layers "$LAYERS" $zf -v
            touch "$HF/.complete"
        fi
        if [ ! -f "$DSM" ]; then
            say "$R: ds convert --quant $QUANT (peak memory measured)"
            $CG --json "$RUNS/$R-convert.cg.json" --stderr "$RUNS/$R-convert.err" -- \
                "$DS" convert "$HF" "$DSM.part" --quant "$QUANT" --key-file "$KEY" --force
            [ -f "$DSM.part" ] || die "ds convert failed: see $RUNS/$R-convert.err"
            mv "$DSM.part" "$DSM"
        fi
        if [ "$NOLLAMA" = 0 ] && [ ! -f "$GG" ]; then
            say "$R: the same values as a GGUF of the same recipe (bench/hf_to_gguf_q8.py --type $QUANT)"
            "$VPY" "$ROOT/bench/hf_to_gguf_q8.py" "$HF" "$GG.part" --type "$QUANT"
            mv "$GG.part" "$GG"
        fi
        [ ! -f "$HF/routing.json" ] || cp "$HF/routing.json" "$OUT/routing-$R0.json"
        cp "$HF/config.json" "$OUT/config.json"
        # ds bench's prompt walks over the tokenizer's ids: largest id + 1
        "$PYTHON" -c '
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8"))
print(1 + max(list(t["model"]["vocab"].values()) + [a["id"] for a in t.get("added_tokens", [])]))' \
            "$HF/tokenizer.json" > "$OUT/prompt-vocab.txt"
        rm -rf "$HF"   # the checkpoint is not needed any more
    fi
    [ "$PREPARE" = 0 ] || { say "prepared $DSM${GG:+ and $GG}"; exit 0; }

    PVOCAB=$(cat "$OUT/prompt-vocab.txt")
    say "$R: storage"
    for j in 1 4; do
        "$PYTHON" "$ROOT/bench/storage_read.py" "$DSM" --jobs "$j" --json > "$RUNS/$R-storage-j$j.json"
        cat "$RUNS/$R-storage-j$j.json"
    done

    say "$R: resident runs"
    run "$R-ds-resident" none "$DS" bench "$DSM" --key-file "$KEY" --threads "$THREADS" \
        --prompt-tokens "$PROMPT" --gen-tokens "$GEN" --json
    LR=$R
    [ -z "$NOREPACK" ] || LR=${R}nr
    # shellcheck disable=SC2086
    [ "$NOLLAMA" = 1 ] || run "$LR-llama-resident" none "$VPY" "$ROOT/bench/run_llama.py" "$GG" bench \
        --threads "$THREADS" --prompt "$PROMPT" --gen "$GEN" --prompt-vocab "$PVOCAB" --bos 0 $NOREPACK
    sizes=$("$PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))["run"]
print(r["expert_bytes"], r["dense_bytes"])' "$RUNS/$R-ds-resident.out") ||
        die "the resident run gave no figures: see $RUNS/$R-ds-resident.err"
    EXPERT=${sizes% *} DENSE=${sizes#* }
    for B in $BUDGETS; do
        mb=$("$PYTHON" -c 'import sys; print(int(float(sys.argv[1]) / 100 * int(sys.argv[2]) / 2**20))' "$B" "$EXPERT")
        cap=$("$PYTHON" -c 'import sys; print(int(sys.argv[1]) + int(sys.argv[2]) * 2**20 + 512 * 2**20)' "$DENSE" "$mb")
        say "$R: budget $B% = $mb MiB of experts, cap $((cap / 1048576)) MiB"
        run "$R-ds-$B" "$cap" "$DS" bench "$DSM" --key-file "$KEY" --threads "$THREADS" --cache-mb "$mb" \
            --prompt-tokens "$PROMPT" --gen-tokens "$GEN" --json
        # shellcheck disable=SC2086
        [ "$NOLLAMA" = 1 ] || run "$LR-llama-$B" "$cap" "$VPY" "$ROOT/bench/run_llama.py" "$GG" bench \
            --threads "$THREADS" --prompt "$PROMPT" --gen "$LGEN" --prompt-vocab "$PVOCAB" --bos 0 $NOREPACK
    done
    if [ "$KEEP" = 0 ]; then rm -f "$DSM" "$GG"; fi
done

say "report"
# every routing measured so far in OUTDIR (an earlier call's too), in order
ALL=""
for R in uniform uniformnr zipf zipfnr uniform-q4 uniform-q4nr zipf-q4 zipf-q4nr; do
    if ls "$RUNS/$R"-ds-*.cg.json "$RUNS/$R"-llama-*.cg.json > /dev/null 2>&1; then ALL="$ALL $R"; fi
done
"$PYTHON" "$ROOT/bench/realsize_report.py" "$OUT" --budgets "$BUDGETS" --routings "${ALL:-$LABELS}"
