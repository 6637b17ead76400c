/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * format.h — the formats layer (quant.c, json.c, safetensors.c, crypto.c,
 * container.c, config.c, arch.c): F16/Q8_0/Q4_0 rows, the strict parsers, the
 * sealed chunks, the container's header, metadata and directories, the model
 * config, and the architecture table with the weights it binds. Not
 * installed; not part of the API.
 */
#ifndef DS_FORMAT_H
#define DS_FORMAT_H

#include "base.h"

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
/* Bytes of one row of cols values in a fixed-size format; cols must be a
 * multiple of 32 for Q8_0, Q4_0 and Q8_0_24. Returns false on overflow, a
 * bad shape, and for Q8_0_SP, whose rows have no size of their own (its
 * stride is per tensor: dsi_tensor_row_bytes). */
DSI_FUNC bool dsi_dtype_row_bytes(ds_dtype t, uint64_t cols, uint64_t *out);
/* Quantizes one row of n floats (n % 32 == 0) into Q8_0 blocks. The scale is
 * rounded up to F16 so that |x - q*scale| <= scale/2 always holds. */
DSI_FUNC void dsi_quantize_row_q8_0(const float *x, uint8_t *out, size_t n);
DSI_FUNC void dsi_dequantize_row_q8_0(const uint8_t *in, float *y, size_t n);
/* Q4_0 (llama.cpp's block_q4_0, byte for byte): an F16 scale d, then 16
 * bytes whose low nibbles hold values 0..15 and high nibbles 16..31 of the
 * block, each stored as q + 8 (q in -8..7); x = q * d. The rule: the value
 * of largest magnitude m (the first one on a tie) sets d = m / -8 with its
 * magnitude rounded up to the next F16, so m becomes q = -8 exactly and
 * every other value lies in [-8, 8] scales; q = round-half-even(x / d)
 * clamped to -8..7. So |x - q*d| <= |d|/2, except a value near -m (x/d
 * above 7.5), which is clamped: error at most |d|. */
#define DSI_Q4_BLOCK_BYTES 18                    /* f16 scale + 16 bytes of nibbles */
DSI_FUNC void dsi_quantize_row_q4_0(const float *x, uint8_t *out, size_t n);
DSI_FUNC void dsi_dequantize_row_q4_0(const uint8_t *in, float *y, size_t n);
/* Q4_0 blocks rewritten as the Q8_0 blocks of the same values (exact: q in
 * -8..7 with the same scale), n values. */
DSI_FUNC void dsi_q4_0_to_q8_0(const uint8_t *in, uint8_t *out, size_t n);
/* Q8_0_24 (2:4 packed, deepseek.h documents the layout): 22 bytes per 32
 * values, {f16 d; u8 pos[4]; int8 q[16]}. The encoder quantizes the row as
 * Q8_0 does (the same d and the same q for every value), then keeps in each
 * group of four the two nonzero q (more than two nonzero: the two of
 * largest |x|, ties to the lower position; fewer: the lowest unused
 * positions, holding 0), p0 < p1. So a row with at most two nonzeros per
 * group decodes to exactly what Q8_0 gives it. Every byte string decodes
 * (p0 == p1: the second value wins). */
#define DSI_Q24_BLOCK_BYTES 22
DSI_FUNC void dsi_quantize_row_q8_0_24(const float *x, uint8_t *out, size_t n);
DSI_FUNC void dsi_dequantize_row_q8_0_24(const uint8_t *in, float *y, size_t n);
/* Q8_0_SP (masked sparse, deepseek.h documents the layout). A row's stride
 * is its tensor's (dsi_tensor_row_bytes), at least DSI_SP_HEAD_BYTES per
 * block plus the stored values. dsi_sp_row_count: the values a row of n
 * floats stores (those whose Q8_0 quantization is nonzero).
 * dsi_quantize_row_q8_0_sp writes exactly stride bytes (zero padded); the
 * caller gives stride >= (n/32) * 6 + dsi_sp_row_count(x, n) (a shorter
 * stride drops the values that do not fit, never writes past it). The
 * decoder reads the head and the stored values only: at most (n/32) * 6 + n
 * bytes, whatever the masks say (the tensor's tail guard covers that). */
#define DSI_SP_HEAD_BYTES 6                      /* per block: f16 d + u32 mask */
DSI_FUNC size_t dsi_sp_row_count(const float *x, size_t n);
DSI_FUNC void dsi_quantize_row_q8_0_sp(const float *x, uint8_t *out, size_t n, size_t stride);
DSI_FUNC void dsi_dequantize_row_q8_0_sp(const uint8_t *in, float *y, size_t n);
/* The same rows as the Q8_0 blocks of the same values (exact), n values. */
DSI_FUNC void dsi_q8_0_24_to_q8_0(const uint8_t *in, uint8_t *out, size_t n);
DSI_FUNC void dsi_q8_0_sp_to_q8_0(const uint8_t *in, uint8_t *out, size_t n);
/* Any blocked weight format (Q8_0, Q4_0, Q8_0_24, Q8_0_SP) rewritten as Q8_0
 * rows (a whole row, n values); false for F32 and F16. */
DSI_FUNC bool dsi_dtype_to_q8_0(ds_dtype d, const uint8_t *in, uint8_t *out, size_t n);
/* Whether a format stores a 32-value block per 32 columns (Q8_0, Q4_0,
 * Q8_0_24, Q8_0_SP: cols % 32 == 0). */
DSI_FUNC bool dsi_dtype_blocked(ds_dtype d);
/* The row stride of a tensor of rows x cols in dtype t stored in nbytes:
 * for the fixed formats dsi_dtype_row_bytes(cols), and nbytes must be rows
 * times that; for Q8_0_SP (nbytes - cols) / rows, with nbytes >= cols,
 * (nbytes - cols) % rows == 0 and (cols/32)*6 <= stride <= (cols/32)*6 +
 * cols. False when nbytes does not fit the dtype and shape (or cols % 32
 * for a blocked format, or rows == 0). Every reader of a directory entry
 * takes its stride from here. */
DSI_FUNC bool dsi_tensor_row_bytes(ds_dtype t, uint64_t rows, uint64_t cols, uint64_t nbytes, uint64_t *row_bytes);
/* The number of weight formats (ds_dtype values). */
#define DSI_N_DTYPES 6
DSI_FUNC void dsi_convert_row_f16(const float *x, uint16_t *out, size_t n);
DSI_FUNC void dsi_dequantize_row_f16(const uint16_t *in, float *y, size_t n);
/* One row of n values in any weight format, from or to F32 (the converters,
 * ds_model_tensor_read_f32, ds_lora_merge). Little-endian bytes; the
 * blocked formats need n % 32 == 0. Decoding takes every format (a Q8_0_SP
 * row whole). Encoding does not take Q8_0_SP, whose row size is chosen per
 * tensor (dsi_quantize_row_q8_0_sp with the stride): it writes nothing and
 * returns false for it, as for a value that is no ds_dtype. */
DSI_FUNC bool dsi_dtype_encode_row(ds_dtype d, const float *x, uint8_t *out, size_t n);
DSI_FUNC void dsi_dtype_decode_row(ds_dtype d, const uint8_t *in, float *y, size_t n);

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

/* ==== GGUF (gguf.c) ======================================================= */
/* llama.cpp's model files. The reader checks every count, length and offset
 * against the file; the converter (convert.c) maps a deepseek2 file's
 * tensors onto ours. */
#ifndef DS_MAX_GGUF_META
#define DS_MAX_GGUF_META ((uint64_t)256 << 20)   /* header + metadata + tensor infos */
#endif

/* GGUF value types (the file's numbering). */
enum {
    DSI_GGUF_U8 = 0, DSI_GGUF_I8, DSI_GGUF_U16, DSI_GGUF_I16, DSI_GGUF_U32, DSI_GGUF_I32, DSI_GGUF_F32,
    DSI_GGUF_BOOL, DSI_GGUF_STRING, DSI_GGUF_ARRAY, DSI_GGUF_U64, DSI_GGUF_I64, DSI_GGUF_F64,
    DSI_GGUF_N_VTYPES
};
/* The ggml tensor types the converter reads (the file's numbering). */
enum {
    DSI_GGML_F32 = 0, DSI_GGML_F16 = 1, DSI_GGML_Q4_0 = 2, DSI_GGML_Q4_1 = 3, DSI_GGML_Q5_0 = 6,
    DSI_GGML_Q5_1 = 7, DSI_GGML_Q8_0 = 8, DSI_GGML_Q2_K = 10, DSI_GGML_Q3_K = 11, DSI_GGML_Q4_K = 12,
    DSI_GGML_Q5_K = 13, DSI_GGML_Q6_K = 14, DSI_GGML_BF16 = 30
};

typedef struct dsi_gguf_kv {
    char *key;             /* NUL-terminated copy */
    uint32_t type;         /* DSI_GGUF_* */
    uint32_t arr_type;     /* arrays: the element type */
    uint64_t n;            /* strings: byte length; arrays: element count */
    uint64_t offset;       /* strings: of the u64 length; arrays: of the first element; scalars: of the value */
    int64_t i;             /* integer and bool scalars */
    uint64_t u;            /* unsigned scalars (and non-negative signed ones) */
    double f;              /* numeric scalars as a double */
} dsi_gguf_kv;

typedef struct dsi_gguf_tensor {
    char *name;            /* NUL-terminated copy */
    uint32_t n_dims;       /* 1..4 */
    uint64_t ne[4];        /* ne[0] fastest; unused ones 1 */
    uint32_t type;         /* ggml type id */
    uint64_t offset;       /* from the data section's start, as stored */
    uint64_t file_offset;  /* from the file's start */
    uint64_t row_bytes;    /* bytes of ne[0] values */
    uint64_t nbytes;
    uint64_t info_at;      /* byte offset of the stored offset (for messages) */
} dsi_gguf_tensor;

typedef struct dsi_gguf {
    const uint8_t *buf;    /* the file's first bytes (all the metadata lies inside) */
    bool owns_buf;
    uint32_t version, alignment;
    uint64_t file_size, data_start, meta_bytes;
    uint64_t n_kv, n_tensors;
    dsi_gguf_kv *kv;
    dsi_gguf_tensor *tensors;   /* in file order */
} dsi_gguf;

/* Parses a GGUF file whose first len bytes are buf (the file is file_size
 * bytes): header, every metadata value, tensor infos, alignment; every
 * tensor inside the file. buf must outlive *out (it is not copied).
 * Errors: DS_ERR_GGUF (malformed, with the byte offset), DS_ERR_TRUNCATED
 * (the file ends first), DS_ERR_LIMIT (the metadata runs past len < file_size),
 * DS_ERR_NOMEM. */
DSI_FUNC ds_status dsi_gguf_parse(const uint8_t *buf, size_t len, uint64_t file_size, const dsi_alloc *al,
                                  dsi_gguf **out, dsi_err *e);
/* Reads the metadata of an open file (at most DS_MAX_GGUF_META bytes) and
 * parses it; *out owns the bytes. */
DSI_FUNC ds_status dsi_gguf_open(const char *path, int fd, uint64_t file_size, const dsi_alloc *al, dsi_gguf **out,
                                 dsi_err *e);
DSI_FUNC void dsi_gguf_free(dsi_gguf *g);
DSI_FUNC const dsi_gguf_kv *dsi_gguf_find(const dsi_gguf *g, const char *key);
DSI_FUNC const dsi_gguf_tensor *dsi_gguf_tensor_find(const dsi_gguf *g, const char *name);
/* A string value's bytes (not NUL-terminated). */
DSI_FUNC void dsi_gguf_string(const dsi_gguf *g, const dsi_gguf_kv *kv, const char **s, size_t *n);
/* Steps through an array of strings from buf + kv->offset. */
DSI_FUNC void dsi_gguf_next_str(const uint8_t **p, const char **s, size_t *n);
DSI_FUNC const char *dsi_ggml_type_name(uint32_t type);
/* n values (whole blocks) of a ggml type to F32: F32, F16, BF16, Q8_0,
 * Q4_0 (exact), Q4_1, Q5_0, Q5_1, Q2_K..Q6_K (as ggml computes them);
 * false for any other type. */
DSI_FUNC bool dsi_ggml_dequantize_row(uint32_t type, const uint8_t *p, float *y, size_t n);
/* Bytes of n values of a ggml type; false for an unknown type, n not whole blocks, or overflow. */
DSI_FUNC bool dsi_ggml_row_bytes(uint32_t type, uint64_t n, uint64_t *out);
/* A deepseek2 (or deepseek: DeepSeek-MoE) file's metadata as the Hugging
 * Face config.json our config parser reads (DS_ERR_ARCH for another
 * architecture, DS_ERR_CONFIG for a
 * missing or bad key), and its tokenizer as tokenizer.json plus
 * tokenizer_config.json (DS_ERR_UNSUPPORTED for a tokenizer model or
 * pre-tokenizer other than gpt2 with deepseek-v3 / deepseek-llm). The
 * texts are allocated with al. */
DSI_FUNC ds_status dsi_gguf_config_json(const dsi_gguf *g, const dsi_alloc *al, char **out, size_t *out_len,
                                        dsi_err *e);
DSI_FUNC ds_status dsi_gguf_tokenizer_json(const dsi_gguf *g, const dsi_alloc *al, char **tok_out, size_t *tok_len,
                                           char **cfg_out, size_t *cfg_len, dsi_err *e);

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
    uint8_t check[32];     /* key-check value written in the header (the master key's alone) */
    uint8_t header[32];    /* key of the header's MAC */
    uint8_t provider;      /* AES-256-GCM: which library's AEAD (crypto.c), set with the schedule */
    uint8_t aes_state[512] __attribute__((aligned(16))); /* precomputed AES-GCM state */
} dsi_keys;

/* Derives the file's keys from a 32-byte master key (or, for CIPHER_NONE,
 * from the salt alone: integrity only). The key check depends on the master
 * key only, never on a header field, so that with the right key an edited
 * header fails its MAC ("header modified") instead of the key check. */
DSI_FUNC ds_status dsi_keys_derive(dsi_keys *k, ds_cipher cipher, const uint8_t *master, size_t master_len,
                                   const uint8_t salt[DSI_SALT_BYTES], dsi_err *e);
/* Which library seals and opens with k ("libsodium", "OpenSSL"): for logs. */
DSI_FUNC const char *dsi_crypto_provider(const dsi_keys *k);
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
 * Header fields (offsets in bytes), format version 2:
 *     0  magic "DSMODEL\0"
 *     8  u32 format_version (2)
 *    12  u32 header_bytes (bytes covered by the checksum incl. the checksum) = 256
 *    16  u32 cipher   20 u32 kdf   24 u32 chunk_bytes   28 u32 flags (0)
 *    32  u64 file_bytes
 *    40  u64 meta_offset   48 u64 meta_bytes (stored)   56 u64 meta_plain_bytes
 *    64  u8 salt[32]
 *    96  u64 argon_opslimit   104 u64 argon_memlimit   112 u8 argon_salt[16]
 *        (Argon2id files: 1 <= opslimit <= DS_MAX_ARGON_OPS,
 *         8 KiB <= memlimit <= DS_MAX_ARGON_MEM; other files: zero)
 *   128  u8 key_check[32] = BLAKE2b-256(master, "deepseek.h dsm v2 key check")
 *   160  reserved (zero)
 *   192  u8 header_mac[32] = BLAKE2b-256 keyed with the file's header key
 *        (crypto.c: from the master key and the salt) of bytes [0, 192)
 *   224  u8 checksum[32] = BLAKE2b-256 of bytes [0, 224)
 * The checksum catches damage without a key. The MAC authenticates every
 * field before it is used: an edit with the checksum recomputed reads
 * "header modified" to whoever holds the key (and "wrong key" never, since
 * the key check depends on the key alone). The metadata's associated data
 * also includes the whole 256-byte header. Version 1 (no MAC, a key check
 * that depended on the salt) is refused: re-convert.
 * The first 16 bytes (magic, version, header_bytes) keep their meaning in
 * every future version.
 *
 * Order of checks at open: checksum -> version -> cipher/KDF ids and the
 * Argon2id caps (dsi_header_parse, before any KDF) -> key check -> MAC
 * (file.c) -> the fields' consistency (dsi_header_check) -> file size.
 *
 * Metadata plaintext: records { u32 tag; u32 reserved; u64 len; bytes; pad to 8 }.
 */
#define DSI_MAGIC "DSMODEL"
/* A LoRA adapter (.dsa) is a container of the same layout and rules with
 * this magic instead (see "Adapter containers" below). */
#define DSI_ADAPTER_MAGIC "DSADAPT"
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
    uint8_t mac[32];                 /* header_mac as stored (or as dsi_header_write computed it) */
    uint8_t raw[DSI_HEADER_BYTES];   /* the bytes as stored (bound into metadata AD) */
    bool adapter;                    /* the magic is DSI_ADAPTER_MAGIC */
} dsi_header;

enum {
    DSI_REC_CONFIG_JSON = 1,       /* config.json as found in the checkpoint */
    DSI_REC_TOKENIZER_JSON = 2,    /* tokenizer.json */
    DSI_REC_TOKENIZER_CONFIG = 3,  /* tokenizer_config.json (chat template), optional */
    DSI_REC_TENSORS = 4,           /* tensor directory */
    DSI_REC_SEGMENTS = 5,          /* segment directory */
    DSI_REC_SOURCE = 6,            /* converter version / quant, informational JSON */
    DSI_REC_ADAPTER = 7,           /* adapter containers only: the adapter's JSON (below) */
    DSI_REC_PRUNE = 8,             /* optional: what pruning the converter applied, JSON
                                      (ds_model_get_pruning documents it) */
    DSI_REC_EXPERTS = 9            /* optional: routed experts dropped at conversion (below) */
};

/*
 * DSI_REC_EXPERTS (ds convert --drop-experts): which routed experts each MoE
 * layer kept. JSON:
 *   {"format": "deepseek.h experts 1", "ratio": R, "n_routed_experts": E,
 *    "calib": {"file": name, "text": name, "n_tokens": N, "model_id": hex},
 *    "layers": {"L": {"kept": [ids ascending], "dropped": [ids ascending]}, ...}}
 * Every MoE layer is listed; kept and dropped partition 0..E-1. The dropped
 * experts have no tensors and no segments; the layer's router
 * (mlp.gate.weight, and e_score_correction_bias) keeps only the kept
 * experts' rows, in ascending expert order. Expert ids stay the original
 * ones everywhere (tensor names, segments, routing). "calib" is
 * informational. A file without the record has every expert.
 */

/*
 * Adapter containers (.dsa, ds_convert_lora). Header as above with magic
 * DSI_ADAPTER_MAGIC; keys, chunks, associated data and metadata sealing are
 * a model's. Metadata records:
 *   DSI_REC_CONFIG_JSON   the base model's config.json (so the adapter can be
 *                         inspected alone and its shapes checked)
 *   DSI_REC_ADAPTER       JSON: {"format": "deepseek.h lora 1",
 *                         "base_id": 64 hex digits (ds_model_id of the base),
 *                         "r": int, "lora_alpha": number, "use_rslora": bool,
 *                         "dtype": "f32" | "f16",
 *                         "target_modules": [PEFT module names, sorted],
 *                         "n_params": int, "base_model_name_or_path": string (informational)}
 *   DSI_REC_TENSORS, DSI_REC_SEGMENTS   as in a model; no tokenizer record.
 * Tensors: "<module>.lora_A" (r, in) and "<module>.lora_B" (out, r), F32 or
 * F16, where <module> is the Hugging Face module path without ".weight"
 * ("model.layers.3.self_attn.q_proj", "model.layers.2.mlp.experts.7.up_proj",
 * "model.layers.0.mlp.gate_proj", "model.layers.1.mlp.shared_experts.down_proj").
 * fan_in_fan_out adapters are stored upright. Segments: one DS_SEGMENT_DENSE
 * segment per layer with any non-routed tensors (expert -1), in layer order;
 * one DS_SEGMENT_EXPERT segment per adapted routed expert (layer, expert)
 * holding its tensors in the order gate A, gate B, up A, up B, down A, down
 * B (the modules adapted), so they are paged like the base's experts.
 */
/* BLAKE2b-256, keyed by the label "deepseek.h model id", of the 256 header
 * bytes as stored: ds_model_id. */
DSI_FUNC void dsi_model_id_of(const dsi_header *h, uint8_t out[32]);

/* Parses the public header from the first bytes of a file and checks what
 * must hold before a key is derived: magic, checksum, version, header size,
 * cipher and KDF ids, and the Argon2id parameters against DS_MAX_ARGON_OPS
 * and DS_MAX_ARGON_MEM (DS_ERR_LIMIT naming the cap). Distinguishes: not a
 * container, another version, damaged header. The other fields are checked
 * by dsi_header_check, after the MAC where there is a key. */
DSI_FUNC ds_status dsi_header_parse(const uint8_t *p, size_t len, dsi_header *h, dsi_err *e);
/* The fields' consistency: flags, reserved bytes, chunk size, metadata
 * location against file_bytes. */
DSI_FUNC ds_status dsi_header_check(const dsi_header *h, dsi_err *e);
/* The header's MAC: keyed BLAKE2b-256 of raw[0, DSI_HDR_MAC_AT). */
#define DSI_HDR_MAC_AT 192
DSI_FUNC void dsi_header_mac(const uint8_t *raw, const uint8_t key[32], uint8_t out[32]);
/* Serializes h into out[DSI_HEADER_BYTES] (may be NULL) and h->raw: with
 * mac_key the MAC is computed into h->mac, without it h->mac is written as it
 * is (tests re-seal edited headers that way); then the checksum. */
DSI_FUNC void dsi_header_write(dsi_header *h, const uint8_t *mac_key, uint8_t *out);

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
    const char *adapter_json; size_t adapter_len; /* adapters only (then no tokenizer) */
    const char *prune_json; size_t prune_len;     /* may be NULL */
    const char *experts_json; size_t experts_len; /* DSI_REC_EXPERTS, or NULL */
    size_t n_tensors;
    dsi_tensor *tensors;
    size_t n_segments;
    dsi_segment *segments;
} dsi_meta;

/* Parses decrypted metadata (untrusted in the fuzzer) and checks the
 * records present (a model's tokenizer, or an adapter's record) and
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
struct dsi_expert_drop;
typedef struct dsi_model_file {
    const dsi_meta *meta;
    dsi_tensor *const *sorted;     /* meta->n_tensors entries, by name */
    const dsi_secure_buf *dense;   /* meta->n_segments entries, or NULL before loading */
    const struct dsi_expert_drop *drop;   /* the experts dropped at conversion, or NULL (all present) */
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
    bool keep_f32;                 /* always F32: norms, e_score_correction_bias, 1-D tensors */
    int pclass;                    /* DS_PARAM_CORE, _EXPERT or _ROUTER (the converter's recipe) */
    uint32_t seg_kind;             /* DS_SEGMENT_DENSE or DS_SEGMENT_EXPERT */
    int32_t layer;                 /* -1 embeddings, 0..n_layers-1, n_layers = final norm + head */
    int32_t expert;                /* routed expert index, -1 otherwise */
} dsi_tensor_spec;

/* Lists the tensors of the architecture in cfg (allocated with al; caller
 * frees *out with dsi_free). */
DSI_FUNC ds_status dsi_arch_tensor_specs(const ds_model_config *cfg, const dsi_alloc *al, dsi_tensor_spec **out,
                                         size_t *n, dsi_err *e);

/* ==== Dropped experts (arch.c) ============================================ */
/* The routed experts a conversion dropped (DSI_REC_EXPERTS), checked against
 * the config. */
typedef struct dsi_expert_drop {
    int n_layers, n_experts;       /* the config's */
    double ratio;
    uint8_t *dropped;              /* (n_layers, n_experts): 1 = absent */
    int32_t *kept;                 /* (n_layers, n_experts): layer l's kept ids ascending, n_kept[l] of them */
    int *n_kept;                   /* (n_layers): E for a layer without drops (and dense layers) */
} dsi_expert_drop;
DSI_INLINE bool dsi_expert_dropped(const dsi_expert_drop *d, int layer, int x) {
    return d && d->dropped[(size_t)layer * (size_t)d->n_experts + (size_t)x];
}
/* Fills d from dropped flags (n_layers, n_experts) (taking them: freed with
 * d); checks that every MoE layer keeps at least n_experts_per_tok experts,
 * and, for a grouped router, that the topk_group groups with the fewest
 * remaining experts still hold n_experts_per_tok of them (so the chosen
 * groups always offer top_k): DS_ERR_INVALID_ARG naming the layer. */
DSI_FUNC ds_status dsi_drop_init(dsi_expert_drop *d, const ds_model_config *c, uint8_t *dropped, double ratio,
                                 const dsi_alloc *al, dsi_err *e);
/* Parses a DSI_REC_EXPERTS record against c (DS_ERR_CORRUPT naming what is
 * wrong). */
DSI_FUNC ds_status dsi_drop_parse(const char *json, size_t len, const ds_model_config *c, const dsi_alloc *al,
                                  dsi_expert_drop *d, dsi_err *e);
DSI_FUNC void dsi_drop_free(dsi_expert_drop *d, const dsi_alloc *al);
/* Removes the dropped experts' specs from a list of dsi_arch_tensor_specs
 * (in place, order kept) and gives each pruned layer's router and bias
 * n_kept rows. d NULL: nothing. */
DSI_FUNC void dsi_drop_specs(const dsi_expert_drop *d, dsi_tensor_spec *specs, size_t *n);

/* ==== What a LoRA adapter may change (arch.c) ============================= */
/* The projections an adapter may change, per layer. */
enum {
    DSI_LM_Q_PROJ = 0, DSI_LM_Q_A, DSI_LM_Q_B, DSI_LM_KV_A, DSI_LM_KV_B, DSI_LM_O,   /* MLA (o_proj: both) */
    DSI_LM_WQ, DSI_LM_WK, DSI_LM_WV,                                               /* multi-head attention */
    DSI_LM_GATE, DSI_LM_UP, DSI_LM_DOWN,                                           /* dense MLP / shared experts */
    DSI_LM_N
};
/* The PEFT name of module DSI_LM_x ("q_proj", "kv_a_proj_with_mqa", ...). */
DSI_FUNC const char *dsi_lora_module_name(int mod);

/* One matrix of the architecture a LoRA adapter may change. */
typedef struct dsi_lora_target {
    char path[96];                 /* its module path: "model.layers.3.self_attn.q_proj" */
    const char *module;            /* the PEFT target name: "q_proj", "gate_proj", ... */
    int mod;                       /* DSI_LM_*, or -1 for a routed expert's matrix */
    int part;                      /* routed experts: 0 gate_proj, 1 up_proj, 2 down_proj */
    int layer, expert;             /* expert -1 unless routed */
    int in, out;                   /* features: A is (r, in), B (out, r) */
} dsi_lora_target;
/* Every matrix of cfg's architecture a LoRA adapter may change, layer by
 * layer (allocated with al; free *out with dsi_free). */
DSI_FUNC ds_status dsi_arch_lora_targets(const ds_model_config *cfg, const dsi_alloc *al, dsi_lora_target **out,
                                         size_t *n, dsi_err *e);

/* ==== Weights as the forward pass sees them =============================== */
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
    uint32_t segment;              /* UINT32_MAX: dropped at conversion (never routed to) */
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
    /* experts dropped at conversion: the router and bias have n_kept rows,
     * row i for expert kept[i]; kept NULL when the layer has every expert
     * (on a device, a device address) */
    const int32_t *kept;
    int n_kept;
    dsi_weight exp_gate, exp_up, exp_down;   /* shapes and dtypes of the routed experts (no data) */
    dsi_expert_ref *experts;       /* n_routed entries */
} dsi_layer;

/* Every weight the forward pass uses, bound from the directory (arch.c). */
typedef struct dsi_weights {
    bool mla;                      /* MLA attention, else multi-head (dsi_arch_attention_mla) */
    bool qlora;                    /* MLA's query through a q-LoRA (q_a, q_a_norm, q_b), else q_proj */
    dsi_weight embed, out_norm, lm_head;
    dsi_layer *layers;             /* n_layers */
} dsi_weights;
/* Binds W from the file's directory (after the dense segments are resident,
 * so .data points at their plaintext; expert matrices keep only offsets and
 * shapes). Undone by dsi_arch_unbind (safe on a partly bound W). */
DSI_FUNC ds_status dsi_arch_bind(const dsi_model_file *f, const ds_model_config *c, const dsi_alloc *al,
                                 dsi_weights *W, dsi_err *e);
DSI_FUNC void dsi_arch_unbind(dsi_weights *W, int n_layers, const dsi_alloc *al);

/* ==== Writing a container (convert.c) ===================================== */
/* What ds_convert, ds_convert_lora and ds_lora_merge share: the checks on
 * the output path, the keys, a temporary file beside the destination,
 * segments sealed chunk by chunk as their plaintext streams in, the metadata
 * at the tail, the header last, and the rename into place (link(2) without
 * overwrite). On any failure dsi_writer_free removes the temporary file:
 * nothing is left at out_path. Use: init, note_input (each input file),
 * check_early, check_inputs, keys (set hdr.adapter for an adapter), open,
 * then per segment seg_begin, put / pad_to, seg_end; finish; free. */
typedef struct dsi_input {
    dsi_file_id id;
    char *path;
} dsi_input;

typedef struct dsi_writer {
    const dsi_alloc *al;
    dsi_err *e;
    bool overwrite;
    const char *force_hint;        /* what replaces an existing output ("ds convert --force, or ...") */
    dsi_input *inputs;             /* files read: the output must not be one of them */
    size_t n_inputs;
    int fd;
    char *tmp_path;
    uint64_t pos;                  /* bytes written */
    dsi_secure_buf keybuf;
    dsi_keys *keys;                /* in keybuf */
    dsi_header hdr;
    uint32_t chunk_bytes;
    dsi_secure_buf plainbuf;       /* one chunk of plaintext */
    uint8_t *chunk_plain, *chunk_out;
    size_t fill;
    dsi_chunk_ad ad;               /* the segment being written */
    uint64_t seg_done;
} dsi_writer;

DSI_FUNC void dsi_writer_init(dsi_writer *w, const dsi_alloc *al, dsi_err *e, uint32_t chunk_bytes, bool overwrite,
                              const char *force_hint);
/* Records an opened input (which file it is) for dsi_writer_check_inputs. */
DSI_FUNC ds_status dsi_writer_note_input(dsi_writer *w, const dsi_file_id *id, const char *path);
/* Before any work: an existing output is refused unless overwrite, and one
 * that is not a regular file always (nothing to replace atomically). */
DSI_FUNC ds_status dsi_writer_check_early(dsi_writer *w, const char *out_path);
/* The output must not be one of the inputs, overwrite or not (checked once
 * they are open, and again just before the rename). */
DSI_FUNC ds_status dsi_writer_check_inputs(dsi_writer *w, const char *out_path);
/* The sealing arguments of a converter's params: exactly one of key
 * (DS_KEY_BYTES) and passphrase with encrypt, neither without
 * (DS_ERR_INVALID_ARG naming fn). */
DSI_FUNC ds_status dsi_writer_check_secret(int encrypt, const uint8_t *key, size_t key_len, const char *passphrase,
                                           const char *fn, dsi_err *e);
/* A new salt and the keys: encrypt with key (32 bytes) or passphrase
 * (Argon2id, argon_ops / argon_mem 0 = libsodium's interactive limits), or
 * integrity tags only. */
DSI_FUNC ds_status dsi_writer_keys(dsi_writer *w, bool encrypt, const uint8_t *key, const char *passphrase,
                                   size_t passphrase_len, uint64_t argon_ops, uint64_t argon_mem);
/* The temporary file and the header's placeholder. */
DSI_FUNC ds_status dsi_writer_open(dsi_writer *w, const char *out_path);
/* Segment index sg starts at the next page; sets sg->offset. */
DSI_FUNC ds_status dsi_writer_seg_begin(dsi_writer *w, uint32_t index, dsi_segment *sg);
/* Plaintext of the current segment (data NULL: n zeros), sealing full chunks. */
DSI_FUNC ds_status dsi_writer_put(dsi_writer *w, const uint8_t *data, size_t n);
/* Zeros up to offset (inside the segment's plaintext). */
DSI_FUNC ds_status dsi_writer_pad_to(dsi_writer *w, uint64_t offset);
DSI_FUNC ds_status dsi_writer_seg_end(dsi_writer *w, uint32_t n_chunks);
/* The metadata (records) sealed at the tail, the header, fsync, and the
 * temporary file put at out_path. */
DSI_FUNC ds_status dsi_writer_finish(dsi_writer *w, const dsi_buf *meta, const char *out_path);
DSI_FUNC void dsi_writer_free(dsi_writer *w);

/* Layout: a tensor of nbytes goes to the last segment when that is (kind,
 * layer, expert), else to a new one (segs has room for one per tensor), at
 * the next DSI_TENSOR_ALIGN offset. DS_ERR_LIMIT (no message) on overflow. */
DSI_FUNC ds_status dsi_layout_add(dsi_segment *segs, size_t *n_segs, uint32_t kind, int layer, int expert,
                                  uint64_t nbytes, uint32_t *segment, uint64_t *offset);
/* Each segment's chunk count and stored bytes. */
DSI_FUNC ds_status dsi_layout_seal(dsi_segment *segs, size_t n_segs, uint32_t chunk_bytes, dsi_err *e);
/* Metadata: a record; one tensor directory entry (after the directory's
 * u32 count, u32 0); the segment directory as a record. Allocation failures
 * set the buffer's failed flag. */
DSI_FUNC void dsi_meta_record(dsi_buf *b, uint32_t tag, const void *data, size_t len);
DSI_FUNC void dsi_meta_tensor(dsi_buf *t, const char *name, uint32_t dtype, uint32_t n_dims, const uint64_t *dims,
                              uint32_t segment, uint64_t offset, uint64_t nbytes);
DSI_FUNC void dsi_meta_segments(dsi_buf *meta, const dsi_segment *segs, size_t n, const dsi_alloc *al);
/* Reading inputs: dir/name (allocated with al); a whole small text file
 * (noted as an input; *missing, when given, says it does not exist, and it
 * is then not an error); n bytes at off (short reads are DS_ERR_TRUNCATED,
 * messages name path); one safetensors row to F32 (times FP8 block scales),
 * returning the index of its first non-finite value, or n. */
DSI_FUNC char *dsi_path_join(const dsi_alloc *al, const char *dir, const char *name);
DSI_FUNC ds_status dsi_writer_read_text(dsi_writer *w, const char *dir, const char *name, char **out, size_t *len,
                                       bool *missing);
DSI_FUNC ds_status dsi_pread_full(int fd, const char *path, void *buf, size_t n, uint64_t off, dsi_err *e);
DSI_FUNC size_t dsi_st_decode_row(dsi_st_dtype t, const uint8_t *p, float *y, size_t n, const float *scales);

#endif /* DS_FORMAT_H */
