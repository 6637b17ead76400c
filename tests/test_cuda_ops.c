/*
 * test_cuda_ops.c — every CUDA op against its CPU twin (built with make
 * CUDA=1 only), as ggml's test-backend-ops: random inputs over several
 * shapes, ragged sizes and Q8_0 rows of many blocks; the CPU result from
 * the library's own dsi_ functions; a tolerance per op.
 *
 * Where no CUDA device is present every device case is reported skipped
 * ("SKIP cuda-ops-N.M: no CUDA device"). The cuda-ops-0.x cases need no
 * device: argument checks happen on the host before any CUDA call, and the
 * backend table is plain data; they run everywhere.
 *
 * CPU twins: dsi_dot_row (GEMV), dsi_dequant_row + dsi_dot_f32 (batched
 * matmul), dsi_rmsnorm, dsi_route, dsi_dequantize_row_*. forward.c keeps
 * dsi_rope_init, dsi_rope, dsi_mla_task and dsi_silu static, so the
 * sections marked "transcribed" below copy them line for line, built on the
 * library's dsi_axpy_row, dsi_dot_f32, dsi_softmax, dsi_dot_row.
 *
 * Tolerances (|gpu - cpu| <= bound, per element), and why:
 *   dequantize      exact: q * f16 scale is exact in F32 on both
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
 *   route           the same experts in the same order, except where two
 *                   selection scores differ but by at most 1e-5 (relative):
 *                   a near-tie that summation order may break either way;
 *                   exactly equal scores must go to the lower index as on
 *                   the CPU. Weights 1e-5 * |cpu| + 1e-7: the softmax sum
 *                   over E experts in another order
 * A bug (a wrong index, a missed rescale, a lost tile) shows as errors of
 * order one; these bounds leave a margin over rounding so that a first GPU
 * run does not fail on noise. Measured on a thread-level CPU emulation of
 * the kernels (the GPU's summation order, the host's expf/sinf/cosf): the
 * worst gemv error is 1/300 of its bound, the worst attention error 1/50.
 */
#include "../deepseek_impl/internal.h"
#include "../kernels/cuda/backend.cuh"
#include "test.h"

#include <math.h>
#include <stdint.h>

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

static const char *dtname(ds_dtype t) { return t == DS_DTYPE_F32 ? "f32" : t == DS_DTYPE_F16 ? "f16" : "q8_0"; }

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

/* dsi_mla_task for one (token, head); w is scratch of 2R + n + dr floats */
static void mla_task(const dsi_weight *kvb, const rope_tab *rt, const float *q, int H, int dn, int dr, int dv, int R,
                     float attn_scale, const float *ca, const float *cb, int t, int h, int pos, float *att, float *w) {
    int hd = dn + dr, n = pos + 1;
    float *qlat = w, *scores = qlat + R, *lat = scores + n, *qpe = lat + R;
    const float *qh = q + (size_t)t * H * hd + (size_t)h * hd;
    memcpy(qpe, qh + dn, (size_t)dr * sizeof(float));
    rope(rt, qpe, pos, true);
    memset(qlat, 0, (size_t)R * sizeof(float));
    const uint8_t *rows = kvb->data + (size_t)h * (dn + dv) * kvb->row_bytes;
    for (int i = 0; i < dn; i++) dsi_axpy_row(kvb, rows + (size_t)i * kvb->row_bytes, qh[i], qlat);
    for (int s = 0; s < n; s++)
        scores[s] = (dsi_dot_f32(qlat, ca + (size_t)s * R, R) + dsi_dot_f32(qpe, cb + (size_t)s * dr, dr)) * attn_scale;
    dsi_softmax(scores, n);
    memset(lat, 0, (size_t)R * sizeof(float));
    for (int s = 0; s < n; s++) {
        const float *cs = ca + (size_t)s * R;
        float p = scores[s];
        for (int i = 0; i < R; i++) lat[i] += p * cs[i];
    }
    float *out = att + (size_t)t * H * dv + (size_t)h * dv;
    const uint8_t *vrows = rows + (size_t)dn * kvb->row_bytes;
    for (int i = 0; i < dv; i++) out[i] = dsi_dot_row(kvb, vrows + (size_t)i * kvb->row_bytes, lat);
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
    s = dsi_cuda_route(&cf, dummy, NULL, 1, isel, dummy, NULL, msg, MSGLEN);
    T_STATUS("cuda-ops-0.7", s, DS_ERR_INVALID_ARG, msg);
    cf.n_experts_per_tok = 2;
    cf.topk_method = DS_TOPK_NOAUX_TC;
    cf.n_group = 4; /* one expert per group: no top two */
    s = dsi_cuda_route(&cf, dummy, NULL, 1, isel, dummy, NULL, msg, MSGLEN);
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
}

/* Without a device: allocation fails with a status and a message. */
static void case_no_device(void) {
    void *p = (void *)1;
    msg[0] = 0;
    ds_status s = dsi_cuda_alloc(&p, 1024, msg, MSGLEN);
    T_CHECK("cuda-ops-0.9", s == DS_ERR_NO_DEVICE && p == NULL && msg[0],
            "alloc without a device: status %d (%s), message '%s'", (int)s, ds_status_string(s), msg);
}

/* ==== 1. Dequantize ======================================================= */
static void case_dequantize(void) {
    const int ns[] = {32, 96, 7168, 32 * 1000};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int n = ns[k];
        for (int t = DS_DTYPE_F16; t <= DS_DTYPE_Q8_0; t++) {
            size_t rb;
            uint8_t *w = make_weight((ds_dtype)t, 1, n, 3.0f, &rb);
            float *ref = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
            if (!w || !ref || !got) {
                T_CHECK("cuda-ops-1.1", 0, "out of host memory");
                free(w), free(ref), free(got);
                return;
            }
            dsi_weight hw = host_weight((ds_dtype)t, w, 1, n, rb);
            dsi_dequant_row(&hw, w, ref);
            ds_status s = dsi_cuda_dequantize_host((ds_dtype)t, w, rb, got, (size_t)n, msg, MSGLEN);
            T_STATUS("cuda-ops-1.1", s, DS_OK, msg);
            int bad = 0;
            for (int i = 0; s == DS_OK && i < n; i++) bad += got[i] != ref[i];
            T_CHECK("cuda-ops-1.1", bad == 0, "%s n=%d: %d values differ", dtname((ds_dtype)t), n, bad);
            free(w), free(ref), free(got);
        }
    }
}

/* ==== 2, 3. GEMV and batched matmul ======================================== */
typedef struct mm_shape {
    int rows, cols, T, ldx_pad, ldy_pad;
} mm_shape;

/* Runs one product on the device (gemv when blas is NULL) and checks it. */
static void mm_case(const char *id, dsi_blas *blas, ds_dtype t, mm_shape sh) {
    if (t == DS_DTYPE_Q8_0 && sh.cols % 32) return;
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
        dsi_dequant_row(&hw, rp, row);
        for (int k = 0; k < sh.T; k++) {
            const float *xt = x + (size_t)k * ldx;
            /* the CPU twin: dsi_dot_row for one token, dequantized row and
             * dsi_dot_f32 for a batch (dsi_mm_task) */
            float ref = sh.T == 1 ? dsi_dot_row(&hw, rp, xt) : dsi_dot_f32(row, xt, sh.cols);
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
        for (int t = DS_DTYPE_F32; t <= DS_DTYPE_Q8_0; t++) mm_case("cuda-ops-2.1", NULL, (ds_dtype)t, shapes[k]);
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
        for (int t = DS_DTYPE_F32; t <= DS_DTYPE_Q8_0; t++) {
            mm_case("cuda-ops-3.2", b, (ds_dtype)t, shapes[k]);
            mm_case("cuda-ops-3.3", small, (ds_dtype)t, shapes[k]);
        }
    /* T <= DSI_CUDA_GEMV_MAX_T through matmul takes the GEMV */
    mm_case("cuda-ops-3.4", b, DS_DTYPE_Q8_0, (mm_shape){40, 320, 3, 0, 0});
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
        for (int t = DS_DTYPE_F32; t <= DS_DTYPE_Q8_0; t++) mla_case((ds_dtype)t, shapes[k]);
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

static void route_one(const route_case *rc, int T) {
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
    float *scratch = malloc((size_t)3 * E * sizeof(float)), *wref = malloc((size_t)K * sizeof(float));
    float *wgot = malloc((size_t)T * K * sizeof(float));
    int *sref = malloc((size_t)K * sizeof(int)), *sgot = malloc((size_t)T * K * sizeof(int));
    void *dl = NULL, *db = NULL, *ds = NULL, *dw = NULL;
    if (!logits || !bias || !scratch || !wref || !wgot || !sref || !sgot) {
        T_CHECK(id, 0, "out of host memory");
        goto done;
    }
    fill(logits, (size_t)T * E, rc->logit_mag);
    fill(bias, (size_t)E, 0.05f);
    if (!(dl = dev_up(id, logits, (size_t)T * E * sizeof(float))) ||
        (rc->bias && !(db = dev_up(id, bias, (size_t)E * sizeof(float)))) ||
        !(ds = dev_up(id, NULL, (size_t)T * K * sizeof(int))) || !(dw = dev_up(id, NULL, (size_t)T * K * sizeof(float))))
        goto done;
    ds_status s = dsi_cuda_route(&cf, dl, db, T, ds, dw, stream, msg, MSGLEN);
    T_STATUS(id, s, DS_OK, msg);
    if (s != DS_OK || !dev_down(id, sgot, ds, (size_t)T * K * sizeof(int)) ||
        !dev_down(id, wgot, dw, (size_t)T * K * sizeof(float)))
        goto done;
    int bad_sel = 0, bad_w = 0, ties = 0;
    for (int t = 0; t < T; t++) {
        dsi_route(&cf, logits + (size_t)t * E, rc->bias ? bias : NULL, scratch, sref, wref);
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
    dsi_cuda_free(dl), dsi_cuda_free(db), dsi_cuda_free(ds), dsi_cuda_free(dw);
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
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) route_one(&cases[c], Ts[k]);
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

/* ==== Driver ============================================================== */
static const struct {
    const char *id;
    void (*fn)(void);
} device_cases[] = {
    {"cuda-ops-1", case_dequantize}, {"cuda-ops-2", case_gemv}, {"cuda-ops-3", case_matmul},
    {"cuda-ops-4", case_rmsnorm},    {"cuda-ops-5", case_silu}, {"cuda-ops-6", case_rope},
    {"cuda-ops-7", case_mla},        {"cuda-ops-8", case_route}, {"cuda-ops-9", case_oom},
};

int main(void) {
    case_host();
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
    for (size_t i = 0; i < nc; i++) device_cases[i].fn();
    dsi_cuda_stream_free(stream);
    return t_finish("test_cuda_ops");
}
