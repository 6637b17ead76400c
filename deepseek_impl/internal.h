/*
 * internal.h — declarations shared between the implementation files of
 * deepseek.h. Not installed; not part of the API.
 *
 * Internal functions are named dsi_* and declared with DSI_FUNC, which is
 * `static` in the amalgamation (so only ds_* symbols are exported) and empty
 * in the multi-file build (so tests and fuzzers can reach them).
 */
#ifndef DS_INTERNAL_H
#define DS_INTERNAL_H

#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1
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

#if defined(__GNUC__) || defined(__clang__)
#  define DSI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define DSI_PRINTF(a, b)
#endif

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
} dsi_secure_buf;
DSI_FUNC ds_status dsi_secure_alloc(dsi_secure_buf *b, size_t size, dsi_err *e);
DSI_FUNC void dsi_secure_free(dsi_secure_buf *b);

/* ==== Parameter structs ================================================== */
/* The structs whose zero is not their default (ds_model_params,
 * ds_sampler_params, ds_convert_params) carry a magic that only their
 * ds_*_default_params() sets; the function taking one refuses it without
 * (a zeroed struct, or one put together field by field). Different values,
 * so that one struct's bytes do not pass for another's. */
#define DSI_MODEL_PARAMS_MAGIC 0x504d5344u     /* "DSMP" */
#define DSI_SAMPLER_PARAMS_MAGIC 0x50535344u   /* "DSSP" */
#define DSI_CONVERT_PARAMS_MAGIC 0x50435344u   /* "DSCP" */

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

/* ==== Half precision and quantization ==================================== */
DSI_FUNC float dsi_f16_to_f32(uint16_t h);
DSI_FUNC uint16_t dsi_f32_to_f16(float f);        /* round to nearest even */
DSI_FUNC float dsi_bf16_to_f32(uint16_t h);
DSI_FUNC float dsi_fp8_e4m3_to_f32(uint8_t v);    /* OCP e4m3fn: no infinities, 0x7f/0xff NaN */

#define DSI_Q8_BLOCK 32
/* Decode streams each weight row once: the dot kernels prefetch this many
 * bytes ahead of what they read (measured: 2-4 KiB ahead gave decode +25-35%
 * on the 4-layer q8 model, 2 threads; 1 KiB and 8 KiB less). */
#define DSI_PREFETCH_AHEAD 4096
#define DSI_Q8_BLOCK_BYTES 34                    /* f16 scale + 32 int8 */
/* Bytes of a dtype for a (rows x cols) matrix; cols must be a multiple of 32
 * for Q8_0. Returns false on overflow or a bad shape. */
DSI_FUNC bool dsi_dtype_row_bytes(ds_dtype t, uint64_t cols, uint64_t *out);
/* Quantizes one row of n floats (n % 32 == 0) into Q8_0 blocks. The scale is
 * rounded up to F16 so that |x - q*scale| <= scale/2 always holds. */
DSI_FUNC void dsi_quantize_row_q8_0(const float *x, uint8_t *out, size_t n);
DSI_FUNC void dsi_dequantize_row_q8_0(const uint8_t *in, float *y, size_t n);
DSI_FUNC void dsi_convert_row_f16(const float *x, uint16_t *out, size_t n);
DSI_FUNC void dsi_dequantize_row_f16(const uint16_t *in, float *y, size_t n);

/* ==== JSON ================================================================ */
/* A strict RFC 8259 parser producing a read-only tree in one arena. Strings
 * are unescaped UTF-8 (validated; \u escapes incl. surrogate pairs decoded),
 * NUL-terminated, with their byte length in n (they may contain \u0000).
 * Objects keep member order; duplicate keys are kept (lookups find the first). */
typedef enum dsi_json_type {
    DSI_JSON_NULL = 0,
    DSI_JSON_FALSE,
    DSI_JSON_TRUE,
    DSI_JSON_NUMBER,
    DSI_JSON_STRING,
    DSI_JSON_ARRAY,
    DSI_JSON_OBJECT
} dsi_json_type;

typedef struct dsi_json dsi_json;
struct dsi_json {
    dsi_json_type type;
    uint32_t n;            /* string: byte length; array/object: number of children */
    const char *key;       /* set when this value is an object member */
    uint32_t key_len;
    bool is_int;           /* number written without fraction/exponent and fits int64 */
    int64_t i;             /* exact value when is_int */
    double num;            /* numbers (also set when is_int) */
    const char *str;       /* strings */
    dsi_json *kids;        /* array elements / object members, n of them, contiguous */
};

typedef struct dsi_json_doc dsi_json_doc;

/* Parses len bytes (need not be NUL-terminated). Errors are DS_ERR_JSON with
 * "line L column C: what" (DS_ERR_NOMEM, DS_ERR_LIMIT for depth). The caller
 * frees *out with dsi_json_free. */
DSI_FUNC ds_status dsi_json_parse(const char *text, size_t len, const dsi_alloc *al, dsi_json_doc **out, dsi_err *e);
DSI_FUNC void dsi_json_free(dsi_json_doc *doc);
DSI_FUNC const dsi_json *dsi_json_root(const dsi_json_doc *doc);
/* Member lookup; NULL when obj is not an object or lacks the key. */
DSI_FUNC const dsi_json *dsi_json_get(const dsi_json *obj, const char *key);
/* Typed lookups: return 1 when found with the right type, 0 when absent or
 * null, -1 when present with the wrong type (or non-integral / out of range). */
DSI_FUNC int dsi_json_get_int(const dsi_json *obj, const char *key, int64_t *out);
DSI_FUNC int dsi_json_get_num(const dsi_json *obj, const char *key, double *out);
DSI_FUNC int dsi_json_get_bool(const dsi_json *obj, const char *key, bool *out);
DSI_FUNC int dsi_json_get_str(const dsi_json *obj, const char *key, const char **out, size_t *len);
/* Writes s as a JSON string literal (with quotes) into b. */
DSI_FUNC void dsi_json_write_string(dsi_buf *b, const char *s, size_t len);

/* ==== safetensors ========================================================= */
typedef enum dsi_st_dtype {
    DSI_ST_F32 = 0, DSI_ST_F16, DSI_ST_BF16, DSI_ST_F8_E4M3, DSI_ST_F64,
    DSI_ST_I8, DSI_ST_U8, DSI_ST_I16, DSI_ST_I32, DSI_ST_I64, DSI_ST_BOOL,
    DSI_ST_OTHER          /* a dtype we do not convert (named in errors) */
} dsi_st_dtype;

typedef struct dsi_st_tensor {
    const char *name;      /* NUL-terminated, owned by the header */
    dsi_st_dtype dtype;
    const char *dtype_name;
    int ndim;
    uint64_t shape[8];
    uint64_t begin, end;   /* byte range relative to the data section */
} dsi_st_tensor;

typedef struct dsi_st_header {
    dsi_json_doc *doc;     /* keeps the strings alive */
    size_t n;
    dsi_st_tensor *t;      /* sorted by begin offset */
    uint64_t data_start;   /* 8 + header length */
    uint64_t data_size;    /* file size - data_start */
    const dsi_alloc *al;
} dsi_st_header;

/* Parses a safetensors header: `buf` holds the first `len` bytes of a file of
 * `file_size` bytes (at least 8 + header length of them). Checks: header
 * length bound, JSON syntax, known keys, dtype names, shape * dtype size ==
 * byte length (overflow-checked), offsets inside the data section, no
 * overlaps. `__metadata__` is allowed and ignored. */
DSI_FUNC ds_status dsi_st_parse(const uint8_t *buf, size_t len, uint64_t file_size, const dsi_alloc *al,
                                dsi_st_header **out, dsi_err *e);
/* Opens a file, reads its header with pread and parses it. */
DSI_FUNC ds_status dsi_st_open(const char *path, const dsi_alloc *al, dsi_st_header **out, dsi_err *e);
DSI_FUNC void dsi_st_free(dsi_st_header *h);
DSI_FUNC const dsi_st_tensor *dsi_st_find(const dsi_st_header *h, const char *name);
DSI_FUNC size_t dsi_st_dtype_size(dsi_st_dtype t);   /* 0 for OTHER */

/* ==== CPU features ======================================================== */
enum { DSI_CPU_AES = 1u << 0, DSI_CPU_AVX2 = 1u << 1, DSI_CPU_FMA = 1u << 2, DSI_CPU_F16C = 1u << 3,
       DSI_CPU_AVX512F = 1u << 4, DSI_CPU_AVX512BW = 1u << 5, DSI_CPU_AVX512VL = 1u << 6,
       DSI_CPU_AVX512VNNI = 1u << 7 };
/* Detected once, then cached. */
DSI_FUNC uint32_t dsi_cpu_features(void);
/* Test hook: features in `mask` are reported absent from now on. */
DSI_FUNC void dsi_cpu_features_mask(uint32_t mask);

/* ==== Crypto ============================================================== */
#define DSI_TAG_BYTES 16
#define DSI_SALT_BYTES 32
#define DSI_NONCE_BYTES 12

/* One-time libsodium init; reports DS_ERR_CRYPTO on failure. */
DSI_FUNC ds_status dsi_crypto_init(dsi_err *e);

/* Keys derived for one file. Lives in a secure buffer. */
typedef struct dsi_keys {
    ds_cipher cipher;
    uint8_t enc[32];       /* AEAD key (AES-256-GCM) or, for CIPHER_NONE, the integrity key */
    uint8_t check[32];     /* key-check value written in the header */
    uint8_t aes_state[512] __attribute__((aligned(16))); /* precomputed AES-GCM state */
} dsi_keys;

/* Derives the file's keys from a 32-byte master key (or, for CIPHER_NONE,
 * from the salt alone: integrity only). */
DSI_FUNC ds_status dsi_keys_derive(dsi_keys *k, ds_cipher cipher, const uint8_t *master, size_t master_len,
                                   const uint8_t salt[DSI_SALT_BYTES], dsi_err *e);
/* Argon2id: passphrase -> 32-byte master key. */
DSI_FUNC ds_status dsi_passphrase_key(uint8_t out[32], const char *pw, size_t pw_len, const uint8_t salt[16],
                                      uint64_t opslimit, uint64_t memlimit, dsi_err *e);

/* Associated data bound to every chunk: which segment (index, kind, layer,
 * expert), which chunk, whether it is the last, and the segment's plaintext
 * size; so chunks cannot be reordered, truncated, or moved between segments.
 * Segments cannot move between files because each file has its own subkey. */
typedef struct dsi_chunk_ad {
    uint32_t segment;
    uint32_t kind;
    int32_t layer;
    int32_t expert;
    uint64_t chunk;
    uint64_t seg_plain_bytes;
    uint32_t last;
    const uint8_t *extra;          /* more associated data (the metadata binds the header), or NULL */
    size_t extra_len;
} dsi_chunk_ad;
#define DSI_AD_BYTES 40
#define DSI_META_SEGMENT 0xffffffffu

/* Seals n bytes from `in` to `out` (n bytes) and writes the tag. in == out allowed. */
DSI_FUNC ds_status dsi_chunk_seal(const dsi_keys *k, const dsi_chunk_ad *ad, const uint8_t *in, uint8_t *out,
                                  size_t n, uint8_t tag[DSI_TAG_BYTES], dsi_err *e);
/* Opens a chunk into out (n bytes); DS_ERR_AUTH when the tag does not match.
 * out may be NULL to authenticate only (CIPHER_NONE) or to a scratch buffer. */
DSI_FUNC ds_status dsi_chunk_open(const dsi_keys *k, const dsi_chunk_ad *ad, const uint8_t *in, uint8_t *out,
                                  size_t n, const uint8_t tag[DSI_TAG_BYTES], dsi_err *e);

/* ==== Container format =================================================== */
/*
 * Layout (all little-endian):
 *
 *   [0, 4096)       public header (dsi_header below; the rest zero)
 *   segments        each starts at a 4096-aligned offset; stored as chunks:
 *                   chunk i = ciphertext (min(chunk_bytes, rest)) || tag (16)
 *   metadata        one more sealed segment (index DSI_META_SEGMENT), at the tail
 *                   so the converter writes the file in one streaming pass
 *
 * Header fields (offsets in bytes):
 *     0  magic "DSMODEL\0"
 *     8  u32 format_version
 *    12  u32 header_bytes (bytes covered by the checksum incl. the checksum) = 256
 *    16  u32 cipher   20 u32 kdf   24 u32 chunk_bytes   28 u32 flags (0)
 *    32  u64 file_bytes
 *    40  u64 meta_offset   48 u64 meta_bytes (stored)   56 u64 meta_plain_bytes
 *    64  u8 salt[32]
 *    96  u64 argon_opslimit   104 u64 argon_memlimit   112 u8 argon_salt[16]
 *   128  u8 key_check[32]
 *   160  reserved (zero)
 *   224  u8 checksum[32] = BLAKE2b-256 of bytes [0, 224)
 * The checksum catches damage; deliberate edits are caught because the
 * metadata's associated data includes the whole 256-byte header.
 * The first 16 bytes (magic, version, header_bytes) keep their meaning in
 * every future version.
 *
 * Metadata plaintext: records { u32 tag; u32 reserved; u64 len; bytes; pad to 8 }.
 */
#define DSI_MAGIC "DSMODEL"
#define DSI_HEADER_BYTES 256
#define DSI_HEADER_AREA 4096
#define DSI_SEG_ALIGN 4096
#define DSI_DEFAULT_CHUNK (1u << 20)
#define DSI_MIN_CHUNK 4096u
#define DSI_MAX_CHUNK (64u << 20)
#define DSI_TENSOR_ALIGN 64   /* tensors inside a segment's plaintext */

typedef struct dsi_header {
    uint32_t version;
    uint32_t cipher, kdf, chunk_bytes, flags;
    uint64_t file_bytes, meta_offset, meta_bytes, meta_plain_bytes;
    uint8_t salt[DSI_SALT_BYTES];
    uint64_t argon_ops, argon_mem;
    uint8_t argon_salt[16];
    uint8_t key_check[32];
    uint8_t raw[DSI_HEADER_BYTES];   /* the bytes as stored (bound into metadata AD) */
} dsi_header;

enum {
    DSI_REC_CONFIG_JSON = 1,       /* config.json as found in the checkpoint */
    DSI_REC_TOKENIZER_JSON = 2,    /* tokenizer.json */
    DSI_REC_TOKENIZER_CONFIG = 3,  /* tokenizer_config.json (chat template), optional */
    DSI_REC_TENSORS = 4,           /* tensor directory */
    DSI_REC_SEGMENTS = 5,          /* segment directory */
    DSI_REC_SOURCE = 6             /* converter version / quant, informational JSON */
};

/* Parses and checks the public header from the first bytes of a file.
 * Distinguishes: not a container, newer version, damaged header. */
DSI_FUNC ds_status dsi_header_parse(const uint8_t *p, size_t len, dsi_header *h, dsi_err *e);
/* Serializes h (computing the checksum) into out[DSI_HEADER_BYTES] and h->raw. */
DSI_FUNC void dsi_header_write(dsi_header *h, uint8_t *out);

typedef struct dsi_segment {
    uint32_t kind;                 /* ds_segment_kind */
    int32_t layer, expert;
    uint32_t n_chunks;
    uint64_t offset, plain_bytes, stored_bytes;
} dsi_segment;

typedef struct dsi_tensor {
    char *name;
    uint32_t dtype;                /* ds_dtype */
    uint32_t n_dims;
    uint64_t dims[4];
    uint32_t segment;
    uint64_t offset, nbytes;
} dsi_tensor;

/* The parsed metadata. */
typedef struct dsi_meta {
    const dsi_alloc *al;
    uint8_t *plain; size_t plain_len;       /* owned copy of the metadata plaintext */
    const char *config_json; size_t config_len;
    const char *tokenizer_json; size_t tokenizer_len;
    const char *tokcfg_json; size_t tokcfg_len;   /* may be NULL */
    size_t n_tensors;
    dsi_tensor *tensors;
    size_t n_segments;
    dsi_segment *segments;
} dsi_meta;

/* Parses decrypted metadata (untrusted in the fuzzer) and checks the
 * directories: every segment inside [4096, file_bytes) and page-aligned,
 * chunk counts consistent with chunk_bytes, every tensor inside its segment
 * with nbytes matching dtype and shape, no overlaps. */
DSI_FUNC ds_status dsi_meta_parse(const uint8_t *plain, size_t len, uint64_t file_bytes, uint32_t chunk_bytes,
                                  uint64_t meta_offset, const dsi_alloc *al, dsi_meta *out, dsi_err *e);
DSI_FUNC void dsi_meta_free(dsi_meta *m);

/* Stored size of a segment of `plain` bytes: plain + tags. */
DSI_FUNC bool dsi_stored_bytes(uint64_t plain, uint32_t chunk_bytes, uint64_t *stored, uint32_t *n_chunks);

/* What the layers above the container read of an opened file's directory:
 * its tensors sorted by name (for lookups) and, once loaded, the plaintext
 * of each resident segment (NULL entries for segments not resident). */
typedef struct dsi_model_file {
    const dsi_meta *meta;
    dsi_tensor *const *sorted;     /* meta->n_tensors entries, by name */
    const dsi_secure_buf *dense;   /* meta->n_segments entries, or NULL before loading */
} dsi_model_file;
/* The tensor called name (its index into meta->tensors in *index), or NULL. */
DSI_FUNC const dsi_tensor *dsi_file_tensor(const dsi_model_file *f, const char *name, size_t *index);

/* ==== Model config ======================================================== */
/* Parses a Hugging Face config.json into the public config struct, checking
 * architecture, required fields and ranges. Tokenizer fields are left 0. */
DSI_FUNC ds_status dsi_config_parse(const char *json, size_t len, const dsi_alloc *al, ds_model_config *cfg, dsi_err *e);

/* ==== Architectures (arch.c) ============================================= */
/* Whether layer `layer` is a MoE layer (else a dense MLP). */
DSI_FUNC bool dsi_config_is_moe_layer(const ds_model_config *cfg, int layer);
/* The attention kind, decided here only: MLA (V2, V3) or multi-head
 * attention (DeepSeek-MoE). */
DSI_FUNC bool dsi_arch_attention_mla(const ds_model_config *cfg);

/* One tensor the architecture needs, in the order the converter writes them:
 * model.embed_tokens.weight; then per layer its dense tensors followed by its
 * routed experts 0..E-1 (gate_proj, up_proj, down_proj each); then
 * model.norm.weight and lm_head.weight (absent when tie_word_embeddings). */
typedef struct dsi_tensor_spec {
    char name[96];                 /* Hugging Face name, e.g. model.layers.3.mlp.experts.7.up_proj.weight */
    int n_dims;                    /* 1 or 2 */
    uint64_t dims[2];              /* as in the checkpoint: (out_features, in_features) */
    bool keep_f32;                 /* norms, router weight, e_score_correction_bias, 1-D tensors */
    uint32_t seg_kind;             /* DS_SEGMENT_DENSE or DS_SEGMENT_EXPERT */
    int32_t layer;                 /* -1 embeddings, 0..n_layers-1, n_layers = final norm + head */
    int32_t expert;                /* routed expert index, -1 otherwise */
} dsi_tensor_spec;

/* Lists the tensors of the architecture in cfg (allocated with al; caller
 * frees *out with dsi_free). */
DSI_FUNC ds_status dsi_arch_tensor_specs(const ds_model_config *cfg, const dsi_alloc *al, dsi_tensor_spec **out,
                                         size_t *n, dsi_err *e);

/* ==== Compute: weights, kernels, thread pool ============================= */
/* A matrix as the kernels see it: rows of `cols` values in `dtype`. */
typedef struct dsi_weight {
    const uint8_t *data;           /* NULL for expert weights until acquired */
    ds_dtype dtype;
    int rows, cols;
    size_t row_bytes;
    uint64_t offset;               /* inside its segment (expert weights) */
} dsi_weight;

/* Where one routed expert lives: its segment and its three matrices. */
typedef struct dsi_expert_ref {
    uint32_t segment;
    uint64_t off[3];               /* gate_proj, up_proj, down_proj */
} dsi_expert_ref;

typedef struct dsi_layer {
    dsi_weight attn_norm, ffn_norm;
    /* MLA (V2/V3) */
    dsi_weight q_proj, q_a, q_a_norm, q_b, kv_a, kv_a_norm, kv_b;
    /* multi-head attention (DeepSeek-MoE) */
    dsi_weight wq, wk, wv;
    dsi_weight wo;
    /* dense MLP, or the shared experts of a MoE layer */
    dsi_weight gate, up, down;
    bool moe;
    dsi_weight router;             /* (n_routed, hidden) F32 */
    dsi_weight bias;               /* e_score_correction_bias (n_routed) F32, V3 only */
    dsi_weight exp_gate, exp_up, exp_down;   /* shapes and dtypes of the routed experts (no data) */
    dsi_expert_ref *experts;       /* n_routed entries */
} dsi_layer;

/* Every weight the forward pass uses, bound from the directory (arch.c). */
typedef struct dsi_weights {
    bool mla;                      /* MLA attention, else multi-head (dsi_arch_attention_mla) */
    dsi_weight embed, out_norm, lm_head;
    dsi_layer *layers;             /* n_layers */
} dsi_weights;
/* Binds W from the file's directory (after the dense segments are resident,
 * so .data points at their plaintext; expert matrices keep only offsets and
 * shapes). Undone by dsi_arch_unbind (safe on a partly bound W). */
DSI_FUNC ds_status dsi_arch_bind(const dsi_model_file *f, const ds_model_config *c, const dsi_alloc *al,
                                 dsi_weights *W, dsi_err *e);
DSI_FUNC void dsi_arch_unbind(dsi_weights *W, int n_layers, const dsi_alloc *al);

/* Kernels (kernels/cpu/ops.c). */
DSI_FUNC float dsi_dot_row(const dsi_weight *w, const uint8_t *row, const float *x);
DSI_FUNC void dsi_dequant_row(const dsi_weight *w, const uint8_t *row, float *y);
/* y[i] += a * W[row i]... : x += a * row (dequantized), n = cols */
DSI_FUNC void dsi_axpy_row(const dsi_weight *w, const uint8_t *row, float a, float *y);
DSI_FUNC void dsi_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
DSI_FUNC void dsi_softmax(float *x, int n);
DSI_FUNC float dsi_dot_f32(const float *a, const float *b, int n);
DSI_FUNC void dsi_axpy_f32(float a, const float *x, float *y, int n);   /* y += a x */
DSI_FUNC void dsi_axpy_f32_c(float a, const float *x, float *y, int n);
/* Activations quantized on the fly for Q8_0 weights: n (a multiple of 32)
 * floats into int8 q and one scale per 32 (amax / 127, nearest-even), and
 * the dot product of a Q8_0 row with them (exact int32 sums per block). */
DSI_FUNC void dsi_quantize_act_q8(const float *x, int n, int8_t *q, float *s);
DSI_FUNC float dsi_dot_q8q8(const uint8_t *row, const int8_t *q, const float *s, int n);
DSI_FUNC void dsi_quantize_act_q8_c(const float *x, int n, int8_t *q, float *s);
DSI_FUNC float dsi_dot_q8q8_c(const uint8_t *row, const int8_t *q, const float *s, int n);
/* Portable versions (the reference for the ISA-specific ones). */
DSI_FUNC float dsi_dot_f32_c(const float *a, const float *b, int n);
DSI_FUNC float dsi_dot_f16_c(const uint8_t *row, const float *x, int n);
DSI_FUNC float dsi_dot_q8_c(const uint8_t *row, const float *x, int n);
/* AVX2 + FMA + F16C (kernels/cpu/ops_avx2.c); only call when dsi_have_avx2(). */
DSI_FUNC bool dsi_have_avx2(void);
DSI_FUNC float dsi_dot_f32_avx2(const float *a, const float *b, int n);
DSI_FUNC void dsi_axpy_f32_avx2(float a, const float *x, float *y, int n);
DSI_FUNC float dsi_dot_f16_avx2(const uint8_t *row, const float *x, int n);
DSI_FUNC float dsi_dot_q8_avx2(const uint8_t *row, const float *x, int n);
DSI_FUNC void dsi_axpy_q8_avx2(const uint8_t *row, float a, float *y, int n);
DSI_FUNC void dsi_f16_to_f32_row_avx2(const uint8_t *row, float *y, int n);
DSI_FUNC void dsi_dot_f32x4_avx2(const float *row, const float *x, size_t ldx, int n, float out[4]);
DSI_FUNC void dsi_dot_f32_4x2_avx2(const float *rows, size_t ldr, const float *x, size_t ldx, int n,
                                  float out[8]);
DSI_FUNC void dsi_axpy_f16_avx2(const uint8_t *row, float a, float *y, int n);
DSI_FUNC void dsi_quantize_act_q8_avx2(const float *x, int n, int8_t *q, float *s);
DSI_FUNC float dsi_dot_q8q8_avx2(const uint8_t *row, const int8_t *q, const float *s, int n);
/* AVX-512 F/BW/VL + VNNI (kernels/cpu/ops_avx512.c); only call when dsi_have_vnni512(). */
DSI_FUNC bool dsi_have_vnni512(void);
/* Q8_0 row times T (1..4) tokens whose activations are stored offset to
 * unsigned (u = q + 128, dsi_act_to_u8); out[j] for token j. */
DSI_FUNC void dsi_dot_q8u8xT_vnni(const uint8_t *row, const uint8_t *u, size_t ldu, const float *s, size_t lds, int n,
                                  int T, float *out);
DSI_FUNC void dsi_act_to_u8(const int8_t *q, uint8_t *u, size_t n);
/* Token-lane GEMM for batches (kernels/cpu/ops_avx512.c): tokens go in vector
 * lanes, up to DSI_TL_TOKENS per tile plus a bias lane; T tokens make
 * dsi_tl_tiles(T) tiles of as even a size as they can (dsi_lane_tile).
 * dsi_tl_split says how many of T tokens to give it: none below DSI_TL_MIN
 * (with weights coming from memory, the tile wins from 6 tokens), all when
 * the last tile would hold at least DSI_TL_REM, otherwise the whole tiles of
 * 15, leaving a remainder of 1-6 to dsi_dot_q8u8xT_vnni (a second tile over
 * rows already in cache costs about as much as 7 tokens there).
 * dsi_tl_pack (portable) lays out T tokens of offset activations u (row
 * stride ldu) and their scales s (row stride lds) into P (dsi_tl_pack_bytes)
 * and S (dsi_tl_pack_floats). dsi_gemm_q8u8_tl_vnni then computes
 * Y[t * ldy + r] for rows [0, rows) of the Q8_0 matrix W (row stride rb);
 * scratch holds 8 * cols / 32 floats. */
#define DSI_TL_TOKENS 15
#define DSI_TL_MIN 6
#define DSI_TL_REM 7
/* T tokens in tiles of at most per, as even as they can be: tile i holds
 * tokens [*t0, *t0 + *n). */
DSI_INLINE int dsi_lane_tiles(int T, int per) { return (T + per - 1) / per; }
DSI_INLINE void dsi_lane_tile(int T, int per, int tile, int *t0, int *n) {
    int k = dsi_lane_tiles(T, per);
    *t0 = (int)((long)T * tile / k);
    *n = (int)((long)T * (tile + 1) / k) - *t0;
}
/* A kernel's RR x lanes block of results (out[i * lanes + t]) into Y rows
 * t0..t0+n-1, columns r..r+RR-1. */
DSI_INLINE void dsi_lane_store(float *Y, size_t ldy, int t0, int n, int r, int RR, const float *out, int lanes) {
    for (int t = 0; t < n; t++)
        for (int i = 0; i < RR; i++) Y[(size_t)(t0 + t) * ldy + (size_t)(r + i)] = out[i * lanes + t];
}
DSI_INLINE int dsi_tl_tiles(int T) { return dsi_lane_tiles(T, DSI_TL_TOKENS); }
DSI_INLINE int dsi_tl_split(int T) {
    if (T < DSI_TL_MIN) return 0;
    int r = T % DSI_TL_TOKENS;
    return T < DSI_TL_TOKENS || r == 0 || r >= DSI_TL_REM ? T : T - r;
}
/* The AVX2 form (kernels/cpu/ops_avx2.c), for CPUs without VNNI: 8 signed
 * tokens per tile, no bias lane. dsi_tl8_pack lays out int8 activations q
 * (row stride ldq) and scales s into P (dsi_tl8_pack_bytes) and S
 * (dsi_tl8_pack_floats); dsi_gemm_q8q8_tl8_avx2 is dsi_gemm_q8u8_tl_vnni's
 * counterpart (scratch: 4 * cols / 32 floats). dsi_tl8_split: all T from
 * DSI_TL8_MIN tokens, else none. */
#define DSI_TL8_TOKENS 8
#define DSI_TL8_MIN 6
DSI_INLINE int dsi_tl8_tiles(int T) { return dsi_lane_tiles(T, DSI_TL8_TOKENS); }
DSI_INLINE int dsi_tl8_split(int T) { return T >= DSI_TL8_MIN ? T : 0; }
DSI_INLINE size_t dsi_tl8_pack_bytes(int T, int cols) { return (size_t)dsi_tl8_tiles(T) * (size_t)(cols / 32) * 256; }
DSI_INLINE size_t dsi_tl8_pack_floats(int T, int cols) { return (size_t)dsi_tl8_tiles(T) * (size_t)(cols / 32) * 8; }
DSI_FUNC void dsi_tl8_pack(const int8_t *q, size_t ldq, const float *s, size_t lds, int T, int cols, int8_t *P,
                           float *S);
DSI_FUNC void dsi_gemm_q8q8_tl8_avx2(const uint8_t *W, size_t rb, int rows, int cols, const int8_t *P, const float *S,
                                     int T, float *Y, size_t ldy, float *scratch);
DSI_INLINE size_t dsi_tl_pack_bytes(int T, int cols) { return (size_t)dsi_tl_tiles(T) * (size_t)(cols / 32) * 512; }
DSI_INLINE size_t dsi_tl_pack_floats(int T, int cols) { return (size_t)dsi_tl_tiles(T) * (size_t)(cols / 32) * 16; }
DSI_FUNC void dsi_tl_pack(const uint8_t *u, size_t ldu, const float *s, size_t lds, int T, int cols, uint8_t *P,
                          float *S);
DSI_FUNC void dsi_gemm_q8u8_tl_vnni(const uint8_t *W, size_t rb, int rows, int cols, const uint8_t *P, const float *S,
                                    int T, float *Y, size_t ldy, float *scratch);
DSI_FUNC void dsi_dot_q8q8x4_avx2(const uint8_t *row, const int8_t *q, size_t ldq, const float *s, size_t lds, int n,
                                  float out[4]);

/* A persistent pool: run(fn, ctx, n) calls fn(ctx, i, worker) for i in [0, n)
 * on all workers (the caller is worker 0) and returns when all are done. */
typedef struct dsi_pool dsi_pool;
typedef void (*dsi_task_fn)(void *ctx, int i, int worker);
DSI_FUNC ds_status dsi_pool_new(dsi_pool **out, int n_threads, const dsi_alloc *al, dsi_err *e);
DSI_FUNC void dsi_pool_free(dsi_pool *p);
DSI_FUNC void dsi_pool_run(dsi_pool *p, dsi_task_fn fn, void *ctx, int n);
DSI_FUNC int dsi_pool_size(const dsi_pool *p);

/* ==== Model file (file.c) ================================================ */
/* The opened container as the layers above it see it. ds_model_open
 * (model.c) fills it in order: the file and its keys, the metadata and
 * directory, the dense segments, the bound weights, then the pager and the
 * device. */
typedef struct dsi_pager dsi_pager;
typedef struct dsi_device_i dsi_device_i;

struct ds_model {
    dsi_alloc al;
    dsi_err err;                /* last failure on this handle */
    int fd;
    const uint8_t *map;         /* read-only mapping of the whole file */
    size_t map_len;
    dsi_header hdr;
    dsi_keys *keys;             /* in `keybuf` */
    dsi_secure_buf keybuf;
    dsi_meta meta;
    dsi_tensor **sorted;        /* tensors sorted by name, for lookups */
    ds_model_config cfg;
    bool weights_loaded;
    dsi_secure_buf *dense;      /* one per dense segment (n_segments entries; unused for experts) */
    int n_threads;
    bool exact_act;             /* Q8_0 weights meet F32 activations (ds_model_params.exact_activations) */
    uint64_t expert_cache_bytes;
    ds_log_fn log;
    void *log_user;
    int n_contexts;             /* live contexts; close refuses while > 0 (atomic) */
    ds_tokenizer *tok;          /* built from the metadata at open */
    dsi_pager *pager;           /* NULL: routed experts are resident */
    ds_device device;           /* where the forward pass runs */
    const dsi_device_i *dev;    /* its table (CPU or CUDA), chosen once at open */
    void *dev_model;            /* the device's per-model state (device weights, caches), or NULL */
    char device_name[128];
    dsi_weights w;              /* bound weights (load_weights only), host addresses */
};

/* The view of m's directory the lower layers take. */
DSI_INLINE dsi_model_file dsi_model_file_of(const ds_model *m) {
    dsi_model_file f = {&m->meta, (dsi_tensor *const *)m->sorted, m->dense};
    return f;
}
/* Opens the file at path into m (allocator, log and threads already set):
 * header, mapping, keys, metadata, config, tokenizer, directory checks. */
DSI_FUNC ds_status dsi_file_open(ds_model *m, const char *path, const ds_model_params *p, dsi_err *e);
/* Decrypts every dense segment (and the routed experts too when experts_too)
 * into secure buffers and binds the weights (m->w); p->progress is told of
 * each segment and may cancel (DS_ERR_CANCELLED). */
DSI_FUNC ds_status dsi_file_load_dense(ds_model *m, bool experts_too, const ds_model_params *p, dsi_err *e);
/* Undoes dsi_file_open and dsi_file_load_dense (not the pager or device). */
DSI_FUNC void dsi_file_close(ds_model *m);
/* Decrypts and authenticates one segment into dst (at least plain_bytes).
 * Messages name the segment. Thread-safe. */
DSI_FUNC ds_status dsi_segment_read(const ds_model *m, uint32_t seg, uint8_t *dst, size_t dst_len, dsi_err *e);
/* Opens chunks [c0, c1) of a segment into their places in dst (a buffer for
 * the whole segment); the caller wipes dst on failure. Thread-safe: threads
 * may open different chunks of one segment at once. */
DSI_FUNC ds_status dsi_segment_read_chunks(const ds_model *m, uint32_t seg, uint8_t *dst, uint32_t c0, uint32_t c1,
                                           dsi_err *e);
/* Decrypts routed expert (layer, expert) into a caller buffer; the pager of
 * the expert cache builds on this. Returns the segment index in *seg. */
DSI_FUNC ds_status dsi_model_read_expert(const ds_model *m, int layer, int expert, uint8_t *dst, size_t dst_len,
                                         uint32_t *seg, dsi_err *e);
/* Index of the segment of (kind, layer, expert), or -1. */
DSI_FUNC long dsi_model_find_segment(const ds_model *m, uint32_t kind, int layer, int expert);
/* Pointer to a resident dense tensor's bytes, or NULL. */
DSI_FUNC const uint8_t *dsi_model_tensor_data(const ds_model *m, size_t index);
/* "layer 3 expert 17", "embeddings", "layer 2 dense", "output" (layer == n_layers). */
DSI_FUNC void dsi_segment_describe(const dsi_segment *s, int n_layers, char *buf, size_t len);
DSI_FUNC void dsi_log(ds_log_fn fn, void *user, ds_log_level lvl, const char *fmt, ...) DSI_PRINTF(4, 5);
/* Asks the OS for [off, off + len) of the file ahead of reading it through
 * the mapping; releases this process's pages of the whole pages in [off, end). */
DSI_FUNC void dsi_map_willneed(const ds_model *m, uint64_t off, uint64_t len);
DSI_FUNC void dsi_map_release(const ds_model *m, uint64_t off, uint64_t end);
/* Maps [off, off + len) into this process's page tables in one call. */
DSI_FUNC void dsi_map_populate(const ds_model *m, uint64_t off, uint64_t len);
/* Whether [off, off + len) of the file is in memory already (page cache, tmpfs). */
DSI_FUNC bool dsi_map_in_memory(const ds_model *m, uint64_t off, uint64_t len);

/* ==== Expert pager (pager.c) ============================================ */
/* After the weights are bound and m->device is decided (DS_PREFETCH_AUTO
 * fetches ahead on CUDA, whose CPUs are free to decrypt). */
DSI_FUNC ds_status dsi_pager_new(ds_model *m, uint64_t budget, uint64_t page_cache, ds_prefetch_mode prefetch,
                                 ds_evict_policy policy, dsi_err *e);
DSI_FUNC void dsi_pager_free(ds_model *m);
DSI_FUNC ds_status dsi_pager_acquire(dsi_pager *p, int layer, int expert, const uint8_t **base, dsi_err *e);
DSI_FUNC void dsi_pager_release(dsi_pager *p, int layer, int expert);
/* Where (layer, expert) is: 0 ready in the cache, 1 not there (nor being
 * decrypted), 2 being decrypted. A hint: it may change at once. */
DSI_FUNC int dsi_pager_peek(dsi_pager *p, int layer, int expert);
/* Test hook (NULL in use): called after each chunk a thread decrypts, with
 * the chunk's index and the count of threads that joined the fill. */
DSI_DATA_DECL void (*dsi_pager_fill_hook)(uint32_t chunk, const int *helpers);
/* Whether (layer, expert) is being decrypted with chunks left to take (tests). */
DSI_FUNC bool dsi_pager_filling(dsi_pager *p, int layer, int expert);
/* Queues experts for decryption ahead of use. prediction: a guess for a later
 * layer, best first (counted for the accuracy statistics); of its experts
 * not cached, only those whose rank has been right often enough so far
 * (DSI_GUESS_MIN_ACCURACY, scored by dsi_pager_routed) are queued. Under
 * DS_PREFETCH_AUTO with no CPU to spare, an expert whose ciphertext is in
 * memory is not queued (a miss decrypts it on every compute thread). */
DSI_FUNC void dsi_pager_prefetch(dsi_pager *p, int layer, const int *experts, int n, bool prediction);
/* The layer's real choice: guesses for it that it did not choose count as
 * wrong now (the prediction accuracy is per forward pass); with the guess
 * made for this pass (best first, n_guess of them), each rank's record. */
DSI_FUNC void dsi_pager_routed(dsi_pager *p, int layer, const int *experts, int n, const int *guess, int n_guess);
/* The host cache's statistics into out (zeroes without a pager); reset
 * zeroes the counters (budget and slots stay). */
DSI_FUNC void dsi_pager_stats(const ds_model *m, ds_cache_stats *out, bool reset);
/* Pointer to the plaintext of routed expert (layer, e): from the expert
 * cache (decrypting it on a miss) or resident; release when done with it. */
DSI_FUNC ds_status dsi_expert_acquire(const ds_model *m, int layer, int e, const uint8_t **base, dsi_err *e_out);
DSI_FUNC void dsi_expert_release(const ds_model *m, int layer, int e);

/* ==== Devices: what the forward pass needs of a CPU or a GPU ============= */
/*
 * The forward pass (forward.c) is written once, over this table; the CPU
 * (cpu.c) and CUDA (cuda.c) fill it. The driver owns the order of
 * operations: norms, projections, attention per run of one sequence, the
 * router, the grouping of tokens per expert, the shared experts, the
 * residuals and the head. A device owns its memory (weights, KV caches,
 * activations), its kernels and how it gets routed experts.
 *
 * Buffers named in the calls are the device's memory (dsi_act, from
 * ctx_new); arrays documented as host are ordinary memory. Every call that
 * can fail returns a status with the message in e. Calls on one device
 * context come from one thread at a time (a context's).
 */
#define DSI_DEVICE_VERSION 1
#define DSI_MAX_BATCH 256           /* tokens per forward chunk (scratch bound) */

/* A batch of tokens that may belong to several sequences, each with its own
 * positions and KV cache. The driver splits it into runs for attention. */
typedef struct dsi_batch {
    int n;
    const int32_t *tok;            /* host (n) */
    const int32_t *pos;            /* host (n): position of each token in its sequence */
    const int32_t *seq;            /* host (n): its sequence, in [0, n_seq) of the context */
} dsi_batch;

/* Tokens [t0, t0 + n) of a batch: one sequence at positions pos0, pos0 + 1, ... */
typedef struct dsi_run {
    int t0, n, seq, pos0;
} dsi_run;

/* The shape a device context is made for. */
typedef struct dsi_ctx_shape {
    int n_ctx;                     /* positions per sequence */
    int n_seq;                     /* sequences (KV caches) */
    int max_batch;                 /* tokens per forward call */
    int n_threads;
    const float *inv_freq;         /* host (rope_dim / 2): rotary frequencies (YaRN applied) */
    int rope_dim;
    float rope_mscale;             /* YaRN's cos/sin factor */
    float attn_scale;              /* softmax scale, YaRN mscale^2 included */
} dsi_ctx_shape;

/* A device context's activations, each for max_batch tokens, row-major. */
typedef struct dsi_act {
    float *x;                      /* (T, D) the residual stream */
    float *xn;                     /* (T, D) its normalised copy */
    float *q;                      /* (T, max(H * qk, q_lora_rank)) */
    float *qa;                     /* (T, q_lora_rank) */
    float *kva;                    /* (T, kv_a width) MLA: latent + rope key; MHA: K rows then V rows */
    float *att;                    /* (T, H * v) attention output */
    float *tmp;                    /* (T, D) a block's output before the residual */
    float *router;                 /* (T, E) router logits */
    float *ye;                     /* (T, D) the shared experts' output */
} dsi_act;

/* The MoE work of one layer, grouped by the driver: for every expert with
 * tokens, in ascending expert order, the tokens and their weights; the
 * devices add each token's experts in that order (results bit-identical
 * across batch sizes and paths). */
typedef struct dsi_moe_plan {
    int T, K;
    const int *sel;                /* host (T, K): the router's choice, best first */
    const float *selw;             /* host (T, K): its weights */
    int n_used;
    const int *used;               /* host (n_used): the experts with tokens, ascending */
    const int *off, *cnt;          /* host (E): expert x's entries are [off[x], off[x] + cnt[x]) */
    const int *idx;                /* host (T * K): the token of each entry */
    const float *wts;              /* host (T * K): its weight */
} dsi_moe_plan;

struct dsi_device_i {
    int version;                   /* DSI_DEVICE_VERSION */
    const char *name;              /* "cpu", "cuda" */
    /* per model: after the weights are bound (and the pager made) */
    ds_status (*model_new)(ds_model *m, const ds_model_params *p, void **dm, dsi_err *e);
    void (*model_free)(ds_model *m, void *dm);
    /* the weights as this device addresses them (host for the CPU) */
    const dsi_weights *(*weights)(const ds_model *m);
    /* the device's own expert cache statistics (zeroed when it has none) */
    void (*cache_stats)(const ds_model *m, ds_cache_stats *out, bool reset);
    /* per context */
    ds_status (*ctx_new)(const ds_model *m, const dsi_ctx_shape *sh, void **dc, dsi_act *act, dsi_err *e);
    void (*ctx_free)(const ds_model *m, void *dc);
    /* around one forward call: begin may take a lock; end waits for the
     * queued work (status s: a failure so far, after which it only leaves
     * the device idle) */
    ds_status (*begin)(void *dc, dsi_err *e);
    ds_status (*end)(void *dc, ds_status s, dsi_err *e);
    /* x rows = the embedding rows of tok (host, T ids) */
    ds_status (*embed)(void *dc, const dsi_weight *table, const int32_t *tok, int T, float *x, dsi_err *e);
    /* rows of out = rmsnorm(rows of x) * w (n = w->cols values; out == x allowed) */
    ds_status (*rmsnorm)(void *dc, float *out, int ldo, const float *x, int ldx, const dsi_weight *w, int rows,
                         float eps, dsi_err *e);
    /* Y (T, w->rows) = X (T, w->cols) W^T */
    ds_status (*matmul)(void *dc, const dsi_weight *w, const float *X, int T, int ldx, float *Y, int ldy,
                        dsi_err *e);
    /* Y (T, D) = down(silu(gate X) * up X) */
    ds_status (*mlp)(void *dc, const dsi_weight *gate, const dsi_weight *up, const dsi_weight *down, const float *X,
                     int T, float *Y, dsi_err *e);
    /* y += x over n floats */
    ds_status (*add)(void *dc, float *y, const float *x, size_t n, dsi_err *e);
    /* MLA for one run: rows [r->t0, r->t0 + r->n) of kva (the kv_a output)
     * enter sequence r->seq's cache of layer l (normalised latent, roped
     * key), then those rows of q attend over positions [0, pos0 + t] into
     * the same rows of att */
    ds_status (*mla_attention)(void *dc, int l, const dsi_layer *L, const dsi_run *r, float eps, dsi_err *e);
    /* multi-head attention for one run: q and the K, V rows in kva (K of the
     * batch's T tokens, then their V) are roped, stored and attended */
    ds_status (*mha_attention)(void *dc, int l, const dsi_layer *L, const dsi_run *r, int T, dsi_err *e);
    /* routing of T tokens from the router logits into host sel/selw (T, K) */
    ds_status (*route)(void *dc, const dsi_layer *L, const float *logits, int T, int *sel, float *selw,
                       dsi_err *e);
    /* Y (T, D) = the routed experts of layer l applied to X as planned */
    ds_status (*moe)(void *dc, int l, const dsi_layer *L, const dsi_moe_plan *plan, const float *X, float *Y,
                     dsi_err *e);
    /* out (host, n rows of the vocabulary) = X (n, D) times the LM head */
    ds_status (*head)(void *dc, const dsi_weight *lm_head, const float *X, int n, float *out, dsi_err *e);
};

/* The CPU device (cpu.c). */
DSI_FUNC const dsi_device_i *dsi_cpu_device(void);
/* Routing for one token: router logits (E) -> n_experts_per_tok experts and
 * their weights. scratch holds 3 * E floats. (cpu.c; also the reference of
 * the CUDA route kernel's tests) */
DSI_FUNC void dsi_route(const ds_model_config *cf, const float *logits, const float *bias, float *scratch, int *sel,
                        float *w);

/* The CUDA device (cuda.c). Before the weights load, decides whether the
 * model runs on CUDA: no device (or no CUDA in this build) leaves it on the
 * CPU with a DS_LOG_WARN notice and DS_OK; a bad gpu_index is an error. */
DSI_FUNC ds_status dsi_cuda_probe(ds_model *m, const ds_model_params *p, dsi_err *e);
/* Its table (only used once dsi_cuda_probe chose CUDA). */
DSI_FUNC const dsi_device_i *dsi_cuda_device(void);

/* ==== Tokenizer (tokenizer.c) =========================================== */
/* Fills the tokenizer summary fields of cfg (vocab, merges, added tokens,
 * chat template present) from a built tokenizer. */
DSI_FUNC void dsi_tokenizer_summary(const ds_tokenizer *t, ds_model_config *cfg);

/* ==== Portable helpers ==================================================== */
DSI_FUNC int dsi_num_cpus(void);
DSI_FUNC double dsi_now_seconds(void);

#endif /* DS_INTERNAL_H */
