/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_lora_convert.c — ds_convert_lora and ds_lora_merge.
 *
 * Adapters are the PEFT directories of tests/gen/make_peft.py (made here
 * into $DS_TESTDATA/peft when missing) over the tiny checkpoints of
 * make_checkpoint.py, converted with --quant f32 (and q8 for one merge).
 * References are numpy's (expected.safetensors beside each case): the
 * matrices upright as the file's dtype decodes them, s * B A, and W + s * B A
 * from the checkpoint's true weights. Case ids: lora-conv-N.M.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-lora-conv-XXXXXX";
static unsigned char key[32], key2[32];
static const dsi_alloc *AL;
static dsi_alloc al_default;

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

/* expected.safetensors: F32 tensors by name. */
typedef struct ref {
    char *bytes;
    size_t len;
    dsi_st_header *h;
} ref;

static int ref_open(ref *r, const char *path) {
    memset(r, 0, sizeof *r);
    r->bytes = read_file(path, &r->len);
    dsi_err e = {0};
    if (!r->bytes || dsi_st_parse((const uint8_t *)r->bytes, r->len, r->len, AL, &r->h, &e)) return -1;
    return 0;
}
static const float *ref_get(const ref *r, const char *name, uint64_t *n) {
    const dsi_st_tensor *t = dsi_st_find(r->h, name);
    if (!t) return NULL;
    *n = (t->end - t->begin) / 4;
    return (const float *)(const void *)(r->bytes + r->h->data_start + t->begin);
}
static void ref_close(ref *r) {
    dsi_st_free(r->h);
    free(r->bytes);
}

static char *path_in(const char *dir, const char *name) {
    static char buf[8][700];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static ds_model *open_model(const char *path, const unsigned char *k, int load) {
    ds_model_params mp = ds_model_default_params();
    mp.key = k;
    mp.key_len = 32;
    mp.load_weights = load;
    ds_model *m = NULL;
    if (ds_model_open(&m, path, &mp) != DS_OK) {
        printf("open %s: %s\n", path, ds_last_error());
        return NULL;
    }
    return m;
}

static ds_status convert_base(const char *family, const char *out, ds_quant q) {
    ds_convert_params p = ds_convert_default_params();
    p.quant = q;
    p.key = key;
    p.key_len = 32;
    return ds_convert(path_in(testdata, family), out, &p);
}

static ds_convert_lora_params lora_params(ds_lora_dtype d) {
    ds_convert_lora_params p = ds_convert_lora_default_params();
    p.key = key;
    p.key_len = 32;
    p.dtype = d;
    return p;
}

/* Whether dir holds anything whose name starts with prefix. */
static int leftovers(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) n++;
    if (d) closedir(d);
    return n;
}

/* ==== Good adapters ======================================================= */
typedef struct expect {
    int r;
    double alpha, scale;
    char targets[256];
    uint64_t n_params;
    char modules[128][96];
    int n_modules;
} expect;

static int read_expect(const char *dir, expect *x) {
    memset(x, 0, sizeof *x);
    size_t len;
    char *txt = read_file(path_in(dir, "expected.json"), &len);
    dsi_json_doc *doc = NULL;
    dsi_err e = {0};
    if (!txt || dsi_json_parse(txt, len, AL, &doc, &e)) {
        free(txt);
        return -1;
    }
    const dsi_json *root = dsi_json_root(doc);
    int64_t v;
    dsi_json_get_int(root, "r", &v);
    x->r = (int)v;
    dsi_json_get_num(root, "alpha", &x->alpha);
    dsi_json_get_num(root, "scale", &x->scale);
    dsi_json_get_int(root, "n_params", &v);
    x->n_params = (uint64_t)v;
    const dsi_json *t = dsi_json_get(root, "targets");
    for (uint32_t i = 0; t && i < t->n; i++)
        snprintf(x->targets + strlen(x->targets), sizeof x->targets - strlen(x->targets), "%s%s", i ? "," : "",
                 t->kids[i].str);
    const dsi_json *m = dsi_json_get(root, "modules");
    for (uint32_t i = 0; m && i < m->n && i < 128; i++) snprintf(x->modules[x->n_modules++], 96, "%s", m->kids[i].str);
    dsi_json_free(doc);
    free(txt);
    return 0;
}

static int is_module(const expect *x, const char *weight_name) {
    size_t nl = strlen(weight_name);
    if (nl < 8 || strcmp(weight_name + nl - 7, ".weight")) return -1;
    for (int i = 0; i < x->n_modules; i++)
        if (strlen(x->modules[i]) == nl - 7 && !strncmp(x->modules[i], weight_name, nl - 7)) return i;
    return -1;
}

/* A tensor by name (linear: an adapter's container keeps no sorted index). */
static const dsi_tensor *find_tensor(const ds_model *m, const char *name, size_t *idx) {
    for (size_t i = 0; i < m->meta.n_tensors; i++)
        if (!strcmp(m->meta.tensors[i].name, name)) {
            *idx = i;
            return &m->meta.tensors[i];
        }
    return NULL;
}

static float *read_tensor(const ds_model *m, const char *name, uint64_t *n) {
    size_t idx;
    const dsi_tensor *t = find_tensor(m, name, &idx);
    if (!t) return NULL;
    *n = t->dims[0] * (t->n_dims == 2 ? t->dims[1] : 1);
    float *b = malloc(*n * sizeof *b);
    if (b && ds_model_tensor_read_f32(m, idx, b, (size_t)*n) != DS_OK) {
        free(b);
        return NULL;
    }
    return b;
}

/* Whether two comma-separated lists hold the same names. */
static int same_set(const char *a, const char *b) {
    int na = 1, nb = 1;
    for (const char *p = a; *p; p++) na += *p == ',';
    for (const char *p = b; *p; p++) nb += *p == ',';
    if (na != nb) return 0;
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s", a);
    for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ",")) {
        size_t l = strlen(tok);
        const char *p = b;
        int hit = 0;
        while ((p = strstr(p, tok))) {
            if ((p == b || p[-1] == ',') && (p[l] == ',' || !p[l])) hit = 1;
            p += l;
        }
        if (!hit) return 0;
    }
    return 1;
}

/* The adapter record's target_modules, comma-joined. */
static void record_targets(const ds_model *f, char *out, size_t cap) {
    out[0] = 0;
    dsi_json_doc *doc = NULL;
    dsi_err e = {0};
    if (!f->meta.adapter_json || dsi_json_parse(f->meta.adapter_json, f->meta.adapter_len, AL, &doc, &e)) return;
    const dsi_json *t = dsi_json_get(dsi_json_root(doc), "target_modules");
    for (uint32_t i = 0; t && i < t->n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", t->kids[i].str);
    dsi_json_free(doc);
}

/* The merged model against W + scale * s * B A (numpy), every other tensor
 * against the base's values, the records against the base's. */
static void check_merge(const char *id, ds_adapter *a, ds_model *base, const expect *x, const ref *rf, float scale,
                        bool quantized) {
    char out[700], cid[64];
    snprintf(out, sizeof out, "%s/%s.merged.dsm", tmpdir, id);
    ds_convert_lora_params p = lora_params(DS_LORA_F32);
    ds_status s = ds_lora_merge(a, scale, out, &p);
    snprintf(cid, sizeof cid, "%s.merge", id);
    T_STATUS(cid, s, DS_OK, ds_last_error());
    if (s) return;
    ds_model *mm = open_model(out, key, 0);
    T_CHECK(cid, mm != NULL, "merged model does not open");
    if (!mm) return;
    unsigned char ib[32], im[32];
    T_CHECK(cid, !ds_model_id(base, ib) && !ds_model_id(mm, im) && memcmp(ib, im, 32) != 0,
            "the merged model must have an identity of its own");
    T_CHECK(cid, mm->meta.config_len == base->meta.config_len &&
                     !memcmp(mm->meta.config_json, base->meta.config_json, base->meta.config_len) &&
                     mm->meta.tokenizer_len == base->meta.tokenizer_len &&
                     !memcmp(mm->meta.tokenizer_json, base->meta.tokenizer_json, base->meta.tokenizer_len) &&
                     mm->meta.tokcfg_len == base->meta.tokcfg_len,
            "config and tokenizer records differ from the base's");
    T_CHECK(cid, mm->meta.n_tensors == base->meta.n_tensors, "%zu tensors, base has %zu", mm->meta.n_tensors,
            base->meta.n_tensors);
    int merged = 0, same = 0, bad = 0;
    double worst = 0;
    for (size_t i = 0; i < mm->meta.n_tensors && i < base->meta.n_tensors; i++) {
        const dsi_tensor *t = &mm->meta.tensors[i], *bt = &base->meta.tensors[i];
        if (strcmp(t->name, bt->name) || t->dtype != bt->dtype || memcmp(t->dims, bt->dims, sizeof t->dims)) {
            bad++;
            continue;
        }
        uint64_t n = 0, nb = 0;
        float *y = read_tensor(mm, t->name, &n), *w = read_tensor(base, t->name, &nb);
        int mi = is_module(x, t->name);
        if (!y || !w || n != nb) bad++;
        else if (mi < 0) {
            same += !memcmp(y, w, n * 4);
            bad += memcmp(y, w, n * 4) != 0;
        } else {
            char dn[128];
            uint64_t nd = 0;
            snprintf(dn, sizeof dn, "%s.delta", x->modules[mi]);
            const float *d = ref_get(rf, dn, &nd);
            if (!d || nd != n) {
                bad++;
            } else {
                /* exact F32 base: W + scale * delta, to rounding; quantized:
                 * the merged matrix re-quantized, within a block's step of
                 * the dequantized base plus the delta */
                double amax = 0;
                for (uint64_t k = 0; k < n; k++) amax = fmax(amax, fabs((double)w[k] + scale * (double)d[k]));
                for (uint64_t k = 0; k < n; k++) {
                    double want = (double)w[k] + (double)scale * d[k], err = fabs(y[k] - want);
                    double tol = quantized ? amax / 100 : 1e-5 * (1 + fabs(want));
                    if (err > tol) bad++;
                    if (err > worst) worst = err;
                }
                merged++;
            }
        }
        free(y);
        free(w);
    }
    T_CHECK(cid, merged == x->n_modules, "%d matrices merged, want %d", merged, x->n_modules);
    T_CHECK(cid, bad == 0, "%d values or tensors differ (worst error %g)", bad, worst);
    T_CHECK(cid, same + merged == (int)base->meta.n_tensors, "%d unchanged + %d merged of %zu", same, merged,
            base->meta.n_tensors);
    ds_model_close(mm);
}

/* Converts case `name` over base_path and checks the file against numpy's
 * references; merges when asked. */
static void check_good(const char *id, const char *name, const char *base_path, ds_lora_dtype dt, float merge_scale) {
    char dir[700], out[700], cid[64];
    snprintf(dir, sizeof dir, "%s/peft/%s", testdata, name);
    snprintf(out, sizeof out, "%s/%s%s.dsa", tmpdir, name, dt == DS_LORA_F16 ? "-f16" : "");
    expect x;
    ref rf;
    snprintf(cid, sizeof cid, "%s.0", id);
    if (read_expect(dir, &x) || ref_open(&rf, path_in(dir, "expected.safetensors"))) {
        T_CHECK(cid, 0, "cannot read the references in %s", dir);
        return;
    }
    ds_model *base = open_model(base_path, key, 0);
    ds_convert_lora_params p = lora_params(dt);
    ds_status s = base ? ds_convert_lora(dir, base, out, &p) : DS_ERR_IO;
    snprintf(cid, sizeof cid, "%s.1", id);
    T_STATUS(cid, s, DS_OK, ds_last_error());
    ds_model_close(base);
    if (s) {
        ref_close(&rf);
        return;
    }
    base = open_model(base_path, key, 1);
    ds_adapter *a = NULL;
    ds_adapter_params ap = ds_adapter_default_params();
    ap.key = key;
    ap.key_len = 32;
    s = base ? ds_adapter_open(&a, base, out, &ap) : DS_ERR_IO;
    snprintf(cid, sizeof cid, "%s.2", id);
    T_STATUS(cid, s, DS_OK, ds_last_error());
    if (!s) {
        ds_adapter_info info;
        unsigned char bid[32];
        snprintf(cid, sizeof cid, "%s.3", id);
        T_CHECK(cid, ds_adapter_get_info(a, &info) == DS_OK && !ds_model_id(base, bid), "info: %s", ds_last_error());
        T_CHECK(cid, info.rank == x.r && fabs(info.alpha - x.alpha) < 1e-6 && fabs(info.scale - x.scale) < 1e-6 &&
                         info.rslora == (fabs(x.scale - x.alpha / x.r) > 1e-9),
                "r %d alpha %g scale %g, want %d %g %g", info.rank, (double)info.alpha, (double)info.scale, x.r,
                x.alpha, x.scale);
        T_CHECK(cid, same_set(info.targets, x.targets), "targets '%s', want '%s'", info.targets, x.targets);
        /* the record lists them sorted */
        char rec[256];
        record_targets(&a->f, rec, sizeof rec);
        T_CHECK(cid, !strcmp(rec, x.targets), "record's target_modules '%s', want '%s'", rec, x.targets);
        T_CHECK(cid, info.n_params == x.n_params, "n_params %llu, want %llu", (unsigned long long)info.n_params,
                (unsigned long long)x.n_params);
        T_CHECK(cid, info.dtype == (dt == DS_LORA_F16 ? DS_DTYPE_F16 : DS_DTYPE_F32), "dtype %d", (int)info.dtype);
        T_CHECK(cid, !memcmp(info.base_id, bid, 32), "base_id is not the base's identity");
        /* every matrix, upright, as numpy decoded it (F16: as numpy rounded it) */
        const ds_model *f = &a->f;
        snprintf(cid, sizeof cid, "%s.4", id);
        T_CHECK(cid, f->meta.n_tensors == (size_t)(2 * x.n_modules), "%zu tensors, want %d", f->meta.n_tensors,
                2 * x.n_modules);
        int bad = 0, layout = 0;
        for (int i = 0; i < x.n_modules; i++)
            for (int ab = 0; ab < 2; ab++) {
                char tn[128], rn[140];
                snprintf(tn, sizeof tn, "%s.lora_%c", x.modules[i], ab ? 'B' : 'A');
                snprintf(rn, sizeof rn, "%s%s", tn, dt == DS_LORA_F16 ? ".f16" : "");
                uint64_t n = 0, nr = 0;
                float *y = read_tensor(f, tn, &n);
                const float *want = ref_get(&rf, rn, &nr);
                if (!y || !want || n != nr || memcmp(y, want, n * 4)) {
                    if (!bad) printf("  %s: %s\n", tn, !y ? "missing" : !want ? "no reference" : "values differ");
                    bad++;
                }
                free(y);
                /* its segment: the layer's dense one, or its expert's */
                size_t idx;
                const dsi_tensor *t = find_tensor(f, tn, &idx);
                int l = -1, xe = -1, nn = 0;
                sscanf(tn, "model.layers.%d.mlp.experts.%d.%n", &l, &xe, &nn);
                if (!nn) {
                    xe = -1;
                    sscanf(tn, "model.layers.%d.", &l);
                }
                const dsi_segment *sg = t ? &f->meta.segments[t->segment] : NULL;
                if (!sg || sg->layer != l || sg->expert != xe ||
                    sg->kind != (xe < 0 ? (uint32_t)DS_SEGMENT_DENSE : (uint32_t)DS_SEGMENT_EXPERT))
                    layout++;
            }
        T_CHECK(cid, bad == 0, "%d of %d matrices differ from numpy's", bad, 2 * x.n_modules);
        T_CHECK(cid, layout == 0, "%d tensors in the wrong segment", layout);
        if (merge_scale != 0) check_merge(id, a, base, &x, &rf, merge_scale, false);
        T_CHECK(cid, ds_adapter_close(a) == DS_OK, "close: %s", ds_last_error());
    }
    ds_model_close(base);
    ref_close(&rf);
}

/* ==== Broken adapters ===================================================== */
static void check_bad(const char *id, const char *name, const char *base_path, ds_status want, const char *msg1,
                      const char *msg2) {
    char dir[700], out[700];
    snprintf(dir, sizeof dir, "%s/peft/%s", testdata, name);
    snprintf(out, sizeof out, "%s/%s.dsa", tmpdir, name);
    ds_model *base = open_model(base_path, key, 0);
    ds_convert_lora_params p = lora_params(DS_LORA_F32);
    ds_status s = base ? ds_convert_lora(dir, base, out, &p) : DS_ERR_IO;
    const char *m = ds_last_error();
    T_STATUS(id, s, want, m);
    T_CHECK(id, m && strstr(m, msg1) && (!msg2 || strstr(m, msg2)), "message '%s' lacks '%s'%s%s", m ? m : "", msg1,
            msg2 ? " / " : "", msg2 ? msg2 : "");
    char pre[128];
    snprintf(pre, sizeof pre, "%s.dsa", name);
    T_CHECK(id, leftovers(tmpdir, pre) == 0, "something was written for %s", name);
    ds_model_close(base);
}

int main(void) {
    testdata = getenv("DS_TESTDATA");
    if (!testdata || access(path_in(testdata, "v2lite/config.json"), R_OK) != 0) {
        T_SKIP("lora-conv", "no generated checkpoints ($DS_TESTDATA)");
        return t_finish("test_lora_convert");
    }
    dsi_err e0 = {0};
    if (dsi_alloc_init(&al_default, NULL, &e0)) return 1;
    AL = &al_default;
    if (access(path_in(testdata, "peft/good/expected.json"), R_OK) != 0) {
        /* make test makes them; by hand: python3 tests/gen/make_peft.py DIR DIR/peft */
        T_SKIP("lora-conv", "no PEFT fixtures ($DS_TESTDATA/peft: tests/gen/make_peft.py)");
        return t_finish("test_lora_convert");
    }
    if (!mkdtemp(tmpdir)) return 1;
    for (int i = 0; i < 32; i++) {
        key[i] = (unsigned char)(i * 7 + 1);
        key2[i] = (unsigned char)(i * 5 + 3);
    }
    char v2[700], v2b[700], v2q[700], v3[700], mha[700];
    snprintf(v2, sizeof v2, "%s/v2.dsm", tmpdir);
    snprintf(v2b, sizeof v2b, "%s/v2b.dsm", tmpdir);
    snprintf(v2q, sizeof v2q, "%s/v2q8.dsm", tmpdir);
    snprintf(v3, sizeof v3, "%s/v3.dsm", tmpdir);
    snprintf(mha, sizeof mha, "%s/mha.dsm", tmpdir);
    ds_status s = convert_base("v2lite", v2, DS_QUANT_F32);
    if (!s) s = convert_base("v2lite", v2b, DS_QUANT_F32);
    if (!s) s = convert_base("v2lite", v2q, DS_QUANT_Q8_0);
    if (!s) s = convert_base("v3", v3, DS_QUANT_F32);
    if (!s) s = convert_base("moe16b", mha, DS_QUANT_F32);
    T_STATUS("lora-conv-0.1", s, DS_OK, ds_last_error());
    if (s) return t_finish("test_lora_convert");

    /* 1. good adapters: round trip, layout, info, merge */
    check_good("lora-conv-1.1", "good", v2, DS_LORA_F32, 0.5f);
    check_good("lora-conv-1.2", "good", v2, DS_LORA_F16, 0);
    check_good("lora-conv-1.3", "mixed", v2, DS_LORA_F32, 1.0f);
    check_good("lora-conv-1.4", "fifo", v2, DS_LORA_F32, 2.0f);
    check_good("lora-conv-1.5", "mha", mha, DS_LORA_F32, 1.0f);
    check_good("lora-conv-1.6", "v3", v3, DS_LORA_F32, -1.0f);

    /* 2. broken adapters: a named error, the place named, nothing written */
    check_bad("lora-conv-2.1", "bad_vproj", v2, DS_ERR_ADAPTER, "'v_proj' does not exist", "kv_b_proj");
    check_bad("lora-conv-2.2", "bad_v3_qproj", v3, DS_ERR_ADAPTER, "'q_proj' does not exist", "q_b_proj");
    check_bad("lora-conv-2.3", "bad_stray", v2, DS_ERR_ADAPTER, "model.layers.1.mlp.gate.lora_A", "not a matrix");
    check_bad("lora-conv-2.4", "bad_unlisted", v2, DS_ERR_ADAPTER, "model.layers.0.self_attn.o_proj",
              "target_modules");
    check_bad("lora-conv-2.5", "bad_noB", v2, DS_ERR_MISSING_TENSOR, "model.layers.1.self_attn.q_proj", "no lora_B");
    check_bad("lora-conv-2.6", "bad_shape", v2, DS_ERR_SHAPE, "model.layers.2.self_attn.q_proj.lora_A", "4x63");
    check_bad("lora-conv-2.7", "bad_rank", v2, DS_ERR_ADAPTER, "rank 8", "r = 4");
    check_bad("lora-conv-2.8", "bad_empty", v2, DS_ERR_MISSING_TENSOR, "no LoRA tensors", NULL);
    check_bad("lora-conv-2.9", "bad_pattern", v2, DS_ERR_ADAPTER, "rank_pattern", NULL);
    check_bad("lora-conv-2.10", "bad_bias", v2, DS_ERR_ADAPTER, "bias", "lora_only");
    check_bad("lora-conv-2.11", "bad_type", v2, DS_ERR_ADAPTER, "peft_type", "IA3");
    check_bad("lora-conv-2.12", "no_such_dir", v2, DS_ERR_IO, "adapter_config.json", NULL);
    check_bad("lora-conv-2.13", "bad_fused", v2, DS_ERR_ADAPTER, "model.layers.1.mlp.experts.lora_A", "fused");
    check_bad("lora-conv-2.14", "bad_alpha", v2, DS_ERR_ADAPTER, "lora_alpha", "positive");

    /* 3. bound to the base's identity: another conversion of the same
     * checkpoint is another base */
    {
        char out[700];
        snprintf(out, sizeof out, "%s/good-b.dsa", tmpdir);
        ds_model *b1 = open_model(v2, key, 1), *b2 = open_model(v2b, key, 0);
        ds_convert_lora_params p = lora_params(DS_LORA_F32);
        s = b2 ? ds_convert_lora(path_in(testdata, "peft/good"), b2, out, &p) : DS_ERR_IO;
        T_STATUS("lora-conv-3.1", s, DS_OK, ds_last_error());
        ds_adapter *a = NULL;
        ds_adapter_params ap = ds_adapter_default_params();
        ap.key = key;
        ap.key_len = 32;
        s = b1 ? ds_adapter_open(&a, b1, out, &ap) : DS_ERR_IO;
        T_STATUS("lora-conv-3.2", s, DS_ERR_ADAPTER_BASE, ds_last_error());
        if (!s) (void)ds_adapter_close(a);
        ds_model_close(b2);
        /* its record names the other base */
        b2 = open_model(v2b, key, 1);
        s = b2 ? ds_adapter_open(&a, b2, out, &ap) : DS_ERR_IO;
        T_STATUS("lora-conv-3.3", s, DS_OK, ds_last_error());
        if (!s) {
            ds_adapter_info info;
            unsigned char i1[32], i2[32];
            T_CHECK("lora-conv-3.4",
                    !ds_adapter_get_info(a, &info) && !ds_model_id(b1, i1) && !ds_model_id(b2, i2) &&
                        !memcmp(info.base_id, i2, 32) && memcmp(info.base_id, i1, 32) != 0,
                    "the adapter's base_id is not the second conversion's identity");
            (void)ds_adapter_close(a);
        }
        /* a wrong adapter key */
        ap.key = key2;
        s = b2 ? ds_adapter_open(&a, b2, out, &ap) : DS_ERR_IO;
        T_STATUS("lora-conv-3.5", s, DS_ERR_WRONG_KEY, ds_last_error());
        if (!s) (void)ds_adapter_close(a);
        ds_model_close(b1);
        ds_model_close(b2);
    }

    /* 4. merge into a Q8_0 base: re-quantized, within a block's step */
    {
        char out[700], dir[700];
        snprintf(out, sizeof out, "%s/goodq.dsa", tmpdir);
        snprintf(dir, sizeof dir, "%s/peft/good", testdata);
        ds_model *b = open_model(v2q, key, 1);
        ds_convert_lora_params p = lora_params(DS_LORA_F32);
        s = b ? ds_convert_lora(dir, b, out, &p) : DS_ERR_IO;
        T_STATUS("lora-conv-4.1", s, DS_OK, ds_last_error());
        ds_adapter *a = NULL;
        ds_adapter_params ap = ds_adapter_default_params();
        ap.key = key;
        ap.key_len = 32;
        if (!s) s = ds_adapter_open(&a, b, out, &ap);
        T_STATUS("lora-conv-4.2", s, DS_OK, ds_last_error());
        expect x;
        ref rf;
        if (!s && !read_expect(dir, &x) && !ref_open(&rf, path_in(dir, "expected.safetensors"))) {
            check_merge("lora-conv-4.3", a, b, &x, &rf, 1.0f, true);
            ref_close(&rf);
        }
        /* an existing output is refused without overwrite, replaced with it */
        char merged[700];
        snprintf(merged, sizeof merged, "%s/lora-conv-4.3.merged.dsm", tmpdir);
        if (!s) {
            ds_convert_lora_params mp = lora_params(DS_LORA_F32);
            T_STATUS("lora-conv-4.4", ds_lora_merge(a, 1.0f, merged, &mp), DS_ERR_EXISTS, ds_last_error());
            mp.overwrite = 1;
            T_STATUS("lora-conv-4.5", ds_lora_merge(a, 1.0f, merged, &mp), DS_OK, ds_last_error());
            /* the output may not be the base itself, even with overwrite */
            T_STATUS("lora-conv-4.6", ds_lora_merge(a, 1.0f, v2q, &mp), DS_ERR_INVALID_ARG, ds_last_error());
            ds_convert_lora_params zero;
            memset(&zero, 0, sizeof zero);
            T_STATUS("lora-conv-4.7", ds_lora_merge(a, 1.0f, merged, &zero), DS_ERR_INVALID_ARG, ds_last_error());
            T_STATUS("lora-conv-4.8", ds_lora_merge(a, NAN, merged, &mp), DS_ERR_INVALID_ARG, ds_last_error());
            (void)ds_adapter_close(a);
        }
        ds_model_close(b);
    }

    /* 5. arguments */
    {
        ds_model *b = open_model(v2, key, 0);
        char out[700];
        snprintf(out, sizeof out, "%s/args.dsa", tmpdir);
        ds_convert_lora_params p = lora_params(DS_LORA_F32);
        T_STATUS("lora-conv-5.1", ds_convert_lora(NULL, b, out, &p), DS_ERR_INVALID_ARG, ds_last_error());
        p.key = NULL;
        T_STATUS("lora-conv-5.2", ds_convert_lora(path_in(testdata, "peft/good"), b, out, &p), DS_ERR_INVALID_ARG,
                 ds_last_error());
        p = lora_params((ds_lora_dtype)7);
        T_STATUS("lora-conv-5.3", ds_convert_lora(path_in(testdata, "peft/good"), b, out, &p), DS_ERR_INVALID_ARG,
                 ds_last_error());
        /* plaintext: opens without a key when allowed */
        p = ds_convert_lora_default_params();
        p.encrypt = 0;
        T_STATUS("lora-conv-5.4", ds_convert_lora(path_in(testdata, "peft/good"), b, out, &p), DS_OK, ds_last_error());
        T_CHECK("lora-conv-5.5", leftovers(tmpdir, "args.dsa.tmp") == 0, "temporary file left behind");
        ds_model_close(b);
    }

    /* clean up */
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.') unlink(path_in(tmpdir, de->d_name));
    if (d) closedir(d);
    rmdir(tmpdir);
    return t_finish("test_lora_convert");
}
