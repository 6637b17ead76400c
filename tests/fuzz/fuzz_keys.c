/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_keys.c — libFuzzer target for ds-server's --keys-file parser
 * (tools/server/keys.c).
 *
 * Parses the input; on failure the message must name the file ("f:") and
 * nothing be returned. On success checks what the server relies on (names
 * well formed and unique, roles known, limits in range), writes the keys
 * back in the file format and parses that again: the same keys must come
 * back. Then checks one matching round: no key matches a token that is its
 * own hash field (the file holds no usable secret).
 *
 *   clang -std=c11 -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_keys.c tools/server/keys.c -lsodium -lm -lpthread -o fuzz_keys
 */
#define _POSIX_C_SOURCE 200809L
#include "tools/server/keys.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static void hex(char *out, const unsigned char *b, size_t n) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    keyset ks = {(key_entry *)1, 99};
    char err[512];
    err[0] = 0;
    int rc = keys_parse((const char *)data, size, "f", &ks, err, sizeof err);
    if (rc != 0) {
        F_ASSERT(rc == -1 || rc == -2);
        F_ASSERT(ks.keys == NULL && ks.n == 0);
        F_ASSERT(memchr(err, 0, sizeof err) && !strncmp(err, "f:", 2));
        return 0;
    }
    F_ASSERT(ks.n >= 1 && ks.n <= KEYS_MAX && ks.keys);
    for (size_t i = 0; i < ks.n; i++) {
        const key_entry *k = &ks.keys[i];
        F_ASSERT(keys_name_ok(k->name, strlen(k->name)));
        F_ASSERT(k->role >= 0 && k->role < N_ROLE && keys_role_perms(k->role) != 0);
        F_ASSERT(k->max_concurrent <= KEYS_MAX_CONCURRENT_MAX && k->tokens_per_minute <= KEYS_TPM_MAX);
        for (size_t j = 0; j < i; j++) F_ASSERT(strcmp(ks.keys[j].name, k->name) != 0);
    }
    /* round trip */
    size_t cap = ks.n * 256 + 1, len = 0;
    char *buf = malloc(cap);
    if (buf) {
        for (size_t i = 0; i < ks.n; i++) {
            const key_entry *k = &ks.keys[i];
            char salt[2 * KEYS_SALT_BYTES + 1], h[2 * KEYS_HASH_BYTES + 1];
            hex(salt, k->salt, KEYS_SALT_BYTES);
            hex(h, k->hash, KEYS_HASH_BYTES);
            len += (size_t)snprintf(buf + len, cap - len, "%s %s $ds1$%s$%s", k->name, keys_role_name(k->role), salt, h);
            if (k->max_concurrent) len += (size_t)snprintf(buf + len, cap - len, " max_concurrent=%u", k->max_concurrent);
            if (k->tokens_per_minute)
                len += (size_t)snprintf(buf + len, cap - len, " tokens_per_minute=%llu",
                                        (unsigned long long)k->tokens_per_minute);
            len += (size_t)snprintf(buf + len, cap - len, "\n");
        }
        keyset k2;
        int rc2 = keys_parse(buf, len, "g", &k2, err, sizeof err);
        F_ASSERT(rc2 == 0 || rc2 == -2);
        if (rc2 == 0) {
            F_ASSERT(k2.n == ks.n);
            for (size_t i = 0; i < ks.n; i++) {
                const key_entry *a = &ks.keys[i], *b = &k2.keys[i];
                F_ASSERT(!strcmp(a->name, b->name) && a->role == b->role && !memcmp(a->salt, b->salt, sizeof a->salt) &&
                         !memcmp(a->hash, b->hash, sizeof a->hash) && a->max_concurrent == b->max_concurrent &&
                         a->tokens_per_minute == b->tokens_per_minute);
            }
            keys_free(&k2);
        }
        /* the hash field of the first key is no token for it */
        const char *field = strchr(strchr(buf, ' ') + 1, ' ') + 1;
        F_ASSERT(keys_match(&ks, field, KEYS_HASH_CHARS) == NULL);
        free(buf);
    }
    keys_free(&ks);
    return 0;
}
