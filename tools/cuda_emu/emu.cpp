/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * emu.cpp — the runtime behind emu.h: launches (one OS thread per CUDA
 * thread, blocks in turn), the runtime calls the kernels make, and a
 * double-precision stand-in for cublasGemmEx.
 *
 * Besides running the kernels, it checks what a GPU would refuse or leave
 * undefined: launch configurations (empty or over 1024 threads, dynamic
 * shared memory over 48 KiB without cudaFuncSetAttribute), copies and
 * memsets outside device allocations, unknown or freed streams, events and
 * pointers. Such errors are returned and kept for cudaGetLastError, per
 * host thread, as CUDA does.
 *
 * DS_CUDA_EMU_DEVICES=0 in the environment emulates a machine without a
 * device: cudaGetDeviceCount reports 0 and cudaErrorNoDevice, and every
 * call that needs a device fails with cudaErrorNoDevice.
 */
#include "emu.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

/* ==== Launches ============================================================ */
thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
static thread_local std::barrier<> *t_block;
static thread_local std::barrier<> *t_warp;
static thread_local unsigned char (*t_slots)[8];
static float *g_smem;

void emu_syncthreads() { t_block->arrive_and_wait(); }

/* Every lane writes its value, all wait, every lane reads its source lane's,
 * all wait again (so the slots can be reused by the next exchange). */
void emu_warp_exchange(const void *in, void *out, size_t sz, int src) {
    int lane = threadIdx.x & 31;
    int width = std::min(32u, blockDim.x - (threadIdx.x & ~31u));
    if (src >= width) { /* a lane past a partial warp: CUDA leaves the value undefined */
        fprintf(stderr, "emu: shuffle from lane %d of a %d-lane warp\n", src, width);
        abort();
    }
    memcpy(t_slots[lane], in, sz);
    t_warp->arrive_and_wait();
    memcpy(out, t_slots[src], sz);
    t_warp->arrive_and_wait();
}

float *emu_dyn_smem() { return g_smem; }

static thread_local cudaError_t t_last = cudaSuccess;
static cudaError_t fail(cudaError_t e) {
    t_last = e;
    return e;
}

static bool no_device() {
    static const bool none = [] {
        const char *v = getenv("DS_CUDA_EMU_DEVICES");
        return v && atoi(v) <= 0;
    }();
    return none;
}

/* Handles and allocations (a mutex: tests may call from several threads). */
static std::mutex g_mu;
static std::set<cudaStream_t> g_streams;
static std::set<cudaEvent_t> g_events;
static std::map<uintptr_t, size_t> g_dev, g_host; /* base -> bytes */
static std::map<const void *, int> g_smem_optin;  /* kernel -> bytes */
static size_t g_dev_used;
static const size_t g_dev_total = (size_t)141 << 30; /* an H200's memory */

static bool stream_ok(cudaStream_t s) {
    std::lock_guard<std::mutex> lk(g_mu);
    return s == nullptr || g_streams.count(s);
}

/* [p, p + n) inside one allocation of m */
static bool inside(const std::map<uintptr_t, size_t> &m, const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    auto it = m.upper_bound(a);
    if (it == m.begin()) return false;
    --it;
    return a - it->first <= it->second && n <= it->second - (a - it->first);
}
static bool dev_range(const void *p, size_t n) {
    std::lock_guard<std::mutex> lk(g_mu);
    return inside(g_dev, p, n);
}

void emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const void *kernel,
                std::function<void()> body) {
    if (block.y != 1 || block.z != 1 || grid.y != 1 || grid.z != 1) {
        fprintf(stderr, "emu: only 1-D launches are emulated (grid %ux%ux%u, block %ux%ux%u)\n", grid.x, grid.y,
                grid.z, block.x, block.y, block.z);
        abort();
    }
    if (no_device()) {
        fail(cudaErrorNoDevice);
        return;
    }
    if (!stream_ok(stream)) {
        fail(cudaErrorInvalidResourceHandle);
        return;
    }
    const unsigned nt = block.x;
    if (grid.x == 0 || nt == 0 || nt > 1024 || grid.x > 0x7fffffffu) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem > 48u * 1024u) {
        std::lock_guard<std::mutex> lk(g_mu);
        auto it = g_smem_optin.find(kernel);
        if (smem > 227u * 1024u || it == g_smem_optin.end() || (size_t)it->second < smem) {
            t_last = cudaErrorInvalidValue;
            return;
        }
    }
    std::vector<float> sm(smem / 4 + 1);
    g_smem = sm.data();
    const unsigned nw = (nt + 31) / 32;
    std::barrier<> go((std::ptrdiff_t)nt + 1), done((std::ptrdiff_t)nt + 1);
    std::unique_ptr<std::barrier<>> bar;
    std::vector<std::unique_ptr<std::barrier<>>> wb(nw);
    std::vector<unsigned char> slots((size_t)nw * 32 * 8);
    unsigned cur = 0;
    std::vector<std::thread> th;
    th.reserve(nt);
    for (unsigned t = 0; t < nt; t++)
        th.emplace_back([&, t] {
            threadIdx = dim3(t);
            blockDim = block;
            gridDim = grid;
            t_slots = (unsigned char(*)[8])(slots.data() + (size_t)(t / 32) * 32 * 8);
            for (;;) {
                go.arrive_and_wait();
                if (cur >= grid.x) return;
                blockIdx = dim3(cur);
                t_block = bar.get();
                t_warp = wb[t / 32].get();
                body();
                /* an exited thread no longer counts at barriers, as on sm_70+ */
                t_warp->arrive_and_drop();
                t_block->arrive_and_drop();
                done.arrive_and_wait();
            }
        });
    for (cur = 0; cur < grid.x; cur++) {
        /* each block starts with fresh barriers and NaN dynamic shared memory */
        std::fill(sm.begin(), sm.end(), NAN);
        bar.reset(new std::barrier<>((std::ptrdiff_t)nt));
        for (unsigned w = 0; w < nw; w++) wb[w].reset(new std::barrier<>((std::ptrdiff_t)std::min(32u, nt - 32 * w)));
        go.arrive_and_wait();
        done.arrive_and_wait();
    }
    go.arrive_and_wait(); /* cur == grid.x: the workers leave */
    for (auto &x : th) x.join();
    g_smem = nullptr;
}

/* ==== Errors ============================================================== */
static const struct {
    cudaError_t e;
    const char *name, *text;
} k_errors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorDevicesUnavailable, "cudaErrorDevicesUnavailable", "CUDA-capable device(s) is/are busy or unavailable"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorNoKernelImageForDevice, "cudaErrorNoKernelImageForDevice",
     "no kernel image is available for execution on the device"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorSystemDriverMismatch, "cudaErrorSystemDriverMismatch",
     "system has unsupported display driver / cuda driver combination"},
    {cudaErrorCompatNotSupportedOnDevice, "cudaErrorCompatNotSupportedOnDevice",
     "forward compatibility was attempted on non supported HW"},
};
const char *cudaGetErrorName(cudaError_t e) {
    for (auto &x : k_errors)
        if (x.e == e) return x.name;
    return "cudaErrorUnknown";
}
const char *cudaGetErrorString(cudaError_t e) {
    for (auto &x : k_errors)
        if (x.e == e) return x.text;
    return "unknown error";
}
cudaError_t cudaGetLastError() {
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError() { return t_last; }

/* ==== Devices ============================================================= */
cudaError_t cudaGetDeviceCount(int *n) {
    if (!n) return fail(cudaErrorInvalidValue);
    *n = no_device() ? 0 : 1;
    return no_device() ? fail(cudaErrorNoDevice) : cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
    if (no_device()) return fail(cudaErrorNoDevice);
    return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}
cudaError_t cudaGetDevice(int *d) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!d) return fail(cudaErrorInvalidValue);
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!p) return fail(cudaErrorInvalidValue);
    if (d != 0) return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "emulated CUDA device");
    p->totalGlobalMem = g_dev_total;
    p->sharedMemPerBlock = 48 * 1024;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->multiProcessorCount = 1;
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!v || a != cudaDevAttrMaxSharedMemoryPerBlockOptin) return fail(cudaErrorInvalidValue);
    if (d != 0) return fail(cudaErrorInvalidDevice);
    *v = 227 * 1024;
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void *k, cudaFuncAttribute a, int v) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!k || a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || v > 227 * 1024)
        return fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lk(g_mu);
    g_smem_optin[k] = v;
    return cudaSuccess;
}

/* ==== Streams and events (the emulation is synchronous: no-op marks) ====== */
struct emu_stream { unsigned flags; };
struct emu_event { unsigned flags; };
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!s) return fail(cudaErrorInvalidValue);
    *s = new emu_stream{flags};
    std::lock_guard<std::mutex> lk(g_mu);
    g_streams.insert(*s);
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!s || !g_streams.erase(s)) return fail(cudaErrorInvalidResourceHandle);
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (no_device()) return fail(cudaErrorNoDevice);
    return stream_ok(s) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}
static bool event_ok(cudaEvent_t e) {
    std::lock_guard<std::mutex> lk(g_mu);
    return e && g_events.count(e);
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!e || flags > 7) return fail(cudaErrorInvalidValue);
    *e = new emu_event{flags};
    std::lock_guard<std::mutex> lk(g_mu);
    g_events.insert(*e);
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!e || !g_events.erase(e)) return fail(cudaErrorInvalidResourceHandle);
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!event_ok(e) || !stream_ok(s)) return fail(cudaErrorInvalidResourceHandle);
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    if (!event_ok(e) || !stream_ok(s)) return fail(cudaErrorInvalidResourceHandle);
    return flags ? fail(cudaErrorInvalidValue) : cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    return event_ok(e) ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

/* ==== Memory ============================================================== */
/* Beyond 64 GiB (or the emulated device's free memory) is out of memory,
 * so the tests' out-of-memory case stays cheap. */
cudaError_t cudaMalloc(void **p, size_t n) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!p) return fail(cudaErrorInvalidValue);
    *p = nullptr;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (n > ((size_t)1 << 36) || n > g_dev_total - g_dev_used) return fail(cudaErrorMemoryAllocation);
    }
    void *q = malloc(n ? n : 1);
    if (!q) return fail(cudaErrorMemoryAllocation);
    memset(q, 0xff, n); /* garbage, as device memory: NaN as floats */
    std::lock_guard<std::mutex> lk(g_mu);
    g_dev[(uintptr_t)q] = n;
    g_dev_used += n;
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_dev.find((uintptr_t)p);
    if (it == g_dev.end()) return fail(cudaErrorInvalidValue);
    g_dev_used -= it->second;
    g_dev.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!p) return fail(cudaErrorInvalidValue);
    *p = nullptr;
    if (n > ((size_t)1 << 36)) return fail(cudaErrorMemoryAllocation);
    void *q = malloc(n ? n : 1);
    if (!q) return fail(cudaErrorMemoryAllocation);
    memset(q, 0xff, n);
    std::lock_guard<std::mutex> lk(g_mu);
    g_host[(uintptr_t)q] = n;
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_host.erase((uintptr_t)p)) return fail(cudaErrorInvalidValue);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!f || !t) return fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lk(g_mu);
    *t = g_dev_total;
    *f = g_dev_total - g_dev_used;
    return cudaSuccess;
}
/* The direction must match where the pointers are: a host pointer handed
 * to a device copy works here but not on a GPU. */
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (n == 0) return cudaSuccess;
    if (!d || !s) return fail(cudaErrorInvalidValue);
    bool dd = dev_range(d, n), sd = dev_range(s, n);
    bool ok = k == cudaMemcpyHostToDevice   ? dd && !sd
              : k == cudaMemcpyDeviceToHost ? !dd && sd
              : k == cudaMemcpyDeviceToDevice ? dd && sd
                                              : !dd && !sd;
    if (!ok) {
        fprintf(stderr, "emu: cudaMemcpy kind %d of %zu bytes from %p (%s) to %p (%s)\n", (int)k, n, s,
                sd ? "device" : "not device", d, dd ? "device" : "not device");
        return fail(cudaErrorInvalidValue);
    }
    memmove(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st) {
    if (!stream_ok(st)) return fail(cudaErrorInvalidResourceHandle);
    return cudaMemcpy(d, s, n, k);
}
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t st) {
    if (no_device()) return fail(cudaErrorNoDevice);
    if (!stream_ok(st)) return fail(cudaErrorInvalidResourceHandle);
    if (n == 0) return cudaSuccess;
    if (!d || !dev_range(d, n)) {
        fprintf(stderr, "emu: cudaMemsetAsync of %zu bytes at %p outside device memory\n", n, d);
        return fail(cudaErrorInvalidValue);
    }
    memset(d, v & 0xff, n);
    return cudaSuccess;
}

/* ==== cuBLAS ============================================================== */
/* Only the shape matmul.cu uses (A transposed, B not, F32): a reference
 * product in double, so it checks the call's dimensions and leading
 * dimensions, not cuBLAS's rounding. */
struct emu_blas { cudaStream_t stream; };
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    if (no_device()) return CUBLAS_STATUS_NOT_INITIALIZED;
    *h = new emu_blas{nullptr};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_ok(s)) return CUBLAS_STATUS_INVALID_VALUE;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "emulated cuBLAS error" : "success"; }
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t, int) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (ta != CUBLAS_OP_T || tb != CUBLAS_OP_N || at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, k) || ldb < std::max(1, k) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    /* the operands must lie in device memory */
    if (!dev_range(A, ((size_t)(m - 1) * lda + k) * 4) || !dev_range(B, ((size_t)(n - 1) * ldb + k) * 4) ||
        !dev_range(C, ((size_t)(n - 1) * ldc + m) * 4)) {
        fprintf(stderr, "emu: cublasGemmEx operand outside device memory\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const float *a = (const float *)A, *b = (const float *)B;
    float *c = (float *)C, al = *(const float *)alpha, be = *(const float *)beta;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += (double)a[(size_t)i * lda + p] * b[(size_t)j * ldb + p];
            c[(size_t)j * ldc + i] = (float)(al * s + (be != 0 ? be * c[(size_t)j * ldc + i] : 0));
        }
    return CUBLAS_STATUS_SUCCESS;
}
