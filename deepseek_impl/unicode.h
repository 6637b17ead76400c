/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * unicode.h — the Unicode layer: UTF-8 coding and the character properties
 * the regex engine and the tokenizer ask about (general categories,
 * White_Space, the word classes of Oniguruma and of Rust's regex).
 *
 * The category table itself (unicode_tables.h, generated) is private to
 * unicode.c; the layers above see categories only as opaque masks
 * (dsi_uc_property_mask) and as code-point ranges handed to a callback.
 */
#ifndef DS_UNICODE_H
#define DS_UNICODE_H

#include "base.h"

/* ==== UTF-8 =============================================================== */
/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is invalid or
 * cut short; the code point in *cp. Rejects overlong forms, surrogates and
 * values above U+10FFFF. */
DSI_FUNC size_t dsi_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Writes cp (at most U+10FFFF) to o (room for 4 bytes); returns the length. */
DSI_FUNC size_t dsi_utf8_encode(uint8_t *o, uint32_t cp);
/* One step of lossy decoding (Rust's Utf8Chunks rule): the length of the
 * valid sequence at s (*valid), or of the invalid part to replace by one
 * U+FFFD; *incomplete when a valid prefix was cut by the end of the buffer. */
DSI_FUNC size_t dsi_utf8_lossy_step(const uint8_t *s, size_t n, bool *valid, bool *incomplete);

/* ==== Character properties =============================================== */
DSI_FUNC bool dsi_uc_is_space(uint32_t c);      /* White_Space (Oniguruma \s, Rust is_whitespace) */
DSI_FUNC bool dsi_uc_is_word(uint32_t c);       /* Oniguruma \w */
DSI_FUNC bool dsi_uc_is_rust_word(uint32_t c);  /* Rust regex \w (added tokens' single_word) */
DSI_FUNC bool dsi_uc_is_numeric(uint32_t c);    /* N*: Rust's char::is_numeric */

/* ==== Ranges, for character classes ====================================== */
/* Receives one range [lo, hi] of code points. */
typedef void (*dsi_uc_range_fn)(void *u, uint32_t lo, uint32_t hi);

/* The set of general categories a property name denotes (short or long
 * name, any case, '_', '-' and ' ' ignored, as Oniguruma compares them), as
 * an opaque non-zero mask; 0 when the name is not a general category. */
DSI_FUNC uint32_t dsi_uc_property_mask(const uint32_t *name, size_t n);
/* Hands every run of code points whose category is in mask to fn, in
 * ascending order (runs of different categories are not merged). */
DSI_FUNC void dsi_uc_category_ranges(uint32_t mask, dsi_uc_range_fn fn, void *u);

/* The predefined classes of the regex syntax. */
enum { DSI_UC_CLASS_SPACE, DSI_UC_CLASS_DIGIT, DSI_UC_CLASS_WORD };
/* Hands the ranges of one class (DSI_UC_CLASS_*) to fn; they may overlap
 * and come in no particular order. */
DSI_FUNC void dsi_uc_class_ranges(int cls, dsi_uc_range_fn fn, void *u);

#endif /* DS_UNICODE_H */
