/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * bench_batch.c — decode throughput against the number of sequences that
 * share a pass (ds_context_eval_batch), with no server in the way.
 *
 *   make build/bench_batch
 *   build/bench_batch MODEL.dsm KEY [--threads N] [--steps S] [--batches 1,2,4,8] [--reps R] [--ctx N]
 *                     [--cache-mb MB]
 *
 * Each sequence first gets a short prompt of its own; then, for each batch
 * size B, S decode passes of B tokens, each with its logits (each sequence
 * continues, truncated back before the next size). The sizes take turns R times; medians are
 * printed, with the mean count of distinct routed experts a pass read
 * (the expert cache's hits and misses with --cache-mb; "-" when resident), so the
 * figures can be set against what a pass must read.
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

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.dsm KEY [--threads N] [--steps S] [--batches 1,2,4,8] [--reps R] [--ctx N] [--cache-mb MB]\n",
                argv[0]);
        return 2;
    }
    int threads = 2, steps = 16, reps = 3, n_ctx = 512;
    unsigned long long cache_mb = 0;
    int sizes[16] = {1, 2, 4, 8}, n_sizes = 4;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ctx")) n_ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cache-mb")) cache_mb = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--batches")) {
            n_sizes = 0;
            for (char *p = argv[i + 1]; *p && n_sizes < 16;) {
                sizes[n_sizes++] = (int)strtol(p, &p, 10);
                if (*p == ',') p++;
            }
        } else {
            fprintf(stderr, "bench_batch: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    int max_b = 1;
    for (int i = 0; i < n_sizes; i++) {
        if (sizes[i] < 1 || sizes[i] > 256) {
            fprintf(stderr, "bench_batch: batch size %d out of range\n", sizes[i]);
            return 2;
        }
        if (sizes[i] > max_b) max_b = sizes[i];
    }
    unsigned char key[DS_KEY_BYTES];
    if (ds_key_file_read(argv[2], key) != DS_OK) {
        fprintf(stderr, "bench_batch: %s\n", ds_last_error());
        return 1;
    }
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.n_threads = threads;
    mp.expert_cache_bytes = cache_mb << 20;
    ds_model *m = NULL;
    double t0 = now();
    if (ds_model_open(&m, argv[1], &mp) != DS_OK) {
        fprintf(stderr, "bench_batch: %s\n", ds_last_error());
        return 1;
    }
    ds_memzero(key, sizeof key);
    fprintf(stderr, "opened in %.1f s\n", now() - t0);
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_seq = max_b;
    ds_context *c = NULL;
    if (ds_context_new(&c, m, &cp) != DS_OK) {
        fprintf(stderr, "bench_batch: %s\n", ds_last_error());
        return 1;
    }
    ds_model_config cf;
    if (ds_model_get_config(m, &cf) != DS_OK) return 1;
    const ds_tokenizer *tok = ds_model_tokenizer(m);
    ds_context *seqs[256];
    int32_t toks[256];
    int base[256];
    for (int i = 0; i < max_b; i++) {
        char text[128];
        snprintf(text, sizeof text, "Sequence %d: once upon a time, in a land far away,", i);
        int32_t ids[64];
        size_t n = 0;
        if (ds_tokenizer_encode(tok, text, strlen(text), DS_TOKENIZE_BOS, ids, 64, &n) != DS_OK) return 1;
        seqs[i] = ds_context_seq(c, i);
        if (ds_context_eval(seqs[i], ids, n, NULL, 0) != DS_OK) {
            fprintf(stderr, "bench_batch: %s\n", ds_last_error());
            return 1;
        }
        base[i] = (int)n;
    }
    /* every sequence's logits, as a generation needs them (the head is a
     * large share of a decode pass) */
    float *lbuf = malloc((size_t)max_b * (size_t)cf.vocab_size * sizeof *lbuf);
    float *lg[256];
    if (!lbuf) return 1;
    for (int i = 0; i < max_b; i++) lg[i] = lbuf + (size_t)i * (size_t)cf.vocab_size;
    double *tps = calloc((size_t)n_sizes * (size_t)reps, sizeof *tps);
    double *reads = calloc((size_t)n_sizes * (size_t)reps, sizeof *reads);
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < n_sizes; k++) {
            int B = sizes[k];
            ds_model_cache_stats_reset(m);
            double t = now();
            for (int s = 0; s < steps; s++) {
                for (int i = 0; i < B; i++) toks[i] = (int32_t)((1000 + 7919 * (i + 1) * (s + 3)) % cf.vocab_size);
                if (ds_context_eval_batch(seqs, toks, (size_t)B, lg) != DS_OK) {
                    fprintf(stderr, "bench_batch: %s\n", ds_last_error());
                    return 1;
                }
            }
            double dt = now() - t;
            ds_cache_stats cs;
            if (ds_model_cache_stats(m, &cs) == DS_OK && cs.n_slots)
                reads[(size_t)k * reps + r] = (double)(cs.hits + cs.misses) / steps;
            tps[(size_t)k * reps + r] = (double)B * steps / dt;
            for (int i = 0; i < B; i++)
                if (ds_context_truncate(seqs[i], base[i]) != DS_OK) return 1;
        }
    printf("| sequences per pass | tokens/s (median of %d) | x one sequence | expert reads per pass |\n", reps);
    printf("|---|---|---|---|\n");
    double one = 0;
    for (int k = 0; k < n_sizes; k++) {
        qsort(tps + (size_t)k * reps, (size_t)reps, sizeof *tps, cmp_d);
        double med = tps[(size_t)k * reps + reps / 2];
        if (sizes[k] == 1 || one == 0) one = sizes[k] == 1 ? med : one;
        char rd[32] = "-";
        if (reads[(size_t)k * reps]) snprintf(rd, sizeof rd, "%.1f", reads[(size_t)k * reps]);
        printf("| %d | %.2f | %.2f | %s |\n", sizes[k], med, one > 0 ? med / one : 0.0, rd);
    }
    free(tps);
    free(reads);
    free(lbuf);
    ds_context_free(c);
    ds_model_close(m);
    return 0;
}
