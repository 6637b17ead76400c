#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_lora_goldens.py -- PEFT LoRA adapters and reference logits for the
tiny test checkpoints (issue 19).

For each case below, on the F32 weights of a family written by
tests/gen/make_checkpoint.py (loaded into transformers exactly as
make_goldens.py does, every parameter checked against expected.safetensors):

  1. wrap the model with PEFT (get_peft_model, LoraConfig of the case);
  2. overwrite every lora_A / lora_B with seeded random values (PEFT starts
     lora_B at zero, which would make the adapter a no-op);
  3. save_pretrained -> adapter_config.json + adapter_model.safetensors,
     copied here byte for byte;
  4. run the fixed 32 tokens of tests/ref/goldens/tokens.json through the
     PEFT model, unmerged (LoRA applied as x A^T B^T * s next to the base
     matmul) -> logits.f32, then merge_and_unload() -> merged.logits.f32.

Independent checks stored in each case.json (all must be ~1e-6):
  own_merge    W + s * B @ A computed here in float64 from the saved file and
               run through the plain transformers model, vs PEFT unmerged
  reload       the saved files loaded back with PeftModel.from_pretrained
               onto a fresh base model, vs the logits above

The `v2lite_experts` case adapts the routed experts too, which PEFT cannot
wrap on transformers 5 (they are fused 3-D parameters); its adapter file is
written here in the per-expert layout PEFT produces on per-expert nn.Linear
modelling code (transformers 4 / Hub remote code), and its reference is the
merged-weights model (see tests/ref/lora/README.md).

The `moe16b_qkvo` case runs on the DeepSeek-MoE Hub remote code (as the
moe16b golden does), which needs transformers 4.36 and so PEFT 0.7.1: run it
separately in that environment with --moe-modeling DIR; without that option
it is skipped.

    make_lora_goldens.py --testdata build/testdata [--out DIR] [--cases a,b]
                         [--moe-modeling DIR] [--check]

--check recomputes everything and compares with the files in OUTDIR (writes
nothing); exit status 1 if any logit differs by more than 1e-5, any adapter
tensor differs at all, or adapter_config.json differs (target_modules compared
as a set). Details and figures: tests/ref/lora/README.md.
"""
import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# PEFT keeps target_modules as a set and writes it into adapter_config.json
# in set order, which depends on string hash randomisation: fix the hash seed
# (re-executing once) so the file is byte for byte reproducible.
if os.environ.get("PYTHONHASHSEED") != "0" and __name__ == "__main__":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np
import torch

# The base-model loading, weight verification, token ids and forward runner
# are make_goldens.py's, so these logits are comparable with the goldens.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens as mg  # noqa: E402

TOL = 1e-5
GOLDENS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens")
MLP_NAMES = ("gate_proj", "up_proj", "down_proj")

# strength: every adapted matrix gets a delta s*B@A whose entries have a
# standard deviation of `strength` times that of the base weight it adapts,
# so each case changes the logits by about as much as the logits themselves
# (max |logit| ~0.6 on these models) without making them explode.
# seed: chosen among 8 candidates (case number * 100 + 0..7) for the largest
# min(smallest routing gap, smallest top-1 margin) of the adapted model, so
# that a float32 C implementation cannot route or rank differently by rounding.
CASES = [
    # The example config (r 16, alpha 32, dropout 0.1 -- eval mode, so
    # no effect) with MLA names: MLA has no v_proj; kv_b_proj makes K and V.
    dict(name="v2lite_doc", family="v2lite", targets=["q_proj", "kv_b_proj"],
         r=16, alpha=32, dropout=0.1, rslora=False, seed=190106, strength=0.5),
    dict(name="v2lite_attn_all", family="v2lite",
         targets=["q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"],
         r=4, alpha=8, dropout=0.0, rslora=False, seed=190201, strength=0.5),
    dict(name="v2lite_mlp", family="v2lite", targets=list(MLP_NAMES),
         r=8, alpha=16, dropout=0.0, rslora=True, seed=190300, strength=0.5),
    dict(name="v2_qlora", family="v2", targets=["q_a_proj", "q_b_proj", "kv_b_proj", "o_proj"],
         r=4, alpha=4, dropout=0.0, rslora=False, seed=190401, strength=0.5),
    dict(name="v3_all", family="v3",
         targets=["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"] + list(MLP_NAMES),
         r=8, alpha=32, dropout=0.0, rslora=False, seed=190506, strength=0.3),
    # The multi-head-attention family (DeepSeek-MoE 16B). Its reference model
    # is the Hub remote code, which needs transformers 4.36-4.39 and so a
    # PEFT of that time (0.7.1); run with --moe-modeling DIR in that
    # environment (tests/ref/lora/README.md).
    dict(name="moe16b_qkvo", family="moe16b", targets=["q_proj", "k_proj", "v_proj", "o_proj"],
         r=8, alpha=16, dropout=0.0, rslora=False, seed=190603, strength=0.5),
    dict(name="v2lite_experts", family="v2lite", targets=list(MLP_NAMES),
         r=8, alpha=16, dropout=0.0, rslora=False, seed=190706, strength=0.5, experts=True),
]
CASE_NAMES = [c["name"] for c in CASES]


# ============================================================================
# PEFT helpers
# ============================================================================


@contextlib.contextmanager
def no_v5_moe_conversion():
    """PEFT >= 0.18 on transformers 5 rewrites target_modules that name
    gate_proj/up_proj/down_proj of a model whose experts transformers fuses
    (deepseek_v2/v3 use the qwen2_moe pattern) into target_parameters on the
    fused expert tensors, and drops those names from target_modules: the dense
    layer-0 MLP and mlp.shared_experts, real nn.Linear modules with exactly
    those names, are then not adapted at all, and the routed experts are
    saved in a fused layout (mlp.experts.base_layer.lora_A, (E*2r, in)) that
    no per-module reader can use. The cases that target MLP names want the
    per-module behaviour PEFT has on every other model (and had on
    transformers 4), so the rewrite is switched off while they are built and
    reloaded. Recorded as "peft_v5_moe_conversion": "disabled" in case.json."""
    import peft.utils.transformers_weight_conversion as twc
    saved = twc.convert_peft_config_for_transformers
    twc.convert_peft_config_for_transformers = lambda *a, **k: None
    try:
        yield
    finally:
        twc.convert_peft_config_for_transformers = saved


def lora_modules(pm):
    """{module path without the PEFT prefix: LoRA layer} for every module PEFT
    wrapped; refuses parameter wrappers (fused experts)."""
    from peft.tuners.lora import LoraLayer
    try:
        from peft.tuners.lora.layer import ParamWrapper
    except ImportError:  # PEFT < 0.17 cannot wrap parameters at all
        ParamWrapper = ()
    out = {}
    for name, m in pm.named_modules():
        if ParamWrapper and isinstance(m, ParamWrapper):
            raise SystemExit("PEFT wrapped the parameter %s (fused experts); not expected here" % name)
        if isinstance(m, LoraLayer):
            out[name.removeprefix("base_model.model.")] = m
    return dict(sorted(out.items()))


def scale_of(c):
    """PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA."""
    return c["alpha"] / math.sqrt(c["r"]) if c["rslora"] else c["alpha"] / c["r"]


def random_ab(rng, w, r, s, strength):
    """Seeded A (r, in) and B (out, r) such that s * B @ A has entries of
    standard deviation strength * std(w): A ~ N(0, 1/in), B ~ N(0, b^2) with
    s * b * sqrt(r / in) = strength * std(w). numpy's PCG64 stream is stable
    across versions, so the values do not depend on torch."""
    out_f, in_f = w.shape
    a = rng.standard_normal((r, in_f)) / math.sqrt(in_f)
    b = rng.standard_normal((out_f, r)) * (strength * float(w.std()) / (s * math.sqrt(r / in_f)))
    return a.astype(np.float32), b.astype(np.float32)


def transformers_version():
    import transformers
    return transformers.__version__


def adapter_tensors(path):
    from safetensors.numpy import load_file
    return load_file(path)


# ============================================================================
# Merging by hand (the independent check, and the experts case's reference)
# ============================================================================


def merge_into(model, cfg, tensors, s):
    """W += s * B @ A (float64, rounded once to float32) for every module in
    a PEFT adapter state dict, on a plain transformers model. Routed experts
    named in the per-expert layout (mlp.experts.X.gate_proj) go into the fused
    parameters: gate_up_proj[X] = cat(gate rows, up rows), down_proj[X]."""
    mi = cfg.get("moe_intermediate_size")
    mods = sorted({k[len("base_model.model."):].rsplit(".lora_", 1)[0] for k in tensors})
    with torch.no_grad():
        for mod in mods:
            a = tensors["base_model.model.%s.lora_A.weight" % mod].astype(np.float64)
            b = tensors["base_model.model.%s.lora_B.weight" % mod].astype(np.float64)
            delta = s * (b @ a)
            parts = mod.split(".")
            if ".mlp.experts." in mod:
                e, proj = int(parts[-2]), parts[-1]
                experts = model.get_submodule(".".join(parts[:-2]))
                if proj == "down_proj":
                    w = experts.down_proj[e]
                else:
                    w = experts.gate_up_proj[e][:mi] if proj == "gate_proj" else experts.gate_up_proj[e][mi:]
            else:
                w = model.get_submodule(mod).weight
            assert tuple(w.shape) == delta.shape, (mod, tuple(w.shape), delta.shape)
            w.copy_(torch.from_numpy((w.double().numpy() + delta).astype(np.float32)))
    return mods


# ============================================================================
# One case
# ============================================================================


class Source:
    """Where the base models come from: the test checkpoints, and for moe16b
    the directory with the DeepSeek-MoE remote code (--moe-modeling)."""

    def __init__(self, testdata, moe_modeling=None):
        self.testdata = testdata
        self.moe_modeling = moe_modeling
        self.remote_code = None  # sha256 of the remote-code files once used


def build_base(src, family):
    """A fresh base model with the F32 expected weights, every parameter
    checked (make_goldens.py's loaders): transformers' native V2/V3, or the
    DeepSeek-MoE Hub remote code for moe16b."""
    famdir = os.path.join(src.testdata, family)
    cfg = mg.load_config(famdir)
    exp = mg.load_expected(famdir)
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # progress bars
        if cfg["architectures"][0] in mg.MLA_ARCHS:
            model = mg.build_hf_native(famdir, cfg, exp)
        else:
            model, src.remote_code = mg.build_moe_remote(src.moe_modeling, cfg, exp)
    return model, cfg, famdir


def logits_and_routing(model, cfg, ids):
    tap = mg.RouterTap(model)
    lg = mg.run_full(model, ids)
    tap.close()
    return lg, mg.routing_gaps(cfg, tap)


def peft_config(c):
    import peft
    kw = dict(r=c["r"], lora_alpha=c["alpha"], target_modules=list(c["targets"]),
              lora_dropout=c["dropout"], bias="none")
    if c["rslora"]:  # the option exists from PEFT 0.8 on; moe16b runs on 0.7.1
        kw["use_rslora"] = True
    return peft.LoraConfig(**kw)


def run_case(c, src, ids, workdir):
    """Builds the case in workdir (adapter files + logits). Returns the
    sidecar dict and {file name: array} of the logits."""
    import peft
    fam = c["family"]
    s = scale_of(c)
    touches_mlp = any(t in MLP_NAMES for t in c["targets"])
    guard = no_v5_moe_conversion if touches_mlp else contextlib.nullcontext
    base_path = "build/testdata/%s (tests/gen/make_checkpoint.py --all, expected.safetensors F32)" % fam

    model, cfg, famdir = build_base(src, fam)
    base_logits = mg.run_full(model, ids)
    # The unadapted model must reproduce the family's base golden: this ties
    # the cases to ../goldens and checks the environment (for moe16b, that the
    # remote code given with --moe-modeling computes what the golden's did).
    golden = np.fromfile(os.path.join(GOLDENS, fam + ".logits.f32"), dtype="<f4").reshape(base_logits.shape)
    base_vs_golden = float(np.abs(golden - base_logits).max())
    if base_vs_golden > TOL:
        raise SystemExit("%s: the base model differs from goldens/%s.logits.f32 by %g" % (c["name"], fam, base_vs_golden))

    with guard():
        pm = peft.get_peft_model(model, peft_config(c))
    # get_peft_model creates the lora_dropout modules in training mode
    pm.eval()
    mods = lora_modules(pm)
    for t in c["targets"]:
        if not any(m.endswith("." + t) for m in mods):
            raise SystemExit("%s: PEFT adapted no %s module" % (c["name"], t))
    rng = np.random.default_rng(c["seed"])
    with torch.no_grad():
        for name, m in mods.items():  # sorted names: a fixed order for the random stream
            assert abs(m.scaling["default"] - s) < 1e-12, (name, m.scaling, s)
            w = m.get_base_layer().weight.detach().numpy()
            a, b = random_ab(rng, w, c["r"], s, c["strength"])
            m.lora_A["default"].weight.copy_(torch.from_numpy(a))
            m.lora_B["default"].weight.copy_(torch.from_numpy(b))
    pm.peft_config["default"].base_model_name_or_path = base_path

    extra = {}
    if c.get("experts"):
        # The routed experts in the per-expert layout: the same A/B
        # construction, on each expert's own (gate, up, down) matrices.
        mi = cfg["moe_intermediate_size"]
        for layer in range(cfg["first_k_dense_replace"], cfg["num_hidden_layers"]):
            ex = pm.base_model.model.model.layers[layer].mlp.experts
            for e in range(cfg["n_routed_experts"]):
                gu = ex.gate_up_proj[e].detach().numpy()
                ws = {"gate_proj": gu[:mi], "up_proj": gu[mi:], "down_proj": ex.down_proj[e].detach().numpy()}
                for proj in MLP_NAMES:
                    a, b = random_ab(rng, ws[proj], c["r"], s, c["strength"])
                    key = "base_model.model.model.layers.%d.mlp.experts.%d.%s" % (layer, e, proj)
                    extra[key + ".lora_A.weight"] = a
                    extra[key + ".lora_B.weight"] = b

    # save_pretrained writes the files we ship; the experts case adds its
    # per-expert tensors to PEFT's own state dict with the same writer and
    # metadata PEFT uses (safetensors.torch.save_file, {"format": "pt"}).
    save_dir = os.path.join(workdir, "peft")
    with guard():
        pm.save_pretrained(save_dir)
    cfg_path = os.path.join(save_dir, "adapter_config.json")
    st_path = os.path.join(save_dir, "adapter_model.safetensors")
    if extra:
        from safetensors.torch import save_file
        sd = {k: torch.from_numpy(v.copy()) for k, v in adapter_tensors(st_path).items()}
        sd.update({k: torch.from_numpy(v) for k, v in extra.items()})
        save_file(sd, st_path, metadata={"format": "pt"})
    saved = adapter_tensors(st_path)

    side = {"case": c["name"], "family": fam, "architecture": cfg["architectures"][0],
            "target_modules": c["targets"], "r": c["r"], "lora_alpha": c["alpha"],
            "use_rslora": c["rslora"], "lora_dropout": c["dropout"], "scale": s,
            "scale_rule": "lora_alpha / sqrt(r) (rsLoRA)" if c["rslora"] else "lora_alpha / r",
            "peft_v5_moe_conversion": "disabled (see make_lora_goldens.py no_v5_moe_conversion)"
            if touches_mlp else "not triggered (no MLP names targeted)"}
    files = {}
    if not c.get("experts"):
        logits, routing = logits_and_routing(pm, cfg, ids)
        merged = pm.merge_and_unload()
        merged_logits = mg.run_full(merged, ids)
        if src.remote_code:
            model_desc = "the DeepSeek-MoE Hub remote code %s" % type(merged).__name__
        else:
            model_desc = "transformers' native %s" % type(merged).__name__
        side["reference"] = ("PEFT %s LoraModel, unmerged, on %s (transformers %s), float32, eager, eval"
                             % (peft.__version__, model_desc, transformers_version()))
        side["merged_reference"] = "PEFT merge_and_unload() of the same model"
        del pm, merged
    else:
        # PEFT on transformers 5 cannot run this adapter (see README), so
        # the reference is the merged weights: W + s * B @ A for every module,
        # the experts' into the fused tensors.
        del pm
        model, _, _ = build_base(src, fam)
        merge_into(model, cfg, saved, s)
        logits, routing = logits_and_routing(model, cfg, ids)
        merged_logits = logits
        side["reference"] = "merged weights"
        side["reference_how"] = ("W + s * B @ A (float64, rounded once to float32) for every adapted module, the "
                                 "routed experts' into transformers' fused gate_up_proj[e] = cat(gate, up) and "
                                 "down_proj[e]; run on transformers %s (native), float32, eager, eval"
                                 % type(model).__name__)
        side["merged_reference"] = "identical to logits.f32 (the reference already is the merged model)"
        side["crosscheck_peft_v4_adapter_loading"] = peft_experts_crosscheck(
            c, src, ids, cfg_path, saved, s, logits, workdir)
        del model
    files["logits.f32"] = logits
    files["merged.logits.f32"] = merged_logits

    # own merge: every module of the saved file, by hand, on a fresh model
    if not c.get("experts"):
        model, _, _ = build_base(src, fam)
        merge_into(model, cfg, saved, s)
        side["own_merge_max_abs_diff"] = float(np.abs(mg.run_full(model, ids) - logits).max())
        del model
        # reload: the files as saved, through PEFT's loader
        model, _, _ = build_base(src, fam)
        with guard():
            rm = peft.PeftModel.from_pretrained(model, save_dir)
        rm.eval()
        if sorted(lora_modules(rm)) != sorted(mods):
            raise SystemExit("%s: reloading adapted other modules" % c["name"])
        side["reload_max_abs_diff"] = float(np.abs(mg.run_full(rm, ids) - logits).max())
        del rm, model

    adapted = sorted({k[len("base_model.model."):].rsplit(".lora_", 1)[0] for k in saved})
    side.update({
        "adapted_modules": adapted,
        "n_adapted_modules": len(adapted),
        "n_lora_params": int(sum(v.size for v in saved.values())),
        "init": "seeded numpy PCG64 (seed %d), modules in sorted name order (PEFT's modules, then the routed "
                "experts by layer, expert, gate/up/down): A ~ N(0, 1/in), B scaled so that std(s*B@A) = "
                "%g * std(W)" % (c["seed"], c["strength"]),
        "max_abs_logit": float(np.abs(logits).max()),
        "base_max_abs_logit": float(np.abs(base_logits).max()),
        "base_vs_golden_max_abs_diff": base_vs_golden,
        "max_abs_logit_delta_vs_base": float(np.abs(logits - base_logits).max()),
        "top1_changed_vs_base": int((logits.argmax(-1) != base_logits.argmax(-1)).sum()),
        "max_abs_merged_minus_unmerged": float(np.abs(merged_logits - logits).max()),
        "top1": [int(t) for t in logits.argmax(-1)],
        "top1_margin": [round(float(m), 6) for m in mg.top2_margin(logits)],
        "min_top1_margin": float(mg.top2_margin(logits).min()),
        "routing": routing,
    })
    if not np.isfinite(logits).all():
        raise SystemExit("%s: non-finite logits" % c["name"])
    return side, files, cfg_path, st_path


def peft_experts_crosscheck(c, src, ids, cfg_path, saved, s, logits, workdir):
    """PEFT's own loader for transformers-4 adapters (PeftModel.from_pretrained
    with its v4->v5 conversion: per-expert A/B fused block-diagonally into the
    expert parameters) run unmerged on the routed experts; the dense and
    shared-expert part, which that conversion drops, is merged by hand first.
    Agreement with the merged-weights reference checks the expert layout
    (gate vs up halves, A/B orientation, scale) with code that is not ours."""
    import peft
    from safetensors.torch import save_file
    d = os.path.join(workdir, "experts_only")
    os.makedirs(d, exist_ok=True)
    shutil.copy(cfg_path, d)
    experts = {k: torch.from_numpy(v.copy()) for k, v in saved.items() if ".mlp.experts." in k}
    rest = {k: v for k, v in saved.items() if ".mlp.experts." not in k}
    save_file(experts, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})
    model, cfg, _ = build_base(src, c["family"])
    merge_into(model, cfg, rest, s)
    # what the routed experts' adapters alone contribute: a check that missed
    # them would be off by this much
    without = mg.run_full(model, ids)
    try:
        pm = peft.PeftModel.from_pretrained(model, d)
    except Exception as e:  # noqa: BLE001 -- record what this PEFT does
        return {"result": "PEFT could not load it: %s: %s" % (type(e).__name__, e)}
    pm.eval()
    got = mg.run_full(pm, ids)
    conv = pm.peft_config["default"]
    return {"how": "dense + shared-expert modules merged by hand; routed experts through PEFT %s "
                   "PeftModel.from_pretrained (v4->v5 conversion: target_parameters %s, rank_pattern %s), unmerged"
                   % (peft.__version__, sorted(conv.target_parameters or []), dict(conv.rank_pattern or {})),
            "max_abs_diff_vs_reference": float(np.abs(got - logits).max()),
            "routed_experts_part_max_abs_logit_delta": float(np.abs(without - logits).max())}


# ============================================================================
# Main
# ============================================================================


def sha256_file(path):
    return mg.sha256_file(path)


def main(argv):
    ap = argparse.ArgumentParser(description="PEFT LoRA adapters and reference logits for the tiny checkpoints.")
    ap.add_argument("--testdata", required=True, help="output of make_checkpoint.py --all")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "lora"))
    ap.add_argument("--cases", default=",".join(CASE_NAMES))
    ap.add_argument("--moe-modeling", metavar="DIR",
                    help="directory with the DeepSeek-MoE remote code (modeling_deepseek.py, "
                         "configuration_deepseek.py), for moe16b_qkvo; see tests/ref/lora/README.md")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out; write nothing")
    a = ap.parse_args(argv)
    src = Source(a.testdata, a.moe_modeling)

    import peft
    import safetensors
    import transformers
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    torch.set_default_dtype(torch.float32)
    todo = [x for x in a.cases.split(",") if x]
    for x in todo:
        if x not in CASE_NAMES:
            ap.error("unknown case %r (known: %s)" % (x, ", ".join(CASE_NAMES)))
    ids = mg.token_ids()
    with open(os.path.join(GOLDENS, "tokens.json")) as f:
        assert json.load(f)["token_ids"] == ids, "tokens.json and make_goldens.token_ids() disagree"
    versions = {"peft": peft.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__,
                "python": platform.python_version()}

    worst, bad = 0.0, []
    for c in CASES:
        if c["name"] not in todo:
            continue
        if c["family"] == "moe16b" and not a.moe_modeling:
            print("%-16s skipped (DeepSeek-MoE is not in transformers; give --moe-modeling DIR)" % c["name"])
            continue
        work = tempfile.mkdtemp(prefix="ds_lora_golden_")
        try:
            side, files, cfg_path, st_path = run_case(c, src, ids, work)
            famdir = os.path.join(a.testdata, c["family"])
            side["versions"] = versions
            side["inputs"] = {"token_ids_file": "tests/ref/goldens/tokens.json",
                              "expected_safetensors_sha256": sha256_file(os.path.join(famdir, "expected.safetensors")),
                              "config_json_sha256": sha256_file(os.path.join(famdir, "config.json"))}
            if c["family"] == "moe16b":
                side["remote_code_sha256"] = src.remote_code
            line = "%-16s %3d modules  max|Δ vs base| %.3f  max|logit| %.3f  merged-unmerged %.2e" % (
                c["name"], side["n_adapted_modules"], side["max_abs_logit_delta_vs_base"], side["max_abs_logit"],
                side["max_abs_merged_minus_unmerged"])
            if "own_merge_max_abs_diff" in side:
                line += "  own merge %.2e  reload %.2e" % (side["own_merge_max_abs_diff"], side["reload_max_abs_diff"])
            else:
                line += "  PEFT experts cross-check %s" % side["crosscheck_peft_v4_adapter_loading"].get(
                    "max_abs_diff_vs_reference", side["crosscheck_peft_v4_adapter_loading"].get("result"))
            line += "  min routing gap %.1e  min top1 margin %.1e" % (
                min(side["routing"]["per_position_min_gap"]), side["min_top1_margin"])
            print(line, flush=True)
            for k in ("own_merge_max_abs_diff", "reload_max_abs_diff", "max_abs_merged_minus_unmerged"):
                if side.get(k, 0.0) > TOL:
                    raise SystemExit("%s: %s is %g (> %g)" % (c["name"], k, side[k], TOL))

            out = os.path.join(a.out, c["name"])
            if a.check:
                d = compare_case(out, files, st_path, cfg_path)
                worst = max(worst, d)
                print("  %s: max |Δ| vs stored %.3e" % (c["name"], d))
                if d > TOL:
                    bad.append(c["name"])
                continue
            os.makedirs(out, exist_ok=True)
            shutil.copy(cfg_path, os.path.join(out, "adapter_config.json"))
            shutil.copy(st_path, os.path.join(out, "adapter_model.safetensors"))
            for name, arr in files.items():
                assert arr.shape == (mg.N_TOKENS, 512) and arr.dtype == np.float32
                arr.astype("<f4").tofile(os.path.join(out, name))
            side["files"] = {f: {"sha256": sha256_file(os.path.join(out, f))}
                             for f in ("adapter_config.json", "adapter_model.safetensors")
                             + tuple(sorted(files))}
            for f in files:
                side["files"][f].update({"dtype": "float32", "byte_order": "little", "shape": [mg.N_TOKENS, 512],
                                         "layout": "row-major: logits[position][vocab_id], position 0 = BOS"})
            mg.write_json(os.path.join(out, "case.json"), side)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if a.check:
        print("largest difference from the stored files: %.3e%s" % (worst, "  FAILED: " + ", ".join(bad) if bad else ""))
        return 1 if bad else 0
    return 0


def compare_case(out, files, st_path, cfg_path):
    """Largest |difference| between the fresh logits and the stored ones;
    infinity when a file is missing or an adapter tensor differs."""
    worst = 0.0
    for name, arr in files.items():
        p = os.path.join(out, name)
        if not os.path.exists(p):
            print("  %s: missing" % p)
            return math.inf
        old = np.fromfile(p, dtype="<f4").reshape(arr.shape)
        worst = max(worst, float(np.abs(old - arr).max()))
    p = os.path.join(out, "adapter_model.safetensors")
    if not os.path.exists(p):
        print("  %s: missing" % p)
        return math.inf
    old, new = adapter_tensors(p), adapter_tensors(st_path)
    if sorted(old) != sorted(new) or any(not np.array_equal(old[k], new[k]) for k in new):
        print("  %s: adapter tensors differ" % p)
        return math.inf

    def conf(path):  # target_modules is a set: compare it as one
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        d["target_modules"] = sorted(d["target_modules"] or [])
        return d
    if conf(os.path.join(out, "adapter_config.json")) != conf(cfg_path):
        print("  %s: adapter_config.json differs" % out)
        return math.inf
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
