#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_goldens.py -- reference logits ("goldens") for the tiny test checkpoints.

For each family written by tests/gen/make_checkpoint.py, load the true F32
weights (expected.safetensors) into an independent PyTorch implementation,
run one fixed 32-token sequence and save the logits of every position:

  family         reference model
  v2lite, v2,    transformers' own DeepseekV2ForCausalLM (native, no remote code)
  yarn,
  v2lite_sharded
  v3             transformers' own DeepseekV3ForCausalLM (native)
  moe16b         DeepseekForCausalLM from the Hub remote code of
                 deepseek-ai/deepseek-moe-16b-base (modeling_deepseek.py +
                 configuration_deepseek.py), given with --moe-modeling DIR;
                 needs a transformers of its era (4.36-4.39), see README.md

Everything runs in float32 on the CPU, eager attention, eval mode, no dropout.

Optional cross-check (--v3-inference PATH): DeepSeek's own inference/model.py
(github deepseek-ai/DeepSeek-V3) is run on the same weights for every MLA family
and the largest |logit difference| from the transformers logits is reported and
stored in the sidecar. model.py imports a `kernel` module (Triton FP8 kernels);
a stub with the same three names is installed at run time (none is called: all
weights are F32). None of that code is copied into this repository.

Outputs, in OUTDIR (default tests/ref/goldens):
  tokens.json                      the 32 token ids (same for every family)
  <family>.logits.f32              float32 little-endian, row-major [32][vocab]
  <family>.json                    sidecar: ids, shape, versions, top-1 per
                                   position, margins, checks, hashes
  v2lite.incremental.logits.f32    v2lite through the KV cache: prefill 20
                                   tokens, then 12 single-token steps
  index.json                       the families present and their files

    make_goldens.py --testdata build/testdata [--out DIR] [--families a,b]
                    [--v3-inference PATH] [--moe-modeling DIR] [--check]

--check compares freshly computed logits with the files already in OUTDIR
(and writes nothing); exit status 1 if any differs by more than 1e-4.
"""
import argparse
import hashlib
import importlib
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

N_TOKENS = 32
PREFILL = 20
TOKEN_SEED = 36  # chosen among seeds 1..60 for a large smallest routing gap
                 # (8.7e-5) with top-1 margins >= 5e-4 in all six families
ALL_FAMILIES = ["v2lite", "v2", "v3", "moe16b", "v2lite_sharded", "yarn", "v3e256"]
MLA_ARCHS = ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM")


# ============================================================================
# Inputs
# ============================================================================


def token_ids(vocab=512, n=N_TOKENS, seed=TOKEN_SEED):
    """BOS (id 0) followed by n-1 pseudo-random ids in [3, vocab): a 31-bit
    LCG from a fixed seed. The same sequence for every family (vocab 512)."""
    ids = [0]
    x = seed
    while len(ids) < n:
        x = (1103515245 * x + 12345) % (1 << 31)
        ids.append(3 + (x >> 16) % (vocab - 3))
    return ids


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_expected(famdir):
    from safetensors.numpy import load_file
    return load_file(os.path.join(famdir, "expected.safetensors"))


def load_config(famdir):
    with open(os.path.join(famdir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


# ============================================================================
# transformers (native DeepseekV2 / DeepseekV3)
# ============================================================================


def build_hf_native(famdir, cfg, expected):
    """Loads the family through transformers' own from_pretrained from a
    temporary directory that holds config.json (minus auto_map, so no remote
    code, and minus quantization_config: the F32 values are the dequantized
    FP8 ones) and model.safetensors with the F32 expected values. transformers
    does its own key conversion (it fuses the per-expert matrices)."""
    import transformers
    from safetensors.numpy import save_file
    c = dict(cfg)
    c.pop("auto_map", None)
    c.pop("quantization_config", None)
    tmp = tempfile.mkdtemp(prefix="ds_golden_")
    try:
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(c, f)
        save_file({k: np.ascontiguousarray(v) for k, v in expected.items()},
                  os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        kw = dict(dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
        major = int(transformers.__version__.split(".")[0])
        if major >= 5:
            kw["experts_implementation"] = "eager"
        model, info = transformers.AutoModelForCausalLM.from_pretrained(tmp, **kw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v}
    if bad or info.get("error_msgs"):
        raise SystemExit("%s: loading reported %r %r" % (famdir, bad, info.get("error_msgs")))
    model.eval()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    verify_loaded(model, cfg, expected)
    return model


def verify_loaded(model, cfg, expected):
    """Every parameter and buffer of the model that holds weights must equal
    the expected values bit for bit (catches silently initialised weights)."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    covered = set()
    mi = cfg.get("moe_intermediate_size")

    def check(key, got, want, what):
        if tuple(got.shape) != tuple(want.shape) or not torch.equal(got, torch.from_numpy(want)):
            raise SystemExit("weight %s (%s) differs from expected.safetensors" % (key, what))

    for name, arr in expected.items():
        if name in sd:
            check(name, sd[name], arr, name)
            covered.add(name)
            continue
        # fused expert tensors (transformers >= 5): gate_up_proj[e] = cat(gate, up)
        parts = name.split(".")
        if ".mlp.experts." in name and parts[-2] in ("gate_proj", "up_proj", "down_proj"):
            e = int(parts[-3])
            base = ".".join(parts[:-3])
            if parts[-2] == "down_proj":
                key = base + ".down_proj"
                check(key, sd[key][e], arr, name)
            else:
                key = base + ".gate_up_proj"
                half = sd[key][e][:mi] if parts[-2] == "gate_proj" else sd[key][e][mi:]
                check(key, half, arr, name)
            covered.add(key)
            continue
        raise SystemExit("expected tensor %s has no place in the model" % name)
    tied = bool(cfg.get("tie_word_embeddings"))
    for key, t in sd.items():
        if key in covered or not t.is_floating_point():
            continue
        if key == "lm_head.weight" and tied:
            check(key, t, expected["model.embed_tokens.weight"], "tied to embed_tokens")
            continue
        if key.endswith("inv_freq") or "rotary_emb" in key:
            continue
        raise SystemExit("model tensor %s was not loaded from expected.safetensors" % key)


# ============================================================================
# DeepSeek-MoE remote code (model_type "deepseek")
# ============================================================================


def build_moe_remote(moe_dir, cfg, expected):
    """Imports modeling_deepseek.py / configuration_deepseek.py from moe_dir as
    a throwaway package (the files use relative imports) and loads the F32
    weights with a strict load_state_dict."""
    import transformers
    for f in ("modeling_deepseek.py", "configuration_deepseek.py"):
        if not os.path.isfile(os.path.join(moe_dir, f)):
            raise SystemExit("--moe-modeling %s: no %s there" % (moe_dir, f))
    pkgroot = tempfile.mkdtemp(prefix="ds_moe_remote_")
    pkg = os.path.join(pkgroot, "ds_moe_remote_pkg")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for f in ("modeling_deepseek.py", "configuration_deepseek.py"):
        shutil.copy(os.path.join(moe_dir, f), os.path.join(pkg, f))
    sys.path.insert(0, pkgroot)
    try:
        mod = importlib.import_module("ds_moe_remote_pkg.modeling_deepseek")
        confmod = importlib.import_module("ds_moe_remote_pkg.configuration_deepseek")
    except Exception as e:  # noqa: BLE001
        raise SystemExit("cannot import the DeepSeek-MoE remote code with transformers %s (%s: %s); "
                         "run the moe16b family with a transformers of its era (4.36-4.39), see README.md"
                         % (transformers.__version__, type(e).__name__, e))
    finally:
        sys.path.remove(pkgroot)
    c = dict(cfg)
    for k in ("architectures", "auto_map", "model_type", "transformers_version", "torch_dtype"):
        c.pop(k, None)
    config = confmod.DeepseekConfig(**c)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = mod.DeepseekForCausalLM(config).to(torch.float32)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in expected.items()}
    missing, unexpected = model.load_state_dict(sd, strict=True)
    assert not missing and not unexpected
    model.eval()
    verify_loaded(model, cfg, expected)
    files = {f: sha256_file(os.path.join(moe_dir, f)) for f in ("modeling_deepseek.py", "configuration_deepseek.py")}
    return model, files


# ============================================================================
# Running a transformers-style model
# ============================================================================


def _out_cache(out):
    for name in ("cache", "past_key_values"):
        v = getattr(out, name, None)
        if v is not None:
            return v
    raise SystemExit("model output has no cache")


def _call(model, ids, cache):
    """forward with a KV cache, across transformers versions (the argument
    was renamed from past_key_values to cache in 5.x)."""
    try:
        return model(input_ids=ids, cache=cache, use_cache=True)
    except TypeError:
        return model(input_ids=ids, past_key_values=cache, use_cache=True)


def run_full(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].float().numpy().astype(np.float32)


N_GREEDY = 32


def run_greedy(model, ids, n=N_GREEDY):
    """The reference's own greedy continuation of the whole sequence, one full
    pass per step (no cache, so nothing of ours is assumed). Returns the ids
    and, per step, the margin between the top two logits."""
    seq, out, margins = list(ids), [], []
    with torch.no_grad():
        for _ in range(n):
            lg = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1].float().numpy()
            top = np.argsort(lg)[::-1][:2]
            out.append(int(top[0]))
            margins.append(round(float(lg[top[0]] - lg[top[1]]), 6))
            seq.append(int(top[0]))
    return out, margins


def run_incremental(model, ids, prefill=PREFILL):
    """Tokens 0..prefill-1 in one call, then one token per call through the
    cache. Returns the logits of every position (prefill rows, then steps)."""
    rows = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids[:prefill]]), use_cache=True)
        rows.append(out.logits[0].float().numpy())
        cache = _out_cache(out)
        for t in range(prefill, len(ids)):
            out = _call(model, torch.tensor([[ids[t]]]), cache)
            rows.append(out.logits[0].float().numpy())
            cache = _out_cache(out)
    return np.concatenate(rows, axis=0).astype(np.float32)


# ============================================================================
# Routing diagnostics (how close the expert choices were to a tie)
# ============================================================================


class RouterTap:
    """Records the input of every router (gate) module during a forward."""

    def __init__(self, model):
        self.inputs = []
        self.handles = []
        for name, m in model.named_modules():
            if name.endswith("mlp.gate") and hasattr(m, "weight"):
                self.handles.append(m.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def f(mod, args, out):
            self.inputs.append((name, mod, args[0].detach().reshape(-1, args[0].shape[-1]).double()))
        return f

    def close(self):
        for h in self.handles:
            h.remove()


def routing_gaps(cfg, tap):
    """Smallest gap, over all MoE layers and positions, between the last
    selected and the first rejected candidate (experts, and groups where
    group-limited routing applies), in the units of the selection score, and
    per position the smallest of those gaps over the MoE layers. A C
    implementation may route differently only where a gap is near its own
    rounding error (~1e-6 in float32; far more with F16/int8 weights)."""
    k = cfg["num_experts_per_tok"]
    E = cfg["n_routed_experts"]
    n_group = cfg.get("n_group") or 1
    topk_group = cfg.get("topk_group") or 1
    method = cfg.get("topk_method", "greedy")
    sigmoid = cfg.get("scoring_func", "softmax") == "sigmoid"
    min_expert, min_group = math.inf, math.inf
    per_pos = None
    for _, mod, h in tap.inputs:
        logits = h @ mod.weight.detach().double().t()
        s = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=-1)
        if hasattr(mod, "e_score_correction_bias"):
            s = s + mod.e_score_correction_bias.detach().double()
        if method in ("group_limited_greedy", "noaux_tc") and n_group > 1:
            g = s.view(-1, n_group, E // n_group)
            gs = g.topk(2, dim=-1)[0].sum(-1) if method == "noaux_tc" else g.max(-1).values
            sg = gs.sort(dim=-1, descending=True).values
            min_group = min(min_group, float((sg[:, topk_group - 1] - sg[:, topk_group]).min()))
            keep = torch.zeros_like(gs).scatter_(1, gs.topk(topk_group, dim=-1)[1], 1.0)
            keep = keep.unsqueeze(-1).expand(-1, n_group, E // n_group).reshape(-1, E)
            s = s.masked_fill(keep == 0, -math.inf)
        ss = s.sort(dim=-1, descending=True).values
        gap = ss[:, k - 1] - ss[:, k]
        if method in ("group_limited_greedy", "noaux_tc") and n_group > 1:
            gap = torch.minimum(gap, sg[:, topk_group - 1] - sg[:, topk_group])
        min_expert = min(min_expert, float((ss[:, k - 1] - ss[:, k]).min()))
        per_pos = gap if per_pos is None else torch.minimum(per_pos, gap)
    r = {"min_expert_selection_gap": min_expert,
         "per_position_min_gap": [float("%.3g" % float(v)) for v in per_pos]}
    if min_group != math.inf:
        r["min_group_selection_gap"] = min_group
    return r


# ============================================================================
# DeepSeek's inference/model.py (cross-check for the MLA families)
# ============================================================================


def find_model_py(path):
    for p in (path, os.path.join(path, "model.py"), os.path.join(path, "inference", "model.py")):
        if os.path.isfile(p):
            return p
    raise SystemExit("--v3-inference %s: no model.py there (nor inference/model.py)" % path)


def import_v3_model(model_py):
    """Imports DeepSeek's model.py as a private module, with a stub `kernel`
    module (its Triton FP8 kernels are only called for 1-byte weights)."""
    stub = types.ModuleType("kernel")

    def _unused(*a, **k):
        raise RuntimeError("the FP8 kernel stub was called: a weight was not float32")
    stub.act_quant = stub.weight_dequant = stub.fp8_gemm = _unused
    saved = sys.modules.get("kernel")
    sys.modules["kernel"] = stub
    try:
        spec = importlib.util.spec_from_file_location("ds_v3_inference_model", model_py)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if saved is None:
            del sys.modules["kernel"]
        else:
            sys.modules["kernel"] = saved
    if not hasattr(torch.nn.functional, "rms_norm"):
        raise SystemExit("model.py needs torch.nn.functional.rms_norm (torch >= 2.4)")
    return mod


HF_TO_REF = [  # (HF name piece, model.py name piece), applied in order
    ("model.embed_tokens.", "embed."),
    ("model.norm.", "norm."),
    ("lm_head.", "head."),
    ("model.layers.", "layers."),
    (".input_layernorm.", ".attn_norm."),
    (".post_attention_layernorm.", ".ffn_norm."),
    (".self_attn.q_proj.", ".attn.wq."),
    (".self_attn.q_a_proj.", ".attn.wq_a."),
    (".self_attn.q_a_layernorm.", ".attn.q_norm."),
    (".self_attn.q_b_proj.", ".attn.wq_b."),
    (".self_attn.kv_a_proj_with_mqa.", ".attn.wkv_a."),
    (".self_attn.kv_a_layernorm.", ".attn.kv_norm."),
    (".self_attn.kv_b_proj.", ".attn.wkv_b."),
    (".self_attn.o_proj.", ".attn.wo."),
    (".mlp.gate.e_score_correction_bias", ".ffn.gate.bias"),
    (".mlp.", ".ffn."),
    (".gate_proj.", ".w1."),
    (".down_proj.", ".w2."),
    (".up_proj.", ".w3."),
]


def ref_name(name):
    for a, b in HF_TO_REF:
        name = name.replace(a, b)
    return name


def v3_args(mod, cfg):
    rs = cfg.get("rope_scaling") or None
    mp = cfg["max_position_embeddings"]
    a = dict(
        max_batch_size=1, dtype="bf16",
        vocab_size=cfg["vocab_size"], dim=cfg["hidden_size"], inter_dim=cfg["intermediate_size"],
        moe_inter_dim=cfg["moe_intermediate_size"], n_layers=cfg["num_hidden_layers"],
        n_dense_layers=cfg["first_k_dense_replace"], n_heads=cfg["num_attention_heads"],
        n_routed_experts=cfg["n_routed_experts"], n_shared_experts=cfg["n_shared_experts"],
        n_activated_experts=cfg["num_experts_per_tok"],
        n_expert_groups=cfg.get("n_group") or 1, n_limited_groups=cfg.get("topk_group") or 1,
        score_func=cfg.get("scoring_func", "softmax"), route_scale=float(cfg.get("routed_scaling_factor", 1.0)),
        q_lora_rank=cfg.get("q_lora_rank") or 0, kv_lora_rank=cfg["kv_lora_rank"],
        qk_nope_head_dim=cfg["qk_nope_head_dim"], qk_rope_head_dim=cfg["qk_rope_head_dim"],
        v_head_dim=cfg["v_head_dim"], rope_theta=float(cfg.get("rope_theta", 10000.0)),
    )
    if rs:
        # YaRN (and model.py's softmax-scale mscale) is on only when
        # max_seq_len > original_seq_len; model.py's single `mscale` plays the
        # role of HF's mscale_all_dim (it assumes mscale == mscale_all_dim).
        a.update(max_seq_len=mp, original_seq_len=rs["original_max_position_embeddings"],
                 rope_factor=float(rs["factor"]), beta_fast=rs.get("beta_fast", 32),
                 beta_slow=rs.get("beta_slow", 1), mscale=float(rs.get("mscale_all_dim", rs.get("mscale", 1.0))))
        assert mp > a["original_seq_len"]
    else:
        a.update(max_seq_len=mp, original_seq_len=mp)  # no YaRN
    return mod.ModelArgs(**a)


def build_v3_ref(mod, cfg, expected, attn_impl):
    mod.attn_impl = attn_impl
    torch.set_default_dtype(torch.float32)
    args = v3_args(mod, cfg)
    model = mod.Transformer(args)
    # Linear weights are created as bf16 (Linear.dtype); make every parameter
    # float32 before loading. Not model.to(torch.float32): that would also cast
    # the complex freqs_cis buffer to real.
    for p in model.parameters():
        p.data = p.data.to(torch.float32)
    assert model.freqs_cis.is_complex()
    if cfg.get("topk_method") == "noaux_tc":
        # model.py creates Gate.bias only when dim == 7168 (the real V3)
        for layer in model.layers:
            if hasattr(layer.ffn, "gate"):
                layer.ffn.gate.bias = torch.nn.Parameter(torch.zeros(cfg["n_routed_experts"]))
    sd = {ref_name(k): torch.from_numpy(np.ascontiguousarray(v)) for k, v in expected.items()}
    if cfg.get("tie_word_embeddings"):
        sd["head.weight"] = sd["embed.weight"].clone()
    res = model.load_state_dict(sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32, (n, p.dtype)
    model.eval()
    return model


def run_v3_ref(mod, cfg, expected, ids):
    """Returns (prefix logits [n][vocab] from n separate prefills of length
    1..n with the absorbed attention, incremental logits for the positions
    PREFILL-1..n-1 (absorbed, through model.py's latent cache), and the same
    incremental logits with attn_impl = "naive")."""
    out = {}
    x = torch.tensor([ids])
    m = build_v3_ref(mod, cfg, expected, "absorb")
    out["prefix"] = np.stack([m(x[:, :n], 0)[0].float().numpy() for n in range(1, len(ids) + 1)])
    for impl in ("absorb", "naive"):
        m = build_v3_ref(mod, cfg, expected, impl)
        rows = [m(x[:, :PREFILL], 0)[0].float().numpy()]
        for t in range(PREFILL, len(ids)):
            rows.append(m(x[:, t:t + 1], t)[0].float().numpy())
        out["incremental_" + impl] = np.stack(rows)
    mod.attn_impl = "absorb"
    return out


# ============================================================================
# Main
# ============================================================================


def top2_margin(logits):
    s = np.sort(logits, axis=-1)
    return (s[:, -1] - s[:, -2]).astype(np.float64)


def main(argv):
    ap = argparse.ArgumentParser(description="Reference logits for the tiny DeepSeek test checkpoints.")
    ap.add_argument("--testdata", required=True, help="output of make_checkpoint.py --all")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens"))
    ap.add_argument("--families", default="v2lite,v2,v3,v2lite_sharded,yarn,moe16b,v3e256")
    ap.add_argument("--v3-inference", metavar="PATH",
                    help="DeepSeek-V3 inference/model.py (or a directory holding it) for the cross-check")
    ap.add_argument("--moe-modeling", metavar="DIR",
                    help="directory with the DeepSeek-MoE remote code (modeling_deepseek.py, configuration_deepseek.py)")
    ap.add_argument("--check", action="store_true", help="compare with the goldens in --out; write nothing")
    a = ap.parse_args(argv)

    import transformers
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    torch.set_default_dtype(torch.float32)
    fams = [f for f in a.families.split(",") if f]
    for f in fams:
        if f not in ALL_FAMILIES:
            ap.error("unknown family %r" % f)
    v3mod, v3file = None, None
    if a.v3_inference:
        v3file = find_model_py(a.v3_inference)
        v3mod = import_v3_model(v3file)

    ids = token_ids()
    versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                "numpy": np.__version__, "python": platform.python_version()}
    if not a.check:
        os.makedirs(a.out, exist_ok=True)
        write_json(os.path.join(a.out, "tokens.json"),
                   {"token_ids": ids, "note": "BOS id 0, then a 31-bit LCG from seed %d; token_ids() in make_goldens.py"
                    % TOKEN_SEED})
    worst = 0.0
    for fam in fams:
        famdir = os.path.join(a.testdata, fam)
        cfg = load_config(famdir)
        exp = load_expected(famdir)
        arch = cfg["architectures"][0]
        side = {"family": fam, "architecture": arch, "token_ids": ids}
        if arch in MLA_ARCHS:
            model = build_hf_native(famdir, cfg, exp)
            side["reference"] = "transformers %s (native, %s), float32, eager attention, eval" % (
                type(model).__name__, type(model).__module__)
        elif arch == "DeepseekForCausalLM":
            if not a.moe_modeling:
                print("%s: skipped (DeepSeek-MoE is not in transformers; give --moe-modeling DIR)" % fam)
                continue
            model, files = build_moe_remote(a.moe_modeling, cfg, exp)
            side["reference"] = ("DeepSeek-MoE Hub remote code DeepseekForCausalLM on transformers %s, float32, "
                                 "eager attention, eval" % transformers.__version__)
            side["remote_code_sha256"] = files
        else:
            raise SystemExit("%s: unknown architecture %s" % (fam, arch))

        tap = RouterTap(model)
        logits = run_full(model, ids)
        tap.close()
        gaps = routing_gaps(cfg, tap)
        inc = run_incremental(model, ids)
        inc_diff = float(np.abs(inc - logits).max())
        greedy, greedy_margins = run_greedy(model, ids)
        assert logits.shape == (N_TOKENS, cfg["vocab_size"]) and logits.dtype == np.float32

        side.update({
            "file": fam + ".logits.f32", "dtype": "float32", "byte_order": "little",
            "shape": list(logits.shape), "layout": "row-major: logits[position][vocab_id], position 0 = BOS",
            "top1": [int(t) for t in logits.argmax(-1)],
            "top1_margin": [round(float(m), 6) for m in top2_margin(logits)],
            "min_top1_margin": float(top2_margin(logits).min()),
            "max_abs_logit": float(np.abs(logits).max()),
            "versions": versions,
            "inputs": {"expected_safetensors_sha256": sha256_file(os.path.join(famdir, "expected.safetensors")),
                       "config_json_sha256": sha256_file(os.path.join(famdir, "config.json")),
                       "generator": "tests/gen/make_checkpoint.py --all (seed 0)"},
            "routing": gaps,
            "greedy": {"prompt": "all of token_ids", "ids": greedy, "top1_margin": greedy_margins,
                       "how": "argmax of the last position, appended, %d times; full passes, no cache" % N_GREEDY},
            "kv_cache_check": {"prefill": PREFILL, "steps": N_TOKENS - PREFILL,
                               "max_abs_diff_vs_full_pass": inc_diff},
        })
        line = "%-15s top1[-4:]=%s  min top1 margin %.4f  cache Δ %.2e  routing gap %.2e" % (
            fam, side["top1"][-4:], side["min_top1_margin"], inc_diff, min(gaps["per_position_min_gap"]))
        if v3mod is not None and arch in MLA_ARCHS:
            r = run_v3_ref(v3mod, cfg, exp, ids)
            cc = {
                "model_py_sha256": sha256_file(v3file),
                "max_abs_diff_prefix_passes": float(np.abs(r["prefix"] - logits).max()),
                "max_abs_diff_incremental_absorb": float(np.abs(r["incremental_absorb"] - logits[PREFILL - 1:]).max()),
                "max_abs_diff_incremental_naive": float(np.abs(r["incremental_naive"] - logits[PREFILL - 1:]).max()),
                "top1_agree": bool((r["prefix"].argmax(-1) == logits.argmax(-1)).all()),
            }
            side["crosscheck_deepseek_v3_model_py"] = cc
            line += "  model.py Δ %.2e/%.2e/%.2e" % (cc["max_abs_diff_prefix_passes"],
                                                   cc["max_abs_diff_incremental_absorb"],
                                                   cc["max_abs_diff_incremental_naive"])
        print(line)
        if inc_diff > 1e-4:
            raise SystemExit("%s: the KV-cache pass differs from the full pass by %g" % (fam, inc_diff))

        path = os.path.join(a.out, fam + ".logits.f32")
        if a.check:
            if not os.path.exists(path):
                print("  %s: no golden to compare" % fam)
                worst = math.inf
                continue
            old = np.fromfile(path, dtype="<f4").reshape(logits.shape)
            d = float(np.abs(old - logits).max())
            worst = max(worst, d)
            print("  %s: max |Δ| vs stored golden %.3e" % (fam, d))
            continue
        logits.astype("<f4").tofile(path)
        side["sha256"] = sha256_file(path)
        if fam == "v2lite":
            ipath = os.path.join(a.out, "v2lite.incremental.logits.f32")
            inc.astype("<f4").tofile(ipath)
            side["incremental_file"] = {
                "file": "v2lite.incremental.logits.f32", "shape": list(inc.shape),
                "how": "one call on tokens 0..%d with an empty cache (its %d rows), then %d calls of one "
                       "token each through the KV cache; row i = logits at position i"
                       % (PREFILL - 1, PREFILL, N_TOKENS - PREFILL),
                "max_abs_diff_vs_full_pass": inc_diff,
                "sha256": sha256_file(ipath)}
        write_json(os.path.join(a.out, fam + ".json"), side)

    if a.check:
        print("largest difference from the stored goldens: %.3e" % worst)
        return 0 if worst <= 1e-4 else 1
    write_index(a.out)
    return 0


def _finite(v):
    """JSON has no Infinity or NaN (strict parsers, ours included, reject
    them): write null instead."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def write_json(path, obj):
    """One top-level key per line; values (lists, nested objects) compact."""
    obj = _finite(obj)
    lines = ["  %s: %s" % (json.dumps(k), json.dumps(v, separators=(", ", ": "), allow_nan=False))
             for k, v in obj.items()]
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def write_index(out):
    fams = []
    for fam in ALL_FAMILIES:
        p = os.path.join(out, fam + ".json")
        if os.path.exists(p):
            with open(p) as f:
                s = json.load(f)
            fams.append({"family": fam, "logits": s["file"], "sidecar": fam + ".json", "shape": s["shape"],
                         "reference": s["reference"], "versions": s["versions"]})
    write_json(os.path.join(out, "index.json"), {"token_ids_file": "tokens.json", "families": fams})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
