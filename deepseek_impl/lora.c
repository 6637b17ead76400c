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

DS_API ds_adapter_params ds_adapter_default_params(void) {
    ds_adapter_params p;
    memset(&p, 0, sizeof p);
    return p;
}
