/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fill_bench.c — expert fills per second through the pager: every acquire a
 * miss (2 slots, no prefetch), cycling over all routed experts.
 *     cc -O2 -std=c11 -pthread -I. fill_bench.c -o fill_bench build/libdeepseek.a -lsodium -lm -lpthread -ldl
 *     fill_bench model.dsm key [threads] [passes] [page_cache_bytes]
 */
#include "deepseek_impl/internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static double cpu(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    unsigned char key[32]; FILE *f = fopen(argv[2], "rb"); if (!f || fread(key, 1, 32, f) != 32) return 1; fclose(f);
    int threads = argc > 3 ? atoi(argv[3]) : 1, passes = argc > 4 ? atoi(argv[4]) : 3;
    ds_model_params mp = ds_model_default_params();
    mp.key = key; mp.key_len = 32; mp.n_threads = threads; mp.expert_cache_bytes = 2u * 860160; mp.prefetch = DS_PREFETCH_OFF; mp.page_cache_bytes = argc > 5 ? strtoull(argv[5], 0, 10) : 0;
    ds_model *m = NULL;
    if (ds_model_open(&m, argv[1], &mp)) { puts(ds_last_error()); return 1; }
    int L = m->cfg.n_layers, E = m->cfg.n_routed_experts; uint64_t bytes = 0; int n = 0;
    double t0 = now(), c0 = cpu();
    for (int p = 0; p < passes; p++)
        for (int l = 0; l < L; l++) {
            if (!m->w.layers[l].moe) continue;
            for (int x = 0; x < E; x++) {
                const uint8_t *b; dsi_err e = {0};
                if (dsi_pager_acquire(m->pager, l, x, &b, &e)) { puts(e.msg); return 1; }
                dsi_pager_release(m->pager, l, x);
                bytes += m->meta.segments[m->w.layers[l].experts[x].segment].plain_bytes; n++;
            }
        }
    double t = now() - t0, c = cpu() - c0;
    printf("%d fills, %.1f MB in %.3f s wall (%.2f GB/s), %.3f s cpu (%.2f GB/s per cpu-second)\n", n, bytes / 1e6, t, bytes / t / 1e9, c, bytes / c / 1e9);
    ds_model_close(m);
    return 0;
}
