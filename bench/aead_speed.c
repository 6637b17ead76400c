/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * aead_speed.c — one core's AES-256-GCM decryption speed (libsodium), in the
 * container's unit: chunks of 1 MiB of plaintext opened in place with a
 * detached 16-byte tag. The storage bound of a paged run (bench/realsize.sh)
 * adds this time to the read time of every byte that missed the cache.
 *
 *     cc -O2 bench/aead_speed.c -lsodium -o aead_speed && ./aead_speed [MB]
 *
 * Prints "aead_decrypt_gbs=X" (10^9 bytes per second, best of 5 passes over
 * MB MiB, default 256). Exit status 1 when the CPU has no AES-NI/PCLMUL (then
 * libsodium has no AES-256-GCM and neither do sealed containers here).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    size_t mb = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 256;
    if (!mb || mb > 4096) {
        fprintf(stderr, "aead_speed: MB must be 1..4096\n");
        return 2;
    }
    if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available()) {
        fprintf(stderr, "aead_speed: AES-256-GCM is not available on this CPU (libsodium)\n");
        return 1;
    }
    const size_t chunk = 1u << 20, n = mb;
    unsigned char *buf = malloc(chunk * n), *tags = malloc(16 * n);
    if (!buf || !tags) {
        fprintf(stderr, "aead_speed: out of memory\n");
        return 2;
    }
    unsigned char key[32], nonce[12] = {0};
    randombytes_buf(key, sizeof key);
    randombytes_buf(buf, chunk * n);
    for (size_t i = 0; i < n; i++) {
        nonce[0] = (unsigned char)i;
        nonce[1] = (unsigned char)(i >> 8);
        crypto_aead_aes256gcm_encrypt_detached(buf + i * chunk, tags + i * 16, NULL, buf + i * chunk, chunk, NULL, 0,
                                               NULL, nonce, key);
    }
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = now();
        for (size_t i = 0; i < n; i++) {
            nonce[0] = (unsigned char)i;
            nonce[1] = (unsigned char)(i >> 8);
            if (crypto_aead_aes256gcm_decrypt_detached(buf + i * chunk, NULL, buf + i * chunk, chunk, tags + i * 16,
                                                       NULL, 0, nonce, key) != 0) {
                fprintf(stderr, "aead_speed: chunk %zu failed to authenticate\n", i);
                return 2;
            }
        }
        double gbs = (double)(chunk * n) / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
        /* seal again for the next pass (opened in place above) */
        for (size_t i = 0; i < n; i++) {
            nonce[0] = (unsigned char)i;
            nonce[1] = (unsigned char)(i >> 8);
            crypto_aead_aes256gcm_encrypt_detached(buf + i * chunk, tags + i * 16, NULL, buf + i * chunk, chunk, NULL,
                                                   0, NULL, nonce, key);
        }
    }
    printf("aead_decrypt_gbs=%.3f\n", best);
    sodium_memzero(key, sizeof key);
    free(buf);
    free(tags);
    return 0;
}
