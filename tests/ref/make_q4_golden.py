#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""make_q4_golden.py -- the Q4_0 quantization rule of deepseek.h written
independently in numpy, and the golden file test_quant checks the C quantizer
against, byte for byte.

    make_q4_golden.py OUT.bin          (tests/ref/goldens/q4_0.bin)

The rule (deepseek_impl/format.h, dsi_quantize_row_q4_0): per block of 32
float32 values, m = the value of largest magnitude (the first on a tie);
want = |m| / 8 in float32; d16 = want as the nearest F16 (ties to even),
raised to the next F16 when below want, clamped to the largest finite F16;
negative when m > 0 (so m becomes -8); d = float(d16); q = rint(x * (1/d))
(float32 product, ties to even) after clamping x/d to [-8, 7]; stored as
q + 8 in nibbles: value j < 16 in the low nibble of byte j, value j + 16 in
its high nibble (llama.cpp's block_q4_0). An all-zero block stores d = +0
and nibbles 8.

File layout (little-endian): b"DSQ4", u32 rows, u32 cols, rows*cols float32
inputs, then rows * (cols/32) blocks of 18 bytes (F16 d, 16 bytes).

When the gguf package is importable (pip install gguf), the blocks are also
dequantized with gguf.quants (llama.cpp's reading of Q4_0) and compared with
q * d computed here: the layout check against an independent reader.
"""
import struct
import sys

import numpy as np


def f16_up(want):
    """The F16 bits of the smallest half >= want (want >= 0, float32)."""
    h = np.float32(want).astype(np.float16)
    bits = int(h.view(np.uint16))
    if bits & 0x7C00 == 0x7C00:
        return 0x7BFF
    if np.float32(h) < np.float32(want):
        bits += 1
    return bits


def quantize_q4_0(row):
    row = np.asarray(row, dtype=np.float32)
    out = bytearray()
    vals = []
    for b in range(len(row) // 32):
        x = row[32 * b:32 * b + 32]
        ax = np.abs(x)
        i = int(np.argmax(ax))          # the first index of the maximum
        amax = ax[i]
        m = x[i]
        if amax == 0:
            out += struct.pack("<H", 0) + bytes([0x88] * 16)
            vals.append(np.zeros(32, np.float32))
            continue
        bits = f16_up(np.float32(amax) / np.float32(8.0))
        if m > 0:
            bits |= 0x8000
        d = np.float32(np.uint16(bits).view(np.float16))
        inv = np.float32(1.0) / d
        v = np.clip(x * inv, np.float32(-8.0), np.float32(7.0))
        q = np.rint(v).astype(np.int32)
        n = (q + 8).astype(np.uint8)
        out += struct.pack("<H", bits) + bytes((n[:16] | (n[16:] << 4)).tolist())
        vals.append(q.astype(np.float32) * d)
    return bytes(out), np.concatenate(vals) if vals else np.zeros(0, np.float32)


def cases(rng):
    rows = []
    C = 256
    for k in range(48):
        mag = np.float32(2.0 ** rng.integers(-20, 12))
        rows.append((rng.uniform(-1, 1, C) * mag).astype(np.float32))
    # edge cases, a block each
    e = np.zeros(C, np.float32)
    e[0:32] = 0                                             # all zero
    e[32:64] = np.float32(1.0)                              # all equal, positive
    e[64:96] = np.float32(-3.0)                             # all equal, negative
    e[96:128] = np.linspace(-8, 8, 32, dtype=np.float32)    # -max and +max: a tie, first wins
    e[128:160] = np.arange(-16, 16, dtype=np.float32) * 0.5 # exact half steps (ties to even)
    e[160:192] = np.float32(70000.0) * np.sign(rng.uniform(-1, 1, 32)).astype(np.float32)  # F16 overflow
    e[192:224] = rng.uniform(-1, 1, 32).astype(np.float32) * np.float32(1e-7)  # subnormal scales
    e[224:256] = np.float32(0)
    e[230] = np.float32(-5.0)                               # one outlier in zeros
    rows.append(e)
    t = np.zeros(C, np.float32)
    for b in range(C // 32):                                # values at k + 0.5 scales
        t[32 * b:32 * b + 32] = (np.arange(32) % 16 - 8 + 0.5).astype(np.float32) * np.float32(0.25 * (b + 1))
        t[32 * b] = np.float32(-8 * 0.25 * (b + 1))
    rows.append(t)
    return np.stack(rows)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rng = np.random.default_rng(4040)
    x = cases(rng)
    rows, cols = x.shape
    blob = bytearray(b"DSQ4" + struct.pack("<II", rows, cols))
    blob += x.astype("<f4").tobytes()
    deq = []
    for r in range(rows):
        q, v = quantize_q4_0(x[r])
        blob += q
        deq.append(v)
    try:
        import gguf
        import gguf.quants as gq
        raw = np.frombuffer(bytes(blob[12 + rows * cols * 4:]), dtype=np.uint8).reshape(rows, cols // 32 * 18)
        theirs = gq.dequantize(raw, gguf.GGMLQuantizationType.Q4_0).reshape(rows, cols)
        if not np.array_equal(theirs.astype(np.float32), np.stack(deq)):
            sys.exit("gguf reads these blocks differently")
        print("gguf.quants agrees on the layout")
    except ImportError:
        print("gguf not installed: layout check against gguf.quants skipped")
    with open(sys.argv[1], "wb") as f:
        f.write(blob)
    print(f"wrote {rows} x {cols} values and their Q4_0 blocks to {sys.argv[1]}")


if __name__ == "__main__":
    main()
