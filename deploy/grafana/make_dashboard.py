#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Writes deploy/grafana/ds-server.json, the Grafana dashboard of ds-server.

    python3 deploy/grafana/make_dashboard.py > deploy/grafana/ds-server.json

The dashboard is generated so that its queries stay in one readable list;
tests/server/run.sh checks that the committed JSON is this script's output
and that every ds_ series its queries name appears on a live server's
/metrics. Standard library only.

Three rows follow the monitoring plan's dimensions: performance
(throughput, latency, batching, the queue, the KV cache, the expert cache,
decryption, memory), quality (the log-probability of generated tokens and
the live perplexity exp(-mean)), stability (errors by kind, failures of the
model file, aborted requests). Two variables: the Prometheus data source and
the instances (label_values of ds_server_info).
"""
import json
import sys

SEL = '{instance=~"$instance"}'
RI = "[$__rate_interval]"


def sel(extra=""):
    """A label selector for the chosen instances, plus extra matchers."""
    return '{instance=~"$instance"%s}' % ("," + extra if extra else "")


def rate(metric, extra="", by=None):
    r = "rate(%s%s%s)" % (metric, sel(extra), RI)
    return "sum by (%s) (%s)" % (by, r) if by else "sum(%s)" % r if by == "" else r


def quantile(q, hist, by="instance"):
    return "histogram_quantile(%s, sum by (%s, le) (rate(%s_bucket%s%s)))" % (q, by, hist, SEL, RI)


class Layout:
    """Places panels left to right on a 24-column grid, rows top to bottom."""

    def __init__(self):
        self.x = self.y = 0
        self.row_h = 0
        self.next_id = 1
        self.panels = []

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title):
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.row_h = 0, self.y + 1, 0


DS = {"type": "prometheus", "uid": "${datasource}"}


def targets(queries):
    return [{"datasource": DS, "refId": chr(ord("A") + i), "expr": e, "legendFormat": leg}
            for i, (e, leg) in enumerate(queries)]


def ts(title, desc, unit, queries, stack=False, minimum=None, maximum=None):
    defaults = {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10,
                                         "stacking": {"mode": "normal" if stack else "none", "group": "A"}}}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return {"type": "timeseries", "title": title, "description": desc, "datasource": DS,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}},
            "targets": targets(queries)}


def stat(title, desc, unit, queries, thresholds=None, text_mode="value"):
    steps = thresholds or [{"color": "green", "value": None}]
    return {"type": "stat", "title": title, "description": desc, "datasource": DS,
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "none", "textMode": text_mode, "justifyMode": "auto"},
            "targets": targets(queries)}


def heatmap(title, desc, expr):
    t = targets([(expr, "{{le}}")])
    t[0]["format"] = "heatmap"
    return {"type": "heatmap", "title": title, "description": desc, "datasource": DS,
            "options": {"calculate": False, "yAxis": {"unit": "none"}, "cellGap": 1,
                        "color": {"mode": "scheme", "scheme": "Oranges"}},
            "targets": t}


def dashboard():
    L = Layout()
    # ---- overview ----
    L.row("Overview")
    L.add(stat("Model", "The model served and the library version (ds_server_info).", "none",
               [("ds_server_info" + SEL, "{{instance}}: {{model}} {{version}}")], text_mode="name"), 6, 4)
    L.add(stat("Uptime", "Time since the server started.", "s",
               [("time() - process_start_time_seconds" + SEL, "{{instance}}")]), 3, 4)
    L.add(stat("Degraded", "1 once a generation failed reading the model file; /health answers 503 until a "
               "restart.", "none", [("ds_server_model_degraded" + SEL, "{{instance}}")],
               [{"color": "green", "value": None}, {"color": "red", "value": 1}]), 3, 4)
    L.add(stat("Slots busy", "Generation slots in use, of --max-concurrent.", "none",
               [("sum(ds_server_slots_busy%s) / sum(ds_server_slots%s)" % (SEL, SEL), "busy")]), 3, 4)
    L.add(stat("Queue", "Requests waiting for a slot now.", "none",
               [("sum(ds_server_queue_depth%s)" % SEL, "waiting")],
               [{"color": "green", "value": None}, {"color": "orange", "value": 1}]), 3, 4)
    L.add(stat("FLOPs per token", "Estimated: 2 x the weights one token's forward pass multiplies with "
               "(ds_server_model_active_parameters), attention over the context not included.", "short",
               [("max(ds_server_model_flops_per_token%s)" % SEL, "FLOPs")]), 3, 4)
    L.add(stat("Active parameters", "Weights per token: dense part, shared and top-k routed experts, "
               "attention, head.", "short",
               [("max(ds_server_model_active_parameters%s)" % SEL, "parameters")]), 3, 4)

    # ---- performance ----
    L.row("Performance")
    L.add(ts("Throughput", "Tokens per second over all requests: generated (decode) and prompt (prefill).",
             "tokens/s", [("sum by (instance) (%s)" % rate("ds_server_generated_tokens_total"),
                           "{{instance}} generated"),
                          ("sum by (instance) (%s)" % rate("ds_server_prompt_tokens_total"),
                           "{{instance}} prompt")]), 12, 8)
    L.add(ts("Estimated compute", "Generated tokens per second x the estimated FLOPs per token.", "FLOP/s",
             [("sum by (instance) (%s * on (job, instance) ds_server_model_flops_per_token%s)"
               % (rate("ds_server_generated_tokens_total"), SEL), "{{instance}}")]), 12, 8)
    L.add(ts("Time to first token", "From a request's arrival (queue wait and prompt included) to its first "
             "generated token.", "s",
             [(quantile(0.5, "ds_server_time_to_first_token_seconds"), "{{instance}} p50"),
              (quantile(0.95, "ds_server_time_to_first_token_seconds"), "{{instance}} p95")]), 12, 8)
    L.add(ts("Inter-token latency", "Time between two tokens of one sequence.", "s",
             [(quantile(0.5, "ds_server_inter_token_latency_seconds"), "{{instance}} p50"),
              (quantile(0.95, "ds_server_inter_token_latency_seconds"), "{{instance}} p95")]), 12, 8)
    L.add(ts("Decode speed per sequence", "Generated tokens per second of generation time, over all "
             "requests.", "tokens/s",
             [("sum by (instance) (%s) / sum by (instance) (%s)" % (rate("ds_server_generated_tokens_total"),
                                                                   rate("ds_server_generation_seconds_total")),
               "{{instance}}")]), 12, 8)
    L.add(ts("Batch size", "Sequences decoded together in one step: the mean and the 95th percentile.", "none",
             [("sum by (instance) (%s) / sum by (instance) (%s)" % (rate("ds_server_batch_size_sum"),
                                                                   rate("ds_server_batch_size_count")),
               "{{instance}} mean"),
              (quantile(0.95, "ds_server_batch_size"), "{{instance}} p95")], minimum=0), 12, 8)
    L.add(ts("Queue and slots", "Requests waiting, places in the queue, slots busy and slots.", "none",
             [("ds_server_queue_depth" + SEL, "{{instance}} waiting"),
              ("ds_server_queue_capacity" + SEL, "{{instance}} places"),
              ("ds_server_slots_busy" + SEL, "{{instance}} slots busy"),
              ("ds_server_slots" + SEL, "{{instance}} slots")], minimum=0), 12, 8)
    L.add(ts("Queue wait and refusals", "95th percentile wait for a slot; requests turned away per second, by "
             "reason (full: 429, timeout and shutdown: 503).", "s",
             [(quantile(0.95, "ds_server_queue_wait_seconds"), "{{instance}} wait p95"),
              (rate("ds_server_queue_rejected_total", by="instance, reason"), "{{instance}} refused {{reason}}/s")]),
          12, 8)
    L.add(ts("KV cache use", "Tokens held in the slots' KV caches, as a share of what they can hold (an idle "
             "slot keeps its last conversation for prompt reuse).", "percentunit",
             [("sum by (instance) (ds_server_kv_cache_tokens%s) / sum by (instance) "
               "(ds_server_kv_cache_capacity_tokens%s)" % (SEL, SEL), "{{instance}}")], minimum=0, maximum=1), 12, 8)
    L.add(ts("Expert cache hit rate", "Routed-expert lookups found in the cache (paged models; with every "
             "expert resident there are no lookups).", "percentunit",
             [("sum by (instance) (%s) / (sum by (instance) (%s) + sum by (instance) (%s))"
               % (rate("ds_expert_cache_hits_total"), rate("ds_expert_cache_hits_total"),
                  rate("ds_expert_cache_misses_total")), "{{instance}}")], minimum=0, maximum=1), 12, 8)
    L.add(ts("Decryption", "Bytes of experts decrypted per second, and per second of decryption work (the "
             "cipher's speed).", "Bps",
             [("sum by (instance) (%s)" % rate("ds_expert_cache_decrypted_bytes_total"), "{{instance}} decrypted"),
              ("sum by (instance) (%s) / sum by (instance) (%s)" % (rate("ds_expert_cache_decrypted_bytes_total"),
                                                                   rate("ds_expert_cache_decrypt_seconds_total")),
               "{{instance}} per decrypt-second")]), 12, 8)
    L.add(ts("Waiting for experts", "Share of time the forward pass waited for experts being decrypted.",
             "percentunit", [("sum by (instance) (%s)" % rate("ds_expert_cache_wait_seconds_total"),
                              "{{instance}}")], minimum=0), 12, 8)
    L.add(ts("Resident memory", "The server's resident set (should stay flat under steady load).", "bytes",
             [("process_resident_memory_bytes" + SEL, "{{instance}}")], minimum=0), 12, 8)
    L.add(ts("Request latency", "95th percentile time to the end of the response, by endpoint.", "s",
             [(quantile(0.95, "ds_server_request_duration_seconds", by="instance, endpoint"),
               "{{instance}} {{endpoint}}")]), 12, 8)

    # ---- quality ----
    L.row("Quality")
    lp_mean = "(sum by (instance) (%s) / sum by (instance) (%s))" % (rate("ds_server_token_logprob_sum"),
                                                                    rate("ds_server_token_logprob_count"))
    L.add(ts("Live perplexity", "exp(-mean log-probability) of the generated tokens under the model. It "
             "drifts when a model or adapter goes wrong (a wrong key, a damaged file, a bad adapter); sampling "
             "settings move it too.", "none", [("exp(-%s)" % lp_mean, "{{instance}}")], minimum=1), 12, 8)
    L.add(ts("Mean token log-probability", "Mean log-probability (nats) of each generated token, and the "
             "share of tokens below -5 (the model found them unlikely).", "none",
             [(lp_mean, "{{instance}} mean"),
              ("1 - sum by (instance) (rate(ds_server_token_logprob_bucket%s%s)) / sum by (instance) (%s)"
               % (sel('le="-5"'), RI, rate("ds_server_token_logprob_count")), "{{instance}} share below -5")]),
          12, 8)
    L.add(heatmap("Token log-probability distribution", "Generated tokens per log-probability bucket (nats).",
                  "sum by (le) (increase(ds_server_token_logprob_bucket%s%s))" % (SEL, RI)), 24, 8)

    # ---- stability ----
    L.row("Stability")
    L.add(ts("Errors by kind", "Requests ending in an error per second, by kind (ds_server_errors_total).",
             "reqps", [(rate("ds_server_errors_total", by="kind"), "{{kind}}")], stack=True), 12, 8)
    L.add(ts("Server-side error ratio", "Internal, model, unavailable and queue errors as a share of "
             "generation requests (the DsServerHighErrorRate alert fires above 5%).", "percentunit",
             [("sum by (instance) (%s) / sum by (instance) (%s)"
               % (rate("ds_server_errors_total", 'kind=~"internal|model_error|unavailable|queue_full|queue_timeout"'),
                  rate("ds_server_requests_total", 'endpoint=~"/v1/chat/completions|/v1/completions|/generate"')),
               "{{instance}}")], minimum=0), 12, 8)
    L.add(ts("Requests by status", "HTTP requests answered per second, by status code.", "reqps",
             [(rate("ds_server_requests_total", by="code"), "{{code}}")], stack=True), 12, 8)
    L.add(ts("Model file failures", "Generations that failed reading the model file, by reason (auth: a chunk "
             "failed authentication), and the degraded flag.", "none",
             [("sum by (instance, reason) (increase(ds_server_model_failures_total%s%s))" % (SEL, RI),
               "{{instance}} {{reason}}"),
              ("ds_server_model_degraded" + SEL, "{{instance}} degraded")], minimum=0), 12, 8)
    L.add(ts("Clients leaving", "Streams the client left early and requests abandoned in the queue, per "
             "second.", "reqps",
             [(rate("ds_server_streams_aborted_total", by="instance"), "{{instance}} streams aborted"),
              (rate("ds_server_queue_abandoned_total", by="instance"), "{{instance}} left the queue")]), 12, 8)
    L.add(ts("Authentication", "Requests refused for a missing or wrong key (401) or a role that may not "
             "(403), per second.", "reqps",
             [(rate("ds_server_errors_total", 'kind=~"auth|forbidden"', by="instance, kind"),
               "{{instance}} {{kind}}")]), 12, 8)

    return {
        "title": "ds-server",
        "uid": "ds-server",
        "description": "deepseek.h's ds-server: performance, quality and stability (deploy/README.md).",
        "tags": ["ds-server", "deepseek.h", "llm"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
             "query": {"query": "label_values(ds_server_info, instance)", "refId": "instance"},
             "definition": "label_values(ds_server_info, instance)", "refresh": 2, "multi": True,
             "includeAll": True, "allValue": ".*", "current": {}, "hide": 0, "sort": 1},
        ]},
        "annotations": {"list": []},
        "panels": L.panels,
    }


def main():
    json.dump(dashboard(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
