/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * sampler.c — turning a row of logits into one token id.
 *
 * The pipeline, in order:
 *   1. penalties over the last penalty_last_n ids of the history
 *      (repetition: CTRL-style; frequency: count * penalty; presence: once)
 *   2. temperature 0: argmax (lowest id on ties), done
 *   3. top-k        keep the k largest (a bounded heap: O(n log k))
 *   4. softmax      of logit / temperature, max-subtracted, in double
 *   5. top-p        the smallest head of the sorted candidates whose mass
 *                   reaches top_p (at least one token)
 *   6. min-p        drop tokens below min_p times the most likely one
 *   7. draw         from what is left, renormalised, with the sampler's own
 *                   xoshiro256** generator (same seed, same sequence)
 *
 * All arithmetic after the input is in double: logit / temperature with a
 * temperature of 1e-30 must not overflow to infinity, and sums over 129280
 * probabilities should not lose the tail. The caller's logits are never
 * written; the sampler owns a scratch buffer sized to the largest vocabulary
 * it has seen.
 */
#include "base.h"

#include <math.h>
#include <stdlib.h>

/* ==== Types ============================================================== */

/* One candidate token: its id and its (penalised) logit, later its
 * unnormalised probability. */
typedef struct smp_cand {
    double v;
    int32_t id;
} smp_cand;

struct ds_sampler {
    dsi_alloc al;
    ds_sampler_params p;
    uint64_t rng[4];            /* xoshiro256** state */
    int cap;                    /* vocabulary size the scratch below is sized for */
    double *x;                  /* (cap) penalised logits */
    smp_cand *cand;             /* (cap) candidates */
    uint32_t *count;            /* (cap) occurrences in the penalty window; all zero between calls */
    int32_t *seen;              /* (cap) distinct ids of the penalty window */
};

/* ==== Random numbers ===================================================== */
/* xoshiro256** (Blackman & Vigna), seeded through splitmix64 so that any
 * 64-bit seed, 0 included, gives a well-mixed non-zero state. */

static uint64_t smp_splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t smp_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t smp_next(uint64_t s[4]) {
    uint64_t r = smp_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = smp_rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double smp_uniform(uint64_t s[4]) { return (double)(smp_next(s) >> 11) * (1.0 / 9007199254740992.0); }

/* ==== Parameters ========================================================= */

DS_API ds_sampler_params ds_sampler_default_params(void) {
    ds_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repetition_penalty = 1.0f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.penalty_last_n = 64;
    p.seed = 0;
    p.magic = DSI_SAMPLER_PARAMS_MAGIC;
    return p;
}

/* Checks every field; the message names the first bad one and its value.
 * First, that the struct came from ds_sampler_default_params(): zero is
 * greedy for temperature and the whole history for penalty_last_n, not
 * their defaults, so a zeroed struct would sample differently from what its
 * author most likely meant (and top_p 0 would fail below with a puzzling
 * message). */
static ds_status smp_check_params(const ds_sampler_params *p, dsi_err *e) {
    if (dsi_params_check_magic(p->magic, DSI_SAMPLER_PARAMS_MAGIC, "sampler", "ds_sampler_params", "ds_sampler", e))
        return e->status;
    if (!(isfinite(p->temperature) && p->temperature >= 0.0f))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: temperature must be finite and >= 0, not %g",
                        (double)p->temperature);
    if (p->top_k < 0) return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: top_k must be >= 0, not %d", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: top_p must be in (0, 1], not %g", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: min_p must be in [0, 1), not %g", (double)p->min_p);
    if (!(isfinite(p->repetition_penalty) && p->repetition_penalty > 0.0f))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: repetition_penalty must be finite and > 0, not %g",
                        (double)p->repetition_penalty);
    if (!isfinite(p->frequency_penalty))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: frequency_penalty must be finite, not %g",
                        (double)p->frequency_penalty);
    if (!isfinite(p->presence_penalty))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: presence_penalty must be finite, not %g",
                        (double)p->presence_penalty);
    if (p->penalty_last_n < 0)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: penalty_last_n must be >= 0, not %d", p->penalty_last_n);
    return DS_OK;
}

/* ==== Construction ======================================================= */

DS_API ds_status ds_sampler_new(ds_sampler **out, const ds_sampler_params *params) {
    dsi_err e = {0};
    if (!out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_sampler_new: out is NULL");
        return dsi_publish(&e);
    }
    *out = NULL;
    ds_sampler_params p = params ? *params : ds_sampler_default_params();
    if (smp_check_params(&p, &e)) return dsi_publish(&e);

    dsi_alloc al;
    if (dsi_alloc_init(&al, NULL, &e)) return dsi_publish(&e);
    ds_sampler *s = dsi_calloc(&al, 1, sizeof *s);
    if (!s) {
        dsi_fail(&e, DS_ERR_NOMEM, "ds_sampler_new: out of memory");
        return dsi_publish(&e);
    }
    s->al = al;
    s->p = p;
    uint64_t sm = p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = smp_splitmix64(&sm);
    *out = s;
    return DS_OK;
}

static void smp_free_scratch(ds_sampler *s) {
    dsi_free(&s->al, s->x);
    dsi_free(&s->al, s->cand);
    dsi_free(&s->al, s->count);
    dsi_free(&s->al, s->seen);
    s->x = NULL;
    s->cand = NULL;
    s->count = NULL;
    s->seen = NULL;
    s->cap = 0;
}

DS_API void ds_sampler_free(ds_sampler *s) {
    if (!s) return;
    smp_free_scratch(s);
    dsi_alloc al = s->al;
    dsi_free(&al, s);
}

/* Makes the scratch hold n entries (keeps a larger one). */
static ds_status smp_reserve(ds_sampler *s, int n, dsi_err *e) {
    if (n <= s->cap) return DS_OK;
    smp_free_scratch(s);
    size_t un = (size_t)n;
    s->x = dsi_calloc(&s->al, un, sizeof *s->x);
    s->cand = dsi_calloc(&s->al, un, sizeof *s->cand);
    s->count = dsi_calloc(&s->al, un, sizeof *s->count);   /* zero: the invariant between calls */
    s->seen = dsi_calloc(&s->al, un, sizeof *s->seen);
    if (!s->x || !s->cand || !s->count || !s->seen) {
        smp_free_scratch(s);
        return dsi_fail(e, DS_ERR_NOMEM, "sampler: out of memory for a vocabulary of %d", n);
    }
    s->cap = n;
    return DS_OK;
}

/* ==== Penalties ========================================================== */

/* Applies the penalties to x over the window of the history. Ids were checked
 * by the caller. count[] is zero on entry and on return. */
static void smp_penalize(ds_sampler *s, double *x, const int32_t *hist, size_t n_hist) {
    const ds_sampler_params *p = &s->p;
    if (p->repetition_penalty == 1.0f && p->frequency_penalty == 0.0f && p->presence_penalty == 0.0f) return;
    size_t start = 0;
    if (p->penalty_last_n > 0 && n_hist > (size_t)p->penalty_last_n) start = n_hist - (size_t)p->penalty_last_n;

    /* count each id once per occurrence; remember the distinct ones */
    size_t n_seen = 0;
    for (size_t i = start; i < n_hist; i++) {
        int32_t id = hist[i];
        if (s->count[id]++ == 0) s->seen[n_seen++] = id;
    }
    const double rp = p->repetition_penalty, fp = p->frequency_penalty, pp = p->presence_penalty;
    for (size_t j = 0; j < n_seen; j++) {
        int32_t id = s->seen[j];
        double v = x[id];
        /* CTRL (Keskar et al. 2019): make a seen token less likely whatever
         * the sign of its logit */
        if (rp != 1.0) v = v > 0 ? v / rp : v * rp;
        v -= (double)s->count[id] * fp + pp;
        x[id] = v;
        s->count[id] = 0;
    }
}

/* ==== Ordering and selection ============================================= */

/* A strict total order: larger value first, then lower id. Candidates with
 * equal values therefore sort the same way on every platform. */
static int smp_before(const smp_cand *a, const smp_cand *b) {
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int smp_cmp(const void *pa, const void *pb) {
    const smp_cand *a = pa, *b = pb;
    if (smp_before(a, b)) return -1;
    if (smp_before(b, a)) return 1;
    return 0;
}

/* Sift down in a heap whose root is the *worst* candidate (so the k best
 * stay in it). */
static void smp_sift(smp_cand *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && smp_before(&h[w], &h[l])) w = l;
        if (r < n && smp_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        smp_cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Moves the k best of c[0..n) to c[0..k), sorted best first. O(n log k). */
static void smp_top_k(smp_cand *c, size_t n, size_t k) {
    for (size_t i = k / 2; i-- > 0;) smp_sift(c, k, i);
    for (size_t i = k; i < n; i++) {
        if (smp_before(&c[i], &c[0])) {
            c[0] = c[i];
            smp_sift(c, k, 0);
        }
    }
    qsort(c, k, sizeof *c, smp_cmp);
}

/* ==== Sampling =========================================================== */

/* Checks the inputs and fills s->x with the penalised logits. */
static ds_status smp_prepare(ds_sampler *s, const float *logits, int n_vocab, const int32_t *history,
                             size_t n_history, dsi_err *e) {
    if (n_vocab <= 0) return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: n_vocab must be > 0, not %d", n_vocab);
    if (!logits) return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: logits is NULL");
    if (n_history && !history) return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: history is NULL with %zu ids", n_history);
    for (size_t i = 0; i < n_history; i++)
        if (history[i] < 0 || history[i] >= n_vocab)
            return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: history[%zu] = %ld is outside the vocabulary of %d", i,
                            (long)history[i], n_vocab);
    /* -inf is a masked token and allowed; NaN and +inf are bugs upstream */
    int any = 0;
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (isnan(v)) return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: logit %d is NaN", i);
        if (isinf(v) && v > 0) return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: logit %d is +infinity", i);
        any |= !isinf(v);
    }
    if (!any) return dsi_fail(e, DS_ERR_INVALID_ARG, "sampler: all %d logits are -infinity", n_vocab);
    ds_status st = smp_reserve(s, n_vocab, e);
    if (st) return st;
    for (int i = 0; i < n_vocab; i++) s->x[i] = (double)logits[i];
    smp_penalize(s, s->x, history, n_history);
    return DS_OK;
}

/* Argmax, lowest id on ties. At least one x is finite. */
static int32_t smp_argmax(const double *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

DS_API ds_status ds_sampler_sample(ds_sampler *s, const float *logits, int n_vocab, const int32_t *history,
                                   size_t n_history, int32_t *out) {
    dsi_err e = {0};
    if (!s || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_sampler_sample: %s is NULL", s ? "out" : "sampler");
        return dsi_publish(&e);
    }
    *out = -1;
    if (smp_prepare(s, logits, n_vocab, history, n_history, &e)) return dsi_publish(&e);
    const ds_sampler_params *p = &s->p;
    const double *x = s->x;

    /* ---- greedy ---- */
    if (p->temperature == 0.0f) {
        *out = smp_argmax(x, n_vocab);
        return DS_OK;
    }

    /* ---- candidates: every token that is not masked ---- */
    smp_cand *c = s->cand;
    size_t n = 0;
    for (int i = 0; i < n_vocab; i++)
        if (!isinf(x[i])) {
            c[n].v = x[i];
            c[n].id = (int32_t)i;
            n++;
        }
    int sorted = 0;

    /* ---- top-k: the k best, sorted ---- */
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        smp_top_k(c, n, (size_t)p->top_k);
        n = (size_t)p->top_k;
        sorted = 1;
    }

    /* ---- softmax of v / T: exp((v - max) / T), so the best is exp(0) = 1.
     * Only relative weights matter below; the sum is taken when needed. ---- */
    double vmax = c[0].v;
    for (size_t i = 1; i < n; i++)
        if (c[i].v > vmax) vmax = c[i].v;
    const double inv_t = 1.0 / (double)p->temperature;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        c[i].v = exp((c[i].v - vmax) * inv_t);
        sum += c[i].v;
    }

    /* ---- top-p: the smallest head whose mass reaches top_p ---- */
    if (p->top_p < 1.0f && n > 1) {
        if (!sorted) {
            qsort(c, n, sizeof *c, smp_cmp);
            sorted = 1;
        }
        const double target = (double)p->top_p * sum;
        double cum = 0.0;
        size_t keep = n;
        for (size_t i = 0; i < n; i++) {
            cum += c[i].v;
            if (cum >= target) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = cum;
    }

    /* ---- min-p: relative to the most likely token, whose weight is 1 ---- */
    if (p->min_p > 0.0f) {
        const double floor_p = (double)p->min_p;   /* * max weight (= 1) */
        size_t w = 0;
        sum = 0.0;
        for (size_t i = 0; i < n; i++)
            if (c[i].v >= floor_p) {
                c[w++] = c[i];
                sum += c[i].v;
            }
        n = w;   /* the best (weight 1) always survives since min_p < 1 */
    }

    /* ---- draw ---- */
    const double r = smp_uniform(s->rng) * sum;
    double cum = 0.0;
    int32_t pick = -1, last = c[0].id;
    for (size_t i = 0; i < n; i++) {
        if (c[i].v <= 0.0) continue;   /* underflowed to zero: never drawn */
        last = c[i].id;
        cum += c[i].v;
        if (r < cum) {
            pick = c[i].id;
            break;
        }
    }
    if (pick < 0) pick = last;   /* r rounded up to the sum: the last with weight */
    *out = pick;
    return DS_OK;
}
