# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""An in-tree PEP 517 build backend for the deepseek Python package.

Why not setuptools: the package is pure Python plus one shared object
compiled from the amalgamation (dist/deepseek.c), which needs a C compiler and
libsodium, nothing from Python. A backend with no requirements lets
`pip install ./bindings/python` work offline and in pip's isolated build
environment (which would otherwise download setuptools), on any Python 3.8+.

What it does: compiles deepseek.c into deepseek/_libdeepseek.so with the
flags the amalgamation needs (deepseek.h: cc -std=c11 ... -lsodium -lm
-lpthread; -ldl for the run-time CUDA backend), and zips it with the Python
files into a wheel. The C sources are found in csrc/ beside pyproject.toml (an
sdist carries them there) or in the repository two levels up.

Environment: CC (default cc), CFLAGS and LDFLAGS (appended; e.g.
CFLAGS=-DDS_USE_OPENBLAS=1 LDFLAGS=-lopenblas).
"""

import base64
import hashlib
import io
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # bindings/python
DIST_NAME = "deepseek_h"             # the distribution (pip name deepseek-h); imported as deepseek
PACKAGE = "deepseek"
LIB_NAME = "_libdeepseek.so"
SUMMARY = "Python binding of deepseek.h, a C runtime for sealed DeepSeek-family MoE models"


# ==== the C sources and the version ========================================

def _sources():
    """(deepseek.h, deepseek.c, LICENSE or None): from csrc/ (an sdist) or the repository."""
    for inc, src, lic in (
        (os.path.join(HERE, "csrc", "deepseek.h"), os.path.join(HERE, "csrc", "deepseek.c"),
         os.path.join(HERE, "csrc", "LICENSE")),
        (os.path.join(HERE, "..", "..", "deepseek.h"), os.path.join(HERE, "..", "..", "dist", "deepseek.c"),
         os.path.join(HERE, "..", "..", "LICENSE")),
    ):
        if os.path.isfile(inc) and os.path.isfile(src):
            return os.path.normpath(inc), os.path.normpath(src), (os.path.normpath(lic) if os.path.isfile(lic) else None)
    raise RuntimeError(
        "deepseek: cannot find deepseek.h and dist/deepseek.c: build from the repository "
        "(pip install ./bindings/python, pip 21.3 or later builds in place) or from an sdist "
        "that carries them in csrc/")


def _version(header):
    """The library's version, read from deepseek.h (its one source)."""
    with open(header, encoding="utf-8") as f:
        text = f.read()
    parts = [re.search(r"#\s*define\s+DS_VERSION_%s\s+(\d+)" % w, text) for w in ("MAJOR", "MINOR", "PATCH")]
    if all(parts):
        return ".".join(p.group(1) for p in parts)
    m = re.search(r'#\s*define\s+DS_VERSION_STRING\s+"([0-9][0-9A-Za-z.+-]*)"', text)
    if m:
        return m.group(1)
    raise RuntimeError("deepseek: no DS_VERSION_MAJOR/MINOR/PATCH or DS_VERSION_STRING in %s" % header)


def _compile(out_path):
    """Compiles the amalgamation into out_path; returns the version."""
    header, source, _ = _sources()
    version = _version(header)
    cc = shlex.split(os.environ.get("CC", "cc"))
    cmd = (cc + ["-std=c11", "-O2", "-g", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden",
                 "-I", os.path.dirname(header)]
           + shlex.split(os.environ.get("CFLAGS", ""))
           + [source, "-o", out_path, "-lsodium", "-lm", "-lpthread", "-ldl"]
           + shlex.split(os.environ.get("LDFLAGS", "")))
    print("deepseek: " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        raise RuntimeError("deepseek: cannot run the C compiler %r (%s): install one (Debian: "
                           "apt install build-essential libsodium-dev) or set CC" % (cc[0], e))
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode("utf-8", "replace"))
        raise RuntimeError("deepseek: compiling %s failed (exit %d; output above). It needs libsodium's "
                           "headers and library (Debian: apt install libsodium-dev)" % (source, r.returncode))
    return version


# ==== wheel writing =========================================================

def _tag():
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "py3-none-" + plat


def _metadata(version):
    readme_path = os.path.join(HERE, "README.md")
    readme = ""
    if os.path.isfile(readme_path):
        with open(readme_path, encoding="utf-8") as f:
            readme = f.read()
    return ("Metadata-Version: 2.1\n"
            "Name: deepseek-h\n"
            "Version: %s\n"
            "Summary: %s\n"
            "License: MIT\n"
            "Requires-Python: >=3.8\n"
            "Classifier: Programming Language :: Python :: 3\n"
            "Classifier: Programming Language :: C\n"
            "Classifier: Operating System :: POSIX :: Linux\n"
            "Description-Content-Type: text/markdown\n"
            "\n%s" % (version, SUMMARY, readme))


class _Wheel:
    """A wheel being written: files in, then dist-info and RECORD."""

    def __init__(self, directory, version):
        self.version = version
        self.name = "%s-%s-%s.whl" % (DIST_NAME, version, _tag())
        self.path = os.path.join(directory, self.name)
        self.zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED)
        self.records = []
        self.dist_info = "%s-%s.dist-info" % (DIST_NAME, version)

    def add_bytes(self, arcname, data, mode=0o644):
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.records.append("%s,sha256=%s,%d" % (arcname, digest, len(data)))

    def add_file(self, arcname, path, mode=0o644):
        with open(path, "rb") as f:
            self.add_bytes(arcname, f.read(), mode)

    def finish(self, license_path):
        di = self.dist_info
        self.add_bytes(di + "/METADATA", _metadata(self.version).encode("utf-8"))
        self.add_bytes(di + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: deepseek-h (in-tree)\n"
                                       "Root-Is-Purelib: false\nTag: %s\n" % _tag()).encode())
        self.add_bytes(di + "/top_level.txt", (PACKAGE + "\n").encode())
        if license_path:
            self.add_file(di + "/LICENSE", license_path)
        self.records.append(di + "/RECORD,,")
        info = zipfile.ZipInfo(di + "/RECORD", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        self.zip.writestr(info, "\n".join(self.records) + "\n")
        self.zip.close()
        return self.name


def _build_info(version):
    return ('"""Written by the build (bindings/python/_build_backend)."""\n'
            'VERSION = %r\n' % version).encode()


def _package_files():
    pkg = os.path.join(HERE, PACKAGE)
    for name in sorted(os.listdir(pkg)):
        if name.endswith(".py") and name != "_build_info.py":
            yield name, os.path.join(pkg, name)


# ==== PEP 517 / PEP 660 hooks ==============================================

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with tempfile.TemporaryDirectory() as tmp:
        lib = os.path.join(tmp, LIB_NAME)
        version = _compile(lib)
        w = _Wheel(wheel_directory, version)
        for name, path in _package_files():
            w.add_file(PACKAGE + "/" + name, path)
        w.add_bytes(PACKAGE + "/_build_info.py", _build_info(version))
        w.add_file(PACKAGE + "/" + LIB_NAME, lib, 0o755)
        return w.finish(_sources()[2])


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """The library and _build_info.py are built into the source tree
    (bindings/python/deepseek/, ignored by git); a .pth puts the tree on the path."""
    pkg = os.path.join(HERE, PACKAGE)
    version = _compile(os.path.join(pkg, LIB_NAME))
    with open(os.path.join(pkg, "_build_info.py"), "wb") as f:
        f.write(_build_info(version))
    w = _Wheel(wheel_directory, version)
    w.add_bytes("deepseek_h_editable.pth", (HERE + "\n").encode())
    return w.finish(_sources()[2])


def build_sdist(sdist_directory, config_settings=None):
    header, source, lic = _sources()
    version = _version(header)
    base = "%s-%s" % (DIST_NAME, version)
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        def add(arc, path):
            info = tar.gettarinfo(path, base + "/" + arc)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
        for rel in ("pyproject.toml", "README.md", "_build_backend/backend.py"):
            add(rel, os.path.join(HERE, rel))
        for fname, path in _package_files():
            add(PACKAGE + "/" + fname, path)
        add("csrc/deepseek.h", header)
        add("csrc/deepseek.c", source)
        if lic:
            add("csrc/LICENSE", lic)
        meta = _metadata(version).encode("utf-8")
        info = tarfile.TarInfo(base + "/PKG-INFO")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return name
