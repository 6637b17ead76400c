#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# check_amalgamation.sh — the amalgamation checks of `make check` (STYLE.md):
#
#   (a) dist/deepseek.c is what tools/amalgamate makes from the sources now
#   (b) its object exports nothing but ds_* symbols
#   (c) it compiles alone (beside deepseek.h only) with -std=c11 -Wall -Wextra
#       -Werror, under gcc and clang where present
#   (d) deepseek.h compiles as C++, and twice in one C or C++ file
#   (e) examples/simple.c builds from deepseek.h + deepseek.c alone
#   (f) the C unit tests pass against the amalgamation (make test-amalg)
#
# Every check runs even when an earlier one fails; each failure prints a line
# "check (x) FAILED: ...", and the last line is "check: all passed" or
# "check: N failed" (exit 1). Run from the repository root; `make check`
# passes CC, CXX, PYTHON, BUILD and LIB_SRCS (MAKE defaults to make).

# $CC, $WFLAGS, $LDLIBS and $LIB_SRCS are word lists ("ccache gcc"): split on purpose.
# shellcheck disable=SC2086
set -u

CC=${CC:-cc}
CXX=${CXX:-c++}
PYTHON=${PYTHON:-python3}
MAKE=${MAKE:-make}
BUILD=${BUILD:-build}
LDLIBS="-lsodium -lm -lpthread"
if [ -z "${LIB_SRCS:-}" ]; then
    LIB_SRCS=$($MAKE -s --no-print-directory amalgamation-sources) || {
        echo "check: cannot get LIB_SRCS from the Makefile"; exit 1; }
fi

if [ ! -f deepseek.h ] || [ ! -f tools/amalgamate ]; then
    echo "check: run from the repository root"; exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ds-check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
failed=0
passed=0
fail() {
    echo "check ($1) FAILED: $2"
    failed=$((failed + 1))
}
ok() {
    echo "check ($1) ok: $2"
    passed=$((passed + 1))
}
# Runs a command quietly; shows its output (indented) only when it fails.
quiet() {
    "$@" > "$tmp/out" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "    \$ $*"
        sed -e 's/^/    /' "$tmp/out" | head -n 60
    fi
    return $rc
}
same_compiler() {   # same_compiler A B: true when A and B are the same program
    a=$(command -v "$1" 2>/dev/null) || return 1
    b=$(command -v "$2" 2>/dev/null) || return 1
    [ "$(readlink -f "$a")" = "$(readlink -f "$b")" ]
}

# Compilers for (c)-(e): $CC, plus gcc and clang when installed and different.
ccs="$CC"
for c in gcc clang; do
    command -v "$c" > /dev/null 2>&1 || continue
    same_compiler "$c" "$CC" && continue
    ccs="$ccs $c"
done
cxxs="$CXX"
for c in g++ clang++; do
    command -v "$c" > /dev/null 2>&1 || continue
    same_compiler "$c" "$CXX" && continue
    cxxs="$cxxs $c"
done

# ---- (a) committed dist/deepseek.c is fresh -------------------------------
fresh=0
if ! quiet "$PYTHON" tools/amalgamate --out "$tmp/fresh.c" $LIB_SRCS; then
    fail a "tools/amalgamate failed"
elif [ ! -f dist/deepseek.c ]; then
    fail a "dist/deepseek.c is missing: run 'make amalgamation' and commit it"
elif ! cmp -s "$tmp/fresh.c" dist/deepseek.c; then
    fail a "dist/deepseek.c is stale: run 'make amalgamation' and commit it"
    diff -u dist/deepseek.c "$tmp/fresh.c" | head -n 20 | sed -e 's/^/    /'
else
    fresh=1
    ok a "dist/deepseek.c matches a fresh regeneration"
fi

# The vendoring user's view: deepseek.h and deepseek.c alone in a directory.
mkdir -p "$tmp/alone"
if [ -f dist/deepseek.c ]; then
    cp deepseek.h dist/deepseek.c "$tmp/alone/"
    [ -f examples/simple.c ] && cp examples/simple.c "$tmp/alone/"
    have_amalg=1
else
    have_amalg=0
fi
WFLAGS="-std=c11 -Wall -Wextra -Werror"

# ---- (c) compiles alone, -Werror --------------------------------------------
obj=""
if [ $have_amalg -eq 0 ]; then
    fail c "no dist/deepseek.c to compile"
else
    for c in $ccs; do
        o="$tmp/alone/deepseek-$(basename "$c").o"
        # -O2 as users build it (and some warnings need the optimizer).
        if (cd "$tmp/alone" && quiet $c $WFLAGS -O2 -c deepseek.c -o "$o"); then
            ok c "deepseek.c compiles alone with $c $WFLAGS -O2"
            [ -z "$obj" ] && obj=$o
        else
            fail c "deepseek.c does not compile alone with $c $WFLAGS -O2"
            # Show where the failing lines come from in the original sources.
            if "$PYTHON" tools/amalgamate --line-directives --out "$tmp/alone/lines.c" $LIB_SRCS 2>/dev/null; then
                echo "    the same errors located in the original sources:"
                (cd "$tmp/alone" && $c $WFLAGS -O2 -c lines.c -o /dev/null 2>&1) \
                    | grep -E 'error|warning' | head -n 20 | sed -e 's/^/    /'
            fi
        fi
    done
fi

# ---- (b) only ds_* exported --------------------------------------------------
if [ -z "$obj" ]; then
    fail b "no object to inspect (see (c))"
else
    # Mach-O prefixes C names with an underscore.
    prefix=""
    [ "$(uname -s)" = Darwin ] && prefix="_"
    nm -g --defined-only "$obj" | awk 'NF >= 3 { print $NF }' > "$tmp/syms"
    grep -v "^${prefix}ds_" "$tmp/syms" > "$tmp/bad"
    if [ ! -s "$tmp/syms" ]; then
        fail b "nm found no exported symbols at all in deepseek.o"
    elif [ -s "$tmp/bad" ]; then
        fail b "deepseek.o exports symbols outside ds_*: $(tr '\n' ' ' < "$tmp/bad")(make them static or DSI_FUNC/DSI_DATA)"
    else
        ok b "deepseek.o exports $(wc -l < "$tmp/syms" | tr -d ' ') symbols, all ds_*"
    fi
fi

# ---- (d) deepseek.h as C++ and twice ---------------------------------------------
printf '#include "deepseek.h"\n#include "deepseek.h"\nint main(void) { return ds_version_number() == DS_VERSION_NUMBER ? 0 : 1; }\n' \
    > "$tmp/alone/twice.c"
cp "$tmp/alone/twice.c" "$tmp/alone/twice.cpp"
cp deepseek.h "$tmp/alone/" 2>/dev/null
for c in $ccs; do
    if (cd "$tmp/alone" && quiet $c $WFLAGS -pedantic -fsyntax-only twice.c); then
        ok d "deepseek.h included twice compiles with $c $WFLAGS -pedantic"
    else
        fail d "deepseek.h included twice does not compile with $c $WFLAGS -pedantic"
    fi
done
for c in $cxxs; do
    if ! command -v "$c" > /dev/null 2>&1; then
        fail d "no C++ compiler '$c' (set CXX)"
        continue
    fi
    if (cd "$tmp/alone" && quiet $c -x c++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only twice.cpp); then
        ok d "deepseek.h compiles as C++11 (twice) with $c"
    else
        fail d "deepseek.h does not compile as C++11 with $c -Wall -Wextra -Werror -pedantic"
    fi
done

# ---- (e) the example builds from deepseek.h + deepseek.c alone ---------------------
if [ ! -f examples/simple.c ]; then
    fail e "examples/simple.c is missing"
elif [ $have_amalg -eq 0 ]; then
    fail e "no dist/deepseek.c to build examples/simple.c with"
else
    for c in $ccs; do
        if (cd "$tmp/alone" && quiet $c $WFLAGS simple.c deepseek.c -I. $LDLIBS -o simple); then
            ok e "examples/simple.c builds with $c from deepseek.h + deepseek.c alone"
        else
            fail e "examples/simple.c does not build with $c $WFLAGS simple.c deepseek.c -I. $LDLIBS"
        fi
    done
fi

# ---- (f) the unit tests against the amalgamation ----------------------------------
if [ $have_amalg -eq 0 ]; then
    fail f "no dist/deepseek.c to test"
else
    if [ $fresh -eq 1 ]; then
        # dist/deepseek.c is fresh, so make may rewrite it only with the same bytes.
        set -- test-amalg
    else
        # Test the committed file as it is: -o keeps make from regenerating
        # it, -W rebuilds the test binaries since they may predate it.
        set -- -o dist/deepseek.c -W tests/amalg_unit.c test-amalg
    fi
    if $MAKE --no-print-directory "$@" > "$tmp/f.log" 2>&1; then
        ok f "unit tests pass against the amalgamation: $(grep -E '^[0-9]+ passed' "$tmp/f.log" | tail -n 1)"
    else
        grep -E '^FAIL|error|Error' "$tmp/f.log" | head -n 40 | sed -e 's/^/    /'
        summary=$(grep -E '^[0-9]+ passed' "$tmp/f.log" | tail -n 1)
        fail f "unit tests against the amalgamation: ${summary:-did not build} (run 'make test-amalg')"
    fi
fi

# The closing line counts the checks in the suite's own format.
echo "check: $passed passed, $failed failed"
[ $failed -eq 0 ]
