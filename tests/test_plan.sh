#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
# test_plan.sh — `ds inspect --plan` (ds_model_memory_plan) on containers the
# converter writes, against two independent computations.
#
#   plan-1.*   bad --mem values (garbage, negative, zero, a fraction of a byte,
#              a unit it does not know, empty), --mem, --ctx or --seqs without
#              --plan, --plan over an adapter, a bad --ctx or --seqs: exit 2
#              naming the option
#   plan-2.*   sizes: 8G, 8192M, 8589934592, 8GiB, 8.0G and 8g are one budget;
#              8GB is 8 * 10^9 bytes
#   plan-3.*   an encrypted file: without a key --plan fails (exit 1) saying it
#              needs the key; with it, the plan
#   plan-4.F.R for each family F (demo, v2lite, v2, v3, moe16b, pager) and
#              recipe R: resident and expert bytes are the page-rounded sums of
#              `ds inspect --json`'s segment table; every field of
#              `ds inspect --plan --json --mem M` equals tools/model_sizes.py's
#              plan() from the checkpoint's config.json, for budgets just
#              below the least, at it, in between and above all resident, and
#              for a context of 3 sequences of 300 tokens (--seqs, --ctx)
#   plan-5.*   text output: "does not fit" with the shortfall (exit 0) for a
#              small budget; for a budget that pages, the --cache-mb line and
#              the expected hit rate agree with --json
#   plan-6.*   experts dropped at conversion (--drop-experts 0.5): the plan
#              counts the experts left (half, the segment table's), in every
#              MoE layer, and all of them resident under a big budget
#
# Prints "ok <id>" / "FAIL <id>: ..." / "SKIP <id>: ..." per case and ends with
#     RESULT test_plan.sh: N passed, N failed, N skipped
#
#   sh tests/test_plan.sh                (after make build/ds testdata)

set -u
BUILD=${BUILD:-build}
DS=${DS:-$BUILD/ds}
TD=${DS_TESTDATA:-$BUILD/testdata}
PY=${PYTHON:-python3}

T=$(mktemp -d "${TMPDIR:-/tmp}/test_plan.XXXXXX") || { echo "RESULT test_plan.sh: 0 passed, 1 failed, 0 skipped"; exit 1; }
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP

if [ ! -x "$DS" ] || ! "$PY" -c 'import json' 2>/dev/null; then
    echo "FAIL plan-0: need $DS (make) and a python3 ($PY)"
    echo "RESULT test_plan.sh: 0 passed, 1 failed, 0 skipped"
    exit 1
fi

DS="$DS" TD="$TD" WORK="$T" PY="$PY" "$PY" - <<'EOF'
import json, os, subprocess

DS, TD, WORK, PY = (os.environ[k] for k in ("DS", "TD", "WORK", "PY"))
passed = failed = skipped = 0
PAGE, MIB = 4096, 1 << 20


def ok(cid):
    global passed
    passed += 1
    print("ok " + cid)


def bad(cid, why):
    global failed
    failed += 1
    print("FAIL %s: %s" % (cid, why))


def skip(cid, why):
    global skipped
    skipped += 1
    print("SKIP %s: %s" % (cid, why))


def ds(*args):
    return subprocess.run([DS] + list(args), capture_output=True, text=True)


def page_up(n):
    return -(-max(n, 1) // PAGE) * PAGE


# A small plaintext model and an encrypted one.
demo = "models/demo-hf"
small = os.path.join(WORK, "small.dsm")
sealed = os.path.join(WORK, "sealed.dsm")
key = os.path.join(WORK, "k.key")
src = demo if os.path.exists(os.path.join(demo, "config.json")) else os.path.join(TD, "v2lite")
r1 = ds("convert", src, small, "--no-encrypt")
r2 = ds("keygen", key)
r3 = ds("convert", src, sealed, "--key-file", key)
if r1.returncode or r2.returncode or r3.returncode:
    bad("plan-0", "could not make the test containers: " + (r1.stderr + r2.stderr + r3.stderr)[-300:])

# ---- plan-1: usage errors ----
for i, (args, want) in enumerate([
        (["--plan", "--mem", "abc"], "--mem"), (["--plan", "--mem", "-1"], "--mem"),
        (["--plan", "--mem", "0"], "--mem"), (["--plan", "--mem", "0G"], "--mem"),
        (["--plan", "--mem", "1.5"], "--mem"), (["--plan", "--mem", "8X"], "--mem"),
        (["--plan", "--mem", "8 G"], "--mem"), (["--plan", "--mem", ""], "--mem"),
        (["--plan", "--mem", "8GiBs"], "--mem"), (["--plan", "--mem", "99999999999999999999"], "--mem"),
        (["--plan", "--mem", "20000000P"], "--mem"), (["--mem", "8G"], "--plan"), (["--ctx", "512"], "--plan"),
        (["--plan", "--ctx", "0"], "--ctx"), (["--plan", "--ctx", "x"], "--ctx"), (["--seqs", "2"], "--plan"),
        (["--plan", "--seqs", "0"], "--seqs"), (["--plan", "--seqs", "257"], "--seqs"),
        (["--plan", "--base", small], "adapter")]):
    r = ds("inspect", small, *args)
    if r.returncode != 2 or want not in r.stderr or r.stdout:
        bad("plan-1.%d" % (i + 1), "%s: exit %d, stderr %r, stdout %r" % (args, r.returncode, r.stderr[-200:],
                                                                          r.stdout[-100:]))
    else:
        ok("plan-1.%d" % (i + 1))


def plan_json(path, *extra):
    r = ds("inspect", path, "--plan", "--json", *extra)
    if r.returncode != 0:
        raise RuntimeError("ds inspect --plan --json %s: exit %d: %s" % (" ".join(extra), r.returncode,
                                                                         r.stderr[-300:]))
    return json.loads(r.stdout)


# ---- plan-2: sizes ----
try:
    got = [plan_json(small, "--mem", m)["plan"]["mem_bytes"] for m in ("8G", "8192M", "8589934592", "8GiB", "8.0G", "8g")]
    if got != [8 << 30] * 6:
        bad("plan-2.1", "budgets %s" % got)
    else:
        ok("plan-2.1")
    gb = plan_json(small, "--mem", "8GB")["plan"]["mem_bytes"]
    half = plan_json(small, "--mem", "1.5G")["plan"]["mem_bytes"]
    if gb != 8 * 10 ** 9 or half != 3 << 29:
        bad("plan-2.2", "8GB gave %d, 1.5G %d" % (gb, half))
    else:
        ok("plan-2.2")
except (RuntimeError, ValueError, KeyError) as e:
    bad("plan-2", str(e))

# ---- plan-3: an encrypted file ----
r = ds("inspect", sealed, "--plan")
if r.returncode != 1 or "needs the key" not in r.stderr:
    bad("plan-3.1", "without a key: exit %d, %r" % (r.returncode, r.stderr[-200:]))
else:
    ok("plan-3.1")
r = ds("inspect", sealed, "--plan", "--key-file", key)
if r.returncode != 0 or "least budget" not in r.stdout:
    bad("plan-3.2", "with the key: exit %d, %r" % (r.returncode, (r.stdout + r.stderr)[-200:]))
else:
    ok("plan-3.2")

# ---- plan-4: against the segment table and model_sizes.py ----
recipes = [("q8", ["--quant", "q8"]), ("q4", ["--quant", "q4"]), ("f16", ["--quant", "f16"]),
           ("mixed", ["--quant-experts", "q4", "--quant-core", "q8"])]
sources = [("demo", demo)] + [(f, os.path.join(TD, f)) for f in ("v2lite", "v2", "v3", "moe16b", "pager")]
for name, hf in sources:
    if not os.path.exists(os.path.join(hf, "config.json")):
        skip("plan-4." + name, "no checkpoint in %s (make testdata)" % hf)
        continue
    for label, r in recipes if name != "pager" else recipes[1:2]:
        cid = "plan-4.%s.%s" % (name, label)
        out = os.path.join(WORK, "m.dsm")
        conv = ds("convert", hf, out, "--no-encrypt", "--force", *r)
        if conv.returncode != 0:
            bad(cid, "ds convert failed: " + conv.stderr.strip()[-300:])
            continue
        ins = ds("inspect", out, "--json")
        try:
            segs = json.loads(ins.stdout)["segments"]
            base = plan_json(out)["plan"]
        except (RuntimeError, ValueError, KeyError) as e:
            bad(cid, str(e))
            continue
        res = sum(page_up(s["plain_bytes"]) for s in segs if s["kind"] != "expert")
        exp = [page_up(s["plain_bytes"]) for s in segs if s["kind"] == "expert"]
        seg_want = {"resident_bytes": res, "expert_bytes": sum(exp), "n_experts": len(exp), "slot_bytes": max(exp or [0]),
                    "n_expert_layers": len({s["layer"] for s in segs if s["kind"] == "expert"})}
        diff = ["%s %s != %s" % (k, base.get(k), v) for k, v in seg_want.items() if base.get(k) != v]
        least = base["min_mem_bytes"]
        budgets = [(0, []), (least - 1, []), (least, []), (least + base["expert_bytes"] // 8, []),
                   (least + base["expert_bytes"] // 2, []), (base["full_bytes"] * 2 + (1 << 30), []),
                   (least + base["expert_bytes"] // 4, ["--seqs", "3", "--ctx", "300"])]
        for mem, more in budgets:
            try:
                got = plan_json(out, "--mem", str(mem), *more)["plan"] if mem else base
            except (RuntimeError, ValueError, KeyError) as e:
                diff.append(str(e))
                continue
            w = subprocess.run([PY, "tools/model_sizes.py", "--config", os.path.join(hf, "config.json"), "--json"] + r +
                               (["--mem", str(mem)] if mem else []) + more, capture_output=True, text=True)
            if w.returncode != 0:
                diff.append("model_sizes.py: " + w.stderr[-200:])
                continue
            want = json.loads(w.stdout)["plan"]
            for k in sorted(set(want) | set(got)):
                a, b = got.get(k), want.get(k)
                if isinstance(a, float) or isinstance(b, float):
                    same = a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))
                else:
                    same = a == b
                if not same:
                    diff.append("--mem %d %s: %s: ds %r, model_sizes.py %r" % (mem, " ".join(more), k, a, b))
        if diff:
            bad(cid, "; ".join(diff[:6]))
        else:
            ok(cid)

# ---- plan-5: text output ----
r = ds("inspect", small, "--plan", "--mem", "1M")
if r.returncode != 0 or "does not fit" not in r.stdout or "MiB short" not in r.stdout:
    bad("plan-5.1", "exit %d: %r" % (r.returncode, r.stdout[-300:]))
else:
    ok("plan-5.1")
pager = os.path.join(TD, "pager")
if os.path.exists(os.path.join(pager, "config.json")):
    out = os.path.join(WORK, "p.dsm")
    conv = ds("convert", pager, out, "--no-encrypt", "--force", "--quant", "q4")
    try:
        p0 = plan_json(out)["plan"]
        mem = str(p0["min_mem_bytes"] + p0["expert_bytes"] // 4)
        pj = plan_json(out, "--mem", mem)["plan"]
        t = ds("inspect", out, "--plan", "--mem", mem).stdout
        line = "--cache-mb %d " % pj["cache_mb"]
        rate = "%.1f%% of expert lookups" % (100 * pj["hit_rate"])
        if pj["all_resident"] or not pj["fits"] or line not in t or rate not in t or "ds run MODEL " + line not in t:
            bad("plan-5.2", "plan %s; text %r" % (pj, t[-500:]))
        else:
            ok("plan-5.2")
    except (RuntimeError, ValueError, KeyError) as e:
        bad("plan-5.2", str(e))
else:
    skip("plan-5.2", "no pager checkpoint")

# ---- plan-6: experts dropped at conversion ----
v2l = os.path.join(TD, "v2lite")
if os.path.exists(os.path.join(v2l, "config.json")):
    full = os.path.join(WORK, "full.dsm")
    cal = os.path.join(WORK, "cal.json")
    pruned = os.path.join(WORK, "pruned.dsm")
    txt = os.path.join(WORK, "text.txt")
    with open(txt, "w") as f:
        f.write("The quick brown fox jumps over the lazy dog. " * 8)
    steps = [ds("convert", v2l, full, "--no-encrypt", "--force"),
             ds("calibrate", full, "--file", txt, "--out", cal, "--ctx", "48"),
             ds("convert", v2l, pruned, "--no-encrypt", "--force", "--drop-experts", "0.5", "--calib", cal)]
    fail = [r for r in steps if r.returncode != 0]
    if fail:
        bad("plan-6", "making the pruned container: " + fail[0].stderr[-300:])
    else:
        try:
            segs = json.loads(ds("inspect", pruned, "--json").stdout)["segments"]
            a, b = plan_json(full)["plan"], plan_json(pruned)["plan"]
            n = sum(1 for s in segs if s["kind"] == "expert")
            exp = sum(page_up(s["plain_bytes"]) for s in segs if s["kind"] == "expert")
            if b["n_experts"] != n or b["expert_bytes"] != exp or 2 * n != a["n_experts"] or \
                    b["n_expert_layers"] != a["n_expert_layers"]:
                bad("plan-6.1", "pruned %s vs full %s, segments %d" % (b, a, n))
            else:
                ok("plan-6.1")
            big = plan_json(pruned, "--mem", str(b["full_bytes"] * 2 + (1 << 30)))["plan"]
            if not big["all_resident"] or big["cache_slots"] != n:
                bad("plan-6.2", "%s" % big)
            else:
                ok("plan-6.2")
        except (RuntimeError, ValueError, KeyError) as e:
            bad("plan-6", str(e))
else:
    skip("plan-6", "no v2lite checkpoint")

print("RESULT test_plan.sh: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys_exit = 1 if failed else 0
raise SystemExit(sys_exit)
EOF
