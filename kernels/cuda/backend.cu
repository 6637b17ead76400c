/*
 * backend.cu — the CUDA backend's foundations: device discovery and the
 * dequantize kernels (F16, Q8_0 -> F32) that the matrix kernels build on.
 */
#include "common.cuh"

/* ==== Devices ============================================================= */
extern "C" ds_status dsi_cuda_device_count(int *n, char *msg, size_t len) {
    if (!n) return dsi_cuda_fail(DS_ERR_INVALID_ARG, msg, len, "dsi_cuda_device_count: n is NULL");
    *n = 0;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        (void)cudaGetLastError(); /* do not leave the error for the next caller */
        return dsi_cuda_status(err, "cudaGetDeviceCount", msg, len);
    }
    if (count <= 0) return dsi_cuda_fail(DS_ERR_NO_DEVICE, msg, len, "no CUDA device");
    *n = count;
    return DS_OK;
}

/* ==== Dequantize ========================================================== */
/* One thread per output element, grid-stride. Q8_0 blocks are 34 bytes, so
 * the scale is only 2-byte aligned: read it bytewise. */
static __global__ void dsi_cuda_k_dequant_q8_0(const uint8_t *__restrict__ in, float *__restrict__ out, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint8_t *b = in + (i / DSI_CUDA_Q8_BLOCK) * DSI_CUDA_Q8_BLOCK_BYTES;
        float scale = dsi_cuda_f16_to_f32((uint16_t)(b[0] | (b[1] << 8)));
        out[i] = (float)(int8_t)b[2 + i % DSI_CUDA_Q8_BLOCK] * scale;
    }
}

static __global__ void dsi_cuda_k_dequant_f16(const uint16_t *__restrict__ in, float *__restrict__ out, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = dsi_cuda_f16_to_f32(in[i]);
}

/* Stored bytes of n elements of t; false for a bad type, shape or overflow. */
static bool dsi_cuda_bytes(ds_dtype t, size_t n, size_t *out) {
    switch (t) {
    case DS_DTYPE_F32:
        if (n > SIZE_MAX / 4) return false;
        *out = n * 4;
        return true;
    case DS_DTYPE_F16:
        if (n > SIZE_MAX / 2) return false;
        *out = n * 2;
        return true;
    case DS_DTYPE_Q8_0:
        if (n % DSI_CUDA_Q8_BLOCK) return false;
        if (n / DSI_CUDA_Q8_BLOCK > SIZE_MAX / DSI_CUDA_Q8_BLOCK_BYTES) return false;
        *out = n / DSI_CUDA_Q8_BLOCK * DSI_CUDA_Q8_BLOCK_BYTES;
        return true;
    }
    return false;
}

extern "C" ds_status dsi_cuda_dequantize(ds_dtype t, const void *src, float *dst, size_t n, void *stream, char *msg,
                                         size_t len) {
    size_t bytes;
    if (!dsi_cuda_bytes(t, n, &bytes)) {
        if (msg && len) snprintf(msg, len, "cuda dequantize: %zu elements of dtype %d is not a valid size", n, (int)t);
        return DS_ERR_INVALID_ARG;
    }
    if (n == 0) return DS_OK;
    if (!src || !dst) return dsi_cuda_fail(DS_ERR_INVALID_ARG, msg, len, "cuda dequantize: NULL buffer");
    cudaStream_t s = (cudaStream_t)stream;
    const unsigned threads = 256;
    switch (t) {
    case DS_DTYPE_F32:
        DSI_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
        return DS_OK;
    case DS_DTYPE_F16:
        dsi_cuda_k_dequant_f16<<<dsi_cuda_blocks(n, threads), threads, 0, s>>>((const uint16_t *)src, dst, n);
        break;
    case DS_DTYPE_Q8_0:
        dsi_cuda_k_dequant_q8_0<<<dsi_cuda_blocks(n, threads), threads, 0, s>>>((const uint8_t *)src, dst, n);
        break;
    }
    DSI_CUDA_TRY(cudaGetLastError());
    return DS_OK;
}

extern "C" ds_status dsi_cuda_dequantize_host(ds_dtype t, const void *src, size_t src_bytes, float *dst, size_t n,
                                              char *msg, size_t len) {
    size_t bytes;
    if (!dsi_cuda_bytes(t, n, &bytes) || bytes != src_bytes || n > SIZE_MAX / sizeof(float)) {
        if (msg && len)
            snprintf(msg, len, "cuda dequantize: %zu bytes do not hold %zu elements of dtype %d", src_bytes, n, (int)t);
        return DS_ERR_INVALID_ARG;
    }
    if (n == 0) return DS_OK;
    if (!src || !dst) return dsi_cuda_fail(DS_ERR_INVALID_ARG, msg, len, "cuda dequantize: NULL buffer");
    void *d_src = NULL;
    float *d_dst = NULL;
    ds_status st = DS_OK;
    cudaError_t err;
    const char *what = "cudaMalloc";
    if ((err = cudaMalloc(&d_src, bytes)) != cudaSuccess) goto cuda_fail;
    if ((err = cudaMalloc((void **)&d_dst, n * sizeof(float))) != cudaSuccess) goto cuda_fail;
    what = "cudaMemcpy (to device)";
    if ((err = cudaMemcpy(d_src, src, bytes, cudaMemcpyHostToDevice)) != cudaSuccess) goto cuda_fail;
    st = dsi_cuda_dequantize(t, d_src, d_dst, n, NULL, msg, len);
    if (st != DS_OK) goto done;
    what = "cudaMemcpy (to host)"; /* also reports errors from the kernel */
    if ((err = cudaMemcpy(dst, d_dst, n * sizeof(float), cudaMemcpyDeviceToHost)) != cudaSuccess) goto cuda_fail;
    goto done;
cuda_fail:
    st = dsi_cuda_status(err, what, msg, len);
done:
    cudaFree(d_src);
    cudaFree(d_dst);
    return st;
}
