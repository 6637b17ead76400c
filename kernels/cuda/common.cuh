/*
 * common.cuh — what the CUDA kernels of deepseek.h share: error conversion,
 * number formats, launch helpers, and the C-callable entry points.
 *
 * CUDA is not amalgamated: these objects link beside the library (make
 * CUDA=1). Host entry points are extern "C", named dsi_cuda_*, and never
 * abort or print: every CUDA error becomes a ds_status plus a message in a
 * caller buffer (msg, len), which the C side copies into its dsi_err.
 * Only deepseek.h is included (it is C++-clean, checked by `make check`);
 * internal.h is C11 and is not.
 */
#ifndef DS_CUDA_COMMON_CUH
#define DS_CUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../../deepseek.h"

/* ==== Entry points (declared for C in internal.h under DS_CUDA) =========== */
extern "C" {
/* Number of CUDA devices in *n. No driver or no device: *n = 0 and
 * DS_ERR_NO_DEVICE; any other failure: *n = 0 and DS_ERR_BACKEND. */
ds_status dsi_cuda_device_count(int *n, char *msg, size_t len);
/* Dequantizes n elements of type t at device address src into device floats
 * at dst, on `stream` (a cudaStream_t; NULL = default stream). Asynchronous:
 * launch errors are reported, execution errors show at the next sync. Q8_0
 * needs n % 32 == 0. */
ds_status dsi_cuda_dequantize(ds_dtype t, const void *src, float *dst, size_t n, void *stream, char *msg,
                              size_t len);
/* The same from host memory to host memory through the device (src_bytes
 * must be exactly the size of n elements): for tests against the CPU path. */
ds_status dsi_cuda_dequantize_host(ds_dtype t, const void *src, size_t src_bytes, float *dst, size_t n, char *msg,
                                   size_t len);
}

/* ==== Formats (must match deepseek.h's ds_dtype and internal.h) =========== */
#define DSI_CUDA_Q8_BLOCK 32
#define DSI_CUDA_Q8_BLOCK_BYTES 34 /* {uint16 f16 scale; int8 q[32]}, x = q * scale */

static_assert(DS_DTYPE_F32 == 0 && DS_DTYPE_F16 == 1 && DS_DTYPE_Q8_0 == 2, "ds_dtype numbering changed");

__device__ __forceinline__ float dsi_cuda_f16_to_f32(uint16_t h) { return __half2float(__ushort_as_half(h)); }

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

/* Returns from the calling function (which has msg and len in scope) when a
 * CUDA call fails. For calls with nothing to clean up. */
#define DSI_CUDA_TRY(call)                                                   \
    do {                                                                     \
        cudaError_t dsi_e_ = (call);                                         \
        if (dsi_e_ != cudaSuccess) return dsi_cuda_status(dsi_e_, #call, msg, len); \
    } while (0)

/* Grid for a grid-stride loop over n items. */
static inline unsigned dsi_cuda_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    const size_t cap = (size_t)1 << 20; /* the loop covers the rest */
    return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

#endif /* DS_CUDA_COMMON_CUH */
