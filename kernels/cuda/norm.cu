/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * norm.cu — RMSNorm. The CPU twin is dsi_rmsnorm (kernels/cpu/ops.c):
 *     ss = sum x^2; r = 1 / sqrtf(ss / n + eps); out = x * r * w
 * One block per row; the sum of squares is a block reduction (partial sums
 * per thread, then warps, then the block), the rest is element-wise with
 * the CPU's expression.
 */
#include "common.cuh"

#define NORM_THREADS 256

/* out and x may be the same rows (in place): every thread reads its own
 * elements for the sum before the reduction's barriers and writes them after. */
static __global__ void __launch_bounds__(NORM_THREADS)
    dsi_cuda_k_rmsnorm(float *out, int ldo, const float *x, int ldx, const float *__restrict__ w, int n, float eps) {
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * ldx;
    float *orow = out + (size_t)blockIdx.x * ldo;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = dsi_cuda_block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * r * w[i];
}

extern "C" ds_status dsi_cuda_rmsnorm(float *out, int ldo, const float *x, int ldx, const float *w, int n, int rows,
                                      float eps, void *stream, char *msg, size_t len) {
    DSI_CUDA_ARG(n > 0 && rows >= 0, "dsi_cuda_rmsnorm: bad shape n %d rows %d", n, rows);
    DSI_CUDA_ARG(ldo >= n && ldx >= n, "dsi_cuda_rmsnorm: strides ldo %d ldx %d < n %d", ldo, ldx, n);
    DSI_CUDA_ARG(!(out == x && ldo != ldx), "dsi_cuda_rmsnorm: in place needs ldo == ldx");
    if (rows == 0) return DS_OK;
    DSI_CUDA_ARG(out && x && w, "dsi_cuda_rmsnorm: NULL buffer");
    dsi_cuda_k_rmsnorm<<<(unsigned)rows, NORM_THREADS, 0, (cudaStream_t)stream>>>(out, ldo, x, ldx, w, n, eps);
    DSI_CUDA_LAUNCHED("rmsnorm");
    return DS_OK;
}
