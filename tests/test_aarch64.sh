#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# shellcheck disable=SC2086
# test_aarch64.sh — sealed models across the x86-64 and AArch64 builds of ds,
# the AArch64 one run under emulation (make test-aarch64 sets everything):
#   - a model sealed on x86 opens, verifies and generates with the AArch64
#     build's default crypto (which must pick a provider with hardware AES:
#     libsodium 1.0.18 has none there, so OpenSSL), and the other way round;
#   - both builds give the same logits for the same file within float
#     tolerance (the kernels differ: NEON/dot product against AVX2);
#   - the AArch64 build refuses a wrong key and a tampered segment with the
#     same statuses as the x86 one.
#
#   DS_X86=build/ds DS_ARM=build-aarch64/ds DS_TEST_RUNNER="qemu-aarch64 -cpu max" \
#   DS_TESTDATA=build/testdata PYTHON=python3 sh tests/test_aarch64.sh
#
# Prints "ok <id>" / "FAIL <id>: ..." / "SKIP <id>: ..." per case and ends with
#     RESULT test_aarch64: N passed, N failed, N skipped

set -u
BUILD=${BUILD:-build}
DS_X86=${DS_X86:-build/ds}
DS_ARM=${DS_ARM:-build-aarch64/ds}
RUNNER=${DS_TEST_RUNNER:-qemu-aarch64 -cpu max}
TD=${DS_TESTDATA:-build/testdata}
PY=${PYTHON:-python3}
HF=$TD/v2lite

passed=0
failed=0
skipped=0
T=$(mktemp -d "${TMPDIR:-/tmp}/test_aarch64.XXXXXX") || { echo "FAIL arm-0: mktemp -d failed"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

ok() { passed=$((passed + 1)); echo "ok $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    if [ -s "$T/err" ]; then sed -e 's/^/    stderr: /' "$T/err" | head -n 5; fi
}
finish() {
    echo "RESULT test_aarch64: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit $?
}
# expect <id> <status> <command...>: stdout in $T/out, stderr in $T/err
expect() {
    e_id=$1
    e_want=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -eq "$e_want" ]; then
        ok "$e_id"
        return 0
    fi
    bad "$e_id" "$* exited $rc, want $e_want"
    return 1
}
check() {
    c_id=$1
    c_what=$2
    shift 2
    if "$@"; then ok "$c_id"; else bad "$c_id" "$c_what"; fi
}
arm() { $RUNNER "$DS_ARM" "$@"; }
x86() { "$DS_X86" "$@"; }

CASES="arm-1 arm-2 arm-3 arm-4 arm-5 arm-6 arm-7 arm-8 arm-9 arm-10 arm-11 arm-12 arm-13"
skip_all() {
    for c in $CASES; do skip "$c" "$1"; done
    finish
}
[ -x "$DS_X86" ] || skip_all "no x86 build of ds at $DS_X86 (make all)"
[ -x "$DS_ARM" ] || skip_all "no AArch64 build of ds at $DS_ARM (make test-aarch64)"
[ -f "$HF/config.json" ] || skip_all "no test checkpoint in $HF (make testdata)"
case $(file -b "$DS_ARM" 2>/dev/null || echo aarch64) in
*aarch64* | *ARM*) ;;
*) skip_all "$DS_ARM is not an AArch64 program" ;;
esac

# ==== 1. Sealed on x86, opened on AArch64 ====================================
expect arm-1 0 x86 keygen "$T/k"
expect arm-2 0 x86 convert "$HF" "$T/x.dsm" --quant q8 --key-file "$T/k"
expect arm-3 0 arm verify "$T/x.dsm" --key-file "$T/k"
# a greedy run with notices: the log names the provider the build picked
if expect arm-4 0 arm run "$T/x.dsm" --key-file "$T/k" -p "hello world" -n 6 --temp 0 -v; then
    check arm-4b "no text generated" test -s "$T/out"
    prov=$(sed -n 's/.*cipher [Aa][Ee][Ss]-256-[Gg][Cc][Mm] (\([A-Za-z]*\)).*/\1/p' "$T/err" | head -n 1)
    # libsodium 1.0.18 has no ARM AES-GCM: the default build falls back to OpenSSL
    check arm-4c "provider '$prov' in the log, want OpenSSL or libsodium" test "$prov" = OpenSSL -o "$prov" = libsodium
else
    bad arm-4b "no run"
    bad arm-4c "no run"
fi

# ==== 2. Sealed on AArch64, opened on x86 ====================================
expect arm-5 0 arm convert "$HF" "$T/a.dsm" --quant q8 --key-file "$T/k"
expect arm-6 0 x86 verify "$T/a.dsm" --key-file "$T/k"
# the same directory either way (but the name line and the salt-derived identity)
x86 inspect "$T/x.dsm" --key-file "$T/k" 2>"$T/err" | sed '1d; /^identity /d' >"$T/ix"
x86 inspect "$T/a.dsm" --key-file "$T/k" 2>>"$T/err" | sed '1d; /^identity /d' >"$T/ia"
if [ -s "$T/ix" ] && cmp -s "$T/ix" "$T/ia"; then
    ok arm-7
else
    bad arm-7 "the files sealed on the two builds differ: $(diff "$T/ix" "$T/ia" | head -n 3 | tr '\n' ' ')"
fi

# ==== 3. Same logits on both (float tolerance) ===============================
TOK=0,17,42,99,5,250,3,7
if expect arm-8 0 x86 logits "$T/x.dsm" --key-file "$T/k" --tokens $TOK --out "$T/lx.bin" &&
    expect arm-9 0 arm logits "$T/a.dsm" --key-file "$T/k" --tokens $TOK --out "$T/la.bin"; then
    # max |a - b| against the logits' own spread: the two builds share the
    # quantized weights bit for bit, so only the order of float sums differs
    if "$PY" - "$T/lx.bin" "$T/la.bin" >"$T/cmp" 2>"$T/err" <<'EOF'
import struct, sys
a = open(sys.argv[1], "rb").read()
b = open(sys.argv[2], "rb").read()
if len(a) != len(b) or not a:
    print("sizes %d and %d" % (len(a), len(b)))
    sys.exit(1)
n = len(a) // 4
x = struct.unpack("<%df" % n, a)
y = struct.unpack("<%df" % n, b)
d = max(abs(p - q) for p, q in zip(x, y))
spread = max(x) - min(x)
print("max |diff| %.3g of a spread of %.3g" % (d, spread))
sys.exit(0 if d <= 1e-3 * max(spread, 1.0) else 1)
EOF
    then
        ok "arm-10 ($(cat "$T/cmp"))"
    else
        bad arm-10 "logits differ: $(cat "$T/cmp")"
    fi
else
    bad arm-10 "no logits to compare"
fi

# ==== 4. Refusals on AArch64 =================================================
x86 keygen "$T/k2" >/dev/null 2>&1
if expect arm-11 1 arm verify "$T/x.dsm" --key-file "$T/k2"; then
    check arm-11b "no 'wrong key' in: $(head -n 1 "$T/err")" grep -qi "wrong key" "$T/err"
else
    bad arm-11b "no refusal"
fi
cp "$T/x.dsm" "$T/t.dsm"
# a byte in the middle of the file (a sealed segment's payload)
size=$(wc -c <"$T/t.dsm" | tr -d ' ')
off=$((size / 2))
b=$(dd if="$T/t.dsm" bs=1 skip="$off" count=1 2>/dev/null | od -An -tu1 | tr -d ' \n')
# shellcheck disable=SC2059
printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$T/t.dsm" bs=1 seek="$off" count=1 conv=notrunc 2>/dev/null
x86 verify "$T/t.dsm" --key-file "$T/k" >/dev/null 2>"$T/ex"
want=$?
arm verify "$T/t.dsm" --key-file "$T/k" >"$T/out" 2>"$T/err"
got=$?
check arm-12 "tampered file: x86 exited $want, AArch64 $got" test "$want" -ne 0 -a "$got" -eq "$want"
check arm-13 "the two builds' messages differ: $(head -n 1 "$T/ex") / $(head -n 1 "$T/err")" \
    sh -c "sed 's/^[^:]*: //' '$T/ex' | head -n 1 > '$T/ex1'; sed 's/^[^:]*: //' '$T/err' | head -n 1 > '$T/er1'; cmp -s '$T/ex1' '$T/er1'"
finish
