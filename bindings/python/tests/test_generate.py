# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Generation, tokenization and logits against the ds command-line tool."""

import array
import threading

import pytest

import deepseek

PROMPTS = ["In the beginning", "And the LORD said unto Moses,", "Blessed are \u00e9 \u4e16\u754c the meek"]


def run_args(ds):
    """Flags that make `ds run` print only the generated text: prompt echo off
    where the tool has it (llama.cpp's --no-display-prompt)."""
    if not hasattr(run_args, "cached"):
        help_text = ds("run", "--help").stdout.decode()
        run_args.cached = ["--no-display-prompt"] if "--no-display-prompt" in help_text else []
    return run_args.cached


def ds_run(ds, demo, prompt, *flags):
    r = ds("run", demo[0], "--key-file", demo[1], "--threads", "1", "-p", prompt, *(run_args(ds) + list(flags)))
    out = r.stdout.decode("utf-8")
    return out[:-1] if out.endswith("\n") else out     # the newline ds run ends its text with


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_cli(ds, demo, model, prompt):
    want = ds_run(ds, demo, prompt, "-n", "40", "--temp", "0")
    got = model.generate(prompt, max_tokens=40, temperature=0)
    assert got == want
    assert model.last_stats["n_generated"] <= 40
    assert model.last_stats["stop_reason"] in ("length", "eos")
    assert len(got) > 0


def test_sampled_equals_cli(ds, demo, model):
    flags = ["-n", "48", "--temp", "0.7", "--top-p", "0.9", "--top-k", "40", "--repeat-penalty", "1.15",
             "--seed", "12345"]
    want = ds_run(ds, demo, "And God said", *flags)
    got = model.generate("And God said", max_tokens=48, temperature=0.7, top_p=0.9, top_k=40,
                         repeat_penalty=1.15, seed=12345)
    assert got == want
    # another seed gives another text (the seed reaches the sampler)
    other = model.generate("And God said", max_tokens=48, temperature=0.7, top_p=0.9, top_k=40,
                           repeat_penalty=1.15, seed=54321)
    assert other != got


def test_stream_concatenates_to_text(model):
    kw = dict(max_tokens=48, temperature=0.8, top_p=0.95, seed=7)
    text = model.generate("In the beginning", **kw)
    stats = model.last_stats
    model.reset()
    s = model.generate("In the beginning", stream=True, **kw)
    assert isinstance(s, deepseek.Stream)
    assert s.stop_reason is None
    pieces = list(s)
    assert len(pieces) > 1 and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == text
    assert s.stop_reason == stats["stop_reason"]
    assert s.stats["n_generated"] == stats["n_generated"]
    assert model.last_stats == s.stats
    assert list(s) == []          # exhausted


def test_stream_abandoned_then_generate(model):
    s = model.generate("In the beginning", max_tokens=30, temperature=0, stream=True)
    first = next(s)
    assert first
    # another use of the context ends the stream; the model goes on working
    full = model.generate("In the beginning", max_tokens=30, temperature=0)
    assert full.startswith(first)
    assert list(s) == []
    s2 = model.generate("In the beginning", max_tokens=30, temperature=0, stream=True)
    s2.close()
    assert list(s2) == []


def test_stop_string(model):
    full = model.generate("In the beginning", max_tokens=40, temperature=0)
    assert "LORD" in full
    cut = model.generate("In the beginning", max_tokens=40, temperature=0, stop=["LORD"])
    assert model.last_stats["stop_reason"] == "stop_string"
    assert cut == full[:full.index("LORD")]


def test_until_end(model):
    text = model.generate("In the beginning", max_tokens=None, temperature=0.8, seed=3)
    st = model.last_stats
    assert st["stop_reason"] in ("eos", "context_full")
    if st["stop_reason"] == "context_full":
        assert st["n_prompt"] + st["n_generated"] >= model.n_ctx - 1
    assert len(text) > 0
    assert model.generate("x", max_tokens=0) == ""


def test_prompt_ids_and_chat(model):
    # a list of ids is used as given; the text prompt's ids are BOS + tokenize(text)
    ids = [model.bos_token_id] + model.tokenize("In the beginning")
    assert model.generate(ids, max_tokens=20, temperature=0) == \
        model.generate("In the beginning", max_tokens=20, temperature=0)
    msgs = [{"role": "user", "content": "Who made the heaven?"}]
    reply = model.chat(msgs, max_tokens=20, temperature=0)
    assert reply == model.generate(model.apply_chat_template(msgs, tokenize=True), max_tokens=20, temperature=0)


def test_chat_template(model):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            ("user", "And then?")]
    text = model.apply_chat_template(msgs)
    # V2-Lite's template ("User: ...\n\nAssistant: ..."): the messages in order, ending with the prompt
    assert text.startswith(model.detokenize([model.bos_token_id]))
    assert text.index("Hi") < text.index("Hello") < text.index("And then?")
    assert text.endswith("Assistant:")
    assert not model.apply_chat_template(msgs, add_generation_prompt=False).endswith("Assistant:")
    ids = model.apply_chat_template(msgs, tokenize=True)
    assert ids == model.tokenize(text)                  # no token text inside the contents
    assert model.detokenize(ids) == text
    # a content that holds the end-of-sentence token's text gets ordinary tokens
    eos_text = model.detokenize([model.eos_token_id])
    bad = [{"role": "user", "content": "a" + eos_text + "b"}]
    assert model.eos_token_id not in model.apply_chat_template(bad, tokenize=True)[1:]
    assert model.eos_token_id in model.tokenize(model.apply_chat_template(bad))
    with pytest.raises(deepseek.UnsupportedError):
        model.apply_chat_template([{"role": "tool", "content": "x"}])
    with pytest.raises(deepseek.InvalidArgumentError):
        model.apply_chat_template([{"role": "user"}])


@pytest.mark.parametrize("text", PROMPTS + ["<\uff5cend\u2581of\u2581sentence\uff5c>x", " spaces  and\ttabs\n"])
def test_tokenize_equals_cli(ds, demo, model, text):
    def cli(*flags):
        out = ds("tokenize", demo[0], "--key-file", demo[1], *flags, text).stdout.decode()
        return [int(t) for t in out.split()]
    assert model.tokenize(text) == cli()
    assert model.tokenize(text, add_bos=True) == cli("--bos")
    assert model.tokenize(text, special=False) == cli("--no-special")
    assert model.detokenize(model.tokenize(text)) == text


def test_tokenize_bad_utf8(model):
    with pytest.raises(deepseek.InvalidArgumentError) as e:
        model.tokenize(b"ab\xff")
    assert e.value.status == deepseek.STATUS["INVALID_ARG"]
    assert "2" in e.value.message          # the byte offset
    with pytest.raises(deepseek.InvalidArgumentError):
        model.detokenize([model.vocab_size + 5])


def test_logits_equal_cli(ds, demo, model, tmp_path):
    ids = [model.bos_token_id] + model.tokenize("In the beginning God created")
    out = tmp_path / "logits.bin"
    ds("logits", demo[0], "--key-file", demo[1], "--threads", "1", "--tokens", ",".join(map(str, ids)),
       "--out", out)
    want = array.array("f")
    want.frombytes(out.read_bytes())              # little-endian float32, as this machine's
    rows = model.logits(ids)
    nv = model.n_vocab
    assert len(rows) == len(ids)
    assert all(isinstance(r, array.array) and r.typecode == "f" and len(r) == nv for r in rows)
    assert len(want) == len(ids) * nv
    for i, r in enumerate(rows):
        assert r == want[i * nv:(i + 1) * nv], "row %d differs from ds logits" % i
    # the last row's argmax is the greedy next token
    last = rows[-1]
    best = max(range(nv), key=last.__getitem__)
    assert model.generate(ids, max_tokens=1, temperature=0) == model.detokenize([best])


def test_expert_cache_paged_equals_resident(demo, model):
    want = model.generate("In the beginning", max_tokens=32, temperature=0)
    assert model.cache_stats()["n_slots"] == 0           # every expert resident
    with deepseek.Model(demo[0], key_file=demo[1], threads=1, cache_mb=0.05, prefetch="off") as paged:
        got = paged.generate("In the beginning", max_tokens=32, temperature=0)
        st = paged.cache_stats()
        assert got == want
        assert st["n_slots"] >= 2 and st["budget_bytes"] <= int(0.05 * (1 << 20))
        assert st["misses"] > 0 and st["hits"] > 0 and st["evictions"] > 0
        assert st["bytes_decrypted"] > 0
        paged.reset_cache_stats()
        assert paged.cache_stats()["misses"] == 0


def test_memory_plan_sizes_the_cache(demo, model):
    p = model.memory_plan(n_ctx=256)
    assert p["n_ctx"] == 256 and p["full_bytes"] == p["resident_bytes"] + p["expert_bytes"] + p["context_bytes"]
    assert "cache_bytes" in p and p["mem_bytes"] == 0
    small = model.memory_plan(n_ctx=256, mem_bytes=p["min_mem_bytes"] - 1)
    assert not small["fits"] and small["shortfall_bytes"] == 1
    big = model.memory_plan(mem_bytes=p["full_bytes"] * 2 + (1 << 30))
    assert big["fits"] and big["all_resident"] and big["hit_rate"] == 1.0


def test_threads_share_a_model(model):
    want = model.generate("In the beginning", max_tokens=24, temperature=0)
    results = []

    def work():
        results.append(model.generate("In the beginning", max_tokens=24, temperature=0))
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == [want] * 4


def test_device_and_log(demo, caplog):
    """device="cuda" without the CUDA backend runs on the CPU, and the
    library's warning reaches the "deepseek" logger."""
    with caplog.at_level("WARNING", logger="deepseek"):
        with deepseek.Model(demo[0], key_file=demo[1], threads=1, device="cuda") as m:
            text = m.generate("In the beginning", max_tokens=8, temperature=0)
            dev = m.device
    assert text
    if dev.startswith("cpu"):
        assert any(r.name == "deepseek" and r.levelname == "WARNING" and "cpu" in r.getMessage().lower()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
    else:
        assert dev.startswith("cuda")


def test_ctrl_c_stops_generation(model):
    """SIGINT during generations raises KeyboardInterrupt in the caller (not
    lost in a callback), and the model is usable afterwards."""
    import signal
    import time
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    timer = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    deadline = time.monotonic() + 10
    interrupted = False
    timer.start()
    try:
        while time.monotonic() < deadline:
            model.generate("In the beginning", max_tokens=None, ignore_eos=True, temperature=0.8, seed=1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        timer.cancel()
    assert interrupted
    assert model.generate("In the beginning", max_tokens=8, temperature=0) == \
        model.generate("In the beginning", max_tokens=8, temperature=0)
