/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_jsonmask.c — the JSON-object validator and token mask of ds-server's
 * response_format json_object (tools/server/jsonmask.c).
 *
 *  jsonmask-1: objects are read to the end and complete there; every prefix
 *              is accepted
 *  jsonmask-2: what is not a prefix of a JSON object is refused at the byte
 *              where it stops being one
 *  jsonmask-3: random JSON objects (random whitespace, strings with escapes
 *              and multi-byte characters) are accepted, and from every
 *              prefix jm_cost single bytes complete them (each step lowers
 *              the cost by one), giving text the server's strict parser
 *              (tools/server/json.c, an independent implementation) reads
 *              as an object
 *  jsonmask-4: on the demo model's vocabulary: the mask allows exactly the
 *              tokens whose bytes the validator accepts (checked token by
 *              token), and random walks through allowed tokens with a token
 *              budget always end in a complete object the strict parser reads
 */
#define _POSIX_C_SOURCE 200809L
#include "deepseek.h"
#include "test.h"
#include "tools/server/json.h"
#include "tools/server/jsonmask.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* Bytes read before the validator refused one; len when all fit. */
static size_t accepted(const char *s, size_t len, jm_state *out) {
    jm_state st;
    jm_init(&st);
    size_t i = 0;
    while (i < len && jm_byte(&st, (unsigned char)s[i])) i++;
    if (out) *out = st;
    return i;
}

static int strict_object(const char *s, size_t len) {
    char err[128];
    int oom = 0;
    sj_value *root = NULL;
    sj_doc *d = sj_parse(s, len, &root, err, sizeof err, &oom);
    /* (the strict parser refuses a key twice in an object, which JSON allows
     * and the validator does not track: a random walk may write one) */
    int ok = d ? root->type == SJ_OBJECT
               : strstr(err, "duplicate key") != NULL || strstr(err, "number out of range") != NULL ||
                 strstr(err, "number too long") != NULL;
    sj_doc_free(d);
    return ok;
}

static void test_valid(void) {
    static const char *const ok[] = {
        "{}", "{\"a\":1}", " ", "{ \"a\" : [ 1 , -2.5e-3 , 0 , 1E+9 , true , false , null , { } , [ ] ] }",
        "{\"k\":\"x\\u00e9\\n\\\"\\\\\\/ \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", "{\"a\":{\"b\":{\"c\":[[[]]]}}}",
        "{\n\t\"a\":0.0,\r\n\"b\":-0}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (!strcmp(ok[i], " ")) continue;
        size_t n = strlen(ok[i]);
        jm_state st;
        size_t got = accepted(ok[i], n, &st);
        T_CHECK("jsonmask-1.1", got == n && jm_done(&st) && jm_cost(&st) == 0, "'%s': %zu of %zu bytes, done %d",
                ok[i], got, n, jm_done(&st));
        T_CHECK("jsonmask-1.2", strict_object(ok[i], n), "the strict parser refuses '%s'", ok[i]);
        /* no prefix but the whole is complete */
        int early = 0;
        for (size_t k = 1; k < n; k++) {
            jm_state p;
            accepted(ok[i], k, &p);
            early |= jm_done(&p);
        }
        T_CHECK("jsonmask-1.3", !early, "'%s' complete before its end", ok[i]);
    }
}

static void test_invalid(void) {
    static const struct {
        const char *s;
        size_t at;   /* the byte refused */
    } bad[] = {
        {"[]", 0}, {" {}", 0}, {"\"a\"", 0}, {"{\"a\"}", 4}, {"{\"a\":01}", 6}, {"{\"a\":1,}", 7},
        {"{\"a\":tru}", 8}, {"{\"a\":\"\x01\"}", 6}, {"{\"a\":\"\xc0\x80\"}", 6}, {"{\"a\":\"\xed\xa0\x80\"}", 7},
        {"{\"a\":1}}", 7}, {"{\"a\":-}", 6}, {"{\"a\":1.}", 7}, {"{\"a\":.5}", 5}, {"{\"a\":\"\\x\"}", 7},
        {"{\"a\":\"\\u12g4\"}", 10}, {"{,}", 1}, {"{\"a\":[1,]}", 8}, {"{\"a\":[1}", 7}, {"{\"a\":1e}", 7},
        {"{\"a\":\"\xf4\x90\x80\x80\"}", 7}, {"{\"a\":\"\\udc00\"}", 9}, {"{\"a\":\"\\ud800x\"}", 12},
        {"{\"a\":\"\\ud800\\u0041\"}", 14}, {"{\"a\":             1}", 17}, {"{\"a\":NaN}", 5}, {"{}x", 2}, {"{} ", 2}, {"{'a':1}", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i].s);
        size_t got = accepted(bad[i].s, n, NULL);
        T_CHECK("jsonmask-2.1", got == bad[i].at, "'%s': refused at byte %zu, want %zu", bad[i].s, got, bad[i].at);
    }
    /* nesting beyond JM_MAX_DEPTH is refused */
    char deep[JM_MAX_DEPTH + 8];
    size_t n = 0;
    memcpy(deep, "{\"a\":", 5);
    n = 5;
    for (int d = 1; d <= JM_MAX_DEPTH; d++) deep[n++] = '[';
    size_t got = accepted(deep, n, NULL);
    T_CHECK("jsonmask-2.2", got == n - 1, "nesting: %zu of %zu bytes accepted (the last '[' opens level %d)", got, n,
            JM_MAX_DEPTH + 1);
}

/* A random JSON value into b (depth-limited), with random whitespace. */
static void ws(sbuf *b) {
    static const char *const w[] = {"", "", "", " ", "\n", "\t ", "\r\n"};
    sb_puts(b, w[rnd(7)]);
}
static void gen_string(sbuf *b, int key_no) {
    static const char *const parts[] = {"a", "Z", "0", " ", "\\n", "\\\"", "\\\\", "\\/", "\\u00e9", "\\uD83D\\uDE00",
                                        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x7f", "~"};
    sb_putc(b, '"');
    if (key_no >= 0) sb_printf(b, "k%d", key_no);   /* distinct keys: the strict parser refuses duplicates */
    int n = (int)rnd(5);
    for (int i = 0; i < n; i++) sb_puts(b, parts[rnd(sizeof parts / sizeof parts[0])]);
    sb_putc(b, '"');
}
static void gen_value(sbuf *b, int depth) {
    int k = (int)rnd(depth < 5 ? 8 : 6);
    static const char *const nums[] = {"0", "-0", "12", "-3.25", "1e5", "2E-7", "0.5e+12", "987654321"};
    switch (k) {
    case 0: sb_puts(b, "true"); break;
    case 1: sb_puts(b, "false"); break;
    case 2: sb_puts(b, "null"); break;
    case 3:
    case 4: sb_puts(b, nums[rnd(8)]); break;
    case 5: gen_string(b, -1); break;
    case 6: {
        sb_putc(b, '[');
        int n = (int)rnd(4);
        ws(b);
        for (int i = 0; i < n; i++) {
            if (i) sb_putc(b, ','), ws(b);
            gen_value(b, depth + 1);
            ws(b);
        }
        sb_putc(b, ']');
        break;
    }
    default: {
        sb_putc(b, '{');
        int n = (int)rnd(4);
        ws(b);
        for (int i = 0; i < n; i++) {
            if (i) sb_putc(b, ','), ws(b);
            gen_string(b, i);
            ws(b);
            sb_putc(b, ':');
            ws(b);
            gen_value(b, depth + 1);
            ws(b);
        }
        sb_putc(b, '}');
    }
    }
}

/* Completes from st one byte at a time, each lowering the cost by one.
 * Returns the bytes added (-1: stuck). */
static int complete(jm_state st, sbuf *out) {
    int added = 0;
    while (!jm_done(&st)) {
        int c0 = jm_cost(&st), found = 0;
        for (int c = 0; c < 256 && !found; c++) {
            jm_state t = st;
            if (jm_byte(&t, (unsigned char)c) && jm_cost(&t) == c0 - 1) {
                st = t;
                sb_putc(out, (char)c);
                found = 1;
            }
        }
        if (!found) return -1;
        added++;
    }
    return added;
}

static void test_random(void) {
    int fails = 0, cost_fails = 0, parse_fails = 0;
    for (int it = 0; it < 400; it++) {
        sbuf b = {0};
        sb_putc(&b, '{');
        int n = 1 + (int)rnd(4);
        ws(&b);
        for (int i = 0; i < n; i++) {
            if (i) sb_putc(&b, ','), ws(&b);
            gen_string(&b, i);
            sb_putc(&b, ':');
            gen_value(&b, 1);
        }
        sb_putc(&b, '}');
        jm_state st;
        if (accepted(b.data, b.len, &st) != b.len || !jm_done(&st)) {
            if (!fails++) T_CHECK("jsonmask-3.1", 0, "refused: %s", b.data);
        }
        if (!strict_object(b.data, b.len) && !parse_fails++) T_CHECK("jsonmask-3.2", 0, "generator bug: %s", b.data);
        /* complete every 7th prefix with the cheapest bytes */
        for (size_t k = 0; k < b.len; k += 7) {
            jm_state p;
            accepted(b.data, k, &p);
            sbuf c = {0};
            sb_put(&c, b.data, k);
            int want = jm_cost(&p), got = complete(p, &c);
            if ((got != want || !strict_object(c.data, c.len)) && !cost_fails++)
                T_CHECK("jsonmask-3.3", 0, "prefix '%.*s': cost %d, completed in %d: '%s'", (int)k, b.data, want, got,
                        c.data ? c.data : "");
            sb_free(&c);
        }
        sb_free(&b);
    }
    T_CHECK("jsonmask-3", fails + cost_fails + parse_fails == 0, "%d refused, %d bad completions, %d generator bugs",
            fails, cost_fails, parse_fails);
}

static void test_vocab(void) {
    const char *models = getenv("DS_MODELS") ? getenv("DS_MODELS") : "models";
    char path[1024], kpath[1024];
    snprintf(path, sizeof path, "%s/demo.dsm", models);
    snprintf(kpath, sizeof kpath, "%s/demo.key", models);
    unsigned char key[DS_KEY_BYTES];
    if (access(kpath, R_OK) != 0 || ds_key_file_read(kpath, key) != DS_OK) {
        T_SKIP("jsonmask-4", "no models/demo.key (run from the repository root, or set DS_MODELS)");
        return;
    }
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.n_threads = 1;
    ds_model *m = NULL;
    ds_status st = ds_model_open(&m, path, &mp);
    ds_memzero(key, sizeof key);
    T_STATUS("jsonmask-4.0", st, DS_OK, ds_last_error());
    if (st) return;
    const ds_tokenizer *tk = ds_model_tokenizer(m);
    int V = ds_tokenizer_vocab_size(tk);
    char err[128] = "";
    jm_vocab *v = jm_vocab_new(tk, V, err, sizeof err);
    jm_scratch *sc = v ? jm_scratch_new(v) : NULL;
    float *lg = malloc((size_t)V * sizeof *lg);
    T_CHECK("jsonmask-4.0", v && sc && lg, "index: %s", err);
    if (!v || !sc || !lg) goto out;

    /* the mask against a token-by-token check, from a few states */
    static const char *const from[] = {"", "{", "{\"a", "{\"a\":", "{\"a\":[1", "{\"a\":\"\xe2", "{\"a\":tr",
                                       "{\"a\":\"x y", "{\"a\":\"\\u12"};
    for (size_t f = 0; f < sizeof from / sizeof from[0]; f++) {
        jm_state s0;
        accepted(from[f], strlen(from[f]), &s0);
        for (int i = 0; i < V; i++) lg[i] = 0;
        int left = jm_mask(v, sc, &s0, 1000, ds_tokenizer_eos(tk), lg, V);
        int wrong = 0, n_ok = 0;
        for (int i = 0; i < V && wrong < 3; i++) {
            const char *b;
            size_t bl;
            int fl;
            int want = 0;
            if (ds_tokenizer_token_bytes(tk, i, &b, &bl, &fl) == DS_OK && bl && !fl) {
                jm_state t = s0;
                want = jm_bytes(&t, (const unsigned char *)b, bl);
            }
            n_ok += want;
            if (want != (lg[i] == 0)) {
                wrong++;
                T_CHECK("jsonmask-4.1", 0, "from '%s': token %d ('%.*s') allowed %d, want %d", from[f], i, (int)bl,
                        b, lg[i] == 0, want);
            }
        }
        T_CHECK("jsonmask-4.1", !wrong && left == n_ok && n_ok > 0, "from '%s': %d allowed, %d by hand", from[f], left,
                n_ok);
    }

    /* random walks with a token budget end in a complete object */
    int bad = 0;
    for (int walk = 0; walk < 60; walk++) {
        int budget = 3 + (int)rnd(30);
        jm_state s0;
        jm_init(&s0);
        sbuf text = {0};
        int used = 0;
        while (!jm_done(&s0) && used < budget) {
            for (int i = 0; i < V; i++) lg[i] = 0;
            int left = jm_mask(v, sc, &s0, budget - used, -1, lg, V);
            if (!left) break;
            int pick = (int)rnd((uint32_t)left), id = -1;
            for (int i = 0; i < V; i++)
                if (lg[i] == 0 && pick-- == 0) {
                    id = i;
                    break;
                }
            const char *b;
            size_t bl;
            if (ds_tokenizer_token_bytes(tk, id, &b, &bl, NULL) != DS_OK || !jm_bytes(&s0, (const unsigned char *)b, bl))
                break;
            sb_put(&text, b, bl);
            used++;
        }
        if ((!jm_done(&s0) || !strict_object(text.data, text.len)) && bad++ < 3)
            T_CHECK("jsonmask-4.2", 0, "walk %d (budget %d, %d tokens): '%s'", walk, budget, used,
                    text.data ? text.data : "");
        sb_free(&text);
    }
    T_CHECK("jsonmask-4.2", bad == 0, "%d of 60 walks did not end in an object", bad);
out:
    free(lg);
    jm_scratch_free(sc);
    jm_vocab_free(v);
    ds_model_close(m);
}

int main(void) {
    test_valid();
    test_invalid();
    test_random();
    test_vocab();
    return t_finish("test_jsonmask");
}
