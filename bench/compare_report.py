#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""compare_report.py -- the tables of bench/compare_llamacpp.sh.

    compare_report.py bytes CONFIG.json q8|q4|f16
        bytes of weights one decoded token reads (see below), one number
    compare_report.py logits OURS.f32 THEIRS.f32 N_VOCAB [--label L]
        how close two logit dumps are (n x N_VOCAB float32 each); one line,
        exit 1 when they disagree beyond the tolerance
    compare_report.py table OUTDIR CONFIG.json --membw GBS [--title T]
        reads OUTDIR/runs.csv (type,engine,run,prefill_tok_s,decode_tok_s),
        prints the table, writes OUTDIR/compare.csv and OUTDIR/compare.md

Bytes per decoded token: every weight a decode step reads once -- per layer
the attention (q, kv_a, kv_b, o; norms F32), then the dense FFN, or for an
MoE layer the router (F32), the shared experts and num_experts_per_tok routed
experts; the embedding row of the token, the final norm and the LM head.
Matrices at 34/32 bytes per weight (Q8_0), 18/32 (Q4_0) or 2 (F16). The KV cache and
activations are left out (under 1 MB per token here). The decode bound is
bandwidth / bytes: no engine can decode faster from DRAM.

Ratios are ours / llama.cpp's, per pair of runs (run i of each, which ran
back to back), the median over the pairs.
"""
import argparse
import csv
import json
import os
import statistics
import sys

import numpy as np


def decode_bytes(c, qtype):
    wb = {"q8": 34.0 / 32.0, "q4": 18.0 / 32.0}.get(qtype, 2.0)
    H, L, nh = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
    qk = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    kl, rope, vd = c["kv_lora_rank"], c["qk_rope_head_dim"], c["v_head_dim"]
    E, K = c.get("n_routed_experts") or 0, c.get("num_experts_per_tok") or 0
    mi, ns, I = c.get("moe_intermediate_size", 0), c.get("n_shared_experts") or 0, c["intermediate_size"]
    k_dense, freq = c.get("first_k_dense_replace", 0), c.get("moe_layer_freq", 1)
    ql = c.get("q_lora_rank")
    mats = 0            # weights in matrices
    f32 = 0             # F32 values (norms, router)
    for i in range(L):
        if ql:
            mats += ql * H + nh * qk * ql
            f32 += ql
        else:
            mats += nh * qk * H
        mats += (kl + rope) * H + nh * (qk - rope + vd) * kl + H * nh * vd
        f32 += 2 * H + kl
        if E and i >= k_dense and i % freq == 0:
            f32 += E * H
            mats += 3 * mi * H * (ns + K)
        else:
            mats += 3 * I * H
    mats += H                                   # the embedding row
    f32 += H                                    # final norm
    mats += c["vocab_size"] * H                 # LM head (tied or not, it is read)
    return mats * wb + f32 * 4.0


def cmd_bytes(a):
    with open(a.config) as f:
        c = json.load(f)
    print("%d" % decode_bytes(c, a.qtype))
    return 0


def cmd_logits(a):
    x = np.fromfile(a.ours, dtype=np.float32)
    y = np.fromfile(a.theirs, dtype=np.float32)
    if x.size != y.size or x.size % a.n_vocab:
        print("%s: logit files differ in size (%d vs %d values)" % (a.label, x.size, y.size))
        return 1
    x, y = x.reshape(-1, a.n_vocab).astype(np.float64), y.reshape(-1, a.n_vocab).astype(np.float64)
    finite = bool(np.all(np.isfinite(x)) and np.all(np.isfinite(y)))
    d = np.abs(x - y)
    scale = np.max(np.abs(x))
    rel = float(np.max(d) / scale) if scale > 0 else float(np.max(d))
    corr = min(float(np.corrcoef(x[i], y[i])[0, 1]) for i in range(x.shape[0]))
    top1 = float(np.mean(np.argmax(x, axis=1) == np.argmax(y, axis=1)))
    # top-5 overlap, averaged over positions
    t5 = float(np.mean([len(set(np.argsort(-x[i])[:5]) & set(np.argsort(-y[i])[:5])) / 5.0
                        for i in range(x.shape[0])]))
    ok = finite and corr >= a.min_corr and rel <= a.max_rel
    print("%s: %d positions, max|diff| %.3g (%.2f%% of max|logit| %.3g), min per-position correlation %.6f, "
          "top-1 agreement %.0f%%, top-5 overlap %.0f%%, finite %s: %s"
          % (a.label, x.shape[0], float(np.max(d)), 100 * rel, scale, corr, 100 * top1, 100 * t5,
             "yes" if finite else "NO", "AGREE" if ok else "DISAGREE"))
    return 0 if ok else 1


def med(v):
    return statistics.median(v) if v else float("nan")


def cmd_table(a):
    with open(a.config) as f:
        c = json.load(f)
    rows = {}
    with open(os.path.join(a.outdir, "runs.csv")) as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["type"], {}).setdefault(r["engine"], {})[int(r["run"])] = \
                (float(r["prefill_tok_s"]), float(r["decode_tok_s"]))
    out = []
    for qtype in ("q4", "q8", "f16"):
        if qtype not in rows:
            continue
        ours, theirs = rows[qtype].get("ds", {}), rows[qtype].get("llama", {})
        pairs = sorted(set(ours) & set(theirs))
        pr = [ours[i][0] / theirs[i][0] for i in pairs if theirs[i][0] > 0]
        dr = [ours[i][1] / theirs[i][1] for i in pairs if theirs[i][1] > 0]
        nbytes = decode_bytes(c, qtype)
        bound = a.membw * 1e9 / nbytes
        o_dec, t_dec = med([v[1] for v in ours.values()]), med([v[1] for v in theirs.values()])
        out.append(dict(type=qtype, runs=len(pairs),
                        prefill_ours=med([v[0] for v in ours.values()]),
                        prefill_llama=med([v[0] for v in theirs.values()]),
                        prefill_ratio=med(pr), decode_ours=o_dec, decode_llama=t_dec, decode_ratio=med(dr),
                        bytes_per_token=int(nbytes), membw_gbs=a.membw, bound_tok_s=bound,
                        ours_share=o_dec / bound, llama_share=t_dec / bound))
    cols = list(out[0].keys()) if out else []
    with open(os.path.join(a.outdir, "compare.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in out:
            w.writerow({k: ("%.4g" % v if isinstance(v, float) else v) for k, v in r.items()})
    head = ("| type | prefill tok/s ours | llama.cpp | ratio | decode tok/s ours | llama.cpp | ratio "
            "| decode bound tok/s | ours % of bound | llama.cpp % of bound |")
    md = [a.title, "", head, "|" + "---|" * 10]
    txt = [a.title,
           "%-4s %10s %10s %7s %10s %10s %7s %12s %8s %8s" % ("", "prefill/s", "", "", "decode/s", "", "",
                                                             "decode bound", "ours", "llama"),
           "%-4s %10s %10s %7s %10s %10s %7s %12s %8s %8s" % ("type", "ours", "llama.cpp", "ratio", "ours",
                                                             "llama.cpp", "ratio", "tok/s", "% bound", "% bound")]
    for r in out:
        md.append("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f%% | %.0f%% |"
                  % (r["type"], r["prefill_ours"], r["prefill_llama"], r["prefill_ratio"], r["decode_ours"],
                     r["decode_llama"], r["decode_ratio"], r["bound_tok_s"], 100 * r["ours_share"],
                     100 * r["llama_share"]))
        txt.append("%-4s %10.2f %10.2f %7.2f %10.2f %10.2f %7.2f %12.2f %7.0f%% %7.0f%%"
                   % (r["type"], r["prefill_ours"], r["prefill_llama"], r["prefill_ratio"], r["decode_ours"],
                      r["decode_llama"], r["decode_ratio"], r["bound_tok_s"], 100 * r["ours_share"],
                      100 * r["llama_share"]))
    notes = ["tok/s: median over the runs; ratio: ours / llama.cpp, median of the paired runs (%d pairs)"
             % (out[0]["runs"] if out else 0),
             "decode bound: %.2f GB/s memory read bandwidth / weight bytes per decoded token (%s)"
             % (a.membw, ", ".join("%s %.1f MB" % (r["type"], r["bytes_per_token"] / 1e6) for r in out))]
    for n in notes:
        txt.append(n)
        md.append("")
        md.append(n)
    print("\n".join(txt))
    with open(os.path.join(a.outdir, "compare.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bytes")
    b.add_argument("config")
    b.add_argument("qtype", choices=("q8", "q4", "f16"))
    g = sub.add_parser("logits")
    g.add_argument("ours")
    g.add_argument("theirs")
    g.add_argument("n_vocab", type=int)
    g.add_argument("--label", default="logits")
    g.add_argument("--min-corr", type=float, default=0.99)
    g.add_argument("--max-rel", type=float, default=0.10)
    t = sub.add_parser("table")
    t.add_argument("outdir")
    t.add_argument("config")
    t.add_argument("--membw", type=float, required=True)
    t.add_argument("--title", default="deepseek.h vs llama.cpp")
    a = ap.parse_args(argv)
    return {"bytes": cmd_bytes, "logits": cmd_logits, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
