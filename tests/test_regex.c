/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_regex.c — the regex engine (deepseek_impl/regex.c) on its own, through
 * regex.h: compile, then search code points as the tokenizer does.
 *
 *   regex-1  matches and non-matches: literals, classes, alternation (leftmost
 *            first), greedy / lazy / possessive quantifiers, anchors
 *   regex-2  Unicode: \p{L} \p{N} \p{Lu} \P{..}, \s \d \w beyond ASCII,
 *            non-ASCII literals and ranges
 *   regex-3  lookaround, and the DeepSeek-V3 pre-tokenizer's patterns split
 *            as the reference splits them
 *   regex-4  case-insensitive groups: (?i) is not supported and is refused
 *            with a message (the DeepSeek tokenizers do not use it)
 *   regex-5  malformed or unsupported patterns: refused with a status and a
 *            message naming the pattern and the place
 *   regex-6  pathological inputs: exponential backtracking stops at the step
 *            limit, long subjects stay linear, huge programs are refused
 *   regex-7  allocation failures in compile and search (fail the Nth)
 *
 * The Split behaviours and the reference's goldens are tokenizer-5 in
 * test_tokenizer.c; this file checks the engine's answers directly.
 */
#include "../deepseek_impl/internal.h"
#include "../deepseek_impl/regex.h"
#include "../deepseek_impl/unicode.h"
#include "test.h"
#include "fail_alloc.h"

/* ---- helpers ------------------------------------------------------------- */
/* A subject as code points (UTF-8 in, assumed valid). */
typedef struct subj {
    uint32_t cp[4096];
    size_t n;
} subj;

static void to_cps(subj *S, const char *text) {
    const uint8_t *s = (const uint8_t *)text;
    size_t len = strlen(text);
    S->n = 0;
    for (size_t i = 0; i < len && S->n < 4096;) {
        size_t k = dsi_utf8_decode(s + i, len - i, &S->cp[S->n]);
        if (!k) break;
        S->n++;
        i += k;
    }
}

static dsi_alloc g_al;

/* Compiles pat and searches text from position 0. Returns the search result
 * (1, 0, DSI_REGEX_*) or -100 when the pattern did not compile; the match in
 * code points in [*ms, *me). */
static int find(const char *pat, const char *text, size_t *ms, size_t *me) {
    dsi_err e = {DS_OK, ""};
    dsi_regex *G = NULL;
    if (dsi_regex_compile(pat, strlen(pat), false, &g_al, "test", &G, &e) != DS_OK) {
        printf("  pattern /%s/ did not compile: %s\n", pat, e.msg);
        return -100;
    }
    static subj S;
    to_cps(&S, text);
    dsi_regex_ctx X;
    memset(&X, 0, sizeof X);
    X.al = &g_al;
    X.s = S.cp;
    X.n = S.n;
    X.slots = dsi_calloc(&g_al, dsi_regex_slots(G) + 1, sizeof *X.slots);
    *ms = *me = SIZE_MAX;
    int r = X.slots ? dsi_regex_search(G, &X, 0, ms, me) : DSI_REGEX_NOMEM;
    dsi_free(&g_al, X.stack);
    dsi_free(&g_al, X.slots);
    dsi_regex_free(&g_al, G);
    return r;
}

/* Checks that pat finds exactly [ms, me) (code points) in text. */
static void want_match(const char *id, const char *pat, const char *text, size_t ms, size_t me) {
    size_t a, b;
    int r = find(pat, text, &a, &b);
    T_CHECK(id, r == 1 && a == ms && b == me, "/%s/ on \"%s\": result %d [%zu, %zu), want [%zu, %zu)", pat, text, r,
            r == 1 ? a : 0, r == 1 ? b : 0, ms, me);
}

static void want_none(const char *id, const char *pat, const char *text) {
    size_t a, b;
    int r = find(pat, text, &a, &b);
    T_CHECK(id, r == 0, "/%s/ on \"%s\": result %d [%zu, %zu), want no match", pat, text, r, r == 1 ? a : 0,
            r == 1 ? b : 0);
}

/* All non-overlapping matches as the pre-tokenizer takes them (an empty
 * match where the previous one ended is skipped), joined with '|'. */
static void find_all(const char *pat, const char *text, char *out, size_t cap) {
    dsi_err e = {DS_OK, ""};
    dsi_regex *G = NULL;
    out[0] = 0;
    if (dsi_regex_compile(pat, strlen(pat), false, &g_al, "test", &G, &e) != DS_OK) {
        snprintf(out, cap, "error: %s", e.msg);
        return;
    }
    static subj S;
    to_cps(&S, text);
    dsi_regex_ctx X;
    memset(&X, 0, sizeof X);
    X.al = &g_al;
    X.s = S.cp;
    X.n = S.n;
    X.slots = dsi_calloc(&g_al, dsi_regex_slots(G) + 1, sizeof *X.slots);
    size_t pos = 0, last_end = SIZE_MAX, o = 0;
    while (X.slots && pos <= S.n) {
        size_t ms, me;
        X.steps = 0;
        int r = dsi_regex_search(G, &X, pos, &ms, &me);
        if (r != 1) break;
        if (ms == me && last_end == me) { pos++; continue; }
        if (o && o + 1 < cap) out[o++] = '|';
        for (size_t i = ms; i < me && o + 5 < cap; i++) o += dsi_utf8_encode((uint8_t *)out + o, S.cp[i]);
        out[o] = 0;
        pos = last_end = me;
    }
    dsi_free(&g_al, X.stack);
    dsi_free(&g_al, X.slots);
    dsi_regex_free(&g_al, G);
}

static void want_all(const char *id, const char *pat, const char *text, const char *want) {
    char got[2048];
    find_all(pat, text, got, sizeof got);
    T_CHECK(id, strcmp(got, want) == 0, "/%s/ on \"%s\": got \"%s\", want \"%s\"", pat, text, got, want);
}

/* Compiling pat fails with status want, and the message names the pattern
 * ("test") and, where given, contains frag. */
static void want_error(const char *id, const char *pat, size_t plen, ds_status want, const char *frag) {
    dsi_err e = {DS_OK, ""};
    dsi_regex *G = NULL;
    ds_status s = dsi_regex_compile(pat, plen, false, &g_al, "test", &G, &e);
    bool ok = s == want && G == NULL && strncmp(e.msg, "test: ", 6) == 0 && (!frag || strstr(e.msg, frag));
    T_CHECK(id, ok, "/%s/: status %d (%s), want %d with \"%s\" in the message", pat, s, e.msg, want,
            frag ? frag : "");
    dsi_regex_free(&g_al, G);
}

/* ---- regex-1: matches and non-matches ------------------------------------ */
static void test_basic(void) {
    want_match("regex-1.1", "abc", "xxabcxx", 2, 5);
    want_none("regex-1.2", "abd", "xxabcxx");
    want_match("regex-1.3", "[b-d]+", "abcde", 1, 4);
    want_match("regex-1.4", "[^a-c]", "abcde", 3, 4);
    want_none("regex-1.5", "[^a-e]", "abcde");
    /* leftmost first, not longest: the first alternative that matches wins */
    want_match("regex-1.6", "a|ab", "ab", 0, 1);
    want_match("regex-1.7", "ab|a", "ab", 0, 2);
    /* greedy, lazy, possessive */
    want_match("regex-1.8", "a.*b", "aXbYb", 0, 5);
    want_match("regex-1.9", "a.*?b", "aXbYb", 0, 3);
    want_none("regex-1.10", "a++a", "aaaa");
    want_none("regex-1.11", "(?>a+)a", "aaaa");
    want_match("regex-1.12", "a{2,3}", "aaaa", 0, 3);
    want_match("regex-1.13", "a{2}", "baaa", 1, 3);
    want_none("regex-1.14", "a{3,}", "aab");
    want_match("regex-1.15", "x{,2}y", "xxxy", 1, 4);
    /* '{' that is not an interval is literal */
    want_match("regex-1.16", "a{,}", "a{,}", 0, 4);
    /* '.' stops at a newline; '^' and '$' are line anchors, \A \z are not */
    want_none("regex-1.17", "a.b", "a\nb");
    want_match("regex-1.18", "^b", "a\nb", 2, 3);
    want_match("regex-1.19", "a$", "a\nb", 0, 1);
    want_none("regex-1.20", "\\Ab", "a\nb");
    want_match("regex-1.21", "b\\z", "a\nb", 2, 3);
    want_match("regex-1.22", "b\\Z", "ab\n", 1, 2);
    want_match("regex-1.23", "\\bfoo\\b", "a foo b", 2, 5);
    want_none("regex-1.24", "\\bfoo\\b", "afoob");
    /* an empty match is a match, at the first position */
    want_match("regex-1.25", "x*", "abc", 0, 0);
    /* escapes */
    want_match("regex-1.26", "\\x41\\u0042\\t", "zAB\t", 1, 4);
    want_match("regex-1.27", "\\.\\*", "a.*b", 1, 3);
    want_match("regex-1.28", "[\\]\\-]+", "a]-]b", 1, 4);
    /* empty iterations end a loop instead of spinning */
    want_match("regex-1.29", "(a|)*b", "aab", 0, 3);
    want_match("regex-1.30", "(?:x?)*y", "xxy", 0, 3);
}

/* ---- regex-2: Unicode classes --------------------------------------------- */
static void test_unicode(void) {
    /* \p{L}: Latin with accents, Cyrillic, Han; not digits or spaces */
    want_match("regex-2.1", "\\p{L}+", "1 caf\xC3\xA9 ", 2, 6);
    want_match("regex-2.2", "\\p{L}+", "12\xD0\x96\xD0\xB8\xE4\xB8\xAD!", 2, 5);
    want_none("regex-2.3", "\\p{L}", "123 !?");
    /* \p{N}: decimal digits of any script (Arabic-Indic three), letter
     * numbers (Roman numeral one) and other numbers (vulgar half) */
    want_match("regex-2.4", "\\p{N}+", "x\xD9\xA3\xE2\x85\xA0\xC2\xBD", 1, 4);
    want_none("regex-2.5", "\\p{N}", "abc\xC3\xA9");
    /* \d is Nd only: the half is not a digit */
    want_none("regex-2.6", "\\d", "\xC2\xBD");
    want_match("regex-2.7", "\\d", "\xC2\xBD\xD9\xA3", 1, 2);
    /* category spellings: short, long, any case, '_' ignored, \P and \p{^..} */
    want_match("regex-2.8", "\\p{Lu}+", "abCDe", 2, 4);
    want_match("regex-2.9", "\\p{Uppercase_Letter}+", "abCDe", 2, 4);
    want_match("regex-2.10", "\\p{letter}+", "12ab", 2, 4);
    want_match("regex-2.11", "\\P{L}+", "ab12c", 2, 4);
    want_match("regex-2.12", "\\p{^L}+", "ab12c", 2, 4);
    want_match("regex-2.13", "[\\p{P}\\p{S}]+", "a!+\xE2\x82\xAC" "b", 1, 4);
    /* \s is White_Space (ideographic space, NBSP), \w has marks and the
     * circled letters, \h is ASCII hex only */
    want_match("regex-2.14", "\\s+", "a\xE3\x80\x80\xC2\xA0" "b", 1, 3);
    want_match("regex-2.15", "\\w+", "!e\xCC\x81\xE2\x92\xB6_9!", 1, 6);
    want_none("regex-2.16", "\\h", "xyz\xEF\xBC\xA1");
    /* non-ASCII literals and ranges work on code points, not bytes */
    want_match("regex-2.17", "[\xE4\xB8\x80-\xE9\xBE\xA5]+", "ab\xE4\xB8\xAD\xE6\x96\x87" "c", 2, 4);
    want_match("regex-2.18", "\xC3\xA9+", "e\xC3\xA9\xC3\xA9", 1, 3);
    want_match("regex-2.19", ".", "\xF0\x9F\x98\x80", 0, 1);
}

/* ---- regex-3: lookaround and the DeepSeek pre-tokenizer ------------------- */
/* The DeepSeek-V3 tokenizer.json Split patterns, in order. */
static const char v3_num[] = "\\p{N}{1,3}";
static const char v3_cjk[] = "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+";
static const char v3_main[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

static void test_lookaround(void) {
    want_match("regex-3.1", "a(?=b)", "acab", 2, 3);
    want_match("regex-3.2", "a(?!b)", "abac", 2, 3);
    want_none("regex-3.3", "a(?=b)", "acad");
    want_match("regex-3.4", "(?<=x)a", "aaxa", 3, 4);
    want_match("regex-3.5", "(?<!x)a", "xaa", 2, 3);
    /* \s+(?!\S): a run of spaces gives its last one to the next word */
    want_match("regex-3.6", "\\s+(?!\\S)", "a   b", 1, 3);
    want_match("regex-3.7", "\\s+(?!\\S)", "a   ", 1, 4);
    want_all("regex-3.8", v3_main, "Hello  world!!\n\nfoo", "Hello| | world|!!\n\n|foo");
    want_all("regex-3.9", v3_main, "x.Ab (c) \xD0\x9F\xD1\x80\xD0\xB8", "x|.Ab| (|c|)| \xD0\x9F\xD1\x80\xD0\xB8");
    want_all("regex-3.10", v3_main, "a \n\n  b", "a| \n\n| | b");
    want_all("regex-3.11", v3_num, "12345 6", "123|45|6");
    want_all("regex-3.12", v3_cjk, "ab\xE4\xB8\xAD\xE6\x96\x87\xE3\x81\x8B\xE3\x82\xAB" "1",
             "\xE4\xB8\xAD\xE6\x96\x87\xE3\x81\x8B\xE3\x82\xAB");
    /* the GPT-2 pattern ByteLevel uses */
    want_all("regex-3.13", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
             "it's  42!", "it|'s| | 42|!");
}

/* ---- regex-4: case-insensitive groups -------------------------------------- */
static void test_case_insensitive(void) {
    /* Oniguruma's option groups are outside what we implement; a tokenizer
     * that uses them fails to load with this message instead of splitting
     * differently from the reference. */
    want_error("regex-4.1", "(?i)abc", 7, DS_ERR_UNSUPPORTED, "group options");
    want_error("regex-4.2", "(?i:'s|'t)", 10, DS_ERR_UNSUPPORTED, "group options");
    want_error("regex-4.3", "x(?-i:a)", 8, DS_ERR_UNSUPPORTED, "at character 2");
    /* case is significant everywhere else */
    want_none("regex-4.4", "abc", "ABC");
    want_none("regex-4.5", "[a-c]", "ABC");
}

/* ---- regex-5: malformed and unsupported patterns --------------------------- */
static void test_malformed(void) {
    want_error("regex-5.1", "(ab", 3, DS_ERR_JSON, "unmatched parenthesis");
    want_error("regex-5.2", "ab)", 3, DS_ERR_JSON, "unmatched close parenthesis");
    want_error("regex-5.3", "*a", 2, DS_ERR_JSON, "target of repeat operator");
    want_error("regex-5.4", "[ab", 3, DS_ERR_JSON, "premature end of character class");
    want_error("regex-5.5", "[z-a]", 5, DS_ERR_JSON, "empty range");
    want_error("regex-5.6", "ab\\", 3, DS_ERR_JSON, "ends with");
    want_error("regex-5.7", "^*", 2, DS_ERR_JSON, "target of repeat operator is invalid");
    want_error("regex-5.8", "a{1,100001}", 11, DS_ERR_LIMIT, "too big");
    want_error("regex-5.9", "\\p{Greek}", 9, DS_ERR_UNSUPPORTED, "\\p{Greek}");
    want_error("regex-5.10", "\\p{L", 4, DS_ERR_JSON, "unterminated");
    want_error("regex-5.11", "(a)\\1", 5, DS_ERR_UNSUPPORTED, "back references");
    want_error("regex-5.12", "[[:alpha:]]", 11, DS_ERR_UNSUPPORTED, "nested character classes");
    want_error("regex-5.13", "(?<=a+)b", 8, DS_ERR_UNSUPPORTED, "lookbehind of variable length");
    want_error("regex-5.14", "a\xC3", 2, DS_ERR_JSON, "invalid UTF-8");
    want_error("regex-5.15", "\\x{110000}", 10, DS_ERR_UNSUPPORTED, "above U+10FFFF");
    /* nesting deeper than RX_MAX_DEPTH (64) */
    char deep[200];
    size_t k = 0;
    for (int i = 0; i < 70; i++) deep[k++] = '(';
    deep[k++] = 'a';
    for (int i = 0; i < 70; i++) deep[k++] = ')';
    want_error("regex-5.16", deep, k, DS_ERR_LIMIT, "nested too deeply");
    /* a NUL inside the pattern is an ordinary character */
    dsi_err e = {DS_OK, ""};
    dsi_regex *G = NULL;
    ds_status s = dsi_regex_compile("a\0b", 3, false, &g_al, "test", &G, &e);
    T_STATUS("regex-5.17", s, DS_OK, e.msg);
    dsi_regex_free(&g_al, G);
    dsi_regex_free(&g_al, NULL);
}

/* ---- regex-6: pathological inputs ------------------------------------------ */
static void test_pathological(void) {
    static subj S;
    dsi_err e = {DS_OK, ""};
    /* exponential backtracking: stops at the step limit, does not hang */
    static const char *const expo[] = {"(a|a)*b", "(a|aa)+c", "(x+x+)+y"};
    static const char *const texts[] = {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"};
    for (int i = 0; i < 3; i++) {
        dsi_regex *G = NULL;
        ds_status st = dsi_regex_compile(expo[i], strlen(expo[i]), false, &g_al, "test", &G, &e);
        T_STATUS("regex-6.1", st, DS_OK, e.msg);
        if (st) continue;
        to_cps(&S, texts[i]);
        dsi_regex_ctx X;
        memset(&X, 0, sizeof X);
        X.al = &g_al;
        X.s = S.cp;
        X.n = S.n;
        X.slots = dsi_calloc(&g_al, dsi_regex_slots(G) + 1, sizeof *X.slots);
        size_t ms, me;
        int r = dsi_regex_search(G, &X, 0, &ms, &me);
        T_CHECK("regex-6.1", r == DSI_REGEX_LIMIT && X.steps <= 10000001u && X.sp == 0,
                "/%s/: result %d after %llu steps (stack %zu), want the step limit", expo[i], r,
                (unsigned long long)X.steps, X.sp);
        dsi_free(&g_al, X.stack);
        dsi_free(&g_al, X.slots);
        dsi_regex_free(&g_al, G);
    }
    /* a long run of spaces before a word: \s+(?!\S) gives back one
     * character, so the work is linear in the run */
    static subj L;
    L.n = 4000;
    for (size_t i = 0; i < L.n - 1; i++) L.cp[i] = ' ';
    L.cp[L.n - 1] = 'x';
    dsi_regex *G = NULL;
    if (dsi_regex_compile(v3_main, strlen(v3_main), false, &g_al, "test", &G, &e) == DS_OK) {
        dsi_regex_ctx X;
        memset(&X, 0, sizeof X);
        X.al = &g_al;
        X.s = L.cp;
        X.n = L.n;
        X.slots = dsi_calloc(&g_al, dsi_regex_slots(G) + 1, sizeof *X.slots);
        size_t ms = 0, me = 0;
        int r = dsi_regex_search(G, &X, 0, &ms, &me);
        T_CHECK("regex-6.2", r == 1 && ms == 0 && me == L.n - 2 && X.steps < 100000,
                "4000 spaces: result %d [%zu, %zu) in %llu steps", r, ms, me, (unsigned long long)X.steps);
        dsi_free(&g_al, X.stack);
        dsi_free(&g_al, X.slots);
        dsi_regex_free(&g_al, G);
    } else {
        T_CHECK("regex-6.2", 0, "the V3 pattern did not compile: %s", e.msg);
    }
    /* programs past RX_MAX_INSTS (1M instructions) are refused, not built */
    want_error("regex-6.3", "((ab){1000}){1000}", 18, DS_ERR_LIMIT, "too large");
    want_error("regex-6.4", "(((a|b){100}){100}){100}", 24, DS_ERR_LIMIT, "too large");
    /* a single repeated character is one instruction, whatever the count */
    want_match("regex-6.5", "a{100000}|b", "xb", 1, 2);
}

/* ---- regex-7: allocation failures ------------------------------------------ */

static void test_alloc(void) {
    ds_allocator fa = {f_malloc, f_realloc, f_free, NULL};
    dsi_alloc al;
    dsi_err e = {DS_OK, ""};
    if (dsi_alloc_init(&al, &fa, &e) != DS_OK) {
        T_CHECK("regex-7.0", 0, "allocator: %s", e.msg);
        return;
    }
    long runs = 0, bad = 0, leaks = 0;
    dsi_regex *G = NULL;
    for (fail_at = 0; fail_at < 100000; fail_at++) {
        count = live = 0;
        G = NULL;
        ds_status s = dsi_regex_compile(v3_main, strlen(v3_main), false, &al, "test", &G, &e);
        runs++;
        if (s == DS_OK) break;
        if (live) leaks++;
        if (s != DS_ERR_NOMEM || G) bad++;
    }
    T_CHECK("regex-7.1", bad == 0 && leaks == 0 && G && runs > 20, "compile: %ld runs: %ld misreported, %ld leaked",
            runs, bad, leaks);
    if (!G) return;
    /* search: the backtrack stack grows on demand; a failed growth is
     * DSI_REGEX_NOMEM, and the stack stays the caller's to free */
    static subj S;
    for (size_t i = 0; i < 3000; i++) S.cp[i] = i % 7 ? 'a' : ' ';
    S.n = 3000;
    runs = bad = 0;
    fail_at = -1;
    size_t *slots = dsi_calloc(&al, dsi_regex_slots(G) + 1, sizeof *slots);
    for (long k = 0; k < 100 && slots; k++) {
        dsi_regex_ctx X;
        memset(&X, 0, sizeof X);
        X.al = &al;
        X.s = S.cp;
        X.n = S.n;
        X.slots = slots;
        fail_at = count + k;
        size_t ms, me;
        int r = dsi_regex_search(G, &X, 0, &ms, &me);
        runs++;
        dsi_free(&al, X.stack);
        if (r == 1) break;
        if (r != DSI_REGEX_NOMEM) bad++;
    }
    fail_at = -1;
    T_CHECK("regex-7.2", bad == 0 && runs >= 1 && runs < 100, "search: %ld runs: %ld misreported", runs, bad);
    dsi_free(&al, slots);
    dsi_regex_free(&al, G);
    T_CHECK("regex-7.3", live == 0, "%ld blocks leaked", live);
}

int main(void) {
    dsi_err e = {DS_OK, ""};
    if (dsi_alloc_init(&g_al, NULL, &e) != DS_OK) return 1;
    test_basic();
    test_unicode();
    test_lookaround();
    test_case_insensitive();
    test_malformed();
    test_pathological();
    test_alloc();
    return t_finish("test_regex");
}
