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
#define DS_VERSION_MAJOR 0
#define DS_VERSION_MINOR 1
#define DS_VERSION_PATCH 0
#define DS_VERSION_STRING "0.1.0"
#define DS_VERSION_NUMBER (DS_VERSION_MAJOR * 1000000 + DS_VERSION_MINOR * 1000 + DS_VERSION_PATCH)

/* Container format version this library writes and the newest it reads. */
#define DS_FORMAT_VERSION 1

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
    DS_ERR_VERSION = -101,        /* container written by a newer format version */
    DS_ERR_TRUNCATED = -102,      /* file shorter than its header says */
    DS_ERR_CORRUPT = -103,        /* structurally invalid container (checksum, bounds) */
    DS_ERR_JSON = -104,           /* malformed JSON (config, tokenizer, safetensors header) */
    DS_ERR_SAFETENSORS = -105,    /* malformed safetensors file */
    DS_ERR_MISSING_TENSOR = -106, /* a tensor the architecture needs is absent */
    DS_ERR_SHAPE = -107,          /* a tensor has the wrong shape or dtype */
    DS_ERR_ARCH = -108,           /* unsupported model architecture */
    DS_ERR_CONFIG = -109,         /* config.json lacks a field or has a bad value */

    /* crypto: -200 .. -299 */
    DS_ERR_WRONG_KEY = -200,      /* the key does not match the file's key check */
    DS_ERR_AUTH = -201,           /* a chunk failed authentication: tampered or damaged */
    DS_ERR_NEED_KEY = -202,       /* the file is encrypted and no key/passphrase was given */
    DS_ERR_NO_AES = -203,         /* this CPU lacks the AES instructions the cipher needs */
    DS_ERR_CRYPTO = -204,         /* crypto library initialisation or KDF failure */

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
    uint64_t argon_opslimit;      /* DS_KDF_ARGON2ID only */
    uint64_t argon_memlimit;
} ds_file_info;

/* Reads and checks the public header of a container. */
DS_API DS_WARN_UNUSED ds_status ds_file_info_read(const char *path, ds_file_info *out);
DS_API const char *ds_cipher_name(ds_cipher c);

/* ==== Model ============================================================== */
typedef struct ds_model ds_model;

typedef struct ds_model_params {
    const unsigned char *key;     /* DS_KEY_BYTES raw bytes; copied, caller may wipe after open */
    size_t key_len;
    const char *passphrase;       /* alternative to key for DS_KDF_ARGON2ID files */
    size_t passphrase_len;
    int load_weights;             /* 1 (default): decrypt dense weights; 0: metadata only
                                     (inspect, verify, tensor directory) */
    uint64_t expert_cache_bytes;  /* routed-expert cache budget; 0 = all resident */
    int n_threads;                /* 0 = number of online CPUs */
    ds_allocator allocator;       /* all NULL = C library */
    ds_log_fn log;                /* NULL = silent */
    void *log_user;
} ds_model_params;

DS_API ds_model_params ds_model_default_params(void);

/* Opens a container: maps it read-only, checks the header, derives the keys,
 * authenticates and parses the metadata and (with load_weights) decrypts the
 * dense segments into memory the model owns. On failure *out is NULL and
 * ds_last_error() says why. Thread-safe (opens are independent). */
DS_API DS_WARN_UNUSED ds_status ds_model_open(ds_model **out, const char *path, const ds_model_params *params);

/* Wipes and frees everything the model owns. NULL is a no-op (DS_OK).
 * Returns DS_ERR_MISUSE (and closes nothing) while contexts still use it. */
DS_API ds_status ds_model_close(ds_model *m);

/* Message of the model's last failure ("" if none). */
DS_API const char *ds_model_errmsg(const ds_model *m);

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

typedef enum ds_dtype {
    DS_DTYPE_F32 = 0,
    DS_DTYPE_F16 = 1,
    DS_DTYPE_Q8_0 = 2             /* rows of blocks {f16 scale; int8 q[32]} (34 bytes), x = q*scale */
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
} ds_tensor_info;

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
DS_API DS_WARN_UNUSED ds_status ds_model_verify(const ds_model *m, int n_threads, ds_progress_fn progress, void *user);

/* ==== Converter ========================================================== */
typedef enum ds_quant {
    DS_QUANT_F32 = 0,
    DS_QUANT_F16 = 1,
    DS_QUANT_Q8_0 = 2
} ds_quant;

typedef struct ds_convert_params {
    ds_quant quant;               /* matrices; norms, router weights and biases stay F32 */
    int encrypt;                  /* 1 (default): AES-256-GCM; 0: integrity tags only */
    const unsigned char *key;     /* DS_KEY_BYTES raw bytes, or */
    size_t key_len;
    const char *passphrase;       /* a passphrase (Argon2id) */
    size_t passphrase_len;
    uint64_t argon_opslimit;      /* 0 = libsodium's MODERATE */
    uint64_t argon_memlimit;      /* bytes; 0 = libsodium's MODERATE */
    uint32_t chunk_bytes;         /* plaintext per sealed chunk; 0 = 1 MiB */
    ds_progress_fn progress;      /* (tensors done, tensors total, bytes written) */
    void *progress_user;
    ds_log_fn log;                /* notices (skipped MTP layers, ...) */
    void *log_user;
    ds_allocator allocator;
} ds_convert_params;

DS_API ds_convert_params ds_convert_default_params(void);

/* Converts a Hugging Face checkpoint directory (config.json, tokenizer.json,
 * optional tokenizer_config.json, model.safetensors or shards with
 * model.safetensors.index.json) into a container at out_path. Streams tensor
 * by tensor; writes a temporary file beside out_path and renames it into place
 * only on success: on failure nothing is left behind. */
DS_API DS_WARN_UNUSED ds_status ds_convert(const char *hf_dir, const char *out_path, const ds_convert_params *params);

#ifdef __cplusplus
}
#endif
#endif /* DEEPSEEK_H */
