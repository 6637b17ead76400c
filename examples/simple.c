/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * simple.c — the smallest embedding: open a sealed model, generate, print, close.
 *
 *     cc -std=c11 -O2 -I. examples/simple.c dist/deepseek.c -lsodium -lm -lpthread -o simple
 *     ./simple models/demo.dsm models/demo.key "In the beginning"
 */
#include "deepseek.h"

#include <stdio.h>

static int print_piece(void *user, int32_t token, const char *piece, size_t len) {
    (void)user, (void)token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;                              /* non-zero would stop generation */
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.dsm KEYFILE PROMPT\n", argv[0]);
        return 2;
    }
    unsigned char key[DS_KEY_BYTES];
    ds_model *m = NULL;
    ds_context *c = NULL;
    ds_sampler *s = NULL;
    ds_status st = ds_key_file_read(argv[2], key);
    if (st == DS_OK) {
        ds_model_params mp = ds_model_default_params();
        mp.key = key;
        mp.key_len = sizeof key;
        st = ds_model_open(&m, argv[1], &mp);   /* the model keeps its own derived keys */
    }
    ds_memzero(key, sizeof key);
    if (st == DS_OK) st = ds_context_new(&c, m, NULL);
    if (st == DS_OK) {
        ds_sampler_params sp = ds_sampler_default_params();
        sp.temperature = 0.7f;
        sp.top_p = 0.9f;
        sp.seed = 42;
        st = ds_sampler_new(&s, &sp);
    }
    ds_generate_stats gs = {0};
    if (st == DS_OK) {
        fputs(argv[3], stdout);
        st = ds_generate(c, s, argv[3], 96, print_piece, NULL, &gs);
        putchar('\n');
    }
    if (st != DS_OK)
        fprintf(stderr, "error: %s: %s\n", ds_status_string(st), ds_last_error());
    else
        fprintf(stderr, "[%d prompt tokens, %d generated, %.1f tokens/s]\n", gs.n_prompt, gs.n_generated,
                gs.generate_seconds > 0 ? gs.n_generated / gs.generate_seconds : 0.0);
    ds_sampler_free(s);
    ds_context_free(c);
    (void)ds_model_close(m);   /* NULL is fine */
    return st == DS_OK ? 0 : 1;
}
