/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * bench_lora.c — what LoRA adapters cost: decode time with an adapter
 * against the base (paired runs), and the memory each adapter adds.
 *
 *   make build/bench_lora
 *   build/bench_lora MODEL.dsm KEY ADAPTER.dsa [ADAPTER.dsa ...] [--threads N] [--steps S] [--reps R]
 *                    [--prompt P] [--cache-mb MB]
 *
 * Memory: the process's resident set (VmRSS) after the model opens, then
 * after each adapter opens, set against the adapter's plaintext bytes (its
 * A and B matrices); run it in a fresh process (a parent's memory is not
 * counted). Decode: a context evaluates a P-token prompt, then S decode
 * steps of one token each; the base (no adapter) and the first adapter
 * take turns R times (ABAB...), each on a fresh context, so drift in the
 * machine's speed falls on both; medians of milliseconds per decode token
 * and their ratio are printed.
 */
#include "deepseek.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* VmRSS of this process in bytes (0 when /proc is not there). */
static unsigned long long rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtoull(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb * 1024;
}

/* Milliseconds per decode token of one run (prompt, then steps). */
static double decode_ms(ds_model *m, ds_adapter *a, int threads, int prompt, int steps) {
    ds_context *c = NULL;
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = prompt + steps + 8;
    cp.n_threads = threads;
    if (ds_context_new(&c, m, &cp) || (a && ds_context_set_adapters(c, &a, NULL, 1))) {
        fprintf(stderr, "bench_lora: context: %s\n", ds_last_error());
        exit(1);
    }
    int32_t tok[512];
    for (int i = 0; i < prompt && i < 512; i++) tok[i] = 100 + (i * 37) % 900;
    if (ds_context_eval(c, tok, (size_t)prompt, NULL, 0)) {
        fprintf(stderr, "bench_lora: prompt: %s\n", ds_last_error());
        exit(1);
    }
    double t0 = now();
    for (int i = 0; i < steps; i++) {
        int32_t t = 200 + (i * 53) % 800;
        if (ds_context_eval(c, &t, 1, NULL, 0)) {
            fprintf(stderr, "bench_lora: decode: %s\n", ds_last_error());
            exit(1);
        }
    }
    double ms = (now() - t0) * 1e3 / steps;
    ds_context_free(c);
    return ms;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.dsm KEY ADAPTER.dsa [ADAPTER.dsa ...] [--threads N] [--steps S] [--reps R] "
                        "[--prompt P] [--cache-mb MB]\n", argv[0]);
        return 2;
    }
    int threads = 2, steps = 32, reps = 5, prompt = 16;
    unsigned long long cache_mb = 0;
    const char *adapters[DS_MAX_ADAPTERS];
    int n_ad = 0;
    for (int i = 3; i < argc; i++) {
        if (argv[i][0] == '-' && i + 1 < argc) {
            const char *o = argv[i], *v = argv[++i];
            if (!strcmp(o, "--threads")) threads = atoi(v);
            else if (!strcmp(o, "--steps")) steps = atoi(v);
            else if (!strcmp(o, "--reps")) reps = atoi(v);
            else if (!strcmp(o, "--prompt")) prompt = atoi(v);
            else if (!strcmp(o, "--cache-mb")) cache_mb = strtoull(v, NULL, 10);
            else {
                fprintf(stderr, "bench_lora: unknown option %s\n", o);
                return 2;
            }
        } else if (n_ad < DS_MAX_ADAPTERS) {
            adapters[n_ad++] = argv[i];
        }
    }
    if (prompt < 1 || prompt > 512 || steps < 1 || reps < 1 || n_ad < 1) {
        fprintf(stderr, "bench_lora: --prompt 1..512, --steps and --reps >= 1, at least one adapter\n");
        return 2;
    }
    unsigned char key[DS_KEY_BYTES];
    if (ds_key_file_read(argv[2], key)) {
        fprintf(stderr, "bench_lora: %s\n", ds_last_error());
        return 1;
    }
    unsigned long long rss0 = rss_bytes();
    ds_model *m = NULL;
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = DS_KEY_BYTES;
    mp.n_threads = threads;
    mp.expert_cache_bytes = cache_mb << 20;
    if (ds_model_open(&m, argv[1], &mp)) {
        fprintf(stderr, "bench_lora: %s\n", ds_last_error());
        return 1;
    }
    unsigned long long rss_model = rss_bytes();
    printf("model %s: %.1f MiB resident after open (%.1f MiB before)\n", argv[1], (rss_model - rss0) / 1048576.0,
           rss0 / 1048576.0);
    /* memory: each adapter opened in turn */
    ds_adapter *ad[DS_MAX_ADAPTERS] = {0};
    unsigned long long prev = rss_model, sum_bytes = 0;
    printf("%-40s %10s %12s %12s %8s\n", "adapter", "rank", "bytes (MiB)", "RSS + (MiB)", "ratio");
    for (int i = 0; i < n_ad; i++) {
        ds_adapter_params ap = ds_adapter_default_params();
        ap.key = key;
        ap.key_len = DS_KEY_BYTES;
        if (ds_adapter_open(&ad[i], m, adapters[i], &ap)) {
            fprintf(stderr, "bench_lora: %s\n", ds_last_error());
            return 1;
        }
        ds_adapter_info inf;
        (void)!ds_adapter_get_info(ad[i], &inf);
        unsigned long long r = rss_bytes();
        sum_bytes += inf.resident_bytes;
        printf("%-40s %10d %12.2f %12.2f %8.3f\n", adapters[i], inf.rank, inf.resident_bytes / 1048576.0,
               (r - prev) / 1048576.0, inf.resident_bytes ? (double)(r - prev) / inf.resident_bytes : 0.0);
        prev = r;
    }
    printf("%d adapters: %.2f MiB of matrices, resident set grew %.2f MiB (%.3fx)\n", n_ad, sum_bytes / 1048576.0,
           (prev - rss_model) / 1048576.0, sum_bytes ? (double)(prev - rss_model) / sum_bytes : 0.0);
    ds_adapter_info i0;
    (void)!ds_adapter_get_info(ad[0], &i0);
    printf("decode: base vs %s (r %d, %s), %d-token prompt, %d steps, %d pairs, %d threads\n", adapters[0], i0.rank,
           i0.targets, prompt, steps, reps, threads);
    (void)decode_ms(m, NULL, threads, prompt, 4);   /* warm up: page in the weights */
    (void)decode_ms(m, ad[0], threads, prompt, 4);
    double *tb = calloc((size_t)reps, sizeof *tb), *ta = calloc((size_t)reps, sizeof *ta),
           *rt = calloc((size_t)reps, sizeof *rt);
    for (int r = 0; r < reps; r++) {
        /* alternate which goes first, so neither always follows the other */
        if (r % 2 == 0) {
            tb[r] = decode_ms(m, NULL, threads, prompt, steps);
            ta[r] = decode_ms(m, ad[0], threads, prompt, steps);
        } else {
            ta[r] = decode_ms(m, ad[0], threads, prompt, steps);
            tb[r] = decode_ms(m, NULL, threads, prompt, steps);
        }
        rt[r] = ta[r] / tb[r];
        printf("  pair %d: base %.3f ms/token, adapter %.3f ms/token, ratio %.4f\n", r + 1, tb[r], ta[r], rt[r]);
    }
    qsort(tb, (size_t)reps, sizeof *tb, cmp_d);
    qsort(ta, (size_t)reps, sizeof *ta, cmp_d);
    qsort(rt, (size_t)reps, sizeof *rt, cmp_d);
    printf("median: base %.3f ms/token, adapter %.3f ms/token; median pair ratio %.4f (cost %+.1f%%), quartiles "
           "%.4f .. %.4f\n",
           tb[reps / 2], ta[reps / 2], rt[reps / 2], (rt[reps / 2] - 1) * 100, rt[reps / 4], rt[(3 * reps) / 4]);
    free(tb);
    free(ta);
    free(rt);
    for (int i = 0; i < n_ad; i++) ds_adapter_close(ad[i]);
    ds_model_close(m);
    ds_memzero(key, sizeof key);
    return 0;
}
