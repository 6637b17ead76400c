/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * safetensors.c — reading and checking safetensors headers.
 *
 * A safetensors file is: u64 little-endian header length N; N bytes of JSON
 * (tensor name -> {"dtype", "shape", "data_offsets"}, plus an optional
 * "__metadata__" object of strings); then the data section, which the
 * offsets index. Checkpoints are untrusted input, so every number in the
 * header is checked before anyone uses it to size or address memory: the
 * header length against a limit and the file, each shape product times the
 * dtype size against its byte range (overflow-checked), each range against
 * the data section, and the ranges against each other.
 */
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* The public struct comes first so a dsi_st_header * converts to and from
 * this one; the rest is private to this file. */
typedef struct dss_header {
    dsi_st_header pub;
    dsi_alloc al;                       /* a copy, so the caller's need not outlive us */
    const dsi_st_tensor **by_name;      /* pub.n entries, sorted by name for dsi_st_find */
} dss_header;

/* ==== Dtypes =============================================================== */
/* Names as written by the reference implementation. Dtypes we do not convert
 * map to OTHER but keep a size where one is defined, so their byte ranges are
 * still checked exactly; names not listed at all (sub-byte and future types)
 * are OTHER with only the bounds checked. */
static const struct {
    const char *name;
    dsi_st_dtype dtype;
    uint8_t bytes;
} dss_dtypes[] = {
    {"F32", DSI_ST_F32, 4},     {"F16", DSI_ST_F16, 2},       {"BF16", DSI_ST_BF16, 2},  {"F8_E4M3", DSI_ST_F8_E4M3, 1},
    {"F64", DSI_ST_F64, 8},     {"I8", DSI_ST_I8, 1},         {"U8", DSI_ST_U8, 1},      {"I16", DSI_ST_I16, 2},
    {"I32", DSI_ST_I32, 4},     {"I64", DSI_ST_I64, 8},       {"BOOL", DSI_ST_BOOL, 1},  {"F8_E5M2", DSI_ST_OTHER, 1},
    {"F8_E8M0", DSI_ST_OTHER, 1}, {"U16", DSI_ST_OTHER, 2},   {"U32", DSI_ST_OTHER, 4},  {"U64", DSI_ST_OTHER, 8},
    {"C64", DSI_ST_OTHER, 8},
};

DSI_FUNC size_t dsi_st_dtype_size(dsi_st_dtype t) {
    switch (t) {
    case DSI_ST_F64: case DSI_ST_I64: return 8;
    case DSI_ST_F32: case DSI_ST_I32: return 4;
    case DSI_ST_F16: case DSI_ST_BF16: case DSI_ST_I16: return 2;
    case DSI_ST_F8_E4M3: case DSI_ST_I8: case DSI_ST_U8: case DSI_ST_BOOL: return 1;
    case DSI_ST_OTHER: return 0;
    }
    return 0;
}

/* ==== Parsing one tensor entry ============================================= */
/* Names in messages are cut so the rest of the message survives. */
#define DSS_NAME_FMT "tensor '%.200s'"

/* Reads a JSON array of non-negative integers into out[0..*n). */
static bool dss_uint_array(const dsi_json *v, uint64_t *out, size_t max, size_t *n) {
    if (!v || v->type != DSI_JSON_ARRAY || v->n > max) return false;
    for (uint32_t i = 0; i < v->n; i++) {
        const dsi_json *d = &v->kids[i];
        if (d->type != DSI_JSON_NUMBER || !d->is_int || d->i < 0) return false;
        out[i] = (uint64_t)d->i;
    }
    *n = v->n;
    return true;
}

static ds_status dss_tensor(const dsi_json *m, uint64_t data_size, dsi_st_tensor *t, dsi_err *e) {
    const char *name = m->key;
    if (m->key_len == 0) return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: a tensor has an empty name");
    if (strlen(name) != m->key_len)
        return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: " DSS_NAME_FMT ": name contains a NUL byte", name);
    if (m->type != DSI_JSON_OBJECT)
        return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: " DSS_NAME_FMT ": entry is not an object", name);

    /* Exactly the three known keys, each once. */
    const dsi_json *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (uint32_t i = 0; i < m->n; i++) {
        const dsi_json *k = &m->kids[i];
        const dsi_json **slot = NULL;
        if (strcmp(k->key, "dtype") == 0) slot = &dtype;
        else if (strcmp(k->key, "shape") == 0) slot = &shape;
        else if (strcmp(k->key, "data_offsets") == 0) slot = &offsets;
        if (!slot || strlen(k->key) != k->key_len)
            return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: " DSS_NAME_FMT ": unknown key '%.60s'", name,
                            k->key);
        if (*slot)
            return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: " DSS_NAME_FMT ": duplicate key '%s'", name,
                            k->key);
        *slot = k;
    }
    if (!dtype || !shape || !offsets)
        return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: " DSS_NAME_FMT ": missing '%s'", name,
                        !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    memset(t, 0, sizeof *t);
    t->name = name;

    /* dtype */
    if (dtype->type != DSI_JSON_STRING || dtype->n == 0 || strlen(dtype->str) != dtype->n)
        return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: " DSS_NAME_FMT ": dtype must be a non-empty string",
                        name);
    uint64_t elem_bytes = 0;
    t->dtype = DSI_ST_OTHER;
    t->dtype_name = dtype->str;
    for (size_t i = 0; i < sizeof dss_dtypes / sizeof dss_dtypes[0]; i++) {
        if (strcmp(dtype->str, dss_dtypes[i].name) == 0) {
            t->dtype = dss_dtypes[i].dtype;
            elem_bytes = dss_dtypes[i].bytes;
            break;
        }
    }

    /* shape: up to 8 non-negative integers (a scalar has none) */
    size_t ndim = 0;
    if (shape->type == DSI_JSON_ARRAY && shape->n > 8)
        return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: " DSS_NAME_FMT ": %u dimensions, at most 8 supported",
                        name, shape->n);
    if (!dss_uint_array(shape, t->shape, 8, &ndim))
        return dsi_fail(e, DS_ERR_SAFETENSORS,
                        "safetensors header: " DSS_NAME_FMT ": shape must be an array of non-negative integers", name);
    t->ndim = (int)ndim;

    /* data_offsets: [begin, end] inside the data section */
    uint64_t range[2];
    size_t nr = 0;
    if (!dss_uint_array(offsets, range, 2, &nr) || nr != 2)
        return dsi_fail(e, DS_ERR_SAFETENSORS,
                        "safetensors header: " DSS_NAME_FMT ": data_offsets must be [begin, end] with non-negative integers",
                        name);
    t->begin = range[0];
    t->end = range[1];
    if (t->begin > t->end)
        return dsi_fail(e, DS_ERR_SAFETENSORS,
                        "safetensors header: " DSS_NAME_FMT ": data_offsets begin %llu > end %llu", name,
                        (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > data_size)
        return dsi_fail(e, DS_ERR_SAFETENSORS,
                        "safetensors header: " DSS_NAME_FMT ": data_offsets end %llu is past the data section (%llu bytes)",
                        name, (unsigned long long)t->end, (unsigned long long)data_size);

    /* elements * element size == byte length. The product is checked in
     * order, so a shape whose product overflows is refused even when a
     * later dimension is 0: code downstream multiplies dims too. */
    if (elem_bytes) {
        uint64_t bytes = elem_bytes;
        for (size_t i = 0; i < ndim; i++) {
            if (!dsi_mul_u64(bytes, t->shape[i], &bytes))
                return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: " DSS_NAME_FMT ": shape size overflows",
                                name);
        }
        if (bytes != t->end - t->begin)
            return dsi_fail(e, DS_ERR_SAFETENSORS,
                            "safetensors header: " DSS_NAME_FMT ": shape and dtype %s give %llu bytes, data_offsets %llu",
                            name, t->dtype_name, (unsigned long long)bytes, (unsigned long long)(t->end - t->begin));
    }
    return DS_OK;
}

/* __metadata__ must be an object of strings (as the reference reads it). */
static ds_status dss_metadata(const dsi_json *m, dsi_err *e) {
    if (m->type != DSI_JSON_OBJECT)
        return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: __metadata__ is not an object");
    for (uint32_t i = 0; i < m->n; i++)
        if (m->kids[i].type != DSI_JSON_STRING)
            return dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: __metadata__ value '%.60s' is not a string",
                            m->kids[i].key);
    return DS_OK;
}

/* ==== Ordering ============================================================= */
static int dss_cmp_offset(const void *a, const void *b) {
    const dsi_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);   /* names are unique: a total order, so the result is deterministic */
}

static int dss_cmp_name(const void *a, const void *b) {
    const dsi_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* ==== Public (internal) API ================================================ */
DSI_FUNC void dsi_st_free(dsi_st_header *h) {
    if (!h) return;
    dss_header *w = (dss_header *)h;
    dsi_alloc al = w->al;
    dsi_json_free(h->doc);
    dsi_free(&al, h->t);
    dsi_free(&al, (void *)w->by_name);
    dsi_free(&al, w);
}

DSI_FUNC ds_status dsi_st_parse(const uint8_t *buf, size_t len, uint64_t file_size, const dsi_alloc *al,
                                dsi_st_header **out, dsi_err *e) {
    if (out) *out = NULL;
    if (!al || !out || (!buf && len) || len > file_size)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "safetensors: invalid argument");
    if (file_size < 8)
        return dsi_fail(e, DS_ERR_TRUNCATED, "safetensors: file is %llu bytes, too short for the header length",
                        (unsigned long long)file_size);
    if (len < 8) return dsi_fail(e, DS_ERR_INVALID_ARG, "safetensors: fewer than 8 bytes given");

    /* Header length: bounded, then inside the file. */
    uint64_t hlen = dsi_rd64(buf);
    if (hlen > DS_MAX_SAFETENSORS_HEADER)
        return dsi_fail(e, DS_ERR_LIMIT, "safetensors: header length %llu exceeds the limit of %llu bytes",
                        (unsigned long long)hlen, (unsigned long long)DS_MAX_SAFETENSORS_HEADER);
    if (hlen > file_size - 8)
        return dsi_fail(e, DS_ERR_TRUNCATED, "safetensors: header length %llu exceeds the file (%llu bytes)",
                        (unsigned long long)hlen, (unsigned long long)file_size);
    if (hlen > len - 8)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "safetensors: header of %llu bytes but only %zu bytes given",
                        (unsigned long long)hlen, len);

    dss_header *w = dsi_malloc(al, sizeof *w);
    if (!w) return dsi_fail(e, DS_ERR_NOMEM, "safetensors: out of memory");
    memset(w, 0, sizeof *w);
    w->al = *al;
    dsi_st_header *h = &w->pub;
    h->al = &w->al;
    h->data_start = 8 + hlen;
    h->data_size = file_size - h->data_start;

    ds_status st = dsi_json_parse((const char *)buf + 8, (size_t)hlen, &w->al, &h->doc, e);
    if (st != DS_OK) {
        dsi_prefix(e, "safetensors header");
        goto fail;
    }
    const dsi_json *root = dsi_json_root(h->doc);
    if (root->type != DSI_JSON_OBJECT) {
        st = dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: not a JSON object");
        goto fail;
    }

    /* Count tensors; __metadata__ may appear once. */
    const dsi_json *meta = NULL;
    size_t n = 0;
    for (uint32_t i = 0; i < root->n; i++) {
        if (strcmp(root->kids[i].key, "__metadata__") == 0 && root->kids[i].key_len == 12) {
            if (meta) {
                st = dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: duplicate __metadata__");
                goto fail;
            }
            meta = &root->kids[i];
            if ((st = dss_metadata(meta, e)) != DS_OK) goto fail;
        } else {
            n++;
        }
    }
    if (n > DS_MAX_TENSORS) {
        st = dsi_fail(e, DS_ERR_LIMIT, "safetensors header: %zu tensors, more than the limit of %llu", n,
                      (unsigned long long)DS_MAX_TENSORS);
        goto fail;
    }

    if (n) {
        h->t = dsi_calloc(al, n, sizeof *h->t);
        w->by_name = dsi_calloc(al, n, sizeof *w->by_name);
        if (!h->t || !w->by_name) {
            st = dsi_fail(e, DS_ERR_NOMEM, "safetensors: out of memory for %zu tensors", n);
            goto fail;
        }
    }
    size_t k = 0;
    for (uint32_t i = 0; i < root->n; i++) {
        if (&root->kids[i] == meta) continue;
        if ((st = dss_tensor(&root->kids[i], h->data_size, &h->t[k], e)) != DS_OK) goto fail;
        k++;
    }
    h->n = n;

    /* Names unique (lookups must be unambiguous). */
    for (size_t i = 0; i < n; i++) w->by_name[i] = &h->t[i];
    if (n) qsort((void *)w->by_name, n, sizeof *w->by_name, dss_cmp_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(w->by_name[i - 1]->name, w->by_name[i]->name) == 0) {
            st = dsi_fail(e, DS_ERR_SAFETENSORS, "safetensors header: duplicate " DSS_NAME_FMT, w->by_name[i]->name);
            goto fail;
        }
    }

    /* Ranges disjoint: sorted by begin, each starts at or after the end of
     * the one before. Gaps are tolerated; shared bytes are not. */
    if (n) qsort(h->t, n, sizeof *h->t, dss_cmp_offset);
    for (size_t i = 1; i < n; i++) {
        const dsi_st_tensor *a = &h->t[i - 1], *b = &h->t[i];
        if (b->begin < a->end) {
            st = dsi_fail(e, DS_ERR_SAFETENSORS,
                          "safetensors header: tensors '%.150s' [%llu, %llu) and '%.150s' [%llu, %llu) overlap", a->name,
                          (unsigned long long)a->begin, (unsigned long long)a->end, b->name,
                          (unsigned long long)b->begin, (unsigned long long)b->end);
            goto fail;
        }
    }
    /* Sorting moved the tensors; rebuild the name index over their new places. */
    for (size_t i = 0; i < n; i++) w->by_name[i] = &h->t[i];
    if (n) qsort((void *)w->by_name, n, sizeof *w->by_name, dss_cmp_name);

    *out = h;
    return DS_OK;

fail:
    dsi_st_free(h);
    return st;
}

DSI_FUNC const dsi_st_tensor *dsi_st_find(const dsi_st_header *h, const char *name) {
    if (!h || !name) return NULL;
    const dss_header *w = (const dss_header *)h;
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->by_name[mid]->name, name);
        if (c == 0) return w->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ==== Files ================================================================ */
/* Reads exactly n bytes at off, retrying short reads; 1 on success, 0 at
 * end of file, -1 on error (errno set). */
static int dss_pread_full(int fd, void *buf, size_t n, uint64_t off) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (dsi_off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) return 0;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 1;
}

DSI_FUNC ds_status dsi_st_open(const char *path, const dsi_alloc *al, dsi_st_header **out, dsi_err *e) {
    if (out) *out = NULL;
    if (!path || !al || !out) return dsi_fail(e, DS_ERR_INVALID_ARG, "safetensors: invalid argument");
    /* a FIFO or a device is refused here, without blocking on the open */
    dsi_file_id id;
    int fd = dsi_open_regular(path, &id, e);
    if (fd < 0) return dsi_prefix(e, "%s", path);

    ds_status st = DS_OK;
    uint8_t *buf = NULL;
    uint8_t prefix[8];
    int r;
    uint64_t size = id.size;
    /* Read the length first so the header is bounded before it is allocated. */
    r = size >= 8 ? dss_pread_full(fd, prefix, 8, 0) : 0;
    if (r < 0) {
        st = dsi_fail(e, DS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        goto done;
    }
    if (r == 0) {
        st = dsi_fail(e, DS_ERR_TRUNCATED, "%s: safetensors: file is %llu bytes, too short for the header length",
                      path, (unsigned long long)size);
        goto done;
    }
    uint64_t hlen = dsi_rd64(prefix);
    if (hlen > DS_MAX_SAFETENSORS_HEADER || hlen > size - 8) {
        /* let the parser word the error from the prefix alone */
        st = dsi_st_parse(prefix, 8, size, al, out, e);
        dsi_prefix(e, "%s", path);
        goto done;
    }
    buf = dsi_malloc(al, (size_t)hlen + 8);
    if (!buf) {
        st = dsi_fail(e, DS_ERR_NOMEM, "%s: out of memory for a %llu-byte safetensors header", path,
                      (unsigned long long)hlen);
        goto done;
    }
    r = dss_pread_full(fd, buf, (size_t)hlen + 8, 0);
    if (r <= 0) {
        st = r < 0 ? dsi_fail(e, DS_ERR_IO, "%s: read failed: %s", path, strerror(errno))
                   : dsi_fail(e, DS_ERR_TRUNCATED, "%s: file shrank while reading its safetensors header", path);
        goto done;
    }
    /* The parsed header copies every string it keeps, so buf can go. */
    st = dsi_st_parse(buf, (size_t)hlen + 8, size, al, out, e);
    if (st != DS_OK) dsi_prefix(e, "%s", path);

done:
    dsi_free(al, buf);
    close(fd);
    return st;
}

#undef DSS_NAME_FMT
