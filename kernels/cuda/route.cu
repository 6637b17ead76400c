/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * route.cu — MoE routing, one block per token. The CPU twin is dsi_route in
 * forward.c; the steps and their masking values are the same:
 *   0. with a kept map (experts dropped at conversion), logit row i and
 *      bias i are expert kept[i]'s; every other expert's logit is -inf
 *   1. scores = softmax(logits) or sigmoid(logits)
 *   2. choice = scores + e_score_correction_bias (bias steers selection only);
 *      -inf for an expert whose logit is -inf (never chosen; the group
 *      masking of step 3 leaves it at -inf)
 *   3. grouped methods (topk_method != greedy and n_group > 1): a score per
 *      group of E / n_group experts (noaux_tc: the sum of its top two
 *      choices; group_limited_greedy: its maximum), the top topk_group
 *      groups kept (at most 64, as the CPU), every expert of the other
 *      groups masked: -inf for noaux_tc (V3), 0.0 for V2
 *   4. the top K of choice, largest first, ties to the lower index
 *   5. w = scores of the selected; normalised (sum + 1e-20) when K > 1 and
 *      norm_topk_prob; times routed_scaling_factor for V3 always, for the
 *      others only without normalisation
 * Steps 3's group scores and group top-k, and step 5, run sequentially in
 * the CPU's order (a copy of dsi_topk); the softmax sums and the top-K
 * (K rounds of a block-wide arg-max with the same tie rule) are parallel.
 */
#include "common.cuh"

#define ROUTE_MAX_THREADS 256
#define ROUTE_MAX_KEEP 64

typedef struct dsi_cuda_route_args {
    int E, K, G, kg;               /* experts, picks, groups (1 = ungrouped), groups kept */
    int n_kept;                    /* with a kept map: the router's rows */
    int noaux, sigmoid, norm, v3;
    float factor;
} dsi_cuda_route_args;

/* dsi_topk: the k largest of v (n), largest first, ties to the lower index. */
static __device__ void dsi_cuda_topk_seq(const float *v, int n, int k, int *idx) {
    for (int i = 0; i < k; i++) idx[i] = -1;
    for (int x = 0; x < n; x++) {
        int p = k;
        while (p > 0 && (idx[p - 1] < 0 || v[x] > v[idx[p - 1]])) p--;
        if (p >= k) continue;
        for (int q = k - 1; q > p; q--) idx[q] = idx[q - 1];
        idx[p] = x;
    }
}

/* (a, ia) ranks before (b, ib): larger value, then lower index; ia < 0 is
 * no candidate, ib < 0 loses to any candidate. */
static __device__ __forceinline__ bool dsi_cuda_before(float a, int ia, float b, int ib) {
    return ia >= 0 && (ib < 0 || a > b || (a == b && ia < ib));
}

/* Shared memory: scores (E), choice (E), group scores (G) as floats; kept
 * groups (64) and picks (K) as ints; taken flags (E) as bytes. */
static size_t dsi_cuda_route_smem(const dsi_cuda_route_args *a) {
    return (2 * (size_t)a->E + (size_t)a->G) * sizeof(float) + ((size_t)ROUTE_MAX_KEEP + (size_t)a->K) * sizeof(int) +
           (size_t)a->E;
}

static __global__ void __launch_bounds__(ROUTE_MAX_THREADS)
    dsi_cuda_k_route(dsi_cuda_route_args a, const float *__restrict__ logits, const float *__restrict__ bias,
                     const int *__restrict__ kept, int *__restrict__ sel, float *__restrict__ w) {
    extern __shared__ float sm[];
    __shared__ float redv[32];
    __shared__ int redi[32];
    const int E = a.E, K = a.K, G = a.G;
    float *scores = sm, *choice = scores + E, *gs = choice + E;
    int *keep = (int *)(gs + G), *pick = keep + ROUTE_MAX_KEEP;
    unsigned char *taken = (unsigned char *)(pick + K);
    const int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, wid = tid >> 5, nw = nt >> 5;
    const float *lg = logits + (size_t)blockIdx.x * E;

    /* 0. the logits into scores and the bias into choice: with a kept map,
     * row i is expert kept[i] and the others (dropped at conversion) have
     * a logit of -inf; taken marks them until step 2 */
    for (int x = tid; x < E; x += nt) {
        scores[x] = kept ? -INFINITY : lg[x];
        choice[x] = kept || !bias ? 0.0f : bias[x];
    }
    if (kept) {
        __syncthreads();
        for (int i = tid; i < a.n_kept; i += nt) {
            scores[kept[i]] = lg[i];
            choice[kept[i]] = bias ? bias[i] : 0.0f;
        }
    }
    __syncthreads();
    for (int x = tid; x < E; x += nt) taken[x] = scores[x] == -INFINITY;
    /* 1. scores */
    if (a.sigmoid) {
        for (int x = tid; x < E; x += nt) scores[x] = 1.0f / (1.0f + expf(-scores[x]));
    } else {
        float mx = -INFINITY;
        for (int x = tid; x < E; x += nt) mx = fmaxf(mx, scores[x]);
        mx = dsi_cuda_block_max(mx, redv);
        float sum = 0.0f;
        for (int x = tid; x < E; x += nt) {
            const float e = expf(scores[x] - mx);
            scores[x] = e;
            sum += e;
        }
        const float inv = 1.0f / dsi_cuda_block_sum(sum, redv);
        for (int x = tid; x < E; x += nt) scores[x] *= inv;
    }
    /* 2. selection scores (a dropped expert's stays -inf) */
    for (int x = tid; x < E; x += nt) {
        choice[x] = taken[x] ? -INFINITY : scores[x] + choice[x];
        taken[x] = 0;
    }
    __syncthreads();

    /* 3. group-limited selection */
    if (G > 1) {
        const int per = E / G;
        for (int g = tid; g < G; g += nt) {
            const float *v = choice + (size_t)g * per;
            if (a.noaux) {
                int two[2];
                dsi_cuda_topk_seq(v, per, 2, two);
                gs[g] = v[two[0]] + v[two[1]];
            } else {
                float mx = v[0];
                for (int i = 1; i < per; i++) mx = v[i] > mx ? v[i] : mx;
                gs[g] = mx;
            }
        }
        __syncthreads();
        if (tid == 0 && a.kg > 0) dsi_cuda_topk_seq(gs, G, a.kg, keep);
        __syncthreads();
        const float masked = a.noaux ? -INFINITY : 0.0f;
        for (int x = tid; x < G * per; x += nt) {
            const int g = x / per;
            bool kept = false;
            for (int i = 0; i < a.kg; i++) kept |= keep[i] == g;
            if (!kept && choice[x] != -INFINITY) choice[x] = masked;
        }
        __syncthreads();
    }

    /* 4. top K: K rounds of a block-wide arg-max over the experts not taken */
    for (int k = 0; k < K; k++) {
        float bv = 0.0f;
        int bi = -1;
        for (int x = tid; x < E; x += nt)
            if (!taken[x] && dsi_cuda_before(choice[x], x, bv, bi)) {
                bv = choice[x];
                bi = x;
            }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (dsi_cuda_before(ov, oi, bv, bi)) {
                bv = ov;
                bi = oi;
            }
        }
        if (lane == 0) {
            redv[wid] = bv;
            redi[wid] = bi;
        }
        __syncthreads();
        if (tid == 0) {
            for (int i = 1; i < nw; i++)
                if (dsi_cuda_before(redv[i], redi[i], bv, bi)) {
                    bv = redv[i];
                    bi = redi[i];
                }
            pick[k] = bi; /* K <= E, so there is always one */
            taken[bi] = 1;
        }
        __syncthreads();
    }

    /* 5. weights, in the CPU's order */
    if (tid == 0) {
        float sum = 0.0f;
        for (int k = 0; k < K; k++) sum += scores[pick[k]];
        const bool norm = K > 1 && a.norm;
        int *so = sel + (size_t)blockIdx.x * K;
        float *wo = w + (size_t)blockIdx.x * K;
        for (int k = 0; k < K; k++) {
            float v = scores[pick[k]];
            if (norm) v /= sum + 1e-20f;
            if (a.v3 || !norm) v *= a.factor;
            so[k] = pick[k];
            wo[k] = v;
        }
    }
}

extern "C" ds_status dsi_cuda_route(const ds_model_config *cf, const float *logits, const float *bias, const int *kept,
                                    int n_kept, int T, int *sel, float *w, void *stream, char *msg, size_t len) {
    DSI_CUDA_ARG(cf, "dsi_cuda_route: NULL config");
    dsi_cuda_route_args a;
    a.E = cf->n_routed_experts;
    a.K = cf->n_experts_per_tok;
    DSI_CUDA_ARG(a.E > 0 && a.K > 0 && a.K <= a.E, "dsi_cuda_route: %d of %d experts", a.K, a.E);
    DSI_CUDA_ARG(T >= 0, "dsi_cuda_route: T %d", T);
    DSI_CUDA_ARG(!kept || (n_kept >= a.K && n_kept <= a.E), "dsi_cuda_route: %d kept experts of %d (top %d)", n_kept,
                 a.E, a.K);
    a.n_kept = kept ? n_kept : a.E;
    const bool grouped = cf->topk_method != DS_TOPK_GREEDY && cf->n_group > 1;
    a.G = grouped ? cf->n_group : 1;
    /* config.c caps topk_group at DS_MAX_TOPK_GROUP (64): a build that
     * raises it gets an error here, not a different choice from the CPU's */
    DSI_CUDA_ARG(!grouped || cf->topk_group <= ROUTE_MAX_KEEP, "dsi_cuda_route: topk_group %d > %d", cf->topk_group,
                 ROUTE_MAX_KEEP);
    a.kg = cf->topk_group < ROUTE_MAX_KEEP ? cf->topk_group : ROUTE_MAX_KEEP;
    a.noaux = cf->topk_method == DS_TOPK_NOAUX_TC;
    a.sigmoid = cf->scoring_func == DS_SCORING_SIGMOID;
    a.norm = cf->norm_topk_prob != 0;
    a.v3 = cf->arch == DS_ARCH_DEEPSEEK_V3;
    a.factor = cf->routed_scaling_factor;
    /* the CPU reads a group's top two (noaux_tc) and its first element */
    DSI_CUDA_ARG(!grouped || a.E / a.G >= (a.noaux ? 2 : 1), "dsi_cuda_route: %d experts in %d groups", a.E, a.G);
    if (T == 0) return DS_OK;
    DSI_CUDA_ARG(logits && sel && w, "dsi_cuda_route: NULL buffer");
    const size_t smem = dsi_cuda_route_smem(&a);
    ds_status st = dsi_cuda_smem((const void *)dsi_cuda_k_route, smem, "dsi_cuda_route", msg, len);
    if (st != DS_OK) return st;
    /* enough warps to cover the experts once, at most ROUTE_MAX_THREADS */
    unsigned threads = (unsigned)((a.E + 31) / 32 * 32);
    if (threads > ROUTE_MAX_THREADS) threads = ROUTE_MAX_THREADS;
    dsi_cuda_k_route<<<(unsigned)T, threads, smem, (cudaStream_t)stream>>>(a, logits, bias, kept, sel, w);
    DSI_CUDA_LAUNCHED("route");
    return DS_OK;
}
