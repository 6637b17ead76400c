#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""ds-server against the official `openai` Python client.

    python tests/server/test_openai.py --port P [--token-file F] [--parallel N]

Run with a Python that has `openai` installed (tests/server/run.sh makes a
virtual environment for it). Prints "ok <id>" / "FAIL <id>: why" lines.
With --token-file the server is expected to require that bearer token.
With --parallel N, N clients at once (no retries) must all be served: the
server's queue holds the requests beyond its slots.
"""
import argparse
import sys
import threading

import openai

COUNTS = {"ok": 0, "FAIL": 0}


def check(case, cond, why=""):
    COUNTS["ok" if cond else "FAIL"] += 1
    print(f"ok {case}" if cond else f"FAIL {case}: {why}", flush=True)


def run(case, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - an exception is that case's failure
        check(case, False, f"{type(e).__name__}: {e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-file")
    ap.add_argument("--max-tokens", type=int, default=2048)
    ap.add_argument("--parallel", type=int, default=0)
    a = ap.parse_args()
    base = f"http://127.0.0.1:{a.port}/v1"
    token = open(a.token_file).read().strip() if a.token_file else "unused"
    pre = "oa-auth" if a.token_file else "oa"
    client = openai.OpenAI(base_url=base, api_key=token, max_retries=0, timeout=60)
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]

    model_id = None

    def models():
        nonlocal model_id
        ms = list(client.models.list())
        check(f"{pre}-models", len(ms) == 1 and ms[0].object == "model" and ms[0].id, f"{ms!r}")
        model_id = ms[0].id
        m = client.models.retrieve(model_id)
        check(f"{pre}-models-retrieve", m.id == model_id, f"{m!r}")
    run(f"{pre}-models", models)
    model_id = model_id or "model"

    def chat():
        r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=8, temperature=0)
        c = r.choices[0]
        check(f"{pre}-chat", r.object == "chat.completion" and r.id.startswith("chatcmpl-") and
              c.message.role == "assistant" and isinstance(c.message.content, str) and
              c.finish_reason in ("stop", "length") and r.usage.completion_tokens <= 8 and
              r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, f"{r!r}")
        return c.message.content

    greedy = None

    def chat_once():
        nonlocal greedy
        greedy = chat()
    run(f"{pre}-chat", chat_once)

    def chat_stream():
        stream = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=8, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        text, finish, usage, n = "", None, None, 0
        for chunk in stream:
            n += 1
            if chunk.usage:
                usage = chunk.usage
            for ch in chunk.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
        check(f"{pre}-chat-stream", n >= 2 and finish in ("stop", "length") and usage is not None and
              (greedy is None or text == greedy), f"text {text!r} vs {greedy!r}, finish {finish}, usage {usage}")
    run(f"{pre}-chat-stream", chat_stream)

    def completion():
        r = client.completions.create(model=model_id, prompt="The experts", max_tokens=6, temperature=0,
                                      stop=["\n\n\n"], seed=3)
        c = r.choices[0]
        check(f"{pre}-completion", r.object == "text_completion" and isinstance(c.text, str) and
              c.finish_reason in ("stop", "length") and r.usage.completion_tokens <= 6, f"{r!r}")
        s = client.completions.create(model=model_id, prompt="The experts", max_tokens=6, temperature=0,
                                      stop=["\n\n\n"], seed=3, stream=True)
        text, finish = "", None
        for chunk in s:
            for ch in chunk.choices:
                text += ch.text
                finish = ch.finish_reason or finish
        check(f"{pre}-completion-stream", text == c.text and finish in ("stop", "length"),
              f"{text!r} vs {c.text!r} ({finish})")
    run(f"{pre}-completion", completion)

    def bad_request():
        try:
            client.chat.completions.create(model=model_id, messages=msgs, max_tokens=a.max_tokens + 1)
            check(f"{pre}-bad-request", False, "max_tokens over the limit was accepted")
        except openai.BadRequestError as e:
            check(f"{pre}-bad-request", e.status_code == 400 and "max_tokens" in str(e), f"{e}")
    run(f"{pre}-bad-request", bad_request)

    def unsupported():
        try:
            client.chat.completions.create(model=model_id, messages=msgs, max_tokens=2,
                                           response_format={"type": "json_schema",
                                                            "json_schema": {"name": "x", "schema": {}}})
            check(f"{pre}-unsupported", False, "response_format json_schema was accepted")
        except openai.BadRequestError as e:
            check(f"{pre}-unsupported", e.status_code == 400 and "response_format" in str(e), f"{e}")
    run(f"{pre}-unsupported", unsupported)

    def json_object():
        import json
        for seed in (1, 2, 3):
            r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=40, seed=seed,
                                               response_format={"type": "json_object"})
            text = r.choices[0].message.content
            check(f"{pre}-json-object.{seed}", isinstance(json.loads(text), dict), f"{text!r}")
        chunks = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=40, seed=4, stream=True,
                                                response_format={"type": "json_object"})
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        check(f"{pre}-json-object.stream", isinstance(json.loads(text), dict), f"{text!r}")
    run(f"{pre}-json-object", json_object)

    def logprobs():
        r = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=6, temperature=0,
                                           logprobs=True, top_logprobs=3)
        lp = r.choices[0].logprobs.content
        ok = len(lp) == r.usage.completion_tokens and all(
            t.logprob <= 0 and len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token and
            t.top_logprobs[0].logprob == t.logprob and bytes(t.bytes).decode("utf-8", "replace") is not None
            for t in lp)
        check(f"{pre}-logprobs", ok, f"{r.choices[0].logprobs!r}")
        c = client.completions.create(model=model_id, prompt="Once upon", max_tokens=5, temperature=0, logprobs=2)
        l2 = c.choices[0].logprobs
        check(f"{pre}-logprobs-completion", len(l2.tokens) == len(l2.token_logprobs) == len(l2.top_logprobs) ==
              len(l2.text_offset) == c.usage.completion_tokens and all(v <= 0 for v in l2.token_logprobs),
              f"{l2!r}")
        # logit_bias through the client: ban the greedy first token
        first = lp[0].token
        ids = client.post(f"http://127.0.0.1:{a.port}/tokenize", body={"content": first, "parse_special": False},
                          cast_to=object)["tokens"]
        r2 = client.chat.completions.create(model=model_id, messages=msgs, max_tokens=6, temperature=0,
                                            logprobs=True, logit_bias={str(ids[0]): -100})
        toks = [t.token for t in r2.choices[0].logprobs.content]
        check(f"{pre}-logit-bias", len(ids) == 1 and first not in toks, f"banned {first!r} ({ids}): {toks!r}")
    run(f"{pre}-logprobs", logprobs)

    if a.parallel:
        def parallel():
            errors = []

            def one(i):
                try:
                    c = openai.OpenAI(base_url=base, api_key=token, max_retries=0, timeout=120)
                    if i % 2:
                        text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
                            model=model_id, messages=msgs, max_tokens=16, stream=True) if ch.choices)
                    else:
                        text = c.chat.completions.create(model=model_id, messages=msgs,
                                                         max_tokens=16).choices[0].message.content
                    if not isinstance(text, str):
                        errors.append(f"client {i}: {text!r}")
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    errors.append(f"client {i}: {type(e).__name__}: {e}")
            th = [threading.Thread(target=one, args=(i,)) for i in range(a.parallel)]
            for t in th:
                t.start()
            for t in th:
                t.join()
            check(f"{pre}-parallel", not errors, f"{len(errors)} of {a.parallel} clients failed: {errors[:3]}")
        run(f"{pre}-parallel", parallel)

    if a.token_file:
        def wrong_key():
            bad = openai.OpenAI(base_url=base, api_key=token + "-wrong", max_retries=0, timeout=30)
            for what, call in (("models", lambda: bad.models.list()),
                               ("chat", lambda: bad.chat.completions.create(model=model_id, messages=msgs,
                                                                           max_tokens=2)),
                               ("stream", lambda: list(bad.chat.completions.create(
                                   model=model_id, messages=msgs, max_tokens=2, stream=True)))):
                try:
                    call()
                    check(f"{pre}-wrong-key-{what}", False, "a wrong key was accepted")
                except openai.AuthenticationError as e:
                    check(f"{pre}-wrong-key-{what}", e.status_code == 401, f"{e}")
        run(f"{pre}-wrong-key", wrong_key)

    print(f"# {COUNTS['ok']} ok, {COUNTS['FAIL']} failed")
    return 1 if COUNTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
