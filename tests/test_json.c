/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_json.c — the strict JSON parser: valid documents, every rejection
 * class, typed lookups, the string writer, allocation failures, and the real
 * DeepSeek-V3 tokenizer.json.
 */
#include "deepseek_impl/internal.h"
#include "tests/test.h"

#include <locale.h>
#include <math.h>

/* ==== Counting / failing allocator ======================================== */
/* Fails every allocation from the fail_at-th on (0 = never) and counts the
 * live blocks, so a test can prove an error path leaked nothing. */
typedef struct t_counter {
    long calls, live, fail_at;
} t_counter;

static void *t_malloc(size_t n, void *u) {
    t_counter *c = u;
    if (c->fail_at && ++c->calls >= c->fail_at) return NULL;
    void *p = malloc(n);
    if (p) c->live++;
    return p;
}
static void *t_realloc(void *p, size_t n, void *u) {
    t_counter *c = u;
    if (c->fail_at && ++c->calls >= c->fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) c->live++;
    return q;
}
static void t_free(void *p, void *u) {
    t_counter *c = u;
    if (p) c->live--;
    free(p);
}

static dsi_alloc t_default_alloc(void) {
    dsi_alloc al;
    dsi_err e;
    (void)dsi_alloc_init(&al, NULL, &e);
    return al;
}

/* Parses a C string from an exact-size heap copy (no NUL after it), so
 * ASan catches any read past the end. */
static ds_status t_parse_n(const char *s, size_t n, dsi_json_doc **doc, dsi_err *e) {
    dsi_alloc al = t_default_alloc();
    char *copy = malloc(n ? n : 1);
    memcpy(copy, s, n);
    memset(e, 0, sizeof *e);
    ds_status st = dsi_json_parse(copy, n, &al, doc, e);
    free(copy);   /* the tree must not point into the input */
    return st;
}
static ds_status t_parse(const char *s, dsi_json_doc **doc, dsi_err *e) { return t_parse_n(s, strlen(s), doc, e); }

/* Parses s and expects status want; frees the doc. */
static void t_expect(const char *id, const char *s, size_t n, ds_status want) {
    dsi_json_doc *doc = NULL;
    dsi_err e;
    ds_status st = t_parse_n(s, n, &doc, &e);
    T_STATUS(id, st, want, st ? e.msg : "");
    if (st != DS_OK) {
        T_CHECK(id, doc == NULL, "doc must be NULL on failure");
        if (want == DS_ERR_JSON || want == DS_ERR_LIMIT)
            T_CHECK(id, strncmp(e.msg, "JSON line ", 10) == 0, "message format: %s", e.msg);
    }
    dsi_json_free(doc);
}

/* ==== 1. Valid documents ==================================================== */
static void test_scalars(void) {
    static const struct { const char *text; dsi_json_type type; } cases[] = {
        {"true", DSI_JSON_TRUE}, {"false", DSI_JSON_FALSE}, {"null", DSI_JSON_NULL},
        {" \t\r\n0\n", DSI_JSON_NUMBER}, {"\"x\"", DSI_JSON_STRING}, {"[]", DSI_JSON_ARRAY},
        {"{}", DSI_JSON_OBJECT}, {" { } ", DSI_JSON_OBJECT}, {"[ ]", DSI_JSON_ARRAY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsi_json_doc *doc;
        dsi_err e;
        ds_status st = t_parse(cases[i].text, &doc, &e);
        T_STATUS("json-1.1", st, DS_OK, e.msg);
        if (st) continue;
        const dsi_json *r = dsi_json_root(doc);
        T_CHECK("json-1.1", r->type == cases[i].type, "'%s': type %d", cases[i].text, (int)r->type);
        T_CHECK("json-1.1", r->key == NULL && r->n == (r->type == DSI_JSON_STRING ? 1u : 0u), "'%s'", cases[i].text);
        dsi_json_free(doc);
    }
}

static void test_structure(void) {
    const char *text = "{\"b\": [1, \"two\", [true, false, null], {}],\n"
                       " \"a\": {\"x\": -5, \"y\": \"\"},\n"
                       " \"b\": \"duplicate\", \"\": 0}";
    dsi_json_doc *doc;
    dsi_err e;
    ds_status st = t_parse(text, &doc, &e);
    T_STATUS("json-1.2", st, DS_OK, e.msg);
    if (st) return;
    const dsi_json *r = dsi_json_root(doc);
    T_CHECK("json-1.2", r->type == DSI_JSON_OBJECT && r->n == 4, "root %d n %u", (int)r->type, r->n);
    /* member order is kept; keys sit on the members */
    T_CHECK("json-1.2", r->kids[0].key_len == 1 && strcmp(r->kids[0].key, "b") == 0, "kid 0 key");
    T_CHECK("json-1.2", strcmp(r->kids[1].key, "a") == 0 && strcmp(r->kids[2].key, "b") == 0, "kid 1/2 keys");
    T_CHECK("json-1.2", r->kids[3].key_len == 0 && r->kids[3].key[0] == 0, "empty key");
    /* duplicates are kept, lookups find the first */
    const dsi_json *b = dsi_json_get(r, "b");
    T_CHECK("json-1.2", b == &r->kids[0] && b->type == DSI_JSON_ARRAY && b->n == 4, "first 'b'");
    T_CHECK("json-1.2", b->kids[0].is_int && b->kids[0].i == 1 && b->kids[0].key == NULL, "b[0]");
    T_CHECK("json-1.2", b->kids[1].type == DSI_JSON_STRING && b->kids[1].n == 3 && strcmp(b->kids[1].str, "two") == 0,
            "b[1]");
    const dsi_json *in = &b->kids[2];
    T_CHECK("json-1.2", in->n == 3 && in->kids[0].type == DSI_JSON_TRUE && in->kids[1].type == DSI_JSON_FALSE &&
                            in->kids[2].type == DSI_JSON_NULL, "b[2]");
    T_CHECK("json-1.2", b->kids[3].type == DSI_JSON_OBJECT && b->kids[3].n == 0 && b->kids[3].kids == NULL, "b[3]");
    const dsi_json *a = dsi_json_get(r, "a");
    int64_t x = 0;
    T_CHECK("json-1.2", dsi_json_get_int(a, "x", &x) == 1 && x == -5, "a.x");
    const char *ys = NULL;
    size_t yl = 99;
    T_CHECK("json-1.2", dsi_json_get_str(a, "y", &ys, &yl) == 1 && yl == 0 && ys && ys[0] == 0, "a.y");
    T_CHECK("json-1.2", dsi_json_get(r, "c") == NULL && dsi_json_get(b, "x") == NULL && dsi_json_get(NULL, "x") == NULL,
            "missing lookups");
    T_CHECK("json-1.2", dsi_json_get(r, "") == &r->kids[3], "lookup of empty key");
    dsi_json_free(doc);
}

static void test_integers(void) {
    static const struct { const char *text; bool is_int; int64_t i; double num; } cases[] = {
        {"0", true, 0, 0.0},
        {"-0", true, 0, -0.0},
        {"7", true, 7, 7.0},
        {"-123456789", true, -123456789, -123456789.0},
        {"9223372036854775807", true, INT64_MAX, 9223372036854775807.0},
        {"-9223372036854775808", true, INT64_MIN, -9223372036854775808.0},
        {"9223372036854775808", false, 0, 9223372036854775808.0},
        {"-9223372036854775809", false, 0, -9223372036854775809.0},
        {"100000000000000000000000", false, 0, 1e23},
        {"1.0", false, 0, 1.0},
        {"1e2", false, 0, 100.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsi_json_doc *doc;
        dsi_err e;
        ds_status st = t_parse(cases[i].text, &doc, &e);
        T_STATUS("json-1.3", st, DS_OK, e.msg);
        if (st) continue;
        const dsi_json *r = dsi_json_root(doc);
        T_CHECK("json-1.3", r->type == DSI_JSON_NUMBER && r->is_int == cases[i].is_int, "'%s' is_int %d",
                cases[i].text, r->is_int);
        if (cases[i].is_int) T_CHECK("json-1.3", r->i == cases[i].i, "'%s' i %lld", cases[i].text, (long long)r->i);
        T_CHECK("json-1.3", r->num == cases[i].num && signbit(r->num) == signbit(cases[i].num), "'%s' num %.17g",
                cases[i].text, r->num);
        dsi_json_free(doc);
    }
}

/* Numbers against the C library's strtod (C locale): fast path, slow path,
 * long mantissas (sticky digit), huge exponents. */
static void test_floats(void) {
    static const char *cases[] = {
        "1.5", "-0.0", "1e-06", "2.5E+3", "0.1", "3.141592653589793", "1e22", "1e23", "123456789012345678e-5",
        "0.1000000000000000055511151231257827021181583404541015625", "4.9406564584124654e-324",
        "2.2250738585072011e-308", "1.7976931348623157e308", "1e400", "-1e400", "1e-400", "0e99999999999999999999",
        "0.000000000000000000000000000000000001", "9007199254740993", "9007199254740993.0",
        "2.4703282292062327e-324", "2.4703282292062328e-324", "1E-7", "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124", "1.00000000000000011102230246251565404236316680908203126",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsi_json_doc *doc;
        dsi_err e;
        ds_status st = t_parse(cases[i], &doc, &e);
        T_STATUS("json-1.4", st, DS_OK, e.msg);
        if (st) continue;
        double want = strtod(cases[i], NULL);
        const dsi_json *r = dsi_json_root(doc);
        T_CHECK("json-1.4", r->num == want && signbit(r->num) == signbit(want), "'%s': %.17g want %.17g", cases[i],
                r->num, want);
        dsi_json_free(doc);
    }
    /* A 1000-digit mantissa whose tail decides the rounding: 1 + 2^-53
     * (exactly halfway) followed by zeros and a final 1 rounds up. */
    char big[1200];
    strcpy(big, "1.00000000000000011102230246251565404236316680908203125");
    size_t len = strlen(big);
    while (len < 1100) big[len++] = '0';
    big[len++] = '1';
    big[len] = 0;
    dsi_json_doc *doc;
    dsi_err e;
    ds_status st = t_parse(big, &doc, &e);
    T_STATUS("json-1.4", st, DS_OK, e.msg);
    if (st == DS_OK) {
        double want = strtod(big, NULL);
        T_CHECK("json-1.4", dsi_json_root(doc)->num == want && want == nextafter(1.0, 2.0),
                "long mantissa: %.17g want %.17g", dsi_json_root(doc)->num, want);
        dsi_json_free(doc);
    }
    /* Same with a 1000-digit integer part. */
    memset(big, '7', 1000);
    strcpy(big + 1000, ".5e-990");
    st = t_parse(big, &doc, &e);
    T_STATUS("json-1.4", st, DS_OK, e.msg);
    if (st == DS_OK) {
        double want = strtod(big, NULL);
        T_CHECK("json-1.4", dsi_json_root(doc)->num == want, "long integer part: %.17g want %.17g",
                dsi_json_root(doc)->num, want);
        dsi_json_free(doc);
    }
}

/* The locale's decimal separator must not matter. */
static void test_locale(void) {
    static const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "ru_RU.UTF-8"};
    const char *got = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !got; i++) got = setlocale(LC_NUMERIC, names[i]);
    if (!got || strcmp(localeconv()->decimal_point, ".") == 0) {
        setlocale(LC_NUMERIC, "C");
        T_SKIP("json-1.9", "no locale with a ',' decimal separator installed");
        return;
    }
    dsi_json_doc *doc;
    dsi_err e;
    ds_status st = t_parse("[1.5, 0.30000000000000004441, 2.5e-400, 12345678901234567.25]", &doc, &e);
    T_STATUS("json-1.9", st, DS_OK, e.msg);
    if (st == DS_OK) {
        const dsi_json *r = dsi_json_root(doc);
        T_CHECK("json-1.9", r->kids[0].num == 1.5 && r->kids[1].num == 0.30000000000000004 && r->kids[2].num == 0 &&
                                r->kids[3].num == 12345678901234568.0, "values under locale %s", got);
        dsi_json_free(doc);
    }
    setlocale(LC_NUMERIC, "C");
}

static void test_strings(void) {
    static const struct { const char *text; const char *want; size_t want_len; } cases[] = {
        {"\"\"", "", 0},
        {"\"plain ascii\"", "plain ascii", 11},
        {"\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t", 15},
        {"\"\\u0041\\u00e9\\u20AC\"", "A\xC3\xA9\xE2\x82\xAC", 6},
        {"\"\\ud83d\\ude00\"", "\xF0\x9F\x98\x80", 4},
        {"\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF", 4},
        {"\"a\\u0000b\"", "a\0b", 3},
        {"\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\"", "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF",
         13},
        {"\"\xEF\xBF\xBF\xEE\x80\x80\xED\x9F\xBF\"", "\xEF\xBF\xBF\xEE\x80\x80\xED\x9F\xBF", 9},
        {"\"\x7f\"", "\x7f", 1},
        {"\"\xE2\x96\x81\xC4\xA0t\"", "\xE2\x96\x81\xC4\xA0t", 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsi_json_doc *doc;
        dsi_err e;
        ds_status st = t_parse(cases[i].text, &doc, &e);
        T_STATUS("json-1.5", st, DS_OK, e.msg);
        if (st) continue;
        const dsi_json *r = dsi_json_root(doc);
        T_CHECK("json-1.5", r->type == DSI_JSON_STRING && r->n == cases[i].want_len &&
                                memcmp(r->str, cases[i].want, cases[i].want_len) == 0 && r->str[r->n] == 0,
                "case %zu: n %u", i, r->n);
        dsi_json_free(doc);
    }
    /* escaped keys are unescaped too */
    dsi_json_doc *doc;
    dsi_err e;
    ds_status st = t_parse("{\"k\\u00e9y\\n\": 1}", &doc, &e);
    T_STATUS("json-1.5", st, DS_OK, e.msg);
    if (st == DS_OK) {
        const dsi_json *r = dsi_json_root(doc);
        T_CHECK("json-1.5", r->kids[0].key_len == 5 && memcmp(r->kids[0].key, "k\xC3\xA9y\n", 6) == 0, "escaped key");
        T_CHECK("json-1.5", dsi_json_get(r, "k\xC3\xA9y\n") == &r->kids[0], "lookup of escaped key");
        dsi_json_free(doc);
    }
}

static void test_typed(void) {
    const char *text = "{\"i\": 42, \"neg\": -7, \"f\": 4096.0, \"e\": 1e3, \"half\": 2.5, \"big\": 1e300,"
                       " \"huge\": 9223372036854775808, \"s\": \"str\", \"t\": true, \"fa\": false, \"nul\": null,"
                       " \"arr\": [1], \"obj\": {}, \"nanish\": -0.0, \"max53\": 9007199254740992.0,"
                       " \"over53\": 18014398509481984.0}";
    dsi_json_doc *doc;
    dsi_err e;
    ds_status st = t_parse(text, &doc, &e);
    T_STATUS("json-1.6", st, DS_OK, e.msg);
    if (st) return;
    const dsi_json *r = dsi_json_root(doc);
    int64_t i = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    size_t sl = 0;
    T_CHECK("json-1.6", dsi_json_get_int(r, "i", &i) == 1 && i == 42, "i");
    T_CHECK("json-1.6", dsi_json_get_int(r, "neg", &i) == 1 && i == -7, "neg");
    T_CHECK("json-1.6", dsi_json_get_int(r, "f", &i) == 1 && i == 4096, "4096.0 is integral");
    T_CHECK("json-1.6", dsi_json_get_int(r, "e", &i) == 1 && i == 1000, "1e3 is integral");
    T_CHECK("json-1.6", dsi_json_get_int(r, "nanish", &i) == 1 && i == 0, "-0.0");
    T_CHECK("json-1.6", dsi_json_get_int(r, "max53", &i) == 1 && i == 9007199254740992LL, "2^53");
    i = 5;
    T_CHECK("json-1.6", dsi_json_get_int(r, "half", &i) == -1 && i == 5, "non-integral");
    T_CHECK("json-1.6", dsi_json_get_int(r, "big", &i) == -1, "out of range");
    T_CHECK("json-1.6", dsi_json_get_int(r, "huge", &i) == -1, "2^63 out of int64 range");
    T_CHECK("json-1.6", dsi_json_get_int(r, "over53", &i) == -1, "2^54 written as float");
    T_CHECK("json-1.6", dsi_json_get_int(r, "s", &i) == -1 && dsi_json_get_int(r, "t", &i) == -1 &&
                            dsi_json_get_int(r, "arr", &i) == -1 && dsi_json_get_int(r, "obj", &i) == -1, "wrong types");
    T_CHECK("json-1.6", dsi_json_get_int(r, "nul", &i) == 0 && dsi_json_get_int(r, "absent", &i) == 0, "null/absent");
    T_CHECK("json-1.6", dsi_json_get_int(NULL, "i", &i) == 0 && dsi_json_get_int(&r->kids[0], "i", &i) == 0,
            "not an object");
    T_CHECK("json-1.6", dsi_json_get_num(r, "half", &d) == 1 && d == 2.5, "num half");
    T_CHECK("json-1.6", dsi_json_get_num(r, "i", &d) == 1 && d == 42.0, "num of int");
    T_CHECK("json-1.6", dsi_json_get_num(r, "s", &d) == -1 && dsi_json_get_num(r, "nul", &d) == 0 &&
                            dsi_json_get_num(r, "absent", &d) == 0, "num others");
    T_CHECK("json-1.6", dsi_json_get_bool(r, "t", &b) == 1 && b, "bool true");
    T_CHECK("json-1.6", dsi_json_get_bool(r, "fa", &b) == 1 && !b, "bool false");
    T_CHECK("json-1.6", dsi_json_get_bool(r, "i", &b) == -1 && dsi_json_get_bool(r, "nul", &b) == 0 &&
                            dsi_json_get_bool(r, "absent", &b) == 0, "bool others");
    T_CHECK("json-1.6", dsi_json_get_str(r, "s", &s, &sl) == 1 && sl == 3 && strcmp(s, "str") == 0, "str");
    T_CHECK("json-1.6", dsi_json_get_str(r, "s", &s, NULL) == 1, "str with NULL len");
    T_CHECK("json-1.6", dsi_json_get_str(r, "i", &s, &sl) == -1 && dsi_json_get_str(r, "nul", &s, &sl) == 0 &&
                            dsi_json_get_str(r, "absent", &s, &sl) == 0, "str others");
    dsi_json_free(doc);
}

/* Nesting up to DS_MAX_JSON_DEPTH is fine; one more is DS_ERR_LIMIT. */
static void test_depth(void) {
    size_t max = DS_MAX_JSON_DEPTH;
    char *buf = malloc(6 * (max + 2) + 16);
    for (int extra = 0; extra <= 1; extra++) {
        size_t d = max + (size_t)extra, k = 0;
        for (size_t i = 0; i < d; i++) buf[k++] = '[';
        for (size_t i = 0; i < d; i++) buf[k++] = ']';
        t_expect(extra ? "json-1.7b" : "json-1.7a", buf, k, extra ? DS_ERR_LIMIT : DS_OK);
        /* the same with objects */
        k = 0;
        for (size_t i = 0; i < d; i++) { memcpy(buf + k, "{\"\":", 4); k += 4; }
        buf[k++] = '0';
        for (size_t i = 0; i < d; i++) buf[k++] = '}';
        t_expect(extra ? "json-1.7d" : "json-1.7c", buf, k, extra ? DS_ERR_LIMIT : DS_OK);
    }
    /* Deep but wide enough to grow the value stack between levels. */
    dsi_buf b;
    dsi_alloc al = t_default_alloc();
    dsi_buf_init(&b, &al);
    for (size_t i = 0; i + 1 < max; i++) dsi_buf_put(&b, "[1,2,3,", 7);
    dsi_buf_put(&b, "[]", 2);
    for (size_t i = 0; i + 1 < max; i++) dsi_buf_put(&b, "]", 1);
    dsi_json_doc *doc;
    dsi_err e;
    ds_status st = t_parse_n((const char *)b.data, b.len, &doc, &e);
    T_STATUS("json-1.7e", st, DS_OK, e.msg);
    if (st == DS_OK) {
        const dsi_json *v = dsi_json_root(doc);
        size_t levels = 0;
        while (v->type == DSI_JSON_ARRAY && v->n == 4) {
            T_CHECK("json-1.7e", v->kids[2].i == 3, "level %zu", levels);
            v = &v->kids[3];
            levels++;
        }
        T_CHECK("json-1.7e", levels == max - 1 && v->type == DSI_JSON_ARRAY, "levels %zu", levels);
        dsi_json_free(doc);
    }
    dsi_buf_free(&b);
    free(buf);
}

/* A large flat array: children stay contiguous and in order. */
static void test_large(void) {
    dsi_buf b;
    dsi_alloc al = t_default_alloc();
    dsi_buf_init(&b, &al);
    dsi_buf_put(&b, "[", 1);
    char tmp[64];
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(tmp, sizeof tmp, "%s{\"k%d\":\"v%d\"}", i ? "," : "", i, i);
        dsi_buf_put(&b, tmp, (size_t)n);
    }
    dsi_buf_put(&b, "]", 1);
    dsi_json_doc *doc;
    dsi_err e;
    ds_status st = t_parse_n((const char *)b.data, b.len, &doc, &e);
    T_STATUS("json-1.8", st, DS_OK, e.msg);
    if (st == DS_OK) {
        const dsi_json *r = dsi_json_root(doc);
        int bad = 0;
        for (uint32_t i = 0; i < r->n && r->n == 100000; i++) {
            snprintf(tmp, sizeof tmp, "v%u", i);
            const dsi_json *o = &r->kids[i];
            if (o->n != 1 || strcmp(o->kids[0].str, tmp) != 0 || o->kids[0].key[0] != 'k') bad++;
        }
        T_CHECK("json-1.8", r->n == 100000 && bad == 0, "n %u bad %d", r->n, bad);
        dsi_json_free(doc);
    }
    dsi_buf_free(&b);
}

/* ==== 2. Rejections ========================================================= */
typedef struct t_bad {
    const char *id;
    const char *text;
    size_t len;     /* 0: strlen(text) */
} t_bad;

static void test_rejections(void) {
    static const t_bad cases[] = {
        /* trailing commas */
        {"json-2.1", "[1,]", 0}, {"json-2.1", "{\"a\":1,}", 0}, {"json-2.1", "[1,,2]", 0}, {"json-2.1", "[,]", 0},
        {"json-2.1", "{,}", 0}, {"json-2.1", "[,1]", 0},
        /* numbers */
        {"json-2.2", "01", 0}, {"json-2.2", "-01", 0}, {"json-2.2", "00", 0}, {"json-2.2", "[00.5]", 0},
        {"json-2.2", "1.", 0}, {"json-2.2", ".5", 0}, {"json-2.2", "+1", 0}, {"json-2.2", "-", 0},
        {"json-2.2", "1e", 0}, {"json-2.2", "1e+", 0}, {"json-2.2", "--1", 0}, {"json-2.2", "1.e5", 0},
        {"json-2.2", "0x10", 0}, {"json-2.2", "NaN", 0}, {"json-2.2", "Infinity", 0}, {"json-2.2", "-Infinity", 0},
        {"json-2.2", "1.5.2", 0}, {"json-2.2", "- 1", 0}, {"json-2.2", "[1e5e5]", 0},
        /* bare control characters in strings */
        {"json-2.3", "\"a\x01z\"", 0}, {"json-2.3", "\"line\nbreak\"", 0}, {"json-2.3", "\"tab\there\"", 0},
        {"json-2.3", "\"nul\0byte\"", 10}, {"json-2.3", "\"\x1f\"", 0},
        /* invalid escapes */
        {"json-2.4", "\"\\x41\"", 0}, {"json-2.4", "\"\\u12\"", 0}, {"json-2.4", "\"\\u12G4\"", 0},
        {"json-2.4", "\"\\U0041\"", 0}, {"json-2.4", "\"\\'\"", 0}, {"json-2.4", "\"\\a\"", 0},
        {"json-2.4", "\"\\", 0}, {"json-2.4", "\"\\u", 0}, {"json-2.4", "\"\\u004\"", 0}, {"json-2.4", "\"\\0\"", 0},
        /* invalid UTF-8 */
        {"json-2.5", "\"\xC0\x80\"", 0},             /* overlong NUL */
        {"json-2.5", "\"\xC1\xBF\"", 0},             /* overlong */
        {"json-2.5", "\"\xE0\x80\xAF\"", 0},         /* overlong '/' */
        {"json-2.5", "\"\xE0\x9F\xBF\"", 0},         /* overlong U+07FF */
        {"json-2.5", "\"\xF0\x8F\xBF\xBF\"", 0},     /* overlong U+FFFF */
        {"json-2.5", "\"\xED\xA0\x80\"", 0},         /* U+D800 encoded */
        {"json-2.5", "\"\xED\xBF\xBF\"", 0},         /* U+DFFF encoded */
        {"json-2.5", "\"\xED\xA0\xBD\xED\xB8\x80\"", 0}, /* CESU-8 pair */
        {"json-2.5", "\"\xF4\x90\x80\x80\"", 0},     /* U+110000 */
        {"json-2.5", "\"\xF5\x80\x80\x80\"", 0},
        {"json-2.5", "\"\xFF\"", 0}, {"json-2.5", "\"\xFE\"", 0},
        {"json-2.5", "\"\x80\"", 0},                 /* stray continuation */
        {"json-2.5", "\"\xE2\x82\"", 0},             /* truncated sequence */
        {"json-2.5", "\"\xE2\x82", 0},               /* truncated at end of input */
        {"json-2.5", "\"\xC3\x28\"", 0},             /* bad continuation */
        {"json-2.5", "\"\xF0\x9F\x98\"", 0},
        {"json-2.5", "{\"\xC3\":1}", 0},             /* in a key */
        /* lone surrogate escapes */
        {"json-2.6", "\"\\uD800\"", 0}, {"json-2.6", "\"\\uDC00\"", 0}, {"json-2.6", "\"\\uD800\\u0041\"", 0},
        {"json-2.6", "\"\\uD800x\"", 0}, {"json-2.6", "\"\\uD800\\uD800\"", 0}, {"json-2.6", "\"\\uDBFF\\n\"", 0},
        {"json-2.6", "\"\\uDFFF\\uD800\"", 0}, {"json-2.6", "\"\\uD83D\\uDE0\"", 0}, {"json-2.6", "\"\\uD83D\"", 0},
        /* trailing garbage */
        {"json-2.7", "1 2", 0}, {"json-2.7", "{} x", 0}, {"json-2.7", "[]]", 0}, {"json-2.7", "{}}", 0},
        {"json-2.7", "\"a\"\"b\"", 0}, {"json-2.7", "null,", 0}, {"json-2.7", "0\0", 2}, {"json-2.7", "[] /*c*/", 0},
        {"json-2.7", "truex", 0}, {"json-2.7", "1\v", 0},
        /* structure */
        {"json-2.8", "", 0}, {"json-2.8", "   ", 0}, {"json-2.8", "[", 0}, {"json-2.8", "[1", 0}, {"json-2.8", "{", 0},
        {"json-2.8", "{\"a\"", 0}, {"json-2.8", "{\"a\":", 0}, {"json-2.8", "{\"a\" 1}", 0}, {"json-2.8", "[1 2]", 0},
        {"json-2.8", "{\"a\":1 \"b\":2}", 0}, {"json-2.8", "{'a':1}", 0}, {"json-2.8", "{a:1}", 0},
        {"json-2.8", "{1:2}", 0}, {"json-2.8", "[}", 0}, {"json-2.8", "{]", 0}, {"json-2.8", "\"abc", 0},
        {"json-2.8", "]", 0}, {"json-2.8", "}", 0}, {"json-2.8", ":", 0}, {"json-2.8", "\xEF\xBB\xBF{}", 0},
        {"json-2.8", "\v[]", 0}, {"json-2.8", "\f[]", 0}, {"json-2.8", "[\"a\":1]", 0}, {"json-2.8", "{\"a\":1:2}", 0},
        /* literals */
        {"json-2.9", "tru", 0}, {"json-2.9", "nul", 0}, {"json-2.9", "True", 0}, {"json-2.9", "fals", 0},
        {"json-2.9", "undefined", 0}, {"json-2.9", "[nulL]", 0}, {"json-2.9", "t", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const t_bad *c = &cases[i];
        size_t n = c->len ? c->len : strlen(c->text);
        dsi_json_doc *doc = NULL;
        dsi_err e;
        ds_status st = t_parse_n(c->text, n, &doc, &e);
        T_CHECK(c->id, st == DS_ERR_JSON && doc == NULL, "case %zu (%.*s): status %d (%s)", i, (int)n, c->text,
                (int)st, st ? e.msg : "accepted");
        if (st == DS_ERR_JSON)
            T_CHECK(c->id, strncmp(e.msg, "JSON line ", 10) == 0, "case %zu message: %s", i, e.msg);
        dsi_json_free(doc);
    }
}

/* Messages point at the line and column of the problem. */
static void test_messages(void) {
    static const struct { const char *text; const char *want; } cases[] = {
        {"{\n  \"a\": 1,\n  \"b\": [1, 2,]\n}", "JSON line 3 column 14: trailing comma before ']'"},
        {"[1, 01]", "JSON line 1 column 5: number with a leading zero"},
        {"\"\xC3\xA9\xC3\xA9\x01\"", "JSON line 1 column 4: control character 0x01 in string must be escaped"},
        {"{\"k\": tru}", "JSON line 1 column 7: invalid literal (expected 'true')"},
        {"\n\n\"\\uD800\"", "JSON line 3 column 2: lone high surrogate \\uD800"},
        {"[] x", "JSON line 1 column 4: unexpected 'x' after the JSON value"},
        {"[1", "JSON line 1 column 3: unexpected end of input"},
        {"{\"a\":1,}", "JSON line 1 column 8: trailing comma before '}'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsi_json_doc *doc = NULL;
        dsi_err e;
        ds_status st = t_parse(cases[i].text, &doc, &e);
        T_CHECK("json-2.10", st == DS_ERR_JSON && strcmp(e.msg, cases[i].want) == 0, "got '%s' want '%s'",
                st ? e.msg : "ok", cases[i].want);
        dsi_json_free(doc);
    }
    /* argument checks */
    dsi_alloc al = t_default_alloc();
    dsi_json_doc *doc = (dsi_json_doc *)&al;
    dsi_err e;
    T_CHECK("json-2.11", dsi_json_parse(NULL, 3, &al, &doc, &e) == DS_ERR_INVALID_ARG && doc == NULL, "NULL text");
    T_CHECK("json-2.11", dsi_json_parse("1", 1, NULL, &doc, &e) == DS_ERR_INVALID_ARG, "NULL allocator");
    T_CHECK("json-2.11", dsi_json_parse(NULL, 0, &al, &doc, &e) == DS_ERR_JSON, "empty input");
    dsi_json_free(NULL);
    T_CHECK("json-2.11", dsi_json_root(NULL) == NULL, "root of NULL");
}

/* ==== 3. Allocation failures ================================================ */
/* Fails the Nth allocation for N = 1, 2, ... until the parse succeeds; each
 * failure must be DS_ERR_NOMEM with nothing left allocated. */
static void t_nomem_loop(const char *id, const char *text, size_t len) {
    long n;
    bool ok = false;
    int bad_status = 0, leaks = 0;
    for (n = 1; n < 100000 && !ok; n++) {
        t_counter c = {0, 0, n};
        dsi_alloc al = {t_malloc, t_realloc, t_free, &c};
        dsi_json_doc *doc = NULL;
        dsi_err e = {0};
        ds_status st = dsi_json_parse(text, len, &al, &doc, &e);
        if (st == DS_OK) {
            ok = true;
            dsi_json_free(doc);
        } else if (st != DS_ERR_NOMEM || doc != NULL) {
            bad_status++;
            printf("  %s: fail_at %ld: status %d (%s)\n", id, n, (int)st, e.msg);
        }
        if (c.live != 0) leaks++;
    }
    T_CHECK(id, ok, "never succeeded");
    T_CHECK(id, bad_status == 0 && leaks == 0, "%d wrong statuses, %d leaking runs over %ld allocations", bad_status,
            leaks, n - 1);
}

static void test_nomem(void) {
    const char *small = "{\"a\": [1, 2.5, \"x\\u00e9\"], \"b\": {\"c\": null}}";
    t_nomem_loop("json-3.1", small, strlen(small));
    /* big enough for several arena blocks, dedicated blocks and stack growth */
    dsi_buf b;
    dsi_alloc al = t_default_alloc();
    dsi_buf_init(&b, &al);
    dsi_buf_put(&b, "{\"list\": [", 10);
    char tmp[64];
    for (int i = 0; i < 20000; i++) {
        int k = snprintf(tmp, sizeof tmp, "%s[\"item%d\", %d, [[]], {}]", i ? "," : "", i, i);
        dsi_buf_put(&b, tmp, (size_t)k);
    }
    dsi_buf_put(&b, "], \"deep\": [[[[[[[[[[{}]]]]]]]]]]}", 34);
    t_nomem_loop("json-3.2", (const char *)b.data, b.len);
    /* failures that are not memory must not leak either */
    t_counter c = {0, 0, 0};
    dsi_alloc cal = {t_malloc, t_realloc, t_free, &c};
    dsi_json_doc *doc = NULL;
    dsi_err e;
    memcpy(b.data + b.len - 5, "]]]]]", 5);   /* now malformed at the very end */
    ds_status st = dsi_json_parse((const char *)b.data, b.len, &cal, &doc, &e);
    T_CHECK("json-3.3", st == DS_ERR_JSON && c.live == 0, "status %d live %ld", (int)st, c.live);
    /* and a successful parse frees everything */
    st = dsi_json_parse(small, strlen(small), &cal, &doc, &e);
    T_CHECK("json-3.3", st == DS_OK && c.live > 0, "parse ok");
    dsi_json_free(doc);
    T_CHECK("json-3.3", c.live == 0, "live after free %ld", c.live);
    dsi_buf_free(&b);
}

/* ==== 4. The real tokenizer.json ============================================ */
static char *t_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)n + 1);
            if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            }
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

static void test_tokenizer(void) {
    const char *dir = getenv("DS_TOKENIZERS");
    if (!dir || !*dir) dir = "../shared/tokenizers";
    char path[1024];
    snprintf(path, sizeof path, "%s/deepseek-v3/tokenizer.json", dir);
    size_t len = 0;
    char *text = t_read_file(path, &len);
    if (!text) {
        T_SKIP("json-4.1", "tokenizer.json not found (set DS_TOKENIZERS)");
        return;
    }
    dsi_alloc al = t_default_alloc();
    dsi_json_doc *doc = NULL;
    dsi_err e;
    double best = 1e9;
    ds_status st = DS_OK;
    for (int rep = 0; rep < 5 && st == DS_OK; rep++) {
        dsi_json_free(doc);
        double t0 = dsi_now_seconds();
        st = dsi_json_parse(text, len, &al, &doc, &e);
        double t = dsi_now_seconds() - t0;
        if (t < best) best = t;
    }
    T_STATUS("json-4.1", st, DS_OK, e.msg);
    if (st == DS_OK) {
        printf("INFO json-4.1: tokenizer.json (%zu bytes) parsed in %.1f ms (best of 5)\n", len, best * 1e3);
        const dsi_json *root = dsi_json_root(doc);
        const dsi_json *model = dsi_json_get(root, "model");
        const dsi_json *vocab = dsi_json_get(model, "vocab");
        const dsi_json *merges = dsi_json_get(model, "merges");
        const dsi_json *added = dsi_json_get(root, "added_tokens");
        const char *type = NULL;
        T_CHECK("json-4.2", dsi_json_get_str(model, "type", &type, NULL) == 1 && strcmp(type, "BPE") == 0, "model.type");
        T_CHECK("json-4.2", vocab && vocab->type == DSI_JSON_OBJECT && vocab->n >= 127000 && vocab->n <= 130000,
                "vocab size %u", vocab ? vocab->n : 0);
        T_CHECK("json-4.2", merges && merges->type == DSI_JSON_ARRAY && merges->n > 100000, "merges %u",
                merges ? merges->n : 0);
        T_CHECK("json-4.2", added && added->type == DSI_JSON_ARRAY && added->n > 0, "added_tokens");
        if (vocab && vocab->type == DSI_JSON_OBJECT) {
            /* every vocab value is an integer id below the vocab size; ids are unique */
            unsigned char *seen = calloc(vocab->n, 1);
            int bad = 0;
            for (uint32_t i = 0; i < vocab->n; i++) {
                const dsi_json *v = &vocab->kids[i];
                if (!v->is_int || v->i < 0 || v->i >= (int64_t)vocab->n || seen[v->i]++ || !v->key) bad++;
            }
            free(seen);
            T_CHECK("json-4.3", bad == 0, "%d bad vocab entries", bad);
            int64_t id = -1;
            T_CHECK("json-4.3", dsi_json_get_int(vocab, "\xC4\xA0t", &id) == 1 && id >= 0, "vocab['\\u0120t']");
        }
        if (added && added->n) {
            const char *content = NULL;
            T_CHECK("json-4.3",
                    dsi_json_get_str(&added->kids[0], "content", &content, NULL) == 1 &&
                        strstr(content, "begin") != NULL,
                    "added_tokens[0].content");
        }
    }
    dsi_json_free(doc);
    free(text);
}

/* ==== 5. The string writer ================================================== */
static void test_writer(void) {
    dsi_alloc al = t_default_alloc();
    static const struct { const char *in; size_t len; const char *want; } cases[] = {
        {"", 0, "\"\""},
        {"plain", 5, "\"plain\""},
        {"q\"b\\s/", 6, "\"q\\\"b\\\\s/\""},
        {"\n\t\r\b\f", 5, "\"\\n\\t\\r\\b\\f\""},
        {"\x01\x1f\0", 3, "\"\\u0001\\u001f\\u0000\""},
        {"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x7f", 10, "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x7f\""},
        {"a\xFF" "b\xC0\x80", 5, "\"a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD\""},
        {"\xED\xA0\x80", 3, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsi_buf b;
        dsi_buf_init(&b, &al);
        dsi_json_write_string(&b, cases[i].in, cases[i].len);
        size_t wl = strlen(cases[i].want);
        T_CHECK("json-5.1", !b.failed && b.len == wl && memcmp(b.data, cases[i].want, wl) == 0, "case %zu: '%.*s'", i,
                (int)b.len, b.data ? (const char *)b.data : "");
        dsi_buf_free(&b);
    }
    /* Round trip: every byte value, every valid 2-byte sequence, and some
     * random byte soup come back unchanged (valid) or parse (invalid). */
    unsigned char all[256 + 2 * 1920];
    size_t k = 0;
    for (int c = 0; c < 128; c++) all[k++] = (unsigned char)c;
    for (unsigned cp = 0x80; cp < 0x800; cp++) {
        all[k++] = (unsigned char)(0xC0 | (cp >> 6));
        all[k++] = (unsigned char)(0x80 | (cp & 0x3F));
    }
    dsi_buf b;
    dsi_buf_init(&b, &al);
    dsi_json_write_string(&b, (const char *)all, k);
    dsi_json_doc *doc;
    dsi_err e;
    ds_status st = t_parse_n((const char *)b.data, b.len, &doc, &e);
    T_STATUS("json-5.2", st, DS_OK, e.msg);
    if (st == DS_OK) {
        const dsi_json *r = dsi_json_root(doc);
        T_CHECK("json-5.2", r->n == k && memcmp(r->str, all, k) == 0, "round trip of %zu bytes", k);
        dsi_json_free(doc);
    }
    dsi_buf_free(&b);
    unsigned seed = 12345;
    int bad = 0;
    for (int iter = 0; iter < 2000; iter++) {
        unsigned char soup[64];
        for (size_t j = 0; j < sizeof soup; j++) {
            seed = seed * 1103515245u + 12345u;
            soup[j] = (unsigned char)(seed >> 16);
        }
        dsi_buf_init(&b, &al);
        dsi_json_write_string(&b, (const char *)soup, sizeof soup);
        if (t_parse_n((const char *)b.data, b.len, &doc, &e) != DS_OK) bad++;
        else dsi_json_free(doc);
        dsi_buf_free(&b);
    }
    T_CHECK("json-5.3", bad == 0, "%d random strings did not round-trip to valid JSON", bad);
}

int main(void) {
    setlocale(LC_ALL, "C");
    test_scalars();
    test_structure();
    test_integers();
    test_floats();
    test_strings();
    test_typed();
    test_depth();
    test_large();
    test_locale();
    test_rejections();
    test_messages();
    test_nomem();
    test_tokenizer();
    test_writer();
    return t_finish("test_json");
}
