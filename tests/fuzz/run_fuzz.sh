#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# Builds the libFuzzer targets and runs each for a bounded time.
#   sh tests/fuzz/run_fuzz.sh [seconds per target]   (default 30)
# Seeds: the small files in tests/fuzz/corpus/<target>/, plus, for the
# container target, seeds cut from a plaintext container converted from the
# generated v2lite checkpoint ($DS_TESTDATA, default build/testdata); for the
# gguf target, the files build/tests/test_gguf builds, and GGUF files of that
# checkpoint where a Python with the gguf package is found (tests/test_gguf.sh).
# Exits non-zero when a target finds a crash.
set -eu
secs=${1:-30}
DS_TESTDATA=${DS_TESTDATA:-build/testdata}
make -s fuzz build/ds build/tests/test_gguf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in json safetensors container tokenizer regex chat_file gguf keys jsonmask; do
    mkdir -p "$work/$t"
    [ -d "tests/fuzz/corpus/$t" ] && cp tests/fuzz/corpus/$t/* "$work/$t/" 2>/dev/null || true
done
if [ -f "$DS_TESTDATA/v2lite/config.json" ]; then
    ./build/ds convert "$DS_TESTDATA/v2lite" "$work/plain.dsm" --quant q8 --no-encrypt >/dev/null
    python3 - "$work/plain.dsm" "$work/container" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
out = sys.argv[2]
open(out + '/header', 'wb').write(b'\x00' + data[:4096])
meta_off, meta_bytes, meta_plain = struct.unpack_from('<QQQ', data, 40)
chunk = struct.unpack_from('<I', data, 24)[0]
# plaintext files: the metadata is the stored bytes without the 16-byte tags
plain, pos = b'', meta_off
while len(plain) < meta_plain:
    n = min(chunk, meta_plain - len(plain))
    plain += data[pos:pos + n]
    pos += n + 16
open(out + '/meta', 'wb').write(b'\x01' + plain)
open(out + '/file', 'wb').write(b'\x02' + data)
PY
fi
DS_GGUF_SEED_DIR="$work/gguf" ./build/tests/test_gguf >/dev/null
for p in ${GGUF_PYTHON:-} build/gguf-venv/bin/python python3; do
    if "$p" -c 'import gguf, numpy' >/dev/null 2>&1 && [ -f "$DS_TESTDATA/v2lite/config.json" ]; then
        "$p" bench/hf_to_gguf_q8.py "$DS_TESTDATA/v2lite" "$work/gguf/v2lite-q8.gguf" --type q8 >/dev/null
        break
    fi
done
status=0
for t in json safetensors container tokenizer regex chat_file gguf keys jsonmask; do
    echo "fuzz_$t: ${secs}s"
    maxlen=1048576
    case $t in tokenizer|regex|jsonmask) maxlen=4096 ;; esac
    if ! ./build-fuzz/fuzz_$t -max_total_time="$secs" -max_len="$maxlen" -rss_limit_mb=2048 \
            -artifact_prefix="$work/crash-$t-" "$work/$t" > "$work/log-$t" 2>&1; then
        echo "fuzz_$t FAILED:"; tail -n 40 "$work/log-$t"
        mkdir -p build-fuzz/crashes && cp "$work"/crash-$t-* build-fuzz/crashes/ 2>/dev/null || true
        status=1
    else
        grep -E '^#[0-9]+.*(DONE|pulse)' "$work/log-$t" | tail -n 1
    fi
done
exit $status
