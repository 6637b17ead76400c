/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_regex.c — libFuzzer target for the regex engine (deepseek_impl/
 * regex.c). The input is a pattern, a NUL, and a subject (without a NUL,
 * the subject is the pattern itself). Invalid UTF-8 in the subject becomes
 * U+FFFD one byte at a time; in the pattern it must be refused.
 *
 * For a pattern that compiles, every non-overlapping match is found as the
 * pre-tokenizer finds them, checking that each lies inside the subject and
 * after the previous one, and that searching again from a match's start
 * gives the same match. The same pattern compiled as a literal must find
 * its own code points. A pattern that is refused must say why.
 *
 * Each search starts with its step counter 200k below the engine's limit, so
 * one input costs at most a few million steps however pathological.
 *
 *   clang -std=c11 -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_regex.c $(LIB_SRCS) -lsodium -lm -lpthread
 *   ./fuzz_regex -max_len=4096 tests/fuzz/corpus/regex
 */
#include "deepseek_impl/internal.h"
#include "deepseek_impl/regex.h"
#include "deepseek_impl/unicode.h"

#include <stdlib.h>

#define F_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

/* The engine's step limit (RX_STEP_LIMIT in regex.c) and our share of it. */
#define F_STEP_LIMIT 10000000u
#define F_BUDGET 200000u

static size_t f_cps(const uint8_t *s, size_t n, uint32_t *out) {
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t k = dsi_utf8_decode(s + i, n - i, &out[m]);
        if (!k) { out[m] = 0xFFFD; k = 1; }
        m++;
        i += k;
    }
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static dsi_alloc al;
    static bool ready;
    dsi_err e = {DS_OK, ""};
    if (!ready) {
        if (dsi_alloc_init(&al, NULL, &e) != DS_OK) return 0;
        ready = true;
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t plen = nul ? (size_t)(nul - data) : size;
    const uint8_t *text = nul ? nul + 1 : data;
    size_t tlen = nul ? size - plen - 1 : size;

    uint32_t *cps = malloc((tlen + 1) * sizeof *cps);
    if (!cps) return 0;
    size_t n = f_cps(text, tlen, cps);

    for (int literal = 0; literal < 2; literal++) {
        dsi_regex *G = NULL;
        e.status = DS_OK;
        e.msg[0] = 0;
        ds_status st = dsi_regex_compile((const char *)data, plen, literal != 0, &al, "fuzz", &G, &e);
        if (st != DS_OK) {
            F_ASSERT(G == NULL);
            F_ASSERT(st == DS_ERR_JSON || st == DS_ERR_UNSUPPORTED || st == DS_ERR_LIMIT || st == DS_ERR_NOMEM);
            F_ASSERT(strncmp(e.msg, "fuzz: ", 6) == 0);
            F_ASSERT(!literal || st == DS_ERR_JSON || st == DS_ERR_NOMEM);   /* literals only fail on bad UTF-8 */
            continue;
        }
        dsi_regex_ctx X;
        memset(&X, 0, sizeof X);
        X.al = &al;
        X.s = cps;
        X.n = n;
        X.slots = calloc(dsi_regex_slots(G) + 1, sizeof *X.slots);
        if (!X.slots) { dsi_regex_free(&al, G); break; }
        size_t pos = 0, last_end = SIZE_MAX, found = 0;
        while (pos <= n && found < 4096) {
            size_t ms = 0, me = 0;
            X.steps = F_STEP_LIMIT - F_BUDGET;
            int r = dsi_regex_search(G, &X, pos, &ms, &me);
            F_ASSERT(X.sp == 0);
            F_ASSERT(r == 1 || r == 0 || r == DSI_REGEX_LIMIT || r == DSI_REGEX_NOMEM);
            if (r != 1) break;
            F_ASSERT(pos <= ms && ms <= me && me <= n);
            /* the same search from the match's start finds the same match */
            size_t ms2 = 0, me2 = 0;
            X.steps = F_STEP_LIMIT - F_BUDGET;
            int r2 = dsi_regex_search(G, &X, ms, &ms2, &me2);
            F_ASSERT(r2 == DSI_REGEX_LIMIT || (r2 == 1 && ms2 == ms && me2 == me));
            if (literal) {
                /* a literal matches exactly its own code points */
                uint32_t *pc = malloc((plen + 1) * sizeof *pc);
                if (pc) {
                    size_t pn = f_cps(data, plen, pc);
                    F_ASSERT(me - ms == pn);
                    for (size_t i = 0; i < pn; i++) F_ASSERT(cps[ms + i] == pc[i]);
                    free(pc);
                }
            }
            found++;
            if (ms == me && last_end == me) { pos++; continue; }
            pos = last_end = me;
        }
        dsi_free(&al, X.stack);
        free(X.slots);
        dsi_regex_free(&al, G);
    }
    free(cps);
    return 0;
}
