/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_sampler.c — the sampler against its definition: greedy is argmax,
 * seeds reproduce, draws follow the softmax (chi-square over 100k draws),
 * top-k / top-p / min-p cut where they should, penalties move the choice
 * the way CTRL and the OpenAI-style penalties say, and bad input is refused.
 * Then ds_generate on a generated checkpoint: the same tokens as a
 * hand-written eval/argmax loop, streamed pieces that spell the decoded text,
 * the stopping rules, and its error paths.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L   /* mkdtemp */
#endif
#include "../deepseek.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

/* ==== Helpers ============================================================= */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double rnd(void) {   /* uniform [0, 1), independent of the sampler's generator */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static ds_sampler *mk(const ds_sampler_params *p) {
    ds_sampler *s = NULL;
    ds_status st = ds_sampler_new(&s, p);
    if (st != DS_OK) printf("  ds_sampler_new failed: %s\n", ds_last_error());
    return s;
}

static ds_sampler_params params_t(float temperature, uint64_t seed) {
    ds_sampler_params p = ds_sampler_default_params();
    p.temperature = temperature;
    p.seed = seed;
    return p;
}

/* Draws n tokens and counts them into hist[n_vocab]. Returns 0 on a failed call. */
static int draw(ds_sampler *s, const float *logits, int n_vocab, int n, long *hist) {
    for (int i = 0; i < n_vocab; i++) hist[i] = 0;
    for (int i = 0; i < n; i++) {
        int32_t t = -1;
        if (ds_sampler_sample(s, logits, n_vocab, NULL, 0, &t) != DS_OK || t < 0 || t >= n_vocab) return 0;
        hist[t]++;
    }
    return 1;
}

/* Pearson's chi-square of observed counts against probabilities p (all > 0). */
static double chi2(const long *obs, const double *p, int k, long n) {
    double x = 0;
    for (int i = 0; i < k; i++) {
        double e = p[i] * (double)n;
        x += ((double)obs[i] - e) * ((double)obs[i] - e) / e;
    }
    return x;
}

/* ==== 1. Parameters ======================================================= */

static void test_params(void) {
    ds_sampler_params d = ds_sampler_default_params();
    T_CHECK("sampler-1.1",
            d.temperature == 1.0f && d.top_k == 0 && d.top_p == 1.0f && d.min_p == 0.0f &&
                d.repetition_penalty == 1.0f && d.frequency_penalty == 0.0f && d.presence_penalty == 0.0f &&
                d.penalty_last_n == 64 && d.seed == 0,
            "unexpected defaults");
    ds_sampler *s = NULL;
    T_STATUS("sampler-1.2", ds_sampler_new(&s, NULL), DS_OK, ds_last_error());
    ds_sampler_free(s);
    T_STATUS("sampler-1.3", ds_sampler_new(NULL, &d), DS_ERR_INVALID_ARG, ds_last_error());
    ds_sampler_free(NULL);   /* no-op */

    /* each bad value is refused, and the message names the parameter */
    struct {
        const char *id, *name;
        ds_sampler_params p;
    } bad[24];
    int n = 0;
#define BAD(ID, FIELD, VALUE)                                                                   \
    do {                                                                                        \
        bad[n].id = ID;                                                                         \
        bad[n].name = #FIELD;                                                                   \
        bad[n].p = ds_sampler_default_params();                                                 \
        bad[n].p.FIELD = VALUE;                                                                 \
        n++;                                                                                    \
    } while (0)
    BAD("sampler-1.4.1", temperature, -0.5f);
    BAD("sampler-1.4.2", temperature, NAN);
    BAD("sampler-1.4.3", temperature, INFINITY);
    BAD("sampler-1.4.4", top_k, -1);
    BAD("sampler-1.4.5", top_p, 0.0f);
    BAD("sampler-1.4.6", top_p, -0.1f);
    BAD("sampler-1.4.7", top_p, 1.5f);
    BAD("sampler-1.4.8", top_p, NAN);
    BAD("sampler-1.4.9", min_p, -0.1f);
    BAD("sampler-1.4.10", min_p, 1.0f);
    BAD("sampler-1.4.11", min_p, NAN);
    BAD("sampler-1.4.12", repetition_penalty, 0.0f);
    BAD("sampler-1.4.13", repetition_penalty, -1.0f);
    BAD("sampler-1.4.14", repetition_penalty, INFINITY);
    BAD("sampler-1.4.15", repetition_penalty, NAN);
    BAD("sampler-1.4.16", frequency_penalty, INFINITY);
    BAD("sampler-1.4.17", frequency_penalty, NAN);
    BAD("sampler-1.4.18", presence_penalty, -INFINITY);
    BAD("sampler-1.4.19", presence_penalty, NAN);
    BAD("sampler-1.4.20", penalty_last_n, -1);
#undef BAD
    for (int i = 0; i < n; i++) {
        s = (ds_sampler *)&s;   /* must be reset to NULL on failure */
        ds_status st = ds_sampler_new(&s, &bad[i].p);
        T_CHECK(bad[i].id, st == DS_ERR_INVALID_ARG && s == NULL && strstr(ds_last_error(), bad[i].name),
                "%s: status %d, message '%s'", bad[i].name, (int)st, ds_last_error());
        if (st == DS_OK) ds_sampler_free(s);
    }

    /* edges that are allowed */
    ds_sampler_params ok = ds_sampler_default_params();
    ok.temperature = 0.0f;
    ok.top_p = 1.0f;
    ok.min_p = 0.0f;
    ok.frequency_penalty = -2.0f;   /* negative penalties encourage repeats: allowed */
    ok.presence_penalty = -2.0f;
    ok.penalty_last_n = 0;
    ok.top_k = 1000000;
    s = NULL;
    T_STATUS("sampler-1.5", ds_sampler_new(&s, &ok), DS_OK, ds_last_error());
    ds_sampler_free(s);

    /* ds_sampler_params' zeros are not its defaults (temperature 0 is
     * greedy, penalty_last_n 0 the whole history): a zeroed struct is
     * refused, naming the constructor (1.6); so is one with every field set
     * by hand to a valid value but not made by it (1.7) */
    ds_sampler_params zero;
    memset(&zero, 0, sizeof zero);
    s = (ds_sampler *)&s;
    ds_status st = ds_sampler_new(&s, &zero);
    T_CHECK("sampler-1.6", st == DS_ERR_INVALID_ARG && s == NULL && strstr(ds_last_error(), "ds_sampler_default_params()"),
            "zeroed params: status %d, message '%s'", (int)st, ds_last_error());
    ds_sampler_params byhand = zero;
    byhand.temperature = d.temperature;
    byhand.top_p = d.top_p;
    byhand.repetition_penalty = d.repetition_penalty;
    byhand.penalty_last_n = d.penalty_last_n;
    s = (ds_sampler *)&s;
    st = ds_sampler_new(&s, &byhand);
    T_CHECK("sampler-1.7", st == DS_ERR_INVALID_ARG && s == NULL && strstr(ds_last_error(), "ds_sampler_default_params()"),
            "params set by hand: status %d, message '%s'", (int)st, ds_last_error());
}

/* ==== 2. Bad input to sample ============================================== */

static void test_bad_input(void) {
    ds_sampler_params p = params_t(1.0f, 1);
    ds_sampler *s = mk(&p);
    float l[6] = {0, 1, 2, 3, 4, 5};
    int32_t t = 0;
    int32_t h_ok[2] = {1, 2};
    T_STATUS("sampler-2.1", ds_sampler_sample(NULL, l, 6, NULL, 0, &t), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("sampler-2.2", ds_sampler_sample(s, NULL, 6, NULL, 0, &t), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("sampler-2.3", ds_sampler_sample(s, l, 0, NULL, 0, &t), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("sampler-2.4", ds_sampler_sample(s, l, -3, NULL, 0, &t), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("sampler-2.5", ds_sampler_sample(s, l, 6, NULL, 0, NULL), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("sampler-2.6", ds_sampler_sample(s, l, 6, NULL, 2, &t), DS_ERR_INVALID_ARG, ds_last_error());
    l[3] = NAN;
    ds_status st = ds_sampler_sample(s, l, 6, h_ok, 2, &t);
    T_CHECK("sampler-2.7", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "logit 3 is NaN"),
            "NaN logit: status %d, message '%s'", (int)st, ds_last_error());
    l[3] = INFINITY;
    T_STATUS("sampler-2.8", ds_sampler_sample(s, l, 6, h_ok, 2, &t), DS_ERR_INVALID_ARG, ds_last_error());
    float all_masked[3] = {-INFINITY, -INFINITY, -INFINITY};
    T_STATUS("sampler-2.9", ds_sampler_sample(s, all_masked, 3, NULL, 0, &t), DS_ERR_INVALID_ARG, ds_last_error());
    l[3] = 3;
    int32_t h_neg[3] = {1, -1, 2}, h_big[2] = {0, 6};
    st = ds_sampler_sample(s, l, 6, h_neg, 3, &t);
    T_CHECK("sampler-2.10", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "history[1]"),
            "negative history id: status %d, message '%s'", (int)st, ds_last_error());
    T_STATUS("sampler-2.11", ds_sampler_sample(s, l, 6, h_big, 2, &t), DS_ERR_INVALID_ARG, ds_last_error());
    /* still usable after the failures */
    T_STATUS("sampler-2.12", ds_sampler_sample(s, l, 6, h_ok, 2, &t), DS_OK, ds_last_error());
    T_CHECK("sampler-2.13", t >= 0 && t < 6, "token %d", (int)t);
    /* the caller's logits are not modified, even with penalties */
    ds_sampler_free(s);
    p.repetition_penalty = 1.5f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.5f;
    p.top_k = 3;
    p.top_p = 0.9f;
    p.min_p = 0.05f;
    s = mk(&p);
    float before[6];
    memcpy(before, l, sizeof l);
    int32_t h[4] = {5, 5, 4, 0};
    T_STATUS("sampler-2.14", ds_sampler_sample(s, l, 6, h, 4, &t), DS_OK, ds_last_error());
    T_CHECK("sampler-2.15", memcmp(before, l, sizeof l) == 0, "logits were modified");
    ds_sampler_free(s);
}

/* ==== 3. Greedy =========================================================== */

static void test_greedy(void) {
    ds_sampler_params p = params_t(0.0f, 7);
    ds_sampler *s = mk(&p);
    enum { N = 1000 };
    static float l[N];
    int bad = 0;
    for (int trial = 0; trial < 200; trial++) {
        int best = 0;
        for (int i = 0; i < N; i++) {
            l[i] = (float)(rnd() * 20 - 10);
            if (l[i] > l[best]) best = i;
        }
        int32_t t = -1;
        if (ds_sampler_sample(s, l, N, NULL, 0, &t) != DS_OK || t != best) bad++;
    }
    T_CHECK("sampler-3.1", bad == 0, "%d of 200 greedy picks were not the argmax", bad);
    /* ties: the lowest id */
    float tie[5] = {1, 3, 2, 3, 3};
    int32_t t = -1;
    T_STATUS("sampler-3.2", ds_sampler_sample(s, tie, 5, NULL, 0, &t), DS_OK, ds_last_error());
    T_CHECK("sampler-3.3", t == 1, "tie broke to %d, want 1", (int)t);
    /* masked tokens are fine for greedy */
    float masked[4] = {-INFINITY, -5, -INFINITY, -7};
    T_STATUS("sampler-3.4", ds_sampler_sample(s, masked, 4, NULL, 0, &t), DS_OK, ds_last_error());
    T_CHECK("sampler-3.5", t == 1, "picked %d, want 1", (int)t);
    ds_sampler_free(s);

    /* top_k = 1 at any temperature is greedy */
    p = params_t(1.5f, 99);
    p.top_k = 1;
    s = mk(&p);
    bad = 0;
    for (int trial = 0; trial < 200; trial++) {
        int best = 0;
        for (int i = 0; i < N; i++) {
            l[i] = (float)(rnd() * 4);
            if (l[i] > l[best]) best = i;
        }
        int32_t u = -1;
        if (ds_sampler_sample(s, l, N, NULL, 0, &u) != DS_OK || u != best) bad++;
    }
    T_CHECK("sampler-3.6", bad == 0, "%d of 200 top-k=1 picks were not the argmax", bad);
    ds_sampler_free(s);

    /* a tiny temperature is numerically greedy (no overflow to NaN) */
    p = params_t(1e-30f, 3);
    s = mk(&p);
    float l3[4] = {1.0f, 1.0001f, -3e38f, 3e38f};
    int32_t u = -1;
    T_STATUS("sampler-3.7", ds_sampler_sample(s, l3, 4, NULL, 0, &u), DS_OK, ds_last_error());
    T_CHECK("sampler-3.8", u == 3, "tiny temperature picked %d, want 3", (int)u);
    ds_sampler_free(s);
}

/* ==== 4. Seeds ============================================================ */

static void test_seeds(void) {
    enum { V = 1000, N = 200 };
    static float l[V];
    for (int i = 0; i < V; i++) l[i] = (float)(rnd() * 0.5);   /* near uniform */
    int32_t a[N], b[N], c[N];
    ds_sampler_params p = params_t(1.0f, 1234);
    ds_sampler *s1 = mk(&p), *s2 = mk(&p);
    p.seed = 1235;
    ds_sampler *s3 = mk(&p);
    int ok = s1 && s2 && s3;
    for (int i = 0; ok && i < N; i++)
        ok = ds_sampler_sample(s1, l, V, NULL, 0, &a[i]) == DS_OK && ds_sampler_sample(s2, l, V, NULL, 0, &b[i]) == DS_OK &&
             ds_sampler_sample(s3, l, V, NULL, 0, &c[i]) == DS_OK;
    T_CHECK("sampler-4.1", ok, "sampling failed: %s", ds_last_error());
    T_CHECK("sampler-4.2", ok && memcmp(a, b, sizeof a) == 0, "the same seed gave different draws");
    int same = 0;
    for (int i = 0; i < N; i++) same += a[i] == c[i];
    T_CHECK("sampler-4.3", same < N / 10, "seeds 1234 and 1235 agree on %d of %d draws", same, N);
    ds_sampler_free(s1);
    ds_sampler_free(s2);
    ds_sampler_free(s3);

    /* seed 0 is a fine seed, and it is not the same stream as seed 1 */
    p.seed = 0;
    s1 = mk(&p);
    p.seed = 1;
    s2 = mk(&p);
    same = 0;
    for (int i = 0; i < N; i++) {
        int32_t x = -1, y = -1;
        if (ds_sampler_sample(s1, l, V, NULL, 0, &x) || ds_sampler_sample(s2, l, V, NULL, 0, &y)) break;
        same += x == y;
    }
    T_CHECK("sampler-4.4", same < N / 10, "seeds 0 and 1 agree on %d of %d draws", same, N);
    ds_sampler_free(s1);
    ds_sampler_free(s2);
}

/* ==== 5. Distribution ===================================================== */

static void test_distribution(void) {
    /* logits = log p + a constant: draws must follow p.
     * Critical values of chi-square at p = 0.001: 7 dof 24.32, 2 dof 13.82,
     * 1 dof 10.83; the seeds are fixed, so this is not flaky. */
    enum { K = 8, N = 100000 };
    const double prob[K] = {0.30, 0.20, 0.15, 0.12, 0.10, 0.07, 0.04, 0.02};
    float l[K];
    long h[K];
    for (int i = 0; i < K; i++) l[i] = (float)log(prob[i]) + 3.0f;
    ds_sampler_params p = params_t(1.0f, 42);
    ds_sampler *s = mk(&p);
    int ok = draw(s, l, K, N, h);
    double x = chi2(h, prob, K, N);
    T_CHECK("sampler-5.1", ok && x < 24.32, "temperature 1: chi-square %.2f over %d draws (7 dof)", x, N);
    ds_sampler_free(s);

    /* temperature 0.5 squares the probabilities */
    double q[K], z = 0;
    for (int i = 0; i < K; i++) z += q[i] = prob[i] * prob[i];
    for (int i = 0; i < K; i++) q[i] /= z;
    p = params_t(0.5f, 43);
    s = mk(&p);
    ok = draw(s, l, K, N, h);
    x = chi2(h, q, K, N);
    T_CHECK("sampler-5.2", ok && x < 24.32, "temperature 0.5: chi-square %.2f (7 dof)", x);
    ds_sampler_free(s);

    /* masked tokens never come out; the rest keep their ratios */
    float lm[4] = {0.0f, -INFINITY, 0.0f, -INFINITY};
    long hm[4];
    p = params_t(1.0f, 44);
    s = mk(&p);
    ok = draw(s, lm, 4, 20000, hm);
    T_CHECK("sampler-5.3", ok && hm[1] == 0 && hm[3] == 0 && labs(hm[0] - hm[2]) < 600,
            "masked: counts %ld %ld %ld %ld", hm[0], hm[1], hm[2], hm[3]);
    ds_sampler_free(s);
}

/* ==== 6. Truncation: top-k, top-p, min-p ================================== */

static void test_truncation(void) {
    enum { K = 8, N = 100000 };
    const double prob[K] = {0.30, 0.20, 0.15, 0.12, 0.10, 0.07, 0.04, 0.02};
    /* a shuffled order, so that nothing depends on the best being id 0 */
    const int pos[K] = {5, 2, 7, 0, 3, 6, 1, 4};
    float l[K];
    long h[K];
    for (int i = 0; i < K; i++) l[pos[i]] = (float)log(prob[i]);

    /* top-k 3: the three best in ratio 0.30 : 0.20 : 0.15 */
    ds_sampler_params p = params_t(1.0f, 5);
    p.top_k = 3;
    ds_sampler *s = mk(&p);
    int ok = draw(s, l, K, N, h);
    long outside = 0;
    for (int i = 3; i < K; i++) outside += h[pos[i]];
    long o3[3] = {h[pos[0]], h[pos[1]], h[pos[2]]};
    double p3[3] = {0.30 / 0.65, 0.20 / 0.65, 0.15 / 0.65};
    double x = chi2(o3, p3, 3, N);
    T_CHECK("sampler-6.1", ok && outside == 0 && x < 13.82, "top-k 3: %ld outside, chi-square %.2f", outside, x);
    ds_sampler_free(s);

    /* top-p 0.5: 0.30 alone is short of 0.5, 0.30 + 0.20 reaches it: two tokens */
    p = params_t(1.0f, 6);
    p.top_p = 0.5f;
    s = mk(&p);
    ok = draw(s, l, K, N, h);
    outside = N - h[pos[0]] - h[pos[1]];
    long o2[2] = {h[pos[0]], h[pos[1]]};
    double p2[2] = {0.6, 0.4};
    x = chi2(o2, p2, 2, N);
    T_CHECK("sampler-6.2", ok && outside == 0 && x < 10.83, "top-p 0.5: %ld outside, chi-square %.2f", outside, x);
    ds_sampler_free(s);

    /* top-p keeps only the head when the head alone has the mass */
    const float head[3] = {(float)log(0.1), (float)log(0.6), (float)log(0.3)};
    long hh[3];
    p = params_t(1.0f, 7);
    p.top_p = 0.5f;
    s = mk(&p);
    ok = draw(s, head, 3, 10000, hh);
    T_CHECK("sampler-6.3", ok && hh[1] == 10000, "top-p 0.5 over {0.1, 0.6, 0.3}: counts %ld %ld %ld", hh[0], hh[1],
            hh[2]);
    ds_sampler_free(s);
    /* a tiny top-p still keeps one token */
    p.top_p = 1e-6f;
    s = mk(&p);
    ok = draw(s, head, 3, 1000, hh);
    T_CHECK("sampler-6.4", ok && hh[1] == 1000, "top-p 1e-6: counts %ld %ld %ld", hh[0], hh[1], hh[2]);
    ds_sampler_free(s);

    /* min-p 0.3: keep p >= 0.3 * 0.30 = 0.09, i.e. the five best */
    p = params_t(1.0f, 8);
    p.min_p = 0.3f;
    s = mk(&p);
    ok = draw(s, l, K, N, h);
    outside = h[pos[5]] + h[pos[6]] + h[pos[7]];
    long o5[5];
    double p5[5];
    for (int i = 0; i < 5; i++) {
        o5[i] = h[pos[i]];
        p5[i] = prob[i] / 0.87;
    }
    x = chi2(o5, p5, 5, N);
    T_CHECK("sampler-6.5", ok && outside == 0 && x < 18.47, "min-p 0.3: %ld outside, chi-square %.2f (4 dof)", outside,
            x);
    ds_sampler_free(s);

    /* all three together: top-k 6 -> {.30 .. .07}; top-p 0.8 of that mass
     * (0.94 * 0.8 = 0.752) -> {.30 .20 .15 .12}; min-p 0.45 -> >= 0.135:
     * {.30 .20 .15} */
    p = params_t(1.0f, 9);
    p.top_k = 6;
    p.top_p = 0.8f;
    p.min_p = 0.45f;
    s = mk(&p);
    ok = draw(s, l, K, N, h);
    outside = N - h[pos[0]] - h[pos[1]] - h[pos[2]];
    o3[0] = h[pos[0]];
    o3[1] = h[pos[1]];
    o3[2] = h[pos[2]];
    x = chi2(o3, p3, 3, N);
    T_CHECK("sampler-6.6", ok && outside == 0 && x < 13.82, "chained: %ld outside, chi-square %.2f", outside, x);
    ds_sampler_free(s);

    /* top-k against a brute-force reference on random logits with ties */
    enum { V = 3000 };
    static float lv[V];
    static int rank_ok[V];
    p = params_t(2.0f, 10);
    p.top_k = 50;
    s = mk(&p);
    int bad = 0;
    for (int trial = 0; trial < 50; trial++) {
        for (int i = 0; i < V; i++) lv[i] = (float)floor(rnd() * 400) / 8.0f;   /* many ties */
        /* the 50 best by (value desc, id asc) */
        for (int i = 0; i < V; i++) rank_ok[i] = 0;
        for (int k = 0; k < 50; k++) {
            int best = -1;
            for (int i = 0; i < V; i++)
                if (!rank_ok[i] && (best < 0 || lv[i] > lv[best])) best = i;
            rank_ok[best] = 1;
        }
        for (int d = 0; d < 20; d++) {
            int32_t t = -1;
            if (ds_sampler_sample(s, lv, V, NULL, 0, &t) != DS_OK || !rank_ok[t]) bad++;
        }
    }
    T_CHECK("sampler-6.7", bad == 0, "%d draws outside the reference top-50", bad);
    ds_sampler_free(s);
}

/* ==== 7. Penalties ======================================================== */

static int32_t greedy_with(ds_sampler_params p, const float *l, int n, const int32_t *h, size_t nh) {
    p.temperature = 0.0f;
    ds_sampler *s = mk(&p);
    int32_t t = -1;
    if (!s || ds_sampler_sample(s, l, n, h, nh, &t) != DS_OK) t = -2;
    ds_sampler_free(s);
    return t;
}

static void test_penalties(void) {
    ds_sampler_params p = ds_sampler_default_params();
    const float pos[3] = {2.0f, 1.9f, 0.0f};
    const float neg[3] = {-1.0f, -1.1f, -5.0f};
    const int32_t h0[1] = {0}, h000[3] = {0, 0, 0};

    /* repetition: 2.0 / 1.2 = 1.67 < 1.9; -1.0 * 1.2 = -1.2 < -1.1 */
    T_CHECK("sampler-7.1", greedy_with(p, pos, 3, h0, 1) == 0, "no penalty: want 0");
    p.repetition_penalty = 1.2f;
    T_CHECK("sampler-7.2", greedy_with(p, pos, 3, h0, 1) == 1, "repetition on a positive logit: want 1");
    T_CHECK("sampler-7.3", greedy_with(p, neg, 3, h0, 1) == 1, "repetition on a negative logit: want 1");
    /* repetition counts a token once however often it occurred */
    p.repetition_penalty = 1.04f;   /* 2.0 / 1.04 = 1.92 > 1.9 */
    T_CHECK("sampler-7.4", greedy_with(p, pos, 3, h000, 3) == 0, "repetition applied more than once");
    /* a penalty below 1 encourages repeats */
    p.repetition_penalty = 0.5f;
    const float enc[3] = {1.0f, 1.9f, 0.0f};
    T_CHECK("sampler-7.5", greedy_with(p, enc, 3, h0, 1) == 0, "repetition 0.5: want 0");

    /* frequency: 3 - 3 * 0.2 = 2.4 < 2.5; 3 - 3 * 0.1 = 2.7 > 2.5 */
    const float f[3] = {3.0f, 2.5f, 0.0f};
    p = ds_sampler_default_params();
    p.frequency_penalty = 0.2f;
    T_CHECK("sampler-7.6", greedy_with(p, f, 3, h000, 3) == 1, "frequency 0.2 x3: want 1");
    p.frequency_penalty = 0.1f;
    T_CHECK("sampler-7.7", greedy_with(p, f, 3, h000, 3) == 0, "frequency 0.1 x3: want 0");
    T_CHECK("sampler-7.8", greedy_with(p, f, 3, h0, 1) == 0, "frequency 0.1 x1: want 0");

    /* presence: once, whatever the count: 3 - 0.6 = 2.4; 3 - 0.4 = 2.6 */
    p = ds_sampler_default_params();
    p.presence_penalty = 0.6f;
    T_CHECK("sampler-7.9", greedy_with(p, f, 3, h0, 1) == 1, "presence 0.6: want 1");
    p.presence_penalty = 0.4f;
    T_CHECK("sampler-7.10", greedy_with(p, f, 3, h000, 3) == 0, "presence 0.4 x3: want 0");

    /* the window: only the last penalty_last_n ids count */
    const int32_t hw[4] = {0, 2, 2, 2};
    p = ds_sampler_default_params();
    p.repetition_penalty = 1.2f;
    p.penalty_last_n = 3;
    T_CHECK("sampler-7.11", greedy_with(p, pos, 3, hw, 4) == 0, "id 0 is outside the window of 3");
    p.penalty_last_n = 4;
    T_CHECK("sampler-7.12", greedy_with(p, pos, 3, hw, 4) == 1, "id 0 is inside the window of 4");
    p.penalty_last_n = 0;   /* whole history */
    T_CHECK("sampler-7.13", greedy_with(p, pos, 3, hw, 4) == 1, "penalty_last_n 0 covers the whole history");

    /* repeated calls: counts do not leak from one call to the next */
    p = ds_sampler_default_params();
    p.temperature = 0.0f;
    p.frequency_penalty = 0.2f;
    ds_sampler *s = mk(&p);
    int32_t t1 = -1, t2 = -1;
    int ok = s && ds_sampler_sample(s, f, 3, h000, 3, &t1) == DS_OK && ds_sampler_sample(s, f, 3, NULL, 0, &t2) == DS_OK;
    T_CHECK("sampler-7.14", ok && t1 == 1 && t2 == 0, "penalised then unpenalised: %d %d", (int)t1, (int)t2);
    ds_sampler_free(s);
}

/* ==== 8. Large vocabularies =============================================== */

static void test_large(void) {
    /* DeepSeek-V3's 129280, then a larger one (the scratch grows), then a
     * small one again (it is reused) */
    const int sizes[3] = {129280, 200000, 10};
    float *l = malloc(200000 * sizeof *l);
    int32_t *h = malloc(4096 * sizeof *h);
    if (!l || !h) {
        T_SKIP("sampler-8", "out of memory in the test");
        free(l);
        free(h);
        return;
    }
    ds_sampler_params p = params_t(0.8f, 11);
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repetition_penalty = 1.1f;
    p.penalty_last_n = 0;
    ds_sampler *s = mk(&p);
    ds_sampler_params q = params_t(1.0f, 12);   /* top-p without top-k: a full sort */
    q.top_p = 0.9f;
    ds_sampler *s2 = mk(&q);
    for (int k = 0; k < 3; k++) {
        int n = sizes[k];
        for (int i = 0; i < n; i++) l[i] = (float)(rnd() * 30 - 15);
        for (int i = 0; i < 4096; i++) h[i] = (int32_t)(rnd() * n);
        int bad = 0;
        for (int d = 0; d < 5; d++) {
            int32_t t = -1, u = -1;
            if (ds_sampler_sample(s, l, n, h, 4096, &t) != DS_OK || t < 0 || t >= n) bad++;
            if (ds_sampler_sample(s2, l, n, NULL, 0, &u) != DS_OK || u < 0 || u >= n) bad++;
        }
        char id[32];
        snprintf(id, sizeof id, "sampler-8.%d", k + 1);
        T_CHECK(id, bad == 0, "vocabulary %d: %d failed draws (%s)", n, bad, ds_last_error());
    }
    ds_sampler_free(s);
    ds_sampler_free(s2);
    free(l);
    free(h);
}


/* ==== 9. Generation ======================================================= */
/* ds_generate on the generated v2lite checkpoint (converted here, F32),
 * checked against a hand-written loop over ds_context_eval and argmax. */

typedef struct collect {
    int32_t ids[256];
    int n;
    char text[8192];
    size_t len;
    int stop_after;           /* return non-zero after this many tokens (0 = never) */
} collect;

static int on_tok(void *user, int32_t token, const char *piece, size_t len) {
    collect *c = user;
    if (c->n < 256) c->ids[c->n++] = token;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, piece, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    return c->stop_after && c->n >= c->stop_after;
}

static void test_generate(void) {
    const char *td = getenv("DS_TESTDATA");
    char dir[512], path[600], tmp[] = "/tmp/ds-test-sampler-XXXXXX";
    snprintf(dir, sizeof dir, "%s/v2lite", td ? td : "");
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *probe = td ? fopen(path, "rb") : NULL;
    if (!probe) {
        T_SKIP("generate", "no generated checkpoints ($DS_TESTDATA)");
        return;
    }
    fclose(probe);
    if (!mkdtemp(tmp)) {
        T_SKIP("generate", "mkdtemp failed");
        return;
    }
    snprintf(path, sizeof path, "%s/v2lite-f32.dsm", tmp);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_F32;
    cp.encrypt = 0;
    ds_model *m = NULL;
    ds_context *c = NULL, *small = NULL;
    ds_status st = ds_convert(dir, path, &cp);
    T_STATUS("generate-0.1", st, DS_OK, ds_last_error());
    ds_model_params mp = ds_model_default_params();
    mp.n_threads = 2;
    if (st == DS_OK) st = ds_model_open(&m, path, &mp);
    T_STATUS("generate-0.2", st, DS_OK, ds_last_error());
    ds_context_params xp = ds_context_default_params();
    if (st == DS_OK) st = ds_context_new(&c, m, &xp);
    xp.n_ctx = 4;
    if (st == DS_OK) st = ds_context_new(&small, m, &xp);
    T_STATUS("generate-0.3", st, DS_OK, ds_last_error());
    if (st != DS_OK) goto out;
    T_CHECK("generate-0.4", ds_context_model(c) == m, "ds_context_model is not the model");

    const ds_tokenizer *tok = ds_model_tokenizer(m);
    ds_model_config cfg;
    if (ds_model_get_config(m, &cfg) != DS_OK) goto out;
    ds_sampler_params gp = params_t(0.0f, 1);
    ds_sampler *greedy = mk(&gp);
    ds_generate_stats gs;
    collect col;
    const char *prompt = "The experts of the token";

    /* ---- 1: errors ---- */
    T_STATUS("generate-1.1", ds_generate(NULL, greedy, prompt, 4, NULL, NULL, NULL), DS_ERR_INVALID_ARG,
             ds_last_error());
    T_STATUS("generate-1.2", ds_generate(c, NULL, prompt, 4, NULL, NULL, NULL), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("generate-1.3", ds_generate(c, greedy, NULL, 4, NULL, NULL, NULL), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("generate-1.4", ds_generate(c, greedy, prompt, -1, NULL, NULL, NULL), DS_ERR_INVALID_ARG,
             ds_last_error());
    st = ds_generate(small, greedy, prompt, 4, NULL, NULL, &gs);
    T_CHECK("generate-1.5", st == DS_ERR_LIMIT && strstr(ds_last_error(), "exceeds the context of 4"),
            "oversize prompt: status %d, message '%s'", (int)st, ds_last_error());
    T_CHECK("generate-1.6", gs.n_generated == 0 && gs.n_prompt > 4, "stats after the oversize prompt: %d, %d",
            gs.n_prompt, gs.n_generated);
    T_STATUS("generate-1.7", ds_generate(c, greedy, "ok \xff\xfe", 4, NULL, NULL, NULL), DS_ERR_INVALID_ARG,
             ds_last_error());

    /* ---- 2: greedy generation equals a hand-written loop ---- */
    size_t n_enc = 0;
    int32_t ref[64 + 32];
    st = ds_tokenizer_encode(tok, prompt, strlen(prompt), DS_TOKENIZE_BOS, ref, 64, &n_enc);
    T_STATUS("generate-2.1", st, DS_OK, ds_last_error());
    memset(&col, 0, sizeof col);
    st = ds_generate(c, greedy, prompt, 16, on_tok, &col, &gs);
    T_STATUS("generate-2.2", st, DS_OK, ds_last_error());
    T_CHECK("generate-2.3", gs.n_prompt == (int)n_enc && gs.n_generated == col.n && col.n <= 16,
            "stats: prompt %d (want %zu), generated %d (callback saw %d)", gs.n_prompt, n_enc, gs.n_generated, col.n);
    T_CHECK("generate-2.4", gs.prompt_seconds >= 0 && gs.generate_seconds >= 0, "negative times");
    {
        int n_sample = ds_tokenizer_vocab_size(tok) < cfg.vocab_size ? ds_tokenizer_vocab_size(tok) : cfg.vocab_size;
        float *lg = malloc((size_t)cfg.vocab_size * sizeof *lg);
        int32_t want[16];
        int n_want = 0;
        ds_context_reset(c);
        st = lg ? ds_context_eval(c, ref, n_enc, lg, 0) : DS_ERR_NOMEM;
        while (st == DS_OK && n_want < 16) {
            int best = 0;
            for (int i = 1; i < n_sample; i++)
                if (lg[i] > lg[best]) best = i;
            if (best == ds_tokenizer_eos(tok)) break;
            want[n_want++] = best;
            int32_t t = best;
            if (n_want < 16) st = ds_context_eval(c, &t, 1, lg, 0);
        }
        free(lg);
        T_CHECK("generate-2.5", st == DS_OK && n_want == col.n && !memcmp(want, col.ids, sizeof(int32_t) * (size_t)n_want),
                "ds_generate gave %d tokens, the hand loop %d (first %d vs %d)", col.n, n_want, col.n ? col.ids[0] : -1,
                n_want ? want[0] : -1);
    }
    /* the streamed pieces spell what decoding all ids at once gives (unless
     * the random model stopped inside a UTF-8 character) */
    {
        char dec[8192];
        size_t dlen = 0;
        st = ds_tokenizer_decode(tok, col.ids, (size_t)col.n, dec, sizeof dec, &dlen);
        int partial = dlen >= 3 && !memcmp(dec + dlen - 3, "\xef\xbf\xbd", 3);
        T_CHECK("generate-2.6",
                st == DS_OK && (partial ? col.len <= dlen && !memcmp(dec, col.text, col.len)
                                        : dlen == col.len && !memcmp(dec, col.text, dlen)),
                "streamed '%s' but decode gives '%.*s'", col.text, (int)dlen, dec);
    }
    /* the same again: the context is reset, not appended to */
    collect col2;
    memset(&col2, 0, sizeof col2);
    st = ds_generate(c, greedy, prompt, 16, on_tok, &col2, NULL);
    T_CHECK("generate-2.7", st == DS_OK && col2.n == col.n && !memcmp(col.ids, col2.ids, sizeof(int32_t) * (size_t)col.n),
            "a second greedy run differs (%d vs %d tokens)", col2.n, col.n);

    /* ---- 3: stopping ---- */
    memset(&col, 0, sizeof col);
    col.stop_after = 1;
    st = ds_generate(c, greedy, prompt, 16, on_tok, &col, &gs);
    T_CHECK("generate-3.1", st == DS_OK && col.n <= 1 && gs.n_generated == col.n, "callback stop: %d tokens, status %d",
            col.n, (int)st);
    st = ds_generate(c, greedy, prompt, 0, on_tok, &col, &gs);
    T_CHECK("generate-3.2", st == DS_OK && gs.n_generated == 0 && gs.n_prompt == (int)n_enc, "max_tokens 0: %d, %d",
            gs.n_prompt, gs.n_generated);
    /* a context that holds just the prompt: one more token can be sampled
     * from the prompt's logits, then generation stops */
    {
        ds_context *fit = NULL;
        ds_context_params fp = ds_context_default_params();
        fp.n_ctx = (int)n_enc;
        st = ds_context_new(&fit, m, &fp);
        if (st == DS_OK) st = ds_generate(fit, greedy, prompt, 16, NULL, NULL, &gs);
        T_CHECK("generate-3.3", st == DS_OK && gs.n_prompt == (int)n_enc && gs.n_generated <= 1,
                "full context: status %d (%s), prompt %d, generated %d", (int)st, ds_last_error(), gs.n_prompt,
                gs.n_generated);
        T_CHECK("generate-3.4", fit && ds_context_n_past(fit) == (int)n_enc, "n_past %d, want %zu",
                fit ? ds_context_n_past(fit) : -1, n_enc);
        ds_context_free(fit);
    }

    /* ---- 4: a prompt that already begins with BOS (a rendered chat
     * template) does not get a second one ---- */
    {
        int32_t bos = ds_tokenizer_bos(tok);
        char btxt[256], p2[512];
        size_t blen = 0;
        if (bos >= 0 && ds_tokenizer_decode(tok, &bos, 1, btxt, sizeof btxt, &blen) == DS_OK) {
            snprintf(p2, sizeof p2, "%s%s", btxt, prompt);
            st = ds_generate(c, greedy, p2, 0, NULL, NULL, &gs);
            T_CHECK("generate-4.1", st == DS_OK && gs.n_prompt == (int)n_enc, "BOS text + prompt: %d tokens, want %zu",
                    gs.n_prompt, n_enc);
        } else {
            T_SKIP("generate-4.1", "no BOS token");
        }
    }

    /* ---- 5: sampling with a seed reproduces ---- */
    {
        ds_sampler_params sp = params_t(1.0f, 77);
        sp.repetition_penalty = 1.3f;
        ds_sampler *a = mk(&sp), *b = mk(&sp);
        memset(&col, 0, sizeof col);
        memset(&col2, 0, sizeof col2);
        ds_status s1 = ds_generate(c, a, prompt, 24, on_tok, &col, NULL);
        ds_status s2 = ds_generate(c, b, prompt, 24, on_tok, &col2, NULL);
        T_CHECK("generate-5.1",
                s1 == DS_OK && s2 == DS_OK && col.n == col2.n && !memcmp(col.ids, col2.ids, sizeof(int32_t) * (size_t)col.n),
                "seeded runs differ");
        ds_sampler_free(a);
        ds_sampler_free(b);
    }
    ds_sampler_free(greedy);

out:
    ds_context_free(small);
    ds_context_free(c);
    ds_model_close(m);
    unlink(path);
    rmdir(tmp);
}

int main(void) {
    test_params();
    test_bad_input();
    test_greedy();
    test_seeds();
    test_distribution();
    test_truncation();
    test_penalties();
    test_large();
    test_generate();
    return t_finish("test_sampler");
}
