#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# Runs the C test binaries given as arguments and adds up their RESULT lines
# into the closing line "N passed, N failed, N skipped".
# Tests find generated data in $DS_TESTDATA (default $BUILD/testdata).
# DS_TEST_RUNNER, when set, is put before each binary but not before the
# .sh scripts (an emulator: "qemu-aarch64 -cpu max" for the AArch64 build,
# make test-aarch64).
BUILD=${BUILD:-build}
DS_TESTDATA=${DS_TESTDATA:-$BUILD/testdata}
export DS_TESTDATA
DS_TOKENIZERS=${DS_TOKENIZERS:-../shared/tokenizers}
export DS_TOKENIZERS
passed=0; failed=0; skipped=0
log=$(mktemp)
for t in "$@"; do
    case $t in
    *.sh) "$t" > "$log" 2>&1 ;;   # scripts use DS_TEST_RUNNER themselves where they need it
    # shellcheck disable=SC2086 # the runner is a command and its words
    *) ${DS_TEST_RUNNER:-} "$t" > "$log" 2>&1 ;;
    esac
    rc=$?
    grep -v -e '^RESULT ' -e '^ok ' "$log"
    line=$(grep '^RESULT ' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $t: exited with status $rc before reporting a RESULT line"
        failed=$((failed + 1))
        continue
    fi
    echo "$line"
    p=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\1/p')
    f=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\2/p')
    s=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped.*/\3/p')
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $t: exit status $rc"
        failed=$((failed + 1))
    fi
done
rm -f "$log"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
