/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * engine.h — the engine layer (file.c, pager.c, cpu.c, cuda.c, model.c,
 * forward.c, generate.c): the opened model, the expert pager, and the
 * device table the one forward pass drives. Not installed; not part of the
 * API.
 */
#ifndef DS_ENGINE_H
#define DS_ENGINE_H

#include "format.h"

#include <sys/types.h>
#include <time.h>

/* ==== Model file (file.c) ================================================ */
/* The opened container as the layers above it see it. ds_model_open
 * (model.c) fills it in order: the file and its keys, the metadata and
 * directory, the dense segments, the bound weights, then the pager and the
 * device. */
typedef struct dsi_pager dsi_pager;
typedef struct dsi_device_i dsi_device_i;

/* Where a container's bytes come from. Every read of it goes through one
 * place (dsi_file_read in file.c), whatever the source. */
typedef enum dsi_source_kind {
    DSI_SOURCE_PATH = 0,          /* a path we opened: m->fd is ours */
    DSI_SOURCE_FD = 1,            /* the app's descriptor (ds_model_open_fd): m->fd is our duplicate
                                     of it, so the app's own is never closed */
    DSI_SOURCE_IO = 2             /* the app's read callback (ds_model_open_io): no descriptor; no
                                     change detection, page-cache hints or mincore probes */
} dsi_source_kind;

/* What an open is given. */
typedef struct dsi_source {
    dsi_source_kind kind;
    const char *name;             /* for messages: the path, "<fd 5>", "<io>" or ds_model_io.name */
    int fd;                       /* DSI_SOURCE_FD: the app's descriptor */
    const ds_model_io *io;        /* DSI_SOURCE_IO: the app's callbacks (copied at open) */
} dsi_source;

struct ds_model {
    dsi_alloc al;
    dsi_err err;                /* last failure on this handle */
    dsi_source_kind src;        /* where the bytes come from */
    int fd;                     /* DSI_SOURCE_PATH and _FD: the descriptor we own; -1 otherwise */
    ds_model_io io;             /* DSI_SOURCE_IO: the app's callbacks (name not kept here) */
    char *path;                 /* the source's name for messages: the path as given to ds_model_open,
                                   "<fd N>" (N the app's descriptor) or ds_model_io.name / "<io>" */
    /* Every byte of the file is read with preadv() (dsi_file_read), never
     * through a mapping: a file truncated under a running model is a short
     * read and an error, not SIGBUS. */
    void *probe_map;            /* MAP_SHARED view of the file for mincore() only (page-cache
                                   residency); never read through. NULL when it could not be made */
    uint64_t open_size;         /* the file's size and modification time at open: a read that */
    int64_t open_mtime_sec, open_mtime_nsec; /* fails after either changed says the file changed under the model */
    bool opened;                /* ds_model_open has returned: messages name the file */
    /* ds_model_params.mlock: the keys, the dense weights and the expert
     * cache locked into RAM (dsi_model_mlock) */
    bool mlock;
    uint64_t mlock_locked, mlock_failed;   /* bytes locked, bytes the OS refused */
    int mlock_errno;                        /* the first refusal's errno */
    /* ds_model_params.huge_pages: weight buffers of 2 MiB or more (the
     * resident segments, the expert cache) in transparent huge pages
     * (dsi_model_alloc) */
    bool huge_pages;
    uint64_t huge_advised, huge_refused;    /* bytes MADV_HUGEPAGE took, bytes it was refused for */
    int huge_errno;                         /* the first refusal's errno */
    dsi_header hdr;
    dsi_keys *keys;             /* in `keybuf` */
    dsi_secure_buf keybuf;
    dsi_meta meta;
    dsi_tensor **sorted;        /* tensors sorted by name, for lookups */
    ds_model_config cfg;
    bool weights_loaded;
    dsi_secure_buf *dense;      /* one per dense segment (n_segments entries; unused for experts): views
                                   into dense_mem, never freed themselves */
    dsi_secure_buf dense_mem;   /* every resident segment's plaintext, page-aligned pieces of one mapping
                                   (so its huge pages run across segment boundaries) */
    int n_threads;
    bool exact_act;             /* Q8_0 weights meet F32 activations (ds_model_params.exact_activations) */
    uint64_t expert_cache_bytes;
    /* The model runs within a memory budget (an expert cache, or every
     * routed expert in VRAM): ciphertext read at open (metadata, dense
     * segments, experts staged to the device) leaves the page cache as each
     * window of it is opened (dsi_file_drop_read in file.c), unless it was in memory
     * before the read (tmpfs, or a file another reader keeps cached). The
     * pager drops expert ciphertext itself (its page-cache tier). */
    bool drop_read;
    ds_log_fn log;
    void *log_user;
    int n_contexts;             /* live contexts; close refuses while > 0 (atomic) */
    int n_adapters;             /* open adapters over this model; close refuses while > 0 (atomic) */
    ds_tokenizer *tok;          /* built from the metadata at open */
    dsi_pager *pager;           /* NULL: routed experts are resident */
    ds_device device;           /* where the forward pass runs */
    const dsi_device_i *dev;    /* its table (CPU or CUDA), chosen once at open */
    void *dev_model;            /* the device's per-model state (device weights, caches), or NULL */
    char device_name[128];
    dsi_weights w;              /* bound weights (load_weights only), host addresses */
    dsi_expert_drop drop;       /* the routed experts dropped at conversion (DSI_REC_EXPERTS) */
    bool has_drop;              /* the file has that record */
};

/* The view of m's directory the lower layers take. */
DSI_INLINE dsi_model_file dsi_model_file_of(const ds_model *m) {
    dsi_model_file f = {&m->meta, (dsi_tensor *const *)m->sorted, m->dense, m->has_drop ? &m->drop : NULL};
    return f;
}
/* Opens the container src names into m (allocator, log and threads already
 * set): header, mapping, keys, metadata, config, tokenizer, directory
 * checks. */
DSI_FUNC ds_status dsi_file_open(ds_model *m, const dsi_source *src, const ds_model_params *p, dsi_err *e);
/* Decrypts every dense segment (and the routed experts too when experts_too)
 * into secure buffers and binds the weights (m->w); p->progress is told of
 * each segment and may cancel (DS_ERR_CANCELLED). */
DSI_FUNC ds_status dsi_file_load_dense(ds_model *m, bool experts_too, const ds_model_params *p, dsi_err *e);
/* Opens an adapter container at path into f (allocator, log set; n_threads
 * 1): header (DSI_ADAPTER_MAGIC, else DS_ERR_NOT_ADAPTER), keys, metadata
 * and the config record; no tokenizer. lora.c reads the rest. */
DSI_FUNC ds_status dsi_file_open_adapter(ds_model *f, const char *path, const ds_adapter_params *p, dsi_err *e);
/* Undoes dsi_file_open and dsi_file_load_dense (not the pager or device). */
DSI_FUNC void dsi_file_close(ds_model *m);
/* Decrypts and authenticates one segment into dst (at least plain_bytes).
 * Messages name the segment. Thread-safe. */
DSI_FUNC ds_status dsi_segment_read(const ds_model *m, uint32_t seg, uint8_t *dst, size_t dst_len, dsi_err *e);
/* Opens chunks [c0, c1) of a segment into their places in dst (a buffer for
 * the whole segment); the caller wipes dst on failure. Thread-safe: threads
 * may open different chunks of one segment at once. */
DSI_FUNC ds_status dsi_segment_read_chunks(const ds_model *m, uint32_t seg, uint8_t *dst, uint32_t c0, uint32_t c1,
                                           dsi_err *e);
/* Decrypts routed expert (layer, expert) into a caller buffer; the pager of
 * the expert cache builds on this. Returns the segment index in *seg. */
DSI_FUNC ds_status dsi_model_read_expert(const ds_model *m, int layer, int expert, uint8_t *dst, size_t dst_len,
                                         uint32_t *seg, dsi_err *e);
/* Index of the segment of (kind, layer, expert), or -1. */
DSI_FUNC long dsi_model_find_segment(const ds_model *m, uint32_t kind, int layer, int expert);
/* Pointer to a resident dense tensor's bytes, or NULL. */
DSI_FUNC const uint8_t *dsi_model_tensor_data(const ds_model *m, size_t index);
/* "layer 3 expert 17", "embeddings", "layer 2 dense", "output" (layer == n_layers). */
DSI_FUNC void dsi_segment_describe(const dsi_segment *s, int n_layers, char *buf, size_t len);
/* Asks the OS for [off, off + len) of the file ahead of reading it. */
DSI_FUNC void dsi_file_willneed(const ds_model *m, uint64_t off, uint64_t len);
/* Whether [off, off + len) of the file is in memory already (page cache,
 * tmpfs). Always false for a DSI_SOURCE_IO model. */
DSI_FUNC bool dsi_file_in_memory(const ds_model *m, uint64_t off, uint64_t len);
/* [off, off + len) of the file is not needed any more: drops it from the page
 * cache (posix_fadvise DONTNEED), or tells a DSI_SOURCE_IO model's release
 * callback. Thread-safe. */
DSI_FUNC void dsi_file_release(const ds_model *m, uint64_t off, uint64_t len);
/* What a resident segment takes in memory once loaded: its plaintext in
 * whole pages of this machine (at least one), as dsi_file_load_dense holds
 * it; the memory plan counts the same. */
DSI_FUNC uint64_t dsi_segment_held_bytes(const dsi_segment *s);
/* Test hook (NULL in use): every read of a model file through a descriptor
 * (DSI_SOURCE_PATH, DSI_SOURCE_FD) goes through it instead of preadv(2),
 * with the same arguments and contract (bytes read, 0 at the end of the
 * file, -1 with errno), so a test can fail a read at a chosen offset (EIO)
 * or cut it short. */
DSI_DATA_DECL ssize_t (*dsi_file_read_hook)(int fd, const struct iovec *iov, int iovcnt, dsi_off_t off);
/* With ds_model_params.mlock: locks b into RAM (mlock), counting the bytes
 * locked or refused in m (a refusal is not an error; ds_model_open reports
 * it). Without it, does nothing. Not thread-safe: called while opening. */
DSI_FUNC void dsi_model_mlock(ds_model *m, dsi_secure_buf *b);
/* A secure buffer for weights (dsi_secure_alloc): in transparent huge pages
 * when ds_model_params.huge_pages asks (counting in m what the kernel took or
 * refused: a refusal is not an error), then locked as dsi_model_mlock says.
 * Not thread-safe: called while opening. */
DSI_FUNC ds_status dsi_model_alloc(ds_model *m, dsi_secure_buf *b, size_t size, dsi_err *e);

/* ==== Expert pager (pager.c) ============================================ */
/* After the weights are bound and m->device is decided (DS_PREFETCH_AUTO
 * fetches ahead on CUDA, whose CPUs are free to decrypt). */
DSI_FUNC ds_status dsi_pager_new(ds_model *m, uint64_t budget, uint64_t page_cache, ds_prefetch_mode prefetch,
                                 ds_evict_policy policy, dsi_err *e);
DSI_FUNC void dsi_pager_free(ds_model *m);
DSI_FUNC ds_status dsi_pager_acquire(dsi_pager *p, int layer, int expert, const uint8_t **base, dsi_err *e);
DSI_FUNC void dsi_pager_release(dsi_pager *p, int layer, int expert);
/* Where (layer, expert) is: 0 ready in the cache, 1 not there (nor being
 * decrypted), 2 being decrypted. A hint: it may change at once. */
DSI_FUNC int dsi_pager_peek(dsi_pager *p, int layer, int expert);
/* Test hook (NULL in use): called after each chunk a thread decrypts, with
 * the chunk's index and the count of threads that joined the fill. */
DSI_DATA_DECL void (*dsi_pager_fill_hook)(uint32_t chunk, const int *joined);
/* Whether (layer, expert) is being decrypted with chunks left to take (tests). */
DSI_FUNC bool dsi_pager_filling(dsi_pager *p, int layer, int expert);
/* Queues experts for decryption ahead of use. prediction: a guess for a later
 * layer, best first (counted for the accuracy statistics); of its experts
 * not cached, only those whose rank has been right often enough so far
 * (DSI_GUESS_MIN_ACCURACY, scored by dsi_pager_routed) are queued. Under
 * DS_PREFETCH_AUTO with no CPU to spare, an expert whose ciphertext is in
 * memory is not queued (a miss decrypts it on every compute thread). */
DSI_FUNC void dsi_pager_prefetch(dsi_pager *p, int layer, const int *experts, int n, bool prediction);
/* The layer's real choice: guesses for it that it did not choose count as
 * wrong now (the prediction accuracy is per forward pass); with the guess
 * made for this pass (best first, n_guess of them), each rank's record. */
DSI_FUNC void dsi_pager_routed(dsi_pager *p, int layer, const int *experts, int n, const int *guess, int n_guess);
/* The host cache's statistics into out (zeroes without a pager); reset
 * zeroes the counters (budget and slots stay). */
DSI_FUNC void dsi_pager_stats(const ds_model *m, ds_cache_stats *out, bool reset);
/* The expert cache's slots (one buffer), or NULL without a pager. */
DSI_FUNC const dsi_secure_buf *dsi_pager_mem(const dsi_pager *p);
/* Pointer to the plaintext of routed expert (layer, e): from the expert
 * cache (decrypting it on a miss) or resident; release when done with it. */
DSI_FUNC ds_status dsi_expert_acquire(const ds_model *m, int layer, int e, const uint8_t **base, dsi_err *e_out);
DSI_FUNC void dsi_expert_release(const ds_model *m, int layer, int e);

/* ==== LoRA adapters (lora.c) ============================================ */
#define DSI_LORA_MAX_RANK 1024      /* r of an adapter (attention keeps r floats per task on the stack) */
/* One adapted projection: y += s * B (A x). a (r, in) and b (out, r), F32 or
 * F16; a.data NULL: the module is not adapted. For routed experts the
 * matrices keep only shapes and offsets (data NULL) until acquired. */
typedef struct dsi_lora_ab {
    dsi_weight a, b;
} dsi_lora_ab;


/* Where one routed expert's adapter lives in the adapter file: its segment
 * and the offsets of gate A, gate B, up A, up B, down A, down B in it
 * (UINT64_MAX: that module is not adapted). */
typedef struct dsi_lora_expert {
    int32_t segment;               /* -1: this expert is not adapted */
    uint64_t off[6];
} dsi_lora_expert;

typedef struct dsi_lora_layer {
    dsi_lora_ab m[DSI_LM_N];       /* resident (or, on a device, device) matrices */
    dsi_lora_ab exp[3];            /* routed experts' gate, up, down: shapes only (a.rows = 0: none) */
    dsi_lora_expert *experts;      /* n_routed entries, or NULL when no routed expert is adapted */
} dsi_lora_layer;

struct ds_adapter {
    ds_model *base;
    ds_model f;                    /* the adapter's file as a container: keys, metadata, resident
                                      segments (f.dense), f.w.layers[l].experts for the pager,
                                      f.pager when the base pages its experts */
    int rank;
    float alpha, scale;            /* scale = alpha / r or alpha / sqrt(r) */
    bool rslora;
    ds_dtype dtype;
    char targets[256];
    uint64_t n_params, bytes;
    uint8_t base_id[32];
    dsi_lora_layer *layers;        /* n_layers, host addresses */
    const dsi_lora_layer *dev_layers;   /* as the base's device addresses them (the host's on the CPU) */
    void *dev_adapter;             /* the device's state for it (dsi_device_i.adapter_new) */
    int n_users;                   /* sequences that list it (atomic); close refuses while > 0 */
};

/* Routed expert x of layer l of adapter a: its segment's plaintext (paged
 * with the adapter's expert cache or resident); release when done. *base
 * NULL (and DS_OK) when that expert is not adapted. (Inline: the devices,
 * below lora.c, call it; it calls only the pager, below them.) */
DSI_INLINE ds_status dsi_lora_expert_acquire(const ds_adapter *a, int l, int x, const uint8_t **base, dsi_err *e) {
    const dsi_lora_layer *ll = &a->layers[l];
    *base = NULL;
    if (!ll->experts || ll->experts[x].segment < 0) return DS_OK;
    return dsi_expert_acquire(&a->f, l, x, base, e);
}
DSI_INLINE void dsi_lora_expert_release(const ds_adapter *a, int l, int x) {
    const dsi_lora_layer *ll = &a->layers[l];
    if (ll->experts && ll->experts[x].segment >= 0) dsi_expert_release(&a->f, l, x);
}

/* An adapter as a sequence applies it: s = the adapter's scale times the
 * caller's multiplier. */
typedef struct dsi_lora_use {
    const ds_adapter *a;
    float s;
} dsi_lora_use;
typedef struct dsi_lora_list {
    int n;
    dsi_lora_use use[DS_MAX_ADAPTERS];
} dsi_lora_list;

/* ==== Contexts (forward.c) ============================================== */
/* Whether c's abort callback asks to stop now (false without one). */
DSI_FUNC bool dsi_context_aborted(const ds_context *c);
/* A run of a pass over several sequences (ds_context_eval_batch, the
 * generators' step): n tokens appended to sequence seq; logits (vocab
 * floats, host) of the last of them, or NULL. */
typedef struct dsi_seq_run {
    ds_context *seq;
    const int32_t *tok;
    int n;
    float *logits;
} dsi_seq_run;
DSI_FUNC ds_status dsi_context_eval_runs(const dsi_seq_run *r, int m, const char *fn, dsi_err *e);

/* ==== Devices: what the forward pass needs of a CPU or a GPU ============= */
/*
 * The forward pass (forward.c) is written once, over this table; the CPU
 * (cpu.c) and CUDA (cuda.c) fill it. The driver owns the order of
 * operations: norms, projections, attention per run of one sequence, the
 * router, the grouping of tokens per expert, the shared experts, the
 * residuals and the head. A device owns its memory (weights, KV caches,
 * activations), its kernels and how it gets routed experts.
 *
 * Buffers named in the calls are the device's memory (dsi_act, from
 * ctx_new); arrays documented as host are ordinary memory. Every call that
 * can fail returns a status with the message in e. Calls on one device
 * context come from one thread at a time (a context's).
 */
#define DSI_DEVICE_VERSION 2
#define DSI_MAX_BATCH 256           /* tokens per forward chunk (scratch bound) */
#define DSI_MLA_EXPAND_MAX 1024     /* positions a batch may expand (scratch bound) */
#define DSI_MLA_EXPAND_BYTES (8u << 20)   /* expanded K/V scratch per context (cpu.c; the memory plan) */

/* A batch of tokens that may belong to several sequences, each with its own
 * positions and KV cache. The driver splits it into runs for attention. */
typedef struct dsi_batch {
    int n;
    const int32_t *tok;            /* host (n) */
    const int32_t *pos;            /* host (n): position of each token in its sequence */
    const int32_t *seq;            /* host (n): its sequence, in [0, n_seq) of the context */
} dsi_batch;

/* Tokens [t0, t0 + n) of a batch: one sequence at positions pos0, pos0 + 1, ... */
typedef struct dsi_run {
    int t0, n, seq, pos0;
    const dsi_lora_list *lora;     /* the sequence's adapters (kv_b_proj is adapted inside attention), or NULL */
} dsi_run;

/* The shape a device context is made for. */
typedef struct dsi_ctx_shape {
    int n_ctx;                     /* positions per sequence */
    int n_seq;                     /* sequences (KV caches) */
    int max_batch;                 /* tokens per forward call */
    int n_threads;
    const float *inv_freq;         /* host (rope_dim / 2): rotary frequencies (YaRN applied) */
    int rope_dim;
    float rope_mscale;             /* YaRN's cos/sin factor */
    float attn_scale;              /* softmax scale, YaRN mscale^2 included */
    /* widths in floats per token, the same on every device */
    int head_dim;                  /* a query/key head: nope + rope (MLA) or head_dim */
    int kv_a_dim, kv_b_dim;        /* cached: MLA latent and rope key; MHA K and V */
    int q_dim;                     /* max(n_heads * head_dim, q_lora_rank) */
    int qa_dim;                    /* q_lora_rank (at least 1) */
    int kva_dim;                   /* the kv_a output (MLA) or a token's K and V rows (MHA) */
    int att_dim;                   /* the attention output */
    int ffn_dim;                   /* the widest MLP: a dense one, or the shared experts together */
} dsi_ctx_shape;

/* A device context's activations, each for max_batch tokens, row-major. */
typedef struct dsi_act {
    float *x;                      /* (T, D) the residual stream */
    float *xn;                     /* (T, D) its normalised copy */
    float *q;                      /* (T, max(H * qk, q_lora_rank)) */
    float *qa;                     /* (T, q_lora_rank) */
    float *kva;                    /* (T, kv_a width) MLA: latent + rope key; MHA: K rows then V rows */
    float *att;                    /* (T, H * v) attention output */
    float *tmp;                    /* (T, D) a block's output before the residual */
    float *router;                 /* (T, E) router logits */
    float *ye;                     /* (T, D) the shared experts' output */
    float *g, *u;                  /* (T, ffn_dim) an MLP's gate and up outputs, when the driver runs
                                      it in steps (an adapted MLP) */
} dsi_act;

/* The MoE work of one layer, grouped by the driver: for every expert with
 * tokens, in ascending expert order, the tokens and their weights; the
 * devices add each token's experts in that order (results bit-identical
 * across batch sizes and paths). */
typedef struct dsi_moe_plan {
    int T, K;
    const int *sel;                /* host (T, K): the router's choice, best first */
    const float *selw;             /* host (T, K): its weights */
    int n_used;
    const int *used;               /* host (n_used): the experts with tokens, ascending */
    const int *off, *cnt;          /* host (E): expert x's entries are [off[x], off[x] + cnt[x]) */
    const int *idx;                /* host (T * K): the token of each entry */
    const float *wts;              /* host (T * K): its weight */
    /* host (T): each token's adapters whose routed experts of this layer are
     * adapted (NULL entries: none); NULL when no token has any */
    const dsi_lora_list *const *lora;
} dsi_moe_plan;

struct dsi_device_i {
    int version;                   /* DSI_DEVICE_VERSION */
    const char *name;              /* "cpu", "cuda" */
    /* per model: after the weights are bound (and the pager made) */
    ds_status (*model_new)(ds_model *m, const ds_model_params *p, void **dm, dsi_err *e);
    void (*model_free)(ds_model *m, void *dm);
    /* the weights as this device addresses them (host for the CPU) */
    const dsi_weights *(*weights)(const ds_model *m);
    /* the device's own expert cache statistics (zeroed when it has none) */
    void (*cache_stats)(const ds_model *m, ds_cache_stats *out, bool reset);
    /* per context */
    ds_status (*ctx_new)(const ds_model *m, const dsi_ctx_shape *sh, void **dc, dsi_act *act, dsi_err *e);
    void (*ctx_free)(const ds_model *m, void *dc);
    /* around one forward call: begin may take a lock; end waits for the
     * queued work (status s: a failure so far, after which it only leaves
     * the device idle) */
    ds_status (*begin)(void *dc, dsi_err *e);
    ds_status (*end)(void *dc, ds_status s, dsi_err *e);
    /* x rows = the embedding rows of tok (host, T ids) */
    ds_status (*embed)(void *dc, const dsi_weight *table, const int32_t *tok, int T, float *x, dsi_err *e);
    /* rows of out = rmsnorm(rows of x) * w (n = w->cols values; out == x allowed) */
    ds_status (*rmsnorm)(void *dc, float *out, int ldo, const float *x, int ldx, const dsi_weight *w, int rows,
                         float eps, dsi_err *e);
    /* Y (T, w->rows) = X (T, w->cols) W^T */
    ds_status (*matmul)(void *dc, const dsi_weight *w, const float *X, int T, int ldx, float *Y, int ldy,
                        dsi_err *e);
    /* Y (T, D) = down(silu(gate X) * up X) */
    ds_status (*mlp)(void *dc, const dsi_weight *gate, const dsi_weight *up, const dsi_weight *down, const float *X,
                     int T, float *Y, dsi_err *e);
    /* y += x over n floats */
    ds_status (*add)(void *dc, float *y, const float *x, size_t n, dsi_err *e);
    /* MLA for one run: rows [r->t0, r->t0 + r->n) of kva (the kv_a output)
     * enter sequence r->seq's cache of layer l (normalised latent, roped
     * key), then those rows of q attend over positions [0, pos0 + t] into
     * the same rows of att */
    ds_status (*mla_attention)(void *dc, int l, const dsi_layer *L, const dsi_run *r, float eps, dsi_err *e);
    /* multi-head attention for one run: q and the K, V rows in kva (K of the
     * batch's T tokens, then their V) are roped, stored and attended */
    ds_status (*mha_attention)(void *dc, int l, const dsi_layer *L, const dsi_run *r, int T, dsi_err *e);
    /* routing of T tokens from the router logits into host sel/selw (T, K) */
    ds_status (*route)(void *dc, const dsi_layer *L, const float *logits, int T, int *sel, float *selw,
                       dsi_err *e);
    /* Y (T, D) = the routed experts of layer l applied to X as planned */
    ds_status (*moe)(void *dc, int l, const dsi_layer *L, const dsi_moe_plan *plan, const float *X, float *Y,
                     dsi_err *e);
    /* out (host, n rows of the vocabulary) = X (n, D) times the LM head */
    ds_status (*head)(void *dc, const dsi_weight *lm_head, const float *X, int n, float *out, dsi_err *e);
    /* LoRA: rows of Y (T, ab->b.rows) += s * B (A X) for the T rows of X
     * (T, ab->a.cols); ab as the device addresses it (dev_layers) */
    ds_status (*lora)(void *dc, const dsi_lora_ab *ab, float s, const float *X, int ldx, float *Y, int ldy, int T,
                      dsi_err *e);
    /* g = silu(g) * u over n floats (an MLP run in steps) */
    ds_status (*silu_mul)(void *dc, float *g, const float *u, size_t n, dsi_err *e);
    /* per adapter, after ds_adapter_open has loaded it: the device's copy
     * (*layers: the adapter's layers as the device addresses them; the CPU
     * gives a->layers) and its release */
    ds_status (*adapter_new)(const ds_model *m, ds_adapter *a, void **da, const dsi_lora_layer **layers,
                             dsi_err *e);
    void (*adapter_free)(const ds_model *m, ds_adapter *a, void *da);
};

/* The CPU device (cpu.c), and the name of the kernel set its contexts
 * choose on this CPU ("avx512-vnni", "avx2", "portable"). */
DSI_FUNC const dsi_device_i *dsi_cpu_device(void);
DSI_FUNC const char *dsi_cpu_kernels_name(void);
/* Routing for one token: router logits (E) -> n_experts_per_tok experts and
 * their weights. scratch holds 3 * E floats. A logit of -inf marks an
 * expert dropped at conversion: never chosen, its group scored without it.
 * (cpu.c; also the reference of the CUDA route kernel's tests) */
DSI_FUNC void dsi_route(const ds_model_config *cf, const float *logits, const float *bias, float *scratch, int *sel,
                        float *w);

/* dsi_route for a layer whose router lost the rows of dropped experts:
 * logits and bias (n_kept values, row i for expert kept[i]) spread over the
 * n_routed experts with -inf logits for the others; kept NULL: dsi_route.
 * scratch holds 5 * E floats. */
DSI_FUNC void dsi_route_kept(const ds_model_config *cf, const float *logits, const float *bias, const int32_t *kept,
                             int n_kept, float *scratch, int *sel, float *w);

/* The CUDA device (cuda.c). Before the weights load, decides whether the
 * model runs on CUDA: no device (or no CUDA in this build) leaves it on the
 * CPU with a DS_LOG_WARN notice and DS_OK; a bad gpu_index is an error. */
DSI_FUNC ds_status dsi_cuda_probe(ds_model *m, const ds_model_params *p, dsi_err *e);
/* Its table (only used once dsi_cuda_probe chose CUDA). */
DSI_FUNC const dsi_device_i *dsi_cuda_device(void);

#endif /* DS_ENGINE_H */
