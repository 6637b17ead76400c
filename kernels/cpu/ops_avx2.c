/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * ops_avx2.c — AVX2 + FMA + F16C versions of the row dot products, compiled
 * with per-function target attributes (no global -mavx2); dsi_kernels_avx2
 * lays them over the portable set when the CPU has them. The portable
 * versions in ops.c are the reference they are tested against.
 */
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define DSI_AVX2 __attribute__((target("avx2,fma,f16c")))

DSI_AVX2 static inline float dsi_hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* y += a x */
DSI_AVX2 DSI_FUNC void dsi_axpy_f32_avx2(float a, const float *x, float *y, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        _mm256_storeu_ps(y + i + 8, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

DSI_AVX2 DSI_FUNC float dsi_dot_f32_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = dsi_hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

DSI_AVX2 DSI_FUNC float dsi_dot_f16_avx2(const uint8_t *row, const float *x, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(row + 2 * i + DSI_PREFETCH_AHEAD), _MM_HINT_T0);
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * i + 16)));
        s0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), s1);
    }
    float s = dsi_hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += dsi_f16_to_f32(dsi_rd16(row + 2 * i)) * x[i];
    return s;
}

/* One Q8_0 block (32 int8 + F16 scale) against 32 floats. */
DSI_AVX2 static inline __m256 dsi_q8_block(const uint8_t *blk, const float *x, __m256 acc) {
    __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
    __m128i q0 = _mm256_castsi256_si128(q), q1 = _mm256_extracti128_si256(q, 1);
    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0));
    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8)));
    __m256 f2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1));
    __m256 f3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8)));
    __m256 d = _mm256_mul_ps(f0, _mm256_loadu_ps(x));
    d = _mm256_fmadd_ps(f1, _mm256_loadu_ps(x + 8), d);
    d = _mm256_fmadd_ps(f2, _mm256_loadu_ps(x + 16), d);
    d = _mm256_fmadd_ps(f3, _mm256_loadu_ps(x + 24), d);
    __m256 scale = _mm256_set1_ps(_cvtsh_ss(dsi_rd16(blk)));
    return _mm256_fmadd_ps(d, scale, acc);
}

DSI_AVX2 DSI_FUNC float dsi_dot_q8_avx2(const uint8_t *row, const float *x, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int nb = n / DSI_Q8_BLOCK, b = 0;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char *)(row + (size_t)b * DSI_Q8_BLOCK_BYTES + DSI_PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(row + (size_t)b * DSI_Q8_BLOCK_BYTES + DSI_PREFETCH_AHEAD + 64), _MM_HINT_T0);
        a0 = dsi_q8_block(row + (size_t)b * DSI_Q8_BLOCK_BYTES, x + b * DSI_Q8_BLOCK, a0);
        a1 = dsi_q8_block(row + (size_t)(b + 1) * DSI_Q8_BLOCK_BYTES, x + (b + 1) * DSI_Q8_BLOCK, a1);
    }
    if (b < nb) a0 = dsi_q8_block(row + (size_t)b * DSI_Q8_BLOCK_BYTES, x + b * DSI_Q8_BLOCK, a0);
    return dsi_hsum256(_mm256_add_ps(a0, a1));
}

DSI_AVX2 DSI_FUNC void dsi_quantize_act_q8_avx2(const float *x, int n, int8_t *q, float *s) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const float *xb = x + b * DSI_Q8_BLOCK;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        float inv = amax > 0 ? 127.0f / amax : 0.0f;
        s[b] = amax / 127.0f;
        __m256 iv = _mm256_set1_ps(inv);
        /* cvtps rounds to nearest even (the default MXCSR mode), as lrintf */
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, iv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, iv));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, iv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, iv));
        __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        /* the packs work per 128-bit lane: restore element order */
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)(q + b * DSI_Q8_BLOCK), p);
    }
}

/* Q8_0 row times int8 activations: |w| via sign, the activation takes w's
 * sign, maddubs (u8 x s8 pairs into s16: at most 2 * 128 * 127, no
 * saturation), madd into int32, then one float multiply per block. */
DSI_AVX2 DSI_FUNC float dsi_dot_q8q8_avx2(const uint8_t *row, const int8_t *q, const float *s, int n) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int nb = n / DSI_Q8_BLOCK, b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *k0 = row + (size_t)b * DSI_Q8_BLOCK_BYTES, *k1 = k0 + DSI_Q8_BLOCK_BYTES;
        _mm_prefetch((const char *)(k0 + DSI_PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(k0 + DSI_PREFETCH_AHEAD + 64), _MM_HINT_T0);
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)(k0 + 2));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(const void *)(k1 + 2));
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)(q + b * DSI_Q8_BLOCK));
        __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)(q + (b + 1) * DSI_Q8_BLOCK));
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones);
        __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1)), ones);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(_cvtsh_ss(dsi_rd16(k0)) * s[b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(_cvtsh_ss(dsi_rd16(k1)) * s[b + 1]), a1);
    }
    if (b < nb) {
        const uint8_t *k0 = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(const void *)(k0 + 2));
        __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)(q + b * DSI_Q8_BLOCK));
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(_cvtsh_ss(dsi_rd16(k0)) * s[b]), a0);
    }
    return dsi_hsum256(_mm256_add_ps(a0, a1));
}

/* One Q8_0 row against four tokens' int8 activations (prefill): the row's
 * block and its absolute value are loaded once for all four; out[j] gets the
 * dot product with token j (activations q + j * ldq, scales s + j * lds). */
DSI_AVX2 DSI_FUNC void dsi_dot_q8q8x4_avx2(const uint8_t *row, const int8_t *q, size_t ldq, const float *s,
                                           size_t lds, int n, float out[4]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int nb = n / DSI_Q8_BLOCK;
    for (int b = 0; b < nb; b++) {
        const uint8_t *k = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(k + 2));
        __m256i aw = _mm256_sign_epi8(w, w);
        float ws = _cvtsh_ss(dsi_rd16(k));
        const int8_t *qb = q + (size_t)b * DSI_Q8_BLOCK;
#define DSI_Q8Q8_TOKEN(j, acc)                                                                                  \
    do {                                                                                                        \
        __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(qb + (j) * ldq));                        \
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), ones);                  \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(ws * s[(j) * lds + (size_t)b]), acc);       \
    } while (0)
        DSI_Q8Q8_TOKEN(0, a0);
        DSI_Q8Q8_TOKEN(1, a1);
        DSI_Q8Q8_TOKEN(2, a2);
        DSI_Q8Q8_TOKEN(3, a3);
#undef DSI_Q8Q8_TOKEN
    }
    out[0] = dsi_hsum256(a0);
    out[1] = dsi_hsum256(a1);
    out[2] = dsi_hsum256(a2);
    out[3] = dsi_hsum256(a3);
}

/* Token lanes on AVX2 (see dsi_gemm_q8u8_tl_vnni for the idea): 8 tokens of
 * signed activations side by side (dsi_tl8_pack), weights as 4-byte
 * broadcasts. vpmaddubsw needs one unsigned operand, so each step multiplies
 * |x| by w carrying the sign of x (the same trick as the row kernel above;
 * a pair sums to at most 2 * 127 * 128, inside int16), then vpmaddwd with
 * ones makes int32 sums of four products. A block of 32 is eight such steps
 * into one int32 accumulator per row, then one convert and one FMA. Four
 * rows share each activation load. */
#define DSI_TL8_R 4

DSI_AVX2 static inline __attribute__((always_inline)) void dsi_tl8_rows(const uint8_t *W, size_t rb, int nb,
                                                                         const int8_t *P, const float *S,
                                                                         const float *ws, float *out, const int RR) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f[DSI_TL8_R];
    __m256i ia[DSI_TL8_R];
    _Pragma("GCC unroll 4") for (int i = 0; i < RR; i++) f[i] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const int8_t *A = P + (size_t)b * 256;
        const uint8_t *wb = W + (size_t)b * DSI_Q8_BLOCK_BYTES + 2;
        _Pragma("GCC unroll 4") for (int i = 0; i < RR; i++) ia[i] = _mm256_setzero_si256();
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(A + 32 * k)), aa = _mm256_abs_epi8(a);
            _Pragma("GCC unroll 4") for (int i = 0; i < RR; i++) {
                __m256i d = _mm256_set1_epi32((int32_t)dsi_rd32(wb + (size_t)i * rb + 4 * k));
                __m256i p = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(d, a));
                ia[i] = _mm256_add_epi32(ia[i], _mm256_madd_epi16(p, ones));
            }
        }
        __m256 xs = _mm256_loadu_ps(S + (size_t)b * 8);
        _Pragma("GCC unroll 4") for (int i = 0; i < RR; i++)
            f[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[i]), _mm256_mul_ps(xs, _mm256_set1_ps(ws[(size_t)i * nb + b])),
                                   f[i]);
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < RR; i++) _mm256_storeu_ps(out + 8 * i, f[i]);
}

DSI_AVX2 DSI_FUNC void dsi_gemm_q8q8_tl8_avx2(const uint8_t *W, size_t rb, int rows, int cols, const int8_t *P,
                                              const float *S, int T, float *Y, size_t ldy, float *scratch) {
    int nb = cols / DSI_Q8_BLOCK, tiles = dsi_tl8_tiles(T);
    float out[DSI_TL8_R * 8];
    if (tiles <= 0) return;
    for (int r = 0, RR; r < rows; r += RR) {
        RR = rows - r >= DSI_TL8_R ? DSI_TL8_R : 1;   /* the tail goes one row at a time */
        const uint8_t *Wr = W + (size_t)r * rb;
        for (int i = 0; i < RR; i++)
            for (int b = 0; b < nb; b++)
                scratch[(size_t)i * nb + b] = _cvtsh_ss(dsi_rd16(Wr + (size_t)i * rb + (size_t)b * DSI_Q8_BLOCK_BYTES));
        for (int tile = 0; tile < tiles; tile++) {
            int t0, n;
            dsi_lane_tile(T, DSI_TL8_TOKENS, tile, &t0, &n);
            const int8_t *Pt = P + (size_t)tile * (size_t)nb * 256;
            const float *St = S + (size_t)tile * (size_t)nb * 8;
            if (RR == DSI_TL8_R) dsi_tl8_rows(Wr, rb, nb, Pt, St, scratch, out, DSI_TL8_R);
            else dsi_tl8_rows(Wr, rb, nb, Pt, St, scratch, out, 1);
            dsi_lane_store(Y, ldy, t0, n, r, RR, out, 8);
        }
    }
}

/* One F32 row (a dequantized F16 row) against four tokens: each load of the
 * row feeds four FMAs. out[j] = row . x[j * ldx ..]. */
DSI_AVX2 DSI_FUNC void dsi_dot_f32x4_avx2(const float *row, const float *x, size_t ldx, int n, float out[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 r = _mm256_loadu_ps(row + i);
        a0 = _mm256_fmadd_ps(r, _mm256_loadu_ps(x0 + i), a0);
        a1 = _mm256_fmadd_ps(r, _mm256_loadu_ps(x1 + i), a1);
        a2 = _mm256_fmadd_ps(r, _mm256_loadu_ps(x2 + i), a2);
        a3 = _mm256_fmadd_ps(r, _mm256_loadu_ps(x3 + i), a3);
    }
    float s0 = dsi_hsum256(a0), s1 = dsi_hsum256(a1), s2 = dsi_hsum256(a2), s3 = dsi_hsum256(a3);
    for (; i < n; i++) {
        s0 += row[i] * x0[i];
        s1 += row[i] * x1[i];
        s2 += row[i] * x2[i];
        s3 += row[i] * x3[i];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

/* Four F32 rows (stride ldr) times two tokens (stride ldx): out[2 i + t].
 * Each of the eight sums runs as in dsi_dot_f32x4_avx2 (eight lanes, then
 * the scalar tail), so the results are the same bits; the tile reads each
 * token's values once for four rows (6 loads per 8 FMAs instead of 5 per 4). */
DSI_AVX2 DSI_FUNC void dsi_dot_f32_4x2_avx2(const float *rows, size_t ldr, const float *x, size_t ldx, int n,
                                            float out[8]) {
    __m256 a[8];
    for (int k = 0; k < 8; k++) a[k] = _mm256_setzero_ps();
    const float *x0 = x, *x1 = x + ldx;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 u = _mm256_loadu_ps(x0 + i), v = _mm256_loadu_ps(x1 + i);
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
            __m256 w = _mm256_loadu_ps(rows + (size_t)q * ldr + i);
            a[2 * q] = _mm256_fmadd_ps(w, u, a[2 * q]);
            a[2 * q + 1] = _mm256_fmadd_ps(w, v, a[2 * q + 1]);
        }
    }
    for (int k = 0; k < 8; k++) {
        const float *r = rows + (size_t)(k / 2) * ldr, *xt = k & 1 ? x1 : x0;
        float s = dsi_hsum256(a[k]);
        for (int q = i; q < n; q++) s += r[q] * xt[q];
        out[k] = s;
    }
}

/* F16 to F32 with F16C (the row conversion of the prefill path). */
DSI_AVX2 DSI_FUNC void dsi_f16_to_f32_row_avx2(const uint8_t *row, float *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * i))));
    for (; i < n; i++) y[i] = dsi_f16_to_f32(dsi_rd16(row + 2 * i));
}

/* y += a * row for a Q8_0 row of n values (the MLA absorption). */
DSI_AVX2 DSI_FUNC void dsi_axpy_q8_avx2(const uint8_t *row, float a, float *y, int n) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        __m256 as = _mm256_set1_ps(a * _cvtsh_ss(dsi_rd16(blk)));
        __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
        __m128i q0 = _mm256_castsi256_si128(q), q1 = _mm256_extracti128_si256(q, 1);
        float *yb = y + b * DSI_Q8_BLOCK;
        __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0));
        __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8)));
        __m256 f2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1));
        __m256 f3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8)));
        _mm256_storeu_ps(yb, _mm256_fmadd_ps(f0, as, _mm256_loadu_ps(yb)));
        _mm256_storeu_ps(yb + 8, _mm256_fmadd_ps(f1, as, _mm256_loadu_ps(yb + 8)));
        _mm256_storeu_ps(yb + 16, _mm256_fmadd_ps(f2, as, _mm256_loadu_ps(yb + 16)));
        _mm256_storeu_ps(yb + 24, _mm256_fmadd_ps(f3, as, _mm256_loadu_ps(yb + 24)));
    }
}

/* y += a * row for an F16 row of n values. */
DSI_AVX2 DSI_FUNC void dsi_axpy_f16_avx2(const uint8_t *row, float a, float *y, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 w = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(w, av, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * dsi_f16_to_f32(dsi_rd16(row + 2 * i));
}

/* ==== Q4_0 rows =============================================================
 * A block's 16 bytes become its 32 values in order (low nibbles are values
 * 0-15, high nibbles 16-31), still offset: 0..15 for q + 8. */
DSI_AVX2 static inline __m256i dsi_q4_nibbles(const uint8_t *blk) {
    __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
    __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

/* Q4_0 row times int8 activations: the offset nibbles (unsigned) times the
 * activations with maddubs, less 8 times the activations' pair sums (both in
 * s16: at most 2 * 15 * 128 and 2 * 8 * 128), madd into int32, one float
 * multiply per block. Two blocks per step, as dsi_dot_q8q8_avx2. */
DSI_AVX2 static inline __m256i dsi_q4q8_block(const uint8_t *k, const int8_t *q) {
    const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8);
    __m256i w = dsi_q4_nibbles(k);
    __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)q);
    __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(w, x), _mm256_maddubs_epi16(eight, x));
    return _mm256_madd_epi16(p, ones);
}

DSI_AVX2 static float dsi_dot_q4q8_avx2(const uint8_t *row, const int8_t *q, const float *s, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int nb = n / DSI_Q8_BLOCK, b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *k0 = row + (size_t)b * DSI_Q4_BLOCK_BYTES, *k1 = k0 + DSI_Q4_BLOCK_BYTES;
        _mm_prefetch((const char *)(k0 + DSI_PREFETCH_AHEAD), _MM_HINT_T0);
        __m256i p0 = dsi_q4q8_block(k0, q + b * DSI_Q8_BLOCK);
        __m256i p1 = dsi_q4q8_block(k1, q + (b + 1) * DSI_Q8_BLOCK);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(_cvtsh_ss(dsi_rd16(k0)) * s[b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(_cvtsh_ss(dsi_rd16(k1)) * s[b + 1]), a1);
    }
    if (b < nb) {
        const uint8_t *k0 = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        __m256i p0 = dsi_q4q8_block(k0, q + b * DSI_Q8_BLOCK);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(_cvtsh_ss(dsi_rd16(k0)) * s[b]), a0);
    }
    return dsi_hsum256(_mm256_add_ps(a0, a1));
}

/* A block's 32 values as floats (q, not yet times the scale) in f[0..3]. */
DSI_AVX2 static inline void dsi_q4_floats(const uint8_t *blk, __m256 f[4]) {
    __m256i w = _mm256_sub_epi8(dsi_q4_nibbles(blk), _mm256_set1_epi8(8));
    __m128i w0 = _mm256_castsi256_si128(w), w1 = _mm256_extracti128_si256(w, 1);
    f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w0));
    f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w0, 8)));
    f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w1));
    f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w1, 8)));
}

/* Q4_0 row times F32 values (exact activations, the MLA absorption). */
DSI_AVX2 static float dsi_dot_q4_avx2(const uint8_t *row, const float *x, int n) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        const float *xb = x + b * DSI_Q8_BLOCK;
        __m256 f[4];
        dsi_q4_floats(blk, f);
        __m256 d = _mm256_mul_ps(f[0], _mm256_loadu_ps(xb));
        d = _mm256_fmadd_ps(f[1], _mm256_loadu_ps(xb + 8), d);
        d = _mm256_fmadd_ps(f[2], _mm256_loadu_ps(xb + 16), d);
        d = _mm256_fmadd_ps(f[3], _mm256_loadu_ps(xb + 24), d);
        acc = _mm256_fmadd_ps(d, _mm256_set1_ps(_cvtsh_ss(dsi_rd16(blk))), acc);
    }
    return dsi_hsum256(acc);
}

DSI_AVX2 static void dsi_dequant_q4_avx2(const uint8_t *row, float *y, int n) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        __m256 d = _mm256_set1_ps(_cvtsh_ss(dsi_rd16(blk))), f[4];
        dsi_q4_floats(blk, f);
        for (int i = 0; i < 4; i++) _mm256_storeu_ps(y + b * DSI_Q8_BLOCK + 8 * i, _mm256_mul_ps(f[i], d));
    }
}

DSI_AVX2 static void dsi_axpy_q4_avx2(const uint8_t *row, float a, float *y, int n) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        __m256 as = _mm256_set1_ps(a * _cvtsh_ss(dsi_rd16(blk))), f[4];
        dsi_q4_floats(blk, f);
        float *yb = y + b * DSI_Q8_BLOCK;
        for (int i = 0; i < 4; i++)
            _mm256_storeu_ps(yb + 8 * i, _mm256_fmadd_ps(f[i], as, _mm256_loadu_ps(yb + 8 * i)));
    }
}

/* Q4_0 blocks as the Q8_0 blocks of the same values (a batch's rows). */
DSI_AVX2 static void dsi_q4_to_q8_avx2(const uint8_t *row, uint8_t *out, int n) {
    for (int b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *blk = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        uint8_t *o = out + (size_t)b * DSI_Q8_BLOCK_BYTES;
        memcpy(o, blk, 2);
        _mm256_storeu_si256((__m256i *)(void *)(o + 2), _mm256_sub_epi8(dsi_q4_nibbles(blk), _mm256_set1_epi8(8)));
    }
}

#define DSI_AVX2_NEED (DSI_CPU_AVX2 | DSI_CPU_FMA | DSI_CPU_F16C)

DSI_FUNC bool dsi_have_avx2(void) { return (dsi_cpu_features() & DSI_AVX2_NEED) == DSI_AVX2_NEED; }

/* the table's shapes for the token-lane tiles (int8 activations) */
static void dsi_tl8_pack_any(const void *x, size_t ldx, const float *s, size_t lds, int T, int cols, void *P,
                             float *S) {
    dsi_tl8_pack(x, ldx, s, lds, T, cols, P, S);
}

static void dsi_tl8_gemm_any(const uint8_t *W, size_t rb, int rows, int cols, const void *P, const float *S, int T,
                             float *Y, size_t ldy, float *scratch) {
    dsi_gemm_q8q8_tl8_avx2(W, rb, rows, cols, P, S, T, Y, ldy, scratch);
}

static float dsi_dot_rf32_avx2(const uint8_t *row, const float *x, int n) {
    return dsi_dot_f32_avx2((const float *)(const void *)row, x, n);
}

static void dsi_dequant_f16_avx2(const uint8_t *row, float *y, int n) { dsi_f16_to_f32_row_avx2(row, y, n); }

DSI_FUNC bool dsi_kernels_avx2(dsi_kernels *k, uint32_t features) {
    if ((features & DSI_AVX2_NEED) != DSI_AVX2_NEED) return false;
    k->name = "avx2";
    k->dot[DS_DTYPE_F32] = dsi_dot_rf32_avx2;
    k->dot[DS_DTYPE_F16] = dsi_dot_f16_avx2;
    k->dot[DS_DTYPE_Q8_0] = dsi_dot_q8_avx2;
    k->dequant[DS_DTYPE_F16] = dsi_dequant_f16_avx2;
    k->axpy[DS_DTYPE_F16] = dsi_axpy_f16_avx2;
    k->axpy[DS_DTYPE_Q8_0] = dsi_axpy_q8_avx2;
    k->dot[DS_DTYPE_Q4_0] = dsi_dot_q4_avx2;
    k->dequant[DS_DTYPE_Q4_0] = dsi_dequant_q4_avx2;
    k->axpy[DS_DTYPE_Q4_0] = dsi_axpy_q4_avx2;
    k->dot_q4q8 = dsi_dot_q4q8_avx2;
    k->q4_to_q8 = dsi_q4_to_q8_avx2;
    k->dot_f32 = dsi_dot_f32_avx2;
    k->axpy_f32 = dsi_axpy_f32_avx2;
    k->dot_f32x4 = dsi_dot_f32x4_avx2;
    k->dot_f32_4x2 = dsi_dot_f32_4x2_avx2;
    k->quantize_act = dsi_quantize_act_q8_avx2;
    k->dot_q8q8 = dsi_dot_q8q8_avx2;
    k->dot_q8q8x4 = dsi_dot_q8q8x4_avx2;
    /* token lanes, 8 signed tokens a tile: all T from DSI_TL8_MIN tokens */
    k->lane_min = DSI_TL8_MIN;
    k->lane_split = dsi_tl8_split;
    k->lane_pack_bytes = dsi_tl8_pack_bytes;
    k->lane_pack_floats = dsi_tl8_pack_floats;
    k->lane_pack = dsi_tl8_pack_any;
    k->lane_gemm = dsi_tl8_gemm_any;
    return true;
}
#else
DSI_FUNC bool dsi_have_avx2(void) { return false; }
DSI_FUNC bool dsi_kernels_avx2(dsi_kernels *k, uint32_t features) {
    (void)k;
    (void)features;
    return false;
}
/* never called where dsi_have_avx2() is false: they exist so that code and
 * tests naming them link on every platform */
DSI_FUNC float dsi_dot_f32_avx2(const float *a, const float *b, int n) { return dsi_dot_f32_c(a, b, n); }
DSI_FUNC void dsi_axpy_f32_avx2(float a, const float *x, float *y, int n) { dsi_axpy_f32_c(a, x, y, n); }
DSI_FUNC float dsi_dot_f16_avx2(const uint8_t *row, const float *x, int n) { (void)row; (void)x; (void)n; return 0; }
DSI_FUNC float dsi_dot_q8_avx2(const uint8_t *row, const float *x, int n) { (void)row; (void)x; (void)n; return 0; }
DSI_FUNC void dsi_quantize_act_q8_avx2(const float *x, int n, int8_t *q, float *s) { dsi_quantize_act_q8_c(x, n, q, s); }
DSI_FUNC void dsi_axpy_q8_avx2(const uint8_t *row, float a, float *y, int n) { (void)row, (void)a, (void)y, (void)n; }
DSI_FUNC void dsi_f16_to_f32_row_avx2(const uint8_t *row, float *y, int n) {
    dsi_dequantize_row_f16((const uint16_t *)(const void *)row, y, (size_t)n);
}
DSI_FUNC void dsi_dot_f32x4_avx2(const float *row, const float *x, size_t ldx, int n, float out[4]) {
    for (int j = 0; j < 4; j++) out[j] = dsi_dot_f32_c(row, x + (size_t)j * ldx, n);
}
DSI_FUNC void dsi_axpy_f16_avx2(const uint8_t *row, float a, float *y, int n) { (void)row, (void)a, (void)y, (void)n; }
DSI_FUNC void dsi_dot_f32_4x2_avx2(const float *rows, size_t ldr, const float *x, size_t ldx, int n, float out[8]) {
    for (int k = 0; k < 8; k++) out[k] = dsi_dot_f32_c(rows + (size_t)(k / 2) * ldr, x + (size_t)(k & 1) * ldx, n);
}
DSI_FUNC float dsi_dot_q8q8_avx2(const uint8_t *row, const int8_t *q, const float *s, int n) { return dsi_dot_q8q8_c(row, q, s, n); }
DSI_FUNC void dsi_dot_q8q8x4_avx2(const uint8_t *row, const int8_t *q, size_t ldq, const float *s, size_t lds, int n,
                                  float out[4]) {
    for (int j = 0; j < 4; j++) out[j] = dsi_dot_q8q8_c(row, q + j * ldq, s + j * lds, n);
}
DSI_FUNC void dsi_gemm_q8q8_tl8_avx2(const uint8_t *W, size_t rb, int rows, int cols, const int8_t *P, const float *S,
                                     int T, float *Y, size_t ldy, float *scratch) {
    (void)W, (void)rb, (void)rows, (void)cols, (void)P, (void)S, (void)T, (void)Y, (void)ldy, (void)scratch;
}
#endif
