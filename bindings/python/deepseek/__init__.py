# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""deepseek: Python binding of deepseek.h (ctypes over the C library).

    import deepseek
    with deepseek.Model("models/demo.dsm", key_file="models/demo.key") as m:
        print(m.generate("In the beginning", max_tokens=32, temperature=0))
        for piece in m.generate("And God said", max_tokens=32, stream=True):
            print(piece, end="", flush=True)

Errors are raised as deepseek.Error subclasses carrying the library's status
code (.status) and message (.message). See README.md for the whole API.
"""

import array
import ctypes
import logging
import os
import threading
from ctypes import POINTER, byref, c_char, c_float, c_int32, c_size_t, c_void_p

from . import _lib
from ._errors import (STATUS, AuthenticationError, BackendError, CancelledError, CryptoError, Error, FileError,
                      FormatError, InvalidArgumentError, KeyRequiredError, LimitError, MisuseError,
                      OutOfMemoryError, PlaintextError, UnsupportedError, WrongKeyError, error_class)

try:
    from ._build_info import VERSION as __version__
except ImportError:          # running from the source tree with DEEPSEEK_LIBRARY
    __version__ = None
_lib.check_version(__version__)
if __version__ is None:
    __version__ = _lib.lib.ds_version_string().decode()

__all__ = [
    "Model", "Stream", "Error", "OutOfMemoryError", "InvalidArgumentError", "FileError", "UnsupportedError",
    "LimitError", "CancelledError", "FormatError", "CryptoError", "WrongKeyError", "AuthenticationError",
    "KeyRequiredError", "PlaintextError", "BackendError", "MisuseError", "STATUS", "version", "source_id",
    "library_path",
]

_L = _lib.lib
log = logging.getLogger("deepseek")
_LOG_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
_PREFETCH = {"off": 0, "auto": 1, "always": 2}
_EVICT = {"lru": 0, "lfu": 1}
_DEVICE = {"cpu": 0, "cuda": 1}
_MIB = 1 << 20


def version():
    """The C library's version string ("0.1.0")."""
    return _L.ds_version_string().decode()


def source_id():
    """A hash of the C sources the library was built from."""
    return _L.ds_source_id().decode()


def library_path():
    """The shared library in use ($DEEPSEEK_LIBRARY or the bundled one)."""
    return _lib.path


# ==== errors =================================================================

def _text(b):
    return b.decode("utf-8", "replace") if b else ""


def _raise(status, where=None):
    """Raises the exception of a failed call. Call it right after the call:
    ds_last_error() is the calling thread's message of its last failure."""
    msg = _text(_L.ds_last_error()) or _text(_L.ds_status_string(status))
    if where:
        msg = "%s: %s" % (where, msg)
    raise error_class(status)(status, msg)


def _check(status, where=None):
    if status != 0:
        _raise(status, where)


def _misuse(msg):
    return MisuseError(STATUS["MISUSE"], msg)


def _invalid(msg):
    return InvalidArgumentError(STATUS["INVALID_ARG"], msg)


def _mib(value, name):
    """Bytes of a size in MiB (a float is allowed: 0.5 is 512 KiB)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise _invalid("%s must be a number of MiB, not %r" % (name, value)) from None
    if not (v >= 0) or v > (1 << 43):
        raise _invalid("%s must be between 0 and 2^43 MiB, not %r" % (name, value))
    return int(v * _MIB)


def _choice(table, value, name):
    if value not in table:
        raise _invalid("%s must be one of %s, not %r" % (name, ", ".join(sorted(table)), value))
    return table[value]


def _ids_array(ids, what="ids"):
    try:
        seq = [int(i) for i in ids]
    except (TypeError, ValueError):
        raise _invalid("%s must be a sequence of integers" % what) from None
    for i in seq:
        if not -(1 << 31) <= i < (1 << 31):
            raise _invalid("%s: %d is not a 32-bit token id" % (what, i))
    return (c_int32 * max(len(seq), 1))(*seq), len(seq)


def _stats_dict(s):
    return {
        "n_prompt": s.n_prompt, "n_generated": s.n_generated, "n_reused": s.n_reused,
        "n_evaluated": s.n_evaluated, "prompt_seconds": s.prompt_seconds,
        "generate_seconds": s.generate_seconds, "stop_reason": _text(_L.ds_stop_reason_name(s.stop_reason)),
    }


def _struct_dict(s):
    return {name: getattr(s, name) for name, _ in s._fields_}


# ==== the model ==============================================================

class Model:
    """A model opened from a container (.dsm) file, with one inference context.

    Model(path, key_file=None, key=None, passphrase=None, n_ctx=0, threads=0,
          cache_mb=0, ...)

    key_file: a key file (32 raw bytes or 64 hex digits), or key: the 32 key
    bytes, or passphrase (str, bytes, or a bytearray: this one is used in
    place, and the caller can wipe it afterwards). The library copies what it
    needs; the binding wipes its own copies once the model is open. A plaintext
    container opens without any of them.

    n_ctx: context size in tokens (0: min(4096, the model's trained length)).
    threads: compute threads (0: all online CPUs). cache_mb: the routed-expert
    cache budget in MiB (0: every expert resident; otherwise experts are
    decrypted on demand into the cache; a fraction is allowed).
    Further options (deepseek.h's ds_model_params): prefetch ("auto",
    "always", "off"), evict ("lfu", "lru"), page_cache_mb, exact_activations,
    device ("cpu", "cuda"), gpu (device number), gpu_cache_mb,
    allow_plaintext, mlock, huge_pages, load_weights (False: metadata and
    tokenizer only).

    Library notices go to the logging module's "deepseek" logger.

    A Model may be used from several threads; its calls are serialized (one
    context). close() (or leaving a with block) frees the C objects; closing
    twice is harmless.
    """

    def __init__(self, path, key_file=None, key=None, passphrase=None, n_ctx=0, threads=0, cache_mb=0,
                 prefetch="auto", evict="lfu", page_cache_mb=0, exact_activations=False, device="cpu", gpu=0,
                 gpu_cache_mb=0, allow_plaintext=False, mlock=False, huge_pages=True, load_weights=True):
        self._model = None
        self._ctx = None
        self._stream = None
        self._lock = threading.RLock()
        self.last_stats = None
        if sum(x is not None for x in (key_file, key, passphrase)) > 1:
            raise _invalid("give one of key_file, key and passphrase")
        if not isinstance(n_ctx, int) or n_ctx < 0:
            raise _invalid("n_ctx must be a whole number >= 0 (0: the default), not %r" % (n_ctx,))
        if not isinstance(threads, int) or threads < 0:
            raise _invalid("threads must be a whole number >= 0 (0: all CPUs), not %r" % (threads,))
        self._n_ctx = n_ctx
        self._threads = threads

        mp = _L.ds_model_default_params()
        mp.n_threads = threads
        mp.expert_cache_bytes = _mib(cache_mb, "cache_mb")
        mp.page_cache_bytes = _mib(page_cache_mb, "page_cache_mb")
        mp.gpu_cache_bytes = _mib(gpu_cache_mb, "gpu_cache_mb")
        mp.prefetch = _choice(_PREFETCH, prefetch, "prefetch")
        mp.evict_policy = _choice(_EVICT, evict, "evict")
        mp.device = _choice(_DEVICE, device, "device")
        mp.gpu_index = int(gpu)
        mp.exact_activations = 1 if exact_activations else 0
        mp.allow_plaintext = 1 if allow_plaintext else 0
        mp.mlock = 1 if mlock else 0
        mp.huge_pages = 1 if huge_pages else 0
        mp.load_weights = 1 if load_weights else 0
        # the callback object must live as long as the model
        self._log_cb = _lib.ds_log_fn(_on_log)
        mp.log = self._log_cb

        key_buf = None     # ctypes buffers this binding owns: wiped below
        pass_buf = None
        owned_pass = False
        try:
            if key_file is not None:
                key_buf = (ctypes.c_ubyte * _lib.DS_KEY_BYTES)()
                _check(_L.ds_key_file_read(os.fsencode(key_file), key_buf))
            elif key is not None:
                kv = memoryview(key).cast("B")
                if kv.nbytes != _lib.DS_KEY_BYTES:
                    raise _invalid("key must be %d bytes, not %d" % (_lib.DS_KEY_BYTES, kv.nbytes))
                key_buf = (ctypes.c_ubyte * _lib.DS_KEY_BYTES).from_buffer_copy(kv)
            if key_buf is not None:
                mp.key = ctypes.addressof(key_buf)
                mp.key_len = _lib.DS_KEY_BYTES
            if passphrase is not None:
                if not passphrase:
                    raise _invalid("the passphrase is empty")
                if isinstance(passphrase, bytearray):
                    pass_buf = (c_char * len(passphrase)).from_buffer(passphrase)
                else:
                    pb = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
                    pass_buf = ctypes.create_string_buffer(pb, len(pb))
                    owned_pass = True
                    del pb
                mp.passphrase = ctypes.addressof(pass_buf)
                mp.passphrase_len = len(pass_buf)
            handle = c_void_p()
            st = _L.ds_model_open(byref(handle), os.fsencode(path), byref(mp))
            if st != 0:
                _raise(st)
            self._model = handle
        finally:
            if key_buf is not None:
                _L.ds_memzero(key_buf, ctypes.sizeof(key_buf))
            if pass_buf is not None and owned_pass:
                _L.ds_memzero(pass_buf, ctypes.sizeof(pass_buf))
            mp.key = None
            mp.passphrase = None
        self._tok = _L.ds_model_tokenizer(self._model)
        self.path = os.fspath(path)

    # ---- life cycle ----
    def close(self):
        """Frees the generation in progress, the context and the model (which
        wipes its keys and weights). Harmless when already closed."""
        with self._lock:
            self._end_stream()
            if self._ctx:
                _L.ds_context_free(self._ctx)
                self._ctx = None
            if self._model:
                st = _L.ds_model_close(self._model)
                self._model = None
                self._tok = None
                if st != 0:
                    _raise(st, "closing the model")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def closed(self):
        return not self._model

    def _handle(self):
        if not self._model:
            raise _misuse("deepseek.Model: the model is closed")
        return self._model

    def _context(self):
        """The context, made on first use (its KV cache is n_ctx tokens)."""
        self._handle()
        self._end_stream()
        if not self._ctx:
            cp = _L.ds_context_default_params()
            cp.n_ctx = self._n_ctx
            cp.n_threads = self._threads
            c = c_void_p()
            _check(_L.ds_context_new(byref(c), self._model, byref(cp)))
            self._ctx = c
        return self._ctx

    def _end_stream(self):
        if self._stream is not None:
            self._stream._finish()
            self._stream = None

    # ---- information ----
    @property
    def config(self):
        """The model's hyper-parameters (ds_model_config) as a dict."""
        with self._lock:
            cfg = _lib.ds_model_config()
            _check(_L.ds_model_get_config(self._handle(), byref(cfg)))
            return _struct_dict(cfg)

    @property
    def n_vocab(self):
        """Rows of the model's logits (config vocab_size; may exceed the tokenizer's)."""
        return self.config["vocab_size"]

    @property
    def vocab_size(self):
        """The tokenizer's vocabulary size (largest id + 1)."""
        with self._lock:
            self._handle()
            return _L.ds_tokenizer_vocab_size(self._tok)

    @property
    def bos_token_id(self):
        """The BOS token id, or None."""
        with self._lock:
            self._handle()
            t = _L.ds_tokenizer_bos(self._tok)
            return None if t < 0 else t

    @property
    def eos_token_id(self):
        with self._lock:
            self._handle()
            t = _L.ds_tokenizer_eos(self._tok)
            return None if t < 0 else t

    @property
    def n_ctx(self):
        """The context size in tokens."""
        with self._lock:
            return _L.ds_context_n_ctx(self._context())

    @property
    def device(self):
        """A line describing where the forward pass runs ("cpu (2 threads, avx2)")."""
        with self._lock:
            return _text(_L.ds_model_device_name(self._handle()))

    def cache_stats(self, gpu=False):
        """The routed-expert cache's statistics since open or the last reset
        (ds_cache_stats) as a dict: budget_bytes, n_slots (0: every expert
        resident), hits, misses, evictions, bytes_decrypted, prefetch_*, ...
        gpu=True: the VRAM expert cache of a CUDA model."""
        with self._lock:
            s = _lib.ds_cache_stats()
            fn = _L.ds_model_gpu_cache_stats if gpu else _L.ds_model_cache_stats
            _check(fn(self._handle(), byref(s)))
            return _struct_dict(s)

    def reset_cache_stats(self):
        with self._lock:
            _L.ds_model_cache_stats_reset(self._handle())

    def mlock_info(self):
        """What mlock=True achieved: requested, locked_bytes, refused_bytes, error (errno)."""
        with self._lock:
            s = _lib.ds_mlock_info()
            _check(_L.ds_model_mlock_info(self._handle(), byref(s)))
            return _struct_dict(s)

    def memory_plan(self, n_ctx=0, mem_bytes=0, n_seq=0):
        """What the model takes in memory and how to fit a budget
        (ds_model_memory_plan) as a dict: resident_bytes, expert_bytes,
        n_experts, slot_bytes, context_bytes (one context of n_ctx tokens,
        0 = the default, and n_seq sequences, 0 = 1), full_bytes (all resident), min_mem_bytes; with
        mem_bytes: slack_bytes, fits, all_resident, shortfall_bytes,
        cache_bytes (pass cache_mb=cache_bytes / 2**20 to Model), cache_slots,
        hit_rate (expected under uniform routing). Works with load_weights=False."""
        with self._lock:
            s = _lib.ds_memory_plan()
            pp = _lib.ds_memory_plan_params(int(n_ctx), int(n_seq), int(mem_bytes))
            _check(_L.ds_model_memory_plan(self._handle(), byref(pp), byref(s)))
            d = _struct_dict(s)
            d["fits"], d["all_resident"] = bool(d["fits"]), bool(d["all_resident"])
            return d

    def verify(self, threads=0):
        """Authenticates every chunk of the file; raises (AuthenticationError, ...) on the first bad one."""
        with self._lock:
            _check(_L.ds_model_verify(self._handle(), int(threads), _lib.ds_progress_fn(), None))

    # ---- tokenizer ----
    def tokenize(self, text, add_bos=False, special=True):
        """Token ids of text (str or UTF-8 bytes). add_bos: prepend BOS (when
        the tokenizer adds one); special=False: special-token text is plain
        text. The defaults are those of `ds tokenize` (deepseek.h flags 0)."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        flags = (_lib.DS_TOKENIZE_BOS if add_bos else 0) | (0 if special else _lib.DS_TOKENIZE_NO_SPECIAL)
        with self._lock:
            self._handle()
            return self._encode(data, flags)

    def _encode(self, data, flags):
        cap = len(data) + 2
        for _ in range(2):
            ids = (c_int32 * cap)()
            n = c_size_t()
            st = _L.ds_tokenizer_encode(self._tok, data, len(data), flags, ids, cap, byref(n))
            if st == _lib.DS_ERR_LIMIT and n.value > cap:
                cap = n.value
                continue
            _check(st)
            return ids[:n.value]
        raise _misuse("tokenize: the id count kept growing")   # not reached: the count is exact

    def detokenize(self, ids):
        """Text of token ids (special tokens as their text; an incomplete
        character at the end as U+FFFD)."""
        arr, n = _ids_array(ids)
        with self._lock:
            self._handle()
            return self._sized_text(lambda buf, cap, out: _L.ds_tokenizer_decode(self._tok, arr, n, buf, cap, out),
                                    16 * n + 64)

    @staticmethod
    def _sized_text(call, cap):
        """Runs a call with deepseek.h's buffer rules (DS_ERR_LIMIT and the
        size needed) and returns the text."""
        for _ in range(2):
            buf = ctypes.create_string_buffer(cap)
            got = c_size_t()
            st = call(buf, cap, byref(got))
            if st == _lib.DS_ERR_LIMIT and got.value >= cap:
                cap = got.value + 1
                continue
            _check(st)
            return buf.raw[:got.value].decode("utf-8", "replace")
        raise _misuse("the text kept growing")   # not reached

    # ---- chat template ----
    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        """Renders a conversation with the model's chat template (DeepSeek V2
        and V3 families). messages: dicts with "role" ("system", "user",
        "assistant") and "content", or (role, content) pairs. Returns the text
        (it starts with the BOS token's text), or with tokenize=True its ids,
        encoded as ds_tokenizer_encode_chat does: no special token is matched
        inside a message's content."""
        msgs, keep = self._messages(messages)
        with self._lock:
            self._handle()
            if not tokenize:
                return self._sized_text(
                    lambda buf, cap, out: _L.ds_tokenizer_apply_chat_template(
                        self._tok, msgs, len(keep), 1 if add_generation_prompt else 0, buf, cap, out),
                    sum(len(c) + 64 for _, c in keep) + 256)
            cap = sum(len(c) for _, c in keep) + 64 * len(keep) + 64
            for _ in range(2):
                ids = (c_int32 * cap)()
                n = c_size_t()
                st = _L.ds_tokenizer_encode_chat(self._tok, msgs, len(keep), 1 if add_generation_prompt else 0, 0,
                                                 ids, cap, byref(n))
                if st == _lib.DS_ERR_LIMIT and n.value > cap:
                    cap = n.value
                    continue
                _check(st)
                return ids[:n.value]
            raise _misuse("apply_chat_template: the id count kept growing")   # not reached

    @staticmethod
    def _messages(messages):
        keep = []
        for m in messages:
            if isinstance(m, dict):
                role, content = m.get("role"), m.get("content")
            else:
                role, content = m
            if not isinstance(role, str) or not isinstance(content, str):
                raise _invalid("a message needs a str role and a str content, not %r" % (m,))
            keep.append((role.encode("utf-8"), content.encode("utf-8")))
        msgs = (_lib.ds_chat_message * max(len(keep), 1))()
        for i, (r, c) in enumerate(keep):
            msgs[i].role = r
            msgs[i].content = c
        return msgs, keep

    # ---- logits ----
    def logits(self, ids):
        """Evaluates token ids from an empty context (as `ds logits` does) and
        returns the logits of every position: a list of len(ids) rows, each an
        array.array('f') of n_vocab floats (numpy.asarray(rows) makes an
        (n, n_vocab) array). The context then holds these ids."""
        arr, n = _ids_array(ids)
        if n == 0:
            raise _invalid("logits: no token ids")
        with self._lock:
            c = self._context()
            nv = self.n_vocab
            out = array.array("f", bytes(4 * n * nv))
            addr, _ = out.buffer_info()
            _L.ds_context_reset(c)
            _check(_L.ds_context_eval(c, arr, n, ctypes.cast(addr, POINTER(c_float)), 1))
            return [out[i * nv:(i + 1) * nv] for i in range(n)]

    def reset(self):
        """Forgets the tokens the context holds (the next generation evaluates its whole prompt)."""
        with self._lock:
            if self._ctx:
                self._end_stream()
                _L.ds_context_reset(self._ctx)

    # ---- generation ----
    def generate(self, prompt, max_tokens=128, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                 repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0, repeat_last_n=64, seed=None,
                 stop=None, ignore_eos=False, stream=False):
        """Continues prompt (str: tokenized with a leading BOS as `ds run`
        does; or a list of token ids, used as given) and returns the text, or
        with stream=True a Stream: an iterator of text pieces as they come.

        max_tokens: most tokens to generate (None or -1: until the end of
        sequence or a full context). Sampling as deepseek.h's sampler:
        temperature (0: greedy), top_k (0: off), top_p, min_p, repeat_penalty
        (1: off) over the last repeat_last_n tokens (0: all),
        frequency_penalty, presence_penalty, seed (None: a fresh one). stop:
        strings that end the generation (not included in the text).
        ignore_eos: never sample the end-of-sequence token.

        The context keeps the conversation: a prompt that begins with what it
        holds evaluates only the rest. After a generation, last_stats (and a
        Stream's stats) holds the token counts, timings and stop_reason
        ("eos", "length", "context_full", "stop_string", ...)."""
        if max_tokens is not None and max_tokens != -1 and (not isinstance(max_tokens, int)
                                                            or not 0 <= max_tokens < (1 << 31)):
            raise _invalid("max_tokens must be a whole number below 2^31, -1 or None, not %r" % (max_tokens,))
        for name, v in (("top_k", top_k), ("repeat_last_n", repeat_last_n)):
            # the C fields are ints: ctypes would wrap a larger value silently
            if not isinstance(v, int) or not 0 <= v < (1 << 31):
                raise _invalid("%s must be a whole number from 0 to 2^31 - 1, not %r" % (name, v))
        if isinstance(stop, str):
            stop = [stop]
        if stop is not None and not all(isinstance(x, str) for x in stop):
            raise _invalid("stop must be a str or a list of str")
        if max_tokens == 0:
            self.last_stats = {"n_prompt": 0, "n_generated": 0, "n_reused": 0, "n_evaluated": 0,
                               "prompt_seconds": 0.0, "generate_seconds": 0.0, "stop_reason": "length"}
            if stream:
                s = Stream(self, None, None)
                s.stats = self.last_stats
                return s
            return ""
        if max_tokens is None or max_tokens == -1:
            max_tokens = 0                      # deepseek.h: 0 = no limit
        sp = _L.ds_sampler_default_params()
        sp.temperature = temperature
        sp.top_k = top_k
        sp.top_p = top_p
        sp.min_p = min_p
        sp.repetition_penalty = repeat_penalty
        sp.frequency_penalty = frequency_penalty
        sp.presence_penalty = presence_penalty
        sp.penalty_last_n = repeat_last_n
        sp.seed = int.from_bytes(os.urandom(8), "little") if seed is None else int(seed) & ((1 << 64) - 1)
        stops = [x.encode("utf-8") for x in (stop or ())]
        stop_arr = (ctypes.c_char_p * max(len(stops), 1))(*stops)

        with self._lock:
            self._handle()
            if isinstance(prompt, (str, bytes)):
                ids, n = self._prompt_ids(prompt)
            else:
                ids, n = _ids_array(prompt, "prompt")
            c = self._context()
            smp = c_void_p()
            _check(_L.ds_sampler_new(byref(smp), byref(sp)))
            gp = _L.ds_generate_default_params()
            gp.max_tokens = max_tokens
            gp.stop = stop_arr
            gp.n_stop = len(stops)
            gp.ignore_eos = 1 if ignore_eos else 0
            g = c_void_p()
            st = _L.ds_generator_new(byref(g), c, smp, ids, n, byref(gp))
            if st != 0:
                try:
                    _raise(st)
                finally:
                    _L.ds_sampler_free(smp)
            s = self._stream = Stream(self, g, smp)
            if stream:
                return s
            # Pulled token by token from Python rather than run in C with a
            # callback: Ctrl-C (KeyboardInterrupt) then lands between two
            # tokens, in Python code, and stops the generation; raised in a
            # ctypes callback it would be printed and lost.
            try:
                return "".join(s)
            finally:
                s.close()

    def _prompt_ids(self, prompt):
        """The ids ds_generate makes of a text prompt: the text (special
        tokens matched), BOS in front when the tokenizer adds one and the text
        does not already begin with it."""
        data = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
        ids = self._encode(data, 0)
        bos = _L.ds_tokenizer_bos(self._tok) if _L.ds_tokenizer_adds_bos(self._tok) else -1
        if bos >= 0 and not (ids and ids[0] == bos):
            ids.insert(0, bos)
        return _ids_array(ids, "prompt")

    def chat(self, messages, **kwargs):
        """Generates the assistant's reply to a conversation: the messages
        rendered with the chat template and encoded so that no content can hold
        a control token (apply_chat_template(tokenize=True)), then generate()
        with the same keyword arguments."""
        return self.generate(self.apply_chat_template(messages, True, tokenize=True), **kwargs)

    def __repr__(self):
        return "<deepseek.Model %r%s>" % (getattr(self, "path", "?"), " closed" if self.closed else "")


def _on_log(user, level, msg):
    try:
        lv = _LOG_LEVELS.get(level, logging.DEBUG)
        if log.isEnabledFor(lv):
            log.log(lv, "%s", _text(msg))
    except BaseException:    # never let an exception unwind into C
        pass


class Stream:
    """A generation in progress (Model.generate(..., stream=True)): iterate
    for the text pieces (whole UTF-8 characters) as they are generated.

    stats: the counts and stop_reason so far (a dict). close() ends it early;
    so does any other use of the model's context (generate, logits, reset).
    """

    def __init__(self, model, gen, sampler):
        self._model = model
        self._gen = gen
        self._smp = sampler
        self.stats = None

    def __iter__(self):
        return self

    def __next__(self):
        m = self._model
        with m._lock:
            while self._gen:
                text = POINTER(c_char)()
                length = c_size_t()
                st = _L.ds_generator_next(self._gen, byref(text), byref(length))
                if st != 0:
                    try:
                        _raise(st)
                    finally:
                        self._finish()
                piece = ctypes.string_at(text, length.value) if length.value else b""
                if _L.ds_generator_stop_reason(self._gen) != 0:
                    self._finish()
                if piece:
                    return piece.decode("utf-8", "replace")
        raise StopIteration

    def _finish(self):
        if self._gen:
            gs = _lib.ds_generate_stats()
            _L.ds_generator_stats(self._gen, byref(gs))
            self.stats = _stats_dict(gs)
            self._model.last_stats = self.stats
        self._free()
        if self._model._stream is self:
            self._model._stream = None

    def _free(self):
        if self._gen:
            _L.ds_generator_free(self._gen)
            self._gen = None
        if self._smp:
            _L.ds_sampler_free(self._smp)
            self._smp = None

    @property
    def stop_reason(self):
        """Why the generation stopped ("eos", "length", ...), None while it runs."""
        return self.stats["stop_reason"] if self.stats else None

    def close(self):
        with self._model._lock:
            self._finish()

    def text(self):
        """The rest of the text, all at once."""
        return "".join(self)
