/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_stress.c — many contexts on many threads sharing one model whose
 * routed experts live in a tiny cache (3 slots) with the prefetch thread on.
 *
 *  stress-1: the model converts (encrypted, so the pager decrypts) and opens.
 *  stress-2: every stream run alone on a resident model (one thread, no
 *            cache): the reference logits and tokens.
 *  stress-3: NT threads x NC contexts, each decoding its own stream, steps
 *            interleaved between a thread's contexts, while a monitor thread
 *            polls the cache statistics: every stream's logits (the prompt's
 *            last row and each decode step) and sampled tokens equal the
 *            reference bit for bit.
 *  stress-4: the cache statistics add up: every expert acquisition counted
 *            exactly once as a hit, a miss or a prefetch hit (the total is
 *            known from the same streams run one by one through the cache),
 *            loads are whole experts, loads and evictions differ by at most
 *            the slot count, prefetch hits and waste do not exceed prefetch
 *            loads, and the counters only grew while polled.
 *  stress-5: the model closes cleanly afterwards, and reset clears counters.
 *
 * Built as any other test; `make tsan` builds it with -fsanitize=thread and
 * every library source, where it is the race detector's workload.
 * DS_STRESS_ROUNDS=N repeats the threaded part N times (default 1).
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <pthread.h>
#include <unistd.h>

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-stress-XXXXXX";
static unsigned char key[DS_KEY_BYTES];

enum {
    NT = 4,          /* threads */
    NC = 2,          /* contexts per thread */
    NS = NT * NC,    /* streams */
    PROMPT = 9,      /* prompt tokens of stream 0; stream i has PROMPT + i % 4 */
    STEPS = 24       /* decode steps after the prompt */
};

/* ==== Streams ============================================================= */
/*
 * A stream: a prompt evaluated as one batch, then STEPS single-token evals,
 * each token drawn from the previous logits by the stream's own sampler
 * (temperature 0.9, top-k 20, seeded per stream). Any difference in logits
 * changes the tokens that follow, so divergence is loud.
 */
typedef struct stream {
    int id;
    ds_context *ctx;
    ds_sampler *smp;
    int32_t toks[PROMPT + 4 + STEPS];
    int n_toks;
    int step;                /* 0: prompt not yet evaluated */
    float *logits;           /* (1 + STEPS) x vocab: prompt's last row, then one per step */
    int vocab;
    ds_status s;
    char msg[256];
} stream;

static ds_status stream_begin(stream *st, ds_model *m, int id, int vocab) {
    memset(st, 0, sizeof *st);
    st->id = id;
    st->vocab = vocab;
    st->logits = calloc((size_t)(1 + STEPS) * (size_t)vocab, sizeof(float));
    if (!st->logits) return DS_ERR_NOMEM;
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = 64;
    ds_status s = ds_context_new(&st->ctx, m, &cp);
    if (s) return s;
    ds_sampler_params sp = ds_sampler_default_params();
    sp.temperature = 0.9f;
    sp.top_k = 20;
    sp.seed = 1000 + (uint64_t)id;
    s = ds_sampler_new(&st->smp, &sp);
    if (s) return s;
    int n = PROMPT + id % 4;
    for (int i = 0; i < n; i++) st->toks[i] = (int32_t)((i * 131 + id * 977 + 5) % vocab);
    st->n_toks = n;
    return DS_OK;
}

/* One step: the prompt (step 0) or one decode. Records failures in st. */
static void stream_step(stream *st) {
    if (st->s || st->step > STEPS) return;
    ds_status s;
    if (st->step == 0) {
        s = ds_context_eval(st->ctx, st->toks, (size_t)st->n_toks, st->logits, 0);
    } else {
        const float *prev = st->logits + (size_t)(st->step - 1) * (size_t)st->vocab;
        int32_t t = 0;
        s = ds_sampler_sample(st->smp, prev, st->vocab, st->toks, (size_t)st->n_toks, &t);
        if (!s) {
            st->toks[st->n_toks++] = t;
            s = ds_context_eval(st->ctx, &t, 1, st->logits + (size_t)st->step * (size_t)st->vocab, 0);
        }
    }
    if (s) {
        st->s = s;
        snprintf(st->msg, sizeof st->msg, "step %d: %s", st->step, ds_context_errmsg(st->ctx));
    }
    st->step++;
}

static void stream_end(stream *st) {
    ds_context_free(st->ctx);
    ds_sampler_free(st->smp);
    st->ctx = NULL;
    st->smp = NULL;
}

/* Runs every stream alone, one after the other, on m. */
static ds_status run_alone(ds_model *m, int vocab, stream *out) {
    for (int i = 0; i < NS; i++) {
        ds_status s = stream_begin(&out[i], m, i, vocab);
        if (s) return s;
        while (out[i].step <= STEPS && !out[i].s) stream_step(&out[i]);
        stream_end(&out[i]);
        if (out[i].s) return out[i].s;
    }
    return DS_OK;
}

static void streams_free(stream *v) {
    for (int i = 0; i < NS; i++) {
        stream_end(&v[i]);
        free(v[i].logits);
        v[i].logits = NULL;
    }
}

/* ==== Threads ============================================================= */
typedef struct worker {
    ds_model *m;
    stream *st;              /* NC streams */
    int vocab;
    ds_status s;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    for (int c = 0; c < NC && !w->s; c++) w->s = stream_begin(&w->st[c], w->m, w->st[c].id, w->vocab);
    if (w->s) return NULL;
    /* steps interleaved: each context's KV cache and scratch stay its own */
    for (int k = 0; k <= STEPS; k++)
        for (int c = 0; c < NC; c++) stream_step(&w->st[c]);
    for (int c = 0; c < NC; c++) stream_end(&w->st[c]);
    return NULL;
}

/* Polls the statistics while the workers run: counters must never go down. */
typedef struct monitor {
    ds_model *m;
    int stop;                /* atomic */
    int polls, went_down;
    ds_status s;
} monitor;

static void *monitor_main(void *arg) {
    monitor *mo = arg;
    ds_cache_stats prev;
    memset(&prev, 0, sizeof prev);
    while (!__atomic_load_n(&mo->stop, __ATOMIC_ACQUIRE)) {
        ds_cache_stats st;
        ds_status s = ds_model_cache_stats(mo->m, &st);
        if (s) {
            mo->s = s;
            break;
        }
        mo->polls++;
        if (st.hits < prev.hits || st.misses < prev.misses || st.prefetch_hits < prev.prefetch_hits ||
            st.prefetch_issued < prev.prefetch_issued || st.evictions < prev.evictions ||
            st.bytes_decrypted < prev.bytes_decrypted || st.predicted < prev.predicted)
            mo->went_down++;
        prev = st;
        usleep(200);
    }
    return NULL;
}

/* ==== The test, per family =============================================== */
static ds_model *open_model(const char *path, uint64_t cache, ds_evict_policy pol, int n_threads) {
    ds_model *m = NULL;
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.n_threads = n_threads;
    mp.expert_cache_bytes = cache;
    mp.prefetch = DS_PREFETCH_ALWAYS;   /* the prefetch thread races the streams even with the file in memory */
    mp.evict_policy = pol;
    if (ds_model_open(&m, path, &mp) != DS_OK) {
        printf("open %s: %s\n", path, ds_last_error());
        return NULL;
    }
    return m;
}

static uint64_t sum_acq(const ds_cache_stats *s) { return s->hits + s->misses + s->prefetch_hits; }

static void test_family(const char *family, ds_evict_policy pol, int rounds) {
    char id[96], path[600], dir[600];
    const char *pn = pol == DS_EVICT_LRU ? "lru" : "lfu";
    snprintf(dir, sizeof dir, "%s/%s", testdata, family);
    snprintf(path, sizeof path, "%s/%s.dsm", tmpdir, family);

    /* 1: convert once per family (sealed with AES-256-GCM), open */
    snprintf(id, sizeof id, "stress-1.%s.%s", family, pn);
    if (access(path, R_OK) != 0) {
        ds_convert_params cp = ds_convert_default_params();
        cp.quant = DS_QUANT_Q8_0;
        cp.key = key;
        cp.key_len = sizeof key;
        cp.chunk_bytes = 4096;   /* several chunks per expert segment */
        ds_status s = ds_convert(dir, path, &cp);
        T_STATUS(id, s, DS_OK, ds_last_error());
        if (s) return;
    }
    ds_model *ref_m = open_model(path, 0, pol, 1);
    T_CHECK(id, ref_m != NULL, "resident open failed");
    if (!ref_m) return;
    ds_model_config cf;
    (void)!ds_model_get_config(ref_m, &cf);
    int V = cf.vocab_size;
    /* the slot size, as the pager computes it: the largest expert segment, page-rounded */
    uint64_t seg_plain = 0;
    int n_expert_segs = 0, same_size = 1;
    for (size_t i = 0; i < ds_model_segment_count(ref_m); i++) {
        ds_segment_info si;
        if (ds_model_segment_info(ref_m, i, &si) != DS_OK || si.kind != DS_SEGMENT_EXPERT) continue;
        if (n_expert_segs++ && si.plain_bytes != seg_plain) same_size = 0;
        if (si.plain_bytes > seg_plain) seg_plain = si.plain_bytes;
    }
    uint64_t slot = (seg_plain + 4095) / 4096 * 4096;
    T_CHECK(id, n_expert_segs > 3 && slot > 0, "%d expert segments", n_expert_segs);

    /* 2: the reference: each stream alone, resident, one thread */
    static stream ref[NS], paged[NS], thr[NS];
    snprintf(id, sizeof id, "stress-2.%s.%s", family, pn);
    ds_status s = run_alone(ref_m, V, ref);
    T_STATUS(id, s, DS_OK, ds_last_error());
    T_STATUS(id, ds_model_close(ref_m), DS_OK, ds_last_error());
    if (s) {
        streams_free(ref);
        return;
    }

    /* the same streams one by one through a 3-slot cache: how many expert
     * acquisitions they make (routing does not depend on the interleaving) */
    ds_model *m = open_model(path, 3 * slot, pol, 2);
    snprintf(id, sizeof id, "stress-2.%s.%s.paged", family, pn);
    T_CHECK(id, m != NULL, "paged open failed");
    if (!m) {
        streams_free(ref);
        return;
    }
    s = run_alone(m, V, paged);
    T_STATUS(id, s, DS_OK, ds_last_error());
    ds_cache_stats st0;
    (void)!ds_model_cache_stats(m, &st0);
    uint64_t acq = sum_acq(&st0);
    /* bounds from the routing: per eval and MoE layer, at least K distinct
     * experts, at most min(E, T * K) */
    int moe_layers = 0;
    for (int l = 0; l < cf.n_layers; l++) moe_layers += dsi_config_is_moe_layer(&cf, l);
    uint64_t lo = 0, hi = 0;
    for (int i = 0; i < NS; i++) {
        int tk = paged[i].n_toks - STEPS;   /* prompt length */
        int K = cf.n_experts_per_tok, E = cf.n_routed_experts;
        lo += (uint64_t)moe_layers * (uint64_t)K * (1 + STEPS);
        hi += (uint64_t)moe_layers * ((uint64_t)(tk * K < E ? tk * K : E) + (uint64_t)K * STEPS);
    }
    T_CHECK(id, acq >= lo && acq <= hi, "%llu acquisitions outside [%llu, %llu]", (unsigned long long)acq,
            (unsigned long long)lo, (unsigned long long)hi);
    int same = 0;
    for (int i = 0; i < NS; i++)
        same += !memcmp(paged[i].logits, ref[i].logits, (size_t)(1 + STEPS) * (size_t)V * sizeof(float));
    T_CHECK(id, same == NS, "%d of %d streams through the cache differ from resident", NS - same, NS);
    streams_free(paged);

    for (int r = 0; r < rounds; r++) {
        /* 3: NT threads x NC contexts on one model, a monitor polling */
        ds_model_cache_stats_reset(m);
        worker w[NT];
        pthread_t th[NT], mth;
        monitor mo = {m, 0, 0, 0, DS_OK};
        for (int i = 0; i < NS; i++) {
            memset(&thr[i], 0, sizeof thr[i]);
            thr[i].id = i;
        }
        int started = 0, mon = pthread_create(&mth, NULL, monitor_main, &mo) == 0;
        for (int t = 0; t < NT; t++) {
            w[t] = (worker){m, &thr[t * NC], V, DS_OK};
            if (pthread_create(&th[t], NULL, worker_main, &w[t]) == 0) started++;
            else break;
        }
        for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
        __atomic_store_n(&mo.stop, 1, __ATOMIC_RELEASE);
        if (mon) pthread_join(mth, NULL);
        snprintf(id, sizeof id, "stress-3.%s.%s.%d", family, pn, r);
        T_CHECK(id, started == NT, "started %d of %d threads", started, NT);
        for (int t = 0; t < started; t++)
            T_CHECK(id, w[t].s == DS_OK, "thread %d: %s", t, ds_status_string(w[t].s));
        int bad = 0, failed = 0;
        for (int i = 0; i < started * NC; i++) {
            if (thr[i].s) {
                if (!failed++) printf("stream %d failed: %s\n", i, thr[i].msg);
                continue;
            }
            int diff = thr[i].n_toks != ref[i].n_toks ||
                       memcmp(thr[i].toks, ref[i].toks, (size_t)ref[i].n_toks * sizeof(int32_t)) != 0 ||
                       memcmp(thr[i].logits, ref[i].logits, (size_t)(1 + STEPS) * (size_t)V * sizeof(float)) != 0;
            if (diff && !bad) {
                int k = 0;
                while (k <= STEPS && !memcmp(thr[i].logits + (size_t)k * V, ref[i].logits + (size_t)k * V,
                                             (size_t)V * sizeof(float)))
                    k++;
                printf("stream %d: first differing logits row %d of %d\n", i, k, STEPS + 1);
            }
            bad += diff;
        }
        T_CHECK(id, failed == 0, "%d streams failed", failed);
        T_CHECK(id, bad == 0, "%d of %d streams differ from the single-threaded resident run", bad, NS);

        /* 4: the statistics add up */
        ds_cache_stats st;
        snprintf(id, sizeof id, "stress-4.%s.%s.%d", family, pn, r);
        T_STATUS(id, ds_model_cache_stats(m, &st), DS_OK, ds_last_error());
        T_CHECK(id, st.n_slots == 3 && st.slot_bytes == slot && st.budget_bytes == 3 * slot,
                "%d slots of %llu bytes, budget %llu", st.n_slots, (unsigned long long)st.slot_bytes,
                (unsigned long long)st.budget_bytes);
        T_CHECK(id, sum_acq(&st) == acq,
                "hits %llu + misses %llu + prefetch hits %llu = %llu, but the streams acquire %llu experts",
                (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.prefetch_hits,
                (unsigned long long)sum_acq(&st), (unsigned long long)acq);
        T_CHECK(id, st.misses > 0 && st.bytes_decrypted > 0 && st.decrypt_seconds > 0 && st.wait_seconds >= 0,
                "misses %llu, %llu bytes decrypted in %g s", (unsigned long long)st.misses,
                (unsigned long long)st.bytes_decrypted, st.decrypt_seconds);
        if (same_size && seg_plain) {
            /* Every load decrypts one whole expert segment; misses load
             * synchronously, the rest are the prefetcher's. The prefetcher
             * may still be busy with work queued before the reset (or be
             * mid-load now), so what the cache held at the reset (at most 3
             * ready slots) is the only slack in these bounds. */
            uint64_t loads = st.bytes_decrypted / seg_plain, pre_loads = loads - st.misses;
            T_CHECK(id, st.bytes_decrypted % seg_plain == 0 && loads >= st.misses,
                    "%llu bytes decrypted is not a whole number of %llu-byte experts >= misses %llu",
                    (unsigned long long)st.bytes_decrypted, (unsigned long long)seg_plain,
                    (unsigned long long)st.misses);
            T_CHECK(id, st.evictions <= loads + 3 && loads <= st.evictions + 3,
                    "%llu loads and %llu evictions: more than 3 slots apart", (unsigned long long)loads,
                    (unsigned long long)st.evictions);
            T_CHECK(id, st.prefetch_hits + st.prefetch_wasted <= pre_loads + 3,
                    "prefetch hits %llu + wasted %llu > prefetch loads %llu + 3", (unsigned long long)st.prefetch_hits,
                    (unsigned long long)st.prefetch_wasted, (unsigned long long)pre_loads);
        }
        T_CHECK(id, st.prefetch_issued > 0 && st.predicted > 0 && st.predicted_hits <= st.predicted,
                "prefetch issued %llu, predicted %llu, right %llu", (unsigned long long)st.prefetch_issued,
                (unsigned long long)st.predicted, (unsigned long long)st.predicted_hits);
        T_CHECK(id, mo.s == DS_OK && mo.polls > 0 && mo.went_down == 0, "monitor: %d polls, %d went down, status %d",
                mo.polls, mo.went_down, (int)mo.s);
        if (r == 0)
            printf("INFO %s: %llu acquisitions: hits %llu misses %llu prefetch hits %llu (issued %llu wasted %llu "
                   "dropped %llu), evictions %llu, %d polls\n",
                   id, (unsigned long long)acq, (unsigned long long)st.hits, (unsigned long long)st.misses,
                   (unsigned long long)st.prefetch_hits, (unsigned long long)st.prefetch_issued,
                   (unsigned long long)st.prefetch_wasted, (unsigned long long)st.prefetch_dropped,
                   (unsigned long long)st.evictions, mo.polls);
        streams_free(thr);
    }

    /* 5: reset keeps the shape and clears the counters; close succeeds */
    snprintf(id, sizeof id, "stress-5.%s.%s", family, pn);
    ds_model_cache_stats_reset(m);
    ds_cache_stats z;
    (void)!ds_model_cache_stats(m, &z);
    T_CHECK(id, z.n_slots == 3 && z.slot_bytes == slot && sum_acq(&z) == 0 && z.evictions == 0,
            "after reset: %d slots, %llu acquisitions", z.n_slots, (unsigned long long)sum_acq(&z));
    T_STATUS(id, ds_model_close(m), DS_OK, ds_last_error());
    streams_free(ref);
}

int main(void) {
    testdata = getenv("DS_TESTDATA");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/v2lite/config.json", testdata ? testdata : "");
    if (!testdata || access(probe, R_OK) != 0 || !mkdtemp(tmpdir)) {
        T_SKIP("stress", "no generated checkpoints ($DS_TESTDATA)");
        return t_finish("test_stress");
    }
    int rounds = getenv("DS_STRESS_ROUNDS") ? atoi(getenv("DS_STRESS_ROUNDS")) : 1;
    if (rounds < 1) rounds = 1;
    if (ds_key_generate(key) != DS_OK) {
        T_CHECK("stress-0", 0, "no key: %s", ds_last_error());
        return t_finish("test_stress");
    }
    test_family("v2lite", DS_EVICT_LRU, rounds);
    test_family("v3", DS_EVICT_LRU, rounds);
    test_family("moe16b", DS_EVICT_LFU_DECAY, rounds);
    ds_memzero(key, sizeof key);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    return t_finish("test_stress");
}
