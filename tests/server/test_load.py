#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""A load test of ds-server with the official `openai` client.

    python tests/server/test_load.py --port P [--pid PID] [--clients 16] [--requests 200]
        [--warmup 20] [--max-tokens 64] [--mem-bound-mib 8] [--no-mem-check WHY] [--token-file F]

Run with a Python that has `openai` installed (tests/server/run.sh makes a
virtual environment for it) against a server whose queue holds every client
beyond its slots (run.sh: `--queue 64 --queue-timeout 600`). Prints
"ok <id>" / "FAIL <id>: why" / "SKIP <id>: why" lines.

--clients threads, each with its own client (max_retries=0, so a 429 or a
503 is a failure, not a retry), share --requests requests: chat and text
completions, streamed and not, short and longer prompts, small and larger
max_tokens, greedy and seeded sampling, some with ignore_eos. Nothing here is
timed; the only clock is a generous deadline for the whole run.

  load-ref      every kind of request, sent alone while the server is idle:
                the reference answers
  load-warmup   --warmup requests at full concurrency, each of the longest
                prompt with the largest max_tokens and ignore_eos, so every
                context, connection thread and batch buffer the run can use
                has been touched before the first memory reading
  load-1        every request of the run answered 200 with a finish_reason
                (streams: a last chunk with one; usage when asked for), no
                more tokens than max_tokens, exactly that many with ignore_eos
  load-2        every greedy answer equals its kind's reference: the same
                text, finish_reason and completion_tokens. Running beside 15
                other clients (or batched with them) must change nothing.
                Seeded answers are counted against theirs but not failed
                (see the comment in main: prompt reuse moves them)
  load-mem      the server's resident memory (/proc/PID/status VmRSS) after
                the run exceeds the reading after the warm-up by less than
                --mem-bound-mib
  load-metrics  /metrics counted exactly the 200s this test got on the two
                endpoints while it ran, and no request turned away by the queue
"""
import argparse
import http.client
import random
import sys
import threading
import time

import openai

COUNTS = {"ok": 0, "FAIL": 0, "SKIP": 0}

# Prompts of different lengths; the last is the longest (the warm-up's).
PROMPTS = [
    "Name a colour.",
    "The experts of a mixture-of-experts layer are chosen per token by a router.",
    "Write two sentences about the sea, the wind, and a small boat that sails between the "
    "islands every morning.",
    "A server that a team shares must queue requests, decode them together, keep what it "
    "can of each conversation, say who did what, and show how it is doing. Summarise these "
    "duties in a short list, one line each, and then say which of them matters most to a "
    "team of ten people that shares one machine with two cores, and why.",
]


def report(kind, case, why=""):
    COUNTS[kind] += 1
    print(f"{kind} {case}" + (f": {why}" if why else ""), flush=True)


def check(case, cond, why=""):
    report("ok" if cond else "FAIL", case, "" if cond else why)


def kinds(max_tokens):
    """The kinds of request: endpoint x prompt x sampling, max_tokens and
    ignore_eos varied across them. Each is deterministic (temperature 0, or
    a fixed seed), so each has one right answer."""
    mts = sorted({1, max(1, max_tokens // 16), max(1, max_tokens // 4), max_tokens})
    out = []
    for e, endpoint in enumerate(("chat", "completions")):
        for p in range(len(PROMPTS)):
            for s in range(2):
                out.append({
                    "endpoint": endpoint, "prompt": p,
                    "max_tokens": mts[(p + s + e) % len(mts)],
                    "temperature": 0.0 if s == 0 else 0.9,
                    "seed": None if s == 0 else 1000 + 10 * p + e,
                    "ignore_eos": (p + s + e) % 3 == 0,
                })
    return out


def send(client, model, k, stream, include_usage=False):
    """One request of kind k. Returns (text, finish_reason, completion_tokens
    or None); raises on any error or malformed answer."""
    args = {"model": model, "max_tokens": k["max_tokens"], "temperature": k["temperature"]}
    if k["seed"] is not None:
        args["seed"] = k["seed"]
    if k["ignore_eos"]:
        args["extra_body"] = {"ignore_eos": True}
    text = PROMPTS[k["prompt"]]
    chat = k["endpoint"] == "chat"
    if chat:
        args["messages"] = [{"role": "user", "content": text}]
        create = client.chat.completions.create
    else:
        args["prompt"] = text
        create = client.completions.create
    if not stream:
        r = create(**args)
        if len(r.choices) != 1:
            raise ValueError(f"{len(r.choices)} choices")
        c = r.choices[0]
        out = c.message.content if chat else c.text
        if not isinstance(out, str) or c.finish_reason not in ("stop", "length") or r.usage is None:
            raise ValueError(f"malformed answer {r!r}")
        return out, c.finish_reason, r.usage.completion_tokens
    if include_usage:
        args["stream_options"] = {"include_usage": True}
    out, finish, usage, after_finish = "", None, None, 0
    for chunk in create(stream=True, **args):
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if finish is not None:
                after_finish += 1
            out += (c.delta.content or "") if chat else (c.text or "")
            finish = c.finish_reason or finish
    if finish not in ("stop", "length"):
        raise ValueError(f"the stream ended without a finish_reason (got {finish!r})")
    if after_finish:
        raise ValueError(f"{after_finish} choice chunks after the one with the finish_reason")
    if include_usage and usage is None:
        raise ValueError("include_usage asked for, no usage chunk")
    return out, finish, (usage.completion_tokens if usage is not None else None)


def run_pool(clients, model, jobs, deadline):
    """Runs jobs [(index, kind, stream, include_usage)] on the
    clients, one thread each, all at once. Returns {index: result or
    exception}; indices missing when the deadline passed."""
    results = {}
    lock = threading.Lock()
    todo = list(jobs)

    def worker(client):
        while True:
            with lock:
                if not todo:
                    return
                i, k, stream, usage = todo.pop(0)
            try:
                r = send(client, model, k, stream, usage)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                r = e
            with lock:
                results[i] = r

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    with lock:
        return dict(results)


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS in /proc/{pid}/status")


def metric_values(port, token):
    """{"name{labels}": value} from /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    if r.status != 200:
        raise ValueError(f"/metrics answered {r.status}")
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def describe(errors, n=3):
    return "; ".join(errors[:n]) + (f"; and {len(errors) - n} more" if len(errors) > n else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, help="the server's process id, for its resident memory")
    ap.add_argument("--token-file")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=32, help="the largest max_tokens of the mix")
    ap.add_argument("--mem-bound-mib", type=float, default=8.0)
    ap.add_argument("--no-mem-check", metavar="WHY", help="skip load-mem, saying why")
    ap.add_argument("--deadline", type=float, default=1200.0, help="seconds for the whole test")
    a = ap.parse_args()
    deadline = time.monotonic() + a.deadline
    base = f"http://127.0.0.1:{a.port}/v1"
    token = open(a.token_file).read().strip() if a.token_file else None
    clients = [openai.OpenAI(base_url=base, api_key=token or "unused", max_retries=0, timeout=600)
               for _ in range(a.clients)]
    model = list(clients[0].models.list())[0].id
    try:
        m0 = metric_values(a.port, token)   # the counters before: the server may have served others
    except Exception as e:  # noqa: BLE001 - load-metrics reports it
        m0 = e
    ks = kinds(a.max_tokens)
    sent_200 = {"chat": 0, "completions": 0}

    # ---- references: each kind alone, the server otherwise idle ----
    refs, errors = {}, []
    for n, k in enumerate(ks):
        try:
            refs[n] = send(clients[0], model, k, stream=False)
            sent_200[k["endpoint"]] += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors.append(f"kind {n} {k}: {type(e).__name__}: {e}")
    check("load-ref", not errors, f"{len(errors)} of {len(ks)} reference requests failed: {describe(errors)}")
    if errors:
        print(f"# {COUNTS['ok']} ok, {COUNTS['FAIL']} failed, {COUNTS['SKIP']} skipped")
        return 1

    # ---- warm-up: the longest prompt, the largest max_tokens, at full concurrency ----
    longest = len(PROMPTS) - 1
    wk = [{"endpoint": ("chat", "completions")[i % 2], "prompt": longest, "max_tokens": a.max_tokens,
           "temperature": 0.9, "seed": i, "ignore_eos": True} for i in range(a.warmup)]
    res = run_pool(clients, model, [(i, k, i % 4 < 2, False) for i, k in enumerate(wk)], deadline)
    errors = []
    for i, k in enumerate(wk):
        r = res.get(i, TimeoutError("no answer before the deadline"))
        if isinstance(r, Exception):
            errors.append(f"warm-up {i}: {type(r).__name__}: {r}")
        else:
            sent_200[k["endpoint"]] += 1
            if r[1] != "length" or (r[2] is not None and r[2] != a.max_tokens):
                errors.append(f"warm-up {i}: ignore_eos gave finish {r[1]} after {r[2]} tokens, "
                              f"want length after {a.max_tokens}")
    check("load-warmup", not errors, f"{len(errors)} of {a.warmup} failed: {describe(errors)}")

    mem_why = a.no_mem_check
    rss0 = None
    if not mem_why:
        if a.pid is None:
            mem_why = "no --pid"
        else:
            try:
                rss0 = vmrss_kib(a.pid)
            except (OSError, ValueError) as e:
                mem_why = f"cannot read the server's memory: {e}"

    # ---- the run ----
    rng = random.Random(18)
    jobs = []
    for i in range(a.requests):
        n = rng.randrange(len(ks))
        stream = rng.random() < 0.5
        jobs.append((i, n, stream, stream and rng.random() < 0.5))
    res = run_pool(clients, model, [(i, ks[n], s, u) for i, n, s, u in jobs], deadline)
    failures, wrong, n_greedy, drifted, n_seeded = [], [], 0, [], 0
    for i, n, stream, usage in jobs:
        k = ks[n]
        what = f"request {i} ({k['endpoint']}{' stream' if stream else ''}, kind {n})"
        r = res.get(i, TimeoutError("no answer before the deadline"))
        if isinstance(r, Exception):
            failures.append(f"{what}: {type(r).__name__}: {r}")
            continue
        sent_200[k["endpoint"]] += 1
        text, finish, ntok = r
        rtext, rfinish, rntok = refs[n]
        if ntok is not None and ntok > k["max_tokens"] or k["ignore_eos"] and (
                finish != "length" or ntok not in (None, k["max_tokens"])):
            failures.append(f"{what}: finish {finish} after {ntok} tokens of max_tokens {k['max_tokens']}"
                            f"{' with ignore_eos' if k['ignore_eos'] else ''}")
        same = text == rtext and finish == rfinish and (ntok is None or ntok == rntok)
        if k["seed"] is None:
            n_greedy += 1
            if not same:
                wrong.append(f"{what}: {text!r} {finish} {ntok} tokens; alone: {rtext!r} {rfinish} {rntok} tokens")
        else:
            n_seeded += 1
            if not same:
                drifted.append(i)
    check("load-1", not failures, f"{len(failures)} of {a.requests} requests failed: {describe(failures)}")
    check("load-2", not wrong, f"{len(wrong)} of {n_greedy} greedy answers differ from the same request sent "
          f"alone: {describe(wrong, 2)}")
    # Seeded sampling is not compared: a context keeps the prompt prefix it
    # holds and evaluates only the rest, and a prompt evaluated in one batch
    # gives logits a rounding away from the same prompt evaluated token by
    # token, which moves a sample that falls near a boundary of the
    # distribution. Reported, so a change shows.
    print(f"# {len(drifted)} of {n_seeded} seeded answers differ from the same request sent alone", flush=True)

    if mem_why:
        report("SKIP", "load-mem", mem_why)
    else:
        try:
            rss1 = vmrss_kib(a.pid)
            grown = (rss1 - rss0) / 1024.0
            check("load-mem", grown < a.mem_bound_mib,
                  f"resident memory grew {grown:.1f} MiB over {a.requests} requests "
                  f"({rss0 / 1024.0:.1f} -> {rss1 / 1024.0:.1f} MiB), bound {a.mem_bound_mib} MiB")
            print(f"# resident memory {rss0 / 1024.0:.1f} MiB after the warm-up, {rss1 / 1024.0:.1f} MiB "
                  f"after {a.requests} requests", flush=True)
        except (OSError, ValueError) as e:
            check("load-mem", False, f"cannot read the server's memory after the run: {e}")

    try:
        if isinstance(m0, Exception):
            raise m0
        # The server counts a request when it has finished with it, which can
        # be a moment after the client read the last byte: read until the
        # counts are complete, up to a generous limit (they never go down).
        want = {e: float(v) for e, v in sent_200.items()}
        until = time.monotonic() + 60
        while True:
            m = metric_values(a.port, token)
            m = {k: v - m0.get(k, 0) for k, v in m.items()}
            got = {e: m.get(f'ds_server_requests_total{{endpoint="/v1/{p}",code="200"}}', 0)
                   for e, p in (("chat", "chat/completions"), ("completions", "completions"))}
            if got == want or any(got[e] > want[e] for e in want) or time.monotonic() > until:
                break
            time.sleep(0.1)
        rejected = {k: v for k, v in m.items() if k.startswith("ds_server_queue_rejected_total") and v}
        check("load-metrics", got == want and not rejected,
              f"/metrics counted {got} answers 200, this test got {sent_200}; turned away: {rejected}")
    except Exception as e:  # noqa: BLE001 - a failure of this case
        check("load-metrics", False, f"{type(e).__name__}: {e}")

    print(f"# {COUNTS['ok']} ok, {COUNTS['FAIL']} failed, {COUNTS['SKIP']} skipped")
    return 1 if COUNTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
