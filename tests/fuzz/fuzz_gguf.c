/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader and what the converter
 * makes of a GGUF's metadata (config.json, tokenizer.json,
 * tokenizer_config.json, then our own config parser and tokenizer loader on
 * them).
 *
 * The input is a whole file. On success the parsed file must satisfy what
 * the converter relies on: every tensor inside the file, at an aligned
 * offset, its byte size matching its type and shape; names found by
 * dsi_gguf_tensor_find; every key found by dsi_gguf_find. Seeds: the files
 * tests/test_gguf.c builds (run_fuzz.sh has it write them), and GGUF files
 * converted from the generated checkpoint when the gguf package is there.
 *
 *   make build-fuzz/fuzz_gguf && ./build-fuzz/fuzz_gguf CORPUS_DIR
 */
#include "deepseek_impl/internal.h"

#define F_ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsi_alloc al;
    dsi_err e;
    if (dsi_alloc_init(&al, NULL, &e) != DS_OK) return 0;
    dsi_gguf *g = NULL;
    ds_status st = dsi_gguf_parse(data, size, size, &al, &g, &e);
    if (st != DS_OK) {
        F_ASSERT(g == NULL);
        F_ASSERT(st == DS_ERR_GGUF || st == DS_ERR_TRUNCATED || st == DS_ERR_NOMEM);
        F_ASSERT(e.msg[0]);
        return 0;
    }
    F_ASSERT(g->alignment && (g->alignment & (g->alignment - 1)) == 0);
    for (uint64_t i = 0; i < g->n_kv; i++) F_ASSERT(dsi_gguf_find(g, g->kv[i].key) == &g->kv[i]);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const dsi_gguf_tensor *t = &g->tensors[i];
        F_ASSERT(dsi_gguf_tensor_find(g, t->name) == t);
        F_ASSERT(t->offset % g->alignment == 0 && t->file_offset == g->data_start + t->offset);
        F_ASSERT(t->file_offset + t->nbytes <= size && t->file_offset + t->nbytes >= t->file_offset);
        uint64_t rb = 0;
        F_ASSERT(dsi_ggml_row_bytes(t->type, t->ne[0], &rb) && rb == t->row_bytes);
        if (t->nbytes) {
            volatile uint8_t x = data[t->file_offset] ^ data[t->file_offset + t->nbytes - 1];
            (void)x;
        }
    }
    char *cj = NULL, *tj = NULL, *tc = NULL;
    size_t cl = 0, tl = 0, tcl = 0;
    if (dsi_gguf_config_json(g, &al, &cj, &cl, &e) == DS_OK) {
        ds_model_config cfg;
        (void)dsi_config_parse(cj, cl, &al, &cfg, &e);
    }
    if (dsi_gguf_tokenizer_json(g, &al, &tj, &tl, &tc, &tcl, &e) == DS_OK) {
        ds_tokenizer *tok = NULL;
        if (ds_tokenizer_new(&tok, tj, tl, tc, tcl, NULL) == DS_OK) ds_tokenizer_free(tok);
    }
    dsi_free(&al, cj);
    dsi_free(&al, tj);
    dsi_free(&al, tc);
    dsi_gguf_free(g);
    return 0;
}
