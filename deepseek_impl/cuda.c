/*
 * cuda.c — the forward pass on an NVIDIA GPU, driven through the CUDA
 * backend's table (kernels/cuda/backend.cuh; the kernels link beside the
 * library with make CUDA=1).
 *
 * What lives where:
 *   - device memory: every dense segment (embeddings, attention, norms,
 *     routers, shared experts, dense MLPs, LM head), each context's KV cache
 *     (MLA: normalised latent + roped key per position) and scratch, and the
 *     VRAM expert cache: slots of the largest expert segment's size.
 *   - host: the sealed file, the host expert cache (pager.c) or resident
 *     experts, and pinned staging buffers.
 * A routed expert that misses the VRAM cache is taken from the host (the
 * host cache decrypts it if it must), copied into a pinned staging buffer,
 * and uploaded on a copy stream of its own; the compute stream waits for
 * that upload with an event, and the upload into a slot waits with an event
 * for the last kernel that read the slot's previous expert. The host stages
 * the next expert while the device copies and computes the previous one;
 * nothing waits for the whole device. With gpu_cache_bytes 0 (or a budget
 * that holds them all) every expert is uploaded once, at open.
 *
 * One sync per MoE layer: the host needs the routing (which experts) to
 * page them. Contexts on one model take turns: the model lock is held for a
 * whole forward call, so the cache tables and the slot events have one user
 * at a time, and each forward ends with its stream idle.
 *
 * The order of operations is the CPU's (forward.c): the same layers, the
 * same norms, routed experts in ascending expert order each added into the
 * layer output, then the shared experts, then the residual. The products
 * differ in summation order only; Q8_0 weights meet F32 activations (as the
 * CPU with exact_activations).
 */
#include "internal.h"

/* plain C declarations, no CUDA types: harmless in a CPU-only build */
#include "../kernels/cuda/backend.cuh"

#include <stdio.h>
#include <stdlib.h>

#if defined(DS_CUDA) && DS_CUDA

#include <pthread.h>
#include <sodium.h>
#include <sys/mman.h>

#define DSI_CU_NSTAGE 3           /* pinned staging buffers in rotation */
#define DSI_CU_MSG 320

struct dsi_cuda_model {
    const dsi_backend_i *b;
    int device;
    pthread_mutex_t lock;          /* one forward at a time; the cache tables; the statistics */
    void **dseg;                   /* device copy of each dense segment (NULL for others) */
    dsi_weight embed, out_norm, lm_head;   /* as the host's, .data a device address */
    dsi_layer *layers;             /* as m->layers, .data device addresses (experts: the host's refs) */
    int *moe_index;                /* layer -> index among MoE layers, or -1 */
    int n_moe, n_experts;
    /* the VRAM expert cache */
    size_t slot_bytes;             /* the largest expert segment */
    int n_slots, n_keys;           /* keys: moe layer * E + expert */
    bool all_resident;             /* slot = key, filled at open, never evicted */
    uint8_t *slots;                /* device, n_slots * slot_bytes */
    int *slot_of;                  /* key -> slot or -1 */
    int *key_of;                   /* slot -> key or -1 */
    uint64_t *last_use, tick;
    void **free_ev;                /* slot: the last kernel reading it has run */
    void **ready_ev;               /* slot: its upload has landed */
    void *copy_stream;
    void *stage[DSI_CU_NSTAGE];    /* pinned, slot_bytes each */
    void *stage_ev[DSI_CU_NSTAGE]; /* the upload out of it has finished */
    int stage_next;
    ds_cache_stats st;
};

struct dsi_cuda_ctx {
    void *stream;
    dsi_blas *blas;
    int n_ctx, max_batch;
    size_t kv_a_stride, kv_b_stride;   /* floats per layer */
    float *kv_a, *kv_b;
    float *inv_freq;
    int rope_dim;
    float rope_mscale, attn_scale;
    float *x, *xn, *q, *qa, *kva, *att, *tmp, *g, *u, *router, *xe, *ye, *logits, *selw, *wts;
    int *sel, *tok, *idx;
    /* pinned host mirrors */
    int32_t *h_tok;
    int *h_sel, *h_idx;
    float *h_selw, *h_wts;
    int *h_off, *h_cnt;            /* per expert (host, ordinary memory) */
    void *dev[32];                 /* every device allocation, for free */
    int n_dev;
    void *pinned[8];
    int n_pinned;
};

/* A failed backend call: its status, its message behind "cuda: ". */
#define DSI_CK(call)                                                                                                 \
    do {                                                                                                             \
        ds_status s_ = (call);                                                                                       \
        if (s_) return dsi_fail(e, s_, "cuda: %s", msg);                                                             \
    } while (0)

/* ==== Probe, without touching the weights ================================= */
DSI_FUNC ds_status dsi_cuda_probe(ds_model *m, const ds_model_params *p, dsi_err *e) {
    m->device = DS_DEVICE_CPU;
    if (p->device != DS_DEVICE_CUDA) return p->device == DS_DEVICE_CPU ? DS_OK :
        dsi_fail(e, DS_ERR_INVALID_ARG, "device %d is neither DS_DEVICE_CPU nor DS_DEVICE_CUDA", (int)p->device);
    const dsi_backend_i *b = dsi_cuda_backend();
    if (!b || b->version != DSI_BACKEND_VERSION)
        return dsi_fail(e, DS_ERR_BACKEND, "the CUDA backend's table has version %d; this library knows %d",
                        b ? b->version : -1, DSI_BACKEND_VERSION);
    char msg[DSI_CU_MSG] = "";
    int n = 0;
    ds_status s = b->device_count(&n, msg, sizeof msg);
    if (s || n <= 0) {
        dsi_log(m->log, m->log_user, DS_LOG_WARN, "CUDA was asked for but is not available (%s); running on the CPU",
                msg[0] ? msg : "no device");
        return DS_OK;
    }
    if (p->gpu_index < 0 || p->gpu_index >= n)
        return dsi_fail(e, DS_ERR_NO_DEVICE, "gpu_index %d: this machine has %d CUDA device(s)", p->gpu_index, n);
    m->device = DS_DEVICE_CUDA;
    return DS_OK;
}

DSI_FUNC bool dsi_cuda_experts_on_host(const ds_model *m, const ds_model_params *p) {
    return !(m->device == DS_DEVICE_CUDA && p->gpu_cache_bytes == 0);
}

/* ==== Model: dense weights and the VRAM expert cache ====================== */
/* The device address of a resident dense tensor's bytes. */
static ds_status dsi_cu_translate(const ds_model *m, const dsi_cuda_model *gm, dsi_weight *w, dsi_err *e) {
    if (!w->data) return DS_OK;   /* unbound (an absent optional tensor) or an expert template */
    for (size_t i = 0; i < m->meta.n_segments; i++) {
        const uint8_t *base = m->dense[i].ptr;
        if (!base || !gm->dseg[i]) continue;
        if (w->data >= base && w->data < base + m->meta.segments[i].plain_bytes) {
            w->data = (const uint8_t *)gm->dseg[i] + (w->data - base);
            return DS_OK;
        }
    }
    return dsi_fail(e, DS_ERR_INTERNAL, "cuda: a dense tensor lies outside every uploaded segment");
}

/* Pinned memory holds plaintext: never in a core dump, wiped at free. */
static ds_status dsi_cu_pinned(const dsi_backend_i *b, void **p, size_t bytes, char *msg, size_t len) {
    ds_status s = b->host_alloc(p, bytes, msg, len);
    if (s) return s;
#ifdef MADV_DONTDUMP
    uintptr_t a = ((uintptr_t)*p + 4095) & ~(uintptr_t)4095, z = ((uintptr_t)*p + bytes) & ~(uintptr_t)4095;
    if (z > a) (void)madvise((void *)a, z - a, MADV_DONTDUMP);
#endif
    return DS_OK;
}

static void dsi_cu_pinned_free(const dsi_backend_i *b, void *p, size_t bytes) {
    if (!p) return;
    sodium_memzero(p, bytes);
    b->host_free(p);
}

/* Stages expert (layer, x) from the host into pinned buffer i and uploads
 * it to dst on the copy stream (after `after`, if not NULL); stage_ev[i]
 * marks the upload's end. Decrypts it when it is not on the host. */
static ds_status dsi_cu_stage_upload(const ds_model *m, dsi_cuda_model *gm, int layer, int x, void *dst, void *after,
                                     dsi_err *e) {
    const dsi_backend_i *b = gm->b;
    char msg[DSI_CU_MSG] = "";
    int i = gm->stage_next;
    gm->stage_next = (i + 1) % DSI_CU_NSTAGE;
    DSI_CK(b->event_sync(gm->stage_ev[i], msg, sizeof msg));   /* its previous upload has left it */
    const dsi_expert_ref *r = &m->layers[layer].experts[x];
    size_t bytes = (size_t)m->meta.segments[r->segment].plain_bytes;
    ds_status s;
    if (m->pager || m->dense[r->segment].ptr) {
        const uint8_t *src = NULL;
        if ((s = dsi_expert_acquire(m, layer, x, &src, e))) return s;
        memcpy(gm->stage[i], src, bytes);
        dsi_expert_release(m, layer, x);
    } else {
        uint32_t seg = 0;
        if ((s = dsi_model_read_expert(m, layer, x, gm->stage[i], gm->slot_bytes, &seg, e))) return s;
    }
    if (after) DSI_CK(b->stream_wait(gm->copy_stream, after, msg, sizeof msg));
    DSI_CK(b->upload(dst, gm->stage[i], bytes, gm->copy_stream, msg, sizeof msg));
    DSI_CK(b->event_record(gm->stage_ev[i], gm->copy_stream, msg, sizeof msg));
    gm->st.bytes_decrypted += bytes;
    return DS_OK;
}

static ds_status dsi_cu_cache_new(ds_model *m, dsi_cuda_model *gm, const ds_model_params *p, dsi_err *e) {
    const ds_model_config *cf = &m->cfg;
    const dsi_backend_i *b = gm->b;
    char msg[DSI_CU_MSG] = "";
    gm->n_experts = cf->n_routed_experts;
    gm->moe_index = dsi_calloc(&m->al, (size_t)cf->n_layers, sizeof(int));
    if (!gm->moe_index) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    for (int l = 0; l < cf->n_layers; l++) gm->moe_index[l] = m->layers[l].moe ? gm->n_moe++ : -1;
    if (gm->n_moe == 0 || gm->n_experts == 0) return DS_OK;
    for (size_t i = 0; i < m->meta.n_segments; i++)
        if (m->meta.segments[i].kind == DS_SEGMENT_EXPERT && m->meta.segments[i].plain_bytes > gm->slot_bytes)
            gm->slot_bytes = (size_t)m->meta.segments[i].plain_bytes;
    gm->slot_bytes = (gm->slot_bytes + 255) & ~(size_t)255;   /* slots aligned for the kernels' vector loads */
    gm->n_keys = gm->n_moe * gm->n_experts;
    uint64_t need = (uint64_t)gm->n_keys * gm->slot_bytes;
    if (p->gpu_cache_bytes && p->gpu_cache_bytes < 2 * (uint64_t)gm->slot_bytes)
        return dsi_fail(e, DS_ERR_INVALID_ARG,
                        "gpu_cache_bytes %llu is below two experts' worth (2 x %zu bytes)",
                        (unsigned long long)p->gpu_cache_bytes, gm->slot_bytes);
    gm->all_resident = p->gpu_cache_bytes == 0 || p->gpu_cache_bytes >= need;
    gm->n_slots = gm->all_resident ? gm->n_keys : (int)(p->gpu_cache_bytes / gm->slot_bytes);
    gm->st.budget_bytes = gm->all_resident ? need : p->gpu_cache_bytes;
    gm->st.slot_bytes = gm->slot_bytes;
    gm->st.n_slots = gm->all_resident ? 0 : gm->n_slots;
    void *slots = NULL;
    ds_status s = b->alloc(&slots, (size_t)gm->n_slots * gm->slot_bytes, msg, sizeof msg);
    if (s) return dsi_fail(e, s, "cuda: VRAM expert cache of %d experts: %s", gm->n_slots, msg);
    gm->slots = slots;
    gm->slot_of = dsi_calloc(&m->al, (size_t)gm->n_keys, sizeof(int));
    gm->key_of = dsi_calloc(&m->al, (size_t)gm->n_slots, sizeof(int));
    gm->last_use = dsi_calloc(&m->al, (size_t)gm->n_slots, sizeof(uint64_t));
    gm->free_ev = dsi_calloc(&m->al, (size_t)gm->n_slots, sizeof(void *));
    gm->ready_ev = dsi_calloc(&m->al, (size_t)gm->n_slots, sizeof(void *));
    if (!gm->slot_of || !gm->key_of || !gm->last_use || !gm->free_ev || !gm->ready_ev)
        return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    for (int k = 0; k < gm->n_keys; k++) gm->slot_of[k] = gm->all_resident ? k : -1;
    for (int k = 0; k < gm->n_slots; k++) gm->key_of[k] = gm->all_resident ? k : -1;
    DSI_CK(b->stream_new(&gm->copy_stream, msg, sizeof msg));
    for (int i = 0; i < DSI_CU_NSTAGE; i++) {
        DSI_CK(dsi_cu_pinned(b, &gm->stage[i], gm->slot_bytes, msg, sizeof msg));
        DSI_CK(b->event_new(&gm->stage_ev[i], msg, sizeof msg));
    }
    if (!gm->all_resident) {
        for (int k = 0; k < gm->n_slots; k++) {
            DSI_CK(b->event_new(&gm->free_ev[k], msg, sizeof msg));
            DSI_CK(b->event_new(&gm->ready_ev[k], msg, sizeof msg));
        }
        return DS_OK;
    }
    /* every expert onto the device now */
    double t0 = dsi_now_seconds();
    for (int l = 0; l < cf->n_layers; l++) {
        if (gm->moe_index[l] < 0) continue;
        for (int x = 0; x < gm->n_experts; x++) {
            int key = gm->moe_index[l] * gm->n_experts + x;
            if ((s = dsi_cu_stage_upload(m, gm, l, x, gm->slots + (size_t)key * gm->slot_bytes, NULL, e))) {
                dsi_prefix(e, "uploading layer %d expert %d", l, x);
                return s;
            }
        }
    }
    DSI_CK(b->sync(gm->copy_stream, msg, sizeof msg));
    dsi_log(m->log, m->log_user, DS_LOG_INFO, "cuda: %d routed experts (%.1f MB) uploaded in %.2f s", gm->n_keys,
            (double)need / 1e6, dsi_now_seconds() - t0);
    memset(&gm->st, 0, sizeof gm->st);
    gm->st.budget_bytes = need;
    gm->st.slot_bytes = gm->slot_bytes;
    return DS_OK;
}

DSI_FUNC ds_status dsi_cuda_model_new(ds_model *m, const ds_model_params *p, dsi_err *e) {
    if (m->device != DS_DEVICE_CUDA) return DS_OK;
    const dsi_backend_i *b = dsi_cuda_backend();
    char msg[DSI_CU_MSG] = "";
    dsi_cuda_model *gm = dsi_calloc(&m->al, 1, sizeof *gm);
    if (!gm) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&gm->lock, NULL) != 0) {
        dsi_free(&m->al, gm);
        return dsi_fail(e, DS_ERR_NOMEM, "cannot create a mutex");
    }
    m->cuda = gm;   /* from here dsi_cuda_model_free undoes what is done */
    gm->b = b;
    gm->device = p->gpu_index;
    DSI_CK(b->init(gm->device, msg, sizeof msg));
    char name[96] = "";
    if (b->device_name(name, sizeof name, msg, sizeof msg) != DS_OK) snprintf(name, sizeof name, "unknown device");
    snprintf(m->device_name, sizeof m->device_name, "cuda:%d %s", gm->device, name);
    /* dense segments */
    size_t dense_bytes = 0;
    gm->dseg = dsi_calloc(&m->al, m->meta.n_segments, sizeof(void *));
    if (!gm->dseg) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->meta.n_segments; i++) {
        const dsi_segment *sg = &m->meta.segments[i];
        if (sg->kind == DS_SEGMENT_EXPERT || !m->dense[i].ptr) continue;
        ds_status s = b->alloc(&gm->dseg[i], (size_t)sg->plain_bytes, msg, sizeof msg);
        if (s) {
            char what[64];
            dsi_segment_describe(sg, m->cfg.n_layers, what, sizeof what);
            return dsi_fail(e, s, "cuda: dense weights (%s): %s", what, msg);
        }
        DSI_CK(b->upload(gm->dseg[i], m->dense[i].ptr, (size_t)sg->plain_bytes, NULL, msg, sizeof msg));
        dense_bytes += (size_t)sg->plain_bytes;
    }
    DSI_CK(b->sync(NULL, msg, sizeof msg));
    /* the weights, with device addresses */
    gm->embed = m->embed;
    gm->out_norm = m->out_norm;
    gm->lm_head = m->lm_head;
    gm->layers = dsi_calloc(&m->al, (size_t)m->cfg.n_layers, sizeof *gm->layers);
    if (!gm->layers) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    ds_status s;
    if ((s = dsi_cu_translate(m, gm, &gm->embed, e)) || (s = dsi_cu_translate(m, gm, &gm->out_norm, e)) ||
        (s = dsi_cu_translate(m, gm, &gm->lm_head, e)))
        return s;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        dsi_layer *L = &gm->layers[l];
        *L = m->layers[l];
        dsi_weight *ws[] = {&L->attn_norm, &L->ffn_norm, &L->q_proj, &L->q_a,   &L->q_a_norm, &L->q_b,
                            &L->kv_a,      &L->kv_a_norm, &L->kv_b,  &L->wq,    &L->wk,       &L->wv,
                            &L->wo,        &L->gate,     &L->up,    &L->down,  &L->router,   &L->bias};
        for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++)
            if ((s = dsi_cu_translate(m, gm, ws[k], e))) return s;
    }
    if ((s = dsi_cu_cache_new(m, gm, p, e))) return s;
    size_t avail = 0, total = 0;
    (void)b->mem_info(&avail, &total, msg, sizeof msg);
    dsi_log(m->log, m->log_user, DS_LOG_INFO,
            "cuda: %s: dense weights %.1f MB, expert cache %d slots of %.2f MB%s; %.0f MB of %.0f MB free",
            m->device_name, (double)dense_bytes / 1e6, gm->n_slots, (double)gm->slot_bytes / 1e6,
            gm->all_resident ? " (every expert)" : "", (double)avail / 1e6, (double)total / 1e6);
    return DS_OK;
}

DSI_FUNC void dsi_cuda_model_free(ds_model *m) {
    dsi_cuda_model *gm = m->cuda;
    if (!gm) return;
    const dsi_backend_i *b = gm->b;
    char msg[DSI_CU_MSG];
    if (b) {
        (void)b->sync(gm->copy_stream, msg, sizeof msg);
        /* plaintext weights: wiped (one wait for all the wipes) before the
         * memory goes back */
        if (gm->slots) (void)b->memset(gm->slots, 0, (size_t)gm->n_slots * gm->slot_bytes, NULL, msg, sizeof msg);
        for (size_t i = 0; gm->dseg && i < m->meta.n_segments; i++)
            if (gm->dseg[i])
                (void)b->memset(gm->dseg[i], 0, (size_t)m->meta.segments[i].plain_bytes, NULL, msg, sizeof msg);
        (void)b->sync(NULL, msg, sizeof msg);
        if (gm->slots) b->free(gm->slots);
        for (size_t i = 0; gm->dseg && i < m->meta.n_segments; i++)
            if (gm->dseg[i]) b->free(gm->dseg[i]);
        for (int i = 0; i < DSI_CU_NSTAGE; i++) {
            dsi_cu_pinned_free(b, gm->stage[i], gm->slot_bytes);
            if (gm->stage_ev[i]) b->event_free(gm->stage_ev[i]);
        }
        for (int k = 0; k < gm->n_slots && gm->free_ev; k++) {
            if (gm->free_ev[k]) b->event_free(gm->free_ev[k]);
            if (gm->ready_ev && gm->ready_ev[k]) b->event_free(gm->ready_ev[k]);
        }
        b->stream_free(gm->copy_stream);
    }
    dsi_free(&m->al, gm->dseg);
    dsi_free(&m->al, gm->layers);
    dsi_free(&m->al, gm->moe_index);
    dsi_free(&m->al, gm->slot_of);
    dsi_free(&m->al, gm->key_of);
    dsi_free(&m->al, gm->last_use);
    dsi_free(&m->al, gm->free_ev);
    dsi_free(&m->al, gm->ready_ev);
    pthread_mutex_destroy(&gm->lock);
    dsi_free(&m->al, gm);
    m->cuda = NULL;
}

DSI_FUNC void dsi_cuda_stats(const ds_model *m, ds_cache_stats *out, bool reset) {
    dsi_cuda_model *gm = m->cuda;
    if (!gm) {
        if (out) memset(out, 0, sizeof *out);
        return;
    }
    pthread_mutex_lock(&gm->lock);
    if (out) *out = gm->st;
    if (reset) {
        ds_cache_stats keep = gm->st;
        memset(&gm->st, 0, sizeof gm->st);
        gm->st.budget_bytes = keep.budget_bytes;
        gm->st.slot_bytes = keep.slot_bytes;
        gm->st.n_slots = keep.n_slots;
    }
    pthread_mutex_unlock(&gm->lock);
}

/* ==== Context ============================================================= */
/* A context buffer in device memory (pinned false) or pinned host memory,
 * recorded for dsi_cuda_ctx_free. */
static ds_status dsi_cu_ctx_alloc(dsi_cuda_ctx *g, const dsi_backend_i *b, bool pinned, void *pp, size_t bytes,
                                  dsi_err *e) {
    char msg[DSI_CU_MSG] = "";
    void **p = pp, **list = pinned ? g->pinned : g->dev;
    int *n = pinned ? &g->n_pinned : &g->n_dev;
    int cap = pinned ? (int)(sizeof g->pinned / sizeof g->pinned[0]) : (int)(sizeof g->dev / sizeof g->dev[0]);
    if (*n >= cap) return dsi_fail(e, DS_ERR_INTERNAL, "cuda: too many context buffers");
    DSI_CK((pinned ? b->host_alloc : b->alloc)(p, bytes ? bytes : 4, msg, sizeof msg));
    list[(*n)++] = *p;
    return DS_OK;
}

DSI_FUNC ds_status dsi_cuda_ctx_new(const ds_model *m, int n_ctx, int max_batch, const float *inv_freq,
                                    int rope_dim, float rope_mscale, float attn_scale, dsi_cuda_ctx **out,
                                    dsi_err *e) {
    *out = NULL;
    dsi_cuda_model *gm = m->cuda;
    if (!gm) return DS_OK;
    const dsi_backend_i *b = gm->b;
    const ds_model_config *cf = &m->cfg;
    char msg[DSI_CU_MSG] = "";
    dsi_cuda_ctx *g = dsi_calloc(&m->al, 1, sizeof *g);
    if (!g) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    ds_status s = DS_OK;
#define A(p, n) if ((s = dsi_cu_ctx_alloc(g, b, false, &(p), (size_t)(n), e))) goto fail
#define P(p, n) if ((s = dsi_cu_ctx_alloc(g, b, true, &(p), (size_t)(n), e))) goto fail
    if ((s = b->init(gm->device, msg, sizeof msg)) || (s = b->stream_new(&g->stream, msg, sizeof msg)) ||
        (s = b->blas_new(&g->blas, 0, 0, msg, sizeof msg))) {
        dsi_fail(e, s, "cuda: %s", msg);
        goto fail;
    }
    g->n_ctx = n_ctx;
    g->max_batch = max_batch;
    g->rope_dim = rope_dim;
    g->rope_mscale = rope_mscale;
    g->attn_scale = attn_scale;
    {
        size_t T = (size_t)max_batch, D = (size_t)cf->hidden_size, H = (size_t)cf->n_heads;
        bool mla = cf->kv_lora_rank > 0;
        size_t hd = mla ? (size_t)(cf->qk_nope_head_dim + cf->qk_rope_head_dim) : (size_t)cf->head_dim;
        size_t a_dim = mla ? (size_t)cf->kv_lora_rank : (size_t)cf->n_kv_heads * hd;
        size_t b_dim = mla ? (size_t)cf->qk_rope_head_dim : (size_t)cf->n_kv_heads * hd;
        size_t shared = (size_t)cf->moe_intermediate_size * (size_t)(cf->n_shared_experts > 0 ? cf->n_shared_experts : 1);
        size_t inter = (size_t)cf->intermediate_size > shared ? (size_t)cf->intermediate_size : shared;
        if ((size_t)cf->moe_intermediate_size > inter) inter = (size_t)cf->moe_intermediate_size;
        size_t kva = mla ? (size_t)(cf->kv_lora_rank + cf->qk_rope_head_dim) : 2 * (size_t)cf->n_kv_heads * hd;
        size_t att = mla ? H * (size_t)cf->v_head_dim : H * hd;
        size_t qd = H * hd > (size_t)cf->q_lora_rank ? H * hd : (size_t)cf->q_lora_rank;
        size_t E = (size_t)(cf->n_routed_experts > 0 ? cf->n_routed_experts : 1);
        size_t K = (size_t)(cf->n_experts_per_tok > 0 ? cf->n_experts_per_tok : 1);
        size_t L = (size_t)cf->n_layers;
        g->kv_a_stride = (size_t)n_ctx * a_dim;
        g->kv_b_stride = (size_t)n_ctx * b_dim;
        A(g->kv_a, L * g->kv_a_stride * sizeof(float));
        A(g->kv_b, L * g->kv_b_stride * sizeof(float));
        A(g->inv_freq, (size_t)(rope_dim / 2 + 1) * sizeof(float));
        A(g->x, T * D * 4);
        A(g->xn, T * D * 4);
        A(g->q, T * qd * 4);
        A(g->qa, T * (size_t)(cf->q_lora_rank > 0 ? cf->q_lora_rank : 1) * 4);
        A(g->kva, T * kva * 4);
        A(g->att, T * att * 4);
        A(g->tmp, T * D * 4);
        A(g->g, T * inter * 4);
        A(g->u, T * inter * 4);
        A(g->router, T * E * 4);
        A(g->xe, T * D * 4);
        A(g->ye, T * D * 4);
        A(g->logits, T * (size_t)cf->vocab_size * 4);
        A(g->sel, T * K * sizeof(int));
        A(g->selw, T * K * 4);
        A(g->idx, T * K * sizeof(int));
        A(g->wts, T * K * 4);
        A(g->tok, T * sizeof(int32_t));
        P(g->h_tok, T * sizeof(int32_t));
        P(g->h_sel, T * K * sizeof(int));
        P(g->h_selw, T * K * 4);
        P(g->h_idx, T * K * sizeof(int));
        P(g->h_wts, T * K * 4);
        g->h_off = dsi_calloc(&m->al, E, sizeof(int));
        g->h_cnt = dsi_calloc(&m->al, E, sizeof(int));
        if (!g->h_off || !g->h_cnt) {
            s = dsi_fail(e, DS_ERR_NOMEM, "out of memory");
            goto fail;
        }
        /* the cache starts zeroed, as the CPU's, so no garbage is ever read */
        if ((s = b->memset(g->kv_a, 0, L * g->kv_a_stride * 4, g->stream, msg, sizeof msg)) ||
            (s = b->memset(g->kv_b, 0, L * g->kv_b_stride * 4, g->stream, msg, sizeof msg)) ||
            (s = b->upload(g->inv_freq, inv_freq, (size_t)(rope_dim / 2) * sizeof(float), g->stream, msg,
                           sizeof msg)) ||
            (s = b->sync(g->stream, msg, sizeof msg))) {
            dsi_fail(e, s, "cuda: %s", msg);
            goto fail;
        }
    }
#undef A
#undef P
    *out = g;
    return DS_OK;
fail:
    dsi_prefix(e, "a context of %d tokens", n_ctx);
    dsi_cuda_ctx_free(m, g);
    return s;
}

DSI_FUNC void dsi_cuda_ctx_free(const ds_model *m, dsi_cuda_ctx *g) {
    if (!g) return;
    const dsi_backend_i *b = m->cuda ? m->cuda->b : dsi_cuda_backend();
    char msg[DSI_CU_MSG];
    if (g->stream) (void)b->sync(g->stream, msg, sizeof msg);
    for (int i = 0; i < g->n_dev; i++) b->free(g->dev[i]);
    for (int i = 0; i < g->n_pinned; i++) b->host_free(g->pinned[i]);
    if (g->blas) b->blas_free(g->blas);
    b->stream_free(g->stream);
    dsi_free(&m->al, g->h_off);
    dsi_free(&m->al, g->h_cnt);
    dsi_free(&m->al, g);
}

/* ==== Forward ============================================================= */
typedef struct dsi_cu_run {
    const ds_model *m;
    dsi_cuda_model *gm;
    dsi_cuda_ctx *g;
    const dsi_backend_i *b;
    char msg[DSI_CU_MSG];
    dsi_err *e;
} dsi_cu_run;

#undef DSI_CK
#define DSI_CK(call)                                                                                                 \
    do {                                                                                                             \
        ds_status s_ = (call);                                                                                       \
        if (s_) return dsi_fail(r->e, s_, "cuda: %s", r->msg);                                                       \
    } while (0)
#define M r->msg, sizeof r->msg

/* Y (T, rows) = X (T, cols) W^T, W at wd (device). */
static ds_status dsi_cu_mm(dsi_cu_run *r, const dsi_weight *w, const uint8_t *wd, const float *X, int T, int ldx,
                           float *Y, int ldy) {
    DSI_CK(r->b->matmul(r->g->blas, w->dtype, wd ? wd : w->data, w->rows, w->cols, X, ldx, T, Y, ldy, r->g->stream,
                        M));
    return DS_OK;
}

/* down(silu(gate X) * up X) into Y (T, D). */
static ds_status dsi_cu_mlp(dsi_cu_run *r, const dsi_weight *gate, const dsi_weight *up, const dsi_weight *down,
                            const uint8_t *gb, const uint8_t *ub, const uint8_t *db, const float *X, int T, float *Y) {
    dsi_cuda_ctx *g = r->g;
    int D = r->m->cfg.hidden_size, I = gate->rows;
    ds_status s;
    if ((s = dsi_cu_mm(r, gate, gb, X, T, D, g->g, I)) || (s = dsi_cu_mm(r, up, ub, X, T, D, g->u, I))) return s;
    DSI_CK(r->b->silu_mul(g->g, g->u, (size_t)T * (size_t)I, g->stream, M));
    return dsi_cu_mm(r, down, db, g->g, T, I, Y, D);
}

static ds_status dsi_cu_attention(dsi_cu_run *r, int l, int T, int pos0) {
    const ds_model_config *cf = &r->m->cfg;
    const dsi_layer *L = &r->gm->layers[l];
    dsi_cuda_ctx *g = r->g;
    const dsi_backend_i *b = r->b;
    int D = cf->hidden_size, H = cf->n_heads;
    float eps = cf->rms_norm_eps;
    ds_status s;
    DSI_CK(b->rmsnorm(g->xn, D, g->x, D, (const float *)(const void *)L->attn_norm.data, D, T, eps, g->stream, M));
    if (cf->kv_lora_rank > 0) {
        int R = cf->kv_lora_rank, dr = cf->qk_rope_head_dim, dn = cf->qk_nope_head_dim, hd = dn + dr;
        if (cf->q_lora_rank > 0) {
            int Rq = cf->q_lora_rank;
            if ((s = dsi_cu_mm(r, &L->q_a, NULL, g->xn, T, D, g->qa, Rq))) return s;
            DSI_CK(b->rmsnorm(g->qa, Rq, g->qa, Rq, (const float *)(const void *)L->q_a_norm.data, Rq, T, eps,
                              g->stream, M));
            if ((s = dsi_cu_mm(r, &L->q_b, NULL, g->qa, T, Rq, g->q, H * hd))) return s;
        } else if ((s = dsi_cu_mm(r, &L->q_proj, NULL, g->xn, T, D, g->q, H * hd))) {
            return s;
        }
        if ((s = dsi_cu_mm(r, &L->kv_a, NULL, g->xn, T, D, g->kva, R + dr))) return s;
        dsi_mla_layer a = {H,
                           dn,
                           dr,
                           cf->v_head_dim,
                           R,
                           g->attn_scale,
                           g->rope_mscale,
                           g->inv_freq,
                           L->kv_b.dtype,
                           L->kv_b.data,
                           g->kv_a + (size_t)l * g->kv_a_stride,
                           g->kv_b + (size_t)l * g->kv_b_stride,
                           g->n_ctx};
        DSI_CK(b->mla_kv_store(&a, g->kva, (const float *)(const void *)L->kv_a_norm.data, eps, T, pos0, g->stream,
                               M));
        DSI_CK(b->mla_attention(&a, g->q, T, pos0, g->att, g->stream, M));
        if ((s = dsi_cu_mm(r, &L->wo, NULL, g->att, T, H * cf->v_head_dim, g->tmp, D))) return s;
    } else {
        int hd = cf->head_dim, Hk = cf->n_kv_heads, kd = Hk * hd;
        float *kt = g->kva, *vt = g->kva + (size_t)T * kd;
        if ((s = dsi_cu_mm(r, &L->wq, NULL, g->xn, T, D, g->q, H * hd)) ||
            (s = dsi_cu_mm(r, &L->wk, NULL, g->xn, T, D, kt, kd)) ||
            (s = dsi_cu_mm(r, &L->wv, NULL, g->xn, T, D, vt, kd)))
            return s;
        DSI_CK(b->rope(g->q, H * hd, hd, H, T, pos0, g->inv_freq, g->rope_dim, g->rope_mscale, 0, g->stream, M));
        DSI_CK(b->rope(kt, kd, hd, Hk, T, pos0, g->inv_freq, g->rope_dim, g->rope_mscale, 0, g->stream, M));
        float *ck = g->kv_a + (size_t)l * g->kv_a_stride, *cv = g->kv_b + (size_t)l * g->kv_b_stride;
        size_t bytes = (size_t)T * (size_t)kd * sizeof(float);
        DSI_CK(b->copy(ck + (size_t)pos0 * kd, kt, bytes, g->stream, M));
        DSI_CK(b->copy(cv + (size_t)pos0 * kd, vt, bytes, g->stream, M));
        dsi_mha_layer a = {H, Hk, hd, g->attn_scale, ck, cv, g->n_ctx};
        DSI_CK(b->mha_attention(&a, g->q, T, pos0, g->att, g->stream, M));
        if ((s = dsi_cu_mm(r, &L->wo, NULL, g->att, T, H * hd, g->tmp, D))) return s;
    }
    DSI_CK(b->add(g->x, g->tmp, (size_t)T * (size_t)D, g->stream, M));
    return DS_OK;
}

/* The device address of expert (layer, x), uploading it into a slot when
 * it is not in the VRAM cache; *slot is its slot (-1 when all resident). */
static ds_status dsi_cu_expert(dsi_cu_run *r, int l, int x, const uint8_t **dev, int *slot) {
    dsi_cuda_model *gm = r->gm;
    const dsi_backend_i *b = r->b;
    int key = gm->moe_index[l] * gm->n_experts + x;
    *slot = -1;
    if (gm->all_resident) {
        *dev = gm->slots + (size_t)key * gm->slot_bytes;
        return DS_OK;
    }
    gm->tick++;
    int s = gm->slot_of[key];
    if (s >= 0) {
        gm->st.hits++;
        gm->last_use[s] = gm->tick;
        *dev = gm->slots + (size_t)s * gm->slot_bytes;
        *slot = s;
        return DS_OK;
    }
    gm->st.misses++;
    /* an empty slot, else the least recently used */
    int v = 0;
    for (int k = 0; k < gm->n_slots; k++) {
        if (gm->key_of[k] < 0) {
            v = k;
            break;
        }
        if (gm->last_use[k] < gm->last_use[v]) v = k;
    }
    if (gm->key_of[v] >= 0) {
        gm->slot_of[gm->key_of[v]] = -1;
        gm->key_of[v] = -1;
        gm->st.evictions++;
    }
    uint8_t *dst = gm->slots + (size_t)v * gm->slot_bytes;
    double t0 = dsi_now_seconds();
    /* the upload waits for the last kernel that read the slot */
    ds_status st = dsi_cu_stage_upload(r->m, gm, l, x, dst, gm->free_ev[v], r->e);
    gm->st.wait_seconds += dsi_now_seconds() - t0;
    if (st) return st;
    DSI_CK(b->event_record(gm->ready_ev[v], gm->copy_stream, M));
    DSI_CK(b->stream_wait(r->g->stream, gm->ready_ev[v], M));
    gm->slot_of[key] = v;
    gm->key_of[v] = key;
    gm->last_use[v] = gm->tick;
    *dev = dst;
    *slot = v;
    return DS_OK;
}

static ds_status dsi_cu_moe(dsi_cu_run *r, int l, int T) {
    const ds_model *m = r->m;
    const ds_model_config *cf = &m->cfg;
    const dsi_layer *L = &r->gm->layers[l];
    dsi_cuda_model *gm = r->gm;
    dsi_cuda_ctx *g = r->g;
    const dsi_backend_i *b = r->b;
    int D = cf->hidden_size, E = cf->n_routed_experts, K = cf->n_experts_per_tok;
    ds_status s;
    if ((s = dsi_cu_mm(r, &L->router, NULL, g->xn, T, D, g->router, E))) return s;
    DSI_CK(b->route(cf, g->router, L->bias.data ? (const float *)(const void *)L->bias.data : NULL, T, g->sel,
                    g->selw, g->stream, M));
    size_t tk = (size_t)T * (size_t)K;
    DSI_CK(b->download(g->h_sel, g->sel, tk * sizeof(int), g->stream, M));
    DSI_CK(b->download(g->h_selw, g->selw, tk * sizeof(float), g->stream, M));
    DSI_CK(b->sync(g->stream, M));
    /* tokens grouped per expert, in ascending expert order (the CPU's) */
    memset(g->h_cnt, 0, (size_t)E * sizeof(int));
    for (size_t i = 0; i < tk; i++) {
        if (g->h_sel[i] < 0 || g->h_sel[i] >= E)
            return dsi_fail(r->e, DS_ERR_BACKEND, "cuda: routing of layer %d chose expert %d of %d", l, g->h_sel[i],
                            E);
        g->h_cnt[g->h_sel[i]]++;
    }
    for (int x = 0, o = 0; x < E; x++) {
        g->h_off[x] = o;
        o += g->h_cnt[x];
    }
    for (int x = 0; x < E; x++) g->h_cnt[x] = 0;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int x = g->h_sel[t * K + k], at = g->h_off[x] + g->h_cnt[x]++;
            g->h_idx[at] = t;
            g->h_wts[at] = g->h_selw[t * K + k];
        }
    DSI_CK(b->upload(g->idx, g->h_idx, tk * sizeof(int), g->stream, M));
    DSI_CK(b->upload(g->wts, g->h_wts, tk * sizeof(float), g->stream, M));
    DSI_CK(b->memset(g->tmp, 0, (size_t)T * (size_t)D * sizeof(float), g->stream, M));
    /* experts not on the device: the host cache decrypts the later ones
     * while this thread stages the first */
    if (m->pager && !gm->all_resident) {
        int miss[256], nm = 0;
        for (int x = 0; x < E && nm < 256; x++)
            if (g->h_cnt[x] && gm->slot_of[gm->moe_index[l] * E + x] < 0) miss[nm++] = x;
        if (nm > 1) dsi_pager_prefetch(m->pager, l, miss + 1, nm - 1, false);
    }
    for (int x = 0; x < E; x++) {
        int n = g->h_cnt[x];
        if (!n) continue;
        const uint8_t *base = NULL;
        int slot = -1;
        if ((s = dsi_cu_expert(r, l, x, &base, &slot))) return s;
        const dsi_expert_ref *ref = &L->experts[x];
        const int *idx = g->idx + g->h_off[x];
        const float *w = g->wts + g->h_off[x];
        DSI_CK(b->gather_rows(g->xe, g->xn, idx, n, D, g->stream, M));
        if ((s = dsi_cu_mlp(r, &L->exp_gate, &L->exp_up, &L->exp_down, base + ref->off[0], base + ref->off[1],
                            base + ref->off[2], g->xe, n, g->ye)))
            return s;
        DSI_CK(b->scatter_add(g->tmp, g->ye, idx, w, n, D, g->stream, M));
        if (slot >= 0) DSI_CK(b->event_record(gm->free_ev[slot], g->stream, M));
    }
    if (cf->n_shared_experts > 0) {
        if ((s = dsi_cu_mlp(r, &L->gate, &L->up, &L->down, NULL, NULL, NULL, g->xn, T, g->ye))) return s;
        DSI_CK(b->add(g->tmp, g->ye, (size_t)T * (size_t)D, g->stream, M));
    }
    return DS_OK;
}

static ds_status dsi_cu_ffn(dsi_cu_run *r, int l, int T) {
    const ds_model_config *cf = &r->m->cfg;
    const dsi_layer *L = &r->gm->layers[l];
    dsi_cuda_ctx *g = r->g;
    int D = cf->hidden_size;
    ds_status s;
    DSI_CK(r->b->rmsnorm(g->xn, D, g->x, D, (const float *)(const void *)L->ffn_norm.data, D, T, cf->rms_norm_eps,
                         g->stream, M));
    if (L->moe) s = dsi_cu_moe(r, l, T);
    else s = dsi_cu_mlp(r, &L->gate, &L->up, &L->down, NULL, NULL, NULL, g->xn, T, g->tmp);
    if (s) return s;
    DSI_CK(r->b->add(g->x, g->tmp, (size_t)T * (size_t)D, g->stream, M));
    return DS_OK;
}

static ds_status dsi_cu_forward(dsi_cu_run *r, const int32_t *tok, int T, int pos0, float *out, int first_out) {
    const ds_model_config *cf = &r->m->cfg;
    dsi_cuda_ctx *g = r->g;
    const dsi_backend_i *b = r->b;
    int D = cf->hidden_size, V = cf->vocab_size;
    ds_status s;
    if (T > g->max_batch || pos0 + T > g->n_ctx)
        return dsi_fail(r->e, DS_ERR_INTERNAL, "cuda: %d tokens at %d do not fit the context", T, pos0);
    DSI_CK(b->init(r->gm->device, M));   /* this thread may not have used the device yet */
    /* the host buffer is reused by the next call: wait for this upload to
     * land before returning (every path ends in a sync) */
    memcpy(g->h_tok, tok, (size_t)T * sizeof(int32_t));
    DSI_CK(b->upload(g->tok, g->h_tok, (size_t)T * sizeof(int32_t), g->stream, M));
    const dsi_weight *em = &r->gm->embed;
    DSI_CK(b->embed(em->dtype, em->data, em->rows, em->cols, g->tok, T, g->x, g->stream, M));
    for (int l = 0; l < cf->n_layers; l++) {
        if ((s = dsi_cu_attention(r, l, T, pos0)) || (s = dsi_cu_ffn(r, l, T))) {
            dsi_prefix(r->e, "layer %d", l);
            return s;
        }
    }
    if (out) {
        int n_out = T - first_out;
        DSI_CK(b->rmsnorm(g->xn, D, g->x + (size_t)first_out * D, D, (const float *)(const void *)r->gm->out_norm.data,
                          D, n_out, cf->rms_norm_eps, g->stream, M));
        if ((s = dsi_cu_mm(r, &r->gm->lm_head, NULL, g->xn, n_out, D, g->logits, V))) return s;
        DSI_CK(b->download(out, g->logits, (size_t)n_out * (size_t)V * sizeof(float), g->stream, M));
    }
    DSI_CK(b->sync(g->stream, M));
    return DS_OK;
}

DSI_FUNC ds_status dsi_cuda_forward(const ds_model *m, dsi_cuda_ctx *g, const int32_t *tok, int T, int pos0,
                                    float *out, int first_out, dsi_err *e) {
    dsi_cuda_model *gm = m->cuda;
    if (!gm || !g) return dsi_fail(e, DS_ERR_INTERNAL, "cuda: the model or context has no device state");
    dsi_cu_run r = {m, gm, g, gm->b, "", e};
    pthread_mutex_lock(&gm->lock);
    ds_status s = dsi_cu_forward(&r, tok, T, pos0, out, first_out);
    if (s) {
        /* leave the stream idle for the next call, whatever happened */
        char msg[DSI_CU_MSG];
        (void)gm->b->sync(g->stream, msg, sizeof msg);
        (void)gm->b->sync(gm->copy_stream, msg, sizeof msg);
    }
    pthread_mutex_unlock(&gm->lock);
    return s;
}
#undef M
#undef DSI_CK

#else /* no CUDA in this build */

DSI_FUNC ds_status dsi_cuda_probe(ds_model *m, const ds_model_params *p, dsi_err *e) {
    m->device = DS_DEVICE_CPU;
    if (p->device == DS_DEVICE_CPU) return DS_OK;
    if (p->device != DS_DEVICE_CUDA)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "device %d is neither DS_DEVICE_CPU nor DS_DEVICE_CUDA",
                        (int)p->device);
    dsi_log(m->log, m->log_user, DS_LOG_WARN,
            "CUDA was asked for but this build has no CUDA support (build with make CUDA=1); running on the CPU");
    return DS_OK;
}
DSI_FUNC bool dsi_cuda_experts_on_host(const ds_model *m, const ds_model_params *p) {
    (void)m;
    (void)p;
    return true;
}
DSI_FUNC ds_status dsi_cuda_model_new(ds_model *m, const ds_model_params *p, dsi_err *e) {
    (void)m;
    (void)p;
    (void)e;
    return DS_OK;
}
DSI_FUNC void dsi_cuda_model_free(ds_model *m) { (void)m; }
DSI_FUNC void dsi_cuda_stats(const ds_model *m, ds_cache_stats *out, bool reset) {
    (void)m;
    (void)reset;
    if (out) memset(out, 0, sizeof *out);
}
DSI_FUNC ds_status dsi_cuda_ctx_new(const ds_model *m, int n_ctx, int max_batch, const float *inv_freq,
                                    int rope_dim, float rope_mscale, float attn_scale, dsi_cuda_ctx **out,
                                    dsi_err *e) {
    (void)m, (void)n_ctx, (void)max_batch, (void)inv_freq, (void)rope_dim, (void)rope_mscale, (void)attn_scale;
    (void)e;
    *out = NULL;
    return DS_OK;
}
DSI_FUNC void dsi_cuda_ctx_free(const ds_model *m, dsi_cuda_ctx *g) {
    (void)m;
    (void)g;
}
DSI_FUNC ds_status dsi_cuda_forward(const ds_model *m, dsi_cuda_ctx *g, const int32_t *tok, int T, int pos0,
                                    float *out, int first_out, dsi_err *e) {
    (void)m, (void)g, (void)tok, (void)T, (void)pos0, (void)out, (void)first_out;
    return dsi_fail(e, DS_ERR_INTERNAL, "this build has no CUDA support");
}

#endif /* DS_CUDA */

/* ==== Public ============================================================== */
DS_API ds_status ds_model_gpu_cache_stats(const ds_model *m, ds_cache_stats *out) {
    dsi_err e = {0};
    if (!m || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_gpu_cache_stats: NULL argument");
        return dsi_publish(&e);
    }
    dsi_cuda_stats(m, out, false);
    return DS_OK;
}
