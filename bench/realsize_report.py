#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""realsize_report.py -- the table and plot of bench/realsize.sh's runs.

    realsize_report.py OUTDIR [--budgets "50 25 12.5"] [--routings "uniform zipf"]

Reads OUTDIR/runs/<routing>-<engine>-<setting>.{out,cg.json,load.json}
(engine ds or llama; setting resident or a budget percentage),
OUTDIR/runs/<routing>-storage.json and OUTDIR/machine.txt; writes
OUTDIR/realsize.md, OUTDIR/realsize.csv and OUTDIR/realsize.svg. Standard
library only. A run that is missing or failed shows as such.

The storage bound of one of our paged runs: every byte the pager decrypted
during the decode came from storage (the page cache is dropped before each
run and our pager drops each segment's ciphertext once opened), so a token
cannot take less than (bytes decrypted per token) / (storage throughput) +
(the same) / (one core's AES-256-GCM speed). It leaves out compute, so a run
that reaches it is bound by storage alone.
"""
import argparse
import csv
import json
import math
import os
import re
import sys


def load_json(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # llama's output: the last line is the JSON object
        for line in reversed(text.splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def storage_of(runs, R):
    """The fastest storage measurement of routing R (1 or 4 readers; an
    older single one as <R>-storage.json)."""
    best = {}
    for name in ("%s-storage.json", "%s-storage-j1.json", "%s-storage-j4.json"):
        st = load_json(os.path.join(runs, name % R))
        if st and st.get("mb_s", 0) > best.get("mb_s", 0):
            best = st
    return best


def fmt(v, spec="%.2f", none="-"):
    return none if v is None else spec % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--budgets", default="50 25 12.5")
    ap.add_argument("--routings", default="uniform zipf")
    a = ap.parse_args()
    runs = os.path.join(a.out, "runs")
    machine = open(os.path.join(a.out, "machine.txt")).read() if os.path.exists(os.path.join(a.out, "machine.txt")) else ""
    m = re.search(r"aead_decrypt_gbs=([0-9.]+)", machine)
    aead = float(m.group(1)) * 1e9 if m else None
    settings = ["resident"] + a.budgets.split()
    rows = []
    for R in a.routings.split():
        st = storage_of(runs, R)
        storage = st.get("mb_s", 0) * 1e6 or None
        ref_hash = None
        for eng in ("ds", "llama"):
            for s in settings:
                rid = "%s-%s-%s" % (R, eng, s)
                cg = load_json(os.path.join(runs, rid + ".cg.json"))
                if cg is None:
                    continue
                ld = load_json(os.path.join(runs, rid + ".load.json")) or {}
                o = load_json(os.path.join(runs, rid + ".out"))
                if eng == "ds" and o is not None:
                    o = o.get("run")
                row = dict(routing=R, engine="deepseek.h" if eng == "ds" else "llama.cpp", setting=s,
                           cap_mib=None if cg["limit_bytes"] is None else cg["limit_bytes"] / 2 ** 20,
                           cg_peak_mib=(cg["peak_bytes"] or 0) / 2 ** 20, max_rss_mib=cg["max_rss_bytes"] / 2 ** 20,
                           oom=cg["oom_kills"] or 0, exit=cg["exit_status"], wall=cg["wall_seconds"],
                           load=(ld.get("load_before"), ld.get("load_after")),
                           prefill=None, decode=None, open_s=None, gen=None, hit=None, read_mb_tok=None,
                           bound=None, of_bound=None, same=None, misses=None, storage_mb_s=st.get("mb_s"))
                ok = cg["exit_status"] == 0 and o is not None
                if ok:
                    row["prefill"] = o.get("prefill_tok_s")
                    row["decode"] = o.get("decode_tok_s")
                    row["open_s"] = o.get("open_seconds", o.get("open_s"))
                    row["gen"] = o.get("gen_tokens", o.get("gen"))
                if ok and eng == "ds":
                    if s == "resident":
                        ref_hash = o.get("tokens_hash")
                    row["hash"] = o.get("tokens_hash")
                    row["same"] = (o.get("tokens_hash") == ref_hash) if ref_hash else None
                    row["max_rss_mib"] = max(row["max_rss_mib"], o.get("peak_rss_mb", 0) * 1e6 / 2 ** 20)
                    dp = o.get("decode_pager")
                    if dp and row["gen"] and not o.get("resident"):
                        look = dp["hits"] + dp["misses"] + dp.get("prefetch_hits", 0)
                        row["hit"] = o.get("hit_rate")
                        row["misses"] = dp["misses"] / row["gen"]
                        per_tok = dp["bytes_decrypted"] / row["gen"]
                        row["read_mb_tok"] = per_tok / 1e6
                        if row["decode"]:
                            row["read_mb_s"] = per_tok * row["decode"] / 1e6
                        if storage and per_tok > 0:
                            row["io_bound"] = storage / per_tok
                        if storage and aead and per_tok > 0:
                            row["bound"] = 1.0 / (per_tok / storage + per_tok / aead)
                            row["of_bound"] = row["decode"] / row["bound"] if row["decode"] else None
                        row["lookups_tok"] = look / row["gen"]
                rows.append(row)
        # ratios
        for r in rows:
            if r["routing"] != R:
                continue
            peer = [x for x in rows if x["routing"] == R and x["setting"] == r["setting"] and x["engine"] == "llama.cpp"]
            res = [x for x in rows if x["routing"] == R and x["setting"] == "resident" and x["engine"] == r["engine"]]
            r["vs_llama"] = (r["decode"] / peer[0]["decode"]) if (r["engine"] == "deepseek.h" and peer and
                                                                  peer[0]["decode"] and r["decode"]) else None
            r["of_resident"] = (r["decode"] / res[0]["decode"]) if (res and res[0]["decode"] and r["decode"]) else None

    # CSV
    keys = ["routing", "engine", "setting", "cap_mib", "prefill", "decode", "open_s", "max_rss_mib", "cg_peak_mib",
            "oom", "exit", "hit", "misses", "read_mb_tok", "read_mb_s", "storage_mb_s", "io_bound", "bound", "of_bound", "vs_llama",
            "of_resident", "same", "wall"]
    with open(os.path.join(a.out, "realsize.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + ["load_before", "load_after"])
        for r in rows:
            w.writerow([r.get(k) for k in keys] + list(r["load"]))

    # Markdown
    L = []
    L.append("# A DeepSeek-V2-Lite-shaped model under memory caps: deepseek.h and llama.cpp")
    L.append("")
    L.append("Made by `bench/realsize.sh`. The machine:")
    L.append("")
    for line in machine.strip().splitlines():
        L.append("    " + line)
    L.append("")
    L.append("Budget = the expert cache as a share of the routed-expert bytes; cap = the memory cgroup's limit "
             "(dense bytes + budget + 512 MiB, swap off), the same for both engines. Peak RSS = the process's "
             "high-water mark; cgroup peak = the most the cgroup was charged (anonymous memory plus the page cache "
             "the run brought in). Every run starts with the page cache dropped, in a fresh process. "
             "MB read/token = the bytes our pager decrypted during the decode per token (every one read from storage), "
             "read MB/s = that times the decode rate (the rate the run drew from storage); "
             "read-only bound = storage throughput / that, storage bound = 1 / (that / storage + that / one core's "
             "AES-256-GCM): the limit the storage sets with reads, decryption and compute done one after another. "
             "\"of bound\" above 100% means they overlapped (the prefetch thread and both compute threads read and "
             "decrypt while others compute).")
    L.append("")
    hdr = ("| routing | engine | budget | cap MiB | prefill tok/s | decode tok/s | vs llama.cpp | of resident | "
           "open s | peak RSS MiB | cgroup peak MiB | OOM | hit rate | misses/token | MB read/token | "
           "read MB/s | read-only bound tok/s | storage bound tok/s | of bound | tokens = resident | load before/after |")
    L.append(hdr)
    L.append("|" + "---|" * (hdr.count("|") - 1))
    for r in rows:
        status = "" if r["exit"] == 0 else (" (killed)" if r["oom"] else " (exit %s)" % r["exit"])
        L.append("| %s | %s | %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["routing"], r["engine"], r["setting"] if r["setting"] == "resident" else r["setting"] + "%",
            fmt(r["cap_mib"], "%.0f", "none"), fmt(r["prefill"]), fmt(r["decode"]), status,
            fmt(r.get("vs_llama"), "%.1fx"), fmt(r.get("of_resident") and r["of_resident"] * 100, "%.0f%%"),
            fmt(r["open_s"], "%.1f"), fmt(r["max_rss_mib"], "%.0f"), fmt(r["cg_peak_mib"], "%.0f"), r["oom"],
            fmt(r["hit"] and r["hit"] * 100, "%.1f%%"), fmt(r["misses"], "%.1f"), fmt(r["read_mb_tok"], "%.1f"),
            fmt(r.get("read_mb_s"), "%.0f"), fmt(r.get("io_bound")), fmt(r["bound"]), fmt(r["of_bound"] and r["of_bound"] * 100, "%.0f%%"),
            "-" if r["same"] is None else ("yes" if r["same"] else "NO"),
            "%s / %s" % r["load"]))
    L.append("")
    for R in a.routings.split():
        for name in ("%s-storage.json", "%s-storage-j1.json", "%s-storage-j4.json"):
            st = load_json(os.path.join(runs, name % R))
            if st:
                L.append("Storage (%s): %.1f MB/s over %d random reads of %d bytes by %d reader(s) (median %.2f ms), "
                         "page cache %s." % (R, st["mb_s"], st["count"], st["piece_bytes"], st.get("jobs", 1),
                                             st["median_ms"], "dropped" if st["page_cache_dropped"] else "NOT dropped"))
        L.append("")
    L.append("The storage bound uses the fastest of these.")
    L.append("")
    with open(os.path.join(a.out, "realsize.md"), "w") as f:
        f.write("\n".join(L))

    # SVG: decode tok/s per setting, both engines, log scale
    W, H, ml, mr, mt, mb = 760, 360, 70, 20, 40, 70
    vals = [r["decode"] for r in rows if r["decode"]]
    if vals:
        lo = 10 ** math.floor(math.log10(min(vals))) if min(vals) > 0 else 0.01
        hi = 10 ** math.ceil(math.log10(max(vals)))
        groups = [(R, s) for R in a.routings.split() for s in settings]
        gw = (W - ml - mr) / max(1, len(groups))
        bw = gw * 0.35

        def y(v):
            return mt + (H - mt - mb) * (1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

        S = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">'
             % (W, H), '<rect width="100%" height="100%" fill="white"/>',
             '<text x="%d" y="20" font-size="13">Decode tokens/s (log scale), V2-Lite-shaped, budget share of '
             'routed experts; capped runs in a memory cgroup</text>' % ml]
        d = lo
        while d <= hi * 1.0001:
            S.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (ml, W - mr, y(d), y(d)))
            S.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (ml - 5, y(d) + 4, d))
            d *= 10
        for i, (R, s) in enumerate(groups):
            x0 = ml + i * gw + gw * 0.15
            for j, (eng, col) in enumerate((("deepseek.h", "#1f77b4"), ("llama.cpp", "#d62728"))):
                r = [x for x in rows if x["routing"] == R and x["setting"] == s and x["engine"] == eng]
                if r and r[0]["decode"]:
                    v = r[0]["decode"]
                    S.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>'
                             % (x0 + j * bw, y(v), bw, H - mb - y(v), col))
                    S.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%.2g</text>'
                             % (x0 + j * bw + bw / 2, y(v) - 3, v))
                elif r:
                    S.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9" fill="%s">x</text>'
                             % (x0 + j * bw + bw / 2, H - mb - 3, col))
            S.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                     % (x0 + bw, H - mb + 15, s if s == "resident" else s + "%"))
            if s == settings[0]:
                S.append('<text x="%.1f" y="%d">%s</text>' % (x0, H - mb + 32, R))
        S.append('<rect x="%d" y="%d" width="10" height="10" fill="#1f77b4"/><text x="%d" y="%d">deepseek.h</text>'
                 % (ml, H - 22, ml + 14, H - 13))
        S.append('<rect x="%d" y="%d" width="10" height="10" fill="#d62728"/><text x="%d" y="%d">llama.cpp</text>'
                 % (ml + 100, H - 22, ml + 114, H - 13))
        S.append("</svg>")
        with open(os.path.join(a.out, "realsize.svg"), "w") as f:
            f.write("\n".join(S) + "\n")
    print("\n".join(L))
    print("wrote %s/realsize.md, realsize.csv, realsize.svg" % a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
