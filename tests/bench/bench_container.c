/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * bench_container.c — figures for a sealed container (a benchmark, not a test):
 *   - decrypt GB/s on one core: every routed-expert segment opened into a
 *     buffer, as the expert pager will (page cache warm, second pass timed);
 *   - the same for in-memory AES-256-GCM on 1 MiB chunks (the ceiling);
 *   - ds_model_verify GB/s with 1 and N threads;
 *   - the container's size overhead over the raw quantized tensor bytes;
 *   - with --pagecache: how much of the sealed file's expert segments stay in
 *     the OS page cache after the expert cache has decrypted each of them
 *     (it drops their ciphertext with posix_fadvise), from a warm start.
 *
 *   build/bench_container model.dsm key.file [threads] [--pagecache]
 */
#include "../../deepseek_impl/internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* Bytes of [off, off+len) of the file that are in the page cache (mincore). */
static uint64_t cached_bytes(int fd, const ds_model *m) {
    struct stat st;
    if (fstat(fd, &st) != 0) return 0;
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return 0;
    long pg = sysconf(_SC_PAGESIZE);
    size_t pages = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg;
    unsigned char *vec = malloc(pages);
    uint64_t total = 0;
    if (vec && mincore(map, (size_t)st.st_size, vec) == 0)
        for (size_t i = 0; i < m->meta.n_segments; i++) {
            const dsi_segment *s = &m->meta.segments[i];
            if (s->kind != DS_SEGMENT_EXPERT) continue;
            for (uint64_t o = s->offset / (uint64_t)pg; o < (s->offset + s->stored_bytes + (uint64_t)pg - 1) / (uint64_t)pg; o++)
                if (vec[o] & 1) total += (uint64_t)pg;
        }
    free(vec);
    munmap(map, (size_t)st.st_size);
    return total;
}

static int pagecache(const char *path, const unsigned char *key) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 1;
    /* warm: read the whole file */
    static char buf[1 << 20];
    while (read(fd, buf, sizeof buf) > 0) {}
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = 32;
    mp.prefetch = 0;
    ds_model *m = NULL;
    size_t slot = 0;
    /* budget: two experts (every acquisition below is a miss) */
    if (ds_model_open(&m, path, &mp) == DS_OK) {
        for (size_t i = 0; i < m->meta.n_segments; i++)
            if (m->meta.segments[i].kind == DS_SEGMENT_EXPERT && m->meta.segments[i].plain_bytes > slot)
                slot = (size_t)m->meta.segments[i].plain_bytes;
        ds_model_close(m);
    }
    mp.expert_cache_bytes = 2 * ((slot + 4095) / 4096 * 4096);
    m = NULL;
    if (ds_model_open(&m, path, &mp) != DS_OK) {
        fprintf(stderr, "%s\n", ds_last_error());
        return 1;
    }
    uint64_t before = cached_bytes(fd, m), experts = 0;
    dsi_err e = {0};
    for (int l = 0; l < m->cfg.n_layers; l++) {
        if (!m->w.layers[l].moe) continue;
        for (int x = 0; x < m->cfg.n_routed_experts; x++) {
            const uint8_t *base;
            if (dsi_expert_acquire(m, l, x, &base, &e) == DS_OK) {
                dsi_expert_release(m, l, x);
                experts++;
            }
        }
    }
    uint64_t after = cached_bytes(fd, m);
    printf("page cache of the expert segments: %.1f MB before, %.1f MB after decrypting %llu experts through a "
           "2-slot cache\n", before / 1e6, after / 1e6, (unsigned long long)experts);
    ds_model_close(m);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s model.dsm key.file [threads]\n", argv[0]);
        return 2;
    }
    int nt = argc > 3 ? atoi(argv[3]) : 2;
    if (nt < 1) nt = 2;
    unsigned char key[32];
    if (ds_key_file_read(argv[2], key) != DS_OK) {
        fprintf(stderr, "%s\n", ds_last_error());
        return 1;
    }
    if (argc > 4 && strcmp(argv[4], "--pagecache") == 0) return pagecache(argv[1], key);
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = 32;
    mp.load_weights = 0;
    ds_model *m = NULL;
    double t0 = dsi_now_seconds();
    if (ds_model_open(&m, argv[1], &mp) != DS_OK) {
        fprintf(stderr, "%s\n", ds_last_error());
        return 1;
    }
    printf("open (metadata only): %.3f s\n", dsi_now_seconds() - t0);

    /* size overhead */
    uint64_t tensor_bytes = 0, expert_plain = 0, file_bytes = m->hdr.file_bytes;
    for (size_t i = 0; i < m->meta.n_tensors; i++) tensor_bytes += m->meta.tensors[i].nbytes;
    size_t max_seg = 0, n_expert = 0;
    for (size_t i = 0; i < m->meta.n_segments; i++) {
        const dsi_segment *s = &m->meta.segments[i];
        if (s->kind == DS_SEGMENT_EXPERT) {
            expert_plain += s->plain_bytes;
            n_expert++;
            if (s->plain_bytes > max_seg) max_seg = (size_t)s->plain_bytes;
        }
    }
    printf("file %.1f MB, tensors %.1f MB: overhead %.3f%% (%llu bytes: header, padding, tags, metadata)\n",
           file_bytes / 1e6, tensor_bytes / 1e6, 100.0 * (double)(file_bytes - tensor_bytes) / (double)tensor_bytes,
           (unsigned long long)(file_bytes - tensor_bytes));

    /* one core: expert segments, as the pager reads them */
    uint8_t *buf = malloc(max_seg ? max_seg : 1);
    dsi_err e = {0};
    double best = 0;
    for (int pass = 0; pass < 2 && n_expert; pass++) {
        double t = dsi_now_seconds();
        for (size_t i = 0; i < m->meta.n_segments; i++)
            if (m->meta.segments[i].kind == DS_SEGMENT_EXPERT && dsi_segment_read(m, (uint32_t)i, buf, max_seg, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
        double dt = dsi_now_seconds() - t;
        best = (double)expert_plain / dt / 1e9;
    }
    printf("expert segments: %zu, %.1f MB; decrypt on 1 core: %.2f GB/s\n", n_expert, expert_plain / 1e6, best);

    /* the in-memory ceiling: AES-256-GCM on 1 MiB chunks */
    size_t cb = 1 << 20, reps = 512;
    uint8_t *in = malloc(cb), *out = malloc(cb), tag[16];
    randombytes_buf(in, cb);
    dsi_chunk_ad ad = {0, DS_SEGMENT_EXPERT, 0, 0, 0, cb, 1, NULL, 0};
    double t = dsi_now_seconds();
    for (size_t r = 0; r < reps; r++) {
        ad.chunk = r;
        dsi_chunk_seal(m->keys, &ad, in, out, cb, tag, &e);
    }
    double dt = dsi_now_seconds() - t;
#ifdef DS_CRYPTO_OPENSSL
    const char *provider = "OpenSSL";
#else
    const char *provider = "libsodium";
#endif
    printf("AES-256-GCM seal in memory (%s), 1 MiB chunks, 1 core: %.2f GB/s\n", provider,
           (double)(cb * reps) / dt / 1e9);

    /* verify */
    for (int k = 1; k <= nt; k = k == nt ? nt + 1 : nt) {
        t = dsi_now_seconds();
        if (ds_model_verify(m, k, NULL, NULL) != DS_OK) {
            fprintf(stderr, "%s\n", ds_last_error());
            return 1;
        }
        dt = dsi_now_seconds() - t;
        printf("verify, %d thread(s): %.2f GB/s (%.1f MB in %.2f s)\n", k, (double)file_bytes / dt / 1e9,
               file_bytes / 1e6, dt);
    }
    free(buf);
    free(in);
    free(out);
    ds_model_close(m);
    ds_memzero(key, sizeof key);
    return 0;
}
