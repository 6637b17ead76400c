/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * json.h — the small JSON toolkit of tools/server/server.c: a strict
 * parser for request bodies and a growable string buffer that writes JSON.
 *
 * Strict means RFC 8259 and nothing more: one value, no comments, no trailing
 * commas, no NaN/Infinity, no leading zeros, no raw control characters in
 * strings, valid UTF-8 only, \u escapes with correctly paired surrogates,
 * no duplicate keys in an object, and at most SJ_MAX_DEPTH levels of nesting.
 * A parse allocates everything from one arena freed by sj_doc_free.
 */
#ifndef SERVER_JSON_H
#define SERVER_JSON_H

#include <stdarg.h>
#include <stddef.h>

#define SJ_MAX_DEPTH 64

typedef enum sj_type { SJ_NULL, SJ_FALSE, SJ_TRUE, SJ_NUMBER, SJ_STRING, SJ_ARRAY, SJ_OBJECT } sj_type;

typedef struct sj_value sj_value;
typedef struct sj_member {
    const char *key;              /* NUL-terminated; key_len excludes the NUL */
    size_t key_len;
    sj_value *value;
} sj_member;

struct sj_value {
    sj_type type;
    union {
        double num;               /* SJ_NUMBER */
        struct {
            const char *s;        /* NUL-terminated copy (may hold embedded NULs: use len) */
            size_t len;
        } str;                    /* SJ_STRING */
        struct {
            sj_value **items;
            size_t n;
        } arr;                    /* SJ_ARRAY */
        struct {
            sj_member *members;   /* in document order */
            size_t n;
        } obj;                    /* SJ_OBJECT */
    } u;
};

typedef struct sj_doc sj_doc;

/* Parses len bytes. On success returns a document (free with sj_doc_free)
 * and sets *root; on failure returns NULL and writes a message with the byte
 * offset into err ("expected ':' at byte 17"). *oom is set when the failure
 * was an allocation. */
sj_doc *sj_parse(const char *text, size_t len, sj_value **root, char *err, size_t err_len, int *oom);
void sj_doc_free(sj_doc *d);

/* Member of an object by key, NULL if absent (or v is not an object). */
const sj_value *sj_get(const sj_value *v, const char *key);
const char *sj_type_name(sj_type t);

/* ==== Output buffer ======================================================= */
/* A growable byte buffer. Allocation failures set `oom` and make further
 * appends no-ops, so a writer checks once at the end. data is always
 * NUL-terminated when not NULL. */
typedef struct sbuf {
    char *data;
    size_t len, cap;
    int oom;
} sbuf;

void sb_free(sbuf *b);
void sb_reset(sbuf *b);             /* len = 0, keeps the memory */
void sb_put(sbuf *b, const char *s, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_putc(sbuf *b, char c);
void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends s as a quoted JSON string: quote, backslash and control characters
 * escaped; bytes that are not valid UTF-8 become U+FFFD. */
void sb_json_str(sbuf *b, const char *s, size_t n);
/* Takes the buffer's memory (caller frees with free()); the buffer is reset
 * to empty. Returns NULL on oom. */
char *sb_take(sbuf *b, size_t *len);

/* Length of the longest prefix of s[0..n) that is valid UTF-8 up to the
 * first invalid or truncated sequence (for logs and checks). */
size_t sj_utf8_valid_prefix(const unsigned char *s, size_t n);

#endif /* SERVER_JSON_H */
