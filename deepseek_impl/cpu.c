/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * cpu.c — the CPU device (dsi_device_i): contexts with their KV caches and
 * scratch, matrix products on the thread pool through the kernel table
 * chosen for this CPU, MLA attention (the cache holds the normalised
 * compressed latent and the roped key per token; decode works in the
 * absorbed form, a batch expands the latents of its window into per-head K
 * and V with one matrix product, see dsi_mla_expanded), multi-head attention
 * for DeepSeek-MoE, routing with every variant, and the routed experts as
 * the driver (forward.c) planned them.
 *
 * Shapes (per token): hidden D; heads H; MLA: q/k head = nope dn + rope dr,
 * value dv, latent R (kv_lora_rank), q-LoRA Rq; MHA: head dim hd.
 * A batch of T tokens runs each matrix as a matrix-matrix product (rows are
 * dequantized once per batch); MoE tokens are grouped per expert.
 */
#include "engine.h"
#include "../kernels/cpu/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* OpenBLAS (DS_USE_OPENBLAS, make BLAS=1): batches with F32 activations go
 * through cblas_sgemm (DSI_BLAS_MIN_T, dsi_mm_blas). */
#if defined(DS_USE_OPENBLAS) && DS_USE_OPENBLAS
#define DSI_BLAS 1
#include <cblas.h>
/* OpenBLAS's cblas.h brings <complex.h>, whose I would clash with our names */
#undef I
/* OpenBLAS's own; declared here too, as a cblas.h of another BLAS lacks them */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
#else
#define DSI_BLAS 0
#endif

/* ==== Context ============================================================ */
typedef struct dsi_cpu_ctx {
    ds_model *m;
    int n_ctx, n_seq;
    dsi_pool *pool;
    int n_workers;
    dsi_kernels k;                     /* the kernels, chosen once for this CPU (dsi_kernels_select) */
    /* KV caches, per sequence and layer: MLA latent (n_ctx, R) and rope key
     * (n_ctx, dr); MHA keys and values (n_ctx, Hkv * hd) */
    float *kv_a, *kv_b;
    size_t kv_a_stride, kv_b_stride;   /* floats per layer */
    int kv_a_dim, kv_b_dim;            /* floats per token */
    /* rotary tables */
    float *inv_freq;                   /* (rope_dim / 2) */
    int rope_dim;
    float rope_mscale;                 /* on cos/sin (YaRN) */
    float attn_scale;
    /* scratch for a batch of up to DSI_MAX_BATCH tokens; x..ye are the
     * driver's activations (dsi_act) */
    float *x, *xn, *q, *qa, *kva, *att, *tmp, *g, *u, *router, *xe, *ye;
    const int *sel;                    /* (T, topk) selected experts: the plan's, during dsi_cpu_moe */
    const float *selw;                 /* (T, topk) their weights */
    int *etok;                         /* tokens grouped per expert */
    int *guess;                        /* (layer, topk): the one-token guess made for each layer */
    int *n_guess;                      /* (layer): guesses held for it (0: none) */
    float *ework;                      /* per worker: max(cols) + attention scratch */
    size_t ework_stride;
    int8_t *xq;                        /* (T, widest) activations quantized for Q8_0 weights */
    float *xs;                         /* (T, widest / 32) their scales */
    int xq_cols;                       /* widest */
    float *kvx;                        /* expanded K/V of kvx_heads heads (MLA batches) */
    int kvx_heads;
    uint8_t *xp;                       /* the same in token-lane tiles (k.lane_pack) */
    float *xps;                        /* their scales in tiles */
    uint8_t *w8;                       /* per worker: DSI_W8_ROWS Q4_0 / pruned rows rewritten as Q8_0 (batches) */
    size_t w8_stride;
    float *wf;                         /* per worker: (DSI_BLAS_ROWS, DSI_BLAS_COLS) dequantized weights (BLAS=1) */
    /* LoRA scratch, made on first use (contexts without adapters pay nothing) */
    float *lt, *ly;                    /* (T, r) the A products; (T, out) the B products */
    size_t lt_cap, ly_cap;             /* floats */
} dsi_cpu_ctx;

/* A batch's Q4_0 and pruned (Q8_0_24, Q8_0_SP) rows go through the Q8_0
 * products this many at a time. */
#define DSI_W8_ROWS 16

/* OpenBLAS (BLAS=1): a product with F32 activations (F32 and F16 weights;
 * Q8_0 and Q4_0 ones where the activations stay F32: exact_activations, the
 * MLA batch expansion) of at least DSI_BLAS_MIN_T tokens (F32 weights:
 * DSI_BLAS_MIN_T_F32) multiplies chunks of up to DSI_BLAS_ROWS weight rows
 * and up to DSI_BLAS_COLS columns with cblas_sgemm: F32 weights straight
 * from the mapping, others dequantized into the worker's scratch (wf: 1 MiB
 * per worker). Decode and shorter batches keep our kernels: below 8 tokens
 * they and SGEMM trade places shape by shape on F16 weights, from 8 on SGEMM
 * is level or ahead on every shape (2x at 128); on F32 weights, which it
 * reads without our kernels' copy, it is ahead from 2 tokens on. Figures:
 * bench/results/openblas/README.md. */
#define DSI_BLAS_MIN_T 8
#define DSI_BLAS_MIN_T_F32 2
#define DSI_BLAS_ROWS 128
#define DSI_BLAS_COLS 2048
/* OpenBLAS (0.3.16 and later, AVX-512 kernels) multiplies a product of
 * M*N*K <= 1e6 directly, without packing its operands, and for ours (W
 * transposed) only while M*N <= 1200 as well: for a short batch that
 * measured well above its packed path, so a short batch's chunks are sized
 * to stay under both while that leaves at least DSI_BLAS_DIRECT_MIN rows. */
#define DSI_BLAS_DIRECT_MNK 1000000
#define DSI_BLAS_DIRECT_MN 1200
#define DSI_BLAS_DIRECT_MIN 12

/* Rotates in place. interleaved: pairs (2i, 2i+1) (DeepSeek-V2/V3: the
 * references permute to halves first, which leaves dot products between
 * equally treated q and k unchanged); otherwise pairs (i, i + d/2). */
static void dsi_rope(const dsi_cpu_ctx *c, float *x, int pos, bool interleaved) {
    int half = c->rope_dim / 2;
    for (int i = 0; i < half; i++) {
        float ang = (float)pos * c->inv_freq[i];
        float cs = cosf(ang) * c->rope_mscale, sn = sinf(ang) * c->rope_mscale;
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float xa = x[a], xb = x[b];
        x[a] = xa * cs - xb * sn;
        x[b] = xb * cs + xa * sn;
    }
}

static void dsi_cpu_ctx_free(const ds_model *m, void *dc) {
    dsi_cpu_ctx *c = dc;
    if (!c) return;
    const dsi_alloc *al = &m->al;
    dsi_pool_free(c->pool);
    float *bufs[] = {c->kv_a, c->kv_b, c->inv_freq, c->x, c->xn, c->q, c->qa, c->kva, c->att, c->tmp,
                     c->g, c->u, c->router, c->xe, c->ye, c->ework, c->kvx};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dsi_free(al, bufs[i]);
    dsi_free(al, c->etok);
    dsi_free(al, c->guess);
    dsi_free(al, c->n_guess);
    dsi_free(al, c->xq);
    dsi_free(al, c->xs);
    dsi_free(al, c->xp);
    dsi_free(al, c->xps);
    dsi_free(al, c->w8);
    dsi_free(al, c->wf);
    dsi_free(al, c->lt);
    dsi_free(al, c->ly);
    dsi_free(al, c);
}

static ds_status dsi_cpu_ctx_new(const ds_model *mc, const dsi_ctx_shape *sh, void **dc, dsi_act *act, dsi_err *e) {
    ds_model *m = (ds_model *)(uintptr_t)mc;   /* the pager and the weights are shared, not changed */
    const dsi_alloc *al = &m->al;
    const ds_model_config *cf = &m->cfg;
    *dc = NULL;
    dsi_cpu_ctx *c = dsi_calloc(al, 1, sizeof *c);
    if (!c) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for a context");
    c->m = m;
    dsi_kernels_select(&c->k, dsi_cpu_features());
    int n_ctx = sh->n_ctx;
    c->n_ctx = n_ctx;
    c->n_seq = sh->n_seq;
    int D = cf->hidden_size, H = cf->n_heads, Lr = cf->n_layers;
    bool mla = m->w.mla;
    int hd = sh->head_dim;
    c->rope_dim = sh->rope_dim;
    c->rope_mscale = sh->rope_mscale;
    c->attn_scale = sh->attn_scale;
    c->kv_a_dim = sh->kv_a_dim;
    c->kv_b_dim = sh->kv_b_dim;
    c->kv_a_stride = (size_t)n_ctx * (size_t)c->kv_a_dim;
    c->kv_b_stride = (size_t)n_ctx * (size_t)c->kv_b_dim;
    int T = sh->max_batch, E = cf->n_routed_experts, K = cf->n_experts_per_tok;
    int inter = sh->ffn_dim, att_dim = sh->att_dim;
    int widest = D;
    widest = widest > cf->kv_lora_rank ? widest : cf->kv_lora_rank;
    widest = widest > inter ? widest : inter;
    widest = widest > att_dim ? widest : att_dim;
    widest = widest > cf->q_lora_rank ? widest : cf->q_lora_rank;
    ds_status s = dsi_pool_new(&c->pool, sh->n_threads, al, e);
    if (s) {
        dsi_free(al, c);
        return s;
    }
    c->n_workers = dsi_pool_size(c->pool);
    /* per worker: a dequantized row, the latent query, the attention
     * weights over the context, the latent output, a rope scratch */
    c->ework_stride = (size_t)widest + (size_t)cf->kv_lora_rank + (size_t)n_ctx + (size_t)cf->kv_lora_rank +
                      2u * (size_t)hd + 5u * (size_t)E + 64;   /* routing: 5 * E (dsi_route_kept) */
    size_t T_ = (size_t)T, caches = (size_t)Lr * (size_t)sh->n_seq;
    c->kv_a = dsi_calloc(al, caches, c->kv_a_stride * sizeof(float));
    c->kv_b = dsi_calloc(al, caches, c->kv_b_stride * sizeof(float));
    c->inv_freq = dsi_calloc(al, (size_t)c->rope_dim / 2 + 1, sizeof(float));
    c->x = dsi_calloc(al, T_ * (size_t)D, sizeof(float));
    c->xn = dsi_calloc(al, T_ * (size_t)D, sizeof(float));
    c->q = dsi_calloc(al, T_ * (size_t)sh->q_dim, sizeof(float));
    c->qa = dsi_calloc(al, T_ * (size_t)sh->qa_dim, sizeof(float));
    c->kva = dsi_calloc(al, T_ * (size_t)sh->kva_dim, sizeof(float));
    c->att = dsi_calloc(al, T_ * (size_t)att_dim, sizeof(float));
    c->tmp = dsi_calloc(al, T_ * (size_t)D, sizeof(float));
    c->g = dsi_calloc(al, T_ * (size_t)inter, sizeof(float));
    c->u = dsi_calloc(al, T_ * (size_t)inter, sizeof(float));
    c->router = dsi_calloc(al, T_ * (size_t)(E > 0 ? E : 1), sizeof(float));
    c->xe = dsi_calloc(al, T_ * (size_t)D, sizeof(float));
    c->ye = dsi_calloc(al, T_ * (size_t)D, sizeof(float));
    c->etok = dsi_calloc(al, T_ * (size_t)(K > 0 ? K : 1), sizeof(int));
    c->guess = dsi_calloc(al, (size_t)cf->n_layers * (size_t)(K > 0 ? K : 1), sizeof(int));
    c->n_guess = dsi_calloc(al, (size_t)cf->n_layers, sizeof(int));
    c->ework = dsi_calloc(al, (size_t)c->n_workers, c->ework_stride * sizeof(float));
    c->xq_cols = widest;
    c->xq = dsi_calloc(al, T_ * (size_t)widest, 1);
    c->xs = dsi_calloc(al, T_ * ((size_t)widest / DSI_Q8_BLOCK + 1), sizeof(float));
    if (mla) {   /* heads per expansion pass: as many as fit the scratch */
        size_t per_head = (size_t)DSI_MLA_EXPAND_MAX * (size_t)(cf->qk_nope_head_dim + cf->v_head_dim) * sizeof(float);
        c->kvx_heads = (int)(DSI_MLA_EXPAND_BYTES / per_head);
        if (c->kvx_heads > H) c->kvx_heads = H;
        if (c->kvx_heads < 1) c->kvx_heads = 1;
        c->kvx = dsi_calloc(al, (size_t)c->kvx_heads, per_head);
    }
    c->w8_stride = DSI_W8_ROWS * ((size_t)widest / DSI_Q8_BLOCK) * DSI_Q8_BLOCK_BYTES;
    c->w8 = dsi_calloc(al, (size_t)c->n_workers, c->w8_stride);
#if DSI_BLAS
    /* OpenBLAS must run on the calling worker alone: its own threads under
     * every worker of ours would oversubscribe the CPUs (and calls from
     * several threads into a threaded OpenBLAS serialise). The count is the
     * process's: deepseek.h's build notes say what this does to a program
     * that uses OpenBLAS itself, and DS_OPENBLAS_KEEP_THREADS. */
#ifndef DS_OPENBLAS_KEEP_THREADS
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
#endif
    c->wf = dsi_calloc(al, (size_t)c->n_workers * DSI_BLAS_ROWS, (size_t)DSI_BLAS_COLS * sizeof(float));
    if (!c->wf) {
        dsi_fail(e, DS_ERR_NOMEM, "out of memory for the OpenBLAS scratch (%d workers x %.1f MB)", c->n_workers,
                 (double)DSI_BLAS_ROWS * DSI_BLAS_COLS * sizeof(float) / 1e6);
        dsi_cpu_ctx_free(m, c);
        return DS_ERR_NOMEM;
    }
#endif
    bool lanes = c->k.lane_split != NULL;   /* token-lane tiles */
    if (lanes) {
        c->xp = dsi_calloc(al, c->k.lane_pack_bytes(T, widest), 1);
        c->xps = dsi_calloc(al, c->k.lane_pack_floats(T, widest), sizeof(float));
    }
    if (!c->kv_a || !c->kv_b || !c->inv_freq || !c->x || !c->xn || !c->q || !c->qa || !c->kva || !c->att ||
        !c->tmp || !c->g || !c->u || !c->router || !c->xe || !c->ye || !c->etok || !c->guess || !c->n_guess ||
        !c->ework || !c->xq || !c->xs || !c->w8 || (lanes && (!c->xp || !c->xps)) || (mla && !c->kvx)) {
        dsi_fail(e, DS_ERR_NOMEM, "out of memory for a context of %d tokens (KV cache %.1f MB)", n_ctx,
                 (double)caches * (double)(c->kv_a_stride + c->kv_b_stride) * 4 / 1e6);
        dsi_cpu_ctx_free(m, c);
        return DS_ERR_NOMEM;
    }
    memcpy(c->inv_freq, sh->inv_freq, (size_t)(c->rope_dim / 2) * sizeof(float));
    *act = (dsi_act){c->x, c->xn, c->q, c->qa, c->kva, c->att, c->tmp, c->router, c->ye, c->g, c->u};
    *dc = c;
    return DS_OK;
}

/* ==== Matrix products ==================================================== */
typedef struct dsi_mm_job {
    const dsi_cpu_ctx *c;
    const dsi_weight *w;
    const uint8_t *base;     /* the weight's bytes */
    const float *X;          /* (T, ldx) */
    int T, ldx;
    float *Y;                /* (T, ldy) */
    int ldy;
    int rows_per_task;
    const int8_t *xq;        /* (T, cols) quantized X for Q8_0 weights, or NULL */
    const uint8_t *xu;       /* instead of xq, the same + 128, for the VNNI kernels */
    const float *xs;         /* (T, cols / 32) */
    int tl;                  /* tokens [0, tl) packed in the context's token-lane tiles */
    bool blas;               /* through cblas_sgemm (BLAS=1), in chunks of: */
    int blas_rows, blas_cols;   /* rows (a task's), columns (a call's) */
} dsi_mm_job;

/* One row of a blocked format other than Q8_0 (Q4_0, Q8_0_24, Q8_0_SP)
 * times one token's quantized activations, the fused kernel: offset to
 * unsigned (u, the VNNI set, Q4_0 only: dsi_quantize_rows gives the pruned
 * formats int8 activations for these products) or int8 (q). */
static float dsi_qx_dot(const dsi_kernels *k, ds_dtype dt, const uint8_t *row, const int8_t *q, const uint8_t *u,
                        const float *s, int cols) {
    switch (dt) {
    case DS_DTYPE_Q8_0_24: return k->dot_24q8(row, q, s, cols);
    case DS_DTYPE_Q8_0_SP: return k->dot_spq8(row, q, s, cols);
    default: return u ? k->dot_q4u8(row, u, s, cols) : k->dot_q4q8(row, q, s, cols);
    }
}

/* The int8 products of n Q8_0 rows (W, row stride rb) with the job's
 * quantized tokens into Y's columns 0..n-1 (Y = the job's Y advanced to the
 * first row): each row is read once and meets every token's activations
 * while it is in L1; tokens [0, tl) in the token-lane tiles, the rest row by
 * row. scratch: the worker's area. */
static void dsi_mm_int8_rows(const dsi_mm_job *j, const uint8_t *W, size_t rb, int n, float *Y, float *scratch) {
    const dsi_kernels *k = &j->c->k;
    int cols = j->w->cols, nb = cols / DSI_Q8_BLOCK;
    if (j->tl) k->lane_gemm(W, rb, n, cols, j->c->xp, j->c->xps, j->tl, Y, (size_t)j->ldy, scratch);
    for (int r = 0; r < n && j->tl < j->T; r++) {
        const uint8_t *rp = W + (size_t)r * rb;
        int t = j->tl;
        float o[4];
        if (j->xu) {   /* u8 activations: up to four tokens a call */
            for (; t < j->T; t += 4) {
                int m = j->T - t < 4 ? j->T - t : 4;
                k->dot_q8u8xT(rp, j->xu + (size_t)t * cols, (size_t)cols, j->xs + (size_t)t * nb, (size_t)nb, cols, m,
                              o);
                for (int i = 0; i < m; i++) Y[(size_t)(t + i) * j->ldy + r] = o[i];
            }
            continue;
        }
        if (k->dot_q8q8x4)
            for (; t + 4 <= j->T; t += 4) {
                k->dot_q8q8x4(rp, j->xq + (size_t)t * cols, (size_t)cols, j->xs + (size_t)t * nb, (size_t)nb, cols, o);
                for (int i = 0; i < 4; i++) Y[(size_t)(t + i) * j->ldy + r] = o[i];
            }
        for (; t < j->T; t++)
            Y[(size_t)t * j->ldy + r] = k->dot_q8q8(rp, j->xq + (size_t)t * cols, j->xs + (size_t)t * nb, cols);
    }
}

#if DSI_BLAS
/* Rows [r0, r1) of Y = X W^T with cblas_sgemm, in chunks of j->blas_rows
 * rows and j->blas_cols columns, the column chunks after the first added to
 * Y (beta 1): F32 weights as they lie, others dequantized into the worker's
 * scratch. The chunks depend on T and the shape only, so the results do not
 * depend on the number of threads. */
static void dsi_mm_blas(const dsi_mm_job *j, int r0, int r1, int worker) {
    const dsi_weight *w = j->w;
    const dsi_kernels *k = &j->c->k;
    int cols = w->cols, T = j->T;
    float *wf = j->c->wf + (size_t)worker * DSI_BLAS_ROWS * DSI_BLAS_COLS;
    for (int r = r0; r < r1; r += j->blas_rows) {
        int n = r1 - r < j->blas_rows ? r1 - r : j->blas_rows;
        const uint8_t *rows = j->base + (size_t)r * w->row_bytes;
        for (int k0 = 0; k0 < cols; k0 += j->blas_cols) {
            int kn = cols - k0 < j->blas_cols ? cols - k0 : j->blas_cols, ldb = kn;
            const float *B = wf;
            if (w->dtype == DS_DTYPE_F32) {
                B = (const float *)(const void *)rows + k0;
                ldb = (int)(w->row_bytes / sizeof(float));
            } else if (w->dtype == DS_DTYPE_Q8_0_SP) {
                /* a part of a masked row cannot be addressed: the whole row
                 * as Q8_0 (the worker's w8), then the part of that */
                uint8_t *w8 = j->c->w8 + (size_t)worker * j->c->w8_stride;
                size_t off = (size_t)(k0 / DSI_Q8_BLOCK) * DSI_Q8_BLOCK_BYTES;
                for (int i = 0; i < n; i++) {
                    k->to_q8[w->dtype](rows + (size_t)i * w->row_bytes, w8, cols);
                    k->dequant[DS_DTYPE_Q8_0](w8 + off, wf + (size_t)i * kn, kn);
                }
            } else {
                uint64_t off = 0;   /* k0 is a multiple of 32: whole blocks */
                (void)dsi_dtype_row_bytes(w->dtype, (uint64_t)k0, &off);
                for (int i = 0; i < n; i++)
                    k->dequant[w->dtype](rows + (size_t)i * w->row_bytes + off, wf + (size_t)i * kn, kn);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, kn, 1.0f, j->X + k0, j->ldx, B, ldb,
                        k0 ? 1.0f : 0.0f, j->Y + r, j->ldy);
        }
    }
}

/* A BLAS job's chunks (sets blas_rows and blas_cols): columns in equal
 * chunks of at most DSI_BLAS_COLS (multiples of 32); rows as many as stay
 * in OpenBLAS's direct path, else up to DSI_BLAS_ROWS in equal chunks
 * (multiples of 16). */
static void dsi_blas_chunks(dsi_mm_job *j) {
    int cols = j->w->cols, rows = j->w->rows;
    int nk = (cols + DSI_BLAS_COLS - 1) / DSI_BLAS_COLS;
    int kc = ((cols + nk - 1) / nk + 31) / 32 * 32;
    long long direct = DSI_BLAS_DIRECT_MNK / ((long long)j->T * kc);
    if (direct > DSI_BLAS_DIRECT_MN / j->T) direct = DSI_BLAS_DIRECT_MN / j->T;
    if (direct > DSI_BLAS_ROWS) direct = DSI_BLAS_ROWS;
    int nr;
    if (direct >= DSI_BLAS_DIRECT_MIN) {
        nr = (int)direct / 4 * 4;
    } else {
        int chunks = (rows + DSI_BLAS_ROWS - 1) / DSI_BLAS_ROWS;
        nr = ((rows + chunks - 1) / chunks + 15) / 16 * 16;
    }
    j->blas_rows = nr;
    j->blas_cols = kc < cols ? kc : cols;
}
#endif

static void dsi_mm_task(void *arg, int task, int worker) {
    const dsi_mm_job *j = arg;
    const dsi_weight *w = j->w;
    const dsi_kernels *k = &j->c->k;
    int r0 = task * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > w->rows) r1 = w->rows;
#if DSI_BLAS
    if (j->blas) {
        dsi_mm_blas(j, r0, r1, worker);
        return;
    }
#endif
    float *row = j->c->ework + (size_t)worker * j->c->ework_stride;
    if (j->xq || j->xu) {
        if (w->dtype == DS_DTYPE_Q8_0) {
            dsi_mm_int8_rows(j, j->base + (size_t)r0 * w->row_bytes, w->row_bytes, r1 - r0, j->Y + r0, row);
            return;
        }
        int nb = w->cols / DSI_Q8_BLOCK;
        if (j->T == 1) {   /* one token streams the 4-bit or pruned rows as they are */
            for (int r = r0; r < r1; r++) {
                const uint8_t *rp = j->base + (size_t)r * w->row_bytes;
                j->Y[r] = dsi_qx_dot(k, w->dtype, rp, j->xq, j->xu, j->xs, w->cols);
            }
            return;
        }
        /* a batch: a few rows at a time rewritten as Q8_0 (exact), then the
         * Q8_0 products; the rewrite is per row, the products per token */
        uint8_t *w8 = j->c->w8 + (size_t)worker * j->c->w8_stride;
        size_t rb8 = (size_t)nb * DSI_Q8_BLOCK_BYTES;
        for (int r = r0; r < r1; r += DSI_W8_ROWS) {
            int n = r1 - r < DSI_W8_ROWS ? r1 - r : DSI_W8_ROWS;
            for (int i = 0; i < n; i++)
                k->to_q8[w->dtype](j->base + (size_t)(r + i) * w->row_bytes, w8 + (size_t)i * rb8, w->cols);
            dsi_mm_int8_rows(j, w8, rb8, n, j->Y + r, row);
        }
        return;
    }
    int r = r0;
    if (j->T >= 2 && k->dot_f32_4x2 && (size_t)4 * (size_t)w->cols <= j->c->ework_stride) {
        /* four rows dequantized at a time, two tokens per pass over them:
         * each token's values leave L2 once per four rows */
        int n = w->cols;
        for (; r + 4 <= r1; r += 4) {
            for (int i = 0; i < 4; i++)
                k->dequant[w->dtype](j->base + (size_t)(r + i) * w->row_bytes, row + (size_t)i * n, n);
            int t = 0;
            for (; t + 2 <= j->T; t += 2) {
                float o[8];
                k->dot_f32_4x2(row, (size_t)n, j->X + (size_t)t * j->ldx, (size_t)j->ldx, n, o);
                dsi_lane_store(j->Y, (size_t)j->ldy, t, 2, r, 4, o, 2);
            }
            for (; t < j->T; t++)
                for (int i = 0; i < 4; i++)
                    j->Y[(size_t)t * j->ldy + r + i] = k->dot_f32(row + (size_t)i * n, j->X + (size_t)t * j->ldx, n);
        }
    }
    for (; r < r1; r++) {
        const uint8_t *rp = j->base + (size_t)r * w->row_bytes;
        if (j->T == 1) {
            j->Y[r] = k->dot[w->dtype](rp, j->X, w->cols);
        } else {
            /* dequantize the row once, use it for every token of the batch,
             * four tokens per pass over it */
            k->dequant[w->dtype](rp, row, w->cols);
            int t = 0;
            if (k->dot_f32x4) {
                float o[4];
                for (; t + 4 <= j->T; t += 4) {
                    k->dot_f32x4(row, j->X + (size_t)t * j->ldx, (size_t)j->ldx, w->cols, o);
                    for (int i = 0; i < 4; i++) j->Y[(size_t)(t + i) * j->ldy + r] = o[i];
                }
            }
            for (; t < j->T; t++)
                j->Y[(size_t)t * j->ldy + r] = k->dot_f32(row, j->X + (size_t)t * j->ldx, w->cols);
        }
    }
}

/* For products with blocked weights w (Q8_0, Q4_0, Q8_0_24, Q8_0_SP; unless
 * exact_activations): quantizes T rows of X (row stride ldx) into the
 * context's buffers, rows of w->cols, and sets *xs and either *xq (int8) or,
 * for the VNNI kernels, *xu (the same offset to unsigned, in place).
 * Otherwise leaves all three NULL. rowwise: the products will take the
 * rows one token at a time (decode, dsi_gmv), where the pruned formats
 * have int8 kernels only: they keep *xq; a batch (rows rewritten as Q8_0)
 * takes *xu where the set has it. */
static void dsi_quantize_rows(const dsi_cpu_ctx *c, const dsi_weight *w, const float *X, int T, int ldx, bool rowwise,
                              const int8_t **xq, const uint8_t **xu, const float **xs) {
    *xq = NULL;
    *xu = NULL;
    *xs = NULL;
    if (!dsi_dtype_blocked(w->dtype) || w->cols > c->xq_cols || c->m->exact_act) return;
    int nb = w->cols / DSI_Q8_BLOCK;
    for (int t = 0; t < T; t++)
        c->k.quantize_act(X + (size_t)t * ldx, w->cols, c->xq + (size_t)t * w->cols, c->xs + (size_t)t * nb);
    *xs = c->xs;
    bool pruned = w->dtype == DS_DTYPE_Q8_0_24 || w->dtype == DS_DTYPE_Q8_0_SP;
    if (c->k.act_to_u8 && !(pruned && rowwise)) {
        uint8_t *u = (uint8_t *)c->xq;
        c->k.act_to_u8(c->xq, u, (size_t)T * (size_t)w->cols);
        *xu = u;
    } else {
        *xq = c->xq;
    }
}

/* How a product's rows split into tasks (sets rows_per_task); the count. */
static int dsi_mm_tasks(const dsi_cpu_ctx *c, dsi_mm_job *j) {
#if DSI_BLAS
    if (j->blas) {   /* a chunk per task */
        dsi_blas_chunks(j);
        j->rows_per_task = j->blas_rows;
        return (j->w->rows + j->rows_per_task - 1) / j->rows_per_task;
    }
#endif
    /* one token streams the weights: small tasks, so no thread runs on
     * alone at the end (paired decode runs: +2.5% with 16 per worker
     * against 4); a batch keeps larger ones for its row groups */
    int tasks = c->n_workers * (j->T == 1 ? 16 : 4), rows = j->w->rows;
    j->rows_per_task = (rows + tasks - 1) / tasks;
    if (j->rows_per_task < 8) j->rows_per_task = 8;
    if (j->tl) j->rows_per_task = (j->rows_per_task + 7) / 8 * 8;   /* whole 8-row (or 4-row) groups */
    return (rows + j->rows_per_task - 1) / j->rows_per_task;
}

/* A product's job, with X quantized (and packed for a batch) into the
 * context's buffers unless exact. */
static dsi_mm_job dsi_mm_prepare(const dsi_cpu_ctx *c, const dsi_weight *w, const uint8_t *base, const float *X,
                                 int T, int ldx, float *Y, int ldy, bool exact) {
    dsi_mm_job j = {c, w, base ? base : w->data, X, T, ldx, Y, ldy, 0, NULL, NULL, NULL, 0, false, 0, 0};
    if (!exact) dsi_quantize_rows(c, w, X, T, ldx, T == 1, &j.xq, &j.xu, &j.xs);
#if DSI_BLAS
    /* F32 activations in a batch long enough, with OpenBLAS on one thread
     * (a program may have raised the count since the context was made) */
    j.blas = !j.xq && !j.xu && T >= (w->dtype == DS_DTYPE_F32 ? DSI_BLAS_MIN_T_F32 : DSI_BLAS_MIN_T) &&
             openblas_get_num_threads() == 1;
#endif
    size_t nb = (size_t)(w->cols / DSI_Q8_BLOCK);
    const void *xa = j.xu ? (const void *)j.xu : (const void *)j.xq;
    if (xa && c->xp && c->k.lane_split && T >= c->k.lane_min) {   /* a batch: tokens in the vector lanes */
        j.tl = c->k.lane_split(T);
        c->k.lane_pack(xa, (size_t)w->cols, j.xs, nb, j.tl, w->cols, c->xp, c->xps);
    }
    return j;
}

/* Y (T, rows) = X (T, cols) W^T; exact: F32 activations even for Q8_0 weights */
static void dsi_matmul_x(const dsi_cpu_ctx *c, const dsi_weight *w, const uint8_t *base, const float *X, int T,
                         int ldx, float *Y, int ldy, bool exact) {
    dsi_mm_job j = dsi_mm_prepare(c, w, base, X, T, ldx, Y, ldy, exact);
    dsi_pool_run(c->pool, dsi_mm_task, &j, dsi_mm_tasks(c, &j));
}

static void dsi_matmul(const dsi_cpu_ctx *c, const dsi_weight *w, const uint8_t *base, const float *X, int T,
                       int ldx, float *Y, int ldy) {
    dsi_matmul_x(c, w, base, X, T, ldx, Y, ldy, false);
}

/* Two products of the same X (an MLP's gate and up) in one pool run, X
 * quantized and packed once. */
typedef struct dsi_mm2_job {
    dsi_mm_job a, b;
    int na;                  /* tasks of a; b's follow */
} dsi_mm2_job;

static void dsi_mm2_task(void *arg, int task, int worker) {
    dsi_mm2_job *j = arg;
    if (task < j->na) dsi_mm_task(&j->a, task, worker);
    else dsi_mm_task(&j->b, task - j->na, worker);
}

static void dsi_matmul2(const dsi_cpu_ctx *c, const dsi_weight *wa, const uint8_t *ba, float *Ya, const dsi_weight *wb,
                        const uint8_t *bb, float *Yb, const float *X, int T, int ldx, int ldy) {
    if (wa->cols != wb->cols || wa->dtype != wb->dtype) {
        dsi_matmul(c, wa, ba, X, T, ldx, Ya, ldy);
        dsi_matmul(c, wb, bb, X, T, ldx, Yb, ldy);
        return;
    }
    dsi_mm2_job j;
    j.a = dsi_mm_prepare(c, wa, ba, X, T, ldx, Ya, ldy, false);
    j.b = j.a;   /* the same quantized and packed X */
    j.b.w = wb;
    j.b.base = bb ? bb : wb->data;
    j.b.Y = Yb;
    j.na = dsi_mm_tasks(c, &j.a);
    dsi_pool_run(c->pool, dsi_mm2_task, &j, j.na + dsi_mm_tasks(c, &j.b));
}

static const float *dsi_wf32(const dsi_weight *w) { return (const float *)(const void *)w->data; }

/* ==== One token through several matrices in one pool run ================= */
/* Decode multiplies one token by many small matrices (a layer's routed
 * experts, the gate and up of an MLP): one pool run over all of them keeps
 * both cores busy and saves a dispatch per matrix. An item with w2 is a
 * gate/up pair: y[r] = silu(w row r . x) * (w2 row r . x), the SiLU(gate)*up
 * fused into the pass over the rows. Each row's product is the one
 * dsi_matmul computes for T = 1 (the same kernel on the same quantized
 * activations), so results are bit-identical to separate calls. */
typedef struct dsi_gmv_item {
    const dsi_weight *w, *w2;      /* shapes; w2 (same shape) or NULL */
    const uint8_t *base, *base2;   /* their bytes */
    int xrow;                      /* input row of X / xq */
    float *y;                      /* (nx, rows) */
    int nx;                        /* tokens: input rows xrow.. (1 to 4), each row of the weights read
                                      once for all of them */
} dsi_gmv_item;

typedef struct dsi_gmv_job {
    const dsi_cpu_ctx *c;
    const dsi_gmv_item *items;
    int tasks_per_item, rows_per_task, cols;
    const float *X;                /* (rows, cols) F32 inputs */
    const int8_t *xq;              /* or quantized (rows, cols), with xs (rows, cols / 32) */
    const uint8_t *xu;             /* or those offset to unsigned (VNNI) */
    const float *xs;
} dsi_gmv_job;

static float dsi_gmv_dot(const dsi_gmv_job *j, const dsi_weight *w, const uint8_t *rp, int xrow) {
    int nb = j->cols / DSI_Q8_BLOCK;
    if (w->dtype != DS_DTYPE_Q8_0 && (j->xu || j->xq)) {
        size_t off = (size_t)xrow * (size_t)j->cols;
        return dsi_qx_dot(&j->c->k, w->dtype, rp, j->xq ? j->xq + off : NULL, j->xu ? j->xu + off : NULL,
                          j->xs + (size_t)xrow * nb, j->cols);
    }
    if (j->xu) {
        float o[4];
        j->c->k.dot_q8u8xT(rp, j->xu + (size_t)xrow * j->cols, (size_t)j->cols, j->xs + (size_t)xrow * nb,
                            (size_t)nb, j->cols, 1, o);
        return o[0];
    }
    if (j->xq) return j->c->k.dot_q8q8(rp, j->xq + (size_t)xrow * j->cols, j->xs + (size_t)xrow * nb, j->cols);
    return j->c->k.dot[w->dtype](rp, j->X + (size_t)xrow * j->cols, j->cols);
}

/* The row against nx (2..4) consecutive input rows into out: the products
 * dsi_gmv_dot gives each of them (the VNNI tile keeps one sum per token, in
 * the one-token order), with the row read once. */
static void dsi_gmv_dotT(const dsi_gmv_job *j, const dsi_weight *w, const uint8_t *rp, int xrow, int nx, float *out) {
    if (j->xu && w->dtype == DS_DTYPE_Q8_0) {
        int nb = j->cols / DSI_Q8_BLOCK;
        j->c->k.dot_q8u8xT(rp, j->xu + (size_t)xrow * j->cols, (size_t)j->cols, j->xs + (size_t)xrow * nb,
                           (size_t)nb, j->cols, nx, out);
        return;
    }
    for (int t = 0; t < nx; t++) out[t] = dsi_gmv_dot(j, w, rp, xrow + t);
}

static float dsi_silu(float x);

static void dsi_gmv_task(void *arg, int task, int worker) {
    (void)worker;
    const dsi_gmv_job *j = arg;
    const dsi_gmv_item *it = &j->items[task / j->tasks_per_item];
    int r0 = (task % j->tasks_per_item) * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > it->w->rows) r1 = it->w->rows;
    /* w2 has w's shape but its own stride (Q8_0_SP: gate and up differ) */
    size_t rb = it->w->row_bytes, rb2 = it->w2 ? it->w2->row_bytes : 0;
    if (it->nx > 1) {
        size_t R = (size_t)it->w->rows;
        for (int r = r0; r < r1; r++) {
            float a[4], b[4];
            dsi_gmv_dotT(j, it->w, it->base + (size_t)r * rb, it->xrow, it->nx, a);
            if (it->w2) {
                dsi_gmv_dotT(j, it->w2, it->base2 + (size_t)r * rb2, it->xrow, it->nx, b);
                for (int t = 0; t < it->nx; t++) a[t] = dsi_silu(a[t]) * b[t];
            }
            for (int t = 0; t < it->nx; t++) it->y[(size_t)t * R + (size_t)r] = a[t];
        }
        return;
    }
    for (int r = r0; r < r1; r++) {
        float a = dsi_gmv_dot(j, it->w, it->base + (size_t)r * rb, it->xrow);
        if (it->w2) a = dsi_silu(a) * dsi_gmv_dot(j, it->w2, it->base2 + (size_t)r * rb2, it->xrow);
        it->y[r] = a;
    }
}

/* n items, all of one shape (rows x cols) and dtype, inputs rows of X (ld
 * cols). Quantizes the input rows the items use once when the weights are
 * Q8_0 (n_xrows of them). */
static void dsi_gmv(const dsi_cpu_ctx *c, const dsi_gmv_item *items, int n, const float *X, int n_xrows) {
    const dsi_weight *w = items[0].w;
    dsi_gmv_job j = {c, items, 1, w->rows, w->cols, X, NULL, NULL, NULL};
    dsi_quantize_rows(c, w, X, n_xrows, w->cols, true, &j.xq, &j.xu, &j.xs);
    /* about sixteen tasks per worker over all items, at least 8 rows each */
    int want = c->n_workers * 16;
    int per_item = (want + n - 1) / n;
    j.rows_per_task = (w->rows + per_item - 1) / per_item;
    if (j.rows_per_task < 8) j.rows_per_task = 8;
    j.tasks_per_item = (w->rows + j.rows_per_task - 1) / j.rows_per_task;
    dsi_pool_run(c->pool, dsi_gmv_task, &j, n * j.tasks_per_item);
}

/* ==== Attention ========================================================== */
typedef struct dsi_att_job {
    dsi_cpu_ctx *c;
    const dsi_layer *L;
    int T, pos0;             /* a run: T tokens at positions pos0.. */
    const float *q;          /* (T, H * qk) the run's queries */
    float *att;              /* (T, H * v) its output */
    const float *ca, *cb;    /* its sequence's cache of this layer: MLA latent and rope key, MHA K and V */
    int h0, nh;              /* dsi_mla_expanded: the heads in c->kvx */
    const dsi_lora_list *lora;   /* the run's adapters (some change kv_b_proj), or NULL */
    int l;                   /* the layer */
} dsi_att_job;

/* The second half of every attention task: softmax over the n scores, then
 * out (dim values) = sum over s of p_s * V_s, row s of V at V + s * stride. */
static void dsi_att_mix(const dsi_kernels *k, float *scores, int n, const float *V, size_t stride, float *out,
                        int dim) {
    dsi_softmax(scores, n);
    memset(out, 0, (size_t)dim * sizeof(float));
    for (int s = 0; s < n; s++) k->axpy_f32(scores[s], V + (size_t)s * stride, out, dim);
}

/* ==== LoRA ================================================================ */
/* Grows a LoRA scratch buffer to n floats (false: out of memory). */
static bool dsi_lora_scratch(dsi_cpu_ctx *c, float **buf, size_t *cap, size_t n) {
    if (*cap >= n) return true;
    float *p = dsi_malloc(&c->m->al, n * sizeof(float));
    if (!p) return false;
    dsi_free(&c->m->al, *buf);
    *buf = p;
    *cap = n;
    return true;
}

/* T rows of Y (T, ab->b.rows) += s * B (A X): two products on the pool, the
 * small (T, r) product scaled between them (as PEFT scales B A x). False:
 * out of memory for the scratch. */
static bool dsi_lora_rows(dsi_cpu_ctx *c, const dsi_lora_ab *ab, float s, const float *X, int ldx, float *Y, int ldy,
                          int T) {
    int r = ab->a.rows, out = ab->b.rows;
    if (T == 1 && r <= DSI_LORA_MAX_RANK) {
        /* one token: r + out short dot products, cheaper here than two
         * dispatches to the pool (the kernels a one-row product uses, so
         * the sums are the pool's) */
        float t[DSI_LORA_MAX_RANK];
        for (int q = 0; q < r; q++) t[q] = s * c->k.dot[ab->a.dtype](ab->a.data + (size_t)q * ab->a.row_bytes, X, ab->a.cols);
        for (int i = 0; i < out; i++) Y[i] += c->k.dot[ab->b.dtype](ab->b.data + (size_t)i * ab->b.row_bytes, t, r);
        (void)ldx;
        (void)ldy;
        return true;
    }
    if (!dsi_lora_scratch(c, &c->lt, &c->lt_cap, (size_t)T * r) ||
        !dsi_lora_scratch(c, &c->ly, &c->ly_cap, (size_t)T * out))
        return false;
    dsi_matmul(c, &ab->a, NULL, X, T, ldx, c->lt, r);
    for (size_t i = 0; i < (size_t)T * r; i++) c->lt[i] *= s;
    dsi_matmul(c, &ab->b, NULL, c->lt, T, r, c->ly, out);
    for (int t = 0; t < T; t++) {
        float *y = Y + (size_t)t * ldy;
        const float *d = c->ly + (size_t)t * out;
        for (int i = 0; i < out; i++) y[i] += d[i];
    }
    return true;
}

/* y (n) += a * row of an adapter's matrix w: F32 rows through the vector
 * kernel for activations (the kernel set's F32-row axpy is plain C, kept
 * for the base's F32 weights). */
static inline void dsi_lora_axpy(const dsi_cpu_ctx *c, const dsi_weight *w, const uint8_t *row, float a, float *y,
                                 int n) {
    if (w->dtype == DS_DTYPE_F32) c->k.axpy_f32(a, (const float *)(const void *)row, y, n);
    else c->k.axpy[w->dtype](row, a, y, n);
}

/* MLA, absorbed: one (token, head) per task. */
static void dsi_mla_task(void *arg, int task, int worker) {
    const dsi_att_job *j = arg;
    dsi_cpu_ctx *c = j->c;
    const ds_model_config *cf = &c->m->cfg;
    const dsi_weight *kvb = &j->L->kv_b;
    int H = cf->n_heads, dn = cf->qk_nope_head_dim, dr = cf->qk_rope_head_dim, dv = cf->v_head_dim;
    int R = cf->kv_lora_rank, hd = dn + dr;
    int t = task / H, h = task % H, pos = j->pos0 + t, n = pos + 1;
    float *w = c->ework + (size_t)worker * c->ework_stride;
    float *qlat = w, *scores = qlat + R, *lat = scores + n, *qpe = lat + R;
    const float *qh = j->q + (size_t)t * H * hd + (size_t)h * hd;
    memcpy(qpe, qh + dn, (size_t)dr * sizeof(float));
    dsi_rope(c, qpe, pos, true);
    /* q_lat = W_uk(h)^T q_nope: latent-space query */
    memset(qlat, 0, (size_t)R * sizeof(float));
    const uint8_t *rows = kvb->data + (size_t)h * (dn + dv) * kvb->row_bytes;
    for (int i = 0; i < dn; i++) c->k.axpy[kvb->dtype](rows + (size_t)i * kvb->row_bytes, qh[i], qlat, R);
    /* adapted kv_b (W + s B A): q_lat += s A^T (B_k(h)^T q_nope) */
    for (int k = 0; j->lora && k < j->lora->n; k++) {
        const dsi_lora_ab *ab = &j->lora->use[k].a->dev_layers[j->l].m[DSI_LM_KV_B];
        if (!ab->a.data) continue;
        float tr[DSI_LORA_MAX_RANK];
        int r = ab->a.rows;
        memset(tr, 0, (size_t)r * sizeof(float));
        const uint8_t *br = ab->b.data + (size_t)h * (dn + dv) * ab->b.row_bytes;
        for (int i = 0; i < dn; i++) dsi_lora_axpy(c, &ab->b, br + (size_t)i * ab->b.row_bytes, qh[i], tr, r);
        for (int q = 0; q < r; q++)
            dsi_lora_axpy(c, &ab->a, ab->a.data + (size_t)q * ab->a.row_bytes, j->lora->use[k].s * tr[q], qlat, R);
    }
    const float *ca = j->ca;
    const float *cb = j->cb;
    for (int s = 0; s < n; s++)
        scores[s] = (c->k.dot_f32(qlat, ca + (size_t)s * R, R) + c->k.dot_f32(qpe, cb + (size_t)s * dr, dr)) *
                    c->attn_scale;
    dsi_att_mix(&c->k, scores, n, ca, (size_t)R, lat, R);
    /* back to value space: out = W_uv(h) lat */
    float *out = j->att + (size_t)t * H * dv + (size_t)h * dv;
    const uint8_t *vrows = rows + (size_t)dn * kvb->row_bytes;
    for (int i = 0; i < dv; i++) out[i] = c->k.dot[kvb->dtype](vrows + (size_t)i * kvb->row_bytes, lat, R);
    /* adapted kv_b: out += s B_v(h) (A lat) */
    for (int k = 0; j->lora && k < j->lora->n; k++) {
        const dsi_lora_ab *ab = &j->lora->use[k].a->dev_layers[j->l].m[DSI_LM_KV_B];
        if (!ab->a.data) continue;
        float al[DSI_LORA_MAX_RANK];
        int r = ab->a.rows;
        float sc = j->lora->use[k].s;
        for (int q = 0; q < r; q++) al[q] = c->k.dot[ab->a.dtype](ab->a.data + (size_t)q * ab->a.row_bytes, lat, R);
        const uint8_t *bv = ab->b.data + ((size_t)h * (dn + dv) + (size_t)dn) * ab->b.row_bytes;
        for (int i = 0; i < dv; i++) out[i] += sc * c->k.dot[ab->b.dtype](bv + (size_t)i * ab->b.row_bytes, al, r);
    }
}

/* Multi-head attention (DeepSeek-MoE): one (token, head) per task. */
static void dsi_mha_task(void *arg, int task, int worker) {
    const dsi_att_job *j = arg;
    dsi_cpu_ctx *c = j->c;
    const ds_model_config *cf = &c->m->cfg;
    int H = cf->n_heads, Hk = cf->n_kv_heads, hd = cf->head_dim;
    int t = task / H, h = task % H, pos = j->pos0 + t, n = pos + 1, kh = h / (H / Hk);
    float *scores = c->ework + (size_t)worker * c->ework_stride;
    const float *qh = j->q + (size_t)t * H * hd + (size_t)h * hd;
    const float *K = j->ca;
    const float *V = j->cb;
    size_t kd = (size_t)Hk * hd;
    for (int s = 0; s < n; s++) scores[s] = c->k.dot_f32(qh, K + s * kd + (size_t)kh * hd, hd) * c->attn_scale;
    dsi_att_mix(&c->k, scores, n, V + (size_t)kh * hd, kd, j->att + (size_t)t * H * hd + (size_t)h * hd, hd);
}

/* One (token, head) of a batch against expanded K/V: the same attention as
 * dsi_mla_task, with the latent projections moved out of the loop. */
static void dsi_mla_x_task(void *arg, int task, int worker) {
    const dsi_att_job *j = arg;
    dsi_cpu_ctx *c = j->c;
    const ds_model_config *cf = &c->m->cfg;
    int H = cf->n_heads, dn = cf->qk_nope_head_dim, dr = cf->qk_rope_head_dim, dv = cf->v_head_dim;
    int hd = dn + dr, kvw = j->nh * (dn + dv);
    int t = task / j->nh, hh = task % j->nh, h = j->h0 + hh, pos = j->pos0 + t, n = pos + 1;
    float *w = c->ework + (size_t)worker * c->ework_stride;
    float *qpe = w, *scores = qpe + dr;
    const float *qh = j->q + (size_t)t * H * hd + (size_t)h * hd;
    memcpy(qpe, qh + dn, (size_t)dr * sizeof(float));
    dsi_rope(c, qpe, pos, true);
    const float *cb = j->cb;
    const float *kv = c->kvx + (size_t)hh * (dn + dv);
    for (int s = 0; s < n; s++)
        scores[s] = (c->k.dot_f32(qh, kv + (size_t)s * kvw, dn) + c->k.dot_f32(qpe, cb + (size_t)s * dr, dr)) *
                    c->attn_scale;
    dsi_att_mix(&c->k, scores, n, kv + dn, (size_t)kvw, j->att + (size_t)t * H * dv + (size_t)h * dv, dv);
}

/* Whether a batch of T tokens after pos0 takes dsi_mla_expanded: it pays
 * when the window is not much longer than the batch (each position's latent
 * is expanded once per batch, where the absorbed form spends two latent
 * projections per token and head, one row at a time). */
static bool dsi_mla_expand_pays(int T, int pos0) {
    return T >= 16 && pos0 + T <= DSI_MLA_EXPAND_MAX && pos0 + T <= 8 * T;
}

/* MLA for a batch: for each group of heads, K (nope part) and V of every
 * position in the window from one product of the kv_b rows of those heads
 * with the cached latents, then attention per (token, head). */
static void dsi_mla_expanded(dsi_cpu_ctx *c, dsi_att_job *j) {
    const ds_model_config *cf = &c->m->cfg;
    const dsi_weight *kvb = &j->L->kv_b;
    int H = cf->n_heads, dn = cf->qk_nope_head_dim, dv = cf->v_head_dim, R = cf->kv_lora_rank;
    int n = j->pos0 + j->T;
    const float *ca = j->ca;
    for (int h0 = 0; h0 < H; h0 += c->kvx_heads) {
        int nh = H - h0 < c->kvx_heads ? H - h0 : c->kvx_heads, kvw = nh * (dn + dv);
        dsi_weight sub = *kvb;   /* the rows of heads [h0, h0 + nh) */
        sub.rows = kvw;
        const uint8_t *base = kvb->data + (size_t)h0 * (size_t)(dn + dv) * kvb->row_bytes;
        for (int p0 = 0; p0 < n; p0 += DSI_MAX_BATCH) {
            int np = n - p0 < DSI_MAX_BATCH ? n - p0 : DSI_MAX_BATCH;
            /* F32 latents, as the absorbed form uses them: a batch gives the
             * same logits as the same tokens one at a time */
            dsi_matmul_x(c, &sub, base, ca + (size_t)p0 * R, np, R, c->kvx + (size_t)p0 * kvw, kvw, true);
            /* adapted kv_b: the same rows of s B A on the latents */
            for (int k = 0; j->lora && k < j->lora->n; k++) {
                dsi_lora_ab ab = j->lora->use[k].a->dev_layers[j->l].m[DSI_LM_KV_B];
                if (!ab.a.data) continue;
                ab.b.rows = kvw;
                ab.b.data += (size_t)h0 * (size_t)(dn + dv) * ab.b.row_bytes;
                (void)dsi_lora_rows(c, &ab, j->lora->use[k].s, ca + (size_t)p0 * R, R, c->kvx + (size_t)p0 * kvw, kvw,
                                    np);   /* scratch made by dsi_cpu_mla_attention */
            }
        }
        j->h0 = h0;
        j->nh = nh;
        dsi_pool_run(c->pool, dsi_mla_x_task, j, j->T * nh);
    }
}

/* The run's sequence's cache of layer l: a (latent or K) and b (rope key or V). */
static void dsi_cache_of(const dsi_cpu_ctx *c, int l, int seq, float **ca, float **cb) {
    size_t k = (size_t)seq * (size_t)c->m->cfg.n_layers + (size_t)l;
    *ca = c->kv_a + k * c->kv_a_stride;
    *cb = c->kv_b + k * c->kv_b_stride;
}

/* MLA: the run's latents and rope keys into the cache, then attention (the
 * expanded form for a batch over a short window, else absorbed per head). */
static ds_status dsi_cpu_mla_attention(void *dc, int l, const dsi_layer *L, const dsi_run *r, float eps, dsi_err *e) {
    dsi_cpu_ctx *c = dc;
    const ds_model_config *cf = &c->m->cfg;
    int H = cf->n_heads, R = cf->kv_lora_rank, dr = cf->qk_rope_head_dim, hd = cf->qk_nope_head_dim + dr;
    float *ca, *cb;
    dsi_cache_of(c, l, r->seq, &ca, &cb);
    /* the cache keeps the normalised latent and the roped shared key */
    for (int t = 0; t < r->n; t++) {
        const float *kv = c->kva + (size_t)(r->t0 + t) * (R + dr);
        float *pa = ca + (size_t)(r->pos0 + t) * R, *pb = cb + (size_t)(r->pos0 + t) * dr;
        dsi_rmsnorm(pa, kv, dsi_wf32(&L->kv_a_norm), R, eps);
        memcpy(pb, kv + R, (size_t)dr * sizeof(float));
        dsi_rope(c, pb, r->pos0 + t, true);
    }
    dsi_att_job j = {c, L, r->n, r->pos0, c->q + (size_t)r->t0 * H * hd,
                     c->att + (size_t)r->t0 * H * cf->v_head_dim, ca, cb, 0, 0, r->lora, l};
    if (dsi_mla_expand_pays(r->n, r->pos0)) {
        /* the adapters' rows go through the LoRA scratch: made here, where a failure can be told */
        int dn = cf->qk_nope_head_dim, dv = cf->v_head_dim;
        for (int k = 0; r->lora && k < r->lora->n; k++) {
            const dsi_lora_ab *ab = &r->lora->use[k].a->dev_layers[l].m[DSI_LM_KV_B];
            if (ab->a.data &&
                (!dsi_lora_scratch(c, &c->lt, &c->lt_cap, (size_t)DSI_MAX_BATCH * (size_t)ab->a.rows) ||
                 !dsi_lora_scratch(c, &c->ly, &c->ly_cap, (size_t)DSI_MAX_BATCH * (size_t)c->kvx_heads * (dn + dv))))
                return dsi_fail(e, DS_ERR_NOMEM, "out of memory for LoRA scratch");
        }
        dsi_mla_expanded(c, &j);
    }
    else dsi_pool_run(c->pool, dsi_mla_task, &j, r->n * H);
    return DS_OK;
}

/* Multi-head attention: the run's queries and keys roped, its keys and
 * values (rows of kva: the batch's T keys, then their values) into the
 * cache, then attention per head. */
static ds_status dsi_cpu_mha_attention(void *dc, int l, const dsi_layer *L, const dsi_run *r, int T, dsi_err *e) {
    (void)e;
    dsi_cpu_ctx *c = dc;
    const ds_model_config *cf = &c->m->cfg;
    int H = cf->n_heads, hd = cf->head_dim, Hk = cf->n_kv_heads, kd = Hk * hd;
    float *ck, *cv;
    dsi_cache_of(c, l, r->seq, &ck, &cv);
    float *kt = c->kva, *vt = c->kva + (size_t)T * kd;
    for (int i = 0; i < r->n; i++) {
        int t = r->t0 + i, pos = r->pos0 + i;
        for (int h = 0; h < H; h++) dsi_rope(c, c->q + (size_t)t * H * hd + (size_t)h * hd, pos, false);
        for (int h = 0; h < Hk; h++) dsi_rope(c, kt + (size_t)t * kd + (size_t)h * hd, pos, false);
        memcpy(ck + (size_t)pos * kd, kt + (size_t)t * kd, (size_t)kd * sizeof(float));
        memcpy(cv + (size_t)pos * kd, vt + (size_t)t * kd, (size_t)kd * sizeof(float));
    }
    dsi_att_job j = {c, L, r->n, r->pos0, c->q + (size_t)r->t0 * H * hd, c->att + (size_t)r->t0 * H * hd, ck, cv, 0, 0,
                     NULL, l};
    dsi_pool_run(c->pool, dsi_mha_task, &j, r->n * H);
    return DS_OK;
}

/* ==== Feed-forward ======================================================= */
static float dsi_silu(float x) { return x / (1.0f + expf(-x)); }

/* down(silu(gate X) * up X) for T rows of X, into Y (T, D). */
static void dsi_mlp(dsi_cpu_ctx *c, const dsi_weight *gate, const dsi_weight *up, const dsi_weight *down,
                    const uint8_t *gb, const uint8_t *ub, const uint8_t *db, const float *X, int T, float *Y) {
    int D = c->m->cfg.hidden_size, I = gate->rows;
    if (T == 1 && gate->dtype == up->dtype) {   /* one pass, SiLU(gate) * up fused */
        dsi_gmv_item it = {gate, up, gb ? gb : gate->data, ub ? ub : up->data, 0, c->g, 1};
        dsi_gmv(c, &it, 1, X, 1);
    } else {
        dsi_matmul2(c, gate, gb, c->g, up, ub, c->u, X, T, D, I);
        for (size_t i = 0; i < (size_t)T * I; i++) c->g[i] = dsi_silu(c->g[i]) * c->u[i];
    }
    dsi_matmul(c, down, db, c->g, T, I, Y, D);
}

/* Top-k of v (n values) into idx (k), largest first; ties to the lower index. */
static void dsi_topk(const float *v, int n, int k, int *idx) {
    for (int i = 0; i < k; i++) idx[i] = -1;
    for (int x = 0; x < n; x++) {
        int p = k;
        while (p > 0 && (idx[p - 1] < 0 || v[x] > v[idx[p - 1]])) p--;
        if (p >= k) continue;
        for (int q = k - 1; q > p; q--) idx[q] = idx[q - 1];
        idx[p] = x;
    }
}

/* Routing for one token: logits (E) -> K experts and weights. */
DSI_FUNC void dsi_route(const ds_model_config *cf, const float *logits, const float *bias, float *scratch, int *sel,
                        float *w) {
    int E = cf->n_routed_experts, K = cf->n_experts_per_tok;
    float *scores = scratch, *choice = scratch + E, *gs = scratch + 2 * E;
    for (int x = 0; x < E; x++) scores[x] = logits[x];
    if (cf->scoring_func == DS_SCORING_SIGMOID)
        for (int x = 0; x < E; x++) scores[x] = 1.0f / (1.0f + expf(-scores[x]));
    else
        dsi_softmax(scores, E);
    /* selection scores: the bias (noaux_tc) steers selection only; an
     * expert whose logit is -inf (dropped at conversion) is never chosen */
    for (int x = 0; x < E; x++) choice[x] = logits[x] == -INFINITY ? -INFINITY : scores[x] + (bias ? bias[x] : 0.0f);
    if (cf->topk_method != DS_TOPK_GREEDY && cf->n_group > 1) {
        int G = cf->n_group, per = E / G;
        for (int g = 0; g < G; g++) {
            const float *v = choice + g * per;
            if (cf->topk_method == DS_TOPK_NOAUX_TC) {
                int two[2];
                dsi_topk(v, per, 2, two);
                gs[g] = v[two[0]] + v[two[1]];
            } else {
                float mx = v[0];
                for (int i = 1; i < per; i++) mx = v[i] > mx ? v[i] : mx;
                gs[g] = mx;
            }
        }
        int keep[DS_MAX_TOPK_GROUP];   /* config.c caps topk_group */
        int kg = cf->topk_group < DS_MAX_TOPK_GROUP ? cf->topk_group : DS_MAX_TOPK_GROUP;
        dsi_topk(gs, G, kg, keep);
        /* experts outside the chosen groups are masked: V3 (noaux_tc) with
         * -inf as transformers and DeepSeek's inference/model.py do; V2 with
         * 0.0 as transformers' and the Hub's V2 code do (the two differ
         * only when fewer than top_k kept experts score above zero) */
        float masked = cf->topk_method == DS_TOPK_NOAUX_TC ? -INFINITY : 0.0f;
        for (int g = 0; g < G; g++) {
            bool kept = false;
            for (int i = 0; i < kg; i++) kept |= keep[i] == g;
            if (!kept)   /* a dropped expert stays at -inf */
                for (int i = 0; i < per; i++)
                    if (choice[g * per + i] != -INFINITY) choice[g * per + i] = masked;
        }
    }
    dsi_topk(choice, E, K, sel);
    float sum = 0;
    for (int k = 0; k < K; k++) {
        w[k] = scores[sel[k]];
        sum += w[k];
    }
    bool norm = K > 1 && cf->norm_topk_prob;
    if (norm)
        for (int k = 0; k < K; k++) w[k] /= sum + 1e-20f;
    /* V3 always scales; V2 (and DeepSeek-MoE, factor 1) only without normalisation */
    if (cf->arch == DS_ARCH_DEEPSEEK_V3 || !norm)
        for (int k = 0; k < K; k++) w[k] *= cf->routed_scaling_factor;
}

DSI_FUNC void dsi_route_kept(const ds_model_config *cf, const float *logits, const float *bias, const int32_t *kept,
                             int n_kept, float *scratch, int *sel, float *w) {
    if (!kept) {
        dsi_route(cf, logits, bias, scratch, sel, w);
        return;
    }
    int E = cf->n_routed_experts;
    float *fl = scratch + 3 * (size_t)E, *fb = scratch + 4 * (size_t)E;
    for (int x = 0; x < E; x++) {
        fl[x] = -INFINITY;   /* a dropped expert: as if its logit were -inf */
        fb[x] = 0.0f;
    }
    for (int i = 0; i < n_kept; i++) {
        fl[kept[i]] = logits[i];
        if (bias) fb[kept[i]] = bias[i];
    }
    dsi_route(cf, fl, bias ? fb : NULL, scratch, sel, w);
}

/* With an expert cache: queue this layer's chosen experts (the prefetch
 * thread decrypts them while this thread handles the first), score the guess
 * made for this layer, and guess the next MoE layer's experts by applying its
 * router to this layer's normalised input X, so they decrypt while this
 * layer and the next attention compute. */
static void dsi_moe_prefetch(dsi_cpu_ctx *c, int l, int T, const float *X) {
    const ds_model_config *cf = &c->m->cfg;
    int K = cf->n_experts_per_tok, D = cf->hidden_size;
    int *uniq = c->etok, nu = 0;
    for (int t = 0; t < T * K; t++) {
        bool seen = false;
        for (int i = 0; i < nu && !seen; i++) seen = uniq[i] == c->sel[t];
        if (!seen) uniq[nu++] = c->sel[t];
    }
    dsi_pager_prefetch(c->m->pager, l, uniq, nu, false);
    dsi_pager_routed(c->m->pager, l, uniq, nu, c->guess + (size_t)l * K, T == 1 ? c->n_guess[l] : 0);
    c->n_guess[l] = 0;
    if (T > 4 || K > DS_MAX_EXPERTS_PER_TOK || l + 1 >= cf->n_layers || !c->m->w.layers[l + 1].moe) return;
    const dsi_layer *N = &c->m->w.layers[l + 1];
    float *logits = c->ye, *scratch = c->ework;
    int *pred = c->guess + (size_t)(l + 1) * K;   /* best first; kept to score it against l+1's choice */
    for (int t = 0; t < T; t++) {
        for (int x = 0; x < N->router.rows; x++)
            logits[x] = c->k.dot[N->router.dtype](N->router.data + (size_t)x * N->router.row_bytes, X + (size_t)t * D, D);
        float w[DS_MAX_EXPERTS_PER_TOK];
        dsi_route_kept(cf, logits, N->bias.data ? dsi_wf32(&N->bias) : NULL, N->kept, N->n_kept, scratch, pred, w);
        dsi_pager_prefetch(c->m->pager, l + 1, pred, K, true);
    }
    c->n_guess[l + 1] = T == 1 ? K : 0;
}

/* One token's K chosen experts as indices into c->sel, in ascending expert order. */
static void dsi_sel_ascending(const dsi_cpu_ctx *c, int K, int *ord) {
    for (int k = 0; k < K; k++) {
        int p = k;
        for (; p > 0 && c->sel[ord[p - 1]] > c->sel[k]; p--) ord[p] = ord[p - 1];
        ord[p] = k;
    }
}

/* Adds row i of c->ye (the output of expert c->sel[ord[i]]) times its weight
 * to Y, for i = 0..K-1 in that order: ascending expert order, the order of
 * every path, so decode sums match whichever path ran. */
static void dsi_moe_add_rows(dsi_cpu_ctx *c, const int *ord, int K, float *Y) {
    int D = c->m->cfg.hidden_size;
    for (int i = 0; i < K; i++) {
        float wgt = c->selw[ord[i]];
        const float *src = c->ye + (size_t)i * D;
        for (int d = 0; d < D; d++) Y[d] += wgt * src[d];
    }
}

/* Decode with an expert cache: the chosen experts are computed in the order
 * they can be had (those in the cache first, then those no one is
 * decrypting, which this thread decrypts, and last those being decrypted,
 * which it joins), so the compute overlaps the decryptions still under way;
 * each lands in its own row and the rows are added in ascending expert
 * order, as everywhere else, so the sums are the resident run's. */
static ds_status dsi_moe_decode_paged(dsi_cpu_ctx *c, int l, const dsi_layer *L, const float *X, float *Y,
                                      dsi_err *e) {
    const ds_model_config *cf = &c->m->cfg;
    int D = cf->hidden_size, K = cf->n_experts_per_tok, ord[DS_MAX_EXPERTS_PER_TOK];   /* K capped by config.c */
    bool done[DS_MAX_EXPERTS_PER_TOK] = {false};
    dsi_sel_ascending(c, K, ord);
    for (int n = 0; n < K; n++) {
        int pick = -1, best = 3;
        for (int i = 0; i < K && best > 0; i++) {
            if (done[i]) continue;
            int st = dsi_pager_peek(c->m->pager, l, c->sel[ord[i]]);
            if (st < best) {
                best = st;
                pick = i;
            }
        }
        int x = c->sel[ord[pick]];
        const uint8_t *base = NULL;
        ds_status s = dsi_expert_acquire(c->m, l, x, &base, e);
        if (s) return s;
        const dsi_expert_ref *r = &L->experts[x];
        dsi_mlp(c, &L->exp_gate, &L->exp_up, &L->exp_down, base + r->off[0], base + r->off[1], base + r->off[2], X,
                1, c->ye + (size_t)pick * D);
        dsi_expert_release(c->m, l, x);
        done[pick] = true;
    }
    dsi_moe_add_rows(c, ord, K, Y);
    return DS_OK;
}

/* Expert x's tokens (the plan's order) gathered into rows row.. of c->xe. */
static void dsi_moe_gather(dsi_cpu_ctx *c, const dsi_moe_plan *plan, int x, const float *X, int row) {
    int D = c->m->cfg.hidden_size, n = plan->cnt[x];
    const int *idx = plan->idx + plan->off[x];
    for (int i = 0; i < n; i++)
        memcpy(c->xe + (size_t)(row + i) * D, X + (size_t)idx[i] * D, (size_t)D * sizeof(float));
}

/* Expert x's outputs (rows row.. of c->ye) added to its tokens' rows of Y,
 * each times its routing weight. */
static void dsi_moe_scatter(dsi_cpu_ctx *c, const dsi_moe_plan *plan, int x, float *Y, int row) {
    int D = c->m->cfg.hidden_size, n = plan->cnt[x];
    const int *idx = plan->idx + plan->off[x];
    const float *wts = plan->wts + plan->off[x];
    for (int i = 0; i < n; i++) {
        float *dst = Y + (size_t)idx[i] * D, wgt = wts[i];
        const float *src = c->ye + (size_t)(row + i) * D;
        for (int d = 0; d < D; d++) dst[d] += wgt * src[d];
    }
}

/* The routed experts of layer l (the device's moe): Y = the weighted sum,
 * per token, of its experts applied to X, added in ascending expert order. */
/* A few tokens per expert (one decode token, the decode step of several
 * sequences, a short prompt): each expert's tokens gathered into
 * consecutive rows, every chosen expert's gate/up in one pool run and their
 * downs in a second, each weight row read once for up to four of its tokens
 * (groups of four past that), with the one-token kernels (dsi_gmv) on the
 * quantized activations; each token's expert outputs added in ascending
 * expert order, as on every path. (A GEMM per expert costs two pool runs
 * per expert, each too short to keep the memory busy.) One token with an
 * expert cache takes dsi_moe_decode_paged instead, which overlaps the
 * decryptions. */
static bool dsi_moe_few(const dsi_cpu_ctx *c, const dsi_layer *L, const dsi_moe_plan *plan) {
    int T = plan->T, K = plan->K;
    return (T > 1 || !c->m->pager) && T * K <= DSI_MAX_BATCH && L->exp_gate.dtype == L->exp_up.dtype &&
           T * K <= 4 * plan->n_used;   /* at most four tokens per expert on average */
}

/* The plan's experts used[u0..u1): their tokens gathered per expert into
 * rows of c->xe from 0 (gate/up outputs in the same rows of c->g, downs in
 * c->ye), then added into Y. */
static ds_status dsi_moe_few_range(dsi_cpu_ctx *c, int l, const dsi_layer *L, const dsi_moe_plan *plan, int u0,
                                   int u1, const float *X, float *Y, dsi_err *e) {
    int D = c->m->cfg.hidden_size, I = L->exp_gate.rows;
    dsi_gmv_item it[DSI_MAX_BATCH];
    const uint8_t *eb[DSI_MAX_BATCH];   /* each expert's bytes (n_used <= T * K) */
    for (int u = u0; u < u1; u++) {
        ds_status s = dsi_expert_acquire(c->m, l, plan->used[u], &eb[u - u0], e);
        if (s) {
            while (u-- > u0) dsi_expert_release(c->m, l, plan->used[u]);
            return s;
        }
    }
    int n_it = 0, row = 0;
    for (int u = u0; u < u1; u++) {
        int x = plan->used[u], n = plan->cnt[x];
        const dsi_expert_ref *r = &L->experts[x];
        dsi_moe_gather(c, plan, x, X, row);
        for (int i = 0; i < n; i += 4)
            it[n_it++] = (dsi_gmv_item){&L->exp_gate, &L->exp_up, eb[u - u0] + r->off[0], eb[u - u0] + r->off[1],
                                        row + i, c->g + (size_t)(row + i) * I, n - i < 4 ? n - i : 4};
        row += n;
    }
    if (!n_it) return DS_OK;   /* (an empty range) */
    dsi_gmv(c, it, n_it, c->xe, row);
    n_it = 0;
    for (int u = u0; u < u1; u++) {
        int x = plan->used[u], n = plan->cnt[x];
        for (int i = 0; i < n; i += 4, n_it++) {
            dsi_gmv_item *t = &it[n_it];
            *t = (dsi_gmv_item){&L->exp_down, NULL, eb[u - u0] + L->experts[x].off[2], NULL, t->xrow,
                                c->ye + (size_t)t->xrow * D, t->nx};
        }
    }
    dsi_gmv(c, it, n_it, c->g, row);
    for (int u = u0; u < u1; u++) dsi_expert_release(c->m, l, plan->used[u]);
    /* each token's outputs, in ascending expert order */
    row = 0;
    for (int u = u0; u < u1; u++) {
        dsi_moe_scatter(c, plan, plan->used[u], Y, row);
        row += plan->cnt[plan->used[u]];
    }
    return DS_OK;
}

/* Resident: every expert in the two pool runs. With an expert cache, one
 * expert at a time (the cache may hold fewer than the pass chose), on the
 * same kernels in the same order: the sums are the resident run's. */
static ds_status dsi_moe_decode_few(dsi_cpu_ctx *c, int l, const dsi_layer *L, const dsi_moe_plan *plan,
                                    const float *X, float *Y, dsi_err *e) {
    if (!c->m->pager) return dsi_moe_few_range(c, l, L, plan, 0, plan->n_used, X, Y, e);
    dsi_moe_prefetch(c, l, plan->T, X);
    for (int u = 0; u < plan->n_used; u++) {
        ds_status s = dsi_moe_few_range(c, l, L, plan, u, u + 1, X, Y, e);
        if (s) return s;
    }
    return DS_OK;
}

/* Token i (row i of xe, outputs in row i of out) through part p (0 gate, 1
 * up, 2 down) of routed expert x's adapters: out row += s B (A in row). */
static ds_status dsi_moe_lora_part(dsi_cpu_ctx *c, int l, int x, const dsi_lora_list *ls, int p, const float *in,
                                   int ldi, float *out, int ldo, dsi_err *e) {
    for (int k = 0; ls && k < ls->n; k++) {
        const ds_adapter *a = ls->use[k].a;
        const dsi_lora_layer *ll = &a->layers[l];
        if (!ll->experts || !ll->exp[p].a.rows) continue;
        const uint8_t *ab = NULL;
        ds_status s = dsi_lora_expert_acquire(a, l, x, &ab, e);
        if (s) return s;
        if (!ab) continue;   /* this expert is not adapted */
        dsi_lora_ab v = ll->exp[p];
        v.a.data = ab + ll->experts[x].off[2 * p];
        v.b.data = ab + ll->experts[x].off[2 * p + 1];
        bool ok = dsi_lora_rows(c, &v, ls->use[k].s, in, ldi, out, ldo, 1);
        dsi_lora_expert_release(a, l, x);
        if (!ok) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for LoRA scratch");
    }
    return DS_OK;
}

/* The routed experts when some token's adapters change them: tokens grouped
 * per expert as in the batch path, gate and up products, each token's
 * adapters added to its rows, SiLU(gate) * up, the down product and its
 * adapters; each token's outputs added in ascending expert order. The
 * adapters' parts come with their expert (paged alike). */
static ds_status dsi_moe_adapted(dsi_cpu_ctx *c, int l, const dsi_layer *L, const dsi_moe_plan *plan, const float *X,
                                 float *Y, dsi_err *e) {
    int D = c->m->cfg.hidden_size, I = L->exp_gate.rows;
    for (int u = 0; u < plan->n_used; u++) {
        int x = plan->used[u], n = plan->cnt[x];
        const int *idx = plan->idx + plan->off[x];
        dsi_moe_gather(c, plan, x, X, 0);
        const uint8_t *base = NULL;
        ds_status s = dsi_expert_acquire(c->m, l, x, &base, e);
        if (s) return s;
        const dsi_expert_ref *r = &L->experts[x];
        dsi_matmul2(c, &L->exp_gate, base + r->off[0], c->g, &L->exp_up, base + r->off[1], c->u, c->xe, n, D, I);
        for (int i = 0; i < n && !s; i++) {
            const dsi_lora_list *ls = plan->lora[idx[i]];
            s = dsi_moe_lora_part(c, l, x, ls, 0, c->xe + (size_t)i * D, D, c->g + (size_t)i * I, I, e);
            if (!s) s = dsi_moe_lora_part(c, l, x, ls, 1, c->xe + (size_t)i * D, D, c->u + (size_t)i * I, I, e);
        }
        if (!s) {
            for (size_t i = 0; i < (size_t)n * I; i++) c->g[i] = dsi_silu(c->g[i]) * c->u[i];
            dsi_matmul(c, &L->exp_down, base + r->off[2], c->g, n, I, c->ye, D);
        }
        for (int i = 0; i < n && !s; i++)
            s = dsi_moe_lora_part(c, l, x, plan->lora[idx[i]], 2, c->g + (size_t)i * I, I, c->ye + (size_t)i * D, D,
                                  e);
        dsi_expert_release(c->m, l, x);
        if (s) return s;
        dsi_moe_scatter(c, plan, x, Y, 0);
    }
    return DS_OK;
}

static ds_status dsi_cpu_moe(void *dc, int l, const dsi_layer *L, const dsi_moe_plan *plan, const float *X, float *Y,
                             dsi_err *e) {
    dsi_cpu_ctx *c = dc;
    const ds_model_config *cf = &c->m->cfg;
    int D = cf->hidden_size, K = plan->K, T = plan->T;
    c->sel = plan->sel;
    c->selw = plan->selw;
    memset(Y, 0, (size_t)T * D * sizeof(float));
    if (plan->lora) return dsi_moe_adapted(c, l, L, plan, X, Y, e);
    if (dsi_moe_few(c, L, plan)) return dsi_moe_decode_few(c, l, L, plan, X, Y, e);
    if (c->m->pager) dsi_moe_prefetch(c, l, T, X);
    if (T == 1 && c->m->pager && K <= 64 && K <= DSI_MAX_BATCH) return dsi_moe_decode_paged(c, l, L, X, Y, e);
    /* tokens grouped per expert: each expert's matrices run once per batch */
    for (int u = 0; u < plan->n_used; u++) {
        int x = plan->used[u], n = plan->cnt[x];
        dsi_moe_gather(c, plan, x, X, 0);
        const uint8_t *base = NULL;
        ds_status s = dsi_expert_acquire(c->m, l, x, &base, e);
        if (s) return s;
        const dsi_expert_ref *r = &L->experts[x];
        dsi_mlp(c, &L->exp_gate, &L->exp_up, &L->exp_down, base + r->off[0], base + r->off[1], base + r->off[2], c->xe,
                n, c->ye);
        dsi_expert_release(c->m, l, x);
        dsi_moe_scatter(c, plan, x, Y, 0);
    }
    return DS_OK;
}

/* ==== The kernels ========================================================== */
/* The portable set, with the AVX2 kernels over it and the VNNI ones over
 * those (x86), or the NEON ones (AArch64), as far as the features allow;
 * chosen once per context. */
DSI_FUNC void dsi_kernels_select(dsi_kernels *k, uint32_t features) {
    dsi_kernels_portable(k);
    if (dsi_kernels_avx2(k, features)) (void)dsi_kernels_vnni512(k, features);
    else (void)dsi_kernels_neon(k, features);
}

DSI_FUNC const char *dsi_cpu_kernels_name(void) {
    dsi_kernels k;
    dsi_kernels_select(&k, dsi_cpu_features());
    return k.name;
}

/* ==== The device's table ================================================== */
static ds_status dsi_cpu_model_new(ds_model *m, const ds_model_params *p, void **dm, dsi_err *e) {
    (void)m;
    (void)p;
    (void)e;
    *dm = NULL;
    return DS_OK;
}

static void dsi_cpu_model_free(ds_model *m, void *dm) {
    (void)m;
    (void)dm;
}

static const dsi_weights *dsi_cpu_weights(const ds_model *m) { return &m->w; }

static void dsi_cpu_cache_stats(const ds_model *m, ds_cache_stats *out, bool reset) {
    (void)m;
    (void)reset;
    if (out) memset(out, 0, sizeof *out);
}

static ds_status dsi_cpu_begin(void *dc, dsi_err *e) {
    (void)dc;
    (void)e;
    return DS_OK;
}

/* A pass that failed or was cancelled part way leaves no guess behind: a
 * guess made for its next layer would be scored against another pass. */
static ds_status dsi_cpu_end(void *dc, ds_status s, dsi_err *e) {
    (void)e;
    dsi_cpu_ctx *c = dc;
    if (s) memset(c->n_guess, 0, (size_t)c->m->cfg.n_layers * sizeof *c->n_guess);
    return s;
}

static ds_status dsi_cpu_embed(void *dc, const dsi_weight *table, const int32_t *tok, int T, float *x, dsi_err *e) {
    (void)e;
    const dsi_cpu_ctx *c = dc;
    int D = c->m->cfg.hidden_size;
    for (int t = 0; t < T; t++)
        c->k.dequant[table->dtype](table->data + (size_t)tok[t] * table->row_bytes, x + (size_t)t * D, table->cols);
    return DS_OK;
}

static ds_status dsi_cpu_rmsnorm(void *dc, float *out, int ldo, const float *x, int ldx, const dsi_weight *w, int rows,
                                 float eps, dsi_err *e) {
    (void)dc;
    (void)e;
    for (int t = 0; t < rows; t++)
        dsi_rmsnorm(out + (size_t)t * ldo, x + (size_t)t * ldx, dsi_wf32(w), w->cols, eps);
    return DS_OK;
}

static ds_status dsi_cpu_matmul(void *dc, const dsi_weight *w, const float *X, int T, int ldx, float *Y, int ldy,
                                dsi_err *e) {
    (void)e;
    dsi_matmul(dc, w, NULL, X, T, ldx, Y, ldy);
    return DS_OK;
}

static ds_status dsi_cpu_mlp(void *dc, const dsi_weight *gate, const dsi_weight *up, const dsi_weight *down,
                             const float *X, int T, float *Y, dsi_err *e) {
    (void)e;
    dsi_mlp(dc, gate, up, down, NULL, NULL, NULL, X, T, Y);
    return DS_OK;
}

static ds_status dsi_cpu_add(void *dc, float *y, const float *x, size_t n, dsi_err *e) {
    (void)dc;
    (void)e;
    for (size_t i = 0; i < n; i++) y[i] += x[i];
    return DS_OK;
}

static ds_status dsi_cpu_route(void *dc, const dsi_layer *L, const float *logits, int T, int *sel, float *selw,
                               dsi_err *e) {
    (void)e;
    dsi_cpu_ctx *c = dc;
    const ds_model_config *cf = &c->m->cfg;
    int E = cf->n_routed_experts, K = cf->n_experts_per_tok;
    float *scratch = c->ework;   /* worker 0's area: 5 * E floats fit */
    for (int t = 0; t < T; t++)
        dsi_route_kept(cf, logits + (size_t)t * E, L->bias.data ? dsi_wf32(&L->bias) : NULL, L->kept, L->n_kept,
                       scratch, sel + t * K, selw + t * K);
    return DS_OK;
}

static ds_status dsi_cpu_head(void *dc, const dsi_weight *lm_head, const float *X, int n, float *out, dsi_err *e) {
    (void)e;
    dsi_matmul(dc, lm_head, NULL, X, n, lm_head->cols, out, lm_head->rows);
    return DS_OK;
}

static ds_status dsi_cpu_lora(void *dc, const dsi_lora_ab *ab, float s, const float *X, int ldx, float *Y, int ldy,
                              int T, dsi_err *e) {
    if (!dsi_lora_rows(dc, ab, s, X, ldx, Y, ldy, T)) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for LoRA scratch");
    return DS_OK;
}

static ds_status dsi_cpu_silu_mul(void *dc, float *g, const float *u, size_t n, dsi_err *e) {
    (void)dc;
    (void)e;
    for (size_t i = 0; i < n; i++) g[i] = dsi_silu(g[i]) * u[i];
    return DS_OK;
}

static const dsi_device_i dsi_cpu_table = {
    .version = DSI_DEVICE_VERSION,
    .name = "cpu",
    .model_new = dsi_cpu_model_new,
    .model_free = dsi_cpu_model_free,
    .weights = dsi_cpu_weights,
    .cache_stats = dsi_cpu_cache_stats,
    .ctx_new = dsi_cpu_ctx_new,
    .ctx_free = dsi_cpu_ctx_free,
    .begin = dsi_cpu_begin,
    .end = dsi_cpu_end,
    .embed = dsi_cpu_embed,
    .rmsnorm = dsi_cpu_rmsnorm,
    .matmul = dsi_cpu_matmul,
    .mlp = dsi_cpu_mlp,
    .add = dsi_cpu_add,
    .mla_attention = dsi_cpu_mla_attention,
    .mha_attention = dsi_cpu_mha_attention,
    .route = dsi_cpu_route,
    .moe = dsi_cpu_moe,
    .head = dsi_cpu_head,
    .lora = dsi_cpu_lora,
    .silu_mul = dsi_cpu_silu_mul,
    .adapter_new = NULL,    /* the CPU reads the adapter's host matrices */
    .adapter_free = NULL,
};

DSI_FUNC const dsi_device_i *dsi_cpu_device(void) { return &dsi_cpu_table; }
