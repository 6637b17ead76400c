/*
 * generate.c — the text-in, text-out loop: tokenize, prefill, then sample,
 * stream and decode one token at a time.
 *
 * Built only on the public API (tokenizer, context, sampler); the one
 * internal thing it touches is the model's allocator, so that a caller's
 * allocator hooks also see these buffers.
 */
#include "internal.h"

#include <stdlib.h>

/* Room for one streamed piece: the header asks for 64 bytes plus the longest
 * token; this covers every real vocabulary, and a longer token grows it. */
#define GEN_PIECE_BYTES (64 + 4096)

/* ==== Buffers ============================================================ */

typedef struct gen_bufs {
    const dsi_alloc *al;
    int32_t *ids;        /* (cap_ids) prompt, then generated tokens: the sampler's history */
    size_t cap_ids;
    float *logits;       /* (n_vocab) logits of the last evaluated token */
    char *piece;         /* (cap_piece) one decoded piece */
    size_t cap_piece;
} gen_bufs;

static void gen_bufs_free(gen_bufs *b) {
    dsi_free(b->al, b->ids);
    dsi_free(b->al, b->logits);
    dsi_free(b->al, b->piece);
    b->ids = NULL;
    b->logits = NULL;
    b->piece = NULL;
}

/* Grows the id buffer to hold n ids (keeps its contents). */
static ds_status gen_grow_ids(gen_bufs *b, size_t n, dsi_err *e) {
    if (n <= b->cap_ids) return DS_OK;
    if (n > SIZE_MAX / sizeof *b->ids) return dsi_fail(e, DS_ERR_NOMEM, "generate: %zu token ids is too many", n);
    int32_t *p = dsi_realloc(b->al, b->ids, n * sizeof *p);
    if (!p) return dsi_fail(e, DS_ERR_NOMEM, "generate: out of memory for %zu token ids", n);
    b->ids = p;
    b->cap_ids = n;
    return DS_OK;
}

/* ==== Steps ============================================================== */

/* Encodes the prompt into b->ids with one leading BOS when the tokenizer
 * adds one (add_bos_token). The text is encoded without the BOS flag and
 * BOS is prepended unless the text already began with it: a chat template
 * renders the BOS token as text, and a doubled BOS changes what the model
 * sees. Returns the number of ids in *n. */
static ds_status gen_encode(gen_bufs *b, const ds_tokenizer *tok, const char *prompt, size_t *n, dsi_err *e) {
    size_t len = strlen(prompt), got = 0;
    /* byte-level BPE gives at most one id per byte; +1 for BOS, +1 so that
     * an empty prompt still has room */
    ds_status st = gen_grow_ids(b, len < SIZE_MAX - 2 ? len + 2 : len, e);
    if (st) return st;
    for (int attempt = 0;; attempt++) {
        st = ds_tokenizer_encode(tok, prompt, len, 0, b->ids + 1, b->cap_ids - 1, &got);
        if (st == DS_ERR_LIMIT && got > b->cap_ids - 1 && attempt == 0) {
            if ((st = gen_grow_ids(b, got + 1, e)) != DS_OK) return st;
            continue;
        }
        break;
    }
    if (st) {
        /* the tokenizer's own message (invalid UTF-8 at byte N, ...) */
        dsi_fail(e, st, "%s", ds_last_error());
        return dsi_prefix(e, "generate: prompt");
    }
    int32_t bos = ds_tokenizer_adds_bos(tok) ? ds_tokenizer_bos(tok) : -1;
    if (bos >= 0 && !(got > 0 && b->ids[1] == bos)) {
        b->ids[0] = bos;
        *n = got + 1;
    } else {
        memmove(b->ids, b->ids + 1, got * sizeof *b->ids);
        *n = got;
    }
    return DS_OK;
}

/* Decodes one id into b->piece, growing the buffer when a token is longer
 * than expected (the stream state is restored before the retry). */
static ds_status gen_piece(gen_bufs *b, const ds_tokenizer *tok, ds_detok_state *ds, int32_t id, size_t *len,
                           dsi_err *e) {
    ds_detok_state saved = *ds;
    size_t got = 0;
    ds_status st = ds_tokenizer_decode_stream(tok, ds, id, b->piece, b->cap_piece, &got);
    if (st == DS_ERR_LIMIT && got >= b->cap_piece && got < SIZE_MAX - 64) {
        size_t cap = got + 64;
        char *p = dsi_realloc(b->al, b->piece, cap);
        if (!p) return dsi_fail(e, DS_ERR_NOMEM, "generate: out of memory for a piece of %zu bytes", got);
        b->piece = p;
        b->cap_piece = cap;
        *ds = saved;
        st = ds_tokenizer_decode_stream(tok, ds, id, b->piece, b->cap_piece, &got);
    }
    if (st) {
        dsi_fail(e, st, "%s", ds_last_error());
        return dsi_prefix(e, "generate: decoding token %ld", (long)id);
    }
    if (got < b->cap_piece) b->piece[got] = '\0';
    *len = got;
    return DS_OK;
}

/* ==== ds_generate ======================================================== */

DS_API ds_status ds_generate(ds_context *c, ds_sampler *s, const char *prompt, int max_tokens, ds_token_fn on_token,
                             void *user, ds_generate_stats *stats) {
    dsi_err e = {0};
    ds_generate_stats local;
    ds_generate_stats *gs = stats ? stats : &local;
    memset(gs, 0, sizeof *gs);

    /* ---- arguments ---- */
    if (!c || !s || !prompt) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generate: %s is NULL", !c ? "context" : !s ? "sampler" : "prompt");
        return dsi_publish(&e);
    }
    if (max_tokens < 0) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generate: max_tokens must be >= 0, not %d", max_tokens);
        return dsi_publish(&e);
    }
    ds_model *m = ds_context_model(c);
    if (!m) {
        dsi_fail(&e, DS_ERR_MISUSE, "ds_generate: the context has no model");
        return dsi_publish(&e);
    }
    const ds_tokenizer *tok = ds_model_tokenizer(m);
    ds_model_config cfg;
    ds_status st = ds_model_get_config(m, &cfg);
    if (st) return st;
    if (!tok || cfg.vocab_size <= 0) {
        dsi_fail(&e, DS_ERR_MISUSE, "ds_generate: the model has no tokenizer or vocabulary");
        return dsi_publish(&e);
    }
    /* the model's vocabulary is often padded past the tokenizer's; ids
     * there have no text, so they are never sampled */
    const int n_vocab = cfg.vocab_size;
    const int n_tok = ds_tokenizer_vocab_size(tok);
    const int n_sample = n_tok > 0 && n_tok < n_vocab ? n_tok : n_vocab;
    const int32_t eos = ds_tokenizer_eos(tok);
    const int n_ctx = ds_context_n_ctx(c);

    gen_bufs b = {&m->al, NULL, 0, NULL, NULL, 0};
    size_t n_prompt = 0;

    /* ---- tokenize and check the prompt fits ---- */
    if ((st = gen_encode(&b, tok, prompt, &n_prompt, &e)) != DS_OK) goto fail;
    gs->n_prompt = n_prompt > (size_t)INT32_MAX ? INT32_MAX : (int)n_prompt;
    if (n_prompt == 0) {
        st = dsi_fail(&e, DS_ERR_INVALID_ARG, "generate: the prompt is empty and the tokenizer adds no BOS token");
        goto fail;
    }
    if (n_ctx <= 0 || n_prompt > (size_t)n_ctx) {
        st = dsi_fail(&e, DS_ERR_LIMIT, "prompt of %zu tokens exceeds the context of %d", n_prompt, n_ctx);
        goto fail;
    }

    /* ---- buffers: history for every token that can still come (after
     * the context fills, one more sampled token can be emitted) ---- */
    {
        size_t room = (size_t)n_ctx - n_prompt + 1;
        size_t more = (size_t)max_tokens < room ? (size_t)max_tokens : room;
        if ((st = gen_grow_ids(&b, n_prompt + more, &e)) != DS_OK) goto fail;
    }
    b.logits = dsi_calloc(b.al, (size_t)n_vocab, sizeof *b.logits);
    b.piece = dsi_malloc(b.al, GEN_PIECE_BYTES);
    b.cap_piece = GEN_PIECE_BYTES;
    if (!b.logits || !b.piece) {
        st = dsi_fail(&e, DS_ERR_NOMEM, "generate: out of memory for %d logits", n_vocab);
        goto fail;
    }

    /* ---- prefill ---- */
    ds_context_reset(c);
    double t0 = dsi_now_seconds();
    st = ds_context_eval(c, b.ids, n_prompt, b.logits, 0);
    gs->prompt_seconds = dsi_now_seconds() - t0;
    if (st) goto fail_published;

    /* ---- decode: sample, stream, evaluate ---- */
    double t1 = dsi_now_seconds();
    ds_detok_state dstate;
    memset(&dstate, 0, sizeof dstate);
    size_t n_hist = n_prompt;
    for (int g = 0; g < max_tokens;) {
        int32_t t;
        st = ds_sampler_sample(s, b.logits, n_sample, b.ids, n_hist, &t);
        if (st) break;
        if (eos >= 0 && t == eos) break;
        b.ids[n_hist++] = t;
        size_t plen = 0;
        if ((st = gen_piece(&b, tok, &dstate, t, &plen, &e)) != DS_OK) {
            gs->generate_seconds = dsi_now_seconds() - t1;
            goto fail;
        }
        gs->n_generated = ++g;
        if (on_token && on_token(user, t, b.piece, plen)) break;
        if (g == max_tokens || ds_context_n_past(c) >= n_ctx) break;
        st = ds_context_eval(c, &t, 1, b.logits, 0);
        if (st) break;
    }
    gs->generate_seconds = dsi_now_seconds() - t1;
    if (st) goto fail_published;
    gen_bufs_free(&b);
    return DS_OK;

fail:
    gen_bufs_free(&b);
    return dsi_publish(&e);
fail_published:
    /* the sampler or the context already set the thread's message */
    gen_bufs_free(&b);
    return st;
}
