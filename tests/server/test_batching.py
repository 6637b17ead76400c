#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""ds-server's continuous batching and prompt reuse (standard library only).

    python3 tests/server/test_batching.py --port P --slots N

tests/server/run.sh starts the server with --max-concurrent N (N >= 4). The
reference for every batched answer is the same request served alone:

  bat-1  greedy answers to four prompts, sent at once (two streamed, two
         not) and so decoded in shared passes, equal the answers each got
         alone, text and token counts
  bat-2  the concurrent phase ran passes that fed back two or more
         generations' tokens (ds_server_batch_size: its sum over its count)
  bat-3  a prompt that extends what a slot holds (a chat resending its
         history) evaluates only the new tokens: the reused-token counter
         grows by the earlier prompt's length less one, even with another
         prompt served in between (the slot choice prefers the longest
         common prefix), and the answer equals the one with cache_prompt off
  bat-4  cache_prompt: false reuses nothing
  bat-5  cache_prompt must be a boolean (400)

Prints "ok <id>" / "FAIL <id>: why" per case (counted by run.sh).
"""
import argparse
import http.client
import json
import re
import sys
import threading

ARGS = None
FAILED = 0

PROMPTS = [
    "And the LORD spake unto Moses, saying",
    "In the beginning God created the heaven",
    "Blessed are the meek: for they shall",
    "And it came to pass, when the king heard",
]


def check(case, cond, why):
    global FAILED
    if cond:
        print(f"ok {case}", flush=True)
    else:
        FAILED += 1
        print(f"FAIL {case}: {why}", flush=True)
    return cond


def post(path, body, timeout=300):
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=timeout)
    try:
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def complete(prompt, stream=False, max_tokens=48, cache_prompt=None):
    """(text, completion_tokens, prompt_tokens) of a greedy completion."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    if cache_prompt is not None:
        body["cache_prompt"] = cache_prompt
    if stream:
        body["stream_options"] = {"include_usage": True}
    status, raw = post("/v1/completions", body)
    if status != 200:
        raise RuntimeError(f"status {status}: {raw[:200]!r}")
    if not stream:
        j = json.loads(raw)
        return j["choices"][0]["text"], j["usage"]["completion_tokens"], j["usage"]["prompt_tokens"]
    text, usage = "", None
    for line in raw.decode().split("\n"):
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"]
        for ch in ev.get("choices", []):
            text += ch.get("text") or ""
    return text, usage["completion_tokens"], usage["prompt_tokens"]


def metric(name):
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=30)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    m = re.search(r"^" + re.escape(name) + r" ([0-9.e+]+)$", body, re.M)
    return float(m.group(1)) if m else None


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--slots", type=int, default=4)
    ARGS = ap.parse_args()

    # ---- alone: one request at a time, nothing reused ----
    alone = [complete(p, cache_prompt=False) for p in PROMPTS]

    # ---- together ----
    steps0 = metric("ds_server_batch_size_count")
    seqs0 = metric("ds_server_batch_size_sum")
    got = [None] * len(PROMPTS)
    errs = []
    start = threading.Barrier(len(PROMPTS))

    def run(i):
        try:
            start.wait()
            got[i] = complete(PROMPTS[i], stream=(i % 2 == 1), cache_prompt=False)
        except Exception as e:  # noqa: BLE001 (reported below)
            errs.append(f"prompt {i}: {e}")

    th = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    same = not errs and all(got[i][:2] == alone[i][:2] for i in range(len(PROMPTS)))
    check("bat-1", same, f"errors {errs}; batched {got}; alone {alone}")
    steps = metric("ds_server_batch_size_count")
    seqs = metric("ds_server_batch_size_sum")
    if check("bat-2.0", None not in (steps0, seqs0, steps, seqs), "the batch size histogram is missing"):
        check("bat-2", seqs - seqs0 > steps - steps0,
              f"{steps - steps0:.0f} passes advanced {seqs - seqs0:.0f} generations: none ran two at once")

    # ---- prompt reuse ----
    base = "And God said, Let there be light: and there was light. And God saw the light"
    _, _, n_base = complete(base, max_tokens=4)
    complete("The LORD is my shepherd; I shall not want", max_tokens=4)   # another slot in between
    r0 = metric("ds_server_prompt_tokens_reused_total")
    longer = base + ", that it was good: and God divided the light from the darkness"
    text_reused, n_gen, _ = complete(longer, max_tokens=24)
    r1 = metric("ds_server_prompt_tokens_reused_total")
    check("bat-3", r0 is not None and r1 is not None and r1 - r0 >= n_base - 1,
          f"reused {None if r0 is None or r1 is None else r1 - r0} tokens; the earlier prompt had {n_base}")
    text_fresh, n_gen2, _ = complete(longer, max_tokens=24, cache_prompt=False)
    r2 = metric("ds_server_prompt_tokens_reused_total")
    check("bat-3.1", (text_reused, n_gen) == (text_fresh, n_gen2),
          f"with reuse {text_reused!r}, without {text_fresh!r}")
    check("bat-4", r2 == r1, f"cache_prompt false reused {None if r2 is None else r2 - r1} tokens")
    status, raw = post("/v1/completions", {"prompt": "x", "max_tokens": 1, "cache_prompt": "yes"})
    check("bat-5", status == 400 and b"cache_prompt" in raw, f"status {status}: {raw[:160]!r}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
