/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * quant.c — number formats: IEEE half, bfloat16, FP8 e4m3 (decode only), and
 * the Q8_0 and Q4_0 block formats (32 values with one F16 scale, laid out as
 * llama.cpp's Q8_0 and Q4_0, so the same quantized numbers can be compared
 * across runtimes), and the two pruned forms of Q8_0 (2:4 packed, masked
 * sparse) that store only a row's nonzero values.
 */
#include "format.h"

#include <math.h>

/* ==== Half precision ===================================================== */
static inline uint32_t dsi_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float dsi_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

DSI_FUNC float dsi_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return dsi_bits_f32(sign | 0x7f800000u | (man << 13));  /* inf / NaN */
    return dsi_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

DSI_FUNC uint16_t dsi_f32_to_f16(float f) {
    uint32_t x = dsi_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or NaN (keep NaN quiet) */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  /* rounds to >= 65520: overflow to inf */
    if (ax < 0x38800000u) {
        /* result is subnormal (or zero): scale into units of 2^-24 and round to even */
        float v = dsi_bits_f32(ax) * 16777216.0f;   /* exact: power-of-two scale */
        uint32_t r = (uint32_t)v;
        float frac = v - (float)r;
        if (frac > 0.5f || (frac == 0.5f && (r & 1))) r++;
        return (uint16_t)(sign | r);                  /* r == 0x400 becomes the smallest normal */
    }
    /* normal: drop 13 mantissa bits with round-to-nearest-even */
    uint32_t e = ((ax >> 23) - 112) << 10;
    uint32_t m = (ax >> 13) & 0x3ff;
    uint32_t rest = ax & 0x1fff;
    uint32_t h = e | m;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;  /* carry may bump the exponent: correct */
    return (uint16_t)(sign | h);
}

DSI_FUNC float dsi_bf16_to_f32(uint16_t h) { return dsi_bits_f32((uint32_t)h << 16); }

DSI_FUNC float dsi_fp8_e4m3_to_f32(uint8_t v) {
    /* OCP FP8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities;
     * S.1111.111 is NaN. */
    uint32_t sign = v & 0x80;
    uint32_t exp = (v >> 3) & 0xf;
    uint32_t man = v & 7;
    float r;
    if (exp == 15 && man == 7) return NAN;
    if (exp == 0) r = (float)man * (1.0f / 512.0f);         /* subnormal: man * 2^-9 */
    else r = ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    return sign ? -r : r;
}

/* ==== Row formats ======================================================== */
/* The formats' names (public; here, beside the formats, so every layer may
 * name one). */
DS_API const char *ds_dtype_name(ds_dtype t) {
    switch (t) {
    case DS_DTYPE_F32: return "F32";
    case DS_DTYPE_F16: return "F16";
    case DS_DTYPE_Q8_0: return "Q8_0";
    case DS_DTYPE_Q4_0: return "Q4_0";
    case DS_DTYPE_Q8_0_24: return "Q8_0_24";
    case DS_DTYPE_Q8_0_SP: return "Q8_0_SP";
    }
    return "unknown";
}

DSI_FUNC bool dsi_dtype_row_bytes(ds_dtype t, uint64_t cols, uint64_t *out) {
    switch (t) {
    case DS_DTYPE_F32: return dsi_mul_u64(cols, 4, out);
    case DS_DTYPE_F16: return dsi_mul_u64(cols, 2, out);
    case DS_DTYPE_Q8_0:
        if (cols % DSI_Q8_BLOCK) return false;
        return dsi_mul_u64(cols / DSI_Q8_BLOCK, DSI_Q8_BLOCK_BYTES, out);
    case DS_DTYPE_Q4_0:
        if (cols % DSI_Q8_BLOCK) return false;
        return dsi_mul_u64(cols / DSI_Q8_BLOCK, DSI_Q4_BLOCK_BYTES, out);
    case DS_DTYPE_Q8_0_24:
        if (cols % DSI_Q8_BLOCK) return false;
        return dsi_mul_u64(cols / DSI_Q8_BLOCK, DSI_Q24_BLOCK_BYTES, out);
    case DS_DTYPE_Q8_0_SP: return false;   /* the stride is the tensor's: dsi_tensor_row_bytes */
    }
    return false;
}

DSI_FUNC bool dsi_dtype_blocked(ds_dtype d) {
    return d == DS_DTYPE_Q8_0 || d == DS_DTYPE_Q4_0 || d == DS_DTYPE_Q8_0_24 || d == DS_DTYPE_Q8_0_SP;
}

DSI_FUNC bool dsi_tensor_row_bytes(ds_dtype t, uint64_t rows, uint64_t cols, uint64_t nbytes, uint64_t *row_bytes) {
    uint64_t rb, total;
    if (rows == 0) return false;
    if (t != DS_DTYPE_Q8_0_SP) {
        if (!dsi_dtype_row_bytes(t, cols, &rb) || !dsi_mul_u64(rb, rows, &total) || total != nbytes) return false;
        *row_bytes = rb;
        return true;
    }
    /* rows * stride, then a guard of cols zero bytes */
    if (cols % DSI_Q8_BLOCK || nbytes < cols || (nbytes - cols) % rows) return false;
    uint64_t stride = (nbytes - cols) / rows, head = cols / DSI_Q8_BLOCK * DSI_SP_HEAD_BYTES;
    if (stride < head || stride - head > cols) return false;
    *row_bytes = stride;
    return true;
}

DSI_FUNC void dsi_quantize_row_q8_0(const float *x, uint8_t *out, size_t n) {
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const float *xb = x + b * DSI_Q8_BLOCK;
        uint8_t *ob = out + b * DSI_Q8_BLOCK_BYTES;
        float amax = 0.0f;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) {
            float a = fabsf(xb[i]);
            if (a > amax) amax = a;
        }
        /* Round the scale UP to the next F16 so |x/scale| <= 127 and the
         * error bound scale/2 holds for the scale actually stored. */
        float want = amax / 127.0f;
        uint16_t s16 = dsi_f32_to_f16(want);
        if ((s16 & 0x7c00) == 0x7c00) s16 = 0x7bff;          /* clamp to the largest finite half */
        else if (dsi_f16_to_f32(s16) < want) s16++;
        float scale = dsi_f16_to_f32(s16);
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        dsi_wr16(ob, s16);
        for (int i = 0; i < DSI_Q8_BLOCK; i++) {
            /* |v| <= 127 by construction of the scale (clamped for safety);
             * adding 1.5 * 2^23 rounds to nearest even, like nearbyintf in
             * the default rounding mode, without a libm call per value. */
            float v = xb[i] * inv;
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            ob[2 + i] = (uint8_t)(int8_t)((int32_t)(v + 12582912.0f) - 12582912);
        }
    }
}

DSI_FUNC void dsi_dequantize_row_q8_0(const uint8_t *in, float *y, size_t n) {
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *ib = in + b * DSI_Q8_BLOCK_BYTES;
        float scale = dsi_f16_to_f32(dsi_rd16(ib));
        for (int i = 0; i < DSI_Q8_BLOCK; i++) y[b * DSI_Q8_BLOCK + i] = (float)(int8_t)ib[2 + i] * scale;
    }
}

DSI_FUNC void dsi_quantize_row_q4_0(const float *x, uint8_t *out, size_t n) {
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const float *xb = x + b * DSI_Q8_BLOCK;
        uint8_t *ob = out + b * DSI_Q4_BLOCK_BYTES;
        float amax = 0.0f, m = 0.0f;
        for (int i = 0; i < DSI_Q8_BLOCK; i++) {
            float a = fabsf(xb[i]);
            if (a > amax) {
                amax = a;
                m = xb[i];
            }
        }
        /* d = m / -8, its magnitude rounded up to the next F16 so that
         * |x / d| <= 8 for every x of the block */
        float want = amax / 8.0f;
        uint16_t s16 = dsi_f32_to_f16(want);
        if ((s16 & 0x7c00) == 0x7c00) s16 = 0x7bff;
        else if (dsi_f16_to_f32(s16) < want) s16++;
        if (m > 0.0f) s16 |= 0x8000;                 /* d = -|d| when m > 0: m maps to -8 */
        float d = dsi_f16_to_f32(s16);
        float inv = amax > 0.0f ? 1.0f / d : 0.0f;
        if (amax == 0.0f) s16 = 0;
        dsi_wr16(ob, s16);
        uint8_t q[DSI_Q8_BLOCK];
        for (int i = 0; i < DSI_Q8_BLOCK; i++) {
            float v = xb[i] * inv;
            v = v > 7.0f ? 7.0f : v < -8.0f ? -8.0f : v;
            q[i] = (uint8_t)((int32_t)(v + 12582912.0f) - 12582912 + 8);
        }
        for (int i = 0; i < 16; i++) ob[2 + i] = (uint8_t)(q[i] | (q[i + 16] << 4));
    }
}

DSI_FUNC void dsi_dequantize_row_q4_0(const uint8_t *in, float *y, size_t n) {
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *ib = in + b * DSI_Q4_BLOCK_BYTES;
        float d = dsi_f16_to_f32(dsi_rd16(ib));
        float *yb = y + b * DSI_Q8_BLOCK;
        for (int i = 0; i < 16; i++) {
            yb[i] = (float)((ib[2 + i] & 15) - 8) * d;
            yb[i + 16] = (float)((ib[2 + i] >> 4) - 8) * d;
        }
    }
}

DSI_FUNC void dsi_q4_0_to_q8_0(const uint8_t *in, uint8_t *out, size_t n) {
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *ib = in + b * DSI_Q4_BLOCK_BYTES;
        uint8_t *ob = out + b * DSI_Q8_BLOCK_BYTES;
        ob[0] = ib[0];
        ob[1] = ib[1];
        for (int i = 0; i < 16; i++) {
            ob[2 + i] = (uint8_t)(int8_t)((ib[2 + i] & 15) - 8);
            ob[18 + i] = (uint8_t)(int8_t)((ib[2 + i] >> 4) - 8);
        }
    }
}

/* ==== Pruned Q8_0: 2:4 packed and masked sparse ============================ */
/* One block of 32 floats quantized as Q8_0 does it: the scale's bits, q. */
static uint16_t dsi_q8_block_q(const float *x, int8_t q[DSI_Q8_BLOCK]) {
    uint8_t b[DSI_Q8_BLOCK_BYTES];
    dsi_quantize_row_q8_0(x, b, DSI_Q8_BLOCK);
    memcpy(q, b + 2, DSI_Q8_BLOCK);
    return dsi_rd16(b);
}

DSI_FUNC void dsi_quantize_row_q8_0_24(const float *x, uint8_t *out, size_t n) {
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const float *xb = x + b * DSI_Q8_BLOCK;
        uint8_t *ob = out + b * DSI_Q24_BLOCK_BYTES;
        int8_t q[DSI_Q8_BLOCK];
        dsi_wr16(ob, dsi_q8_block_q(xb, q));
        memset(ob + 2, 0, 4);
        for (int g = 0; g < 8; g++) {
            /* the two kept positions: nonzero q first, larger |x| first,
             * the lower position on a tie; then zeros, lowest first */
            int keep[2] = {-1, -1};
            for (int k = 0; k < 2; k++) {
                int best = -1;
                for (int i = 0; i < 4; i++) {
                    int p = 4 * g + i;
                    if (i == keep[0]) continue;
                    if (best < 0) {
                        best = i;
                        continue;
                    }
                    int pb = 4 * g + best;
                    bool nz = q[p] != 0, nzb = q[pb] != 0;
                    if (nz != nzb ? nz : nz && fabsf(xb[p]) > fabsf(xb[pb])) best = i;
                }
                keep[k] = best;
            }
            int p0 = keep[0] < keep[1] ? keep[0] : keep[1], p1 = keep[0] < keep[1] ? keep[1] : keep[0];
            ob[2 + g / 2] |= (uint8_t)((p0 | p1 << 2) << (4 * (g & 1)));
            ob[6 + 2 * g] = (uint8_t)q[4 * g + p0];
            ob[7 + 2 * g] = (uint8_t)q[4 * g + p1];
        }
    }
}

/* The 32 int8 values of a 2:4 block, in order (p0 == p1: the second wins). */
static void dsi_q24_block_values(const uint8_t *blk, int8_t v[DSI_Q8_BLOCK]) {
    memset(v, 0, DSI_Q8_BLOCK);
    for (int g = 0; g < 8; g++) {
        unsigned pb = blk[2 + g / 2] >> (4 * (g & 1));
        v[4 * g + (pb & 3)] = (int8_t)blk[6 + 2 * g];
        v[4 * g + ((pb >> 2) & 3)] = (int8_t)blk[7 + 2 * g];
    }
}

DSI_FUNC void dsi_dequantize_row_q8_0_24(const uint8_t *in, float *y, size_t n) {
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *ib = in + b * DSI_Q24_BLOCK_BYTES;
        float d = dsi_f16_to_f32(dsi_rd16(ib));
        int8_t v[DSI_Q8_BLOCK];
        dsi_q24_block_values(ib, v);
        for (int i = 0; i < DSI_Q8_BLOCK; i++) y[b * DSI_Q8_BLOCK + i] = (float)v[i] * d;
    }
}

DSI_FUNC void dsi_q8_0_24_to_q8_0(const uint8_t *in, uint8_t *out, size_t n) {
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        const uint8_t *ib = in + b * DSI_Q24_BLOCK_BYTES;
        uint8_t *ob = out + b * DSI_Q8_BLOCK_BYTES;
        int8_t v[DSI_Q8_BLOCK];
        dsi_q24_block_values(ib, v);
        ob[0] = ib[0];
        ob[1] = ib[1];
        memcpy(ob + 2, v, DSI_Q8_BLOCK);
    }
}

DSI_FUNC size_t dsi_sp_row_count(const float *x, size_t n) {
    size_t count = 0;
    for (size_t b = 0; b < n / DSI_Q8_BLOCK; b++) {
        int8_t q[DSI_Q8_BLOCK];
        (void)dsi_q8_block_q(x + b * DSI_Q8_BLOCK, q);
        for (int i = 0; i < DSI_Q8_BLOCK; i++) count += q[i] != 0;
    }
    return count;
}

DSI_FUNC void dsi_quantize_row_q8_0_sp(const float *x, uint8_t *out, size_t n, size_t stride) {
    size_t nb = n / DSI_Q8_BLOCK, head = nb * DSI_SP_HEAD_BYTES, at = head;
    memset(out, 0, stride);
    if (stride < head) return;   /* not even the heads fit (a misuse): zeros, never past stride */
    for (size_t b = 0; b < nb; b++) {
        int8_t q[DSI_Q8_BLOCK];
        uint32_t mask = 0;
        dsi_wr16(out + 2 * b, dsi_q8_block_q(x + b * DSI_Q8_BLOCK, q));
        for (int i = 0; i < DSI_Q8_BLOCK && at < stride; i++)
            if (q[i]) {
                mask |= 1u << i;
                out[at++] = (uint8_t)q[i];
            }
        dsi_wr32(out + 2 * nb + 4 * b, mask);
    }
}

/* Block b's 32 int8 values of an SP row (values read from *v on, which
 * advances past them). */
static void dsi_sp_block_values(uint32_t mask, const uint8_t **v, int8_t out[DSI_Q8_BLOCK]) {
    const uint8_t *p = *v;
    for (int i = 0; i < DSI_Q8_BLOCK; i++) out[i] = (mask >> i) & 1 ? (int8_t)*p++ : 0;
    *v = p;
}

DSI_FUNC void dsi_dequantize_row_q8_0_sp(const uint8_t *in, float *y, size_t n) {
    size_t nb = n / DSI_Q8_BLOCK;
    const uint8_t *v = in + nb * DSI_SP_HEAD_BYTES;
    for (size_t b = 0; b < nb; b++) {
        float d = dsi_f16_to_f32(dsi_rd16(in + 2 * b));
        int8_t q[DSI_Q8_BLOCK];
        dsi_sp_block_values(dsi_rd32(in + 2 * nb + 4 * b), &v, q);
        for (int i = 0; i < DSI_Q8_BLOCK; i++) y[b * DSI_Q8_BLOCK + i] = (float)q[i] * d;
    }
}

DSI_FUNC void dsi_q8_0_sp_to_q8_0(const uint8_t *in, uint8_t *out, size_t n) {
    size_t nb = n / DSI_Q8_BLOCK;
    const uint8_t *v = in + nb * DSI_SP_HEAD_BYTES;
    for (size_t b = 0; b < nb; b++) {
        uint8_t *ob = out + b * DSI_Q8_BLOCK_BYTES;
        int8_t q[DSI_Q8_BLOCK];
        dsi_sp_block_values(dsi_rd32(in + 2 * nb + 4 * b), &v, q);
        ob[0] = in[2 * b];
        ob[1] = in[2 * b + 1];
        memcpy(ob + 2, q, DSI_Q8_BLOCK);
    }
}

DSI_FUNC bool dsi_dtype_to_q8_0(ds_dtype d, const uint8_t *in, uint8_t *out, size_t n) {
    switch (d) {
    case DS_DTYPE_Q8_0: memcpy(out, in, n / DSI_Q8_BLOCK * DSI_Q8_BLOCK_BYTES); return true;
    case DS_DTYPE_Q4_0: dsi_q4_0_to_q8_0(in, out, n); return true;
    case DS_DTYPE_Q8_0_24: dsi_q8_0_24_to_q8_0(in, out, n); return true;
    case DS_DTYPE_Q8_0_SP: dsi_q8_0_sp_to_q8_0(in, out, n); return true;
    case DS_DTYPE_F32:
    case DS_DTYPE_F16: break;
    }
    return false;
}

DSI_FUNC void dsi_convert_row_f16(const float *x, uint16_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = dsi_f32_to_f16(x[i]);
}

DSI_FUNC void dsi_dequantize_row_f16(const uint16_t *in, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = dsi_f16_to_f32(in[i]);
}

DSI_FUNC bool dsi_dtype_encode_row(ds_dtype d, const float *x, uint8_t *out, size_t n) {
    switch (d) {
    case DS_DTYPE_F32:
        for (size_t k = 0; k < n; k++) dsi_wr32(out + 4 * k, dsi_f32_bits(x[k]));
        break;
    case DS_DTYPE_F16:
        for (size_t k = 0; k < n; k++) dsi_wr16(out + 2 * k, dsi_f32_to_f16(x[k]));
        break;
    case DS_DTYPE_Q8_0: dsi_quantize_row_q8_0(x, out, n); break;
    case DS_DTYPE_Q4_0: dsi_quantize_row_q4_0(x, out, n); break;
    case DS_DTYPE_Q8_0_24: dsi_quantize_row_q8_0_24(x, out, n); break;
    case DS_DTYPE_Q8_0_SP: return false;   /* needs its tensor's stride: dsi_quantize_row_q8_0_sp */
    default: return false;
    }
    return true;
}

DSI_FUNC void dsi_dtype_decode_row(ds_dtype d, const uint8_t *in, float *y, size_t n) {
    switch (d) {
    case DS_DTYPE_F32:
        for (size_t k = 0; k < n; k++) y[k] = dsi_bits_f32(dsi_rd32(in + 4 * k));
        break;
    case DS_DTYPE_F16:
        for (size_t k = 0; k < n; k++) y[k] = dsi_f16_to_f32(dsi_rd16(in + 2 * k));
        break;
    case DS_DTYPE_Q8_0: dsi_dequantize_row_q8_0(in, y, n); break;
    case DS_DTYPE_Q4_0: dsi_dequantize_row_q4_0(in, y, n); break;
    case DS_DTYPE_Q8_0_24: dsi_dequantize_row_q8_0_24(in, y, n); break;
    case DS_DTYPE_Q8_0_SP: dsi_dequantize_row_q8_0_sp(in, y, n); break;
    }
}
