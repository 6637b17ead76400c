/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_plan.c — ds_model_memory_plan against the file it plans for.
 *
 * Each family's checkpoint ($DS_TESTDATA/{v2lite,v2,v3,moe16b}) is
 * converted to a plaintext Q8_0 container and opened metadata-only:
 *
 *  plan-1.1: the plan is made (load_weights = 0)
 *  plan-1.2: resident and expert bytes are the segment table's plaintext,
 *            each segment page-rounded, summed here independently; the
 *            expert count, the layers with experts, the slot (the largest
 *            expert, page-rounded)
 *  plan-1.3: the default context is min(4096, max_position_embeddings); the
 *            KV bytes per token are n_layers x (kv_lora_rank +
 *            qk_rope_head_dim) x 4 (MLA) or n_layers x 2 x n_kv_heads x
 *            head_dim x 4 (multi-head attention)
 *  plan-1.4: the sums: kv, context, full, least paged
 *  plan-1.5: no budget: the budget fields are zero
 *  plan-1.6: min_mem_bytes fits and one byte less does not, short by one
 *  plan-1.7: a sweep of budgets: cache slots never fall as the budget grows,
 *            the cache is whole MiB, resident + context + slack + cache fits
 *            the budget, hit rate = slots / experts; all resident once
 *            full + slack fits
 *  plan-1.8: a context twice as long costs n_ctx x (KV per token + 4) more
 *  plan-1.9: NULL arguments, n_ctx outside [0, 2^22] and n_seq outside
 *            [0, 256] are DS_ERR_INVALID_ARG
 *  plan-1.10: NULL params plan as {0}; 4 sequences add 3 KV caches, 3 token
 *            histories and 4 rows of logits (ds_context_new's n_seq > 1)
 *  plan-1.11: with an allocator that fails: DS_ERR_NOMEM, nothing leaked
 *  plan-1.12: ds_context_new (n_ctx 512, one thread, 1 and 4 sequences)
 *            allocates, counted through the model's allocator, at least
 *            context_bytes (on a CPU with AVX2 or VNNI kernels; 3/4 of it
 *            elsewhere, which allocates no token-lane tiles) and at most
 *            512 KiB more (per-thread buffers, small arrays)
 *
 * On the pager checkpoint (3 MoE layers of 64 experts of 0.84 MB):
 *
 *  plan-2.1: a budget that pages: fits, an expert cache, not all resident
 *  plan-2.2: opening with expert_cache_bytes = cache_bytes gives a cache of
 *            cache_slots slots of slot_bytes (what pager.c makes of it)
 *  plan-2.3: the least budget's cache opens (two slots); one MiB less is
 *            refused by the pager
 *
 * Needs $DS_TESTDATA (skipped when absent).
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* mkdtemp */

#include "../deepseek.h"
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1ull << 20)

static char tmpdir[] = "/tmp/test_plan.XXXXXX";

static uint64_t page_up(uint64_t n) { return ((n ? n : 1) + 4095) & ~(uint64_t)4095; }
/* Resident segments are held in whole pages of this system (16 or 64 KiB on
 * some ARM kernels); expert slots stay in 4 KiB units (pager.c). */
static uint64_t sys_page_up(uint64_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t page = pg > 0 ? (uint64_t)pg : 4096;
    return ((n ? n : 1) + page - 1) / page * page;
}

/* Converts $DS_TESTDATA/<family> to a plaintext Q8_0 container; 1 = made. */
static int convert(const char *family, char *out, size_t len) {
    char src[600];
    struct stat st;
    snprintf(src, sizeof src, "%s/%s/config.json", getenv("DS_TESTDATA"), family);
    if (stat(src, &st) != 0) return 0;
    snprintf(src, sizeof src, "%s/%s", getenv("DS_TESTDATA"), family);
    snprintf(out, len, "%s/%s.dsm", tmpdir, family);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_Q8_0;
    cp.encrypt = 0;
    ds_status s = ds_convert(src, out, &cp);
    if (s != DS_OK) {
        T_CHECK("plan-0", 0, "convert %s: %s", family, ds_last_error());
        return 0;
    }
    return 1;
}

/* ds_model_memory_plan with n_ctx, one sequence and mem_bytes. */
static ds_status plan(const ds_model *m, int n_ctx, uint64_t mem, ds_memory_plan *out) {
    ds_memory_plan_params pp = ds_memory_plan_default_params();
    pp.n_ctx = n_ctx;
    pp.mem_bytes = mem;
    return ds_model_memory_plan(m, &pp, out);
}

/* An allocator that fails every allocation once armed, and counts the
 * blocks and bytes still allocated (each block's size in a header). */
static int g_fail, g_live;
static uint64_t g_bytes;
#define T_HDR 16
static void *t_malloc(size_t n, void *u) {
    (void)u;
    if (g_fail) return NULL;
    unsigned char *p = malloc(n + T_HDR);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    g_live++;
    g_bytes += n;
    return p + T_HDR;
}
static void t_free(void *p, void *u) {
    (void)u;
    if (!p) return;
    size_t n;
    memcpy(&n, (unsigned char *)p - T_HDR, sizeof n);
    g_live--;
    g_bytes -= n;
    free((unsigned char *)p - T_HDR);
}
static void *t_realloc(void *p, size_t n, void *u) {
    if (g_fail) return NULL;
    void *q = t_malloc(n, u);
    if (q && p) {
        size_t old;
        memcpy(&old, (unsigned char *)p - T_HDR, sizeof old);
        memcpy(q, p, old < n ? old : n);
        t_free(p, u);
    }
    return q;
}

static ds_model *open_model(const char *path, int load, uint64_t cache, ds_status *st) {
    ds_model_params mp = ds_model_default_params();
    mp.allow_plaintext = 1;
    mp.load_weights = load;
    mp.expert_cache_bytes = cache;
    mp.n_threads = 1;
    ds_model *m = NULL;
    *st = ds_model_open(&m, path, &mp);
    return *st == DS_OK ? m : NULL;
}

static void test_family(const char *family) {
    char path[700], id[64];
    if (!convert(family, path, sizeof path)) {
        snprintf(id, sizeof id, "plan-1.%s", family);
        T_SKIP(id, "no checkpoint");
        return;
    }
    ds_status st;
    ds_model *m = open_model(path, 0, 0, &st);
    T_STATUS("plan-1.1 open", st, DS_OK, ds_last_error());
    if (!m) return;
    ds_model_config c;
    (void)!ds_model_get_config(m, &c);
    ds_memory_plan p;
    st = plan(m, 0, 0, &p);
    T_STATUS("plan-1.1", st, DS_OK, ds_last_error());

    /* ---- 1.2: the segment table, summed here ---- */
    uint64_t res = 0, exp = 0, n_exp = 0, slot = 0;
    int layers = 0, seen[4096] = {0};
    for (size_t i = 0; i < ds_model_segment_count(m); i++) {
        ds_segment_info si;
        (void)!ds_model_segment_info(m, i, &si);
        if (si.kind == DS_SEGMENT_EXPERT) {
            exp += page_up(si.plain_bytes);
            n_exp++;
            if (page_up(si.plain_bytes) > slot) slot = page_up(si.plain_bytes);
            if (si.layer >= 0 && si.layer < 4096 && !seen[si.layer]) seen[si.layer] = 1, layers++;
        } else {
            res += sys_page_up(si.plain_bytes);
        }
    }
    T_CHECK("plan-1.2", p.resident_bytes == res && p.expert_bytes == exp && p.n_experts == n_exp &&
                            p.slot_bytes == slot && p.n_expert_layers == layers && n_exp > 0,
            "%s: resident %llu/%llu, experts %llu/%llu, n %llu/%llu, slot %llu/%llu, layers %d/%d", family,
            (unsigned long long)p.resident_bytes, (unsigned long long)res, (unsigned long long)p.expert_bytes,
            (unsigned long long)exp, (unsigned long long)p.n_experts, (unsigned long long)n_exp,
            (unsigned long long)p.slot_bytes, (unsigned long long)slot, p.n_expert_layers, layers);

    /* ---- 1.3: the context's KV cache, from the config ---- */
    int want_ctx = c.max_position_embeddings < 4096 ? c.max_position_embeddings : 4096;
    uint64_t kv_tok = c.arch == DS_ARCH_DEEPSEEK_MOE
                          ? (uint64_t)c.n_layers * 2 * (uint64_t)c.n_kv_heads * (uint64_t)c.head_dim * 4
                          : (uint64_t)c.n_layers * (uint64_t)(c.kv_lora_rank + c.qk_rope_head_dim) * 4;
    T_CHECK("plan-1.3", p.n_ctx == want_ctx && p.kv_bytes_per_token == kv_tok, "%s: n_ctx %d/%d, kv %llu/%llu",
            family, p.n_ctx, want_ctx, (unsigned long long)p.kv_bytes_per_token, (unsigned long long)kv_tok);

    /* ---- 1.4: the sums ---- */
    T_CHECK("plan-1.4", p.kv_bytes == kv_tok * (uint64_t)p.n_ctx && p.context_bytes == p.kv_bytes + p.scratch_bytes &&
                            p.scratch_bytes > 0 && p.full_bytes == res + exp + p.context_bytes &&
                            p.min_paged_bytes == res + p.context_bytes + 2 * slot,
            "%s: kv %llu, ctx %llu, scratch %llu, full %llu, least paged %llu", family,
            (unsigned long long)p.kv_bytes, (unsigned long long)p.context_bytes,
            (unsigned long long)p.scratch_bytes, (unsigned long long)p.full_bytes,
            (unsigned long long)p.min_paged_bytes);

    /* ---- 1.5: no budget ---- */
    T_CHECK("plan-1.5", !p.mem_bytes && !p.slack_bytes && !p.fits && !p.all_resident && !p.cache_bytes &&
                            !p.cache_slots && !p.shortfall_bytes && p.min_mem_bytes > p.resident_bytes,
            "%s: budget fields set without a budget", family);

    /* ---- 1.6: the least budget ---- */
    ds_memory_plan q, r;
    (void)!plan(m, 0, p.min_mem_bytes, &q);
    (void)!plan(m, 0, p.min_mem_bytes - 1, &r);
    T_CHECK("plan-1.6", q.fits && !r.fits && r.shortfall_bytes == 1 && !q.shortfall_bytes,
            "%s: at the least budget fits %d; a byte less fits %d, short %llu", family, q.fits, r.fits,
            (unsigned long long)r.shortfall_bytes);

    /* ---- 1.7: a sweep ---- */
    uint64_t last_slots = 0;
    int bad = 0, saw_paged = 0, saw_all = 0;
    for (uint64_t mem = p.min_mem_bytes; mem < p.full_bytes * 2 + (256ull << 20) && !bad; mem += mem / 16 + 4096) {
        ds_memory_plan b;
        if (plan(m, 0, mem, &b) != DS_OK || !b.fits || b.mem_bytes != mem ||
            b.slack_bytes != DS_PLAN_SLACK_FIXED + mem / DS_PLAN_SLACK_DIV || b.cache_slots < last_slots)
            bad = 1;
        else if (b.all_resident)
            bad = b.full_bytes + b.slack_bytes > mem || b.cache_bytes || b.cache_slots != n_exp || b.hit_rate != 1.0,
            saw_all = 1;
        else
            bad = b.cache_bytes % MIB || b.cache_slots < 2 || b.cache_slots * slot > b.cache_bytes ||
                  res + b.context_bytes + b.slack_bytes + b.cache_bytes > mem ||
                  b.hit_rate != (double)b.cache_slots / (double)n_exp || b.full_bytes + b.slack_bytes <= mem,
            saw_paged = 1;
        if (bad) {
            T_CHECK("plan-1.7", 0, "%s: budget %llu: fits %d, all %d, cache %llu, slots %llu, slack %llu", family,
                    (unsigned long long)mem, b.fits, b.all_resident, (unsigned long long)b.cache_bytes,
                    (unsigned long long)b.cache_slots, (unsigned long long)b.slack_bytes);
        }
        last_slots = b.cache_slots;
    }
    if (!bad) T_CHECK("plan-1.7", saw_all, "%s: the sweep never reached all resident (paged seen %d)", family, saw_paged);

    /* ---- 1.8: twice the context ---- */
    ds_memory_plan a512, a1024;
    (void)!plan(m, 512, 0, &a512);
    (void)!plan(m, 1024, 0, &a1024);
    T_CHECK("plan-1.8", a1024.context_bytes - a512.context_bytes == 512 * (kv_tok + 4) && a512.n_ctx == 512,
            "%s: 512 -> 1024 tokens adds %llu bytes, want %llu", family,
            (unsigned long long)(a1024.context_bytes - a512.context_bytes), (unsigned long long)(512 * (kv_tok + 4)));

    /* ---- 1.9: bad arguments ---- */
    T_STATUS("plan-1.9a", plan(NULL, 0, 0, &q), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("plan-1.9b", plan(m, 0, 0, NULL), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("plan-1.9c", plan(m, -1, 0, &q), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("plan-1.9d", plan(m, (1 << 22) + 1, 0, &q), DS_ERR_INVALID_ARG, ds_last_error());
    ds_memory_plan_params pp = ds_memory_plan_default_params();
    pp.n_seq = -1;
    T_STATUS("plan-1.9e", ds_model_memory_plan(m, &pp, &q), DS_ERR_INVALID_ARG, ds_last_error());
    pp.n_seq = 257;
    T_STATUS("plan-1.9f", ds_model_memory_plan(m, &pp, &q), DS_ERR_INVALID_ARG, ds_last_error());

    /* ---- 1.10: NULL params are the defaults; sequences ---- */
    ds_memory_plan d0, d4;
    T_STATUS("plan-1.10a", ds_model_memory_plan(m, NULL, &d0), DS_OK, ds_last_error());
    pp.n_seq = 4;
    T_STATUS("plan-1.10b", ds_model_memory_plan(m, &pp, &d4), DS_OK, ds_last_error());
    uint64_t n = (uint64_t)d0.n_ctx, extra = 3 * n * kv_tok + 3 * n * 4 + 4 * (uint64_t)c.vocab_size * 4;
    T_CHECK("plan-1.10", !memcmp(&d0, &p, sizeof d0) && d0.n_seq == 1 && d4.n_seq == 4 &&
                             d4.kv_bytes == 4 * d0.kv_bytes && d4.context_bytes - d0.context_bytes == extra &&
                             d4.full_bytes - d0.full_bytes == extra,
            "%s: NULL params differ from {0} (%d), or 4 sequences add %llu bytes, want %llu", family,
            memcmp(&d0, &p, sizeof d0) != 0, (unsigned long long)(d4.context_bytes - d0.context_bytes),
            (unsigned long long)extra);
    ds_model_close(m);

    /* ---- 1.11: out of memory: an error, nothing leaked ---- */
    ds_model_params mp = ds_model_default_params();
    mp.allow_plaintext = 1;
    mp.load_weights = 0;
    mp.allocator = (ds_allocator){t_malloc, t_realloc, t_free, NULL};
    g_live = g_fail = 0;
    m = NULL;
    st = ds_model_open(&m, path, &mp);
    T_STATUS("plan-1.11 open", st, DS_OK, ds_last_error());
    if (m) {
        int live = g_live;
        g_fail = 1;
        st = ds_model_memory_plan(m, NULL, &q);
        g_fail = 0;
        T_CHECK("plan-1.11", st == DS_ERR_NOMEM && g_live == live && q.resident_bytes == 0,
                "%s: status %d, %d allocations more", family, (int)st, g_live - live);
        ds_model_close(m);
        T_CHECK("plan-1.11 close", g_live == 0, "%s: %d allocations left after close", family, g_live);
    }

    /* ---- 1.12: what ds_context_new allocates, counted ---- */
    mp.load_weights = 1;
    mp.n_threads = 1;
    m = NULL;
    st = ds_model_open(&m, path, &mp);
    T_STATUS("plan-1.12 open", st, DS_OK, ds_last_error());
    for (int ns = 1; m && ns <= 4; ns += 3) {
        ds_memory_plan_params pq = ds_memory_plan_default_params();
        pq.n_ctx = 512;
        pq.n_seq = ns;
        (void)!ds_model_memory_plan(m, &pq, &q);
        ds_context_params cp = ds_context_default_params();
        cp.n_ctx = 512;
        cp.n_seq = ns;
        cp.n_threads = 1;
        uint64_t before = g_bytes;
        ds_context *cx = NULL;
        st = ds_context_new(&cx, m, &cp);
        uint64_t used = g_bytes - before;
        ds_context_free(cx);
        printf("INFO plan-1.12 %s: a context of %d x 512 tokens allocates %llu bytes, the plan says %llu\n", family,
               ns, (unsigned long long)used, (unsigned long long)q.context_bytes);
        /* the plan leaves out per-thread buffers and small arrays (up to
         * 512 KiB here) and counts the token-lane tiles a CPU without AVX2
         * or I8MM does not allocate */
        const char *dev = ds_model_device_name(m);
        int lanes = dev && (strstr(dev, "avx2") || strstr(dev, "vnni") || strstr(dev, "i8mm"));
        uint64_t low = lanes ? q.context_bytes : q.context_bytes - q.context_bytes / 4;
        T_CHECK("plan-1.12", st == DS_OK && used >= low && used <= q.context_bytes + (512u << 10),
                "%s: %d sequences: status %d, allocated %llu bytes, plan %llu", family, ns, (int)st,
                (unsigned long long)used, (unsigned long long)q.context_bytes);
    }
    ds_model_close(m);
    unlink(path);
}

static void test_pager(void) {
    char path[700];
    if (!convert("pager", path, sizeof path)) {
        T_SKIP("plan-2", "no pager checkpoint");
        return;
    }
    ds_status st;
    ds_model *m = open_model(path, 0, 0, &st);
    T_STATUS("plan-2.0", st, DS_OK, ds_last_error());
    if (!m) return;
    ds_memory_plan p, lo;
    (void)!plan(m, 512, 0, &p);
    uint64_t mem = p.min_mem_bytes + p.expert_bytes / 8;   /* about an eighth of the experts */
    (void)!plan(m, 512, mem, &p);
    (void)!plan(m, 512, p.min_mem_bytes, &lo);
    ds_model_close(m);
    T_CHECK("plan-2.1", p.fits && !p.all_resident && p.cache_slots >= 2 && p.cache_slots < p.n_experts,
            "budget %llu: fits %d, all %d, slots %llu of %llu", (unsigned long long)mem, p.fits, p.all_resident,
            (unsigned long long)p.cache_slots, (unsigned long long)p.n_experts);

    m = open_model(path, 1, p.cache_bytes, &st);
    T_STATUS("plan-2.2 open", st, DS_OK, ds_last_error());
    if (m) {
        ds_cache_stats cs;
        (void)!ds_model_cache_stats(m, &cs);
        T_CHECK("plan-2.2", (uint64_t)cs.n_slots == p.cache_slots && cs.slot_bytes == p.slot_bytes,
                "the pager made %d slots of %llu bytes of %llu bytes; the plan said %llu of %llu", cs.n_slots,
                (unsigned long long)cs.slot_bytes, (unsigned long long)p.cache_bytes,
                (unsigned long long)p.cache_slots, (unsigned long long)p.slot_bytes);
        ds_model_close(m);
    }

    T_CHECK("plan-2.3a", lo.fits && !lo.all_resident && lo.cache_slots >= 2, "least budget: fits %d, slots %llu",
            lo.fits, (unsigned long long)lo.cache_slots);
    m = open_model(path, 1, lo.cache_bytes, &st);
    T_STATUS("plan-2.3b", st, DS_OK, ds_last_error());
    ds_model_close(m);
    m = open_model(path, 1, lo.cache_bytes - MIB, &st);
    T_STATUS("plan-2.3c", st, DS_ERR_INVALID_ARG, ds_last_error());
    ds_model_close(m);
    unlink(path);
}

int main(void) {
    if (!getenv("DS_TESTDATA")) {
        T_SKIP("plan", "no $DS_TESTDATA");
        return t_finish("test_plan");
    }
    if (!mkdtemp(tmpdir)) {
        T_CHECK("plan-0", 0, "mkdtemp failed");
        return t_finish("test_plan");
    }
    static const char *const families[] = {"v2lite", "v2", "v3", "moe16b"};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) test_family(families[i]);
    test_pager();
    rmdir(tmpdir);
    return t_finish("test_plan");
}
