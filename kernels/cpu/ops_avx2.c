/*
 * ops_avx2.c — AVX2 + FMA + F16C versions of the row dot products, compiled
 * with per-function target attributes (no global -mavx2) and chosen at run
 * time from dsi_cpu_features(); the portable versions in ops.c are the
 * reference they are tested against.
 */
#include "../../deepseek_impl/internal.h"

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
        a0 = dsi_q8_block(row + (size_t)b * DSI_Q8_BLOCK_BYTES, x + b * DSI_Q8_BLOCK, a0);
        a1 = dsi_q8_block(row + (size_t)(b + 1) * DSI_Q8_BLOCK_BYTES, x + (b + 1) * DSI_Q8_BLOCK, a1);
    }
    if (b < nb) a0 = dsi_q8_block(row + (size_t)b * DSI_Q8_BLOCK_BYTES, x + b * DSI_Q8_BLOCK, a0);
    return dsi_hsum256(_mm256_add_ps(a0, a1));
}

DSI_FUNC bool dsi_have_avx2(void) {
    uint32_t need = DSI_CPU_AVX2 | DSI_CPU_FMA | DSI_CPU_F16C;
    return (dsi_cpu_features() & need) == need;
}
#else
DSI_FUNC bool dsi_have_avx2(void) { return false; }
DSI_FUNC float dsi_dot_f32_avx2(const float *a, const float *b, int n) { return dsi_dot_f32(a, b, n); }
DSI_FUNC float dsi_dot_f16_avx2(const uint8_t *row, const float *x, int n) { (void)row; (void)x; (void)n; return 0; }
DSI_FUNC float dsi_dot_q8_avx2(const uint8_t *row, const float *x, int n) { (void)row; (void)x; (void)n; return 0; }
#endif
