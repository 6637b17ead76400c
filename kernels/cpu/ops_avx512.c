/*
 * ops_avx512.c — AVX-512 VNNI versions of the int8 x int8 products (Q8_0
 * weights times activations quantized per block of 32), compiled with
 * per-function target attributes and chosen at run time when the CPU and the
 * OS support AVX-512 F/BW/VL and VNNI. Two blocks fill one 512-bit register;
 * vpdpbusd multiplies unsigned by signed bytes and adds each group of four
 * into an int32 lane without saturation. The portable versions in ops.c are
 * the reference they are tested against.
 */
#include "../../deepseek_impl/internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define DSI_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/* Blocks b and b+1 of a Q8_0 row: their 64 int8 values. */
DSI_VNNI static inline __m512i dsi_q8_pair(const uint8_t *blk) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
    __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(blk + DSI_Q8_BLOCK_BYTES + 2));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* lanes 0-7 get a, lanes 8-15 get b */
DSI_VNNI static inline __m512 dsi_pair_scale(float a, float b) {
    return _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}

DSI_VNNI static inline float dsi_q8_scale(const uint8_t *blk) { return _cvtsh_ss(dsi_rd16(blk)); }

/* With the activations stored offset to unsigned (u = x + 128, see
 * dsi_act_to_u8), vpdpbusd takes them directly: dot(u, w) = dot(x, w) +
 * 128 sum(w), and the correction -128 sum(w) is itself one vpdpbusd of the
 * weights with a vector of 128s, computed once per weight block and shared by
 * every token. Per token and pair of blocks: one load, one vpdpbusd, one
 * convert, the scales, one FMA. */
DSI_VNNI static inline __m512 dsi_pair_xscale(const float *s) {
    /* s[0] into lanes 0-7, s[1] into 8-15 */
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m128 two = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)s));   /* unaligned 8 bytes */
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(two));
}

/* T is 1 or 4 at the call sites below (constants), so acc[] stays in registers. */
DSI_VNNI static inline __attribute__((always_inline)) void dsi_q8u8_tile(const uint8_t *row, const uint8_t *u,
                                                                         size_t ldu, const float *s, size_t lds,
                                                                         int nb, const int T, float *out) {
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int b = 0; b + 2 <= nb; b += 2) {
        const uint8_t *k = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        _mm_prefetch((const char *)(k + DSI_PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(k + DSI_PREFETCH_AHEAD + 64), _MM_HINT_T0);
        __m512i w = dsi_q8_pair(k);
        __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, w));
        __m512 wv = dsi_pair_scale(dsi_q8_scale(k), dsi_q8_scale(k + DSI_Q8_BLOCK_BYTES));
        const uint8_t *ub = u + (size_t)b * DSI_Q8_BLOCK;
        const float *sb = s + b;
#define DSI_U8_TOKEN(j)                                                                                        \
    do {                                                                                                       \
        __m512i p = _mm512_dpbusd_epi32(corr, _mm512_loadu_si512((const void *)(ub + (size_t)(j) * ldu)), w);  \
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(wv, dsi_pair_xscale(sb + (size_t)(j) * lds)), \
                                 acc[j]);                                                                      \
    } while (0)
        DSI_U8_TOKEN(0);
        if (T == 4) {
            DSI_U8_TOKEN(1);
            DSI_U8_TOKEN(2);
            DSI_U8_TOKEN(3);
        }
#undef DSI_U8_TOKEN
    }
    for (int j = 0; j < T; j++) out[j] = _mm512_reduce_add_ps(acc[j]);
}

DSI_VNNI DSI_FUNC void dsi_dot_q8u8xT_vnni(const uint8_t *row, const uint8_t *u, size_t ldu, const float *s,
                                           size_t lds, int n, int T, float *out) {
    int nb = n / DSI_Q8_BLOCK, b = nb & ~1;
    if (T == 4) {
        dsi_q8u8_tile(row, u, ldu, s, lds, nb, 4, out);
    } else {
        for (int j = 0; j < T; j++)
            dsi_q8u8_tile(row, u + (size_t)j * ldu, ldu, s + (size_t)j * lds, lds, nb, 1, out + j);
    }
    if (b < nb) {   /* an odd last block */
        const uint8_t *k = row + (size_t)b * DSI_Q8_BLOCK_BYTES;
        const int8_t *w = (const int8_t *)(k + 2);
        float ws = dsi_q8_scale(k);
        for (int j = 0; j < T; j++) {
            const uint8_t *ub = u + (size_t)j * ldu + (size_t)b * DSI_Q8_BLOCK;
            /* one 256-bit step of the same trick as the AVX2 kernels (GCC 12
             * miscompiled the scalar form of this sum when it vectorized it
             * with vpdpbusd: wrong results, caught by test_kernels) */
            __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)w);
            __m256i xv = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)ub),
                                          _mm256_set1_epi8((char)0x80));
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)),
                                          _mm256_set1_epi16(1));
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
            out[j] += ws * s[(size_t)j * lds + b] * (float)_mm_cvtsi128_si32(h);
        }
    }
}

DSI_FUNC bool dsi_have_vnni512(void) {
    uint32_t need = DSI_CPU_AVX2 | DSI_CPU_FMA | DSI_CPU_F16C | DSI_CPU_AVX512F | DSI_CPU_AVX512BW |
                    DSI_CPU_AVX512VL | DSI_CPU_AVX512VNNI;
    return (dsi_cpu_features() & need) == need;
}
#else
DSI_FUNC bool dsi_have_vnni512(void) { return false; }
DSI_FUNC void dsi_dot_q8u8xT_vnni(const uint8_t *row, const uint8_t *u, size_t ldu, const float *s, size_t lds, int n,
                                  int T, float *out) {
    (void)row, (void)u, (void)ldu, (void)s, (void)lds, (void)n, (void)T, (void)out;
}
#endif
