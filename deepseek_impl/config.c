/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * config.c — the model config: Hugging Face config.json -> ds_model_config
 * (the tensors each architecture needs are listed in arch.c).
 *
 * Three architectures, named by config.json "architectures"[0]:
 *
 *   DeepseekV2ForCausalLM   DeepSeek-V2, V2-Lite, V2.5: MLA attention (with or
 *                           without q-LoRA), softmax router, greedy or
 *                           group-limited greedy top-k
 *   DeepseekV3ForCausalLM   DeepSeek-V3, R1: MLA with q-LoRA, sigmoid router
 *                           with e_score_correction_bias, noaux_tc group top-k
 *   DeepseekForCausalLM     DeepSeek-MoE 16B: multi-head attention (q/k/v/o),
 *                           softmax router, greedy top-k
 *
 * A field absent from config.json takes the default of the reference
 * implementation that ships with those checkpoints (deepseek-ai's
 * configuration_deepseek.py for each family, which transformers'
 * DeepseekV3Config repeats). Four fields every real config has and no default
 * can stand in for are required: vocab_size, hidden_size, num_hidden_layers,
 * num_attention_heads; so are the fields whose reference default is None but
 * which the model then needs (num_experts_per_tok when there are routed
 * experts, n_group/topk_group for group-limited routing in V2). JSON null
 * means "absent" except for q_lora_rank, where null (V2-Lite) means "no
 * q-LoRA" while a missing field takes the default rank.
 *
 * Combinations the reference code rejects (a V2 router with sigmoid scores,
 * a V3 router other than sigmoid/noaux_tc, attention biases, activations
 * other than SiLU, RoPE scaling other than YaRN) are refused here, so the
 * runtime never runs a model differently from its reference.
 */
#include "format.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

/* ==== Architectures and their defaults ===================================== */
typedef struct dsc_arch_info {
    const char *hf_name;
    ds_arch arch;
    /* defaults when the field is absent */
    int intermediate_size, moe_intermediate_size;
    int n_routed_experts, n_shared_experts, n_experts_per_tok; /* -1: required if routed > 0 */
    int first_k_dense_replace;
    int n_group, topk_group;                                   /* -1: required for grouped top-k */
    ds_topk_method topk_method;
    ds_scoring scoring;
    int norm_topk_prob;
    float routed_scaling_factor;
    int max_position_embeddings;
} dsc_arch_info;

static const dsc_arch_info dsc_archs[] = {
    /* deepseek-ai DeepSeek-V2 configuration_deepseek.py: n_routed_experts None
     * (a dense model), topk_method 'gready' (sic, read as greedy). */
    {"DeepseekV2ForCausalLM", DS_ARCH_DEEPSEEK_V2, 11008, 1407, 0, 0, -1, 0, -1, -1, DS_TOPK_GREEDY,
     DS_SCORING_SOFTMAX, 0, 1.0f, 2048},
    /* deepseek-ai DeepSeek-V3 configuration_deepseek.py (= transformers' DeepseekV3Config). */
    {"DeepseekV3ForCausalLM", DS_ARCH_DEEPSEEK_V3, 18432, 2048, 256, 1, 8, 3, 8, 4, DS_TOPK_NOAUX_TC,
     DS_SCORING_SIGMOID, 1, 2.5f, 4096},
    /* deepseek-ai DeepSeek-MoE configuration_deepseek.py: no topk_method or
     * routed_scaling_factor at all (plain softmax top-k, weights unscaled). */
    {"DeepseekForCausalLM", DS_ARCH_DEEPSEEK_MOE, 11008, 1407, 0, 0, -1, 0, 1, 1, DS_TOPK_GREEDY,
     DS_SCORING_SOFTMAX, 0, 1.0f, 2048},
};
#define DSC_N_ARCHS (sizeof dsc_archs / sizeof dsc_archs[0])
#define DSC_ARCH_LIST "DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, DeepseekForCausalLM"

/* DeepSeek-V2/V3 MLA defaults (identical in both families). */
#define DSC_DEF_Q_LORA 1536
#define DSC_DEF_KV_LORA 512
#define DSC_DEF_QK_NOPE 128
#define DSC_DEF_QK_ROPE 64
#define DSC_DEF_V_HEAD 128
/* DeepseekV2YarnRotaryEmbedding's keyword defaults. */
#define DSC_DEF_YARN_ORIG_MAX 4096
#define DSC_DEF_YARN_BETA_FAST 32.0
#define DSC_DEF_YARN_BETA_SLOW 1.0
#define DSC_DEF_YARN_MSCALE 1.0
#define DSC_DEF_YARN_MSCALE_ALL_DIM 0.0

#define DSC_DIM_MAX ((int64_t)DS_MAX_DIM)

/* ==== Typed field readers ================================================== */
/* Each reads one member of obj (named prefix + key in messages), applies the
 * default when it is absent or null, range-checks it, and fails with
 * DS_ERR_CONFIG naming the field. */

/* Copies s into buf for a message: at most 64 bytes, control bytes as '?'. */
static const char *dsc_quote(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap; i++) {
        if (i == 64) {
            memcpy(buf + k, "...", 3);
            k += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        buf[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[k] = 0;
    return buf;
}

static ds_status dsc_int(const dsi_json *obj, const char *prefix, const char *key, bool required, int64_t def,
                             int64_t lo, int64_t hi, int *out, dsi_err *e) {
    int64_t v = 0;
    int r = dsi_json_get_int(obj, key, &v);
    if (r < 0) return dsi_fail(e, DS_ERR_CONFIG, "field '%s%s' must be an integer", prefix, key);
    if (r == 0) {
        if (required) return dsi_fail(e, DS_ERR_CONFIG, "required field '%s%s' is missing", prefix, key);
        v = def;
    }
    if (v < lo || v > hi)
        return dsi_fail(e, DS_ERR_CONFIG, "field '%s%s' = %lld is out of range (%lld..%lld)", prefix, key,
                        (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return DS_OK;
}

/* Floats: finite, within [lo, hi]; lo itself excluded when lo_open. */
static ds_status dsc_num(const dsi_json *obj, const char *prefix, const char *key, double def, double lo,
                             bool lo_open, double hi, float *out, dsi_err *e) {
    double v = def;
    int r = dsi_json_get_num(obj, key, &v);
    if (r < 0) return dsi_fail(e, DS_ERR_CONFIG, "field '%s%s' must be a number", prefix, key);
    if (r == 0) v = def;
    if (!isfinite(v) || v < lo || (lo_open && v == lo) || v > hi)
        return dsi_fail(e, DS_ERR_CONFIG, "field '%s%s' = %g is out of range (%s%g..%g)", prefix, key, v,
                        lo_open ? ">" : "", lo, hi);
    *out = (float)v;
    return DS_OK;
}

static ds_status dsc_bool(const dsi_json *obj, const char *key, bool def, int *out, dsi_err *e) {
    bool v = def;
    int r = dsi_json_get_bool(obj, key, &v);
    if (r < 0) return dsi_fail(e, DS_ERR_CONFIG, "field '%s' must be true or false", key);
    *out = r == 0 ? def : v;
    return DS_OK;
}

/* String field: *out NULL when absent or null. */
static ds_status dsc_str(const dsi_json *obj, const char *prefix, const char *key, const char **out, size_t *len,
                             dsi_err *e) {
    *out = NULL;
    *len = 0;
    int r = dsi_json_get_str(obj, key, out, len);
    if (r < 0) return dsi_fail(e, DS_ERR_CONFIG, "field '%s%s' must be a string", prefix, key);
    if (r == 0) *out = NULL;
    return DS_OK;
}

static bool dsc_str_is(const char *s, size_t n, const char *lit) {
    return s && n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* bos/eos: an integer, or (eos in some configs) a list whose first entry is
 * used; -1 when absent. */
static ds_status dsc_token_id(const dsi_json *root, const char *key, int vocab, int *out, dsi_err *e) {
    const dsi_json *v = dsi_json_get(root, key);
    *out = -1;
    if (!v || v->type == DSI_JSON_NULL) return DS_OK;
    const dsi_json *num = v;
    if (v->type == DSI_JSON_ARRAY) {
        if (v->n == 0) return DS_OK;
        num = &v->kids[0];
    }
    if (num->type != DSI_JSON_NUMBER || !num->is_int)
        return dsi_fail(e, DS_ERR_CONFIG, "field '%s' must be an integer token id", key);
    if (num->i < 0 || num->i >= vocab)
        return dsi_fail(e, DS_ERR_CONFIG, "field '%s' = %lld is outside the vocabulary (0..%d)", key,
                        (long long)num->i, vocab - 1);
    *out = (int)num->i;
    return DS_OK;
}

/* ==== RoPE scaling ========================================================= */
/* rope_scaling: null, or {"type" or "rope_type": "yarn", factor, ...}. A
 * config re-saved by recent transformers may carry "rope_parameters" instead
 * (with rope_theta inside and rope_type "default" for no scaling). */
static ds_status dsc_rope(const dsi_json *root, ds_model_config *c, dsi_err *e) {
    const char *field = "rope_scaling";
    const dsi_json *rs = dsi_json_get(root, "rope_scaling");
    if (!rs || rs->type == DSI_JSON_NULL) {
        const dsi_json *rp = dsi_json_get(root, "rope_parameters");
        if (rp && rp->type != DSI_JSON_NULL) {
            rs = rp;
            field = "rope_parameters";
        }
    }
    c->rope_scaling_yarn = 0;
    c->rope_factor = 1.0f;
    c->rope_original_max_position = c->max_position_embeddings;
    c->rope_beta_fast = (float)DSC_DEF_YARN_BETA_FAST;
    c->rope_beta_slow = (float)DSC_DEF_YARN_BETA_SLOW;
    c->rope_mscale = (float)DSC_DEF_YARN_MSCALE;
    c->rope_mscale_all_dim = (float)DSC_DEF_YARN_MSCALE_ALL_DIM;
    if (!rs || rs->type == DSI_JSON_NULL) return DS_OK;
    if (rs->type != DSI_JSON_OBJECT) return dsi_fail(e, DS_ERR_CONFIG, "field '%s' must be an object or null", field);

    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.", field);
    ds_status s;
    if (rs == dsi_json_get(root, "rope_parameters") &&
        (s = dsc_num(rs, prefix, "rope_theta", c->rope_theta, 0.0, true, 1e12, &c->rope_theta, e)))
        return s;

    const char *type = NULL;
    size_t tlen = 0;
    if ((s = dsc_str(rs, prefix, "type", &type, &tlen, e))) return s;
    if (!type && (s = dsc_str(rs, prefix, "rope_type", &type, &tlen, e))) return s;
    if (!type) return dsi_fail(e, DS_ERR_CONFIG, "field '%s' has no 'type'", field);
    if (dsc_str_is(type, tlen, "default")) return DS_OK;
    if (!dsc_str_is(type, tlen, "yarn")) {
        char q[80];
        return dsi_fail(e, DS_ERR_CONFIG, "%s type '%s' is not supported (only 'yarn')", field,
                        dsc_quote(type, tlen, q, sizeof q));
    }
    c->rope_scaling_yarn = 1;
    double factor = 0;
    int r = dsi_json_get_num(rs, "factor", &factor);
    if (r == 0) return dsi_fail(e, DS_ERR_CONFIG, "required field '%sfactor' is missing", prefix);
    if ((s = dsc_num(rs, prefix, "factor", 1.0, 1.0, false, 1e6, &c->rope_factor, e))) return s;
    if ((s = dsc_int(rs, prefix, "original_max_position_embeddings", false, DSC_DEF_YARN_ORIG_MAX, 1, INT32_MAX,
                         &c->rope_original_max_position, e)))
        return s;
    if ((s = dsc_num(rs, prefix, "beta_fast", DSC_DEF_YARN_BETA_FAST, 0.0, true, 1e6, &c->rope_beta_fast, e)))
        return s;
    if ((s = dsc_num(rs, prefix, "beta_slow", DSC_DEF_YARN_BETA_SLOW, 0.0, true, 1e6, &c->rope_beta_slow, e)))
        return s;
    if ((s = dsc_num(rs, prefix, "mscale", DSC_DEF_YARN_MSCALE, 0.0, false, 1e6, &c->rope_mscale, e))) return s;
    if ((s = dsc_num(rs, prefix, "mscale_all_dim", DSC_DEF_YARN_MSCALE_ALL_DIM, 0.0, false, 1e6,
                         &c->rope_mscale_all_dim, e)))
        return s;
    if (c->rope_beta_slow > c->rope_beta_fast)
        return dsi_fail(e, DS_ERR_CONFIG, "%sbeta_slow (%g) is larger than beta_fast (%g)", prefix,
                        (double)c->rope_beta_slow, (double)c->rope_beta_fast);
    return DS_OK;
}

/* ==== Router =============================================================== */
static ds_status dsc_router(const dsi_json *root, const dsc_arch_info *a, ds_model_config *c, dsi_err *e) {
    ds_status s;
    const char *str;
    size_t len;
    char q[80];

    /* scoring_func: the reference code implements exactly one per family */
    c->scoring_func = a->scoring;
    if ((s = dsc_str(root, "", "scoring_func", &str, &len, e))) return s;
    if (str) {
        if (dsc_str_is(str, len, "softmax")) c->scoring_func = DS_SCORING_SOFTMAX;
        else if (dsc_str_is(str, len, "sigmoid")) c->scoring_func = DS_SCORING_SIGMOID;
        else
            return dsi_fail(e, DS_ERR_CONFIG, "scoring_func '%s' is not supported", dsc_quote(str, len, q, sizeof q));
        if (c->scoring_func != a->scoring)
            return dsi_fail(e, DS_ERR_CONFIG, "%s supports scoring_func '%s' only", a->hf_name,
                            a->scoring == DS_SCORING_SOFTMAX ? "softmax" : "sigmoid");
    }

    /* topk_method: DeepSeek-MoE has none (plain top-k) */
    c->topk_method = a->topk_method;
    if (a->arch != DS_ARCH_DEEPSEEK_MOE) {
        if ((s = dsc_str(root, "", "topk_method", &str, &len, e))) return s;
        if (str) {
            if (dsc_str_is(str, len, "greedy") || dsc_str_is(str, len, "gready")) c->topk_method = DS_TOPK_GREEDY;
            else if (dsc_str_is(str, len, "group_limited_greedy")) c->topk_method = DS_TOPK_GROUP_LIMITED_GREEDY;
            else if (dsc_str_is(str, len, "noaux_tc")) c->topk_method = DS_TOPK_NOAUX_TC;
            else
                return dsi_fail(e, DS_ERR_CONFIG, "topk_method '%s' is not supported",
                                dsc_quote(str, len, q, sizeof q));
        }
        if (a->arch == DS_ARCH_DEEPSEEK_V2 && c->topk_method == DS_TOPK_NOAUX_TC)
            return dsi_fail(e, DS_ERR_CONFIG, "%s supports topk_method 'greedy' or 'group_limited_greedy' only",
                            a->hf_name);
        if (a->arch == DS_ARCH_DEEPSEEK_V3 && c->topk_method != DS_TOPK_NOAUX_TC)
            return dsi_fail(e, DS_ERR_CONFIG, "%s supports topk_method 'noaux_tc' only", a->hf_name);
    }

    if ((s = dsc_bool(root, "norm_topk_prob", a->norm_topk_prob != 0, &c->norm_topk_prob, e))) return s;
    c->routed_scaling_factor = a->routed_scaling_factor;
    if (a->arch != DS_ARCH_DEEPSEEK_MOE &&
        (s = dsc_num(root, "", "routed_scaling_factor", a->routed_scaling_factor, 0.0, true, 1e6,
                         &c->routed_scaling_factor, e)))
        return s;

    if (c->n_routed_experts == 0) {
        c->n_experts_per_tok = 0;
        c->n_group = c->topk_group = 1;
        return DS_OK;
    }
    if ((s = dsc_int(root, "", "num_experts_per_tok", a->n_experts_per_tok < 0, a->n_experts_per_tok, 1,
                         c->n_routed_experts < DS_MAX_EXPERTS_PER_TOK ? c->n_routed_experts : DS_MAX_EXPERTS_PER_TOK,
                         &c->n_experts_per_tok, e)))
        return s;

    if (c->topk_method == DS_TOPK_GREEDY) {
        /* n_group / topk_group mean nothing to a plain top-k */
        c->n_group = c->topk_group = 1;
        return DS_OK;
    }
    bool req = a->n_group < 0;
    if ((s = dsc_int(root, "", "n_group", req, a->n_group, 1, c->n_routed_experts, &c->n_group, e))) return s;
    if ((s = dsc_int(root, "", "topk_group", req, a->topk_group, 1,
                     c->n_group < DS_MAX_TOPK_GROUP ? c->n_group : DS_MAX_TOPK_GROUP, &c->topk_group, e)))
        return s;
    if (c->n_routed_experts % c->n_group != 0)
        return dsi_fail(e, DS_ERR_CONFIG, "n_group (%d) does not divide n_routed_experts (%d)", c->n_group,
                        c->n_routed_experts);
    int per_group = c->n_routed_experts / c->n_group;
    if ((int64_t)c->topk_group * per_group < c->n_experts_per_tok)
        return dsi_fail(e, DS_ERR_CONFIG,
                        "topk_group (%d) groups of %d experts cannot supply num_experts_per_tok (%d)", c->topk_group,
                        per_group, c->n_experts_per_tok);
    /* noaux_tc ranks a group by the sum of its two best scores */
    if (c->topk_method == DS_TOPK_NOAUX_TC && per_group < 2)
        return dsi_fail(e, DS_ERR_CONFIG, "noaux_tc routing needs at least 2 experts per group (n_group %d, %d experts)",
                        c->n_group, c->n_routed_experts);
    return DS_OK;
}

/* ==== config.json ========================================================== */
static ds_status dsc_fill(const dsi_json *root, ds_model_config *c, dsi_err *e) {
    ds_status s;
    char q[80];
    if (!root || root->type != DSI_JSON_OBJECT) return dsi_fail(e, DS_ERR_CONFIG, "the top level is not a JSON object");

    /* architecture */
    const dsi_json *archs = dsi_json_get(root, "architectures");
    if (!archs || archs->type == DSI_JSON_NULL)
        return dsi_fail(e, DS_ERR_ARCH, "no 'architectures' entry (supported: " DSC_ARCH_LIST ")");
    if (archs->type != DSI_JSON_ARRAY || archs->n == 0 || archs->kids[0].type != DSI_JSON_STRING)
        return dsi_fail(e, DS_ERR_ARCH, "'architectures' must be a non-empty list of names (supported: " DSC_ARCH_LIST ")");
    const dsi_json *an = &archs->kids[0];
    const dsc_arch_info *a = NULL;
    for (size_t i = 0; i < DSC_N_ARCHS; i++)
        if (dsc_str_is(an->str, an->n, dsc_archs[i].hf_name)) a = &dsc_archs[i];
    if (!a)
        return dsi_fail(e, DS_ERR_ARCH, "unsupported architecture '%s' (supported: " DSC_ARCH_LIST ")",
                        dsc_quote(an->str, an->n, q, sizeof q));
    c->arch = a->arch;
    bool mla = a->arch != DS_ARCH_DEEPSEEK_MOE;

    /* features no DeepSeek checkpoint uses and the runtime does not implement */
    const char *str;
    size_t len;
    if ((s = dsc_str(root, "", "hidden_act", &str, &len, e))) return s;
    if (str && !dsc_str_is(str, len, "silu"))
        return dsi_fail(e, DS_ERR_CONFIG, "hidden_act '%s' is not supported (only 'silu')",
                        dsc_quote(str, len, q, sizeof q));
    int flag = 0;
    if ((s = dsc_bool(root, "attention_bias", false, &flag, e))) return s;
    if (flag) return dsi_fail(e, DS_ERR_CONFIG, "attention_bias true is not supported");

    /* sizes */
    if ((s = dsc_int(root, "", "vocab_size", true, 0, 1, DSC_DIM_MAX, &c->vocab_size, e))) return s;
    if ((s = dsc_int(root, "", "hidden_size", true, 0, 1, DSC_DIM_MAX, &c->hidden_size, e))) return s;
    if ((s = dsc_int(root, "", "num_hidden_layers", true, 0, 1, DS_MAX_LAYERS, &c->n_layers, e))) return s;
    if ((s = dsc_int(root, "", "num_attention_heads", true, 0, 1, DSC_DIM_MAX, &c->n_heads, e))) return s;
    if ((s = dsc_int(root, "", "num_key_value_heads", false, c->n_heads, 1, c->n_heads, &c->n_kv_heads, e)))
        return s;
    if ((s = dsc_int(root, "", "intermediate_size", false, a->intermediate_size, 1, DSC_DIM_MAX,
                         &c->intermediate_size, e)))
        return s;
    if ((s = dsc_int(root, "", "max_position_embeddings", false, a->max_position_embeddings, 1, INT32_MAX,
                         &c->max_position_embeddings, e)))
        return s;

    /* experts */
    if ((s = dsc_int(root, "", "n_routed_experts", false, a->n_routed_experts, 0, DS_MAX_EXPERTS,
                         &c->n_routed_experts, e)))
        return s;
    if ((s = dsc_int(root, "", "n_shared_experts", false, a->n_shared_experts, 0, DS_MAX_EXPERTS,
                         &c->n_shared_experts, e)))
        return s;
    if ((s = dsc_int(root, "", "moe_intermediate_size", false, a->moe_intermediate_size, 1, DSC_DIM_MAX,
                         &c->moe_intermediate_size, e)))
        return s;
    if ((int64_t)c->moe_intermediate_size * c->n_shared_experts > DSC_DIM_MAX)
        return dsi_fail(e, DS_ERR_CONFIG, "shared experts: moe_intermediate_size * n_shared_experts exceeds %lld",
                        (long long)DSC_DIM_MAX);
    if ((s = dsc_int(root, "", "first_k_dense_replace", false, a->first_k_dense_replace, 0, DS_MAX_LAYERS,
                         &c->first_k_dense_replace, e)))
        return s;
    if ((s = dsc_int(root, "", "moe_layer_freq", false, 1, 1, DS_MAX_LAYERS, &c->moe_layer_freq, e))) return s;
    if ((s = dsc_router(root, a, c, e))) return s;

    /* attention */
    if (mla) {
        const dsi_json *ql = dsi_json_get(root, "q_lora_rank");
        if (ql && ql->type == DSI_JSON_NULL) c->q_lora_rank = 0;
        else if ((s = dsc_int(root, "", "q_lora_rank", false, DSC_DEF_Q_LORA, 0, DSC_DIM_MAX, &c->q_lora_rank, e)))
            return s;
        if ((s = dsc_int(root, "", "kv_lora_rank", false, DSC_DEF_KV_LORA, 1, DSC_DIM_MAX, &c->kv_lora_rank, e)))
            return s;
        if ((s = dsc_int(root, "", "qk_nope_head_dim", false, DSC_DEF_QK_NOPE, 1, DSC_DIM_MAX,
                             &c->qk_nope_head_dim, e)))
            return s;
        if ((s = dsc_int(root, "", "qk_rope_head_dim", false, DSC_DEF_QK_ROPE, 1, DSC_DIM_MAX,
                             &c->qk_rope_head_dim, e)))
            return s;
        if ((s = dsc_int(root, "", "v_head_dim", false, DSC_DEF_V_HEAD, 1, DSC_DIM_MAX, &c->v_head_dim, e)))
            return s;
        if (c->qk_rope_head_dim % 2)
            return dsi_fail(e, DS_ERR_CONFIG, "qk_rope_head_dim (%d) must be even for rotary embeddings",
                            c->qk_rope_head_dim);
        /* q/k head: the non-rotary and rotary parts side by side */
        c->head_dim = c->qk_nope_head_dim + c->qk_rope_head_dim;
        int64_t nh = c->n_heads;
        if (nh * c->head_dim > DSC_DIM_MAX || nh * ((int64_t)c->qk_nope_head_dim + c->v_head_dim) > DSC_DIM_MAX ||
            nh * c->v_head_dim > DSC_DIM_MAX || (int64_t)c->kv_lora_rank + c->qk_rope_head_dim > DSC_DIM_MAX)
            return dsi_fail(e, DS_ERR_CONFIG, "attention projections of %d heads exceed the dimension limit %lld",
                            c->n_heads, (long long)DSC_DIM_MAX);
    } else {
        /* DeepSeek-MoE: multi-head attention with full-width rotary heads */
        if (c->hidden_size % c->n_heads)
            return dsi_fail(e, DS_ERR_CONFIG, "hidden_size (%d) is not a multiple of num_attention_heads (%d)",
                            c->hidden_size, c->n_heads);
        if (c->n_heads % c->n_kv_heads)
            return dsi_fail(e, DS_ERR_CONFIG, "num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)",
                            c->n_heads, c->n_kv_heads);
        c->head_dim = c->hidden_size / c->n_heads;
        if (c->head_dim % 2)
            return dsi_fail(e, DS_ERR_CONFIG, "head dimension %d (hidden_size / num_attention_heads) must be even "
                            "for rotary embeddings", c->head_dim);
        c->q_lora_rank = 0;
        c->kv_lora_rank = 0;
        c->qk_nope_head_dim = 0;
        c->qk_rope_head_dim = c->head_dim;
        c->v_head_dim = c->head_dim;
    }

    /* norms, RoPE, tokens */
    if ((s = dsc_num(root, "", "rms_norm_eps", 1e-6, 0.0, true, 1.0, &c->rms_norm_eps, e))) return s;
    if ((s = dsc_num(root, "", "rope_theta", 10000.0, 0.0, true, 1e12, &c->rope_theta, e))) return s;
    if ((s = dsc_rope(root, c, e))) return s;
    if ((s = dsc_bool(root, "tie_word_embeddings", false, &c->tie_word_embeddings, e))) return s;
    if ((s = dsc_token_id(root, "bos_token_id", c->vocab_size, &c->bos_token_id, e))) return s;
    if ((s = dsc_token_id(root, "eos_token_id", c->vocab_size, &c->eos_token_id, e))) return s;
    return DS_OK;
}

DSI_FUNC ds_status dsi_config_parse(const char *json, size_t len, const dsi_alloc *al, ds_model_config *cfg,
                                    dsi_err *e) {
    if (!json || !al || !cfg) return dsi_fail(e, DS_ERR_INVALID_ARG, "dsi_config_parse: NULL argument");
    dsi_json_doc *doc = NULL;
    ds_status s = dsi_json_parse(json, len, al, &doc, e);
    if (s) return s;
    ds_model_config c;
    memset(&c, 0, sizeof c);
    s = dsc_fill(dsi_json_root(doc), &c, e);
    dsi_json_free(doc);
    if (s) return s;
    *cfg = c;
    return DS_OK;
}
