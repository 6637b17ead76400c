/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_quant.c — number formats against independent references: the
 * compiler's _Float16 conversions (hardware rounding), exact FP8 e4m3 and
 * bfloat16 values from their definitions, the Q8_0 error bound, and the
 * Q4_0 quantizer byte for byte against an independent numpy version of its
 * rule (tests/ref/make_q4_golden.py -> tests/ref/goldens/q4_0.bin) and its
 * error bound; the pruned Q8_0 forms (2:4 packed, masked sparse) against
 * Q8_0 of the same rows, and the tensor strides of every format.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <math.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void test_f16(void) {
    /* 1.1: every half converts to float and back unchanged (NaNs stay NaN) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dsi_f16_to_f32((uint16_t)h);
        uint16_t back = dsi_f32_to_f16(f);
        bool nan = ((h & 0x7c00) == 0x7c00) && (h & 0x3ff);
        if (nan ? !isnan(f) : back != h) bad++;
    }
    T_CHECK("quant-1.1", bad == 0, "%d halves did not round-trip", bad);

#if defined(__FLT16_MAX__)
    /* 1.2: float -> half rounding agrees with the compiler's _Float16 on
     * random bit patterns across the whole range (normals, subnormals,
     * overflow, ties). */
    bad = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = rng();
        if (i % 4 == 0) u = (u & 0x807fffffu) | ((uint32_t)(100 + rng() % 50) << 23); /* near half's range */
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f)) continue;
        _Float16 ref = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &ref, 2);
        if (dsi_f32_to_f16(f) != rb) {
            if (bad < 3) printf("  f=%a ours=%04x ref=%04x\n", (double)f, dsi_f32_to_f16(f), rb);
            bad++;
        }
    }
    T_CHECK("quant-1.2", bad == 0, "%d conversions differ from _Float16", bad);
#else
    T_SKIP("quant-1.2", "compiler has no _Float16");
#endif
}

static void test_bf16_fp8(void) {
    T_CHECK("quant-2.1", dsi_bf16_to_f32(0x3f80) == 1.0f, "bf16 0x3f80 != 1");
    T_CHECK("quant-2.2", dsi_bf16_to_f32(0xc0a0) == -5.0f, "bf16 0xc0a0 != -5");
    /* e4m3fn: bias 7, 3 mantissa bits, max 448, min subnormal 2^-9 */
    T_CHECK("quant-2.3", dsi_fp8_e4m3_to_f32(0x38) == 1.0f, "e4m3 0x38");
    T_CHECK("quant-2.4", dsi_fp8_e4m3_to_f32(0xb8) == -1.0f, "e4m3 0xb8");
    T_CHECK("quant-2.5", dsi_fp8_e4m3_to_f32(0x7e) == 448.0f, "e4m3 0x7e = %g", (double)dsi_fp8_e4m3_to_f32(0x7e));
    T_CHECK("quant-2.6", dsi_fp8_e4m3_to_f32(0x01) == ldexpf(1.0f, -9), "e4m3 0x01");
    T_CHECK("quant-2.7", dsi_fp8_e4m3_to_f32(0x08) == ldexpf(1.0f, -6), "e4m3 0x08");
    T_CHECK("quant-2.8", dsi_fp8_e4m3_to_f32(0x3c) == 1.5f, "e4m3 0x3c");
    T_CHECK("quant-2.9", isnan(dsi_fp8_e4m3_to_f32(0x7f)) && isnan(dsi_fp8_e4m3_to_f32(0xff)), "e4m3 NaN");
    T_CHECK("quant-2.10", dsi_fp8_e4m3_to_f32(0x00) == 0.0f && dsi_fp8_e4m3_to_f32(0x80) == 0.0f, "e4m3 zero");
    /* monotone over the positive codes */
    int bad = 0;
    for (int v = 1; v < 0x7f; v++)
        if (!(dsi_fp8_e4m3_to_f32((uint8_t)v) > dsi_fp8_e4m3_to_f32((uint8_t)(v - 1)))) bad++;
    T_CHECK("quant-2.11", bad == 0, "e4m3 not monotone in %d places", bad);
}

static void test_q8(void) {
    enum { N = 32 * 64 };
    static float x[N], y[N];
    static uint8_t q[N / 32 * 34];
    int bad_bound = 0, bad_scale = 0;
    for (int trial = 0; trial < 200; trial++) {
        float mag = ldexpf(1.0f, (int)(rng() % 30) - 20);
        for (int i = 0; i < N; i++) x[i] = ((float)(rng() % 200001) / 100000.0f - 1.0f) * mag;
        if (trial % 7 == 0) for (int i = 0; i < 32; i++) x[i] = 0.0f;   /* an all-zero block */
        if (trial % 5 == 0) x[3] = 127.0f * mag;                        /* exact multiples */
        dsi_quantize_row_q8_0(x, q, N);
        dsi_dequantize_row_q8_0(q, y, N);
        for (int b = 0; b < N / 32; b++) {
            float scale = dsi_f16_to_f32(dsi_rd16(q + b * 34));
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
            /* the stored scale is the smallest half >= amax/127 */
            float want = amax / 127.0f;
            uint16_t s16 = dsi_rd16(q + b * 34);
            if (scale < want || (s16 > 0 && dsi_f16_to_f32((uint16_t)(s16 - 1)) >= want && want > 0)) bad_scale++;
            for (int i = 0; i < 32; i++)
                if (fabsf(x[b * 32 + i] - y[b * 32 + i]) > scale * 0.5f * (1.0f + 1e-6f)) bad_bound++;
        }
    }
    T_CHECK("quant-3.1", bad_bound == 0, "%d values outside scale/2", bad_bound);
    T_CHECK("quant-3.2", bad_scale == 0, "%d blocks with a scale that is not the smallest half >= amax/127", bad_scale);
    uint64_t rb = 0;
    T_CHECK("quant-3.3", dsi_dtype_row_bytes(DS_DTYPE_Q8_0, 64, &rb) && rb == 68, "row bytes %llu", (unsigned long long)rb);
    T_CHECK("quant-3.4", !dsi_dtype_row_bytes(DS_DTYPE_Q8_0, 65, &rb), "Q8_0 accepted 65 columns");
    T_CHECK("quant-3.5", !dsi_dtype_row_bytes(DS_DTYPE_F32, UINT64_MAX / 2, &rb), "overflow not caught");
}

/* ==== Q4_0 ================================================================ */
static void test_q4(void) {
    /* 4.1: the numpy golden, block for block */
    const char *gdir = getenv("DS_GOLDENS") ? getenv("DS_GOLDENS") : "tests/ref/goldens";
    char path[512];
    snprintf(path, sizeof path, "%s/q4_0.bin", gdir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        T_SKIP("quant-4.1", "no tests/ref/goldens/q4_0.bin (tests/ref/make_q4_golden.py)");
    } else {
        uint8_t hdr[12];
        uint32_t rows = 0, cols = 0;
        bool ok = fread(hdr, 1, 12, f) == 12 && memcmp(hdr, "DSQ4", 4) == 0;
        if (ok) {
            rows = dsi_rd32(hdr + 4);
            cols = dsi_rd32(hdr + 8);
            ok = rows > 0 && rows <= 4096 && cols > 0 && cols <= 4096 && cols % 32 == 0;
        }
        float *x = ok ? malloc((size_t)rows * cols * sizeof(float)) : NULL;
        size_t rb = (size_t)cols / 32 * DSI_Q4_BLOCK_BYTES;
        uint8_t *want = ok ? malloc(rows * rb) : NULL, *got = ok ? malloc(rb) : NULL;
        ok = ok && x && want && got && fread(x, sizeof(float), (size_t)rows * cols, f) == (size_t)rows * cols &&
             fread(want, 1, rows * rb, f) == rows * rb;
        T_CHECK("quant-4.1", ok, "%s: unreadable golden", path);
        int bad_rows = 0, bad_blocks = 0;
        for (uint32_t r = 0; ok && r < rows; r++) {
            dsi_quantize_row_q4_0(x + (size_t)r * cols, got, cols);
            if (memcmp(got, want + r * rb, rb)) {
                bad_rows++;
                for (size_t b = 0; b < cols / 32; b++) {
                    const uint8_t *g = got + b * DSI_Q4_BLOCK_BYTES, *w = want + r * rb + b * DSI_Q4_BLOCK_BYTES;
                    if (memcmp(g, w, DSI_Q4_BLOCK_BYTES) && bad_blocks++ < 3)
                        printf("  row %u block %zu: ours d=%04x q0=%02x, numpy d=%04x q0=%02x\n", r, b, dsi_rd16(g),
                               g[2], dsi_rd16(w), w[2]);
                }
            }
        }
        if (ok)
            T_CHECK("quant-4.2", bad_rows == 0, "%d of %u rows (%d blocks) differ from the numpy rule", bad_rows, rows,
                    bad_blocks);
        free(x);
        free(want);
        free(got);
        fclose(f);
    }
    /* 4.3-4.6: the error bound on random rows, the round trip through Q8_0
     * (exact), zero blocks, the largest value exact */
    enum { N = 32 * 64 };
    static float x[N], y[N], z[N];
    static uint8_t q[N / 32 * DSI_Q4_BLOCK_BYTES], q8[N / 32 * DSI_Q8_BLOCK_BYTES];
    int bad_bound = 0, bad_max = 0, bad_q8 = 0, bad_zero = 0;
    for (int trial = 0; trial < 200; trial++) {
        float mag = ldexpf(1.0f, (int)(rng() % 30) - 20);
        for (int i = 0; i < N; i++) x[i] = ((float)(rng() % 200001) / 100000.0f - 1.0f) * mag;
        if (trial % 7 == 0) for (int i = 0; i < 32; i++) x[i] = 0.0f;
        dsi_quantize_row_q4_0(x, q, N);
        dsi_dequantize_row_q4_0(q, y, N);
        dsi_q4_0_to_q8_0(q, q8, N);
        dsi_dequantize_row_q8_0(q8, z, N);
        if (memcmp(y, z, sizeof y)) bad_q8++;
        for (int b = 0; b < N / 32; b++) {
            float d = fabsf(dsi_f16_to_f32(dsi_rd16(q + b * DSI_Q4_BLOCK_BYTES)));
            float amax = 0;
            int im = 0;
            for (int i = 0; i < 32; i++)
                if (fabsf(x[b * 32 + i]) > amax) {
                    amax = fabsf(x[b * 32 + i]);
                    im = i;
                }
            if (amax == 0) {
                for (int i = 0; i < 32; i++) bad_zero += y[b * 32 + i] != 0.0f;
                continue;
            }
            /* the largest value maps to -8 scales: error only from d's rounding up */
            if (fabsf(y[b * 32 + im] - x[b * 32 + im]) > 8.0f * d - amax + 1e-6f * amax) bad_max++;
            for (int i = 0; i < 32; i++) {
                float xi = x[b * 32 + i], err = fabsf(xi - y[b * 32 + i]);
                /* d/2 inside the grid; up to d for a value near -m (clamped at 7) */
                bool clamped = xi * (x[b * 32 + im] > 0 ? -1.0f : 1.0f) > 7.5f * d;
                if (err > (clamped ? d : 0.5f * d) * (1.0f + 1e-6f)) bad_bound++;
            }
        }
    }
    T_CHECK("quant-4.3", bad_bound == 0, "%d values outside the Q4_0 bound (d/2, d where clamped)", bad_bound);
    T_CHECK("quant-4.4", bad_max == 0, "%d blocks whose largest value is not (nearly) exact", bad_max);
    T_CHECK("quant-4.5", bad_q8 == 0, "%d rows whose Q8_0 rewrite holds other values", bad_q8);
    T_CHECK("quant-4.6", bad_zero == 0, "%d values of all-zero blocks are not zero", bad_zero);
    uint64_t rb = 0;
    T_CHECK("quant-4.7", dsi_dtype_row_bytes(DS_DTYPE_Q4_0, 64, &rb) && rb == 36, "row bytes %llu",
            (unsigned long long)rb);
    T_CHECK("quant-4.8", !dsi_dtype_row_bytes(DS_DTYPE_Q4_0, 48, &rb), "Q4_0 accepted 48 columns");
}

/* A random row (n values) with a share of zeros: pattern 0: each value
 * zero with probability zero_pct %; 1: 2:4 sparse (per group of four, two
 * random positions zeroed, sometimes more); 2: tiny values that quantize to
 * 0 beside large ones. */
static void pruned_row(float *x, int n, int pattern, int zero_pct) {
    float mag = ldexpf(1.0f, (int)(rng() % 20) - 10);
    for (int i = 0; i < n; i++) x[i] = ((float)(rng() % 200001) / 100000.0f - 1.0f) * mag;
    if (pattern == 0)
        for (int i = 0; i < n; i++)
            if ((int)(rng() % 100) < zero_pct) x[i] = 0.0f;
    if (pattern == 1)
        for (int g = 0; g < n / 4; g++) {
            int a = (int)(rng() % 4), b = (a + 1 + (int)(rng() % 3)) % 4;
            x[4 * g + a] = x[4 * g + b] = 0.0f;
            if (rng() % 5 == 0) x[4 * g + (int)(rng() % 4)] = 0.0f;
        }
    if (pattern == 2)
        for (int i = 0; i < n; i++)
            if (rng() % 3) x[i] *= 1e-4f;
}

static void test_q8_pruned(void) {
    enum { N = 32 * 40 };
    static float x[N], y[N], z[N];
    static uint8_t q8[N / 32 * DSI_Q8_BLOCK_BYTES], q8b[N / 32 * DSI_Q8_BLOCK_BYTES];
    static uint8_t q24[N / 32 * DSI_Q24_BLOCK_BYTES], sp[N / 32 * DSI_SP_HEAD_BYTES + N + 64];
    int bad24 = 0, bad24q8 = 0, badsp = 0, badspq8 = 0, badcount = 0, badpad = 0, bad24keep = 0, bad24order = 0;
    for (int trial = 0; trial < 600; trial++) {
        int n = 32 * (1 + (int)(rng() % (N / 32)));
        pruned_row(x, n, trial % 3, (int)(rng() % 101));
        dsi_quantize_row_q8_0(x, q8, (size_t)n);
        dsi_dequantize_row_q8_0(q8, y, (size_t)n);
        /* 5.1: a 2:4-sparse row decodes to its Q8_0 values bit for bit, and
         * its Q8_0 rewrite is Q8_0's bytes */
        dsi_quantize_row_q8_0_24(x, q24, (size_t)n);
        dsi_dequantize_row_q8_0_24(q24, z, (size_t)n);
        dsi_q8_0_24_to_q8_0(q24, q8b, (size_t)n);
        if (trial % 3 == 1) {
            if (memcmp(y, z, (size_t)n * sizeof(float))) bad24++;
            if (memcmp(q8, q8b, (size_t)(n / 32) * DSI_Q8_BLOCK_BYTES)) bad24q8++;
        }
        /* 5.2: any row: each group keeps the two nonzero q of largest |x|
         * (the scale is Q8_0's), and p0 < p1 */
        for (int b = 0; b < n / 32; b++) {
            const uint8_t *blk = q24 + b * DSI_Q24_BLOCK_BYTES;
            if (dsi_rd16(blk) != dsi_rd16(q8 + b * DSI_Q8_BLOCK_BYTES)) bad24keep++;
            for (int g = 0; g < 8; g++) {
                unsigned pb = (blk[2 + g / 2] >> (4 * (g & 1))) & 15, p0 = pb & 3, p1 = pb >> 2;
                if (p0 >= p1) bad24order++;
                const int8_t *qg = (const int8_t *)(q8 + b * DSI_Q8_BLOCK_BYTES + 2) + 4 * g;
                const float *xg = x + b * 32 + 4 * g;
                /* every dropped nonzero is no larger than every kept value
                 * (a kept zero only when fewer than two are nonzero) */
                for (unsigned i = 0; i < 4; i++) {
                    if (i == p0 || i == p1 || qg[i] == 0) continue;
                    unsigned kp[2] = {p0, p1};
                    for (int k = 0; k < 2; k++)
                        if (qg[kp[k]] == 0 || fabsf(xg[kp[k]]) < fabsf(xg[i]) ||
                            (fabsf(xg[kp[k]]) == fabsf(xg[i]) && kp[k] > i))
                            bad24keep++;
                }
                if ((int8_t)blk[6 + 2 * g] != qg[p0] || (int8_t)blk[7 + 2 * g] != qg[p1]) bad24keep++;
            }
        }
        /* 5.3: SP: the count, the row at its exact size and with padding
         * decode to Q8_0's values bit for bit; padding is zeros */
        size_t cnt = dsi_sp_row_count(x, (size_t)n), want = 0;
        for (int i = 0; i < n; i++) want += q8[(i / 32) * DSI_Q8_BLOCK_BYTES + 2 + i % 32] != 0;
        if (cnt != want) badcount++;
        size_t stride = (size_t)(n / 32) * DSI_SP_HEAD_BYTES + cnt + (trial & 1 ? 0 : 17);
        memset(sp, 0xAB, sizeof sp);
        dsi_quantize_row_q8_0_sp(x, sp, (size_t)n, stride);
        for (size_t i = (size_t)(n / 32) * DSI_SP_HEAD_BYTES + cnt; i < stride; i++) badpad += sp[i] != 0;
        badpad += sp[stride] != 0xAB;   /* exactly stride bytes written */
        dsi_dequantize_row_q8_0_sp(sp, z, (size_t)n);
        if (memcmp(y, z, (size_t)n * sizeof(float))) badsp++;
        dsi_q8_0_sp_to_q8_0(sp, q8b, (size_t)n);
        if (memcmp(q8, q8b, (size_t)(n / 32) * DSI_Q8_BLOCK_BYTES)) badspq8++;
        dsi_dtype_decode_row(DS_DTYPE_Q8_0_SP, sp, z, (size_t)n);
        if (memcmp(y, z, (size_t)n * sizeof(float))) badsp++;
    }
    T_CHECK("quant-5.1", bad24 == 0 && bad24q8 == 0, "2:4-sparse rows: %d decode and %d Q8_0 rewrites differ from Q8_0",
            bad24, bad24q8);
    T_CHECK("quant-5.2", bad24keep == 0 && bad24order == 0, "2:4 encoding: %d wrong kept values, %d groups p0 >= p1",
            bad24keep, bad24order);
    T_CHECK("quant-5.3", badcount == 0, "dsi_sp_row_count wrong in %d rows", badcount);
    T_CHECK("quant-5.4", badsp == 0 && badspq8 == 0 && badpad == 0,
            "SP rows: %d decodes and %d Q8_0 rewrites differ from Q8_0, %d padding bytes wrong", badsp, badspq8, badpad);

    /* 5.5: malformed 2:4 blocks decode as documented: p0 == p1 keeps the
     * second value; every pos byte gives two values per group at most */
    uint8_t blk[DSI_Q24_BLOCK_BYTES];
    int bad_mal = 0;
    for (int trial = 0; trial < 2000; trial++) {
        for (int i = 0; i < DSI_Q24_BLOCK_BYTES; i++) blk[i] = (uint8_t)rng();
        blk[0] = 0x00;
        blk[1] = 0x3c;   /* d = 1 */
        dsi_dequantize_row_q8_0_24(blk, z, 32);
        for (int g = 0; g < 8; g++) {
            unsigned pb = (blk[2 + g / 2] >> (4 * (g & 1))) & 15, p0 = pb & 3, p1 = pb >> 2;
            for (unsigned i = 0; i < 4; i++) {
                float want = i == p1 ? (float)(int8_t)blk[7 + 2 * g] : i == p0 ? (float)(int8_t)blk[6 + 2 * g] : 0.0f;
                if (z[4 * g + i] != want) bad_mal++;
            }
        }
    }
    T_CHECK("quant-5.5", bad_mal == 0, "%d values of malformed 2:4 blocks decode otherwise than documented", bad_mal);

    /* 5.6: strides: fixed formats rows x row bytes exactly; SP (nbytes -
     * cols) / rows within [nb*6, nb*6 + cols] */
    uint64_t rb = 0;
    T_CHECK("quant-5.6", dsi_dtype_row_bytes(DS_DTYPE_Q8_0_24, 64, &rb) && rb == 44, "Q8_0_24 row bytes %llu",
            (unsigned long long)rb);
    T_CHECK("quant-5.6", !dsi_dtype_row_bytes(DS_DTYPE_Q8_0_SP, 64, &rb), "Q8_0_SP has no fixed row size");
    T_CHECK("quant-5.6", !dsi_dtype_row_bytes(DS_DTYPE_Q8_0_24, 48, &rb), "Q8_0_24 accepted 48 columns");
    T_CHECK("quant-5.6", dsi_tensor_row_bytes(DS_DTYPE_Q8_0, 3, 64, 204, &rb) && rb == 68, "Q8_0 3x64");
    T_CHECK("quant-5.6", !dsi_tensor_row_bytes(DS_DTYPE_Q8_0, 3, 64, 205, &rb), "Q8_0 3x64 in 205 bytes");
    T_CHECK("quant-5.6", dsi_tensor_row_bytes(DS_DTYPE_Q8_0_24, 2, 32, 44, &rb) && rb == 22, "Q8_0_24 2x32");
    T_CHECK("quant-5.6", dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 20 + 64, &rb) && rb == 20,
            "SP 3x64 stride 20");
    T_CHECK("quant-5.6", dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 12 + 64, &rb) && rb == 12,
            "SP 3x64 stride 12 (heads only)");
    T_CHECK("quant-5.6", dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 76 + 64, &rb) && rb == 76,
            "SP 3x64 stride 76 (every value)");
    T_CHECK("quant-5.6", !dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 11 + 64, &rb), "SP stride 11 < heads");
    T_CHECK("quant-5.6", !dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 77 + 64, &rb), "SP stride 77 > full");
    T_CHECK("quant-5.6", !dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 20 + 65, &rb), "SP ragged");
    T_CHECK("quant-5.6", !dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 3, 64, 63, &rb), "SP below the guard");
    T_CHECK("quant-5.6", !dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 1, 48, 48 + 12, &rb), "SP 48 columns");
    T_CHECK("quant-5.6", !dsi_tensor_row_bytes(DS_DTYPE_Q8_0_SP, 0, 64, 64, &rb), "SP zero rows");
    T_CHECK("quant-5.6", !dsi_tensor_row_bytes((ds_dtype)6, 1, 64, 64, &rb), "dtype 6");
    /* 5.7: encoding a row refuses SP (its stride is the tensor's); 2:4 is
     * dsi_quantize_row_q8_0_24 */
    pruned_row(x, 64, 1, 0);
    T_CHECK("quant-5.7", !dsi_dtype_encode_row(DS_DTYPE_Q8_0_SP, x, sp, 64), "SP row encoded without a stride");
    uint8_t a24[2 * DSI_Q24_BLOCK_BYTES];
    T_CHECK("quant-5.7", dsi_dtype_encode_row(DS_DTYPE_Q8_0_24, x, q24, 64), "2:4 row not encoded");
    dsi_quantize_row_q8_0_24(x, a24, 64);
    T_CHECK("quant-5.7", memcmp(a24, q24, sizeof a24) == 0, "dsi_dtype_encode_row 2:4 differs");
    T_CHECK("quant-5.8", strcmp(ds_dtype_name(DS_DTYPE_Q8_0_24), "Q8_0_24") == 0 &&
                             strcmp(ds_dtype_name(DS_DTYPE_Q8_0_SP), "Q8_0_SP") == 0,
            "names %s %s", ds_dtype_name(DS_DTYPE_Q8_0_24), ds_dtype_name(DS_DTYPE_Q8_0_SP));
}

int main(void) {
    test_f16();
    test_bf16_fp8();
    test_q8();
    test_q4();
    test_q8_pruned();
    return t_finish("test_quant");
}
