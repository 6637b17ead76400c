/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_cuda_ops.c — every CUDA op against its CPU twin (built with make
 * CUDA=1 only), as ggml's test-backend-ops: random inputs over several
 * shapes, ragged sizes and Q8_0/Q4_0 rows of many blocks; the CPU result
 * from the library's own dsi_ functions; a tolerance per op.
 *
 * Where no CUDA device is present every device case is reported skipped
 * ("SKIP cuda-ops-N.M: no CUDA device"). The cuda-ops-0.x cases need no
 * device: argument checks happen on the host before any CUDA call, and the
 * backend table is plain data; they run everywhere. DS_TEST_ONLY="cuda-ops-13
 * cuda-ops-14" in the environment runs only the device cases named (the
 * others are reported skipped): for quick runs under tools/cuda_emu.
 *
 * CPU twins: the kernel table's dot (GEMV), dequant + dot_f32 (batched
 * matmul), dsi_rmsnorm, dsi_route, dsi_dequantize_row_*. forward.c keeps
 * dsi_rope_init, dsi_rope, dsi_mla_task, dsi_mha_task and dsi_silu static,
 * so the sections marked "transcribed" below copy them line for line, built
 * on the CPU kernel table (axpy, dot_f32, dot) and dsi_softmax. The
 * row operations' twins are loops of forward.c written out in the cases:
 * the embedding row (the table's dequant of row tok[t]), the
 * residual add (c->x[i] += c->tmp[i]), the MoE gather (memcpy of a token's
 * row) and weighted scatter-add (dst[d] += wgt * src[d], dsi_moe).
 *
 * Tolerances (|gpu - cpu| <= bound, per element), and why:
 *   dequantize      exact: q * f16 scale is exact in F32 on both (Q4_0
 *                   also against a hand-made block: llama.cpp's layout)
 *   gemv, matmul    2e-5 * sum_i |w_i x_i| + 1e-6: the same products
 *                   summed in another order (warp trees, cuBLAS tiling);
 *                   F32 rounding grows at most with sum |w x|
 *   rmsnorm         2e-5 * |cpu| + 1e-7: the sum of squares in another order
 *   silu_mul        4e-6 * |cpu| + 1e-30: CUDA's expf is within 2 ulp,
 *                   glibc's within 1; the rest is the same expression
 *   rope            4e-6 * (|xa| + |xb|) * mscale + 1e-7: CUDA's sinf/cosf
 *                   are within 2 ulp; the angle is the same F32 product
 *   mla kv store    as rmsnorm for the latent, as rope for the key
 *   mla attention   5e-5 * max |cpu| over the output + 1e-6: the scores
 *                   differ by summation order and the softmax is online
 *                   (tiles of 256 positions, one division at the end)
 *   mha attention   5e-5 * max |cpu| over the output + 1e-6: as mla
 *                   attention (dot products in another order, the online
 *                   softmax over tiles of 256 positions)
 *   embed           exact: a dequantized row, exact in F32 on both
 *   add             exact: one F32 sum per element on both
 *   gather_rows     exact: a copy
 *   scatter_add     exact: one product and one sum per element, rounded
 *                   separately on both (__fmul_rn/__fadd_rn; C11 does not
 *                   contract the CPU's dst[d] += wgt * src[d] into an FMA),
 *                   experts added in the same order
 *   memset, copy    exact, and bytes outside the range untouched
 *   lora            3e-5 * (|y0| + |s| sum_q |B_iq| sum_j |A_qj x_j|) + 1e-6
 *                   against a double-precision y0 + s B (A x) of the same
 *                   stored A and B: two products in F32 (the bound of one,
 *                   as gemv's, for each); padding of y's rows bit for bit
 *   mla + adapters  (16.1) as mla attention, against the CPU's dsi_mla_task
 *                   with its adapter steps (transcribed); (16.2) 2e-4 *
 *                   max |cpu| + 1e-6 against the plain attention over the
 *                   merged matrix W + sum s B A (F32): the same function
 *                   computed another way, so rounding of the merge included
 *   route           the same experts in the same order, except where two
 *                   selection scores differ but by at most 1e-5 (relative):
 *                   a near-tie that summation order may break either way;
 *                   exactly equal scores must go to the lower index as on
 *                   the CPU. Weights 1e-5 * |cpu| + 1e-7: the softmax sum
 *                   over E experts in another order
 * A bug (a wrong index, a missed rescale, a lost tile) shows as errors of
 * order one; these bounds leave a margin over rounding so that a first GPU
 * run does not fail on noise. Measured on a thread-level CPU emulation of
 * the kernels (tools/cuda_emu: the GPU's summation order, the host's
 * expf/sinf/cosf): the worst gemv error is 1/300 of its bound, the worst
 * MLA attention error 1/50, the worst MHA attention error 1/40; the exact
 * ops are exact.
 */
#include "../deepseek_impl/internal.h"
#include "../kernels/cpu/kernels.h"
#include "../kernels/cuda/backend.cuh"
#include "test.h"

#include <math.h>
#include <stdint.h>

/* The CPU twins run on the kernels the CPU device would choose here. */
static const dsi_kernels *cpu_kernels(void) {
    static dsi_kernels k;
    if (!k.name) dsi_kernels_select(&k, dsi_cpu_features());
    return &k;
}

/* a pointer, not the array: test.h's T_STATUS tests its message for NULL */
static char msg_buf[512];
static char *const msg = msg_buf;
#define MSGLEN sizeof msg_buf
static void *stream;

/* ==== Random numbers ===================================================== */
static uint64_t rs = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
static void fill(float *x, size_t n, float mag) {
    for (size_t i = 0; i < n; i++) x[i] = frand() * mag;
}

/* ==== Device helpers (a failure is a FAIL of the case) ==================== */
static void *dev_up(const char *id, const void *h, size_t bytes) {
    void *d = NULL;
    ds_status s = dsi_cuda_alloc(&d, bytes ? bytes : 4, msg, MSGLEN);
    if (s == DS_OK && h && bytes) s = dsi_cuda_upload(d, h, bytes, stream, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_sync(stream, msg, MSGLEN);
    if (s != DS_OK) {
        T_STATUS(id, s, DS_OK, msg);
        dsi_cuda_free(d);
        return NULL;
    }
    return d;
}

static bool dev_down(const char *id, void *h, const void *d, size_t bytes) {
    ds_status s = dsi_cuda_download(h, d, bytes, stream, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_sync(stream, msg, MSGLEN);
    if (s != DS_OK) T_STATUS(id, s, DS_OK, msg);
    return s == DS_OK;
}

/* A (rows, cols) matrix of dtype t from random floats of magnitude mag. */
static uint8_t *make_weight(ds_dtype t, int rows, int cols, float mag, size_t *row_bytes) {
    uint64_t rb = 0;
    if (!dsi_dtype_row_bytes(t, (uint64_t)cols, &rb)) return NULL;
    *row_bytes = (size_t)rb;
    uint8_t *w = malloc((size_t)rows * (size_t)rb);
    float *row = malloc((size_t)cols * sizeof(float));
    if (!w || !row) {
        free(w);
        free(row);
        return NULL;
    }
    for (int r = 0; r < rows; r++) {
        fill(row, (size_t)cols, mag);
        uint8_t *dst = w + (size_t)r * rb;
        switch (t) {
        case DS_DTYPE_F32: memcpy(dst, row, (size_t)cols * sizeof(float)); break;
        case DS_DTYPE_F16: dsi_convert_row_f16(row, (uint16_t *)(void *)dst, (size_t)cols); break;
        case DS_DTYPE_Q8_0: dsi_quantize_row_q8_0(row, dst, (size_t)cols); break;
        case DS_DTYPE_Q4_0: dsi_quantize_row_q4_0(row, dst, (size_t)cols); break;
        default: break;   /* the pruned formats never reach the device (cuda.c expands them) */
        }
    }
    free(row);
    return w;
}

static dsi_weight host_weight(ds_dtype t, const uint8_t *data, int rows, int cols, size_t rb) {
    dsi_weight w;
    memset(&w, 0, sizeof w);
    w.data = data;
    w.dtype = t;
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = rb;
    return w;
}

static const char *dtname(ds_dtype t) {
    return t == DS_DTYPE_F32 ? "f32" : t == DS_DTYPE_F16 ? "f16" : t == DS_DTYPE_Q8_0 ? "q8_0" : "q4_0";
}

/* The block formats: rows of whole 32-value blocks only. */
static bool blocked(ds_dtype t) { return t == DS_DTYPE_Q8_0 || t == DS_DTYPE_Q4_0; }

/* The last weight format the loops below cover. */
#define LAST_DTYPE DS_DTYPE_Q4_0

/* ==== Transcribed CPU twins (static in forward.c) ========================= */
typedef struct rope_tab {
    float inv_freq[512];
    float mscale;
    int dim;
} rope_tab;

static double yarn_mscale(double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0; }

static double yarn_corr_dim(double n_rot, int dim, double base, double max_pos) {
    return (dim * log(max_pos / (n_rot * 2.0 * M_PI))) / (2.0 * log(base));
}

/* dsi_rope_init */
static void rope_init(rope_tab *c, const ds_model_config *cf, int dim) {
    int half = dim / 2;
    c->dim = dim;
    c->mscale = 1.0f;
    for (int i = 0; i < half; i++) {
        float ex = (float)(2 * i) / (float)dim;
        c->inv_freq[i] = 1.0f / powf(cf->rope_theta, ex);
    }
    if (!cf->rope_scaling_yarn) return;
    double factor = cf->rope_factor;
    double lo = floor(yarn_corr_dim(cf->rope_beta_fast, dim, cf->rope_theta, cf->rope_original_max_position));
    double hi = ceil(yarn_corr_dim(cf->rope_beta_slow, dim, cf->rope_theta, cf->rope_original_max_position));
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = dim - 1;
    if (lo == hi) hi += 0.001;
    for (int i = 0; i < half; i++) {
        float extra = c->inv_freq[i];
        float inter = 1.0f / ((float)factor * powf(cf->rope_theta, (float)(2 * i) / (float)dim));
        float ramp = (float)(((double)i - lo) / (hi - lo));
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float mask = 1.0f - ramp;
        c->inv_freq[i] = inter * (1.0f - mask) + extra * mask;
    }
    c->mscale = (float)(yarn_mscale(factor, cf->rope_mscale) / yarn_mscale(factor, cf->rope_mscale_all_dim));
}

/* dsi_rope */
static void rope(const rope_tab *c, float *x, int pos, bool interleaved) {
    int half = c->dim / 2;
    for (int i = 0; i < half; i++) {
        float ang = (float)pos * c->inv_freq[i];
        float cs = cosf(ang) * c->mscale, sn = sinf(ang) * c->mscale;
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float xa = x[a], xb = x[b];
        x[a] = xa * cs - xb * sn;
        x[b] = xb * cs + xa * sn;
    }
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

/* kv_b_proj's adapters for mla_task: A (r, R) and B (H (dn + dv), r) each,
 * host rows, applied with scale s */
typedef struct mla_ad {
    int n;
    dsi_weight a[4], b[4];
    float s[4];
} mla_ad;

/* dsi_mla_task for one (token, head), with the adapters of ad when not
 * NULL; w is scratch of 2R + n + dr floats */
static void mla_task_ad(const dsi_weight *kvb, const mla_ad *ad, const rope_tab *rt, const float *q, int H, int dn,
                        int dr, int dv, int R, float attn_scale, const float *ca, const float *cb, int t, int h,
                        int pos, float *att, float *w);
static void mla_task(const dsi_weight *kvb, const rope_tab *rt, const float *q, int H, int dn, int dr, int dv, int R,
                     float attn_scale, const float *ca, const float *cb, int t, int h, int pos, float *att, float *w) {
    mla_task_ad(kvb, NULL, rt, q, H, dn, dr, dv, R, attn_scale, ca, cb, t, h, pos, att, w);
}
static void mla_task_ad(const dsi_weight *kvb, const mla_ad *ad, const rope_tab *rt, const float *q, int H, int dn,
                        int dr, int dv, int R, float attn_scale, const float *ca, const float *cb, int t, int h,
                        int pos, float *att, float *w) {
    int hd = dn + dr, n = pos + 1;
    float *qlat = w, *scores = qlat + R, *lat = scores + n, *qpe = lat + R;
    const float *qh = q + (size_t)t * H * hd + (size_t)h * hd;
    memcpy(qpe, qh + dn, (size_t)dr * sizeof(float));
    rope(rt, qpe, pos, true);
    memset(qlat, 0, (size_t)R * sizeof(float));
    const uint8_t *rows = kvb->data + (size_t)h * (dn + dv) * kvb->row_bytes;
    for (int i = 0; i < dn; i++) cpu_kernels()->axpy[kvb->dtype](rows + (size_t)i * kvb->row_bytes, qh[i], qlat, kvb->cols);
    for (int k = 0; ad && k < ad->n; k++) { /* q_lat += s A^T (B_k(h)^T q_nope) */
        const dsi_weight *A = &ad->a[k], *B = &ad->b[k];
        float tr[1024];
        int r = A->rows;
        memset(tr, 0, (size_t)r * sizeof(float));
        const uint8_t *br = B->data + (size_t)h * (dn + dv) * B->row_bytes;
        for (int i = 0; i < dn; i++) cpu_kernels()->axpy[B->dtype](br + (size_t)i * B->row_bytes, qh[i], tr, r);
        for (int c = 0; c < r; c++) cpu_kernels()->axpy[A->dtype](A->data + (size_t)c * A->row_bytes, ad->s[k] * tr[c], qlat, R);
    }
    for (int s = 0; s < n; s++)
        scores[s] = (cpu_kernels()->dot_f32(qlat, ca + (size_t)s * R, R) + cpu_kernels()->dot_f32(qpe, cb + (size_t)s * dr, dr)) * attn_scale;
    dsi_softmax(scores, n);
    memset(lat, 0, (size_t)R * sizeof(float));
    for (int s = 0; s < n; s++) {
        const float *cs = ca + (size_t)s * R;
        float p = scores[s];
        for (int i = 0; i < R; i++) lat[i] += p * cs[i];
    }
    float *out = att + (size_t)t * H * dv + (size_t)h * dv;
    const uint8_t *vrows = rows + (size_t)dn * kvb->row_bytes;
    for (int i = 0; i < dv; i++) out[i] = cpu_kernels()->dot[kvb->dtype](vrows + (size_t)i * kvb->row_bytes, lat, kvb->cols);
    for (int k = 0; ad && k < ad->n; k++) { /* out += s B_v(h) (A lat) */
        const dsi_weight *A = &ad->a[k], *B = &ad->b[k];
        float al[1024];
        int r = A->rows;
        for (int c = 0; c < r; c++) al[c] = cpu_kernels()->dot[A->dtype](A->data + (size_t)c * A->row_bytes, lat, R);
        const uint8_t *bv = B->data + ((size_t)h * (dn + dv) + (size_t)dn) * B->row_bytes;
        for (int i = 0; i < dv; i++) out[i] += ad->s[k] * cpu_kernels()->dot[B->dtype](bv + (size_t)i * B->row_bytes, al, r);
    }
}

/* dsi_mha_task for one (token, head); scores is scratch of pos + 1 floats.
 * K and V are (positions, Hk * hd); att is (T, H * hd). */
static void mha_task(const float *q, const float *K, const float *V, int H, int Hk, int hd, float attn_scale, int t,
                     int h, int pos, float *att, float *scores) {
    int n = pos + 1, kh = h / (H / Hk);
    const float *qh = q + (size_t)t * H * hd + (size_t)h * hd;
    size_t kd = (size_t)Hk * hd;
    for (int s = 0; s < n; s++) scores[s] = cpu_kernels()->dot_f32(qh, K + s * kd + (size_t)kh * hd, hd) * attn_scale;
    dsi_softmax(scores, n);
    float *out = att + (size_t)t * H * hd + (size_t)h * hd;
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int s = 0; s < n; s++) {
        const float *v = V + s * kd + (size_t)kh * hd;
        for (int i = 0; i < hd; i++) out[i] += scores[s] * v[i];
    }
}

/* ==== 0. Host-side checks (no device needed) ============================== */
static void case_host(void) {
    float dummy[64] = {0};
    int isel[8];
    ds_status s;
    msg[0] = 0;
    s = dsi_cuda_gemv(DS_DTYPE_Q8_0, dummy, 2, 48, dummy, 48, 1, dummy, 2, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.1", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.1", strstr(msg, "Q8_0") != NULL, "message: %s", msg);
    s = dsi_cuda_gemv(DS_DTYPE_F16, dummy, 2, 8, dummy, 8, DSI_CUDA_GEMV_MAX_T + 1, dummy, 2, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.2", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_matmul(NULL, DS_DTYPE_F32, dummy, 2, 8, dummy, 8, 16, dummy, 2, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.3", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_matmul(NULL, DS_DTYPE_F32, dummy, 2, 8, dummy, 4, 2, dummy, 2, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.3", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_rope(dummy, 8, 8, 1, 1, 0, dummy, 7, 1.0f, 1, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.4", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_rmsnorm(dummy, 4, dummy, 8, dummy, 4, 2, 1e-6f, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.5", s, DS_ERR_INVALID_ARG, msg);
    dsi_mla_layer a;
    memset(&a, 0, sizeof a);
    a.n_heads = 2;
    a.nope_dim = 4;
    a.rope_dim = 4;
    a.v_dim = 4;
    a.rank = 32;
    a.kv_b_dtype = DS_DTYPE_Q8_0;
    a.kv_b = dummy;
    a.inv_freq = dummy;
    a.cache_lat = dummy;
    a.cache_pe = dummy;
    a.n_ctx = 4;
    s = dsi_cuda_mla_attention(&a, dummy, 2, 3, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.6", s, DS_ERR_INVALID_ARG, msg);
    a.rank = 33; /* not whole Q8_0 blocks */
    s = dsi_cuda_mla_attention(&a, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.6", s, DS_ERR_INVALID_ARG, msg);
    ds_model_config cf;
    memset(&cf, 0, sizeof cf);
    cf.n_routed_experts = 4;
    cf.n_experts_per_tok = 5;
    s = dsi_cuda_route(&cf, dummy, NULL, NULL, 0, 1, isel, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.7", s, DS_ERR_INVALID_ARG, msg);
    cf.n_experts_per_tok = 2;
    cf.topk_method = DS_TOPK_NOAUX_TC;
    cf.n_group = 4; /* one expert per group: no top two */
    s = dsi_cuda_route(&cf, dummy, NULL, NULL, 0, 1, isel, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.7", s, DS_ERR_INVALID_ARG, msg);
    /* the table */
    const dsi_backend_i *b = dsi_cuda_backend();
    T_CHECK("cuda-ops-0.8", b && b->version == DSI_BACKEND_VERSION && b->name && strcmp(b->name, "cuda") == 0,
            "backend table version/name");
    T_CHECK("cuda-ops-0.8",
            b && b->init && b->device_count && b->stream_new && b->stream_free && b->sync && b->alloc && b->free &&
                b->host_alloc && b->host_free && b->upload && b->download && b->blas_new && b->blas_free &&
                b->dequantize && b->gemv && b->matmul && b->rmsnorm && b->silu_mul && b->rope && b->mla_kv_store &&
                b->mla_attention && b->route,
            "backend table has a NULL entry");
    T_CHECK("cuda-ops-0.8", b && b->gemv == dsi_cuda_gemv && b->route == dsi_cuda_route, "table entries");
    /* the fields appended for the forward pass on the device */
    T_CHECK("cuda-ops-0.8",
            b && b->event_new && b->event_free && b->event_record && b->stream_wait && b->event_sync && b->memset &&
                b->copy && b->embed && b->add && b->gather_rows && b->scatter_add && b->mha_attention && b->mem_info &&
                b->device_name,
            "backend table has a NULL entry among the appended ones");
    T_CHECK("cuda-ops-0.8",
            b && b->event_new == dsi_cuda_event_new && b->event_free == dsi_cuda_event_free &&
                b->event_record == dsi_cuda_event_record && b->stream_wait == dsi_cuda_stream_wait &&
                b->event_sync == dsi_cuda_event_sync && b->memset == dsi_cuda_memset && b->copy == dsi_cuda_copy &&
                b->embed == dsi_cuda_embed && b->add == dsi_cuda_add && b->gather_rows == dsi_cuda_gather_rows &&
                b->scatter_add == dsi_cuda_scatter_add && b->mha_attention == dsi_cuda_mha_attention &&
                b->mem_info == dsi_cuda_mem_info && b->device_name == dsi_cuda_device_name,
            "appended table entries");
    /* version 2: LoRA */
    T_CHECK("cuda-ops-0.8", b && b->lora == dsi_cuda_lora && b->mla_attention_lora == dsi_cuda_mla_attention_lora,
            "LoRA table entries");
    /* 0.13: LoRA argument checks */
    msg[0] = 0;
    s = dsi_cuda_lora(NULL, DS_DTYPE_Q8_0, dummy, DS_DTYPE_F32, dummy, 2, 32, 4, 1.0f, dummy, 32, 1, dummy, 4, dummy,
                      NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.13", strstr(msg, "dsi_cuda_lora") != NULL, "message: %s", msg);
    s = dsi_cuda_lora(NULL, DS_DTYPE_F32, dummy, DS_DTYPE_F16, dummy, 0, 8, 4, 1.0f, dummy, 8, 1, dummy, 4, dummy,
                      NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_lora(NULL, DS_DTYPE_F32, dummy, DS_DTYPE_F32, dummy, 2, 8, 4, 1.0f, dummy, 7, 1, dummy, 4, dummy,
                      NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_lora(NULL, DS_DTYPE_F32, dummy, DS_DTYPE_F32, dummy, 2, 8, 4, 1.0f, dummy, 8, 1, dummy, 3, dummy,
                      NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_lora(NULL, DS_DTYPE_F32, dummy, DS_DTYPE_F32, dummy, 2, 8, 4, 1.0f, dummy, 8, 1, dummy, 4, NULL,
                      NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_lora(NULL, DS_DTYPE_F32, dummy, DS_DTYPE_F32, dummy, 2, 8, 4, 1.0f, NULL, 8, 0, NULL, 4, NULL, NULL,
                      msg, MSGLEN); /* nothing to do */
    T_STATUS("cuda-ops-0.13", s, DS_OK, msg);
    a.kv_b_dtype = DS_DTYPE_F32;
    a.rank = 32;
    dsi_mla_lora ad[DSI_CUDA_MLA_MAX_LORA + 1];
    memset(ad, 0, sizeof ad);
    for (int k = 0; k <= DSI_CUDA_MLA_MAX_LORA; k++) ad[k] = (dsi_mla_lora){DS_DTYPE_F32, DS_DTYPE_F16, dummy, dummy, 4, 1.0f};
    s = dsi_cuda_mla_attention_lora(&a, ad, DSI_CUDA_MLA_MAX_LORA + 1, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    ad[1].a_dtype = DS_DTYPE_Q8_0;
    s = dsi_cuda_mla_attention_lora(&a, ad, 2, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.13", strstr(msg, "adapter 1") != NULL, "message: %s", msg);
    ad[1].a_dtype = DS_DTYPE_F16;
    ad[0].r = DSI_CUDA_MLA_MAX_RANK + 1;
    s = dsi_cuda_mla_attention_lora(&a, ad, 2, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    ad[0].r = 4;
    ad[0].b = NULL;
    s = dsi_cuda_mla_attention_lora(&a, ad, 1, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
}

/* The new entry points' argument checks (no device needed). */
static void case_host_rows(void) {
    float dummy[64] = {0};
    int itok[4] = {0};
    ds_status s;
    /* 0.11 embed: ragged Q8_0 rows, an empty table, negative T, NULL buffers */
    msg[0] = 0;
    s = dsi_cuda_embed(DS_DTYPE_Q8_0, dummy, 2, 33, itok, 1, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.11", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.11", strstr(msg, "dsi_cuda_embed") != NULL, "message: %s", msg);
    s = dsi_cuda_embed((ds_dtype)7, dummy, 2, 32, itok, 1, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.11", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_embed(DS_DTYPE_F32, dummy, 0, 8, itok, 1, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.11", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_embed(DS_DTYPE_F32, dummy, 2, 8, itok, -1, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.11", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_embed(DS_DTYPE_F16, dummy, 2, 8, NULL, 1, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.11", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_embed(DS_DTYPE_F16, dummy, 2, 8, NULL, 0, NULL, NULL, msg, MSGLEN); /* nothing to do */
    T_STATUS("cuda-ops-0.11", s, DS_OK, msg);
    /* 0.12 add, gather, scatter */
    s = dsi_cuda_add(NULL, dummy, 4, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.12", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_add(NULL, NULL, 0, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.12", s, DS_OK, msg);
    s = dsi_cuda_gather_rows(dummy, dummy, itok, -1, 8, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.12", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_gather_rows(dummy, dummy, itok, 2, 0, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.12", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_gather_rows(dummy, dummy, NULL, 2, 8, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.12", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_scatter_add(dummy, dummy, itok, NULL, 2, 8, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.12", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_scatter_add(dummy, dummy, itok, dummy, 2, -3, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.12", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_scatter_add(NULL, NULL, NULL, NULL, 0, 8, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.12", s, DS_OK, msg);
    /* 0.13 mha: heads not a multiple of the kv heads, positions past the
     * cache, a missing cache */
    dsi_mha_layer a;
    memset(&a, 0, sizeof a);
    a.n_heads = 6;
    a.n_kv_heads = 4;
    a.head_dim = 8;
    a.scale = 1.0f;
    a.cache_k = dummy;
    a.cache_v = dummy;
    a.n_ctx = 4;
    s = dsi_cuda_mha_attention(&a, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    a.n_kv_heads = 3;
    s = dsi_cuda_mha_attention(&a, dummy, 2, 3, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.13", strstr(msg, "outside") != NULL, "message: %s", msg);
    a.cache_v = NULL;
    s = dsi_cuda_mha_attention(&a, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    a.cache_v = dummy;
    a.head_dim = 0;
    s = dsi_cuda_mha_attention(&a, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_mha_attention(NULL, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.13", s, DS_ERR_INVALID_ARG, msg);
    /* 0.14 events, memset, copy, queries */
    s = dsi_cuda_event_new(NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_event_record(NULL, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_stream_wait(NULL, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_event_sync(NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    dsi_cuda_event_free(NULL); /* a no-op */
    s = dsi_cuda_memset(NULL, 0, 16, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_copy(dummy, NULL, 16, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_copy(dummy + 1, dummy, 8, NULL, msg, MSGLEN); /* overlapping */
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_copy(dummy, dummy + 1, 8, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_copy(dummy, dummy, 4, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_copy(NULL, NULL, 0, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_OK, msg);
    size_t fr = 1, tot = 1;
    s = dsi_cuda_mem_info(NULL, &tot, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_mem_info(&fr, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    char name[8];
    s = dsi_cuda_device_name(name, 0, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
    s = dsi_cuda_device_name(NULL, 8, msg, MSGLEN);
    T_STATUS("cuda-ops-0.14", s, DS_ERR_INVALID_ARG, msg);
}

/* 0.15: a ragged Q4_0 row is refused like a ragged Q8_0 row, by every
 * entry point that takes a weight dtype, before any CUDA call; the message
 * names the format. A dtype past Q4_0 is unknown. */
static void case_host_q4(void) {
    float dummy[64] = {0};
    int itok[4] = {0};
    ds_status s;
    msg[0] = 0;
    s = dsi_cuda_gemv(DS_DTYPE_Q4_0, dummy, 2, 48, dummy, 48, 1, dummy, 2, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.15", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.15", strstr(msg, "Q4_0") != NULL, "message: %s", msg);
    s = dsi_cuda_matmul(NULL, DS_DTYPE_Q4_0, dummy, 2, 48, dummy, 48, 16, dummy, 2, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.15", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.15", strstr(msg, "Q4_0") != NULL, "message: %s", msg);
    s = dsi_cuda_gemv((ds_dtype)(DS_DTYPE_Q4_0 + 1), dummy, 2, 64, dummy, 64, 1, dummy, 2, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.15", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.15", strstr(msg, "unknown dtype") != NULL, "message: %s", msg);
    s = dsi_cuda_embed(DS_DTYPE_Q4_0, dummy, 2, 33, itok, 1, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.15", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.15", strstr(msg, "Q4_0") != NULL, "message: %s", msg);
    s = dsi_cuda_dequantize(DS_DTYPE_Q4_0, dummy, dummy, 48, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.15", s, DS_ERR_INVALID_ARG, msg);
    /* 32 values of Q4_0 are 18 bytes, not a Q8_0 block's 34 */
    s = dsi_cuda_dequantize_host(DS_DTYPE_Q4_0, dummy, 34, dummy, 32, msg, MSGLEN);
    T_STATUS("cuda-ops-0.15", s, DS_ERR_INVALID_ARG, msg);
    dsi_mla_layer a;
    memset(&a, 0, sizeof a);
    a.n_heads = 2;
    a.nope_dim = 4;
    a.rope_dim = 4;
    a.v_dim = 4;
    a.rank = 33; /* not whole Q4_0 blocks */
    a.kv_b_dtype = DS_DTYPE_Q4_0;
    a.kv_b = dummy;
    a.inv_freq = dummy;
    a.cache_lat = dummy;
    a.cache_pe = dummy;
    a.n_ctx = 4;
    s = dsi_cuda_mla_attention(&a, dummy, 1, 0, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.15", s, DS_ERR_INVALID_ARG, msg);
    T_CHECK("cuda-ops-0.15", strstr(msg, "Q4_0") != NULL, "message: %s", msg);
    s = dsi_cuda_mla_kv_store(&a, dummy, dummy, 1e-6f, 1, 0, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.15", s, DS_ERR_INVALID_ARG, msg);
}

/* Without a device: allocation fails with a status and a message. */
static void case_no_device(void) {
    void *p = (void *)1;
    msg[0] = 0;
    ds_status s = dsi_cuda_alloc(&p, 1024, msg, MSGLEN);
    T_CHECK("cuda-ops-0.9", s == DS_ERR_NO_DEVICE && p == NULL && msg[0],
            "alloc without a device: status %d (%s), message '%s'", (int)s, ds_status_string(s), msg);
    /* the queries and events fail the same way, outputs cleared */
    size_t fr = 1, tot = 1;
    msg[0] = 0;
    s = dsi_cuda_mem_info(&fr, &tot, msg, MSGLEN);
    T_CHECK("cuda-ops-0.9", s == DS_ERR_NO_DEVICE && fr == 0 && tot == 0 && msg[0],
            "mem_info without a device: status %d (%s), message '%s'", (int)s, ds_status_string(s), msg);
    char name[64] = "x";
    msg[0] = 0;
    s = dsi_cuda_device_name(name, sizeof name, msg, MSGLEN);
    T_CHECK("cuda-ops-0.9", s == DS_ERR_NO_DEVICE && name[0] == 0 && msg[0],
            "device_name without a device: status %d (%s), message '%s'", (int)s, ds_status_string(s), msg);
    void *ev = (void *)1;
    msg[0] = 0;
    s = dsi_cuda_event_new(&ev, msg, MSGLEN);
    T_CHECK("cuda-ops-0.9", s == DS_ERR_NO_DEVICE && ev == NULL && msg[0],
            "event_new without a device: status %d (%s), message '%s'", (int)s, ds_status_string(s), msg);
}

/* ==== 1. Dequantize ======================================================= */
/* 1.2: Q4_0 against llama.cpp's layout written out by hand, independent of
 * the library's quantizer: two blocks, d = 0.5 and d = -2 (F16 0x3800,
 * 0xc000); byte j of the first holds value j in its low nibble and value
 * j + 16 in its high one, stored as q + 8: low j, high 15 - j, so value j
 * is (j - 8) d and value j + 16 is (7 - j) d. The second block repeats
 * byte 0x0f (values 0..15: q = 7, 16..31: q = -8). Dequantize, embed and
 * the GEMV (x all ones: the row sums) must give these numbers. */
static void case_q4_layout(void) {
    const char *id = "cuda-ops-1.2";
    uint8_t blk[2 * 18];
    float want[64];
    blk[0] = 0x00, blk[1] = 0x38;
    blk[18] = 0x00, blk[19] = 0xc0;
    for (int j = 0; j < 16; j++) {
        blk[2 + j] = (uint8_t)(j | ((15 - j) << 4));
        blk[20 + j] = 0x0f;
        want[j] = (float)(j - 8) * 0.5f;
        want[j + 16] = (float)(7 - j) * 0.5f;
        want[32 + j] = 7.0f * -2.0f;
        want[48 + j] = -8.0f * -2.0f;
    }
    float got[64], ones[64], y[2];
    for (int i = 0; i < 64; i++) ones[i] = 1.0f;
    ds_status s = dsi_cuda_dequantize_host(DS_DTYPE_Q4_0, blk, sizeof blk, got, 64, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    int bad = 0;
    for (int i = 0; s == DS_OK && i < 64; i++) bad += got[i] != want[i];
    T_CHECK(id, bad == 0, "dequantize: %d of 64 values differ", bad);
    /* the same bytes as a table of two rows of one block, and as a
     * matrix of two rows */
    int tok[2] = {1, 0};
    void *dt = NULL, *dk = NULL, *dx = NULL, *d1 = NULL, *dy = NULL;
    if (!(dt = dev_up(id, blk, sizeof blk)) || !(dk = dev_up(id, tok, sizeof tok)) ||
        !(dx = dev_up(id, NULL, sizeof got)) || !(d1 = dev_up(id, ones, 32 * sizeof(float))) ||
        !(dy = dev_up(id, NULL, sizeof y)))
        goto done;
    s = dsi_cuda_embed(DS_DTYPE_Q4_0, dt, 2, 32, dk, 2, dx, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, got, dx, sizeof got)) goto done;
    bad = 0;
    for (int i = 0; i < 32; i++) bad += got[i] != want[32 + i] || got[32 + i] != want[i];
    T_CHECK(id, bad == 0, "embed: %d of 64 values differ", bad);
    s = dsi_cuda_gemv(DS_DTYPE_Q4_0, dt, 2, 32, d1, 32, 1, dy, 2, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, y, dy, sizeof y)) goto done;
    /* sums of small multiples of 0.5: exact in any order */
    float s0 = 0, s1 = 0;
    for (int i = 0; i < 32; i++) s0 += want[i], s1 += want[32 + i];
    T_CHECK(id, y[0] == s0 && y[1] == s1, "gemv: %g %g, want %g %g", y[0], y[1], s0, s1);
done:
    dsi_cuda_free(dt), dsi_cuda_free(dk), dsi_cuda_free(dx), dsi_cuda_free(d1), dsi_cuda_free(dy);
}

static void case_dequantize(void) {
    const int ns[] = {32, 96, 7168, 32 * 1000};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int n = ns[k];
        for (int t = DS_DTYPE_F16; t <= LAST_DTYPE; t++) {
            size_t rb;
            uint8_t *w = make_weight((ds_dtype)t, 1, n, 3.0f, &rb);
            float *ref = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
            if (!w || !ref || !got) {
                T_CHECK("cuda-ops-1.1", 0, "out of host memory");
                free(w), free(ref), free(got);
                return;
            }
            dsi_weight hw = host_weight((ds_dtype)t, w, 1, n, rb);
            cpu_kernels()->dequant[hw.dtype](w, ref, hw.cols);
            ds_status s = dsi_cuda_dequantize_host((ds_dtype)t, w, rb, got, (size_t)n, msg, MSGLEN);
            T_STATUS("cuda-ops-1.1", s, DS_OK, msg);
            int bad = 0;
            for (int i = 0; s == DS_OK && i < n; i++) bad += got[i] != ref[i];
            T_CHECK("cuda-ops-1.1", bad == 0, "%s n=%d: %d values differ", dtname((ds_dtype)t), n, bad);
            free(w), free(ref), free(got);
        }
    }
    case_q4_layout();
}

/* ==== 2, 3. GEMV and batched matmul ======================================== */
typedef struct mm_shape {
    int rows, cols, T, ldx_pad, ldy_pad;
} mm_shape;

/* Runs one product on the device (gemv when blas is NULL) and checks it. */
static void mm_case(const char *id, dsi_blas *blas, ds_dtype t, mm_shape sh) {
    if (blocked(t) && sh.cols % 32) return;
    int ldx = sh.cols + sh.ldx_pad, ldy = sh.rows + sh.ldy_pad;
    size_t rb;
    uint8_t *w = make_weight(t, sh.rows, sh.cols, 1.0f, &rb);
    float *x = malloc((size_t)sh.T * ldx * sizeof(float));
    float *y = malloc((size_t)sh.T * ldy * sizeof(float));
    float *row = malloc((size_t)sh.cols * sizeof(float));
    void *dw = NULL, *dx = NULL, *dy = NULL;
    if (!w || !x || !y || !row) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    fill(x, (size_t)sh.T * ldx, 2.0f);
    if (!(dw = dev_up(id, w, (size_t)sh.rows * rb)) || !(dx = dev_up(id, x, (size_t)sh.T * ldx * sizeof(float))) ||
        !(dy = dev_up(id, NULL, (size_t)sh.T * ldy * sizeof(float))))
        goto done;
    ds_status s = blas ? dsi_cuda_matmul(blas, t, dw, sh.rows, sh.cols, dx, ldx, sh.T, dy, ldy, stream, msg, MSGLEN)
                       : dsi_cuda_gemv(t, dw, sh.rows, sh.cols, dx, ldx, sh.T, dy, ldy, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, y, dy, (size_t)sh.T * ldy * sizeof(float))) goto done;
    dsi_weight hw = host_weight(t, w, sh.rows, sh.cols, rb);
    int bad = 0;
    double worst = 0;
    for (int r = 0; r < sh.rows; r++) {
        const uint8_t *rp = w + (size_t)r * rb;
        cpu_kernels()->dequant[hw.dtype](rp, row, hw.cols);
        for (int k = 0; k < sh.T; k++) {
            const float *xt = x + (size_t)k * ldx;
            /* the CPU twin: the row dot for one token, dequantized row and
             * dot_f32 for a batch (dsi_mm_task) */
            float ref = sh.T == 1 ? cpu_kernels()->dot[hw.dtype](rp, xt, hw.cols) : cpu_kernels()->dot_f32(row, xt, sh.cols);
            double mag = 0;
            for (int i = 0; i < sh.cols; i++) mag += fabs((double)row[i] * xt[i]);
            double err = fabs((double)y[(size_t)k * ldy + r] - ref), tol = 2e-5 * mag + 1e-6;
            if (err > tol) bad++;
            if (err / tol > worst) worst = err / tol;
        }
    }
    T_CHECK(id, bad == 0, "%s %s rows %d cols %d T %d ldx %d ldy %d: %d of %d values out of tolerance (worst %.2fx)",
            blas ? "matmul" : "gemv", dtname(t), sh.rows, sh.cols, sh.T, ldx, ldy, bad, sh.rows * sh.T, worst);
done:
    dsi_cuda_free(dw);
    dsi_cuda_free(dx);
    dsi_cuda_free(dy);
    free(w), free(x), free(y), free(row);
}

static void case_gemv(void) {
    const mm_shape shapes[] = {
        {1, 32, 1, 0, 0},     {7, 64, 1, 0, 0},     {33, 96, 2, 0, 0},     {130, 1408, 1, 0, 0},
        {64, 7168, 1, 0, 0},  {5, 2048 + 32, 4, 0, 3}, {129, 512, 3, 4, 1}, /* 4-aligned strides: vector path */
        {17, 160, 2, 3, 0},   /* odd ldx: scalar path */
        {5, 1, 1, 0, 0},      {17, 33, 2, 0, 0},    {9, 1001, 3, 0, 0},    {3, 4100, 4, 1, 0}, /* ragged (F16/F32) */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int t = DS_DTYPE_F32; t <= LAST_DTYPE; t++) mm_case("cuda-ops-2.1", NULL, (ds_dtype)t, shapes[k]);
}

static void case_matmul(void) {
    dsi_blas *b = NULL, *small = NULL;
    ds_status s = dsi_cuda_blas_new(&b, 0, 0, msg, MSGLEN);
    T_STATUS("cuda-ops-3.1", s, DS_OK, msg);
    /* 64 KiB: several tiles per matrix */
    if (s == DS_OK) s = dsi_cuda_blas_new(&small, 64 << 10, 0, msg, MSGLEN);
    T_STATUS("cuda-ops-3.1", s, DS_OK, msg);
    if (s != DS_OK) goto done;
    const mm_shape shapes[] = {
        {64, 256, 5, 0, 0}, {130, 1408, 17, 0, 0}, {257, 2048, 64, 3, 5}, {33, 96, 100, 0, 0},
        {17, 33, 9, 0, 0},  {300, 1001, 6, 1, 2}, /* ragged (F16/F32) */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int t = DS_DTYPE_F32; t <= LAST_DTYPE; t++) {
            mm_case("cuda-ops-3.2", b, (ds_dtype)t, shapes[k]);
            mm_case("cuda-ops-3.3", small, (ds_dtype)t, shapes[k]);
        }
    /* T <= DSI_CUDA_GEMV_MAX_T through matmul takes the GEMV */
    mm_case("cuda-ops-3.4", b, DS_DTYPE_Q8_0, (mm_shape){40, 320, 3, 0, 0});
    mm_case("cuda-ops-3.5", b, DS_DTYPE_Q4_0, (mm_shape){40, 320, 3, 0, 0});
done:
    dsi_cuda_blas_free(b);
    dsi_cuda_blas_free(small);
}

/* ==== 4. RMSNorm ========================================================== */
static void case_rmsnorm(void) {
    const int shapes[][4] = {/* n, rows, ldx pad, in place */
                             {1, 1, 0, 0}, {7, 3, 0, 0}, {128, 16, 5, 0}, {1000, 3, 0, 1}, {7168, 4, 0, 0},
                             {512, 37, 64, 0}, {1536, 2, 0, 1}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int n = shapes[k][0], rows = shapes[k][1], ldx = n + shapes[k][2], inplace = shapes[k][3];
        int ldo = inplace ? ldx : n;
        float *x = malloc((size_t)rows * ldx * sizeof(float)), *w = malloc((size_t)n * sizeof(float));
        float *got = malloc((size_t)rows * ldo * sizeof(float)), *ref = malloc((size_t)n * sizeof(float));
        void *dx = NULL, *dw = NULL, *dout = NULL;
        if (!x || !w || !got || !ref) {
            T_CHECK("cuda-ops-4.1", 0, "out of host memory");
            goto next;
        }
        fill(x, (size_t)rows * ldx, 5.0f);
        for (int i = 0; i < n; i++) w[i] = 1.0f + 0.5f * frand();
        if (!(dx = dev_up("cuda-ops-4.1", x, (size_t)rows * ldx * sizeof(float))) ||
            !(dw = dev_up("cuda-ops-4.1", w, (size_t)n * sizeof(float))))
            goto next;
        if (!inplace && !(dout = dev_up("cuda-ops-4.1", NULL, (size_t)rows * ldo * sizeof(float)))) goto next;
        float *o = inplace ? (float *)dx : (float *)dout;
        ds_status s = dsi_cuda_rmsnorm(o, ldo, dx, ldx, dw, n, rows, 1e-6f, stream, msg, MSGLEN);
        T_STATUS("cuda-ops-4.1", s, DS_OK, msg);
        if (s != DS_OK || !dev_down("cuda-ops-4.1", got, o, (size_t)rows * ldo * sizeof(float))) goto next;
        int bad = 0;
        for (int r = 0; r < rows; r++) {
            dsi_rmsnorm(ref, x + (size_t)r * ldx, w, n, 1e-6f);
            for (int i = 0; i < n; i++)
                if (fabsf(got[(size_t)r * ldo + i] - ref[i]) > 2e-5f * fabsf(ref[i]) + 1e-7f) bad++;
        }
        T_CHECK("cuda-ops-4.1", bad == 0, "n %d rows %d ldx %d%s: %d values out of tolerance", n, rows, ldx,
                inplace ? " in place" : "", bad);
    next:
        dsi_cuda_free(dx);
        dsi_cuda_free(dw);
        dsi_cuda_free(dout);
        free(x), free(w), free(got), free(ref);
    }
}

/* ==== 5. SiLU * up ======================================================== */
static void case_silu(void) {
    const size_t ns[] = {1, 1000, 100003};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        float *g = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        void *dg = NULL, *du = NULL;
        if (!g || !u || !got) {
            T_CHECK("cuda-ops-5.1", 0, "out of host memory");
            goto next;
        }
        fill(g, n, 20.0f);
        fill(u, n, 3.0f);
        if (!(dg = dev_up("cuda-ops-5.1", g, n * sizeof(float))) || !(du = dev_up("cuda-ops-5.1", u, n * sizeof(float))))
            goto next;
        ds_status s = dsi_cuda_silu_mul(dg, du, n, stream, msg, MSGLEN);
        T_STATUS("cuda-ops-5.1", s, DS_OK, msg);
        if (s != DS_OK || !dev_down("cuda-ops-5.1", got, dg, n * sizeof(float))) goto next;
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            float ref = silu(g[i]) * u[i];
            if (fabsf(got[i] - ref) > 4e-6f * fabsf(ref) + 1e-30f) bad++;
        }
        T_CHECK("cuda-ops-5.1", bad == 0, "n %zu: %zu values out of tolerance", n, bad);
    next:
        dsi_cuda_free(dg);
        dsi_cuda_free(du);
        free(g), free(u), free(got);
    }
}

/* ==== 6. RoPE ============================================================= */
static ds_model_config rope_config(int yarn) {
    ds_model_config cf;
    memset(&cf, 0, sizeof cf);
    cf.rope_theta = 10000.0f;
    if (yarn) { /* DeepSeek-V2's rope_scaling */
        cf.rope_scaling_yarn = 1;
        cf.rope_factor = 40.0f;
        cf.rope_original_max_position = 4096;
        cf.rope_beta_fast = 32.0f;
        cf.rope_beta_slow = 1.0f;
        cf.rope_mscale = 0.707f;
        cf.rope_mscale_all_dim = 0.707f;
    }
    return cf;
}

static void case_rope(void) {
    /* rope_dim, n_heads, head_stride, offset in the head, T, pos0, interleaved, yarn */
    const int shapes[][8] = {
        {64, 16, 192, 128, 1, 0, 1, 0},    {64, 16, 192, 128, 7, 100, 1, 1}, {64, 1, 64, 0, 5, 160000, 1, 1},
        {128, 8, 128, 0, 3, 17, 0, 0},     {128, 4, 128, 0, 2, 4000, 0, 1},  {2, 3, 5, 3, 4, 9, 0, 0},
        {6, 5, 10, 4, 3, 70000, 1, 0},
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int dim = shapes[k][0], H = shapes[k][1], hs = shapes[k][2], off = shapes[k][3], T = shapes[k][4];
        int pos0 = shapes[k][5], inter = shapes[k][6];
        ds_model_config cf = rope_config(shapes[k][7]);
        rope_tab rt;
        rope_init(&rt, &cf, dim);
        int ld = H * hs;
        size_t n = (size_t)T * ld;
        float *x = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        void *dx = NULL, *df = NULL;
        if (!x || !ref || !got) {
            T_CHECK("cuda-ops-6.1", 0, "out of host memory");
            goto next;
        }
        fill(x, n, 4.0f);
        memcpy(ref, x, n * sizeof(float));
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) rope(&rt, ref + (size_t)t * ld + (size_t)h * hs + off, pos0 + t, inter);
        if (!(dx = dev_up("cuda-ops-6.1", x, n * sizeof(float))) ||
            !(df = dev_up("cuda-ops-6.1", rt.inv_freq, (size_t)dim / 2 * sizeof(float))))
            goto next;
        ds_status s = dsi_cuda_rope((float *)dx + off, ld, hs, H, T, pos0, df, dim, rt.mscale, inter, stream, msg,
                                    MSGLEN);
        T_STATUS("cuda-ops-6.1", s, DS_OK, msg);
        if (s != DS_OK || !dev_down("cuda-ops-6.1", got, dx, n * sizeof(float))) goto next;
        int bad = 0, touched = 0;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                const float *xv = x + (size_t)t * ld + (size_t)h * hs + off;
                const float *rv = ref + (size_t)t * ld + (size_t)h * hs + off;
                const float *gv = got + (size_t)t * ld + (size_t)h * hs + off;
                for (int i = 0; i < dim / 2; i++) {
                    int a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + dim / 2;
                    float tol = 4e-6f * (fabsf(xv[a]) + fabsf(xv[b])) * rt.mscale + 1e-7f;
                    bad += fabsf(gv[a] - rv[a]) > tol;
                    bad += fabsf(gv[b] - rv[b]) > tol;
                }
            }
        /* everything outside the rotated parts is untouched */
        for (size_t i = 0; i < n; i++) {
            size_t in_row = i % (size_t)ld, in_head = in_row % (size_t)hs;
            bool rotated = in_row / (size_t)hs < (size_t)H && in_head >= (size_t)off && in_head < (size_t)(off + dim);
            if (!rotated && got[i] != x[i]) touched++;
        }
        T_CHECK("cuda-ops-6.1", bad == 0 && touched == 0,
                "dim %d heads %d T %d pos0 %d %s%s: %d out of tolerance, %d untouched values changed", dim, H, T, pos0,
                inter ? "interleaved" : "half", shapes[k][7] ? " yarn" : "", bad, touched);
    next:
        dsi_cuda_free(dx);
        dsi_cuda_free(df);
        free(x), free(ref), free(got);
    }
}

/* ==== 7. MLA: cache append and attention ================================== */
typedef struct mla_shape {
    int H, dn, dr, dv, R, n_ctx, pos0, T, yarn;
} mla_shape;

static void mla_case(ds_dtype dt, mla_shape m) {
    const char *id_store = "cuda-ops-7.1", *id_att = "cuda-ops-7.2";
    int hd = m.dn + m.dr, npos = m.pos0 + m.T;
    ds_model_config cf = rope_config(m.yarn);
    rope_tab rt;
    rope_init(&rt, &cf, m.dr);
    float attn_scale = 1.0f / sqrtf((float)hd);
    if (m.yarn) {
        float ms = (float)yarn_mscale(cf.rope_factor, cf.rope_mscale_all_dim);
        attn_scale *= ms * ms;
    }
    size_t rb;
    uint8_t *kvb = make_weight(dt, m.H * (m.dn + m.dv), m.R, 0.15f, &rb);
    float *kva = malloc((size_t)npos * (m.R + m.dr) * sizeof(float));
    float *normw = malloc((size_t)m.R * sizeof(float));
    float *ca = malloc((size_t)m.n_ctx * m.R * sizeof(float)), *cb = malloc((size_t)m.n_ctx * m.dr * sizeof(float));
    float *ga = malloc((size_t)m.n_ctx * m.R * sizeof(float)), *gb = malloc((size_t)m.n_ctx * m.dr * sizeof(float));
    float *q = malloc((size_t)m.T * m.H * hd * sizeof(float));
    float *ref = malloc((size_t)m.T * m.H * m.dv * sizeof(float)), *got = malloc((size_t)m.T * m.H * m.dv * sizeof(float));
    float *scratch = malloc(((size_t)2 * m.R + (size_t)npos + (size_t)m.dr) * sizeof(float));
    void *d_kvb = NULL, *d_kva = NULL, *d_norm = NULL, *d_ca = NULL, *d_cb = NULL, *d_q = NULL, *d_out = NULL,
         *d_f = NULL;
    if (!kvb || !kva || !normw || !ca || !cb || !ga || !gb || !q || !ref || !got || !scratch) {
        T_CHECK(id_att, 0, "out of host memory");
        goto done;
    }
    fill(kva, (size_t)npos * (m.R + m.dr), 2.0f);
    for (int i = 0; i < m.R; i++) normw[i] = 1.0f + 0.3f * frand();
    fill(q, (size_t)m.T * m.H * hd, 1.0f);
    memset(ca, 0, (size_t)m.n_ctx * m.R * sizeof(float));
    memset(cb, 0, (size_t)m.n_ctx * m.dr * sizeof(float));
    /* CPU: the cache append of dsi_attention for every position */
    for (int p = 0; p < npos; p++) {
        const float *kv = kva + (size_t)p * (m.R + m.dr);
        dsi_rmsnorm(ca + (size_t)p * m.R, kv, normw, m.R, 1e-6f);
        memcpy(cb + (size_t)p * m.dr, kv + m.R, (size_t)m.dr * sizeof(float));
        rope(&rt, cb + (size_t)p * m.dr, p, true);
    }
    if (!(d_kvb = dev_up(id_att, kvb, (size_t)m.H * (m.dn + m.dv) * rb)) ||
        !(d_kva = dev_up(id_att, kva, (size_t)npos * (m.R + m.dr) * sizeof(float))) ||
        !(d_norm = dev_up(id_att, normw, (size_t)m.R * sizeof(float))) ||
        !(d_ca = dev_up(id_att, NULL, (size_t)m.n_ctx * m.R * sizeof(float))) ||
        !(d_cb = dev_up(id_att, NULL, (size_t)m.n_ctx * m.dr * sizeof(float))) ||
        !(d_q = dev_up(id_att, q, (size_t)m.T * m.H * hd * sizeof(float))) ||
        !(d_out = dev_up(id_att, NULL, (size_t)m.T * m.H * m.dv * sizeof(float))) ||
        !(d_f = dev_up(id_att, rt.inv_freq, (size_t)m.dr / 2 * sizeof(float))))
        goto done;
    dsi_mla_layer a;
    memset(&a, 0, sizeof a);
    a.n_heads = m.H;
    a.nope_dim = m.dn;
    a.rope_dim = m.dr;
    a.v_dim = m.dv;
    a.rank = m.R;
    a.scale = attn_scale;
    a.rope_mscale = rt.mscale;
    a.inv_freq = d_f;
    a.kv_b_dtype = dt;
    a.kv_b = d_kvb;
    a.cache_lat = d_ca;
    a.cache_pe = d_cb;
    a.n_ctx = m.n_ctx;

    /* 7.1: append every position (the history in one call, then the batch) */
    ds_status s = dsi_cuda_mla_kv_store(&a, d_kva, d_norm, 1e-6f, m.pos0, 0, stream, msg, MSGLEN);
    if (s == DS_OK)
        s = dsi_cuda_mla_kv_store(&a, (float *)d_kva + (size_t)m.pos0 * (m.R + m.dr), d_norm, 1e-6f, m.T, m.pos0,
                                  stream, msg, MSGLEN);
    T_STATUS(id_store, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id_store, ga, d_ca, (size_t)m.n_ctx * m.R * sizeof(float)) ||
        !dev_down(id_store, gb, d_cb, (size_t)m.n_ctx * m.dr * sizeof(float)))
        goto done;
    int bad_lat = 0, bad_pe = 0;
    for (int p = 0; p < npos; p++) {
        for (int i = 0; i < m.R; i++) {
            float r = ca[(size_t)p * m.R + i];
            bad_lat += fabsf(ga[(size_t)p * m.R + i] - r) > 2e-5f * fabsf(r) + 1e-7f;
        }
        const float *src = kva + (size_t)p * (m.R + m.dr) + m.R;
        for (int i = 0; i < m.dr; i++) {
            int pair = i & ~1;
            float tol = 4e-6f * (fabsf(src[pair]) + fabsf(src[pair + 1])) * rt.mscale + 1e-7f;
            bad_pe += fabsf(gb[(size_t)p * m.dr + i] - cb[(size_t)p * m.dr + i]) > tol;
        }
    }
    T_CHECK(id_store, bad_lat == 0 && bad_pe == 0, "%s H %d R %d dr %d positions %d: latent %d, key %d out of tolerance",
            dtname(dt), m.H, m.R, m.dr, npos, bad_lat, bad_pe);

    /* 7.2: attention over the CPU's cache, so only the attention differs */
    if (dsi_cuda_upload(d_ca, ca, (size_t)m.n_ctx * m.R * sizeof(float), stream, msg, MSGLEN) != DS_OK ||
        dsi_cuda_upload(d_cb, cb, (size_t)m.n_ctx * m.dr * sizeof(float), stream, msg, MSGLEN) != DS_OK) {
        T_CHECK(id_att, 0, "upload: %s", msg);
        goto done;
    }
    s = dsi_cuda_mla_attention(&a, d_q, m.T, m.pos0, d_out, stream, msg, MSGLEN);
    T_STATUS(id_att, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id_att, got, d_out, (size_t)m.T * m.H * m.dv * sizeof(float))) goto done;
    dsi_weight hw = host_weight(dt, kvb, m.H * (m.dn + m.dv), m.R, rb);
    float amax = 0;
    for (int t = 0; t < m.T; t++)
        for (int h = 0; h < m.H; h++)
            mla_task(&hw, &rt, q, m.H, m.dn, m.dr, m.dv, m.R, attn_scale, ca, cb, t, h, m.pos0 + t, ref, scratch);
    size_t nout = (size_t)m.T * m.H * m.dv;
    for (size_t i = 0; i < nout; i++) amax = fmaxf(amax, fabsf(ref[i]));
    int bad = 0;
    double worst = 0;
    for (size_t i = 0; i < nout; i++) {
        double err = fabs((double)got[i] - ref[i]), tol = 5e-5 * amax + 1e-6;
        bad += err > tol;
        if (err / tol > worst) worst = err / tol;
    }
    T_CHECK(id_att, bad == 0, "%s H %d dn %d dr %d dv %d R %d pos0 %d T %d%s: %d of %zu out of tolerance (worst %.2fx)",
            dtname(dt), m.H, m.dn, m.dr, m.dv, m.R, m.pos0, m.T, m.yarn ? " yarn" : "", bad, nout, worst);
done:
    dsi_cuda_free(d_kvb), dsi_cuda_free(d_kva), dsi_cuda_free(d_norm), dsi_cuda_free(d_ca);
    dsi_cuda_free(d_cb), dsi_cuda_free(d_q), dsi_cuda_free(d_out), dsi_cuda_free(d_f);
    free(kvb), free(kva), free(normw), free(ca), free(cb), free(ga), free(gb);
    free(q), free(ref), free(got), free(scratch);
}

static void case_mla(void) {
    const mla_shape shapes[] = {
        /* H, dn, dr, dv, R, n_ctx, pos0, T, yarn */
        {16, 128, 64, 128, 512, 64, 0, 1, 0},     /* V2-Lite shape, first token */
        {16, 128, 64, 128, 512, 1024, 700, 1, 1}, /* decode across several softmax tiles */
        {4, 128, 64, 128, 512, 600, 230, 37, 1},  /* prefill crossing a tile boundary */
        {3, 16, 8, 24, 64, 40, 5, 6, 0},          /* small, ragged head counts */
        {2, 32, 2, 7, 96, 300, 257, 3, 0},        /* minimal rope, odd value dim */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int t = DS_DTYPE_F32; t <= LAST_DTYPE; t++) mla_case((ds_dtype)t, shapes[k]);
}

/* ==== 8. Routing ========================================================== */
typedef struct route_case {
    const char *name;
    ds_arch arch;
    int E, K, G, kg;
    ds_topk_method method;
    ds_scoring scoring;
    int norm;
    float factor;
    int bias;
    float logit_mag; /* 0: all logits equal (ties everywhere) */
} route_case;

/* drop > 0: experts x with (5x + 1) % drop == 0 were dropped at conversion
 * (a kept map, as dsi_route_kept) */
static void route_one(const route_case *rc, int T, int drop) {
    const char *id = "cuda-ops-8.1";
    ds_model_config cf;
    memset(&cf, 0, sizeof cf);
    cf.arch = rc->arch;
    cf.n_routed_experts = rc->E;
    cf.n_experts_per_tok = rc->K;
    cf.n_group = rc->G;
    cf.topk_group = rc->kg;
    cf.topk_method = rc->method;
    cf.scoring_func = rc->scoring;
    cf.norm_topk_prob = rc->norm;
    cf.routed_scaling_factor = rc->factor;
    int E = rc->E, K = rc->K;
    float *logits = malloc((size_t)T * E * sizeof(float)), *bias = malloc((size_t)E * sizeof(float));
    float *scratch = malloc((size_t)5 * E * sizeof(float)), *wref = malloc((size_t)K * sizeof(float));
    float *wgot = malloc((size_t)T * K * sizeof(float));
    int *sref = malloc((size_t)K * sizeof(int)), *sgot = malloc((size_t)T * K * sizeof(int));
    void *dl = NULL, *db = NULL, *ds = NULL, *dw = NULL, *dk = NULL;
    if (!logits || !bias || !scratch || !wref || !wgot || !sref || !sgot) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    fill(logits, (size_t)T * E, rc->logit_mag);
    fill(bias, (size_t)E, 0.05f);
    /* a kept map: rows [0, n_kept) of each logits row and of the bias are the
     * kept experts'; the rest of a row is never read (a huge value there
     * would be chosen) */
    int32_t kept[1024];
    int n_kept = 0;
    for (int x = 0; x < E && drop; x++)
        if ((5 * x + 1) % drop) kept[n_kept++] = x;
    for (int t = 0; t < T && drop; t++)
        for (int i = n_kept; i < E; i++) logits[(size_t)t * E + i] = 1e30f;
    if (!(dl = dev_up(id, logits, (size_t)T * E * sizeof(float))) ||
        (rc->bias && !(db = dev_up(id, bias, (size_t)E * sizeof(float)))) ||
        (drop && !(dk = dev_up(id, kept, (size_t)n_kept * sizeof(int32_t)))) ||
        !(ds = dev_up(id, NULL, (size_t)T * K * sizeof(int))) || !(dw = dev_up(id, NULL, (size_t)T * K * sizeof(float))))
        goto done;
    ds_status s = dsi_cuda_route(&cf, dl, db, dk, n_kept, T, ds, dw, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, sgot, ds, (size_t)T * K * sizeof(int)) ||
        !dev_down(id, wgot, dw, (size_t)T * K * sizeof(float)))
        goto done;
    int bad_sel = 0, bad_w = 0, ties = 0;
    for (int t = 0; t < T; t++) {
        dsi_route_kept(&cf, logits + (size_t)t * E, rc->bias ? bias : NULL, drop ? kept : NULL, n_kept, scratch,
                       sref, wref);
        const float *choice = scratch + E; /* dsi_route leaves the masked selection scores here */
        const int *g = sgot + (size_t)t * K;
        bool same = memcmp(g, sref, (size_t)K * sizeof(int)) == 0;
        if (same) {
            for (int k = 0; k < K; k++)
                bad_w += fabsf(wgot[(size_t)t * K + k] - wref[k]) > 1e-5f * fabsf(wref[k]) + 1e-7f;
            continue;
        }
        /* a different pick is fine only between near-equal choice scores;
         * exactly equal ones (identical inputs) must go to the lower index */
        bool near = true;
        for (int k = 0; k < K && near; k++) {
            if (g[k] < 0 || g[k] >= E) {
                near = false;
                break;
            }
            float a = choice[g[k]], b = choice[sref[k]];
            if (g[k] != sref[k] && (a == b || !(fabsf(a - b) <= 1e-5f * fmaxf(fabsf(a), fabsf(b))))) near = false;
        }
        if (near) ties++;
        else bad_sel++;
    }
    T_CHECK(id, bad_sel == 0 && bad_w == 0, "%s T %d: %d tokens select other experts, %d weights out of tolerance",
            rc->name, T, bad_sel, bad_w);
    if (ties) printf("note cuda-ops-8.1 %s: %d of %d tokens differ only between near-equal scores\n", rc->name, ties, T);
done:
    dsi_cuda_free(dl), dsi_cuda_free(db), dsi_cuda_free(ds), dsi_cuda_free(dw), dsi_cuda_free(dk);
    free(logits), free(bias), free(scratch), free(wref), free(wgot), free(sref), free(sgot);
}

static void case_route(void) {
    static const route_case cases[] = {
        /* name, arch, E, K, G, kg, method, scoring, norm, factor, bias, logit magnitude */
        {"moe16b greedy softmax", DS_ARCH_DEEPSEEK_MOE, 64, 6, 1, 1, DS_TOPK_GREEDY, DS_SCORING_SOFTMAX, 0, 1.0f, 0, 4},
        {"v2-lite greedy", DS_ARCH_DEEPSEEK_V2, 64, 6, 1, 1, DS_TOPK_GREEDY, DS_SCORING_SOFTMAX, 0, 1.0f, 0, 4},
        {"v2 group-limited", DS_ARCH_DEEPSEEK_V2, 160, 6, 8, 3, DS_TOPK_GROUP_LIMITED_GREEDY, DS_SCORING_SOFTMAX, 0,
         16.0f, 0, 4},
        {"v2 group-limited norm", DS_ARCH_DEEPSEEK_V2, 160, 6, 8, 3, DS_TOPK_GROUP_LIMITED_GREEDY, DS_SCORING_SOFTMAX, 1,
         16.0f, 0, 4},
        {"v3 noaux_tc", DS_ARCH_DEEPSEEK_V3, 256, 8, 8, 4, DS_TOPK_NOAUX_TC, DS_SCORING_SIGMOID, 1, 2.5f, 1, 4},
        {"v3 noaux_tc no bias", DS_ARCH_DEEPSEEK_V3, 256, 8, 8, 4, DS_TOPK_NOAUX_TC, DS_SCORING_SIGMOID, 1, 2.5f, 0, 4},
        {"v3 k=1", DS_ARCH_DEEPSEEK_V3, 64, 1, 4, 2, DS_TOPK_NOAUX_TC, DS_SCORING_SIGMOID, 1, 2.5f, 1, 4},
        /* more picks than the kept groups hold: masked experts are picked,
         * -inf (V3) or 0.0 (V2) ties broken to the lower index */
        {"v3 masked picks", DS_ARCH_DEEPSEEK_V3, 16, 6, 8, 2, DS_TOPK_NOAUX_TC, DS_SCORING_SIGMOID, 1, 2.5f, 1, 4},
        {"v2 masked picks", DS_ARCH_DEEPSEEK_V2, 16, 6, 8, 2, DS_TOPK_GROUP_LIMITED_GREEDY, DS_SCORING_SOFTMAX, 0, 1.0f,
         0, 4},
        /* E not a multiple of the groups: the tail experts are never masked */
        {"v2 ragged groups", DS_ARCH_DEEPSEEK_V2, 20, 4, 3, 1, DS_TOPK_GROUP_LIMITED_GREEDY, DS_SCORING_SOFTMAX, 0, 1.0f,
         0, 4},
        /* all logits equal: every comparison is a tie */
        {"ties softmax", DS_ARCH_DEEPSEEK_V2, 64, 6, 1, 1, DS_TOPK_GREEDY, DS_SCORING_SOFTMAX, 0, 1.0f, 0, 0},
        {"ties sigmoid groups", DS_ARCH_DEEPSEEK_V3, 64, 8, 8, 3, DS_TOPK_NOAUX_TC, DS_SCORING_SIGMOID, 1, 2.5f, 0, 0},
        {"many experts", DS_ARCH_DEEPSEEK_V3, 1024, 16, 16, 4, DS_TOPK_NOAUX_TC, DS_SCORING_SIGMOID, 1, 2.5f, 1, 4},
    };
    const int Ts[] = {1, 3, 200};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) route_one(&cases[c], Ts[k], 0);
    /* experts dropped at conversion (a kept map; -inf logits): cases 1
     * (greedy), 3 (group-limited, normalised), 4 (noaux_tc) and 7 (noaux_tc,
     * groups of two: some lose a member and score -inf) */
    static const struct { size_t c; int drop; } dropped[] = {{1, 4}, {3, 3}, {4, 4}, {7, 3}};
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) route_one(&cases[dropped[i].c], Ts[k], dropped[i].drop);
}

/* ==== 9. Out of memory ==================================================== */
static void case_oom(void) {
    void *p = (void *)1;
    msg[0] = 0;
    ds_status s = dsi_cuda_alloc(&p, (size_t)1 << 60, msg, MSGLEN);
    T_CHECK("cuda-ops-9.1", s == DS_ERR_NOMEM && p == NULL && strstr(msg, "asked for") && strstr(msg, "free"),
            "status %d (%s), message '%s'", (int)s, ds_status_string(s), msg);
    /* the failure leaves no error behind for the next call */
    s = dsi_cuda_alloc(&p, 4096, msg, MSGLEN);
    T_STATUS("cuda-ops-9.1", s, DS_OK, msg);
    dsi_cuda_free(p);
}

/* ==== 10. Events, memset, copy, device queries ============================ */
static void case_events(void) {
    const char *id = "cuda-ops-10.1";
    /* the queries */
    size_t fr = 0, tot = 0;
    ds_status s = dsi_cuda_mem_info(&fr, &tot, msg, MSGLEN);
    T_STATUS("cuda-ops-10.1", s, DS_OK, msg);
    T_CHECK("cuda-ops-10.1", s != DS_OK || (tot > 0 && fr <= tot), "mem_info: %zu free of %zu", fr, tot);
    char name[256], small[4];
    s = dsi_cuda_device_name(name, sizeof name, msg, MSGLEN);
    T_STATUS("cuda-ops-10.1", s, DS_OK, msg);
    T_CHECK("cuda-ops-10.1", s != DS_OK || name[0], "device_name is empty");
    if (s == DS_OK) printf("note cuda-ops-10.1: device '%s', %.1f of %.1f GiB free\n", name, (double)fr / 1073741824.0,
                           (double)tot / 1073741824.0);
    memset(small, 'x', sizeof small);
    s = dsi_cuda_device_name(small, sizeof small, msg, MSGLEN);
    T_CHECK("cuda-ops-10.1", s == DS_OK && strlen(small) < sizeof small && strncmp(small, name, strlen(small)) == 0,
            "device_name into 4 bytes: status %d, '%.4s'", (int)s, small);

    /* 10.2: memset and copy, ragged byte ranges at odd offsets; bytes outside
     * a range stay as they were */
    id = "cuda-ops-10.2";
    enum { NB = 4099 };
    uint8_t *h = malloc(NB), *ref = malloc(NB), *got = malloc(NB);
    uint8_t *da = NULL, *db = NULL;
    void *s2 = NULL, *ev = NULL, *ev2 = NULL;
    if (!h || !ref || !got) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    for (int i = 0; i < NB; i++) h[i] = (uint8_t)(i * 7 + 3);
    if (!(da = dev_up(id, h, NB)) || !(db = dev_up(id, h, NB))) goto done;
    memcpy(ref, h, NB);
    s = dsi_cuda_memset(da + 1, 0xab, 1000, stream, msg, MSGLEN);
    memset(ref + 1, 0xab, 1000);
    if (s == DS_OK) s = dsi_cuda_memset(da + 2000, -1, 3, stream, msg, MSGLEN); /* as memset: 0xff */
    memset(ref + 2000, 0xff, 3);
    if (s == DS_OK) s = dsi_cuda_memset(da + 3001, 0x1c5, 1, stream, msg, MSGLEN); /* the low byte */
    ref[3001] = 0xc5;
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, got, da, NB)) goto done;
    T_CHECK(id, memcmp(got, ref, NB) == 0, "memset: bytes differ");
    s = dsi_cuda_copy(db + 5, da + 3, 4000, stream, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_copy(db + 4050, da, 1, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    memcpy(h + 5, ref + 3, 4000);
    h[4050] = ref[0];
    if (s != DS_OK || !dev_down(id, got, db, NB)) goto done;
    T_CHECK(id, memcmp(got, h, NB) == 0, "copy: bytes differ");

    /* 10.3: events order two streams: a second stream waits for the first's
     * memset before it copies; the host waits for the second's event */
    id = "cuda-ops-10.3";
    s = dsi_cuda_stream_new(&s2, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_event_new(&ev, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_event_new(&ev2, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK) goto done;
    s = dsi_cuda_memset(da, 0x5a, NB, stream, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_event_record(ev, stream, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_stream_wait(s2, ev, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_copy(db, da, NB, s2, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_event_record(ev2, s2, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_event_sync(ev2, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, got, db, NB)) goto done;
    int bad = 0;
    for (int i = 0; i < NB; i++) bad += got[i] != 0x5a;
    T_CHECK(id, bad == 0, "copy after an event: %d bytes differ", bad);
    /* recording again reuses the event; waiting on the legacy stream works */
    s = dsi_cuda_event_record(ev, NULL, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_stream_wait(stream, ev, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_event_sync(ev, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
done:
    dsi_cuda_event_free(ev);
    dsi_cuda_event_free(ev2);
    dsi_cuda_stream_free(s2);
    dsi_cuda_free(da), dsi_cuda_free(db);
    free(h), free(ref), free(got);
}

/* ==== 11. Embedding ======================================================= */
static void embed_case(ds_dtype dt, int rows, int cols, int T, int bad_tokens) {
    const char *id = bad_tokens ? "cuda-ops-11.2" : "cuda-ops-11.1";
    if (blocked(dt) && cols % 32) return;
    size_t rb;
    uint8_t *tab = make_weight(dt, rows, cols, 2.0f, &rb);
    int *tok = malloc((size_t)T * sizeof(int));
    float *ref = malloc((size_t)T * cols * sizeof(float)), *got = malloc((size_t)T * cols * sizeof(float));
    void *dtab = NULL, *dtok = NULL, *dx = NULL;
    if (!tab || !tok || !ref || !got) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    /* random rows, the first and last included, repeats allowed */
    for (int t = 0; t < T; t++) tok[t] = (int)((frand() + 1.0f) * 0.5f * (float)rows) % rows;
    tok[0] = rows - 1;
    if (T > 1) tok[T - 1] = 0;
    if (bad_tokens) { /* the guard: a token outside the table gives NaN */
        tok[0] = rows;
        if (T > 1) tok[1] = -1;
    }
    dsi_weight hw = host_weight(dt, tab, rows, cols, rb);
    for (int t = 0; t < T; t++)
        if (tok[t] >= 0 && tok[t] < rows) cpu_kernels()->dequant[hw.dtype](tab + (size_t)tok[t] * rb, ref + (size_t)t * cols, hw.cols);
    if (!(dtab = dev_up(id, tab, (size_t)rows * rb)) || !(dtok = dev_up(id, tok, (size_t)T * sizeof(int))) ||
        !(dx = dev_up(id, NULL, (size_t)T * cols * sizeof(float))))
        goto done;
    ds_status s = dsi_cuda_embed(dt, dtab, rows, cols, dtok, T, dx, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, got, dx, (size_t)T * cols * sizeof(float))) goto done;
    int bad = 0;
    for (int t = 0; t < T; t++) {
        bool valid = tok[t] >= 0 && tok[t] < rows;
        for (int j = 0; j < cols; j++) {
            float g = got[(size_t)t * cols + j];
            bad += valid ? memcmp(&g, &ref[(size_t)t * cols + j], sizeof g) != 0 : !isnan(g);
        }
    }
    T_CHECK(id, bad == 0, "%s rows %d cols %d T %d%s: %d values differ", dtname(dt), rows, cols, T,
            bad_tokens ? " (tokens outside)" : "", bad);
done:
    dsi_cuda_free(dtab), dsi_cuda_free(dtok), dsi_cuda_free(dx);
    free(tab), free(tok), free(ref), free(got);
}

static void case_embed(void) {
    const int shapes[][3] = {/* rows, cols, T */
                             {10, 32, 1}, {100, 96, 7}, {37, 33, 5}, {5, 2048 + 32, 3}, {3, 1, 4}, {1, 64, 2}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int t = DS_DTYPE_F32; t <= LAST_DTYPE; t++)
            embed_case((ds_dtype)t, shapes[k][0], shapes[k][1], shapes[k][2], 0);
    for (int t = DS_DTYPE_F32; t <= LAST_DTYPE; t++) embed_case((ds_dtype)t, 20, 64, 3, 1);
}

/* ==== 12. Residual add ==================================================== */
static void case_add(void) {
    const size_t ns[] = {1, 1000, 100003};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        size_t n = ns[k];
        float *y = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        void *dy = NULL, *dx = NULL;
        if (!y || !x || !got) {
            T_CHECK("cuda-ops-12.1", 0, "out of host memory");
            goto next;
        }
        fill(y, n, 30.0f);
        fill(x, n, 0.01f);
        if (!(dy = dev_up("cuda-ops-12.1", y, n * sizeof(float))) ||
            !(dx = dev_up("cuda-ops-12.1", x, n * sizeof(float))))
            goto next;
        ds_status s = dsi_cuda_add(dy, dx, n, stream, msg, MSGLEN);
        T_STATUS("cuda-ops-12.1", s, DS_OK, msg);
        if (s != DS_OK || !dev_down("cuda-ops-12.1", got, dy, n * sizeof(float))) goto next;
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            float ref = y[i];
            ref += x[i]; /* the residual loop: c->x[i] += c->tmp[i] */
            bad += memcmp(&got[i], &ref, sizeof ref) != 0;
        }
        T_CHECK("cuda-ops-12.1", bad == 0, "n %zu: %zu values differ", n, bad);
    next:
        dsi_cuda_free(dy), dsi_cuda_free(dx);
        free(y), free(x), free(got);
    }
}

/* ==== 13. MoE gather and weighted scatter-add ============================= */
/* A random permutation's first n entries: n distinct rows of [0, rows). */
static void distinct_rows(int *idx, int n, int rows, int *perm) {
    for (int i = 0; i < rows; i++) perm[i] = i;
    for (int i = 0; i < n; i++) {
        int j = i + (int)((frand() + 1.0f) * 0.5f * (float)(rows - i)) % (rows - i);
        int tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
        idx[i] = perm[i];
    }
}

/* Gathers n rows of a (rows, cols) matrix, repeats allowed; a spare row
 * after the n must stay untouched. */
static void gather_case(int rows, int cols, int n) {
    const char *id = "cuda-ops-13.1";
    float *src = malloc((size_t)rows * cols * sizeof(float)), *got = malloc((size_t)(n + 1) * cols * sizeof(float));
    float *init = malloc((size_t)(n + 1) * cols * sizeof(float));
    int *idx = malloc((size_t)(n ? n : 1) * sizeof(int));
    void *dsrc = NULL, *ddst = NULL, *didx = NULL;
    if (!src || !got || !init || !idx) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    fill(src, (size_t)rows * cols, 5.0f);
    fill(init, (size_t)(n + 1) * cols, 1.0f);
    for (int i = 0; i < n; i++) idx[i] = (int)((frand() + 1.0f) * 0.5f * (float)rows) % rows;
    if (n > 0) idx[0] = rows - 1;
    if (!(dsrc = dev_up(id, src, (size_t)rows * cols * sizeof(float))) ||
        !(ddst = dev_up(id, init, (size_t)(n + 1) * cols * sizeof(float))) ||
        !(didx = dev_up(id, idx, (size_t)(n ? n : 1) * sizeof(int))))
        goto done;
    ds_status s = dsi_cuda_gather_rows(ddst, dsrc, didx, n, cols, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, got, ddst, (size_t)(n + 1) * cols * sizeof(float))) goto done;
    /* the CPU: memcpy(xe + i * D, xn + (etok[i] / K) * D, D floats) */
    for (int i = 0; i < n; i++)
        memcpy(init + (size_t)i * cols, src + (size_t)idx[i] * cols, (size_t)cols * sizeof(float));
    T_CHECK(id, memcmp(got, init, (size_t)(n + 1) * cols * sizeof(float)) == 0,
            "rows %d cols %d n %d: values differ (or the spare row changed)", rows, cols, n);
done:
    dsi_cuda_free(dsrc), dsi_cuda_free(ddst), dsi_cuda_free(didx);
    free(src), free(got), free(init), free(idx);
}

/* The MoE's combine: for each of E experts in order, n of the T token rows
 * of y (distinct) get w * that expert's output rows added. */
static void scatter_case(int T, int cols, int E) {
    const char *id = "cuda-ops-13.2";
    float *y = malloc((size_t)T * cols * sizeof(float)), *got = malloc((size_t)T * cols * sizeof(float));
    float *src = malloc((size_t)T * cols * sizeof(float)), *w = malloc((size_t)T * sizeof(float));
    int *idx = malloc((size_t)T * sizeof(int)), *perm = malloc((size_t)T * sizeof(int));
    void *dy = NULL, *dsrc = NULL, *dw = NULL, *didx = NULL;
    ds_status s = DS_OK;
    if (!y || !got || !src || !w || !idx || !perm) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    fill(y, (size_t)T * cols, 1.0f);
    if (!(dy = dev_up(id, y, (size_t)T * cols * sizeof(float))) ||
        !(dsrc = dev_up(id, NULL, (size_t)T * cols * sizeof(float))) ||
        !(dw = dev_up(id, NULL, (size_t)T * sizeof(float))) || !(didx = dev_up(id, NULL, (size_t)T * sizeof(int))))
        goto done;
    for (int x = 0; x < E && s == DS_OK; x++) {
        int n = 1 + (int)((frand() + 1.0f) * 0.5f * (float)T) % T; /* 1..T tokens */
        if (x == E - 1) n = T;                                      /* every row once */
        distinct_rows(idx, n, T, perm);
        fill(src, (size_t)n * cols, 3.0f);
        for (int i = 0; i < n; i++) w[i] = (frand() + 1.0f) * 0.5f;
        s = dsi_cuda_upload(dsrc, src, (size_t)n * cols * sizeof(float), stream, msg, MSGLEN);
        if (s == DS_OK) s = dsi_cuda_upload(dw, w, (size_t)n * sizeof(float), stream, msg, MSGLEN);
        if (s == DS_OK) s = dsi_cuda_upload(didx, idx, (size_t)n * sizeof(int), stream, msg, MSGLEN);
        if (s == DS_OK) s = dsi_cuda_scatter_add(dy, dsrc, didx, dw, n, cols, stream, msg, MSGLEN);
        /* uploads from pageable memory may be pending: the host buffers are
         * rewritten by the next expert */
        if (s == DS_OK) s = dsi_cuda_sync(stream, msg, MSGLEN);
        /* the CPU: dst[d] += wgt * src[d] for each of the expert's tokens */
        for (int i = 0; i < n; i++) {
            float wgt = w[i], *dst = y + (size_t)idx[i] * cols;
            const float *sr = src + (size_t)i * cols;
            for (int d = 0; d < cols; d++) dst[d] += wgt * sr[d];
        }
    }
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, got, dy, (size_t)T * cols * sizeof(float))) goto done;
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)T * cols; i++) bad += memcmp(&got[i], &y[i], sizeof y[i]) != 0;
    T_CHECK(id, bad == 0, "T %d cols %d experts %d: %zu values differ", T, cols, E, bad);
done:
    dsi_cuda_free(dy), dsi_cuda_free(dsrc), dsi_cuda_free(dw), dsi_cuda_free(didx);
    free(y), free(got), free(src), free(w), free(idx), free(perm);
}

static void case_moe_rows(void) {
    const int g[][3] = {/* rows, cols, n */ {4, 1, 1}, {7, 2048, 7}, {40, 33, 13}, {3, 64, 9}, {5, 16, 0}};
    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) gather_case(g[k][0], g[k][1], g[k][2]);
    const int sc[][3] = {/* T, cols, experts */ {1, 32, 1}, {9, 1001, 6}, {40, 64, 8}, {3, 2048, 4}};
    for (size_t k = 0; k < sizeof sc / sizeof sc[0]; k++) scatter_case(sc[k][0], sc[k][1], sc[k][2]);
}

/* ==== 14. Multi-head attention (DeepSeek-MoE) ============================= */
typedef struct mha_shape {
    int H, Hk, hd, n_ctx, pos0, T;
} mha_shape;

static void mha_case(mha_shape m) {
    const char *id = "cuda-ops-14.1";
    int npos = m.pos0 + m.T;
    size_t kd = (size_t)m.Hk * m.hd, nq = (size_t)m.T * m.H * m.hd;
    float scale = 1.0f / sqrtf((float)m.hd);
    float *K = malloc((size_t)m.n_ctx * kd * sizeof(float)), *V = malloc((size_t)m.n_ctx * kd * sizeof(float));
    float *q = malloc(nq * sizeof(float)), *ref = malloc(nq * sizeof(float)), *got = malloc(nq * sizeof(float));
    float *scratch = malloc((size_t)npos * sizeof(float));
    void *dk = NULL, *dv = NULL, *dq = NULL, *dout = NULL;
    if (!K || !V || !q || !ref || !got || !scratch) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    fill(K, (size_t)npos * kd, 1.0f);
    fill(V, (size_t)npos * kd, 1.0f);
    fill(q, nq, 3.0f);
    /* positions the tokens may not see are NaN: reading one shows */
    for (size_t i = (size_t)npos * kd; i < (size_t)m.n_ctx * kd; i++) K[i] = V[i] = NAN;
    if (!(dk = dev_up(id, K, (size_t)m.n_ctx * kd * sizeof(float))) ||
        !(dv = dev_up(id, V, (size_t)m.n_ctx * kd * sizeof(float))) || !(dq = dev_up(id, q, nq * sizeof(float))) ||
        !(dout = dev_up(id, NULL, nq * sizeof(float))))
        goto done;
    dsi_mha_layer a;
    memset(&a, 0, sizeof a);
    a.n_heads = m.H;
    a.n_kv_heads = m.Hk;
    a.head_dim = m.hd;
    a.scale = scale;
    a.cache_k = dk;
    a.cache_v = dv;
    a.n_ctx = m.n_ctx;
    ds_status s = dsi_cuda_mha_attention(&a, dq, m.T, m.pos0, dout, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, got, dout, nq * sizeof(float))) goto done;
    for (int t = 0; t < m.T; t++)
        for (int h = 0; h < m.H; h++) mha_task(q, K, V, m.H, m.Hk, m.hd, scale, t, h, m.pos0 + t, ref, scratch);
    float amax = 0;
    for (size_t i = 0; i < nq; i++) amax = fmaxf(amax, fabsf(ref[i]));
    int bad = 0;
    double worst = 0;
    for (size_t i = 0; i < nq; i++) {
        double err = fabs((double)got[i] - ref[i]), tol = 5e-5 * amax + 1e-6;
        if (!(err <= tol)) bad++; /* NaN counts */
        if (err / tol > worst) worst = err / tol;
    }
    T_CHECK(id, bad == 0, "H %d Hk %d hd %d pos0 %d T %d: %d of %zu out of tolerance (worst %.2fx)", m.H, m.Hk, m.hd,
            m.pos0, m.T, bad, nq, worst);
done:
    dsi_cuda_free(dk), dsi_cuda_free(dv), dsi_cuda_free(dq), dsi_cuda_free(dout);
    free(K), free(V), free(q), free(ref), free(got), free(scratch);
}

static void case_mha(void) {
    const mha_shape shapes[] = {
        /* H, Hk, hd, n_ctx, pos0, T */
        {16, 16, 128, 64, 0, 1},     /* DeepSeek-MoE 16B shape, first token */
        {16, 16, 128, 1024, 700, 1}, /* decode across several softmax tiles */
        {4, 4, 128, 600, 230, 37},   /* prefill crossing a tile boundary */
        {8, 2, 64, 300, 250, 12},    /* GQA, 4 heads per kv head, across a tile */
        {6, 3, 24, 40, 5, 6},        /* small, ragged */
        {3, 1, 7, 530, 513, 3},      /* one kv head, odd head dim, third tile */
        {2, 2, 300, 24, 0, 20},      /* head dim above the block's threads */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) mha_case(shapes[k]);
}

/* ==== 15. LoRA products ==================================================== */
typedef struct lora_shape {
    int r, in, out, T, ldx_pad, ldy_pad;
} lora_shape;

/* y += s B (A x) on the device against a double-precision reference from
 * the same stored A and B; the padding of y's rows must stay as it was. */
static void lora_case(const char *id, dsi_blas *blas, ds_dtype ta, ds_dtype tb, lora_shape sh, float sc) {
    int ldx = sh.in + sh.ldx_pad, ldy = sh.out + sh.ldy_pad;
    size_t rba, rbb, ny = (size_t)sh.T * ldy, nx = (size_t)sh.T * ldx;
    uint8_t *A = make_weight(ta, sh.r, sh.in, 0.5f, &rba), *B = make_weight(tb, sh.out, sh.r, 0.5f, &rbb);
    float *x = malloc(nx * sizeof(float)), *y0 = malloc(ny * sizeof(float)), *y = malloc(ny * sizeof(float));
    float *af = malloc((size_t)sh.r * sh.in * sizeof(float)), *bf = malloc((size_t)sh.out * sh.r * sizeof(float));
    double *t = malloc((size_t)sh.r * sizeof(double)), *mag = malloc((size_t)sh.r * sizeof(double));
    void *dA = NULL, *dB = NULL, *dx = NULL, *dy = NULL, *dt = NULL;
    if (!A || !B || !x || !y0 || !y || !af || !bf || !t || !mag) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    fill(x, nx, 2.0f);
    fill(y0, ny, 3.0f);
    for (int q = 0; q < sh.r; q++) cpu_kernels()->dequant[ta](A + (size_t)q * rba, af + (size_t)q * sh.in, sh.in);
    for (int i = 0; i < sh.out; i++) cpu_kernels()->dequant[tb](B + (size_t)i * rbb, bf + (size_t)i * sh.r, sh.r);
    if (!(dA = dev_up(id, A, (size_t)sh.r * rba)) || !(dB = dev_up(id, B, (size_t)sh.out * rbb)) ||
        !(dx = dev_up(id, x, nx * sizeof(float))) || !(dy = dev_up(id, y0, ny * sizeof(float))) ||
        !(dt = dev_up(id, NULL, DSI_CUDA_LORA_TMP(sh.T, sh.r, sh.out) * sizeof(float))))
        goto done;
    ds_status s = dsi_cuda_lora(blas, ta, dA, tb, dB, sh.r, sh.in, sh.out, sc, dx, ldx, sh.T, dy, ldy, dt, stream, msg,
                                MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, y, dy, ny * sizeof(float))) goto done;
    int bad = 0, pad = 0;
    double worst = 0;
    for (int k = 0; k < sh.T; k++) {
        const float *xt = x + (size_t)k * ldx;
        for (int q = 0; q < sh.r; q++) {
            double acc = 0, m = 0;
            for (int j = 0; j < sh.in; j++) {
                acc += (double)af[(size_t)q * sh.in + j] * xt[j];
                m += fabs((double)af[(size_t)q * sh.in + j] * xt[j]);
            }
            t[q] = acc;
            mag[q] = m;
        }
        for (int i = 0; i < sh.out; i++) {
            double z = 0, zm = 0;
            for (int q = 0; q < sh.r; q++) {
                z += (double)bf[(size_t)i * sh.r + q] * t[q];
                zm += fabs((double)bf[(size_t)i * sh.r + q]) * mag[q];
            }
            double y0v = y0[(size_t)k * ldy + i], ref = y0v + (double)sc * z;
            double err = fabs((double)y[(size_t)k * ldy + i] - ref), tol = 3e-5 * (fabs(y0v) + fabs(sc) * zm) + 1e-6;
            if (!(err <= tol)) bad++;
            if (err / tol > worst) worst = err / tol;
        }
        for (int i = sh.out; i < ldy; i++) pad += memcmp(&y[(size_t)k * ldy + i], &y0[(size_t)k * ldy + i], 4) != 0;
    }
    T_CHECK(id, bad == 0 && pad == 0,
            "A %s B %s r %d in %d out %d T %d ldx %d ldy %d s %g: %d of %d out of tolerance (worst %.2fx), %d padding "
            "values changed",
            dtname(ta), dtname(tb), sh.r, sh.in, sh.out, sh.T, ldx, ldy, sc, bad, sh.T * sh.out, worst, pad);
    if (getenv("DS_TEST_VERBOSE"))
        printf("INFO %s: A %s B %s r %d in %d out %d T %d: worst %.3f of the bound\n", id, dtname(ta), dtname(tb),
               sh.r, sh.in, sh.out, sh.T, worst);
done:
    dsi_cuda_free(dA), dsi_cuda_free(dB), dsi_cuda_free(dx), dsi_cuda_free(dy), dsi_cuda_free(dt);
    free(A), free(B), free(x), free(y0), free(y), free(af), free(bf), free(t), free(mag);
}

static void case_lora(void) {
    dsi_blas *b = NULL, *small = NULL;
    ds_status s = dsi_cuda_blas_new(&b, 0, 0, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_blas_new(&small, 64 << 10, 0, msg, MSGLEN); /* several tiles per F16 matrix */
    T_STATUS("cuda-ops-15.1", s, DS_OK, msg);
    if (s != DS_OK) goto done;
    const lora_shape shapes[] = {
        /* r, in, out, T, ldx pad, ldy pad */
        {1, 7, 5, 1, 0, 0},       {8, 64, 96, 1, 0, 0},     {16, 100, 33, 3, 2, 5}, /* decode: the GEMV */
        {4, 512, 256, 17, 0, 3},  {32, 256, 1408, 4, 1, 0}, {64, 1024, 300, 40, 4, 4},
        {16, 2048, 512, 5, 0, 0}, {2, 33, 17, 9, 3, 1},
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int ta = DS_DTYPE_F32; ta <= DS_DTYPE_F16; ta++)
            for (int tb = DS_DTYPE_F32; tb <= DS_DTYPE_F16; tb++)
                lora_case("cuda-ops-15.1", b, (ds_dtype)ta, (ds_dtype)tb, shapes[k], k % 2 ? 0.75f : 2.0f);
    /* F16 matrices dequantized tile by tile; a negative scale */
    lora_case("cuda-ops-15.2", small, DS_DTYPE_F16, DS_DTYPE_F16, (lora_shape){16, 2048, 1408, 33, 0, 2}, -1.5f);
    lora_case("cuda-ops-15.2", small, DS_DTYPE_F32, DS_DTYPE_F16, (lora_shape){8, 4096, 96, 6, 1, 0}, 0.5f);
done:
    dsi_cuda_blas_free(b);
    dsi_cuda_blas_free(small);
}

/* ==== 16. MLA attention with kv_b_proj adapted ============================= */
typedef struct mla_lora_shape {
    int H, dn, dr, dv, R, n_ctx, pos0, T;
    int n_ad, r[4];
    ds_dtype ta[4], tb[4];
} mla_lora_shape;

/* The device's adapted attention against (1) the CPU's dsi_mla_task with
 * its adapter steps (transcribed) and (2) the unadapted attention over the
 * merged matrix W + sum s B A (dequantized, F32): the same function of the
 * inputs computed another way, a check of the math rather than of the
 * transcription. */
static void mla_lora_case(ds_dtype dt, mla_lora_shape m) {
    const char *id = "cuda-ops-16.1", *id_m = "cuda-ops-16.2";
    int hd = m.dn + m.dr, npos = m.pos0 + m.T, rows = m.H * (m.dn + m.dv);
    ds_model_config cf = rope_config(0);
    rope_tab rt;
    rope_init(&rt, &cf, m.dr);
    float attn_scale = 1.0f / sqrtf((float)hd);
    size_t rb, nout = (size_t)m.T * m.H * m.dv;
    mla_ad ad;
    memset(&ad, 0, sizeof ad);
    uint8_t *adA[4] = {0}, *adB[4] = {0};
    void *dA[4] = {0}, *dB[4] = {0};
    uint8_t *kvb = make_weight(dt, rows, m.R, 0.15f, &rb);
    float *ca = malloc((size_t)m.n_ctx * m.R * sizeof(float)), *cb = malloc((size_t)m.n_ctx * m.dr * sizeof(float));
    float *q = malloc((size_t)m.T * m.H * hd * sizeof(float));
    float *ref = malloc(nout * sizeof(float)), *refm = malloc(nout * sizeof(float)), *got = malloc(nout * sizeof(float));
    float *merged = malloc((size_t)rows * m.R * sizeof(float)), *row = malloc((size_t)m.R * sizeof(float));
    float *scratch = malloc(((size_t)2 * m.R + (size_t)npos + (size_t)m.dr) * sizeof(float));
    void *d_kvb = NULL, *d_ca = NULL, *d_cb = NULL, *d_q = NULL, *d_out = NULL, *d_f = NULL;
    if (!kvb || !ca || !cb || !q || !ref || !refm || !got || !merged || !row || !scratch) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    fill(ca, (size_t)m.n_ctx * m.R, 1.0f);
    fill(cb, (size_t)m.n_ctx * m.dr, 1.0f);
    fill(q, (size_t)m.T * m.H * hd, 1.0f);
    dsi_mla_lora dad[4];
    ad.n = m.n_ad;
    for (int k = 0; k < m.n_ad; k++) {
        size_t rba, rbb;
        adA[k] = make_weight(m.ta[k], m.r[k], m.R, 0.3f, &rba);
        adB[k] = make_weight(m.tb[k], rows, m.r[k], 0.3f, &rbb);
        if (!adA[k] || !adB[k]) {
            T_CHECK(id, 0, "out of host memory");
            goto done;
        }
        ad.a[k] = host_weight(m.ta[k], adA[k], m.r[k], m.R, rba);
        ad.b[k] = host_weight(m.tb[k], adB[k], rows, m.r[k], rbb);
        ad.s[k] = k % 2 ? -0.6f : 1.25f;
        if (!(dA[k] = dev_up(id, adA[k], (size_t)m.r[k] * rba)) || !(dB[k] = dev_up(id, adB[k], (size_t)rows * rbb)))
            goto done;
        dad[k] = (dsi_mla_lora){m.ta[k], m.tb[k], dA[k], dB[k], m.r[k], ad.s[k]};
    }
    if (!(d_kvb = dev_up(id, kvb, (size_t)rows * rb)) ||
        !(d_ca = dev_up(id, ca, (size_t)m.n_ctx * m.R * sizeof(float))) ||
        !(d_cb = dev_up(id, cb, (size_t)m.n_ctx * m.dr * sizeof(float))) ||
        !(d_q = dev_up(id, q, (size_t)m.T * m.H * hd * sizeof(float))) || !(d_out = dev_up(id, NULL, nout * sizeof(float))) ||
        !(d_f = dev_up(id, rt.inv_freq, (size_t)m.dr / 2 * sizeof(float))))
        goto done;
    dsi_mla_layer a;
    memset(&a, 0, sizeof a);
    a.n_heads = m.H;
    a.nope_dim = m.dn;
    a.rope_dim = m.dr;
    a.v_dim = m.dv;
    a.rank = m.R;
    a.scale = attn_scale;
    a.rope_mscale = rt.mscale;
    a.inv_freq = d_f;
    a.kv_b_dtype = dt;
    a.kv_b = d_kvb;
    a.cache_lat = d_ca;
    a.cache_pe = d_cb;
    a.n_ctx = m.n_ctx;
    ds_status s = dsi_cuda_mla_attention_lora(&a, dad, m.n_ad, d_q, m.T, m.pos0, d_out, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, got, d_out, nout * sizeof(float))) goto done;
    /* (1) the CPU's steps */
    dsi_weight hw = host_weight(dt, kvb, rows, m.R, rb);
    for (int t = 0; t < m.T; t++)
        for (int h = 0; h < m.H; h++)
            mla_task_ad(&hw, &ad, &rt, q, m.H, m.dn, m.dr, m.dv, m.R, attn_scale, ca, cb, t, h, m.pos0 + t, ref, scratch);
    /* (2) the merged matrix, in double then F32 */
    for (int i = 0; i < rows; i++) {
        cpu_kernels()->dequant[dt](kvb + (size_t)i * rb, row, m.R);
        for (int j = 0; j < m.R; j++) merged[(size_t)i * m.R + j] = row[j];
    }
    for (int k = 0; k < m.n_ad; k++) {
        float *af = malloc((size_t)m.r[k] * m.R * sizeof(float)), *bf = malloc((size_t)rows * m.r[k] * sizeof(float));
        if (!af || !bf) {
            free(af), free(bf);
            T_CHECK(id, 0, "out of host memory");
            goto done;
        }
        for (int c = 0; c < m.r[k]; c++) cpu_kernels()->dequant[m.ta[k]](adA[k] + (size_t)c * ad.a[k].row_bytes, af + (size_t)c * m.R, m.R);
        for (int i = 0; i < rows; i++) cpu_kernels()->dequant[m.tb[k]](adB[k] + (size_t)i * ad.b[k].row_bytes, bf + (size_t)i * m.r[k], m.r[k]);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < m.R; j++) {
                double v = 0;
                for (int c = 0; c < m.r[k]; c++) v += (double)bf[(size_t)i * m.r[k] + c] * af[(size_t)c * m.R + j];
                merged[(size_t)i * m.R + j] = (float)(merged[(size_t)i * m.R + j] + (double)ad.s[k] * v);
            }
        free(af), free(bf);
    }
    dsi_weight mw = host_weight(DS_DTYPE_F32, (const uint8_t *)merged, rows, m.R, (size_t)m.R * sizeof(float));
    for (int t = 0; t < m.T; t++)
        for (int h = 0; h < m.H; h++)
            mla_task(&mw, &rt, q, m.H, m.dn, m.dr, m.dv, m.R, attn_scale, ca, cb, t, h, m.pos0 + t, refm, scratch);
    float amax = 0;
    for (size_t i = 0; i < nout; i++) amax = fmaxf(amax, fabsf(ref[i]));
    int bad = 0, bad_m = 0;
    double worst = 0, worst_m = 0;
    for (size_t i = 0; i < nout; i++) {
        double err = fabs((double)got[i] - ref[i]), tol = 5e-5 * amax + 1e-6;
        if (!(err <= tol)) bad++;
        if (err / tol > worst) worst = err / tol;
        double err_m = fabs((double)got[i] - refm[i]), tol_m = 2e-4 * amax + 1e-6;
        if (!(err_m <= tol_m)) bad_m++;
        if (err_m / tol_m > worst_m) worst_m = err_m / tol_m;
    }
    T_CHECK(id, bad == 0, "kv_b %s H %d R %d pos0 %d T %d, %d adapter(s): %d of %zu out of tolerance (worst %.2fx)",
            dtname(dt), m.H, m.R, m.pos0, m.T, m.n_ad, bad, nout, worst);
    T_CHECK(id_m, bad_m == 0,
            "kv_b %s H %d R %d pos0 %d T %d, %d adapter(s): %d of %zu away from the merged matrix's (worst %.2fx)",
            dtname(dt), m.H, m.R, m.pos0, m.T, m.n_ad, bad_m, nout, worst_m);
    if (getenv("DS_TEST_VERBOSE"))
        printf("INFO cuda-ops-16: kv_b %s H %d T %d %d adapter(s): worst %.3f (CPU steps), %.3f (merged)\n", dtname(dt),
               m.H, m.T, m.n_ad, worst, worst_m);
done:
    for (int k = 0; k < 4; k++) {
        dsi_cuda_free(dA[k]), dsi_cuda_free(dB[k]);
        free(adA[k]), free(adB[k]);
    }
    dsi_cuda_free(d_kvb), dsi_cuda_free(d_ca), dsi_cuda_free(d_cb), dsi_cuda_free(d_q), dsi_cuda_free(d_out);
    dsi_cuda_free(d_f);
    free(kvb), free(ca), free(cb), free(q), free(ref), free(refm), free(got), free(merged), free(row), free(scratch);
}

static void case_mla_lora(void) {
    const ds_dtype F32 = DS_DTYPE_F32, F16 = DS_DTYPE_F16;
    const mla_lora_shape shapes[] = {
        /* H, dn, dr, dv, R, n_ctx, pos0, T, adapters: n, ranks, A dtypes, B dtypes */
        {3, 16, 8, 24, 64, 40, 5, 6, 1, {8}, {F32}, {F32}},
        {2, 32, 2, 7, 96, 300, 257, 3, 2, {4, 16}, {F16, F32}, {F16, F16}}, /* across a tile, two adapters */
        {4, 64, 16, 48, 128, 20, 0, 1, 3, {1, 40, 300}, {F32, F16, F16}, {F16, F32, F16}}, /* rank > the block's threads */
    };
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int t = DS_DTYPE_F32; t <= LAST_DTYPE; t++) mla_lora_case((ds_dtype)t, shapes[k]);
    /* the V2-Lite shape, decode, one adapter of rank 16 */
    mla_lora_case(DS_DTYPE_Q8_0, (mla_lora_shape){16, 128, 64, 128, 512, 64, 40, 1, 1, {16}, {F16}, {F16}});
}

/* ==== Driver ============================================================== */
static const struct {
    const char *id;
    void (*fn)(void);
} device_cases[] = {
    {"cuda-ops-1", case_dequantize}, {"cuda-ops-2", case_gemv}, {"cuda-ops-3", case_matmul},
    {"cuda-ops-4", case_rmsnorm},    {"cuda-ops-5", case_silu}, {"cuda-ops-6", case_rope},
    {"cuda-ops-7", case_mla},        {"cuda-ops-8", case_route}, {"cuda-ops-9", case_oom},
    {"cuda-ops-10", case_events},    {"cuda-ops-11", case_embed}, {"cuda-ops-12", case_add},
    {"cuda-ops-13", case_moe_rows},  {"cuda-ops-14", case_mha},  {"cuda-ops-15", case_lora},
    {"cuda-ops-16", case_mla_lora},
};

/* id is one of the space- or comma-separated words of list */
static bool selected(const char *list, const char *id) {
    size_t n = strlen(id);
    for (const char *p = list; (p = strstr(p, id)) != NULL; p += n)
        if ((p == list || p[-1] == ' ' || p[-1] == ',') && (p[n] == 0 || p[n] == ' ' || p[n] == ',')) return true;
    return false;
}

int main(void) {
    case_host();
    case_host_rows();
    case_host_q4();
    int n = 0;
    ds_status s = dsi_cuda_device_count(&n, msg, MSGLEN);
    size_t nc = sizeof device_cases / sizeof device_cases[0];
    if (s == DS_ERR_NO_DEVICE) {
        case_no_device();
        for (size_t i = 0; i < nc; i++) T_SKIP(device_cases[i].id, "no CUDA device");
        return t_finish("test_cuda_ops");
    }
    T_STATUS("cuda-ops-0.10", s, DS_OK, msg);
    if (s == DS_OK) s = dsi_cuda_set_device(0, msg, MSGLEN);
    if (s == DS_OK) s = dsi_cuda_stream_new(&stream, msg, MSGLEN);
    T_STATUS("cuda-ops-0.10", s, DS_OK, msg);
    if (s != DS_OK) return t_finish("test_cuda_ops");
    const char *only = getenv("DS_TEST_ONLY");
    for (size_t i = 0; i < nc; i++) {
        if (only && !selected(only, device_cases[i].id)) T_SKIP(device_cases[i].id, "not in DS_TEST_ONLY");
        else device_cases[i].fn();
    }
    dsi_cuda_stream_free(stream);
    return t_finish("test_cuda_ops");
}
