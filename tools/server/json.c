/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * json.c — strict JSON parser and JSON-writing string buffer for
 * tools/server/server.c (see json.h for what "strict" means).
 */
#include "json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== Arena =============================================================== */
/* Every node and string of one document comes from a chain of blocks, so a
 * document is freed in one go and a failed parse leaks nothing. */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

struct sj_doc {
    arena_block *blocks;
};

#define ARENA_MIN_BLOCK 8192

static void *arena_alloc(sj_doc *d, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    arena_block *b = d->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_MIN_BLOCK ? n : ARENA_MIN_BLOCK;
        if (cap > SIZE_MAX - sizeof *b) return NULL;
        arena_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->next = d->blocks;
        nb->used = 0;
        nb->cap = cap;
        d->blocks = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void sj_doc_free(sj_doc *d) {
    if (!d) return;
    arena_block *b = d->blocks;
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    free(d);
}

/* ==== UTF-8 =============================================================== */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there
 * are not one (overlong forms, surrogates and values past U+10FFFF are
 * invalid, as is a sequence cut short by n). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;   /* overlong */
        if (c == 0xED && s[1] > 0x9F) return 0;   /* UTF-16 surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;   /* overlong */
        if (c == 0xF4 && s[1] > 0x8F) return 0;   /* past U+10FFFF */
        return 4;
    }
    return 0;
}

size_t sj_utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(s + i, n - i);
        if (!k) break;
        i += k;
    }
    return i;
}

static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ==== Parser ============================================================== */

typedef struct parser {
    const char *start, *p, *end;
    sj_doc *doc;
    char *err;
    size_t err_len;
    int failed, oom, depth;
} parser;

static sj_value *fail_at(parser *ps, const char *at, const char *what) {
    if (!ps->failed) {
        ps->failed = 1;
        snprintf(ps->err, ps->err_len, "%s at byte %zu", what, (size_t)(at - ps->start));
    }
    return NULL;
}

static sj_value *fail_oom(parser *ps) {
    if (!ps->failed) {
        ps->failed = 1;
        ps->oom = 1;
        snprintf(ps->err, ps->err_len, "out of memory");
    }
    return NULL;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static sj_value *new_value(parser *ps, sj_type t) {
    sj_value *v = arena_alloc(ps->doc, sizeof *v);
    if (!v) return fail_oom(ps);
    memset(v, 0, sizeof *v);
    v->type = t;
    return v;
}

static int hex4(const char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* Parses the string at ps->p (on the opening quote) into arena memory. */
static int parse_string(parser *ps, const char **out, size_t *out_len) {
    const char *q = ps->p + 1;
    /* find the closing quote: escapes never make the decoded text longer */
    const char *e = q;
    while (e < ps->end && *e != '"') e += (*e == '\\') ? 2 : 1;
    if (e >= ps->end) {
        fail_at(ps, ps->p, "unterminated string");
        return 0;
    }
    size_t span = (size_t)(e - q);
    char *dst = arena_alloc(ps->doc, span + 1);
    if (!dst) {
        fail_oom(ps);
        return 0;
    }
    size_t n = 0;
    while (q < e) {
        unsigned char c = (unsigned char)*q;
        if (c < 0x20) {
            fail_at(ps, q, "control character in string (escape it)");
            return 0;
        }
        if (c == '\\') {
            char x = q[1];
            const char *esc = q;
            q += 2;
            switch (x) {
            case '"': dst[n++] = '"'; break;
            case '\\': dst[n++] = '\\'; break;
            case '/': dst[n++] = '/'; break;
            case 'b': dst[n++] = '\b'; break;
            case 'f': dst[n++] = '\f'; break;
            case 'n': dst[n++] = '\n'; break;
            case 'r': dst[n++] = '\r'; break;
            case 't': dst[n++] = '\t'; break;
            case 'u': {
                uint32_t cp, lo;
                if (e - q < 4 || !hex4(q, &cp)) {
                    fail_at(ps, esc, "bad \\u escape");
                    return 0;
                }
                q += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    fail_at(ps, esc, "lone low surrogate in \\u escape");
                    return 0;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (e - q < 6 || q[0] != '\\' || q[1] != 'u' || !hex4(q + 2, &lo) || lo < 0xDC00 ||
                        lo > 0xDFFF) {
                        fail_at(ps, esc, "high surrogate not followed by a low surrogate");
                        return 0;
                    }
                    q += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                n += utf8_put(dst + n, cp);
                break;
            }
            default:
                fail_at(ps, esc, "bad escape in string");
                return 0;
            }
            continue;
        }
        size_t k = utf8_seq((const unsigned char *)q, (size_t)(e - q));
        if (!k) {
            fail_at(ps, q, "invalid UTF-8 in string");
            return 0;
        }
        memcpy(dst + n, q, k);
        n += k;
        q += k;
    }
    dst[n] = '\0';
    *out = dst;
    *out_len = n;
    ps->p = e + 1;
    return 1;
}

static sj_value *parse_number(parser *ps) {
    const char *s = ps->p, *q = s;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end) return fail_at(ps, s, "bad number");
    if (*q == '0') {
        q++;
        if (q < ps->end && *q >= '0' && *q <= '9') return fail_at(ps, s, "leading zero in number");
    } else if (*q >= '1' && *q <= '9') {
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    } else {
        return fail_at(ps, s, "bad number");
    }
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end || *q < '0' || *q > '9') return fail_at(ps, s, "digits expected after '.'");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') return fail_at(ps, s, "digits expected in exponent");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    char tmp[128];
    size_t n = (size_t)(q - s);
    if (n >= sizeof tmp) return fail_at(ps, s, "number too long");
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double d = strtod(tmp, NULL);
    if (!isfinite(d)) return fail_at(ps, s, "number out of range");
    sj_value *v = new_value(ps, SJ_NUMBER);
    if (!v) return NULL;
    v->u.num = d;
    ps->p = q;
    return v;
}

static int literal(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, word, n) == 0) {
        ps->p += n;
        return 1;
    }
    return 0;
}

/* A growable list of pointers on the heap, copied into the arena when the
 * container closes. */
typedef struct ptrvec {
    void **v;
    size_t n, cap;
} ptrvec;

static int pv_push(ptrvec *pv, void *p) {
    if (pv->n == pv->cap) {
        size_t cap = pv->cap ? pv->cap * 2 : 8;
        void **nv = realloc(pv->v, cap * sizeof *nv);
        if (!nv) return 0;
        pv->v = nv;
        pv->cap = cap;
    }
    pv->v[pv->n++] = p;
    return 1;
}

static int member_cmp(const void *a, const void *b) {
    const sj_member *x = a, *y = b;
    if (x->key_len != y->key_len) return x->key_len < y->key_len ? -1 : 1;
    return memcmp(x->key, y->key, x->key_len);
}

/* Does the object have two members with the same key? O(n^2) for small
 * objects, sort a copy for large ones. */
static int has_duplicate(const sj_member *m, size_t n, int *oom) {
    if (n < 2) return 0;
    if (n <= 16) {
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (member_cmp(&m[i], &m[j]) == 0) return 1;
        return 0;
    }
    sj_member *c = malloc(n * sizeof *c);
    if (!c) {
        *oom = 1;
        return 0;
    }
    memcpy(c, m, n * sizeof *c);
    qsort(c, n, sizeof *c, member_cmp);
    int dup = 0;
    for (size_t i = 1; i < n && !dup; i++) dup = member_cmp(&c[i - 1], &c[i]) == 0;
    free(c);
    return dup;
}

static sj_value *parse_value(parser *ps);

static sj_value *parse_array(parser *ps) {
    const char *open = ps->p++;
    ptrvec items = {0};
    sj_value *v = NULL;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
    } else {
        for (;;) {
            sj_value *it = parse_value(ps);
            if (!it) goto out;
            if (!pv_push(&items, it)) {
                fail_oom(ps);
                goto out;
            }
            skip_ws(ps);
            if (ps->p >= ps->end) {
                fail_at(ps, open, "unterminated array");
                goto out;
            }
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == ']') {
                ps->p++;
                break;
            }
            fail_at(ps, ps->p, "expected ',' or ']' in array");
            goto out;
        }
    }
    if (!(v = new_value(ps, SJ_ARRAY))) goto out;
    if (items.n) {
        v->u.arr.items = arena_alloc(ps->doc, items.n * sizeof *v->u.arr.items);
        if (!v->u.arr.items) {
            v = fail_oom(ps);
            goto out;
        }
        memcpy(v->u.arr.items, items.v, items.n * sizeof *v->u.arr.items);
    }
    v->u.arr.n = items.n;
out:
    free(items.v);
    return v;
}

static sj_value *parse_object(parser *ps) {
    const char *open = ps->p++;
    sj_member *m = NULL;
    size_t n = 0, cap = 0;
    sj_value *v = NULL;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
    } else {
        for (;;) {
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') {
                fail_at(ps, ps->p, ps->p >= ps->end ? "unterminated object" : "expected a string key");
                goto out;
            }
            sj_member mem;
            if (!parse_string(ps, &mem.key, &mem.key_len)) goto out;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                fail_at(ps, ps->p, "expected ':' after key");
                goto out;
            }
            ps->p++;
            if (!(mem.value = parse_value(ps))) goto out;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 8;
                sj_member *nm = realloc(m, nc * sizeof *nm);
                if (!nm) {
                    fail_oom(ps);
                    goto out;
                }
                m = nm;
                cap = nc;
            }
            m[n++] = mem;
            skip_ws(ps);
            if (ps->p >= ps->end) {
                fail_at(ps, open, "unterminated object");
                goto out;
            }
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == '}') {
                ps->p++;
                break;
            }
            fail_at(ps, ps->p, "expected ',' or '}' in object");
            goto out;
        }
    }
    {
        int oom = 0;
        if (has_duplicate(m, n, &oom)) {
            fail_at(ps, open, "duplicate key in object");
            goto out;
        }
        if (oom) {
            fail_oom(ps);
            goto out;
        }
    }
    if (!(v = new_value(ps, SJ_OBJECT))) goto out;
    if (n) {
        v->u.obj.members = arena_alloc(ps->doc, n * sizeof *m);
        if (!v->u.obj.members) {
            v = fail_oom(ps);
            goto out;
        }
        memcpy(v->u.obj.members, m, n * sizeof *m);
    }
    v->u.obj.n = n;
out:
    free(m);
    return v;
}

static sj_value *parse_value(parser *ps) {
    skip_ws(ps);
    if (ps->p >= ps->end) return fail_at(ps, ps->p, "unexpected end of input");
    char c = *ps->p;
    if (c == '{' || c == '[') {
        if (++ps->depth > SJ_MAX_DEPTH) return fail_at(ps, ps->p, "nesting too deep");
        sj_value *v = c == '{' ? parse_object(ps) : parse_array(ps);
        ps->depth--;
        return v;
    }
    if (c == '"') {
        sj_value *v = new_value(ps, SJ_STRING);
        if (!v) return NULL;
        if (!parse_string(ps, &v->u.str.s, &v->u.str.len)) return NULL;
        return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps);
    if (literal(ps, "true")) return new_value(ps, SJ_TRUE);
    if (literal(ps, "false")) return new_value(ps, SJ_FALSE);
    if (literal(ps, "null")) return new_value(ps, SJ_NULL);
    return fail_at(ps, ps->p, "unexpected character");
}

sj_doc *sj_parse(const char *text, size_t len, sj_value **root, char *err, size_t err_len, int *oom) {
    char dummy[8];
    if (!err || !err_len) {
        err = dummy;
        err_len = sizeof dummy;
    }
    err[0] = '\0';
    if (oom) *oom = 0;
    *root = NULL;
    sj_doc *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, err_len, "out of memory");
        if (oom) *oom = 1;
        return NULL;
    }
    parser ps = {text, text, text + len, d, err, err_len, 0, 0, 0};
    sj_value *v = parse_value(&ps);
    if (v) {
        skip_ws(&ps);
        if (ps.p != ps.end) v = fail_at(&ps, ps.p, "unexpected data after the JSON value");
    }
    if (!v) {
        if (oom) *oom = ps.oom;
        sj_doc_free(d);
        return NULL;
    }
    *root = v;
    return d;
}

const sj_value *sj_get(const sj_value *v, const char *key) {
    if (!v || v->type != SJ_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < v->u.obj.n; i++)
        if (v->u.obj.members[i].key_len == kl && memcmp(v->u.obj.members[i].key, key, kl) == 0)
            return v->u.obj.members[i].value;
    return NULL;
}

const char *sj_type_name(sj_type t) {
    switch (t) {
    case SJ_NULL: return "null";
    case SJ_FALSE:
    case SJ_TRUE: return "boolean";
    case SJ_NUMBER: return "number";
    case SJ_STRING: return "string";
    case SJ_ARRAY: return "array";
    case SJ_OBJECT: return "object";
    }
    return "unknown";
}

/* ==== Output buffer ======================================================= */

static int sb_reserve(sbuf *b, size_t more) {
    if (b->oom) return 0;
    if (more > SIZE_MAX - b->len - 1) {
        b->oom = 1;
        return 0;
    }
    size_t need = b->len + more + 1;
    if (need <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->data = p;
    b->cap = cap;
    return 1;
}

void sb_free(sbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void sb_reset(sbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void sb_put(sbuf *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_putc(sbuf *b, char c) { sb_put(b, &c, 1); }

void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_put(b, small, (size_t)n);
        return;
    }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sb_json_str(sbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    sb_putc(b, '"');
    size_t i = 0, run = 0;   /* run: start of bytes copied verbatim */
    while (i < n) {
        unsigned char c = u[i];
        const char *esc = NULL;
        char hex[8];
        size_t k = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c == '\b') esc = "\\b";
        else if (c == '\f') esc = "\\f";
        else if (c < 0x20) {
            snprintf(hex, sizeof hex, "\\u%04x", c);
            esc = hex;
        } else if (c >= 0x80) {
            k = utf8_seq(u + i, n - i);
            if (!k) {
                esc = "\xEF\xBF\xBD";   /* U+FFFD for a byte that starts no valid sequence */
                k = 1;
            }
        }
        if (esc) {
            sb_put(b, s + run, i - run);
            sb_puts(b, esc);
            i += k;
            run = i;
        } else {
            i += k;
        }
    }
    sb_put(b, s + run, n - run);
    sb_putc(b, '"');
}

char *sb_take(sbuf *b, size_t *len) {
    if (b->oom) {
        sb_free(b);
        return NULL;
    }
    if (!b->data && !sb_reserve(b, 0)) return NULL;
    char *p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
