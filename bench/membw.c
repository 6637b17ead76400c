/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * membw.c — the machine's memory read bandwidth: N threads stream through
 * their slices of one buffer much larger than the caches, summing 64-bit
 * words (the loads a decode step does to its weights, without the
 * arithmetic). Best of R runs, in GB/s (10^9 bytes).
 *
 *     membw [--threads N] [--mb M] [--runs R] [--pages default|huge|small]
 *                                      (defaults: all CPUs, 1024 MB, 10, default)
 *
 * Prints one line "membw threads=N mb=M best_gbs=X median_gbs=Y pages=P
 * anon_huge_mb=H". The buffer is written once first (so its pages exist and
 * are not the shared zero page). Pages: default is posix_memalign (whatever
 * the C library and the THP setting give); huge a 2 MiB-aligned mapping with
 * madvise(MADV_HUGEPAGE), as the library's weight buffers; small one with
 * MADV_NOHUGEPAGE (4 KiB pages, as the weights had before). anon_huge_mb is
 * the process's AnonHugePages (/proc/self/smaps_rollup) after the writes.
 * Build: cc -std=c11 -O2 -pthread bench/membw.c -o membw
 */
#define _GNU_SOURCE 1

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const uint64_t *p;
    size_t n;                       /* words */
    uint64_t sum;
    pthread_barrier_t *start;
} slice;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *reader(void *arg) {
    slice *s = arg;
    /* four independent sums so the loads are not serialised on one add chain */
    uint64_t a = 0, b = 0, c = 0, d = 0;
    const uint64_t *p = s->p;
    size_t n = s->n & ~(size_t)3;
    pthread_barrier_wait(s->start);
    for (size_t i = 0; i < n; i += 4) {
        a += p[i];
        b += p[i + 1];
        c += p[i + 2];
        d += p[i + 3];
    }
    s->sum = a + b + c + d;
    return NULL;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* AnonHugePages of the process in MB, -1 when unknown. */
static double anon_huge_mb(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    double v = -1;
    if (!f) return v;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "AnonHugePages:", 14)) v = strtod(line + 14, NULL) / 1024.0;
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    long threads = sysconf(_SC_NPROCESSORS_ONLN), mb = 1024, runs = 10;
    const char *pages = "default";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pages") && i + 1 < argc &&
            (!strcmp(argv[i + 1], "default") || !strcmp(argv[i + 1], "huge") || !strcmp(argv[i + 1], "small"))) {
            pages = argv[++i];
            continue;
        }
        long *dst = !strcmp(argv[i], "--threads") ? &threads : !strcmp(argv[i], "--mb") ? &mb
                  : !strcmp(argv[i], "--runs") ? &runs : NULL;
        if (!dst || i + 1 >= argc || (*dst = strtol(argv[++i], NULL, 10)) <= 0) {
            fputs("usage: membw [--threads N] [--mb M] [--runs R] [--pages default|huge|small]\n", stderr);
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    if (runs > 1000) runs = 1000;
    size_t bytes = (size_t)mb << 20;
    size_t words = bytes / sizeof(uint64_t);
    uint64_t *buf = NULL;
    const size_t huge = (size_t)2 << 20;
    if (!strcmp(pages, "default")) {
        if (posix_memalign((void **)&buf, 4096, bytes)) buf = NULL;
    } else {
        /* 2 MiB aligned either way, so only the advice differs */
        uint8_t *raw = mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw != MAP_FAILED) {
            buf = (uint64_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
            if (madvise(buf, bytes, !strcmp(pages, "huge") ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) != 0)
                perror("membw: madvise");
        }
    }
    if (!buf) {
        fprintf(stderr, "membw: cannot allocate %ld MB\n", mb);
        return 1;
    }
    for (size_t i = 0; i < words; i++) buf[i] = i * 0x9e3779b97f4a7c15ull;
    double ahp = anon_huge_mb();

    pthread_t tid[256];
    slice sl[256];
    double gbs[1000];
    uint64_t check = 0;
    pthread_barrier_t start;
    for (long r = 0; r < runs; r++) {
        pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
        size_t per = words / (size_t)threads;
        for (long t = 0; t < threads; t++) {
            sl[t].p = buf + (size_t)t * per;
            sl[t].n = per;
            sl[t].start = &start;
            if (pthread_create(&tid[t], NULL, reader, &sl[t])) {
                fputs("membw: cannot start a thread\n", stderr);
                return 1;
            }
        }
        pthread_barrier_wait(&start);
        double t0 = now_s();
        for (long t = 0; t < threads; t++) {
            pthread_join(tid[t], NULL);
            check += sl[t].sum;
        }
        double dt = now_s() - t0;
        pthread_barrier_destroy(&start);
        gbs[r] = (double)(per * (size_t)threads * sizeof(uint64_t)) / dt / 1e9;
    }
    qsort(gbs, (size_t)runs, sizeof gbs[0], cmp_double);
    printf("membw threads=%ld mb=%ld best_gbs=%.2f median_gbs=%.2f pages=%s anon_huge_mb=%.0f check=%llx\n", threads,
           mb, gbs[runs - 1], gbs[runs / 2], pages, ahp, (unsigned long long)(check & 0xff));
    if (!strcmp(pages, "default")) free(buf);   /* the mappings go with the process */
    return 0;
}
