/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * amalg_unit.c — runs one unit test against the amalgamation.
 *
 * The unit tests call internal dsi_* functions, which are static in
 * dist/deepseek.c, so each test is built as a single translation unit: the
 * amalgamation first, then the test itself. The test's own
 * #include "../deepseek_impl/internal.h" is then a no-op, since the copy
 * pasted into deepseek.c has already defined the include guard.
 *
 *     cc -std=c11 -I. -DTEST_SOURCE='"test_json.c"' tests/amalg_unit.c \
 *        -lsodium -lm -lpthread        (make test-amalg does this per test)
 */
#ifndef TEST_SOURCE
#error "define TEST_SOURCE as the test file's name, e.g. -DTEST_SOURCE='\"test_json.c\"'"
#endif

#include "../dist/deepseek.c"

#ifndef DS_AMALGAMATION
#error "dist/deepseek.c did not define DS_AMALGAMATION"
#endif

#include TEST_SOURCE
