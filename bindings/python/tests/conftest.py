# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Fixtures of the binding's tests.

The reference is the ds command-line tool (another program over the same C
library: its own argument parsing, tokenization call and output path), found
as $DS or build/ds in the repository; the model is the committed demo model
(models/demo.dsm, sealed with the published demo key models/demo.key).

    make test-python                 (venv in build/, pip install, pytest)
    DS=build/ds python -m pytest bindings/python/tests
"""

import os
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _ds_path():
    return os.path.abspath(os.environ.get("DS") or os.path.join(ROOT, "build", "ds"))


@pytest.fixture(scope="session")
def ds():
    """Runs build/ds: ds(*args, env=None) -> CompletedProcess (stdout as bytes)."""
    path = _ds_path()
    if not os.access(path, os.X_OK):
        pytest.skip("no ds binary at %s (make build/ds, or set DS)" % path)

    def run(*args, env=None, check=True):
        r = subprocess.run([path] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env)
        if check and r.returncode != 0:
            raise AssertionError("ds %s exited %d: %s" % (" ".join(map(str, args)), r.returncode,
                                                          r.stderr.decode("utf-8", "replace")))
        return r
    run.path = path
    return run


@pytest.fixture(scope="session")
def demo():
    """(model path, key file path) of the committed demo model."""
    m = os.path.join(ROOT, "models", "demo.dsm")
    k = os.path.join(ROOT, "models", "demo.key")
    if not (os.path.isfile(m) and os.path.isfile(k)):
        pytest.skip("no models/demo.dsm and models/demo.key")
    return m, k


@pytest.fixture(scope="session")
def demo_hf():
    d = os.path.join(ROOT, "models", "demo-hf")
    if not os.path.isfile(os.path.join(d, "config.json")):
        pytest.skip("no models/demo-hf")
    return d


@pytest.fixture()
def model(demo):
    import deepseek
    m = deepseek.Model(demo[0], key_file=demo[1], threads=1)
    yield m
    m.close()
