/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * forward.c — the forward pass, written once over the device table
 * (dsi_device_i: cpu.c, cuda.c), and the inference context around it.
 *
 * A token's path: its embedding row; per layer an RMS norm, attention (MLA:
 * optional q-LoRA, the kv_a projection, the cache of normalised latents and
 * roped keys, attention per run of one sequence; multi-head attention for
 * DeepSeek-MoE), the residual, an RMS norm, the feed-forward (a dense MLP,
 * or the router, the routed experts grouped here per expert in ascending
 * order, and the shared experts), the residual; then the final norm and the
 * LM head for the rows whose logits are wanted.
 *
 * The driver decides the order of operations; a device decides how each is
 * done and where its memory lives. A batch may hold tokens of several
 * sequences (dsi_batch): everything but attention runs on the whole batch,
 * attention on each run of consecutive positions of one sequence.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ==== Context ============================================================ */
struct ds_context {
    ds_model *m;
    dsi_err err;
    int n_ctx, n_past;
    int32_t *hist;                     /* (n_ctx) the token at each position of the KV cache */
    ds_abort_fn abort_fn;              /* asked between batches and layers; NULL = never */
    void *abort_user;
    const dsi_device_i *dev;           /* the model's device */
    void *dc;                          /* its per-context state */
    dsi_act a;                         /* its activations (device memory) */
    const dsi_weights *w;              /* the weights as the device addresses them */
    float eps;
    /* host: the batch, the routing and the MoE plan, for DSI_MAX_BATCH tokens */
    int32_t *pos, *seq;                /* (T) */
    int *sel;                          /* (T, K) */
    float *selw;                       /* (T, K) */
    int *used, *off, *cnt;             /* (E) */
    int *idx;                          /* (T * K) */
    float *wts;                        /* (T * K) */
    bool counted;                      /* included in the model's n_contexts */
    /* Sequences (ds_context_seq): the context ds_context_new made is the
     * root and sequence 0; sequences 1.. are handles that copy its shared
     * state (device context, activations, host scratch: the pointers above)
     * and own only their tokens (hist, n_past), error and abort callback. */
    ds_context *root;                  /* the context this one belongs to (itself for the root) */
    int seq_id, n_seq;                 /* which sequence; how many the root has */
    ds_context **seqs;                 /* root only: (n_seq) the handles, seqs[0] = root */
    float *blog;                       /* root only, n_seq > 1: (n_seq, vocab) logits of a batch step */
    int32_t *btok;                     /* root only: (DSI_MAX_BATCH) the tokens of a pass of several runs */
    int *brow;                         /* root only: (DSI_MAX_BATCH) rows of such a pass that want logits */
    ds_context *const *batch;          /* root, during ds_context_eval_batch: the sequences whose abort */
    int batch_n;                       /* callbacks are asked */
    /* LoRA adapters (ds_context_set_adapters): this sequence's list */
    dsi_lora_list lora;
    bool any_lora;                     /* root only: some sequence has adapters */
    const dsi_lora_list **tok_lora;    /* root only: (DSI_MAX_BATCH) per token of a pass, for the MoE plan */
    ds_routing_fn route_fn;            /* root only: the routing observer, or NULL */
    void *route_user;
};

DS_API ds_context_params ds_context_default_params(void) {
    ds_context_params p;
    memset(&p, 0, sizeof p);
    return p;
}

DS_API const char *ds_context_errmsg(const ds_context *c) { return c ? c->err.msg : "no context"; }
DS_API int ds_context_n_past(const ds_context *c) { return c ? c->n_past : 0; }
DS_API int ds_context_n_ctx(const ds_context *c) { return c ? c->n_ctx : 0; }
DS_API ds_model *ds_context_model(const ds_context *c) { return c ? c->m : NULL; }
DS_API int ds_context_n_seq(const ds_context *c) { return c ? c->n_seq : 0; }
DS_API int ds_context_seq_id(const ds_context *c) { return c ? c->seq_id : 0; }
DS_API ds_context *ds_context_seq(ds_context *c, int i) {
    if (!c || i < 0 || i >= c->n_seq) return NULL;
    return c->root->seqs[i];
}
DS_API void ds_context_reset(ds_context *c) {
    if (c) c->n_past = 0;
}

static ds_status dsi_ctx_fail(ds_context *c, const dsi_err *e) {
    c->err = *e;
    return dsi_publish(e);
}

/* Positions past n_keep are forgotten; their KV entries are overwritten by
 * the next evaluation (attention never reads past n_past). */
DS_API ds_status ds_context_truncate(ds_context *c, int n_keep) {
    dsi_err e = {0};
    if (!c) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_truncate: context is NULL");
        return dsi_publish(&e);
    }
    if (n_keep < 0 || n_keep > c->n_past) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_truncate: cannot keep %d tokens of the %d the context holds",
                 n_keep, c->n_past);
        return dsi_ctx_fail(c, &e);
    }
    c->n_past = n_keep;
    return DS_OK;
}

DS_API const int32_t *ds_context_tokens(const ds_context *c, int *n) {
    if (n) *n = c ? c->n_past : 0;
    return c ? c->hist : NULL;
}

DS_API void ds_context_set_abort(ds_context *c, ds_abort_fn fn, void *user) {
    if (!c) return;
    c->abort_fn = fn;
    c->abort_user = fn ? user : NULL;
}

DS_API ds_status ds_context_set_routing_observer(ds_context *c, ds_routing_fn fn, void *user) {
    dsi_err e = {0};
    if (!c) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_set_routing_observer: NULL context");
        return dsi_publish(&e);
    }
    c->root->route_fn = fn;
    c->root->route_user = fn ? user : NULL;
    return DS_OK;
}

/* ==== Adapters ============================================================= */
/* Counts the adapters of list l in (d = 1) or out (d = -1) of use. */
static void dsi_lora_count(const dsi_lora_list *l, int d) {
    for (int i = 0; i < l->n; i++) __atomic_add_fetch(&((ds_adapter *)l->use[i].a)->n_users, d, __ATOMIC_ACQ_REL);
}

static bool dsi_lora_same(const dsi_lora_list *x, const dsi_lora_list *y) {
    if (!x || !y) return x == y;
    if (x->n != y->n) return false;
    for (int i = 0; i < x->n; i++)
        if (x->use[i].a != y->use[i].a || x->use[i].s != y->use[i].s) return false;
    return true;
}

DS_API ds_status ds_context_set_adapters(ds_context *c, ds_adapter *const *adapters, const float *scales, size_t n) {
    dsi_err e = {0};
    if (!c) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_set_adapters: context is NULL");
        return dsi_publish(&e);
    }
    if (n > DS_MAX_ADAPTERS || (n && !adapters)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_set_adapters: %s",
                 n > DS_MAX_ADAPTERS ? "more than DS_MAX_ADAPTERS (8) adapters" : "adapters is NULL");
        return dsi_ctx_fail(c, &e);
    }
    if (n && (!c->dev->lora || !c->dev->silu_mul)) {
        dsi_fail(&e, DS_ERR_UNSUPPORTED, "ds_context_set_adapters: the %s device does not apply LoRA adapters",
                 c->dev->name);
        return dsi_ctx_fail(c, &e);
    }
    dsi_lora_list l;
    memset(&l, 0, sizeof l);
    for (size_t i = 0; i < n; i++) {
        float m = scales ? scales[i] : 1.0f;
        if (!adapters[i] || adapters[i]->base != c->m || !isfinite(m)) {
            dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_set_adapters: adapter %zu %s", i,
                     !adapters[i] ? "is NULL" : adapters[i]->base != c->m ? "was opened over another model"
                                                                          : "has a scale that is not finite");
            return dsi_ctx_fail(c, &e);
        }
        l.use[l.n++] = (dsi_lora_use){adapters[i], adapters[i]->scale * m};
    }
    if (dsi_lora_same(&l, &c->lora)) return DS_OK;
    dsi_lora_count(&l, 1);
    dsi_lora_count(&c->lora, -1);
    c->lora = l;
    c->n_past = 0;   /* the KV entries were computed under the other list */
    ds_context *root = c->root;
    bool any = false;
    for (int i = 0; i < root->n_seq; i++) any |= root->seqs[i]->lora.n > 0;
    __atomic_store_n(&root->any_lora, any, __ATOMIC_RELAXED);
    return DS_OK;
}

DS_API size_t ds_context_get_adapters(const ds_context *c, ds_adapter **adapters, float *scales, size_t cap) {
    if (!c) return 0;
    for (int i = 0; i < c->lora.n && (size_t)i < cap; i++) {
        const ds_adapter *a = c->lora.use[i].a;
        if (adapters) adapters[i] = (ds_adapter *)a;
        if (scales) scales[i] = c->lora.use[i].s / a->scale;
    }
    return (size_t)c->lora.n;
}

DSI_FUNC bool dsi_context_aborted(const ds_context *c) { return c->abort_fn && c->abort_fn(c->abort_user); }

static bool dsi_ctx_aborted(const ds_context *c, dsi_err *e) {
    bool stop = false;
    if (c->batch_n)
        for (int i = 0; i < c->batch_n && !stop; i++) stop = dsi_context_aborted(c->batch[i]);
    else
        stop = dsi_context_aborted(c);
    if (!stop) return false;
    dsi_fail(e, DS_ERR_CANCELLED, "evaluation cancelled by the abort callback");
    return true;
}

/* ==== Rotary tables ======================================================= */
/* YaRN helpers, as the reference implementations define them. */
static double dsi_yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double dsi_yarn_corr_dim(double n_rot, int dim, double base, double max_pos) {
    return (dim * log(max_pos / (n_rot * 2.0 * M_PI))) / (2.0 * log(base));
}

/* inv_freq (dim / 2) and the cos/sin factor, YaRN applied when configured. */
static void dsi_rope_init(const ds_model_config *cf, int dim, float *inv_freq, float *mscale) {
    int half = dim / 2;
    *mscale = 1.0f;
    for (int i = 0; i < half; i++) {
        /* the references compute the exponent and power in float32 */
        float ex = (float)(2 * i) / (float)dim;
        inv_freq[i] = 1.0f / powf(cf->rope_theta, ex);
    }
    if (!cf->rope_scaling_yarn) return;
    double factor = cf->rope_factor;
    double lo = floor(dsi_yarn_corr_dim(cf->rope_beta_fast, dim, cf->rope_theta, cf->rope_original_max_position));
    double hi = ceil(dsi_yarn_corr_dim(cf->rope_beta_slow, dim, cf->rope_theta, cf->rope_original_max_position));
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = dim - 1;
    if (lo == hi) hi += 0.001;
    for (int i = 0; i < half; i++) {
        float extra = inv_freq[i];
        float inter = 1.0f / ((float)factor * powf(cf->rope_theta, (float)(2 * i) / (float)dim));
        float ramp = (float)(((double)i - lo) / (hi - lo));
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float mask = 1.0f - ramp;   /* 1 keeps the original (high) frequency */
        inv_freq[i] = inter * (1.0f - mask) + extra * mask;
    }
    *mscale = (float)(dsi_yarn_mscale(factor, cf->rope_mscale) / dsi_yarn_mscale(factor, cf->rope_mscale_all_dim));
}

/* The widths of a context, the same for every device (and for the memory
 * plan): everything in sh but the counts, the threads and inv_freq. */
static void dsi_ctx_widths(const ds_model_config *cf, bool mla, dsi_ctx_shape *sh) {
    int H = cf->n_heads;
    int hd = mla ? cf->qk_nope_head_dim + cf->qk_rope_head_dim : cf->head_dim;
    int shared = cf->moe_intermediate_size * (cf->n_shared_experts > 0 ? cf->n_shared_experts : 1);
    memset(sh, 0, sizeof *sh);
    sh->rope_dim = mla ? cf->qk_rope_head_dim : cf->head_dim;
    sh->rope_mscale = 1.0f;
    sh->attn_scale = 1.0f / sqrtf((float)hd);
    sh->head_dim = hd;
    sh->kv_a_dim = mla ? cf->kv_lora_rank : cf->n_kv_heads * hd;
    sh->kv_b_dim = mla ? cf->qk_rope_head_dim : cf->n_kv_heads * hd;
    sh->q_dim = H * hd > cf->q_lora_rank ? H * hd : cf->q_lora_rank;
    sh->qa_dim = cf->q_lora_rank > 0 ? cf->q_lora_rank : 1;
    sh->kva_dim = mla ? cf->kv_lora_rank + cf->qk_rope_head_dim : 2 * cf->n_kv_heads * hd;
    sh->att_dim = mla ? H * cf->v_head_dim : H * hd;
    sh->ffn_dim = cf->intermediate_size > shared ? cf->intermediate_size : shared;
}

DS_API ds_status ds_context_new(ds_context **out, ds_model *m, const ds_context_params *params) {
    dsi_err e = {0};
    if (!out || !m) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_new: out and model must not be NULL");
        return dsi_publish(&e);
    }
    *out = NULL;
    if (!m->weights_loaded || !m->w.layers || !m->dev) {
        dsi_fail(&e, DS_ERR_MISUSE, "ds_context_new: the model was opened with load_weights = 0");
        return dsi_publish(&e);
    }
    ds_context_params def = ds_context_default_params();
    const ds_context_params *p = params ? params : &def;
    const ds_model_config *cf = &m->cfg;
    int n_ctx = p->n_ctx > 0 ? p->n_ctx : (cf->max_position_embeddings < 4096 ? cf->max_position_embeddings : 4096);
    if (p->n_ctx < 0 || n_ctx > (1 << 22)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_new: n_ctx %d out of range", p->n_ctx);
        return dsi_publish(&e);
    }
    int n_seq = p->n_seq > 0 ? p->n_seq : 1;
    if (p->n_seq < 0 || n_seq > DSI_MAX_BATCH) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_new: n_seq %d out of range [1, %d]", p->n_seq, DSI_MAX_BATCH);
        return dsi_publish(&e);
    }
    const dsi_alloc *al = &m->al;
    ds_context *c = dsi_calloc(al, 1, sizeof *c);
    if (!c) {
        dsi_fail(&e, DS_ERR_NOMEM, "out of memory for a context");
        return dsi_publish(&e);
    }
    c->m = m;
    c->n_ctx = n_ctx;
    c->root = c;
    c->n_seq = n_seq;
    c->dev = m->dev;
    c->w = m->dev->weights(m);
    c->eps = cf->rms_norm_eps;
    /* the rotary table, the softmax scale and the widths, the same for
     * every device */
    bool mla = m->w.mla;
    dsi_ctx_shape sh;
    dsi_ctx_widths(cf, mla, &sh);
    int rope_dim = sh.rope_dim;
    float *inv_freq = dsi_calloc(al, (size_t)rope_dim / 2 + 1, sizeof(float));
    sh.n_ctx = n_ctx;
    sh.n_seq = n_seq;
    sh.max_batch = DSI_MAX_BATCH;
    sh.n_threads = p->n_threads > 0 ? p->n_threads : m->n_threads;
    sh.inv_freq = inv_freq;
    if (mla && cf->rope_scaling_yarn && cf->rope_mscale_all_dim > 0) {
        float ms = (float)dsi_yarn_mscale(cf->rope_factor, cf->rope_mscale_all_dim);
        sh.attn_scale *= ms * ms;
    }
    size_t T = DSI_MAX_BATCH, K = (size_t)(cf->n_experts_per_tok > 0 ? cf->n_experts_per_tok : 1);
    size_t E = (size_t)(cf->n_routed_experts > 0 ? cf->n_routed_experts : 1);
    c->hist = dsi_calloc(al, (size_t)n_ctx, sizeof *c->hist);
    c->pos = dsi_calloc(al, T, sizeof(int32_t));
    c->seq = dsi_calloc(al, T, sizeof(int32_t));
    c->sel = dsi_calloc(al, T * K, sizeof(int));
    c->selw = dsi_calloc(al, T * K, sizeof(float));
    c->used = dsi_calloc(al, E, sizeof(int));
    c->off = dsi_calloc(al, E, sizeof(int));
    c->cnt = dsi_calloc(al, E, sizeof(int));
    c->idx = dsi_calloc(al, T * K, sizeof(int));
    c->wts = dsi_calloc(al, T * K, sizeof(float));
    c->seqs = dsi_calloc(al, (size_t)n_seq, sizeof *c->seqs);
    c->btok = dsi_calloc(al, T, sizeof *c->btok);
    c->brow = dsi_calloc(al, T, sizeof *c->brow);
    c->tok_lora = dsi_calloc(al, T, sizeof *c->tok_lora);
    if (n_seq > 1) c->blog = dsi_calloc(al, (size_t)n_seq * (size_t)cf->vocab_size, sizeof(float));
    if (!inv_freq || !c->hist || !c->pos || !c->seq || !c->sel || !c->selw || !c->used || !c->off || !c->cnt ||
        !c->idx || !c->wts || !c->seqs || !c->btok || !c->brow || !c->tok_lora || (n_seq > 1 && !c->blog)) {
        dsi_free(al, inv_freq);
        ds_context_free(c);
        dsi_fail(&e, DS_ERR_NOMEM, "out of memory for a context");
        return dsi_publish(&e);
    }
    dsi_rope_init(cf, rope_dim, inv_freq, &sh.rope_mscale);
    ds_status s = c->dev->ctx_new(m, &sh, &c->dc, &c->a, &e);
    dsi_free(al, inv_freq);
    if (s) {
        ds_context_free(c);
        return dsi_publish(&e);
    }
    /* the other sequences: copies of the shared state with tokens of their own */
    c->seqs[0] = c;
    for (int i = 1; i < n_seq; i++) {
        ds_context *q = dsi_malloc(al, sizeof *q);
        int32_t *hist = dsi_calloc(al, (size_t)n_ctx, sizeof *hist);
        if (!q || !hist) {
            dsi_free(al, q);
            dsi_free(al, hist);
            ds_context_free(c);
            dsi_fail(&e, DS_ERR_NOMEM, "out of memory for sequence %d of a context", i);
            return dsi_publish(&e);
        }
        *q = *c;
        memset(&q->err, 0, sizeof q->err);
        q->hist = hist;
        q->n_past = 0;
        q->seq_id = i;
        q->seqs = NULL;
        q->blog = NULL;
        q->btok = NULL;
        q->brow = NULL;
        q->tok_lora = NULL;
        q->counted = false;
        c->seqs[i] = q;
    }
    __atomic_add_fetch(&m->n_contexts, 1, __ATOMIC_ACQ_REL);
    c->counted = true;
    *out = c;
    return DS_OK;
}

DS_API void ds_context_free(ds_context *c) {
    if (!c || c->root != c) return;   /* a sequence goes with its context */
    const dsi_alloc *al = &c->m->al;
    dsi_lora_count(&c->lora, -1);
    if (c->seqs)
        for (int i = 1; i < c->n_seq; i++)
            if (c->seqs[i]) {
                dsi_lora_count(&c->seqs[i]->lora, -1);
                dsi_free(al, c->seqs[i]->hist);
                dsi_free(al, c->seqs[i]);
            }
    dsi_free(al, c->seqs);
    dsi_free(al, c->blog);
    dsi_free(al, c->btok);
    dsi_free(al, c->brow);
    dsi_free(al, c->tok_lora);
    if (c->dc) c->dev->ctx_free(c->m, c->dc);
    dsi_free(al, c->hist);
    dsi_free(al, c->pos);
    dsi_free(al, c->seq);
    dsi_free(al, c->sel);
    dsi_free(al, c->selw);
    dsi_free(al, c->used);
    dsi_free(al, c->off);
    dsi_free(al, c->cnt);
    dsi_free(al, c->idx);
    dsi_free(al, c->wts);
    ds_model *m = c->m;
    bool counted = c->counted;
    dsi_free(al, c);
    if (counted) __atomic_sub_fetch(&m->n_contexts, 1, __ATOMIC_ACQ_REL);
}

/* ==== One layer =========================================================== */
/* A failed device call returns its status (the message is in e). */
#define DSI_TRY(call)                                                                                                \
    do {                                                                                                             \
        ds_status s_ = (call);                                                                                       \
        if (s_) return s_;                                                                                           \
    } while (0)

/* The next run of b from token t: one sequence, consecutive positions. */
static dsi_run dsi_next_run(const dsi_batch *b, int t) {
    dsi_run r = {t, 1, b->seq[t], b->pos[t], NULL};
    while (t + r.n < b->n && b->seq[t + r.n] == r.seq && b->pos[t + r.n] == r.pos0 + r.n) r.n++;
    return r;
}

/* ==== Adapters in the pass ================================================= */
/* The adapters of token t's sequence (NULL: none). */
static const dsi_lora_list *dsi_tok_lora(const ds_context *c, const dsi_batch *b, int t) {
    const ds_context *q = c->root->seqs[b->seq[t]];
    return q->lora.n ? &q->lora : NULL;
}

/* Whether some sequence of the context has adapters. Another thread may
 * set a list on a sequence outside the running pass (the server hands out
 * a free slot while the others decode), so the flag is atomic, and a pass
 * reads only the lists of its own sequences. */
static bool dsi_any_lora(const ds_context *c) { return __atomic_load_n(&c->root->any_lora, __ATOMIC_RELAXED); }

/* Whether some token of b has an adapter that changes module mod of layer l. */
static bool dsi_lora_any(const ds_context *c, const dsi_batch *b, int l, int mod) {
    if (!dsi_any_lora(c)) return false;
    for (int t = 0; t < b->n; t++) {
        if (t > 0 && b->seq[t] == b->seq[t - 1]) continue;
        const dsi_lora_list *ls = dsi_tok_lora(c, b, t);
        for (int k = 0; ls && k < ls->n; k++)
            if (ls->use[k].a->layers[l].m[mod].a.data) return true;
    }
    return false;
}

/* Rows of Y += each token's adapters' products for module mod of layer l
 * (y += s B (A x)), in the order of its sequence's list: consecutive tokens
 * with the same list in one device call per adapter. */
static ds_status dsi_lora_apply(ds_context *c, const dsi_batch *b, int l, int mod, const float *X, int ldx, float *Y,
                                int ldy, dsi_err *e) {
    if (!dsi_any_lora(c)) return DS_OK;
    for (int t = 0; t < b->n;) {
        const dsi_lora_list *ls = dsi_tok_lora(c, b, t);
        int n = 1;
        while (t + n < b->n && dsi_lora_same(ls, dsi_tok_lora(c, b, t + n))) n++;
        for (int i = 0; ls && i < ls->n; i++) {
            const dsi_lora_ab *ab = &ls->use[i].a->dev_layers[l].m[mod];
            if (ab->a.data)
                DSI_TRY(c->dev->lora(c->dc, ab, ls->use[i].s, X + (size_t)t * ldx, ldx, Y + (size_t)t * ldy, ldy, n,
                                     e));
        }
        t += n;
    }
    return DS_OK;
}

/* Y (T, out) = X W^T plus the adapters' products for module mod. */
static ds_status dsi_proj(ds_context *c, const dsi_batch *b, int l, int mod, const dsi_weight *w, const float *X,
                          int ldx, float *Y, int ldy, dsi_err *e) {
    DSI_TRY(c->dev->matmul(c->dc, w, X, b->n, ldx, Y, ldy, e));
    return dsi_lora_apply(c, b, l, mod, X, ldx, Y, ldy, e);
}

/* Y (T, D) = down(silu(gate X) * up X), a dense MLP or the shared experts:
 * fused on the device, or in steps when an adapter changes one of its
 * matrices for some token. */
static ds_status dsi_ffn_mlp(ds_context *c, const dsi_batch *b, int l, const dsi_layer *L, const float *X, float *Y,
                         dsi_err *e) {
    const dsi_device_i *d = c->dev;
    int D = c->m->cfg.hidden_size, I = L->gate.rows, T = b->n;
    if (!dsi_lora_any(c, b, l, DSI_LM_GATE) && !dsi_lora_any(c, b, l, DSI_LM_UP) &&
        !dsi_lora_any(c, b, l, DSI_LM_DOWN))
        return d->mlp(c->dc, &L->gate, &L->up, &L->down, X, T, Y, e);
    const dsi_act *a = &c->a;
    DSI_TRY(dsi_proj(c, b, l, DSI_LM_GATE, &L->gate, X, D, a->g, I, e));
    DSI_TRY(dsi_proj(c, b, l, DSI_LM_UP, &L->up, X, D, a->u, I, e));
    DSI_TRY(d->silu_mul(c->dc, a->g, a->u, (size_t)T * (size_t)I, e));
    return dsi_proj(c, b, l, DSI_LM_DOWN, &L->down, a->g, I, Y, D, e);
}

/* The run's adapters when one of them changes kv_b_proj of layer l. */
static const dsi_lora_list *dsi_run_lora(const ds_context *c, int seq, int l) {
    const dsi_lora_list *ls = &c->root->seqs[seq]->lora;
    for (int i = 0; i < ls->n; i++)
        if (ls->use[i].a->layers[l].m[DSI_LM_KV_B].a.data) return ls;
    return NULL;
}

static ds_status dsi_attention(ds_context *c, int l, const dsi_batch *b, dsi_err *e) {
    const ds_model_config *cf = &c->m->cfg;
    const dsi_device_i *d = c->dev;
    const dsi_layer *L = &c->w->layers[l];
    const dsi_act *a = &c->a;
    int D = cf->hidden_size, H = cf->n_heads, T = b->n;
    DSI_TRY(d->rmsnorm(c->dc, a->xn, D, a->x, D, &L->attn_norm, T, c->eps, e));
    if (c->w->mla) {
        int R = cf->kv_lora_rank, dr = cf->qk_rope_head_dim, hd = cf->qk_nope_head_dim + dr;
        if (c->w->qlora) {
            int Rq = cf->q_lora_rank;
            DSI_TRY(dsi_proj(c, b, l, DSI_LM_Q_A, &L->q_a, a->xn, D, a->qa, Rq, e));
            DSI_TRY(d->rmsnorm(c->dc, a->qa, Rq, a->qa, Rq, &L->q_a_norm, T, c->eps, e));
            DSI_TRY(dsi_proj(c, b, l, DSI_LM_Q_B, &L->q_b, a->qa, Rq, a->q, H * hd, e));
        } else {
            DSI_TRY(dsi_proj(c, b, l, DSI_LM_Q_PROJ, &L->q_proj, a->xn, D, a->q, H * hd, e));
        }
        DSI_TRY(dsi_proj(c, b, l, DSI_LM_KV_A, &L->kv_a, a->xn, D, a->kva, R + dr, e));
        for (int t = 0; t < T;) {
            dsi_run r = dsi_next_run(b, t);
            if (dsi_any_lora(c)) r.lora = dsi_run_lora(c, r.seq, l);
            DSI_TRY(d->mla_attention(c->dc, l, L, &r, c->eps, e));
            t += r.n;
        }
        DSI_TRY(dsi_proj(c, b, l, DSI_LM_O, &L->wo, a->att, H * cf->v_head_dim, a->tmp, D, e));
    } else {
        int hd = cf->head_dim, kd = cf->n_kv_heads * hd;
        DSI_TRY(dsi_proj(c, b, l, DSI_LM_WQ, &L->wq, a->xn, D, a->q, H * hd, e));
        DSI_TRY(dsi_proj(c, b, l, DSI_LM_WK, &L->wk, a->xn, D, a->kva, kd, e));
        DSI_TRY(dsi_proj(c, b, l, DSI_LM_WV, &L->wv, a->xn, D, a->kva + (size_t)T * kd, kd, e));
        for (int t = 0; t < T;) {
            dsi_run r = dsi_next_run(b, t);
            DSI_TRY(d->mha_attention(c->dc, l, L, &r, T, e));
            t += r.n;
        }
        DSI_TRY(dsi_proj(c, b, l, DSI_LM_O, &L->wo, a->att, H * hd, a->tmp, D, e));
    }
    return d->add(c->dc, a->x, a->tmp, (size_t)T * (size_t)D, e);
}

/* The router's choice grouped per expert: for each expert with tokens, in
 * ascending order, its tokens (ascending) and their weights. */
static dsi_moe_plan dsi_moe_plan_make(ds_context *c, int T) {
    const ds_model_config *cf = &c->m->cfg;
    int E = cf->n_routed_experts, K = cf->n_experts_per_tok;
    memset(c->cnt, 0, (size_t)E * sizeof(int));
    for (int i = 0; i < T * K; i++) c->cnt[c->sel[i]]++;
    int n_used = 0;
    for (int x = 0, o = 0; x < E; x++) {
        c->off[x] = o;
        o += c->cnt[x];
        if (c->cnt[x]) c->used[n_used++] = x;
        c->cnt[x] = 0;
    }
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int x = c->sel[t * K + k], at = c->off[x] + c->cnt[x]++;
            c->idx[at] = t;
            c->wts[at] = c->selw[t * K + k];
        }
    dsi_moe_plan p = {T, K, c->sel, c->selw, n_used, c->used, c->off, c->cnt, c->idx, c->wts, NULL};
    return p;
}

static ds_status dsi_ffn(ds_context *c, int l, const dsi_batch *b, dsi_err *e) {
    const ds_model_config *cf = &c->m->cfg;
    const dsi_device_i *d = c->dev;
    const dsi_layer *L = &c->w->layers[l];
    const dsi_act *a = &c->a;
    int D = cf->hidden_size, E = cf->n_routed_experts, K = cf->n_experts_per_tok, T = b->n;
    size_t n = (size_t)T * (size_t)D;
    DSI_TRY(d->rmsnorm(c->dc, a->xn, D, a->x, D, &L->ffn_norm, T, c->eps, e));
    if (!L->moe) {
        DSI_TRY(dsi_ffn_mlp(c, b, l, L, a->xn, a->tmp, e));
        return d->add(c->dc, a->x, a->tmp, n, e);
    }
    DSI_TRY(d->matmul(c->dc, &L->router, a->xn, T, D, a->router, E, e));
    DSI_TRY(d->route(c->dc, L, a->router, T, c->sel, c->selw, e));
    for (int i = 0; i < T * K; i++)
        if (c->sel[i] < 0 || c->sel[i] >= E || L->experts[c->sel[i]].segment == UINT32_MAX)
            return dsi_fail(e, DS_ERR_BACKEND, "routing of layer %d chose expert %d of %d%s", l, c->sel[i], E,
                            c->sel[i] >= 0 && c->sel[i] < E ? " (dropped at conversion)" : "");
    if (c->root->route_fn) c->root->route_fn(c->root->route_user, l, T, K, c->sel, c->selw);
    dsi_moe_plan plan = dsi_moe_plan_make(c, T);
    if (dsi_any_lora(c)) {   /* each token's adapters that change this layer's routed experts */
        bool any = false;
        for (int t = 0; t < T; t++) {
            const dsi_lora_list *ls = dsi_tok_lora(c, b, t);
            bool has = false;
            for (int i = 0; ls && i < ls->n; i++) has |= ls->use[i].a->layers[l].experts != NULL;
            c->root->tok_lora[t] = has ? ls : NULL;
            any |= has;
        }
        if (any) plan.lora = c->root->tok_lora;
    }
    DSI_TRY(d->moe(c->dc, l, L, &plan, a->xn, a->tmp, e));
    /* the shared experts, added after the routed ones */
    if (cf->n_shared_experts > 0) {
        DSI_TRY(dsi_ffn_mlp(c, b, l, L, a->xn, a->ye, e));
        DSI_TRY(d->add(c->dc, a->tmp, a->ye, n, e));
    }
    return d->add(c->dc, a->x, a->tmp, n, e);
}

/* ==== The forward pass ==================================================== */
/* Runs batch b; logits of rows [first_out, b->n), or with rows of those n_rows
 * rows (in that order), go to out (host, row-major, vocab each) when out is
 * not NULL. */
static ds_status dsi_forward_batch(ds_context *c, const dsi_batch *b, float *out, int first_out, const int *rows,
                                   int n_rows, dsi_err *e) {
    const ds_model_config *cf = &c->m->cfg;
    const dsi_device_i *d = c->dev;
    const dsi_act *a = &c->a;
    int D = cf->hidden_size, T = b->n;
    DSI_TRY(d->embed(c->dc, &c->w->embed, b->tok, T, a->x, e));
    for (int l = 0; l < cf->n_layers; l++) {
        if (l > 0 && dsi_ctx_aborted(c, e)) return DS_ERR_CANCELLED;
        ds_status s = dsi_attention(c, l, b, e);
        if (!s) s = dsi_ffn(c, l, b, e);
        if (s) return s;
    }
    if (!out) return DS_OK;
    int n_out = T - first_out;
    if (rows) {   /* each chosen row normed into the next row of xn */
        for (int i = 0; i < n_rows; i++)
            DSI_TRY(d->rmsnorm(c->dc, a->xn + (size_t)i * D, D, a->x + (size_t)rows[i] * D, D, &c->w->out_norm, 1,
                               c->eps, e));
        n_out = n_rows;
    } else {
        DSI_TRY(d->rmsnorm(c->dc, a->xn, D, a->x + (size_t)first_out * D, D, &c->w->out_norm, n_out, c->eps, e));
    }
    return d->head(c->dc, &c->w->lm_head, a->xn, n_out, out, e);
}

static ds_status dsi_forward(ds_context *c, const dsi_batch *b, float *out, int first_out, dsi_err *e) {
    ds_status s = c->dev->begin(c->dc, e);
    if (s) return s;
    s = dsi_forward_batch(c, b, out, first_out, NULL, 0, e);
    return c->dev->end(c->dc, s, e);
}

static ds_status dsi_forward_rows(ds_context *c, const dsi_batch *b, float *out, const int *rows, int n_rows,
                                  dsi_err *e) {
    ds_status s = c->dev->begin(c->dc, e);
    if (s) return s;
    s = dsi_forward_batch(c, b, out, 0, rows, n_rows, e);
    return c->dev->end(c->dc, s, e);
}

DS_API ds_status ds_context_eval(ds_context *c, const int32_t *tokens, size_t n, float *logits, int all_logits) {
    dsi_err e = {0};
    if (!c || (!tokens && n)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_eval: NULL argument");
        return c ? dsi_ctx_fail(c, &e) : dsi_publish(&e);
    }
    const ds_model_config *cf = &c->m->cfg;
    if (n == 0) return DS_OK;
    if (n > (size_t)(c->n_ctx - c->n_past)) {
        dsi_fail(&e, DS_ERR_LIMIT, "%zu tokens do not fit: %d of the context's %d are used", n, c->n_past, c->n_ctx);
        return dsi_ctx_fail(c, &e);
    }
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cf->vocab_size) {
            dsi_fail(&e, DS_ERR_INVALID_ARG, "token %zu: id %d is outside the vocabulary [0, %d)", i, (int)tokens[i],
                     cf->vocab_size);
            return dsi_ctx_fail(c, &e);
        }
    int start = c->n_past;
    for (size_t done = 0; done < n;) {
        int T = (int)(n - done < DSI_MAX_BATCH ? n - done : DSI_MAX_BATCH);
        bool last = done + (size_t)T == n;
        float *out = NULL;
        int first = 0;
        if (logits && all_logits) out = logits + done * (size_t)cf->vocab_size;
        else if (logits && last) {
            out = logits;
            first = T - 1;
        }
        /* one sequence: positions n_past.. */
        for (int t = 0; t < T; t++) {
            c->pos[t] = c->n_past + t;
            c->seq[t] = c->seq_id;
        }
        dsi_batch b = {T, tokens + done, c->pos, c->seq};
        ds_status s = dsi_ctx_aborted(c, &e) ? DS_ERR_CANCELLED : dsi_forward(c, &b, out, first, &e);
        if (s) {
            c->n_past = start;   /* nothing half-appended */
            return dsi_ctx_fail(c, &e);
        }
        c->n_past += T;
        done += (size_t)T;
    }
    memcpy(c->hist + start, tokens, n * sizeof *tokens);
    return DS_OK;
}

/* Runs r[0..m) (each: tokens appended to its own sequence, all of one
 * context, at most DSI_MAX_BATCH tokens in all) in one forward pass on the
 * root's scratch; the sequences' abort callbacks are asked between layers.
 * fn names the caller in messages. On error nothing is appended. */
DSI_FUNC ds_status dsi_context_eval_runs(const dsi_seq_run *r, int m, const char *fn, dsi_err *e) {
    if (m <= 0 || m > DSI_MAX_BATCH || !r[0].seq)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "%s: %s", fn,
                        m <= 0 || m > DSI_MAX_BATCH ? "n must be in [1, 256]" : "sequence 0 is NULL");
    ds_context *c = r[0].seq->root;
    const ds_model_config *cf = &c->m->cfg;
    int total = 0;
    for (int i = 0; i < m; i++) {
        const ds_context *q = r[i].seq;
        if (!q || q->root != c)
            return dsi_fail(e, DS_ERR_INVALID_ARG, "%s: entry %d is %s", fn, i,
                            q ? "a sequence of another context" : "NULL");
        for (int k = 0; k < i; k++)
            if (r[k].seq == q)
                return dsi_fail(e, DS_ERR_INVALID_ARG, "%s: entries %d and %d are both sequence %d", fn, k, i,
                                q->seq_id);
        if (r[i].n < 1 || !r[i].tok || r[i].n > DSI_MAX_BATCH - total)
            return dsi_fail(e, DS_ERR_INVALID_ARG, "%s: entry %d: %d tokens%s", fn, i, r[i].n,
                            r[i].n < 1 || !r[i].tok ? " (none, or NULL)" : ": more than 256 in one pass");
        for (int t = 0; t < r[i].n; t++)
            if (r[i].tok[t] < 0 || r[i].tok[t] >= cf->vocab_size)
                return dsi_fail(e, DS_ERR_INVALID_ARG, "%s: entry %d: id %d is outside the vocabulary [0, %d)", fn,
                                i, (int)r[i].tok[t], cf->vocab_size);
        if (r[i].n > q->n_ctx - q->n_past)
            return dsi_fail(e, DS_ERR_LIMIT, "%s: sequence %d is full: %d of its %d positions are used, %d more asked",
                            fn, q->seq_id, q->n_past, q->n_ctx, r[i].n);
        total += r[i].n;
    }
    /* the pass: each entry's tokens one run; the rows that want logits */
    int n_rows = 0, at = 0;
    for (int i = 0; i < m; i++) {
        for (int t = 0; t < r[i].n; t++, at++) {
            c->btok[at] = r[i].tok[t];
            c->pos[at] = r[i].seq->n_past + t;
            c->seq[at] = r[i].seq->seq_id;
        }
        if (r[i].logits) c->brow[n_rows++] = at - 1;
    }
    /* the root's logits buffer holds n_seq rows; a context of one sequence
     * has none, and its one row goes straight to the caller */
    float *out = !n_rows ? NULL : c->blog ? c->blog : r[0].logits;
    dsi_batch b = {total, c->btok, c->pos, c->seq};
    ds_context *seqs[DSI_MAX_BATCH];
    for (int i = 0; i < m; i++) seqs[i] = r[i].seq;
    c->batch = seqs;
    c->batch_n = m;
    ds_status s = dsi_ctx_aborted(c, e) ? DS_ERR_CANCELLED : dsi_forward_rows(c, &b, out, c->brow, n_rows, e);
    c->batch = NULL;
    c->batch_n = 0;
    if (s) return s;
    size_t V = (size_t)cf->vocab_size;
    for (int i = 0, k = 0; i < m; i++) {
        ds_context *q = r[i].seq;
        memcpy(q->hist + q->n_past, r[i].tok, (size_t)r[i].n * sizeof *r[i].tok);
        q->n_past += r[i].n;
        if (r[i].logits) {
            if (out != r[i].logits) memcpy(r[i].logits, out + (size_t)k * V, V * sizeof(float));
            k++;
        }
    }
    return DS_OK;
}

/* One token of each of several sequences in one forward pass. */
DS_API ds_status ds_context_eval_batch(ds_context *const *seqs, const int32_t *tokens, size_t n,
                                       float *const *logits) {
    dsi_err e = {0};
    if (!seqs || !tokens || n == 0 || n > DSI_MAX_BATCH || !seqs[0]) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_context_eval_batch: %s",
                 !seqs || !tokens ? "NULL argument"
                 : n == 0 || n > DSI_MAX_BATCH ? "n must be in [1, 256]"
                                                : "sequence 0 is NULL");
        return seqs && seqs[0] ? dsi_ctx_fail(seqs[0], &e) : dsi_publish(&e);
    }
    dsi_seq_run r[DSI_MAX_BATCH];
    for (size_t i = 0; i < n; i++) r[i] = (dsi_seq_run){seqs[i], tokens + i, 1, logits ? logits[i] : NULL};
    ds_status s = dsi_context_eval_runs(r, (int)n, "ds_context_eval_batch", &e);
    return s ? dsi_ctx_fail(seqs[0], &e) : DS_OK;
}

/* ==== Memory plan ======================================================== */
/* The memory model is written out in deepseek.h (ds_memory_plan) and
 * mirrored by tools/model_sizes.py (plan()); tests/test_plan.sh holds the
 * two to the same figures. */

#define DSI_PLAN_PAGE 4096u         /* pager.c sizes expert slots in whole 4 KiB pages */

typedef struct dsi_sum {
    uint64_t v;
    bool over;                     /* some step overflowed */
} dsi_sum;

static void dsi_sum_add(dsi_sum *s, uint64_t a) { s->over |= !dsi_add_u64(s->v, a, &s->v); }
static uint64_t dsi_prod(dsi_sum *s, uint64_t a, uint64_t b) {
    uint64_t r = 0;
    s->over |= !dsi_mul_u64(a, b, &r);
    return r;
}
static uint64_t dsi_mib_up(dsi_sum *s, uint64_t n) {
    if (n > UINT64_MAX - ((1u << 20) - 1)) {
        s->over = true;
        return 0;
    }
    return (n + (1u << 20) - 1) >> 20 << 20;
}
static uint64_t dsi_page_up(uint64_t n) {
    if (n == 0) n = 1;   /* a segment takes at least a page, as a buffer of its own would */
    return n > UINT64_MAX - (DSI_PLAN_PAGE - 1) ? UINT64_MAX : (n + DSI_PLAN_PAGE - 1) / DSI_PLAN_PAGE * DSI_PLAN_PAGE;
}

/* A context's KV cache per position (and sequence) and its other buffers:
 * what ds_context_new and the CPU device's ctx_new allocate for n_seq
 * sequences, less the per-thread buffers. */
static void dsi_plan_context(const ds_model_config *cf, bool mla, uint64_t n_ctx, uint64_t n_seq, dsi_sum *s,
                             uint64_t *kv_tok, uint64_t *scratch) {
    dsi_ctx_shape sh;
    dsi_ctx_widths(cf, mla, &sh);
    uint64_t T = DSI_MAX_BATCH, D = (uint64_t)cf->hidden_size;
    uint64_t E = (uint64_t)(cf->n_routed_experts > 0 ? cf->n_routed_experts : 1);
    uint64_t inter = (uint64_t)sh.ffn_dim;
    uint64_t widest = D;
    if ((uint64_t)cf->kv_lora_rank > widest) widest = (uint64_t)cf->kv_lora_rank;
    if (inter > widest) widest = inter;
    if ((uint64_t)sh.att_dim > widest) widest = (uint64_t)sh.att_dim;
    if ((uint64_t)cf->q_lora_rank > widest) widest = (uint64_t)cf->q_lora_rank;
    *kv_tok = (uint64_t)cf->n_layers * ((uint64_t)sh.kv_a_dim + (uint64_t)sh.kv_b_dim) * 4u;
    dsi_sum x = {0, false};
    /* F32 activations for a batch: x, xn, tmp, xe, ye (5 D), q, qa, kv_a,
     * the attention output, gate and up, the router's scores */
    uint64_t floats = 5 * D + (uint64_t)sh.q_dim + (uint64_t)sh.qa_dim + (uint64_t)sh.kva_dim +
                      (uint64_t)sh.att_dim + 2 * inter + E;
    dsi_sum_add(&x, dsi_prod(s, T * floats, 4));
    dsi_sum_add(&x, T * widest);                                 /* int8 activations */
    dsi_sum_add(&x, T * (widest / DSI_Q8_BLOCK + 1) * 4);        /* their scales */
    /* the same packed in token-lane tiles, on a CPU with AVX2 or VNNI
     * kernels (8 or 16 tokens a tile: T * cols bytes and T * cols / 32
     * scales either way); counted everywhere, a bound elsewhere */
    dsi_sum_add(&x, T * (widest / DSI_Q8_BLOCK) * (DSI_Q8_BLOCK + 4));
    if (mla) {   /* the expanded K/V of as many heads as fit DSI_MLA_EXPAND_BYTES */
        uint64_t per_head = (uint64_t)DSI_MLA_EXPAND_MAX * (uint64_t)(cf->qk_nope_head_dim + cf->v_head_dim) * 4u;
        uint64_t heads = per_head ? DSI_MLA_EXPAND_BYTES / per_head : 1;
        if (heads > (uint64_t)cf->n_heads) heads = (uint64_t)cf->n_heads;
        if (heads < 1) heads = 1;
        dsi_sum_add(&x, heads * per_head);
    }
    dsi_sum_add(&x, (uint64_t)cf->vocab_size * 4u);              /* a row of logits */
    if (n_seq > 1) dsi_sum_add(&x, n_seq * (uint64_t)cf->vocab_size * 4u);   /* a batch step's, per sequence */
    dsi_sum_add(&x, n_seq * n_ctx * 4u);                         /* each sequence's token ids */
    s->over |= x.over;
    *scratch = x.v;
}

DS_API ds_memory_plan_params ds_memory_plan_default_params(void) {
    ds_memory_plan_params p;
    memset(&p, 0, sizeof p);
    return p;
}

DS_API ds_status ds_model_memory_plan(const ds_model *m, const ds_memory_plan_params *params, ds_memory_plan *out) {
    dsi_err e = {0};
    if (!m || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_memory_plan: model and out must not be NULL");
        return dsi_publish(&e);
    }
    memset(out, 0, sizeof *out);
    ds_memory_plan_params def = ds_memory_plan_default_params();
    const ds_memory_plan_params *pp = params ? params : &def;
    int n_ctx = pp->n_ctx, n_seq = pp->n_seq > 0 ? pp->n_seq : 1;
    uint64_t mem_bytes = pp->mem_bytes;
    if (n_ctx < 0 || n_ctx > (1 << 22)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_memory_plan: n_ctx %d out of range [0, 4194304]", n_ctx);
        return dsi_publish(&e);
    }
    if (pp->n_seq < 0 || pp->n_seq > DSI_MAX_BATCH) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_memory_plan: n_seq %d out of range [0, %d]", pp->n_seq,
                 DSI_MAX_BATCH);
        return dsi_publish(&e);
    }
    const ds_model_config *cf = &m->cfg;
    if (n_ctx == 0) n_ctx = cf->max_position_embeddings < 4096 ? cf->max_position_embeddings : 4096;
    dsi_sum s = {0, false}, res = {0, false}, exp = {0, false};
    /* ---- the file: its segment directory ---- */
    const dsi_meta *md = &m->meta;
    unsigned char *seen = dsi_calloc(&m->al, (size_t)(cf->n_layers > 0 ? cf->n_layers : 1), 1);
    if (!seen) {
        dsi_fail(&e, DS_ERR_NOMEM, "ds_model_memory_plan: out of memory");
        return dsi_publish(&e);
    }
    for (size_t i = 0; i < md->n_segments; i++) {
        const dsi_segment *g = &md->segments[i];
        /* an expert in a cache slot (4 KiB pages, as pager.c sizes them);
         * anything else as file.c holds it (this machine's pages) */
        uint64_t piece = g->kind == DS_SEGMENT_EXPERT ? dsi_page_up(g->plain_bytes) : dsi_segment_held_bytes(g);
        if (g->kind == DS_SEGMENT_EXPERT) {
            dsi_sum_add(&exp, piece);
            out->n_experts++;
            if (piece > out->slot_bytes) out->slot_bytes = piece;
            /* layers counted once each, wherever their experts sit in the directory */
            if (g->layer >= 0 && g->layer < cf->n_layers && !seen[g->layer]) {
                seen[g->layer] = 1;
                out->n_expert_layers++;
            }
        } else {
            dsi_sum_add(&res, piece);
        }
    }
    dsi_free(&m->al, seen);
    out->resident_bytes = res.v;
    out->expert_bytes = exp.v;
    s.over |= res.over || exp.over;
    /* ---- one context ---- */
    out->n_ctx = n_ctx;
    out->n_seq = n_seq;
    dsi_plan_context(cf, dsi_arch_attention_mla(cf), (uint64_t)n_ctx, (uint64_t)n_seq, &s,
                     &out->kv_bytes_per_token, &out->scratch_bytes);
    out->kv_bytes = dsi_prod(&s, dsi_prod(&s, out->kv_bytes_per_token, (uint64_t)n_ctx), (uint64_t)n_seq);
    dsi_sum c = {out->kv_bytes, false};
    dsi_sum_add(&c, out->scratch_bytes);
    out->context_bytes = c.v;
    /* ---- totals ---- */
    dsi_sum full = {out->resident_bytes, false};
    dsi_sum_add(&full, out->expert_bytes);
    dsi_sum_add(&full, out->context_bytes);
    out->full_bytes = full.v;
    dsi_sum base = {out->resident_bytes, false};   /* what stays with or without a cache */
    dsi_sum_add(&base, out->context_bytes);
    if (out->n_experts) {
        dsi_sum mp = base;
        dsi_sum_add(&mp, dsi_prod(&s, out->slot_bytes, 2));
        out->min_paged_bytes = mp.v;
        s.over |= mp.over;
    }
    /* the least budget that works: a cache of two slots (whole MiB), or
     * every expert when that takes less (none, few), and the slack on top */
    uint64_t left = dsi_mib_up(&s, dsi_prod(&s, out->slot_bytes, 2));
    if (out->expert_bytes < left) left = out->expert_bytes;   /* as cheap to hold them all */
    dsi_sum need = base;
    dsi_sum_add(&need, left);
    dsi_sum_add(&need, DS_PLAN_SLACK_FIXED);
    s.over |= c.over || full.over || base.over || need.over || need.v > UINT64_MAX / DS_PLAN_SLACK_DIV;
    if (s.over) {
        dsi_fail(&e, DS_ERR_LIMIT, "ds_model_memory_plan: a memory figure of this model overflows 64 bits");
        memset(out, 0, sizeof *out);
        return dsi_publish(&e);
    }
    /* smallest M with M - M / DIV >= need (M - M / DIV never decreases) */
    uint64_t M = need.v / (DS_PLAN_SLACK_DIV - 1) * DS_PLAN_SLACK_DIV;
    while (M - M / DS_PLAN_SLACK_DIV < need.v) M++;
    while (M > 0 && (M - 1) - (M - 1) / DS_PLAN_SLACK_DIV >= need.v) M--;
    out->min_mem_bytes = M;
    if (!mem_bytes) return DS_OK;
    /* ---- against the budget ---- */
    out->mem_bytes = mem_bytes;
    out->slack_bytes = DS_PLAN_SLACK_FIXED + mem_bytes / DS_PLAN_SLACK_DIV;
    if (mem_bytes < out->min_mem_bytes) {
        out->shortfall_bytes = out->min_mem_bytes - mem_bytes;
        return DS_OK;
    }
    out->fits = 1;
    uint64_t room = mem_bytes - out->slack_bytes;   /* >= need - FIXED >= base: no wrap */
    if (room - base.v >= out->expert_bytes) {   /* full_bytes + slack fits */
        out->all_resident = 1;
        out->cache_slots = out->n_experts;
        out->cache_share = out->hit_rate = 1.0;
        return DS_OK;
    }
    uint64_t cache = (room - base.v) >> 20 << 20;
    uint64_t slots = cache / out->slot_bytes;   /* >= 2: the budget is at least min_mem_bytes */
    if (slots > out->n_experts) slots = out->n_experts;
    uint64_t cap = dsi_mib_up(&s, slots * out->slot_bytes);
    out->cache_bytes = cache < cap ? cache : cap;
    out->cache_slots = slots;
    out->cache_share = out->hit_rate = (double)slots / (double)out->n_experts;
    return DS_OK;
}
