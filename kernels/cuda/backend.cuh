/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * backend.cuh — the C-callable face of the CUDA backend: every dsi_cuda_*
 * entry point and the backend table (dsi_backend_i) that lists them.
 *
 * Plain C11 and C++: no CUDA types appear here (streams are `void *`, a
 * cudaStream_t; NULL is the legacy default stream), so the C side and the
 * tests include it without the toolkit's headers. common.cuh includes it,
 * so the .cu files define exactly what is declared here.
 *
 * Conventions, for every function below:
 *   - Pointers named as device memory are device addresses; host memory is
 *     named so. Matrices are row-major; `ld*` are row strides in elements.
 *   - Failures return a ds_status and write "what: cudaErrorName
 *     (description)" or a sentence into msg (len bytes, always
 *     NUL-terminated when len > 0; msg may be NULL). Nothing aborts, exits or
 *     prints. Arguments are checked before any CUDA call, so a bad shape is
 *     DS_ERR_INVALID_ARG on any machine, with or without a device.
 *   - Ops are asynchronous on `stream`: a launch error is reported by the
 *     call, an execution error at the next dsi_cuda_sync (or download).
 *   - Status mapping: no driver/device DS_ERR_NO_DEVICE; allocation
 *     DS_ERR_NOMEM; bad arguments DS_ERR_INVALID_ARG; anything else
 *     DS_ERR_BACKEND.
 *   - Not thread-safe per object: a stream or a dsi_blas belongs to one
 *     thread at a time (as a ds_context does).
 */
#ifndef DS_CUDA_BACKEND_CUH
#define DS_CUDA_BACKEND_CUH

#include <stddef.h>
#include <stdint.h>

#include "../../deepseek.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Devices, streams, memory ============================================ */
/* Number of CUDA devices in *n. No driver or no device: *n = 0 and
 * DS_ERR_NO_DEVICE; any other failure: *n = 0 and DS_ERR_BACKEND. */
ds_status dsi_cuda_device_count(int *n, char *msg, size_t len);
/* Makes `device` current for the calling thread (cudaSetDevice). */
ds_status dsi_cuda_set_device(int device, char *msg, size_t len);
/* Free and total memory of the current device. */
ds_status dsi_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, char *msg, size_t len);
/* The current device's name into buf (NUL-terminated). */
ds_status dsi_cuda_device_name(char *buf, size_t buflen, char *msg, size_t len);
/* A non-blocking stream in *stream; free with dsi_cuda_stream_free (NULL ok). */
ds_status dsi_cuda_stream_new(void **stream, char *msg, size_t len);
void dsi_cuda_stream_free(void *stream);
/* Waits for all work queued on stream; reports errors of earlier kernels. */
ds_status dsi_cuda_sync(void *stream, char *msg, size_t len);
/* Device memory. Out of memory is DS_ERR_NOMEM with the size asked and the
 * free and total device memory in the message. bytes == 0 gives *p = NULL. */
ds_status dsi_cuda_alloc(void **p, size_t bytes, char *msg, size_t len);
void dsi_cuda_free(void *p);
/* Page-locked host memory (staging for uploads that overlap compute). */
ds_status dsi_cuda_host_alloc(void **p, size_t bytes, char *msg, size_t len);
void dsi_cuda_host_free(void *p);
/* Copies, queued on stream. From pageable host memory the upload returns
 * once the source may be reused; download is complete only after a sync. */
ds_status dsi_cuda_upload(void *dst_dev, const void *src_host, size_t bytes, void *stream, char *msg, size_t len);
ds_status dsi_cuda_download(void *dst_host, const void *src_dev, size_t bytes, void *stream, char *msg, size_t len);

/* ==== Dequantize ========================================================== */
/* n elements of type t at device address src into device floats at dst.
 * Q8_0 and Q4_0 need n % 32 == 0. */
ds_status dsi_cuda_dequantize(ds_dtype t, const void *src, float *dst, size_t n, void *stream, char *msg,
                              size_t len);
/* The same from host memory to host memory through the device (src_bytes
 * must be exactly the size of n elements), synchronous: for tests. */
ds_status dsi_cuda_dequantize_host(ds_dtype t, const void *src, size_t src_bytes, float *dst, size_t n, char *msg,
                                   size_t len);

/* ==== Matrix products (matmul.cu) ======================================== */
/* Y (T, rows; row stride ldy) = X (T, cols; row stride ldx) W^T, where W is
 * `rows` rows of `cols` values of type t stored back to back (a Q8_0 row is
 * cols/32 blocks of 34 bytes, a Q4_0 row cols/32 blocks of 18 bytes; cols %
 * 32 == 0 for both). F32 accumulation. */

/* Decode: a dequantizing GEMV, one warp per row, each row read once for all
 * T <= DSI_CUDA_GEMV_MAX_T tokens. */
#define DSI_CUDA_GEMV_MAX_T 4
ds_status dsi_cuda_gemv(ds_dtype t, const void *w, int rows, int cols, const float *x, int ldx, int T, float *y,
                        int ldy, void *stream, char *msg, size_t len);

/* Prefill: cuBLAS. A dsi_blas holds a cuBLAS handle and a device
 * workspace into which tiles of rows are dequantized to F32 before an F32
 * GEMM (see README.md for why F32 and not F16). workspace_bytes 0 means
 * 64 MiB. allow_tf32 lets cuBLAS use TF32 tensor cores (faster, ~1e-3
 * relative error; off for CPU parity). */
typedef struct dsi_blas dsi_blas;   /* opaque, per backend */
ds_status dsi_cuda_blas_new(dsi_blas **out, size_t workspace_bytes, int allow_tf32, char *msg, size_t len);
void dsi_cuda_blas_free(dsi_blas *b);
/* T <= DSI_CUDA_GEMV_MAX_T runs the GEMV; larger T tiles through cuBLAS.
 * Queued work uses b's workspace: one per stream. */
ds_status dsi_cuda_matmul(dsi_blas *b, ds_dtype t, const void *w, int rows, int cols, const float *x, int ldx,
                          int T, float *y, int ldy, void *stream, char *msg, size_t len);

/* ==== Norms and element-wise (norm.cu, elementwise.cu) ==================== */
/* For each of `rows` rows: out = x / sqrt(mean(x^2) + eps) * w (n values;
 * row strides ldo, ldx; out == x allowed). */
ds_status dsi_cuda_rmsnorm(float *out, int ldo, const float *x, int ldx, const float *w, int n, int rows, float eps,
                           void *stream, char *msg, size_t len);
/* g = silu(g) * u over n floats (the gate/up product of an MLP). */
ds_status dsi_cuda_silu_mul(float *g, const float *u, size_t n, void *stream, char *msg, size_t len);

/* ==== Rotary embeddings (rope.cu) ========================================= */
/* Rotates, in place, n_heads vectors of rope_dim values per token: token t
 * (position pos0 + t) has its row at x + t * ld and head h starts h *
 * head_stride further. inv_freq (device, rope_dim / 2) and mscale (YaRN's
 * cos/sin factor, 1 without YaRN) are the CPU's dsi_rope_init results.
 * interleaved: pairs (2i, 2i+1) (MLA); otherwise (i, i + rope_dim/2) (MHA). */
ds_status dsi_cuda_rope(float *x, int ld, int head_stride, int n_heads, int T, int pos0, const float *inv_freq,
                        int rope_dim, float mscale, int interleaved, void *stream, char *msg, size_t len);

/* ==== MLA attention (attention.cu) ======================================== */
/* One layer's absorbed multi-head latent attention as a backend sees it
 * (a host struct; the pointers are the backend's memory, device memory for
 * CUDA). */
typedef struct dsi_mla_layer {
    int n_heads;                   /* H */
    int nope_dim;                  /* dn: qk_nope_head_dim */
    int rope_dim;                  /* dr: qk_rope_head_dim (even) */
    int v_dim;                     /* dv: v_head_dim */
    int rank;                      /* R: kv_lora_rank */
    float scale;                   /* softmax scale, YaRN mscale^2 included */
    float rope_mscale;             /* cos/sin factor */
    const float *inv_freq;         /* device (dr / 2) */
    ds_dtype kv_b_dtype;
    const void *kv_b;              /* device (H * (dn + dv), R): per head dn W_uk rows, then dv W_uv rows */
    float *cache_lat;              /* device (n_ctx, R): normalised latent per position */
    float *cache_pe;               /* device (n_ctx, dr): roped shared key per position */
    int n_ctx;                     /* positions the cache holds */
} dsi_mla_layer;

/* Appends T tokens at positions pos0..: kva (device, (T, R + dr)) is the
 * kv_a_proj output; the latent is RMS-normalised with norm_w (device, R)
 * into cache_lat, the rope part roped (interleaved) into cache_pe. */
ds_status dsi_cuda_mla_kv_store(const dsi_mla_layer *a, const float *kva, const float *norm_w, float eps, int T,
                                int pos0, void *stream, char *msg, size_t len);
/* Attention for T tokens at positions pos0.. (T = 1 decode, T > 1 causal
 * prefill: token t sees positions [0, pos0 + t]; the cache must already
 * hold them). q (device, (T, H * (dn + dr))) per head [nope | rope], the
 * rope part not yet rotated (rotated here, q itself is not modified); out
 * (device, (T, H * dv)). One block per (token, head). */
ds_status dsi_cuda_mla_attention(const dsi_mla_layer *a, const float *q, int T, int pos0, float *out, void *stream,
                                 char *msg, size_t len);

/* kv_b_proj adapted by LoRA adapters (W + sum_k s_k B_k A_k, unmerged):
 * dsi_cuda_mla_attention with, in the absorbed form as the CPU's
 * dsi_mla_task, qlat += s A^T (B_k(h)^T q_nope) and out += s B_v(h) (A lat)
 * for each adapter in order. One adapter as the kernel takes it (a host
 * struct; the matrices device memory, F32 or F16). */
#define DSI_CUDA_MLA_MAX_LORA 8        /* adapters per call (DS_MAX_ADAPTERS) */
#define DSI_CUDA_MLA_MAX_RANK 1024     /* r of one (DSI_LORA_MAX_RANK) */
typedef struct dsi_mla_lora {
    ds_dtype a_dtype, b_dtype;
    const void *a;                 /* device (r, R) */
    const void *b;                 /* device (H * (dn + dv), r): rows as kv_b's */
    int r;
    float s;                       /* the scale the sequence applies it with */
} dsi_mla_lora;
ds_status dsi_cuda_mla_attention_lora(const dsi_mla_layer *a, const dsi_mla_lora *ad, int n_ad, const float *q, int T,
                                      int pos0, float *out, void *stream, char *msg, size_t len);

/* ==== LoRA products (matmul.cu) =========================================== */
/* Rows of y (T, out; stride ldy) += s * B (A x) for the T rows of x (T, in;
 * stride ldx), A (r, in) of type ta and B (out, r) of type tb (F32 or F16,
 * rows back to back), as the CPU's dsi_lora_rows: t = x A^T, t *= s, z = t
 * B^T, y += z (two dsi_cuda_matmul products and two element-wise kernels).
 * tmp: device scratch of at least DSI_CUDA_LORA_TMP(T, r, out) floats, not
 * used by any other queued work; b as for dsi_cuda_matmul. */
#define DSI_CUDA_LORA_TMP(T, r, out) ((size_t)(T) * ((size_t)(r) + (size_t)(out)))
ds_status dsi_cuda_lora(dsi_blas *b, ds_dtype ta, const void *a, ds_dtype tb, const void *bm, int r, int in, int out,
                        float s, const float *x, int ldx, int T, float *y, int ldy, float *tmp, void *stream,
                        char *msg, size_t len);

/* ==== MoE routing (route.cu) ============================================== */
/* dsi_route for T tokens: logits (device, (T, E)) and the optional
 * e_score_correction_bias (device, E; selection only) give sel (device int,
 * (T, K)) and w (device, (T, K)), K = n_experts_per_tok, largest first.
 * With kept (device, n_kept ids ascending: a layer whose dropped experts'
 * router rows are gone), the first n_kept values of each logits row (stride
 * still E) and of bias are those experts', and the others route as if
 * their logits were -inf (dsi_route_kept). The config is read on the host
 * (cf is a host pointer). */
ds_status dsi_cuda_route(const ds_model_config *cf, const float *logits, const float *bias, const int *kept, int n_kept,
                         int T, int *sel, float *w, void *stream, char *msg, size_t len);

/* ==== Events and plain copies (backend.cu) ================================ */
/* An event without timing (cudaEventDisableTiming). */
ds_status dsi_cuda_event_new(void **ev, char *msg, size_t len);
void dsi_cuda_event_free(void *ev);
/* Marks the point reached by the work queued on stream so far. */
ds_status dsi_cuda_event_record(void *ev, void *stream, char *msg, size_t len);
/* Work queued on stream after this call waits for ev (cudaStreamWaitEvent;
 * the host does not wait). */
ds_status dsi_cuda_stream_wait(void *stream, void *ev, char *msg, size_t len);
/* The host waits until ev has been reached; reports errors of earlier work. */
ds_status dsi_cuda_event_sync(void *ev, char *msg, size_t len);
/* bytes of device memory set to the byte value v, queued on stream. */
ds_status dsi_cuda_memset(void *dst, int v, size_t bytes, void *stream, char *msg, size_t len);
/* Device-to-device copy, queued on stream. */
ds_status dsi_cuda_copy(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len);

/* ==== Rows: embedding, residual, MoE gather and scatter (elementwise.cu) == */
/* x (T, cols) row t = the dequantized row tok[t] of table (rows x cols of
 * type t, stored back to back; Q8_0 and Q4_0 need cols % 32 == 0). tok is
 * device memory (T ints, each in [0, rows): checked by the caller). */
ds_status dsi_cuda_embed(ds_dtype t, const void *table, int rows, int cols, const int *tok, int T, float *x,
                         void *stream, char *msg, size_t len);
/* y[i] += x[i] over n floats (the residual connection). */
ds_status dsi_cuda_add(float *y, const float *x, size_t n, void *stream, char *msg, size_t len);
/* dst row i = src row idx[i], for i < n; rows of cols floats, row strides
 * cols. idx is device memory. */
ds_status dsi_cuda_gather_rows(float *dst, const float *src, const int *idx, int n, int cols, void *stream, char *msg,
                               size_t len);
/* y row idx[i] += w[i] * src row i, for i < n (rows of cols floats). The idx
 * of one call must be distinct (one expert sees a token once), so no two
 * threads add into one element. idx and w are device memory. */
ds_status dsi_cuda_scatter_add(float *y, const float *src, const int *idx, const float *w, int n, int cols,
                               void *stream, char *msg, size_t len);

/* ==== Multi-head attention, DeepSeek-MoE (attention.cu) =================== */
typedef struct dsi_mha_layer {
    int n_heads;                   /* H */
    int n_kv_heads;                /* Hk; H % Hk == 0, head h reads kv head h / (H / Hk) */
    int head_dim;                  /* hd */
    float scale;                   /* softmax scale: 1 / sqrt(hd) */
    const float *cache_k;          /* device (n_ctx, Hk * hd): roped keys per position */
    const float *cache_v;          /* device (n_ctx, Hk * hd) */
    int n_ctx;
} dsi_mha_layer;
/* Attention for T tokens at positions pos0.. (causal, as for MLA): q
 * (device, (T, H * hd)), already roped; out (device, (T, H * hd)). The cache
 * must already hold positions [0, pos0 + T). One block per (token, head). */
ds_status dsi_cuda_mha_attention(const dsi_mha_layer *a, const float *q, int T, int pos0, float *out, void *stream,
                                 char *msg, size_t len);

/* ==== The backend table =================================================== */
/* What a compute backend offers, as function pointers (ggml's
 * ggml_backend_i). The forward pass will call through this table so the
 * CPU and CUDA paths share one driver. `version` is the
 * DSI_BACKEND_VERSION the table was built against: a caller refuses a table
 * whose version it does not know. Fields are only ever appended; a change of
 * meaning bumps the version. */
#define DSI_BACKEND_VERSION 2   /* 2: lora, mla_attention_lora appended */

typedef struct dsi_backend_i {
    int version;
    const char *name;                           /* "cuda" */
    /* device and memory */
    ds_status (*init)(int device, char *msg, size_t len);      /* select a device (after device_count) */
    ds_status (*device_count)(int *n, char *msg, size_t len);
    ds_status (*stream_new)(void **stream, char *msg, size_t len);
    void (*stream_free)(void *stream);
    ds_status (*sync)(void *stream, char *msg, size_t len);
    ds_status (*alloc)(void **p, size_t bytes, char *msg, size_t len);
    void (*free)(void *p);
    ds_status (*host_alloc)(void **p, size_t bytes, char *msg, size_t len);
    void (*host_free)(void *p);
    ds_status (*upload)(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len);
    ds_status (*download)(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len);
    ds_status (*blas_new)(dsi_blas **out, size_t workspace_bytes, int allow_tf32, char *msg, size_t len);
    void (*blas_free)(dsi_blas *b);
    /* operations */
    ds_status (*dequantize)(ds_dtype t, const void *src, float *dst, size_t n, void *stream, char *msg, size_t len);
    ds_status (*gemv)(ds_dtype t, const void *w, int rows, int cols, const float *x, int ldx, int T, float *y,
                      int ldy, void *stream, char *msg, size_t len);
    ds_status (*matmul)(dsi_blas *b, ds_dtype t, const void *w, int rows, int cols, const float *x, int ldx,
                        int T, float *y, int ldy, void *stream, char *msg, size_t len);
    ds_status (*rmsnorm)(float *out, int ldo, const float *x, int ldx, const float *w, int n, int rows, float eps,
                         void *stream, char *msg, size_t len);
    ds_status (*silu_mul)(float *g, const float *u, size_t n, void *stream, char *msg, size_t len);
    ds_status (*rope)(float *x, int ld, int head_stride, int n_heads, int T, int pos0, const float *inv_freq,
                      int rope_dim, float mscale, int interleaved, void *stream, char *msg, size_t len);
    ds_status (*mla_kv_store)(const dsi_mla_layer *a, const float *kva, const float *norm_w, float eps, int T,
                              int pos0, void *stream, char *msg, size_t len);
    ds_status (*mla_attention)(const dsi_mla_layer *a, const float *q, int T, int pos0, float *out, void *stream,
                               char *msg, size_t len);
    ds_status (*route)(const ds_model_config *cf, const float *logits, const float *bias, const int *kept, int n_kept,
                       int T, int *sel, float *w, void *stream, char *msg, size_t len);
    /* appended (still version 1): events, copies, row operations, MHA */
    ds_status (*event_new)(void **ev, char *msg, size_t len);
    void (*event_free)(void *ev);
    ds_status (*event_record)(void *ev, void *stream, char *msg, size_t len);
    ds_status (*stream_wait)(void *stream, void *ev, char *msg, size_t len);
    ds_status (*event_sync)(void *ev, char *msg, size_t len);
    ds_status (*memset)(void *dst, int v, size_t bytes, void *stream, char *msg, size_t len);
    ds_status (*copy)(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len);
    ds_status (*embed)(ds_dtype t, const void *table, int rows, int cols, const int *tok, int T, float *x,
                       void *stream, char *msg, size_t len);
    ds_status (*add)(float *y, const float *x, size_t n, void *stream, char *msg, size_t len);
    ds_status (*gather_rows)(float *dst, const float *src, const int *idx, int n, int cols, void *stream, char *msg,
                             size_t len);
    ds_status (*scatter_add)(float *y, const float *src, const int *idx, const float *w, int n, int cols,
                             void *stream, char *msg, size_t len);
    ds_status (*mha_attention)(const dsi_mha_layer *a, const float *q, int T, int pos0, float *out, void *stream,
                               char *msg, size_t len);
    /* free and total device memory of the current device */
    ds_status (*mem_info)(size_t *free_bytes, size_t *total_bytes, char *msg, size_t len);
    /* the current device's name ("NVIDIA H200"), for logs */
    ds_status (*device_name)(char *buf, size_t buflen, char *msg, size_t len);
    /* version 2: LoRA adapters */
    ds_status (*lora)(dsi_blas *b, ds_dtype ta, const void *a, ds_dtype tb, const void *bm, int r, int in, int out,
                      float s, const float *x, int ldx, int T, float *y, int ldy, float *tmp, void *stream, char *msg,
                      size_t len);
    ds_status (*mla_attention_lora)(const dsi_mla_layer *a, const dsi_mla_lora *ad, int n_ad, const float *q, int T,
                                    int pos0, float *out, void *stream, char *msg, size_t len);
} dsi_backend_i;

/* The CUDA backend's table (static storage; never NULL). */
const dsi_backend_i *dsi_cuda_backend(void);

#ifdef __cplusplus
}
#endif

#endif /* DS_CUDA_BACKEND_CUH */
