/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_open_io.c — models opened from an app's descriptor (ds_model_open_fd)
 * and from an app's read callback (ds_model_open_io).
 *
 * The model is v2lite Q8_0 sealed in 4 KiB chunks (two or more per expert),
 * run resident and paged (an expert cache of 2 slots, so experts are read
 * and decrypted over and over; prefetch on, so the pager's thread reads
 * too). The reference is ds_model_open of the path: 12 greedy tokens after
 * a 3-token prompt.
 *
 *  oio-1: ds_model_open_fd on a plain descriptor and on a memfd: the same
 *         tokens resident and paged; the file position is not moved; the
 *         app's descriptor is still open and reads the file after
 *         ds_model_close; the app may close its descriptor right after the
 *         open (the model reads through its duplicate); verify works.
 *  oio-2: ds_model_open_io from the bytes in memory: the same tokens
 *         resident and paged; paged, the release callback is called (never
 *         resident); ds_model_verify with 4 threads calls the callback from
 *         two threads at once (its first read waits, at most 10 s, for a
 *         second to start); the source's name is in the log.
 *  oio-3: short reads (at most 1000 bytes per call): the same tokens.
 *  oio-4: failing reads: 4.1 at an offset inside the metadata and 4.2
 *         inside a dense segment: the open fails with DS_ERR_IO naming the
 *         source, what was read and the callback's error; 4.3 inside every
 *         expert segment while paging: the generation fails with DS_ERR_IO
 *         naming the source and the segment, the context goes on once reads
 *         work again, and the model closes; 4.4 a callback returning -1,
 *         4.5 one returning more than asked, 4.6 one returning the end of
 *         the data early (DS_ERR_TRUNCATED).
 *  oio-5: bytes of another container served for the expert segments (the
 *         same checkpoint sealed again: 5.1 paged, 5.2 resident), and the
 *         file's own bytes at a shifted offset (5.3): DS_ERR_AUTH, as for a
 *         tampered file.
 *  oio-6: bad arguments: NULL out, io or read_at, size 0, a size other
 *         than the container's; a negative descriptor, a closed one, a
 *         write-only one, a directory, a pipe; a zeroed ds_model_params
 *         (named with ds_model_open_io).
 *  oio-7: each allocation of a paged ds_model_open_io (7.1) and
 *         ds_model_open_fd (7.2) fails in turn: DS_ERR_NOMEM with a
 *         message, nothing left allocated, no descriptor left open.
 *  oio-8: a LoRA adapter (tests/ref/lora/v2lite_experts, routed experts
 *         included) converted against a base opened with ds_model_open_io
 *         and applied over it (paged): the tokens of the same adapter over
 *         the same file opened by path, and not the base's.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"
#include "fail_alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-open-io-XXXXXX";
static const unsigned char test_key[32] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

#define N_GEN 12
static const int32_t prompt[3] = {1, 17, 42};

static ds_status convert_sealed(const char *family, const char *out) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", testdata, family);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_Q8_0;
    cp.encrypt = 1;
    cp.key = test_key;
    cp.key_len = 32;
    cp.chunk_bytes = 4096;
    return ds_convert(dir, out, &cp);
}

static uint8_t *read_all(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    uint8_t *b = NULL;
    if (fd >= 0 && fstat(fd, &st) == 0 && (b = malloc((size_t)st.st_size)) &&
        pread(fd, b, (size_t)st.st_size, 0) == (ssize_t)st.st_size) {
        *len = (size_t)st.st_size;
    } else {
        free(b);
        b = NULL;
    }
    if (fd >= 0) close(fd);
    return b;
}

/* ==== The model's layout ================================================== */
static uint64_t slot;                 /* the expert cache's slot: the largest expert, in pages */
static size_t n_seg;
static ds_segment_info *segs;
static uint32_t chunk_bytes;

static int learn_layout(const char *path) {
    ds_model_params mp = ds_model_default_params();
    mp.key = test_key;
    mp.key_len = 32;
    mp.load_weights = 0;
    ds_model *m = NULL;
    ds_file_info fi;
    if (ds_model_open(&m, path, &mp) != DS_OK || ds_file_info_read(path, &fi) != DS_OK) return 0;
    chunk_bytes = fi.chunk_bytes;
    n_seg = ds_model_segment_count(m);
    segs = calloc(n_seg, sizeof *segs);
    for (size_t i = 0; segs && i < n_seg; i++) {
        if (ds_model_segment_info(m, i, &segs[i]) != DS_OK) return 0;
        if (segs[i].kind == DS_SEGMENT_EXPERT && segs[i].plain_bytes > slot) slot = segs[i].plain_bytes;
    }
    slot = (slot + 4095) / 4096 * 4096;
    ds_model_close(m);
    return segs != NULL;
}

static ds_model_params params(int paged) {
    ds_model_params mp = ds_model_default_params();
    mp.key = test_key;
    mp.key_len = 32;
    mp.n_threads = 2;
    mp.expert_cache_bytes = paged ? 2 * slot : 0;
    mp.prefetch = DS_PREFETCH_ALWAYS;
    return mp;
}

/* ==== Greedy generation =================================================== */
typedef struct gen_out {
    int32_t tok[N_GEN];
    int n;
} gen_out;

static int on_token(void *user, int32_t token, const char *piece, size_t len) {
    (void)piece;
    (void)len;
    gen_out *g = user;
    if (token >= 0 && g->n < N_GEN) g->tok[g->n++] = token;
    return 0;
}

/* N_GEN greedy tokens after the prompt on a fresh context (with adapter a
 * at scale 1 when not NULL); msg gets the error message. */
static ds_status greedy_with(ds_model *m, ds_adapter *a, gen_out *g, char *msg, size_t ml) {
    memset(g, 0, sizeof *g);
    msg[0] = 0;
    ds_context *c = NULL;
    ds_sampler *s = NULL;
    ds_sampler_params sp = ds_sampler_default_params();
    sp.temperature = 0;
    const float one = 1;
    ds_status st = ds_context_new(&c, m, NULL);
    if (!st && a) st = ds_context_set_adapters(c, &a, &one, 1);
    if (!st) st = ds_sampler_new(&s, &sp);
    if (!st) {
        ds_generate_params gp = ds_generate_default_params();
        gp.max_tokens = N_GEN;
        gp.ignore_eos = 1;
        gp.on_token = on_token;
        gp.user = g;
        st = ds_generate_tokens(c, s, prompt, 3, &gp, NULL);
    }
    if (st) snprintf(msg, ml, "%s", ds_last_error());
    ds_sampler_free(s);
    ds_context_free(c);
    return st;
}

static ds_status greedy(ds_model *m, gen_out *g, char *msg, size_t ml) { return greedy_with(m, NULL, g, msg, ml); }

static gen_out ref;

/* Whether m gives the reference tokens; id names the case. */
static void check_tokens(const char *id, ds_model *m) {
    gen_out g;
    char msg[1024];
    ds_status s = greedy(m, &g, msg, sizeof msg);
    T_CHECK(id, s == DS_OK && g.n == N_GEN && memcmp(g.tok, ref.tok, sizeof ref.tok) == 0,
            "generate: %s (%s); %d tokens, %s the reference", ds_status_string(s), msg, g.n,
            s == DS_OK && memcmp(g.tok, ref.tok, sizeof ref.tok) == 0 ? "same as" : "not");
}

/* Whether a paged model read and decrypted experts as it went. */
static int paged_through(const ds_model *m) {
    ds_cache_stats st;
    return ds_model_cache_stats(m, &st) == DS_OK && st.n_slots == 2 && st.bytes_decrypted > 0 && st.evictions > 0;
}

/* ==== 1: ds_model_open_fd ================================================= */
static void test_fd_kind(const char *id, int fd, const uint8_t *bytes) {
    char cid[48];
    for (int paged = 0; paged < 2; paged++) {
        snprintf(cid, sizeof cid, "%s.%s", id, paged ? "paged" : "resident");
        (void)lseek(fd, 123, SEEK_SET);
        ds_model_params mp = params(paged);
        ds_model *m = NULL;
        ds_status s = ds_model_open_fd(&m, fd, &mp);
        T_STATUS(cid, s, DS_OK, ds_last_error());
        if (s) continue;
        check_tokens(cid, m);
        if (paged) T_CHECK(cid, paged_through(m), "the expert cache did not page");
        T_CHECK(cid, lseek(fd, 0, SEEK_CUR) == 123, "the file position moved");
        if (!paged) T_STATUS(cid, ds_model_verify(m, 2, NULL, NULL), DS_OK, ds_model_errmsg(m));
        T_STATUS(cid, ds_model_close(m), DS_OK, ds_last_error());
        /* the app's descriptor is still open and reads the file */
        uint8_t head[64];
        T_CHECK(cid, fcntl(fd, F_GETFD) >= 0 && pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head &&
                         memcmp(head, bytes, sizeof head) == 0,
                "the descriptor is closed or reads other bytes after ds_model_close");
    }
    /* the app closes its descriptor right after the open: the model reads
     * through its own duplicate */
    snprintf(cid, sizeof cid, "%s.closed", id);
    int mine = dup(fd);
    ds_model_params mp = params(1);
    ds_model *m = NULL;
    ds_status s = mine < 0 ? DS_ERR_IO : ds_model_open_fd(&m, mine, &mp);
    if (mine >= 0) close(mine);
    T_STATUS(cid, s, DS_OK, ds_last_error());
    if (!s) {
        check_tokens(cid, m);
        T_CHECK(cid, paged_through(m), "the expert cache did not page");
        ds_model_close(m);
    }
}

static void test_fd(const char *path, const uint8_t *bytes, size_t len) {
    int fd = open(path, O_RDONLY);
    T_CHECK("oio-1.0", fd >= 0, "open %s: %s", path, strerror(errno));
    if (fd >= 0) {
        test_fd_kind("oio-1.1", fd, bytes);
        close(fd);
    }
    int mfd = memfd_create("ds-test-model", MFD_CLOEXEC);
    size_t done = 0;
    while (mfd >= 0 && done < len) {
        ssize_t w = write(mfd, bytes + done, len - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    T_CHECK("oio-1.2", mfd >= 0 && done == len, "memfd: %s", strerror(errno));
    if (mfd >= 0 && done == len) test_fd_kind("oio-1.2", mfd, bytes);
    if (mfd >= 0) close(mfd);
}

/* ==== The callback source ================================================= */
/* The container's bytes in memory, served by read_at, with faults on ask. */
typedef struct mem_src {
    const uint8_t *bytes;
    size_t len;
    size_t max_read;              /* 0 = no cap: a read returns what was asked */
    /* faults: a read covering any of fail_at[] returns fail_ret */
    uint64_t fail_at[1024];
    size_t n_fail;
    int64_t fail_ret;
    int failing;                  /* atomic: faults on */
    int failed;                   /* atomic: a fault happened */
    /* substitution: reads inside [sub_lo[k], sub_hi[k]) come from sub (when
     * set) or from bytes at offset + shift */
    const uint8_t *sub;
    int64_t shift;
    uint64_t sub_lo[1024], sub_hi[1024];
    size_t n_sub;
    /* counters */
    uint64_t reads, releases, released_bytes;   /* atomic */
    pthread_mutex_t lock;
    pthread_t threads[16];
    int n_threads;
    /* rendezvous: a read waits (at most 10 s) until a second is in flight,
     * so that concurrent calls happen whatever the scheduler does */
    pthread_cond_t cond;
    int rendezvous, inflight, max_inflight;   /* under lock */
} mem_src;

static void note_thread(mem_src *s) {
    pthread_t me = pthread_self();
    pthread_mutex_lock(&s->lock);
    int seen = 0;
    for (int i = 0; i < s->n_threads && !seen; i++) seen = pthread_equal(s->threads[i], me);
    if (!seen && s->n_threads < 16) s->threads[s->n_threads++] = me;
    pthread_mutex_unlock(&s->lock);
}

/* Whether off is where a segment starts: the first read of one of its
 * chunks (verify reads the padding between segments on one thread first). */
static int segment_start(uint64_t off) {
    for (size_t i = 0; i < n_seg; i++)
        if (segs[i].file_offset == off) return 1;
    return 0;
}

/* Enters a read: counts it in flight and, in a rendezvous, the first read of
 * a segment waits for a second read. */
static void enter_read(mem_src *s, uint64_t off) {
    pthread_mutex_lock(&s->lock);
    if (++s->inflight > s->max_inflight) s->max_inflight = s->inflight;
    if (s->rendezvous && segment_start(off)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        while (s->rendezvous && s->inflight < 2)
            if (pthread_cond_timedwait(&s->cond, &s->lock, &until) != 0) break;
        s->rendezvous = 0;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

static void leave_read(mem_src *s) {
    pthread_mutex_lock(&s->lock);
    s->inflight--;
    pthread_mutex_unlock(&s->lock);
}

static int64_t mem_read_at_inner(mem_src *s, void *buf, size_t n, uint64_t off);
static int64_t mem_read_at(void *user, void *buf, size_t n, uint64_t off) {
    mem_src *s = user;
    enter_read(s, off);
    int64_t r = mem_read_at_inner(s, buf, n, off);
    leave_read(s);
    return r;
}

static int64_t mem_read_at_inner(mem_src *s, void *buf, size_t n, uint64_t off) {
    __atomic_fetch_add(&s->reads, 1, __ATOMIC_RELAXED);
    note_thread(s);
    if (off > s->len) return -EINVAL;
    if (s->max_read && n > s->max_read) n = s->max_read;
    if (n > s->len - off) n = (size_t)(s->len - off);
    if (__atomic_load_n(&s->failing, __ATOMIC_ACQUIRE))
        for (size_t k = 0; k < s->n_fail; k++)
            if (s->fail_at[k] >= off && s->fail_at[k] < off + n) {
                __atomic_store_n(&s->failed, 1, __ATOMIC_RELEASE);
                /* INT64_MAX stands for "more bytes than asked for" */
                return s->fail_ret == INT64_MAX ? (int64_t)n + 1 : s->fail_ret;
            }
    memcpy(buf, s->bytes + off, n);
    for (size_t k = 0; k < s->n_sub; k++) {
        /* the part of [off, off + n) inside substituted range k */
        uint64_t a = off > s->sub_lo[k] ? off : s->sub_lo[k];
        uint64_t b = off + n < s->sub_hi[k] ? off + n : s->sub_hi[k];
        if (a >= b) continue;
        const uint8_t *from = s->sub ? s->sub + a : s->bytes + (uint64_t)((int64_t)a + s->shift);
        memcpy((uint8_t *)buf + (a - off), from, (size_t)(b - a));
    }
    return (int64_t)n;
}

static void mem_release(void *user, uint64_t off, uint64_t len) {
    mem_src *s = user;
    note_thread(s);
    __atomic_fetch_add(&s->releases, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->released_bytes, len, __ATOMIC_RELAXED);
    (void)off;
}

static void mem_init(mem_src *s, const uint8_t *bytes, size_t len) {
    memset(s, 0, sizeof *s);
    s->bytes = bytes;
    s->len = len;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void mem_done(mem_src *s) {
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
}

static ds_model_io mem_io(mem_src *s, const char *name) {
    ds_model_io io = {0};
    io.size = s->len;
    io.read_at = mem_read_at;
    io.release = mem_release;
    io.user = s;
    io.name = name;
    return io;
}

static char log_seen[512];
static void log_cb(void *user, ds_log_level lvl, const char *msg) {
    (void)user;
    if (lvl == DS_LOG_INFO && strstr(msg, "opened ") && !log_seen[0]) snprintf(log_seen, sizeof log_seen, "%s", msg);
}

/* ==== 2, 3: the same tokens through the callback ========================== */
static void test_io_same(const char *id, const uint8_t *bytes, size_t len, size_t max_read) {
    char cid[48];
    for (int paged = 0; paged < 2; paged++) {
        snprintf(cid, sizeof cid, "%s.%s", id, paged ? "paged" : "resident");
        mem_src src;
        mem_init(&src, bytes, len);
        src.max_read = max_read;
        ds_model_io io = mem_io(&src, paged ? "bundle:model.dsm" : NULL);
        ds_model_params mp = params(paged);
        mp.log = log_cb;
        log_seen[0] = 0;
        ds_model *m = NULL;
        ds_status s = ds_model_open_io(&m, &io, &mp);
        memset(&io, 0xA5, sizeof io);   /* the struct is copied: the model must not need it */
        T_STATUS(cid, s, DS_OK, ds_last_error());
        if (s) {
            mem_done(&src);
            continue;
        }
        T_CHECK(cid, strstr(log_seen, paged ? "opened bundle:model.dsm" : "opened <io>") != NULL,
                "the log does not name the source: %s", log_seen);
        uint64_t rel0 = __atomic_load_n(&src.releases, __ATOMIC_RELAXED);
        check_tokens(cid, m);
        uint64_t rel = __atomic_load_n(&src.releases, __ATOMIC_RELAXED) - rel0;
        if (paged) {
            T_CHECK(cid, paged_through(m) && rel > 0, "paged %d, %llu release calls", paged_through(m),
                    (unsigned long long)rel);
            printf("INFO %s: %llu reads, %llu release calls (%llu bytes), reads on %d threads\n", cid,
                   (unsigned long long)src.reads, (unsigned long long)rel, (unsigned long long)src.released_bytes,
                   src.n_threads);
        } else {
            T_CHECK(cid, rel == 0, "%llu release calls for a resident model", (unsigned long long)rel);
            /* verify: four threads read through the callback; the first
             * read waits for a second to be in flight */
            pthread_mutex_lock(&src.lock);
            src.rendezvous = 1;
            src.max_inflight = 0;
            pthread_mutex_unlock(&src.lock);
            T_STATUS(cid, ds_model_verify(m, 4, NULL, NULL), DS_OK, ds_model_errmsg(m));
            T_CHECK(cid, src.n_threads >= 2 && src.max_inflight >= 2,
                    "reads on %d thread(s), at most %d at once", src.n_threads, src.max_inflight);
        }
        T_STATUS(cid, ds_model_close(m), DS_OK, ds_last_error());
        mem_done(&src);
    }
}

/* ==== 4: failing reads ==================================================== */
/* Whether msg names the source and segment i as "segment N (...)". */
static int names_segment(const char *msg, const char *src, size_t i, const ds_model *m) {
    char name[64], want[96];
    ds_model_segment_name(m, i, name, sizeof name);
    snprintf(want, sizeof want, "segment %zu (%s)", i, name);
    return strstr(msg, src) && strstr(msg, want);
}

/* The segment a message names ("segment N"), or -1. */
static long named_segment(const char *msg) {
    const char *p = strstr(msg, "segment ");
    return p ? strtol(p + 8, NULL, 10) : -1;
}

static ds_model *meta_model;   /* a metadata-only open, for segment names */

static void test_io_fail_open(const uint8_t *bytes, size_t len) {
    mem_src src;
    ds_model_params mp = params(0);
    ds_model *m = NULL;
    ds_file_info fi;
    int have_fi = 0;
    {
        /* the metadata's offset, from the header */
        char p[600];
        snprintf(p, sizeof p, "%s/model.dsm", tmpdir);
        have_fi = ds_file_info_read(p, &fi) == DS_OK;
    }
    /* 4.1: inside the metadata */
    mem_init(&src, bytes, len);
    src.fail_at[src.n_fail++] = have_fi ? fi.meta_offset + 10 : 0;
    src.fail_ret = -EIO;
    src.failing = 1;
    ds_model_io io = mem_io(&src, "bundle:model.dsm");
    ds_status s = ds_model_open_io(&m, &io, &mp);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ds_last_error());
    T_CHECK("oio-4.1", have_fi && s == DS_ERR_IO && !m && src.failed && strstr(msg, "bundle:model.dsm:") == msg &&
                           strstr(msg, "the metadata") && strstr(msg, "Input/output error"),
            "open: %s: %s", ds_status_string(s), msg);
    printf("INFO oio-4.1: %s\n", msg);
    ds_model_close(m);
    m = NULL;
    mem_done(&src);

    /* 4.2: inside the first dense segment of two chunks or more */
    mem_init(&src, bytes, len);
    size_t dense = n_seg;
    for (size_t i = 0; i < n_seg && dense == n_seg; i++)
        if (segs[i].kind != DS_SEGMENT_EXPERT && segs[i].n_chunks >= 2) dense = i;
    src.fail_at[src.n_fail++] = dense < n_seg ? segs[dense].file_offset + chunk_bytes + DSI_TAG_BYTES + 100 : 0;
    src.fail_ret = -EIO;
    src.failing = 1;
    io = mem_io(&src, NULL);
    s = ds_model_open_io(&m, &io, &mp);
    snprintf(msg, sizeof msg, "%s", ds_last_error());
    T_CHECK("oio-4.2", dense < n_seg && s == DS_ERR_IO && !m && src.failed && strstr(msg, "<io>:") == msg &&
                           names_segment(msg, "<io>", dense, meta_model) && strstr(msg, "offset"),
            "open: %s: %s", ds_status_string(s), msg);
    printf("INFO oio-4.2: %s\n", msg);
    ds_model_close(m);
    mem_done(&src);
}

/* 4.3 to 4.6: faults inside every expert segment's second chunk while
 * paging; ret is what the callback returns there (0: the end of the data;
 * > n: more than asked). */
static void test_io_fail_paged(const char *id, const uint8_t *bytes, size_t len, int64_t ret, ds_status want,
                               const char *text) {
    mem_src src;
    mem_init(&src, bytes, len);
    for (size_t i = 0; i < n_seg && src.n_fail < 1024; i++)
        if (segs[i].kind == DS_SEGMENT_EXPERT && segs[i].n_chunks >= 2)
            src.fail_at[src.n_fail++] = segs[i].file_offset + chunk_bytes + DSI_TAG_BYTES + 100;
    src.fail_ret = ret;
    ds_model_io io = mem_io(&src, "bundle:model.dsm");
    ds_model_params mp = params(1);
    ds_model *m = NULL;
    ds_status s = ds_model_open_io(&m, &io, &mp);
    T_STATUS(id, s, DS_OK, ds_last_error());
    if (s) {
        mem_done(&src);
        return;
    }
    __atomic_store_n(&src.failing, 1, __ATOMIC_RELEASE);
    gen_out g;
    char msg[1024];
    s = greedy(m, &g, msg, sizeof msg);
    __atomic_store_n(&src.failing, 0, __ATOMIC_RELEASE);
    long seg = named_segment(msg);
    T_CHECK(id, s == want, "status %s, want %s: %s", ds_status_string(s), ds_status_string(want), msg);
    T_CHECK(id, src.failed && seg >= 0 && (size_t)seg < n_seg && segs[seg].kind == DS_SEGMENT_EXPERT &&
                    names_segment(msg, "bundle:model.dsm", (size_t)seg, meta_model) && strstr(msg, "offset") &&
                    strstr(msg, text),
            "the message does not name the source, an expert segment, the offset and \"%s\": %s", text, msg);
    printf("INFO %s: %s\n", id, msg);
    /* reads work again: the model goes on */
    check_tokens(id, m);
    T_STATUS(id, ds_model_close(m), DS_OK, ds_last_error());
    mem_done(&src);
}

/* ==== 5: other bytes ====================================================== */
static void test_io_substitute(const char *id, const uint8_t *bytes, size_t len, const uint8_t *other, int64_t shift,
                               int paged) {
    mem_src src;
    mem_init(&src, bytes, len);
    src.sub = other;
    src.shift = shift;
    for (size_t i = 0; i < n_seg && src.n_sub < 1024; i++) {
        if (segs[i].kind != DS_SEGMENT_EXPERT) continue;
        /* the shifted bytes must lie inside the file */
        if (!other && (int64_t)segs[i].file_offset + shift + (int64_t)segs[i].stored_bytes > (int64_t)len) continue;
        src.sub_lo[src.n_sub] = segs[i].file_offset;
        src.sub_hi[src.n_sub++] = segs[i].file_offset + segs[i].stored_bytes;
    }
    ds_model_io io = mem_io(&src, NULL);
    ds_model_params mp = params(paged);
    ds_model *m = NULL;
    ds_status s = ds_model_open_io(&m, &io, &mp);
    char msg[1024];
    if (paged) {
        T_STATUS(id, s, DS_OK, ds_last_error());
        if (!s) {
            gen_out g;
            s = greedy(m, &g, msg, sizeof msg);
        }
    } else {
        snprintf(msg, sizeof msg, "%s", ds_last_error());
    }
    long seg = named_segment(msg);
    T_CHECK(id, s == DS_ERR_AUTH, "status %s, want DS_ERR_AUTH: %s", ds_status_string(s), msg);
    T_CHECK(id, src.n_sub > 0 && seg >= 0 && (size_t)seg < n_seg && segs[seg].kind == DS_SEGMENT_EXPERT &&
                    names_segment(msg, "<io>", (size_t)seg, meta_model),
            "the message does not name the source and an expert segment: %s", msg);
    printf("INFO %s: %s\n", id, msg);
    ds_model_close(m);
    mem_done(&src);
}

/* ==== 6: bad arguments ==================================================== */
static void expect_fail(const char *id, ds_status s, ds_model *m, ds_status want, const char *text) {
    const char *msg = ds_last_error();
    T_CHECK(id, s == want && m == NULL && strstr(msg, text), "%s (want %s), model %p: %s", ds_status_string(s),
            ds_status_string(want), (void *)m, msg);
    if (s == DS_OK) ds_model_close(m);
}

static void test_bad_args(const char *path, const uint8_t *bytes, size_t len) {
    mem_src src;
    mem_init(&src, bytes, len);
    ds_model_io io = mem_io(&src, NULL);
    ds_model_params mp = params(0);
    ds_model *m = (ds_model *)&src;   /* set to NULL on failure */
    ds_status s = ds_model_open_io(NULL, &io, &mp);
    T_CHECK("oio-6.1", s == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "out"), "%s", ds_last_error());
    s = ds_model_open_io(&m, NULL, &mp);
    expect_fail("oio-6.2", s, m, DS_ERR_INVALID_ARG, "io must not be NULL");
    io.read_at = NULL;
    m = (ds_model *)&src;
    s = ds_model_open_io(&m, &io, &mp);
    expect_fail("oio-6.3", s, m, DS_ERR_INVALID_ARG, "read_at");
    io = mem_io(&src, NULL);
    io.size = 0;
    s = ds_model_open_io(&m, &io, &mp);
    expect_fail("oio-6.4", s, m, DS_ERR_INVALID_ARG, "size is 0");
    /* a size other than the container's: short (truncated) or long */
    io = mem_io(&src, NULL);
    io.size = len - 1;
    src.len = len - 1;
    s = ds_model_open_io(&m, &io, &mp);
    expect_fail("oio-6.5", s, m, DS_ERR_TRUNCATED, "<io>: truncated: the source has");
    uint8_t *longer = calloc(len + 4096, 1);
    if (longer) {
        memcpy(longer, bytes, len);
        src.bytes = longer;
        src.len = len + 4096;
        io.size = len + 4096;
        s = ds_model_open_io(&m, &io, &mp);
        expect_fail("oio-6.6", s, m, DS_ERR_CORRUPT, "unexpected bytes after the end");
    }
    free(longer);
    /* params not made by ds_model_default_params(): named with the function */
    ds_model_params zero;
    memset(&zero, 0, sizeof zero);
    io = mem_io(&src, NULL);
    src.bytes = bytes;
    src.len = len;
    io.size = len;
    s = ds_model_open_io(&m, &io, &zero);
    expect_fail("oio-6.13", s, m, DS_ERR_INVALID_ARG, "ds_model_open_io: params were not made");
    mem_done(&src);

    /* descriptors */
    s = ds_model_open_fd(NULL, 0, &mp);
    T_CHECK("oio-6.7", s == DS_ERR_INVALID_ARG, "%s", ds_last_error());
    m = (ds_model *)&src;
    s = ds_model_open_fd(&m, -1, &mp);
    expect_fail("oio-6.8", s, m, DS_ERR_INVALID_ARG, "fd is negative");
    int fd = open(path, O_RDONLY);
    if (fd >= 0) close(fd);   /* a descriptor number that is not open now */
    s = ds_model_open_fd(&m, fd, &mp);
    char want[64];
    snprintf(want, sizeof want, "<fd %d>: not an open descriptor", fd);
    expect_fail("oio-6.9", s, m, DS_ERR_INVALID_ARG, want);
    char wpath[600];
    snprintf(wpath, sizeof wpath, "%s/write-only.dsm", tmpdir);
    int wfd = open(wpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (wfd >= 0 && write(wfd, bytes, len) == (ssize_t)len) {
        s = ds_model_open_fd(&m, wfd, &mp);
        expect_fail("oio-6.10", s, m, DS_ERR_IO, "not open for reading");
    } else {
        T_CHECK("oio-6.10", 0, "cannot write %s", wpath);
    }
    if (wfd >= 0) close(wfd);
    unlink(wpath);
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY);
    s = ds_model_open_fd(&m, dfd, &mp);
    expect_fail("oio-6.11", s, m, DS_ERR_IO, "a directory");
    if (dfd >= 0) close(dfd);
    int pfd[2];
    if (pipe(pfd) == 0) {
        s = ds_model_open_fd(&m, pfd[0], &mp);
        expect_fail("oio-6.12", s, m, DS_ERR_IO, "a FIFO");
        close(pfd[0]);
        close(pfd[1]);
    }
}

/* ==== 8: a LoRA adapter over a callback source ============================ */
static void test_adapter(const char *path, const uint8_t *bytes, size_t len) {
    const char *goldens = getenv("DS_LORA_GOLDENS");
    char peft[600], dsa[600], probe[700];
    snprintf(peft, sizeof peft, "%s/v2lite_experts", goldens ? goldens : "tests/ref/lora");
    snprintf(probe, sizeof probe, "%s/adapter_config.json", peft);
    if (access(probe, R_OK) != 0) {
        T_SKIP("oio-8", "no tests/ref/lora/v2lite_experts (run from the repository root)");
        return;
    }
    snprintf(dsa, sizeof dsa, "%s/experts.dsa", tmpdir);
    mem_src src;
    mem_init(&src, bytes, len);
    ds_model_io io = mem_io(&src, NULL);
    ds_model_params mp = params(1);
    ds_model *mi = NULL, *mf = NULL;
    ds_adapter *ai = NULL, *af = NULL;
    ds_convert_lora_params lp = ds_convert_lora_default_params();
    lp.key = test_key;
    lp.key_len = 32;
    lp.overwrite = 1;
    ds_adapter_params ap = ds_adapter_default_params();
    ap.key = test_key;
    ap.key_len = 32;
    /* converted against the callback-opened base, applied over it and over
     * the same file opened by path: the same tokens */
    ds_status s = ds_model_open_io(&mi, &io, &mp);
    if (!s) s = ds_convert_lora(peft, mi, dsa, &lp);
    if (!s) s = ds_adapter_open(&ai, mi, dsa, &ap);
    if (!s) s = ds_model_open(&mf, path, &mp);
    if (!s) s = ds_adapter_open(&af, mf, dsa, &ap);
    T_STATUS("oio-8", s, DS_OK, ds_last_error());
    if (!s) {
        gen_out gi, gf;
        char msg[1024];
        ds_status si = greedy_with(mi, ai, &gi, msg, sizeof msg), sf = greedy_with(mf, af, &gf, msg, sizeof msg);
        T_CHECK("oio-8", si == DS_OK && sf == DS_OK && gi.n == N_GEN && memcmp(gi.tok, gf.tok, sizeof gi.tok) == 0,
                "with the adapter: %s / %s (%s), tokens %s", ds_status_string(si), ds_status_string(sf), msg,
                memcmp(gi.tok, gf.tok, sizeof gi.tok) == 0 ? "same" : "differ");
        T_CHECK("oio-8", memcmp(gi.tok, ref.tok, sizeof gi.tok) != 0, "the adapter changed no token");
    }
    ds_adapter_close(ai);
    ds_adapter_close(af);
    ds_model_close(mi);
    ds_model_close(mf);
    unlink(dsa);
    mem_done(&src);
}

/* ==== 7: allocation failures ============================================== */

static int open_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 1024; fd++) n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

/* Every allocation of an open in turn fails: DS_ERR_NOMEM, nothing left
 * allocated, no descriptor left open (the duplicate of an fd source). */
static void test_alloc_fail(const char *id, int use_fd, const char *path, const uint8_t *bytes, size_t len) {
    mem_src src;
    mem_init(&src, bytes, len);
    ds_model_io io = mem_io(&src, NULL);
    int fd = use_fd ? open(path, O_RDONLY) : -1;
    ds_model_params mp = params(1);
    ds_allocator failing = {f_malloc, f_realloc, f_free, NULL};
    mp.allocator = failing;
    int fds0 = open_fds();
    long runs = 0, bad = 0, leaks = 0;
    char first[600] = "";
    for (fail_at = 0; fail_at < 100000; fail_at++) {
        count = live = 0;
        ds_model *m = NULL;
        ds_status s = use_fd ? ds_model_open_fd(&m, fd, &mp) : ds_model_open_io(&m, &io, &mp);
        runs++;
        if (s == DS_OK) {
            ds_model_close(m);
            if (live || open_fds() != fds0) leaks++;
            break;
        }
        if (live || open_fds() != fds0) leaks++;
        if ((s != DS_ERR_NOMEM || m != NULL || !*ds_last_error()) && !bad++)
            snprintf(first, sizeof first, "N=%ld: status %d: %s", fail_at, s, ds_last_error());
    }
    fail_at = -1;
    T_CHECK(id, bad == 0 && leaks == 0 && runs > 10 && fail_at < 100000,
            "%ld runs: %ld misreported (first %s), %ld leaked memory or a descriptor", runs, bad, first, leaks);
    if (fd >= 0) close(fd);
    mem_done(&src);
}

int main(void) {
    testdata = getenv("DS_TESTDATA");
    if (!testdata) testdata = "build/testdata";
    if (!mkdtemp(tmpdir)) {
        T_CHECK("oio-0", 0, "mkdtemp: %s", strerror(errno));
        return t_finish("test_open_io");
    }
    char path[600], other_path[600];
    snprintf(path, sizeof path, "%s/model.dsm", tmpdir);
    snprintf(other_path, sizeof other_path, "%s/other.dsm", tmpdir);
    ds_status s = convert_sealed("v2lite", path);
    T_STATUS("oio-0", s, DS_OK, ds_last_error());
    if (!s) s = convert_sealed("v2lite", other_path);
    size_t len = 0, olen = 0;
    uint8_t *bytes = s ? NULL : read_all(path, &len), *other = s ? NULL : read_all(other_path, &olen);
    T_CHECK("oio-0", bytes && other && olen == len, "cannot read the sealed files (or they differ in size)");
    if (bytes && other && olen == len && learn_layout(path)) {
        ds_model_params mp = params(0);
        ds_model *m = NULL;
        char msg[1024];
        mp.load_weights = 0;
        T_STATUS("oio-0", ds_model_open(&meta_model, path, &mp), DS_OK, ds_last_error());
        /* the reference: the path, resident; paged gives the same */
        mp = params(0);
        s = ds_model_open(&m, path, &mp);
        if (!s) s = greedy(m, &ref, msg, sizeof msg);
        ds_model_close(m);
        T_CHECK("oio-0", s == DS_OK && ref.n == N_GEN, "reference: %s", s ? ds_last_error() : "too few tokens");
        m = NULL;
        mp = params(1);
        if (!s && ds_model_open(&m, path, &mp) == DS_OK) check_tokens("oio-0.paged", m);
        ds_model_close(m);

        test_fd(path, bytes, len);
        test_io_same("oio-2", bytes, len, 0);
        test_io_same("oio-3", bytes, len, 1000);
        test_io_fail_open(bytes, len);
        test_io_fail_paged("oio-4.3", bytes, len, -EIO, DS_ERR_IO, "Input/output error");
        test_io_fail_paged("oio-4.4", bytes, len, -1, DS_ERR_IO, "the read callback failed (it returned -1)");
        test_io_fail_paged("oio-4.5", bytes, len, INT64_MAX, DS_ERR_IO, "bytes for a read of");
        test_io_fail_paged("oio-4.6", bytes, len, 0, DS_ERR_TRUNCATED, "the end of the data");
        test_io_substitute("oio-5.1", bytes, len, other, 0, 1);
        test_io_substitute("oio-5.2", bytes, len, other, 0, 0);
        test_io_substitute("oio-5.3", bytes, len, NULL, (int64_t)chunk_bytes + DSI_TAG_BYTES, 1);
        test_bad_args(path, bytes, len);
        test_alloc_fail("oio-7.1", 0, path, bytes, len);
        test_adapter(path, bytes, len);
        test_alloc_fail("oio-7.2", 1, path, bytes, len);
        ds_model_close(meta_model);
    } else {
        T_CHECK("oio-0", 0, "cannot learn the model's layout: %s", ds_last_error());
    }
    free(bytes);
    free(other);
    free(segs);
    unlink(path);
    unlink(other_path);
    rmdir(tmpdir);
    return t_finish("test_open_io");
}
