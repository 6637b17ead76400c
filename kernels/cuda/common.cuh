/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * common.cuh — what the CUDA kernels of deepseek.h share: error conversion,
 * number formats, reductions, weight-element access, launch helpers.
 *
 * CUDA is not amalgamated: these objects link beside the library (make
 * CUDA=1). Host entry points are extern "C", named dsi_cuda_*, declared in
 * backend.cuh (plain C), and never abort or print: every CUDA error becomes
 * a ds_status plus a message in a caller buffer (msg, len), which the C side
 * copies into its dsi_err. Only deepseek.h is included (it is C++-clean,
 * checked by `make check`); internal.h is C11 and is not.
 *
 * Numerics: built without --use_fast_math, so expf/sinf/cosf are CUDA's
 * full-range functions (<= 2 ulp) and division and sqrtf are IEEE-rounded,
 * as on the CPU. Where the CPU twin is element-wise, the kernels use the
 * same expression in the same order (with __fmul_rn/__fadd_rn where a
 * contraction into FMA would change the rounding); reductions differ in
 * order only. README.md compares every kernel with its twin.
 */
#ifndef DS_CUDA_COMMON_CUH
#define DS_CUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.cuh"

/* ==== Formats (must match deepseek.h's ds_dtype and format.h) =========== */
#define DSI_CUDA_Q8_BLOCK 32
#define DSI_CUDA_Q8_BLOCK_BYTES 34 /* {uint16 f16 scale; int8 q[32]}, x = q * scale */
/* Q4_0 (llama.cpp's block_q4_0): {uint16 f16 scale d; uint8 qs[16]}, 32
 * values a block (DSI_CUDA_Q8_BLOCK); value j < 16 is the low nibble of
 * qs[j], value j + 16 its high nibble; x = (nibble - 8) * d. */
#define DSI_CUDA_Q4_BLOCK_BYTES 18

static_assert(DS_DTYPE_F32 == 0 && DS_DTYPE_F16 == 1 && DS_DTYPE_Q8_0 == 2 && DS_DTYPE_Q4_0 == 3,
              "ds_dtype numbering changed");
/* The pruned formats (DS_DTYPE_Q8_0_24, DS_DTYPE_Q8_0_SP) never reach the
 * device: deepseek_impl/cuda.c expands them to Q8_0 rows on the host, so
 * the kernels here refuse them as any other dtype they do not know. */

__device__ __forceinline__ float dsi_cuda_f16_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }

/* True for the block formats (Q8_0, Q4_0): rows are whole 32-value blocks. */
static inline bool dsi_cuda_blocked(ds_dtype t) { return t == DS_DTYPE_Q8_0 || t == DS_DTYPE_Q4_0; }

/* The name of a weight format in messages ("Q4_0"). */
static inline const char *dsi_cuda_dtype_name(ds_dtype t) {
    switch (t) {
    case DS_DTYPE_F32: return "F32";
    case DS_DTYPE_F16: return "F16";
    case DS_DTYPE_Q8_0: return "Q8_0";
    case DS_DTYPE_Q4_0: return "Q4_0";
    default: break;
    }
    return "unknown";
}

/* Bytes of one row of `cols` values of type t; false for a bad type, a
 * ragged Q8_0 or Q4_0 row or a non-positive width. */
static inline bool dsi_cuda_row_bytes(ds_dtype t, int cols, size_t *out) {
    if (cols <= 0) return false;
    switch (t) {
    case DS_DTYPE_F32: *out = (size_t)cols * 4; return true;
    case DS_DTYPE_F16: *out = (size_t)cols * 2; return true;
    case DS_DTYPE_Q8_0:
        if (cols % DSI_CUDA_Q8_BLOCK) return false;
        *out = (size_t)(cols / DSI_CUDA_Q8_BLOCK) * DSI_CUDA_Q8_BLOCK_BYTES;
        return true;
    case DS_DTYPE_Q4_0:
        if (cols % DSI_CUDA_Q8_BLOCK) return false;
        *out = (size_t)(cols / DSI_CUDA_Q8_BLOCK) * DSI_CUDA_Q4_BLOCK_BYTES;
        return true;
    default: break;
    }
    return false;
}

/* ==== Errors ============================================================== */
/* Fills msg with "what: cudaErrorName (description)" and maps the error. */
static inline ds_status dsi_cuda_status(cudaError_t err, const char *what, char *msg, size_t len) {
    ds_status s;
    switch (err) {
    case cudaSuccess: return DS_OK;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorNoKernelImageForDevice:
        s = DS_ERR_NO_DEVICE;
        break;
    case cudaErrorMemoryAllocation: s = DS_ERR_NOMEM; break;
    default: s = DS_ERR_BACKEND; break;
    }
    if (msg && len) snprintf(msg, len, "%s: %s (%s)", what, cudaGetErrorName(err), cudaGetErrorString(err));
    return s;
}

static inline ds_status dsi_cuda_fail(ds_status s, char *msg, size_t len, const char *text) {
    if (msg && len) snprintf(msg, len, "%s", text);
    return s;
}

static inline ds_status dsi_cuda_failf(ds_status s, char *msg, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline ds_status dsi_cuda_failf(ds_status s, char *msg, size_t len, const char *fmt, ...) {
    if (msg && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, len, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* Returns from the calling function (which has msg and len in scope) when a
 * CUDA call fails. For calls with nothing to clean up. */
#define DSI_CUDA_TRY(call)                                                   \
    do {                                                                     \
        cudaError_t dsi_e_ = (call);                                         \
        if (dsi_e_ != cudaSuccess) return dsi_cuda_status(dsi_e_, #call, msg, len); \
    } while (0)

/* Argument checks, before any CUDA call: DS_ERR_INVALID_ARG and a message
 * naming the function and the bad value. */
#define DSI_CUDA_ARG(cond, ...)                                              \
    do {                                                                     \
        if (!(cond)) return dsi_cuda_failf(DS_ERR_INVALID_ARG, msg, len, __VA_ARGS__); \
    } while (0)

/* After a launch: configuration errors (too much shared memory, no kernel
 * image for this GPU) show here; execution errors at the next sync. */
#define DSI_CUDA_LAUNCHED(name)                                              \
    do {                                                                     \
        cudaError_t dsi_e_ = cudaGetLastError();                             \
        if (dsi_e_ != cudaSuccess) return dsi_cuda_status(dsi_e_, name " launch", msg, len); \
    } while (0)

/* Grid for a grid-stride loop over n items. */
static inline unsigned dsi_cuda_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    const size_t cap = (size_t)1 << 20; /* the loop covers the rest */
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

/* Kernels asking for more than the default 48 KiB of dynamic shared memory
 * must opt in; the device's limit is reported when exceeded. */
static inline ds_status dsi_cuda_smem(const void *kernel, size_t bytes, const char *what, char *msg, size_t len) {
    if (bytes <= 48u * 1024u) return DS_OK;
    int dev = 0, max = 0;
    DSI_CUDA_TRY(cudaGetDevice(&dev));
    DSI_CUDA_TRY(cudaDeviceGetAttribute(&max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (bytes > (size_t)max)
        return dsi_cuda_failf(DS_ERR_UNSUPPORTED, msg, len, "%s: needs %zu bytes of shared memory, the device has %d",
                              what, bytes, max);
    DSI_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return DS_OK;
}

/* ==== Reductions ========================================================== */
__device__ __forceinline__ float dsi_cuda_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float dsi_cuda_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum / max, returned to every thread. blockDim.x must be a
 * multiple of 32; red is 32 floats of shared memory. Safe to call back to
 * back (the leading barrier protects red). */
__device__ __forceinline__ float dsi_cuda_block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = dsi_cuda_warp_sum(v);
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    return dsi_cuda_warp_sum(lane < nw ? red[lane] : 0.0f);
}

__device__ __forceinline__ float dsi_cuda_block_max(float v, float *red) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = dsi_cuda_warp_max(v);
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    return dsi_cuda_warp_max(lane < nw ? red[lane] : -INFINITY);
}

/* One tile of an online softmax (MLA and MHA attention): the cnt scores in
 * sc (shared memory, written before a barrier) become exp(s - m'), where m'
 * is the running maximum *m raised to the tile's; *l, the running sum, is
 * rescaled to m' and gains the tile's exps. Returns the factor exp(m - m')
 * (0 on the first tile, where *m is -inf) by which the caller rescales its
 * accumulator before adding this tile. The block reductions' barriers also
 * publish the new sc to every thread. */
__device__ __forceinline__ float dsi_cuda_softmax_tile(float *sc, int cnt, float *m, float *l, float *red) {
    const int tid = threadIdx.x, nt = blockDim.x;
    float mt = -INFINITY;
    for (int k = tid; k < cnt; k += nt) mt = fmaxf(mt, sc[k]);
    const float mn = fmaxf(*m, dsi_cuda_block_max(mt, red));
    float part = 0.0f;
    for (int k = tid; k < cnt; k += nt) {
        const float e = expf(sc[k] - mn);
        sc[k] = e;
        part += e;
    }
    part = dsi_cuda_block_sum(part, red);
    const float corr = expf(*m - mn);
    *l = *l * corr + part;
    *m = mn;
    return corr;
}

/* ==== Weight elements ===================================================== */
/* The quant (nibble - 8, in -8..7) of value i (0..31) of a Q4_0 block
 * whose 16 bytes of nibbles start at qs. */
__device__ __forceinline__ int dsi_cuda_q4_val(const uint8_t *qs, int i) {
    const int b = qs[i & 15];
    return (i < 16 ? (b & 15) : (b >> 4)) - 8;
}

/* Element j of a stored row, dequantized (exact in F32: an int8 times an
 * F16 scale needs 19 significant bits, a nibble 15). */
template <int DT> __device__ __forceinline__ float dsi_cuda_w(const uint8_t *row, int j) {
    if (DT == DS_DTYPE_Q8_0) {
        const uint8_t *b = row + (size_t)(j / DSI_CUDA_Q8_BLOCK) * DSI_CUDA_Q8_BLOCK_BYTES;
        float d = dsi_cuda_f16_to_f32((uint16_t)(b[0] | (b[1] << 8)));
        return (float)(int8_t)b[2 + j % DSI_CUDA_Q8_BLOCK] * d;
    } else if (DT == DS_DTYPE_Q4_0) {
        const uint8_t *b = row + (size_t)(j / DSI_CUDA_Q8_BLOCK) * DSI_CUDA_Q4_BLOCK_BYTES;
        float d = dsi_cuda_f16_to_f32((uint16_t)(b[0] | (b[1] << 8)));
        return (float)dsi_cuda_q4_val(b + 2, j % DSI_CUDA_Q8_BLOCK) * d;
    } else if (DT == DS_DTYPE_F16) {
        return dsi_cuda_f16_to_f32(((const uint16_t *)row)[j]);
    } else {
        return ((const float *)row)[j];
    }
}

/* a * W[j] rounded as the CPU's axpy kernels form it: (a * scale) * q for
 * Q8_0 and Q4_0, a * w otherwise. */
template <int DT> __device__ __forceinline__ float dsi_cuda_w_axpy(const uint8_t *row, int j, float a) {
    if (DT == DS_DTYPE_Q8_0) {
        const uint8_t *b = row + (size_t)(j / DSI_CUDA_Q8_BLOCK) * DSI_CUDA_Q8_BLOCK_BYTES;
        float d = dsi_cuda_f16_to_f32((uint16_t)(b[0] | (b[1] << 8)));
        return __fmul_rn(__fmul_rn(a, d), (float)(int8_t)b[2 + j % DSI_CUDA_Q8_BLOCK]);
    } else if (DT == DS_DTYPE_Q4_0) {
        const uint8_t *b = row + (size_t)(j / DSI_CUDA_Q8_BLOCK) * DSI_CUDA_Q4_BLOCK_BYTES;
        float d = dsi_cuda_f16_to_f32((uint16_t)(b[0] | (b[1] << 8)));
        return __fmul_rn(__fmul_rn(a, d), (float)dsi_cuda_q4_val(b + 2, j % DSI_CUDA_Q8_BLOCK));
    } else {
        return __fmul_rn(a, dsi_cuda_w<DT>(row, j));
    }
}

/* ==== Rotary embedding ==================================================== */
/* Rotates the pair (x[a], x[b]) by pos * inv_freq, cos/sin scaled by
 * mscale: dsi_rope's loop body, rounded the same way (no FMA). */
__device__ __forceinline__ void dsi_cuda_rope_pair(float *x, int a, int b, int pos, float inv_freq, float mscale) {
    float ang = __fmul_rn((float)pos, inv_freq);
    float cs = __fmul_rn(cosf(ang), mscale), sn = __fmul_rn(sinf(ang), mscale);
    float xa = x[a], xb = x[b];
    x[a] = __fsub_rn(__fmul_rn(xa, cs), __fmul_rn(xb, sn));
    x[b] = __fadd_rn(__fmul_rn(xb, cs), __fmul_rn(xa, sn));
}

#endif /* DS_CUDA_COMMON_CUH */
