/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_tokenizer.c — the tokenizer against the reference (`tokenizers` from
 * PyPI, goldens made by tests/tok/make_corpus.py and make_chat_goldens.py):
 *
 *   tokenizer-1  ../shared/tokenizers/deepseek-v3/golden.jsonl, exact ids
 *   tokenizer-2  tests/tok/corpus_v3.jsonl (>= 2000 strings), exact ids,
 *                decode round trip, streaming decode
 *   tokenizer-3  decode goldens (random ids, invalid UTF-8 -> U+FFFD)
 *   tokenizer-4  the tiny generated tokenizer and the V2-style and
 *                GPT-2-style pre-tokenizers (committed tokenizer.json files)
 *   tokenizer-5  regex engine: Split cases against the reference's pieces
 *   tokenizer-6  chat templates (V3 golden with ids; V2, V2.5, R1, V3)
 *   tokenizer-7  errors and buffer rules
 *   tokenizer-8  allocation failures (fail the Nth allocation, for all N)
 *   tokenizer-9  chat contents are text (ds_tokenizer_encode_chat): the V3
 *                goldens' ids; every added token of the V2-style and V3
 *                tokenizers (with R1's think tokens) in a system, user and
 *                assistant message of the V2, V2.5, V3 and R1 templates is
 *                no token; the old ids where no content holds token text
 *   tokenizer-10 the ids written in added_tokens (absurd, negative, repeated)
 *                and ids beyond a model's vocabulary (dsi_tokenizer_check_vocab)
 *   INFO line    encode speed (MB/s) on ~1 MB of text
 *
 * Data: $DS_TOKENIZERS (default ../shared/tokenizers; skipped when absent)
 * and $DS_TESTDATA (the generated checkpoints, for the tiny tokenizer).
 */
#include "../deepseek_impl/internal.h"
#include "test.h"
#include "fail_alloc.h"

#include <sodium.h>
#include <time.h>

/* Test hook defined in deepseek_impl/tokenizer.c. */
DSI_FUNC ds_status dsi_tokenizer_split(const char *pattern, size_t plen, int behavior, bool invert, const char *text,
                                       size_t len, size_t *bounds, size_t cap_pairs, size_t *n_pairs, dsi_err *e);

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 4096 > cap) {
            cap *= 2;
            b = realloc(b, cap);
        }
        size_t k = fread(b + n, 1, cap - n - 1, f);
        if (k == 0) break;
        n += k;
    }
    fclose(f);
    b[n] = 0;
    *len = n;
    return b;
}

static const char *tok_root(void) {
    const char *d = getenv("DS_TOKENIZERS");
    return d && *d ? d : "../shared/tokenizers";
}

/* Loads dir/tokenizer.json and, if present, dir/tokenizer_config.json. */
static ds_tokenizer *load_dir(const char *dir, bool with_config) {
    char p[1024];
    size_t n, cn = 0;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    char *j = read_file(p, &n);
    if (!j) return NULL;
    char *c = NULL;
    if (with_config) {
        snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
        c = read_file(p, &cn);
    }
    ds_tokenizer *t = NULL;
    ds_status s = ds_tokenizer_new(&t, j, n, c, cn, NULL);
    if (s) printf("load %s: %s\n", dir, ds_last_error());
    free(j);
    free(c);
    return t;
}

/* Prints text with control and non-ASCII bytes escaped (failure messages). */
static void show(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n && i < 160; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') putchar(c);
        else printf("\\x%02x", c);
    }
    printf(n > 160 ? "...\"" : "\"");
}

static void show_ids(const int32_t *ids, size_t n) {
    printf("[");
    for (size_t i = 0; i < n && i < 24; i++) printf("%s%d", i ? "," : "", (int)ids[i]);
    printf(n > 24 ? ",...]" : "]");
}

/* Iterates over the JSON lines of a file. */
typedef struct jl {
    char *buf, *p;
    size_t len;
    dsi_json_doc *doc;
    dsi_alloc al;
} jl;

static bool jl_open(jl *J, const char *path) {
    memset(J, 0, sizeof *J);
    J->buf = read_file(path, &J->len);
    J->p = J->buf;
    dsi_err e;
    dsi_alloc_init(&J->al, NULL, &e);
    return J->buf != NULL;
}

static const dsi_json *jl_next(jl *J) {
    dsi_json_free(J->doc);
    J->doc = NULL;
    while (J->p && J->p < J->buf + J->len) {
        char *nl = memchr(J->p, '\n', (size_t)(J->buf + J->len - J->p));
        size_t n = nl ? (size_t)(nl - J->p) : (size_t)(J->buf + J->len - J->p);
        char *line = J->p;
        J->p = nl ? nl + 1 : NULL;
        if (n == 0) continue;
        dsi_err e;
        if (dsi_json_parse(line, n, &J->al, &J->doc, &e) != DS_OK) {
            printf("bad JSON line: %s\n", e.msg);
            continue;
        }
        return dsi_json_root(J->doc);
    }
    return NULL;
}

static void jl_close(jl *J) {
    dsi_json_free(J->doc);
    free(J->buf);
}

static size_t json_ids(const dsi_json *arr, int32_t *out, size_t cap) {
    size_t n = 0;
    for (uint32_t i = 0; arr && i < arr->n && n < cap; i++) out[n++] = (int32_t)arr->kids[i].i;
    return n;
}

static bool utf8_ok(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i], k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return false;
        for (unsigned j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

/* Streams ids through decode_stream; checks every piece is whole UTF-8 and
 * that the pieces (plus the flush) equal the one-shot decode. */
static bool stream_matches(const ds_tokenizer *t, const int32_t *ids, size_t n, const char *want, size_t want_len) {
    ds_detok_state st = {{0}, 0};
    char *acc = malloc(want_len + 64);
    size_t al = 0;
    bool ok = true;
    char piece[4096];
    for (size_t i = 0; i <= n && ok; i++) {
        size_t len;
        if (ds_tokenizer_decode_stream(t, &st, i < n ? ids[i] : -1, piece, sizeof piece, &len) != DS_OK) { ok = false; break; }
        if (!utf8_ok(piece, len) || al + len > want_len) { ok = false; break; }
        memcpy(acc + al, piece, len);
        al += len;
    }
    ok = ok && al == want_len && memcmp(acc, want, al) == 0;
    free(acc);
    return ok;
}

/* Encodes every {"text", "ids"} line and compares. Returns lines checked. */
static int check_corpus(const char *case_id, const ds_tokenizer *t, const char *path, bool roundtrip, int *bad_out) {
    jl J;
    if (!jl_open(&J, path)) {
        T_CHECK(case_id, 0, "cannot read %s", path);
        return 0;
    }
    int total = 0, bad = 0, bad_rt = 0, bad_stream = 0;
    size_t cap = 1 << 16;
    int32_t *got = malloc(cap * sizeof *got), *want = malloc(cap * sizeof *want);
    char *dec = malloc(1 << 20);
    const dsi_json *r;
    while ((r = jl_next(&J))) {
        const dsi_json *text = dsi_json_get(r, "text"), *ids = dsi_json_get(r, "ids");
        if (!text || !ids) continue;
        bool ns = false;
        dsi_json_get_bool(r, "no_special", &ns);
        size_t nw = json_ids(ids, want, cap), ng = 0;
        total++;
        ds_status s = ds_tokenizer_encode(t, text->str, text->n, ns ? DS_TOKENIZE_NO_SPECIAL : 0, got, cap, &ng);
        if (s != DS_OK || ng != nw || memcmp(got, want, nw * sizeof *got) != 0) {
            if (bad++ < 5) {
                printf("  %s mismatch on ", case_id);
                show(text->str, text->n);
                printf("%s\n    want ", ns ? " (no_special)" : "");
                show_ids(want, nw);
                printf("\n    got  ");
                show_ids(got, ng);
                printf(" status %d %s\n", s, s ? ds_last_error() : "");
            }
            continue;
        }
        if (!roundtrip) continue;
        size_t dl;
        if (ds_tokenizer_decode(t, got, ng, dec, 1 << 20, &dl) != DS_OK || dl != text->n ||
            memcmp(dec, text->str, dl) != 0) {
            if (bad_rt++ < 3) {
                printf("  %s decode round trip differs on ", case_id);
                show(text->str, text->n);
                printf("\n");
            }
            continue;
        }
        if (!stream_matches(t, got, ng, text->str, text->n) && bad_stream++ < 3) {
            printf("  %s streaming decode differs on ", case_id);
            show(text->str, text->n);
            printf("\n");
        }
    }
    printf("INFO %s: %d/%d lines give the reference's ids (%s)\n", case_id, total - bad, total, path);
    if (roundtrip)
        T_CHECK(case_id, bad_rt == 0 && bad_stream == 0, "%d decode round trips and %d streams differ", bad_rt, bad_stream);
    free(got);
    free(want);
    free(dec);
    jl_close(&J);
    *bad_out = bad;
    return total;
}

/* ---- speed --------------------------------------------------------------- */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench(const ds_tokenizer *t, const char *corpus_path) {
    static const char *const words[] = {
        "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
        "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they",
        "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when",
        "will", "would", "who", "so", "no", "model", "expert", "routing", "tokenizer", "attention", "layer",
        "memory", "compressed", "latent", "cache", "sealed", "container", "decrypt", "segments", "prefetch"};
    size_t target = 1 << 20;
    char *en = malloc(target + 64);
    size_t n = 0;
    uint32_t x = 12345;
    while (n < target) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 16) % (sizeof words / sizeof words[0])];
        size_t k = strlen(w);
        memcpy(en + n, w, k);
        n += k;
        x = x * 1103515245u + 12345u;
        uint32_t r = (x >> 16) % 100;
        en[n++] = r < 6 ? ',' : r < 10 ? '.' : r < 11 ? '\n' : ' ';
        if (r < 10) en[n++] = ' ';
        if (r >= 97) { n += (size_t)snprintf(en + n, 16, "%u ", x % 100000); }
    }
    size_t en_len = n;
    /* mixed: the corpus texts, repeated to ~1 MB */
    char *mix = malloc(target + (1 << 16));
    size_t ml = 0;
    jl J;
    if (jl_open(&J, corpus_path)) {
        const dsi_json *r;
        while (ml < target) {
            bool any = false;
            J.p = J.buf;
            while ((r = jl_next(&J)) && ml < target) {
                const dsi_json *text = dsi_json_get(r, "text");
                if (!text || text->n > (1 << 15)) continue;
                memcpy(mix + ml, text->str, text->n);
                ml += text->n;
                mix[ml++] = '\n';
                any = true;
            }
            if (!any) break;
        }
        jl_close(&J);
    }
    size_t cap = 1 << 20;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *names[2] = {"English", "mixed-script corpus"};
    const char *bufs[2] = {en, mix};
    size_t lens[2] = {en_len, ml};
    for (int k = 0; k < 2; k++) {
        if (!lens[k]) continue;
        size_t nid = 0;
        double best = 1e9;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now_s();
            ds_status s = ds_tokenizer_encode(t, bufs[k], lens[k], 0, ids, cap, &nid);
            double dt = now_s() - t0;
            if (s != DS_OK) { printf("bench: %s\n", ds_last_error()); break; }
            if (dt < best) best = dt;
        }
        printf("INFO tokenizer encode speed: %.2f MB of %s text -> %zu ids in %.3f s = %.1f MB/s (one core)\n",
               lens[k] / 1e6, names[k], nid, best, lens[k] / 1e6 / best);
    }
    free(ids);
    free(en);
    free(mix);
}

/* ---- regex cases --------------------------------------------------------- */
static void test_regex(const char *path) {
    jl J;
    if (!jl_open(&J, path)) {
        T_CHECK("tokenizer-5.0", 0, "cannot read %s", path);
        return;
    }
    static const char *const beh[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    int total = 0, bad = 0;
    const dsi_json *r;
    while ((r = jl_next(&J))) {
        const char *pat = "", *bs = "";
        size_t pl = 0, bl = 0;
        bool inv = false;
        if (dsi_json_get_str(r, "pattern", &pat, &pl) != 1 || dsi_json_get_str(r, "behavior", &bs, &bl) != 1) continue;
        dsi_json_get_bool(r, "invert", &inv);
        const dsi_json *text = dsi_json_get(r, "text"), *pieces = dsi_json_get(r, "pieces");
        int b = 0;
        for (int i = 0; i < 5; i++)
            if (strcmp(bs, beh[i]) == 0) b = i;
        size_t bounds[512], np = 0;
        dsi_err e = {DS_OK, ""};
        ds_status s = dsi_tokenizer_split(pat, pl, b, inv, text->str, text->n, bounds, 256, &np, &e);
        bool ok = s == DS_OK && np == pieces->n;
        for (size_t i = 0; ok && i < np; i++) {
            const dsi_json *want = &pieces->kids[i];
            size_t len = bounds[2 * i + 1] - bounds[2 * i];
            ok = len == want->n && memcmp(text->str + bounds[2 * i], want->str, len) == 0;
        }
        total++;
        if (!ok && bad++ < 8) {
            printf("  tokenizer-5 /%s/ %s%s on ", pat, bs, inv ? " inverted" : "");
            show(text->str, text->n);
            printf(": status %d %s; got", s, e.msg);
            for (size_t i = 0; i < np && i < 16; i++) {
                printf(" ");
                show(text->str + bounds[2 * i], bounds[2 * i + 1] - bounds[2 * i]);
            }
            printf(" want %u pieces\n", pieces->n);
        }
    }
    T_CHECK("tokenizer-5.1", bad == 0 && total > 50, "%d of %d regex split cases differ", bad, total);
    jl_close(&J);

    /* patterns the reference rejects or that we do not support */
    static const struct { const char *pat; ds_status want; } errs[] = {
        {"(", DS_ERR_JSON}, {")", DS_ERR_JSON}, {"*a", DS_ERR_JSON}, {"[a", DS_ERR_JSON}, {"[z-a]", DS_ERR_JSON},
        {"\\", DS_ERR_JSON}, {"a{1,100001}", DS_ERR_LIMIT}, {"(?i)a", DS_ERR_UNSUPPORTED},
        {"\\p{Greek}", DS_ERR_UNSUPPORTED}, {"(a)\\1", DS_ERR_UNSUPPORTED}, {"[[:alpha:]]", DS_ERR_UNSUPPORTED},
        {"(?<=a+)b", DS_ERR_UNSUPPORTED}, {"[\\d-z]", DS_ERR_JSON},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        size_t bounds[8], np;
        dsi_err e = {DS_OK, ""};
        ds_status s = dsi_tokenizer_split(errs[i].pat, strlen(errs[i].pat), 0, false, "ab", 2, bounds, 4, &np, &e);
        T_CHECK("tokenizer-5.2", s == errs[i].want, "pattern %s: status %d (%s), want %d", errs[i].pat, s, e.msg,
                errs[i].want);
    }
}

/* ---- chat templates ------------------------------------------------------ */
static ds_tokenizer *with_config(const char *tok_json, size_t tok_len, const char *bos, const char *eos,
                                 const char *tpl, size_t tpl_len) {
    dsi_alloc al;
    dsi_err e;
    dsi_alloc_init(&al, NULL, &e);
    dsi_buf b;
    dsi_buf_init(&b, &al);
    dsi_buf_put(&b, "{\"bos_token\":", 13);
    dsi_json_write_string(&b, bos, strlen(bos));
    dsi_buf_put(&b, ",\"eos_token\":{\"content\":", 24);
    dsi_json_write_string(&b, eos, strlen(eos));
    dsi_buf_put(&b, "},\"chat_template\":", 18);
    dsi_json_write_string(&b, tpl, tpl_len);
    dsi_buf_put(&b, "}", 1);
    ds_tokenizer *t = NULL;
    if (ds_tokenizer_new(&t, tok_json, tok_len, (const char *)b.data, b.len, NULL) != DS_OK)
        printf("chat config: %s\n", ds_last_error());
    dsi_buf_free(&b);
    return t;
}

static bool render(const ds_tokenizer *t, const dsi_json *msgs, bool gen, char *out, size_t cap, size_t *len,
                   ds_status *st) {
    ds_chat_message m[32];
    size_t n = 0;
    for (uint32_t i = 0; i < msgs->n && n < 32; i++) {
        const char *role = NULL, *content = NULL;
        dsi_json_get_str(&msgs->kids[i], "role", &role, NULL);
        dsi_json_get_str(&msgs->kids[i], "content", &content, NULL);
        m[n].role = role;
        m[n].content = content;
        n++;
    }
    *st = ds_tokenizer_apply_chat_template(t, m, n, gen, out, cap, len);
    return *st == DS_OK;
}

static void test_chat(const ds_tokenizer *v3) {
    char out[8192];
    size_t len;
    ds_status st;
    /* V3 golden: text and ids (the rendered text already holds the BOS) */
    char p[1024];
    snprintf(p, sizeof p, "%s/deepseek-v3/chat_template_golden.jsonl", tok_root());
    jl J;
    if (v3 && jl_open(&J, p)) {
        int total = 0, bad = 0;
        const dsi_json *r;
        while ((r = jl_next(&J))) {
            bool gen = false;
            dsi_json_get_bool(r, "add_generation_prompt", &gen);
            const dsi_json *text = dsi_json_get(r, "text"), *ids = dsi_json_get(r, "ids");
            total++;
            int32_t want[4096], got[4096];
            size_t nw = json_ids(ids, want, 4096), ng = 0;
            bool ok = render(v3, dsi_json_get(r, "messages"), gen, out, sizeof out, &len, &st) && len == text->n &&
                      memcmp(out, text->str, len) == 0;
            ok = ok && ds_tokenizer_encode(v3, out, len, 0, got, 4096, &ng) == DS_OK && ng == nw &&
                 memcmp(got, want, nw * sizeof *got) == 0;
            if (!ok && bad++ < 3) {
                printf("  tokenizer-6.1 V3 chat golden %d: ", total);
                show(out, len);
                printf("\n");
            }
        }
        T_CHECK("tokenizer-6.1", bad == 0 && total > 0, "%d of %d V3 chat goldens differ", bad, total);
        jl_close(&J);
    } else {
        T_SKIP("tokenizer-6.1", "no DeepSeek-V3 tokenizer ($DS_TOKENIZERS)");
    }

    /* the families, rendered by Jinja (tests/tok/make_chat_goldens.py) */
    size_t tl, cl;
    char *tok = read_file("tests/tok/v2style/tokenizer.json", &tl);
    char *tpls = read_file("tests/tok/chat_templates.json", &cl);
    if (!tok || !tpls || !jl_open(&J, "tests/tok/chat_golden.jsonl")) {
        T_CHECK("tokenizer-6.2", 0, "cannot read tests/tok chat files");
        free(tok);
        free(tpls);
        return;
    }
    dsi_alloc al;
    dsi_err e;
    dsi_alloc_init(&al, NULL, &e);
    dsi_json_doc *tdoc = NULL;
    dsi_json_parse(tpls, cl, &al, &tdoc, &e);
    const dsi_json *troot = dsi_json_root(tdoc);
    int total = 0, bad = 0;
    const dsi_json *r;
    while ((r = jl_next(&J))) {
        const char *fam = "", *bos = "", *eos = "";
        size_t fl;
        dsi_json_get_str(r, "family", &fam, &fl);
        dsi_json_get_str(r, "bos", &bos, NULL);
        dsi_json_get_str(r, "eos", &eos, NULL);
        const dsi_json *tpl = dsi_json_get(troot, fam);
        ds_tokenizer *t = tpl ? with_config(tok, tl, bos, eos, tpl->str, tpl->n) : NULL;
        bool gen = false;
        dsi_json_get_bool(r, "add_generation_prompt", &gen);
        const dsi_json *text = dsi_json_get(r, "text");
        total++;
        bool ok = t && render(t, dsi_json_get(r, "messages"), gen, out, sizeof out, &len, &st) && len == text->n &&
                  memcmp(out, text->str, len) == 0;
        if (!ok && bad++ < 5) {
            printf("  tokenizer-6.2 %s: got ", fam);
            show(out, t ? len : 0);
            printf("\n    want ");
            show(text->str, text->n);
            printf("\n");
        }
        ds_tokenizer_free(t);
    }
    printf("INFO chat templates: %d/%d Jinja-rendered goldens match\n", total - bad, total);
    T_CHECK("tokenizer-6.2", bad == 0 && total >= 20, "%d of %d chat goldens differ", bad, total);
    jl_close(&J);

    /* roles other than system/user/assistant; unknown templates; buffer */
    const dsi_json *v3tpl = dsi_json_get(troot, "v3");
    ds_tokenizer *t = with_config(tok, tl, "<s>", "</s>", v3tpl->str, v3tpl->n);
    ds_chat_message tool[] = {{"user", "hi"}, {"tool", "{}"}};
    st = ds_tokenizer_apply_chat_template(t, tool, 2, 1, out, sizeof out, &len);
    T_STATUS("tokenizer-6.3", st, DS_ERR_UNSUPPORTED, ds_last_error());
    ds_chat_message one[] = {{"user", "hi"}};
    st = ds_tokenizer_apply_chat_template(t, one, 1, 1, out, 3, &len);
    T_CHECK("tokenizer-6.4", st == DS_ERR_LIMIT && len == strlen("<s><\xEF\xBD\x9CUser\xEF\xBD\x9C>hi<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"),
            "small buffer: status %d len %zu", st, len);
    ds_tokenizer_free(t);
    t = with_config(tok, tl, "<s>", "</s>", "{{ messages }}", 14);
    st = ds_tokenizer_apply_chat_template(t, one, 1, 1, out, sizeof out, &len);
    T_STATUS("tokenizer-6.5", st, DS_ERR_UNSUPPORTED, ds_last_error());
    ds_tokenizer_free(t);
    dsi_json_free(tdoc);
    free(tok);
    free(tpls);
}

/* ---- chat contents are text (ds_tokenizer_encode_chat) ------------------- */
/* A tokenizer for the content checks, with the texts and ids of its added
 * tokens (every one of which holds a '<': see chat_sanitize). */
typedef struct chat_tok {
    const char *name;
    ds_tokenizer *t;
    char **text;
    int32_t *id;
    size_t n;
} chat_tok;

#define CT_CAP 16384

/* The tokenizer JSON with R1's two reasoning tokens added ("<think>" and
 * "</think>", added tokens that are not special, as in the R1 release), so
 * that every family's template meets every token its model knows. */
static char *with_think(const char *tok, size_t tl, int first_id, size_t *out_len) {
    /* ids of their own (first_id, first_id + 1), past the tokenizer's: the
     * loader refuses an added-token id written twice */
    char add[512];
    snprintf(add, sizeof add,
             "{\"id\":%d,\"content\":\"<think>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
             "\"normalized\":true,\"special\":false},"
             "{\"id\":%d,\"content\":\"</think>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
             "\"normalized\":true,\"special\":false},",
             first_id, first_id + 1);
    const char *at = strstr(tok, "\"added_tokens\":[");
    if (!at) return NULL;
    size_t k = (size_t)(at - tok) + strlen("\"added_tokens\":[");
    size_t al = strlen(add);
    char *s = malloc(tl + al + 1);
    memcpy(s, tok, k);
    memcpy(s + k, add, al);
    memcpy(s + k + al, tok + k, tl - k);
    *out_len = tl + al;
    s[*out_len] = 0;
    return s;
}

/* Builds the tokenizer (template tpl) and lists its added tokens. */
static bool chat_tok_make(chat_tok *T, const char *name, const char *tok, size_t tl, const dsi_json *tpl) {
    memset(T, 0, sizeof *T);
    T->name = name;
    T->t = with_config(tok, tl, "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                       "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", tpl->str, tpl->n);
    dsi_alloc al;
    dsi_err e;
    dsi_alloc_init(&al, NULL, &e);
    dsi_json_doc *doc = NULL;
    if (!T->t || dsi_json_parse(tok, tl, &al, &doc, &e) != DS_OK) return false;
    const dsi_json *arr = dsi_json_get(dsi_json_root(doc), "added_tokens");
    bool ok = arr && arr->n > 0;
    T->text = calloc(arr ? arr->n : 1, sizeof *T->text);
    T->id = calloc(arr ? arr->n : 1, sizeof *T->id);
    for (uint32_t i = 0; ok && i < arr->n; i++) {
        const char *c = NULL;
        size_t cl = 0;
        dsi_json_get_str(&arr->kids[i], "content", &c, &cl);
        int32_t ids[4];
        size_t ni = 0;
        ok = c && memchr(c, '<', cl) && ds_tokenizer_encode(T->t, c, cl, 0, ids, 4, &ni) == DS_OK && ni == 1;
        if (!ok) printf("  %s: added token %u is not one '<' token\n", name, i);
        else {
            T->text[T->n] = strndup(c, cl);
            T->id[T->n++] = ids[0];
        }
    }
    dsi_json_free(doc);
    return ok;
}

static void chat_tok_free(chat_tok *T) {
    for (size_t i = 0; i < T->n; i++) free(T->text[i]);
    free(T->text);
    free(T->id);
    ds_tokenizer_free(T->t);
}

static size_t count_id(const int32_t *ids, size_t n, int32_t id) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ids[i] == id;
    return c;
}

static size_t count_str(const char *s, size_t n, const char *sub) {
    size_t c = 0, k = strlen(sub);
    for (size_t i = 0; i + k <= n; i++) c += memcmp(s + i, sub, k) == 0;
    return c;
}

/* The old way: the rendered text, encoded with every token matched. */
static bool chat_old(const ds_tokenizer *t, const ds_chat_message *m, size_t n, int gen, char *text, size_t *tl,
                     int32_t *ids, size_t *ni) {
    return ds_tokenizer_apply_chat_template(t, m, n, gen, text, CT_CAP, tl) == DS_OK &&
           ds_tokenizer_encode(t, text, *tl, 0, ids, CT_CAP, ni) == DS_OK;
}

/* The same chat with every '<' in the contents made '(' (no added token's
 * text is left in them; the template's markup is unchanged). */
static void chat_sanitize(const ds_chat_message *m, size_t n, ds_chat_message *out, char **owned) {
    for (size_t i = 0; i < n; i++) {
        owned[i] = strdup(m[i].content);
        for (char *p = owned[i]; *p; p++)
            if (*p == '<') *p = '(';
        out[i].role = m[i].role;
        out[i].content = owned[i];
    }
}

/* Checks one chat on one tokenizer; NULL when all is well, else what is not.
 * *holds: some content holds the text of an added token. */
static const char *check_chat(const chat_tok *T, const ds_chat_message *m, size_t n, int gen, bool *holds) {
    static int32_t a[CT_CAP], b[CT_CAP], c[CT_CAP], d[CT_CAP];
    static char text[CT_CAP], dec[CT_CAP], why[256];
    size_t tl = 0, na = 0, nb = 0, nc = 0, nd = 0, dl = 0;
    ds_chat_message sm[16];
    char *owned[16];
    *holds = false;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < T->n && !*holds; k++) *holds = strstr(m[i].content, T->text[k]) != NULL;
    if (!chat_old(T->t, m, n, gen, text, &tl, a, &na)) return "render or encode failed";
    if (ds_tokenizer_encode_chat(T->t, m, n, gen, 0, b, CT_CAP, &nb) != DS_OK) {
        snprintf(why, sizeof why, "encode_chat: %s", ds_last_error());
        return why;
    }
    if (ds_tokenizer_encode_chat(T->t, m, n, gen, DS_CHAT_SPECIAL_IN_CONTENT, c, CT_CAP, &nc) != DS_OK || nc != na ||
        memcmp(a, c, na * sizeof *a))
        return "with DS_CHAT_SPECIAL_IN_CONTENT, not the ids of encode(apply_chat_template)";
    if (ds_tokenizer_decode(T->t, b, nb, dec, sizeof dec, &dl) != DS_OK || dl != tl || memcmp(dec, text, tl))
        return "decoding the ids does not give the rendered text";
    if (!*holds && (nb != na || memcmp(a, b, na * sizeof *a)))
        return "no added-token text in the contents, yet not the ids of encode(apply_chat_template)";
    chat_sanitize(m, n, sm, owned);
    ds_status st = ds_tokenizer_encode_chat(T->t, sm, n, gen, 0, d, CT_CAP, &nd);
    for (size_t i = 0; i < n; i++) free(owned[i]);
    if (st != DS_OK) return "encode_chat of the sanitized chat failed";
    for (size_t k = 0; k < T->n; k++)
        if (count_id(b, nb, T->id[k]) != count_id(d, nd, T->id[k])) {
            snprintf(why, sizeof why, "token %d (%s) %zu times, %zu times when the contents hold no '<'", T->id[k],
                     T->text[k], count_id(b, nb, T->id[k]), count_id(d, nd, T->id[k]));
            return why;
        }
    return NULL;
}

static uint64_t ct_rng = 0x9E3779B97F4A7C15ull;
static uint32_t ct_rand(uint32_t n) {
    ct_rng ^= ct_rng << 13;
    ct_rng ^= ct_rng >> 7;
    ct_rng ^= ct_rng << 17;
    return (uint32_t)(ct_rng % n);
}

static void test_chat_content(const ds_tokenizer *v3) {
    size_t cl, tl;
    char *tpls = read_file("tests/tok/chat_templates.json", &cl);
    char *v2tok = read_file("tests/tok/v2style/tokenizer.json", &tl);
    if (!tpls || !v2tok) {
        T_CHECK("tokenizer-9.0", 0, "cannot read tests/tok chat files");
        free(tpls);
        free(v2tok);
        return;
    }
    /* tokenizers: the V2-style one (the V2 and V3 releases' added tokens) and,
     * when there, the DeepSeek-V3 release's; both with R1's think tokens */
    char *toks[2] = {NULL, NULL};
    size_t lens[2] = {0, 0};
    const char *tnames[2] = {"v2style+think", "deepseek-v3+think"};
    toks[0] = with_think(v2tok, tl, 1000, &lens[0]);
    char p[1024];
    snprintf(p, sizeof p, "%s/deepseek-v3/tokenizer.json", tok_root());
    size_t vl = 0;
    char *v3tok = v3 ? read_file(p, &vl) : NULL;
    if (v3tok) toks[1] = with_think(v3tok, vl, 129000, &lens[1]);
    else T_SKIP("tokenizer-9.3", "no DeepSeek-V3 tokenizer ($DS_TOKENIZERS): the V2-style one only");
    dsi_alloc al;
    dsi_err e;
    dsi_alloc_init(&al, NULL, &e);
    dsi_json_doc *tdoc = NULL;
    dsi_json_parse(tpls, cl, &al, &tdoc, &e);
    const dsi_json *troot = dsi_json_root(tdoc);
    static const char *const fams[4] = {"v2", "v25", "v3", "r1"};
    static char text[CT_CAP], ctext[CT_CAP];
    static int32_t a[CT_CAP], b[CT_CAP];

    /* 9.1: the V3 goldens (the reference's ids) through encode_chat */
    snprintf(p, sizeof p, "%s/deepseek-v3/chat_template_golden.jsonl", tok_root());
    jl J;
    if (v3 && jl_open(&J, p)) {
        int total = 0, bad = 0;
        const dsi_json *r;
        while ((r = jl_next(&J))) {
            bool gen = false;
            dsi_json_get_bool(r, "add_generation_prompt", &gen);
            const dsi_json *msgs = dsi_json_get(r, "messages");
            ds_chat_message m[32];
            size_t n = 0;
            for (uint32_t i = 0; i < msgs->n && n < 32; i++, n++) {
                dsi_json_get_str(&msgs->kids[i], "role", &m[n].role, NULL);
                dsi_json_get_str(&msgs->kids[i], "content", &m[n].content, NULL);
            }
            int32_t want[4096];
            size_t nw = json_ids(dsi_json_get(r, "ids"), want, 4096), ng = 0;
            total++;
            if (ds_tokenizer_encode_chat(v3, m, n, gen, 0, b, CT_CAP, &ng) != DS_OK || ng != nw ||
                memcmp(b, want, nw * sizeof *b)) {
                if (bad++ < 3) {
                    printf("  tokenizer-9.1 golden %d: got ", total);
                    show_ids(b, ng);
                    printf(" want ");
                    show_ids(want, nw);
                    printf("\n");
                }
            }
        }
        T_CHECK("tokenizer-9.1", bad == 0 && total > 0, "%d of %d V3 chat goldens differ under encode_chat", bad, total);
        jl_close(&J);
    } else {
        T_SKIP("tokenizer-9.1", "no DeepSeek-V3 tokenizer ($DS_TOKENIZERS)");
    }

    for (int ti = 0; ti < 2; ti++) {
        if (!toks[ti]) continue;
        for (int f = 0; f < 4; f++) {
            const dsi_json *tpl = dsi_json_get(troot, fams[f]);
            chat_tok T;
            char name[64];
            snprintf(name, sizeof name, "%s/%s", tnames[ti], fams[f]);
            bool made = tpl && chat_tok_make(&T, name, toks[ti], lens[ti], tpl);
            T_CHECK("tokenizer-9.0", made && T.n >= 20, "%s: tokenizer not built, or %zu added tokens", name,
                    made ? T.n : 0);
            if (!made) {
                chat_tok_free(&T);
                continue;
            }
            int bad = 0, total = 0, with_text = 0, without = 0;
            bool holds;
            const char *why;

            /* 9.2: the Jinja goldens' conversations (tests/tok/chat_golden.jsonl) */
            if (jl_open(&J, "tests/tok/chat_golden.jsonl")) {
                const dsi_json *r;
                while ((r = jl_next(&J))) {
                    const char *fam = "";
                    dsi_json_get_str(r, "family", &fam, NULL);
                    if (strcmp(fam, fams[f])) continue;
                    bool gen = false;
                    dsi_json_get_bool(r, "add_generation_prompt", &gen);
                    const dsi_json *msgs = dsi_json_get(r, "messages");
                    ds_chat_message m[16];
                    size_t n = 0;
                    for (uint32_t i = 0; i < msgs->n && n < 16; i++, n++) {
                        dsi_json_get_str(&msgs->kids[i], "role", &m[n].role, NULL);
                        dsi_json_get_str(&msgs->kids[i], "content", &m[n].content, NULL);
                    }
                    total++;
                    if ((why = check_chat(&T, m, n, gen, &holds)) && bad++ < 3)
                        printf("  tokenizer-9.2 %s golden %d: %s\n", name, total, why);
                    with_text += holds;
                }
                jl_close(&J);
            }
            T_CHECK("tokenizer-9.2", bad == 0 && total >= 10 && with_text > 0,
                    "%s: %d of %d golden conversations fail (%d hold added-token text)", name, bad, total, with_text);

            /* 9.3: every added token's text in a system, a user and an
             * assistant message: plain text, and the old path would have
             * made it the token (so the case tells the two apart) */
            bad = total = 0;
            int not_injected = 0;
            static const char *const roles[3] = {"system", "user", "assistant"};
            for (size_t k = 0; k < T.n; k++) {
                char content[256];
                snprintf(content, sizeof content, "%s and %s.", T.text[k], T.text[k]);
                for (int ri = 0; ri < 3; ri++) {
                    ds_chat_message m[4] = {{"system", "Be kind."}, {"user", "Hi"}, {"assistant", "Hello"},
                                            {"user", "Go on"}};
                    m[ri == 2 ? 2 : ri == 1 ? 3 : 0].content = content;
                    for (int gen = 0; gen < 2; gen++) {
                        total++;
                        why = check_chat(&T, m, 4, gen, &holds);
                        size_t tl0 = 0, na = 0, nb = 0, sl = 0;
                        ds_chat_message sm[4];
                        char *owned[4];
                        chat_sanitize(m, 4, sm, owned);
                        bool ok = !why && chat_old(T.t, m, 4, gen, text, &tl0, a, &na) &&
                                  ds_tokenizer_apply_chat_template(T.t, sm, 4, gen, ctext, CT_CAP, &sl) == DS_OK &&
                                  ds_tokenizer_encode_chat(T.t, m, 4, gen, 0, b, CT_CAP, &nb) == DS_OK;
                        for (int i = 0; i < 4; i++) free(owned[i]);
                        /* how many times the content put the text into the rendered text */
                        size_t put = ok ? count_str(text, tl0, T.text[k]) - count_str(ctext, sl, T.text[k]) : 0;
                        if (ok && count_id(a, na, T.id[k]) - count_id(b, nb, T.id[k]) != put) {
                            why = "the old path did not turn the content's text into the token";
                            ok = false;
                        }
                        if (ok && put == 0) not_injected++;
                        if (!ok && bad++ < 5)
                            printf("  tokenizer-9.3 %s: %s in a %s message (gen %d): %s\n", name, T.text[k],
                                   roles[ri], gen, why ? why : "render or encode failed");
                    }
                }
            }
            /* only R1's assistant turns drop their text up to "</think>" */
            T_CHECK("tokenizer-9.3", bad == 0 && total == (int)T.n * 6 && not_injected == (f == 3 ? 2 : 0),
                    "%s: %d of %d (token, role) cases fail; %d not injected by the old path", name, bad, total,
                    not_injected);

            /* 9.4: random conversations of fragments near and on the tokens */
            static const char *const frag[] = {
                "a", " ", "Hello", "\n", "\n\n", "<", ">", "\xEF\xBD\x9C", "<\xEF\xBD\x9C", "\xEF\xBD\x9C>", "User",
                "Assistant", "User: ", "Assistant:", "\xE2\x96\x81", "end\xE2\x96\x81of\xE2\x96\x81sentence",
                "<think>", "</think>", "think", "\xE4\xB8\xAD\xE6\x96\x87", "123", "caf\xC3\xA9", "!", "  ", "\t",
                "<\xEF\xBD\x9CUser\xEF\xBD\x9C>", "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>", "<|EOT|>",
                "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                "<\xEF\xBD\x9Ctool\xE2\x96\x81sep\xEF\xBD\x9C>", "</", "x", "'s", "?\n"};
            const size_t nfrag = sizeof frag / sizeof frag[0];
            bad = total = with_text = without = 0;
            static const char *const rr[3] = {"system", "user", "assistant"};
            for (int it = 0; it < 300; it++) {
                ds_chat_message m[6];
                char buf[6][256];
                size_t n = 1 + ct_rand(6);
                for (size_t i = 0; i < n; i++) {
                    size_t bl = 0, nf = ct_rand(7);
                    buf[i][0] = 0;
                    for (size_t j = 0; j < nf; j++) {
                        const char *s = frag[ct_rand((uint32_t)nfrag)];
                        size_t sl = strlen(s);
                        if (bl + sl < sizeof buf[i]) {
                            memcpy(buf[i] + bl, s, sl + 1);
                            bl += sl;
                        }
                    }
                    m[i].role = rr[ct_rand(3)];
                    m[i].content = buf[i];
                }
                int gen = (int)ct_rand(2);
                total++;
                if ((why = check_chat(&T, m, n, gen, &holds)) && bad++ < 3)
                    printf("  tokenizer-9.4 %s random chat %d: %s\n", name, it, why);
                if (holds) with_text++;
                else without++;
            }
            T_CHECK("tokenizer-9.4", bad == 0 && with_text >= 30 && without >= 30,
                    "%s: %d of %d random chats fail (%d with added-token text, %d without)", name, bad, total,
                    with_text, without);
            chat_tok_free(&T);
        }
    }

    /* 9.5: arguments and buffers */
    const dsi_json *tpl = dsi_json_get(troot, "v3");
    ds_tokenizer *t = with_config(v2tok, tl, "<s>", "</s>", tpl->str, tpl->n);
    ds_chat_message one[] = {{"user", "hi <\xEF\xBD\x9CUser\xEF\xBD\x9C>"}};
    size_t n = 0, n2 = 0;
    ds_status st = ds_tokenizer_encode_chat(t, one, 1, 1, 4, b, CT_CAP, &n);
    T_STATUS("tokenizer-9.5", st, DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK("tokenizer-9.5", strstr(ds_last_error(), "flags") != NULL, "message: %s", ds_last_error());
    st = ds_tokenizer_encode_chat(t, one, 1, 1, 0, b, CT_CAP, &n);
    ds_status st2 = ds_tokenizer_encode_chat(t, one, 1, 1, 0, NULL, 0, &n2);
    T_CHECK("tokenizer-9.6", st == DS_OK && st2 == DS_ERR_LIMIT && n2 == n && n > 3, "count only: %d %d, %zu vs %zu",
            st, st2, n2, n);
    st2 = ds_tokenizer_encode_chat(t, one, 1, 1, 0, a, 2, &n2);
    T_CHECK("tokenizer-9.6", st2 == DS_ERR_LIMIT && n2 == n && strstr(ds_last_error(), "encode_chat"),
            "small buffer: %d, %zu vs %zu: %s", st2, n2, n, ds_last_error());
    st = ds_tokenizer_encode_chat(NULL, one, 1, 1, 0, b, CT_CAP, &n);
    T_STATUS("tokenizer-9.7", st, DS_ERR_INVALID_ARG, ds_last_error());
    st = ds_tokenizer_encode_chat(t, NULL, 1, 1, 0, b, CT_CAP, &n);
    T_STATUS("tokenizer-9.7", st, DS_ERR_INVALID_ARG, ds_last_error());
    ds_chat_message tool[] = {{"user", "hi"}, {"tool", "{}"}};
    st = ds_tokenizer_encode_chat(t, tool, 2, 1, 0, b, CT_CAP, &n);
    T_STATUS("tokenizer-9.8", st, DS_ERR_UNSUPPORTED, ds_last_error());
    ds_chat_message bad_utf8[] = {{"user", "hi \xff"}};
    st = ds_tokenizer_encode_chat(t, bad_utf8, 1, 1, 0, b, CT_CAP, &n);
    T_STATUS("tokenizer-9.8", st, DS_ERR_INVALID_ARG, ds_last_error());
    st = ds_tokenizer_encode_chat(t, NULL, 0, 1, 0, b, CT_CAP, &n);
    T_CHECK("tokenizer-9.8", st == DS_OK && n >= 1, "no messages: %d, %zu ids", st, n);
    ds_tokenizer_free(t);
    t = with_config(v2tok, tl, "<s>", "</s>", "{{ messages }}", 14);
    st = ds_tokenizer_encode_chat(t, one, 1, 1, 0, b, CT_CAP, &n);
    T_STATUS("tokenizer-9.8", st, DS_ERR_UNSUPPORTED, ds_last_error());
    ds_tokenizer_free(t);

    /* 9.9: tokens across a content's edge: "Assistant: Sure" would start in
     * the V2 template's markup and end in the content, "ok\n\n" the other
     * way round; neither is matched (the old path matched both) */
    static const char edge[] =
        "{\"id\":900,\"content\":\"Assistant: Sure\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
        "\"normalized\":true,\"special\":false},"
        "{\"id\":901,\"content\":\"ok\\n\\n\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
        "\"normalized\":false,\"special\":true},";
    const char *at = strstr(v2tok, "\"added_tokens\":[");
    size_t k = at ? (size_t)(at - v2tok) + strlen("\"added_tokens\":[") : 0;
    char *etok = malloc(tl + sizeof edge);
    memcpy(etok, v2tok, k);
    memcpy(etok + k, edge, sizeof edge - 1);
    memcpy(etok + k + sizeof edge - 1, v2tok + k, tl - k);
    tpl = dsi_json_get(troot, "v2");
    t = at ? with_config(etok, tl + sizeof edge - 1, "<s>", "</s>", tpl->str, tpl->n) : NULL;
    int32_t e1[4], e2[4];
    size_t ne1 = 0, ne2 = 0, na = 0, dl = 0;
    ds_chat_message conv[] = {{"user", "ok"}, {"assistant", "Sure thing"}};
    bool ok = t && ds_tokenizer_encode(t, "Assistant: Sure", 15, 0, e1, 4, &ne1) == DS_OK && ne1 == 1 &&
              ds_tokenizer_encode(t, "ok\n\n", 4, 0, e2, 4, &ne2) == DS_OK && ne2 == 1;
    size_t tl0 = 0;
    ok = ok && chat_old(t, conv, 2, 1, text, &tl0, a, &na) && count_id(a, na, e1[0]) == 1 && count_id(a, na, e2[0]) == 1;
    T_CHECK("tokenizer-9.9", ok, "the edge tokens: %s", ds_last_error());
    st = ok ? ds_tokenizer_encode_chat(t, conv, 2, 1, 0, b, CT_CAP, &n) : DS_ERR_INTERNAL;
    ok = st == DS_OK && count_id(b, n, e1[0]) == 0 && count_id(b, n, e2[0]) == 0 &&
         ds_tokenizer_decode(t, b, n, ctext, CT_CAP, &dl) == DS_OK && dl == tl0 && memcmp(ctext, text, dl) == 0;
    T_CHECK("tokenizer-9.9", ok, "a token across a content's edge was matched (status %d)", st);
    ds_tokenizer_free(t);
    free(etok);

    dsi_json_free(tdoc);
    free(toks[0]);
    free(toks[1]);
    free(v3tok);
    free(v2tok);
    free(tpls);
}

/* ---- errors --------------------------------------------------------------- */
static void test_errors(const ds_tokenizer *v3) {
    int32_t ids[64];
    size_t n;
    char buf[256];
    ds_status s = ds_tokenizer_encode(v3, "abc\xff", 4, 0, ids, 64, &n);
    T_STATUS("tokenizer-7.1", s, DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK("tokenizer-7.1", strstr(ds_last_error(), "offset 3") != NULL, "message: %s", ds_last_error());
    s = ds_tokenizer_encode(v3, "ok \xed\xa0\x80", 6, 0, ids, 64, &n);   /* a surrogate */
    T_STATUS("tokenizer-7.2", s, DS_ERR_INVALID_ARG, ds_last_error());
    s = ds_tokenizer_encode(v3, "Hello, world!", 13, 0, ids, 2, &n);
    T_CHECK("tokenizer-7.3", s == DS_ERR_LIMIT && n == 4, "small buffer: status %d n %zu", s, n);
    s = ds_tokenizer_encode(v3, "Hello, world!", 13, 0, NULL, 0, &n);
    T_CHECK("tokenizer-7.3", s == DS_ERR_LIMIT && n == 4, "count only: status %d n %zu", s, n);
    s = ds_tokenizer_encode(v3, "", 0, 0, NULL, 0, &n);
    T_CHECK("tokenizer-7.4", s == DS_OK && n == 0, "empty text: status %d n %zu", s, n);
    s = ds_tokenizer_encode(v3, "Hi", 2, DS_TOKENIZE_BOS, ids, 64, &n);
    T_CHECK("tokenizer-7.5", s == DS_OK && n >= 2 && ids[0] == ds_tokenizer_bos(v3) && ids[0] == 0, "BOS: status %d", s);
    const char *eos = "a<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
    s = ds_tokenizer_encode(v3, eos, strlen(eos), 0, ids, 64, &n);
    T_CHECK("tokenizer-7.6", s == DS_OK && n == 2 && ids[1] == 1, "special token: n %zu", n);
    s = ds_tokenizer_encode(v3, eos, strlen(eos), DS_TOKENIZE_NO_SPECIAL, ids, 64, &n);
    bool has1 = false;
    for (size_t i = 0; i < n; i++) has1 |= ids[i] == 1;
    T_CHECK("tokenizer-7.6", s == DS_OK && n > 2 && !has1, "NO_SPECIAL: n %zu", n);
    T_CHECK("tokenizer-7.7", ds_tokenizer_vocab_size(v3) == 128815 && ds_tokenizer_eos(v3) == 1,
            "vocab %d eos %d", ds_tokenizer_vocab_size(v3), ds_tokenizer_eos(v3));
    int32_t bad[2] = {5, 128815};
    size_t len;
    s = ds_tokenizer_decode(v3, bad, 2, buf, sizeof buf, &len);
    T_STATUS("tokenizer-7.8", s, DS_ERR_INVALID_ARG, ds_last_error());
    int32_t hw[4] = {19923, 14, 2058, 3};
    s = ds_tokenizer_decode(v3, hw, 4, buf, 5, &len);
    T_CHECK("tokenizer-7.9", s == DS_ERR_LIMIT && len == 13, "small decode buffer: status %d len %zu", s, len);
    s = ds_tokenizer_decode(v3, hw, 4, buf, 13, &len);
    T_CHECK("tokenizer-7.9", s == DS_OK && len == 13 && memcmp(buf, "Hello, world!", 13) == 0, "exact buffer: %d", s);
    ds_detok_state ds = {{0}, 0};
    s = ds_tokenizer_decode_stream(v3, &ds, -5, buf, sizeof buf, &len);
    T_STATUS("tokenizer-7.10", s, DS_ERR_INVALID_ARG, ds_last_error());
    ds_tokenizer_free(NULL);
    T_CHECK("tokenizer-7.11", ds_tokenizer_vocab_size(NULL) == 0 && ds_tokenizer_bos(NULL) == -1, "NULL tokenizer");

    /* what we refuse in tokenizer.json, by name */
    static const struct { const char *json; ds_status want; const char *word; } refuse[] = {
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":\"ByteLevel\"},"
         "\"pre_tokenizer\":{\"type\":\"Metaspace\"}}", DS_ERR_UNSUPPORTED, "Metaspace"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":\"ByteLevel\"},"
         "\"normalizer\":{\"type\":\"NFKC\"}}", DS_ERR_UNSUPPORTED, "NFKC"},
        {"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}},\"decoder\":{\"type\":\"ByteLevel\"}}",
         DS_ERR_UNSUPPORTED, "WordPiece"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":\"ByteLevel\"},"
         "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i)x\"},\"behavior\":\"Isolated\"}}",
         DS_ERR_UNSUPPORTED, "group options"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]},\"decoder\":{\"type\":\"ByteLevel\"}}",
         DS_ERR_JSON, "vocabulary"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":\"WordPiece\"}}",
         DS_ERR_UNSUPPORTED, "WordPiece"},
        {"[1,2", DS_ERR_JSON, "tokenizer.json"},
    };
    for (size_t i = 0; i < sizeof refuse / sizeof refuse[0]; i++) {
        ds_tokenizer *t = NULL;
        s = ds_tokenizer_new(&t, refuse[i].json, strlen(refuse[i].json), NULL, 0, NULL);
        T_CHECK("tokenizer-7.12", s == refuse[i].want && !t && strstr(ds_last_error(), refuse[i].word),
                "case %zu: status %d, message %s", i, s, ds_last_error());
    }
    ds_tokenizer *t = NULL;
    s = ds_tokenizer_new(&t, NULL, 0, NULL, 0, NULL);
    T_STATUS("tokenizer-7.13", s, DS_ERR_INVALID_ARG, ds_last_error());
}

/* ---- added token ids ------------------------------------------------------ */
/* A minimal BPE tokenizer with vocabulary {"a": 0, "b": vb} and the given
 * added_tokens array. */
static ds_status tiny(ds_tokenizer **t, int vb, const char *added) {
    char json[1024];
    snprintf(json, sizeof json,
             "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":%d},\"merges\":[]},"
             "\"decoder\":{\"type\":\"ByteLevel\"},\"added_tokens\":[%s]}",
             vb, added);
    *t = NULL;
    return ds_tokenizer_new(t, json, strlen(json), NULL, 0, NULL);
}

static void test_added_ids(void) {
    static const struct { const char *added; ds_status want; const char *word; } refuse[] = {
        {"{\"id\":2,\"content\":\"<x>\"},{\"id\":2,\"content\":\"<y>\"}", DS_ERR_JSON, "both have id 2"},
        {"{\"id\":-1,\"content\":\"<x>\"}", DS_ERR_JSON, "negative"},
        {"{\"id\":16777216,\"content\":\"<x>\"}", DS_ERR_LIMIT, "exceeds"},
        {"{\"id\":99999999999999999999,\"content\":\"<x>\"}", DS_ERR_JSON, "not an integer"},
        {"{\"id\":2.5,\"content\":\"<x>\"}", DS_ERR_JSON, "not an integer"},
        {"{\"id\":\"2\",\"content\":\"<x>\"}", DS_ERR_JSON, "not an integer"},
    };
    for (size_t i = 0; i < sizeof refuse / sizeof refuse[0]; i++) {
        ds_tokenizer *t = NULL;
        ds_status s = tiny(&t, 1, refuse[i].added);
        char id[32];
        snprintf(id, sizeof id, "tokenizer-10.%zu", i + 1);
        T_CHECK(id, s == refuse[i].want && !t && strstr(ds_last_error(), refuse[i].word),
                "added_tokens [%s]: status %d, message %s", refuse[i].added, s, ds_last_error());
        ds_tokenizer_free(t);
    }
    /* distinct ids load; the ids the tokens get are the reference's */
    ds_tokenizer *t = NULL;
    ds_status s = tiny(&t, 1, "{\"id\":2,\"content\":\"<x>\"},{\"id\":3,\"content\":\"<y>\"},{\"content\":\"<z>\"}");
    T_STATUS("tokenizer-10.7", s, DS_OK, ds_last_error());
    T_CHECK("tokenizer-10.7", ds_tokenizer_vocab_size(t) == 5, "vocab size %d", ds_tokenizer_vocab_size(t));
    /* against a model's vocabulary: 5 ids fit 5, not 4; the message names
     * the token */
    dsi_err e = {0};
    T_STATUS("tokenizer-10.8", t ? dsi_tokenizer_check_vocab(t, 5, &e) : DS_ERR_INTERNAL, DS_OK, e.msg);
    T_STATUS("tokenizer-10.9", t ? dsi_tokenizer_check_vocab(t, 4, &e) : DS_OK, DS_ERR_CONFIG, e.msg);
    T_CHECK("tokenizer-10.9", strstr(e.msg, "<z>") && strstr(e.msg, "vocab_size 4"), "message: %s", e.msg);
    ds_tokenizer_free(t);
    /* an id written beyond the model's vocabulary (the token itself is in
     * the vocabulary, so it gets id 1) */
    s = tiny(&t, 1, "{\"id\":700,\"content\":\"b\"}");
    T_STATUS("tokenizer-10.10", s, DS_OK, ds_last_error());
    T_STATUS("tokenizer-10.10", t ? dsi_tokenizer_check_vocab(t, 512, &e) : DS_OK, DS_ERR_CONFIG, e.msg);
    T_CHECK("tokenizer-10.10", strstr(e.msg, "700") != NULL, "message: %s", e.msg);
    ds_tokenizer_free(t);
    /* a vocabulary id beyond it */
    s = tiny(&t, 9, "");
    T_STATUS("tokenizer-10.11", s, DS_OK, ds_last_error());
    T_STATUS("tokenizer-10.11", t ? dsi_tokenizer_check_vocab(t, 8, &e) : DS_OK, DS_ERR_CONFIG, e.msg);
    T_CHECK("tokenizer-10.11", strstr(e.msg, "token id 9") != NULL, "message: %s", e.msg);
    ds_tokenizer_free(t);
}

/* ---- allocation failures -------------------------------------------------- */

static void test_alloc(void) {
    size_t tl;
    char *tok = read_file("tests/tok/gpt2style/tokenizer.json", &tl);
    const char *cfg = "{\"bos_token\":\"<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>\","
                      "\"chat_template\":\"'User: ' + message['content']\"}";
    if (!tok) {
        T_CHECK("tokenizer-8.0", 0, "cannot read tests/tok/gpt2style/tokenizer.json");
        return;
    }
    ds_allocator fa = {f_malloc, f_realloc, f_free, NULL};
    long runs = 0, bad = 0, leaks = 0;
    ds_tokenizer *t = NULL;
    for (fail_at = 0; fail_at < 200000; fail_at++) {
        count = live = 0;
        t = NULL;
        ds_status s = ds_tokenizer_new(&t, tok, tl, cfg, strlen(cfg), &fa);
        runs++;
        if (s == DS_OK) break;
        if (live) leaks++;
        if (s != DS_ERR_NOMEM || t) bad++;
    }
    T_CHECK("tokenizer-8.1", bad == 0 && leaks == 0 && t && runs > 20, "%ld runs: %ld misreported, %ld leaked", runs,
            bad, leaks);
    /* encode / decode / chat with the failing allocator */
    const char *text = "Hello  world's 123 !!\n\n<\xEF\xBD\x9CUser\xEF\xBD\x9C> caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 x";
    int32_t ids[256];
    size_t n = 0, len;
    char buf[512];
    long base_live;
    bad = leaks = runs = 0;
    for (long k = 0; k < 10000 && t; k++) {
        fail_at = count + k;
        base_live = live;
        ds_status s = ds_tokenizer_encode(t, text, strlen(text), 0, ids, 256, &n);
        runs++;
        if (live != base_live) leaks++;
        if (s == DS_OK) break;
        if (s != DS_ERR_NOMEM) bad++;
    }
    T_CHECK("tokenizer-8.2", bad == 0 && leaks == 0 && runs > 3, "encode: %ld runs: %ld misreported, %ld leaked", runs,
            bad, leaks);
    for (long k = 0; k < 100 && t; k++) {
        fail_at = count + k;
        base_live = live;
        ds_status s = ds_tokenizer_decode(t, ids, n, buf, sizeof buf, &len);
        if (live != base_live) leaks++;
        if (s == DS_OK) break;
        if (s != DS_ERR_NOMEM) bad++;
    }
    T_CHECK("tokenizer-8.3", bad == 0 && leaks == 0, "decode: %ld misreported, %ld leaked", bad, leaks);
    ds_chat_message chat[] = {{"system", "Be brief."}, {"user", text}, {"assistant", "ok"}, {"user", text}};
    bad = leaks = runs = 0;
    for (long k = 0; k < 10000 && t; k++) {
        fail_at = count + k;
        base_live = live;
        ds_status s = ds_tokenizer_encode_chat(t, chat, 4, 1, 0, ids, 256, &n);
        runs++;
        if (live != base_live) leaks++;
        if (s == DS_OK) break;
        if (s != DS_ERR_NOMEM) bad++;
    }
    T_CHECK("tokenizer-8.5", bad == 0 && leaks == 0 && runs > 3, "encode_chat: %ld runs: %ld misreported, %ld leaked",
            runs, bad, leaks);
    fail_at = -1;
    ds_tokenizer_free(t);
    T_CHECK("tokenizer-8.4", live == 0, "%ld allocations left after free", live);
    free(tok);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/deepseek-v3", tok_root());
    double t0 = now_s();
    ds_tokenizer *v3 = load_dir(dir, true);
    double load_s = now_s() - t0;
    int bad = 0;
    if (!v3) {
        T_SKIP("tokenizer-1", "no DeepSeek-V3 tokenizer ($DS_TOKENIZERS)");
        T_SKIP("tokenizer-2", "no DeepSeek-V3 tokenizer ($DS_TOKENIZERS)");
        T_SKIP("tokenizer-3", "no DeepSeek-V3 tokenizer ($DS_TOKENIZERS)");
        T_SKIP("tokenizer-7", "no DeepSeek-V3 tokenizer ($DS_TOKENIZERS)");
    } else {
        printf("INFO DeepSeek-V3 tokenizer.json loaded in %.3f s\n", load_s);
        char p[1200];
        snprintf(p, sizeof p, "%s/golden.jsonl", dir);
        int n = check_corpus("tokenizer-1", v3, p, true, &bad);
        T_CHECK("tokenizer-1", n >= 80 && bad == 0, "%d of %d golden lines differ", bad, n);
        n = check_corpus("tokenizer-2", v3, "tests/tok/corpus_v3.jsonl", true, &bad);
        T_CHECK("tokenizer-2", n >= 2000 && bad == 0, "%d of %d corpus lines differ", bad, n);

        /* decode goldens */
        jl J;
        int total = 0, dbad = 0;
        if (jl_open(&J, "tests/tok/decode_v3.jsonl")) {
            const dsi_json *r;
            char out[65536];
            while ((r = jl_next(&J))) {
                int32_t ids[256];
                size_t ni = json_ids(dsi_json_get(r, "ids"), ids, 256), len = 0;
                const dsi_json *text = dsi_json_get(r, "text");
                total++;
                ds_status s = ds_tokenizer_decode(v3, ids, ni, out, sizeof out, &len);
                bool ok = s == DS_OK && len == text->n && memcmp(out, text->str, len) == 0 &&
                          stream_matches(v3, ids, ni, text->str, text->n);
                if (!ok && dbad++ < 3) {
                    printf("  tokenizer-3 ids ");
                    show_ids(ids, ni);
                    printf(": got ");
                    show(out, len);
                    printf(" want ");
                    show(text->str, text->n);
                    printf("\n");
                }
            }
            jl_close(&J);
        }
        T_CHECK("tokenizer-3", total >= 300 && dbad == 0, "%d of %d decode goldens differ", dbad, total);
        test_errors(v3);
        /* add_bos_token false: no BOS from DS_TOKENIZE_BOS, and the model
         * says so (ds_generate follows it) */
        T_CHECK("tokenizer-7.10", ds_tokenizer_adds_bos(v3) == 1, "V3 adds BOS: %d", ds_tokenizer_adds_bos(v3));
        size_t tl = 0;
        snprintf(p, sizeof p, "%s/tokenizer.json", dir);
        char *tj = read_file(p, &tl);
        const char *cfg = "{\"bos_token\":\"<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>\","
                          "\"add_bos_token\":false}";
        ds_tokenizer *nb = NULL;
        ds_status s = tj ? ds_tokenizer_new(&nb, tj, tl, cfg, strlen(cfg), NULL) : DS_ERR_IO;
        T_STATUS("tokenizer-7.10", s, DS_OK, ds_last_error());
        if (!s) {
            int32_t ids[16];
            size_t n = 0;
            s = ds_tokenizer_encode(nb, "Hi", 2, DS_TOKENIZE_BOS, ids, 16, &n);
            T_CHECK("tokenizer-7.10", ds_tokenizer_adds_bos(nb) == 0 && ds_tokenizer_bos(nb) == 0 && s == DS_OK &&
                                          n >= 1 && ids[0] != 0,
                    "add_bos_token false: adds %d, bos %d, first id %d", ds_tokenizer_adds_bos(nb), ds_tokenizer_bos(nb),
                    n ? ids[0] : -1);
        }
        ds_tokenizer_free(nb);
        free(tj);
    }

    /* the tiny generated tokenizer (only if it is the one the goldens were made with) */
    const char *td = getenv("DS_TESTDATA");
    char tp[1024];
    snprintf(tp, sizeof tp, "%s/v2lite/tokenizer.json", td ? td : "");
    size_t tlen;
    char *tj = td ? read_file(tp, &tlen) : NULL;
    jl J;
    if (!tj) T_SKIP("tokenizer-4.1", "no generated checkpoints ($DS_TESTDATA)");
    else if (jl_open(&J, "tests/tok/corpus_tiny.jsonl")) {
        const dsi_json *r = jl_next(&J);
        const char *want_sha = NULL;
        dsi_json_get_str(r, "tokenizer_sha256", &want_sha, NULL);
        unsigned char h[32];
        char hex[65];
        crypto_hash_sha256(h, (const unsigned char *)tj, tlen);
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", h[i]);
        bool same = want_sha && strcmp(want_sha, hex) == 0;
        jl_close(&J);
        if (!same) T_SKIP("tokenizer-4.1", "the generated tiny tokenizer changed: rerun tests/tok/make_corpus.py");
        else {
            char d[1100];
            snprintf(d, sizeof d, "%s/v2lite", td);
            ds_tokenizer *t = load_dir(d, true);
            int n = t ? check_corpus("tokenizer-4.1", t, "tests/tok/corpus_tiny.jsonl", false, &bad) : 0;
            T_CHECK("tokenizer-4.1", t && n >= 300 && bad == 0, "%d of %d tiny corpus lines differ", bad, n);
            ds_tokenizer_free(t);
        }
    }
    free(tj);
    static const char *const styles[2] = {"v2style", "gpt2style"};
    for (int k = 0; k < 2; k++) {
        char d[256], c[256];
        snprintf(d, sizeof d, "tests/tok/%s", styles[k]);
        snprintf(c, sizeof c, "tests/tok/corpus_%s.jsonl", styles[k]);
        ds_tokenizer *t = load_dir(d, false);
        int n = t ? check_corpus(k ? "tokenizer-4.3" : "tokenizer-4.2", t, c, false, &bad) : 0;
        T_CHECK(k ? "tokenizer-4.3" : "tokenizer-4.2", t && n >= 300 && bad == 0, "%s: %d of %d lines differ",
                styles[k], bad, n);
        ds_tokenizer_free(t);
    }

    test_regex("tests/tok/regex_cases.jsonl");
    test_chat(v3);
    test_chat_content(v3);
    test_alloc();
    test_added_ids();
    if (v3) bench(v3, "tests/tok/corpus_v3.jsonl");
    ds_tokenizer_free(v3);
    return t_finish("test_tokenizer");
}
