/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * lora_convert.c — LoRA adapters on disk: a PEFT adapter directory into a
 * sealed adapter container (ds_convert_lora), and an adapter baked into a
 * copy of its base (ds_lora_merge).
 *
 * Both write through convert.c's container writer (dsi_writer: output
 * checks, keys, a temporary file renamed into place, chunk sealing), so an
 * adapter is a container by the same rules as a model, with its own magic
 * and records (format.h, "Adapter containers"). What an adapter may change
 * comes from the architecture table (dsi_arch_lora_targets): every matrix,
 * its module path, its PEFT name and its shape. Nothing is written unless
 * every check passes.
 */
#include "engine.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

DS_API ds_convert_lora_params ds_convert_lora_default_params(void) {
    ds_convert_lora_params p;
    memset(&p, 0, sizeof p);
    p.encrypt = 1;
    p.dtype = DS_LORA_F32;
    p.magic = DSI_CONVERT_LORA_PARAMS_MAGIC;
    return p;
}

/* ==== Shared checks ====================================================== */
static ds_status dsl_check_params(const ds_convert_lora_params *p, const char *fn, dsi_err *e) {
    if (dsi_params_check_magic(p->magic, DSI_CONVERT_LORA_PARAMS_MAGIC, fn, "ds_convert_lora_params",
                               "ds_convert_lora", e))
        return e->status;
    if (dsi_writer_check_secret(p->encrypt, p->key, p->key_len, p->passphrase, fn, e)) return e->status;
    if (p->dtype != DS_LORA_F32 && p->dtype != DS_LORA_F16)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "%s: dtype is %d; want 0 (DS_LORA_F32) or 1 (DS_LORA_F16)", fn,
                        (int)p->dtype);
    return DS_OK;
}

static void dsl_hex(const uint8_t *id, char out[2 * DS_MODEL_ID_BYTES + 1]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < DS_MODEL_ID_BYTES; i++) {
        out[2 * i] = hx[id[i] >> 4];
        out[2 * i + 1] = hx[id[i] & 15];
    }
    out[2 * DS_MODEL_ID_BYTES] = 0;
}

/* Notes the file behind an open descriptor as an input of w. */
static ds_status dsl_note_fd(dsi_writer *w, int fd, const char *path) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return DS_OK;   /* nothing to compare against */
    dsi_file_id id;
    memset(&id, 0, sizeof id);
    dsi_fd_identity(fd, &st, &id.dev, &id.ino);
    id.size = (uint64_t)st.st_size;
    return dsi_writer_note_input(w, &id, path ? path : "?");
}

/* ==== Converting a PEFT adapter ========================================== */
/* The tensors found for one target (a module the architecture has). */
typedef struct dsl_pick {
    const dsi_st_tensor *a, *b;
    bool transposed;          /* fan_in_fan_out tensors stored (in, r) / (r, out) */
} dsl_pick;

/* One output pair, in the container's order. */
typedef struct dsl_item {
    int layer, expert, ord;   /* ord: the target's index (non-routed) or its part (routed) */
    size_t t;                 /* index into targets */
} dsl_item;

#define DSL_MAX_MODS 16

typedef struct dsl_conv {
    const dsi_alloc *al;
    dsi_err *e;
    const ds_convert_lora_params *p;
    const ds_model *base;
    const char *dir;
    dsi_writer w;
    /* adapter_config.json */
    char *cfg_text;
    size_t cfg_len;
    dsi_json_doc *cfg_doc;
    int r;
    double alpha;
    bool rslora, fifo, any_target;
    const char *base_name;
    size_t base_name_len;
    /* the architecture's targets and PEFT module names */
    dsi_lora_target *T;
    size_t nT;
    const dsi_lora_target **by_path;   /* T sorted by path */
    const char *mods[DSL_MAX_MODS];
    bool wanted[DSL_MAX_MODS], used[DSL_MAX_MODS];
    int n_mods;
    dsl_pick *pick;
    /* adapter_model.safetensors */
    char *st_path;
    int st_fd;
    dsi_st_header *st;
    /* the layout */
    dsl_item *items;
    size_t n_items;
    dsi_segment *segs;
    size_t n_segs;
    uint32_t *seg_of;         /* per item: segment, offsets of A and B */
    uint64_t *off_a, *off_b;
    uint64_t n_params;
    /* scratch (plaintext weights: wiped) */
    uint8_t *raw, *enc;
    float *f32, *tr;
    size_t raw_cap, enc_cap, f32_cap, tr_cap;
} dsl_conv;

static int dsl_mod_index(const dsl_conv *c, const char *name, size_t len) {
    for (int i = 0; i < c->n_mods; i++)
        if (strlen(c->mods[i]) == len && memcmp(c->mods[i], name, len) == 0) return i;
    return -1;
}

/* "q_proj, kv_a_proj_with_mqa, ..." */
static void dsl_mod_list(const dsl_conv *c, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < c->n_mods && o < cap; i++) {
        int w = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", c->mods[i]);
        if (w < 0) break;
        o += (size_t)w;
    }
}

static const char *dsl_arch_name(const ds_model_config *cfg) {
    switch (cfg->arch) {
    case DS_ARCH_DEEPSEEK_V2: return "DeepSeek-V2 (MLA)";
    case DS_ARCH_DEEPSEEK_V3: return "DeepSeek-V3 (MLA)";
    case DS_ARCH_DEEPSEEK_MOE: return "DeepSeek-MoE (multi-head attention)";
    default: return "this architecture";
    }
}

/* DS_ERR_ADAPTER for a module name the model does not have. */
static ds_status dsl_unknown_module(dsl_conv *c, const char *name, size_t len) {
    char list[256];
    dsl_mod_list(c, list, sizeof list);
    bool mla = dsi_arch_attention_mla(&c->base->cfg);
    bool qlora = mla && c->base->cfg.q_lora_rank > 0;
    return dsi_fail(c->e, DS_ERR_ADAPTER,
                    "%s/adapter_config.json: target module '%.*s' does not exist in %s; its modules are: %s%s%s",
                    c->dir, (int)len, name, dsl_arch_name(&c->base->cfg), list,
                    mla ? ". MLA has no k_proj or v_proj: keys and values come from kv_b_proj (after kv_a_proj_with_mqa)"
                        : "",
                    qlora ? "; its queries go through q_a_proj and q_b_proj (no q_proj)" : "");
}

static int dsl_cmp_path(const void *x, const void *y) {
    return strcmp((*(const dsi_lora_target *const *)x)->path, (*(const dsi_lora_target *const *)y)->path);
}

static long dsl_find_path(const dsl_conv *c, const char *path) {
    size_t lo = 0, hi = c->nT;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(c->by_path[mid]->path, path);
        if (!d) return (long)(c->by_path[mid] - c->T);
        if (d < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static ds_status dsl_targets(dsl_conv *c) {
    ds_status s = dsi_arch_lora_targets(&c->base->cfg, c->al, &c->T, &c->nT, c->e);
    if (s) return dsi_prefix(c->e, "the base model");
    c->by_path = dsi_calloc(c->al, c->nT ? c->nT : 1, sizeof *c->by_path);
    c->pick = dsi_calloc(c->al, c->nT ? c->nT : 1, sizeof *c->pick);
    if (!c->by_path || !c->pick) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory for %zu LoRA targets", c->nT);
    for (size_t i = 0; i < c->nT; i++) {
        c->by_path[i] = &c->T[i];
        if (dsl_mod_index(c, c->T[i].module, strlen(c->T[i].module)) < 0 && c->n_mods < DSL_MAX_MODS)
            c->mods[c->n_mods++] = c->T[i].module;
    }
    qsort(c->by_path, c->nT, sizeof *c->by_path, dsl_cmp_path);
    return DS_OK;
}

/* adapter_config.json: what PEFT wrote and what we can apply. */
static ds_status dsl_read_config(dsl_conv *c) {
    const char *F = "adapter_config.json";
    ds_status s = dsi_writer_read_text(&c->w, c->dir, F, &c->cfg_text, &c->cfg_len, NULL);
    if (s) return s;
    if ((s = dsi_json_parse(c->cfg_text, c->cfg_len, c->al, &c->cfg_doc, c->e)))
        return dsi_prefix(c->e, "%s/%s", c->dir, F);
    const dsi_json *root = dsi_json_root(c->cfg_doc);
    if (!root || root->type != DSI_JSON_OBJECT)
        return dsi_fail(c->e, DS_ERR_JSON, "%s/%s: not a JSON object", c->dir, F);
    const char *str;
    size_t len;
    int g = dsi_json_get_str(root, "peft_type", &str, &len);
    if (g < 0 || (g == 1 && !(len == 4 && memcmp(str, "LORA", 4) == 0)))
        return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: peft_type is %s%.*s%s; only LORA adapters are supported", c->dir,
                        F, g == 1 ? "\"" : "", g == 1 ? (int)len : 11, g == 1 ? str : "not a string", g == 1 ? "\"" : "");
    if (g == 0) return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: no peft_type (want \"LORA\")", c->dir, F);
    int64_t r = 0;
    g = dsi_json_get_int(root, "r", &r);
    if (g != 1 || r < 1 || r > DSI_LORA_MAX_RANK)
        return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: r must be an integer in [1, %d]%s", c->dir, F,
                        DSI_LORA_MAX_RANK, g == 0 ? " (it is missing)" : "");
    c->r = (int)r;
    g = dsi_json_get_num(root, "lora_alpha", &c->alpha);
    if (g != 1 || !(c->alpha > 0) || c->alpha > 1e6)
        return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: lora_alpha must be a positive number up to 1e6%s", c->dir, F,
                        g == 0 ? " (it is missing)" : "");
    const dsi_json *tp = dsi_json_get(root, "target_parameters");
    if (tp && tp->type != DSI_JSON_NULL && !(tp->type == DSI_JSON_ARRAY && tp->n == 0))
        return dsi_fail(c->e, DS_ERR_ADAPTER,
                        "%s/%s: target_parameters is set: PEFT adapted the routed experts fused into 3-D "
                        "parameters (transformers 5), a layout not supported; train with per-module experts "
                        "(target_modules gate_proj, up_proj, down_proj on transformers 4 modules)", c->dir, F);
    if (dsi_json_get_bool(root, "use_rslora", &c->rslora) < 0 ||
        dsi_json_get_bool(root, "fan_in_fan_out", &c->fifo) < 0)
        return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: use_rslora and fan_in_fan_out must be true or false", c->dir, F);
    bool dora = false;
    if (dsi_json_get_bool(root, "use_dora", &dora) < 0 || dora)
        return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: use_dora: DoRA adapters are not supported", c->dir, F);
    g = dsi_json_get_str(root, "bias", &str, &len);
    if (g < 0 || (g == 1 && !(len == 4 && memcmp(str, "none", 4) == 0)))
        return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: bias is \"%.*s\"; only \"none\" is supported (trained biases "
                        "cannot be applied)", c->dir, F, g == 1 ? (int)len : 1, g == 1 ? str : "?");
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    for (int i = 0; i < 2; i++) {
        const dsi_json *pt = dsi_json_get(root, patterns[i]);
        if (pt && pt->type != DSI_JSON_NULL && !(pt->type == DSI_JSON_OBJECT && pt->n == 0))
            return dsi_fail(c->e, DS_ERR_ADAPTER,
                            "%s/%s: %s is set; adapters with a rank or alpha per module are not supported (one r and "
                            "one lora_alpha for every module)", c->dir, F, patterns[i]);
    }
    const dsi_json *mts = dsi_json_get(root, "modules_to_save");
    if (mts && mts->type != DSI_JSON_NULL && !(mts->type == DSI_JSON_ARRAY && mts->n == 0))
        return dsi_fail(c->e, DS_ERR_ADAPTER,
                        "%s/%s: modules_to_save is set; adapters that carry whole modules are not supported", c->dir, F);
    if (dsi_json_get_str(root, "base_model_name_or_path", &c->base_name, &c->base_name_len) != 1) {
        c->base_name = "";
        c->base_name_len = 0;
    }
    /* target_modules: a list of names, one name, or (a string that is not a
     * name: PEFT's regular expression or "all-linear") whatever modules the
     * tensors adapt */
    const dsi_json *tm = dsi_json_get(root, "target_modules");
    if (!tm || (tm->type != DSI_JSON_ARRAY && tm->type != DSI_JSON_STRING))
        return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: target_modules must be a list of module names or a string",
                        c->dir, F);
    if (tm->type == DSI_JSON_STRING) {
        bool plain = tm->n > 0;
        for (uint32_t i = 0; i < tm->n; i++) {
            char ch = tm->str[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
                plain = false;
        }
        if (!plain) {
            c->any_target = true;
            return DS_OK;
        }
        int k = dsl_mod_index(c, tm->str, tm->n);
        if (k < 0) return dsl_unknown_module(c, tm->str, tm->n);
        c->wanted[k] = true;
        return DS_OK;
    }
    if (tm->n == 0) return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: target_modules is empty", c->dir, F);
    for (uint32_t i = 0; i < tm->n; i++) {
        const dsi_json *x = &tm->kids[i];
        if (x->type != DSI_JSON_STRING)
            return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: target_modules[%u] is not a string", c->dir, F, i);
        int k = dsl_mod_index(c, x->str, x->n);
        if (k < 0) return dsl_unknown_module(c, x->str, x->n);
        c->wanted[k] = true;
    }
    return DS_OK;
}

/* PEFT's name of an adapter matrix: "base_model.model.<path>.lora_A.weight",
 * also without ".weight" and with the adapter name "default" before it.
 * The module path goes to path; *which is 0 for A, 1 for B. */
static bool dsl_parse_name(const char *name, char *path, size_t cap, int *which) {
    static const char prefix[] = "base_model.model.";
    size_t pl = sizeof prefix - 1, n = strlen(name);
    if (n <= pl || memcmp(name, prefix, pl) != 0) return false;
    static const char *const tails[] = {"", ".weight", ".default", ".default.weight"};
    for (int ab = 0; ab < 2; ab++)
        for (size_t k = 0; k < sizeof tails / sizeof tails[0]; k++) {
            char suf[32];
            snprintf(suf, sizeof suf, ".lora_%c%s", ab ? 'B' : 'A', tails[k]);
            size_t sl = strlen(suf);
            if (n < pl + sl + 1 || strcmp(name + n - sl, suf) != 0) continue;
            size_t m = n - sl - pl;
            if (m >= cap) return false;
            memcpy(path, name + pl, m);
            path[m] = 0;
            *which = ab;
            return true;
        }
    return false;
}

static ds_status dsl_open_tensors(dsl_conv *c) {
    c->st_path = dsi_path_join(c->al, c->dir, "adapter_model.safetensors");
    if (!c->st_path) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    if (access(c->st_path, F_OK) != 0 && errno == ENOENT) {
        char *bin = dsi_path_join(c->al, c->dir, "adapter_model.bin");
        bool pickle = bin && access(bin, F_OK) == 0;
        dsi_free(c->al, bin);
        return dsi_fail(c->e, DS_ERR_IO, "%s: not found%s", c->st_path,
                        pickle ? " (adapter_model.bin is there: save the adapter with safe_serialization=True, the "
                                 "default of PEFT)" : "");
    }
    ds_status s = dsi_st_open(c->st_path, c->al, &c->st, c->e);
    if (s) return s;
    dsi_file_id id;
    c->st_fd = dsi_open_regular(c->st_path, &id, c->e);
    if (c->st_fd < 0) return dsi_prefix(c->e, "%s", c->st_path);
    return dsi_writer_note_input(&c->w, &id, c->st_path);
}

/* Every tensor of the file to the target it adapts. */
static ds_status dsl_match(dsl_conv *c) {
    const char *F = "adapter_model.safetensors";
    for (size_t i = 0; i < c->st->n; i++) {
        const dsi_st_tensor *t = &c->st->t[i];
        char path[128];
        int which = 0;
        if (!dsl_parse_name(t->name, path, sizeof path, &which))
            return dsi_fail(c->e, DS_ERR_ADAPTER,
                            "%s/%s: tensor %s is not a LoRA matrix (base_model.model.<module>.lora_A.weight or "
                            ".lora_B.weight; embeddings' LoRA, DoRA magnitudes, biases and saved modules are not "
                            "supported)", c->dir, F, t->name);
        long k = dsl_find_path(c, path);
        size_t pl = strlen(path);
        if (k < 0 && ((pl > 12 && !strcmp(path + pl - 12, ".mlp.experts")) ||
                      (pl > 23 && !strcmp(path + pl - 23, ".mlp.experts.base_layer"))))
            return dsi_fail(c->e, DS_ERR_ADAPTER,
                            "%s/%s: tensor %s adapts the routed experts of a layer fused into one parameter "
                            "(PEFT on transformers 5), a layout not supported: adapt each expert's gate_proj, "
                            "up_proj and down_proj", c->dir, F, t->name);
        if (k < 0) {
            char list[256];
            dsl_mod_list(c, list, sizeof list);
            return dsi_fail(c->e, DS_ERR_ADAPTER,
                            "%s/%s: tensor %s adapts %s, which is not a matrix of this model that an adapter may "
                            "change (%s: %s%s)", c->dir, F, t->name, path, dsl_arch_name(&c->base->cfg), list,
                            dsi_arch_attention_mla(&c->base->cfg) ? "; MLA has no k_proj or v_proj" : "");
        }
        const dsi_lora_target *tg = &c->T[k];
        int mi = dsl_mod_index(c, tg->module, strlen(tg->module));
        if (!c->any_target && !c->wanted[mi])
            return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: tensor %s adapts %s (module %s), which target_modules in "
                            "adapter_config.json does not list", c->dir, F, t->name, path, tg->module);
        const dsi_st_tensor **slot = which ? &c->pick[k].b : &c->pick[k].a;
        if (*slot)
            return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: two tensors for lora_%c of %s: %s and %s", c->dir, F,
                            which ? 'B' : 'A', path, (*slot)->name, t->name);
        if (t->dtype != DSI_ST_F32 && t->dtype != DSI_ST_F16 && t->dtype != DSI_ST_BF16)
            return dsi_fail(c->e, DS_ERR_SHAPE, "%s/%s: tensor %s: dtype %s is not supported (F32, F16, BF16)", c->dir,
                            F, t->name, t->dtype_name ? t->dtype_name : "?");
        if (t->ndim != 2)
            return dsi_fail(c->e, DS_ERR_SHAPE, "%s/%s: tensor %s: expected a matrix, got %d dimensions", c->dir, F,
                            t->name, t->ndim);
        *slot = t;
        c->used[mi] = true;
    }
    return DS_OK;
}

/* Pairs, shapes and ranks; the items in the container's order. */
static ds_status dsl_check_pairs(dsl_conv *c) {
    const char *F = "adapter_model.safetensors";
    size_t n = 0;
    for (size_t k = 0; k < c->nT; k++) {
        dsl_pick *pk = &c->pick[k];
        const dsi_lora_target *tg = &c->T[k];
        if (!pk->a && !pk->b) continue;
        if (!pk->a || !pk->b)
            return dsi_fail(c->e, DS_ERR_MISSING_TENSOR, "%s/%s: %s has lora_%c (%s) but no lora_%c", c->dir, F,
                            tg->path, pk->a ? 'A' : 'B', (pk->a ? pk->a : pk->b)->name, pk->a ? 'B' : 'A');
        uint64_t r = (uint64_t)c->r, in = (uint64_t)tg->in, out = (uint64_t)tg->out;
        const uint64_t *as = pk->a->shape, *bs = pk->b->shape;
        /* upright: A (r, in), B (out, r); fan_in_fan_out exporters may give
         * them as (in, r) and (r, out) (PEFT itself writes them upright) */
        bool up = as[1] == in && bs[0] == out, tr = c->fifo && as[0] == in && bs[1] == out;
        if (!up && tr) pk->transposed = true;
        else if (!up) {
            bool a_bad = as[1] != in;
            const dsi_st_tensor *t = a_bad ? pk->a : pk->b;
            return dsi_fail(c->e, DS_ERR_SHAPE, "%s/%s: tensor %s: expected %s (%s) = %llux%llu%s, got %llux%llu",
                            c->dir, F, t->name, a_bad ? "lora_A" : "lora_B", a_bad ? "r, in" : "out, r",
                            (unsigned long long)(a_bad ? r : out), (unsigned long long)(a_bad ? in : r),
                            c->fifo ? " (or its transpose, fan_in_fan_out)" : "", (unsigned long long)t->shape[0],
                            (unsigned long long)t->shape[1]);
        }
        uint64_t ra = pk->transposed ? as[1] : as[0], rb = pk->transposed ? bs[0] : bs[1];
        if (ra != r || rb != r)
            return dsi_fail(c->e, DS_ERR_ADAPTER, "%s/%s: tensor %s has rank %llu; adapter_config.json says r = %d",
                            c->dir, F, ra != r ? pk->a->name : pk->b->name, (unsigned long long)(ra != r ? ra : rb),
                            c->r);
        n++;
    }
    if (!n)
        return dsi_fail(c->e, DS_ERR_MISSING_TENSOR, "%s/%s holds no LoRA tensors (lora_A / lora_B)", c->dir, F);
    for (int i = 0; i < c->n_mods; i++)
        if (c->wanted[i] && !c->used[i] && c->p->log)
            dsi_log(c->p->log, c->p->log_user, DS_LOG_WARN, "%s: target module %s has no tensors in %s", c->dir,
                    c->mods[i], F);
    c->items = dsi_calloc(c->al, n, sizeof *c->items);
    if (!c->items) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < c->nT; k++) {
        if (!c->pick[k].a) continue;
        const dsi_lora_target *tg = &c->T[k];
        dsl_item *it = &c->items[c->n_items++];
        it->layer = tg->layer;
        it->expert = tg->expert;
        it->ord = tg->expert < 0 ? (int)k : tg->part;
        it->t = k;
        c->n_params += (uint64_t)c->r * ((uint64_t)tg->in + (uint64_t)tg->out);
    }
    return DS_OK;
}

static int dsl_cmp_item(const void *x, const void *y) {
    const dsl_item *a = x, *b = y;
    if (a->layer != b->layer) return a->layer < b->layer ? -1 : 1;
    if (a->expert != b->expert) return a->expert < b->expert ? -1 : 1;   /* -1 (not routed) first */
    return a->ord < b->ord ? -1 : a->ord > b->ord;
}

static ds_status dsl_layout(dsl_conv *c) {
    qsort(c->items, c->n_items, sizeof *c->items, dsl_cmp_item);
    c->segs = dsi_calloc(c->al, c->n_items, sizeof *c->segs);
    c->seg_of = dsi_calloc(c->al, c->n_items, sizeof *c->seg_of);
    c->off_a = dsi_calloc(c->al, c->n_items, sizeof *c->off_a);
    c->off_b = dsi_calloc(c->al, c->n_items, sizeof *c->off_b);
    if (!c->segs || !c->seg_of || !c->off_a || !c->off_b) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory");
    ds_dtype d = c->p->dtype == DS_LORA_F16 ? DS_DTYPE_F16 : DS_DTYPE_F32;
    size_t esz = d == DS_DTYPE_F16 ? 2 : 4;
    for (size_t i = 0; i < c->n_items; i++) {
        const dsl_item *it = &c->items[i];
        const dsi_lora_target *tg = &c->T[it->t];
        uint32_t kind = it->expert < 0 ? DS_SEGMENT_DENSE : DS_SEGMENT_EXPERT;
        uint64_t na = (uint64_t)c->r * (uint64_t)tg->in * esz, nb = (uint64_t)tg->out * (uint64_t)c->r * esz;
        uint32_t sb;
        if (dsi_layout_add(c->segs, &c->n_segs, kind, it->layer, it->expert, na, &c->seg_of[i], &c->off_a[i]) ||
            dsi_layout_add(c->segs, &c->n_segs, kind, it->layer, it->expert, nb, &sb, &c->off_b[i]))
            return dsi_fail(c->e, DS_ERR_LIMIT, "adapter segment too large");
    }
    return dsi_layout_seal(c->segs, c->n_segs, c->w.chunk_bytes, c->e);
}

static ds_status dsl_grow(dsl_conv *c, void **buf, size_t *cap, size_t need) {
    if (*cap >= need) return DS_OK;
    if (*buf) sodium_memzero(*buf, *cap);
    dsi_free(c->al, *buf);
    *cap = 0;
    *buf = dsi_malloc(c->al, need ? need : 1);
    if (!*buf) return dsi_fail(c->e, DS_ERR_NOMEM, "out of memory for a %zu-byte buffer", need);
    *cap = need;
    return DS_OK;
}

/* One matrix of the file, upright (rows x cols as stored in the container:
 * transposed when the file holds cols x rows), into the current segment. */
static ds_status dsl_put_matrix(dsl_conv *c, const dsi_st_tensor *t, bool transposed, uint64_t rows, uint64_t cols) {
    size_t esz = dsi_st_dtype_size(t->dtype), n = (size_t)(rows * cols);
    ds_dtype d = c->p->dtype == DS_LORA_F16 ? DS_DTYPE_F16 : DS_DTYPE_F32;
    size_t oesz = d == DS_DTYPE_F16 ? 2 : 4;
    ds_status s = dsl_grow(c, (void **)&c->raw, &c->raw_cap, n * esz);
    if (!s) s = dsl_grow(c, (void **)&c->f32, &c->f32_cap, n * sizeof(float));
    if (!s) s = dsl_grow(c, (void **)&c->tr, &c->tr_cap, n * sizeof(float));
    if (!s) s = dsl_grow(c, (void **)&c->enc, &c->enc_cap, n * oesz);
    if (!s) s = dsi_pread_full(c->st_fd, c->st_path, c->raw, n * esz, c->st->data_start + t->begin, c->e);
    if (s) return s;
    size_t bad = dsi_st_decode_row(t->dtype, c->raw, c->f32, n, NULL);
    if (bad < n)
        return dsi_fail(c->e, DS_ERR_SHAPE, "%s: tensor %s: value %zu is not finite", c->st_path, t->name, bad);
    const float *y = c->f32;
    if (transposed) {
        for (uint64_t i = 0; i < rows; i++)
            for (uint64_t j = 0; j < cols; j++) c->tr[i * cols + j] = c->f32[j * rows + i];
        y = c->tr;
    }
    for (size_t k = 0; d == DS_DTYPE_F16 && k < n; k++)
        if (fabsf(y[k]) > 65504.0f)
            return dsi_fail(c->e, DS_ERR_SHAPE, "%s: tensor %s: value %g does not fit F16 (convert without --f16)",
                            c->st_path, t->name, (double)y[k]);
    dsi_dtype_encode_row(d, y, c->enc, n);
    return dsi_writer_put(&c->w, c->enc, n * oesz);
}

static ds_status dsl_metadata(dsl_conv *c, dsi_buf *meta) {
    dsi_buf t, j;
    dsi_buf_init(&t, c->al);
    dsi_buf_init(&j, c->al);
    ds_dtype d = c->p->dtype == DS_LORA_F16 ? DS_DTYPE_F16 : DS_DTYPE_F32;
    dsi_buf_u32(&t, (uint32_t)(2 * c->n_items));
    dsi_buf_u32(&t, 0);
    for (size_t i = 0; i < c->n_items; i++) {
        const dsi_lora_target *tg = &c->T[c->items[i].t];
        char name[128];
        uint64_t da[2] = {(uint64_t)c->r, (uint64_t)tg->in}, db[2] = {(uint64_t)tg->out, (uint64_t)c->r};
        uint64_t esz = d == DS_DTYPE_F16 ? 2 : 4;
        snprintf(name, sizeof name, "%s.lora_A", tg->path);
        dsi_meta_tensor(&t, name, d, 2, da, c->seg_of[i], c->off_a[i], da[0] * da[1] * esz);
        snprintf(name, sizeof name, "%s.lora_B", tg->path);
        dsi_meta_tensor(&t, name, d, 2, db, c->seg_of[i], c->off_b[i], db[0] * db[1] * esz);
    }
    /* the adapter's record */
    uint8_t id[DS_MODEL_ID_BYTES];
    char hex[2 * DS_MODEL_ID_BYTES + 1], num[64];
    dsi_model_id_of(&c->base->hdr, id);
    dsl_hex(id, hex);
    static const char head[] = "{\"format\": \"deepseek.h lora 1\", \"base_id\": \"";
    dsi_buf_put(&j, head, sizeof head - 1);
    dsi_buf_put(&j, hex, strlen(hex));
    snprintf(num, sizeof num, "\", \"r\": %d, \"lora_alpha\": %.17g, ", c->r, c->alpha);
    dsi_buf_put(&j, num, strlen(num));
    const char *rs = c->rslora ? "\"use_rslora\": true, " : "\"use_rslora\": false, ";
    dsi_buf_put(&j, rs, strlen(rs));
    const char *dt = d == DS_DTYPE_F16 ? "\"dtype\": \"f16\", \"target_modules\": [" : "\"dtype\": \"f32\", \"target_modules\": [";
    dsi_buf_put(&j, dt, strlen(dt));
    /* the adapted modules, sorted */
    const char *sorted[DSL_MAX_MODS];
    int ns = 0;
    for (int i = 0; i < c->n_mods; i++)
        if (c->used[i]) {
            int k = ns++;
            while (k > 0 && strcmp(sorted[k - 1], c->mods[i]) > 0) {
                sorted[k] = sorted[k - 1];
                k--;
            }
            sorted[k] = c->mods[i];
        }
    for (int i = 0; i < ns; i++) {
        if (i) dsi_buf_put(&j, ", ", 2);
        dsi_json_write_string(&j, sorted[i], strlen(sorted[i]));
    }
    snprintf(num, sizeof num, "], \"n_params\": %llu, \"base_model_name_or_path\": ", (unsigned long long)c->n_params);
    dsi_buf_put(&j, num, strlen(num));
    dsi_json_write_string(&j, c->base_name, c->base_name_len);
    dsi_buf_put(&j, "}", 1);

    const dsi_meta *bm = &c->base->meta;
    dsi_meta_record(meta, DSI_REC_CONFIG_JSON, bm->config_json, bm->config_len);
    dsi_meta_record(meta, DSI_REC_ADAPTER, j.data, j.len);
    dsi_meta_record(meta, DSI_REC_TENSORS, t.data, t.len);
    dsi_meta_segments(meta, c->segs, c->n_segs, c->al);
    char src[128];
    int sl = snprintf(src, sizeof src, "{\"converter\": \"deepseek.h %s\", \"from\": \"peft\"}", DS_VERSION_STRING);
    dsi_meta_record(meta, DSI_REC_SOURCE, src, (size_t)sl);
    bool failed = t.failed || j.failed || meta->failed;
    dsi_buf_free(&t);
    dsi_buf_free(&j);
    return failed ? dsi_fail(c->e, DS_ERR_NOMEM, "out of memory building metadata") : DS_OK;
}

static ds_status dsl_convert_run(dsl_conv *c, const char *out_path) {
    ds_status s;
    const ds_convert_lora_params *p = c->p;
    if ((s = dsi_writer_check_early(&c->w, out_path))) return s;
    if ((s = dsl_note_fd(&c->w, c->base->fd, c->base->path))) return s;
    if ((s = dsl_targets(c))) return s;
    if ((s = dsl_read_config(c))) return s;
    if ((s = dsl_open_tensors(c))) return s;
    if ((s = dsi_writer_check_inputs(&c->w, out_path))) return s;
    if ((s = dsl_match(c))) return s;
    if ((s = dsl_check_pairs(c))) return s;
    if ((s = dsl_layout(c))) return s;
    if ((s = dsi_writer_keys(&c->w, p->encrypt, p->key, p->passphrase, p->passphrase_len, 0, 0))) return s;
    c->w.hdr.adapter = true;
    if ((s = dsi_writer_open(&c->w, out_path))) return s;
    size_t i = 0;
    for (uint32_t si = 0; si < c->n_segs; si++) {
        dsi_segment *sg = &c->segs[si];
        if ((s = dsi_writer_seg_begin(&c->w, si, sg))) return s;
        for (; i < c->n_items && c->seg_of[i] == si; i++) {
            const dsi_lora_target *tg = &c->T[c->items[i].t];
            const dsl_pick *pk = &c->pick[c->items[i].t];
            if ((s = dsi_writer_pad_to(&c->w, c->off_a[i]))) return s;
            if ((s = dsl_put_matrix(c, pk->a, pk->transposed, (uint64_t)c->r, (uint64_t)tg->in))) return s;
            if ((s = dsi_writer_pad_to(&c->w, c->off_b[i]))) return s;
            if ((s = dsl_put_matrix(c, pk->b, pk->transposed, (uint64_t)tg->out, (uint64_t)c->r))) return s;
        }
        if ((s = dsi_writer_seg_end(&c->w, sg->n_chunks))) return s;
    }
    dsi_buf meta;
    dsi_buf_init(&meta, c->al);
    s = dsl_metadata(c, &meta);
    if (!s) s = dsi_writer_finish(&c->w, &meta, out_path);
    dsi_buf_free(&meta);
    if (!s && p->log)
        dsi_log(p->log, p->log_user, DS_LOG_INFO, "%s: %zu adapted matrices, r = %d, %llu parameters", out_path,
                c->n_items, c->r, (unsigned long long)c->n_params);
    return s;
}

static void dsl_conv_free(dsl_conv *c) {
    dsi_writer_free(&c->w);
    dsi_json_free(c->cfg_doc);
    dsi_free(c->al, c->cfg_text);
    dsi_free(c->al, c->T);
    dsi_free(c->al, c->by_path);
    dsi_free(c->al, c->pick);
    if (c->st_fd >= 0) close(c->st_fd);
    dsi_st_free(c->st);
    dsi_free(c->al, c->st_path);
    dsi_free(c->al, c->items);
    dsi_free(c->al, c->segs);
    dsi_free(c->al, c->seg_of);
    dsi_free(c->al, c->off_a);
    dsi_free(c->al, c->off_b);
    if (c->raw) sodium_memzero(c->raw, c->raw_cap);
    if (c->enc) sodium_memzero(c->enc, c->enc_cap);
    if (c->f32) sodium_memzero(c->f32, c->f32_cap);
    if (c->tr) sodium_memzero(c->tr, c->tr_cap);
    dsi_free(c->al, c->raw);
    dsi_free(c->al, c->enc);
    dsi_free(c->al, c->f32);
    dsi_free(c->al, c->tr);
}

DS_API ds_status ds_convert_lora(const char *peft_dir, const ds_model *base, const char *out_path,
                                 const ds_convert_lora_params *params) {
    dsi_err e = {0};
    ds_convert_lora_params defaults = ds_convert_lora_default_params();
    const ds_convert_lora_params *p = params ? params : &defaults;
    if (!peft_dir || !base || !out_path) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_convert_lora: peft_dir, base and out_path must not be NULL");
        return dsi_publish(&e);
    }
    if (dsl_check_params(p, "ds_convert_lora", &e)) return dsi_publish(&e);
    if (base->hdr.adapter) {
        dsi_fail(&e, DS_ERR_NOT_ADAPTER, "ds_convert_lora: the base %s is an adapter, not a model", base->path);
        return dsi_publish(&e);
    }
    if (dsi_crypto_init(&e)) return dsi_publish(&e);
    dsl_conv c;
    memset(&c, 0, sizeof c);
    c.al = &base->al;
    c.e = &e;
    c.p = p;
    c.base = base;
    c.dir = peft_dir;
    c.st_fd = -1;
    dsi_writer_init(&c.w, c.al, &e, DSI_DEFAULT_CHUNK, p->overwrite,
                    "ds convert-lora --force, or ds_convert_lora_params.overwrite,");
    ds_status s = dsl_convert_run(&c, out_path);
    dsl_conv_free(&c);
    return s ? dsi_publish(&e) : DS_OK;
}

/* ==== Merging an adapter into its base =================================== */
typedef struct dsl_merge {
    const dsi_alloc *al;
    dsi_err *e;
    const ds_adapter *a;
    const ds_model *m;        /* the base */
    const ds_model *f;        /* the adapter's container */
    float s;                  /* scale * the adapter's own scale */
    dsi_writer w;
    const dsi_tensor **by_name;   /* the adapter's tensors, by name */
    size_t n_names;
    size_t *order;            /* the base's tensors grouped by segment */
    size_t *seg_first;        /* n_segments + 1 */
    dsi_segment *segs;        /* the output's (offsets rewritten) */
    size_t matched;           /* adapter tensors used */
    dsi_secure_buf work, aseg;   /* a base segment being changed; the adapter segment in aseg_index */
    long aseg_index;
    float *fa, *fb, *row;
    size_t fa_cap, fb_cap, row_cap;
} dsl_merge;

static int dsl_cmp_tensor(const void *x, const void *y) {
    return strcmp((*(const dsi_tensor *const *)x)->name, (*(const dsi_tensor *const *)y)->name);
}

static const dsi_tensor *dsl_adapter_tensor(const dsl_merge *g, const char *name) {
    dsi_tensor key;
    memset(&key, 0, sizeof key);
    key.name = (char *)(uintptr_t)name;
    const dsi_tensor *kp = &key;
    const dsi_tensor **hit = bsearch(&kp, g->by_name, g->n_names, sizeof *g->by_name, dsl_cmp_tensor);
    return hit ? *hit : NULL;
}

/* The plaintext of the adapter's segment seg: resident, else decrypted. */
static ds_status dsl_adapter_segment(dsl_merge *g, uint32_t seg, const uint8_t **out) {
    const ds_model *f = g->f;
    if (f->dense && f->dense[seg].ptr) {
        *out = f->dense[seg].ptr;
        return DS_OK;
    }
    if (g->aseg_index != (long)seg) {
        dsi_secure_free(&g->aseg);
        g->aseg_index = -1;
        ds_status s = dsi_secure_alloc(&g->aseg, (size_t)f->meta.segments[seg].plain_bytes, 0, g->e);
        if (!s) s = dsi_segment_read(f, seg, g->aseg.ptr, g->aseg.size, g->e);
        if (s) return s;
        g->aseg_index = (long)seg;
    }
    *out = g->aseg.ptr;
    return DS_OK;
}

/* An adapter matrix as F32 into *buf. */
static ds_status dsl_adapter_f32(dsl_merge *g, const dsi_tensor *t, float **buf, size_t *cap) {
    const uint8_t *p = NULL;
    ds_status s = dsl_adapter_segment(g, t->segment, &p);
    if (s) return s;
    size_t n = (size_t)(t->dims[0] * t->dims[1]);
    if (*cap < n) {
        if (*buf) sodium_memzero(*buf, *cap * sizeof **buf);
        dsi_free(g->al, *buf);
        *cap = 0;
        *buf = dsi_malloc(g->al, n * sizeof **buf);
        if (!*buf) return dsi_fail(g->e, DS_ERR_NOMEM, "out of memory");
        *cap = n;
    }
    dsi_dtype_decode_row((ds_dtype)t->dtype, p + t->offset, *buf, n);
    return DS_OK;
}

/* W (rows x cols in its dtype, at w) += s * B A, row by row. */
static ds_status dsl_merge_tensor(dsl_merge *g, const dsi_tensor *W, uint8_t *w) {
    char name[160];
    size_t nl = strlen(W->name);
    if (W->n_dims != 2 || nl < 8 || strcmp(W->name + nl - 7, ".weight") != 0) return DS_OK;
    snprintf(name, sizeof name, "%.*s.lora_A", (int)(nl - 7), W->name);
    const dsi_tensor *A = dsl_adapter_tensor(g, name);
    snprintf(name, sizeof name, "%.*s.lora_B", (int)(nl - 7), W->name);
    const dsi_tensor *B = dsl_adapter_tensor(g, name);
    if (!A && !B) return DS_OK;
    if (!A || !B)
        return dsi_fail(g->e, DS_ERR_MISSING_TENSOR, "adapter %s: %.*s has lora_%c but no lora_%c", g->f->path,
                        (int)(nl - 7), W->name, A ? 'A' : 'B', A ? 'B' : 'A');
    uint64_t rows = W->dims[0], cols = W->dims[1], r = A->dims[0];
    if (A->n_dims != 2 || B->n_dims != 2 || A->dims[1] != cols || B->dims[0] != rows || B->dims[1] != r)
        return dsi_fail(g->e, DS_ERR_SHAPE, "adapter %s: %s is %llux%llu: expected lora_A (r, %llu) and lora_B "
                        "(%llu, r), got %llux%llu and %llux%llu", g->f->path, W->name, (unsigned long long)rows,
                        (unsigned long long)cols, (unsigned long long)cols, (unsigned long long)rows,
                        (unsigned long long)A->dims[0], (unsigned long long)A->dims[1], (unsigned long long)B->dims[0],
                        (unsigned long long)B->dims[1]);
    /* pruned storage keeps a row's zeros out of its bytes: B A would fill
     * them, and re-encoding would prune the merged row again */
    if (W->dtype == DS_DTYPE_Q8_0_SP || W->dtype == DS_DTYPE_Q8_0_24)
        return dsi_fail(g->e, DS_ERR_INVALID_ARG, "%s: the base stores pruned weights as %s; merging would fill the "
                        "zeros: convert it without sparse storage", W->name,
                        W->dtype == DS_DTYPE_Q8_0_SP ? "q8_0_sp" : "q8_0_24");
    ds_status s = dsl_adapter_f32(g, A, &g->fa, &g->fa_cap);
    if (!s) s = dsl_adapter_f32(g, B, &g->fb, &g->fb_cap);
    if (s) return s;
    if (g->row_cap < cols) {
        dsi_free(g->al, g->row);
        g->row = dsi_malloc(g->al, (size_t)cols * sizeof *g->row);
        g->row_cap = g->row ? (size_t)cols : 0;
        if (!g->row) return dsi_fail(g->e, DS_ERR_NOMEM, "out of memory");
    }
    uint64_t rb = 0;
    (void)dsi_tensor_row_bytes((ds_dtype)W->dtype, rows, cols, W->nbytes, &rb);   /* checked when opened */
    for (uint64_t o = 0; o < rows; o++) {
        float *y = g->row;
        dsi_dtype_decode_row((ds_dtype)W->dtype, w + o * rb, y, (size_t)cols);
        for (uint64_t k = 0; k < r; k++) {
            float c = g->s * g->fb[o * r + k];
            const float *ak = g->fa + k * cols;
            for (uint64_t j = 0; j < cols; j++) y[j] += c * ak[j];
        }
        for (uint64_t j = 0; j < cols; j++)
            if (!isfinite(y[j]) || (W->dtype == DS_DTYPE_F16 && fabsf(y[j]) > 65504.0f))
                return dsi_fail(g->e, DS_ERR_SHAPE, "%s: merged value %g at row %llu column %llu does not fit %s",
                                W->name, (double)y[j], (unsigned long long)o, (unsigned long long)j,
                                W->dtype == DS_DTYPE_F16 ? "F16" : "a float");
        dsi_dtype_encode_row((ds_dtype)W->dtype, y, w + o * rb, (size_t)cols);
    }
    g->matched += 2;
    return DS_OK;
}

/* The base's tensors grouped by segment, the adapter's sorted by name. */
static ds_status dsl_merge_index(dsl_merge *g) {
    const dsi_meta *bm = &g->m->meta, *am = &g->f->meta;
    g->order = dsi_calloc(g->al, bm->n_tensors ? bm->n_tensors : 1, sizeof *g->order);
    g->seg_first = dsi_calloc(g->al, bm->n_segments + 1, sizeof *g->seg_first);
    g->segs = dsi_calloc(g->al, bm->n_segments ? bm->n_segments : 1, sizeof *g->segs);
    g->by_name = dsi_calloc(g->al, am->n_tensors ? am->n_tensors : 1, sizeof *g->by_name);
    if (!g->order || !g->seg_first || !g->segs || !g->by_name) return dsi_fail(g->e, DS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < bm->n_tensors; i++) g->seg_first[bm->tensors[i].segment + 1]++;
    for (size_t k = 0; k < bm->n_segments; k++) g->seg_first[k + 1] += g->seg_first[k];
    size_t *fill = dsi_calloc(g->al, bm->n_segments ? bm->n_segments : 1, sizeof *fill);
    if (!fill) return dsi_fail(g->e, DS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < bm->n_tensors; i++) {
        uint32_t sg = bm->tensors[i].segment;
        g->order[g->seg_first[sg] + fill[sg]++] = i;
    }
    dsi_free(g->al, fill);
    memcpy(g->segs, bm->segments, bm->n_segments * sizeof *g->segs);
    for (size_t i = 0; i < am->n_tensors; i++) g->by_name[i] = &am->tensors[i];
    g->n_names = am->n_tensors;
    qsort(g->by_name, g->n_names, sizeof *g->by_name, dsl_cmp_tensor);
    return DS_OK;
}

/* The base's metadata records again, with the new segment directory. */
static ds_status dsl_merge_metadata(dsl_merge *g, dsi_buf *meta) {
    const dsi_meta *bm = &g->m->meta;
    size_t pos = 0, len = bm->plain_len;
    while (pos + 16 <= len) {
        uint32_t tag = dsi_rd32(bm->plain + pos);
        uint64_t rlen = dsi_rd64(bm->plain + pos + 8);
        if (rlen > len - pos - 16) break;   /* checked at open */
        if (tag == DSI_REC_SEGMENTS) dsi_meta_segments(meta, g->segs, bm->n_segments, g->al);
        else dsi_meta_record(meta, tag, bm->plain + pos + 16, (size_t)rlen);
        pos += 16 + (size_t)((rlen + 7) / 8 * 8);
    }
    return meta->failed ? dsi_fail(g->e, DS_ERR_NOMEM, "out of memory building metadata") : DS_OK;
}

static ds_status dsl_merge_run(dsl_merge *g, const ds_convert_lora_params *p, const char *out_path) {
    ds_status s;
    const ds_model *m = g->m;
    if ((s = dsi_writer_check_early(&g->w, out_path))) return s;
    if ((s = dsl_note_fd(&g->w, m->fd, m->path))) return s;
    if ((s = dsl_note_fd(&g->w, g->f->fd, g->f->path))) return s;
    if ((s = dsi_writer_check_inputs(&g->w, out_path))) return s;
    if ((s = dsl_merge_index(g))) return s;
    if ((s = dsi_writer_keys(&g->w, p->encrypt, p->key, p->passphrase, p->passphrase_len, 0, 0))) return s;
    if ((s = dsi_writer_open(&g->w, out_path))) return s;
    for (uint32_t si = 0; si < m->meta.n_segments; si++) {
        dsi_segment *sg = &g->segs[si];
        dsi_secure_free(&g->work);
        if ((s = dsi_secure_alloc(&g->work, (size_t)sg->plain_bytes, 0, g->e))) return s;
        if (m->dense && m->dense[si].ptr) memcpy(g->work.ptr, m->dense[si].ptr, (size_t)sg->plain_bytes);
        else if ((s = dsi_segment_read(m, si, g->work.ptr, g->work.size, g->e))) return s;
        for (size_t k = g->seg_first[si]; k < g->seg_first[si + 1]; k++) {
            const dsi_tensor *W = &m->meta.tensors[g->order[k]];
            if ((s = dsl_merge_tensor(g, W, (uint8_t *)g->work.ptr + W->offset))) return s;
        }
        if ((s = dsi_writer_seg_begin(&g->w, si, sg))) return s;
        if ((s = dsi_writer_put(&g->w, g->work.ptr, (size_t)sg->plain_bytes))) return s;
        if ((s = dsi_writer_seg_end(&g->w, sg->n_chunks))) return s;
    }
    if (g->matched != g->n_names) {
        /* an adapter tensor no base matrix took: refuse rather than drop it */
        for (size_t i = 0; i < g->n_names; i++) {
            const char *n = g->by_name[i]->name;
            size_t nl = strlen(n);
            char wname[160];
            snprintf(wname, sizeof wname, "%.*s.weight", nl > 7 ? (int)(nl - 7) : 0, n);
            size_t idx;
            dsi_model_file mf = dsi_model_file_of(m);
            if (nl <= 7 || !dsi_file_tensor(&mf, wname, &idx))
                return dsi_fail(g->e, DS_ERR_ADAPTER, "adapter %s: tensor %s has no matrix %s in the base %s",
                                g->f->path, n, wname, m->path);
        }
        return dsi_fail(g->e, DS_ERR_ADAPTER, "adapter %s: %zu of its %zu tensors were merged", g->f->path,
                        g->matched, g->n_names);
    }
    dsi_buf meta;
    dsi_buf_init(&meta, g->al);
    s = dsl_merge_metadata(g, &meta);
    if (!s) s = dsi_writer_finish(&g->w, &meta, out_path);
    dsi_buf_free(&meta);
    return s;
}

DS_API ds_status ds_lora_merge(const ds_adapter *a, float scale, const char *out_path,
                               const ds_convert_lora_params *params) {
    dsi_err e = {0};
    ds_convert_lora_params defaults = ds_convert_lora_default_params();
    const ds_convert_lora_params *p = params ? params : &defaults;
    if (!a || !out_path) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_lora_merge: adapter and out_path must not be NULL");
        return dsi_publish(&e);
    }
    if (dsl_check_params(p, "ds_lora_merge", &e)) return dsi_publish(&e);
    if (!isfinite(scale)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_lora_merge: scale %g is not finite", (double)scale);
        return dsi_publish(&e);
    }
    const ds_model *m = a->base;
    if (!m || !m->weights_loaded) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_lora_merge: the base model must be open with load_weights 1");
        return dsi_publish(&e);
    }
    if (dsi_crypto_init(&e)) return dsi_publish(&e);
    dsl_merge g;
    memset(&g, 0, sizeof g);
    g.al = &m->al;
    g.e = &e;
    g.a = a;
    g.m = m;
    g.f = &a->f;
    g.s = scale * a->scale;
    g.aseg_index = -1;
    dsi_writer_init(&g.w, g.al, &e, m->hdr.chunk_bytes, p->overwrite,
                    "ds lora merge --force, or ds_convert_lora_params.overwrite,");
    ds_status s = dsl_merge_run(&g, p, out_path);
    dsi_writer_free(&g.w);
    dsi_free(g.al, g.by_name);
    dsi_free(g.al, g.order);
    dsi_free(g.al, g.seg_first);
    dsi_free(g.al, g.segs);
    dsi_secure_free(&g.work);
    dsi_secure_free(&g.aseg);
    if (g.fa) sodium_memzero(g.fa, g.fa_cap * sizeof *g.fa);
    if (g.fb) sodium_memzero(g.fb, g.fb_cap * sizeof *g.fb);
    if (g.row) sodium_memzero(g.row, g.row_cap * sizeof *g.row);
    dsi_free(g.al, g.fa);
    dsi_free(g.al, g.fb);
    dsi_free(g.al, g.row);
    return s ? dsi_publish(&e) : DS_OK;
}
