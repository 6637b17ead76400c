#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
#
# check_mingw.sh — does the amalgamation build for Windows? (make check-mingw)
#
#   tools/check_mingw.sh [BUILD_DIR]        (default build-mingw)
#
# With mingw-w64 (Debian: gcc-mingw-w64-x86-64), on this Linux machine:
#   1. compiles dist/deepseek.c for x86_64 Windows with -std=c11 -Wall
#      -Wextra -O2 (and the assembler's unaligned vector moves); a warning
#      fails the check;
#   2. makes an import library for libsodium.dll from the sodium_*,
#      crypto_* and randombytes_* symbols the object leaves undefined
#      (Debian ships no Windows libsodium; its headers are the host's,
#      copied alone into BUILD_DIR/include, since they are the same C API on
#      every platform);
#   3. links examples/simple.c with it into simple.exe (libsodium through
#      the import library, everything else static: winpthreads, libgcc), so
#      every other symbol must resolve in mingw-w64's C runtime and the
#      Win32 import libraries.
# It proves that the code compiles and links; nothing is run (that needs
# Windows or Wine, and a real libsodium.dll). docs/platforms.md says what
# the Windows port does and does not do.
set -eu

BUILD_DIR=${1:-build-mingw}
CC=${MINGW_CC:-x86_64-w64-mingw32-gcc-posix}
command -v "$CC" >/dev/null 2>&1 || CC=x86_64-w64-mingw32-gcc
NM=${MINGW_NM:-x86_64-w64-mingw32-nm}
DLLTOOL=${MINGW_DLLTOOL:-x86_64-w64-mingw32-dlltool}
for t in "$CC" "$NM" "$DLLTOOL"; do
    if ! command -v "$t" >/dev/null 2>&1; then
        echo "check-mingw: $t not found (Debian: apt-get install gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64)" >&2
        exit 1
    fi
done

# the libsodium headers: pkg-config's include directory, else /usr/include
SODIUM_INC=$(pkg-config --variable=includedir libsodium 2>/dev/null || true)
[ -n "$SODIUM_INC" ] && [ -f "$SODIUM_INC/sodium.h" ] || SODIUM_INC=/usr/include
if [ ! -f "$SODIUM_INC/sodium.h" ]; then
    echo "check-mingw: sodium.h not found (install libsodium-dev)" >&2
    exit 1
fi

mkdir -p "$BUILD_DIR/include"
rm -rf "$BUILD_DIR/include/sodium" "$BUILD_DIR/include/sodium.h"
cp -R "$SODIUM_INC/sodium.h" "$SODIUM_INC/sodium" "$BUILD_DIR/include/"

echo "check-mingw: $CC ($("$CC" -dumpversion)), headers of libsodium from $SODIUM_INC"

echo "check-mingw: [1/3] compile dist/deepseek.c -> $BUILD_DIR/deepseek.o"
# -muse-unaligned-vector-move: GCC does not realign the stack for 32-byte
# AVX spills on 64-bit Windows (GCC bug 54412); the assembler turns aligned
# vector moves into unaligned ones (binutils >= 2.38; docs/platforms.md)
CFLAGS="-std=c11 -Wall -Wextra -O2 -I. -isystem $BUILD_DIR/include -Wa,-muse-unaligned-vector-move"
"$CC" $CFLAGS -c dist/deepseek.c -o "$BUILD_DIR/deepseek.o" 2>"$BUILD_DIR/compile.log" || {
    cat "$BUILD_DIR/compile.log" >&2
    echo "check-mingw: FAILED: dist/deepseek.c does not compile for Windows" >&2
    exit 1
}
if grep -q "warning:" "$BUILD_DIR/compile.log"; then
    cat "$BUILD_DIR/compile.log" >&2
    echo "check-mingw: FAILED: $(grep -c 'warning:' "$BUILD_DIR/compile.log") warning(s) compiling for Windows" >&2
    exit 1
fi

echo "check-mingw: [2/3] import library for libsodium.dll -> $BUILD_DIR/libsodium.dll.a"
{
    echo "LIBRARY libsodium.dll"
    echo "EXPORTS"
    "$NM" -u "$BUILD_DIR/deepseek.o" | awk '{print $NF}' | sed 's/^__imp_//' |
        grep -E '^(sodium_|crypto_|randombytes_)' | sort -u
} >"$BUILD_DIR/sodium.def"
n=$(($(wc -l <"$BUILD_DIR/sodium.def") - 2))
if [ "$n" -le 0 ]; then
    echo "check-mingw: FAILED: no libsodium symbols in the object (unexpected)" >&2
    exit 1
fi
"$DLLTOOL" -d "$BUILD_DIR/sodium.def" -l "$BUILD_DIR/libsodium.dll.a" -D libsodium.dll
echo "check-mingw:       $n libsodium functions: $(sed 1,2d "$BUILD_DIR/sodium.def" | tr '\n' ' ')"

echo "check-mingw: [3/3] link examples/simple.c -> $BUILD_DIR/simple.exe"
"$CC" $CFLAGS -c examples/simple.c -o "$BUILD_DIR/simple.o" 2>"$BUILD_DIR/compile_simple.log" || {
    cat "$BUILD_DIR/compile_simple.log" >&2
    echo "check-mingw: FAILED: examples/simple.c does not compile for Windows" >&2
    exit 1
}
"$CC" -o "$BUILD_DIR/simple.exe" "$BUILD_DIR/simple.o" "$BUILD_DIR/deepseek.o" \
    "$BUILD_DIR/libsodium.dll.a" -static -pthread -lm || {
    echo "check-mingw: FAILED: simple.exe does not link" >&2
    exit 1
}
echo "check-mingw: $BUILD_DIR/simple.exe: $(wc -c <"$BUILD_DIR/simple.exe") bytes; DLLs it imports:" \
    "$(x86_64-w64-mingw32-objdump -p "$BUILD_DIR/simple.exe" 2>/dev/null |
        sed -n 's/^[[:space:]]*DLL Name: //p' | sort -u | tr '\n' ' ')"
echo "check-mingw: ok (compiled without warnings and linked; not run)"
