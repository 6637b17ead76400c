/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_jsonmask.c — libFuzzer target for ds-server's JSON-object validator
 * (tools/server/jsonmask.c: response_format json_object).
 *
 * Reads the input byte by byte. Where the validator says the whole input is
 * a complete object, the server's strict parser (tools/server/json.c) must
 * read it as one (or refuse only a duplicate key, which JSON allows). From
 * the state after the longest accepted prefix, jm_cost single bytes, each
 * lowering the cost by one, must complete it into text the strict parser
 * reads as an object.
 *
 *   clang -std=c11 -g -O1 -I. -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_jsonmask.c \
 *       tools/server/jsonmask.c tools/server/json.c deepseek_impl/... -lsodium -lm -lpthread -o fuzz_jsonmask
 */
#define _POSIX_C_SOURCE 200809L
#include "tools/server/json.h"
#include "tools/server/jsonmask.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define F_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static int object_or_dup(const char *s, size_t n) {
    char err[128] = "";
    int oom = 0;
    sj_value *root = NULL;
    sj_doc *d = sj_parse(s, n, &root, err, sizeof err, &oom);
    /* (the strict parser also refuses a number beyond a double's range or
     * its length limit, which JSON leaves to implementations and the
     * validator lets through) */
    int ok = d ? root->type == SJ_OBJECT
               : (oom || strstr(err, "duplicate key") != NULL || strstr(err, "number out of range") != NULL ||
                 strstr(err, "number too long") != NULL);
    sj_doc_free(d);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    jm_state st;
    jm_init(&st);
    size_t i = 0;
    while (i < size && jm_byte(&st, data[i])) {
        i++;
        jm_state after = st;   /* nothing follows a complete object */
        F_ASSERT(!jm_done(&st) || i == size || !jm_byte(&after, data[i]));
    }
    if (i == size && jm_done(&st)) F_ASSERT(object_or_dup((const char *)data, size));
    /* complete the accepted prefix */
    char *buf = malloc(i + 8 * JM_MAX_DEPTH + 16);
    if (!buf) return 0;
    memcpy(buf, data, i);
    size_t n = i;
    int cost = jm_cost(&st);
    F_ASSERT(cost >= 0 && cost <= 8 * JM_MAX_DEPTH + 8);
    while (!jm_done(&st)) {
        int c0 = jm_cost(&st), found = 0;
        for (int c = 0; c < 256 && !found; c++) {
            jm_state t = st;
            if (jm_byte(&t, (unsigned char)c) && jm_cost(&t) == c0 - 1) {
                st = t;
                buf[n++] = (char)c;
                found = 1;
            }
        }
        F_ASSERT(found);
    }
    F_ASSERT(n - i == (size_t)cost);
    F_ASSERT(object_or_dup(buf, n));
    free(buf);
    return 0;
}
