#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""train_demo.py -- train the small DeepSeek-V2 demo model on the KJV Bible.

The model is transformers' own DeepseekV2ForCausalLM (MLA attention without
q-LoRA as in V2-Lite, one leading dense layer, then MoE layers with shared and
top-k routed experts, softmax routing), built from the config.json this script
writes, so the exported checkpoint is the Hugging Face DeepSeek-V2 layout with
the real tensor names. On top of the language-model loss, our own
sequence-wise expert-balance loss (DeepSeek-V2, eq. 12-14): per MoE layer and
sequence of T tokens, with N_r routed experts, top-K routing and scores s_i,t,
    f_i = N_r / (K T) * #{t : expert i in the top-K of token t}
    P_i = 1/T * sum_t s_i,t
    L_bal = alpha * sum_i f_i P_i          (alpha = 0.01, summed over layers)

Schedule (steps S): linear warm-up 0 -> 1e-3 over the first 10%, cosine
1e-3 -> 1e-4 over the next 70%, constant 1e-4 over the last 20%, where L2
regularisation is switched on (see README.md). Adam, betas (0.9, 0.95),
gradient norm clipped at 1. Fixed seeds, 2 threads.

After training every weight is rounded to F16 and the rounded weights (as
F32) are the model from then on: the final validation loss and perplexity,
the expert-usage histogram and the exported checkpoint all use them.

    train_demo.py WORKDIR OUTDIR [--steps N] [--bench N]

WORKDIR holds kjv_train.jsonl, kjv_val.jsonl (kjv_corpus.py) and
tok/tokenizer.json (train_tokenizer.py); OUTDIR (models/) receives
demo-hf/ (config.json, model.safetensors in F16, tokenizer files),
demo_loss.png and demo_stats.json. --bench N times N steps and exits.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a machine whose two cores
# are shared with other work, spinning makes each small parallel operation
# wait for a descheduled thread (measured 10-30x slower elementwise ops).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

SEED = 1234
PEAK_LR, FINAL_LR = 1e-3, 1e-4
WARMUP_FRAC, COSINE_FRAC = 0.10, 0.70      # the rest (20%) is the L2 tail
WEIGHT_DECAY = 0.01                        # L2, last 20% only
AUX_ALPHA = 0.01
CLIP = 1.0

# The demo architecture: DeepSeek-V2-Lite's shape, scaled down.
ARCH = dict(
    hidden_size=128,
    num_hidden_layers=5,         # layer 0 dense, layers 1-4 MoE
    first_k_dense_replace=1,
    intermediate_size=512,       # the dense layer's MLP
    num_attention_heads=4,
    q_lora_rank=None,            # V2-Lite: queries straight from the hidden state
    kv_lora_rank=64,
    qk_nope_head_dim=32,
    qk_rope_head_dim=16,
    v_head_dim=32,
    n_routed_experts=16,
    num_experts_per_tok=4,
    n_shared_experts=2,
    moe_intermediate_size=32,    # a multiple of 32: every expert matrix can be Q8_0
)
CTX = 256                        # training context = max_position_embeddings


def hf_config(vocab):
    a = ARCH
    return {
        "architectures": ["DeepseekV2ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "aux_loss_alpha": AUX_ALPHA,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": a["first_k_dense_replace"],
        "hidden_act": "silu",
        "hidden_size": a["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": a["intermediate_size"],
        "kv_lora_rank": a["kv_lora_rank"],
        "max_position_embeddings": CTX,
        "model_type": "deepseek_v2",
        "moe_intermediate_size": a["moe_intermediate_size"],
        "moe_layer_freq": 1,
        "n_group": 1,
        "n_routed_experts": a["n_routed_experts"],
        "n_shared_experts": a["n_shared_experts"],
        "norm_topk_prob": False,
        "num_attention_heads": a["num_attention_heads"],
        "num_experts_per_tok": a["num_experts_per_tok"],
        "num_hidden_layers": a["num_hidden_layers"],
        "num_key_value_heads": a["num_attention_heads"],
        "pretraining_tp": 1,
        "q_lora_rank": a["q_lora_rank"],
        "qk_nope_head_dim": a["qk_nope_head_dim"],
        "qk_rope_head_dim": a["qk_rope_head_dim"],
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000,
        "routed_scaling_factor": 1.0,
        "scoring_func": "softmax",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": 1,
        "topk_method": "greedy",
        "torch_dtype": "float16",
        "use_cache": True,
        "v_head_dim": a["v_head_dim"],
        "vocab_size": vocab,
    }


# ============================================================================
# Data
# ============================================================================


def load_ids(workdir, split, tok):
    """All chapters of a split as one stream: BOS text EOS BOS text EOS ..."""
    docs = [json.loads(l)["text"] for l in open(os.path.join(workdir, "kjv_%s.jsonl" % split), encoding="utf-8")]
    bos, eos = tok.token_to_id(mc_BOS), tok.token_to_id(mc_EOS)
    out = []
    for enc in tok.encode_batch(docs):
        out.append(bos)
        out.extend(enc.ids)
        out.append(eos)
    return torch.tensor(out, dtype=torch.long)


mc_BOS = "<｜begin▁of▁sentence｜>"
mc_EOS = "<｜end▁of▁sentence｜>"


def batch(stream, B, T, gen):
    """B random windows of T+1 tokens: inputs and next-token targets."""
    starts = torch.randint(0, len(stream) - T - 1, (B,), generator=gen)
    w = torch.stack([stream[s:s + T + 1] for s in starts.tolist()])
    return w[:, :-1], w[:, 1:]


def val_windows(stream, T):
    n = (len(stream) - 1) // T
    x = torch.stack([stream[i * T:i * T + T] for i in range(n)])
    y = torch.stack([stream[i * T + 1:i * T + T + 1] for i in range(n)])
    return x, y


# ============================================================================
# Routing taps: the balance loss and the expert histogram
# ============================================================================


class Routers:
    """Forward hooks on every router: keeps (router_logits, topk_indices)."""

    def __init__(self, model):
        from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter
        self.out = []
        self.layers = []
        for name, m in model.named_modules():
            if isinstance(m, DeepseekV2TopkRouter):
                self.layers.append(int(name.split(".layers.")[1].split(".")[0]))
                m.register_forward_hook(lambda mod, args, out: self.out.append((out[0], out[2])))

    def take(self):
        o, self.out = self.out, []
        return o


def balance_loss(taps, B, T, E, K):
    """Sequence-wise f_i * P_i, summed over experts and layers, mean over sequences."""
    total = 0.0
    for logits, idx in taps:
        s = logits.view(B, T, E).softmax(dim=-1)
        counts = torch.zeros(B, E, dtype=s.dtype).scatter_add_(
            1, idx.view(B, T * K), torch.ones(B, T * K, dtype=s.dtype))
        f = counts * (E / (K * T))
        P = s.mean(dim=1)
        total = total + (f * P).sum(dim=-1).mean()
    return AUX_ALPHA * total


# ============================================================================
# Schedule
# ============================================================================


def lr_at(step, S):
    """step in [0, S). Returns (learning rate, L2 on?)."""
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
def evaluate(model, routers, x, y, E, K, bs=16, histogram=False):
    model.eval()
    nll, n = 0.0, 0
    hist = None
    for i in range(0, len(x), bs):
        xb, yb = x[i:i + bs], y[i:i + bs]
        logits = model(input_ids=xb, use_cache=False).logits
        nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                                 reduction="sum").item()
        n += yb.numel()
        taps = routers.take()
        if histogram:
            if hist is None:
                hist = np.zeros((len(taps), E), dtype=np.int64)
            for j, (_, idx) in enumerate(taps):
                hist[j] += np.bincount(idx.reshape(-1).numpy(), minlength=E)
    model.train()
    return nll / n, hist


# ============================================================================
# Export
# ============================================================================


def hf_state_dict(model, cfg):
    """The model's weights under the checkpoint's tensor names (transformers 5
    keeps each layer's experts fused: gate_up_proj (E, 2I, H) = gate rows then
    up rows, down_proj (E, H, I)), as F16."""
    I = cfg["moe_intermediate_size"]
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().to(torch.float16).contiguous()
        if k.endswith(".mlp.experts.gate_up_proj"):
            base = k[:-len("gate_up_proj")]
            for e in range(v.shape[0]):
                out["%s%d.gate_proj.weight" % (base, e)] = v[e, :I].clone()
                out["%s%d.up_proj.weight" % (base, e)] = v[e, I:].clone()
        elif k.endswith(".mlp.experts.down_proj"):
            base = k[:-len("down_proj")]
            for e in range(v.shape[0]):
                out["%s%d.down_proj.weight" % (base, e)] = v[e].clone()
        else:
            out[k] = v
    return out


def round_to_f16(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))


def build_model(cfg_dir):
    import transformers
    config = transformers.AutoConfig.from_pretrained(cfg_dir)
    kw = {"attn_implementation": "sdpa"}
    if int(transformers.__version__.split(".")[0]) >= 5:
        kw["experts_implementation"] = "eager"
    torch.manual_seed(SEED)
    model = transformers.DeepseekV2ForCausalLM._from_config(config, torch_dtype=torch.float32, **kw)
    return model


def plot(path, log, S):
    import matplotlib
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
    vl = [v[1] for v in log["val"]]
    ax.plot(vs, vl, "o-", color="#d94801", ms=3.5, lw=1.2, label="validation")
    ax.set_xlabel("step (%d tokens each)" % log["tokens_per_step"])
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_ylim(min(min(vl), smooth.min()) - 0.2, min(tl.max(), 8.5) + 0.1)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(steps, log["lr"], color="#969696", lw=0.9, ls="--", label="learning rate")
    ax2.set_ylabel("learning rate")
    ax2.set_ylim(0, PEAK_LR * 1.15)
    l2_from = int(round((WARMUP_FRAC + COSINE_FRAC) * S))
    ax.axvspan(l2_from, S, color="#fee391", alpha=0.35, lw=0, label="L2 (wd %.2g)" % WEIGHT_DECAY)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    ax.set_title("deepseek.h demo model (DeepSeek-V2 MoE, %.2fM params) on the KJV Bible" % (log["params"] / 1e6),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ============================================================================
# main
# ============================================================================


def keep_freed_memory():
    """glibc returns every freed block over its mmap threshold to the kernel,
    so each new large tensor is page-faulted in afresh (costly in a VM). Keep
    freed memory in the heap instead (glibc only; harmless elsewhere)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)   # M_TRIM_THRESHOLD
        libc.mallopt(-2, 64 << 20)  # M_TOP_PAD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD (the largest allowed)
    except (OSError, AttributeError):
        pass


def main():
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir")
    ap.add_argument("outdir")
    ap.add_argument("--steps", type=int, default=1300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=0, help="default: every 5%% of the steps")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    a = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    from tokenizers import Tokenizer
    tokdir = os.path.join(a.workdir, "tok")
    tok = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    cfg = hf_config(vocab)
    hfdir = os.path.join(a.outdir, "demo-hf")
    os.makedirs(hfdir, exist_ok=True)
    with open(os.path.join(hfdir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokdir, fn), os.path.join(hfdir, fn))

    train = load_ids(a.workdir, "train", tok)
    val = load_ids(a.workdir, "val", tok)
    vx, vy = val_windows(val, CTX)
    model = build_model(hfdir)
    model.train()
    routers = Routers(model)
    E, K = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    n_params = sum(p.numel() for p in model.parameters())
    n_active = n_params - sum(p.numel() for n, p in model.named_parameters() if ".experts." in n) * (E - K) // E
    print("train_demo: %d params (%.2fM; %.2fM active per token), train %d tokens, val %d tokens (%d windows)"
          % (n_params, n_params / 1e6, n_active / 1e6, len(train), len(val), len(vx)), flush=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
                           lr=0.0, betas=(0.9, 0.95), eps=1e-8)
    S = a.bench or a.steps
    eval_every = a.eval_every or max(1, S // 20)
    gen = torch.Generator().manual_seed(SEED)
    B, T = a.batch, CTX
    log = {"train_loss": [], "aux_loss": [], "lr": [], "val": [], "tokens_per_step": B * T, "params": n_params}
    t0 = time.time()
    for step in range(S):
        lr, l2 = lr_at(step, S)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.param_groups[0]["weight_decay"] = WEIGHT_DECAY if l2 else 0.0
        x, y = batch(train, B, T, gen)
        logits = model(input_ids=x, use_cache=False).logits
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        aux = balance_loss(routers.take(), B, T, E, K)
        loss = lm + aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        log["train_loss"].append(round(lm.item(), 5))
        log["aux_loss"].append(round(aux.item(), 6))
        log["lr"].append(lr)
        el = time.time() - t0
        if step % 10 == 0 or step == S - 1:
            print("step %5d/%d  lr %.2e%s  loss %.4f  aux %.4f  %.0f tok/s  %.0fs"
                  % (step + 1, S, lr, " L2" if l2 else "", lm.item(), aux.item(), (step + 1) * B * T / el, el),
                  flush=True)
        if not a.bench and ((step + 1) % eval_every == 0 or step == S - 1):
            vl, _ = evaluate(model, routers, vx, vy, E, K)
            log["val"].append((step + 1, round(vl, 5)))
            print("  val loss %.4f  ppl %.2f" % (vl, math.exp(vl)), flush=True)
    train_seconds = time.time() - t0
    if a.bench:
        print("bench: %.2f s/step, %.0f tokens/s" % (train_seconds / S, S * B * T / train_seconds))
        return
    torch.save(model.state_dict(), os.path.join(a.workdir, "demo_f32.pt"))

    # ---- the F16-rounded model from here on ----
    round_to_f16(model)
    vl, hist = evaluate(model, routers, vx, vy, E, K, histogram=True)
    g2 = torch.Generator().manual_seed(SEED + 1)
    tx, ty = zip(*[batch(train, 1, T, g2) for _ in range(len(vx))])
    tl, _ = evaluate(model, routers, torch.cat(tx), torch.cat(ty), E, K)
    sd = hf_state_dict(model, cfg)
    from safetensors.torch import save_file
    save_file(sd, os.path.join(hfdir, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(hfdir, "model.safetensors"), 0o644)

    moe_layers = routers.layers
    stats = {
        "params": n_params,
        "params_active_per_token": n_active,
        "architecture": ARCH,
        "context": CTX,
        "vocab": vocab,
        "steps": S,
        "batch": B,
        "tokens_per_step": B * T,
        "tokens_seen": S * B * T,
        "train_tokens": len(train),
        "val_tokens": len(val),
        "epochs": round(S * B * T / len(train), 3),
        "train_seconds": round(train_seconds, 1),
        "seed": SEED,
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "tokenizers": __import__("tokenizers").__version__},
        "final_train_loss_last5pct": round(float(np.mean(log["train_loss"][-max(1, S // 20):])), 4),
        "final_f16": {"val_loss": round(vl, 4), "val_ppl": round(math.exp(vl), 3),
                      "train_sample_loss": round(tl, 4), "train_sample_ppl": round(math.exp(tl), 3),
                      "train_sample_windows": len(vx)},
        "expert_usage_val": {"note": "tokens routed to each routed expert on the validation set (each token "
                                     "counts once for each of its top-%d experts), F16 weights" % K,
                             "layers": {str(l): hist[j].tolist() for j, l in enumerate(moe_layers)}},
        "log": log,
    }
    with open(os.path.join(a.outdir, "demo_stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)
        f.write("\n")
    plot(os.path.join(a.outdir, "demo_loss.png"), log, S)
    print("train_demo: %.1f min; final train loss (last 5%% of steps) %.4f; F16 weights: val loss %.4f, "
          "val ppl %.2f, train-sample loss %.4f"
          % (train_seconds / 60, stats["final_train_loss_last5pct"], vl, math.exp(vl), tl))
    print("expert usage on the validation set (tokens per routed expert):")
    for j, l in enumerate(moe_layers):
        h = hist[j]
        print("  layer %d: %s  (min %.1f%%, max %.1f%% of %d)"
              % (l, " ".join("%d" % c for c in h), 100 * h.min() / h.sum(), 100 * h.max() / h.sum(), h.sum()))


if __name__ == "__main__":
    main()
