/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * bench_gemm.c — our prefill products against OpenBLAS SGEMM, one thread,
 * on the shapes of a V2-Lite-sized model, to decide whether OpenBLAS should
 * take any of them (it prints figures; it is not a test).
 *
 *     make build/bench_gemm && build/bench_gemm [REPS]  # needs libopenblas-dev
 *
 * For each (rows x cols) weight and T tokens: Y (T, rows) = X (T, cols) W^T
 *   ours q8   : activations quantized per 32, int8 kernels, a row's weights
 *               in the vector lanes (dsi_matmul for one token)
 *   q8 lanes  : the same quantized activations, tokens in the vector lanes
 *               (dsi_gemm_q8u8_tl_vnni, dsi_matmul for batches; VNNI only)
 *   avx2 lanes: the AVX2 form (dsi_gemm_q8q8_tl8_avx2, dsi_matmul for
 *               batches of 6 or more on CPUs without VNNI)
 *   ours f16  : rows dequantized once, four at a time, F32 dot products two
 *               tokens per pass (as dsi_matmul)
 *   blas f16  : the BLAS=1 path (dsi_mm_blas): chunks of rows dequantized
 *               into a scratch, cblas_sgemm per chunk, chunks sized as
 *               dsi_blas_chunks sizes them (the dequantizing counted)
 *   ours f32, blas f32: the same two with F32 weights (BLAS: straight from
 *               the weights, no scratch, the same chunks)
 * GFLOP/s = 2 T rows cols / time; best of REPS (default 5; first argument).
 * The library takes "blas" from DSI_BLAS_MIN_T tokens on (F32: from
 * DSI_BLAS_MIN_T_F32); figures in bench/results/openblas/.
 */
#include "../../deepseek_impl/internal.h"
#include "../../kernels/cpu/kernels.h"

#include <cblas.h>
#undef I   /* OpenBLAS's cblas.h brings <complex.h> */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* the kernels the CPU device chooses here (main fills it) */
static dsi_kernels K;

void openblas_set_num_threads(int n);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rs = 88172645463325252ull;
static float frand(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void ours_q8(const uint8_t *w, size_t rb, int rows, int cols, const float *X, int T, int8_t *xq, uint8_t *xu,
                    float *xs, float *Y) {
    int nb = cols / 32;
    for (int t = 0; t < T; t++) K.quantize_act(X + (size_t)t * cols, cols, xq + (size_t)t * cols, xs + (size_t)t * nb);
    bool v512 = dsi_have_vnni512();
    if (v512) dsi_act_to_u8(xq, xu, (size_t)T * cols);
    for (int r = 0; r < rows; r++) {
        const uint8_t *rp = w + (size_t)r * rb;
        for (int t = 0; t < T; t += 4) {
            int n = T - t < 4 ? T - t : 4;
            float o[4];
            if (v512) {
                dsi_dot_q8u8xT_vnni(rp, xu + (size_t)t * cols, (size_t)cols, xs + (size_t)t * nb, (size_t)nb, cols, n, o);
            } else if (n == 4 && dsi_have_avx2()) {
                dsi_dot_q8q8x4_avx2(rp, xq + (size_t)t * cols, (size_t)cols, xs + (size_t)t * nb, (size_t)nb, cols, o);
            } else {
                for (int k = 0; k < n; k++)
                    o[k] = K.dot_q8q8(rp, xq + (size_t)(t + k) * cols, xs + (size_t)(t + k) * nb, cols);
            }
            for (int k = 0; k < n; k++) Y[(size_t)(t + k) * rows + r] = o[k];
        }
    }
}

/* dsi_blas_chunks (deepseek_impl/cpu.c, static there): rows per sgemm call
 * and columns per chunk */
static void blas_chunks(int T, int rows, int cols, int *nr, int *kc) {
    int nk = (cols + 2047) / 2048;
    *kc = ((cols + nk - 1) / nk + 31) / 32 * 32;
    long long direct = 1000000 / ((long long)T * *kc);
    if (*kc > cols) *kc = cols;
    if (direct > 1200 / T) direct = 1200 / T;
    if (direct > 128) direct = 128;
    if (direct >= 12) {
        *nr = (int)direct / 4 * 4;
    } else {
        int chunks = (rows + 127) / 128;
        *nr = ((rows + chunks - 1) / chunks + 15) / 16 * 16;
    }
}

/* dsi_mm_blas over all rows: w holds F16 (f32 false) or F32 rows; B is the
 * scratch (128 x 2048 floats) */
static void blas_mm(const void *w, bool f32, int rows, int cols, const float *X, int T, float *B, float *Y) {
    int nr, kc;
    blas_chunks(T, rows, cols, &nr, &kc);
    for (int r = 0; r < rows; r += nr) {
        int n = rows - r < nr ? rows - r : nr;
        for (int k0 = 0; k0 < cols; k0 += kc) {
            int kn = cols - k0 < kc ? cols - k0 : kc, ldb = kn;
            const float *b = B;
            if (f32) {
                b = (const float *)w + (size_t)r * cols + k0;
                ldb = cols;
            } else {
                const uint16_t *wr = (const uint16_t *)w + (size_t)r * cols;
                for (int i = 0; i < n; i++)
                    K.dequant[DS_DTYPE_F16]((const uint8_t *)(wr + (size_t)i * cols + k0), B + (size_t)i * kn, kn);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, kn, 1.0f, X + k0, cols, b, ldb, k0 ? 1.0f : 0.0f,
                        Y + r, rows);
        }
    }
}

/* F32 weights through our kernels, as dsi_mm_task: four rows (copied) per
 * pass, two tokens at a time */
static void ours_f32(const float *w, int rows, int cols, const float *X, int T, float *row, float *Y) {
    int r = 0;
    if (T >= 2 && K.dot_f32_4x2) {
        for (; r + 4 <= rows; r += 4) {
            for (int i = 0; i < 4; i++) K.dequant[DS_DTYPE_F32]((const uint8_t *)(w + (size_t)(r + i) * cols), row + (size_t)i * cols, cols);
            int t = 0;
            for (float o[8]; t + 2 <= T; t += 2) {
                K.dot_f32_4x2(row, (size_t)cols, X + (size_t)t * cols, (size_t)cols, cols, o);
                for (int i = 0; i < 4; i++) {
                    Y[(size_t)t * rows + r + i] = o[2 * i];
                    Y[(size_t)(t + 1) * rows + r + i] = o[2 * i + 1];
                }
            }
            for (; t < T; t++)
                for (int i = 0; i < 4; i++) Y[(size_t)t * rows + r + i] = K.dot_f32(row + (size_t)i * cols, X + (size_t)t * cols, cols);
        }
    }
    for (; r < rows; r++)
        for (int t = 0; t < T; t++) Y[(size_t)t * rows + r] = K.dot_f32(w + (size_t)r * cols, X + (size_t)t * cols, cols);
}

static void ours_f16(const uint16_t *w, int rows, int cols, const float *X, int T, float *row, float *Y) {
    bool v = dsi_have_avx2();
    int r = 0;
    if (T >= 2 && v) {   /* as dsi_matmul: four rows dequantized, two tokens per pass */
        for (; r + 4 <= rows; r += 4) {
            for (int i = 0; i < 4; i++) dsi_f16_to_f32_row_avx2((const uint8_t *)(w + (size_t)(r + i) * cols), row + (size_t)i * cols, cols);
            int t = 0;
            for (float o[8]; t + 2 <= T; t += 2) {
                dsi_dot_f32_4x2_avx2(row, (size_t)cols, X + (size_t)t * cols, (size_t)cols, cols, o);
                for (int i = 0; i < 4; i++) {
                    Y[(size_t)t * rows + r + i] = o[2 * i];
                    Y[(size_t)(t + 1) * rows + r + i] = o[2 * i + 1];
                }
            }
            for (; t < T; t++)
                for (int i = 0; i < 4; i++) Y[(size_t)t * rows + r + i] = K.dot_f32(row + (size_t)i * cols, X + (size_t)t * cols, cols);
        }
    }
    for (; r < rows; r++) {
        const uint16_t *rp = w + (size_t)r * cols;
        if (T == 1) {
            Y[r] = v ? dsi_dot_f16_avx2((const uint8_t *)rp, X, cols) : dsi_dot_f16_c((const uint8_t *)rp, X, cols);
            continue;
        }
        if (v) dsi_f16_to_f32_row_avx2((const uint8_t *)rp, row, cols);
        else dsi_dequantize_row_f16(rp, row, (size_t)cols);
        for (int t = 0; t < T; t++) Y[(size_t)t * rows + r] = K.dot_f32(row, X + (size_t)t * cols, cols);
    }
}

static void ours_q8_lanes8(const uint8_t *w, size_t rb, int rows, int cols, const float *X, int T, int8_t *xq,
                           float *xs, uint8_t *P, float *S, float *scratch, float *Y) {
    int nb = cols / 32;
    for (int t = 0; t < T; t++) K.quantize_act(X + (size_t)t * cols, cols, xq + (size_t)t * cols, xs + (size_t)t * nb);
    dsi_tl8_pack(xq, (size_t)cols, xs, (size_t)nb, T, cols, (int8_t *)(void *)P, S);
    dsi_gemm_q8q8_tl8_avx2(w, rb, rows, cols, (const int8_t *)(const void *)P, S, T, Y, (size_t)rows, scratch);
}

static void ours_q8_lanes(const uint8_t *w, size_t rb, int rows, int cols, const float *X, int T, int8_t *xq,
                          uint8_t *xu, float *xs, uint8_t *P, float *S, float *scratch, float *Y) {
    int nb = cols / 32;
    for (int t = 0; t < T; t++) K.quantize_act(X + (size_t)t * cols, cols, xq + (size_t)t * cols, xs + (size_t)t * nb);
    dsi_act_to_u8(xq, xu, (size_t)T * cols);
    int Tl = dsi_tl_split(T);   /* as dsi_matmul: short remainders to the row-lane kernel */
    dsi_tl_pack(xu, (size_t)cols, xs, (size_t)nb, Tl, cols, P, S);
    dsi_gemm_q8u8_tl_vnni(w, rb, rows, cols, P, S, Tl, Y, (size_t)rows, scratch);
    for (int r = 0; r < rows; r++)
        for (int t = Tl; t < T; t += 4) {
            int n = T - t < 4 ? T - t : 4;
            float o[4];
            dsi_dot_q8u8xT_vnni(w + (size_t)r * rb, xu + (size_t)t * cols, (size_t)cols, xs + (size_t)t * nb, (size_t)nb,
                                cols, n, o);
            for (int k = 0; k < n; k++) Y[(size_t)(t + k) * rows + r] = o[k];
        }
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) reps = 1;
    openblas_set_num_threads(1);
    dsi_kernels_select(&K, dsi_cpu_features());
    struct { const char *what; int rows, cols; } shapes[] = {
        {"expert gate/up", 1408, 2048}, {"expert down", 2048, 1408}, {"dense MLP gate/up", 10944, 2048},
        {"dense MLP down", 2048, 10944}, {"q_proj", 3072, 2048}};
    int Ts[] = {1, 2, 4, 6, 8, 12, 16, 24, 32, 64, 128};
    bool lanes = dsi_have_vnni512();
    printf("one thread, GFLOP/s (best of %d); isa: %s\n", reps,
           dsi_have_vnni512() ? "AVX-512 VNNI" : dsi_have_avx2() ? "AVX2" : "portable");
    printf("%-18s %6s %6s %4s %9s %9s %9s %9s %9s %9s %9s  %s\n", "shape", "rows", "cols", "T", "ours q8", "q8 lanes",
           "avx2 lane", "ours f16", "blas f16", "ours f32", "blas f32", "faster");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int rows = shapes[s].rows, cols = shapes[s].cols;
        size_t n = (size_t)rows * cols, rb = (size_t)cols / 32 * 34;
        float *W = malloc(n * sizeof *W);
        uint8_t *wq = malloc((size_t)rows * rb);
        uint16_t *wh = malloc(n * sizeof *wh);
        float *X = malloc((size_t)128 * cols * sizeof *X), *Y = malloc((size_t)128 * rows * sizeof *Y);
        int8_t *xq = malloc((size_t)128 * cols);
        uint8_t *xu = malloc((size_t)128 * cols);
        float *xs = malloc((size_t)128 * cols / 32 * sizeof *xs), *row = malloc((size_t)4 * cols * sizeof *row);
        uint8_t *P = malloc(dsi_tl_pack_bytes(128, cols));
        float *S = malloc(dsi_tl_pack_floats(128, cols) * sizeof *S), *scratch = malloc((size_t)cols / 4 * sizeof *S);
        float *B = malloc((size_t)128 * 2048 * sizeof *B);
        if (!W || !wq || !wh || !X || !Y || !xq || !xu || !xs || !row || !P || !S || !scratch || !B) return 1;
        for (size_t i = 0; i < n; i++) W[i] = frand() * 0.05f;
        for (int r = 0; r < rows; r++) {
            dsi_quantize_row_q8_0(W + (size_t)r * cols, wq + (size_t)r * rb, (size_t)cols);
            dsi_convert_row_f16(W + (size_t)r * cols, wh + (size_t)r * cols, (size_t)cols);
        }
        for (size_t i = 0; i < (size_t)128 * cols; i++) X[i] = frand();
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
            int T = Ts[k];
            /* 0 ours q8, 1 ours f16, 2 blas f16, 3 q8 lanes, 4 avx2 lanes, 5 ours f32, 6 blas f32 */
            double best[7] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
            for (int rep = 0; rep < reps; rep++) {   /* interleaved, so load spikes hit every column alike */
                double t[8];
                t[0] = now();
                ours_q8(wq, rb, rows, cols, X, T, xq, xu, xs, Y);
                t[1] = now();
                ours_f16(wh, rows, cols, X, T, row, Y);
                t[2] = now();
                blas_mm(wh, false, rows, cols, X, T, B, Y);
                t[3] = now();
                if (lanes) ours_q8_lanes(wq, rb, rows, cols, X, T, xq, xu, xs, P, S, scratch, Y);
                t[4] = now();
                if (dsi_have_avx2()) ours_q8_lanes8(wq, rb, rows, cols, X, T, xq, xs, P, S, scratch, Y);
                t[5] = now();
                ours_f32(W, rows, cols, X, T, row, Y);
                t[6] = now();
                blas_mm(W, true, rows, cols, X, T, B, Y);
                t[7] = now();
                for (int i = 0; i < 7; i++)
                    if (t[i + 1] - t[i] < best[i]) best[i] = t[i + 1] - t[i];
            }
            double fl = 2.0 * T * (double)rows * cols / 1e9;
            const char *win = best[2] < best[1] ? "blas f16" : "ours f16";
            const char *win32 = best[6] < best[5] ? "blas f32" : "ours f32";
            printf("%-18s %6d %6d %4d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f  %s, %s\n", shapes[s].what, rows, cols, T,
                   fl / best[0], lanes ? fl / best[3] : 0.0, dsi_have_avx2() ? fl / best[4] : 0.0, fl / best[1],
                   fl / best[2], fl / best[5], fl / best[6], win, win32);
            fflush(stdout);
        }
        free(W), free(wq), free(wh), free(X), free(Y), free(xq), free(xu), free(xs), free(row), free(P), free(S), free(scratch);
        free(B);
    }
    return 0;
}
