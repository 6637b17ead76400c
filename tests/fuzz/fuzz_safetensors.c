/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors header parser.
 *
 * The input is the start of a file whose size is the input size. On success
 * the parsed header must satisfy what the converter relies on: every range
 * inside the data section, sorted and disjoint, byte lengths matching shape
 * times dtype size, names NUL-terminated and found by dsi_st_find.
 *
 *   clang -std=c11 -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_safetensors.c deepseek_impl/util.c deepseek_impl/json.c \
 *       deepseek_impl/safetensors.c -lsodium -lm -lpthread -o fuzz_safetensors
 */
#include "deepseek_impl/internal.h"

#define F_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsi_alloc al;
    dsi_err e;
    if (dsi_alloc_init(&al, NULL, &e) != DS_OK) return 0;
    dsi_st_header *h = NULL;
    ds_status st = dsi_st_parse(data, size, size, &al, &h, &e);
    if (st != DS_OK) {
        F_ASSERT(h == NULL);
        F_ASSERT(st == DS_ERR_JSON || st == DS_ERR_LIMIT || st == DS_ERR_TRUNCATED || st == DS_ERR_SAFETENSORS);
        return 0;
    }
    F_ASSERT(h->data_start >= 8 && h->data_start <= size && h->data_start + h->data_size == size);
    for (size_t i = 0; i < h->n; i++) {
        const dsi_st_tensor *t = &h->t[i];
        F_ASSERT(t->name && t->name[0] && t->dtype_name);
        F_ASSERT(t->begin <= t->end && t->end <= h->data_size);
        if (i) F_ASSERT(t->begin >= h->t[i - 1].end);
        F_ASSERT(t->ndim >= 0 && t->ndim <= 8);
        size_t es = dsi_st_dtype_size(t->dtype);
        if (es) {
            uint64_t bytes = es;
            for (int d = 0; d < t->ndim; d++) F_ASSERT(dsi_mul_u64(bytes, t->shape[d], &bytes));
            F_ASSERT(bytes == t->end - t->begin);
        }
        F_ASSERT(dsi_st_find(h, t->name) == t);
        /* touch the bytes the tensor claims: ASan flags any range outside the input */
        if (t->end > t->begin) {
            volatile uint8_t x = data[h->data_start + t->begin] ^ data[h->data_start + t->end - 1];
            (void)x;
        }
    }
    dsi_st_free(h);
    return 0;
}
