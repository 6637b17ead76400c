/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * deepseek.h — an embeddable C runtime for DeepSeek-family Mixture-of-Experts
 * models, stored in sealed (AES-256-GCM) container files.
 *
 * ---------------------------------------------------------------------------
 * Do this:
 *
 *     cc -std=c11 -O2 -c deepseek.c                 (dist/deepseek.c, amalgamated)
 *     cc -std=c11 -O2 app.c deepseek.o -lsodium -lm -lpthread
 *
 * or, after `make install` (libdeepseek.so, libdeepseek.a and deepseek.pc):
 *
 *     cc -std=c11 -O2 app.c $(pkg-config --cflags --libs deepseek)
 *     cc -static -std=c11 -O2 app.c $(pkg-config --static --cflags --libs deepseek)
 *
 * and in app.c:
 *
 *     #include "deepseek.h"
 *
 *     unsigned char key[32];
 *     ds_model *m = NULL;
 *     ds_model_params mp = ds_model_default_params();
 *     if (ds_key_file_read("vendor.key", key) != DS_OK) { puts(ds_last_error()); return 1; }
 *     mp.key = key;
 *     mp.key_len = sizeof key;
 *     if (ds_model_open(&m, "model.dsm", &mp) != DS_OK) {
 *         fprintf(stderr, "open failed: %s\n", ds_last_error());
 *         return 1;
 *     }
 *     ds_memzero(key, sizeof key);          // the model keeps its own derived keys
 *     ds_model_config cfg;
 *     (void)ds_model_get_config(m, &cfg);
 *     printf("%d layers, %d routed experts\n", cfg.n_layers, cfg.n_routed_experts);
 *     ds_model_close(m);
 *
 * Feature macros (define before compiling deepseek.c):
 *     DS_NO_STDIO        no file helpers that use <stdio.h> (keys from memory only)
 *     DS_MALLOC/DS_FREE/DS_REALLOC   compile-time default allocator
 *     DS_MAX_DIM, DS_MAX_TENSORS, DS_MAX_SEGMENTS, DS_MAX_META_BYTES
 *                        limits applied to untrusted files (see below)
 *     DS_MAX_ARGON_OPS, DS_MAX_ARGON_MEM
 *                        caps on a file's Argon2id parameters (8 passes,
 *                        1 GiB), refused before the KDF runs (see ds_file_info)
 *     DS_USE_OPENBLAS=1  prefill products with F32 activations (F32 and F16
 *                        weights; int8 ones where activations stay F32) of
 *                        enough tokens through OpenBLAS's cblas_sgemm; add
 *                        -lopenblas (the make flag is BLAS=1). Decode and short
 *                        batches keep the built-in kernels. OpenBLAS runs on
 *                        the calling worker only: ds_context_new sets its
 *                        thread count to 1 (openblas_set_num_threads), which
 *                        is process-wide, so a program that uses OpenBLAS
 *                        itself runs its own calls single-threaded from then
 *                        on (OPENBLAS_NUM_THREADS=1 in the environment does
 *                        the same before the library loads, and also spares
 *                        OpenBLAS's idle thread pool). With
 *                        DS_OPENBLAS_KEEP_THREADS defined as well, the count
 *                        is never changed and OpenBLAS is used only while it
 *                        is 1 (checked per product). An OpenMP build of
 *                        OpenBLAS takes the count from each calling thread's
 *                        OpenMP setting: run it with OMP_NUM_THREADS=1, else
 *                        its first call from a worker raises the count and
 *                        products go back to the built-in kernels. Each
 *                        context holds 1 MiB of scratch per thread for it.
 *
 * Conventions:
 *   - Every call that can fail returns a ds_status; DS_OK is 0, errors are
 *     negative and grouped in ranges (generic, file format, crypto, backend,
 *     misuse). Numbers are never reused.
 *   - After any failure, ds_last_error() returns a message that says what and
 *     where; it is kept per thread, and each model also keeps the message of
 *     its own last failure (ds_model_errmsg).
 *   - The library never prints, exits or aborts. Logging goes through an
 *     optional callback.
 *   - Destroying NULL is a harmless no-op.
 *   - A model handle is read-only after ds_model_open and may be shared by many
 *     threads; functions that write to it are documented as such.
 *
 * License: MIT (see LICENSE).
 * ---------------------------------------------------------------------------
 */
#ifndef DEEPSEEK_H
#define DEEPSEEK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Version ============================================================ */
/* The one place the version is written: the Makefile (the shared library's
 * file name and soname, deepseek.pc) and tools/amalgamate read these three
 * lines, and DS_VERSION_STRING is made from them. */
#define DS_VERSION_MAJOR 0
#define DS_VERSION_MINOR 1
#define DS_VERSION_PATCH 0
#define DS_VERSION_STR_(x) #x
#define DS_VERSION_XSTR_(x) DS_VERSION_STR_(x)
#define DS_VERSION_STRING \
    DS_VERSION_XSTR_(DS_VERSION_MAJOR) "." DS_VERSION_XSTR_(DS_VERSION_MINOR) "." DS_VERSION_XSTR_(DS_VERSION_PATCH)
#define DS_VERSION_NUMBER (DS_VERSION_MAJOR * 1000000 + DS_VERSION_MINOR * 1000 + DS_VERSION_PATCH)

/* Container format version this library writes, and the only one it reads.
 * Version 2 authenticates the public header with the key (a keyed BLAKE2b
 * over every header field), so an edited header is told apart from a wrong
 * key. Version 1 files (no header authentication) are refused with
 * DS_ERR_VERSION and a message asking to re-convert them: accepting them
 * would keep the unauthenticated header that version 2 exists to remove. */
#define DS_FORMAT_VERSION 2

/* ==== Linkage ============================================================ */
#ifndef DS_API
#  if defined(_WIN32) && defined(DS_BUILD_DLL)
#    define DS_API __declspec(dllexport)
#  elif defined(_WIN32) && defined(DS_USE_DLL)
#    define DS_API __declspec(dllimport)
#  elif defined(__GNUC__) || defined(__clang__)
#    define DS_API __attribute__((visibility("default")))
#  else
#    define DS_API
#  endif
#endif

#ifndef DS_WARN_UNUSED
#  if defined(__GNUC__) || defined(__clang__)
#    define DS_WARN_UNUSED __attribute__((warn_unused_result))
#  else
#    define DS_WARN_UNUSED
#  endif
#endif

/* ==== Status codes ======================================================= */
typedef enum ds_status {
    DS_OK = 0,

    /* generic: -1 .. -99 */
    DS_ERR_NOMEM = -1,            /* an allocation failed */
    DS_ERR_INVALID_ARG = -2,      /* a parameter is out of range or NULL */
    DS_ERR_IO = -3,               /* open/read/write/rename/mmap failed */
    DS_ERR_UNSUPPORTED = -4,      /* a feature this build or machine lacks */
    DS_ERR_LIMIT = -5,            /* a size exceeds a DS_MAX_* limit */
    DS_ERR_CANCELLED = -6,        /* a progress callback asked to stop */
    DS_ERR_EXISTS = -7,           /* refusing to overwrite an existing file */
    DS_ERR_INTERNAL = -8,         /* a bug: please report it */

    /* file format: -100 .. -199 */
    DS_ERR_NOT_DSM = -100,        /* not a .dsm container (bad magic) */
    DS_ERR_VERSION = -101,        /* container format version this library does not read: newer, or
                                     older than DS_FORMAT_VERSION (re-convert it) */
    DS_ERR_TRUNCATED = -102,      /* file shorter than its header says */
    DS_ERR_CORRUPT = -103,        /* structurally invalid container (checksum, bounds) */
    DS_ERR_JSON = -104,           /* malformed JSON (config, tokenizer, safetensors header) */
    DS_ERR_SAFETENSORS = -105,    /* malformed safetensors file */
    DS_ERR_MISSING_TENSOR = -106, /* a tensor the architecture needs is absent */
    DS_ERR_SHAPE = -107,          /* a tensor has the wrong shape or dtype */
    DS_ERR_ARCH = -108,           /* unsupported model architecture */
    DS_ERR_CONFIG = -109,         /* config.json lacks a field or has a bad value */
    DS_ERR_GGUF = -110,           /* malformed GGUF file */
    DS_ERR_NOT_ADAPTER = -111,    /* a model file where an adapter was expected, or the reverse */
    DS_ERR_ADAPTER = -112,        /* a LoRA adapter that does not fit: target module, rank, tensors */
    DS_ERR_ADAPTER_BASE = -113,   /* an adapter made for another base model */
    DS_ERR_CALIBRATION = -114,    /* a calibration file (ds calibrate) that is malformed or was made for
                                     another model */

    /* crypto: -200 .. -299 */
    DS_ERR_WRONG_KEY = -200,      /* the key does not match the file's key check */
    DS_ERR_AUTH = -201,           /* a chunk failed authentication: tampered or damaged */
    DS_ERR_NEED_KEY = -202,       /* the file is encrypted and no key/passphrase was given */
    DS_ERR_NO_AES = -203,         /* this CPU lacks the AES instructions the cipher needs */
    DS_ERR_CRYPTO = -204,         /* crypto library initialisation or KDF failure */
    DS_ERR_PLAINTEXT = -205,      /* the file is not encrypted but a key or passphrase was given
                                     (ds_model_params.allow_plaintext) */

    /* backend: -300 .. -399 */
    DS_ERR_BACKEND = -300,        /* a compute backend failed */
    DS_ERR_NO_DEVICE = -301,      /* the requested device is not present */

    /* misuse: -400 .. -499 */
    DS_ERR_MISUSE = -400          /* API called in the wrong order or on a bad handle */
} ds_status;

/* Static text for a status ("wrong key", ...). Never NULL. Thread-safe. */
DS_API const char *ds_status_string(ds_status s);

/* Detailed message of the last failure of a ds_* call on the calling thread
 * ("" if none). The pointer stays valid until the next ds_* call on this
 * thread. Never contains key material. */
DS_API const char *ds_last_error(void);

DS_API int ds_version_number(void);
DS_API const char *ds_version_string(void);
/* Identifies the exact sources (a hash of the amalgamated inputs). */
DS_API const char *ds_source_id(void);

/* ==== Allocator, logging, progress ======================================= */
/* Allocator hooks. Either all three functions are set or none (all NULL =
 * the C library). A partly set allocator is refused with DS_ERR_INVALID_ARG.
 * Rule: a zeroed ds_allocator means the default (the C library).
 * Large weight buffers are mapped with mmap (so they can be excluded from core
 * dumps and wiped) and do not go through these hooks. */
typedef struct ds_allocator {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*realloc_fn)(void *ptr, size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} ds_allocator;

typedef enum ds_log_level { DS_LOG_ERROR = 0, DS_LOG_WARN = 1, DS_LOG_INFO = 2, DS_LOG_DEBUG = 3 } ds_log_level;
/* Called from the thread doing the work. msg has no trailing newline. */
typedef void (*ds_log_fn)(void *user, ds_log_level level, const char *msg);

/* Progress of long operations. Return non-zero to cancel (DS_ERR_CANCELLED). */
typedef int (*ds_progress_fn)(void *user, uint64_t done, uint64_t total, uint64_t bytes);

/* ==== Keys =============================================================== */
#define DS_KEY_BYTES 32

/* Fills key with DS_KEY_BYTES random bytes from the OS CSPRNG. */
DS_API DS_WARN_UNUSED ds_status ds_key_generate(unsigned char key[DS_KEY_BYTES]);
/* Writes a key file (exactly 32 raw bytes) with mode 0600. Refuses to
 * overwrite an existing file (DS_ERR_EXISTS). */
DS_API DS_WARN_UNUSED ds_status ds_key_file_write(const char *path, const unsigned char key[DS_KEY_BYTES]);
/* Reads a key file: exactly 32 raw bytes, or 64 hex digits (optional trailing
 * newline). Anything else is DS_ERR_INVALID_ARG. */
DS_API DS_WARN_UNUSED ds_status ds_key_file_read(const char *path, unsigned char key[DS_KEY_BYTES]);
/* Zeroes memory in a way the compiler cannot remove. */
DS_API void ds_memzero(void *p, size_t n);

/* ==== Container public header (no key needed) ============================ */
typedef enum ds_cipher {
    DS_CIPHER_NONE = 0,           /* plaintext, integrity-checked (BLAKE2b tags) */
    DS_CIPHER_AES256GCM = 1       /* AES-256-GCM */
} ds_cipher;

typedef enum ds_kdf {
    DS_KDF_NONE = 0,              /* plaintext file: no key */
    DS_KDF_RAW_KEY = 1,           /* 32-byte key; subkeys by keyed BLAKE2b over the file salt */
    DS_KDF_ARGON2ID = 2           /* passphrase through Argon2id, then as RAW_KEY */
} ds_kdf;

typedef struct ds_file_info {
    uint32_t format_version;
    ds_cipher cipher;
    ds_kdf kdf;
    uint32_t chunk_bytes;         /* plaintext bytes per sealed chunk */
    uint64_t file_bytes;          /* size recorded in the header */
    uint64_t meta_offset;         /* sealed metadata: offset and stored size */
    uint64_t meta_bytes;
    uint64_t argon_opslimit;      /* DS_KDF_ARGON2ID only; at most DS_MAX_ARGON_OPS (8) */
    uint64_t argon_memlimit;      /* bytes; at most DS_MAX_ARGON_MEM (1 GiB) */
} ds_file_info;

/* Reads and checks the public header of a container: its checksum (damage),
 * version, field consistency and the Argon2id caps (parameters above
 * DS_MAX_ARGON_OPS or DS_MAX_ARGON_MEM are DS_ERR_LIMIT, naming the cap).
 * Without a key the header cannot be authenticated: ds_model_open does that.
 * A path that is not a regular file (a FIFO, a directory, a device) is
 * refused with DS_ERR_IO without blocking. */
DS_API DS_WARN_UNUSED ds_status ds_file_info_read(const char *path, ds_file_info *out);
DS_API const char *ds_cipher_name(ds_cipher c);

/* ==== Model ============================================================== */
typedef struct ds_model ds_model;

/* Where the forward pass runs. */
typedef enum ds_device {
    DS_DEVICE_CPU = 0,
    DS_DEVICE_CUDA = 1            /* an NVIDIA GPU; needs a build with CUDA (make CUDA=1) */
} ds_device;

/* Eviction policy of the routed-expert cache. */
typedef enum ds_evict_policy {
    DS_EVICT_LRU = 0,             /* least recently used */
    DS_EVICT_LFU_DECAY = 1        /* least frequently used: counts of every expert's uses, cached or
                                     not, halving over 32 tokens' worth of uses */
} ds_evict_policy;

/* Prefetch of the routed-expert cache: a worker thread decrypts the experts
 * predicted for the next layer while the current one computes. */
typedef enum ds_prefetch_mode {
    DS_PREFETCH_OFF = 0,          /* experts are decrypted when a layer asks for them */
    DS_PREFETCH_AUTO = 1,         /* ahead when it can overlap: an expert whose ciphertext must come
                                     from storage, or any expert when the machine has a CPU beyond
                                     the model's compute threads (or the forward pass runs on CUDA).
                                     An expert already in memory (page cache, tmpfs) with no CPU to
                                     spare is decrypted on demand by the compute threads together:
                                     ahead, the worker would only take the same cores from them, and
                                     a wrong guess wastes its work */
    DS_PREFETCH_ALWAYS = 2        /* every guess good enough to fetch (and each layer's choice) */
} ds_prefetch_mode;

/* Options of ds_model_open. Rule: start from ds_model_default_params(); a
 * struct it did not make (a zeroed one: `ds_model_params mp = {0};`) is
 * refused with DS_ERR_INVALID_ARG and a message naming it. Zero cannot mean
 * the default here: load_weights 0 (metadata only), DS_PREFETCH_OFF (0) and
 * DS_EVICT_LRU (0) are real choices, and renumbering the enums would break
 * the ABI. NULL params means the defaults. Enum fields outside their values
 * are refused with a message naming the field. */
typedef struct ds_model_params {
    const unsigned char *key;     /* DS_KEY_BYTES raw bytes; copied, caller may wipe after open */
    size_t key_len;
    const char *passphrase;       /* alternative to key for DS_KDF_ARGON2ID files */
    size_t passphrase_len;
    int load_weights;             /* 1 (default): decrypt dense weights; 0: metadata only
                                     (inspect, verify, tensor directory) */
    uint64_t expert_cache_bytes;  /* routed-expert cache budget; 0 = all resident. Otherwise experts
                                     are decrypted on demand into at most this many bytes of slots
                                     (at least 2 experts' worth) */
    ds_prefetch_mode prefetch;    /* DS_PREFETCH_AUTO (the default), DS_PREFETCH_ALWAYS or
                                     DS_PREFETCH_OFF */
    ds_evict_policy evict_policy; /* DS_EVICT_LFU_DECAY (the default) or DS_EVICT_LRU */
    int n_threads;                /* 0 = number of online CPUs */
    ds_allocator allocator;       /* all NULL = C library */
    ds_log_fn log;                /* NULL = silent */
    void *log_user;
    uint64_t page_cache_bytes;    /* with an expert cache: ciphertext of recently decrypted experts
                                     the OS page cache may keep (most recent first), so a refill
                                     reads memory, not disk; older ciphertext is dropped with
                                     posix_fadvise (a model opened with ds_model_open_io: its
                                     release callback is called instead). 0 (default) = drop each
                                     expert's ciphertext right after decrypting it. With an expert
                                     cache (or with every expert in VRAM) the open drops what it
                                     reads too (the metadata, the dense segments' ciphertext once
                                     opened), so it never holds the dense part twice; a file that
                                     was in memory already (tmpfs, another reader's cache) is left
                                     as it is */
    int exact_activations;        /* 0 (default): products with int8 (Q8_0) and 4-bit (Q4_0) weights
                                     quantize the activations to int8 per block of 32 on the fly (integer dot
                                     products, as llama.cpp does); 1: F32 activations (slower,
                                     closest to the reference) */
    ds_device device;             /* DS_DEVICE_CPU (default) or DS_DEVICE_CUDA: dense weights and the
                                     KV cache in device memory, routed experts in a VRAM expert
                                     cache filled from the host (expert_cache_bytes still bounds the
                                     host side). When CUDA is asked for but the library was built
                                     without it or no device is present, the model runs on the CPU
                                     and a DS_LOG_WARN notice says so; ds_model_device() tells
                                     which was used. Other CUDA failures fail the open */
    int gpu_index;                /* CUDA device ordinal (default 0) */
    uint64_t gpu_cache_bytes;     /* VRAM expert cache budget; 0 = every routed expert in device
                                     memory. Otherwise at least 2 experts' worth */
    ds_progress_fn progress;      /* NULL = none. Called on the opening thread after each segment
                                     ds_model_open decrypts into memory, with (segments loaded,
                                     segments to load, plaintext bytes loaded); a non-zero return
                                     cancels the open: DS_ERR_CANCELLED, everything freed */
    void *progress_user;
    uint32_t magic;               /* set by ds_model_default_params(); leave it as it is */
    int allow_plaintext;          /* 0 (default): a plaintext file (cipher none, made with
                                     encrypt = 0 / `ds convert --no-encrypt`) is refused with
                                     DS_ERR_PLAINTEXT when a key or passphrase is given: its
                                     integrity key comes from its public salt, so anyone who can
                                     write the model path could put one there, and a caller that
                                     gives a key expects the vendor's sealed file. Without a key or
                                     passphrase a plaintext file opens (the caller asked for no
                                     secrecy). 1: plaintext files open even with a key given (the
                                     key is then unused) */
    int mlock;                    /* 1: lock the key material, the dense weights and the host expert
                                     cache into RAM (mlock(2)), so their plaintext is never written
                                     to swap; the whole expert cache is then resident from the open.
                                     Best effort: what the OS refuses (RLIMIT_MEMLOCK, `ulimit -l`)
                                     stays unlocked and the open still succeeds; a DS_LOG_WARN line
                                     says how many bytes and why, and ds_model_mlock_info() tells.
                                     0 (default): nothing is locked */
    int huge_pages;               /* 1 (default): the resident weights and the host expert cache ask
                                     the kernel for transparent huge pages (2 MiB aligned,
                                     madvise(MADV_HUGEPAGE)): decoding streams the weights, and
                                     2 MiB pages take one TLB entry where 4 KiB pages take 512.
                                     Memory use is unchanged (nothing beyond each buffer's own size
                                     becomes resident), but a paged expert cache becomes resident
                                     2 MiB at a time. First touches can cost more: on a virtual
                                     machine that hands free memory back to its host, opening took
                                     longer (bench/results/hugepages/). Where the kernel has no
                                     transparent huge pages, or they are off (/sys/kernel/mm/
                                     transparent_hugepage/enabled is `never`), the memory has
                                     ordinary pages and the open succeeds; a DS_LOG_DEBUG line says
                                     what was asked and obtained, and ds_model_huge_page_info()
                                     tells. 0: ordinary pages only */
} ds_model_params;

/* The defaults: load_weights 1, DS_PREFETCH_AUTO, DS_EVICT_LFU_DECAY,
 * DS_DEVICE_CPU, huge_pages 1, everything else 0 or NULL, and the magic that
 * ds_model_open checks. */
DS_API ds_model_params ds_model_default_params(void);

/* Opens a container: opens it read-only, checks the header, derives the keys,
 * authenticates the header and then the metadata, and (with load_weights) decrypts the
 * dense segments into memory the model owns (reporting each to
 * params->progress, which may cancel: DS_ERR_CANCELLED). On failure *out is
 * NULL and ds_last_error() says why: DS_ERR_INVALID_ARG for params not made
 * by ds_model_default_params() or an enum field (prefetch, evict_policy,
 * device) outside its values, among others. Thread-safe (opens are
 * independent).
 *
 * The header is checked in this order: its unkeyed checksum (damage:
 * DS_ERR_CORRUPT), the version, the Argon2id parameters against
 * DS_MAX_ARGON_OPS / DS_MAX_ARGON_MEM (DS_ERR_LIMIT, before the KDF runs),
 * then the key: the key check (DS_ERR_WRONG_KEY: "wrong key", or for a
 * passphrase "wrong passphrase, or the header's key-derivation parameters
 * were changed"), then the header's keyed MAC (DS_ERR_AUTH, "header
 * modified": any field edited after sealing, with the right key), and only
 * then the header's fields and the file's size. The key check depends on the
 * key alone, not on any header field, so with the right key an edited header
 * always reads "header modified". A plaintext file: see allow_plaintext.
 * A path that is not a regular file is refused (DS_ERR_IO) without blocking. */
DS_API DS_WARN_UNUSED ds_status ds_model_open(ds_model **out, const char *path, const ds_model_params *params);

/* Opens a container from a descriptor the app holds instead of a path: a
 * file in its bundle, a memfd (memfd_create), a file it opened itself. The
 * container is the whole file, from byte 0 to its end (extra bytes after it
 * are refused, as for a path); the file position is neither used nor moved
 * (reads are preadv at offsets). fd must be open for reading and be a
 * regular file (a memfd is one): a negative fd is DS_ERR_INVALID_ARG, so is
 * one that is not open; a write-only or O_PATH descriptor, a directory, a
 * FIFO, a socket or a device is DS_ERR_IO, saying which.
 *
 * The model never closes fd: it duplicates it (fcntl F_DUPFD_CLOEXEC) and
 * reads, pages and closes (in ds_model_close) its duplicate only, so the app
 * may close fd, or go on using it, as soon as this returns. Everything else
 * is as ds_model_open: the same checks and errors, an expert cache pages
 * through the duplicate exactly as through a path (with the same page-cache
 * hints), and a file changed or truncated under a running model is reported
 * as for a path. Messages name the source "<fd N>" (N is fd). Thread-safe
 * (opens are independent). */
DS_API DS_WARN_UNUSED ds_status ds_model_open_fd(ds_model **out, int fd, const ds_model_params *params);

/* A container the app serves itself, for ds_model_open_io: sealed bytes in
 * a buffer linked into the program, a member of an archive, a blob in the
 * app's own storage layer. The container is the bytes [0, size) as read_at
 * returns them; they are authenticated like a file's (the header's MAC and
 * every chunk's tag), so a callback that serves other bytes (another
 * container, a shifted offset, a damaged copy) fails the read that sees them
 * with DS_ERR_AUTH, never with wrong weights. Zero it first
 * (`ds_model_io io = {0};`) and set the fields. */
typedef struct ds_model_io {
    uint64_t size;                /* the container's size in bytes (the header's file_bytes; a
                                     different size fails the open, as a truncated or extended
                                     file does). 0 is DS_ERR_INVALID_ARG */
    /* Reads up to n bytes at offset into buf (offset + n never passes size).
     * Returns the bytes read, 1 to n: fewer than n is fine (the rest is
     * asked for again at the next offset); 0 means the end of the data (the
     * read that needed the bytes fails, DS_ERR_TRUNCATED); a negative value is
     * a failure (DS_ERR_IO): -errno (such as -EIO) puts that error's text in
     * the message, -1 is a failure without a name. Not retried on -EINTR.
     * Called from several threads at once (the opening thread, the compute
     * threads, the expert pager's prefetch thread, ds_model_verify's
     * workers): it must be safe for that. Required. */
    int64_t (*read_at)(void *user, void *buf, size_t n, uint64_t offset);
    /* Optional (NULL = none). [offset, offset + len) is not needed for now:
     * the expert pager calls it after decrypting a routed expert, where a
     * file's ciphertext would be dropped from the page cache
     * (ds_model_params.page_cache_bytes says how much recently read
     * ciphertext is kept first), so a storage layer may let go of a buffer
     * or a cache entry. The range may be read again later. Called from
     * several threads at once, like read_at. */
    void (*release)(void *user, uint64_t offset, uint64_t len);
    void *user;                   /* passed to both callbacks */
    const char *name;             /* NULL or "" = "<io>": the source's name in messages and the log
                                     (copied at open) */
} ds_model_io;

/* Opens a container through the app's read callback (see ds_model_io)
 * instead of a path: the same checks, keys, errors and results as
 * ds_model_open, resident or paged (an expert cache reads each expert
 * through read_at when it misses). *io is copied: the struct itself may go
 * once this returns, but the callbacks and user must stay valid, and
 * read_at keep serving the same bytes, until ds_model_close returns (every
 * context and adapter over the model closed). What a file has and a
 * callback has not: there is no change detection (a callback that starts
 * serving other bytes is caught by authentication, DS_ERR_AUTH), no
 * page-cache hints, and with DS_PREFETCH_AUTO the pager treats every expert
 * as coming from storage (it decrypts ahead). Errors name the source
 * ("<io>" or io->name), the segment and the offset of a failed read.
 * DS_ERR_INVALID_ARG for a NULL out or io, a NULL read_at or size 0.
 * Thread-safe (opens are independent). */
DS_API DS_WARN_UNUSED ds_status ds_model_open_io(ds_model **out, const ds_model_io *io,
                                                 const ds_model_params *params);

/* Wipes and frees everything the model owns. NULL is a no-op (DS_OK).
 * Returns DS_ERR_MISUSE (and closes nothing) while contexts still use it. */
DS_API ds_status ds_model_close(ds_model *m);

/* Message of the model's last failure ("" if none). */
DS_API const char *ds_model_errmsg(const ds_model *m);

/* The device the model's forward pass runs on (DS_DEVICE_CPU for NULL). */
DS_API ds_device ds_model_device(const ds_model *m);
/* A line describing it: "cpu (2 threads, avx2)", "cuda:0 NVIDIA H200". */
DS_API const char *ds_model_device_name(const ds_model *m);

typedef enum ds_arch {
    DS_ARCH_UNKNOWN = 0,
    DS_ARCH_DEEPSEEK_V2 = 1,      /* DeepseekV2ForCausalLM: V2, V2-Lite, V2.5 */
    DS_ARCH_DEEPSEEK_V3 = 2,      /* DeepseekV3ForCausalLM: V3, R1 */
    DS_ARCH_DEEPSEEK_MOE = 3      /* DeepseekForCausalLM: DeepSeek-MoE 16B */
} ds_arch;

typedef enum ds_scoring { DS_SCORING_SOFTMAX = 0, DS_SCORING_SIGMOID = 1 } ds_scoring;
typedef enum ds_topk_method {
    DS_TOPK_GREEDY = 0,
    DS_TOPK_GROUP_LIMITED_GREEDY = 1,
    DS_TOPK_NOAUX_TC = 2
} ds_topk_method;

/* Model hyper-parameters (from the file's authenticated config.json). */
typedef struct ds_model_config {
    ds_arch arch;
    int vocab_size;
    int hidden_size;
    int intermediate_size;        /* dense MLP */
    int moe_intermediate_size;    /* one routed or shared expert */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int n_routed_experts;
    int n_shared_experts;
    int n_experts_per_tok;
    int first_k_dense_replace;
    int moe_layer_freq;
    int q_lora_rank;              /* 0 = no q-LoRA */
    int kv_lora_rank;             /* 0 = multi-head attention (DeepSeek-MoE) */
    int qk_nope_head_dim;
    int qk_rope_head_dim;
    int v_head_dim;
    int head_dim;                 /* DeepSeek-MoE: hidden_size / n_heads */
    int n_group;
    int topk_group;
    ds_topk_method topk_method;
    ds_scoring scoring_func;
    int norm_topk_prob;
    float routed_scaling_factor;
    float rms_norm_eps;
    float rope_theta;
    int max_position_embeddings;
    int rope_scaling_yarn;        /* 1 when rope_scaling.type is "yarn" */
    float rope_factor;
    int rope_original_max_position;
    float rope_beta_fast;
    float rope_beta_slow;
    float rope_mscale;
    float rope_mscale_all_dim;
    int tie_word_embeddings;
    int bos_token_id;             /* -1 if absent */
    int eos_token_id;             /* -1 if absent */
    /* tokenizer summary */
    int tok_vocab;                /* entries in model.vocab */
    int tok_merges;
    int tok_added;                /* added_tokens */
    int has_chat_template;
} ds_model_config;

DS_API DS_WARN_UNUSED ds_status ds_model_get_config(const ds_model *m, ds_model_config *out);

/* What pruning the converter applied (ds_convert_params.prune, prune_n /
 * prune_m): *json points at the file's pruning record, owned by m and valid
 * until ds_model_close, and *len is its length; both NULL / 0 for a model
 * converted without pruning (DS_OK either way). The record is JSON:
 *   {"format": "deepseek.h prune 1", "ratio": R, "structured": "N:M" | null,
 *    "classes": ["core", "experts"], "storage": "auto" | "dense",
 *    "matrices": pruned matrices, "entries": their entries,
 *    "zeroed": entries that are 0 after pruning (including those that were
 *    0 before), "sparse": {"q8_0_24": matrices, "q8_0_sp": matrices}}
 * DS_ERR_INVALID_ARG for NULL arguments. */
DS_API DS_WARN_UNUSED ds_status ds_model_get_pruning(const ds_model *m, const char **json, size_t *len);

typedef enum ds_dtype {
    DS_DTYPE_F32 = 0,
    DS_DTYPE_F16 = 1,
    DS_DTYPE_Q8_0 = 2,            /* rows of blocks {f16 scale; int8 q[32]} (34 bytes), x = q*scale */
    DS_DTYPE_Q4_0 = 3,            /* rows of blocks {f16 scale d; u8 qs[16]} (18 bytes), llama.cpp's Q4_0:
                                     value j < 16 is the low nibble of qs[j], value j + 16 its high
                                     nibble; x = (nibble - 8) * d */
    /* Pruned Q8_0 weights (ds convert --prune / --prune-structured): the
     * scale and the int8 values are those Q8_0 gives the same row (the
     * values that survive pruning quantize exactly as in Q8_0); only the
     * zeros stop costing bytes. The CPU backend multiplies them in place
     * (fused kernels for one token; a batch expands a few rows at a time to
     * Q8_0); the CUDA backend keeps them dense: they are expanded to Q8_0
     * rows on the host when uploaded, so the device sees Q8_0. */
    DS_DTYPE_Q8_0_24 = 4,         /* 2:4 packed: rows of blocks of 32 values, 22 bytes {f16 d; u8 pos[4];
                                     int8 q[16]}: group g (values 4g..4g+3) keeps two positions p0, p1
                                     (0..3) holding q[2g], q[2g+1]; pos byte k holds group 2k in bits
                                     0-1 (p0) and 2-3 (p1), group 2k+1 in bits 4-5 and 6-7. Decoding:
                                     all 32 values 0, then value 4g+p0 = q[2g]*d, then value 4g+p1 =
                                     q[2g+1]*d (p0 == p1: the second wins) */
    DS_DTYPE_Q8_0_SP = 5          /* masked sparse: a row of n values (nb = n/32 blocks) is f16 d[nb],
                                     u32 mask[nb] (bit i: value i of the block is stored), then the
                                     int8 q of the set bits, block by block, in order, then zeros up
                                     to the row stride; x = q*d, unstored values 0. The stride is the
                                     tensor's own (ds_tensor_info.nbytes = rows * stride + n: the n
                                     zero bytes after the last row guard the readers, so no mask can
                                     make one read outside the tensor); stride = (nbytes - n) / rows,
                                     between nb*6 and nb*6 + n */
} ds_dtype;
DS_API const char *ds_dtype_name(ds_dtype t);

typedef struct ds_tensor_info {
    const char *name;             /* owned by the model */
    ds_dtype dtype;
    int n_dims;
    uint64_t dims[4];             /* dims[0] = rows (output features), as in the checkpoint */
    uint32_t segment;             /* index into the segment table */
    uint64_t offset;              /* byte offset inside the segment's plaintext */
    uint64_t nbytes;
    int param_class;              /* DS_PARAM_CORE, DS_PARAM_EXPERT or DS_PARAM_ROUTER */
} ds_tensor_info;

/* The classes of parameters (a converter's precision recipe sets each):
 * routed experts; the router (each MoE layer's gate weight and its score
 * correction bias); and the core, everything else (embeddings, attention,
 * dense and shared-expert FFNs, norms, the head). */
enum { DS_PARAM_CORE = 0, DS_PARAM_EXPERT = 1, DS_PARAM_ROUTER = 2 };

DS_API size_t ds_model_tensor_count(const ds_model *m);
DS_API DS_WARN_UNUSED ds_status ds_model_tensor_info(const ds_model *m, size_t i, ds_tensor_info *out);
/* Index of the tensor with this name, or DS_ERR_MISSING_TENSOR. */
DS_API DS_WARN_UNUSED ds_status ds_model_tensor_find(const ds_model *m, const char *name, size_t *index);
/* Dequantizes a whole tensor into dst (n_elements floats). Works for dense and
 * routed-expert tensors (the latter are decrypted on the fly into a temporary
 * buffer that is wiped afterwards), and with load_weights = 0. Thread-safe. */
DS_API DS_WARN_UNUSED ds_status ds_model_tensor_read_f32(const ds_model *m, size_t index, float *dst, size_t n_elements);

typedef enum ds_segment_kind {
    DS_SEGMENT_DENSE = 1,         /* embeddings, a layer's non-expert tensors, output head */
    DS_SEGMENT_EXPERT = 2         /* one routed expert of one layer: gate, up, down */
} ds_segment_kind;

typedef struct ds_segment_info {
    ds_segment_kind kind;
    int layer;                    /* -1: embeddings, n_layers: final norm + head */
    int expert;                   /* -1 for dense segments */
    uint64_t file_offset;         /* page-aligned */
    uint64_t plain_bytes;
    uint64_t stored_bytes;        /* plaintext + one tag per chunk */
    uint32_t n_chunks;
} ds_segment_info;

DS_API size_t ds_model_segment_count(const ds_model *m);
DS_API DS_WARN_UNUSED ds_status ds_model_segment_info(const ds_model *m, size_t i, ds_segment_info *out);
/* Writes a short human-readable name for a segment ("layer 3 expert 17",
 * "embeddings", "layer 2 dense", "output") into buf. */
DS_API void ds_model_segment_name(const ds_model *m, size_t i, char *buf, size_t len);

/* Authenticates every chunk of every segment without keeping plaintext.
 * Returns DS_OK only when all pass; otherwise DS_ERR_AUTH (or another status)
 * and a message naming the first bad segment. progress gets (segments done,
 * total, bytes done). Uses up to n_threads threads. */
/* Dropped experts. A model converted with drop_experts (`ds convert
 * --drop-experts R --calib stats.json`) lacks some routed experts in each
 * MoE layer: their weights are not in the file and their router rows are
 * gone. Routing follows the family's rules over the experts left, as if a
 * dropped expert's router logit were -infinity: softmax scores (V2,
 * DeepSeek-MoE) renormalise over the remaining experts; sigmoid scores with
 * noaux_tc (V3) never select one (the correction bias steers only the
 * remaining ones). Groups keep their original membership (expert id / (E /
 * n_group)); a group's score is computed over its remaining members (V3: the
 * sum of its top two selection scores, -inf when fewer than two remain; V2's
 * group_limited_greedy: its best score, -inf when none remains), and the
 * topk_group best groups are kept as before. Conversion refuses a drop
 * after which the topk_group emptiest groups hold fewer than
 * num_experts_per_tok experts, so the chosen groups always offer top_k.
 * Expert ids everywhere (routing observers, cache statistics, tensor names)
 * are the original ones. The expert caches (ds_model_params cache, the GPU
 * cache) only ever hold present experts. */
typedef struct ds_expert_pruning {
    int pruned;                    /* 1: experts were dropped at conversion; 0: the rest is zero */
    double ratio;                  /* drop_experts as given */
    int n_dropped;                 /* experts dropped in each MoE layer */
    char calib_file[256];          /* the calibration file's name as conversion read it (informational) */
    char calib_text[256];          /* the text it was made from, as ds calibrate recorded it ("" if none) */
    uint64_t calib_tokens;         /* its tokens (0 if not recorded) */
    const char *json;              /* the container's record (format in README.md), valid until close */
    size_t json_len;
} ds_expert_pruning;
/* Fills out. DS_ERR_INVALID_ARG for NULL arguments. */
DS_API DS_WARN_UNUSED ds_status ds_model_expert_pruning(const ds_model *m, ds_expert_pruning *out);
/* present[x] = 1 when routed expert x of layer `layer` is in the file, 0
 * when it was dropped, for x < n_routed_experts (n must be at least that).
 * DS_ERR_INVALID_ARG for NULL arguments, a short n, or a layer that is not
 * a MoE layer. */
DS_API DS_WARN_UNUSED ds_status ds_model_layer_experts(const ds_model *m, int layer, unsigned char *present, size_t n);

DS_API DS_WARN_UNUSED ds_status ds_model_verify(const ds_model *m, int n_threads, ds_progress_fn progress, void *user);

/* ==== Memory plan ======================================================== */
/* What a model takes in memory, from its own segment directory (not its
 * config alone), and how to fit it in a budget: what `ds inspect --plan`
 * prints. Works on a model opened with load_weights = 0 (the metadata is
 * enough), so a program can size its expert cache before it loads weights:
 * open metadata-only, plan, reopen with expert_cache_bytes = cache_bytes.
 *
 * The memory model (tools/model_sizes.py computes the same from a config):
 *   resident  the dense segments' plaintext (embeddings, attention, dense and
 *             shared-expert FFNs, routers, norms, head), each rounded up to a
 *             4 KiB page as file.c holds them: what every open keeps;
 *   experts   the routed experts' plaintext, page-rounded the same way (all
 *             of it is held when there is no expert cache);
 *   context   one ds_context of n_ctx positions and n_seq sequences: the F32
 *             KV cache (MLA: latent + rope key; MHA: K and V; per layer,
 *             position and sequence) and the forward pass's scratch for a
 *             batch of 256 tokens (activations, int8 copies, MLA expansion,
 *             a logits row, with several sequences one per sequence, the
 *             token ids). Per-thread buffers (a few hundred KB each) are
 *             left to the slack;
 *   slack     64 MiB + 1/64 of the budget: the tokenizer and metadata, the
 *             per-thread buffers, the allocator and the program itself.
 * A cache of B bytes holds floor(B / slot) experts (slot: the largest
 * expert rounded up to 4 KiB, as pager.c sizes them) and needs at least 2.
 * The hit rate is a model, not a measurement: under uniform routing (every
 * (layer, expert) pair equally likely, tokens independent) an LRU or LFU
 * cache of C of the N experts serves C/N of the lookups. Real routing is
 * skewed, so LFU usually does better; `ds bench --sweep` measures it.
 * The figures are host memory for a CPU run of one context (ds-server's
 * holds --max-concurrent sequences: n_seq; a program with several contexts
 * adds context_bytes for each but the first); with DS_DEVICE_CUDA the dense part and the KV cache live in device memory
 * instead, and gpu_cache_bytes sizes the VRAM expert cache.
 *
 *     ds_memory_plan_params pp = {0};
 *     pp.mem_bytes = 16ull << 30;
 *     ds_memory_plan plan;
 *     if (ds_model_memory_plan(meta_only, &pp, &plan) == DS_OK && plan.fits)
 *         mp.expert_cache_bytes = plan.cache_bytes;   // 0 when all fit resident
 */
#define DS_PLAN_SLACK_FIXED (64ull << 20)   /* slack: this + mem_bytes / DS_PLAN_SLACK_DIV */
#define DS_PLAN_SLACK_DIV 64
typedef struct ds_memory_plan {
    /* ---- the file ---- */
    uint64_t resident_bytes;      /* dense segments, page-rounded: held by every open */
    uint64_t expert_bytes;        /* routed experts, page-rounded, all layers */
    uint64_t n_experts;           /* routed experts in the file (dropped ones are not) */
    int n_expert_layers;          /* layers that have routed experts */
    uint64_t slot_bytes;          /* one expert cache slot: the largest expert, page-rounded; 0 = no experts */
    /* ---- one context (ds_context_new) ---- */
    int n_ctx;                    /* the positions the context figures are for */
    int n_seq;                    /* its sequences (ds_context_params.n_seq), each with a KV cache */
    uint64_t kv_bytes_per_token;  /* KV cache of one position of one sequence, all layers (F32) */
    uint64_t kv_bytes;            /* kv_bytes_per_token * n_ctx * n_seq */
    uint64_t scratch_bytes;       /* the rest of a context */
    uint64_t context_bytes;       /* kv_bytes + scratch_bytes */
    /* ---- totals ---- */
    uint64_t full_bytes;          /* resident + experts + context: an open with no expert cache */
    uint64_t min_paged_bytes;     /* resident + context + 2 slots: the least a paged run takes
                                     (without slack); 0 when there are no routed experts */
    uint64_t min_mem_bytes;       /* the smallest mem_bytes that fits: resident + context + the
                                     smaller of (a cache of 2 slots, in whole MiB) and all the
                                     experts + the slack of that budget */
    /* ---- against the budget (zero when mem_bytes is 0) ---- */
    uint64_t mem_bytes;           /* the budget, as asked */
    uint64_t slack_bytes;         /* DS_PLAN_SLACK_FIXED + mem_bytes / DS_PLAN_SLACK_DIV */
    int fits;                     /* 1: all resident fits, or a cache of at least 2 slots does */
    int all_resident;             /* 1: full_bytes + slack fits: no expert cache needed */
    uint64_t shortfall_bytes;     /* fits 0: min_mem_bytes - mem_bytes */
    uint64_t cache_bytes;         /* fits and not all_resident: the expert cache budget (a whole
                                     number of MiB: --cache-mb cache_bytes >> 20; ds_model_params
                                     expert_cache_bytes), mem - resident - context - slack, rounded
                                     down to a MiB; never more than n_experts slots need */
    uint64_t cache_slots;         /* experts the cache holds: cache_bytes / slot_bytes, at most n_experts
                                     (n_experts when all_resident) */
    double cache_share;           /* cache_slots / n_experts (1 when all_resident) */
    double hit_rate;              /* expected share of expert lookups served from memory under
                                     uniform routing: cache_share */
} ds_memory_plan;

/* What to plan for. Every field's default is 0, so `ds_memory_plan_params
 * pp = {0};`, ds_memory_plan_default_params() and NULL are the same. */
typedef struct ds_memory_plan_params {
    int n_ctx;                    /* positions per context; 0 = ds_context_new's default:
                                     min(4096, the model's maximum) */
    int n_seq;                    /* sequences of the context (ds_context_params.n_seq; ds-server:
                                     --max-concurrent); 0 = 1 */
    uint64_t mem_bytes;           /* the budget; 0 = none: the file's and the context's figures only */
} ds_memory_plan_params;

DS_API ds_memory_plan_params ds_memory_plan_default_params(void);   /* all zero */

/* Fills out for the model and params (NULL = the defaults).
 * DS_ERR_INVALID_ARG for a NULL model or out, n_ctx outside [0, 4194304] or
 * n_seq outside [0, 256]; DS_ERR_LIMIT when a figure overflows 64
 * bits; DS_ERR_NOMEM (a few bytes per layer come from the model's
 * allocator). A budget too small is not an error: fits is 0 and
 * shortfall_bytes says by how much. Thread-safe. */
DS_API DS_WARN_UNUSED ds_status ds_model_memory_plan(const ds_model *m, const ds_memory_plan_params *params,
                                                     ds_memory_plan *out);

/* ==== Expert cache statistics =========================================== */
typedef struct ds_cache_stats {
    uint64_t budget_bytes, slot_bytes;
    int n_slots;                  /* 0: experts are resident (no cache) */
    uint64_t hits;                /* expert found in the cache */
    uint64_t misses;              /* decrypted while the forward pass waited */
    uint64_t prefetch_issued;     /* experts queued for prefetch */
    uint64_t prefetch_hits;       /* prefetched experts later used */
    uint64_t prefetch_wasted;     /* prefetched experts evicted unused */
    uint64_t prefetch_dropped;    /* prefetches skipped: every slot busy */
    uint64_t prefetch_skipped;    /* guesses not fetched: guesses of their rank (best, second, ...)
                                     were right less than 70% of the time so far */
    uint64_t prefetch_in_memory;  /* experts not fetched ahead under DS_PREFETCH_AUTO: their
                                     ciphertext was in memory and no CPU was spare */
    uint64_t fills_joined;        /* decryptions a second thread helped with: a forward pass that
                                     needs the expert, or the prefetch thread with nothing queued */
    uint64_t evictions;
    uint64_t bytes_decrypted;
    double decrypt_seconds;       /* summed over threads */
    double wait_seconds;          /* the forward pass waiting for experts */
    uint64_t predicted;           /* (layer, expert) pairs predicted for the next layer */
    uint64_t predicted_hits;      /* of those, chosen by that layer in the same forward pass */
} ds_cache_stats;

/* What ds_model_params.mlock achieved. Each buffer (the keys, the resident
 * weights, the expert cache) is locked whole or not at all. */
typedef struct ds_mlock_info {
    int requested;                /* ds_model_params.mlock was set */
    uint64_t locked_bytes;        /* bytes locked into RAM */
    uint64_t refused_bytes;       /* bytes the OS refused to lock: they may be written to swap */
    int error;                    /* errno of the first refusal (ENOMEM, EPERM; see RLIMIT_MEMLOCK),
                                     0 when none was refused */
} ds_mlock_info;

/* Fills out with the outcome of ds_model_params.mlock (all zero when it was
 * not asked for). DS_ERR_INVALID_ARG on NULL. Thread-safe. */
DS_API DS_WARN_UNUSED ds_status ds_model_mlock_info(const ds_model *m, ds_mlock_info *out);

/* What ds_model_params.huge_pages achieved, for the model's weight memory:
 * the resident segments (one buffer) and the host expert cache (another).
 * A buffer under 2 MiB is not asked for huge pages and counts nowhere. */
typedef struct ds_huge_page_info {
    int requested;                /* ds_model_params.huge_pages was set */
    uint64_t advised_bytes;       /* bytes in buffers the kernel accepted MADV_HUGEPAGE for */
    uint64_t refused_bytes;       /* bytes in buffers it refused it for: ordinary pages */
    int error;                    /* errno of the first refusal (EINVAL: no transparent huge pages
                                     in this kernel), 0 when none was refused */
    int measured;                 /* 1: huge_bytes was read from /proc/self/smaps; 0: that could
                                     not be read (not Linux, no /proc) and huge_bytes is 0 */
    uint64_t huge_bytes;          /* of the weight memory, bytes backed by huge pages now (the
                                     AnonHugePages of its mappings). The kernel hands out a huge
                                     page when a 2 MiB range is first touched and one is free
                                     (or khugepaged collapses one later), so this may be less
                                     than advised_bytes, and a paged cache grows it as it fills */
} ds_huge_page_info;

/* Fills out with the outcome of ds_model_params.huge_pages (all zero but
 * measured and huge_bytes when it was not asked for). DS_ERR_INVALID_ARG on
 * NULL. Reads /proc/self/smaps: milliseconds; not for a hot loop.
 * Thread-safe. */
DS_API DS_WARN_UNUSED ds_status ds_model_huge_page_info(const ds_model *m, ds_huge_page_info *out);

/* Statistics of the model's expert cache, summed over all contexts since
 * open or the last reset. Thread-safe. */
DS_API DS_WARN_UNUSED ds_status ds_model_cache_stats(const ds_model *m, ds_cache_stats *out);
DS_API void ds_model_cache_stats_reset(ds_model *m);
/* The VRAM expert cache of a CUDA model, in the same struct: hits and misses
 * count (layer, expert) lookups in device memory; bytes_decrypted counts the
 * bytes copied to the device and decrypt_seconds stays 0 (decryption is the
 * host cache's, above); wait_seconds is host time spent staging experts for
 * upload. All zero for a CPU model or when every expert is on the device.
 * Reset by ds_model_cache_stats_reset. */
DS_API DS_WARN_UNUSED ds_status ds_model_gpu_cache_stats(const ds_model *m, ds_cache_stats *out);

/* ==== Tokenizer ========================================================== */
/* Byte-level BPE as described by the model's tokenizer.json (DeepSeek's
 * pre-tokenizer, added and special tokens, byte-level decoding). A model owns
 * its tokenizer; a tokenizer can also be built from tokenizer.json text alone.
 * All functions are thread-safe on a shared tokenizer. */
typedef struct ds_tokenizer ds_tokenizer;

/* The model's tokenizer (valid until ds_model_close). Never NULL for an open model. */
DS_API const ds_tokenizer *ds_model_tokenizer(const ds_model *m);

/* Builds a tokenizer from tokenizer.json text (and optionally
 * tokenizer_config.json text, for the chat template and BOS/EOS; may be NULL).
 * allocator may be NULL. Free with ds_tokenizer_free.
 * Encodes exactly as the `tokenizers` library does. Supported: model BPE
 * (merges as "a b" or ["a","b"]; unk_token, fuse_unk, byte_fallback,
 * ignore_merges); pre-tokenizers Sequence, Split (Regex or String pattern,
 * every behavior, invert), ByteLevel (add_prefix_space, use_regex), Digits;
 * normalizer null or an empty Sequence; decoder ByteLevel. Split regexes use
 * Oniguruma's syntax and semantics (Unicode 15.1 categories for \p{..}).
 * Added tokens take the ids the reference gives them (an id in the vocabulary
 * for content found there, else the next free id), not the file's; the ids
 * written in the file must still be non-negative integers below 2^24 and
 * distinct (else DS_ERR_JSON / DS_ERR_LIMIT).
 * Without tokenizer_config.json there is no BOS/EOS and no chat template.
 * Errors: DS_ERR_JSON (malformed file, a merge naming a token not in the
 * vocabulary, a bad regex), DS_ERR_UNSUPPORTED (naming the component or regex
 * construct), DS_ERR_LIMIT (ids above 2^24, oversized patterns), DS_ERR_NOMEM. */
DS_API DS_WARN_UNUSED ds_status ds_tokenizer_new(ds_tokenizer **out, const char *tokenizer_json, size_t len,
                                                 const char *tokenizer_config_json, size_t config_len,
                                                 const ds_allocator *allocator);
DS_API void ds_tokenizer_free(ds_tokenizer *t);

enum {
    DS_TOKENIZE_BOS = 1,          /* prepend the BOS token (when tokenizer_config.json
                                     has one and add_bos_token is not false) */
    DS_TOKENIZE_NO_SPECIAL = 2    /* treat special-token text as plain text */
};

/* Encodes UTF-8 text. *n_out receives the number of ids; when cap is too
 * small (ids may be NULL with cap 0) the call returns DS_ERR_LIMIT with
 * *n_out set to the count needed. Invalid UTF-8 is DS_ERR_INVALID_ARG with
 * the byte offset in the message. Added and special tokens in the text are
 * matched first (longest match, as the reference), special ones unless
 * DS_TOKENIZE_NO_SPECIAL (which leaves the added tokens not marked special,
 * such as DeepSeek's User and Assistant markers, matched). Chat messages
 * from users go through ds_tokenizer_encode_chat, which matches none inside
 * them. A regex that backtracks more than 10 million steps on one search
 * (hostile text) fails with DS_ERR_LIMIT. */
DS_API DS_WARN_UNUSED ds_status ds_tokenizer_encode(const ds_tokenizer *t, const char *text, size_t len, int flags,
                                                    int32_t *ids, size_t cap, size_t *n_out);

/* Decodes ids to UTF-8 text (bytes of incomplete characters at the end are
 * kept as U+FFFD, as the reference does). Same buffer rules as encode
 * (*len_out excludes the terminating NUL, which is written when room).
 * Added and special tokens decode to their text. An id outside
 * [0, ds_tokenizer_vocab_size) is DS_ERR_INVALID_ARG. */
DS_API DS_WARN_UNUSED ds_status ds_tokenizer_decode(const ds_tokenizer *t, const int32_t *ids, size_t n, char *buf,
                                                    size_t cap, size_t *len_out);

/* Streaming decode: feed one id at a time; emits only whole UTF-8
 * characters, holding back the bytes of a character split across tokens.
 * Zero-initialise the state. buf needs at least 64 bytes + the longest token.
 * Bytes that can never complete a character become U+FFFD, so the pieces of
 * a stream concatenate to exactly what ds_tokenizer_decode gives for all the
 * ids. Pass id -1 at the end to flush: a character still held back is then
 * emitted as U+FFFD. On DS_ERR_LIMIT the state is unchanged. */
typedef struct ds_detok_state { unsigned char pending[8]; int n_pending; } ds_detok_state;
DS_API DS_WARN_UNUSED ds_status ds_tokenizer_decode_stream(const ds_tokenizer *t, ds_detok_state *st, int32_t id,
                                                           char *buf, size_t cap, size_t *len_out);

enum {
    DS_TOKEN_ADDED = 1,           /* an added token of tokenizer.json (matched before BPE) */
    DS_TOKEN_SPECIAL = 2          /* an added token marked special (BOS, EOS, ...) */
};

/* The bytes token id decodes to, exactly as they are: byte-level decoding
 * without the UTF-8 repair ds_tokenizer_decode does, so a token holding part
 * of a character gives those bytes (ds_tokenizer_decode of the id alone
 * would give U+FFFD). *bytes points into the tokenizer (not NUL-terminated,
 * valid until it is freed); *flags (may be NULL) receives DS_TOKEN_ADDED and
 * DS_TOKEN_SPECIAL as they apply (finding them takes time proportional to
 * the number of added tokens). DS_ERR_INVALID_ARG for a NULL argument or an
 * id outside [0, ds_tokenizer_vocab_size). Thread-safe on a shared
 * tokenizer. For token-level work on text: constrained decoding, the bytes
 * of a token in a log-probability report. */
DS_API DS_WARN_UNUSED ds_status ds_tokenizer_token_bytes(const ds_tokenizer *t, int32_t id, const char **bytes,
                                                         size_t *len, int *flags);

DS_API int ds_tokenizer_vocab_size(const ds_tokenizer *t);   /* largest id + 1 */
DS_API int32_t ds_tokenizer_bos(const ds_tokenizer *t);      /* -1 if none */
/* 1 when prompts start with BOS: the tokenizer has one and
 * tokenizer_config.json's add_bos_token is not false (DS_TOKENIZE_BOS and
 * ds_generate follow this); else 0. */
DS_API int ds_tokenizer_adds_bos(const ds_tokenizer *t);
DS_API int32_t ds_tokenizer_eos(const ds_tokenizer *t);      /* -1 if none */

/* Chat templates of the DeepSeek V2 and V3 families (chosen from the model's
 * chat template; DS_ERR_UNSUPPORTED when it is neither). Roles: "system",
 * "user", "assistant" (others: DS_ERR_UNSUPPORTED; tool calls are not
 * rendered). Same buffer rules as decode. The text starts with the BOS token's
 * text, so encode it without DS_TOKENIZE_BOS; encoding it matches token texts
 * inside the messages too, so a prompt from user messages is tokenized with
 * ds_tokenizer_encode_chat (below) instead. Families, recognised from the
 * Jinja text: V2-Chat/V2-Lite-Chat ("User: ...\n\nAssistant: ..."),
 * V2-Chat-0628/V2.5 (the full-width-bar User/Assistant marker tokens, with
 * inline system prompts), V3 (system prompts first, joined by blank lines)
 * and R1 (the last system prompt; reasoning before "</think>" dropped from
 * assistant turns; generation prompt ends with "<think>\n"). */
typedef struct ds_chat_message { const char *role; const char *content; } ds_chat_message;
DS_API DS_WARN_UNUSED ds_status ds_tokenizer_apply_chat_template(const ds_tokenizer *t, const ds_chat_message *msgs,
                                                                 size_t n, int add_generation_prompt, char *buf,
                                                                 size_t cap, size_t *len_out);

enum {
    DS_CHAT_SPECIAL_IN_CONTENT = 1   /* match added and special tokens inside contents too: the ids of
                                        the rendered text given to ds_tokenizer_encode (flags 0).
                                        Only for contents the caller wrote itself */
};

/* Renders a chat as ds_tokenizer_apply_chat_template does and encodes it, in
 * one go: the template's own markup (BOS, role markers, separators, EOS, the
 * generation prompt) is encoded with its added and special tokens, each
 * message's content as plain text. No added or special token is matched
 * inside a content, so a message holding the text of the end-of-sentence
 * token, a User/Assistant marker, "</think>" or a tool-call marker gets the
 * ordinary tokens of those characters, not the control token: it cannot end
 * its turn or speak for another role. The pre-tokenizer and BPE run over the rendered
 * text exactly as ds_tokenizer_encode does, so when no content holds the
 * text of an added token the ids are those of ds_tokenizer_encode(rendered
 * text, flags 0), and ds_tokenizer_decode gives back the rendered text in
 * every case. Use this, not ds_tokenizer_encode, for chat contents that come
 * from users; ds_tokenizer_encode matches tokens anywhere (it is the raw
 * API). flags: 0 or DS_CHAT_SPECIAL_IN_CONTENT (the old behaviour). The ids
 * begin with the BOS token when the template renders one: do not add
 * another. Same buffer rules as ds_tokenizer_encode. Errors: those of
 * ds_tokenizer_apply_chat_template and ds_tokenizer_encode, and
 * DS_ERR_INVALID_ARG for an unknown flag. Thread-safe on a shared tokenizer. */
DS_API DS_WARN_UNUSED ds_status ds_tokenizer_encode_chat(const ds_tokenizer *t, const ds_chat_message *msgs, size_t n,
                                                         int add_generation_prompt, int flags, int32_t *ids,
                                                         size_t cap, size_t *n_out);

/* ==== Inference context ================================================== */
/* A conversation: its own KV cache (MLA keeps the compressed latent and the
 * rope key per token) and scratch (for a batch of up to 256 tokens; with MLA
 * also up to 8 MB where a batch expands its window's latents into per-head
 * K and V; in a DS_USE_OPENBLAS build 1 MiB per thread, and creating one
 * sets OpenBLAS's thread count to 1: see the build notes at the top). Belongs
 * to one thread at a time; many contexts may share one model from different
 * threads. */
typedef struct ds_context ds_context;

/* Options of ds_context_new. Rule: a zeroed struct means the defaults, field
 * by field (every field's default is 0), so `ds_context_params cp = {0};`
 * and ds_context_default_params() are the same; NULL params too. */
typedef struct ds_context_params {
    int n_ctx;                    /* maximum tokens (prompt + generated); 0 = min(4096, model max) */
    int n_threads;                /* 0 = the model's n_threads */
    int n_seq;                    /* sequences (0 = 1, at most 256), each with its own KV cache of n_ctx
                                     positions: see ds_context_seq */
} ds_context_params;

DS_API ds_context_params ds_context_default_params(void);   /* all zero, as {0} */
DS_API DS_WARN_UNUSED ds_status ds_context_new(ds_context **out, ds_model *m, const ds_context_params *params);
DS_API void ds_context_free(ds_context *c);
DS_API const char *ds_context_errmsg(const ds_context *c);
/* The model the context was created on (NULL for a NULL context). The
 * context does not own it: it stays valid until ds_model_close, which refuses
 * while contexts still use it. */
DS_API ds_model *ds_context_model(const ds_context *c);

/* Appends tokens to the context and runs them through the model (a batch:
 * prefill; one token: decode). logits, when not NULL, receives vocab_size
 * floats for the last token (all_logits = 0) or n * vocab_size floats, one
 * row per token (all_logits = 1). The ids are remembered (ds_context_tokens).
 * Errors: DS_ERR_LIMIT when the context would overflow, DS_ERR_INVALID_ARG
 * for an id outside the vocabulary, DS_ERR_CANCELLED when the abort callback
 * asked to stop; with an expert cache, DS_ERR_TRUNCATED, DS_ERR_IO or
 * DS_ERR_AUTH when an expert cannot be read from the model file (truncated,
 * changed or unreadable since the open; the message names the file and the
 * segment). On every error nothing is appended (n_past is what it was) and
 * the context stays usable. */
DS_API DS_WARN_UNUSED ds_status ds_context_eval(ds_context *c, const int32_t *tokens, size_t n, float *logits,
                                                int all_logits);
DS_API int ds_context_n_past(const ds_context *c);
DS_API int ds_context_n_ctx(const ds_context *c);
/* Forgets all tokens (keeps the memory); the same as ds_context_truncate(c, 0). */
DS_API void ds_context_reset(ds_context *c);
/* Forgets the tokens at positions n_keep and after, keeping the first n_keep
 * (and their KV entries, unchanged): the next ds_context_eval continues at
 * n_keep exactly as if the forgotten tokens had never been evaluated (bit for
 * bit). Kernels sum in an order that depends on the batch size, so logits
 * can differ in the last bits from evaluating all the tokens as one batch,
 * as with any other split into batches.
 * DS_ERR_INVALID_ARG when n_keep < 0 or n_keep > ds_context_n_past(c) (the
 * context is unchanged). */
DS_API DS_WARN_UNUSED ds_status ds_context_truncate(ds_context *c, int n_keep);
/* The token ids the context holds, one per position: *n (may be NULL)
 * receives ds_context_n_past(c). The array belongs to the context; it is
 * valid until the context is freed and its first *n entries until the next
 * call that changes the context. NULL (and *n = 0) for a NULL context. */
DS_API const int32_t *ds_context_tokens(const ds_context *c, int *n);

/* ---- Several sequences in one context ----
 * A context made with n_seq > 1 holds n_seq independent sequences, each with
 * its own tokens and KV cache, sharing one set of scratch buffers and worker
 * threads. ds_context_seq(c, i) is sequence i as a context handle of its own:
 * every function above works on it (eval, truncate, tokens, n_past, abort,
 * generators), touching that sequence only. ds_context_seq(c, 0) is c
 * itself. The handles belong to c (ds_context_free on one of them other than
 * c does nothing) and live until ds_context_free(c). The sequences share
 * scratch, so calls on any of them come from one thread at a time.
 * ds_context_eval_batch then runs one token of each of several sequences in
 * one forward pass: the weights are read once for all of them, and a routed
 * expert chosen by several is read (and, with an expert cache, decrypted)
 * once. */
/* Sequence i of c (NULL when c is NULL, i < 0 or i >= ds_context_n_seq(c));
 * on a sequence handle, of the context it belongs to. */
DS_API ds_context *ds_context_seq(ds_context *c, int i);
/* The number of sequences of the context c belongs to (0 for NULL). */
DS_API int ds_context_n_seq(const ds_context *c);
/* Which of its context's sequences c is (0 for NULL). */
DS_API int ds_context_seq_id(const ds_context *c);
/* Appends tokens[i] to sequence seqs[i], for i < n, in one forward pass;
 * logits[i], when logits and logits[i] are not NULL, receives that token's
 * vocab_size logits. The seqs must be distinct sequences of one context.
 * Each sequence's result is what ds_context_eval of its one token gives,
 * within float rounding: the kernels may sum in another order for a batch
 * (ds_context_truncate says the same of prompt batches).
 * Errors: DS_ERR_INVALID_ARG (NULL arguments, n = 0 or over 256, sequences of
 * different contexts or one twice, an id outside the vocabulary; the message
 * names the entry), DS_ERR_LIMIT (a sequence is full; the message names it),
 * DS_ERR_CANCELLED (the abort callback of one of the sequences asked to
 * stop), and what ds_context_eval reports. On every error nothing is
 * appended to any sequence. The message is the thread's (ds_last_error) and
 * the first sequence's (ds_context_errmsg). */
DS_API DS_WARN_UNUSED ds_status ds_context_eval_batch(ds_context *const *seqs, const int32_t *tokens, size_t n,
                                                      float *const *logits);

/* Asked while a context evaluates: before each batch of up to 256 tokens and,
 * on the CPU, between layers; a non-zero return stops the evaluation with
 * DS_ERR_CANCELLED. Called on the evaluating thread; it may read a flag that
 * another thread or a signal handler sets. */
typedef int (*ds_abort_fn)(void *user);
/* Sets (fn non-NULL) or clears (fn NULL) the context's abort callback. */
DS_API void ds_context_set_abort(ds_context *c, ds_abort_fn fn, void *user);

/* Observes the router (`ds calibrate` uses it): called once per MoE layer of
 * every forward pass, after routing, with the pass's n_tokens tokens (in the
 * order they were given; a pass holds up to 256) and for each its k experts
 * (experts[t * k + i], original expert ids, best first) and their weights as
 * the forward pass applies them (after normalisation and
 * routed_scaling_factor). The arrays are valid during the call only. Called
 * on the evaluating thread. Observers see the passes of every sequence of
 * the context (ds_context_seq). */
typedef void (*ds_routing_fn)(void *user, int layer, int n_tokens, int k, const int *experts, const float *weights);
/* Sets (fn non-NULL) or clears (fn NULL) the context's routing observer.
 * DS_ERR_INVALID_ARG for a NULL context. */
DS_API DS_WARN_UNUSED ds_status ds_context_set_routing_observer(ds_context *c, ds_routing_fn fn, void *user);

/* ==== Sampler ============================================================ */
/* Options of ds_sampler_new. Rule: start from ds_sampler_default_params(); a
 * struct it did not make (a zeroed one) is refused with DS_ERR_INVALID_ARG
 * and a message naming it. Zero cannot mean the default here: temperature 0
 * is greedy and penalty_last_n 0 the whole history (real choices, the
 * defaults are 1 and 64), and top_p or repetition_penalty 0 would be invalid.
 * NULL params means the defaults. */
typedef struct ds_sampler_params {
    float temperature;            /* 0 = greedy (argmax) */
    int top_k;                    /* 0 = off */
    float top_p;                  /* 1 = off */
    float min_p;                  /* 0 = off */
    float repetition_penalty;     /* 1 = off (CTRL-style: divide positive logits, multiply negative) */
    float frequency_penalty;      /* 0 = off (subtract count * penalty) */
    float presence_penalty;       /* 0 = off (subtract penalty once per seen token) */
    int penalty_last_n;           /* window for penalties; 0 = whole history */
    uint64_t seed;
    uint32_t magic;               /* set by ds_sampler_default_params(); leave it as it is */
} ds_sampler_params;

/* A sampler applies, in this order: the penalties over the last
 * penalty_last_n ids of the history; then temperature 0 = argmax (lowest id
 * on ties); otherwise logits / temperature, top-k, softmax, top-p (the
 * smallest head of the sorted distribution whose mass reaches top_p, at
 * least one token), min-p (relative to the most likely token), and a draw
 * from what is left with the sampler's own generator (xoshiro256**): the
 * same seed and inputs give the same tokens on every platform. A sampler
 * belongs to one thread at a time. */
typedef struct ds_sampler ds_sampler;
/* temperature 1, top_k 0, top_p 1, min_p 0, penalties off (1, 0, 0),
 * penalty_last_n 64, seed 0, and the magic that ds_sampler_new checks. */
DS_API ds_sampler_params ds_sampler_default_params(void);
/* Validates the parameters (DS_ERR_INVALID_ARG for params not made by
 * ds_sampler_default_params(), or naming the bad one: temperature
 * finite and >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p < 1,
 * repetition_penalty finite and > 0, other penalties finite, penalty_last_n
 * >= 0). params may be NULL for the defaults. Free with ds_sampler_free. */
DS_API DS_WARN_UNUSED ds_status ds_sampler_new(ds_sampler **out, const ds_sampler_params *params);
DS_API void ds_sampler_free(ds_sampler *s);
/* Picks a token from n_vocab logits (not modified), given the ids so far
 * (history may be NULL when n_history is 0). A logit of -infinity masks its
 * token. DS_ERR_INVALID_ARG for a NaN or +infinity logit, all logits
 * -infinity, n_vocab <= 0, or a history id outside [0, n_vocab);
 * DS_ERR_NOMEM when the scratch for a larger vocabulary cannot be had. */
DS_API DS_WARN_UNUSED ds_status ds_sampler_sample(ds_sampler *s, const float *logits, int n_vocab,
                                                  const int32_t *history, size_t n_history, int32_t *out);

/* ==== Generation ========================================================= */
/* Why a generation stopped. */
typedef enum ds_stop_reason {
    DS_STOP_NONE = 0,             /* not stopped yet (or it failed) */
    DS_STOP_EOS = 1,              /* the model sampled its end-of-sequence token */
    DS_STOP_LENGTH = 2,           /* max_tokens tokens were generated */
    DS_STOP_CONTEXT_FULL = 3,     /* the context has no room for another token */
    DS_STOP_STRING = 4,           /* a stop string appeared in the text */
    DS_STOP_CALLBACK = 5,         /* on_token returned non-zero */
    DS_STOP_ABORT = 6             /* the context's abort callback asked to stop (ds_context_set_abort) */
} ds_stop_reason;

/* "none", "eos", "length", "context_full", "stop_string", "callback",
 * "abort"; "unknown" for other values. Static text. */
DS_API const char *ds_stop_reason_name(ds_stop_reason r);

typedef struct ds_generate_stats {
    int n_prompt;                 /* prompt tokens (BOS included) */
    int n_generated;              /* tokens sampled, EOS not counted */
    double prompt_seconds;
    double generate_seconds;
    int n_reused;                 /* prompt tokens the context already held (prefix reuse) */
    int n_evaluated;              /* prompt tokens run through the model: n_prompt - n_reused */
    ds_stop_reason stop_reason;   /* DS_STOP_NONE while running or after a failure */
} ds_generate_stats;

/* Called with each generated token and the text that became final with it
 * (whole UTF-8 characters only, without any part of a stop string; may be
 * empty: text that could be the start of a stop string, or of a character,
 * is held back). When generation ends with text still held back that is not
 * part of a stop string (an unfinished start of one, or a character left
 * incomplete, as U+FFFD) it comes in one last call with token -1. Return
 * non-zero to stop (DS_STOP_CALLBACK). */
typedef int (*ds_token_fn)(void *user, int32_t token, const char *piece, size_t len);

/* Called in each step right before a token is sampled, with the logits the
 * sampler is about to get: n_vocab of them, one per id that may be sampled
 * (the tokenizer's ids; a model vocabulary padded beyond them is never
 * sampled), with ignore_eos's mask already applied; and the history the
 * sampler's penalties see (the prompt and the tokens generated so far; valid
 * during the call). It may change the logits in place: add a bias, or mask a
 * token with -INFINITY (leave at least one finite: all -infinity, a NaN or
 * +infinity fail the step as ds_sampler_sample does). The sampler then
 * applies its penalties, temperature and truncations to what the hook left.
 * Return non-zero to stop instead: no token is sampled, the generation ends
 * with DS_STOP_CALLBACK (the held-back text is released as for any other
 * stop). Called on the thread that calls ds_generator_next. Constrained
 * decoding (a grammar, a JSON validator) and logit biases are built on it. */
typedef int (*ds_logits_fn)(void *user, float *logits, int n_vocab, const int32_t *history, size_t n_history);

/* Options of a generation. Rule: a zeroed struct means the defaults, field
 * by field (every field's default is 0), so `ds_generate_params gp = {0};`
 * and ds_generate_default_params() are the same; NULL params too. */
typedef struct ds_generate_params {
    int max_tokens;               /* most tokens to generate; 0 = no limit (until EOS, a stop string
                                     or the context is full) */
    const char *const *stop;      /* n_stop stop strings (UTF-8, NUL-terminated; empty ones are
                                     ignored). Generation stops where the text first contains one;
                                     the text before it is delivered, the stop string is not.
                                     Copied: the caller may free them once the call returns */
    size_t n_stop;
    ds_token_fn on_token;         /* NULL = none */
    void *user;                   /* passed to on_token */
    int ignore_eos;               /* 1: the EOS token is never sampled */
    ds_logits_fn on_logits;       /* NULL = none: the logits go to the sampler as the model gave them */
    void *logits_user;            /* passed to on_logits */
    int defer_prompt;             /* 1: ds_generator_new evaluates nothing; the prompt (what the
                                     context does not hold of it) is evaluated by ds_generator_step,
                                     prompt_chunk tokens a step, in the passes that decode the other
                                     generators' tokens (ds_generator_next evaluates what is left at
                                     once). The first token is sampled in the step that ends it */
    int prompt_chunk;             /* with defer_prompt: most prompt tokens a step evaluates (0 = 128;
                                     a pass takes at most 256 tokens in all) */
} ds_generate_params;

DS_API ds_generate_params ds_generate_default_params(void);   /* all zero, as {0} */

/* A generation in progress, advanced one token at a time: the one loop that
 * ds_generate_tokens and ds_generate run, for callers that pull tokens (a
 * streamed HTTP response). It uses the context and sampler it was made with;
 * they must outlive it, and nothing else may use the context meanwhile.
 *
 * ds_generator_new continues the context with the prompt: it keeps the
 * longest common prefix of ds_context_tokens(c) and prompt (at least one
 * prompt token is always evaluated, for its logits), truncates the context
 * there, and evaluates only the rest (prefill). The logits are those of a fresh
 * context given the same batches (within float rounding of one whole batch:
 * see ds_context_truncate). Errors:
 * DS_ERR_INVALID_ARG (NULL c, s, out or prompt with n_prompt > 0, n_prompt
 * 0, max_tokens < 0, an id outside the vocabulary), DS_ERR_LIMIT (the prompt
 * does not fit the context; the context is unchanged), DS_ERR_NOMEM, and what
 * the evaluation reports; on error *out is NULL and the context holds a
 * prefix of what it held. An abort (ds_context_set_abort) during the prefill
 * is not an error: the generator is made, already stopped with DS_STOP_ABORT. */
typedef struct ds_generator ds_generator;
DS_API DS_WARN_UNUSED ds_status ds_generator_new(ds_generator **out, ds_context *c, ds_sampler *s,
                                                 const int32_t *prompt, size_t n_prompt,
                                                 const ds_generate_params *params);
/* Generates one token: samples it (only ids the tokenizer knows; the model's
 * vocabulary may be padded beyond it), decodes it, applies the stop strings,
 * calls on_token, and evaluates the token unless generation ends with it.
 * *text and *len (either may be NULL) receive the text that became final with
 * this token (what on_token got; the final held-back text included when the
 * generation ends), valid until the next call on g. The history the sampler's
 * penalties see is the prompt plus the tokens so far. Returns DS_OK both while
 * running and once stopped (see ds_generator_stop_reason; further calls then
 * do nothing); an error from sampling, decoding or evaluation stops the
 * generator with DS_STOP_NONE. */
DS_API DS_WARN_UNUSED ds_status ds_generator_next(ds_generator *g, const char **text, size_t *len);
/* DS_STOP_NONE while the generator can go on. */
DS_API ds_stop_reason ds_generator_stop_reason(const ds_generator *g);
/* The token the last ds_generator_next call sampled, and its log-probability:
 * the natural logarithm of its probability under the softmax at temperature
 * 1 of the logits the sampler was given, over the ids that may be sampled.
 * Those logits are the model's after ignore_eos's mask and on_logits (a bias
 * or mask set there counts), before the sampler's penalties, temperature
 * and top-k/top-p/min-p; so the value does not depend on the sampler's
 * settings, is <= 0, and a token the hook masked never has one. The EOS
 * token that ends a generation counts (it was sampled, though on_token does
 * not get it). When that call sampled nothing (none made yet, the generator
 * had stopped, on_logits stopped it, or sampling failed), *token is -1 and
 * *logprob 0; a token sampled before a later step of the call failed is
 * reported. token or logprob may be NULL. DS_ERR_INVALID_ARG for a NULL g.
 * Thread-safety: as the generator's. */
DS_API DS_WARN_UNUSED ds_status ds_generator_last(const ds_generator *g, int32_t *token, float *logprob);
/* The statistics so far (zeros for a NULL g). */
DS_API void ds_generator_stats(const ds_generator *g, ds_generate_stats *out);
/* Advances several generators by one token each, as ds_generator_next
 * does, evaluating their tokens in one forward pass (as
 * ds_context_eval_batch): the continuous batching of a server, where each
 * active request is one generator on its own sequence of one context
 * (ds_context_seq). A generator made with defer_prompt evaluates the next
 * chunk of its prompt in the same pass instead (the pass takes the decode
 * tokens first, then the prompt chunks in the order of gs, at most 256
 * tokens in all), and samples its first token once the pass ends its
 * prompt. NULL entries and generators already stopped or failed are
 * skipped. Each generator's text of this step is then ds_generator_text's
 * (empty for a generator whose prompt is still being evaluated). A generator
 * whose sequence's abort callback asks to stop before or during the pass is
 * stopped with DS_STOP_ABORT and the others' tokens are evaluated without it.
 * Greedy sampling picks what ds_generator_next would, except where two
 * candidates' logits are equal within the batch's float rounding.
 * Returns DS_OK when every generator advanced or stopped; otherwise the first
 * error, and each generator it concerns is failed (ds_generator_status):
 * DS_ERR_INVALID_ARG (NULL gs with n > 0, more than 256 generators, generators on
 * different contexts or two on one sequence; nothing is done then), a
 * sampling or decoding error (that generator only), or an evaluation error
 * (every generator of the pass). */
DS_API DS_WARN_UNUSED ds_status ds_generator_step(ds_generator *const *gs, size_t n);
/* The text that became final in the generator's last ds_generator_next or
 * ds_generator_step call (what ds_generator_next returns in *text and *len);
 * valid until the next call on g. "" and 0 for NULL. */
DS_API void ds_generator_text(const ds_generator *g, const char **text, size_t *len);
/* DS_OK, or the error that stopped the generator (ds_generator_next's or
 * ds_generator_step's); its message is ds_generator_errmsg's. */
DS_API ds_status ds_generator_status(const ds_generator *g);
DS_API const char *ds_generator_errmsg(const ds_generator *g);
/* Frees the generator; the context keeps the tokens evaluated so far (the
 * prompt and every generated token but the last, which was never fed back).
 * NULL is a no-op. */
DS_API void ds_generator_free(ds_generator *g);

/* Runs a generator to its end: ds_generator_new, then ds_generator_next until
 * it stops, then ds_generator_free. Stopping for any ds_stop_reason returns
 * DS_OK; the errors are those of ds_generator_new and ds_generator_next.
 * stats may be NULL; it is filled in on success and failure alike. Same
 * thread-safety as the context. */
DS_API DS_WARN_UNUSED ds_status ds_generate_tokens(ds_context *c, ds_sampler *s, const int32_t *prompt,
                                                   size_t n_prompt, const ds_generate_params *params,
                                                   ds_generate_stats *stats);

/* Text in, text out, on the same loop: tokenizes prompt with a leading BOS
 * (not doubled when the text already begins with the BOS token, as a
 * rendered chat template does), then generates as ds_generate_tokens does,
 * continuing the context (only what follows the prefix it already holds is
 * evaluated), sampling at most max_tokens tokens (0: none, the prompt is only
 * evaluated) and calling on_token (may be NULL) for each. Stops at EOS (not
 * passed to on_token), after max_tokens, when the context is full, when
 * on_token returns non-zero, or on an abort; all of these return DS_OK, and
 * stats->stop_reason says which. Errors: DS_ERR_LIMIT when the prompt does not
 * fit the context, DS_ERR_INVALID_ARG for a NULL argument, max_tokens < 0 or
 * invalid UTF-8, and whatever evaluation or sampling reports. stats may be
 * NULL; it is filled in on success and failure alike. The prompt is raw text
 * (token texts in it are tokens): for a chat with user messages, tokenize with
 * ds_tokenizer_encode_chat and call ds_generate_tokens. */
DS_API DS_WARN_UNUSED ds_status ds_generate(ds_context *c, ds_sampler *s, const char *prompt, int max_tokens,
                                            ds_token_fn on_token, void *user, ds_generate_stats *stats);

/* ==== Converter ========================================================== */
typedef enum ds_quant {
    DS_QUANT_F32 = 0,
    DS_QUANT_F16 = 1,
    DS_QUANT_Q8_0 = 2,
    DS_QUANT_Q4_0 = 3,            /* 4-bit blocks of 32, byte-identical to llama.cpp's Q4_0 */
    DS_QUANT_INHERIT = -1,        /* quant_experts / quant_core: the same as quant */
    DS_QUANT_KEEP = -2            /* GGUF input only: each tensor keeps its type where the container
                                     has it (F32, F16, Q8_0, Q4_0; BF16 becomes F16, other quantized
                                     types Q8_0) */
} ds_quant;

/* Options of ds_convert. Rule: start from ds_convert_default_params(); a
 * struct it did not make (a zeroed one) is refused with DS_ERR_INVALID_ARG
 * and a message naming it. Zero cannot mean the default here: DS_QUANT_F32
 * (0) is a real choice (the default is DS_QUANT_Q8_0), and encrypt 0 writes
 * a file anyone can read: a zeroed struct must not choose that silently.
 * NULL params means the defaults (which need a key or passphrase, so NULL
 * is refused for want of one). quant outside its values is refused with a
 * message naming it. */
typedef struct ds_convert_params {
    ds_quant quant;               /* matrices (default DS_QUANT_Q8_0); norms, router weights and
                                     biases stay F32 */
    int encrypt;                  /* 1 (default): AES-256-GCM; 0: integrity tags only */
    const unsigned char *key;     /* DS_KEY_BYTES raw bytes, or */
    size_t key_len;
    const char *passphrase;       /* a passphrase (Argon2id) */
    size_t passphrase_len;
    uint64_t argon_opslimit;      /* 0 = libsodium's INTERACTIVE (2); at most DS_MAX_ARGON_OPS (8) */
    uint64_t argon_memlimit;      /* bytes; 0 = libsodium's INTERACTIVE (64 MiB); at most
                                     DS_MAX_ARGON_MEM (1 GiB): a file the runtime would refuse is
                                     not written */
    uint32_t chunk_bytes;         /* plaintext per sealed chunk; 0 = 1 MiB */
    ds_progress_fn progress;      /* (tensors done, tensors total, bytes written) */
    void *progress_user;
    ds_log_fn log;                /* notices (skipped MTP layers, ...) */
    void *log_user;
    ds_allocator allocator;       /* all NULL = C library */
    uint32_t magic;               /* set by ds_convert_default_params(); leave it as it is */
    int overwrite;                /* 0 (default): an existing out_path is refused (DS_ERR_EXISTS) and
                                     left as it is; 1: it is replaced, atomically, once the new file
                                     is complete (`ds convert --force`). An out_path that is one of
                                     the inputs (the same file as a shard, config.json or a
                                     tokenizer file, also through a link) is refused either way
                                     (DS_ERR_INVALID_ARG) */
    /* The precision recipe by parameter class (DS_PARAM_*). quant_experts
     * (routed experts) and quant_core (embeddings, attention, dense and
     * shared FFNs, head) default to DS_QUANT_INHERIT: the value of quant.
     * quant_router (each MoE layer's gate) defaults to DS_QUANT_F32. Norms
     * and biases are F32 always. A matrix whose rows are not a whole number
     * of 32-value blocks falls back to F16 (with a warning). Example, the
     * recipe of `ds convert --quant-experts q4 --quant-core q8`:
     * quant_experts = DS_QUANT_Q4_0, quant_core = DS_QUANT_Q8_0. */
    ds_quant quant_experts;
    ds_quant quant_core;
    ds_quant quant_router;
    /* Pruning (`ds convert --prune R`, `--prune-structured N:M`): zeroes
     * weights of the 2-D linear matrices (attention, dense and shared FFNs,
     * routed experts; never the embeddings, the LM head, the router, norms
     * or biases) from the checkpoint's values, before they are quantized.
     *   prune = R in [0, 1): in each matrix of n entries, the floor(R * n)
     *     entries of smallest |w| become 0. Ties in |w| are broken by
     *     position: the entry earlier in row-major order goes first (as a
     *     stable sort of |w| orders them). This removes the fraction R (the
     *     origin document's percentile rule would remove 1 - R).
     *   prune_n:prune_m = N:M structured (e.g. 2:4): in every M consecutive
     *     weights along a row (the input dimension), the N of smallest |w|
     *     become 0, ties as above; M one of 2, 4, 8, 16, 32 and 0 < N < M.
     *     0:0 = none. Not together with prune.
     *   prune_classes: DS_PRUNE_CORE (attention, dense and shared FFNs) and/or
     *     DS_PRUNE_EXPERTS (routed experts); 0 = both.
     *   prune_storage: DS_PRUNE_STORAGE_AUTO (0): pruned Q8_0 matrices are
     *     stored in a sparse format where it is smaller than Q8_0 (2:4 as
     *     DS_DTYPE_Q8_0_24; others as DS_DTYPE_Q8_0_SP when the tensor, or
     *     a layer's routed experts together, come out smaller);
     *     DS_PRUNE_STORAGE_DENSE (1): always the dense format. F32, F16 and
     *     Q4_0 matrices keep their zeros dense.
     * Pruning reads a Hugging Face checkpoint (a GGUF input is refused) and
     * holds one matrix in F32 at a time; with an unstructured R and
     * DS_PRUNE_STORAGE_AUTO it reads the matrices twice (once to size the
     * sparse rows). The file records what was done (ds_model_get_pruning). */
    double prune;
    int prune_n, prune_m;
    unsigned prune_classes;
    int prune_storage;
    /* Expert pruning (`ds convert --drop-experts R --calib stats.json`):
     * drop_experts R in [0, 1) removes, in every MoE layer, the floor(R * E)
     * routed experts (E = n_routed_experts; R * E computed in double with
     * 1e-9 of slack) with the least routing mass in the calibration file
     * drop_calib_path (written by `ds calibrate` or
     * ds_context_set_routing_observer; format in README.md "Expert
     * pruning"). Ranking, least first: routing mass, then selection count,
     * then the higher expert id. Their tensors and segments are not
     * written; the router's rows (mlp.gate.weight and V3's
     * e_score_correction_bias) go with them; the container records which
     * experts each layer kept. Routing then follows the family's rules over
     * the experts left (see "Dropped experts" at ds_model_layer_experts).
     * Errors, each before anything is written: R outside [0, 1) or NaN, R >
     * 0 without a calibration file, GGUF input (DS_ERR_INVALID_ARG,
     * DS_ERR_UNSUPPORTED); a calibration file that is not JSON (DS_ERR_JSON),
     * lacks a field or was made for another model: its config fingerprint
     * (arch, n_layers, n_routed_experts, hidden_size, moe_intermediate_size,
     * first_k_dense_replace, moe_layer_freq, n_experts_per_tok, n_group,
     * topk_group, vocab_size) differs from the checkpoint's
     * (DS_ERR_CALIBRATION); a drop that leaves a layer fewer experts than
     * num_experts_per_tok, or whose topk_group emptiest groups hold fewer
     * (DS_ERR_INVALID_ARG). R = 0 with a file checks the file and drops
     * nothing. */
    double drop_experts;
    const char *drop_calib_path;
} ds_convert_params;

#define DS_PRUNE_CORE 1u
#define DS_PRUNE_EXPERTS 2u
#define DS_PRUNE_STORAGE_AUTO 0
#define DS_PRUNE_STORAGE_DENSE 1

/* The defaults: DS_QUANT_Q8_0, encrypt 1, everything else 0 or NULL (set a
 * key or a passphrase), and the magic that ds_convert checks. */
DS_API ds_convert_params ds_convert_default_params(void);

/* Converts a Hugging Face checkpoint directory (config.json, tokenizer.json,
 * optional tokenizer_config.json, model.safetensors or shards with
 * model.safetensors.index.json) into a container at out_path. Streams tensor
 * by tensor; writes a temporary file beside out_path and renames it into place
 * only on success: on failure nothing is left behind and an existing out_path
 * is untouched. An existing out_path is refused unless params->overwrite;
 * an out_path that is one of the inputs is always refused. Inputs that are
 * not regular files are refused (DS_ERR_IO). Before anything is written the
 * tokenizer is loaded with the runtime's own loader (ds_tokenizer_new), so a
 * tokenizer the runtime would refuse is refused here with the same message;
 * so is one with token ids at or beyond config.json's vocab_size.
 *
 * hf_dir may also be a GGUF file (llama.cpp's format, recognised by its
 * magic) of architecture deepseek2 (DeepSeek-V2, V2-Lite, V2.5, V3, R1) or
 * deepseek (DeepSeek-MoE 16B; its permuted q/k rows are put back):
 * its metadata becomes the config, its tokenizer (gpt2 with the deepseek-v3
 * or deepseek-llm pre-tokenizer, the chat template if there is one) the
 * tokenizer, its tensors ours (attn_k_b and attn_v_b joined back into
 * kv_b). With quant DS_QUANT_KEEP each tensor keeps its type (F32, F16, Q8_0
 * and Q4_0 copied byte for byte; BF16 stored as F16); with another quant
 * tensors are re-encoded from their exact values as for a checkpoint.
 * Q4_1, Q5_0, Q5_1 and the K-quants Q2_K..Q6_K are dequantized and, with
 * DS_QUANT_KEEP, re-quantized to Q8_0 (a warning through params->log says
 * so: close to the file's values, not identical). Other ggml types (IQ*,
 * ...) are refused naming the tensor and type (DS_ERR_SHAPE); a malformed
 * file is DS_ERR_GGUF or DS_ERR_TRUNCATED with
 * the byte offset; another architecture DS_ERR_ARCH. DS_QUANT_KEEP with a
 * checkpoint directory is DS_ERR_INVALID_ARG. */
DS_API DS_WARN_UNUSED ds_status ds_convert(const char *hf_dir, const char *out_path, const ds_convert_params *params);

/* ==== LoRA adapters ====================================================== */
/* A LoRA adapter (a PEFT adapter converted and sealed by ds_convert_lora,
 * usually `.dsa`) changes some of a base model's projections W into
 * W + s * B A (A: r x in, B: out x r) without touching the base: y = W x +
 * s * B (A x), s = scale * alpha / r (alpha / sqrt(r) with rsLoRA). It is
 * bound to one base model's identity (ds_model_id): the same checkpoint
 * converted twice gives two files with two identities, and an adapter made
 * for one is refused by the other, whatever their shapes. It is sealed as a
 * model is (same container rules, its own key), kept in F32 or F16 in memory
 * the library owns and wipes, and its parts for routed experts are paged
 * with their experts when the base has an expert cache.
 *
 * Several adapters may be open over one base; each sequence of each context
 * applies the list it was given (ds_context_set_adapters), each with its own
 * scale. An adapter is immutable once open and may be used by many contexts
 * on many threads. */
typedef struct ds_adapter ds_adapter;

#define DS_MODEL_ID_BYTES 32
#define DS_MAX_ADAPTERS 8        /* adapters applied at once to one sequence */

/* The model's identity: BLAKE2b-256 of its authenticated header (which holds
 * the file's random salt and the MAC over its fields), so two conversions of
 * one checkpoint differ. Printed by `ds inspect`. */
DS_API DS_WARN_UNUSED ds_status ds_model_id(const ds_model *m, unsigned char id[DS_MODEL_ID_BYTES]);

/* Options of ds_adapter_open. Rule: a zeroed struct means the defaults
 * (every field's default is 0); NULL params too. */
typedef struct ds_adapter_params {
    const unsigned char *key;     /* DS_KEY_BYTES raw bytes (the adapter's own key: often the base's) */
    size_t key_len;
    const char *passphrase;       /* alternative to key for a passphrase-sealed adapter */
    size_t passphrase_len;
    int allow_plaintext;          /* as ds_model_params.allow_plaintext */
    uint64_t expert_cache_bytes;  /* with a base that has an expert cache: bytes for the adapter's
                                     routed-expert parts; 0 = as many slots as the base's cache */
} ds_adapter_params;
DS_API ds_adapter_params ds_adapter_default_params(void);   /* all zero, as {0} */

/* Opens an adapter for base (opened with load_weights 1): checks the file as
 * ds_model_open does (header, key, MAC, metadata), then that it was made for
 * this very base (DS_ERR_ADAPTER_BASE otherwise, naming both identities),
 * then every tensor's shape against the base's modules (DS_ERR_SHAPE), and
 * loads the adapter's resident parts. Errors as ds_model_open's;
 * DS_ERR_NOT_ADAPTER when path is a model, not an adapter. The adapter keeps
 * a reference to base: ds_model_close(base) fails with DS_ERR_MISUSE until
 * the adapter is closed. Thread-safe. */
DS_API DS_WARN_UNUSED ds_status ds_adapter_open(ds_adapter **out, ds_model *base, const char *path,
                                                const ds_adapter_params *params);
/* Wipes and frees the adapter. NULL is a no-op (DS_OK). DS_ERR_MISUSE (and
 * nothing closed) while a context's sequence still applies it. */
DS_API ds_status ds_adapter_close(ds_adapter *a);

typedef struct ds_adapter_info {
    int rank;                     /* r */
    float alpha;                  /* lora_alpha */
    int rslora;                   /* 1: s = alpha / sqrt(r), else alpha / r */
    float scale;                  /* alpha / r or alpha / sqrt(r) */
    ds_dtype dtype;               /* DS_DTYPE_F32 or DS_DTYPE_F16 */
    char targets[256];            /* the adapted modules as PEFT names them, sorted, comma-separated
                                     ("kv_b_proj,q_proj") */
    uint64_t n_params;            /* trainable parameters (A and B, all layers) */
    uint64_t base_params;         /* the base model's parameters, for the share */
    uint64_t bytes;               /* plaintext bytes of A and B */
    uint64_t resident_bytes;      /* of those, held in memory now (the rest paged with experts) */
    unsigned char base_id[DS_MODEL_ID_BYTES];
} ds_adapter_info;
DS_API DS_WARN_UNUSED ds_status ds_adapter_get_info(const ds_adapter *a, ds_adapter_info *out);
DS_API ds_model *ds_adapter_model(const ds_adapter *a);

/* The adapters that sequence c applies from its next evaluation on, each
 * with a multiplier on its own scale (1.0 as trained; llama.cpp's
 * --lora-scaled): n in [0, DS_MAX_ADAPTERS], n = 0 for none; scales NULL
 * means 1.0 each. Every adapter must be open over c's model
 * (DS_ERR_INVALID_ARG otherwise). When the list differs from the one the
 * sequence had, its tokens are forgotten (ds_context_truncate(c, 0)): their
 * KV entries were computed under the other list. The context keeps no
 * reference beyond the list: close an adapter only after setting lists that
 * leave it out (ds_adapter_close refuses while it is in one). It touches
 * only sequence c, none of the scratch its context's sequences share: it may
 * be called on a sequence that no evaluation running on another thread
 * includes (a server hands out a free slot while the others decode). */
DS_API DS_WARN_UNUSED ds_status ds_context_set_adapters(ds_context *c, ds_adapter *const *adapters,
                                                        const float *scales, size_t n);
/* The list sequence c applies: up to cap entries into adapters and scales
 * (either may be NULL); returns how many it has. */
DS_API size_t ds_context_get_adapters(const ds_context *c, ds_adapter **adapters, float *scales, size_t cap);

typedef enum ds_lora_dtype { DS_LORA_F32 = 0, DS_LORA_F16 = 1 } ds_lora_dtype;

/* Options of ds_convert_lora. Rule: start from ds_convert_lora_default_params()
 * (encrypt 1 must not be dropped silently by a zeroed struct: one is
 * refused with DS_ERR_INVALID_ARG). */
typedef struct ds_convert_lora_params {
    int encrypt;                  /* 1 (default): AES-256-GCM; 0: integrity tags only */
    const unsigned char *key;     /* DS_KEY_BYTES raw bytes, or */
    size_t key_len;
    const char *passphrase;       /* a passphrase (Argon2id) */
    size_t passphrase_len;
    ds_lora_dtype dtype;          /* A and B stored as F32 (default) or F16 */
    int overwrite;                /* as ds_convert_params.overwrite */
    ds_log_fn log;
    void *log_user;
    uint32_t magic;               /* set by ds_convert_lora_default_params(); leave it as it is */
} ds_convert_lora_params;
DS_API ds_convert_lora_params ds_convert_lora_default_params(void);

/* Converts a PEFT LoRA adapter directory (adapter_config.json,
 * adapter_model.safetensors) into a sealed adapter at out_path, bound to
 * base (open with load_weights 0 or 1). Checks: peft_type LORA, r,
 * lora_alpha, use_rslora, fan_in_fan_out (transposed tensors are stored
 * upright), bias "none"; every target module exists in base's architecture
 * (DS_ERR_ADAPTER naming it and the modules there are: MLA models have no
 * v_proj or k_proj, their values come from kv_b_proj); every lora_A has its
 * lora_B and the shapes (r, in) and (out, r) of the module it adapts
 * (DS_ERR_SHAPE naming the tensor). Writes to a temporary file and renames
 * it into place on success, as ds_convert does.
 * Tensors: F32, F16 or BF16, named base_model.model.<module>.lora_A.weight
 * (also without ".weight", and with PEFT's ".default" adapter name before
 * it). target_modules is a list of names or one name; another string
 * (PEFT's regular expression, "all-linear") takes the modules the tensors
 * adapt. Refused, with what and where: a tensor for a matrix the
 * architecture has no adapter target for, or for a module target_modules
 * does not list, a rank other than r, a bias, rank_pattern / alpha_pattern,
 * DoRA, modules_to_save, PEFT's fused routed experts (target_parameters),
 * a lora_alpha not above 0 (DS_ERR_ADAPTER); lora_A without lora_B or the
 * reverse, or no tensors at all (DS_ERR_MISSING_TENSOR); other dtypes
 * (DS_ERR_SHAPE). Nothing is written then. */
DS_API DS_WARN_UNUSED ds_status ds_convert_lora(const char *peft_dir, const ds_model *base, const char *out_path,
                                                const ds_convert_lora_params *params);

/* Bakes adapter a, times scale, into a copy of its base: every adapted
 * matrix becomes W + scale * s * B A, re-encoded in the base's dtype (F32,
 * F16, Q8_0, Q4_0: quantized matrices take the rounding that brings); the
 * rest is copied. A matrix the adapter changes that is stored pruned
 * (Q8_0_24, Q8_0_SP) is refused with DS_ERR_INVALID_ARG: the merge would
 * fill its zeros (convert the base without sparse storage). The copy is sealed with params' key (encrypt, key,
 * passphrase, overwrite and log are used; the rest ignored) and gets an
 * identity of its own. The base must be open with load_weights 1. */
DS_API DS_WARN_UNUSED ds_status ds_lora_merge(const ds_adapter *a, float scale, const char *out_path,
                                              const ds_convert_lora_params *params);

#ifdef __cplusplus
}
#endif
#endif /* DEEPSEEK_H */
