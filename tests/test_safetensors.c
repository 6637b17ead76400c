/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_safetensors.c — safetensors header parsing: valid files, every
 * rejection class (limits, truncation, JSON, keys, shapes, overflow,
 * offsets, overlaps, names), dsi_st_open on real files, and allocation
 * failures.
 */
#include "deepseek_impl/internal.h"
#include "tests/test.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== Helpers =============================================================== */
static dsi_alloc t_default_alloc(void) {
    dsi_alloc al;
    dsi_err e;
    (void)dsi_alloc_init(&al, NULL, &e);
    return al;
}

/* Builds a file image in memory: u64 length of `json`, the json, then
 * data_bytes bytes of data (a recognisable pattern). */
static uint8_t *t_build(const char *json, uint64_t data_bytes, size_t *len) {
    size_t hl = strlen(json);
    *len = 8 + hl + (size_t)data_bytes;
    uint8_t *b = malloc(*len ? *len : 1);
    dsi_wr64(b, hl);
    memcpy(b + 8, json, hl);
    for (uint64_t i = 0; i < data_bytes; i++) b[8 + hl + i] = (uint8_t)(i * 7);
    return b;
}

/* Parses a built image (file size = image size). The image is freed before
 * the header is used, so nothing may point into it. */
static ds_status t_st(const char *json, uint64_t data_bytes, dsi_st_header **h, dsi_err *e) {
    size_t len;
    uint8_t *b = t_build(json, data_bytes, &len);
    dsi_alloc al = t_default_alloc();
    memset(e, 0, sizeof *e);
    ds_status st = dsi_st_parse(b, len, len, &al, h, e);
    free(b);
    return st;
}

/* Expects json (with data_bytes of data) to fail with `want`; when `needle`
 * is set, the message must contain it. */
static void t_reject(const char *id, const char *json, uint64_t data_bytes, ds_status want, const char *needle) {
    dsi_st_header *h = (dsi_st_header *)&h;
    dsi_err e;
    ds_status st = t_st(json, data_bytes, &h, &e);
    T_CHECK(id, st == want && h == NULL, "status %d (%s) want %d (%s): %s | %s", (int)st, ds_status_string(st),
            (int)want, ds_status_string(want), st ? e.msg : "accepted", json);
    if (st != DS_OK && needle) T_CHECK(id, strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    if (st == DS_OK) dsi_st_free(h);
}

/* ==== 1. Valid headers ====================================================== */
static void test_valid(void) {
    /* written out of offset order; data section 24 + 8 + 6 bytes with a gap */
    const char *json = "{\"__metadata__\": {\"format\": \"pt\", \"note\": \"x\"},"
                       " \"b.weight\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [24, 32]},"
                       " \"a.weight\": {\"shape\": [2, 3], \"data_offsets\": [0, 24], \"dtype\": \"F32\"},"
                       " \"c\": {\"dtype\": \"I16\", \"shape\": [1, 1, 3], \"data_offsets\": [40, 46]}}";
    dsi_st_header *h = NULL;
    dsi_err e;
    ds_status st = t_st(json, 50, &h, &e);
    T_STATUS("st-1.1", st, DS_OK, e.msg);
    if (st) return;
    size_t hl = strlen(json);
    T_CHECK("st-1.1", h->n == 3, "n %zu", h->n);
    T_CHECK("st-1.1", h->data_start == 8 + hl && h->data_size == 50, "data_start %llu size %llu",
            (unsigned long long)h->data_start, (unsigned long long)h->data_size);
    T_CHECK("st-1.1", strcmp(h->t[0].name, "a.weight") == 0 && strcmp(h->t[1].name, "b.weight") == 0 &&
                          strcmp(h->t[2].name, "c") == 0, "sorted by begin");
    const dsi_st_tensor *a = dsi_st_find(h, "a.weight"), *b = dsi_st_find(h, "b.weight"), *c = dsi_st_find(h, "c");
    T_CHECK("st-1.1", a && a->dtype == DSI_ST_F32 && strcmp(a->dtype_name, "F32") == 0 && a->ndim == 2 &&
                          a->shape[0] == 2 && a->shape[1] == 3 && a->begin == 0 && a->end == 24, "a.weight");
    T_CHECK("st-1.1", b && b->dtype == DSI_ST_BF16 && b->ndim == 1 && b->shape[0] == 4 && b->begin == 24 && b->end == 32,
            "b.weight");
    T_CHECK("st-1.1", c && c->dtype == DSI_ST_I16 && c->ndim == 3 && c->shape[2] == 3 && c->begin == 40, "c");
    T_CHECK("st-1.1", dsi_st_find(h, "d") == NULL && dsi_st_find(h, "a.weigh") == NULL && dsi_st_find(h, "") == NULL &&
                          dsi_st_find(h, "__metadata__") == NULL && dsi_st_find(h, NULL) == NULL &&
                          dsi_st_find(NULL, "c") == NULL, "missing names");
    dsi_st_free(h);
    dsi_st_free(NULL);
}

static void test_dtypes(void) {
    static const struct { const char *name; dsi_st_dtype t; size_t size; } cases[] = {
        {"F32", DSI_ST_F32, 4}, {"F16", DSI_ST_F16, 2}, {"BF16", DSI_ST_BF16, 2}, {"F8_E4M3", DSI_ST_F8_E4M3, 1},
        {"F64", DSI_ST_F64, 8}, {"I8", DSI_ST_I8, 1},   {"U8", DSI_ST_U8, 1},     {"I16", DSI_ST_I16, 2},
        {"I32", DSI_ST_I32, 4}, {"I64", DSI_ST_I64, 8}, {"BOOL", DSI_ST_BOOL, 1},
    };
    char json[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        T_CHECK("st-1.2", dsi_st_dtype_size(cases[i].t) == cases[i].size, "size of %s", cases[i].name);
        snprintf(json, sizeof json, "{\"t\": {\"dtype\": \"%s\", \"shape\": [3, 5], \"data_offsets\": [0, %zu]}}",
                 cases[i].name, 15 * cases[i].size);
        dsi_st_header *h = NULL;
        dsi_err e;
        ds_status st = t_st(json, 15 * cases[i].size, &h, &e);
        T_STATUS("st-1.2", st, DS_OK, e.msg);
        if (st == DS_OK) {
            T_CHECK("st-1.2", h->t[0].dtype == cases[i].t && strcmp(h->t[0].dtype_name, cases[i].name) == 0, "%s",
                    cases[i].name);
            dsi_st_free(h);
        }
        /* one byte too many or too few is refused */
        snprintf(json, sizeof json, "{\"t\": {\"dtype\": \"%s\", \"shape\": [3, 5], \"data_offsets\": [0, %zu]}}",
                 cases[i].name, 15 * cases[i].size + 1);
        t_reject("st-1.2", json, 200, DS_ERR_SAFETENSORS, "tensor 't'");
    }
    T_CHECK("st-1.2", dsi_st_dtype_size(DSI_ST_OTHER) == 0, "OTHER has size 0");
    /* Dtypes we do not convert: OTHER with the name kept. Those with a known
     * size are still checked exactly; unknown ones only for bounds. */
    dsi_st_header *h = NULL;
    dsi_err e;
    ds_status st = t_st("{\"u\": {\"dtype\": \"U16\", \"shape\": [3], \"data_offsets\": [0, 6]},"
                        " \"f4\": {\"dtype\": \"F4\", \"shape\": [8], \"data_offsets\": [6, 10]},"
                        " \"e5\": {\"dtype\": \"F8_E5M2\", \"shape\": [2], \"data_offsets\": [10, 12]}}",
                        12, &h, &e);
    T_STATUS("st-1.3", st, DS_OK, e.msg);
    if (st == DS_OK) {
        const dsi_st_tensor *u = dsi_st_find(h, "u"), *f4 = dsi_st_find(h, "f4"), *e5 = dsi_st_find(h, "e5");
        T_CHECK("st-1.3", u && u->dtype == DSI_ST_OTHER && strcmp(u->dtype_name, "U16") == 0, "U16");
        T_CHECK("st-1.3", f4 && f4->dtype == DSI_ST_OTHER && strcmp(f4->dtype_name, "F4") == 0, "F4");
        T_CHECK("st-1.3", e5 && e5->dtype == DSI_ST_OTHER && strcmp(e5->dtype_name, "F8_E5M2") == 0, "F8_E5M2");
        dsi_st_free(h);
    }
    t_reject("st-1.3", "{\"u\": {\"dtype\": \"U16\", \"shape\": [3], \"data_offsets\": [0, 5]}}", 6,
             DS_ERR_SAFETENSORS, "tensor 'u'");
    t_reject("st-1.3", "{\"x\": {\"dtype\": \"F4\", \"shape\": [8], \"data_offsets\": [0, 7]}}", 6, DS_ERR_SAFETENSORS,
             "past the data section");
}

static void test_edge_valid(void) {
    static const struct { const char *json; uint64_t data; } cases[] = {
        {"{}", 0},
        {"{}   ", 0},                                     /* padded with spaces, as writers align */
        {"{\"__metadata__\": {}}", 10},
        {"{\"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4},        /* scalar */
        {"{\"z\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [4, 4]}}", 4},    /* empty */
        {"{\"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]},"
         " \"y\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}}", 0},       /* two empty at 0 */
        {"{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]},"
         " \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [2, 4]}}", 4},        /* adjacent */
        {"{\"a\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,2], \"data_offsets\": [0, 2]}}", 2}, /* 8 dims */
        {"{\"\\u00e9t\\u00e9\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1},
        {"{\"m.w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 0], \"data_offsets\": [0, 0]}}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsi_st_header *h = NULL;
        dsi_err e;
        ds_status st = t_st(cases[i].json, cases[i].data, &h, &e);
        T_CHECK("st-1.4", st == DS_OK, "case %zu: %s", i, st ? e.msg : "");
        if (st == DS_OK) {
            for (size_t k = 0; k < h->n; k++)
                T_CHECK("st-1.4", dsi_st_find(h, h->t[k].name) == &h->t[k], "case %zu find %s", i, h->t[k].name);
        }
        dsi_st_free(h);
    }
}

/* Many tensors: sorting and lookup at scale. */
static void test_many(void) {
    dsi_alloc al = t_default_alloc();
    dsi_buf b;
    dsi_buf_init(&b, &al);
    dsi_buf_put(&b, "{", 1);
    char tmp[160];
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        int j = (i * 7919) % n;   /* offsets in a scrambled order */
        int k = snprintf(tmp, sizeof tmp, "%s\"model.layers.%d.weight\": {\"dtype\": \"F16\", \"shape\": [2], "
                         "\"data_offsets\": [%d, %d]}", i ? "," : "", i, j * 4, j * 4 + 4);
        dsi_buf_put(&b, tmp, (size_t)k);
    }
    dsi_buf_put(&b, "}", 1);
    dsi_buf_put(&b, "", 1);
    dsi_st_header *h = NULL;
    dsi_err e;
    ds_status st = t_st((const char *)b.data, (uint64_t)n * 4, &h, &e);
    T_STATUS("st-1.5", st, DS_OK, e.msg);
    if (st == DS_OK) {
        int bad = 0;
        for (size_t i = 1; i < h->n; i++) bad += h->t[i].begin != h->t[i - 1].end;
        for (int i = 0; i < n; i++) {
            snprintf(tmp, sizeof tmp, "model.layers.%d.weight", i);
            const dsi_st_tensor *t = dsi_st_find(h, tmp);
            if (!t || strcmp(t->name, tmp) != 0 || t->begin != (uint64_t)((i * 7919) % n) * 4) bad++;
        }
        T_CHECK("st-1.5", h->n == (size_t)n && bad == 0, "n %zu bad %d", h->n, bad);
        dsi_st_free(h);
    }
    dsi_buf_free(&b);
}

/* ==== 2. Rejections ========================================================= */
static void test_prefix(void) {
    dsi_alloc al = t_default_alloc();
    dsi_st_header *h = NULL;
    dsi_err e;
    uint8_t b[64] = {0};
    /* header length above the limit */
    dsi_wr64(b, DS_MAX_SAFETENSORS_HEADER + 1);
    T_STATUS("st-2.1", dsi_st_parse(b, 64, 1ull << 40, &al, &h, &e), DS_ERR_LIMIT, e.msg);
    dsi_wr64(b, UINT64_MAX);
    T_STATUS("st-2.1", dsi_st_parse(b, 64, 64, &al, &h, &e), DS_ERR_LIMIT, e.msg);
    dsi_wr64(b, 1ull << 63);
    T_STATUS("st-2.1", dsi_st_parse(b, 64, 64, &al, &h, &e), DS_ERR_LIMIT, e.msg);
    T_CHECK("st-2.1", h == NULL, "no header on failure");
    /* header length larger than the file */
    dsi_wr64(b, 57);
    T_STATUS("st-2.2", dsi_st_parse(b, 64, 64, &al, &h, &e), DS_ERR_TRUNCATED, e.msg);
    dsi_wr64(b, 1000);
    T_STATUS("st-2.2", dsi_st_parse(b, 64, 64, &al, &h, &e), DS_ERR_TRUNCATED, e.msg);
    /* shorter than the length prefix */
    T_STATUS("st-2.2", dsi_st_parse(b, 7, 7, &al, &h, &e), DS_ERR_TRUNCATED, e.msg);
    T_STATUS("st-2.2", dsi_st_parse(b, 0, 0, &al, &h, &e), DS_ERR_TRUNCATED, e.msg);
    T_STATUS("st-2.2", dsi_st_parse(NULL, 0, 0, &al, &h, &e), DS_ERR_TRUNCATED, e.msg);
    /* a valid header whose data section is cut short */
    size_t len;
    uint8_t *img = t_build("{\"t\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16, &len);
    T_STATUS("st-2.2", dsi_st_parse(img, len, len, &al, &h, &e), DS_OK, e.msg);
    dsi_st_free(h);
    T_STATUS("st-2.2", dsi_st_parse(img, len - 1, len - 1, &al, &h, &e), DS_ERR_SAFETENSORS, e.msg);
    size_t hl = len - 16 - 8;
    T_STATUS("st-2.2", dsi_st_parse(img, 8 + hl - 1, 8 + hl - 1, &al, &h, &e), DS_ERR_TRUNCATED, e.msg);
    /* caller gave fewer bytes than the header needs: misuse, not a file error */
    T_STATUS("st-2.12", dsi_st_parse(img, 8 + hl - 1, len, &al, &h, &e), DS_ERR_INVALID_ARG, e.msg);
    T_STATUS("st-2.12", dsi_st_parse(img, 4, len, &al, &h, &e), DS_ERR_INVALID_ARG, e.msg);
    T_STATUS("st-2.12", dsi_st_parse(img, len, len - 1, &al, &h, &e), DS_ERR_INVALID_ARG, e.msg);
    T_STATUS("st-2.12", dsi_st_parse(img, len, len, NULL, &h, &e), DS_ERR_INVALID_ARG, e.msg);
    T_STATUS("st-2.12", dsi_st_parse(img, len, len, &al, NULL, &e), DS_ERR_INVALID_ARG, e.msg);
    free(img);
    /* zero-length header: not JSON */
    dsi_wr64(b, 0);
    T_STATUS("st-2.3", dsi_st_parse(b, 8, 8, &al, &h, &e), DS_ERR_JSON, e.msg);
}

static void test_rejections(void) {
    /* JSON syntax: DS_ERR_JSON, prefixed */
    t_reject("st-2.3", "{\"t\": {\"dtype\": \"F32\",}}", 0, DS_ERR_JSON, "safetensors header: JSON line 1 column");
    t_reject("st-2.3", "{\"t\" 1}", 0, DS_ERR_JSON, "safetensors header: JSON");
    t_reject("st-2.3", "{} x", 0, DS_ERR_JSON, "safetensors header: JSON");
    t_reject("st-2.3", "{\"\xff\": 1}", 0, DS_ERR_JSON, "safetensors header: JSON");
    /* root must be an object */
    t_reject("st-2.4", "[]", 0, DS_ERR_SAFETENSORS, "not a JSON object");
    t_reject("st-2.4", "\"x\"", 0, DS_ERR_SAFETENSORS, NULL);
    t_reject("st-2.4", "null", 0, DS_ERR_SAFETENSORS, NULL);
    /* keys of a tensor entry */
    t_reject("st-2.5", "{\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"extra\": 1}}", 4,
             DS_ERR_SAFETENSORS, "tensor 't': unknown key 'extra'");
    t_reject("st-2.5", "{\"t\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, DS_ERR_SAFETENSORS, "missing 'dtype'");
    t_reject("st-2.5", "{\"t\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, DS_ERR_SAFETENSORS, "missing 'shape'");
    t_reject("st-2.5", "{\"t\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, DS_ERR_SAFETENSORS, "missing 'data_offsets'");
    t_reject("st-2.5", "{\"t\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "duplicate key 'dtype'");
    t_reject("st-2.5", "{\"t\": {\"dtype\\u0000x\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "unknown key");
    t_reject("st-2.5", "{\"t\": [1, 2]}", 4, DS_ERR_SAFETENSORS, "tensor 't': entry is not an object");
    t_reject("st-2.5", "{\"t\": 5}", 4, DS_ERR_SAFETENSORS, "tensor 't'");
    /* shapes */
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "tensor 't': shape");
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "shape");
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "shape");
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "shape");
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", 4, DS_ERR_SAFETENSORS,
             "shape");
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": null, \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "shape");
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "9 dimensions");
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": [[1]], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "shape");
    t_reject("st-2.6", "{\"t\": {\"dtype\": \"F32\", \"shape\": [18446744073709551616], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "shape");
    /* size products that overflow, and plain mismatches */
    t_reject("st-2.7", "{\"big\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}", 8,
             DS_ERR_SAFETENSORS, "tensor 'big': shape size overflows");
    t_reject("st-2.7", "{\"big\": {\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}", 8,
             DS_ERR_SAFETENSORS, "overflows");
    t_reject("st-2.7", "{\"big\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], \"data_offsets\": [0, 0]}}", 8,
             DS_ERR_SAFETENSORS, "overflows");
    t_reject("st-2.7", "{\"big\": {\"dtype\": \"F64\", \"shape\": [2305843009213693952, 1], \"data_offsets\": [0, 0]}}", 8,
             DS_ERR_SAFETENSORS, "overflows");
    t_reject("st-2.7",
             "{\"big\": {\"dtype\": \"F32\", \"shape\": [65536, 65536, 65536, 65536, 0], \"data_offsets\": [0, 0]}}", 8,
             DS_ERR_SAFETENSORS, "overflows");
    /* 2^62 elements of 4 bytes wrap to exactly 0 in 64 bits */
    t_reject("st-2.7", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2147483648, 2147483648], \"data_offsets\": [0, 0]}}", 8,
             DS_ERR_SAFETENSORS, "overflows");
    t_reject("st-2.7", "{\"m\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}", 24,
             DS_ERR_SAFETENSORS, "tensor 'm': shape and dtype F32 give 24 bytes, data_offsets 20");
    t_reject("st-2.7", "{\"m\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [0, 4]}}", 24, DS_ERR_SAFETENSORS,
             "give 2 bytes");
    /* offsets */
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [5, 4]}}", 8, DS_ERR_SAFETENSORS,
             "tensor 'o': data_offsets begin 5 > end 4");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [9], \"data_offsets\": [0, 9]}}", 8, DS_ERR_SAFETENSORS,
             "tensor 'o': data_offsets end 9 is past the data section (8 bytes)");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [9223372036854775806, "
             "9223372036854775807]}}", 8, DS_ERR_SAFETENSORS, "past the data section");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1, 2]}}", 8,
             DS_ERR_SAFETENSORS, "data_offsets");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0]}}", 8, DS_ERR_SAFETENSORS,
             "data_offsets");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [-1, 0]}}", 8,
             DS_ERR_SAFETENSORS, "data_offsets");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1.0]}}", 8,
             DS_ERR_SAFETENSORS, "data_offsets");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [18446744073709551615, 0]}}", 8,
             DS_ERR_SAFETENSORS, "data_offsets");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": {\"0\": 1}}}", 8,
             DS_ERR_SAFETENSORS, "data_offsets");
    t_reject("st-2.8", "{\"o\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": \"0-1\"}}", 8,
             DS_ERR_SAFETENSORS, "data_offsets");
    /* overlaps */
    t_reject("st-2.9", "{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
             " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [3, 7]}}", 8, DS_ERR_SAFETENSORS,
             "tensors 'a' [0, 4) and 'b' [3, 7) overlap");
    t_reject("st-2.9", "{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [2, 6]},"
             " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [2, 6]}}", 8, DS_ERR_SAFETENSORS, "overlap");
    t_reject("st-2.9", "{\"a\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
             " \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [3, 5]}}", 8, DS_ERR_SAFETENSORS, "overlap");
    t_reject("st-2.9", "{\"c\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [7, 8]},"
             " \"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
             " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}", 8, DS_ERR_SAFETENSORS, "overlap");
    t_reject("st-2.9", "{\"a\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
             " \"z\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [4, 4]}}", 8, DS_ERR_SAFETENSORS, "overlap");
    /* names */
    t_reject("st-2.10", "{\"\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 8, DS_ERR_SAFETENSORS,
             "empty name");
    t_reject("st-2.10", "{\"a\\u0000b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 8,
             DS_ERR_SAFETENSORS, "NUL");
    t_reject("st-2.10", "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
             " \"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}", 8, DS_ERR_SAFETENSORS,
             "duplicate tensor 'a'");
    t_reject("st-2.10", "{\"__metadata__\": {}, \"__metadata__\": {}}", 8, DS_ERR_SAFETENSORS, "duplicate __metadata__");
    t_reject("st-2.10", "{\"__metadata__\": []}", 8, DS_ERR_SAFETENSORS, "__metadata__ is not an object");
    t_reject("st-2.10", "{\"__metadata__\": {\"format\": 1}}", 8, DS_ERR_SAFETENSORS, "__metadata__ value 'format'");
    t_reject("st-2.10", "{\"__metadata__\": \"pt\"}", 8, DS_ERR_SAFETENSORS, "__metadata__");
    /* dtype */
    t_reject("st-2.11", "{\"t\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, DS_ERR_SAFETENSORS,
             "tensor 't': dtype");
    t_reject("st-2.11", "{\"t\": {\"dtype\": \"\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, DS_ERR_SAFETENSORS,
             "dtype");
    t_reject("st-2.11", "{\"t\": {\"dtype\": \"F32\\u0000\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
             DS_ERR_SAFETENSORS, "dtype");
    t_reject("st-2.11", "{\"t\": {\"dtype\": null, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, DS_ERR_SAFETENSORS,
             "dtype");
    /* nesting limit inside a header is the JSON one */
    char deep[600];
    size_t k = 0;
    deep[k++] = '{';
    memcpy(deep + k, "\"m\":", 4);
    k += 4;
    for (int i = 0; i < 200; i++) deep[k++] = '[';
    for (int i = 0; i < 200; i++) deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = 0;
    t_reject("st-2.13", deep, 0, DS_ERR_LIMIT, "safetensors header: JSON line 1");
}

/* ==== 3. Files ============================================================== */
static char t_dir[256];

static const char *t_write(const char *name, const void *data, size_t len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", t_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return NULL;
    ssize_t w = write(fd, data, len);
    close(fd);
    return w == (ssize_t)len ? path : NULL;
}

static void test_open(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(t_dir, sizeof t_dir, "%s/ds_test_st_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(t_dir)) {
        T_SKIP("st-3", "cannot create a temporary directory");
        return;
    }
    dsi_alloc al = t_default_alloc();
    dsi_st_header *h = NULL;
    dsi_err e;
    size_t len;
    uint8_t *img = t_build("{\"__metadata__\": {\"format\": \"pt\"},"
                           " \"x\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]}}", 8, &len);
    const char *path = t_write("ok.safetensors", img, len);
    ds_status st = dsi_st_open(path, &al, &h, &e);
    T_STATUS("st-3.1", st, DS_OK, e.msg);
    if (st == DS_OK) {
        const dsi_st_tensor *x = dsi_st_find(h, "x");
        T_CHECK("st-3.1", h->n == 1 && x && x->dtype == DSI_ST_F16 && h->data_start + h->data_size == len &&
                              h->data_size == 8, "header from file");
        dsi_st_free(h);
    }
    /* data section cut: header says 8 bytes of data, file has 7 */
    path = t_write("cut.safetensors", img, len - 1);
    st = dsi_st_open(path, &al, &h, &e);
    T_CHECK("st-3.2", st == DS_ERR_SAFETENSORS && strstr(e.msg, "cut.safetensors: safetensors header: tensor 'x'"),
            "status %d: %s", (int)st, e.msg);
    /* header cut */
    path = t_write("hdr.safetensors", img, 20);
    st = dsi_st_open(path, &al, &h, &e);
    T_CHECK("st-3.3", st == DS_ERR_TRUNCATED && strstr(e.msg, "hdr.safetensors: ") == e.msg + strlen(t_dir) + 1,
            "status %d: %s", (int)st, e.msg);
    /* shorter than the prefix, and empty */
    path = t_write("tiny.safetensors", img, 5);
    st = dsi_st_open(path, &al, &h, &e);
    T_CHECK("st-3.4", st == DS_ERR_TRUNCATED && strstr(e.msg, "tiny.safetensors"), "status %d: %s", (int)st, e.msg);
    path = t_write("empty.safetensors", img, 0);
    st = dsi_st_open(path, &al, &h, &e);
    T_CHECK("st-3.4", st == DS_ERR_TRUNCATED && strstr(e.msg, "empty.safetensors"), "status %d: %s", (int)st, e.msg);
    /* huge header length */
    dsi_wr64(img, 1ull << 40);
    path = t_write("huge.safetensors", img, len);
    st = dsi_st_open(path, &al, &h, &e);
    T_CHECK("st-3.5", st == DS_ERR_LIMIT && strstr(e.msg, "huge.safetensors"), "status %d: %s", (int)st, e.msg);
    /* header length within the limit but past the end of the file */
    dsi_wr64(img, 1000);
    path = t_write("long.safetensors", img, len);
    st = dsi_st_open(path, &al, &h, &e);
    T_CHECK("st-3.6", st == DS_ERR_TRUNCATED && strstr(e.msg, "long.safetensors"), "status %d: %s", (int)st, e.msg);
    /* bad JSON names the file and the header */
    memcpy(img + 8, "[", 1);
    dsi_wr64(img, len - 16);
    path = t_write("json.safetensors", img, len);
    st = dsi_st_open(path, &al, &h, &e);
    T_CHECK("st-3.7", st == DS_ERR_JSON && strstr(e.msg, "json.safetensors: safetensors header: JSON line 1"),
            "status %d: %s", (int)st, e.msg);
    free(img);
    /* no such file, a directory */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/missing.safetensors", t_dir);
    st = dsi_st_open(missing, &al, &h, &e);
    T_CHECK("st-3.8", st == DS_ERR_IO && strstr(e.msg, "missing.safetensors") && h == NULL, "status %d: %s", (int)st,
            e.msg);
    st = dsi_st_open(t_dir, &al, &h, &e);
    T_CHECK("st-3.8", st == DS_ERR_IO && strstr(e.msg, t_dir), "status %d: %s", (int)st, e.msg);
    T_CHECK("st-3.8", dsi_st_open(NULL, &al, &h, &e) == DS_ERR_INVALID_ARG, "NULL path");

    static const char *names[] = {"ok", "cut", "hdr", "tiny", "empty", "huge", "long", "json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s.safetensors", t_dir, names[i]);
        unlink(p);
    }
    rmdir(t_dir);
}

/* ==== 4. Allocation failures ================================================ */
typedef struct t_counter {
    long calls, live, fail_at;
} t_counter;

static void *t_malloc(size_t n, void *u) {
    t_counter *c = u;
    if (c->fail_at && ++c->calls >= c->fail_at) return NULL;
    void *p = malloc(n);
    if (p) c->live++;
    return p;
}
static void *t_realloc(void *p, size_t n, void *u) {
    t_counter *c = u;
    if (c->fail_at && ++c->calls >= c->fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) c->live++;
    return q;
}
static void t_free(void *p, void *u) {
    t_counter *c = u;
    if (p) c->live--;
    free(p);
}

static void test_nomem(void) {
    size_t len;
    uint8_t *img = t_build("{\"__metadata__\": {\"format\": \"pt\"},"
                           " \"b\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [8, 16]},"
                           " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 16, &len);
    bool ok = false;
    int bad = 0;
    long n;
    for (n = 1; n < 1000 && !ok; n++) {
        t_counter c = {0, 0, n};
        dsi_alloc al = {t_malloc, t_realloc, t_free, &c};
        dsi_st_header *h = NULL;
        dsi_err e = {0};
        ds_status st = dsi_st_parse(img, len, len, &al, &h, &e);
        if (st == DS_OK) {
            ok = true;
            dsi_st_free(h);
        } else if (st != DS_ERR_NOMEM || h) {
            bad++;
        }
        if (c.live) bad++;
    }
    T_CHECK("st-4.1", ok && bad == 0, "ok %d, %d bad runs over %ld allocations", ok, bad, n - 1);
    free(img);
}

int main(void) {
    test_valid();
    test_dtypes();
    test_edge_valid();
    test_many();
    test_prefix();
    test_rejections();
    test_open();
    test_nomem();
    return t_finish("test_safetensors");
}
