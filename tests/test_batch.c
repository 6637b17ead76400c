/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_batch.c — several sequences in one context (ds_context_seq), one
 * token of each in one forward pass (ds_context_eval_batch), and continuous
 * batching of generators (ds_generator_step), on the trained demo model.
 *
 * The reference for every batched result is the same work done alone on a
 * context of one sequence: the logits of a batch step must match the lone
 * step's within float rounding, and greedy generations must be identical
 * token for token (the demo model is trained, so its greedy choices are not
 * near ties).
 */
#include "deepseek.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static const char *models = "models";
static unsigned char key[DS_KEY_BYTES];

static ds_model *open_demo(uint64_t cache_bytes) {
    char path[1024];
    snprintf(path, sizeof path, "%s/demo.dsm", models);
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.n_threads = 1;
    mp.expert_cache_bytes = cache_bytes;
    mp.prefetch = DS_PREFETCH_OFF;
    ds_model *m = NULL;
    return ds_model_open(&m, path, &mp) == DS_OK ? m : NULL;
}

static ds_context *new_ctx(ds_model *m, int n_ctx, int n_seq) {
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = 1;
    cp.n_seq = n_seq;
    ds_context *c = NULL;
    return ds_context_new(&c, m, &cp) == DS_OK ? c : NULL;
}

static size_t encode(ds_model *m, const char *text, int32_t *ids, size_t cap) {
    size_t n = 0;
    if (ds_tokenizer_encode(ds_model_tokenizer(m), text, strlen(text), DS_TOKENIZE_BOS, ids, cap, &n) != DS_OK) return 0;
    return n;
}

static ds_sampler *greedy(void) {
    ds_sampler_params sp = ds_sampler_default_params();
    sp.temperature = 0;
    ds_sampler *s = NULL;
    return ds_sampler_new(&s, &sp) == DS_OK ? s : NULL;
}

static const char *prompts[] = {
    "And the LORD spake unto Moses, saying",
    "In the beginning God created",
    "Blessed are the meek: for they",
    "And it came to pass, when the king heard",
    "The LORD is my shepherd",
    "Now the serpent was more subtil than any beast",
};
#define N_PROMPTS (sizeof prompts / sizeof *prompts)

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* ==== 1: handles ========================================================== */
static void test_handles(ds_model *m) {
    ds_context *c = new_ctx(m, 64, 3);
    T_CHECK("batch-1.0", c != NULL, "ds_context_new with n_seq 3: %s", ds_last_error());
    if (!c) return;
    T_CHECK("batch-1.1", ds_context_n_seq(c) == 3, "n_seq %d", ds_context_n_seq(c));
    T_CHECK("batch-1.2", ds_context_seq(c, 0) == c, "sequence 0 is the context itself");
    ds_context *s1 = ds_context_seq(c, 1), *s2 = ds_context_seq(c, 2);
    T_CHECK("batch-1.3", s1 && s2 && s1 != s2 && s1 != c, "distinct handles");
    T_CHECK("batch-1.4", !ds_context_seq(c, 3) && !ds_context_seq(c, -1) && !ds_context_seq(NULL, 0),
            "out-of-range sequences are NULL");
    T_CHECK("batch-1.5", ds_context_seq(s2, 1) == s1 && ds_context_seq_id(s2) == 2 && ds_context_n_seq(s1) == 3,
            "a sequence handle reaches its siblings");
    T_CHECK("batch-1.6", ds_context_model(s1) == m && ds_context_n_ctx(s1) == 64, "a sequence has the context's model");
    ds_context_free(s1);   /* does nothing: it belongs to c */
    T_CHECK("batch-1.7", ds_context_seq(c, 1) == s1, "freeing a sequence handle leaves it");
    int32_t one = 5;
    T_STATUS("batch-1.7b", ds_context_eval(s1, &one, 1, NULL, 0), DS_OK, ds_last_error());
    T_CHECK("batch-1.7c", ds_context_n_past(s1) == 1 && ds_context_n_past(c) == 0 && ds_context_n_past(s2) == 0,
            "the handle still works after ds_context_free on it, and only its sequence grew");
    ds_context_free(c);

    ds_context_params cp = ds_context_default_params();
    ds_context *bad = NULL;
    cp.n_seq = 257;
    ds_status st = ds_context_new(&bad, m, &cp);
    T_STATUS("batch-1.8", st, DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK("batch-1.8b", strstr(ds_last_error(), "n_seq") != NULL, "message names n_seq: %s", ds_last_error());
    cp.n_seq = -1;
    st = ds_context_new(&bad, m, &cp);
    T_STATUS("batch-1.9", st, DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK("batch-1.10", ds_context_n_seq(NULL) == 0 && ds_context_seq_id(NULL) == 0, "NULL context");
}

/* ==== 2: sequences are independent; a batch step matches lone steps ====== */
static void test_eval(ds_model *m, int V) {
    enum { NS = 4 };
    ds_context *c = new_ctx(m, 128, NS), *lone = new_ctx(m, 128, 1);
    float *lg = malloc((size_t)V * sizeof *lg), *ref = malloc((size_t)V * sizeof *ref);
    float *bl[NS];
    for (int i = 0; i < NS; i++) bl[i] = malloc((size_t)V * sizeof(float));
    T_CHECK("batch-2.0", c && lone && lg && ref && bl[NS - 1], "setup: %s", ds_last_error());
    if (!c || !lone || !lg || !ref || !bl[NS - 1]) goto out;
    int32_t ids[NS][64];
    size_t n[NS];
    /* each sequence's prompt on its own; its logits are those of a lone context */
    for (int i = 0; i < NS; i++) {
        n[i] = encode(m, prompts[i], ids[i], 64);
        ds_context *q = ds_context_seq(c, i);
        ds_status st = ds_context_eval(q, ids[i], n[i], lg, 0);
        T_STATUS("batch-2.1", st, DS_OK, ds_context_errmsg(q));
        ds_context_reset(lone);
        st = ds_context_eval(lone, ids[i], n[i], ref, 0);
        T_STATUS("batch-2.2", st, DS_OK, ds_context_errmsg(lone));
        T_CHECK("batch-2.3", memcmp(lg, ref, (size_t)V * sizeof *lg) == 0,
                "sequence %d's prompt logits differ from a lone context's", i);
        T_CHECK("batch-2.4", ds_context_n_past(q) == (int)n[i], "sequence %d holds %d, want %zu", i,
                ds_context_n_past(q), n[i]);
    }
    /* re-evaluating sequence 0 does not disturb 1..3 (their KV caches are theirs) */
    ds_context_reset(c);
    T_CHECK("batch-2.5", ds_context_n_past(ds_context_seq(c, 1)) == (int)n[1], "resetting sequence 0 left 1 alone");
    T_STATUS("batch-ok.1", ds_context_eval(c, ids[0], n[0], lg, 0), DS_OK, ds_last_error());

    /* one batched token per sequence against the same token alone */
    int32_t tok[NS];
    ds_context *seqs[NS];
    for (int i = 0; i < NS; i++) {
        tok[i] = (int32_t)(5 + 7 * i);
        seqs[i] = ds_context_seq(c, NS - 1 - i);   /* any order */
    }
    ds_status st = ds_context_eval_batch(seqs, tok, NS, bl);
    T_STATUS("batch-2.6", st, DS_OK, ds_last_error());
    for (int i = 0; i < NS && !st; i++) {
        int s = NS - 1 - i;
        ds_context_reset(lone);
        T_STATUS("batch-ok.2", ds_context_eval(lone, ids[s], n[s], NULL, 0), DS_OK, ds_last_error());
        st = ds_context_eval(lone, &tok[i], 1, ref, 0);
        double md = 0, mx = 0;
        for (int v = 0; v < V; v++) {
            double d = fabs((double)bl[i][v] - ref[v]);
            if (d > md) md = d;
            if (fabs(ref[v]) > mx) mx = fabs(ref[v]);
        }
        T_CHECK("batch-2.7", md <= 1e-4 * (mx > 1 ? mx : 1), "sequence %d: batch logits differ by %g (scale %g)", s,
                md, mx);
        T_CHECK("batch-2.8", argmax(bl[i], V) == argmax(ref, V), "sequence %d: argmax %d, alone %d", s,
                argmax(bl[i], V), argmax(ref, V));
        T_CHECK("batch-2.9", ds_context_n_past(seqs[i]) == (int)n[s] + 1, "sequence %d grew by one", s);
        int nh = 0;
        const int32_t *h = ds_context_tokens(seqs[i], &nh);
        T_CHECK("batch-2.10", nh > 0 && h[nh - 1] == tok[i], "sequence %d remembers its token", s);
    }
    /* NULL logits entries: nothing is written for them */
    float *some[NS] = {NULL, bl[1], NULL, NULL};
    bl[1][0] = 12345.0f;
    st = ds_context_eval_batch(seqs, tok, 2, some);
    T_STATUS("batch-2.11", st, DS_OK, ds_last_error());
    T_CHECK("batch-2.12", bl[1][0] != 12345.0f, "logits of entry 1 written");
    st = ds_context_eval_batch(seqs, tok, 1, NULL);
    T_STATUS("batch-2.13", st, DS_OK, ds_last_error());

    /* errors leave every sequence as it was */
    int before[NS];
    for (int i = 0; i < NS; i++) before[i] = ds_context_n_past(seqs[i]);
    ds_context *dup[2] = {seqs[0], seqs[0]};
    st = ds_context_eval_batch(dup, tok, 2, NULL);
    T_STATUS("batch-2.14", st, DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK("batch-2.14b", strstr(ds_last_error(), "both") != NULL, "message: %s", ds_last_error());
    int32_t badtok[2] = {1, V + 3};
    st = ds_context_eval_batch(seqs, badtok, 2, NULL);
    T_STATUS("batch-2.15", st, DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK("batch-2.15b", strstr(ds_last_error(), "entry 1") != NULL, "message names the entry: %s", ds_last_error());
    ds_context *mixed[2] = {seqs[0], lone};
    st = ds_context_eval_batch(mixed, tok, 2, NULL);
    T_STATUS("batch-2.16", st, DS_ERR_INVALID_ARG, ds_last_error());
    st = ds_context_eval_batch(seqs, tok, 0, NULL);
    T_STATUS("batch-2.17", st, DS_ERR_INVALID_ARG, ds_last_error());
    st = ds_context_eval_batch(NULL, tok, 1, NULL);
    T_STATUS("batch-2.18", st, DS_ERR_INVALID_ARG, ds_last_error());
    for (int i = 0; i < NS; i++)
        T_CHECK("batch-2.19", ds_context_n_past(seqs[i]) == before[i], "sequence %d changed on an error", i);
    ds_context_free(c);

    /* a full sequence: DS_ERR_LIMIT naming it, the others untouched */
    c = new_ctx(m, 8, 2);
    if (c) {
        int32_t eight[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        T_STATUS("batch-ok.3", ds_context_eval(ds_context_seq(c, 1), eight, 8, NULL, 0), DS_OK, ds_last_error());
        ds_context *two[2] = {c, ds_context_seq(c, 1)};
        st = ds_context_eval_batch(two, tok, 2, NULL);
        T_STATUS("batch-2.20", st, DS_ERR_LIMIT, ds_last_error());
        T_CHECK("batch-2.21", strstr(ds_last_error(), "sequence 1") != NULL && ds_context_n_past(c) == 0,
                "message %s; sequence 0 holds %d", ds_last_error(), ds_context_n_past(c));
        ds_context_free(c);
    }
out:
    ds_context_free(lone);
    free(lg);
    free(ref);
    for (int i = 0; i < NS; i++) free(bl[i]);
}

/* ==== 3: continuous batching of generators ================================ */
typedef struct lone_run {
    int32_t toks[256];
    int n;
    char text[4096];
    ds_stop_reason why;
} lone_run;

static int record(void *user, int32_t token, const char *piece, size_t len) {
    lone_run *r = user;
    if (token >= 0 && r->n < 256) r->toks[r->n++] = token;
    size_t have = strlen(r->text);
    if (have + len < sizeof r->text) {
        memcpy(r->text + have, piece, len);
        r->text[have + len] = '\0';
    }
    return 0;
}

static const char *stop_strs[] = {"LORD"};

static ds_generate_params params_of(int i, lone_run *r) {
    ds_generate_params gp = ds_generate_default_params();
    gp.max_tokens = 12 + 9 * i;   /* different lengths: sequences leave the batch at different steps */
    gp.on_token = record;
    gp.user = r;
    if (i == 2) {
        gp.stop = stop_strs;
        gp.n_stop = 1;
    }
    return gp;
}

static int abort_flag(void *user) { return *(int *)user; }

static void test_generators(ds_model *m) {
    enum { NG = 5 };
    lone_run alone[NG], batched[NG];
    memset(alone, 0, sizeof alone);
    memset(batched, 0, sizeof batched);
    ds_context *lone = new_ctx(m, 256, 1), *c = new_ctx(m, 256, NG);
    ds_sampler *s = greedy();
    ds_sampler *ss[NG] = {0};
    for (int i = 0; i < NG; i++) ss[i] = greedy();
    int32_t ids[NG][64];
    size_t n[NG];
    T_CHECK("batch-3.0", lone && c && s && ss[NG - 1], "setup: %s", ds_last_error());
    if (!lone || !c || !s || !ss[NG - 1]) goto out;
    for (int i = 0; i < NG; i++) {
        n[i] = encode(m, prompts[i], ids[i], 64);
        ds_context_reset(lone);
        ds_generate_params gp = params_of(i, &alone[i]);
        ds_generate_stats gs;
        ds_status st = ds_generate_tokens(lone, s, ids[i], n[i], &gp, &gs);
        T_STATUS("batch-3.1", st, DS_OK, ds_last_error());
        alone[i].why = gs.stop_reason;
    }
    T_CHECK("batch-3.1b", alone[2].why == DS_STOP_STRING || alone[2].n == 12 + 18, "generation 2 ran");

    /* three start together; the fourth joins after 4 steps, the fifth after 9
     * (its prefill runs between steps); each stepped together with the rest */
    ds_generator *g[NG] = {0};
    int steps = 0, max_batch = 0;
    for (int i = 0; i < 3; i++) {
        ds_generate_params gp = params_of(i, &batched[i]);
        ds_status st = ds_generator_new(&g[i], ds_context_seq(c, i), ss[i], ids[i], n[i], &gp);
        T_STATUS("batch-3.2", st, DS_OK, ds_last_error());
    }
    for (;;) {
        if (steps == 4 || steps == 9) {
            int i = steps == 4 ? 3 : 4;
            ds_generate_params gp = params_of(i, &batched[i]);
            ds_status st = ds_generator_new(&g[i], ds_context_seq(c, i), ss[i], ids[i], n[i], &gp);
            T_STATUS("batch-3.3", st, DS_OK, ds_last_error());
        }
        int live = 0;
        for (int i = 0; i < NG; i++) live += g[i] && ds_generator_stop_reason(g[i]) == DS_STOP_NONE;
        if (!live && steps > 9) break;
        if (live > max_batch) max_batch = live;
        ds_status st = ds_generator_step(g, NG);
        T_STATUS("batch-3.4", st, DS_OK, ds_last_error());
        if (st || ++steps > 400) break;
        /* ds_generator_text is this step's released text: what on_token got */
        for (int i = 0; i < NG; i++) {
            const char *t;
            size_t len;
            ds_generator_text(g[i], &t, &len);
            T_CHECK("batch-3.5", t != NULL && strlen(t) == len, "generator %d's step text", i);
        }
    }
    T_CHECK("batch-3.6", max_batch >= 4, "at most %d generators ran together", max_batch);
    for (int i = 0; i < NG; i++) {
        T_CHECK("batch-3.7", batched[i].n == alone[i].n && memcmp(batched[i].toks, alone[i].toks,
                                                                 (size_t)alone[i].n * sizeof(int32_t)) == 0,
                "generation %d: %d tokens batched, %d alone, or they differ", i, batched[i].n, alone[i].n);
        T_CHECK("batch-3.8", strcmp(batched[i].text, alone[i].text) == 0, "generation %d's text: '%s' vs '%s'", i,
                batched[i].text, alone[i].text);
        T_CHECK("batch-3.9", ds_generator_stop_reason(g[i]) == alone[i].why, "generation %d stopped for %s, alone %s",
                i, ds_stop_reason_name(ds_generator_stop_reason(g[i])), ds_stop_reason_name(alone[i].why));
        T_CHECK("batch-3.10", ds_generator_status(g[i]) == DS_OK && ds_generator_errmsg(g[i])[0] == '\0',
                "generation %d failed: %s", i, ds_generator_errmsg(g[i]));
    }
    for (int i = 0; i < NG; i++) ds_generator_free(g[i]);

    /* prompt reuse on a sequence: what sequence 0 holds is not evaluated again */
    {
        lone_run r;
        memset(&r, 0, sizeof r);
        ds_generate_params gp = params_of(0, &r);
        ds_generator *g0 = NULL;
        ds_status st = ds_generator_new(&g0, c, ss[0], ids[0], n[0], &gp);
        ds_generate_stats gs;
        ds_generator_stats(g0, &gs);
        T_CHECK("batch-3.11", !st && gs.n_reused == (int)n[0] - 1, "reused %d of %zu prompt tokens", gs.n_reused, n[0]);
        ds_generator_free(g0);
    }

    /* errors: two generators on one sequence; generators of two contexts */
    {
        ds_generator *a = NULL, *b = NULL, *x = NULL;
        ds_generate_params gp = ds_generate_default_params();
        gp.max_tokens = 4;
        T_STATUS("batch-ok.4", ds_generator_new(&a, ds_context_seq(c, 1), ss[0], ids[0], n[0], &gp), DS_OK, ds_last_error());
        T_STATUS("batch-ok.5", ds_generator_new(&b, ds_context_seq(c, 1), ss[1], ids[1], n[1], &gp), DS_OK, ds_last_error());
        T_STATUS("batch-ok.6", ds_generator_new(&x, lone, s, ids[2], n[2], &gp), DS_OK, ds_last_error());
        ds_generator *ab[2] = {a, b}, *ax[2] = {a, x};
        ds_status st = ds_generator_step(ab, 2);
        T_STATUS("batch-3.12", st, DS_ERR_INVALID_ARG, ds_last_error());
        T_CHECK("batch-3.12b", strstr(ds_last_error(), "share sequence 1") != NULL, "message: %s", ds_last_error());
        st = ds_generator_step(ax, 2);
        T_STATUS("batch-3.13", st, DS_ERR_INVALID_ARG, ds_last_error());
        st = ds_generator_step(NULL, 1);
        T_STATUS("batch-3.14", st, DS_ERR_INVALID_ARG, ds_last_error());
        st = ds_generator_step(NULL, 0);
        T_STATUS("batch-3.15", st, DS_OK, ds_last_error());
        ds_generate_stats gs;
        ds_generator_stats(a, &gs);
        T_CHECK("batch-3.16", gs.n_generated == 0, "a refused step generated %d tokens", gs.n_generated);
        ds_generator_free(a);
        ds_generator_free(b);
        ds_generator_free(x);
    }

    /* an abort on one sequence stops that generator only; the others go on
     * and still match their lone runs */
    {
        lone_run r[3];
        memset(r, 0, sizeof r);
        int flag[3] = {0, 0, 0};
        ds_generator *h[3] = {0};
        for (int i = 0; i < 3; i++) {
            ds_context_reset(ds_context_seq(c, i));
            ds_context_set_abort(ds_context_seq(c, i), abort_flag, &flag[i]);
            ds_generate_params gp = params_of(i, &r[i]);
            gp.stop = NULL;
            gp.n_stop = 0;
            T_STATUS("batch-ok.7", ds_generator_new(&h[i], ds_context_seq(c, i), ss[i], ids[i], n[i], &gp), DS_OK, ds_last_error());
        }
        for (int k = 0; k < 200; k++) {
            if (k == 3) flag[1] = 1;
            if (ds_generator_step(h, 3) != DS_OK) break;
            int live = 0;
            for (int i = 0; i < 3; i++) live += ds_generator_stop_reason(h[i]) == DS_STOP_NONE;
            if (!live) break;
        }
        T_CHECK("batch-3.17", ds_generator_stop_reason(h[1]) == DS_STOP_ABORT && r[1].n <= 5,
                "the aborted generator: %s after %d tokens", ds_stop_reason_name(ds_generator_stop_reason(h[1])),
                r[1].n);
        T_CHECK("batch-3.18", r[0].n == alone[0].n && memcmp(r[0].toks, alone[0].toks, (size_t)r[0].n * 4) == 0,
                "generation 0 beside an abort: %d tokens, %d alone", r[0].n, alone[0].n);
        T_CHECK("batch-3.19", r[2].n == 12 + 18 && memcmp(r[2].toks, alone[2].toks, (size_t)alone[2].n * 4) == 0,
                "generation 2 beside an abort: %d tokens", r[2].n);
        for (int i = 0; i < 3; i++) {
            ds_context_set_abort(ds_context_seq(c, i), NULL, NULL);
            ds_generator_free(h[i]);
        }
    }
out:
    for (int i = 0; i < NG; i++) ds_sampler_free(ss[i]);
    ds_sampler_free(s);
    ds_context_free(c);
    ds_context_free(lone);
}

/* ==== 4: deferred prompts, evaluated in chunks within the decode passes == */
static void test_deferred(ds_model *m) {
    enum { NG = 4 };
    lone_run alone[NG], batched[NG];
    memset(alone, 0, sizeof alone);
    memset(batched, 0, sizeof batched);
    ds_context *lone = new_ctx(m, 256, 1), *c = new_ctx(m, 256, NG);
    ds_sampler *s = greedy(), *ss[NG] = {0};
    for (int i = 0; i < NG; i++) ss[i] = greedy();
    int32_t ids[NG][64];
    size_t n[NG];
    T_CHECK("batch-5.0", lone && c && s && ss[NG - 1], "setup: %s", ds_last_error());
    if (!lone || !c || !s || !ss[NG - 1]) goto out;
    for (int i = 0; i < NG; i++) {
        n[i] = encode(m, prompts[i + 2], ids[i], 64);
        ds_context_reset(lone);
        ds_generate_params gp = params_of(i, &alone[i]);
        ds_generate_stats gs;
        T_STATUS("batch-5.1", ds_generate_tokens(lone, s, ids[i], n[i], &gp, &gs), DS_OK, ds_last_error());
        alone[i].why = gs.stop_reason;
    }
    /* 0 and 1 start at once (not deferred); 2 and 3 join deferred, in
     * chunks of 3 prompt tokens, while the others decode */
    ds_generator *g[NG] = {0};
    int steps = 0, silent = 0;
    for (int i = 0; i < 2; i++) {
        ds_generate_params gp = params_of(i, &batched[i]);
        T_STATUS("batch-5.2", ds_generator_new(&g[i], ds_context_seq(c, i), ss[i], ids[i], n[i], &gp), DS_OK,
                 ds_last_error());
    }
    for (;;) {
        if (steps == 2) {
            for (int i = 2; i < NG; i++) {
                ds_generate_params gp = params_of(i, &batched[i]);
                gp.defer_prompt = 1;
                gp.prompt_chunk = 3;
                T_STATUS("batch-5.3", ds_generator_new(&g[i], ds_context_seq(c, i), ss[i], ids[i], n[i], &gp), DS_OK,
                         ds_last_error());
                ds_generate_stats gs;
                ds_generator_stats(g[i], &gs);
                T_CHECK("batch-5.4", gs.n_evaluated == 0 && ds_context_n_past(ds_context_seq(c, i)) == 0,
                        "a deferred prompt was evaluated at once (%d tokens)", gs.n_evaluated);
            }
        }
        int live = 0;
        for (int i = 0; i < NG; i++) live += g[i] && ds_generator_stop_reason(g[i]) == DS_STOP_NONE;
        if (!live && steps > 2) break;
        T_STATUS("batch-5.5", ds_generator_step(g, NG), DS_OK, ds_last_error());
        if (++steps > 400) break;
        if (steps > 2 && batched[3].n == 0) silent++;   /* generator 3 still in its prompt */
    }
    T_CHECK("batch-5.6", silent >= (int)(n[3] + 2) / 3 - 1, "generator 3's prompt of %zu tokens took %d steps", n[3],
            silent);
    for (int i = 0; i < NG; i++) {
        T_CHECK("batch-5.7", batched[i].n == alone[i].n && memcmp(batched[i].toks, alone[i].toks,
                                                                 (size_t)alone[i].n * sizeof(int32_t)) == 0,
                "generation %d: %d tokens with deferred prompts beside, %d alone, or they differ", i, batched[i].n,
                alone[i].n);
        T_CHECK("batch-5.8", strcmp(batched[i].text, alone[i].text) == 0, "generation %d's text differs", i);
        ds_generate_stats gs;
        ds_generator_stats(g[i], &gs);
        T_CHECK("batch-5.9", gs.n_evaluated + gs.n_reused == (int)n[i], "generation %d: %d evaluated + %d reused of %zu",
                i, gs.n_evaluated, gs.n_reused, n[i]);
        ds_generator_free(g[i]);
    }
    /* ds_generator_next on a deferred generator evaluates its prompt first */
    {
        lone_run r;
        memset(&r, 0, sizeof r);
        ds_generate_params gp = params_of(1, &r);
        gp.defer_prompt = 1;
        ds_context_reset(ds_context_seq(c, 1));
        ds_generator *h = NULL;
        T_STATUS("batch-5.10", ds_generator_new(&h, ds_context_seq(c, 1), ss[1], ids[1], n[1], &gp), DS_OK,
                 ds_last_error());
        while (h && ds_generator_stop_reason(h) == DS_STOP_NONE && !ds_generator_status(h))
            if (ds_generator_next(h, NULL, NULL) != DS_OK) break;
        T_CHECK("batch-5.11", r.n == alone[1].n && memcmp(r.toks, alone[1].toks, (size_t)r.n * 4) == 0,
                "ds_generator_next with a deferred prompt: %d tokens, %d alone", r.n, alone[1].n);
        ds_generator_free(h);
        /* a step, then ds_generator_next: the token the step picked is evaluated, none lost */
        memset(&r, 0, sizeof r);
        ds_context_reset(ds_context_seq(c, 1));
        T_STATUS("batch-5.12", ds_generator_new(&h, ds_context_seq(c, 1), ss[1], ids[1], n[1], &gp), DS_OK,
                 ds_last_error());
        for (int k = 0; k < 3 && h; k++) T_STATUS("batch-5.13", ds_generator_step(&h, 1), DS_OK, ds_last_error());
        while (h && ds_generator_stop_reason(h) == DS_STOP_NONE && !ds_generator_status(h))
            if (ds_generator_next(h, NULL, NULL) != DS_OK) break;
        T_CHECK("batch-5.14", r.n == alone[1].n && memcmp(r.toks, alone[1].toks, (size_t)r.n * 4) == 0 &&
                                  strcmp(r.text, alone[1].text) == 0,
                "steps then next: %d tokens '%s', alone %d '%s'", r.n, r.text, alone[1].n, alone[1].text);
        ds_generator_free(h);
        gp.prompt_chunk = -1;
        ds_status st = ds_generator_new(&h, ds_context_seq(c, 1), ss[1], ids[1], n[1], &gp);
        T_STATUS("batch-5.15", st, DS_ERR_INVALID_ARG, ds_last_error());
        T_CHECK("batch-5.16", !h && strstr(ds_last_error(), "prompt_chunk"), "message: %s", ds_last_error());
    }
out:
    for (int i = 0; i < NG; i++) ds_sampler_free(ss[i]);
    ds_sampler_free(s);
    ds_context_free(c);
    ds_context_free(lone);
}

/* ==== 4: with an expert cache, an expert several sequences choose is read
 * once per step ============================================================ */
static void test_paged(void) {
    ds_model *m = open_demo(64u << 20);   /* a cache larger than the experts: no evictions */
    T_CHECK("batch-4.0", m != NULL, "open with an expert cache: %s", ds_last_error());
    if (!m) return;
    ds_cache_stats cs;
    if (ds_model_cache_stats(m, &cs) != DS_OK || cs.n_slots == 0) {
        T_SKIP("batch-4", "the demo model has no expert cache at this budget");
        ds_model_close(m);
        return;
    }
    enum { NS = 4 };
    ds_context *c = new_ctx(m, 64, NS);
    int32_t ids[64];
    size_t n = encode(m, prompts[0], ids, 64);
    ds_context *seqs[NS];
    int32_t tok[NS];
    for (int i = 0; i < NS && c; i++) {
        seqs[i] = ds_context_seq(c, i);
        tok[i] = 9;
        T_STATUS("batch-ok.8", ds_context_eval(seqs[i], ids, n, NULL, 0), DS_OK, ds_last_error());
    }
    if (c) {
        /* one sequence alone, then all four with the same token (so the same
         * routing): the batch asks the cache for each expert once */
        ds_model_cache_stats_reset(m);
        T_STATUS("batch-ok.9", ds_context_eval(seqs[0], tok, 1, NULL, 0), DS_OK, ds_last_error());
        T_STATUS("batch-ok.10", ds_model_cache_stats(m, &cs), DS_OK, ds_last_error());
        uint64_t one = cs.hits + cs.misses;
        T_STATUS("batch-ok.11", ds_context_truncate(seqs[0], (int)n), DS_OK, ds_last_error());
        ds_model_cache_stats_reset(m);
        ds_status st = ds_context_eval_batch(seqs, tok, NS, NULL);
        T_STATUS("batch-ok.12", ds_model_cache_stats(m, &cs), DS_OK, ds_last_error());
        T_STATUS("batch-4.1", st, DS_OK, ds_last_error());
        T_CHECK("batch-4.2", one > 0 && cs.hits + cs.misses == one,
                "a batch of %d identical tokens took %llu expert reads; one token alone %llu", NS,
                (unsigned long long)(cs.hits + cs.misses), (unsigned long long)one);
        ds_context_free(c);
    }
    ds_model_close(m);
}

int main(void) {
    models = getenv("DS_MODELS") ? getenv("DS_MODELS") : "models";
    char key_path[1024];
    snprintf(key_path, sizeof key_path, "%s/demo.key", models);
    if (access(key_path, R_OK) != 0) {
        T_SKIP("batch", "no models/demo.key (run from the repository root, or set DS_MODELS)");
        return t_finish("test_batch");
    }
    ds_status st = ds_key_file_read(key_path, key);
    T_STATUS("batch-0", st, DS_OK, ds_last_error());
    ds_model *m = st ? NULL : open_demo(0);
    T_CHECK("batch-0.open", m != NULL, "open: %s", ds_last_error());
    if (m) {
        ds_model_config cfg;
        if (ds_model_get_config(m, &cfg) == DS_OK) {
            test_handles(m);
            test_eval(m, cfg.vocab_size);
            test_generators(m);
            test_deferred(m);
        }
        ds_model_close(m);
    }
    test_paged();
    ds_memzero(key, sizeof key);
    return t_finish("test_batch");
}
