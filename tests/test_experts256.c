/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_experts256.c — DeepSeek-V3's expert count: 256 routed experts, top-8,
 * group-limited routing (n_group 8, topk_group 4, noaux_tc, sigmoid scores
 * with e_score_correction_bias, routed_scaling_factor 2.5, norm_topk_prob),
 * on the v3e256 checkpoint (tests/gen/make_checkpoint.py: one dense layer,
 * two MoE layers, hidden 64). Tables sized by the expert count (the pager's
 * slot map, its prediction and LFU tables, routing scratch, the CUDA route
 * kernel's shared memory) meet 256 here instead of 8.
 *
 *  e256-1: the config reads as V3 with 256 experts, top-8, 8 groups, 4 kept,
 *          noaux_tc, sigmoid, scaling 2.5, normalised top-k; each MoE layer
 *          has 256 expert segments
 *  e256-2: parity with transformers (tests/ref/goldens/v3e256.*, made by
 *          tests/ref/make_goldens.py): the F32 container's logits at the 32
 *          golden positions within 1e-3, as one batch and token by token
 *          (Q8_0's top-1 agreement printed)
 *  e256-3: resident, Q8_0 sealed container: 8 prompt tokens (one at a time,
 *          and as one batch), then 32 greedy decode steps
 *  e256-4: paged with an expert cache of 1/8 of the routed-expert bytes, with
 *          prefetch off, auto (LFU) and always (LRU), and with the prompt as
 *          one batch: the same 32 tokens and the same logits bit for bit as
 *          the resident run
 *  e256-5: the cache's statistics of each paged run, from a fresh open:
 *          lookups (hits + misses + prefetch hits) = 40 single-token steps x
 *          2 MoE layers x 8 experts; the cache paged (misses, evictions);
 *          bytes decrypted a whole number of experts, at least the misses;
 *          evictions = decryptions - slots (the cache starts empty; the
 *          prefetch thread may hold one expert claimed, not yet decrypted);
 *          prefetch hits and waste within what was issued, decryptions
 *          within misses + issued. Prefetch off: no prefetch at all, the
 *          decryptions exactly the misses.
 *
 * Needs $DS_TESTDATA/v3e256 (skipped when absent).
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include "../deepseek.h"
#include "test.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_PROMPT 8
#define N_GEN 32
#define N_EXP 256
#define TOP_K 8

static char tmpdir[] = "/tmp/ds-test-e256-XXXXXX";
static char src[600], sealed[700], plain[700];
static const unsigned char key[32] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

static double mb(uint64_t b) { return (double)b / 1e6; }

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static ds_model *open_with(const char *path, uint64_t budget, ds_prefetch_mode pf, ds_evict_policy pol) {
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.allow_plaintext = 1;
    mp.n_threads = 2;
    mp.expert_cache_bytes = budget;
    mp.prefetch = pf;
    mp.evict_policy = pol;
    ds_model *m = NULL;
    if (ds_model_open(&m, path, &mp) != DS_OK) {
        printf("open %s: %s\n", path, ds_last_error());
        return NULL;
    }
    return m;
}

/* A run: the prompt (one batch, or one token at a time), then N_GEN greedy
 * steps; the tokens and every step's logits (N_GEN + 1 rows: the prompt's
 * last and each step's); the cache statistics of the model's whole life. */
typedef struct run {
    int32_t tokens[N_GEN];
    float *logits;
    ds_cache_stats st;
} run;

static ds_status decode(ds_model *m, int V, run *r, bool batch) {
    static const int32_t prompt[N_PROMPT] = {0, 72, 101, 108, 111, 44, 300, 411};
    ds_context *c = NULL;
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = N_PROMPT + N_GEN + 8;
    ds_status s = ds_context_new(&c, m, &cp);
    if (batch) {
        if (!s) s = ds_context_eval(c, prompt, N_PROMPT, r->logits, 0);
    } else {
        for (int i = 0; i < N_PROMPT && !s; i++) s = ds_context_eval(c, &prompt[i], 1, r->logits, 0);
    }
    for (int i = 0; i < N_GEN && !s; i++) {
        r->tokens[i] = argmax(r->logits + (size_t)i * V, V);
        s = ds_context_eval(c, &r->tokens[i], 1, r->logits + (size_t)(i + 1) * V, 0);
    }
    if (!s) s = ds_model_cache_stats(m, &r->st);
    ds_context_free(c);
    return s;
}

static void *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = n > 0 ? malloc((size_t)n) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = b ? (size_t)n : 0;
    return b;
}

/* The golden token ids: tokens.json's "token_ids": [...]. */
static int read_tokens(const char *path, int32_t *ids, int max) {
    size_t len = 0;
    char *t = read_file(path, &len);
    if (!t) return 0;
    char *p = strstr(t, "\"token_ids\"");
    int n = 0;
    if (p && (p = strchr(p, '['))) {
        p++;
        while (n < max) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            ids[n++] = (int32_t)v;
            p = end;
            while (*p == ' ' || *p == ',' || *p == '\n') p++;
            if (*p == ']') break;
        }
    }
    free(t);
    return n;
}

static void test_config_and_parity(void) {
    ds_model *m = open_with(plain, 0, DS_PREFETCH_AUTO, DS_EVICT_LFU_DECAY);
    T_CHECK("e256-1", m != NULL, "the F32 container does not open");
    if (!m) return;
    ds_model_config c;
    ds_status gs = ds_model_get_config(m, &c);
    T_STATUS("e256-1", gs, DS_OK, ds_last_error());
    T_CHECK("e256-1",
            c.arch == DS_ARCH_DEEPSEEK_V3 && c.n_routed_experts == N_EXP && c.n_experts_per_tok == TOP_K &&
                c.n_group == 8 && c.topk_group == 4 && c.topk_method == DS_TOPK_NOAUX_TC &&
                c.scoring_func == DS_SCORING_SIGMOID && fabsf(c.routed_scaling_factor - 2.5f) < 1e-6f &&
                c.norm_topk_prob && c.n_layers == 3 && c.first_k_dense_replace == 1,
            "config: arch %d, %d experts, top %d, %d groups (%d kept), method %d, scoring %d, scale %g, norm %d, "
            "%d layers",
            (int)c.arch, c.n_routed_experts, c.n_experts_per_tok, c.n_group, c.topk_group, (int)c.topk_method,
            (int)c.scoring_func, (double)c.routed_scaling_factor, c.norm_topk_prob, c.n_layers);
    int per_layer[3] = {0};
    for (size_t i = 0; i < ds_model_segment_count(m); i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT && si.layer >= 0 &&
            si.layer < 3)
            per_layer[si.layer]++;
    }
    T_CHECK("e256-1", per_layer[0] == 0 && per_layer[1] == N_EXP && per_layer[2] == N_EXP,
            "expert segments per layer: %d, %d, %d", per_layer[0], per_layer[1], per_layer[2]);

    /* parity with the reference */
    const char *gdir = getenv("DS_GOLDENS") ? getenv("DS_GOLDENS") : "tests/ref/goldens";
    char lp[600], tp[600];
    snprintf(lp, sizeof lp, "%s/v3e256.logits.f32", gdir);
    snprintf(tp, sizeof tp, "%s/tokens.json", gdir);
    size_t ll = 0;
    float *want = read_file(lp, &ll);
    int32_t tok[64];
    int n = read_tokens(tp, tok, 64);
    int V = c.vocab_size;
    if (!want || n <= 0) {
        T_SKIP("e256-2", "no goldens (tests/ref/make_goldens.py --families v3e256)");
    } else if (ll != (size_t)n * (size_t)V * 4) {
        T_CHECK("e256-2", 0, "golden has %zu bytes, want %d x %d floats", ll, n, V);
    } else {
        for (int q = 0; q < 2; q++) {
            ds_model *mq = q ? open_with(sealed, 0, DS_PREFETCH_AUTO, DS_EVICT_LFU_DECAY) : m;
            float *got = malloc((size_t)n * V * sizeof *got);
            ds_context *ctx = NULL;
            ds_context_params cp = ds_context_default_params();
            cp.n_ctx = 64;
            ds_status s = mq && got ? ds_context_new(&ctx, mq, &cp) : DS_ERR_NOMEM;
            if (!s) s = ds_context_eval(ctx, tok, (size_t)n, got, 1);
            T_STATUS("e256-2", s, DS_OK, ds_last_error());
            if (!s) {
                double maxd = 0;
                int agree = 0;
                for (int t = 0; t < n; t++) {
                    const float *a = got + (size_t)t * V, *b = want + (size_t)t * V;
                    for (int i = 0; i < V; i++) maxd = fmax(maxd, fabs((double)a[i] - b[i]));
                    agree += argmax(a, V) == argmax(b, V);
                }
                printf("INFO e256-2 %s: max |dlogit| %.3g, top-1 agreement %d/%d\n", q ? "q8_0" : "f32", maxd, agree,
                       n);
                if (!q) T_CHECK("e256-2", maxd <= 1e-3, "F32: max |dlogit| %.3g > 1e-3", maxd);
            }
            if (!s && !q) {
                /* the same tokens one at a time: the decode path's routing */
                ds_context_reset(ctx);
                double maxd = 0;
                for (int t = 0; t < n && !s; t++) {
                    s = ds_context_eval(ctx, &tok[t], 1, got, 0);
                    for (int i = 0; !s && i < V; i++)
                        maxd = fmax(maxd, fabs((double)got[i] - want[(size_t)t * V + i]));
                }
                T_STATUS("e256-2", s, DS_OK, ds_last_error());
                printf("INFO e256-2 f32 decode: max |dlogit| %.3g over %d single-token steps\n", maxd, n);
                T_CHECK("e256-2", !s && maxd <= 1e-3, "F32 decode: max |dlogit| %.3g > 1e-3", maxd);
            }
            ds_context_free(ctx);
            free(got);
            if (q) ds_model_close(mq);
        }
    }
    free(want);
    ds_model_close(m);
}

static void test_paged(void) {
    ds_model *m = open_with(sealed, 0, DS_PREFETCH_AUTO, DS_EVICT_LFU_DECAY);
    T_CHECK("e256-3", m != NULL, "the Q8_0 container does not open");
    if (!m) return;
    ds_model_config c;
    (void)!ds_model_get_config(m, &c);
    int V = c.vocab_size;
    uint64_t expert_bytes = 0, one = 0;
    int n_experts = 0;
    for (size_t i = 0; i < ds_model_segment_count(m); i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT) {
            expert_bytes += si.plain_bytes;
            one = si.plain_bytes;
            n_experts++;
        }
    }
    /* resident: the prompt one token at a time, and as one batch */
    run res[2];
    memset(res, 0, sizeof res);
    size_t lb = (size_t)(N_GEN + 1) * V * sizeof(float);
    for (int b = 0; b < 2; b++) {
        res[b].logits = malloc(lb);
        ds_status rs = res[b].logits ? decode(m, V, &res[b], b == 1) : DS_ERR_NOMEM;
        T_STATUS("e256-3", rs, DS_OK, ds_last_error());
        T_CHECK("e256-3", res[b].st.n_slots == 0, "the resident run has %d cache slots", res[b].st.n_slots);
    }
    ds_model_close(m);
    uint64_t budget = expert_bytes / 8;
    printf("INFO e256-3: %d routed experts of %llu bytes (%.2f MB), budget %.3f MB (1/8)\n", n_experts,
           (unsigned long long)one, mb(expert_bytes), mb(budget));

    /* paged, each from a fresh open (an empty cache: the statistics are the
     * run's alone); variants 0-2 feed the prompt a token at a time, so every
     * lookup is a decode step's; variant 3 prefills it as one batch */
    static const struct {
        ds_prefetch_mode pf;
        ds_evict_policy pol;
        bool batch;
        const char *name;
    } variants[] = {{DS_PREFETCH_OFF, DS_EVICT_LFU_DECAY, false, "prefetch off, LFU"},
                    {DS_PREFETCH_AUTO, DS_EVICT_LFU_DECAY, false, "prefetch auto, LFU"},
                    {DS_PREFETCH_ALWAYS, DS_EVICT_LRU, false, "prefetch always, LRU"},
                    {DS_PREFETCH_AUTO, DS_EVICT_LFU_DECAY, true, "batch prompt, prefetch auto, LFU"}};
    for (int v = 0; v < 4; v++) {
        char id[32];
        snprintf(id, sizeof id, "e256-4.%d", v);
        const run *want = &res[variants[v].batch];
        run pg;
        memset(&pg, 0, sizeof pg);
        pg.logits = malloc(lb);
        ds_model *mp = open_with(sealed, budget, variants[v].pf, variants[v].pol);
        T_CHECK(id, mp != NULL, "paged open failed");
        if (!mp || !pg.logits) {
            free(pg.logits);
            ds_model_close(mp);
            continue;
        }
        ds_status s = decode(mp, V, &pg, variants[v].batch);
        T_STATUS(id, s, DS_OK, ds_last_error());
        int first = 0;
        while (first < N_GEN && pg.tokens[first] == want->tokens[first]) first++;
        T_CHECK(id, first == N_GEN, "%s: tokens differ from the resident run's at step %d", variants[v].name, first);
        T_CHECK(id, !s && memcmp(pg.logits, want->logits, lb) == 0, "%s: logits differ from the resident run's",
                variants[v].name);

        const ds_cache_stats *st = &pg.st;
        snprintf(id, sizeof id, "e256-5.%d", v);
        uint64_t lookups = st->hits + st->misses + st->prefetch_hits;
        uint64_t fills = one ? st->bytes_decrypted / one : 0, slots = (uint64_t)st->n_slots;
        printf("INFO %s %s: %d slots, lookups %llu (hits %llu, misses %llu, prefetch hits %llu), %llu decrypted "
               "(%.2f MB), evictions %llu, prefetch issued %llu wasted %llu dropped %llu skipped %llu in memory %llu\n",
               id, variants[v].name, st->n_slots, (unsigned long long)lookups, (unsigned long long)st->hits,
               (unsigned long long)st->misses, (unsigned long long)st->prefetch_hits, (unsigned long long)fills,
               mb(st->bytes_decrypted), (unsigned long long)st->evictions, (unsigned long long)st->prefetch_issued,
               (unsigned long long)st->prefetch_wasted, (unsigned long long)st->prefetch_dropped,
               (unsigned long long)st->prefetch_skipped, (unsigned long long)st->prefetch_in_memory);
        T_CHECK(id, st->n_slots > 0 && slots <= (uint64_t)n_experts / 8 && st->budget_bytes == budget,
                "%d slots for a budget of 1/8 of %d experts", st->n_slots, n_experts);
        if (!variants[v].batch) {
            uint64_t lk = (uint64_t)(N_PROMPT + N_GEN) * 2 * TOP_K;
            T_CHECK(id, lookups == lk, "lookups %llu, want %d tokens x 2 layers x %d = %llu",
                    (unsigned long long)lookups, N_PROMPT + N_GEN, TOP_K, (unsigned long long)lk);
        }
        T_CHECK(id, st->misses > 0 && st->evictions > 0, "the cache did not page: %llu misses, %llu evictions",
                (unsigned long long)st->misses, (unsigned long long)st->evictions);
        T_CHECK(id, st->bytes_decrypted == fills * one && fills >= st->misses,
                "%llu bytes decrypted: not a whole number of %llu-byte experts, or fewer than the %llu misses",
                (unsigned long long)st->bytes_decrypted, (unsigned long long)one, (unsigned long long)st->misses);
        /* the cache starts empty and no fill fails: every slot taken is an
         * empty one until all are full, an eviction after; the prefetch
         * thread may have one expert claimed and not yet decrypted */
        uint64_t inflight = variants[v].pf == DS_PREFETCH_OFF ? 0 : 1;
        T_CHECK(id, st->evictions + slots >= fills && st->evictions + slots <= fills + inflight,
                "%llu evictions for %llu decryptions into %llu slots (at most %llu in flight)",
                (unsigned long long)st->evictions, (unsigned long long)fills, (unsigned long long)slots,
                (unsigned long long)inflight);
        T_CHECK(id, st->prefetch_hits <= st->prefetch_issued && st->prefetch_wasted <= st->prefetch_issued &&
                        fills <= st->misses + st->prefetch_issued,
                "prefetch: %llu issued, %llu hits, %llu wasted, %llu decryptions for %llu misses",
                (unsigned long long)st->prefetch_issued, (unsigned long long)st->prefetch_hits,
                (unsigned long long)st->prefetch_wasted, (unsigned long long)fills, (unsigned long long)st->misses);
        if (variants[v].pf == DS_PREFETCH_OFF)
            T_CHECK(id, st->prefetch_issued == 0 && st->prefetch_hits == 0 && fills == st->misses,
                    "prefetch off: %llu issued, %llu prefetch hits, %llu decryptions for %llu misses",
                    (unsigned long long)st->prefetch_issued, (unsigned long long)st->prefetch_hits,
                    (unsigned long long)fills, (unsigned long long)st->misses);
        ds_model_close(mp);
        free(pg.logits);
    }
    free(res[0].logits);
    free(res[1].logits);
}

int main(void) {
    const char *td = getenv("DS_TESTDATA");
    char probe[700];
    struct stat sb;
    snprintf(src, sizeof src, "%s/v3e256", td ? td : "");
    snprintf(probe, sizeof probe, "%s/config.json", src);
    if (!td || stat(probe, &sb) != 0) {
        T_SKIP("e256", "no $DS_TESTDATA/v3e256 (make_checkpoint.py --family v3e256 DIR/v3e256)");
        return t_finish("test_experts256");
    }
    if (!mkdtemp(tmpdir)) {
        T_CHECK("e256-1", 0, "mkdtemp failed");
        return t_finish("test_experts256");
    }
    snprintf(sealed, sizeof sealed, "%s/v3e256-q8.dsm", tmpdir);
    snprintf(plain, sizeof plain, "%s/v3e256-f32.dsm", tmpdir);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_Q8_0;
    cp.encrypt = 1;
    cp.key = key;
    cp.key_len = sizeof key;
    cp.chunk_bytes = 4096;   /* several chunks per expert: the cache opens them on two threads */
    ds_status s = ds_convert(src, sealed, &cp);
    T_STATUS("e256-1", s, DS_OK, ds_last_error());
    cp = ds_convert_default_params();
    cp.quant = DS_QUANT_F32;
    cp.encrypt = 0;
    s = ds_convert(src, plain, &cp);
    T_STATUS("e256-1", s, DS_OK, ds_last_error());
    test_config_and_parity();
    test_paged();
    unlink(sealed);
    unlink(plain);
    rmdir(tmpdir);
    return t_finish("test_experts256");
}
