#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""cgroup_run.py -- run one command inside a memory cgroup and report what it
cost: the cgroup's peak charge (anonymous memory and the page cache the
command brought in), the process tree's peak RSS, OOM kills, exit status and
wall time, as one JSON object.

    cgroup_run.py [--limit BYTES|none] [--drop-caches] [--name N]
                  [--stdout FILE] [--stderr FILE] [--json FILE] -- CMD ARGS...

--limit     the cap: cgroup v2 memory.max (memory.swap.max 0), or on a v1
            hierarchy memory.limit_in_bytes (and memory.memsw.limit_in_bytes
            equal to it where the kernel has swap accounting); "none" (the
            default) measures without a cap. Suffixes K, M, G (2^10...) work.
--drop-caches  sync and drop the page cache first (echo 3 >
            /proc/sys/vm/drop_caches), so the command starts from storage,
            not from what an earlier run left in memory.
The command's stdout goes to --stdout (default: ours), its stderr to
--stderr (default: ours). The report goes to --json (default: our stdout).

Needs root (or a delegated cgroup) for the cgroup; says so and exits 2
otherwise. Exit status: 0 when the report was written, whatever the
command's status (which the report holds); 2 on a usage or setup error.
A cgroup v2 mount at /sys/fs/cgroup with the memory controller is used
where present, else the v1 memory hierarchy at /sys/fs/cgroup/memory.
"""
import argparse
import json
import os
import subprocess
import sys
import time

V2_ROOT = "/sys/fs/cgroup"
V1_ROOT = "/sys/fs/cgroup/memory"


def die(msg):
    print("cgroup_run.py: " + msg, file=sys.stderr)
    sys.exit(2)


def parse_bytes(s):
    if s == "none":
        return None
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = s.strip().upper().rstrip("B")
    k = 1
    if t and t[-1] in mult:
        k = mult[t[-1]]
        t = t[:-1]
    try:
        v = float(t)
    except ValueError:
        die("--limit takes a byte count (K, M, G suffixes) or none, not %r" % s)
    if v <= 0:
        die("--limit must be positive, not %r" % s)
    return int(v * k)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


class Cgroup:
    """One memory cgroup, v2 or v1."""

    def __init__(self, name, limit):
        ctl = read(os.path.join(V2_ROOT, "cgroup.controllers"), "")
        self.v2 = "memory" in ctl.split()
        root = V2_ROOT if self.v2 else V1_ROOT
        if not os.path.isdir(root):
            die("no memory cgroup hierarchy (neither %s with the memory controller nor %s)" % (V2_ROOT, V1_ROOT))
        self.path = os.path.join(root, name)
        try:
            if os.path.isdir(self.path):
                os.rmdir(self.path)
            os.mkdir(self.path)
        except OSError as e:
            die("cannot create the cgroup %s: %s (root, or a delegated cgroup, is needed)" % (self.path, e))
        self.limit = limit
        try:
            if self.v2:
                if self.v2 and "memory" not in read(os.path.join(V2_ROOT, "cgroup.subtree_control"), ""):
                    write(os.path.join(V2_ROOT, "cgroup.subtree_control"), "+memory")
                write(os.path.join(self.path, "memory.max"), str(limit) if limit else "max")
                if os.path.exists(os.path.join(self.path, "memory.swap.max")):
                    write(os.path.join(self.path, "memory.swap.max"), "0")
            else:
                if limit:
                    write(os.path.join(self.path, "memory.limit_in_bytes"), str(limit))
                    sw = os.path.join(self.path, "memory.memsw.limit_in_bytes")
                    if os.path.exists(sw):
                        write(sw, str(limit))
                write(os.path.join(self.path, "memory.swappiness"), "0")
        except OSError as e:
            self.remove()
            die("cannot set the cgroup's limit: %s" % e)

    def procs_file(self):
        return os.path.join(self.path, "cgroup.procs")

    def peak(self):
        if self.v2:
            v = read(os.path.join(self.path, "memory.peak"))
            return int(v) if v else None
        v = read(os.path.join(self.path, "memory.max_usage_in_bytes"))
        return int(v) if v else None

    def oom_kills(self):
        f = "memory.events" if self.v2 else "memory.oom_control"
        for line in (read(os.path.join(self.path, f), "") or "").splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return None

    def failcnt(self):
        if self.v2:
            for line in (read(os.path.join(self.path, "memory.events"), "") or "").splitlines():
                k, _, v = line.partition(" ")
                if k == "max":
                    return int(v)
            return None
        v = read(os.path.join(self.path, "memory.failcnt"))
        return int(v) if v else None

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", default="none")
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--name", default="ds-bench-%d" % os.getpid())
    ap.add_argument("--stdout")
    ap.add_argument("--stderr")
    ap.add_argument("--json")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        die("no command (cgroup_run.py [options] -- CMD ARGS...)")
    limit = parse_bytes(a.limit)
    if a.drop_caches:
        os.sync()
        try:
            write("/proc/sys/vm/drop_caches", "3")
        except OSError as e:
            die("cannot drop the page cache: %s (root is needed)" % e)
    cg = Cgroup(a.name, limit)
    procs = cg.procs_file()

    def enter():
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    out = open(a.stdout, "wb") if a.stdout else None
    err = open(a.stderr, "wb") if a.stderr else None
    t0 = time.monotonic()
    try:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, preexec_fn=enter)
    except OSError as e:
        cg.remove()
        die("cannot run %s: %s" % (cmd[0], e))
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    rep = {
        "cmd": cmd,
        "cgroup": "v2" if cg.v2 else "v1",
        "limit_bytes": limit,
        "peak_bytes": cg.peak(),
        "max_rss_bytes": ru.ru_maxrss * 1024,
        "oom_kills": cg.oom_kills(),
        "limit_hits": cg.failcnt(),
        "exit_status": os.waitstatus_to_exitcode(status),
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "wall_seconds": round(wall, 3),
        "major_faults": ru.ru_majflt,
    }
    cg.remove()
    text = json.dumps(rep)
    if a.json:
        write(a.json, text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
