/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * rope.cu — rotary position embedding, in place. The CPU twin is dsi_rope
 * in forward.c (with the tables of dsi_rope_init, which the caller passes:
 * inv_freq, YaRN-blended when configured, and the cos/sin factor mscale).
 * One thread per rotated pair, grid-stride over (token, head, pair); the
 * pair is rotated by dsi_cuda_rope_pair, dsi_rope's loop body.
 */
#include "common.cuh"

static __global__ void dsi_cuda_k_rope(float *x, int ld, int head_stride, int n_heads, int T, int pos0,
                                       const float *__restrict__ inv_freq, int npairs, float mscale, int interleaved) {
    const size_t n = (size_t)T * (size_t)n_heads * (size_t)npairs;
    for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(k % (size_t)npairs);
        const size_t th = k / (size_t)npairs;
        const int h = (int)(th % (size_t)n_heads), t = (int)(th / (size_t)n_heads);
        float *v = x + (size_t)t * ld + (size_t)h * head_stride;
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + npairs;
        dsi_cuda_rope_pair(v, a, b, pos0 + t, inv_freq[i], mscale);
    }
}

extern "C" ds_status dsi_cuda_rope(float *x, int ld, int head_stride, int n_heads, int T, int pos0,
                                   const float *inv_freq, int rope_dim, float mscale, int interleaved, void *stream,
                                   char *msg, size_t len) {
    DSI_CUDA_ARG(rope_dim > 0 && rope_dim % 2 == 0, "dsi_cuda_rope: rope_dim %d must be even and positive", rope_dim);
    DSI_CUDA_ARG(n_heads > 0 && T >= 0 && pos0 >= 0 && head_stride >= 0,
                 "dsi_cuda_rope: bad shape n_heads %d T %d pos0 %d head_stride %d", n_heads, T, pos0, head_stride);
    DSI_CUDA_ARG(n_heads == 1 || head_stride >= rope_dim, "dsi_cuda_rope: head_stride %d < rope_dim %d", head_stride,
                 rope_dim);
    DSI_CUDA_ARG((int64_t)ld >= (int64_t)(n_heads - 1) * head_stride + rope_dim,
                 "dsi_cuda_rope: row stride %d does not hold %d heads", ld, n_heads);
    DSI_CUDA_ARG((int64_t)pos0 + T <= INT32_MAX, "dsi_cuda_rope: positions overflow");
    if (T == 0) return DS_OK;
    DSI_CUDA_ARG(x && inv_freq, "dsi_cuda_rope: NULL buffer");
    const int npairs = rope_dim / 2;
    const size_t n = (size_t)T * (size_t)n_heads * (size_t)npairs;
    const unsigned threads = 256;
    dsi_cuda_k_rope<<<dsi_cuda_blocks(n, threads), threads, 0, (cudaStream_t)stream>>>(
        x, ld, head_stride, n_heads, T, pos0, inv_freq, npairs, mscale, interleaved);
    DSI_CUDA_LAUNCHED("rope");
    return DS_OK;
}
