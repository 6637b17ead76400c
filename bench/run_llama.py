#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""run_llama.py -- llama.cpp (through the llama-cpp-python binding's C API)
on a GGUF file, measured the way `ds bench` measures us.

    run_llama.py MODEL.gguf bench  [--threads N] [--prompt P] [--gen G] [--prompt-vocab V] [--bos B]
    run_llama.py MODEL.gguf logits --tokens 0,70,263 --out FILE [--threads N]
    run_llama.py --version

bench: one run in this process. Opens the model (mmap, llama.cpp's default),
evaluates the prompt once untimed (the warm-up llama-bench also does: it
faults the mapped weights in, as `ds bench`'s open decrypts every weight into
memory before its clock starts), clears the KV cache, then times
  prefill: the P prompt ids as one llama_decode (logits of the last only);
  decode:  G greedy steps, each one llama_decode of one token + the argmax of
           its logits (what ds bench's decode loop does).
The prompt is ds bench's: BOS, then its fixed pseudo-random walk over the
tokenizer's ids (V = largest id + 1). Prints one JSON line with wall-clock
figures and llama.cpp's own llama_perf_context timings.

logits: evaluates the ids from an empty context as one batch with every
position's logits requested and writes them as float32 (n x n_vocab), the
layout of `ds logits --out`.

llama.cpp's log goes to stderr. Exit status 0, or 1 when anything failed.
"""
import argparse
import ctypes
import json
import sys
import time

import numpy as np


def make_prompt(n, n_vocab, bos):
    """ds bench's make_prompt (tools/ds_bench.c), to the bit."""
    ids, x = [], 0x9E3779B9
    for _ in range(n):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        ids.append((x >> 8) % n_vocab)
    if 0 <= bos < n_vocab:
        ids[0] = bos
    return ids


_LOG_CB = None


def log_to_stderr(L):
    """llama.cpp's log to stderr as raw bytes: the binding's own callback decodes
    each piece as UTF-8 and raises on a character split between pieces (the
    token list printout of a DeepSeek vocabulary does that)."""
    global _LOG_CB

    def cb(level, text, user_data):
        if text:
            sys.stderr.buffer.write(text)
            sys.stderr.buffer.flush()
    _LOG_CB = L.llama_log_callback(cb)
    L.llama_log_set(_LOG_CB, ctypes.c_void_p(0))


class Llama:
    def __init__(self, path, threads, n_ctx, n_batch, no_repack=False):
        import llama_cpp as L
        self.L = L
        log_to_stderr(L)
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        if no_repack:
            # llama.cpp's --no-repack: no extra buffer types (the AMX buffer,
            # the CPU repacking); see --no-repack below
            mp.use_extra_bufts = False
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise RuntimeError("llama.cpp could not load %s (its log above says why)" % path)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.no_perf = False
        self.flash_attn_type = int(cp.flash_attn_type)
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))

    def clear(self):
        self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), True)

    def decode(self, ids):
        arr = (self.L.llama_token * len(ids))(*ids)
        rc = self.L.llama_decode(self.ctx, self.L.llama_batch_get_one(arr, len(ids)))
        if rc != 0:
            raise RuntimeError("llama_decode returned %d" % rc)

    def last_logits(self):
        p = self.L.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(p, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    def all_logits(self, ids):
        L, n = self.L, len(ids)
        batch = L.llama_batch_init(n, 0, 1)
        try:
            for i, t in enumerate(ids):
                batch.token[i] = t
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1
            batch.n_tokens = n
            rc = L.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError("llama_decode returned %d" % rc)
            p = L.llama_get_logits(self.ctx)
            return np.array(np.ctypeslib.as_array(ctypes.cast(p, ctypes.POINTER(ctypes.c_float)),
                                                  shape=(n, self.n_vocab)))
        finally:
            L.llama_batch_free(batch)

    def perf(self):
        d = self.L.llama_perf_context(self.ctx)
        return dict(t_p_eval_ms=d.t_p_eval_ms, n_p_eval=d.n_p_eval, t_eval_ms=d.t_eval_ms, n_eval=d.n_eval)

    def close(self):
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def cmd_bench(a):
    ids = make_prompt(a.prompt, a.prompt_vocab, a.bos)
    t0 = time.perf_counter()
    m = Llama(a.model, a.threads, a.prompt + a.gen + 1, max(a.prompt, 32), a.no_repack)
    open_s = time.perf_counter() - t0
    m.decode(ids)                                   # warm-up, untimed
    float(m.last_logits()[0])
    m.clear()
    m.L.llama_perf_context_reset(m.ctx)

    t0 = time.perf_counter()
    m.decode(ids)
    nxt = int(np.argmax(m.last_logits()))
    prefill_s = time.perf_counter() - t0
    finite = bool(np.all(np.isfinite(m.last_logits())))
    out = [nxt]
    t0 = time.perf_counter()
    for _ in range(a.gen):
        m.decode([nxt])
        nxt = int(np.argmax(m.last_logits()))
        out.append(nxt)
    decode_s = time.perf_counter() - t0
    perf = m.perf()
    m.close()
    h = 0xCBF29CE484222325                          # FNV-1a of the generated ids, for eyeballing
    for t in out[1:]:
        for k in range(4):
            h = ((h ^ ((t >> (8 * k)) & 0xFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    r = dict(engine="llama.cpp", model=a.model, threads=a.threads, n_prompt=a.prompt, n_gen=a.gen,
             open_s=round(open_s, 4), prefill_s=prefill_s, decode_s=decode_s,
             prefill_tok_s=a.prompt / prefill_s, decode_tok_s=a.gen / decode_s,
             perf_prefill_tok_s=(1000.0 * perf["n_p_eval"] / perf["t_p_eval_ms"]) if perf["t_p_eval_ms"] > 0 else 0,
             perf_decode_tok_s=(1000.0 * perf["n_eval"] / perf["t_eval_ms"]) if perf["t_eval_ms"] > 0 else 0,
             perf=perf, finite_logits=finite, flash_attn_type=m.flash_attn_type, token_hash="%016x" % h)
    print(json.dumps(r))
    return 0 if finite else 1


def cmd_logits(a):
    ids = [int(t) for t in a.tokens.split(",") if t.strip()]
    m = Llama(a.model, a.threads, len(ids) + 1, max(len(ids), 32), a.no_repack)
    z = m.all_logits(ids)
    m.close()
    z.astype(np.float32).tofile(a.out)
    print("wrote %d x %d float32 logits to %s (finite: %s)" % (z.shape[0], z.shape[1], a.out,
                                                               bool(np.all(np.isfinite(z)))))
    return 0 if np.all(np.isfinite(z)) else 1


def main(argv):
    if argv and argv[0] == "--version":
        import llama_cpp as L
        print(json.dumps(dict(llama_cpp_python=L.__version__,
                              system_info=L.llama_print_system_info().decode(errors="replace").strip())))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("cmd", choices=("bench", "logits"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--prompt-vocab", type=int, default=512)
    ap.add_argument("--bos", type=int, default=0)
    ap.add_argument("--tokens")
    ap.add_argument("--no-repack", action="store_true",
                    help="llama.cpp's --no-repack (use_extra_bufts = false). On a CPU with AMX, llama-cpp-python "
                         "0.3.36 moves Q8_0/Q4_0 weights into its AMX buffer by default and then cannot run this "
                         "model: GGML_ASSERT(*cur_backend_id != -1) in ggml-backend.cpp (the 3-D attn_v_b product), "
                         "or, with attn_v_b kept out of that buffer, a segmentation fault in the first decode")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "bench":
            return cmd_bench(a)
        if not a.tokens or not a.out:
            ap.error("logits needs --tokens and --out")
        return cmd_logits(a)
    except RuntimeError as e:
        print("run_llama.py: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
