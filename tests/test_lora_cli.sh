#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# shellcheck disable=SC2016
# test_lora_cli.sh — ds convert-lora, ds inspect on an adapter, ds lora merge.
#
# Uses the checkpoints of tests/gen/make_checkpoint.py and the PEFT
# adapters of tests/gen/make_peft.py in ${DS_TESTDATA:-$BUILD/testdata}
# (make testdata). Prints "ok <id>" or "FAIL <id>: ..." per case and ends with
#     RESULT test_lora_cli: N passed, N failed, N skipped
#
#   sh tests/test_lora_cli.sh            (after make build/ds testdata)

set -u
BUILD=${BUILD:-build}
DS=${DS:-$BUILD/ds}
TD=${DS_TESTDATA:-$BUILD/testdata}
PY=${PYTHON:-$(sh "$(dirname "$0")/../tools/find_python.sh" 2>/dev/null || echo python3)}

passed=0
failed=0
skipped=0
T=$(mktemp -d "${TMPDIR:-/tmp}/test_lora_cli.XXXXXX") || { echo "FAIL lcli-0: mktemp -d failed"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

ok() { passed=$((passed + 1)); echo "ok $1"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    if [ -s "$T/err" ]; then sed -e 's/^/    stderr: /' "$T/err" | head -n 5; fi
}
run() {
    "$DS" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
# expect <id> <status> <args...>
expect() {
    e_id=$1
    e_want=$2
    shift 2
    run "$@"
    if [ "$rc" -eq "$e_want" ]; then ok "$e_id"; return 0; fi
    bad "$e_id" "ds $* exited $rc, want $e_want"
    return 1
}
check() {
    c_id=$1
    c_what=$2
    shift 2
    if "$@"; then ok "$c_id"; else bad "$c_id" "$c_what"; fi
}
has() { grep -q -- "$2" "$1"; }
# nothing_but <dir> <names...>: the directory holds exactly these entries
nothing_but() {
    _d=$1
    shift
    _want=""
    for _f in "$@"; do _want="$_want$_f "; done
    [ "$(ls -A "$_d" | sort | tr '\n' ' ')" = "$(printf '%s' "$_want" | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')" ]
}

if [ ! -x "$DS" ]; then
    echo "FAIL lcli-0: $DS is not built"
    echo "RESULT test_lora_cli: 0 passed, 1 failed, 0 skipped"
    exit 1
fi
P=$TD/peft
if [ ! -f "$TD/v2lite/config.json" ] || [ ! -f "$P/good/expected.json" ]; then
    echo "SKIP lcli: no checkpoints or PEFT fixtures in $TD (make testdata)"
    echo "RESULT test_lora_cli: 0 passed, 0 failed, 1 skipped"
    exit 0
fi

# ==== 1. Usage ===============================================================
expect lcli-1.1 0 convert-lora --help && check lcli-1.1b "help names --base" has "$T/out" "--base"
expect lcli-1.2 0 lora --help && check lcli-1.2b "help names merge" has "$T/out" "lora merge"
expect lcli-1.3 0 --help && check lcli-1.3b "ds --help lists convert-lora" has "$T/out" "convert-lora"
expect lcli-1.4 2 convert-lora "$P/good" "$T/a.dsa" --key-file "$T/k"
check lcli-1.4b "a missing --base is named" has "$T/err" "--base"
expect lcli-1.5 2 convert-lora "$P/good" "$T/a.dsa" --base "$T/b.dsm"
expect lcli-1.6 2 lora merge "$T/b.dsm" "$T/a.dsa"
expect lcli-1.7 2 lora frobnicate
expect lcli-1.8 2 lora merge "$T/b.dsm" "$T/a.dsa" "$T/m.dsm" --key-file "$T/k" --scale abc

# ==== 2. Convert, inspect ===================================================
"$DS" keygen "$T/k" >/dev/null 2>&1 && "$DS" keygen "$T/k2" >/dev/null 2>&1 && "$DS" keygen "$T/k3" >/dev/null 2>&1
mkdir -p "$T/m" "$T/o"
"$DS" convert "$TD/v2lite" "$T/m/b.dsm" --quant f32 --key-file "$T/k" >/dev/null 2>&1 &&
    "$DS" convert "$TD/v2lite" "$T/m/b2.dsm" --quant f32 --key-file "$T/k" >/dev/null 2>&1 &&
    "$DS" convert "$TD/v2lite" "$T/m/bk2.dsm" --quant q8 --key-file "$T/k2" >/dev/null 2>&1
check lcli-2.0 "the bases convert" test -f "$T/m/bk2.dsm"

expect lcli-2.1 0 convert-lora "$P/good" "$T/o/a.dsa" --base "$T/m/b.dsm" --key-file "$T/k"
check lcli-2.1b "only the adapter was written" nothing_but "$T/o" a.dsa
expect lcli-2.2 0 inspect "$T/m/b.dsm" --key-file "$T/k"
ID=$(sed -n 's/^identity  *\([0-9a-f]\{64\}\)$/\1/p' "$T/out")
check lcli-2.2b "inspect prints the model's identity" test -n "$ID"
expect lcli-2.3 0 inspect "$T/o/a.dsa" --base "$T/m/b.dsm" --key-file "$T/k"
check lcli-2.3b "the adapter's base id is the base's identity" has "$T/out" "^base id  *$ID\$"
check lcli-2.3c "r, alpha, scale, targets, dtype" sh -c 'grep -q "^rank r  *4$" "$1" && grep -q "^lora_alpha  *8$" "$1" &&
    grep -q "^scale  *2 " "$1" && grep -q "^targets .*kv_b_proj" "$1" && grep -q "^dtype  *f32$" "$1" &&
    grep -q "^parameters  *21120 " "$1"' sh "$T/out"
expect lcli-2.4 0 inspect "$T/o/a.dsa" --base "$T/m/b.dsm" --key-file "$T/k" --json
check lcli-2.4b "--json is JSON with the record" "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["r"] == 4 and d["base_id"] == sys.argv[2] and d["scale"] == 2 else 1)' "$T/out" "$ID"
expect lcli-2.5 1 inspect "$T/o/a.dsa" --key-file "$T/k"
check lcli-2.5b "an adapter without --base says how to inspect it" has "$T/err" "--base"
expect lcli-2.6 1 run "$T/o/a.dsa" --key-file "$T/k" -p hi -n 1
expect lcli-2.7 0 convert-lora "$P/mixed" "$T/o/f16.dsa" --base "$T/m/b.dsm" --key-file "$T/k" --f16
expect lcli-2.8 0 inspect "$T/o/f16.dsa" --base "$T/m/b.dsm" --key-file "$T/k" &&
    check lcli-2.8b "--f16 and rsLoRA recorded" sh -c 'grep -q "^dtype  *f16$" "$1" && grep -q "rsLoRA" "$1"' sh "$T/out"

# ==== 3. Keys ===============================================================
# the base's key defaults to the adapter's; a base sealed with another key
expect lcli-3.1 1 convert-lora "$P/good" "$T/o/x.dsa" --base "$T/m/bk2.dsm" --key-file "$T/k"
check lcli-3.1b "the wrong base key is said" has "$T/err" "key"
check lcli-3.1c "nothing written" nothing_but "$T/o" a.dsa f16.dsa
expect lcli-3.2 0 convert-lora "$P/good" "$T/o/k3.dsa" --base "$T/m/bk2.dsm" --key-file "$T/k3" --base-key-file "$T/k2"
expect lcli-3.3 1 inspect "$T/o/k3.dsa" --base "$T/m/bk2.dsm" --key-file "$T/k2"
expect lcli-3.4 0 inspect "$T/o/k3.dsa" --base "$T/m/bk2.dsm" --key-file "$T/k2" --adapter-key-file "$T/k3"
# the same checkpoint converted twice: two bases, two identities
expect lcli-3.5 1 inspect "$T/o/a.dsa" --base "$T/m/b2.dsm" --key-file "$T/k"
check lcli-3.5b "an adapter for another conversion is refused as such" has "$T/err" "made for the base model"
expect lcli-3.6 0 convert-lora "$P/good" "$T/o/a2.dsa" --base "$T/m/b2.dsm" --key-file "$T/k"
expect lcli-3.7 0 inspect "$T/o/a2.dsa" --base "$T/m/b2.dsm" --key-file "$T/k"
check lcli-3.7b "its base id is the second conversion's, not the first's" sh -c '! grep -q "$2" "$1"' sh "$T/out" "$ID"
expect lcli-3.8 0 convert-lora "$P/good" "$T/o/plain.dsa" --base "$T/m/b.dsm" --base-key-file "$T/k" --no-encrypt

# ==== 4. Refusals: a named error, nothing written ===========================
rm -f "$T/o/"*
n=0
for c in bad_vproj bad_stray bad_unlisted bad_noB bad_shape bad_rank bad_empty bad_pattern bad_bias bad_type; do
    n=$((n + 1))
    expect "lcli-4.$n" 1 convert-lora "$P/$c" "$T/o/x.dsa" --base "$T/m/b.dsm" --key-file "$T/k"
    check "lcli-4.${n}b" "$c: no output" nothing_but "$T/o"
done
expect lcli-4.20 1 convert-lora "$P/bad_vproj" "$T/o/x.dsa" --base "$T/m/b.dsm" --key-file "$T/k"
check lcli-4.20b "v_proj: the message explains MLA" sh -c 'grep -q "v_proj" "$1" && grep -q "kv_b_proj" "$1"' sh "$T/err"
expect lcli-4.21 0 convert-lora "$P/good" "$T/o/a.dsa" --base "$T/m/b.dsm" --key-file "$T/k"
expect lcli-4.22 1 convert-lora "$P/good" "$T/o/a.dsa" --base "$T/m/b.dsm" --key-file "$T/k"
check lcli-4.22b "an existing output names --force" has "$T/err" "--force"
expect lcli-4.23 0 convert-lora "$P/good" "$T/o/a.dsa" --base "$T/m/b.dsm" --key-file "$T/k" --force

# ==== 5. Merge ==============================================================
expect lcli-5.1 0 lora merge "$T/m/b.dsm" "$T/o/a.dsa" "$T/o/m.dsm" --key-file "$T/k" --scale 0.5
expect lcli-5.2 0 inspect "$T/o/m.dsm" --key-file "$T/k"
check lcli-5.2b "the merged model has an identity of its own" sh -c '! grep -q "$2" "$1"' sh "$T/out" "$ID"
expect lcli-5.3 0 verify "$T/o/m.dsm" --key-file "$T/k"
expect lcli-5.4 0 run "$T/o/m.dsm" --key-file "$T/k" -p "In the beginning" -n 4 --temp 0
expect lcli-5.5 1 lora merge "$T/m/b.dsm" "$T/o/a.dsa" "$T/o/m.dsm" --key-file "$T/k"
expect lcli-5.6 1 lora merge "$T/m/b.dsm" "$T/o/a.dsa" "$T/m/b.dsm" --key-file "$T/k" --force
check lcli-5.6b "the base is never the output" has "$T/err" "same file"
expect lcli-5.7 1 lora merge "$T/m/b2.dsm" "$T/o/a.dsa" "$T/o/m2.dsm" --key-file "$T/k"
# the merged weights against numpy's W + 0.5 s B A (F32 base: to rounding)
if "$DS" logits "$T/o/m.dsm" --key-file "$T/k" --tokens 1,2,3 --out "$T/o/lm.bin" >/dev/null 2>&1; then
    ok lcli-5.8
else
    bad lcli-5.8 "logits of the merged model"
fi

# ==== 6. Real PEFT adapters: merged logits against PEFT's ==================
# tests/ref/lora (tests/ref/make_lora_goldens.py: PEFT 0.21.2 on transformers,
# float32): each case's adapter converted over an F32 conversion of its
# checkpoint, merged, and the merged model's logits for the goldens' tokens
# against PEFT's merge_and_unload() logits (1e-4, as the base goldens).
REF=${DS_LORA_REF:-$(dirname "$0")/ref/lora}
TOK=${DS_GOLDEN_TOKENS:-$(dirname "$0")/ref/goldens/tokens.json}
if [ ! -d "$REF" ] || [ ! -f "$TOK" ]; then
    skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
    skip lcli-6 "no PEFT reference adapters in $REF"
else
    IDS=$("$PY" -c 'import json, sys; print(",".join(map(str, json.load(open(sys.argv[1]))["token_ids"])))' "$TOK")
    n=0
    for d in "$REF"/*/; do
        c=$(basename "$d")
        [ -f "$d/case.json" ] || continue
        n=$((n + 1))
        fam=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["family"])' "$d/case.json")
        if [ ! -f "$T/m/$fam.dsm" ]; then
            "$DS" convert "$TD/$fam" "$T/m/$fam.dsm" --quant f32 --key-file "$T/k" >/dev/null 2>"$T/err" ||
                { bad "lcli-6.$n" "$c: ds convert $fam failed"; continue; }
        fi
        rm -f "$T/o/"*
        if ! expect "lcli-6.$n.1" 0 convert-lora "$d" "$T/o/a.dsa" --base "$T/m/$fam.dsm" --key-file "$T/k"; then
            continue
        fi
        expect "lcli-6.$n.2" 0 lora merge "$T/m/$fam.dsm" "$T/o/a.dsa" "$T/o/m.dsm" --key-file "$T/k" || continue
        expect "lcli-6.$n.3" 0 logits "$T/o/m.dsm" --key-file "$T/k" --tokens "$IDS" --out "$T/o/m.f32" \
            --exact-activations || continue
        check "lcli-6.$n.4" "$c: merged logits differ from PEFT's merge_and_unload() (max |diff| in stderr)" "$PY" -c '
import sys
import numpy as np
a = np.fromfile(sys.argv[1], dtype="<f4")
b = np.fromfile(sys.argv[2], dtype="<f4")
d = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
print("%s: max |merged - PEFT merged| = %.3g" % (sys.argv[3], d), file=sys.stderr)
sys.exit(0 if d < 1e-4 else 1)' "$T/o/m.f32" "$d/merged.logits.f32" "$c"
    done
fi

echo "RESULT test_lora_cli: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
