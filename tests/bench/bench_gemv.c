/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * bench_gemv.c — how close the decode products come to the memory's read
 * rate: one token against a weight matrix far larger than the caches
 * (Q8_0 and Q4_0, 2048 columns, in 2 MiB pages as the library's weight
 * memory), through the kernels the CPU device picks (also a Q8_0 row against
 * 2 and 4 tokens, as a decode pass of several sequences multiplies an expert
 * several of them chose), next to plain reads of
 * the same bytes: 64-bit scalar loads (bench/membw.c's loop, whose best run
 * is the "bound" of bench/results) and vector loads. It prints figures; it
 * is not a test.
 *
 *     make build/bench_gemv && build/bench_gemv [--mb M] [--threads N] [--reps R]
 *                                                  (defaults 512, 2, 15)
 *
 * Each repetition runs every variant once, in turn, so slow spells of the
 * machine hit them all alike; per variant the median and the best of R.
 * Threads take contiguous halves of the rows, as a decode product's tasks
 * do on average. The last column is the median as a share of the median of
 * the vector read: what is left for a faster kernel to win on this machine.
 */
#define _GNU_SOURCE 1
#include "../../deepseek_impl/internal.h"
#include "../../kernels/cpu/kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { COLS = 2048, NB = COLS / DSI_Q8_BLOCK, MAXT = 64, MAXREPS = 101 };

static dsi_kernels K;
static int rows8, rows4;
static uint8_t *W8, *W4;
static int8_t xq[COLS];
static uint8_t xu[4 * COLS];   /* four tokens' activations (the batch variants) */
static float xs[4 * NB];
static float *Y;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rs = 88172645463325252ull;
static uint32_t rnd(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (uint32_t)(rs >> 20);
}

/* n bytes in 2 MiB-aligned memory asked to be huge pages, written once */
static uint8_t *weights(size_t n) {
    size_t a = (size_t)2 << 20, m = (n + a - 1) / a * a;
    uint8_t *p = mmap(NULL, m + a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "bench_gemv: cannot map %.0f MB\n", (double)m / 1e6);
        exit(1);
    }
    uint8_t *q = (uint8_t *)(((uintptr_t)p + a - 1) / a * a);
    madvise(q, m, MADV_HUGEPAGE);
    return q;
}

typedef enum { V_READ64, V_READVEC, V_Q8, V_Q4, V_Q8X2, V_Q8X4, V_N } variant;
static const char *const names[V_N] = {"read, 64-bit loads", "read, vector loads", "Q8_0 decode rows",
                                       "Q4_0 decode rows", "Q8_0 rows x 2 tokens", "Q8_0 rows x 4 tokens"};

typedef struct {
    variant v;
    int r0, r1;          /* rows of W8 / W4 (reads: of W8's bytes) */
    uint64_t sink;
} slice;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static uint64_t read_vec(const uint8_t *p, size_t n) {
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(const void *)(p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 32)));
    }
    s0 = _mm256_add_epi64(s0, s1);
    return (uint64_t)_mm256_extract_epi64(s0, 0) ^ (uint64_t)_mm256_extract_epi64(s0, 3);
}
#endif

static void *work(void *arg) {
    slice *s = arg;
    size_t rb8 = (size_t)NB * DSI_Q8_BLOCK_BYTES, rb4 = (size_t)NB * DSI_Q4_BLOCK_BYTES;
    switch (s->v) {
    case V_READ64: {
        const uint64_t *p = (const uint64_t *)(const void *)(W8 + (size_t)s->r0 * rb8);
        size_t n = (size_t)(s->r1 - s->r0) * rb8 / 8;
        uint64_t a = 0;
        for (size_t i = 0; i < n; i++) a += p[i];
        s->sink = a;
        break;
    }
    case V_READVEC:
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (dsi_have_avx2()) {
            s->sink = read_vec(W8 + (size_t)s->r0 * rb8, (size_t)(s->r1 - s->r0) * rb8);
            break;
        }
#endif
        s->sink = 0;
        break;
    case V_Q8:
        for (int r = s->r0; r < s->r1; r++) {
            const uint8_t *rp = W8 + (size_t)r * rb8;
            if (K.dot_q8u8xT) {
                float o[4];
                K.dot_q8u8xT(rp, xu, COLS, xs, NB, COLS, 1, o);
                Y[r] = o[0];
            } else {
                Y[r] = K.dot_q8q8(rp, xq, xs, COLS);
            }
        }
        break;
    case V_Q8X2:
    case V_Q8X4:   /* a decode step of several sequences: each row once for all of them */
        for (int r = s->r0; r < s->r1 && K.dot_q8u8xT; r++) {
            float o[4];
            K.dot_q8u8xT(W8 + (size_t)r * rb8, xu, COLS, xs, NB, COLS, s->v == V_Q8X2 ? 2 : 4, o);
            Y[r] = o[0] + o[1];
        }
        break;
    case V_Q4:
        for (int r = s->r0; r < s->r1; r++) {
            const uint8_t *rp = W4 + (size_t)r * rb4;
            Y[r] = K.dot_q4u8 ? K.dot_q4u8(rp, xu, xs, COLS) : K.dot_q4q8(rp, xq, xs, COLS);
        }
        break;
    default:
        break;
    }
    return NULL;
}

static double run(variant v, int nt) {
    int rows = v == V_Q4 ? rows4 : rows8;
    pthread_t th[MAXT];
    slice sl[MAXT];
    double t = now();
    for (int i = 0; i < nt; i++) {
        sl[i] = (slice){v, (int)((long long)rows * i / nt), (int)((long long)rows * (i + 1) / nt), 0};
        if (i > 0) pthread_create(&th[i], NULL, work, &sl[i]);
    }
    work(&sl[0]);
    for (int i = 1; i < nt; i++) pthread_join(th[i], NULL);
    t = now() - t;
    double bytes = (double)rows * NB * (v == V_Q4 ? DSI_Q4_BLOCK_BYTES : DSI_Q8_BLOCK_BYTES);
    return bytes / t / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int mb = 512, nt = 2, reps = 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) nt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_gemv [--mb M] [--threads N] [--reps R]\n");
            return 2;
        }
    }
    if (mb < 64 || nt < 1 || nt > MAXT || reps < 1 || reps > MAXREPS) {
        fprintf(stderr, "bench_gemv: --mb at least 64, --threads 1-%d, --reps 1-%d\n", MAXT, MAXREPS);
        return 2;
    }
    dsi_kernels_select(&K, dsi_cpu_features());
    rows8 = (int)((double)mb * 1e6 / (NB * DSI_Q8_BLOCK_BYTES)) / 64 * 64;
    rows4 = (int)((double)mb * 1e6 / (NB * DSI_Q4_BLOCK_BYTES)) / 64 * 64;
    W8 = weights((size_t)rows8 * NB * DSI_Q8_BLOCK_BYTES);
    W4 = weights((size_t)rows4 * NB * DSI_Q4_BLOCK_BYTES);
    Y = malloc((size_t)(rows4 > rows8 ? rows4 : rows8) * sizeof(float));
    if (!Y) return 1;
    /* random blocks with small positive F16 scales */
    for (size_t b = 0; b < (size_t)rows8 * NB; b++) {
        uint8_t *p = W8 + b * DSI_Q8_BLOCK_BYTES;
        uint16_t h = (uint16_t)(0x2000 + rnd() % 0x800);
        memcpy(p, &h, 2);
        for (int j = 0; j < 32; j++) p[2 + j] = (uint8_t)(rnd() % 255 + 1);
    }
    for (size_t b = 0; b < (size_t)rows4 * NB; b++) {
        uint8_t *p = W4 + b * DSI_Q4_BLOCK_BYTES;
        uint16_t h = (uint16_t)(0x2000 + rnd() % 0x800);
        memcpy(p, &h, 2);
        for (int j = 0; j < 16; j++) p[2 + j] = (uint8_t)rnd();
    }
    float x[COLS];
    for (int i = 0; i < COLS; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
    K.quantize_act(x, COLS, xq, xs);
    if (K.act_to_u8)
        for (int t = 0; t < 4; t++) {
            K.act_to_u8(xq, xu + (size_t)t * COLS, COLS);
            memcpy(xs + (size_t)t * NB, xs, NB * sizeof(float));
        }

    static double res[V_N][MAXREPS];
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < V_N; v++) res[v][r] = run((variant)v, nt);
    printf("bench_gemv: %d threads, %d MB per matrix, %d x %d columns, %d repetitions, kernels %s\n", nt, mb, rows8,
           COLS, reps, K.dot_q8u8xT ? "avx512-vnni" : dsi_have_avx2() ? "avx2" : "portable");
    double med[V_N];
    for (int v = 0; v < V_N; v++) {
        qsort(res[v], (size_t)reps, sizeof(double), cmp);
        med[v] = res[v][reps / 2];
    }
    printf("%-22s %10s %10s %10s\n", "variant", "median", "best", "of vector");
    for (int v = 0; v < V_N; v++) {
        if (v == V_READVEC && med[v] == 0) continue;
        printf("%-22s %7.2f GB/s %5.2f GB/s", names[v], med[v], res[v][reps - 1]);
        if (med[V_READVEC] > 0) printf(" %8.0f%%", 100.0 * med[v] / med[V_READVEC]);
        printf("\n");
    }
    return 0;
}
