/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * ops.c — portable C kernels: dot products of one stored row (F32, F16,
 * Q8_0, Q4_0 or the pruned Q8_0 forms, dequantized inside the loop, never expanded into a copy of the
 * matrix) with an F32 vector, RMSNorm, softmax. F32 accumulation throughout.
 * ISA-specific versions (AVX2/F16C/FMA) come later behind the same calls.
 */
#include "kernels.h"

#include <math.h>

/* Multiplies and adds stay apart (no FMA contraction) so that the kernels
 * that promise the same bits as these can give them: GCC's default under
 * -std=c11; clang contracts unless told (GCC in -std=gnu modes would too). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ==== Dot products ======================================================= */
DSI_FUNC float dsi_dot_f32_c(const float *a, const float *b, int n) {
    /* four partial sums: lets the compiler vectorise and shortens the
     * dependency chain */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

DSI_FUNC float dsi_dot_q8_c(const uint8_t *row, const float *x, int n) {
    float sum = 0;
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        const int8_t *q = (const int8_t *)(blk + 2);
        const float *xb = x + b * DSI_Q8_BLOCK;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < DSI_Q8_BLOCK; i += 4) {
            s0 += (float)q[i] * xb[i];
            s1 += (float)q[i + 1] * xb[i + 1];
            s2 += (float)q[i + 2] * xb[i + 2];
            s3 += (float)q[i + 3] * xb[i + 3];
        }
        sum += dsi_f16_to_f32(dsi_rd16(blk)) * ((s0 + s1) + (s2 + s3));
    }
    return sum;
}

DSI_FUNC float dsi_dot_f16_c(const uint8_t *row, const float *x, int n) {
    float s0 = 0, s1 = 0;
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += dsi_f16_to_f32(dsi_rd16(row + 2 * i)) * x[i];
        s1 += dsi_f16_to_f32(dsi_rd16(row + 2 * i + 2)) * x[i + 1];
    }
    for (; i < n; i++) s0 += dsi_f16_to_f32(dsi_rd16(row + 2 * i)) * x[i];
    return s0 + s1;
}

/* Activations quantized on the fly: n floats (n % 32 == 0) into int8 q with
 * one float scale per block of 32 (amax / 127, round to nearest even), so a
 * Q8_0 row times a vector is an exact int32 sum per block. */
DSI_FUNC void dsi_quantize_act_q8_c(const float *x, int n, int8_t *q, float *s) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const float *xb = x + b * DSI_Q8_BLOCK;
        float amax = 0;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
        s[b] = d;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) q[b * DSI_Q8_BLOCK + i] = (int8_t)lrintf(xb[i] * inv);
    }
}

DSI_FUNC float dsi_dot_q8q8_c(const uint8_t *row, const int8_t *q, const float *s, int n) {
    float sum = 0;
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        const int8_t *w = (const int8_t *)(blk + 2);
        const int8_t *a = q + b * DSI_Q8_BLOCK;
        int32_t acc = 0;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) acc += (int32_t)w[i] * (int32_t)a[i];
        sum += dsi_f16_to_f32(dsi_rd16(blk)) * s[b] * (float)acc;
    }
    return sum;
}

/* Q4_0 rows: the nibble of value i of a block (i < 16: low nibbles, i >= 16:
 * high), minus 8. */
static inline int dsi_q4_val(const uint8_t *qs, int i) { return (i < 16 ? (qs[i] & 15) : (qs[i - 16] >> 4)) - 8; }

DSI_FUNC float dsi_dot_q4_c(const uint8_t *row, const float *x, int n) {
    float sum = 0;
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        const float *xb = x + b * DSI_Q8_BLOCK;
        float s0 = 0, s1 = 0;
        for (int i = 0; i < 16; i++) {
            s0 += (float)dsi_q4_val(blk + 2, i) * xb[i];
            s1 += (float)dsi_q4_val(blk + 2, i + 16) * xb[i + 16];
        }
        sum += dsi_f16_to_f32(dsi_rd16(blk)) * (s0 + s1);
    }
    return sum;
}

DSI_FUNC float dsi_dot_q4q8_c(const uint8_t *row, const int8_t *q, const float *s, int n) {
    float sum = 0;
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        const int8_t *a = q + b * DSI_Q8_BLOCK;
        int32_t acc = 0;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) acc += (int32_t)dsi_q4_val(blk + 2, i) * (int32_t)a[i];
        sum += dsi_f16_to_f32(dsi_rd16(blk)) * s[b] * (float)acc;
    }
    return sum;
}

/* ==== Pruned Q8_0 rows =======================================================
 * Each block's 32 int8 values are laid out in order on the stack (one block,
 * not a copy of the row), then the Q8_0 loops run on them: the sums are
 * those of the Q8_0 kernels on the row's Q8_0 form, term for term (a zero
 * adds a zero product). A cursor walks a row block by block. */
typedef struct dsi_px {
    const uint8_t *row;
    const uint8_t *v;        /* Q8_0_SP: the next stored value */
    int nb;
    bool sp;
} dsi_px;

static dsi_px dsi_px_start(const uint8_t *row, int n, bool sp) {
    dsi_px c = {row, row + (size_t)(n / DSI_Q8_BLOCK) * DSI_SP_HEAD_BYTES, n / DSI_Q8_BLOCK, sp};
    return c;
}

/* Block b (in order, each once) into w; returns its scale. */
static float dsi_px_block(dsi_px *c, int b, int8_t w[DSI_Q8_BLOCK]) {
    if (c->sp) {
        uint32_t mask = dsi_rd32(c->row + 2 * (size_t)c->nb + 4 * (size_t)b);
        for (int i = 0; i < DSI_Q8_BLOCK; i++) w[i] = (mask >> i) & 1 ? (int8_t)*c->v++ : 0;
        return dsi_f16_to_f32(dsi_rd16(c->row + 2 * (size_t)b));
    }
    const uint8_t *blk = c->row + (size_t)b * DSI_Q24_BLOCK_BYTES;
    memset(w, 0, DSI_Q8_BLOCK);
    for (int g = 0; g < 8; g++) {   /* p0, then p1 (p0 == p1: the second wins) */
        unsigned pb = blk[2 + g / 2] >> (4 * (g & 1));
        w[4 * g + (pb & 3)] = (int8_t)blk[6 + 2 * g];
        w[4 * g + ((pb >> 2) & 3)] = (int8_t)blk[7 + 2 * g];
    }
    return dsi_f16_to_f32(dsi_rd16(blk));
}

static float dsi_px_dot_c(const uint8_t *row, const float *x, int n, bool sp) {
    dsi_px c = dsi_px_start(row, n, sp);
    float sum = 0;
    for (int b = 0; b < c.nb; b++) {
        int8_t q[DSI_Q8_BLOCK];
        float d = dsi_px_block(&c, b, q);
        const float *xb = x + b * DSI_Q8_BLOCK;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int i = 0; i < DSI_Q8_BLOCK; i += 4) {
            s0 += (float)q[i] * xb[i];
            s1 += (float)q[i + 1] * xb[i + 1];
            s2 += (float)q[i + 2] * xb[i + 2];
            s3 += (float)q[i + 3] * xb[i + 3];
        }
        sum += d * ((s0 + s1) + (s2 + s3));
    }
    return sum;
}

static float dsi_px_dotq8_c(const uint8_t *row, const int8_t *q, const float *s, int n, bool sp) {
    dsi_px c = dsi_px_start(row, n, sp);
    float sum = 0;
    for (int b = 0; b < c.nb; b++) {
        int8_t w[DSI_Q8_BLOCK];
        float d = dsi_px_block(&c, b, w);
        const int8_t *a = q + b * DSI_Q8_BLOCK;
        int32_t acc = 0;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) acc += (int32_t)w[i] * (int32_t)a[i];
        sum += d * s[b] * (float)acc;
    }
    return sum;
}

static void dsi_px_axpy_c(const uint8_t *row, float a, float *y, int n, bool sp) {
    dsi_px c = dsi_px_start(row, n, sp);
    for (int b = 0; b < c.nb; b++) {
        int8_t q[DSI_Q8_BLOCK];
        float as = a * dsi_px_block(&c, b, q);
        float *yb = y + b * DSI_Q8_BLOCK;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) yb[i] += as * (float)q[i];
    }
}

DSI_FUNC float dsi_dot_24q8_c(const uint8_t *row, const int8_t *q, const float *s, int n) {
    return dsi_px_dotq8_c(row, q, s, n, false);
}
DSI_FUNC float dsi_dot_spq8_c(const uint8_t *row, const int8_t *q, const float *s, int n) {
    return dsi_px_dotq8_c(row, q, s, n, true);
}
static float dsi_dot_24_c(const uint8_t *row, const float *x, int n) { return dsi_px_dot_c(row, x, n, false); }
static float dsi_dot_sp_c(const uint8_t *row, const float *x, int n) { return dsi_px_dot_c(row, x, n, true); }
static void dsi_axpy_24_c(const uint8_t *row, float a, float *y, int n) { dsi_px_axpy_c(row, a, y, n, false); }
static void dsi_axpy_sp_c(const uint8_t *row, float a, float *y, int n) { dsi_px_axpy_c(row, a, y, n, true); }
static void dsi_dequant_24(const uint8_t *row, float *y, int n) { dsi_dequantize_row_q8_0_24(row, y, (size_t)n); }
static void dsi_dequant_sp(const uint8_t *row, float *y, int n) { dsi_dequantize_row_q8_0_sp(row, y, (size_t)n); }
static void dsi_24_to_q8_c(const uint8_t *row, uint8_t *out, int n) { dsi_q8_0_24_to_q8_0(row, out, (size_t)n); }
static void dsi_sp_to_q8_c(const uint8_t *row, uint8_t *out, int n) { dsi_q8_0_sp_to_q8_0(row, out, (size_t)n); }

DSI_FUNC void dsi_act_to_u8(const int8_t *q, uint8_t *u, size_t n) {
    for (size_t i = 0; i < n; i++) u[i] = (uint8_t)((uint8_t)q[i] ^ 0x80u);   /* q + 128 */
}

/* Token-lane tile layouts (dsi_gemm_q8u8_tl_vnni, dsi_gemm_q8q8_tl8_avx2):
 * tiles of at most per tokens (dsi_lane_tile), L lanes each; in tile i,
 * block b, step k (bytes 4k..4k+3 of the block), lane t holds those four
 * bytes of token t0 + t. Unused lanes hold the byte fill (x = 0) with scale
 * 0; in the VNNI layout that includes the bias lane. */
static void dsi_lane_pack(const uint8_t *x, size_t ldx, const float *s, size_t lds, int T, int cols, int per,
                          size_t L, uint8_t fill, uint8_t *P, float *S) {
    size_t nb = (size_t)cols / DSI_Q8_BLOCK;
    for (int tile = 0; tile < dsi_lane_tiles(T, per); tile++) {
        int t0, n;
        dsi_lane_tile(T, per, tile, &t0, &n);
        uint8_t *pt = P + (size_t)tile * nb * 32 * L;
        float *st = S + (size_t)tile * nb * L;
        memset(pt, fill, nb * 32 * L);
        for (int t = 0; t < n; t++) {
            const uint8_t *src = x + (size_t)(t0 + t) * ldx;
            for (size_t b = 0; b < nb; b++)
                for (size_t k = 0; k < 8; k++) memcpy(pt + ((b * 8 + k) * L + (size_t)t) * 4, src + b * 32 + 4 * k, 4);
        }
        for (size_t b = 0; b < nb; b++)
            for (size_t t = 0; t < L; t++) st[b * L + t] = t < (size_t)n ? s[(size_t)(t0 + (int)t) * lds + b] : 0.0f;
    }
}

DSI_FUNC void dsi_tl_pack(const uint8_t *u, size_t ldu, const float *s, size_t lds, int T, int cols, uint8_t *P,
                          float *S) {
    dsi_lane_pack(u, ldu, s, lds, T, cols, DSI_TL_TOKENS, 16, 0x80, P, S);
}

DSI_FUNC void dsi_tl8_pack(const int8_t *q, size_t ldq, const float *s, size_t lds, int T, int cols, int8_t *P,
                           float *S) {
    dsi_lane_pack((const uint8_t *)(const void *)q, ldq, s, lds, T, cols, DSI_TL8_TOKENS, 8, 0,
                  (uint8_t *)(void *)P, S);
}

DSI_FUNC void dsi_axpy_f32_c(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* ==== One row of each weight format ======================================= */
static float dsi_dot_rf32_c(const uint8_t *row, const float *x, int n) {
    return dsi_dot_f32_c((const float *)(const void *)row, x, n);
}

static void dsi_dequant_f32(const uint8_t *row, float *y, int n) { memcpy(y, row, (size_t)n * sizeof(float)); }

static void dsi_dequant_f16_c(const uint8_t *row, float *y, int n) {
    dsi_dequantize_row_f16((const uint16_t *)(const void *)row, y, (size_t)n);
}

static void dsi_dequant_q8(const uint8_t *row, float *y, int n) { dsi_dequantize_row_q8_0(row, y, (size_t)n); }

static void dsi_dequant_q4(const uint8_t *row, float *y, int n) { dsi_dequantize_row_q4_0(row, y, (size_t)n); }

static void dsi_axpy_q4_c(const uint8_t *row, float a, float *y, int n) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        float as = a * dsi_f16_to_f32(dsi_rd16(blk));
        float *yb = y + b * DSI_Q8_BLOCK;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) yb[i] += as * (float)dsi_q4_val(blk + 2, i);
    }
}

static void dsi_q4_to_q8_c(const uint8_t *row, uint8_t *out, int n) { dsi_q4_0_to_q8_0(row, out, (size_t)n); }

/* F32 rows take this loop in every set (the AVX2 axpy is for activations) */
static void dsi_axpy_rf32(const uint8_t *row, float a, float *y, int n) {
    const float *r = (const float *)(const void *)row;
    for (int i = 0; i < n; i++) y[i] += a * r[i];
}

static void dsi_axpy_f16_c(const uint8_t *row, float a, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * dsi_f16_to_f32(dsi_rd16(row + 2 * i));
}

static void dsi_axpy_q8_c(const uint8_t *row, float a, float *y, int n) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        float as = a * dsi_f16_to_f32(dsi_rd16(blk));
        const int8_t *q = (const int8_t *)(blk + 2);
        float *yb = y + b * DSI_Q8_BLOCK;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) yb[i] += as * (float)q[i];
    }
}

/* ==== The portable set ====================================================== */
DSI_FUNC void dsi_kernels_portable(dsi_kernels *k) {
    memset(k, 0, sizeof *k);
    k->name = "portable";
    k->dot[DS_DTYPE_F32] = dsi_dot_rf32_c;
    k->dot[DS_DTYPE_F16] = dsi_dot_f16_c;
    k->dot[DS_DTYPE_Q8_0] = dsi_dot_q8_c;
    k->dequant[DS_DTYPE_F32] = dsi_dequant_f32;
    k->dequant[DS_DTYPE_F16] = dsi_dequant_f16_c;
    k->dequant[DS_DTYPE_Q8_0] = dsi_dequant_q8;
    k->axpy[DS_DTYPE_F32] = dsi_axpy_rf32;
    k->axpy[DS_DTYPE_F16] = dsi_axpy_f16_c;
    k->axpy[DS_DTYPE_Q8_0] = dsi_axpy_q8_c;
    k->dot[DS_DTYPE_Q4_0] = dsi_dot_q4_c;
    k->dequant[DS_DTYPE_Q4_0] = dsi_dequant_q4;
    k->axpy[DS_DTYPE_Q4_0] = dsi_axpy_q4_c;
    k->dot_q4q8 = dsi_dot_q4q8_c;
    k->to_q8[DS_DTYPE_Q4_0] = dsi_q4_to_q8_c;
    k->dot[DS_DTYPE_Q8_0_24] = dsi_dot_24_c;
    k->dequant[DS_DTYPE_Q8_0_24] = dsi_dequant_24;
    k->axpy[DS_DTYPE_Q8_0_24] = dsi_axpy_24_c;
    k->to_q8[DS_DTYPE_Q8_0_24] = dsi_24_to_q8_c;
    k->dot_24q8 = dsi_dot_24q8_c;
    k->dot[DS_DTYPE_Q8_0_SP] = dsi_dot_sp_c;
    k->dequant[DS_DTYPE_Q8_0_SP] = dsi_dequant_sp;
    k->axpy[DS_DTYPE_Q8_0_SP] = dsi_axpy_sp_c;
    k->to_q8[DS_DTYPE_Q8_0_SP] = dsi_sp_to_q8_c;
    k->dot_spq8 = dsi_dot_spq8_c;
    k->dot_f32 = dsi_dot_f32_c;
    k->axpy_f32 = dsi_axpy_f32_c;
    k->quantize_act = dsi_quantize_act_q8_c;
    k->dot_q8q8 = dsi_dot_q8q8_c;
}

/* ==== Normalisation ====================================================== */
DSI_FUNC void dsi_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    /* as the references: mean of squares in float32, then x * rsqrt * w */
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

DSI_FUNC void dsi_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

#if defined(__clang__)
#pragma STDC FP_CONTRACT DEFAULT
#endif
