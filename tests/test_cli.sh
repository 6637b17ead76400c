#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# shellcheck disable=SC2016,SC2012,SC2086
# test_cli.sh — end-to-end tests of the ds command-line tool (build/ds).
#
# Uses the checkpoints made by tests/gen/make_checkpoint.py --all in
# ${DS_TESTDATA:-$BUILD/testdata}: one Hugging Face directory per family.
# Prints "ok <id>" or "FAIL <id>: ..." per case and ends with
#     RESULT test_cli: N passed, N failed, N skipped
# (the closing line of tests/test.h); exits 1 when anything failed.
#
#   sh tests/test_cli.sh            (after make build/ds testdata)
#   DS=path/to/ds DS_TESTDATA=dir sh tests/test_cli.sh

set -u
BUILD=${BUILD:-build}
DS=${DS:-$BUILD/ds}
TD=${DS_TESTDATA:-$BUILD/testdata}
# numpy's Python for the references (make passes PYTHON; tools/find_python.sh
# finds one when run by hand: the python3 on PATH may lack numpy)
PY=${PYTHON:-$(sh "$(dirname "$0")/../tools/find_python.sh" 2>/dev/null || echo python3)}
FAMILIES="v2lite v2 v3 moe16b v2lite_sharded yarn"

passed=0
failed=0
skipped=0
T=$(mktemp -d "${TMPDIR:-/tmp}/test_cli.XXXXXX") || { echo "FAIL cli-0: mktemp -d failed"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

# ==== Harness ===============================================================

ok() { passed=$((passed + 1)); echo "ok $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
# bad <id> <what>: a failure, with the last command's stderr for context.
bad() {
    failed=$((failed + 1))
    echo "FAIL $1: $2"
    if [ -s "$T/err" ]; then sed -e 's/^/    stderr: /' "$T/err" | head -n 5; fi
}

# run <args...>: runs ds; stdout in $T/out, stderr in $T/err, status in $rc.
run() {
    "$DS" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

# expect <id> <status> <args...>: runs ds and checks its exit status.
# Returns 0 when it matched, so callers can chain further checks.
expect() {
    e_id=$1
    e_want=$2
    shift 2
    run "$@"
    if [ "$rc" -eq "$e_want" ]; then
        ok "$e_id"
        return 0
    fi
    bad "$e_id" "ds $* exited $rc, want $e_want"
    return 1
}

# check <id> <description> <shell test...>: a case that is a plain condition.
check() {
    c_id=$1
    c_what=$2
    shift 2
    if "$@"; then ok "$c_id"; else bad "$c_id" "$c_what"; fi
}

has() { grep -q -- "$2" "$1"; }       # has <file> <basic regex>
hasi() { grep -qi -- "$2" "$1"; }     # case-insensitive

file_mode() { stat -c %a "$1" 2>/dev/null || stat -f %Lp "$1"; }
file_size() { wc -c <"$1" | tr -d ' '; }

# flip <file> <offset>: xors one byte with 0x01 in place.
flip() {
    _b=$(dd if="$1" bs=1 skip="$2" count=1 2>/dev/null | od -An -tu1 | tr -d ' \n')
    [ -n "$_b" ] || return 1
    # shellcheck disable=SC2059
    printf "\\$(printf '%03o' $((_b ^ 1)))" | dd of="$1" bs=1 seek="$2" count=1 conv=notrunc 2>/dev/null
}

# only_file <dir> <name>: the directory holds exactly that one entry
# (the converter left no temporary file behind).
only_file() { [ "$(ls -A "$1")" = "$2" ]; }

# hf_dir <family>: the checkpoint directory of a family, or "" if absent.
hf_dir() {
    for _d in "$TD/$1" "$TD/$1/hf"; do
        if [ -f "$_d/config.json" ]; then echo "$_d"; return; fi
    done
    echo ""
}

# section <file> <title-prefix>: the lines of one table of `ds inspect`
# (after its title and column header, up to the blank line).
section() {
    awk -v t="$2" 'index($0, t) == 1 { on = 1; hdr = 1; next }
                   on && hdr { hdr = 0; next }
                   on && NF == 0 { exit }
                   on { print }' "$1"
}

if [ ! -x "$DS" ]; then
    echo "FAIL cli-0: $DS is not built (make $DS)"
    echo "RESULT test_cli: 0 passed, 1 failed, 0 skipped"
    exit 1
fi

# ==== 1. Usage, help, version ===============================================

expect usage-1.1 2
expect usage-1.2 2 frobnicate
expect usage-1.3 0 --help && check usage-1.3b "--help lists the commands" has "$T/out" "convert"
expect usage-1.4 0 --version && check usage-1.4b "--version prints a version" has "$T/out" "[0-9]\.[0-9]*\.[0-9]"
n=0
for c in convert keygen inspect verify; do
    n=$((n + 1))
    expect "usage-1.5.$n" 0 "$c" --help && check "usage-1.5.${n}b" "$c --help prints usage" has "$T/out" "usage: ds $c"
done
expect usage-1.6 2 --bogus

# ---- convert ----
expect usage-2.1 2 convert
expect usage-2.2 2 convert "$T/nope"
expect usage-2.3 2 convert "$T/nope" "$T/x.dsm" \
    && check usage-2.3b "missing sealing option is named" has "$T/err" "--no-encrypt"
expect usage-2.4 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --quant q3
expect usage-2.5 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --chunk-kb abc
expect usage-2.6 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --chunk-kb -64
expect usage-2.7 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --chunk-kb 64k
expect usage-2.8 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --chunk-kb ""
expect usage-2.9 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --chunk-kb 0
expect usage-2.10 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --chunk-kb 99999999999999999999999
expect usage-2.11 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --key-file "$T/k"
expect usage-2.12 2 convert "$T/nope" "$T/x.dsm" --key-file "$T/k" --passphrase-env PW
expect usage-2.13 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --frobnicate
expect usage-2.14 2 convert "$T/nope" "$T/x.dsm" "$T/y.dsm" --no-encrypt
expect usage-2.15 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --quant
expect usage-2.16 2 convert "$T/nope" "$T/x.dsm" --no-encrypt --quant f16 --quant q8
check usage-2.17 "usage errors created no output" test ! -e "$T/x.dsm"

# ---- keygen, inspect, verify ----
expect usage-3.1 2 keygen
expect usage-3.2 2 keygen "$T/a" "$T/b"
expect usage-3.3 2 keygen --force "$T/a"
expect usage-3.4 2 inspect
expect usage-3.5 2 inspect "$T/m.dsm" --no-encrypt
expect usage-3.6 2 inspect "$T/m.dsm" --bogus
expect usage-3.7 2 verify
expect usage-3.8 2 verify "$T/m.dsm" --threads -1
expect usage-3.9 2 verify "$T/m.dsm" --threads 2x
expect usage-3.10 2 verify "$T/m.dsm" --threads " 3"
expect usage-3.11 2 verify "$T/m.dsm" --threads
expect usage-3.12 2 verify "$T/m.dsm" --key-file "$T/k" --passphrase-env PW
expect usage-3.13 2 verify "$T/m.dsm" "$T/n.dsm"

# ---- failures that are not usage errors ----
expect fail-1.1 1 inspect "$T/does-not-exist.dsm" && check fail-1.1b "message names the command" has "$T/err" "^ds inspect: "
printf 'not a container at all, just some text padding it out to a decent size\n' >"$T/junk.dsm"
expect fail-1.2 1 inspect "$T/junk.dsm"
expect fail-1.3 1 verify "$T/junk.dsm"
expect fail-1.4 1 keygen "$T/no/such/dir/key"

# ==== 2. keygen =============================================================

K1=$T/k1.key
K2=$T/k2.key
expect keygen-1.1 0 keygen "$K1"
check keygen-1.2 "key file is 32 bytes" test "$(file_size "$K1" 2>/dev/null)" = 32
check keygen-1.3 "key file mode is 600, not $(file_mode "$K1")" test "$(file_mode "$K1")" = 600
cp "$K1" "$T/k1.bak"
if expect keygen-2.1 1 keygen "$K1"; then
    check keygen-2.2 "refusal says the file exists" hasi "$T/err" "exist"
fi
check keygen-2.3 "refused keygen left the key unchanged" cmp -s "$K1" "$T/k1.bak"
expect keygen-3.1 0 keygen "$K2"
check keygen-3.2 "two generated keys differ" sh -c '! cmp -s "$1" "$2"' sh "$K1" "$K2"

# ==== 3. convert, inspect, verify: per family and sealing ===================

PW_FAST="--argon-ops 1 --argon-mem-mb 8"
DS_TEST_PW='correct horse battery staple'
export DS_TEST_PW
DS_TEST_PW_WRONG='correct horse battery stapler'
export DS_TEST_PW_WRONG

# convert_case <id> <hf_dir> <name> <quant> <mode: key|pass|plain> [extra...]
# Converts into a fresh directory; on success sets $M to the output file.
convert_case() {
    _id=$1 _src=$2 _name=$3 _q=$4 _mode=$5
    shift 5
    _dir=$T/out_$_name
    mkdir -p "$_dir"
    M=$_dir/$_name.dsm
    case $_mode in
        key) set -- --key-file "$K1" "$@" ;;
        pass) set -- --passphrase-env DS_TEST_PW $PW_FAST "$@" ;;
        plain) set -- --no-encrypt "$@" ;;
    esac
    expect "$_id" 0 convert "$_src" "$M" --quant "$_q" "$@" || { M=""; return 1; }
    check "$_id.b" "convert printed no summary line" has "$T/out" "MB/s"
    check "$_id.c" "output directory holds only $_name.dsm: $(ls -A "$_dir" | tr '\n' ' ')" only_file "$_dir" "$_name.dsm"
    return 0
}

# key_args <mode>: the key options for inspect/verify.
key_args() {
    case $1 in
        key) echo "--key-file $K1" ;;
        pass) echo "--passphrase-env DS_TEST_PW" ;;
        plain) echo "" ;;
    esac
}

# inspect_verify <id> <hf_dir> <file> <quant> <mode>
inspect_verify() {
    _id=$1 _src=$2 _m=$3 _q=$4 _mode=$5
    _ka=$(key_args "$_mode")

    # ---- the public header, no key ----
    if expect "$_id.1" 0 inspect "$_m"; then
        check "$_id.1b" "header shows the format version" has "$T/out" "format version"
        case $_mode in
            plain) check "$_id.1c" "plaintext file shows cipher none" has "$T/out" "^cipher  *none"
                   check "$_id.1d" "plaintext file shows tensors without a key" has "$T/out" "^tensors (" ;;
            *) check "$_id.1c" "encrypted file shows its cipher" hasi "$T/out" "^cipher  *aes"
               check "$_id.1d" "no key: no tensor directory" sh -c '! grep -q "^tensors (" "$1"' sh "$T/out" ;;
        esac
        [ "$_mode" = pass ] && check "$_id.1e" "argon parameters shown" has "$T/out" "opslimit 1,"
    fi

    # ---- with the key: config, tensors, segments ----
    # shellcheck disable=SC2086
    if expect "$_id.2" 0 inspect "$_m" $_ka; then
        cp "$T/out" "$T/inspect.txt"
        _arch=$(awk '$1 == "architecture" { print $2 }' "$T/inspect.txt")
        check "$_id.2b" "architecture '$_arch' is the one in config.json" \
            sh -c '[ -n "$1" ] && grep -q "\"$1\"" "$2"' sh "$_arch" "$_src/config.json"
        _miss=""
        for w in "^tensors (" "^segments (" "expert segments" "dense bytes" "n_routed_experts" "merges" \
                 "chat template" "model.embed_tokens.weight"; do
            has "$T/inspect.txt" "$w" || _miss="$_miss '$w'"
        done
        check "$_id.2c" "inspect output lacks$_miss" test -z "$_miss"
        section "$T/inspect.txt" "tensors (" | awk '{ print $2 }' | sort -u >"$T/dtypes"
        case $_q in
            f32) check "$_id.2d" "f32 file has only f32 tensors: $(tr '\n' ' ' <"$T/dtypes")" \
                     sh -c '[ "$(tr A-Z a-z <"$1")" = f32 ]' sh "$T/dtypes" ;;
            f16) check "$_id.2d" "f16 file has f16 and no q8 tensors: $(tr '\n' ' ' <"$T/dtypes")" \
                     sh -c 'grep -qi f16 "$1" && ! grep -qi q8 "$1"' sh "$T/dtypes" ;;
            q8) check "$_id.2d" "q8 file has q8 tensors: $(tr '\n' ' ' <"$T/dtypes")" \
                     grep -qi q8 "$T/dtypes" ;;
        esac
        _nseg=$(section "$T/inspect.txt" "segments (" | wc -l | tr -d ' ')
        _nexp=$(section "$T/inspect.txt" "segments (" | awk '$(NF-4) == "expert"' | wc -l | tr -d ' ')
        check "$_id.2e" "segment table has dense and expert segments ($_nseg, $_nexp experts)" \
            test "$_nseg" -gt "$_nexp" -a "$_nexp" -gt 0
        # shellcheck disable=SC2086
        if command -v python3 >/dev/null 2>&1 && run inspect "$_m" $_ka --json; then
            check "$_id.2f" "inspect --json is valid JSON" python3 -m json.tool "$T/out" /dev/null
            check "$_id.2g" "inspect --json has no key twice in one object" python3 -c '
import json, sys
def once(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted(set(k for k in keys if keys.count(k) > 1))
    if dup: sys.exit("keys given twice: " + ", ".join(dup))
    return dict(pairs)
json.load(open(sys.argv[1]), object_pairs_hook=once)' "$T/out"
        fi
    fi

    # ---- verify ----
    # shellcheck disable=SC2086
    expect "$_id.3" 0 verify "$_m" $_ka --threads 2 &&
        check "$_id.3b" "verify prints its summary" has "$T/out" "^verified $_nseg segments, .* MB in .* s (.* GB/s)"
}

# ---- every family: sealed with the key file, q8 ----
for fam in $FAMILIES; do
    src=$(hf_dir "$fam")
    if [ -z "$src" ]; then
        skip "conv-$fam" "no checkpoint $TD/$fam (run make testdata)"
        continue
    fi
    convert_case "conv-$fam" "$src" "$fam-key-q8" q8 key --chunk-kb 16 &&
        inspect_verify "iv-$fam" "$src" "$M" q8 key
done

# ---- v2lite and v3: every quant with every sealing ----
for fam in v2lite v3; do
    src=$(hf_dir "$fam")
    [ -n "$src" ] || continue
    for q in f32 f16 q8; do
        for mode in key pass plain; do
            [ "$mode" = key ] && [ "$q" = q8 ] && continue   # done above
            convert_case "conv-$fam-$q-$mode" "$src" "$fam-$mode-$q" "$q" "$mode" &&
                inspect_verify "iv-$fam-$q-$mode" "$src" "$M" "$q" "$mode"
        done
    done
done

# ==== 4. Damage and wrong keys ==============================================

src=$(hf_dir v2lite)
SEALED=$T/out_v2lite-key-q8/v2lite-key-q8.dsm
PLAIN=$T/out_v2lite-plain-f16/v2lite-plain-f16.dsm
PASSF=$T/out_v2lite-pass-q8/v2lite-pass-q8.dsm

# tamper <id> <file> [key args...]: flips one byte in the middle of the middle
# segment of a copy; verify must fail and name a segment.
tamper() {
    _id=$1 _m=$2
    shift 2
    if [ ! -f "$_m" ]; then
        skip "$_id" "no converted $_m"
        return
    fi
    run inspect "$_m" "$@"
    section "$T/out" "segments (" >"$T/segs"
    _n=$(wc -l <"$T/segs" | tr -d ' ')
    _line=$(sed -n "$((_n / 2 + 1))p" "$T/segs")
    _off=$(echo "$_line" | awk '{ print $(NF-3) + int($(NF-1) / 2) }')
    _name=$(echo "$_line" | awk '{ s = $2; for (i = 3; i <= NF - 5; i++) s = s " " $i; print s }')
    cp "$_m" "$T/tampered.dsm"
    if [ -z "$_off" ] || ! flip "$T/tampered.dsm" "$_off"; then
        bad "$_id" "could not find a segment to damage in the inspect output"
        return
    fi
    if expect "$_id" 1 verify "$T/tampered.dsm" "$@"; then
        check "$_id.b" "message names a segment (damaged '$_name')" \
            grep -qiE "segment|layer|embeddings|output" "$T/err"
    fi
    # the header of the damaged file is intact, so inspect still works
    expect "$_id.c" 0 inspect "$T/tampered.dsm" "$@"
    rm -f "$T/tampered.dsm"
}
tamper tamper-1 "$SEALED" --key-file "$K1"
tamper tamper-2 "$PLAIN"

# A damaged public header or metadata is caught on open.
if [ -f "$SEALED" ]; then
    cp "$SEALED" "$T/hdr.dsm"
    flip "$T/hdr.dsm" 40
    expect tamper-3 1 inspect "$T/hdr.dsm"
    cp "$SEALED" "$T/meta.dsm"
    run inspect "$SEALED"
    moff=$(awk '$1 == "metadata" { gsub(",", "", $3); print $3 + int($4 / 2) }' "$T/out")
    if [ -n "$moff" ] && flip "$T/meta.dsm" "$moff"; then
        expect tamper-4 1 inspect "$T/meta.dsm" --key-file "$K1"
    else
        bad tamper-4 "no metadata offset in the inspect output"
    fi
    rm -f "$T/hdr.dsm" "$T/meta.dsm"

    # ---- wrong and missing keys ----
    expect key-1.1 1 inspect "$SEALED" --key-file "$K2" &&
        check key-1.1b "wrong key is called a key problem" hasi "$T/err" "key"
    expect key-1.2 1 verify "$SEALED" --key-file "$K2" &&
        check key-1.2b "wrong key is called a key problem" hasi "$T/err" "key"
    expect key-1.3 1 verify "$SEALED" &&
        check key-1.3b "missing key is called a key problem" hasi "$T/err" "key"
    printf 'short' >"$T/short.key"
    expect key-1.4 1 verify "$SEALED" --key-file "$T/short.key"
    expect key-1.5 1 verify "$SEALED" --key-file "$T/no-such.key"
    expect key-1.6 1 verify "$SEALED" --passphrase-env DS_TEST_PW_UNSET_VARIABLE
fi
if [ -f "$PASSF" ]; then
    expect key-2.1 1 verify "$PASSF" --passphrase-env DS_TEST_PW_WRONG &&
        check key-2.1b "wrong passphrase is called a key problem" grep -qiE "key|passphrase" "$T/err"
    expect key-2.2 1 verify "$PASSF" --key-file "$K1"
fi

# ==== 5. A checkpoint the converter must refuse =============================

if [ -n "$src" ]; then
    mkdir -p "$T/bogus" "$T/out_bogus"
    cp -R "$src/." "$T/bogus/"
    sed -e 's/Deepseek[A-Za-z0-9]*ForCausalLM/BogusNetForCausalLM/g' \
        -e 's/"model_type"[ ]*:[ ]*"[^"]*"/"model_type": "bogus_net"/' \
        "$src/config.json" >"$T/bogus/config.json"
    if expect bogus-1 1 convert "$T/bogus" "$T/out_bogus/b.dsm" --no-encrypt; then
        check bogus-1b "error names the architecture problem" grep -qiE "arch|bogus" "$T/err"
    fi
    check bogus-1c "nothing left behind: $(ls -A "$T/out_bogus" | tr '\n' ' ')" \
        test -z "$(ls -A "$T/out_bogus")"
    expect bogus-2 1 convert "$T/does-not-exist" "$T/out_bogus/c.dsm" --no-encrypt
    check bogus-2b "nothing left behind" test -z "$(ls -A "$T/out_bogus")"
    # the passphrase variable must exist
    expect bogus-3 1 convert "$src" "$T/out_bogus/d.dsm" --passphrase-env DS_TEST_PW_UNSET_VARIABLE
    check bogus-3b "nothing left behind" test -z "$(ls -A "$T/out_bogus")"
else
    skip bogus-1 "no v2lite checkpoint"
fi

# ==== 6. Inference: tokenize, logits, run, chat =============================

# bpe_ref <tokenizer.json> <text>: token ids of TEXT by an independent
# byte-level BPE written here with json only (text of ASCII letters and
# single spaces, so the pre-tokenizer just splits before each space).
bpe_ref() {
    python3 - "$1" "$2" <<'PY'
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8"))
vocab, merges = t["model"]["vocab"], t["model"]["merges"]
rank = {}
for i, m in enumerate(merges):
    a, b = m.split(" ") if isinstance(m, str) else m
    rank.setdefault((a, b), i)
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
bmap = dict(zip(bs, map(chr, cs)))
def bpe(word):
    parts = [bmap[b] for b in word.encode("utf-8")]
    while len(parts) > 1:
        best = min((rank.get((parts[i], parts[i + 1]), 1 << 60), i) for i in range(len(parts) - 1))
        if best[0] == 1 << 60:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [vocab[p] for p in parts]
ids = []
for k, w in enumerate(sys.argv[2].split(" ")):
    ids += bpe(w if k == 0 else " " + w)
print(" ".join(map(str, ids)))
PY
}

# config_int <config.json> <key>
config_int() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# stat_field <file> <prompt|generated>: N from the stats line.
stat_field() { sed -n "s/.*$2: \([0-9]*\) tokens.*/\1/p" "$1" | tail -n 1; }

STATS_RE='^prompt: [0-9][0-9]* tokens, [0-9.]* tok/s; generated: [0-9][0-9]* tokens, [0-9.]* tok/s$'

n=0
for c in run chat tokenize logits; do
    n=$((n + 1))
    expect "usage-4.$n" 0 "$c" --help && check "usage-4.${n}b" "$c --help prints usage" has "$T/out" "usage: ds $c"
done
expect usage-4.5 2 run "$T/m.dsm"                                  # no -p
expect usage-4.6 2 run "$T/m.dsm" -p hi --top-p 0 &&
    check usage-4.6b "the bad parameter is named" has "$T/err" "top_p"
expect usage-4.7 2 run "$T/m.dsm" -p hi --top-p 1.5
expect usage-4.8 2 run "$T/m.dsm" -p hi --temp -1
expect usage-4.9 2 run "$T/m.dsm" -p hi --temp abc
expect usage-4.10 2 run "$T/m.dsm" -p hi --min-p 1
expect usage-4.11 2 run "$T/m.dsm" -p hi --repeat-penalty 0
expect usage-4.12 2 run "$T/m.dsm" -p hi --top-k -3
expect usage-4.13 2 run "$T/m.dsm" -p hi -n -2                     # -1 is "no limit"
expect usage-4.14 2 run "$T/m.dsm" -p hi --ctx 0
expect usage-4.15 2 run "$T/m.dsm" -p hi --seed 1x
expect usage-4.16 2 run "$T/m.dsm" -p hi -p again
expect usage-4.17 2 tokenize "$T/m.dsm"                            # no TEXT
expect usage-4.18 2 tokenize "$T/m.dsm" a b
expect usage-4.19 2 logits "$T/m.dsm" --out "$T/x.bin"             # no --tokens
expect usage-4.20 2 logits "$T/m.dsm" --tokens 1,2                  # no --out
k=0
for bad_list in "1,,2" "1," ",1" "-1" "a" "1 2" "" "1,2x" "99999999999"; do
    k=$((k + 1))
    expect "usage-4.21.$k" 2 logits "$T/m.dsm" --tokens "$bad_list" --out "$T/x.bin"
done
expect usage-4.22 2 chat "$T/m.dsm" --bogus
check usage-4.23 "usage errors created no output" test ! -e "$T/x.bin"

src=$(hf_dir v2lite)
if [ -z "$src" ] || ! command -v python3 >/dev/null 2>&1; then
    skip infer "no v2lite checkpoint or no python3"
else
    mkdir -p "$T/inf"
    IM=$T/inf/m.dsm
    VOCAB=$(config_int "$src/config.json" vocab_size)
    BOS=$(config_int "$src/config.json" bos_token_id)
    expect infer-0 0 convert "$src" "$IM" --no-encrypt --quant f32

    # ---- tokenize ----
    k=0
    for text in "hello world" "The experts of the token" "selfke perts"; do
        k=$((k + 1))
        want=$(bpe_ref "$src/tokenizer.json" "$text")
        if expect "tok-1.$k" 0 tokenize "$IM" "$text"; then
            check "tok-1.${k}b" "'$text': ids '$(cat "$T/out")', reference '$want'" test "$(cat "$T/out")" = "$want"
        fi
    done
    NHW=$(bpe_ref "$src/tokenizer.json" "hello world" | wc -w | tr -d ' ')
    want=$(bpe_ref "$src/tokenizer.json" "hello")
    expect tok-2 0 tokenize "$IM" --bos hello &&
        check tok-2b "--bos: '$(cat "$T/out")', want '$BOS $want'" test "$(cat "$T/out")" = "$BOS $want"
    expect tok-3 0 tokenize "$IM" "" && check tok-3b "empty text gives an empty line" test "$(cat "$T/out")" = ""
    if [ -f "$SEALED" ]; then
        expect tok-4 1 tokenize "$SEALED" hello &&
            check tok-4b "missing key is called a key problem" hasi "$T/err" "key"
        expect tok-5 0 tokenize "$SEALED" --key-file "$K1" hello &&
            check tok-5b "sealed file tokenizes the same" test "$(cat "$T/out")" = "$want"
    fi

    # ---- logits ----
    LF=$T/inf/logits.bin
    if expect logits-1 0 logits "$IM" --tokens "$BOS,5,7,42" --out "$LF"; then
        check logits-1b "size $(file_size "$LF"), want 4 x $VOCAB x 4" test "$(file_size "$LF")" -eq $((4 * VOCAB * 4))
        check logits-1c "logits are finite and not all equal" python3 -c '
import math, struct, sys
d = open(sys.argv[1], "rb").read()
v = struct.unpack("<%df" % (len(d) // 4), d)
sys.exit(0 if all(math.isfinite(x) for x in v) and max(v) > min(v) else 1)' "$LF"
        check logits-1d "only logits.bin and m.dsm in the directory: $(ls -A "$T/inf" | tr '\n' ' ')" \
            test "$(ls -A "$T/inf" | tr '\n' ' ')" = "logits.bin m.dsm "
        # causal: the rows of a prefix do not depend on what follows
        if expect logits-2 0 logits "$IM" --tokens "$BOS,5" --out "$T/inf/prefix.bin"; then
            check logits-2b "prefix rows match the first rows of the longer run" python3 -c '
import struct, sys
a = open(sys.argv[1], "rb").read(); b = open(sys.argv[2], "rb").read()
x = struct.unpack("<%df" % (len(a) // 4), a); y = struct.unpack("<%df" % (len(a) // 4), b[:len(a)])
sys.exit(0 if max(abs(p - q) for p, q in zip(x, y)) <= 1e-4 * max(1.0, max(map(abs, x))) else 1)' \
                "$T/inf/prefix.bin" "$LF"
            rm -f "$T/inf/prefix.bin"
        fi
    fi
    expect logits-3 1 logits "$IM" --tokens "$BOS,$VOCAB" --out "$T/inf/oob.bin" &&
        check logits-3b "message names the id" has "$T/err" "$VOCAB"
    check logits-3c "failed run left no file: $(ls -A "$T/inf" | tr '\n' ' ')" test ! -e "$T/inf/oob.bin" -a \
        "$(ls -A "$T/inf" | wc -l | tr -d ' ')" = 2

    # ---- run ----
    if expect run-1 0 run "$IM" -p "hello world" -n 8 --temp 0; then
        cp "$T/out" "$T/run1.txt"
        check run-1b "stats line on stderr: $(tail -n 1 "$T/err")" grep -q "$STATS_RE" "$T/err"
        g=$(stat_field "$T/err" generated)
        check run-1c "generated $g tokens, want 1..8" test -n "$g" -a "${g:-0}" -le 8
        check run-1d "prompt of $(stat_field "$T/err" prompt) tokens, want BOS + $NHW" \
            test "$(stat_field "$T/err" prompt)" = $((NHW + 1))
        expect run-2 0 run "$IM" -p "hello world" -n 8 --temp 0 &&
            check run-2b "greedy twice gives the same text" cmp -s "$T/out" "$T/run1.txt"
        expect run-3 0 run "$IM" -p "hello world" -n 8 --temp 0 --threads 1 &&
            check run-3b "one thread gives the same greedy text" cmp -s "$T/out" "$T/run1.txt"
    fi
    if expect run-4 0 run "$IM" -p "hello" -n 16 --temp 1.0 --top-k 40 --top-p 0.9 --seed 7; then
        cp "$T/out" "$T/run4.txt"
        expect run-4b 0 run "$IM" -p "hello" -n 16 --temp 1.0 --top-k 40 --top-p 0.9 --seed 7 &&
            check run-4c "the same seed gives the same text" cmp -s "$T/out" "$T/run4.txt"
    fi
    expect run-5 0 run "$IM" -p "hello" -n 0 &&
        check run-5b "-n 0 generates nothing" test "$(stat_field "$T/err" generated)" = 0
    expect run-6 1 run "$IM" -p "the experts of the token and the experts of the token" --ctx 4 &&
        check run-6b "clear message: $(head -n 1 "$T/err")" has "$T/err" "prompt of [0-9]* tokens exceeds the context of 4"
    # a context just big enough for the prompt still generates a token
    expect run-7 0 run "$IM" -p "hello world" --ctx $((NHW + 1)) -n 5 --temp 0 &&
        check run-7b "a full context stops generation" test "$(stat_field "$T/err" generated)" -le 1
    expect run-8 0 run "$IM" -p "hello" -n 8 --temp 0.7 --min-p 0.1 --repeat-penalty 1.3 --repeat-last-n 16 \
        --frequency-penalty 0.2 --presence-penalty 0.1 --seed 1
    if [ -f "$SEALED" ]; then
        expect run-9 1 run "$SEALED" -p hello -n 4 &&
            check run-9b "missing key is called a key problem" hasi "$T/err" "key"
        expect run-10 0 run "$SEALED" --key-file "$K1" -p hello -n 4 --temp 0 --cache-mb 1 &&
            cp "$T/out" "$T/out-lfu"
        # the other eviction policy pages differently but generates the same tokens
        expect run-10c 0 run "$SEALED" --key-file "$K1" -p hello -n 4 --temp 0 --cache-mb 1 --evict lru &&
            check run-10d "--evict lru gives the tokens of the default (lfu)" cmp -s "$T/out" "$T/out-lfu"
        expect run-10e 2 run "$SEALED" --key-file "$K1" -p hello -n 4 --cache-mb 1 --evict mru &&
            check run-10f "a bad --evict is named" has "$T/err" "lru or lfu"
        # each prefetch mode decrypts at other times but generates the same tokens
        for pf in off always; do
            expect "run-10g.$pf" 0 run "$SEALED" --key-file "$K1" -p hello -n 4 --temp 0 --cache-mb 1 --prefetch $pf &&
                check "run-10h.$pf" "--prefetch $pf gives the tokens of the default (auto)" cmp -s "$T/out" "$T/out-lfu"
        done
        expect run-10i 2 run "$SEALED" --key-file "$K1" -p hello -n 4 --cache-mb 1 --prefetch sometimes &&
            check run-10j "a bad --prefetch is named" has "$T/err" "auto, always or off"
        # ds bench: one budget, then a sweep (each run in a process of its own)
        expect bench-1 0 bench "$SEALED" --key-file "$K1" --cache-mb 1 --prompt-tokens 4 --gen-tokens 4 --threads 1 &&
            check bench-1b "ds bench prints the decode speed and the pager's figures, prefetch auto" \
                sh -c "grep -q '^decode .*tok/s' '$T/out' && grep -q '^decode pager .*in memory [0-9]' '$T/out' &&
                       grep -q 'prefetch auto' '$T/out'"
        expect bench-2 0 bench "$SEALED" --key-file "$K1" --sweep 100,50 --prompt-tokens 4 --gen-tokens 4 --threads 1 \
            --prefetch always --out "$T/sweep" &&
            check bench-2b "a sweep.csv row per budget and prefetch setting (always, off)" \
                test "$(cut -d, -f1,3 "$T/sweep/sweep.csv" | sort | tr '\n' ' ')" = "100,0 100,2 50,0 50,2 budget_pct,prefetch " &&
            check bench-2c "every run of the sweep generates the same tokens" has "$T/out" "generated tokens identical"
        expect bench-3 2 bench "$SEALED" --key-file "$K1" --prefetch sometimes &&
            check bench-3b "a bad --prefetch is named" has "$T/err" "auto, always or off"
        expect bench-4 2 bench "$SEALED" --key-file "$K1" --prefetch off --no-prefetch &&
            check bench-4b "--prefetch and --no-prefetch together are refused" has "$T/err" "exclude each other"

        # ---- the model file truncated under a running paged model ----
        # ds run reads the prompt from a FIFO once the model is open (dense
        # weights in memory, experts paged on demand): the writer's open of
        # the FIFO returns then, the file is truncated to its header, and the
        # prompt written; the first expert read finds the file short. Exit 1
        # with the file and segment named, not death by SIGBUS (exit 135).
        cp "$SEALED" "$T/trunc.dsm"
        mkfifo "$T/prompt.fifo"
        "$DS" run "$T/trunc.dsm" --key-file "$K1" -f "$T/prompt.fifo" -n 4 --temp 0 --cache-mb 1 >"$T/out" 2>"$T/err" &
        rp=$!
        ( exec 3>"$T/prompt.fifo" && truncate -s 4096 "$T/trunc.dsm" && echo hello >&3 ) 2>/dev/null &
        wp=$!
        wait $rp
        rc=$?
        kill $wp 2>/dev/null    # still waiting to open the FIFO only if ds run died before reading it
        wait $wp 2>/dev/null
        check run-15 "ds run on a file truncated after the open exited $rc, want 1 (135 = SIGBUS)" test "$rc" -eq 1
        check run-15b "the message names the file, the segment and the truncation: $(tail -n 1 "$T/err")" \
            sh -c "grep -q 'trunc.dsm' '$T/err' && grep -q 'segment [0-9]* (layer [0-9]* expert [0-9]*)' '$T/err' &&
                   grep -q 'truncated' '$T/err'"
        printf 'hello' >"$T/prompt.txt"
        expect run-15c 0 run "$SEALED" --key-file "$K1" -f "$T/prompt.txt" -n 4 --temp 0 --cache-mb 1 &&
            check run-15d "-f FILE gives the text of -p" cmp -s "$T/out" "$T/out-lfu"
        expect run-15g 0 run "$SEALED" --key-file "$K1" -f - -n 4 --temp 0 --cache-mb 1 <"$T/prompt.txt" &&
            check run-15h "-f - (stdin) gives the text of -p" cmp -s "$T/out" "$T/out-lfu"
        expect run-15e 2 run "$SEALED" --key-file "$K1" -p hello -f - -n 4 &&
            check run-15f "-p and -f together are refused" has "$T/err" "use one"

        # ---- --mlock: what was locked is said (-v); with `ulimit -l 0` (and
        # CAP_IPC_LOCK out of the bounding set, for root) the run still works
        # and a warning says how many bytes the OS refused and why ----
        expect mlock-1 0 run "$SEALED" --key-file "$K1" -p hello -n 4 --temp 0 --cache-mb 1 --mlock -v &&
            check mlock-1b "the locked bytes are reported: $(grep mlock "$T/err" | head -n 1)" \
                has "$T/err" "mlock: [0-9]* bytes locked" &&
            check mlock-1c "--mlock gives the same text" cmp -s "$T/out" "$T/out-lfu"
        LIMIT=""
        if [ "$(id -u)" != 0 ]; then LIMIT="sh -c"
        elif command -v capsh >/dev/null 2>&1; then LIMIT="capsh --drop=cap_ipc_lock -- -c"; fi
        if nm "$DS" 2>/dev/null | grep -q __asan_init; then
            skip mlock-2 "an AddressSanitizer build: its mlock does nothing, so nothing is refused"
        elif [ -n "$LIMIT" ]; then
            $LIMIT 'ulimit -l 0 && exec "$0" "$@"' "$DS" run "$SEALED" --key-file "$K1" -p hello -n 4 --temp 0 \
                --cache-mb 1 --mlock >"$T/out" 2>"$T/err"
            rc=$?
            check mlock-2 "ds run --mlock under ulimit -l 0 exited $rc, want 0" test "$rc" -eq 0
            check mlock-2b "a warning says what could not be locked: $(grep mlock "$T/err" | head -n 1)" \
                has "$T/err" "warning: mlock: [0-9]* of [0-9]* bytes could not be locked.*RLIMIT_MEMLOCK"
        else
            skip mlock-2 "root without capsh: cannot take CAP_IPC_LOCK away to see a refusal"
        fi
        # ---- --no-huge-pages: the weights and the cache in 4 KiB pages give the same text ----
        expect huge-1 0 run "$SEALED" --key-file "$K1" -p hello -n 4 --temp 0 --cache-mb 1 --no-huge-pages &&
            check huge-1b "--no-huge-pages gives the same text" cmp -s "$T/out" "$T/out-lfu"
    fi
    # ---- device selection ----
    expect run-11 2 run "$IM" -p hello -n 2 --device gpu && check run-11b "a bad device is named" has "$T/err" "cpu or cuda"
    expect run-12 2 run "$IM" -p hello -n 2 --gpu-cache-mb 64 &&
        check run-12b "--gpu-cache-mb without --device cuda is refused" has "$T/err" "need --device cuda"
    expect run-13 2 run "$IM" -p hello -n 2 --device cuda --gpu-cache-mb lots
    # asked for CUDA: on the GPU where there is one, else on the CPU with a warning
    expect run-14 0 run "$IM" -p hello -n 4 --temp 0 --device cuda -v &&
        if grep -q "running on the CPU" "$T/err"; then ok run-14b; else
            check run-14b "no fallback warning, so a device was used" has "$T/err" "cuda:"; fi

    # ---- chat ----
    "$DS" chat "$IM" -n 6 --temp 0 --stats >"$T/out" 2>"$T/err" <<'IN'
hello there

how are you
IN
    rc=$?
    check chat-1 "chat exited $rc, want 0" test "$rc" -eq 0
    check chat-1b "two replies, two stats lines: $(grep -c "$STATS_RE" "$T/err")" \
        test "$(grep -c "$STATS_RE" "$T/err")" = 2
    p1=$(sed -n 1p "$T/err" | sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p')
    p2=$(sed -n 2p "$T/err" | sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p')
    check chat-1c "the second turn sees the first ($p1 then $p2 prompt tokens)" test "${p2:-0}" -gt "${p1:-0}"
    "$DS" chat "$IM" -n 4 --temp 0 --stats --system "Be brief." >"$T/out" 2>"$T/err" <<'IN'
first
/reset
first
/exit
never read
IN
    rc=$?
    check chat-2 "chat with /reset, /exit exited $rc, want 0" test "$rc" -eq 0
    check chat-2b "/exit stops reading: $(grep -c "$STATS_RE" "$T/err") replies" \
        test "$(grep -c "$STATS_RE" "$T/err")" = 2
    p1=$(grep "$STATS_RE" "$T/err" | sed -n 1p | sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p')
    p2=$(grep "$STATS_RE" "$T/err" | sed -n 2p | sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p')
    check chat-2c "/reset forgets the conversation ($p1 and $p2 prompt tokens)" test -n "$p1" -a "$p1" = "$p2"
    printf 'a long message that cannot fit\n' | "$DS" chat "$IM" --ctx 4 >"$T/out" 2>"$T/err"
    rc=$?
    check chat-3 "an oversize turn is reported and chat goes on to exit 0 (rc $rc)" test "$rc" -eq 0
    check chat-3b "the oversize turn is named" has "$T/err" "exceeds the context"
    : | "$DS" chat "$IM" >"$T/out" 2>"$T/err"
    rc=$?
    check chat-4 "empty input: exit $rc, want 0" test "$rc" -eq 0
    # a line holding the end-of-sentence token's text is text (several
    # tokens: the pre-tokenizer splits it), not the one EOS id that would end
    # the user's turn; --special-in-content gives the old behaviour
    eos_txt='<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>'
    printf 'x\n' | "$DS" chat "$IM" -n 1 --temp 0 --stats >"$T/out" 2>"$T/err"
    p0=$(stat_field "$T/err" prompt)
    # shellcheck disable=SC2059
    printf "x$eos_txt\\n" | "$DS" chat "$IM" -n 1 --temp 0 --stats >"$T/out" 2>"$T/err"
    p1=$(stat_field "$T/err" prompt)
    # shellcheck disable=SC2059
    printf "x$eos_txt\\n" | "$DS" chat "$IM" -n 1 --temp 0 --stats --special-in-content >"$T/out" 2>"$T/err"
    p2=$(stat_field "$T/err" prompt)
    check chat-5 "EOS text in a message: $p1 prompt tokens, $p0 without it (one more: the EOS token)" \
        test -n "$p0" -a "${p1:-0}" -gt $((${p0:-0} + 1))
    check chat-5b "--special-in-content: $p2 prompt tokens, want $p0 + 1" test -n "$p0" -a "${p2:-0}" -eq $((${p0:-0} + 1))
fi

# ==== 7. Plaintext where a key is given, existing outputs, odd paths ========

SERVER=${DS_SERVER:-$BUILD/ds-server}
# run_t <args...>: as run, under `timeout 10` so that a hang fails (status
# 124) instead of blocking the suite.
run_t() {
    timeout 10 "$DS" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

# ---- a plaintext file is refused where a key is given ----
if [ -f "$PLAIN" ] && [ -f "$SEALED" ]; then
    expect plain-1 1 run "$PLAIN" --key-file "$K1" -p hello -n 2 &&
        check plain-1b "the refusal says the file is not encrypted and names --allow-plaintext" \
            sh -c 'grep -q "not encrypted" "$1" && grep -q -- "--allow-plaintext" "$1"' sh "$T/err"
    expect plain-2 0 run "$PLAIN" --key-file "$K1" --allow-plaintext -p hello -n 2
    expect plain-3 0 run "$PLAIN" -p hello -n 2                        # no key: --no-encrypt's use
    expect plain-4 1 verify "$PLAIN" --key-file "$K1" && check plain-4b "named" has "$T/err" "not encrypted"
    expect plain-5 0 verify "$PLAIN" --key-file "$K1" --allow-plaintext
    expect plain-6 1 inspect "$PLAIN" --key-file "$K1" && check plain-6b "named" has "$T/err" "not encrypted"
    expect plain-7 0 inspect "$PLAIN" --key-file "$K1" --allow-plaintext
    expect plain-8 1 tokenize "$PLAIN" --key-file "$K1" hello
    printf 'hi\n' | "$DS" chat "$PLAIN" --key-file "$K1" -n 2 >"$T/out" 2>"$T/err"
    rc=$?
    check plain-9 "chat on a plaintext file with a key exited $rc, want 1" test "$rc" -eq 1
    # allow_plaintext does not open an encrypted file without its key
    expect plain-10 1 run "$SEALED" --key-file "$K2" --allow-plaintext -p hello -n 2
    if [ -x "$SERVER" ]; then
        # the server refuses plaintext by default, key or not; it exits
        # before listening
        timeout 20 "$SERVER" --model "$PLAIN" --port 0 >"$T/out" 2>"$T/err"
        rc=$?
        check plain-11 "ds-server on a plaintext model without a key exited $rc, want 2" test "$rc" -eq 2
        check plain-11b "the refusal names --allow-plaintext" has "$T/err" "allow-plaintext"
        timeout 20 "$SERVER" --model "$PLAIN" --key-file "$K1" --port 0 >"$T/out" 2>"$T/err"
        rc=$?
        check plain-12 "ds-server on a plaintext model with a key exited $rc, want 1" test "$rc" -eq 1
        check plain-12b "the refusal says the model is not encrypted" has "$T/err" "not encrypted"
    else
        skip plain-11 "no $SERVER (make $SERVER)"
    fi
    # verify and inspect say what was checked of the header
    expect hdr-1 0 verify "$SEALED" --key-file "$K1" && check hdr-1b "verify reports the header" \
        has "$T/out" "^header authenticated with the key"
    expect hdr-2 0 inspect "$SEALED" --key-file "$K1" && check hdr-2b "inspect reports the header" \
        has "$T/out" "^header  *authenticated with the key"
else
    skip plain-1 "no converted $PLAIN or $SEALED"
fi

# ---- convert: existing outputs and the inputs themselves ----
if [ -n "$src" ] && [ -f "$SEALED" ]; then
    mkdir -p "$T/ow"
    printf 'precious\n' >"$T/ow/m.dsm"
    cp "$T/ow/m.dsm" "$T/ow.bak"
    expect force-1 1 convert "$src" "$T/ow/m.dsm" --key-file "$K1" &&
        check force-1b "the refusal names --force" has "$T/err" "--force"
    check force-1c "the existing file is untouched and no temporary left" \
        sh -c 'cmp -s "$1" "$2" && [ "$(ls -A "$3")" = m.dsm ]' sh "$T/ow/m.dsm" "$T/ow.bak" "$T/ow"
    expect force-2 0 convert "$src" "$T/ow/m.dsm" --key-file "$K1" --force &&
        expect force-2b 0 verify "$T/ow/m.dsm" --key-file "$K1"
    check force-2c "only m.dsm in the directory: $(ls -A "$T/ow" | tr '\n' ' ')" only_file "$T/ow" m.dsm
    mkdir -p "$T/ck"
    cp -R "$src/." "$T/ck/"
    cp "$T/ck/model.safetensors" "$T/shard.bak"
    ln "$T/ck/model.safetensors" "$T/ck-hard.dsm"
    ln -s "$T/ck/model.safetensors" "$T/ck-soft.dsm"
    k=0
    for out in "$T/ck/model.safetensors" "$T/ck-hard.dsm" "$T/ck-soft.dsm" "$T/ck/config.json"; do
        k=$((k + 1))
        expect "force-3.$k" 1 convert "$T/ck" "$out" --key-file "$K1" --force &&
            check "force-3.${k}b" "the refusal says the output is an input" has "$T/err" "is the input"
    done
    check force-4 "the checkpoint is intact, the symbolic link still a link, no temporary left" \
        sh -c 'cmp -s "$1" "$2" && [ -L "$3" ] && ! ls -A "$4" | grep -q "\.tmp\."' sh \
        "$T/ck/model.safetensors" "$T/shard.bak" "$T/ck-soft.dsm" "$T/ck"
    rm -f "$T/ck-hard.dsm" "$T/ck-soft.dsm" "$T/shard.bak" "$T/ow.bak"
else
    skip force-1 "no v2lite checkpoint"
fi

# ---- model paths that are not regular files ----
if mkfifo "$T/fifo.dsm" 2>/dev/null; then
    run_t verify "$T/fifo.dsm"
    check fifo-1 "verify on a FIFO exited $rc, want 1 (124: it hung)" test "$rc" -eq 1
    check fifo-1b "the message says it is not a regular file" has "$T/err" "not a regular file"
    run_t run "$T/fifo.dsm" -p hello -n 2
    check fifo-2 "run on a FIFO exited $rc, want 1 (124: it hung)" test "$rc" -eq 1
    check fifo-2b "the message says it is a FIFO" has "$T/err" "FIFO"
    run_t inspect "$T/fifo.dsm"
    check fifo-3 "inspect on a FIFO exited $rc, want 1 (124: it hung)" test "$rc" -eq 1
    rm -f "$T/fifo.dsm"
else
    skip fifo-1 "mkfifo failed"
fi
run_t verify "$T"
check fifo-4 "verify on a directory exited $rc, want 1" test "$rc" -eq 1
check fifo-4b "the message says it is a directory" has "$T/err" "directory"
if [ -r /dev/zero ]; then
    run_t run /dev/zero -p hello -n 2
    check fifo-5 "run on /dev/zero exited $rc, want 1" test "$rc" -eq 1
    check fifo-5b "the message says it is a device" has "$T/err" "character device"
fi

# ---- chat clears the passphrase variable once read ----
# (a long-running process: its /proc/PID/environ, the initial environment,
# must not show the value while it runs)
if [ -f "$PASSF" ] && [ -r /proc/self/environ ] && mkfifo "$T/chat.in" 2>/dev/null; then
    "$DS" chat "$PASSF" --passphrase-env DS_TEST_PW -n 2 --temp 0 --stats <"$T/chat.in" >"$T/out" 2>"$T/err" &
    cpid=$!
    exec 3>"$T/chat.in"
    echo hello >&3
    # the first reply's stats line: the model is open, so the variable was read
    _i=0
    while [ $_i -lt 600 ] && ! grep -q "$STATS_RE" "$T/err" && kill -0 "$cpid" 2>/dev/null; do
        sleep 0.1
        _i=$((_i + 1))
    done
    if grep -q "$STATS_RE" "$T/err"; then
        # (DS_TEST_PW_WRONG's value starts with DS_TEST_PW's)
        check chat-env-1 "the passphrase is still in /proc/PID/environ of a running ds chat" \
            sh -c '! tr "\0" "\n" <"/proc/$1/environ" | grep -v "^DS_TEST_PW_WRONG=" | grep -q -F "$2"' \
            sh "$cpid" "$DS_TEST_PW"
    else
        bad chat-env-1 "ds chat on a passphrase-sealed model gave no reply"
    fi
    exec 3>&-
    wait "$cpid"
    rc=$?
    check chat-env-2 "ds chat exited $rc at the end of its input, want 0" test "$rc" -eq 0
else
    skip chat-env-1 "no passphrase-sealed model, /proc or mkfifo"
fi

# ==== 8. 4-bit weights and the precision recipe =============================

# logits_cmp <a.f32> <b.f32> <vocab> <max|d|> <min top-1>: the largest
# difference of two logits files within max|d| and their argmax agreement
# at least min top-1 (a fraction).
logits_cmp() {
    "$PY" - "$@" <<'PY'
import sys
import numpy as np
a, b = (np.fromfile(f, dtype="<f4") for f in sys.argv[1:3])
v, tol, agree = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
a, b = a.reshape(-1, v), b.reshape(-1, v)
d = float(np.abs(a - b).max())
t = float((a.argmax(1) == b.argmax(1)).mean())
print(f"max |d| {d:.3g}, top-1 {t:.3f}")
sys.exit(0 if d <= tol and t >= agree else 1)
PY
}

if [ -d "$TD/v2lite" ]; then
    # a checkpoint whose matrices already hold Q4_0 numbers (the numpy rule,
    # tests/ref/prequant_q4.py): --quant q4 stores them without loss, so with
    # F32 activations the 4-bit forward pass is the F32 one up to rounding
    pq=$T/pq4
    if "$PY" tests/ref/prequant_q4.py "$TD/v2lite" "$pq" >"$T/out" 2>"$T/err"; then
        expect q4-1 0 convert "$pq" "$T/pq_f32.dsm" --no-encrypt --quant f32 &&
            expect q4-1b 0 convert "$pq" "$T/pq_q4.dsm" --no-encrypt --quant q4 &&
            expect q4-1c 0 inspect "$T/pq_q4.dsm" --json &&
            check q4-1d "--quant q4 left a matrix that is not Q4_0 (router and norms aside)" \
                sh -c 'python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
bad = [t[\"name\"] for t in d[\"tensors\"] if len(t[\"dims\"]) == 2 and t[\"class\"] != \"router\" and t[\"dtype\"] != \"Q4_0\"]
sys.exit(1 if bad else 0)" "$1"' sh "$T/out"
        toks=0,70,263,265,454,163,304,75,96,300,314,248,250,98,129,340
        V=$(config_int "$TD/v2lite/config.json" vocab_size)
        run logits "$T/pq_f32.dsm" --allow-plaintext --tokens $toks --out "$T/pq_f32.logits"
        run logits "$T/pq_q4.dsm" --allow-plaintext --tokens $toks --out "$T/pq_q4x.logits" --exact-activations
        check q4-2 "Q4_0 with F32 activations differs from F32 on the same numbers (more than 1e-5)" \
            logits_cmp "$T/pq_f32.logits" "$T/pq_q4x.logits" "$V" 1e-5 1.0
        run logits "$T/pq_q4.dsm" --allow-plaintext --tokens $toks --out "$T/pq_q4.logits"
        # int8 activations: the error of Q8_0's products (their max here: 7e-3)
        check q4-3 "Q4_0 with int8 activations: logits off by more than 0.02 or top-1 below 80%" \
            logits_cmp "$T/pq_f32.logits" "$T/pq_q4.logits" "$V" 0.02 0.8
    else
        bad q4-1 "tests/ref/prequant_q4.py failed"
    fi
    # the recipe: 4-bit experts, 8-bit core, router F32 (the default) or asked
    expect q4-4 0 convert "$TD/v2lite" "$T/mix.dsm" --no-encrypt --quant-experts q4 --quant-core q8 &&
        expect q4-4b 0 inspect "$T/mix.dsm" --json &&
        check q4-4c "inspect's classes do not show Q4_0 experts, Q8_0+F32 core and an F32 router" \
            sh -c 'python3 -c "
import json, sys
c = json.load(open(sys.argv[1]))[\"classes\"]
ok = c[\"experts\"][\"formats\"] == \"Q4_0\" and c[\"core\"][\"formats\"] == \"Q8_0+F32\" and c[\"router\"][\"formats\"] == \"F32\"
ok = ok and all(c[k][\"parameters\"] > 0 and 0 < c[k][\"file_share\"] < 1 for k in c)
sys.exit(0 if ok else 1)" "$1"' sh "$T/out"
    expect q4-4d 0 inspect "$T/mix.dsm" &&
        check q4-4e "inspect's text lacks the parameters-by-class table" \
            sh -c 'grep -q "^parameters by class" "$1" && grep -q "^  experts .*Q4_0$" "$1"' sh "$T/out"
    expect q4-5 0 convert "$TD/v2lite" "$T/mixr.dsm" --no-encrypt --quant q4 --quant-router q8 &&
        expect q4-5b 0 inspect "$T/mixr.dsm" --json &&
        check q4-5c "--quant-router q8: the router is not Q8_0" \
            sh -c 'python3 -c "
import json, sys
c = json.load(open(sys.argv[1]))[\"classes\"]
sys.exit(0 if c[\"router\"][\"formats\"] == \"Q8_0\" and c[\"core\"][\"formats\"] == \"Q4_0+F32\" else 1)" "$1"' sh "$T/out" &&
        expect q4-5d 0 run "$T/mixr.dsm" --allow-plaintext -p "hello world" -n 4 --temp 0
    # a 4-bit file is smaller than the 8-bit one, which is smaller than F16
    if [ -f "$T/mix.dsm" ]; then
        run convert "$TD/v2lite" "$T/all8.dsm" --no-encrypt --quant q8
        run convert "$TD/v2lite" "$T/all4.dsm" --no-encrypt --quant q4
        check q4-6 "file sizes not ordered q4 < q4 experts + q8 core < q8" \
            test "$(file_size "$T/all4.dsm")" -lt "$(file_size "$T/mix.dsm")" -a \
            "$(file_size "$T/mix.dsm")" -lt "$(file_size "$T/all8.dsm")"
    fi
    expect q4-7 2 convert "$TD/v2lite" "$T/bad.dsm" --no-encrypt --quant-experts q3 &&
        check q4-7b "no message naming --quant-experts" has "$T/err" "quant-experts must be"
    check q4-7c "a refused recipe left a file" test ! -e "$T/bad.dsm"
else
    skip q4-1 "no v2lite checkpoint"
fi

# ==== 9. ds perplexity ======================================================
# An independent reference: the token ids from bpe_ref (section 6), the logits
# of each window from `ds logits`, the statistics from numpy (written here,
# not from the C code), compared with `ds perplexity --json`.

expect ppl-0 0 perplexity --help && check ppl-0b "perplexity --help prints usage" has "$T/out" "usage: ds perplexity"
expect ppl-0c 0 --help && check ppl-0d "--help lists perplexity" has "$T/out" "perplexity <model.dsm>"

# ppl_ref <json> <ctx> <chunks> <bos> <vocab> <ids> <model.dsm> [<base.dsm>]:
# recomputes from `ds logits` what ds perplexity wrote to <json>; names every
# field that differs by more than 1e-4 relative.
ppl_ref() {
    "$PY" - "$DS" "$@" <<'PY'
import json, math, os, subprocess, sys, tempfile
import numpy as np
ds, jpath, ctx, chunks, bos, vocab, idsf, model = sys.argv[1:9]
base = sys.argv[9] if len(sys.argv) > 9 else None
ctx, chunks, bos, vocab = int(ctx), int(chunks), int(bos), int(vocab)
ids = [bos] + [int(x) for x in open(idsf).read().split()]
got = json.load(open(jpath))
nwin = len(ids) // ctx
if chunks:
    nwin = min(nwin, chunks)
tmp = tempfile.mkdtemp()
def logits(path, win):
    out = os.path.join(tmp, "l.bin")
    subprocess.run([ds, "logits", path, "--tokens", ",".join(map(str, win)), "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    x = np.fromfile(out, dtype="<f4").astype(np.float64).reshape(len(win), vocab)
    os.remove(out)
    return x
def log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
def mean_se(v):
    v = np.asarray(v, dtype=np.float64)
    return v.mean(), v.std(ddof=1) / math.sqrt(len(v))    # the standard error of the mean
nll, nll_b, kl, same = [], [], [], []
for w in range(nwin):
    win = ids[w * ctx:(w + 1) * ctx]
    win[0] = bos                                          # every window starts with BOS
    pos = np.arange(ctx // 2, ctx - 1)                    # the scored second half
    nxt = np.array(win)[pos + 1]
    lq_raw = logits(model, win)[pos]
    lq = log_softmax(lq_raw)
    nll += list(-lq[np.arange(len(pos)), nxt])
    if base:
        lp_raw = logits(base, win)[pos]
        lp = log_softmax(lp_raw)
        nll_b += list(-lp[np.arange(len(pos)), nxt])
        kl += list((np.exp(lp) * (lp - lq)).sum(axis=1))  # KL(base || model)
        same += list(lp_raw.argmax(axis=1) == lq_raw.argmax(axis=1))
m, s = mean_se(nll)
want = {"n_tokens": len(ids), "windows": nwin, "n_scored": len(nll), "n_ctx": ctx, "bos": bos,
        "perplexity": math.exp(m), "stderr": math.exp(m) * s, "mean_nll": m, "mean_nll_stderr": s}
if base:
    mb, sb = mean_se(nll_b)
    mr, sr = mean_se(np.array(nll) - np.array(nll_b))
    mk, sk = mean_se(kl)
    p = float(np.mean(same))
    want.update({"ppl_base": math.exp(mb), "ppl_base_stderr": math.exp(mb) * sb, "ln_ppl_ratio": mr,
                 "ln_ppl_ratio_stderr": sr, "kl_mean": mk, "kl_stderr": sk, "top1_agree": p,
                 "top1_agree_stderr": math.sqrt(p * (1 - p) / (len(same) - 1))})
    for key, q in (("kl_max", 100), ("kl_p99_9", 99.9), ("kl_p99", 99), ("kl_p95", 95), ("kl_p90", 90),
                   ("kl_median", 50), ("kl_p10", 10), ("kl_min", 0)):
        want[key] = float(np.percentile(kl, q))
bad = []
for k, v in want.items():
    g = got.get(k)
    if g is None or abs(g - v) > 1e-4 * abs(v) + 1e-12:
        bad.append("%s: %r, reference %r" % (k, g, v))
print("; ".join(bad) if bad else "all %d fields agree" % len(want))
sys.exit(1 if bad else 0)
PY
}
# ppl_check <id> <what> <ppl_ref arguments...>: a case that passes when the
# reference agrees; its last line of output goes into the failure message.
ppl_check() {
    _id=$1
    _what=$2
    shift 2
    _r=$(ppl_ref "$@" 2>&1)
    _rc=$?
    check "$_id" "$_what: $(echo "$_r" | tail -n 1)" test "$_rc" -eq 0
}

src=$(hf_dir v2lite)
if [ -z "$src" ] || ! "$PY" -c 'import numpy' >/dev/null 2>&1; then
    skip ppl "no v2lite checkpoint or no numpy for $PY"
else
    mkdir -p "$T/ppl"
    PM=$T/ppl/f32.dsm
    PQ=$T/ppl/q8.dsm
    PH=$T/ppl/f16.dsm
    PT=$T/ppl/text.txt
    VOCAB=$(config_int "$src/config.json" vocab_size)
    BOS=$(config_int "$src/config.json" bos_token_id)
    MAXPOS=$(config_int "$src/config.json" max_position_embeddings)
    "$DS" convert "$src" "$PM" --no-encrypt --quant f32 >/dev/null 2>&1 &&
        "$DS" convert "$src" "$PQ" --no-encrypt --quant q8 >/dev/null 2>&1 &&
        "$DS" convert "$src" "$PH" --no-encrypt --quant f16 >/dev/null 2>&1
    check ppl-1 "convert v2lite to f32, q8 and f16" test -f "$PM" -a -f "$PQ" -a -f "$PH"
    # 300 words of the test vocabulary, ASCII letters and single spaces (what
    # bpe_ref handles), no final newline
    "$PY" -c '
import random, sys
random.seed(1)
w = "the experts of the token hello world route each token to a few experts and the shared experts see every token".split()
sys.stdout.write(" ".join(random.choice(w) for _ in range(300)))' >"$PT"
    bpe_ref "$src/tokenizer.json" "$(cat "$PT")" >"$T/ppl/ids.txt"
    NT=$(($(wc -w <"$T/ppl/ids.txt") + 1))   # with BOS

    # ---- perplexity against the reference ----
    if expect ppl-2 0 perplexity "$PM" --file "$PT" --ctx 64 --json; then
        cp "$T/out" "$T/ppl/f32.json"
        ppl_check ppl-2b "ds perplexity --json against numpy" \
            "$T/ppl/f32.json" 64 0 "$BOS" "$VOCAB" "$T/ppl/ids.txt" "$PM"
        check ppl-2c "a progress line per window on stderr: $(grep -c '^\[[0-9]*/[0-9]*\] [0-9.]*$' "$T/err")" \
            test "$(grep -c '^\[[0-9]*/[0-9]*\] [0-9.]*$' "$T/err")" -eq $((NT / 64))
        want=$("$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); print("perplexity: %.4f +/- %.5f" % (j["perplexity"], j["stderr"]))' "$T/ppl/f32.json")
        expect ppl-3 0 perplexity "$PM" --file "$PT" --ctx 64 &&
            check ppl-3b "the last line on stdout: '$(tail -n 1 "$T/out")', want '$want'" \
                test "$(tail -n 1 "$T/out")" = "$want"
    fi
    # an odd window, the first windows only, one thread
    expect ppl-4 0 perplexity "$PM" --file "$PT" --ctx 33 --chunks 5 --threads 1 --json &&
        cp "$T/out" "$T/ppl/c33.json" &&
        ppl_check ppl-4b "--ctx 33 --chunks 5 against numpy" \
            "$T/ppl/c33.json" 33 5 "$BOS" "$VOCAB" "$T/ppl/ids.txt" "$PM"
    # exactly one window is enough
    expect ppl-5 0 perplexity "$PM" --file "$PT" --ctx "$NT" --json &&
        check ppl-5b "a text of exactly --ctx tokens is one window" has "$T/out" '"windows": 1,'

    # ---- KL divergence against the reference ----
    # q8 and f16 against f32; and weights of another family with the same
    # tokenizer (moe16b), where KL(base || model) is far from 0 and from
    # KL(model || base)
    pairs="$PQ:$PM $PH:$PM"
    msrc=$(hf_dir moe16b)
    if [ -n "$msrc" ] && "$DS" convert "$msrc" "$T/ppl/moe.dsm" --no-encrypt --quant f32 >/dev/null 2>&1; then
        pairs="$pairs $PM:$T/ppl/moe.dsm"
    else
        skip ppl-6.3 "no moe16b checkpoint"
    fi
    k=0
    for pair in $pairs; do
        k=$((k + 1))
        qm=${pair%%:*}
        bm=${pair#*:}
        if expect "ppl-6.$k" 0 perplexity "$qm" --file "$PT" --ctx 64 --kl-divergence "$bm" --json; then
            cp "$T/out" "$T/ppl/kl$k.json"
            ppl_check "ppl-6.${k}b" "$(basename "$qm") against base $(basename "$bm"), numpy" \
                "$T/ppl/kl$k.json" 64 0 "$BOS" "$VOCAB" "$T/ppl/ids.txt" "$qm" "$bm"
        fi
    done
    expect ppl-7 0 perplexity "$PQ" --file "$PT" --ctx 64 --kl-divergence "$PM" &&
        check ppl-7b "the text summary has the KL sections and ends with the perplexity line" \
            sh -c "grep -q '^Mean    KLD: ' '$T/out' && grep -q '^99.0%   KLD: ' '$T/out' &&
                   grep -q '^Same top p: ' '$T/out' && tail -n 1 '$T/out' | grep -q '^perplexity: [0-9.]* +/- [0-9.]*\$'"
    # a model against itself: KL 0 everywhere, the same argmax everywhere
    expect ppl-8 0 perplexity "$PM" --file "$PT" --ctx 64 --kl-divergence "$PM" --json &&
        check ppl-8b "KL of a model with itself: $(cat "$T/out")" "$PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if j["kl_mean"] == 0 and j["kl_max"] == 0 and j["kl_min"] == 0 and j["top1_agree"] == 1
         and j["ln_ppl_ratio"] == 0 and j["ppl_base"] == j["perplexity"] else 1)' "$T/out"
    # a sealed, paged model gives the numbers of the plaintext one
    if [ -f "${SEALED:-}" ] && [ -f "$T/ppl/kl1.json" ]; then
        expect ppl-9 0 perplexity "$SEALED" --key-file "$K1" --cache-mb 1 --file "$PT" --ctx 64 --json &&
            check ppl-9b "sealed + --cache-mb 1 gives the perplexity of the plaintext q8 file" "$PY" -c '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
sys.exit(0 if a["perplexity"] == b["perplexity"] and a["stderr"] == b["stderr"] else 1)' "$T/out" "$T/ppl/kl1.json"
    fi

    # ---- errors ----
    expect ppl-10 2 perplexity "$PM" --ctx 64 && check ppl-10b "missing --file is named" has "$T/err" "missing --file"
    expect ppl-11 2 perplexity --file "$PT"
    expect ppl-12 2 perplexity "$PM" --file "$PT" --bogus
    expect ppl-13 1 perplexity "$PM" --file "$T/ppl/absent.txt" &&
        check ppl-13b "a missing text file is named: $(tail -n 1 "$T/err")" has "$T/err" "absent.txt: No such file"
    : >"$T/ppl/empty.txt"
    expect ppl-14 1 perplexity "$PM" --file "$T/ppl/empty.txt" --ctx 64 &&
        check ppl-14b "an empty text: $(tail -n 1 "$T/err")" has "$T/err" "empty.txt: the text is 1 tokens with BOS; a window of --ctx 64 needs at least 64"
    expect ppl-15 1 perplexity "$PM" --file "$PT" --ctx $((NT + 1)) &&
        check ppl-15b "a text shorter than a window: $(tail -n 1 "$T/err")" has "$T/err" "the text is $NT tokens"
    k=0
    for bad_ctx in 0 2 abc -5; do
        k=$((k + 1))
        expect "ppl-16.$k" 2 perplexity "$PM" --file "$PT" --ctx "$bad_ctx"
    done
    expect ppl-17 1 perplexity "$PM" --file "$PT" --ctx $((MAXPOS + 1)) &&
        check ppl-17b "a window over the model's maximum: $(tail -n 1 "$T/err")" has "$T/err" "maximum context.*($MAXPOS tokens)"
    expect ppl-18 2 perplexity "$PM" --file "$PT" --chunks x
    expect ppl-19 1 perplexity "$PM" --file "$PT" --kl-divergence "$T/ppl/absent.dsm" &&
        check ppl-19b "a missing base model is named" has "$T/err" "absent.dsm"
    printf 'the\000token' >"$T/ppl/nul.txt"
    expect ppl-20 1 perplexity "$PM" --file "$T/ppl/nul.txt" &&
        check ppl-20b "a NUL byte is refused" has "$T/err" "nul.txt: the text contains a NUL byte"
    # special-token text in the text is plain text (llama-perplexity's parse_special = false)
    eos_txt='<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>'
    # shellcheck disable=SC2059
    printf "the token$eos_txt the experts" >"$T/ppl/special.txt"
    expect ppl-22 0 tokenize "$PM" --bos --no-special "$(cat "$T/ppl/special.txt")" &&
        nsp=$(wc -w <"$T/out" | tr -d ' ') &&
        expect ppl-22b 0 perplexity "$PM" --file "$T/ppl/special.txt" --ctx 4 --json &&
        check ppl-22c "the end-of-sentence text is $nsp tokens with BOS, as ds tokenize --bos --no-special: $(cat "$T/out")" \
            has "$T/out" "\"n_tokens\": $nsp,"
    # vocabulary mismatch: the demo model has 4096 tokens, the test checkpoints 512
    if [ -f models/demo.dsm ] && [ -f models/demo.key ]; then
        expect ppl-21 1 perplexity "$PM" --file "$PT" --ctx 64 --kl-divergence models/demo.dsm \
            --key-file models/demo.key --allow-plaintext &&
            check ppl-21b "a vocabulary mismatch is named: $(tail -n 1 "$T/err")" \
                has "$T/err" "vocabularies differ: .*f32.dsm has $VOCAB tokens, models/demo.dsm has 4096"
    else
        skip ppl-21 "models/demo.dsm not found (run from the repository root): no model with another vocabulary"
    fi
fi

# ==== 10. llama.cpp's spellings, stop reasons, --json, chat commands ========

# usage errors: bad values of the new options are refused before any model is read
k=0
for bad_args in "-n -2" "-n abc" "-n 1.5" "-t abc" "-t -3" "-t 5000" "-c 0" "-c abc" "-c -1" "-s x" "-s -1" \
    "--display-prompt --no-display-prompt" "--json --display-prompt" "-m $T/other.dsm" "-f" "-m"; do
    k=$((k + 1))
    # shellcheck disable=SC2086
    expect "llama-u.$k" 2 run "$T/m.dsm" -p hi $bad_args
done
expect llama-u.20 2 run "$T/m.dsm" -p hi -r "" && check llama-u.20b "an empty -r is named" has "$T/err" "reverse-prompt"
set --
for _i in $(seq 17); do set -- "$@" -r "x$_i"; done
expect llama-u.21 2 run "$T/m.dsm" -p hi "$@" && check llama-u.21b "a 17th -r is refused" has "$T/err" "at most 16"
set --
expect llama-u.22 2 run -p hi && check llama-u.22b "the missing model names -m" has "$T/err" "or -m FILE"
expect llama-u.23 2 chat "$T/m.dsm" -n -2
expect llama-u.24 2 chat -m "$T/m.dsm" "$T/other.dsm"
expect llama-u.25 2 bench "$T/m.dsm" -p 0
expect llama-u.26 2 bench "$T/m.dsm" -t abc
expect llama-u.27 2 bench -m "$T/m.dsm" "$T/other.dsm" && check llama-u.27b "two models are refused" has "$T/err" "given twice"
expect llama-u.28 2 bench "$T/m.dsm" -r 0
expect llama-u.29 2 tokenize -m "$T/m.dsm" a b
expect llama-u.30 2 perplexity -m "$T/m.dsm" -f "$T/x.txt" -c 2
expect llama-u.31 2 verify -m "$T/m.dsm" -t x
for c in run chat inspect verify tokenize logits perplexity bench; do
    expect "llama-h.$c" 0 "$c" --help && check "llama-h.${c}b" "ds $c --help names -m/--model" has "$T/out" "-m, --model"
done

# every option a --help names is in the manual page (so they stay in step)
if [ -f man/ds.1 ]; then
    "$DS" --help >"$T/help.main" 2>&1
    for c in $(sed -n 's/^  \([a-z][a-z]*\) .*/\1/p' "$T/help.main"); do
        [ "$c" = ds ] && continue
        "$DS" "$c" --help >"$T/help.$c" 2>&1
        miss=$(python3 - "$T/help.$c" man/ds.1 <<'PY'
import re, sys
help_text = open(sys.argv[1], encoding="utf-8").read()
man = open(sys.argv[2], encoding="utf-8").read()
man = re.sub(r"\\f(\(..|\[[^\]]*\]|.)", "", man).replace("\\-", "-").replace("\\&", "")
OPT = r"(?<![\w-])(--[a-z0-9][a-z0-9-]*|-[a-zA-Z])(?![\w-])"
opts = sorted(set(re.findall(OPT, help_text)))
print(" ".join(o for o in opts if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", man)))
PY
)
        check "man-1.$c" "options of ds $c --help missing from man/ds.1: $miss" test -z "$miss"
    done
    check man-2 "man/ds.1 names every command of ds --help" sh -c '
        for c in $(sed -n "s/^  \([a-z][a-z]*\) .*/\1/p" "$1"); do
            [ "$c" = ds ] || grep -q "^\.SS ds $c" "$2" || exit 1
        done' sh "$T/help.main" man/ds.1
    if command -v groff >/dev/null 2>&1; then
        check man-3 "man/ds.1 renders without warnings: $(groff -man -ww -z man/ds.1 2>&1 | head -n 2)" \
            test -z "$(groff -man -ww -z man/ds.1 2>&1)"
    else
        skip man-3 "no groff"
    fi
else
    skip man-1 "no man/ds.1 (run from the repository root)"
fi

# a Hugging Face checkpoint or a GGUF file where a container belongs: a hint to convert it
src=$(hf_dir v2lite)
if [ -n "$src" ] && ls "$src"/*.safetensors >/dev/null 2>&1; then
    for c in run inspect verify chat bench tokenize; do
        case $c in run) set -- -p hi ;; tokenize) set -- hi ;; *) set -- ;; esac
        run "$c" "$src" "$@" </dev/null
        check "hint-1.$c" "ds $c on a Hugging Face directory exited $rc (want 1) with the hint: $(tail -n 1 "$T/err")" \
            sh -c "[ $rc -eq 1 ] && grep -q 'this is a Hugging Face checkpoint: convert it first with \`ds convert $src out.dsm\`' '$T/err'"
    done
    set --
else
    skip hint-1 "no v2lite checkpoint"
fi
printf 'GGUF\003\000\000\000 and the rest of a GGUF file' >"$T/model.gguf"
expect hint-2 1 run "$T/model.gguf" -p hi &&
    check hint-2b "a GGUF file gets the hint: $(tail -n 1 "$T/err")" has "$T/err" "GGUF file: convert it first with .ds convert"
mkdir -p "$T/emptydir"
expect hint-3 1 run "$T/emptydir" -p hi &&
    check hint-3b "a plain directory gets no convert hint" sh -c "! grep -q 'convert it first' '$T/err'"

src=$(hf_dir v2lite)
if [ -z "$src" ] || ! command -v python3 >/dev/null 2>&1; then
    skip llama "no v2lite checkpoint or no python3"
else
    mkdir -p "$T/ll"
    LM=$T/ll/m.dsm
    MAXPOS=$(config_int "$src/config.json" max_position_embeddings)
    expect llama-0 0 convert "$src" "$LM" --no-encrypt --quant f32

    # ---- the model as -m, and the short spellings, change nothing ----
    expect llama-1 0 run "$LM" -p "hello world" -n 8 --temp 0 --no-display-prompt && cp "$T/out" "$T/ll/plain.txt"
    expect llama-1b 0 run -m "$LM" -p "hello world" -n 8 --temp 0 --no-display-prompt &&
        check llama-1c "-m gives the text of the positional model" cmp -s "$T/out" "$T/ll/plain.txt"
    expect llama-2 0 run "$LM" -p hello -n 12 --temp 0.9 --seed 5 --threads 1 --ctx 64 && cp "$T/out" "$T/ll/long.txt"
    expect llama-2b 0 run --model="$LM" -p hello --n-predict 12 --temp 0.9 -s 5 -t 1 -c 64 &&
        check llama-2c "-s -t -c --n-predict give the text of --seed --threads --ctx -n" cmp -s "$T/out" "$T/ll/long.txt"
    expect llama-2d 0 run "$LM" -p hello -n 12 --temp 0.9 -s 5 -t 1 --ctx-size=64 &&
        check llama-2e "--ctx-size is --ctx" cmp -s "$T/out" "$T/ll/long.txt"
    printf 'hello' >"$T/ll/prompt.txt"
    expect llama-3 0 run "$LM" --file "$T/ll/prompt.txt" -n 12 --temp 0.9 -s 5 -t 1 -c 64 &&
        check llama-3b "--file gives the text of -p" cmp -s "$T/out" "$T/ll/long.txt"
    expect llama-3c 1 run "$LM" -f "$T/ll/absent.txt" -n 2 &&
        check llama-3d "a missing prompt file is named: $(tail -n 1 "$T/err")" has "$T/err" "absent.txt: No such file"
    expect llama-3e 1 run "$LM" -f /nonexistent -n 2 && check llama-3f "-f /nonexistent is named" has "$T/err" "/nonexistent"

    # ---- prompt echo: on by default, the prompt then the same continuation ----
    expect llama-4 0 run "$LM" -p "hello world" -n 8 --temp 0 &&
        check llama-4b "the default output is the prompt and then the --no-display-prompt output" \
            sh -c "{ printf 'hello world'; cat '$T/ll/plain.txt'; } | cmp -s - '$T/out'"
    expect llama-4c 0 run "$LM" -p "hello world" -n 8 --temp 0 --display-prompt &&
        check llama-4d "--display-prompt is the default" sh -c "{ printf 'hello world'; cat '$T/ll/plain.txt'; } | cmp -s - '$T/out'"

    # ---- --json: valid, and the text and tokens of the streamed run ----
    if expect json-1 0 run "$LM" -p "hello world" -n 8 --temp 0 --json; then
        cp "$T/out" "$T/ll/run.json"
        check json-1b "ds run --json is one JSON object with the streamed text: $(head -c 300 "$T/out")" python3 - \
            "$T/ll/run.json" "$T/ll/plain.txt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
plain = open(sys.argv[2], encoding="utf-8").read()
assert plain.endswith("\n")
assert d["text"] == plain[:-1], (d["text"], plain)
assert d["n_generated"] == len(d["tokens"]) > 0
assert all(isinstance(t, int) and 0 <= t for t in d["tokens"])
assert d["stop_reason"] in ("length", "eos"), d["stop_reason"]
assert (d["stop_reason"] == "length") == (d["n_generated"] == 8)
assert d["reverse_prompt"] is None
t = d["timings"]
assert t["predicted_n"] == d["n_generated"] and t["prompt_n"] == d["n_prompt"] > 0
assert t["prompt_ms"] >= 0 and t["predicted_ms"] >= 0
PY
        check json-1c "the stats and stop lines still go to stderr" sh -c "grep -q '$STATS_RE' '$T/err' && grep -q '^stopped: ' '$T/err'"
    fi
    # the ids are those ds tokenize finds in the text (each one decodes as the text does)
    expect json-2 0 run "$LM" -p "hello world" -n 8 --temp 0 --json -s 1 &&
        check json-2b "--json reports the seed it was given" python3 -c '
import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d["seed"] == 1 else 1)' "$T/out"

    # ---- the stop reason ----
    expect stop-1 0 run "$LM" -p hello -n 3 --temp 0 --ignore-eos &&
        check stop-1b "-n 3: 3 tokens, stopped: length: $(tail -n 1 "$T/err")" \
            sh -c "[ '$(stat_field "$T/err" generated)' = 3 ] && grep -q '^stopped: length (-n 3 tokens generated)$' '$T/err'"
    expect stop-2 0 run "$LM" -p hello -n 0 &&
        check stop-2b "-n 0 stops with length, the prompt only" has "$T/err" "^stopped: length (-n 0: the prompt only)$"
    # -n -1 --ignore-eos runs to a full context: n_ctx - n_prompt + 1 tokens
    # (the last one is sampled but not fed back)
    if expect stop-3 0 run "$LM" -p "hello world" -n -1 --ignore-eos --temp 0.8 -s 3 -c 24 --json; then
        check stop-3b "a full context: $(head -c 200 "$T/out")" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["stop_reason"] == "context_full" and d["n_generated"] == 24 - d["n_prompt"] + 1 and d["n_ctx"] == 24 else 1)' "$T/out"
        check stop-3c "the stop line names the context" has "$T/err" "^stopped: context_full (the context of 24 tokens is full"
    fi
    # end of sequence: a hot sampler meets EOS soon enough on some seed
    eos_seed=""
    for sd in 1 2 3 4 5 6 7 8 9 10 11 12; do
        run run "$LM" -p hello -n -1 --temp 3 -s $sd -c 512 --json --no-display-prompt
        if [ "$rc" -eq 0 ] && grep -q '"stop_reason": "eos"' "$T/out"; then eos_seed=$sd; break; fi
    done
    if [ -n "$eos_seed" ]; then
        cp "$T/out" "$T/ll/eos.json"
        check stop-4 "stopped at EOS (seed $eos_seed): the stop line says so" has "$T/err" "^stopped: eos (the model's end-of-sequence token)$"
        EOS_ID=$(config_int "$src/config.json" eos_token_id)
        check stop-4b "EOS is not among the generated ids, and the context had room" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if int(sys.argv[2]) not in d["tokens"] and d["n_prompt"] + d["n_generated"] < 512 else 1)' "$T/ll/eos.json" "$EOS_ID"
        # --ignore-eos on the same seed goes past that point
        expect stop-4c 0 run "$LM" -p hello -n -1 --temp 3 -s $eos_seed -c 512 --json --ignore-eos &&
            check stop-4d "--ignore-eos goes on past the EOS" python3 -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
sys.exit(0 if b["stop_reason"] == "context_full" and b["n_generated"] > a["n_generated"] else 1)' "$T/ll/eos.json" "$T/out"
    else
        skip stop-4 "no seed of 12 met EOS at temperature 3"
    fi
    # a reverse prompt: chosen from the greedy text; the run stops at the token
    # that completes it, and the tokens before that do not hold it
    if expect rev-0 0 run "$LM" -p "hello world" -n 24 --temp 0 --ignore-eos --json; then
        cp "$T/out" "$T/ll/g.json"
        RP=$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["text"]
for k in range(4, len(t) - 2):
    r = t[k:k + 2]
    if "\ufffd" not in r and r.strip() == r and r and t.find(r) == k:
        print(r); break' "$T/ll/g.json")
        if [ -n "$RP" ] && expect rev-1 0 run "$LM" -p "hello world" -n 24 --temp 0 --ignore-eos --json -r "$RP"; then
            cp "$T/out" "$T/ll/r.json"
            check rev-1b "-r '$RP' stops at it: $(head -c 300 "$T/out")" python3 -c '
import json, sys
g = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2])); rp = sys.argv[3]
ok = (r["stop_reason"] == "reverse_prompt" and r["reverse_prompt"] == rp and rp in r["text"]
      and g["text"].startswith(r["text"]) and r["tokens"] == g["tokens"][:len(r["tokens"])]
      and r["n_generated"] < g["n_generated"])
sys.exit(0 if ok else 1)' "$T/ll/g.json" "$T/ll/r.json" "$RP"
            check rev-1c "the stop line names the reverse prompt" has "$T/err" "^stopped: reverse_prompt (the text ends with the reverse prompt '$RP')$"
            m=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["n_generated"] - 1)' "$T/ll/r.json")
            expect rev-1d 0 run "$LM" -p "hello world" -n "$m" --temp 0 --ignore-eos --json &&
                check rev-1e "the $m tokens before the stop do not hold '$RP'" python3 -c '
import json, sys; sys.exit(0 if sys.argv[2] not in json.load(open(sys.argv[1]))["text"] else 1)' "$T/out" "$RP"
            # several -r: the one that occurs counts; -r as text and -r in the stream agree
            expect rev-2 0 run "$LM" -p "hello world" -n 24 --temp 0 --ignore-eos -r "@@never@@" --reverse-prompt "$RP" \
                --no-display-prompt &&
                check rev-2b "the streamed text is the --json text" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["text"]; s = open(sys.argv[2], encoding="utf-8").read()
sys.exit(0 if s == r + "\n" else 1)' "$T/ll/r.json" "$T/out"
        else
            skip rev-1 "no reverse prompt could be picked from the greedy text"
        fi
    fi

    # ---- a context beyond the trained length ----
    expect ctx-1 0 run "$LM" -p hello -n 2 -c $((MAXPOS + 1)) &&
        check ctx-1b "a warning names the trained length: $(head -n 1 "$T/err")" \
            has "$T/err" "warning: a context of $((MAXPOS + 1)) tokens is beyond the $MAXPOS positions"
    expect ctx-2 0 run "$LM" -p hello -n 2 -c "$MAXPOS" &&
        check ctx-2b "no warning at the trained length" sh -c "! grep -q 'beyond the' '$T/err'"
    if [ -x "$SERVER" ]; then
        timeout 20 "$SERVER" -m "$LM" --allow-plaintext --port 0 -c $((MAXPOS + 1)) >"$T/out" 2>"$T/err"
        rc=$?
        check ctx-3 "ds-server with a context beyond the trained length exited $rc, want 1" test "$rc" -eq 1
        check ctx-3b "the refusal names --allow-long-ctx: $(tail -n 1 "$T/err")" has "$T/err" "beyond the $MAXPOS positions.*--allow-long-ctx"
        "$SERVER" -m "$LM" --allow-plaintext --port 0 --ctx-size $((MAXPOS + 1)) --allow-long-ctx -t 1 >"$T/out" 2>"$T/err" &
        sp=$!
        for _i in $(seq 100); do grep -q "listening on" "$T/err" && break; sleep 0.1; done
        kill "$sp" 2>/dev/null
        wait "$sp" 2>/dev/null
        check ctx-4 "--allow-long-ctx serves it, with n_ctx $((MAXPOS + 1)) and a warning" \
            sh -c "grep -q 'listening on' '$T/err' && grep -q 'n_ctx=$((MAXPOS + 1))' '$T/err' && grep -q 'warning: n_ctx' '$T/err'"
    else
        skip ctx-3 "no $SERVER"
    fi
    expect ctx-5 0 bench "$LM" -p "$MAXPOS" -n 2 -t 1 && check ctx-5b "ds bench warns past the trained length" \
        has "$T/err" "beyond the $MAXPOS positions"

    # ---- the other commands take -m, -t, -c ----
    expect mopt-1 0 tokenize "$LM" "hello world" && cp "$T/out" "$T/ll/tok.txt"
    expect mopt-1b 0 tokenize -m "$LM" "hello world" && check mopt-1c "tokenize -m" cmp -s "$T/out" "$T/ll/tok.txt"
    expect mopt-2 0 inspect "$LM" --json && cp "$T/out" "$T/ll/insp.json"
    expect mopt-2b 0 inspect -m "$LM" --json && check mopt-2c "inspect -m" cmp -s "$T/out" "$T/ll/insp.json"
    expect mopt-3 0 verify -m "$LM" -t 1
    expect mopt-4 0 logits -m "$LM" --tokens 1,2,3 -o "$T/ll/a.bin" -t 1
    expect mopt-4b 0 logits "$LM" --tokens 1,2,3 --out "$T/ll/b.bin" --threads 1 &&
        check mopt-4c "logits -m -t -o" cmp -s "$T/ll/a.bin" "$T/ll/b.bin"
    head -c 4000 README.md >"$T/ll/text.txt"
    expect mopt-5 0 perplexity -m "$LM" -f "$T/ll/text.txt" -c 32 -t 1 --chunks 2 --json && cp "$T/out" "$T/ll/p1.json"
    expect mopt-5b 0 perplexity "$LM" --file "$T/ll/text.txt" --ctx 32 --threads 1 --chunks 2 --json &&
        check mopt-5c "perplexity -m -c -t" python3 -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
sys.exit(0 if a["perplexity"] == b["perplexity"] and a["n_ctx"] == b["n_ctx"] == 32 else 1)' "$T/ll/p1.json" "$T/out"

    # ---- ds bench --json: one object with the figures ----
    if expect bjson-1 0 bench -m "$LM" -p 4 -n 4 -t 1 --cache-mb 1 -r 2 --json; then
        check bjson-1b "bench --json: $(head -c 200 "$T/out")" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
r = d["run"]
ok = (d["repeat"] == 2 and len(d["decode_tok_s_all"]) == 2 and r["prompt_tokens"] == 4 and r["gen_tokens"] == 4
      and r["threads"] == 1 and r["decode_tok_s"] > 0 and r["prefill_tok_s"] > 0 and not r["resident"]
      and r["decode_pager"]["n_slots"] > 0 and r["decode_tok_s"] in d["decode_tok_s_all"]
      and 0 <= r["hit_rate"] <= 1 and r["peak_rss_mb"] > 0)
sys.exit(0 if ok else 1)' "$T/out"
        check bjson-1c "bench --json writes nothing else on stdout" test "$(wc -l <"$T/out" | tr -d ' ')" = 1
    fi
    if expect bjson-2 0 bench "$LM" --sweep 100,50 -p 4 -n 4 -t 1 --prefetch off --out "$T/ll/sweep" --json; then
        check bjson-2b "bench --sweep --json: a run per setting, as in sweep.csv" python3 -c '
import csv, json, sys
d = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
csv_tps = {float(r["budget_pct"]): float(r["decode_tok_s"]) for r in rows}
# the CSV has 4 decimals, the JSON 9 significant digits
ok = (len(d["runs"]) == len(rows) == 2 and d["tokens_identical"] is True
      and sorted(r["budget_pct"] for r in d["runs"]) == [50, 100]
      and all(abs(r["decode_tok_s"] - csv_tps[r["budget_pct"]]) <= 1e-3 for r in d["runs"]))
sys.exit(0 if ok else 1)' "$T/out" "$T/ll/sweep/sweep.csv"
    fi

    # ---- ds chat: commands ----
    # unknown /commands are refused, not sent; // sends a line beginning with /
    printf 'first\n/frobnicate now\n//second\n/help\n' | "$DS" chat "$LM" -n 3 --temp 0 --stats >"$T/out" 2>"$T/err"
    rc=$?
    check chat-10 "chat exited $rc, want 0" test "$rc" -eq 0
    check chat-10b "two replies (the unknown command sent nothing): $(grep -c "$STATS_RE" "$T/err")" \
        test "$(grep -c "$STATS_RE" "$T/err")" = 2
    check chat-10c "the unknown command is named" has "$T/err" "unknown command '/frobnicate' (not sent to the model)"
    check chat-10d "/help lists /save and /load" sh -c "grep -q '/save FILE' '$T/err' && grep -q '/load FILE' '$T/err'"
    # /save after two turns; a new chat that loads it gives the third turn of an unbroken one
    printf 'alpha\nbeta\n/save %s\ngamma\n' "$T/ll/conv.json" |
        "$DS" chat "$LM" -n 4 --temp 0 --stats --system "Be brief." >"$T/ll/chatA.out" 2>"$T/ll/chatA.err"
    rc=$?
    check chat-11 "chat with /save exited $rc, want 0" test "$rc" -eq 0
    check chat-11b "the saved conversation: system, two user turns and their replies" python3 -c '
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
roles = [m["role"] for m in d["messages"]]
c = [m["content"] for m in d["messages"]]
sys.exit(0 if roles == ["system", "user", "assistant", "user", "assistant"] and c[0] == "Be brief."
         and c[1] == "alpha" and c[3] == "beta" else 1)' "$T/ll/conv.json"
    printf '/load %s\ngamma\n' "$T/ll/conv.json" | "$DS" chat -m "$LM" -n 4 --temp 0 --stats >"$T/ll/chatB.out" 2>"$T/ll/chatB.err"
    rc=$?
    check chat-12 "chat with /load exited $rc, want 0" test "$rc" -eq 0
    pa=$(grep "$STATS_RE" "$T/ll/chatA.err" | sed -n 3p | sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p')
    pb=$(grep "$STATS_RE" "$T/ll/chatB.err" | sed -n 1p | sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p')
    check chat-12b "the loaded conversation is the saved one: third turn of $pa prompt tokens, after /load $pb" \
        test -n "$pa" -a "$pa" = "$pb"
    # a malformed or misshapen file is refused and the conversation kept
    printf '{"messages": [{"role": "user", "content": "x"}' >"$T/ll/trunc.json"
    printf '{"messages": [{"role": "tool", "content": "x"}]}' >"$T/ll/role.json"
    printf '[1, 2]' >"$T/ll/arr.json"
    printf 'alpha\nbeta\n' | "$DS" chat "$LM" -n 4 --temp 0 --stats >/dev/null 2>"$T/ll/ref.err"
    printf 'alpha\n/load %s\n/load %s\n/load %s\n/load %s\n/load\nbeta\n' "$T/ll/trunc.json" "$T/ll/role.json" \
        "$T/ll/arr.json" "$T/ll/absent.json" | "$DS" chat "$LM" -n 4 --temp 0 --stats >/dev/null 2>"$T/err"
    rc=$?
    check chat-13 "chat after failed /loads exited $rc, want 0" test "$rc" -eq 0
    check chat-13b "truncated JSON is named" has "$T/err" "trunc.json: not valid JSON: .* at byte"
    check chat-13c "a bad role is named" has "$T/err" 'role.json: messages\[0\].role: want system, user or assistant, not "tool"'
    check chat-13d "a bad shape is named" has "$T/err" "arr.json: want an object"
    check chat-13e "a missing file is named" has "$T/err" "absent.json: No such file"
    check chat-13f "/load without a file is named" has "$T/err" "/load needs a file name"
    p1=$(grep "$STATS_RE" "$T/err" | sed -n 2p | sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p')
    p0=$(grep "$STATS_RE" "$T/ll/ref.err" | sed -n 2p | sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p')
    check chat-13g "the conversation is unchanged: second turn of $p1 prompt tokens, $p0 without the /loads" \
        test -n "$p0" -a "$p1" = "$p0"
    printf 'alpha\n/save %s/no/such/dir/c.json\nbeta\n' "$T" | "$DS" chat "$LM" -n 2 --temp 0 --stats >/dev/null 2>"$T/err"
    rc=$?
    check chat-14 "a failed /save is reported and the chat goes on (rc $rc, $(grep -c "$STATS_RE" "$T/err") replies)" \
        sh -c "[ $rc -eq 0 ] && grep -q '/save: .*No such file' '$T/err' && [ \$(grep -c '$STATS_RE' '$T/err') = 2 ]"
    # -n -1 and --ignore-eos: a reply runs until the context is full
    printf 'hi\n' | "$DS" chat "$LM" -n -1 --ignore-eos -c 48 --stats >/dev/null 2>"$T/err"
    rc=$?
    pp=$(stat_field "$T/err" prompt)
    check chat-15 "chat -n -1 --ignore-eos -c 48: $(stat_field "$T/err" generated) tokens after $pp, want 48 - $pp + 1" \
        test "$rc" -eq 0 -a "$(stat_field "$T/err" generated)" = $((48 - ${pp:-0} + 1))
    # line editing and history on a terminal (a pty), where the build has libedit:
    # "helo", two left arrows, "l" is "hello"; the up arrow recalls it; Ctrl-C
    # at the prompt drops the line typed so far
    # (Now and then libedit leaves a pty started from a script in plain mode,
    # the keys reaching the model as typed: such a try exits 77 and is made
    # again, up to three times; editing that never works still fails.)
    if "$DS" chat --help | grep -q "this build has it" && python3 -c 'import pty' 2>/dev/null; then
      for _try in 1 2 3; do
        python3 - "$DS" "$LM" "$T/ll/pty.json" >"$T/out" 2>&1 <<'PY'
import os, pty, select, sys, time
ds, model, save = sys.argv[1:4]
pid, fd = pty.fork()
if pid == 0:
    os.execv(ds, [ds, "chat", model, "-n", "2", "--temp", "0", "--stats"])
out = b""
def wait_for(pat, after=0, t=30):
    """Reads until pat appears at or after byte `after`; returns where it ends."""
    global out
    end = time.time() + t
    while time.time() < end:
        k = out.find(pat, after)
        if k >= 0:
            return k + len(pat)
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                c = os.read(fd, 4096)
            except OSError:
                break
            if not c:
                break
            out += c
    sys.exit("timed out waiting for %r in %r" % (pat, out))
def send(b):
    """Types b a moment after the prompt: libedit may flush input that comes
    while it sets the terminal up."""
    time.sleep(0.2)
    os.write(fd, b)
at = wait_for(b"> ")
send(b"helo\x1b[D\x1b[Dl\r")
at = wait_for(b"> ", wait_for(b"generated:", at))
if b"^[[D" in out:   # the terminal's own echo of the arrow key: libedit is not editing
    os.kill(pid, 9)
    sys.exit(77)
send(b"\x1b[A\r")
at = wait_for(b"> ", wait_for(b"generated:", at))
send(b"never sent")
time.sleep(0.3)
send(b"\x03")
at = wait_for(b"\r\n> ", wait_for(b"never sent", at))
send(("/save " + save + "\r").encode())
at = wait_for(b"> ", wait_for(b"(saved", at))
for i in range(100):
    if i % 10 == 0:
        send(b"\x04")   # Ctrl-D: the end (again, should one be lost)
    p, st = os.waitpid(pid, os.WNOHANG)
    if p:
        sys.exit(os.waitstatus_to_exitcode(st))
    time.sleep(0.1)
os.kill(pid, 9)
sys.exit(99)
PY
        rc=$?
        [ "$rc" -eq 77 ] || break
      done
        check chat-17 "chat on a pty exited $rc (want 0): $(tail -c 200 "$T/out")" test "$rc" -eq 0
        check chat-17b "edited and recalled lines reach the model as typed, the dropped one not at all" python3 -c '
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
users = [m["content"] for m in d["messages"] if m["role"] == "user"]
sys.exit(0 if users == ["hello", "hello"] else 1)' "$T/ll/pty.json"
    else
        skip chat-17 "ds built without libedit (or no python pty): no line editing to test"
    fi
    # -r ends a reply
    printf 'hi\n' | "$DS" chat "$LM" -n 24 --temp 0 --ignore-eos --stats >"$T/ll/c1.out" 2>"$T/err"
    g1=$(stat_field "$T/err" generated)
    CR=$(python3 -c '
import sys
t = open(sys.argv[1], encoding="utf-8").read().rstrip("\n")
for k in range(4, len(t) - 2):
    r = t[k:k + 2]
    if "\ufffd" not in r and r.strip() == r and r and t.find(r) == k:
        print(r); break' "$T/ll/c1.out")
    if [ -n "$CR" ]; then
        printf 'hi\n' | "$DS" chat "$LM" -n 24 --temp 0 --ignore-eos --stats -r "$CR" >"$T/out" 2>"$T/err"
        check chat-16 "-r '$CR' ends the reply early ($(stat_field "$T/err" generated) of $g1 tokens)" python3 -c '
import sys
a = open(sys.argv[1], encoding="utf-8").read().rstrip("\n"); b = open(sys.argv[2], encoding="utf-8").read().rstrip("\n")
sys.exit(0 if sys.argv[3] in b and a.startswith(b) and len(b) < len(a) else 1)' "$T/ll/c1.out" "$T/out" "$CR"
    else
        skip chat-16 "no reverse prompt could be picked from the reply"
    fi
fi

# ==== 11. LoRA adapters: --lora, --lora-scaled, --lora-key-file =============
# A random PEFT adapter for the demo model (tests/gen/make_demo_lora.py),
# converted with ds convert-lora. The logits with it are compared with
# transformers + peft's on the same checkpoint (an F32 conversion, so that
# only float rounding differs) when DS_TORCH_PYTHON (or $PY) has torch,
# transformers and peft, and always with the adapter merged into the base by
# ds lora merge (another path through the code). Scale 0 must give the
# base's logits bit for bit. Every refusal names the adapter's file.

TORCH_PY=${DS_TORCH_PYTHON:-$PY}
if [ ! -f models/demo.dsm ] || [ ! -f models/demo.key ] || [ ! -d models/demo-hf ]; then
    skip lora "models/demo.dsm not found (run from the repository root)"
elif ! "$PY" -c 'import numpy' 2>/dev/null; then
    skip lora "no numpy for tests/gen/make_demo_lora.py"
else
    L=$T/lora
    mkdir -p "$L"
    DK="--key-file models/demo.key"
    LT=0,1200,345,2901,77,3000,15,642,2048,99
    if "$PY" tests/gen/make_demo_lora.py "$L/peft" >"$T/err" 2>&1 &&
        "$DS" convert-lora "$L/peft" "$L/a.dsa" --base models/demo.dsm $DK >>"$T/err" 2>&1; then
        ok lora-1
    else
        bad lora-1 "making the demo adapter failed"
    fi
    expect lora-2 0 logits models/demo.dsm $DK --tokens $LT -o "$L/base.f32" &&
        expect lora-2b 0 logits models/demo.dsm $DK --tokens $LT -o "$L/a.f32" --lora "$L/a.dsa" &&
        check lora-2c "--lora changes the logits" "$PY" -c '
import sys, numpy as np
a = np.fromfile(sys.argv[1], "<f4"); b = np.fromfile(sys.argv[2], "<f4")
sys.exit(0 if a.shape == b.shape and np.abs(a - b).max() > 0.05 else 1)' "$L/base.f32" "$L/a.f32"
    expect lora-3 0 logits models/demo.dsm $DK --tokens $LT -o "$L/zero.f32" --lora-scaled "$L/a.dsa" 0 &&
        check lora-3b "--lora-scaled FILE 0 gives the base's logits exactly" cmp -s "$L/base.f32" "$L/zero.f32"
    # two adapters at once: the second at half scale moves the logits again
    expect lora-3c 0 logits models/demo.dsm $DK --tokens $LT -o "$L/ab.f32" --lora "$L/a.dsa" \
        --lora-scaled "$L/a.dsa" 0.5 &&
        check lora-3d "a second adapter adds to the first" sh -c '! cmp -s "$1" "$2"' sh "$L/a.f32" "$L/ab.f32"

    # ---- against independent references: PEFT, and the merged model ----
    if "$DS" convert models/demo-hf "$L/f32.dsm" --quant f32 $DK >"$T/err" 2>&1 &&
        "$DS" convert-lora "$L/peft" "$L/f.dsa" --base "$L/f32.dsm" $DK >>"$T/err" 2>&1 &&
        "$DS" lora merge "$L/f32.dsm" "$L/f.dsa" "$L/merged.dsm" $DK --scale 0.5 >>"$T/err" 2>&1; then
        ok lora-4
        run logits "$L/f32.dsm" $DK --tokens $LT -o "$L/f1.f32" --lora "$L/f.dsa" --exact-activations
        run logits "$L/f32.dsm" $DK --tokens $LT -o "$L/f5.f32" --lora-scaled "$L/f.dsa" 0.5 --exact-activations
        run logits "$L/merged.dsm" $DK --tokens $LT -o "$L/m5.f32" --exact-activations
        check lora-4b "--lora-scaled 0.5 equals the adapter merged at 0.5 (ds lora merge) within 1e-4" "$PY" -c '
import sys, numpy as np
a = np.fromfile(sys.argv[1], "<f4"); b = np.fromfile(sys.argv[2], "<f4")
d = np.abs(a - b).max() if a.shape == b.shape and a.size else 1e9
print("max |lora - merged| = %g" % d); sys.exit(0 if d < 1e-4 else 1)' "$L/f5.f32" "$L/m5.f32"
        if "$TORCH_PY" -c 'import torch, transformers, peft' 2>/dev/null; then
            if "$TORCH_PY" tests/ref/lora_peft_logits.py models/demo-hf "$L/peft" $LT "$L/p1.f32" >"$T/err" 2>&1 &&
                "$TORCH_PY" tests/ref/lora_peft_logits.py models/demo-hf "$L/peft" $LT "$L/p5.f32" --scale 0.5 \
                    >>"$T/err" 2>&1; then
                for sc in 1 5; do
                    check "lora-4c.$sc" "ds logits --lora(-scaled) equals transformers + peft within 1e-3" "$PY" -c '
import sys, numpy as np
a = np.fromfile(sys.argv[1], "<f4"); b = np.fromfile(sys.argv[2], "<f4")
d = np.abs(a - b).max() if a.shape == b.shape and a.size else 1e9
print("max |ds - peft| = %g" % d); sys.exit(0 if d < 1e-3 else 1)' "$L/f$sc.f32" "$L/p$sc.f32"
                done
            else
                bad lora-4c "tests/ref/lora_peft_logits.py failed"
            fi
        else
            skip lora-4c "no torch, transformers and peft in $TORCH_PY (set DS_TORCH_PYTHON): no PEFT reference"
        fi
    else
        bad lora-4 "an F32 demo model, its adapter and the merge failed"
    fi

    # ---- an adapter of the MLPs (dense layer, shared and routed experts) ----
    if "$PY" tests/gen/make_demo_lora.py "$L/peftx" --seed 3 --targets gate_proj,up_proj,down_proj >"$T/err" 2>&1 &&
        "$DS" convert-lora "$L/peftx" "$L/x.dsa" --base models/demo.dsm $DK >>"$T/err" 2>&1; then
        run logits models/demo.dsm $DK --tokens $LT -o "$L/xr.f32" --lora "$L/x.dsa"
        run logits models/demo.dsm $DK --tokens $LT -o "$L/xc.f32" --lora "$L/x.dsa" --cache-mb 1
        check lora-15 "an experts' adapter paged with the experts (--cache-mb 1) equals it resident" \
            cmp -s "$L/xr.f32" "$L/xc.f32"
        check lora-15b "an experts' adapter changes the logits" sh -c '! cmp -s "$1" "$2"' sh "$L/base.f32" "$L/xr.f32"
        if [ -f "$L/f32.dsm" ] && "$DS" convert-lora "$L/peftx" "$L/fx.dsa" --base "$L/f32.dsm" $DK >"$T/err" 2>&1 &&
            "$DS" lora merge "$L/f32.dsm" "$L/fx.dsa" "$L/mx.dsm" $DK >>"$T/err" 2>&1; then
            run logits "$L/f32.dsm" $DK --tokens $LT -o "$L/fx.f32" --lora "$L/fx.dsa" --exact-activations --cache-mb 1
            run logits "$L/mx.dsm" $DK --tokens $LT -o "$L/mxl.f32" --exact-activations
            check lora-15c "the experts' adapter equals it merged (ds lora merge) within 1e-4" "$PY" -c '
import sys, numpy as np
a = np.fromfile(sys.argv[1], "<f4"); b = np.fromfile(sys.argv[2], "<f4")
d = np.abs(a - b).max() if a.shape == b.shape and a.size else 1e9
print("max |lora - merged| = %g" % d); sys.exit(0 if d < 1e-4 else 1)' "$L/fx.f32" "$L/mxl.f32"
        else
            skip lora-15c "no F32 demo model (lora-4) or the merge failed"
        fi
    else
        bad lora-15 "making an adapter of the MLPs failed"
    fi

    # ---- run, chat, perplexity, bench ----
    expect lora-5 0 run models/demo.dsm $DK -p "In the beginning" -n 12 --temp 0 --json &&
        cp "$T/out" "$L/run-base.json"
    expect lora-5b 0 run models/demo.dsm $DK -p "In the beginning" -n 12 --temp 0 --json --lora-scaled "$L/a.dsa" 0 &&
        check lora-5c "ds run --lora-scaled FILE 0 generates the base's tokens" "$PY" -c '
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
sys.exit(0 if a["tokens"] == b["tokens"] else 1)' "$L/run-base.json" "$T/out"
    expect lora-5d 0 run models/demo.dsm $DK -p "In the beginning" -n 12 --temp 0 --json --lora "$L/a.dsa" &&
        check lora-5e "ds run --json names the adapters" "$PY" -c '
import json, sys
a = json.load(open(sys.argv[1]))["adapters"]
sys.exit(0 if len(a) == 1 and a[0]["path"].endswith("a.dsa") and a[0]["scale"] == 1 else 1)' "$T/out"
    printf 'hello\n' | "$DS" chat models/demo.dsm $DK -n 4 --temp 0 --lora "$L/a.dsa" >"$T/out" 2>"$T/err"
    check lora-6 "ds chat --lora answers" test $? -eq 0
    awk 'BEGIN { for (i = 0; i < 40; i++) print "And God said, Let there be light: and there was light. And God saw the light." }' \
        >"$L/text.txt"
    expect lora-7 0 perplexity models/demo.dsm $DK -f "$L/text.txt" --ctx 64 --chunks 2 --json --lora "$L/a.dsa" \
        --kl-divergence models/demo.dsm &&
        check lora-7b "perplexity: the adapter on the model only, KL(base || model+adapter) > 0, adapters in --json" \
            "$PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if j["kl_mean"] > 1e-3 and j["adapters"][0]["path"].endswith("a.dsa") and j["adapters"][0]["scale"] == 1
         else 1)' "$T/out"
    expect lora-7c 0 perplexity models/demo.dsm $DK -f "$L/text.txt" --ctx 64 --chunks 2 --json \
        --lora-scaled "$L/a.dsa" 0 --kl-divergence models/demo.dsm &&
        check lora-7d "perplexity: at scale 0 the KL against the base is 0" "$PY" -c '
import json, sys
j = json.load(open(sys.argv[1])); sys.exit(0 if j["kl_mean"] == 0 and j["top1_agree"] == 1 else 1)' "$T/out"
    expect lora-8 0 bench models/demo.dsm $DK -p 8 -n 4 --lora-scaled "$L/a.dsa" 0.5 &&
        check lora-8b "ds bench names the adapter it applied" \
            has "$T/out" "adapter .*a.dsa: scale 0.5, rank 4, targets q_proj,kv_b_proj"
    expect lora-8c 0 bench models/demo.dsm $DK -p 8 -n 4 && check lora-8d "ds bench says when there is none" \
        has "$T/out" "adapters *none"
    expect lora-8e 0 bench models/demo.dsm $DK -p 8 -n 4 --lora "$L/a.dsa" --json &&
        check lora-8f "ds bench --json names the adapter" "$PY" -c '
import json, sys
a = json.load(open(sys.argv[1]))["run"]["adapters"]
sys.exit(0 if len(a) == 1 and a[0]["rank"] == 4 and a[0]["targets"] == "q_proj,kv_b_proj" else 1)' "$T/out"

    # ---- refusals, each naming the adapter ----
    expect lora-9 1 logits models/demo.dsm $DK --tokens 0,1 -o "$L/x.f32" --lora "$L/no-such.dsa" &&
        check lora-9b "a missing adapter is named" has "$T/err" "no-such.dsa"
    "$DS" keygen "$L/other.key" >/dev/null 2>&1
    if "$DS" convert-lora "$L/peft" "$L/k.dsa" --base models/demo.dsm --key-file "$L/other.key" \
        --base-key-file models/demo.key >"$T/err" 2>&1; then
        expect lora-10 1 logits models/demo.dsm $DK --tokens 0,1 -o "$L/x.f32" --lora "$L/k.dsa" &&
            check lora-10b "an adapter sealed with another key: named, with the hint --lora-key-file" \
                sh -c 'grep -q "k.dsa" "$1" && grep -q -- "--lora-key-file" "$1"' sh "$T/err"
        expect lora-10c 0 logits models/demo.dsm $DK --tokens $LT -o "$L/k.f32" --lora "$L/k.dsa" \
            --lora-key-file "$L/other.key" &&
            check lora-10d "with --lora-key-file it applies (as the same adapter sealed with the model's key)" \
                cmp -s "$L/a.f32" "$L/k.f32"
    else
        bad lora-10 "sealing an adapter with another key failed"
    fi
    if "$DS" convert models/demo-hf "$L/other.dsm" $DK >"$T/err" 2>&1 &&
        "$DS" convert-lora "$L/peft" "$L/o.dsa" --base "$L/other.dsm" $DK >>"$T/err" 2>&1; then
        expect lora-11 1 logits models/demo.dsm $DK --tokens 0,1 -o "$L/x.f32" --lora "$L/o.dsa" &&
            check lora-11b "an adapter for another conversion of the checkpoint: named, with the identities" \
                sh -c 'grep -q "o.dsa" "$1" && grep -q "identity" "$1"' sh "$T/err"
        expect lora-11c 1 run models/demo.dsm $DK -p x -n 1 --lora "$L/a.dsa" --lora "$L/o.dsa" &&
            check lora-11d "the bad one of two adapters is named" has "$T/err" "o.dsa"
    else
        bad lora-11 "a second conversion of the demo checkpoint failed"
    fi
    expect lora-12 1 logits models/demo.dsm $DK --tokens 0,1 -o "$L/x.f32" --lora models/demo.dsm &&
        check lora-12b "a model given as an adapter" has "$T/err" "not a LoRA adapter"
    expect lora-13 2 logits models/demo.dsm $DK --tokens 0,1 -o "$L/x.f32" --lora-scaled "$L/a.dsa"
    expect lora-13b 2 logits models/demo.dsm $DK --tokens 0,1 -o "$L/x.f32" --lora-scaled "$L/a.dsa" half &&
        check lora-13c "a bad scale is named" has "$T/err" "half"
    expect lora-13d 2 logits models/demo.dsm $DK --tokens 0,1 -o "$L/x.f32" --lora-key-file "$L/other.key"
    set --
    for _ in 1 2 3 4 5 6 7 8 9; do set -- "$@" --lora "$L/a.dsa"; done
    expect lora-13e 2 logits models/demo.dsm $DK --tokens 0,1 -o "$L/x.f32" "$@" &&
        check lora-13f "more than 8 adapters: the limit is named" has "$T/err" "at most 8"
    set --
    for c in run chat logits perplexity bench; do
        "$DS" "$c" --help >"$T/out" 2>&1
        check "lora-14.$c" "ds $c --help names --lora and --lora-scaled" \
            sh -c 'grep -q -- "--lora FILE" "$1" && grep -q -- "--lora-scaled FILE S" "$1"' sh "$T/out"
    done
fi

echo "RESULT test_cli: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
