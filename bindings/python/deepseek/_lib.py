# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""ctypes declarations of deepseek.h and the loading of the library.

The library is, in this order: the file named by the DEEPSEEK_LIBRARY
environment variable, or the shared object the build put in this package
(_libdeepseek.so, compiled from dist/deepseek.c). The structures mirror
deepseek.h field for field; tests/test_layout.py compares their sizes and
offsets with what a C compiler gives.
"""

import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32,
                    c_size_t, c_uint32, c_uint64, c_void_p)

# ==== structures (deepseek.h) ===============================================
# C enums are int-sized here (every value fits an int).
c_enum = c_int

ds_log_fn = CFUNCTYPE(None, c_void_p, c_int, c_char_p)
ds_progress_fn = CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_uint64)
ds_token_fn = CFUNCTYPE(c_int, c_void_p, c_int32, POINTER(c_char), c_size_t)


class ds_allocator(Structure):
    _fields_ = [("malloc_fn", c_void_p), ("realloc_fn", c_void_p), ("free_fn", c_void_p), ("user", c_void_p)]


class ds_model_params(Structure):
    _fields_ = [
        ("key", c_void_p),
        ("key_len", c_size_t),
        ("passphrase", c_void_p),
        ("passphrase_len", c_size_t),
        ("load_weights", c_int),
        ("expert_cache_bytes", c_uint64),
        ("prefetch", c_enum),
        ("evict_policy", c_enum),
        ("n_threads", c_int),
        ("allocator", ds_allocator),
        ("log", ds_log_fn),
        ("log_user", c_void_p),
        ("page_cache_bytes", c_uint64),
        ("exact_activations", c_int),
        ("device", c_enum),
        ("gpu_index", c_int),
        ("gpu_cache_bytes", c_uint64),
        ("progress", ds_progress_fn),
        ("progress_user", c_void_p),
        ("magic", c_uint32),
        ("allow_plaintext", c_int),
        ("mlock", c_int),
        ("huge_pages", c_int),
    ]


class ds_model_config(Structure):
    _fields_ = [
        ("arch", c_enum),
        ("vocab_size", c_int),
        ("hidden_size", c_int),
        ("intermediate_size", c_int),
        ("moe_intermediate_size", c_int),
        ("n_layers", c_int),
        ("n_heads", c_int),
        ("n_kv_heads", c_int),
        ("n_routed_experts", c_int),
        ("n_shared_experts", c_int),
        ("n_experts_per_tok", c_int),
        ("first_k_dense_replace", c_int),
        ("moe_layer_freq", c_int),
        ("q_lora_rank", c_int),
        ("kv_lora_rank", c_int),
        ("qk_nope_head_dim", c_int),
        ("qk_rope_head_dim", c_int),
        ("v_head_dim", c_int),
        ("head_dim", c_int),
        ("n_group", c_int),
        ("topk_group", c_int),
        ("topk_method", c_enum),
        ("scoring_func", c_enum),
        ("norm_topk_prob", c_int),
        ("routed_scaling_factor", c_float),
        ("rms_norm_eps", c_float),
        ("rope_theta", c_float),
        ("max_position_embeddings", c_int),
        ("rope_scaling_yarn", c_int),
        ("rope_factor", c_float),
        ("rope_original_max_position", c_int),
        ("rope_beta_fast", c_float),
        ("rope_beta_slow", c_float),
        ("rope_mscale", c_float),
        ("rope_mscale_all_dim", c_float),
        ("tie_word_embeddings", c_int),
        ("bos_token_id", c_int),
        ("eos_token_id", c_int),
        ("tok_vocab", c_int),
        ("tok_merges", c_int),
        ("tok_added", c_int),
        ("has_chat_template", c_int),
    ]


class ds_cache_stats(Structure):
    _fields_ = [
        ("budget_bytes", c_uint64),
        ("slot_bytes", c_uint64),
        ("n_slots", c_int),
        ("hits", c_uint64),
        ("misses", c_uint64),
        ("prefetch_issued", c_uint64),
        ("prefetch_hits", c_uint64),
        ("prefetch_wasted", c_uint64),
        ("prefetch_dropped", c_uint64),
        ("prefetch_skipped", c_uint64),
        ("prefetch_in_memory", c_uint64),
        ("fills_joined", c_uint64),
        ("evictions", c_uint64),
        ("bytes_decrypted", c_uint64),
        ("decrypt_seconds", c_double),
        ("wait_seconds", c_double),
        ("predicted", c_uint64),
        ("predicted_hits", c_uint64),
    ]


class ds_mlock_info(Structure):
    _fields_ = [("requested", c_int), ("locked_bytes", c_uint64), ("refused_bytes", c_uint64), ("error", c_int)]


class ds_memory_plan(Structure):
    _fields_ = [
        ("resident_bytes", c_uint64),
        ("expert_bytes", c_uint64),
        ("n_experts", c_uint64),
        ("n_expert_layers", c_int),
        ("slot_bytes", c_uint64),
        ("n_ctx", c_int),
        ("n_seq", c_int),
        ("kv_bytes_per_token", c_uint64),
        ("kv_bytes", c_uint64),
        ("scratch_bytes", c_uint64),
        ("context_bytes", c_uint64),
        ("full_bytes", c_uint64),
        ("min_paged_bytes", c_uint64),
        ("min_mem_bytes", c_uint64),
        ("mem_bytes", c_uint64),
        ("slack_bytes", c_uint64),
        ("fits", c_int),
        ("all_resident", c_int),
        ("shortfall_bytes", c_uint64),
        ("cache_bytes", c_uint64),
        ("cache_slots", c_uint64),
        ("cache_share", c_double),
        ("hit_rate", c_double),
    ]


class ds_memory_plan_params(Structure):
    _fields_ = [("n_ctx", c_int), ("n_seq", c_int), ("mem_bytes", c_uint64)]


class ds_context_params(Structure):
    _fields_ = [("n_ctx", c_int), ("n_threads", c_int), ("n_seq", c_int)]


class ds_sampler_params(Structure):
    _fields_ = [
        ("temperature", c_float),
        ("top_k", c_int),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repetition_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("penalty_last_n", c_int),
        ("seed", c_uint64),
        ("magic", c_uint32),
    ]


class ds_generate_stats(Structure):
    _fields_ = [
        ("n_prompt", c_int),
        ("n_generated", c_int),
        ("prompt_seconds", c_double),
        ("generate_seconds", c_double),
        ("n_reused", c_int),
        ("n_evaluated", c_int),
        ("stop_reason", c_enum),
    ]


class ds_generate_params(Structure):
    _fields_ = [
        ("max_tokens", c_int),
        ("stop", POINTER(c_char_p)),
        ("n_stop", c_size_t),
        ("on_token", ds_token_fn),
        ("user", c_void_p),
        ("ignore_eos", c_int),
        ("on_logits", c_void_p),      # ds_logits_fn; the binding leaves it NULL
        ("logits_user", c_void_p),
        ("defer_prompt", c_int),
        ("prompt_chunk", c_int),
    ]


class ds_chat_message(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


STRUCTS = (ds_allocator, ds_model_params, ds_model_config, ds_cache_stats, ds_mlock_info, ds_memory_plan,
           ds_memory_plan_params, ds_context_params,
           ds_sampler_params, ds_generate_stats, ds_generate_params, ds_chat_message)

# ==== constants ==============================================================
DS_KEY_BYTES = 32
DS_TOKENIZE_BOS = 1
DS_TOKENIZE_NO_SPECIAL = 2
DS_ERR_LIMIT = -5
DS_ERR_NOMEM = -1
DS_ERR_INVALID_ARG = -2

# ==== function signatures ====================================================
p = c_void_p          # opaque handles
st = c_int            # ds_status
i32p = POINTER(c_int32)

_SIGNATURES = {
    "ds_status_string": (c_char_p, [st]),
    "ds_last_error": (c_char_p, []),
    "ds_version_number": (c_int, []),
    "ds_version_string": (c_char_p, []),
    "ds_source_id": (c_char_p, []),
    "ds_key_file_read": (st, [c_char_p, c_void_p]),
    "ds_memzero": (None, [c_void_p, c_size_t]),
    "ds_model_default_params": (ds_model_params, []),
    "ds_model_open": (st, [POINTER(p), c_char_p, POINTER(ds_model_params)]),
    "ds_model_close": (st, [p]),
    "ds_model_errmsg": (c_char_p, [p]),
    "ds_model_device": (c_int, [p]),
    "ds_model_device_name": (c_char_p, [p]),
    "ds_model_get_config": (st, [p, POINTER(ds_model_config)]),
    "ds_model_cache_stats": (st, [p, POINTER(ds_cache_stats)]),
    "ds_model_gpu_cache_stats": (st, [p, POINTER(ds_cache_stats)]),
    "ds_model_cache_stats_reset": (None, [p]),
    "ds_model_mlock_info": (st, [p, POINTER(ds_mlock_info)]),
    "ds_model_memory_plan": (st, [p, POINTER(ds_memory_plan_params), POINTER(ds_memory_plan)]),
    "ds_model_verify": (st, [p, c_int, ds_progress_fn, c_void_p]),
    "ds_model_tokenizer": (p, [p]),
    "ds_tokenizer_encode": (st, [p, c_char_p, c_size_t, c_int, i32p, c_size_t, POINTER(c_size_t)]),
    "ds_tokenizer_decode": (st, [p, i32p, c_size_t, c_void_p, c_size_t, POINTER(c_size_t)]),
    "ds_tokenizer_vocab_size": (c_int, [p]),
    "ds_tokenizer_bos": (c_int32, [p]),
    "ds_tokenizer_eos": (c_int32, [p]),
    "ds_tokenizer_adds_bos": (c_int, [p]),
    "ds_tokenizer_apply_chat_template": (st, [p, POINTER(ds_chat_message), c_size_t, c_int, c_void_p, c_size_t,
                                              POINTER(c_size_t)]),
    "ds_tokenizer_encode_chat": (st, [p, POINTER(ds_chat_message), c_size_t, c_int, c_int, i32p, c_size_t,
                                      POINTER(c_size_t)]),
    "ds_context_default_params": (ds_context_params, []),
    "ds_context_new": (st, [POINTER(p), p, POINTER(ds_context_params)]),
    "ds_context_free": (None, [p]),
    "ds_context_eval": (st, [p, i32p, c_size_t, POINTER(c_float), c_int]),
    "ds_context_n_past": (c_int, [p]),
    "ds_context_n_ctx": (c_int, [p]),
    "ds_context_reset": (None, [p]),
    "ds_sampler_default_params": (ds_sampler_params, []),
    "ds_sampler_new": (st, [POINTER(p), POINTER(ds_sampler_params)]),
    "ds_sampler_free": (None, [p]),
    "ds_stop_reason_name": (c_char_p, [c_int]),
    "ds_generate_default_params": (ds_generate_params, []),
    "ds_generator_new": (st, [POINTER(p), p, p, i32p, c_size_t, POINTER(ds_generate_params)]),
    "ds_generator_next": (st, [p, POINTER(POINTER(c_char)), POINTER(c_size_t)]),
    "ds_generator_stop_reason": (c_int, [p]),
    "ds_generator_stats": (None, [p, POINTER(ds_generate_stats)]),
    "ds_generator_free": (None, [p]),
}


def _bundled_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_libdeepseek.so")


def _load():
    """The library: $DEEPSEEK_LIBRARY, else the bundled object."""
    env = os.environ.get("DEEPSEEK_LIBRARY")
    path = env if env else _bundled_path()
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        if env:
            raise ImportError("deepseek: cannot load DEEPSEEK_LIBRARY=%s: %s" % (env, e)) from None
        raise ImportError("deepseek: cannot load the bundled library %s (%s); reinstall the package "
                          "(pip install ./bindings/python) or set DEEPSEEK_LIBRARY to a libdeepseek.so"
                          % (path, e)) from None
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError("deepseek: %s has no %s: not a deepseek.h library of this version" % (path, name)) \
                from None
        fn.restype = restype
        fn.argtypes = argtypes
    return lib, path


lib, path = _load()


def check_version(expected):
    """The structures above are those of the version the package was built
    for; a library of another version may lay them out differently."""
    got = lib.ds_version_string().decode()
    if expected is not None and got != expected:
        raise ImportError("deepseek: %s is version %s, this package is %s (its structures may differ): "
                          "use a library of the same version" % (path, got, expected))
