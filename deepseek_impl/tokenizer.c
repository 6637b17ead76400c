/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * tokenizer.c — byte-level BPE as a Hugging Face tokenizer.json describes it,
 * with the same ids as the `tokenizers` library (PyPI): the ds_tokenizer
 * API but for the chat templates (chat_template.c, the layer above, which
 * reads tokenizer_config.json's parts through tokenizer.h). Below it are
 * regex.c (the pre-tokenizer's Split patterns) and unicode.c.
 *
 * Encoding follows the reference step by step:
 *   1. added tokens are cut out of the text (leftmost-longest, first the
 *      tokens with normalized=false, then the rest, as AddedVocabulary does;
 *      none inside the plain spans a caller may give: a chat's contents);
 *   2. each remaining segment goes through the pre-tokenizer: a sequence of
 *      regex Splits (our own backtracking engine with Oniguruma's semantics,
 *      regex.c: leftmost-first alternation, greedy quantifiers, lookahead,
 *      Ruby-syntax anchors), Digits and ByteLevel steps;
 *   3. each piece is encoded with BPE over its bytes (GPT-2's byte-to-char
 *      mapping), merging the lowest-ranked pair first.
 * Decoding maps tokens back to bytes and replaces invalid UTF-8 exactly as
 * Rust's String::from_utf8_lossy does.
 *
 * A tokenizer is immutable after ds_tokenizer_new; every call allocates its
 * own scratch space, so one tokenizer may be shared by many threads.
 */
#include "regex.h"
#include "tokenizer.h"
#include "unicode.h"

#include <stdio.h>
#include <stdlib.h>

/* ==== Limits ============================================================== */
/* Token ids above this are refused (a hostile file could otherwise make us
 * allocate per-id tables of any size). DeepSeek uses about 129k ids. */
#ifndef DS_MAX_TOKEN_ID
#define DS_MAX_TOKEN_ID (1u << 24)
#endif

/* ==== GPT-2 byte <-> char mapping ========================================= */
/* Printable bytes map to themselves; the others to U+0100 + k in byte order,
 * so every byte becomes a visible character in the vocabulary. */
static uint32_t bl_byte_to_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
    /* count the non-printable bytes below b */
    uint32_t k;
    if (b <= 0x20) k = b;                         /* 0x00..0x20: 33 of them */
    else if (b <= 0xA0) k = 33 + (uint32_t)(b - 0x7F); /* 0x7F..0xA0: 34 */
    else k = 67;                                  /* 0xAD */
    return 0x100 + k;
}

/* Inverse: the byte for a mapped char, or -1. */
static int bl_cp_to_byte(uint32_t cp) {
    if (cp < 0x100) {
        uint8_t b = (uint8_t)cp;
        return bl_byte_to_cp(b) == cp ? (int)cp : -1;
    }
    if (cp < 0x100 + 33) return (int)(cp - 0x100);
    if (cp < 0x100 + 67) return (int)(cp - 0x100 - 33 + 0x7F);
    if (cp == 0x100 + 67) return 0xAD;
    return -1;
}
/* ==== Hash maps =========================================================== */
static uint64_t tk_hash_bytes(const void *p, size_t n) {
    /* FNV-1a, then a final mix so that the low bits are usable as an index */
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static uint64_t tk_hash_u64(uint64_t x) {
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

/* Strings live in one growing byte pool and are named by offset, so the pool
 * may move while maps that refer to it are built. */
typedef struct tk_pool {
    uint8_t *p;
    size_t n, cap;
} tk_pool;

typedef struct tk_sent {
    uint32_t off, len;      /* string in the pool */
    int32_t val;
    uint32_t aux;           /* map-specific */
} tk_sent;

typedef struct tk_smap {
    tk_sent *ent;
    uint32_t n, cap;
    uint32_t *tab;          /* entry index + 1; 0 = empty */
    uint32_t mask;
} tk_smap;

static bool tk_pool_put(const dsi_alloc *al, tk_pool *P, const void *s, size_t n, uint32_t *off) {
    if (n > UINT32_MAX - P->n || P->n + n > UINT32_MAX) return false;
    if (P->n + n > P->cap) {
        size_t nc = P->cap ? P->cap : 4096;
        while (nc < P->n + n) nc *= 2;
        uint8_t *np = dsi_realloc(al, P->p, nc);
        if (!np) return false;
        P->p = np;
        P->cap = nc;
    }
    if (n) memcpy(P->p + P->n, s, n);
    *off = (uint32_t)P->n;
    P->n += n;
    return true;
}

static int64_t tk_smap_find(const tk_smap *m, const tk_pool *P, const void *s, size_t n) {
    if (!m->tab) return -1;
    uint32_t i = (uint32_t)tk_hash_bytes(s, n) & m->mask;
    for (;;) {
        uint32_t k = m->tab[i];
        if (!k) return -1;
        const tk_sent *e = &m->ent[k - 1];
        if (e->len == n && memcmp(P->p + e->off, s, n) == 0) return (int64_t)(k - 1);
        i = (i + 1) & m->mask;
    }
}

static bool tk_smap_rehash(const dsi_alloc *al, tk_smap *m, const tk_pool *P, uint32_t size) {
    uint32_t *tab = dsi_calloc(al, size, sizeof *tab);
    if (!tab) return false;
    for (uint32_t k = 0; k < m->n; k++) {
        const tk_sent *e = &m->ent[k];
        uint32_t i = (uint32_t)tk_hash_bytes(P->p + e->off, e->len) & (size - 1);
        while (tab[i]) i = (i + 1) & (size - 1);
        tab[i] = k + 1;
    }
    dsi_free(al, m->tab);
    m->tab = tab;
    m->mask = size - 1;
    return true;
}

/* Adds an entry for pool string (off, len) known to be absent. */
static int64_t tk_smap_add(const dsi_alloc *al, tk_smap *m, const tk_pool *P, uint32_t off, uint32_t len, int32_t val) {
    if (m->n == m->cap) {
        uint32_t nc = m->cap ? m->cap * 2 : 64;
        if (nc < m->cap) return -1;
        tk_sent *ne = dsi_realloc(al, m->ent, (size_t)nc * sizeof *ne);
        if (!ne) return -1;
        m->ent = ne;
        m->cap = nc;
    }
    m->ent[m->n] = (tk_sent){off, len, val, 0};
    m->n++;
    if (!m->tab || (uint64_t)m->n * 2 > (uint64_t)m->mask + 1) {
        uint32_t size = m->tab ? (m->mask + 1) * 2 : 128;
        while ((uint64_t)m->n * 2 > size) size *= 2;
        if (!tk_smap_rehash(al, m, P, size)) { m->n--; return -1; }
    } else {
        uint32_t i = (uint32_t)tk_hash_bytes(P->p + off, len) & m->mask;
        while (m->tab[i]) i = (i + 1) & m->mask;
        m->tab[i] = m->n;
    }
    return (int64_t)(m->n - 1);
}

static void tk_smap_free(const dsi_alloc *al, tk_smap *m) {
    dsi_free(al, m->ent);
    dsi_free(al, m->tab);
    memset(m, 0, sizeof *m);
}

/* ==== Added-token trie ==================================================== */
typedef struct tk_tnode {
    uint32_t child, sibling;   /* node indices; 0 = none (0 is the root) */
    int32_t tok;               /* index into ds_tokenizer.added, or -1 */
    uint8_t byte;
} tk_tnode;

typedef struct tk_trie {
    tk_tnode *nodes;
    uint32_t n, cap;
    uint32_t first[256];       /* root's child for each first byte */
} tk_trie;

static bool tk_trie_insert(const dsi_alloc *al, tk_trie *T, const uint8_t *s, size_t n, int32_t tok) {
    if (n == 0) return true;
    if (!T->nodes) {
        T->nodes = dsi_malloc(al, 64 * sizeof *T->nodes);
        if (!T->nodes) return false;
        T->cap = 64;
        T->n = 1;
        T->nodes[0] = (tk_tnode){0, 0, -1, 0};
    }
    uint32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t nx = 0;
        if (cur == 0) nx = T->first[s[i]];
        else
            for (uint32_t c = T->nodes[cur].child; c; c = T->nodes[c].sibling)
                if (T->nodes[c].byte == s[i]) { nx = c; break; }
        if (!nx) {
            if (T->n == T->cap) {
                if (T->cap > UINT32_MAX / 2) return false;
                tk_tnode *nn = dsi_realloc(al, T->nodes, (size_t)T->cap * 2 * sizeof *nn);
                if (!nn) return false;
                T->nodes = nn;
                T->cap *= 2;
            }
            nx = T->n++;
            T->nodes[nx] = (tk_tnode){0, 0, -1, s[i]};
            if (cur == 0) T->first[s[i]] = nx;
            else {
                T->nodes[nx].sibling = T->nodes[cur].child;
                T->nodes[cur].child = nx;
            }
        }
        cur = nx;
    }
    /* the first token with this content wins (the reference builds its
     * matcher from distinct contents) */
    if (T->nodes[cur].tok < 0) T->nodes[cur].tok = tok;
    return true;
}

/* Longest token starting at s[0]: its length (0 if none) and index. */
static size_t tk_trie_longest(const tk_trie *T, const uint8_t *s, size_t n, int32_t *tok) {
    if (!T->nodes || n == 0) return 0;
    uint32_t cur = T->first[s[0]];
    size_t best = 0;
    for (size_t i = 1; cur; i++) {
        if (T->nodes[cur].tok >= 0) { best = i; *tok = T->nodes[cur].tok; }
        if (i >= n) break;
        uint32_t nx = 0;
        for (uint32_t c = T->nodes[cur].child; c; c = T->nodes[c].sibling)
            if (T->nodes[c].byte == s[i]) { nx = c; break; }
        cur = nx;
    }
    return best;
}

/* ==== The tokenizer ======================================================= */
enum { ST_SPLIT, ST_BYTELEVEL, ST_DIGITS };
enum { BH_ISOLATED, BH_REMOVED, BH_MERGED_PREV, BH_MERGED_NEXT, BH_CONTIGUOUS };

typedef struct tk_step {
    uint8_t kind;
    uint8_t behavior;
    uint8_t invert;
    uint8_t add_prefix_space;   /* ByteLevel */
    uint8_t use_regex;          /* ByteLevel */
    uint8_t individual;         /* Digits */
    dsi_regex *prog;            /* Split; ByteLevel with use_regex (shared, not owned) */
} tk_step;

typedef struct tk_added {
    uint32_t off, len;          /* content in the pool */
    int32_t id;
    int32_t file_id;            /* the id written in the file (checked, not used), -1: none */
    uint8_t special, lstrip, rstrip, single_word, normalized;
    uint8_t special_content;    /* content is in the reference's special set */
} tk_added;

struct ds_tokenizer {
    dsi_alloc al;
    tk_pool pool;               /* every string below */
    /* model.vocab */
    tk_smap vocab;              /* string -> id */
    uint32_t model_vocab_size;  /* distinct strings in model.vocab */
    /* model.merges: (left id, right id) -> (rank, merged id) */
    uint64_t *mkey, *mval;
    uint32_t mmask;
    uint32_t n_merges;
    /* model options */
    int32_t unk_id;             /* -1: none; -2: named but absent from the vocab */
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_id[256];       /* id of GPT-2 char of each byte, -1 if absent */
    int32_t fallback_id[256];   /* "<0xAB>" tokens for byte_fallback */
    int32_t low_id[0x180];      /* id of each single character below U+0180 */
    /* added tokens */
    tk_added *added;
    uint32_t n_added;
    tk_trie trie[2];            /* [0]: normalized = false, [1]: normalized = true */
    /* id -> decoded bytes */
    uint32_t n_ids;             /* largest id + 1 */
    uint32_t *dec_off, *dec_len;
    uint32_t max_dec;           /* longest decoded token */
    /* pre-tokenizer */
    tk_step *steps;
    uint32_t n_steps;
    dsi_regex **progs;          /* owned programs */
    uint32_t n_progs;
    uint32_t max_slots;
    /* tokenizer_config.json */
    int32_t bos, eos;
    bool add_bos;
    uint32_t bos_off, bos_len, eos_off, eos_len;   /* token texts; len 0 = none */
    bool has_bos_text, has_eos_text;
    bool has_template;          /* tokenizer_config.json has a chat_template (any family) */
    bool has_tpl_text;          /* ... and its text is in the pool (chat_template.c reads it) */
    uint32_t tpl_off, tpl_len;  /* NUL-terminated in the pool */
};

DSI_FUNC ds_status dsi_tokenizer_check_vocab(const ds_tokenizer *t, int vocab_size, dsi_err *e) {
    /* added tokens first, by name: the ids they get and the ids written */
    for (uint32_t k = 0; k < t->n_added; k++) {
        const tk_added *a = &t->added[k];
        int32_t id = a->id >= vocab_size ? a->id : a->file_id >= vocab_size ? a->file_id : -1;
        if (id < 0) continue;
        int n = a->len > 64 ? 64 : (int)a->len;
        return dsi_fail(e, DS_ERR_CONFIG,
                        "tokenizer.json: added token \"%.*s\" has id %d, beyond the model's vocabulary (config.json "
                        "vocab_size %d): the model could never read or produce it",
                        n, (const char *)t->pool.p + a->off, (int)id, vocab_size);
    }
    if (t->n_ids > (uint32_t)(vocab_size > 0 ? vocab_size : 0))
        return dsi_fail(e, DS_ERR_CONFIG,
                        "tokenizer.json: token id %u is beyond the model's vocabulary (config.json vocab_size %d): the "
                        "model could never read or produce it", t->n_ids - 1, vocab_size);
    return DS_OK;
}

DSI_FUNC void dsi_tokenizer_summary(const ds_tokenizer *t, ds_model_config *cfg) {
    cfg->tok_vocab = (int)t->model_vocab_size;
    cfg->tok_merges = (int)t->n_merges;
    cfg->tok_added = (int)t->n_added;
    cfg->has_chat_template = t->has_template;
}

static int32_t tk_vocab_get(const ds_tokenizer *t, const void *s, size_t n) {
    int64_t k = tk_smap_find(&t->vocab, &t->pool, s, n);
    return k < 0 ? -1 : t->vocab.ent[k].val;
}

static bool tk_merge_get(const ds_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *nid) {
    if (!t->mkey) return false;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t i = (uint32_t)tk_hash_u64(key) & t->mmask;
    for (;;) {
        uint64_t k = t->mkey[i];
        if (k == UINT64_MAX) return false;
        if (k == key) {
            *rank = (uint32_t)(t->mval[i] >> 32);
            *nid = (int32_t)(uint32_t)t->mval[i];
            return true;
        }
        i = (i + 1) & t->mmask;
    }
}

/* Inserts or overwrites (a later duplicate merge takes the later rank, as
 * the reference's HashMap collect does). */
static void tk_merge_put(ds_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t nid) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t i = (uint32_t)tk_hash_u64(key) & t->mmask;
    while (t->mkey[i] != UINT64_MAX && t->mkey[i] != key) i = (i + 1) & t->mmask;
    t->mkey[i] = key;
    t->mval[i] = ((uint64_t)rank << 32) | (uint32_t)nid;
}

/* ==== Construction: model ================================================= */
static ds_status tk_load_vocab(ds_tokenizer *t, const dsi_json *vocab, dsi_err *e) {
    if (!vocab || vocab->type != DSI_JSON_OBJECT)
        return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: model.vocab is missing or not an object");
    for (uint32_t i = 0; i < vocab->n; i++) {
        const dsi_json *v = &vocab->kids[i];
        if (v->type != DSI_JSON_NUMBER || !v->is_int || v->i < 0)
            return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: model.vocab entry %u: id is not a non-negative integer", i);
        if ((uint64_t)v->i >= DS_MAX_TOKEN_ID)
            return dsi_fail(e, DS_ERR_LIMIT, "tokenizer.json: model.vocab id %lld exceeds %u", (long long)v->i,
                            (unsigned)DS_MAX_TOKEN_ID);
        int64_t k = tk_smap_find(&t->vocab, &t->pool, v->key, v->key_len);
        if (k >= 0) {                 /* duplicate key: the last value wins */
            t->vocab.ent[k].val = (int32_t)v->i;
            continue;
        }
        uint32_t off;
        if (!tk_pool_put(&t->al, &t->pool, v->key, v->key_len, &off) ||
            tk_smap_add(&t->al, &t->vocab, &t->pool, off, v->key_len, (int32_t)v->i) < 0)
            return dsi_fail(e, DS_ERR_NOMEM, "tokenizer.json: out of memory for the vocabulary");
    }
    t->model_vocab_size = t->vocab.n;
    return DS_OK;
}

static ds_status tk_load_merges(ds_tokenizer *t, const dsi_json *merges, dsi_err *e) {
    if (!merges || merges->type != DSI_JSON_ARRAY)
        return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: model.merges is missing or not an array");
    uint32_t size = 64;
    while (size < (uint64_t)merges->n * 2 + 2) size *= 2;
    t->mkey = dsi_malloc(&t->al, (size_t)size * sizeof *t->mkey);
    t->mval = dsi_malloc(&t->al, (size_t)size * sizeof *t->mval);
    if (!t->mkey || !t->mval) return dsi_fail(e, DS_ERR_NOMEM, "tokenizer.json: out of memory for the merges");
    memset(t->mkey, 0xFF, (size_t)size * sizeof *t->mkey);
    t->mmask = size - 1;
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint32_t rank = 0;
    ds_status st = DS_OK;
    for (uint32_t i = 0; i < merges->n; i++) {
        const dsi_json *m = &merges->kids[i];
        const char *a, *b;
        size_t la, lb;
        if (m->type == DSI_JSON_STRING) {
            /* "a b": exactly one space (the reference splits on ' ' and wants
             * two parts); "#version" lines are skipped */
            if (m->n >= 8 && memcmp(m->str, "#version", 8) == 0) continue;
            const char *sp = memchr(m->str, ' ', m->n);
            if (!sp || memchr(sp + 1, ' ', m->n - (size_t)(sp + 1 - m->str))) {
                st = dsi_fail(e, DS_ERR_JSON, "tokenizer.json: merge %u is not \"left right\"", i);
                goto done;
            }
            a = m->str;
            la = (size_t)(sp - m->str);
            b = sp + 1;
            lb = m->n - la - 1;
        } else if (m->type == DSI_JSON_ARRAY && m->n == 2 && m->kids[0].type == DSI_JSON_STRING &&
                   m->kids[1].type == DSI_JSON_STRING) {
            a = m->kids[0].str;
            la = m->kids[0].n;
            b = m->kids[1].str;
            lb = m->kids[1].n;
        } else {
            st = dsi_fail(e, DS_ERR_JSON, "tokenizer.json: merge %u is neither \"a b\" nor [\"a\", \"b\"]", i);
            goto done;
        }
        int32_t ia = tk_vocab_get(t, a, la), ib = tk_vocab_get(t, b, lb);
        if (la + lb > cap) {
            size_t nc = (la + lb) * 2 + 64;
            uint8_t *nb = dsi_realloc(&t->al, buf, nc);
            if (!nb) { st = dsi_fail(e, DS_ERR_NOMEM, "tokenizer.json: out of memory"); goto done; }
            buf = nb;
            cap = nc;
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t in = tk_vocab_get(t, buf, la + lb);
        if (ia < 0 || ib < 0 || in < 0) {
            const char *which = ia < 0 ? a : ib < 0 ? b : (const char *)buf;
            int wl = (int)(ia < 0 ? la : ib < 0 ? lb : la + lb);
            if (wl > 64) wl = 64;
            st = dsi_fail(e, DS_ERR_JSON, "tokenizer.json: merge %u: \"%.*s\" is not in the vocabulary", i, wl, which);
            goto done;
        }
        tk_merge_put(t, ia, ib, rank++, in);
    }
    t->n_merges = rank;
done:
    dsi_free(&t->al, buf);
    return st;
}

/* Reads an AddedToken's boolean flag (absent = default). */
static ds_status tk_flag(const dsi_json *o, const char *key, bool def, uint8_t *out, uint32_t i, dsi_err *e) {
    bool v = def;
    if (dsi_json_get_bool(o, key, &v) < 0)
        return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: added_tokens[%u].%s is not a boolean", i, key);
    *out = v;
    return DS_OK;
}

/* The ids written in added_tokens: each a non-negative integer below
 * DS_MAX_TOKEN_ID, no two alike. They are not used (see tk_load_added), but
 * a file whose written ids are absurd or repeated was not made by the
 * reference, and its tokens are not what its author meant. */
typedef struct tk_written {
    int64_t id;
    uint32_t index;
} tk_written;

static int tk_cmp_written(const void *a, const void *b) {
    const tk_written *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id ? 1 : (x->index > y->index) - (x->index < y->index);
}

static ds_status tk_check_written_ids(ds_tokenizer *t, const dsi_json *arr, dsi_err *e) {
    tk_written *w = dsi_calloc(&t->al, arr->n ? arr->n : 1, sizeof *w);
    if (!w) return dsi_fail(e, DS_ERR_NOMEM, "tokenizer.json: out of memory for added_tokens");
    size_t n = 0;
    ds_status st = DS_OK;
    for (uint32_t i = 0; i < arr->n && !st; i++) {
        int64_t id;
        int r = dsi_json_get_int(&arr->kids[i], "id", &id);
        if (r == 0) continue;
        if (r < 0) st = dsi_fail(e, DS_ERR_JSON, "tokenizer.json: added_tokens[%u].id is not an integer", i);
        else if (id < 0) st = dsi_fail(e, DS_ERR_JSON, "tokenizer.json: added_tokens[%u].id %lld is negative", i, (long long)id);
        else if ((uint64_t)id >= DS_MAX_TOKEN_ID)
            st = dsi_fail(e, DS_ERR_LIMIT, "tokenizer.json: added_tokens[%u].id %lld exceeds %u", i, (long long)id,
                          (unsigned)DS_MAX_TOKEN_ID);
        else {
            w[n].id = id;
            w[n++].index = i;
        }
    }
    if (!st && n > 1) {
        qsort(w, n, sizeof *w, tk_cmp_written);
        for (size_t k = 1; k < n && !st; k++)
            if (w[k].id == w[k - 1].id)
                st = dsi_fail(e, DS_ERR_JSON, "tokenizer.json: added_tokens[%u] and added_tokens[%u] both have id %lld",
                              w[k - 1].index, w[k].index, (long long)w[k].id);
    }
    dsi_free(&t->al, w);
    return st;
}

/* added_tokens, with the reference's id rules: a content already in the
 * vocabulary keeps that id, a new one gets the next id after the model's
 * vocabulary; the ids written in the file are checked (tk_check_written_ids)
 * but not trusted. */
static ds_status tk_load_added(ds_tokenizer *t, const dsi_json *arr, dsi_err *e) {
    if (!arr || arr->type == DSI_JSON_NULL) return DS_OK;
    if (arr->type != DSI_JSON_ARRAY) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: added_tokens is not an array");
    ds_status wst = tk_check_written_ids(t, arr, e);
    if (wst) return wst;
    tk_smap cmap = {0};          /* content -> id (val), aux = special-set flag */
    uint32_t *rtab = NULL;       /* id -> index into t->added, open addressing (index+1) */
    uint32_t rmask = 0;
    ds_status st = DS_OK;
    uint32_t size = 16;
    while (size < (uint64_t)arr->n * 2 + 2) size *= 2;
    rtab = dsi_calloc(&t->al, size, sizeof *rtab);
    t->added = dsi_calloc(&t->al, arr->n ? arr->n : 1, sizeof *t->added);
    if (!rtab || !t->added) { st = dsi_fail(e, DS_ERR_NOMEM, "tokenizer.json: out of memory for added_tokens"); goto done; }
    rmask = size - 1;
    uint64_t next_id = t->model_vocab_size;
    for (uint32_t i = 0; i < arr->n; i++) {
        const dsi_json *o = &arr->kids[i];
        const char *content;
        size_t clen;
        if (o->type != DSI_JSON_OBJECT || dsi_json_get_str(o, "content", &content, &clen) != 1) {
            st = dsi_fail(e, DS_ERR_JSON, "tokenizer.json: added_tokens[%u] has no content string", i);
            goto done;
        }
        tk_added tok = {0};
        int64_t wid;
        tok.file_id = dsi_json_get_int(o, "id", &wid) == 1 ? (int32_t)wid : -1;
        if ((st = tk_flag(o, "special", false, &tok.special, i, e)) || (st = tk_flag(o, "lstrip", false, &tok.lstrip, i, e)) ||
            (st = tk_flag(o, "rstrip", false, &tok.rstrip, i, e)) ||
            (st = tk_flag(o, "single_word", false, &tok.single_word, i, e)) ||
            (st = tk_flag(o, "normalized", !tok.special, &tok.normalized, i, e)))
            goto done;
        if (clen == 0) continue;
        int64_t ck = tk_smap_find(&cmap, &t->pool, content, clen);
        int64_t id;
        if (ck >= 0) id = cmap.ent[ck].val;
        else {
            id = tk_vocab_get(t, content, clen);
            if (id < 0) {
                if (next_id >= DS_MAX_TOKEN_ID) {
                    st = dsi_fail(e, DS_ERR_LIMIT, "tokenizer.json: too many added tokens");
                    goto done;
                }
                id = (int64_t)next_id++;
            }
            uint32_t off;
            if (!tk_pool_put(&t->al, &t->pool, content, clen, &off) ||
                (ck = tk_smap_add(&t->al, &cmap, &t->pool, off, (uint32_t)clen, (int32_t)id)) < 0) {
                st = dsi_fail(e, DS_ERR_NOMEM, "tokenizer.json: out of memory for added_tokens");
                goto done;
            }
        }
        tok.off = cmap.ent[ck].off;
        tok.len = (uint32_t)clen;
        tok.id = (int32_t)id;
        if (tok.special) cmap.ent[ck].aux = 1;
        /* id -> token: a later token with the same id replaces the earlier */
        uint32_t h = (uint32_t)tk_hash_u64((uint64_t)id) & rmask;
        while (rtab[h] && t->added[rtab[h] - 1].id != (int32_t)id) h = (h + 1) & rmask;
        if (rtab[h]) t->added[rtab[h] - 1] = tok;
        else {
            t->added[t->n_added] = tok;
            rtab[h] = ++t->n_added;
        }
    }
    /* the special set is by content */
    for (uint32_t k = 0; k < t->n_added; k++) {
        tk_added *a = &t->added[k];
        int64_t ck = tk_smap_find(&cmap, &t->pool, t->pool.p + a->off, a->len);
        a->special_content = ck >= 0 && cmap.ent[ck].aux;
        if (!tk_trie_insert(&t->al, &t->trie[a->normalized ? 1 : 0], t->pool.p + a->off, a->len, (int32_t)k)) {
            st = dsi_fail(e, DS_ERR_NOMEM, "tokenizer.json: out of memory for added_tokens");
            goto done;
        }
    }
done:
    tk_smap_free(&t->al, &cmap);
    dsi_free(&t->al, rtab);
    return st;
}

/* id -> decoded bytes, for every id of the vocabulary and the added tokens.
 * The ByteLevel decoder maps a token's characters back to bytes when every
 * character is one of the 256 byte characters, and keeps its UTF-8 text
 * otherwise (so "<｜User｜>" decodes to itself). */
static ds_status tk_build_decoder(ds_tokenizer *t, dsi_err *e) {
    uint32_t n = 0;
    for (uint32_t k = 0; k < t->vocab.n; k++)
        if ((uint32_t)t->vocab.ent[k].val + 1 > n) n = (uint32_t)t->vocab.ent[k].val + 1;
    for (uint32_t k = 0; k < t->n_added; k++)
        if ((uint32_t)t->added[k].id + 1 > n) n = (uint32_t)t->added[k].id + 1;
    t->n_ids = n;
    uint32_t *src_off = dsi_malloc(&t->al, (size_t)(n ? n : 1) * sizeof *src_off);
    uint32_t *src_len = dsi_malloc(&t->al, (size_t)(n ? n : 1) * sizeof *src_len);
    t->dec_off = dsi_calloc(&t->al, n ? n : 1, sizeof *t->dec_off);
    t->dec_len = dsi_calloc(&t->al, n ? n : 1, sizeof *t->dec_len);
    ds_status st = DS_OK;
    uint8_t *tmp = NULL;
    if (!src_off || !src_len || !t->dec_off || !t->dec_len) {
        st = dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory for the id table");
        goto done;
    }
    memset(src_len, 0xFF, (size_t)(n ? n : 1) * sizeof *src_len);   /* UINT32_MAX = no token */
    /* the vocabulary's string for an id: the first entry in file order */
    for (uint32_t k = t->vocab.n; k-- > 0;) {
        src_off[t->vocab.ent[k].val] = t->vocab.ent[k].off;
        src_len[t->vocab.ent[k].val] = t->vocab.ent[k].len;
    }
    for (uint32_t k = 0; k < t->n_added; k++) {
        src_off[t->added[k].id] = t->added[k].off;
        src_len[t->added[k].id] = t->added[k].len;
    }
    size_t longest = 0;
    for (uint32_t id = 0; id < n; id++)
        if (src_len[id] != UINT32_MAX && src_len[id] > longest) longest = src_len[id];
    tmp = dsi_malloc(&t->al, longest + 1);
    if (!tmp) { st = dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory"); goto done; }
    for (uint32_t id = 0; id < n; id++) {
        if (src_len[id] == UINT32_MAX) continue;
        /* decoded form: at most as long as the text (a byte char is 1-2 bytes) */
        const uint8_t *s = t->pool.p + src_off[id];
        size_t L = src_len[id], o = 0;
        bool all = true;
        for (size_t i = 0; i < L;) {
            uint32_t cp;
            size_t k = dsi_utf8_decode(s + i, L - i, &cp);
            int b = k ? bl_cp_to_byte(cp) : -1;
            if (b < 0) { all = false; break; }
            tmp[o++] = (uint8_t)b;
            i += k;
        }
        const uint8_t *use = all ? tmp : s;
        size_t ulen = all ? o : L;
        uint32_t off;
        bool ok;
        if (all) ok = tk_pool_put(&t->al, &t->pool, use, ulen, &off);   /* may move the pool; tmp is ours */
        else { off = src_off[id]; ok = true; }
        if (!ok) { st = dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory"); goto done; }
        t->dec_off[id] = off;
        t->dec_len[id] = (uint32_t)ulen;
        if (ulen > t->max_dec) t->max_dec = (uint32_t)ulen;
    }
done:
    dsi_free(&t->al, tmp);
    dsi_free(&t->al, src_off);
    dsi_free(&t->al, src_len);
    return st;
}

/* ==== Construction: pre-tokenizer, normalizer, decoder ==================== */
static const char tk_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static ds_status tk_add_prog(ds_tokenizer *t, dsi_regex *G, dsi_err *e) {
    dsi_regex **np = dsi_realloc(&t->al, t->progs, (t->n_progs + 1) * sizeof *np);
    if (!np) { dsi_regex_free(&t->al, G); return dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory"); }
    t->progs = np;
    t->progs[t->n_progs++] = G;
    if (dsi_regex_slots(G) > t->max_slots) t->max_slots = dsi_regex_slots(G);
    return DS_OK;
}

static ds_status tk_add_step(ds_tokenizer *t, const tk_step *s, dsi_err *e) {
    if (t->n_steps >= 256) return dsi_fail(e, DS_ERR_LIMIT, "tokenizer.json: more than 256 pre-tokenizer steps");
    tk_step *ns = dsi_realloc(&t->al, t->steps, (t->n_steps + 1) * sizeof *ns);
    if (!ns) return dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory");
    t->steps = ns;
    t->steps[t->n_steps++] = *s;
    return DS_OK;
}

static ds_status tk_type(const dsi_json *o, const char *where, const char **type, size_t *len, dsi_err *e) {
    *type = "";   /* defined on every path (gcc cannot see it through the amalgamation) */
    *len = 0;
    if (!o || o->type != DSI_JSON_OBJECT || dsi_json_get_str(o, "type", type, len) != 1)
        return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: %s has no type", where);
    return DS_OK;
}

static ds_status tk_load_pretok(ds_tokenizer *t, const dsi_json *pt, int depth, dsi_err *e) {
    if (!pt || pt->type == DSI_JSON_NULL) return DS_OK;
    if (depth > 16) return dsi_fail(e, DS_ERR_LIMIT, "tokenizer.json: pre_tokenizer nested too deeply");
    const char *type;
    size_t tl;
    ds_status st = tk_type(pt, "pre_tokenizer", &type, &tl, e);
    if (st) return st;
    tk_step s = {0};
    bool b;
    if (strcmp(type, "Sequence") == 0) {
        const dsi_json *arr = dsi_json_get(pt, "pretokenizers");
        if (!arr || arr->type != DSI_JSON_ARRAY)
            return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: pre_tokenizer Sequence without pretokenizers");
        for (uint32_t i = 0; i < arr->n; i++)
            if ((st = tk_load_pretok(t, &arr->kids[i], depth + 1, e))) return st;
        return DS_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const dsi_json *pat = dsi_json_get(pt, "pattern");
        const char *p;
        size_t pl;
        bool literal;
        if (dsi_json_get_str(pat, "Regex", &p, &pl) == 1) literal = false;
        else if (dsi_json_get_str(pat, "String", &p, &pl) == 1) literal = true;
        else return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: Split pattern is neither {Regex} nor {String}");
        const char *bh;
        size_t bl;
        if (dsi_json_get_str(pt, "behavior", &bh, &bl) != 1)
            return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: Split without behavior");
        static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int k = -1;
        for (int i = 0; i < 5; i++)
            if (strcmp(bh, names[i]) == 0) k = i;
        if (k < 0) return dsi_fail(e, DS_ERR_UNSUPPORTED, "tokenizer.json: Split behavior \"%.40s\"", bh);
        s.kind = ST_SPLIT;
        s.behavior = (uint8_t)k;
        b = false;
        if (dsi_json_get_bool(pt, "invert", &b) < 0) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: Split invert is not a boolean");
        s.invert = b;
        char what[64];
        snprintf(what, sizeof what, "tokenizer.json: pre-tokenizer %u pattern", t->n_steps);
        dsi_regex *G;
        if ((st = dsi_regex_compile(p, pl, literal, &t->al, what, &G, e))) return st;
        if ((st = tk_add_prog(t, G, e))) return st;
        s.prog = G;
        return tk_add_step(t, &s, e);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        s.kind = ST_BYTELEVEL;
        b = true;                   /* the reference's defaults */
        if (dsi_json_get_bool(pt, "add_prefix_space", &b) < 0) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: ByteLevel add_prefix_space");
        s.add_prefix_space = b;
        b = true;
        if (dsi_json_get_bool(pt, "use_regex", &b) < 0) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: ByteLevel use_regex");
        s.use_regex = b;
        if (s.use_regex) {
            dsi_regex *G;
            if ((st = dsi_regex_compile(tk_gpt2_regex, sizeof tk_gpt2_regex - 1, false, &t->al, "ByteLevel regex", &G, e))) return st;
            if ((st = tk_add_prog(t, G, e))) return st;
            s.prog = G;
        }
        return tk_add_step(t, &s, e);
    }
    if (strcmp(type, "Digits") == 0) {
        s.kind = ST_DIGITS;
        b = false;
        if (dsi_json_get_bool(pt, "individual_digits", &b) < 0) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: Digits individual_digits");
        s.individual = b;
        return tk_add_step(t, &s, e);
    }
    return dsi_fail(e, DS_ERR_UNSUPPORTED, "tokenizer.json: pre-tokenizer type \"%.40s\" is not supported", type);
}

/* Only normalizers that change nothing: null and (nested) empty Sequences. */
static ds_status tk_check_normalizer(const dsi_json *n, int depth, dsi_err *e) {
    if (!n || n->type == DSI_JSON_NULL) return DS_OK;
    if (depth > 16) return dsi_fail(e, DS_ERR_LIMIT, "tokenizer.json: normalizer nested too deeply");
    const char *type;
    size_t tl;
    ds_status st = tk_type(n, "normalizer", &type, &tl, e);
    if (st) return st;
    if (strcmp(type, "Sequence") != 0)
        return dsi_fail(e, DS_ERR_UNSUPPORTED, "tokenizer.json: normalizer type \"%.40s\" is not supported", type);
    const dsi_json *arr = dsi_json_get(n, "normalizers");
    if (!arr || arr->type != DSI_JSON_ARRAY) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: normalizer Sequence without normalizers");
    for (uint32_t i = 0; i < arr->n; i++)
        if ((st = tk_check_normalizer(&arr->kids[i], depth + 1, e))) return st;
    return DS_OK;
}

static ds_status tk_load_model(ds_tokenizer *t, const dsi_json *m, dsi_err *e) {
    if (!m || m->type != DSI_JSON_OBJECT) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: no model object");
    const char *type;
    size_t tl;
    int r = dsi_json_get_str(m, "type", &type, &tl);
    if (r < 0 || (r == 1 && strcmp(type, "BPE") != 0))
        return dsi_fail(e, DS_ERR_UNSUPPORTED, "tokenizer.json: model type \"%.40s\" is not supported (BPE only)",
                        r == 1 ? type : "?");
    double dropout = 0;
    if (dsi_json_get_num(m, "dropout", &dropout) < 0 || dropout < 0 || dropout > 1)
        return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: model.dropout is invalid");
    if (dropout > 0) return dsi_fail(e, DS_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout (random segmentation)");
    const char *s;
    size_t sl;
    if (dsi_json_get_str(m, "continuing_subword_prefix", &s, &sl) != 0 || dsi_json_get_str(m, "end_of_word_suffix", &s, &sl) != 0)
        return dsi_fail(e, DS_ERR_UNSUPPORTED, "tokenizer.json: BPE continuing_subword_prefix / end_of_word_suffix");
    bool b = false;
    if (dsi_json_get_bool(m, "fuse_unk", &b) < 0) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: model.fuse_unk");
    t->fuse_unk = b;
    b = false;
    if (dsi_json_get_bool(m, "byte_fallback", &b) < 0) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: model.byte_fallback");
    t->byte_fallback = b;
    b = false;
    if (dsi_json_get_bool(m, "ignore_merges", &b) < 0) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: model.ignore_merges");
    t->ignore_merges = b;
    ds_status st;
    if ((st = tk_load_vocab(t, dsi_json_get(m, "vocab"), e))) return st;
    if ((st = tk_load_merges(t, dsi_json_get(m, "merges"), e))) return st;
    t->unk_id = -1;
    r = dsi_json_get_str(m, "unk_token", &s, &sl);
    if (r < 0) return dsi_fail(e, DS_ERR_JSON, "tokenizer.json: model.unk_token is not a string");
    if (r == 1) {
        t->unk_id = tk_vocab_get(t, s, sl);
        if (t->unk_id < 0) t->unk_id = -2;
    }
    /* per-byte and per-character lookups used on every encode */
    for (int i = 0; i < 256; i++) {
        uint8_t u[4];
        size_t k = dsi_utf8_encode(u, bl_byte_to_cp((uint8_t)i));
        t->byte_id[i] = tk_vocab_get(t, u, k);
        char fb[8];
        snprintf(fb, sizeof fb, "<0x%02X>", i);
        t->fallback_id[i] = tk_vocab_get(t, fb, 6);
    }
    for (uint32_t c = 0; c < 0x180; c++) {
        uint8_t u[4];
        size_t k = dsi_utf8_encode(u, c);
        t->low_id[c] = tk_vocab_get(t, u, k);
    }
    return DS_OK;
}

/* ==== Construction: tokenizer_config.json ================================= */
/* bos_token / eos_token: a string or {"content": ...}. */
static ds_status tk_special_text(ds_tokenizer *t, const dsi_json *cfg, const char *key, uint32_t *off, uint32_t *len,
                                 bool *has, int32_t *id, dsi_err *e) {
    *has = false;
    *id = -1;
    const dsi_json *v = dsi_json_get(cfg, key);
    const char *s = NULL;
    size_t n = 0;
    if (!v || v->type == DSI_JSON_NULL) return DS_OK;
    if (v->type == DSI_JSON_STRING) { s = v->str; n = v->n; }
    else if (v->type == DSI_JSON_OBJECT && dsi_json_get_str(v, "content", &s, &n) == 1) {}
    else return dsi_fail(e, DS_ERR_JSON, "tokenizer_config.json: %s is neither a string nor {content}", key);
    if (!tk_pool_put(&t->al, &t->pool, s, n, off)) return dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory");
    *len = (uint32_t)n;
    *has = true;
    /* token_to_id: added tokens first, then the vocabulary */
    for (uint32_t k = 0; k < t->n_added; k++)
        if (t->added[k].len == n && memcmp(t->pool.p + t->added[k].off, s, n) == 0) { *id = t->added[k].id; return DS_OK; }
    *id = tk_vocab_get(t, s, n);
    return DS_OK;
}

/* Keeps the chat template's text, NUL-terminated as the JSON parser left it,
 * for chat_template.c, which picks the family from it. */
static ds_status tk_keep_template(ds_tokenizer *t, const char *tpl, size_t n, dsi_err *e) {
    uint32_t nul;
    if (!tk_pool_put(&t->al, &t->pool, tpl, n, &t->tpl_off) || !tk_pool_put(&t->al, &t->pool, "", 1, &nul))
        return dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory");
    t->tpl_len = (uint32_t)n;
    t->has_tpl_text = true;
    return DS_OK;
}

static ds_status tk_load_config(ds_tokenizer *t, const char *json, size_t len, dsi_err *e) {
    t->bos = t->eos = -1;
    if (!json) return DS_OK;
    dsi_json_doc *doc = NULL;
    ds_status st = dsi_json_parse(json, len, &t->al, &doc, e);
    if (st) return dsi_prefix(e, "tokenizer_config.json");
    const dsi_json *root = dsi_json_root(doc);
    if (root->type != DSI_JSON_OBJECT) {
        st = dsi_fail(e, DS_ERR_JSON, "tokenizer_config.json: not an object");
        goto done;
    }
    if ((st = tk_special_text(t, root, "bos_token", &t->bos_off, &t->bos_len, &t->has_bos_text, &t->bos, e))) goto done;
    if ((st = tk_special_text(t, root, "eos_token", &t->eos_off, &t->eos_len, &t->has_eos_text, &t->eos, e))) goto done;
    bool b = true;
    if (dsi_json_get_bool(root, "add_bos_token", &b) < 0) {
        st = dsi_fail(e, DS_ERR_JSON, "tokenizer_config.json: add_bos_token is not a boolean");
        goto done;
    }
    t->add_bos = b && t->bos >= 0;
    const dsi_json *ct = dsi_json_get(root, "chat_template");
    t->has_template = ct && (ct->type == DSI_JSON_STRING || ct->type == DSI_JSON_ARRAY);
    if (ct && ct->type == DSI_JSON_STRING) st = tk_keep_template(t, ct->str, ct->n, e);
    else if (ct && ct->type == DSI_JSON_ARRAY) {
        /* [{"name": "default", "template": ...}, ...] */
        const char *tpl = NULL;
        size_t tl = 0;
        for (uint32_t i = 0; i < ct->n; i++) {
            const char *nm, *tx;
            size_t nl, xl;
            if (dsi_json_get_str(&ct->kids[i], "template", &tx, &xl) != 1) continue;
            if (!tpl) { tpl = tx; tl = xl; }
            if (dsi_json_get_str(&ct->kids[i], "name", &nm, &nl) == 1 && strcmp(nm, "default") == 0) { tpl = tx; tl = xl; }
        }
        if (tpl) st = tk_keep_template(t, tpl, tl, e);
    }
done:
    dsi_json_free(doc);
    return st;
}

/* ==== Construction ======================================================== */
DS_API void ds_tokenizer_free(ds_tokenizer *t) {
    if (!t) return;
    dsi_alloc al = t->al;
    for (uint32_t i = 0; i < t->n_progs; i++) dsi_regex_free(&al, t->progs[i]);
    dsi_free(&al, t->progs);
    dsi_free(&al, t->steps);
    dsi_free(&al, t->trie[0].nodes);
    dsi_free(&al, t->trie[1].nodes);
    dsi_free(&al, t->added);
    dsi_free(&al, t->dec_off);
    dsi_free(&al, t->dec_len);
    dsi_free(&al, t->mkey);
    dsi_free(&al, t->mval);
    tk_smap_free(&al, &t->vocab);
    dsi_free(&al, t->pool.p);
    dsi_free(&al, t);
}

static ds_status tk_new(ds_tokenizer **out, const char *json, size_t len, const char *cfg, size_t cfg_len,
                        const ds_allocator *allocator, dsi_err *e) {
    *out = NULL;
    dsi_alloc al;
    ds_status st = dsi_alloc_init(&al, allocator, e);
    if (st) return st;
    if (!json) return dsi_fail(e, DS_ERR_INVALID_ARG, "ds_tokenizer_new: tokenizer_json is NULL");
    ds_tokenizer *t = dsi_calloc(&al, 1, sizeof *t);
    if (!t) return dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory");
    t->al = al;
    t->bos = t->eos = -1;
    dsi_json_doc *doc = NULL;
    if ((st = dsi_json_parse(json, len, &t->al, &doc, e))) { dsi_prefix(e, "tokenizer.json"); goto fail; }
    const dsi_json *root = dsi_json_root(doc);
    if (root->type != DSI_JSON_OBJECT) { st = dsi_fail(e, DS_ERR_JSON, "tokenizer.json: not an object"); goto fail; }
    const dsi_json *trunc = dsi_json_get(root, "truncation");
    if (trunc && trunc->type != DSI_JSON_NULL) {
        st = dsi_fail(e, DS_ERR_UNSUPPORTED, "tokenizer.json: truncation is not supported");
        goto fail;
    }
    if ((st = tk_check_normalizer(dsi_json_get(root, "normalizer"), 0, e))) goto fail;
    const dsi_json *dec = dsi_json_get(root, "decoder");
    const char *dtype = "null";
    size_t dl;
    if (dec && dec->type != DSI_JSON_NULL && (st = tk_type(dec, "decoder", &dtype, &dl, e))) goto fail;
    if (strcmp(dtype, "ByteLevel") != 0) {
        st = dsi_fail(e, DS_ERR_UNSUPPORTED, "tokenizer.json: decoder \"%.40s\" is not supported (ByteLevel only)", dtype);
        goto fail;
    }
    if ((st = tk_load_model(t, dsi_json_get(root, "model"), e))) goto fail;
    if ((st = tk_load_added(t, dsi_json_get(root, "added_tokens"), e))) goto fail;
    if ((st = tk_load_pretok(t, dsi_json_get(root, "pre_tokenizer"), 0, e))) goto fail;
    if ((st = tk_build_decoder(t, e))) goto fail;
    dsi_json_free(doc);
    doc = NULL;
    if ((st = tk_load_config(t, cfg, cfg_len, e))) goto fail;
    *out = t;
    return DS_OK;
fail:
    dsi_json_free(doc);
    ds_tokenizer_free(t);
    return st;
}

DS_API ds_status ds_tokenizer_new(ds_tokenizer **out, const char *tokenizer_json, size_t len,
                                  const char *tokenizer_config_json, size_t config_len, const ds_allocator *allocator) {
    dsi_err e = {DS_OK, ""};
    if (!out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_new: out is NULL");
        return dsi_publish(&e);
    }
    ds_status st = tk_new(out, tokenizer_json, len, tokenizer_config_json, config_len, allocator, &e);
    if (st) return dsi_publish(&e);
    return DS_OK;
}

DS_API int ds_tokenizer_vocab_size(const ds_tokenizer *t) { return t ? (int)t->n_ids : 0; }
DS_API int32_t ds_tokenizer_bos(const ds_tokenizer *t) { return t ? t->bos : -1; }
DS_API int ds_tokenizer_adds_bos(const ds_tokenizer *t) { return t && t->add_bos && t->bos >= 0; }
DS_API int32_t ds_tokenizer_eos(const ds_tokenizer *t) { return t ? t->eos : -1; }

/* ==== Encoding: scratch =================================================== */
typedef struct tk_piece {
    uint32_t off, len;          /* code points in the run's arena */
    uint8_t bl;                 /* 0 text; 1 text whose UTF-8 bytes are to be byte-mapped;
                                   2 already byte-mapped characters */
} tk_piece;

typedef struct tk_iv {
    uint32_t s, e;
    uint8_t flag;               /* is a match / is removed */
} tk_iv;

typedef struct tk_seg {
    size_t s, e;                /* bytes of the text */
    int32_t id;                 /* added token id, or -1 for text */
} tk_seg;

typedef struct tk_sym {
    int32_t id;
    int32_t prev, next;
    uint32_t len;               /* 0 = merged away */
} tk_sym;

typedef struct tk_hitem {
    uint32_t rank, pos;
    int32_t nid;
} tk_hitem;

typedef struct tk_run {
    const ds_tokenizer *t;
    const dsi_alloc *al;
    dsi_err *e;
    int32_t *ids;
    size_t n_ids, cap_ids;
    uint32_t *cps;
    size_t n_cps, cap_cps;
    tk_piece *pa, *pb;
    size_t na, nb, cap_pa, cap_pb;
    tk_iv *iv;
    size_t niv, cap_iv;
    tk_iv *iv2;
    size_t niv2, cap_iv2;
    tk_seg *seg;
    size_t nseg, cap_seg;
    tk_sym *sym;
    size_t cap_sym;
    tk_hitem *heap;
    size_t cap_heap;
    uint8_t *word;
    size_t cap_word;
    dsi_regex_ctx rx;
    const dsi_span *plain;      /* (n_plain) sorted byte ranges where no added token is matched */
    size_t n_plain;
} tk_run;

/* Makes room for need elements in *p (capacity *cap). */
static bool tk_grow(const dsi_alloc *al, void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return false;
        nc *= 2;
    }
    void *np = dsi_realloc(al, *p, nc * elem);
    if (!np) return false;
    *p = np;
    *cap = nc;
    return true;
}

#define TK_PUSH(R, arr, n, cap, val)                                                                 \
    do {                                                                                             \
        if (!tk_grow((R)->al, (void **)&(R)->arr, &(R)->cap, (R)->n + 1, sizeof *(R)->arr))          \
            return dsi_fail((R)->e, DS_ERR_NOMEM, "tokenizer: out of memory");                       \
        (R)->arr[(R)->n++] = (val);                                                                  \
    } while (0)

static void tk_run_free(tk_run *R) {
    const dsi_alloc *al = R->al;
    dsi_free(al, R->ids);
    dsi_free(al, R->cps);
    dsi_free(al, R->pa);
    dsi_free(al, R->pb);
    dsi_free(al, R->iv);
    dsi_free(al, R->iv2);
    dsi_free(al, R->seg);
    dsi_free(al, R->sym);
    dsi_free(al, R->heap);
    dsi_free(al, R->word);
    dsi_free(al, R->rx.stack);
    dsi_free(al, R->rx.slots);
}

static ds_status tk_emit(tk_run *R, int32_t id) {
    TK_PUSH(R, ids, n_ids, cap_ids, id);
    return DS_OK;
}

/* ==== Encoding: added tokens ============================================== */
/* Last / first character of valid UTF-8 text. */
static uint32_t tk_last_cp(const uint8_t *s, size_t n) {
    size_t i = n;
    while (i > 0 && (s[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return 0;
    uint32_t cp = 0;
    dsi_utf8_decode(s + i - 1, n - i + 1, &cp);
    return cp;
}

static uint32_t tk_first_cp(const uint8_t *s, size_t n, size_t *len) {
    uint32_t cp = 0;
    *len = dsi_utf8_decode(s, n, &cp);
    return cp;
}

/* The first plain span that ends after byte p (R->n_plain when none). */
static size_t tk_plain_after(const tk_run *R, size_t p) {
    size_t lo = 0, hi = R->n_plain;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (R->plain[mid].e <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Splits text[s, e) on the added tokens of one trie, as the reference's
 * AddedVocabulary::find_matches: leftmost-longest, non-overlapping, then
 * single_word / lstrip / rstrip adjustments. Appends to R->seg. A match
 * lies wholly outside the plain spans (R->plain): none starts inside one,
 * and one starting before a span is the longest that ends where it begins. */
static ds_status tk_split_added(tk_run *R, const uint8_t *text, size_t s, size_t e, const tk_trie *T, bool no_special) {
    const ds_tokenizer *t = R->t;
    size_t start_offset = s, p = s;
    size_t k = R->n_plain ? tk_plain_after(R, s) : 0;
    while (p < e) {
        int32_t tok = -1;
        size_t lim = e;
        while (k < R->n_plain && R->plain[k].e <= p) k++;
        if (k < R->n_plain) {
            if (R->plain[k].s <= p) { p = R->plain[k].e; continue; }   /* inside a span: no match starts */
            if (R->plain[k].s < lim) lim = R->plain[k].s;               /* a match ends before the next */
        }
        if (!T->nodes || !T->first[text[p]]) { p++; continue; }
        size_t L = tk_trie_longest(T, text + p, lim - p, &tok);
        if (!L) { p++; continue; }
        size_t ms = p, me = p + L;
        p = me;
        const tk_added *a = &t->added[tok];
        if (no_special && a->special_content) continue;
        if (a->single_word) {
            bool start_space = ms == s || !dsi_uc_is_rust_word(tk_last_cp(text + s, ms - s));
            size_t cl;
            bool stop_space = me == e || !dsi_uc_is_rust_word(tk_first_cp(text + me, e - me, &cl));
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = ms;
            while (ns > s) {
                size_t j = ns;
                while (j > s && (text[j - 1] & 0xC0) == 0x80) j--;
                if (j == s) break;
                uint32_t cp;
                if (!dsi_utf8_decode(text + j - 1, ns - j + 1, &cp) || !dsi_uc_is_space(cp)) break;
                ns = j - 1;
            }
            ms = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (me < e) {
                size_t cl;
                uint32_t cp = tk_first_cp(text + me, e - me, &cl);
                if (!cl || !dsi_uc_is_space(cp)) break;
                me += cl;
            }
        }
        if (start_offset < ms) TK_PUSH(R, seg, nseg, cap_seg, ((tk_seg){start_offset, ms, -1}));
        TK_PUSH(R, seg, nseg, cap_seg, ((tk_seg){ms, me, a->id}));
        start_offset = me;
    }
    if (start_offset < e) TK_PUSH(R, seg, nseg, cap_seg, ((tk_seg){start_offset, e, -1}));
    return DS_OK;
}

/* ==== Encoding: pre-tokenizer ============================================= */
static ds_status tk_nomem(tk_run *R) { return dsi_fail(R->e, DS_ERR_NOMEM, "tokenizer: out of memory"); }

/* Replaces a piece of text by its byte-mapped characters (bl = 2). */
static ds_status tk_materialize(tk_run *R, tk_piece *pc) {
    size_t need = R->n_cps + (size_t)pc->len * 4;
    if (!tk_grow(R->al, (void **)&R->cps, &R->cap_cps, need, sizeof *R->cps)) return tk_nomem(R);
    size_t start = R->n_cps;
    for (uint32_t i = 0; i < pc->len; i++) {
        uint8_t u[4];
        size_t k = dsi_utf8_encode(u, R->cps[pc->off + i]);
        for (size_t j = 0; j < k; j++) R->cps[R->n_cps++] = bl_byte_to_cp(u[j]);
    }
    if (R->n_cps - start > UINT32_MAX) return dsi_fail(R->e, DS_ERR_LIMIT, "tokenizer: text too long");
    pc->off = (uint32_t)start;
    pc->len = (uint32_t)(R->n_cps - start);
    pc->bl = 2;
    return DS_OK;
}

/* Regex find-all over a piece with the semantics of the onig crate's
 * find_iter as the reference uses it: an empty match right where the
 * previous match ended is skipped by advancing one character; other empty
 * matches count (and so split the text). Fills R->iv with intervals
 * covering the piece, flag = matched. */
static ds_status tk_find_regex(tk_run *R, const dsi_regex *G, const tk_piece *pc) {
    R->niv = 0;
    R->rx.s = R->cps + pc->off;
    R->rx.n = pc->len;
    R->rx.steps = 0;
    size_t n = pc->len, pos = 0, prev = 0, last_end = SIZE_MAX;
    while (pos <= n) {
        size_t ms, me;
        int r = dsi_regex_search(G, &R->rx, pos, &ms, &me);
        if (r == DSI_REGEX_NOMEM) return tk_nomem(R);
        if (r == DSI_REGEX_LIMIT)
            return dsi_fail(R->e, DS_ERR_LIMIT, "tokenizer: regex backtracking limit exceeded (text too pathological)");
        if (r == 0) break;
        R->rx.steps = 0;
        if (ms == me && last_end == me) { pos++; continue; }
        if (prev != ms) TK_PUSH(R, iv, niv, cap_iv, ((tk_iv){(uint32_t)prev, (uint32_t)ms, 0}));
        TK_PUSH(R, iv, niv, cap_iv, ((tk_iv){(uint32_t)ms, (uint32_t)me, 1}));
        prev = pos = last_end = me;
    }
    if (prev != n) TK_PUSH(R, iv, niv, cap_iv, ((tk_iv){(uint32_t)prev, (uint32_t)n, 0}));
    return DS_OK;
}

/* Digits: every numeric character (Nd, Nl, No: Rust's char::is_numeric) is
 * its own match. */
static ds_status tk_find_digits(tk_run *R, const tk_piece *pc) {
    R->niv = 0;
    const uint32_t *s = R->cps + pc->off;
    uint32_t last = 0;
    for (uint32_t i = 0; i < pc->len; i++) {
        uint32_t c = s[i];
        bool num = c < 0x80 ? (c >= '0' && c <= '9') : dsi_uc_is_numeric(c);
        if (!num) continue;
        if (last < i) TK_PUSH(R, iv, niv, cap_iv, ((tk_iv){last, i, 0}));
        TK_PUSH(R, iv, niv, cap_iv, ((tk_iv){i, i + 1, 1}));
        last = i + 1;
    }
    if (last < pc->len) TK_PUSH(R, iv, niv, cap_iv, ((tk_iv){last, pc->len, 0}));
    return DS_OK;
}

/* Applies a split behavior to R->iv (flag = matched) and appends the kept,
 * non-empty pieces to R->pb (NormalizedString::split). */
static ds_status tk_apply_behavior(tk_run *R, const tk_piece *pc, int behavior, bool invert) {
    if (invert)
        for (size_t i = 0; i < R->niv; i++) R->iv[i].flag ^= 1;
    R->niv2 = 0;
    bool prev = false;
    switch (behavior) {
    case BH_ISOLATED:
        for (size_t i = 0; i < R->niv; i++) TK_PUSH(R, iv2, niv2, cap_iv2, ((tk_iv){R->iv[i].s, R->iv[i].e, 0}));
        break;
    case BH_REMOVED:
        for (size_t i = 0; i < R->niv; i++) TK_PUSH(R, iv2, niv2, cap_iv2, R->iv[i]);
        break;
    case BH_CONTIGUOUS:
        for (size_t i = 0; i < R->niv; i++) {
            bool m = R->iv[i].flag;
            if (m == prev && R->niv2) R->iv2[R->niv2 - 1].e = R->iv[i].e;
            else TK_PUSH(R, iv2, niv2, cap_iv2, ((tk_iv){R->iv[i].s, R->iv[i].e, 0}));
            prev = m;
        }
        break;
    case BH_MERGED_PREV:
        for (size_t i = 0; i < R->niv; i++) {
            bool m = R->iv[i].flag;
            if (m && !prev && R->niv2) R->iv2[R->niv2 - 1].e = R->iv[i].e;
            else TK_PUSH(R, iv2, niv2, cap_iv2, ((tk_iv){R->iv[i].s, R->iv[i].e, 0}));
            prev = m;
        }
        break;
    case BH_MERGED_NEXT:
        for (size_t i = R->niv; i-- > 0;) {
            bool m = R->iv[i].flag;
            if (m && !prev && R->niv2) R->iv2[R->niv2 - 1].s = R->iv[i].s;
            else TK_PUSH(R, iv2, niv2, cap_iv2, ((tk_iv){R->iv[i].s, R->iv[i].e, 0}));
            prev = m;
        }
        for (size_t i = 0, j = R->niv2; i < j / 2; i++) {   /* back to text order */
            tk_iv x = R->iv2[i];
            R->iv2[i] = R->iv2[j - 1 - i];
            R->iv2[j - 1 - i] = x;
        }
        break;
    }
    for (size_t i = 0; i < R->niv2; i++) {
        const tk_iv *v = &R->iv2[i];
        if (v->flag || v->e <= v->s) continue;
        TK_PUSH(R, pb, nb, cap_pb, ((tk_piece){pc->off + v->s, v->e - v->s, pc->bl}));
    }
    return DS_OK;
}

/* Runs one pre-tokenizer step over R->pa into R->pb, then swaps them. */
static ds_status tk_step_run(tk_run *R, const tk_step *S) {
    R->nb = 0;
    ds_status st;
    for (size_t i = 0; i < R->na; i++) {
        tk_piece pc = R->pa[i];
        if (S->kind == ST_SPLIT || S->kind == ST_DIGITS) {
            /* later steps see the byte-mapped text */
            if (pc.bl == 1 && (st = tk_materialize(R, &pc))) return st;
            st = S->kind == ST_SPLIT ? tk_find_regex(R, S->prog, &pc) : tk_find_digits(R, &pc);
            if (st) return st;
            if ((st = tk_apply_behavior(R, &pc, S->kind == ST_SPLIT ? S->behavior
                                                 : S->individual ? BH_ISOLATED : BH_CONTIGUOUS,
                                        S->kind == ST_SPLIT && S->invert)))
                return st;
            continue;
        }
        /* ByteLevel */
        if (pc.bl == 1 && (st = tk_materialize(R, &pc))) return st;
        if (S->add_prefix_space && (pc.len == 0 || R->cps[pc.off] != ' ')) {
            if (!tk_grow(R->al, (void **)&R->cps, &R->cap_cps, R->n_cps + pc.len + 1, sizeof *R->cps)) return tk_nomem(R);
            size_t start = R->n_cps;
            R->cps[R->n_cps++] = ' ';
            memcpy(R->cps + R->n_cps, R->cps + pc.off, (size_t)pc.len * sizeof *R->cps);
            R->n_cps += pc.len;
            pc.off = (uint32_t)start;
            pc.len++;
        }
        if (S->use_regex) {
            size_t first = R->nb;
            if ((st = tk_find_regex(R, S->prog, &pc))) return st;
            if ((st = tk_apply_behavior(R, &pc, BH_ISOLATED, false))) return st;
            for (size_t k = first; k < R->nb; k++) R->pb[k].bl = 1;
        } else {
            pc.bl = 1;
            TK_PUSH(R, pb, nb, cap_pb, pc);
        }
    }
    tk_piece *tp = R->pa;
    R->pa = R->pb;
    R->pb = tp;
    size_t tc = R->cap_pa;
    R->cap_pa = R->cap_pb;
    R->cap_pb = tc;
    R->na = R->nb;
    R->nb = 0;
    return DS_OK;
}

/* ==== Encoding: BPE ======================================================= */
static bool tk_heap_less(const tk_hitem *a, const tk_hitem *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static ds_status tk_heap_push(tk_run *R, size_t *n, tk_hitem it) {
    if (!tk_grow(R->al, (void **)&R->heap, &R->cap_heap, *n + 1, sizeof *R->heap)) return tk_nomem(R);
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!tk_heap_less(&it, &R->heap[p])) break;
        R->heap[i] = R->heap[p];
        i = p;
    }
    R->heap[i] = it;
    return DS_OK;
}

static tk_hitem tk_heap_pop(tk_run *R, size_t *n) {
    tk_hitem top = R->heap[0], last = R->heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && tk_heap_less(&R->heap[c + 1], &R->heap[c])) c++;
        if (!tk_heap_less(&R->heap[c], &last)) break;
        R->heap[i] = R->heap[c];
        i = c;
    }
    if (*n) R->heap[i] = last;
    return top;
}

typedef struct tk_word {
    size_t n;                   /* symbols */
    int32_t unk_id;
    uint32_t unk_len;           /* 0: no pending unknown */
} tk_word;

static ds_status tk_sym_add(tk_run *R, tk_word *w, int32_t id, uint32_t len) {
    if (!tk_grow(R->al, (void **)&R->sym, &R->cap_sym, w->n + 1, sizeof *R->sym)) return tk_nomem(R);
    R->sym[w->n] = (tk_sym){id, (int32_t)w->n - 1, (int32_t)w->n + 1, len};
    w->n++;
    return DS_OK;
}

/* One character of the word: its vocabulary id, or the reference's
 * byte_fallback / unk handling (merge_word). s: the character's UTF-8. */
static ds_status tk_word_char(tk_run *R, tk_word *w, int32_t id, const uint8_t *s, size_t n) {
    const ds_tokenizer *t = R->t;
    ds_status st;
    if (id >= 0) {
        if (w->unk_len) {
            if ((st = tk_sym_add(R, w, w->unk_id, w->unk_len))) return st;
            w->unk_len = 0;
        }
        return tk_sym_add(R, w, id, (uint32_t)n);
    }
    if (t->byte_fallback) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
            if (t->fallback_id[s[i]] < 0) all = false;
        if (all) {
            /* as the reference: a pending unknown stays pending */
            for (size_t i = 0; i < n; i++)
                if ((st = tk_sym_add(R, w, t->fallback_id[s[i]], 1))) return st;
            return DS_OK;
        }
    }
    if (t->unk_id == -1) return DS_OK;         /* no unk token: dropped */
    if (t->unk_id < 0) return dsi_fail(R->e, DS_ERR_INVALID_ARG, "tokenizer: the unk token is not in the vocabulary");
    if (w->unk_len && t->fuse_unk) { w->unk_len += (uint32_t)n; return DS_OK; }
    if (w->unk_len && (st = tk_sym_add(R, w, w->unk_id, w->unk_len))) return st;
    w->unk_id = t->unk_id;
    w->unk_len = (uint32_t)n;
    return DS_OK;
}

static int32_t tk_char_id(const ds_tokenizer *t, uint32_t cp, uint8_t *u, size_t *k) {
    *k = dsi_utf8_encode(u, cp);
    if (cp < 0x180) return t->low_id[cp];
    return tk_vocab_get(t, u, *k);
}

/* Encodes one pre-tokenized piece with BPE and appends its ids. */
static ds_status tk_bpe(tk_run *R, const tk_piece *pc) {
    const ds_tokenizer *t = R->t;
    const uint32_t *cps = R->cps + pc->off;
    ds_status st;
    if (pc->len == 0) return DS_OK;
    if (t->ignore_merges) {
        /* the whole piece, if it is a token, is the answer */
        size_t need = (size_t)pc->len * 8;
        if (!tk_grow(R->al, (void **)&R->word, &R->cap_word, need, 1)) return tk_nomem(R);
        size_t o = 0;
        for (uint32_t i = 0; i < pc->len; i++) {
            if (pc->bl == 1) {
                uint8_t u[4];
                size_t k = dsi_utf8_encode(u, cps[i]);
                for (size_t j = 0; j < k; j++) o += dsi_utf8_encode(R->word + o, bl_byte_to_cp(u[j]));
            } else {
                o += dsi_utf8_encode(R->word + o, cps[i]);
            }
        }
        int32_t id = tk_vocab_get(t, R->word, o);
        if (id >= 0) return tk_emit(R, id);
    }
    tk_word w = {0, -1, 0};
    for (uint32_t i = 0; i < pc->len; i++) {
        uint8_t u[4], m[4];
        size_t k;
        if (pc->bl == 1) {
            k = dsi_utf8_encode(u, cps[i]);
            for (size_t j = 0; j < k; j++) {
                int32_t id = t->byte_id[u[j]];
                if (id >= 0) st = tk_word_char(R, &w, id, NULL, 1);
                else {
                    size_t mk = dsi_utf8_encode(m, bl_byte_to_cp(u[j]));
                    st = tk_word_char(R, &w, -1, m, mk);
                }
                if (st) return st;
            }
        } else {
            int32_t id = tk_char_id(t, cps[i], u, &k);
            if ((st = tk_word_char(R, &w, id, u, k))) return st;
        }
    }
    if (w.unk_len && (st = tk_sym_add(R, &w, w.unk_id, w.unk_len))) return st;
    if (w.n == 0) return DS_OK;
    tk_sym *sym = R->sym;
    sym[w.n - 1].next = -1;
    /* merge the lowest-ranked pair first; ties go to the leftmost */
    size_t hn = 0;
    for (size_t i = 0; i + 1 < w.n; i++) {
        uint32_t rank;
        int32_t nid;
        if (tk_merge_get(t, sym[i].id, sym[i + 1].id, &rank, &nid) &&
            (st = tk_heap_push(R, &hn, (tk_hitem){rank, (uint32_t)i, nid})))
            return st;
    }
    while (hn) {
        tk_hitem top = tk_heap_pop(R, &hn);
        sym = R->sym;
        tk_sym *L = &sym[top.pos];
        if (L->len == 0 || L->next < 0) continue;
        tk_sym *Rt = &sym[L->next];
        uint32_t rank;
        int32_t nid;
        /* a stale entry: the pair changed since it was queued */
        if (!tk_merge_get(t, L->id, Rt->id, &rank, &nid) || nid != top.nid) continue;
        L->id = top.nid;
        L->len += Rt->len;
        Rt->len = 0;
        L->next = Rt->next;
        if (L->next >= 0) sym[L->next].prev = (int32_t)top.pos;
        if (L->prev >= 0 && tk_merge_get(t, sym[L->prev].id, L->id, &rank, &nid) &&
            (st = tk_heap_push(R, &hn, (tk_hitem){rank, (uint32_t)L->prev, nid})))
            return st;
        sym = R->sym;
        L = &sym[top.pos];
        if (L->next >= 0 && tk_merge_get(t, L->id, sym[L->next].id, &rank, &nid) &&
            (st = tk_heap_push(R, &hn, (tk_hitem){rank, top.pos, nid})))
            return st;
    }
    sym = R->sym;
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        if ((st = tk_emit(R, sym[i].id))) return st;
    return DS_OK;
}

/* ==== Encoding ============================================================ */
/* Pre-tokenizes and encodes text[s, e) (no added tokens inside). */
static ds_status tk_encode_text(tk_run *R, const uint8_t *text, size_t s, size_t e) {
    const ds_tokenizer *t = R->t;
    ds_status st;
    if (e - s > UINT32_MAX / 8) return dsi_fail(R->e, DS_ERR_LIMIT, "tokenizer: text segment longer than 512 MB");
    R->n_cps = 0;
    if (!tk_grow(R->al, (void **)&R->cps, &R->cap_cps, e - s, sizeof *R->cps)) return tk_nomem(R);
    for (size_t i = s; i < e;) {
        uint32_t cp;
        size_t k = dsi_utf8_decode(text + i, e - i, &cp);
        R->cps[R->n_cps++] = cp;
        i += k;
    }
    R->na = 0;
    TK_PUSH(R, pa, na, cap_pa, ((tk_piece){0, (uint32_t)R->n_cps, 0}));
    for (uint32_t k = 0; k < t->n_steps; k++)
        if ((st = tk_step_run(R, &t->steps[k]))) return st;
    for (size_t i = 0; i < R->na; i++) {
        tk_piece pc = R->pa[i];
        if ((st = tk_bpe(R, &pc))) return st;
    }
    return DS_OK;
}

static ds_status tk_encode(const ds_tokenizer *t, const char *text, size_t len, int flags, tk_run *R) {
    ds_status st;
    const uint8_t *s = (const uint8_t *)text;
    /* the reference only sees valid UTF-8 (Rust strings) */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        if (s[i] < 0x80) { i++; continue; }
        size_t k = dsi_utf8_decode(s + i, len - i, &cp);
        if (!k) return dsi_fail(R->e, DS_ERR_INVALID_ARG, "tokenizer: invalid UTF-8 at byte offset %zu", i);
        i += k;
    }
    if ((flags & DS_TOKENIZE_BOS) && t->add_bos && t->bos >= 0 && (st = tk_emit(R, t->bos))) return st;
    if (len == 0) return DS_OK;
    bool no_special = (flags & DS_TOKENIZE_NO_SPECIAL) != 0;
    /* pass 1: added tokens with normalized = false, on the whole text */
    R->nseg = 0;
    if ((st = tk_split_added(R, s, 0, len, &t->trie[0], no_special))) return st;
    /* pass 2: the others, inside each remaining piece */
    size_t n1 = R->nseg;
    for (size_t i = 0; i < n1; i++) {
        tk_seg g = R->seg[i];
        if (g.id >= 0) TK_PUSH(R, seg, nseg, cap_seg, g);
        else if ((st = tk_split_added(R, s, g.s, g.e, &t->trie[1], no_special))) return st;
    }
    for (size_t i = n1; i < R->nseg; i++) {
        tk_seg g = R->seg[i];
        if (g.id >= 0) st = tk_emit(R, g.id);
        else st = tk_encode_text(R, s, g.s, g.e);
        if (st) return st;
    }
    return DS_OK;
}

DSI_FUNC ds_status dsi_tokenizer_encode_plain(const ds_tokenizer *t, const char *text, size_t len, int flags,
                                              const dsi_span *plain, size_t n_plain, int32_t *ids, size_t cap,
                                              size_t *n_out, dsi_err *e, const char *fn) {
    tk_run R;
    memset(&R, 0, sizeof R);
    R.t = t;
    R.al = &t->al;
    R.e = e;
    R.rx.al = &t->al;
    R.plain = plain;
    R.n_plain = plain ? n_plain : 0;
    ds_status st = DS_OK;
    if (t->max_slots) {
        R.rx.slots = dsi_calloc(&t->al, t->max_slots, sizeof *R.rx.slots);
        if (!R.rx.slots) st = dsi_fail(e, DS_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (!st) st = tk_encode(t, text, len, flags, &R);
    if (!st) {
        *n_out = R.n_ids;
        if (R.n_ids > cap) st = dsi_fail(e, DS_ERR_LIMIT, "%s: %zu ids do not fit in %zu", fn, R.n_ids, cap);
        else if (R.n_ids) memcpy(ids, R.ids, R.n_ids * sizeof *ids);
    }
    tk_run_free(&R);
    return st;
}

DS_API ds_status ds_tokenizer_encode(const ds_tokenizer *t, const char *text, size_t len, int flags, int32_t *ids,
                                     size_t cap, size_t *n_out) {
    dsi_err e = {DS_OK, ""};
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!text && len) || (!ids && cap)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_encode: NULL argument");
        return dsi_publish(&e);
    }
    ds_status st = dsi_tokenizer_encode_plain(t, text, len, flags, NULL, 0, ids, cap, n_out, &e, "ds_tokenizer_encode");
    return st ? dsi_publish(&e) : DS_OK;
}

/* ==== Decoding ============================================================ */
/* Writes the lossy UTF-8 form of in[0, n) to out (NULL: only count), each
 * invalid sequence replaced by U+FFFD as String::from_utf8_lossy does. With
 * hold, a valid but unfinished sequence at the end is not converted and its
 * length is returned in *held. Returns the output length. */
static size_t tk_lossy(const uint8_t *in, size_t n, uint8_t *out, bool hold, size_t *held, size_t *n_bad) {
    size_t o = 0, i = 0;
    if (held) *held = 0;
    if (n_bad) *n_bad = 0;
    while (i < n) {
        bool valid, incomplete;
        size_t k = dsi_utf8_lossy_step(in + i, n - i, &valid, &incomplete);
        if (valid) {
            if (out) memcpy(out + o, in + i, k);
            o += k;
        } else if (incomplete && hold && i + k == n) {
            *held = k;
            break;
        } else {
            if (out) memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            if (n_bad) (*n_bad)++;
        }
        i += k;
    }
    return o;
}

/* Copies a result into the caller's buffer: DS_ERR_LIMIT (with the needed
 * length in *len_out) when it does not fit, a NUL after it when room. */
DSI_FUNC ds_status dsi_tokenizer_copy_out(const uint8_t *src, size_t n, char *buf, size_t cap, size_t *len_out,
                                          dsi_err *e, const char *fn) {
    *len_out = n;
    if (n > cap) return dsi_fail(e, DS_ERR_LIMIT, "%s: %zu bytes do not fit in %zu", fn, n, cap);
    if (n) memcpy(buf, src, n);
    if (cap > n) buf[n] = 0;
    return DS_OK;
}

DS_API ds_status ds_tokenizer_decode(const ds_tokenizer *t, const int32_t *ids, size_t n, char *buf, size_t cap,
                                     size_t *len_out) {
    dsi_err e = {DS_OK, ""};
    if (len_out) *len_out = 0;
    if (!t || !len_out || (!ids && n) || (!buf && cap)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_decode: NULL argument");
        return dsi_publish(&e);
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= t->n_ids) {
            dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_decode: id %d at position %zu is outside the vocabulary (0..%u)",
                     (int)ids[i], i, t->n_ids ? t->n_ids - 1 : 0);
            return dsi_publish(&e);
        }
        total += t->dec_len[ids[i]];
    }
    uint8_t *raw = dsi_malloc(&t->al, total ? total : 1);
    if (!raw) {
        dsi_fail(&e, DS_ERR_NOMEM, "ds_tokenizer_decode: out of memory");
        return dsi_publish(&e);
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(raw + o, t->pool.p + t->dec_off[ids[i]], t->dec_len[ids[i]]);
        o += t->dec_len[ids[i]];
    }
    size_t n_bad;
    size_t outlen = tk_lossy(raw, total, NULL, false, NULL, &n_bad);
    ds_status st = DS_OK;
    if (n_bad == 0) st = dsi_tokenizer_copy_out(raw, total, buf, cap, len_out, &e, "ds_tokenizer_decode");
    else {
        uint8_t *fixed = dsi_malloc(&t->al, outlen);
        if (!fixed) st = dsi_fail(&e, DS_ERR_NOMEM, "ds_tokenizer_decode: out of memory");
        else {
            tk_lossy(raw, total, fixed, false, NULL, NULL);
            st = dsi_tokenizer_copy_out(fixed, outlen, buf, cap, len_out, &e, "ds_tokenizer_decode");
            dsi_free(&t->al, fixed);
        }
    }
    dsi_free(&t->al, raw);
    return st ? dsi_publish(&e) : DS_OK;
}

DS_API ds_status ds_tokenizer_decode_stream(const ds_tokenizer *t, ds_detok_state *st_, int32_t id, char *buf,
                                            size_t cap, size_t *len_out) {
    dsi_err e = {DS_OK, ""};
    if (len_out) *len_out = 0;
    if (!t || !st_ || !len_out || (!buf && cap) || st_->n_pending < 0 || st_->n_pending > 3) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_decode_stream: NULL argument or corrupt state");
        return dsi_publish(&e);
    }
    if (id == -1) {
        /* flush: held bytes can no longer complete */
        uint8_t rep[3] = {0xEF, 0xBF, 0xBD};
        ds_status s = dsi_tokenizer_copy_out(rep, st_->n_pending ? 3 : 0, buf, cap, len_out, &e, "ds_tokenizer_decode_stream");
        if (s) return dsi_publish(&e);
        st_->n_pending = 0;
        return DS_OK;
    }
    if (id < 0 || (uint32_t)id >= t->n_ids) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_decode_stream: id %d is outside the vocabulary (0..%u)", (int)id,
                 t->n_ids ? t->n_ids - 1 : 0);
        return dsi_publish(&e);
    }
    size_t np = (size_t)st_->n_pending, tl = t->dec_len[id], total = np + tl;
    uint8_t small[256];
    uint8_t *raw = total <= sizeof small ? small : dsi_malloc(&t->al, total);
    if (!raw) {
        dsi_fail(&e, DS_ERR_NOMEM, "ds_tokenizer_decode_stream: out of memory");
        return dsi_publish(&e);
    }
    memcpy(raw, st_->pending, np);
    memcpy(raw + np, t->pool.p + t->dec_off[id], tl);
    size_t held;
    size_t outlen = tk_lossy(raw, total, NULL, true, &held, NULL);
    ds_status s = DS_OK;
    *len_out = outlen;
    if (outlen > cap) s = dsi_fail(&e, DS_ERR_LIMIT, "ds_tokenizer_decode_stream: %zu bytes do not fit in %zu", outlen, cap);
    else {
        tk_lossy(raw, total, (uint8_t *)buf, true, &held, NULL);
        if (cap > outlen) buf[outlen] = 0;
        memcpy(st_->pending, raw + total - held, held);
        st_->n_pending = (int)held;
    }
    if (raw != small) dsi_free(&t->al, raw);
    return s ? dsi_publish(&e) : DS_OK;
}
DS_API ds_status ds_tokenizer_token_bytes(const ds_tokenizer *t, int32_t id, const char **bytes, size_t *len,
                                          int *flags) {
    dsi_err e = {DS_OK, ""};
    if (bytes) *bytes = "";
    if (len) *len = 0;
    if (flags) *flags = 0;
    if (!t || !bytes || !len) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_token_bytes: NULL argument");
        return dsi_publish(&e);
    }
    if (id < 0 || (uint32_t)id >= t->n_ids) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_token_bytes: id %d is outside the vocabulary (0..%u)", (int)id,
                 t->n_ids ? t->n_ids - 1 : 0);
        return dsi_publish(&e);
    }
    *len = t->dec_len[id];
    if (*len) *bytes = (const char *)t->pool.p + t->dec_off[id];
    if (flags)
        for (uint32_t k = 0; k < t->n_added; k++)
            if (t->added[k].id == id) *flags = DS_TOKEN_ADDED | (t->added[k].special ? DS_TOKEN_SPECIAL : 0);
    return DS_OK;
}

/* ==== For the chat template layer ========================================= */
DSI_FUNC void dsi_tokenizer_chat_source(const ds_tokenizer *t, dsi_chat_source *out) {
    const char *pool = (const char *)t->pool.p;
    out->tpl = t->has_tpl_text ? pool + t->tpl_off : NULL;
    out->tpl_len = t->has_tpl_text ? t->tpl_len : 0;
    out->bos = t->has_bos_text ? pool + t->bos_off : NULL;
    out->bos_len = t->has_bos_text ? t->bos_len : 0;
    out->eos = t->has_eos_text ? pool + t->eos_off : NULL;
    out->eos_len = t->has_eos_text ? t->eos_len : 0;
    out->al = &t->al;
}

/* ==== Test hook =========================================================== */
/* Splits text with one Split pre-tokenizer step (behavior: 0 Isolated,
 * 1 Removed, 2 MergedWithPrevious, 3 MergedWithNext, 4 Contiguous) and
 * writes each piece's byte range [bounds[2i], bounds[2i+1]). For the regex
 * tests; not used by the library. */
DSI_FUNC ds_status dsi_tokenizer_split(const char *pattern, size_t plen, int behavior, bool invert, const char *text,
                                       size_t len, size_t *bounds, size_t cap_pairs, size_t *n_pairs, dsi_err *e) {
    dsi_alloc al;
    ds_status st = dsi_alloc_init(&al, NULL, e);
    if (st) return st;
    *n_pairs = 0;
    if (behavior < 0 || behavior > 4) return dsi_fail(e, DS_ERR_INVALID_ARG, "bad behavior");
    dsi_regex *G = NULL;
    if ((st = dsi_regex_compile(pattern, plen, false, &al, "test pattern", &G, e))) return st;
    tk_run R;
    memset(&R, 0, sizeof R);
    R.al = &al;
    R.e = e;
    R.rx.al = &al;
    size_t *boff = dsi_malloc(&al, (len + 1) * sizeof *boff);
    R.rx.slots = dsi_calloc(&al, dsi_regex_slots(G) + 1, sizeof *R.rx.slots);
    if (!boff || !R.rx.slots || !tk_grow(&al, (void **)&R.cps, &R.cap_cps, len + 1, sizeof *R.cps)) {
        st = dsi_fail(e, DS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = dsi_utf8_decode((const uint8_t *)text + i, len - i, &cp);
        if (!k) { st = dsi_fail(e, DS_ERR_INVALID_ARG, "invalid UTF-8"); goto done; }
        boff[R.n_cps] = i;
        R.cps[R.n_cps++] = cp;
        i += k;
    }
    boff[R.n_cps] = len;
    tk_piece pc = {0, (uint32_t)R.n_cps, 0};
    if ((st = tk_find_regex(&R, G, &pc)) || (st = tk_apply_behavior(&R, &pc, behavior, invert))) goto done;
    for (size_t i = 0; i < R.nb; i++) {
        if (i < cap_pairs) {
            bounds[2 * i] = boff[R.pb[i].off];
            bounds[2 * i + 1] = boff[R.pb[i].off + R.pb[i].len];
        }
    }
    *n_pairs = R.nb;
done:
    dsi_free(&al, boff);
    tk_run_free(&R);
    dsi_regex_free(&al, G);
    return st;
}
