#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
#
# find_python.sh — the Python the build and the tests run: the first one that
# imports numpy (tests/gen/make_checkpoint.py and the reference scripts need
# it). The python3 first on PATH is often a pyenv or venv one without numpy
# while Debian's /usr/bin/python3 has it (python3-numpy), so several are tried.
#
#   sh tools/find_python.sh            prints the path of the first Python with
#                                      numpy; exit 1 and a message saying what
#                                      to install when none has it
#   sh tools/find_python.sh --check PY exit 0 when PY imports numpy, else the
#                                      same message (the Makefile's NEED_NUMPY)
#
# Tried in order: python3 on PATH, /usr/bin/python3, /usr/local/bin/python3,
# then every python3.X on PATH. PYTHON_CANDIDATES (a list of
# names or paths) replaces that list (tests/test_python.sh uses it).

set -u

candidates() {
    if [ -n "${PYTHON_CANDIDATES:-}" ]; then
        echo "$PYTHON_CANDIDATES" | tr ' ' '\n'
        return
    fi
    echo python3
    echo /usr/bin/python3
    echo /usr/local/bin/python3
    # python3.X in each PATH directory, in PATH order
    old_ifs=$IFS
    IFS=:
    for d in $PATH; do
        [ -d "$d" ] || continue
        for f in "$d"/python3.[0-9] "$d"/python3.[0-9][0-9]; do
            [ -x "$f" ] && echo "$f"
        done
    done
    IFS=$old_ifs
}

# has_numpy PY: true when PY runs and imports numpy.
has_numpy() { "$1" -c 'import numpy' >/dev/null 2>&1; }

# The message when nothing fits: what each candidate lacked, what to install.
none_found() {
    {
        if [ -n "${1:-}" ]; then
            echo "error: the Python given ($1) cannot import numpy, which the test checkpoints are made with."
            echo "  PYTHON=$1: $(describe "$1")"
        else
            echo "error: no Python with numpy found (the test checkpoints are made with numpy)."
        fi
        candidates | while read -r p; do
            [ -n "$p" ] && echo "  $p: $(describe "$p")"
        done
        echo "Install Debian's numpy:   sudo apt-get install python3-numpy"
        echo "or give a Python that has it:   make PYTHON=/path/to/python3 ..."
    } >&2
}

describe() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "not found"
    elif ! "$1" -c 'import sys' >/dev/null 2>&1; then
        echo "does not run"
    elif has_numpy "$1"; then
        echo "has numpy"
    else
        echo "$(command -v "$1") has no numpy"
    fi
}

if [ "${1:-}" = --check ]; then
    py=${2:-}
    if [ -n "$py" ] && has_numpy "$py"; then
        exit 0
    fi
    none_found "$py"
    exit 1
fi

for p in $(candidates); do
    if has_numpy "$p"; then
        command -v "$p"
        exit 0
    fi
done
none_found ""
exit 1
