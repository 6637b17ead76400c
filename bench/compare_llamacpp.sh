#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# compare_llamacpp.sh — deepseek.h against llama.cpp on identical weights.
#
#     bench/compare_llamacpp.sh OUTDIR [options]
#
# 1. writes a random DeepSeek-V2-Lite-shaped checkpoint (tests/gen/
#    make_checkpoint.py --layers N: hidden 2048, 64 routed experts top-6 + 2
#    shared, MLA kv_lora 512, no q_lora, vocab 102400; 8 layers = 4.4 GB int8);
# 2. converts it with `ds convert --quant q4|q8|f16` and, from the same values,
#    to GGUF files for llama.cpp's deepseek2 architecture (bench/hf_to_gguf_q8.py:
#    our Q8_0 and Q4_0 quantizers replicated bit-exactly in numpy -- proved against the
#    C code by bench/q8_check.c -- written as llama.cpp's block_q8_0/q4_0), and
#    checks that llama.cpp's logits agree with `ds logits` on a short sequence;
# 3. installs llama.cpp (pip install llama-cpp-python, built from source, CPU
#    only) into a venv and runs `ds bench` and bench/run_llama.py alternately,
#    R runs each, every run in a fresh process: prefill of P prompt tokens as
#    one batch, then G greedy decode steps;
# 4. measures the memory read bandwidth (bench/membw.c) and the decode bound
#    = bandwidth / weight bytes read per decoded token;
# 5. prints the table and writes OUTDIR/compare.csv, OUTDIR/compare.md.
#
# Options:
#   --layers N      checkpoint layers (default 8: 1 dense + 7 MoE; real models are
#                   26 of 27 layers MoE, so fewer layers overweight the dense one)
#   --runs R        runs per engine and type (default 5)
#   --threads N     compute threads for both engines (default 2)
#   --prompt P      prompt tokens (default 128)
#   --gen G         decode tokens (default 64)
#   --types LIST    "q4 q8 f16" (default), or some of them
#   --quick         2 layers, 1 run each: tests this script, not the engines
#   --prepare       stop before the measurements (install, generate, convert,
#                   check); a later run without it only measures
#   --venv DIR      where llama-cpp-python is installed (default OUTDIR/venv)
#   --clean         remove OUTDIR/work (checkpoints, containers, GGUF files) at the end
# Environment: DS (default build/ds; BUILD/libdeepseek.a beside it is linked
# into the encoder check), PYTHON (default python3), CC (default cc),
# LLAMA_CPP_PYTHON (pip requirement, default llama-cpp-python==0.3.36),
# LDLIBS (default "-lsodium -lm -lpthread").
#
# Everything made is cached under OUTDIR/work and OUTDIR/venv, so a rerun
# skips to the measurements. First run: ~30-60 min to build llama.cpp on 2
# cores, a few minutes to generate and convert; ~30 GB of disk for the 8-layer
# files. Timed runs are not niced: run on a quiet machine (the load average is
# recorded in the table's title). Not part of make test.
set -eu

usage() {
    sed -n '2,44p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; -*) echo "compare_llamacpp.sh: OUTDIR first" >&2; exit 2 ;; esac
OUT=$1
shift
LAYERS=8 RUNS=5 THREADS=2 PROMPT=128 GEN=64 TYPES="q4 q8 f16" VENV="" CLEAN=0 QUICK=0 PREPARE=0
while [ $# -gt 0 ]; do
    case $1 in
        --layers) LAYERS=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --threads) THREADS=$2; shift ;;
        --prompt) PROMPT=$2; shift ;;
        --gen) GEN=$2; shift ;;
        --types) TYPES=$2; shift ;;
        --quick) QUICK=1 ;;
        --prepare) PREPARE=1 ;;
        --venv) VENV=$2; shift ;;
        --clean) CLEAN=1 ;;
        -h|--help) usage ;;
        *) echo "compare_llamacpp.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$QUICK" = 0 ] || { LAYERS=2; RUNS=1; }
for t in $TYPES; do
    case $t in q8|q4|f16) ;; *) echo "compare_llamacpp.sh: --types takes q4, q8 and/or f16, not $t" >&2; exit 2 ;; esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DS=${DS:-$ROOT/build/ds}
PYTHON=${PYTHON:-$(sh "$ROOT/tools/find_python.sh" 2>/dev/null || echo python3)}
CC=${CC:-cc}
LDLIBS=${LDLIBS:-"-lsodium -lm -lpthread"}
LLAMA_CPP_PYTHON=${LLAMA_CPP_PYTHON:-llama-cpp-python==0.3.36}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
VENV=${VENV:-$OUT/venv}
WORK=$OUT/work
BIN=$OUT/bin
mkdir -p "$WORK" "$BIN"
LIB=$(dirname "$DS")/libdeepseek.a

say() { printf '== %s\n' "$*"; }
die() { printf 'compare_llamacpp.sh: %s\n' "$*" >&2; exit 1; }
load1() { cut -d' ' -f1 /proc/loadavg; }

"$DS" bench --help > /dev/null 2>&1 || die "$DS has no 'bench' command (make, or set DS=...)"
[ -f "$LIB" ] || die "$LIB not found (the encoder check links against it)"
LOAD_START=$(load1)
say "load average at start: $LOAD_START ($(nproc) CPUs)"
awk -v l="$LOAD_START" 'BEGIN { exit !(l > 1.5) }' && \
    echo "   warning: the machine is busy; the figures will be noisy (run on a quiet machine)"

# ---- system packages (only what is missing) ---------------------------------
apt_install() {
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
    say "apt-get install $*"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$@"
}
need=""
command -v "$CC" > /dev/null 2>&1 || need="$need gcc"
command -v g++ > /dev/null 2>&1 || need="$need g++"
command -v cmake > /dev/null 2>&1 || need="$need cmake"
"$PYTHON" -c 'import numpy' 2> /dev/null || need="$need python3-numpy"
[ -x "$VENV/bin/python" ] || "$PYTHON" -c 'import ensurepip, venv' 2> /dev/null || need="$need python3-venv"
# shellcheck disable=SC2086
[ -z "$need" ] || apt_install $need

# ---- our helpers -------------------------------------------------------------
say "building bench/membw.c and bench/q8_check.c into $BIN"
$CC -std=c11 -O3 -march=native -pthread "$ROOT/bench/membw.c" -o "$BIN/membw" 2> /dev/null ||
    $CC -std=c11 -O3 -pthread "$ROOT/bench/membw.c" -o "$BIN/membw"
# shellcheck disable=SC2086
$CC -std=c11 -O2 -I"$ROOT" "$ROOT/bench/q8_check.c" "$LIB" -o "$BIN/q8_check" $LDLIBS

# ---- llama.cpp (llama-cpp-python, from source, CPU only) ---------------------
VPY=$VENV/bin/python
# llama-cpp-python 0.3.36 on a CPU with AMX puts Q8_0/Q4_0 weights into its
# AMX buffer by default and then cannot run this model (an assertion in the
# scheduler, or a crash in the first decode): there it runs as llama.cpp's
# --no-repack (bench/run_llama.py --no-repack), said in the table's title
NOREPACK=""
if grep -q '\bamx_tile\b' /proc/cpuinfo 2>/dev/null; then NOREPACK="--no-repack"; fi
if ! "$VPY" -c 'import llama_cpp, gguf, numpy' 2> /dev/null; then
    say "installing $LLAMA_CPP_PYTHON, gguf, numpy into $VENV (builds llama.cpp: 30-60 min on 2 cores)"
    [ -x "$VPY" ] || "$PYTHON" -m venv "$VENV"
    "$VPY" -m pip install -q --upgrade pip
    "$VPY" -m pip install -q numpy gguf
    # CPU only, tuned for this CPU; no llava/mtmd, tests, tools or server
    CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_CUDA=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        nice -n 19 "$VPY" -m pip install "$LLAMA_CPP_PYTHON" > "$OUT/pip-llama.log" 2>&1 ||
        die "pip install $LLAMA_CPP_PYTHON failed: see $OUT/pip-llama.log"
fi
"$VPY" "$ROOT/bench/run_llama.py" --version > "$OUT/llama_version.json"
LLAMA_VER=$("$VPY" -c 'import llama_cpp; print(llama_cpp.__version__)')
case $LLAMA_VER in
    0.3.36) LLAMA_DESC="llama-cpp-python 0.3.36 (llama.cpp ggml-org/llama.cpp@0c1e57098)" ;;
    *) LLAMA_DESC="llama-cpp-python $LLAMA_VER" ;;
esac
say "llama.cpp: $LLAMA_DESC"

# ---- the checkpoint ----------------------------------------------------------
HF=$WORK/hf-L$LAYERS
if [ -f "$HF/.complete" ]; then
    say "reusing $HF"
else
    say "generating a V2-Lite-shaped checkpoint, $LAYERS layers (tests/gen/make_checkpoint.py)"
    rm -rf "$HF"
    nice -n 19 "$PYTHON" "$ROOT/tests/gen/make_checkpoint.py" --big-gb 0 "$HF" --layers "$LAYERS" -v
    touch "$HF/.complete"
fi
VOCAB=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$HF/config.json")
# ds bench's prompt walks over the tokenizer's ids: largest id + 1
PVOCAB=$("$PYTHON" -c '
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8"))
print(1 + max(list(t["model"]["vocab"].values()) + [a["id"] for a in t.get("added_tokens", [])]))' "$HF/tokenizer.json")

say "numpy encoders vs the C ones (bench/q8_check.c)"
if ! "$PYTHON" "$ROOT/bench/hf_to_gguf_q8.py" --selftest "$BIN/q8_check" "$HF" > "$OUT/encoder_check.txt"; then
    cat "$OUT/encoder_check.txt"
    die "the numpy Q8_0/F16 encoders differ from deepseek_impl/quant.c: the GGUF files would not hold our numbers"
fi
cat "$OUT/encoder_check.txt"

KEY=$WORK/bench.key
[ -f "$KEY" ] || "$DS" keygen "$KEY" > /dev/null

# ---- containers, GGUF files, the faithfulness check ---------------------------
CHECK_IDS=0,70,263,411,5,99,300,17,42,480,128,256,7,350,2,64
: > "$OUT/faithfulness.txt"
for t in $TYPES; do
    dsm=$WORK/model-L$LAYERS-$t.dsm
    gg=$WORK/model-L$LAYERS-$t.gguf
    if [ ! -f "$dsm" ]; then
        say "ds convert --quant $t"
        nice -n 19 "$DS" convert "$HF" "$dsm.part" --quant "$t" --key-file "$KEY" --force
        mv "$dsm.part" "$dsm"
    fi
    if [ ! -f "$gg" ]; then
        say "GGUF ($t) from the same values: bench/hf_to_gguf_q8.py"
        nice -n 19 "$VPY" "$ROOT/bench/hf_to_gguf_q8.py" "$HF" "$gg" --type "$t"
    fi
    say "faithfulness ($t): ds logits vs llama.cpp logits on $CHECK_IDS"
    "$DS" logits "$dsm" --key-file "$KEY" --tokens "$CHECK_IDS" --out "$OUT/logits-ds-$t.f32" > /dev/null
    "$VPY" "$ROOT/bench/run_llama.py" "$gg" logits --tokens "$CHECK_IDS" --out "$OUT/logits-llama-$t.f32" \
        --threads "$THREADS" $NOREPACK 2> "$OUT/llama-load-$t.log" > /dev/null ||
        die "llama.cpp could not run $gg: see $OUT/llama-load-$t.log"
    "$PYTHON" "$ROOT/bench/compare_report.py" logits "$OUT/logits-ds-$t.f32" "$OUT/logits-llama-$t.f32" "$VOCAB" \
        --label "$t" | tee -a "$OUT/faithfulness.txt" || true
done

if [ "$PREPARE" = 1 ]; then
    say "prepared: run again without --prepare on a quiet machine to measure"
    exit 0
fi

# ---- memory bandwidth --------------------------------------------------------
say "memory read bandwidth, $THREADS threads (bench/membw.c)"
"$BIN/membw" --threads "$THREADS" --mb 1024 --runs 10 | tee "$OUT/membw.txt"
MEMBW=$(sed -n 's/.*best_gbs=\([0-9.]*\).*/\1/p' "$OUT/membw.txt")

# ---- the runs ----------------------------------------------------------------
RUNS_CSV=$OUT/runs.csv
echo "type,engine,run,prefill_tok_s,decode_tok_s" > "$RUNS_CSV"
: > "$OUT/runs-ds.txt"
: > "$OUT/runs-llama.jsonl"
run_ds() {  # type run
    o=$("$DS" bench "$WORK/model-L$LAYERS-$1.dsm" --key-file "$KEY" --threads "$THREADS" \
        --prompt-tokens "$PROMPT" --gen-tokens "$GEN") || die "ds bench failed on $1"
    printf '# %s run %s\n%s\n' "$1" "$2" "$o" >> "$OUT/runs-ds.txt"
    p=$(printf '%s\n' "$o" | sed -n 's/^prefill .*: \([0-9.]*\) tok\/s.*/\1/p')
    d=$(printf '%s\n' "$o" | sed -n 's/^decode .*: \([0-9.]*\) tok\/s.*/\1/p')
    echo "$1,ds,$2,$p,$d" >> "$RUNS_CSV"
    echo "   ds        $1 run $2: prefill $p tok/s, decode $d tok/s"
}
run_llama() {  # type run
    j=$("$VPY" "$ROOT/bench/run_llama.py" "$WORK/model-L$LAYERS-$1.gguf" bench --threads "$THREADS" \
        --prompt "$PROMPT" --gen "$GEN" --prompt-vocab "$PVOCAB" --bos 0 $NOREPACK 2>> "$OUT/llama-runs.log") ||
        die "run_llama.py failed on $1: see $OUT/llama-runs.log"
    echo "$j" >> "$OUT/runs-llama.jsonl"
    pd=$(printf '%s\n' "$j" | "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin); print("%.4f %.4f" % (r["prefill_tok_s"], r["decode_tok_s"]))')
    p=${pd% *} d=${pd#* }
    echo "$1,llama,$2,$p,$d" >> "$RUNS_CSV"
    echo "   llama.cpp $1 run $2: prefill $p tok/s, decode $d tok/s"
}
: > "$OUT/llama-runs.log"
for t in $TYPES; do
    say "$t: $RUNS run(s) each, alternating, $THREADS threads, $PROMPT prompt + $GEN decode tokens"
    r=1
    while [ "$r" -le "$RUNS" ]; do
        if [ $((r % 2)) = 1 ]; then run_ds "$t" "$r"; run_llama "$t" "$r"
        else run_llama "$t" "$r"; run_ds "$t" "$r"; fi
        r=$((r + 1))
    done
done

# ---- the table ---------------------------------------------------------------
LOAD_END=$(load1)
NMOE=$((LAYERS - 1))
TITLE="deepseek.h vs $LLAMA_DESC: V2-Lite-shaped, $LAYERS layers (1 dense + $NMOE MoE), random weights, \
$THREADS threads, $PROMPT-token prompt + $GEN decode tokens, $RUNS run(s) each; $(nproc) CPUs, \
load average $LOAD_START before, $LOAD_END after (which counts the runs' own threads); kernel $(uname -r)\
${NOREPACK:+; llama.cpp with --no-repack (AMX CPU: its default AMX buffer cannot run this model)}"
[ "$QUICK" = 0 ] || TITLE="$TITLE [--quick: tests the script, not the engines]"
echo
"$PYTHON" "$ROOT/bench/compare_report.py" table "$OUT" "$HF/config.json" --membw "$MEMBW" --title "$TITLE" |
    tee "$OUT/summary.txt"
{
    echo
    echo "faithfulness (ds logits vs llama.cpp logits, same weights):"
    sed 's/^/  /' "$OUT/faithfulness.txt"
} | tee -a "$OUT/summary.txt"
{
    echo
    echo "Faithfulness (ds logits vs llama.cpp logits on $CHECK_IDS):"
    echo
    sed 's/^/    /' "$OUT/faithfulness.txt"
} >> "$OUT/compare.md"
echo "wrote $OUT/compare.csv, $OUT/compare.md, $OUT/summary.txt (every run: $RUNS_CSV)"

[ "$CLEAN" = 0 ] || rm -rf "$WORK"
