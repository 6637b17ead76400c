#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# Regenerates the demo model in models/ from nothing but Debian's KJV package:
# corpus, tokenizer, training (~20-25 min on 2 cores), export, sealing,
# tokenizer check and goldens. Run from the repository root:
#
#     sudo apt-get install -y bible-kjv-text
#     PYTHON=/path/to/python sh tools/train/regen.sh
#
# PYTHON needs torch, transformers (>= 5), tokenizers, safetensors, numpy and
# matplotlib (see tools/train/README.md for the versions used). The published
# demo key models/demo.key is kept when present (a new one is made otherwise),
# so the sealed container changes (fresh salt and nonces) but its key does not.
set -eu
PYTHON=${PYTHON:-python3}
BUILD=${BUILD:-build-train}
W=$BUILD/demo-work

make BUILD="$BUILD" -j2 all
"$PYTHON" tools/train/kjv_corpus.py "$W"
"$PYTHON" tools/train/train_tokenizer.py "$W" "$W/tok"
"$PYTHON" tools/train/train_demo.py "$W" models
[ -f models/demo.key ] || "$BUILD/ds" keygen models/demo.key
"$BUILD/ds" convert models/demo-hf models/demo.dsm --quant q8 --key-file models/demo.key --force
"$BUILD/ds" verify models/demo.dsm --key-file models/demo.key
"$PYTHON" tools/train/check_tokenizer.py "$W" --ds "$BUILD/ds"
"$PYTHON" tools/train/make_demo_goldens.py
make BUILD="$BUILD" "$BUILD/tests/test_demo"
BUILD="$BUILD" sh tests/run_tests.sh "$BUILD/tests/test_demo"
