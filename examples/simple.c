/*
 * simple.c — open a sealed model and print what it holds.
 *
 *     cc -std=c11 -O2 examples/simple.c dist/deepseek.c -I. -lsodium -lm -lpthread -o simple
 *     ./simple model.dsm vendor.key
 */
#include "deepseek.h"

#include <stdio.h>

static const char *arch_name(ds_arch a) {
    switch (a) {
    case DS_ARCH_DEEPSEEK_V2: return "DeepSeek-V2";
    case DS_ARCH_DEEPSEEK_V3: return "DeepSeek-V3";
    case DS_ARCH_DEEPSEEK_MOE: return "DeepSeek-MoE";
    default: return "unknown";
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.dsm KEYFILE\n", argv[0]);
        return 2;
    }
    unsigned char key[DS_KEY_BYTES];
    if (ds_key_file_read(argv[2], key) != DS_OK) {
        ds_memzero(key, sizeof key);
        fprintf(stderr, "%s: %s\n", argv[2], ds_last_error());
        return 1;
    }
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = sizeof key;
    mp.load_weights = 0;                  /* metadata only: decrypt no weights */
    ds_model *m = NULL;
    ds_status st = ds_model_open(&m, argv[1], &mp);
    ds_memzero(key, sizeof key);          /* the model keeps its own derived keys */
    if (st != DS_OK) {
        fprintf(stderr, "%s: %s: %s\n", argv[1], ds_status_string(st), ds_last_error());
        return 1;
    }
    ds_model_config c;
    if ((st = ds_model_get_config(m, &c)) != DS_OK) {
        fprintf(stderr, "%s: %s: %s\n", argv[1], ds_status_string(st), ds_last_error());
        (void)ds_model_close(m);
        return 1;
    }
    printf("%s: %s, %d layers, hidden %d, %d heads, vocab %d\n", argv[1], arch_name(c.arch), c.n_layers,
           c.hidden_size, c.n_heads, c.vocab_size);
    printf("experts: %d routed, %d per token, %d shared; first %d layer(s) dense\n", c.n_routed_experts,
           c.n_experts_per_tok, c.n_shared_experts, c.first_k_dense_replace);
    printf("tensors: %zu\n", ds_model_tensor_count(m));
    if ((st = ds_model_close(m)) != DS_OK) {
        fprintf(stderr, "close: %s: %s\n", ds_status_string(st), ds_last_error());
        return 1;
    }
    return 0;
}
