/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_pager_rss.c — the expert pager bounds peak memory.
 *
 * On the "pager" checkpoint (tests/gen/make_checkpoint.py --family pager:
 * 64 routed experts of 0.84 MB in Q8_0 in each of 3 MoE layers, 160 MB of
 * experts against ~6 MB of everything else), converted to an encrypted Q8_0
 * container, a child process opens the model with an expert cache of 1/8 of
 * the routed-expert bytes, decodes 64 greedy tokens after a short prompt and
 * reports its tokens and its peak resident set (VmHWM) through a pipe;
 * another child does the same with every expert resident. Each measurement is
 * a freshly exec'd process (this program with --child): VmHWM is a
 * per-process high-water mark, and a forked child would start with its
 * parent's resident pages (the parent holds 128 MB of ballast to make sure
 * they are not counted).
 *
 *  pager-1.1: the checkpoint converts (Q8_0, AES-256-GCM) and opens
 *  pager-1.2: routed experts >= 100 MB and >= 8x the cache budget
 *  pager-1.3: paged and resident runs give the same 64 greedy tokens
 *  pager-1.4: paged peak RSS, less the RSS the child had before its first
 *             library call, <= dense + budget + KV cache + 64 MiB, where
 *             dense = the DENSE segments' plaintext and KV = n_layers x n_ctx
 *             x (kv_lora_rank + qk_rope_head_dim) x 4 bytes
 *  pager-1.5: the resident run's peak RSS exceeds that bound (the bound can fail)
 *  pager-1.6: the paged run paged: it decrypted more than the budget and evicted
 *  pager-1.7: after the paged run, the page cache holds (mincore) at most two
 *             expert segments' ciphertext: each is dropped once decrypted
 *  pager-1.8: with a page-cache tier of 16 segments (page_cache_bytes), the
 *             same run gives the same tokens and leaves between 8 and 18
 *             segments' ciphertext cached: the most recent ones are kept
 *             (1.7 and 1.8 are skipped where posix_fadvise cannot drop pages,
 *             tmpfs for one)
 *  pager-1.9: huge pages (ds_model_params.huge_pages, on by default in the
 *             runs above): the paged run asked for them on the expert cache
 *             and the resident segments, and the kernel took the advice or
 *             refused it with an errno (ds_model_huge_page_info); in huge
 *             pages at most what was asked. With huge_pages 0 a paged run
 *             gives the same tokens, asks for none, and stays in the bound.
 *             The bound of 1.4 holds with huge pages as without: each
 *             weight buffer is mapped at its own size (page-rounded; only its
 *             start is 2 MiB-aligned), so whole 2 MiB pages can make no more
 *             of it resident than 4 KiB pages can: the cache (<= the budget)
 *             is resident sooner, not larger.
 *  pager-1.10: the open of the paged run leaves the dense segments'
 *             ciphertext out of the page cache: sampled (mincore) after each
 *             segment it decrypts and once the open returns, at most 10% of
 *             it is cached (each window of chunks is dropped once opened), so
 *             under a memory cgroup, where the page cache counts, the open
 *             stays within dense + budget; the resident run's open leaves at
 *             least 90% of it cached (the measure can fail: resident keeps
 *             it). The file is written back (fdatasync) and dropped before
 *             the paged run, so the dense part is cold for both runs. Skipped
 *             on tmpfs.
 *  pager-1.11: the memory plan (ds_model_memory_plan for this context)
 *             holds both runs: paged growth <= resident + context + the
 *             cache's slots + DS_PLAN_SLACK_FIXED, resident growth <=
 *             full_bytes + DS_PLAN_SLACK_FIXED; and the pager made
 *             budget / slot_bytes slots
 *
 * Needs $DS_TESTDATA/pager (skipped when absent). Under AddressSanitizer the
 * memory checks (1.4, 1.5) are skipped: shadow memory is not the library's.
 * The figures are printed as INFO lines.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* mincore */

#include "../deepseek.h"
#include "test.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

/* Whether the library asks the OS to drop pages it has read (posix_fadvise:
 * deepseek_impl/port.h's DSI_HAVE_FADVISE; not in make check-posix's
 * DSI_PORTABLE build, nor where POSIX_FADV_* is missing). */
#if defined(POSIX_FADV_DONTNEED) && !defined(DSI_PORTABLE)
#define LIB_DROPS_PAGES 1
#else
#define LIB_DROPS_PAGES 0
#endif
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#ifndef T_ASAN
#define T_ASAN 0
#endif

#define N_PROMPT 8
#define N_GEN 64
#define N_CTX (N_PROMPT + N_GEN + 8)
#define N_THREADS 2
#define SLACK_BYTES (64ull << 20)   /* scratch, code, libc, thread stacks */

static char tmpdir[] = "/tmp/ds-test-pager-XXXXXX";
static char model_path[600];
static unsigned char key[DS_KEY_BYTES];

/* What a child reports through its pipe. */
typedef struct child_out {
    int ok;
    char msg[512];
    /* the container (conversion child) */
    uint64_t expert_bytes, dense_bytes;
    int n_expert_segments, n_layers, kv_lora_rank, qk_rope_head_dim;
    ds_memory_plan plan;                        /* ds_model_memory_plan for N_CTX, no budget */
    /* a run */
    uint64_t base_kb, open_kb, hwm_kb;
    int32_t tokens[N_GEN];
    ds_cache_stats st;
    double seconds;
    uint64_t cached_expert_bytes, max_stored;   /* page cache after the run (mincore) */
    uint64_t dense_stored;                      /* the dense segments' ciphertext bytes */
    uint64_t dense_cached_peak, dense_cached_open; /* of it in the page cache: the most seen during
                                                      the open (after each segment), after the open */
    int open_samples;                           /* progress calls during the open */
    ds_huge_page_info huge;                     /* after the decode */
} child_out;

static uint64_t g_page_cache;   /* the run's page_cache_bytes (set before forking) */
static int g_no_huge;           /* the run's huge_pages is 0 (set before forking) */

/* Drops the test file from the page cache, so a run starts from a cold file
 * (written back first: dirty pages, as the conversion leaves them, cannot be
 * dropped). */
static void drop_page_cache(void) {
    int fd = open(model_path, O_RDONLY);
    if (fd >= 0) {
        (void)fdatasync(fd);
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* The dense segments' file ranges (the run child reads them with a
 * metadata-only open) and a view of the file for mincore() during the open. */
enum { MAXDENSE = 4096 };
static uint64_t dense_off[MAXDENSE], dense_len[MAXDENSE];
static int n_dense;
static void *probe_map;
static size_t probe_len;
static unsigned char *probe_vec;

/* Bytes of the dense segments' ciphertext in the page cache now. */
static uint64_t cached_dense_bytes(void) {
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t total = 0;
    if (!probe_map || !probe_vec || mincore(probe_map, probe_len, probe_vec) != 0) return 0;
    for (int i = 0; i < n_dense; i++)
        for (uint64_t p = dense_off[i] / (uint64_t)pg; p < (dense_off[i] + dense_len[i] + (uint64_t)pg - 1) / (uint64_t)pg;
             p++)
            if (probe_vec[p] & 1) total += (uint64_t)pg;
    return total;
}

/* The open's progress callback: samples the dense ciphertext cached. */
static int open_progress(void *user, uint64_t done, uint64_t total, uint64_t bytes) {
    (void)done;
    (void)total;
    (void)bytes;
    child_out *o = user;
    uint64_t now = cached_dense_bytes();
    if (now > o->dense_cached_peak) o->dense_cached_peak = now;
    o->open_samples++;
    return 0;
}

/* Reads the dense segments' ranges with a metadata-only open (within the same
 * budget, so its metadata read leaves the page cache as the run's does) and
 * maps the file for mincore(). 1 = ok. */
static int probe_dense(child_out *o, uint64_t budget) {
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.load_weights = 0;
    mp.expert_cache_bytes = budget;
    ds_model *m = NULL;
    if (ds_model_open(&m, model_path, &mp) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "metadata open: %.400s", ds_last_error());
        return 0;
    }
    n_dense = 0;
    for (size_t i = 0; i < ds_model_segment_count(m) && n_dense < MAXDENSE; i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) == DS_OK && si.kind != DS_SEGMENT_EXPERT) {
            dense_off[n_dense] = si.file_offset;
            dense_len[n_dense++] = si.stored_bytes;
            o->dense_stored += si.stored_bytes;
        }
    }
    ds_model_close(m);
    int fd = open(model_path, O_RDONLY);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
        long pg = sysconf(_SC_PAGESIZE);
        probe_len = (size_t)st.st_size;
        void *map = mmap(NULL, probe_len, PROT_READ, MAP_SHARED, fd, 0);
        probe_map = map == MAP_FAILED ? NULL : map;
        probe_vec = malloc((probe_len + (size_t)pg - 1) / (size_t)pg);
    }
    if (fd >= 0) close(fd);
    return 1;
}

/* Bytes of the expert segments' ciphertext in the page cache (mincore). */
static uint64_t cached_expert_bytes(const uint64_t *off, const uint64_t *len, int n) {
    int fd = open(model_path, O_RDONLY);
    if (fd < 0) return 0;
    struct stat st;
    uint64_t total = 0;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        long pg = sysconf(_SC_PAGESIZE);
        size_t pages = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg;
        unsigned char *vec = malloc(pages);
        if (map != MAP_FAILED && vec && mincore(map, (size_t)st.st_size, vec) == 0)
            for (int i = 0; i < n; i++)
                for (uint64_t p = off[i] / (uint64_t)pg; p < (off[i] + len[i] + (uint64_t)pg - 1) / (uint64_t)pg; p++)
                    if (vec[p] & 1) total += (uint64_t)pg;
        free(vec);
        if (map != MAP_FAILED) munmap(map, (size_t)st.st_size);
    }
    close(fd);
    return total;
}

static uint64_t status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t v = 0;
    size_t n = strlen(field);
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = strtoull(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static double mb(uint64_t bytes) { return (double)bytes / 1e6; }

/* ==== Children ============================================================ */

typedef void (*child_fn)(child_out *out, uint64_t budget);

/* What the parent hands a child: which job, and the run's settings (the key
 * goes through the pipe, not the command line). */
typedef struct child_in {
    int job;   /* 0: convert, 1: run */
    uint64_t budget, page_cache;
    int no_huge;
    unsigned char key[DS_KEY_BYTES];
    char dir[sizeof tmpdir], model_path[sizeof model_path];
} child_in;

static void child_convert(child_out *o, uint64_t budget);
static void child_run(child_out *o, uint64_t budget);

static int read_all(int fd, void *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)p + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    return got == n;
}

static int write_all(int fd, const void *p, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, (const char *)p + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    return done == n;
}

/* The child side: `test_pager_rss --child IN OUT` reads its child_in from fd
 * IN, runs the job, writes its child_out to fd OUT. */
static int child_main(int in_fd, int out_fd) {
    child_in ci;
    child_out *o = calloc(1, sizeof *o);
    if (!o || !read_all(in_fd, &ci, sizeof ci)) {
        free(o);
        return 2;
    }
    close(in_fd);
    memcpy(key, ci.key, sizeof key);
    ds_memzero(ci.key, sizeof ci.key);
    memcpy(tmpdir, ci.dir, sizeof tmpdir);
    memcpy(model_path, ci.model_path, sizeof model_path);
    g_page_cache = ci.page_cache;
    g_no_huge = ci.no_huge;
    (ci.job ? child_run : child_convert)(o, ci.budget);
    int ok = write_all(out_fd, o, sizeof *o);
    free(o);
    fflush(stdout);
    ds_memzero(key, sizeof key);
    return ok ? 0 : 2;
}

/* Runs fn in a child that is a fresh exec of this program (not a fork: a
 * forked child starts with its parent's resident pages, and VmHWM is per
 * process), so its peak RSS is its own. Its child_out comes back through a
 * pipe. */
static int in_child(child_fn fn, uint64_t budget, child_out *out) {
    int to[2], from[2];
    memset(out, 0, sizeof *out);
    if (pipe(to) != 0) return 0;
    if (pipe(from) != 0) {
        close(to[0]);
        close(to[1]);
        return 0;
    }
    child_in ci;
    memset(&ci, 0, sizeof ci);
    ci.job = fn == child_run;
    ci.budget = budget;
    ci.page_cache = g_page_cache;
    ci.no_huge = g_no_huge;
    memcpy(ci.key, key, sizeof key);
    memcpy(ci.dir, tmpdir, sizeof ci.dir);
    memcpy(ci.model_path, model_path, sizeof ci.model_path);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        ds_memzero(&ci, sizeof ci);
        return 0;
    }
    if (pid == 0) {
        close(to[1]);
        close(from[0]);
        char a[16], b[16];
        snprintf(a, sizeof a, "%d", to[0]);
        snprintf(b, sizeof b, "%d", from[1]);
        execl("/proc/self/exe", "test_pager_rss", "--child", a, b, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    (void)write_all(to[1], &ci, sizeof ci);
    ds_memzero(&ci, sizeof ci);
    close(to[1]);
    int got = read_all(from[0], out, sizeof *out);
    close(from[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!got) {
        snprintf(out->msg, sizeof out->msg, "the child died (status 0x%x) before reporting", status);
        out->ok = 0;
    }
    return out->ok;
}

/* Converts $DS_TESTDATA/pager and reads the segment table. */
static void child_convert(child_out *o, uint64_t budget) {
    (void)budget;
    char src[600];
    snprintf(src, sizeof src, "%s/pager", getenv("DS_TESTDATA"));
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_Q8_0;
    cp.encrypt = 1;
    cp.key = key;
    cp.key_len = sizeof key;
    if (ds_convert(src, model_path, &cp) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "convert: %.400s", ds_last_error());
        return;
    }
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.load_weights = 0;
    ds_model *m = NULL;
    if (ds_model_open(&m, model_path, &mp) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "open: %.400s", ds_last_error());
        return;
    }
    for (size_t i = 0; i < ds_model_segment_count(m); i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) != DS_OK) continue;
        if (si.kind == DS_SEGMENT_EXPERT) {
            o->expert_bytes += si.plain_bytes;
            o->n_expert_segments++;
        } else {
            o->dense_bytes += si.plain_bytes;
        }
    }
    ds_model_config c;
    ds_memory_plan_params pp = ds_memory_plan_default_params();
    pp.n_ctx = N_CTX;
    if (ds_model_memory_plan(m, &pp, &o->plan) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "plan: %.400s", ds_last_error());
    } else if (ds_model_get_config(m, &c) == DS_OK) {
        o->n_layers = c.n_layers;
        o->kv_lora_rank = c.kv_lora_rank;
        o->qk_rope_head_dim = c.qk_rope_head_dim;
        o->ok = 1;
    } else {
        snprintf(o->msg, sizeof o->msg, "config: %.400s", ds_last_error());
    }
    ds_model_close(m);
}

/* Opens with the budget (0 = resident), prompt, 64 greedy decode steps. */
static void child_run(child_out *o, uint64_t budget) {
    o->base_kb = status_kb("VmRSS");
    if (!probe_dense(o, budget)) return;
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.expert_cache_bytes = budget;
    mp.page_cache_bytes = g_page_cache;
    mp.huge_pages = !g_no_huge;
    mp.n_threads = N_THREADS;
    mp.progress = open_progress;
    mp.progress_user = o;
    ds_model *m = NULL;
    ds_context *c = NULL;
    ds_sampler *s = NULL;
    float *logits = NULL;
    if (ds_model_open(&m, model_path, &mp) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "open: %.400s", ds_last_error());
        return;
    }
    o->open_kb = status_kb("VmRSS");
    o->dense_cached_open = cached_dense_bytes();
    if (probe_map) munmap(probe_map, probe_len);
    probe_map = NULL;
    free(probe_vec);
    probe_vec = NULL;
    ds_model_config cfg;
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = N_CTX;
    ds_sampler_params sp = ds_sampler_default_params();
    sp.temperature = 0;
    if (ds_model_get_config(m, &cfg) != DS_OK || ds_context_new(&c, m, &cp) != DS_OK ||
        ds_sampler_new(&s, &sp) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "setup: %.400s", ds_last_error());
        goto done;
    }
    logits = malloc((size_t)cfg.vocab_size * sizeof *logits);
    if (!logits) {
        snprintf(o->msg, sizeof o->msg, "out of memory");
        goto done;
    }
    int32_t prompt[N_PROMPT] = {0, 72, 101, 108, 111, 44, 300, 411};
    ds_model_cache_stats_reset(m);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (ds_context_eval(c, prompt, N_PROMPT, logits, 0) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "prompt: %.400s", ds_last_error());
        goto done;
    }
    for (int i = 0; i < N_GEN; i++) {
        if (ds_sampler_sample(s, logits, cfg.vocab_size, NULL, 0, &o->tokens[i]) != DS_OK ||
            ds_context_eval(c, &o->tokens[i], 1, logits, 0) != DS_OK) {
            snprintf(o->msg, sizeof o->msg, "decode step %d: %.400s", i, ds_last_error());
            goto done;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    o->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (ds_model_cache_stats(m, &o->st) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "stats: %.400s", ds_last_error());
        goto done;
    }
    o->hwm_kb = status_kb("VmHWM");
    if (ds_model_huge_page_info(m, &o->huge) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "huge page info: %.400s", ds_last_error());
        goto done;
    }
    o->ok = 1;
done:;
    /* where the expert segments are, for the page-cache measure after close */
    enum { MAXSEG = 1024 };
    static uint64_t off[MAXSEG], len[MAXSEG];
    int n = 0;
    for (size_t i = 0; i < ds_model_segment_count(m) && n < MAXSEG; i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT) {
            off[n] = si.file_offset;
            len[n++] = si.stored_bytes;
            if (si.stored_bytes > o->max_stored) o->max_stored = si.stored_bytes;
        }
    }
    free(logits);
    ds_sampler_free(s);
    ds_context_free(c);
    ds_model_close(m);   /* joins the prefetch thread: no fill in flight */
    o->cached_expert_bytes = cached_expert_bytes(off, len, n);
}

/* ==== The test ============================================================ */

static void test_pager_rss(void) {
    const char *td = getenv("DS_TESTDATA");
    char cfg[600];
    struct stat st;
    snprintf(cfg, sizeof cfg, "%s/pager/config.json", td ? td : "");
    if (!td || stat(cfg, &st) != 0) {
        T_SKIP("pager-1", "no $DS_TESTDATA/pager (make_checkpoint.py --family pager $DS_TESTDATA/pager)");
        return;
    }
    if (!mkdtemp(tmpdir)) {
        T_CHECK("pager-1.1", 0, "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(model_path, sizeof model_path, "%s/pager-q8.dsm", tmpdir);
    T_STATUS("pager-1.1", ds_key_generate(key), DS_OK, ds_last_error());

    /* ballast: the parent holds 128 MB of touched memory while the children
     * run, as a program linked with large libraries would (the CUDA build's
     * did). A child's figures must not include it: a forked child would
     * start with these pages resident and fail 1.4 */
    size_t ballast_n = (size_t)128 << 20;
    unsigned char *ballast = malloc(ballast_n);
    if (ballast) memset(ballast, 0xA5, ballast_n);
    printf("INFO pager-1: the parent holds %.1f MB of ballast (VmRSS %.1f MB)\n", ballast ? mb(ballast_n) : 0.0,
           mb(status_kb("VmRSS") * 1024u));

    child_out conv, paged, resident;
    if (!in_child(child_convert, 0, &conv)) {
        T_CHECK("pager-1.1", 0, "%s", conv.msg);
        goto out;
    }
    T_CHECK("pager-1.1", conv.n_expert_segments > 0, "no expert segments");
    uint64_t budget = conv.expert_bytes / 8;
    T_CHECK("pager-1.2", conv.expert_bytes >= 100000000ull, "routed experts hold only %.1f MB", mb(conv.expert_bytes));
    T_CHECK("pager-1.2", conv.expert_bytes >= 8 * budget && budget > 0, "experts %.1f MB vs budget %.1f MB",
            mb(conv.expert_bytes), mb(budget));
    uint64_t kv = (uint64_t)conv.n_layers * N_CTX * (uint64_t)(conv.kv_lora_rank + conv.qk_rope_head_dim) * 4u;
    uint64_t bound = conv.dense_bytes + budget + kv + SLACK_BYTES;
    printf("INFO pager-1: routed experts %.1f MB in %d segments, dense %.1f MB, budget %.1f MB (1/8), KV cache %.3f MB "
           "(%d layers x %d tokens x %d x 4 B), slack %.1f MB: bound %.1f MB\n",
           mb(conv.expert_bytes), conv.n_expert_segments, mb(conv.dense_bytes), mb(budget), mb(kv), conv.n_layers,
           N_CTX, conv.kv_lora_rank + conv.qk_rope_head_dim, mb(SLACK_BYTES), mb(bound));

    /* the conversion's writes left the whole file in the page cache: start
     * each run from a cold file, so 1.7/1.8 see what the runs leave */
    drop_page_cache();
    if (!in_child(child_run, budget, &paged)) {
        T_CHECK("pager-1.3", 0, "paged run: %s", paged.msg);
        goto out;
    }
    if (!in_child(child_run, 0, &resident)) {
        T_CHECK("pager-1.3", 0, "resident run: %s", resident.msg);
        goto out;
    }
    int same = memcmp(paged.tokens, resident.tokens, sizeof paged.tokens) == 0;
    int first = 0;
    while (first < N_GEN && paged.tokens[first] == resident.tokens[first]) first++;
    T_CHECK("pager-1.3", same, "tokens differ from step %d: paged %d, resident %d", first,
            first < N_GEN ? (int)paged.tokens[first] : -1, first < N_GEN ? (int)resident.tokens[first] : -1);

    /* a child's peak over what it had before its first library call (the
     * program, libc and the linked libraries: not the library's memory) */
    uint64_t hwm_p = paged.hwm_kb * 1024u, hwm_r = resident.hwm_kb * 1024u;
    uint64_t grow_p = hwm_p > paged.base_kb * 1024u ? hwm_p - paged.base_kb * 1024u : 0;
    uint64_t grow_r = hwm_r > resident.base_kb * 1024u ? hwm_r - resident.base_kb * 1024u : 0;
    printf("INFO pager-1: paged run: %d slots of %.2f MB, peak RSS %.1f MB (at start %.1f MB, after open %.1f MB), "
           "%d tokens in %.2f s\n",
           paged.st.n_slots, mb(paged.st.slot_bytes), mb(hwm_p), mb(paged.base_kb * 1024u),
           mb(paged.open_kb * 1024u), N_GEN, paged.seconds);
    printf("INFO pager-1: paged run: hits %llu, misses %llu, prefetch hits %llu, wasted %llu, evictions %llu, "
           "%.1f MB decrypted in %.2f s\n",
           (unsigned long long)paged.st.hits, (unsigned long long)paged.st.misses,
           (unsigned long long)paged.st.prefetch_hits, (unsigned long long)paged.st.prefetch_wasted,
           (unsigned long long)paged.st.evictions, mb(paged.st.bytes_decrypted), paged.st.decrypt_seconds);
    printf("INFO pager-1: resident run: peak RSS %.1f MB (at start %.1f MB), %d tokens in %.2f s\n", mb(hwm_r),
           mb(resident.base_kb * 1024u), N_GEN, resident.seconds);
    printf("INFO pager-1: paged growth %.1f MB <= bound %.1f MB < resident growth %.1f MB\n", mb(grow_p), mb(bound),
           mb(grow_r));

    if (T_ASAN) {
        T_SKIP("pager-1.4", "AddressSanitizer build: shadow memory inflates the resident set");
        T_SKIP("pager-1.5", "AddressSanitizer build");
    } else if (!paged.hwm_kb || !resident.hwm_kb) {
        T_SKIP("pager-1.4", "no VmHWM in /proc/self/status");
    } else {
        T_CHECK("pager-1.4", grow_p <= bound,
                "paged peak RSS grew by %.1f MB, more than dense + budget + KV + slack = %.1f MB", mb(grow_p),
                mb(bound));
        T_CHECK("pager-1.5", grow_r > bound, "resident peak RSS grew by %.1f MB, not more than the bound %.1f MB",
                mb(grow_r), mb(bound));
    }
    /* the memory plan's figures against the measurements: its totals,
     * with the fixed part of its slack, hold both runs */
    uint64_t plan_p = conv.plan.resident_bytes + conv.plan.context_bytes +
                      (uint64_t)paged.st.n_slots * paged.st.slot_bytes + DS_PLAN_SLACK_FIXED;
    uint64_t plan_r = conv.plan.full_bytes + DS_PLAN_SLACK_FIXED;
    printf("INFO pager-1.11: plan: resident %.1f MB + context %.1f MB (+ cache %.1f MB | + experts %.1f MB); "
           "growth paged %.1f MB, resident %.1f MB\n",
           mb(conv.plan.resident_bytes), mb(conv.plan.context_bytes),
           mb((uint64_t)paged.st.n_slots * paged.st.slot_bytes), mb(conv.plan.expert_bytes), mb(grow_p), mb(grow_r));
    if (T_ASAN || !paged.hwm_kb || !resident.hwm_kb) {
        T_SKIP("pager-1.11", T_ASAN ? "AddressSanitizer build" : "no VmHWM in /proc/self/status");
    } else {
        T_CHECK("pager-1.11", grow_p <= plan_p && grow_r <= plan_r && (uint64_t)paged.st.n_slots ==
                                  (conv.plan.slot_bytes ? budget / conv.plan.slot_bytes : 0),
                "the plan (resident + context + cache or experts + 64 MiB) does not hold: paged %.1f > %.1f MB, or "
                "resident %.1f > %.1f MB, or %d slots where the plan's slot size gives %llu",
                mb(grow_p), mb(plan_p), mb(grow_r), mb(plan_r), paged.st.n_slots,
                (unsigned long long)(conv.plan.slot_bytes ? budget / conv.plan.slot_bytes : 0));
    }
    T_CHECK("pager-1.6", paged.st.n_slots > 0 && paged.st.bytes_decrypted > budget && paged.st.evictions > 0,
            "the paged run did not page: %d slots, %.1f MB decrypted, %llu evictions", paged.st.n_slots,
            mb(paged.st.bytes_decrypted), (unsigned long long)paged.st.evictions);

    /* the page cache of the sealed file */
    struct statfs sf;
    bool tmpfs = statfs(tmpdir, &sf) == 0 && sf.f_type == 0x01021994;   /* TMPFS_MAGIC */
    child_out tier;
    memset(&tier, 0, sizeof tier);
    g_page_cache = 16 * paged.max_stored;
    drop_page_cache();
    bool tier_ok = in_child(child_run, budget, &tier);
    g_page_cache = 0;
    uint64_t seg = paged.max_stored;
    printf("INFO pager-1: expert ciphertext in the page cache after the run: %.1f MB without a tier, %.1f MB with a "
           "tier of 16 segments (%.1f MB); a segment is %.2f MB\n",
           mb(paged.cached_expert_bytes), mb(tier.cached_expert_bytes), mb(16 * seg), mb(seg));
    printf("INFO pager-1: dense ciphertext %.2f MB in %d samples; in the page cache during the paged open at most "
           "%.2f MB, after it %.2f MB; after the resident open %.2f MB\n",
           mb(paged.dense_stored), paged.open_samples, mb(paged.dense_cached_peak), mb(paged.dense_cached_open),
           mb(resident.dense_cached_open));
    if (tmpfs) {
        T_SKIP("pager-1.10", "the test file is on tmpfs (/tmp): its pages are memory, nothing to drop; run where /tmp is a disk");
    } else if (!LIB_DROPS_PAGES) {
        T_SKIP("pager-1.10", "no posix_fadvise in this build (port.h): the page cache is left to the OS");
    } else {
        T_CHECK("pager-1.10", paged.open_samples > 0 && paged.dense_stored > 0, "%d samples of %.2f MB",
                paged.open_samples, mb(paged.dense_stored));
        T_CHECK("pager-1.10", paged.dense_cached_peak * 10 <= paged.dense_stored,
                "the paged open held %.2f MB of the %.2f MB dense ciphertext in the page cache at once",
                mb(paged.dense_cached_peak), mb(paged.dense_stored));
        T_CHECK("pager-1.10", paged.dense_cached_open * 10 <= paged.dense_stored,
                "after the paged open %.2f MB of the %.2f MB dense ciphertext is in the page cache",
                mb(paged.dense_cached_open), mb(paged.dense_stored));
        /* Another process may empty the page cache while the resident
         * child runs (drop_caches, memory pressure from work beside the
         * suite), which would make the measure look blind: take the most
         * seen during the open or after it, and measure again from a cold
         * file, twice at most, before failing */
        uint64_t res_cached = resident.dense_cached_peak > resident.dense_cached_open ? resident.dense_cached_peak
                                                                                        : resident.dense_cached_open;
        for (int again = 0; again < 2 && res_cached * 10 < resident.dense_stored * 9; again++) {
            child_out r2;
            memset(&r2, 0, sizeof r2);
            drop_page_cache();
            if (!in_child(child_run, 0, &r2)) break;
            uint64_t c2 = r2.dense_cached_peak > r2.dense_cached_open ? r2.dense_cached_peak : r2.dense_cached_open;
            printf("INFO pager-1.10: resident open measured again: %.2f MB cached (was %.2f MB)\n", mb(c2),
                   mb(res_cached));
            if (c2 > res_cached) res_cached = c2;
        }
        T_CHECK("pager-1.10", res_cached * 10 >= resident.dense_stored * 9,
                "during and after the resident open at most %.2f MB of the %.2f MB dense ciphertext was in the page "
                "cache (the measure could not tell the paged open's dropping)",
                mb(res_cached), mb(resident.dense_stored));
    }
    if (!tier_ok) {
        T_CHECK("pager-1.8", 0, "run with a page-cache tier: %s", tier.msg);
    } else if (tmpfs) {
        T_SKIP("pager-1.7", "the test file is on tmpfs: posix_fadvise cannot drop its pages");
        T_SKIP("pager-1.8", "tmpfs");
    } else if (!LIB_DROPS_PAGES) {
        T_SKIP("pager-1.7", "no posix_fadvise in this build (port.h): the page cache is left to the OS");
        T_CHECK("pager-1.8", memcmp(tier.tokens, paged.tokens, sizeof tier.tokens) == 0,
                "tokens differ with a page-cache tier");
    } else {
        T_CHECK("pager-1.7", paged.cached_expert_bytes <= 2 * seg,
                "%.1f MB of expert ciphertext still cached after the run (segment %.2f MB)",
                mb(paged.cached_expert_bytes), mb(seg));
        T_CHECK("pager-1.8", memcmp(tier.tokens, paged.tokens, sizeof tier.tokens) == 0,
                "tokens differ with a page-cache tier");
        T_CHECK("pager-1.8", tier.cached_expert_bytes >= 8 * seg && tier.cached_expert_bytes <= 18 * seg,
                "%.1f MB of expert ciphertext cached with a 16-segment tier (segment %.2f MB)",
                mb(tier.cached_expert_bytes), mb(seg));
    }

    /* huge pages: what the runs above got, and a paged run without */
    const ds_huge_page_info *hp = &paged.huge;
    uint64_t cache = (uint64_t)paged.st.n_slots * paged.st.slot_bytes;
    printf("INFO pager-1: huge pages: paged run asked for %.1f MB, refused %.1f MB (%s), %.1f MB in huge pages after "
           "the decode%s; resident run %.1f MB of %.1f MB\n",
           mb(hp->advised_bytes), mb(hp->refused_bytes), hp->error ? strerror(hp->error) : "no error",
           mb(hp->huge_bytes), hp->measured ? "" : " (smaps unreadable)", mb(resident.huge.huge_bytes),
           mb(resident.huge.advised_bytes));
    T_CHECK("pager-1.9", hp->requested && hp->advised_bytes + hp->refused_bytes >= cache &&
                             (hp->refused_bytes == 0) == (hp->error == 0),
            "paged run: requested %d, advised %.1f MB + refused %.1f MB < cache %.1f MB, or error %d", hp->requested,
            mb(hp->advised_bytes), mb(hp->refused_bytes), mb(cache), hp->error);
    T_CHECK("pager-1.9", hp->huge_bytes <= hp->advised_bytes, "%.1f MB in huge pages, only %.1f MB advised",
            mb(hp->huge_bytes), mb(hp->advised_bytes));
    child_out small;
    g_no_huge = 1;
    bool small_ok = in_child(child_run, budget, &small);
    g_no_huge = 0;
    if (!small_ok) {
        T_CHECK("pager-1.9", 0, "paged run without huge pages: %s", small.msg);
    } else {
        uint64_t hwm_s = small.hwm_kb * 1024u;
        uint64_t grow_s = hwm_s > small.base_kb * 1024u ? hwm_s - small.base_kb * 1024u : 0;
        printf("INFO pager-1: paged run without huge pages: peak RSS %.1f MB, growth %.1f MB (with: %.1f MB), %d "
               "tokens in %.2f s\n",
               mb(hwm_s), mb(grow_s), mb(grow_p), N_GEN, small.seconds);
        T_CHECK("pager-1.9", memcmp(small.tokens, paged.tokens, sizeof small.tokens) == 0,
                "tokens differ without huge pages");
        T_CHECK("pager-1.9", !small.huge.requested && !small.huge.advised_bytes && !small.huge.refused_bytes,
                "huge_pages 0: requested %d, advised %llu, refused %llu", small.huge.requested,
                (unsigned long long)small.huge.advised_bytes, (unsigned long long)small.huge.refused_bytes);
        if (!T_ASAN && small.hwm_kb)
            T_CHECK("pager-1.9", grow_s <= bound, "without huge pages the paged peak RSS grew by %.1f MB > %.1f MB",
                    mb(grow_s), mb(bound));
    }
out:
    free(ballast);
    unlink(model_path);
    rmdir(tmpdir);
    ds_memzero(key, sizeof key);
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--child")) return child_main(atoi(argv[2]), atoi(argv[3]));
    test_pager_rss();
    return t_finish("test_pager_rss");
}
