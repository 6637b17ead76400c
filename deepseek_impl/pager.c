/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * pager.c — the routed-expert cache: a fixed budget of slots, each able to
 * hold one expert's plaintext. A miss reads and decrypts the expert's
 * segment (dsi_segment_read_chunks) into a free or evicted slot; slots in
 * use by a running forward pass are pinned; a prefetch thread decrypts the
 * experts predicted for the next layer while the current one computes. After
 * a segment is decrypted the page cache keeps at most page_cache bytes of
 * the most recently decrypted segments (a second, cheaper tier: a refill from
 * memory instead of disk); the rest is dropped (dsi_file_release:
 * posix_fadvise, or the release callback of a model opened with
 * ds_model_open_io), so the sealed file does not swell the machine's memory. A read that fails (the
 * file truncated or changed under the model) fails the acquire with the
 * file layer's message and leaves the slot empty.
 *
 * Concurrency: one mutex guards the slot table; decryption runs outside it
 * with the slot marked LOADING. Its chunks are handed out one at a time: a
 * thread that wants a LOADING slot takes chunks while any are left (as does
 * the prefetch thread when it has nothing queued), then waits on a condition
 * variable. Contexts on several threads may share the cache.
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include <sodium.h>

enum { DSI_SLOT_EMPTY = 0, DSI_SLOT_LOADING = 1, DSI_SLOT_READY = 2 };
#define DSI_PREFETCH_QUEUE 1024
#define DSI_LFU_HALF_LIFE 32        /* LFU: a use counts half after this many tokens' worth of uses */
#define DSI_GUESS_RANKS 64
/* A guess is fetched only if guesses of its rank were right this often so far
 * (with 8 right ones assumed to start): on the random V2-Lite-shaped models
 * ranks 1-6 are right 92, 85, 78, 64, 56 and 40% of the time, and fetching
 * ranks 4-6 as well cost more disk reads than their hits saved. */
#define DSI_GUESS_MIN_ACCURACY 0.7
#define DSI_GUESS_PRIOR 8

struct dsi_fill_job;

typedef struct dsi_slot {
    int layer, expert;              /* -1 when empty */
    int state;
    struct dsi_fill_job *job;       /* while LOADING: the fill, which a thread waiting for it may join */
    int pins;                       /* forward passes using it now */
    bool prefetched;                /* loaded by the prefetcher ... */
    bool used;                      /* ... and used since it was loaded */
    bool fresh;                     /* a guess its layer has not run since: not evicted while
                                       anything else can be (LFU would take it first, its count
                                       being low, before the use it was fetched for) */
    uint64_t last_use;              /* LRU clock */
} dsi_slot;

struct dsi_pager {
    ds_model *m;
    pthread_mutex_t lock;
    pthread_cond_t changed;         /* a slot became READY or was unpinned */
    pthread_cond_t work;            /* prefetch queue not empty, or quit */
    dsi_secure_buf mem;
    size_t slot_bytes;
    int n_slots;
    dsi_slot *slots;
    int *where;                     /* (layer * n_experts + expert) -> slot or -1 */
    int n_experts;
    uint64_t clock;                 /* counts expert uses */
    ds_evict_policy policy;
    /* LFU with decay, kept for every (layer, expert), cached or not: the sum
     * of decay^(age) over its uses, as of the clock in score_at */
    double *score, decay;
    uint64_t *score_at;
    /* prefetch */
    bool prefetch;
    bool only_from_storage;         /* DS_PREFETCH_AUTO with no CPU beyond the compute threads:
                                       experts in memory are decrypted on demand instead */
    pthread_t thread;
    bool thread_started, quit;
    bool prefetch_failed;           /* a prefetch failed (warned once) */
    int queue[DSI_PREFETCH_QUEUE];  /* layer * n_experts + expert */
    int q_head, q_len;
    /* statistics (under lock) */
    ds_cache_stats st;
    /* prediction accuracy: the experts predicted for each layer */
    unsigned char *predicted;       /* (layer * n_experts + expert) -> 1 */
    uint64_t rank_right[DSI_GUESS_RANKS], rank_total[DSI_GUESS_RANKS];   /* one-token guesses, by rank */
    /* several threads open one expert's chunks at once; one fill uses the
     * pool at a time (others decrypt on their own thread) */
    dsi_pool *pool;
    pthread_mutex_t pool_lock;
    /* the page-cache tier: segments whose ciphertext the OS may keep, oldest first */
    uint32_t *pc;
    int pc_cap, pc_len;
};

/* Records that segment seg was just read; returns the segment whose
 * ciphertext should now leave the page cache (seg itself without a tier), or
 * -1. Takes the lock. */
static long dsi_pc_push(dsi_pager *p, uint32_t seg) {
    if (!p->pc_cap) return (long)seg;
    pthread_mutex_lock(&p->lock);
    int k = 0;
    while (k < p->pc_len && p->pc[k] != seg) k++;
    if (k < p->pc_len) {   /* already kept: move it to the young end */
        memmove(p->pc + k, p->pc + k + 1, (size_t)(p->pc_len - k - 1) * sizeof *p->pc);
        p->pc_len--;
    }
    long drop = -1;
    if (p->pc_len == p->pc_cap) {
        drop = (long)p->pc[0];
        memmove(p->pc, p->pc + 1, (size_t)(p->pc_len - 1) * sizeof *p->pc);
        p->pc_len--;
    }
    p->pc[p->pc_len++] = seg;
    pthread_mutex_unlock(&p->lock);
    return drop;
}

/* One expert being decrypted. The chunks are handed out one at a time, so
 * the pager's pool, and any thread that comes to wait for the expert, can
 * open some of them while the filling thread opens others. */
typedef struct dsi_fill_job {
    const ds_model *m;
    uint32_t seg;
    uint8_t *dst;
    uint32_t n_chunks;
    uint32_t next;                /* atomic: the next chunk to take */
    int helpers;                  /* threads besides the filler taking chunks now (under the pager's lock) */
    dsi_err err;                  /* the first failure's message (the first to fail writes it) */
    int failed;
    int joined;                   /* atomic: threads that have joined so far (only ever grows) */
} dsi_fill_job;

static bool dsi_fill_open(const dsi_fill_job *j) { return __atomic_load_n(&j->next, __ATOMIC_RELAXED) < j->n_chunks; }

/* Test hook (NULL in use): called after each chunk a thread opens, with the
 * chunk and the count of threads that have joined the fill so far (it only
 * grows: a joiner may take every chunk left and be gone before the filler
 * looks), so a test can hold a fill open until another thread has joined it
 * (an interleaving forced, not hoped for). */
DSI_DATA void (*dsi_pager_fill_hook)(uint32_t chunk, const int *joined);

/* Opens chunks of j until none is left to take. */
static void dsi_fill_chunks(dsi_fill_job *j) {
    for (;;) {
        uint32_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (c >= j->n_chunks) return;
        if (__atomic_load_n(&j->failed, __ATOMIC_ACQUIRE)) continue;   /* the fill has failed: skip the rest */
        dsi_err e = {0};
        if (dsi_segment_read_chunks(j->m, j->seg, j->dst, c, c + 1, &e) &&
            __atomic_exchange_n(&j->failed, 1, __ATOMIC_ACQ_REL) == 0)
            j->err = e;
        void (*hook)(uint32_t, const int *) = __atomic_load_n(&dsi_pager_fill_hook, __ATOMIC_ACQUIRE);
        if (hook) hook(c, &j->joined);
    }
}

static void dsi_fill_task(void *arg, int task, int worker) {
    (void)task;
    (void)worker;
    dsi_fill_chunks(arg);
}

/* Takes chunks of j with the pager's pool when it is free, else alone. */
static void dsi_fill_work(dsi_pager *p, dsi_fill_job *j) {
    if (p->pool && j->n_chunks > 1 && pthread_mutex_trylock(&p->pool_lock) == 0) {
        dsi_pool_run(p->pool, dsi_fill_task, j, dsi_pool_size(p->pool));
        pthread_mutex_unlock(&p->pool_lock);
    } else {
        dsi_fill_chunks(j);
    }
}

/* Joins fill j, which another thread owns: takes chunks (with the pager's
 * pool when with_pool and it is free) until none is left. Called and
 * returns under the lock; the owner does not return before this is done. */
static void dsi_fill_join(dsi_pager *p, dsi_fill_job *j, bool with_pool) {
    __atomic_add_fetch(&j->helpers, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&j->joined, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&p->lock);
    if (with_pool) dsi_fill_work(p, j);
    else dsi_fill_chunks(j);
    pthread_mutex_lock(&p->lock);
    if (__atomic_sub_fetch(&j->helpers, 1, __ATOMIC_ACQ_REL) == 0) pthread_cond_broadcast(&p->changed);
    p->st.fills_joined++;
}

/* ==== Victim choice ====================================================== */
static double dsi_key_score(const dsi_pager *p, int key) {
    return p->score[key] * pow(p->decay, (double)(p->clock - p->score_at[key]));
}

static double dsi_slot_score(const dsi_pager *p, const dsi_slot *s) {
    if (p->policy == DS_EVICT_LRU) return (double)s->last_use;
    /* LFU with exponential decay, evaluated at the current clock */
    return dsi_key_score(p, s->layer * p->n_experts + s->expert);
}

/* A slot to (re)fill: an empty one, else the lowest-scoring unpinned READY
 * one that is not a fresh guess, else the lowest-scoring fresh guess. -1 when
 * every slot is pinned or loading. Under lock. */
static int dsi_pick_victim(const dsi_pager *p) {
    int best = -1;
    double best_score = INFINITY;
    bool best_fresh = true;
    for (int i = 0; i < p->n_slots; i++) {
        const dsi_slot *s = &p->slots[i];
        if (s->state == DSI_SLOT_EMPTY) return i;
        if (s->state != DSI_SLOT_READY || s->pins) continue;
        double sc = dsi_slot_score(p, s);
        if ((best_fresh && !s->fresh) || (s->fresh == best_fresh && sc < best_score)) {
            best_score = sc;
            best = i;
            best_fresh = s->fresh;
        }
    }
    return best;
}

/* A use of slot s (count = false: the first use of a prefetched expert,
 * whose claim counted it in advance). */
static void dsi_touch(dsi_pager *p, dsi_slot *s, bool count) {
    p->clock++;
    s->last_use = p->clock;
    if (!count) return;
    int key = s->layer * p->n_experts + s->expert;
    p->score[key] = dsi_key_score(p, key) + 1.0;
    p->score_at[key] = p->clock;
}

/* Takes slot i for (layer, expert), evicting what it held. Under lock. */
static void dsi_claim(dsi_pager *p, int i, int layer, int expert, bool prefetched) {
    dsi_slot *s = &p->slots[i];
    if (s->layer >= 0) {
        p->where[s->layer * p->n_experts + s->expert] = -1;
        p->st.evictions++;
        if (s->prefetched && !s->used) p->st.prefetch_wasted++;
    }
    s->layer = layer;
    s->expert = expert;
    s->state = DSI_SLOT_LOADING;
    s->prefetched = prefetched;
    s->used = false;
    s->fresh = prefetched;
    p->where[layer * p->n_experts + expert] = i;
}

/* Decrypts (layer, expert) into slot i; outside the lock. */
static ds_status dsi_fill(dsi_pager *p, int i, int layer, int expert, double *secs, dsi_err *e) {
    const ds_model *m = p->m;
    uint8_t *dst = (uint8_t *)p->mem.ptr + (size_t)i * p->slot_bytes;
    const dsi_expert_ref *r = &m->w.layers[layer].experts[expert];
    const dsi_segment *seg = &m->meta.segments[r->segment];
    double t0 = dsi_now_seconds();
    /* exactly this segment, in large reads (see dsi_file_willneed) */
    dsi_file_willneed(m, seg->offset, seg->stored_bytes);
    dsi_fill_job j = {m, r->segment, dst, seg->n_chunks, 0, 0, {0}, 0, 0};
    pthread_mutex_lock(&p->lock);
    p->slots[i].job = &j;
    if (p->thread_started && !p->q_len) pthread_cond_signal(&p->work);   /* an idle prefetcher may join */
    /* and so may a thread that asked for this expert between its claim and
     * now: it found no job to join and waits for a change */
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->lock);
    dsi_fill_work(p, &j);
    /* no one joins from here; wait for those who did */
    pthread_mutex_lock(&p->lock);
    p->slots[i].job = NULL;
    while (j.helpers) pthread_cond_wait(&p->changed, &p->lock);
    pthread_mutex_unlock(&p->lock);
    ds_status s = j.failed ? j.err.status : DS_OK;
    if (j.failed) {
        *e = j.err;
        sodium_memzero(dst, seg->plain_bytes);   /* no half-authenticated plaintext */
    }
    *secs = dsi_now_seconds() - t0;
    /* the ciphertext leaves the page cache when it falls out of the
     * page-cache tier (at once without one) */
    long drop = dsi_pc_push(p, r->segment);
    if (drop >= 0) {
        const dsi_segment *dg = &m->meta.segments[drop];
        dsi_file_release(m, dg->offset, dg->stored_bytes);
    }
    return s;
}

/* Marks slot i READY (or empty on failure) and wakes waiters. Under lock. */
static void dsi_filled(dsi_pager *p, int i, ds_status s, double secs, uint64_t bytes) {
    dsi_slot *sl = &p->slots[i];
    p->st.decrypt_seconds += secs;
    if (s) {
        p->where[sl->layer * p->n_experts + sl->expert] = -1;
        sl->layer = sl->expert = -1;
        sl->state = DSI_SLOT_EMPTY;
        sl->pins = 0;
    } else {
        sl->state = DSI_SLOT_READY;
        p->st.bytes_decrypted += bytes;
    }
    pthread_cond_broadcast(&p->changed);
}

/* ==== Acquire and release ================================================ */
DSI_FUNC ds_status dsi_pager_acquire(dsi_pager *p, int layer, int expert, const uint8_t **base, dsi_err *e) {
    const dsi_segment *sg = &p->m->meta.segments[p->m->w.layers[layer].experts[expert].segment];
    double waited = 0;
    pthread_mutex_lock(&p->lock);
    int key = layer * p->n_experts + expert;
    if (p->predicted[key]) {
        p->st.predicted_hits++;
        p->predicted[key] = 0;
    }
    for (;;) {
        int i = p->where[key];
        if (i >= 0 && p->slots[i].state == DSI_SLOT_READY) {
            dsi_slot *s = &p->slots[i];
            s->pins++;
            bool first = s->prefetched && !s->used;
            if (first) p->st.prefetch_hits++;
            else p->st.hits++;
            s->used = true;
            s->fresh = false;
            dsi_touch(p, s, !first);
            p->st.wait_seconds += waited;
            pthread_mutex_unlock(&p->lock);
            *base = (const uint8_t *)p->mem.ptr + (size_t)i * p->slot_bytes;
            return DS_OK;
        }
        dsi_fill_job *j = i >= 0 ? p->slots[i].job : NULL;
        if (j && dsi_fill_open(j)) {
            /* being decrypted (by the prefetcher or another context) with
             * chunks still to take: take some, rather than wait idle */
            double t0 = dsi_now_seconds();
            dsi_fill_join(p, j, true);
            waited += dsi_now_seconds() - t0;
            continue;
        }
        int v = i < 0 ? dsi_pick_victim(p) : -1;
        if (i >= 0 || v < 0) {
            /* loading elsewhere (prefetch or another context), or every slot
             * is busy: wait for a change */
            double t0 = dsi_now_seconds();
            pthread_cond_wait(&p->changed, &p->lock);
            waited += dsi_now_seconds() - t0;
            continue;
        }
        /* a miss: decrypt it here */
        dsi_claim(p, v, layer, expert, false);
        p->slots[v].pins = 1;
        p->slots[v].used = true;
        p->st.misses++;
        pthread_mutex_unlock(&p->lock);
        double secs = 0;
        ds_status s = dsi_fill(p, v, layer, expert, &secs, e);
        pthread_mutex_lock(&p->lock);
        dsi_filled(p, v, s, secs, sg->plain_bytes);
        if (!s) dsi_touch(p, &p->slots[v], true);
        p->st.wait_seconds += waited + secs;
        pthread_mutex_unlock(&p->lock);
        if (s) return s;
        *base = (const uint8_t *)p->mem.ptr + (size_t)v * p->slot_bytes;
        return DS_OK;
    }
}

DSI_FUNC void dsi_pager_release(dsi_pager *p, int layer, int expert) {
    pthread_mutex_lock(&p->lock);
    int i = p->where[layer * p->n_experts + expert];
    if (i >= 0 && p->slots[i].pins > 0) {
        p->slots[i].pins--;
        if (!p->slots[i].pins) pthread_cond_broadcast(&p->changed);
    }
    pthread_mutex_unlock(&p->lock);
}

DSI_FUNC int dsi_pager_peek(dsi_pager *p, int layer, int expert) {
    pthread_mutex_lock(&p->lock);
    int i = p->where[layer * p->n_experts + expert];
    int st = i < 0 ? 1 : p->slots[i].state == DSI_SLOT_READY ? 0 : 2;
    pthread_mutex_unlock(&p->lock);
    return st;
}

/* Whether (layer, expert) is being decrypted with chunks left to take (tests). */
DSI_FUNC bool dsi_pager_filling(dsi_pager *p, int layer, int expert) {
    pthread_mutex_lock(&p->lock);
    int i = p->where[layer * p->n_experts + expert];
    bool open = i >= 0 && p->slots[i].job && dsi_fill_open(p->slots[i].job);
    pthread_mutex_unlock(&p->lock);
    return open;
}

/* ==== Prefetch =========================================================== */
/* Whether guesses of rank r (0 = best) have been right often enough to fetch. Under lock. */
static bool dsi_rank_pays(const dsi_pager *p, int r) {
    if (r >= DSI_GUESS_RANKS) return false;
    return (double)(p->rank_right[r] + DSI_GUESS_PRIOR) >=
           DSI_GUESS_MIN_ACCURACY * (double)(p->rank_total[r] + DSI_GUESS_PRIOR);
}

DSI_FUNC void dsi_pager_prefetch(dsi_pager *p, int layer, const int *experts, int n, bool prediction) {
    if (!p->prefetch) return;
    pthread_mutex_lock(&p->lock);
    for (int k = 0; k < n; k++) {
        int key = layer * p->n_experts + experts[k];
        if (prediction && !p->predicted[key]) {
            p->predicted[key] = 1;
            p->st.predicted++;
        }
        if (p->where[key] >= 0 || p->q_len == DSI_PREFETCH_QUEUE) continue;
        bool queued = false;
        for (int q = 0; q < p->q_len && !queued; q++) queued = p->queue[(p->q_head + q) % DSI_PREFETCH_QUEUE] == key;
        if (queued) continue;
        if (prediction && !dsi_rank_pays(p, k)) {
            p->st.prefetch_skipped++;
            continue;
        }
        if (p->only_from_storage) {
            const dsi_segment *sg = &p->m->meta.segments[p->m->w.layers[layer].experts[experts[k]].segment];
            if (dsi_file_in_memory(p->m, sg->offset, sg->stored_bytes)) {
                p->st.prefetch_in_memory++;
                continue;
            }
        }
        p->queue[(p->q_head + p->q_len) % DSI_PREFETCH_QUEUE] = key;
        p->q_len++;
        p->st.prefetch_issued++;
    }
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

DSI_FUNC void dsi_pager_routed(dsi_pager *p, int layer, const int *experts, int n, const int *guess, int n_guess) {
    pthread_mutex_lock(&p->lock);
    int base = layer * p->n_experts;
    for (int x = 0; x < p->n_experts; x++) {
        int i = p->where[base + x];
        bool fresh = i >= 0 && p->slots[i].fresh;
        if (!p->predicted[base + x] && !fresh) continue;
        bool chosen = false;
        for (int k = 0; k < n && !chosen; k++) chosen = experts[k] == x;
        if (chosen) continue;
        /* a guess this pass does not use is wrong now, not right in some later pass */
        p->predicted[base + x] = 0;
        /* and, if fetched, competes for its slot as any other expert now */
        if (fresh) p->slots[i].fresh = false;
    }
    for (int r = 0; r < n_guess && r < DSI_GUESS_RANKS; r++) {
        bool chosen = false;
        for (int k = 0; k < n && !chosen; k++) chosen = experts[k] == guess[r];
        p->rank_total[r]++;
        p->rank_right[r] += chosen;
    }
    pthread_mutex_unlock(&p->lock);
}

static void *dsi_prefetch_main(void *arg) {
    dsi_pager *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->quit && !p->q_len) {
            /* nothing to fetch: help a fill in progress, if any has chunks left */
            dsi_fill_job *j = NULL;
            for (int i = 0; i < p->n_slots && !j; i++)
                if (p->slots[i].job && dsi_fill_open(p->slots[i].job)) j = p->slots[i].job;
            if (j) dsi_fill_join(p, j, false);   /* the pool is the owner's: this thread alone */
            else pthread_cond_wait(&p->work, &p->lock);
        }
        if (p->quit) break;
        int key = p->queue[p->q_head];
        p->q_head = (p->q_head + 1) % DSI_PREFETCH_QUEUE;
        p->q_len--;
        if (p->where[key] >= 0) continue;   /* arrived meanwhile */
        int v = dsi_pick_victim(p);
        if (v < 0) {
            p->st.prefetch_dropped++;       /* everything is busy: a guess is not worth waiting for */
            continue;
        }
        int layer = key / p->n_experts, expert = key % p->n_experts;
        dsi_claim(p, v, layer, expert, true);
        dsi_touch(p, &p->slots[v], true);
        pthread_mutex_unlock(&p->lock);
        dsi_err e = {0};
        double secs = 0;
        ds_status s = dsi_fill(p, v, layer, expert, &secs, &e);
        const dsi_segment *sg = &p->m->meta.segments[p->m->w.layers[layer].experts[expert].segment];
        pthread_mutex_lock(&p->lock);
        dsi_filled(p, v, s, secs, sg->plain_bytes);
        /* the forward pass that needs the expert reports the failure
         * itself: one warning, then debug lines (a changed file fails them all) */
        if (s) {
            dsi_log(p->m->log, p->m->log_user, p->prefetch_failed ? DS_LOG_DEBUG : DS_LOG_WARN,
                    "prefetch of layer %d expert %d failed: %s%s", layer, expert, e.msg,
                    p->prefetch_failed ? "" : " (later prefetch failures are logged at debug level)");
            p->prefetch_failed = true;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ==== Life cycle ========================================================= */
DSI_FUNC ds_status dsi_pager_new(ds_model *m, uint64_t budget, uint64_t page_cache, ds_prefetch_mode prefetch,
                                 ds_evict_policy policy, dsi_err *e) {
    const ds_model_config *cf = &m->cfg;
    size_t slot = 0;
    for (size_t i = 0; i < m->meta.n_segments; i++)
        if (m->meta.segments[i].kind == DS_SEGMENT_EXPERT && m->meta.segments[i].plain_bytes > slot)
            slot = (size_t)m->meta.segments[i].plain_bytes;
    slot = (slot + 4095) / 4096 * 4096;
    if (!slot) return DS_OK;   /* no routed experts: nothing to page */
    uint64_t n = budget / slot;
    if (n < 2)
        return dsi_fail(e, DS_ERR_INVALID_ARG,
                        "expert cache budget of %llu bytes is too small: one expert needs %zu bytes and the cache "
                        "needs at least 2 slots (%zu bytes)",
                        (unsigned long long)budget, slot, 2 * slot);
    uint64_t total = (uint64_t)cf->n_layers * (uint64_t)cf->n_routed_experts, present = 0;
    for (size_t i = 0; i < m->meta.n_segments; i++) present += m->meta.segments[i].kind == DS_SEGMENT_EXPERT;
    if (n > present) n = present;   /* experts dropped at conversion need no slot */
    dsi_pager *p = dsi_calloc(&m->al, 1, sizeof *p);
    if (!p) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    p->m = m;
    p->slot_bytes = slot;
    p->n_slots = (int)n;
    p->n_experts = cf->n_routed_experts;
    p->policy = policy;
    p->prefetch = prefetch != DS_PREFETCH_OFF;
    /* Decrypting ahead overlaps two things with the forward pass: reading
     * the ciphertext from storage, and decrypting on a CPU the forward pass
     * does not use. With neither (every CPU computes, the ciphertext is in
     * memory) the worker only takes cores from the compute threads, and a
     * wrong guess wastes its work: on 2 CPUs and 2 threads with the file on
     * tmpfs, fetching ahead anyway decoded 13% slower at a 25% budget (Zipf
     * routing) and 23% slower at 12.5% (uniform) than fetching on demand.
     * On CUDA the GPU computes, and the CPUs are free to decrypt. */
    p->only_from_storage =
        prefetch == DS_PREFETCH_AUTO && m->device != DS_DEVICE_CUDA && dsi_num_cpus() <= m->n_threads;
    p->slots = dsi_calloc(&m->al, (size_t)n, sizeof *p->slots);
    p->where = dsi_calloc(&m->al, (size_t)total, sizeof *p->where);
    p->predicted = dsi_calloc(&m->al, (size_t)total, 1);
    p->score = dsi_calloc(&m->al, (size_t)total, sizeof *p->score);
    p->score_at = dsi_calloc(&m->al, (size_t)total, sizeof *p->score_at);
    /* half weight after DSI_LFU_HALF_LIFE tokens of top-k uses in every MoE layer */
    int moe_layers = 0;
    for (int l = 0; l < cf->n_layers; l++) moe_layers += m->w.layers[l].moe;
    int per_layer = cf->n_experts_per_tok > 0 ? cf->n_experts_per_tok : 1;
    double uses = (double)DSI_LFU_HALF_LIFE * (moe_layers > 0 ? moe_layers : 1) * per_layer;
    p->decay = pow(0.5, 1.0 / uses);
    uint64_t pc = page_cache / slot;
    p->pc_cap = (int)(pc < total ? pc : total);
    if (p->pc_cap) p->pc = dsi_calloc(&m->al, (size_t)p->pc_cap, sizeof *p->pc);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->pool_lock, NULL);
    pthread_cond_init(&p->changed, NULL);
    pthread_cond_init(&p->work, NULL);
    m->pager = p;   /* from here dsi_pager_free cleans up */
    if (!p->slots || !p->where || !p->predicted || !p->score || !p->score_at || (p->pc_cap && !p->pc))
        return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < total; i++) p->where[i] = -1;
    for (int i = 0; i < p->n_slots; i++) p->slots[i].layer = p->slots[i].expert = -1;
    /* the slots lie back to back in one mapping in huge pages: a slot may
     * straddle a 2 MiB boundary at no cost, while rounding slots up to 2 MiB
     * would leave fewer of them in the budget */
    ds_status s = dsi_model_alloc(m, &p->mem, (size_t)n * slot, e);
    if (s) return dsi_prefix(e, "expert cache of %d slots", p->n_slots);
    if (m->n_threads > 1 && (s = dsi_pool_new(&p->pool, m->n_threads, &m->al, e))) return s;
    p->st.budget_bytes = budget;
    p->st.slot_bytes = slot;
    p->st.n_slots = p->n_slots;
    if (prefetch) {
        if (pthread_create(&p->thread, NULL, dsi_prefetch_main, p) != 0)
            return dsi_fail(e, DS_ERR_UNSUPPORTED, "cannot start the prefetch thread");
        p->thread_started = true;
    }
    return DS_OK;
}

DSI_FUNC const dsi_secure_buf *dsi_pager_mem(const dsi_pager *p) { return p ? &p->mem : NULL; }

DSI_FUNC void dsi_pager_free(ds_model *m) {
    dsi_pager *p = m->pager;
    if (!p) return;
    if (p->thread_started) {
        pthread_mutex_lock(&p->lock);
        p->quit = true;
        pthread_cond_broadcast(&p->work);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
    }
    dsi_pool_free(p->pool);
    dsi_secure_free(&p->mem);   /* wipes every slot */
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->pool_lock);
    pthread_cond_destroy(&p->changed);
    pthread_cond_destroy(&p->work);
    dsi_free(&m->al, p->slots);
    dsi_free(&m->al, p->where);
    dsi_free(&m->al, p->predicted);
    dsi_free(&m->al, p->score);
    dsi_free(&m->al, p->score_at);
    dsi_free(&m->al, p->pc);
    dsi_free(&m->al, p);
    m->pager = NULL;
}

/* ==== Statistics ========================================================= */
DSI_FUNC void dsi_pager_stats(const ds_model *m, ds_cache_stats *out, bool reset) {
    if (out) memset(out, 0, sizeof *out);
    dsi_pager *p = m->pager;
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    if (out) *out = p->st;
    if (reset) {
        ds_cache_stats keep = p->st;
        memset(&p->st, 0, sizeof p->st);
        p->st.budget_bytes = keep.budget_bytes;
        p->st.slot_bytes = keep.slot_bytes;
        p->st.n_slots = keep.n_slots;
        memset(p->predicted, 0, (size_t)m->cfg.n_layers * (size_t)p->n_experts);
    }
    pthread_mutex_unlock(&p->lock);
}

/* ==== Routed experts, cached or resident ================================= */
DSI_FUNC ds_status dsi_expert_acquire(const ds_model *m, int layer, int x, const uint8_t **base, dsi_err *e) {
    if (m->pager) return dsi_pager_acquire(m->pager, layer, x, base, e);
    const dsi_expert_ref *r = &m->w.layers[layer].experts[x];
    const dsi_secure_buf *b = &m->dense[r->segment];
    if (!b->ptr) return dsi_fail(e, DS_ERR_INTERNAL, "expert %d of layer %d is not resident", x, layer);
    *base = b->ptr;
    return DS_OK;
}

DSI_FUNC void dsi_expert_release(const ds_model *m, int layer, int x) {
    if (m->pager) dsi_pager_release(m->pager, layer, x);
}
