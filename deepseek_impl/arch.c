/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * arch.c — everything the runtime knows about the layout of each DeepSeek
 * family, in one table: the Hugging Face name of every tensor, its shape as
 * a function of the config, whether it stays F32, and the field of the
 * bound weights (dsi_layer) it fills. The converter's tensor list
 * (dsi_arch_tensor_specs), the open-time directory check and the weight
 * binding (dsi_arch_bind) all walk this one table, so adding a variant
 * touches this file only.
 *
 * The attention kind is decided here once (dsi_arch_attention): DeepSeek-MoE
 * has multi-head attention (q/k/v/o); V2 and V3 have MLA, with or without a
 * q-LoRA. Everything after binding asks the bound weights (dsi_weights.mla).
 */
#include "format.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== The decisions ======================================================== */
DSI_FUNC bool dsi_arch_attention_mla(const ds_model_config *c) { return c->arch != DS_ARCH_DEEPSEEK_MOE; }

DSI_FUNC bool dsi_config_is_moe_layer(const ds_model_config *cfg, int layer) {
    return cfg->n_routed_experts > 0 && cfg->moe_layer_freq > 0 && layer >= cfg->first_k_dense_replace &&
           layer % cfg->moe_layer_freq == 0;
}

/* ==== The table ============================================================ */
/* When a layer tensor exists. */
enum {
    DSA_ALL,          /* every layer */
    DSA_MHA,          /* multi-head attention (DeepSeek-MoE) */
    DSA_MLA,          /* MLA, either query form */
    DSA_MLA_QLORA,    /* MLA with a q-LoRA (q_lora_rank > 0) */
    DSA_MLA_Q,        /* MLA with a plain query projection */
    DSA_DENSE,        /* a dense MLP layer */
    DSA_MOE,          /* a MoE layer */
    DSA_MOE_BIAS,     /* a MoE layer routed by noaux_tc (V3's correction bias) */
    DSA_MOE_SHARED,   /* a MoE layer with shared experts */
    DSA_EXPERT        /* each routed expert of a MoE layer */
};

/* Dimensions, in the config's terms. */
enum {
    DSD_NONE,         /* 1-D tensors have no second dimension */
    DSD_HIDDEN,       /* hidden_size */
    DSD_VOCAB,
    DSD_MHA_Q,        /* n_heads * head_dim */
    DSD_MHA_KV,       /* n_kv_heads * head_dim */
    DSD_QLORA,        /* q_lora_rank */
    DSD_MLA_Q,        /* n_heads * (qk_nope + qk_rope) */
    DSD_MLA_KVA,      /* kv_lora_rank + qk_rope */
    DSD_KVLORA,       /* kv_lora_rank */
    DSD_MLA_KVB,      /* n_heads * (qk_nope + v_head) */
    DSD_MLA_O,        /* n_heads * v_head */
    DSD_EXPERTS,      /* n_routed_experts */
    DSD_SHARED,       /* moe_intermediate_size * n_shared_experts */
    DSD_MOE_INTER,    /* moe_intermediate_size */
    DSD_INTER         /* intermediate_size */
};

typedef struct dsa_entry {
    const char *name;        /* after "model.layers.L." (experts: after "model.layers.L.mlp.experts.X.") */
    uint8_t when;            /* DSA_* */
    uint8_t rows, cols;      /* DSD_*; cols DSD_NONE: a 1-D tensor of `rows` values */
    bool keep_f32;
    size_t field;            /* offsetof(dsi_layer, a dsi_weight); for experts the template */
    int part;                /* experts: 0 gate, 1 up, 2 down (dsi_expert_ref.off) */
} dsa_entry;

#define DSA_F(f) offsetof(dsi_layer, f)

/* In the order the converter writes them (the container's layout). */
static const dsa_entry dsa_layer[] = {
    {"input_layernorm.weight", DSA_ALL, DSD_HIDDEN, DSD_NONE, true, DSA_F(attn_norm), 0},
    {"self_attn.q_proj.weight", DSA_MHA, DSD_MHA_Q, DSD_HIDDEN, false, DSA_F(wq), 0},
    {"self_attn.k_proj.weight", DSA_MHA, DSD_MHA_KV, DSD_HIDDEN, false, DSA_F(wk), 0},
    {"self_attn.v_proj.weight", DSA_MHA, DSD_MHA_KV, DSD_HIDDEN, false, DSA_F(wv), 0},
    {"self_attn.o_proj.weight", DSA_MHA, DSD_HIDDEN, DSD_MHA_Q, false, DSA_F(wo), 0},
    {"self_attn.q_a_proj.weight", DSA_MLA_QLORA, DSD_QLORA, DSD_HIDDEN, false, DSA_F(q_a), 0},
    {"self_attn.q_a_layernorm.weight", DSA_MLA_QLORA, DSD_QLORA, DSD_NONE, true, DSA_F(q_a_norm), 0},
    {"self_attn.q_b_proj.weight", DSA_MLA_QLORA, DSD_MLA_Q, DSD_QLORA, false, DSA_F(q_b), 0},
    {"self_attn.q_proj.weight", DSA_MLA_Q, DSD_MLA_Q, DSD_HIDDEN, false, DSA_F(q_proj), 0},
    {"self_attn.kv_a_proj_with_mqa.weight", DSA_MLA, DSD_MLA_KVA, DSD_HIDDEN, false, DSA_F(kv_a), 0},
    {"self_attn.kv_a_layernorm.weight", DSA_MLA, DSD_KVLORA, DSD_NONE, true, DSA_F(kv_a_norm), 0},
    {"self_attn.kv_b_proj.weight", DSA_MLA, DSD_MLA_KVB, DSD_KVLORA, false, DSA_F(kv_b), 0},
    {"self_attn.o_proj.weight", DSA_MLA, DSD_HIDDEN, DSD_MLA_O, false, DSA_F(wo), 0},
    {"post_attention_layernorm.weight", DSA_ALL, DSD_HIDDEN, DSD_NONE, true, DSA_F(ffn_norm), 0},
    {"mlp.gate.weight", DSA_MOE, DSD_EXPERTS, DSD_HIDDEN, false, DSA_F(router), 0},
    {"mlp.gate.e_score_correction_bias", DSA_MOE_BIAS, DSD_EXPERTS, DSD_NONE, true, DSA_F(bias), 0},
    {"mlp.shared_experts.gate_proj.weight", DSA_MOE_SHARED, DSD_SHARED, DSD_HIDDEN, false, DSA_F(gate), 0},
    {"mlp.shared_experts.up_proj.weight", DSA_MOE_SHARED, DSD_SHARED, DSD_HIDDEN, false, DSA_F(up), 0},
    {"mlp.shared_experts.down_proj.weight", DSA_MOE_SHARED, DSD_HIDDEN, DSD_SHARED, false, DSA_F(down), 0},
    {"gate_proj.weight", DSA_EXPERT, DSD_MOE_INTER, DSD_HIDDEN, false, DSA_F(exp_gate), 0},
    {"up_proj.weight", DSA_EXPERT, DSD_MOE_INTER, DSD_HIDDEN, false, DSA_F(exp_up), 1},
    {"down_proj.weight", DSA_EXPERT, DSD_HIDDEN, DSD_MOE_INTER, false, DSA_F(exp_down), 2},
    {"mlp.gate_proj.weight", DSA_DENSE, DSD_INTER, DSD_HIDDEN, false, DSA_F(gate), 0},
    {"mlp.up_proj.weight", DSA_DENSE, DSD_INTER, DSD_HIDDEN, false, DSA_F(up), 0},
    {"mlp.down_proj.weight", DSA_DENSE, DSD_HIDDEN, DSD_INTER, false, DSA_F(down), 0},
};
#define DSA_N_LAYER (sizeof dsa_layer / sizeof dsa_layer[0])

static uint64_t dsa_dim(const ds_model_config *c, int d) {
    uint64_t nh = (uint64_t)c->n_heads;
    switch (d) {
    case DSD_HIDDEN: return (uint64_t)c->hidden_size;
    case DSD_VOCAB: return (uint64_t)c->vocab_size;
    case DSD_MHA_Q: return nh * (uint64_t)c->head_dim;
    case DSD_MHA_KV: return (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    case DSD_QLORA: return (uint64_t)c->q_lora_rank;
    case DSD_MLA_Q: return nh * ((uint64_t)c->qk_nope_head_dim + (uint64_t)c->qk_rope_head_dim);
    case DSD_MLA_KVA: return (uint64_t)c->kv_lora_rank + (uint64_t)c->qk_rope_head_dim;
    case DSD_KVLORA: return (uint64_t)c->kv_lora_rank;
    case DSD_MLA_KVB: return nh * ((uint64_t)c->qk_nope_head_dim + (uint64_t)c->v_head_dim);
    case DSD_MLA_O: return nh * (uint64_t)c->v_head_dim;
    case DSD_EXPERTS: return (uint64_t)c->n_routed_experts;
    case DSD_SHARED: return (uint64_t)c->moe_intermediate_size * (uint64_t)c->n_shared_experts;
    case DSD_MOE_INTER: return (uint64_t)c->moe_intermediate_size;
    case DSD_INTER: return (uint64_t)c->intermediate_size;
    default: return 0;
    }
}

/* Whether entry x exists in layer l. */
static bool dsa_present(const ds_model_config *c, const dsa_entry *x, int l) {
    bool mla = dsi_arch_attention_mla(c), moe = dsi_config_is_moe_layer(c, l);
    switch (x->when) {
    case DSA_ALL: return true;
    case DSA_MHA: return !mla;
    case DSA_MLA: return mla;
    case DSA_MLA_QLORA: return mla && c->q_lora_rank > 0;   /* dsi_weights.qlora */
    case DSA_MLA_Q: return mla && c->q_lora_rank <= 0;
    case DSA_DENSE: return !moe;
    case DSA_MOE: return moe;
    case DSA_MOE_BIAS: return moe && c->topk_method == DS_TOPK_NOAUX_TC;
    case DSA_MOE_SHARED: return moe && c->n_shared_experts > 0;
    case DSA_EXPERT: return moe;
    default: return false;
    }
}

/* ==== Tensor specs (the converter's list, the directory check) =========== */
typedef struct dsa_spec_list {
    dsi_tensor_spec *v;
    size_t n, cap;        /* cap == 0: counting pass only */
    bool overflow;        /* a name did not fit */
} dsa_spec_list;

static void dsa_spec_add(dsa_spec_list *l, int layer, int expert, uint32_t kind, bool keep_f32, int pclass, uint64_t d0,
                         uint64_t d1, const char *fmt, ...) DSI_PRINTF(9, 10);

/* d1 == 0 means a 1-D tensor of d0 elements. */
static void dsa_spec_add(dsa_spec_list *l, int layer, int expert, uint32_t kind, bool keep_f32, int pclass, uint64_t d0,
                         uint64_t d1, const char *fmt, ...) {
    if (l->n < l->cap) {
        dsi_tensor_spec *t = &l->v[l->n];
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->name, sizeof t->name, fmt, ap);
        va_end(ap);
        if (w < 0 || (size_t)w >= sizeof t->name) l->overflow = true;
        t->n_dims = d1 ? 2 : 1;
        t->dims[0] = d0;
        t->dims[1] = d1;
        t->keep_f32 = keep_f32 || !d1;
        t->seg_kind = kind;
        t->pclass = pclass;
        t->layer = layer;
        t->expert = expert;
    }
    l->n++;
}

/* The full name of a layer entry ("model.layers.L." and its name; experts
 * "model.layers.L.mlp.experts.X." and theirs) into buf. Returns false when
 * it does not fit. */
static bool dsa_name(const dsa_entry *x, int l, int expert, char *buf, size_t len) {
    int w = x->when == DSA_EXPERT ? snprintf(buf, len, "model.layers.%d.mlp.experts.%d.%s", l, expert, x->name)
                                  : snprintf(buf, len, "model.layers.%d.%s", l, x->name);
    return w >= 0 && (size_t)w < len;
}

/* One pass over the architecture; with cap == 0 it only counts. */
static void dsa_spec_walk(const ds_model_config *c, dsa_spec_list *l) {
    const uint32_t D = DS_SEGMENT_DENSE, X = DS_SEGMENT_EXPERT;
    const int CORE = DS_PARAM_CORE;
    dsa_spec_add(l, -1, -1, D, false, CORE, dsa_dim(c, DSD_VOCAB), dsa_dim(c, DSD_HIDDEN), "model.embed_tokens.weight");
    for (int i = 0; i < c->n_layers; i++) {
        for (size_t k = 0; k < DSA_N_LAYER; k++) {
            const dsa_entry *x = &dsa_layer[k];
            if (!dsa_present(c, x, i)) continue;
            uint64_t d0 = dsa_dim(c, x->rows), d1 = dsa_dim(c, x->cols);
            if (x->when != DSA_EXPERT) {
                char name[96];
                if (!dsa_name(x, i, -1, name, sizeof name)) l->overflow = true;
                bool router = x->field == DSA_F(router) || x->field == DSA_F(bias);
                dsa_spec_add(l, i, -1, D, x->keep_f32, router ? DS_PARAM_ROUTER : CORE, d0, d1, "%s", name);
                continue;
            }
            /* the experts' three matrices, expert by expert (each expert's
             * segment holds its gate, up and down together) */
            for (int e = 0; e < c->n_routed_experts; e++)
                for (size_t p = 0; p < 3; p++) {
                    const dsa_entry *y = &dsa_layer[k + p];
                    char name[96];
                    if (!dsa_name(y, i, e, name, sizeof name)) l->overflow = true;
                    dsa_spec_add(l, i, e, X, y->keep_f32, DS_PARAM_EXPERT, dsa_dim(c, y->rows), dsa_dim(c, y->cols),
                                 "%s", name);
                }
            k += 2;
        }
    }
    dsa_spec_add(l, c->n_layers, -1, D, true, CORE, dsa_dim(c, DSD_HIDDEN), 0, "model.norm.weight");
    if (!c->tie_word_embeddings)
        dsa_spec_add(l, c->n_layers, -1, D, false, CORE, dsa_dim(c, DSD_VOCAB), dsa_dim(c, DSD_HIDDEN),
                     "lm_head.weight");
}

DSI_FUNC ds_status dsi_arch_tensor_specs(const ds_model_config *cfg, const dsi_alloc *al, dsi_tensor_spec **out,
                                         size_t *n, dsi_err *e) {
    if (!cfg || !al || !out || !n) return dsi_fail(e, DS_ERR_INVALID_ARG, "dsi_arch_tensor_specs: NULL argument");
    *out = NULL;
    *n = 0;
    if (cfg->arch != DS_ARCH_DEEPSEEK_V2 && cfg->arch != DS_ARCH_DEEPSEEK_V3 && cfg->arch != DS_ARCH_DEEPSEEK_MOE)
        return dsi_fail(e, DS_ERR_ARCH, "unsupported architecture id %d", (int)cfg->arch);
    /* The config may come from a caller rather than dsi_config_parse: the
     * walk relies on these bounds (products of two of them fit in 64 bits). */
    if (cfg->n_layers < 1 || cfg->n_layers > DS_MAX_LAYERS || cfg->n_routed_experts < 0 ||
        cfg->n_routed_experts > DS_MAX_EXPERTS || cfg->n_shared_experts < 0 || cfg->hidden_size < 1 ||
        cfg->vocab_size < 1 || cfg->n_heads < 1 || cfg->n_kv_heads < 0 || cfg->head_dim < 0 ||
        cfg->intermediate_size < 0 || cfg->moe_intermediate_size < 0 || cfg->q_lora_rank < 0 ||
        cfg->kv_lora_rank < 0 || cfg->qk_nope_head_dim < 0 || cfg->qk_rope_head_dim < 0 || cfg->v_head_dim < 0 ||
        cfg->moe_layer_freq < 1 || cfg->first_k_dense_replace < 0)
        return dsi_fail(e, DS_ERR_CONFIG, "model config is out of range");

    dsa_spec_list l = {0};
    dsa_spec_walk(cfg, &l);
    if (l.n > DS_MAX_TENSORS)
        return dsi_fail(e, DS_ERR_LIMIT, "the architecture needs %zu tensors, more than DS_MAX_TENSORS (%u)", l.n,
                        (unsigned)DS_MAX_TENSORS);
    size_t count = l.n;
    l.v = dsi_calloc(al, count, sizeof *l.v);
    if (!l.v) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for a list of %zu tensors", count);
    l.cap = count;
    l.n = 0;
    l.overflow = false;
    dsa_spec_walk(cfg, &l);
    if (l.overflow || l.n != count) {
        dsi_free(al, l.v);
        return dsi_fail(e, DS_ERR_INTERNAL, "tensor name longer than %zu bytes", sizeof l.v[0].name - 1);
    }
    *out = l.v;
    *n = count;
    return DS_OK;
}

/* ==== Dropped experts ====================================================== */
DSI_FUNC void dsi_drop_free(dsi_expert_drop *d, const dsi_alloc *al) {
    if (!d) return;
    dsi_free(al, d->dropped);
    dsi_free(al, d->kept);
    dsi_free(al, d->n_kept);
    memset(d, 0, sizeof *d);
}

DSI_FUNC ds_status dsi_drop_init(dsi_expert_drop *d, const ds_model_config *c, uint8_t *dropped, double ratio,
                                 const dsi_alloc *al, dsi_err *e) {
    memset(d, 0, sizeof *d);
    d->dropped = dropped;
    d->n_layers = c->n_layers;
    d->n_experts = c->n_routed_experts;
    d->ratio = ratio;
    int L = c->n_layers, E = c->n_routed_experts, K = c->n_experts_per_tok;
    if (E < 1 || L < 1) {
        dsi_drop_free(d, al);
        return dsi_fail(e, DS_ERR_INVALID_ARG, "the model has no routed experts to drop");
    }
    d->kept = dsi_calloc(al, (size_t)L * (size_t)E, sizeof *d->kept);
    d->n_kept = dsi_calloc(al, (size_t)L, sizeof *d->n_kept);
    if (!d->kept || !d->n_kept) {
        dsi_drop_free(d, al);
        return dsi_fail(e, DS_ERR_NOMEM, "out of memory for the kept experts");
    }
    bool grouped = c->topk_method != DS_TOPK_GREEDY && c->n_group > 1;
    int G = grouped ? c->n_group : 1, per = E / G;
    for (int l = 0; l < L; l++) {
        int n = 0;
        for (int x = 0; x < E; x++) {
            if (!dsi_config_is_moe_layer(c, l)) dropped[(size_t)l * E + x] = 0;
            if (!dropped[(size_t)l * E + x]) d->kept[(size_t)l * E + n++] = x;
        }
        d->n_kept[l] = n;
        if (!dsi_config_is_moe_layer(c, l)) continue;
        if (n < K) {
            dsi_drop_free(d, al);
            return dsi_fail(e, DS_ERR_INVALID_ARG,
                            "layer %d would keep %d routed experts, fewer than num_experts_per_tok (%d)", l, n, K);
        }
        if (!grouped) continue;
        /* the worst choice of topk_group groups: those with the fewest left */
        int cnt[DS_MAX_EXPERTS];
        for (int g = 0; g < G; g++) {
            cnt[g] = 0;
            for (int i = 0; i < per; i++) cnt[g] += !dropped[(size_t)l * E + g * per + i];
        }
        for (int i = 1; i < G; i++)   /* ascending */
            for (int j = i; j > 0 && cnt[j - 1] > cnt[j]; j--) {
                int t = cnt[j];
                cnt[j] = cnt[j - 1];
                cnt[j - 1] = t;
            }
        int kg = c->topk_group < G ? c->topk_group : G, sum = 0;
        for (int g = 0; g < kg; g++) sum += cnt[g];
        if (sum < K) {
            dsi_drop_free(d, al);
            return dsi_fail(e, DS_ERR_INVALID_ARG,
                            "layer %d: the %d groups (topk_group) with the fewest experts left hold %d, fewer than "
                            "num_experts_per_tok (%d)", l, kg, sum, K);
        }
    }
    return DS_OK;
}

/* An array of distinct expert ids of one layer into flags: returns false on
 * a non-integer, out-of-range or repeated id. */
static bool dsa_drop_ids(const dsi_json *arr, int E, uint8_t *flags, uint8_t mark, int *count) {
    if (!arr || arr->type != DSI_JSON_ARRAY) return false;
    for (uint32_t i = 0; i < arr->n; i++) {
        const dsi_json *v = &arr->kids[i];
        if (v->type != DSI_JSON_NUMBER || !v->is_int || v->i < 0 || v->i >= E || flags[v->i]) return false;
        flags[v->i] = mark;
    }
    *count = (int)arr->n;
    return true;
}

DSI_FUNC ds_status dsi_drop_parse(const char *json, size_t len, const ds_model_config *c, const dsi_alloc *al,
                                  dsi_expert_drop *d, dsi_err *e) {
    memset(d, 0, sizeof *d);
    dsi_json_doc *doc = NULL;
    ds_status s = dsi_json_parse(json, len, al, &doc, e);
    if (s) {
        dsi_prefix(e, "expert record");
        return e->status = DS_ERR_CORRUPT;
    }
    const dsi_json *root = dsi_json_root(doc), *layers = dsi_json_get(root, "layers");
    int64_t n_routed = -1;
    double ratio = 0;
    int L = c->n_layers, E = c->n_routed_experts;
    uint8_t *dropped = NULL, *seen = NULL;
    if (!root || root->type != DSI_JSON_OBJECT || !layers || layers->type != DSI_JSON_OBJECT ||
        dsi_json_get_int(root, "n_routed_experts", &n_routed) != 1 || dsi_json_get_num(root, "ratio", &ratio) != 1) {
        s = dsi_fail(e, DS_ERR_CORRUPT, "expert record: not an object with n_routed_experts, ratio and layers");
        goto out;
    }
    if (n_routed != E || E < 1) {
        s = dsi_fail(e, DS_ERR_CORRUPT, "expert record: made for %lld routed experts, the config has %d",
                     (long long)n_routed, E);
        goto out;
    }
    dropped = dsi_calloc(al, (size_t)L * (size_t)E, 1);
    seen = dsi_calloc(al, (size_t)L, 1);
    if (!dropped || !seen) {
        s = dsi_fail(e, DS_ERR_NOMEM, "out of memory for the expert record");
        goto out;
    }
    for (uint32_t i = 0; i < layers->n; i++) {
        const dsi_json *ly = &layers->kids[i];
        char *end = NULL;
        char kb[16];
        long l = -1;
        if (ly->key_len > 0 && ly->key_len < sizeof kb) {
            memcpy(kb, ly->key, ly->key_len);
            kb[ly->key_len] = 0;
            l = strtol(kb, &end, 10);
        }
        if (!end || *end || l < 0 || l >= L || !dsi_config_is_moe_layer(c, (int)l) || seen[l]) {
            s = dsi_fail(e, DS_ERR_CORRUPT, "expert record: layer \"%.*s\" is not a MoE layer of the config (or "
                         "is listed twice)", (int)(ly->key_len < 16 ? ly->key_len : 16), ly->key);
            goto out;
        }
        seen[l] = 1;
        uint8_t flags[DS_MAX_EXPERTS] = {0};
        int nk = 0, nd = 0;
        if (!dsa_drop_ids(dsi_json_get(ly, "kept"), E, flags, 1, &nk) ||
            !dsa_drop_ids(dsi_json_get(ly, "dropped"), E, flags, 2, &nd) || nk + nd != E) {
            s = dsi_fail(e, DS_ERR_CORRUPT, "expert record: layer %ld: kept and dropped do not partition 0..%d", l,
                         E - 1);
            goto out;
        }
        for (int x = 0; x < E; x++) dropped[(size_t)l * E + x] = flags[x] == 2;
    }
    s = dsi_drop_init(d, c, dropped, ratio, al, e);
    dropped = NULL;
    if (s == DS_ERR_INVALID_ARG) {
        dsi_prefix(e, "expert record");
        s = e->status = DS_ERR_CORRUPT;
    }
out:
    dsi_free(al, dropped);
    dsi_free(al, seen);
    dsi_json_free(doc);
    return s;
}

DSI_FUNC void dsi_drop_specs(const dsi_expert_drop *d, dsi_tensor_spec *specs, size_t *n) {
    if (!d) return;
    size_t o = 0;
    for (size_t i = 0; i < *n; i++) {
        dsi_tensor_spec *t = &specs[i];
        if (t->expert >= 0 && t->layer >= 0 && t->layer < d->n_layers && dsi_expert_dropped(d, t->layer, t->expert))
            continue;
        if (t->pclass == DS_PARAM_ROUTER && t->layer >= 0 && t->layer < d->n_layers)
            t->dims[0] = (uint64_t)d->n_kept[t->layer];
        if (o != i) specs[o] = *t;
        o++;
    }
    *n = o;
}

/* ==== LoRA targets ========================================================= */
static const char *const dsa_lora_names[DSI_LM_N] = {
    "q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
    "q_proj", "k_proj",   "v_proj",   "gate_proj",          "up_proj",   "down_proj"};

DSI_FUNC const char *dsi_lora_module_name(int mod) {
    return mod >= 0 && mod < DSI_LM_N ? dsa_lora_names[mod] : "?";
}

/* The DSI_LM_* of a layer entry's field, or -1 (norms, the router). */
static int dsa_lora_mod(size_t field) {
    static const struct { size_t field; int mod; } map[] = {
        {DSA_F(q_proj), DSI_LM_Q_PROJ}, {DSA_F(q_a), DSI_LM_Q_A}, {DSA_F(q_b), DSI_LM_Q_B},
        {DSA_F(kv_a), DSI_LM_KV_A},     {DSA_F(kv_b), DSI_LM_KV_B}, {DSA_F(wo), DSI_LM_O},
        {DSA_F(wq), DSI_LM_WQ},         {DSA_F(wk), DSI_LM_WK},     {DSA_F(wv), DSI_LM_WV},
        {DSA_F(gate), DSI_LM_GATE},     {DSA_F(up), DSI_LM_UP},     {DSA_F(down), DSI_LM_DOWN}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].field == field) return map[i].mod;
    return -1;
}

DSI_FUNC ds_status dsi_arch_lora_targets(const ds_model_config *c, const dsi_alloc *al, dsi_lora_target **out,
                                         size_t *n, dsi_err *e) {
    dsi_tensor_spec *sp = NULL;
    size_t ns = 0;
    *out = NULL;
    *n = 0;
    ds_status s = dsi_arch_tensor_specs(c, al, &sp, &ns, e);   /* checks the config's ranges */
    if (s) return s;
    size_t cap = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        for (int l = 0; l < c->n_layers; l++)
            for (size_t i = 0; i < DSA_N_LAYER; i++) {
                const dsa_entry *x = &dsa_layer[i];
                int mod = x->when == DSA_EXPERT ? -1 : dsa_lora_mod(x->field);
                if (!dsa_present(c, x, l) || (mod < 0 && x->when != DSA_EXPERT)) continue;
                int n_exp = x->when == DSA_EXPERT ? c->n_routed_experts : 1;
                for (int xe = 0; xe < n_exp; xe++, k++) {
                    if (!pass) continue;
                    dsi_lora_target *t = &(*out)[k];
                    char name[96];
                    (void)dsa_name(x, l, x->when == DSA_EXPERT ? xe : -1, name, sizeof name);
                    size_t nl = strlen(name);
                    if (nl > 7) nl -= 7;   /* without ".weight" */
                    memcpy(t->path, name, nl);
                    t->path[nl] = 0;
                    t->mod = mod;
                    t->part = x->when == DSA_EXPERT ? x->part : 0;
                    t->module = mod >= 0 ? dsa_lora_names[mod] : x->part == 0 ? "gate_proj" : x->part == 1 ? "up_proj"
                                                                                                            : "down_proj";
                    t->layer = l;
                    t->expert = x->when == DSA_EXPERT ? xe : -1;
                    t->out = (int)dsa_dim(c, x->rows);
                    t->in = (int)dsa_dim(c, x->cols);
                }
            }
        if (!pass) {
            cap = k;
            *out = dsi_calloc(al, cap ? cap : 1, sizeof **out);
            if (!*out) {
                dsi_free(al, sp);
                return dsi_fail(e, DS_ERR_NOMEM, "out of memory for %zu LoRA targets", cap);
            }
        }
    }
    dsi_free(al, sp);
    *n = cap;
    return DS_OK;
}

/* ==== Binding ============================================================== */
/* w from the directory's tensor `name`: shape, dtype, offset, and the bytes
 * when its segment is resident (NULL for routed experts). */
static ds_status dsa_bind(const dsi_model_file *f, dsi_weight *w, const char *name, size_t *index, dsi_err *e) {
    const dsi_tensor *t = dsi_file_tensor(f, name, index);
    if (!t) return dsi_fail(e, DS_ERR_MISSING_TENSOR, "tensor %s is missing", name);
    w->dtype = (ds_dtype)t->dtype;
    w->rows = t->n_dims == 2 ? (int)t->dims[0] : 1;
    w->cols = (int)t->dims[t->n_dims - 1];
    uint64_t rb = 0;
    (void)dsi_tensor_row_bytes(w->dtype, (uint64_t)w->rows, (uint64_t)w->cols, t->nbytes, &rb);   /* checked when opened */
    w->row_bytes = (size_t)rb;
    w->offset = t->offset;
    w->data = f->dense && f->dense[t->segment].ptr ? (const uint8_t *)f->dense[t->segment].ptr + t->offset : NULL;
    return DS_OK;
}

DSI_FUNC ds_status dsi_arch_bind(const dsi_model_file *f, const ds_model_config *c, const dsi_alloc *al,
                                 dsi_weights *W, dsi_err *e) {
    ds_status s;
    size_t idx;
    memset(W, 0, sizeof *W);
    W->mla = dsi_arch_attention_mla(c);
    W->qlora = W->mla && c->q_lora_rank > 0;
    if ((s = dsa_bind(f, &W->embed, "model.embed_tokens.weight", &idx, e))) return s;
    if ((s = dsa_bind(f, &W->out_norm, "model.norm.weight", &idx, e))) return s;
    if (c->tie_word_embeddings) W->lm_head = W->embed;
    else if ((s = dsa_bind(f, &W->lm_head, "lm_head.weight", &idx, e))) return s;
    W->layers = dsi_calloc(al, (size_t)c->n_layers, sizeof *W->layers);
    if (!W->layers) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        dsi_layer *L = &W->layers[l];
        L->moe = dsi_config_is_moe_layer(c, l);
        for (size_t k = 0; k < DSA_N_LAYER; k++) {
            const dsa_entry *x = &dsa_layer[k];
            if (!dsa_present(c, x, l)) continue;
            char name[128];
            int first = 0;   /* the first expert present */
            while (first < c->n_routed_experts - 1 && dsi_expert_dropped(f->drop, l, first)) first++;
            if (!dsa_name(x, l, first, name, sizeof name))
                return dsi_fail(e, DS_ERR_INTERNAL, "tensor name of layer %d too long", l);
            /* experts: the first present gives the shapes and dtypes of all */
            if ((s = dsa_bind(f, (dsi_weight *)(void *)((char *)L + x->field), name, &idx, e))) return s;
        }
        if (!L->moe) continue;
        L->experts = dsi_calloc(al, (size_t)c->n_routed_experts, sizeof *L->experts);
        if (!L->experts) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
        if (f->drop && f->drop->n_kept[l] < c->n_routed_experts) {
            L->kept = f->drop->kept + (size_t)l * (size_t)c->n_routed_experts;
            L->n_kept = f->drop->n_kept[l];
            if (L->router.rows != L->n_kept || (L->bias.data && L->bias.cols != L->n_kept))
                return dsi_fail(e, DS_ERR_SHAPE, "layer %d: the router has %d rows for %d kept experts", l,
                                L->router.rows, L->n_kept);
        }
        for (int xe = 0; xe < c->n_routed_experts; xe++) {
            dsi_expert_ref *r = &L->experts[xe];
            if (dsi_expert_dropped(f->drop, l, xe)) {   /* no tensors, no segment; never routed to */
                r->segment = UINT32_MAX;
                continue;
            }
            for (size_t k = 0; k < DSA_N_LAYER; k++) {
                const dsa_entry *x = &dsa_layer[k];
                if (x->when != DSA_EXPERT) continue;
                char name[128];
                if (!dsa_name(x, l, xe, name, sizeof name))
                    return dsi_fail(e, DS_ERR_INTERNAL, "tensor name of layer %d too long", l);
                const dsi_tensor *t = dsi_file_tensor(f, name, &idx);
                if (!t) return dsi_fail(e, DS_ERR_MISSING_TENSOR, "tensor %s is missing", name);
                /* the kernels take every expert's rows as the template's
                 * (expert 0's): the same format and, for Q8_0_SP, stride */
                const dsi_weight *tw = (const dsi_weight *)(const void *)((const char *)L + x->field);
                uint64_t rb = 0;
                if (t->dtype != (uint32_t)tw->dtype)
                    return dsi_fail(e, DS_ERR_SHAPE, "tensor %s is stored as %s, expert 0 of layer %d as %s: the routed "
                                    "experts of a layer share one format", name, ds_dtype_name((ds_dtype)t->dtype), l,
                                    ds_dtype_name(tw->dtype));
                if (!dsi_tensor_row_bytes(tw->dtype, (uint64_t)tw->rows, (uint64_t)tw->cols, t->nbytes, &rb) ||
                    rb != (uint64_t)tw->row_bytes)
                    return dsi_fail(e, DS_ERR_SHAPE, "tensor %s: rows of %llu bytes, expert 0 of layer %d has rows of "
                                    "%zu: the routed experts of a layer share one row stride", name,
                                    (unsigned long long)rb, l, tw->row_bytes);
                if (x->part == 0) r->segment = t->segment;
                else if (t->segment != r->segment)
                    return dsi_fail(e, DS_ERR_CORRUPT, "expert %d of layer %d is split across segments", xe, l);
                r->off[x->part] = t->offset;
            }
        }
    }
    return DS_OK;
}

DSI_FUNC void dsi_arch_unbind(dsi_weights *W, int n_layers, const dsi_alloc *al) {
    if (!W->layers) return;
    for (int l = 0; l < n_layers; l++) dsi_free(al, W->layers[l].experts);
    dsi_free(al, W->layers);
    W->layers = NULL;
}
