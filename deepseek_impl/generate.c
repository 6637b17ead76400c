/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * generate.c — the one generation loop: continue a context with a prompt
 * (keeping the prefix it already holds), then sample, decode, apply stop
 * strings, stream and evaluate one token at a time (ds_generator). The
 * callback-driven calls (ds_generate_tokens, and ds_generate for text) run
 * the same steps to the end.
 *
 * Built only on the public API (tokenizer, context, sampler); the one
 * internal thing it touches is the model's allocator, so that a caller's
 * allocator hooks also see these buffers.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
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

/* ==== The generator ====================================================== */

struct ds_generator {
    ds_context *c;
    ds_sampler *s;
    const ds_tokenizer *tok;
    gen_bufs b;
    size_t n_ids;                  /* ids in b.ids: prompt + generated */
    int n_vocab, n_sample, n_ctx;
    int32_t eos;
    int max_tokens;                /* 0 = no limit */
    ds_token_fn on_token;
    void *user;
    int ignore_eos;
    ds_logits_fn on_logits;
    void *logits_user;
    int32_t last_token;            /* sampled by the last step; -1: none (ds_generator_last) */
    float last_logprob;
    char **stop;                   /* (n_stop) owned copies */
    size_t *stop_len;
    size_t n_stop, max_stop;
    ds_detok_state dstate;
    dsi_buf pending;               /* decoded text not yet released */
    dsi_buf out;                   /* text released by the last step, NUL-terminated */
    ds_generate_stats st;
    bool failed;
    ds_status status;              /* the error that failed it (DS_OK while not failed) */
    char errmsg[512];           /* its message */
    double t_gen;                  /* when the decode phase began */
    /* between the two halves of a step (gen_pick, gen_close) */
    int32_t next;                  /* the token picked (its text released) and still to evaluate, -1:
                                      none. ds_generator_step leaves it set between steps for a
                                      generator that picked after the pass */
    size_t n_before;               /* released text that belongs to the token (the rest: the -1 call) */
    /* a deferred prompt (defer_prompt): ids [pend_at, pend_at + n_pend) are not evaluated yet */
    size_t pend_at;
    int n_pend, chunk;
};

DS_API const char *ds_stop_reason_name(ds_stop_reason r) {
    switch (r) {
    case DS_STOP_NONE: return "none";
    case DS_STOP_EOS: return "eos";
    case DS_STOP_LENGTH: return "length";
    case DS_STOP_CONTEXT_FULL: return "context_full";
    case DS_STOP_STRING: return "stop_string";
    case DS_STOP_CALLBACK: return "callback";
    case DS_STOP_ABORT: return "abort";
    }
    return "unknown";
}

DS_API ds_generate_params ds_generate_default_params(void) {
    ds_generate_params p;
    memset(&p, 0, sizeof p);
    return p;
}

DS_API void ds_generator_free(ds_generator *g) {
    if (!g) return;
    const dsi_alloc *al = g->b.al;
    gen_bufs_free(&g->b);
    for (size_t i = 0; i < g->n_stop; i++) dsi_free(al, g->stop[i]);
    dsi_free(al, g->stop);
    dsi_free(al, g->stop_len);
    dsi_buf_free(&g->pending);
    dsi_buf_free(&g->out);
    dsi_free(al, g);
}

/* Copies the stop strings, leaving out empty ones. */
static ds_status gen_copy_stops(ds_generator *g, const ds_generate_params *p, dsi_err *e) {
    if (!p->n_stop) return DS_OK;
    if (!p->stop) return dsi_fail(e, DS_ERR_INVALID_ARG, "generate: %zu stop strings but stop is NULL", p->n_stop);
    const dsi_alloc *al = g->b.al;
    g->stop = dsi_calloc(al, p->n_stop, sizeof *g->stop);
    g->stop_len = dsi_calloc(al, p->n_stop, sizeof *g->stop_len);
    if (!g->stop || !g->stop_len) return dsi_fail(e, DS_ERR_NOMEM, "generate: out of memory for stop strings");
    for (size_t i = 0; i < p->n_stop; i++) {
        if (!p->stop[i]) return dsi_fail(e, DS_ERR_INVALID_ARG, "generate: stop string %zu is NULL", i);
        size_t L = strlen(p->stop[i]);
        if (!L) continue;
        char *copy = dsi_malloc(al, L + 1);
        if (!copy) return dsi_fail(e, DS_ERR_NOMEM, "generate: out of memory for stop strings");
        memcpy(copy, p->stop[i], L + 1);
        g->stop[g->n_stop] = copy;
        g->stop_len[g->n_stop++] = L;
        if (L > g->max_stop) g->max_stop = L;
    }
    return DS_OK;
}

/* Sets up a generator and evaluates what the context lacks of the prompt.
 * none: generate nothing (ds_generate's max_tokens 0): stopped with
 * DS_STOP_LENGTH once the prompt is in. */
static ds_status gen_new(ds_generator **out, ds_context *c, ds_sampler *s, const int32_t *prompt, size_t n_prompt,
                         const ds_generate_params *params, bool none, dsi_err *e) {
    *out = NULL;
    ds_generate_params def = ds_generate_default_params();
    const ds_generate_params *p = params ? params : &def;
    if (!c || !s || (!prompt && n_prompt))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "generate: %s is NULL", !c ? "context" : !s ? "sampler" : "prompt");
    if (p->max_tokens < 0)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "generate: max_tokens must be >= 0, not %d", p->max_tokens);
    if (n_prompt == 0) return dsi_fail(e, DS_ERR_INVALID_ARG, "generate: the prompt has no tokens");
    ds_model *m = ds_context_model(c);
    if (!m) return dsi_fail(e, DS_ERR_MISUSE, "generate: the context has no model");
    const ds_tokenizer *tok = ds_model_tokenizer(m);
    ds_model_config cfg;
    ds_status st = ds_model_get_config(m, &cfg);
    if (st) return dsi_fail(e, st, "%s", ds_last_error());
    if (!tok || cfg.vocab_size <= 0)
        return dsi_fail(e, DS_ERR_MISUSE, "generate: the model has no tokenizer or vocabulary");
    const int n_ctx = ds_context_n_ctx(c);
    if (n_ctx <= 0 || n_prompt > (size_t)n_ctx)
        return dsi_fail(e, DS_ERR_LIMIT, "prompt of %zu tokens exceeds the context of %d", n_prompt, n_ctx);

    ds_generator *g = dsi_calloc(&m->al, 1, sizeof *g);
    if (!g) return dsi_fail(e, DS_ERR_NOMEM, "generate: out of memory");
    g->b.al = &m->al;
    dsi_buf_init(&g->pending, &m->al);
    dsi_buf_init(&g->out, &m->al);
    g->c = c;
    g->s = s;
    g->tok = tok;
    /* the model's vocabulary is often padded past the tokenizer's; ids
     * there have no text, so they are never sampled */
    g->n_vocab = cfg.vocab_size;
    int n_tok = ds_tokenizer_vocab_size(tok);
    g->n_sample = n_tok > 0 && n_tok < g->n_vocab ? n_tok : g->n_vocab;
    g->eos = ds_tokenizer_eos(tok);
    g->n_ctx = n_ctx;
    g->max_tokens = p->max_tokens;
    g->on_token = p->on_token;
    g->user = p->user;
    g->ignore_eos = p->ignore_eos != 0;
    g->next = -1;
    if (p->prompt_chunk < 0) {
        st = dsi_fail(e, DS_ERR_INVALID_ARG, "generate: prompt_chunk must be >= 0, not %d", p->prompt_chunk);
        goto fail;
    }
    g->chunk = p->prompt_chunk > 0 ? p->prompt_chunk : 128;
    g->on_logits = p->on_logits;
    g->logits_user = p->logits_user;
    g->last_token = -1;
    g->st.n_prompt = (int)n_prompt;
    if ((st = gen_copy_stops(g, p, e)) != DS_OK) goto fail;

    /* ---- buffers: history for every token that can still come (after
     * the context fills, one more sampled token can be emitted) ---- */
    {
        size_t room = (size_t)n_ctx - n_prompt + 1;
        size_t more = g->max_tokens && (size_t)g->max_tokens < room ? (size_t)g->max_tokens : room;
        if ((st = gen_grow_ids(&g->b, n_prompt + more, e)) != DS_OK) goto fail;
    }
    memcpy(g->b.ids, prompt, n_prompt * sizeof *prompt);
    g->n_ids = n_prompt;
    g->b.logits = dsi_calloc(g->b.al, (size_t)g->n_vocab, sizeof *g->b.logits);
    g->b.piece = dsi_malloc(g->b.al, GEN_PIECE_BYTES);
    g->b.cap_piece = GEN_PIECE_BYTES;
    if (!g->b.logits || !g->b.piece) {
        st = dsi_fail(e, DS_ERR_NOMEM, "generate: out of memory for %d logits", g->n_vocab);
        goto fail;
    }

    /* ---- continue the context: keep the longest common prefix, but
     * evaluate at least the last prompt token, whose logits come next ---- */
    int n_held = 0;
    const int32_t *held = ds_context_tokens(c, &n_held);
    size_t keep = 0;
    while (keep < (size_t)n_held && keep < n_prompt && held[keep] == prompt[keep]) keep++;
    if (keep == n_prompt) keep--;
    if ((st = ds_context_truncate(c, (int)keep)) != DS_OK) goto fail_published;
    g->st.n_reused = (int)keep;
    if (p->defer_prompt && !none) {   /* ds_generator_step evaluates it */
        g->pend_at = keep;
        g->n_pend = (int)(n_prompt - keep);
        *out = g;
        return DS_OK;
    }
    double t0 = dsi_now_seconds();
    st = ds_context_eval(c, prompt + keep, n_prompt - keep, g->b.logits, 0);
    g->st.prompt_seconds = dsi_now_seconds() - t0;
    g->t_gen = dsi_now_seconds();
    if (st == DS_ERR_CANCELLED) {
        g->st.stop_reason = DS_STOP_ABORT;
    } else if (st) {
        goto fail_published;
    } else {
        g->st.n_evaluated = (int)(n_prompt - keep);
        if (none) g->st.stop_reason = DS_STOP_LENGTH;
    }
    *out = g;
    return DS_OK;

fail_published:
    /* the context set the thread's message; carry it */
    dsi_fail(e, st, "%s", ds_last_error());
fail:
    ds_generator_free(g);
    return st;
}

DS_API ds_status ds_generator_new(ds_generator **out, ds_context *c, ds_sampler *s, const int32_t *prompt,
                                  size_t n_prompt, const ds_generate_params *params) {
    dsi_err e = {0};
    if (!out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generator_new: out is NULL");
        return dsi_publish(&e);
    }
    ds_status st = gen_new(out, c, s, prompt, n_prompt, params, false, &e);
    return st ? dsi_publish(&e) : DS_OK;
}

/* The pending (or released) text: a view of its buffer. */
static const char *gen_text(const dsi_buf *b) { return b->data ? (const char *)b->data : ""; }

/* Appends n bytes to buffer b (pending text, or released text, which stays
 * NUL-terminated). */
static ds_status gen_append(dsi_buf *b, const char *p, size_t n, bool nul, dsi_err *e) {
    dsi_buf_put(b, p, n);
    if (nul) {
        dsi_buf_put(b, "", 1);
        if (!b->failed) b->len--;
    }
    return b->failed ? dsi_fail(e, DS_ERR_NOMEM, "generate: out of memory for %zu bytes of text", b->len + n) : DS_OK;
}

/* Where the first stop string begins in the pending text, or SIZE_MAX. An
 * occurrence cannot begin in text already released: that text was released
 * only because no stop string starts there (gen_holdback). */
static size_t gen_find_stop(const ds_generator *g) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < g->n_stop; i++) {
        size_t L = g->stop_len[i];
        for (size_t q = 0; q + L <= g->pending.len && q < best; q++)
            if (memcmp(gen_text(&g->pending) + q, g->stop[i], L) == 0) {
                best = q;
                break;
            }
    }
    return best;
}

/* Bytes at the end of the pending text that could begin a stop string. */
static size_t gen_holdback(const ds_generator *g) {
    size_t k = g->max_stop ? g->max_stop - 1 : 0;
    if (k > g->pending.len) k = g->pending.len;
    for (; k > 0; k--) {
        const char *tail = gen_text(&g->pending) + g->pending.len - k;
        for (size_t i = 0; i < g->n_stop; i++)
            if (g->stop_len[i] > k && memcmp(tail, g->stop[i], k) == 0) return k;
    }
    return 0;
}

/* Releases the pending text up to a stop string (then sets the stop reason
 * unless one is set) or, when final, all of it; otherwise all but what could
 * begin a stop string. */
static ds_status gen_settle(ds_generator *g, bool final, dsi_err *e) {
    size_t cut = gen_find_stop(g), upto;
    if (cut != SIZE_MAX) {
        if (!g->st.stop_reason) g->st.stop_reason = DS_STOP_STRING;
        upto = cut;
        final = true;
    } else {
        upto = final ? g->pending.len : g->pending.len - gen_holdback(g);
    }
    ds_status st = gen_append(&g->out, gen_text(&g->pending), upto, true, e);
    if (st) return st;
    if (final) {
        g->pending.len = 0;
    } else if (upto) {   /* (nothing held yet: the buffer may not exist, and memmove(NULL, ...) is undefined) */
        memmove(g->pending.data, g->pending.data + upto, g->pending.len - upto);
        g->pending.len -= upto;
    }
    return DS_OK;
}

/* The end: flushes the decoder (an incomplete character becomes U+FFFD) and
 * releases what was held back. */
static ds_status gen_flush(ds_generator *g, dsi_err *e) {
    size_t plen = 0;
    ds_status st = gen_piece(&g->b, g->tok, &g->dstate, -1, &plen, e);
    if (!st) st = gen_append(&g->pending, g->b.piece, plen, false, e);
    if (!st) st = gen_settle(g, true, e);
    return st;
}

/* log softmax(logits)[t] at temperature 1 over n ids: the max is taken out
 * first so that exp never overflows; masked (-infinity) ids add nothing. */
static float gen_logprob(const float *logits, int n, int32_t t) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    return (float)((double)logits[t] - mx - log(sum));
}

/* Marks g failed with status st, its message from e (published), or the
 * thread's when e is NULL (the callee published it). Returns st. */
static ds_status gen_failed(ds_generator *g, ds_status st, const dsi_err *e) {
    if (e) (void)dsi_publish(e);
    g->failed = true;
    g->status = st;
    snprintf(g->errmsg, sizeof g->errmsg, "%s", e ? e->msg : ds_last_error());
    g->st.generate_seconds = dsi_now_seconds() - g->t_gen;
    return st;
}

/* Empties the text released by the last step. */
static void gen_out_reset(ds_generator *g) {
    g->out.len = 0;
    if (g->out.data) g->out.data[0] = '\0';
}

/* The first half of a step: samples a token from the logits of the last
 * evaluated one, decodes it, applies the stop strings, calls on_token
 * (appending to the step's text), and sets g->next to the token to
 * evaluate (-1 when generation ends with it). An error fails g (and is
 * returned with its message published). */
static ds_status gen_pick(ds_generator *g) {
    dsi_err e = {0};
    g->next = -1;
    g->n_before = g->out.len;
    size_t from = g->out.len;   /* this token's text begins there */
    ds_status st;
    int32_t t = -1;

    /* ---- sample ---- */
    if (g->ignore_eos && g->eos >= 0 && g->eos < g->n_sample) g->b.logits[g->eos] = -INFINITY;
    if (g->on_logits && g->on_logits(g->logits_user, g->b.logits, g->n_sample, g->b.ids, g->n_ids)) {
        g->st.stop_reason = DS_STOP_CALLBACK;   /* nothing sampled */
        return DS_OK;
    }
    if ((st = ds_sampler_sample(g->s, g->b.logits, g->n_sample, g->b.ids, g->n_ids, &t)) != DS_OK)
        return gen_failed(g, st, NULL);   /* the sampler set the message */
    g->last_token = t;
    g->last_logprob = gen_logprob(g->b.logits, g->n_sample, t);
    if (!g->ignore_eos && g->eos >= 0 && t == g->eos) {
        g->st.stop_reason = DS_STOP_EOS;   /* not passed on, not evaluated */
        return DS_OK;
    }
    /* ---- decode, look for stop strings, release ---- */
    g->b.ids[g->n_ids++] = t;
    g->st.n_generated++;
    size_t plen = 0;
    if ((st = gen_piece(&g->b, g->tok, &g->dstate, t, &plen, &e)) != DS_OK ||
        (st = gen_append(&g->pending, g->b.piece, plen, false, &e)) != DS_OK ||
        (st = gen_settle(g, false, &e)) != DS_OK)
        return gen_failed(g, st, &e);
    if (!g->st.stop_reason && g->max_tokens && g->st.n_generated >= g->max_tokens)
        g->st.stop_reason = DS_STOP_LENGTH;
    else if (!g->st.stop_reason && ds_context_n_past(g->c) >= g->n_ctx)
        g->st.stop_reason = DS_STOP_CONTEXT_FULL;
    if (g->st.stop_reason == DS_STOP_LENGTH || g->st.stop_reason == DS_STOP_CONTEXT_FULL) {
        if ((st = gen_flush(g, &e)) != DS_OK) return gen_failed(g, st, &e);
    }
    g->n_before = g->out.len;
    if (g->on_token && g->on_token(g->user, t, gen_text(&g->out) + from, g->out.len - from) && !g->st.stop_reason)
        g->st.stop_reason = DS_STOP_CALLBACK;
    /* ---- evaluate it, unless it ends the generation ---- */
    if (!g->st.stop_reason) g->next = t;
    return DS_OK;
}

/* The second half, once g->next was evaluated (or not: ev is its outcome,
 * DS_OK when nothing was evaluated): on an evaluation error fails g; at the
 * end, releases what is still held back (the call with -1). */
static ds_status gen_close(ds_generator *g, ds_status ev) {
    dsi_err e = {0};
    ds_status st;
    g->next = -1;
    if (ev == DS_ERR_CANCELLED) {
        g->st.stop_reason = DS_STOP_ABORT;
    } else if (ev) {
        return gen_failed(g, ev, NULL);   /* the context set the message */
    }
    /* ---- the end: what is still held back comes in a call with -1 ---- */
    if (g->st.stop_reason && g->st.stop_reason != DS_STOP_LENGTH && g->st.stop_reason != DS_STOP_CONTEXT_FULL &&
        g->st.stop_reason != DS_STOP_STRING) {
        if ((st = gen_flush(g, &e)) != DS_OK) return gen_failed(g, st, &e);
        if (g->out.len > g->n_before && g->on_token)
            (void)g->on_token(g->user, -1, gen_text(&g->out) + g->n_before, g->out.len - g->n_before);
    }
    g->st.generate_seconds = dsi_now_seconds() - g->t_gen;
    return DS_OK;
}

/* Evaluates what is left of a deferred prompt at once (ds_generator_next). */
static ds_status gen_prompt_rest(ds_generator *g) {
    double t0 = dsi_now_seconds();
    ds_status ev = ds_context_eval(g->c, g->b.ids + g->pend_at, (size_t)g->n_pend, g->b.logits, 0);
    g->st.prompt_seconds += dsi_now_seconds() - t0;
    g->t_gen = dsi_now_seconds();
    if (ev == DS_ERR_CANCELLED) {
        g->st.stop_reason = DS_STOP_ABORT;
        return DS_OK;
    }
    if (ev) return gen_failed(g, ev, NULL);   /* the context set the message */
    g->st.n_evaluated += g->n_pend;
    g->pend_at += (size_t)g->n_pend;
    g->n_pend = 0;
    return DS_OK;
}

DS_API ds_status ds_generator_last(const ds_generator *g, int32_t *token, float *logprob) {
    if (token) *token = -1;
    if (logprob) *logprob = 0;
    if (!g) {
        dsi_err e = {0};
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generator_last: generator is NULL");
        return dsi_publish(&e);
    }
    if (token) *token = g->last_token;
    if (logprob) *logprob = g->last_token >= 0 ? g->last_logprob : 0;
    return DS_OK;
}

DS_API ds_status ds_generator_next(ds_generator *g, const char **text, size_t *len) {
    dsi_err e = {0};
    if (text) *text = "";
    if (len) *len = 0;
    if (!g) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generator_next: generator is NULL");
        return dsi_publish(&e);
    }
    g->last_token = -1;
    if (g->st.stop_reason || g->failed) return DS_OK;
    gen_out_reset(g);
    ds_status st;
    if (g->n_pend > 0 && ((st = gen_prompt_rest(g)) != DS_OK || g->st.stop_reason)) goto out;
    if (g->next >= 0) {   /* a token ds_generator_step picked: evaluate it first */
        ds_status ev = ds_context_eval(g->c, &g->next, 1, g->b.logits, 0);
        if ((st = gen_close(g, ev)) != DS_OK || g->st.stop_reason) goto out;
        gen_out_reset(g);
    }
    if ((st = gen_pick(g)) != DS_OK) return st;
    ds_status ev = g->next >= 0 ? ds_context_eval(g->c, &g->next, 1, g->b.logits, 0) : DS_OK;
    st = gen_close(g, ev);
out:
    if (st) return st;
    if (text) *text = gen_text(&g->out);
    if (len) *len = g->out.len;
    return DS_OK;
}

/* A generator that can go on. */
static bool gen_live(const ds_generator *g) { return g && !g->st.stop_reason && !g->failed; }

DS_API ds_status ds_generator_step(ds_generator *const *gs, size_t n) {
    dsi_err e = {0};
    if (!gs && n) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generator_step: gs is NULL");
        return dsi_publish(&e);
    }
    if (n > DSI_MAX_BATCH) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generator_step: %zu generators; at most %d in one step", n,
                 DSI_MAX_BATCH);
        return dsi_publish(&e);
    }
    /* all on one context, each on its own sequence */
    ds_context *root = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!gs[i]) continue;
        ds_context *r = ds_context_seq(gs[i]->c, 0);
        if (!root) root = r;
        if (r != root) {
            dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generator_step: generator %zu is on another context than the first",
                     i);
            return dsi_publish(&e);
        }
        for (size_t k = 0; k < i; k++)
            if (gs[k] && gs[k]->c == gs[i]->c) {
                dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_generator_step: generators %zu and %zu share sequence %d", k, i,
                         ds_context_seq_id(gs[i]->c));
                return dsi_publish(&e);
            }
    }
    ds_status first = DS_OK;
    bool picked[DSI_MAX_BATCH] = {false};
    /* ---- generators with the logits of their last token and nothing to
     * evaluate sample now; each picks at most once a step ---- */
    for (size_t i = 0; i < n; i++) {
        ds_generator *g = gs[i];
        if (g) g->last_token = -1;
        if (!gen_live(g)) continue;
        gen_out_reset(g);
        if (g->n_pend > 0 || g->next >= 0) continue;
        picked[i] = true;
        ds_status st = gen_pick(g);
        if (!st && g->next < 0) st = gen_close(g, DS_OK);   /* it ends here: flush what is held back */
        if (st && !first) first = st;
    }
    /* ---- the pass: every picked token, then prompt chunks, 256 tokens at
     * most; a sequence whose abort callback asks to stop leaves it, and the
     * pass runs again without it ---- */
    dsi_seq_run runs[DSI_MAX_BATCH];
    size_t who[DSI_MAX_BATCH];
    int m = 0, budget = DSI_MAX_BATCH;
    for (size_t i = 0; i < n; i++)
        if (gen_live(gs[i]) && gs[i]->next >= 0) {
            runs[m] = (dsi_seq_run){gs[i]->c, &gs[i]->next, 1, gs[i]->b.logits};
            who[m++] = i;
            budget--;
        }
    for (size_t i = 0; i < n && budget > 0; i++) {
        ds_generator *g = gs[i];
        if (!gen_live(g) || g->n_pend <= 0) continue;
        int k = g->n_pend < g->chunk ? g->n_pend : g->chunk;
        if (k > budget) k = budget;
        runs[m] = (dsi_seq_run){g->c, g->b.ids + g->pend_at, k, k == g->n_pend ? g->b.logits : NULL};
        who[m++] = i;
        budget -= k;
    }
    ds_status ev = DS_OK;
    double t0 = dsi_now_seconds();
    while (m > 0) {
        ev = dsi_context_eval_runs(runs, m, "ds_generator_step", &e);
        if (ev != DS_ERR_CANCELLED) break;
        int k = 0;
        for (int i = 0; i < m; i++) {
            ds_generator *g = gs[who[i]];
            if (dsi_context_aborted(g->c)) {
                (void)gen_close(g, DS_ERR_CANCELLED);
            } else {
                runs[k] = runs[i];
                who[k++] = who[i];
            }
        }
        if (k == m) break;   /* cancelled, yet nobody asks now: report it for all */
        m = k;
    }
    if (ev && ev != DS_ERR_CANCELLED) (void)dsi_publish(&e);
    double dt = dsi_now_seconds() - t0;
    /* ---- after it: tokens evaluated close, prompts move on; those ready
     * and not picked yet sample now (a prompt's first token) ---- */
    for (int r = 0; r < m; r++) {
        size_t i = who[r];
        ds_generator *g = gs[i];
        ds_status st;
        if (runs[r].tok == &g->next) {
            st = gen_close(g, ev);
        } else if (ev) {
            st = ev == DS_ERR_CANCELLED ? gen_close(g, ev) : gen_failed(g, ev, NULL);
        } else {
            g->st.prompt_seconds += dt;
            g->st.n_evaluated += runs[r].n;
            g->pend_at += (size_t)runs[r].n;
            g->n_pend -= runs[r].n;
            st = DS_OK;
            if (!g->n_pend) g->t_gen = dsi_now_seconds();
        }
        if (!st && gen_live(g) && !picked[i] && g->n_pend == 0 && g->next < 0) {
            st = gen_pick(g);
            if (!st && g->next < 0) st = gen_close(g, DS_OK);
        }
        if (st && !first) first = st;
    }
    return first;
}

DS_API void ds_generator_text(const ds_generator *g, const char **text, size_t *len) {
    if (text) *text = g ? gen_text(&g->out) : "";
    if (len) *len = g ? g->out.len : 0;
}

DS_API ds_status ds_generator_status(const ds_generator *g) { return g ? g->status : DS_OK; }
DS_API const char *ds_generator_errmsg(const ds_generator *g) { return g && g->failed ? g->errmsg : ""; }

DS_API ds_stop_reason ds_generator_stop_reason(const ds_generator *g) { return g ? g->st.stop_reason : DS_STOP_NONE; }

DS_API void ds_generator_stats(const ds_generator *g, ds_generate_stats *out) {
    if (!out) return;
    if (g) *out = g->st;
    else memset(out, 0, sizeof *out);
}

/* Runs a generator to its end (the loop of every callback-driven call). */
static ds_status gen_run(ds_context *c, ds_sampler *s, const int32_t *prompt, size_t n_prompt,
                         const ds_generate_params *p, bool none, ds_generate_stats *gs) {
    dsi_err e = {0};
    ds_generator *g = NULL;
    ds_status st = gen_new(&g, c, s, prompt, n_prompt, p, none, &e);
    if (st) {
        gs->n_prompt = n_prompt > (size_t)INT32_MAX ? INT32_MAX : (int)n_prompt;
        return dsi_publish(&e);
    }
    while (st == DS_OK && !g->st.stop_reason && !g->failed) st = ds_generator_next(g, NULL, NULL);
    *gs = g->st;
    ds_generator_free(g);
    return st;
}

DS_API ds_status ds_generate_tokens(ds_context *c, ds_sampler *s, const int32_t *prompt, size_t n_prompt,
                                    const ds_generate_params *params, ds_generate_stats *stats) {
    ds_generate_stats local;
    ds_generate_stats *gs = stats ? stats : &local;
    memset(gs, 0, sizeof *gs);
    return gen_run(c, s, prompt, n_prompt, params, false, gs);
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
    const ds_tokenizer *tok = m ? ds_model_tokenizer(m) : NULL;
    if (!tok) {
        dsi_fail(&e, DS_ERR_MISUSE, "ds_generate: the context has no model or tokenizer");
        return dsi_publish(&e);
    }

    /* ---- tokenize, then the one loop ---- */
    gen_bufs b = {&m->al, NULL, 0, NULL, NULL, 0};
    size_t n_prompt = 0;
    ds_status st = gen_encode(&b, tok, prompt, &n_prompt, &e);
    if (st == DS_OK && n_prompt == 0)
        st = dsi_fail(&e, DS_ERR_INVALID_ARG, "generate: the prompt is empty and the tokenizer adds no BOS token");
    if (st) {
        gen_bufs_free(&b);
        return dsi_publish(&e);
    }
    ds_generate_params p = ds_generate_default_params();
    p.max_tokens = max_tokens;
    p.on_token = on_token;
    p.user = user;
    st = gen_run(c, s, b.ids, n_prompt, &p, max_tokens == 0, gs);
    gen_bufs_free(&b);
    return st;
}
