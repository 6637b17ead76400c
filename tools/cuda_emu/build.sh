#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# build.sh OUTDIR TEST... — builds tests against the CUDA kernels running in
# the CPU emulation (README.md), with ASan and UBSan:
#
#   sh tools/cuda_emu/build.sh /tmp/emu-out test_cuda_ops test_cuda_forward
#   /tmp/emu-out/test_cuda_ops
#
# kernels/cuda/*.cu(h) are rewritten by transform.py into OUTDIR/src and
# compiled as C++20 with emu.cpp; the library sources (`make -s
# amalgamation-sources`) and each tests/NAME.c are compiled as C11 with
# -DDS_CUDA=1 and linked into OUTDIR/NAME. A test that does not exist is
# skipped with a message. Rebuilds are incremental (OUTDIR/emu.mk, header
# dependencies included).
#
# Environment: KERNELS=dir takes the .cu files from dir instead of
# kernels/cuda (a mutated copy, say); JOBS=n parallel compilations (default:
# the number of CPUs); EMU_SAN=0 builds without the sanitizers (faster).
set -eu

if [ $# -lt 2 ]; then
    echo "usage: sh tools/cuda_emu/build.sh OUTDIR TEST..." >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
shift
KERNELS=${KERNELS:-$ROOT/kernels/cuda}
JOBS=${JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
case "$OUT$ROOT$KERNELS" in *' '*) echo "build.sh: paths with spaces are not supported" >&2; exit 2 ;; esac

python3 "$HERE/transform.py" "$KERNELS" "$OUT/src"

LIB_SRCS=$(cd "$ROOT" && make -s amalgamation-sources)
TESTS=
for t in "$@"; do
    t=${t%.c}
    t=${t#tests/}
    if [ -f "$ROOT/tests/$t.c" ]; then
        TESTS="$TESTS $t"
    else
        echo "build.sh: skipping $t: tests/$t.c does not exist"
    fi
done

if [ "${EMU_SAN:-1}" = 0 ]; then
    SAN=
else
    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
fi

# -ffp-contract=off everywhere: the kernels' __fmul_rn/__fadd_rn are plain
# operations here, and the CPU twins are C11 (no contraction either).
cat > "$OUT/emu.mk" <<MK
ROOT = $ROOT
HERE = $HERE
OUT = $OUT
FLAGS = -g -O1 -ffp-contract=off -pthread $SAN
WARN = -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas
CXXFLAGS = -std=c++20 \$(FLAGS) \$(WARN) -I\$(HERE) -I\$(OUT)/src -I\$(ROOT)
CFLAGS = -std=c11 \$(FLAGS) -Wall -Wextra -DDS_CUDA=1 -I\$(ROOT)
CU = $(cd "$OUT/src" && ls *.cu | sed 's/\.cu$//' | tr '\n' ' ')
LIB = $(echo $LIB_SRCS | sed 's/\.c\( \|$\)/ /g')
TESTS = $TESTS
CU_OBJS = \$(CU:%=\$(OUT)/obj/cuda/%.o) \$(OUT)/obj/emu.o
LIB_OBJS = \$(LIB:%=\$(OUT)/obj/lib/%.o)

all: \$(TESTS:%=\$(OUT)/%)

\$(OUT)/obj/cuda/%.o: \$(OUT)/src/%.cu \$(HERE)/emu.h
	@mkdir -p \$(dir \$@)
	g++ -x c++ \$(CXXFLAGS) -MMD -MP -c \$< -o \$@

\$(OUT)/obj/emu.o: \$(HERE)/emu.cpp \$(HERE)/emu.h
	@mkdir -p \$(dir \$@)
	g++ \$(CXXFLAGS) -MMD -MP -c \$< -o \$@

\$(OUT)/obj/lib/%.o: \$(ROOT)/%.c
	@mkdir -p \$(dir \$@)
	gcc \$(CFLAGS) -MMD -MP -c \$< -o \$@

\$(OUT)/obj/tests/%.o: \$(ROOT)/tests/%.c
	@mkdir -p \$(dir \$@)
	gcc \$(CFLAGS) -MMD -MP -c \$< -o \$@

\$(OUT)/%: \$(OUT)/obj/tests/%.o \$(CU_OBJS) \$(LIB_OBJS)
	g++ \$(FLAGS) \$^ -o \$@ -lsodium -lm -lpthread

-include \$(shell find \$(OUT)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
MK

if [ -z "$TESTS" ]; then
    echo "build.sh: no test to build"
    exit 0
fi
make -s -f "$OUT/emu.mk" -j"$JOBS"
for t in $TESTS; do echo "built $OUT/$t"; done
