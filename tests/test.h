/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test.h — the tiny harness every C test uses.
 *
 * Each check names a case id ("json-2.3"). A test binary prints one line per
 * failure, one line per skip, and ends with
 *     RESULT <file>: N passed, N failed, N skipped
 * which `make test` adds up. Exit status is 1 when anything failed.
 */
#ifndef DS_TEST_H
#define DS_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_passed, t_failed, t_skipped;

#define T_CHECK(id, cond, ...)                                                    \
    do {                                                                          \
        if (cond) {                                                               \
            t_passed++;                                                           \
        } else {                                                                  \
            t_failed++;                                                           \
            printf("FAIL %s (%s:%d): ", (id), __FILE__, __LINE__);                \
            printf(__VA_ARGS__);                                                  \
            printf("\n");                                                         \
        }                                                                         \
    } while (0)

/* Checks a status equals the expected one, printing both and the message. */
#define T_STATUS(id, got, want, msg)                                              \
    T_CHECK(id, (got) == (want), "status %d (%s), want %d (%s); message: %s",    \
            (int)(got), ds_status_string(got), (int)(want),                      \
            ds_status_string(want), (msg) ? (msg) : "")

#define T_SKIP(id, why)                                                           \
    do {                                                                          \
        t_skipped++;                                                              \
        printf("SKIP %s: %s\n", (id), (why));                                     \
    } while (0)

static inline int t_finish(const char *name) {
    printf("RESULT %s: %d passed, %d failed, %d skipped\n", name, t_passed, t_failed, t_skipped);
    return t_failed ? 1 : 0;
}

#endif
