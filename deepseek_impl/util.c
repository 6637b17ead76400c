/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * util.c — errors, allocation, secure buffers, byte buffers, CPU features,
 * version and status text.
 */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#ifndef DS_MALLOC
#define DS_MALLOC(n) malloc(n)
#endif
#ifndef DS_REALLOC
#define DS_REALLOC(p, n) realloc((p), (n))
#endif
#ifndef DS_FREE
#define DS_FREE(p) free(p)
#endif

#ifndef DS_SOURCE_ID
#define DS_SOURCE_ID "multi-file build"
#endif

/* ---- version -------------------------------------------------------------- */
DS_API int ds_version_number(void) { return DS_VERSION_NUMBER; }
DS_API const char *ds_version_string(void) { return DS_VERSION_STRING; }
DS_API const char *ds_source_id(void) { return DS_SOURCE_ID; }

/* ---- status text ---------------------------------------------------------- */
DS_API const char *ds_status_string(ds_status s) {
    switch (s) {
    case DS_OK: return "ok";
    case DS_ERR_NOMEM: return "out of memory";
    case DS_ERR_INVALID_ARG: return "invalid argument";
    case DS_ERR_IO: return "I/O error";
    case DS_ERR_UNSUPPORTED: return "unsupported";
    case DS_ERR_LIMIT: return "size limit exceeded";
    case DS_ERR_CANCELLED: return "cancelled";
    case DS_ERR_EXISTS: return "file exists";
    case DS_ERR_INTERNAL: return "internal error";
    case DS_ERR_NOT_DSM: return "not a deepseek.h model file";
    case DS_ERR_VERSION: return "unsupported container format version";
    case DS_ERR_TRUNCATED: return "truncated file";
    case DS_ERR_CORRUPT: return "corrupt container";
    case DS_ERR_JSON: return "malformed JSON";
    case DS_ERR_SAFETENSORS: return "malformed safetensors file";
    case DS_ERR_MISSING_TENSOR: return "missing tensor";
    case DS_ERR_SHAPE: return "tensor shape or dtype mismatch";
    case DS_ERR_ARCH: return "unsupported architecture";
    case DS_ERR_CONFIG: return "invalid model config";
    case DS_ERR_GGUF: return "malformed GGUF file";
    case DS_ERR_NOT_ADAPTER: return "not the kind of file expected (a model where an adapter was expected, or the reverse)";
    case DS_ERR_ADAPTER: return "LoRA adapter does not fit the model";
    case DS_ERR_ADAPTER_BASE: return "LoRA adapter made for another base model";
    case DS_ERR_CALIBRATION: return "calibration file malformed or made for another model";
    case DS_ERR_WRONG_KEY: return "wrong key";
    case DS_ERR_AUTH: return "authentication failed (tampered or damaged data)";
    case DS_ERR_NEED_KEY: return "file is encrypted and no key was given";
    case DS_ERR_NO_AES: return "CPU lacks AES instructions";
    case DS_ERR_CRYPTO: return "crypto failure";
    case DS_ERR_PLAINTEXT: return "plaintext file refused where a key was given";
    case DS_ERR_BACKEND: return "backend failure";
    case DS_ERR_NO_DEVICE: return "no such device";
    case DS_ERR_MISUSE: return "API misuse";
    }
    return "unknown status";
}

/* ---- errors --------------------------------------------------------------- */
/* The only per-thread state: the message of the last failed call. */
static _Thread_local char dsi_last_msg[512];

DS_API const char *ds_last_error(void) { return dsi_last_msg; }


DSI_FUNC ds_status dsi_fail(dsi_err *e, ds_status s, const char *fmt, ...) {
    if (!e) return s;
    e->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return s;
}

DSI_FUNC ds_status dsi_params_check_magic(uint32_t magic, uint32_t want, const char *fn, const char *type,
                                          const char *prefix, dsi_err *e) {
    if (magic == want) return DS_OK;
    return dsi_fail(e, DS_ERR_INVALID_ARG,
                    "%s: params were not made by %s_default_params() (a zeroed %s is refused: its zeros are not "
                    "the defaults); start from %s_default_params() and change the fields you need",
                    fn, prefix, type, prefix);
}

DSI_FUNC ds_status dsi_prefix(dsi_err *e, const char *fmt, ...) {
    char pre[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    old[sizeof old - 1] = 0;
    /* "pre: old", cut to fit (spelled out: snprintf of two long strings warns) */
    size_t pl = strnlen(pre, sizeof e->msg - 3);
    memcpy(e->msg, pre, pl);
    e->msg[pl] = ':';
    e->msg[pl + 1] = ' ';
    size_t ol = strnlen(old, sizeof e->msg - pl - 3);
    memcpy(e->msg + pl + 2, old, ol);
    e->msg[pl + 2 + ol] = 0;
    return e->status;
}

DSI_FUNC ds_status dsi_publish(const dsi_err *e) {
    snprintf(dsi_last_msg, sizeof dsi_last_msg, "%s", e->msg);
    return e->status;
}

/* ---- regular files ---------------------------------------------------------- */
DSI_FUNC ds_status dsi_fd_regular(int fd, dsi_file_id *id, dsi_err *e) {
    struct stat st;
    if (fstat(fd, &st) != 0) return dsi_fail(e, DS_ERR_IO, "cannot stat: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) {
        const char *what = S_ISFIFO(st.st_mode) ? "a FIFO"
                           : S_ISDIR(st.st_mode) ? "a directory"
                           : S_ISCHR(st.st_mode) ? "a character device"
                           : S_ISBLK(st.st_mode) ? "a block device"
                           : S_ISSOCK(st.st_mode) ? "a socket" : "not a file";
        return dsi_fail(e, DS_ERR_IO, "not a regular file (it is %s); refusing to read it", what);
    }
    if (id) {
        dsi_fd_identity(fd, &st, &id->dev, &id->ino);
        id->size = (uint64_t)st.st_size;
        dsi_stat_mtime(&st, &id->mtime_sec, &id->mtime_nsec);
    }
    return DS_OK;
}

DSI_FUNC int dsi_open_regular(const char *path, dsi_file_id *id, dsi_err *e) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        dsi_fail(e, DS_ERR_IO, "cannot open: %s", strerror(errno));
        return -1;
    }
    if (dsi_fd_regular(fd, id, e)) {
        close(fd);
        return -1;
    }
    /* reads of a regular file never block anyway; clear the flag all the same */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        dsi_fail(e, DS_ERR_IO, "fcntl: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

DSI_FUNC void dsi_log(ds_log_fn fn, void *user, ds_log_level lvl, const char *fmt, ...) {
    if (!fn) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn(user, lvl, msg);
}

/* ---- allocation ----------------------------------------------------------- */
static void *dsi_default_malloc(size_t n, void *u) { (void)u; return DS_MALLOC(n); }
static void *dsi_default_realloc(void *p, size_t n, void *u) { (void)u; return DS_REALLOC(p, n); }
static void dsi_default_free(void *p, void *u) { (void)u; DS_FREE(p); }

DSI_FUNC ds_status dsi_alloc_init(dsi_alloc *out, const ds_allocator *in, dsi_err *e) {
    if (!in || (!in->malloc_fn && !in->realloc_fn && !in->free_fn)) {
        out->malloc_fn = dsi_default_malloc;
        out->realloc_fn = dsi_default_realloc;
        out->free_fn = dsi_default_free;
        out->user = NULL;
        return DS_OK;
    }
    if (!in->malloc_fn || !in->realloc_fn || !in->free_fn)
        return dsi_fail(e, DS_ERR_INVALID_ARG,
                        "allocator: malloc_fn, realloc_fn and free_fn must all be set or all be NULL");
    out->malloc_fn = in->malloc_fn;
    out->realloc_fn = in->realloc_fn;
    out->free_fn = in->free_fn;
    out->user = in->user;
    return DS_OK;
}

DSI_FUNC void *dsi_malloc(const dsi_alloc *a, size_t n) { return a->malloc_fn(n ? n : 1, a->user); }

DSI_FUNC void *dsi_calloc(const dsi_alloc *a, size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    size_t n = count * size;
    void *p = dsi_malloc(a, n);
    if (p) memset(p, 0, n ? n : 1);
    return p;
}

DSI_FUNC void *dsi_realloc(const dsi_alloc *a, void *p, size_t n) { return a->realloc_fn(p, n ? n : 1, a->user); }

DSI_FUNC void dsi_free(const dsi_alloc *a, void *p) {
    if (p) a->free_fn(p, a->user);
}

DSI_FUNC char *dsi_strndup(const dsi_alloc *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *d = dsi_malloc(a, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

DSI_FUNC bool dsi_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}

DSI_FUNC bool dsi_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return false;
    *out = a + b;
    return true;
}

DS_API void ds_memzero(void *p, size_t n) {
    if (p && n) sodium_memzero(p, n);
}

/* ---- secure buffers ------------------------------------------------------- */
DSI_DATA void (*dsi_secure_unmap_hook)(void *ptr, size_t len);

/* A mapping of len bytes (a page multiple of at least DSI_HUGE_PAGE_BYTES)
 * that starts on a DSI_HUGE_PAGE_BYTES boundary: a huge page less a page
 * more is mapped, and the ends outside the aligned range are unmapped again.
 * NULL when that cannot be had (the caller maps len bytes anywhere). */
#ifdef DSI_MADV_HUGE
static void *dsi_map_huge_aligned(size_t len, size_t page) {
    if (len > SIZE_MAX - DSI_HUGE_PAGE_BYTES) return NULL;
    size_t span = len + DSI_HUGE_PAGE_BYTES - page;
    void *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uintptr_t at = ((uintptr_t)raw + DSI_HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(DSI_HUGE_PAGE_BYTES - 1);
    size_t head = (size_t)(at - (uintptr_t)raw), tail = span - head - len;
    if (head) munmap(raw, head);
    if (tail) munmap((uint8_t *)at + len, tail);
    return (void *)at;
}
#endif

DSI_FUNC ds_status dsi_secure_alloc(dsi_secure_buf *b, size_t size, unsigned flags, dsi_err *e) {
    memset(b, 0, sizeof *b);
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    if (size == 0) size = 1;
    if (size > SIZE_MAX - page) return dsi_fail(e, DS_ERR_NOMEM, "secure buffer of %zu bytes is too large", size);
    size_t len = (size + page - 1) / page * page;
    bool huge = (flags & DSI_SECURE_HUGE) && len >= DSI_HUGE_PAGE_BYTES && page < DSI_HUGE_PAGE_BYTES;
#ifdef DSI_MADV_HUGE
    void *p = huge ? dsi_map_huge_aligned(len, page) : NULL;
    int huge_error = huge && !p ? ENOMEM : 0;
#else
    /* no transparent huge pages on this platform (port.h): ordinary pages */
    void *p = NULL;
    int huge_error = huge ? ENOSYS : 0;
    huge = false;
#endif
    if (!p) p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return dsi_fail(e, DS_ERR_NOMEM, "cannot map %zu bytes for plaintext weights: %s", len, strerror(errno));
#ifdef DSI_MADV_NODUMP
    b->dontdump = madvise(p, len, DSI_MADV_NODUMP) == 0;
#endif
    /* before the first touch: the pages are faulted in as huge ones (or
     * collapsed later by khugepaged). A kernel without THP says EINVAL */
    if (huge && !huge_error) {
#ifdef DSI_MADV_HUGE
        b->huge = madvise(p, len, DSI_MADV_HUGE) == 0;
        if (!b->huge) huge_error = errno ? errno : EINVAL;
#endif
    }
    b->huge_error = huge_error;
    b->ptr = p;
    b->size = len;
    return DS_OK;
}

DSI_FUNC void dsi_secure_free(dsi_secure_buf *b) {
    if (!b || !b->ptr) return;
    sodium_memzero(b->ptr, b->size);
    void (*hook)(void *, size_t) = __atomic_load_n(&dsi_secure_unmap_hook, __ATOMIC_ACQUIRE);
    if (hook) hook(b->ptr, b->size);
    else munmap(b->ptr, b->size);   /* also unlocks */
    memset(b, 0, sizeof *b);
}

/* One line of /proc/self/smaps for dsi_huge_bytes: a mapping's header
 * ("start-end perms ...") sets the overlap of the ranges with it; its
 * AnonHugePages line counts, up to that overlap. */
typedef struct dsi_smaps_scan {
    const void *const *ptr;
    const size_t *len;
    int n;
    uint64_t overlap, total;
} dsi_smaps_scan;

static void dsi_smaps_line(dsi_smaps_scan *s, const char *line) {
    static const char ahp[] = "AnonHugePages:";
    if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) {
        char *end = NULL;
        unsigned long long lo = strtoull(line, &end, 16), hi;
        if (!end || *end != '-') return;
        hi = strtoull(end + 1, &end, 16);
        s->overlap = 0;
        for (int i = 0; i < s->n; i++) {
            unsigned long long a = (uintptr_t)s->ptr[i], z = a + s->len[i];
            unsigned long long x = a > lo ? a : lo, y = z < hi ? z : hi;
            if (y > x) s->overlap += y - x;
        }
    } else if (s->overlap && !strncmp(line, ahp, sizeof ahp - 1)) {
        uint64_t kb = strtoull(line + sizeof ahp - 1, NULL, 10), bytes = kb * 1024;
        s->total += bytes < s->overlap ? bytes : s->overlap;
        s->overlap = 0;
    }
}

DSI_FUNC bool dsi_huge_bytes(const void *const *ptr, const size_t *len, int n, uint64_t *out) {
    *out = 0;
#if !DSI_LINUX
    (void)ptr; (void)len; (void)n; (void)dsi_smaps_line;
    return false;   /* /proc/self/smaps is Linux's: not measured */
#else
    int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    dsi_smaps_scan s = {ptr, len, n, 0, 0};
    char buf[4096], line[128];   /* the fields needed lie in a line's first 128 bytes */
    size_t ll = 0;
    ssize_t r;
    for (;;) {
        r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] != '\n') {
                if (ll < sizeof line - 1) line[ll++] = buf[i];
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            dsi_smaps_line(&s, line);
        }
    }
    close(fd);
    if (r < 0) return false;
    *out = s.total;
    return true;
#endif
}

DSI_FUNC int dsi_secure_lock(dsi_secure_buf *b) {
    if (!b->ptr || b->locked) return 0;
    if (mlock(b->ptr, b->size) != 0) return errno ? errno : ENOMEM;
    b->locked = true;
    return 0;
}

/* ---- byte buffer ---------------------------------------------------------- */
DSI_FUNC void dsi_buf_init(dsi_buf *b, const dsi_alloc *al) {
    memset(b, 0, sizeof *b);
    b->al = al;
}

DSI_FUNC void dsi_buf_put(dsi_buf *b, const void *p, size_t n) {
    if (b->failed || n == 0) return;
    if (n > SIZE_MAX - b->len) { b->failed = true; return; }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            if (cap > SIZE_MAX / 2) { b->failed = true; return; }
            cap *= 2;
        }
        uint8_t *d = dsi_realloc(b->al, b->data, cap);
        if (!d) { b->failed = true; return; }
        b->data = d;
        b->cap = cap;
    }
    if (p) memcpy(b->data + b->len, p, n);
    else memset(b->data + b->len, 0, n);
    b->len += n;
}

DSI_FUNC void dsi_buf_u32(dsi_buf *b, uint32_t v) {
    uint8_t t[4];
    dsi_wr32(t, v);
    dsi_buf_put(b, t, 4);
}

DSI_FUNC void dsi_buf_u64(dsi_buf *b, uint64_t v) {
    uint8_t t[8];
    dsi_wr64(t, v);
    dsi_buf_put(b, t, 8);
}

DSI_FUNC void dsi_buf_pad(dsi_buf *b, size_t align) {
    size_t r = b->len % align;
    if (r) dsi_buf_put(b, NULL, align - r);
}

DSI_FUNC void dsi_buf_free(dsi_buf *b) {
    dsi_free(b->al, b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- CPU features --------------------------------------------------------- */
/* Detected once; the mask is a test hook (e.g. pretend the CPU lacks AES). */
static uint32_t dsi_cpu_cached;
static int dsi_cpu_done;
static uint32_t dsi_cpu_masked;

static uint32_t dsi_cpu_detect(void) {
    uint32_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        if (c & (1u << 25)) f |= DSI_CPU_AES;
        if (c & (1u << 12)) f |= DSI_CPU_FMA;
        if (c & (1u << 29)) f |= DSI_CPU_F16C;
        bool osxsave = (c & (1u << 27)) != 0;
        /* the OS must save the vector state: XCR0 bits 1-2 (SSE, AVX) for
         * 256-bit registers, 5-7 (opmask, upper ZMM) for AVX-512 */
        uint64_t xcr0 = 0;
        if (osxsave) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            xcr0 = ((uint64_t)hi << 32) | lo;
        }
        bool ymm = (xcr0 & 0x6) == 0x6, zmm = ymm && (xcr0 & 0xe0) == 0xe0;
        if (!ymm) f &= ~(uint32_t)(DSI_CPU_FMA | DSI_CPU_F16C);
        if (ymm && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
            if (b & (1u << 5)) f |= DSI_CPU_AVX2;
            if (zmm && (b & (1u << 16))) {
                f |= DSI_CPU_AVX512F;
                if (b & (1u << 30)) f |= DSI_CPU_AVX512BW;
                if (b & (1u << 31)) f |= DSI_CPU_AVX512VL;
                if (c & (1u << 11)) f |= DSI_CPU_AVX512VNNI;
            }
        }
    }
#elif defined(__aarch64__)
    /* Advanced SIMD (with FP16 conversions) is part of every AArch64 CPU. */
    f |= DSI_CPU_NEON;
#  if defined(__linux__)
    /* The kernel's hardware capability words (HWCAP_* of asm/hwcap.h; the
     * bit numbers are part of the Linux ABI, spelled out here so older
     * headers need not define them). AES-GCM needs both AES and PMULL. */
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if ((hw & (1ul << 3)) && (hw & (1ul << 4))) f |= DSI_CPU_AES;   /* HWCAP_AES, HWCAP_PMULL */
    if (hw & (1ul << 20)) f |= DSI_CPU_DOTPROD;                     /* HWCAP_ASIMDDP */
    if (hw2 & (1ul << 13)) f |= DSI_CPU_I8MM;                       /* HWCAP2_I8MM */
#  elif defined(__APPLE__)
    /* Apple silicon: AES and PMULL on every model, the others by name. */
    f |= DSI_CPU_AES;
    int v = 0;
    size_t len = sizeof v;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, NULL, 0) == 0 && v) f |= DSI_CPU_DOTPROD;
    v = 0;
    len = sizeof v;
    if (sysctlbyname("hw.optional.arm.FEAT_I8MM", &v, &len, NULL, 0) == 0 && v) f |= DSI_CPU_I8MM;
#  else
    /* Elsewhere (FreeBSD, Windows on ARM) only what the compiler was told
     * the target has. */
#    if defined(__ARM_FEATURE_AES) || defined(__ARM_FEATURE_CRYPTO)
    f |= DSI_CPU_AES;
#    endif
#    if defined(__ARM_FEATURE_DOTPROD)
    f |= DSI_CPU_DOTPROD;
#    endif
#    if defined(__ARM_FEATURE_MATMUL_INT8)
    f |= DSI_CPU_I8MM;
#    endif
#  endif
#endif
    return f;
}

DSI_FUNC uint32_t dsi_cpu_features(void) {
    if (!__atomic_load_n(&dsi_cpu_done, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&dsi_cpu_cached, dsi_cpu_detect(), __ATOMIC_RELAXED);
        __atomic_store_n(&dsi_cpu_done, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&dsi_cpu_cached, __ATOMIC_RELAXED) & ~__atomic_load_n(&dsi_cpu_masked, __ATOMIC_RELAXED);
}

DSI_FUNC void dsi_cpu_features_mask(uint32_t mask) { __atomic_store_n(&dsi_cpu_masked, mask, __ATOMIC_RELAXED); }

/* ---- misc ----------------------------------------------------------------- */
DSI_FUNC int dsi_num_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

DSI_FUNC double dsi_now_seconds(void) {
#if DSI_WINDOWS
    LARGE_INTEGER f, c;
    if (!QueryPerformanceFrequency(&f) || !QueryPerformanceCounter(&c) || !f.QuadPart) return 0;
    return (double)c.QuadPart / (double)f.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
}
