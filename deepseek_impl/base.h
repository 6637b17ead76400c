/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * base.h — the bottom layer (util.c, threadpool.c): linkage macros, limits on
 * untrusted input, errors, allocation, secure buffers, byte access, CPU
 * features, logging, the thread pool. Not installed; not part of the API.
 *
 * Internal functions are named dsi_* and declared with DSI_FUNC, which is
 * `static` in the amalgamation (so only ds_* symbols are exported) and empty
 * in the multi-file build (so tests and fuzzers can reach them).
 */
#ifndef DS_BASE_H
#define DS_BASE_H

#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1
#endif

/* mingw-w64: the C99 printf family (%zu, %llu), not msvcrt's. */
#if defined(_WIN32) && !defined(__USE_MINGW_ANSI_STDIO)
#define __USE_MINGW_ANSI_STDIO 1
#endif

#include "../deepseek.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef DS_AMALGAMATION
#  if defined(__GNUC__) || defined(__clang__)
#    define DSI_FUNC static __attribute__((unused))
#  else
#    define DSI_FUNC static
#  endif
#  define DSI_DATA static
#  define DSI_DATA_DECL static   /* a tentative definition: the file's own completes it */
#else
#  define DSI_FUNC
#  define DSI_DATA
#  define DSI_DATA_DECL extern
#endif

/* Small helpers defined in this header: unused ones must not warn (clang
 * warns about unused static inline functions in the main file). */
#if defined(__GNUC__) || defined(__clang__)
#  define DSI_INLINE static inline __attribute__((unused))
#else
#  define DSI_INLINE static inline
#endif

#if defined(__MINGW32__)
#  define DSI_PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#elif defined(__GNUC__) || defined(__clang__)
#  define DSI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define DSI_PRINTF(a, b)
#endif

/* The platform layer: Linux, other POSIX systems, Windows (port.h). */
#include "port.h"

/* ==== Limits on untrusted input (overridable) ============================ */
#ifndef DS_MAX_DIM
#define DS_MAX_DIM ((uint64_t)1 << 24)        /* any one tensor dimension */
#endif
#ifndef DS_MAX_TENSORS
#define DS_MAX_TENSORS 1000000u
#endif
#ifndef DS_MAX_SEGMENTS
#define DS_MAX_SEGMENTS 1000000u
#endif
#ifndef DS_MAX_META_BYTES
#define DS_MAX_META_BYTES ((uint64_t)1 << 30)  /* sealed metadata */
#endif
#ifndef DS_MAX_JSON_DEPTH
#define DS_MAX_JSON_DEPTH 128
#endif
#ifndef DS_MAX_SAFETENSORS_HEADER
#define DS_MAX_SAFETENSORS_HEADER ((uint64_t)100 << 20)  /* 100 MB, as the reference implementation */
#endif
#ifndef DS_MAX_LAYERS
#define DS_MAX_LAYERS 1024
#endif
#ifndef DS_MAX_EXPERTS
#define DS_MAX_EXPERTS 4096
#endif
/* Routed experts per token (num_experts_per_tok) and groups kept
 * (topk_group): the routing and paged decode keep per-token arrays of these
 * sizes on the stack. Released models use 6 or 8, and 3 or 4; DeepSeek-V3
 * routes 8 of 256 experts from 4 of 8 groups. The CUDA route kernel keeps at
 * most 64 groups (ROUTE_MAX_KEEP) and refuses more. */
#ifndef DS_MAX_EXPERTS_PER_TOK
#define DS_MAX_EXPERTS_PER_TOK 64
#endif
#ifndef DS_MAX_TOPK_GROUP
#define DS_MAX_TOPK_GROUP 64
#endif
/* Argon2id parameters a file may ask for: checked against the header before
 * the KDF runs, so a hostile header cannot make an open allocate gigabytes or
 * run for minutes. libsodium's strongest preset (SENSITIVE: 4 passes over
 * 1 GiB) fits; the converter refuses to write a file above them. */
#ifndef DS_MAX_ARGON_OPS
#define DS_MAX_ARGON_OPS 8u
#endif
#ifndef DS_MAX_ARGON_MEM
#define DS_MAX_ARGON_MEM ((uint64_t)1 << 30)
#endif

/* ==== Errors ============================================================= */
/* Every internal function that can fail takes a dsi_err and fills it through
 * dsi_fail; the public wrapper copies it into the thread's last error and the
 * handle's message. */
typedef struct dsi_err {
    ds_status status;
    char msg[512];
} dsi_err;

DSI_FUNC ds_status dsi_fail(dsi_err *e, ds_status s, const char *fmt, ...) DSI_PRINTF(3, 4);
/* Prefixes an existing message: "ctx: old message". Returns e->status. */
DSI_FUNC ds_status dsi_prefix(dsi_err *e, const char *fmt, ...) DSI_PRINTF(2, 3);
/* Records e as the calling thread's last error and returns e->status. */
DSI_FUNC ds_status dsi_publish(const dsi_err *e);

/* ==== Allocation ========================================================= */
/* A resolved allocator: always has all three functions. */
typedef struct dsi_alloc {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*realloc_fn)(void *ptr, size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} dsi_alloc;

/* Resolves a caller's allocator (NULL or all-NULL = defaults). Fails with
 * DS_ERR_INVALID_ARG when it is only partly set. */
DSI_FUNC ds_status dsi_alloc_init(dsi_alloc *out, const ds_allocator *in, dsi_err *e);
DSI_FUNC void *dsi_malloc(const dsi_alloc *a, size_t n);
DSI_FUNC void *dsi_calloc(const dsi_alloc *a, size_t count, size_t size); /* overflow-checked */
DSI_FUNC void *dsi_realloc(const dsi_alloc *a, void *p, size_t n);
DSI_FUNC void dsi_free(const dsi_alloc *a, void *p);
DSI_FUNC char *dsi_strndup(const dsi_alloc *a, const char *s, size_t n);

/* Overflow-checked size arithmetic: return false on overflow. */
DSI_FUNC bool dsi_mul_u64(uint64_t a, uint64_t b, uint64_t *out);
DSI_FUNC bool dsi_add_u64(uint64_t a, uint64_t b, uint64_t *out);

/* Secret-holding page-aligned buffers: mmap'd, excluded from core dumps
 * (MADV_DONTDUMP, best effort), wiped on free. */
typedef struct dsi_secure_buf {
    void *ptr;
    size_t size;          /* mapped size (page multiple) */
    bool dontdump;        /* MADV_DONTDUMP took effect */
    bool locked;          /* mlock took effect (dsi_secure_lock) */
    bool huge;            /* DSI_SECURE_HUGE: 2 MiB aligned and MADV_HUGEPAGE took effect */
    int huge_error;       /* DSI_SECURE_HUGE on a buffer of >= DSI_HUGE_PAGE_BYTES that did not
                             get it: the errno of the refusal (EINVAL: a kernel without
                             transparent huge pages); 0 otherwise */
} dsi_secure_buf;
/* The size of a transparent huge page (a PMD's worth: x86-64, and arm64
 * with 4 KiB pages). Elsewhere 2 MiB alignment is harmless and the kernel
 * decides what MADV_HUGEPAGE gives. */
#define DSI_HUGE_PAGE_BYTES ((size_t)2 << 20)
/* dsi_secure_alloc flags. DSI_SECURE_HUGE: a buffer of at least
 * DSI_HUGE_PAGE_BYTES starts on a DSI_HUGE_PAGE_BYTES boundary and asks for
 * transparent huge pages (MADV_HUGEPAGE), so that streaming through it costs
 * one TLB entry per 2 MiB rather than per 4 KiB. Where the kernel refuses,
 * the buffer has ordinary pages (b->huge false, b->huge_error says why); the
 * mapping is never larger than size rounded up to a page, so no more memory
 * can become resident than without the flag. */
#define DSI_SECURE_HUGE 1u
DSI_FUNC ds_status dsi_secure_alloc(dsi_secure_buf *b, size_t size, unsigned flags, dsi_err *e);
DSI_FUNC void dsi_secure_free(dsi_secure_buf *b);
/* Test hook (NULL in use): dsi_secure_free calls it instead of munmap(2),
 * after wiping, so a test can look at the wiped bytes (and unmap them). */
DSI_DATA_DECL void (*dsi_secure_unmap_hook)(void *ptr, size_t len);
/* Bytes of the n ranges [ptr[i], ptr[i] + len[i]) backed by transparent
 * huge pages now (AnonHugePages of the mappings that hold them, from
 * /proc/self/smaps); false where that cannot be read. Reads the whole file:
 * milliseconds, not for a hot path. */
DSI_FUNC bool dsi_huge_bytes(const void *const *ptr, const size_t *len, int n, uint64_t *out);
/* Locks b's pages into RAM (mlock: never written to swap); 0, or the errno
 * of the refusal (ENOMEM or EPERM: RLIMIT_MEMLOCK). Unlocked when freed. */
DSI_FUNC int dsi_secure_lock(dsi_secure_buf *b);

/* ==== Parameter structs ================================================== */
/* The structs whose zero is not their default (ds_model_params,
 * ds_sampler_params, ds_convert_params) carry a magic that only their
 * ds_*_default_params() sets; the function taking one refuses it without
 * (a zeroed struct, or one put together field by field). Different values,
 * so that one struct's bytes do not pass for another's. */
#define DSI_MODEL_PARAMS_MAGIC 0x504d5344u     /* "DSMP" */
#define DSI_SAMPLER_PARAMS_MAGIC 0x50535344u   /* "DSSP" */
#define DSI_CONVERT_PARAMS_MAGIC 0x50435344u   /* "DSCP" */
#define DSI_CONVERT_LORA_PARAMS_MAGIC 0x504c5344u   /* "DSLP" */
/* DS_OK when magic is want; otherwise DS_ERR_INVALID_ARG saying that fn's
 * params were not made by their constructor ("ds_model_params", "ds_model"
 * gives ds_model_default_params()). */
DSI_FUNC ds_status dsi_params_check_magic(uint32_t magic, uint32_t want, const char *fn, const char *type,
                                          const char *prefix, dsi_err *e);

/* ==== Little-endian byte access ========================================== */
DSI_INLINE uint16_t dsi_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
DSI_INLINE uint32_t dsi_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
DSI_INLINE uint64_t dsi_rd64(const uint8_t *p) { return (uint64_t)dsi_rd32(p) | ((uint64_t)dsi_rd32(p + 4) << 32); }
DSI_INLINE void dsi_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
DSI_INLINE void dsi_wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
DSI_INLINE void dsi_wr64(uint8_t *p, uint64_t v) { dsi_wr32(p, (uint32_t)v); dsi_wr32(p + 4, (uint32_t)(v >> 32)); }

/* A growable byte buffer (metadata writer). */
typedef struct dsi_buf {
    uint8_t *data;
    size_t len, cap;
    const dsi_alloc *al;
    bool failed;          /* an append ran out of memory; checked once at the end */
} dsi_buf;
DSI_FUNC void dsi_buf_init(dsi_buf *b, const dsi_alloc *al);
DSI_FUNC void dsi_buf_put(dsi_buf *b, const void *p, size_t n);
DSI_FUNC void dsi_buf_u32(dsi_buf *b, uint32_t v);
DSI_FUNC void dsi_buf_u64(dsi_buf *b, uint64_t v);
DSI_FUNC void dsi_buf_pad(dsi_buf *b, size_t align);
DSI_FUNC void dsi_buf_free(dsi_buf *b);

/* ==== CPU features ======================================================== */
/* DSI_CPU_AES: AES-NI + PCLMUL on x86, the ARMv8 AES + PMULL instructions
 * on AArch64. The DSI_CPU_NEON.. bits are AArch64's: Advanced SIMD with
 * half-precision conversion (every AArch64 CPU), the dot-product
 * instructions (sdot, ARMv8.2 DotProd) and the int8 matrix multiply
 * (smmla, ARMv8.6 I8MM). */
enum { DSI_CPU_AES = 1u << 0, DSI_CPU_AVX2 = 1u << 1, DSI_CPU_FMA = 1u << 2, DSI_CPU_F16C = 1u << 3,
       DSI_CPU_AVX512F = 1u << 4, DSI_CPU_AVX512BW = 1u << 5, DSI_CPU_AVX512VL = 1u << 6,
       DSI_CPU_AVX512VNNI = 1u << 7, DSI_CPU_NEON = 1u << 8, DSI_CPU_DOTPROD = 1u << 9, DSI_CPU_I8MM = 1u << 10 };
/* Detected once, then cached. */
DSI_FUNC uint32_t dsi_cpu_features(void);
/* Test hook: features in `mask` are reported absent from now on. */
DSI_FUNC void dsi_cpu_features_mask(uint32_t mask);

/* ==== Regular files (util.c) ============================================= */
/* Which file an open descriptor is (to tell whether two paths name one file). */
typedef struct dsi_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_sec, mtime_nsec;   /* the modification time */
} dsi_file_id;
/* Opens path read-only (close-on-exec) for a reader that needs a regular
 * file: a model, a checkpoint's inputs. The open is non-blocking so that a
 * FIFO without a writer cannot hang it; then fstat, and anything but a
 * regular file (a FIFO, a directory, a device such as /dev/zero, a socket)
 * is refused with DS_ERR_IO, saying what it is. Returns the descriptor
 * (O_NONBLOCK cleared again) and fills *id (may be NULL), or returns -1 with
 * e filled; the message does not name the path (callers prefix it). */
DSI_FUNC int dsi_open_regular(const char *path, dsi_file_id *id, dsi_err *e);
/* The checks of dsi_open_regular on a descriptor already open: fstat, and
 * anything but a regular file is DS_ERR_IO saying what it is (same
 * messages); fills *id (may be NULL). */
DSI_FUNC ds_status dsi_fd_regular(int fd, dsi_file_id *id, dsi_err *e);

/* ==== Logging (util.c) =================================================== */
DSI_FUNC void dsi_log(ds_log_fn fn, void *user, ds_log_level lvl, const char *fmt, ...) DSI_PRINTF(4, 5);

/* ==== Thread pool (threadpool.c) ========================================= */
/* A persistent pool: run(fn, ctx, n) calls fn(ctx, i, worker) for i in [0, n)
 * on all workers (the caller is worker 0) and returns when all are done. */
typedef struct dsi_pool dsi_pool;
typedef void (*dsi_task_fn)(void *ctx, int i, int worker);
DSI_FUNC ds_status dsi_pool_new(dsi_pool **out, int n_threads, const dsi_alloc *al, dsi_err *e);
DSI_FUNC void dsi_pool_free(dsi_pool *p);
DSI_FUNC void dsi_pool_run(dsi_pool *p, dsi_task_fn fn, void *ctx, int n);
DSI_FUNC int dsi_pool_size(const dsi_pool *p);

/* ==== Portable helpers ==================================================== */
DSI_FUNC int dsi_num_cpus(void);
DSI_FUNC double dsi_now_seconds(void);

#endif /* DS_BASE_H */
