# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Errors become exceptions with the library's status and message; secrets stay out of them."""

import os
import pickle
import traceback

import pytest

import deepseek

PASSPHRASE = "correct horse battery staple 7f3a"


def test_wrong_key(demo, tmp_path):
    bad = tmp_path / "other.key"
    bad.write_bytes(bytes(range(32)))
    with pytest.raises(deepseek.WrongKeyError) as e:
        deepseek.Model(demo[0], key_file=bad)
    err = e.value
    assert isinstance(err, deepseek.CryptoError) and isinstance(err, deepseek.Error)
    assert err.status == -200 and err.status_name == "WRONG_KEY"
    assert "wrong key" in err.message and demo[0] in err.message
    assert str(err) == err.message
    # the same through key= (bytes), and the key bytes appear nowhere
    with pytest.raises(deepseek.WrongKeyError) as e:
        deepseek.Model(demo[0], key=bytes(range(32)))
    assert bytes(range(32)).hex() not in "".join(traceback.format_exception(e.type, e.value, e.tb))


def test_missing_files(demo, tmp_path):
    with pytest.raises(deepseek.FileError) as e:
        deepseek.Model(tmp_path / "nope.dsm", key_file=demo[1])
    assert isinstance(e.value, OSError)
    assert e.value.status == -3 and "nope.dsm" in e.value.message
    with pytest.raises(deepseek.FileError) as e:
        deepseek.Model(demo[0], key_file=tmp_path / "nope.key")
    assert "nope.key" in e.value.message
    with pytest.raises(deepseek.FileError):
        deepseek.Model(tmp_path, key_file=demo[1])         # a directory


def test_no_key_and_bad_inputs(demo, tmp_path):
    with pytest.raises(deepseek.KeyRequiredError) as e:
        deepseek.Model(demo[0])
    assert e.value.status == -202
    notdsm = tmp_path / "x.dsm"
    notdsm.write_bytes(b"hello, this is not a container" * 100)
    with pytest.raises(deepseek.FormatError) as e:
        deepseek.Model(notdsm, key_file=demo[1])
    assert -199 <= e.value.status <= -100
    with pytest.raises(deepseek.InvalidArgumentError):
        deepseek.Model(demo[0], key=b"short")
    with pytest.raises(deepseek.InvalidArgumentError):
        deepseek.Model(demo[0], key_file=demo[1], cache_mb=-1)
    with pytest.raises(deepseek.InvalidArgumentError):
        deepseek.Model(demo[0], key_file=demo[1], prefetch="sometimes")
    with pytest.raises(deepseek.InvalidArgumentError):
        deepseek.Model(demo[0], key_file=demo[1], key=bytes(32))


def test_limits_and_sampler_args(model):
    with pytest.raises(deepseek.LimitError) as e:
        model.generate("In the beginning " * 200, max_tokens=4)
    assert e.value.status == -5 and e.value.message
    with pytest.raises(deepseek.InvalidArgumentError) as e:
        model.generate("x", top_p=0)
    assert "top_p" in e.value.message
    with pytest.raises(deepseek.InvalidArgumentError):
        model.logits([model.n_vocab + 3])
    with pytest.raises(deepseek.InvalidArgumentError):
        model.generate("x", max_tokens=-2)
    with pytest.raises(deepseek.InvalidArgumentError):
        model.generate("x", max_tokens=1 << 32)         # would wrap in the C int
    with pytest.raises(deepseek.InvalidArgumentError):
        model.generate("x", top_k=-1)
    with pytest.raises(deepseek.InvalidArgumentError):
        model.generate("x", stop=[b"bytes"])
    # the model still works after each failure
    assert model.generate("In the beginning", max_tokens=4, temperature=0)


def test_close_twice_and_use_after_close(demo):
    m = deepseek.Model(demo[0], key_file=demo[1], threads=1)
    s = m.generate("In the beginning", max_tokens=10, temperature=0, stream=True)
    next(s)
    m.close()
    assert m.closed
    m.close()
    assert list(s) == []
    for call in (lambda: m.generate("x"), lambda: m.tokenize("x"), lambda: m.logits([1]), lambda: m.cache_stats()):
        with pytest.raises(deepseek.MisuseError) as e:
            call()
        assert e.value.status == -400 and "closed" in e.value.message
    with deepseek.Model(demo[0], key_file=demo[1], threads=1) as m2:
        assert not m2.closed
    assert m2.closed


def test_error_pickles():
    e = deepseek.WrongKeyError(-200, "m.dsm: wrong key")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is deepseek.WrongKeyError and e2.status == -200 and e2.message == "m.dsm: wrong key"


@pytest.fixture(scope="module")
def sealed(ds, demo_hf, tmp_path_factory):
    """The demo checkpoint converted under a passphrase, and as a plaintext file."""
    d = tmp_path_factory.mktemp("sealed")
    env = dict(os.environ, DS_TEST_PASS=PASSPHRASE)
    ds("convert", demo_hf, d / "pass.dsm", "--passphrase-env", "DS_TEST_PASS", "--argon-ops", "1",
       "--argon-mem-mb", "8", env=env)
    ds("convert", demo_hf, d / "plain.dsm", "--no-encrypt")
    return d


def test_passphrase(sealed):
    path = sealed / "pass.dsm"
    with deepseek.Model(path, passphrase=PASSPHRASE, threads=1) as m:
        a = m.generate("In the beginning", max_tokens=16, temperature=0)
    buf = bytearray(PASSPHRASE.encode())
    with deepseek.Model(path, passphrase=buf, threads=1) as m:
        assert m.generate("In the beginning", max_tokens=16, temperature=0) == a
    for i in range(len(buf)):       # the caller's bytearray can be wiped afterwards
        buf[i] = 0
    with pytest.raises(deepseek.WrongKeyError) as e:
        deepseek.Model(path, passphrase=PASSPHRASE + "x")
    text = "".join(traceback.format_exception(e.type, e.value, e.tb))
    assert "passphrase" in e.value.message
    assert PASSPHRASE not in text and PASSPHRASE not in repr(e.value.args)
    with pytest.raises(deepseek.InvalidArgumentError):
        deepseek.Model(path, passphrase="")


def test_plaintext(sealed, demo):
    path = sealed / "plain.dsm"
    with deepseek.Model(path, threads=1) as m:
        assert m.generate("In the beginning", max_tokens=4, temperature=0)
    with pytest.raises(deepseek.PlaintextError) as e:
        deepseek.Model(path, key_file=demo[1])
    assert e.value.status == -205
    with deepseek.Model(path, key_file=demo[1], allow_plaintext=True, threads=1):
        pass


def test_tampered_expert(ds, demo, tmp_path):
    """A flipped byte inside a routed expert (located with `ds inspect --json`):
    verify() and generation raise AuthenticationError naming the segment."""
    import json
    info = json.loads(ds("inspect", demo[0], "--key-file", demo[1], "--json").stdout)
    seg = [s for s in info["segments"] if s["kind"] == "expert"][-1]
    data = bytearray(open(demo[0], "rb").read())
    data[seg["file_offset"] + seg["plain_bytes"] // 2] ^= 1
    path = tmp_path / "tampered.dsm"
    path.write_bytes(bytes(data))
    with deepseek.Model(path, key_file=demo[1], load_weights=False) as m:
        assert m.tokenize("In the beginning")          # metadata is intact
        with pytest.raises(deepseek.AuthenticationError) as e:
            m.verify()
        assert e.value.status == -201 and seg["name"] in e.value.message
        with pytest.raises(deepseek.MisuseError):
            m.generate("x")                              # metadata only: no weights
    # without a cache every expert is decrypted at open
    with pytest.raises(deepseek.AuthenticationError):
        deepseek.Model(path, key_file=demo[1])
    with deepseek.Model(demo[0], key_file=demo[1], load_weights=False) as m:
        m.verify()
