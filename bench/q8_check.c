/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * q8_check.c — the library's own Q8_0 and F16 encoders as a filter, so that
 * bench/hf_to_gguf_q8.py can prove that its numpy copy of them is bit-exact.
 *
 *     q8_check q8  IN.f32 OUT.q8    IN: n float32 values (n a multiple of 32);
 *                                   OUT: n/32 blocks of 34 bytes (f16 scale, 32 int8)
 *     q8_check q4  IN.f32 OUT.q4    OUT: n/32 blocks of 18 bytes (f16 scale, 16 bytes of nibbles)
 *     q8_check f16 IN.f32 OUT.f16   OUT: n IEEE halves
 *
 * Built against the multi-file library (its dsi_* functions are not static
 * there):  cc -std=c11 -O2 -I. bench/q8_check.c BUILD/libdeepseek.a -lsodium -lm -lpthread
 * Exit status 0 on success, 1 on an I/O error, 2 on a wrong command line.
 */
#include "deepseek_impl/internal.h"

#include <stdio.h>
#include <stdlib.h>

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    void *buf = NULL;
    long len;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)len + 1)) != NULL && fread(buf, 1, (size_t)len, f) == (size_t)len)
        *n = (size_t)len;
    else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "q8") && strcmp(argv[1], "q4") && strcmp(argv[1], "f16"))) {
        fputs("usage: q8_check q8|q4|f16 IN.f32 OUT\n", stderr);
        return 2;
    }
    int q4 = !strcmp(argv[1], "q4"), q8 = !strcmp(argv[1], "q8") || q4;
    size_t bytes = 0;
    float *x = read_all(argv[2], &bytes);
    if (!x) {
        fprintf(stderr, "q8_check: cannot read %s\n", argv[2]);
        return 1;
    }
    size_t n = bytes / sizeof(float);
    if (bytes % sizeof(float) || (q8 && n % DSI_Q8_BLOCK)) {
        fprintf(stderr, "q8_check: %s: %zu bytes is not a whole number of %s\n", argv[2], bytes,
                q8 ? "32-value blocks" : "floats");
        free(x);
        return 2;
    }
    size_t out_n = q4 ? n / DSI_Q8_BLOCK * DSI_Q4_BLOCK_BYTES : q8 ? n / DSI_Q8_BLOCK * DSI_Q8_BLOCK_BYTES : n * 2;
    uint8_t *out = malloc(out_n + 1);
    if (!out) {
        free(x);
        return 1;
    }
    if (q4)
        dsi_quantize_row_q4_0(x, out, n);
    else if (q8)
        dsi_quantize_row_q8_0(x, out, n);
    else
        dsi_convert_row_f16(x, (uint16_t *)(void *)out, n);
    FILE *f = fopen(argv[3], "wb");
    int rc = !f || fwrite(out, 1, out_n, f) != out_n;
    if (f && fclose(f)) rc = 1;
    if (rc) fprintf(stderr, "q8_check: cannot write %s\n", argv[3]);
    free(out);
    free(x);
    return rc;
}
