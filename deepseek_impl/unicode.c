/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * unicode.c — UTF-8 coding and Unicode character properties (the Unicode
 * layer; unicode.h). General categories come from the generated table in
 * unicode_tables.h (Unicode 15.1.0), which no other file includes.
 */
#include "unicode.h"
#include "unicode_tables.h"

/* ==== General categories and properties =================================== */
static int uc_category(uint32_t cp) {
    if (cp > 0x10FFFF) return UC_Cn;
    size_t lo = 0, hi = UC_NRUNS;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uc_cat_runs[mid] >> 5) <= cp) lo = mid; else hi = mid;
    }
    return (int)(uc_cat_runs[lo] & 31u);
}

#define UC_MASK(c) (1u << (c))
#define UC_L (UC_MASK(UC_Lu) | UC_MASK(UC_Ll) | UC_MASK(UC_Lt) | UC_MASK(UC_Lm) | UC_MASK(UC_Lo))
#define UC_M (UC_MASK(UC_Mn) | UC_MASK(UC_Mc) | UC_MASK(UC_Me))
#define UC_N (UC_MASK(UC_Nd) | UC_MASK(UC_Nl) | UC_MASK(UC_No))
#define UC_P (UC_MASK(UC_Pc) | UC_MASK(UC_Pd) | UC_MASK(UC_Ps) | UC_MASK(UC_Pe) | UC_MASK(UC_Pi) | \
              UC_MASK(UC_Pf) | UC_MASK(UC_Po))
#define UC_S (UC_MASK(UC_Sm) | UC_MASK(UC_Sc) | UC_MASK(UC_Sk) | UC_MASK(UC_So))
#define UC_Z (UC_MASK(UC_Zs) | UC_MASK(UC_Zl) | UC_MASK(UC_Zp))
#define UC_C (UC_MASK(UC_Cn) | UC_MASK(UC_Cc) | UC_MASK(UC_Cf) | UC_MASK(UC_Cs) | UC_MASK(UC_Co))

/* The White_Space property (what Oniguruma's \s and Rust's is_whitespace
 * match); not a general category, so listed here. Stable since Unicode 6.3. */
static const uint32_t uc_space_ranges[][2] = {
    {0x09, 0x0D}, {0x20, 0x20}, {0x85, 0x85}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};
#define UC_NSPACE (sizeof uc_space_ranges / sizeof uc_space_ranges[0])

DSI_FUNC bool dsi_uc_is_space(uint32_t c) {
    if (c < 0x80) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    for (size_t i = 2; i < UC_NSPACE; i++)
        if (c >= uc_space_ranges[i][0] && c <= uc_space_ranges[i][1]) return true;
    return false;
}

/* Letters that are symbols by category but Alphabetic by property (circled
 * and squared Latin letters): Oniguruma's \w includes them. */
static const uint32_t uc_alpha_symbols[][2] = {
    {0x24B6, 0x24E9}, {0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
};

/* \w: Oniguruma's Word (letters, marks, numbers, connector punctuation). */
DSI_FUNC bool dsi_uc_is_word(uint32_t c) {
    if ((UC_MASK(uc_category(c)) & (UC_L | UC_M | UC_N | UC_MASK(UC_Pc))) != 0) return true;
    for (size_t i = 0; i < sizeof uc_alpha_symbols / sizeof uc_alpha_symbols[0]; i++)
        if (c >= uc_alpha_symbols[i][0] && c <= uc_alpha_symbols[i][1]) return true;
    return false;
}

/* Rust regex \w (used by single_word): Alphabetic, marks, decimal digits,
 * connector punctuation, joiners. Alphabetic is approximated by L, Nl and
 * the alphabetic symbols. */
DSI_FUNC bool dsi_uc_is_rust_word(uint32_t c) {
    uint32_t m = UC_MASK(uc_category(c));
    if (m & (UC_L | UC_M | UC_MASK(UC_Nd) | UC_MASK(UC_Nl) | UC_MASK(UC_Pc))) return true;
    if (c == 0x200C || c == 0x200D) return true;
    for (size_t i = 0; i < sizeof uc_alpha_symbols / sizeof uc_alpha_symbols[0]; i++)
        if (c >= uc_alpha_symbols[i][0] && c <= uc_alpha_symbols[i][1]) return true;
    return false;
}


/* Rust's char::is_numeric: the N categories (Digits pre-tokenizer). */
DSI_FUNC bool dsi_uc_is_numeric(uint32_t c) { return (UC_MASK(uc_category(c)) & UC_N) != 0; }

/* ==== UTF-8 =============================================================== */
/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is invalid or
 * cut short. Rejects overlong forms, surrogates and values above U+10FFFF. */
DSI_FUNC size_t dsi_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] > 0x9F) return 0;
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] > 0x8F) return 0;
        *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
              (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

DSI_FUNC size_t dsi_utf8_encode(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | (cp >> 6)); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* For lossy decoding: how many bytes at s form the longest prefix of some
 * valid sequence (Rust's Utf8Chunks rule). Returns the full length when the
 * sequence is complete and valid, else the length of the invalid part to
 * replace by one U+FFFD; *incomplete is set when the bytes are a valid but
 * unfinished prefix that reached the end of the buffer. */
DSI_FUNC size_t dsi_utf8_lossy_step(const uint8_t *s, size_t n, bool *valid, bool *incomplete) {
    uint8_t c = s[0];
    *valid = false;
    *incomplete = false;
    if (c < 0x80) { *valid = true; return 1; }
    size_t w = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (w == 0) return 1;
    if (n < 2) { *incomplete = true; return 1; }
    uint8_t d = s[1];
    bool ok2;
    if (w == 2) ok2 = (d & 0xC0) == 0x80;
    else if (w == 3)
        ok2 = (c == 0xE0) ? (d >= 0xA0 && d <= 0xBF) : (c == 0xED) ? (d >= 0x80 && d <= 0x9F) : ((d & 0xC0) == 0x80);
    else
        ok2 = (c == 0xF0) ? (d >= 0x90 && d <= 0xBF) : (c == 0xF4) ? (d >= 0x80 && d <= 0x8F) : ((d & 0xC0) == 0x80);
    if (!ok2) return 1;
    if (w == 2) { *valid = true; return 2; }
    if (n < 3) { *incomplete = true; return 2; }
    if ((s[2] & 0xC0) != 0x80) return 2;
    if (w == 3) { *valid = true; return 3; }
    if (n < 4) { *incomplete = true; return 3; }
    if ((s[3] & 0xC0) != 0x80) return 3;
    *valid = true;
    return 4;
}

/* ==== Ranges ============================================================== */
/* Property names: general categories (short or long, any case, '_', '-' and
 * ' ' ignored, as Oniguruma compares them). Returns a category mask (bit k
 * for category k of unicode_tables.h) or 0. */
DSI_FUNC uint32_t dsi_uc_property_mask(const uint32_t *name, size_t n) {
    char buf[40];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = name[i];
        if (c == '_' || c == '-' || c == ' ') continue;
        if (c >= 0x80 || k + 1 >= sizeof buf) return 0;
        buf[k++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    buf[k] = 0;
    static const struct { const char *name; uint32_t mask; } longs[] = {
        {"l", UC_L}, {"letter", UC_L}, {"m", UC_M}, {"mark", UC_M}, {"combiningmark", UC_M},
        {"n", UC_N}, {"number", UC_N}, {"p", UC_P}, {"punctuation", UC_P}, {"punct", UC_P},
        {"s", UC_S}, {"symbol", UC_S}, {"z", UC_Z}, {"separator", UC_Z}, {"c", UC_C}, {"other", UC_C},
        {"any", 0x3FFFFFFFu},
        {"uppercaseletter", UC_MASK(UC_Lu)}, {"lowercaseletter", UC_MASK(UC_Ll)},
        {"titlecaseletter", UC_MASK(UC_Lt)}, {"modifierletter", UC_MASK(UC_Lm)},
        {"otherletter", UC_MASK(UC_Lo)}, {"nonspacingmark", UC_MASK(UC_Mn)},
        {"spacingmark", UC_MASK(UC_Mc)}, {"enclosingmark", UC_MASK(UC_Me)},
        {"decimalnumber", UC_MASK(UC_Nd)}, {"digit", UC_MASK(UC_Nd)}, {"letternumber", UC_MASK(UC_Nl)},
        {"othernumber", UC_MASK(UC_No)}, {"connectorpunctuation", UC_MASK(UC_Pc)},
        {"dashpunctuation", UC_MASK(UC_Pd)}, {"openpunctuation", UC_MASK(UC_Ps)},
        {"closepunctuation", UC_MASK(UC_Pe)}, {"initialpunctuation", UC_MASK(UC_Pi)},
        {"finalpunctuation", UC_MASK(UC_Pf)}, {"otherpunctuation", UC_MASK(UC_Po)},
        {"mathsymbol", UC_MASK(UC_Sm)}, {"currencysymbol", UC_MASK(UC_Sc)},
        {"modifiersymbol", UC_MASK(UC_Sk)}, {"othersymbol", UC_MASK(UC_So)},
        {"spaceseparator", UC_MASK(UC_Zs)}, {"lineseparator", UC_MASK(UC_Zl)},
        {"paragraphseparator", UC_MASK(UC_Zp)}, {"control", UC_MASK(UC_Cc)}, {"cntrl", UC_MASK(UC_Cc)},
        {"format", UC_MASK(UC_Cf)}, {"surrogate", UC_MASK(UC_Cs)}, {"privateuse", UC_MASK(UC_Co)},
        {"unassigned", UC_MASK(UC_Cn)},
    };
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++)
        if (strcmp(buf, longs[i].name) == 0) return longs[i].mask;
    if (k == 2)
        for (int c = 0; c < UC_NCATS; c++)
            if (buf[0] == uc_cat_names[c][0] + 32 && buf[1] == uc_cat_names[c][1]) return UC_MASK(c);
    return 0;
}

DSI_FUNC void dsi_uc_category_ranges(uint32_t mask, dsi_uc_range_fn fn, void *u) {
    for (size_t i = 0; i < UC_NRUNS; i++) {
        if (!(mask & UC_MASK(uc_cat_runs[i] & 31u))) continue;
        uint32_t lo = uc_cat_runs[i] >> 5;
        uint32_t hi = i + 1 < UC_NRUNS ? (uc_cat_runs[i + 1] >> 5) - 1 : 0x10FFFF;
        fn(u, lo, hi);
    }
}

DSI_FUNC void dsi_uc_class_ranges(int cls, dsi_uc_range_fn fn, void *u) {
    switch (cls) {
    case DSI_UC_CLASS_SPACE:
        for (size_t i = 0; i < UC_NSPACE; i++) fn(u, uc_space_ranges[i][0], uc_space_ranges[i][1]);
        break;
    case DSI_UC_CLASS_DIGIT: dsi_uc_category_ranges(UC_MASK(UC_Nd), fn, u); break;
    case DSI_UC_CLASS_WORD:
        /* the same set as dsi_uc_is_word */
        dsi_uc_category_ranges(UC_L | UC_M | UC_N | UC_MASK(UC_Pc), fn, u);
        for (size_t i = 0; i < sizeof uc_alpha_symbols / sizeof uc_alpha_symbols[0]; i++)
            fn(u, uc_alpha_symbols[i][0], uc_alpha_symbols[i][1]);
        break;
    default: break;
    }
}
