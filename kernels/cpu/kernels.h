/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * kernels.h — the CPU kernels (kernels/cpu/): portable versions (ops.c), the
 * AVX2 + FMA + F16C ones (ops_avx2.c), the AVX-512 VNNI ones (ops_avx512.c),
 * the AArch64 NEON / DotProd ones (ops_neon.c),
 * and the table the CPU device calls them through (dsi_kernels, filled once
 * per context by dsi_kernels_select from the CPU's features: no ISA test on
 * the hot path). Tile constants of the token-lane GEMM live here, beside
 * the kernels that use them. Not part of the API.
 */
#ifndef DS_KERNELS_CPU_H
#define DS_KERNELS_CPU_H

#include "../../deepseek_impl/format.h"

/* ==== The table ============================================================ */
/* What the CPU device needs of its kernels. Entries marked "or NULL" are
 * absent from sets that have nothing faster than the loop that replaces
 * them. */
typedef struct dsi_kernels {
    const char *name;              /* "avx512-vnni", "avx2", "neon-i8mm", "neon-dotprod", "neon", "portable" */
    /* one row of a weight format (indexed by ds_dtype) with F32 activations */
    float (*dot[DSI_N_DTYPES])(const uint8_t *row, const float *x, int n);
    void (*dequant[DSI_N_DTYPES])(const uint8_t *row, float *y, int n);
    void (*axpy[DSI_N_DTYPES])(const uint8_t *row, float a, float *y, int n);   /* y += a row */
    /* F32 vectors */
    float (*dot_f32)(const float *a, const float *b, int n);
    void (*axpy_f32)(float a, const float *x, float *y, int n);
    /* a row against four tokens (x rows at stride ldx), or NULL */
    void (*dot_f32x4)(const float *row, const float *x, size_t ldx, int n, float out[4]);
    /* four rows (stride ldr) against two tokens: out[2 * row + token], or NULL */
    void (*dot_f32_4x2)(const float *rows, size_t ldr, const float *x, size_t ldx, int n, float out[8]);
    /* int8 activations for Q8_0 weights */
    void (*quantize_act)(const float *x, int n, int8_t *q, float *s);
    float (*dot_q8q8)(const uint8_t *row, const int8_t *q, const float *s, int n);
    /* a row against four tokens' activations, or NULL */
    void (*dot_q8q8x4)(const uint8_t *row, const int8_t *q, size_t ldq, const float *s, size_t lds, int n,
                       float out[4]);
    /* sets whose products take activations offset to unsigned (VNNI):
     * act_to_u8 turns quantized activations into them, and dot_q8u8xT is
     * the row product for 1..4 tokens; both NULL elsewhere */
    void (*act_to_u8)(const int8_t *q, uint8_t *u, size_t n);
    void (*dot_q8u8xT)(const uint8_t *row, const uint8_t *u, size_t ldu, const float *s, size_t lds, int n, int T,
                       float *out);
    /* Q4_0 weights with the same int8 activations, one token: dot_q4q8
     * takes them as int8, dot_q4u8 (or NULL) offset to unsigned as
     * act_to_u8 makes them. A batch instead rewrites its rows as Q8_0
     * blocks (to_q8, exact) a few at a time and takes the Q8_0 products
     * above, whose cost is per token while this is per row. */
    float (*dot_q4q8)(const uint8_t *row, const int8_t *q, const float *s, int n);
    float (*dot_q4u8)(const uint8_t *row, const uint8_t *u, const float *s, int n);
    /* The pruned Q8_0 rows (Q8_0_24, Q8_0_SP; a whole row) with int8
     * activations, one token, fused (no copy of the row): the same int32
     * sums and float steps as dot_q8q8 on the row's Q8_0 form, so the
     * same bits. No u8 forms: sets with act_to_u8 take them with int8
     * activations (dsi_quantize_rows). */
    float (*dot_24q8)(const uint8_t *row, const int8_t *q, const float *s, int n);
    float (*dot_spq8)(const uint8_t *row, const int8_t *q, const float *s, int n);
    /* A whole row of a blocked format (Q4_0, Q8_0_24, Q8_0_SP) as the Q8_0
     * blocks of the same values (exact); NULL for the others (Q8_0 rows
     * are already that). */
    void (*to_q8[DSI_N_DTYPES])(const uint8_t *row, uint8_t *out, int n);
    /* token-lane GEMM for batches (lane_split NULL: none): a batch of T >=
     * lane_min tokens gives lane_split(T) of them to tiles packed by
     * lane_pack (activations as the products take them: int8, or u8 with
     * act_to_u8) into lane_pack_bytes / lane_pack_floats of scratch;
     * lane_gemm then writes Y[t * ldy + r] for rows [0, rows) of W (row
     * stride rb); scratch holds 8 * cols / 32 floats */
    int lane_min;
    int (*lane_split)(int T);
    size_t (*lane_pack_bytes)(int T, int cols);
    size_t (*lane_pack_floats)(int T, int cols);
    void (*lane_pack)(const void *x, size_t ldx, const float *s, size_t lds, int T, int cols, void *P, float *S);
    void (*lane_gemm)(const uint8_t *W, size_t rb, int rows, int cols, const void *P, const float *S, int T, float *Y,
                      size_t ldy, float *scratch);
} dsi_kernels;

/* Fills k with the fastest set the features allow (dsi_cpu_features()
 * bits): the portable set, over which ops_avx2.c and then ops_avx512.c lay
 * their kernels when the CPU has them. */
DSI_FUNC void dsi_kernels_select(dsi_kernels *k, uint32_t features);
/* Each file's part of the table: the portable set fills every entry; the
 * others replace what they do faster and return false (leaving k as it
 * was) when the features lack what they need. */
DSI_FUNC void dsi_kernels_portable(dsi_kernels *k);
DSI_FUNC bool dsi_kernels_avx2(dsi_kernels *k, uint32_t features);
DSI_FUNC bool dsi_kernels_vnni512(dsi_kernels *k, uint32_t features);
/* AArch64 (kernels/cpu/ops_neon.c): "neon" with DSI_CPU_NEON, "neon-dotprod"
 * with DSI_CPU_DOTPROD too, "neon-i8mm" (the token-lane GEMM by smmla) with
 * DSI_CPU_I8MM as well; false elsewhere. */
DSI_FUNC bool dsi_kernels_neon(dsi_kernels *k, uint32_t features);
/* The DSI_CPU_ bits of the NEON levels this build compiled (0 off AArch64;
 * without GCC, DotProd and I8MM only where the build targets them). */
DSI_FUNC uint32_t dsi_kernels_neon_built(void);

/* ==== Kernels =============================================================== */
DSI_FUNC void dsi_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
DSI_FUNC void dsi_softmax(float *x, int n);
DSI_FUNC void dsi_axpy_f32_c(float a, const float *x, float *y, int n);   /* y += a x */
/* Activations quantized on the fly for Q8_0 weights: n (a multiple of 32)
 * floats into int8 q and one scale per 32 (amax / 127, nearest-even), and
 * the dot product of a Q8_0 row with them (exact int32 sums per block).
 * Portable versions (the reference for the ISA-specific ones): */
DSI_FUNC void dsi_quantize_act_q8_c(const float *x, int n, int8_t *q, float *s);
DSI_FUNC float dsi_dot_q8q8_c(const uint8_t *row, const int8_t *q, const float *s, int n);
/* Portable versions (the reference for the ISA-specific ones). */
DSI_FUNC float dsi_dot_f32_c(const float *a, const float *b, int n);
DSI_FUNC float dsi_dot_f16_c(const uint8_t *row, const float *x, int n);
DSI_FUNC float dsi_dot_q8_c(const uint8_t *row, const float *x, int n);
DSI_FUNC float dsi_dot_q4_c(const uint8_t *row, const float *x, int n);
DSI_FUNC float dsi_dot_q4q8_c(const uint8_t *row, const int8_t *q, const float *s, int n);
DSI_FUNC float dsi_dot_24q8_c(const uint8_t *row, const int8_t *q, const float *s, int n);
DSI_FUNC float dsi_dot_spq8_c(const uint8_t *row, const int8_t *q, const float *s, int n);
/* AVX2 + FMA + F16C (kernels/cpu/ops_avx2.c); only call when dsi_have_avx2(). */
DSI_FUNC bool dsi_have_avx2(void);
DSI_FUNC float dsi_dot_f32_avx2(const float *a, const float *b, int n);
DSI_FUNC void dsi_axpy_f32_avx2(float a, const float *x, float *y, int n);
DSI_FUNC float dsi_dot_f16_avx2(const uint8_t *row, const float *x, int n);
DSI_FUNC float dsi_dot_q8_avx2(const uint8_t *row, const float *x, int n);
DSI_FUNC void dsi_axpy_q8_avx2(const uint8_t *row, float a, float *y, int n);
DSI_FUNC void dsi_f16_to_f32_row_avx2(const uint8_t *row, float *y, int n);
DSI_FUNC void dsi_dot_f32x4_avx2(const float *row, const float *x, size_t ldx, int n, float out[4]);
DSI_FUNC void dsi_dot_f32_4x2_avx2(const float *rows, size_t ldr, const float *x, size_t ldx, int n,
                                  float out[8]);
DSI_FUNC void dsi_axpy_f16_avx2(const uint8_t *row, float a, float *y, int n);
DSI_FUNC void dsi_quantize_act_q8_avx2(const float *x, int n, int8_t *q, float *s);
DSI_FUNC float dsi_dot_q8q8_avx2(const uint8_t *row, const int8_t *q, const float *s, int n);
/* AVX-512 F/BW/VL + VNNI (kernels/cpu/ops_avx512.c); only call when dsi_have_vnni512(). */
DSI_FUNC bool dsi_have_vnni512(void);
/* Q8_0 row times T (1..4) tokens whose activations are stored offset to
 * unsigned (u = q + 128, dsi_act_to_u8); out[j] for token j. */
DSI_FUNC void dsi_dot_q8u8xT_vnni(const uint8_t *row, const uint8_t *u, size_t ldu, const float *s, size_t lds, int n,
                                  int T, float *out);
DSI_FUNC void dsi_act_to_u8(const int8_t *q, uint8_t *u, size_t n);
/* A Q4_0 row times one token's offset activations (as above). */
DSI_FUNC float dsi_dot_q4u8_vnni(const uint8_t *row, const uint8_t *u, const float *s, int n);
/* Token-lane GEMM for batches (kernels/cpu/ops_avx512.c): tokens go in vector
 * lanes, up to DSI_TL_TOKENS per tile plus a bias lane; T tokens make
 * dsi_tl_tiles(T) tiles of as even a size as they can (dsi_lane_tile).
 * dsi_tl_split says how many of T tokens to give it: none below DSI_TL_MIN
 * (with weights coming from memory, the tile wins from 6 tokens), all when
 * the last tile would hold at least DSI_TL_REM, otherwise the whole tiles of
 * 15, leaving a remainder of 1-6 to dsi_dot_q8u8xT_vnni (a second tile over
 * rows already in cache costs about as much as 7 tokens there).
 * dsi_tl_pack (portable) lays out T tokens of offset activations u (row
 * stride ldu) and their scales s (row stride lds) into P (dsi_tl_pack_bytes)
 * and S (dsi_tl_pack_floats). dsi_gemm_q8u8_tl_vnni then computes
 * Y[t * ldy + r] for rows [0, rows) of the Q8_0 matrix W (row stride rb);
 * scratch holds 8 * cols / 32 floats. */
#define DSI_TL_TOKENS 15
#define DSI_TL_MIN 6
#define DSI_TL_REM 7
/* T tokens in tiles of at most per, as even as they can be: tile i holds
 * tokens [*t0, *t0 + *n). */
DSI_INLINE int dsi_lane_tiles(int T, int per) { return (T + per - 1) / per; }
DSI_INLINE void dsi_lane_tile(int T, int per, int tile, int *t0, int *n) {
    int k = dsi_lane_tiles(T, per);
    *t0 = (int)((long)T * tile / k);
    *n = (int)((long)T * (tile + 1) / k) - *t0;
}
/* A kernel's RR x lanes block of results (out[i * lanes + t]) into Y rows
 * t0..t0+n-1, columns r..r+RR-1. */
DSI_INLINE void dsi_lane_store(float *Y, size_t ldy, int t0, int n, int r, int RR, const float *out, int lanes) {
    for (int t = 0; t < n; t++)
        for (int i = 0; i < RR; i++) Y[(size_t)(t0 + t) * ldy + (size_t)(r + i)] = out[i * lanes + t];
}
DSI_INLINE int dsi_tl_tiles(int T) { return dsi_lane_tiles(T, DSI_TL_TOKENS); }
DSI_INLINE int dsi_tl_split(int T) {
    if (T < DSI_TL_MIN) return 0;
    int r = T % DSI_TL_TOKENS;
    return T < DSI_TL_TOKENS || r == 0 || r >= DSI_TL_REM ? T : T - r;
}
/* The AVX2 form (kernels/cpu/ops_avx2.c), for CPUs without VNNI: 8 signed
 * tokens per tile, no bias lane. dsi_tl8_pack lays out int8 activations q
 * (row stride ldq) and scales s into P (dsi_tl8_pack_bytes) and S
 * (dsi_tl8_pack_floats); dsi_gemm_q8q8_tl8_avx2 is dsi_gemm_q8u8_tl_vnni's
 * counterpart (scratch: 4 * cols / 32 floats). dsi_tl8_split: all T from
 * DSI_TL8_MIN tokens, else none. */
#define DSI_TL8_TOKENS 8
#define DSI_TL8_MIN 6
DSI_INLINE int dsi_tl8_tiles(int T) { return dsi_lane_tiles(T, DSI_TL8_TOKENS); }
DSI_INLINE int dsi_tl8_split(int T) { return T >= DSI_TL8_MIN ? T : 0; }
DSI_INLINE size_t dsi_tl8_pack_bytes(int T, int cols) { return (size_t)dsi_tl8_tiles(T) * (size_t)(cols / 32) * 256; }
DSI_INLINE size_t dsi_tl8_pack_floats(int T, int cols) { return (size_t)dsi_tl8_tiles(T) * (size_t)(cols / 32) * 8; }
DSI_FUNC void dsi_tl8_pack(const int8_t *q, size_t ldq, const float *s, size_t lds, int T, int cols, int8_t *P,
                           float *S);
DSI_FUNC void dsi_gemm_q8q8_tl8_avx2(const uint8_t *W, size_t rb, int rows, int cols, const int8_t *P, const float *S,
                                     int T, float *Y, size_t ldy, float *scratch);
DSI_INLINE size_t dsi_tl_pack_bytes(int T, int cols) { return (size_t)dsi_tl_tiles(T) * (size_t)(cols / 32) * 512; }
DSI_INLINE size_t dsi_tl_pack_floats(int T, int cols) { return (size_t)dsi_tl_tiles(T) * (size_t)(cols / 32) * 16; }
DSI_FUNC void dsi_tl_pack(const uint8_t *u, size_t ldu, const float *s, size_t lds, int T, int cols, uint8_t *P,
                          float *S);
DSI_FUNC void dsi_gemm_q8u8_tl_vnni(const uint8_t *W, size_t rb, int rows, int cols, const uint8_t *P, const float *S,
                                    int T, float *Y, size_t ldy, float *scratch);
DSI_FUNC void dsi_dot_q8q8x4_avx2(const uint8_t *row, const int8_t *q, size_t ldq, const float *s, size_t lds, int n,
                                  float out[4]);


#endif /* DS_KERNELS_CPU_H */
