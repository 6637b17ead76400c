/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * logits.h — what ds-server does to a request's logits before each token is
 * sampled, through the library's logits hook (ds_generate_params.on_logits):
 * logit_bias, response_format json_object (tools/server/jsonmask.h), and the
 * top log-probabilities that logprobs / top_logprobs report.
 *
 * One lc_ctl per request, owned by its generation; the hook runs on the
 * thread that steps the generation. It reads the tokens generated since its
 * last call from the history the library passes, so it needs no other call
 * to follow the text.
 */
#ifndef SERVER_LOGITS_H
#define SERVER_LOGITS_H

#include <stddef.h>
#include <stdint.h>

#include "deepseek.h"
#include "jsonmask.h"

#define LC_MAX_TOP 20             /* top_logprobs' largest value (OpenAI's) */

typedef struct lc_bias {
    int32_t id;
    float bias;                   /* added to the logit; <= -100 bans the token */
} lc_bias;

typedef struct lc_top {
    int32_t id;
    float logprob;
} lc_top;

/* One generated token, as logprobs report it. */
typedef struct lc_record {
    int32_t id;
    float logprob;                /* ds_generator_last's */
    int n_top;
    lc_top top[LC_MAX_TOP];       /* most likely first (ties: lower id first) */
} lc_record;

typedef struct lc_ctl {
    /* logit_bias */
    lc_bias *bias;                /* (n_bias) owned */
    int n_bias;
    int exclusive;                /* some bias is +100: only those tokens may come */
    float *save;                  /* (n_bias) owned scratch for exclusive */
    /* response_format json_object */
    const ds_tokenizer *tok;
    const jm_vocab *jv;           /* NULL: no JSON constraint */
    jm_scratch *js;               /* owned */
    jm_state json;                /* the text so far */
    int32_t eos;
    size_t n_prompt;              /* history before the first generated token */
    size_t n_seen;                /* history read into json so far */
    int limit;                    /* most tokens the generation can produce */
    int json_failed;              /* a token the validator refused reached the text (a stop string cut, ...) */
    int json_stuck;               /* no token fitted: the hook stopped the generation */
    /* logprobs */
    int n_top;                    /* top alternatives per token; -1: no logprobs */
    lc_top pending[LC_MAX_TOP];   /* the top of the step just sampled */
    int n_pending;
    lc_record *rec;               /* (n_rec) tokens not yet reported */
    size_t n_rec, cap_rec;
    size_t text_off;              /* bytes of the tokens reported so far (completions' text_offset) */
} lc_ctl;

/* The hook (ds_logits_fn): bias, then the JSON mask, then the top
 * log-probabilities over what is left. Returns 1 (stop) once the JSON object
 * is complete, or when no token can continue it. */
int lc_on_logits(void *user, float *logits, int n_vocab, const int32_t *history, size_t n_history);

/* Adds the token the step sampled (ds_generator_last) with the top the hook
 * computed for it. Returns 0 when out of memory. */
int lc_record_token(lc_ctl *c, int32_t id, float logprob);

/* Frees what c owns (not c). */
void lc_free(lc_ctl *c);

#endif /* SERVER_LOGITS_H */
