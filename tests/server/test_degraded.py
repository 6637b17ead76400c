#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""ds-server when its model file is truncated under it (standard library only).

    python3 tests/server/test_degraded.py --port P --model FILE

tests/server/run.sh starts the server with a paged model (--cache-mb: the
routed experts are read from the file when a generation first needs them)
on a copy of the model. This script checks /health, truncates the copy to
its header page (after the server started, before any generation, so the
first one reads experts from the truncated file), then:

  deg-1  /health answered 200 {"status": "ok"} before the truncation
  deg-2  a chat request fails cleanly: a 5xx with a JSON error body
  deg-3  the server is still up: /health answers, now 503 with
         {"status": "degraded", "reason": ...}, the healthy fields kept
  deg-4  a streaming request fails cleanly too (a 5xx with a JSON body, or
         an error event and [DONE]), and /health still says degraded

Prints "ok <id>" / "FAIL <id>: why" per case (counted by run.sh).
"""
import argparse
import http.client
import json
import os
import sys

ARGS = None
FAILED = 0


def check(case, cond, why):
    global FAILED
    if cond:
        print(f"ok {case}", flush=True)
    else:
        FAILED += 1
        print(f"FAIL {case}: {why}", flush=True)
    return cond


def request(method, path, body=None, timeout=60):
    """(status, body bytes), or (None, the exception) when the server is gone."""
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=timeout)
    try:
        h = {"Host": "127.0.0.1"}
        raw = None
        if body is not None:
            raw = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=raw, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    except Exception as e:  # noqa: BLE001 - any failure: the server did not answer
        return None, repr(e).encode()
    finally:
        c.close()


def jbody(data):
    try:
        return json.loads(data.decode("utf-8"))
    except Exception:  # noqa: BLE001
        return None


def chat(stream=False):
    return request("POST", "/v1/chat/completions",
                   {"model": "any", "messages": [{"role": "user", "content": "Say something."}],
                    "max_tokens": 4, "stream": stream})


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", required=True, help="the file the server runs on, truncated here")
    ARGS = ap.parse_args()

    st, data = request("GET", "/health")
    j = jbody(data) or {}
    check("deg-1", st == 200 and j.get("status") == "ok", f"/health before: {st} {data[:200]!r}")

    os.truncate(ARGS.model, 4096)

    st, data = chat()
    j = jbody(data) or {}
    check("deg-2", st is not None and 500 <= st < 600 and isinstance(j.get("error"), dict),
          f"chat on the truncated model: {st} {data[:300]!r}")

    st, data = request("GET", "/health")
    j = jbody(data) or {}
    check("deg-3", st == 503 and j.get("status") == "degraded" and isinstance(j.get("reason"), str) and
          j["reason"] and "slots" in j and "busy" in j and "model" in j,
          f"/health after the failure: {st} {data[:300]!r}")

    st, data = chat(stream=True)
    text = data.decode("utf-8", "replace") if st is not None else ""
    clean = (st == 200 and '"error"' in text and text.rstrip().endswith("data: [DONE]")) or \
        (st is not None and 500 <= st < 600 and isinstance((jbody(data) or {}).get("error"), dict))
    st2, data2 = request("GET", "/health")
    check("deg-4", clean and st2 == 503 and (jbody(data2) or {}).get("status") == "degraded",
          f"stream: {st} {text[-300:]!r}; /health then: {st2} {data2[:200]!r}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
