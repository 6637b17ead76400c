/*
 * elementwise.cu — the MLP's gate activation. The CPU twin is dsi_mlp in
 * forward.c: g[i] = dsi_silu(g[i]) * u[i], dsi_silu(x) = x / (1 + expf(-x)).
 * Same expression per element; only expf may differ (CUDA's is within 2 ulp
 * of the true value, glibc's within 1).
 */
#include "common.cuh"

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
