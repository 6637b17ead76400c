#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Raw-HTTP tests of ds-server (standard library only).

    python3 tests/server/test_server.py --port P --suite main [--metrics-out F]
    python3 tests/server/test_server.py --port P --suite auth --token-file F
    python3 tests/server/test_server.py --port P --suite slow|evict --token-file F [--header-timeout S ...]
    python3 tests/server/test_server.py --port P --suite internal --token-file F --log-file LOG
    python3 tests/server/test_server.py --port P --suite queue [--queue N] [--token-file F]
    python3 tests/server/test_server.py --port P --suite queue-timeout [--queue-timeout S]
    python3 tests/server/test_server.py --port P --suite queue-stop --server-pid PID

Prints "ok <id>", "FAIL <id>: why" or "SKIP <id>: why" per case (counted by
tests/server/run.sh). After every error case it checks that GET /health
still answers 200 and that a normal generation still works, so a case that
kills or wedges the server, or leaks a context from the pool, is caught
where it happens.
"""
import argparse
import http.client
import json
import socket
import sys
import threading
import time

ARGS = None
COUNTS = {"ok": 0, "FAIL": 0, "SKIP": 0}
MARKER = "PROMPT-MARKER-7d1f3a"      # must never reach the log without --log-prompts


def report(kind, case, why=""):
    COUNTS[kind] += 1
    print(f"{kind} {case}" + (f": {why}" if why else ""), flush=True)


def check(case, cond, why):
    report("ok" if cond else "FAIL", case, "" if cond else why)
    return cond


# ==== HTTP helpers ===========================================================

def request(method, path, body=None, headers=None, token=None, timeout=60, raw_body=None):
    """One request on a fresh connection: (status, headers dict, body bytes)."""
    h = {"Host": "127.0.0.1"}
    if body is not None:
        raw_body = json.dumps(body).encode()
    if raw_body is not None:
        h["Content-Type"] = "application/json"
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=timeout)
    try:
        c.request(method, path, body=raw_body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def post(path, body, **kw):
    return request("POST", path, body=body, **kw)


def jbody(data):
    try:
        return json.loads(data.decode("utf-8"))
    except Exception:  # noqa: BLE001 - any failure means "not JSON"
        return None


def is_error_body(data, type_=None):
    j = jbody(data)
    if not isinstance(j, dict) or set(j) != {"error"}:
        return False
    e = j["error"]
    ok = isinstance(e, dict) and isinstance(e.get("message"), str) and e["message"] and \
        isinstance(e.get("type"), str) and "code" in e and "param" in e
    return ok and (type_ is None or e["type"] == type_)


def sse_events(data):
    """The data fields of a server-sent event stream, in order."""
    text = data.decode("utf-8")          # strict: pieces must be whole UTF-8
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = [ln for ln in block.split("\n") if ln.startswith("data: ")]
        events.append("\n".join(ln[6:] for ln in lines))
    return events


def chat_body(content="Say something.", **kw):
    b = {"model": "any", "messages": [{"role": "user", "content": content}], "max_tokens": 8}
    b.update(kw)
    return b


# ==== "the server still works" ==============================================

def alive(case):
    """GET /health answers 200 and a small generation succeeds."""
    ok = True
    why = ""
    try:
        st, _, data = request("GET", "/health", token=ARGS.token)
        if st != 200 or (jbody(data) or {}).get("status") != "ok":
            ok, why = False, f"/health answered {st} {data[:200]!r}"
        else:
            for _ in range(50):      # a context may come back a moment after the response
                st, _, data = post("/v1/completions", {"prompt": "hello", "max_tokens": 2}, token=ARGS.token)
                if st != 429:
                    break
                time.sleep(0.1)
            j = jbody(data)
            if st != 200 or not j or j.get("object") != "text_completion":
                ok, why = False, f"a normal completion answered {st} {data[:200]!r}"
    except Exception as e:  # noqa: BLE001
        ok, why = False, f"server unreachable: {e!r}"
    check(case + ".alive", ok, why)
    return ok


def busy_slots():
    st, _, data = request("GET", "/health")
    return (jbody(data) or {}).get("busy", -1)


def wait_idle(timeout=10.0):
    t = time.time() + timeout
    while time.time() < t:
        if busy_slots() == 0:
            return True
        time.sleep(0.05)
    return False


# ==== Streams held open =====================================================

def open_stream(path="/v1/chat/completions", body=None, small_rcvbuf=True):
    """Sends a streaming request on a raw socket with a tiny receive buffer
    and reads only the response head: the server's writes then block, so the
    generation (and its context) stays busy until the socket is closed."""
    if body is None:
        body = chat_body(MARKER, max_tokens=ARGS.hold_tokens, stream=True, ignore_eos=True)
    raw = json.dumps(body).encode()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.settimeout(30)
    s.connect(("127.0.0.1", ARGS.port))
    auth = f"Authorization: Bearer {ARGS.token}\r\n" if ARGS.token else ""
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
              f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            break
        head += d
    return s, head


# ==== Test groups ===========================================================

def t_basic():
    st, h, data = request("GET", "/health")
    j = jbody(data)
    check("health-1", st == 200 and j and j.get("status") == "ok" and
          h.get("content-type", "").startswith("application/json"), f"{st} {data[:200]!r}")
    st, _, data = request("GET", "/v1/models")
    j = jbody(data)
    ok = st == 200 and j and j.get("object") == "list" and len(j.get("data", [])) == 1 and \
        j["data"][0].get("object") == "model" and isinstance(j["data"][0].get("id"), str)
    check("models-1", ok, f"{st} {data[:200]!r}")
    mid = j["data"][0]["id"] if ok else "x"
    st, _, data = request("GET", "/v1/models/" + mid)
    check("models-2", st == 200 and (jbody(data) or {}).get("id") == mid, f"{st} {data[:200]!r}")
    st, _, data = request("GET", "/v1/models/no-such-model")
    check("models-3", st == 404 and is_error_body(data), f"{st} {data[:200]!r}")
    st, h, _ = request("HEAD", "/health")
    check("health-2", st == 200, f"HEAD /health answered {st}")


def t_chat():
    st, _, data = post("/v1/chat/completions", chat_body(max_tokens=6, temperature=0))
    j = jbody(data) or {}
    ok = st == 200 and str(j.get("id", "")).startswith("chatcmpl-") and j.get("object") == "chat.completion" \
        and isinstance(j.get("created"), int) and isinstance(j.get("model"), str)
    check("chat-1.1", ok, f"{st} {data[:300]!r}")
    try:
        ch = j["choices"][0]
        u = j["usage"]
        ok = ch["index"] == 0 and ch["message"]["role"] == "assistant" and isinstance(ch["message"]["content"], str) \
            and ch["finish_reason"] in ("stop", "length") and \
            u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and 0 <= u["completion_tokens"] <= 6 \
            and u["prompt_tokens"] > 0
        check("chat-1.2", ok, f"bad choices/usage: {j!r:.300}")
    except (KeyError, IndexError, TypeError) as e:
        check("chat-1.2", False, f"missing field {e!r}: {j!r:.300}")
    greedy = (j.get("choices") or [{}])[0].get("message", {}).get("content")

    st, _, data2 = post("/v1/chat/completions", chat_body(max_tokens=6, temperature=0))
    j2 = jbody(data2) or {}
    check("chat-1.3", st == 200 and j2.get("choices", [{}])[0].get("message", {}).get("content") == greedy,
          "greedy decoding gave different text twice")

    # streamed: same greedy text, chunk shapes, final finish_reason, [DONE]
    st, h, data = post("/v1/chat/completions", chat_body(max_tokens=6, temperature=0, stream=True,
                                                         stream_options={"include_usage": True}))
    check("chat-2.1", st == 200 and h.get("content-type", "").startswith("text/event-stream"),
          f"{st} {h.get('content-type')}")
    try:
        ev = sse_events(data)
        ok = ev and ev[-1] == "[DONE]"
        chunks = [json.loads(e) for e in ev[:-1]]
        check("chat-2.2", ok and all(c.get("object") == "chat.completion.chunk" for c in chunks) and
              len({c["id"] for c in chunks}) == 1, f"events {ev!r:.300}")
        check("chat-2.3", chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first delta has no role")
        with_choice = [c for c in chunks if c["choices"]]
        fin = [c["choices"][0]["finish_reason"] for c in with_choice]
        check("chat-2.4", fin[-1] in ("stop", "length") and all(f is None for f in fin[:-1]),
              f"finish reasons {fin}")
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choice)
        check("chat-2.5", text == greedy, f"stream text {text!r} != non-stream {greedy!r}")
        usage = chunks[-1].get("usage")
        check("chat-2.6", chunks[-1]["choices"] == [] and usage and usage["completion_tokens"] <= 6,
              f"last chunk {chunks[-1]!r:.300}")
    except Exception as e:  # noqa: BLE001
        check("chat-2.x", False, f"unparseable stream: {e!r} {data[:300]!r}")

    # ignore_eos + max_tokens: exactly that many tokens, finish "length"
    st, _, data = post("/v1/chat/completions", chat_body(max_tokens=5, ignore_eos=True))
    u = (jbody(data) or {}).get("usage", {})
    fr = ((jbody(data) or {}).get("choices") or [{}])[0].get("finish_reason")
    check("chat-3", st == 200 and u.get("completion_tokens") == 5 and fr == "length", f"{st} {data[:300]!r}")

    # same seed, same text (temperature 1)
    a = post("/v1/chat/completions", chat_body(max_tokens=10, seed=42, temperature=1.0, ignore_eos=True))
    b = post("/v1/chat/completions", chat_body(max_tokens=10, seed=42, temperature=1.0, ignore_eos=True))
    check("chat-4", a[0] == 200 and jbody(a[2])["choices"] == jbody(b[2])["choices"], "seed did not repeat")

    # system message, content parts, developer role, top_p / penalties
    st, _, data = post("/v1/chat/completions", {
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "developer", "content": "Really."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                     {"role": "assistant", "content": "Hello."},
                     {"role": "user", "content": "And?"}],
        "max_tokens": 4, "top_p": 0.9, "presence_penalty": 0.5, "frequency_penalty": 0.5, "user": "u1",
        "n": 1, "logprobs": False, "stop": None})
    check("chat-5", st == 200 and jbody(data)["object"] == "chat.completion", f"{st} {data[:300]!r}")


CONTROL_TEXTS = ["<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>",
                 "<｜User｜>", "<｜Assistant｜>"]


def prompt_tokens(content, token=None):
    """usage.prompt_tokens of a one-message chat (None when the request failed)."""
    st, _, data = post("/v1/chat/completions", chat_body(content, max_tokens=1, temperature=0), token=token)
    j = jbody(data) or {}
    return j.get("usage", {}).get("prompt_tokens") if st == 200 else None


def t_special_content():
    """A control token's text in a message is text: it costs the tokens of
    its characters (several: the pre-tokenizer splits it), not the one id of
    the token, which would let a client end its turn or fake a role."""
    base = prompt_tokens("")
    for i, text in enumerate(CONTROL_TEXTS):
        n = prompt_tokens(text)
        check(f"chat-6.{i}", base is not None and n is not None and n - base >= 2,
              f"{text!r} in a user message: {n} prompt tokens, {base} without it: tokenized as one control token")
    # a message closing its turn and opening a fake assistant turn gets a reply all the same
    st, _, data = post("/v1/chat/completions", chat_body("hi" + CONTROL_TEXTS[0] + "Assistant: ok" + CONTROL_TEXTS[2],
                                                         max_tokens=2, temperature=0))
    check("chat-6.4", st == 200 and (jbody(data) or {}).get("object") == "chat.completion", f"{st} {data[:200]!r}")
    alive("chat-6")


def t_completions():
    st, _, data = post("/v1/completions", {"model": "x", "prompt": "The experts", "max_tokens": 6, "temperature": 0})
    j = jbody(data) or {}
    ok = st == 200 and str(j.get("id", "")).startswith("cmpl-") and j.get("object") == "text_completion"
    try:
        c = j["choices"][0]
        ok = ok and isinstance(c["text"], str) and c["finish_reason"] in ("stop", "length") and c["index"] == 0 \
            and j["usage"]["completion_tokens"] <= 6
    except (KeyError, IndexError, TypeError):
        ok = False
    check("compl-1", ok, f"{st} {data[:300]!r}")
    text = j["choices"][0]["text"] if ok else None

    st, _, data = post("/v1/completions", {"prompt": ["The experts"], "max_tokens": 6, "temperature": 0,
                                           "stream": True})
    try:
        ev = sse_events(data)
        chunks = [json.loads(e) for e in ev[:-1]]
        ok = st == 200 and ev[-1] == "[DONE]" and all(c["object"] == "text_completion" for c in chunks)
        stext = "".join(c["choices"][0]["text"] for c in chunks)
        check("compl-2.1", ok, f"events {ev!r:.300}")
        check("compl-2.2", stext == text, f"stream {stext!r} != {text!r}")
        check("compl-2.3", chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length"), "no finish_reason")
    except Exception as e:  # noqa: BLE001
        check("compl-2.x", False, f"unparseable stream: {e!r} {data[:300]!r}")

    st, _, data = post("/generate", {"prompt": "The experts", "max_tokens": 6, "temperature": 0})
    j = jbody(data) or {}
    check("generate-1", st == 200 and j.get("text") == text and j.get("completion_tokens", 99) <= 6 and
          j.get("total_tokens") == j.get("prompt_tokens", 0) + j.get("completion_tokens", 0) and
          j.get("finish_reason") in ("stop", "length"), f"{st} {data[:300]!r}")
    st, _, data = post("/generate", {"prompt": "x", "stream": True})
    check("generate-2", st == 400 and is_error_body(data), f"{st} {data[:200]!r}")


def t_stop():
    """Stop sequences, non-streamed and streamed (the streamed text must
    never show a stop sequence, even one split across tokens)."""
    base = {"prompt": "The experts of the token", "max_tokens": 40, "temperature": 0, "ignore_eos": True}
    st, _, data = post("/v1/completions", base)
    full = (jbody(data) or {}).get("choices", [{}])[0].get("text", "")
    # a stop string from the middle of the greedy text, a few characters long
    cands = [full[i:i + 3] for i in range(4, max(4, len(full) - 3))
             if full[i:i + 3].strip() and full.find(full[i:i + 3]) == i]
    if st != 200 or not cands:
        report("SKIP", "stop-1", f"no usable stop string in {full!r}")
        return
    stop = cands[len(cands) // 2]
    want = full[:full.find(stop)]
    for stream in (False, True):
        b = dict(base, stop=[stop, "zzzz-never"], stream=stream)
        st, _, data = post("/v1/completions", b)
        if stream:
            ev = sse_events(data)
            chunks = [json.loads(e) for e in ev[:-1]]
            got = "".join(c["choices"][0]["text"] for c in chunks)
            fr = chunks[-1]["choices"][0]["finish_reason"]
        else:
            j = jbody(data)
            got, fr = j["choices"][0]["text"], j["choices"][0]["finish_reason"]
        check(f"stop-1.{int(stream)}", st == 200 and got == want and fr == "stop",
              f"stop {stop!r}: got {got!r} ({fr}), want {want!r}")
    st, _, data = post("/v1/completions", dict(base, stop="zzzz-never", max_tokens=5))
    check("stop-2", st == 200 and jbody(data)["choices"][0]["finish_reason"] == "length", f"{data[:200]!r}")


MALFORMED = [
    b"", b"{", b"}", b"[1,2", b'{"prompt": "x",}', b'{"prompt": "x" "y"}', b"nul", b"NaN", b"{'prompt': 'x'}",
    b'{"prompt": "a\x01b"}', b'{"prompt": "\xff\xfe"}', b'{"prompt": "\xc0\xaf"}', b'{"prompt": "\\ud800"}',
    b'{"prompt": "\\udc00x"}', b'{"prompt": "\\x41"}', b'{"max_tokens": 01, "prompt": "x"}',
    b'{"max_tokens": 1.e5, "prompt": "x"}', b'{"prompt": "x"} {}', b'{"prompt": "a", "prompt": "b"}',
    b"[" * 100 + b"]" * 100, b'{"prompt": "x", "max_tokens": 1e999}', b'{"prompt": "x"', b'"just a string',
    b'{"prompt": "x", "temperature": -}', b"\xef\xbb\xbf{\"prompt\": \"x\"}", b'{"prompt": tru}',
]


def t_malformed():
    for i, body in enumerate(MALFORMED):
        st, _, data = request("POST", "/v1/completions", raw_body=body)
        check(f"json-{i}", st == 400 and is_error_body(data, "invalid_request_error"),
              f"body {body[:40]!r}: {st} {data[:200]!r}")
    alive("json")


WRONG = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, "max_tokens"),
    ("/v1/chat/completions", {"messages": "hello"}, "messages"),
    ("/v1/chat/completions", {"messages": {"role": "user"}}, "messages"),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": 5, "content": "x"}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "tool", "content": "x"}]}, "messages"),
    ("/v1/chat/completions", {"messages": ["x"]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a\u0000b"}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "temperature": 5}, "temperature"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}, "top_p"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": 5}, "stop"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
     "stop"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "seed": "s"}, "seed"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": "yes"}, "logprobs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "model": 7}, "model"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream_options": 1}, "stream_options"),
    ("/v1/completions", {"prompt": 5}, "prompt"),
    ("/v1/completions", {"prompt": [1, 2, 3]}, "prompt"),
    ("/v1/completions", {}, "prompt"),
    ("/v1/completions", {"prompt": "x", "echo": True}, "echo"),
    ("/v1/completions", [1, 2], None),
    ("/generate", {"prompt": None}, "prompt"),
    ("/generate", {"prompt": "x", "max_tokens": True}, "max_tokens"),
    ("/generate", "prompt", None),
]


def t_wrong_types():
    for i, (path, body, param) in enumerate(WRONG):
        st, _, data = post(path, body)
        j = jbody(data) or {}
        ok = st == 400 and is_error_body(data, "invalid_request_error")
        if ok and param:
            ok = j["error"].get("param") == param
        check(f"param-{i}", ok, f"{path} {json.dumps(body)[:80]}: {st} {data[:200]!r}")
    alive("param")


def t_limits():
    # max_tokens over the server's limit
    st, _, data = post("/v1/chat/completions", chat_body(max_tokens=ARGS.max_tokens + 1))
    check("limit-1", st == 400 and is_error_body(data) and jbody(data)["error"]["code"] == "max_tokens_exceeded",
          f"{st} {data[:200]!r}")
    st, _, data = post("/v1/completions", {"prompt": "x", "max_tokens": ARGS.max_tokens})
    check("limit-2", st == 200, f"max_tokens at the limit answered {st}")
    alive("limit-1")

    # a prompt longer than the context
    long_prompt = "hello " * (ARGS.max_body // 7)
    st, _, data = post("/v1/completions", {"prompt": long_prompt, "max_tokens": 1})
    check("limit-3", st == 400 and is_error_body(data) and jbody(data)["error"]["code"] == "context_length_exceeded",
          f"{st} {data[:200]!r}")
    alive("limit-3")

    # body over --max-body, announced by Content-Length: answered without
    # reading the body
    s = socket.create_connection(("127.0.0.1", ARGS.port), timeout=10)
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {ARGS.max_body * 100}\r\n\r\n".encode())
    resp = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            resp += d
    except socket.timeout:
        pass
    s.close()
    head, _, body = resp.partition(b"\r\n\r\n")
    check("limit-4", head.startswith(b"HTTP/1.1 413") and is_error_body(body), f"{resp[:300]!r}")
    alive("limit-4")

    # body over --max-body, really sent (just over the limit)
    big = json.dumps({"prompt": "x" * ARGS.max_body}).encode()
    try:
        st, _, data = request("POST", "/v1/completions", raw_body=big)
        check("limit-5", st == 413 and is_error_body(data), f"{st} {data[:200]!r}")
    except (ConnectionError, OSError) as e:
        check("limit-5", False, f"connection failed instead of 413: {e!r}")
    alive("limit-5")

    # chunked body over the limit (no Content-Length): 413 after reading it
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=30)
    try:
        def chunks():
            for _ in range(ARGS.max_body // 8192 + 2):
                yield b"x" * 8192
        c.request("POST", "/v1/completions", body=chunks(), encode_chunked=True,
                  headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        r = c.getresponse()
        data = r.read()
        check("limit-6", r.status == 413 and is_error_body(data), f"{r.status} {data[:200]!r}")
    except (ConnectionError, OSError) as e:
        check("limit-6", False, f"connection failed instead of 413: {e!r}")
    finally:
        c.close()
    alive("limit-6")

    # a chunked body within the limit works
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=30)
    try:
        body = json.dumps({"prompt": "hello", "max_tokens": 2}).encode()
        c.request("POST", "/v1/completions", body=iter([body[:5], body[5:]]), encode_chunked=True,
                  headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        r = c.getresponse()
        data = r.read()
        check("limit-7", r.status == 200 and jbody(data)["object"] == "text_completion", f"{r.status} {data[:200]!r}")
    finally:
        c.close()


def t_routes():
    for i, (m, path) in enumerate([("GET", "/nope"), ("POST", "/v1/nope"), ("GET", "/"), ("GET", "/v1/chat"),
                                   ("GET", "/healthz"), ("POST", "/v1/chat/completions/x")]):
        st, _, data = request(m, path, raw_body=b"{}" if m == "POST" else None)
        check(f"route-404.{i}", st == 404 and is_error_body(data), f"{m} {path}: {st} {data[:200]!r}")
    alive("route-404")
    for i, (m, path, allow) in enumerate([("GET", "/v1/chat/completions", "POST"), ("PUT", "/v1/completions", "POST"),
                                          ("GET", "/generate", "POST"), ("POST", "/health", "GET"),
                                          ("DELETE", "/v1/models", "GET"), ("POST", "/metrics", "GET")]):
        st, h, data = request(m, path, raw_body=b"{}" if m in ("POST", "PUT") else None)
        check(f"route-405.{i}", st == 405 and is_error_body(data) and allow in h.get("allow", ""),
              f"{m} {path}: {st} allow={h.get('allow')} {data[:200]!r}")
    alive("route-405")


def t_busy():
    """More generations than --max-concurrent: 429, and the slots come back."""
    if not wait_idle():
        check("busy-0", False, "slots still busy before the test")
        return
    held = []
    try:
        for _ in range(ARGS.max_concurrent):
            s, head = open_stream()
            held.append(s)
            if not head.startswith(b"HTTP/1.1 200"):
                check("busy-1", False, f"held stream answered {head[:100]!r}")
                return
        n = busy_slots()
        check("busy-1", n == ARGS.max_concurrent,
              f"{n} slots busy while {ARGS.max_concurrent} streams are held (did they finish already?)")
        for path, body in (("/v1/chat/completions", chat_body()), ("/v1/completions", {"prompt": "x"}),
                           ("/generate", {"prompt": "x"})):
            st, h, data = post(path, body)
            j = jbody(data) or {}
            ra = h.get("retry-after", "")
            check(f"busy-2{path}", st == 429 and is_error_body(data) and j["error"]["code"] == "server_busy" and
                  ra.isdigit() and int(ra) >= 1, f"{path}: {st} Retry-After={ra!r} {data[:200]!r}")
        st, _, data = request("GET", "/health")
        check("busy-3", st == 200, f"/health answered {st} while busy")
        st, _, data = request("GET", "/v1/models")
        check("busy-4", st == 200, f"/v1/models answered {st} while busy")
    finally:
        for s in held:
            s.close()
    check("busy-5", wait_idle(), f"slots not returned after the held streams closed ({busy_slots()} busy)")
    alive("busy")


def t_disconnect():
    """Clients that leave mid-stream, mid-request, or before the body."""
    # read a little of a stream, then close
    for i in range(3):
        s, head = open_stream(small_rcvbuf=False)
        try:
            s.recv(200)
        finally:
            s.close()
    check("disc-1", wait_idle(), f"a stream whose client left kept its slot ({busy_slots()} busy)")
    alive("disc-1")

    # after that, max_concurrent streams at once all get 200
    results = []

    def one():
        try:
            st, _, data = post("/v1/chat/completions", chat_body(max_tokens=4, stream=True))
            results.append((st, sse_events(data)[-1] if st == 200 else data))
        except Exception as e:  # noqa: BLE001
            results.append((0, repr(e)))
    th = [threading.Thread(target=one) for _ in range(ARGS.max_concurrent)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    check("disc-2", all(r == (200, "[DONE]") for r in results), f"parallel streams after disconnects: {results!r:.300}")

    # leave while a non-streamed generation runs
    s = socket.create_connection(("127.0.0.1", ARGS.port))
    raw = json.dumps(chat_body(max_tokens=200, ignore_eos=True)).encode()
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(raw)}\r\n\r\n".encode() + raw)
    s.close()
    # leave halfway through the body, and halfway through the headers
    s = socket.create_connection(("127.0.0.1", ARGS.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
    s.close()
    s = socket.create_connection(("127.0.0.1", ARGS.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
    s.close()
    # garbage instead of HTTP
    s = socket.create_connection(("127.0.0.1", ARGS.port), timeout=1)
    s.sendall(b"\x00\x01\x02 hello\r\n\r\n")
    try:
        s.recv(1000)
    except OSError:
        pass
    s.close()
    check("disc-3", wait_idle(), f"slots busy after clients left early ({busy_slots()} busy)")
    alive("disc-3")


def t_parallel():
    results = []

    def one(i):
        try:
            st, _, data = post("/v1/completions", {"prompt": f"hello {i}", "max_tokens": 8})
            results.append(st)
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))
    th = [threading.Thread(target=one, args=(i,)) for i in range(ARGS.max_concurrent)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    check("parallel-1", results.count(200) == ARGS.max_concurrent, f"statuses {results}")
    # keep-alive: several requests on one connection
    c = http.client.HTTPConnection("127.0.0.1", ARGS.port, timeout=30)
    sts = []
    for _ in range(3):
        c.request("POST", "/v1/completions", body=json.dumps({"prompt": "hi", "max_tokens": 2}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        sts.append(r.status)
    c.request("GET", "/health")
    r = c.getresponse()
    r.read()
    sts.append(r.status)
    c.close()
    check("keepalive-1", sts == [200, 200, 200, 200], f"statuses {sts}")


def t_escaping():
    """Every generated text must come back as valid JSON holding valid UTF-8,
    whatever bytes the tokens decode to (random weights give plenty)."""
    bad = []
    for seed in range(6):
        st, _, data = post("/v1/completions", {"prompt": "\u00e9\u4e2d\U0001F600 \"q\" \\ \t\n", "max_tokens": 24,
                                               "seed": seed, "temperature": 1.5, "ignore_eos": True})
        try:
            data.decode("utf-8")
            j = json.loads(data)
            j["choices"][0]["text"].encode("utf-8")
        except Exception as e:  # noqa: BLE001
            bad.append((seed, repr(e)))
        st, _, data = post("/v1/chat/completions", chat_body("\u00e9\u4e2d", max_tokens=24, seed=seed, temperature=1.5,
                                                             stream=True, ignore_eos=True))
        try:
            for e in sse_events(data)[:-1]:
                json.loads(e)
        except Exception as e:  # noqa: BLE001
            bad.append((seed, "stream", repr(e)))
    check("escape-1", not bad, f"{bad}")


def t_metrics():
    st, h, data = request("GET", "/metrics")
    text = data.decode("utf-8", "replace")
    check("metrics-1", st == 200 and h.get("content-type", "").startswith("text/plain"), f"{st} {h}")
    need = ['# TYPE ds_server_requests_total counter',
            'ds_server_requests_total{endpoint="/v1/chat/completions",code="200"}',
            'ds_server_requests_total{endpoint="/v1/completions",code="400"}',
            'ds_server_requests_total{endpoint="/v1/completions",code="413"}',
            'ds_server_requests_total{endpoint="/v1/chat/completions",code="429"}',
            'ds_server_requests_total{endpoint="other",code="404"}',
            'ds_server_requests_total{endpoint="/health",code="405"}',
            '# TYPE ds_server_request_duration_seconds histogram',
            'ds_server_request_duration_seconds_bucket{endpoint="/v1/chat/completions",le="+Inf"}',
            'ds_server_request_duration_seconds_sum{endpoint="/v1/chat/completions"}',
            'ds_server_request_duration_seconds_count{endpoint="/v1/chat/completions"}',
            '# TYPE ds_server_prompt_tokens_total counter', '# TYPE ds_server_generated_tokens_total counter',
            '# TYPE ds_server_tokens_per_second gauge', '# TYPE ds_expert_cache_hits_total counter',
            '# TYPE ds_expert_cache_misses_total counter', '# TYPE ds_expert_cache_decrypted_bytes_total counter',
            '# TYPE process_resident_memory_bytes gauge', 'ds_server_streams_aborted_total']
    missing = [n for n in need if n not in text]
    check("metrics-2", not missing, f"missing {missing}")
    vals = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, v = line.rpartition(" ")
            vals[name] = float(v)
    check("metrics-3", vals.get("ds_server_generated_tokens_total", 0) > 0 and
          vals.get("ds_server_tokens_per_second", 0) > 0 and vals.get("process_resident_memory_bytes", 0) > 1e6 and
          vals.get("ds_server_streams_aborted_total", 0) >= 1 and vals.get("ds_server_slots_busy", -1) == 0,
          f"values {dict((k, v) for k, v in vals.items() if not k.startswith('ds_server_request_duration'))}")
    if vals.get("ds_expert_cache_slots", 0) > 0:
        check("metrics-4", vals.get("ds_expert_cache_hits_total", 0) + vals.get("ds_expert_cache_misses_total", 0) > 0
              and vals.get("ds_expert_cache_decrypted_bytes_total", 0) > 0, "expert cache counters did not move")
    if ARGS.metrics_out:
        with open(ARGS.metrics_out, "wb") as f:
            f.write(data)
    tps = vals.get("ds_server_generated_tokens_total", 0) / max(vals.get("ds_server_generation_seconds_total", 0), 1e-9)
    print(f"# tokens/s (generated tokens / generation seconds, all requests): {tps:.1f}; "
          f"last request {vals.get('ds_server_tokens_per_second', 0):.1f}")


def t_prompt_marker():
    """A request whose prompt holds MARKER (run.sh checks the log for it)."""
    st, _, _ = post("/v1/chat/completions", chat_body(MARKER, max_tokens=2))
    check("log-marker", st == 200, f"{st}")


def t_auth():
    tok = ARGS.token
    st, _, data = request("GET", "/health")
    check("auth-1", st == 200, f"/health without a token answered {st}")
    for i, (path, method) in enumerate([("/v1/models", "GET"), ("/metrics", "GET"),
                                        ("/v1/chat/completions", "POST"), ("/v1/completions", "POST"),
                                        ("/generate", "POST")]):
        body = {"prompt": "x"} if method == "POST" else None
        st, h, data = request(method, path, body=body)
        check(f"auth-2.{i}", st == 401 and is_error_body(data) and "bearer" in h.get("www-authenticate", "").lower(),
              f"{path} without a token: {st} {data[:200]!r}")
    wrong = [tok + "x", tok[:-1], "x" + tok, tok.upper() if tok.upper() != tok else tok.lower(), "", "Bearer"]
    for i, w in enumerate(wrong):
        st, _, data = request("GET", "/v1/models", headers={"Authorization": "Bearer " + w})
        check(f"auth-3.{i}", st == 401 and is_error_body(data, "authentication_error"), f"wrong token {i}: {st}")
    for i, hv in enumerate(["Basic " + tok, tok, "Bearer" + tok]):
        st, _, data = request("GET", "/v1/models", headers={"Authorization": hv})
        check(f"auth-4.{i}", st == 401, f"Authorization {i}: {st}")
    # a big body with a wrong token: 401 at once, body never read
    st, _, data = request("POST", "/v1/completions", headers={"Authorization": "Bearer nope"},
                          body={"prompt": "x" * 1000})
    check("auth-5", st == 401, f"{st}")
    for i, hv in enumerate(["Bearer " + tok, "bearer " + tok, "BEARER   " + tok + "  "]):
        st, _, data = request("GET", "/v1/models", headers={"Authorization": hv})
        check(f"auth-6.{i}", st == 200, f"right token, header form {i}: {st}")
    st, _, data = post("/v1/chat/completions", chat_body(MARKER, max_tokens=3), token=tok)
    check("auth-7", st == 200 and jbody(data)["object"] == "chat.completion", f"{st} {data[:200]!r}")
    # this server runs with --allow-special-in-content: the end-of-sentence
    # text in a message is the one token again
    base, n = prompt_tokens("", token=tok), prompt_tokens(CONTROL_TEXTS[0], token=tok)
    check("auth-8", base is not None and n == base + 1,
          f"--allow-special-in-content: {n} prompt tokens with the EOS text, {base} without; want one more")
    alive("auth")


# ==== Slow clients (run.sh's server C and D) =================================

SLOW_HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "


def slow_open(addr):
    """A connection from source address addr (all of 127/8 is local on Linux)
    that sends part of a request head and no more. Returns (socket, time
    before connect, closed-at or None): a connection refused at once may be
    closed before the head is sent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((addr, 0))
    s.settimeout(10)
    t = time.monotonic()
    s.connect(("127.0.0.1", ARGS.port))
    closed = None
    try:
        s.sendall(SLOW_HEAD)
    except OSError:
        closed = time.monotonic()
    s.setblocking(False)
    return s, t, closed


def slow_wait(socks, opened, closed, until, trickle=0.5):
    """Waits until the server has closed every socket (reads EOF or a reset),
    at most until `until`, sending one more header byte on every open one
    each `trickle` seconds (so the connections are never idle: only a total
    deadline closes them). Fills closed[i] with the time each closed."""
    import select
    last = 0.0
    while True:
        now = time.monotonic()
        live = [i for i in range(len(socks)) if closed[i] is None]
        if not live or now >= until:
            return
        if now - last >= trickle:
            last = now
            for i in live:
                try:
                    socks[i].send(b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    closed[i] = time.monotonic()
            live = [i for i in live if closed[i] is None]
        r, _, _ = select.select([socks[i] for i in live], [], [], min(trickle, max(0.0, until - now)))
        rs = set(r)
        for i in live:
            if socks[i] in rs:
                try:
                    d = socks[i].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if not d:
                    closed[i] = time.monotonic()


def answers_fast(case, what):
    """/health and an authenticated chat from 127.0.0.1 each answer within
    ARGS.within seconds (2; more under valgrind)."""
    for sub, (method, path, body) in ((".a", ("GET", "/health", None)),
                                      (".b", ("POST", "/v1/chat/completions", chat_body(max_tokens=2)))):
        t = time.monotonic()
        try:
            st, _, data = request(method, path, body=body, token=ARGS.token, timeout=ARGS.within)
            el = time.monotonic() - t
            check(case + sub, st == 200 and el < ARGS.within, f"{path} {what}: {st} after {el:.2f} s {data[:200]!r}")
        except Exception as e:  # noqa: BLE001
            check(case + sub, False, f"{path} {what}: no answer within {ARGS.within:g} s ({e!r})")


def close_all(socks):
    for s in socks:
        s.close()


def t_slow():
    """ARGS.slow_conns slow connections: spread over several source addresses
    (under the per-client cap), then all from one address. While they are
    open, /health and an authenticated chat answer within 2 s (--within); the slow ones
    are closed at the header deadline although they keep sending."""
    ht = ARGS.header_timeout
    n = ARGS.slow_conns
    for case, addrs, what in (("slow-1", [f"127.0.0.{2 + i % 10}" for i in range(n)], "from 10 addresses"),
                              ("slow-2", ["127.0.0.12"] * n, "from one address")):
        socks, opened, closed = [], [], []
        try:
            for a in addrs:
                s, t, c = slow_open(a)
                socks.append(s)
                opened.append(t)
                closed.append(c)
        except OSError as e:
            close_all(socks)
            check(case + ".0", False, f"opening slow connection {len(socks)} {what}: {e!r}")
            continue
        report("ok", case + ".0")
        answers_fast(case + ".1", f"with {n} slow connections open {what}")
        slow_wait(socks, opened, closed, max(opened) + ht + 10)
        left = sum(c is None for c in closed)
        early = [i for i in range(n) if closed[i] is not None and closed[i] - opened[i] < ht - 0.01]
        check(case + ".2", left == 0, f"{left} of {n} slow connections {what} still open {ht + 10:.0f} s "
              "after the last one opened")
        if case == "slow-1":
            # none was refused or evicted: each lasted its whole header timeout
            check(case + ".3", not early, f"{len(early)} connections closed before the {ht:g} s header deadline")
        # (from one address: run.sh counts the refusals in the log)
        close_all(socks)

    # a body sent one byte at a time: closed at the body deadline
    bt = ARGS.body_timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.13", 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", ARGS.port))
    auth = f"Authorization: Bearer {ARGS.token}\r\n" if ARGS.token else ""
    t = time.monotonic()                 # before the head: the server's deadline counts from later
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
              "Content-Length: 10000\r\n\r\n{\"prompt\":\"".encode())
    s.setblocking(False)
    closed = [None]
    slow_wait([s], [t], closed, t + bt + 10)
    s.close()
    check("slow-3", closed[0] is not None and closed[0] - t >= bt - 0.01,
          "a body sent a byte every 0.5 s was " + (f"closed after {closed[0] - t:.2f} s, before the {bt:g} s deadline"
                                                   if closed[0] is not None else f"still open after {bt + 10:g} s"))
    alive("slow")


def t_evict():
    """More slow connections than may wait for a request head (3/4 of
    --max-conns): the oldest are closed to make room, so /health and a chat
    still answer within 2 s (--within). The server's header timeout is long here, so
    only eviction closes anything."""
    n = ARGS.slow_conns
    socks, opened, closed = [], [], []
    try:
        for i in range(n):
            s, t, c = slow_open(f"127.0.0.{21 + i % 4}")
            socks.append(s)
            opened.append(t)
            closed.append(c)
        answers_fast("evict-1", f"with {n} slow connections")
        # every eviction happened before the new connection was accepted, and
        # on loopback its FIN is queued before shutdown() returns: no waiting
        import select
        r, _, _ = select.select(socks, [], [], 0)
        gone = sorted(socks.index(x) for x in r)
        cap = ARGS.max_conns - ARGS.max_conns // 4
        want = n - cap
        check("evict-2", len(gone) >= want and gone == list(range(len(gone))),
              f"closed {gone}: want the oldest {want} or more (at most {cap} may wait for a request head)")
    finally:
        close_all(socks)
    alive("evict")


def t_internal():
    """A generation that fails inside the server (run.sh serves a model with
    tampered experts): 500 with a generic message and a request id, the
    details in the log under that id."""
    import re

    def log():
        with open(ARGS.log_file, "rb") as f:
            return f.read()
    for case, stream in (("err500-1", False), ("err500-2", True)):
        st, h, data = post("/v1/chat/completions", chat_body(max_tokens=4, stream=stream), token=ARGS.token)
        text = data.decode("utf-8", "replace")
        if stream and st == 200:
            # failed mid-stream: the error is the last event before [DONE]
            ev = [e for e in sse_events(data) if '"error"' in e]
            ok_ = len(ev) == 1
            body = ev[0].encode() if ev else b""
        else:
            # failed before the first token (prompt evaluation): a plain 500
            ok_ = st == 500
            body = data
        j = jbody(body) or {}
        msg = (j.get("error") or {}).get("message", "")
        m = re.fullmatch(r"internal error; request id (req-[0-9a-f]+)", msg)
        if not check(case + ".a", ok_ and m is not None and is_error_body(body, "server_error"),
                     f"{st} {text[:300]!r}"):
            continue
        rid = m.group(1)
        check(case + ".b", "segment" not in text.lower() and "layer" not in text.lower(),
              f"the answer shows internal details: {text[:300]!r}")
        if st == 500:
            check(case + ".c", h.get("x-request-id") == rid, f"X-Request-Id {h.get('x-request-id')!r}, want {rid}")
        # the detail is logged before the answer; the request line once MHD
        # is done with the response, which may be just after the client has it
        t_end = time.monotonic() + 10
        while True:
            lines = [ln for ln in log().decode("utf-8", "replace").splitlines() if rid in ln]
            detail = any("internal error" in ln and "segment" in ln for ln in lines)
            reqline = any("request remote=" in ln for ln in lines)
            if (detail and reqline) or time.monotonic() > t_end:
                break
            time.sleep(0.05)
        check(case + ".d", detail and reqline, f"the log under {rid}: {lines!r:.400}")


# ==== The wait queue (suites queue, queue-timeout, queue-stop) ================
# run.sh starts these servers with --max-concurrent 1. Order is forced, not
# timed: a held stream keeps the one context busy (open_stream), each queued
# request is sent only once the server reports the one before it queued, and
# a context comes free only when the test closes the stream holding it.

def metric_values():
    """/metrics as {series: value}."""
    st, _, data = request("GET", "/metrics", token=ARGS.token)
    vals = {}
    if st == 200:
        for line in data.decode("utf-8", "replace").splitlines():
            if line and not line.startswith("#"):
                name, _, v = line.rpartition(" ")
                vals[name] = float(v)
    return vals


def health():
    st, _, data = request("GET", "/health")
    return jbody(data) or {}


def wait_for(cond, timeout=20.0):
    """Polls cond() until true (a state to reach, not a delay); its last value."""
    t = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() > t:
            return v
        time.sleep(0.02)


def send_queued(body=None, path="/v1/chat/completions"):
    """Sends a request on a raw socket (small receive buffer, so that once it
    gets the context a stream holds it) and reads nothing."""
    if body is None:
        body = chat_body(max_tokens=ARGS.hold_tokens, stream=True, ignore_eos=True)
    raw = json.dumps(body).encode()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.settimeout(30)
    s.connect(("127.0.0.1", ARGS.port))
    auth = f"Authorization: Bearer {ARGS.token}\r\n" if ARGS.token else ""
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
              f"Content-Length: {len(raw)}\r\n\r\n".encode() + raw)
    return s


def readable(socks, timeout):
    import select
    r, _, _ = select.select(socks, [], [], timeout)
    return r


def queued_now():
    return health().get("queued", -1)


def t_queue():
    cap = ARGS.queue
    if not wait_idle():
        check("queue-0", False, "slots still busy before the test")
        return
    v0 = metric_values()
    check("queue-0", v0.get("ds_server_queue_capacity") == cap and v0.get("ds_server_queue_depth") == 0 and
          health().get("queued") == 0, f"capacity/depth {v0.get('ds_server_queue_capacity')}/"
          f"{v0.get('ds_server_queue_depth')}, /health {health()}")
    socks = []
    try:
        # ---- FIFO: A holds the context, B, C, D queue in that order ----
        a, head = open_stream()
        socks.append(a)
        if not check("queue-1.0", head.startswith(b"HTTP/1.1 200") and busy_slots() == 1,
                     f"the held stream: {head[:80]!r}, {busy_slots()} busy"):
            return
        q = []
        for k in range(cap):
            s = send_queued()
            socks.append(s)
            q.append(s)
            n = wait_for(lambda: queued_now() == k + 1)
            check(f"queue-1.{k + 1}", n and not readable(q, 0),
                  f"request {k + 1} not queued ({queued_now()} queued) or answered early")
        vq = metric_values()
        check("queue-2", vq.get("ds_server_queue_depth") == cap, f"queue depth {vq.get('ds_server_queue_depth')}")

        # ---- the queue is full: 429 at once, with Retry-After ----
        for path, body in (("/v1/chat/completions", chat_body()), ("/v1/completions", {"prompt": "x"}),
                           ("/generate", {"prompt": "x"})):
            t0 = time.monotonic()
            st, h, data = post(path, body, token=ARGS.token)
            dt = time.monotonic() - t0
            j = jbody(data) or {}
            ra = h.get("retry-after", "")
            check(f"queue-3{path}", st == 429 and is_error_body(data, "rate_limit_error") and
                  j["error"]["code"] == "server_busy" and "queue" in j["error"]["message"] and
                  ra.isdigit() and 1 <= int(ra) <= 3600 and dt < max(5, ARGS.within),
                  f"{st} Retry-After={ra!r} after {dt:.1f} s: {data[:200]!r}")
        # health and metrics answer while requests wait
        t0 = time.monotonic()
        st1, _, _ = request("GET", "/health")
        st2, _, _ = request("GET", "/metrics", token=ARGS.token)
        st3, _, _ = request("GET", "/v1/models", token=ARGS.token)
        dt = time.monotonic() - t0
        check("queue-4", (st1, st2, st3) == (200, 200, 200) and dt < max(5, ARGS.within),
              f"/health, /metrics, /v1/models answered {st1}, {st2}, {st3} in {dt:.1f} s while requests wait")
        vf = metric_values()
        key = 'ds_server_queue_rejected_total{reason="full"}'
        check("queue-5", vf.get(key, 0) - v0.get(key, 0) == 3, f"{key}: {v0.get(key)} -> {vf.get(key)}")

        # ---- release one at a time: B, then C, then D get the context ----
        holder = a
        for k, s in enumerate(q):
            holder.close()
            socks.remove(holder)
            got = readable(q[k:], 30)
            rest = q[k + 1:]
            ok_ = got == [s]
            head = b""
            if ok_:
                s.settimeout(30)
                while b"\r\n\r\n" not in head:
                    d = s.recv(1)
                    if not d:
                        break
                    head += d
            check(f"queue-6.{k + 1}", ok_ and head.startswith(b"HTTP/1.1 200") and not readable(rest, 0.2) and
                  wait_for(lambda: queued_now() == len(rest)),
                  f"after release {k + 1}: readable {[q.index(x) for x in got]} (want [{k}]), head {head[:60]!r}, "
                  f"{queued_now()} queued")
            holder = s
        holder.close()
        socks.remove(holder)
        check("queue-7", wait_idle(), f"slots busy after the queue drained ({busy_slots()} busy)")
        v1 = metric_values()
        n_wait = v1.get("ds_server_queue_wait_seconds_count", 0) - v0.get("ds_server_queue_wait_seconds_count", 0)
        check("queue-8", n_wait == cap + 1 and v1.get("ds_server_queue_wait_seconds_sum", 0) >
              v0.get("ds_server_queue_wait_seconds_sum", 0) and
              v1.get('ds_server_queue_wait_seconds_bucket{le="+Inf"}') == v1.get("ds_server_queue_wait_seconds_count"),
              f"wait histogram: {n_wait} new observations (want {cap + 1}), sum "
              f"{v0.get('ds_server_queue_wait_seconds_sum')} -> {v1.get('ds_server_queue_wait_seconds_sum')}")

        # ---- a client that leaves the queue gives up its place ----
        a, head = open_stream()
        socks.append(a)
        b_ = send_queued()
        socks.append(b_)
        n1 = wait_for(lambda: queued_now() == 1)
        c = send_queued()
        socks.append(c)
        n2 = wait_for(lambda: queued_now() == 2)
        check("queue-9.0", head.startswith(b"HTTP/1.1 200") and n1 and n2, f"{head[:60]!r}, {queued_now()} queued")
        va = metric_values()
        b_.close()
        socks.remove(b_)
        check("queue-9.1", wait_for(lambda: queued_now() == 1), f"{queued_now()} queued after a waiting client left")
        vb = metric_values()
        check("queue-9.2", vb.get("ds_server_queue_abandoned_total", 0) - va.get("ds_server_queue_abandoned_total", 0)
              == 1, f"abandoned {va.get('ds_server_queue_abandoned_total')} -> "
              f"{vb.get('ds_server_queue_abandoned_total')}")
        a.close()
        socks.remove(a)
        got = readable([c], 30)
        check("queue-9.3", got == [c] and wait_for(lambda: queued_now() == 0) and busy_slots() == 1,
              f"the next in line did not get the context: readable {got}, {queued_now()} queued, "
              f"{busy_slots()} busy")
        c.close()
        socks.remove(c)
        check("queue-9.4", wait_idle(), f"slots busy ({busy_slots()})")
        # no context went to the client that left: the streams ended early are
        # the two closed here (A, C), not three
        vc = metric_values()
        ab = vc.get("ds_server_streams_aborted_total", 0) - va.get("ds_server_streams_aborted_total", 0)
        check("queue-9.5", ab == 2, f"{ab:.0f} streams aborted, want 2 (A and C; B left before it had a context)")
    finally:
        for s in socks:
            s.close()
    alive("queue")


def t_queue_timeout():
    """--queue-timeout (run.sh: 2 s): a request that waits that long gets 503
    with Retry-After; the context is not lost."""
    if not wait_idle():
        check("qtime-0", False, "slots still busy before the test")
        return
    v0 = metric_values()
    a, head = open_stream()
    try:
        check("qtime-0", head.startswith(b"HTTP/1.1 200") and busy_slots() == 1, f"the held stream: {head[:80]!r}")
        for i, (path, body) in enumerate((("/v1/chat/completions", chat_body()), ("/generate", {"prompt": "x"}))):
            t0 = time.monotonic()
            st, h, data = post(path, body, token=ARGS.token)
            dt = time.monotonic() - t0
            j = jbody(data) or {}
            ra = h.get("retry-after", "")
            check(f"qtime-1.{i}", st == 503 and is_error_body(data, "server_error") and
                  j["error"]["code"] == "queue_timeout" and ra.isdigit() and int(ra) >= 1 and
                  dt >= ARGS.queue_timeout - 0.05, f"{path}: {st} Retry-After={ra!r} after {dt:.2f} s "
                  f"(--queue-timeout {ARGS.queue_timeout}): {data[:200]!r}")
    finally:
        a.close()
    check("qtime-2", wait_idle(), f"slots busy after the held stream closed ({busy_slots()})")
    v1 = metric_values()
    key = 'ds_server_queue_rejected_total{reason="timeout"}'
    check("qtime-3", v1.get(key, 0) - v0.get(key, 0) == 2 and v1.get("ds_server_queue_depth") == 0 and
          v1.get("ds_server_queue_wait_seconds_sum", 0) - v0.get("ds_server_queue_wait_seconds_sum", 0) >=
          2 * ARGS.queue_timeout - 0.1, f"timeouts {v0.get(key)} -> {v1.get(key)}, wait sum "
          f"{v0.get('ds_server_queue_wait_seconds_sum')} -> {v1.get('ds_server_queue_wait_seconds_sum')}")
    alive("qtime")


def queue_stop():
    """SIGTERM while a request waits in the queue: it is answered 503
    shutting_down at once (run.sh then checks the server exits 0)."""
    import os
    import signal
    a, head = open_stream()
    b_ = send_queued(chat_body(max_tokens=4))
    try:
        ok_ = head.startswith(b"HTTP/1.1 200") and wait_for(lambda: queued_now() == 1)
        if not check("qstop-0", ok_, f"held {head[:60]!r}, {queued_now()} queued"):
            return
        t0 = time.monotonic()
        os.kill(ARGS.server_pid, signal.SIGTERM)
        resp = b""
        b_.settimeout(30)
        try:
            while True:
                d = b_.recv(4096)
                if not d:
                    break
                resp += d
        except OSError:
            pass
        dt = time.monotonic() - t0
        hd, _, body = resp.partition(b"\r\n\r\n")
        j = jbody(body) or {}
        check("qstop-1", hd.startswith(b"HTTP/1.1 503") and (j.get("error") or {}).get("code") == "shutting_down"
              and dt < max(10, ARGS.within), f"after {dt:.1f} s: {resp[:300]!r}")
    finally:
        a.close()
        b_.close()


# ==== Fields accepted and not implemented are refused =======================

HONEST = [
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format", "unsupported"),
    ("/v1/chat/completions", {"response_format": "json"}, "response_format", "invalid_type"),
    ("/v1/chat/completions", {"response_format": {}}, "response_format", "invalid_type"),
    ("/v1/chat/completions", {"response_format": {"type": "xml"}}, "response_format", "invalid_value"),
    ("/v1/chat/completions", {"logit_bias": {"abc": -100}}, "logit_bias", "invalid_value"),
    ("/v1/chat/completions", {"logit_bias": {"99999999": 1}}, "logit_bias", "invalid_value"),
    ("/v1/chat/completions", {"logit_bias": {"5": 101}}, "logit_bias", "invalid_value"),
    ("/v1/chat/completions", {"logit_bias": {"5": "x"}}, "logit_bias", "invalid_value"),
    ("/v1/chat/completions", {"logit_bias": {"-5": 1}}, "logit_bias", "invalid_value"),
    ("/v1/chat/completions", {"logit_bias": [1]}, "logit_bias", "invalid_type"),
    ("/v1/completions", {"suffix": "tail"}, "suffix", "unsupported"),
    ("/v1/completions", {"suffix": 3}, "suffix", "invalid_type"),
    ("/v1/completions", {"logprobs": 6}, "logprobs", "invalid_value"),
    ("/v1/completions", {"logprobs": True}, "logprobs", "invalid_type"),
    ("/v1/completions", {"top_logprobs": 2}, "top_logprobs", "unsupported"),
    ("/generate", {"logprobs": True}, "logprobs", "unsupported"),
    ("/v1/chat/completions", {"n": 2}, "n", "unsupported"),
    ("/v1/completions", {"n": 3}, "n", "unsupported"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs", "invalid_value"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ("/v1/chat/completions", {"functions": [{"name": "f", "parameters": {}}]}, "functions", "unsupported"),
]

NOOP = [
    ("/v1/chat/completions", {"response_format": {"type": "text"}}),
    ("/v1/chat/completions", {"logit_bias": {}, "n": 1, "top_logprobs": 0, "response_format": None}),
    ("/v1/completions", {"suffix": "", "logit_bias": None}),
    ("/v1/completions", {"suffix": None, "response_format": {"type": "text"}}),
    ("/v1/chat/completions", {"logprobs": False, "logit_bias": {"7": 0}}),
]


def t_honest():
    for i, (path, extra, param, code) in enumerate(HONEST):
        body = chat_body(max_tokens=2) if path == "/v1/chat/completions" else {"prompt": "x", "max_tokens": 2}
        body.update(extra)
        st, _, data = post(path, body)
        j = jbody(data) or {}
        e = j.get("error") or {}
        check(f"honest-{i}", st == 400 and is_error_body(data, "invalid_request_error") and e.get("param") == param
              and e.get("code") == code and param in e.get("message", ""),
              f"{path} {json.dumps(extra)}: {st} {data[:200]!r}")
    for i, (path, extra) in enumerate(NOOP):
        body = chat_body(max_tokens=2) if path == "/v1/chat/completions" else {"prompt": "x", "max_tokens": 2}
        body.update(extra)
        st, _, data = post(path, body)
        check(f"honest-noop-{i}", st == 200, f"{path} {json.dumps(extra)}: {st} {data[:200]!r}")
    alive("honest")


# ==== logprobs, logit_bias, JSON output, tokens, props ======================

def tokenize(text, special=True, bos=False):
    st, _, data = post("/tokenize", {"content": text, "parse_special": special, "add_special": bos}, token=ARGS.token)
    return (jbody(data) or {}).get("tokens") if st == 200 else None


def detokenize(ids):
    st, _, data = post("/detokenize", {"tokens": ids}, token=ARGS.token)
    return (jbody(data) or {}).get("content") if st == 200 else None


def token_id(text):
    """The id of the token whose text this is (None when it is not one token)."""
    ids = tokenize(text, special=False)
    return ids[0] if ids and len(ids) == 1 else None


def chat_lp(content="Tell me a story.", **kw):
    b = chat_body(content, max_tokens=8, temperature=0, logprobs=True, top_logprobs=5)
    b.update(kw)
    st, _, data = post("/v1/chat/completions", b, token=ARGS.token)
    return st, jbody(data) or {}, data


def t_logprobs():
    st, j, data = chat_lp()
    ok = st == 200
    c = (j.get("choices") or [{}])[0]
    lp = ((c.get("logprobs") or {}).get("content")) if ok else None
    if not check("logprobs-1", ok and isinstance(lp, list) and len(lp) == j["usage"]["completion_tokens"] and lp,
                 f"{st} {data[:300]!r}"):
        return
    bad = []
    for i, e in enumerate(lp):
        top = e.get("top_logprobs") or []
        lps = [t["logprob"] for t in top]
        if not (set(e) >= {"token", "logprob", "bytes", "top_logprobs"} and isinstance(e["bytes"], list)
                and e["logprob"] <= 0 and len(top) == 5 and lps == sorted(lps, reverse=True)
                and sum(2.718281828459045 ** v for v in lps) <= 1 + 1e-6
                and all(set(t) == {"token", "logprob", "bytes"} and t["logprob"] <= 0 for t in top)):
            bad.append((i, "shape"))
        # greedy: the sampled token is the most likely one, with the same value
        elif not (top[0]["bytes"] == e["bytes"] and top[0]["logprob"] == e["logprob"]):
            bad.append((i, "greedy token is not the top one"))
    check("logprobs-2", not bad, f"{bad[:3]} in {json.dumps(lp)[:400]}")
    text = bytes(b for e in lp for b in e["bytes"]).decode("utf-8", "replace")
    check("logprobs-3", text == c["message"]["content"], f"bytes give {text!r}, content {c['message']['content']!r}")
    # sampled (temperature 1.5): the chosen token's logprob is its top entry's where it is there
    st, j2, data = chat_lp(temperature=1.5, seed=7, max_tokens=12)
    lp2 = (((j2.get("choices") or [{}])[0].get("logprobs") or {}).get("content")) or []
    mism = [e for e in lp2 for t in e["top_logprobs"] if t["bytes"] == e["bytes"] and t["logprob"] != e["logprob"]]
    check("logprobs-4", st == 200 and lp2 and not mism, f"{st} {mism[:2]} {data[:200]!r}")
    # streamed: the chunks' entries are the whole answer's (greedy: the same tokens)
    st, _, data = post("/v1/chat/completions", chat_body("Tell me a story.", max_tokens=8, temperature=0,
                                                         logprobs=True, top_logprobs=5, stream=True,
                                                         stream_options={"include_usage": True}),
                       token=ARGS.token)
    ev = [jbody(x.encode()) for x in sse_events(data) if x != "[DONE]"] if st == 200 else []
    got = [e for x in ev for ch in (x.get("choices") or []) for e in ((ch.get("logprobs") or {}).get("content") or [])]
    usage = [x["usage"] for x in ev if x.get("usage")]
    check("logprobs-5", st == 200 and [e["bytes"] for e in got] == [e["bytes"] for e in lp]
          and usage and usage[0]["completion_tokens"] == len(got)
          and all(abs(a["logprob"] - b["logprob"]) < 1e-3 for a, b in zip(got, lp)),   # (prefix reuse: rounding)
          f"{st} stream {len(got)} entries vs {len(lp)}: {data[:300]!r}")
    # completions: tokens, token_logprobs, top_logprobs maps, text_offset
    st, _, data = post("/v1/completions", {"prompt": "In the beginning", "max_tokens": 8, "temperature": 0,
                                           "logprobs": 3}, token=ARGS.token)
    j = jbody(data) or {}
    c = (j.get("choices") or [{}])[0]
    l3 = c.get("logprobs") or {}
    n = (j.get("usage") or {}).get("completion_tokens", -1)
    offs = l3.get("text_offset") or []
    ok = st == 200 and all(len(l3.get(k) or []) == n for k in ("tokens", "token_logprobs", "top_logprobs",
                                                                 "text_offset"))
    ok = ok and offs[0] == 0 and offs == sorted(offs) and all(v <= 0 for v in l3["token_logprobs"])
    ok = ok and all(1 <= len(m) <= 4 and max(m.values()) <= 0 for m in l3["top_logprobs"])
    ok = ok and all(m.get(t) == v for t, v, m in zip(l3["tokens"], l3["token_logprobs"], l3["top_logprobs"]))
    check("logprobs-6", ok, f"{st} {data[:400]!r}")
    if ok and "\ufffd" not in c["text"]:
        check("logprobs-7", "".join(l3["tokens"]) == c["text"], f"{l3['tokens']!r} vs {c['text']!r}")
    # streamed completion
    st, _, data = post("/v1/completions", {"prompt": "In the beginning", "max_tokens": 8, "temperature": 0,
                                           "logprobs": 3, "stream": True}, token=ARGS.token)
    ev = [jbody(x.encode()) for x in sse_events(data) if x != "[DONE]"] if st == 200 else []
    toks = [t for x in ev for ch in (x.get("choices") or []) for t in ((ch.get("logprobs") or {}).get("tokens") or [])]
    so = [t for x in ev for ch in (x.get("choices") or []) for t in ((ch.get("logprobs") or {}).get("text_offset") or [])]
    check("logprobs-8", st == 200 and toks == l3.get("tokens") and so == offs, f"{st} {toks!r} vs {l3.get('tokens')!r}")
    # logprobs 0: no alternatives, the sampled token alone in each map
    st, _, data = post("/v1/completions", {"prompt": "In the beginning", "max_tokens": 4, "logprobs": 0},
                       token=ARGS.token)
    l0 = (((jbody(data) or {}).get("choices") or [{}])[0].get("logprobs")) or {}
    check("logprobs-9", st == 200 and len(l0.get("tokens", [])) == 4 and
          all(m == {t: v} for t, v, m in zip(l0["tokens"], l0["token_logprobs"], l0["top_logprobs"])),
          f"{st} {data[:300]!r}")
    alive("logprobs")


def t_logit_bias():
    st, j, data = chat_lp()
    lp = (((j.get("choices") or [{}])[0].get("logprobs") or {}).get("content")) or []
    # ban: the greedy answer's first token never comes (nor among the alternatives)
    cand = [e for e in lp if token_id(bytes(e["bytes"]).decode("utf-8", "replace")) is not None]
    if not check("bias-0", st == 200 and cand, f"no token of the answer tokenizes alone: {data[:300]!r}"):
        return
    banned = cand[0]
    bid = token_id(bytes(banned["bytes"]).decode())
    st, j, data = chat_lp(logit_bias={str(bid): -100}, max_tokens=12)
    lp2 = (((j.get("choices") or [{}])[0].get("logprobs") or {}).get("content")) or []
    seen = [e for e in lp2 if e["bytes"] == banned["bytes"] or
            any(t["bytes"] == banned["bytes"] for t in e["top_logprobs"])]
    check("bias-1", st == 200 and lp2 and not seen, f"token {bid} {banned['token']!r} banned, seen: {seen[:2]!r}")
    # the same ban with sampling and several seeds
    for seed in (1, 2, 3):
        st, j, data = chat_lp(logit_bias={str(bid): -100}, max_tokens=16, temperature=1.5, seed=seed)
        lp3 = (((j.get("choices") or [{}])[0].get("logprobs") or {}).get("content")) or []
        check(f"bias-2.{seed}", st == 200 and lp3 and all(e["bytes"] != banned["bytes"] for e in lp3),
              f"{st} {data[:300]!r}")
    # force: +100 selects the token, every time, with probability 1
    fid = token_id(" the") or token_id("the") or bid
    fbytes = list(detokenize([fid]).encode())
    st, j, data = chat_lp(logit_bias={str(fid): 100}, max_tokens=6, temperature=1.0, seed=3)
    lp4 = (((j.get("choices") or [{}])[0].get("logprobs") or {}).get("content")) or []
    check("bias-3", st == 200 and len(lp4) == 6 and all(e["bytes"] == fbytes and e["logprob"] == 0 for e in lp4),
          f"forced {fid}: {st} {data[:300]!r}")
    # a small bias shifts the logprob by exactly that much before normalising:
    # lp' - lp of the boosted token is bias - log(sum) change; here only its sign
    alive("bias")


def t_json_object():
    prompts = ["Give me a JSON object describing a cat.", "Reply in JSON.", "x"]
    n = 0
    for pi, p in enumerate(prompts):
        for seed in (1, 2, 3):
            for temp in (0.0, 1.0):
                st, _, data = post("/v1/chat/completions", chat_body(p, max_tokens=48, seed=seed, temperature=temp,
                                                                     response_format={"type": "json_object"}),
                                   token=ARGS.token)
                j = jbody(data) or {}
                c = (j.get("choices") or [{}])[0]
                text = (c.get("message") or {}).get("content", "")
                try:
                    ok = isinstance(json.loads(text), dict)
                except ValueError:
                    ok = False
                n += 1
                check(f"json-1.{pi}.{seed}.{temp}", st == 200 and ok and c.get("finish_reason") in ("stop", "length"),
                      f"{st} {text!r} {data[:200]!r}")
    # tight budgets still close the object
    for mt in (2, 3, 5, 9):
        st, _, data = post("/v1/chat/completions", chat_body("JSON please", max_tokens=mt, seed=mt, temperature=1.0,
                                                             response_format={"type": "json_object"}),
                           token=ARGS.token)
        text = (((jbody(data) or {}).get("choices") or [{}])[0].get("message") or {}).get("content", "")
        try:
            ok = isinstance(json.loads(text), dict)
        except ValueError:
            ok = False
        check(f"json-2.{mt}", st == 200 and ok, f"max_tokens {mt}: {text!r}")
    # streamed, and on /v1/completions and /generate
    for seed in (4, 5):
        st, _, data = post("/v1/chat/completions", chat_body("Describe a dog as JSON.", max_tokens=40, seed=seed,
                                                             stream=True, response_format={"type": "json_object"}),
                           token=ARGS.token)
        ev = [jbody(x.encode()) for x in sse_events(data) if x != "[DONE]"] if st == 200 else []
        text = "".join((ch.get("delta") or {}).get("content") or "" for x in ev for ch in (x.get("choices") or []))
        try:
            ok = isinstance(json.loads(text), dict)
        except ValueError:
            ok = False
        check(f"json-3.{seed}", st == 200 and ok, f"{text!r}")
    for path, key in (("/v1/completions", "text"), ("/generate", None)):
        st, _, data = post(path, {"prompt": "Data:", "max_tokens": 30, "seed": 9,
                                  "response_format": {"type": "json_object"}}, token=ARGS.token)
        j = jbody(data) or {}
        text = j["choices"][0]["text"] if key and j.get("choices") else j.get("text", "")
        try:
            ok = isinstance(json.loads(text), dict)
        except ValueError:
            ok = False
        check(f"json-4{path}", st == 200 and ok, f"{st} {text!r}")
    alive("json")


def t_tokens():
    texts = ["Hello world", "  spaces\tand\nlines  ", "naïve café — 東京 😀", "", "a" * 300,
             "<｜end▁of▁sentence｜> marker"]
    for i, t in enumerate(texts):
        ids = tokenize(t)
        check(f"tok-1.{i}", ids is not None and all(isinstance(x, int) for x in ids) and detokenize(ids) == t,
              f"{t!r}: {ids!r} -> {detokenize(ids) if ids is not None else None!r}")
    # add_special: the BOS first, when the model has one
    st, _, data = request("GET", "/props", token=ARGS.token)
    props = jbody(data) or {}
    plain, with_bos = tokenize("Hello"), tokenize("Hello", bos=True)
    bos = props.get("bos_token", -1)
    check("tok-2", (with_bos == [bos] + plain) if bos >= 0 else with_bos == plain, f"{plain} {with_bos} bos {bos}")
    # parse_special false: the control token's text is plain text
    sp, nsp = tokenize("<｜end▁of▁sentence｜>"), tokenize("<｜end▁of▁sentence｜>", special=False)
    check("tok-3", sp is not None and nsp is not None and (len(sp) == 1) == (sp != nsp) and
          detokenize(nsp) == "<｜end▁of▁sentence｜>", f"{sp} {nsp}")
    # a completion's prompt_tokens count the same ids (with the BOS)
    st, _, data = post("/v1/completions", {"prompt": texts[2], "max_tokens": 1}, token=ARGS.token)
    pt = ((jbody(data) or {}).get("usage") or {}).get("prompt_tokens")
    check("tok-4", pt == len(tokenize(texts[2], bos=True)), f"prompt_tokens {pt} vs {tokenize(texts[2], bos=True)}")
    if ARGS.tokenize_out:
        with open(ARGS.tokenize_out, "w") as f:
            f.write(" ".join(str(x) for x in tokenize(texts[2])) + "\n")
    vocab = props.get("vocab_size", 0)
    errs = [("/tokenize", {}, "content"), ("/tokenize", {"content": 5}, "content"),
            ("/tokenize", {"content": "x", "add_special": "yes"}, "add_special"),
            ("/detokenize", {}, "tokens"), ("/detokenize", {"tokens": "1 2"}, "tokens"),
            ("/detokenize", {"tokens": [-1]}, "tokens"), ("/detokenize", {"tokens": [1.5]}, "tokens"),
            ("/detokenize", {"tokens": ["a"]}, "tokens"), ("/detokenize", {"tokens": [vocab]}, "tokens")]
    for i, (path, body, param) in enumerate(errs):
        st, _, data = post(path, body, token=ARGS.token)
        check(f"tok-5.{i}", st == 400 and is_error_body(data) and (jbody(data)["error"]["param"] == param),
              f"{path} {body}: {st} {data[:200]!r}")
    for i, raw in enumerate([b"{", b"[1]", b"\xff"]):
        st, _, data = request("POST", "/tokenize", raw_body=raw, token=ARGS.token)
        check(f"tok-6.{i}", st == 400 and is_error_body(data), f"{raw!r}: {st} {data[:200]!r}")
    st, h, data = request("GET", "/tokenize", token=ARGS.token)
    check("tok-7", st == 405 and "POST" in h.get("allow", ""), f"{st} {h}")
    # /props
    st, _, data = request("GET", "/v1/models", token=ARGS.token)
    ctx = ((jbody(data) or {}).get("data") or [{}])[0].get("context_length")
    check("props-1", props.get("n_ctx") == ctx and props.get("total_slots") == ARGS.max_concurrent and
          str(props.get("model_path", "")).endswith(".dsm") and "/" not in props["model_path"] and
          isinstance(props.get("chat_template"), bool) and str(props.get("build_info", "")).startswith("deepseek.h")
          and vocab > 0, f"{props}")
    # no --cors here: no CORS headers, OPTIONS is not a method of the API
    st, h, _ = request("OPTIONS", "/v1/chat/completions")
    check("cors-off", st == 405 and "access-control-allow-origin" not in h, f"{st} {h}")
    alive("tokens")


def t_cors():
    """Against a server started with --cors https://app.example and an API key."""
    origin = "https://app.example"
    for i, path in enumerate(["/v1/chat/completions", "/v1/completions", "/tokenize", "/v1/models", "/props"]):
        st, h, _ = request("OPTIONS", path, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "authorization,content-type"})
        check(f"cors-1.{i}", st == 204 and h.get("access-control-allow-origin") == origin and
              "authorization" in h.get("access-control-allow-headers", "").lower() and
              "access-control-allow-methods" in h, f"{path}: {st} {h}")
    st, h, _ = request("OPTIONS", "/nope", headers={"Origin": origin})
    check("cors-2", st == 404, f"{st}")
    st, h, _ = request("GET", "/health", headers={"Origin": origin})
    check("cors-3", st == 200 and h.get("access-control-allow-origin") == origin, f"{st} {h}")
    st, h, _ = request("GET", "/v1/models", headers={"Origin": origin})
    check("cors-4", st == 401 and h.get("access-control-allow-origin") == origin, f"{st} {h}")
    st, h, data = post("/v1/chat/completions", chat_body(max_tokens=2), token=ARGS.token, headers={"Origin": origin})
    check("cors-5", st == 200 and h.get("access-control-allow-origin") == origin, f"{st} {h}")
    st, h, data = post("/v1/chat/completions", chat_body(max_tokens=2, stream=True), token=ARGS.token,
                       headers={"Origin": origin})
    check("cors-6", st == 200 and h.get("access-control-allow-origin") == origin, f"{st} {h}")
    st, h, data = request("GET", "/metrics", token=ARGS.token, headers={"Origin": origin})
    check("cors-7", st == 200 and h.get("access-control-allow-origin") == origin, f"{st} {h}")


def hold():
    """Holds --max-concurrent streams open until killed (run.sh uses it to
    test shutdown while generations are running)."""
    held = [open_stream()[0] for _ in range(ARGS.max_concurrent)]
    print("held", len(held), flush=True)
    time.sleep(120)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--suite", choices=["main", "auth", "hold", "slow", "evict", "internal", "queue", "queue-timeout",
                                        "queue-stop", "cors"], default="main")
    ap.add_argument("--token-file")
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=2048)
    ap.add_argument("--max-body", type=int, default=65536)
    ap.add_argument("--hold-tokens", type=int, default=2048)
    ap.add_argument("--metrics-out")
    ap.add_argument("--tokenize-out", help="write /tokenize's ids of a test text here (run.sh compares with ds)")
    ap.add_argument("--only", help="comma-separated test groups")
    ap.add_argument("--header-timeout", type=float, default=10)
    ap.add_argument("--body-timeout", type=float, default=30)
    ap.add_argument("--max-conns", type=int, default=512)
    ap.add_argument("--slow-conns", type=int, default=200)
    ap.add_argument("--within", type=float, default=2, help="seconds /health and chat may take beside slow clients")
    ap.add_argument("--log-file", help="the server's log (suite internal)")
    ap.add_argument("--queue", type=int, default=3, help="the server's --queue (suite queue)")
    ap.add_argument("--queue-timeout", type=float, default=2, help="the server's --queue-timeout (suite queue-timeout)")
    ap.add_argument("--server-pid", type=int, help="the server's process id (suite queue-stop signals it)")
    ARGS = ap.parse_args()
    ARGS.token = open(ARGS.token_file).read().strip() if ARGS.token_file else None
    if ARGS.suite == "hold":
        hold()
        return 0
    if ARGS.suite == "queue-stop":
        queue_stop()
        return 1 if COUNTS["FAIL"] else 0
    groups = {"basic": t_basic, "chat": t_chat, "completions": t_completions, "stop": t_stop,
              "malformed": t_malformed, "wrong_types": t_wrong_types, "limits": t_limits, "routes": t_routes,
              "busy": t_busy, "disconnect": t_disconnect, "parallel": t_parallel, "escaping": t_escaping,
              "special_content": t_special_content,
              "honest": t_honest, "logprobs": t_logprobs, "logit_bias": t_logit_bias, "json": t_json_object,
              "tokens": t_tokens, "marker": t_prompt_marker, "metrics": t_metrics}
    if ARGS.suite == "auth":
        groups = {"auth": t_auth}
    if ARGS.suite == "cors":
        groups = {"cors": t_cors}
    if ARGS.suite in ("slow", "evict", "internal", "queue", "queue-timeout"):
        groups = {ARGS.suite: {"slow": t_slow, "evict": t_evict, "internal": t_internal, "queue": t_queue,
                               "queue-timeout": t_queue_timeout}[ARGS.suite]}
    if ARGS.only:
        groups = {k: v for k, v in groups.items() if k in ARGS.only.split(",")}
    for name, fn in groups.items():
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a crash of the test is a failure, not an abort
            report("FAIL", f"{name}-crash", repr(e))
    print(f"# {COUNTS['ok']} ok, {COUNTS['FAIL']} failed, {COUNTS['SKIP']} skipped")
    return 1 if COUNTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
