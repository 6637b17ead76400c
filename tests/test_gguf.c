/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_gguf.c — the GGUF reader (deepseek_impl/gguf.c): a file built here
 * byte by byte with every value type, parsed and read back; every prefix of
 * it refused cleanly; one mutation per check (magic, versions, counts,
 * lengths, value and tensor types, nested arrays, alignment, offsets,
 * duplicates); the config and tokenizer made from a deepseek2 file (both
 * pre-tokenizers load in our tokenizer; another architecture is DS_ERR_ARCH);
 * allocation failures. With DS_GGUF_SEED_DIR set it also writes the files it
 * builds there, as the seed corpus of tests/fuzz/fuzz_gguf.c.
 */
#include "deepseek_impl/internal.h"
#include "tests/test.h"

#include <stdint.h>

/* ==== A small GGUF writer ==================================================== */
typedef struct tb {
    uint8_t *p;
    size_t len, cap;
} tb;

static void tb_put(tb *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void tb_u32(tb *b, uint32_t v) { uint8_t x[4]; dsi_wr32(x, v); tb_put(b, x, 4); }
static void tb_u64(tb *b, uint64_t v) { uint8_t x[8]; dsi_wr64(x, v); tb_put(b, x, 8); }
static void tb_str(tb *b, const char *s) { tb_u64(b, strlen(s)); tb_put(b, s, strlen(s)); }
static void tb_key(tb *b, const char *k, uint32_t type) { tb_str(b, k); tb_u32(b, type); }
static void tb_kv_u32(tb *b, const char *k, uint32_t v) { tb_key(b, k, DSI_GGUF_U32); tb_u32(b, v); }
static void tb_kv_f32(tb *b, const char *k, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    tb_key(b, k, DSI_GGUF_F32);
    tb_u32(b, u);
}
static void tb_kv_str(tb *b, const char *k, const char *v) { tb_key(b, k, DSI_GGUF_STRING); tb_str(b, v); }

/* Offsets of interesting fields of the file t_build makes. */
typedef struct tmarks {
    size_t n_tensors, n_kv, align_val, t1_type, t1_offset, t0_ndims, data_start;
} tmarks;

/* A deepseek2 file with two tiny tensors (F32 4 values, Q8_0 2x32) and keys
 * of every value type (the deepseek2 ones real enough for the config). With
 * arch other than NULL it is used as general.architecture. */
static int t_nextn;   /* > 0: that many MTP layers more in block_count, and the key */

static uint8_t *t_build(const char *arch, size_t *len, tmarks *m) {
    tb b = {0};
    tmarks mk = {0};
    tb_put(&b, "GGUF", 4);
    tb_u32(&b, 3);
    mk.n_tensors = b.len;
    tb_u64(&b, 2);
    mk.n_kv = b.len;
    size_t nkv_at = b.len;
    tb_u64(&b, 0);   /* patched below */
    uint64_t nkv = 0;
    tb_kv_str(&b, "general.architecture", arch ? arch : "deepseek2"), nkv++;
    tb_key(&b, "general.alignment", DSI_GGUF_U32);
    mk.align_val = b.len;
    tb_u32(&b, 64), nkv++;
    /* one of each scalar type */
    tb_key(&b, "t.u8", DSI_GGUF_U8), tb_put(&b, "\xff", 1), nkv++;
    tb_key(&b, "t.i8", DSI_GGUF_I8), tb_put(&b, "\xff", 1), nkv++;
    tb_key(&b, "t.u16", DSI_GGUF_U16), tb_put(&b, "\x34\x12", 2), nkv++;
    tb_key(&b, "t.i16", DSI_GGUF_I16), tb_put(&b, "\xfe\xff", 2), nkv++;
    tb_key(&b, "t.i32", DSI_GGUF_I32), tb_u32(&b, (uint32_t)-5), nkv++;
    tb_key(&b, "t.bool", DSI_GGUF_BOOL), tb_put(&b, "\x01", 1), nkv++;
    tb_key(&b, "t.u64", DSI_GGUF_U64), tb_u64(&b, 1ull << 40), nkv++;
    tb_key(&b, "t.i64", DSI_GGUF_I64), tb_u64(&b, (uint64_t)-7), nkv++;
    tb_key(&b, "t.f64", DSI_GGUF_F64);
    {
        double d = 0.25;
        uint64_t u;
        memcpy(&u, &d, 8);
        tb_u64(&b, u), nkv++;
    }
    tb_key(&b, "t.arr_i32", DSI_GGUF_ARRAY), tb_u32(&b, DSI_GGUF_I32), tb_u64(&b, 3), tb_u32(&b, 1), tb_u32(&b, 2),
        tb_u32(&b, 3), nkv++;
    /* deepseek2 hyper-parameters of a toy model */
    tb_kv_u32(&b, "deepseek2.context_length", 256), nkv++;
    tb_kv_u32(&b, "deepseek2.embedding_length", 64), nkv++;
    tb_kv_u32(&b, "deepseek2.feed_forward_length", 96), nkv++;
    tb_kv_u32(&b, "deepseek2.block_count", 1 + (uint32_t)t_nextn), nkv++;
    if (t_nextn) tb_kv_u32(&b, "deepseek2.nextn_predict_layers", (uint32_t)t_nextn), nkv++;
    tb_kv_u32(&b, "deepseek2.attention.head_count", 4), nkv++;
    tb_kv_u32(&b, "deepseek2.attention.head_count_kv", 1), nkv++;
    tb_kv_f32(&b, "deepseek2.rope.freq_base", 10000.0f), nkv++;
    tb_kv_f32(&b, "deepseek2.attention.layer_norm_rms_epsilon", 1e-6f), nkv++;
    tb_kv_u32(&b, "deepseek2.attention.kv_lora_rank", 32), nkv++;
    tb_kv_u32(&b, "deepseek2.attention.key_length", 40), nkv++;
    tb_kv_u32(&b, "deepseek2.attention.value_length", 32), nkv++;
    tb_kv_u32(&b, "deepseek2.attention.key_length_mla", 24), nkv++;
    tb_kv_u32(&b, "deepseek2.attention.value_length_mla", 16), nkv++;
    tb_kv_u32(&b, "deepseek2.rope.dimension_count", 8), nkv++;
    tb_kv_u32(&b, "deepseek2.vocab_size", 260), nkv++;
    /* a byte-level tokenizer: the 256 byte symbols, "he", and 3 specials */
    tb_kv_str(&b, "tokenizer.ggml.model", "gpt2"), nkv++;
    tb_kv_str(&b, "tokenizer.ggml.pre", "deepseek-v3"), nkv++;
    tb_key(&b, "tokenizer.ggml.tokens", DSI_GGUF_ARRAY), tb_u32(&b, DSI_GGUF_STRING), tb_u64(&b, 260);
    {
        /* GPT-2's byte-to-symbol map */
        static const char *specials[3] = {"<s>", "</s>", "<user>"};
        int k = 0;
        uint32_t cps[256];
        for (uint32_t c = 0; c < 256; c++)
            if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255)) cps[c] = c;
            else cps[c] = 256 + (uint32_t)k++;
        for (int i = 0; i < 3; i++) tb_str(&b, specials[i]);
        for (int c = 0; c < 256; c++) {
            uint8_t u[4];
            size_t n = dsi_utf8_encode(u, cps[c]);
            tb_u64(&b, n);
            tb_put(&b, u, n);
        }
        tb_str(&b, "he");
        (void)k;
    }
    nkv++;
    tb_key(&b, "tokenizer.ggml.token_type", DSI_GGUF_ARRAY), tb_u32(&b, DSI_GGUF_I32), tb_u64(&b, 260);
    for (int i = 0; i < 260; i++) tb_u32(&b, i < 2 ? 3 : i == 2 ? 4 : 1);
    nkv++;
    tb_key(&b, "tokenizer.ggml.merges", DSI_GGUF_ARRAY), tb_u32(&b, DSI_GGUF_STRING), tb_u64(&b, 1), tb_str(&b, "h e"),
        nkv++;
    tb_kv_u32(&b, "tokenizer.ggml.bos_token_id", 0), nkv++;
    tb_kv_u32(&b, "tokenizer.ggml.eos_token_id", 1), nkv++;
    tb_kv_str(&b, "tokenizer.chat_template", "{{ bos_token }}"), nkv++;
    dsi_wr64(b.p + nkv_at, nkv);
    /* tensor infos */
    tb_str(&b, "output_norm.weight");
    mk.t0_ndims = b.len;
    tb_u32(&b, 1), tb_u64(&b, 4), tb_u32(&b, DSI_GGML_F32), tb_u64(&b, 0);
    tb_str(&b, "blk.0.attn_q.weight");
    tb_u32(&b, 2), tb_u64(&b, 32), tb_u64(&b, 2);
    mk.t1_type = b.len;
    tb_u32(&b, DSI_GGML_Q8_0);
    mk.t1_offset = b.len;
    tb_u64(&b, 64);
    while (b.len % 64) tb_put(&b, "", 1);
    mk.data_start = b.len;
    /* the tensors, and 64 bytes more, so a test may shift the infos by a byte */
    for (int i = 0; i < 64 + 68 + 64; i++) tb_put(&b, "\x11", 1);
    *len = b.len;
    if (m) *m = mk;
    return b.p;
}

static dsi_alloc t_al(void) {
    dsi_alloc al;
    dsi_err e;
    (void)dsi_alloc_init(&al, NULL, &e);
    return al;
}

static ds_status t_parse(const uint8_t *p, size_t len, dsi_gguf **g, dsi_err *e) {
    dsi_alloc al = t_al();
    memset(e, 0, sizeof *e);
    return dsi_gguf_parse(p, len, len, &al, g, e);
}

static void t_seed(const char *name, const uint8_t *p, size_t len) {
    const char *dir = getenv("DS_GGUF_SEED_DIR");
    if (!dir || !*dir) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, len, f);
        fclose(f);
    }
}

/* Parses a mutated copy and expects status `want` with `needle` in the message. */
static void t_mut(const char *id, const uint8_t *base, size_t len, size_t at, const void *bytes, size_t n,
                  ds_status want, const char *needle) {
    uint8_t *c = malloc(len);
    memcpy(c, base, len);
    memcpy(c + at, bytes, n);
    dsi_gguf *g = NULL;
    dsi_err e;
    ds_status s = t_parse(c, len, &g, &e);
    T_STATUS(id, s, want, e.msg);
    T_CHECK(id, s != DS_OK || g, "no header on success");
    if (s && needle) T_CHECK(id, strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    dsi_gguf_free(g);
    char name[64];
    snprintf(name, sizeof name, "%s.gguf", id);
    t_seed(name, c, len);
    free(c);
}

/* ==== Tests ================================================================== */
static void test_valid(void) {
    size_t len;
    tmarks m;
    uint8_t *p = t_build(NULL, &len, &m);
    t_seed("valid.gguf", p, len);
    dsi_gguf *g = NULL;
    dsi_err e;
    ds_status s = t_parse(p, len, &g, &e);
    T_STATUS("gguf-1.1", s, DS_OK, e.msg);
    if (s) { free(p); return; }
    T_CHECK("gguf-1.2", g->version == 3 && g->alignment == 64 && g->n_tensors == 2 && g->data_start == m.data_start,
            "version %u alignment %u tensors %llu data %llu", g->version, g->alignment,
            (unsigned long long)g->n_tensors, (unsigned long long)g->data_start);
    const dsi_gguf_kv *kv;
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.u8")) && kv->u == 255 && kv->i == 255, "u8");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.i8")) && kv->i == -1, "i8");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.u16")) && kv->u == 0x1234, "u16");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.i16")) && kv->i == -2, "i16");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.i32")) && kv->i == -5, "i32");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.bool")) && kv->i == 1, "bool");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.u64")) && kv->u == 1ull << 40, "u64");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.i64")) && kv->i == -7, "i64");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.f64")) && kv->f == 0.25, "f64");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "deepseek2.rope.freq_base")) && kv->f == 10000.0, "f32");
    T_CHECK("gguf-1.3", (kv = dsi_gguf_find(g, "t.arr_i32")) && kv->type == DSI_GGUF_ARRAY &&
                            kv->arr_type == DSI_GGUF_I32 && kv->n == 3 && dsi_rd32(g->buf + kv->offset + 8) == 3,
            "array");
    const char *sv;
    size_t sn;
    kv = dsi_gguf_find(g, "tokenizer.ggml.pre");
    if (kv) dsi_gguf_string(g, kv, &sv, &sn);
    T_CHECK("gguf-1.4", kv && sn == 11 && memcmp(sv, "deepseek-v3", 11) == 0, "string value");
    const dsi_gguf_tensor *t = dsi_gguf_tensor_find(g, "blk.0.attn_q.weight");
    T_CHECK("gguf-1.5", t && t->type == DSI_GGML_Q8_0 && t->ne[0] == 32 && t->ne[1] == 2 && t->row_bytes == 34 &&
                            t->nbytes == 68 && t->file_offset == m.data_start + 64,
            "tensor info");
    T_CHECK("gguf-1.5", dsi_gguf_tensor_find(g, "nope") == NULL, "absent tensor found");

    /* config and tokenizer from the metadata */
    dsi_alloc al = t_al();
    char *cj = NULL, *tj = NULL, *tc = NULL;
    size_t cl = 0, tl = 0, tcl = 0;
    s = dsi_gguf_config_json(g, &al, &cj, &cl, &e);
    T_STATUS("gguf-2.1", s, DS_OK, e.msg);
    ds_model_config cfg;
    if (!s) {
        s = dsi_config_parse(cj, cl, &al, &cfg, &e);
        T_STATUS("gguf-2.2", s, DS_OK, e.msg);
        if (!s)
            T_CHECK("gguf-2.2", cfg.arch == DS_ARCH_DEEPSEEK_V2 && cfg.hidden_size == 64 && cfg.qk_nope_head_dim == 16 &&
                                    cfg.v_head_dim == 16 && cfg.kv_lora_rank == 32 && cfg.q_lora_rank == 0 &&
                                    cfg.vocab_size == 260 && cfg.rms_norm_eps == 1e-6f && cfg.tie_word_embeddings,
                    "config fields: %.*s", (int)cl, cj);
    }
    for (int pre = 0; pre < 2; pre++) {
        /* both pre-tokenizers must compile in our regex engine and tokenize */
        if (pre) {
            /* then a pre-tokenizer we do not know (same length: rewritten in p itself) */
            const dsi_gguf_kv *k2 = dsi_gguf_find(g, "tokenizer.ggml.pre");
            memcpy(p + k2->offset + 8, "deepseek-ll", 11);
        }
        dsi_free(&al, tj);
        dsi_free(&al, tc);
        tj = tc = NULL;
        s = dsi_gguf_tokenizer_json(g, &al, &tj, &tl, &tc, &tcl, &e);
        if (pre) {
            T_STATUS("gguf-2.3", s, DS_ERR_UNSUPPORTED, e.msg);
            T_CHECK("gguf-2.3", s && strstr(e.msg, "'deepseek-ll'"), "message: %s", e.msg);
            continue;
        }
        T_STATUS("gguf-2.4", s, DS_OK, e.msg);
        if (s) continue;
        ds_tokenizer *tok = NULL;
        s = ds_tokenizer_new(&tok, tj, tl, tc, tcl, NULL);
        T_STATUS("gguf-2.5", s, DS_OK, ds_last_error());
        if (!s) {
            int32_t ids[32];
            size_t n = 0;
            s = ds_tokenizer_encode(tok, "<user>hehe 12", 13, 0, ids, 32, &n);
            T_STATUS("gguf-2.6", s, DS_OK, ds_last_error());
            /* <user> is the added token 2; "he" the merge 259 */
            T_CHECK("gguf-2.6", !s && n >= 3 && ids[0] == 2 && ids[1] == 259 && ids[2] == 259, "ids %d %d %d (n %zu)",
                    n > 0 ? ids[0] : -1, n > 1 ? ids[1] : -1, n > 2 ? ids[2] : -1, n);
        }
        ds_tokenizer_free(tok);
    }
    dsi_free(&al, cj);
    dsi_free(&al, tj);
    dsi_free(&al, tc);
    dsi_gguf_free(g);
    free(p);
}

/* deepseek-llm (V2's pre-tokenizer) through a file that names it */
static void test_pre_llm(void) {
    size_t len;
    uint8_t *p = t_build(NULL, &len, NULL);
    /* "deepseek-v3" -> "deepseek-llm" changes the length: rebuild the string
     * key by splicing */
    const char *old = "deepseek-v3";
    uint8_t *at = NULL;
    for (size_t i = 0; i + 11 <= len; i++)
        if (memcmp(p + i, old, 11) == 0) { at = p + i; break; }
    T_CHECK("gguf-3.0", at != NULL, "pre value not found");
    if (!at) { free(p); return; }
    size_t off = (size_t)(at - p);
    uint8_t *q = malloc(len + 1);
    memcpy(q, p, off - 8);
    dsi_wr64(q + off - 8, 12);
    memcpy(q + off, "deepseek-llm", 12);
    memcpy(q + off + 12, p + off + 11, len - off - 11);
    /* the tensor data moved by one byte: the alignment padding absorbs it
     * only if there was some; re-parse tells */
    dsi_gguf *g = NULL;
    dsi_err e;
    ds_status s = t_parse(q, len + 1, &g, &e);
    if (s == DS_OK) {
        dsi_alloc al = t_al();
        char *tj = NULL, *tc = NULL;
        size_t tl, tcl;
        s = dsi_gguf_tokenizer_json(g, &al, &tj, &tl, &tc, &tcl, &e);
        T_STATUS("gguf-3.1", s, DS_OK, e.msg);
        ds_tokenizer *tok = NULL;
        if (!s) {
            s = ds_tokenizer_new(&tok, tj, tl, tc, tcl, NULL);
            T_STATUS("gguf-3.2", s, DS_OK, ds_last_error());
        }
        if (!s) {
            int32_t ids[64];
            size_t n = 0;
            s = ds_tokenizer_encode(tok, "he 12345 \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\n", 20, 0, ids, 64, &n);
            T_STATUS("gguf-3.3", s, DS_OK, ds_last_error());
        }
        ds_tokenizer_free(tok);
        dsi_free(&al, tj);
        dsi_free(&al, tc);
    } else {
        T_CHECK("gguf-3.1", 0, "the spliced file does not parse: %s", e.msg);
    }
    dsi_gguf_free(g);
    free(q);
    free(p);
}

/* V3's MTP layers are counted in block_count and not in our layers */
static void test_nextn(void) {
    t_nextn = 1;
    size_t len;
    uint8_t *p = t_build(NULL, &len, NULL);
    t_nextn = 0;
    dsi_gguf *g = NULL;
    dsi_err e;
    ds_status s = t_parse(p, len, &g, &e);
    T_STATUS("gguf-4.3", s, DS_OK, e.msg);
    if (!s) {
        dsi_alloc al = t_al();
        char *cj = NULL;
        size_t cl = 0;
        ds_model_config cfg;
        s = dsi_gguf_config_json(g, &al, &cj, &cl, &e);
        if (!s) s = dsi_config_parse(cj, cl, &al, &cfg, &e);
        T_STATUS("gguf-4.3", s, DS_OK, e.msg);
        T_CHECK("gguf-4.3", s || cfg.n_layers == 1, "n_layers %d, want 1 (block_count 2, one MTP layer)", cfg.n_layers);
        dsi_free(&al, cj);
    }
    dsi_gguf_free(g);
    free(p);
}

static void test_arch(void) {
    size_t len;
    uint8_t *p = t_build("llama", &len, NULL);
    dsi_gguf *g = NULL;
    dsi_err e;
    ds_status s = t_parse(p, len, &g, &e);
    T_STATUS("gguf-4.1", s, DS_OK, e.msg);
    if (!s) {
        dsi_alloc al = t_al();
        char *cj = NULL;
        size_t cl;
        s = dsi_gguf_config_json(g, &al, &cj, &cl, &e);
        T_STATUS("gguf-4.2", s, DS_ERR_ARCH, e.msg);
        T_CHECK("gguf-4.2", s && strstr(e.msg, "'llama' is not supported"), "message: %s", e.msg);
        dsi_free(&al, cj);
    }
    dsi_gguf_free(g);
    free(p);
}

static void test_truncations(void) {
    size_t len;
    tmarks m;
    uint8_t *p = t_build(NULL, &len, &m);
    int bad = 0;
    /* every prefix that cuts the header or a tensor (the last ends at
     * data_start + 132) is refused; longer ones are whole files */
    for (size_t n = 0; n < len; n++) {
        uint8_t *c = malloc(n ? n : 1);   /* exact size: ASan sees any read past it */
        memcpy(c, p, n);
        dsi_gguf *g = NULL;
        dsi_err e;
        ds_status s = t_parse(c, n, &g, &e);
        bool whole = n >= m.data_start + 132;
        if (whole ? s != DS_OK : s != DS_ERR_TRUNCATED && s != DS_ERR_GGUF) {
            if (!bad++) T_CHECK("gguf-5.1", 0, "prefix of %zu bytes: status %d (%s)", n, s, e.msg);
        }
        if (g) dsi_gguf_free(g);
        free(c);
    }
    T_CHECK("gguf-5.1", bad == 0, "%d prefixes not refused as truncated or malformed", bad);
    /* a window shorter than the metadata of a longer file: a limit */
    dsi_gguf *g = NULL;
    dsi_err e = {0};
    dsi_alloc al = t_al();
    ds_status s = dsi_gguf_parse(p, 200, len, &al, &g, &e);
    T_STATUS("gguf-5.2", s, DS_ERR_LIMIT, e.msg);
    free(p);
}

static void test_mutations(void) {
    size_t len;
    tmarks m;
    uint8_t *p = t_build(NULL, &len, &m);
    uint8_t b4[4], b8[8];
    t_mut("gguf-6.1", p, len, 0, "GGUX", 4, DS_ERR_GGUF, "bad magic");
    dsi_wr32(b4, 1);
    t_mut("gguf-6.2", p, len, 4, b4, 4, DS_ERR_GGUF, "version 1");
    dsi_wr32(b4, 4);
    t_mut("gguf-6.3", p, len, 4, b4, 4, DS_ERR_GGUF, "version 4");
    t_mut("gguf-6.4", p, len, 4, "\x00\x00\x00\x03", 4, DS_ERR_GGUF, "big-endian");
    dsi_wr64(b8, 1ull << 60);
    t_mut("gguf-6.5", p, len, m.n_tensors, b8, 8, DS_ERR_GGUF, "tensors");
    t_mut("gguf-6.6", p, len, m.n_kv, b8, 8, DS_ERR_GGUF, "metadata keys");
    /* the first key's length */
    t_mut("gguf-6.7", p, len, 24, b8, 8, DS_ERR_GGUF, "length");
    /* value type of the first key */
    dsi_wr32(b4, 13);
    t_mut("gguf-6.8", p, len, 24 + 8 + 20, b4, 4, DS_ERR_GGUF, "not a GGUF type");
    /* alignment: not a power of two; zero */
    dsi_wr32(b4, 48);
    t_mut("gguf-6.9", p, len, m.align_val, b4, 4, DS_ERR_GGUF, "power of two");
    dsi_wr32(b4, 0);
    t_mut("gguf-6.10", p, len, m.align_val, b4, 4, DS_ERR_GGUF, "power of two");
    /* tensor type unknown; Q4_K (rows of 32 are not whole 256-blocks) */
    dsi_wr32(b4, 99);
    t_mut("gguf-6.11", p, len, m.t1_type, b4, 4, DS_ERR_GGUF, "ggml type 99");
    dsi_wr32(b4, 12);
    t_mut("gguf-6.12", p, len, m.t1_type, b4, 4, DS_ERR_GGUF, "not whole blocks");
    /* offsets: past the end, misaligned, overflowing */
    dsi_wr64(b8, 1ull << 30);
    t_mut("gguf-6.13", p, len, m.t1_offset, b8, 8, DS_ERR_TRUNCATED, "run past the end");
    dsi_wr64(b8, 65);
    t_mut("gguf-6.14", p, len, m.t1_offset, b8, 8, DS_ERR_GGUF, "not a multiple of the alignment");
    dsi_wr64(b8, UINT64_MAX - 63);
    t_mut("gguf-6.15", p, len, m.t1_offset, b8, 8, DS_ERR_TRUNCATED, "run past the end");
    /* dimensions: 0, 5 */
    dsi_wr32(b4, 0);
    t_mut("gguf-6.16", p, len, m.t0_ndims, b4, 4, DS_ERR_GGUF, "dimensions");
    dsi_wr32(b4, 5);
    t_mut("gguf-6.17", p, len, m.t0_ndims, b4, 4, DS_ERR_GGUF, "dimensions");
    /* a dimension of 0 */
    dsi_wr64(b8, 0);
    t_mut("gguf-6.18", p, len, m.t0_ndims + 4, b8, 8, DS_ERR_GGUF, "dimension 0");
    /* duplicate tensor name: rename the second to the first ("blk.0.attn_q.weight" is 19 bytes, the first 18) */
    {
        tb b = {0};
        tb_put(&b, "GGUF", 4), tb_u32(&b, 3), tb_u64(&b, 2), tb_u64(&b, 0);
        for (int i = 0; i < 2; i++) tb_str(&b, "x.weight"), tb_u32(&b, 1), tb_u64(&b, 8), tb_u32(&b, 0), tb_u64(&b, 0);
        while (b.len % 32) tb_put(&b, "", 1);
        for (int i = 0; i < 32; i++) tb_put(&b, "", 1);
        dsi_gguf *g = NULL;
        dsi_err e;
        ds_status s = t_parse(b.p, b.len, &g, &e);
        T_STATUS("gguf-6.19", s, DS_ERR_GGUF, e.msg);
        T_CHECK("gguf-6.19", s && strstr(e.msg, "appears twice"), "message: %s", e.msg);
        t_seed("dup.gguf", b.p, b.len);
        free(b.p);
    }
    /* an array of arrays; a bool of 2; a duplicate key */
    {
        tb b = {0};
        tb_put(&b, "GGUF", 4), tb_u32(&b, 2), tb_u64(&b, 0), tb_u64(&b, 1);
        tb_key(&b, "a", DSI_GGUF_ARRAY), tb_u32(&b, DSI_GGUF_ARRAY), tb_u64(&b, 1), tb_u32(&b, DSI_GGUF_U8), tb_u64(&b, 0);
        dsi_gguf *g = NULL;
        dsi_err e;
        ds_status s = t_parse(b.p, b.len, &g, &e);
        T_STATUS("gguf-6.20", s, DS_ERR_GGUF, e.msg);
        T_CHECK("gguf-6.20", s && strstr(e.msg, "array of arrays"), "message: %s", e.msg);
        t_seed("nested.gguf", b.p, b.len);
        free(b.p);
        memset(&b, 0, sizeof b);
        tb_put(&b, "GGUF", 4), tb_u32(&b, 3), tb_u64(&b, 0), tb_u64(&b, 1);
        tb_key(&b, "b", DSI_GGUF_BOOL), tb_put(&b, "\x02", 1);
        s = t_parse(b.p, b.len, &g, &e);
        T_STATUS("gguf-6.21", s, DS_ERR_GGUF, e.msg);
        free(b.p);
        memset(&b, 0, sizeof b);
        tb_put(&b, "GGUF", 4), tb_u32(&b, 3), tb_u64(&b, 0), tb_u64(&b, 2);
        tb_kv_u32(&b, "k", 1), tb_kv_u32(&b, "k", 2);
        s = t_parse(b.p, b.len, &g, &e);
        T_STATUS("gguf-6.22", s, DS_ERR_GGUF, e.msg);
        T_CHECK("gguf-6.22", s && strstr(e.msg, "appears twice"), "message: %s", e.msg);
        free(b.p);
        /* an array whose count claims more strings than the file could hold */
        memset(&b, 0, sizeof b);
        tb_put(&b, "GGUF", 4), tb_u32(&b, 3), tb_u64(&b, 0), tb_u64(&b, 1);
        tb_key(&b, "s", DSI_GGUF_ARRAY), tb_u32(&b, DSI_GGUF_STRING), tb_u64(&b, 1ull << 50);
        s = t_parse(b.p, b.len, &g, &e);
        T_STATUS("gguf-6.23", s, DS_ERR_GGUF, e.msg);
        free(b.p);
    }
    free(p);
}

/* Every allocation failing in turn: an error, never a crash or a leak. */
static int t_fail_at, t_count;
static void *t_malloc(size_t n, void *u) { (void)u; return ++t_count == t_fail_at ? NULL : malloc(n); }
static void *t_realloc(void *p, size_t n, void *u) { (void)u; return ++t_count == t_fail_at ? NULL : realloc(p, n); }
static void t_free(void *p, void *u) { (void)u; free(p); }

static void test_alloc_failures(void) {
    size_t len;
    uint8_t *p = t_build(NULL, &len, NULL);
    ds_allocator a = {t_malloc, t_realloc, t_free, NULL};
    int ok_at = 0;
    for (t_fail_at = 1; t_fail_at < 10000 && !ok_at; t_fail_at++) {
        t_count = 0;
        dsi_alloc al;
        dsi_err e = {0};
        (void)dsi_alloc_init(&al, &a, &e);
        dsi_gguf *g = NULL;
        ds_status s = dsi_gguf_parse(p, len, len, &al, &g, &e);
        char *cj = NULL, *tj = NULL, *tc = NULL;
        size_t cl, tl, tcl;
        if (!s) s = dsi_gguf_config_json(g, &al, &cj, &cl, &e);
        if (!s) s = dsi_gguf_tokenizer_json(g, &al, &tj, &tl, &tc, &tcl, &e);
        if (s == DS_OK) ok_at = t_fail_at;
        else T_CHECK("gguf-7.1", s == DS_ERR_NOMEM, "failing allocation %d: status %d (%s)", t_fail_at, s, e.msg);
        dsi_free(&al, cj);
        dsi_free(&al, tj);
        dsi_free(&al, tc);
        dsi_gguf_free(g);
    }
    T_CHECK("gguf-7.2", ok_at > 1, "never succeeded");
    free(p);
}

/* test_gguf --dequant TYPE IN OUT: dsi_ggml_dequantize_row over the blocks in
 * file IN (ggml type id TYPE), F32 to OUT; tests/test_gguf.sh compares that
 * with the gguf package's numpy dequantizers. */
static int t_dequant(const char *type_s, const char *in, const char *out) {
    uint32_t type = (uint32_t)atoi(type_s);
    FILE *f = fopen(in, "rb");
    if (!f) return 2;
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint64_t rb = 0;
    size_t vals = 0;
    /* the number of values: whole rows of 256 values of this type */
    while (dsi_ggml_row_bytes(type, (uint64_t)vals + 256, &rb) && rb <= n) vals += 256;
    float *y = malloc((vals ? vals : 1) * sizeof *y);
    if (!y || !vals || !dsi_ggml_dequantize_row(type, buf, y, vals)) return 3;
    f = fopen(out, "wb");
    if (!f) return 2;
    fwrite(y, sizeof *y, vals, f);
    fclose(f);
    free(y);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--dequant") == 0) return t_dequant(argv[2], argv[3], argv[4]);
    test_valid();
    test_pre_llm();
    test_arch();
    test_nextn();
    test_truncations();
    test_mutations();
    test_alloc_failures();
    return t_finish("test_gguf");
}
