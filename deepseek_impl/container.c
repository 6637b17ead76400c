/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * container.c — the .dsm container: public header, and the metadata records
 * (tensor and segment directories). Both readers treat their input as hostile:
 * every size product is overflow-checked and every offset checked against the
 * file. See the layout comment in format.h.
 */
#include "format.h"

#include <stdio.h>
#include <stdlib.h>

#include <sodium.h>

/* ==== Public header ====================================================== */
#define DSI_HDR_CHECKSUM_AT (DSI_HEADER_BYTES - 32)

static void dsi_header_checksum(const uint8_t *p, size_t covered, uint8_t out[32]) {
    crypto_generichash(out, 32, p, covered, NULL, 0);
}

DSI_FUNC bool dsi_stored_bytes(uint64_t plain, uint32_t chunk_bytes, uint64_t *stored, uint32_t *n_chunks) {
    if (chunk_bytes == 0) return false;
    /* an empty segment still has one (empty) chunk, so it carries a tag */
    uint64_t n = plain == 0 ? 1 : (plain - 1) / chunk_bytes + 1;
    if (n > UINT32_MAX) return false;
    uint64_t tags;
    if (!dsi_mul_u64(n, DSI_TAG_BYTES, &tags) || !dsi_add_u64(plain, tags, stored)) return false;
    *n_chunks = (uint32_t)n;
    return true;
}

DSI_FUNC void dsi_model_id_of(const dsi_header *h, uint8_t out[32]) {
    static const char label[] = "deepseek.h model id";
    crypto_generichash(out, 32, h->raw, DSI_HEADER_BYTES, (const unsigned char *)label, sizeof label - 1);
}

DSI_FUNC void dsi_header_mac(const uint8_t *raw, const uint8_t key[32], uint8_t out[32]) {
    crypto_generichash(out, 32, raw, DSI_HDR_MAC_AT, key, 32);
}

DSI_FUNC void dsi_header_write(dsi_header *h, const uint8_t *mac_key, uint8_t *out) {
    uint8_t *p = h->raw;
    memset(p, 0, DSI_HEADER_BYTES);
    memcpy(p, h->adapter ? DSI_ADAPTER_MAGIC : DSI_MAGIC, 8); /* "DSMODEL" / "DSADAPT" plus its NUL */
    dsi_wr32(p + 8, h->version);
    dsi_wr32(p + 12, DSI_HEADER_BYTES);
    dsi_wr32(p + 16, h->cipher);
    dsi_wr32(p + 20, h->kdf);
    dsi_wr32(p + 24, h->chunk_bytes);
    dsi_wr32(p + 28, h->flags);
    dsi_wr64(p + 32, h->file_bytes);
    dsi_wr64(p + 40, h->meta_offset);
    dsi_wr64(p + 48, h->meta_bytes);
    dsi_wr64(p + 56, h->meta_plain_bytes);
    memcpy(p + 64, h->salt, DSI_SALT_BYTES);
    dsi_wr64(p + 96, h->argon_ops);
    dsi_wr64(p + 104, h->argon_mem);
    memcpy(p + 112, h->argon_salt, 16);
    memcpy(p + 128, h->key_check, 32);
    if (mac_key) dsi_header_mac(p, mac_key, h->mac);
    memcpy(p + DSI_HDR_MAC_AT, h->mac, 32);
    dsi_header_checksum(p, DSI_HDR_CHECKSUM_AT, p + DSI_HDR_CHECKSUM_AT);
    if (out) memcpy(out, p, DSI_HEADER_BYTES);
}

DSI_FUNC ds_status dsi_header_parse(const uint8_t *p, size_t len, dsi_header *h, dsi_err *e) {
    memset(h, 0, sizeof *h);
    /* 1. What kind of file is this? */
    bool adapter = len >= 8 && memcmp(p, DSI_ADAPTER_MAGIC, 8) == 0;
    if (!adapter && (len < 8 || memcmp(p, DSI_MAGIC, 8) != 0)) {
        if (len >= 4 && memcmp(p, "GGUF", 4) == 0)
            return dsi_fail(e, DS_ERR_NOT_DSM, "not a .dsm container: this is a GGUF file (llama.cpp format)");
        if (len >= 9 && p[8] == '{' && dsi_rd64(p) < ((uint64_t)1 << 32))
            return dsi_fail(e, DS_ERR_NOT_DSM,
                            "not a .dsm container: this looks like a safetensors file; convert it with `ds convert`");
        return dsi_fail(e, DS_ERR_NOT_DSM, "not a .dsm container (bad magic)");
    }
    if (len < 16) return dsi_fail(e, DS_ERR_TRUNCATED, "file ends inside the header (%zu bytes)", len);
    /* 2. The checksum covers header_bytes bytes in every version. */
    uint32_t version = dsi_rd32(p + 8);
    uint32_t hb = dsi_rd32(p + 12);
    if (hb < 64 || hb > DSI_HEADER_AREA || hb % 8)
        return dsi_fail(e, DS_ERR_CORRUPT, "damaged header: header size %u is invalid", hb);
    if (len < hb) return dsi_fail(e, DS_ERR_TRUNCATED, "file ends inside the header (%zu of %u bytes)", len, hb);
    uint8_t sum[32];
    dsi_header_checksum(p, hb - 32, sum);
    if (sodium_memcmp(sum, p + hb - 32, 32) != 0)
        return dsi_fail(e, DS_ERR_CORRUPT, "damaged header: checksum mismatch");
    if (version > DS_FORMAT_VERSION)
        return dsi_fail(e, DS_ERR_VERSION,
                        "container format version %u is newer than this library supports (%d); upgrade deepseek.h",
                        version, DS_FORMAT_VERSION);
    if (version == 1)
        return dsi_fail(e, DS_ERR_VERSION,
                        "container format version 1 is no longer read: its header is not authenticated (this "
                        "library reads version %d); re-convert the model from its checkpoint with `ds convert`",
                        DS_FORMAT_VERSION);
    if (version != DS_FORMAT_VERSION || hb != DSI_HEADER_BYTES)
        return dsi_fail(e, DS_ERR_CORRUPT, "damaged header: version %u with header size %u", version, hb);
    /* 3. Fields. */
    h->version = version;
    h->cipher = dsi_rd32(p + 16);
    h->kdf = dsi_rd32(p + 20);
    h->chunk_bytes = dsi_rd32(p + 24);
    h->flags = dsi_rd32(p + 28);
    h->file_bytes = dsi_rd64(p + 32);
    h->meta_offset = dsi_rd64(p + 40);
    h->meta_bytes = dsi_rd64(p + 48);
    h->meta_plain_bytes = dsi_rd64(p + 56);
    memcpy(h->salt, p + 64, DSI_SALT_BYTES);
    h->argon_ops = dsi_rd64(p + 96);
    h->argon_mem = dsi_rd64(p + 104);
    memcpy(h->argon_salt, p + 112, 16);
    memcpy(h->key_check, p + 128, 32);
    memcpy(h->mac, p + DSI_HDR_MAC_AT, 32);
    memcpy(h->raw, p, DSI_HEADER_BYTES);
    h->adapter = adapter;

    /* 4. What key derivation needs, checked before it runs. */
    if (h->cipher > DS_CIPHER_AES256GCM) return dsi_fail(e, DS_ERR_UNSUPPORTED, "unknown cipher id %u", h->cipher);
    if (h->cipher == DS_CIPHER_NONE ? h->kdf != DS_KDF_NONE : (h->kdf != DS_KDF_RAW_KEY && h->kdf != DS_KDF_ARGON2ID))
        return dsi_fail(e, DS_ERR_CORRUPT, "header: key derivation %u does not fit cipher %u", h->kdf, h->cipher);
    if (h->kdf == DS_KDF_ARGON2ID) {
        if (h->argon_ops > DS_MAX_ARGON_OPS)
            return dsi_fail(e, DS_ERR_LIMIT, "header: Argon2id opslimit %llu exceeds DS_MAX_ARGON_OPS (%u); refused "
                            "before running the key derivation",
                            (unsigned long long)h->argon_ops, (unsigned)DS_MAX_ARGON_OPS);
        if (h->argon_mem > DS_MAX_ARGON_MEM)
            return dsi_fail(e, DS_ERR_LIMIT, "header: Argon2id memlimit %llu bytes exceeds DS_MAX_ARGON_MEM (%llu "
                            "bytes); refused before running the key derivation",
                            (unsigned long long)h->argon_mem, (unsigned long long)DS_MAX_ARGON_MEM);
        if (h->argon_ops < crypto_pwhash_OPSLIMIT_MIN || h->argon_mem < crypto_pwhash_MEMLIMIT_MIN)
            return dsi_fail(e, DS_ERR_CORRUPT, "header: Argon2id parameters below the minimum (opslimit %llu, "
                            "memlimit %llu bytes)", (unsigned long long)h->argon_ops,
                            (unsigned long long)h->argon_mem);
    }
    return DS_OK;
}

DSI_FUNC ds_status dsi_header_check(const dsi_header *h, dsi_err *e) {
    if (h->flags != 0) return dsi_fail(e, DS_ERR_UNSUPPORTED, "header: unknown flags 0x%x", h->flags);
    for (size_t i = 160; i < DSI_HDR_MAC_AT; i++)
        if (h->raw[i]) return dsi_fail(e, DS_ERR_CORRUPT, "header: reserved byte %zu is not zero", i);
    if (h->kdf != DS_KDF_ARGON2ID && (h->argon_ops || h->argon_mem || !sodium_is_zero(h->argon_salt, 16)))
        return dsi_fail(e, DS_ERR_CORRUPT, "header: Argon2id parameters in a file that has no passphrase");
    if (h->chunk_bytes < DSI_MIN_CHUNK || h->chunk_bytes > DSI_MAX_CHUNK || h->chunk_bytes % 64)
        return dsi_fail(e, DS_ERR_CORRUPT, "header: chunk size %u out of range", h->chunk_bytes);
    if (h->meta_plain_bytes > DS_MAX_META_BYTES)
        return dsi_fail(e, DS_ERR_LIMIT, "header: metadata of %llu bytes exceeds DS_MAX_META_BYTES",
                        (unsigned long long)h->meta_plain_bytes);
    uint64_t stored, end;
    uint32_t nch;
    if (!dsi_stored_bytes(h->meta_plain_bytes, h->chunk_bytes, &stored, &nch) || stored != h->meta_bytes ||
        h->meta_offset < DSI_HEADER_AREA || h->meta_offset % DSI_SEG_ALIGN ||
        !dsi_add_u64(h->meta_offset, h->meta_bytes, &end) || end != h->file_bytes)
        return dsi_fail(e, DS_ERR_CORRUPT, "header: inconsistent metadata location (offset %llu, %llu bytes, file %llu)",
                        (unsigned long long)h->meta_offset, (unsigned long long)h->meta_bytes,
                        (unsigned long long)h->file_bytes);
    return DS_OK;
}

/* ==== Metadata records =================================================== */
#define DSI_SEG_ENTRY 40
#define DSI_TENSOR_ENTRY 72   /* fixed part; the name follows, padded to 8 */

DSI_FUNC void dsi_meta_free(dsi_meta *m) {
    if (!m || !m->al) return;
    if (m->tensors)
        for (size_t i = 0; i < m->n_tensors; i++) dsi_free(m->al, m->tensors[i].name);
    dsi_free(m->al, m->tensors);
    dsi_free(m->al, m->segments);
    if (m->plain) {
        sodium_memzero(m->plain, m->plain_len);
        dsi_free(m->al, m->plain);
    }
    memset(m, 0, sizeof *m);
}

static ds_status dsi_parse_segments(dsi_meta *m, const uint8_t *p, uint64_t len, uint64_t file_bytes,
                                    uint32_t chunk_bytes, uint64_t meta_offset, dsi_err *e) {
    (void)file_bytes;
    if (len < 8) return dsi_fail(e, DS_ERR_CORRUPT, "segment directory is truncated");
    uint32_t n = dsi_rd32(p);
    if (n == 0 || n > DS_MAX_SEGMENTS) return dsi_fail(e, DS_ERR_CORRUPT, "segment directory: bad count %u", n);
    if ((len - 8) / DSI_SEG_ENTRY < n) return dsi_fail(e, DS_ERR_CORRUPT, "segment directory: %u entries do not fit", n);
    m->segments = dsi_calloc(m->al, n, sizeof *m->segments);
    if (!m->segments) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for %u segments", n);
    m->n_segments = n;
    uint64_t prev_end = DSI_HEADER_AREA;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *q = p + 8 + (size_t)i * DSI_SEG_ENTRY;
        dsi_segment *s = &m->segments[i];
        s->kind = dsi_rd32(q);
        s->layer = (int32_t)dsi_rd32(q + 4);
        s->expert = (int32_t)dsi_rd32(q + 8);
        s->n_chunks = dsi_rd32(q + 12);
        s->offset = dsi_rd64(q + 16);
        s->plain_bytes = dsi_rd64(q + 24);
        s->stored_bytes = dsi_rd64(q + 32);
        uint64_t stored, end;
        uint32_t nch;
        if ((s->kind != DS_SEGMENT_DENSE && s->kind != DS_SEGMENT_EXPERT) || s->layer < -1 ||
            s->layer > DS_MAX_LAYERS || (s->kind == DS_SEGMENT_EXPERT ? (s->expert < 0 || s->expert >= DS_MAX_EXPERTS)
                                                                       : s->expert != -1))
            return dsi_fail(e, DS_ERR_CORRUPT, "segment %u: invalid kind/layer/expert (%u/%d/%d)", i, s->kind,
                            s->layer, s->expert);
        if (!dsi_stored_bytes(s->plain_bytes, chunk_bytes, &stored, &nch) || stored != s->stored_bytes ||
            nch != s->n_chunks)
            return dsi_fail(e, DS_ERR_CORRUPT, "segment %u: sizes are inconsistent", i);
        /* segments are written in file order, page-aligned, before the metadata */
        if (s->offset % DSI_SEG_ALIGN || s->offset < prev_end || !dsi_add_u64(s->offset, s->stored_bytes, &end) ||
            end > meta_offset)
            return dsi_fail(e, DS_ERR_CORRUPT, "segment %u: offset %llu out of order or out of bounds", i,
                            (unsigned long long)s->offset);
        prev_end = end;
    }
    return DS_OK;
}

static ds_status dsi_parse_tensors(dsi_meta *m, const uint8_t *p, uint64_t len, dsi_err *e) {
    if (len < 8) return dsi_fail(e, DS_ERR_CORRUPT, "tensor directory is truncated");
    uint32_t n = dsi_rd32(p);
    if (n == 0 || n > DS_MAX_TENSORS) return dsi_fail(e, DS_ERR_CORRUPT, "tensor directory: bad count %u", n);
    if ((len - 8) / DSI_TENSOR_ENTRY < n) return dsi_fail(e, DS_ERR_CORRUPT, "tensor directory: %u entries do not fit", n);
    m->tensors = dsi_calloc(m->al, n, sizeof *m->tensors);
    if (!m->tensors) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for %u tensors", n);
    m->n_tensors = n;
    uint64_t pos = 8;
    for (uint32_t i = 0; i < n; i++) {
        if (len - pos < DSI_TENSOR_ENTRY) return dsi_fail(e, DS_ERR_CORRUPT, "tensor %u: directory truncated", i);
        const uint8_t *q = p + pos;
        dsi_tensor *t = &m->tensors[i];
        uint32_t name_len = dsi_rd32(q);
        t->dtype = dsi_rd32(q + 4);
        t->n_dims = dsi_rd32(q + 8);
        t->segment = dsi_rd32(q + 12);
        for (int d = 0; d < 4; d++) t->dims[d] = dsi_rd64(q + 16 + 8 * d);
        t->offset = dsi_rd64(q + 48);
        t->nbytes = dsi_rd64(q + 56);
        /* q + 64: reserved */
        pos += DSI_TENSOR_ENTRY;
        uint64_t padded = ((uint64_t)name_len + 7) / 8 * 8;
        if (name_len == 0 || name_len > 1024 || len - pos < padded)
            return dsi_fail(e, DS_ERR_CORRUPT, "tensor %u: bad name length %u", i, name_len);
        if (memchr(p + pos, 0, name_len)) return dsi_fail(e, DS_ERR_CORRUPT, "tensor %u: name contains NUL", i);
        t->name = dsi_strndup(m->al, (const char *)p + pos, name_len);
        if (!t->name) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for tensor names");
        pos += padded;

        /* shape, dtype and size must agree; the tensor must lie inside its segment */
        if (t->dtype >= DSI_N_DTYPES || t->n_dims < 1 || t->n_dims > 2 || t->segment >= m->n_segments)
            return dsi_fail(e, DS_ERR_CORRUPT, "tensor %s: bad dtype/rank/segment", t->name);
        for (uint32_t d = 0; d < 4; d++)
            if (d < t->n_dims ? (t->dims[d] == 0 || t->dims[d] > DS_MAX_DIM) : t->dims[d] != 0)
                return dsi_fail(e, DS_ERR_CORRUPT, "tensor %s: dimension %u out of range", t->name, d);
        uint64_t rows = t->n_dims == 2 ? t->dims[0] : 1, cols = t->dims[t->n_dims - 1], rb, end;
        if (!dsi_tensor_row_bytes((ds_dtype)t->dtype, rows, cols, t->nbytes, &rb))
            return dsi_fail(e, DS_ERR_CORRUPT, "tensor %s: byte size does not match dtype and shape", t->name);
        const dsi_segment *s = &m->segments[t->segment];
        if (t->offset % DSI_TENSOR_ALIGN || !dsi_add_u64(t->offset, t->nbytes, &end) || end > s->plain_bytes)
            return dsi_fail(e, DS_ERR_CORRUPT, "tensor %s: lies outside its segment", t->name);
    }
    return DS_OK;
}

DSI_FUNC ds_status dsi_meta_parse(const uint8_t *plain, size_t len, uint64_t file_bytes, uint32_t chunk_bytes,
                                  uint64_t meta_offset, const dsi_alloc *al, dsi_meta *out, dsi_err *e) {
    memset(out, 0, sizeof *out);
    out->al = al;
    const uint8_t *tensors = NULL, *segments = NULL;
    uint64_t tensors_len = 0, segments_len = 0;
    size_t pos = 0;
    /* Records: { u32 tag; u32 reserved; u64 len; bytes; pad to 8 }. Unknown
     * tags are skipped so later versions can add records. */
    while (pos < len) {
        if (len - pos < 16) return dsi_fail(e, DS_ERR_CORRUPT, "metadata: truncated record header at %zu", pos);
        uint32_t tag = dsi_rd32(plain + pos);
        uint64_t rlen = dsi_rd64(plain + pos + 8);
        pos += 16;
        if (rlen > len - pos) return dsi_fail(e, DS_ERR_CORRUPT, "metadata: record %u overruns (%llu bytes)", tag,
                                              (unsigned long long)rlen);
        const uint8_t *body = plain + pos;
        const char **txt = NULL;
        size_t *txt_len = NULL;
        switch (tag) {
        case DSI_REC_CONFIG_JSON: txt = &out->config_json; txt_len = &out->config_len; break;
        case DSI_REC_TOKENIZER_JSON: txt = &out->tokenizer_json; txt_len = &out->tokenizer_len; break;
        case DSI_REC_TOKENIZER_CONFIG: txt = &out->tokcfg_json; txt_len = &out->tokcfg_len; break;
        case DSI_REC_ADAPTER: txt = &out->adapter_json; txt_len = &out->adapter_len; break;
        case DSI_REC_PRUNE: txt = &out->prune_json; txt_len = &out->prune_len; break;
        case DSI_REC_EXPERTS: txt = &out->experts_json; txt_len = &out->experts_len; break;
        case DSI_REC_TENSORS: tensors = body; tensors_len = rlen; break;
        case DSI_REC_SEGMENTS: segments = body; segments_len = rlen; break;
        default: break;
        }
        if (txt) {
            if (*txt) return dsi_fail(e, DS_ERR_CORRUPT, "metadata: record %u appears twice", tag);
            *txt = (const char *)body;
            *txt_len = (size_t)rlen;
        }
        uint64_t adv = (rlen + 7) / 8 * 8;
        if (adv > len - pos) adv = len - pos;
        pos += (size_t)adv;
    }
    if (!out->config_json || (!out->tokenizer_json && !out->adapter_json) || !tensors || !segments)
        return dsi_fail(e, DS_ERR_CORRUPT, "metadata: missing %s record",
                        !out->config_json ? "config" : !out->tokenizer_json ? "tokenizer" : !tensors ? "tensor directory"
                                                                                                       : "segment directory");
    ds_status s = dsi_parse_segments(out, segments, segments_len, file_bytes, chunk_bytes, meta_offset, e);
    if (!s) s = dsi_parse_tensors(out, tensors, tensors_len, e);
    if (s) {
        out->config_json = out->tokenizer_json = out->tokcfg_json = out->adapter_json = out->prune_json =
            out->experts_json = NULL;
        dsi_meta_free(out);
        out->al = al;
    }
    return s;
}

DSI_FUNC void dsi_segment_describe(const dsi_segment *s, int n_layers, char *buf, size_t len) {
    if (s->kind == DS_SEGMENT_EXPERT) snprintf(buf, len, "layer %d expert %d", s->layer, s->expert);
    else if (s->layer < 0) snprintf(buf, len, "embeddings");
    else if (s->layer >= n_layers) snprintf(buf, len, "output");
    else snprintf(buf, len, "layer %d dense", s->layer);
}

/* ==== Tensor lookup ======================================================= */
static int dsi_cmp_name_key(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const dsi_tensor *const *)elem)->name);
}

DSI_FUNC const dsi_tensor *dsi_file_tensor(const dsi_model_file *f, const char *name, size_t *index) {
    if (!f->sorted) return NULL;
    dsi_tensor *const *hit = bsearch(name, f->sorted, f->meta->n_tensors, sizeof *f->sorted, dsi_cmp_name_key);
    if (!hit) return NULL;
    if (index) *index = (size_t)(*hit - f->meta->tensors);
    return *hit;
}
