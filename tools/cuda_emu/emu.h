/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * emu.h — a thread-level CPU emulation of the CUDA subset that
 * kernels/cuda uses, for checking kernel logic on a machine without a GPU
 * (README.md beside this file says what it checks and what it cannot).
 *
 * transform.py rewrites the .cu files to include this header instead of the
 * toolkit's and turns every launch `k<<<grid, block, smem, stream>>>(args)`
 * into `emu_launch(grid, block, smem, stream, (const void *)k, [&] {
 * k(args); })`. A launch runs one OS thread per CUDA thread with real
 * barriers (__syncthreads) and warp exchanges (__shfl_xor_sync), one block
 * after another, synchronously: a stream is a name, an event a no-op mark.
 * __shared__ becomes `static` (blocks never overlap), dynamic shared memory
 * a buffer refilled with NaN for every block. Device memory is host memory
 * filled with 0xff bytes (a NaN as float) by cudaMalloc, so a read of
 * something never written shows in the results.
 *
 * Only one-dimensional grids and blocks are emulated; anything else stops
 * the program with a message (an emulator limit, not a kernel error).
 */
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>

/* ==== Language ============================================================ */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

void emu_syncthreads();
void emu_warp_exchange(const void *in, void *out, size_t sz, int src_lane);
float *emu_dyn_smem();
inline void __syncthreads() { emu_syncthreads(); }
/* The full-mask form only: all 32 lanes (or all of a last, partial warp)
 * must take part, as the kernels' reductions do. */
template <class T> T __shfl_xor_sync(unsigned, T v, int o) {
    static_assert(sizeof(T) <= 8, "emu: shuffle of more than 8 bytes");
    T r;
    emu_warp_exchange(&v, &r, sizeof(T), (int)(threadIdx.x & 31) ^ o);
    return r;
}

/* ==== Number formats and intrinsics ======================================= */
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct __half { uint16_t x; };
struct alignas(4) __half2 { __half x, y; };
inline float emu_h2f(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    float f;
    if (e == 0) {
        f = ldexpf((float)m, -24);
        return s ? -f : f;
    }
    uint32_t bits = e == 31 ? (s | 0x7f800000u | (m << 13)) : (s | ((e + 112) << 23) | (m << 13));
    memcpy(&f, &bits, 4);
    return f;
}
inline __half __ushort_as_half(unsigned short u) { __half h; h.x = u; return h; }
inline float __half2float(__half h) { return emu_h2f(h.x); }
inline float2 __half22float2(__half2 h) { return float2{emu_h2f(h.x.x), emu_h2f(h.y.x)}; }
/* Built with -ffp-contract=off, so these round each operation as CUDA's do. */
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }

/* ==== Runtime ============================================================= */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInsufficientDriver = 35,
    cudaErrorDevicesUnavailable = 46,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorNoKernelImageForDevice = 209,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorLaunchFailure = 719,
    cudaErrorSystemDriverMismatch = 803,
    cudaErrorCompatNotSupportedOnDevice = 805,
} cudaError_t;
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum { cudaStreamNonBlocking = 1 };
enum { cudaEventDefault = 0, cudaEventBlockingSync = 1, cudaEventDisableTiming = 2 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int multiProcessorCount;
    int major, minor;
};

const char *cudaGetErrorName(cudaError_t);
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int *);
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDevice(int *);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *, int);
cudaError_t cudaDeviceGetAttribute(int *, cudaDeviceAttr, int);
cudaError_t cudaFuncSetAttribute(const void *, cudaFuncAttribute, int);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *, unsigned);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *, unsigned);
cudaError_t cudaEventDestroy(cudaEvent_t);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t);
cudaError_t cudaEventSynchronize(cudaEvent_t);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaMallocHost(void **, size_t);
cudaError_t cudaFreeHost(void *);
cudaError_t cudaMemGetInfo(size_t *, size_t *);
cudaError_t cudaMemcpy(void *, const void *, size_t, cudaMemcpyKind);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, cudaMemcpyKind, cudaStream_t);
cudaError_t cudaMemsetAsync(void *, int, size_t, cudaStream_t);
/* A launch: checks the configuration (errors for cudaGetLastError, as
 * CUDA reports them), then runs body once per thread of every block. */
void emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const void *kernel,
                std::function<void()> body);

/* ==== cuBLAS (the one product matmul.cu asks for, in double) ============== */
typedef struct emu_blas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 } cublasComputeType_t;
typedef enum { CUDA_R_32F = 0 } cudaDataType;
enum { CUBLAS_GEMM_DEFAULT = -1 };
cublasStatus_t cublasCreate(cublasHandle_t *);
cublasStatus_t cublasDestroy(cublasHandle_t);
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t);
const char *cublasGetStatusName(cublasStatus_t);
const char *cublasGetStatusString(cublasStatus_t);
cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t, cublasOperation_t, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType, int lda, const void *B, cudaDataType,
                            int ldb, const void *beta, void *C, cudaDataType, int ldc, cublasComputeType_t, int algo);

/* What transform.py writes for a launch: the arguments are evaluated once,
 * here, and every emulated thread calls the kernel with them. */
template <class K, class... A>
void emu_launch_k(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, K kernel, A... args) {
    emu_launch(grid, block, smem, stream, (const void *)kernel, [&] { kernel(args...); });
}
