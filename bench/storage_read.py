#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""storage_read.py -- how fast this machine's storage gives back a model
file's bytes in the pieces an expert pager asks for: N reads of B bytes at
random page-aligned offsets of FILE, from storage (the page cache is dropped
first, and each piece is dropped again once read), by J readers at once.

    storage_read.py FILE [--bytes B] [--count N] [--jobs J] [--seed S] [--json]

B defaults to 9633792 (one V2-Lite-shaped Q8_0 routed expert, 9.19 MiB);
N to 64, J to 1 (a paged run has several reads in flight: the compute
threads, the prefetch thread and the kernel's read-ahead, so the device's
rate with J = 4 is the fairer bound). Prints MB/s (10^6 bytes per second) and the median read time; with
--json one object. Dropping the page cache needs root: without it the
figure is marked "cached" and may measure memory, not storage.
"""
import argparse
import json
import os
import random
import statistics
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--bytes", type=int, default=9633792)
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    size = os.path.getsize(a.file)
    if a.bytes <= 0 or a.count <= 0 or a.jobs <= 0 or a.bytes > size:
        print("storage_read.py: --bytes must be in 1..%d, --count and --jobs positive" % size, file=sys.stderr)
        return 2
    dropped = True
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError:
        dropped = False
    fd = os.open(a.file, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    rng = random.Random(a.seed)
    pages = (size - a.bytes) // 4096
    offsets = [rng.randint(0, pages) * 4096 for _ in range(a.count)]
    times = []
    total = [0]
    lock = threading.Lock()

    def reader(k):
        for off in offsets[k::a.jobs]:
            t = time.monotonic()
            got = 0
            while got < a.bytes:
                b = os.pread(fd, min(a.bytes - got, 1 << 24), off + got)
                if not b:
                    break
                got += len(b)
            dt = time.monotonic() - t
            os.posix_fadvise(fd, off, a.bytes, os.POSIX_FADV_DONTNEED)
            with lock:
                times.append(dt)
                total[0] += got

    t0 = time.monotonic()
    threads = [threading.Thread(target=reader, args=(k,)) for k in range(a.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    os.close(fd)
    r = {"file": a.file, "piece_bytes": a.bytes, "count": a.count, "jobs": a.jobs,
         "mb_s": round(total[0] / wall / 1e6, 1),
         "median_ms": round(statistics.median(times) * 1e3, 2), "page_cache_dropped": dropped}
    if a.json:
        print(json.dumps(r))
    else:
        print("storage: %.1f MB/s over %d random reads of %d bytes by %d reader(s) (median %.2f ms each)%s"
              % (r["mb_s"], a.count, a.bytes, a.jobs, r["median_ms"],
                 "" if dropped else " [cached: could not drop the page cache]"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
