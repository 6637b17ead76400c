/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * lora.c — LoRA adapters over an opened base model: the sealed adapter file
 * (a container with its own magic, read by file.c), its binding to the
 * base's identity, its matrices bound per layer and module, and its routed
 * experts' parts paged like the base's experts. The forward pass (forward.c)
 * applies them; the devices do the products (dsi_device_i.lora).
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const dsi_lora_names[DSI_LM_N] = {
    "q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
    "q_proj", "k_proj",   "v_proj",   "gate_proj",          "up_proj",   "down_proj"};

DSI_FUNC const char *dsi_lora_module_name(int mod) {
    return mod >= 0 && mod < DSI_LM_N ? dsi_lora_names[mod] : "?";
}

DS_API ds_adapter_params ds_adapter_default_params(void) {
    ds_adapter_params p;
    memset(&p, 0, sizeof p);
    return p;
}
