/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * fuzz_container.c — libFuzzer target for the container readers.
 *
 * The first input byte picks what the rest is fed to:
 *   0: the public header parser and its field checks;
 *   1: the metadata record parser (tensor and segment directories), as if it
 *      had been decrypted from a file of 64 MiB;
 *   2: a whole plaintext (cipher none) container opened through the public
 *      API from a memory file. This build skips integrity tags
 *      (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION) so the fuzzer reaches the
 *      metadata, config, tokenizer and directory checks behind them.
 */
#include "../../deepseek_impl/internal.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0] % 3;
    data++;
    size--;
    dsi_err e = {0};
    if (mode == 0) {
        dsi_header h;
        if (dsi_header_parse(data, size, &h, &e) == DS_OK) (void)dsi_header_check(&h, &e);
    } else if (mode == 1) {
        dsi_alloc al;
        dsi_alloc_init(&al, NULL, &e);
        dsi_meta m;
        if (dsi_meta_parse(data, size, (uint64_t)64 << 20, 1u << 20, (uint64_t)60 << 20, &al, &m, &e) == DS_OK)
            dsi_meta_free(&m);
    } else {
        int fd = memfd_create("dsm", 0);
        if (fd < 0) return 0;
        if (write(fd, data, size) == (ssize_t)size) {
            char path[64];
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            ds_model_params p = ds_model_default_params();
            p.n_threads = 1;
            ds_model *m = NULL;
            if (ds_model_open(&m, path, &p) == DS_OK) {
                (void)!ds_model_verify(m, 1, NULL, NULL);
                ds_model_close(m);
            }
        }
        close(fd);
    }
    return 0;
}
