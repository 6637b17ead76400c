/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_kernels.c — every ISA-specific kernel against its portable scalar
 * reference on random shapes, including ragged tails (lengths that are not a
 * multiple of the vector width) and Q8_0 rows of many blocks; the pruned
 * Q8_0 rows (Q8_0_24, Q8_0_SP) against the Q8_0 kernels on their Q8_0 form.
 */
#include "../deepseek_impl/internal.h"
#include "../kernels/cpu/kernels.h"
#include "test.h"

#include <math.h>

static uint64_t rs = 0x2545f4914f6cdd1dull;
static float frand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static bool close_enough(float a, float b, float scale) { return fabsf(a - b) <= 1e-5f * scale + 1e-6f; }

/* The int8 x int8 path: the quantizer and the dot product against a double
 * reference built from the same quantized numbers (so it is exact up to
 * float rounding), the AVX2 quantizer bit for bit against the portable one,
 * and the total error against the unquantized F32 product within the bound
 * the two roundings allow. Runs on every CPU (the portable versions). */
static void test_q8q8(void) {
    enum { MAXN = 4096 };
    static float a[MAXN], x[MAXN], s1[MAXN / 32], s2[MAXN / 32];
    static int8_t q1[MAXN], q2[MAXN];
    static uint8_t w[MAXN / 32 * 34];
    bool avx = dsi_have_avx2(), vnni = dsi_have_vnni512();
    int bad_q = 0, bad_c = 0, bad_v = 0, bad_err = 0, bad_512 = 0, cases = 0;
    for (int trial = 0; trial < 300; trial++) {
        int nb = trial < 40 ? trial + 1 : 1 + (int)((frand() * 0.5f + 0.5f) * (MAXN / 32 - 1));
        if (trial % 50 == 0) nb = 2048 / 32;
        if (trial % 50 == 1) nb = 1408 / 32;
        int n = nb * 32;
        float mag = powf(10.0f, 3.0f * frand());
        for (int i = 0; i < n; i++) {
            a[i] = frand() * mag;
            x[i] = frand() * (trial % 7 == 0 ? 1000.0f : 1.0f);
        }
        if (trial % 11 == 0) for (int i = 0; i < 32; i++) x[i] = 0;   /* an all-zero block */
        if (trial % 13 == 0) x[n - 1] = 0.5f * x[n - 1] + 1e6f;       /* one outlier */
        cases++;
        dsi_quantize_row_q8_0(a, w, (size_t)n);
        dsi_quantize_act_q8_c(x, n, q1, s1);
        double ref = 0, exact = 0, bound = 0;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + (size_t)b * 34;
            double ws = dsi_f16_to_f32(dsi_rd16(blk)), acc = 0;
            for (int i = 0; i < 32; i++) {
                int8_t wq = (int8_t)blk[2 + i];
                acc += (double)wq * q1[b * 32 + i];
                exact += (double)wq * ws * x[b * 32 + i];
                /* |x - q s| <= s/2 per element; a block's contribution is off by at most this */
                bound += fabs((double)wq * ws) * s1[b] * 0.5;
                if (fabsf(x[b * 32 + i] - q1[b * 32 + i] * s1[b]) > 0.5f * s1[b] * (1 + 1e-5f) + 1e-30f) bad_q++;
            }
            ref += ws * s1[b] * acc;
        }
        double mass = 0;
        for (int b = 0; b < nb; b++) mass += fabs(dsi_f16_to_f32(dsi_rd16(w + (size_t)b * 34)) * s1[b] * 127.0 * 127.0 * 32);
        float c = dsi_dot_q8q8_c(w, q1, s1, n);
        if (fabs(c - ref) > 1e-5 * mass + 1e-6) bad_c++;
        if (fabs(ref - exact) > bound * (1 + 1e-6) + 1e-6 * mass) bad_err++;
        if (vnni) {
            static uint8_t u1[MAXN];
            dsi_act_to_u8(q1, u1, (size_t)n);
            float o1;
            dsi_dot_q8u8xT_vnni(w, u1, 0, s1, 0, n, 1, &o1);
            if (fabs(o1 - ref) > 1e-5 * mass + 1e-6) bad_512++;
            if (nb > 4) {
                /* T = 1..4 tokens: token j is the activations shifted by j blocks */
                for (int T = 1; T <= 4; T++) {
                    float o[4];
                    dsi_dot_q8u8xT_vnni(w, u1, 32, s1, 1, n - 96, T, o);
                    for (int j = 0; j < T; j++)
                        if (fabs(o[j] - dsi_dot_q8q8_c(w, q1 + 32 * j, s1 + j, n - 96)) > 1e-5 * mass + 1e-6) bad_512++;
                }
            }
        }
        if (avx) {
            dsi_quantize_act_q8_avx2(x, n, q2, s2);
            if (memcmp(q1, q2, (size_t)n) || memcmp(s1, s2, (size_t)nb * sizeof(float))) bad_v++;
            else if (fabs(dsi_dot_q8q8_avx2(w, q1, s1, n) - ref) > 1e-5 * mass + 1e-6) bad_v++;
            else {
                /* the four-token tile: token j is the activations shifted by j blocks */
                if (nb > 4) {
                    float o[4];
                    dsi_dot_q8q8x4_avx2(w, q1, 32, s1, 1, n - 96, o);
                    for (int j = 0; j < 4; j++)
                        if (fabs(o[j] - dsi_dot_q8q8_c(w, q1 + 32 * j, s1 + j, n - 96)) > 1e-5 * mass + 1e-6) bad_v++;
                }
            }
        }
    }
    T_CHECK("kernels-2.1", bad_q == 0, "activation quantizer: %d elements off by more than half a step", bad_q);
    T_CHECK("kernels-2.2", bad_c == 0, "portable int8 dot differs from the reference in %d of %d cases", bad_c, cases);
    T_CHECK("kernels-2.3", bad_err == 0, "int8 dot outside the rounding bound of the F32 product in %d of %d cases",
            bad_err, cases);
    if (avx)
        T_CHECK("kernels-2.4", bad_v == 0, "AVX2 quantizer or int8 dot differs from the portable one in %d of %d cases",
                bad_v, cases);
    else
        T_SKIP("kernels-2.4", "no AVX2/FMA/F16C on this CPU");
    if (vnni)
        T_CHECK("kernels-2.5", bad_512 == 0, "AVX-512 VNNI int8 dot differs from the portable one in %d of %d cases",
                bad_512, cases);
    else
        T_SKIP("kernels-2.5", "no AVX-512 VNNI on this CPU");
}


/* ==== Token-lane GEMMs (prefill) ========================================= */
enum { TL_MAXR = 37, TL_MAXNB = 70, TL_MAXT = 48, TL_PAD = 3 };

/* One random case for a token-lane test: rows x nb blocks of Q8_0 weights in
 * W (one row all +-127, the largest products), T tokens quantized into q and
 * sc with row strides *ld and *ld / 32 (wider than the row in every third
 * trial), zero blocks, outliers and tokens at |x| = 127; rows a multiple of
 * group in every ninth trial, and 64 or 16 blocks now and then. */
static void tl_case(int trial, int T, int group, uint8_t *W, int8_t *q, float *sc, int *rows, int *nb, int *ld) {
    static float a[TL_MAXNB * 32], x[TL_MAXNB * 32];
    *rows = 1 + (int)((frand() * 0.5f + 0.5f) * (TL_MAXR - 1));
    *nb = 1 + (int)((frand() * 0.5f + 0.5f) * (TL_MAXNB - 1));
    if (trial % 9 == 0) *rows = group * (1 + trial % 4);
    if (trial % 10 == 3) *nb = 64;
    if (trial % 10 == 4) *nb = 16;
    int n = *nb * 32;
    *ld = n + (trial % 3 == 0 ? TL_PAD * 32 : 0);
    size_t rb = (size_t)*nb * 34;
    float mag = powf(10.0f, 2.0f * frand());
    for (int r = 0; r < *rows; r++) {
        for (int i = 0; i < n; i++) a[i] = r == 1 ? (i % 2 ? -mag : mag) : frand() * mag * (1 + r % 3);
        dsi_quantize_row_q8_0(a, W + (size_t)r * rb, (size_t)n);
    }
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < n; i++) x[i] = frand() * (t % 4 == 3 ? 100.0f : 1.0f);
        if ((trial + t) % 7 == 0) for (int i = 0; i < 32; i++) x[i] = 0;
        if ((trial + t) % 11 == 0) x[n - 1] = 1e5f;
        if ((trial + t) % 5 == 0) for (int i = 0; i < n; i++) x[i] = i % 2 ? -1.0f : 1.0f;
        dsi_quantize_act_q8_c(x, n, q + (size_t)t * (size_t)*ld, sc + (size_t)t * (size_t)(*ld / 32));
    }
}

/* Values of Y (T x rows, row stride ldy) that differ from the portable int8
 * dot by more than rounding (relative to the block mass with weights up to
 * wmax), plus any write into the gap past rows. *worst gets the largest
 * relative error. */
static int tl_check(const uint8_t *W, int rows, int nb, const int8_t *q, const float *sc, int ld, int T,
                    const float *Y, int ldy, double wmax, double *worst) {
    int bad = 0, n = nb * 32, lds = ld / 32;
    size_t rb = (size_t)nb * 34;
    for (int t = 0; t < T; t++) {
        for (int r = 0; r < rows; r++) {
            const uint8_t *w = W + (size_t)r * rb;
            double ref = dsi_dot_q8q8_c(w, q + (size_t)t * ld, sc + (size_t)t * lds, n), mass = 0;
            for (int b = 0; b < nb; b++)
                mass += fabs(dsi_f16_to_f32(dsi_rd16(w + (size_t)b * 34)) * sc[(size_t)t * lds + b]) * 127.0 * wmax * 32;
            double err = fabs(Y[(size_t)t * ldy + r] - ref);
            if (err / (mass + 1e-30) > *worst) *worst = err / (mass + 1e-30);
            if (err > 1e-5 * mass + 1e-6) bad++;
        }
        for (int r = rows; r < ldy; r++)   /* the gap between rows of Y is not written */
            if (Y[(size_t)t * ldy + r] != -12345.0f) bad++;
    }
    return bad;
}

/* The VNNI token-lane GEMM against the portable int8 dot: 1-48 tokens (one
 * tile, several, a ragged last one), row counts that are not multiples of 8
 * (the single-row tail), block counts that are not multiples of 16 (a
 * partial scale gather). */
static void test_token_lane(void) {
    if (!dsi_have_vnni512()) {
        T_SKIP("kernels-3.1", "no AVX-512 VNNI on this CPU");
        return;
    }
    static float Y[TL_MAXT * (TL_MAXR + 5)], sc[TL_MAXT * (TL_MAXNB + TL_PAD)], S[4 * TL_MAXNB * 16],
        scratch[8 * TL_MAXNB];
    static uint8_t W[TL_MAXR * TL_MAXNB * 34], u[TL_MAXT * (TL_MAXNB + TL_PAD) * 32], P[4 * TL_MAXNB * 512];
    static int8_t q[TL_MAXT * (TL_MAXNB + TL_PAD) * 32];
    int bad = 0, cases = 0;
    double worst = 0;
    const int Ts[] = {1, 2, 3, 5, 7, 8, 11, 14, 15, 16, 17, 22, 29, 30, 31, 44, 45, 48};
    for (int trial = 0; trial < 90; trial++) {
        int T = Ts[trial % (int)(sizeof Ts / sizeof Ts[0])], rows, nb, ld;
        tl_case(trial, T, 8, W, q, sc, &rows, &nb, &ld);
        int n = nb * 32, ldy = rows + trial % 5;
        dsi_act_to_u8(q, u, (size_t)T * (size_t)ld);
        if (dsi_tl_pack_bytes(T, n) > sizeof P || dsi_tl_pack_floats(T, n) > sizeof S / sizeof S[0]) {
            bad++;
            continue;
        }
        dsi_tl_pack(u, (size_t)ld, sc, (size_t)(ld / 32), T, n, P, S);
        for (size_t i = 0; i < sizeof Y / sizeof Y[0]; i++) Y[i] = -12345.0f;
        dsi_gemm_q8u8_tl_vnni(W, (size_t)nb * 34, rows, n, P, S, T, Y, (size_t)ldy, scratch);
        cases++;
        bad += tl_check(W, rows, nb, q, sc, ld, T, Y, ldy, 127.0, &worst);
    }
    T_CHECK("kernels-3.1", bad == 0 && cases == 90,
            "token-lane GEMM differs from the portable int8 dot in %d values (%d cases; worst relative %.3g)", bad,
            cases, worst);
}

/* The AVX2 token-lane GEMM (8 signed tokens per tile) on the same kinds of
 * cases, row counts not multiples of 4. */
static void test_token_lane_avx2(void) {
    if (!dsi_have_avx2()) {
        T_SKIP("kernels-3.2", "no AVX2/FMA/F16C on this CPU");
        return;
    }
    static float Y[TL_MAXT * (TL_MAXR + 5)], sc[TL_MAXT * (TL_MAXNB + TL_PAD)], S[6 * TL_MAXNB * 8],
        scratch[4 * TL_MAXNB];
    static uint8_t W[TL_MAXR * TL_MAXNB * 34];
    static int8_t q[TL_MAXT * (TL_MAXNB + TL_PAD) * 32], P[6 * TL_MAXNB * 256];
    int bad = 0, cases = 0;
    double worst = 0;
    const int Ts[] = {1, 2, 5, 6, 7, 8, 9, 12, 15, 16, 17, 23, 24, 31, 40, 48};
    for (int trial = 0; trial < 80; trial++) {
        int T = Ts[trial % (int)(sizeof Ts / sizeof Ts[0])], rows, nb, ld;
        tl_case(trial, T, 4, W, q, sc, &rows, &nb, &ld);
        int n = nb * 32, ldy = rows + trial % 5;
        if (dsi_tl8_pack_bytes(T, n) > sizeof P || dsi_tl8_pack_floats(T, n) > sizeof S / sizeof S[0]) {
            bad++;
            continue;
        }
        dsi_tl8_pack(q, (size_t)ld, sc, (size_t)(ld / 32), T, n, P, S);
        for (size_t i = 0; i < sizeof Y / sizeof Y[0]; i++) Y[i] = -12345.0f;
        dsi_gemm_q8q8_tl8_avx2(W, (size_t)nb * 34, rows, n, P, S, T, Y, (size_t)ldy, scratch);
        cases++;
        bad += tl_check(W, rows, nb, q, sc, ld, T, Y, ldy, 128.0, &worst);
    }
    T_CHECK("kernels-3.2", bad == 0 && cases == 80,
            "AVX2 token-lane GEMM differs from the portable int8 dot in %d values (%d cases; worst relative %.3g)",
            bad, cases, worst);
}

/* ==== Q4_0 rows ============================================================
 * Every Q4_0 entry of each table the CPU allows against the portable one
 * (kernels/cpu/ops.c), and the portable int8 product against a double
 * reference from the same quantized numbers. */
static void test_q4(void) {
    enum { MAXN = 4096 };
    static float a[MAXN], x[MAXN], s1[MAXN / 32], y1[MAXN], y2[MAXN];
    static int8_t q1[MAXN];
    static uint8_t u1[MAXN], w[MAXN / 32 * 18], w8a[MAXN / 32 * 34], w8b[MAXN / 32 * 34];
    dsi_kernels kp, ka, kv;
    dsi_kernels_portable(&kp);
    ka = kp;
    kv = kp;
    uint32_t feat = dsi_cpu_features();
    bool avx = dsi_kernels_avx2(&ka, feat);
    kv = ka;
    bool vnni = avx && dsi_kernels_vnni512(&kv, feat);
    int bad_ref = 0, bad_a = 0, bad_v = 0, cases = 0;
    for (int trial = 0; trial < 300; trial++) {
        int nb = trial < 40 ? trial + 1 : 1 + (int)((frand() * 0.5f + 0.5f) * (MAXN / 32 - 1));
        if (trial % 50 == 0) nb = 2048 / 32;
        if (trial % 50 == 1) nb = 1408 / 32;
        int n = nb * 32;
        float mag = powf(10.0f, 3.0f * frand());
        for (int i = 0; i < n; i++) {
            a[i] = frand() * mag;
            x[i] = frand() * (trial % 7 == 0 ? 1000.0f : 1.0f);
        }
        if (trial % 11 == 0) for (int i = 0; i < 32; i++) a[i] = 0;
        if (trial % 13 == 0) x[n - 1] = 1e6f;
        cases++;
        dsi_quantize_row_q4_0(a, w, (size_t)n);
        dsi_quantize_act_q8_c(x, n, q1, s1);
        dsi_dequantize_row_q4_0(w, y1, (size_t)n);
        double ref = 0, mass = 0, fref = 0, fmass = 0;
        for (int b = 0; b < nb; b++) {
            double d = dsi_f16_to_f32(dsi_rd16(w + (size_t)b * 18)), acc = 0;
            for (int i = 0; i < 32; i++) {
                acc += (double)(y1[b * 32 + i] / (d != 0 ? d : 1)) * q1[b * 32 + i];
                fref += (double)y1[b * 32 + i] * x[b * 32 + i];
                fmass += fabs((double)y1[b * 32 + i] * x[b * 32 + i]);
            }
            ref += d * s1[b] * acc;
            mass += fabs(d * s1[b]) * 8.0 * 127.0 * 32;
        }
        float tol = (float)(1e-5 * mass + 1e-6), ftol = (float)(1e-5 * fmass + 1e-6);
        if (fabs(kp.dot_q4q8(w, q1, s1, n) - ref) > tol) bad_ref++;
        if (fabs(kp.dot[DS_DTYPE_Q4_0](w, x, n) - fref) > ftol) bad_ref++;
        if (avx) {
            if (fabs(ka.dot_q4q8(w, q1, s1, n) - ref) > tol) bad_a++;
            if (fabs(ka.dot[DS_DTYPE_Q4_0](w, x, n) - fref) > ftol) bad_a++;
            ka.dequant[DS_DTYPE_Q4_0](w, y2, n);
            if (memcmp(y1, y2, (size_t)n * sizeof(float))) bad_a++;
            float al = frand() * 3.0f;
            for (int i = 0; i < n; i++) y2[i] = x[i];
            ka.axpy[DS_DTYPE_Q4_0](w, al, y2, n);
            for (int i = 0; i < n; i++)
                if (fabsf(y2[i] - (x[i] + al * y1[i])) > 1e-5f * (fabsf(x[i]) + fabsf(al * y1[i])) + 1e-6f) {
                    bad_a++;
                    break;
                }
            kp.to_q8[DS_DTYPE_Q4_0](w, w8a, n);
            ka.to_q8[DS_DTYPE_Q4_0](w, w8b, n);
            if (memcmp(w8a, w8b, (size_t)nb * 34)) bad_a++;
        }
        if (vnni) {
            dsi_act_to_u8(q1, u1, (size_t)n);
            if (fabs(kv.dot_q4u8(w, u1, s1, n) - ref) > tol) bad_v++;
        }
    }
    T_CHECK("kernels-4.1", bad_ref == 0, "portable Q4_0 products differ from the double reference in %d of %d cases",
            bad_ref, cases);
    if (avx)
        T_CHECK("kernels-4.2", bad_a == 0, "AVX2 Q4_0 kernels differ from the portable ones in %d of %d cases", bad_a,
                cases);
    else
        T_SKIP("kernels-4.2", "no AVX2/FMA/F16C on this CPU");
    if (vnni)
        T_CHECK("kernels-4.3", bad_v == 0, "AVX-512 VNNI Q4_0 product differs from the portable one in %d of %d cases",
                bad_v, cases);
    else
        T_SKIP("kernels-4.3", "no AVX-512 VNNI on this CPU");
}

/* A row with about zero_pct % zeros (2:4 structured when structured). */
static void pruned_row(float *a, int n, int zero_pct, bool structured) {
    float mag = powf(10.0f, 3.0f * frand());
    for (int i = 0; i < n; i++) a[i] = frand() * mag;
    for (int i = 0; i < n; i++)
        if (structured ? (i % 4 == 1 || i % 4 == 2) && frand() < 0.95f : frand() * 50.0f + 50.0f < (float)zero_pct)
            a[i] = 0.0f;
}

/* A copy of n bytes at the very end of an allocation of its own, so that
 * a read past it is out of bounds (ASan, make SAN=1). */
static uint8_t *tight(const uint8_t *src, size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    if (p && n) memcpy(p, src, n);
    return p;
}

/* Kernel set k's products of a pruned row (dt, bytes r) against its Q8_0
 * form w8 through the same set's Q8_0 kernels: the same bits (the int32
 * sums are the same, the float steps the same). Returns the mismatches. */
static int pruned_vs_q8(const dsi_kernels *k, ds_dtype dt, const uint8_t *r, const uint8_t *w8, const float *x,
                        const int8_t *q, const float *s, int n, float *y1, float *y2) {
    int bad = 0;
    float a = k->dot[dt](r, x, n), b = k->dot[DS_DTYPE_Q8_0](w8, x, n);
    if (memcmp(&a, &b, 4)) bad++;
    a = dt == DS_DTYPE_Q8_0_24 ? k->dot_24q8(r, q, s, n) : k->dot_spq8(r, q, s, n);
    b = k->dot_q8q8(w8, q, s, n);
    if (memcmp(&a, &b, 4)) bad++;
    k->dequant[dt](r, y1, n);
    k->dequant[DS_DTYPE_Q8_0](w8, y2, n);
    if (memcmp(y1, y2, (size_t)n * 4)) bad++;
    for (int i = 0; i < n; i++) y1[i] = y2[i] = x[i];
    k->axpy[dt](r, 0.37f, y1, n);
    k->axpy[DS_DTYPE_Q8_0](w8, 0.37f, y2, n);
    if (memcmp(y1, y2, (size_t)n * 4)) bad++;
    uint8_t *t = malloc((size_t)(n / 32) * 34);
    k->to_q8[dt](r, t, n);
    if (memcmp(t, w8, (size_t)(n / 32) * 34)) bad++;
    free(t);
    return bad;
}

static void test_pruned(void) {
    enum { MAXN = 4096 };
    static float a[MAXN], x[MAXN], s1[MAXN / 32], y1[MAXN], y2[MAXN], yd[MAXN];
    static int8_t q1[MAXN];
    static uint8_t w8[MAXN / 32 * 34], enc[MAXN / 32 * 6 + 2 * MAXN];
    dsi_kernels kp, ka;
    dsi_kernels_portable(&kp);
    ka = kp;
    bool avx = dsi_kernels_avx2(&ka, dsi_cpu_features());
    int bad_p = 0, bad_a = 0, bad_pa = 0, bad_ref = 0, cases = 0;
    for (int trial = 0; trial < 400; trial++) {
        int nb = trial < 40 ? trial + 1 : 1 + (int)((frand() * 0.5f + 0.5f) * (MAXN / 32 - 1));
        if (trial % 50 == 0) nb = 2048 / 32;
        if (trial % 50 == 1) nb = 1408 / 32;
        int n = nb * 32;
        ds_dtype dt = trial & 1 ? DS_DTYPE_Q8_0_SP : DS_DTYPE_Q8_0_24;
        static const int pct[] = {0, 30, 50, 90, 100};
        pruned_row(a, n, pct[(trial / 2) % 5], dt == DS_DTYPE_Q8_0_24 && trial % 4 == 0);
        for (int i = 0; i < n; i++) x[i] = frand() * (trial % 7 == 0 ? 1000.0f : 1.0f);
        dsi_quantize_act_q8_c(x, n, q1, s1);
        size_t bytes;
        if (dt == DS_DTYPE_Q8_0_24) {
            dsi_quantize_row_q8_0_24(a, enc, (size_t)n);
            bytes = (size_t)nb * DSI_Q24_BLOCK_BYTES;
        } else {
            /* the tightest stride, the row then its tensor's guard */
            size_t st = (size_t)nb * DSI_SP_HEAD_BYTES + dsi_sp_row_count(a, (size_t)n);
            dsi_quantize_row_q8_0_sp(a, enc, (size_t)n, st);
            memset(enc + st, 0, (size_t)n);
            bytes = st + (size_t)n;
        }
        uint8_t *r = tight(enc, bytes);
        dsi_dtype_to_q8_0(dt, r, w8, (size_t)n);
        cases++;
        bad_p += pruned_vs_q8(&kp, dt, r, w8, x, q1, s1, n, y1, y2);
        /* the fused int8 product against a double reference of the decoded row */
        dsi_dtype_decode_row(dt, r, yd, (size_t)n);
        double ref = 0, mass = 0;
        for (int b = 0; b < nb; b++) {
            double d = dsi_f16_to_f32(dsi_rd16(w8 + (size_t)b * 34)), acc = 0;
            for (int i = 0; i < 32; i++) acc += (double)(int8_t)w8[(size_t)b * 34 + 2 + i] * q1[b * 32 + i];
            ref += d * s1[b] * acc;
            mass += fabs(d * s1[b]) * 127.0 * 127.0 * 32;
            for (int i = 0; i < 32; i++)
                if (yd[b * 32 + i] != (float)(int8_t)w8[(size_t)b * 34 + 2 + i] * (float)d) bad_ref++;
        }
        float got = dt == DS_DTYPE_Q8_0_24 ? kp.dot_24q8(r, q1, s1, n) : kp.dot_spq8(r, q1, s1, n);
        if (fabs(got - ref) > 1e-5 * mass + 1e-6) bad_ref++;
        if (avx) {
            bad_a += pruned_vs_q8(&ka, dt, r, w8, x, q1, s1, n, y1, y2);
            /* and against the portable set: within float rounding */
            float p1 = kp.dot[dt](r, x, n), p2 = ka.dot[dt](r, x, n);
            double fm = 0;
            for (int i = 0; i < n; i++) fm += fabs((double)yd[i] * x[i]);
            if (fabs(p1 - p2) > 1e-5 * fm + 1e-6) bad_pa++;
            float g1 = dt == DS_DTYPE_Q8_0_24 ? ka.dot_24q8(r, q1, s1, n) : ka.dot_spq8(r, q1, s1, n);
            if (fabs(g1 - got) > 1e-5 * mass + 1e-6) bad_pa++;
        }
        free(r);
    }
    T_CHECK("kernels-5.1", bad_p == 0, "portable pruned kernels differ from the portable Q8_0 ones on the Q8_0 form "
            "in %d checks over %d rows", bad_p, cases);
    T_CHECK("kernels-5.2", bad_ref == 0, "portable pruned rows differ from the double reference in %d checks", bad_ref);
    if (avx) {
        T_CHECK("kernels-5.3", bad_a == 0, "AVX2 pruned kernels differ from the AVX2 Q8_0 ones on the Q8_0 form in %d "
                "checks over %d rows", bad_a, cases);
        T_CHECK("kernels-5.4", bad_pa == 0, "AVX2 pruned products differ from the portable ones in %d checks", bad_pa);
    } else {
        T_SKIP("kernels-5.3", "no AVX2/FMA/F16C on this CPU");
        T_SKIP("kernels-5.4", "no AVX2/FMA/F16C on this CPU");
    }

    /* 5.5: malformed rows. Random 2:4 bytes (p0 == p1 included): every set
     * decodes them as the format says (its Q8_0 form by the portable
     * decoder). SP tensors whose masks claim more values than the stride
     * holds (all bits set, the smallest stride; random masks): the rows
     * decode to garbage but nothing is read outside the tensor (rows *
     * stride + the guard of cols bytes, allocated to the byte: ASan). */
    int bad_m = 0;
    for (int trial = 0; trial < 200; trial++) {
        int nb = 1 + trial % 37, n = nb * 32;
        for (int i = 0; i < n; i++) x[i] = frand();
        dsi_quantize_act_q8_c(x, n, q1, s1);
        for (int i = 0; i < nb * DSI_Q24_BLOCK_BYTES; i++) enc[i] = (uint8_t)(frand() * 127.0f + 128.0f);
        for (int b = 0; b < nb; b++) dsi_wr16(enc + b * DSI_Q24_BLOCK_BYTES, 0x2c00);   /* d = 1/16 */
        uint8_t *r = tight(enc, (size_t)nb * DSI_Q24_BLOCK_BYTES);
        dsi_q8_0_24_to_q8_0(r, w8, (size_t)n);
        bad_m += pruned_vs_q8(&kp, DS_DTYPE_Q8_0_24, r, w8, x, q1, s1, n, y1, y2);
        if (avx) bad_m += pruned_vs_q8(&ka, DS_DTYPE_Q8_0_24, r, w8, x, q1, s1, n, y1, y2);
        free(r);
        int rows = 1 + trial % 5;
        size_t stride = (size_t)nb * DSI_SP_HEAD_BYTES + (trial % 3 == 0 ? (size_t)(trial % 17) : 0);
        size_t total = (size_t)rows * stride + (size_t)n;
        uint8_t *t = malloc(total);
        for (size_t i = 0; i < total; i++) t[i] = (uint8_t)(frand() * 127.0f + 128.0f);
        for (int rr = 0; rr < rows; rr++)
            for (int b = 0; b < nb; b++) {
                uint8_t *row = t + (size_t)rr * stride;
                dsi_wr16(row + 2 * b, 0x2c00);
                dsi_wr32(row + 2 * (size_t)nb + 4 * (size_t)b, trial & 1 ? 0xffffffffu : (uint32_t)(frand() * 4e9f));
            }
        for (int rr = 0; rr < rows; rr++) {
            const uint8_t *row = t + (size_t)rr * stride;
            dsi_q8_0_sp_to_q8_0(row, w8, (size_t)n);
            bad_m += pruned_vs_q8(&kp, DS_DTYPE_Q8_0_SP, row, w8, x, q1, s1, n, y1, y2);
            if (avx) bad_m += pruned_vs_q8(&ka, DS_DTYPE_Q8_0_SP, row, w8, x, q1, s1, n, y1, y2);
        }
        free(t);
    }
    T_CHECK("kernels-5.5", bad_m == 0, "malformed pruned rows: %d checks differ from their Q8_0 form", bad_m);
}

/* ==== AArch64 (kernels/cpu/ops_neon.c) ====================================
 * Each NEON level the CPU has (NEON alone, + DotProd), forced by hiding the
 * upper features (dsi_cpu_features_mask) and taken through
 * dsi_kernels_select: every entry the set replaces against the portable
 * one on random lengths (ragged tails for the F32/F16 kernels, 1..128 and
 * random block counts for the blocked ones). The same bits where the set
 * promises them (quantizer, int8 products, Q8_0 dot/axpy/dequant, axpys,
 * F16 dequant), within float rounding for the F32/F16 dots; and the pruned
 * rows' portable kernels against the set's Q8_0 ones on their Q8_0 form. */
static int neon_level(const dsi_kernels *k, const dsi_kernels *kp, int *cases) {
    enum { MAXN = 4096 };
    static float a[MAXN], b[MAXN], y1[MAXN], y2[MAXN], s1[MAXN / 32], s2[MAXN / 32], yd[MAXN];
    static uint16_t h[MAXN];
    static int8_t q1[MAXN], q2[MAXN];
    static uint8_t w8[MAXN / 32 * 34], w4[MAXN / 32 * 18], enc[MAXN / 32 * 6 + 2 * MAXN];
    int bad = 0;
    for (int trial = 0; trial < 300; trial++) {
        int n = trial < 64 ? trial + 1 : 1 + (int)((frand() * 0.5f + 0.5f) * (MAXN - 1));
        int nb = trial < 128 ? trial + 1 : 1 + (int)((frand() * 0.5f + 0.5f) * (MAXN / 32 - 1));
        if (trial % 50 == 0) n = 2048, nb = 64;
        if (trial % 50 == 1) n = 1408, nb = 44;
        int n8 = nb * 32;
        float mag = powf(10.0f, 3.0f * frand()), scale = 0;
        for (int i = 0; i < MAXN; i++) {
            a[i] = frand() * mag;
            b[i] = frand() * (trial % 7 == 0 ? 1000.0f : 1.0f);
        }
        if (trial % 11 == 0) for (int i = 0; i < 32; i++) b[i] = 0;   /* an all-zero block */
        if (trial % 13 == 0) b[n8 - 1] = 1e6f;                        /* one outlier */
        if (trial % 17 == 0)   /* a block of ties: amax 127, so x / s = x, halves */
            for (int i = 0; i < 32; i++) b[32 + i] = i == 0 ? 127.0f : (float)(i - 16) + 0.5f;
        for (int i = 0; i < n; i++) scale += fabsf(a[i] * b[i]);
        (*cases)++;
        /* F32 */
        if (!close_enough(k->dot_f32(a, b, n), kp->dot_f32(a, b, n), scale)) bad++;
        const uint8_t *ar = (const uint8_t *)a;
        if (!close_enough(k->dot[DS_DTYPE_F32](ar, b, n), kp->dot[DS_DTYPE_F32](ar, b, n), scale)) bad++;
        memcpy(y1, b, (size_t)n * 4);
        memcpy(y2, b, (size_t)n * 4);
        k->axpy_f32(0.37f, a, y1, n);
        kp->axpy_f32(0.37f, a, y2, n);
        if (memcmp(y1, y2, (size_t)n * 4)) bad++;
        k->axpy[DS_DTYPE_F32]((const uint8_t *)a, -1.5f, y1, n);
        kp->axpy[DS_DTYPE_F32]((const uint8_t *)a, -1.5f, y2, n);
        if (memcmp(y1, y2, (size_t)n * 4)) bad++;
        if (k->dot_f32x4 && n >= 4) {
            float o[4];
            k->dot_f32x4(a, b, 1, n - 3, o);
            for (int j = 0; j < 4; j++) {
                float sc = 0;
                for (int i = 0; i < n - 3; i++) sc += fabsf(a[i] * b[i + j]);
                if (!close_enough(o[j], dsi_dot_f32_c(a, b + j, n - 3), sc)) bad++;
            }
        }
        /* F16 rows */
        dsi_convert_row_f16(a, h, (size_t)n);
        const uint8_t *hr = (const uint8_t *)h;
        k->dequant[DS_DTYPE_F16](hr, y1, n);
        kp->dequant[DS_DTYPE_F16](hr, y2, n);
        if (memcmp(y1, y2, (size_t)n * 4)) bad++;
        if (!close_enough(k->dot[DS_DTYPE_F16](hr, b, n), kp->dot[DS_DTYPE_F16](hr, b, n), scale)) bad++;
        memcpy(y1, b, (size_t)n * 4);
        memcpy(y2, b, (size_t)n * 4);
        k->axpy[DS_DTYPE_F16](hr, 0.71f, y1, n);
        kp->axpy[DS_DTYPE_F16](hr, 0.71f, y2, n);
        if (memcmp(y1, y2, (size_t)n * 4)) bad++;
        /* Q8_0 rows with F32 activations: the same bits */
        dsi_quantize_row_q8_0(a, w8, (size_t)n8);
        float r1 = k->dot[DS_DTYPE_Q8_0](w8, b, n8), r2 = kp->dot[DS_DTYPE_Q8_0](w8, b, n8);
        if (memcmp(&r1, &r2, 4)) bad++;
        k->dequant[DS_DTYPE_Q8_0](w8, y1, n8);
        kp->dequant[DS_DTYPE_Q8_0](w8, y2, n8);
        if (memcmp(y1, y2, (size_t)n8 * 4)) bad++;
        memcpy(y1, b, (size_t)n8 * 4);
        memcpy(y2, b, (size_t)n8 * 4);
        k->axpy[DS_DTYPE_Q8_0](w8, -0.29f, y1, n8);
        kp->axpy[DS_DTYPE_Q8_0](w8, -0.29f, y2, n8);
        if (memcmp(y1, y2, (size_t)n8 * 4)) bad++;
        /* the quantizer and the int8 products: the same bits */
        k->quantize_act(b, n8, q1, s1);
        kp->quantize_act(b, n8, q2, s2);
        if (memcmp(q1, q2, (size_t)n8) || memcmp(s1, s2, (size_t)nb * 4)) bad++;
        if (trial % 19 == 0) for (int i = 0; i < 34; i++) w8[i] = (uint8_t)(i < 2 ? w8[i] : 0x80);   /* w = -128 */
        r1 = k->dot_q8q8(w8, q2, s2, n8);
        r2 = kp->dot_q8q8(w8, q2, s2, n8);
        if (memcmp(&r1, &r2, 4)) bad++;
        dsi_quantize_row_q4_0(a, w4, (size_t)n8);
        r1 = k->dot_q4q8(w4, q2, s2, n8);
        r2 = kp->dot_q4q8(w4, q2, s2, n8);
        if (memcmp(&r1, &r2, 4)) bad++;
        if (k->dot_q8q8x4 && nb > 3) {
            /* token j: the activations shifted by j blocks */
            float o[4];
            k->dot_q8q8x4(w8, q2, 32, s2, 1, n8 - 96, o);
            for (int j = 0; j < 4; j++) {
                float r = dsi_dot_q8q8_c(w8, q2 + 32 * j, s2 + j, n8 - 96);
                if (memcmp(&o[j], &r, 4)) bad++;
            }
        }
        /* the pruned rows (portable kernels) against this set's Q8_0 ones */
        if (trial % 3 == 0) {
            ds_dtype dt = trial & 1 ? DS_DTYPE_Q8_0_SP : DS_DTYPE_Q8_0_24;
            pruned_row(a, n8, 50, false);
            size_t bytes;
            if (dt == DS_DTYPE_Q8_0_24) {
                dsi_quantize_row_q8_0_24(a, enc, (size_t)n8);
                bytes = (size_t)nb * DSI_Q24_BLOCK_BYTES;
            } else {
                size_t st = (size_t)nb * DSI_SP_HEAD_BYTES + dsi_sp_row_count(a, (size_t)n8);
                dsi_quantize_row_q8_0_sp(a, enc, (size_t)n8, st);
                memset(enc + st, 0, (size_t)n8);
                bytes = st + (size_t)n8;
            }
            uint8_t *r = tight(enc, bytes);
            dsi_dtype_to_q8_0(dt, r, w8, (size_t)n8);
            bad += pruned_vs_q8(k, dt, r, w8, b, q2, s2, n8, y1, yd);
            free(r);
        }
    }
    return bad;
}

/* The token-lane GEMM of a set (I8MM) on the cases of the x86 ones
 * (tl_case): 1..48 tokens through the set's own split, pack and GEMM, row
 * counts not multiples of 4 (the pair and single-row tails); every value the
 * same bits as the portable int8 dot, and nothing written between rows. */
static int neon_lanes(const dsi_kernels *k, int *cases) {
    static float Y[TL_MAXT * (TL_MAXR + 5)], sc[TL_MAXT * (TL_MAXNB + TL_PAD)], S[6 * TL_MAXNB * 16],
        scratch[8 * TL_MAXNB];
    static uint8_t W[TL_MAXR * TL_MAXNB * 34], P[6 * TL_MAXNB * 256];
    static int8_t q[TL_MAXT * (TL_MAXNB + TL_PAD) * 32];
    int bad = 0;
    const int Ts[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 23, 24, 31, 40, 47, 48};
    for (int trial = 0; trial < 90; trial++) {
        int T = Ts[trial % (int)(sizeof Ts / sizeof Ts[0])], rows, nb, ld;
        tl_case(trial, T, 4, W, q, sc, &rows, &nb, &ld);
        int n = nb * 32, ldy = rows + trial % 5, tl = k->lane_split(T);
        if (tl < 0 || tl > T || (T >= k->lane_min && tl == 0) || (tl && T < k->lane_min)) bad++;
        if (!tl) continue;
        if (k->lane_pack_bytes(tl, n) > sizeof P || k->lane_pack_floats(tl, n) > sizeof S / sizeof S[0]) {
            bad++;
            continue;
        }
        k->lane_pack(q, (size_t)ld, sc, (size_t)(ld / 32), tl, n, P, S);
        for (size_t i = 0; i < sizeof Y / sizeof Y[0]; i++) Y[i] = -12345.0f;
        k->lane_gemm(W, (size_t)nb * 34, rows, n, P, S, tl, Y, (size_t)ldy, scratch);
        (*cases)++;
        for (int t = 0; t < tl; t++) {
            for (int r = 0; r < rows; r++) {
                float ref = dsi_dot_q8q8_c(W + (size_t)r * nb * 34, q + (size_t)t * ld, sc + (size_t)t * (ld / 32), n);
                if (memcmp(&Y[(size_t)t * ldy + r], &ref, 4)) bad++;
            }
            for (int r = rows; r < ldy; r++)
                if (Y[(size_t)t * ldy + r] != -12345.0f) bad++;
        }
    }
    return bad;
}

static void test_neon(void) {
    static const struct {
        const char *id, *name, *skip;
        uint32_t need, hide;
    } lv[] = {
        {"kernels-6.1", "neon", "not AArch64 (no NEON)", DSI_CPU_NEON, DSI_CPU_DOTPROD | DSI_CPU_I8MM},
        {"kernels-6.2", "neon-dotprod", "no AArch64 DotProd on this CPU", DSI_CPU_NEON | DSI_CPU_DOTPROD,
         DSI_CPU_I8MM},
        {"kernels-6.3", "neon-i8mm", "no AArch64 DotProd + I8MM on this CPU",
         DSI_CPU_NEON | DSI_CPU_DOTPROD | DSI_CPU_I8MM, 0},
    };
    uint32_t all = dsi_cpu_features();
    dsi_kernels kp;
    dsi_kernels_portable(&kp);
    for (size_t l = 0; l < sizeof lv / sizeof lv[0]; l++) {
        if ((all & lv[l].need) != lv[l].need) {
            T_SKIP(lv[l].id, lv[l].skip);
            continue;
        }
        if ((dsi_kernels_neon_built() & lv[l].need) != lv[l].need) {
            T_SKIP(lv[l].id, "this build has no kernels for this level (compiler)");
            continue;
        }
        dsi_cpu_features_mask(lv[l].hide);
        dsi_kernels k;
        dsi_kernels_select(&k, dsi_cpu_features());
        dsi_cpu_features_mask(0);
        int cases = 0, bad = strcmp(k.name, lv[l].name) ? 1000000 : neon_level(&k, &kp, &cases);
        if (!bad && k.lane_split) bad += neon_lanes(&k, &cases);
        T_CHECK(lv[l].id, bad == 0, "%s set (selected: %s) differs from the portable one in %d checks over %d cases",
                lv[l].name, k.name, bad, cases);
    }
}

int main(void) {
    test_q8q8();
    test_q4();
    test_pruned();
    test_token_lane();
    test_token_lane_avx2();
    test_neon();   /* last: the random stream of the tests above is the same on every CPU */
    if (!dsi_have_avx2()) {
        T_SKIP("kernels", "no AVX2/FMA/F16C on this CPU");
        return t_finish("test_kernels");
    }
    enum { MAXN = 4096 };
    static float a[MAXN], b[MAXN];
    static uint16_t h[MAXN];
    static uint8_t q[MAXN / 32 * 34];
    int bad32 = 0, bad16 = 0, bad8 = 0, bad_ax = 0, cases = 0;
    static float y1[MAXN], y2[MAXN], deq[MAXN];
    for (int trial = 0; trial < 400; trial++) {
        int n = trial < 64 ? trial + 1 : 1 + (int)((frand() * 0.5f + 0.5f) * (MAXN - 1));
        if (trial % 50 == 0) n = 2048;
        if (trial % 50 == 1) n = 1408;
        float mag = powf(10.0f, 3.0f * frand());
        float scale = 0;
        for (int i = 0; i < n; i++) {
            a[i] = frand() * mag;
            b[i] = frand();
            scale += fabsf(a[i] * b[i]);
        }
        cases++;
        /* F32 */
        if (!close_enough(dsi_dot_f32_avx2(a, b, n), dsi_dot_f32_c(a, b, n), scale)) bad32++;
        if (n >= 4) {
            /* four tokens: b shifted by 0..3 elements, n - 3 long */
            float o[4];
            dsi_dot_f32x4_avx2(a, b, 1, n - 3, o);
            for (int j = 0; j < 4; j++) {
                float sc = 0;
                for (int i = 0; i < n - 3; i++) sc += fabsf(a[i] * b[i + j]);
                if (!close_enough(o[j], dsi_dot_f32_c(a, b + j, n - 3), sc)) bad32++;
            }
            /* four rows (a shifted by 0..3) times two tokens (b shifted by 0
             * and 1), n - 4 long: the same bits as the four-token kernel */
            float o8[8], o4[4];
            dsi_dot_f32_4x2_avx2(a, 1, b, 1, n - 4, o8);
            for (int i = 0; i < 4; i++) {
                dsi_dot_f32x4_avx2(a + i, b, 1, n - 4, o4);
                if (memcmp(&o8[2 * i], &o4[0], sizeof(float)) || memcmp(&o8[2 * i + 1], &o4[1], sizeof(float))) bad32++;
            }
        }
        /* F16 rows */
        dsi_convert_row_f16(a, h, (size_t)n);
        dsi_dequantize_row_f16(h, y1, (size_t)n);
        dsi_f16_to_f32_row_avx2((const uint8_t *)h, y2, n);
        if (memcmp(y1, y2, (size_t)n * sizeof(float))) bad16++;
        if (!close_enough(dsi_dot_f16_avx2((const uint8_t *)h, b, n), dsi_dot_f16_c((const uint8_t *)h, b, n), scale))
            bad16++;
        /* Q8_0 rows: whole blocks only */
        int n8 = n / 32 * 32;
        if (n8) {
            dsi_quantize_row_q8_0(a, q, (size_t)n8);
            if (!close_enough(dsi_dot_q8_avx2(q, b, n8), dsi_dot_q8_c(q, b, n8), scale)) bad8++;
            /* y += a * row, against the dequantized row */
            float al = frand() * 3.0f;
            dsi_dequantize_row_q8_0(q, deq, (size_t)n8);
            for (int i = 0; i < n8; i++) y1[i] = y2[i] = b[i];
            dsi_axpy_q8_avx2(q, al, y1, n8);
            for (int i = 0; i < n8; i++) {
                y2[i] += al * deq[i];
                if (fabsf(y1[i] - y2[i]) > 1e-5f * (fabsf(al * deq[i]) + 1.0f)) { bad_ax++; break; }
            }
        }
        {
            float al = frand() * 3.0f;
            dsi_dequantize_row_f16(h, deq, (size_t)n);
            for (int i = 0; i < n; i++) y1[i] = y2[i] = b[i];
            dsi_axpy_f16_avx2((const uint8_t *)h, al, y1, n);
            for (int i = 0; i < n; i++) {
                y2[i] += al * deq[i];
                if (fabsf(y1[i] - y2[i]) > 1e-5f * (fabsf(al * deq[i]) + 1.0f)) { bad_ax++; break; }
            }
        }
    }
    T_CHECK("kernels-1.4", bad_ax == 0, "F16/Q8_0 axpy differs from the dequantized reference in %d cases", bad_ax);
    T_CHECK("kernels-1.1", bad32 == 0, "F32 dot differs in %d of %d cases", bad32, cases);
    T_CHECK("kernels-1.2", bad16 == 0, "F16 dot differs in %d of %d cases", bad16, cases);
    T_CHECK("kernels-1.3", bad8 == 0, "Q8_0 dot differs in %d of %d cases", bad8, cases);
    return t_finish("test_kernels");
}
