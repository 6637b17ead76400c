#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Throughput of ds-server under concurrent streams, with the official `openai` client.

    python3 bench/server_throughput.py --model M.dsm --key K.key [--server build/ds-server]
        [--parallel 8] [--threads 2] [--ctx N] [--concurrency 1,2,4,8] [--repeats 3] [--max-tokens 64]
        [--endpoint chat|completions] [--json-out F] [--server-arg=--cache-mb=512 ...]
    python3 bench/server_throughput.py --url http://127.0.0.1:8080 [--api-key-file F] ...

Starts ds-server (--port 0, --threads, --parallel contexts: the server's
`--parallel` option when its --help has one, else `--max-concurrent`; a queue
that holds every stream), or measures a running one (--url). For each
concurrency level c it starts c streams at once (a barrier), each its own
client: temperature 0, `ignore_eos`, --max-tokens tokens, the same prompt
behind a prefix of its own (so no stream reuses another's prompt from a
context's cache), `stream_options.include_usage` for the exact token count.
A first round at the highest level, not counted, warms the server up. The
levels are interleaved over the repeats (1,2,4,8, 1,2,4,8, ...), so a slow
spell of a shared machine falls on every level alike.

Per stream: t0 (request sent), first and last (arrival of the first and the
last chunk with text), n (usage.completion_tokens).
  time to first token   first - t0 (includes any wait in the server's queue)
  per-stream tok/s      (n - 1) / (last - first): the decode rate one user sees
Per round of c streams:
  aggregate decode tok/s  sum(n - 1) / (max(last) - min(first)): the tokens
                          made by decode steps (each stream's first comes from
                          its prefill) over the window from the first stream's
                          first token to the last stream's last
  end-to-end tok/s        sum(n) / (max(last) - min(t0)), prefills included
The table gives, per level, the median aggregate over the repeats (and its
range), its ratio to level 1's median, time to first token p50 and p95 over
all c x repeats streams (nearest rank: p95 of 3 samples is the largest), and
the median per-stream rate. The issue's targets: agg(4)/agg(1) >= 2.5 and
agg(8)/agg(1) >= 3.5. The JSON (stdout after the table, and --json-out) has
every stream's numbers.

Needs the `openai` package. Without it in this Python the script runs itself
again under $DS_SERVER_VENV/bin/python or build/srv-venv/bin/python (the
virtual environment tests/server/run.sh makes), creating that with pip when
it does not exist (--no-install: fail instead).
"""
import argparse
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = ("Write a long, careful account of how a small team shares one language model server: "
          "who sends what, how requests wait for their turn, and what the operators watch.")


def ensure_openai(no_install):
    """Returns the openai module, running this script again under the
    virtual environment's Python (made here when missing) when needed."""
    try:
        import openai
        return openai
    except ImportError:
        pass
    venv = os.environ.get("DS_SERVER_VENV") or os.path.join(ROOT, os.environ.get("BUILD", "build"), "srv-venv")
    py = os.path.join(venv, "bin", "python")
    if os.environ.get("DS_BENCH_REEXEC"):
        sys.exit(f"server_throughput: {sys.executable} has no openai package, even in {venv}")

    def has_openai():
        return os.path.exists(py) and subprocess.run([py, "-c", "import openai"],
                                                     stderr=subprocess.DEVNULL).returncode == 0
    if not has_openai():
        if no_install:
            sys.exit(f"server_throughput: no openai package in {sys.executable} or {venv} (--no-install)")
        print(f"# installing the openai client into {venv}", file=sys.stderr, flush=True)
        if (subprocess.run([sys.executable, "-m", "venv", venv]).returncode != 0 or
                subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                "openai"]).returncode != 0 or not has_openai()):
            sys.exit(f"server_throughput: could not install the openai package into {venv} "
                     "(python3-venv, pip and a network are needed; or pip install openai yourself)")
    os.environ["DS_BENCH_REEXEC"] = "1"
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


def levels_arg(s):
    try:
        v = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        v = []
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"want positive integers separated by commas, got {s!r}")
    return v


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="the .dsm container (starts a server)")
    ap.add_argument("--key", help="its key file (--key-file of ds-server)")
    ap.add_argument("--server", default=os.path.join(ROOT, "build", "ds-server"), help="the ds-server binary")
    ap.add_argument("--url", help="measure a running server instead, e.g. http://127.0.0.1:8080")
    ap.add_argument("--api-key-file", help="bearer token file (the server's --api-key-file)")
    ap.add_argument("--parallel", type=int, help="contexts of the server started here (default: the highest level)")
    ap.add_argument("--threads", type=int, default=2, help="--threads of the server started here (default 2)")
    ap.add_argument("--ctx", type=int, help="--ctx of the server started here (default: the server's)")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for the server started here (repeat; use --server-arg=--x=y)")
    ap.add_argument("--server-log", help="its stderr (the audit log) goes here (default: a temporary file)")
    ap.add_argument("--start-timeout", type=float, default=900.0, help="seconds to wait for the server (default 900)")
    ap.add_argument("--concurrency", type=levels_arg, default=[1, 2, 4, 8], help="levels (default 1,2,4,8)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per level (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted rounds at the highest level first (default 1)")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per stream (default 64)")
    ap.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    ap.add_argument("--prompt", default=PROMPT, help="the text every stream sends after its own prefix")
    ap.add_argument("--no-ignore-eos", action="store_true",
                    help="do not send ignore_eos (a stream may then end early; its usage still counts)")
    ap.add_argument("--request-timeout", type=float, default=1800.0)
    ap.add_argument("--json-out", help="also write the JSON here")
    ap.add_argument("--no-install", action="store_true", help="never create a virtual environment for openai")
    a = ap.parse_args()
    if not a.url and not (a.model and a.key):
        ap.error("give --model and --key (a server is started), or --url")
    if a.repeats < 1 or a.max_tokens < 1 or a.warmup < 0:
        ap.error("--repeats and --max-tokens must be at least 1, --warmup at least 0")
    return a


# ---- the server -------------------------------------------------------------------------------

def http_get(url, token=None, timeout=10.0):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class Server:
    """ds-server started here: --port 0, the port read from its log."""

    def __init__(self, a, levels):
        self.a = a
        if not os.access(a.server, os.X_OK):
            sys.exit(f"server_throughput: {a.server} is not an executable (make, or --server)")
        helptext = subprocess.run([a.server, "--help"], capture_output=True, text=True).stdout
        self.slots_opt = "--parallel" if re.search(r"^\s*--parallel\b", helptext, re.M) else "--max-concurrent"
        self.slots = a.parallel or max(levels)
        cmd = [a.server, "--model", a.model, "--key-file", a.key, "--host", "127.0.0.1", "--port", "0",
               "--threads", str(a.threads), self.slots_opt, str(self.slots),
               "--queue", str(max(64, max(levels))), "--queue-timeout", "3600",
               "--max-tokens", str(max(1024, a.max_tokens))]
        if a.ctx:
            cmd += ["--ctx", str(a.ctx)]
        if a.api_key_file:
            cmd += ["--api-key-file", a.api_key_file]
        cmd += a.server_arg
        self.cmd = cmd
        if a.server_log:
            self.log_path = a.server_log
        else:
            fd, self.log_path = tempfile.mkstemp(prefix="ds-server-bench.", suffix=".log")
            os.close(fd)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = None

    def tail(self, n=10):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, token):
        """The port from the `listening on` line, then /health 200 (the
        port may be bound before the model is loaded)."""
        end = time.monotonic() + self.a.start_timeout
        port = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                sys.exit(f"server_throughput: the server exited with status {self.proc.returncode}:\n{self.tail()}")
            if port is None:
                with open(self.log_path) as f:
                    m = re.search(r"listening on http://\S*:(\d+)\s*$", f.read(), re.M)
                if m:
                    port = int(m.group(1))
                    self.url = f"http://127.0.0.1:{port}"
            if port is not None:
                try:
                    if http_get(self.url + "/health", token)[0] == 200:
                        return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"server_throughput: the server was not ready within {self.a.start_timeout:.0f} s:\n{self.tail()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---- the measurement --------------------------------------------------------------------------

def one_stream(openai, client, model, a, tag, barrier, out, idx):
    text = f"[{tag}] {a.prompt}"
    args = {"model": model, "max_tokens": a.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if not a.no_ignore_eos:
        args["extra_body"] = {"ignore_eos": True}
    chat = a.endpoint == "chat"
    if chat:
        args["messages"] = [{"role": "user", "content": text}]
    else:
        args["prompt"] = text
    rec = {"stream": idx}
    try:
        barrier.wait()
        t0 = time.perf_counter()
        times, usage, finish = [], None, None
        create = client.chat.completions.create if chat else client.completions.create
        for chunk in create(**args):
            now = time.perf_counter()
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                piece = (c.delta.content if chat else c.text) or ""
                if piece:
                    times.append(now)
                finish = c.finish_reason or finish
        if not times:
            raise ValueError("the stream had no text")
        n = usage.completion_tokens if usage is not None else len(times)
        rec.update(t0=t0, first=times[0], last=times[-1], tokens=n, chunks=len(times), finish=finish,
                   prompt_tokens=usage.prompt_tokens if usage is not None else None,
                   ttft_s=times[0] - t0,
                   stream_tok_s=(n - 1) / (times[-1] - times[0]) if n > 1 and times[-1] > times[0] else None)
    except threading.BrokenBarrierError:
        rec["error"] = "the barrier broke (another stream failed to start)"
    except Exception as e:  # noqa: BLE001 - a failed stream is reported, not fatal
        rec["error"] = f"{type(e).__name__}: {e}"
        barrier.abort()
    out[idx] = rec


def run_round(openai, base, token, model, a, c, label):
    clients = [openai.OpenAI(base_url=base, api_key=token or "unused", max_retries=0, timeout=a.request_timeout)
               for _ in range(c)]
    barrier = threading.Barrier(c)
    out = [None] * c
    th = [threading.Thread(target=one_stream, args=(openai, clients[i], model, a, f"{label} s{i}", barrier, out, i))
          for i in range(c)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    for cl in clients:
        cl.close()
    good = [r for r in out if "error" not in r]
    rnd = {"concurrency": c, "label": label, "streams": out, "errors": [r["error"] for r in out if "error" in r]}
    if len(good) == c:
        first = min(r["first"] for r in good)
        last = max(r["last"] for r in good)
        t0 = min(r["t0"] for r in good)
        decoded = sum(r["tokens"] - 1 for r in good)
        rnd["agg_decode_tok_s"] = decoded / (last - first) if last > first else None
        rnd["e2e_tok_s"] = sum(r["tokens"] for r in good) / (last - t0)
        rnd["wall_s"] = last - t0
        for r in good:   # times in the JSON: seconds from the round's first request
            r["t0"], r["first"], r["last"] = r["t0"] - t0, r["first"] - t0, r["last"] - t0
    return rnd


def nearest_rank(xs, p):
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100.0 * len(xs)) - 1)] if xs else None


def summarise(rounds, levels):
    rows = []
    for c in levels:
        rs = [r for r in rounds if r["concurrency"] == c and r.get("agg_decode_tok_s")]
        streams = [s for r in rs for s in r["streams"]]
        aggs = [r["agg_decode_tok_s"] for r in rs]
        per = [s["stream_tok_s"] for s in streams if s.get("stream_tok_s")]
        ttft = [s["ttft_s"] for s in streams]
        rows.append({
            "concurrency": c, "rounds": len(rs),
            "agg_decode_tok_s": statistics.median(aggs) if aggs else None,
            "agg_decode_tok_s_min": min(aggs) if aggs else None,
            "agg_decode_tok_s_max": max(aggs) if aggs else None,
            "e2e_tok_s": statistics.median([r["e2e_tok_s"] for r in rs]) if rs else None,
            "ttft_p50_ms": 1000 * nearest_rank(ttft, 50) if ttft else None,
            "ttft_p95_ms": 1000 * nearest_rank(ttft, 95) if ttft else None,
            "stream_tok_s": statistics.median(per) if per else None,
            "tokens_per_stream": statistics.median([s["tokens"] for s in streams]) if streams else None,
        })
    base = next((r["agg_decode_tok_s"] for r in rows if r["concurrency"] == 1), None)
    for r in rows:
        r["ratio_to_1"] = r["agg_decode_tok_s"] / base if base and r["agg_decode_tok_s"] else None
    return rows


def fmt(v, spec=".1f"):
    return "–" if v is None else format(v, spec)


def table(rows):
    out = ["| streams | aggregate decode tok/s (median, range) | × one stream | TTFT p50 ms | TTFT p95 ms "
           "| per-stream tok/s | end-to-end tok/s |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['concurrency']} | {fmt(r['agg_decode_tok_s'])} ({fmt(r['agg_decode_tok_s_min'])}–"
                   f"{fmt(r['agg_decode_tok_s_max'])}) | {fmt(r['ratio_to_1'], '.2f')} | {fmt(r['ttft_p50_ms'], '.0f')} "
                   f"| {fmt(r['ttft_p95_ms'], '.0f')} | {fmt(r['stream_tok_s'])} | {fmt(r['e2e_tok_s'])} |")
    return "\n".join(out)


def environment(a, server, token, base_url):
    env = {"argv": sys.argv, "python": sys.version.split()[0], "machine": platform.machine(),
           "cpus_online": os.cpu_count(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            env["cpu"] = m.group(1) if m else None
    except OSError:
        pass
    try:
        env["git"] = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                                    text=True).stdout.strip() or None
    except OSError:
        pass
    if server:
        env["server_cmd"] = [x if x != a.key else "<key file>" for x in server.cmd]
        env["server_version"] = subprocess.run([a.server, "--version"], capture_output=True,
                                               text=True).stdout.strip()
        env["slots_option"] = server.slots_opt
        env["slots"] = server.slots
        env["model_bytes"] = os.path.getsize(a.model) if os.path.exists(a.model) else None
    try:
        st, body = http_get(base_url + "/health", token)
        env["health"] = json.loads(body)
    except (urllib.error.URLError, OSError, ValueError):
        pass
    return env


def main():
    a = parse_args()
    openai = ensure_openai(a.no_install)
    # SIGTERM (timeout(1), a batch system) ends the run like ^C: through the
    # finally below, which stops the server this script started
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    levels = a.concurrency
    token = open(a.api_key_file).read().strip() if a.api_key_file else None
    server = None
    if a.url:
        base_url = a.url.rstrip("/")
    else:
        server = Server(a, levels)
        print(f"# starting {' '.join(x if x != a.key else '<key file>' for x in server.cmd)}", file=sys.stderr,
              flush=True)
        server.wait_ready(token)
        base_url = server.url
    status = 0
    try:
        probe = openai.OpenAI(base_url=base_url + "/v1", api_key=token or "unused", max_retries=0, timeout=60)
        model = list(probe.models.list())[0].id
        probe.close()
        env = environment(a, server, token, base_url)
        top = max(levels)
        for w in range(a.warmup):
            r = run_round(openai, base_url + "/v1", token, model, a, top, f"warm-up {w}")
            print(f"# warm-up round at {top} streams: {fmt(r.get('agg_decode_tok_s'))} tok/s"
                  + (f", errors: {r['errors'][:2]}" if r["errors"] else ""), file=sys.stderr, flush=True)
        rounds = []
        for rep in range(a.repeats):
            for c in levels:
                r = run_round(openai, base_url + "/v1", token, model, a, c, f"r{rep} c{c}")
                rounds.append(r)
                print(f"# repeat {rep + 1}/{a.repeats}, {c} streams: aggregate {fmt(r.get('agg_decode_tok_s'))} "
                      f"tok/s" + (f", {len(r['errors'])} failed: {r['errors'][:2]}" if r["errors"] else ""),
                      file=sys.stderr, flush=True)
        rows = summarise(rounds, levels)
        errors = sum(len(r["errors"]) for r in rounds)
        print(f"ds-server throughput: {a.endpoint}, {a.max_tokens} tokens a stream"
              f"{'' if a.no_ignore_eos else ' (ignore_eos)'}, temperature 0, {a.repeats} repeats"
              + (f", --threads {a.threads}, {server.slots_opt} {server.slots}" if server else f", {base_url}"))
        print()
        print(table(rows))
        print()
        ratios = {}
        for c, target in ((2, None), (4, 2.5), (8, 3.5)):
            r = next((x for x in rows if x["concurrency"] == c), None)
            if r and r["ratio_to_1"] is not None:
                ratios[c] = r["ratio_to_1"]
                verdict = "" if target is None else (f" (target >= {target}: "
                                                     f"{'met' if r['ratio_to_1'] >= target else 'NOT met'})")
                print(f"agg({c})/agg(1) = {r['ratio_to_1']:.2f}{verdict}")
        if errors:
            print(f"\n{errors} streams failed; their rounds are left out of the table")
            status = 1
        result = {"environment": env, "settings": {k: v for k, v in vars(a).items() if k not in ("key",)},
                  "summary": rows, "ratios_to_1": ratios, "rounds": rounds, "failed_streams": errors}
        text = json.dumps(result, indent=1)
        print()
        print(text)
        if a.json_out:
            with open(a.json_out, "w") as f:
                f.write(text + "\n")
    finally:
        if server:
            server.stop()
            if status and not a.server_log:
                print(f"# the server's log: {server.log_path}", file=sys.stderr)
            elif not a.server_log:
                os.unlink(server.log_path)
    return status


if __name__ == "__main__":
    sys.exit(main())
