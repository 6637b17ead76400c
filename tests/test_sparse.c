/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_sparse.c — whole models whose weights are stored pruned (Q8_0_24,
 * Q8_0_SP) against the same models stored as Q8_0. Until the converter
 * writes these formats, the test makes its own pair from a generated
 * checkpoint converted to Q8_0 (tests/gen, $DS_TESTDATA): in every Q8_0
 * matrix but the embeddings and the head it zeroes quantized values (2:4:
 * the two of least |q| in each group of four; unstructured: about 40% by a
 * hash of the position, and the values with |q| <= 2), then writes
 *   A: the zeroed matrices as Q8_0, the layout unchanged;
 *   B: the same matrices as Q8_0_24 (2:4) or Q8_0_SP (the converter's
 *      layout: rows at a stride shared by all experts of a layer's part,
 *      then the guard of cols zero bytes),
 * sealed with integrity tags only.
 *
 *  sparse-1: B is smaller than A and opens; every pruned tensor reads back
 *            (ds_model_tensor_read_f32) as A's.
 *  sparse-2: logits of a 24-token batch and of token-by-token decode after
 *            a 10-token prompt: B's are A's, bit for bit (the products of
 *            pruned rows are those of their Q8_0 form), with every expert
 *            resident and with an expert cache of two slots (B's slots
 *            are smaller).
 *  sparse-3: a routed expert whose stride differs from expert 0's is
 *            refused at open (DS_ERR_SHAPE, named).
 *  sparse-4: ds_lora_merge refuses a pruned base (DS_ERR_INVALID_ARG, the
 *            message says why and what to do); the PEFT fixture
 *            (peft/good, v2lite) converts against it.
 *  sparse-5: on CUDA (skipped without a device; tools/cuda_emu runs it in
 *            the emulator), where the pruned matrices are expanded to Q8_0
 *            on the host: B's logits are A's on the device, bit for bit,
 *            every expert resident and with a VRAM cache of two slots.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-sparse-XXXXXX";

static char *tmp_path(const char *name) {
    static char buf[4][600];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 600, "%s/%s", tmpdir, name);
    return p;
}

/* ==== Making the pair ===================================================== */
/* Whether tensor t is one the test prunes. */
static bool prunable(const dsi_tensor *t) {
    return t->dtype == DS_DTYPE_Q8_0 && t->n_dims == 2 && strcmp(t->name, "model.embed_tokens.weight") &&
           strcmp(t->name, "lm_head.weight");
}

/* Zeroes a Q8_0 row's values (n) in place: 2:4, or unstructured. */
static void zero_row(uint8_t *row, size_t n, bool structured, uint64_t seed) {
    for (size_t b = 0; b < n / 32; b++) {
        int8_t *q = (int8_t *)(row + b * DSI_Q8_BLOCK_BYTES + 2);
        if (structured) {
            for (int g = 0; g < 8; g++) {
                int8_t *v = q + 4 * g;
                for (int k = 0; k < 2; k++) {   /* the least |q| not yet zeroed, the lower on a tie */
                    int lo = -1;
                    for (int i = 0; i < 4; i++)
                        if (v[i] && (lo < 0 || abs(v[i]) < abs(v[lo]))) lo = i;
                    if (lo >= 0) v[lo] = 0;
                }
            }
        } else {
            for (int i = 0; i < 32; i++) {
                uint64_t h = (seed + b * 32 + (uint64_t)i) * 0x9e3779b97f4a7c15ull;
                if ((h >> 40) % 100 < 40 || abs(q[i]) <= 2) q[i] = 0;
            }
        }
    }
}

/* The group of an expert matrix: its name without the expert's number
 * ("model.layers.1.mlp.experts.*.up_proj.weight"), or the name itself. */
static void group_of(const char *name, char *out, size_t len) {
    const char *e = strstr(name, ".experts.");
    if (!e) {
        snprintf(out, len, "%s", name);
        return;
    }
    const char *d = e + 9;
    while (*d >= '0' && *d <= '9') d++;
    snprintf(out, len, "%.*s.experts.*%s", (int)(e - name), name, d);
}

typedef struct pair_ctx {
    ds_model *m;
    dsi_alloc al;
    dsi_err e;
    uint8_t **plain;          /* each segment's plaintext, zeroed matrices in place */
    size_t *stride;           /* tensor: B's row stride (SP), else 0 */
    uint32_t *dtype;          /* tensor: B's dtype */
    bool structured;
    int bad_stride_tensor;    /* sparse-3: this tensor gets a stride 1 larger (-1: none) */
} pair_ctx;

static size_t row_count(const uint8_t *row, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += row[(i / 32) * DSI_Q8_BLOCK_BYTES + 2 + i % 32] != 0;
    return c;
}

/* A zeroed Q8_0 row (n values) as B stores it. */
static void store_row(const uint8_t *q8, uint32_t dt, size_t n, size_t stride, uint8_t *out) {
    size_t nb = n / 32;
    if (dt == DS_DTYPE_Q8_0) {
        memcpy(out, q8, nb * DSI_Q8_BLOCK_BYTES);
        return;
    }
    if (dt == DS_DTYPE_Q8_0_24) {
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *ib = q8 + b * DSI_Q8_BLOCK_BYTES;
            uint8_t *ob = out + b * DSI_Q24_BLOCK_BYTES;
            memcpy(ob, ib, 2);
            memset(ob + 2, 0, 4);
            for (int g = 0; g < 8; g++) {
                const int8_t *v = (const int8_t *)ib + 2 + 4 * g;
                int p[2], k = 0;
                for (int i = 0; i < 4 && k < 2; i++)
                    if (v[i]) p[k++] = i;
                for (int i = 0; i < 4 && k < 2; i++)
                    if (!v[i] && (k == 0 || p[0] != i)) p[k++] = i;
                if (p[0] > p[1]) {
                    int t = p[0];
                    p[0] = p[1];
                    p[1] = t;
                }
                ob[2 + g / 2] |= (uint8_t)((p[0] | p[1] << 2) << (4 * (g & 1)));
                ob[6 + 2 * g] = (uint8_t)v[p[0]];
                ob[7 + 2 * g] = (uint8_t)v[p[1]];
            }
        }
        return;
    }
    memset(out, 0, stride);
    size_t at = nb * DSI_SP_HEAD_BYTES;
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *ib = q8 + b * DSI_Q8_BLOCK_BYTES;
        uint32_t mask = 0;
        memcpy(out + 2 * b, ib, 2);
        for (int i = 0; i < 32; i++)
            if (ib[2 + i]) {
                mask |= 1u << i;
                out[at++] = ib[2 + i];
            }
        dsi_wr32(out + 2 * nb + 4 * b, mask);
    }
}

static uint64_t tensor_rows(const dsi_tensor *t) { return t->n_dims == 2 ? t->dims[0] : 1; }
static uint64_t tensor_cols(const dsi_tensor *t) { return t->dims[t->n_dims - 1]; }

/* B's bytes of tensor i. */
static uint64_t b_bytes(const pair_ctx *p, size_t i) {
    const dsi_tensor *t = &p->m->meta.tensors[i];
    uint64_t rows = tensor_rows(t), cols = tensor_cols(t);
    if (p->dtype[i] == DS_DTYPE_Q8_0_SP) return rows * p->stride[i] + cols;
    if (p->dtype[i] == DS_DTYPE_Q8_0_24) return rows * (cols / 32) * DSI_Q24_BLOCK_BYTES;
    return t->nbytes;
}

/* Reads every segment, zeroes the prunable matrices, picks B's formats. */
static ds_status pair_prepare(pair_ctx *p) {
    const dsi_meta *mt = &p->m->meta;
    p->plain = calloc(mt->n_segments, sizeof *p->plain);
    p->stride = calloc(mt->n_tensors, sizeof *p->stride);
    p->dtype = calloc(mt->n_tensors, sizeof *p->dtype);
    if (!p->plain || !p->stride || !p->dtype) return DS_ERR_NOMEM;
    for (uint32_t si = 0; si < mt->n_segments; si++) {
        size_t n = (size_t)mt->segments[si].plain_bytes;
        p->plain[si] = malloc(n ? n : 1);
        if (!p->plain[si]) return DS_ERR_NOMEM;
        ds_status s = dsi_segment_read(p->m, si, p->plain[si], n, &p->e);
        if (s) return s;
    }
    for (size_t i = 0; i < mt->n_tensors; i++) {
        const dsi_tensor *t = &mt->tensors[i];
        p->dtype[i] = t->dtype;
        if (!prunable(t)) continue;
        uint64_t rows = tensor_rows(t), cols = tensor_cols(t), rb = (cols / 32) * DSI_Q8_BLOCK_BYTES;
        uint8_t *w = p->plain[t->segment] + t->offset;
        for (uint64_t r = 0; r < rows; r++) zero_row(w + r * rb, (size_t)cols, p->structured, i * 1000003u + r * 7919u);
        p->dtype[i] = p->structured ? DS_DTYPE_Q8_0_24 : DS_DTYPE_Q8_0_SP;
    }
    /* SP strides: the largest row of the group (all experts of a part) */
    for (size_t i = 0; !p->structured && i < mt->n_tensors; i++) {
        if (p->dtype[i] != DS_DTYPE_Q8_0_SP) continue;
        char gi[160], gj[160];
        group_of(mt->tensors[i].name, gi, sizeof gi);
        size_t most = 0;
        for (size_t j = 0; j < mt->n_tensors; j++) {
            if (p->dtype[j] != DS_DTYPE_Q8_0_SP) continue;
            group_of(mt->tensors[j].name, gj, sizeof gj);
            if (strcmp(gi, gj)) continue;
            const dsi_tensor *t = &mt->tensors[j];
            uint64_t rows = tensor_rows(t), cols = tensor_cols(t), rb = (cols / 32) * DSI_Q8_BLOCK_BYTES;
            for (uint64_t r = 0; r < rows; r++) {
                size_t c = row_count(p->plain[t->segment] + t->offset + r * rb, (size_t)cols);
                most = c > most ? c : most;
            }
        }
        p->stride[i] = (tensor_cols(&mt->tensors[i]) / 32) * DSI_SP_HEAD_BYTES + most;
        if ((int)i == p->bad_stride_tensor) p->stride[i]++;
    }
    return DS_OK;
}

/* Writes A (pruned = false) or B to path. */
static ds_status pair_write(pair_ctx *p, bool pruned, const char *path) {
    const dsi_meta *mt = &p->m->meta;
    dsi_writer w;
    dsi_writer_init(&w, &p->al, &p->e, p->m->hdr.chunk_bytes, true, "test");
    dsi_segment *segs = calloc(mt->n_tensors + mt->n_segments, sizeof *segs);
    uint32_t *seg_of = calloc(mt->n_tensors, sizeof *seg_of);
    uint64_t *off = calloc(mt->n_tensors, sizeof *off);
    size_t n_segs = 0;
    dsi_buf meta, td;
    dsi_buf_init(&meta, &p->al);
    dsi_buf_init(&td, &p->al);
    ds_status s = segs && seg_of && off ? DS_OK : DS_ERR_NOMEM;
    if (!s && !pruned) {
        memcpy(segs, mt->segments, mt->n_segments * sizeof *segs);
        n_segs = mt->n_segments;
        for (size_t i = 0; i < mt->n_tensors; i++) seg_of[i] = mt->tensors[i].segment, off[i] = mt->tensors[i].offset;
    }
    for (size_t i = 0; !s && pruned && i < mt->n_tensors; i++) {
        const dsi_segment *sg = &mt->segments[mt->tensors[i].segment];
        s = dsi_layout_add(segs, &n_segs, sg->kind, sg->layer, sg->expert, b_bytes(p, i), &seg_of[i], &off[i]);
    }
    if (!s && pruned) s = dsi_layout_seal(segs, n_segs, w.chunk_bytes, &p->e);
    if (!s) s = dsi_writer_check_early(&w, path);
    if (!s) s = dsi_writer_keys(&w, false, NULL, NULL, 0, 0, 0);
    if (!s) s = dsi_writer_open(&w, path);
    for (uint32_t si = 0; !s && si < n_segs; si++) {
        uint8_t *buf = pruned ? calloc((size_t)segs[si].plain_bytes + 1, 1) : p->plain[si];
        if (!buf) {
            s = DS_ERR_NOMEM;
            break;
        }
        for (size_t i = 0; pruned && i < mt->n_tensors; i++) {
            if (seg_of[i] != si) continue;
            const dsi_tensor *t = &mt->tensors[i];
            uint64_t rows = tensor_rows(t), cols = tensor_cols(t), rb = (cols / 32) * DSI_Q8_BLOCK_BYTES;
            const uint8_t *src = p->plain[t->segment] + t->offset;
            if (p->dtype[i] == t->dtype) {
                memcpy(buf + off[i], src, (size_t)t->nbytes);
                continue;
            }
            size_t sb = p->dtype[i] == DS_DTYPE_Q8_0_SP ? p->stride[i] : (size_t)(cols / 32) * DSI_Q24_BLOCK_BYTES;
            for (uint64_t r = 0; r < rows; r++)
                store_row(src + r * rb, p->dtype[i], (size_t)cols, sb, buf + off[i] + r * sb);
        }
        s = dsi_writer_seg_begin(&w, si, &segs[si]);
        if (!s) s = dsi_writer_put(&w, buf, (size_t)segs[si].plain_bytes);
        if (!s) s = dsi_writer_seg_end(&w, segs[si].n_chunks);
        if (pruned) free(buf);
    }
    /* the records again, with B's directories */
    dsi_buf_u32(&td, (uint32_t)mt->n_tensors);
    dsi_buf_u32(&td, 0);
    for (size_t i = 0; i < mt->n_tensors; i++) {
        const dsi_tensor *t = &mt->tensors[i];
        dsi_meta_tensor(&td, t->name, pruned ? p->dtype[i] : t->dtype, t->n_dims, t->dims, seg_of[i], off[i],
                        pruned ? b_bytes(p, i) : t->nbytes);
    }
    size_t pos = 0, len = mt->plain_len;
    while (!s && pos + 16 <= len) {
        uint32_t tag = dsi_rd32(mt->plain + pos);
        uint64_t rlen = dsi_rd64(mt->plain + pos + 8);
        if (tag == DSI_REC_SEGMENTS) dsi_meta_segments(&meta, segs, n_segs, &p->al);
        else if (tag == DSI_REC_TENSORS) dsi_meta_record(&meta, tag, td.data, td.len);
        else dsi_meta_record(&meta, tag, mt->plain + pos + 16, (size_t)rlen);
        pos += 16 + (size_t)((rlen + 7) / 8 * 8);
    }
    if (!s && (meta.failed || td.failed)) s = DS_ERR_NOMEM;
    if (!s) s = dsi_writer_finish(&w, &meta, path);
    dsi_writer_free(&w);
    dsi_buf_free(&meta);
    dsi_buf_free(&td);
    free(segs);
    free(seg_of);
    free(off);
    return s;
}

static void pair_free(pair_ctx *p) {
    for (size_t i = 0; p->plain && i < p->m->meta.n_segments; i++) free(p->plain[i]);
    free(p->plain);
    free(p->stride);
    free(p->dtype);
}

/* ==== The tests =========================================================== */
static ds_model *open_model_on(const char *path, uint64_t cache_bytes, bool cuda, uint64_t gpu_cache) {
    ds_model *m = NULL;
    ds_model_params mp = ds_model_default_params();
    mp.n_threads = 2;
    mp.expert_cache_bytes = cache_bytes;
    mp.device = cuda ? DS_DEVICE_CUDA : DS_DEVICE_CPU;
    mp.gpu_cache_bytes = gpu_cache;
    if (ds_model_open(&m, path, &mp) != DS_OK) {
        printf("open %s: %s\n", path, ds_last_error());
        return NULL;
    }
    return m;
}

static ds_model *open_model(const char *path, uint64_t cache_bytes) {
    return open_model_on(path, cache_bytes, false, 0);
}

/* A's logits and B's: a 24-token batch, then a 10-token prompt and 14
 * tokens one at a time (all logits). */
static int logits(ds_model *m, float *out, int V) {
    int32_t tok[24];
    for (int i = 0; i < 24; i++) tok[i] = (i * 37 + 11) % V;
    ds_context *c = NULL;
    ds_status s = ds_context_new(&c, m, NULL);
    if (!s) s = ds_context_eval(c, tok, 24, out, 1);
    if (!s) ds_context_reset(c);
    float *b = out + (size_t)24 * V;
    if (!s) s = ds_context_eval(c, tok, 10, b, 1);
    for (int t = 10; t < 24 && !s; t++) s = ds_context_eval(c, tok + t, 1, b + (size_t)t * V, 0);
    if (s) printf("eval: %s\n", ds_last_error());
    ds_context_free(c);
    return (int)s;
}

static uint64_t file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n > 0 ? (uint64_t)n : 0;
}

static void test_family(const char *family, bool structured) {
    char id[96], src[600], q8[64], pa[64], pb[64];
    const char *kind = structured ? "24" : "sp";
    snprintf(src, sizeof src, "%s/%s", testdata, family);
    snprintf(q8, sizeof q8, "%s-%s-q8.dsm", family, kind);
    snprintf(pa, sizeof pa, "%s-%s-a.dsm", family, kind);
    snprintf(pb, sizeof pb, "%s-%s-b.dsm", family, kind);
    snprintf(id, sizeof id, "sparse-1.%s.%s", family, kind);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_Q8_0;
    cp.encrypt = 0;
    cp.chunk_bytes = 4096;
    cp.overwrite = 1;
    char q8p[600];
    snprintf(q8p, sizeof q8p, "%s", tmp_path(q8));
    ds_status s = ds_convert(src, q8p, &cp);
    T_STATUS(id, s, DS_OK, ds_last_error());
    if (s) return;
    pair_ctx p;
    memset(&p, 0, sizeof p);
    p.structured = structured;
    p.bad_stride_tensor = -1;
    p.m = open_model(q8p, 0);
    if (!p.m || dsi_alloc_init(&p.al, NULL, &p.e)) {
        T_CHECK(id, 0, "open %s", q8p);
        return;
    }
    char ap[600], bp[600];
    snprintf(ap, sizeof ap, "%s", tmp_path(pa));
    snprintf(bp, sizeof bp, "%s", tmp_path(pb));
    s = pair_prepare(&p);
    if (!s) s = pair_write(&p, false, ap);
    if (!s) s = pair_write(&p, true, bp);
    T_STATUS(id, s, DS_OK, p.e.msg);
    uint64_t sa = file_size(ap), sb = file_size(bp);
    printf("INFO %s: Q8_0 with zeros %llu bytes, pruned storage %llu (%.1f%%)\n", id, (unsigned long long)sa,
           (unsigned long long)sb, sa ? 100.0 * (double)sb / (double)sa : 0.0);
    T_CHECK(id, !s && sb < sa, "pruned file %llu bytes, dense %llu", (unsigned long long)sb, (unsigned long long)sa);
    ds_model *ma = s ? NULL : open_model(ap, 0), *mb = s ? NULL : open_model(bp, 0);
    T_CHECK(id, ma && mb, "open the pair");
    int n_pruned = 0, bad_read = 0;
    for (size_t i = 0; ma && mb && i < ds_model_tensor_count(mb); i++) {
        ds_tensor_info ti;
        if (ds_model_tensor_info(mb, i, &ti) != DS_OK) continue;
        if (ti.dtype != DS_DTYPE_Q8_0_24 && ti.dtype != DS_DTYPE_Q8_0_SP) continue;
        n_pruned++;
        size_t n = (size_t)(ti.dims[0] * (ti.n_dims == 2 ? ti.dims[1] : 1)), ia = 0;
        float *x = malloc(n * 4), *y = malloc(n * 4);
        if (!x || !y || ds_model_tensor_find(ma, ti.name, &ia) || ds_model_tensor_read_f32(ma, ia, x, n) ||
            ds_model_tensor_read_f32(mb, i, y, n) || memcmp(x, y, n * 4))
            bad_read++;
        free(x);
        free(y);
    }
    T_CHECK(id, n_pruned > 0 && bad_read == 0, "%d pruned tensors, %d read back otherwise than A's", n_pruned,
            bad_read);
    if (ma && mb) {
        ds_model_config cf;
        (void)!ds_model_get_config(ma, &cf);
        int V = cf.vocab_size;
        float *la = malloc((size_t)48 * V * 4), *lb = malloc((size_t)48 * V * 4);
        snprintf(id, sizeof id, "sparse-2.%s.%s", family, kind);
        int ea = la && lb ? logits(ma, la, V) : -1, eb = la && lb ? logits(mb, lb, V) : -1;
        T_CHECK(id, ea == 0 && eb == 0, "eval %d / %d", ea, eb);
        T_CHECK(id, !ea && !eb && memcmp(la, lb, (size_t)48 * V * 4) == 0,
                "logits of the pruned storage differ from Q8_0's of the same values");
        /* paged: an expert cache of two slots of B's (smaller) experts */
        if (cf.n_routed_experts > 0) {
            ds_model *mc = NULL;
            uint64_t slot = 0;
            for (size_t k = 0; k < ds_model_segment_count(mb); k++) {
                ds_segment_info si;
                if (ds_model_segment_info(mb, k, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT && si.plain_bytes > slot)
                    slot = si.plain_bytes;
            }
            slot = (slot + 4095) / 4096 * 4096;
            mc = open_model(bp, 2 * slot);
            int ec = mc ? logits(mc, lb, V) : -1;
            snprintf(id, sizeof id, "sparse-2.%s.%s.paged", family, kind);
            T_CHECK(id, ec == 0 && memcmp(la, lb, (size_t)48 * V * 4) == 0,
                    "paged logits differ from A's (eval %d)", ec);
            ds_cache_stats st;
            memset(&st, 0, sizeof st);
            if (mc) (void)!ds_model_cache_stats(mc, &st);
            T_CHECK(id, mc && st.n_slots == 2 && st.misses > 0, "slots %d misses %llu", mc ? st.n_slots : -1,
                    (unsigned long long)st.misses);
            ds_model_close(mc);
        }
        /* 5: on the device */
        snprintf(id, sizeof id, "sparse-5.%s.%s", family, kind);
        ds_model *ga = open_model_on(ap, 0, true, 0), *gb = open_model_on(bp, 0, true, 0);
        if (!ga || !gb || ds_model_device(ga) != DS_DEVICE_CUDA || ds_model_device(gb) != DS_DEVICE_CUDA) {
            T_SKIP(id, "no CUDA device");
        } else {
            int ea2 = logits(ga, la, V), eb2 = logits(gb, lb, V);
            T_CHECK(id, !ea2 && !eb2 && memcmp(la, lb, (size_t)48 * V * 4) == 0,
                    "device logits of the pruned storage differ from Q8_0's (eval %d / %d)", ea2, eb2);
            if (cf.n_routed_experts > 0) {
                ds_model_close(gb);
                gb = NULL;
                uint64_t slot = 0;
                for (size_t k = 0; k < ds_model_segment_count(mb); k++) {
                    ds_segment_info si;
                    if (ds_model_segment_info(mb, k, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT &&
                        si.plain_bytes > slot)
                        slot = si.plain_bytes;
                }
                /* two slots of the expanded experts: a Q8_0 expert of A */
                uint64_t dense_slot = 0;
                for (size_t k = 0; k < ds_model_segment_count(ma); k++) {
                    ds_segment_info si;
                    if (ds_model_segment_info(ma, k, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT &&
                        si.plain_bytes > dense_slot)
                        dense_slot = si.plain_bytes;
                }
                gb = open_model_on(bp, 0, true, 2 * (dense_slot + 1024));
                int ec2 = gb ? logits(gb, lb, V) : -1;
                snprintf(id, sizeof id, "sparse-5.%s.%s.paged", family, kind);
                T_CHECK(id, ec2 == 0 && memcmp(la, lb, (size_t)48 * V * 4) == 0,
                        "device logits with a VRAM cache differ from A's (eval %d)", ec2);
            }
        }
        ds_model_close(ga);
        ds_model_close(gb);
        free(la);
        free(lb);
    }
    ds_model_close(ma);
    ds_model_close(mb);
    /* 4: no merge into pruned storage */
    char peft[600];
    snprintf(peft, sizeof peft, "%s/peft/good/adapter_config.json", testdata);
    if (!s && !strcmp(family, "v2lite") && access(peft, R_OK) == 0) {
        snprintf(id, sizeof id, "sparse-4.%s", kind);
        snprintf(peft, sizeof peft, "%s/peft/good", testdata);
        char ad[600], mg[600];
        snprintf(ad, sizeof ad, "%s", tmp_path(structured ? "good-24.dsa" : "good-sp.dsa"));
        snprintf(mg, sizeof mg, "%s", tmp_path(structured ? "merged-24.dsm" : "merged-sp.dsm"));
        ds_convert_lora_params lp = ds_convert_lora_default_params();
        lp.encrypt = 0;
        ds_model *base = open_model(bp, 0);
        ds_status sl = base ? ds_convert_lora(peft, base, ad, &lp) : DS_ERR_IO;
        T_STATUS(id, sl, DS_OK, ds_last_error());
        ds_adapter *a = NULL;
        ds_adapter_params ap = ds_adapter_default_params();
        if (!sl) sl = ds_adapter_open(&a, base, ad, &ap);
        T_STATUS(id, sl, DS_OK, ds_last_error());
        ds_status sm = sl ? DS_ERR_INTERNAL : ds_lora_merge(a, 1.0f, mg, &lp);
        T_STATUS(id, sm, DS_ERR_INVALID_ARG, ds_last_error());
        T_CHECK(id, sm && strstr(ds_last_error(), structured ? "q8_0_24" : "q8_0_sp") &&
                        strstr(ds_last_error(), "without sparse storage") && access(mg, F_OK) != 0,
                "message: %s", ds_last_error());
        ds_adapter_close(a);
        ds_model_close(base);
    }
    /* 3: an expert's stride other than expert 0's */
    if (!structured && !s) {
        int target = -1;
        for (size_t i = 0; i < p.m->meta.n_tensors && target < 0; i++)
            if (strstr(p.m->meta.tensors[i].name, ".experts.1.up_proj") && p.dtype[i] == DS_DTYPE_Q8_0_SP)
                target = (int)i;
        if (target >= 0) {
            snprintf(id, sizeof id, "sparse-3.%s", family);
            p.bad_stride_tensor = target;
            free(p.stride);
            free(p.dtype);
            for (size_t i = 0; i < p.m->meta.n_segments; i++) free(p.plain[i]);
            free(p.plain);
            p.plain = NULL, p.stride = NULL, p.dtype = NULL;
            s = pair_prepare(&p);
            if (!s) s = pair_write(&p, true, bp);
            T_STATUS(id, s, DS_OK, p.e.msg);
            ds_model *mx = NULL;
            ds_model_params mp = ds_model_default_params();
            ds_status so = s ? DS_ERR_INTERNAL : ds_model_open(&mx, bp, &mp);
            T_STATUS(id, so, DS_ERR_SHAPE, ds_last_error());
            T_CHECK(id, so && strstr(ds_last_error(), "experts.1.up_proj") && strstr(ds_last_error(), "stride"),
                    "message: %s", ds_last_error());
            ds_model_close(mx);
        }
    }
    pair_free(&p);
    ds_model_close(p.m);
}

int main(void) {
    testdata = getenv("DS_TESTDATA");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/v2lite/config.json", testdata ? testdata : "");
    if (!testdata || access(probe, R_OK) != 0 || !mkdtemp(tmpdir)) {
        T_SKIP("sparse", "no generated checkpoints ($DS_TESTDATA)");
        return t_finish("test_sparse");
    }
    /* DS_SPARSE_FAMILIES (a comma-separated list) narrows the families:
     * for slow emulated CUDA runs (tools/cuda_emu) */
    static const char *families[] = {"v2lite", "moe16b", "v3"};
    const char *only = getenv("DS_SPARSE_FAMILIES");
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        if (only && !strstr(only, families[f])) continue;
        test_family(families[f], true);
        test_family(families[f], false);
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return t_finish("test_sparse");
}
