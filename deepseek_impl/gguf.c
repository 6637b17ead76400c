/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * gguf.c — reading and checking GGUF files (llama.cpp's model format), and
 * turning a deepseek2 (or deepseek) GGUF's metadata into the config.json,
 * tokenizer.json and tokenizer_config.json the rest of the library already
 * reads.
 *
 * A GGUF file is, all little-endian:
 *
 *   u32 magic "GGUF"; u32 version (2 or 3; 1 had 32-bit counts and is refused)
 *   u64 n_tensors; u64 n_kv
 *   n_kv x { string key; u32 value type; value }
 *   n_tensors x { string name; u32 n_dims; u64 ne[n_dims]; u32 ggml type; u64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data: each tensor at data_start + offset (offset a multiple of the alignment)
 *
 * where a string is u64 length + bytes (no NUL), and a value is a scalar
 * (u8 i8 u16 i16 u32 i32 f32 bool u64 i64 f64), a string, or an array
 * (u32 element type, u64 count, elements; arrays of arrays are refused).
 * ne[0] is the fastest-varying dimension: a Hugging Face (rows, cols)
 * matrix is ne = {cols, rows}.
 *
 * The file is untrusted: every count, length and offset is checked against
 * the bytes that are there before it is used, and messages say what was
 * wrong and at which byte offset. Nothing here allocates in proportion to a
 * number read from the file before the file has shown it holds that many
 * bytes.
 */
#include "format.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ==== ggml types =========================================================== */
/* Block size (values) and bytes per block of each ggml type id; types
 * without an entry (removed or future ids) make a file unreadable, since
 * their tensors' sizes cannot be checked. */
static const struct {
    uint32_t id;
    const char *name;
    uint32_t block, bytes;
} dsg_types[] = {
    {DSI_GGML_F32, "F32", 1, 4},       {DSI_GGML_F16, "F16", 1, 2},       {DSI_GGML_Q4_0, "Q4_0", 32, 18},
    {DSI_GGML_Q4_1, "Q4_1", 32, 20},   {DSI_GGML_Q5_0, "Q5_0", 32, 22},   {DSI_GGML_Q5_1, "Q5_1", 32, 24},
    {DSI_GGML_Q8_0, "Q8_0", 32, 34},   {9, "Q8_1", 32, 36},               {DSI_GGML_Q2_K, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},            {12, "Q4_K", 256, 144},            {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},            {15, "Q8_K", 256, 292},            {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},           {18, "IQ3_XXS", 256, 98},          {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},            {21, "IQ3_S", 256, 110},           {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136},          {24, "I8", 1, 1},                  {25, "I16", 1, 2},
    {26, "I32", 1, 4},                 {27, "I64", 1, 8},                 {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},            {DSI_GGML_BF16, "BF16", 1, 2},     {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},            {39, "MXFP4", 32, 17},
};
#define DSG_N_TYPES (sizeof dsg_types / sizeof dsg_types[0])

static int dsg_type_index(uint32_t id) {
    for (size_t i = 0; i < DSG_N_TYPES; i++)
        if (dsg_types[i].id == id) return (int)i;
    return -1;
}

DSI_FUNC const char *dsi_ggml_type_name(uint32_t type) {
    int i = dsg_type_index(type);
    return i < 0 ? "unknown" : dsg_types[i].name;
}

DSI_FUNC bool dsi_ggml_row_bytes(uint32_t type, uint64_t n, uint64_t *out) {
    int i = dsg_type_index(type);
    if (i < 0 || n % dsg_types[i].block) return false;
    return dsi_mul_u64(n / dsg_types[i].block, dsg_types[i].bytes, out);
}

/* ==== Dequantizing rows ==================================================== */
/* The block layouts are ggml's (ggml-common.h): each block starts with its
 * F16 scale(s), and the value order inside a block is ggml's. Checked
 * against the gguf package's numpy dequantizers (tests/test_gguf.sh). */
static float dsg_h(const uint8_t *p) { return dsi_f16_to_f32(dsi_rd16(p)); }

/* 32-value blocks with an offset: Q4_1 {d, m, qs[16]}, Q5_0 {d, qh[4],
 * qs[16]}, Q5_1 {d, m, qh[4], qs[16]}; value j < 16 in the low nibble of
 * qs[j], j + 16 in its high nibble, the fifth bits in qh. */
static void dsg_q4_1(const uint8_t *b, float *y) {
    float d = dsg_h(b), m = dsg_h(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b[4 + j] & 15) * d + m;
        y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
    }
}
static void dsg_q5(const uint8_t *b, float *y, bool has_min) {
    float d = dsg_h(b), m = has_min ? dsg_h(b + 2) : 0.0f;
    const uint8_t *qhp = b + (has_min ? 4 : 2), *qs = qhp + 4;
    uint32_t qh = dsi_rd32(qhp);
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 15) | (int)(((qh >> j) << 4) & 0x10);
        int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        if (has_min) {
            y[j] = (float)x0 * d + m;
            y[j + 16] = (float)x1 * d + m;
        } else {
            y[j] = (float)(x0 - 16) * d;
            y[j + 16] = (float)(x1 - 16) * d;
        }
    }
}

/* 256-value K-quant blocks. Q4_K and Q5_K pack eight 6-bit scales and mins
 * into 12 bytes. */
static void dsg_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}
/* Q2_K {scales[16], qs[64], d, dmin} */
static void dsg_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    float d = dsg_h(b + 80), dmin = dsg_h(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int half = 0; half < 2; half++) {
                uint8_t s = sc[is++];
                float dl = d * (float)(s & 0xF), ml = dmin * (float)(s >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
}
/* Q3_K {hmask[32], qs[64], scales[12], d}: 16 6-bit scales (offset 32), 2
 * low bits in qs, the third (inverted: set means no -4) in hmask. */
static void dsg_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32, *sraw = b + 96;
    float d = dsg_h(b + 108);
    int8_t sc[16];
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? (sraw[i] & 0xF) : (sraw[i - 8] >> 4);
        int hi = (sraw[8 + (i % 4)] >> (2 * (i / 4))) & 3;
        sc[i] = (int8_t)((lo | (hi << 4)) - 32);
    }
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1))
            for (int half = 0; half < 2; half++) {
                float dl = d * (float)sc[is++];
                for (int l = 0; l < 16; l++) {
                    int k = l + 16 * half;
                    *y++ = dl * (float)(((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
                }
            }
}
/* Q4_K {d, dmin, scales[12], qs[128]} */
static void dsg_q4_k(const uint8_t *b, float *y) {
    float d = dsg_h(b), dmin = dsg_h(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
        uint8_t sc, m;
        dsg_scale_min_k4(is, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        dsg_scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
    }
}
/* Q5_K {d, dmin, scales[12], qh[32], qs[128]} */
static void dsg_q5_k(const uint8_t *b, float *y) {
    float d = dsg_h(b), dmin = dsg_h(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *q = b + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32, u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2)) {
        uint8_t sc, m;
        dsg_scale_min_k4(is, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        dsg_scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((q[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((q[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    }
}
/* Q6_K {ql[128], qh[64], scales[16] (int8), d} */
static void dsg_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = dsg_h(b + 208);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
}

DSI_FUNC bool dsi_ggml_dequantize_row(uint32_t type, const uint8_t *p, float *y, size_t n) {
    switch (type) {
    case DSI_GGML_F32:
        for (size_t k = 0; k < n; k++) {
            uint32_t u = dsi_rd32(p + 4 * k);
            memcpy(&y[k], &u, 4);
        }
        return true;
    case DSI_GGML_F16:
        for (size_t k = 0; k < n; k++) y[k] = dsi_f16_to_f32(dsi_rd16(p + 2 * k));
        return true;
    case DSI_GGML_BF16:
        for (size_t k = 0; k < n; k++) y[k] = dsi_bf16_to_f32(dsi_rd16(p + 2 * k));
        return true;
    case DSI_GGML_Q8_0: dsi_dequantize_row_q8_0(p, y, n); return true;
    case DSI_GGML_Q4_0: dsi_dequantize_row_q4_0(p, y, n); return true;
    default: break;
    }
    void (*blk)(const uint8_t *, float *) = NULL;
    size_t bs = 32, bb = 0;
    switch (type) {
    case DSI_GGML_Q4_1: blk = dsg_q4_1; bb = 20; break;
    case DSI_GGML_Q5_0: bb = 22; break;
    case DSI_GGML_Q5_1: bb = 24; break;
    case DSI_GGML_Q2_K: blk = dsg_q2_k; bs = 256; bb = 84; break;
    case DSI_GGML_Q3_K: blk = dsg_q3_k; bs = 256; bb = 110; break;
    case DSI_GGML_Q4_K: blk = dsg_q4_k; bs = 256; bb = 144; break;
    case DSI_GGML_Q5_K: blk = dsg_q5_k; bs = 256; bb = 176; break;
    case DSI_GGML_Q6_K: blk = dsg_q6_k; bs = 256; bb = 210; break;
    default: return false;
    }
    for (size_t i = 0; i < n / bs; i++) {
        if (type == DSI_GGML_Q5_0 || type == DSI_GGML_Q5_1) dsg_q5(p + i * bb, y + i * bs, type == DSI_GGML_Q5_1);
        else blk(p + i * bb, y + i * bs);
    }
    return true;
}

/* ==== Value types ========================================================== */
static const char *const dsg_vt_names[DSI_GGUF_N_VTYPES] = {"u8",  "i8",     "u16",   "i16", "u32",
                                                             "i32", "f32",    "bool",  "string", "array",
                                                             "u64", "i64",    "f64"};
static const uint8_t dsg_vt_size[DSI_GGUF_N_VTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static const char *dsg_vt_name(uint32_t t) { return t < DSI_GGUF_N_VTYPES ? dsg_vt_names[t] : "unknown"; }

/* ==== The reader =========================================================== */
typedef struct dsg_rd {
    const uint8_t *p;
    size_t len;          /* bytes available in p */
    uint64_t file_size;  /* the whole file's size (p may hold only its start) */
    size_t pos;
    dsi_err *e;
} dsg_rd;

/* The bytes are not there: either the file ends (truncated) or only the
 * file's start was given and the metadata runs past it (a limit). */
static ds_status dsg_short(dsg_rd *r, uint64_t need, const char *what) {
    if (need > r->file_size - r->pos || r->len == r->file_size)
        return dsi_fail(r->e, DS_ERR_TRUNCATED, "GGUF: %s at byte %zu needs %llu bytes; the file ends at %llu", what,
                        r->pos, (unsigned long long)need, (unsigned long long)r->file_size);
    return dsi_fail(r->e, DS_ERR_LIMIT, "GGUF: the metadata runs past %zu bytes (%s at byte %zu); larger than "
                    "DS_MAX_GGUF_META", r->len, what, r->pos);
}

static ds_status dsg_need(dsg_rd *r, uint64_t n, const char *what) {
    if (n > r->len - r->pos) return dsg_short(r, n, what);
    return DS_OK;
}

static ds_status dsg_u32(dsg_rd *r, uint32_t *v, const char *what) {
    ds_status s = dsg_need(r, 4, what);
    if (s) return s;
    *v = dsi_rd32(r->p + r->pos);
    r->pos += 4;
    return DS_OK;
}

static ds_status dsg_u64(dsg_rd *r, uint64_t *v, const char *what) {
    ds_status s = dsg_need(r, 8, what);
    if (s) return s;
    *v = dsi_rd64(r->p + r->pos);
    r->pos += 8;
    return DS_OK;
}

/* A string: *s points into the buffer (not NUL-terminated). */
static ds_status dsg_str(dsg_rd *r, const char **s, uint64_t *n, const char *what) {
    size_t at = r->pos;
    ds_status st = dsg_u64(r, n, what);
    if (st) return st;
    if (*n > r->len - r->pos) {
        r->pos = at;
        if (*n > r->file_size)
            return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: %s at byte %zu has length %llu, more than the file's %llu bytes",
                            what, at, (unsigned long long)*n, (unsigned long long)r->file_size);
        r->pos = at + 8;
        return dsg_short(r, *n, what);
    }
    *s = (const char *)r->p + r->pos;
    r->pos += (size_t)*n;
    return DS_OK;
}

/* Skips one value of type t (not an array). */
static ds_status dsg_skip_scalar(dsg_rd *r, uint32_t t, const char *what) {
    if (t == DSI_GGUF_STRING) {
        const char *s;
        uint64_t n;
        return dsg_str(r, &s, &n, what);
    }
    ds_status st = dsg_need(r, dsg_vt_size[t], what);
    if (!st) r->pos += dsg_vt_size[t];
    return st;
}

typedef struct dsg_header {
    dsi_gguf pub;
    dsi_alloc al;
    dsi_gguf_tensor **by_name;   /* sorted by name */
} dsg_header;

DSI_FUNC void dsi_gguf_free(dsi_gguf *g) {
    if (!g) return;
    dsg_header *h = (dsg_header *)g;
    dsi_alloc al = h->al;
    for (uint64_t i = 0; i < g->n_kv; i++) dsi_free(&al, g->kv[i].key);
    for (uint64_t i = 0; i < g->n_tensors; i++) dsi_free(&al, g->tensors[i].name);
    dsi_free(&al, g->kv);
    dsi_free(&al, g->tensors);
    dsi_free(&al, h->by_name);
    if (g->owns_buf) dsi_free(&al, (void *)g->buf);
    dsi_free(&al, h);
}

static int dsg_cmp_tensor(const void *a, const void *b) {
    return strcmp((*(dsi_gguf_tensor *const *)a)->name, (*(dsi_gguf_tensor *const *)b)->name);
}

/* Printable copy of a name for a message: at most 80 bytes, control bytes as '?'. */
static const char *dsg_q(const char *s, size_t n, char buf[96]) {
    size_t k = 0;
    for (size_t i = 0; i < n && k < 80; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (n > 80) { memcpy(buf + k, "...", 3); k += 3; }
    buf[k] = 0;
    return buf;
}

static ds_status dsg_parse_kv(dsg_rd *r, dsi_gguf *g, uint64_t i, const dsi_alloc *al) {
    dsi_gguf_kv *kv = &g->kv[i];
    char what[64], qb[96];
    snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)i);
    const char *k;
    uint64_t kn;
    ds_status s = dsg_str(r, &k, &kn, what);
    if (s) return s;
    if (kn == 0 || kn > 65535 || memchr(k, 0, (size_t)kn))
        return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: %s at byte %zu: a key must be 1..65535 bytes without NUL", what,
                        r->pos - (size_t)kn - 8);
    kv->key = dsi_strndup(al, k, (size_t)kn);
    if (!kv->key) return dsi_fail(r->e, DS_ERR_NOMEM, "GGUF: out of memory");
    dsg_q(k, (size_t)kn, qb);
    size_t at = r->pos;
    if ((s = dsg_u32(r, &kv->type, qb))) return s;
    if (kv->type >= DSI_GGUF_N_VTYPES)
        return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: key '%s': value type %u at byte %zu is not a GGUF type", qb,
                        kv->type, at);
    kv->offset = r->pos;
    if (kv->type == DSI_GGUF_ARRAY) {
        at = r->pos;
        if ((s = dsg_u32(r, &kv->arr_type, qb)) || (s = dsg_u64(r, &kv->n, qb))) return s;
        if (kv->arr_type == DSI_GGUF_ARRAY)
            return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: key '%s' at byte %zu is an array of arrays (not supported)", qb,
                            at);
        if (kv->arr_type >= DSI_GGUF_N_VTYPES)
            return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: key '%s': array element type %u at byte %zu is not a GGUF type",
                            qb, kv->arr_type, at);
        kv->offset = r->pos;
        if (kv->arr_type != DSI_GGUF_STRING) {
            uint64_t bytes;
            if (!dsi_mul_u64(kv->n, dsg_vt_size[kv->arr_type], &bytes) || bytes > r->file_size)
                return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: key '%s': %llu %s elements at byte %zu exceed the file", qb,
                                (unsigned long long)kv->n, dsg_vt_name(kv->arr_type), at);
            if ((s = dsg_need(r, bytes, qb))) return s;
            r->pos += (size_t)bytes;
        } else {
            /* each string costs at least its 8-byte length: the count is bounded by the file */
            if (kv->n > r->file_size / 8)
                return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: key '%s': %llu strings at byte %zu exceed the file", qb,
                                (unsigned long long)kv->n, at);
            for (uint64_t j = 0; j < kv->n; j++)
                if ((s = dsg_skip_scalar(r, DSI_GGUF_STRING, qb))) return s;
        }
        return DS_OK;
    }
    if (kv->type == DSI_GGUF_STRING) {
        const char *sv;
        if ((s = dsg_str(r, &sv, &kv->n, qb))) return s;
        return DS_OK;
    }
    if ((s = dsg_need(r, dsg_vt_size[kv->type], qb))) return s;
    const uint8_t *p = r->p + r->pos;
    r->pos += dsg_vt_size[kv->type];
    switch (kv->type) {
    case DSI_GGUF_U8: kv->u = p[0]; kv->i = p[0]; break;
    case DSI_GGUF_I8: kv->i = (int8_t)p[0]; break;
    case DSI_GGUF_U16: kv->u = dsi_rd16(p); kv->i = (int64_t)kv->u; break;
    case DSI_GGUF_I16: kv->i = (int16_t)dsi_rd16(p); break;
    case DSI_GGUF_U32: kv->u = dsi_rd32(p); kv->i = (int64_t)kv->u; break;
    case DSI_GGUF_I32: kv->i = (int32_t)dsi_rd32(p); break;
    case DSI_GGUF_U64: kv->u = dsi_rd64(p); kv->i = kv->u > INT64_MAX ? -1 : (int64_t)kv->u; break;
    case DSI_GGUF_I64: kv->i = (int64_t)dsi_rd64(p); break;
    case DSI_GGUF_BOOL:
        if (p[0] > 1)
            return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: key '%s': bool at byte %zu is %u, not 0 or 1", qb,
                            r->pos - 1, p[0]);
        kv->i = p[0];
        break;
    case DSI_GGUF_F32: { uint32_t u = dsi_rd32(p); float f; memcpy(&f, &u, 4); kv->f = f; break; }
    case DSI_GGUF_F64: { uint64_t u = dsi_rd64(p); memcpy(&kv->f, &u, 8); break; }
    default: break;
    }
    if (kv->type != DSI_GGUF_F32 && kv->type != DSI_GGUF_F64) kv->f = (double)kv->i;
    if (kv->type != DSI_GGUF_U64 && kv->i >= 0) kv->u = (uint64_t)kv->i;
    return DS_OK;
}

static ds_status dsg_parse_tensor(dsg_rd *r, dsi_gguf *g, uint64_t i, const dsi_alloc *al) {
    dsi_gguf_tensor *t = &g->tensors[i];
    char what[64], qb[96];
    snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
    size_t at = r->pos;
    const char *nm;
    uint64_t nn;
    ds_status s = dsg_str(r, &nm, &nn, what);
    if (s) return s;
    if (nn == 0 || nn > 255 || memchr(nm, 0, (size_t)nn))
        return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: %s at byte %zu: a tensor name must be 1..255 bytes without NUL",
                        what, at);
    t->name = dsi_strndup(al, nm, (size_t)nn);
    if (!t->name) return dsi_fail(r->e, DS_ERR_NOMEM, "GGUF: out of memory");
    dsg_q(nm, (size_t)nn, qb);
    at = r->pos;
    if ((s = dsg_u32(r, &t->n_dims, qb))) return s;
    if (t->n_dims < 1 || t->n_dims > 4)
        return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: tensor '%s': %u dimensions at byte %zu (1..4 allowed)", qb, t->n_dims,
                        at);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = r->pos;
        if ((s = dsg_u64(r, &t->ne[d], qb))) return s;
        if (t->ne[d] == 0 || t->ne[d] > DS_MAX_DIM * 16 || !dsi_mul_u64(nel, t->ne[d], &nel))
            return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: tensor '%s': dimension %u = %llu at byte %zu is out of range", qb,
                            d, (unsigned long long)t->ne[d], at);
    }
    at = r->pos;
    if ((s = dsg_u32(r, &t->type, qb))) return s;
    int ti = dsg_type_index(t->type);
    if (ti < 0)
        return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: tensor '%s': ggml type %u at byte %zu is not a type this reader knows",
                        qb, t->type, at);
    if (t->ne[0] % dsg_types[ti].block)
        return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: tensor '%s': %s rows of %llu values are not whole blocks of %u", qb,
                        dsg_types[ti].name, (unsigned long long)t->ne[0], dsg_types[ti].block);
    if (!dsi_ggml_row_bytes(t->type, t->ne[0], &t->row_bytes) || !dsi_mul_u64(t->row_bytes, nel / t->ne[0], &t->nbytes))
        return dsi_fail(r->e, DS_ERR_GGUF, "GGUF: tensor '%s' is too large", qb);
    at = r->pos;
    if ((s = dsg_u64(r, &t->offset, qb))) return s;
    t->info_at = at;
    return DS_OK;
}

DSI_FUNC ds_status dsi_gguf_parse(const uint8_t *buf, size_t len, uint64_t file_size, const dsi_alloc *al,
                                  dsi_gguf **out, dsi_err *e) {
    *out = NULL;
    if (len > file_size) len = (size_t)file_size;
    dsg_rd r = {buf, len, file_size, 0, e};
    uint32_t magic = 0, version = 0;
    ds_status s;
    if ((s = dsg_u32(&r, &magic, "the magic"))) return s;
    if (memcmp(buf, "GGUF", 4) != 0)
        return dsi_fail(e, DS_ERR_GGUF, "GGUF: bad magic %02x %02x %02x %02x (want \"GGUF\"): not a GGUF file", buf[0],
                        buf[1], buf[2], buf[3]);
    if ((s = dsg_u32(&r, &version, "the version"))) return s;
    if (version == 1)
        return dsi_fail(e, DS_ERR_GGUF, "GGUF: version 1 (32-bit counts, before 2023-08) is not supported; "
                        "re-convert it with a current llama.cpp");
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && ((version >> 24) == 2 || (version >> 24) == 3))
            return dsi_fail(e, DS_ERR_GGUF, "GGUF: a big-endian file (version bytes %08x); only little-endian GGUF is "
                            "supported", version);
        return dsi_fail(e, DS_ERR_GGUF, "GGUF: version %u is not supported (2 and 3 are)", version);
    }
    dsg_header *h = dsi_calloc(al, 1, sizeof *h);
    if (!h) return dsi_fail(e, DS_ERR_NOMEM, "GGUF: out of memory");
    h->al = *al;
    dsi_gguf *g = &h->pub;
    g->buf = buf;
    g->version = version;
    g->file_size = file_size;
    g->alignment = 32;
    uint64_t nt = 0, nkv = 0;
    if ((s = dsg_u64(&r, &nt, "the tensor count")) || (s = dsg_u64(&r, &nkv, "the key count"))) goto fail;
    /* each key takes at least 12 bytes and each tensor info at least 29 */
    if (nkv > file_size / 12 || nkv > DS_MAX_TENSORS) {
        s = dsi_fail(e, DS_ERR_GGUF, "GGUF: %llu metadata keys (byte 16) cannot fit in a %llu-byte file",
                     (unsigned long long)nkv, (unsigned long long)file_size);
        goto fail;
    }
    if (nt > file_size / 29 || nt > DS_MAX_TENSORS) {
        s = dsi_fail(e, DS_ERR_GGUF, "GGUF: %llu tensors (byte 8) cannot fit in a %llu-byte file (at most %u tensors)",
                     (unsigned long long)nt, (unsigned long long)file_size, (unsigned)DS_MAX_TENSORS);
        goto fail;
    }
    g->kv = dsi_calloc(al, nkv ? (size_t)nkv : 1, sizeof *g->kv);
    g->tensors = dsi_calloc(al, nt ? (size_t)nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        s = dsi_fail(e, DS_ERR_NOMEM, "GGUF: out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = i + 1;                          /* so dsi_gguf_free frees this key */
        if ((s = dsg_parse_kv(&r, g, i, al))) goto fail;
    }
    for (uint64_t i = 0; i < nkv; i++)
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kv[i].key, g->kv[j].key) == 0) {
                char qb[96];
                s = dsi_fail(e, DS_ERR_GGUF, "GGUF: metadata key '%s' appears twice",
                             dsg_q(g->kv[i].key, strlen(g->kv[i].key), qb));
                goto fail;
            }
    const dsi_gguf_kv *al_kv = dsi_gguf_find(g, "general.alignment");
    if (al_kv) {
        if (al_kv->type != DSI_GGUF_U32 || al_kv->u == 0 || (al_kv->u & (al_kv->u - 1)) || al_kv->u > 65536) {
            s = dsi_fail(e, DS_ERR_GGUF, "GGUF: general.alignment must be a u32 power of two up to 65536 (byte %llu)",
                         (unsigned long long)al_kv->offset);
            goto fail;
        }
        g->alignment = (uint32_t)al_kv->u;
    }
    for (uint64_t i = 0; i < nt; i++) {
        g->n_tensors = i + 1;
        if ((s = dsg_parse_tensor(&r, g, i, al))) goto fail;
    }
    g->data_start = (r.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->data_start > file_size && nt) {
        s = dsi_fail(e, DS_ERR_TRUNCATED, "GGUF: the tensor data would start at byte %llu, past the end of the "
                     "%llu-byte file", (unsigned long long)g->data_start, (unsigned long long)file_size);
        goto fail;
    }
    for (uint64_t i = 0; i < nt; i++) {
        dsi_gguf_tensor *t = &g->tensors[i];
        char qb[96];
        uint64_t end;
        if (t->offset % g->alignment) {
            s = dsi_fail(e, DS_ERR_GGUF, "GGUF: tensor '%s': offset %llu (byte %llu) is not a multiple of the "
                         "alignment %u", dsg_q(t->name, strlen(t->name), qb), (unsigned long long)t->offset,
                         (unsigned long long)t->info_at, g->alignment);
            goto fail;
        }
        if (!dsi_add_u64(g->data_start, t->offset, &t->file_offset) ||
            !dsi_add_u64(t->file_offset, t->nbytes, &end) || end > file_size) {
            s = dsi_fail(e, DS_ERR_TRUNCATED, "GGUF: tensor '%s': %llu bytes at data offset %llu (byte %llu of the "
                         "tensor infos) run past the end of the %llu-byte file",
                         dsg_q(t->name, strlen(t->name), qb), (unsigned long long)t->nbytes,
                         (unsigned long long)t->offset, (unsigned long long)t->info_at, (unsigned long long)file_size);
            goto fail;
        }
    }
    h->by_name = dsi_calloc(al, nt ? (size_t)nt : 1, sizeof *h->by_name);
    if (!h->by_name) {
        s = dsi_fail(e, DS_ERR_NOMEM, "GGUF: out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < nt; i++) h->by_name[i] = &g->tensors[i];
    qsort(h->by_name, (size_t)nt, sizeof *h->by_name, dsg_cmp_tensor);
    for (uint64_t i = 1; i < nt; i++)
        if (strcmp(h->by_name[i - 1]->name, h->by_name[i]->name) == 0) {
            char qb[96];
            s = dsi_fail(e, DS_ERR_GGUF, "GGUF: tensor '%s' appears twice",
                         dsg_q(h->by_name[i]->name, strlen(h->by_name[i]->name), qb));
            goto fail;
        }
    g->meta_bytes = r.pos;
    *out = g;
    return DS_OK;
fail:
    dsi_gguf_free(g);
    return s;
}

DSI_FUNC const dsi_gguf_kv *dsi_gguf_find(const dsi_gguf *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

DSI_FUNC const dsi_gguf_tensor *dsi_gguf_tensor_find(const dsi_gguf *g, const char *name) {
    const dsg_header *h = (const dsg_header *)g;
    size_t lo = 0, hi = (size_t)g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(h->by_name[mid]->name, name);
        if (c == 0) return h->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

DSI_FUNC void dsi_gguf_string(const dsi_gguf *g, const dsi_gguf_kv *kv, const char **s, size_t *n) {
    /* the parser checked the length and the bytes */
    *n = (size_t)dsi_rd64(g->buf + kv->offset);
    *s = (const char *)g->buf + kv->offset + 8;
}

DSI_FUNC void dsi_gguf_next_str(const uint8_t **p, const char **s, size_t *n) {
    *n = (size_t)dsi_rd64(*p);
    *s = (const char *)*p + 8;
    *p += 8 + *n;
}

DSI_FUNC ds_status dsi_gguf_open(const char *path, int fd, uint64_t file_size, const dsi_alloc *al, dsi_gguf **out,
                                 dsi_err *e) {
    *out = NULL;
    size_t n = file_size < DS_MAX_GGUF_META ? (size_t)file_size : (size_t)DS_MAX_GGUF_META;
    /* real metadata is a few MB (tokens and merges): read a first window, and
     * the whole cap only when the parse says it needs more */
    size_t first = n < ((size_t)16 << 20) ? n : ((size_t)16 << 20);
    uint8_t *buf = NULL;
    ds_status s = DS_OK;
    for (size_t want = first;; want = n) {
        uint8_t *nb = dsi_realloc(al, buf, want ? want : 1);
        if (!nb) {
            dsi_free(al, buf);
            return dsi_fail(e, DS_ERR_NOMEM, "%s: out of memory for %zu bytes of GGUF metadata", path, want);
        }
        buf = nb;
        size_t done = 0;
        while (done < want) {
            ssize_t r = pread(fd, buf + done, want - done, (dsi_off_t)done);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                dsi_free(al, buf);
                return dsi_fail(e, DS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            }
            if (r == 0) {
                dsi_free(al, buf);
                return dsi_fail(e, DS_ERR_TRUNCATED, "%s: the file shrank while reading its GGUF metadata", path);
            }
            done += (size_t)r;
        }
        dsi_gguf *g = NULL;
        s = dsi_gguf_parse(buf, want, file_size, al, &g, e);
        if (s == DS_ERR_LIMIT && want < n) continue;
        if (s) {
            dsi_free(al, buf);
            return dsi_prefix(e, "%s", path);
        }
        g->owns_buf = true;
        *out = g;
        return DS_OK;
    }
}

/* ==== deepseek2 metadata -> config.json ==================================== */
/* Typed lookups of "<arch>.<name>": 1 found, 0 absent, -1 wrong type. */
static int dsg_get_int(const dsi_gguf *g, const char *arch, const char *name, int64_t *v) {
    char key[128];
    snprintf(key, sizeof key, "%s%s%s", arch ? arch : "", arch ? "." : "", name);
    const dsi_gguf_kv *kv = dsi_gguf_find(g, key);
    if (!kv) return 0;
    switch (kv->type) {
    case DSI_GGUF_U8: case DSI_GGUF_I8: case DSI_GGUF_U16: case DSI_GGUF_I16: case DSI_GGUF_U32:
    case DSI_GGUF_I32: case DSI_GGUF_I64: case DSI_GGUF_BOOL:
        *v = kv->i;
        return 1;
    case DSI_GGUF_U64:
        if (kv->u > INT64_MAX) return -1;
        *v = (int64_t)kv->u;
        return 1;
    default: return -1;
    }
}

static int dsg_get_num(const dsi_gguf *g, const char *arch, const char *name, double *v) {
    char key[128];
    snprintf(key, sizeof key, "%s%s%s", arch ? arch : "", arch ? "." : "", name);
    const dsi_gguf_kv *kv = dsi_gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type == DSI_GGUF_ARRAY || kv->type == DSI_GGUF_STRING || kv->type == DSI_GGUF_BOOL) return -1;
    *v = kv->f;
    return 1;
}

/* A string value: 1 found (s not NUL-terminated), 0 absent, -1 wrong type. */
static int dsg_get_str(const dsi_gguf *g, const char *key, const char **s, size_t *n) {
    const dsi_gguf_kv *kv = dsi_gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type != DSI_GGUF_STRING) return -1;
    dsi_gguf_string(g, kv, s, n);
    return 1;
}

typedef struct dsg_cfg {
    const dsi_gguf *g;
    dsi_buf *b;
    dsi_err *e;
    bool first;
} dsg_cfg;

static void dsg_key(dsg_cfg *c, const char *k) {
    dsi_buf_put(c->b, c->first ? "{\n  \"" : ",\n  \"", c->first ? 5 : 5);
    c->first = false;
    dsi_buf_put(c->b, k, strlen(k));
    dsi_buf_put(c->b, "\": ", 3);
}

static void dsg_put_raw(dsg_cfg *c, const char *k, const char *v) {
    dsg_key(c, k);
    dsi_buf_put(c->b, v, strlen(v));
}

static void dsg_put_int(dsg_cfg *c, const char *k, int64_t v) {
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)v);
    dsg_put_raw(c, k, t);
}

/* Numbers as text that reads back as the same double (%.17g), so a float
 * from the file becomes the same float again. */
static void dsg_put_num(dsg_cfg *c, const char *k, double v) {
    char t[48];
    snprintf(t, sizeof t, "%.17g", v);
    dsg_put_raw(c, k, t);
}

/* "<arch>.<name>" as an integer field: required, or def when absent. */
static ds_status dsg_int_field(dsg_cfg *c, const char *arch, const char *name, const char *hf, bool required,
                               int64_t def, int64_t *got) {
    int64_t v = def;
    int r = dsg_get_int(c->g, arch, name, &v);
    if (r < 0) return dsi_fail(c->e, DS_ERR_CONFIG, "GGUF: %s.%s must be an integer", arch, name);
    if (r == 0 && required) return dsi_fail(c->e, DS_ERR_CONFIG, "GGUF: %s.%s is missing", arch, name);
    if (r == 0) v = def;
    if (v < 0 || v > INT32_MAX) return dsi_fail(c->e, DS_ERR_CONFIG, "GGUF: %s.%s = %lld is out of range", arch, name,
                                                 (long long)v);
    if (hf) dsg_put_int(c, hf, v);
    if (got) *got = v;
    return DS_OK;
}

static ds_status dsg_num_field(dsg_cfg *c, const char *arch, const char *name, const char *hf, double def,
                               double *got) {
    double v = def;
    int r = dsg_get_num(c->g, arch, name, &v);
    if (r < 0) return dsi_fail(c->e, DS_ERR_CONFIG, "GGUF: %s.%s must be a number", arch, name);
    if (!isfinite(v)) return dsi_fail(c->e, DS_ERR_CONFIG, "GGUF: %s.%s is not finite", arch, name);
    if (hf) dsg_put_num(c, hf, v);
    if (got) *got = v;
    return DS_OK;
}

/* llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE values. */
#define DSG_GATING_SOFTMAX 1
#define DSG_GATING_SIGMOID 2

/* The fields every family shares: vocabulary size (the key, else the token
 * list's length), tied embeddings, bos/eos. */
static ds_status dsg_common_fields(dsg_cfg *c, const char *A, int64_t *vocab) {
    const dsi_gguf *g = c->g;
    dsi_err *e = c->e;
    int64_t v = 0;
    int rv = dsg_get_int(g, A, "vocab_size", &v);
    if (rv < 0) return dsi_fail(e, DS_ERR_CONFIG, "GGUF: %s.vocab_size must be an integer", A);
    const dsi_gguf_kv *tk = dsi_gguf_find(g, "tokenizer.ggml.tokens");
    if (rv == 0) {
        if (!tk || tk->type != DSI_GGUF_ARRAY)
            return dsi_fail(e, DS_ERR_CONFIG, "GGUF: neither %s.vocab_size nor tokenizer.ggml.tokens is there", A);
        v = (int64_t)tk->n;
    }
    if (v <= 0 || v > INT32_MAX) return dsi_fail(e, DS_ERR_CONFIG, "GGUF: vocabulary size %lld", (long long)v);
    dsg_put_int(c, "vocab_size", v);
    *vocab = v;
    dsg_put_raw(c, "tie_word_embeddings", dsi_gguf_tensor_find(g, "output.weight") ? "false" : "true");
    int64_t id;
    int rb = dsg_get_int(g, "tokenizer.ggml", "bos_token_id", &id);
    if (rb == 1 && id >= 0 && id < v) dsg_put_int(c, "bos_token_id", id);
    else if (rb != 0) return dsi_fail(e, DS_ERR_CONFIG, "GGUF: tokenizer.ggml.bos_token_id is not a token id");
    int re = dsg_get_int(g, "tokenizer.ggml", "eos_token_id", &id);
    if (re == 1 && id >= 0 && id < v) dsg_put_int(c, "eos_token_id", id);
    else if (re != 0) return dsi_fail(e, DS_ERR_CONFIG, "GGUF: tokenizer.ggml.eos_token_id is not a token id");
    return DS_OK;
}

/* llama.cpp's "deepseek": DeepSeek-MoE 16B (multi-head attention, softmax
 * routing, greedy top-k, unscaled weights). */
static ds_status dsg_config_moe(const dsi_gguf *g, dsi_buf *b, dsi_err *e) {
    const char *A = "deepseek";
    dsg_cfg c = {g, b, e, true};
    int64_t vocab = 0, heads = 0, n_exp = 0;
    dsg_put_raw(&c, "architectures", "[\"DeepseekForCausalLM\"]");
    dsg_put_raw(&c, "model_type", "\"deepseek\"");
    dsg_put_raw(&c, "hidden_act", "\"silu\"");
    ds_status s = dsg_common_fields(&c, A, &vocab);
    if (!s) s = dsg_int_field(&c, A, "embedding_length", "hidden_size", true, 0, NULL);
    if (!s) s = dsg_int_field(&c, A, "feed_forward_length", "intermediate_size", true, 0, NULL);
    if (!s) s = dsg_int_field(&c, A, "block_count", "num_hidden_layers", true, 0, NULL);
    if (!s) s = dsg_int_field(&c, A, "attention.head_count", "num_attention_heads", true, 0, &heads);
    if (!s) s = dsg_int_field(&c, A, "attention.head_count_kv", "num_key_value_heads", false, heads, NULL);
    if (!s) s = dsg_int_field(&c, A, "context_length", "max_position_embeddings", true, 0, NULL);
    if (!s) s = dsg_num_field(&c, A, "attention.layer_norm_rms_epsilon", "rms_norm_eps", 1e-6, NULL);
    if (!s) s = dsg_num_field(&c, A, "rope.freq_base", "rope_theta", 10000.0, NULL);
    if (!s) s = dsg_int_field(&c, A, "expert_count", "n_routed_experts", false, 0, &n_exp);
    if (!s && n_exp) {
        s = dsg_int_field(&c, A, "expert_used_count", "num_experts_per_tok", true, 0, NULL);
        if (!s) s = dsg_int_field(&c, A, "expert_shared_count", "n_shared_experts", false, 0, NULL);
        if (!s) s = dsg_int_field(&c, A, "expert_feed_forward_length", "moe_intermediate_size", true, 0, NULL);
        if (!s) s = dsg_int_field(&c, A, "leading_dense_block_count", "first_k_dense_replace", false, 0, NULL);
        if (!s) {
            int64_t v = 0;
            if (dsg_get_int(g, A, "expert_weights_norm", &v) < 0)
                s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek.expert_weights_norm must be a bool");
            else dsg_put_raw(&c, "norm_topk_prob", v ? "true" : "false");
        }
        if (!s) dsg_put_int(&c, "moe_layer_freq", 1);
    }
    if (!s) {
        const char *st;
        size_t sn;
        int rt = dsg_get_str(g, "deepseek.rope.scaling.type", &st, &sn);
        if (rt < 0 || (rt == 1 && !(sn == 4 && memcmp(st, "none", 4) == 0)))
            s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek.rope.scaling.type: only none is supported for DeepSeek-MoE");
        else dsg_put_raw(&c, "rope_scaling", "null");
    }
    return s;
}

/* Closes the config object in b and hands it over (s: how writing it went);
 * frees b on any failure. */
static ds_status dsg_config_done(dsi_buf *b, ds_status s, char **out, size_t *out_len, dsi_err *e) {
    dsi_buf_put(b, "\n}\n", 3);
    if (!s && b->failed) s = dsi_fail(e, DS_ERR_NOMEM, "GGUF: out of memory");
    if (s) {
        dsi_buf_free(b);
        return s;
    }
    *out = (char *)b->data;
    *out_len = b->len;
    return DS_OK;
}

DSI_FUNC ds_status dsi_gguf_config_json(const dsi_gguf *g, const dsi_alloc *al, char **out, size_t *out_len,
                                        dsi_err *e) {
    *out = NULL;
    *out_len = 0;
    const char *a;
    size_t an;
    int r = dsg_get_str(g, "general.architecture", &a, &an);
    if (r <= 0) return dsi_fail(e, DS_ERR_ARCH, "GGUF: general.architecture is %s", r ? "not a string" : "missing");
    if (an == 8 && memcmp(a, "deepseek", 8) == 0) {
        dsi_buf b;
        dsi_buf_init(&b, al);
        return dsg_config_done(&b, dsg_config_moe(g, &b, e), out, out_len, e);
    }
    if (!(an == 9 && memcmp(a, "deepseek2", 9) == 0)) {
        char qb[96];
        return dsi_fail(e, DS_ERR_ARCH, "GGUF: architecture '%s' is not supported (deepseek2: DeepSeek-V2, V2-Lite, "
                        "V2.5, V3, R1; deepseek: DeepSeek-MoE 16B)", dsg_q(a, an, qb));
    }
    const char *A = "deepseek2";
    dsi_buf b;
    dsi_buf_init(&b, al);
    dsg_cfg c = {g, &b, e, true};
    ds_status s = DS_OK;
    int64_t n_layers = 0, n_heads = 0, kv_lora = 0, q_lora = 0, rope_dim = 0, key_len = 0, val_len = 0;
    int64_t n_exp = 0, n_group = 1, topk_group = 1, vocab = 0, gating = DSG_GATING_SOFTMAX;
    double yarn_log_mul = 0;
    /* the gating function decides the family: sigmoid scores with a
     * correction bias are V3's (noaux_tc); softmax is V2's */
    if (dsg_get_int(g, A, "expert_gating_func", &gating) < 0)
        return dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.expert_gating_func must be an integer");
    if (gating != DSG_GATING_SOFTMAX && gating != DSG_GATING_SIGMOID)
        return dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.expert_gating_func = %lld (1 softmax, 2 sigmoid)",
                        (long long)gating);
    bool v3 = gating == DSG_GATING_SIGMOID;
    dsg_put_raw(&c, "architectures", v3 ? "[\"DeepseekV3ForCausalLM\"]" : "[\"DeepseekV2ForCausalLM\"]");
    dsg_put_raw(&c, "model_type", v3 ? "\"deepseek_v3\"" : "\"deepseek_v2\"");
    dsg_put_raw(&c, "hidden_act", "\"silu\"");
    /* vocab: the key when present, else the token list's length */
    {
        int64_t v = 0;
        int rv = dsg_get_int(g, A, "vocab_size", &v);
        if (rv < 0) s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.vocab_size must be an integer");
        const dsi_gguf_kv *tk = dsi_gguf_find(g, "tokenizer.ggml.tokens");
        if (!s && rv == 0) {
            if (!tk || tk->type != DSI_GGUF_ARRAY)
                s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: neither deepseek2.vocab_size nor tokenizer.ggml.tokens is there");
            else v = (int64_t)tk->n;
        }
        if (!s && (v <= 0 || v > INT32_MAX)) s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: vocabulary size %lld", (long long)v);
        if (!s) dsg_put_int(&c, "vocab_size", v);
        vocab = v;
    }
    if (!s) s = dsg_int_field(&c, A, "embedding_length", "hidden_size", true, 0, NULL);
    if (!s) s = dsg_int_field(&c, A, "feed_forward_length", "intermediate_size", true, 0, NULL);
    if (!s) {
        /* block_count counts DeepSeek-V3's multi-token-prediction layers
         * (nextn_predict_layers, at the end) where the file has them; they
         * are not part of the model we run (the converter skips them) */
        int64_t nextn = 0;
        s = dsg_int_field(&c, A, "block_count", NULL, true, 0, &n_layers);
        if (!s) s = dsg_int_field(&c, A, "nextn_predict_layers", NULL, false, 0, &nextn);
        if (!s && nextn >= n_layers)
            s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.nextn_predict_layers = %lld leaves no layers of %lld",
                         (long long)nextn, (long long)n_layers);
        if (!s) dsg_put_int(&c, "num_hidden_layers", n_layers - nextn);
    }
    if (!s) s = dsg_int_field(&c, A, "attention.head_count", "num_attention_heads", true, 0, &n_heads);
    if (!s) s = dsg_int_field(&c, A, "context_length", "max_position_embeddings", true, 0, NULL);
    if (!s) s = dsg_num_field(&c, A, "attention.layer_norm_rms_epsilon", "rms_norm_eps", 1e-6, NULL);
    if (!s) s = dsg_num_field(&c, A, "rope.freq_base", "rope_theta", 10000.0, NULL);
    if (!s) s = dsg_int_field(&c, A, "attention.q_lora_rank", NULL, false, 0, &q_lora);
    if (!s) {
        if (q_lora) dsg_put_int(&c, "q_lora_rank", q_lora);
        else dsg_put_raw(&c, "q_lora_rank", "null");
    }
    if (!s) s = dsg_int_field(&c, A, "attention.kv_lora_rank", "kv_lora_rank", true, 0, &kv_lora);
    if (!s) s = dsg_int_field(&c, A, "rope.dimension_count", "qk_rope_head_dim", true, 0, &rope_dim);
    /* Files written since llama.cpp split kv_b (MLA) keep the per-head sizes
     * in key_length_mla / value_length_mla (key_length is then the latent
     * kv_lora + rope); older files have them in key_length / value_length. */
    if (!s) {
        int64_t k = 0, v = 0;
        int rk = dsg_get_int(g, A, "attention.key_length_mla", &k), rv = dsg_get_int(g, A, "attention.value_length_mla", &v);
        if (rk < 0 || rv < 0) s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.attention.*_length_mla must be integers");
        else if (rk == 1 && rv == 1) { key_len = k; val_len = v; }
        else {
            s = dsg_int_field(&c, A, "attention.key_length", NULL, true, 0, &key_len);
            if (!s) s = dsg_int_field(&c, A, "attention.value_length", NULL, true, 0, &val_len);
        }
    }
    if (!s && key_len <= rope_dim)
        s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: key length %lld is not more than the rope dimension %lld",
                     (long long)key_len, (long long)rope_dim);
    if (!s) {
        dsg_put_int(&c, "qk_nope_head_dim", key_len - rope_dim);
        dsg_put_int(&c, "v_head_dim", val_len);
        dsg_put_int(&c, "num_key_value_heads", n_heads);
    }
    if (!s) s = dsg_int_field(&c, A, "expert_count", "n_routed_experts", false, 0, &n_exp);
    if (!s && n_exp) {
        s = dsg_int_field(&c, A, "expert_used_count", "num_experts_per_tok", true, 0, NULL);
        if (!s) s = dsg_int_field(&c, A, "expert_shared_count", "n_shared_experts", false, 0, NULL);
        if (!s) s = dsg_int_field(&c, A, "expert_feed_forward_length", "moe_intermediate_size", true, 0, NULL);
        if (!s) s = dsg_int_field(&c, A, "leading_dense_block_count", "first_k_dense_replace", false, 0, NULL);
        if (!s) s = dsg_num_field(&c, A, "expert_weights_scale", "routed_scaling_factor", 1.0, NULL);
        if (!s) {
            int64_t v = 0;
            int rv = dsg_get_int(g, A, "expert_weights_norm", &v);
            if (rv < 0) s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.expert_weights_norm must be a bool");
            else dsg_put_raw(&c, "norm_topk_prob", v ? "true" : "false");
        }
        if (!s) s = dsg_int_field(&c, A, "expert_group_count", "n_group", false, 1, &n_group);
        if (!s) s = dsg_int_field(&c, A, "expert_group_used_count", "topk_group", false, 1, &topk_group);
        if (!s) {
            dsg_put_int(&c, "moe_layer_freq", 1);
            dsg_put_raw(&c, "scoring_func", v3 ? "\"sigmoid\"" : "\"softmax\"");
            dsg_put_raw(&c, "topk_method", v3 ? "\"noaux_tc\"" : n_group > 1 ? "\"group_limited_greedy\"" : "\"greedy\"");
        }
    }
    if (!s) {
        const char *st;
        size_t sn;
        int rt = dsg_get_str(g, "deepseek2.rope.scaling.type", &st, &sn);
        if (rt < 0) s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.rope.scaling.type must be a string");
        else if (rt == 0 || (sn == 4 && memcmp(st, "none", 4) == 0)) dsg_put_raw(&c, "rope_scaling", "null");
        else if (sn == 4 && memcmp(st, "yarn", 4) == 0) {
            double factor = 0;
            int64_t orig = 0;
            dsg_key(&c, "rope_scaling");
            if (dsg_get_num(g, A, "rope.scaling.factor", &factor) != 1 || !(factor >= 1))
                s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: yarn scaling needs deepseek2.rope.scaling.factor >= 1");
            else if (dsg_get_int(g, A, "rope.scaling.original_context_length", &orig) != 1 || orig <= 0)
                s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: yarn scaling needs deepseek2.rope.scaling.original_context_length");
            else if (dsg_get_num(g, A, "rope.scaling.yarn_log_multiplier", &yarn_log_mul) < 0)
                s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.rope.scaling.yarn_log_multiplier must be a number");
            if (!s) {
                /* llama.cpp's converter writes yarn_log_multiplier =
                 * 0.1 * mscale_all_dim and drops mscale, assuming the two
                 * are equal (they are in every DeepSeek release), so both
                 * come back as the same value; beta_fast/slow are
                 * DeepSeek's defaults (32, 1), which llama.cpp also uses,
                 * unless the file has yarn_beta_fast / yarn_beta_slow.
                 * The multiplier went through an F32: mscale_all_dim is
                 * read back to 6 significant digits, which gives the short
                 * decimal of the checkpoint's config (0.707, 1.0) again. */
                char t[320];
                double bf = 32, bs = 1;
                char ms[32];
                snprintf(ms, sizeof ms, "%.6g", yarn_log_mul / 0.1);
                if (dsg_get_num(g, A, "rope.scaling.yarn_beta_fast", &bf) < 0 ||
                    dsg_get_num(g, A, "rope.scaling.yarn_beta_slow", &bs) < 0)
                    s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: deepseek2.rope.scaling.yarn_beta_* must be numbers");
                snprintf(t, sizeof t,
                         "{\"type\": \"yarn\", \"factor\": %.17g, \"original_max_position_embeddings\": %lld, "
                         "\"beta_fast\": %.17g, \"beta_slow\": %.17g, \"mscale\": %s, \"mscale_all_dim\": %s}",
                         factor, (long long)orig, bf, bs, ms, ms);
                dsi_buf_put(&b, t, strlen(t));
            }
        } else {
            char qb[96];
            s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: rope scaling '%s' is not supported (none, yarn)", dsg_q(st, sn, qb));
        }
    }
    if (!s) {
        dsg_put_raw(&c, "tie_word_embeddings", dsi_gguf_tensor_find(g, "output.weight") ? "false" : "true");
        dsg_put_raw(&c, "attention_bias", "false");
        int64_t id;
        int rb = dsg_get_int(g, "tokenizer.ggml", "bos_token_id", &id);
        if (rb == 1 && id >= 0 && id < vocab) dsg_put_int(&c, "bos_token_id", id);
        else if (rb != 0) s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: tokenizer.ggml.bos_token_id is not a token id");
        int re = s ? 0 : dsg_get_int(g, "tokenizer.ggml", "eos_token_id", &id);
        if (re == 1 && id >= 0 && id < vocab) dsg_put_int(&c, "eos_token_id", id);
        else if (re != 0) s = dsi_fail(e, DS_ERR_CONFIG, "GGUF: tokenizer.ggml.eos_token_id is not a token id");
    }
    (void)topk_group;
    return dsg_config_done(&b, s, out, out_len, e);
}

/* ==== The tokenizer ======================================================== */
/* llama.cpp's tokenizer.ggml.token_type values. */
enum { DSG_TOK_NORMAL = 1, DSG_TOK_UNKNOWN = 2, DSG_TOK_CONTROL = 3, DSG_TOK_USER_DEFINED = 4, DSG_TOK_UNUSED = 5,
       DSG_TOK_BYTE = 6 };

/* The pre-tokenizer of each tokenizer.ggml.pre value we support: the
 * Split regexes (all "Isolated") of the checkpoint's tokenizer.json, then
 * ByteLevel without its own regex. deepseek-v3 is DeepSeek-V3/R1's (and
 * our generated checkpoints'); deepseek-llm is DeepSeek-LLM's and V2's. */
static const char *const dsg_pre_v3[] = {
    "\\p{N}{1,3}",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+"
    "[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const dsg_pre_llm[] = {
    "[\r\n]",
    "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-\xca\x93"
    "\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xce\x8a\xce\x8c"
    "\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-"
    "\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-"
    "\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a\xe1\xb8\x80-"
    "\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-"
    "\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4"
    "\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-"
    "\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-"
    "\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d"
    "\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9"
    "\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-"
    "\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-"
    "\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-"
    "\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-"
    "\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93"
    "\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2"
    "\xf0\x91\xa2\xa0-\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-"
    "\xe3\x80\x82]+",
    "\\s+$",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
    "\\p{N}+",
    NULL};

static const struct {
    const char *name;
    const char *const *regexes;
} dsg_pres[] = {
    {"deepseek-v3", dsg_pre_v3},
    {"deepseek-llm", dsg_pre_llm},
};

DSI_FUNC ds_status dsi_gguf_tokenizer_json(const dsi_gguf *g, const dsi_alloc *al, char **tok_out, size_t *tok_len,
                                           char **cfg_out, size_t *cfg_len, dsi_err *e) {
    *tok_out = *cfg_out = NULL;
    *tok_len = *cfg_len = 0;
    const char *s;
    size_t n;
    char qb[96];
    int r = dsg_get_str(g, "tokenizer.ggml.model", &s, &n);
    if (r <= 0) return dsi_fail(e, DS_ERR_UNSUPPORTED, "GGUF: tokenizer.ggml.model is %s", r ? "not a string" : "missing");
    if (!(n == 4 && memcmp(s, "gpt2", 4) == 0))
        return dsi_fail(e, DS_ERR_UNSUPPORTED, "GGUF: tokenizer model '%s' is not supported (gpt2: byte-level BPE)",
                        dsg_q(s, n, qb));
    const char *const *pre = NULL;
    r = dsg_get_str(g, "tokenizer.ggml.pre", &s, &n);
    if (r <= 0)
        return dsi_fail(e, DS_ERR_UNSUPPORTED, "GGUF: tokenizer.ggml.pre is %s (deepseek-v3 or deepseek-llm expected)",
                        r ? "not a string" : "missing");
    for (size_t i = 0; i < sizeof dsg_pres / sizeof dsg_pres[0]; i++)
        if (n == strlen(dsg_pres[i].name) && memcmp(s, dsg_pres[i].name, n) == 0) pre = dsg_pres[i].regexes;
    if (!pre)
        return dsi_fail(e, DS_ERR_UNSUPPORTED, "GGUF: pre-tokenizer '%s' is not supported (deepseek-v3, deepseek-llm)",
                        dsg_q(s, n, qb));
    const dsi_gguf_kv *tokens = dsi_gguf_find(g, "tokenizer.ggml.tokens");
    const dsi_gguf_kv *types = dsi_gguf_find(g, "tokenizer.ggml.token_type");
    const dsi_gguf_kv *merges = dsi_gguf_find(g, "tokenizer.ggml.merges");
    if (!tokens || tokens->type != DSI_GGUF_ARRAY || tokens->arr_type != DSI_GGUF_STRING || tokens->n == 0)
        return dsi_fail(e, DS_ERR_JSON, "GGUF: tokenizer.ggml.tokens is missing or not an array of strings");
    if (tokens->n > ((uint64_t)1 << 24))
        return dsi_fail(e, DS_ERR_LIMIT, "GGUF: %llu tokens (at most 2^24)", (unsigned long long)tokens->n);
    if (types && (types->type != DSI_GGUF_ARRAY || (types->arr_type != DSI_GGUF_I32 && types->arr_type != DSI_GGUF_U32) ||
                  types->n != tokens->n))
        return dsi_fail(e, DS_ERR_JSON, "GGUF: tokenizer.ggml.token_type must be %llu 32-bit integers",
                        (unsigned long long)tokens->n);
    if (merges && (merges->type != DSI_GGUF_ARRAY || merges->arr_type != DSI_GGUF_STRING))
        return dsi_fail(e, DS_ERR_JSON, "GGUF: tokenizer.ggml.merges is not an array of strings");
    int64_t bos = -1, eos = -1, add_bos = 1;
    if (dsg_get_int(g, "tokenizer.ggml", "bos_token_id", &bos) < 0 ||
        dsg_get_int(g, "tokenizer.ggml", "eos_token_id", &eos) < 0 ||
        dsg_get_int(g, "tokenizer.ggml", "add_bos_token", &add_bos) < 0)
        return dsi_fail(e, DS_ERR_JSON, "GGUF: tokenizer.ggml.bos_token_id, eos_token_id or add_bos_token has a wrong type");

    dsi_buf b;
    dsi_buf_init(&b, al);
#define DSG_LIT(x) dsi_buf_put(&b, x, sizeof x - 1)
    DSG_LIT("{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n\"added_tokens\": [");
    /* control and user-defined tokens are added tokens (control ones
     * special), matched in the text before BPE */
    const uint8_t *p = g->buf + tokens->offset;
    bool any = false;
    const char *bos_s = NULL, *eos_s = NULL;
    size_t bos_n = 0, eos_n = 0;
    for (uint64_t i = 0; i < tokens->n; i++) {
        dsi_gguf_next_str(&p, &s, &n);
        int32_t ty = types ? (int32_t)dsi_rd32(g->buf + types->offset + 4 * i) : DSG_TOK_NORMAL;
        if ((int64_t)i == bos) { bos_s = s; bos_n = n; }
        if ((int64_t)i == eos) { eos_s = s; eos_n = n; }
        if (ty != DSG_TOK_CONTROL && ty != DSG_TOK_USER_DEFINED) continue;
        char t[64];
        snprintf(t, sizeof t, "%s\n{\"id\": %llu, \"content\": ", any ? "," : "", (unsigned long long)i);
        dsi_buf_put(&b, t, strlen(t));
        dsi_json_write_string(&b, s, n);
        if (ty == DSG_TOK_CONTROL)
            DSG_LIT(", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}");
        else
            DSG_LIT(", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": false}");
        any = true;
    }
    DSG_LIT("],\n\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": []},\n"
            "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [");
    for (size_t i = 0; pre[i]; i++) {
        DSG_LIT("\n{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
        dsi_json_write_string(&b, pre[i], strlen(pre[i]));
        DSG_LIT("}, \"behavior\": \"Isolated\", \"invert\": false},");
    }
    DSG_LIT("\n{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n"
            "\"post_processor\": null,\n"
            "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
            "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, "
            "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false,\n\"vocab\": {");
    /* every token is in the vocabulary, added ones too: an added token
     * takes the id its text has there (a tokenizer.json added token's own
     * "id" is not what decides it) */
    p = g->buf + tokens->offset;
    any = false;
    for (uint64_t i = 0; i < tokens->n; i++) {
        dsi_gguf_next_str(&p, &s, &n);
        if (any) DSG_LIT(",");
        dsi_json_write_string(&b, s, n);
        char t[32];
        snprintf(t, sizeof t, ": %llu", (unsigned long long)i);
        dsi_buf_put(&b, t, strlen(t));
        any = true;
    }
    DSG_LIT("},\n\"merges\": [");
    if (merges) {
        p = g->buf + merges->offset;
        for (uint64_t i = 0; i < merges->n; i++) {
            dsi_gguf_next_str(&p, &s, &n);
            if (i) DSG_LIT(",\n");
            dsi_json_write_string(&b, s, n);
        }
    }
    DSG_LIT("]}}\n");

    /* tokenizer_config.json: the specials' texts, add_bos, the chat template */
    dsi_buf c;
    dsi_buf_init(&c, al);
    dsi_buf_put(&c, "{\"add_bos_token\": ", 18);
    dsi_buf_put(&c, add_bos ? "true" : "false", add_bos ? 4 : 5);
    if (bos_s) {
        dsi_buf_put(&c, ", \"bos_token\": ", 15);
        dsi_json_write_string(&c, bos_s, bos_n);
    }
    if (eos_s) {
        dsi_buf_put(&c, ", \"eos_token\": ", 15);
        dsi_json_write_string(&c, eos_s, eos_n);
    }
    ds_status st = DS_OK;
    r = dsg_get_str(g, "tokenizer.chat_template", &s, &n);
    if (r < 0) st = dsi_fail(e, DS_ERR_JSON, "GGUF: tokenizer.chat_template is not a string");
    if (r == 1) {
        dsi_buf_put(&c, ", \"chat_template\": ", 19);
        dsi_json_write_string(&c, s, n);
    }
    dsi_buf_put(&c, "}\n", 2);
#undef DSG_LIT
    if (!st && (b.failed || c.failed)) st = dsi_fail(e, DS_ERR_NOMEM, "GGUF: out of memory building the tokenizer");
    if (st) {
        dsi_buf_free(&b);
        dsi_buf_free(&c);
        return st;
    }
    *tok_out = (char *)b.data;
    *tok_len = b.len;
    *cfg_out = (char *)c.data;
    *cfg_len = c.len;
    return DS_OK;
}
