/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * convert.c — Hugging Face checkpoint -> .dsm container.
 *
 * One streaming pass: plan the layout from the safetensors headers (every
 * tensor's output dtype, size and place in its segment), then for each segment
 * read the source tensors in row groups, decode them to F32 (F16, BF16, or
 * FP8 e4m3 x 128x128 block scale), re-encode (F32 / F16 / Q8_0), and seal the
 * stream chunk by chunk. Memory stays at a few row groups plus one chunk,
 * whatever the model size. The output goes to a temporary file that is
 * renamed into place only when everything succeeded.
 *
 * The output never destroys anything by surprise: an existing out_path is
 * refused unless params->overwrite, and an out_path that is one of the inputs
 * (the same device and inode as a shard, config.json or a tokenizer file:
 * `ds convert DIR DIR/model.safetensors`, also through a hard or symbolic
 * link) is refused even then. Without overwrite the finished file is put in
 * place with link(2), which fails rather than replace a file that appeared
 * meanwhile.
 */
#include "format.h"
#include "tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define DSI_ROW_GROUP_BYTES ((size_t)4 << 20)   /* F32 bytes decoded at once */
#define DSI_MAX_TEXT_FILE ((size_t)256 << 20)    /* config/tokenizer JSON */

DS_API ds_convert_params ds_convert_default_params(void) {
    ds_convert_params p;
    memset(&p, 0, sizeof p);
    p.quant = DS_QUANT_Q8_0;
    p.quant_experts = DS_QUANT_INHERIT;
    p.quant_core = DS_QUANT_INHERIT;
    p.quant_router = DS_QUANT_F32;
    p.encrypt = 1;
    p.magic = DSI_CONVERT_PARAMS_MAGIC;
    return p;
}

/* ==== Source checkpoint ================================================== */
typedef struct dsi_shard {
    char *path;
    int fd;
    dsi_st_header *h;
} dsi_shard;

/* A source tensor: which shard, which entry. Sorted by name for lookups. */
typedef struct dsi_src {
    const char *name;
    uint32_t shard;
    const dsi_st_tensor *t;
    bool used;
} dsi_src;

/* One planned output tensor. */
typedef struct dsi_plan {
    const dsi_tensor_spec *spec;
    dsi_src *src;
    dsi_src *scale;          /* FP8 block scales, or NULL */
    ds_dtype dtype;
    uint64_t rows, cols, row_bytes, nbytes;
    uint32_t segment;
    uint64_t offset;         /* inside the segment's plaintext */
    /* GGUF input: the tensor (an expert's slice of a stacked one from
     * goff), or kv_b joined from attn_k_b (gk) and attn_v_b (gv) */
    const dsi_gguf_tensor *gt, *gk, *gv;
    uint64_t goff;
    uint32_t perm_hd;        /* llama.cpp's permuted q/k rows (DeepSeek-MoE): the head size, else 0 */
    bool prune;              /* zero weights by the pruning rule (dsi_prunable) */
    uint64_t sp_max;         /* Q8_0_SP sizing: the most values a row of it stores */
    bool sp_done;            /* its storage is decided */
} dsi_plan;

typedef struct dsi_conv {
    dsi_alloc al;
    const ds_convert_params *p;
    dsi_err *e;
    char *hf_dir;
    ds_model_config cfg;
    char *config_json, *tok_json, *tokcfg_json;
    size_t config_len, tok_len, tokcfg_len;
    dsi_shard *shards;
    size_t n_shards;
    /* GGUF input (instead of shards) */
    dsi_gguf *gg;
    int gg_fd;
    char *gg_path;
    bool *gg_used;           /* n_tensors flags: which ones the plan reads */
    dsi_src *srcs;
    size_t n_srcs;
    dsi_tensor_spec *specs;
    size_t n_specs;
    dsi_plan *plan;
    dsi_segment *segs;
    size_t n_segs;
    dsi_writer w;            /* the output */
    /* row-group scratch */
    uint8_t *raw;
    float *f32;
    uint8_t *enc;
    size_t raw_cap, f32_cap, enc_cap;
    /* progress */
    uint64_t tensors_done;
    /* pruning: the whole matrix in F32, and what was done (the record) */
    float *mat;
    size_t mat_cap;
    uint64_t pruned_mats, pruned_entries, pruned_zeros, sparse24, sparse_sp;
    /* expert pruning (drop_experts): the experts dropped, and the record */
    dsi_expert_drop drop;
    bool has_drop;
    dsi_buf drop_json;
} dsi_conv;

DSI_FUNC char *dsi_path_join(const dsi_alloc *al, const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = dsi_malloc(al, a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

DSI_FUNC ds_status dsi_writer_read_text(dsi_writer *w, const char *dir, const char *name, char **out, size_t *len,
                                       bool *missing) {
    *out = NULL;
    *len = 0;
    if (missing) *missing = false;
    char *path = dsi_path_join(w->al, dir, name);
    if (!path) return dsi_fail(w->e, DS_ERR_NOMEM, "out of memory");
    ds_status s = DS_OK;
    dsi_file_id id;
    if (missing && access(path, F_OK) != 0 && errno == ENOENT) {
        *missing = true;
        dsi_free(w->al, path);
        return DS_OK;
    }
    /* a FIFO or a device is refused without blocking */
    int fd = dsi_open_regular(path, &id, w->e);
    if (fd < 0) {
        s = dsi_prefix(w->e, "%s", path);
    } else if ((s = dsi_writer_note_input(w, &id, path))) {
    } else if (id.size > DSI_MAX_TEXT_FILE) {
        s = dsi_fail(w->e, DS_ERR_LIMIT, "%s: %llu bytes is too large for a JSON file", path,
                     (unsigned long long)id.size);
    } else {
        size_t n = (size_t)id.size, done = 0;
        char *buf = dsi_malloc(w->al, n + 1);
        if (!buf) s = dsi_fail(w->e, DS_ERR_NOMEM, "out of memory reading %s", path);
        while (!s && done < n) {
            ssize_t r = read(fd, buf + done, n - done);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) s = dsi_fail(w->e, DS_ERR_IO, "%s: read failed", path);
            else done += (size_t)r;
        }
        if (s) dsi_free(w->al, buf);
        else {
            buf[n] = 0;
            *out = buf;
            *len = n;
        }
    }
    if (fd >= 0) close(fd);
    dsi_free(w->al, path);
    return s;
}

static ds_status dsi_read_text(dsi_conv *c, const char *name, char **out, size_t *len, bool *missing) {
    return dsi_writer_read_text(&c->w, c->hf_dir, name, out, len, missing);
}

static int dsi_cmp_src(const void *a, const void *b) {
    return strcmp(((const dsi_src *)a)->name, ((const dsi_src *)b)->name);
}

static dsi_src *dsi_find_src(dsi_conv *c, const char *name) {
    dsi_src key = {name, 0, NULL, false};
    return bsearch(&key, c->srcs, c->n_srcs, sizeof *c->srcs, dsi_cmp_src);
}

static ds_status dsi_open_shard(dsi_conv *c, const char *file) {
    /* shard names come from an index file: no directories, no escapes */
    if (!*file || strchr(file, '/') || strcmp(file, "..") == 0 || strcmp(file, ".") == 0)
        return dsi_fail(c->e, DS_ERR_SAFETENSORS, "model.safetensors.index.json: bad shard file name '%s'", file);
    for (size_t i = 0; i < c->n_shards; i++) {
        const char *base = strrchr(c->shards[i].path, '/');
        if (strcmp(base ? base + 1 : c->shards[i].path, file) == 0) return DS_OK;
    }
    dsi_shard *ns = dsi_realloc(&c->al, c->shards, (c->n_shards + 1) * sizeof *ns);
    if (!ns) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    c->shards = ns;
    dsi_shard *sh = &c->shards[c->n_shards];
    memset(sh, 0, sizeof *sh);
    sh->fd = -1;
    sh->path = dsi_path_join(&c->al, c->hf_dir, file);
    if (!sh->path) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    c->n_shards++;
    ds_status s = dsi_st_open(sh->path, &c->al, &sh->h, c->e);
    if (s) return s;
    dsi_file_id id;
    sh->fd = dsi_open_regular(sh->path, &id, c->e);
    if (sh->fd < 0) return dsi_prefix(c->e, "%s", sh->path);
    return dsi_writer_note_input(&c->w, &id, sh->path);
}

static ds_status dsi_open_checkpoint(dsi_conv *c) {
    char *index = NULL;
    size_t index_len = 0;
    bool missing = false;
    ds_status s = dsi_read_text(c, "model.safetensors.index.json", &index, &index_len, &missing);
    if (s) return s;
    if (missing) {
        char *single = dsi_path_join(&c->al, c->hf_dir, "model.safetensors");
        if (!single) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
        bool exists = access(single, F_OK) == 0;
        dsi_free(&c->al, single);
        if (!exists)
            return dsi_fail(c->e, DS_ERR_IO, "%s: neither model.safetensors nor model.safetensors.index.json found",
                            c->hf_dir);
        s = dsi_open_shard(c, "model.safetensors");
    } else {
        dsi_json_doc *doc = NULL;
        s = dsi_json_parse(index, index_len, &c->al, &doc, c->e);
        if (s) dsi_prefix(c->e, "model.safetensors.index.json");
        const dsi_json *wm = s ? NULL : dsi_json_get(dsi_json_root(doc), "weight_map");
        if (!s && (!wm || wm->type != DSI_JSON_OBJECT))
            s = dsi_fail(c->e, DS_ERR_JSON, "model.safetensors.index.json: weight_map is missing or not an object");
        for (uint32_t i = 0; !s && i < wm->n; i++) {
            if (wm->kids[i].type != DSI_JSON_STRING)
                s = dsi_fail(c->e, DS_ERR_JSON, "model.safetensors.index.json: weight_map entry %s is not a string",
                             wm->kids[i].key);
            else s = dsi_open_shard(c, wm->kids[i].str);
        }
        dsi_json_free(doc);
        dsi_free(&c->al, index);
        if (s) return s;
    }
    if (s) return s;

    /* One sorted table of every source tensor across shards. */
    size_t n = 0;
    for (size_t i = 0; i < c->n_shards; i++) n += c->shards[i].h->n;
    c->srcs = dsi_calloc(&c->al, n ? n : 1, sizeof *c->srcs);
    if (!c->srcs) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->n_shards; i++)
        for (size_t k = 0; k < c->shards[i].h->n; k++) {
            dsi_src *d = &c->srcs[c->n_srcs++];
            d->name = c->shards[i].h->t[k].name;
            d->shard = (uint32_t)i;
            d->t = &c->shards[i].h->t[k];
        }
    qsort(c->srcs, c->n_srcs, sizeof *c->srcs, dsi_cmp_src);
    for (size_t i = 1; i < c->n_srcs; i++)
        if (strcmp(c->srcs[i - 1].name, c->srcs[i].name) == 0)
            return dsi_fail(c->e, DS_ERR_SAFETENSORS, "tensor %s appears in two shards", c->srcs[i].name);
    return DS_OK;
}

/* ==== GGUF sources ======================================================= */
/* Our (Hugging Face) tensor names and llama.cpp's in a deepseek2 GGUF. */
static const struct { const char *hf, *gg; } dsi_gguf_top[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};
static const struct { const char *hf, *gg; } dsi_gguf_layer[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_a_proj.weight", "attn_q_a.weight"},
    {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"},
    {"self_attn.q_b_proj.weight", "attn_q_b.weight"},
    {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"},
    {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"},
    {"self_attn.kv_b_proj.weight", "attn_kv_b.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate.weight", "ffn_gate_inp.weight"},
    {"mlp.gate.e_score_correction_bias", "exp_probs_b.bias"},
    {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"},
    {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"},
    {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    /* routed experts: stacked, one slice per expert */
    {"gate_proj.weight", "ffn_gate_exps.weight"},
    {"up_proj.weight", "ffn_up_exps.weight"},
    {"down_proj.weight", "ffn_down_exps.weight"},
};

/* The GGUF name of one of our tensors; *expert is the slice of a stacked
 * expert tensor, or -1. False for a name with no GGUF counterpart. */
static bool dsi_gguf_name(const char *hf, char *out, size_t cap, int *expert) {
    *expert = -1;
    for (size_t i = 0; i < sizeof dsi_gguf_top / sizeof dsi_gguf_top[0]; i++)
        if (strcmp(hf, dsi_gguf_top[i].hf) == 0) {
            snprintf(out, cap, "%s", dsi_gguf_top[i].gg);
            return true;
        }
    int layer, ex, n = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &n) != 1 || n == 0) return false;
    const char *rest = hf + n;
    if (sscanf(rest, "mlp.experts.%d.%n", &ex, &n) == 1 && n > 0) {
        *expert = ex;
        rest += n;
        for (size_t i = sizeof dsi_gguf_layer / sizeof dsi_gguf_layer[0] - 3; i < sizeof dsi_gguf_layer / sizeof dsi_gguf_layer[0]; i++)
            if (strcmp(rest, dsi_gguf_layer[i].hf) == 0) {
                snprintf(out, cap, "blk.%d.%s", layer, dsi_gguf_layer[i].gg);
                return true;
            }
        return false;
    }
    for (size_t i = 0; i < sizeof dsi_gguf_layer / sizeof dsi_gguf_layer[0] - 3; i++)
        if (strcmp(rest, dsi_gguf_layer[i].hf) == 0) {
            snprintf(out, cap, "blk.%d.%s", layer, dsi_gguf_layer[i].gg);
            return true;
        }
    return false;
}

/* The ggml types whose rows we decode (dsi_ggml_dequantize_row). */
static bool dsi_gguf_readable(uint32_t t) {
    float y[256];
    static const uint8_t zero[256 * 4];   /* 256 values of the widest type (F32) */
    return dsi_ggml_dequantize_row(t, zero, y, 256);
}

static ds_status dsi_gguf_type_check(dsi_conv *c, const dsi_gguf_tensor *t) {
    if (dsi_gguf_readable(t->type)) return DS_OK;
    return dsi_fail(c->e, DS_ERR_SHAPE,
                    "%s: tensor %s has ggml type %s, which the converter does not read (F32, F16, BF16, Q8_0, "
                    "Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K); convert from the Hugging Face checkpoint, or from a GGUF "
                    "of one of those types",
                    c->gg_path, t->name, dsi_ggml_type_name(t->type));
}

/* The container type of a GGUF source type kept as it is (DS_QUANT_KEEP):
 * the same bytes where we have the type; BF16, which we do not, as F16
 * (exact for BF16 values within F16's range; others are refused); the
 * other quantized types (Q4_1, Q5_x, K-quants) dequantized and re-quantized
 * to Q8_0, the nearest we have that loses little (with a warning). */
static ds_dtype dsi_gguf_keep_dtype(uint32_t t) {
    switch (t) {
    case DSI_GGML_F32: return DS_DTYPE_F32;
    case DSI_GGML_F16: case DSI_GGML_BF16: return DS_DTYPE_F16;
    case DSI_GGML_Q4_0: return DS_DTYPE_Q4_0;
    default: return DS_DTYPE_Q8_0;
    }
}

static bool dsi_gguf_same(uint32_t t, ds_dtype d) {
    return (t == DSI_GGML_F32 && d == DS_DTYPE_F32) || (t == DSI_GGML_F16 && d == DS_DTYPE_F16) ||
           (t == DSI_GGML_Q8_0 && d == DS_DTYPE_Q8_0) || (t == DSI_GGML_Q4_0 && d == DS_DTYPE_Q4_0);
}

static ds_status dsi_gguf_shape_fail(dsi_conv *c, const dsi_tensor_spec *sp, const dsi_gguf_tensor *t,
                                     const char *want) {
    char got[96] = "";
    size_t o = 0;
    for (uint32_t d = 0; d < t->n_dims && o < sizeof got - 24; d++)
        o += (size_t)snprintf(got + o, sizeof got - o, "%s%llu", d ? ", " : "", (unsigned long long)t->ne[d]);
    return dsi_fail(c->e, DS_ERR_SHAPE, "%s: tensor %s (our %s): expected ne = {%s}, got {%s}", c->gg_path, t->name,
                    sp->name, want, got);
}

/* Finds the GGUF source of one planned tensor and checks its shape; *src_type
 * is the ggml type that DS_QUANT_KEEP keeps. */
static ds_status dsi_plan_gguf(dsi_conv *c, const dsi_tensor_spec *sp, dsi_plan *pl, uint32_t *src_type) {
    char gname[160], want[96];
    int expert;
    if (!dsi_gguf_name(sp->name, gname, sizeof gname, &expert))
        return dsi_fail(c->e, DS_ERR_ARCH, "%s: tensor %s has no GGUF counterpart", c->gg_path, sp->name);
    const dsi_gguf *g = c->gg;
    const dsi_gguf_tensor *t = dsi_gguf_tensor_find(g, gname);
    size_t gl = strlen(gname);
    if (!t && gl > 16 && strcmp(gname + gl - 16, "attn_kv_b.weight") == 0) {
        /* llama.cpp's MLA files split kv_b: k_b (n_head, kv_lora, nope),
         * the nope rows of each head transposed; v_b (n_head, v_head,
         * kv_lora), the v rows as they are. Joined back per head. */
        const ds_model_config *cf = &c->cfg;
        memcpy(gname + gl - 16, "attn_k_b.weight", 16);
        pl->gk = dsi_gguf_tensor_find(g, gname);
        memcpy(gname + gl - 16, "attn_v_b.weight", 16);
        pl->gv = dsi_gguf_tensor_find(g, gname);
        gname[gl - 16] = 0;
        if (!pl->gk || !pl->gv)
            return dsi_fail(c->e, DS_ERR_MISSING_TENSOR, "%s: neither %sattn_kv_b.weight nor both %sattn_k_b.weight and "
                            "%sattn_v_b.weight are in the file", c->gg_path, gname, gname, gname);
        const dsi_gguf_tensor *k = pl->gk, *v = pl->gv;
        uint64_t nh = (uint64_t)cf->n_heads, kl = (uint64_t)cf->kv_lora_rank;
        if (k->n_dims != 3 || k->ne[0] != (uint64_t)cf->qk_nope_head_dim || k->ne[1] != kl || k->ne[2] != nh) {
            snprintf(want, sizeof want, "%d, %llu, %llu", cf->qk_nope_head_dim, (unsigned long long)kl,
                     (unsigned long long)nh);
            return dsi_gguf_shape_fail(c, sp, k, want);
        }
        if (v->n_dims != 3 || v->ne[0] != kl || v->ne[1] != (uint64_t)cf->v_head_dim || v->ne[2] != nh) {
            snprintf(want, sizeof want, "%llu, %d, %llu", (unsigned long long)kl, cf->v_head_dim, (unsigned long long)nh);
            return dsi_gguf_shape_fail(c, sp, v, want);
        }
        ds_status s = dsi_gguf_type_check(c, k);
        if (!s) s = dsi_gguf_type_check(c, v);
        c->gg_used[k - g->tensors] = c->gg_used[v - g->tensors] = true;
        *src_type = v->type;    /* kv_b's rows are v_b's: its type is the file's choice */
        return s;
    }
    if (!t)
        return dsi_fail(c->e, DS_ERR_MISSING_TENSOR, "%s: tensor %s (our %s) is missing from the file", c->gg_path,
                        gname, sp->name);
    bool ok;
    if (expert >= 0) {
        ok = t->n_dims == 3 && t->ne[0] == sp->dims[1] && t->ne[1] == sp->dims[0] &&
             t->ne[2] == (uint64_t)c->cfg.n_routed_experts;
        snprintf(want, sizeof want, "%llu, %llu, %d", (unsigned long long)sp->dims[1], (unsigned long long)sp->dims[0],
                 c->cfg.n_routed_experts);
    } else if (sp->n_dims == 2) {
        ok = t->n_dims == 2 && t->ne[0] == sp->dims[1] && t->ne[1] == sp->dims[0];
        snprintf(want, sizeof want, "%llu, %llu", (unsigned long long)sp->dims[1], (unsigned long long)sp->dims[0]);
    } else {
        ok = t->n_dims == 1 && t->ne[0] == sp->dims[0];
        snprintf(want, sizeof want, "%llu", (unsigned long long)sp->dims[0]);
    }
    if (!ok) return dsi_gguf_shape_fail(c, sp, t, want);
    ds_status s = dsi_gguf_type_check(c, t);
    if (s) return s;
    pl->gt = t;
    pl->goff = t->file_offset;
    /* llama.cpp's "deepseek" files hold q_proj and k_proj with each head's
     * rows reordered for its rotary layout (pairs interleaved): undone here */
    size_t nl = strlen(sp->name);
    if (c->cfg.arch == DS_ARCH_DEEPSEEK_MOE && nl > 23 &&
        (strcmp(sp->name + nl - 23, "self_attn.q_proj.weight") == 0 ||
         strcmp(sp->name + nl - 23, "self_attn.k_proj.weight") == 0)) {
        if (c->cfg.head_dim <= 0 || c->cfg.head_dim % 2 || sp->dims[0] % (uint64_t)c->cfg.head_dim)
            return dsi_fail(c->e, DS_ERR_SHAPE, "%s: tensor %s: %llu rows are not whole heads of %d", c->gg_path,
                            t->name, (unsigned long long)sp->dims[0], c->cfg.head_dim);
        pl->perm_hd = (uint32_t)c->cfg.head_dim;
    }
    if (expert >= 0) pl->goff += (uint64_t)expert * t->row_bytes * t->ne[1];   /* inside the checked extent */
    c->gg_used[t - g->tensors] = true;
    *src_type = t->type;
    return DS_OK;
}

/* ==== Layout plan ======================================================== */
static const char *dsi_st_name(const dsi_st_tensor *t) { return t->dtype_name ? t->dtype_name : "?"; }

/* ==== Pruning ============================================================= */
/* Whether spec's matrix is pruned: 2-D linear weights of the chosen
 * classes; never the embeddings, the LM head, the router, norms or biases. */
static bool dsi_prunable(const ds_convert_params *p, const dsi_tensor_spec *sp) {
    if (!(p->prune > 0) && !p->prune_m) return false;
    if (sp->n_dims != 2 || sp->keep_f32 || sp->pclass == DS_PARAM_ROUTER) return false;
    if (!strcmp(sp->name, "model.embed_tokens.weight") || !strcmp(sp->name, "lm_head.weight")) return false;
    unsigned cls = p->prune_classes ? p->prune_classes : DS_PRUNE_CORE | DS_PRUNE_EXPERTS;
    return (cls & (sp->pclass == DS_PARAM_EXPERT ? DS_PRUNE_EXPERTS : DS_PRUNE_CORE)) != 0;
}

/* |w| as an ordered integer: the IEEE bits without the sign. Larger
 * magnitudes give larger keys, -0 and +0 the same key; NaN above infinity
 * (the converter refuses non-finite values before pruning anyway). */
static inline uint32_t dsi_mag_key(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u & 0x7fffffffu;
}

/* Zeroes the k entries of w[0, n) with the smallest |w|, ties to the lower
 * index (the first k of a stable sort by |w|). The k-th smallest key is
 * found by three histogram passes over its bits (10, 11, 10 bits, high to
 * low), then one pass zeroes every key below it and, in index order, as
 * many equal to it as are still needed. O(n) time, no copy of w. */
static void dsi_prune_smallest(float *w, size_t n, uint64_t k, uint64_t hist[2048]) {
    if (k == 0) return;
    if (k >= n) {
        memset(w, 0, n * sizeof *w);
        return;
    }
    static const int shift[3] = {21, 10, 0}, width[3] = {10, 11, 10};
    uint32_t prefix = 0;
    uint64_t need = k;   /* the need-th smallest (from 1) among keys sharing prefix's decided bits */
    for (int p = 0; p < 3; p++) {
        int sh = shift[p], top = sh + width[p];
        uint32_t dmask = (1u << width[p]) - 1u;
        memset(hist, 0, sizeof(uint64_t) << width[p]);
        for (size_t i = 0; i < n; i++) {
            uint32_t key = dsi_mag_key(w[i]);
            if (top >= 31 || (key >> top) == (prefix >> top)) hist[(key >> sh) & dmask]++;
        }
        uint64_t cum = 0;
        for (uint32_t d = 0; d <= dmask; d++) {
            if (cum + hist[d] >= need) {
                prefix |= d << sh;
                need -= cum;
                break;
            }
            cum += hist[d];
        }
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t key = dsi_mag_key(w[i]);
        if (key < prefix || (key == prefix && need && need--)) w[i] = 0.0f;
    }
}

/* N:M: in every m consecutive values of each row (cols % m == 0), the n of
 * smallest |w| become 0, ties to the lower index. */
static void dsi_prune_nm(float *w, size_t rows, size_t cols, int n, int m) {
    for (size_t r = 0; r < rows; r++)
        for (size_t g = 0; g < cols; g += (size_t)m) {
            float *v = w + r * cols + g;
            uint32_t taken = 0;   /* bit j: v[j] chosen */
            for (int z = 0; z < n; z++) {
                int best = -1;
                for (int j = 0; j < m; j++)
                    if (!(taken >> j & 1u) && (best < 0 || dsi_mag_key(v[j]) < dsi_mag_key(v[best]))) best = j;
                taken |= 1u << best;
            }
            for (int j = 0; j < m; j++)
                if (taken >> j & 1u) v[j] = 0.0f;
        }
}

static ds_status dsi_load_pruned(dsi_conv *c, const dsi_plan *pl, bool count);

static const char *dsi_expert_part(const char *name);
/* q belongs to lead's storage group: lead itself, or (part set) another
 * undecided pruned Q8_0 expert matrix of lead's layer and part. */
static bool dsi_same_group(const dsi_plan *lead, const char *part, const dsi_plan *q) {
    if (q == lead) return true;
    if (!part || !q->prune || q->dtype != DS_DTYPE_Q8_0 || q->sp_done || q->spec->layer != lead->spec->layer)
        return false;
    const char *qp = dsi_expert_part(q->spec->name);
    return qp && !strcmp(qp, part);
}

/* A routed expert's part (gate_proj.weight, ...): the name after
 * "experts.E.", or NULL. */
static const char *dsi_expert_part(const char *name) {
    const char *p = strstr(name, ".experts.");
    if (!p) return NULL;
    p += 9;
    while (*p >= '0' && *p <= '9') p++;
    return *p == '.' ? p + 1 : NULL;
}

/* Sparse storage for pruned Q8_0 matrices (DS_PRUNE_STORAGE_AUTO). A
 * pattern that leaves at most two nonzeros in every aligned four (2:4, 1:2,
 * 6:8 ...) is stored as Q8_0_24, always smaller (22 bytes a block against
 * 34). Other pruning is stored as Q8_0_SP where that is smaller: a first pass
 * prunes each matrix and counts the values its rows keep (Q8_0 values that
 * quantize to 0 are not kept), and the stride is that of the longest row. A
 * layer's routed experts share one stride per part (gate, up, down), so the
 * layer's expert matrices keep one shape: they go sparse together or not at
 * all, on their total size. */
static ds_status dsi_prune_storage(dsi_conv *c) {
    const ds_convert_params *p = c->p;
    if (p->prune_storage == DS_PRUNE_STORAGE_DENSE || (!(p->prune > 0) && !p->prune_m)) return DS_OK;
    bool is24 = p->prune_m == 2 || (p->prune_m >= 4 && p->prune_m - p->prune_n <= 2);
    if (is24) {
        for (size_t i = 0; i < c->n_specs; i++) {
            dsi_plan *pl = &c->plan[i];
            if (!pl->prune || pl->dtype != DS_DTYPE_Q8_0) continue;
            pl->dtype = DS_DTYPE_Q8_0_24;
            if (!dsi_dtype_row_bytes(pl->dtype, pl->cols, &pl->row_bytes) ||
                !dsi_mul_u64(pl->row_bytes, pl->rows, &pl->nbytes))
                return dsi_fail(c->e, DS_ERR_LIMIT, "tensor %s is too large", pl->spec->name);
            c->sparse24++;
        }
        return DS_OK;
    }
    /* pass 1: each row's kept values */
    size_t n_mats = 0;
    for (size_t i = 0; i < c->n_specs; i++) n_mats += c->plan[i].prune && c->plan[i].dtype == DS_DTYPE_Q8_0;
    if (!n_mats) return DS_OK;
    dsi_log(p->log, p->log_user, DS_LOG_INFO,
            "pruning: sizing the sparse rows of %zu matrices (a first pass over their values)", n_mats);
    for (size_t i = 0; i < c->n_specs; i++) {
        dsi_plan *pl = &c->plan[i];
        if (!pl->prune || pl->dtype != DS_DTYPE_Q8_0) continue;
        ds_status s = dsi_load_pruned(c, pl, false);
        if (s) return s;
        size_t cols = (size_t)pl->cols;
        pl->sp_max = 0;
        for (uint64_t r = 0; r < pl->rows; r++) {
            uint64_t k = dsi_sp_row_count(c->mat + (size_t)r * cols, cols);
            if (k > pl->sp_max) pl->sp_max = k;
        }
        if (p->progress && p->progress(p->progress_user, 0, c->n_specs, 0))
            return dsi_fail(c->e, DS_ERR_CANCELLED, "conversion cancelled");
    }
    /* groups: a core matrix alone; a layer's experts by part */
    for (size_t i = 0; i < c->n_specs; i++) {
        dsi_plan *lead = &c->plan[i];
        if (!lead->prune || lead->dtype != DS_DTYPE_Q8_0 || lead->sp_done) continue;
        const char *part = lead->spec->pclass == DS_PARAM_EXPERT ? dsi_expert_part(lead->spec->name) : NULL;
        size_t end = part ? c->n_specs : i + 1;
        uint64_t nb = lead->cols / DSI_Q8_BLOCK, most = 0, dense = 0, sparse = 0;
        for (size_t j = i; j < end; j++)
            if (dsi_same_group(lead, part, &c->plan[j]) && c->plan[j].sp_max > most) most = c->plan[j].sp_max;
        uint64_t stride = (nb * 6 + most + 3) / 4 * 4;   /* rows start 4-aligned where the bound allows */
        if (stride > nb * 6 + lead->cols) stride = nb * 6 + lead->cols;
        for (size_t j = i; j < end; j++)
            if (dsi_same_group(lead, part, &c->plan[j])) {
                dense += c->plan[j].nbytes;
                sparse += c->plan[j].rows * stride + c->plan[j].cols;
            }
        bool go = sparse < dense;
        for (size_t j = end; j-- > i;) {   /* the lead last: dsi_same_group compares with it */
            dsi_plan *q = &c->plan[j];
            if (!dsi_same_group(lead, part, q)) continue;
            q->sp_done = true;
            if (go) {
                q->dtype = DS_DTYPE_Q8_0_SP;
                q->row_bytes = stride;
                q->nbytes = q->rows * stride + q->cols;   /* + the tail guard */
                c->sparse_sp++;
            }
        }
    }
    return DS_OK;
}

/* ==== Expert pruning (drop_experts) ======================================= */
/* The calibration file's config fingerprint: the fields a file from another
 * model would differ in (the model id is informational: converting the same
 * checkpoint again gives a new one). */
#define DSI_CALIB_FIELDS(X)                                                                                         \
    X(arch) X(n_layers) X(n_routed_experts) X(hidden_size) X(moe_intermediate_size) X(first_k_dense_replace)       \
    X(moe_layer_freq) X(n_experts_per_tok) X(n_group) X(topk_group) X(vocab_size)

/* Source dimension d of spec sp: a pruned layer's router and bias have E
 * rows (values) in the checkpoint and n_kept in the container. */
static uint64_t dsi_conv_src_dim(const dsi_conv *c, const dsi_tensor_spec *sp, int d) {
    if (d == 0 && c->has_drop && sp->pclass == DS_PARAM_ROUTER && sp->layer >= 0 && sp->layer < c->cfg.n_layers &&
        dsi_config_is_moe_layer(&c->cfg, sp->layer))
        return (uint64_t)c->cfg.n_routed_experts;
    return sp->dims[d];
}

typedef struct dsi_rank {
    double mass;
    int64_t count;
    int id;
} dsi_rank;
/* Least first: mass, then selections, then the higher id. */
static int dsi_cmp_rank(const void *a, const void *b) {
    const dsi_rank *x = a, *y = b;
    if (x->mass != y->mass) return x->mass < y->mass ? -1 : 1;
    if (x->count != y->count) return x->count < y->count ? -1 : 1;
    return x->id > y->id ? -1 : x->id < y->id;
}

/* The checkpoint tensors of dropped experts count as used (not as strays
 * the architecture does not know). */
static void dsi_conv_mark_dropped(dsi_conv *c) {
    if (!c->has_drop) return;
    for (size_t i = 0; i < c->n_srcs; i++) {
        int l, x, n = 0;
        if (sscanf(c->srcs[i].name, "model.layers.%d.mlp.experts.%d.%n", &l, &x, &n) == 2 && n > 0 && l >= 0 &&
            l < c->cfg.n_layers && x >= 0 && x < c->cfg.n_routed_experts && dsi_expert_dropped(&c->drop, l, x))
            c->srcs[i].used = true;
    }
}

/* Reads and checks the calibration file, chooses each MoE layer's experts
 * to drop and builds the DSI_REC_EXPERTS record (c->drop, c->drop_json). */
static ds_status dsi_conv_expert_drop(dsi_conv *c) {
    const ds_convert_params *p = c->p;
    const ds_model_config *cf = &c->cfg;
    const char *path = p->drop_calib_path;
    if (!path) return DS_OK;
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    const char *slash = strrchr(path, '/');
    dir = slash ? dsi_strndup(&c->al, path, (size_t)(slash - path)) : dsi_strndup(&c->al, ".", 1);
    if (!dir) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    ds_status s = dsi_writer_read_text(&c->w, dir, slash ? slash + 1 : path, &text, &len, NULL);
    dsi_free(&c->al, dir);
    if (s) return s;
    dsi_json_doc *doc = NULL;
    uint8_t *dropped = NULL;
    dsi_rank *rk = NULL;
    int L = cf->n_layers, E = cf->n_routed_experts;
    if ((s = dsi_json_parse(text, len, &c->al, &doc, c->e))) {
        dsi_prefix(c->e, "calibration file %s", path);
        goto out;
    }
    const dsi_json *root = dsi_json_root(doc), *cfj = dsi_json_get(root, "config"), *layers = dsi_json_get(root, "layers");
    const char *fmt = NULL;
    size_t fl = 0;
    if (!root || root->type != DSI_JSON_OBJECT || dsi_json_get_str(root, "format", &fmt, &fl) != 1 ||
        strcmp(fmt, "deepseek.h calibration 1") != 0 || !cfj || cfj->type != DSI_JSON_OBJECT || !layers ||
        layers->type != DSI_JSON_OBJECT) {
        s = dsi_fail(c->e, DS_ERR_CALIBRATION, "calibration file %s: not a \"deepseek.h calibration 1\" object with "
                     "config and layers (made by ds calibrate)", path);
        goto out;
    }
    int64_t v;
#define X(f)                                                                                                        \
    if (dsi_json_get_int(cfj, #f, &v) != 1) {                                                                      \
        s = dsi_fail(c->e, DS_ERR_CALIBRATION, "calibration file %s: config.%s is missing", path, #f);              \
        goto out;                                                                                                   \
    }                                                                                                               \
    if (v != (int64_t)cf->f) {                                                                                      \
        s = dsi_fail(c->e, DS_ERR_CALIBRATION, "calibration file %s was made for another model: its %s is %lld, "  \
                     "this checkpoint's is %lld", path, #f, (long long)v, (long long)cf->f);                        \
        goto out;                                                                                                   \
    }
    DSI_CALIB_FIELDS(X)
#undef X
    dropped = dsi_calloc(&c->al, (size_t)L * (size_t)E, 1);
    rk = dsi_calloc(&c->al, (size_t)E, sizeof *rk);
    if (!dropped || !rk) {
        s = dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
        goto out;
    }
    int n_drop = (int)floor(p->drop_experts * (double)E + 1e-9);
    for (int l = 0; l < L; l++) {
        if (!dsi_config_is_moe_layer(cf, l)) continue;
        char key[16];
        snprintf(key, sizeof key, "%d", l);
        const dsi_json *ly = dsi_json_get(layers, key);
        const dsi_json *mass = ly ? dsi_json_get(ly, "mass") : NULL, *cnt = ly ? dsi_json_get(ly, "count") : NULL;
        if (!mass || !cnt || mass->type != DSI_JSON_ARRAY || cnt->type != DSI_JSON_ARRAY || mass->n != (uint32_t)E ||
            cnt->n != (uint32_t)E) {
            s = dsi_fail(c->e, DS_ERR_CALIBRATION, "calibration file %s: layer %d needs \"mass\" and \"count\" "
                         "arrays of %d numbers", path, l, E);
            goto out;
        }
        for (int x = 0; x < E; x++) {
            const dsi_json *m = &mass->kids[x], *n = &cnt->kids[x];
            if (m->type != DSI_JSON_NUMBER || !isfinite(m->num) || m->num < 0 || n->type != DSI_JSON_NUMBER ||
                !n->is_int || n->i < 0) {
                s = dsi_fail(c->e, DS_ERR_CALIBRATION, "calibration file %s: layer %d expert %d: mass must be a "
                             "finite number >= 0 and count a whole number >= 0", path, l, x);
                goto out;
            }
            rk[x] = (dsi_rank){m->num, n->i, x};
        }
        qsort(rk, (size_t)E, sizeof *rk, dsi_cmp_rank);
        for (int i = 0; i < n_drop; i++) dropped[(size_t)l * E + rk[i].id] = 1;
    }
    if (n_drop == 0) goto out;   /* the file is checked; nothing to drop */
    s = dsi_drop_init(&c->drop, cf, dropped, p->drop_experts, &c->al, c->e);
    dropped = NULL;
    if (s) {
        dsi_prefix(c->e, "--drop-experts %g", p->drop_experts);
        goto out;
    }
    c->has_drop = true;
    /* the record */
    dsi_buf *b = &c->drop_json;
    dsi_buf_init(b, &c->al);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "{\"format\": \"deepseek.h experts 1\", \"ratio\": %.17g, \"n_routed_experts\": %d, "
             "\"n_dropped_per_layer\": %d, \"calib\": {\"file\": ", p->drop_experts, E, n_drop);
    dsi_buf_put(b, tmp, strlen(tmp));
    const char *base = slash ? slash + 1 : path;
    dsi_json_write_string(b, base, strlen(base));
    const char *str = NULL;
    size_t sl = 0;
    if (dsi_json_get_str(root, "text", &str, &sl) == 1) {
        dsi_buf_put(b, ", \"text\": ", 10);
        dsi_json_write_string(b, str, sl);
    }
    if (dsi_json_get_str(root, "model_id", &str, &sl) == 1) {
        dsi_buf_put(b, ", \"model_id\": ", 14);
        dsi_json_write_string(b, str, sl);
    }
    if (dsi_json_get_int(root, "n_tokens", &v) == 1) {
        snprintf(tmp, sizeof tmp, ", \"n_tokens\": %lld", (long long)v);
        dsi_buf_put(b, tmp, strlen(tmp));
    }
    dsi_buf_put(b, "}, \"layers\": {", 14);
    bool first = true;
    for (int l = 0; l < L; l++) {
        if (!dsi_config_is_moe_layer(cf, l)) continue;
        snprintf(tmp, sizeof tmp, "%s\"%d\": {\"kept\": [", first ? "" : ", ", l);
        dsi_buf_put(b, tmp, strlen(tmp));
        first = false;
        for (int pass = 0; pass < 2; pass++) {
            bool f1 = true;
            for (int x = 0; x < E; x++)
                if (dsi_expert_dropped(&c->drop, l, x) == (pass == 1)) {
                    snprintf(tmp, sizeof tmp, "%s%d", f1 ? "" : ", ", x);
                    dsi_buf_put(b, tmp, strlen(tmp));
                    f1 = false;
                }
            dsi_buf_put(b, pass ? "]}" : "], \"dropped\": [", pass ? 2 : 15);
        }
    }
    dsi_buf_put(b, "}}", 2);
    if (b->failed) s = dsi_fail(c->e, DS_ERR_NOMEM, "out of memory building the expert record");
    else
        dsi_log(p->log, p->log_user, DS_LOG_INFO, "dropping %d of %d routed experts in each MoE layer (ratio %g, "
                "calibration %s)", n_drop, E, p->drop_experts, path);
out:
    dsi_free(&c->al, dropped);
    dsi_free(&c->al, rk);
    dsi_json_free(doc);
    dsi_free(&c->al, text);
    return s;
}

static ds_status dsi_make_plan(dsi_conv *c) {
    ds_status s = dsi_arch_tensor_specs(&c->cfg, &c->al, &c->specs, &c->n_specs, c->e);
    if (s) return s;
    /* dropped experts: no specs; their routers fewer rows */
    dsi_drop_specs(c->has_drop ? &c->drop : NULL, c->specs, &c->n_specs);
    dsi_conv_mark_dropped(c);
    c->plan = dsi_calloc(&c->al, c->n_specs, sizeof *c->plan);
    c->segs = dsi_calloc(&c->al, c->n_specs, sizeof *c->segs);   /* at most one segment per tensor */
    if (!c->plan || !c->segs) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    int f16_fallback = 0, requant = 0, kb_requant = 0;
    uint32_t kb_type = 0;
    const char *requant_first = NULL;
    uint32_t requant_type = 0;
    for (size_t i = 0; i < c->n_specs; i++) {
        const dsi_tensor_spec *sp = &c->specs[i];
        dsi_plan *pl = &c->plan[i];
        pl->spec = sp;
        pl->rows = sp->n_dims == 2 ? sp->dims[0] : 1;
        pl->cols = sp->dims[sp->n_dims - 1];
        uint32_t gtype = 0;
        if (c->gg) {
            ds_status s2 = dsi_plan_gguf(c, sp, pl, &gtype);
            if (s2) return s2;
            goto choose;
        }
        pl->src = dsi_find_src(c, sp->name);
        if (!pl->src) return dsi_fail(c->e, DS_ERR_MISSING_TENSOR, "tensor %s is missing from the checkpoint", sp->name);
        const dsi_st_tensor *t = pl->src->t;
        pl->src->used = true;
        bool same = t->ndim == sp->n_dims;
        for (int d = 0; same && d < sp->n_dims; d++) same = t->shape[d] == dsi_conv_src_dim(c, sp, d);
        if (!same) {
            char got[96] = "";
            size_t o = 0;
            for (int d = 0; d < t->ndim && o < sizeof got - 24; d++)
                o += (size_t)snprintf(got + o, sizeof got - o, "%s%llu", d ? "x" : "", (unsigned long long)t->shape[d]);
            if (sp->n_dims == 2)
                return dsi_fail(c->e, DS_ERR_SHAPE, "tensor %s: expected %llux%llu, got %s", sp->name,
                                (unsigned long long)sp->dims[0], (unsigned long long)sp->dims[1], t->ndim ? got : "a scalar");
            return dsi_fail(c->e, DS_ERR_SHAPE, "tensor %s: expected %llu, got %s", sp->name,
                            (unsigned long long)sp->dims[0], t->ndim ? got : "a scalar");
        }
        switch (t->dtype) {
        case DSI_ST_F32: case DSI_ST_F16: case DSI_ST_BF16: break;
        case DSI_ST_F8_E4M3: {
            /* DeepSeek-V3 release format: 128x128 blocks, scale_inv multiplies */
            char sname[128];
            snprintf(sname, sizeof sname, "%s_scale_inv", sp->name);
            pl->scale = dsi_find_src(c, sname);
            if (!pl->scale)
                return dsi_fail(c->e, DS_ERR_MISSING_TENSOR, "tensor %s is F8_E4M3 but %s is missing", sp->name, sname);
            const dsi_st_tensor *st = pl->scale->t;
            uint64_t br = (pl->rows + 127) / 128, bc = (pl->cols + 127) / 128;
            if (sp->n_dims != 2 || st->ndim != 2 || st->shape[0] != br || st->shape[1] != bc ||
                (st->dtype != DSI_ST_F32 && st->dtype != DSI_ST_BF16))
                return dsi_fail(c->e, DS_ERR_SHAPE, "tensor %s: expected F32 %llux%llu block scales", sname,
                                (unsigned long long)br, (unsigned long long)bc);
            pl->scale->used = true;
            break;
        }
        default:
            return dsi_fail(c->e, DS_ERR_SHAPE, "tensor %s: dtype %s is not supported (F32, F16, BF16, F8_E4M3)",
                            sp->name, dsi_st_name(t));
        }
    choose:;
        ds_quant q = sp->pclass == DS_PARAM_EXPERT ? c->p->quant_experts
                     : sp->pclass == DS_PARAM_ROUTER ? c->p->quant_router
                                                     : c->p->quant_core;
        if (q == DS_QUANT_INHERIT) q = c->p->quant;
        if (q == DS_QUANT_KEEP) {
            /* only GGUF input gets here (ds_convert checks) */
            pl->dtype = sp->keep_f32 ? DS_DTYPE_F32 : dsi_gguf_keep_dtype(gtype);
            if (!sp->keep_f32 && gtype != DSI_GGML_F32 && gtype != DSI_GGML_F16 && gtype != DSI_GGML_BF16 &&
                gtype != DSI_GGML_Q8_0 && gtype != DSI_GGML_Q4_0 && !requant++)
                requant_first = sp->name, requant_type = gtype;
            if ((pl->dtype == DS_DTYPE_Q8_0 || pl->dtype == DS_DTYPE_Q4_0) && pl->cols % DSI_Q8_BLOCK) {
                pl->dtype = DS_DTYPE_F16;
                f16_fallback++;
            }
        } else if (sp->keep_f32 || q == DS_QUANT_F32) pl->dtype = DS_DTYPE_F32;
        else if (q == DS_QUANT_F16) pl->dtype = DS_DTYPE_F16;
        else if (pl->cols % DSI_Q8_BLOCK == 0) pl->dtype = q == DS_QUANT_Q4_0 ? DS_DTYPE_Q4_0 : DS_DTYPE_Q8_0;
        else {
            pl->dtype = DS_DTYPE_F16;
            f16_fallback++;
        }
        /* a quantized k_b has its blocks along the other axis than kv_b's
         * rows: joining re-quantizes the k half */
        if (pl->gk && pl->gk->type != DSI_GGML_F32 && pl->gk->type != DSI_GGML_F16 && pl->gk->type != DSI_GGML_BF16 &&
            (pl->dtype == DS_DTYPE_Q8_0 || pl->dtype == DS_DTYPE_Q4_0) && !kb_requant++)
            kb_type = pl->gk->type;
        pl->prune = dsi_prunable(c->p, sp);
        if (pl->prune && c->p->prune_m && pl->cols % (uint64_t)c->p->prune_m)
            return dsi_fail(c->e, DS_ERR_SHAPE, "tensor %s: rows of %llu values are not whole groups of %d for %d:%d "
                            "pruning", sp->name, (unsigned long long)pl->cols, c->p->prune_m, c->p->prune_n,
                            c->p->prune_m);
        if (!dsi_dtype_row_bytes(pl->dtype, pl->cols, &pl->row_bytes) ||
            !dsi_mul_u64(pl->row_bytes, pl->rows, &pl->nbytes))
            return dsi_fail(c->e, DS_ERR_LIMIT, "tensor %s is too large", sp->name);
    }
    if ((s = dsi_prune_storage(c))) return s;
    /* segments: consecutive specs with the same (kind, layer, expert) */
    for (size_t i = 0; i < c->n_specs; i++) {
        const dsi_tensor_spec *sp = &c->specs[i];
        dsi_plan *pl = &c->plan[i];
        if (dsi_layout_add(c->segs, &c->n_segs, sp->seg_kind, sp->layer, sp->expert, pl->nbytes, &pl->segment,
                           &pl->offset))
            return dsi_fail(c->e, DS_ERR_LIMIT, "segment too large");
    }
    ds_status s2 = dsi_layout_seal(c->segs, c->n_segs, c->w.chunk_bytes, c->e);
    if (s2) return s2;
    if (kb_requant)
        dsi_log(c->p->log, c->p->log_user, DS_LOG_WARN,
                "kv_b of %d layer(s) is joined from a %s attn_k_b, whose blocks run along the other axis: its k half "
                "is dequantized and re-quantized (close to the file's values, not identical)", kb_requant,
                dsi_ggml_type_name(kb_type));
    if (requant)
        dsi_log(c->p->log, c->p->log_user, DS_LOG_WARN,
                "%d tensor(s) of ggml types the container does not have (e.g. %s, %s) are dequantized and "
                "re-quantized to Q8_0 (close, not identical; --quant chooses another type)", requant, requant_first,
                dsi_ggml_type_name(requant_type));
    if (f16_fallback)
        dsi_log(c->p->log, c->p->log_user, DS_LOG_WARN,
                "%d tensor(s) have a row length that is not a multiple of 32; stored as F16 instead of 8 or 4 bits",
                f16_fallback);

    /* Report what the architecture does not use: MTP layers and strays. */
    size_t mtp = 0, other = 0;
    const char *first_other = NULL;
    int first_mtp = -1;
    for (size_t i = 0; i < c->n_srcs; i++) {
        if (c->srcs[i].used) continue;
        int layer;
        if (sscanf(c->srcs[i].name, "model.layers.%d.", &layer) == 1 && layer >= c->cfg.n_layers) {
            mtp++;
            if (first_mtp < 0 || layer < first_mtp) first_mtp = layer;
        } else {
            other++;
            if (!first_other) first_other = c->srcs[i].name;
        }
    }
    if (mtp)
        dsi_log(c->p->log, c->p->log_user, DS_LOG_INFO,
                "skipping %zu tensor(s) of multi-token-prediction layer(s) from index %d (not used for inference)", mtp,
                first_mtp);
    if (other)
        dsi_log(c->p->log, c->p->log_user, DS_LOG_WARN, "ignoring %zu tensor(s) the architecture does not use (e.g. %s)",
                other, first_other);
    if (c->gg) {
        /* attn_kv_b beside attn_k_b/attn_v_b, MTP (nextn) layers, strays */
        size_t unused = 0;
        const char *first = NULL;
        for (uint64_t i = 0; i < c->gg->n_tensors; i++)
            if (!c->gg_used[i]) {
                unused++;
                if (!first) first = c->gg->tensors[i].name;
            }
        if (unused)
            dsi_log(c->p->log, c->p->log_user, DS_LOG_INFO, "%s: not using %zu GGUF tensor(s) (e.g. %s)", c->gg_path,
                    unused, first);
    }
    return DS_OK;
}

/* ==== Output stream (the writer every converter shares) ================= */
DSI_FUNC void dsi_writer_init(dsi_writer *w, const dsi_alloc *al, dsi_err *e, uint32_t chunk_bytes, bool overwrite,
                              const char *force_hint) {
    memset(w, 0, sizeof *w);
    w->al = al;
    w->e = e;
    w->fd = -1;
    w->chunk_bytes = chunk_bytes;
    w->overwrite = overwrite;
    w->force_hint = force_hint;
}

DSI_FUNC ds_status dsi_writer_note_input(dsi_writer *w, const dsi_file_id *id, const char *path) {
    dsi_input *ni = dsi_realloc(w->al, w->inputs, (w->n_inputs + 1) * sizeof *ni);
    if (!ni) return dsi_fail(w->e, DS_ERR_NOMEM, "out of memory");
    w->inputs = ni;
    ni[w->n_inputs].id = *id;
    ni[w->n_inputs].path = dsi_strndup(w->al, path, strlen(path));
    if (!ni[w->n_inputs].path) return dsi_fail(w->e, DS_ERR_NOMEM, "out of memory");
    w->n_inputs++;
    return DS_OK;
}

static ds_status dsi_write_all(dsi_writer *w, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t r = write(w->fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return dsi_fail(w->e, DS_ERR_IO, "%s: write failed: %s", w->tmp_path, strerror(errno));
        p += r;
        n -= (size_t)r;
        w->pos += (uint64_t)r;
    }
    return DS_OK;
}

static ds_status dsi_pad_file(dsi_writer *w, uint64_t align) {
    static const uint8_t zeros[4096];
    while (w->pos % align) {
        size_t n = (size_t)(align - w->pos % align);
        ds_status s = dsi_write_all(w, zeros, n < sizeof zeros ? n : sizeof zeros);
        if (s) return s;
    }
    return DS_OK;
}

static ds_status dsi_flush_chunk(dsi_writer *w) {
    uint8_t tag[DSI_TAG_BYTES];
    w->ad.last = w->seg_done == w->ad.seg_plain_bytes;
    ds_status s = dsi_chunk_seal(w->keys, &w->ad, w->chunk_plain, w->chunk_out, w->fill, tag, w->e);
    if (!s) s = dsi_write_all(w, w->chunk_out, w->fill);
    if (!s) s = dsi_write_all(w, tag, sizeof tag);
    w->ad.chunk++;
    w->fill = 0;
    return s;
}

DSI_FUNC ds_status dsi_writer_put(dsi_writer *w, const uint8_t *data, size_t n) {
    while (n) {
        size_t take = w->chunk_bytes - w->fill;
        if (take > n) take = n;
        if (w->seg_done + take > w->ad.seg_plain_bytes)
            return dsi_fail(w->e, DS_ERR_INTERNAL, "segment overrun while writing");
        if (data) memcpy(w->chunk_plain + w->fill, data, take);
        else memset(w->chunk_plain + w->fill, 0, take);
        w->fill += take;
        w->seg_done += take;
        if (data) data += take;
        n -= take;
        if (w->fill == w->chunk_bytes) {
            ds_status s = dsi_flush_chunk(w);
            if (s) return s;
        }
    }
    return DS_OK;
}

DSI_FUNC ds_status dsi_writer_pad_to(dsi_writer *w, uint64_t offset) {
    return offset > w->seg_done ? dsi_writer_put(w, NULL, (size_t)(offset - w->seg_done)) : DS_OK;
}

static ds_status dsi_seg_begin_ad(dsi_writer *w, const dsi_chunk_ad *ad) {
    ds_status s = dsi_pad_file(w, DSI_SEG_ALIGN);
    if (s) return s;
    w->ad = *ad;
    w->ad.chunk = 0;
    w->seg_done = 0;
    w->fill = 0;
    return DS_OK;
}

DSI_FUNC ds_status dsi_writer_seg_begin(dsi_writer *w, uint32_t index, dsi_segment *sg) {
    dsi_chunk_ad ad;
    memset(&ad, 0, sizeof ad);
    ad.segment = index;
    ad.kind = sg->kind;
    ad.layer = sg->layer;
    ad.expert = sg->expert;
    ad.seg_plain_bytes = sg->plain_bytes;
    ds_status s = dsi_seg_begin_ad(w, &ad);
    sg->offset = w->pos;
    return s;
}

DSI_FUNC ds_status dsi_writer_seg_end(dsi_writer *w, uint32_t n_chunks) {
    if (w->seg_done != w->ad.seg_plain_bytes) return dsi_fail(w->e, DS_ERR_INTERNAL, "segment underrun while writing");
    if (w->fill || w->ad.chunk == 0) {
        ds_status s = dsi_flush_chunk(w);
        if (s) return s;
    }
    if (w->ad.chunk != n_chunks) return dsi_fail(w->e, DS_ERR_INTERNAL, "segment chunk count mismatch");
    return DS_OK;
}

DSI_FUNC ds_status dsi_layout_add(dsi_segment *segs, size_t *n_segs, uint32_t kind, int layer, int expert,
                                  uint64_t nbytes, uint32_t *segment, uint64_t *offset) {
    dsi_segment *cur = *n_segs ? &segs[*n_segs - 1] : NULL;
    if (!cur || cur->kind != kind || cur->layer != layer || cur->expert != expert) {
        cur = &segs[(*n_segs)++];
        memset(cur, 0, sizeof *cur);
        cur->kind = kind;
        cur->layer = layer;
        cur->expert = expert;
    }
    *segment = (uint32_t)(*n_segs - 1);
    uint64_t off = (cur->plain_bytes + DSI_TENSOR_ALIGN - 1) / DSI_TENSOR_ALIGN * DSI_TENSOR_ALIGN;
    *offset = off;
    return dsi_add_u64(off, nbytes, &cur->plain_bytes) ? DS_OK : DS_ERR_LIMIT;
}

DSI_FUNC ds_status dsi_layout_seal(dsi_segment *segs, size_t n_segs, uint32_t chunk_bytes, dsi_err *e) {
    for (size_t i = 0; i < n_segs; i++)
        if (!dsi_stored_bytes(segs[i].plain_bytes, chunk_bytes, &segs[i].stored_bytes, &segs[i].n_chunks))
            return dsi_fail(e, DS_ERR_LIMIT, "segment %zu too large", i);
    return DS_OK;
}

/* ==== Tensor conversion ================================================== */
static ds_status dsi_grow(dsi_conv *c, void **buf, size_t *cap, size_t need) {
    if (*cap >= need) return DS_OK;
    void *p = dsi_realloc(&c->al, *buf, need);
    if (!p) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory for a %zu-byte row buffer", need);
    *buf = p;
    *cap = need;
    return DS_OK;
}

DSI_FUNC ds_status dsi_pread_full(int fd, const char *path, void *buf, size_t n, uint64_t off, dsi_err *e) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (dsi_off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return dsi_fail(e, DS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (r == 0) return dsi_fail(e, DS_ERR_TRUNCATED, "%s: file ends inside tensor data", path);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return DS_OK;
}

static ds_status dsi_pread_all(dsi_conv *c, const dsi_shard *sh, void *buf, size_t n, uint64_t off) {
    return dsi_pread_full(sh->fd, sh->path, buf, n, off, c->e);
}

static float dsi_decode(dsi_st_dtype t, const uint8_t *p, size_t i) {
    switch (t) {
    case DSI_ST_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case DSI_ST_F16: return dsi_f16_to_f32(dsi_rd16(p + 2 * i));
    case DSI_ST_BF16: return dsi_bf16_to_f32(dsi_rd16(p + 2 * i));
    case DSI_ST_F8_E4M3: return dsi_fp8_e4m3_to_f32(p[i]);
    default: return NAN;
    }
}

/* Decodes one source row to F32 (times FP8 block scales when given): one
 * loop per dtype, so the hot loop has no switch. Returns the index of the
 * first non-finite value, or n. */
DSI_FUNC size_t dsi_st_decode_row(dsi_st_dtype t, const uint8_t *p, float *y, size_t n, const float *scales) {
    switch (t) {
    case DSI_ST_F32:
        for (size_t k = 0; k < n; k++) {
            uint32_t u = dsi_rd32(p + 4 * k);
            memcpy(&y[k], &u, 4);
        }
        break;
    case DSI_ST_BF16:
        for (size_t k = 0; k < n; k++) {
            uint32_t u = (uint32_t)dsi_rd16(p + 2 * k) << 16;
            memcpy(&y[k], &u, 4);
        }
        break;
    case DSI_ST_F16:
        for (size_t k = 0; k < n; k++) y[k] = dsi_f16_to_f32(dsi_rd16(p + 2 * k));
        break;
    case DSI_ST_F8_E4M3: {
        float lut[256];
        for (int v = 0; v < 256; v++) lut[v] = dsi_fp8_e4m3_to_f32((uint8_t)v);
        for (size_t k = 0; k < n; k++) y[k] = lut[p[k]] * scales[k / 128];
        break;
    }
    default:
        for (size_t k = 0; k < n; k++) y[k] = NAN;
        break;
    }
    size_t bad = n;
    for (size_t k = n; k-- > 0;)
        if (!isfinite(y[k])) bad = k;
    return bad;
}

/* Values the planned type cannot hold: not finite, or beyond F16. */
static ds_status dsi_check_row(dsi_conv *c, const dsi_plan *pl, const float *y, size_t cols, uint64_t row) {
    for (size_t k = 0; k < cols; k++) {
        bool bad = !isfinite(y[k]) || (pl->dtype == DS_DTYPE_F16 && fabsf(y[k]) > 65504.0f);
        if (bad)
            return dsi_fail(c->e, DS_ERR_SHAPE, "tensor %s: value %g at row %llu column %zu %s", pl->spec->name,
                            (double)y[k], (unsigned long long)row, k,
                            isfinite(y[k]) ? "does not fit F16 (use --quant f32 or q8)" : "is not finite");
    }
    return DS_OK;
}

/* ==== GGUF tensors ======================================================= */
static ds_status dsi_gguf_read(dsi_conv *c, void *buf, size_t n, uint64_t off) {
    return dsi_pread_full(c->gg_fd, c->gg_path, buf, n, off, c->e);
}

/* rows x cols of source type `type` from file offset off, into the segment:
 * copied byte for byte when the planned type is the same, else decoded and
 * encoded. Every value is checked either way. */
static ds_status dsi_gguf_rows(dsi_conv *c, const dsi_plan *pl, uint32_t type, uint64_t off, uint64_t rows,
                               uint64_t row0) {
    size_t cols = (size_t)pl->cols;
    uint64_t srb = 0;
    dsi_ggml_row_bytes(type, cols, &srb);   /* checked when the file was parsed */
    bool copy = dsi_gguf_same(type, pl->dtype);
    size_t group = DSI_ROW_GROUP_BYTES / (cols * 4);
    if (group == 0) group = 1;
    if (group > rows) group = (size_t)rows;
    ds_status s = dsi_grow(c, (void **)&c->raw, &c->raw_cap, group * (size_t)srb);
    if (!s) s = dsi_grow(c, (void **)&c->f32, &c->f32_cap, group * cols * sizeof(float));
    if (!s) s = dsi_grow(c, (void **)&c->enc, &c->enc_cap, group * (size_t)pl->row_bytes);
    for (uint64_t r0 = 0; r0 < rows && !s; r0 += group) {
        size_t g = (size_t)(rows - r0 < group ? rows - r0 : group);
        s = dsi_gguf_read(c, c->raw, g * (size_t)srb, off + r0 * srb);
        for (size_t r = 0; r < g && !s; r++) {
            float *y = c->f32 + r * cols;
            (void)dsi_ggml_dequantize_row(type, c->raw + r * srb, y, cols);
            s = dsi_check_row(c, pl, y, cols, row0 + r0 + r);
            if (!s && !copy) dsi_dtype_encode_row(pl->dtype, y, c->enc + r * pl->row_bytes, cols);
        }
        if (!s) s = dsi_writer_put(&c->w, copy ? c->raw : c->enc, g * (size_t)pl->row_bytes);
        if (!s && c->p->progress && c->p->progress(c->p->progress_user, c->tensors_done, c->n_specs, c->w.pos))
            s = dsi_fail(c->e, DS_ERR_CANCELLED, "conversion cancelled");
    }
    return s;
}

/* kv_b (n_head * (nope + v), kv_lora) from attn_k_b and attn_v_b, head by
 * head: the nope rows are k_b[h] transposed (decoded, then encoded in the
 * planned type); the v rows are v_b[h]'s rows (copied when the type is the
 * same). For a file whose k_b holds the exact values of our Q8_0 or Q4_0
 * kv_b (bench/hf_to_gguf_q8.py), re-encoding them gives back the same
 * blocks: the scale of a block of dequantized values is the block's own
 * scale (normal F16 scales; see the note in tests/test_gguf.sh). */
static ds_status dsi_gguf_kv_b(dsi_conv *c, const dsi_plan *pl) {
    const ds_model_config *cf = &c->cfg;
    size_t nope = (size_t)cf->qk_nope_head_dim, vd = (size_t)cf->v_head_dim, kl = (size_t)cf->kv_lora_rank;
    const dsi_gguf_tensor *k = pl->gk, *v = pl->gv;
    size_t kbytes = kl * (size_t)k->row_bytes;
    float *tmp = dsi_calloc(&c->al, 2 * kl * nope, sizeof *tmp);
    uint8_t *kraw = dsi_malloc(&c->al, kbytes ? kbytes : 1);
    uint8_t *kenc = dsi_malloc(&c->al, nope * (size_t)pl->row_bytes);
    ds_status s = tmp && kraw && kenc ? DS_OK : dsi_fail(c->e, DS_ERR_NOMEM, "out of memory joining %s", pl->spec->name);
    for (size_t h = 0; h < (size_t)cf->n_heads && !s; h++) {
        float *src = tmp, *tr = tmp + kl * nope;
        s = dsi_gguf_read(c, kraw, kbytes, k->file_offset + h * kbytes);
        for (size_t r = 0; r < kl && !s; r++) (void)dsi_ggml_dequantize_row(k->type, kraw + r * k->row_bytes, src + r * nope, nope);
        for (size_t i = 0; i < nope && !s; i++) {
            for (size_t r = 0; r < kl; r++) tr[i * kl + r] = src[r * nope + i];
            s = dsi_check_row(c, pl, tr + i * kl, kl, h * (nope + vd) + i);
            if (!s) dsi_dtype_encode_row(pl->dtype, tr + i * kl, kenc + i * pl->row_bytes, kl);
        }
        if (!s) s = dsi_writer_put(&c->w, kenc, nope * (size_t)pl->row_bytes);
        if (!s) s = dsi_gguf_rows(c, pl, v->type, v->file_offset + h * vd * v->row_bytes, vd, h * (nope + vd) + nope);
    }
    if (tmp) sodium_memzero(tmp, 2 * kl * nope * sizeof *tmp);
    if (kraw) sodium_memzero(kraw, kbytes);
    if (kenc) sodium_memzero(kenc, nope * (size_t)pl->row_bytes);
    dsi_free(&c->al, tmp);
    dsi_free(&c->al, kraw);
    dsi_free(&c->al, kenc);
    return s;
}

/* Rows a safetensors source is read in: FP8 by 128 so each group shares
 * one row of block scales, others by DSI_ROW_GROUP_BYTES of F32. */
static size_t dsi_src_group(const dsi_plan *pl) {
    size_t group = pl->src->t->dtype == DSI_ST_F8_E4M3 ? 128 : DSI_ROW_GROUP_BYTES / ((size_t)pl->cols * 4);
    if (group == 0) group = 1;
    if (group > pl->rows) group = (size_t)pl->rows;
    return group;
}

/* Rows [r0, r0 + g) of pl's safetensors source (g at most dsi_src_group),
 * decoded to F32 into y (g x cols); values the planned type cannot hold are
 * refused. */
static ds_status dsi_src_rows(dsi_conv *c, const dsi_plan *pl, uint64_t r0, size_t g, float *y) {
    const dsi_st_tensor *t = pl->src->t;
    const dsi_shard *sh = &c->shards[pl->src->shard];
    size_t esz = dsi_st_dtype_size(t->dtype);
    size_t cols = (size_t)pl->cols;
    ds_status s = dsi_grow(c, (void **)&c->raw, &c->raw_cap, g * cols * esz);
    if (s) return s;
    float *scales = NULL;
    size_t n_bc = (cols + 127) / 128;
    if (pl->scale) {
        scales = dsi_calloc(&c->al, n_bc, sizeof *scales);
        if (!scales) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    }
    s = dsi_pread_all(c, sh, c->raw, g * cols * esz, sh->h->data_start + t->begin + r0 * cols * esz);
    if (!s && scales) {
        const dsi_shard *ssh = &c->shards[pl->scale->shard];
        const dsi_st_tensor *st = pl->scale->t;
        size_t ssz = dsi_st_dtype_size(st->dtype);
        uint8_t sraw[4 * 1024];
        uint64_t base = ssh->h->data_start + st->begin + (r0 / 128) * n_bc * ssz;
        for (size_t b0 = 0; !s && b0 < n_bc; b0 += sizeof sraw / ssz) {
            size_t nb = n_bc - b0 < sizeof sraw / ssz ? n_bc - b0 : sizeof sraw / ssz;
            s = dsi_pread_all(c, ssh, sraw, nb * ssz, base + b0 * ssz);
            for (size_t k = 0; !s && k < nb; k++) scales[b0 + k] = dsi_decode(st->dtype, sraw, k);
        }
    }
    /* decode to F32 and refuse values the formats cannot hold */
    for (size_t r = 0; r < g && !s; r++) {
        (void)dsi_st_decode_row(t->dtype, c->raw + r * cols * esz, y + r * cols, cols, scales);
        s = dsi_check_row(c, pl, y + r * cols, cols, r0 + r);
    }
    dsi_free(&c->al, scales);
    return s;
}

static ds_status dsi_progress(dsi_conv *c) {
    if (c->p->progress && c->p->progress(c->p->progress_user, c->tensors_done, c->n_specs, c->w.pos))
        return dsi_fail(c->e, DS_ERR_CANCELLED, "conversion cancelled");
    return DS_OK;
}

/* The whole matrix of a pruned plan into c->mat (rows x cols F32), pruned.
 * Counts what was done when count is set (the pass that writes). */
static ds_status dsi_load_pruned(dsi_conv *c, const dsi_plan *pl, bool count) {
    size_t cols = (size_t)pl->cols, n;
    if (pl->rows > SIZE_MAX / cols || (n = (size_t)pl->rows * cols) > SIZE_MAX / sizeof(float))
        return dsi_fail(c->e, DS_ERR_LIMIT, "tensor %s is too large to prune", pl->spec->name);
    ds_status s = dsi_grow(c, (void **)&c->mat, &c->mat_cap, n * sizeof(float));
    size_t group = dsi_src_group(pl);
    for (uint64_t r0 = 0; r0 < pl->rows && !s; r0 += group) {
        size_t g = (size_t)(pl->rows - r0 < group ? pl->rows - r0 : group);
        s = dsi_src_rows(c, pl, r0, g, c->mat + (size_t)r0 * cols);
    }
    if (s) return s;
    const ds_convert_params *p = c->p;
    if (p->prune_m) {
        dsi_prune_nm(c->mat, (size_t)pl->rows, cols, p->prune_n, p->prune_m);
    } else {
        uint64_t hist[2048];
        dsi_prune_smallest(c->mat, n, (uint64_t)floor(p->prune * (double)n), hist);
    }
    if (count) {
        uint64_t z = 0;
        for (size_t i = 0; i < n; i++) z += c->mat[i] == 0.0f;
        c->pruned_mats++;
        c->pruned_entries += n;
        c->pruned_zeros += z;
    }
    return DS_OK;
}

/* A pruned matrix: loaded whole, pruned, encoded row group by row group. */
static ds_status dsi_convert_pruned(dsi_conv *c, const dsi_plan *pl) {
    ds_status s = dsi_load_pruned(c, pl, true);
    size_t cols = (size_t)pl->cols;
    size_t group = DSI_ROW_GROUP_BYTES / (cols * 4);
    if (group == 0) group = 1;
    if (group > pl->rows) group = (size_t)pl->rows;
    if (!s) s = dsi_grow(c, (void **)&c->enc, &c->enc_cap, group * (size_t)pl->row_bytes);
    for (uint64_t r0 = 0; r0 < pl->rows && !s; r0 += group) {
        size_t g = (size_t)(pl->rows - r0 < group ? pl->rows - r0 : group);
        for (size_t r = 0; r < g; r++) {
            const float *x = c->mat + (size_t)(r0 + r) * cols;
            if (pl->dtype == DS_DTYPE_Q8_0_SP) dsi_quantize_row_q8_0_sp(x, c->enc + r * pl->row_bytes, cols, (size_t)pl->row_bytes);
            else dsi_dtype_encode_row(pl->dtype, x, c->enc + r * pl->row_bytes, cols);
        }
        s = dsi_writer_put(&c->w, c->enc, g * (size_t)pl->row_bytes);
        if (!s) s = dsi_progress(c);
    }
    if (!s && pl->dtype == DS_DTYPE_Q8_0_SP) {
        /* the tail guard: cols zero bytes, so that no mask can lead a kernel
         * outside the tensor (format.h) */
        if (!(s = dsi_grow(c, (void **)&c->enc, &c->enc_cap, cols))) {
            memset(c->enc, 0, cols);
            s = dsi_writer_put(&c->w, c->enc, cols);
        }
    }
    return s;
}

/* A pruned layer's router (mlp.gate.weight: the kept rows) or bias
 * (e_score_correction_bias: the kept values), read from the checkpoint's E
 * rows (values), in ascending expert order. */
static ds_status dsi_convert_router_kept(dsi_conv *c, const dsi_plan *pl) {
    const dsi_tensor_spec *sp = pl->spec;
    const dsi_st_tensor *t = pl->src->t;
    const dsi_shard *sh = &c->shards[pl->src->shard];
    const int32_t *kept = c->drop.kept + (size_t)sp->layer * (size_t)c->drop.n_experts;
    int nk = c->drop.n_kept[sp->layer], E = c->cfg.n_routed_experts;
    size_t esz = dsi_st_dtype_size(t->dtype);
    if (pl->scale || esz == 0)
        return dsi_fail(c->e, DS_ERR_UNSUPPORTED, "tensor %s: an FP8 router cannot lose rows (--drop-experts)",
                        sp->name);
    bool vec = sp->n_dims == 1;
    size_t cols = vec ? (size_t)E : (size_t)pl->cols;   /* values read at once */
    ds_status s = dsi_grow(c, (void **)&c->raw, &c->raw_cap, cols * esz);
    if (!s) s = dsi_grow(c, (void **)&c->f32, &c->f32_cap, cols * sizeof(float));
    if (!s) s = dsi_grow(c, (void **)&c->enc, &c->enc_cap, (size_t)pl->row_bytes);
    if (s) return s;
    if (vec) {
        s = dsi_pread_all(c, sh, c->raw, cols * esz, sh->h->data_start + t->begin);
        if (s) return s;
        (void)dsi_st_decode_row(t->dtype, c->raw, c->f32, cols, NULL);
        for (int i = 0; i < nk; i++) c->f32[i] = c->f32[kept[i]];   /* kept ascending: in place */
        if ((s = dsi_check_row(c, pl, c->f32, (size_t)nk, 0))) return s;
        dsi_dtype_encode_row(pl->dtype, c->f32, c->enc, (size_t)nk);
        return dsi_writer_put(&c->w, c->enc, (size_t)pl->row_bytes);
    }
    for (int i = 0; i < nk && !s; i++) {
        s = dsi_pread_all(c, sh, c->raw, cols * esz, sh->h->data_start + t->begin + (uint64_t)kept[i] * cols * esz);
        if (s) break;
        (void)dsi_st_decode_row(t->dtype, c->raw, c->f32, cols, NULL);
        if ((s = dsi_check_row(c, pl, c->f32, cols, (uint64_t)i))) break;
        dsi_dtype_encode_row(pl->dtype, c->f32, c->enc, cols);
        s = dsi_writer_put(&c->w, c->enc, (size_t)pl->row_bytes);
    }
    return s;
}

static ds_status dsi_convert_tensor(dsi_conv *c, const dsi_plan *pl) {
    if (pl->gk) return dsi_gguf_kv_b(c, pl);
    if (c->has_drop && pl->src && dsi_conv_src_dim(c, pl->spec, 0) != pl->spec->dims[0])
        return dsi_convert_router_kept(c, pl);
    if (pl->gt && pl->perm_hd) {
        /* our row h*hd + a*hd/2 + b is the file's row h*hd + 2b + a */
        uint64_t hd = pl->perm_hd, half = hd / 2;
        ds_status s = DS_OK;
        for (uint64_t r = 0; r < pl->rows && !s; r++) {
            uint64_t h = r / hd, a = r % hd / half, b = r % half;
            s = dsi_gguf_rows(c, pl, pl->gt->type, pl->goff + (h * hd + 2 * b + a) * pl->gt->row_bytes, 1, r);
        }
        return s;
    }
    if (pl->gt) return dsi_gguf_rows(c, pl, pl->gt->type, pl->goff, pl->rows, 0);
    if (pl->prune) return dsi_convert_pruned(c, pl);
    size_t cols = (size_t)pl->cols;
    size_t group = dsi_src_group(pl);
    ds_status s = dsi_grow(c, (void **)&c->f32, &c->f32_cap, group * cols * sizeof(float));
    if (!s) s = dsi_grow(c, (void **)&c->enc, &c->enc_cap, group * (size_t)pl->row_bytes);
    if (s) return s;
    for (uint64_t r0 = 0; r0 < pl->rows && !s; r0 += group) {
        size_t g = (size_t)(pl->rows - r0 < group ? pl->rows - r0 : group);
        if ((s = dsi_src_rows(c, pl, r0, g, c->f32))) break;
        for (size_t r = 0; r < g; r++) dsi_dtype_encode_row(pl->dtype, c->f32 + r * cols, c->enc + r * pl->row_bytes, cols);
        s = dsi_writer_put(&c->w, c->enc, g * (size_t)pl->row_bytes);
        if (!s) s = dsi_progress(c);
    }
    return s;
}

/* ==== Metadata =========================================================== */
DSI_FUNC void dsi_meta_record(dsi_buf *b, uint32_t tag, const void *data, size_t len) {
    dsi_buf_u32(b, tag);
    dsi_buf_u32(b, 0);
    dsi_buf_u64(b, len);
    dsi_buf_put(b, data, len);
    dsi_buf_pad(b, 8);
}

DSI_FUNC void dsi_meta_tensor(dsi_buf *t, const char *name, uint32_t dtype, uint32_t n_dims, const uint64_t *dims,
                              uint32_t segment, uint64_t offset, uint64_t nbytes) {
    size_t nl = strlen(name);
    dsi_buf_u32(t, (uint32_t)nl);
    dsi_buf_u32(t, dtype);
    dsi_buf_u32(t, n_dims);
    dsi_buf_u32(t, segment);
    for (uint32_t d = 0; d < 4; d++) dsi_buf_u64(t, d < n_dims ? dims[d] : 0);
    dsi_buf_u64(t, offset);
    dsi_buf_u64(t, nbytes);
    dsi_buf_u64(t, 0);
    dsi_buf_put(t, name, nl);
    dsi_buf_pad(t, 8);
}

DSI_FUNC void dsi_meta_segments(dsi_buf *meta, const dsi_segment *segs, size_t n, const dsi_alloc *al) {
    dsi_buf sg;
    dsi_buf_init(&sg, al);
    dsi_buf_u32(&sg, (uint32_t)n);
    dsi_buf_u32(&sg, 0);
    for (size_t i = 0; i < n; i++) {
        const dsi_segment *s = &segs[i];
        dsi_buf_u32(&sg, s->kind);
        dsi_buf_u32(&sg, (uint32_t)s->layer);
        dsi_buf_u32(&sg, (uint32_t)s->expert);
        dsi_buf_u32(&sg, s->n_chunks);
        dsi_buf_u64(&sg, s->offset);
        dsi_buf_u64(&sg, s->plain_bytes);
        dsi_buf_u64(&sg, s->stored_bytes);
    }
    if (sg.failed) meta->failed = true;
    else dsi_meta_record(meta, DSI_REC_SEGMENTS, sg.data, sg.len);
    dsi_buf_free(&sg);
}

static ds_status dsi_build_metadata(dsi_conv *c, dsi_buf *meta) {
    dsi_buf t;
    dsi_buf_init(&t, &c->al);
    dsi_buf_u32(&t, (uint32_t)c->n_specs);
    dsi_buf_u32(&t, 0);
    for (size_t i = 0; i < c->n_specs; i++) {
        const dsi_plan *pl = &c->plan[i];
        dsi_meta_tensor(&t, pl->spec->name, pl->dtype, (uint32_t)pl->spec->n_dims, pl->spec->dims, pl->segment,
                        pl->offset, pl->nbytes);
    }
    char src[256];
    static const char *qn[] = {"f32", "f16", "q8_0", "q4_0"};   /* indexed by ds_quant (checked) */
    int sl = snprintf(src, sizeof src, "{\"converter\": \"deepseek.h %s\", \"quant\": \"%s\"%s}", DS_VERSION_STRING,
                      c->p->quant == DS_QUANT_KEEP ? "keep" : qn[c->p->quant], c->gg ? ", \"from\": \"gguf\"" : "");
    dsi_meta_record(meta, DSI_REC_CONFIG_JSON, c->config_json, c->config_len);
    dsi_meta_record(meta, DSI_REC_TOKENIZER_JSON, c->tok_json, c->tok_len);
    if (c->tokcfg_json) dsi_meta_record(meta, DSI_REC_TOKENIZER_CONFIG, c->tokcfg_json, c->tokcfg_len);
    dsi_meta_record(meta, DSI_REC_TENSORS, t.data, t.len);
    dsi_meta_segments(meta, c->segs, c->n_segs, &c->al);
    dsi_meta_record(meta, DSI_REC_SOURCE, src, (size_t)sl);
    const ds_convert_params *p = c->p;
    if (p->prune > 0 || p->prune_m) {
        unsigned cls = p->prune_classes ? p->prune_classes : DS_PRUNE_CORE | DS_PRUNE_EXPERTS;
        char pr[640], st[24] = "null";
        if (p->prune_m) snprintf(st, sizeof st, "\"%d:%d\"", p->prune_n, p->prune_m);
        int pl = snprintf(pr, sizeof pr,
                          "{\"format\": \"deepseek.h prune 1\", \"ratio\": %.17g, \"structured\": %s, "
                          "\"classes\": [%s%s%s], \"storage\": \"%s\", \"matrices\": %llu, \"entries\": %llu, "
                          "\"zeroed\": %llu, \"sparse\": {\"q8_0_24\": %llu, \"q8_0_sp\": %llu}}",
                          p->prune_m ? 0.0 : p->prune, st, cls & DS_PRUNE_CORE ? "\"core\"" : "",
                          cls == (DS_PRUNE_CORE | DS_PRUNE_EXPERTS) ? ", " : "", cls & DS_PRUNE_EXPERTS ? "\"experts\"" : "",
                          p->prune_storage == DS_PRUNE_STORAGE_DENSE ? "dense" : "auto",
                          (unsigned long long)c->pruned_mats, (unsigned long long)c->pruned_entries,
                          (unsigned long long)c->pruned_zeros, (unsigned long long)c->sparse24,
                          (unsigned long long)c->sparse_sp);
        dsi_meta_record(meta, DSI_REC_PRUNE, pr, (size_t)pl);
    }
    if (c->has_drop) dsi_meta_record(meta, DSI_REC_EXPERTS, c->drop_json.data, c->drop_json.len);
    bool failed = t.failed || meta->failed;
    dsi_buf_free(&t);
    return failed ? dsi_fail(c->e, DS_ERR_NOMEM, "out of memory building metadata") : DS_OK;
}

/* ==== Output checks ====================================================== */
DSI_FUNC ds_status dsi_writer_check_early(dsi_writer *w, const char *out_path) {
    struct stat st;
    if (stat(out_path, &st) != 0) {
        if (errno == ENOENT) return DS_OK;
        return dsi_fail(w->e, DS_ERR_IO, "%s: cannot stat the output: %s", out_path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return dsi_fail(w->e, DS_ERR_EXISTS, "%s exists and is not a regular file; refusing to replace it", out_path);
    if (!w->overwrite)
        return dsi_fail(w->e, DS_ERR_EXISTS, "%s exists; refusing to overwrite it (%s replaces it)", out_path,
                        w->force_hint);
    return DS_OK;
}

DSI_FUNC ds_status dsi_writer_check_inputs(dsi_writer *w, const char *out_path) {
    struct stat st;
    if (stat(out_path, &st) != 0) return DS_OK;   /* no file there (a dangling link counts as none) */
    uint64_t dev = (uint64_t)st.st_dev, ino = (uint64_t)st.st_ino;
#if DSI_WINDOWS
    int fd = open(out_path, O_RDONLY | O_CLOEXEC);   /* st_ino is 0 there: the handle knows (port.h) */
    if (fd >= 0) {
        dsi_fd_identity(fd, &st, &dev, &ino);
        close(fd);
    }
#endif
    for (size_t i = 0; i < w->n_inputs; i++)
        if (w->inputs[i].id.dev == dev && w->inputs[i].id.ino == ino)
            return dsi_fail(w->e, DS_ERR_INVALID_ARG,
                            "the output %s is the input %s (the same file); refusing to overwrite an input, "
                            "with or without --force", out_path, w->inputs[i].path);
    return DS_OK;
}

/* Puts the finished temporary file at out_path. Without overwrite, link(2)
 * refuses to replace a file that appeared since the first check; where the
 * file system has no hard links, a last check and rename. */
static ds_status dsi_publish_output(dsi_writer *w, const char *out_path) {
    ds_status s = dsi_writer_check_inputs(w, out_path);
    if (s) return s;
    if (!w->overwrite) {
        if (link(w->tmp_path, out_path) == 0) {
            (void)unlink(w->tmp_path);
            return DS_OK;
        }
        if (errno == EEXIST)
            return dsi_fail(w->e, DS_ERR_EXISTS, "%s appeared while converting; refusing to overwrite it", out_path);
        struct stat st;
        if (lstat(out_path, &st) == 0)
            return dsi_fail(w->e, DS_ERR_EXISTS, "%s appeared while converting; refusing to overwrite it", out_path);
    }
    if (rename(w->tmp_path, out_path) != 0)
        return dsi_fail(w->e, DS_ERR_IO, "cannot rename %s to %s: %s", w->tmp_path, out_path, strerror(errno));
    return DS_OK;
}

/* The tokenizer, loaded by the runtime's own loader: what ds_model_open
 * would refuse is refused now, with its message, before anything is
 * written; and no token may have an id the model cannot embed. */
static ds_status dsi_check_tokenizer(dsi_conv *c) {
    ds_allocator a = {c->al.malloc_fn, c->al.realloc_fn, c->al.free_fn, c->al.user};
    ds_tokenizer *tok = NULL;
    ds_status s = ds_tokenizer_new(&tok, c->tok_json, c->tok_len, c->tokcfg_json, c->tokcfg_len, &a);
    if (s) {
        dsi_fail(c->e, s, "%s", ds_last_error());
        return dsi_prefix(c->e, "%s", c->hf_dir);
    }
    s = dsi_tokenizer_check_vocab(tok, c->cfg.vocab_size, c->e);
    ds_tokenizer_free(tok);
    return s ? dsi_prefix(c->e, "%s", c->hf_dir) : DS_OK;
}

/* A GGUF file in place of a checkpoint directory: its metadata becomes
 * the config.json, tokenizer.json and tokenizer_config.json the container
 * stores (and the runtime reads), checked as the directory's would be. */
static ds_status dsi_open_gguf(dsi_conv *c) {
    dsi_file_id id;
    c->gg_fd = dsi_open_regular(c->gg_path, &id, c->e);
    if (c->gg_fd < 0) return dsi_prefix(c->e, "%s", c->gg_path);
    ds_status s = dsi_writer_note_input(&c->w, &id, c->gg_path);
    if (!s) s = dsi_gguf_open(c->gg_path, c->gg_fd, id.size, &c->al, &c->gg, c->e);
    if (s) return s;
    c->gg_used = dsi_calloc(&c->al, c->gg->n_tensors ? (size_t)c->gg->n_tensors : 1, sizeof *c->gg_used);
    if (!c->gg_used) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    if ((s = dsi_gguf_config_json(c->gg, &c->al, &c->config_json, &c->config_len, c->e)))
        return dsi_prefix(c->e, "%s", c->gg_path);
    if ((s = dsi_config_parse(c->config_json, c->config_len, &c->al, &c->cfg, c->e)))
        return dsi_prefix(c->e, "%s: the config made from its metadata", c->gg_path);
    if ((s = dsi_gguf_tokenizer_json(c->gg, &c->al, &c->tok_json, &c->tok_len, &c->tokcfg_json, &c->tokcfg_len, c->e)))
        return dsi_prefix(c->e, "%s", c->gg_path);
    return dsi_check_tokenizer(c);
}

/* ==== Driver ============================================================= */
DSI_FUNC ds_status dsi_writer_check_secret(int encrypt, const uint8_t *key, size_t key_len, const char *passphrase,
                                           const char *fn, dsi_err *e) {
    if (encrypt ? (!key == !passphrase) : (key || passphrase))
        return dsi_fail(e, DS_ERR_INVALID_ARG,
                        encrypt ? "%s: encryption needs exactly one of a key or a passphrase"
                                : "%s: a key or passphrase was given with encrypt = 0",
                        fn);
    if (key && key_len != DS_KEY_BYTES)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "%s: key must be %d bytes, got %zu", fn, DS_KEY_BYTES, key_len);
    return DS_OK;
}

DSI_FUNC ds_status dsi_writer_keys(dsi_writer *w, bool encrypt, const uint8_t *key, const char *passphrase,
                                   size_t passphrase_len, uint64_t argon_ops, uint64_t argon_mem) {
    ds_status s = dsi_secure_alloc(&w->keybuf, sizeof(dsi_keys), 0, w->e);
    if (s) return s;
    w->keys = (dsi_keys *)w->keybuf.ptr;
    dsi_header *h = &w->hdr;
    randombytes_buf(h->salt, sizeof h->salt);
    if (!encrypt) {
        h->cipher = DS_CIPHER_NONE;
        h->kdf = DS_KDF_NONE;
        return dsi_keys_derive(w->keys, DS_CIPHER_NONE, NULL, 0, h->salt, w->e);
    }
    h->cipher = DS_CIPHER_AES256GCM;
    uint8_t master[32];
    if (passphrase) {
        h->kdf = DS_KDF_ARGON2ID;
        h->argon_ops = argon_ops ? argon_ops : crypto_pwhash_OPSLIMIT_INTERACTIVE;
        h->argon_mem = argon_mem ? argon_mem : crypto_pwhash_MEMLIMIT_INTERACTIVE;
        randombytes_buf(h->argon_salt, sizeof h->argon_salt);
        s = dsi_passphrase_key(master, passphrase, passphrase_len, h->argon_salt, h->argon_ops, h->argon_mem, w->e);
    } else {
        h->kdf = DS_KDF_RAW_KEY;
        memcpy(master, key, 32);
    }
    if (!s) s = dsi_keys_derive(w->keys, DS_CIPHER_AES256GCM, master, 32, h->salt, w->e);
    sodium_memzero(master, sizeof master);
    if (!s) memcpy(h->key_check, w->keys->check, 32);
    return s;
}

DSI_FUNC ds_status dsi_writer_open(dsi_writer *w, const char *out_path) {
    size_t ol = strlen(out_path);
    w->tmp_path = dsi_malloc(w->al, ol + 16);
    if (!w->tmp_path) return dsi_fail(w->e, DS_ERR_NOMEM, "out of memory");
    snprintf(w->tmp_path, ol + 16, "%s.tmp.XXXXXX", out_path);
    w->fd = mkstemp(w->tmp_path);
    if (w->fd < 0) {
        ds_status s = dsi_fail(w->e, DS_ERR_IO, "%s: cannot create a temporary file beside it: %s", out_path,
                               strerror(errno));
        dsi_free(w->al, w->tmp_path);
        w->tmp_path = NULL;
        return s;
    }
#if DSI_WINDOWS
    (void)_setmode(w->fd, _O_BINARY);   /* never text mode, whatever the CRT's mkstemp chose */
#endif
    (void)fchmod(w->fd, 0644);
    ds_status s = dsi_secure_alloc(&w->plainbuf, w->chunk_bytes, 0, w->e);
    if (s) return s;
    w->chunk_plain = w->plainbuf.ptr;
    w->chunk_out = dsi_malloc(w->al, w->chunk_bytes);
    if (!w->chunk_out) return dsi_fail(w->e, DS_ERR_NOMEM, "out of memory");
    static const uint8_t zero_page[DSI_HEADER_AREA];   /* header placeholder, written last */
    return dsi_write_all(w, zero_page, sizeof zero_page);
}

DSI_FUNC ds_status dsi_writer_finish(dsi_writer *w, const dsi_buf *meta, const char *out_path) {
    /* the metadata at the tail, bound to the final header */
    ds_status s = dsi_pad_file(w, DSI_SEG_ALIGN);
    if (s) return s;
    dsi_header *h = &w->hdr;
    h->version = DS_FORMAT_VERSION;
    h->chunk_bytes = w->chunk_bytes;
    h->meta_offset = w->pos;
    h->meta_plain_bytes = meta->len;
    uint32_t nch = 0;
    dsi_stored_bytes(meta->len, w->chunk_bytes, &h->meta_bytes, &nch);
    h->file_bytes = h->meta_offset + h->meta_bytes;
    uint8_t raw[DSI_HEADER_BYTES];
    dsi_header_write(h, w->keys->header, raw);
    dsi_chunk_ad ad = {DSI_META_SEGMENT, 0, -1, -1, 0, meta->len, 0, h->raw, DSI_HEADER_BYTES};
    s = dsi_seg_begin_ad(w, &ad);
    if (!s) s = dsi_writer_put(w, meta->data, meta->len);
    if (!s) s = dsi_writer_seg_end(w, nch);
    if (s) return s;
    if (w->pos != h->file_bytes) return dsi_fail(w->e, DS_ERR_INTERNAL, "file size mismatch after writing");

    /* the header, flush, rename into place */
    uint8_t page[DSI_HEADER_AREA] = {0};
    memcpy(page, raw, sizeof raw);
    if (pwrite(w->fd, page, sizeof page, 0) != (ssize_t)sizeof page)
        return dsi_fail(w->e, DS_ERR_IO, "%s: cannot write the header: %s", w->tmp_path, strerror(errno));
    if (fsync(w->fd) != 0) return dsi_fail(w->e, DS_ERR_IO, "%s: fsync failed: %s", w->tmp_path, strerror(errno));
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) return dsi_fail(w->e, DS_ERR_IO, "%s: close failed: %s", w->tmp_path, strerror(errno));
    if ((s = dsi_publish_output(w, out_path))) return s;
    dsi_free(w->al, w->tmp_path);
    w->tmp_path = NULL;
    return DS_OK;
}

DSI_FUNC void dsi_writer_free(dsi_writer *w) {
    if (w->fd >= 0) close(w->fd);
    if (w->tmp_path) {
        unlink(w->tmp_path);   /* nothing is left behind on failure */
        dsi_free(w->al, w->tmp_path);
    }
    for (size_t i = 0; i < w->n_inputs; i++) dsi_free(w->al, w->inputs[i].path);
    dsi_free(w->al, w->inputs);
    dsi_free(w->al, w->chunk_out);
    dsi_secure_free(&w->plainbuf);
    dsi_secure_free(&w->keybuf);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

static ds_status dsi_convert_run(dsi_conv *c, const char *out_path) {
    const ds_convert_params *p = c->p;
    ds_status s;
    /* 0. the output: refused now rather than after the work */
    if ((s = dsi_writer_check_early(&c->w, out_path))) return s;
    /* 1. inputs */
    if (c->gg_path) {
        if ((s = dsi_open_gguf(c))) return s;
        goto planned_inputs;
    }
    if ((s = dsi_read_text(c, "config.json", &c->config_json, &c->config_len, NULL))) return s;
    if ((s = dsi_config_parse(c->config_json, c->config_len, &c->al, &c->cfg, c->e)))
        return dsi_prefix(c->e, "config.json");
    if ((s = dsi_read_text(c, "tokenizer.json", &c->tok_json, &c->tok_len, NULL))) return s;
    {
        /* syntax first, so a broken file is named as such */
        dsi_json_doc *doc = NULL;
        if ((s = dsi_json_parse(c->tok_json, c->tok_len, &c->al, &doc, c->e))) return dsi_prefix(c->e, "tokenizer.json");
        dsi_json_free(doc);
    }
    bool missing;
    if ((s = dsi_read_text(c, "tokenizer_config.json", &c->tokcfg_json, &c->tokcfg_len, &missing))) return s;
    if (c->tokcfg_json) {
        dsi_json_doc *doc = NULL;
        if ((s = dsi_json_parse(c->tokcfg_json, c->tokcfg_len, &c->al, &doc, c->e)))
            return dsi_prefix(c->e, "tokenizer_config.json");
        dsi_json_free(doc);
    }
    if ((s = dsi_check_tokenizer(c))) return s;
    if ((s = dsi_conv_expert_drop(c))) return s;
    if ((s = dsi_open_checkpoint(c))) return s;
planned_inputs:
    if ((s = dsi_writer_check_inputs(&c->w, out_path))) return s;
    if ((s = dsi_make_plan(c))) return s;
    if ((s = dsi_writer_keys(&c->w, p->encrypt, p->key, p->passphrase, p->passphrase_len, p->argon_opslimit,
                             p->argon_memlimit)))
        return s;

    /* 2. output: a temporary file beside the destination */
    if ((s = dsi_writer_open(&c->w, out_path))) return s;

    /* 3. segments, in plan order */
    size_t ti = 0;
    for (uint32_t si = 0; si < c->n_segs; si++) {
        dsi_segment *sg = &c->segs[si];
        if ((s = dsi_writer_seg_begin(&c->w, si, sg))) return s;
        for (; ti < c->n_specs && c->plan[ti].segment == si; ti++) {
            const dsi_plan *pl = &c->plan[ti];
            if ((s = dsi_writer_pad_to(&c->w, pl->offset))) return s;
            if ((s = dsi_convert_tensor(c, pl))) return s;
            c->tensors_done++;
        }
        if ((s = dsi_writer_seg_end(&c->w, sg->n_chunks))) return s;
    }
    if (p->progress && p->progress(p->progress_user, c->n_specs, c->n_specs, c->w.pos))
        return dsi_fail(c->e, DS_ERR_CANCELLED, "conversion cancelled");

    /* 4. metadata at the tail, the header, the rename into place */
    dsi_buf meta;
    dsi_buf_init(&meta, &c->al);
    s = dsi_build_metadata(c, &meta);
    if (!s) s = dsi_writer_finish(&c->w, &meta, out_path);
    dsi_buf_free(&meta);
    return s;
}

static void dsi_conv_free(dsi_conv *c) {
    dsi_writer_free(&c->w);
    for (size_t i = 0; i < c->n_shards; i++) {
        if (c->shards[i].fd >= 0) close(c->shards[i].fd);
        dsi_st_free(c->shards[i].h);
        dsi_free(&c->al, c->shards[i].path);
    }
    dsi_free(&c->al, c->shards);
    if (c->gg_fd >= 0) close(c->gg_fd);
    dsi_gguf_free(c->gg);
    dsi_free(&c->al, c->gg_used);
    dsi_free(&c->al, c->gg_path);
    dsi_free(&c->al, c->srcs);
    dsi_free(&c->al, c->specs);
    dsi_free(&c->al, c->plan);
    dsi_free(&c->al, c->segs);
    dsi_free(&c->al, c->config_json);
    dsi_free(&c->al, c->tok_json);
    dsi_free(&c->al, c->tokcfg_json);
    /* row buffers held plaintext weights */
    if (c->raw) sodium_memzero(c->raw, c->raw_cap);
    if (c->f32) sodium_memzero(c->f32, c->f32_cap);
    if (c->enc) sodium_memzero(c->enc, c->enc_cap);
    if (c->mat) sodium_memzero(c->mat, c->mat_cap);
    dsi_free(&c->al, c->mat);
    dsi_free(&c->al, c->raw);
    dsi_free(&c->al, c->f32);
    dsi_free(&c->al, c->enc);
    dsi_free(&c->al, c->hf_dir);
    dsi_drop_free(&c->drop, &c->al);
    if (c->has_drop) dsi_buf_free(&c->drop_json);
}

/* The pruning options (ds_convert_params.prune ...), checked before any work. */
static ds_status dsi_prune_check(const ds_convert_params *p, bool gguf, const char *hf_dir, dsi_err *e) {
    if (!(p->prune >= 0.0 && p->prune < 1.0))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "ds_convert: prune is %g; want a fraction in [0, 1)", p->prune);
    if (p->prune_n || p->prune_m) {
        int m = p->prune_m;
        if (!(m == 2 || m == 4 || m == 8 || m == 16 || m == 32) || p->prune_n <= 0 || p->prune_n >= m)
            return dsi_fail(e, DS_ERR_INVALID_ARG,
                            "ds_convert: structured pruning %d:%d; want N:M with M one of 2, 4, 8, 16, 32 and "
                            "0 < N < M (e.g. 2:4)", p->prune_n, p->prune_m);
        if (p->prune > 0)
            return dsi_fail(e, DS_ERR_INVALID_ARG, "ds_convert: prune (%g) and structured pruning (%d:%d) are "
                            "exclusive: choose one", p->prune, p->prune_n, p->prune_m);
    }
    if (p->prune_classes & ~(DS_PRUNE_CORE | DS_PRUNE_EXPERTS))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "ds_convert: prune_classes 0x%x has bits other than DS_PRUNE_CORE "
                        "(1) and DS_PRUNE_EXPERTS (2)", p->prune_classes);
    if (p->prune_storage != DS_PRUNE_STORAGE_AUTO && p->prune_storage != DS_PRUNE_STORAGE_DENSE)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "ds_convert: prune_storage is %d; want 0 (DS_PRUNE_STORAGE_AUTO) "
                        "or 1 (DS_PRUNE_STORAGE_DENSE)", p->prune_storage);
    if (gguf && (p->prune > 0 || p->prune_m))
        return dsi_fail(e, DS_ERR_INVALID_ARG, "ds_convert: pruning reads a Hugging Face checkpoint's values; %s "
                        "is a GGUF file", hf_dir);
    return DS_OK;
}

DS_API ds_status ds_convert(const char *hf_dir, const char *out_path, const ds_convert_params *params) {
    dsi_err e = {0};
    ds_convert_params defaults = ds_convert_default_params();
    const ds_convert_params *p = params ? params : &defaults;
    if (!hf_dir || !out_path) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_convert: hf_dir and out_path must not be NULL");
        return dsi_publish(&e);
    }
    /* zero is not the default of quant (F32, not Q8_0) or encrypt (a
     * readable file), so a struct not from ds_convert_default_params() is
     * refused rather than taken to mean either */
    if (dsi_params_check_magic(p->magic, DSI_CONVERT_PARAMS_MAGIC, "ds_convert", "ds_convert_params", "ds_convert",
                               &e))
        return dsi_publish(&e);
    {
        /* the recipe: quant, and per class (DS_QUANT_INHERIT = quant) */
        const ds_quant qs[4] = {p->quant, p->quant_experts, p->quant_core, p->quant_router};
        static const char *const qn[4] = {"quant", "quant_experts", "quant_core", "quant_router"};
        for (int i = 0; i < 4; i++)
            if (!((int)qs[i] >= DS_QUANT_F32 && (int)qs[i] <= DS_QUANT_Q4_0) && !(i && qs[i] == DS_QUANT_INHERIT) &&
                qs[i] != DS_QUANT_KEEP) {
                dsi_fail(&e, DS_ERR_INVALID_ARG,
                         "ds_convert: %s is %d; want 0 (DS_QUANT_F32), 1 (DS_QUANT_F16), 2 (DS_QUANT_Q8_0), "
                         "3 (DS_QUANT_Q4_0)%s or -2 (DS_QUANT_KEEP, GGUF input)",
                         qn[i], (int)qs[i], i ? ", -1 (DS_QUANT_INHERIT)" : "");
                return dsi_publish(&e);
            }
    }
    /* A GGUF file (by its magic) rather than a checkpoint directory. */
    bool gguf = false;
    {
        struct stat st;
        if (stat(hf_dir, &st) == 0 && S_ISREG(st.st_mode)) {
            char mg[4] = {0};
            int fd = open(hf_dir, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
            gguf = fd >= 0 && read(fd, mg, 4) == 4 && memcmp(mg, "GGUF", 4) == 0;
            if (fd >= 0) close(fd);
            if (!gguf) {
                dsi_fail(&e, DS_ERR_INVALID_ARG,
                         "ds_convert: %s is a file but not a GGUF file (no \"GGUF\" magic); give a Hugging Face "
                         "checkpoint directory or a GGUF file", hf_dir);
                return dsi_publish(&e);
            }
        }
        const ds_quant qs[4] = {p->quant, p->quant_experts, p->quant_core, p->quant_router};
        for (int i = 0; i < 4 && !gguf; i++)
            if (qs[i] == DS_QUANT_KEEP) {
                dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_convert: DS_QUANT_KEEP is for GGUF input; %s is a directory "
                         "(a Hugging Face checkpoint): choose F32, F16, Q8_0 or Q4_0", hf_dir);
                return dsi_publish(&e);
            }
    }
    if (!(p->drop_experts >= 0.0 && p->drop_experts < 1.0)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_convert: drop_experts %g is outside [0, 1)", p->drop_experts);
        return dsi_publish(&e);
    }
    if (p->drop_experts > 0 && !p->drop_calib_path) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_convert: drop_experts %g needs a calibration file (drop_calib_path, "
                 "--calib; ds calibrate makes one)", p->drop_experts);
        return dsi_publish(&e);
    }
    if (gguf && p->drop_calib_path) {
        dsi_fail(&e, DS_ERR_UNSUPPORTED, "ds_convert: dropping experts (drop_experts, --drop-experts) needs a "
                 "Hugging Face checkpoint directory, not a GGUF file");
        return dsi_publish(&e);
    }
    if (dsi_writer_check_secret(p->encrypt, p->key, p->key_len, p->passphrase, "ds_convert", &e))
        return dsi_publish(&e);
    if (dsi_prune_check(p, gguf, hf_dir, &e)) return dsi_publish(&e);
    if (p->passphrase && (p->argon_opslimit > DS_MAX_ARGON_OPS || p->argon_memlimit > DS_MAX_ARGON_MEM)) {
        /* the runtime refuses such a file before its KDF: do not write one */
        if (p->argon_opslimit > DS_MAX_ARGON_OPS)
            dsi_fail(&e, DS_ERR_LIMIT, "ds_convert: argon_opslimit %llu exceeds DS_MAX_ARGON_OPS (%u)",
                     (unsigned long long)p->argon_opslimit, (unsigned)DS_MAX_ARGON_OPS);
        else
            dsi_fail(&e, DS_ERR_LIMIT, "ds_convert: argon_memlimit %llu bytes exceeds DS_MAX_ARGON_MEM (%llu bytes)",
                     (unsigned long long)p->argon_memlimit, (unsigned long long)DS_MAX_ARGON_MEM);
        return dsi_publish(&e);
    }
    uint32_t chunk = p->chunk_bytes ? p->chunk_bytes : DSI_DEFAULT_CHUNK;
    if (chunk < DSI_MIN_CHUNK || chunk > DSI_MAX_CHUNK || chunk % 64) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_convert: chunk size %u must be a multiple of 64 in [%u, %u]", chunk,
                 DSI_MIN_CHUNK, DSI_MAX_CHUNK);
        return dsi_publish(&e);
    }
    dsi_conv c;
    memset(&c, 0, sizeof c);
    c.gg_fd = -1;
    c.p = p;
    c.e = &e;
    dsi_writer_init(&c.w, &c.al, &e, chunk, p->overwrite, "ds convert --force, or ds_convert_params.overwrite,");
    if (dsi_alloc_init(&c.al, &p->allocator, &e) || dsi_crypto_init(&e)) return dsi_publish(&e);
    c.hf_dir = dsi_strndup(&c.al, hf_dir, strlen(hf_dir));
    if (gguf && c.hf_dir) c.gg_path = dsi_strndup(&c.al, hf_dir, strlen(hf_dir));
    ds_status s = c.hf_dir && (!gguf || c.gg_path) ? dsi_convert_run(&c, out_path)
                                                   : dsi_fail(&e, DS_ERR_NOMEM, "out of memory");
    dsi_conv_free(&c);
    return s ? dsi_publish(&e) : DS_OK;
}
