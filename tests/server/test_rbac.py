#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Roles, per-key limits, key reloads and the audit log of ds-server
(--keys-file, --audit-log), from outside; standard library only.

    python3 tests/server/test_rbac.py --suite roles --port P --keys K.json --keys-file F --server-pid PID
                                      --audit-log A --stderr-log L --seen OUT.json
    python3 tests/server/test_rbac.py --suite audit --audit-log A --seen OUT.json --keys K.json [--log-prompts]
    python3 tests/server/test_rbac.py --suite legacy --port P --token-file F --seen OUT.json

K.json (written by run.sh) maps each key name to {"role", "token", "hash"},
and has "spare": keys that are not in the file at the start (for the reload
cases). The roles suite records every response's X-Request-Id, status, key
and endpoint in --seen; the audit suite, run once the server has stopped,
checks the audit log against it: one record per request with the
documented fields and types, the same id, status and key.

Prints "ok <id>" / "FAIL <id>: why" / "SKIP <id>: why" per case (counted by
tests/server/run.sh).
"""
import argparse
import json
import os
import re
import signal
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_server as ts  # noqa: E402  (its HTTP helpers; they read ts.ARGS)

ARGS = None
SEEN = []                 # (request id, status, key name or None, endpoint)
ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check(case, cond, why):
    return ts.check(case, cond, why)


def call(method, path, key=None, body=None, headers=None, token=None):
    """One request as key (a name in the keys JSON) or with a raw token;
    records its id for the audit suite. Returns (status, headers, body)."""
    if key is not None:
        token = ARGS.keys[key]["token"]
    st, h, data = ts.request(method, path, body=body, headers=headers, token=token)
    # a refused token (401) or an unknown path (404, answered first) has no key
    SEEN.append({"id": h.get("x-request-id"), "status": st, "key": key if st not in (401, 404) else None,
                 "path": path})
    return st, h, data


def completion(key, max_tokens=2, **kw):
    b = {"prompt": "hello " + ts.MARKER, "max_tokens": max_tokens}
    b.update(kw)
    return call("POST", "/v1/completions", key=key, body=b)


def code_of(data):
    j = ts.jbody(data) or {}
    return (j.get("error") or {}).get("code")


def held_stream(key):
    """A streamed completion of key held open (test_server.open_stream): the
    request stays running until the socket is closed."""
    ts.ARGS.token = ARGS.keys[key]["token"]
    try:
        s, head = ts.open_stream(path="/v1/completions",
                                 body={"prompt": ts.MARKER, "max_tokens": ARGS.hold_tokens, "stream": True,
                                       "ignore_eos": True})
    finally:
        ts.ARGS.token = None
    m = re.search(rb"(?im)^x-request-id: *([^\r\n]*)", head)
    st = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    SEEN.append({"id": m.group(1).decode() if m else None, "status": st, "key": key, "path": "/v1/completions",
                 "stream": True})
    return s, head


def wait_until(fn, timeout=15.0):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v
        time.sleep(0.1)


def of_role(role):
    """The keys of a role in the file from the start, without limits."""
    return sorted(k for k, v in ARGS.keys.items() if v["role"] == role and not v.get("spare") and not v.get("limits"))


# ==== suite roles ============================================================

def t_roles():
    # what each role may do: (method, path) -> status per role
    want = {"inference": {"models": 200, "completions": 200, "metrics": 403},
            "metrics": {"models": 403, "completions": 403, "metrics": 200},
            "admin": {"models": 200, "completions": 200, "metrics": 200}}
    for role in ("inference", "metrics", "admin"):
        keys = of_role(role)
        check(f"rbac-1.{role}", len(keys) >= 3, f"want three keys of role {role} without limits, have {keys}")
        for k in keys:
            got = {}
            st, _, d = call("GET", "/v1/models", key=k)
            got["models"] = (st, d)
            st, _, d = completion(k)
            got["completions"] = (st, d)
            st, _, d = call("GET", "/metrics", key=k)
            got["metrics"] = (st, d)
            for what, (st, d) in got.items():
                w = want[role][what]
                ok = st == w
                if ok and w == 403:
                    ok = ts.is_error_body(d, "permission_error") and code_of(d) == "permission_denied"
                if ok and what == "metrics" and w == 200:
                    ok = b"ds_server_requests_total" in d
                check(f"rbac-1.{role}.{k}.{what}", ok, f"{st} (want {w}) {d[:200]!r}")
    # /health needs no key; a wrong, missing or hash-as-token key is 401
    st, _, d = call("GET", "/health")
    check("rbac-2.1", st == 200, f"/health without a key: {st}")
    anyk = of_role("inference")[0]
    tok = ARGS.keys[anyk]["token"]
    for i, bad in enumerate([None, tok + "x", tok[:-1], ARGS.keys[anyk]["hash"], "Bearer"]):
        st, h, d = call("POST", "/v1/completions", body={"prompt": "x", "max_tokens": 1}, token=bad)
        check(f"rbac-2.2.{i}", st == 401 and ts.is_error_body(d, "authentication_error") and
              code_of(d) == "invalid_api_key", f"token {i}: {st} {d[:200]!r}")
    st, _, d = call("GET", "/metrics", token=tok + "x")
    check("rbac-2.3", st == 401, f"/metrics with a wrong token: {st}")


def t_request_id():
    k = of_role("admin")[0]
    # made by the server, on success and error answers alike
    for i, (method, path, key) in enumerate([("GET", "/v1/models", k), ("GET", "/health", None),
                                             ("GET", "/nope", k), ("GET", "/v1/models", None),
                                             ("GET", "/metrics", of_role("inference")[0])]):
        st, h, _ = call(method, path, key=key)
        rid = h.get("x-request-id", "")
        check(f"rbac-3.1.{i}", ID_RE.fullmatch(rid) is not None and rid.startswith("req-"),
              f"{method} {path} ({st}): X-Request-Id {rid!r}")
    ids = [s["id"] for s in SEEN if s["id"]]
    check("rbac-3.2", len(ids) == len(set(ids)), "request ids repeat")
    # a sane client id is kept, an odd one replaced
    for i, cid in enumerate(["abc-123_X.y", "A" * 64]):
        st, h, _ = call("GET", "/v1/models", key=k, headers={"X-Request-Id": cid})
        check(f"rbac-3.3.{i}", st == 200 and h.get("x-request-id") == cid, f"sent {cid!r}, got {h.get('x-request-id')!r}")
    for i, cid in enumerate(["A" * 65, "a b", "a/b", "x\"y", "ü"]):
        try:
            st, h, _ = call("GET", "/v1/models", key=k, headers={"X-Request-Id": cid})
        except Exception as e:  # noqa: BLE001 - http.client refuses some header values itself
            ts.report("SKIP", f"rbac-3.4.{i}", f"the client would not send {cid!r}: {e!r}")
            continue
        got = h.get("x-request-id", "")
        check(f"rbac-3.4.{i}", st == 200 and got != cid and got.startswith("req-"), f"sent {cid!r}, got {got!r}")
    # a streamed answer has it in its head
    s, head = held_stream(of_role("inference")[0])
    s.close()
    check("rbac-3.5", re.search(rb"(?im)^x-request-id: *req-[0-9a-f]+\r?$", head) is not None,
          f"stream head {head[:300]!r}")
    ts.wait_idle()


def t_concurrent():
    lim = [k for k, v in ARGS.keys.items() if v.get("limits") == "max_concurrent=1"][0]
    other = of_role("inference")[0]
    s, head = held_stream(lim)
    try:
        if not check("rbac-4.1", head.startswith(b"HTTP/1.1 200"), f"held stream answered {head[:100]!r}"):
            return
        # the held request is running (its head is out, its 30000 tokens are
        # not): a second request of the key is refused, whatever the timing
        st, h, d = completion(lim)
        ra = h.get("retry-after", "")
        check("rbac-4.2", st == 429 and ts.is_error_body(d, "rate_limit_error") and
              code_of(d) == "key_concurrency_limit" and ra.isdigit() and 1 <= int(ra) <= 3600,
              f"{st} Retry-After={ra!r} {d[:200]!r}")
        st, h, d = call("POST", "/v1/chat/completions", key=lim, body=ts.chat_body())
        check("rbac-4.3", st == 429 and code_of(d) == "key_concurrency_limit", f"chat: {st} {d[:200]!r}")
        # other endpoints of the key and other keys are not limited
        st, _, _ = call("GET", "/v1/models", key=lim)
        check("rbac-4.4", st == 200, f"/v1/models of the limited key: {st}")
        st, _, d = completion(other)
        check("rbac-4.5", st == 200, f"another key meanwhile: {st} {d[:200]!r}")
    finally:
        s.close()
    # once the held request has ended the key gets in again
    st = wait_until(lambda: completion(lim)[0] == 200)
    check("rbac-4.6", st, "the key still refused 15 s after its running request ended")


def t_tokens():
    lim = [k for k, v in ARGS.keys.items() if (v.get("limits") or "").startswith("tokens_per_minute=")][0]
    budget = int(ARGS.keys[lim]["limits"].split("=")[1])
    st, _, d = completion(lim, max_tokens=budget + 4, ignore_eos=True)
    j = ts.jbody(d) or {}
    used = (j.get("usage") or {}).get("total_tokens", 0)
    if not check("rbac-5.1", st == 200 and used > budget, f"{st} used {used} of {budget}: {d[:200]!r}"):
        return
    # the tokens are charged when the request is done, which may be a moment
    # after its answer reached us: the refusal must come, within 5 s
    r = wait_until(lambda: (lambda x: x if x[0] == 429 else None)(completion(lim)), timeout=5)
    st, h, d = r or (0, {}, b"no 429 within 5 s")
    ra = h.get("retry-after", "")
    check("rbac-5.2", st == 429 and code_of(d) == "key_token_limit" and ra.isdigit() and 1 <= int(ra) <= 60,
          f"{st} Retry-After={ra!r} {d[:200]!r}")
    st, _, _ = completion(of_role("inference")[0])
    check("rbac-5.3", st == 200, f"another key meanwhile: {st}")


def write_keys(names, extra=""):
    """Replaces the keys file (a new file renamed over it, as an editor or a
    deployment would) with these keys."""
    tmp = ARGS.keys_file + ".new"
    with open(tmp, "w") as f:
        f.write("# written by test_rbac.py\n")
        for n in names:
            v = ARGS.keys[n]
            f.write(f"{n} {v['role']} {v['hash']} {v.get('limits') or ''}\n")
        f.write(extra)
    os.chmod(tmp, 0o600)
    os.replace(tmp, ARGS.keys_file)


def log_has(path, pattern, after=0):
    with open(path, "rb") as f:
        f.seek(after)
        return re.search(pattern, f.read()) is not None


def t_reload():
    start = [k for k, v in ARGS.keys.items() if not v.get("spare")]
    gone = of_role("inference")[-1]
    new = [k for k, v in ARGS.keys.items() if v.get("spare")][0]
    st, _, _ = completion(gone)
    check("rbac-6.0", st == 200, f"{gone} before the reload: {st}")
    # a stream of the key that goes, held across the reload
    s, head = held_stream(gone)
    try:
        write_keys([k for k in start if k != gone] + [new])
        log_at = os.path.getsize(ARGS.stderr_log)
        os.kill(ARGS.server_pid, signal.SIGHUP)
        ok = wait_until(lambda: log_has(ARGS.stderr_log, rb"keys reloaded file=\S+ keys=%d" % len(start), log_at))
        check("rbac-6.1", ok, "no 'keys reloaded' line within 15 s of SIGHUP")
        st, _, d = completion(gone)
        check("rbac-6.2", st == 401, f"the removed key {gone} after the reload: {st} {d[:200]!r}")
        st, _, d = completion(new)
        check("rbac-6.3", st == 200, f"the added key {new} after the reload: {st} {d[:200]!r}")
        # the request authorized before the reload runs on
        s.settimeout(10)
        got = b""
        try:
            while len(got) < 4096:
                b = s.recv(4096)
                if not b:
                    break
                got += b
        except OSError as e:
            got += repr(e).encode()
        check("rbac-6.4", head.startswith(b"HTTP/1.1 200") and got.count(b"data: {") >= 2,
              f"the stream of {gone} held across the reload: {head[:60]!r} then {got[:200]!r}")
    finally:
        s.close()
    # a malformed file: the keys stay as they were, the error names file and line
    good = [k for k in start if k != gone] + [new]
    write_keys(good, extra="broken-line admin\n")
    bad_line = len(good) + 2
    log_at = os.path.getsize(ARGS.stderr_log)
    os.kill(ARGS.server_pid, signal.SIGHUP)
    pat = rb"keys reload failed: " + re.escape(ARGS.keys_file.encode()) + rb":%d: .*keeping the %d keys" % (
        bad_line, len(good))
    ok = wait_until(lambda: log_has(ARGS.stderr_log, pat, log_at))
    check("rbac-6.5", ok, f"no 'keys reload failed: FILE:{bad_line}: ...' line within 15 s")
    st, _, _ = completion(new)
    check("rbac-6.6", st == 200, f"a key of the kept set after the failed reload: {st}")
    st, _, _ = completion(gone)
    check("rbac-6.7", st == 401, f"the removed key after the failed reload: {st}")
    # restore the file (the audit suite expects the start set plus new)
    write_keys(good)
    log_at = os.path.getsize(ARGS.stderr_log)
    os.kill(ARGS.server_pid, signal.SIGHUP)
    wait_until(lambda: log_has(ARGS.stderr_log, rb"keys reloaded", log_at))
    ts.wait_idle()


def t_default_key():
    """--api-key-file beside --keys-file: the key "default", role inference only."""
    if not ARGS.token:
        return
    st, _, d = call("POST", "/v1/completions", token=ARGS.token, body={"prompt": "x", "max_tokens": 1})
    check("rbac-7.1", st == 200, f"the --api-key-file token: {st} {d[:200]!r}")
    SEEN[-1]["key"] = "default"
    st, _, d = call("GET", "/metrics", token=ARGS.token)
    check("rbac-7.2", st == 403 and code_of(d) == "permission_denied", f"/metrics with it: {st} {d[:200]!r}")
    SEEN[-1]["key"] = "default"


def t_audit_live():
    check("rbac-8.1", stat.S_IMODE(os.stat(ARGS.audit_log).st_mode) == 0o600,
          f"the audit log's mode is {oct(stat.S_IMODE(os.stat(ARGS.audit_log).st_mode))}, want 0o600")


def suite_roles():
    for fn in (t_roles, t_request_id, t_concurrent, t_tokens, t_default_key, t_reload, t_audit_live):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a crash of the test is a failure, not an abort
            ts.report("FAIL", f"{fn.__name__}-crash", repr(e))


def suite_legacy():
    """--api-key-file alone: the token opens the generation endpoints and
    /metrics, as before roles."""
    tok = ARGS.token
    st, _, d = call("POST", "/v1/completions", token=tok, body={"prompt": "x " + ts.MARKER, "max_tokens": 3})
    SEEN[-1]["key"] = "default"
    j = ts.jbody(d) or {}
    check("legacy-1", st == 200, f"{st} {d[:200]!r}")
    if st == 200:
        SEEN[-1]["completion"] = j["choices"][0]["text"]
        SEEN[-1]["prompt"] = "x " + ts.MARKER
    st, _, d = call("GET", "/metrics", token=tok)
    SEEN[-1]["key"] = "default"
    check("legacy-2", st == 200 and b"ds_server_requests_total" in d, f"/metrics: {st}")
    st, _, _ = call("GET", "/metrics", token=tok + "x")
    check("legacy-3", st == 401, f"/metrics with a wrong token: {st}")


# ==== suite audit (after the server stopped) =================================

REQ_FIELDS = {"time": str, "type": str, "request_id": str, "key": (str, type(None)), "role": (str, type(None)),
              "remote": str, "method": str, "endpoint": str, "path": str, "status": int, "stream": bool,
              "prompt_tokens": int, "reused_tokens": int, "completion_tokens": int, "latency_s": (int, float),
              "queued_s": (int, float, type(None)), "finish_reason": (str, type(None)),
              "adapter": (str, type(None))}
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def suite_audit():
    raw = open(ARGS.audit_log, "rb").read()
    lines = raw.split(b"\n")
    check("audit-1", raw.endswith(b"\n") and lines[-1] == b"", "the file does not end with a newline")
    recs, bad = [], []
    for i, ln in enumerate(lines[:-1]):
        try:
            r = json.loads(ln)
            if not isinstance(r, dict):
                raise ValueError("not an object")
            recs.append(r)
        except ValueError as e:
            bad.append((i + 1, str(e), ln[:100]))
    check("audit-2", not bad and recs, f"{len(bad)} lines are not JSON objects: {bad[:3]}")
    reqs = [r for r in recs if r.get("type") == "request"]
    evs = [r for r in recs if r.get("type") == "event"]
    check("audit-3", len(reqs) + len(evs) == len(recs), "records of a type other than request and event")
    wrong = []
    extra = {"prompt", "completion"} if ARGS.log_prompts else set()
    for r in reqs:
        if set(r) != set(REQ_FIELDS) | extra:
            wrong.append(("fields", sorted(set(r) ^ (set(REQ_FIELDS) | extra))))
            continue
        for f, t in REQ_FIELDS.items():
            if not isinstance(r[f], t) or (t is int and isinstance(r[f], bool)):
                wrong.append((f, r[f]))
        if not TIME_RE.fullmatch(r["time"]):
            wrong.append(("time", r["time"]))
        if r["key"] is not None and r["role"] not in ("inference", "metrics", "admin"):
            wrong.append(("role", r["role"]))
    check("audit-4", not wrong, f"request records off the schema: {wrong[:4]}")
    for r in evs:
        if not isinstance(r.get("event"), str) or not TIME_RE.fullmatch(r.get("time", "")):
            wrong.append(r)
    check("audit-5", not wrong, f"event records without a name or time: {wrong[:3]}")
    names = [e["event"] for e in evs]
    need = ["startup", "model_opened", "listening", "shutdown", "stopped"]
    if ARGS.keys:
        need += ["keys_loaded", "keys_reloaded"]
    check("audit-6", all(n in names for n in need), f"events {names}, want all of {need}")
    check("audit-6b", names[:1] == ["startup"] and names[-2:] == ["shutdown", "stopped"],
          f"events in the order {names}")
    if ARGS.keys:
        rel = [e for e in evs if e["event"] == "keys_reloaded"]
        check("audit-7", any(isinstance(e.get("keys"), int) and e.get("error") is None for e in rel) and
              any(e.get("keys") is None and ":" in (e.get("error") or "") for e in rel),
              f"keys_reloaded events {rel}")
    # every request seen has its record: same id, status, key, role
    seen = json.load(open(ARGS.seen))
    by_id = {}
    for r in reqs:
        by_id.setdefault(r["request_id"], []).append(r)
    miss = []
    for s in seen:
        rs = by_id.get(s["id"], [])
        if len(rs) != 1:
            miss.append((s["id"], s["path"], f"{len(rs)} records"))
            continue
        r = rs[0]
        want_role = ARGS.key_roles.get(s["key"]) if s["key"] else None
        if r["status"] != s["status"] or r["key"] != s["key"] or r["role"] != want_role or r["path"] != s["path"]:
            miss.append((s["id"], s["path"], s["status"], s["key"], "->", r["status"], r["key"], r["role"]))
    check("audit-8", not miss and seen, f"{len(miss)} of {len(seen)} requests without their record: {miss[:4]}")
    # token counts and finish reasons of 200 completions
    comp = [r for r in reqs if r["endpoint"] == "/v1/completions" and r["status"] == 200 and not r["stream"]]
    check("audit-9", comp and all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and
                                  r["finish_reason"] in ("stop", "length") for r in comp),
          f"completion records: {comp[:2]}")
    refused = [r for r in reqs if r["status"] in (401, 403, 429)]
    check("audit-10", refused and all(r["finish_reason"] is None and r["completion_tokens"] == 0 for r in refused),
          f"refused requests' records: {refused[:2]}")
    # secrets and prompt text
    for name, v in (ARGS.keys or {}).items():
        if v["token"].encode() in raw:
            check("audit-11", False, f"the token of {name} is in the audit log")
            break
    else:
        check("audit-11", True, "")
    if ARGS.log_prompts:
        hits = [s for s in seen if s.get("prompt")]
        okp = bool(hits)
        for s in hits:
            r = by_id.get(s["id"], [{}])[0]
            okp = okp and r.get("prompt") == s["prompt"] and r.get("completion") == s["completion"]
        check("audit-12", okp, f"--log-prompts: prompt and completion of {[s['id'] for s in hits]} not as answered")
    else:
        check("audit-12", ts.MARKER.encode() not in raw, "prompt text in the audit log without --log-prompts")
    check("audit-13", stat.S_IMODE(os.stat(ARGS.audit_log).st_mode) == 0o600, "mode is not 0600")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--suite", choices=["roles", "legacy", "audit"], required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--keys", help="JSON: name -> {role, token, hash, limits, spare}")
    ap.add_argument("--keys-file")
    ap.add_argument("--token-file", help="the --api-key-file token")
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--audit-log")
    ap.add_argument("--stderr-log")
    ap.add_argument("--seen", required=True)
    ap.add_argument("--log-prompts", action="store_true")
    ap.add_argument("--hold-tokens", type=int, default=30000)
    ARGS = ap.parse_args()
    ARGS.keys = json.load(open(ARGS.keys)) if ARGS.keys else {}
    ARGS.token = open(ARGS.token_file).read().strip() if ARGS.token_file else None
    ARGS.key_roles = {k: v["role"] for k, v in ARGS.keys.items()}
    ARGS.key_roles["default"] = "inference"
    ts.ARGS = argparse.Namespace(port=ARGS.port, token=None, hold_tokens=ARGS.hold_tokens)
    if ARGS.suite == "roles":
        suite_roles()
    elif ARGS.suite == "legacy":
        suite_legacy()
    if ARGS.suite in ("roles", "legacy"):
        with open(ARGS.seen, "w") as f:
            json.dump(SEEN, f)
    if ARGS.suite == "audit":
        suite_audit()
    print(f"# {ts.COUNTS['ok']} ok, {ts.COUNTS['FAIL']} failed, {ts.COUNTS['SKIP']} skipped")
    return 1 if ts.COUNTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
