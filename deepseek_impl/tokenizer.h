/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * tokenizer.h — what the tokenizer layer (tokenizer.c) offers the layers
 * above it: the chat template layer (chat_template.c) reads a tokenizer's
 * tokenizer_config.json parts through dsi_tokenizer_chat_source, and shares
 * its rule for writing results into caller buffers.
 */
#ifndef DS_TOKENIZER_H
#define DS_TOKENIZER_H

#include "format.h"

/* The parts of tokenizer_config.json a chat template needs. The pointers
 * stay valid as long as the tokenizer. */
typedef struct dsi_chat_source {
    const char *tpl;        /* chat_template (the "default" one of a list), NUL-terminated; NULL: none */
    size_t tpl_len;
    const char *bos, *eos;  /* bos_token / eos_token texts (not NUL-terminated); NULL: not given */
    size_t bos_len, eos_len;
    const dsi_alloc *al;    /* the tokenizer's allocator */
} dsi_chat_source;

DSI_FUNC void dsi_tokenizer_chat_source(const ds_tokenizer *t, dsi_chat_source *out);

/* A byte range [s, e) of a text. */
typedef struct dsi_span { size_t s, e; } dsi_span;

/* ds_tokenizer_encode (flags as there) with plain spans: inside the n_plain
 * spans (sorted, not overlapping) no added or special token is matched, so
 * their text is encoded as ordinary text; a token is matched only where it
 * lies wholly outside them. The pre-tokenizer and BPE run over the text
 * between matched tokens as ds_tokenizer_encode's do, spans or not. With no
 * spans this is ds_tokenizer_encode. The same buffer rules; messages on
 * failure in *e (fn names the caller in the DS_ERR_LIMIT one); not published. */
DSI_FUNC ds_status dsi_tokenizer_encode_plain(const ds_tokenizer *t, const char *text, size_t len, int flags,
                                              const dsi_span *plain, size_t n_plain, int32_t *ids, size_t cap,
                                              size_t *n_out, dsi_err *e, const char *fn);

/* Copies a result of n bytes into the caller's buffer buf[cap]: *len_out = n
 * always; DS_ERR_LIMIT (message naming fn) when it does not fit; a NUL
 * after it when there is room. */
DSI_FUNC ds_status dsi_tokenizer_copy_out(const uint8_t *src, size_t n, char *buf, size_t cap, size_t *len_out,
                                          dsi_err *e, const char *fn);

/* Test hook: splits text with one Split pre-tokenizer step (tokenizer.c). */
DSI_FUNC ds_status dsi_tokenizer_split(const char *pattern, size_t plen, int behavior, bool invert, const char *text,
                                       size_t len, size_t *bounds, size_t cap_pairs, size_t *n_pairs, dsi_err *e);

/* Fills the tokenizer summary fields of cfg (vocab, merges, added tokens,
 * chat template present) from a built tokenizer. */
DSI_FUNC void dsi_tokenizer_summary(const ds_tokenizer *t, ds_model_config *cfg);

/* Refuses (DS_ERR_CONFIG) a tokenizer with an id at or beyond vocab_size
 * (config.json's): an added token's id, the id written for it in the file,
 * or a vocabulary id. The model could never read or produce such a token.
 * The converter and ds_model_open both call it, so they refuse alike. */
DSI_FUNC ds_status dsi_tokenizer_check_vocab(const ds_tokenizer *t, int vocab_size, dsi_err *e);

#endif /* DS_TOKENIZER_H */
