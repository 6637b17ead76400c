/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * bench_crypto.c — AES-256-GCM through the library's crypto interface
 * (dsi_chunk_seal / dsi_chunk_open), in memory, for whichever provider the
 * library was built with (a benchmark, not a test):
 *   - seal and open GB/s on one core, for 1 MiB chunks (the default chunk
 *     size) and smaller ones, where the per-call cost shows. Timed by the
 *     thread's CPU clock, so that on a shared machine the figure is per
 *     second of core time rather than of waiting for one;
 *   - open GB/s with N threads sharing one dsi_keys, as the pager's threads do.
 *
 *   build/bench_crypto [threads] [seconds per figure]
 *   build-openssl/bench_crypto ...            (make OPENSSL=1)
 */
#include "../../deepseek_impl/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sodium.h>
#if defined(DS_CRYPTO_OPENSSL) && DS_CRYPTO_OPENSSL
#include <openssl/crypto.h>
#endif

static dsi_keys keys;
static double run_seconds = 1.0;

/* CPU seconds used by the calling thread. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ==== One core ============================================================ */
/* Seals (open = 0) or opens (open = 1) chunks of n bytes for run_seconds of
 * CPU time; returns GB/s (10^9 bytes per CPU second), the best of three runs. */
static double bench_one(size_t n, int open) {
    uint8_t *in = malloc(n), *out = malloc(n), tag[16];
    if (!in || !out) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    randombytes_buf(in, n);
    dsi_err e = {0};
    dsi_chunk_ad ad = {7, DS_SEGMENT_EXPERT, 3, 11, 0, n, 1, NULL, 0};
    uint8_t *sealed = malloc(n);
    if (!sealed || dsi_chunk_seal(&keys, &ad, in, sealed, n, tag, &e)) {
        fprintf(stderr, "seal failed: %s\n", e.msg);
        exit(1);
    }
    double best = 0;
    for (int r = 0; r < 3; r++) {
        uint64_t bytes = 0;
        double t0 = cpu_seconds(), t = t0;
        while (t - t0 < run_seconds / 3) {
            for (int k = 0; k < 16; k++) {
                ds_status s = open ? dsi_chunk_open(&keys, &ad, sealed, out, n, tag, &e)
                                   : dsi_chunk_seal(&keys, &ad, in, out, n, tag, &e);
                if (s) {
                    fprintf(stderr, "%s failed: %s\n", open ? "open" : "seal", e.msg);
                    exit(1);
                }
                bytes += n;
            }
            t = cpu_seconds();
        }
        double gbs = (double)bytes / (t - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(in);
    free(out);
    free(sealed);
    return best;
}

/* ==== Threads ============================================================= */
typedef struct job {
    size_t n;
    uint8_t *sealed, *out, tag[16];
    dsi_chunk_ad ad;
    uint64_t bytes;
    double seconds;
} job;

static void *open_worker(void *arg) {
    job *j = arg;
    dsi_err e = {0};
    double t0 = dsi_now_seconds(), t = t0;
    while (t - t0 < run_seconds) {
        for (int k = 0; k < 16; k++) {
            if (dsi_chunk_open(&keys, &j->ad, j->sealed, j->out, j->n, j->tag, &e)) {
                fprintf(stderr, "open failed: %s\n", e.msg);
                exit(1);
            }
            j->bytes += j->n;
        }
        t = dsi_now_seconds();
    }
    j->seconds = t - t0;
    return NULL;
}

/* Aggregate open GB/s of nt threads, each opening its own 1 MiB chunk. */
static double bench_threads(int nt) {
    job *jobs = calloc((size_t)nt, sizeof *jobs);
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    if (!jobs || !th) exit(1);
    dsi_err e = {0};
    for (int i = 0; i < nt; i++) {
        job *j = &jobs[i];
        j->n = 1u << 20;
        j->sealed = malloc(j->n);
        j->out = malloc(j->n);
        if (!j->sealed || !j->out) exit(1);
        randombytes_buf(j->out, j->n);
        j->ad = (dsi_chunk_ad){(uint32_t)i, DS_SEGMENT_EXPERT, 0, i, 0, j->n, 1, NULL, 0};
        if (dsi_chunk_seal(&keys, &j->ad, j->out, j->sealed, j->n, j->tag, &e)) {
            fprintf(stderr, "seal failed: %s\n", e.msg);
            exit(1);
        }
    }
    for (int i = 0; i < nt; i++) pthread_create(&th[i], NULL, open_worker, &jobs[i]);
    double total = 0;
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        total += (double)jobs[i].bytes / jobs[i].seconds / 1e9;
        free(jobs[i].sealed);
        free(jobs[i].out);
    }
    free(jobs);
    free(th);
    return total;
}

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : dsi_num_cpus();
    if (argc > 2) run_seconds = atof(argv[2]);
    if (nt < 1) nt = 1;
    if (run_seconds <= 0) run_seconds = 1.0;
    uint8_t master[32], salt[32];
    dsi_err e = {0};
    randombytes_buf(master, sizeof master);
    randombytes_buf(salt, sizeof salt);
    if (dsi_keys_derive(&keys, DS_CIPHER_AES256GCM, master, 32, salt, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
#if defined(DS_CRYPTO_OPENSSL) && DS_CRYPTO_OPENSSL
    printf("provider: %s (libsodium %s for the rest)\n", OpenSSL_version(OPENSSL_VERSION), sodium_version_string());
#else
    printf("provider: libsodium %s\n", sodium_version_string());
#endif
    printf("%-10s %12s %12s   (GB/s = 10^9 bytes per CPU second, one thread)\n", "chunk", "seal GB/s", "open GB/s");
    static const size_t sizes[] = {1u << 20, 256u << 10, 64u << 10, 4u << 10};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        double s = bench_one(sizes[i], 0), o = bench_one(sizes[i], 1);
        printf("%6zu KiB %12.2f %12.2f\n", sizes[i] >> 10, s, o);
    }
    for (int k = 1;; k = k * 2 < nt ? k * 2 : nt) {   /* 1, 2, 4, ..., nt */
        printf("open, 1 MiB chunks, %2d thread(s): %.2f GB/s in all (wall clock)\n", k, bench_threads(k));
        if (k == nt) break;
    }
    sodium_memzero(&keys, sizeof keys);
    sodium_memzero(master, sizeof master);
    return 0;
}
