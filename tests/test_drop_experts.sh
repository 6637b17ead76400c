#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# test_drop_experts.sh — expert pruning: ds calibrate, ds convert
# --drop-experts R --calib, ds inspect, and the routing over the experts left.
#
#   drop-1.x  calibration sanity: per MoE layer, the selection counts sum to
#             tokens x top_k, the masses are finite (v2lite, v3)
#   drop-2.x  logits of a model with dropped experts (F32) against
#             transformers with those experts masked out of the router
#             (tests/ref/goldens/drop, made by tests/ref/make_drop_goldens.py):
#             max |diff| <= 1e-4 (v2lite: softmax, greedy; v3: sigmoid,
#             noaux_tc, groups)
#   drop-3.x  ds inspect (and --json) names the dropped experts, the ratio,
#             the calibration
#   drop-4.x  paged (--cache-mb 1) gives the tokens of resident
#   drop-5.x  errors, each a message and no output: R outside [0, 1), a
#             calibration file of another model, malformed JSON, a drop that
#             leaves fewer experts than top_k (or too few in the chosen groups)
#   drop-6.x  256 routed experts (v3e256: top-8 of 8 groups, 4 kept):
#             calibration counts, a quarter dropped, paged = resident
#
# Uses ${DS_TESTDATA:-$BUILD/testdata} (make testdata). Prints "ok <id>" or
# "FAIL <id>: ..." per case and ends with
#     RESULT test_drop_experts: N passed, N failed, N skipped

set -u
BUILD=${BUILD:-build}
DS=${DS:-$BUILD/ds}
TD=${DS_TESTDATA:-$BUILD/testdata}
GOLD=$(dirname "$0")/ref/goldens/drop
PY=${PYTHON:-$(sh "$(dirname "$0")/../tools/find_python.sh" 2>/dev/null || echo python3)}

passed=0
failed=0
skipped=0
T=$(mktemp -d "${TMPDIR:-/tmp}/test_drop_experts.XXXXXX") || { echo "FAIL drop-0: mktemp -d failed"; exit 1; }
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
# refused <id> <message fragment> <out> <args...>: exit 1, the message, no file
refused() {
    r_id=$1
    r_msg=$2
    r_out=$3
    shift 3
    run "$@"
    if [ "$rc" -ne 1 ]; then bad "$r_id" "exit $rc, wanted 1"
    elif ! grep -q -- "$r_msg" "$T/err"; then bad "$r_id" "no '$r_msg' in the message"
    elif [ -e "$r_out" ]; then bad "$r_id" "$r_out was written"
    else ok "$r_id"; fi
}

if [ ! -x "$DS" ] || [ ! -d "$TD/v2lite" ] || [ ! -d "$TD/v3" ] || ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "skip drop: needs $DS, $TD (make testdata) and numpy"
    echo "RESULT test_drop_experts: 0 passed, 0 failed, 1 skipped"
    exit 0
fi

# a text for calibration: pseudo-random words
"$PY" -c '
import random
random.seed(7)
print(" ".join("w%d" % random.randint(0, 60) for _ in range(400)))' >"$T/text.txt"
TOKENS=$("$PY" -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["tokens"])))' "$GOLD/v3.json")

n=0
for fam in v2lite v3; do
    n=$((n + 1))
    run convert "$TD/$fam" "$T/$fam.dsm" --quant f32 --no-encrypt
    [ "$rc" -eq 0 ] || { bad "drop-0.$n" "convert $fam: exit $rc"; continue; }
    # ---- drop-1: calibration ----
    run calibrate "$T/$fam.dsm" --file "$T/text.txt" --out "$T/$fam.cal.json" --ctx 48
    if [ "$rc" -ne 0 ]; then bad "drop-1.$n" "calibrate $fam: exit $rc"
    elif "$PY" - "$T/$fam.cal.json" >"$T/err" 2>&1 <<'PYEOF'
import json, math, sys
c = json.load(open(sys.argv[1]))
assert c["format"] == "deepseek.h calibration 1"
E, K = c["config"]["n_routed_experts"], c["config"]["n_experts_per_tok"]
assert c["layers"], "no layers"
for l, v in c["layers"].items():
    assert len(v["mass"]) == E and len(v["count"]) == E
    assert sum(v["count"]) == c["n_tokens"] * K, (l, sum(v["count"]), c["n_tokens"] * K)
    assert all(math.isfinite(m) and m >= 0 for m in v["mass"])
PYEOF
    then ok "drop-1.$n"
    else bad "drop-1.$n" "$fam: calibration counts"; fi

    # ---- drop-2: a calibration that drops the goldens' experts ----
    "$PY" - "$T/$fam.cal.json" "$GOLD/$fam.json" "$T/$fam.drop.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
g = json.load(open(sys.argv[2]))
for l, v in c["layers"].items():
    d = g["dropped"][l]
    E = len(v["mass"])
    v["mass"] = [0.001 * (x + 1) if x in d else 10.0 + x for x in range(E)]
json.dump(c, open(sys.argv[3], "w"))
PYEOF
    run convert "$TD/$fam" "$T/$fam.p.dsm" --quant f32 --no-encrypt --drop-experts 0.25 --calib "$T/$fam.drop.json"
    if [ "$rc" -ne 0 ]; then bad "drop-2.$n" "convert --drop-experts $fam: exit $rc"; continue; fi
    run logits "$T/$fam.p.dsm" --tokens "$TOKENS" --out "$T/$fam.logits"
    if [ "$rc" -ne 0 ]; then bad "drop-2.$n" "logits $fam: exit $rc"
    elif "$PY" - "$T/$fam.logits" "$GOLD/$fam.logits.f32" >"$T/err" 2>&1 <<'PYEOF'
import sys
import numpy as np
a = np.fromfile(sys.argv[1], dtype="<f4")
b = np.fromfile(sys.argv[2], dtype="<f4")
assert a.shape == b.shape, (a.shape, b.shape)
d = float(np.abs(a - b).max())
print("max |diff| %.3g" % d)
assert d <= 1e-4, d
PYEOF
    then ok "drop-2.$n ($fam: $(cat "$T/err"))"
    else bad "drop-2.$n" "$fam: logits differ from the masked reference"; fi

    # ---- drop-3: inspect ----
    run inspect "$T/$fam.p.dsm"
    want=$("$PY" -c 'import json,sys; g=json.load(open(sys.argv[1]))["dropped"]; print(" ".join(str(x) for x in g["1"]))' "$GOLD/$fam.json")
    if [ "$rc" -eq 0 ] && grep -q "experts dropped at conversion" "$T/out" && grep -q "ratio *0.25 (2 of 8" "$T/out" &&
        grep -q "layer 1 *kept 6, dropped 2: $want\$" "$T/out" && grep -q "calibration *$fam.drop.json" "$T/out"; then
        ok "drop-3.$n"
    else bad "drop-3.$n" "$fam: inspect does not show the drop"; fi
    run inspect "$T/$fam.p.dsm" --json
    if [ "$rc" -eq 0 ] && "$PY" - "$T/out" "$GOLD/$fam.json" >"$T/err" 2>&1 <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))["experts_dropped"]
g = json.load(open(sys.argv[2]))["dropped"]
assert j["ratio"] == 0.25 and j["per_layer"] == 2, j
assert j["layers"] == g, (j["layers"], g)
PYEOF
    then ok "drop-3.$n json"
    else bad "drop-3.$n" "$fam: inspect --json"; fi

    # ---- drop-4: paged = resident ----
    run run "$T/$fam.p.dsm" -p "w1 w2 w3" -n 16 --temp 0 --ignore-eos
    cp "$T/out" "$T/resident.txt"
    run run "$T/$fam.p.dsm" -p "w1 w2 w3" -n 16 --temp 0 --ignore-eos --cache-mb 1
    if [ "$rc" -eq 0 ] && cmp -s "$T/out" "$T/resident.txt"; then ok "drop-4.$n"
    else bad "drop-4.$n" "$fam: paged output differs from resident (or exit $rc)"; fi
done

# ---- drop-6: 256 routed experts (v3e256: top-8, 8 groups, 4 kept) ----
if [ ! -d "$TD/v3e256" ]; then
    skipped=$((skipped + 1))
    echo "SKIP drop-6: no $TD/v3e256 (make testdata)"
else
    run convert "$TD/v3e256" "$T/e256.dsm" --quant f32 --no-encrypt
    [ "$rc" -eq 0 ] || bad drop-6.0 "convert v3e256: exit $rc"
    run calibrate "$T/e256.dsm" --file "$T/text.txt" --out "$T/e256.cal.json" --ctx 48
    if [ "$rc" -ne 0 ]; then bad drop-6.1 "calibrate v3e256: exit $rc"
    elif "$PY" - "$T/e256.cal.json" >"$T/err" 2>&1 <<'PYEOF'
import json, math, sys
c = json.load(open(sys.argv[1]))
E, K = c["config"]["n_routed_experts"], c["config"]["n_experts_per_tok"]
assert (E, K, c["config"]["n_group"], c["config"]["topk_group"]) == (256, 8, 8, 4), c["config"]
assert sorted(c["layers"]) == ["1", "2"], sorted(c["layers"])
for l, v in c["layers"].items():
    assert len(v["mass"]) == E and len(v["count"]) == E
    assert sum(v["count"]) == c["n_tokens"] * K, (l, sum(v["count"]), c["n_tokens"] * K)
    assert all(math.isfinite(m) and m >= 0 for m in v["mass"])
    assert sum(1 for n in v["count"] if n) > 64, "fewer than 65 experts ever chosen"
PYEOF
    then ok "drop-6.1"
    else bad drop-6.1 "v3e256: calibration counts"; fi
    run convert "$TD/v3e256" "$T/e256.p.dsm" --quant f32 --no-encrypt --drop-experts 0.25 --calib "$T/e256.cal.json"
    if [ "$rc" -ne 0 ]; then bad drop-6.2 "convert --drop-experts v3e256: exit $rc"
    else
        run inspect "$T/e256.p.dsm"
        if [ "$rc" -eq 0 ] && grep -q "ratio *0.25 (64 of 256" "$T/out"; then ok drop-6.2
        else bad drop-6.2 "v3e256: inspect does not show 64 of 256 dropped"; fi
        # paged (1 MB: 40 slots of 24.6 KB for 384 experts) = resident
        run run "$T/e256.p.dsm" -p "w1 w2 w3" -n 24 --temp 0 --ignore-eos
        cp "$T/out" "$T/resident.txt"
        run run "$T/e256.p.dsm" -p "w1 w2 w3" -n 24 --temp 0 --ignore-eos --cache-mb 1
        if [ "$rc" -eq 0 ] && [ -s "$T/out" ] && cmp -s "$T/out" "$T/resident.txt"; then ok drop-6.3
        else bad drop-6.3 "v3e256: paged output differs from resident (or exit $rc)"; fi
    fi
fi

# ---- drop-5: errors ----
C="$T/v2lite.drop.json"
refused drop-5.1 "outside \[0, 1)" "$T/e.dsm" convert "$TD/v2lite" "$T/e.dsm" --no-encrypt --drop-experts 1 --calib "$C"
refused drop-5.2 "outside \[0, 1)" "$T/e.dsm" convert "$TD/v2lite" "$T/e.dsm" --no-encrypt --drop-experts -0.1 --calib "$C"
refused drop-5.3 "made for another model" "$T/e.dsm" convert "$TD/v2lite" "$T/e.dsm" --no-encrypt --drop-experts 0.25 --calib "$T/v3.drop.json"
printf '{"format": "deepseek.h calibration 1", "config": {' >"$T/bad.json"
refused drop-5.4 "JSON line 1 column" "$T/e.dsm" convert "$TD/v2lite" "$T/e.dsm" --no-encrypt --drop-experts 0.25 --calib "$T/bad.json"
printf '{"format": "deepseek.h calibration 1", "config": {}, "layers": {}}' >"$T/bad2.json"
refused drop-5.5 "config.arch is missing" "$T/e.dsm" convert "$TD/v2lite" "$T/e.dsm" --no-encrypt --drop-experts 0.25 --calib "$T/bad2.json"
refused drop-5.6 "fewer than num_experts_per_tok" "$T/e.dsm" convert "$TD/v2lite" "$T/e.dsm" --no-encrypt --drop-experts 0.9 --calib "$C"
refused drop-5.7 "topk_group" "$T/e.dsm" convert "$TD/v3" "$T/e.dsm" --no-encrypt --drop-experts 0.5 --calib "$T/v3.drop.json"
run convert "$TD/v2lite" "$T/e.dsm" --no-encrypt --drop-experts 0.25
if [ "$rc" -eq 2 ] && [ ! -e "$T/e.dsm" ]; then ok drop-5.8; else bad drop-5.8 "--drop-experts without --calib: exit $rc"; fi

echo "RESULT test_drop_experts: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
