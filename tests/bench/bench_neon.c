/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * bench_neon.c — the AArch64 kernel sets against the portable one on a
 * Q8_0 matrix (rows x 2048 columns): one kernel of the table chosen for a
 * feature level, run over every row. Made to be measured by instruction
 * count under emulation (bench/neon_insns.py runs it under qemu-aarch64
 * and counts the guest instructions executed), so it does the work once
 * and prints a checksum; the wall time it prints is the host's, for
 * orientation only. It is not a test.
 *
 *     build-arm64/bench_neon LEVEL OP [ROWS] [REPS]
 *       LEVEL: portable | neon | dotprod | i8mm
 *       OP:    q8f32 (dot, F32 activations) | q8q8 (int8 dot, one token)
 *              | q8q8x4 (one row, four tokens) | q4q8 (Q4_0 rows, int8)
 *              | gemm8 (eight tokens: the token-lane GEMM where the set has
 *              one, else dot_q8q8x4 or dot_q8q8 row by row)
 *              | quant (the activation quantizer over ROWS x 2048 values)
 *       ROWS default 4096, REPS default 1 (0: the setup alone, to subtract)
 * Build: make CC=aarch64-linux-gnu-gcc BUILD=build-arm64 LDFLAGS="-no-pie -static" build-arm64/bench_neon
 */
#define _GNU_SOURCE 1
#include "../../deepseek_impl/internal.h"
#include "../../kernels/cpu/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { COLS = 2048, NB = COLS / DSI_Q8_BLOCK, TOK = 8 };

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s portable|neon|dotprod|i8mm q8f32|q8q8|q8q8x4|q4q8|gemm8|quant [rows] [reps]\n",
                argv[0]);
        return 2;
    }
    const char *level = argv[1], *op = argv[2];
    int rows = argc > 3 ? atoi(argv[3]) : 4096, reps = argc > 4 ? atoi(argv[4]) : 1;
    if (rows < 1 || rows > 65536 || reps < 0) {
        fprintf(stderr, "bench_neon: rows must be 1..65536 and reps >= 0\n");
        return 2;
    }
    uint32_t f = !strcmp(level, "neon")      ? DSI_CPU_NEON
                 : !strcmp(level, "dotprod") ? DSI_CPU_NEON | DSI_CPU_DOTPROD
                 : !strcmp(level, "i8mm")    ? DSI_CPU_NEON | DSI_CPU_DOTPROD | DSI_CPU_I8MM
                                             : 0;
    if (f && (dsi_cpu_features() & f) != f) {
        fprintf(stderr, "bench_neon: this CPU lacks level %s\n", level);
        return 2;
    }
    dsi_kernels k;
    dsi_kernels_portable(&k);
    if (f && !dsi_kernels_neon(&k, f)) {
        fprintf(stderr, "bench_neon: no NEON kernels in this build\n");
        return 2;
    }
    size_t rb8 = (size_t)NB * DSI_Q8_BLOCK_BYTES, rb4 = (size_t)NB * DSI_Q4_BLOCK_BYTES;
    uint8_t *W = malloc((size_t)rows * rb8), *W4 = malloc((size_t)rows * rb4);
    float *x = malloc(sizeof(float) * COLS * TOK), *s = malloc(sizeof(float) * NB * TOK);
    float *row = malloc(sizeof(float) * COLS);
    float *Y = calloc((size_t)rows * TOK, sizeof(float)), *xs = malloc(sizeof(float) * (size_t)rows * NB);
    int8_t *q = malloc((size_t)COLS * TOK), *xq = calloc((size_t)rows, COLS);
    float *scratch = malloc(sizeof(float) * 8 * NB);
    void *P = NULL;
    float *S = NULL;
    if (k.lane_split) {
        P = malloc(k.lane_pack_bytes(TOK, COLS));
        S = malloc(sizeof(float) * k.lane_pack_floats(TOK, COLS));
    }
    if (!W || !W4 || !x || !s || !row || !Y || !xs || !q || !xq || !scratch || (k.lane_split && (!P || !S))) {
        fprintf(stderr, "bench_neon: out of memory\n");
        return 1;
    }
    for (int r = 0; r < rows; r++) {
        for (int i = 0; i < COLS; i++) row[i] = frand();
        dsi_quantize_row_q8_0(row, W + (size_t)r * rb8, COLS);
        dsi_quantize_row_q4_0(row, W4 + (size_t)r * rb4, COLS);
    }
    for (int i = 0; i < COLS * TOK; i++) x[i] = frand();
    for (int t = 0; t < TOK; t++) dsi_quantize_act_q8_c(x + (size_t)t * COLS, COLS, q + (size_t)t * COLS, s + t * NB);
    double t0 = now(), sum = 0;
    for (int rep = 0; rep < reps; rep++) {
        if (!strcmp(op, "q8f32"))
            for (int r = 0; r < rows; r++) Y[r] = k.dot[DS_DTYPE_Q8_0](W + (size_t)r * rb8, x, COLS);
        else if (!strcmp(op, "q8q8"))
            for (int r = 0; r < rows; r++) Y[r] = k.dot_q8q8(W + (size_t)r * rb8, q, s, COLS);
        else if (!strcmp(op, "q4q8"))
            for (int r = 0; r < rows; r++) Y[r] = k.dot_q4q8(W4 + (size_t)r * rb4, q, s, COLS);
        else if (!strcmp(op, "q8q8x4"))
            for (int r = 0; r < rows; r++) {
                float o[4];
                if (k.dot_q8q8x4) k.dot_q8q8x4(W + (size_t)r * rb8, q, COLS, s, NB, COLS, o);
                else
                    for (int j = 0; j < 4; j++) o[j] = k.dot_q8q8(W + (size_t)r * rb8, q + j * COLS, s + j * NB, COLS);
                Y[r] = o[0] + o[1] + o[2] + o[3];
            }
        else if (!strcmp(op, "gemm8")) {
            if (k.lane_split) {
                k.lane_pack(q, COLS, s, NB, TOK, COLS, P, S);
                k.lane_gemm(W, rb8, rows, COLS, P, S, TOK, Y, (size_t)rows, scratch);
            } else
                for (int r = 0; r < rows; r++)
                    for (int t = 0; t < TOK; t += 4) {
                        float o[4];
                        const uint8_t *w = W + (size_t)r * rb8;
                        if (k.dot_q8q8x4) k.dot_q8q8x4(w, q + (size_t)t * COLS, COLS, s + t * NB, NB, COLS, o);
                        else
                            for (int j = 0; j < 4; j++)
                                o[j] = k.dot_q8q8(w, q + (size_t)(t + j) * COLS, s + (t + j) * NB, COLS);
                        for (int j = 0; j < 4; j++) Y[(size_t)(t + j) * rows + r] = o[j];
                    }
        } else if (!strcmp(op, "quant"))
            for (int r = 0; r < rows; r++) k.quantize_act(x + (size_t)(r % TOK) * COLS, COLS, xq + (size_t)r * COLS,
                                                          xs + (size_t)r * NB);
        else {
            fprintf(stderr, "bench_neon: unknown op %s\n", op);
            return 2;
        }
    }
    double dt = now() - t0;
    size_t ny = !strcmp(op, "gemm8") ? (size_t)rows * TOK : (size_t)rows;
    /* also without repetitions: the setup run does the same steps */
    if (!strcmp(op, "quant"))
        for (size_t i = 0; i < (size_t)rows * COLS; i++) sum += xq[i];
    else
        for (size_t i = 0; i < ny; i++) sum += Y[i];
    printf("bench_neon set=%s op=%s rows=%d cols=%d reps=%d checksum=%.6g host_seconds=%.4f\n", k.name, op, rows,
           COLS, reps, sum, dt);
    free(W), free(W4), free(x), free(s), free(row), free(Y), free(xs), free(q), free(xq), free(scratch);
    free(P), free(S);
    return 0;
}
