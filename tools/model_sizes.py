#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Parameter counts, container sizes and memory needs of DeepSeek models, as
this runtime stores and runs them: the tables in README.md ("Models, sizes
and memory"). Standard library only.

    python3 tools/model_sizes.py                   # the README's tables (markdown)
    python3 tools/model_sizes.py --config DIR/config.json [--quant q8]
                                                   # one checkpoint: per class, and the file's layout
    python3 tools/model_sizes.py --config C --quant-experts q4 --quant-core q8 --json

The figures are computed from the shapes in each model's public config.json
(hidden size, layers, experts, intermediate sizes, vocabulary, MLA ranks),
not measured. The tensor list follows the converter's architecture table
(deepseek_impl/arch.c): every matrix of the Hugging Face checkpoint except
DeepSeek-V3's multi-token-prediction layer, which the converter skips.
Bytes per weight: F32 4, F16 2, Q8_0 34/32, Q4_0 18/32; norms and biases
stay F32, a matrix whose row is not a whole number of 32-value blocks falls
back to F16, and the router (each MoE layer's gate) is F32 unless asked.

The container: a 4 KiB header; one segment for the embeddings, one per
layer for its dense tensors, one per routed expert per layer, one for the
final norm and the head, its tensors at multiples of 64 bytes; each
segment sealed as chunks of 1 MiB of plaintext with a 16-byte tag each and
padded to a 4 KiB page; then the
metadata (config, tokenizer, directories; a few MB with a real tokenizer,
left out of the figures here).

Memory: the plaintext weights the runtime holds, plus one context: the KV
cache in F32 (MLA: the normalised latent and the roped key per token and
layer; multi-head attention: K and V) and the forward pass's scratch for a
batch of 256 tokens (deepseek_impl/cpu.c, dsi_cpu_ctx_new; the per-thread
buffers, a few hundred KB each, are left out). With --cache-mb the routed
experts live in a cache of that budget instead: dense part + budget + the
context.

tests/test_docs.sh checks this script against `ds inspect` on containers
the converter writes, and the README's tables against this script.
"""
import argparse
import json
import math
import sys

QUANTS = {"f32": "F32", "f16": "F16", "q8": "Q8_0", "q8_0": "Q8_0", "q4": "Q4_0", "q4_0": "Q4_0"}
PAGE = 4096
CHUNK = 1 << 20          # ds convert --chunk-kb default
TAG = 16                 # bytes per sealed chunk
TENSOR_ALIGN = 64        # DSI_TENSOR_ALIGN: tensors inside a segment start at multiples of this
HEADER = 4096
MAX_BATCH = 256          # DSI_MAX_BATCH: tokens per forward chunk
MLA_EXPAND = 8 << 20     # DSI_MLA_EXPAND_BYTES: expanded K/V scratch per context (at most)
MLA_EXPAND_MAX = 1024    # DSI_MLA_EXPAND_MAX: positions a batch may expand
Q8_BLOCK = 32            # DSI_Q8_BLOCK: values per scale of the int8 activations
MIB = 1 << 20
SLACK_FIXED = 64 << 20   # DS_PLAN_SLACK_FIXED: the memory plan's slack is this +
SLACK_DIV = 64           # mem / DS_PLAN_SLACK_DIV (deepseek.h, ds_memory_plan)
BUDGETS_GIB = (8, 16, 32, 64, 128, 256, 512)   # the README's budget table (--mem 8G, ...)
CTX = 4096               # the default context: min(4096, the model's maximum)

# The shapes of the released models, from their config.json on Hugging Face
# (deepseek-ai/...). DeepSeek-R1 has DeepSeek-V3's shapes, DeepSeek-V2.5
# (and V2-Chat) DeepSeek-V2's, DeepSeek-V2-Lite-Chat DeepSeek-V2-Lite's.
MODELS = [
    ("DeepSeek-V2-Lite", {
        "architectures": ["DeepseekV2ForCausalLM"], "vocab_size": 102400, "hidden_size": 2048,
        "intermediate_size": 10944, "moe_intermediate_size": 1408, "num_hidden_layers": 27,
        "num_attention_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "q_lora_rank": None, "kv_lora_rank": 512,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "topk_method": "greedy",
        "tie_word_embeddings": False, "max_position_embeddings": 163840}),
    ("DeepSeek-V2 / V2.5", {
        "architectures": ["DeepseekV2ForCausalLM"], "vocab_size": 102400, "hidden_size": 5120,
        "intermediate_size": 12288, "moe_intermediate_size": 1536, "num_hidden_layers": 60,
        "num_attention_heads": 128, "n_routed_experts": 160, "n_shared_experts": 2, "num_experts_per_tok": 6,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "q_lora_rank": 1536, "kv_lora_rank": 512,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
        "topk_method": "group_limited_greedy", "tie_word_embeddings": False, "max_position_embeddings": 163840}),
    ("DeepSeek-V3 / R1", {
        "architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 129280, "hidden_size": 7168,
        "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
        "num_attention_heads": 128, "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8,
        "first_k_dense_replace": 3, "moe_layer_freq": 1, "q_lora_rank": 1536, "kv_lora_rank": 512,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "topk_method": "noaux_tc",
        "tie_word_embeddings": False, "max_position_embeddings": 163840}),
    ("DeepSeek-MoE-16B", {
        "architectures": ["DeepseekForCausalLM"], "vocab_size": 102400, "hidden_size": 2048,
        "intermediate_size": 10944, "moe_intermediate_size": 1408, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2,
        "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "tie_word_embeddings": False, "max_position_embeddings": 4096}),
]

# (heading, experts, core) with the router F32, as `ds convert` does them.
RECIPES = [
    ("F16", "F16", "F16", "`--quant f16`"),
    ("Q8_0", "Q8_0", "Q8_0", "`--quant q8` (the default)"),
    ("Q4_0", "Q4_0", "Q4_0", "`--quant q4`"),
    ("mixed", "Q4_0", "Q8_0", "`--quant-experts q4 --quant-core q8`"),
]


def get(c, key, default=0):
    v = c.get(key)
    return default if v is None else v


def is_mla(c):
    return c["architectures"][0] != "DeepseekForCausalLM"


def is_moe_layer(c, i):
    return get(c, "n_routed_experts") > 0 and i >= get(c, "first_k_dense_replace") and \
        i % get(c, "moe_layer_freq", 1) == 0


def tensors(c):
    """Every tensor the container holds, in the converter's order: tuples
    (segment, class, rows, cols, keep_f32), cols 0 for a vector. segment is
    a key shared by the tensors of one sealed segment; class is core,
    experts or router."""
    H, L, V = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    nh = c["num_attention_heads"]
    out = [(("embed",), "core", V, H, False)]
    for i in range(L):
        seg = ("layer", i)
        out.append((seg, "core", H, 0, True))                       # input_layernorm
        if is_mla(c):
            qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
            R, ql = c["kv_lora_rank"], get(c, "q_lora_rank")
            if ql:
                out += [(seg, "core", ql, H, False), (seg, "core", ql, 0, True), (seg, "core", nh * qk, ql, False)]
            else:
                out.append((seg, "core", nh * qk, H, False))
            out += [(seg, "core", R + c["qk_rope_head_dim"], H, False), (seg, "core", R, 0, True),
                    (seg, "core", nh * (c["qk_nope_head_dim"] + c["v_head_dim"]), R, False),
                    (seg, "core", H, nh * c["v_head_dim"], False)]
        else:
            hd = H // nh
            kv = get(c, "num_key_value_heads", nh) * hd
            out += [(seg, "core", nh * hd, H, False), (seg, "core", kv, H, False), (seg, "core", kv, H, False),
                    (seg, "core", H, nh * hd, False)]
        out.append((seg, "core", H, 0, True))                       # post_attention_layernorm
        if is_moe_layer(c, i):
            E, mi, ns = c["n_routed_experts"], c["moe_intermediate_size"], get(c, "n_shared_experts")
            out.append((seg, "router", E, H, False))                # mlp.gate
            if c.get("topk_method") == "noaux_tc":
                out.append((seg, "router", E, 0, True))             # e_score_correction_bias
            if ns:
                out += [(seg, "core", mi * ns, H, False), (seg, "core", mi * ns, H, False),
                        (seg, "core", H, mi * ns, False)]
            for e in range(E):
                s = ("expert", i, e)
                out += [(s, "experts", mi, H, False), (s, "experts", mi, H, False), (s, "experts", H, mi, False)]
        else:
            I = c["intermediate_size"]
            out += [(seg, "core", I, H, False), (seg, "core", I, H, False), (seg, "core", H, I, False)]
    out.append((("final",), "core", H, 0, True))                    # model.norm
    if not c.get("tie_word_embeddings"):
        out.append((("final",), "core", V, H, False))               # lm_head
    return out


def tensor_bytes(dtype, rows, cols, keep_f32):
    n = rows * (cols or 1)
    if keep_f32 or not cols or dtype == "F32":
        return n * 4
    if dtype == "F16" or cols % 32:
        return n * 2
    return rows * (cols // 32) * (34 if dtype == "Q8_0" else 18)


def layout(c, experts="Q8_0", core="Q8_0", router="F32"):
    """Parameters and bytes per class, the segments' plaintext sizes, the
    file's bytes before the metadata, and the largest expert."""
    by = {"core": core, "experts": experts, "router": router}
    params = {"core": 0, "experts": 0, "router": 0}
    nbytes = {"core": 0, "experts": 0, "router": 0}
    segs = {}
    order = []
    for seg, cls, rows, cols, keep in tensors(c):
        b = tensor_bytes(by[cls], rows, cols, keep)
        params[cls] += rows * (cols or 1)
        nbytes[cls] += b
        if seg not in segs:
            segs[seg] = 0
            order.append(seg)
        segs[seg] = -(-segs[seg] // TENSOR_ALIGN) * TENSOR_ALIGN + b
    stored = HEADER
    sealed = 0
    for s in order:
        plain = segs[s]
        sealed += plain + TAG * -(-plain // CHUNK)
        stored = -(-(stored + plain + TAG * -(-plain // CHUNK)) // PAGE) * PAGE
    largest = max([segs[s] for s in order if s[0] == "expert"] or [0])
    # in memory: each segment in whole pages (file.c, pager.c)
    ex = [page_up(segs[s]) for s in order if s[0] == "expert"]
    return {"params": params, "bytes": nbytes, "segments": [segs[s] for s in order], "file_before_metadata": stored,
            "sealed_bytes": sealed, "largest_expert": largest,
            "resident_pages": sum(page_up(segs[s]) for s in order if s[0] != "expert"),
            "expert_pages": sum(ex), "n_experts": len(ex), "slot": max(ex or [0]),
            "expert_layers": len({s[1] for s in order if s[0] == "expert"})}


def page_up(n):
    return -(-max(n, 1) // PAGE) * PAGE


def mib_up(n):
    return -(-n // MIB) * MIB


def moe_layers(c):
    return sum(1 for i in range(c["num_hidden_layers"]) if is_moe_layer(c, i))


def active_params(c, lay):
    """Per token: the weights a token's forward pass multiplies with:
    everything but the routed experts and the embedding matrix (a lookup
    reads one row of it), plus top-k experts in every MoE layer."""
    embed = c["vocab_size"] * c["hidden_size"]
    dense = lay["params"]["core"] + lay["params"]["router"] - embed
    E = get(c, "n_routed_experts")
    if not E:
        return dense
    per_expert = lay["params"]["experts"] / (E * moe_layers(c))
    return dense + c["num_experts_per_tok"] * moe_layers(c) * per_expert


def kv_bytes_per_token(c):
    L = c["num_hidden_layers"]
    if is_mla(c):
        return L * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * 4
    hd = c["hidden_size"] // c["num_attention_heads"]
    return L * 2 * get(c, "num_key_value_heads", c["num_attention_heads"]) * hd * 4


def scratch_bytes(c, n_ctx, n_seq=1):
    """The big per-context buffers of dsi_cpu_ctx_new and ds_context_new for a
    batch of MAX_BATCH tokens (F32), the int8 activations (row-major and in
    token-lane tiles), the MLA expansion scratch, rows of logits and the
    token ids; the same as deepseek_impl/forward.c's dsi_plan_context."""
    T, D, nh = MAX_BATCH, c["hidden_size"], c["num_attention_heads"]
    E = max(get(c, "n_routed_experts"), 1)
    shared = c.get("moe_intermediate_size", 0) * max(get(c, "n_shared_experts"), 1)
    inter = max(c["intermediate_size"], shared)
    if is_mla(c):
        hd = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
        ql, R = get(c, "q_lora_rank"), c["kv_lora_rank"]
        q_dim, qa_dim = max(nh * hd, ql), max(ql, 1)
        kva_dim, att_dim = R + c["qk_rope_head_dim"], nh * c["v_head_dim"]
    else:
        hd = D // nh
        kvh = get(c, "num_key_value_heads", nh)
        q_dim, qa_dim, R = nh * hd, 1, 0
        kva_dim, att_dim = 2 * kvh * hd, nh * hd
    widest = max(D, R, inter, att_dim, get(c, "q_lora_rank"))
    floats = T * (5 * D + q_dim + qa_dim + kva_dim + att_dim + 2 * inter + E)
    expand = 0
    if is_mla(c):   # the expanded K/V of as many heads as fit MLA_EXPAND
        per_head = MLA_EXPAND_MAX * (c["qk_nope_head_dim"] + c["v_head_dim"]) * 4
        expand = per_head * max(1, min(nh, MLA_EXPAND // per_head))
    logits = c["vocab_size"] * 4 * (1 + (n_seq if n_seq > 1 else 0))   # + a batch step's, per sequence
    lanes = T * (widest // Q8_BLOCK) * (Q8_BLOCK + 4)   # token-lane tiles (AVX2, VNNI): T x cols bytes + scales
    return (floats * 4 + T * widest + T * (widest // Q8_BLOCK + 1) * 4 + lanes + expand + logits +
            n_seq * n_ctx * 4)


def context_bytes(c, n_ctx, n_seq=1):
    return kv_bytes_per_token(c) * n_ctx * n_seq + scratch_bytes(c, n_ctx, n_seq)


def plan(c, lay, n_ctx, mem=0, n_seq=1):
    """ds_model_memory_plan (deepseek_impl/forward.c) from a config: the same
    fields, the same formula. tests/test_plan.sh compares the two."""
    res, exp, n, slot = lay["resident_pages"], lay["expert_pages"], lay["n_experts"], lay["slot"]
    kv_tok = kv_bytes_per_token(c)
    ctx = context_bytes(c, n_ctx, n_seq)
    p = {"n_ctx": n_ctx, "n_seq": n_seq, "resident_bytes": res, "expert_bytes": exp, "n_experts": n,
         "n_expert_layers": lay["expert_layers"], "slot_bytes": slot, "kv_bytes_per_token": kv_tok,
         "kv_bytes": kv_tok * n_ctx * n_seq, "scratch_bytes": scratch_bytes(c, n_ctx, n_seq), "context_bytes": ctx,
         "full_bytes": res + exp + ctx, "min_paged_bytes": res + ctx + 2 * slot if n else 0}
    need = res + ctx + min(mib_up(2 * slot), exp) + SLACK_FIXED
    m = need // (SLACK_DIV - 1) * SLACK_DIV        # the least M with M - M // SLACK_DIV >= need
    while m - m // SLACK_DIV < need:
        m += 1
    while m > 0 and (m - 1) - (m - 1) // SLACK_DIV >= need:
        m -= 1
    p["min_mem_bytes"] = m
    if not mem:
        return p
    slack = SLACK_FIXED + mem // SLACK_DIV
    p.update({"mem_bytes": mem, "slack_bytes": slack, "fits": mem >= m, "all_resident": False,
              "shortfall_bytes": max(m - mem, 0), "cache_bytes": 0, "cache_mb": 0, "cache_slots": 0,
              "cache_share": 0.0, "hit_rate": 0.0, "hit_model": "uniform"})
    if mem < m:
        return p
    room = mem - slack - res - ctx
    if room >= exp:
        p.update({"all_resident": True, "cache_slots": n, "cache_share": 1.0, "hit_rate": 1.0})
        return p
    cache = room // MIB * MIB
    slots = min(cache // slot, n)
    cache = min(cache, mib_up(slots * slot))
    p.update({"cache_bytes": cache, "cache_mb": cache // MIB, "cache_slots": slots, "cache_share": slots / n,
              "hit_rate": slots / n})
    return p


def parse_size(text):
    """--mem as ds inspect reads it: K, M, G, T, P (or KiB, ...) powers of
    1024, KB, MB, ... of 1000."""
    import re
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:([kmgtpKMGTP])(iB|ib|B|b)?)?", text)
    if not m or (m.group(2) and not m.group(3)):
        raise ValueError("not a size: %r" % text)
    mult = 1
    if m.group(3):
        base = 1000 if m.group(4) in ("B", "b") else 1024
        mult = base ** ("kmgtp".index(m.group(3).lower()) + 1)
    frac = m.group(2) or ""
    return int(m.group(1)) * mult + int(frac[:9] or 0) * mult // 10 ** len(frac[:9])


def gb(x):
    return "%.1f" % (x / 1e9) if x < 100e9 else "%.0f" % (x / 1e9)


def billions(x):
    if x < 1e9:
        return "%.3f B" % (x / 1e9)
    return "%.2f B" % (x / 1e9) if x < 10e9 else "%.1f B" % (x / 1e9) if x < 100e9 else "%.0f B" % (x / 1e9)


def readme_tables():
    out = []
    w = out.append
    w("Parameters (B = 10^9), by class as `ds inspect` counts them: the routed experts (paged), "
      "everything else (always resident: embeddings, attention, dense and shared-expert FFNs, norms, "
      "the head) and the routers.")
    w("")
    w("| model | total | active per token | routed experts | dense part | routers | MoE layers x experts, top-k |")
    w("|---|---:|---:|---:|---:|---:|---|")
    for name, c in MODELS:
        lay = layout(c)
        p = lay["params"]
        w("| %s | %s | %s | %s | %s | %s | %d x %d, top-%d |" % (
            name, billions(sum(p.values())), billions(active_params(c, lay)), billions(p["experts"]),
            billions(p["core"]), billions(p["router"]), moe_layers(c), c["n_routed_experts"],
            c["num_experts_per_tok"]))
    w("")
    w("Container size in GB (10^9 bytes; the tokenizer's few MB of metadata left out). "
      "In brackets, the dense part (routers included) / the routed experts:")
    w("")
    w("| model | " + " | ".join("%s: %s" % (h, flag) for h, _, _, flag in RECIPES) + " |")
    w("|---|" + "---:|" * len(RECIPES))
    for name, c in MODELS:
        cells = []
        for _, ex, co, _ in RECIPES:
            lay = layout(c, ex, co)
            b = lay["bytes"]
            cells.append("%s (%s / %s)" % (gb(lay["file_before_metadata"]), gb(b["core"] + b["router"]),
                                          gb(b["experts"])))
        w("| %s | %s |" % (name, " | ".join(cells)))
    w("")
    w("Memory in GB for one context of %d tokens (`ds run`; `ds-server` holds one per `--max-concurrent`), "
      "with the mixed recipe and with Q8_0: all experts resident (no `--cache-mb`), and with an expert cache "
      "(`--cache-mb`): the dense part and the context stay, the cache budget comes on top." % CTX)
    w("")
    w("| model | KV cache per token | one context (KV + scratch) | mixed: resident | mixed: dense + context "
      "(+ `--cache-mb`) | mixed: with a cache of 10% of the experts | Q8_0: resident | Q8_0: with a cache of 10% "
      "of the experts |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, c in MODELS:
        n_ctx = min(CTX, c["max_position_embeddings"])
        ctxb = context_bytes(c, n_ctx)
        cells = []
        for ex, co in (("Q4_0", "Q8_0"), ("Q8_0", "Q8_0")):
            p = plan(c, layout(c, ex, co), n_ctx)
            dense = p["resident_bytes"]
            cells.append((gb(p["full_bytes"]), gb(dense + ctxb), gb(dense + ctxb + p["expert_bytes"] / 10)))
        w("| %s | %.0f KB | %s | %s | %s | %s | %s | %s |" % (
            name, kv_bytes_per_token(c) / 1e3, gb(ctxb), cells[0][0], cells[0][1], cells[0][2], cells[1][0],
            cells[1][2]))
    w("")
    w("Fitting a memory budget (`build/ds inspect MODEL --plan --mem SIZE`, `ds_model_memory_plan`), one context "
      "of %d tokens, in GB: all experts resident; the least budget that runs (the dense part, the context, an "
      "expert cache of two experts and the slack); and for each budget (GiB, as `--mem 8G`) the share of the "
      "routed experts its expert cache holds: under uniform routing also the share of expert lookups served from "
      "memory. \"all\": every expert fits, no `--cache-mb`; \"-\": does not fit." % CTX)
    w("")
    w("| model | recipe | file | all resident | least budget | " +
      " | ".join("%d GiB" % g for g in BUDGETS_GIB) + " |")
    w("|---|---|---:|---:|---:|" + "---:|" * len(BUDGETS_GIB))
    for name, c in MODELS:
        n_ctx = min(CTX, c["max_position_embeddings"])
        for heading, ex, co, _ in RECIPES:
            lay = layout(c, ex, co)
            p = plan(c, lay, n_ctx)
            cells = []
            for g in BUDGETS_GIB:
                b = plan(c, lay, n_ctx, g << 30)
                cells.append("-" if not b["fits"] else "all" if b["all_resident"] else
                             "%.0f%%" % (100 * b["cache_share"]) if b["cache_share"] >= 0.01 else
                             "%.1f%%" % (100 * b["cache_share"]))
            w("| %s | %s | %s | %s | %s | %s |" % (name, heading, gb(lay["file_before_metadata"]), gb(p["full_bytes"]),
                                              gb(p["min_mem_bytes"]), " | ".join(cells)))
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="a checkpoint's config.json: print its figures instead of the README's tables")
    ap.add_argument("--quant", default="q8", help="f32|f16|q8|q4 (default q8), as ds convert")
    ap.add_argument("--quant-experts", help="routed experts (default --quant)")
    ap.add_argument("--quant-core", help="everything else but the routers (default --quant)")
    ap.add_argument("--quant-router", default="f32", help="the routers (default f32)")
    ap.add_argument("--ctx", type=int, default=0, help="context for the memory figures (default min(4096, maximum))")
    ap.add_argument("--mem", help="a memory budget (8G, 8192M, 8589934592): the plan of ds inspect --plan --mem")
    ap.add_argument("--seqs", type=int, default=1, help="sequences of the context (ds-server --max-concurrent)")
    ap.add_argument("--json", action="store_true", help="one JSON object")
    a = ap.parse_args()
    if not a.config:
        sys.stdout.write(readme_tables())
        return 0
    q = {}
    for k in ("quant", "quant_experts", "quant_core", "quant_router"):
        v = getattr(a, k)
        if v is not None and v.lower() not in QUANTS:
            ap.error("--%s: want f32, f16, q8 or q4, not %r" % (k.replace("_", "-"), v))
        q[k] = QUANTS[v.lower()] if v is not None else None
    with open(a.config) as f:
        c = json.load(f)
    mem = 0
    if a.mem is not None:
        try:
            mem = parse_size(a.mem)
        except ValueError:
            mem = 0
        if not mem:
            ap.error("--mem: want a size above 0 such as 8G, 8192M or 8589934592, not %r" % a.mem)
    lay = layout(c, q["quant_experts"] or q["quant"], q["quant_core"] or q["quant"], q["quant_router"])
    n_ctx = a.ctx or min(CTX, get(c, "max_position_embeddings", CTX))
    res = {
        "params": lay["params"], "bytes": lay["bytes"], "segments": len(lay["segments"]),
        "segment_bytes": lay["segments"], "sealed_bytes": lay["sealed_bytes"],
        "file_before_metadata": lay["file_before_metadata"], "largest_expert": lay["largest_expert"],
        "active_params": int(round(active_params(c, lay))), "kv_bytes_per_token": kv_bytes_per_token(c),
        "n_ctx": n_ctx, "context_bytes": context_bytes(c, n_ctx), "plan": plan(c, lay, n_ctx, mem, a.seqs),
    }
    if a.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    for cls in ("core", "experts", "router"):
        print("%-8s %14d parameters %16d bytes" % (cls, lay["params"][cls], lay["bytes"][cls]))
    print("active   %14d parameters per token" % res["active_params"])
    print("file     %d bytes before the metadata, %d segments, largest expert %d bytes" % (
        res["file_before_metadata"], res["segments"], res["largest_expert"]))
    print("context  %d tokens: KV %d bytes per token, %d bytes with the scratch" % (
        n_ctx, res["kv_bytes_per_token"], res["context_bytes"]))
    p = res["plan"]
    print("memory   %d bytes all resident; %d resident (dense) + %d experts in slots of %d; least budget %d" % (
        p["full_bytes"], p["resident_bytes"], p["expert_bytes"], p["slot_bytes"], p["min_mem_bytes"]))
    if mem:
        if not p["fits"]:
            print("budget   %d bytes: does not fit, %d bytes short" % (mem, p["shortfall_bytes"]))
        elif p["all_resident"]:
            print("budget   %d bytes: fits with every expert resident" % mem)
        else:
            print("budget   %d bytes: --cache-mb %d, %d of %d experts (%.1f%%: the expected hit rate, uniform "
                  "routing)" % (mem, p["cache_mb"], p["cache_slots"], p["n_experts"], 100 * p["hit_rate"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
