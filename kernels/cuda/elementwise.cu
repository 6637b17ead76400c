/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * elementwise.cu — the element- and row-wise steps of the forward pass: the
 * MLP's gate activation, the embedding lookup, the residual add, and the
 * MoE's gather of an expert's tokens and weighted scatter-add of its
 * outputs.
 *
 * CPU twins (forward.c), each the same expression per element:
 *   silu_mul      dsi_mlp: g[i] = dsi_silu(g[i]) * u[i], dsi_silu(x) =
 *                 x / (1 + expf(-x)); only expf may differ (CUDA's is within
 *                 2 ulp of the true value, glibc's within 1)
 *   embed         dsi_forward: dsi_dequant_row of row tok[t] of the table
 *   add           dsi_attention, dsi_ffn: c->x[i] += c->tmp[i]
 *   gather_rows   dsi_moe: memcpy of row etok[i] / K of xn into row i of xe
 *   scatter_add   dsi_moe: dst[d] += wgt * src[d], one expert at a time
 * All but silu_mul are exact: a copy, a dequantization that is exact in
 * F32, or one product and one sum rounded as on the CPU (no FMA).
 */
#include "common.cuh"

/* ==== SiLU(gate) * up ===================================================== */
static __global__ void dsi_cuda_k_silu_mul(float *__restrict__ g, const float *__restrict__ u, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = g[i];
        g[i] = (v / (1.0f + expf(-v))) * u[i];
    }
}

extern "C" ds_status dsi_cuda_silu_mul(float *g, const float *u, size_t n, void *stream, char *msg, size_t len) {
    if (n == 0) return DS_OK;
    DSI_CUDA_ARG(g && u, "dsi_cuda_silu_mul: NULL buffer");
    const unsigned threads = 256;
    dsi_cuda_k_silu_mul<<<dsi_cuda_blocks(n, threads), threads, 0, (cudaStream_t)stream>>>(g, u, n);
    DSI_CUDA_LAUNCHED("silu_mul");
    return DS_OK;
}

/* ==== Embedding =========================================================== */
/* One thread per output element over all T rows, grid-stride; element j of
 * a row dequantized as the dequantize kernel does (dsi_cuda_w). A token
 * outside the table (the caller checks; this only keeps a bad one from
 * reading outside it) gives a row of NaN. */
template <int DT>
static __global__ void dsi_cuda_k_embed(const uint8_t *__restrict__ table, size_t rb, int rows, int cols,
                                        const int *__restrict__ tok, float *__restrict__ x, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t t = i / (size_t)cols;
        const int j = (int)(i % (size_t)cols), r = tok[t];
        x[i] = r >= 0 && r < rows ? dsi_cuda_w<DT>(table + (size_t)r * rb, j) : __int_as_float(0x7fc00000);
    }
}

extern "C" ds_status dsi_cuda_embed(ds_dtype t, const void *table, int rows, int cols, const int *tok, int T, float *x,
                                    void *stream, char *msg, size_t len) {
    size_t rb;
    DSI_CUDA_ARG(dsi_cuda_row_bytes(t, cols, &rb), "dsi_cuda_embed: rows of %d values of dtype %d (%s)", cols, (int)t,
                 dsi_cuda_dtype_name(t));
    DSI_CUDA_ARG(rows > 0 && T >= 0, "dsi_cuda_embed: %d rows, %d tokens", rows, T);
    if (T == 0) return DS_OK;
    DSI_CUDA_ARG(table && tok && x, "dsi_cuda_embed: NULL buffer");
    const size_t n = (size_t)T * (size_t)cols;
    const unsigned threads = 256, blocks = dsi_cuda_blocks(n, threads);
    cudaStream_t s = (cudaStream_t)stream;
    const uint8_t *tb = (const uint8_t *)table;
#define EMBED(DT) dsi_cuda_k_embed<DT><<<blocks, threads, 0, s>>>(tb, rb, rows, cols, tok, x, n)
    switch (t) {
    case DS_DTYPE_F32: EMBED(DS_DTYPE_F32); break;
    case DS_DTYPE_F16: EMBED(DS_DTYPE_F16); break;
    case DS_DTYPE_Q8_0: EMBED(DS_DTYPE_Q8_0); break;
    case DS_DTYPE_Q4_0: EMBED(DS_DTYPE_Q4_0); break;
    default: break;   /* refused above */
    }
#undef EMBED
    DSI_CUDA_LAUNCHED("embed");
    return DS_OK;
}

/* ==== Residual add ======================================================== */
static __global__ void dsi_cuda_k_add(float *__restrict__ y, const float *__restrict__ x, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = y[i] + x[i];
}

extern "C" ds_status dsi_cuda_add(float *y, const float *x, size_t n, void *stream, char *msg, size_t len) {
    if (n == 0) return DS_OK;
    DSI_CUDA_ARG(y && x, "dsi_cuda_add: NULL buffer");
    const unsigned threads = 256;
    dsi_cuda_k_add<<<dsi_cuda_blocks(n, threads), threads, 0, (cudaStream_t)stream>>>(y, x, n);
    DSI_CUDA_LAUNCHED("add");
    return DS_OK;
}

/* ==== MoE gather and scatter ============================================== */
/* One thread per element of the n rows of cols, grid-stride: row i, column
 * j of the compact side (dst of the gather, src of the scatter). */
static __global__ void dsi_cuda_k_gather(float *__restrict__ dst, const float *__restrict__ src,
                                         const int *__restrict__ idx, int cols, size_t n) {
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t i = e / (size_t)cols, j = e % (size_t)cols;
        dst[e] = src[(size_t)idx[i] * (size_t)cols + j];
    }
}

/* The CPU adds wgt * src[d] without FMA (C11, no contraction): the product
 * and the sum are rounded separately here too, so the result is exact. The
 * rows idx[i] of one call are distinct, so no two threads share an element. */
static __global__ void dsi_cuda_k_scatter_add(float *__restrict__ y, const float *__restrict__ src,
                                              const int *__restrict__ idx, const float *__restrict__ w, int cols,
                                              size_t n) {
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t i = e / (size_t)cols, j = e % (size_t)cols;
        float *d = y + (size_t)idx[i] * (size_t)cols + j;
        *d = __fadd_rn(*d, __fmul_rn(w[i], src[e]));
    }
}

static ds_status dsi_cuda_rows_check(const char *fn, int n, int cols, char *msg, size_t len) {
    DSI_CUDA_ARG(n >= 0 && cols > 0, "%s: %d rows of %d", fn, n, cols);
    return DS_OK;
}

extern "C" ds_status dsi_cuda_gather_rows(float *dst, const float *src, const int *idx, int n, int cols, void *stream,
                                          char *msg, size_t len) {
    ds_status st = dsi_cuda_rows_check("dsi_cuda_gather_rows", n, cols, msg, len);
    if (st != DS_OK) return st;
    if (n == 0) return DS_OK;
    DSI_CUDA_ARG(dst && src && idx, "dsi_cuda_gather_rows: NULL buffer");
    const size_t total = (size_t)n * (size_t)cols;
    const unsigned threads = 256;
    dsi_cuda_k_gather<<<dsi_cuda_blocks(total, threads), threads, 0, (cudaStream_t)stream>>>(dst, src, idx, cols,
                                                                                             total);
    DSI_CUDA_LAUNCHED("gather_rows");
    return DS_OK;
}

extern "C" ds_status dsi_cuda_scatter_add(float *y, const float *src, const int *idx, const float *w, int n, int cols,
                                          void *stream, char *msg, size_t len) {
    ds_status st = dsi_cuda_rows_check("dsi_cuda_scatter_add", n, cols, msg, len);
    if (st != DS_OK) return st;
    if (n == 0) return DS_OK;
    DSI_CUDA_ARG(y && src && idx && w, "dsi_cuda_scatter_add: NULL buffer");
    const size_t total = (size_t)n * (size_t)cols;
    const unsigned threads = 256;
    dsi_cuda_k_scatter_add<<<dsi_cuda_blocks(total, threads), threads, 0, (cudaStream_t)stream>>>(y, src, idx, w, cols,
                                                                                                  total);
    DSI_CUDA_LAUNCHED("scatter_add");
    return DS_OK;
}
