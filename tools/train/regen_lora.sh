#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# Regenerates the demo LoRA adapter (models/demo-lora-hf/, demo_lora_stats.json)
# from the committed demo model and two Debian packages: the Jargon File
# (the new domain) and the KJV (its validation chapters, to measure what the
# adapter costs on the base's own text). ~15-20 min on 2 shared cores.
# Run from the repository root:
#
#     sudo apt-get install -y jargon-text bible-kjv-text
#     PYTHON=/path/to/python sh tools/train/regen_lora.sh
#
# PYTHON needs torch, transformers (>= 5), peft, tokenizers, safetensors and
# numpy (matplotlib for the optional loss plot); see tools/train/README.md.
# Without installing jargon-text: LORA_CORPUS_ARGS=--fetch (apt-get download).
set -eu
PYTHON=${PYTHON:-python3}
BUILD=${BUILD:-build-train}
W=$BUILD/lora-work

"$PYTHON" tools/train/lora_corpus.py "$W" ${LORA_CORPUS_ARGS:-}
"$PYTHON" tools/train/kjv_corpus.py "$W"
"$PYTHON" tools/train/train_lora.py "$W" --base models/demo-hf --out models
