/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_io.c — reads of the model file that fail, and locked memory.
 *
 * The model file is read with preadv() through a hook a test can set
 * (dsi_file_read_hook): it fails the read that covers a chosen offset (EIO)
 * or cuts it short there. Models are v2lite Q8_0 sealed in 4 KiB chunks
 * (two or more per expert) and, when $DS_TESTDATA/pager exists, the pager
 * family (experts of 0.84 MB) for the truncation; paged with an expert cache
 * of 2 slots, so every token misses (it uses more experts than there are
 * slots). Cases that could kill the process (a file truncated under a
 * mapping is SIGBUS) run in a forked child; a child killed by a signal is a
 * failure, not the end of the suite.
 *
 *  io-1: EIO in the middle of an expert (the second chunk of every expert
 *        segment fails): ds_context_eval returns DS_ERR_IO, the message
 *        names the file and the segment the failed offset is in ("segment
 *        N (layer L expert E)"), nothing is appended (n_past unchanged);
 *        with the hook off, the next eval of the same tokens works and gives
 *        the logits a second context gave before (the context is usable).
 *        1.4: an EIO while opening a resident model (a dense segment) fails
 *        the open with the file and segment named.
 *  io-2: the same with a short read in the middle of an expert:
 *        DS_ERR_TRUNCATED, file and segment named, the context usable after.
 *  io-3: a real temp copy truncated under a live context (to the offset of
 *        the first expert segment; dense weights are in memory): the next
 *        eval fails with DS_ERR_TRUNCATED and a message naming the file,
 *        the segment and "truncated", instead of SIGBUS; with the bytes
 *        written back, the context evaluates again, with the logits of
 *        before. 3.v: ds_model_verify of a metadata-only open of a file
 *        truncated after the open is an error, not SIGBUS. Each runs on
 *        v2lite and, when present, the pager family.
 *  io-4: the file rewritten in place (same inode, same size, other bytes,
 *        as cp does) under a live context: DS_ERR_AUTH, and the message
 *        says the model file changed since it was opened.
 *  io-5: ds_model_params.mlock: 5.1 with the process's limits, a paged
 *        model's keys, dense weights and expert cache are locked
 *        (ds_model_mlock_info: locked bytes > 0, none refused; VmLck in
 *        /proc/self/status at least that; the key buffer locked), an INFO
 *        line says so; 5.2 with RLIMIT_MEMLOCK at 4 KiB (and CAP_IPC_LOCK
 *        dropped, for root) the open still works, refused bytes > 0 with
 *        errno ENOMEM or EPERM, and a DS_LOG_WARN line says how many bytes
 *        could not be locked and why; 5.3 without mlock nothing is locked.
 *        (5.1 and 5.2 are skipped under AddressSanitizer, whose mlock does
 *        nothing.)
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-io-XXXXXX";
static const unsigned char test_key[32] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

static ds_status convert_sealed(const char *family, uint32_t chunk_bytes, const char *out) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", testdata, family);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_Q8_0;
    cp.encrypt = 1;
    cp.key = test_key;
    cp.key_len = 32;
    cp.chunk_bytes = chunk_bytes;
    return ds_convert(dir, out, &cp);
}

/* The expert cache's slot: the largest expert segment, in pages. */
static uint64_t slot_bytes(const char *path) {
    ds_model_params mp = ds_model_default_params();
    mp.key = test_key;
    mp.key_len = 32;
    mp.load_weights = 0;
    ds_model *m = NULL;
    if (ds_model_open(&m, path, &mp) != DS_OK) return 0;
    uint64_t slot = 0;
    for (size_t i = 0; i < ds_model_segment_count(m); i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT && si.plain_bytes > slot)
            slot = si.plain_bytes;
    }
    ds_model_close(m);
    return (slot + 4095) / 4096 * 4096;
}

/* A model with an expert cache of two slots (no prefetch when off). */
static ds_model *open_paged(const char *path, int prefetch) {
    ds_model_params mp = ds_model_default_params();
    mp.key = test_key;
    mp.key_len = 32;
    mp.n_threads = 2;
    mp.expert_cache_bytes = 2 * slot_bytes(path);
    mp.prefetch = prefetch ? DS_PREFETCH_ALWAYS : DS_PREFETCH_OFF;
    ds_model *m = NULL;
    if (ds_model_open(&m, path, &mp) != DS_OK) {
        printf("open %s: %s\n", path, ds_last_error());
        return NULL;
    }
    return m;
}

/* The segment whose stored bytes hold file offset off, or -1. */
static long segment_at(const ds_model *m, uint64_t off) {
    for (size_t i = 0; i < ds_model_segment_count(m); i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) == DS_OK && off >= si.file_offset && off < si.file_offset + si.stored_bytes)
            return (long)i;
    }
    return -1;
}

/* Whether msg names the path and segment seg as "segment N (layer L expert E)". */
static int names_segment(const ds_model *m, const char *msg, const char *path, long seg) {
    if (seg < 0 || !strstr(msg, path)) return 0;
    char name[64], want[96];
    ds_model_segment_name(m, (size_t)seg, name, sizeof name);
    snprintf(want, sizeof want, "segment %ld (%s)", seg, name);
    return strstr(msg, want) != NULL;
}

/* ==== The fault hook ===================================================== */
/* The offsets to fail: one inside every expert segment's second chunk (the
 * middle of the expert), or one dense segment's. */
enum { HOOK_EIO = 1, HOOK_SHORT = 2 };
static int hook_mode;
static uint64_t *targets;
static int *target_hit;                        /* the hook failed a read at targets[k] */
static size_t n_targets;

static size_t iov_total(const struct iovec *iov, int n) {
    size_t t = 0;
    for (int i = 0; i < n; i++) t += iov[i].iov_len;
    return t;
}

static ssize_t fault_hook(int fd, const struct iovec *iov, int n, off_t off) {
    uint64_t a = (uint64_t)off, b = a + iov_total(iov, n);
    for (size_t k = 0; k < n_targets; k++) {
        uint64_t t = targets[k];
        if (t < a || t >= b) continue;
        __atomic_store_n(&target_hit[k], 1, __ATOMIC_SEQ_CST);
        if (hook_mode == HOOK_EIO) {
            errno = EIO;
            return -1;
        }
        /* short: the bytes before t, then (asked again at t) the end of the file */
        if (t == a) return 0;
        struct iovec cut[8];
        int m = 0;
        size_t left = (size_t)(t - a);
        for (int i = 0; i < n && i < 8 && left; i++) {
            cut[m] = iov[i];
            if (cut[m].iov_len > left) cut[m].iov_len = left;
            left -= cut[m].iov_len;
            m++;
        }
        return preadv(fd, cut, m, off);
    }
    return preadv(fd, iov, n, off);
}

/* Targets in the second chunk of every expert segment (kind EXPERT) or of
 * the first dense segment with two chunks (kind DENSE). */
static void set_targets(const ds_model *m, int expert) {
    free(targets);
    free(target_hit);
    targets = calloc(ds_model_segment_count(m) + 1, sizeof *targets);
    target_hit = calloc(ds_model_segment_count(m) + 1, sizeof *target_hit);
    n_targets = 0;
    ds_file_info fi;
    uint32_t cb = 0;
    if (ds_file_info_read(m->path, &fi) == DS_OK) cb = fi.chunk_bytes;
    for (size_t i = 0; targets && target_hit && i < ds_model_segment_count(m); i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) != DS_OK || si.n_chunks < 2) continue;
        if ((si.kind == DS_SEGMENT_EXPERT) != expert) continue;
        targets[n_targets++] = si.file_offset + cb + DSI_TAG_BYTES + 100;   /* inside chunk 1 */
        if (!expert) break;
    }
}

/* The segment a message names ("segment N"), if the hook failed a read in
 * it; else -1. */
static long failed_segment(const ds_model *m, const char *msg) {
    const char *p = strstr(msg, "segment ");
    long seg = p ? strtol(p + 8, NULL, 10) : -1;
    for (size_t k = 0; seg >= 0 && k < n_targets; k++)
        if (__atomic_load_n(&target_hit[k], __ATOMIC_SEQ_CST) && segment_at(m, targets[k]) == seg) return seg;
    return -1;
}

/* ==== 1, 2: EIO and short reads in the middle of an expert =============== */
static void test_fault(const char *path, int mode) {
    const char *id = mode == HOOK_EIO ? "io-1" : "io-2";
    ds_status want = mode == HOOK_EIO ? DS_ERR_IO : DS_ERR_TRUNCATED;
    char cid[32];
    ds_model *m = open_paged(path, 1);
    T_CHECK(id, m != NULL, "open failed");
    if (!m) return;
    ds_context *c = NULL, *ref = NULL;
    T_STATUS(id, ds_context_new(&c, m, NULL), DS_OK, ds_last_error());
    T_STATUS(id, ds_context_new(&ref, m, NULL), DS_OK, ds_last_error());
    int V = 512;
    float *lg_ref = calloc((size_t)V, sizeof(float)), *lg = calloc((size_t)V, sizeof(float));
    const int32_t first[3] = {1, 17, 42}, next[4] = {5, 99, 300, 7};
    /* the reference: the same tokens on another context, before any fault */
    if (c && ref && lg && lg_ref) {
        T_STATUS(id, ds_context_eval(ref, first, 3, NULL, 0), DS_OK, ds_context_errmsg(ref));
        T_STATUS(id, ds_context_eval(ref, next, 4, lg_ref, 0), DS_OK, ds_context_errmsg(ref));
        T_STATUS(id, ds_context_eval(c, first, 3, NULL, 0), DS_OK, ds_context_errmsg(c));
        set_targets(m, 1);
        hook_mode = mode;
        __atomic_store_n(&dsi_file_read_hook, fault_hook, __ATOMIC_RELEASE);
        ds_status s = ds_context_eval(c, next, 4, lg, 0);
        __atomic_store_n(&dsi_file_read_hook, NULL, __ATOMIC_RELEASE);
        const char *msg = ds_context_errmsg(c);
        snprintf(cid, sizeof cid, "%s.1", id);
        T_STATUS(cid, s, want, msg);
        long seg = failed_segment(m, msg);
        snprintf(cid, sizeof cid, "%s.2", id);
        T_CHECK(cid, names_segment(m, msg, path, seg) && ds_context_n_past(c) == 3,
                "message does not name %s and a segment the hook failed (%ld), or n_past %d != 3: %s", path, seg, ds_context_n_past(c),
                msg);
        printf("INFO %s: %s\n", id, msg);
        /* the context goes on once the file reads again */
        s = ds_context_eval(c, next, 4, lg, 0);
        snprintf(cid, sizeof cid, "%s.3", id);
        T_CHECK(cid, s == DS_OK && memcmp(lg, lg_ref, (size_t)V * sizeof(float)) == 0,
                "after the fault: %s (%s); logits %s the reference", ds_status_string(s), ds_context_errmsg(c),
                s == DS_OK ? "differ from" : "not compared with");
    }
    free(lg);
    free(lg_ref);
    ds_context_free(c);
    ds_context_free(ref);
    ds_model_close(m);

    if (mode != HOOK_EIO) return;
    /* 1.4: opening a resident model, a dense segment's read fails */
    ds_model_params mp = ds_model_default_params();
    mp.key = test_key;
    mp.key_len = 32;
    mp.load_weights = 0;
    ds_model *meta = NULL;
    if (ds_model_open(&meta, path, &mp) != DS_OK) {
        T_CHECK("io-1.4", 0, "metadata open: %s", ds_last_error());
        return;
    }
    set_targets(meta, 0);
    hook_mode = HOOK_EIO;
    mp.load_weights = 1;
    __atomic_store_n(&dsi_file_read_hook, fault_hook, __ATOMIC_RELEASE);
    ds_model *m2 = NULL;
    ds_status s = ds_model_open(&m2, path, &mp);
    __atomic_store_n(&dsi_file_read_hook, NULL, __ATOMIC_RELEASE);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ds_last_error());
    long seg = failed_segment(meta, msg);
    T_CHECK("io-1.4", s == DS_ERR_IO && m2 == NULL && n_targets == 1 && names_segment(meta, msg, path, seg),
            "open: %s, want an I/O error naming %s and segment %ld: %s", ds_status_string(s), path, seg, msg);
    ds_model_close(m2);
    ds_model_close(meta);
}

/* ==== Forked cases ======================================================== */
typedef struct child_out {
    int done;                     /* the child got to the end */
    ds_status s;                  /* the failing eval's status */
    int named, n_past_kept, resumed, same_logits;
    char msg[1024];
    /* io-5 */
    int opened, limited, key_locked;
    ds_mlock_info info;
    uint64_t vmlck;
    char log[1024];
} child_out;

/* Runs fn(arg, out) in a child; a child killed by a signal fails id. */
static int run_forked(const char *id, void (*fn)(const void *, child_out *), const void *arg, child_out *out) {
    int fds[2];
    memset(out, 0, sizeof *out);
    if (pipe(fds) != 0) {
        T_CHECK(id, 0, "pipe: %s", strerror(errno));
        return 0;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        child_out o;
        memset(&o, 0, sizeof o);
        fn(arg, &o);
        o.done = 1;
        ssize_t w = write(fds[1], &o, sizeof o);
        _exit(w == (ssize_t)sizeof o ? 0 : 3);
    }
    close(fds[1]);
    size_t got = 0;
    while (pid > 0 && got < sizeof *out) {
        ssize_t r = read(fds[0], (char *)out + got, sizeof *out - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fds[0]);
    int st = 0;
    if (pid > 0) waitpid(pid, &st, 0);
    if (pid < 0 || WIFSIGNALED(st) || got != sizeof *out || !out->done) {
        T_CHECK(id, 0, "the child %s%s", pid < 0 ? "could not start" : WIFSIGNALED(st) ? "was killed by " : "died",
                pid > 0 && WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "");
        return 0;
    }
    return 1;
}

typedef struct change_arg {
    const char *path;             /* a temp copy the child may change */
    const char *other;            /* io-4: a file of the same size whose bytes replace it */
} change_arg;

/* io-3 and io-4 in the child: a context warm on one prompt; the file changes
 * under it; the next eval; the file restored; the eval again. */
static void child_change(const void *argp, child_out *o) {
    const change_arg *a = argp;
    ds_model *m = open_paged(a->path, 1);
    ds_context *c = NULL, *ref = NULL;
    float *lg = calloc(512, sizeof(float)), *lg_ref = calloc(512, sizeof(float));
    const int32_t first[3] = {1, 17, 42}, next[4] = {5, 99, 300, 7};
    if (!m || !lg || !lg_ref || ds_context_new(&c, m, NULL) || ds_context_new(&ref, m, NULL) ||
        ds_context_eval(ref, first, 3, NULL, 0) || ds_context_eval(ref, next, 4, lg_ref, 0) ||
        ds_context_eval(c, first, 3, NULL, 0)) {
        snprintf(o->msg, sizeof o->msg, "setup: %s", ds_last_error());
        return;
    }
    /* the bytes from the first expert segment on, to change and put back */
    uint64_t cut = UINT64_MAX;
    for (size_t i = 0; i < ds_model_segment_count(m); i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT && si.file_offset < cut)
            cut = si.file_offset;
    }
    struct stat st0;
    int fd = open(a->path, O_RDWR);
    if (fd < 0 || fstat(fd, &st0) != 0 || cut >= (uint64_t)st0.st_size) {
        snprintf(o->msg, sizeof o->msg, "cannot open %s to change it", a->path);
        return;
    }
    size_t tail = (size_t)((uint64_t)st0.st_size - cut);
    uint8_t *saved = malloc(tail), *other = malloc(tail);
    int ofd = a->other ? open(a->other, O_RDONLY) : -1;
    if (!saved || !other || pread(fd, saved, tail, (off_t)cut) != (ssize_t)tail ||
        (a->other && (ofd < 0 || pread(ofd, other, tail, (off_t)cut) != (ssize_t)tail))) {
        snprintf(o->msg, sizeof o->msg, "cannot read %s", a->path);
        return;
    }
    if (ofd >= 0) close(ofd);
    /* the change: truncated (io-3), or the other file's bytes written over it
     * in place (io-4); its time set apart from the open's (a cp comes later
     * than the open, but a file system's clock may not have ticked since) */
    int bad = a->other ? pwrite(fd, other, tail, (off_t)cut) != (ssize_t)tail : ftruncate(fd, (off_t)cut) != 0;
    struct timespec ts[2] = {{0, UTIME_OMIT}, {st0.st_mtim.tv_sec - 100, 0}};
    if (bad || futimens(fd, ts) != 0) {
        snprintf(o->msg, sizeof o->msg, "cannot change %s: %s", a->path, strerror(errno));
        return;
    }
    o->s = ds_context_eval(c, next, 4, lg, 0);
    snprintf(o->msg, sizeof o->msg, "%s", ds_context_errmsg(c));
    o->n_past_kept = ds_context_n_past(c) == 3;
    o->named = strstr(o->msg, a->path) != NULL && strstr(o->msg, "expert") != NULL && strstr(o->msg, "segment") != NULL;
    /* put the bytes back: the context evaluates again */
    if (pwrite(fd, saved, tail, (off_t)cut) == (ssize_t)tail) {
        o->resumed = ds_context_eval(c, next, 4, lg, 0) == DS_OK;
        o->same_logits = o->resumed && memcmp(lg, lg_ref, 512 * sizeof(float)) == 0;
    }
    close(fd);
    free(saved);
    free(other);
    free(lg);
    free(lg_ref);
    ds_context_free(c);
    ds_context_free(ref);
    ds_model_close(m);
}

/* io-3.v in the child: verify a file truncated after the open. */
static void child_verify(const void *argp, child_out *o) {
    const change_arg *a = argp;
    ds_model_params mp = ds_model_default_params();
    mp.key = test_key;
    mp.key_len = 32;
    mp.load_weights = 0;
    ds_model *m = NULL;
    if (ds_model_open(&m, a->path, &mp) != DS_OK) {
        snprintf(o->msg, sizeof o->msg, "open: %s", ds_last_error());
        return;
    }
    struct stat st;
    if (stat(a->path, &st) != 0 || truncate(a->path, st.st_size / 2) != 0) {
        snprintf(o->msg, sizeof o->msg, "truncate: %s", strerror(errno));
        ds_model_close(m);
        return;
    }
    o->s = ds_model_verify(m, 2, NULL, NULL);
    snprintf(o->msg, sizeof o->msg, "%s", ds_model_errmsg(m));
    o->named = strstr(o->msg, a->path) != NULL && strstr(o->msg, "truncated") != NULL;
    ds_model_close(m);
}

static int copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    static char buf[1 << 16];
    ssize_t r = 0;
    int ok = in >= 0 && out >= 0;
    while (ok && (r = read(in, buf, sizeof buf)) > 0) ok = write(out, buf, (size_t)r) == r;
    ok = ok && r == 0;
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0) ok = 0;
    return ok;
}

static void test_truncate(const char *family, const char *sealed) {
    char copy[600], id[48];
    snprintf(copy, sizeof copy, "%s/%s-truncated.dsm", tmpdir, family);
    snprintf(id, sizeof id, "io-3.%s", family);
    T_CHECK(id, copy_file(sealed, copy), "cannot copy %s", sealed);
    change_arg a = {copy, NULL};
    child_out o;
    if (run_forked(id, child_change, &a, &o)) {
        T_STATUS(id, o.s, DS_ERR_TRUNCATED, o.msg);
        T_CHECK(id, o.named && strstr(o.msg, "truncated") && o.n_past_kept,
                "message does not name the file, segment and truncation (or n_past moved): %s", o.msg);
        T_CHECK(id, o.resumed && o.same_logits, "with the file restored: eval %s, logits %s", o.resumed ? "ok" : "failed",
                o.same_logits ? "same" : "differ");
        printf("INFO %s: %s\n", id, o.msg);
    }
    snprintf(id, sizeof id, "io-3.v.%s", family);
    T_CHECK(id, copy_file(sealed, copy), "cannot copy %s", sealed);
    if (run_forked(id, child_verify, &a, &o)) {
        T_CHECK(id, o.s == DS_ERR_TRUNCATED && o.named, "verify: %s: %s", ds_status_string(o.s), o.msg);
        printf("INFO %s: %s\n", id, o.msg);
    }
    unlink(copy);
}

static void test_rewrite(const char *sealed) {
    char copy[600], other[600];
    snprintf(copy, sizeof copy, "%s/rewritten.dsm", tmpdir);
    snprintf(other, sizeof other, "%s/other.dsm", tmpdir);
    /* the same checkpoint sealed again: the same size, other nonces and tags */
    T_CHECK("io-4", copy_file(sealed, copy), "cannot copy");
    T_STATUS("io-4", convert_sealed("v2lite", 4096, other), DS_OK, ds_last_error());
    change_arg a = {copy, other};
    child_out o;
    if (run_forked("io-4", child_change, &a, &o)) {
        T_STATUS("io-4", o.s, DS_ERR_AUTH, o.msg);
        T_CHECK("io-4", o.named && strstr(o.msg, "changed since it was opened") && o.n_past_kept,
                "message does not name the file and segment or say the file changed: %s", o.msg);
        T_CHECK("io-4", o.resumed && o.same_logits, "with the file restored: eval %s, logits %s",
                o.resumed ? "ok" : "failed", o.same_logits ? "same" : "differ");
        printf("INFO io-4: %s\n", o.msg);
    }
    unlink(copy);
    unlink(other);
}

/* ==== 5: mlock ============================================================ */
typedef struct mlock_arg {
    const char *path;
    int mlock, tiny_limit;
} mlock_arg;

static char log_seen[1024];
static void log_cb(void *user, ds_log_level lvl, const char *msg) {
    (void)user;
    if (strstr(msg, "mlock:") && !log_seen[0]) snprintf(log_seen, sizeof log_seen, "%d %s", (int)lvl, msg);
}

/* VmLck of this process, in bytes. */
static uint64_t vm_locked(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %llu kB", &kb) == 1) break;
    if (f) fclose(f);
    return (uint64_t)kb << 10;
}

/* Drops CAP_IPC_LOCK (which lets root lock past RLIMIT_MEMLOCK). 1 = ok. */
static int drop_ipc_lock(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return 0;
    d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    d[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
    return syscall(SYS_capset, &h, d) == 0;
}

static void child_mlock(const void *argp, child_out *o) {
    const mlock_arg *a = argp;
    if (a->tiny_limit) {
        struct rlimit rl = {4096, 4096};
        o->limited = setrlimit(RLIMIT_MEMLOCK, &rl) == 0 && (getuid() != 0 || drop_ipc_lock());
    }
    ds_model_params mp = ds_model_default_params();
    mp.key = test_key;
    mp.key_len = 32;
    mp.expert_cache_bytes = 4 * slot_bytes(a->path);
    mp.mlock = a->mlock;
    mp.log = log_cb;
    ds_model *m = NULL;
    ds_status s = ds_model_open(&m, a->path, &mp);
    o->opened = s == DS_OK;
    snprintf(o->msg, sizeof o->msg, "%s", s ? ds_last_error() : "");
    if (m) {
        (void)!ds_model_mlock_info(m, &o->info);
        o->vmlck = vm_locked();
        o->key_locked = m->keybuf.locked;
    }
    snprintf(o->log, sizeof o->log, "%s", log_seen);
    ds_model_close(m);
}

static void test_mlock(const char *sealed) {
    child_out o;
    /* 5.1 */
    mlock_arg a = {sealed, 1, 0};
    if (T_ASAN) {   /* its mlock() does nothing and says it worked */
        T_SKIP("io-5.1", "AddressSanitizer build: mlock is a no-op under it");
        T_SKIP("io-5.2", "AddressSanitizer build");
    } else if (run_forked("io-5.1", child_mlock, &a, &o)) {
        if (o.opened && o.info.refused_bytes && getuid() != 0) {
            T_SKIP("io-5.1", "RLIMIT_MEMLOCK is below this small model's needs");
        } else {
            T_CHECK("io-5.1", o.opened && o.info.requested && o.info.locked_bytes > 0 && !o.info.refused_bytes &&
                                  o.vmlck >= o.info.locked_bytes && o.key_locked &&
                                  strstr(o.log, "bytes locked") && o.log[0] == '0' + DS_LOG_INFO,
                    "open %d (%s): locked %llu, refused %llu, VmLck %llu, key locked %d, log: %s", o.opened, o.msg,
                    (unsigned long long)o.info.locked_bytes, (unsigned long long)o.info.refused_bytes,
                    (unsigned long long)o.vmlck, o.key_locked, o.log);
            printf("INFO io-5.1: %llu bytes locked (VmLck %llu); %s\n", (unsigned long long)o.info.locked_bytes,
                   (unsigned long long)o.vmlck, o.log);
        }
    }
    /* 5.2 */
    a.tiny_limit = 1;
    if (!T_ASAN && run_forked("io-5.2", child_mlock, &a, &o)) {
        if (!o.limited) {
            T_SKIP("io-5.2", "cannot lower RLIMIT_MEMLOCK or drop CAP_IPC_LOCK here");
        } else {
            T_CHECK("io-5.2", o.opened && o.info.requested && o.info.refused_bytes > 0 &&
                                  (o.info.error == ENOMEM || o.info.error == EPERM) &&
                                  strstr(o.log, "could not be locked") && o.log[0] == '0' + DS_LOG_WARN,
                    "open %d (%s): locked %llu, refused %llu, errno %d, log: %s", o.opened, o.msg,
                    (unsigned long long)o.info.locked_bytes, (unsigned long long)o.info.refused_bytes, o.info.error,
                    o.log);
            printf("INFO io-5.2: %s\n", o.log);
        }
    }
    /* 5.3 */
    a.mlock = 0;
    a.tiny_limit = 0;
    if (run_forked("io-5.3", child_mlock, &a, &o))
        T_CHECK("io-5.3", o.opened && !o.info.requested && !o.info.locked_bytes && !o.info.refused_bytes && !o.key_locked,
                "open %d: requested %d, locked %llu", o.opened, o.info.requested,
                (unsigned long long)o.info.locked_bytes);
}

int main(void) {
    testdata = getenv("DS_TESTDATA");
    if (!testdata) testdata = "build/testdata";
    if (!mkdtemp(tmpdir)) {
        T_CHECK("io-0", 0, "mkdtemp: %s", strerror(errno));
        return t_finish("test_io");
    }
    char v2[600], pg[600], dir[600];
    snprintf(v2, sizeof v2, "%s/v2lite-q8-4k.dsm", tmpdir);
    snprintf(pg, sizeof pg, "%s/pager-q8.dsm", tmpdir);
    ds_status s = convert_sealed("v2lite", 4096, v2);
    T_STATUS("io-0", s, DS_OK, ds_last_error());
    if (s == DS_OK) {
        test_fault(v2, HOOK_EIO);
        test_fault(v2, HOOK_SHORT);
        test_truncate("v2lite", v2);
        test_rewrite(v2);
        test_mlock(v2);
    }
    snprintf(dir, sizeof dir, "%s/pager/config.json", testdata);
    if (access(dir, R_OK) != 0) {
        T_SKIP("io-3.pager", "no $DS_TESTDATA/pager");
    } else if ((s = convert_sealed("pager", 0, pg)) != DS_OK) {
        T_STATUS("io-3.pager", s, DS_OK, ds_last_error());
    } else {
        test_truncate("pager", pg);
    }
    unlink(v2);
    unlink(pg);
    rmdir(tmpdir);
    free(targets);
    free(target_hit);
    return t_finish("test_io");
}
