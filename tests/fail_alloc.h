/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fail_alloc.h — an allocator for ds_allocator that fails on request, for
 * the tests of allocation failures: allocation number fail_at (counting
 * malloc and realloc calls from 0 in count) returns NULL; live counts the
 * blocks not yet freed, so a test can tell a leak after a failed call.
 * Include it once, in the test that needs it.
 */
#ifndef DS_FAIL_ALLOC_H
#define DS_FAIL_ALLOC_H

#include <stdlib.h>

static long fail_at = -1;   /* fail the allocation with this index; -1 = never */
static long count;          /* allocations so far */
static long live;           /* allocations not yet freed */

static void *f_malloc(size_t n, void *u) {
    (void)u;
    if (count++ == fail_at) return NULL;
    void *p = malloc(n);
    if (p) live++;
    return p;
}

static void *f_realloc(void *p, size_t n, void *u) {
    (void)u;
    if (count++ == fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) live++;
    return q;
}

static void f_free(void *p, void *u) {
    (void)u;
    if (p) live--;
    free(p);
}

#endif
