/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * logits.c — ds-server's logits hook: logit_bias, the JSON-object mask, and
 * the top log-probabilities (see logits.h).
 */
#include "logits.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Reads the tokens generated since the last call into the JSON state. A
 * token the mask allowed always fits, so a refusal means something else
 * chose the token; the output is then marked failed and left alone. */
static void lc_follow(lc_ctl *c, const int32_t *history, size_t n_history) {
    if (c->n_seen < c->n_prompt) c->n_seen = c->n_prompt;
    for (; c->n_seen < n_history; c->n_seen++) {
        const char *b;
        size_t len;
        if (c->json_failed) continue;
        if (ds_tokenizer_token_bytes(c->tok, history[c->n_seen], &b, &len, NULL) != DS_OK ||
            !jm_bytes(&c->json, (const unsigned char *)b, len))
            c->json_failed = 1;
    }
}

/* The n_top largest logits (ties: lower id first) as log-probabilities, the
 * log-softmax at temperature 1 computed as ds_generator_last computes it, so
 * that the sampled token's value matches its entry here bit for bit. */
static void lc_top_logprobs(lc_ctl *c, const float *logits, int n_vocab) {
    int k = c->n_top < LC_MAX_TOP ? c->n_top : LC_MAX_TOP, n = 0;
    float mx = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - mx);
    double lse = log(sum);
    lc_top *top = c->pending;
    for (int i = 0; i < n_vocab && k > 0; i++) {
        float l = logits[i];
        if (l == -INFINITY || (n == k && l <= top[n - 1].logprob)) continue;
        int j = n < k ? n++ : n - 1;   /* insertion point from the end */
        while (j > 0 && top[j - 1].logprob < l) {
            top[j] = top[j - 1];
            j--;
        }
        top[j].id = i;
        top[j].logprob = l;           /* the logit for now */
    }
    for (int j = 0; j < n; j++) top[j].logprob = (float)((double)top[j].logprob - mx - lse);
    c->n_pending = n;
}

int lc_on_logits(void *user, float *logits, int n_vocab, const int32_t *history, size_t n_history) {
    lc_ctl *c = user;
    c->n_pending = 0;
    /* ---- logit_bias: -100 bans; +100 selects (only the +100 ids remain) ---- */
    for (int b = 0; b < c->n_bias; b++) {
        int32_t id = c->bias[b].id;
        if (id < 0 || id >= n_vocab) continue;
        if (c->bias[b].bias <= -100) logits[id] = -INFINITY;
        else logits[id] += c->bias[b].bias;
    }
    if (c->exclusive) {
        /* keep the +100 ids' logits aside (c->save), mask all, put them back */
        for (int b = 0; b < c->n_bias; b++)
            c->save[b] = c->bias[b].id < n_vocab && c->bias[b].bias >= 100 ? logits[c->bias[b].id] : -INFINITY;
        for (int i = 0; i < n_vocab; i++) logits[i] = -INFINITY;
        for (int b = 0; b < c->n_bias; b++)
            if (c->save[b] > -INFINITY) logits[c->bias[b].id] = c->save[b];
    }
    /* ---- JSON: stop once the object is complete, else mask ---- */
    if (c->jv) {
        lc_follow(c, history, n_history);
        if (!c->json_failed) {
            if (jm_done(&c->json)) return 1;
            int generated = (int)(n_history - c->n_prompt);
            if (!jm_mask(c->jv, c->js, &c->json, c->limit - generated, c->eos, logits, n_vocab)) {
                c->json_stuck = 1;
                return 1;
            }
        }
    }
    /* every logit masked (the bias banned all there was): stop rather than
     * hand the sampler nothing to choose from */
    int any = 0;
    for (int i = 0; i < n_vocab && !any; i++) any = logits[i] > -INFINITY;
    if (!any) return 1;
    if (c->n_top > 0) lc_top_logprobs(c, logits, n_vocab);   /* (the sampled token's own: ds_generator_last) */
    return 0;
}

int lc_record_token(lc_ctl *c, int32_t id, float logprob) {
    if (c->n_rec == c->cap_rec) {
        size_t cap = c->cap_rec ? 2 * c->cap_rec : 16;
        lc_record *r = realloc(c->rec, cap * sizeof *r);
        if (!r) return 0;
        c->rec = r;
        c->cap_rec = cap;
    }
    lc_record *r = &c->rec[c->n_rec++];
    r->id = id;
    r->logprob = logprob;
    r->n_top = c->n_pending;
    memcpy(r->top, c->pending, (size_t)c->n_pending * sizeof *r->top);
    c->n_pending = 0;
    return 1;
}

void lc_free(lc_ctl *c) {
    if (!c) return;
    free(c->bias);
    free(c->save);
    jm_scratch_free(c->js);
    free(c->rec);
    memset(c, 0, sizeof *c);
}
