/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * bench_pruned.c — the decode product of pruned Q8_0 weights against dense
 * Q8_0: one token's int8 activations against a matrix larger than the
 * caches (2048 columns), on one thread, through the kernels the CPU device
 * picks (dot_q8q8, dot_24q8, dot_spq8). Rows are random with a share of
 * zeros (0, 30, 50, 70%); Q8_0_24 keeps two values of every four whatever
 * the share (it is timed once: its speed does not depend on it). Prints
 * bytes a row, ns a row (median and best of R) and the read rate. It prints
 * figures; it is not a test.
 *
 *     make build/bench_pruned && build/bench_pruned [--mb M] [--reps R]
 *                                                      (defaults 256, 9)
 *
 * M is the size of the dense Q8_0 matrix; the pruned ones hold the same
 * rows (fewer bytes). Each repetition runs every variant once, in turn.
 */
#define _GNU_SOURCE 1
#include "../../deepseek_impl/internal.h"
#include "../../kernels/cpu/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { COLS = 2048, NB = COLS / DSI_Q8_BLOCK, MAXREPS = 101, NV = 6 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t st = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    st ^= st << 13, st ^= st >> 7, st ^= st << 17;
    return (float)(st >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct variant {
    const char *name;
    ds_dtype dt;
    int zero_pct;
    uint8_t *w;
    size_t stride;
    double t[MAXREPS];
} variant;

int main(int argc, char **argv) {
    int mb = 256, reps = 9;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--mb M] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (mb < 1 || reps < 1 || reps > MAXREPS) {
        fprintf(stderr, "--mb >= 1, --reps 1..%d\n", MAXREPS);
        return 2;
    }
    dsi_kernels K;
    dsi_kernels_select(&K, dsi_cpu_features());
    size_t rb8 = NB * DSI_Q8_BLOCK_BYTES;
    int rows = (int)(((size_t)mb << 20) / rb8);
    variant v[NV] = {{"Q8_0", DS_DTYPE_Q8_0, 0, NULL, 0, {0}},     {"Q8_0_SP 0%", DS_DTYPE_Q8_0_SP, 0, NULL, 0, {0}},
                     {"Q8_0_SP 30%", DS_DTYPE_Q8_0_SP, 30, NULL, 0, {0}}, {"Q8_0_SP 50%", DS_DTYPE_Q8_0_SP, 50, NULL, 0, {0}},
                     {"Q8_0_SP 70%", DS_DTYPE_Q8_0_SP, 70, NULL, 0, {0}}, {"Q8_0_24", DS_DTYPE_Q8_0_24, 50, NULL, 0, {0}}};
    static float row[COLS], x[COLS], s[NB];
    static int8_t q[COLS];
    for (int i = 0; i < COLS; i++) x[i] = frand();
    K.quantize_act(x, COLS, q, s);
    float *out = malloc((size_t)rows * sizeof *out);
    for (int k = 0; k < NV; k++) {
        /* the SP stride: the largest row's values (the converter's rule) */
        v[k].stride = v[k].dt == DS_DTYPE_Q8_0 ? rb8 : v[k].dt == DS_DTYPE_Q8_0_24 ? NB * DSI_Q24_BLOCK_BYTES
                                                                                  : NB * DSI_SP_HEAD_BYTES + COLS;
        v[k].w = calloc((size_t)rows * v[k].stride + COLS, 1);
        if (!v[k].w || !out) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        size_t most = 0;
        uint64_t keep = st;
        for (int pass = 0; pass < (v[k].dt == DS_DTYPE_Q8_0_SP ? 2 : 1); pass++) {
            st = keep;
            for (int r = 0; r < rows; r++) {
                for (int i = 0; i < COLS; i++) row[i] = (frand() * 50.0f + 50.0f) < (float)v[k].zero_pct ? 0 : frand();
                uint8_t *dst = v[k].w + (size_t)r * v[k].stride;
                if (v[k].dt == DS_DTYPE_Q8_0) dsi_quantize_row_q8_0(row, dst, COLS);
                else if (v[k].dt == DS_DTYPE_Q8_0_24) dsi_quantize_row_q8_0_24(row, dst, COLS);
                else if (pass == 0) {
                    size_t c = dsi_sp_row_count(row, COLS);
                    most = c > most ? c : most;
                } else {
                    dsi_quantize_row_q8_0_sp(row, dst, COLS, v[k].stride);
                }
            }
            if (v[k].dt == DS_DTYPE_Q8_0_SP && pass == 0) v[k].stride = NB * DSI_SP_HEAD_BYTES + most;
        }
    }
    for (int rep = 0; rep < reps; rep++)
        for (int k = 0; k < NV; k++) {
            const uint8_t *w = v[k].w;
            size_t sd = v[k].stride;
            double t0 = now();
            if (v[k].dt == DS_DTYPE_Q8_0)
                for (int r = 0; r < rows; r++) out[r] = K.dot_q8q8(w + (size_t)r * sd, q, s, COLS);
            else if (v[k].dt == DS_DTYPE_Q8_0_24)
                for (int r = 0; r < rows; r++) out[r] = K.dot_24q8(w + (size_t)r * sd, q, s, COLS);
            else
                for (int r = 0; r < rows; r++) out[r] = K.dot_spq8(w + (size_t)r * sd, q, s, COLS);
            v[k].t[rep] = now() - t0;
        }
    printf("kernels %s, %d rows of %d columns, 1 thread, %d repetitions\n", K.name, rows, COLS, reps);
    printf("%-12s %10s %9s %12s %10s %8s\n", "format", "bytes/row", "vs Q8_0", "ns/row med", "ns/row min", "GB/s");
    for (int k = 0; k < NV; k++) {
        qsort(v[k].t, (size_t)reps, sizeof(double), cmp_double);
        double med = v[k].t[reps / 2], best = v[k].t[0];
        printf("%-12s %10zu %8.1f%% %12.1f %10.1f %8.2f\n", v[k].name, v[k].stride, 100.0 * (double)v[k].stride / (double)rb8,
               med / rows * 1e9, best / rows * 1e9, (double)v[k].stride * rows / med / 1e9);
        free(v[k].w);
    }
    free(out);
    return 0;
}
