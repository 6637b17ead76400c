/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * cuda.c — the CUDA device (dsi_device_i): the forward pass's operations on
 * an NVIDIA GPU, through the CUDA backend's kernel table
 * (kernels/cuda/backend.cuh; the kernels link beside the library with make
 * CUDA=1).
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
 * The order of operations is the driver's (forward.c), as on the CPU:
 * routed experts in ascending expert order each added into the layer
 * output, then the shared experts, then the residual. The products differ
 * in summation order only; Q8_0 and Q4_0 weights meet F32 activations (as
 * the CPU with exact_activations).
 *
 * Pruned weights (Q8_0_24, Q8_0_SP) stay dense on the device: the kernels
 * know Q8_0 only, so these matrices are expanded on the host into the Q8_0
 * rows of the same values (exact) and uploaded as Q8_0: a dense matrix into
 * a device buffer of its own when the model opens (dexp), a routed expert
 * as it is staged, into a slot laid out as Q8_0 (xoff). The device holds
 * the Q8_0 bytes, not the smaller pruned ones.
 */
#include "engine.h"

/* plain C declarations, no CUDA types: harmless in a CPU-only build */
#include "../kernels/cuda/backend.cuh"

#include <stdio.h>
#include <stdlib.h>

/* Where the kernels come from:
 *   - linked in (DS_CUDA=1: the CUDA op and forward tests of make CUDA=1,
 *     the CPU emulator), through dsi_cuda_backend();
 *   - loaded at run time (every other multi-file build; the amalgamation
 *     only with DS_CUDA_LOAD, so it stays CPU-only and needs no dlopen by
 *     default): libdeepseek_cuda.so (make CUDA=1) is opened only when a
 *     model asks for CUDA, so a CPU run never maps the CUDA runtime or
 *     cuBLAS, and one build runs where they are missing;
 *   - neither (DS_NO_CUDA): every model runs on the CPU. */
#if defined(DS_CUDA) && DS_CUDA
#  define DSI_CU_ON 1
#  define DSI_CU_LINKED 1
#elif !defined(DS_NO_CUDA) && !DSI_WINDOWS && (!defined(DS_AMALGAMATION) || defined(DS_CUDA_LOAD))
#  define DSI_CU_ON 1
#  define DSI_CU_LINKED 0
#else
#  define DSI_CU_ON 0
#endif

#if DSI_CU_ON

#include <pthread.h>
#include <sodium.h>
#include <sys/mman.h>
#if !DSI_CU_LINKED
#include <dlfcn.h>
#include <unistd.h>
#endif

#define DSI_CU_MSG 320

#if DSI_CU_LINKED
static const dsi_backend_i *dsi_cu_backend(char *why, size_t len) {
    (void)why;
    (void)len;
    return dsi_cuda_backend();
}
#else
/* The backend's shared object, opened once and never closed (its table is
 * static storage there). Looked for as DS_CUDA_LIBRARY (a path) when set,
 * else as libdeepseek_cuda.so by the dynamic loader's search (its paths,
 * the program's run path), else beside the running program. */
#define DSI_CU_SONAME "libdeepseek_cuda.so"
static pthread_mutex_t dsi_cu_load_lock = PTHREAD_MUTEX_INITIALIZER;
static const dsi_backend_i *dsi_cu_loaded;
static char dsi_cu_load_error[256];

static void *dsi_cu_open(char *err, size_t len) {
    const char *env = getenv("DS_CUDA_LIBRARY");
    void *h = dlopen(env && env[0] ? env : DSI_CU_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (h || (env && env[0])) {
        if (!h) snprintf(err, len, "%s", dlerror());
        return h;
    }
    snprintf(err, len, "%s", dlerror());
#if !DSI_LINUX
    return NULL;   /* beside the program: found through /proc/self/exe, Linux's */
#else
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash || (size_t)(slash - exe) + sizeof DSI_CU_SONAME + 1 > sizeof exe) return NULL;
    memcpy(slash + 1, DSI_CU_SONAME, sizeof DSI_CU_SONAME);
    return dlopen(exe, RTLD_NOW | RTLD_LOCAL);
#endif
}

static const dsi_backend_i *dsi_cu_backend(char *why, size_t len) {
    pthread_mutex_lock(&dsi_cu_load_lock);
    if (!dsi_cu_loaded && !dsi_cu_load_error[0]) {
        char err[sizeof dsi_cu_load_error] = "";
        void *h = dsi_cu_open(err, sizeof err);
        if (h) {
            const dsi_backend_i *(*get)(void) = NULL;
            void *sym = dlsym(h, "dsi_cuda_backend");
            memcpy(&get, &sym, sizeof get);   /* object to function pointer, as POSIX allows */
            if (get) dsi_cu_loaded = get();
            else snprintf(err, sizeof err, "%s has no dsi_cuda_backend", DSI_CU_SONAME);
        }
        if (!dsi_cu_loaded) snprintf(dsi_cu_load_error, sizeof dsi_cu_load_error, "%s", err[0] ? err : "unknown");
    }
    const dsi_backend_i *b = dsi_cu_loaded;
    if (!b && why) snprintf(why, len, "%s", dsi_cu_load_error);
    pthread_mutex_unlock(&dsi_cu_load_lock);
    return b;
}
#endif

#define DSI_CU_NSTAGE 3           /* pinned staging buffers in rotation */

typedef struct dsi_cuda_model dsi_cuda_model;
struct dsi_cuda_model {
    const dsi_backend_i *b;
    int device;
    pthread_mutex_t lock;          /* one forward at a time; the cache tables; the statistics */
    void **dseg;                   /* device copy of each dense segment (NULL for others) */
    dsi_weights w;                 /* as the host's, .data device addresses (experts: the host's refs) */
    int *moe_index;                /* layer -> index among MoE layers, or -1 */
    int n_moe, n_experts;
    /* the VRAM expert cache */
    size_t slot_bytes;             /* the largest expert segment */
    int n_slots, n_keys;           /* keys: moe layer * E + expert */
    bool all_resident;             /* every present expert has its slot (slot_of), filled at open, never evicted */
    int n_present;                 /* keys of experts in the file (not dropped at conversion) */
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
    /* pruned weights as Q8_0 (see the top of the file) */
    void **dexp;                   /* device buffers of expanded dense matrices */
    size_t *dexp_bytes;
    int n_dexp;
    bool *xq8;                     /* layer: its routed experts are staged expanded */
    dsi_expert_ref *xoff;          /* layer: offsets of the expanded gate, up, down in a slot */
    size_t *xbytes;                /* layer: the expanded expert's bytes */
    dsi_expert_ref **xrefs;        /* layer: gm's own expert table (xoff for every expert), or NULL */
    dsi_secure_buf xsrc;           /* an expert's stored bytes before expansion (when not on the host) */
    int32_t *dkept;                /* device (n_layers, E): each layer's kept experts (dropped at conversion), or NULL */
};

/* Whether the device takes dt as Q8_0 rows expanded on the host. */
static bool dsi_cu_pruned(ds_dtype dt) { return dt == DS_DTYPE_Q8_0_24 || dt == DS_DTYPE_Q8_0_SP; }

/* w's rows (host, stride w->row_bytes) as Q8_0 rows into dst. */
static void dsi_cu_expand(const dsi_weight *w, const uint8_t *src, uint8_t *dst) {
    size_t rb8 = (size_t)(w->cols / DSI_Q8_BLOCK) * DSI_Q8_BLOCK_BYTES;
    for (int r = 0; r < w->rows; r++)
        (void)dsi_dtype_to_q8_0(w->dtype, src + (size_t)r * w->row_bytes, dst + (size_t)r * rb8, (size_t)w->cols);
}

typedef struct dsi_cuda_ctx {
    const ds_model *m;
    dsi_cuda_model *gm;
    const dsi_backend_i *b;
    void *stream;
    dsi_blas *blas;
    int n_ctx, n_seq, max_batch;
    size_t kv_a_stride, kv_b_stride;   /* floats per layer (of a sequence) */
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
    void *dev[32];                 /* every device allocation, for free */
    int n_dev;
    void *pinned[8];
    int n_pinned;
    /* LoRA, made on first use (contexts without adapters pay nothing):
     * the products' scratch, and the routed experts' adapter parts of one
     * expert uploaded for its products (plaintext: wiped before freed) */
    float *lt;
    size_t lt_cap;                 /* floats */
    uint8_t *lx;
    size_t lx_cap;                 /* bytes */
    struct dsi_cu_lx { const ds_adapter *a; size_t off; } *lxs;   /* host: the adapters in lx and where */
    int lxs_cap;
} dsi_cuda_ctx;

/* A failed backend call: its status, its message behind "cuda: ". */
#define DSI_CK(call)                                                                                                 \
    do {                                                                                                             \
        ds_status s_ = (call);                                                                                       \
        if (s_) return dsi_fail(e, s_, "cuda: %s", msg);                                                             \
    } while (0)

/* ==== Probe, without touching the weights ================================= */
DSI_FUNC ds_status dsi_cuda_probe(ds_model *m, const ds_model_params *p, dsi_err *e) {
    m->device = DS_DEVICE_CPU;
    if (p->device != DS_DEVICE_CUDA) return DS_OK;   /* ds_model_open refused values outside the enum */
    char msg[DSI_CU_MSG] = "";
    const dsi_backend_i *b = dsi_cu_backend(msg, sizeof msg);
    if (!b) {
        dsi_log(m->log, m->log_user, DS_LOG_WARN, "CUDA was asked for but is not available (%s); running on the CPU",
                msg);
        return DS_OK;
    }
    if (b->version != DSI_BACKEND_VERSION)
        return dsi_fail(e, DS_ERR_BACKEND, "the CUDA backend's table has version %d; this library knows %d",
                        b->version, DSI_BACKEND_VERSION);
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

/* A pruned dense matrix (w, host bytes) as Q8_0 in a device buffer of its
 * own: w becomes that Q8_0 matrix. */
static ds_status dsi_cu_expand_dense(const ds_model *m, dsi_cuda_model *gm, dsi_weight *w, dsi_err *e) {
    const dsi_backend_i *b = gm->b;
    char msg[DSI_CU_MSG] = "";
    size_t rb8 = (size_t)(w->cols / DSI_Q8_BLOCK) * DSI_Q8_BLOCK_BYTES, bytes = (size_t)w->rows * rb8;
    dsi_secure_buf host = {0};
    ds_status s = dsi_secure_alloc(&host, bytes, 0, e);
    if (s) return s;
    dsi_cu_expand(w, w->data, host.ptr);
    void *d = NULL;
    s = b->alloc(&d, bytes, msg, sizeof msg);
    if (!s) {
        gm->dexp[gm->n_dexp] = d;
        gm->dexp_bytes[gm->n_dexp++] = bytes;
        s = b->upload(d, host.ptr, bytes, NULL, msg, sizeof msg);
        if (!s) s = b->sync(NULL, msg, sizeof msg);   /* before host is wiped */
    }
    dsi_secure_free(&host);
    if (s) return dsi_fail(e, s, "cuda: a pruned matrix expanded to Q8_0 (%zu bytes): %s", bytes, msg);
    (void)m;
    w->data = d;
    w->dtype = DS_DTYPE_Q8_0;
    w->row_bytes = rb8;
    return DS_OK;
}

/* Pinned memory holds plaintext: never in a core dump, wiped at free. */
static ds_status dsi_cu_pinned(const dsi_backend_i *b, void **p, size_t bytes, char *msg, size_t len) {
    ds_status s = b->host_alloc(p, bytes, msg, len);
    if (s) return s;
#ifdef DSI_MADV_NODUMP
    uintptr_t a = ((uintptr_t)*p + 4095) & ~(uintptr_t)4095, z = ((uintptr_t)*p + bytes) & ~(uintptr_t)4095;
    if (z > a) (void)madvise((void *)a, z - a, DSI_MADV_NODUMP);
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
    const dsi_expert_ref *r = &m->w.layers[layer].experts[x];
    size_t bytes = (size_t)m->meta.segments[r->segment].plain_bytes;
    ds_status s;
    if (gm->xq8 && gm->xq8[layer]) {
        /* pruned: the stored matrices expanded to Q8_0 into the stage */
        const dsi_layer *L = &m->w.layers[layer];
        const dsi_weight *tw[3] = {&L->exp_gate, &L->exp_up, &L->exp_down};
        const uint8_t *src = NULL;
        bool held = m->pager || m->dense[r->segment].ptr;
        if (held) {
            if ((s = dsi_expert_acquire(m, layer, x, &src, e))) return s;
        } else {
            uint32_t seg = 0;
            if ((s = dsi_model_read_expert(m, layer, x, gm->xsrc.ptr, gm->xsrc.size, &seg, e))) return s;
            src = gm->xsrc.ptr;
        }
        for (int k = 0; k < 3; k++)
            dsi_cu_expand(tw[k], src + r->off[k], (uint8_t *)gm->stage[i] + gm->xoff[layer].off[k]);
        if (held) dsi_expert_release(m, layer, x);
        else sodium_memzero(gm->xsrc.ptr, gm->xsrc.size);
        gm->st.bytes_decrypted += bytes;
        bytes = gm->xbytes[layer];
        if (after) DSI_CK(b->stream_wait(gm->copy_stream, after, msg, sizeof msg));
        DSI_CK(b->upload(dst, gm->stage[i], bytes, gm->copy_stream, msg, sizeof msg));
        DSI_CK(b->event_record(gm->stage_ev[i], gm->copy_stream, msg, sizeof msg));
        return DS_OK;
    }
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
    for (int l = 0; l < cf->n_layers; l++) gm->moe_index[l] = m->w.layers[l].moe ? gm->n_moe++ : -1;
    if (gm->n_moe == 0 || gm->n_experts == 0) return DS_OK;
    for (size_t i = 0; i < m->meta.n_segments; i++)
        if (m->meta.segments[i].kind == DS_SEGMENT_EXPERT && m->meta.segments[i].plain_bytes > gm->slot_bytes)
            gm->slot_bytes = (size_t)m->meta.segments[i].plain_bytes;
    /* layers whose experts are pruned: staged as Q8_0, gate, up and down
     * each at a 256-byte boundary */
    size_t src_bytes = gm->slot_bytes;
    bool any = false;
    for (int l = 0; l < cf->n_layers; l++) {
        dsi_layer *L = &gm->w.layers[l];
        if (!L->moe || !(dsi_cu_pruned(L->exp_gate.dtype) || dsi_cu_pruned(L->exp_up.dtype) ||
                         dsi_cu_pruned(L->exp_down.dtype)))
            continue;
        if (!gm->xq8) {
            gm->xq8 = dsi_calloc(&m->al, (size_t)cf->n_layers, sizeof *gm->xq8);
            gm->xoff = dsi_calloc(&m->al, (size_t)cf->n_layers, sizeof *gm->xoff);
            gm->xbytes = dsi_calloc(&m->al, (size_t)cf->n_layers, sizeof *gm->xbytes);
            gm->xrefs = dsi_calloc(&m->al, (size_t)cf->n_layers, sizeof *gm->xrefs);
            if (!gm->xq8 || !gm->xoff || !gm->xbytes || !gm->xrefs) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
        }
        gm->xq8[l] = any = true;
        dsi_weight *tw[3] = {&L->exp_gate, &L->exp_up, &L->exp_down};
        size_t at = 0;
        for (int k = 0; k < 3; k++) {
            gm->xoff[l].off[k] = at;
            size_t rb8 = (size_t)(tw[k]->cols / DSI_Q8_BLOCK) * DSI_Q8_BLOCK_BYTES;
            at += ((size_t)tw[k]->rows * rb8 + 255) & ~(size_t)255;
            if (!dsi_dtype_blocked(tw[k]->dtype))
                return dsi_fail(e, DS_ERR_SHAPE, "cuda: layer %d: routed experts mix pruned and %s matrices", l,
                                ds_dtype_name(tw[k]->dtype));
            tw[k]->dtype = DS_DTYPE_Q8_0;   /* as the device sees them */
            tw[k]->row_bytes = rb8;
        }
        gm->xbytes[l] = at;
        if (at > gm->slot_bytes) gm->slot_bytes = at;
    }
    if (any) {   /* the expanded offsets in a slot, the same for every expert of a layer */
        for (int l = 0; l < cf->n_layers; l++) {
            if (!gm->xq8[l]) continue;
            dsi_expert_ref *refs = gm->xrefs[l] = dsi_calloc(&m->al, (size_t)gm->n_experts, sizeof *refs);
            if (!refs) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
            for (int x = 0; x < gm->n_experts; x++) refs[x] = gm->xoff[l];
            gm->w.layers[l].experts = refs;
        }
        ds_status s0;
        if (!m->pager && (s0 = dsi_secure_alloc(&gm->xsrc, src_bytes, 0, e))) return s0;
    }
    gm->slot_bytes = (gm->slot_bytes + 255) & ~(size_t)255;   /* slots aligned for the kernels' vector loads */
    gm->n_keys = gm->n_moe * gm->n_experts;
    gm->n_present = 0;   /* experts dropped at conversion take no slot */
    for (int l = 0; l < cf->n_layers; l++)
        for (int x = 0; gm->moe_index[l] >= 0 && x < gm->n_experts; x++)
            gm->n_present += m->w.layers[l].experts[x].segment != UINT32_MAX;
    uint64_t need = (uint64_t)gm->n_present * gm->slot_bytes;
    if (p->gpu_cache_bytes && p->gpu_cache_bytes < 2 * (uint64_t)gm->slot_bytes)
        return dsi_fail(e, DS_ERR_INVALID_ARG,
                        "gpu_cache_bytes %llu is below two experts' worth (2 x %zu bytes)",
                        (unsigned long long)p->gpu_cache_bytes, gm->slot_bytes);
    gm->all_resident = p->gpu_cache_bytes == 0 || p->gpu_cache_bytes >= need;
    gm->n_slots = gm->all_resident ? gm->n_present : (int)(p->gpu_cache_bytes / gm->slot_bytes);
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
    for (int k = 0; k < gm->n_keys; k++) gm->slot_of[k] = -1;
    for (int k = 0; k < gm->n_slots; k++) gm->key_of[k] = -1;
    if (gm->all_resident)   /* the present experts' keys, in order, on slots 0.. */
        for (int l = 0, n = 0; l < cf->n_layers; l++)
            for (int x = 0; gm->moe_index[l] >= 0 && x < gm->n_experts; x++)
                if (m->w.layers[l].experts[x].segment != UINT32_MAX) {
                    int key = gm->moe_index[l] * gm->n_experts + x;
                    gm->slot_of[key] = n;
                    gm->key_of[n++] = key;
                }
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
            if (m->w.layers[l].experts[x].segment == UINT32_MAX) continue;   /* dropped at conversion */
            int key = gm->moe_index[l] * gm->n_experts + x;
            if ((s = dsi_cu_stage_upload(m, gm, l, x, gm->slots + (size_t)gm->slot_of[key] * gm->slot_bytes, NULL,
                                         e))) {
                dsi_prefix(e, "uploading layer %d expert %d", l, x);
                return s;
            }
        }
    }
    DSI_CK(b->sync(gm->copy_stream, msg, sizeof msg));
    dsi_log(m->log, m->log_user, DS_LOG_INFO, "cuda: %d routed experts (%.1f MB) uploaded in %.2f s", gm->n_present,
            (double)need / 1e6, dsi_now_seconds() - t0);
    memset(&gm->st, 0, sizeof gm->st);
    gm->st.budget_bytes = need;
    gm->st.slot_bytes = gm->slot_bytes;
    return DS_OK;
}

static void dsi_cu_model_free(ds_model *m, void *dm);

static ds_status dsi_cu_model_new(ds_model *m, const ds_model_params *p, void **dm, dsi_err *e) {
    const dsi_backend_i *b = dsi_cu_backend(NULL, 0);
    char msg[DSI_CU_MSG] = "";
    dsi_cuda_model *gm = dsi_calloc(&m->al, 1, sizeof *gm);
    if (!gm) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&gm->lock, NULL) != 0) {
        dsi_free(&m->al, gm);
        return dsi_fail(e, DS_ERR_NOMEM, "cannot create a mutex");
    }
    *dm = gm;   /* from here dsi_cu_model_free undoes what is done */
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
    gm->w = m->w;
    gm->w.layers = dsi_calloc(&m->al, (size_t)m->cfg.n_layers, sizeof *gm->w.layers);
    if (!gm->w.layers) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    ds_status s;
    size_t n_w = 3 + 18 * (size_t)m->cfg.n_layers;   /* every weight below: the most that may need expanding */
    gm->dexp = dsi_calloc(&m->al, n_w, sizeof *gm->dexp);
    gm->dexp_bytes = dsi_calloc(&m->al, n_w, sizeof *gm->dexp_bytes);
    if (!gm->dexp || !gm->dexp_bytes) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    bool tied = m->w.lm_head.data == m->w.embed.data;
    dsi_weight *top[] = {&gm->w.embed, &gm->w.out_norm, &gm->w.lm_head};
    for (size_t k = 0; k < 3; k++) {
        if (k == 2 && tied && dsi_cu_pruned(gm->w.lm_head.dtype)) {
            gm->w.lm_head = gm->w.embed;   /* one expanded copy for both */
            continue;
        }
        if ((s = top[k]->data && dsi_cu_pruned(top[k]->dtype) ? dsi_cu_expand_dense(m, gm, top[k], e)
                                                               : dsi_cu_translate(m, gm, top[k], e)))
            return s;
    }
    for (int l = 0; l < m->cfg.n_layers; l++) {
        dsi_layer *L = &gm->w.layers[l];
        *L = m->w.layers[l];
        dsi_weight *ws[] = {&L->attn_norm, &L->ffn_norm, &L->q_proj, &L->q_a,   &L->q_a_norm, &L->q_b,
                            &L->kv_a,      &L->kv_a_norm, &L->kv_b,  &L->wq,    &L->wk,       &L->wv,
                            &L->wo,        &L->gate,     &L->up,    &L->down,  &L->router,   &L->bias};
        for (size_t k = 0; k < sizeof ws / sizeof ws[0]; k++)
            if ((s = ws[k]->data && dsi_cu_pruned(ws[k]->dtype) ? dsi_cu_expand_dense(m, gm, ws[k], e)
                                                                 : dsi_cu_translate(m, gm, ws[k], e)))
                return s;
    }
    if (m->has_drop) {
        /* the layers' kept maps, for the route kernel */
        size_t n = (size_t)m->cfg.n_layers * (size_t)m->cfg.n_routed_experts * sizeof(int32_t);
        void *d = NULL;
        DSI_CK(b->alloc(&d, n, msg, sizeof msg));
        gm->dkept = d;
        DSI_CK(b->upload(d, m->drop.kept, n, NULL, msg, sizeof msg));
        DSI_CK(b->sync(NULL, msg, sizeof msg));
        for (int l = 0; l < m->cfg.n_layers; l++)
            if (gm->w.layers[l].kept) gm->w.layers[l].kept = gm->dkept + (size_t)l * (size_t)m->cfg.n_routed_experts;
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

static void dsi_cu_model_free(ds_model *m, void *dm) {
    dsi_cuda_model *gm = dm;
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
        for (int i = 0; i < gm->n_dexp; i++) (void)b->memset(gm->dexp[i], 0, gm->dexp_bytes[i], NULL, msg, sizeof msg);
        (void)b->sync(NULL, msg, sizeof msg);
        if (gm->slots) b->free(gm->slots);
        if (gm->dkept) b->free(gm->dkept);
        for (size_t i = 0; gm->dseg && i < m->meta.n_segments; i++)
            if (gm->dseg[i]) b->free(gm->dseg[i]);
        for (int i = 0; i < gm->n_dexp; i++) b->free(gm->dexp[i]);
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
    for (int l = 0; gm->xrefs && l < m->cfg.n_layers; l++) dsi_free(&m->al, gm->xrefs[l]);
    dsi_free(&m->al, gm->xrefs);
    dsi_free(&m->al, gm->xq8);
    dsi_free(&m->al, gm->xoff);
    dsi_free(&m->al, gm->xbytes);
    dsi_secure_free(&gm->xsrc);
    dsi_free(&m->al, gm->dexp);
    dsi_free(&m->al, gm->dexp_bytes);
    dsi_free(&m->al, gm->dseg);
    dsi_free(&m->al, gm->w.layers);
    dsi_free(&m->al, gm->moe_index);
    dsi_free(&m->al, gm->slot_of);
    dsi_free(&m->al, gm->key_of);
    dsi_free(&m->al, gm->last_use);
    dsi_free(&m->al, gm->free_ev);
    dsi_free(&m->al, gm->ready_ev);
    pthread_mutex_destroy(&gm->lock);
    dsi_free(&m->al, gm);
}

static const dsi_weights *dsi_cu_weights(const ds_model *m) { return &((const dsi_cuda_model *)m->dev_model)->w; }

static void dsi_cu_stats(const ds_model *m, ds_cache_stats *out, bool reset) {
    dsi_cuda_model *gm = m->dev_model;
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

static void dsi_cu_ctx_free(const ds_model *m, void *dc);

static ds_status dsi_cu_ctx_new(const ds_model *m, const dsi_ctx_shape *sh, void **out, dsi_act *act, dsi_err *e) {
    *out = NULL;
    dsi_cuda_model *gm = m->dev_model;
    if (!gm) return dsi_fail(e, DS_ERR_INTERNAL, "cuda: the model has no device state");
    const dsi_backend_i *b = gm->b;
    int n_ctx = sh->n_ctx, max_batch = sh->max_batch, rope_dim = sh->rope_dim;
    const float *inv_freq = sh->inv_freq;
    const ds_model_config *cf = &m->cfg;
    char msg[DSI_CU_MSG] = "";
    dsi_cuda_ctx *g = dsi_calloc(&m->al, 1, sizeof *g);
    if (!g) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    g->m = m;
    g->gm = gm;
    g->b = b;
    ds_status s = DS_OK;
#define A(p, n) if ((s = dsi_cu_ctx_alloc(g, b, false, &(p), (size_t)(n), e))) goto fail
#define P(p, n) if ((s = dsi_cu_ctx_alloc(g, b, true, &(p), (size_t)(n), e))) goto fail
    if ((s = b->init(gm->device, msg, sizeof msg)) || (s = b->stream_new(&g->stream, msg, sizeof msg)) ||
        (s = b->blas_new(&g->blas, 0, 0, msg, sizeof msg))) {
        dsi_fail(e, s, "cuda: %s", msg);
        goto fail;
    }
    g->n_ctx = n_ctx;
    g->n_seq = sh->n_seq;
    g->max_batch = max_batch;
    g->rope_dim = rope_dim;
    g->rope_mscale = sh->rope_mscale;
    g->attn_scale = sh->attn_scale;
    {
        size_t T = (size_t)max_batch, D = (size_t)cf->hidden_size;
        size_t a_dim = (size_t)sh->kv_a_dim, b_dim = (size_t)sh->kv_b_dim, inter = (size_t)sh->ffn_dim;
        size_t kva = (size_t)sh->kva_dim, att = (size_t)sh->att_dim, qd = (size_t)sh->q_dim;
        size_t E = (size_t)(cf->n_routed_experts > 0 ? cf->n_routed_experts : 1);
        size_t K = (size_t)(cf->n_experts_per_tok > 0 ? cf->n_experts_per_tok : 1);
        size_t L = (size_t)cf->n_layers * (size_t)sh->n_seq;   /* a cache per layer and sequence */
        g->kv_a_stride = (size_t)n_ctx * a_dim;
        g->kv_b_stride = (size_t)n_ctx * b_dim;
        A(g->kv_a, L * g->kv_a_stride * sizeof(float));
        A(g->kv_b, L * g->kv_b_stride * sizeof(float));
        A(g->inv_freq, (size_t)(rope_dim / 2 + 1) * sizeof(float));
        A(g->x, T * D * 4);
        A(g->xn, T * D * 4);
        A(g->q, T * qd * 4);
        A(g->qa, T * (size_t)sh->qa_dim * 4);
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
    /* g and u double as the MLP's scratch (dsi_cu_mlp3): the driver runs an
     * MLP either fused or in steps, never both at once */
    *act = (dsi_act){g->x, g->xn, g->q, g->qa, g->kva, g->att, g->tmp, g->router, g->ye, g->g, g->u};
    g->lxs_cap = sh->n_seq * DS_MAX_ADAPTERS;
    g->lxs = dsi_calloc(&m->al, (size_t)g->lxs_cap, sizeof *g->lxs);
    if (!g->lxs) {
        s = dsi_fail(e, DS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    *out = g;
    return DS_OK;
fail:
    dsi_prefix(e, "a context of %d tokens", n_ctx);
    dsi_cu_ctx_free(m, g);
    return s;
}

static void dsi_cu_ctx_free(const ds_model *m, void *dc) {
    dsi_cuda_ctx *g = dc;
    if (!g) return;
    const dsi_backend_i *b = g->b ? g->b : dsi_cu_backend(NULL, 0);
    char msg[DSI_CU_MSG];
    if (g->stream) (void)b->sync(g->stream, msg, sizeof msg);
    if (g->lx) {
        (void)b->memset(g->lx, 0, g->lx_cap, NULL, msg, sizeof msg);
        (void)b->sync(NULL, msg, sizeof msg);
        b->free(g->lx);
    }
    b->free(g->lt);
    dsi_free(&m->al, g->lxs);
    for (int i = 0; i < g->n_dev; i++) b->free(g->dev[i]);
    for (int i = 0; i < g->n_pinned; i++) b->host_free(g->pinned[i]);
    if (g->blas) b->blas_free(g->blas);
    b->stream_free(g->stream);
    dsi_free(&m->al, g);
}

/* ==== The device's operations ============================================ */
/* A failed backend call: its status, its message behind "cuda: ". */
#undef DSI_CK
#define DSI_CK(call)                                                                                                 \
    do {                                                                                                             \
        char msg_[DSI_CU_MSG] = "";                                                                                  \
        ds_status s_ = (call);                                                                                       \
        if (s_) return dsi_fail(e, s_, "cuda: %s", msg_);                                                           \
    } while (0)
#define M msg_, sizeof msg_

static ds_status dsi_cu_begin(void *dc, dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    pthread_mutex_lock(&g->gm->lock);
    char msg_[DSI_CU_MSG] = "";
    ds_status s = g->b->init(g->gm->device, M);   /* this thread may not have used the device yet */
    if (s) {
        pthread_mutex_unlock(&g->gm->lock);
        return dsi_fail(e, s, "cuda: %s", msg_);
    }
    return DS_OK;
}

/* Every forward call ends with its stream idle: the host buffers it used
 * are reused by the next call, and the logits downloaded are complete. */
static ds_status dsi_cu_end(void *dc, ds_status s, dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    char msg_[DSI_CU_MSG] = "";
    if (s) {
        /* leave the streams idle for the next call, whatever happened */
        (void)g->b->sync(g->stream, M);
        (void)g->b->sync(g->gm->copy_stream, M);
    } else if ((s = g->b->sync(g->stream, M))) {
        dsi_fail(e, s, "cuda: %s", msg_);
    }
    pthread_mutex_unlock(&g->gm->lock);
    return s;
}

static ds_status dsi_cu_embed(void *dc, const dsi_weight *em, const int32_t *tok, int T, float *x, dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    if (T > g->max_batch) return dsi_fail(e, DS_ERR_INTERNAL, "cuda: %d tokens do not fit the context", T);
    /* the pinned buffer is reused by the next call: the call's end waits
     * for this upload to land */
    memcpy(g->h_tok, tok, (size_t)T * sizeof(int32_t));
    DSI_CK(g->b->upload(g->tok, g->h_tok, (size_t)T * sizeof(int32_t), g->stream, M));
    DSI_CK(g->b->embed(em->dtype, em->data, em->rows, em->cols, g->tok, T, x, g->stream, M));
    return DS_OK;
}

static ds_status dsi_cu_rmsnorm(void *dc, float *out, int ldo, const float *x, int ldx, const dsi_weight *w, int rows,
                                float eps, dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    DSI_CK(g->b->rmsnorm(out, ldo, x, ldx, (const float *)(const void *)w->data, w->cols, rows, eps, g->stream, M));
    return DS_OK;
}

/* Y (T, rows) = X (T, cols) W^T, W at wd (device; w->data when NULL). */
static ds_status dsi_cu_mm(dsi_cuda_ctx *g, const dsi_weight *w, const uint8_t *wd, const float *X, int T, int ldx,
                           float *Y, int ldy, dsi_err *e) {
    DSI_CK(g->b->matmul(g->blas, w->dtype, wd ? wd : w->data, w->rows, w->cols, X, ldx, T, Y, ldy, g->stream, M));
    return DS_OK;
}

static ds_status dsi_cu_matmul(void *dc, const dsi_weight *w, const float *X, int T, int ldx, float *Y, int ldy,
                               dsi_err *e) {
    return dsi_cu_mm(dc, w, NULL, X, T, ldx, Y, ldy, e);
}

/* down(silu(gate X) * up X) into Y (T, D), the matrices at gb, ub, db
 * (device) or their weights' own data when NULL. */
static ds_status dsi_cu_mlp3(dsi_cuda_ctx *g, const dsi_weight *gate, const dsi_weight *up, const dsi_weight *down,
                             const uint8_t *gb, const uint8_t *ub, const uint8_t *db, const float *X, int T, float *Y,
                             dsi_err *e) {
    int D = g->m->cfg.hidden_size, I = gate->rows;
    ds_status s;
    if ((s = dsi_cu_mm(g, gate, gb, X, T, D, g->g, I, e)) || (s = dsi_cu_mm(g, up, ub, X, T, D, g->u, I, e))) return s;
    DSI_CK(g->b->silu_mul(g->g, g->u, (size_t)T * (size_t)I, g->stream, M));
    return dsi_cu_mm(g, down, db, g->g, T, I, Y, D, e);
}

static ds_status dsi_cu_mlp(void *dc, const dsi_weight *gate, const dsi_weight *up, const dsi_weight *down,
                            const float *X, int T, float *Y, dsi_err *e) {
    return dsi_cu_mlp3(dc, gate, up, down, NULL, NULL, NULL, X, T, Y, e);
}

static ds_status dsi_cu_add(void *dc, float *y, const float *x, size_t n, dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    DSI_CK(g->b->add(y, x, n, g->stream, M));
    return DS_OK;
}

/* The run's sequence's cache of layer l (a: latent or K, b: rope key or V). */
static void dsi_cu_cache_of(const dsi_cuda_ctx *g, int l, int seq, float **ca, float **cb) {
    size_t k = (size_t)seq * (size_t)g->m->cfg.n_layers + (size_t)l;
    *ca = g->kv_a + k * g->kv_a_stride;
    *cb = g->kv_b + k * g->kv_b_stride;
}

static ds_status dsi_cu_mla_attention(void *dc, int l, const dsi_layer *L, const dsi_run *r, float eps, dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    const ds_model_config *cf = &g->m->cfg;
    int H = cf->n_heads, R = cf->kv_lora_rank, dr = cf->qk_rope_head_dim, dn = cf->qk_nope_head_dim, hd = dn + dr;
    if (r->pos0 + r->n > g->n_ctx)
        return dsi_fail(e, DS_ERR_INTERNAL, "cuda: %d tokens at %d do not fit the context", r->n, r->pos0);
    float *ca, *cb;
    dsi_cu_cache_of(g, l, r->seq, &ca, &cb);
    dsi_mla_layer a = {H, dn, dr, cf->v_head_dim, R, g->attn_scale, g->rope_mscale, g->inv_freq, L->kv_b.dtype,
                       L->kv_b.data, ca, cb, g->n_ctx};
    DSI_CK(g->b->mla_kv_store(&a, g->kva + (size_t)r->t0 * (R + dr), (const float *)(const void *)L->kv_a_norm.data,
                              eps, r->n, r->pos0, g->stream, M));
    const float *q = g->q + (size_t)r->t0 * H * hd;
    float *att = g->att + (size_t)r->t0 * H * cf->v_head_dim;
    /* adapted kv_b_proj: the adapters' products inside the absorbed form */
    dsi_mla_lora ad[DSI_CUDA_MLA_MAX_LORA];
    int n_ad = 0;
    for (int k = 0; r->lora && k < r->lora->n; k++) {
        const dsi_lora_ab *ab = &r->lora->use[k].a->dev_layers[l].m[DSI_LM_KV_B];
        if (!ab->a.data) continue;
        if (n_ad == DSI_CUDA_MLA_MAX_LORA)
            return dsi_fail(e, DS_ERR_INTERNAL, "cuda: more than %d adapters of kv_b_proj", DSI_CUDA_MLA_MAX_LORA);
        ad[n_ad++] = (dsi_mla_lora){ab->a.dtype, ab->b.dtype, ab->a.data, ab->b.data, ab->a.rows, r->lora->use[k].s};
    }
    if (n_ad) DSI_CK(g->b->mla_attention_lora(&a, ad, n_ad, q, r->n, r->pos0, att, g->stream, M));
    else DSI_CK(g->b->mla_attention(&a, q, r->n, r->pos0, att, g->stream, M));
    return DS_OK;
}

static ds_status dsi_cu_mha_attention(void *dc, int l, const dsi_layer *L, const dsi_run *r, int T, dsi_err *e) {
    (void)L;
    dsi_cuda_ctx *g = dc;
    const dsi_backend_i *b = g->b;
    const ds_model_config *cf = &g->m->cfg;
    int H = cf->n_heads, hd = cf->head_dim, Hk = cf->n_kv_heads, kd = Hk * hd;
    if (r->pos0 + r->n > g->n_ctx)
        return dsi_fail(e, DS_ERR_INTERNAL, "cuda: %d tokens at %d do not fit the context", r->n, r->pos0);
    float *q = g->q + (size_t)r->t0 * H * hd;
    float *kt = g->kva + (size_t)r->t0 * kd, *vt = g->kva + (size_t)(T + r->t0) * kd;
    DSI_CK(b->rope(q, H * hd, hd, H, r->n, r->pos0, g->inv_freq, g->rope_dim, g->rope_mscale, 0, g->stream, M));
    DSI_CK(b->rope(kt, kd, hd, Hk, r->n, r->pos0, g->inv_freq, g->rope_dim, g->rope_mscale, 0, g->stream, M));
    float *ck, *cv;
    dsi_cu_cache_of(g, l, r->seq, &ck, &cv);
    size_t bytes = (size_t)r->n * (size_t)kd * sizeof(float);
    DSI_CK(b->copy(ck + (size_t)r->pos0 * kd, kt, bytes, g->stream, M));
    DSI_CK(b->copy(cv + (size_t)r->pos0 * kd, vt, bytes, g->stream, M));
    dsi_mha_layer a = {H, Hk, hd, g->attn_scale, ck, cv, g->n_ctx};
    DSI_CK(b->mha_attention(&a, q, r->n, r->pos0, g->att + (size_t)r->t0 * H * hd, g->stream, M));
    return DS_OK;
}

/* The routing on the device; the host needs it (which experts to page),
 * so this waits for it. */
static ds_status dsi_cu_route(void *dc, const dsi_layer *L, const float *logits, int T, int *sel, float *selw,
                              dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    const dsi_backend_i *b = g->b;
    size_t tk = (size_t)T * (size_t)g->m->cfg.n_experts_per_tok;
    DSI_CK(b->route(&g->m->cfg, logits, L->bias.data ? (const float *)(const void *)L->bias.data : NULL,
                    (const int *)L->kept, L->n_kept, T, g->sel,
                    g->selw, g->stream, M));
    DSI_CK(b->download(g->h_sel, g->sel, tk * sizeof(int), g->stream, M));
    DSI_CK(b->download(g->h_selw, g->selw, tk * sizeof(float), g->stream, M));
    DSI_CK(b->sync(g->stream, M));
    memcpy(sel, g->h_sel, tk * sizeof(int));
    memcpy(selw, g->h_selw, tk * sizeof(float));
    return DS_OK;
}

/* ==== LoRA ================================================================ */
/* Grows a LoRA device buffer to at least bytes: the old one (wiped first
 * when it held plaintext) goes once the stream is done with it. */
static ds_status dsi_cu_grow(dsi_cuda_ctx *g, void **p, size_t *cap, size_t bytes, bool wipe, dsi_err *e) {
    if (*cap >= bytes) return DS_OK;
    if (*p) {
        DSI_CK(g->b->sync(g->stream, M));
        if (wipe) {
            DSI_CK(g->b->memset(*p, 0, *cap, g->stream, M));
            DSI_CK(g->b->sync(g->stream, M));
        }
        g->b->free(*p);
        *p = NULL;
        *cap = 0;
    }
    char msg_[DSI_CU_MSG] = "";
    ds_status s = g->b->alloc(p, bytes, M);
    if (s) return dsi_fail(e, s, "cuda: LoRA scratch: %s", msg_);
    *cap = bytes;
    return DS_OK;
}

/* Rows of Y += s B (A X) for T rows, A and B device matrices. */
static ds_status dsi_cu_lora_rows(dsi_cuda_ctx *g, const dsi_lora_ab *ab, float s, const float *X, int ldx, float *Y,
                                  int ldy, int T, dsi_err *e) {
    int r = ab->a.rows, in = ab->a.cols, out = ab->b.rows;
    if (ab->b.cols != r || T > g->max_batch)
        return dsi_fail(e, DS_ERR_INTERNAL, "cuda: LoRA product of %d rows: A %dx%d, B %dx%d", T, r, in, out,
                        ab->b.cols);
    /* sized for a whole batch at once, so it grows at most once per shape */
    size_t need = DSI_CUDA_LORA_TMP(g->max_batch, r, out) * sizeof(float);
    ds_status st = dsi_cu_grow(g, (void **)&g->lt, &g->lt_cap, need, false, e);
    if (st) return st;
    DSI_CK(g->b->lora(g->blas, ab->a.dtype, ab->a.data, ab->b.dtype, ab->b.data, r, in, out, s, X, ldx, T, Y, ldy,
                      g->lt, g->stream, M));
    return DS_OK;
}

static ds_status dsi_cu_lora(void *dc, const dsi_lora_ab *ab, float s, const float *X, int ldx, float *Y, int ldy,
                             int T, dsi_err *e) {
    return dsi_cu_lora_rows(dc, ab, s, X, ldx, Y, ldy, T, e);
}

static ds_status dsi_cu_silu_mul(void *dc, float *g_, const float *u, size_t n, dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    DSI_CK(g->b->silu_mul(g_, u, n, g->stream, M));
    return DS_OK;
}

/* Routed expert x's adapter parts for the tokens of the plan that have it
 * (host idx, n of them): each adapter that adapts expert x of layer l, once,
 * acquired on the host (its own expert cache, or resident) and uploaded
 * into lx in stream order (an earlier expert's products that read lx run
 * first). *nd: how many; g->lxs: which and where. */
static ds_status dsi_cu_lora_parts(dsi_cuda_ctx *g, int l, int x, const dsi_moe_plan *plan, const int *idx, int n,
                                   int *nd, dsi_err *e) {
    size_t total = 0;
    *nd = 0;
    for (int i = 0; i < n; i++) {
        const dsi_lora_list *ls = plan->lora[idx[i]];
        for (int k = 0; ls && k < ls->n; k++) {
            const ds_adapter *a = ls->use[k].a;
            const dsi_lora_layer *ll = &a->layers[l];
            if (!ll->experts || ll->experts[x].segment < 0) continue;
            int d = 0;
            while (d < *nd && g->lxs[d].a != a) d++;
            if (d < *nd) continue;
            if (*nd == g->lxs_cap) return dsi_fail(e, DS_ERR_INTERNAL, "cuda: too many adapters in one batch");
            g->lxs[d].a = a;
            g->lxs[d].off = total;
            total += ((size_t)a->f.meta.segments[ll->experts[x].segment].plain_bytes + 255) & ~(size_t)255;
            (*nd)++;
        }
    }
    if (!*nd) return DS_OK;
    ds_status s = dsi_cu_grow(g, (void **)&g->lx, &g->lx_cap, total, true, e);
    if (s) return s;
    for (int d = 0; d < *nd; d++) {
        const ds_adapter *a = g->lxs[d].a;
        const uint8_t *src = NULL;
        if ((s = dsi_lora_expert_acquire(a, l, x, &src, e))) return s;
        size_t bytes = (size_t)a->f.meta.segments[a->layers[l].experts[x].segment].plain_bytes;
        char msg_[DSI_CU_MSG] = "";
        /* from pageable memory: returns once src may be reused */
        s = src ? g->b->upload(g->lx + g->lxs[d].off, src, bytes, g->stream, M) : DS_OK;
        dsi_lora_expert_release(a, l, x);
        if (s) return dsi_fail(e, s, "cuda: %s", msg_);
    }
    return DS_OK;
}

/* Part p (0 gate, 1 up, 2 down) of expert x's adapters on rows [0, n) of
 * In (ldi) into Out (ldo): runs of consecutive rows whose tokens share one
 * adapter list, each adapter of the list in order. */
static ds_status dsi_cu_lora_expert(dsi_cuda_ctx *g, int l, int x, int p, const dsi_moe_plan *plan, const int *idx,
                                    int n, int nd, const float *In, int ldi, float *Out, int ldo, dsi_err *e) {
    for (int i0 = 0; i0 < n;) {
        const dsi_lora_list *ls = plan->lora[idx[i0]];
        int i1 = i0 + 1;
        while (i1 < n && plan->lora[idx[i1]] == ls) i1++;
        for (int k = 0; ls && k < ls->n; k++) {
            const ds_adapter *a = ls->use[k].a;
            const dsi_lora_layer *ll = &a->layers[l];
            if (!ll->experts || ll->experts[x].segment < 0 || !ll->exp[p].a.rows) continue;
            int d = 0;
            while (d < nd && g->lxs[d].a != a) d++;
            if (d == nd) return dsi_fail(e, DS_ERR_INTERNAL, "cuda: an adapter's expert part was not uploaded");
            dsi_lora_ab v = ll->exp[p];
            const uint8_t *base = g->lx + g->lxs[d].off;
            v.a.data = base + ll->experts[x].off[2 * p];
            v.b.data = base + ll->experts[x].off[2 * p + 1];
            ds_status s = dsi_cu_lora_rows(g, &v, ls->use[k].s, In + (size_t)i0 * ldi, ldi, Out + (size_t)i0 * ldo, ldo,
                                           i1 - i0, e);
            if (s) return s;
        }
        i0 = i1;
    }
    return DS_OK;
}

/* The device address of expert (layer, x), uploading it into a slot when
 * it is not in the VRAM cache; *slot is its slot (-1 when all resident). */
static ds_status dsi_cu_expert(dsi_cuda_ctx *g, int l, int x, const uint8_t **dev, int *slot, dsi_err *e) {
    dsi_cuda_model *gm = g->gm;
    const dsi_backend_i *b = g->b;
    int key = gm->moe_index[l] * gm->n_experts + x;
    *slot = -1;
    if (gm->all_resident) {
        if (gm->slot_of[key] < 0) return dsi_fail(e, DS_ERR_INTERNAL, "cuda: layer %d expert %d is not in the file", l, x);
        *dev = gm->slots + (size_t)gm->slot_of[key] * gm->slot_bytes;
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
    ds_status st = dsi_cu_stage_upload(g->m, gm, l, x, dst, gm->free_ev[v], e);
    gm->st.wait_seconds += dsi_now_seconds() - t0;
    if (st) return st;
    DSI_CK(b->event_record(gm->ready_ev[v], gm->copy_stream, M));
    DSI_CK(b->stream_wait(g->stream, gm->ready_ev[v], M));
    gm->slot_of[key] = v;
    gm->key_of[v] = key;
    gm->last_use[v] = gm->tick;
    *dev = dst;
    *slot = v;
    return DS_OK;
}

static ds_status dsi_cu_moe(void *dc, int l, const dsi_layer *L, const dsi_moe_plan *plan, const float *X, float *Y,
                            dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    const ds_model *m = g->m;
    dsi_cuda_model *gm = g->gm;
    const dsi_backend_i *b = g->b;
    int D = m->cfg.hidden_size, E = m->cfg.n_routed_experts, T = plan->T;
    size_t tk = (size_t)T * (size_t)plan->K;
    ds_status s;
    memcpy(g->h_idx, plan->idx, tk * sizeof(int));
    memcpy(g->h_wts, plan->wts, tk * sizeof(float));
    DSI_CK(b->upload(g->idx, g->h_idx, tk * sizeof(int), g->stream, M));
    DSI_CK(b->upload(g->wts, g->h_wts, tk * sizeof(float), g->stream, M));
    DSI_CK(b->memset(Y, 0, (size_t)T * (size_t)D * sizeof(float), g->stream, M));
    /* experts not on the device: the host cache decrypts the later ones
     * while this thread stages the first */
    if (m->pager && !gm->all_resident) {
        int miss[256], nm = 0;
        for (int u = 0; u < plan->n_used && nm < 256; u++)
            if (gm->slot_of[gm->moe_index[l] * E + plan->used[u]] < 0) miss[nm++] = plan->used[u];
        if (nm > 1) dsi_pager_prefetch(m->pager, l, miss + 1, nm - 1, false);
    }
    for (int u = 0; u < plan->n_used; u++) {
        int x = plan->used[u], n = plan->cnt[x];
        const uint8_t *base = NULL;
        int slot = -1;
        if ((s = dsi_cu_expert(g, l, x, &base, &slot, e))) return s;
        const dsi_expert_ref *ref = &L->experts[x];
        const int *idx = g->idx + plan->off[x];
        const float *w = g->wts + plan->off[x];
        DSI_CK(b->gather_rows(g->xe, X, idx, n, D, g->stream, M));
        int nd = 0;
        const int *hidx = plan->idx + plan->off[x];
        if (plan->lora && (s = dsi_cu_lora_parts(g, l, x, plan, hidx, n, &nd, e))) return s;
        if (nd) {
            /* adapted (the CPU's dsi_moe_adapted): gate and up, their
             * adapters, SiLU(gate) * up, down and its adapters */
            int I = L->exp_gate.rows;
            if ((s = dsi_cu_mm(g, &L->exp_gate, base + ref->off[0], g->xe, n, D, g->g, I, e)) ||
                (s = dsi_cu_mm(g, &L->exp_up, base + ref->off[1], g->xe, n, D, g->u, I, e)) ||
                (s = dsi_cu_lora_expert(g, l, x, 0, plan, hidx, n, nd, g->xe, D, g->g, I, e)) ||
                (s = dsi_cu_lora_expert(g, l, x, 1, plan, hidx, n, nd, g->xe, D, g->u, I, e)))
                return s;
            DSI_CK(b->silu_mul(g->g, g->u, (size_t)n * (size_t)I, g->stream, M));
            if ((s = dsi_cu_mm(g, &L->exp_down, base + ref->off[2], g->g, n, I, g->ye, D, e)) ||
                (s = dsi_cu_lora_expert(g, l, x, 2, plan, hidx, n, nd, g->g, I, g->ye, D, e)))
                return s;
        } else if ((s = dsi_cu_mlp3(g, &L->exp_gate, &L->exp_up, &L->exp_down, base + ref->off[0], base + ref->off[1],
                                    base + ref->off[2], g->xe, n, g->ye, e))) {
            return s;
        }
        DSI_CK(b->scatter_add(Y, g->ye, idx, w, n, D, g->stream, M));
        if (slot >= 0) DSI_CK(b->event_record(gm->free_ev[slot], g->stream, M));
    }
    return DS_OK;
}

static ds_status dsi_cu_head(void *dc, const dsi_weight *lm_head, const float *X, int n, float *out, dsi_err *e) {
    dsi_cuda_ctx *g = dc;
    int V = lm_head->rows;
    ds_status s = dsi_cu_mm(g, lm_head, NULL, X, n, lm_head->cols, g->logits, V, e);
    if (s) return s;
    DSI_CK(g->b->download(out, g->logits, (size_t)n * (size_t)V * sizeof(float), g->stream, M));
    return DS_OK;
}

/* ==== Adapters ============================================================ */
/* The device's copy of an adapter: every resident segment of its file
 * (the matrices of the adapted projections) uploaded once; the routed
 * experts' parts stay on the host (paged with the adapter's own expert
 * cache, or resident) and are uploaded for each use (dsi_cu_lora_parts):
 * they are small next to the expert they adapt, and an adapter of every
 * expert would not fit a VRAM budget made for the base. */
typedef struct dsi_cuda_adapter {
    void **dseg;                   /* per segment of the adapter's file, or NULL */
    size_t n_seg;
    dsi_lora_layer *layers;        /* a->layers with device addresses */
} dsi_cuda_adapter;

static void dsi_cu_adapter_free(const ds_model *m, ds_adapter *a, void *da);

static ds_status dsi_cu_adapter_new(const ds_model *m, ds_adapter *a, void **out, const dsi_lora_layer **layers,
                                    dsi_err *e) {
    dsi_cuda_model *gm = m->dev_model;
    const dsi_backend_i *b = gm->b;
    const dsi_meta *mt = &a->f.meta;
    int L = m->cfg.n_layers;
    dsi_cuda_adapter *da = dsi_calloc(&m->al, 1, sizeof *da);
    if (!da) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    da->n_seg = mt->n_segments;
    da->dseg = dsi_calloc(&m->al, mt->n_segments ? mt->n_segments : 1, sizeof(void *));
    da->layers = dsi_calloc(&m->al, (size_t)L, sizeof *da->layers);
    if (!da->dseg || !da->layers) {
        dsi_cu_adapter_free(m, a, da);
        return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    }
    char msg[DSI_CU_MSG] = "";
    ds_status s = DS_OK;
    /* one user of the device at a time: the uploads use the default stream */
    pthread_mutex_lock(&gm->lock);
    s = b->init(gm->device, msg, sizeof msg);
    for (size_t i = 0; !s && i < mt->n_segments; i++) {
        if (mt->segments[i].kind == DS_SEGMENT_EXPERT || !a->f.dense || !a->f.dense[i].ptr) continue;
        size_t bytes = (size_t)mt->segments[i].plain_bytes;
        if (!(s = b->alloc(&da->dseg[i], bytes, msg, sizeof msg)))
            s = b->upload(da->dseg[i], a->f.dense[i].ptr, bytes, NULL, msg, sizeof msg);
    }
    if (!s) s = b->sync(NULL, msg, sizeof msg);
    pthread_mutex_unlock(&gm->lock);
    if (s) {
        dsi_cu_adapter_free(m, a, da);
        return dsi_fail(e, s, "cuda: the adapter's matrices: %s", msg);
    }
    /* the layers, with device addresses (routed experts' shapes and
     * offsets as the host's: their parts are uploaded when used) */
    for (int l = 0; l < L; l++) {
        da->layers[l] = a->layers[l];
        for (int k = 0; k < DSI_LM_N; k++) {
            dsi_weight *ws[2] = {&da->layers[l].m[k].a, &da->layers[l].m[k].b};
            for (int j = 0; j < 2; j++) {
                dsi_weight *w = ws[j];
                if (!w->data) continue;
                const uint8_t *dev = NULL;
                for (size_t i = 0; i < mt->n_segments && !dev; i++) {
                    const uint8_t *base = a->f.dense ? a->f.dense[i].ptr : NULL;
                    if (base && da->dseg[i] && w->data >= base && w->data < base + mt->segments[i].plain_bytes)
                        dev = (const uint8_t *)da->dseg[i] + (w->data - base);
                }
                if (!dev) {
                    dsi_cu_adapter_free(m, a, da);
                    return dsi_fail(e, DS_ERR_INTERNAL, "cuda: layer %d %s: a matrix outside the adapter's segments",
                                    l, dsi_lora_module_name(k));
                }
                w->data = dev;
            }
        }
    }
    *out = da;
    *layers = da->layers;
    return DS_OK;
}

static void dsi_cu_adapter_free(const ds_model *m, ds_adapter *a, void *p) {
    dsi_cuda_adapter *da = p;
    if (!da) return;
    dsi_cuda_model *gm = m->dev_model;
    const dsi_backend_i *b = gm->b;
    char msg[DSI_CU_MSG];
    bool any = false;
    for (size_t i = 0; da->dseg && i < da->n_seg; i++) any |= da->dseg[i] != NULL;
    if (any) {
        /* plaintext weights: wiped before the memory goes back */
        pthread_mutex_lock(&gm->lock);
        if (b->init(gm->device, msg, sizeof msg) == DS_OK) {
            for (size_t i = 0; i < da->n_seg; i++)
                if (da->dseg[i])
                    (void)b->memset(da->dseg[i], 0, (size_t)a->f.meta.segments[i].plain_bytes, NULL, msg, sizeof msg);
            (void)b->sync(NULL, msg, sizeof msg);
        }
        for (size_t i = 0; i < da->n_seg; i++)
            if (da->dseg[i]) b->free(da->dseg[i]);
        pthread_mutex_unlock(&gm->lock);
    }
    dsi_free(&m->al, da->dseg);
    dsi_free(&m->al, da->layers);
    dsi_free(&m->al, da);
}

#undef M
#undef DSI_CK

static const dsi_device_i dsi_cu_table = {
    .version = DSI_DEVICE_VERSION,
    .name = "cuda",
    .model_new = dsi_cu_model_new,
    .model_free = dsi_cu_model_free,
    .weights = dsi_cu_weights,
    .cache_stats = dsi_cu_stats,
    .ctx_new = dsi_cu_ctx_new,
    .ctx_free = dsi_cu_ctx_free,
    .begin = dsi_cu_begin,
    .end = dsi_cu_end,
    .embed = dsi_cu_embed,
    .rmsnorm = dsi_cu_rmsnorm,
    .matmul = dsi_cu_matmul,
    .mlp = dsi_cu_mlp,
    .add = dsi_cu_add,
    .mla_attention = dsi_cu_mla_attention,
    .mha_attention = dsi_cu_mha_attention,
    .route = dsi_cu_route,
    .moe = dsi_cu_moe,
    .head = dsi_cu_head,
    .lora = dsi_cu_lora,
    .silu_mul = dsi_cu_silu_mul,
    .adapter_new = dsi_cu_adapter_new,
    .adapter_free = dsi_cu_adapter_free,
};

DSI_FUNC const dsi_device_i *dsi_cuda_device(void) { return &dsi_cu_table; }

#else /* no CUDA in this build */

DSI_FUNC ds_status dsi_cuda_probe(ds_model *m, const ds_model_params *p, dsi_err *e) {
    (void)e;
    m->device = DS_DEVICE_CPU;
    if (p->device != DS_DEVICE_CUDA) return DS_OK;   /* ds_model_open refused values outside the enum */
#if DSI_WINDOWS
    dsi_log(m->log, m->log_user, DS_LOG_WARN,
            "CUDA was asked for but the CUDA backend is not available on this platform (Windows); running on the "
            "CPU");
#else
    dsi_log(m->log, m->log_user, DS_LOG_WARN,
            "CUDA was asked for but this build has no CUDA support (built with DS_NO_CUDA, or the amalgamation "
            "without DS_CUDA_LOAD); running on the CPU");
#endif
    return DS_OK;
}
/* never chosen: dsi_cuda_probe above keeps every model on the CPU */
DSI_FUNC const dsi_device_i *dsi_cuda_device(void) { return NULL; }

#endif /* DSI_CU_ON */
