/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * json.c — a strict RFC 8259 JSON parser and a JSON string writer.
 *
 * The parser reads untrusted text (config.json, tokenizer.json, safetensors
 * headers, sealed metadata) into a read-only tree that lives in one arena:
 * a handful of large blocks obtained from the caller's allocator, freed all
 * at once by dsi_json_free. It is iterative (no recursion, so nesting depth
 * costs heap, not C stack) and builds each container's children on a
 * temporary stack, copying them into the arena when the container closes so
 * that kids[0..n-1] are contiguous.
 *
 * Strictness: no trailing commas, no leading zeros, no bare control
 * characters, no invalid escapes, no lone surrogates, no invalid UTF-8
 * (overlongs, encoded surrogates, > U+10FFFF), nothing but whitespace after
 * the root value, nesting at most DS_MAX_JSON_DEPTH (DS_ERR_LIMIT).
 */
#include "format.h"

#include <errno.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>

/* ==== Arena ================================================================ */
/* Blocks are chained newest first. The head block is the one being bumped;
 * large requests get a block of their own, linked behind the head so the
 * head's free space is not abandoned. */
typedef struct dsj_block {
    struct dsj_block *next;
    size_t size;              /* usable bytes in data */
    size_t used;
    max_align_t data[];
} dsj_block;

#define DSJ_MIN_BLOCK ((size_t)4 << 10)
#define DSJ_MAX_BLOCK ((size_t)64 << 20)

struct dsi_json_doc {
    dsi_alloc al;             /* a copy: the caller's struct need not outlive the doc */
    dsj_block *blocks;
    size_t next_size;         /* size of the next ordinary block (doubles, capped) */
    dsi_json root;
};

static void *dsj_arena_alloc(dsi_json_doc *d, size_t n) {
    if (n > SIZE_MAX - 16 - sizeof(dsj_block)) return NULL;
    n = (n + 7) & ~(size_t)7;   /* every node and string start 8-aligned */
    dsj_block *b = d->blocks;
    if (b && b->size - b->used >= n) {
        void *p = (char *)b->data + b->used;
        b->used += n;
        return p;
    }
    bool dedicated = n > d->next_size / 4;
    size_t size = dedicated ? n : d->next_size;
    dsj_block *nb = dsi_malloc(&d->al, sizeof(dsj_block) + size);
    if (!nb) return NULL;
    nb->size = size;
    nb->used = n;
    if (dedicated && b) {
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        d->blocks = nb;
        if (!dedicated && d->next_size < DSJ_MAX_BLOCK) d->next_size *= 2;
    }
    return nb->data;
}

static void dsj_arena_free(dsi_json_doc *d) {
    dsj_block *b = d->blocks;
    while (b) {
        dsj_block *next = b->next;
        dsi_free(&d->al, b);
        b = next;
    }
    d->blocks = NULL;
}

/* ==== Parser state ========================================================= */
/* One open array or object. */
typedef struct dsj_frame {
    size_t base;              /* index on the value stack of its first child */
    const char *key;          /* objects: the key of the member being parsed */
    uint32_t key_len;
    bool is_obj;
} dsj_frame;

typedef struct dsj_parser {
    const char *text, *p, *end;
    dsi_json_doc *doc;
    dsi_json *stack;          /* finished values whose container is still open */
    size_t top, cap;
    dsj_frame *frames;
    size_t depth, fcap;
    dsi_err *e;
} dsj_parser;

/* Formats "JSON line L column C: what". Columns count characters (UTF-8
 * lead bytes), so they match what an editor shows. Computed only on error,
 * which keeps line tracking out of the hot loops. */
static ds_status dsj_error(dsj_parser *P, const char *at, ds_status st, const char *fmt, ...) DSI_PRINTF(4, 5);
static ds_status dsj_error(dsj_parser *P, const char *at, ds_status st, const char *fmt, ...) {
    size_t line = 1, col = 1;
    for (const char *q = P->text; q < at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)*q & 0xC0) != 0x80) {
            col++;
        }
    }
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return dsi_fail(P->e, st, "JSON line %zu column %zu: %s", line, col, what);
}

static ds_status dsj_nomem(dsj_parser *P) { return dsi_fail(P->e, DS_ERR_NOMEM, "JSON: out of memory"); }

/* Describes the byte at p for messages: 'x' when printable, else hex. */
static const char *dsj_describe(const char *p, const char *end, char buf[16]) {
    if (p >= end) return "end of input";
    unsigned char c = (unsigned char)*p;
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

static void dsj_skip_ws(dsj_parser *P) {
    const char *p = P->p, *end = P->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    P->p = p;
}

/* Pushes a zeroed node on the value stack; NULL when out of memory. The
 * pointer is valid until the next push. */
static dsi_json *dsj_push(dsj_parser *P) {
    if (P->top == P->cap) {
        size_t cap = P->cap ? P->cap * 2 : 256;
        if (cap > SIZE_MAX / sizeof(dsi_json)) return NULL;
        dsi_json *s = dsi_realloc(&P->doc->al, P->stack, cap * sizeof(dsi_json));
        if (!s) return NULL;
        P->stack = s;
        P->cap = cap;
    }
    dsi_json *v = &P->stack[P->top++];
    memset(v, 0, sizeof *v);
    return v;
}

/* ==== Strings ============================================================== */
/* Byte classes for the string scanner: 0 = plain byte copied as is,
 * 1 = control character (must be escaped), 2 = '"', 3 = '\\', 4 = UTF-8
 * lead or stray continuation byte (validated separately). */
static const uint8_t dsj_str_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, /* 0x50 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0x80 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0x90 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xa0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xb0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xc0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xd0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xe0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xf0 */
};

/* Length of the well-formed UTF-8 sequence at s (2..4), or 0 when it is
 * not one: bad lead byte, missing continuation, overlong form, an encoded
 * UTF-16 surrogate (U+D800..DFFF) or a code point above U+10FFFF. The
 * second-byte ranges follow the Unicode "well-formed byte sequences" table. */
static size_t dsj_utf8_seq(const unsigned char *s, const unsigned char *end) {
    size_t avail = (size_t)(end - s);
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;          /* overlong below U+0800 */
        if (c == 0xED) hi = 0x9F;          /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;          /* overlong below U+10000 */
        if (c == 0xF4) hi = 0x8F;          /* above U+10FFFF */
    } else {
        return 0;                          /* continuation byte, C0/C1, F5..FF */
    }
    if (avail < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

static int dsj_hex(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Reads the 4 hex digits after "\u" at p (p points at 'u'). */
static long dsj_hex4(const char *p, const char *end) {
    if (end - p < 5) return -1;
    long v = 0;
    for (int i = 1; i <= 4; i++) {
        int h = dsj_hex((unsigned char)p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t dsj_put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the escapes of a string body [s, close) into out, which has room
 * for close - s bytes (unescaping never lengthens: "\uXXXX" is 6 bytes for
 * at most 3, a surrogate pair 12 for 4). Raw bytes were validated by the
 * scanner; escapes are validated here. */
static ds_status dsj_unescape(dsj_parser *P, const char *s, const char *close, char *out, size_t *out_len) {
    char *o = out;
    while (s < close) {
        const char *bs = memchr(s, '\\', (size_t)(close - s));
        if (!bs) bs = close;
        memcpy(o, s, (size_t)(bs - s));
        o += bs - s;
        s = bs;
        if (s == close) break;
        /* s points at a backslash; the scanner guarantees a byte follows */
        char c = s[1];
        switch (c) {
        case '"': *o++ = '"'; s += 2; continue;
        case '\\': *o++ = '\\'; s += 2; continue;
        case '/': *o++ = '/'; s += 2; continue;
        case 'b': *o++ = '\b'; s += 2; continue;
        case 'f': *o++ = '\f'; s += 2; continue;
        case 'n': *o++ = '\n'; s += 2; continue;
        case 'r': *o++ = '\r'; s += 2; continue;
        case 't': *o++ = '\t'; s += 2; continue;
        case 'u': break;
        default: {
            char d[16];
            return dsj_error(P, s, DS_ERR_JSON, "invalid escape '\\' followed by %s", dsj_describe(s + 1, close, d));
        }
        }
        long cp = dsj_hex4(s + 1, close);
        if (cp < 0) return dsj_error(P, s, DS_ERR_JSON, "\\u must be followed by 4 hex digits");
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return dsj_error(P, s, DS_ERR_JSON, "lone low surrogate \\u%04lX", (unsigned long)cp);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* A high surrogate must be followed at once by an escaped low one. */
            long lo = -1;
            if (close - s >= 12 && s[6] == '\\' && s[7] == 'u') lo = dsj_hex4(s + 7, close);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return dsj_error(P, s, DS_ERR_JSON, "lone high surrogate \\u%04lX", (unsigned long)cp);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            s += 12;
        } else {
            s += 6;
        }
        o += dsj_put_utf8(o, (uint32_t)cp);
    }
    *out_len = (size_t)(o - out);
    return DS_OK;
}

/* Parses the string whose opening quote is at P->p into the arena. On
 * success P->p is past the closing quote. */
static ds_status dsj_string(dsj_parser *P, const char **str, uint32_t *len) {
    const unsigned char *s = (const unsigned char *)P->p + 1, *end = (const unsigned char *)P->end;
    const unsigned char *q = s;
    bool has_escape = false;
    /* Pass 1: find the closing quote, rejecting control characters and
     * invalid UTF-8. Plain ASCII is the hot path. */
    for (;;) {
        while (q < end && dsj_str_class[*q] == 0) q++;
        if (q == end) return dsj_error(P, P->p, DS_ERR_JSON, "unterminated string");
        switch (dsj_str_class[*q]) {
        case 1:
            return dsj_error(P, (const char *)q, DS_ERR_JSON,
                             "control character 0x%02x in string must be escaped", *q);
        case 2:
            goto closed;
        case 3:
            has_escape = true;
            if (end - q < 2) return dsj_error(P, P->p, DS_ERR_JSON, "unterminated string");
            q += 2;   /* the escaped byte is checked in pass 2; skipping it keeps \" inside */
            break;
        default: {
            size_t n = dsj_utf8_seq(q, end);
            if (!n) return dsj_error(P, (const char *)q, DS_ERR_JSON, "invalid UTF-8 in string");
            q += n;
            break;
        }
        }
    }
closed:;
    size_t raw = (size_t)(q - s);
    char *out = dsj_arena_alloc(P->doc, raw + 1);
    if (!out) return dsj_nomem(P);
    size_t n = raw;
    if (has_escape) {
        ds_status st = dsj_unescape(P, (const char *)s, (const char *)q, out, &n);
        if (st != DS_OK) return st;
    } else {
        memcpy(out, s, raw);
    }
    if (n > UINT32_MAX) return dsj_error(P, P->p, DS_ERR_LIMIT, "string longer than 4 GiB");
    out[n] = 0;
    *str = out;
    *len = (uint32_t)n;
    P->p = (const char *)q + 1;
    return DS_OK;
}

/* ==== Numbers ============================================================== */
/* Significant digits kept for strtod. A double's rounding is decided within
 * the first 768 significant digits, so digits beyond 780 are replaced by one
 * sticky '1' when any of them is non-zero: the result stays correctly
 * rounded while the copy stays bounded. */
#define DSJ_MAX_DIGITS 780

static bool dsj_digit(const char *p, const char *end) { return p < end && *p >= '0' && *p <= '9'; }

/* Exact powers of ten representable in a double (10^22 < 2^53 * 2^22). */
static const double dsj_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Converts digits D (nd of them, no leading zeros) times 10^e10 to double.
 * strtod is only given digits and an exponent, never a decimal point, so the
 * locale's decimal separator cannot change the result. */
static double dsj_to_double(bool neg, const char *digits, size_t nd, long long e10) {
    if (nd == 0) return neg ? -0.0 : 0.0;
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    /* Clinger's fast path: both operands exact, so one IEEE operation rounds
     * correctly. Covers nearly every number in config files. */
    if (nd <= 15 && e10 >= -22 && e10 <= 22) {
        uint64_t m = 0;
        for (size_t i = 0; i < nd; i++) m = m * 10 + (uint64_t)(digits[i] - '0');
        double v = (double)m;
        v = e10 < 0 ? v / dsj_pow10[-e10] : v * dsj_pow10[e10];
        return neg ? -v : v;
    }
#endif
    /* nd <= 781 digits, so any exponent beyond +-100000 is inf or 0 anyway. */
    if (e10 > 100000) e10 = 100000;
    if (e10 < -100000) e10 = -100000;
    char buf[DSJ_MAX_DIGITS + 32];
    size_t k = 0;
    if (neg) buf[k++] = '-';
    memcpy(buf + k, digits, nd);
    k += nd;
    snprintf(buf + k, sizeof buf - k, "e%lld", e10);
    int saved = errno;
    double v = strtod(buf, NULL);
    errno = saved;   /* ERANGE is not an error here: 1e400 is valid JSON (inf) */
    return v;
}

static ds_status dsj_number(dsj_parser *P, dsi_json *v) {
    const char *p = P->p, *end = P->end, *start = p;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (!dsj_digit(p, end)) {
        char d[16];
        return dsj_error(P, p, DS_ERR_JSON, "expected a digit after '-', found %s", dsj_describe(p, end, d));
    }
    const char *int_start = p;
    if (*p == '0') {
        p++;
        if (dsj_digit(p, end)) return dsj_error(P, start, DS_ERR_JSON, "number with a leading zero");
    } else {
        while (dsj_digit(p, end)) p++;
    }
    const char *int_end = p, *frac_start = NULL, *frac_end = NULL;
    if (p < end && *p == '.') {
        p++;
        frac_start = p;
        while (dsj_digit(p, end)) p++;
        frac_end = p;
        if (frac_start == frac_end) return dsj_error(P, p, DS_ERR_JSON, "expected a digit after '.'");
    }
    bool has_exp = false, exp_neg = false;
    long long exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        has_exp = true;
        p++;
        if (p < end && (*p == '+' || *p == '-')) exp_neg = *p++ == '-';
        if (!dsj_digit(p, end)) return dsj_error(P, p, DS_ERR_JSON, "expected a digit in the exponent");
        while (dsj_digit(p, end)) {
            if (exp < 1000000000) exp = exp * 10 + (*p - '0');   /* saturate: the value is 0 or inf */
            p++;
        }
    }
    P->p = p;
    v->type = DSI_JSON_NUMBER;

    if (!frac_start && !has_exp) {
        /* An integer: exact when its magnitude fits int64. */
        uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        bool fits = true;
        for (const char *q = int_start; q < int_end; q++) {
            uint64_t d = (uint64_t)(*q - '0');
            if (mag > (limit - d) / 10) {
                fits = false;
                break;
            }
            mag = mag * 10 + d;
        }
        if (fits) {
            v->is_int = true;
            /* -(mag - 1) - 1 reaches INT64_MIN without signed overflow */
            v->i = neg ? (mag ? -(int64_t)(mag - 1) - 1 : 0) : (int64_t)mag;
            v->num = (neg && mag == 0) ? -0.0 : (double)v->i;
            return DS_OK;
        }
    }

    /* General case: collect significant digits and a decimal exponent. */
    char digits[DSJ_MAX_DIGITS + 1];
    size_t nd = 0;
    long long e10 = 0;
    bool sticky = false;
    for (const char *q = int_start; q < int_end; q++) {
        if (nd == 0 && *q == '0') continue;
        if (nd < DSJ_MAX_DIGITS) digits[nd++] = *q;
        else {
            e10++;
            sticky |= *q != '0';
        }
    }
    for (const char *q = frac_start; q && q < frac_end; q++) {
        if (nd == 0 && *q == '0') {
            e10--;
            continue;
        }
        if (nd < DSJ_MAX_DIGITS) {
            digits[nd++] = *q;
            e10--;
        } else {
            sticky |= *q != '0';
        }
    }
    if (sticky) {
        digits[nd++] = '1';
        e10--;
    }
    e10 += exp_neg ? -exp : exp;
    v->num = dsj_to_double(neg, digits, nd, e10);
    return DS_OK;
}

/* ==== Structure ============================================================ */
static ds_status dsj_literal(dsj_parser *P, dsi_json *v) {
    static const struct { const char *word; size_t len; dsi_json_type type; } lits[] = {
        {"true", 4, DSI_JSON_TRUE}, {"false", 5, DSI_JSON_FALSE}, {"null", 4, DSI_JSON_NULL}};
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        if (*P->p == lits[i].word[0]) {
            if ((size_t)(P->end - P->p) < lits[i].len || memcmp(P->p, lits[i].word, lits[i].len) != 0)
                return dsj_error(P, P->p, DS_ERR_JSON, "invalid literal (expected '%s')", lits[i].word);
            v->type = lits[i].type;
            P->p += lits[i].len;
            return DS_OK;
        }
    }
    return dsj_error(P, P->p, DS_ERR_JSON, "invalid literal");
}

static ds_status dsj_open(dsj_parser *P, bool is_obj) {
    if (P->depth >= (size_t)DS_MAX_JSON_DEPTH)
        return dsj_error(P, P->p, DS_ERR_LIMIT, "nesting deeper than %d levels", (int)DS_MAX_JSON_DEPTH);
    if (P->depth == P->fcap) {
        size_t cap = P->fcap ? P->fcap * 2 : 16;
        dsj_frame *f = dsi_realloc(&P->doc->al, P->frames, cap * sizeof(dsj_frame));
        if (!f) return dsj_nomem(P);
        P->frames = f;
        P->fcap = cap;
    }
    dsj_frame *f = &P->frames[P->depth++];
    f->base = P->top;
    f->key = NULL;
    f->key_len = 0;
    f->is_obj = is_obj;
    P->p++;
    return DS_OK;
}

/* Closes the innermost container: its children move from the stack into
 * the arena and the container itself takes their place. */
static ds_status dsj_close(dsj_parser *P) {
    dsj_frame *f = &P->frames[--P->depth];
    size_t n = P->top - f->base;
    if (n > UINT32_MAX) return dsj_error(P, P->p, DS_ERR_LIMIT, "more than 2^32-1 elements in one container");
    dsi_json *kids = NULL;
    if (n) {
        kids = dsj_arena_alloc(P->doc, n * sizeof(dsi_json));
        if (!kids) return dsj_nomem(P);
        memcpy(kids, P->stack + f->base, n * sizeof(dsi_json));
    }
    P->top = f->base;
    dsi_json *v = dsj_push(P);   /* grows the stack only when the container was empty */
    if (!v) return dsj_nomem(P);
    v->type = f->is_obj ? DSI_JSON_OBJECT : DSI_JSON_ARRAY;
    v->n = (uint32_t)n;
    v->kids = kids;
    P->p++;
    return DS_OK;
}

/* Parses a member key and its ':' into the innermost frame. */
static ds_status dsj_key(dsj_parser *P) {
    dsj_skip_ws(P);
    if (P->p == P->end || *P->p != '"') {
        char d[16];
        if (P->p < P->end && *P->p == '}') return dsj_error(P, P->p, DS_ERR_JSON, "trailing comma before '}'");
        return dsj_error(P, P->p, DS_ERR_JSON, "expected a string key, found %s", dsj_describe(P->p, P->end, d));
    }
    dsj_frame *f = &P->frames[P->depth - 1];
    ds_status st = dsj_string(P, &f->key, &f->key_len);
    if (st != DS_OK) return st;
    dsj_skip_ws(P);
    if (P->p == P->end || *P->p != ':') {
        char d[16];
        return dsj_error(P, P->p, DS_ERR_JSON, "expected ':' after key, found %s", dsj_describe(P->p, P->end, d));
    }
    P->p++;
    return DS_OK;
}

/* The main loop. States: expect a value; after a value (a ',' or the
 * closing bracket of the enclosing container); done at depth 0. */
static ds_status dsj_run(dsj_parser *P) {
    ds_status st;
    char d[16];
    for (;;) {
        /* ---- a value is expected at P->p ---- */
        dsj_skip_ws(P);
        if (P->p == P->end) return dsj_error(P, P->p, DS_ERR_JSON, "unexpected end of input");
        char c = *P->p;
        if (c == '{' || c == '[') {
            bool is_obj = c == '{';
            if ((st = dsj_open(P, is_obj)) != DS_OK) return st;
            dsj_skip_ws(P);
            if (P->p < P->end && *P->p == (is_obj ? '}' : ']')) {
                if ((st = dsj_close(P)) != DS_OK) return st;   /* empty container: fall through to "after" */
            } else {
                if (is_obj && (st = dsj_key(P)) != DS_OK) return st;
                continue;
            }
        } else {
            dsi_json *v = dsj_push(P);
            if (!v) return dsj_nomem(P);
            if (c == '"') {
                v->type = DSI_JSON_STRING;
                st = dsj_string(P, &v->str, &v->n);
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                st = dsj_number(P, v);
            } else if (c == 't' || c == 'f' || c == 'n') {
                st = dsj_literal(P, v);
            } else if (c == ']' && P->depth > 0 && !P->frames[P->depth - 1].is_obj) {
                /* "[]" was handled on open, so a ']' here follows a comma */
                st = dsj_error(P, P->p, DS_ERR_JSON, "trailing comma before ']'");
            } else {
                st = dsj_error(P, P->p, DS_ERR_JSON, "expected a value, found %s", dsj_describe(P->p, P->end, d));
            }
            if (st != DS_OK) return st;
        }

        /* ---- after a value: close containers or continue with ',' ---- */
        for (;;) {
            if (P->depth == 0) {
                dsj_skip_ws(P);
                if (P->p != P->end)
                    return dsj_error(P, P->p, DS_ERR_JSON, "unexpected %s after the JSON value",
                                     dsj_describe(P->p, P->end, d));
                return DS_OK;
            }
            dsj_frame *f = &P->frames[P->depth - 1];
            if (f->is_obj) {
                P->stack[P->top - 1].key = f->key;
                P->stack[P->top - 1].key_len = f->key_len;
            }
            dsj_skip_ws(P);
            if (P->p == P->end) return dsj_error(P, P->p, DS_ERR_JSON, "unexpected end of input");
            if (*P->p == ',') {
                P->p++;
                if (f->is_obj && (st = dsj_key(P)) != DS_OK) return st;
                break;   /* next value */
            }
            if (*P->p == (f->is_obj ? '}' : ']')) {
                if ((st = dsj_close(P)) != DS_OK) return st;
                continue;   /* the closed container is the value just finished */
            }
            return dsj_error(P, P->p, DS_ERR_JSON, "expected ',' or '%c', found %s", f->is_obj ? '}' : ']',
                             dsj_describe(P->p, P->end, d));
        }
    }
}

/* ==== Public (internal) API ================================================ */
DSI_FUNC ds_status dsi_json_parse(const char *text, size_t len, const dsi_alloc *al, dsi_json_doc **out, dsi_err *e) {
    if (out) *out = NULL;
    if (!al || !out || (!text && len)) return dsi_fail(e, DS_ERR_INVALID_ARG, "JSON: invalid argument");
    if (!text) text = "";
    dsi_json_doc *doc = dsi_malloc(al, sizeof *doc);
    if (!doc) return dsi_fail(e, DS_ERR_NOMEM, "JSON: out of memory");
    memset(doc, 0, sizeof *doc);
    doc->al = *al;
    /* First block sized from the input so small documents need one block
     * and large ones a few; the bump space never exceeds about 2x input
     * because unescaped strings are never longer than their source. */
    size_t first = len < (DSJ_MAX_BLOCK - DSJ_MIN_BLOCK) / 2 ? len * 2 + DSJ_MIN_BLOCK : DSJ_MAX_BLOCK;
    doc->next_size = first;

    dsj_parser P = {.text = text, .p = text, .end = text + len, .doc = doc, .e = e};
    ds_status st = dsj_run(&P);
    if (st == DS_OK) doc->root = P.stack[0];
    dsi_free(al, P.stack);
    dsi_free(al, P.frames);
    if (st != DS_OK) {
        dsi_json_free(doc);
        return st;
    }
    *out = doc;
    return DS_OK;
}

DSI_FUNC void dsi_json_free(dsi_json_doc *doc) {
    if (!doc) return;
    dsi_alloc al = doc->al;
    dsj_arena_free(doc);
    dsi_free(&al, doc);
}

DSI_FUNC const dsi_json *dsi_json_root(const dsi_json_doc *doc) { return doc ? &doc->root : NULL; }

DSI_FUNC const dsi_json *dsi_json_get(const dsi_json *obj, const char *key) {
    if (!obj || obj->type != DSI_JSON_OBJECT || !key) return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < obj->n; i++) {
        const dsi_json *m = &obj->kids[i];
        if (m->key_len == klen && memcmp(m->key, key, klen) == 0) return m;
    }
    return NULL;
}

/* Present and non-null, else NULL (the "absent" answer of typed lookups). */
static const dsi_json *dsj_member(const dsi_json *obj, const char *key) {
    const dsi_json *v = dsi_json_get(obj, key);
    return v && v->type != DSI_JSON_NULL ? v : NULL;
}

DSI_FUNC int dsi_json_get_int(const dsi_json *obj, const char *key, int64_t *out) {
    const dsi_json *v = dsj_member(obj, key);
    if (!v) return 0;
    if (v->type != DSI_JSON_NUMBER) return -1;
    if (v->is_int) {
        if (out) *out = v->i;
        return 1;
    }
    /* Written with a fraction or exponent ("4096.0", "1e3"): accepted when
     * the value is integral and below 2^53, where doubles hold every integer
     * exactly. Larger or fractional values are refused. */
    double x = v->num;
    if (x >= -9007199254740992.0 && x <= 9007199254740992.0 && x == (double)(int64_t)x) {
        if (out) *out = (int64_t)x;
        return 1;
    }
    return -1;
}

DSI_FUNC int dsi_json_get_num(const dsi_json *obj, const char *key, double *out) {
    const dsi_json *v = dsj_member(obj, key);
    if (!v) return 0;
    if (v->type != DSI_JSON_NUMBER) return -1;
    if (out) *out = v->num;
    return 1;
}

DSI_FUNC int dsi_json_get_bool(const dsi_json *obj, const char *key, bool *out) {
    const dsi_json *v = dsj_member(obj, key);
    if (!v) return 0;
    if (v->type != DSI_JSON_TRUE && v->type != DSI_JSON_FALSE) return -1;
    if (out) *out = v->type == DSI_JSON_TRUE;
    return 1;
}

DSI_FUNC int dsi_json_get_str(const dsi_json *obj, const char *key, const char **out, size_t *len) {
    const dsi_json *v = dsj_member(obj, key);
    if (!v) return 0;
    if (v->type != DSI_JSON_STRING) return -1;
    if (out) *out = v->str;
    if (len) *len = v->n;
    return 1;
}

/* ==== Writer =============================================================== */
/* Escapes '"', '\\' and control characters; copies valid UTF-8 unchanged in
 * runs. Bytes that are not valid UTF-8 become U+FFFD so the output is always
 * JSON the strict parser accepts. */
DSI_FUNC void dsi_json_write_string(dsi_buf *b, const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    dsi_buf_put(b, "\"", 1);
    while (p < end) {
        unsigned char c = *p;
        size_t cls = dsj_str_class[c];
        if (cls == 0) {
            p++;
            continue;
        }
        size_t seq = cls == 4 ? dsj_utf8_seq(p, end) : 0;
        if (seq) {
            p += seq;
            continue;
        }
        dsi_buf_put(b, run, (size_t)(p - run));
        char esc[8];
        const char *rep = esc;
        size_t rep_len = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                rep_len = 6;
            } else {
                rep = "\xEF\xBF\xBD";   /* U+FFFD REPLACEMENT CHARACTER */
                rep_len = 3;
            }
        }
        dsi_buf_put(b, rep, rep_len);
        p++;
        run = p;
    }
    dsi_buf_put(b, run, (size_t)(p - run));
    dsi_buf_put(b, "\"", 1);
}

#undef DSJ_MIN_BLOCK
#undef DSJ_MAX_BLOCK
#undef DSJ_MAX_DIGITS
