/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * regex.c — a small backtracking regex engine over code points, matching
 * what the `tokenizers` library gets from Oniguruma (Ruby syntax): literals
 * and escapes, classes with ranges and negation, \p{..}/\P{..} general
 * categories, \s \S \d \D \w \W \h \H, '.', alternation (leftmost first),
 * groups, greedy/lazy/possessive quantifiers ? * + {m} {m,} {m,n} {,n},
 * atomic groups, lookahead and fixed-length lookbehind, anchors ^ $ \A \z \Z
 * \b \B ('^' and '$' are line anchors, as in Ruby). Anything else fails with
 * DS_ERR_UNSUPPORTED naming the construct.
 *
 * A pattern is parsed into a syntax tree, compiled to a program for a
 * backtracking machine, and run one start position at a time (skipping
 * positions no match can start at). The layer below is unicode.c, for UTF-8
 * and character properties; the tokenizer (tokenizer.c) is its user.
 */
#include "regex.h"
#include "unicode.h"

#include <stdlib.h>

/* ==== Limits ============================================================== */
/* Backtracking steps one regex search may take before giving up, as
 * Oniguruma's retry limit (10M) does, so hostile text cannot hang a call. */
#define RX_STEP_LIMIT 10000000u
/* Regex program size and nesting (patterns come from untrusted files). */
#define RX_MAX_INSTS (1u << 20)
#define RX_MAX_DEPTH 64
#define RX_MAX_REPEAT 100000u

/* ==== Range sets ========================================================== */
/* Character classes are compiled to sorted, disjoint code-point ranges, with a
 * bitmap for the Basic Multilingual Plane so that testing a character there
 * costs one load. */
typedef struct rr_list {
    uint32_t *v;          /* pairs lo, hi */
    size_t n, cap;        /* pairs */
    const dsi_alloc *al;
    bool failed;
} rr_list;

static void rr_add(rr_list *r, uint32_t lo, uint32_t hi) {
    if (r->failed) return;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        uint32_t *nv = dsi_realloc(r->al, r->v, nc * 2 * sizeof *nv);
        if (!nv) { r->failed = true; return; }
        r->v = nv;
        r->cap = nc;
    }
    r->v[2 * r->n] = lo;
    r->v[2 * r->n + 1] = hi;
    r->n++;
}

/* Adapter for the Unicode layer's range callbacks. */
static void rr_add_fn(void *u, uint32_t lo, uint32_t hi) { rr_add(u, lo, hi); }

static void rr_add_cats(rr_list *r, uint32_t mask) { dsi_uc_category_ranges(mask, rr_add_fn, r); }

static int rr_cmp(const void *a, const void *b) {
    uint32_t x = ((const uint32_t *)a)[0], y = ((const uint32_t *)b)[0];
    return x < y ? -1 : x > y;
}

/* Sorts and merges overlapping or adjacent ranges. */
static void rr_normalize(rr_list *r) {
    if (r->failed || r->n == 0) return;
    qsort(r->v, r->n, 2 * sizeof(uint32_t), rr_cmp);
    size_t o = 0;
    for (size_t i = 1; i < r->n; i++) {
        if (r->v[2 * i] <= r->v[2 * o + 1] + 1) {
            if (r->v[2 * i + 1] > r->v[2 * o + 1]) r->v[2 * o + 1] = r->v[2 * i + 1];
        } else {
            o++;
            r->v[2 * o] = r->v[2 * i];
            r->v[2 * o + 1] = r->v[2 * i + 1];
        }
    }
    r->n = o + 1;
}

/* Complement within [0, U+10FFFF] of a normalized list, in place. */
static void rr_negate(rr_list *r) {
    if (r->failed) return;
    rr_list t = {NULL, 0, 0, r->al, false};
    uint32_t next = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->v[2 * i] > next) rr_add(&t, next, r->v[2 * i] - 1);
        next = r->v[2 * i + 1] + 1;
    }
    if (next <= 0x10FFFF) rr_add(&t, next, 0x10FFFF);
    dsi_free(r->al, r->v);
    *r = t;
    if (t.failed) { dsi_free(r->al, t.v); r->v = NULL; r->n = r->cap = 0; r->failed = true; }
}

/* Appends another list (b's entries) to a. */
static void rr_append(rr_list *a, const rr_list *b) {
    if (b->failed) { a->failed = true; return; }
    for (size_t i = 0; i < b->n; i++) rr_add(a, b->v[2 * i], b->v[2 * i + 1]);
}

typedef struct rx_set {
    uint32_t *v;          /* normalized pairs */
    size_t n;
    uint64_t *bmp;        /* 1024 words: U+0000..U+FFFF */
} rx_set;

static bool rx_set_has(const rx_set *s, uint32_t c) {
    if (c < 0x10000) return (s->bmp[c >> 6] >> (c & 63)) & 1u;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < s->v[2 * mid]) hi = mid;
        else if (c > s->v[2 * mid + 1]) lo = mid + 1;
        else return true;
    }
    return false;
}

/* ==== Regex: syntax tree ================================================== */
enum { RN_EMPTY, RN_CHAR, RN_SET, RN_CAT, RN_ALT, RN_REP, RN_LOOK, RN_ATOMIC, RN_ASSERT };
enum { RA_BOL, RA_EOL, RA_BOS, RA_EOS, RA_EOS_NL, RA_WORDB, RA_NWORDB };

typedef struct rx_node {
    uint8_t type;
    uint8_t lazy;          /* RN_REP */
    uint8_t neg;           /* RN_LOOK: negative; */
    uint8_t behind;        /* RN_LOOK: lookbehind */
    uint8_t bag;           /* the body of a capturing group (a valid repeat target) */
    uint32_t val;          /* RN_CHAR: code point; RN_SET: set index; RN_ASSERT: kind */
    uint32_t min, max;     /* RN_REP (max UINT32_MAX = unbounded) */
    int32_t kid;           /* first child (CAT, ALT, REP, LOOK, ATOMIC) */
    int32_t next;          /* next sibling */
} rx_node;

enum { OP_CHAR, OP_SET, OP_ANY, OP_SPLIT, OP_JMP, OP_MATCH, OP_ASSERT, OP_LOOK, OP_ATOMIC, OP_REP, OP_SAVE,
       OP_EMPTYCHK, OP_BACK };

typedef struct rx_inst {
    uint8_t op;
    uint8_t flag;          /* OP_LOOK: 1 = negative; OP_REP: bit0 lazy, bit1 set (else char/any) */
    uint32_t a, b, c;
} rx_inst;

struct dsi_regex {
    rx_inst *code;
    uint32_t n_code;
    rx_set *sets;
    uint32_t n_sets;
    uint32_t n_slots;      /* saved positions for empty-loop checks */
    int first_set;         /* set of characters that can start a match, or -1 */
};

typedef struct rx_parser {
    const uint32_t *p;
    size_t i, n;
    rx_node *nodes;
    size_t n_nodes, cap_nodes;
    dsi_regex *prog;         /* sets are added here while parsing */
    const dsi_alloc *al;
    dsi_err *e;
    const char *what;      /* for messages: "pre_tokenizer[2] regex" */
    int depth;
} rx_parser;

static ds_status rx_nomem(rx_parser *P) { return dsi_fail(P->e, DS_ERR_NOMEM, "%s: out of memory", P->what); }

static ds_status rx_syntax(rx_parser *P, ds_status s, const char *why) {
    return dsi_fail(P->e, s, "%s: %s at character %zu", P->what, why, P->i);
}

static int32_t rx_new_node(rx_parser *P, uint8_t type) {
    if (P->n_nodes == P->cap_nodes) {
        size_t nc = P->cap_nodes ? P->cap_nodes * 2 : 64;
        if (nc > RX_MAX_INSTS) return -1;
        rx_node *nn = dsi_realloc(P->al, P->nodes, nc * sizeof *nn);
        if (!nn) return -1;
        P->nodes = nn;
        P->cap_nodes = nc;
    }
    rx_node *nd = &P->nodes[P->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->type = type;
    nd->kid = nd->next = -1;
    return (int32_t)P->n_nodes++;
}

/* Turns a range list into a set of the program (takes ownership of r->v). */
static int32_t rx_add_set(rx_parser *P, rr_list *r) {
    rr_normalize(r);
    if (r->failed) return -1;
    dsi_regex *G = P->prog;
    rx_set *ns = dsi_realloc(P->al, G->sets, (G->n_sets + 1) * sizeof *ns);
    if (!ns) return -1;
    G->sets = ns;
    rx_set *s = &G->sets[G->n_sets];
    s->bmp = dsi_calloc(P->al, 1024, sizeof(uint64_t));
    if (!s->bmp) return -1;
    s->v = r->v;
    s->n = r->n;
    r->v = NULL;
    r->n = r->cap = 0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t lo = s->v[2 * i], hi = s->v[2 * i + 1];
        if (lo > 0xFFFF) break;
        if (hi > 0xFFFF) hi = 0xFFFF;
        for (uint32_t c = lo; c <= hi; c++) s->bmp[c >> 6] |= (uint64_t)1 << (c & 63);
    }
    return (int32_t)G->n_sets++;
}

/* Adds a predefined class (\s \d \w \h \p{..}; neg for the capital forms) to
 * r. Returns DS_OK or an error. */
static ds_status rx_class_escape(rx_parser *P, uint32_t c, rr_list *r) {
    rr_list t = {NULL, 0, 0, P->al, false};
    bool neg = false;
    switch (c) {
    case 'S': neg = true; /* fall through */
    case 's':
        dsi_uc_class_ranges(DSI_UC_CLASS_SPACE, rr_add_fn, &t);
        break;
    case 'D': neg = true; /* fall through */
    case 'd': dsi_uc_class_ranges(DSI_UC_CLASS_DIGIT, rr_add_fn, &t); break;
    case 'W': neg = true; /* fall through */
    case 'w':
        dsi_uc_class_ranges(DSI_UC_CLASS_WORD, rr_add_fn, &t);
        break;
    case 'H': neg = true; /* fall through */
    case 'h': rr_add(&t, '0', '9'); rr_add(&t, 'A', 'F'); rr_add(&t, 'a', 'f'); break;
    case 'P': neg = true; /* fall through */
    case 'p': {
        if (P->i >= P->n || P->p[P->i] != '{') return rx_syntax(P, DS_ERR_UNSUPPORTED, "\\p without {name}");
        size_t start = ++P->i;
        while (P->i < P->n && P->p[P->i] != '}') P->i++;
        if (P->i >= P->n) return rx_syntax(P, DS_ERR_JSON, "unterminated \\p{");
        size_t end = P->i++;
        if (start < end && P->p[start] == '^') { neg = !neg; start++; }
        uint32_t mask = dsi_uc_property_mask(P->p + start, end - start);
        if (!mask) {
            char nm[48];
            size_t k = 0;
            for (size_t i = start; i < end && k + 5 < sizeof nm; i++) k += dsi_utf8_encode((uint8_t *)nm + k, P->p[i]);
            nm[k] = 0;
            dsi_free(P->al, t.v);
            return dsi_fail(P->e, DS_ERR_UNSUPPORTED, "%s: unsupported character property \\p{%s}", P->what, nm);
        }
        rr_add_cats(&t, mask);
        break;
    }
    default: return DS_ERR_INTERNAL;
    }
    if (neg) { rr_normalize(&t); rr_negate(&t); }
    rr_append(r, &t);
    dsi_free(P->al, t.v);
    return r->failed ? rx_nomem(P) : DS_OK;
}

static int rx_hexval(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* A single-character escape after '\' (P->i at the letter). Returns 1 with
 * *cp set, 0 when it is not a plain character (class escapes, anchors), or
 * a negative status. in_class: \b means backspace. */
static int rx_char_escape(rx_parser *P, bool in_class, uint32_t *cp, ds_status *st) {
    uint32_t c = P->p[P->i];
    *st = DS_OK;
    switch (c) {
    case 't': *cp = 9; P->i++; return 1;
    case 'n': *cp = 10; P->i++; return 1;
    case 'r': *cp = 13; P->i++; return 1;
    case 'f': *cp = 12; P->i++; return 1;
    case 'v': *cp = 11; P->i++; return 1;
    case 'a': *cp = 7; P->i++; return 1;
    case 'e': *cp = 27; P->i++; return 1;
    case 'b': if (in_class) { *cp = 8; P->i++; return 1; } return 0;
    case 'x': {
        P->i++;
        uint32_t v = 0;
        if (P->i < P->n && P->p[P->i] == '{') {
            P->i++;
            int nd = 0;
            while (P->i < P->n && rx_hexval(P->p[P->i]) >= 0 && nd < 8) { v = v * 16 + (uint32_t)rx_hexval(P->p[P->i++]); nd++; }
            if (P->i >= P->n || P->p[P->i] != '}' || nd == 0) { *st = rx_syntax(P, DS_ERR_JSON, "bad \\x{...}"); return -1; }
            P->i++;
        } else {
            int nd = 0;
            while (nd < 2 && P->i < P->n && rx_hexval(P->p[P->i]) >= 0) { v = v * 16 + (uint32_t)rx_hexval(P->p[P->i++]); nd++; }
        }
        if (v > 0x10FFFF) { *st = rx_syntax(P, DS_ERR_UNSUPPORTED, "code point above U+10FFFF"); return -1; }
        *cp = v;
        return 1;
    }
    case 'u': {
        uint32_t v = 0;
        if (P->i + 4 < P->n + 0 && rx_hexval(P->p[P->i + 1]) >= 0 && rx_hexval(P->p[P->i + 2]) >= 0 &&
            rx_hexval(P->p[P->i + 3]) >= 0 && rx_hexval(P->p[P->i + 4]) >= 0) {
            for (int k = 1; k <= 4; k++) v = v * 16 + (uint32_t)rx_hexval(P->p[P->i + (size_t)k]);
            P->i += 5;
            *cp = v;
            return 1;
        }
        *st = rx_syntax(P, DS_ERR_UNSUPPORTED, "bad \\u escape");
        return -1;
    }
    case '0': {
        P->i++;
        uint32_t v = 0;
        for (int k = 0; k < 2 && P->i < P->n && P->p[P->i] >= '0' && P->p[P->i] <= '7'; k++) v = v * 8 + (P->p[P->i++] - '0');
        *cp = v;
        return 1;
    }
    default: break;
    }
    if (c >= '1' && c <= '9') {
        /* Oniguruma reads \1.. as a back reference, or as octal when there
         * are that many digits; we support only the octal form \ooo. */
        if (c <= '7' && P->i + 2 < P->n && P->p[P->i + 1] >= '0' && P->p[P->i + 1] <= '7' && P->p[P->i + 2] >= '0' &&
            P->p[P->i + 2] <= '7') {
            *cp = (c - '0') * 64 + (P->p[P->i + 1] - '0') * 8 + (P->p[P->i + 2] - '0');
            P->i += 3;
            return 1;
        }
        *st = rx_syntax(P, DS_ERR_UNSUPPORTED, "back references");
        return -1;
    }
    if (strchr("sSdDwWhHpP", (int)(c < 128 ? c : 0)) && c < 128) return 0;
    if (!in_class && c < 128 && strchr("AzZbBG", (int)c)) return 0;
    if (c < 128 && strchr("kgKRXNOyYcCM", (int)c)) {
        *st = rx_syntax(P, DS_ERR_UNSUPPORTED, "escape sequence not supported");
        return -1;
    }
    /* Oniguruma (Ruby syntax) takes any other escaped character literally. */
    *cp = c;
    P->i++;
    return 1;
}

/* '[' ... ']' (P->i just after '['). */
static ds_status rx_parse_class(rx_parser *P, int32_t *out) {
    rr_list r = {NULL, 0, 0, P->al, false};
    bool neg = false;
    ds_status st = DS_OK;
    if (P->i < P->n && P->p[P->i] == '^') { neg = true; P->i++; }
    bool first = true;
    for (;;) {
        if (P->i >= P->n) { st = rx_syntax(P, DS_ERR_JSON, "premature end of character class"); goto fail; }
        uint32_t c = P->p[P->i];
        if (c == ']' && !first) { P->i++; break; }
        first = false;
        if (c == '[') { st = rx_syntax(P, DS_ERR_UNSUPPORTED, "nested character classes and [:posix:]"); goto fail; }
        if (c == '&' && P->i + 1 < P->n && P->p[P->i + 1] == '&') {
            st = rx_syntax(P, DS_ERR_UNSUPPORTED, "character class intersection &&");
            goto fail;
        }
        uint32_t lo;
        if (c == '\\') {
            P->i++;
            if (P->i >= P->n) { st = rx_syntax(P, DS_ERR_JSON, "pattern ends with \\"); goto fail; }
            int k = rx_char_escape(P, true, &lo, &st);
            if (k < 0) goto fail;
            if (k == 0) {
                uint32_t e = P->p[P->i++];
                st = rx_class_escape(P, e, &r);
                if (st) goto fail;
                if (P->i + 1 < P->n && P->p[P->i] == '-' && P->p[P->i + 1] != ']') {
                    st = rx_syntax(P, DS_ERR_JSON, "unmatched range specifier in character class");
                    goto fail;
                }
                continue;
            }
        } else {
            lo = c;
            P->i++;
        }
        uint32_t hi = lo;
        if (P->i + 1 < P->n && P->p[P->i] == '-' && P->p[P->i + 1] != ']') {
            P->i++;
            uint32_t d = P->p[P->i];
            if (d == '\\') {
                P->i++;
                if (P->i >= P->n) { st = rx_syntax(P, DS_ERR_JSON, "pattern ends with \\"); goto fail; }
                int k = rx_char_escape(P, true, &hi, &st);
                if (k < 0) goto fail;
                if (k == 0) { st = rx_syntax(P, DS_ERR_JSON, "unmatched range specifier in character class"); goto fail; }
            } else if (d == '[') {
                st = rx_syntax(P, DS_ERR_UNSUPPORTED, "nested character classes");
                goto fail;
            } else {
                hi = d;
                P->i++;
            }
            if (hi < lo) { st = rx_syntax(P, DS_ERR_JSON, "empty range in character class"); goto fail; }
        }
        rr_add(&r, lo, hi);
    }
    rr_normalize(&r);
    if (neg) rr_negate(&r);
    if (r.failed) { st = rx_nomem(P); goto fail; }
    int32_t si = rx_add_set(P, &r);
    if (si < 0) { st = rx_nomem(P); goto fail; }
    int32_t nd = rx_new_node(P, RN_SET);
    if (nd < 0) { st = rx_nomem(P); goto fail; }
    P->nodes[nd].val = (uint32_t)si;
    *out = nd;
    return DS_OK;
fail:
    dsi_free(P->al, r.v);
    return st;
}

static ds_status rx_parse_alt(rx_parser *P, int32_t *out);

/* Reads a {m}, {m,}, {m,n} or {,n} interval at P->i ('{'). Returns false
 * (and leaves P->i) when the text is not an interval: then '{' is literal. */
static bool rx_interval(rx_parser *P, uint32_t *mn, uint32_t *mx, bool *too_big, bool *swapped) {
    size_t i = P->i + 1;
    uint64_t a = 0, b = 0;
    bool has_a = false, has_b = false, comma = false;
    *too_big = false;
    *swapped = false;
    while (i < P->n && P->p[i] >= '0' && P->p[i] <= '9') { a = a * 10 + (P->p[i] - '0'); if (a > 1000000) a = 1000000; i++; has_a = true; }
    if (i < P->n && P->p[i] == ',') {
        comma = true;
        i++;
        while (i < P->n && P->p[i] >= '0' && P->p[i] <= '9') { b = b * 10 + (P->p[i] - '0'); if (b > 1000000) b = 1000000; i++; has_b = true; }
    }
    if (i >= P->n || P->p[i] != '}') return false;
    if (!has_a && !has_b) return false;            /* "{}" and "{,}" are literal */
    if (!comma) b = a;
    else if (!has_b) b = UINT32_MAX;
    if (!has_a) a = 0;
    if (a > RX_MAX_REPEAT || (b != UINT32_MAX && b > RX_MAX_REPEAT)) *too_big = true;
    if (b != UINT32_MAX && b < a) {   /* Oniguruma reads {3,1} as a possessive {1,3} */
        uint64_t t = a;
        a = b;
        b = t;
        *swapped = true;
    }
    *mn = (uint32_t)a;
    *mx = (uint32_t)b;
    P->i = i + 1;
    return true;
}

/* atom ::= '(' alt ')' | '[' class ']' | '.' | '^' | '$' | escape | char */
static ds_status rx_parse_atom(rx_parser *P, int32_t *out) {
    uint32_t c = P->p[P->i];
    ds_status st;
    int32_t nd;
    if (c == '(') {
        P->i++;
        uint8_t kind = 0;   /* 0 group, 1 lookahead, 2 lookbehind, 3 atomic */
        bool neg = false, capture = true;
        if (P->i < P->n && P->p[P->i] == '?') {
            uint32_t d = P->i + 1 < P->n ? P->p[P->i + 1] : 0;
            capture = false;
            if (d == ':') { P->i += 2; }
            else if (d == '=' || d == '!') { kind = 1; neg = d == '!'; P->i += 2; }
            else if (d == '>') { kind = 3; P->i += 2; }
            else if (d == '<' && P->i + 2 < P->n && (P->p[P->i + 2] == '=' || P->p[P->i + 2] == '!')) {
                kind = 2; neg = P->p[P->i + 2] == '!'; P->i += 3;
            } else if (d == '<' || d == 'P' || d == '\'') {
                /* named group: skip the name, treat as a plain group */
                capture = true;
                uint32_t close = d == '\'' ? '\'' : '>';
                size_t j = P->i + (d == 'P' ? 3 : 2);
                while (j < P->n && P->p[j] != close) j++;
                if (j >= P->n) return rx_syntax(P, DS_ERR_JSON, "bad group name");
                P->i = j + 1;
            } else return rx_syntax(P, DS_ERR_UNSUPPORTED, "group options (?...)");
        }
        if (++P->depth > RX_MAX_DEPTH) return rx_syntax(P, DS_ERR_LIMIT, "groups nested too deeply");
        int32_t body;
        st = rx_parse_alt(P, &body);
        P->depth--;
        if (st) return st;
        if (P->i >= P->n || P->p[P->i] != ')') return rx_syntax(P, DS_ERR_JSON, "unmatched parenthesis");
        P->i++;
        if (kind == 0) {
            P->nodes[body].bag = capture;
            *out = body;
            return DS_OK;
        }
        nd = rx_new_node(P, kind == 3 ? RN_ATOMIC : RN_LOOK);
        if (nd < 0) return rx_nomem(P);
        P->nodes[nd].kid = body;
        P->nodes[nd].neg = neg;
        P->nodes[nd].behind = kind == 2;
        *out = nd;
        return DS_OK;
    }
    if (c == '[') {
        P->i++;
        return rx_parse_class(P, out);
    }
    if (c == '*' || c == '+' || c == '?') return rx_syntax(P, DS_ERR_JSON, "target of repeat operator is not specified");
    if (c == '{') {
        uint32_t a, b;
        bool big, sw;
        size_t save = P->i;
        if (rx_interval(P, &a, &b, &big, &sw)) { P->i = save; return rx_syntax(P, DS_ERR_JSON, "target of repeat operator is not specified"); }
    }
    if (c == '.' || c == '^' || c == '$') {
        P->i++;
        if (c == '.') {
            nd = rx_new_node(P, RN_SET);
            if (nd < 0) return rx_nomem(P);
            P->nodes[nd].type = RN_CHAR;
            P->nodes[nd].val = UINT32_MAX;   /* any character but '\n' */
        } else {
            nd = rx_new_node(P, RN_ASSERT);
            if (nd < 0) return rx_nomem(P);
            P->nodes[nd].val = c == '^' ? RA_BOL : RA_EOL;
        }
        *out = nd;
        return DS_OK;
    }
    uint32_t cp = c;
    if (c == '\\') {
        P->i++;
        if (P->i >= P->n) return rx_syntax(P, DS_ERR_JSON, "pattern ends with \\");
        int k = rx_char_escape(P, false, &cp, &st);
        if (k < 0) return st;
        if (k == 0) {
            uint32_t e = P->p[P->i++];
            const char *anch = "AzZbB";
            const char *hit = e < 128 ? strchr(anch, (int)e) : NULL;
            if (e == 'G') return rx_syntax(P, DS_ERR_UNSUPPORTED, "\\G");
            if (hit) {
                static const uint8_t kinds[] = {RA_BOS, RA_EOS, RA_EOS_NL, RA_WORDB, RA_NWORDB};
                nd = rx_new_node(P, RN_ASSERT);
                if (nd < 0) return rx_nomem(P);
                P->nodes[nd].val = kinds[hit - anch];
                *out = nd;
                return DS_OK;
            }
            rr_list r = {NULL, 0, 0, P->al, false};
            st = rx_class_escape(P, e, &r);
            if (st) { dsi_free(P->al, r.v); return st; }
            int32_t si = rx_add_set(P, &r);
            dsi_free(P->al, r.v);
            if (si < 0) return rx_nomem(P);
            nd = rx_new_node(P, RN_SET);
            if (nd < 0) return rx_nomem(P);
            P->nodes[nd].val = (uint32_t)si;
            *out = nd;
            return DS_OK;
        }
    } else {
        P->i++;
    }
    nd = rx_new_node(P, RN_CHAR);
    if (nd < 0) return rx_nomem(P);
    P->nodes[nd].val = cp;
    *out = nd;
    return DS_OK;
}

/* Oniguruma refuses to repeat an anchor or lookaround, also through
 * non-capturing groups and in any branch of an alternation (its
 * is_invalid_quantifier_target); a sequence of two or more nodes, a
 * capturing or atomic group, is fine. */
static bool rx_bad_repeat_target(const rx_parser *P, int32_t id) {
    const rx_node *nd = &P->nodes[id];
    if (nd->bag) return false;
    switch (nd->type) {
    case RN_ASSERT: case RN_LOOK: return true;
    case RN_CAT: {
        int32_t k = nd->kid;
        return k >= 0 && P->nodes[k].next < 0 && rx_bad_repeat_target(P, k);
    }
    case RN_ALT:
        for (int32_t k = nd->kid; k >= 0; k = P->nodes[k].next)
            if (rx_bad_repeat_target(P, k)) return true;
        return false;
    default: return false;
    }
}

/* seq ::= (atom quantifier*)* ; stops at '|', ')' or the end. */
static ds_status rx_parse_seq(rx_parser *P, int32_t *out) {
    int32_t cat = rx_new_node(P, RN_CAT);
    if (cat < 0) return rx_nomem(P);
    int32_t last = -1;
    while (P->i < P->n && P->p[P->i] != '|' && P->p[P->i] != ')') {
        int32_t atom = -1;
        ds_status st = rx_parse_atom(P, &atom);
        if (st) return st;
        for (;;) {
            if (P->i >= P->n) break;
            uint32_t q = P->p[P->i];
            uint32_t mn, mx;
            bool interval = false, swapped = false;
            if (q == '*') { mn = 0; mx = UINT32_MAX; P->i++; }
            else if (q == '+') { mn = 1; mx = UINT32_MAX; P->i++; }
            else if (q == '?') { mn = 0; mx = 1; P->i++; }
            else if (q == '{') {
                bool big;
                if (!rx_interval(P, &mn, &mx, &big, &swapped)) break;
                if (big) return rx_syntax(P, DS_ERR_LIMIT, "too big number for repeat range");
                interval = true;
            } else break;
            if (rx_bad_repeat_target(P, atom)) return rx_syntax(P, DS_ERR_JSON, "target of repeat operator is invalid");
            int32_t rep = rx_new_node(P, RN_REP);
            if (rep < 0) return rx_nomem(P);
            P->nodes[rep].kid = atom;
            P->nodes[rep].min = mn;
            P->nodes[rep].max = mx;
            if (swapped) {
                /* possessive; a following ? or + is another quantifier */
                int32_t at = rx_new_node(P, RN_ATOMIC);
                if (at < 0) return rx_nomem(P);
                P->nodes[at].kid = rep;
                rep = at;
            } else if (P->i < P->n && P->p[P->i] == '?') { P->nodes[rep].lazy = 1; P->i++; }
            else if (!interval && P->i < P->n && P->p[P->i] == '+') {
                /* possessive: an atomic group around the greedy repeat */
                P->i++;
                int32_t at = rx_new_node(P, RN_ATOMIC);
                if (at < 0) return rx_nomem(P);
                P->nodes[at].kid = rep;
                rep = at;
            }
            atom = rep;
        }
        if (last < 0) P->nodes[cat].kid = atom; else P->nodes[last].next = atom;
        last = atom;
    }
    *out = cat;
    return DS_OK;
}

/* alt ::= seq ('|' seq)* */
static ds_status rx_parse_alt(rx_parser *P, int32_t *out) {
    int32_t first;
    ds_status st = rx_parse_seq(P, &first);
    if (st) return st;
    if (P->i >= P->n || P->p[P->i] != '|') { *out = first; return DS_OK; }
    int32_t alt = rx_new_node(P, RN_ALT);
    if (alt < 0) return rx_nomem(P);
    P->nodes[alt].kid = first;
    int32_t last = first;
    while (P->i < P->n && P->p[P->i] == '|') {
        P->i++;
        int32_t s;
        st = rx_parse_seq(P, &s);
        if (st) return st;
        P->nodes[last].next = s;
        last = s;
    }
    *out = alt;
    return DS_OK;
}

/* ==== Regex: compiler ===================================================== */
typedef struct rx_compiler {
    rx_parser *P;
    rx_inst *code;
    size_t n, cap;
    bool failed;            /* out of memory or too large */
    bool too_big;
} rx_compiler;

static uint32_t rx_emit(rx_compiler *C, uint8_t op, uint8_t flag, uint32_t a, uint32_t b, uint32_t c) {
    if (C->failed) return 0;
    if (C->n >= RX_MAX_INSTS) { C->failed = C->too_big = true; return 0; }
    if (C->n == C->cap) {
        size_t nc = C->cap ? C->cap * 2 : 64;
        rx_inst *ni = dsi_realloc(C->P->al, C->code, nc * sizeof *ni);
        if (!ni) { C->failed = true; return 0; }
        C->code = ni;
        C->cap = nc;
    }
    rx_inst *I = &C->code[C->n];
    I->op = op;
    I->flag = flag;
    I->a = a;
    I->b = b;
    I->c = c;
    return (uint32_t)C->n++;
}

/* Whether a node can match the empty string (for empty-loop checks). */
static bool rx_nullable(const rx_parser *P, int32_t id) {
    const rx_node *nd = &P->nodes[id];
    switch (nd->type) {
    case RN_EMPTY: case RN_ASSERT: case RN_LOOK: return true;
    case RN_CHAR: case RN_SET: return false;
    case RN_CAT:
        for (int32_t k = nd->kid; k >= 0; k = P->nodes[k].next)
            if (!rx_nullable(P, k)) return false;
        return true;
    case RN_ALT:
        for (int32_t k = nd->kid; k >= 0; k = P->nodes[k].next)
            if (rx_nullable(P, k)) return true;
        return false;
    case RN_REP: return nd->min == 0 || rx_nullable(P, nd->kid);
    case RN_ATOMIC: return rx_nullable(P, nd->kid);
    }
    return true;
}

/* Length in characters every match of the node has, or -1 if it varies
 * (lookbehind needs a fixed length). */
static long rx_fixed_len(const rx_parser *P, int32_t id) {
    const rx_node *nd = &P->nodes[id];
    switch (nd->type) {
    case RN_EMPTY: case RN_ASSERT: case RN_LOOK: return 0;
    case RN_CHAR: case RN_SET: return 1;
    case RN_CAT: {
        long t = 0;
        for (int32_t k = nd->kid; k >= 0; k = P->nodes[k].next) {
            long l = rx_fixed_len(P, k);
            if (l < 0 || t > 1000000) return -1;
            t += l;
        }
        return t;
    }
    case RN_ALT: {
        long t = -2;
        for (int32_t k = nd->kid; k >= 0; k = P->nodes[k].next) {
            long l = rx_fixed_len(P, k);
            if (l < 0 || (t != -2 && l != t)) return -1;
            t = l;
        }
        return t < 0 ? 0 : t;
    }
    case RN_REP: {
        if (nd->min != nd->max) return -1;
        long l = rx_fixed_len(P, nd->kid);
        if (l < 0 || (l && nd->min > 1000000 / (unsigned long)l)) return -1;
        return l * (long)nd->min;
    }
    case RN_ATOMIC: return rx_fixed_len(P, nd->kid);
    }
    return -1;
}

static void rx_compile_node(rx_compiler *C, int32_t id, int depth);

static void rx_compile_rep(rx_compiler *C, const rx_node *nd, int depth) {
    rx_parser *P = C->P;
    const rx_node *kid = &P->nodes[nd->kid];
    if (kid->type == RN_CHAR || kid->type == RN_SET) {
        /* one instruction for a repeated single character: it consumes the
         * longest run, then gives characters back one at a time */
        uint8_t flag = (uint8_t)(nd->lazy ? 1 : 0);
        uint32_t a = kid->val;
        if (kid->type == RN_SET) flag |= 2;
        rx_emit(C, OP_REP, flag, a, nd->min, nd->max);
        return;
    }
    for (uint32_t i = 0; i < nd->min && !C->failed; i++) rx_compile_node(C, nd->kid, depth + 1);
    if (nd->max == nd->min) return;
    if (nd->max == UINT32_MAX) {
        /* L: SPLIT body, exit ; body: [SAVE s] x [EMPTYCHK s, exit] JMP L ; exit: */
        bool nullable = rx_nullable(P, nd->kid);
        uint32_t slot = 0;
        if (nullable) slot = C->P->prog->n_slots++;
        uint32_t L = rx_emit(C, OP_SPLIT, 0, 0, 0, 0);
        uint32_t body = (uint32_t)C->n;
        if (nullable) rx_emit(C, OP_SAVE, 0, slot, 0, 0);
        rx_compile_node(C, nd->kid, depth + 1);
        uint32_t chk = 0;
        if (nullable) chk = rx_emit(C, OP_EMPTYCHK, 0, slot, 0, 0);
        rx_emit(C, OP_JMP, 0, L, 0, 0);
        if (C->failed) return;
        uint32_t exit = (uint32_t)C->n;
        if (nullable) C->code[chk].b = exit;
        C->code[L].a = nd->lazy ? exit : body;
        C->code[L].b = nd->lazy ? body : exit;
        return;
    }
    /* (max - min) nested optional copies, each skipping to the common exit */
    uint32_t k = nd->max - nd->min;
    size_t first_split = C->n;
    uint32_t *splits = dsi_malloc(P->al, (size_t)k * sizeof *splits);
    if (!splits) { C->failed = true; return; }
    for (uint32_t i = 0; i < k && !C->failed; i++) {
        splits[i] = rx_emit(C, OP_SPLIT, 0, 0, 0, 0);
        rx_compile_node(C, nd->kid, depth + 1);
    }
    (void)first_split;
    if (!C->failed) {
        uint32_t exit = (uint32_t)C->n;
        for (uint32_t i = 0; i < k; i++) {
            uint32_t body = splits[i] + 1;
            C->code[splits[i]].a = nd->lazy ? exit : body;
            C->code[splits[i]].b = nd->lazy ? body : exit;
        }
    }
    dsi_free(P->al, splits);
}

static void rx_compile_node(rx_compiler *C, int32_t id, int depth) {
    if (C->failed) return;
    if (depth > 4 * RX_MAX_DEPTH + 16) { C->failed = C->too_big = true; return; }
    rx_parser *P = C->P;
    const rx_node nd = P->nodes[id];
    switch (nd.type) {
    case RN_EMPTY: break;
    case RN_CHAR:
        if (nd.val == UINT32_MAX) rx_emit(C, OP_ANY, 0, 0, 0, 0);
        else rx_emit(C, OP_CHAR, 0, nd.val, 0, 0);
        break;
    case RN_SET: rx_emit(C, OP_SET, 0, nd.val, 0, 0); break;
    case RN_ASSERT: rx_emit(C, OP_ASSERT, 0, nd.val, 0, 0); break;
    case RN_CAT:
        for (int32_t k = nd.kid; k >= 0 && !C->failed; k = P->nodes[k].next) rx_compile_node(C, k, depth + 1);
        break;
    case RN_ALT: {
        /* SPLIT L1, N1 ; L1: x1 ; JMP end ; N1: SPLIT L2, N2 ; ... ; xk ; end: */
        uint32_t jumps_head = UINT32_MAX;   /* chain of JMPs to patch through their 'a' field */
        for (int32_t k = nd.kid; k >= 0 && !C->failed; k = P->nodes[k].next) {
            if (P->nodes[k].next >= 0) {
                uint32_t s = rx_emit(C, OP_SPLIT, 0, 0, 0, 0);
                rx_compile_node(C, k, depth + 1);
                uint32_t j = rx_emit(C, OP_JMP, 0, jumps_head, 0, 0);
                if (C->failed) return;
                jumps_head = j;
                C->code[s].a = s + 1;
                C->code[s].b = (uint32_t)C->n;
            } else {
                rx_compile_node(C, k, depth + 1);
            }
        }
        if (C->failed) return;
        uint32_t end = (uint32_t)C->n;
        while (jumps_head != UINT32_MAX) {
            uint32_t nx = C->code[jumps_head].a;
            C->code[jumps_head].a = end;
            jumps_head = nx;
        }
        break;
    }
    case RN_REP: rx_compile_rep(C, &nd, depth); break;
    case RN_LOOK:
    case RN_ATOMIC: {
        /* LOOK/ATOMIC a=body b=continuation c=lookbehind length+1 ; body ... MATCH ; cont: */
        uint32_t behind = 0;
        if (nd.type == RN_LOOK && nd.behind) {
            long l = rx_fixed_len(P, nd.kid);
            if (l < 0) { C->failed = true; C->too_big = false; P->e->status = DS_ERR_UNSUPPORTED; return; }
            behind = (uint32_t)l + 1;
        }
        uint32_t at = rx_emit(C, nd.type == RN_LOOK ? OP_LOOK : OP_ATOMIC, nd.neg, 0, 0, behind);
        rx_compile_node(C, nd.kid, depth + 1);
        if (behind) rx_emit(C, OP_BACK, 0, 0, 0, 0);
        rx_emit(C, OP_MATCH, 0, 0, 0, 0);
        if (C->failed) return;
        C->code[at].a = at + 1;
        C->code[at].b = (uint32_t)C->n;
        break;
    }
    }
}

/* The characters that can begin a match, collected by following the
 * program's empty moves from the start. Returns false when the start is
 * nullable or guarded by an assertion (then every position must be tried). */
static bool rx_first_chars(const dsi_regex *G, const rx_inst *code, uint32_t n, rr_list *r, const dsi_alloc *al) {
    uint8_t *seen = dsi_calloc(al, n ? n : 1, 1);
    uint32_t *stack = dsi_malloc(al, (size_t)(n ? n : 1) * 2 * sizeof *stack);
    bool ok = seen && stack;
    size_t sp = 0;
    if (ok) stack[sp++] = 0;
    while (ok && sp) {
        uint32_t pc = stack[--sp];
        if (pc >= n || seen[pc]) continue;
        seen[pc] = 1;
        const rx_inst *I = &code[pc];
        switch (I->op) {
        case OP_CHAR: rr_add(r, I->a, I->a); break;
        case OP_ANY: rr_add(r, 0, 9); rr_add(r, 11, 0x10FFFF); break;
        case OP_SET: rr_append(r, &(rr_list){G->sets[I->a].v, G->sets[I->a].n, 0, al, false}); break;
        case OP_REP:
            if (I->flag & 2) rr_append(r, &(rr_list){G->sets[I->a].v, G->sets[I->a].n, 0, al, false});
            else if (I->a == UINT32_MAX) { rr_add(r, 0, 9); rr_add(r, 11, 0x10FFFF); }
            else rr_add(r, I->a, I->a);
            if (I->b == 0) stack[sp++] = pc + 1;
            break;
        case OP_SPLIT: stack[sp++] = I->a; stack[sp++] = I->b; break;
        case OP_JMP: stack[sp++] = I->a; break;
        case OP_SAVE: stack[sp++] = pc + 1; break;
        case OP_EMPTYCHK: stack[sp++] = pc + 1; stack[sp++] = I->b; break;
        case OP_ATOMIC: stack[sp++] = I->a; break;
        default: ok = false; break;   /* MATCH (nullable), ASSERT, LOOK, BACK */
        }
    }
    dsi_free(al, seen);
    dsi_free(al, stack);
    return ok && !r->failed;
}

DSI_FUNC void dsi_regex_free(const dsi_alloc *al, dsi_regex *G) {
    if (!G) return;
    for (uint32_t i = 0; i < G->n_sets; i++) {
        dsi_free(al, G->sets[i].v);
        dsi_free(al, G->sets[i].bmp);
    }
    dsi_free(al, G->sets);
    dsi_free(al, G->code);
    dsi_free(al, G);
}

DSI_FUNC uint32_t dsi_regex_slots(const dsi_regex *G) { return G->n_slots; }

/* Compiles a pattern (UTF-8, n bytes). literal: match the text itself (a
 * Split with a String pattern). */
DSI_FUNC ds_status dsi_regex_compile(const char *pat, size_t n, bool literal, const dsi_alloc *al, const char *what,
                                     dsi_regex **out, dsi_err *e) {
    *out = NULL;
    ds_status st = DS_OK;
    uint32_t *cps = dsi_malloc(al, (n + 1) * sizeof *cps);
    dsi_regex *G = dsi_calloc(al, 1, sizeof *G);
    rx_parser P = {0};
    rx_compiler C = {0};
    if (!cps || !G) { st = dsi_fail(e, DS_ERR_NOMEM, "%s: out of memory", what); goto done; }
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = dsi_utf8_decode((const uint8_t *)pat + i, n - i, &cp);
        if (!k) { st = dsi_fail(e, DS_ERR_JSON, "%s: invalid UTF-8", what); goto done; }
        cps[m++] = cp;
        i += k;
    }
    P.p = cps;
    P.n = m;
    P.prog = G;
    P.al = al;
    P.e = e;
    P.what = what;
    int32_t root;
    if (literal) {
        root = rx_new_node(&P, RN_CAT);
        if (root < 0) { st = rx_nomem(&P); goto done; }
        int32_t last = -1;
        for (size_t i = 0; i < m; i++) {
            int32_t c = rx_new_node(&P, RN_CHAR);
            if (c < 0) { st = rx_nomem(&P); goto done; }
            P.nodes[c].val = cps[i];
            if (last < 0) P.nodes[root].kid = c; else P.nodes[last].next = c;
            last = c;
        }
    } else {
        st = rx_parse_alt(&P, &root);
        if (st) goto done;
        if (P.i < P.n) { st = rx_syntax(&P, DS_ERR_JSON, "unmatched close parenthesis"); goto done; }
    }
    C.P = &P;
    e->status = DS_OK;
    rx_compile_node(&C, root, 0);
    rx_emit(&C, OP_MATCH, 0, 0, 0, 0);
    if (C.failed) {
        if (e->status == DS_ERR_UNSUPPORTED) st = dsi_fail(e, DS_ERR_UNSUPPORTED, "%s: lookbehind of variable length", what);
        else if (C.too_big) st = dsi_fail(e, DS_ERR_LIMIT, "%s: pattern too large", what);
        else st = dsi_fail(e, DS_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    G->code = C.code;
    G->n_code = (uint32_t)C.n;
    C.code = NULL;
    G->first_set = -1;
    rr_list fr = {NULL, 0, 0, al, false};
    if (rx_first_chars(G, G->code, G->n_code, &fr, al)) {
        int32_t si = rx_add_set(&P, &fr);
        if (si < 0) { dsi_free(al, fr.v); st = dsi_fail(e, DS_ERR_NOMEM, "%s: out of memory", what); goto done; }
        G->first_set = si;
    }
    dsi_free(al, fr.v);
    if (fr.failed) { st = dsi_fail(e, DS_ERR_NOMEM, "%s: out of memory", what); goto done; }
    *out = G;
    G = NULL;
done:
    dsi_free(al, C.code);
    dsi_free(al, P.nodes);
    dsi_free(al, cps);
    dsi_regex_free(al, G);
    return st;
}

/* ==== Regex: matcher ====================================================== */
enum { BT_BRANCH, BT_SLOT, BT_REP, BT_REPLAZY };

struct dsi_regex_bt {
    uint32_t kind, pc;
    size_t pos, aux;       /* BT_REP / BT_REPLAZY: characters taken */
};
typedef dsi_regex_bt rx_bt;


static bool rx_push(dsi_regex_ctx *X, uint32_t kind, uint32_t pc, size_t pos, size_t aux) {
    if (X->sp == X->cap) {
        size_t nc = X->cap ? X->cap * 2 : 256;
        rx_bt *ns = dsi_realloc(X->al, X->stack, nc * sizeof *ns);
        if (!ns) return false;
        X->stack = ns;
        X->cap = nc;
    }
    rx_bt *b = &X->stack[X->sp++];
    b->kind = kind;
    b->pc = pc;
    b->pos = pos;
    b->aux = aux;
    return true;
}

static bool rx_char_ok(const dsi_regex *G, const rx_inst *I, uint32_t c) {
    if (I->flag & 2) return rx_set_has(&G->sets[I->a], c);
    if (I->a == UINT32_MAX) return c != '\n';
    return c == I->a;
}

static bool rx_assert(const dsi_regex_ctx *X, uint32_t kind, size_t pos) {
    switch (kind) {
    case RA_BOL: return pos == 0 || X->s[pos - 1] == '\n';
    case RA_EOL: return pos == X->n || X->s[pos] == '\n';
    case RA_BOS: return pos == 0;
    case RA_EOS: return pos == X->n;
    case RA_EOS_NL: return pos == X->n || (pos + 1 == X->n && X->s[pos] == '\n');
    case RA_WORDB:
    case RA_NWORDB: {
        bool a = pos > 0 && dsi_uc_is_word(X->s[pos - 1]);
        bool b = pos < X->n && dsi_uc_is_word(X->s[pos]);
        return (a != b) == (kind == RA_WORDB);
    }
    }
    return false;
}

/* Runs the program from pc at pos. Returns 1 (match, end in *end), 0 (no
 * match) or DSI_REGEX_NOMEM / DSI_REGEX_LIMIT. Backtrack entries above the entry depth
 * are dropped on return, so lookaround and atomic bodies never backtrack
 * into the caller. */
static int rx_run(const dsi_regex *G, dsi_regex_ctx *X, uint32_t pc, size_t pos, size_t *end) {
    const size_t base = X->sp;
    for (;;) {
        if (++X->steps > RX_STEP_LIMIT) { X->sp = base; return DSI_REGEX_LIMIT; }
        const rx_inst *I = &G->code[pc];
        switch (I->op) {
        case OP_CHAR:
            if (pos < X->n && X->s[pos] == I->a) { pos++; pc++; continue; }
            goto fail;
        case OP_ANY:
            if (pos < X->n && X->s[pos] != '\n') { pos++; pc++; continue; }
            goto fail;
        case OP_SET:
            if (pos < X->n && rx_set_has(&G->sets[I->a], X->s[pos])) { pos++; pc++; continue; }
            goto fail;
        case OP_JMP: pc = I->a; continue;
        case OP_SPLIT:
            if (!rx_push(X, BT_BRANCH, I->b, pos, 0)) { X->sp = base; return DSI_REGEX_NOMEM; }
            pc = I->a;
            continue;
        case OP_MATCH:
            *end = pos;
            X->sp = base;
            return 1;
        case OP_ASSERT:
            if (rx_assert(X, I->a, pos)) { pc++; continue; }
            goto fail;
        case OP_LOOK:
        case OP_ATOMIC: {
            size_t e = 0, from = pos;
            if (I->c) {               /* lookbehind: the body must end exactly here */
                if (pos < I->c - 1) { if (I->flag) { pc = I->b; continue; } goto fail; }
                from = pos - (I->c - 1);
            }
            int r = rx_run(G, X, I->a, from, &e);
            if (r < 0) { X->sp = base; return r; }
            if (I->c && r == 1 && e != pos) r = 0;
            if (I->op == OP_ATOMIC) {
                if (r) { pos = e; pc = I->b; continue; }
                goto fail;
            }
            if ((r == 1) != (I->flag != 0)) { pc = I->b; continue; }
            goto fail;
        }
        case OP_BACK: pc++; continue;   /* end of a lookbehind body: position checked by the caller */
        case OP_REP: {
            size_t k = 0, lim = X->n - pos;
            if (I->c < lim) lim = I->c;
            if (I->flag & 1) {        /* lazy: take the minimum, offer more later */
                while (k < I->b && k < lim && rx_char_ok(G, I, X->s[pos + k])) k++;
                if (k < I->b) goto fail;
                if (k < lim && !rx_push(X, BT_REPLAZY, pc, pos, k)) { X->sp = base; return DSI_REGEX_NOMEM; }
            } else {
                while (k < lim && rx_char_ok(G, I, X->s[pos + k])) k++;
                if (k < I->b) goto fail;
                if (k > I->b && !rx_push(X, BT_REP, pc, pos, k)) { X->sp = base; return DSI_REGEX_NOMEM; }
            }
            pos += k;
            pc++;
            continue;
        }
        case OP_SAVE:
            if (!rx_push(X, BT_SLOT, I->a, X->slots[I->a], 0)) { X->sp = base; return DSI_REGEX_NOMEM; }
            X->slots[I->a] = pos;
            pc++;
            continue;
        case OP_EMPTYCHK:
            /* an iteration that matched nothing ends the loop (Oniguruma) */
            pc = X->slots[I->a] == pos ? I->b : pc + 1;
            continue;
        }
    fail:
        for (;;) {
            if (X->sp == base) return 0;
            rx_bt *b = &X->stack[X->sp - 1];
            if (b->kind == BT_BRANCH) {
                pc = b->pc;
                pos = b->pos;
                X->sp--;
                break;
            }
            if (b->kind == BT_SLOT) {
                X->slots[b->pc] = b->pos;
                X->sp--;
                continue;
            }
            const rx_inst *R = &G->code[b->pc];
            if (b->kind == BT_REP) {
                b->aux--;
                pos = b->pos + b->aux;
                pc = b->pc + 1;
                if (b->aux <= R->b) X->sp--;
                break;
            }
            /* BT_REPLAZY: one more character, if it matches */
            if (b->aux < R->c && b->pos + b->aux < X->n && rx_char_ok(G, R, X->s[b->pos + b->aux])) {
                b->aux++;
                pos = b->pos + b->aux;
                pc = b->pc + 1;
                if (b->aux >= R->c || b->pos + b->aux >= X->n) X->sp--;
                break;
            }
            X->sp--;
        }
        if (++X->steps > RX_STEP_LIMIT) { X->sp = base; return DSI_REGEX_LIMIT; }
    }
}

/* Leftmost match starting at or after from. Returns 1/0/negative. The step
 * count is not reset here: the caller decides what one search budget covers. */
DSI_FUNC int dsi_regex_search(const dsi_regex *G, dsi_regex_ctx *X, size_t from, size_t *ms, size_t *me) {
    const rx_set *fs = G->first_set >= 0 ? &G->sets[G->first_set] : NULL;
    for (size_t p = from; p <= X->n; p++) {
        if (fs) {
            while (p < X->n && !rx_set_has(fs, X->s[p])) p++;
            if (p >= X->n) return 0;
        }
        int r = rx_run(G, X, 0, p, me);
        if (r) {
            *ms = p;
            return r;
        }
    }
    return 0;
}
