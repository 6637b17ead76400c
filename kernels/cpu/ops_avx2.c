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

/* ==== Pruned Q8_0 rows (Q8_0_24, Q8_0_SP) ===================================
 * Each block's stored values are expanded in a register to the 32 int8 of
 * its Q8_0 form (vpshufb through the tables below), then the Q8_0 block
 * kernels run on them with the same steps as dsi_dot_q8_avx2,
 * dsi_dot_q8q8_avx2 and dsi_axpy_q8_avx2: the same bits as those on the
 * row's Q8_0 form. Nothing of the row is copied to memory. */
/* Q8_0_24: a pos byte (groups 2k and 2k+1) to the vpshufb indices of their
 * eight values into q[4k..4k+3] (less 4k): value p1 takes the group's second
 * stored value, p0 (if not p1) its first, the others 0x80 (zero). */
static const uint64_t dsi_q24_shuf[256] = {
    0x8080800380808001u, 0x8080800380800001u, 0x8080800380008001u, 0x8080800300808001u,
    0x8080800380800100u, 0x8080800380800180u, 0x8080800380000180u, 0x8080800300800180u,
    0x8080800380018000u, 0x8080800380010080u, 0x8080800380018080u, 0x8080800300018080u,
    0x8080800301808000u, 0x8080800301800080u, 0x8080800301008080u, 0x8080800301808080u,
    0x8080020380808001u, 0x8080020380800001u, 0x8080020380008001u, 0x8080020300808001u,
    0x8080020380800100u, 0x8080020380800180u, 0x8080020380000180u, 0x8080020300800180u,
    0x8080020380018000u, 0x8080020380010080u, 0x8080020380018080u, 0x8080020300018080u,
    0x8080020301808000u, 0x8080020301800080u, 0x8080020301008080u, 0x8080020301808080u,
    0x8002800380808001u, 0x8002800380800001u, 0x8002800380008001u, 0x8002800300808001u,
    0x8002800380800100u, 0x8002800380800180u, 0x8002800380000180u, 0x8002800300800180u,
    0x8002800380018000u, 0x8002800380010080u, 0x8002800380018080u, 0x8002800300018080u,
    0x8002800301808000u, 0x8002800301800080u, 0x8002800301008080u, 0x8002800301808080u,
    0x0280800380808001u, 0x0280800380800001u, 0x0280800380008001u, 0x0280800300808001u,
    0x0280800380800100u, 0x0280800380800180u, 0x0280800380000180u, 0x0280800300800180u,
    0x0280800380018000u, 0x0280800380010080u, 0x0280800380018080u, 0x0280800300018080u,
    0x0280800301808000u, 0x0280800301800080u, 0x0280800301008080u, 0x0280800301808080u,
    0x8080030280808001u, 0x8080030280800001u, 0x8080030280008001u, 0x8080030200808001u,
    0x8080030280800100u, 0x8080030280800180u, 0x8080030280000180u, 0x8080030200800180u,
    0x8080030280018000u, 0x8080030280010080u, 0x8080030280018080u, 0x8080030200018080u,
    0x8080030201808000u, 0x8080030201800080u, 0x8080030201008080u, 0x8080030201808080u,
    0x8080038080808001u, 0x8080038080800001u, 0x8080038080008001u, 0x8080038000808001u,
    0x8080038080800100u, 0x8080038080800180u, 0x8080038080000180u, 0x8080038000800180u,
    0x8080038080018000u, 0x8080038080010080u, 0x8080038080018080u, 0x8080038000018080u,
    0x8080038001808000u, 0x8080038001800080u, 0x8080038001008080u, 0x8080038001808080u,
    0x8002038080808001u, 0x8002038080800001u, 0x8002038080008001u, 0x8002038000808001u,
    0x8002038080800100u, 0x8002038080800180u, 0x8002038080000180u, 0x8002038000800180u,
    0x8002038080018000u, 0x8002038080010080u, 0x8002038080018080u, 0x8002038000018080u,
    0x8002038001808000u, 0x8002038001800080u, 0x8002038001008080u, 0x8002038001808080u,
    0x0280038080808001u, 0x0280038080800001u, 0x0280038080008001u, 0x0280038000808001u,
    0x0280038080800100u, 0x0280038080800180u, 0x0280038080000180u, 0x0280038000800180u,
    0x0280038080018000u, 0x0280038080010080u, 0x0280038080018080u, 0x0280038000018080u,
    0x0280038001808000u, 0x0280038001800080u, 0x0280038001008080u, 0x0280038001808080u,
    0x8003800280808001u, 0x8003800280800001u, 0x8003800280008001u, 0x8003800200808001u,
    0x8003800280800100u, 0x8003800280800180u, 0x8003800280000180u, 0x8003800200800180u,
    0x8003800280018000u, 0x8003800280010080u, 0x8003800280018080u, 0x8003800200018080u,
    0x8003800201808000u, 0x8003800201800080u, 0x8003800201008080u, 0x8003800201808080u,
    0x8003028080808001u, 0x8003028080800001u, 0x8003028080008001u, 0x8003028000808001u,
    0x8003028080800100u, 0x8003028080800180u, 0x8003028080000180u, 0x8003028000800180u,
    0x8003028080018000u, 0x8003028080010080u, 0x8003028080018080u, 0x8003028000018080u,
    0x8003028001808000u, 0x8003028001800080u, 0x8003028001008080u, 0x8003028001808080u,
    0x8003808080808001u, 0x8003808080800001u, 0x8003808080008001u, 0x8003808000808001u,
    0x8003808080800100u, 0x8003808080800180u, 0x8003808080000180u, 0x8003808000800180u,
    0x8003808080018000u, 0x8003808080010080u, 0x8003808080018080u, 0x8003808000018080u,
    0x8003808001808000u, 0x8003808001800080u, 0x8003808001008080u, 0x8003808001808080u,
    0x0203808080808001u, 0x0203808080800001u, 0x0203808080008001u, 0x0203808000808001u,
    0x0203808080800100u, 0x0203808080800180u, 0x0203808080000180u, 0x0203808000800180u,
    0x0203808080018000u, 0x0203808080010080u, 0x0203808080018080u, 0x0203808000018080u,
    0x0203808001808000u, 0x0203808001800080u, 0x0203808001008080u, 0x0203808001808080u,
    0x0380800280808001u, 0x0380800280800001u, 0x0380800280008001u, 0x0380800200808001u,
    0x0380800280800100u, 0x0380800280800180u, 0x0380800280000180u, 0x0380800200800180u,
    0x0380800280018000u, 0x0380800280010080u, 0x0380800280018080u, 0x0380800200018080u,
    0x0380800201808000u, 0x0380800201800080u, 0x0380800201008080u, 0x0380800201808080u,
    0x0380028080808001u, 0x0380028080800001u, 0x0380028080008001u, 0x0380028000808001u,
    0x0380028080800100u, 0x0380028080800180u, 0x0380028080000180u, 0x0380028000800180u,
    0x0380028080018000u, 0x0380028080010080u, 0x0380028080018080u, 0x0380028000018080u,
    0x0380028001808000u, 0x0380028001800080u, 0x0380028001008080u, 0x0380028001808080u,
    0x0302808080808001u, 0x0302808080800001u, 0x0302808080008001u, 0x0302808000808001u,
    0x0302808080800100u, 0x0302808080800180u, 0x0302808080000180u, 0x0302808000800180u,
    0x0302808080018000u, 0x0302808080010080u, 0x0302808080018080u, 0x0302808000018080u,
    0x0302808001808000u, 0x0302808001800080u, 0x0302808001008080u, 0x0302808001808080u,
    0x0380808080808001u, 0x0380808080800001u, 0x0380808080008001u, 0x0380808000808001u,
    0x0380808080800100u, 0x0380808080800180u, 0x0380808080000180u, 0x0380808000800180u,
    0x0380808080018000u, 0x0380808080010080u, 0x0380808080018080u, 0x0380808000018080u,
    0x0380808001808000u, 0x0380808001800080u, 0x0380808001008080u, 0x0380808001808080u,
};
/* Q8_0_SP: eight mask bits to the vpshufb indices of their eight values
 * into the stored bytes from the running offset: value j takes the stored
 * byte numbered by the set bits below j, an unset bit 0x80 (zero). */
static const uint64_t dsi_sp_shuf[256] = {
    0x8080808080808080u, 0x8080808080808000u, 0x8080808080800080u, 0x8080808080800100u,
    0x8080808080008080u, 0x8080808080018000u, 0x8080808080010080u, 0x8080808080020100u,
    0x8080808000808080u, 0x8080808001808000u, 0x8080808001800080u, 0x8080808002800100u,
    0x8080808001008080u, 0x8080808002018000u, 0x8080808002010080u, 0x8080808003020100u,
    0x8080800080808080u, 0x8080800180808000u, 0x8080800180800080u, 0x8080800280800100u,
    0x8080800180008080u, 0x8080800280018000u, 0x8080800280010080u, 0x8080800380020100u,
    0x8080800100808080u, 0x8080800201808000u, 0x8080800201800080u, 0x8080800302800100u,
    0x8080800201008080u, 0x8080800302018000u, 0x8080800302010080u, 0x8080800403020100u,
    0x8080008080808080u, 0x8080018080808000u, 0x8080018080800080u, 0x8080028080800100u,
    0x8080018080008080u, 0x8080028080018000u, 0x8080028080010080u, 0x8080038080020100u,
    0x8080018000808080u, 0x8080028001808000u, 0x8080028001800080u, 0x8080038002800100u,
    0x8080028001008080u, 0x8080038002018000u, 0x8080038002010080u, 0x8080048003020100u,
    0x8080010080808080u, 0x8080020180808000u, 0x8080020180800080u, 0x8080030280800100u,
    0x8080020180008080u, 0x8080030280018000u, 0x8080030280010080u, 0x8080040380020100u,
    0x8080020100808080u, 0x8080030201808000u, 0x8080030201800080u, 0x8080040302800100u,
    0x8080030201008080u, 0x8080040302018000u, 0x8080040302010080u, 0x8080050403020100u,
    0x8000808080808080u, 0x8001808080808000u, 0x8001808080800080u, 0x8002808080800100u,
    0x8001808080008080u, 0x8002808080018000u, 0x8002808080010080u, 0x8003808080020100u,
    0x8001808000808080u, 0x8002808001808000u, 0x8002808001800080u, 0x8003808002800100u,
    0x8002808001008080u, 0x8003808002018000u, 0x8003808002010080u, 0x8004808003020100u,
    0x8001800080808080u, 0x8002800180808000u, 0x8002800180800080u, 0x8003800280800100u,
    0x8002800180008080u, 0x8003800280018000u, 0x8003800280010080u, 0x8004800380020100u,
    0x8002800100808080u, 0x8003800201808000u, 0x8003800201800080u, 0x8004800302800100u,
    0x8003800201008080u, 0x8004800302018000u, 0x8004800302010080u, 0x8005800403020100u,
    0x8001008080808080u, 0x8002018080808000u, 0x8002018080800080u, 0x8003028080800100u,
    0x8002018080008080u, 0x8003028080018000u, 0x8003028080010080u, 0x8004038080020100u,
    0x8002018000808080u, 0x8003028001808000u, 0x8003028001800080u, 0x8004038002800100u,
    0x8003028001008080u, 0x8004038002018000u, 0x8004038002010080u, 0x8005048003020100u,
    0x8002010080808080u, 0x8003020180808000u, 0x8003020180800080u, 0x8004030280800100u,
    0x8003020180008080u, 0x8004030280018000u, 0x8004030280010080u, 0x8005040380020100u,
    0x8003020100808080u, 0x8004030201808000u, 0x8004030201800080u, 0x8005040302800100u,
    0x8004030201008080u, 0x8005040302018000u, 0x8005040302010080u, 0x8006050403020100u,
    0x0080808080808080u, 0x0180808080808000u, 0x0180808080800080u, 0x0280808080800100u,
    0x0180808080008080u, 0x0280808080018000u, 0x0280808080010080u, 0x0380808080020100u,
    0x0180808000808080u, 0x0280808001808000u, 0x0280808001800080u, 0x0380808002800100u,
    0x0280808001008080u, 0x0380808002018000u, 0x0380808002010080u, 0x0480808003020100u,
    0x0180800080808080u, 0x0280800180808000u, 0x0280800180800080u, 0x0380800280800100u,
    0x0280800180008080u, 0x0380800280018000u, 0x0380800280010080u, 0x0480800380020100u,
    0x0280800100808080u, 0x0380800201808000u, 0x0380800201800080u, 0x0480800302800100u,
    0x0380800201008080u, 0x0480800302018000u, 0x0480800302010080u, 0x0580800403020100u,
    0x0180008080808080u, 0x0280018080808000u, 0x0280018080800080u, 0x0380028080800100u,
    0x0280018080008080u, 0x0380028080018000u, 0x0380028080010080u, 0x0480038080020100u,
    0x0280018000808080u, 0x0380028001808000u, 0x0380028001800080u, 0x0480038002800100u,
    0x0380028001008080u, 0x0480038002018000u, 0x0480038002010080u, 0x0580048003020100u,
    0x0280010080808080u, 0x0380020180808000u, 0x0380020180800080u, 0x0480030280800100u,
    0x0380020180008080u, 0x0480030280018000u, 0x0480030280010080u, 0x0580040380020100u,
    0x0380020100808080u, 0x0480030201808000u, 0x0480030201800080u, 0x0580040302800100u,
    0x0480030201008080u, 0x0580040302018000u, 0x0580040302010080u, 0x0680050403020100u,
    0x0100808080808080u, 0x0201808080808000u, 0x0201808080800080u, 0x0302808080800100u,
    0x0201808080008080u, 0x0302808080018000u, 0x0302808080010080u, 0x0403808080020100u,
    0x0201808000808080u, 0x0302808001808000u, 0x0302808001800080u, 0x0403808002800100u,
    0x0302808001008080u, 0x0403808002018000u, 0x0403808002010080u, 0x0504808003020100u,
    0x0201800080808080u, 0x0302800180808000u, 0x0302800180800080u, 0x0403800280800100u,
    0x0302800180008080u, 0x0403800280018000u, 0x0403800280010080u, 0x0504800380020100u,
    0x0302800100808080u, 0x0403800201808000u, 0x0403800201800080u, 0x0504800302800100u,
    0x0403800201008080u, 0x0504800302018000u, 0x0504800302010080u, 0x0605800403020100u,
    0x0201008080808080u, 0x0302018080808000u, 0x0302018080800080u, 0x0403028080800100u,
    0x0302018080008080u, 0x0403028080018000u, 0x0403028080010080u, 0x0504038080020100u,
    0x0302018000808080u, 0x0403028001808000u, 0x0403028001800080u, 0x0504038002800100u,
    0x0403028001008080u, 0x0504038002018000u, 0x0504038002010080u, 0x0605048003020100u,
    0x0302010080808080u, 0x0403020180808000u, 0x0403020180800080u, 0x0504030280800100u,
    0x0403020180008080u, 0x0504030280018000u, 0x0504030280010080u, 0x0605040380020100u,
    0x0403020100808080u, 0x0504030201808000u, 0x0504030201800080u, 0x0605040302800100u,
    0x0504030201008080u, 0x0605040302018000u, 0x0605040302010080u, 0x0706050403020100u,
};
static const uint8_t dsi_popcnt8[256] = {
    0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 1, 2, 2, 3, 2, 3, 3, 4, 2, 3, 3, 4, 3, 4, 4, 5,
    1, 2, 2, 3, 2, 3, 3, 4, 2, 3, 3, 4, 3, 4, 4, 5, 2, 3, 3, 4, 3, 4, 4, 5, 3, 4, 4, 5, 4, 5, 5, 6,
    1, 2, 2, 3, 2, 3, 3, 4, 2, 3, 3, 4, 3, 4, 4, 5, 2, 3, 3, 4, 3, 4, 4, 5, 3, 4, 4, 5, 4, 5, 5, 6,
    2, 3, 3, 4, 3, 4, 4, 5, 3, 4, 4, 5, 4, 5, 5, 6, 3, 4, 4, 5, 4, 5, 5, 6, 4, 5, 5, 6, 5, 6, 6, 7,
    1, 2, 2, 3, 2, 3, 3, 4, 2, 3, 3, 4, 3, 4, 4, 5, 2, 3, 3, 4, 3, 4, 4, 5, 3, 4, 4, 5, 4, 5, 5, 6,
    2, 3, 3, 4, 3, 4, 4, 5, 3, 4, 4, 5, 4, 5, 5, 6, 3, 4, 4, 5, 4, 5, 5, 6, 4, 5, 5, 6, 5, 6, 6, 7,
    2, 3, 3, 4, 3, 4, 4, 5, 3, 4, 4, 5, 4, 5, 5, 6, 3, 4, 4, 5, 4, 5, 5, 6, 4, 5, 5, 6, 5, 6, 6, 7,
    3, 4, 4, 5, 4, 5, 5, 6, 4, 5, 5, 6, 5, 6, 6, 7, 4, 5, 5, 6, 5, 6, 6, 7, 5, 6, 6, 7, 6, 7, 7, 8,
};

#define DSI_BYTES8 0x0101010101010101ull

/* A 2:4 block's 32 values: the 16 stored bytes in both lanes, each lane's
 * indices from two pos bytes (the low lane values 0-15, the high 16-31). */
DSI_AVX2 static inline __m256i dsi_q24_expand(const uint8_t *blk) {
    __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(blk + 6)));
    uint32_t pos = dsi_rd32(blk + 2);
    __m256i idx = _mm256_set_epi64x((long long)(dsi_q24_shuf[pos >> 24] + 12 * DSI_BYTES8),
                                    (long long)(dsi_q24_shuf[(pos >> 16) & 255] + 8 * DSI_BYTES8),
                                    (long long)(dsi_q24_shuf[(pos >> 8) & 255] + 4 * DSI_BYTES8),
                                    (long long)dsi_q24_shuf[pos & 255]);
    return _mm256_shuffle_epi8(q, idx);
}

/* Sixteen values of an SP block from two mask bytes, reading 16 bytes at v
 * (at most as far as the 16 values could reach: inside the row's head and
 * values, whatever the mask). */
DSI_AVX2 static inline __m128i dsi_sp_expand16(const uint8_t *v, unsigned m0, unsigned m1) {
    __m128i src = _mm_loadu_si128((const __m128i *)(const void *)v);
    __m128i idx = _mm_set_epi64x((long long)(dsi_sp_shuf[m1] + dsi_popcnt8[m0] * DSI_BYTES8),
                                 (long long)dsi_sp_shuf[m0]);
    return _mm_shuffle_epi8(src, idx);
}

/* An SP block's 32 values from mask, the stored values at *v (advanced). */
DSI_AVX2 static inline __m256i dsi_sp_expand(uint32_t mask, const uint8_t **v) {
    const uint8_t *p = *v;
    unsigned m0 = mask & 255, m1 = (mask >> 8) & 255, m2 = (mask >> 16) & 255, m3 = mask >> 24;
    __m128i lo = dsi_sp_expand16(p, m0, m1);
    p += dsi_popcnt8[m0] + dsi_popcnt8[m1];
    __m128i hi = dsi_sp_expand16(p, m2, m3);
    *v = p + dsi_popcnt8[m2] + dsi_popcnt8[m3];
    return _mm256_set_m128i(hi, lo);
}

/* A row cursor: block b's values (blocks in order, each once) and scale. */
typedef struct dsi_pxa {
    const uint8_t *row, *v;
    size_t nb;
} dsi_pxa;

DSI_AVX2 static inline __attribute__((always_inline)) __m256i dsi_pxa_block(dsi_pxa *c, size_t b, const bool sp,
                                                                             float *d) {
    if (sp) {
        *d = _cvtsh_ss(dsi_rd16(c->row + 2 * b));
        return dsi_sp_expand(dsi_rd32(c->row + 2 * c->nb + 4 * b), &c->v);
    }
    const uint8_t *blk = c->row + b * DSI_Q24_BLOCK_BYTES;
    *d = _cvtsh_ss(dsi_rd16(blk));
    return dsi_q24_expand(blk);
}

DSI_AVX2 static inline __attribute__((always_inline)) const uint8_t *dsi_pxa_ahead(const dsi_pxa *c, size_t b,
                                                                                     const bool sp) {
    return (sp ? c->v : c->row + b * DSI_Q24_BLOCK_BYTES) + DSI_PREFETCH_AHEAD;
}

/* dsi_q8_block with the block's values given */
DSI_AVX2 static inline __m256 dsi_q8v_block(__m256i q, float sc, const float *x, __m256 acc) {
    __m128i q0 = _mm256_castsi256_si128(q), q1 = _mm256_extracti128_si256(q, 1);
    __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0));
    __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8)));
    __m256 f2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1));
    __m256 f3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8)));
    __m256 d = _mm256_mul_ps(f0, _mm256_loadu_ps(x));
    d = _mm256_fmadd_ps(f1, _mm256_loadu_ps(x + 8), d);
    d = _mm256_fmadd_ps(f2, _mm256_loadu_ps(x + 16), d);
    d = _mm256_fmadd_ps(f3, _mm256_loadu_ps(x + 24), d);
    return _mm256_fmadd_ps(d, _mm256_set1_ps(sc), acc);
}

DSI_AVX2 static inline __attribute__((always_inline)) float dsi_px_dot_avx2(const uint8_t *row, const float *x, int n,
                                                                              const bool sp) {
    size_t nb = (size_t)(n / DSI_Q8_BLOCK), b = 0;
    dsi_pxa c = {row, row + nb * DSI_SP_HEAD_BYTES, nb};
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    float d0, d1;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char *)dsi_pxa_ahead(&c, b, sp), _MM_HINT_T0);
        __m256i w0 = dsi_pxa_block(&c, b, sp, &d0);
        __m256i w1 = dsi_pxa_block(&c, b + 1, sp, &d1);
        a0 = dsi_q8v_block(w0, d0, x + b * DSI_Q8_BLOCK, a0);
        a1 = dsi_q8v_block(w1, d1, x + (b + 1) * DSI_Q8_BLOCK, a1);
    }
    if (b < nb) {
        __m256i w0 = dsi_pxa_block(&c, b, sp, &d0);
        a0 = dsi_q8v_block(w0, d0, x + b * DSI_Q8_BLOCK, a0);
    }
    return dsi_hsum256(_mm256_add_ps(a0, a1));
}

/* one block's int32 sums of w times int8 activations, as dsi_dot_q8q8_avx2 */
DSI_AVX2 static inline __m256i dsi_q8q8v(__m256i w, const int8_t *q) {
    __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)q);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)),
                             _mm256_set1_epi16(1));
}

DSI_AVX2 static inline __attribute__((always_inline)) float dsi_px_dotq8_avx2(const uint8_t *row, const int8_t *q,
                                                                                const float *s, int n, const bool sp) {
    size_t nb = (size_t)(n / DSI_Q8_BLOCK), b = 0;
    dsi_pxa c = {row, row + nb * DSI_SP_HEAD_BYTES, nb};
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    float d0, d1;
    for (; b + 2 <= nb; b += 2) {
        _mm_prefetch((const char *)dsi_pxa_ahead(&c, b, sp), _MM_HINT_T0);
        __m256i p0 = dsi_q8q8v(dsi_pxa_block(&c, b, sp, &d0), q + b * DSI_Q8_BLOCK);
        __m256i p1 = dsi_q8q8v(dsi_pxa_block(&c, b + 1, sp, &d1), q + (b + 1) * DSI_Q8_BLOCK);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * s[b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d1 * s[b + 1]), a1);
    }
    if (b < nb) {
        __m256i p0 = dsi_q8q8v(dsi_pxa_block(&c, b, sp, &d0), q + b * DSI_Q8_BLOCK);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * s[b]), a0);
    }
    return dsi_hsum256(_mm256_add_ps(a0, a1));
}

DSI_AVX2 static inline __attribute__((always_inline)) void dsi_px_axpy_avx2(const uint8_t *row, float a, float *y,
                                                                              int n, const bool sp) {
    size_t nb = (size_t)(n / DSI_Q8_BLOCK);
    dsi_pxa c = {row, row + nb * DSI_SP_HEAD_BYTES, nb};
    for (size_t b = 0; b < nb; b++) {
        float d;
        __m256i q = dsi_pxa_block(&c, b, sp, &d);
        __m256 as = _mm256_set1_ps(a * d);
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

/* dequant: the values times the scale, as the portable dequantizer does */
DSI_AVX2 static inline __attribute__((always_inline)) void dsi_px_dequant_avx2(const uint8_t *row, float *y, int n,
                                                                                 const bool sp) {
    size_t nb = (size_t)(n / DSI_Q8_BLOCK);
    dsi_pxa c = {row, row + nb * DSI_SP_HEAD_BYTES, nb};
    for (size_t b = 0; b < nb; b++) {
        float d;
        __m256i q = dsi_pxa_block(&c, b, sp, &d);
        __m256 ds = _mm256_set1_ps(d);
        __m128i q0 = _mm256_castsi256_si128(q), q1 = _mm256_extracti128_si256(q, 1);
        float *yb = y + b * DSI_Q8_BLOCK;
        _mm256_storeu_ps(yb, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0)), ds));
        _mm256_storeu_ps(yb + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8))), ds));
        _mm256_storeu_ps(yb + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1)), ds));
        _mm256_storeu_ps(yb + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8))), ds));
    }
}

DSI_AVX2 static inline __attribute__((always_inline)) void dsi_px_to_q8_avx2(const uint8_t *row, uint8_t *out, int n,
                                                                               const bool sp) {
    size_t nb = (size_t)(n / DSI_Q8_BLOCK);
    dsi_pxa c = {row, row + nb * DSI_SP_HEAD_BYTES, nb};
    for (size_t b = 0; b < nb; b++) {
        float d;
        uint8_t *o = out + b * DSI_Q8_BLOCK_BYTES;
        __m256i q = dsi_pxa_block(&c, b, sp, &d);
        memcpy(o, sp ? row + 2 * b : row + b * DSI_Q24_BLOCK_BYTES, 2);   /* the scale's bits */
        _mm256_storeu_si256((__m256i *)(void *)(o + 2), q);
    }
}

DSI_AVX2 static float dsi_dot_24_avx2(const uint8_t *row, const float *x, int n) { return dsi_px_dot_avx2(row, x, n, false); }
DSI_AVX2 static float dsi_dot_sp_avx2(const uint8_t *row, const float *x, int n) { return dsi_px_dot_avx2(row, x, n, true); }
DSI_AVX2 static float dsi_dot_24q8_avx2(const uint8_t *row, const int8_t *q, const float *s, int n) {
    return dsi_px_dotq8_avx2(row, q, s, n, false);
}
DSI_AVX2 static float dsi_dot_spq8_avx2(const uint8_t *row, const int8_t *q, const float *s, int n) {
    return dsi_px_dotq8_avx2(row, q, s, n, true);
}
DSI_AVX2 static void dsi_axpy_24_avx2(const uint8_t *row, float a, float *y, int n) { dsi_px_axpy_avx2(row, a, y, n, false); }
DSI_AVX2 static void dsi_axpy_sp_avx2(const uint8_t *row, float a, float *y, int n) { dsi_px_axpy_avx2(row, a, y, n, true); }
DSI_AVX2 static void dsi_dequant_24_avx2(const uint8_t *row, float *y, int n) { dsi_px_dequant_avx2(row, y, n, false); }
DSI_AVX2 static void dsi_dequant_sp_avx2(const uint8_t *row, float *y, int n) { dsi_px_dequant_avx2(row, y, n, true); }
DSI_AVX2 static void dsi_24_to_q8_avx2(const uint8_t *row, uint8_t *out, int n) { dsi_px_to_q8_avx2(row, out, n, false); }
DSI_AVX2 static void dsi_sp_to_q8_avx2(const uint8_t *row, uint8_t *out, int n) { dsi_px_to_q8_avx2(row, out, n, true); }

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
    k->to_q8[DS_DTYPE_Q4_0] = dsi_q4_to_q8_avx2;
    k->dot[DS_DTYPE_Q8_0_24] = dsi_dot_24_avx2;
    k->dequant[DS_DTYPE_Q8_0_24] = dsi_dequant_24_avx2;
    k->axpy[DS_DTYPE_Q8_0_24] = dsi_axpy_24_avx2;
    k->to_q8[DS_DTYPE_Q8_0_24] = dsi_24_to_q8_avx2;
    k->dot_24q8 = dsi_dot_24q8_avx2;
    k->dot[DS_DTYPE_Q8_0_SP] = dsi_dot_sp_avx2;
    k->dequant[DS_DTYPE_Q8_0_SP] = dsi_dequant_sp_avx2;
    k->axpy[DS_DTYPE_Q8_0_SP] = dsi_axpy_sp_avx2;
    k->to_q8[DS_DTYPE_Q8_0_SP] = dsi_sp_to_q8_avx2;
    k->dot_spq8 = dsi_dot_spq8_avx2;
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
