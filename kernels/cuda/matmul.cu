/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * matmul.cu — Y (T, rows) = X (T, cols) W^T with W stored as F32, F16, Q8_0
 * or Q4_0 rows. The CPU twin is dsi_matmul/dsi_mm_task in forward.c (T == 1:
 * dsi_dot_row per row; T > 1: dsi_dequant_row once, dsi_dot_f32 per token).
 *
 * Decode (T <= DSI_CUDA_GEMV_MAX_T): a dequantizing GEMV. One warp per row,
 * GEMV_WARPS rows per block; the row is read once and dotted with every
 * token's x, so a few speculative or batched tokens cost one pass over the
 * weights. F32 accumulation per lane, then a warp reduction.
 *   Q8_0: lane l takes quarter (l % 4) of block (l / 4) of each group of 8
 *   blocks: 8 quants through four 16-bit loads (a 34-byte block is only
 *   2-byte aligned), x through two 128-bit loads. A warp reads 8 whole
 *   blocks (272 contiguous bytes) per step.
 *   Q4_0: lane l takes half (l % 2) of block (l / 2) of each group of 16
 *   blocks: 8 bytes of nibbles through four 16-bit loads (an 18-byte block
 *   is only 2-byte aligned), the 8 low nibbles (values 8h..8h+7 of the
 *   block) and the 8 high ones (values 16+8h..16+8h+7), x through four
 *   128-bit loads. A warp reads 16 whole blocks (288 contiguous bytes) per
 *   step: as for Q8_0, each weight byte once, in a warp-wide contiguous run.
 *   F16: 8 halves (one 128-bit load) and two float4 of x per lane and step.
 *   F32: one float4 of W and of x per lane and step.
 *   Rows or x that are not 16-byte aligned (ragged widths, odd strides) take
 *   the scalar loop: same sums, 32-bit or 16-bit loads.
 *
 * Prefill (T > DSI_CUDA_GEMV_MAX_T): cuBLAS. Tiles of rows are dequantized
 * to F32 in the dsi_blas workspace and multiplied with cublasGemmEx in F32
 * (CUBLAS_COMPUTE_32F; TF32 only when asked). Why F32 and not F16 tiles
 * with tensor cores: an int8 times an F16 scale needs 19 significant bits,
 * so only F32 holds the dequantized weight exactly (F16 would round it, and
 * the activations, which in DeepSeek models exceed F16's range in a few
 * channels, would have to be F16 too). With F32 the product differs from
 * the CPU's only in summation order; the weights are read once per tile
 * either way. Q4_0 takes the same path (a nibble times an F16 scale is
 * exact in F32 too). A fused Q8_0/Q4_0 tensor-core kernel is the later
 * optimisation.
 */
#include "common.cuh"

#include <cublas_v2.h>
#include <stdlib.h>

#define GEMV_WARPS 4

/* ==== GEMV ================================================================ */
template <int DT, bool VEC>
static __global__ void __launch_bounds__(GEMV_WARPS * 32)
    dsi_cuda_k_gemv(const uint8_t *__restrict__ w, size_t row_bytes, int rows, int cols, const float *__restrict__ x,
                    int ldx, int T, float *__restrict__ y, int ldy) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (r >= rows) return; /* the whole warp leaves together */
    const uint8_t *row = w + (size_t)r * row_bytes;
    float acc[DSI_CUDA_GEMV_MAX_T];
#pragma unroll
    for (int t = 0; t < DSI_CUDA_GEMV_MAX_T; t++) acc[t] = 0.0f;

    if (DT == DS_DTYPE_Q8_0) {
        const int nb = cols / DSI_CUDA_Q8_BLOCK, part = lane & 3;
        for (int b = lane >> 2; b < nb; b += 8) {
            const uint8_t *blk = row + (size_t)b * DSI_CUDA_Q8_BLOCK_BYTES;
            const uint16_t *qp = (const uint16_t *)(const void *)(blk + 2 + part * 8);
            const float d = dsi_cuda_f16_to_f32(*(const uint16_t *)(const void *)blk);
            float q[8];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                uint16_t v = qp[k];
                q[2 * k] = (float)(int8_t)(v & 0xff);
                q[2 * k + 1] = (float)(int8_t)(v >> 8);
            }
            const int off = b * DSI_CUDA_Q8_BLOCK + part * 8;
#pragma unroll
            for (int t = 0; t < DSI_CUDA_GEMV_MAX_T; t++) {
                if (t >= T) break;
                const float *xp = x + (size_t)t * ldx + off;
                float s;
                if (VEC) {
                    float4 a = *(const float4 *)(const void *)xp, c = *(const float4 *)(const void *)(xp + 4);
                    s = (q[0] * a.x + q[1] * a.y + q[2] * a.z + q[3] * a.w) +
                        (q[4] * c.x + q[5] * c.y + q[6] * c.z + q[7] * c.w);
                } else {
                    s = 0.0f;
#pragma unroll
                    for (int k = 0; k < 8; k++) s += q[k] * xp[k];
                }
                acc[t] += d * s; /* as the CPU: scale times the block's integer-weighted sum */
            }
        }
    } else if (DT == DS_DTYPE_Q4_0) {
        const int nb = cols / DSI_CUDA_Q8_BLOCK, half = lane & 1;
        for (int b = lane >> 1; b < nb; b += 16) {
            const uint8_t *blk = row + (size_t)b * DSI_CUDA_Q4_BLOCK_BYTES;
            const uint16_t *qp = (const uint16_t *)(const void *)(blk + 2 + half * 8);
            const float d = dsi_cuda_f16_to_f32(*(const uint16_t *)(const void *)blk);
            /* byte m of the block's nibbles: value m (low), value m + 16
             * (high); a 16-bit load holds bytes m, m + 1 (little-endian) */
            float lo[8], hi[8];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const int v = qp[k];
                lo[2 * k] = (float)((v & 15) - 8);
                hi[2 * k] = (float)(((v >> 4) & 15) - 8);
                lo[2 * k + 1] = (float)(((v >> 8) & 15) - 8);
                hi[2 * k + 1] = (float)(((v >> 12) & 15) - 8);
            }
            const int off = b * DSI_CUDA_Q8_BLOCK + half * 8;
#pragma unroll
            for (int t = 0; t < DSI_CUDA_GEMV_MAX_T; t++) {
                if (t >= T) break;
                const float *xp = x + (size_t)t * ldx + off;
                float s;
                if (VEC) {
                    float4 a = *(const float4 *)(const void *)xp, c = *(const float4 *)(const void *)(xp + 4);
                    float4 e = *(const float4 *)(const void *)(xp + 16), f = *(const float4 *)(const void *)(xp + 20);
                    s = ((lo[0] * a.x + lo[1] * a.y + lo[2] * a.z + lo[3] * a.w) +
                         (lo[4] * c.x + lo[5] * c.y + lo[6] * c.z + lo[7] * c.w)) +
                        ((hi[0] * e.x + hi[1] * e.y + hi[2] * e.z + hi[3] * e.w) +
                         (hi[4] * f.x + hi[5] * f.y + hi[6] * f.z + hi[7] * f.w));
                } else {
                    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
                    for (int k = 0; k < 8; k++) {
                        s0 += lo[k] * xp[k];
                        s1 += hi[k] * xp[16 + k];
                    }
                    s = s0 + s1;
                }
                acc[t] += d * s; /* as the CPU: scale times the block's integer-weighted sum */
            }
        }
    } else if (DT == DS_DTYPE_F16) {
        const uint16_t *rh = (const uint16_t *)(const void *)row;
        if (VEC) { /* cols % 8 == 0 */
            for (int i = lane * 8; i < cols; i += 32 * 8) {
                uint4 raw = *(const uint4 *)(const void *)(rh + i);
                const __half2 *h2 = (const __half2 *)(const void *)&raw;
                float2 f0 = __half22float2(h2[0]), f1 = __half22float2(h2[1]);
                float2 f2 = __half22float2(h2[2]), f3 = __half22float2(h2[3]);
#pragma unroll
                for (int t = 0; t < DSI_CUDA_GEMV_MAX_T; t++) {
                    if (t >= T) break;
                    const float *xp = x + (size_t)t * ldx + i;
                    float4 a = *(const float4 *)(const void *)xp, c = *(const float4 *)(const void *)(xp + 4);
                    acc[t] += (f0.x * a.x + f0.y * a.y + f1.x * a.z + f1.y * a.w) +
                              (f2.x * c.x + f2.y * c.y + f3.x * c.z + f3.y * c.w);
                }
            }
        } else {
            for (int i = lane; i < cols; i += 32) {
                float wv = dsi_cuda_f16_to_f32(rh[i]);
#pragma unroll
                for (int t = 0; t < DSI_CUDA_GEMV_MAX_T; t++) {
                    if (t >= T) break;
                    acc[t] += wv * x[(size_t)t * ldx + i];
                }
            }
        }
    } else {
        const float *rf = (const float *)(const void *)row;
        if (VEC) { /* cols % 4 == 0 */
            for (int i = lane * 4; i < cols; i += 32 * 4) {
                float4 wv = *(const float4 *)(const void *)(rf + i);
#pragma unroll
                for (int t = 0; t < DSI_CUDA_GEMV_MAX_T; t++) {
                    if (t >= T) break;
                    float4 a = *(const float4 *)(const void *)(x + (size_t)t * ldx + i);
                    acc[t] += (wv.x * a.x + wv.y * a.y) + (wv.z * a.z + wv.w * a.w);
                }
            }
        } else {
            for (int i = lane; i < cols; i += 32) {
                float wv = rf[i];
#pragma unroll
                for (int t = 0; t < DSI_CUDA_GEMV_MAX_T; t++) {
                    if (t >= T) break;
                    acc[t] += wv * x[(size_t)t * ldx + i];
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < DSI_CUDA_GEMV_MAX_T; t++) {
        if (t >= T) break;
        float v = dsi_cuda_warp_sum(acc[t]);
        if (lane == 0) y[(size_t)t * ldy + r] = v;
    }
}

static bool dsi_cuda_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* Shape and pointer checks shared by gemv and matmul. */
static ds_status dsi_cuda_mm_check(const char *fn, ds_dtype t, const void *w, int rows, int cols, const float *x,
                                   int ldx, int T, float *y, int ldy, size_t *row_bytes, char *msg, size_t len) {
    DSI_CUDA_ARG(t == DS_DTYPE_F32 || t == DS_DTYPE_F16 || dsi_cuda_blocked(t), "%s: unknown dtype %d", fn, (int)t);
    DSI_CUDA_ARG(rows > 0 && cols > 0 && T >= 0, "%s: bad shape rows %d cols %d T %d", fn, rows, cols, T);
    DSI_CUDA_ARG(dsi_cuda_row_bytes(t, cols, row_bytes), "%s: %d columns is not a whole number of %s blocks", fn,
                 cols, dsi_cuda_dtype_name(t));
    DSI_CUDA_ARG(ldx >= cols && ldy >= rows, "%s: strides ldx %d < cols %d or ldy %d < rows %d", fn, ldx, cols, ldy,
                 rows);
    DSI_CUDA_ARG(T == 0 || (w && x && y), "%s: NULL buffer", fn);
    DSI_CUDA_ARG(dsi_cuda_aligned(w, t == DS_DTYPE_F32 ? 4 : 2) && dsi_cuda_aligned(x, 4) && dsi_cuda_aligned(y, 4),
                 "%s: misaligned buffer", fn);
    return DS_OK;
}

static ds_status dsi_cuda_gemv_run(ds_dtype t, const void *w, size_t row_bytes, int rows, int cols, const float *x,
                                   int ldx, int T, float *y, int ldy, cudaStream_t s, char *msg, size_t len) {
    const bool xv = dsi_cuda_aligned(x, 16) && ldx % 4 == 0;
    /* the block formats load W in 16-bit pieces: only x must be aligned */
    const bool vec = dsi_cuda_blocked(t) ? xv : xv && dsi_cuda_aligned(w, 16) && row_bytes % 16 == 0;
    const dim3 grid((unsigned)((rows + GEMV_WARPS - 1) / GEMV_WARPS)), block(GEMV_WARPS * 32);
    const uint8_t *wb = (const uint8_t *)w;
#define GEMV(DT)                                                                                   \
    (vec ? dsi_cuda_k_gemv<DT, true><<<grid, block, 0, s>>>(wb, row_bytes, rows, cols, x, ldx, T, y, ldy) \
         : dsi_cuda_k_gemv<DT, false><<<grid, block, 0, s>>>(wb, row_bytes, rows, cols, x, ldx, T, y, ldy))
    switch (t) {
    case DS_DTYPE_F32: GEMV(DS_DTYPE_F32); break;
    case DS_DTYPE_F16: GEMV(DS_DTYPE_F16); break;
    case DS_DTYPE_Q8_0: GEMV(DS_DTYPE_Q8_0); break;
    case DS_DTYPE_Q4_0: GEMV(DS_DTYPE_Q4_0); break;
    default: break;   /* refused by dsi_cuda_mm_check */
    }
#undef GEMV
    DSI_CUDA_LAUNCHED("gemv");
    return DS_OK;
}

extern "C" ds_status dsi_cuda_gemv(ds_dtype t, const void *w, int rows, int cols, const float *x, int ldx, int T,
                                   float *y, int ldy, void *stream, char *msg, size_t len) {
    size_t rb = 0;
    ds_status st = dsi_cuda_mm_check("dsi_cuda_gemv", t, w, rows, cols, x, ldx, T, y, ldy, &rb, msg, len);
    if (st != DS_OK) return st;
    DSI_CUDA_ARG(T <= DSI_CUDA_GEMV_MAX_T, "dsi_cuda_gemv: %d tokens, at most %d (use dsi_cuda_matmul)", T,
                 DSI_CUDA_GEMV_MAX_T);
    if (T == 0) return DS_OK;
    return dsi_cuda_gemv_run(t, w, rb, rows, cols, x, ldx, T, y, ldy, (cudaStream_t)stream, msg, len);
}

/* ==== cuBLAS ============================================================== */
struct dsi_blas {
    cublasHandle_t handle;
    float *ws;          /* dequantized tile (ws_floats) */
    size_t ws_floats;
    int tf32;
};

static ds_status dsi_cublas_status(cublasStatus_t st, const char *what, char *msg, size_t len) {
    if (st == CUBLAS_STATUS_SUCCESS) return DS_OK;
    if (msg && len) snprintf(msg, len, "%s: %s (%s)", what, cublasGetStatusName(st), cublasGetStatusString(st));
    return st == CUBLAS_STATUS_ALLOC_FAILED ? DS_ERR_NOMEM : DS_ERR_BACKEND;
}

extern "C" void dsi_cuda_blas_free(dsi_blas *b) {
    if (!b) return;
    if (b->handle) (void)cublasDestroy(b->handle);
    dsi_cuda_free(b->ws);
    free(b);
}

extern "C" ds_status dsi_cuda_blas_new(dsi_blas **out, size_t workspace_bytes, int allow_tf32, char *msg,
                                       size_t len) {
    DSI_CUDA_ARG(out, "dsi_cuda_blas_new: out is NULL");
    *out = NULL;
    if (workspace_bytes == 0) workspace_bytes = (size_t)64 << 20;
    DSI_CUDA_ARG(workspace_bytes >= 4096, "dsi_cuda_blas_new: workspace of %zu bytes is too small", workspace_bytes);
    dsi_blas *b = (dsi_blas *)calloc(1, sizeof *b);
    if (!b) return dsi_cuda_fail(DS_ERR_NOMEM, msg, len, "dsi_cuda_blas_new: out of host memory");
    b->tf32 = allow_tf32 != 0;
    b->ws_floats = workspace_bytes / sizeof(float);
    ds_status st = dsi_cublas_status(cublasCreate(&b->handle), "cublasCreate", msg, len);
    if (st == DS_OK) st = dsi_cuda_alloc((void **)&b->ws, b->ws_floats * sizeof(float), msg, len);
    if (st != DS_OK) {
        dsi_cuda_blas_free(b);
        return st;
    }
    *out = b;
    return DS_OK;
}

/* C (m, n; col-major, ldc) = A^T B with A (k, m; lda) and B (k, n; ldb), in
 * cuBLAS's column-major terms: the row-major Y (T, rows) is Y^T (rows, T). */
static ds_status dsi_cuda_sgemm_tn(dsi_blas *b, int m, int n, int k, const float *A, int lda, const float *B, int ldb,
                                   float *C, int ldc, char *msg, size_t len) {
    const float one = 1.0f, zero = 0.0f;
    cublasComputeType_t ct = b->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    return dsi_cublas_status(cublasGemmEx(b->handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, A, CUDA_R_32F, lda, B,
                                          CUDA_R_32F, ldb, &zero, C, CUDA_R_32F, ldc, ct, CUBLAS_GEMM_DEFAULT),
                             "cublasGemmEx", msg, len);
}

extern "C" ds_status dsi_cuda_matmul(dsi_blas *b, ds_dtype t, const void *w, int rows, int cols, const float *x,
                                     int ldx, int T, float *y, int ldy, void *stream, char *msg, size_t len) {
    size_t rb = 0;
    ds_status st = dsi_cuda_mm_check("dsi_cuda_matmul", t, w, rows, cols, x, ldx, T, y, ldy, &rb, msg, len);
    if (st != DS_OK) return st;
    if (T == 0) return DS_OK;
    cudaStream_t s = (cudaStream_t)stream;
    if (T <= DSI_CUDA_GEMV_MAX_T) return dsi_cuda_gemv_run(t, w, rb, rows, cols, x, ldx, T, y, ldy, s, msg, len);
    DSI_CUDA_ARG(b, "dsi_cuda_matmul: %d tokens need a dsi_blas", T);
    st = dsi_cublas_status(cublasSetStream(b->handle, s), "cublasSetStream", msg, len);
    if (st != DS_OK) return st;
    if (t == DS_DTYPE_F32) /* nothing to dequantize: one GEMM over the stored rows */
        return dsi_cuda_sgemm_tn(b, rows, T, cols, (const float *)w, cols, x, ldx, y, ldy, msg, len);
    size_t tile = b->ws_floats / (size_t)cols;
    DSI_CUDA_ARG(tile > 0, "dsi_cuda_matmul: a row of %d values does not fit the %zu-byte workspace", cols,
                 b->ws_floats * sizeof(float));
    if (tile > (size_t)rows) tile = (size_t)rows;
    /* Tiles run in stream order, so the next dequantization waits for the
     * GEMM that reads the workspace. */
    for (int r0 = 0; r0 < rows; r0 += (int)tile) {
        int nr = rows - r0 < (int)tile ? rows - r0 : (int)tile;
        st = dsi_cuda_dequantize(t, (const uint8_t *)w + (size_t)r0 * rb, b->ws, (size_t)nr * (size_t)cols, stream,
                                 msg, len);
        if (st != DS_OK) return st;
        st = dsi_cuda_sgemm_tn(b, nr, T, cols, b->ws, cols, x, ldx, y + r0, ldy, msg, len);
        if (st != DS_OK) return st;
    }
    return DS_OK;
}

/* ==== LoRA: y += s B (A x) ================================================ */
/* The CPU twin is dsi_lora_rows (cpu.c): t = x A^T (T, r), t *= s, z = t
 * B^T (T, out), y += z, each step here a kernel or a product of the ones
 * above: the same operations, the products summed in another order. */
static __global__ void dsi_cuda_k_scale(float *__restrict__ t, float s, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        t[i] = __fmul_rn(t[i], s);
}

/* y row t (stride ldy) += z row t (stride cols), over T rows of cols */
static __global__ void dsi_cuda_k_add_rows(float *__restrict__ y, int ldy, const float *__restrict__ z, int cols,
                                           size_t n) {
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t t = e / (size_t)cols, i = e % (size_t)cols;
        float *d = y + t * (size_t)ldy + i;
        *d = __fadd_rn(*d, z[e]);
    }
}

extern "C" ds_status dsi_cuda_lora(dsi_blas *b, ds_dtype ta, const void *a, ds_dtype tb, const void *bm, int r, int in,
                                   int out, float s, const float *x, int ldx, int T, float *y, int ldy, float *tmp,
                                   void *stream, char *msg, size_t len) {
    DSI_CUDA_ARG((ta == DS_DTYPE_F32 || ta == DS_DTYPE_F16) && (tb == DS_DTYPE_F32 || tb == DS_DTYPE_F16),
                 "dsi_cuda_lora: A and B must be F32 or F16 (dtypes %d, %d)", (int)ta, (int)tb);
    DSI_CUDA_ARG(r > 0 && in > 0 && out > 0 && T >= 0, "dsi_cuda_lora: bad shape r %d in %d out %d T %d", r, in, out,
                 T);
    DSI_CUDA_ARG(ldx >= in && ldy >= out, "dsi_cuda_lora: strides ldx %d < in %d or ldy %d < out %d", ldx, in, ldy,
                 out);
    if (T == 0) return DS_OK;
    DSI_CUDA_ARG(a && bm && x && y && tmp, "dsi_cuda_lora: NULL buffer");
    float *t = tmp, *z = tmp + (size_t)T * (size_t)r;
    ds_status st = dsi_cuda_matmul(b, ta, a, r, in, x, ldx, T, t, r, stream, msg, len);
    if (st != DS_OK) return st;
    cudaStream_t cs = (cudaStream_t)stream;
    const unsigned threads = 256;
    const size_t nt = (size_t)T * (size_t)r, nz = (size_t)T * (size_t)out;
    dsi_cuda_k_scale<<<dsi_cuda_blocks(nt, threads), threads, 0, cs>>>(t, s, nt);
    DSI_CUDA_LAUNCHED("lora scale");
    st = dsi_cuda_matmul(b, tb, bm, out, r, t, r, T, z, out, stream, msg, len);
    if (st != DS_OK) return st;
    dsi_cuda_k_add_rows<<<dsi_cuda_blocks(nz, threads), threads, 0, cs>>>(y, ldy, z, out, nz);
    DSI_CUDA_LAUNCHED("lora add");
    return DS_OK;
}
