#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_demo_goldens.py -- reference greedy continuations of the demo model.

Loads the committed checkpoint models/demo-hf (F16 weights) with transformers'
own DeepseekV2ForCausalLM in float32 (the F16 values upcast exactly; eager
attention, eval mode), checks that every weight it holds equals the file's F16
value, and for each prompt runs 64 greedy steps, one full forward pass per
step without a KV cache (nothing of the C runtime is assumed). Prompt ids are
built as the runtime's ds_generate builds them: the BOS id, then the
`tokenizers` encoding of the text (no other special tokens).

Per step it stores the chosen id, the margin between the top two logits (how
far the choice was from a tie) and the smallest routing gap over the MoE
layers at that position (softmax score of the K-th chosen expert minus the
best rejected one; a C implementation can only route differently where this
gap is near its rounding error).

    make_demo_goldens.py [--model models/demo-hf] [--out models/demo_goldens.json] [--check]

--check recomputes and compares with the existing file (writes nothing);
exit status 1 on any difference in ids or a margin difference > 1e-4.
"""
import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

PROMPTS = ["In the beginning", "And Jesus said unto them,", "The LORD is my shepherd"]
N_STEPS = 64
# A Q8_0 run may take another token only where the reference's own top-two
# margin is below this many logits (see models/README.md for the measurement
# behind it); tests/test_demo.c reads it from the goldens.
Q8_MARGIN_THRESHOLD = 0.5
BOS = "<｜begin▁of▁sentence｜>"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def load_model(d):
    import transformers
    from safetensors.torch import load_file
    kw = dict(dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    if int(transformers.__version__.split(".")[0]) >= 5:
        kw["experts_implementation"] = "eager"
    model, info = transformers.AutoModelForCausalLM.from_pretrained(d, **kw)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit("loading %s reported %r" % (d, bad))
    model.eval()
    # every weight must be the file's F16 value, upcast
    st = load_file(os.path.join(d, "model.safetensors"))
    sd = model.state_dict()
    I = model.config.moe_intermediate_size
    seen = set()
    for name, w in st.items():
        if w.dtype != torch.float16:
            raise SystemExit("%s is %s, not F16" % (name, w.dtype))
        w = w.float()
        if name in sd:
            got, key = sd[name], name
        else:  # transformers 5 fuses each layer's experts
            p = name.split(".")
            e, base = int(p[-3]), ".".join(p[:-3])
            if p[-2] == "down_proj":
                key = base + ".down_proj"
                got = sd[key][e]
            else:
                key = base + ".gate_up_proj"
                got = sd[key][e][:I] if p[-2] == "gate_proj" else sd[key][e][I:]
        if not torch.equal(got, w):
            raise SystemExit("weight %s differs from the checkpoint" % name)
        seen.add(key)
    missing = [k for k, v in sd.items() if k not in seen and v.is_floating_point() and "rotary" not in k]
    if missing:
        raise SystemExit("model tensors not from the checkpoint: %s" % missing)
    return model


class RouterGaps:
    def __init__(self, model):
        from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter
        self.k = model.config.num_experts_per_tok
        self.gaps = []
        for m in model.modules():
            if isinstance(m, DeepseekV2TopkRouter):
                m.register_forward_hook(self.hook)

    def hook(self, mod, args, out):
        s = out[0][-1:].double().softmax(-1).sort(dim=-1, descending=True).values[0]
        self.gaps.append(float(s[self.k - 1] - s[self.k]))

    def take(self):
        g, self.gaps = self.gaps, []
        return min(g)


@torch.no_grad()
def greedy(model, gaps, ids, n):
    seq, out, margins, rgaps, top2 = list(ids), [], [], [], []
    for _ in range(n):
        lg = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1]
        rgaps.append(float("%.3g" % gaps.take()))
        v, i = torch.topk(lg, 2)
        t = int(torch.argmax(lg))  # first index of the maximum, as the C test's argmax
        assert t == int(i[0])
        out.append(t)
        top2.append(int(i[1]))
        margins.append(round(float(v[0] - v[1]), 6))
        seq.append(t)
    return out, margins, rgaps, top2


def main():
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(root, "models", "demo-hf"))
    ap.add_argument("--out", default=os.path.join(root, "models", "demo_goldens.json"))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    import transformers
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    bos = tok.token_to_id(BOS)
    model = load_model(a.model)
    gaps = RouterGaps(model)
    res = []
    for p in PROMPTS:
        ids = [bos] + tok.encode(p, add_special_tokens=False).ids
        out, margins, rgaps, top2 = greedy(model, gaps, ids, N_STEPS)
        res.append({"prompt": p, "prompt_ids": ids, "ids": out, "margins": margins, "second_ids": top2,
                    "min_routing_gap": rgaps, "text": tok.decode(out, skip_special_tokens=False)})
        print("%r -> %r" % (p, res[-1]["text"]))
        print("   smallest top-1/top-2 margin %.4f (step %d); smallest routing gap %.3g"
              % (min(margins), int(np.argmin(margins)), min(rgaps)))
    doc = {
        "what": "greedy continuations of models/demo-hf by transformers' DeepseekV2ForCausalLM in float32 "
                "(F16 weights upcast), made by tools/train/make_demo_goldens.py; checked by tests/test_demo.c",
        "model_sha256": sha256(os.path.join(a.model, "model.safetensors")),
        "tokenizer_sha256": sha256(os.path.join(a.model, "tokenizer.json")),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
        "n_steps": N_STEPS,
        "q8_margin_threshold": Q8_MARGIN_THRESHOLD,
        "prompts": res,
    }
    if a.check:
        old = json.load(open(a.out, encoding="utf-8"))
        bad = 0
        for o, n in zip(old["prompts"], res):
            if o["prompt_ids"] != n["prompt_ids"] or o["ids"] != n["ids"]:
                print("DIFF %r: ids differ" % n["prompt"])
                bad += 1
            elif max(abs(x - y) for x, y in zip(o["margins"], n["margins"])) > 1e-4:
                print("DIFF %r: margins differ" % n["prompt"])
                bad += 1
        print("check: %s" % ("identical" if not bad else "%d prompts differ" % bad))
        sys.exit(1 if bad else 0)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %s" % a.out)


if __name__ == "__main__":
    main()
