/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * backend.cu — the CUDA backend's foundations: devices, streams and memory
 * (out-of-memory reported with sizes), events and plain device copies, the
 * dequantize kernels (F16, Q8_0, Q4_0 -> F32) that the matrix kernels build
 * on, and the backend table.
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

extern "C" ds_status dsi_cuda_set_device(int device, char *msg, size_t len) {
    DSI_CUDA_ARG(device >= 0, "dsi_cuda_set_device: device %d is negative", device);
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        char what[64];
        snprintf(what, sizeof what, "cudaSetDevice(%d)", device);
        return dsi_cuda_status(err, what, msg, len);
    }
    return DS_OK;
}

/* Device queries (for logs and cache budgets) may run before anything else
 * on a machine without a device: their errors are cleared, as above. */
extern "C" ds_status dsi_cuda_mem_info(size_t *free_bytes, size_t *total_bytes, char *msg, size_t len) {
    DSI_CUDA_ARG(free_bytes && total_bytes, "dsi_cuda_mem_info: NULL output");
    *free_bytes = *total_bytes = 0;
    size_t f = 0, t = 0;
    cudaError_t err = cudaMemGetInfo(&f, &t);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return dsi_cuda_status(err, "cudaMemGetInfo", msg, len);
    }
    *free_bytes = f;
    *total_bytes = t;
    return DS_OK;
}

extern "C" ds_status dsi_cuda_device_name(char *buf, size_t buflen, char *msg, size_t len) {
    DSI_CUDA_ARG(buf && buflen > 0, "dsi_cuda_device_name: no buffer");
    buf[0] = 0;
    int dev = 0;
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDevice(&dev);
    const char *what = "cudaGetDevice";
    if (err == cudaSuccess) {
        err = cudaGetDeviceProperties(&prop, dev);
        what = "cudaGetDeviceProperties";
    }
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return dsi_cuda_status(err, what, msg, len);
    }
    /* prop.name is NUL-terminated within its 256 bytes; a short buf truncates */
    snprintf(buf, buflen, "%.*s", (int)sizeof prop.name, prop.name);
    return DS_OK;
}

/* ==== Streams ============================================================= */
extern "C" ds_status dsi_cuda_stream_new(void **stream, char *msg, size_t len) {
    DSI_CUDA_ARG(stream, "dsi_cuda_stream_new: stream is NULL");
    *stream = NULL;
    cudaStream_t s;
    /* non-blocking: no implicit synchronisation with the legacy stream */
    DSI_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    *stream = (void *)s;
    return DS_OK;
}

extern "C" void dsi_cuda_stream_free(void *stream) {
    if (stream) (void)cudaStreamDestroy((cudaStream_t)stream);
}

extern "C" ds_status dsi_cuda_sync(void *stream, char *msg, size_t len) {
    DSI_CUDA_TRY(cudaStreamSynchronize((cudaStream_t)stream));
    return DS_OK;
}

/* ==== Events ============================================================== */
/* Events order work between streams (an upload stream and a compute stream)
 * and let the host wait for one point of a stream; never timed, so they are
 * the cheap kind. */
extern "C" ds_status dsi_cuda_event_new(void **ev, char *msg, size_t len) {
    DSI_CUDA_ARG(ev, "dsi_cuda_event_new: ev is NULL");
    *ev = NULL;
    cudaEvent_t e;
    DSI_CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    *ev = (void *)e;
    return DS_OK;
}

extern "C" void dsi_cuda_event_free(void *ev) {
    if (ev) (void)cudaEventDestroy((cudaEvent_t)ev);
}

extern "C" ds_status dsi_cuda_event_record(void *ev, void *stream, char *msg, size_t len) {
    DSI_CUDA_ARG(ev, "dsi_cuda_event_record: ev is NULL");
    DSI_CUDA_TRY(cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)stream));
    return DS_OK;
}

extern "C" ds_status dsi_cuda_stream_wait(void *stream, void *ev, char *msg, size_t len) {
    DSI_CUDA_ARG(ev, "dsi_cuda_stream_wait: ev is NULL");
    DSI_CUDA_TRY(cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)ev, 0));
    return DS_OK;
}

extern "C" ds_status dsi_cuda_event_sync(void *ev, char *msg, size_t len) {
    DSI_CUDA_ARG(ev, "dsi_cuda_event_sync: ev is NULL");
    DSI_CUDA_TRY(cudaEventSynchronize((cudaEvent_t)ev));
    return DS_OK;
}

/* ==== Memory ============================================================== */
/* Out of memory: the size asked and what the device has, so the message
 * says whether a smaller cache budget would fit. */
static ds_status dsi_cuda_oom(const char *what, size_t bytes, char *msg, size_t len) {
    size_t avail = 0, total = 0;
    if (cudaMemGetInfo(&avail, &total) != cudaSuccess) {
        (void)cudaGetLastError();
        return dsi_cuda_failf(DS_ERR_NOMEM, msg, len, "%s: out of device memory: asked for %zu bytes (%.1f MiB)",
                              what, bytes, (double)bytes / 1048576.0);
    }
    return dsi_cuda_failf(DS_ERR_NOMEM, msg, len,
                          "%s: out of device memory: asked for %zu bytes (%.1f MiB), %zu bytes (%.1f MiB) free "
                          "of %zu (%.1f MiB)",
                          what, bytes, (double)bytes / 1048576.0, avail, (double)avail / 1048576.0, total,
                          (double)total / 1048576.0);
}

extern "C" ds_status dsi_cuda_alloc(void **p, size_t bytes, char *msg, size_t len) {
    DSI_CUDA_ARG(p, "dsi_cuda_alloc: p is NULL");
    *p = NULL;
    if (bytes == 0) return DS_OK;
    void *q = NULL;
    cudaError_t err = cudaMalloc(&q, bytes);
    if (err == cudaSuccess) {
        *p = q;
        return DS_OK;
    }
    (void)cudaGetLastError();
    if (err == cudaErrorMemoryAllocation) return dsi_cuda_oom("cudaMalloc", bytes, msg, len);
    return dsi_cuda_status(err, "cudaMalloc", msg, len);
}

extern "C" void dsi_cuda_free(void *p) {
    if (p) (void)cudaFree(p);
}

extern "C" ds_status dsi_cuda_host_alloc(void **p, size_t bytes, char *msg, size_t len) {
    DSI_CUDA_ARG(p, "dsi_cuda_host_alloc: p is NULL");
    *p = NULL;
    if (bytes == 0) return DS_OK;
    void *q = NULL;
    cudaError_t err = cudaMallocHost(&q, bytes);
    if (err == cudaSuccess) {
        *p = q;
        return DS_OK;
    }
    (void)cudaGetLastError();
    if (err == cudaErrorMemoryAllocation)
        return dsi_cuda_failf(DS_ERR_NOMEM, msg, len, "cudaMallocHost: out of page-locked host memory: asked for %zu bytes",
                              bytes);
    return dsi_cuda_status(err, "cudaMallocHost", msg, len);
}

extern "C" void dsi_cuda_host_free(void *p) {
    if (p) (void)cudaFreeHost(p);
}

extern "C" ds_status dsi_cuda_upload(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len) {
    if (bytes == 0) return DS_OK;
    DSI_CUDA_ARG(dst && src, "dsi_cuda_upload: NULL buffer");
    DSI_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream));
    return DS_OK;
}

extern "C" ds_status dsi_cuda_download(void *dst, const void *src, size_t bytes, void *stream, char *msg,
                                       size_t len) {
    if (bytes == 0) return DS_OK;
    DSI_CUDA_ARG(dst && src, "dsi_cuda_download: NULL buffer");
    DSI_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)stream));
    return DS_OK;
}

/* The byte value is v converted to unsigned char, as for memset. */
extern "C" ds_status dsi_cuda_memset(void *dst, int v, size_t bytes, void *stream, char *msg, size_t len) {
    if (bytes == 0) return DS_OK;
    DSI_CUDA_ARG(dst, "dsi_cuda_memset: NULL buffer");
    DSI_CUDA_TRY(cudaMemsetAsync(dst, (int)(unsigned char)v, bytes, (cudaStream_t)stream));
    return DS_OK;
}

/* Overlapping ranges are refused: cudaMemcpyAsync does not define them. */
extern "C" ds_status dsi_cuda_copy(void *dst, const void *src, size_t bytes, void *stream, char *msg, size_t len) {
    if (bytes == 0) return DS_OK;
    DSI_CUDA_ARG(dst && src, "dsi_cuda_copy: NULL buffer");
    const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    DSI_CUDA_ARG(d - s >= bytes && s - d >= bytes, "dsi_cuda_copy: %zu bytes from %p to %p overlap", bytes, src, dst);
    DSI_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream));
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

/* Q4_0: the same, one thread per value; value i of a block is a nibble of
 * byte 2 + i % 16 (low for i < 16, high otherwise), so two neighbouring
 * threads read one byte and a warp one block's 18 bytes. */
static __global__ void dsi_cuda_k_dequant_q4_0(const uint8_t *__restrict__ in, float *__restrict__ out, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint8_t *b = in + (i / DSI_CUDA_Q8_BLOCK) * DSI_CUDA_Q4_BLOCK_BYTES;
        float scale = dsi_cuda_f16_to_f32((uint16_t)(b[0] | (b[1] << 8)));
        out[i] = (float)dsi_cuda_q4_val(b + 2, (int)(i % DSI_CUDA_Q8_BLOCK)) * scale;
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
    case DS_DTYPE_Q4_0:
        if (n % DSI_CUDA_Q8_BLOCK) return false;
        if (n / DSI_CUDA_Q8_BLOCK > SIZE_MAX / DSI_CUDA_Q4_BLOCK_BYTES) return false;
        *out = n / DSI_CUDA_Q8_BLOCK * DSI_CUDA_Q4_BLOCK_BYTES;
        return true;
    default: break;
    }
    return false;
}

extern "C" ds_status dsi_cuda_dequantize(ds_dtype t, const void *src, float *dst, size_t n, void *stream, char *msg,
                                         size_t len) {
    size_t bytes;
    if (!dsi_cuda_bytes(t, n, &bytes)) {
        if (msg && len)
            snprintf(msg, len, "cuda dequantize: %zu elements of dtype %d (%s) is not a valid size", n, (int)t,
                     dsi_cuda_dtype_name(t));
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
    case DS_DTYPE_Q4_0:
        dsi_cuda_k_dequant_q4_0<<<dsi_cuda_blocks(n, threads), threads, 0, s>>>((const uint8_t *)src, dst, n);
        break;
    default: break;   /* refused by dsi_cuda_bytes */
    }
    DSI_CUDA_LAUNCHED("dequantize");
    return DS_OK;
}

extern "C" ds_status dsi_cuda_dequantize_host(ds_dtype t, const void *src, size_t src_bytes, float *dst, size_t n,
                                              char *msg, size_t len) {
    size_t bytes;
    if (!dsi_cuda_bytes(t, n, &bytes) || bytes != src_bytes || n > SIZE_MAX / sizeof(float)) {
        if (msg && len)
            snprintf(msg, len, "cuda dequantize: %zu bytes do not hold %zu elements of dtype %d (%s)", src_bytes, n,
                     (int)t, dsi_cuda_dtype_name(t));
        return DS_ERR_INVALID_ARG;
    }
    if (n == 0) return DS_OK;
    if (!src || !dst) return dsi_cuda_fail(DS_ERR_INVALID_ARG, msg, len, "cuda dequantize: NULL buffer");
    void *d_src = NULL, *d_dst = NULL;
    ds_status st;
    cudaError_t err;
    const char *what;
    if ((st = dsi_cuda_alloc(&d_src, bytes, msg, len)) != DS_OK) goto done;
    if ((st = dsi_cuda_alloc(&d_dst, n * sizeof(float), msg, len)) != DS_OK) goto done;
    what = "cudaMemcpy (to device)";
    if ((err = cudaMemcpy(d_src, src, bytes, cudaMemcpyHostToDevice)) != cudaSuccess) goto cuda_fail;
    st = dsi_cuda_dequantize(t, d_src, (float *)d_dst, n, NULL, msg, len);
    if (st != DS_OK) goto done;
    what = "cudaMemcpy (to host)"; /* also reports errors from the kernel */
    if ((err = cudaMemcpy(dst, d_dst, n * sizeof(float), cudaMemcpyDeviceToHost)) != cudaSuccess) goto cuda_fail;
    goto done;
cuda_fail:
    st = dsi_cuda_status(err, what, msg, len);
done:
    dsi_cuda_free(d_src);
    dsi_cuda_free(d_dst);
    return st;
}

/* ==== The backend table =================================================== */
static const dsi_backend_i dsi_cuda_table = {
    .version = DSI_BACKEND_VERSION,
    .name = "cuda",
    .init = dsi_cuda_set_device,
    .device_count = dsi_cuda_device_count,
    .stream_new = dsi_cuda_stream_new,
    .stream_free = dsi_cuda_stream_free,
    .sync = dsi_cuda_sync,
    .alloc = dsi_cuda_alloc,
    .free = dsi_cuda_free,
    .host_alloc = dsi_cuda_host_alloc,
    .host_free = dsi_cuda_host_free,
    .upload = dsi_cuda_upload,
    .download = dsi_cuda_download,
    .blas_new = dsi_cuda_blas_new,
    .blas_free = dsi_cuda_blas_free,
    .dequantize = dsi_cuda_dequantize,
    .gemv = dsi_cuda_gemv,
    .matmul = dsi_cuda_matmul,
    .rmsnorm = dsi_cuda_rmsnorm,
    .silu_mul = dsi_cuda_silu_mul,
    .rope = dsi_cuda_rope,
    .mla_kv_store = dsi_cuda_mla_kv_store,
    .mla_attention = dsi_cuda_mla_attention,
    .route = dsi_cuda_route,
    .event_new = dsi_cuda_event_new,
    .event_free = dsi_cuda_event_free,
    .event_record = dsi_cuda_event_record,
    .stream_wait = dsi_cuda_stream_wait,
    .event_sync = dsi_cuda_event_sync,
    .memset = dsi_cuda_memset,
    .copy = dsi_cuda_copy,
    .embed = dsi_cuda_embed,
    .add = dsi_cuda_add,
    .gather_rows = dsi_cuda_gather_rows,
    .scatter_add = dsi_cuda_scatter_add,
    .mha_attention = dsi_cuda_mha_attention,
    .mem_info = dsi_cuda_mem_info,
    .device_name = dsi_cuda_device_name,
    .lora = dsi_cuda_lora,
    .mla_attention_lora = dsi_cuda_mla_attention_lora,
};

extern "C" const dsi_backend_i *dsi_cuda_backend(void) { return &dsi_cuda_table; }
