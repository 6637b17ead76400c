/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_lora.c — LoRA adapters (ds_convert_lora, ds_adapter_open,
 * ds_context_set_adapters, ds_lora_merge) on the generated tiny checkpoints
 * ($DS_TESTDATA) against PEFT (tests/ref/lora, made by
 * tests/ref/make_lora_goldens.py from the same weights).
 *
 *  lora-1: parity: F32 logits of every position within 1e-4 of PEFT's
 *          (unmerged) for every case; merged (ds_lora_merge) and unmerged
 *          within 1e-5 of each other
 *  lora-2: scales: multiplier 0 gives the base's logits, 2 moves them twice
 *          as far (to first order); a new list forgets the tokens; get/set
 *  lora-3: an expert cache on the base: the same logits as resident, bit for
 *          bit, with the adapter's routed-expert parts paged
 *  lora-4: several sequences in one pass, each with its own list (one
 *          adapter, none, two stacked): each row is its sequence's own run
 *  lora-5: errors: an adapter of another conversion of the same checkpoint,
 *          a tampered adapter, a wrong key, a model where an adapter is
 *          wanted and the reverse, closing in the wrong order, a foreign
 *          adapter in a list, a base opened without weights
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

static const char *testdata, *goldens;   /* $DS_TESTDATA; tests/ref/lora or $DS_LORA_GOLDENS */
static char tmpdir[256];
static const unsigned char test_key[32] = {7, 7, 7, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                           13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28};

static void *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int32_t *read_tokens(const char *path, size_t *n) {
    size_t len = 0;
    char *text = read_all(path, &len);
    *n = 0;
    if (!text) return NULL;
    dsi_alloc al;
    dsi_err e = {0};
    dsi_alloc_init(&al, NULL, &e);
    dsi_json_doc *doc = NULL;
    int32_t *out = NULL;
    if (dsi_json_parse(text, len, &al, &doc, &e) == DS_OK) {
        const dsi_json *v = dsi_json_get(dsi_json_root(doc), "token_ids");
        if (v && v->type == DSI_JSON_ARRAY && v->n) {
            out = malloc(v->n * sizeof *out);
            for (uint32_t i = 0; i < v->n; i++) out[i] = (int32_t)v->kids[i].i;
            *n = v->n;
        }
        dsi_json_free(doc);
    }
    free(text);
    return out;
}

/* An F32 plaintext container of a family, converted once per run (tag
 * tells conversions of one family apart: each has its own identity). */
static const char *base_path(const char *family, const char *tag) {
    static char p[16][512];
    static int next;
    char *out = p[next++ % 16];
    snprintf(out, 512, "%s/%s%s.dsm", tmpdir, family, tag);
    if (access(out, F_OK) == 0) return out;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", testdata, family);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_F32;
    cp.encrypt = 0;
    if (ds_convert(dir, out, &cp) != DS_OK) {
        printf("convert %s: %s\n", family, ds_last_error());
        return NULL;
    }
    return out;
}

static ds_model *open_base(const char *path, uint64_t cache) {
    ds_model *m = NULL;
    ds_model_params mp = ds_model_default_params();
    mp.n_threads = 2;
    mp.expert_cache_bytes = cache;
    if (!path || ds_model_open(&m, path, &mp) != DS_OK) {
        printf("open %s: %s\n", path ? path : "(null)", ds_last_error());
        return NULL;
    }
    return m;
}

/* Converts golden case `name` against base m into tmpdir/<name><tag>.dsa. */
static const char *adapter_path(const char *name, const char *tag, ds_model *m) {
    static char p[16][512];
    static int next;
    char *out = p[next++ % 16];
    char dir[512];
    snprintf(out, 512, "%s/%s%s.dsa", tmpdir, name, tag);
    snprintf(dir, sizeof dir, "%s/%s", goldens, name);
    ds_convert_lora_params lp = ds_convert_lora_default_params();
    lp.key = test_key;
    lp.key_len = 32;
    lp.overwrite = 1;
    if (ds_convert_lora(dir, m, out, &lp) != DS_OK) {
        printf("convert-lora %s: %s\n", name, ds_last_error());
        return NULL;
    }
    return out;
}

static ds_adapter *open_adapter(ds_model *m, const char *path) {
    ds_adapter *a = NULL;
    ds_adapter_params ap = ds_adapter_default_params();
    ap.key = test_key;
    ap.key_len = 32;
    if (!path || ds_adapter_open(&a, m, path, &ap) != DS_OK) {
        printf("adapter %s: %s\n", path ? path : "(null)", ds_last_error());
        return NULL;
    }
    return a;
}

/* All-position logits of tokens through a fresh context of m with adapters. */
static float *run(ds_model *m, ds_adapter **a, const float *scales, size_t na, const int32_t *tok, int n) {
    ds_model_config cf;
    (void)!ds_model_get_config(m, &cf);
    float *out = malloc((size_t)n * cf.vocab_size * sizeof(float));
    ds_context *c = NULL;
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = 64;
    ds_status s = ds_context_new(&c, m, &cp);
    if (!s) s = ds_context_set_adapters(c, a, scales, na);
    if (!s) s = ds_context_eval(c, tok, (size_t)n, out, 1);
    if (s) {
        printf("run: %s\n", ds_last_error());
        free(out);
        out = NULL;
    }
    ds_context_free(c);
    return out;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* ==== 1: parity with PEFT ================================================ */
static const struct {
    const char *name, *family;
} cases[] = {
    {"v2lite_doc", "v2lite"}, {"v2lite_attn_all", "v2lite"}, {"v2lite_mlp", "v2lite"}, {"v2_qlora", "v2"},
    {"v3_all", "v3"},         {"moe16b_qkvo", "moe16b"},     {"v2lite_experts", "v2lite"},
};

static void test_parity(const int32_t *tok, int n) {
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char id[96], lp[512], mp[512];
        snprintf(id, sizeof id, "lora-1.%s", cases[k].name);
        snprintf(lp, sizeof lp, "%s/%s/logits.f32", goldens, cases[k].name);
        snprintf(mp, sizeof mp, "%s/%s.merged.dsm", tmpdir, cases[k].name);
        size_t ll = 0;
        float *want = read_all(lp, &ll);
        if (!want) {
            T_SKIP(id, "no golden (tests/ref/make_lora_goldens.py)");
            continue;
        }
        ds_model *m = open_base(base_path(cases[k].family, ""), 0);
        ds_adapter *a = m ? open_adapter(m, adapter_path(cases[k].name, "", m)) : NULL;
        T_CHECK(id, a != NULL, "base or adapter failed");
        float *got = a ? run(m, &a, NULL, 1, tok, n) : NULL;
        ds_model_config cf;
        if (m) (void)!ds_model_get_config(m, &cf);
        size_t N = (size_t)n * (m ? cf.vocab_size : 0);
        T_CHECK(id, got && ll == N * 4, "no logits, or the golden has %zu bytes for %zu floats", ll, N);
        if (got && ll == N * 4) {
            double d = maxdiff(got, want, N);
            printf("INFO %s: max |ours - PEFT| %.3g\n", id, d);
            T_CHECK(id, d <= 1e-4, "max |ours - PEFT| %.3g > 1e-4", d);
            /* merged: the same adapter baked into a copy of the base */
            ds_convert_lora_params cp = ds_convert_lora_default_params();
            cp.encrypt = 0;
            cp.overwrite = 1;
            ds_status s = ds_lora_merge(a, 1.0f, mp, &cp);
            T_STATUS(id, s, DS_OK, ds_last_error());
            ds_model *mm = s ? NULL : open_base(mp, 0);
            float *merged = mm ? run(mm, NULL, NULL, 0, tok, n) : NULL;
            T_CHECK(id, merged != NULL, "merged model failed");
            if (merged) {
                double dm = maxdiff(got, merged, N);
                printf("INFO %s: max |unmerged - merged| %.3g\n", id, dm);
                T_CHECK(id, dm <= 1e-5, "max |unmerged - merged| %.3g > 1e-5", dm);
                unsigned char i1[32], i2[32];
                (void)!ds_model_id(m, i1);
                (void)!ds_model_id(mm, i2);
                T_CHECK(id, memcmp(i1, i2, 32) != 0, "the merged copy has the base's identity");
            }
            free(merged);
            ds_model_close(mm);
        }
        free(got);
        free(want);
        T_STATUS(id, ds_adapter_close(a), DS_OK, ds_last_error());
        T_STATUS(id, ds_model_close(m), DS_OK, ds_last_error());
    }
}

/* ==== 2: scales and lists ================================================ */
static void test_scales(const int32_t *tok, int n) {
    const char *id = "lora-2";
    ds_model *m = open_base(base_path("v2lite", ""), 0);
    ds_adapter *a = m ? open_adapter(m, adapter_path("v2lite_attn_all", "", m)) : NULL;
    if (!a) {
        T_CHECK(id, 0, "no adapter");
        ds_model_close(m);
        return;
    }
    ds_model_config cf;
    (void)!ds_model_get_config(m, &cf);
    size_t N = (size_t)n * cf.vocab_size;
    float zero = 0, one = 1, two = 2;
    float *base = run(m, NULL, NULL, 0, tok, n), *s0 = run(m, &a, &zero, 1, tok, n), *s1 = run(m, &a, &one, 1, tok, n),
          *s2 = run(m, &a, &two, 1, tok, n);
    T_CHECK("lora-2.1", base && s0 && s1 && s2, "a run failed");
    if (base && s0 && s1 && s2) {
        double d0 = maxdiff(base, s0, N), d1 = maxdiff(base, s1, N), d2 = maxdiff(base, s2, N);
        printf("INFO lora-2: max |logit - base| at scale 0 %.3g, 1 %.3g, 2 %.3g\n", d0, d1, d2);
        /* the attention-only adapter leaves the fused MLP path alone: exact */
        T_CHECK("lora-2.1", d0 == 0, "scale 0 moved the logits by %.3g", d0);
        /* (attention's softmax makes the move less than linear at this size) */
        T_CHECK("lora-2.2", d1 > 1e-3 && d2 > 1.1 * d1, "scale 1 moved them %.3g, scale 2 %.3g", d1, d2);
    }
    free(base);
    free(s0);
    free(s1);
    free(s2);
    /* a new list forgets the tokens; the same list keeps them */
    ds_context *c = NULL;
    ds_status s = ds_context_new(&c, m, NULL);
    if (!s) s = ds_context_eval(c, tok, 4, NULL, 0);
    if (!s) s = ds_context_set_adapters(c, NULL, NULL, 0);
    T_CHECK("lora-2.3", !s && ds_context_n_past(c) == 4, "an unchanged (empty) list forgot the tokens");
    if (!s) s = ds_context_set_adapters(c, &a, &two, 1);
    T_CHECK("lora-2.3", !s && ds_context_n_past(c) == 0, "a new list kept %d tokens", ds_context_n_past(c));
    ds_adapter *got[4] = {0};
    float gs[4] = {0};
    size_t k = ds_context_get_adapters(c, got, gs, 4);
    T_CHECK("lora-2.4", k == 1 && got[0] == a && fabsf(gs[0] - 2) < 1e-6f, "get_adapters: %zu, scale %g", k, gs[0]);
    T_STATUS("lora-2.5", ds_adapter_close(a), DS_ERR_MISUSE, ds_last_error());
    T_STATUS("lora-2.5", ds_model_close(m), DS_ERR_MISUSE, ds_last_error());
    ds_adapter *many[DS_MAX_ADAPTERS + 1];
    for (int i = 0; i <= DS_MAX_ADAPTERS; i++) many[i] = a;
    T_STATUS("lora-2.6", ds_context_set_adapters(c, many, NULL, DS_MAX_ADAPTERS + 1), DS_ERR_INVALID_ARG,
             ds_last_error());
    ds_adapter_info inf;
    T_STATUS("lora-2.7", ds_adapter_get_info(a, &inf), DS_OK, ds_last_error());
    T_CHECK("lora-2.7", inf.rank == 4 && fabsf(inf.scale - inf.alpha / 4) < 1e-6f && inf.n_params > 0 &&
                            inf.resident_bytes == inf.bytes && strstr(inf.targets, "kv_b_proj"),
            "info: r %d alpha %g scale %g params %llu targets %s", inf.rank, inf.alpha, inf.scale,
            (unsigned long long)inf.n_params, inf.targets);
    ds_context_free(c);
    T_STATUS("lora-2.5", ds_adapter_close(a), DS_OK, ds_last_error());
    T_STATUS("lora-2.5", ds_model_close(m), DS_OK, ds_last_error());
}

/* ==== 3: the expert cache ================================================ */
static void test_paged(const int32_t *tok, int n) {
    const char *id = "lora-3";
    const char *bp = base_path("v2lite", "");
    /* four expert slots of the 16 routed experts (24 KiB each in F32) */
    ds_model *m = open_base(bp, 0), *pm = open_base(bp, 100000);
    ds_adapter *a = m ? open_adapter(m, adapter_path("v2lite_experts", "", m)) : NULL;
    ds_adapter *pa = pm && a ? open_adapter(pm, adapter_path("v2lite_experts", "", pm)) : NULL;
    T_CHECK(id, a && pa, "no adapters");
    if (a && pa) {
        ds_model_config cf;
        (void)!ds_model_get_config(m, &cf);
        size_t N = (size_t)n * cf.vocab_size;
        float *r = run(m, &a, NULL, 1, tok, n), *p = run(pm, &pa, NULL, 1, tok, n);
        T_CHECK("lora-3.1", r && p && memcmp(r, p, N * sizeof(float)) == 0, "paged and resident differ by %.3g",
                r && p ? maxdiff(r, p, N) : -1.0);
        ds_adapter_info ia, ip;
        (void)!ds_adapter_get_info(a, &ia);
        (void)!ds_adapter_get_info(pa, &ip);
        T_CHECK("lora-3.2", ip.resident_bytes < ip.bytes && ia.resident_bytes == ia.bytes,
                "paged adapter keeps %llu of %llu bytes resident", (unsigned long long)ip.resident_bytes,
                (unsigned long long)ip.bytes);
        free(r);
        free(p);
    }
    ds_adapter_close(a);
    ds_adapter_close(pa);
    ds_model_close(m);
    ds_model_close(pm);
}

/* ==== 4: several sequences, several lists ================================ */
static void test_batch(const int32_t *tok, int n) {
    ds_model *m = open_base(base_path("v2lite", ""), 0);
    ds_adapter *a = m ? open_adapter(m, adapter_path("v2lite_attn_all", "", m)) : NULL;
    ds_adapter *b = m ? open_adapter(m, adapter_path("v2lite_experts", "", m)) : NULL;
    T_CHECK("lora-4", a && b, "no adapters");
    if (a && b) {
        ds_model_config cf;
        (void)!ds_model_get_config(m, &cf);
        int V = cf.vocab_size, P = n - 1;   /* a prompt of P tokens, then one step of each */
        ds_adapter *lists[3][2] = {{a, NULL}, {NULL, NULL}, {a, b}};
        size_t nl[3] = {1, 0, 2};
        float sc[3][2] = {{1, 1}, {1, 1}, {0.5f, 1}};
        float *want[3];
        for (int i = 0; i < 3; i++) want[i] = run(m, lists[i], sc[i], nl[i], tok, n);
        ds_context *c = NULL;
        ds_context_params cp = ds_context_default_params();
        cp.n_seq = 3;
        cp.n_ctx = 64;
        ds_status s = ds_context_new(&c, m, &cp);
        ds_context *q[3];
        for (int i = 0; i < 3 && !s; i++) {
            q[i] = ds_context_seq(c, i);
            s = ds_context_set_adapters(q[i], lists[i], sc[i], nl[i]);
            if (!s) s = ds_context_eval(q[i], tok, (size_t)P, NULL, 0);
        }
        float *out = malloc(3 * (size_t)V * sizeof(float));
        float *outs[3] = {out, out + V, out + 2 * V};
        int32_t last[3] = {tok[P], tok[P], tok[P]};
        if (!s) s = ds_context_eval_batch(q, last, 3, outs);
        T_STATUS("lora-4.1", s, DS_OK, ds_last_error());
        for (int i = 0; i < 3 && !s; i++) {
            double d = want[i] ? maxdiff(outs[i], want[i] + (size_t)P * V, (size_t)V) : 1;
            T_CHECK("lora-4.1", d <= 1e-5, "sequence %d: batched step differs from its own run by %.3g", i, d);
        }
        for (int i = 0; i < 3; i++) free(want[i]);
        free(out);
        ds_context_free(c);
    }
    ds_adapter_close(a);
    ds_adapter_close(b);
    ds_model_close(m);
}

/* ==== 5: errors ========================================================== */
static void flip_byte(const char *path, long off) {
    FILE *f = fopen(path, "r+b");
    if (!f) return;
    fseek(f, off, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(ch ^ 0x20, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to) {
    size_t len = 0;
    void *b = read_all(from, &len);
    FILE *f = fopen(to, "wb");
    if (b && f) (void)!fwrite(b, 1, len, f);
    if (f) fclose(f);
    free(b);
}

static void test_errors(void) {
    const char *bp = base_path("v2lite", ""), *bp2 = base_path("v2lite", "-again");
    ds_model *m = open_base(bp, 0), *m2 = open_base(bp2, 0);
    const char *ap = m ? adapter_path("v2lite_doc", "", m) : NULL;
    T_CHECK("lora-5", m && m2 && ap, "setup failed");
    if (!m || !m2 || !ap) {
        ds_model_close(m);
        ds_model_close(m2);
        return;
    }
    ds_adapter *a = NULL;
    ds_adapter_params ap_ = ds_adapter_default_params();
    ap_.key = test_key;
    ap_.key_len = 32;
    /* 5.1 the same checkpoint converted again: another identity */
    ds_status s = ds_adapter_open(&a, m2, ap, &ap_);
    T_STATUS("lora-5.1", s, DS_ERR_ADAPTER_BASE, ds_last_error());
    T_CHECK("lora-5.1", a == NULL && strstr(ds_last_error(), "identity"), "message: %s", ds_last_error());
    /* 5.2 a wrong key, no key */
    unsigned char wrong[32];
    memcpy(wrong, test_key, 32);
    wrong[0] ^= 1;
    ds_adapter_params wp = ap_;
    wp.key = wrong;
    T_STATUS("lora-5.2", ds_adapter_open(&a, m, ap, &wp), DS_ERR_WRONG_KEY, ds_last_error());
    T_STATUS("lora-5.2", ds_adapter_open(&a, m, ap, NULL), DS_ERR_NEED_KEY, ds_last_error());
    /* 5.3 tampered: a byte of the first segment's ciphertext, and of the header */
    char tp[512];
    snprintf(tp, sizeof tp, "%s/tampered.dsa", tmpdir);
    copy_file(ap, tp);
    flip_byte(tp, 4096 + 10);
    T_STATUS("lora-5.3", ds_adapter_open(&a, m, tp, &ap_), DS_ERR_AUTH, ds_last_error());
    copy_file(ap, tp);
    flip_byte(tp, 40);
    s = ds_adapter_open(&a, m, tp, &ap_);
    T_CHECK("lora-5.3", s == DS_ERR_CORRUPT || s == DS_ERR_AUTH, "header edit: %s", ds_last_error());
    /* 5.4 a model where an adapter is wanted, and the reverse */
    T_STATUS("lora-5.4", ds_adapter_open(&a, m, bp, &ap_), DS_ERR_NOT_ADAPTER, ds_last_error());
    ds_model *x = NULL;
    ds_model_params mp = ds_model_default_params();
    mp.key = test_key;
    mp.key_len = 32;
    T_STATUS("lora-5.4", ds_model_open(&x, ap, &mp), DS_ERR_NOT_ADAPTER, ds_last_error());
    T_CHECK("lora-5.4", strstr(ds_last_error(), "--lora") != NULL, "message: %s", ds_last_error());
    /* 5.5 a foreign adapter in a list; a base without weights */
    T_STATUS("lora-5.5", ds_adapter_open(&a, m, ap, &ap_), DS_OK, ds_last_error());
    ds_context *c2 = NULL;
    if (!ds_context_new(&c2, m2, NULL))
        T_STATUS("lora-5.5", ds_context_set_adapters(c2, &a, NULL, 1), DS_ERR_INVALID_ARG, ds_last_error());
    ds_context_free(c2);
    ds_model *meta = NULL;
    mp = ds_model_default_params();
    mp.load_weights = 0;
    ds_adapter *y = NULL;
    if (!ds_model_open(&meta, bp, &mp))
        T_STATUS("lora-5.5", ds_adapter_open(&y, meta, ap, &ap_), DS_ERR_MISUSE, ds_last_error());
    ds_model_close(meta);
    /* 5.6 closing the base first */
    T_STATUS("lora-5.6", ds_model_close(m), DS_ERR_MISUSE, ds_last_error());
    T_STATUS("lora-5.6", ds_adapter_close(a), DS_OK, ds_last_error());
    T_STATUS("lora-5.6", ds_adapter_close(NULL), DS_OK, ds_last_error());
    T_STATUS("lora-5.6", ds_model_close(m), DS_OK, ds_last_error());
    ds_model_close(m2);
    unlink(tp);
}

int main(void) {
    testdata = getenv("DS_TESTDATA");
    goldens = getenv("DS_LORA_GOLDENS") ? getenv("DS_LORA_GOLDENS") : "tests/ref/lora";
    if (!testdata) {
        T_SKIP("lora", "no generated checkpoints ($DS_TESTDATA)");
        return t_finish("test_lora");
    }
    snprintf(tmpdir, sizeof tmpdir, "%s/lora-test-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) {
        T_CHECK("lora", 0, "mkdtemp failed");
        return t_finish("test_lora");
    }
    size_t n = 0;
    int32_t *tok = read_tokens("tests/ref/goldens/tokens.json", &n);
    T_CHECK("lora", tok && n >= 8, "no tokens");
    if (tok) {
        test_parity(tok, (int)n);
        test_scales(tok, (int)n);
        test_paged(tok, (int)n);
        test_batch(tok, (int)n);
        test_errors();
    }
    free(tok);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return t_finish("test_lora");
}
