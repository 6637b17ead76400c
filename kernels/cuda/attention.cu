/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * attention.cu — multi-head latent attention (DeepSeek-V2/V3) in the
 * absorbed form, over a cache of the normalised latent (R per position) and
 * the roped shared key (dr per position), never expanded K/V.
 *
 * CPU twins (forward.c): the cache append in dsi_attention (dsi_rmsnorm of
 * the latent, copy and interleaved dsi_rope of the key) and dsi_mla_task,
 * one (token, head) per task:
 *     qpe   = rope(q[dn:dn+dr], pos)
 *     qlat  = W_uk(h)^T q[0:dn]          (dsi_axpy_row over the dn rows)
 *     s_j   = (qlat . lat_j + qpe . pe_j) * scale,  j in [0, pos]
 *     p     = softmax(s)
 *     l     = sum_j p_j lat_j
 *     out_i = W_uv(h)[i] . l             (dsi_dot_row over the dv rows)
 * Here one block per (token, head) does the same steps. Differences: the
 * softmax is computed online over tiles of MLA_TILE positions (running
 * maximum and sum, the latent accumulator rescaled when the maximum grows),
 * so any context length fits in shared memory; the latent is divided by
 * the sum at the end instead of each weight before accumulation. Dot
 * products are warp reductions. qlat is formed with the CPU's operations in
 * the CPU's order.
 *
 * Below it, plain multi-head attention (DeepSeek-MoE 16B, GQA allowed) over
 * a cache of roped keys and values; CPU twin dsi_mha_task, one (token,
 * head) per task:
 *     s_j   = (q_h . K[j, kh]) * scale,  j in [0, pos],  kh = h / (H / Hk)
 *     p     = softmax(s)
 *     out_h = sum_j p_j V[j, kh]
 * with the same online softmax over tiles as MLA.
 */
#include "common.cuh"

#include <string.h>

#define MLA_THREADS 256
#define MLA_TILE 256

/* ==== Cache append ======================================================== */
/* One block per token: the latent's RMSNorm and the key's rotation. */
static __global__ void __launch_bounds__(MLA_THREADS)
    dsi_cuda_k_mla_store(const float *__restrict__ kva, const float *__restrict__ norm_w, float eps, int R, int dr,
                         int pos0, const float *__restrict__ inv_freq, float mscale, float *__restrict__ cache_lat,
                         float *__restrict__ cache_pe) {
    __shared__ float red[32];
    const int t = blockIdx.x, pos = pos0 + t;
    const float *kv = kva + (size_t)t * (R + dr);
    float *lat = cache_lat + (size_t)pos * R, *pe = cache_pe + (size_t)pos * dr;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < R; i += blockDim.x) ss += kv[i] * kv[i];
    ss = dsi_cuda_block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)R + eps);
    for (int i = threadIdx.x; i < R; i += blockDim.x) lat[i] = kv[i] * r * norm_w[i];
    for (int i = threadIdx.x; i < dr / 2; i += blockDim.x) {
        pe[2 * i] = kv[R + 2 * i];
        pe[2 * i + 1] = kv[R + 2 * i + 1];
        dsi_cuda_rope_pair(pe, 2 * i, 2 * i + 1, pos, inv_freq[i], mscale);
    }
}

static ds_status dsi_cuda_mla_check(const char *fn, const dsi_mla_layer *a, int T, int pos0, bool need_kvb, size_t *rb,
                                    char *msg, size_t len) {
    DSI_CUDA_ARG(a, "%s: NULL layer", fn);
    DSI_CUDA_ARG(a->n_heads > 0 && a->nope_dim > 0 && a->rope_dim > 0 && a->rope_dim % 2 == 0 && a->v_dim > 0 &&
                     a->rank > 0,
                 "%s: bad shape H %d dn %d dr %d dv %d R %d", fn, a->n_heads, a->nope_dim, a->rope_dim, a->v_dim,
                 a->rank);
    DSI_CUDA_ARG(dsi_cuda_row_bytes(a->kv_b_dtype, a->rank, rb), "%s: kv_b rows of %d values of dtype %d (%s)", fn,
                 a->rank, (int)a->kv_b_dtype, dsi_cuda_dtype_name(a->kv_b_dtype));
    DSI_CUDA_ARG(T >= 0 && pos0 >= 0 && (int64_t)pos0 + T <= (int64_t)a->n_ctx,
                 "%s: positions %d..%d outside the cache's %d", fn, pos0, pos0 + T - 1, a->n_ctx);
    DSI_CUDA_ARG((int64_t)T * a->n_heads <= INT32_MAX, "%s: %d tokens x %d heads is too many blocks", fn, T,
                 a->n_heads);
    DSI_CUDA_ARG(T == 0 || (a->inv_freq && (a->kv_b || !need_kvb) && a->cache_lat && a->cache_pe), "%s: NULL buffer",
                 fn);
    return DS_OK;
}

extern "C" ds_status dsi_cuda_mla_kv_store(const dsi_mla_layer *a, const float *kva, const float *norm_w, float eps,
                                           int T, int pos0, void *stream, char *msg, size_t len) {
    size_t rb;
    ds_status st = dsi_cuda_mla_check("dsi_cuda_mla_kv_store", a, T, pos0, false, &rb, msg, len);
    if (st != DS_OK) return st;
    if (T == 0) return DS_OK;
    DSI_CUDA_ARG(kva && norm_w, "dsi_cuda_mla_kv_store: NULL buffer");
    dsi_cuda_k_mla_store<<<(unsigned)T, MLA_THREADS, 0, (cudaStream_t)stream>>>(
        kva, norm_w, eps, a->rank, a->rope_dim, pos0, a->inv_freq, a->rope_mscale, a->cache_lat, a->cache_pe);
    DSI_CUDA_LAUNCHED("mla_kv_store");
    return DS_OK;
}

/* ==== Attention =========================================================== */
/* Shared memory: q_nope (dn), q_pe (dr), qlat (R), latent accumulator (R),
 * one tile of scores (MLA_TILE). */
static size_t dsi_cuda_mla_smem(const dsi_mla_layer *a) {
    return ((size_t)a->nope_dim + (size_t)a->rope_dim + 2 * (size_t)a->rank + MLA_TILE) * sizeof(float);
}

/* The adapters of kv_b_proj as the kernel takes them (by value). */
struct dsi_cuda_mla_ads {
    dsi_mla_lora ad[DSI_CUDA_MLA_MAX_LORA];
    int n, rmax;
};

/* Element j of a row of an adapter's matrix (F32 or F16, chosen at run time). */
__device__ __forceinline__ float dsi_cuda_wl(ds_dtype t, const uint8_t *row, int j) {
    return t == DS_DTYPE_F16 ? dsi_cuda_w<DS_DTYPE_F16>(row, j) : dsi_cuda_w<DS_DTYPE_F32>(row, j);
}

/* LORA: kv_b_proj adapted (W + sum_k s_k B_k A_k), in the absorbed form as
 * the CPU's dsi_mla_task: qlat += s A^T (B_k(h)^T q_nope) after step 2,
 * out += s B_v(h) (A lat) after step 4; tr (rmax floats of shared memory
 * after the scores) holds the r-vector of one adapter at a time. */
template <int DT, bool LORA>
static __global__ void __launch_bounds__(MLA_THREADS)
    dsi_cuda_k_mla(const float *__restrict__ q, int pos0, int H, int dn, int dr, int dv, int R, float scale,
                   float rope_mscale, const float *__restrict__ inv_freq, const uint8_t *__restrict__ kvb, size_t rb,
                   const float *__restrict__ ca, const float *__restrict__ cb, float *__restrict__ out,
                   dsi_cuda_mla_ads ads) {
    extern __shared__ float sm[];
    float *qn = sm, *qpe = qn + dn, *qlat = qpe + dr, *lat = qlat + R, *sc = lat + R, *tr = sc + MLA_TILE;
    __shared__ float red[32];
    const int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, wid = tid >> 5, nw = nt >> 5;
    const int t = blockIdx.x / H, h = blockIdx.x % H, pos = pos0 + t, n = pos + 1;
    const float *qh = q + (size_t)t * H * (dn + dr) + (size_t)h * (dn + dr);

    /* 1. the head's query: nope part as is, rope part rotated to pos */
    for (int i = tid; i < dn; i += nt) qn[i] = qh[i];
    for (int i = tid; i < dr; i += nt) qpe[i] = qh[dn + i];
    __syncthreads();
    for (int i = tid; i < dr / 2; i += nt) dsi_cuda_rope_pair(qpe, 2 * i, 2 * i + 1, pos, inv_freq[i], rope_mscale);

    /* 2. qlat = W_uk(h)^T q_nope: thread j sums over the dn rows in the
     * CPU's order (dsi_axpy_row adds row i times q[i] for i = 0, 1, ...) */
    const uint8_t *rows = kvb + (size_t)h * (size_t)(dn + dv) * rb;
    for (int j = tid; j < R; j += nt) {
        float acc = 0.0f;
        for (int i = 0; i < dn; i++) acc = __fadd_rn(acc, dsi_cuda_w_axpy<DT>(rows + (size_t)i * rb, j, qn[i]));
        qlat[j] = acc;
        lat[j] = 0.0f;
    }
    __syncthreads();
    /* 2b. adapters: tr = B_k(h)^T q_nope (the axpy of B's rows i = 0, 1, ...
     * as the CPU), then qlat[j] += (s tr[q]) A[q][j] for q = 0, 1, ... */
    if (LORA) {
        for (int k = 0; k < ads.n; k++) {
            const dsi_mla_lora ad = ads.ad[k];
            const size_t arb = (size_t)R * (ad.a_dtype == DS_DTYPE_F16 ? 2 : 4);
            const size_t brb = (size_t)ad.r * (ad.b_dtype == DS_DTYPE_F16 ? 2 : 4);
            const uint8_t *bk = (const uint8_t *)ad.b + (size_t)h * (size_t)(dn + dv) * brb;
            const uint8_t *am = (const uint8_t *)ad.a;
            for (int c = tid; c < ad.r; c += nt) {
                float acc = 0.0f;
                for (int i = 0; i < dn; i++) acc = __fadd_rn(acc, __fmul_rn(qn[i], dsi_cuda_wl(ad.b_dtype, bk + (size_t)i * brb, c)));
                tr[c] = acc;
            }
            __syncthreads();
            for (int j = tid; j < R; j += nt) {
                float acc = qlat[j];
                for (int c = 0; c < ad.r; c++)
                    acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(ad.s, tr[c]), dsi_cuda_wl(ad.a_dtype, am + (size_t)c * arb, j)));
                qlat[j] = acc;
            }
            __syncthreads(); /* tr is rewritten by the next adapter; qlat read by every warp */
        }
    }

    /* 3. online softmax over the positions, tile by tile */
    float m = -INFINITY, l = 0.0f;
    for (int s0 = 0; s0 < n; s0 += MLA_TILE) {
        const int cnt = n - s0 < MLA_TILE ? n - s0 : MLA_TILE;
        /* scores, one warp per position */
        for (int k = wid; k < cnt; k += nw) {
            const float *c = ca + (size_t)(s0 + k) * R, *p = cb + (size_t)(s0 + k) * dr;
            float d1 = 0.0f, d2 = 0.0f;
            for (int j = lane; j < R; j += 32) d1 += qlat[j] * c[j];
            for (int j = lane; j < dr; j += 32) d2 += qpe[j] * p[j];
            d1 = dsi_cuda_warp_sum(d1);
            d2 = dsi_cuda_warp_sum(d2);
            if (lane == 0) sc[k] = (d1 + d2) * scale;
        }
        __syncthreads();
        const float corr = dsi_cuda_softmax_tile(sc, cnt, &m, &l, red);
        for (int j = tid; j < R; j += nt) {
            float acc = lat[j] * corr;
            for (int k = 0; k < cnt; k++) acc += sc[k] * ca[(size_t)(s0 + k) * R + j];
            lat[j] = acc;
        }
        __syncthreads(); /* sc is rewritten by the next tile */
    }
    const float inv = 1.0f / l;
    for (int j = tid; j < R; j += nt) lat[j] *= inv;
    __syncthreads();

    /* 4. out = W_uv(h) lat, one warp per output value */
    const uint8_t *vrows = rows + (size_t)dn * rb;
    float *o = out + (size_t)t * H * dv + (size_t)h * dv;
    for (int i = wid; i < dv; i += nw) {
        const uint8_t *vr = vrows + (size_t)i * rb;
        float acc = 0.0f;
        for (int j = lane; j < R; j += 32) acc += dsi_cuda_w<DT>(vr, j) * lat[j];
        acc = dsi_cuda_warp_sum(acc);
        if (lane == 0) o[i] = acc;
    }
    /* 4b. adapters: tr = A lat (one warp per row of A), then out[i] += s
     * (B_v(h)[i] . tr); warp w adds to the values it wrote in step 4 */
    if (LORA) {
        for (int k = 0; k < ads.n; k++) {
            const dsi_mla_lora ad = ads.ad[k];
            const size_t arb = (size_t)R * (ad.a_dtype == DS_DTYPE_F16 ? 2 : 4);
            const size_t brb = (size_t)ad.r * (ad.b_dtype == DS_DTYPE_F16 ? 2 : 4);
            const uint8_t *bv = (const uint8_t *)ad.b + ((size_t)h * (size_t)(dn + dv) + (size_t)dn) * brb;
            const uint8_t *am = (const uint8_t *)ad.a;
            __syncthreads(); /* the previous adapter's readers of tr are done */
            for (int c = wid; c < ad.r; c += nw) {
                const uint8_t *ar = am + (size_t)c * arb;
                float acc = 0.0f;
                for (int j = lane; j < R; j += 32) acc += dsi_cuda_wl(ad.a_dtype, ar, j) * lat[j];
                acc = dsi_cuda_warp_sum(acc);
                if (lane == 0) tr[c] = acc;
            }
            __syncthreads();
            for (int i = wid; i < dv; i += nw) {
                const uint8_t *br = bv + (size_t)i * brb;
                float acc = 0.0f;
                for (int c = lane; c < ad.r; c += 32) acc += dsi_cuda_wl(ad.b_dtype, br, c) * tr[c];
                acc = dsi_cuda_warp_sum(acc);
                if (lane == 0) o[i] = __fadd_rn(o[i], __fmul_rn(ad.s, acc));
            }
        }
    }
}

/* Both entry points: ads NULL or empty runs the kernel without adapters. */
static ds_status dsi_cuda_mla_run(const char *fn, const dsi_mla_layer *a, const dsi_mla_lora *ad, int n_ad,
                                  const float *q, int T, int pos0, float *out, void *stream, char *msg, size_t len) {
    size_t rb;
    ds_status st = dsi_cuda_mla_check(fn, a, T, pos0, true, &rb, msg, len);
    if (st != DS_OK) return st;
    DSI_CUDA_ARG(n_ad >= 0 && n_ad <= DSI_CUDA_MLA_MAX_LORA && (n_ad == 0 || ad), "%s: %d adapters (at most %d)", fn,
                 n_ad, DSI_CUDA_MLA_MAX_LORA);
    dsi_cuda_mla_ads ads;
    memset(&ads, 0, sizeof ads);
    for (int k = 0; k < n_ad; k++) {
        const dsi_mla_lora *x = &ad[k];
        DSI_CUDA_ARG((x->a_dtype == DS_DTYPE_F32 || x->a_dtype == DS_DTYPE_F16) &&
                         (x->b_dtype == DS_DTYPE_F32 || x->b_dtype == DS_DTYPE_F16),
                     "%s: adapter %d: A and B must be F32 or F16 (dtypes %d, %d)", fn, k, (int)x->a_dtype,
                     (int)x->b_dtype);
        DSI_CUDA_ARG(x->r > 0 && x->r <= DSI_CUDA_MLA_MAX_RANK, "%s: adapter %d: rank %d outside [1, %d]", fn, k, x->r,
                     DSI_CUDA_MLA_MAX_RANK);
        DSI_CUDA_ARG(T == 0 || (x->a && x->b), "%s: adapter %d: NULL matrix", fn, k);
        ads.ad[ads.n++] = *x;
        if (x->r > ads.rmax) ads.rmax = x->r;
    }
    if (T == 0) return DS_OK;
    DSI_CUDA_ARG(q && out, "%s: NULL buffer", fn);
    const size_t smem = dsi_cuda_mla_smem(a) + (size_t)ads.rmax * sizeof(float);
    const unsigned grid = (unsigned)(T * a->n_heads);
    cudaStream_t s = (cudaStream_t)stream;
    const uint8_t *kvb = (const uint8_t *)a->kv_b;
#define MLA_L(DT, L)                                                                                                 \
    do {                                                                                                             \
        st = dsi_cuda_smem((const void *)dsi_cuda_k_mla<DT, L>, smem, fn, msg, len);                                  \
        if (st != DS_OK) return st;                                                                                  \
        dsi_cuda_k_mla<DT, L><<<grid, MLA_THREADS, smem, s>>>(q, pos0, a->n_heads, a->nope_dim, a->rope_dim,          \
                                                              a->v_dim, a->rank, a->scale, a->rope_mscale,            \
                                                              a->inv_freq, kvb, rb, a->cache_lat, a->cache_pe, out,   \
                                                              ads);                                                   \
    } while (0)
#define MLA(DT)                                                                                                      \
    do {                                                                                                             \
        if (ads.n) MLA_L(DT, true);                                                                                  \
        else MLA_L(DT, false);                                                                                       \
    } while (0)
    switch (a->kv_b_dtype) {
    case DS_DTYPE_F32: MLA(DS_DTYPE_F32); break;
    case DS_DTYPE_F16: MLA(DS_DTYPE_F16); break;
    case DS_DTYPE_Q8_0: MLA(DS_DTYPE_Q8_0); break;
    case DS_DTYPE_Q4_0: MLA(DS_DTYPE_Q4_0); break;
    default: break;   /* refused by the caller's checks */
    }
#undef MLA
#undef MLA_L
    DSI_CUDA_LAUNCHED("mla_attention");
    return DS_OK;
}

extern "C" ds_status dsi_cuda_mla_attention(const dsi_mla_layer *a, const float *q, int T, int pos0, float *out,
                                            void *stream, char *msg, size_t len) {
    return dsi_cuda_mla_run("dsi_cuda_mla_attention", a, NULL, 0, q, T, pos0, out, stream, msg, len);
}

extern "C" ds_status dsi_cuda_mla_attention_lora(const dsi_mla_layer *a, const dsi_mla_lora *ad, int n_ad,
                                                 const float *q, int T, int pos0, float *out, void *stream, char *msg,
                                                 size_t len) {
    return dsi_cuda_mla_run("dsi_cuda_mla_attention_lora", a, ad, n_ad, q, T, pos0, out, stream, msg, len);
}

/* ==== Multi-head attention (DeepSeek-MoE) ================================= */
#define MHA_THREADS 256
#define MHA_TILE 256

/* Shared memory: the head's query (hd), its output accumulator (hd), one
 * tile of scores (MHA_TILE). */
static size_t dsi_cuda_mha_smem(const dsi_mha_layer *a) {
    return (2 * (size_t)a->head_dim + MHA_TILE) * sizeof(float);
}

/* One block per (token, head): blockIdx.x = t * H + h. K and V rows are
 * Hk * hd floats per position; head h reads kv head h / (H / Hk). */
static __global__ void __launch_bounds__(MHA_THREADS)
    dsi_cuda_k_mha(const float *q, int pos0, int H, int Hk, int hd, float scale, const float *__restrict__ K,
                   const float *__restrict__ V, float *out) {
    extern __shared__ float sm[];
    float *qs = sm, *acc = qs + hd, *sc = acc + hd;
    __shared__ float red[32];
    const int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, wid = tid >> 5, nw = nt >> 5;
    const int t = blockIdx.x / H, h = blockIdx.x % H, pos = pos0 + t, n = pos + 1, kh = h / (H / Hk);
    const size_t kd = (size_t)Hk * hd;
    const float *Kh = K + (size_t)kh * hd, *Vh = V + (size_t)kh * hd;

    /* 1. the head's query (already roped) */
    const float *qh = q + ((size_t)t * H + h) * hd;
    for (int i = tid; i < hd; i += nt) {
        qs[i] = qh[i];
        acc[i] = 0.0f;
    }
    __syncthreads();

    /* 2. online softmax over the positions, tile by tile (as dsi_cuda_k_mla) */
    float m = -INFINITY, l = 0.0f;
    for (int s0 = 0; s0 < n; s0 += MHA_TILE) {
        const int cnt = n - s0 < MHA_TILE ? n - s0 : MHA_TILE;
        /* scores, one warp per position */
        for (int k = wid; k < cnt; k += nw) {
            const float *kr = Kh + (size_t)(s0 + k) * kd;
            float d = 0.0f;
            for (int j = lane; j < hd; j += 32) d += qs[j] * kr[j];
            d = dsi_cuda_warp_sum(d);
            if (lane == 0) sc[k] = d * scale;
        }
        __syncthreads();
        const float corr = dsi_cuda_softmax_tile(sc, cnt, &m, &l, red);
        /* 3. the value accumulator, rescaled to the new maximum */
        for (int j = tid; j < hd; j += nt) {
            float a = acc[j] * corr;
            for (int k = 0; k < cnt; k++) a += sc[k] * Vh[(size_t)(s0 + k) * kd + j];
            acc[j] = a;
        }
        __syncthreads(); /* sc is rewritten by the next tile */
    }

    /* 4. one division by the sum; a thread reads only its own acc[j] */
    const float inv = 1.0f / l;
    float *o = out + ((size_t)t * H + h) * hd;
    for (int j = tid; j < hd; j += nt) o[j] = acc[j] * inv;
}

extern "C" ds_status dsi_cuda_mha_attention(const dsi_mha_layer *a, const float *q, int T, int pos0, float *out,
                                            void *stream, char *msg, size_t len) {
    DSI_CUDA_ARG(a, "dsi_cuda_mha_attention: NULL layer");
    DSI_CUDA_ARG(a->n_heads > 0 && a->n_kv_heads > 0 && a->n_heads % a->n_kv_heads == 0 && a->head_dim > 0,
                 "dsi_cuda_mha_attention: bad shape H %d Hk %d hd %d", a->n_heads, a->n_kv_heads, a->head_dim);
    DSI_CUDA_ARG(T >= 0 && pos0 >= 0 && (int64_t)pos0 + T <= (int64_t)a->n_ctx,
                 "dsi_cuda_mha_attention: positions %d..%lld outside the cache's %d", pos0, (long long)pos0 + T - 1,
                 a->n_ctx);
    DSI_CUDA_ARG((int64_t)T * a->n_heads <= INT32_MAX,
                 "dsi_cuda_mha_attention: %d tokens x %d heads is too many blocks", T, a->n_heads);
    if (T == 0) return DS_OK;
    DSI_CUDA_ARG(a->cache_k && a->cache_v && q && out, "dsi_cuda_mha_attention: NULL buffer");
    const size_t smem = dsi_cuda_mha_smem(a);
    ds_status st = dsi_cuda_smem((const void *)dsi_cuda_k_mha, smem, "dsi_cuda_mha_attention", msg, len);
    if (st != DS_OK) return st;
    dsi_cuda_k_mha<<<(unsigned)(T * a->n_heads), MHA_THREADS, smem, (cudaStream_t)stream>>>(
        q, pos0, a->n_heads, a->n_kv_heads, a->head_dim, a->scale, a->cache_k, a->cache_v, out);
    DSI_CUDA_LAUNCHED("mha_attention");
    return DS_OK;
}
