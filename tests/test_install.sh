#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
#
# test_install.sh — `make install` and what a user then does with it:
#
#   make install DESTDIR=$T/root PREFIX=/usr/local, then the files it put
#   there (no more, no fewer), the shared library's soname, symlinks and
#   exports (exactly the DS_API functions of deepseek.h), deepseek.pc's
#   version (deepseek.h's), examples/simple.c built with
#   `pkg-config --cflags --libs deepseek` (against the shared library) and
#   with `cc -static ... pkg-config --static --libs deepseek`, both run on a
#   model sealed here by the installed ds and on the demo model, printing what
#   the in-tree build/simple prints; then `make uninstall` with the same
#   variables leaves no file behind.
#
# Ends with "RESULT test_install: N passed, N failed, N skipped" (exit 1 when
# anything failed). Run from the repository root (make check does):
#
#   sh tests/test_install.sh          (after make, make testdata)
#
# Environment: BUILD (default build), MAKE (make), CC (cc), DS_TESTDATA,
# APP_CFLAGS (flags for the programs built here: make SAN=1 check passes the
# sanitizer flags, and the static build is skipped then).
set -u
BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
CC=${CC:-cc}
APP_CFLAGS=${APP_CFLAGS:-}
TD=${DS_TESTDATA:-$BUILD/testdata}
PREFIX=/usr/local

passed=0
failed=0
skipped=0
T=$(mktemp -d "${TMPDIR:-/tmp}/test_install.XXXXXX") || { echo "FAIL install-0: mktemp -d failed"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP
ROOT=$T/root
P=$ROOT$PREFIX

ok() { passed=$((passed + 1)); echo "ok $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    if [ -s "$T/err" ]; then sed -e 's/^/    /' "$T/err" | tail -n 8; fi
}
# check <id> <what fails> <command...>
check() {
    c_id=$1
    c_what=$2
    shift 2
    if "$@" >"$T/out" 2>"$T/err"; then ok "$c_id"; else bad "$c_id" "$c_what"; fi
}
finish() {
    echo "RESULT test_install: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit
}

if [ ! -f deepseek.h ] || [ ! -f Makefile ]; then
    echo "FAIL install-0: run from the repository root"
    failed=1
    finish
fi

# The version, read from deepseek.h here (the one place it is written).
vpart() { sed -n "s/^#define DS_VERSION_$1 *\([0-9][0-9]*\).*/\1/p" deepseek.h; }
MAJOR=$(vpart MAJOR)
VERSION=$MAJOR.$(vpart MINOR).$(vpart PATCH)

# ==== 1. make install ========================================================
# MAKEFLAGS from an enclosing make (SAN=1, -j) carry over, so this installs
# the build that make check tested.
if ! $MAKE --no-print-directory install DESTDIR="$ROOT" PREFIX=$PREFIX >"$T/install.log" 2>"$T/err"; then
    bad install-1 "make install DESTDIR=$ROOT PREFIX=$PREFIX failed"
    sed -e 's/^/    /' "$T/install.log" | tail -n 10
    finish
fi
ok install-1

# The files install must have put there, and nothing else.
{
    echo bin/ds
    [ -x "$BUILD/ds-server" ] && echo bin/ds-server
    echo include/deepseek.h
    echo lib/libdeepseek.a
    echo lib/libdeepseek.so
    echo lib/libdeepseek.so.$MAJOR
    echo lib/libdeepseek.so.$VERSION
    [ -f "$BUILD/libdeepseek_cuda.so" ] && echo lib/libdeepseek_cuda.so
    echo lib/pkgconfig/deepseek.pc
    for m in ds.1 ds-server.1; do [ -f "man/$m" ] && echo "share/man/man1/$m"; done
} | sort > "$T/want"
(cd "$ROOT" && find . ! -type d | sed "s|^\./${PREFIX#/}/||; s|^\./|/|") | sort > "$T/got"
if cmp -s "$T/want" "$T/got"; then
    ok install-2
else
    bad install-2 "installed files differ from the expected list (- expected, + installed):"
    diff "$T/want" "$T/got" | grep '^[<>]' | sed -e 's/^</    -/' -e 's/^>/    +/'
fi

check install-3 "the header differs from deepseek.h" cmp deepseek.h "$P/include/deepseek.h"
check install-4 "lib/libdeepseek.so.$MAJOR is not a symlink to libdeepseek.so.$VERSION" \
    test "$(readlink "$P/lib/libdeepseek.so.$MAJOR")" = "libdeepseek.so.$VERSION"
check install-5 "lib/libdeepseek.so is not a symlink to libdeepseek.so.$MAJOR" \
    test "$(readlink "$P/lib/libdeepseek.so")" = "libdeepseek.so.$MAJOR"
check install-6 "the programs are not executable" test -x "$P/bin/ds"

# ==== 2. the shared library ===================================================
LIB=$P/lib/libdeepseek.so.$VERSION
if command -v readelf >/dev/null 2>&1; then
    check so-1 "SONAME is not libdeepseek.so.$MAJOR" \
        sh -c 'readelf -d "$1" | grep -q "(SONAME).*\[libdeepseek\.so\.$2\]"' sh "$LIB" "$MAJOR"
    # the CUDA backend is opened at run time, never linked
    check so-2 "the shared library links CUDA libraries" \
        sh -c '! readelf -d "$1" | grep -E "NEEDED.*(cudart|cublas|cuda)"' sh "$LIB"
else
    skip so-1 "no readelf"
fi
if command -v nm >/dev/null 2>&1; then
    # exports: exactly the functions deepseek.h declares DS_API
    sed -n 's/^DS_API[^(]*[^A-Za-z0-9_(]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' deepseek.h | sort -u > "$T/api"
    nm -D --defined-only "$LIB" | awk '$2 ~ /^[TDBRVWiu]$/ { print $3 }' | sort -u > "$T/exports"
    if [ "$(wc -l < "$T/api")" -lt 20 ]; then
        bad so-3 "found only $(wc -l < "$T/api") DS_API functions in deepseek.h: the parser here is wrong"
    elif cmp -s "$T/api" "$T/exports"; then
        ok so-3
    else
        bad so-3 "exports differ from deepseek.h's DS_API functions (- declared only, + exported only):"
        diff "$T/api" "$T/exports" | grep '^[<>]' | head -n 20 | sed -e 's/^</    -/' -e 's/^>/    +/'
    fi
else
    skip so-3 "no nm"
fi

# ==== 3. pkg-config ==========================================================
if ! command -v pkg-config >/dev/null 2>&1; then
    skip pc-1 "no pkg-config"
    finish
fi
# --define-variable moves prefix into the staging root; the .pc names its
# directories through ${prefix}, so everything follows.
pc() { PKG_CONFIG_PATH=$P/lib/pkgconfig pkg-config --define-variable=prefix="$P" "$@" deepseek; }
check pc-1 "pkg-config --modversion is not $VERSION (deepseek.h's)" test "$(pc --modversion)" = "$VERSION"
check pc-2 "pkg-config --cflags does not name the staged include directory" \
    sh -c 'echo " $1 " | grep -qF " -I$2/include "' sh "$(pc --cflags)" "$P"

# the version: the header's macro, the library's function and the .pc agree
cat > "$T/ver.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include "deepseek.h"
int main(void) {
    printf("%s\n", ds_version_string());
    return strcmp(ds_version_string(), DS_VERSION_STRING) != 0;
}
EOF
# shellcheck disable=SC2046
if $CC $APP_CFLAGS -std=c11 "$T/ver.c" -o "$T/ver" $(pc --cflags --libs) 2>"$T/err" &&
    LD_LIBRARY_PATH=$P/lib "$T/ver" >"$T/out" 2>>"$T/err" && [ "$(cat "$T/out")" = "$VERSION" ]; then
    ok pc-3
else
    bad pc-3 "a program built with pkg-config does not report version $VERSION (got '$(cat "$T/out" 2>/dev/null)')"
fi

# examples/simple.c against the shared library
# shellcheck disable=SC2046
if $CC $APP_CFLAGS -std=c11 -O2 examples/simple.c -o "$T/simple_dyn" $(pc --cflags --libs) 2>"$T/err"; then
    ok pc-4
    dyn=1
    if command -v readelf >/dev/null 2>&1; then
        check pc-5 "simple (dynamic) does not need libdeepseek.so.$MAJOR" \
            sh -c 'readelf -d "$1" | grep -q "NEEDED.*\[libdeepseek\.so\.$2\]"' sh "$T/simple_dyn" "$MAJOR"
    fi
else
    bad pc-4 "cc examples/simple.c \$(pkg-config --cflags --libs deepseek) does not link"
    dyn=0
fi

# examples/simple.c fully static: the .pc's Libs.private must be complete
case " $APP_CFLAGS " in
    *sanitize*) static=skip; skip pc-6 "sanitizer build: no static link" ;;
    *)
        if [ "$($CC -print-file-name=libsodium.a)" = libsodium.a ]; then
            static=skip
            skip pc-6 "no libsodium.a for a static link"
        # shellcheck disable=SC2046
        elif $CC -static -std=c11 -O2 examples/simple.c -o "$T/simple_static" $(pc --static --cflags --libs) \
                2>"$T/err"; then
            static=1
            ok pc-6
            if command -v readelf >/dev/null 2>&1; then
                check pc-7 "simple (static) still needs shared libraries" \
                    sh -c '! readelf -d "$1" 2>/dev/null | grep -q NEEDED' sh "$T/simple_static"
            fi
        else
            static=0
            bad pc-6 "cc -static examples/simple.c \$(pkg-config --static --cflags --libs deepseek) does not link"
        fi ;;
esac

# ==== 4. the programs on models =============================================
# A model sealed here by the installed ds (from the generated V2-Lite
# checkpoint), and the committed demo model.
models=""
if [ -d "$TD/v2lite" ]; then
    if "$P/bin/ds" keygen "$T/k.key" >"$T/out" 2>"$T/err" &&
        "$P/bin/ds" convert "$TD/v2lite" "$T/m.dsm" --quant q8 --key-file "$T/k.key" >"$T/out" 2>"$T/err"; then
        ok run-1
        models="$T/m.dsm:$T/k.key"
    else
        bad run-1 "the installed ds could not seal $TD/v2lite"
    fi
else
    skip run-1 "no $TD/v2lite (make testdata)"
fi
[ -f models/demo.dsm ] && [ -f models/demo.key ] && models="$models models/demo.dsm:models/demo.key"

n=1
for mk in $models; do
    n=$((n + 1))
    m=${mk%%:*}
    k=${mk#*:}
    prompt="In the beginning"
    # the in-tree build's output is the reference
    if ! "$BUILD/simple" "$m" "$k" "$prompt" >"$T/ref" 2>"$T/err"; then
        bad "run-$n" "$BUILD/simple $m failed"
        continue
    fi
    if [ "$(wc -c < "$T/ref")" -le $((${#prompt} + 1)) ]; then
        bad "run-$n" "$BUILD/simple $m printed no text after the prompt"
        continue
    fi
    if [ "$dyn" = 1 ]; then
        if LD_LIBRARY_PATH=$P/lib "$T/simple_dyn" "$m" "$k" "$prompt" >"$T/got" 2>"$T/err" && cmp -s "$T/ref" "$T/got"; then
            ok "run-$n.dyn"
        else
            bad "run-$n.dyn" "simple linked against libdeepseek.so does not print what $BUILD/simple prints on $m"
        fi
    fi
    if [ "$static" = 1 ]; then
        if "$T/simple_static" "$m" "$k" "$prompt" >"$T/got" 2>"$T/err" && cmp -s "$T/ref" "$T/got"; then
            ok "run-$n.static"
        else
            bad "run-$n.static" "simple linked statically does not print what $BUILD/simple prints on $m"
        fi
    fi
done
[ -z "$models" ] && skip run-2 "no model to run"

# A CUDA=1 build: the installed ds finds the installed CUDA backend (its run
# path has $ORIGIN/../lib); without a GPU it then says the device is not
# available, never that the object cannot be opened.
if [ -f "$P/lib/libdeepseek_cuda.so" ] && [ -f models/demo.dsm ]; then
    env -u DS_CUDA_LIBRARY -u LD_LIBRARY_PATH "$P/bin/ds" run models/demo.dsm --key-file models/demo.key -p hi -n 1 \
        --device cuda >"$T/cuda.out" 2>"$T/cuda.err"
    check run-cuda "the installed ds did not open the installed libdeepseek_cuda.so: $(head -n 1 "$T/cuda.err")" \
        sh -c '! grep -q "libdeepseek_cuda.so: cannot open" "$1"' sh "$T/cuda.err"
fi

# ==== 5. make uninstall ======================================================
if $MAKE --no-print-directory uninstall DESTDIR="$ROOT" PREFIX=$PREFIX >"$T/out" 2>"$T/err"; then
    (cd "$ROOT" && find . ! -type d) > "$T/left"
    if [ -s "$T/left" ]; then
        bad uninstall-1 "make uninstall left files: $(tr '\n' ' ' < "$T/left")"
    else
        ok uninstall-1
    fi
else
    bad uninstall-1 "make uninstall failed"
fi
finish
