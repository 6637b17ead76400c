/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_config.c — config.json parsing (every generated family, defaults,
 * missing fields, wrong types, unknown architectures, ranges, RoPE scaling),
 * dsi_config_is_moe_layer, and the tensor lists of each architecture checked
 * against the expected.safetensors that tests/gen/make_checkpoint.py writes.
 *
 * Generated checkpoints are read from $DS_TESTDATA/<family>/ (skipped when
 * absent).
 */
#include "deepseek_impl/internal.h"
#include "tests/test.h"

#include <math.h>

/* ==== Helpers ============================================================== */
typedef struct t_counter {
    long calls, live, fail_at;
} t_counter;

static void *t_malloc(size_t n, void *u) {
    t_counter *c = u;
    c->calls++;
    if (c->fail_at && c->calls >= c->fail_at) return NULL;
    void *p = malloc(n);
    if (p) c->live++;
    return p;
}
static void *t_realloc(void *p, size_t n, void *u) {
    t_counter *c = u;
    c->calls++;
    if (c->fail_at && c->calls >= c->fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) c->live++;
    return q;
}
static void t_free(void *p, void *u) {
    t_counter *c = u;
    if (p) c->live--;
    free(p);
}

static dsi_alloc t_al;

static ds_status t_parse(const char *json, ds_model_config *cfg, dsi_err *e) {
    memset(e, 0, sizeof *e);
    memset(cfg, 0x55, sizeof *cfg);   /* the parser must set every field it owns */
    size_t n = strlen(json);
    char *copy = malloc(n ? n : 1);   /* exact size: ASan sees any overread */
    memcpy(copy, json, n);
    ds_status s = dsi_config_parse(copy, n, &t_al, cfg, e);
    free(copy);
    return s;
}

static char *t_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static bool feq(float a, double b) { return fabs((double)a - b) <= 1e-6 * (fabs(b) + 1e-30) + 1e-12; }

/* ---- building config variants ------------------------------------------- */
typedef struct t_kv {
    const char *key, *val;
} t_kv;

#define T_DEL ((const char *)1)   /* as a value: drop the field */

static const t_kv T_V2[] = {
    {"architectures", "[\"DeepseekV2ForCausalLM\"]"},
    {"model_type", "\"deepseek_v2\""},
    {"vocab_size", "512"},
    {"hidden_size", "64"},
    {"intermediate_size", "96"},
    {"moe_intermediate_size", "32"},
    {"num_hidden_layers", "3"},
    {"num_attention_heads", "4"},
    {"num_key_value_heads", "4"},
    {"n_shared_experts", "2"},
    {"n_routed_experts", "8"},
    {"num_experts_per_tok", "2"},
    {"first_k_dense_replace", "1"},
    {"moe_layer_freq", "1"},
    {"q_lora_rank", "null"},
    {"kv_lora_rank", "32"},
    {"qk_nope_head_dim", "16"},
    {"qk_rope_head_dim", "8"},
    {"v_head_dim", "16"},
    {"topk_method", "\"greedy\""},
    {"n_group", "1"},
    {"topk_group", "1"},
    {"scoring_func", "\"softmax\""},
    {"norm_topk_prob", "false"},
    {"routed_scaling_factor", "1.0"},
    {"rms_norm_eps", "1e-06"},
    {"rope_theta", "10000"},
    {"rope_scaling", "null"},
    {"max_position_embeddings", "2048"},
    {"tie_word_embeddings", "false"},
    {"bos_token_id", "0"},
    {"eos_token_id", "1"},
    {"attention_bias", "false"},
    {"hidden_act", "\"silu\""},
};
#define T_NV2 (sizeof T_V2 / sizeof T_V2[0])

static const t_kv T_MOE[] = {
    {"architectures", "[\"DeepseekForCausalLM\"]"},
    {"vocab_size", "512"},
    {"hidden_size", "64"},
    {"intermediate_size", "96"},
    {"moe_intermediate_size", "32"},
    {"num_hidden_layers", "3"},
    {"num_attention_heads", "4"},
    {"num_key_value_heads", "4"},
    {"n_shared_experts", "2"},
    {"n_routed_experts", "8"},
    {"num_experts_per_tok", "2"},
    {"first_k_dense_replace", "1"},
    {"moe_layer_freq", "1"},
    {"scoring_func", "\"softmax\""},
    {"norm_topk_prob", "false"},
};
#define T_NMOE (sizeof T_MOE / sizeof T_MOE[0])

/* Builds a JSON object from base with overrides (key, value) pairs ending in
 * NULL: a matching key gets the new value (T_DEL drops it), a new key is
 * appended. Returns a static buffer. */
static const char *t_mk(const t_kv *base, size_t n, ...) {
    static char buf[16384];
    const char *ok[16], *ov[16];
    int no = 0;
    va_list ap;
    va_start(ap, n);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k || no == 16) break;
        ok[no] = k;
        ov[no] = va_arg(ap, const char *);
        no++;
    }
    va_end(ap);
    bool used[16] = {0};
    size_t len = 0;
    bool first = true;
    len += (size_t)snprintf(buf + len, sizeof buf - len, "{");
    for (size_t i = 0; i < n; i++) {
        const char *v = base[i].val;
        for (int j = 0; j < no; j++)
            if (strcmp(ok[j], base[i].key) == 0) {
                v = ov[j];
                used[j] = true;
            }
        if (v == T_DEL) continue;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s\n \"%s\": %s", first ? "" : ",", base[i].key, v);
        first = false;
    }
    for (int j = 0; j < no; j++) {
        if (used[j] || ov[j] == T_DEL) continue;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s\n \"%s\": %s", first ? "" : ",", ok[j], ov[j]);
        first = false;
    }
    snprintf(buf + len, sizeof buf - len, "\n}");
    return buf;
}

/* Expects a status and (when non-NULL) a substring in the message. */
static void t_bad(const char *id, const char *json, ds_status want, const char *needle) {
    ds_model_config c;
    dsi_err e;
    ds_status s = t_parse(json, &c, &e);
    T_STATUS(id, s, want, e.msg);
    if (needle && s == want) T_CHECK(id, strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
}

/* ==== 1: the generated families ============================================ */
static const char *t_testdata(void) {
    const char *d = getenv("DS_TESTDATA");
    return d && *d ? d : "build/testdata";
}

/* Reads <testdata>/<family>/config.json; NULL (and a skip) when absent. */
static char *t_family_config(const char *id, const char *family, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/config.json", t_testdata(), family);
    char *txt = t_read_file(path, len);
    if (!txt) {
        char why[1100];
        snprintf(why, sizeof why, "%s not found (run tests/gen/make_checkpoint.py --all)", path);
        T_SKIP(id, why);
    }
    return txt;
}

static bool t_family(const char *id, const char *family, ds_model_config *c) {
    size_t len = 0;
    char *txt = t_family_config(id, family, &len);
    if (!txt) return false;
    dsi_err e = {0};
    ds_status s = dsi_config_parse(txt, len, &t_al, c, &e);
    free(txt);
    T_STATUS(id, s, DS_OK, e.msg);
    return s == DS_OK;
}

static void test_families(void) {
    ds_model_config c;

    if (t_family("config-1.1", "v2lite", &c)) {
        T_CHECK("config-1.1", c.arch == DS_ARCH_DEEPSEEK_V2, "arch %d", c.arch);
        T_CHECK("config-1.1", c.vocab_size == 512 && c.hidden_size == 64 && c.n_layers == 3, "sizes");
        T_CHECK("config-1.1", c.intermediate_size == 96 && c.moe_intermediate_size == 32, "mlp sizes");
        T_CHECK("config-1.1", c.n_heads == 4 && c.n_kv_heads == 4, "heads");
        T_CHECK("config-1.1", c.n_routed_experts == 8 && c.n_shared_experts == 2 && c.n_experts_per_tok == 2,
                "experts %d %d %d", c.n_routed_experts, c.n_shared_experts, c.n_experts_per_tok);
        T_CHECK("config-1.1", c.first_k_dense_replace == 1 && c.moe_layer_freq == 1, "dense layers");
        T_CHECK("config-1.1", c.q_lora_rank == 0 && c.kv_lora_rank == 32, "lora %d %d", c.q_lora_rank,
                c.kv_lora_rank);
        T_CHECK("config-1.1", c.qk_nope_head_dim == 16 && c.qk_rope_head_dim == 8 && c.v_head_dim == 16, "heads");
        T_CHECK("config-1.1", c.head_dim == 24, "head_dim %d", c.head_dim);
        T_CHECK("config-1.1", c.topk_method == DS_TOPK_GREEDY && c.scoring_func == DS_SCORING_SOFTMAX, "router");
        T_CHECK("config-1.1", c.n_group == 1 && c.topk_group == 1, "groups");
        T_CHECK("config-1.1", c.norm_topk_prob == 0 && feq(c.routed_scaling_factor, 1.0), "weights");
        T_CHECK("config-1.1", feq(c.rms_norm_eps, 1e-6) && feq(c.rope_theta, 10000), "eps/theta");
        T_CHECK("config-1.1", c.rope_scaling_yarn == 0 && c.max_position_embeddings == 2048, "rope");
        T_CHECK("config-1.1", c.tie_word_embeddings == 0 && c.bos_token_id == 0 && c.eos_token_id == 1, "tokens");
        T_CHECK("config-1.1", c.tok_vocab == 0 && c.tok_merges == 0 && c.tok_added == 0 && c.has_chat_template == 0,
                "tokenizer fields are left 0");
    }
    if (t_family("config-1.2", "v2", &c)) {
        T_CHECK("config-1.2", c.arch == DS_ARCH_DEEPSEEK_V2 && c.q_lora_rank == 96, "q_lora %d", c.q_lora_rank);
        T_CHECK("config-1.2", c.topk_method == DS_TOPK_GROUP_LIMITED_GREEDY, "topk %d", c.topk_method);
        T_CHECK("config-1.2", c.n_group == 4 && c.topk_group == 1, "groups %d %d", c.n_group, c.topk_group);
        T_CHECK("config-1.2", feq(c.routed_scaling_factor, 16.0), "scaling %g", (double)c.routed_scaling_factor);
    }
    if (t_family("config-1.3", "v3", &c)) {
        T_CHECK("config-1.3", c.arch == DS_ARCH_DEEPSEEK_V3, "arch");
        T_CHECK("config-1.3", c.q_lora_rank == 96 && c.intermediate_size == 160, "sizes");
        T_CHECK("config-1.3", c.scoring_func == DS_SCORING_SIGMOID && c.topk_method == DS_TOPK_NOAUX_TC, "router");
        T_CHECK("config-1.3", c.n_group == 4 && c.topk_group == 2 && c.n_shared_experts == 1, "groups");
        T_CHECK("config-1.3", c.norm_topk_prob == 1 && feq(c.routed_scaling_factor, 2.5), "weights");
        T_CHECK("config-1.3", c.rope_scaling_yarn == 1 && feq(c.rope_factor, 40) &&
                                  c.rope_original_max_position == 256 && feq(c.rope_beta_fast, 32) &&
                                  feq(c.rope_beta_slow, 1) && feq(c.rope_mscale, 1) && feq(c.rope_mscale_all_dim, 1),
                "yarn %d %g %d", c.rope_scaling_yarn, (double)c.rope_factor, c.rope_original_max_position);
        T_CHECK("config-1.3", c.max_position_embeddings == 10240, "max pos %d", c.max_position_embeddings);
    }
    if (t_family("config-1.4", "moe16b", &c)) {
        T_CHECK("config-1.4", c.arch == DS_ARCH_DEEPSEEK_MOE, "arch");
        T_CHECK("config-1.4", c.kv_lora_rank == 0 && c.q_lora_rank == 0 && c.head_dim == 16, "mha %d %d %d",
                c.kv_lora_rank, c.q_lora_rank, c.head_dim);
        T_CHECK("config-1.4", c.qk_rope_head_dim == 16 && c.qk_nope_head_dim == 0 && c.v_head_dim == 16, "dims");
        T_CHECK("config-1.4", c.topk_method == DS_TOPK_GREEDY && c.scoring_func == DS_SCORING_SOFTMAX, "router");
        T_CHECK("config-1.4", feq(c.routed_scaling_factor, 1.0) && c.n_shared_experts == 2, "weights");
    }
    if (t_family("config-1.5", "v2lite_sharded", &c))
        T_CHECK("config-1.5", c.arch == DS_ARCH_DEEPSEEK_V2 && c.q_lora_rank == 0 && c.n_routed_experts == 8, "v2lite");
    if (t_family("config-1.6", "yarn", &c)) {
        T_CHECK("config-1.6", c.rope_scaling_yarn == 1 && feq(c.rope_factor, 4) && c.rope_original_max_position == 512,
                "yarn %g %d", (double)c.rope_factor, c.rope_original_max_position);
        T_CHECK("config-1.6", feq(c.rope_mscale, 0.707) && feq(c.rope_mscale_all_dim, 0.707), "mscale");
        T_CHECK("config-1.6", c.tie_word_embeddings == 1, "tied");
    }
}

/* ==== 2: defaults ========================================================== */
static void test_defaults(void) {
    ds_model_config c;
    dsi_err e;
    ds_status s;

    /* V2 with only the required fields: deepseek-ai's defaults, a dense model */
    s = t_parse("{\"architectures\":[\"DeepseekV2ForCausalLM\"],\"vocab_size\":1000,\"hidden_size\":64,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":4}",
                &c, &e);
    T_STATUS("config-2.1", s, DS_OK, e.msg);
    if (s == DS_OK) {
        T_CHECK("config-2.1", c.n_routed_experts == 0 && c.n_shared_experts == 0 && c.n_experts_per_tok == 0,
                "dense by default");
        T_CHECK("config-2.1", c.intermediate_size == 11008 && c.moe_intermediate_size == 1407, "mlp defaults");
        T_CHECK("config-2.1", c.q_lora_rank == 1536 && c.kv_lora_rank == 512, "lora defaults %d %d", c.q_lora_rank,
                c.kv_lora_rank);
        T_CHECK("config-2.1", c.qk_nope_head_dim == 128 && c.qk_rope_head_dim == 64 && c.v_head_dim == 128, "dims");
        T_CHECK("config-2.1", c.n_kv_heads == 4 && c.first_k_dense_replace == 0 && c.moe_layer_freq == 1, "misc");
        T_CHECK("config-2.1", c.topk_method == DS_TOPK_GREEDY && c.scoring_func == DS_SCORING_SOFTMAX, "router");
        T_CHECK("config-2.1", c.norm_topk_prob == 0 && feq(c.routed_scaling_factor, 1.0), "weights");
        T_CHECK("config-2.1", feq(c.rms_norm_eps, 1e-6) && feq(c.rope_theta, 10000) && c.max_position_embeddings == 2048,
                "numbers");
        T_CHECK("config-2.1", c.rope_scaling_yarn == 0 && c.tie_word_embeddings == 0, "rope/tie");
        T_CHECK("config-2.1", c.bos_token_id == -1 && c.eos_token_id == -1, "token ids -1 when absent: %d %d",
                c.bos_token_id, c.eos_token_id);
        for (int i = 0; i < 2; i++) T_CHECK("config-2.1", !dsi_config_is_moe_layer(&c, i), "layer %d dense", i);
    }

    /* V3 with only the required fields: the V3 defaults */
    s = t_parse("{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"vocab_size\":129280,\"hidden_size\":7168,"
                "\"num_hidden_layers\":61,\"num_attention_heads\":128}",
                &c, &e);
    T_STATUS("config-2.2", s, DS_OK, e.msg);
    if (s == DS_OK) {
        T_CHECK("config-2.2", c.n_routed_experts == 256 && c.n_shared_experts == 1 && c.n_experts_per_tok == 8,
                "experts");
        T_CHECK("config-2.2", c.intermediate_size == 18432 && c.moe_intermediate_size == 2048, "mlp");
        T_CHECK("config-2.2", c.first_k_dense_replace == 3 && c.n_group == 8 && c.topk_group == 4, "groups");
        T_CHECK("config-2.2", c.topk_method == DS_TOPK_NOAUX_TC && c.scoring_func == DS_SCORING_SIGMOID, "router");
        T_CHECK("config-2.2", c.norm_topk_prob == 1 && feq(c.routed_scaling_factor, 2.5), "weights");
        T_CHECK("config-2.2", c.q_lora_rank == 1536 && c.max_position_embeddings == 4096, "q_lora, max pos");
        T_CHECK("config-2.2", !dsi_config_is_moe_layer(&c, 2) && dsi_config_is_moe_layer(&c, 3), "first MoE layer");
    }

    /* q_lora_rank: null means none, absent means the default rank */
    s = t_parse(t_mk(T_V2, T_NV2, "q_lora_rank", T_DEL, NULL), &c, &e);
    T_CHECK("config-2.3", s == DS_OK && c.q_lora_rank == 1536, "absent q_lora_rank: %d (%s)", c.q_lora_rank, e.msg);
    s = t_parse(t_mk(T_V2, T_NV2, "q_lora_rank", "null", NULL), &c, &e);
    T_CHECK("config-2.3", s == DS_OK && c.q_lora_rank == 0, "null q_lora_rank: %d (%s)", c.q_lora_rank, e.msg);
    s = t_parse(t_mk(T_V2, T_NV2, "q_lora_rank", "0", NULL), &c, &e);
    T_CHECK("config-2.3", s == DS_OK && c.q_lora_rank == 0, "q_lora_rank 0: %d (%s)", c.q_lora_rank, e.msg);

    /* deepseek-ai's misspelled default "gready" is greedy */
    s = t_parse(t_mk(T_V2, T_NV2, "topk_method", "\"gready\"", NULL), &c, &e);
    T_CHECK("config-2.4", s == DS_OK && c.topk_method == DS_TOPK_GREEDY, "gready (%s)", e.msg);

    /* greedy ignores whatever groups the file names */
    s = t_parse(t_mk(T_V2, T_NV2, "n_group", "3", "topk_group", "7", NULL), &c, &e);
    T_CHECK("config-2.5", s == DS_OK && c.n_group == 1 && c.topk_group == 1, "greedy groups (%s)", e.msg);

    /* n_routed_experts null or 0: every layer dense; MoE fields then unneeded */
    s = t_parse(t_mk(T_V2, T_NV2, "n_routed_experts", "null", "num_experts_per_tok", T_DEL, NULL), &c, &e);
    T_CHECK("config-2.6", s == DS_OK && c.n_routed_experts == 0 && !dsi_config_is_moe_layer(&c, 1), "null experts (%s)",
            e.msg);
    s = t_parse(t_mk(T_V2, T_NV2, "n_routed_experts", "0", NULL), &c, &e);
    T_CHECK("config-2.6", s == DS_OK && c.n_routed_experts == 0 && c.n_experts_per_tok == 0, "0 experts (%s)", e.msg);
    s = t_parse(t_mk(T_V2, T_NV2, "n_shared_experts", "null", NULL), &c, &e);
    T_CHECK("config-2.6", s == DS_OK && c.n_shared_experts == 0, "null shared experts (%s)", e.msg);

    /* eos as a list; integral floats accepted for integers */
    s = t_parse(t_mk(T_V2, T_NV2, "eos_token_id", "[1, 2]", "hidden_size", "64.0", NULL), &c, &e);
    T_CHECK("config-2.7", s == DS_OK && c.eos_token_id == 1 && c.hidden_size == 64, "eos list (%s)", e.msg);
    s = t_parse(t_mk(T_V2, T_NV2, "bos_token_id", "null", NULL), &c, &e);
    T_CHECK("config-2.7", s == DS_OK && c.bos_token_id == -1, "bos null (%s)", e.msg);

    /* DeepSeek-MoE ignores router fields it does not have; kv heads may be fewer */
    s = t_parse(t_mk(T_MOE, T_NMOE, "routed_scaling_factor", "16.0", "topk_method", "\"noaux_tc\"",
                     "num_key_value_heads", "2", NULL),
                &c, &e);
    T_CHECK("config-2.8", s == DS_OK && feq(c.routed_scaling_factor, 1.0) && c.topk_method == DS_TOPK_GREEDY &&
                              c.n_kv_heads == 2,
            "moe router (%s)", e.msg);
    /* extra, unknown fields are fine */
    s = t_parse(t_mk(T_V2, T_NV2, "some_future_field", "{\"a\": [1, 2, {}]}", NULL), &c, &e);
    T_STATUS("config-2.9", s, DS_OK, e.msg);

    /* experts per token and groups kept: at most DS_MAX_EXPERTS_PER_TOK and
     * DS_MAX_TOPK_GROUP (64; per-token arrays on the stack), whatever the
     * expert and group counts allow */
    s = t_parse(t_mk(T_V2, T_NV2, "n_routed_experts", "256", "num_experts_per_tok", "64", NULL), &c, &e);
    T_CHECK("config-2.10", s == DS_OK && c.n_experts_per_tok == 64, "64 of 256 experts (%s)", e.msg);
    t_bad("config-2.10", t_mk(T_V2, T_NV2, "n_routed_experts", "256", "num_experts_per_tok", "65", NULL),
          DS_ERR_CONFIG, "field 'num_experts_per_tok' = 65 is out of range (1..64)");
    s = t_parse(t_mk(T_V2, T_NV2, "n_routed_experts", "256", "topk_method", "\"group_limited_greedy\"", "n_group", "128",
                     "topk_group", "64", NULL),
                &c, &e);
    T_CHECK("config-2.10", s == DS_OK && c.topk_group == 64, "64 of 128 groups (%s)", e.msg);
    t_bad("config-2.10", t_mk(T_V2, T_NV2, "n_routed_experts", "256", "topk_method", "\"group_limited_greedy\"", "n_group", "128",
                              "topk_group", "65", NULL),
          DS_ERR_CONFIG, "field 'topk_group' = 65 is out of range (1..64)");
}

/* ==== 3: required fields and types ========================================= */
static void test_required_and_types(void) {
    static const char *req[] = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                "num_experts_per_tok"};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "config-3.%zu", i + 1);
        char needle[80];
        snprintf(needle, sizeof needle, "required field '%s' is missing", req[i]);
        t_bad(id, t_mk(T_V2, T_NV2, req[i], T_DEL, NULL), DS_ERR_CONFIG, needle);
        t_bad(id, t_mk(T_V2, T_NV2, req[i], "null", NULL), DS_ERR_CONFIG, needle);
    }
    /* group-limited routing in V2 has no default groups */
    t_bad("config-3.6", t_mk(T_V2, T_NV2, "topk_method", "\"group_limited_greedy\"", "n_group", T_DEL, NULL),
          DS_ERR_CONFIG, "n_group");
    t_bad("config-3.6", t_mk(T_V2, T_NV2, "topk_method", "\"group_limited_greedy\"", "topk_group", T_DEL, NULL),
          DS_ERR_CONFIG, "topk_group");
    /* yarn without factor */
    t_bad("config-3.7", t_mk(T_V2, T_NV2, "rope_scaling", "{\"type\": \"yarn\"}", NULL), DS_ERR_CONFIG,
          "rope_scaling.factor");

    /* wrong types, each named */
    static const struct { const char *key, *val, *needle; } ty[] = {
        {"hidden_size", "\"64\"", "hidden_size"},
        {"hidden_size", "64.5", "hidden_size"},
        {"num_hidden_layers", "true", "num_hidden_layers"},
        {"n_routed_experts", "[8]", "n_routed_experts"},
        {"q_lora_rank", "\"none\"", "q_lora_rank"},
        {"kv_lora_rank", "{}", "kv_lora_rank"},
        {"rms_norm_eps", "\"1e-6\"", "rms_norm_eps"},
        {"rope_theta", "false", "rope_theta"},
        {"norm_topk_prob", "1", "norm_topk_prob"},
        {"tie_word_embeddings", "\"false\"", "tie_word_embeddings"},
        {"topk_method", "1", "topk_method"},
        {"scoring_func", "null", NULL},   /* null = absent: fine */
        {"rope_scaling", "\"yarn\"", "rope_scaling"},
        {"rope_scaling", "{\"type\": 1, \"factor\": 4}", "rope_scaling.type"},
        {"rope_scaling", "{\"type\": \"yarn\", \"factor\": \"4\"}", "rope_scaling.factor"},
        {"rope_scaling", "{\"type\": \"yarn\", \"factor\": 4, \"beta_fast\": \"32\"}", "rope_scaling.beta_fast"},
        {"bos_token_id", "\"0\"", "bos_token_id"},
        {"eos_token_id", "[\"x\"]", "eos_token_id"},
        {"hidden_act", "7", "hidden_act"},
        {"attention_bias", "0", "attention_bias"},
    };
    for (size_t i = 0; i < sizeof ty / sizeof ty[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "config-4.%zu", i + 1);
        t_bad(id, t_mk(T_V2, T_NV2, ty[i].key, ty[i].val, NULL), ty[i].needle ? DS_ERR_CONFIG : DS_OK, ty[i].needle);
    }

    /* malformed JSON and a non-object root */
    t_bad("config-4.30", "{\"architectures\": [\"DeepseekV2ForCausalLM\"],}", DS_ERR_JSON, NULL);
    t_bad("config-4.31", "[1, 2, 3]", DS_ERR_CONFIG, "object");
    t_bad("config-4.32", "", DS_ERR_JSON, NULL);
}

/* ==== 5: architectures ===================================================== */
static void test_arch(void) {
    t_bad("config-5.1", t_mk(T_V2, T_NV2, "architectures", "[\"LlamaForCausalLM\"]", NULL), DS_ERR_ARCH,
          "unsupported architecture 'LlamaForCausalLM' (supported: DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, "
          "DeepseekForCausalLM)");
    t_bad("config-5.2", t_mk(T_V2, T_NV2, "architectures", T_DEL, NULL), DS_ERR_ARCH, "supported");
    t_bad("config-5.3", t_mk(T_V2, T_NV2, "architectures", "[]", NULL), DS_ERR_ARCH, "supported");
    t_bad("config-5.4", t_mk(T_V2, T_NV2, "architectures", "\"DeepseekV2ForCausalLM\"", NULL), DS_ERR_ARCH, NULL);
    t_bad("config-5.5", t_mk(T_V2, T_NV2, "architectures", "[7]", NULL), DS_ERR_ARCH, NULL);
    t_bad("config-5.6", t_mk(T_V2, T_NV2, "architectures", "null", NULL), DS_ERR_ARCH, NULL);
    /* case matters, and no prefix matching */
    t_bad("config-5.7", t_mk(T_V2, T_NV2, "architectures", "[\"deepseekv2forcausallm\"]", NULL), DS_ERR_ARCH, NULL);
    t_bad("config-5.8", t_mk(T_V2, T_NV2, "architectures", "[\"DeepseekV2ForCausalLMX\"]", NULL), DS_ERR_ARCH, NULL);
    /* control characters and a very long name stay out of the message intact */
    t_bad("config-5.9", t_mk(T_V2, T_NV2, "architectures", "[\"a\\nb\\u0000c\"]", NULL), DS_ERR_ARCH, "'a?b?c'");
    {
        char big[400];
        memset(big, 'X', sizeof big);
        big[0] = '[';
        big[1] = '"';
        snprintf(big + 300, sizeof big - 300, "\"]");
        ds_model_config c;
        dsi_err e;
        ds_status s = t_parse(t_mk(T_V2, T_NV2, "architectures", big, NULL), &c, &e);
        T_STATUS("config-5.10", s, DS_ERR_ARCH, e.msg);
        T_CHECK("config-5.10", strlen(e.msg) < 300 && strstr(e.msg, "...") != NULL, "long name cut: %s", e.msg);
    }
    /* the architecture list is read, not model_type */
    {
        ds_model_config c;
        dsi_err e;
        ds_status s = t_parse(t_mk(T_V2, T_NV2, "architectures", "[\"DeepseekV3ForCausalLM\", \"Other\"]",
                                   "model_type", "\"llama\"", "scoring_func", "\"sigmoid\"", "topk_method",
                                   "\"noaux_tc\"", "n_group", "4", "topk_group", "2", NULL),
                              &c, &e);
        T_STATUS("config-5.11", s, DS_OK, e.msg);
        T_CHECK("config-5.11", c.arch == DS_ARCH_DEEPSEEK_V3, "arch %d", c.arch);
    }
    /* unsupported features and router combinations */
    t_bad("config-5.12", t_mk(T_V2, T_NV2, "attention_bias", "true", NULL), DS_ERR_CONFIG, "attention_bias");
    t_bad("config-5.13", t_mk(T_V2, T_NV2, "hidden_act", "\"gelu\"", NULL), DS_ERR_CONFIG, "'gelu'");
    t_bad("config-5.14", t_mk(T_V2, T_NV2, "scoring_func", "\"sigmoid\"", NULL), DS_ERR_CONFIG, "softmax");
    t_bad("config-5.15", t_mk(T_V2, T_NV2, "scoring_func", "\"relu\"", NULL), DS_ERR_CONFIG, "'relu'");
    t_bad("config-5.16", t_mk(T_V2, T_NV2, "topk_method", "\"noaux_tc\"", NULL), DS_ERR_CONFIG, "topk_method");
    t_bad("config-5.17", t_mk(T_V2, T_NV2, "topk_method", "\"best\"", NULL), DS_ERR_CONFIG, "'best'");
    t_bad("config-5.18", t_mk(T_V2, T_NV2, "architectures", "[\"DeepseekV3ForCausalLM\"]", NULL), DS_ERR_CONFIG,
          "scoring_func");
    t_bad("config-5.19", t_mk(T_V2, T_NV2, "architectures", "[\"DeepseekV3ForCausalLM\"]", "scoring_func",
                              "\"sigmoid\"", NULL),
          DS_ERR_CONFIG, "noaux_tc");
    t_bad("config-5.20", t_mk(T_MOE, T_NMOE, "scoring_func", "\"sigmoid\"", NULL), DS_ERR_CONFIG, "softmax");
}

/* ==== 6: ranges ============================================================ */
static void test_ranges(void) {
    char big[32], many[32], dimbig[32];
    snprintf(big, sizeof big, "%d", DS_MAX_LAYERS + 1);
    snprintf(many, sizeof many, "%d", DS_MAX_EXPERTS + 1);
    snprintf(dimbig, sizeof dimbig, "%llu", (unsigned long long)DS_MAX_DIM + 1);
    static const struct { const char *key, *val, *key2, *val2, *needle; } r[] = {
        {"num_hidden_layers", "0", NULL, NULL, "num_hidden_layers"},
        {"num_hidden_layers", NULL /* big */, NULL, NULL, "num_hidden_layers"},
        {"n_routed_experts", NULL /* many */, NULL, NULL, "n_routed_experts"},
        {"hidden_size", NULL /* dimbig */, NULL, NULL, "hidden_size"},
        {"hidden_size", "-64", NULL, NULL, "hidden_size"},
        {"vocab_size", "0", NULL, NULL, "vocab_size"},
        {"vocab_size", "99999999999999999999", NULL, NULL, "vocab_size"},
        {"num_attention_heads", "0", NULL, NULL, "num_attention_heads"},
        {"num_key_value_heads", "5", NULL, NULL, "num_key_value_heads"},
        {"intermediate_size", "0", NULL, NULL, "intermediate_size"},
        {"moe_intermediate_size", "0", NULL, NULL, "moe_intermediate_size"},
        {"num_experts_per_tok", "9", NULL, NULL, "num_experts_per_tok"},
        {"num_experts_per_tok", "0", NULL, NULL, "num_experts_per_tok"},
        {"n_shared_experts", "-1", NULL, NULL, "n_shared_experts"},
        {"first_k_dense_replace", "-1", NULL, NULL, "first_k_dense_replace"},
        {"moe_layer_freq", "0", NULL, NULL, "moe_layer_freq"},
        {"kv_lora_rank", "0", NULL, NULL, "kv_lora_rank"},
        {"q_lora_rank", "-1", NULL, NULL, "q_lora_rank"},
        {"qk_rope_head_dim", "7", NULL, NULL, "even"},
        {"qk_rope_head_dim", "0", NULL, NULL, "qk_rope_head_dim"},
        {"qk_nope_head_dim", "0", NULL, NULL, "qk_nope_head_dim"},
        {"v_head_dim", "0", NULL, NULL, "v_head_dim"},
        {"num_attention_heads", "1048576", "qk_nope_head_dim", "128", "dimension limit"},
        {"rms_norm_eps", "0", NULL, NULL, "rms_norm_eps"},
        {"rms_norm_eps", "-1e-6", NULL, NULL, "rms_norm_eps"},
        {"rope_theta", "0", NULL, NULL, "rope_theta"},
        {"rope_theta", "1e999", NULL, NULL, NULL},   /* JSON overflow: the parser's call */
        {"routed_scaling_factor", "0", NULL, NULL, "routed_scaling_factor"},
        {"max_position_embeddings", "0", NULL, NULL, "max_position_embeddings"},
        {"bos_token_id", "512", NULL, NULL, "bos_token_id"},
        {"eos_token_id", "-2", NULL, NULL, "eos_token_id"},
        {"topk_method", "\"group_limited_greedy\"", "n_group", "3", "divide"},
        {"topk_method", "\"group_limited_greedy\"", "n_group", "0", "n_group"},
        {"topk_method", "\"group_limited_greedy\"", "topk_group", "2", "topk_group"},   /* n_group 1 */
        {"topk_method", "\"group_limited_greedy\"", "n_group", "16", "n_group"},        /* > experts */
        {"n_shared_experts", "4096", "moe_intermediate_size", "16777", "shared experts"},
        {"rope_scaling", "{\"type\": \"linear\", \"factor\": 2}", NULL, NULL, "'linear'"},
        {"rope_scaling", "{\"rope_type\": \"dynamic\", \"factor\": 2}", NULL, NULL, "'dynamic'"},
        {"rope_scaling", "{\"factor\": 2}", NULL, NULL, "type"},
        {"rope_scaling", "{\"type\": \"yarn\", \"factor\": 0.5}", NULL, NULL, "factor"},
        {"rope_scaling", "{\"type\": \"yarn\", \"factor\": 4, \"original_max_position_embeddings\": 0}", NULL,
         NULL, "original_max_position_embeddings"},
        {"rope_scaling", "{\"type\": \"yarn\", \"factor\": 4, \"beta_fast\": 1, \"beta_slow\": 32}", NULL, NULL,
         "beta_slow"},
        {"rope_scaling", "{\"type\": \"yarn\", \"factor\": 4, \"mscale\": -1}", NULL, NULL, "mscale"},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "config-6.%zu", i + 1);
        const char *v = r[i].val;
        if (i == 1) v = big;
        if (i == 2) v = many;
        if (i == 3) v = dimbig;
        const char *json = r[i].key2 ? t_mk(T_V2, T_NV2, r[i].key, v, r[i].key2, r[i].val2, NULL)
                                     : t_mk(T_V2, T_NV2, r[i].key, v, NULL);
        if (!r[i].needle) {
            ds_model_config c;
            dsi_err e;
            ds_status s = t_parse(json, &c, &e);
            T_CHECK(id, s != DS_OK, "accepted an infinite rope_theta");
            continue;
        }
        t_bad(id, json, DS_ERR_CONFIG, r[i].needle);
    }

    /* limits themselves are accepted */
    ds_model_config c;
    dsi_err e;
    char lim[32];
    snprintf(lim, sizeof lim, "%d", DS_MAX_LAYERS);
    ds_status s = t_parse(t_mk(T_V2, T_NV2, "num_hidden_layers", lim, NULL), &c, &e);
    T_CHECK("config-6.50", s == DS_OK && c.n_layers == DS_MAX_LAYERS, "max layers (%s)", e.msg);
    snprintf(lim, sizeof lim, "%d", DS_MAX_EXPERTS);
    char klim[32];
    snprintf(klim, sizeof klim, "%d", DS_MAX_EXPERTS_PER_TOK);
    s = t_parse(t_mk(T_V2, T_NV2, "n_routed_experts", lim, "num_experts_per_tok", klim, NULL), &c, &e);
    T_CHECK("config-6.51", s == DS_OK && c.n_routed_experts == DS_MAX_EXPERTS &&
                               c.n_experts_per_tok == DS_MAX_EXPERTS_PER_TOK,
            "max experts (%s)", e.msg);

    /* DeepSeek-MoE: head dim from hidden / heads, must divide and be even */
    t_bad("config-6.52", t_mk(T_MOE, T_NMOE, "num_attention_heads", "5", "num_key_value_heads", "5", NULL),
          DS_ERR_CONFIG, "multiple");
    t_bad("config-6.53", t_mk(T_MOE, T_NMOE, "num_attention_heads", "64", "num_key_value_heads", "64", NULL),
          DS_ERR_CONFIG, "even");
    t_bad("config-6.54", t_mk(T_MOE, T_NMOE, "num_key_value_heads", "3", NULL), DS_ERR_CONFIG, "num_key_value_heads");

    /* V3 group routing: groups must supply top-k, noaux_tc needs 2 per group */
    static const t_kv v3[] = {
        {"architectures", "[\"DeepseekV3ForCausalLM\"]"}, {"vocab_size", "512"}, {"hidden_size", "64"},
        {"num_hidden_layers", "3"}, {"num_attention_heads", "4"}, {"n_routed_experts", "8"},
        {"num_experts_per_tok", "2"}, {"n_group", "4"}, {"topk_group", "2"},
    };
    size_t nv3 = sizeof v3 / sizeof v3[0];
    s = t_parse(t_mk(v3, nv3, NULL), &c, &e);
    T_STATUS("config-6.55", s, DS_OK, e.msg);
    t_bad("config-6.56", t_mk(v3, nv3, "n_group", "8", "topk_group", "2", NULL), DS_ERR_CONFIG, "2 experts per group");
    t_bad("config-6.57", t_mk(v3, nv3, "num_experts_per_tok", "6", "topk_group", "2", NULL), DS_ERR_CONFIG,
          "cannot supply");
    t_bad("config-6.58", t_mk(v3, nv3, "topk_group", "5", NULL), DS_ERR_CONFIG, "topk_group");
}

/* ==== 7: RoPE ============================================================== */
static void test_rope(void) {
    ds_model_config c;
    dsi_err e;
    ds_status s;
    /* yarn with only a factor: DeepseekV2YarnRotaryEmbedding's defaults */
    s = t_parse(t_mk(T_V2, T_NV2, "rope_scaling", "{\"type\": \"yarn\", \"factor\": 40}", NULL), &c, &e);
    T_STATUS("config-7.1", s, DS_OK, e.msg);
    if (s == DS_OK)
        T_CHECK("config-7.1", c.rope_scaling_yarn == 1 && feq(c.rope_factor, 40) && c.rope_original_max_position == 4096 &&
                                  feq(c.rope_beta_fast, 32) && feq(c.rope_beta_slow, 1) && feq(c.rope_mscale, 1) &&
                                  feq(c.rope_mscale_all_dim, 0),
                "yarn defaults %d %g %d %g %g %g %g", c.rope_scaling_yarn, (double)c.rope_factor,
                c.rope_original_max_position, (double)c.rope_beta_fast, (double)c.rope_beta_slow,
                (double)c.rope_mscale, (double)c.rope_mscale_all_dim);
    /* the V2-Lite release's own rope_scaling, spelled with rope_type */
    s = t_parse(t_mk(T_V2, T_NV2, "rope_scaling",
                     "{\"beta_fast\": 32, \"beta_slow\": 1, \"factor\": 40, \"mscale\": 0.707, \"mscale_all_dim\": "
                     "0.707, \"original_max_position_embeddings\": 4096, \"rope_type\": \"yarn\"}",
                     "max_position_embeddings", "163840", NULL),
                &c, &e);
    T_STATUS("config-7.2", s, DS_OK, e.msg);
    if (s == DS_OK)
        T_CHECK("config-7.2", c.rope_scaling_yarn && feq(c.rope_mscale, 0.707) && feq(c.rope_mscale_all_dim, 0.707) &&
                                  c.max_position_embeddings == 163840,
                "v2-lite yarn");
    /* "default" is no scaling */
    s = t_parse(t_mk(T_V2, T_NV2, "rope_scaling", "{\"type\": \"default\"}", NULL), &c, &e);
    T_CHECK("config-7.3", s == DS_OK && c.rope_scaling_yarn == 0, "default type (%s)", e.msg);
    /* transformers' rope_parameters, theta inside */
    s = t_parse(t_mk(T_V2, T_NV2, "rope_theta", T_DEL, "rope_parameters",
                     "{\"rope_type\": \"yarn\", \"rope_theta\": 50000.0, \"factor\": 8.0}", NULL),
                &c, &e);
    T_STATUS("config-7.4", s, DS_OK, e.msg);
    if (s == DS_OK)
        T_CHECK("config-7.4", c.rope_scaling_yarn && feq(c.rope_factor, 8) && feq(c.rope_theta, 50000), "rope_parameters");
    s = t_parse(t_mk(T_V2, T_NV2, "rope_parameters", "{\"rope_type\": \"default\", \"rope_theta\": 20000}", NULL), &c,
                &e);
    T_CHECK("config-7.5", s == DS_OK && !c.rope_scaling_yarn && feq(c.rope_theta, 20000), "default rope_parameters (%s)",
            e.msg);
    t_bad("config-7.6", t_mk(T_V2, T_NV2, "rope_parameters", "{\"rope_type\": \"llama3\", \"factor\": 8}", NULL),
          DS_ERR_CONFIG, "'llama3'");
    /* rope_theta with a fraction, an exponent */
    s = t_parse(t_mk(T_V2, T_NV2, "rope_theta", "1e4", NULL), &c, &e);
    T_CHECK("config-7.7", s == DS_OK && feq(c.rope_theta, 10000), "1e4 (%s)", e.msg);
}

/* ==== 8: MoE layers and tensor lists ====================================== */
static void test_moe_layers(void) {
    ds_model_config c;
    memset(&c, 0, sizeof c);
    c.n_routed_experts = 8;
    c.first_k_dense_replace = 1;
    c.moe_layer_freq = 2;
    T_CHECK("config-8.1", !dsi_config_is_moe_layer(&c, 0) && !dsi_config_is_moe_layer(&c, 1) &&
                              dsi_config_is_moe_layer(&c, 2) && !dsi_config_is_moe_layer(&c, 3) &&
                              dsi_config_is_moe_layer(&c, 4),
            "freq 2");
    c.moe_layer_freq = 1;
    c.first_k_dense_replace = 0;
    T_CHECK("config-8.2", dsi_config_is_moe_layer(&c, 0) && dsi_config_is_moe_layer(&c, 7), "all MoE");
    c.n_routed_experts = 0;
    T_CHECK("config-8.3", !dsi_config_is_moe_layer(&c, 3), "no experts");
    c.n_routed_experts = 4;
    c.moe_layer_freq = 0;
    T_CHECK("config-8.4", !dsi_config_is_moe_layer(&c, 3), "freq 0 never divides");
}

/* Structural rules of a spec list: the converter's order. */
static void t_check_order(const char *id, const ds_model_config *c, const dsi_tensor_spec *s, size_t n) {
    T_CHECK(id, n >= 2 && strcmp(s[0].name, "model.embed_tokens.weight") == 0 && s[0].layer == -1, "embed first");
    int layer = -1, expert = -1;
    bool in_experts = false;
    for (size_t i = 0; i < n; i++) {
        const dsi_tensor_spec *t = &s[i];
        if (t->layer < layer || t->layer > c->n_layers) {
            T_CHECK(id, 0, "%s: layer %d after %d", t->name, t->layer, layer);
            return;
        }
        if (t->layer != layer) {
            in_experts = false;
            expert = -1;
        }
        layer = t->layer;
        if (t->seg_kind == DS_SEGMENT_EXPERT) {
            if (t->expert < expert || t->expert < 0 || t->expert >= c->n_routed_experts) {
                T_CHECK(id, 0, "%s: expert %d after %d", t->name, t->expert, expert);
                return;
            }
            in_experts = true;
            expert = t->expert;
            T_CHECK(id, !t->keep_f32 && t->n_dims == 2, "%s: expert matrices are quantizable", t->name);
        } else {
            T_CHECK(id, t->seg_kind == DS_SEGMENT_DENSE && t->expert == -1, "%s: dense", t->name);
            if (in_experts) {
                T_CHECK(id, 0, "%s: dense tensor after the layer's experts", t->name);
                return;
            }
        }
        /* always F32: the 1-D tensors; the router's weight is the recipe's
         * (F32 by default, in the converter) */
        T_CHECK(id, t->keep_f32 == (t->n_dims == 1), "%s: keep_f32 %d", t->name, t->keep_f32);
        int want_class = strstr(t->name, ".mlp.gate.") ? DS_PARAM_ROUTER
                         : t->seg_kind == DS_SEGMENT_EXPERT ? DS_PARAM_EXPERT
                                                            : DS_PARAM_CORE;
        T_CHECK(id, t->pclass == want_class, "%s: class %d, want %d", t->name, t->pclass, want_class);
        if (t->n_dims == 2) T_CHECK(id, t->dims[1] % 32 == 0, "%s: %llu columns", t->name, (unsigned long long)t->dims[1]);
    }
    const dsi_tensor_spec *last = &s[n - 1];
    if (c->tie_word_embeddings)
        T_CHECK(id, strcmp(last->name, "model.norm.weight") == 0 && last->layer == c->n_layers, "norm last (tied)");
    else
        T_CHECK(id, strcmp(last->name, "lm_head.weight") == 0 && strcmp(s[n - 2].name, "model.norm.weight") == 0 &&
                        last->layer == c->n_layers,
                "norm, lm_head last");
}

/* Compares a spec list with the tensors of expected.safetensors (names and
 * shapes), reading its header with the JSON parser. */
static void t_check_expected(const char *id, const char *family, const dsi_tensor_spec *s, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/expected.safetensors", t_testdata(), family);
    size_t len = 0;
    char *buf = t_read_file(path, &len);
    if (!buf) {
        T_SKIP(id, "expected.safetensors not found");
        return;
    }
    uint64_t hl = len >= 8 ? dsi_rd64((const uint8_t *)buf) : 0;
    dsi_json_doc *doc = NULL;
    dsi_err e = {0};
    if (hl == 0 || hl > len - 8 || dsi_json_parse(buf + 8, (size_t)hl, &t_al, &doc, &e) != DS_OK) {
        T_CHECK(id, 0, "cannot read the header of %s: %s", path, e.msg);
        free(buf);
        return;
    }
    const dsi_json *root = dsi_json_root(doc);
    size_t n_file = 0;
    for (uint32_t i = 0; i < root->n; i++)
        if (strcmp(root->kids[i].key, "__metadata__") != 0) n_file++;
    T_CHECK(id, n_file == n, "%s: %zu tensors in expected.safetensors, %zu in the spec list", family, n_file, n);
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++) {
        const dsi_json *t = dsi_json_get(root, s[i].name);
        const dsi_json *shape = dsi_json_get(t, "shape");
        bool ok = shape && shape->type == DSI_JSON_ARRAY && (int)shape->n == s[i].n_dims;
        for (int d = 0; ok && d < s[i].n_dims; d++) ok = shape->kids[d].is_int && (uint64_t)shape->kids[d].i == s[i].dims[d];
        if (!ok) bad++;
        T_CHECK(id, ok, "%s: %s missing or shaped differently in expected.safetensors", family, s[i].name);
    }
    dsi_json_free(doc);
    free(buf);
}

static size_t t_count_prefix(const dsi_tensor_spec *s, size_t n, const char *needle) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += strstr(s[i].name, needle) != NULL;
    return k;
}

static const dsi_tensor_spec *t_find(const dsi_tensor_spec *s, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0) return &s[i];
    return NULL;
}

static void t_shape(const char *id, const dsi_tensor_spec *s, size_t n, const char *name, uint64_t d0, uint64_t d1) {
    const dsi_tensor_spec *t = t_find(s, n, name);
    if (!t) {
        T_CHECK(id, 0, "%s missing", name);
        return;
    }
    bool ok = t->dims[0] == d0 && (d1 ? t->n_dims == 2 && t->dims[1] == d1 : t->n_dims == 1);
    T_CHECK(id, ok, "%s: %llux%llu (%d-D), want %llux%llu", name, (unsigned long long)t->dims[0],
            (unsigned long long)t->dims[1], t->n_dims, (unsigned long long)d0, (unsigned long long)d1);
}

static void test_specs(void) {
    static const struct { const char *family; size_t count, experts; } fam[] = {
        /* embed + norm + lm_head, 3 layers: 1 dense + 2 MoE (8 experts x 3) */
        {"v2lite", 83, 8}, {"v2", 89, 8}, {"v3", 91, 8}, {"moe16b", 80, 8}, {"v2lite_sharded", 83, 8}, {"yarn", 82, 8},
        /* v3 at 256 experts: 43 + 2 x 256 x 3 */
        {"v3e256", 1579, 256},
    };
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        char id[32];
        snprintf(id, sizeof id, "config-9.%zu", f + 1);
        ds_model_config c;
        if (!t_family(id, fam[f].family, &c)) continue;
        dsi_tensor_spec *s = NULL;
        size_t n = 0;
        dsi_err e = {0};
        ds_status st = dsi_arch_tensor_specs(&c, &t_al, &s, &n, &e);
        T_STATUS(id, st, DS_OK, e.msg);
        if (st) continue;
        T_CHECK(id, n == fam[f].count, "%s: %zu tensors, want %zu", fam[f].family, n, fam[f].count);
        T_CHECK(id, t_count_prefix(s, n, ".experts.") == 2 * fam[f].experts * 3, "%s: expert tensors", fam[f].family);
        t_check_order(id, &c, s, n);
        t_check_expected(id, fam[f].family, s, n);

        if (strcmp(fam[f].family, "v2lite") == 0) {
            t_shape(id, s, n, "model.embed_tokens.weight", 512, 64);
            t_shape(id, s, n, "model.layers.0.self_attn.q_proj.weight", 4 * 24, 64);
            t_shape(id, s, n, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", 32 + 8, 64);
            t_shape(id, s, n, "model.layers.0.self_attn.kv_a_layernorm.weight", 32, 0);
            t_shape(id, s, n, "model.layers.0.self_attn.kv_b_proj.weight", 4 * 32, 32);
            t_shape(id, s, n, "model.layers.0.self_attn.o_proj.weight", 64, 64);
            t_shape(id, s, n, "model.layers.0.mlp.gate_proj.weight", 96, 64);
            t_shape(id, s, n, "model.layers.0.mlp.down_proj.weight", 64, 96);
            t_shape(id, s, n, "model.layers.1.mlp.gate.weight", 8, 64);
            t_shape(id, s, n, "model.layers.1.mlp.shared_experts.up_proj.weight", 64, 64);
            t_shape(id, s, n, "model.layers.1.mlp.shared_experts.down_proj.weight", 64, 64);
            t_shape(id, s, n, "model.layers.2.mlp.experts.7.down_proj.weight", 64, 32);
            t_shape(id, s, n, "lm_head.weight", 512, 64);
            T_CHECK(id, !t_find(s, n, "model.layers.1.mlp.gate_proj.weight") &&
                            !t_find(s, n, "model.layers.0.mlp.experts.0.up_proj.weight") &&
                            !t_find(s, n, "model.layers.1.mlp.gate.e_score_correction_bias"),
                    "dense/MoE layers");
            const dsi_tensor_spec *g = t_find(s, n, "model.layers.1.mlp.gate.weight");
            T_CHECK(id, g && !g->keep_f32 && g->pclass == DS_PARAM_ROUTER && g->seg_kind == DS_SEGMENT_DENSE &&
                            g->layer == 1,
                    "router weight");
            const dsi_tensor_spec *x = t_find(s, n, "model.layers.2.mlp.experts.5.up_proj.weight");
            T_CHECK(id, x && x->seg_kind == DS_SEGMENT_EXPERT && x->layer == 2 && x->expert == 5, "expert segment");
            const dsi_tensor_spec *h = t_find(s, n, "lm_head.weight");
            T_CHECK(id, h && h->layer == 3 && h->seg_kind == DS_SEGMENT_DENSE && !h->keep_f32, "head segment");
        }
        if (strcmp(fam[f].family, "v3") == 0) {
            t_shape(id, s, n, "model.layers.0.self_attn.q_a_proj.weight", 96, 64);
            t_shape(id, s, n, "model.layers.0.self_attn.q_a_layernorm.weight", 96, 0);
            t_shape(id, s, n, "model.layers.0.self_attn.q_b_proj.weight", 4 * 24, 96);
            t_shape(id, s, n, "model.layers.0.mlp.up_proj.weight", 160, 64);
            t_shape(id, s, n, "model.layers.1.mlp.gate.e_score_correction_bias", 8, 0);
            t_shape(id, s, n, "model.layers.1.mlp.shared_experts.gate_proj.weight", 32, 64);
            T_CHECK(id, !t_find(s, n, "model.layers.0.self_attn.q_proj.weight") &&
                            !t_find(s, n, "model.layers.3.eh_proj.weight"),
                    "no q_proj, no MTP layer");
            const dsi_tensor_spec *b = t_find(s, n, "model.layers.2.mlp.gate.e_score_correction_bias");
            T_CHECK(id, b && b->keep_f32, "bias kept F32");
        }
        if (strcmp(fam[f].family, "moe16b") == 0) {
            t_shape(id, s, n, "model.layers.0.self_attn.q_proj.weight", 64, 64);
            t_shape(id, s, n, "model.layers.0.self_attn.k_proj.weight", 64, 64);
            t_shape(id, s, n, "model.layers.0.self_attn.v_proj.weight", 64, 64);
            t_shape(id, s, n, "model.layers.0.self_attn.o_proj.weight", 64, 64);
            T_CHECK(id, !t_find(s, n, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"), "no MLA");
        }
        if (strcmp(fam[f].family, "yarn") == 0)
            T_CHECK(id, !t_find(s, n, "lm_head.weight"), "tied: no lm_head");
        dsi_free(&t_al, s);
    }

    /* synthetic configs: GQA in DeepSeek-MoE, a moe_layer_freq of 2, full-size V3 */
    ds_model_config c;
    dsi_err e;
    if (t_parse(t_mk(T_MOE, T_NMOE, "num_key_value_heads", "2", "moe_layer_freq", "2", "num_hidden_layers", "4", NULL),
                &c, &e) == DS_OK) {
        dsi_tensor_spec *s = NULL;
        size_t n = 0;
        if (dsi_arch_tensor_specs(&c, &t_al, &s, &n, &e) == DS_OK) {
            t_shape("config-9.10", s, n, "model.layers.0.self_attn.k_proj.weight", 32, 64);
            t_shape("config-9.10", s, n, "model.layers.0.self_attn.q_proj.weight", 64, 64);
            T_CHECK("config-9.10", t_find(s, n, "model.layers.1.mlp.gate_proj.weight") &&
                                       t_find(s, n, "model.layers.2.mlp.gate.weight") &&
                                       t_find(s, n, "model.layers.3.mlp.up_proj.weight"),
                    "freq 2: layers 1 and 3 dense, 2 MoE");
            dsi_free(&t_al, s);
        } else {
            T_CHECK("config-9.10", 0, "%s", e.msg);
        }
    } else {
        T_CHECK("config-9.10", 0, "%s", e.msg);
    }
    if (t_parse("{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"vocab_size\":129280,\"hidden_size\":7168,"
                "\"num_hidden_layers\":61,\"num_attention_heads\":128}",
                &c, &e) == DS_OK) {
        dsi_tensor_spec *s = NULL;
        size_t n = 0;
        ds_status st = dsi_arch_tensor_specs(&c, &t_al, &s, &n, &e);
        T_STATUS("config-9.11", st, DS_OK, e.msg);
        /* 3 dense layers x 12 + 58 MoE layers x (14 + 768) + embed, norm, head */
        T_CHECK("config-9.11", n == 3 * 12 + 58 * (14 + 256 * 3) + 3, "%zu tensors", n);
        t_shape("config-9.11", s, n, "model.layers.60.mlp.experts.255.down_proj.weight", 7168, 2048);
        t_shape("config-9.11", s, n, "model.layers.0.self_attn.kv_b_proj.weight", 128 * 256, 512);
        t_shape("config-9.11", s, n, "model.layers.0.self_attn.q_b_proj.weight", 128 * 192, 1536);
        t_shape("config-9.11", s, n, "model.layers.3.mlp.shared_experts.down_proj.weight", 7168, 2048);
        dsi_free(&t_al, s);
    }

    /* hostile configs handed in directly: refused, not walked */
    memset(&c, 0, sizeof c);
    dsi_tensor_spec *s = NULL;
    size_t n = 0;
    c.arch = (ds_arch)9;
    T_STATUS("config-9.12", dsi_arch_tensor_specs(&c, &t_al, &s, &n, &e), DS_ERR_ARCH, e.msg);
    c.arch = DS_ARCH_DEEPSEEK_V2;
    c.n_layers = DS_MAX_LAYERS + 1;
    c.hidden_size = c.vocab_size = c.n_heads = 1;
    c.moe_layer_freq = 1;
    T_STATUS("config-9.13", dsi_arch_tensor_specs(&c, &t_al, &s, &n, &e), DS_ERR_CONFIG, e.msg);
    /* the most tensors a parsed config can ask for exceeds DS_MAX_TENSORS */
    c.n_layers = DS_MAX_LAYERS;
    c.n_routed_experts = DS_MAX_EXPERTS;
    c.moe_intermediate_size = 32;
    c.kv_lora_rank = 32;
    c.qk_rope_head_dim = 8;
    c.qk_nope_head_dim = c.v_head_dim = 16;
    T_STATUS("config-9.14", dsi_arch_tensor_specs(&c, &t_al, &s, &n, &e), DS_ERR_LIMIT, e.msg);
    T_CHECK("config-9.14", s == NULL && n == 0, "nothing returned");
}

/* ==== 10: allocation failures ============================================= */
static void test_alloc_failures(void) {
    size_t len = 0;
    char *txt = t_family_config("config-10.1", "v3", &len);
    if (!txt) return;
    int fails = 0, oks = 0;
    for (long k = 1; k < 10000; k++) {
        t_counter cnt = {0, 0, k};
        dsi_alloc al = {t_malloc, t_realloc, t_free, &cnt};
        ds_model_config c;
        dsi_err e = {0};
        ds_status s = dsi_config_parse(txt, len, &al, &c, &e);
        dsi_tensor_spec *sp = NULL;
        size_t n = 0;
        if (s == DS_OK) s = dsi_arch_tensor_specs(&c, &al, &sp, &n, &e);
        if (sp) dsi_free(&al, sp);
        T_CHECK("config-10.1", cnt.live == 0, "fail at %ld: %ld blocks leaked", k, cnt.live);
        if (s == DS_OK) {
            oks++;
            break;
        }
        T_CHECK("config-10.1", s == DS_ERR_NOMEM, "fail at %ld: status %d (%s)", k, (int)s, e.msg);
        fails++;
    }
    T_CHECK("config-10.1", fails > 0 && oks == 1, "%d failing runs, then success %d", fails, oks);
    free(txt);
}

int main(void) {
    dsi_err e;
    if (dsi_alloc_init(&t_al, NULL, &e) != DS_OK) return 2;
    test_families();
    test_defaults();
    test_required_and_types();
    test_arch();
    test_ranges();
    test_rope();
    test_moe_layers();
    test_specs();
    test_alloc_failures();
    return t_finish("test_config");
}
