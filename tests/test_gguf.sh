#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# shellcheck disable=SC2086
# test_gguf.sh — `ds convert model.gguf` against `ds convert` of the
# checkpoint the GGUF was made from.
#
# The GGUF files are written by bench/hf_to_gguf_q8.py (the `gguf` Python
# package, llama.cpp's deepseek2 layout: kv_b split into attn_k_b and
# attn_v_b) from generated checkpoints: v2lite as F16, Q8_0 and Q4_0, v2
# (q-LoRA, group-limited routing) and yarn (YaRN, tied embeddings) as Q8_0,
# v2 as BF16 (stored as F16: the same as --quant f16 of its BF16 weights);
# moe16b (DeepSeek-MoE, architecture "deepseek") as Q8_0 and F16.
# Each converts to a container whose logits are bit-identical to those of
# `ds convert <checkpoint> --quant f16|q8|q4`, and the same config: the weights are copied as they
# are, and kv_b is joined back exactly (its k half is stored by the script as
# the F32 values of our Q8_0/Q4_0 blocks; re-encoding them gives the same
# blocks, since a block of dequantized values has its own scale again while
# the scales are normal F16 numbers, as here). Tokenization, generated text
# and the chat template must match too. Then the error paths: a truncated
# file, a bad magic, a tensor offset past the end, another architecture,
# an unsupported tensor type (Q4_K): each a clean failure (exit 1, a message
# naming the problem, no output file left).
#
# Needs a Python with numpy and gguf: $GGUF_PYTHON, else $BUILD/gguf-venv
# (`make gguf-venv`), build/gguf-venv, $PYTHON, python3, /usr/bin/python3.
# Without one the cases are reported as skipped, saying so.
#
#   sh tests/test_gguf.sh           (after make build/ds testdata)

set -u
BUILD=${BUILD:-build}
DS=${DS:-$BUILD/ds}
TD=${DS_TESTDATA:-$BUILD/testdata}
passed=0
failed=0
skipped=0
T=$(mktemp -d "${TMPDIR:-/tmp}/test_gguf.XXXXXX") || { echo "FAIL gguf-0: mktemp -d failed"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

ok() { passed=$((passed + 1)); echo "ok $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    if [ -s "$T/err" ]; then sed -e 's/^/    stderr: /' "$T/err" | head -n 5; fi
}
run() {
    "$DS" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
finish() {
    echo "RESULT test_gguf: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
    exit $?
}

# ==== A Python with gguf ====================================================
PY=""
for p in ${GGUF_PYTHON:-} "$BUILD/gguf-venv/bin/python" build/gguf-venv/bin/python ${PYTHON:-} python3 /usr/bin/python3; do
    if [ -n "$p" ] && "$p" -c 'import gguf, numpy' >/dev/null 2>&1; then PY=$p; break; fi
done
if [ ! -x "$DS" ] || [ ! -f "$TD/v2lite/config.json" ]; then
    skip gguf-all "needs $DS and $TD/v2lite (make build/ds testdata)"
    finish
fi
if [ -z "$PY" ]; then
    skip gguf-all "no Python with the gguf package (make gguf-venv, or GGUF_PYTHON=...); GGUF input NOT tested"
    finish
fi
echo "# gguf package from $PY"

head -c 32 /dev/urandom > "$T/key"
TOKS=0,5,100,200,300,497,12,33,400,1
# ==== 1. The same container as from the checkpoint ========================
# v2lite as F16, Q8_0 and Q4_0; v2 (q-LoRA, group-limited routing) and yarn
# (YaRN scaling, tied embeddings) as Q8_0; v2 as BF16; v2lite with kv_b whole;
# moe16b (llama.cpp's "deepseek": multi-head attention, q/k rows permuted) as
# Q8_0 and F16
for fq in v2lite:f16 v2lite:q8 v2lite:q4 v2:q8 yarn:q8 v2:bf16 v2lite:q8:whole moe16b:q8 moe16b:f16; do
    fam=${fq%%:*}
    q=${fq#*:}
    # "whole": attn_kv_b unsplit, per-head sizes in key/value_length (files
    # from before llama.cpp's MLA split)
    opt=""
    case $q in *:whole) q="${q%:whole}.whole"; opt=--kv-b-whole ;; esac
    [ "$fam" = v2lite ] || q="$q.$fam"
    qq=${q%%.*}
    # BF16 is kept as F16 (v2's weights are BF16 values: exact either way)
    ref=$qq
    [ "$qq" = bf16 ] && ref=f16
    if ! "$PY" bench/hf_to_gguf_q8.py "$TD/$fam" "$T/m-$q.gguf" --type $qq $opt >"$T/out" 2>"$T/err"; then
        bad gguf-1.$q.write "hf_to_gguf_q8.py $fam --type $qq failed"
        continue
    fi
    run convert "$T/m-$q.gguf" "$T/g-$q.dsm" --key-file "$T/key"
    [ "$rc" -eq 0 ] && ok gguf-1.$q.convert || { bad gguf-1.$q.convert "ds convert of the GGUF exited $rc"; continue; }
    run convert "$TD/$fam" "$T/h-$q.dsm" --key-file "$T/key" --quant $ref
    [ "$rc" -eq 0 ] || { bad gguf-1.$q.ref "ds convert of the checkpoint exited $rc"; continue; }
    run logits "$T/g-$q.dsm" --key-file "$T/key" --tokens $TOKS --out "$T/g-$q.bin"
    run logits "$T/h-$q.dsm" --key-file "$T/key" --tokens $TOKS --out "$T/h-$q.bin"
    if [ -s "$T/g-$q.bin" ] && cmp -s "$T/g-$q.bin" "$T/h-$q.bin"; then ok gguf-1.$q.logits
    else bad gguf-1.$q.logits "logits of the GGUF's container differ from the checkpoint's (--quant $q)"; fi
    # the tensor directory: same names, types, shapes (ds inspect, less the file's own lines)
    "$DS" inspect "$T/g-$q.dsm" --key-file "$T/key" 2>/dev/null | grep -E '^ *(model\.|lm_head)' > "$T/gi"
    "$DS" inspect "$T/h-$q.dsm" --key-file "$T/key" 2>/dev/null | grep -E '^ *(model\.|lm_head)' > "$T/hi"
    if [ -s "$T/gi" ] && cmp -s "$T/gi" "$T/hi"; then ok gguf-1.$q.tensors
    else bad gguf-1.$q.tensors "tensor directories differ: $(diff "$T/gi" "$T/hi" | head -n 3 | tr '\n' ' ')"; fi
    # the config, field by field, as the runtime reads it
    "$DS" inspect "$T/g-$q.dsm" --key-file "$T/key" 2>/dev/null | sed -n '/^config/,/^$/p' > "$T/gc"
    "$DS" inspect "$T/h-$q.dsm" --key-file "$T/key" 2>/dev/null | sed -n '/^config/,/^$/p' > "$T/hc"
    if [ "$(wc -l < "$T/gc")" -gt 20 ] && cmp -s "$T/gc" "$T/hc"; then ok gguf-1.$q.config
    else bad gguf-1.$q.config "configs differ: $(diff "$T/gc" "$T/hc" | head -n 3 | tr '\n' ' ')"; fi
done

# ==== 2. The tokenizer, generation and the chat template ===================
if [ -f "$T/g-q8.dsm" ] && [ -f "$T/h-q8.dsm" ]; then
    n=0
    for text in "Hello world, 123 4567 test" "日本語のテキスト カタカナ and ümlaut   spaces
new line" "<｜begin▁of▁sentence｜>hi<｜User｜>x<｜Assistant｜>y<｜end▁of▁sentence｜>"; do
        n=$((n + 1))
        a=$("$DS" tokenize "$T/g-q8.dsm" --key-file "$T/key" "$text" 2>&1)
        b=$("$DS" tokenize "$T/h-q8.dsm" --key-file "$T/key" "$text" 2>&1)
        if [ -n "$a" ] && [ "$a" = "$b" ]; then ok gguf-2.tok$n; else bad gguf-2.tok$n "token ids differ: '$a' vs '$b'"; fi
    done
    a=$("$DS" run "$T/g-q8.dsm" --key-file "$T/key" -p "The model" -n 12 --temp 0 2>/dev/null)
    b=$("$DS" run "$T/h-q8.dsm" --key-file "$T/key" -p "The model" -n 12 --temp 0 2>/dev/null)
    if [ -n "$b" ] && [ "$a" = "$b" ]; then ok gguf-2.run; else bad gguf-2.run "greedy text differs: '$a' vs '$b'"; fi
    a=$(printf 'Hi there\n' | "$DS" chat "$T/g-q8.dsm" --key-file "$T/key" -n 6 --temp 0 2>&1)
    b=$(printf 'Hi there\n' | "$DS" chat "$T/h-q8.dsm" --key-file "$T/key" -n 6 --temp 0 2>&1)
    if [ -n "$b" ] && [ "$a" = "$b" ]; then ok gguf-2.chat; else bad gguf-2.chat "chat output differs: '$a' vs '$b'"; fi
fi

# ==== 3. Error paths: clean failures, nothing left behind ==================
# expect_fail <id> <file> <pattern>: ds convert exits 1, says <pattern>, leaves no output
expect_fail() {
    rm -f "$T/bad.dsm"
    run convert "$2" "$T/bad.dsm" --no-encrypt
    if [ "$rc" -ne 1 ]; then bad "$1" "ds convert exited $rc, want 1"; return; fi
    if ! grep -q -e "$3" "$T/err"; then bad "$1" "the message does not say '$3'"; return; fi
    if ls "$T"/bad.dsm* >/dev/null 2>&1; then bad "$1" "an output file was left behind"; return; fi
    ok "$1"
}
if [ -f "$T/m-q8.gguf" ]; then
    size=$(wc -c < "$T/m-q8.gguf")
    head -c 1000 "$T/m-q8.gguf" > "$T/trunc-count.gguf"
    expect_fail gguf-3.truncated-count "$T/trunc-count.gguf" "44 tensors (byte 8) cannot fit in a 1000-byte file"
    head -c 8000 "$T/m-q8.gguf" > "$T/trunc-meta.gguf"
    expect_fail gguf-3.truncated-meta "$T/trunc-meta.gguf" "the file ends at 8000"
    head -c $((size - 100)) "$T/m-q8.gguf" > "$T/trunc-data.gguf"
    expect_fail gguf-3.truncated-data "$T/trunc-data.gguf" "run past the end"
    { printf 'GGUX'; tail -c +5 "$T/m-q8.gguf"; } > "$T/magic.gguf"
    expect_fail gguf-3.bad-magic "$T/magic.gguf" "not a GGUF file"
    # patch one tensor info: its offset past the end; its type F32 -> I32 (a
    # ggml type we do not read, of the same size)
    patch() {   # patch OUT TENSOR offset|type [SRC FROM TO]
        "$PY" - "${4:-$T/m-q8.gguf}" "$1" "$2" "$3" "${5:-0}" "${6:-26}" <<'PY'
import sys, gguf
src, dst, tname, what = sys.argv[1:5]
t_from, t_to = int(sys.argv[5]), int(sys.argv[6])
r = gguf.GGUFReader(src)
data = bytearray(open(src, "rb").read())
name = tname.encode()
at = data[:r.data_offset].rfind(len(name).to_bytes(8, "little") + name) + 8 + len(name)
n_dims = int.from_bytes(data[at:at + 4], "little")
type_at = at + 4 + 8 * n_dims
if what == "offset":
    data[type_at + 4:type_at + 12] = (1 << 40).to_bytes(8, "little")
else:
    assert int.from_bytes(data[type_at:type_at + 4], "little") == t_from
    data[type_at:type_at + 4] = t_to.to_bytes(4, "little")
open(dst, "wb").write(data)
PY
    }
    patch "$T/offset.gguf" output.weight offset && expect_fail gguf-3.offset "$T/offset.gguf" "run past the end"
    patch "$T/i32.gguf" output_norm.weight type &&
        expect_fail gguf-3.type "$T/i32.gguf" "output_norm.weight has ggml type I32"
fi
# ==== 4. Dequantizers of the types we re-quantize, against the gguf package's
for ty in Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K; do
    "$PY" - "$ty" "$T/dq" <<'PY' 2>"$T/err" || { bad gguf-4.$ty "could not write the $ty blocks"; continue; }
import sys, numpy as np, gguf
from gguf import quants
t = gguf.GGMLQuantizationType[sys.argv[1]]
bs, ts = gguf.GGML_QUANT_SIZES[t]
rng = np.random.default_rng(int(t))
raw = rng.integers(0, 256, size=(4, ts * (256 // bs)), dtype=np.uint8)
# every F16 field (scales, mins) a modest finite value: the f16 fields sit at
# fixed byte offsets of each block
blocks = raw.reshape(-1, ts)
f16_at = {"Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2),
          "Q5_K": (0, 2), "Q6_K": (208,)}[sys.argv[1]]
for off in f16_at:
    v = (rng.standard_normal(blocks.shape[0]) * 0.01).astype(np.float16).view(np.uint16)
    blocks[:, off] = v & 0xFF
    blocks[:, off + 1] = v >> 8
raw.tofile(sys.argv[2] + ".in")
quants.dequantize(raw, t).astype(np.float32).tofile(sys.argv[2] + ".ref")
PY
    tid=$("$PY" -c "import gguf; print(int(gguf.GGMLQuantizationType['$ty']))")
    "$BUILD/tests/test_gguf" --dequant "$tid" "$T/dq.in" "$T/dq.out"
    "$PY" - "$T/dq" <<'PY' >"$T/err" 2>&1 && ok gguf-4.$ty || bad gguf-4.$ty "differs from gguf.quants.dequantize"
import sys, numpy as np
ref = np.fromfile(sys.argv[1] + ".ref", np.float32)
got = np.fromfile(sys.argv[1] + ".out", np.float32)
assert got.size == ref.size == 1024, (got.size, ref.size)
err = np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30)
print("max relative error", err)
assert err <= 1e-6
PY
done

# ==== 5. A type we re-quantize, end to end: the F16 file with the experts'
# down projections of layer 1 read as Q5_1 (F16 weights reinterpreted as
# Q5_1 blocks: finite scales, any bits), kept (as Q8_0, with a warning)
# and as F32; the two models' logits agree to Q8_0's precision.
if [ -f "$T/m-f16.gguf" ] && patch "$T/q51.gguf" blk.1.ffn_down_exps.weight type "$T/m-f16.gguf" 1 7; then
    run convert "$T/q51.gguf" "$T/q51.dsm" --no-encrypt
    if [ "$rc" -eq 0 ] && grep -q "re-quantized to Q8_0" "$T/err"; then ok gguf-5.keep; else bad gguf-5.keep "exit $rc"; fi
    run convert "$T/q51.gguf" "$T/q51f.dsm" --no-encrypt --quant-experts f32
    [ "$rc" -eq 0 ] && ok gguf-5.f32 || bad gguf-5.f32 "exit $rc"
    "$DS" inspect "$T/q51.dsm" 2>/dev/null | grep -q "layers.1.mlp.experts.7.down_proj.weight *Q8_0" &&
        ok gguf-5.type || bad gguf-5.type "the expert is not stored as Q8_0"
    run logits "$T/q51.dsm" --tokens $TOKS --out "$T/q51.bin"
    run logits "$T/q51f.dsm" --tokens $TOKS --out "$T/q51f.bin"
    if "$PY" - "$T/q51.bin" "$T/q51f.bin" <<'PY' >"$T/err" 2>&1; then ok gguf-5.logits; else bad gguf-5.logits "logits too far apart"; fi
import sys, numpy as np
a = np.fromfile(sys.argv[1], np.float32); b = np.fromfile(sys.argv[2], np.float32)
assert a.size == b.size > 0 and np.all(np.isfinite(a))
err = np.max(np.abs(a - b)) / np.max(np.abs(b))
print("relative difference", err)
assert 0 < err < 0.02
PY
fi

# another architecture, written with the gguf package
"$PY" - "$T" <<'PY' 2>"$T/err" || bad gguf-3.write "could not write the error-case file"
import sys, numpy as np, gguf
w = gguf.GGUFWriter(sys.argv[1] + "/llama.gguf", "llama")
w.add_block_count(1)
w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PY
[ -f "$T/llama.gguf" ] && expect_fail gguf-3.arch "$T/llama.gguf" "architecture 'llama' is not supported"
finish
