/*
 * bench_container.c — figures for a sealed container (a benchmark, not a test):
 *   - decrypt GB/s on one core: every routed-expert segment opened into a
 *     buffer, as the expert pager will (page cache warm, second pass timed);
 *   - the same for in-memory AES-256-GCM on 1 MiB chunks (the ceiling);
 *   - ds_model_verify GB/s with 1 and N threads;
 *   - the container's size overhead over the raw quantized tensor bytes.
 *
 *   build/bench_container model.dsm key.file [threads]
 */
#include "../../deepseek_impl/internal.h"

#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s model.dsm key.file [threads]\n", argv[0]);
        return 2;
    }
    int nt = argc > 3 ? atoi(argv[3]) : 2;
    unsigned char key[32];
    if (ds_key_file_read(argv[2], key) != DS_OK) {
        fprintf(stderr, "%s\n", ds_last_error());
        return 1;
    }
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
    printf("AES-256-GCM in memory (libsodium %s), 1 MiB chunks, 1 core: %.2f GB/s\n", sodium_version_string(),
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
