/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * lora.c — LoRA adapters over an opened base model: the sealed adapter file
 * (a container with its own magic, read by file.c), its binding to the
 * base's identity, its matrices bound per layer and module, and its routed
 * experts' parts paged like the base's experts. The forward pass (forward.c)
 * applies them; the devices do the products (dsi_device_i.lora).
 */
#include "engine.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

DS_API ds_adapter_params ds_adapter_default_params(void) {
    ds_adapter_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* ==== Opening ============================================================== */
static void dsi_hex(const uint8_t *b, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = 0;
}

static int dsi_unhex(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The adapter record: rank, alpha, rsLoRA, the base's identity. */
static ds_status dsi_adapter_record(ds_adapter *a, dsi_err *e) {
    const dsi_meta *mt = &a->f.meta;
    dsi_json_doc *doc = NULL;
    ds_status s = dsi_json_parse(mt->adapter_json, mt->adapter_len, &a->f.al, &doc, e);
    if (s) return dsi_prefix(e, "adapter record");
    const dsi_json *r = dsi_json_root(doc);
    int64_t rank = 0;
    double alpha = 0;
    bool rs = false;
    const char *id = NULL, *fmt = NULL;
    size_t id_len = 0, fmt_len = 0;
    if (dsi_json_get_str(r, "format", &fmt, &fmt_len) != 1 || fmt_len != 17 || memcmp(fmt, "deepseek.h lora 1", 17))
        s = dsi_fail(e, DS_ERR_VERSION, "adapter record: format is not \"deepseek.h lora 1\" (a newer adapter? "
                                        "upgrade deepseek.h)");
    else if (dsi_json_get_int(r, "r", &rank) != 1 || rank < 1 || rank > DSI_LORA_MAX_RANK)
        s = dsi_fail(e, DS_ERR_ADAPTER, "adapter record: r is missing or outside [1, %d]", DSI_LORA_MAX_RANK);
    else if (dsi_json_get_num(r, "lora_alpha", &alpha) != 1 || !(alpha > 0) || alpha > 1e6)
        s = dsi_fail(e, DS_ERR_CORRUPT, "adapter record: lora_alpha is missing or not a positive number");
    else if (dsi_json_get_bool(r, "use_rslora", &rs) < 0)
        s = dsi_fail(e, DS_ERR_CORRUPT, "adapter record: use_rslora is not a boolean");
    else if (dsi_json_get_str(r, "base_id", &id, &id_len) != 1 || id_len != 64)
        s = dsi_fail(e, DS_ERR_CORRUPT, "adapter record: base_id is missing or not 64 hex digits");
    for (size_t i = 0; !s && i < 32; i++) {
        int hi = dsi_unhex(id[2 * i]), lo = dsi_unhex(id[2 * i + 1]);
        if (hi < 0 || lo < 0) s = dsi_fail(e, DS_ERR_CORRUPT, "adapter record: base_id is not hex");
        else a->base_id[i] = (uint8_t)(hi << 4 | lo);
    }
    dsi_json_free(doc);
    if (s) return s;
    a->rank = (int)rank;
    a->alpha = (float)alpha;
    a->rslora = rs;
    a->scale = rs ? (float)(alpha / sqrt((double)rank)) : (float)(alpha / (double)rank);
    return DS_OK;
}

static int dsi_cmp_str(const void *x, const void *y) {
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Which target a tensor name adapts, and whether it is B: "<path>.lora_A"
 * or "<path>.lora_B". */
static const dsi_lora_target *dsi_lora_find(const dsi_lora_target *t, size_t n, const char *name, bool *is_b) {
    size_t nl = strlen(name);
    if (nl < 8 || memcmp(name + nl - 7, ".lora_", 6) || (name[nl - 1] != 'A' && name[nl - 1] != 'B')) return NULL;
    *is_b = name[nl - 1] == 'B';
    for (size_t i = 0; i < n; i++)
        if (strlen(t[i].path) == nl - 7 && !memcmp(t[i].path, name, nl - 7)) return &t[i];
    return NULL;
}

/* One of an adapter's matrices as the kernels see it (data set by the caller). */
static void dsi_lora_weight(dsi_weight *w, const dsi_tensor *t) {
    w->dtype = (ds_dtype)t->dtype;
    w->rows = (int)t->dims[0];
    w->cols = (int)t->dims[1];
    uint64_t rb = 0;
    (void)dsi_tensor_row_bytes(w->dtype, (uint64_t)w->rows, (uint64_t)w->cols, t->nbytes, &rb);   /* checked when opened */
    w->row_bytes = (size_t)rb;
    w->offset = t->offset;
    w->data = NULL;
}

/* Checks every tensor of the adapter against the base's architecture and
 * binds it: resident matrices into a->layers[l].m, routed experts' offsets
 * into a->layers[l].experts (and f.w for the pager). */
static ds_status dsi_adapter_bind(ds_adapter *a, const dsi_lora_target *tg, size_t n_tg, dsi_err *e) {
    const ds_model_config *cf = &a->base->cfg;
    const dsi_meta *mt = &a->f.meta;
    const dsi_alloc *al = &a->f.al;
    int L = cf->n_layers, E = cf->n_routed_experts;
    a->layers = dsi_calloc(al, (size_t)L, sizeof *a->layers);
    a->f.w.layers = dsi_calloc(al, (size_t)L, sizeof *a->f.w.layers);
    if (!a->layers || !a->f.w.layers) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    char seen[DSI_LM_N + 3] = {0};
    for (size_t i = 0; i < mt->n_tensors; i++) {
        const dsi_tensor *t = &mt->tensors[i];
        bool is_b = false;
        const dsi_lora_target *x = dsi_lora_find(tg, n_tg, t->name, &is_b);
        if (!x)
            return dsi_fail(e, DS_ERR_ADAPTER, "tensor %s: not the lora_A or lora_B of a matrix this model has",
                            t->name);
        if (t->n_dims != 2 || (t->dtype != DS_DTYPE_F32 && t->dtype != DS_DTYPE_F16))
            return dsi_fail(e, DS_ERR_SHAPE, "tensor %s: want a 2-D F32 or F16 matrix", t->name);
        uint64_t want0 = is_b ? (uint64_t)x->out : (uint64_t)a->rank, want1 = is_b ? (uint64_t)a->rank : (uint64_t)x->in;
        if (t->dims[0] != want0 || t->dims[1] != want1)
            return dsi_fail(e, DS_ERR_SHAPE, "tensor %s: expected %llux%llu (r = %d), got %llux%llu", t->name,
                            (unsigned long long)want0, (unsigned long long)want1, a->rank,
                            (unsigned long long)t->dims[0], (unsigned long long)t->dims[1]);
        const dsi_segment *sg = &mt->segments[t->segment];
        bool routed = x->expert >= 0;
        if (sg->layer != x->layer || sg->expert != x->expert ||
            sg->kind != (routed ? (uint32_t)DS_SEGMENT_EXPERT : (uint32_t)DS_SEGMENT_DENSE))
            return dsi_fail(e, DS_ERR_CORRUPT, "tensor %s lies in segment %u of another layer or expert", t->name,
                            t->segment);
        dsi_lora_layer *ll = &a->layers[x->layer];
        dsi_lora_ab *ab = routed ? &ll->exp[x->part] : &ll->m[x->mod];
        dsi_weight *w = is_b ? &ab->b : &ab->a;
        dsi_lora_weight(w, t);
        seen[routed ? DSI_LM_N + x->part : x->mod] = 1;
        if (!routed) {
            w->data = (const uint8_t *)a->f.dense[t->segment].ptr + t->offset;
            continue;
        }
        if (!ll->experts) {
            ll->experts = dsi_calloc(al, (size_t)E, sizeof *ll->experts);
            a->f.w.layers[x->layer].experts = dsi_calloc(al, (size_t)E, sizeof(dsi_expert_ref));
            if (!ll->experts || !a->f.w.layers[x->layer].experts) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
            a->f.w.layers[x->layer].moe = true;
            for (int k = 0; k < E; k++) {
                ll->experts[k].segment = -1;
                for (int j = 0; j < 6; j++) ll->experts[k].off[j] = UINT64_MAX;
            }
        }
        dsi_lora_expert *xe = &ll->experts[x->expert];
        xe->segment = (int32_t)t->segment;
        xe->off[2 * x->part + is_b] = t->offset;
        a->f.w.layers[x->layer].experts[x->expert].segment = t->segment;
    }
    /* every A with its B, and the same matrices for every adapted expert */
    for (int l = 0; l < L; l++) {
        dsi_lora_layer *ll = &a->layers[l];
        for (int m = 0; m < DSI_LM_N + 3; m++) {
            dsi_lora_ab *ab = m < DSI_LM_N ? &ll->m[m] : &ll->exp[m - DSI_LM_N];
            if ((ab->a.rows != 0) != (ab->b.rows != 0))
                return dsi_fail(e, DS_ERR_MISSING_TENSOR, "layer %d %s%s: lora_%s without lora_%s", l,
                                m < DSI_LM_N ? "" : "routed experts' ", m < DSI_LM_N ? dsi_lora_module_name(m)
                                : m == DSI_LM_N ? "gate_proj" : m == DSI_LM_N + 1 ? "up_proj" : "down_proj",
                                ab->a.rows ? "A" : "B", ab->a.rows ? "B" : "A");
        }
        for (int k = 0; ll->experts && k < E; k++) {
            const dsi_lora_expert *xe = &ll->experts[k];
            if (xe->segment < 0) continue;
            for (int j = 0; j < 6; j++)
                if ((ll->exp[j / 2].a.rows != 0) != (xe->off[j] != UINT64_MAX))
                    return dsi_fail(e, DS_ERR_MISSING_TENSOR,
                                    "layer %d expert %d: its adapter lacks %s's lora_%c, which other experts have", l,
                                    k, j / 2 == 0 ? "gate_proj" : j / 2 == 1 ? "up_proj" : "down_proj",
                                    j % 2 ? 'B' : 'A');
        }
    }
    /* the modules adapted, as PEFT names them, sorted (as the record lists them) */
    const char *done[DSI_LM_N + 3];
    int n_done = 0;
    for (int m = 0; m < DSI_LM_N + 3; m++) {
        if (!seen[m]) continue;
        const char *nm = m < DSI_LM_N ? dsi_lora_module_name(m) : m == DSI_LM_N ? "gate_proj"
                                                              : m == DSI_LM_N + 1 ? "up_proj" : "down_proj";
        bool dup = false;
        for (int k = 0; k < n_done; k++) dup |= !strcmp(done[k], nm);
        if (!dup) done[n_done++] = nm;
    }
    qsort(done, (size_t)n_done, sizeof done[0], dsi_cmp_str);
    size_t at = 0;
    for (int k = 0; k < n_done; k++) {
        int w = snprintf(a->targets + at, sizeof a->targets - at, "%s%s", at ? "," : "", done[k]);
        if (w > 0 && (size_t)w < sizeof a->targets - at) at += (size_t)w;
    }
    return DS_OK;
}

static void dsi_adapter_free(ds_adapter *a) {
    if (!a) return;
    ds_model *base = a->base;
    if (a->dev_adapter && base->dev && base->dev->adapter_free) base->dev->adapter_free(base, a, a->dev_adapter);
    dsi_pager_free(&a->f);
    if (a->layers) {
        for (int l = 0; l < base->cfg.n_layers; l++) dsi_free(&a->f.al, a->layers[l].experts);
        dsi_free(&a->f.al, a->layers);
    }
    dsi_file_close(&a->f);
    dsi_free(&base->al, a);
}

DS_API ds_status ds_adapter_open(ds_adapter **out, ds_model *base, const char *path, const ds_adapter_params *params) {
    dsi_err e = {0};
    if (!out || !base || !path) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_adapter_open: out, base and path must not be NULL");
        return dsi_publish(&e);
    }
    *out = NULL;
    if (!base->weights_loaded || !base->w.layers || !base->dev) {
        dsi_fail(&e, DS_ERR_MISUSE, "ds_adapter_open: the base model was opened with load_weights = 0");
        return dsi_publish(&e);
    }
    ds_adapter_params def = ds_adapter_default_params();
    const ds_adapter_params *p = params ? params : &def;
    ds_adapter *a = dsi_calloc(&base->al, 1, sizeof *a);
    if (!a) {
        dsi_fail(&e, DS_ERR_NOMEM, "out of memory for an adapter");
        return dsi_publish(&e);
    }
    a->base = base;
    ds_model *f = &a->f;
    f->al = base->al;
    f->fd = -1;
    f->n_threads = 1;               /* its pager decrypts on the thread that asks */
    f->device = DS_DEVICE_CPU;
    f->mlock = base->mlock;
    f->log = base->log;
    f->log_user = base->log_user;
    dsi_lora_target *tg = NULL;
    size_t n_tg = 0;
    ds_status s = dsi_file_open_adapter(f, path, p, &e);
    if (!s) f->opened = true;
    if (!s) s = dsi_adapter_record(a, &e);
    if (!s) {
        uint8_t id[32];
        dsi_model_id_of(&base->hdr, id);
        if (sodium_memcmp(id, a->base_id, 32) != 0) {
            char want[65], have[65];
            dsi_hex(a->base_id, 32, want);
            dsi_hex(id, 32, have);
            s = dsi_fail(&e, DS_ERR_ADAPTER_BASE,
                         "this adapter was made for the base model with identity %.16s..., not for %s (identity "
                         "%.16s...): an adapter applies only to the very file it was converted against (ds inspect "
                         "shows a model's identity)",
                         want, base->path, have);
        }
    }
    if (!s) s = dsi_arch_lora_targets(&base->cfg, &base->al, &tg, &n_tg, &e);
    if (!s) {
        /* the routed experts' parts are paged when the base pages its experts */
        ds_model_params mp = ds_model_default_params();
        f->drop_read = base->drop_read;   /* the adapter's ciphertext as the base's */
        s = dsi_file_load_dense(f, base->pager == NULL, &mp, &e);
    }
    if (!s) s = dsi_adapter_bind(a, tg, n_tg, &e);
    dsi_free(&base->al, tg);
    if (!s && base->pager) {
        ds_cache_stats st;
        dsi_pager_stats(base, &st, false);
        uint64_t slot = 0;
        for (size_t i = 0; i < f->meta.n_segments; i++)
            if (f->meta.segments[i].kind == DS_SEGMENT_EXPERT && f->meta.segments[i].plain_bytes > slot)
                slot = f->meta.segments[i].plain_bytes;
        slot = (slot + 4095) / 4096 * 4096;
        uint64_t budget = p->expert_cache_bytes ? p->expert_cache_bytes : (uint64_t)st.n_slots * slot;
        if (slot) s = dsi_pager_new(f, budget, 0, DS_PREFETCH_OFF, DS_EVICT_LRU, &e);
    }
    if (!s) {
        for (size_t i = 0; i < f->meta.n_tensors; i++) {
            const dsi_tensor *t = &f->meta.tensors[i];
            a->n_params += t->dims[0] * t->dims[1];
            a->bytes += t->nbytes;
        }
        a->dtype = f->meta.n_tensors ? (ds_dtype)f->meta.tensors[0].dtype : DS_DTYPE_F32;
        a->dev_layers = a->layers;
        if (base->dev->adapter_new) s = base->dev->adapter_new(base, a, &a->dev_adapter, &a->dev_layers, &e);
    }
    if (s) {
        dsi_prefix(&e, "adapter %s", path);
        dsi_adapter_free(a);
        return dsi_publish(&e);
    }
    __atomic_add_fetch(&base->n_adapters, 1, __ATOMIC_ACQ_REL);
    *out = a;
    return DS_OK;
}

DS_API ds_status ds_adapter_close(ds_adapter *a) {
    dsi_err e = {0};
    if (!a) return DS_OK;
    int users = __atomic_load_n(&a->n_users, __ATOMIC_ACQUIRE);
    if (users > 0) {
        dsi_fail(&e, DS_ERR_MISUSE, "ds_adapter_close: %d sequence(s) still apply this adapter; set their adapters "
                                    "without it (ds_context_set_adapters) or free their contexts first", users);
        return dsi_publish(&e);
    }
    ds_model *base = a->base;
    dsi_adapter_free(a);
    __atomic_sub_fetch(&base->n_adapters, 1, __ATOMIC_ACQ_REL);
    return DS_OK;
}

DS_API ds_model *ds_adapter_model(const ds_adapter *a) { return a ? a->base : NULL; }

DS_API ds_status ds_adapter_get_info(const ds_adapter *a, ds_adapter_info *out) {
    dsi_err e = {0};
    if (!a || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_adapter_get_info: NULL argument");
        return dsi_publish(&e);
    }
    memset(out, 0, sizeof *out);
    out->rank = a->rank;
    out->alpha = a->alpha;
    out->rslora = a->rslora;
    out->scale = a->scale;
    out->dtype = a->dtype;
    snprintf(out->targets, sizeof out->targets, "%s", a->targets);
    out->n_params = a->n_params;
    out->bytes = a->bytes;
    uint64_t res = 0;
    for (size_t i = 0; i < a->f.meta.n_segments; i++)
        if (a->f.dense && a->f.dense[i].ptr) res += a->f.meta.segments[i].plain_bytes;
    out->resident_bytes = res;
    for (size_t i = 0; i < a->base->meta.n_tensors; i++) {
        const dsi_tensor *t = &a->base->meta.tensors[i];
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= t->dims[d];
        out->base_params += n;
    }
    memcpy(out->base_id, a->base_id, 32);
    return DS_OK;
}
