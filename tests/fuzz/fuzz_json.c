/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_json.c — libFuzzer target for the JSON parser.
 *
 * Parses the input as it is; on success walks the tree checking the
 * invariants the rest of the library relies on (NUL-terminated strings and
 * keys, contiguous children, bounded depth) and round-trips every string
 * through dsi_json_write_string. Then parses again with an allocator that
 * fails one allocation chosen from the input, so error paths are fuzzed
 * too (LeakSanitizer reports anything they leak).
 *
 *   clang -std=c11 -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_json.c deepseek_impl/util.c deepseek_impl/json.c \
 *       -lsodium -lm -lpthread -o fuzz_json
 */
#include "deepseek_impl/internal.h"

#include <stdlib.h>

typedef struct f_alloc {
    long calls, fail_at;   /* fail_at 0: never */
} f_alloc;

static void *f_malloc(size_t n, void *u) {
    f_alloc *a = u;
    if (++a->calls == a->fail_at) return NULL;
    return malloc(n);
}
static void *f_realloc(void *p, size_t n, void *u) {
    f_alloc *a = u;
    if (++a->calls == a->fail_at) return NULL;
    return realloc(p, n);
}
static void f_free(void *p, void *u) {
    (void)u;
    free(p);
}

#define F_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

/* A string written by dsi_json_write_string parses back to itself. */
static void f_roundtrip(const dsi_alloc *al, const char *s, size_t n) {
    dsi_buf b;
    dsi_buf_init(&b, al);
    dsi_json_write_string(&b, s, n);
    F_ASSERT(!b.failed);
    dsi_json_doc *doc = NULL;
    dsi_err e;
    F_ASSERT(dsi_json_parse((const char *)b.data, b.len, al, &doc, &e) == DS_OK);
    const dsi_json *r = dsi_json_root(doc);
    F_ASSERT(r->type == DSI_JSON_STRING && r->n == n && memcmp(r->str, s, n) == 0);
    dsi_json_free(doc);
    dsi_buf_free(&b);
}

static void f_walk(const dsi_alloc *al, const dsi_json *v, int depth) {
    F_ASSERT(depth <= DS_MAX_JSON_DEPTH);
    switch (v->type) {
    case DSI_JSON_STRING:
        F_ASSERT(v->str && v->str[v->n] == 0);
        f_roundtrip(al, v->str, v->n);
        break;
    case DSI_JSON_NUMBER:
        if (v->is_int) F_ASSERT(v->num == (double)v->i);
        break;
    case DSI_JSON_ARRAY:
    case DSI_JSON_OBJECT:
        F_ASSERT(v->n == 0 || v->kids);
        for (uint32_t i = 0; i < v->n; i++) {
            const dsi_json *k = &v->kids[i];
            if (v->type == DSI_JSON_OBJECT) {
                F_ASSERT(k->key && k->key[k->key_len] == 0);
                /* lookups find the first member with that key (a key with
                 * an embedded NUL cannot be named by a C string) */
                const dsi_json *g = dsi_json_get(v, k->key);
                if (strlen(k->key) == k->key_len) F_ASSERT(g && g <= k);
                int64_t iv;
                double dv;
                bool bv;
                const char *sv;
                size_t sl;
                (void)dsi_json_get_int(v, k->key, &iv);
                (void)dsi_json_get_num(v, k->key, &dv);
                (void)dsi_json_get_bool(v, k->key, &bv);
                (void)dsi_json_get_str(v, k->key, &sv, &sl);
            } else {
                F_ASSERT(k->key == NULL);
            }
            f_walk(al, k, depth + 1);
        }
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    f_alloc count = {0, 0};
    dsi_alloc al = {f_malloc, f_realloc, f_free, &count};
    dsi_json_doc *doc = NULL;
    dsi_err e;
    ds_status st = dsi_json_parse((const char *)data, size, &al, &doc, &e);
    long made = count.calls;
    if (st == DS_OK) {
        F_ASSERT(doc);
        f_alloc other = {0, 0};
        dsi_alloc plain = {f_malloc, f_realloc, f_free, &other};
        f_walk(&plain, dsi_json_root(doc), 0);
        dsi_json_free(doc);
    } else {
        F_ASSERT(!doc && (st == DS_ERR_JSON || st == DS_ERR_LIMIT));
    }

    /* Again, failing one of the allocations the first run made (picked by a
     * hash of the input): the result must be the same error or NOMEM. */
    if (made > 0) {
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 16777619u;
        f_alloc failing = {0, 1 + (long)(h % (uint32_t)made)};
        dsi_alloc fal = {f_malloc, f_realloc, f_free, &failing};
        dsi_json_doc *doc2 = NULL;
        ds_status st2 = dsi_json_parse((const char *)data, size, &fal, &doc2, &e);
        F_ASSERT(st2 == DS_ERR_NOMEM || st2 == st);
        F_ASSERT((st2 == DS_OK) == (doc2 != NULL));
        dsi_json_free(doc2);
    }
    return 0;
}
