/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_tokenizer.c — libFuzzer target for the tokenizer. The first input
 * byte picks the mode (mod 6); the rest is the data:
 *
 *   0  text encoded with the DeepSeek-V3 tokenizer (loaded once); valid
 *      UTF-8 must encode, decode back to itself and stream to the same
 *      text; invalid UTF-8 must fail with DS_ERR_INVALID_ARG
 *   1  the same with DS_TOKENIZE_NO_SPECIAL | DS_TOKENIZE_BOS, and with the
 *      V2-style and GPT-2-style pre-tokenizers (tests/tok/)
 *   2  little-endian 32-bit ids: decode and streaming decode agree, every
 *      streamed piece is whole UTF-8, out-of-range ids are refused
 *   3  tokenizer.json text (tokenizer_config.json after a NUL, if any):
 *      built, then used on a few strings, and built again with an
 *      allocator that fails one allocation (leaks show up in LeakSanitizer)
 *   4  a regex and a text separated by a NUL: one Split step
 *   5  a chat (contents separated by NULs, roles from their first byte)
 *      through ds_tokenizer_encode_chat with the V3 template: it decodes to
 *      the rendered text; DS_CHAT_SPECIAL_IN_CONTENT gives the ids of
 *      encode(rendered text); without a '<' in the contents both agree
 *
 * The V3 tokenizer is read from $DS_TOKENIZERS/deepseek-v3 (default
 * ../shared/tokenizers); without it mode 0 uses the V2-style tokenizer.
 *
 *   clang -std=c11 -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_tokenizer.c $(LIB_SRCS) -lsodium -lm -lpthread
 *   ./fuzz_tokenizer -max_len=4096 tests/fuzz/corpus/tokenizer
 */
#include "deepseek_impl/internal.h"

#include <stdio.h>
#include <stdlib.h>

DSI_FUNC ds_status dsi_tokenizer_split(const char *pattern, size_t plen, int behavior, bool invert, const char *text,
                                       size_t len, size_t *bounds, size_t cap_pairs, size_t *n_pairs, dsi_err *e);

#define F_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static ds_tokenizer *f_v3, *f_v2, *f_gpt2;

static char *f_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[n] = 0; *len = (size_t)n; }
    return b;
}

static ds_tokenizer *f_load(const char *dir) {
    char p[1024];
    size_t n = 0, cn = 0;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    char *j = f_read(p, &n);
    if (!j) return NULL;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    char *c = f_read(p, &cn);
    ds_tokenizer *t = NULL;
    if (ds_tokenizer_new(&t, j, n, c, cn, NULL) != DS_OK) t = NULL;
    free(j);
    free(c);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *root = getenv("DS_TOKENIZERS");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/deepseek-v3", root && *root ? root : "../shared/tokenizers");
    f_v3 = f_load(dir);
    f_v2 = f_load("tests/tok/v2style");
    f_gpt2 = f_load("tests/tok/gpt2style");
    if (!f_v3) f_v3 = f_v2;
    if (!f_v3) {
        fprintf(stderr, "fuzz_tokenizer: no tokenizer found (run from the repository root)\n");
        abort();
    }
    return 0;
}

static bool f_utf8_ok(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80) return false;
        if (k == 3 && ((c == 0xE0 && p[i + 1] < 0xA0) || (c == 0xED && p[i + 1] > 0x9F))) return false;
        if (k == 4 && ((c == 0xF0 && p[i + 1] < 0x90) || (c == 0xF4 && p[i + 1] > 0x8F))) return false;
        i += k;
    }
    return true;
}

/* Streams ids; the pieces and the flush must equal want. */
static void f_stream(const ds_tokenizer *t, const int32_t *ids, size_t n, const char *want, size_t want_len) {
    ds_detok_state st = {{0}, 0};
    size_t pos = 0;
    char piece[1 << 14];
    for (size_t i = 0; i <= n; i++) {
        size_t len = 0;
        ds_status s = ds_tokenizer_decode_stream(t, &st, i < n ? ids[i] : -1, piece, sizeof piece, &len);
        if (s == DS_ERR_LIMIT) return;   /* an enormous added token: nothing to compare */
        F_ASSERT(s == DS_OK);
        F_ASSERT(f_utf8_ok((const uint8_t *)piece, len));
        F_ASSERT(pos + len <= want_len && memcmp(want + pos, piece, len) == 0);
        pos += len;
    }
    F_ASSERT(pos == want_len);
}

/* Encodes, and when the tokenizer keeps every byte, decodes back. */
static void f_encode(const ds_tokenizer *t, const uint8_t *d, size_t n, int flags, bool roundtrip) {
    size_t cap = n * 2 + 16, got = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    ds_status s = ds_tokenizer_encode(t, (const char *)d, n, flags, ids, cap, &got);
    if (!f_utf8_ok(d, n)) {
        F_ASSERT(s == DS_ERR_INVALID_ARG);
        free(ids);
        return;
    }
    if (s == DS_ERR_LIMIT && got > cap) {   /* cannot happen for byte-level BPE, but be exact */
        free(ids);
        return;
    }
    F_ASSERT(s == DS_OK || s == DS_ERR_LIMIT);   /* LIMIT: regex step limit on pathological text */
    if (s == DS_OK) {
        size_t cnt = 0;
        F_ASSERT(ds_tokenizer_encode(t, (const char *)d, n, flags, NULL, 0, &cnt) == (got ? DS_ERR_LIMIT : DS_OK));
        F_ASSERT(cnt == got);
        size_t len = 0, dcap = n * 3 + 64;
        char *out = malloc(dcap);
        F_ASSERT(ds_tokenizer_decode(t, ids, got, out, dcap, &len) == DS_OK);
        F_ASSERT(f_utf8_ok((const uint8_t *)out, len));
        if (roundtrip && !(flags & DS_TOKENIZE_BOS)) F_ASSERT(len == n && memcmp(out, d, n) == 0);
        f_stream(t, ids, got, out, len);
        free(out);
    }
    free(ids);
}

typedef struct f_alloc {
    long calls, fail_at;
} f_alloc;
static void *f_malloc(size_t n, void *u) {
    f_alloc *a = u;
    if (++a->calls == a->fail_at) return NULL;
    return malloc(n);
}
static void *f_realloc(void *p, size_t n, void *u) {
    f_alloc *a = u;
    if (++a->calls == a->fail_at) return NULL;
    return realloc(p, n);
}
static void f_free(void *p, void *u) {
    (void)u;
    free(p);
}

static void f_json(const uint8_t *d, size_t n) {
    const uint8_t *nul = memchr(d, 0, n);
    size_t jl = nul ? (size_t)(nul - d) : n;
    const char *cfg = nul ? (const char *)nul + 1 : NULL;
    size_t cl = nul ? n - jl - 1 : 0;
    ds_tokenizer *t = NULL;
    ds_status s = ds_tokenizer_new(&t, (const char *)d, jl, cfg, cl, NULL);
    if (s == DS_OK) {
        static const char *const samples[] = {
            "Hello, world! 12345 \xE4\xBD\xA0\xE5\xA5\xBD  \n\n x",
            "<\xEF\xBD\x9CUser\xEF\xBD\x9C>hi<|EOT|>", "", "a", "   ", "\xF0\x9F\x98\x80 caf\xC3\xA9"};
        for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
            f_encode(t, (const uint8_t *)samples[i], strlen(samples[i]), (int)i & 3, false);
        ds_chat_message m[2] = {{"system", "s"}, {"user", "u"}};
        char buf[256];
        size_t len;
        s = ds_tokenizer_apply_chat_template(t, m, 2, 1, buf, sizeof buf, &len);
        F_ASSERT(s == DS_OK || s == DS_ERR_UNSUPPORTED || s == DS_ERR_LIMIT);
        int32_t ids[3] = {0, ds_tokenizer_vocab_size(t) - 1, ds_tokenizer_vocab_size(t)};
        s = ds_tokenizer_decode(t, ids, 3, buf, sizeof buf, &len);
        F_ASSERT(s == DS_OK || s == DS_ERR_INVALID_ARG || s == DS_ERR_LIMIT);
        ds_tokenizer_free(t);
    }
    /* again, failing one allocation */
    f_alloc fa = {0, 1 + (long)(n % 97)};
    ds_allocator al = {f_malloc, f_realloc, f_free, &fa};
    t = NULL;
    s = ds_tokenizer_new(&t, (const char *)d, jl, cfg, cl, &al);
    F_ASSERT((s == DS_OK) == (t != NULL));
    ds_tokenizer_free(t);
}

static void f_regex(const uint8_t *d, size_t n) {
    const uint8_t *nul = memchr(d, 0, n);
    if (!nul) return;
    size_t pl = (size_t)(nul - d);
    const char *text = (const char *)nul + 1;
    size_t tl = n - pl - 1;
    if (!f_utf8_ok(nul + 1, tl)) return;
    size_t bounds[2 * 4096], np = 0;
    dsi_err e = {DS_OK, ""};
    int behavior = pl ? d[0] % 5 : 0;
    ds_status s = dsi_tokenizer_split((const char *)d, pl, behavior, pl > 1 && (d[1] & 1), text, tl, bounds, 4096, &np, &e);
    if (s != DS_OK) return;
    /* pieces are in order, inside the text, on character boundaries */
    size_t last = 0;
    for (size_t i = 0; i < np && i < 4096; i++) {
        F_ASSERT(bounds[2 * i] >= last && bounds[2 * i] < bounds[2 * i + 1] && bounds[2 * i + 1] <= tl);
        F_ASSERT(f_utf8_ok((const uint8_t *)text + bounds[2 * i], bounds[2 * i + 1] - bounds[2 * i]));
        last = bounds[2 * i + 1];
    }
    if (behavior == 0 && np <= 4096) F_ASSERT(last == tl || np == 0);
}

static void f_chat(const ds_tokenizer *t, const uint8_t *d, size_t n) {
    static const char *const roles[3] = {"system", "user", "assistant"};
    char *copy = malloc(n + 1);
    memcpy(copy, d, n);
    copy[n] = 0;
    ds_chat_message m[8];
    size_t nm = 0;
    bool lt = false;
    for (char *p = copy; nm < 8 && p <= copy + n; p += strlen(p) + 1) {
        m[nm].role = roles[(unsigned char)p[0] % 3];
        m[nm++].content = p;
        lt = lt || strchr(p, '<');
    }
    size_t cap = 4 * n + 64, na = 0, nb = 0, nc = 0, tl = 0, dl = 0;
    int32_t *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b), *c = malloc(cap * sizeof *c);
    char *text = malloc(4 * n + 256), *dec = malloc(4 * n + 256);
    ds_status s = ds_tokenizer_apply_chat_template(t, m, nm, 1, text, 4 * n + 256, &tl);
    if (s == DS_OK) {
        ds_status sb = ds_tokenizer_encode_chat(t, m, nm, 1, 0, b, cap, &nb);
        ds_status sc = ds_tokenizer_encode_chat(t, m, nm, 1, DS_CHAT_SPECIAL_IN_CONTENT, c, cap, &nc);
        ds_status sa = ds_tokenizer_encode(t, text, tl, 0, a, cap, &na);
        if (!f_utf8_ok((const uint8_t *)text, tl)) F_ASSERT(sb == DS_ERR_INVALID_ARG && sc == DS_ERR_INVALID_ARG);
        else if (sa == DS_OK && sb == DS_OK && sc == DS_OK) {   /* else the regex step limit */
            F_ASSERT(nc == na && memcmp(a, c, na * sizeof *a) == 0);
            if (!lt) F_ASSERT(nb == na && memcmp(a, b, na * sizeof *a) == 0);
            F_ASSERT(ds_tokenizer_decode(t, b, nb, dec, 4 * n + 256, &dl) == DS_OK);
            F_ASSERT(dl == tl && memcmp(dec, text, tl) == 0);
        }
    }
    free(a);
    free(b);
    free(c);
    free(text);
    free(dec);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0: f_encode(f_v3, d, n, 0, true); break;
    case 1:
        f_encode(f_v3, d, n, DS_TOKENIZE_NO_SPECIAL | DS_TOKENIZE_BOS, true);
        if (f_v2) f_encode(f_v2, d, n, 0, true);
        if (f_gpt2) f_encode(f_gpt2, d, n, 0, false);
        break;
    case 2: {
        size_t k = n / 4;
        int32_t *ids = malloc((k ? k : 1) * sizeof *ids);
        int vs = ds_tokenizer_vocab_size(f_v3);
        bool in_range = true;
        for (size_t i = 0; i < k; i++) {
            uint32_t v = (uint32_t)d[4 * i] | ((uint32_t)d[4 * i + 1] << 8) | ((uint32_t)d[4 * i + 2] << 16) |
                         ((uint32_t)d[4 * i + 3] << 24);
            ids[i] = (int32_t)(v % (uint32_t)(vs + 4));
            if (ids[i] >= vs) in_range = false;
        }
        size_t cap = k * 64 + 64, len = 0;
        char *out = malloc(cap);
        ds_status s = ds_tokenizer_decode(f_v3, ids, k, out, cap, &len);
        if (!in_range) F_ASSERT(s == DS_ERR_INVALID_ARG);
        else if (s == DS_OK) {
            F_ASSERT(f_utf8_ok((const uint8_t *)out, len));
            f_stream(f_v3, ids, k, out, len);
        } else F_ASSERT(s == DS_ERR_LIMIT);
        free(out);
        free(ids);
        break;
    }
    case 3: f_json(d, n); break;
    case 4: f_regex(d, n); break;
    case 5: f_chat(f_v3, d, n); break;
    }
    return 0;
}
