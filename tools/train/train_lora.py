#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""train_lora.py -- a LoRA adapter for the demo model on a second domain.

The base is the committed demo model, models/demo-hf (a 2.48M-parameter
DeepSeek-V2 trained on the King James Bible), loaded with transformers' own
DeepseekV2ForCausalLM and frozen. PEFT wraps it with the document's
configuration,

    LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "kv_b_proj"], lora_dropout=0.1)

where the document says ["q_proj", "v_proj"]: DeepSeek-V2's attention is MLA,
which has q_proj but no v_proj; the values (and the keys' non-rotary part)
come out of kv_b_proj, the up-projection of the compressed KV latent. So
"kv_b_proj" is the MLA counterpart of "v_proj" (it carries keys too; MLA has
no matrix that makes values alone).

Training data: the Jargon File (lora_corpus.py), as one stream
BOS text EOS BOS text EOS ..., 8 random windows of 256+1 tokens a step
(seeded), demo tokenizer (models/demo-hf/tokenizer.json). Loss: next-token
cross-entropy only (the base's expert-balance term is a pre-training loss;
the routers are frozen here).

Schedule, train_demo.py's over S steps (default 800): linear warm-up
0 -> PEAK (3e-3; --peak-lr) over the first 10%, cosine PEAK -> PEAK/10 over
the next 70%, constant PEAK/10 over the last 20% with L2 on: Adam's coupled
weight_decay 0.01 on every adapter matrix (the gradient of
0.5*0.01*||w||^2 added to each gradient), as the demo model had it.
Adam betas (0.9, 0.95), eps 1e-8, gradient norm clipped at 1. Seed 1234,
2 threads.

Afterwards (dropout off, the exact weights that are saved):
  - perplexity with and without the adapter (PEFT's disable_adapter, same
    windows) on the Jargon File validation text and on the KJV validation
    text, two ways: (1) train_demo.py's: the validation documents as one
    BOS/EOS stream cut into consecutive 256-token windows, every position
    scored; (2) `ds perplexity`'s (llama-perplexity's): the documents joined
    by blank lines as plain text, BOS + tokens, consecutive 256-token
    windows whose first token is replaced by BOS, the second half scored,
    with llama.cpp's standard error. (2) is what `ds perplexity --ctx 256`
    computes on the text files written to WORKDIR, so the two can be
    compared;
  - greedy continuations (64 tokens, one full forward pass per step, no KV
    cache; prompt = BOS + tokens, as ds_generate builds it) and sampled ones
    (temperature 0.6, top-p 0.9, repetition penalty 1.15, fixed seed) of the
    same prompts, with and without the adapter.

    train_lora.py WORKDIR [--base models/demo-hf] [--out models] [--steps N] [--bench N]

WORKDIR holds jargon_{train,val}.jsonl + jargon_info.json (lora_corpus.py)
and kjv_val.jsonl (kjv_corpus.py); the plain validation texts
jargon_val.txt and kjv_val.txt are written there. OUT receives
demo-lora-hf/ (PEFT save_pretrained: adapter_config.json,
adapter_model.safetensors, F32; PEFT's template README.md is removed),
demo_lora_stats.json and, when matplotlib is importable,
demo_lora_loss.png. --bench N times N steps and exits.
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # see train_demo.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

SEED = 1234
PEAK_LR = 3e-3
FINAL_LR = PEAK_LR / 10
WARMUP_FRAC, COSINE_FRAC = 0.10, 0.70      # the rest (20%) is the L2 tail
WEIGHT_DECAY = 0.01                        # L2, last 20% only
CLIP = 1.0
CTX = 256
LORA = dict(r=16, lora_alpha=32, target_modules=["q_proj", "kv_b_proj"], lora_dropout=0.1)
DOC_SHARE = 0.7                            # the document's claim, percent trainable
PROMPTS = ["A hacker is a person who", "The LORD is my shepherd"]
GEN_STEPS = 64
SAMPLE = dict(temperature=0.6, top_p=0.9, repetition_penalty=1.15, seed=SEED)
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"


def keep_freed_memory():
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)
        libc.mallopt(-2, 64 << 20)
        libc.mallopt(-3, 32 << 20)
    except (OSError, AttributeError):
        pass


# ============================================================================
# Data
# ============================================================================


def read_docs(path):
    return [json.loads(l)["text"] for l in open(path, encoding="utf-8")]


def stream_ids(docs, tok):
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    out = []
    for enc in tok.encode_batch(docs):
        out.append(bos)
        out.extend(enc.ids)
        out.append(eos)
    return torch.tensor(out, dtype=torch.long)


def batch(stream, B, T, gen):
    starts = torch.randint(0, len(stream) - T - 1, (B,), generator=gen)
    w = torch.stack([stream[s:s + T + 1] for s in starts.tolist()])
    return w[:, :-1], w[:, 1:]


def stream_windows(stream, T):
    """train_demo.py's validation windows: consecutive, every position scored."""
    n = (len(stream) - 1) // T
    x = torch.stack([stream[i * T:i * T + T] for i in range(n)])
    y = torch.stack([stream[i * T + 1:i * T + T + 1] for i in range(n)])
    return x, y


def ds_windows(text, tok, T):
    """ds perplexity's windows: BOS + tokens of the plain text, consecutive T-token
    windows (the partial last one dropped), each one's first token set to BOS."""
    bos = tok.token_to_id(BOS)
    ids = [bos] + tok.encode(text).ids
    n = len(ids) // T
    w = torch.tensor(ids[:n * T], dtype=torch.long).view(n, T).clone()
    w[:, 0] = bos
    return w, len(ids)


# ============================================================================
# Schedule
# ============================================================================


def lr_at(step, S):
    w = max(1, round(WARMUP_FRAC * S))
    c = max(1, round(COSINE_FRAC * S))
    if step < w:
        return PEAK_LR * (step + 1) / w, False
    if step < w + c:
        p = (step - w) / c
        return FINAL_LR + 0.5 * (PEAK_LR - FINAL_LR) * (1.0 + math.cos(math.pi * p)), False
    return FINAL_LR, True


# ============================================================================
# Evaluation
# ============================================================================


@torch.no_grad()
def stream_loss(model, x, y, bs=16):
    model.eval()
    nll, n = 0.0, 0
    for i in range(0, len(x), bs):
        logits = model(input_ids=x[i:i + bs], use_cache=False).logits.double()
        nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + bs].reshape(-1),
                                                 reduction="sum").item()
        n += y[i:i + bs].numel()
    return nll / n


@torch.no_grad()
def ds_perplexity(model, w, bs=16):
    """llama-perplexity over windows w (n, T): NLL of token i+1 at i for i in [T/2, T-1)."""
    model.eval()
    T = w.shape[1]
    first = T // 2
    nlls = []
    for i in range(0, len(w), bs):
        wb = w[i:i + bs]
        lp = model(input_ids=wb, use_cache=False).logits.double().log_softmax(-1)
        tgt = wb[:, first + 1:T]
        nlls.append(-lp[:, first:T - 1].gather(-1, tgt.unsqueeze(-1)).squeeze(-1).reshape(-1))
    x = torch.cat(nlls)
    N = x.numel()
    mean = x.mean().item()
    var = ((x - mean) ** 2).mean().item()
    se = math.sqrt(var / (N - 1))
    ppl = math.exp(mean)
    return {"perplexity": round(ppl, 3), "stderr": round(ppl * se, 3), "mean_nll": round(mean, 5),
            "windows": len(w), "n_scored": N}


@torch.no_grad()
def greedy(model, ids, n):
    model.eval()
    ids = list(ids)
    out = []
    for _ in range(n):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
        t = int(torch.argmax(logits))
        ids.append(t)
        out.append(t)
    return out


@torch.no_grad()
def sample(model, ids, n, temperature, top_p, repetition_penalty, seed):
    """Temperature, then the repetition penalty over every id seen so far
    (divide positive logits, multiply negative ones), then top-p; its own
    seeded generator."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    ids = list(ids)
    out = []
    for _ in range(n):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1].clone()
        seen = torch.tensor(sorted(set(ids)))
        v = logits[seen]
        logits[seen] = torch.where(v > 0, v / repetition_penalty, v * repetition_penalty)
        p = (logits / temperature).softmax(-1)
        ps, order = p.sort(descending=True)
        keep = (ps.cumsum(0) - ps) < top_p
        ps = ps * keep
        t = int(order[torch.multinomial(ps / ps.sum(), 1, generator=gen)])
        ids.append(t)
        out.append(t)
    return out


# ============================================================================
# main
# ============================================================================


def load_base(path):
    import transformers
    kw = dict(dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True)
    if int(transformers.__version__.split(".")[0]) >= 5:
        kw["experts_implementation"] = "eager"
    model, info = transformers.AutoModelForCausalLM.from_pretrained(path, **kw)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit("train_lora.py: loading %s reported %r" % (path, bad))
    return model


def plot(path, log, S):
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = np.arange(1, len(log["train_loss"]) + 1)
    tl = np.array(log["train_loss"])
    k = 25
    smooth = np.convolve(tl, np.ones(k) / k, mode="valid")
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(steps, tl, color="#9ecae1", lw=0.6, label="train (per step)")
    ax.plot(steps[k - 1:], smooth, color="#08519c", lw=1.4, label="train (mean of %d steps)" % k)
    vs = [v[0] for v in log["val"]]
    ax.plot(vs, [v[1] for v in log["val"]], "o-", color="#d94801", ms=3.5, lw=1.2, label="validation")
    ax.set_xlabel("step (%d tokens each)" % log["tokens_per_step"])
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(steps, log["lr"], color="#969696", lw=0.9, ls="--", label="learning rate")
    ax2.set_ylabel("learning rate")
    ax2.set_ylim(0, PEAK_LR * 1.15)
    l2_from = int(round((WARMUP_FRAC + COSINE_FRAC) * S))
    ax.axvspan(l2_from, S, color="#fee391", alpha=0.35, lw=0, label="L2 (%.2g)" % WEIGHT_DECAY)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    ax.set_title("LoRA r=16 on q_proj, kv_b_proj of the demo model, Jargon File", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main():
    global PEAK_LR, FINAL_LR
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir")
    ap.add_argument("--base", default="models/demo-hf")
    ap.add_argument("--out", default="models")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=0, help="default: every 5%% of the steps")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    ap.add_argument("--peak-lr", type=float, default=PEAK_LR, help="default %(default)g; the final one is a tenth")
    a = ap.parse_args()
    PEAK_LR, FINAL_LR = a.peak_lr, a.peak_lr / 10

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    from tokenizers import Tokenizer
    import peft
    import transformers
    tok = Tokenizer.from_file(os.path.join(a.base, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    info = json.load(open(os.path.join(a.workdir, "jargon_info.json"), encoding="utf-8"))
    jtrain_docs = read_docs(os.path.join(a.workdir, "jargon_train.jsonl"))
    jval_docs = read_docs(os.path.join(a.workdir, "jargon_val.jsonl"))
    kval_docs = read_docs(os.path.join(a.workdir, "kjv_val.jsonl"))
    train = stream_ids(jtrain_docs, tok)
    jval = stream_ids(jval_docs, tok)
    kval = stream_ids(kval_docs, tok)
    jvx, jvy = stream_windows(jval, CTX)
    kvx, kvy = stream_windows(kval, CTX)
    texts = {}
    for name, docs in (("jargon_val", jval_docs), ("kjv_val", kval_docs)):
        texts[name] = "\n\n".join(docs)
        with open(os.path.join(a.workdir, name + ".txt"), "w", encoding="utf-8") as f:
            f.write(texts[name])
    chars = sum(len(d) for d in jtrain_docs)
    print("train_lora: %s %s: train %d tokens (%.2f chars/token), val %d tokens (%d windows); KJV val %d tokens"
          % (info["package"], info["version"], len(train), chars / (len(train) - 2 * len(jtrain_docs)),
             len(jval), len(jvx), len(kval)), flush=True)

    base = load_base(a.base)
    n_base = sum(p.numel() for p in base.parameters())
    torch.manual_seed(SEED)
    cfg = peft.LoraConfig(task_type="CAUSAL_LM", **LORA)
    model = peft.get_peft_model(base, cfg)
    model.print_trainable_parameters()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    n_train = sum(p.numel() for _, p in trainable)
    n_all = sum(p.numel() for p in model.parameters())
    if any("lora_" not in n for n, _ in trainable):
        raise SystemExit("train_lora.py: a non-LoRA parameter is trainable")
    targets = sorted({n.split(".lora_")[0].split("base_model.model.")[-1] for n, _ in trainable})
    share = 100.0 * n_train / n_all
    print("train_lora: %d trainable of %d (%.3f%% of all with the adapter, %.3f%% of the base's %d); "
          "the document claims %.1f%%; %d adapted matrices"
          % (n_train, n_all, share, 100.0 * n_train / n_base, n_base, DOC_SHARE, len(targets)), flush=True)

    params = [p for _, p in trainable]
    opt = torch.optim.Adam([{"params": params, "weight_decay": 0.0}], lr=0.0, betas=(0.9, 0.95), eps=1e-8)
    S = a.bench or a.steps
    eval_every = a.eval_every or max(1, S // 20)
    gen = torch.Generator().manual_seed(SEED)
    B, T = a.batch, CTX
    log = {"train_loss": [], "lr": [], "l2_norm_sq": [], "val": [], "tokens_per_step": B * T}
    model.train()
    t0 = time.time()
    for step in range(S):
        lr, l2 = lr_at(step, S)
        opt.param_groups[0]["lr"] = lr
        opt.param_groups[0]["weight_decay"] = WEIGHT_DECAY if l2 else 0.0
        x, y = batch(train, B, T, gen)
        logits = model(input_ids=x, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        log["train_loss"].append(round(loss.item(), 5))
        log["lr"].append(lr)
        el = time.time() - t0
        if step % 10 == 0 or step == S - 1:
            with torch.no_grad():
                l2n = sum(float((p * p).sum()) for p in params)
            log["l2_norm_sq"].append((step + 1, round(l2n, 4)))
            print("step %5d/%d  lr %.2e%s  loss %.4f  |w|^2 %.2f  %.0f tok/s  %.0fs"
                  % (step + 1, S, lr, " L2" if l2 else "", loss.item(), l2n, (step + 1) * B * T / el, el),
                  flush=True)
        if not a.bench and ((step + 1) % eval_every == 0 or step == S - 1):
            vl = stream_loss(model, jvx, jvy)
            model.train()
            log["val"].append((step + 1, round(vl, 5)))
            print("  val loss %.4f  ppl %.2f" % (vl, math.exp(vl)), flush=True)
    train_seconds = time.time() - t0
    if a.bench:
        print("bench: %.2f s/step, %.0f tokens/s" % (train_seconds / S, S * B * T / train_seconds))
        return

    # ---- save, then evaluate the saved weights ----
    model.eval()
    lora_dir = os.path.join(a.out, "demo-lora-hf")
    model.save_pretrained(lora_dir)
    if os.path.exists(os.path.join(lora_dir, "README.md")):
        os.remove(os.path.join(lora_dir, "README.md"))   # PEFT's empty model-card template
    os.chmod(os.path.join(lora_dir, "adapter_model.safetensors"), 0o644)
    from safetensors.torch import load_file
    saved = load_file(os.path.join(lora_dir, "adapter_model.safetensors"))
    live = {n: p for n, p in model.named_parameters() if p.requires_grad}
    for k, v in saved.items():
        m = [n for n in live if n.replace(".default", "") == k]
        if len(m) != 1 or not torch.equal(live[m[0]].detach(), v):
            raise SystemExit("train_lora.py: saved %s does not match the trained weight" % k)
    t1 = time.time()

    def both(fn):
        on = fn()
        with model.disable_adapter():
            off = fn()
        return {"base": off, "adapter": on}

    ppl = {}
    for name, (x, y) in (("jargon_val", (jvx, jvy)), ("kjv_val", (kvx, kvy))):
        r = both(lambda: stream_loss(model, x, y))
        ppl[name] = {"stream": {k: {"loss": round(v, 4), "ppl": round(math.exp(v), 3)} for k, v in r.items()},
                     "stream_windows": len(x), "stream_tokens": int(x.numel())}
        w, ntok = ds_windows(texts[name], tok, CTX)
        ppl[name]["ds_method"] = both(lambda: ds_perplexity(model, w))
        ppl[name]["ds_method"]["n_tokens"] = ntok
        s, d = ppl[name]["stream"], ppl[name]["ds_method"]
        print("%-10s  stream: base %.3f -> adapter %.3f;  ds method: base %.3f +/- %.3f -> adapter %.3f +/- %.3f"
              % (name, s["base"]["ppl"], s["adapter"]["ppl"], d["base"]["perplexity"], d["base"]["stderr"],
                 d["adapter"]["perplexity"], d["adapter"]["stderr"]), flush=True)

    samples = []
    for p in PROMPTS:
        ids = [tok.token_to_id(BOS)] + tok.encode(p).ids
        entry = {"prompt": p, "prompt_ids": ids}
        for mode in ("greedy", "sampled"):
            if mode == "greedy":
                r = both(lambda: greedy(model, ids, GEN_STEPS))
            else:
                r = both(lambda: sample(model, ids, GEN_STEPS, **SAMPLE))
            entry[mode] = {k: {"ids": v, "text": tok.decode(v, skip_special_tokens=False)} for k, v in r.items()}
            for k in ("base", "adapter"):
                print("[%s, %s] %s|%s" % (mode, k, p, entry[mode][k]["text"]), flush=True)
        samples.append(entry)
    eval_seconds = time.time() - t1

    files = {fn: os.path.getsize(os.path.join(lora_dir, fn)) for fn in sorted(os.listdir(lora_dir))}
    stats = {
        "base": a.base,
        "lora_config": LORA,
        "target_modules_note": "the document's [\"q_proj\", \"v_proj\"] mapped to MLA: DeepSeek-V2 has q_proj "
                               "but no v_proj; values (and the non-rotary keys) come from kv_b_proj",
        "adapted_matrices": targets,
        "trainable_params": n_train,
        "all_params_with_adapter": n_all,
        "base_params": n_base,
        "trainable_percent": round(share, 4),
        "trainable_percent_of_base": round(100.0 * n_train / n_base, 4),
        "document_claim_percent": DOC_SHARE,
        "corpus": info,
        "train_tokens": len(train),
        "val_tokens": len(jval),
        "kjv_val_tokens": len(kval),
        "steps": S, "batch": B, "context": T, "tokens_per_step": B * T, "tokens_seen": S * B * T,
        "epochs": round(S * B * T / len(train), 3),
        "schedule": {"peak_lr": PEAK_LR, "final_lr": FINAL_LR, "warmup_steps": max(1, round(WARMUP_FRAC * S)),
                     "cosine_steps": max(1, round(COSINE_FRAC * S)),
                     "l2_from_step": max(1, round(WARMUP_FRAC * S)) + max(1, round(COSINE_FRAC * S)),
                     "l2": "coupled: Adam weight_decay %g on every adapter matrix (= gradient of 0.5*%g*|w|^2)"
                           % (WEIGHT_DECAY, WEIGHT_DECAY),
                     "optimizer": "torch.optim.Adam betas (0.9, 0.95) eps 1e-8, grad norm clip %g" % CLIP},
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "seed": SEED,
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "tokenizers": __import__("tokenizers").__version__},
        "final_train_loss_last5pct": round(float(np.mean(log["train_loss"][-max(1, S // 20):])), 4),
        "val_loss_at_l2_start": next((v for s, v in log["val"] if s >= round((WARMUP_FRAC + COSINE_FRAC) * S)),
                                     None),
        "perplexity": ppl,
        "perplexity_note": "stream: the validation documents as one BOS text EOS stream, consecutive %d-token windows, "
                           "every position scored (train_demo.py's). ds_method: `ds perplexity --ctx %d` on "
                           "WORKDIR/<name>.txt (documents joined by blank lines), llama-perplexity's method; "
                           "base = PEFT disable_adapter(), the same windows" % (CTX, CTX),
        "samples": samples,
        "sample_settings": dict(SAMPLE, steps=GEN_STEPS,
                                note="greedy: argmax, a full forward pass per step; sampled: this script's own "
                                     "sampler (temperature, repetition penalty over seen ids, top-p), torch "
                                     "Generator seeded per continuation"),
        "adapter_files": files,
        "log": log,
    }
    with open(os.path.join(a.out, "demo_lora_stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)
        f.write("\n")
    plotted = plot(os.path.join(a.out, "demo_lora_loss.png"), log, S)
    print("train_lora: %.1f min training, %.1f min evaluation; adapter files %s; plot %s"
          % (train_seconds / 60, eval_seconds / 60, files, "written" if plotted else "skipped (no matplotlib)"))


if __name__ == "__main__":
    sys.exit(main())
