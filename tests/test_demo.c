/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_demo.c — the trained demo model (models/) against PyTorch.
 *
 * models/demo_goldens.json (tools/train/make_demo_goldens.py) holds, for three
 * prompts, transformers' greedy continuation of 64 tokens in float32 from the
 * committed F16 checkpoint models/demo-hf, with the top-1/top-2 logit margin
 * of every step.
 *
 *  demo-1: our tokenizer gives the reference's prompt ids (BOS + text).
 *  demo-2: the checkpoint converted to an F32 container (lossless from F16)
 *          continues every prompt with exactly the reference's 64 ids.
 *  demo-3: the committed Q8_0 container models/demo.dsm (sealed with the
 *          published demo key), greedy, with int8 activations (the default,
 *          what `ds run` does) and with exact F32 activations: identical, or
 *          the first divergence falls on a step where the reference's own
 *          margin is below the goldens' q8_margin_threshold (a near-tie that
 *          int8 rounding may legitimately break the other way).
 *  demo-4: Q8_0 teacher-forced on the reference's sequence: at each of the
 *          192 steps, the reference's top-1, or a margin below the threshold.
 *  demo-5: ds_generate with a greedy sampler (the path of `ds run`) on the
 *          F32 container gives the reference's ids (up to an EOS).
 *
 * Finds models/ in the current directory (the repository root, as `make
 * test` runs) or $DS_MODELS; skips when the goldens are absent.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <math.h>
#include <unistd.h>

#define MAX_PROMPTS 8
#define MAX_IDS 512

typedef struct golden {
    char text[256];
    int32_t prompt[MAX_IDS];
    int n_prompt;
    int32_t ids[MAX_IDS];
    double margin[MAX_IDS];
    int n;
} golden;

static golden gold[MAX_PROMPTS];
static int n_gold;
static double threshold;
static const char *models;
static char tmpdir[] = "/tmp/ds-test-demo-XXXXXX";

static void *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    *len = b ? (size_t)n : 0;
    return b;
}

static int json_ints(const dsi_json *a, int32_t *out, int cap) {
    if (!a || a->type != DSI_JSON_ARRAY || a->n > (uint32_t)cap) return -1;
    for (uint32_t i = 0; i < a->n; i++) out[i] = (int32_t)a->kids[i].i;
    return (int)a->n;
}

/* Reads models/demo_goldens.json; 0 on success. */
static int load_goldens(const char *path) {
    size_t len = 0;
    char *text = read_all(path, &len);
    if (!text) return -1;
    dsi_alloc al;
    dsi_err e = {0};
    dsi_alloc_init(&al, NULL, &e);
    dsi_json_doc *doc = NULL;
    int rc = -1;
    if (dsi_json_parse(text, len, &al, &doc, &e) == DS_OK) {
        const dsi_json *root = dsi_json_root(doc);
        const dsi_json *ps = dsi_json_get(root, "prompts");
        if (dsi_json_get_num(root, "q8_margin_threshold", &threshold) == 1 && ps && ps->type == DSI_JSON_ARRAY &&
            ps->n >= 1 && ps->n <= MAX_PROMPTS) {
            rc = 0;
            for (uint32_t i = 0; i < ps->n && !rc; i++) {
                golden *g = &gold[i];
                const dsi_json *p = &ps->kids[i];
                const char *s = NULL;
                size_t sl = 0;
                const dsi_json *mg = dsi_json_get(p, "margins");
                if (dsi_json_get_str(p, "prompt", &s, &sl) != 1 || sl >= sizeof g->text) rc = -1;
                else memcpy(g->text, s, sl), g->text[sl] = 0;
                if (!rc) g->n_prompt = json_ints(dsi_json_get(p, "prompt_ids"), g->prompt, MAX_IDS);
                if (!rc) g->n = json_ints(dsi_json_get(p, "ids"), g->ids, MAX_IDS);
                if (!rc && (g->n_prompt < 1 || g->n < 1 || !mg || mg->type != DSI_JSON_ARRAY ||
                            mg->n != (uint32_t)g->n))
                    rc = -1;
                for (int k = 0; !rc && k < g->n; k++) g->margin[k] = mg->kids[k].num;
            }
            n_gold = rc ? 0 : (int)ps->n;
        }
        dsi_json_free(doc);
    }
    free(text);
    return rc;
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static ds_model *open_model(const char *path, const unsigned char *key, int exact) {
    ds_model *m = NULL;
    ds_model_params mp = ds_model_default_params();
    mp.n_threads = 2;
    if (key) {
        mp.key = key;
        mp.key_len = DS_KEY_BYTES;
    }
    mp.exact_activations = exact;
    if (ds_model_open(&m, path, &mp) != DS_OK) {
        printf("open %s: %s\n", path, ds_last_error());
        return NULL;
    }
    return m;
}

/* Greedy continuation of g's prompt: n ids into out. */
static ds_status greedy(ds_model *m, const golden *g, int32_t *out) {
    ds_model_config cf;
    ds_status s = ds_model_get_config(m, &cf);
    if (s) return s;
    ds_context *c = NULL;
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = g->n_prompt + g->n + 1;
    float *lg = malloc((size_t)cf.vocab_size * sizeof *lg);
    if (!lg) return DS_ERR_NOMEM;
    s = ds_context_new(&c, m, &cp);
    if (!s) s = ds_context_eval(c, g->prompt, (size_t)g->n_prompt, lg, 0);
    for (int k = 0; k < g->n && !s; k++) {
        out[k] = argmax(lg, cf.vocab_size);
        if (k + 1 < g->n) s = ds_context_eval(c, &out[k], 1, lg, 0);
    }
    ds_context_free(c);
    free(lg);
    return s;
}

/* ==== 1: prompt ids ====================================================== */
static void test_prompt_ids(ds_model *m) {
    const ds_tokenizer *tok = ds_model_tokenizer(m);
    for (int i = 0; i < n_gold; i++) {
        char id[32];
        snprintf(id, sizeof id, "demo-1.%d", i + 1);
        int32_t ids[MAX_IDS];
        size_t n = 0;
        ds_status s = ds_tokenizer_encode(tok, gold[i].text, strlen(gold[i].text), DS_TOKENIZE_BOS, ids, MAX_IDS, &n);
        T_STATUS(id, s, DS_OK, ds_last_error());
        T_CHECK(id, !s && (int)n == gold[i].n_prompt && !memcmp(ids, gold[i].prompt, n * sizeof *ids),
                "'%s': %zu ids, the reference has %d (or they differ)", gold[i].text, n, gold[i].n_prompt);
    }
}

/* ==== 2: F32 exact ======================================================= */
static void test_f32(ds_model *m) {
    char line[256] = "";
    for (int i = 0; i < n_gold; i++) {
        char id[32];
        snprintf(id, sizeof id, "demo-2.%d", i + 1);
        int32_t out[MAX_IDS];
        ds_status s = greedy(m, &gold[i], out);
        T_STATUS(id, s, DS_OK, ds_last_error());
        int same = 0;
        while (!s && same < gold[i].n && out[same] == gold[i].ids[same]) same++;
        T_CHECK(id, same == gold[i].n, "'%s': differs at step %d of %d (ours %d, reference %d, reference margin %.3g)",
                gold[i].text, same, gold[i].n, same < gold[i].n ? out[same] : -1,
                same < gold[i].n ? gold[i].ids[same] : -1, same < gold[i].n ? gold[i].margin[same] : 0.0);
        snprintf(line + strlen(line), sizeof line - strlen(line), "%s%d/%d", i ? ", " : "", same, gold[i].n);
    }
    printf("INFO demo-2 f32: %s identical\n", line);
}

/* ==== 3: Q8_0 free-running =============================================== */
static void test_q8_greedy(ds_model *m, const char *what, const char *idp) {
    char line[256] = "";
    for (int i = 0; i < n_gold; i++) {
        char id[48];
        snprintf(id, sizeof id, "%s.%d", idp, i + 1);
        int32_t out[MAX_IDS];
        ds_status s = greedy(m, &gold[i], out);
        T_STATUS(id, s, DS_OK, ds_last_error());
        int same = 0;
        while (!s && same < gold[i].n && out[same] == gold[i].ids[same]) same++;
        if (!s && same < gold[i].n) {
            T_CHECK(id, gold[i].margin[same] < threshold,
                    "'%s': first divergence at step %d where the reference margin is %.3g >= %.3g", gold[i].text,
                    same, gold[i].margin[same], threshold);
            snprintf(line + strlen(line), sizeof line - strlen(line), "%s%d/%d (then margin %.3g)", i ? ", " : "",
                     same, gold[i].n, gold[i].margin[same]);
        } else {
            T_CHECK(id, !s, "failed");
            snprintf(line + strlen(line), sizeof line - strlen(line), "%s%d/%d", i ? ", " : "", same, gold[i].n);
        }
    }
    printf("INFO %s q8 (%s): %s before the first divergence\n", idp, what, line);
}

/* ==== 4: Q8_0 teacher-forced ============================================= */
static void test_q8_forced(ds_model *m) {
    ds_model_config cf;
    (void)!ds_model_get_config(m, &cf);
    int V = cf.vocab_size, agree = 0, total = 0, bad = 0;
    double worst = 0;
    for (int i = 0; i < n_gold; i++) {
        const golden *g = &gold[i];
        int n = g->n_prompt + g->n - 1;   /* the prompt and all but the last id */
        int32_t seq[2 * MAX_IDS];
        memcpy(seq, g->prompt, (size_t)g->n_prompt * sizeof *seq);
        memcpy(seq + g->n_prompt, g->ids, (size_t)(g->n - 1) * sizeof *seq);
        float *lg = malloc((size_t)n * V * sizeof *lg);
        ds_context *c = NULL;
        ds_context_params cp = ds_context_default_params();
        cp.n_ctx = n + 1;
        ds_status s = lg ? ds_context_new(&c, m, &cp) : DS_ERR_NOMEM;
        if (!s) s = ds_context_eval(c, seq, (size_t)n, lg, 1);
        T_STATUS("demo-4", s, DS_OK, ds_last_error());
        for (int k = 0; !s && k < g->n; k++) {
            int t = argmax(lg + (size_t)(g->n_prompt - 1 + k) * V, V);
            total++;
            if (t == g->ids[k]) {
                agree++;
            } else {
                worst = fmax(worst, g->margin[k]);
                if (g->margin[k] >= threshold) {
                    bad++;
                    printf("FAIL demo-4: '%s' step %d: ours %d, reference %d with margin %.3g\n", g->text, k, t,
                           g->ids[k], g->margin[k]);
                }
            }
        }
        ds_context_free(c);
        free(lg);
    }
    T_CHECK("demo-4", bad == 0 && total > 0, "%d steps differ where the reference margin is >= %.3g", bad, threshold);
    printf("INFO demo-4 q8 teacher-forced: top-1 agreement %d/%d steps (largest reference margin at a "
           "difference: %.3g; threshold %.3g)\n", agree, total, worst, threshold);
}

/* ==== 5: ds_generate ===================================================== */
typedef struct collect {
    int32_t ids[MAX_IDS];
    int n;
} collect;

static int on_token(void *user, int32_t token, const char *piece, size_t len) {
    (void)piece;
    (void)len;
    collect *c = user;
    if (c->n < MAX_IDS) c->ids[c->n++] = token;
    return 0;
}

static void test_generate(ds_model *m) {
    ds_sampler_params sp = ds_sampler_default_params();
    sp.temperature = 0;
    ds_sampler *smp = NULL;
    ds_context *c = NULL;
    ds_status s = ds_sampler_new(&smp, &sp);
    if (!s) s = ds_context_new(&c, m, NULL);
    int32_t eos = ds_tokenizer_eos(ds_model_tokenizer(m));
    for (int i = 0; i < n_gold && !s; i++) {
        char id[32];
        snprintf(id, sizeof id, "demo-5.%d", i + 1);
        collect col = {{0}, 0};
        ds_generate_stats gs;
        s = ds_generate(c, smp, gold[i].text, gold[i].n, on_token, &col, &gs);
        T_STATUS(id, s, DS_OK, ds_last_error());
        int want = 0;   /* the reference's ids up to its first EOS */
        while (want < gold[i].n && gold[i].ids[want] != eos) want++;
        T_CHECK(id, gs.n_prompt == gold[i].n_prompt, "prompt of %d ids, the reference's has %d", gs.n_prompt,
                gold[i].n_prompt);
        T_CHECK(id, col.n == want && !memcmp(col.ids, gold[i].ids, (size_t)want * sizeof *col.ids),
                "ds_generate gave %d ids, want the reference's %d", col.n, want);
    }
    if (s) T_STATUS("demo-5", s, DS_OK, ds_last_error());
    ds_context_free(c);
    ds_sampler_free(smp);
}

int main(void) {
    models = getenv("DS_MODELS") ? getenv("DS_MODELS") : "models";
    char path[1024], key_path[1024], hf[1024];
    snprintf(path, sizeof path, "%s/demo_goldens.json", models);
    if (access(path, R_OK) != 0) {
        T_SKIP("demo", "no models/demo_goldens.json (run from the repository root, or set DS_MODELS)");
        return t_finish("test_demo");
    }
    T_CHECK("demo-0", load_goldens(path) == 0, "cannot read %s", path);
    if (!n_gold || !mkdtemp(tmpdir)) return t_finish("test_demo");

    /* ---- F32 container from the committed F16 checkpoint ---- */
    snprintf(hf, sizeof hf, "%s/demo-hf", models);
    snprintf(path, sizeof path, "%s/demo-f32.dsm", tmpdir);
    ds_convert_params cvp = ds_convert_default_params();
    cvp.quant = DS_QUANT_F32;
    cvp.encrypt = 0;
    ds_status s = ds_convert(hf, path, &cvp);
    T_STATUS("demo-0.convert", s, DS_OK, ds_last_error());
    ds_model *m = s ? NULL : open_model(path, NULL, 0);
    if (m) {
        test_prompt_ids(m);
        test_f32(m);
        test_generate(m);
        ds_model_close(m);
    }

    /* ---- the committed Q8_0 container ---- */
    unsigned char key[DS_KEY_BYTES];
    snprintf(key_path, sizeof key_path, "%s/demo.key", models);
    snprintf(path, sizeof path, "%s/demo.dsm", models);
    s = ds_key_file_read(key_path, key);
    T_STATUS("demo-0.key", s, DS_OK, ds_last_error());
    for (int exact = 0; exact <= 1 && !s; exact++) {
        m = open_model(path, key, exact);
        T_CHECK("demo-0.q8", m != NULL, "cannot open %s", path);
        if (!m) break;
        test_q8_greedy(m, exact ? "exact F32 activations" : "int8 activations, as ds run", exact ? "demo-3x" : "demo-3");
        if (!exact) test_q8_forced(m);
        ds_model_close(m);
    }
    ds_memzero(key, sizeof key);

    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    return t_finish("test_demo");
}
