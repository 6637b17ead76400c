/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * regex.h — the regex layer: a backtracking engine over code points with
 * Oniguruma's semantics (Ruby syntax), as the `tokenizers` library gets
 * them for its Split pre-tokenizers. regex.c says what is supported; any
 * other construct is refused with DS_ERR_UNSUPPORTED naming it, a malformed
 * pattern with DS_ERR_JSON (the pattern comes from tokenizer.json), a
 * pattern too large with DS_ERR_LIMIT.
 *
 * A compiled dsi_regex is immutable and may be shared by threads; each
 * search runs in a caller-owned dsi_regex_ctx (scratch space, one per
 * thread), so matching allocates only when the backtrack stack grows.
 */
#ifndef DS_REGEX_H
#define DS_REGEX_H

#include "base.h"

typedef struct dsi_regex dsi_regex;
typedef struct dsi_regex_bt dsi_regex_bt;   /* a backtrack entry (regex.c) */

/* Matching state for one thread. The caller sets al, s and n, zeroes steps
 * before each search it wants bounded on its own, and gives slots room for
 * dsi_regex_slots() entries; the rest starts zeroed. Free stack and slots
 * with dsi_free when done. */
typedef struct dsi_regex_ctx {
    const dsi_alloc *al;
    const uint32_t *s;     /* the subject, as code points */
    size_t n;
    dsi_regex_bt *stack;   /* grown by the matcher */
    size_t sp, cap;
    size_t *slots;         /* positions saved for empty-loop checks */
    size_t n_slots;
    uint64_t steps;        /* backtracking steps taken; limited per search */
} dsi_regex_ctx;

/* dsi_regex_search's results besides 1 (match) and 0 (none). */
#define DSI_REGEX_NOMEM (-1)
#define DSI_REGEX_LIMIT (-2)   /* the step limit (10M, Oniguruma's retry limit) ran out */

/* Compiles a pattern (UTF-8, n bytes). literal: the pattern is plain text to
 * find (a Split with a String pattern). what names the pattern in messages
 * ("tokenizer.json: pre-tokenizer 2 pattern"). */
DSI_FUNC ds_status dsi_regex_compile(const char *pat, size_t n, bool literal, const dsi_alloc *al, const char *what,
                                     dsi_regex **out, dsi_err *e);
DSI_FUNC void dsi_regex_free(const dsi_alloc *al, dsi_regex *G);   /* NULL is a no-op */
/* How many slots a context needs for this program (may be 0). */
DSI_FUNC uint32_t dsi_regex_slots(const dsi_regex *G);
/* The leftmost match in X->s starting at or after from: 1 with [*ms, *me),
 * 0 when there is none, or DSI_REGEX_NOMEM / DSI_REGEX_LIMIT. */
DSI_FUNC int dsi_regex_search(const dsi_regex *G, dsi_regex_ctx *X, size_t from, size_t *ms, size_t *me);

#endif /* DS_REGEX_H */
