# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""The ctypes structures against deepseek.h, as a C compiler lays them out,
and the library loader ($DEEPSEEK_LIBRARY, then the bundled object)."""

import ctypes
import os
import re
import shutil
import subprocess
import sys

import pytest

import deepseek
from deepseek import _lib

from conftest import ROOT


def test_struct_layout(tmp_path):
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc.split()[0]):
        pytest.skip("no C compiler")
    header = os.path.join(ROOT, "deepseek.h")
    if not os.path.isfile(header):
        pytest.skip("no deepseek.h at %s" % header)
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "deepseek.h"', "int main(void) {"]
    want = []
    for s in _lib.STRUCTS:
        lines.append('printf("%%zu\\n", sizeof(%s));' % s.__name__)
        want.append(("sizeof", s.__name__, ctypes.sizeof(s)))
        for name, _ in s._fields_:
            lines.append('printf("%%zu\\n", offsetof(%s, %s));' % (s.__name__, name))
            want.append((s.__name__, name, getattr(s, name).offset))
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    subprocess.run(cc.split() + ["-std=c11", "-I", os.path.dirname(header), str(src), "-o", str(exe)], check=True)
    got = [int(x) for x in subprocess.run([str(exe)], stdout=subprocess.PIPE, check=True).stdout.split()]
    assert len(got) == len(want)
    bad = ["%s.%s: C %d, ctypes %d" % (a, b, g, w) for (a, b, w), g in zip(want, got) if g != w]
    assert not bad, bad


def test_status_codes_match_header():
    header = os.path.join(ROOT, "deepseek.h")
    if not os.path.isfile(header):
        pytest.skip("no deepseek.h at %s" % header)
    with open(header, encoding="utf-8") as f:
        text = f.read()
    header = {m.group(1): int(m.group(2)) for m in re.finditer(r"DS_ERR_([A-Z_]+)\s*=\s*(-\d+)", text)}
    ours = {k: v for k, v in deepseek.STATUS.items() if k != "OK"}
    assert ours == header


def _import_in_subprocess(env_lib):
    env = dict(os.environ)
    env.pop("DEEPSEEK_LIBRARY", None)
    if env_lib is not None:
        env["DEEPSEEK_LIBRARY"] = str(env_lib)
    return subprocess.run([sys.executable, "-c", "import deepseek; print(deepseek.library_path())"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/")


def test_loader_order(tmp_path):
    bundled = _lib._bundled_path()
    if not os.path.isfile(bundled):
        pytest.skip("no bundled library (running against DEEPSEEK_LIBRARY)")
    r = _import_in_subprocess(None)
    assert r.returncode == 0 and r.stdout.decode().strip() == bundled
    copy = tmp_path / "libcopy.so"
    shutil.copy(bundled, copy)
    r = _import_in_subprocess(copy)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == str(copy)
    r = _import_in_subprocess(tmp_path / "missing.so")
    assert r.returncode != 0 and b"DEEPSEEK_LIBRARY" in r.stderr and b"missing.so" in r.stderr
    # a system libdeepseek.so of this tree, where the Makefile built one
    for so in ("libdeepseek.so",):
        p = os.path.join(ROOT, "build", so)
        if os.path.isfile(p):
            r = _import_in_subprocess(p)
            assert r.returncode == 0, r.stderr


def test_version():
    assert deepseek.version() == deepseek.__version__
    assert deepseek.source_id()
