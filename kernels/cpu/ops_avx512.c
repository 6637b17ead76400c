/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * ops_avx512.c — AVX-512 VNNI versions of the int8 x int8 products (Q8_0
 * weights times activations quantized per block of 32), compiled with
 * per-function target attributes and chosen at run time when the CPU and the
 * OS support AVX-512 F/BW/VL and VNNI. Two blocks fill one 512-bit register;
 * vpdpbusd multiplies unsigned by signed bytes and adds each group of four
 * into an int32 lane without saturation. The portable versions in ops.c are
 * the reference they are tested against.
 */
#include "kernels.h"

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

/* T is 1-4, a constant at each call site below, so acc[] stays in registers. */
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
        if (T > 1) DSI_U8_TOKEN(1);
        if (T > 2) DSI_U8_TOKEN(2);
        if (T > 3) DSI_U8_TOKEN(3);
#undef DSI_U8_TOKEN
    }
    for (int j = 0; j < T; j++) out[j] = _mm512_reduce_add_ps(acc[j]);
}

DSI_VNNI DSI_FUNC void dsi_dot_q8u8xT_vnni(const uint8_t *row, const uint8_t *u, size_t ldu, const float *s,
                                           size_t lds, int n, int T, float *out) {
    int nb = n / DSI_Q8_BLOCK, b = nb & ~1;
    switch (T) {
    case 4: dsi_q8u8_tile(row, u, ldu, s, lds, nb, 4, out); break;
    case 3: dsi_q8u8_tile(row, u, ldu, s, lds, nb, 3, out); break;
    case 2: dsi_q8u8_tile(row, u, ldu, s, lds, nb, 2, out); break;
    default: dsi_q8u8_tile(row, u, ldu, s, lds, nb, 1, out); break;
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

/* ==== Q4_0 rows, one token ==================================================
 * Two blocks per step, as above: their 2 x 16 bytes become 64 nibbles in
 * value order (block b's low nibbles, its high nibbles, then block b+1's):
 * each block's bytes broadcast to both halves of a 256-bit lane, the upper
 * copy shifted right by 4 (a masked shift), the low nibbles kept; less 8
 * gives the signed weights w, and the same correction as the Q8_0 kernel:
 * dot(u, w) - 128 sum(w), one vpdpbusd each. The two blocks' F16 scales
 * travel as one 32-bit word through one conversion, times the two
 * activation scales, then spread over the lanes. */
DSI_VNNI static inline __m512i dsi_q4_pair(const uint8_t *blk) {
    __m256i b0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(blk + 2)));
    __m256i b1 =
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(blk + DSI_Q4_BLOCK_BYTES + 2)));
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(b0), b1, 1);        /* b0 b0 b1 b1 */
    z = _mm512_mask_srli_epi16(z, (__mmask32)0xFF00FF00u, z, 4);              /* b0 b0>>4 b1 b1>>4 */
    return _mm512_sub_epi8(_mm512_and_si512(z, _mm512_set1_epi8(15)), _mm512_set1_epi8(8));
}

/* (d_b * s_b) in lanes 0-7, (d_b1 * s_b1) in lanes 8-15 */
DSI_VNNI static inline __m512 dsi_q4_pair_scale(const uint8_t *blk, const float *s) {
    uint32_t dd = (uint32_t)dsi_rd16(blk) | (uint32_t)dsi_rd16(blk + DSI_Q4_BLOCK_BYTES) << 16;
    __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dd));
    __m128 sx = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)s));
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_mul_ps(d, sx)));
}

DSI_VNNI DSI_FUNC float dsi_dot_q4u8_vnni(const uint8_t *row, const uint8_t *u, const float *s, int n) {
    const __m512i k128 = _mm512_set1_epi8((char)0x80);
    int nb = n / DSI_Q8_BLOCK, b = 0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (; b + 4 <= nb; b += 4) {
        const uint8_t *k = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        _mm_prefetch((const char *)(k + DSI_PREFETCH_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(k + DSI_PREFETCH_AHEAD + 64), _MM_HINT_T0);
        __m512i w0 = dsi_q4_pair(k), w1 = dsi_q4_pair(k + 2 * DSI_Q4_BLOCK_BYTES);
        __m512i c0 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, w0));
        __m512i c1 = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, w1));
        __m512i p0 = _mm512_dpbusd_epi32(c0, _mm512_loadu_si512((const void *)(u + (size_t)b * 32)), w0);
        __m512i p1 = _mm512_dpbusd_epi32(c1, _mm512_loadu_si512((const void *)(u + (size_t)b * 32 + 64)), w1);
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), dsi_q4_pair_scale(k, s + b), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), dsi_q4_pair_scale(k + 2 * DSI_Q4_BLOCK_BYTES, s + b + 2), acc1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; b < nb; b++) {   /* the last one to three blocks */
        const uint8_t *k = row + (size_t)b * DSI_Q4_BLOCK_BYTES;
        int32_t acc = 0;
        for (int i = 0; i < 16; i++)
            acc += ((k[2 + i] & 15) - 8) * ((int32_t)u[(size_t)b * 32 + (size_t)i] - 128) +
                   ((k[2 + i] >> 4) - 8) * ((int32_t)u[(size_t)b * 32 + 16 + (size_t)i] - 128);
        sum += _cvtsh_ss(dsi_rd16(k)) * s[b] * (float)acc;
    }
    return sum;
}

/* ==== Token-lane GEMM (prefill) =========================================
 * The products above put a row's weights in the vector lanes, so every
 * vpdpbusd (64 multiply-adds) needs its own convert, scale and FMA, because
 * each 32-value block has its own scales. Here the lanes hold tokens instead:
 * dsi_tl_pack lays up to 15 tokens side by side, four bytes each, and the
 * weights come in as four-byte broadcasts straight from the Q8_0 row. A block
 * of 32 then takes eight vpdpbusd into one int32 accumulator per row, and
 * only then one convert and one FMA with (activation scales x row scale).
 *
 * Lane 15 is the bias lane: its activations are all 0x80 (x = 0 stored
 * offset by 128), so its sum is 128 * sum(w) for the block, exactly the
 * offset every other lane carries (dot(u, w) = dot(x, w) + 128 sum(w));
 * subtracting it gives the exact int32 dot of each token. Padding lanes hold
 * x = 0 with scale 0. An int32 lane sums 32 products of at most 255 * 128,
 * far from overflow.
 *
 * Eight rows share each activation load. The row scales of the eight rows
 * are converted from F16 sixteen at a time (a gather) into scratch first.
 *
 * Measured with tests/bench/bench_gemm.c-style runs, one thread, 1408 x 2048
 * (GFLOP/s, token lanes against the row-lane kernel): with the weights coming
 * from memory, as in a prefill, the tile wins from about 6 tokens (6: 64
 * against 41-62; 12: 119-128 against 63; 4: 43 against 52); over weights
 * already in cache a short tile loses (4: 51 against 71), so a remainder of
 * 1-6 tokens after whole tiles goes to the row-lane kernel (dsi_tl_split).
 * 128 tokens: 164 against 58. An 8-lane version for 1-7 tokens lost to the
 * row-lane kernel at every size (4: 47 against 75).
 *
 * A batch reads each weight once from memory. While the first tile runs over
 * a group of eight rows, it prefetches the next group into L2, a block's
 * share at a time: with weights not in cache, 10-15 tokens ran 13-25% faster
 * (bench: 111 against 87-90 GFLOP/s at 12 tokens, one thread). Prefetching
 * ahead within the current rows instead gained nothing. */
#define DSI_TL_R 8

/* Eight rows' block scales as floats: ws[i * nb + b]. */
DSI_VNNI static void dsi_tl_scales(const uint8_t *W, size_t rb, int RR, int nb, float *ws) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(DSI_Q8_BLOCK_BYTES));
    for (int i = 0; i < RR; i++) {
        const uint8_t *row = W + (size_t)i * rb;
        for (int b = 0; b < nb; b += 16) {
            /* the last gather may be partial; its dwords start at a block's
             * scale and end inside that block, never past the row */
            __mmask16 m = nb - b >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nb - b)) - 1);
            __m512i d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx,
                                                    (const void *)(row + (size_t)b * DSI_Q8_BLOCK_BYTES), 1);
            __m512 f = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d));
            _mm512_mask_storeu_ps(ws + (size_t)i * nb + b, m, f);
        }
    }
}

/* RR rows (8 or 1) times one tile: out[i * 16 + lane]. */
DSI_VNNI static inline __attribute__((always_inline)) void dsi_tl_z(const uint8_t *W, size_t rb, int nb,
                                                                    const uint8_t *P, const float *S, const float *ws,
                                                                    float *out, const uint8_t *nxt, size_t nxt_step,
                                                                    const int RR) {
    __m512 f[DSI_TL_R];
    __m512i ia[DSI_TL_R];
    const __m512i bias = _mm512_set1_epi32(15);
    _Pragma("GCC unroll 8") for (int i = 0; i < RR; i++) f[i] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *A = P + (size_t)b * 512, *wb = W + (size_t)b * DSI_Q8_BLOCK_BYTES + 2;
        if (nxt) {   /* the next row group into L2: its bytes spread over our blocks */
            const char *q = (const char *)nxt + (size_t)b * nxt_step;
            for (size_t o = 0; o < nxt_step + 63; o += 64) _mm_prefetch(q + o, _MM_HINT_T1);
        }
        _Pragma("GCC unroll 8") for (int i = 0; i < RR; i++) ia[i] = _mm512_setzero_si512();
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {
            __m512i a = _mm512_loadu_si512((const void *)(A + 64 * k));
            _Pragma("GCC unroll 8") for (int i = 0; i < RR; i++)
                ia[i] = _mm512_dpbusd_epi32(ia[i], a, _mm512_set1_epi32((int32_t)dsi_rd32(wb + (size_t)i * rb + 4 * k)));
        }
        __m512 xs = _mm512_loadu_ps(S + (size_t)b * 16);
        _Pragma("GCC unroll 8") for (int i = 0; i < RR; i++) {
            __m512i d = _mm512_sub_epi32(ia[i], _mm512_permutexvar_epi32(bias, ia[i]));
            f[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(xs, _mm512_set1_ps(ws[(size_t)i * nb + b])), f[i]);
        }
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < RR; i++) _mm512_storeu_ps(out + 16 * i, f[i]);
}

DSI_VNNI DSI_FUNC void dsi_gemm_q8u8_tl_vnni(const uint8_t *W, size_t rb, int rows, int cols, const uint8_t *P,
                                             const float *S, int T, float *Y, size_t ldy, float *scratch) {
    int nb = cols / DSI_Q8_BLOCK, tiles = dsi_tl_tiles(T);
    float out[DSI_TL_R * 16];
    if (tiles <= 0) return;
    for (int r = 0, RR; r < rows; r += RR) {
        RR = rows - r >= DSI_TL_R ? DSI_TL_R : 1;   /* the tail goes one row at a time */
        const uint8_t *Wr = W + (size_t)r * rb;
        dsi_tl_scales(Wr, rb, RR, nb, scratch);
        for (int tile = 0; tile < tiles; tile++) {
            int t0, n;
            dsi_lane_tile(T, DSI_TL_TOKENS, tile, &t0, &n);
            const uint8_t *Pt = P + (size_t)tile * (size_t)nb * 512;
            const float *St = S + (size_t)tile * (size_t)nb * 16;
            /* the first tile fetches the next group: 8 rows are nb steps of 8 * 34 bytes */
            const uint8_t *nxt = tile == 0 && r + 2 * DSI_TL_R <= rows ? Wr + DSI_TL_R * rb : NULL;
            if (RR == DSI_TL_R)
                dsi_tl_z(Wr, rb, nb, Pt, St, scratch, out, nxt, DSI_TL_R * DSI_Q8_BLOCK_BYTES, DSI_TL_R);
            else dsi_tl_z(Wr, rb, nb, Pt, St, scratch, out, NULL, 0, 1);
            dsi_lane_store(Y, ldy, t0, n, r, RR, out, 16);
        }
    }
}

#define DSI_VNNI_NEED                                                                                            \
    (DSI_CPU_AVX2 | DSI_CPU_FMA | DSI_CPU_F16C | DSI_CPU_AVX512F | DSI_CPU_AVX512BW | DSI_CPU_AVX512VL |         \
     DSI_CPU_AVX512VNNI)

DSI_FUNC bool dsi_have_vnni512(void) { return (dsi_cpu_features() & DSI_VNNI_NEED) == DSI_VNNI_NEED; }

/* the table's shapes for the token-lane tiles (u8 activations) */
static void dsi_tl_pack_any(const void *x, size_t ldx, const float *s, size_t lds, int T, int cols, void *P,
                            float *S) {
    dsi_tl_pack(x, ldx, s, lds, T, cols, P, S);
}

static void dsi_tl_gemm_any(const uint8_t *W, size_t rb, int rows, int cols, const void *P, const float *S, int T,
                            float *Y, size_t ldy, float *scratch) {
    dsi_gemm_q8u8_tl_vnni(W, rb, rows, cols, P, S, T, Y, ldy, scratch);
}

/* Over the AVX2 set: Q8_0 products take u8 activations and 15-token tiles. */
DSI_FUNC bool dsi_kernels_vnni512(dsi_kernels *k, uint32_t features) {
    if ((features & DSI_VNNI_NEED) != DSI_VNNI_NEED) return false;
    k->name = "avx512-vnni";
    k->act_to_u8 = dsi_act_to_u8;
    k->dot_q8u8xT = dsi_dot_q8u8xT_vnni;
    k->dot_q4u8 = dsi_dot_q4u8_vnni;
    k->lane_min = DSI_TL_MIN;
    k->lane_split = dsi_tl_split;
    k->lane_pack_bytes = dsi_tl_pack_bytes;
    k->lane_pack_floats = dsi_tl_pack_floats;
    k->lane_pack = dsi_tl_pack_any;
    k->lane_gemm = dsi_tl_gemm_any;
    return true;
}
#else
DSI_FUNC bool dsi_have_vnni512(void) { return false; }
DSI_FUNC bool dsi_kernels_vnni512(dsi_kernels *k, uint32_t features) {
    (void)k;
    (void)features;
    return false;
}
DSI_FUNC void dsi_dot_q8u8xT_vnni(const uint8_t *row, const uint8_t *u, size_t ldu, const float *s, size_t lds, int n,
                                  int T, float *out) {
    (void)row, (void)u, (void)ldu, (void)s, (void)lds, (void)n, (void)T, (void)out;
}
DSI_FUNC void dsi_gemm_q8u8_tl_vnni(const uint8_t *W, size_t rb, int rows, int cols, const uint8_t *P, const float *S,
                                    int T, float *Y, size_t ldy, float *scratch) {
    (void)W, (void)rb, (void)rows, (void)cols, (void)P, (void)S, (void)T, (void)Y, (void)ldy, (void)scratch;
}
DSI_FUNC float dsi_dot_q4u8_vnni(const uint8_t *row, const uint8_t *u, const float *s, int n) {
    (void)row, (void)u, (void)s, (void)n;
    return 0;
}
#endif
