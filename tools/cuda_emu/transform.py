#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""transform.py SRC_DIR DST_DIR — rewrites the CUDA sources of SRC_DIR
(*.cu, *.cuh) into C++ for the CPU emulation (emu.h) in DST_DIR:

  - the toolkit's headers become emu.h; "../../deepseek.h" becomes
    "deepseek.h" (found through -I on the repository root);
  - `extern __shared__ float sm[];` becomes a pointer to the launch's
    dynamic shared memory;
  - every launch `kernel<<<grid, block[, smem[, stream]]>>>(args)` becomes
    `emu_launch_k(grid, block, smem, stream, kernel, args)`, which
    evaluates the arguments once, on the host, as CUDA does.

A file is only rewritten when its text changes, so make rebuilds only what
a change touched; files whose source is gone are removed. Anything the
emulation does not know stops the script.
"""
import glob
import os
import re
import sys


def split_top(text, sep=','):
    """Splits text at top-level separators (outside (), [], {}, <> of a template)."""
    parts, depth, cur = [], 0, ''
    for ch in text:
        if ch in '([{':
            depth += 1
        elif ch in ')]}':
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur.strip())
            cur = ''
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def rewrite_launches(s, path):
    out, i = [], 0
    while True:
        j = s.find('<<<', i)
        if j < 0:
            out.append(s[i:])
            break
        # the callee: an identifier, possibly with template arguments <...>
        k = j
        if s[k - 1] == '>':
            depth = 0
            while True:
                k -= 1
                if s[k] == '>':
                    depth += 1
                elif s[k] == '<':
                    depth -= 1
                    if depth == 0:
                        break
        while s[k - 1].isalnum() or s[k - 1] == '_':
            k -= 1
        callee = s[k:j]
        if not re.match(r'^[A-Za-z_]\w*(<.*>)?$', callee, re.S):
            sys.exit('%s: cannot read the kernel of the launch at offset %d' % (path, j))
        e = s.find('>>>', j)
        cfg = split_top(s[j + 3:e])
        if not 2 <= len(cfg) <= 4:
            sys.exit('%s: launch of %s has %d configuration values' % (path, callee, len(cfg)))
        while len(cfg) < 4:
            cfg.append('0')
        p = e + 3
        while s[p].isspace():
            p += 1
        if s[p] != '(':
            sys.exit('%s: launch of %s has no argument list' % (path, callee))
        depth, q = 0, p
        while True:
            if s[q] == '(':
                depth += 1
            elif s[q] == ')':
                depth -= 1
                if depth == 0:
                    break
            q += 1
        args = s[p + 1:q].strip()
        out.append(s[i:k])
        out.append('emu_launch_k(%s, %s, %s, %s, %s%s)' %
                   (cfg[0], cfg[1], cfg[2], cfg[3], callee, (', ' + args) if args else ''))
        i = q + 1
    return ''.join(out)


def transform(text, path):
    s = text
    s = s.replace('#include <cuda_fp16.h>', '#include "emu.h"')
    s = s.replace('#include <cuda_runtime.h>', '').replace('#include <cublas_v2.h>', '')
    s = s.replace('#include "../../deepseek.h"', '#include "deepseek.h"')
    s = re.sub(r'extern __shared__ (\w+) (\w+)\[\];', r'\1 *\2 = (\1 *)emu_dyn_smem();', s)
    left = re.findall(r'#include <(cuda\w*|cublas\w*|cub/\w+|mma)\.h?>', s)
    if left:
        sys.exit('%s: the emulation has no %s' % (path, ', '.join(left)))
    return rewrite_launches(s, path)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    files = sorted(glob.glob(os.path.join(src, '*.cu')) + glob.glob(os.path.join(src, '*.cuh')))
    if not files:
        sys.exit('%s: no .cu or .cuh files' % src)
    # files of an earlier run whose source is gone (another KERNELS) go too
    names = {os.path.basename(p) for p in files}
    for old in glob.glob(os.path.join(dst, '*.cu')) + glob.glob(os.path.join(dst, '*.cuh')):
        if os.path.basename(old) not in names:
            os.remove(old)
    for path in files:
        with open(path) as f:
            text = transform(f.read(), path)
        target = os.path.join(dst, os.path.basename(path))
        if os.path.exists(target):
            with open(target) as f:
                if f.read() == text:
                    continue
        with open(target, 'w') as f:
            f.write(text)


if __name__ == '__main__':
    main()
