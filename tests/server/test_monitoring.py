#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""ds-server's monitoring, from outside (standard library only).

    python3 tests/server/test_monitoring.py --suite live --port P --token-file F --max-body N
        [--dashboard deploy/grafana/ds-server.json] [--alerts deploy/prometheus/alerts.yml]
        [--model-config config.json --model-sizes tools/model_sizes.py] [--metrics-out FILE]
    python3 tests/server/test_monitoring.py --suite failures --port P [--token-file F] --reason auth|truncated,io
        --case ID
    python3 tests/server/test_monitoring.py --suite flops --port P --model-config config.json --case ID

live: on a fresh server (run.sh starts one with --api-key-file, a paged
expert cache and two slots) it sends a known set of requests, then reads
/metrics and checks:

  mon-1    every histogram is well formed: per label set, buckets with
           increasing le ending in +Inf, cumulative counts that never
           decrease, +Inf equal to _count
  mon-2    time to first token: one observation per generation that
           sampled a token (not the max_tokens 0 one), its sum within the
           requests' own latencies
  mon-3    inter-token latency: (tokens - 1) observations per generation,
           its sum within the generation time
  mon-4    batch size: the decode steps fed back (tokens - 1 per request)
           are the histogram's sum; its count is at most that
  mon-5    generated tokens total = the completion tokens the answers report
  mon-6    errors by kind: every kind present; the 400s, 401, 404/405 and
           413 sent are counted as bad_request, auth, not_found, too_large,
           and nothing else
  mon-7    KV cache: 0 < tokens held <= capacity = slots x context length
  mon-8    active parameters: tools/model_sizes.py's figure for the model's
           config.json (an independent computation); FLOPs per token = 2 x
  mon-9    the expert cache's counters moved and bytes were decrypted
  mon-10   token log-probabilities: one per sampled token, all <= 0
           (SKIP while the generation loop does not observe them)
  mon-11.* every ds_/process_ series the Grafana dashboard (.1) and the
           alert rules (.2) query is on this /metrics, a _bucket only of a
           histogram; .3: the dashboard covers each monitoring dimension
  mon-12   the dashboard's panels each have a query and a data source

failures: after run.sh made generations fail on a tampered (auth) or
truncated model: /metrics answers (ID.1), ds_server_model_failures_total
counted one under --reason, every reason present (ID.2),
ds_server_errors_total{kind="model_error"} counted them (ID.3),
ds_server_model_degraded is 1 (ID.4), the histograms are well formed (ID.5).

flops: mon-8 alone, on a server of another family (run.sh seals the small
DeepSeek-V3 and DeepSeek-MoE checkpoints: q-LoRA, noaux_tc, multi-head
attention), case id from --case.

Prints "ok <id>" / "FAIL <id>: why" / "SKIP <id>: why" per case (counted
by run.sh).
"""
import argparse
import http.client
import json
import re
import subprocess
import sys
import threading

ARGS = None
FAILED = 0


def report(kind, case, why=""):
    global FAILED
    if kind == "FAIL":
        FAILED += 1
    print(f"{kind} {case}" + (f": {why}" if why else ""), flush=True)


def check(case, cond, why):
    report("ok" if cond else "FAIL", case, "" if cond else why)
    return cond


def request(method, path, body=None, token=None, raw=None, headers=None):
    h = {"Host": "127.0.0.1"}
    if body is not None:
        raw = json.dumps(body).encode()
    if raw is not None:
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=120)
    try:
        c.request(method, path, body=raw, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# ==== The exposition format ===================================================

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """(types {family: type}, samples [(name, {labels}, value)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(None, 3)
            types[fam] = typ.strip()
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if not m:
                raise ValueError("not a sample line: %r" % line)
            samples.append((m.group(1), dict(LABEL.findall(m.group(3) or "")), float(m.group(4))))
    return types, samples


def value(samples, name, **labels):
    """The value of the one sample with this name and (at least) these labels; None if absent."""
    for n, lab, v in samples:
        if n == name and all(lab.get(k) == str(w) for k, w in labels.items()):
            return v
    return None


def histograms(types, samples):
    """{(family, labels without le): {"buckets": [(le, count)], "sum": s, "count": c}}."""
    out = {}
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        for n, lab, v in samples:
            if n not in (fam + "_bucket", fam + "_sum", fam + "_count"):
                continue
            key = (fam, tuple(sorted((k, w) for k, w in lab.items() if k != "le")))
            h = out.setdefault(key, {"buckets": [], "sum": None, "count": None})
            if n.endswith("_bucket"):
                h["buckets"].append((lab.get("le"), v))
            elif n.endswith("_sum"):
                h["sum"] = v
            else:
                h["count"] = v
    return out


def histogram_problems(hists):
    bad = []
    for (fam, lab), h in hists.items():
        where = fam + (str(dict(lab)) if lab else "")
        les = [le for le, _ in h["buckets"]]
        if not les or les[-1] != "+Inf":
            bad.append(where + ": no +Inf bucket last")
            continue
        try:
            bounds = [float(le) for le in les[:-1]]
        except (TypeError, ValueError):
            bad.append(where + ": an le that is not a number: %s" % les)
            continue
        if any(b >= c for b, c in zip(bounds, bounds[1:])):
            bad.append(where + ": le not increasing")
        counts = [c for _, c in h["buckets"]]
        if any(b > c for b, c in zip(counts, counts[1:])):
            bad.append(where + ": bucket counts decrease")
        if h["count"] is None or h["sum"] is None:
            bad.append(where + ": no _sum or _count")
        elif counts[-1] != h["count"]:
            bad.append(where + ": +Inf %g != _count %g" % (counts[-1], h["count"]))
    return bad


def hist(hists, fam, **labels):
    return hists.get((fam, tuple(sorted((k, str(v)) for k, v in labels.items()))))


# ==== Metric names in PromQL ==================================================

def promql_metric_names(expr):
    """The ds_/process_ metric names a PromQL expression selects: string
    literals, label matchers {...} and ranges/subqueries [...] are removed
    first (label values and durations are not names; Grafana's $variables
    live there), then every identifier with one of those prefixes that is
    not a label name of by/on/without/ignoring/group_* (none has them)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r'\{[^{}]*\}', ' ', e)
    e = re.sub(r'\[[^\[\]]*\]', ' ', e)
    return {m for m in re.findall(r'(?<![A-Za-z0-9_:$])[A-Za-z_:][A-Za-z0-9_:]*', e)
            if m.startswith(("ds_", "process_"))}


def dashboard_exprs(dash):
    """Every query of a Grafana dashboard: targets' expr and query variables."""
    out = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "expr" and isinstance(v, str):
                    out.append(v)
                elif k in ("query", "definition") and isinstance(v, str) and "(" in v:
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    return out


def rules_exprs(text):
    """The expr: values of a Prometheus rules file (plain or | / > blocks).
    Stdlib only, so not a YAML parser: enough for rule files whose exprs are
    a one-line scalar or a block scalar, as alerts.yml's are."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r'^(\s*)(?:-\s+)?expr:\s*(.*)$', lines[i])
        i += 1
        if not m:
            continue
        indent, rest = len(m.group(1)), m.group(2).strip()
        if rest and rest[0] not in "|>":
            if rest[0] in "'\"" and rest[-1] == rest[0]:
                rest = rest[1:-1]
            out.append(rest)
            continue
        block = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i].strip())
            i += 1
        out.append(" ".join(block))
    return out


def name_problems(names, types, samples):
    have = {n for n, _, _ in samples}
    bad = []
    for n in sorted(names):
        if n in have:
            if n.endswith("_bucket") and types.get(n[:-len("_bucket")]) != "histogram":
                bad.append(n + " (a _bucket series of something not a histogram)")
            continue
        if types.get(n) == "histogram":
            bad.append(n + " (a histogram: its series are _bucket, _sum and _count)")
        else:
            bad.append(n + " (not on /metrics)")
    return bad


# ==== Suites ==================================================================

def gen(path, body):
    st, data = request("POST", path, body=body, token=ARGS.token)
    if st != 200:
        return st, None
    if body.get("stream"):
        toks = None
        for line in data.decode("utf-8", "replace").splitlines():
            if line.startswith("data: {"):
                j = json.loads(line[6:])
                if j.get("usage"):
                    toks = j["usage"]["completion_tokens"]
        return st, toks
    j = json.loads(data)
    return st, j["completion_tokens"] if "completion_tokens" in j else j["usage"]["completion_tokens"]


def check_flops(case, samples):
    """The active parameters and FLOPs per token on /metrics against
    tools/model_sizes.py's figure for the model's config.json."""
    act = value(samples, "ds_server_model_active_parameters")
    flops = value(samples, "ds_server_model_flops_per_token")
    if not ARGS.model_config:
        report("SKIP", case, "no --model-config for this model")
        return
    cfg = json.load(open(ARGS.model_config))
    if cfg.get("tie_word_embeddings"):
        report("SKIP", case, "tied embeddings: model_sizes.py leaves the head out, the server counts it")
        return
    r = subprocess.run([sys.executable, ARGS.model_sizes, "--config", ARGS.model_config, "--json"],
                       capture_output=True, text=True)
    ref = json.loads(r.stdout)["active_params"] if r.returncode == 0 else None
    check(case, ref is not None and act == ref and flops == 2 * act,
          f"active parameters {act}, model_sizes.py {ref} ({r.stderr.strip()[:200]}); FLOPs/token {flops}")


def t_flops():
    st, data = request("GET", "/metrics", token=ARGS.token)
    if check(ARGS.case + ".0", st == 200, f"/metrics answered {st}"):
        check_flops(ARGS.case, parse_metrics(data.decode("utf-8"))[1])


def t_live():
    # ---- traffic, each request's tokens known: ignore_eos and no stop, so
    # each generation samples exactly max_tokens tokens ----
    plan = ([("/v1/completions", {"prompt": "The quick brown fox", "max_tokens": 5})] * 3 +
            [("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 4,
                                       "stream": True, "stream_options": {"include_usage": True}})] * 2 +
            [("/generate", {"prompt": "Once upon a time", "max_tokens": 3})])
    results = []
    for path, body in plan:
        b = dict(body, ignore_eos=True, temperature=0)
        results.append((body["max_tokens"],) + gen(path, b))
    # four at once on two slots: two wait in the queue
    par = []

    def one():
        par.append((6,) + gen("/v1/completions", {"prompt": "In parallel", "max_tokens": 6, "ignore_eos": True}))
    ths = [threading.Thread(target=one) for _ in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    results += par
    # a generation that samples nothing
    st0, n0 = gen("/v1/completions", {"prompt": "Nothing", "max_tokens": 0})
    bad_gen = [(want, st, got) for want, st, got in results if st != 200 or got != want]
    if bad_gen or st0 != 200 or n0 != 0:
        report("FAIL", "mon-0", "the traffic did not go as planned (want 200 and exactly max_tokens tokens): "
               f"{bad_gen}, max_tokens 0: {st0} {n0}")
        return
    n_gen = len(results)
    tokens = sum(want for want, _, _ in results)
    fed_back = sum(want - 1 for want, _, _ in results)

    # ---- errors of known kinds ----
    errs = [request("POST", "/v1/completions", raw=b"{not json", token=ARGS.token)[0],
            request("POST", "/v1/completions", body={"prompt": "x", "temperature": 9}, token=ARGS.token)[0],
            request("GET", "/v1/models")[0],
            request("GET", "/no-such-path", token=ARGS.token)[0],
            request("POST", "/health", body={}, token=ARGS.token)[0],
            request("POST", "/v1/completions", raw=b"x" * (ARGS.max_body + 100), token=ARGS.token)[0]]
    if errs != [400, 400, 401, 404, 405, 413]:
        report("FAIL", "mon-0", f"the error requests answered {errs}, not [400, 400, 401, 404, 405, 413]")
        return

    st, models = request("GET", "/v1/models", token=ARGS.token)
    n_ctx = json.loads(models)["data"][0]["context_length"] if st == 200 else None
    st, data = request("GET", "/metrics", token=ARGS.token)
    if st != 200:
        report("FAIL", "mon-0", f"/metrics answered {st}")
        return
    text = data.decode("utf-8")
    if ARGS.metrics_out:
        with open(ARGS.metrics_out, "w") as f:
            f.write(text)
    types, samples = parse_metrics(text)
    hists = histograms(types, samples)
    check("mon-1", not histogram_problems(hists) and len(hists) >= 6, f"{histogram_problems(hists)} "
          f"({len(hists)} histograms)")

    # ---- performance ----
    ttft = hist(hists, "ds_server_time_to_first_token_seconds")
    lat = sum(hist(hists, "ds_server_request_duration_seconds", endpoint=e)["sum"]
              for e in ("/v1/completions", "/v1/chat/completions", "/generate"))
    check("mon-2", ttft and ttft["count"] == n_gen and 0 < ttft["sum"] <= lat,
          f"time to first token {ttft and (ttft['count'], ttft['sum'])}: want {n_gen} observations summing to "
          f"at most the requests' latency {lat:.3f} s")
    itl = hist(hists, "ds_server_inter_token_latency_seconds")
    gsec = value(samples, "ds_server_generation_seconds_total")
    check("mon-3", itl and itl["count"] == fed_back and 0 < itl["sum"] <= gsec * 1.01 + 0.01,
          f"inter-token latency {itl and (itl['count'], itl['sum'])}: want {fed_back} observations summing to at "
          f"most the generation time {gsec} s")
    bs = hist(hists, "ds_server_batch_size")
    check("mon-4", bs and bs["sum"] == fed_back and 1 <= bs["count"] <= fed_back,
          f"batch size (count, sum) {bs and (bs['count'], bs['sum'])}: want the sum {fed_back} (tokens fed back) "
          f"over at most that many steps")
    gt = value(samples, "ds_server_generated_tokens_total")
    check("mon-5", gt == tokens, f"ds_server_generated_tokens_total {gt}, the answers say {tokens}")

    # ---- stability ----
    want = {"bad_request": 2, "auth": 1, "not_found": 2, "too_large": 1}
    kinds = {lab["kind"]: v for n, lab, v in samples if n == "ds_server_errors_total"}
    every = {"bad_request", "not_found", "too_large", "auth", "forbidden", "rate_limited", "queue_full",
             "queue_timeout", "shutting_down", "unavailable", "request_timeout", "client_gone", "model_error",
             "internal", "other"}
    check("mon-6", every <= set(kinds) and all(kinds[k] == want.get(k, 0) for k in kinds),
          f"ds_server_errors_total {kinds}, want {want} and 0 for every other kind of {sorted(every)}")

    # ---- KV cache, FLOPs, expert cache ----
    kv = value(samples, "ds_server_kv_cache_tokens")
    cap = value(samples, "ds_server_kv_cache_capacity_tokens")
    slots = value(samples, "ds_server_slots")
    check("mon-7", kv is not None and cap is not None and 0 < kv <= cap and n_ctx and cap == slots * n_ctx,
          f"kv tokens {kv}, capacity {cap}, slots {slots} x context {n_ctx}")
    check_flops("mon-8", samples)
    if value(samples, "ds_expert_cache_slots"):
        lookups = value(samples, "ds_expert_cache_hits_total") + value(samples, "ds_expert_cache_misses_total")
        check("mon-9", lookups > 0 and value(samples, "ds_expert_cache_decrypted_bytes_total") > 0 and
              value(samples, "ds_expert_cache_decrypt_seconds_total") > 0,
              f"expert cache: {lookups} lookups, {value(samples, 'ds_expert_cache_decrypted_bytes_total')} bytes")
    else:
        report("SKIP", "mon-9", "every expert resident (no --cache-mb): the cache has no lookups")

    # ---- quality ----
    lp = hist(hists, "ds_server_token_logprob")
    if lp is None:
        report("FAIL", "mon-10", "no ds_server_token_logprob histogram")
    elif lp["count"] == 0:
        report("SKIP", "mon-10", "no token log-probabilities observed (the generation loop does not call "
               "metrics_token_logprob yet)")
    else:
        le0 = dict(lp["buckets"]).get("0")
        check("mon-10", lp["count"] == tokens and le0 == lp["count"] and lp["sum"] <= 0,
              f"token logprob count {lp['count']} (want {tokens}), le=0 {le0}, sum {lp['sum']}")

    # ---- the dashboard and the rules name only what is here ----
    if ARGS.dashboard:
        dash = json.load(open(ARGS.dashboard))
        exprs = dashboard_exprs(dash)
        dnames = set().union(*(promql_metric_names(e) for e in exprs)) if exprs else set()
        probs = name_problems(dnames, types, samples)
        check("mon-11.1", len(dnames) >= 20 and not probs,
              f"{len(dnames)} names in {len(exprs)} queries; {probs}")
        need = {"ds_server_generated_tokens_total", "ds_server_time_to_first_token_seconds_bucket",
                "ds_server_inter_token_latency_seconds_bucket", "ds_server_batch_size_bucket",
                "ds_server_queue_depth", "ds_server_kv_cache_tokens", "ds_expert_cache_hits_total",
                "ds_expert_cache_decrypted_bytes_total", "process_resident_memory_bytes",
                "ds_server_model_flops_per_token", "ds_server_token_logprob_sum", "ds_server_errors_total",
                "ds_server_model_failures_total"}
        check("mon-11.3", need <= dnames, f"the dashboard does not show {sorted(need - dnames)}")
        panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
        empty = [p.get("title") for p in panels if not p.get("targets") or not p.get("datasource")]
        check("mon-12", len(panels) >= 20 and not empty, f"{len(panels)} panels; without a query or data "
              f"source: {empty}")
    if ARGS.alerts:
        exprs = rules_exprs(open(ARGS.alerts).read())
        anames = set().union(*(promql_metric_names(e) for e in exprs)) if exprs else set()
        probs = name_problems(anames, types, samples)
        check("mon-11.2", len(exprs) >= 6 and len(anames) >= 6 and not probs,
              f"{len(anames)} names in {len(exprs)} rules; {probs}")


def t_failures():
    st, data = request("GET", "/metrics", token=ARGS.token)
    if not check(ARGS.case + ".1", st == 200, f"/metrics answered {st}"):
        return
    types, samples = parse_metrics(data.decode("utf-8"))
    fails = {lab["reason"]: v for n, lab, v in samples if n == "ds_server_model_failures_total"}
    merr = value(samples, "ds_server_errors_total", kind="model_error")
    reasons = ARGS.reason.split(",")
    every = {"auth", "io", "truncated", "corrupt"}
    check(ARGS.case + ".2", sum(fails.get(r, 0) for r in reasons) >= 1 and set(fails) == every,
          f"ds_server_model_failures_total {fails}: want a failure counted under {reasons}")
    check(ARGS.case + ".3", merr is not None and merr >= 1,
          f"ds_server_errors_total{{kind=\"model_error\"}} is {merr}")
    check(ARGS.case + ".4", value(samples, "ds_server_model_degraded") == 1,
          f"ds_server_model_degraded is {value(samples, 'ds_server_model_degraded')}")
    hists = histograms(types, samples)
    check(ARGS.case + ".5", not histogram_problems(hists), f"{histogram_problems(hists)}")


def self_test():
    """The PromQL name extraction on known cases (run with every suite)."""
    cases = [
        ('sum by (le) (rate(ds_server_x_bucket{instance=~"$instance",le="ds_fake"}[$__rate_interval]))',
         {"ds_server_x_bucket"}),
        ('ds_a / (ds_b > 0) > 0.8', {"ds_a", "ds_b"}),
        ('rate(ds_a[1h] offset 15m) * on (job, instance) group_left ds_b', {"ds_a", "ds_b"}),
        ("time() - process_start_time_seconds{job='x'}", {"process_start_time_seconds"}),
        ('label_values(ds_server_info, instance)', {"ds_server_info"}),
        ('up{job="ds-server"} == 0', set()),
    ]
    bad = [(e, promql_metric_names(e), w) for e, w in cases if promql_metric_names(e) != w]
    rules = "groups:\n  - rules:\n      - alert: A\n        expr: ds_a > 1\n      - alert: B\n        expr: |\n" \
            "          sum(ds_b)\n            / ds_c\n        for: 1m\n"
    if rules_exprs(rules) != ["ds_a > 1", "sum(ds_b) / ds_c"]:
        bad.append(("rules", rules_exprs(rules)))
    check("mon-0.1", not bad, f"name extraction: {bad}")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--suite", choices=["live", "failures", "flops"], required=True)
    ap.add_argument("--case", default="mon-8", help="flops: the case id; failures: the prefix of the case ids")
    ap.add_argument("--token-file")
    ap.add_argument("--max-body", type=int, default=65536)
    ap.add_argument("--dashboard")
    ap.add_argument("--alerts")
    ap.add_argument("--model-config")
    ap.add_argument("--model-sizes", default="tools/model_sizes.py")
    ap.add_argument("--metrics-out")
    ap.add_argument("--reason", default="auth", help="failures: the reasons, comma-separated, one of which counts")
    ARGS = ap.parse_args()
    ARGS.token = open(ARGS.token_file).read().strip() if ARGS.token_file else None
    if ARGS.suite == "live":
        self_test()
    {"live": t_live, "failures": t_failures, "flops": t_flops}[ARGS.suite]()
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
