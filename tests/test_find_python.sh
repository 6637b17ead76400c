#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
#
# test_find_python.sh — the build's Python choice (tools/find_python.sh, the
# Makefile's PYTHON and NEED_NUMPY) when the python3 first on PATH has no
# numpy, as a pyenv or venv one often has not:
#
#   1. a fake python3 without numpy first on PATH: the Makefile still makes
#      the test checkpoints (make testdata into a scratch BUILD), with a
#      Python that imports numpy, never the fake one
#   2. no Python with numpy at all (PYTHON_CANDIDATES lists only the fake
#      one): make testdata fails at once with a message that says what to
#      install, and makes nothing
#   3. PYTHON= naming the fake one: the same message, naming it
#
# Ends with "RESULT test_find_python: N passed, N failed, N skipped". Run from the
# repository root (make check does).
set -u
MAKE=${MAKE:-make}

passed=0
failed=0
skipped=0
T=$(mktemp -d "${TMPDIR:-/tmp}/test_find_python.XXXXXX") || { echo "FAIL py-0: mktemp -d failed"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

ok() { passed=$((passed + 1)); echo "ok $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    if [ -s "$T/err" ]; then sed -e 's/^/    /' "$T/err" | tail -n 8; fi
}
finish() {
    echo "RESULT test_find_python: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit
}

# The real Python with numpy, found before the fake one is on PATH.
REAL=$(sh tools/find_python.sh 2>/dev/null)
if [ -z "$REAL" ]; then
    skip py-1 "no Python with numpy here to hide"
    finish
fi

# The fake: the real interpreter, with a numpy package on its path that
# cannot be imported (what a Python without numpy says).
mkdir -p "$T/bin" "$T/nonumpy/numpy"
echo 'raise ModuleNotFoundError("No module named '\''numpy'\''", name="numpy")' > "$T/nonumpy/numpy/__init__.py"
cat > "$T/bin/python3" <<EOF
#!/bin/sh
PYTHONPATH="$T/nonumpy" exec "$REAL" "\$@"
EOF
chmod +x "$T/bin/python3"
if "$T/bin/python3" -c 'import numpy' 2>/dev/null || ! "$T/bin/python3" -c 'import json' 2>/dev/null; then
    bad py-0 "the fake python3 is not a working Python without numpy"
    finish
fi

# make, as a user runs it: no PYTHON from the environment or an enclosing make.
# CANDS: tools/find_python.sh's PYTHON_CANDIDATES (empty: its usual list).
CANDS=
umake() {
    env -u PYTHON -u MAKEFLAGS -u MAKELEVEL -u MFLAGS PATH="$T/bin:$PATH" PYTHON_CANDIDATES="$CANDS" \
        $MAKE --no-print-directory "$@"
}

# ---- 1. the fake first on PATH ----------------------------------------------
if [ "$(PATH="$T/bin:$PATH" command -v python3)" != "$T/bin/python3" ]; then
    bad py-1 "the fake python3 is not first on PATH"
else
    chosen=$(PATH="$T/bin:$PATH" sh tools/find_python.sh 2>"$T/err")
    if [ -n "$chosen" ] && [ "$chosen" != "$T/bin/python3" ] && "$chosen" -c 'import numpy' 2>>"$T/err"; then
        ok py-1
    else
        bad py-1 "tools/find_python.sh chose '$chosen' with a python3 without numpy first on PATH"
    fi
    if umake BUILD="$T/b" testdata >"$T/out" 2>"$T/err" && [ -f "$T/b/testdata/.stamp" ] &&
        [ -f "$T/b/testdata/v2lite/config.json" ]; then
        ok py-2
    else
        bad py-2 "make testdata failed with a python3 without numpy first on PATH"
    fi
    if grep -q "^$T/bin/python3 " "$T/out"; then
        bad py-3 "make ran the fake python3: $(grep -m 1 "^$T/bin/python3 " "$T/out")"
    else
        ok py-3
    fi
fi

# ---- 2. no Python with numpy anywhere -------------------------------------------
CANDS=$T/bin/python3
if umake BUILD="$T/c" testdata >"$T/out" 2>"$T/err"; then
    bad py-4 "make testdata succeeded with no Python that has numpy"
elif ! grep -q "apt-get install python3-numpy" "$T/err"; then
    bad py-4 "make testdata failed without saying what to install"
elif [ -e "$T/c/testdata" ]; then
    bad py-4 "make testdata made $T/c/testdata before failing"
else
    ok py-4
fi

# ---- 3. PYTHON= a Python without numpy ---------------------------------------------
if env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS $MAKE --no-print-directory PYTHON="$T/bin/python3" BUILD="$T/d" testdata \
        >"$T/out" 2>"$T/err"; then
    bad py-5 "make PYTHON=<no numpy> testdata succeeded"
elif grep -q "$T/bin/python3" "$T/err" && grep -q "apt-get install python3-numpy" "$T/err"; then
    ok py-5
else
    bad py-5 "make PYTHON=<no numpy> testdata failed without naming it and what to install"
fi
finish
