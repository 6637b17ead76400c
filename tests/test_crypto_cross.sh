#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# shellcheck disable=SC2086
# test_crypto_cross.sh — the two AES-256-GCM providers read and write the same
# bytes: containers sealed by the libsodium build open with the OpenSSL build
# and the other way round, and both seal identical ciphertext and tags for the
# same key, nonce, associated data and plaintext.
#
# Needs two builds of the ds tool and of tests/test_crypto:
#     make all build/tests/test_crypto                        (libsodium: build/)
#     make OPENSSL=1 all build-openssl/tests/test_crypto      (OpenSSL: build-openssl/)
# and the checkpoints of tests/gen/make_checkpoint.py --all in
# ${DS_TESTDATA:-$BUILD/testdata}. When the OpenSSL build is missing every
# case is skipped, with the reason.
#
# Prints "ok <id>" / "FAIL <id>: ..." / "SKIP <id>: ..." per case and ends with
#     RESULT test_crypto_cross: N passed, N failed, N skipped
# (exit 1 when anything failed).
#
#   DS_A=... DS_B=... TC_A=... TC_B=... DS_TESTDATA=... sh tests/test_crypto_cross.sh

set -u
BUILD=${BUILD:-build}
DS_A=${DS_A:-$BUILD/ds}                                   # libsodium provider
DS_B=${DS_B:-${BUILD}-openssl/ds}                         # OpenSSL provider
TC_A=${TC_A:-$BUILD/tests/test_crypto}
TC_B=${TC_B:-${BUILD}-openssl/tests/test_crypto}
TD=${DS_TESTDATA:-$BUILD/testdata}
HF=$TD/v2lite

passed=0
failed=0
skipped=0
T=$(mktemp -d "${TMPDIR:-/tmp}/test_crypto_cross.XXXXXX") || { echo "FAIL cross-0: mktemp -d failed"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

# ==== Harness ===============================================================

ok() { passed=$((passed + 1)); echo "ok $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    if [ -s "$T/err" ]; then sed -e 's/^/    stderr: /' "$T/err" | head -n 5; fi
}
finish() {
    echo "RESULT test_crypto_cross: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit $?
}

# expect <id> <status> <command...>: runs a command (stdout in $T/out, stderr
# in $T/err) and checks its exit status. Returns 0 when it matched.
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

# flip <file> <offset>: xors one byte with 0x01 in place.
flip() {
    _b=$(dd if="$1" bs=1 skip="$2" count=1 2>/dev/null | od -An -tu1 | tr -d ' \n')
    [ -n "$_b" ] || return 1
    # shellcheck disable=SC2059
    printf "\\$(printf '%03o' $((_b ^ 1)))" | dd of="$1" bs=1 seek="$2" count=1 conv=notrunc 2>/dev/null
}

# ==== What is there to test ===================================================

CASES="cross-1.1 cross-1.2 cross-1.3 cross-2.1 cross-2.2 cross-2.3 cross-2.4 cross-2.5 cross-2.6 cross-2.7
       cross-3.1 cross-3.2 cross-3.3 cross-3.4 cross-4.1 cross-4.2 cross-4.3 cross-4.4 cross-5.1 cross-5.2
       cross-5.3 cross-5.4 cross-6.1 cross-6.2"
skip_all() {
    for c in $CASES; do skip "$c" "$1"; done
    finish
}
[ -x "$DS_A" ] || skip_all "no libsodium build of ds at $DS_A (make all)"
[ -x "$DS_B" ] || skip_all "no OpenSSL build of ds at $DS_B (make OPENSSL=1 all; needs libssl-dev)"
[ -f "$HF/config.json" ] || skip_all "no test checkpoint in $HF (make testdata)"
# the two tools must really be different providers: the OpenSSL one links libcrypto
if command -v ldd >/dev/null 2>&1; then
    if ! ldd "$DS_B" 2>/dev/null | grep -q libcrypto; then
        skip_all "$DS_B does not link libcrypto: not an OpenSSL build"
    fi
    if ldd "$DS_A" 2>/dev/null | grep -q libcrypto; then
        skip_all "$DS_A links libcrypto: expected the libsodium build"
    fi
fi

# ==== 1. Chunk level: identical ciphertext and tags =========================

if [ -x "$TC_A" ] && [ -x "$TC_B" ]; then
    if "$TC_A" --dump "$T/a.bin" >"$T/err" 2>&1 && "$TC_B" --dump "$T/b.bin" >>"$T/err" 2>&1; then
        if cmp -s "$T/a.bin" "$T/b.bin"; then ok cross-1.1; else bad cross-1.1 "the providers sealed different bytes"; fi
    else
        bad cross-1.1 "a test_crypto --dump failed"
    fi
    expect cross-1.2 0 "$TC_A" --open-dump "$T/b.bin"    # libsodium opens OpenSSL's chunks
    expect cross-1.3 0 "$TC_B" --open-dump "$T/a.bin"    # and the other way round
else
    for c in cross-1.1 cross-1.2 cross-1.3; do skip "$c" "no test_crypto in both builds ($TC_A, $TC_B)"; done
fi

# ==== 2. Containers sealed by one, opened by the other =======================

expect cross-2.1 0 "$DS_A" keygen "$T/k"
expect cross-2.2 0 "$DS_A" convert "$HF" "$T/a.dsm" --quant q8 --key-file "$T/k"   # libsodium seals
expect cross-2.3 0 "$DS_B" convert "$HF" "$T/b.dsm" --quant q8 --key-file "$T/k"   # OpenSSL seals
expect cross-2.4 0 "$DS_B" verify "$T/a.dsm" --key-file "$T/k"
expect cross-2.5 0 "$DS_A" verify "$T/b.dsm" --key-file "$T/k"
# the same file inspected by either tool: identical output
"$DS_A" inspect "$T/a.dsm" --key-file "$T/k" >"$T/ia" 2>"$T/err"
ra=$?
"$DS_B" inspect "$T/a.dsm" --key-file "$T/k" >"$T/ib" 2>>"$T/err"
rb=$?
if [ $ra -eq 0 ] && [ $rb -eq 0 ] && [ -s "$T/ia" ] && cmp -s "$T/ia" "$T/ib"; then
    ok cross-2.6
else
    bad cross-2.6 "inspect --key-file of a libsodium-sealed file differs between the tools (status $ra, $rb)"
fi
# files sealed by either: the same directory (all but the file name line and
# the identity, which hashes each file's own random salt)
"$DS_A" inspect "$T/b.dsm" --key-file "$T/k" 2>"$T/err" | sed '1d; /^identity /d' >"$T/ib2"
sed '1d; /^identity /d' "$T/ia" >"$T/ia2"
if [ -s "$T/ia2" ] && cmp -s "$T/ia2" "$T/ib2"; then
    ok cross-2.7
else
    bad cross-2.7 "inspect of the files sealed by the two tools differs: $(diff "$T/ia2" "$T/ib2" | head -n 3 | tr '\n' ' ')"
fi

# ==== 3. Multi-chunk segments, and all the weights through the model ========

# 4 KiB chunks: most segments span many chunks (nonces beyond chunk 0)
expect cross-3.1 0 "$DS_B" convert "$HF" "$T/b4.dsm" --quant f16 --chunk-kb 4 --key-file "$T/k"
expect cross-3.2 0 "$DS_A" verify "$T/b4.dsm" --key-file "$T/k" --threads 2
# logits of the same prompt through every weight, decrypted by either provider
ok_la=0
"$DS_A" logits "$T/b4.dsm" --key-file "$T/k" --tokens 1,17,42,99,250,3 --out "$T/la" >/dev/null 2>"$T/err" && ok_la=1
"$DS_B" logits "$T/b4.dsm" --key-file "$T/k" --tokens 1,17,42,99,250,3 --out "$T/lb" >/dev/null 2>>"$T/err" || ok_la=0
if [ $ok_la -eq 1 ] && [ -s "$T/la" ] && cmp -s "$T/la" "$T/lb"; then
    ok cross-3.3
else
    bad cross-3.3 "logits of an OpenSSL-sealed file differ between the providers (or failed)"
fi
# with a small expert cache: experts decrypted on demand by the pager
ok_lc=0
"$DS_A" logits "$T/b4.dsm" --key-file "$T/k" --tokens 1,17,42,99,250,3 --cache-mb 1 --out "$T/lc" >/dev/null 2>"$T/err" && ok_lc=1
if [ $ok_lc -eq 1 ] && cmp -s "$T/la" "$T/lc"; then
    ok cross-3.4
else
    bad cross-3.4 "logits with the expert cache differ from resident ones (or failed)"
fi

# ==== 4. Damage and wrong keys are caught the same way ======================

cp "$T/a.dsm" "$T/bad.dsm"
flip "$T/bad.dsm" 5000          # inside the first segment (segments start at 4096)
expect cross-4.1 1 "$DS_B" verify "$T/bad.dsm" --key-file "$T/k" &&
    { grep -qi "auth" "$T/err" || bad cross-4.1 "message does not say authentication failed"; }
cp "$T/b.dsm" "$T/bad2.dsm"
flip "$T/bad2.dsm" 5000
expect cross-4.2 1 "$DS_A" verify "$T/bad2.dsm" --key-file "$T/k"
"$DS_A" keygen "$T/k2" >/dev/null 2>&1
expect cross-4.3 1 "$DS_B" inspect "$T/a.dsm" --key-file "$T/k2" &&
    { grep -qi "wrong key" "$T/err" || bad cross-4.3 "message does not say wrong key"; }
expect cross-4.4 1 "$DS_A" inspect "$T/b.dsm" --key-file "$T/k2"

# ==== 5. Passphrase (Argon2id) and integrity-only files =======================

DS_CROSS_PW="correct horse battery staple"
export DS_CROSS_PW
expect cross-5.1 0 "$DS_B" convert "$HF" "$T/p.dsm" --passphrase-env DS_CROSS_PW --argon-ops 1 --argon-mem-mb 8
expect cross-5.2 0 "$DS_A" verify "$T/p.dsm" --passphrase-env DS_CROSS_PW
expect cross-5.3 0 "$DS_A" convert "$HF" "$T/n.dsm" --no-encrypt
expect cross-5.4 0 "$DS_B" verify "$T/n.dsm"

# ==== 6. The public header (no key) ==========================================

# reads the same with either tool
expect cross-6.1 0 "$DS_A" inspect "$T/b.dsm" && cp "$T/out" "$T/ha"
"$DS_B" inspect "$T/b.dsm" >"$T/hb" 2>"$T/err"
if cmp -s "$T/ha" "$T/hb"; then ok cross-6.2; else bad cross-6.2 "public header output differs between the tools"; fi

finish
