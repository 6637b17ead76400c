/*
 * test_kernels.c — every ISA-specific kernel against its portable scalar
 * reference on random shapes, including ragged tails (lengths that are not a
 * multiple of the vector width) and Q8_0 rows of many blocks.
 */
#include "../deepseek_impl/internal.h"
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

int main(void) {
    if (!dsi_have_avx2()) {
        T_SKIP("kernels", "no AVX2/FMA/F16C on this CPU");
        return t_finish("test_kernels");
    }
    enum { MAXN = 4096 };
    static float a[MAXN], b[MAXN];
    static uint16_t h[MAXN];
    static uint8_t q[MAXN / 32 * 34];
    int bad32 = 0, bad16 = 0, bad8 = 0, cases = 0;
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
        /* F16 rows */
        dsi_convert_row_f16(a, h, (size_t)n);
        if (!close_enough(dsi_dot_f16_avx2((const uint8_t *)h, b, n), dsi_dot_f16_c((const uint8_t *)h, b, n), scale))
            bad16++;
        /* Q8_0 rows: whole blocks only */
        int n8 = n / 32 * 32;
        if (n8) {
            dsi_quantize_row_q8_0(a, q, (size_t)n8);
            if (!close_enough(dsi_dot_q8_avx2(q, b, n8), dsi_dot_q8_c(q, b, n8), scale)) bad8++;
        }
    }
    T_CHECK("kernels-1.1", bad32 == 0, "F32 dot differs in %d of %d cases", bad32, cases);
    T_CHECK("kernels-1.2", bad16 == 0, "F16 dot differs in %d of %d cases", bad16, cases);
    T_CHECK("kernels-1.3", bad8 == 0, "Q8_0 dot differs in %d of %d cases", bad8, cases);
    return t_finish("test_kernels");
}
