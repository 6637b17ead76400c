#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""train_tokenizer.py -- a byte-level BPE tokenizer for the demo model.

Trained with the `tokenizers` library on the training chapters of the KJV
(kjv_corpus.py), with DeepSeek's own pipeline: no normalizer, the
DeepSeek-V3 pre-tokenizer (digits in runs of up to three, CJK runs, the
word/punctuation/space regex, then ByteLevel without its regex) and the
ByteLevel decoder -- the same blocks as the V3 release's tokenizer.json (taken
from tests/gen/make_checkpoint.py, which copies them), so our C tokenizer
handles it exactly. Special tokens, DeepSeek's spelling:
    id 0  <｜begin▁of▁sentence｜>   (BOS)
    id 1  <｜end▁of▁sentence｜>     (EOS)
then the 256 byte symbols and the merges, VOCAB ids in all.

    train_tokenizer.py WORKDIR OUTDIR [--vocab 4096]

reads WORKDIR/kjv_train.jsonl and writes OUTDIR/tokenizer.json and
OUTDIR/tokenizer_config.json (BOS/EOS, add_bos_token, and the DeepSeek-V2
chat template "User: ...\\n\\nAssistant:" that `ds chat` renders).
Deterministic: the same corpus gives the same file.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "gen"))
import make_checkpoint as mc  # noqa: E402  (PRE_TOKENIZER, BOS, EOS, V2_CHAT_TEMPLATE)

from tokenizers import Tokenizer, trainers, pre_tokenizers  # noqa: E402

BOS, EOS = mc.BOS, mc.EOS
DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}


def skeleton():
    """An untrained tokenizer with DeepSeek's pipeline, built from JSON so that
    the trainer sees exactly the pre-tokenizer the final file holds."""
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": mc.PRE_TOKENIZER,
        "post_processor": None,
        "decoder": DECODER,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": {}, "merges": []},
    }


def tokenizer_config(max_len):
    def tok(c):
        return {"__type": "AddedToken", "content": c, "lstrip": False, "normalized": False,
                "rstrip": False, "single_word": False}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": tok(BOS),
        "eos_token": tok(EOS),
        "pad_token": tok(EOS),
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": mc.V2_CHAT_TEMPLATE,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir")
    ap.add_argument("outdir")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--max-len", type=int, default=1024, help="model_max_length in tokenizer_config.json")
    a = ap.parse_args()
    docs = [json.loads(l)["text"] for l in open(os.path.join(a.workdir, "kjv_train.jsonl"), encoding="utf-8")]
    tok = Tokenizer.from_str(json.dumps(skeleton()))
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, min_frequency=2, show_progress=False,
                                  special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer=trainer)
    js = json.loads(tok.to_str())
    # the trainer keeps our pipeline; make sure, and pin the blocks verbatim
    assert js["pre_tokenizer"] == mc.PRE_TOKENIZER, js["pre_tokenizer"]
    js["decoder"] = DECODER
    js["post_processor"] = None
    assert js["model"]["vocab"][BOS] == 0 and js["model"]["vocab"][EOS] == 1
    assert len(js["model"]["vocab"]) == a.vocab, len(js["model"]["vocab"])
    os.makedirs(a.outdir, exist_ok=True)
    text = json.dumps(js, ensure_ascii=False, indent=1)
    with open(os.path.join(a.outdir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    with open(os.path.join(a.outdir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(a.max_len), f, ensure_ascii=False, indent=2)
        f.write("\n")
    # round trip through the file we wrote
    t2 = Tokenizer.from_file(os.path.join(a.outdir, "tokenizer.json"))
    n_tok = sum(len(t2.encode(d).ids) for d in docs)
    print("train_tokenizer: vocab %d, %d merges; training text is %d tokens (%.2f chars/token)"
          % (t2.get_vocab_size(), len(js["model"]["merges"]), n_tok, sum(map(len, docs)) / n_tok))


if __name__ == "__main__":
    main()
