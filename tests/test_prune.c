/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_prune.c — pruning at conversion (ds_convert_params.prune, prune_n :
 * prune_m, prune_classes, prune_storage) against the independent numpy
 * reference tests/gen/prune_ref.py.
 *
 * For each case the Makefile's test data holds $DS_TESTDATA/prune/<case>: the
 * family's true F32 values pruned by numpy. prune-1: converting the family
 * WITH pruning and the reference WITHOUT (both F32) gives every tensor bit for
 * bit the same, so the zeros are the same entries; the record
 * (ds_model_get_pruning) counts what numpy counts. prune-2: the logits of
 * both over the same tokens agree (within 1e-6; they are the same weights).
 * prune-3: Q8_0 with sparse storage: each tensor decodes to what Q8_0 of
 * the reference's values decodes to, and the logits agree within 1e-4.
 * prune-4: bad options are named errors with nothing written.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-prune-XXXXXX";

typedef struct prune_case {
    const char *name;      /* $DS_TESTDATA/prune/<name> */
    const char *family;    /* $DS_TESTDATA/<family> */
    double ratio;
    int n, m;
    unsigned classes;
} prune_case;

static const prune_case cases[] = {
    {"v2lite_r30", "v2lite", 0.3, 0, 0, 0},
    {"v2lite_24", "v2lite", 0, 2, 4, 0},
    {"v3_r50_experts", "v3", 0.5, 0, 0, DS_PRUNE_EXPERTS},
    {"moe16b_48_core", "moe16b", 0, 4, 8, DS_PRUNE_CORE},
    {"v2_r10", "v2", 0.1, 0, 0, 0},
};

static ds_status convert(const char *src, const char *out, const prune_case *pc, ds_quant q, int storage) {
    ds_convert_params cp = ds_convert_default_params();
    cp.encrypt = 0;
    cp.quant = q;
    cp.overwrite = 1;
    if (pc) {
        cp.prune = pc->ratio;
        cp.prune_n = pc->n;
        cp.prune_m = pc->m;
        cp.prune_classes = pc->classes;
        cp.prune_storage = storage;
    }
    return ds_convert(src, out, &cp);
}

static ds_model *open_model(const char *path) {
    ds_model_params mp = ds_model_default_params();
    mp.allow_plaintext = 1;
    ds_model *m = NULL;
    if (ds_model_open(&m, path, &mp) != DS_OK) return NULL;
    return m;
}

static size_t elems(const ds_tensor_info *ti) {
    size_t n = 1;
    for (int d = 0; d < ti->n_dims; d++) n *= (size_t)ti->dims[d];
    return n;
}

/* Every tensor of a and b: same names, and decoded values equal bit for
 * bit. Returns the number of tensors that differ (-1 when unreadable). */
static int tensors_differ(ds_model *a, ds_model *b, const char *id, char *first, size_t first_len) {
    size_t n = ds_model_tensor_count(a);
    if (n != ds_model_tensor_count(b)) return -1;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        ds_tensor_info ta, tb;
        if (ds_model_tensor_info(a, i, &ta) || ds_model_tensor_info(b, i, &tb) || strcmp(ta.name, tb.name))
            return -1;
        size_t k = elems(&ta);
        float *x = malloc(k * sizeof *x), *y = malloc(k * sizeof *y);
        if (!x || !y || ds_model_tensor_read_f32(a, i, x, k) || ds_model_tensor_read_f32(b, i, y, k)) {
            printf("  %s: %s unreadable: %s\n", id, ta.name, ds_last_error());
            bad++;
        } else if (memcmp(x, y, k * sizeof *x)) {
            if (!bad) snprintf(first, first_len, "%s", ta.name);
            bad++;
        }
        free(x);
        free(y);
    }
    return bad;
}

/* Max |diff| of the logits of a and b over the same tokens. */
static double logits_diff(ds_model *a, ds_model *b) {
    ds_model_config cfg;
    if (ds_model_get_config(a, &cfg)) return INFINITY;
    int32_t toks[] = {1, 17, 300, 42, 7, 99, 1000, 5, 64, 3};
    const size_t T = sizeof toks / sizeof toks[0];
    for (size_t t = 0; t < T; t++) toks[t] %= cfg.vocab_size;
    size_t V = (size_t)cfg.vocab_size;
    float *la = malloc(T * V * sizeof *la), *lb = malloc(T * V * sizeof *lb);
    ds_context_params cpar = ds_context_default_params();
    cpar.n_ctx = 64;
    cpar.n_threads = 1;
    ds_context *ca = NULL, *cb = NULL;
    double d = INFINITY;
    if (la && lb && !ds_context_new(&ca, a, &cpar) && !ds_context_new(&cb, b, &cpar)) {
        /* a prefill (the batch kernels) and then decode steps (one token) */
        bool ok = !ds_context_eval(ca, toks, 8, la, 1) && !ds_context_eval(cb, toks, 8, lb, 1);
        for (size_t t = 8; t < T && ok; t++)
            ok = !ds_context_eval(ca, &toks[t], 1, la + t * V, 0) && !ds_context_eval(cb, &toks[t], 1, lb + t * V, 0);
        if (ok) {
            d = 0;
            for (size_t i = 0; i < T * V; i++) {
                double e = fabs((double)la[i] - (double)lb[i]);
                if (!(e <= d)) d = e;
            }
        }
    }
    ds_context_free(ca);
    ds_context_free(cb);
    free(la);
    free(lb);
    return d;
}

/* A number after "key": in a JSON text of len bytes (ours, not hostile). */
static double json_num(const char *js, size_t len, const char *key) {
    char buf[4096], pat[64];
    if (!js || len >= sizeof buf) return NAN;
    memcpy(buf, js, len);
    buf[len] = 0;
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(buf, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

static void test_case(const prune_case *pc, int ci) {
    char id[64], src[600], ref[600], pa[700], pb[700], stats[700];
    snprintf(src, sizeof src, "%s/%s", testdata, pc->family);
    snprintf(ref, sizeof ref, "%s/prune/%s", testdata, pc->name);
    snprintf(pa, sizeof pa, "%s/%s-pruned.dsm", tmpdir, pc->name);
    snprintf(pb, sizeof pb, "%s/%s-ref.dsm", tmpdir, pc->name);
    snprintf(stats, sizeof stats, "%s/prune_stats.json", ref);

    /* prune-1: the zeros and every other value, bit for bit (F32) */
    snprintf(id, sizeof id, "prune-1.%d", ci);
    ds_status s = convert(src, pa, pc, DS_QUANT_F32, DS_PRUNE_STORAGE_AUTO);
    T_STATUS(id, s, DS_OK, ds_last_error());
    s = convert(ref, pb, NULL, DS_QUANT_F32, 0);
    T_STATUS(id, s, DS_OK, ds_last_error());
    ds_model *a = open_model(pa), *b = open_model(pb);
    T_CHECK(id, a && b, "%s: cannot open the conversions: %s", pc->name, ds_last_error());
    if (a && b) {
        char first[256] = "";
        int bad = tensors_differ(a, b, id, first, sizeof first);
        T_CHECK(id, bad == 0, "%s: %d tensor(s) differ from numpy's pruning (first %s)", pc->name, bad, first);
        const char *js = NULL, *rj = NULL;
        size_t jl = 0, rl = 0;
        T_CHECK(id, ds_model_get_pruning(a, &js, &jl) == DS_OK && js, "%s: no pruning record", pc->name);
        T_CHECK(id, ds_model_get_pruning(b, &rj, &rl) == DS_OK && !rj && rl == 0,
                "%s: the unpruned conversion has a pruning record", pc->name);
        FILE *f = fopen(stats, "rb");
        char sj[512] = "";
        size_t sl = f ? fread(sj, 1, sizeof sj - 1, f) : 0;
        if (f) fclose(f);
        sj[sl] = 0;
        /* numpy writes "key": value too (json.dump's default separators) */
        double want_z = json_num(sj, sl, "zeroed"), want_n = json_num(sj, sl, "entries");
        double want_m = json_num(sj, sl, "matrices");
        T_CHECK(id, json_num(js, jl, "zeroed") == want_z && json_num(js, jl, "entries") == want_n &&
                        json_num(js, jl, "matrices") == want_m && want_z > 0,
                "%s: record %.*s; numpy %s", pc->name, (int)jl, js ? js : "", sj);
        /* prune-2: the same weights give the same logits */
        snprintf(id, sizeof id, "prune-2.%d", ci);
        double d = logits_diff(a, b);
        T_CHECK(id, d <= 1e-6, "%s: logits differ by %g", pc->name, d);
    }
    ds_model_close(a);
    ds_model_close(b);

    /* prune-3: Q8_0, sparse storage where it is smaller, against Q8_0 of
     * numpy's pruned values */
    snprintf(id, sizeof id, "prune-3.%d", ci);
    s = convert(src, pa, pc, DS_QUANT_Q8_0, DS_PRUNE_STORAGE_AUTO);
    T_STATUS(id, s, DS_OK, ds_last_error());
    s = convert(ref, pb, NULL, DS_QUANT_Q8_0, 0);
    T_STATUS(id, s, DS_OK, ds_last_error());
    a = open_model(pa);
    b = open_model(pb);
    T_CHECK(id, a && b, "%s: cannot open the Q8_0 conversions: %s", pc->name, ds_last_error());
    if (a && b) {
        char first[256] = "";
        int bad = tensors_differ(a, b, id, first, sizeof first);
        T_CHECK(id, bad == 0, "%s: %d Q8_0 tensor(s) decode differently (first %s)", pc->name, bad, first);
        double d = logits_diff(a, b);
        T_CHECK(id, d <= 1e-4, "%s: Q8_0 logits differ by %g", pc->name, d);
    }
    ds_model_close(a);
    ds_model_close(b);
    unlink(pa);
    unlink(pb);
}

static void expect_refused(const char *id, const char *src, double ratio, int n, int m, unsigned cls, int storage,
                           const char *needle) {
    char out[700];
    snprintf(out, sizeof out, "%s/refused.dsm", tmpdir);
    ds_convert_params cp = ds_convert_default_params();
    cp.encrypt = 0;
    cp.prune = ratio;
    cp.prune_n = n;
    cp.prune_m = m;
    cp.prune_classes = cls;
    cp.prune_storage = storage;
    ds_status s = ds_convert(src, out, &cp);
    T_STATUS(id, s, DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK(id, strstr(ds_last_error(), needle) != NULL, "message '%s' lacks '%s'", ds_last_error(), needle);
    T_CHECK(id, access(out, F_OK) != 0, "%s was written", out);
}

int main(void) {
    testdata = getenv("DS_TESTDATA");
    char probe[600];
    snprintf(probe, sizeof probe, "%s/prune/v2lite_r30/model.safetensors", testdata ? testdata : "");
    if (!testdata || access(probe, R_OK) != 0 || !mkdtemp(tmpdir)) {
        T_SKIP("prune", "no test data (make testdata; needs numpy)");
        return t_finish("test_prune");
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_case(&cases[i], (int)i + 1);

    /* prune-4: options out of range */
    char src[600];
    snprintf(src, sizeof src, "%s/v2lite", testdata);
    expect_refused("prune-4.1", src, 1.0, 0, 0, 0, 0, "want a fraction in [0, 1)");
    expect_refused("prune-4.2", src, -0.1, 0, 0, 0, 0, "want a fraction in [0, 1)");
    expect_refused("prune-4.3", src, NAN, 0, 0, 0, 0, "want a fraction in [0, 1)");
    expect_refused("prune-4.4", src, 0, 4, 4, 0, 0, "0 < N < M");
    expect_refused("prune-4.5", src, 0, 2, 3, 0, 0, "M one of 2, 4, 8, 16, 32");
    expect_refused("prune-4.6", src, 0.2, 2, 4, 0, 0, "exclusive");
    expect_refused("prune-4.7", src, 0.2, 0, 0, 4, 0, "prune_classes");
    expect_refused("prune-4.8", src, 0.2, 0, 0, 0, 2, "prune_storage");
    {
        /* a GGUF input: refused before it is parsed */
        char gg[700];
        snprintf(gg, sizeof gg, "%s/x.gguf", tmpdir);
        FILE *f = fopen(gg, "wb");
        if (f) {
            fwrite("GGUF\3\0\0\0", 1, 8, f);
            fclose(f);
        }
        expect_refused("prune-4.9", gg, 0.2, 0, 0, 0, 0, "is a GGUF file");
        unlink(gg);
    }
    rmdir(tmpdir);
    return t_finish("test_prune");
}
