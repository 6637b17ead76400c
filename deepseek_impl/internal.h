/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * internal.h — every internal declaration, layer by layer: base.h (util,
 * thread pool), format.h (formats, container, config, architectures), the
 * tokenizer's headers, kernels/cpu/kernels.h (CPU kernels and their table),
 * engine.h (model, pager, devices). A library file includes the header of
 * its own layer; tests and tools that reach into several include this one.
 * Not installed; not part of the API.
 */
#ifndef DS_INTERNAL_H
#define DS_INTERNAL_H

#include "base.h"
#include "format.h"
#include "unicode.h"
#include "regex.h"
#include "tokenizer.h"
#include "../kernels/cpu/kernels.h"
#include "engine.h"

#endif /* DS_INTERNAL_H */
