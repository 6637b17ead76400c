#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""lora_peft_logits.py -- the reference logits of a Hugging Face checkpoint
with a PEFT LoRA adapter, from transformers and peft (not from deepseek.h).

    lora_peft_logits.py HF_DIR PEFT_DIR IDS OUT [--scale S]

Loads HF_DIR with AutoModelForCausalLM in float32, wraps it with
PeftModel.from_pretrained(PEFT_DIR), multiplies every LoRA layer's scaling
by S (PEFT's own scale_layer; 1 = as trained, llama.cpp's --lora-scaled S),
evaluates the comma-separated token IDS from an empty cache and writes the
logits of every position to OUT as n x vocab float32 (little-endian), the
layout of `ds logits --out`. tests/test_cli.sh compares `ds logits --lora`
against it. Needs torch, transformers and peft (DS_TORCH_PYTHON there).
"""
import sys

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main():
    args = sys.argv[1:]
    scale = 1.0
    if "--scale" in args:
        i = args.index("--scale")
        scale = float(args[i + 1])
        del args[i:i + 2]
    hf, peft_dir, ids, out = args
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(model, peft_dir)
    if scale != 1.0:
        for m in model.modules():
            if hasattr(m, "scale_layer") and hasattr(m, "scaling"):
                m.scale_layer(scale)
    model.eval()
    x = torch.tensor([[int(t) for t in ids.split(",")]])
    with torch.no_grad():
        logits = model(input_ids=x, use_cache=False).logits[0].float().numpy()
    np.ascontiguousarray(logits, dtype="<f4").tofile(out)


if __name__ == "__main__":
    main()
