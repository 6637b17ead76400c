/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * ops_neon.c — AArch64 kernels in three levels, laid over the portable set
 * by dsi_kernels_neon as the CPU allows:
 *   "neon"          Advanced SIMD (every AArch64 CPU): F32/F16 dots and
 *                   axpys, F16 and Q8_0 rows, the activation quantizer, the
 *                   int8 products (Q8_0, Q4_0) by widening multiplies;
 *   "neon-dotprod"  ARMv8.2 DotProd (sdot) for the int8 products;
 *   "neon-i8mm"     ARMv8.6 I8MM (smmla): the token-lane GEMM for batches,
 *                   two rows times two tokens per instruction.
 * With GCC the upper levels are compiled with per-function target
 * attributes (no global -march), so one binary runs on every AArch64 CPU.
 *
 * Same bits as the portable kernels where that is cheap, so that the
 * contracts of the table hold across sets: the activation quantizer (the
 * same rounding), every int8 product (exact int32 block sums, then the
 * portable float steps in the portable order), the Q8_0 dot with F32
 * activations (the portable kernel's four partial sums are the four lanes
 * of one vector; multiplies and adds kept apart, no FMA) and the Q8_0 axpy,
 * so the pruned rows' portable kernels still give the same bits as this
 * set's Q8_0 ones; the token-lane GEMM gives dsi_dot_q8q8_c's bits too.
 * The F32 and F16 dots use FMA and several accumulators: within float
 * rounding of the portable ones.
 */
#include "kernels.h"

/* no FMA contraction of the scalar steps (see ops.c) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>

/* GCC (10 and later) compiles the DotProd and I8MM kernels for any AArch64
 * target through function attributes (its arm_neon.h enables those
 * intrinsics per function). Other compilers (clang's arm_neon.h guards them
 * with the target's macros) get them when the whole build targets the
 * extension (-march=...+dotprod, +i8mm; Apple's arm64 has DotProd), and
 * otherwise stop at the NEON level (dsi_kernels_neon_built says which). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
#define DSI_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define DSI_I8MM __attribute__((target("arch=armv8.2-a+dotprod+i8mm")))
#define DSI_NEON_SDOT 1
#define DSI_NEON_MMLA 1
#else
#define DSI_DOTPROD
#define DSI_I8MM
#if defined(__ARM_FEATURE_DOTPROD)
#define DSI_NEON_SDOT 1
#else
#define DSI_NEON_SDOT 0
#endif
#if defined(__ARM_FEATURE_DOTPROD) && defined(__ARM_FEATURE_MATMUL_INT8)
#define DSI_NEON_MMLA 1
#else
#define DSI_NEON_MMLA 0
#endif
#endif
#define DSI_ALWAYS static inline __attribute__((always_inline))

/* ==== F32 and F16 ========================================================= */
/* One F16 value (unaligned bytes) as F32 by the conversion instruction:
 * exact, as dsi_f16_to_f32, without a call on the hot path. */
DSI_ALWAYS float dsi_h2f(const uint8_t *p) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(dsi_rd16(p)))), 0);
}

static float dsi_dot_f32_neon(const float *a, const float *b, int n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void dsi_axpy_f32_neon(float a, const float *x, float *y, int n) {
    /* y + a x as the portable loop rounds it (a multiply, then an add) */
    float32x4_t av = vdupq_n_f32(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_f32(av, vld1q_f32(x + i))));
        vst1q_f32(y + i + 4, vaddq_f32(vld1q_f32(y + i + 4), vmulq_f32(av, vld1q_f32(x + i + 4))));
    }
    for (; i < n; i++) y[i] += a * x[i];
}

static float dsi_dot_rf32_neon(const uint8_t *row, const float *x, int n) {
    return dsi_dot_f32_neon((const float *)(const void *)row, x, n);
}

static void dsi_axpy_rf32_neon(const uint8_t *row, float a, float *y, int n) {
    dsi_axpy_f32_neon(a, (const float *)(const void *)row, y, n);
}

/* eight F16 values (unaligned bytes) as two F32 vectors: exact */
DSI_ALWAYS void dsi_f16x8(const uint8_t *p, float32x4_t *lo, float32x4_t *hi) {
    float16x8_t h = vreinterpretq_f16_u8(vld1q_u8(p));
    *lo = vcvt_f32_f16(vget_low_f16(h));
    *hi = vcvt_high_f32_f16(h);
}

static float dsi_dot_f16_neon(const uint8_t *row, const float *x, int n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t w0, w1, w2, w3;
        dsi_f16x8(row + 2 * i, &w0, &w1);
        dsi_f16x8(row + 2 * i + 16, &w2, &w3);
        s0 = vfmaq_f32(s0, w0, vld1q_f32(x + i));
        s1 = vfmaq_f32(s1, w1, vld1q_f32(x + i + 4));
        s2 = vfmaq_f32(s2, w2, vld1q_f32(x + i + 8));
        s3 = vfmaq_f32(s3, w3, vld1q_f32(x + i + 12));
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s += dsi_f16_to_f32(dsi_rd16(row + 2 * i)) * x[i];
    return s;
}

static void dsi_dequant_f16_neon(const uint8_t *row, float *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t lo, hi;
        dsi_f16x8(row + 2 * i, &lo, &hi);
        vst1q_f32(y + i, lo);
        vst1q_f32(y + i + 4, hi);
    }
    for (; i < n; i++) y[i] = dsi_f16_to_f32(dsi_rd16(row + 2 * i));
}

static void dsi_axpy_f16_neon(const uint8_t *row, float a, float *y, int n) {
    float32x4_t av = vdupq_n_f32(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t lo, hi;
        dsi_f16x8(row + 2 * i, &lo, &hi);
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_f32(av, lo)));
        vst1q_f32(y + i + 4, vaddq_f32(vld1q_f32(y + i + 4), vmulq_f32(av, hi)));
    }
    for (; i < n; i++) y[i] += a * dsi_f16_to_f32(dsi_rd16(row + 2 * i));
}

/* One F32 row against four tokens (x rows at stride ldx). */
static void dsi_dot_f32x4_neon(const float *row, const float *x, size_t ldx, int n, float out[4]) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t r = vld1q_f32(row + i);
        a0 = vfmaq_f32(a0, r, vld1q_f32(x0 + i));
        a1 = vfmaq_f32(a1, r, vld1q_f32(x1 + i));
        a2 = vfmaq_f32(a2, r, vld1q_f32(x2 + i));
        a3 = vfmaq_f32(a3, r, vld1q_f32(x3 + i));
    }
    float s0 = vaddvq_f32(a0), s1 = vaddvq_f32(a1), s2 = vaddvq_f32(a2), s3 = vaddvq_f32(a3);
    for (; i < n; i++) {
        s0 += row[i] * x0[i];
        s1 += row[i] * x1[i];
        s2 += row[i] * x2[i];
        s3 += row[i] * x3[i];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

/* ==== Q8_0 rows, F32 activations ========================================== */
/* A block's 32 int8 values as eight F32 vectors (exact). */
DSI_ALWAYS void dsi_q8_f32(const int8_t *q, float32x4_t f[8]) {
    int8x16_t v0 = vld1q_s8(q), v1 = vld1q_s8(q + 16);
    int16x8_t h[4] = {vmovl_s8(vget_low_s8(v0)), vmovl_high_s8(v0), vmovl_s8(vget_low_s8(v1)), vmovl_high_s8(v1)};
    _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++) {
        f[2 * j] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(h[j])));
        f[2 * j + 1] = vcvtq_f32_s32(vmovl_high_s16(h[j]));
    }
}

/* The portable loop's four partial sums s0..s3 are the lanes of one
 * vector, taken in the same order, multiplies and adds apart: the same
 * bits, block by block, as dsi_dot_q8_c. */
static float dsi_dot_q8_neon(const uint8_t *row, const float *x, int n) {
    float sum = 0;
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        const float *xb = x + b * DSI_Q8_BLOCK;
        float32x4_t f[8];
        dsi_q8_f32((const int8_t *)(blk + 2), f);
        float32x4_t s = vmulq_f32(f[0], vld1q_f32(xb));
        _Pragma("GCC unroll 8") for (int j = 1; j < 8; j++)
            s = vaddq_f32(s, vmulq_f32(f[j], vld1q_f32(xb + 4 * j)));
        float32x2_t p = vpadd_f32(vget_low_f32(s), vget_high_f32(s));   /* s0 + s1, s2 + s3 */
        sum += dsi_h2f(blk) * (vget_lane_f32(p, 0) + vget_lane_f32(p, 1));
    }
    return sum;
}

/* y += (a d) q, as the portable loop rounds it */
static void dsi_axpy_q8_neon(const uint8_t *row, float a, float *y, int n) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        float32x4_t as = vdupq_n_f32(a * dsi_h2f(blk));
        float32x4_t f[8];
        dsi_q8_f32((const int8_t *)(blk + 2), f);
        float *yb = y + b * DSI_Q8_BLOCK;
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
            vst1q_f32(yb + 4 * j, vaddq_f32(vld1q_f32(yb + 4 * j), vmulq_f32(as, f[j])));
    }
}

static void dsi_dequant_q8_neon(const uint8_t *row, float *y, int n) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        float32x4_t d = vdupq_n_f32(dsi_h2f(blk));
        float32x4_t f[8];
        dsi_q8_f32((const int8_t *)(blk + 2), f);
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)
            vst1q_f32(y + b * DSI_Q8_BLOCK + 4 * j, vmulq_f32(f[j], d));
    }
}

/* ==== The activation quantizer ============================================ */
/* amax / 127 and 127 / amax as the portable one computes them; vcvtnq
 * rounds to nearest even, as lrintf in the default rounding mode. */
static void dsi_quantize_act_neon(const float *x, int n, int8_t *q, float *s) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const float *xb = x + b * DSI_Q8_BLOCK;
        float32x4_t v[8], m = vdupq_n_f32(0);
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
            v[j] = vld1q_f32(xb + 4 * j);
            m = vmaxq_f32(m, vabsq_f32(v[j]));
        }
        float amax = vmaxvq_f32(m);
        float inv = amax > 0 ? 127.0f / amax : 0.0f;
        s[b] = amax / 127.0f;
        float32x4_t iv = vdupq_n_f32(inv);
        int16x8_t h[4];
        _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++)
            h[j] = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(v[2 * j], iv))),
                                vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(v[2 * j + 1], iv))));
        vst1q_s8(q + b * DSI_Q8_BLOCK, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
        vst1q_s8(q + b * DSI_Q8_BLOCK + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
    }
}

/* ==== int8 products ========================================================
 * Each level computes a block's exact int32 sum (as four partial lanes);
 * four blocks' lanes fold into one vector of four block sums, and the
 * float steps are the portable ones: (d * s) * (float)acc per block, added
 * into the row's sum in block order. */

/* the float steps for four blocks b..b+3 with int32 sums acc */
DSI_ALWAYS float dsi_q8_steps4(float sum, int32x4_t acc, const float d[4], const float *s) {
    float32x4_t p = vmulq_f32(vmulq_f32(vld1q_f32(d), vld1q_f32(s)), vcvtq_f32_s32(acc));
    sum += vgetq_lane_f32(p, 0);
    sum += vgetq_lane_f32(p, 1);
    sum += vgetq_lane_f32(p, 2);
    sum += vgetq_lane_f32(p, 3);
    return sum;
}

DSI_ALWAYS int32x4_t dsi_fold4(int32x4_t a0, int32x4_t a1, int32x4_t a2, int32x4_t a3) {
    return vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3));
}

/* w . a over 32 int8 values, without dotprod: widening multiplies into
 * int16 (one product each: any int8 values), pairwise into int32 */
DSI_ALWAYS int32x4_t dsi_i8dot_mull(int8x16_t w0, int8x16_t w1, int8x16_t a0, int8x16_t a1) {
    int32x4_t acc = vpaddlq_s16(vmull_s8(vget_low_s8(w0), vget_low_s8(a0)));
    acc = vpadalq_s16(acc, vmull_high_s8(w0, a0));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w1), vget_low_s8(a1)));
    return vpadalq_s16(acc, vmull_high_s8(w1, a1));
}

#if DSI_NEON_SDOT
DSI_DOTPROD DSI_ALWAYS int32x4_t dsi_i8dot_sdot(int8x16_t w0, int8x16_t w1, int8x16_t a0, int8x16_t a1) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, a0), w1, a1);
}
#endif

/* Q4_0 block's 16 bytes as its 32 values in order, minus 8 */
DSI_ALWAYS void dsi_q4_vals(const uint8_t *qs, int8x16_t *lo, int8x16_t *hi) {
    uint8x16_t v = vld1q_u8(qs);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))), vdupq_n_s8(8));
    *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
}

/* The row kernels, written once for both levels as a macro (a function
 * without dotprod may not inline one with it): SUF names the level, ATTR
 * its target, I8DOT its block product. Q8_0 (q4 false) or Q4_0 rows times
 * one token; one Q8_0 row times four tokens, the block's weights loaded
 * once, the four tokens' block sums folded into one vector whose lanes are
 * the four running sums (each the portable one's, step for step). */
#define DSI_I8_KERNELS(SUF, ATTR, I8DOT)                                                                              \
    ATTR DSI_ALWAYS int32x4_t dsi_i8blk_##SUF(const uint8_t *blk, const int8_t *a, bool q4) {                         \
        int8x16_t w0, w1;                                                                                             \
        if (q4) dsi_q4_vals(blk + 2, &w0, &w1);                                                                       \
        else {                                                                                                        \
            w0 = vld1q_s8((const int8_t *)(blk + 2));                                                                 \
            w1 = vld1q_s8((const int8_t *)(blk + 18));                                                                \
        }                                                                                                             \
        return I8DOT(w0, w1, vld1q_s8(a), vld1q_s8(a + 16));                                                          \
    }                                                                                                                 \
    ATTR DSI_ALWAYS float dsi_dot_i8_row_##SUF(const uint8_t *row, const int8_t *q, const float *s, int n,            \
                                               bool q4) {                                                             \
        const size_t bb = q4 ? DSI_Q4_BLOCK_BYTES : DSI_Q8_BLOCK_BYTES;                                               \
        int nb = n / DSI_Q8_BLOCK, b = 0;                                                                             \
        float sum = 0;                                                                                                \
        for (; b + 4 <= nb; b += 4) {                                                                                 \
            const uint8_t *k = row + (size_t)b * bb;                                                                  \
            const int8_t *a = q + (size_t)b * DSI_Q8_BLOCK;                                                           \
            int32x4_t acc = dsi_fold4(dsi_i8blk_##SUF(k, a, q4), dsi_i8blk_##SUF(k + bb, a + 32, q4),                 \
                                      dsi_i8blk_##SUF(k + 2 * bb, a + 64, q4),                                        \
                                      dsi_i8blk_##SUF(k + 3 * bb, a + 96, q4));                                       \
            float d[4];                                                                                               \
            _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++) d[j] = dsi_h2f(k + (size_t)j * bb);                   \
            sum = dsi_q8_steps4(sum, acc, d, s + b);                                                                  \
        }                                                                                                             \
        for (; b < nb; b++) {                                                                                         \
            const uint8_t *k = row + (size_t)b * bb;                                                                  \
            int32_t acc = vaddvq_s32(dsi_i8blk_##SUF(k, q + (size_t)b * DSI_Q8_BLOCK, q4));                           \
            sum += dsi_h2f(k) * s[b] * (float)acc;                                                                    \
        }                                                                                                             \
        return sum;                                                                                                   \
    }                                                                                                                 \
    ATTR static float dsi_dot_q8q8_##SUF(const uint8_t *row, const int8_t *q, const float *s, int n) {                \
        return dsi_dot_i8_row_##SUF(row, q, s, n, false);                                                             \
    }                                                                                                                 \
    ATTR static float dsi_dot_q4q8_##SUF(const uint8_t *row, const int8_t *q, const float *s, int n) {                \
        return dsi_dot_i8_row_##SUF(row, q, s, n, true);                                                              \
    }                                                                                                                 \
    ATTR static void dsi_dot_q8q8x4_##SUF(const uint8_t *row, const int8_t *q, size_t ldq, const float *s,            \
                                          size_t lds, int n, float out[4]) {                                          \
        float32x4_t sum = vdupq_n_f32(0);                                                                             \
        for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {                                                                  \
            const uint8_t *k = row + (size_t)b * DSI_Q8_BLOCK_BYTES;                                                  \
            int8x16_t w0 = vld1q_s8((const int8_t *)(k + 2)), w1 = vld1q_s8((const int8_t *)(k + 18));                \
            int32x4_t t[4];                                                                                           \
            float sv[4];                                                                                              \
            _Pragma("GCC unroll 8") for (int j = 0; j < 4; j++) {                                                     \
                const int8_t *a = q + (size_t)j * ldq + (size_t)b * DSI_Q8_BLOCK;                                     \
                t[j] = I8DOT(w0, w1, vld1q_s8(a), vld1q_s8(a + 16));                                                  \
                sv[j] = s[(size_t)j * lds + (size_t)b];                                                               \
            }                                                                                                         \
            float32x4_t ds = vmulq_f32(vdupq_n_f32(dsi_h2f(k)), vld1q_f32(sv));                                       \
            sum = vaddq_f32(sum, vmulq_f32(ds, vcvtq_f32_s32(dsi_fold4(t[0], t[1], t[2], t[3]))));                    \
        }                                                                                                             \
        vst1q_f32(out, sum);                                                                                          \
    }

DSI_I8_KERNELS(neon, , dsi_i8dot_mull)
#if DSI_NEON_SDOT
DSI_I8_KERNELS(sdot, DSI_DOTPROD, dsi_i8dot_sdot)
#endif
#undef DSI_I8_KERNELS

#if DSI_NEON_MMLA
/* ==== Token-lane GEMM with I8MM ============================================
 * smmla multiplies a 2x8 int8 matrix by the transpose of another, adding a
 * 2x2 int32 result: here two weight rows times two tokens over 8 bytes of a
 * block, four steps a block. The activations are packed per tile of up to
 * DSI_MM_TOKENS tokens (dsi_lane_tile), in pairs: in tile i, block b, step k
 * (bytes 8k..8k+7 of the block), pair p holds 16 bytes, token 2p's eight
 * then token 2p + 1's; a missing token is zeros with scale 0. S holds, per
 * tile and block, the eight tokens' scales (the sizes of the AVX2 tiles,
 * dsi_tl8_pack_bytes and _floats, which the memory plan counts). A block's int32 sums are exact, and each lane's float
 * steps are the portable ones, (d * s) * acc added in block order: every
 * value is dsi_dot_q8q8_c's bits, whatever T and however the tokens are
 * split between tiles and the row path. Four rows (two pairs) share each
 * activation load; scratch holds the rows' scales as [d0, d0, d1, d1] per
 * pair and block (8 * cols / 32 floats). */
#define DSI_MM_TOKENS 8
#define DSI_MM_MIN 2

static int dsi_mm_split(int T) { return T >= DSI_MM_MIN ? T : 0; }
static size_t dsi_mm_pack_bytes(int T, int cols) {
    return (size_t)dsi_lane_tiles(T, DSI_MM_TOKENS) * (size_t)(cols / 32) * 256;
}
static size_t dsi_mm_pack_floats(int T, int cols) {
    return (size_t)dsi_lane_tiles(T, DSI_MM_TOKENS) * (size_t)(cols / 32) * DSI_MM_TOKENS;
}

static void dsi_mm_pack(const void *x, size_t ldx, const float *s, size_t lds, int T, int cols, void *P, float *S) {
    const int8_t *q = x;
    int8_t *pp = P;
    size_t nb = (size_t)cols / DSI_Q8_BLOCK;
    for (int tile = 0; tile < dsi_lane_tiles(T, DSI_MM_TOKENS); tile++) {
        int t0, n;
        dsi_lane_tile(T, DSI_MM_TOKENS, tile, &t0, &n);
        int8_t *pt = pp + (size_t)tile * nb * 256;
        float *st = S + (size_t)tile * nb * DSI_MM_TOKENS;
        memset(pt, 0, nb * 256);
        for (int t = 0; t < n; t++) {
            const int8_t *src = q + (size_t)(t0 + t) * ldx;
            for (size_t b = 0; b < nb; b++)
                for (size_t k = 0; k < 4; k++)
                    memcpy(pt + b * 256 + (k * 4 + (size_t)t / 2) * 16 + (size_t)(t & 1) * 8, src + b * 32 + 8 * k, 8);
        }
        for (size_t b = 0; b < nb; b++)
            for (int t = 0; t < DSI_MM_TOKENS; t++)
                st[b * DSI_MM_TOKENS + (size_t)t] = t < n ? s[(size_t)(t0 + t) * lds + b] : 0.0f;
    }
}

/* NP row pairs (rows[2i], rows[2i + 1]) times TP token pairs of one tile:
 * out[(2i + j) * 8 + t] for row 2i + j and token t. */
DSI_I8MM DSI_ALWAYS void dsi_mm_tile(const uint8_t *const *rows, int nb, const int8_t *P, const float *S,
                                     const float *ds, float *out, const int NP, const int TP) {
    float32x4_t f[2][4];
    _Pragma("GCC unroll 8") for (int i = 0; i < NP; i++)
        _Pragma("GCC unroll 8") for (int p = 0; p < TP; p++) f[i][p] = vdupq_n_f32(0);
    for (int b = 0; b < nb; b++) {
        const int8_t *A = P + (size_t)b * 256;
        int32x4_t acc[2][4];
        _Pragma("GCC unroll 8") for (int i = 0; i < NP; i++)
            _Pragma("GCC unroll 8") for (int p = 0; p < TP; p++) acc[i][p] = vdupq_n_s32(0);
        _Pragma("GCC unroll 8") for (int h = 0; h < 2; h++) {
            int8x16_t w[2][2];
            _Pragma("GCC unroll 8") for (int i = 0; i < NP; i++) {
                size_t at = (size_t)b * DSI_Q8_BLOCK_BYTES + 2 + 16 * (size_t)h;
                int64x2_t r0 = vreinterpretq_s64_u8(vld1q_u8(rows[2 * i] + at));
                int64x2_t r1 = vreinterpretq_s64_u8(vld1q_u8(rows[2 * i + 1] + at));
                w[i][0] = vreinterpretq_s8_s64(vtrn1q_s64(r0, r1));   /* step 2h: row 0's 8 bytes, row 1's */
                w[i][1] = vreinterpretq_s8_s64(vtrn2q_s64(r0, r1));   /* step 2h + 1 */
            }
            _Pragma("GCC unroll 8") for (int kk = 0; kk < 2; kk++)
                _Pragma("GCC unroll 8") for (int p = 0; p < TP; p++) {
                    int8x16_t x = vld1q_s8(A + ((2 * h + kk) * 4 + p) * 16);
                    _Pragma("GCC unroll 8") for (int i = 0; i < NP; i++)
                        acc[i][p] = vmmlaq_s32(acc[i][p], w[i][kk], x);
                }
        }
        _Pragma("GCC unroll 8") for (int i = 0; i < NP; i++) {
            float32x4_t d = vld1q_f32(ds + ((size_t)i * (size_t)nb + (size_t)b) * 4);
            _Pragma("GCC unroll 8") for (int p = 0; p < TP; p++) {
                float32x2_t sp = vld1_f32(S + (size_t)b * DSI_MM_TOKENS + 2 * (size_t)p);   /* s(2p), s(2p+1) */
                float32x4_t dsv = vmulq_f32(d, vcombine_f32(sp, sp));   /* the result's lane order */
                f[i][p] = vaddq_f32(f[i][p], vmulq_f32(dsv, vcvtq_f32_s32(acc[i][p])));
            }
        }
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < NP; i++)
        _Pragma("GCC unroll 8") for (int p = 0; p < TP; p++) {
            float v[4];
            vst1q_f32(v, f[i][p]);
            out[(2 * i) * 8 + 2 * p] = v[0];
            out[(2 * i) * 8 + 2 * p + 1] = v[1];
            out[(2 * i + 1) * 8 + 2 * p] = v[2];
            out[(2 * i + 1) * 8 + 2 * p + 1] = v[3];
        }
}

#define DSI_MM_TILE_TP(NP)                                                                                        \
    switch (TP) {                                                                                                     \
    case 1: dsi_mm_tile(rows, nb, P, S, ds, out, NP, 1); break;                                                       \
    case 2: dsi_mm_tile(rows, nb, P, S, ds, out, NP, 2); break;                                                       \
    case 3: dsi_mm_tile(rows, nb, P, S, ds, out, NP, 3); break;                                                       \
    default: dsi_mm_tile(rows, nb, P, S, ds, out, NP, 4); break;                                                      \
    }
DSI_I8MM static void dsi_mm_tile2(const uint8_t *const *rows, int nb, const int8_t *P, const float *S,
                                  const float *ds, float *out, int TP) {
    DSI_MM_TILE_TP(2)
}
DSI_I8MM static void dsi_mm_tile1(const uint8_t *const *rows, int nb, const int8_t *P, const float *S,
                                  const float *ds, float *out, int TP) {
    DSI_MM_TILE_TP(1)
}
#undef DSI_MM_TILE_TP

static void dsi_mm_gemm(const uint8_t *W, size_t rb, int rows, int cols, const void *P, const float *S, int T,
                        float *Y, size_t ldy, float *scratch) {
    int nb = cols / DSI_Q8_BLOCK, tiles = dsi_lane_tiles(T, DSI_MM_TOKENS);
    float out[4 * DSI_MM_TOKENS];
    if (tiles <= 0) return;
    for (int r = 0, RR; r < rows; r += RR) {
        RR = rows - r >= 4 ? 4 : rows - r;   /* the tail: one pair, the last row twice when alone */
        const uint8_t *rp[4];
        for (int i = 0; i < 4; i++) rp[i] = W + (size_t)(r + (i < RR ? i : RR - 1)) * rb;
        int np = RR > 2 ? 2 : 1;
        for (int i = 0; i < np; i++)
            for (int b = 0; b < nb; b++) {
                float d0 = dsi_h2f(rp[2 * i] + (size_t)b * DSI_Q8_BLOCK_BYTES);
                float d1 = dsi_h2f(rp[2 * i + 1] + (size_t)b * DSI_Q8_BLOCK_BYTES);
                float *o = scratch + ((size_t)i * (size_t)nb + (size_t)b) * 4;
                o[0] = o[1] = d0;
                o[2] = o[3] = d1;
            }
        for (int tile = 0; tile < tiles; tile++) {
            int t0, n;
            dsi_lane_tile(T, DSI_MM_TOKENS, tile, &t0, &n);
            const int8_t *Pt = (const int8_t *)P + (size_t)tile * (size_t)nb * 256;
            const float *St = S + (size_t)tile * (size_t)nb * DSI_MM_TOKENS;
            if (np == 2) dsi_mm_tile2(rp, nb, Pt, St, scratch, out, (n + 1) / 2);
            else dsi_mm_tile1(rp, nb, Pt, St, scratch, out, (n + 1) / 2);
            dsi_lane_store(Y, ldy, t0, n, r, RR, out, DSI_MM_TOKENS);
        }
    }
}

#endif /* DSI_NEON_MMLA */

/* ==== The table ============================================================ */
DSI_FUNC bool dsi_kernels_neon(dsi_kernels *k, uint32_t features) {
    if (!(features & DSI_CPU_NEON)) return false;
    k->name = "neon";
    k->dot[DS_DTYPE_F32] = dsi_dot_rf32_neon;
    k->axpy[DS_DTYPE_F32] = dsi_axpy_rf32_neon;
    k->dot[DS_DTYPE_F16] = dsi_dot_f16_neon;
    k->dequant[DS_DTYPE_F16] = dsi_dequant_f16_neon;
    k->axpy[DS_DTYPE_F16] = dsi_axpy_f16_neon;
    k->dot[DS_DTYPE_Q8_0] = dsi_dot_q8_neon;
    k->dequant[DS_DTYPE_Q8_0] = dsi_dequant_q8_neon;
    k->axpy[DS_DTYPE_Q8_0] = dsi_axpy_q8_neon;
    k->dot_f32 = dsi_dot_f32_neon;
    k->axpy_f32 = dsi_axpy_f32_neon;
    k->dot_f32x4 = dsi_dot_f32x4_neon;
    k->quantize_act = dsi_quantize_act_neon;
    k->dot_q8q8 = dsi_dot_q8q8_neon;
    k->dot_q8q8x4 = dsi_dot_q8q8x4_neon;
    k->dot_q4q8 = dsi_dot_q4q8_neon;
#if DSI_NEON_SDOT
    if (!(features & DSI_CPU_DOTPROD)) return true;
    k->name = "neon-dotprod";
    k->dot_q8q8 = dsi_dot_q8q8_sdot;
    k->dot_q8q8x4 = dsi_dot_q8q8x4_sdot;
    k->dot_q4q8 = dsi_dot_q4q8_sdot;
#endif
#if DSI_NEON_MMLA
    if (!(features & DSI_CPU_I8MM)) return true;
    k->name = "neon-i8mm";
    k->lane_min = DSI_MM_MIN;
    k->lane_split = dsi_mm_split;
    k->lane_pack_bytes = dsi_mm_pack_bytes;
    k->lane_pack_floats = dsi_mm_pack_floats;
    k->lane_pack = dsi_mm_pack;
    k->lane_gemm = dsi_mm_gemm;
#endif
    return true;
}

DSI_FUNC uint32_t dsi_kernels_neon_built(void) {
    return DSI_CPU_NEON | (DSI_NEON_SDOT ? DSI_CPU_DOTPROD : 0) | (DSI_NEON_MMLA ? DSI_CPU_I8MM : 0);
}
/* the amalgamation goes on in the same translation unit */
#undef DSI_DOTPROD
#undef DSI_I8MM
#undef DSI_NEON_SDOT
#undef DSI_NEON_MMLA
#undef DSI_ALWAYS
#undef DSI_MM_TOKENS
#undef DSI_MM_MIN
#else
DSI_FUNC bool dsi_kernels_neon(dsi_kernels *k, uint32_t features) {
    (void)k;
    (void)features;
    return false;
}
DSI_FUNC uint32_t dsi_kernels_neon_built(void) { return 0; }
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT DEFAULT
#endif
