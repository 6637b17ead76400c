/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_chat_file.c — libFuzzer target for ds chat's conversation files
 * (tools/chat_file.c: /load, over the strict parser of tools/server/json.c).
 *
 * Parses the input; on success checks what ds chat relies on (every role one
 * of the three static names, every content a NUL-terminated string without
 * an earlier NUL), writes the conversation back with chat_file_write and
 * parses that again: the same messages must come back. On failure the
 * message must be set and nothing returned.
 *
 *   clang -std=c11 -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_chat_file.c tools/chat_file.c tools/server/json.c -lm -o fuzz_chat_file
 */
#define _POSIX_C_SOURCE 200809L
#include "tools/chat_file.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ds_chat_message *msg = NULL;
    size_t n = 99;
    char err[256];
    err[0] = 0;
    int rc = chat_file_parse((const char *)data, size, &msg, &n, err, sizeof err);
    if (rc != 0) {
        F_ASSERT(rc == -1 || rc == -2);
        F_ASSERT(msg == NULL && n == 0);
        F_ASSERT(rc == -2 || (err[0] && memchr(err, 0, sizeof err)));
        return 0;
    }
    F_ASSERT(msg != NULL && n <= CHAT_FILE_MAX_MESSAGES);
    for (size_t i = 0; i < n; i++) {
        F_ASSERT(!strcmp(msg[i].role, "system") || !strcmp(msg[i].role, "user") || !strcmp(msg[i].role, "assistant"));
        F_ASSERT(msg[i].content != NULL);
    }
    /* round trip: what /save writes, /load reads back the same */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f) {
        int w = chat_file_write(f, msg, n);
        fclose(f);
        if (w == 0) {
            ds_chat_message *m2 = NULL;
            size_t n2 = 0;
            int rc2 = chat_file_parse(buf, len, &m2, &n2, err, sizeof err);
            F_ASSERT(rc2 == 0 || rc2 == -2);
            if (rc2 == 0) {
                F_ASSERT(n2 == n);
                for (size_t i = 0; i < n; i++)
                    F_ASSERT(!strcmp(m2[i].role, msg[i].role) && !strcmp(m2[i].content, msg[i].content));
            }
            chat_file_free(m2, n2);
        }
        free(buf);
    }
    chat_file_free(msg, n);
    return 0;
}
