#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""LoRA adapters in ds-server (--lora NAME=FILE, "model": "BASE:NAME",
/v1/adapters), from outside; standard library only.

    python3 tests/server/test_lora.py --port P --keys K.json --base BASE --adapter a --zero zero
                                      --load-path B.dsa --other-base O.dsa --audit-log A
    python3 tests/server/test_lora.py --suite open --port P --base BASE --adapter a [--experts x]

The server (started by tests/server/run.sh) serves the demo model with
adapter `a` (--lora a=A.dsa) and `zero` (--lora-scaled zero=A.dsa 0: the same
file at scale 0, which must answer exactly as the base), one slot, and a
keys file (K.json, as run.sh writes it: name -> {"role", "token"}). The
checks: /v1/models lists BASE and BASE:NAME; an adapter changes the
log-probabilities, scale 0 changes nothing; an unknown name is 404; prompt
reuse is counted only under the same adapter (/metrics); the admin role
lists, loads (POST /v1/adapters) and unloads (DELETE) adapters, 409 while a
request uses one, every other role 403; the audit log has the adapter
events and each request's adapter. --suite open: a server without
--keys-file (two slots) refuses /v1/adapters (403), still serves
BASE:NAME, keeps the base's and the adapter's prompts in their own slots,
and decodes the base, `a` and the MLP adapter `x` together in one pass each
step as each alone.

Prints "ok <id>" / "FAIL <id>: why" / "SKIP <id>: why" per case (counted by
tests/server/run.sh).
"""
import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (its HTTP helpers; they read ts.ARGS)

ARGS = None
PROMPT = "And God said, Let there be light: and there was"


def check(case, cond, why):
    return ts.check(case, cond, why)


def tok(key):
    return ARGS.keys[key]["token"] if key else None


def call(method, path, key=None, body=None):
    ARGS.n_completions += path == "/v1/completions"
    return ts.request(method, path, body=body, token=tok(key))


def key_of(role):
    for name, v in sorted(ARGS.keys.items()):
        if v["role"] == role and not v.get("spare") and not v.get("limits"):
            return name
    return None


def completion(model, key=None, prompt=PROMPT, max_tokens=6, **kw):
    b = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "logprobs": 3}
    b.update(kw)
    st, _, data = call("POST", "/v1/completions", key=key, body=b)
    return st, ts.jbody(data) or {}, data


def logprobs_of(j):
    try:
        return j["choices"][0]["logprobs"]["token_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None


def code_of(j):
    return ((j or {}).get("error") or {}).get("code")


def metric(data, pattern):
    m = re.search(pattern, data)
    return float(m.group(1)) if m else None


def reused_total(key):
    """ds_server_prompt_tokens_reused_total once every completion so far is
    counted (a request is counted when its connection is done, which may be
    a little after the client has its answer)."""
    want = ARGS.n_completions
    for _ in range(50):
        st, _, data = call("GET", "/metrics", key=key)
        n = sum(float(x) for x in re.findall(
            rb'(?m)^ds_server_requests_total\{endpoint="/v1/completions",code="[0-9]+"\} ([0-9.e+]+)', data))
        if st == 200 and n == want:
            return metric(data, rb"(?m)^ds_server_prompt_tokens_reused_total ([0-9.e+]+)")
        time.sleep(0.05)
    return None


def t_models(key):
    st, _, data = call("GET", "/v1/models", key=key)
    j = ts.jbody(data) or {}
    ids = [m.get("id") for m in j.get("data", [])]
    want = [ARGS.base, ARGS.base + ":" + ARGS.adapter, ARGS.base + ":" + ARGS.zero]
    check("lora-1", st == 200 and all(w in ids for w in want), f"{st}: /v1/models lists {ids}, want {want}")
    ad = [m for m in j.get("data", []) if m.get("id") == ARGS.base + ":" + ARGS.adapter]
    check("lora-1b", ad and ad[0].get("parent") == ARGS.base and ad[0].get("object") == "model",
          f"the adapter's model object: {ad}")
    st, _, data = call("GET", "/v1/models/" + ARGS.base + ":" + ARGS.adapter, key=key)
    check("lora-1c", st == 200 and (ts.jbody(data) or {}).get("id") == ARGS.base + ":" + ARGS.adapter,
          f"GET /v1/models/BASE:NAME: {st} {data[:200]!r}")
    st, _, data = call("GET", "/v1/models/" + ARGS.base + ":nosuch", key=key)
    check("lora-1d", st == 404, f"GET /v1/models/BASE:nosuch: {st}")


def t_apply(key):
    st0, j0, d0 = completion(ARGS.base, key)
    sta, ja, da = completion(ARGS.base + ":" + ARGS.adapter, key)
    stz, jz, dz = completion(ARGS.base + ":" + ARGS.zero, key)
    lp0, lpa, lpz = logprobs_of(j0), logprobs_of(ja), logprobs_of(jz)
    check("lora-2", st0 == 200 and sta == 200 and lp0 and lpa, f"{st0} {d0[:200]!r} / {sta} {da[:200]!r}")
    if lp0 and lpa:
        diff = max(abs(x - y) for x, y in zip(lp0, lpa))
        check("lora-2b", diff > 1e-3 or j0["choices"][0]["text"] != ja["choices"][0]["text"],
              f"the adapter changes nothing: log-probabilities {lp0} vs {lpa}")
    check("lora-2c", ja.get("model") == ARGS.base + ":" + ARGS.adapter,
          f"the answer's model is {ja.get('model')!r}, want BASE:NAME")
    check("lora-3", stz == 200 and lpz == lp0 and jz["choices"][0]["text"] == j0["choices"][0]["text"],
          f"scale 0 differs from the base: {lpz} vs {lp0}")
    # chat completions too
    st, _, data = call("POST", "/v1/chat/completions", key=key,
                       body={"model": ARGS.base + ":" + ARGS.adapter, "max_tokens": 3,
                             "messages": [{"role": "user", "content": "Hi"}]})
    check("lora-4", st == 200 and (ts.jbody(data) or {}).get("model") == ARGS.base + ":" + ARGS.adapter,
          f"chat with BASE:NAME: {st} {data[:200]!r}")
    for path in ("/v1/completions", "/v1/chat/completions"):
        body = {"model": ARGS.base + ":nosuch", "max_tokens": 2, "prompt": "x",
                "messages": [{"role": "user", "content": "Hi"}]}
        if path == "/v1/completions":
            del body["messages"]
        else:
            del body["prompt"]
        st, _, data = call("POST", path, key=key, body=body)
        j = ts.jbody(data)
        check("lora-5" + ("" if path == "/v1/completions" else "b"),
              st == 404 and code_of(j) == "model_not_found" and "nosuch" in j["error"]["message"] and
              j["error"].get("param") == "model", f"{path} with an unknown adapter: {st} {data[:300]!r}")


def t_reuse(key, mkey):
    """One slot: a prompt again under the same adapter reuses its tokens; under
    another adapter it reuses none (they were computed under the other one),
    and its answer is what it is from scratch."""
    longp = PROMPT + " " + PROMPT
    _, ja1, _ = completion(ARGS.base + ":" + ARGS.adapter, key, prompt=longp)   # from whatever the slot held
    r0 = reused_total(mkey)
    completion(ARGS.base, key, prompt=longp)
    r1 = reused_total(mkey)
    completion(ARGS.base, key, prompt=longp)
    r2 = reused_total(mkey)
    _, ja2, _ = completion(ARGS.base + ":" + ARGS.adapter, key, prompt=longp)
    r3 = reused_total(mkey)
    ok = None not in (r0, r1, r2, r3)
    check("lora-6", ok and r1 == r0, f"a switch of adapter reused tokens: {r0} -> {r1}")
    check("lora-6b", ok and r2 > r1, f"the same prompt and adapter again reused nothing: {r1} -> {r2}")
    check("lora-6c", ok and r3 == r2, f"back to the adapter reused the base's tokens: {r2} -> {r3}")
    l1, l2 = logprobs_of(ja1), logprobs_of(ja2)
    # (the same up to rounding: the two prompts are evaluated in other batch shapes)
    check("lora-6d", l1 and l2 and len(l1) == len(l2) and max(abs(x - y) for x, y in zip(l1, l2)) < 1e-3 and
          ja1["choices"][0]["text"] == ja2["choices"][0]["text"],
          f"the adapter's answer after the base's differs: {l1} vs {l2}")


def t_admin():
    adm, inf, met = key_of("admin"), key_of("inference"), key_of("metrics")
    # ---- roles ----
    for case, k in (("lora-7", inf), ("lora-7b", met)):
        sts = [call("GET", "/v1/adapters", key=k)[0],
               call("POST", "/v1/adapters", key=k, body={"name": "x", "path": ARGS.load_path})[0],
               call("DELETE", "/v1/adapters/" + ARGS.adapter, key=k)[0]]
        check(case, sts == [403, 403, 403], f"key {k} ({ARGS.keys[k]['role']}) on /v1/adapters: {sts}")
    st, _, _ = call("GET", "/v1/adapters")
    check("lora-7c", st == 401, f"no key: {st}")
    # ---- list ----
    st, _, data = call("GET", "/v1/adapters", key=adm)
    j = ts.jbody(data) or {}
    a = [x for x in j.get("data", []) if x.get("name") == ARGS.adapter]
    ok = st == 200 and a and a[0].get("rank") == 4 and a[0].get("alpha") == 8 and \
        a[0].get("targets") == "q_proj,kv_b_proj" and a[0].get("bytes", 0) > 0 and a[0].get("path") and \
        a[0].get("model") == ARGS.base + ":" + ARGS.adapter
    check("lora-8", ok, f"GET /v1/adapters: {st} {data[:400]!r}")
    z = [x for x in j.get("data", []) if x.get("name") == ARGS.zero]
    check("lora-8b", z and z[0].get("scale") == 0, f"the scaled adapter: {z}")
    # ---- load ----
    st, _, data = call("POST", "/v1/adapters", key=adm, body={"name": "b", "path": ARGS.load_path, "scale": 0.5})
    jb = ts.jbody(data) or {}
    check("lora-9", st == 200 and jb.get("name") == "b" and jb.get("scale") == 0.5 and jb.get("rank", 0) > 0,
          f"POST /v1/adapters: {st} {data[:300]!r}")
    st, _, data = call("GET", "/v1/models", key=inf)
    ids = [m.get("id") for m in (ts.jbody(data) or {}).get("data", [])]
    check("lora-9b", ARGS.base + ":b" in ids, f"/v1/models after the load: {ids}")
    st0, j0, _ = completion(ARGS.base, inf)
    stb, jb2, db = completion(ARGS.base + ":b", inf)
    check("lora-9c", stb == 200 and logprobs_of(jb2) and logprobs_of(jb2) != logprobs_of(j0),
          f"BASE:b after the load: {stb} {db[:200]!r}")
    st, _, data = call("POST", "/v1/adapters", key=adm, body={"name": "b", "path": ARGS.load_path})
    check("lora-10", st == 409 and code_of(ts.jbody(data)) == "adapter_exists", f"the name again: {st} {data[:200]!r}")
    st, _, data = call("POST", "/v1/adapters", key=adm, body={"name": "c", "path": "/no/such/file.dsa"})
    j = ts.jbody(data)
    check("lora-10b", st == 400 and code_of(j) == "adapter_invalid" and "/no/such/file.dsa" in j["error"]["message"],
          f"a missing file: {st} {data[:300]!r}")
    st, _, data = call("POST", "/v1/adapters", key=adm, body={"name": "c", "path": ARGS.other_base})
    j = ts.jbody(data)
    check("lora-10c", st == 400 and code_of(j) == "adapter_invalid" and "identity" in j["error"]["message"],
          f"an adapter for another base: {st} {data[:400]!r}")
    st, _, data = call("POST", "/v1/adapters", key=adm, body={"name": "bad name", "path": ARGS.load_path})
    check("lora-10d", st == 400 and (ts.jbody(data) or {}).get("error", {}).get("param") == "name",
          f"a bad name: {st} {data[:200]!r}")
    st, _, data = call("POST", "/v1/adapters", key=adm, body={"name": "d"})
    check("lora-10e", st == 400, f"no path: {st} {data[:200]!r}")
    # ---- unload: 409 while a request uses it ----
    ts.ARGS.token = tok(inf)
    try:
        s, head = ts.open_stream(path="/v1/completions",
                                 body={"model": ARGS.base + ":b", "prompt": PROMPT, "max_tokens": ARGS.hold_tokens,
                                       "stream": True, "ignore_eos": True})
    finally:
        ts.ARGS.token = None
    check("lora-11", head.startswith(b"HTTP/1.1 200"), f"a held stream on BASE:b: {head[:100]!r}")
    st, _, data = call("DELETE", "/v1/adapters/b", key=adm)
    check("lora-11b", st == 409 and code_of(ts.jbody(data)) == "adapter_in_use",
          f"DELETE while a request uses it: {st} {data[:200]!r}")
    s.close()
    st = None
    for _ in range(100):                  # the stream's request ends once the server sees the close
        st, _, data = call("DELETE", "/v1/adapters/b", key=adm)
        if st != 409:
            break
        time.sleep(0.1)
    check("lora-11c", st == 200 and (ts.jbody(data) or {}).get("deleted") is True,
          f"DELETE once the request ended: {st} {data[:200]!r}")
    st, _, data = call("GET", "/v1/models", key=inf)
    ids = [m.get("id") for m in (ts.jbody(data) or {}).get("data", [])]
    check("lora-11d", ARGS.base + ":b" not in ids and ARGS.base + ":" + ARGS.adapter in ids,
          f"/v1/models after the unload: {ids}")
    st, j, data = completion(ARGS.base + ":b", inf)
    check("lora-11e", st == 404 and code_of(j) == "model_not_found", f"BASE:b after the unload: {st} {data[:200]!r}")
    st, _, _ = call("DELETE", "/v1/adapters/b", key=adm)
    check("lora-11f", st == 404, f"DELETE of an adapter not loaded: {st}")
    st, _, _ = call("PUT", "/v1/adapters", key=adm)
    check("lora-11g", st == 405, f"PUT /v1/adapters: {st}")
    # ---- the audit trail ----
    time.sleep(0.3)
    recs = []
    try:
        for ln in open(ARGS.audit_log, encoding="utf-8"):
            recs.append(json.loads(ln))
    except (OSError, ValueError) as e:
        check("lora-12", False, f"reading the audit log: {e}")
        return
    ev = [r for r in recs if r.get("type") == "event"]
    loaded = [r for r in ev if r.get("event") == "adapter_loaded"]
    check("lora-12", any(r.get("name") == ARGS.adapter and r.get("key") is None and r.get("rank") == 4 for r in loaded)
          and any(r.get("name") == "b" and r.get("key") == adm and r.get("path") == ARGS.load_path for r in loaded),
          f"adapter_loaded events: {loaded}")
    check("lora-12b", any(r.get("event") == "adapter_unloaded" and r.get("name") == "b" and r.get("key") == adm
                          for r in ev), "no adapter_unloaded event for b by the admin key")
    check("lora-12c", any(r.get("event") == "adapter_load_failed" and r.get("name") == "c" for r in ev),
          "no adapter_load_failed event for c")
    reqs = [r for r in recs if r.get("type") == "request" and r.get("endpoint") == "/v1/completions"]
    check("lora-12d", any(r.get("adapter") == ARGS.adapter and r.get("status") == 200 for r in reqs) and
          any(r.get("adapter") is None and r.get("status") == 200 for r in reqs) and
          all("adapter" in r for r in reqs), "request records lack the adapter field")


def t_open():
    st, _, data = call("GET", "/v1/adapters")
    check("lora-13", st == 403 and "--keys-file" in (ts.jbody(data) or {}).get("error", {}).get("message", ""),
          f"/v1/adapters without --keys-file: {st} {data[:200]!r}")
    st, _, _ = call("POST", "/v1/adapters", body={"name": "x", "path": "/etc/passwd"})
    check("lora-13b", st == 403, f"POST /v1/adapters without --keys-file: {st}")
    st, j, data = completion(ARGS.base + ":" + ARGS.adapter)
    check("lora-13c", st == 200 and j.get("model") == ARGS.base + ":" + ARGS.adapter,
          f"BASE:NAME without keys: {st} {data[:200]!r}")
    # two slots: each keeps its adapter's tokens, and a request takes the
    # slot that holds its prompt under its own adapter (not the other one's,
    # whose tokens it would have to forget)
    longp = PROMPT + " " + PROMPT
    base, ad = ARGS.base, ARGS.base + ":" + ARGS.adapter
    seen = []
    for model in (base, ad, base, ad, base):
        completion(model, prompt=longp)
        seen.append(reused_total(None))
    ok = None not in seen
    check("lora-14", ok and seen[2] > seen[1] and seen[3] > seen[2] and seen[4] > seen[3],
          f"alternating base and adapter on two slots: reused totals {seen} (each repeat should reuse)")


def t_mixed():
    """Requests for the base and for adapters decoded together, in one pass
    per step, answer as each does alone (greedy)."""
    import threading
    models = [ARGS.base, ARGS.base + ":" + ARGS.adapter] + \
        ([ARGS.base + ":" + ARGS.experts] if ARGS.experts else [])
    body = dict(prompt=PROMPT, max_tokens=24, ignore_eos=True)
    alone = {}
    for m in models:
        st, j, data = completion(m, **body)
        alone[m] = (st, (j.get("choices") or [{}])[0].get("text"))
    together = {}

    def one(m):
        st, j, data = completion(m, **body)
        together[m] = (st, (j.get("choices") or [{}])[0].get("text"))

    for rnd in (1, 2):
        th = [threading.Thread(target=one, args=(m,)) for m in models]
        for t in th:
            t.start()
        for t in th:
            t.join()
        check("lora-15.%d" % rnd, all(alone[m][0] == 200 and together.get(m) == alone[m] for m in models),
              f"decoded together {together} vs alone {alone}")
    texts = [alone[m][1] for m in models]
    check("lora-15b", len(set(texts)) == len(texts), f"the adapters do not change the greedy text: {texts}")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", default="keys", choices=["keys", "open"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keys")
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", default="a")
    ap.add_argument("--zero", default="zero")
    ap.add_argument("--experts", help="an adapter of the MLPs (the open suite decodes it beside the others)")
    ap.add_argument("--load-path")
    ap.add_argument("--other-base")
    ap.add_argument("--audit-log")
    ap.add_argument("--hold-tokens", type=int, default=30000)
    ARGS = ap.parse_args()
    ARGS.n_completions = 0                # sent so far (reused_total waits until /metrics counts them all)
    ts.ARGS = argparse.Namespace(port=ARGS.port, token=None, hold_tokens=ARGS.hold_tokens)
    if ARGS.suite == "open":
        t_open()
        t_mixed()
        return 0
    ARGS.keys = json.load(open(ARGS.keys))
    inf, met = key_of("inference"), key_of("metrics")
    t_models(inf)
    t_apply(inf)
    t_reuse(inf, met)
    t_admin()
    return 0


if __name__ == "__main__":
    sys.exit(main())
