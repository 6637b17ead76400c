#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# cuda_device.sh — the CUDA checks and benchmark, in one go, for a machine
# with an NVIDIA GPU (sized for a short lease: about 10 minutes on a 16-core
# H200 box with the default 6 layers).
#
#     sh bench/cuda_device.sh OUTDIR [--layers N] [--deps DIR] [--peak-gbs B]
#     sh bench/cuda_device.sh --fetch-deps DIR      (on a Debian machine with apt)
#
# 1. builds with make CUDA=1 into build-cuda/ (nvcc, cuBLAS), -j$(nproc);
# 2. generates the test checkpoints and runs tests/test_cuda_ops and
#    tests/test_cuda_forward on the GPU (OUTDIR/tests.log);
# 3. writes a random V2-Lite-shaped checkpoint of N layers (hidden 2048, 64
#    experts top-6 + 2 shared, MLA kv_lora 512; tests/gen/make_checkpoint.py),
#    converts it to int8, and runs ds bench with prompt 128 and 64 decode
#    tokens: on the GPU fully resident, on the GPU with a VRAM expert budget of
#    25% of the routed experts, and on the CPU for reference
#    (OUTDIR/bench.log; OUTDIR/summary.txt has the figures).
#
# A machine without libsodium's headers (no package registry to install from)
# takes them from Debian packages: run --fetch-deps DIR where apt works, carry
# DIR, and pass --deps DIR; they are unpacked under /tmp/ds-deps.
# --peak-gbs is the GPU memory's bandwidth for the bound (default 4800, an
# H200's HBM3e).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAYERS=6
DEPS=
PEAK=4800

if [ "${1:-}" = "--fetch-deps" ]; then
    [ $# -eq 2 ] || { echo "usage: $0 --fetch-deps DIR" >&2; exit 2; }
    mkdir -p "$2"
    (cd "$2" && apt-get download libsodium23 libsodium-dev)
    ls -l "$2"
    exit 0
fi
[ $# -ge 1 ] || { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
OUT=$1
shift
while [ $# -gt 0 ]; do
    case $1 in
        --layers) LAYERS=$2; shift ;;
        --deps) DEPS=$2; shift ;;
        --peak-gbs) PEAK=$2; shift ;;
        *) echo "cuda_device.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT"
# a Python with numpy (the python3 on PATH may lack it)
PYTHON=${PYTHON:-$(sh tools/find_python.sh)} || exit 1
J=$(nproc 2>/dev/null || echo 4)
say() { echo "== $(date +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"

say "machine"
(nvidia-smi -L || true; nvcc --version | tail -1 || true; nproc) 2>&1 | tee -a "$OUT/summary.txt"

EXTRA_CFLAGS=
EXTRA_LDFLAGS=
if [ -n "$DEPS" ]; then
    mkdir -p /tmp/ds-deps
    for f in "$DEPS"/*.deb; do dpkg -x "$f" /tmp/ds-deps; done
    LIBDIR=$(dirname "$(find /tmp/ds-deps -name 'libsodium.so*' | head -1)")
    EXTRA_CFLAGS="-I/tmp/ds-deps/usr/include"
    EXTRA_LDFLAGS="-L$LIBDIR -Wl,-rpath,$LIBDIR"
fi

say "build (make CUDA=1, -j$J)"
make -j"$J" CUDA=1 BUILD=build-cuda CFLAGS="$EXTRA_CFLAGS" LDFLAGS="$EXTRA_LDFLAGS" \
    all build-cuda/tests/test_cuda_ops build-cuda/tests/test_cuda_forward > "$OUT/build.log" 2>&1 ||
    { tail -30 "$OUT/build.log"; exit 1; }

say "tests on the GPU"
mkdir -p build-cuda/testdata
[ -f build-cuda/testdata/.stamp ] || { "$PYTHON" tests/gen/make_checkpoint.py --all build-cuda/testdata &&
    touch build-cuda/testdata/.stamp; }
# the PEFT fixtures of the LoRA cases (cuda-fwd-5)
[ -f build-cuda/testdata/peft/good/expected.json ] ||
    "$PYTHON" tests/gen/make_peft.py build-cuda/testdata build-cuda/testdata/peft > /dev/null
DS_TESTDATA=build-cuda/testdata BUILD=build-cuda sh tests/run_tests.sh build-cuda/tests/test_cuda_ops \
    build-cuda/tests/test_cuda_forward > "$OUT/tests.log" 2>&1 || true
grep -E "^(FAIL|INFO|RESULT)|passed, " "$OUT/tests.log" | tee -a "$OUT/summary.txt"

say "a V2-Lite-shaped checkpoint, $LAYERS layers"
W=/tmp/ds-cuda-bench
mkdir -p "$W"
if [ ! -f "$W/q8.dsm" ]; then
    "$PYTHON" tests/gen/make_checkpoint.py --big-gb 0 "$W/hf" --layers "$LAYERS" > "$W/gen.log" 2>&1
    [ -f "$W/k.key" ] || build-cuda/ds keygen "$W/k.key"
    build-cuda/ds convert "$W/hf" "$W/q8.dsm" --quant q8 --key-file "$W/k.key" > "$W/convert.log" 2>&1
    rm -rf "$W/hf"
fi
say "bench (prompt 128, decode 64)"
B="build-cuda/ds bench $W/q8.dsm --key-file $W/k.key --prompt-tokens 128 --gen-tokens 64"
{
    echo "--- cuda, every expert in device memory"
    $B --device cuda --peak-gbs "$PEAK" | tee "$W/resident.txt"
    # 25% of the routed experts' bytes, from the resident run's own figure
    EB=$(awk '/^model/ {for (i = 1; i <= NF; i++) if ($i == "experts") print $(i + 1)}' "$W/resident.txt")
    Q=$(awk -v mb="$EB" 'BEGIN { printf "%d", mb * 1e6 / 1048576 / 4 }')
    echo "--- cuda, VRAM expert cache $Q MiB (25% of $EB MB of routed experts)"
    $B --device cuda --gpu-cache-mb "$Q" --peak-gbs "$PEAK"
    echo "--- cpu, $J threads"
    $B --threads "$J"
} > "$OUT/bench.log" 2>&1 || true
grep -E "^(---|device|prefill|decode|weights/token|vram cache|peak RSS)|error|warning" "$OUT/bench.log" |
    tee -a "$OUT/summary.txt"
say "done"
