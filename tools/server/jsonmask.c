/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * jsonmask.c — the incremental JSON-object validator and the token mask
 * built on it (see jsonmask.h).
 */
#include "jsonmask.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== The validator ======================================================= */

/* What may come next. */
enum {
    M_START,                      /* the text is empty: only '{' */
    M_VALUE,                      /* a value (after ':' or an array's ',') */
    M_ARR0,                       /* after '[': a value or ']' */
    M_OBJ0,                       /* after '{': a key or '}' */
    M_KEY,                        /* after an object's ',': a key */
    M_COLON,                      /* after a key: ':' */
    M_AFTER,                      /* after a value in a container: ',' or its closer */
    M_DONE,                       /* the object is complete */
    M_STR,                        /* in a string */
    M_ESC,                        /* after a backslash */
    M_HEX,                        /* in \uXXXX: aux digits left; hx below */
    M_LOW1,                       /* after a high surrogate's \uXXXX: its low one's '\' */
    M_LOW2,                       /* ... and its 'u' */
    M_UTF,                        /* in a UTF-8 character: aux bytes left, the next in [lo, hi] */
    M_NEG,                        /* after '-' */
    M_ZERO,                       /* a number's leading 0 */
    M_INT,                        /* integer digits */
    M_DOT,                        /* after '.' */
    M_FRAC,                       /* fraction digits */
    M_EMARK,                          /* after 'e' */
    M_ESIGN,                      /* after the exponent's sign */
    M_EXP,                        /* exponent digits */
    M_LIT                         /* in true/false/null: aux letters left */
};

static const char *const lit_word[3] = {"true", "false", "null"};

/* hx, in a \uXXXX escape: strict parsers (ours, Go's, serde) want a high
 * surrogate (D800-DBFF) followed at once by a low one (DC00-DFFF), and no
 * low one alone. */
enum {
    HX_PLAIN,                     /* nothing special seen */
    HX_D,                         /* the first digit was D: the second decides */
    HX_HIGH,                      /* a high surrogate: a low one must follow */
    HX_LOW,                       /* the low half of a pair: D first */
    HX_LOW_D                      /* ... then C-F */
};

static int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void jm_init(jm_state *s) {
    memset(s, 0, sizeof *s);
    s->mode = M_START;
}

int jm_done(const jm_state *s) { return s->mode == M_DONE; }

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int top_is_object(const jm_state *s) { return s->depth && (s->stack >> (s->depth - 1) & 1); }

/* A value ended: the container's turn, or the end. */
static void value_end(jm_state *s) { s->mode = s->depth ? M_AFTER : M_DONE; }

static int push(jm_state *s, int object) {
    if (s->depth >= JM_MAX_DEPTH) return 0;
    if (object) s->stack |= 1u << s->depth;
    else s->stack &= ~(1u << s->depth);
    s->depth++;
    s->mode = object ? M_OBJ0 : M_ARR0;
    return 1;
}

static void pop(jm_state *s) {
    s->depth--;
    value_end(s);
}

/* The first byte of a value. */
static int value_start(jm_state *s, unsigned char c) {
    switch (c) {
    case '{': return push(s, 1);
    case '[': return push(s, 0);
    case '"': s->mode = M_STR; s->key = 0; return 1;
    case '-': s->mode = M_NEG; return 1;
    case '0': s->mode = M_ZERO; return 1;
    case 't': s->mode = M_LIT; s->lit = 0; s->aux = 3; return 1;
    case 'f': s->mode = M_LIT; s->lit = 1; s->aux = 4; return 1;
    case 'n': s->mode = M_LIT; s->lit = 2; s->aux = 3; return 1;
    }
    if (c >= '1' && c <= '9') {
        s->mode = M_INT;
        return 1;
    }
    return 0;
}

/* A byte after a complete value inside a container. */
static int after_value(jm_state *s, unsigned char c) {
    if (is_ws(c)) return 1;
    if (c == ',') {
        s->mode = top_is_object(s) ? M_KEY : M_VALUE;
        return 1;
    }
    if (c == (top_is_object(s) ? '}' : ']')) {
        pop(s);
        return 1;
    }
    return 0;
}

/* A byte that ends a number (which is complete): as after any value. */
static int number_end(jm_state *s, unsigned char c) {
    if (!s->depth) return 0;   /* (a top-level number never happens: the top level is an object) */
    s->mode = M_AFTER;
    return after_value(s, c);
}

/* A byte in a string (not escaped, not inside a multi-byte character). */
static int string_byte(jm_state *s, unsigned char c) {
    if (c == '"') {
        if (s->key) s->mode = M_COLON;
        else value_end(s);
        return 1;
    }
    if (c == '\\') {
        s->mode = M_ESC;
        return 1;
    }
    if (c < 0x20) return 0;
    if (c < 0x80) return 1;
    /* a UTF-8 lead byte: how many continuation bytes, and the range of the
     * first (no overlong forms, no surrogates, nothing above U+10FFFF) */
    s->lo = 0x80;
    s->hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) s->aux = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        s->aux = 2;
        if (c == 0xE0) s->lo = 0xA0;
        if (c == 0xED) s->hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        s->aux = 3;
        if (c == 0xF0) s->lo = 0x90;
        if (c == 0xF4) s->hi = 0x8F;
    } else {
        return 0;
    }
    s->mode = M_UTF;
    return 1;
}

/* One byte (the state may be left half-changed when it does not fit). */
static int step1(jm_state *s, unsigned char c) {
    switch (s->mode) {
    case M_START:
        return c == '{' ? push(s, 1) : 0;
    case M_VALUE:
        return is_ws(c) || value_start(s, c);
    case M_ARR0:
        if (is_ws(c)) return 1;
        if (c == ']') {
            pop(s);
            return 1;
        }
        return value_start(s, c);
    case M_OBJ0:
    case M_KEY:
        if (is_ws(c)) return 1;
        if (c == '}' && s->mode == M_OBJ0) {
            pop(s);
            return 1;
        }
        if (c == '"') {
            s->mode = M_STR;
            s->key = 1;
            return 1;
        }
        return 0;
    case M_COLON:
        if (is_ws(c)) return 1;
        if (c == ':') {
            s->mode = M_VALUE;
            return 1;
        }
        return 0;
    case M_AFTER:
        return after_value(s, c);
    case M_DONE:
        return 0;
    case M_STR:
        return string_byte(s, c);
    case M_ESC:
        if (c == 'u') {
            s->mode = M_HEX;
            s->aux = 4;
            s->hx = HX_PLAIN;
            return 1;
        }
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
            s->mode = M_STR;
            return 1;
        }
        return 0;
    case M_HEX: {
        int v = hex_value(c);
        if (v < 0) return 0;
        if (s->aux == 4) {
            if (s->hx == HX_LOW) {
                if (v != 0xD) return 0;
                s->hx = HX_LOW_D;
            } else if (v == 0xD) {
                s->hx = HX_D;
            }
        } else if (s->aux == 3) {
            if (s->hx == HX_LOW_D) {
                if (v < 0xC) return 0;
                s->hx = HX_PLAIN;
            } else if (s->hx == HX_D) {
                if (v >= 0xC) return 0;   /* a low surrogate alone */
                s->hx = v >= 8 ? HX_HIGH : HX_PLAIN;
            }
        }
        if (--s->aux == 0) {
            s->mode = s->hx == HX_HIGH ? M_LOW1 : M_STR;
            s->hx = HX_PLAIN;
        }
        return 1;
    }
    case M_LOW1:
        if (c != '\\') return 0;
        s->mode = M_LOW2;
        return 1;
    case M_LOW2:
        if (c != 'u') return 0;
        s->mode = M_HEX;
        s->aux = 4;
        s->hx = HX_LOW;
        return 1;
    case M_UTF:
        if (c < s->lo || c > s->hi) return 0;
        s->lo = 0x80;
        s->hi = 0xBF;
        if (--s->aux == 0) s->mode = M_STR;
        return 1;
    case M_NEG:
        if (c == '0') s->mode = M_ZERO;
        else if (c >= '1' && c <= '9') s->mode = M_INT;
        else return 0;
        return 1;
    case M_ZERO:
    case M_INT:
    case M_FRAC:
        if (is_digit(c) && s->mode != M_ZERO) return 1;
        if (c == '.' && s->mode != M_FRAC) {
            s->mode = M_DOT;
            return 1;
        }
        if (c == 'e' || c == 'E') {
            s->mode = M_EMARK;
            return 1;
        }
        return number_end(s, c);
    case M_DOT:
        if (!is_digit(c)) return 0;
        s->mode = M_FRAC;
        return 1;
    case M_EMARK:
        if (c == '+' || c == '-') {
            s->mode = M_ESIGN;
            return 1;
        }
        if (!is_digit(c)) return 0;
        s->mode = M_EXP;
        return 1;
    case M_ESIGN:
        if (!is_digit(c)) return 0;
        s->mode = M_EXP;
        return 1;
    case M_EXP:
        if (is_digit(c)) return 1;
        return number_end(s, c);
    case M_LIT: {
        const char *w = lit_word[s->lit];
        if (c != (unsigned char)w[strlen(w) - s->aux]) return 0;
        if (--s->aux == 0) value_end(s);
        return 1;
    }
    }
    return 0;
}

/* step1, with whitespace between tokens limited to JM_MAX_WS bytes in a
 * row: JSON allows any amount, and a model that likes blank lines would
 * otherwise fill its whole budget with them (a space in a string is text,
 * not counted). */
static int step(jm_state *s, unsigned char c) {
    if (is_ws(c) && s->mode != M_STR) {
        if (s->ws >= JM_MAX_WS || !step1(s, c)) return 0;
        s->ws++;
        return 1;
    }
    if (!step1(s, c)) return 0;
    s->ws = 0;
    return 1;
}

int jm_byte(jm_state *s, unsigned char c) {
    jm_state t = *s;
    if (!step(&t, c)) return 0;
    *s = t;
    return 1;
}

int jm_bytes(jm_state *s, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!jm_byte(s, p[i])) return 0;
    return 1;
}

int jm_cost(const jm_state *s) {
    int d = s->depth, str = 1 + (s->key ? 2 : 0) + d;   /* close a string (a key also needs ':' and a value) */
    switch (s->mode) {
    case M_START: return 2;                                /* {} */
    case M_DONE: return 0;
    case M_VALUE: return 1 + d;                            /* 0 */
    case M_ARR0:
    case M_OBJ0:
    case M_AFTER: return d;
    case M_KEY: return 4 + d;                              /* "":0 */
    case M_COLON: return 2 + d;                            /* :0 */
    case M_STR: return str;
    case M_ESC: return 1 + str;
    case M_HEX: return s->aux + (s->hx == HX_HIGH ? 6 : 0) + str;   /* (a pending high half: \uDC00) */
    case M_LOW1: return 6 + str;
    case M_LOW2: return 5 + str;
    case M_UTF: return s->aux + str;
    case M_NEG:
    case M_DOT:
    case M_EMARK:
    case M_ESIGN: return 1 + d;                            /* a digit */
    case M_ZERO:
    case M_INT:
    case M_FRAC:
    case M_EXP: return d;
    case M_LIT: return s->aux + d;
    }
    return 1 << 20;
}

/* ==== The vocabulary index ================================================ */

typedef struct jm_tok {
    const unsigned char *p;       /* the token's bytes (the tokenizer's) */
    uint32_t len;
    uint32_t lcp;                 /* bytes shared with the token before it in the order */
    int32_t id;
    int plain;                    /* string text only: whole UTF-8 characters, no quote, backslash or control */
} jm_tok;

struct jm_vocab {
    jm_tok *tok;                  /* (n) ordinary tokens with bytes, sorted by their bytes */
    size_t n;
    int n_vocab;
    uint32_t max_len;
};

struct jm_scratch {
    jm_state *st;                 /* (max_len + 1) the state after each prefix byte */
    unsigned char *allow;         /* (n_vocab) */
    int n_vocab;
};

static int tok_cmp(const void *a, const void *b) {
    const jm_tok *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->p, y->p, n) : 0;
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

jm_vocab *jm_vocab_new(const ds_tokenizer *t, int n_vocab, char *err, size_t err_len) {
    jm_vocab *v = calloc(1, sizeof *v);
    if (n_vocab < 0) n_vocab = 0;
    if (v) v->tok = malloc((n_vocab ? (size_t)n_vocab : 1) * sizeof *v->tok);
    if (!v || !v->tok) {
        snprintf(err, err_len, "out of memory indexing %d tokens for JSON output", n_vocab);
        jm_vocab_free(v);
        return NULL;
    }
    v->n_vocab = n_vocab;
    for (int id = 0; id < n_vocab; id++) {
        const char *b;
        size_t len;
        int flags;
        /* added and special tokens are control tokens, never JSON text */
        if (ds_tokenizer_token_bytes(t, id, &b, &len, &flags) != DS_OK || !len || flags || len > UINT32_MAX)
            continue;
        jm_tok *k = &v->tok[v->n++];
        k->p = (const unsigned char *)b;
        k->len = (uint32_t)len;
        k->id = id;
        if (k->len > v->max_len) v->max_len = k->len;
        /* plain: read inside a string, it leaves the state as it was */
        jm_state st;
        jm_init(&st);
        jm_bytes(&st, (const unsigned char *)"{\"", 2);
        k->plain = !memchr(b, '"', len) && !memchr(b, '\\', len) && jm_bytes(&st, k->p, len) && st.mode == M_STR;
    }
    qsort(v->tok, v->n, sizeof *v->tok, tok_cmp);
    for (size_t i = 0; i < v->n; i++) {
        uint32_t l = 0;
        if (i) {
            const jm_tok *a = &v->tok[i - 1], *b = &v->tok[i];
            while (l < a->len && l < b->len && a->p[l] == b->p[l]) l++;
        }
        v->tok[i].lcp = l;
    }
    return v;
}

void jm_vocab_free(jm_vocab *v) {
    if (!v) return;
    free(v->tok);
    free(v);
}

jm_scratch *jm_scratch_new(const jm_vocab *v) {
    jm_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->st = malloc(((size_t)v->max_len + 1) * sizeof *s->st);
    s->allow = malloc(v->n_vocab ? (size_t)v->n_vocab : 1);
    s->n_vocab = v->n_vocab;
    if (!s->st || !s->allow) {
        jm_scratch_free(s);
        return NULL;
    }
    return s;
}

void jm_scratch_free(jm_scratch *s) {
    if (!s) return;
    free(s->st);
    free(s->allow);
    free(s);
}

/* ==== The mask ============================================================ */

int jm_mask(const jm_vocab *v, jm_scratch *sc, const jm_state *s, int tokens_left, int32_t eos, float *logits,
            int n_vocab) {
    int n = n_vocab < sc->n_vocab ? n_vocab : sc->n_vocab;
    memset(sc->allow, 0, (size_t)sc->n_vocab);
    if (jm_done(s)) {
        if (eos >= 0 && eos < n) sc->allow[eos] = 1;
    } else if (tokens_left > 0) {
        /* Walk the tokens in byte order. st[j] is the state after the first
         * j bytes of the token in hand, good for j <= valid; the first dead
         * bytes of the token before are no JSON prefix, so a token that
         * shares them fails too, unread. Inside a string (nothing pending)
         * a plain token leaves the state as it is: allowed without reading
         * it, which is most of a vocabulary there. */
        int budget = tokens_left - 1;
        int in_string = s->mode == M_STR, plain_ok = in_string && jm_cost(s) <= budget;
        jm_state *st = sc->st;
        st[0] = *s;
        uint32_t valid = 0, dead = UINT32_MAX;
        for (size_t k = 0; k < v->n; k++) {
            const jm_tok *t = &v->tok[k];
            if (t->lcp < valid) valid = t->lcp;
            if (dead <= t->lcp) continue;
            dead = UINT32_MAX;
            if (in_string && t->plain) {
                if (plain_ok && t->id < n) sc->allow[t->id] = 1;
                continue;
            }
            uint32_t j = valid;
            for (; j < t->len; j++) {
                st[j + 1] = st[j];
                if (!step(&st[j + 1], t->p[j])) break;
            }
            valid = j;
            if (j < t->len) dead = j + 1;
            else if (t->id < n && jm_cost(&st[j]) <= budget) sc->allow[t->id] = 1;
        }
    }
    int left = 0;
    for (int i = 0; i < n_vocab; i++) {
        if (i >= n || !sc->allow[i]) logits[i] = -INFINITY;
        else if (logits[i] > -INFINITY) left++;
    }
    return left;
}
