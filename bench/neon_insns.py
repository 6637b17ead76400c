#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""neon_insns.py — guest instructions the AArch64 kernel sets execute,
counted under qemu-aarch64 (no insn plugin needed): the benchmark
(tests/bench/bench_neon.c, linked -no-pie so its symbols are its addresses)
runs with -d in_asm,exec,nochain, logging filtered (-dfilter) to the code of
kernels/cpu/ops.c, ops_neon.c and dsi_f16_to_f32; the instructions of each
translated block times its executions, once with the work (REPS 1) and once
without (REPS 0), the difference being the kernel's. Prints one line per
op and level: instructions per row and per 32-value block, and the ratio to
the portable set.

    python3 bench/neon_insns.py build-arm64/bench_neon [ROWS] [OPS]   (default 4096, all ops)

Link the benchmark statically (LDFLAGS="-no-pie -static") so that the C
library's lrintf, which the portable quantizer calls per value, is counted.

Needs qemu-aarch64 (-cpu max: NEON, DotProd, I8MM), aarch64-linux-gnu-nm,
the arm64 C library under QEMU_LD_PREFIX (default /usr/aarch64-linux-gnu).
"""
import os
import re
import subprocess
import sys

LEVELS = ["portable", "neon", "dotprod", "i8mm"]
OPS = ["q8f32", "q8q8", "q8q8x4", "q4q8", "gemm8", "quant"]


def kernel_ranges(binary):
    """(start, size) of every function of the kernel files in the binary."""
    root = os.path.dirname(os.path.abspath(binary))
    names = {"dsi_f16_to_f32", "lrintf"}   # lrintf: the portable quantizer's (a static link has it)
    for obj in ("kernels/cpu/ops.o", "kernels/cpu/ops_neon.o"):
        out = subprocess.run(["aarch64-linux-gnu-nm", "--defined-only", os.path.join(root, obj)],
                             capture_output=True, text=True, check=True).stdout
        names.update(l.split()[2] for l in out.splitlines() if len(l.split()) == 3 and l.split()[1] in "tT")
    out = subprocess.run(["aarch64-linux-gnu-nm", "-S", "--defined-only", binary], capture_output=True, text=True,
                         check=True).stdout
    ranges = []
    for l in out.splitlines():
        f = l.split()
        if len(f) == 4 and f[2] in "tTWw" and f[3] in names:
            ranges.append((int(f[0], 16), int(f[1], 16)))
    return ranges


def count(binary, ranges, level, op, rows, reps):
    flt = ",".join("0x%x+0x%x" % r for r in ranges)
    env = dict(os.environ, QEMU_LD_PREFIX=os.environ.get("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu"))
    cmd = ["qemu-aarch64", "-cpu", "max", "-d", "in_asm,exec,nochain", "-dfilter", flt, binary, level, op,
           str(rows), str(reps)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, bufsize=1 << 20)
    sizes, total, cur, n = {}, 0, None, 0
    insn = re.compile(r"^0x([0-9a-f]+):\s")
    for line in p.stderr:
        if line.startswith("Trace "):
            pc = int(line.split("[", 1)[1].split("/")[1], 16)
            total += sizes.get(pc, 0)
        elif line.startswith("IN:"):
            if cur is not None:
                sizes[cur] = n
            cur, n = None, 0
        else:
            m = insn.match(line)
            if m:
                if cur is None:
                    cur = int(m.group(1), 16)
                n += 1
            elif cur is not None and not line.strip():
                sizes[cur] = n
                cur, n = None, 0
    out = p.stdout.read()
    if p.wait() != 0:
        raise SystemExit("%s failed: %s" % (" ".join(cmd[-4:]), out))
    return total, out.strip()


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build-arm64/bench_neon"
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
    ops = sys.argv[3].split(",") if len(sys.argv) > 3 else OPS
    ranges = kernel_ranges(binary)
    print("op      level     insns/row   insns/block  vs portable  checksum")
    for op in ops:
        base = None
        for level in LEVELS:
            w, line = count(binary, ranges, level, op, rows, 1)
            s, _ = count(binary, ranges, level, op, rows, 0)
            d = w - s
            per_row = d / rows
            base = base or d
            ck = line.split("checksum=")[1].split()[0]
            set_name = line.split("set=")[1].split()[0]
            print("%-7s %-13s %10.0f %12.1f %10.2fx  %s" % (op, set_name, per_row, per_row / 64, base / d, ck),
                  flush=True)


if __name__ == "__main__":
    main()
