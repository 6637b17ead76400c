/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_cuda_forward.c — the forward pass on CUDA against the CPU's, through
 * the public API only. Built in every configuration: without CUDA (or
 * without a device) the device cases print "SKIP ...: no CUDA device" and
 * count as skipped; the fallback case runs everywhere.
 *
 *  cuda-fwd-0: device selection: an unknown device is refused; asking for
 *              CUDA where there is none runs on the CPU, with a DS_LOG_WARN
 *              notice, and generates; with a device, a bad gpu_index is
 *              DS_ERR_NO_DEVICE and a VRAM budget under two experts is
 *              DS_ERR_INVALID_ARG.
 *  cuda-fwd-1: greedy parity with the CPU backend on the generated test
 *              models (tests/gen, $DS_TESTDATA) and the demo model: F32 and
 *              F16 give 32 identical tokens; Q8_0 agrees on the top-1 token
 *              at >= 95% of the positions, teacher-forced on the CPU's
 *              sequence, pooled over all models (the CPU uses int8
 *              activations, the GPU F32 ones). Q4_0 (converted with
 *              DS_QUANT_Q4_0): the tokens of the CPU with exact_activations
 *              (the same weights and F32 activations, so only summation
 *              order differs, as for F16), and top-1 agreement with the
 *              CPU's default int8 activations (teacher-forced on the GPU's
 *              sequence) at >= 95%, pooled over the models apart from
 *              Q8_0's: the CPU and GPU differ in the activations' int8
 *              rounding alone, which the weight format leaves the same,
 *              so Q8_0's bound holds for Q4_0 too.
 *  cuda-fwd-2: a VRAM expert budget of a few experts (with and without a
 *              host expert cache under it) gives the tokens of a fully
 *              resident GPU run, and the cache statistics show the paging.
 *  cuda-fwd-3: one prefill batch equals token-by-token decode on the GPU.
 *  cuda-fwd-4: a tampered expert is refused at use (DS_ERR_AUTH) and the
 *              context stays usable; two contexts on two threads match a
 *              single one.
 *  cuda-fwd-5: LoRA adapters (the PEFT fixtures of tests/gen/make_peft.py,
 *              converted with ds_convert_lora against the F32 container):
 *              every position's logits on CUDA within 1e-4 of the CPU's
 *              (which test_lora checks against PEFT), and at least 1e-2
 *              away from the unadapted model's, so the adapter counts:
 *              v2lite with q_proj, kv_b_proj (inside MLA), o_proj, the
 *              dense MLP, the shared and the routed experts; moe16b with
 *              q/k/v/o (MHA); v3 with q_b_proj. On v2lite also: decode
 *              equals the prefill's rows; a VRAM budget of three experts
 *              under a host expert cache (the adapter's expert parts paged)
 *              gives the resident run's logits bit for bit; three sequences
 *              with their own lists (the adapter, none, the adapter at half
 *              scale) in one pass match their own runs; an adapter closed
 *              while a sequence uses it is refused.
 *  cuda-fwd-6: LoRA parity with PEFT on CUDA: for every case of
 *              tests/ref/lora (PEFT's unmerged logits of the 32 golden
 *              tokens, tests/ref/make_lora_goldens.py), every position's
 *              logits within 1e-4 of PEFT's (test_lora's bound on the CPU).
 *  cuda-fwd-7: experts dropped at conversion (ds_convert drop_experts,
 *              v2lite and v3 F32, two of eight experts per layer, in v3 a
 *              group emptied and two groups left with one): the CPU's 32
 *              greedy tokens on CUDA, resident and through a VRAM budget of
 *              three experts (the route kernel's kept map, the cache with
 *              absent experts).
 * DS_CUDA_FWD_FAMILIES=v2lite,... limits the families (parity and LoRA
 * cases; v3e256, 256 routed experts, runs only when named there), DS_CUDA_FWD_TOKENS the generated tokens, DS_CUDA_FWD_LORA_ONLY=1
 * runs the LoRA cases alone, DS_CUDA_FWD_DROP_ONLY=1 the dropped-expert
 * cases alone: for slow emulated runs (tools/cuda_emu).
 */
#define _DEFAULT_SOURCE 1   /* mkdtemp */
#include "../deepseek.h"
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-cuda-fwd-XXXXXX";
static const unsigned char test_key[32] = {7, 1, 2, 3, 5, 8, 13, 21};
static int have_device;

#define GEN_MAX 32
static int GEN = GEN_MAX;   /* DS_CUDA_FWD_TOKENS lowers it (slow emulated runs) */

/* ==== Models ============================================================== */
static char *container(const char *family, ds_quant q) {
    static char path[64][512];
    static int n_paths;
    static const char *qn[] = {"f32", "f16", "q8", "q4"};
    if (n_paths >= 64) return NULL;
    char *p = path[n_paths++];
    snprintf(p, 512, "%s/%s-%s.dsm", tmpdir, family, qn[q]);
    if (access(p, R_OK) == 0) return p;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", testdata, family);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = q;
    cp.encrypt = 1;
    cp.key = test_key;
    cp.key_len = 32;
    cp.chunk_bytes = 4096;
    if (ds_convert(dir, p, &cp) != DS_OK) {
        printf("convert %s: %s\n", family, ds_last_error());
        return NULL;
    }
    return p;
}

static int warned;
static void log_cb(void *user, ds_log_level level, const char *msg) {
    (void)user;
    if (level == DS_LOG_WARN && strstr(msg, "running on the CPU")) warned++;
}

typedef struct open_opts {
    ds_device device;
    uint64_t gpu_cache, host_cache;
    int gpu_index;
    int exact;   /* exact_activations (the CPU with F32 activations) */
    const unsigned char *key;
} open_opts;

static ds_status open_with(const char *path, const open_opts *o, ds_model **m) {
    ds_model_params mp = ds_model_default_params();
    mp.n_threads = 2;
    mp.key = o->key ? o->key : test_key;
    mp.key_len = 32;
    mp.device = o->device;
    mp.gpu_index = o->gpu_index;
    mp.gpu_cache_bytes = o->gpu_cache;
    mp.expert_cache_bytes = o->host_cache;
    mp.exact_activations = o->exact;
    mp.log = log_cb;
    *m = NULL;
    return ds_model_open(m, path, &mp);
}

/* a pointer for T_STATUS, which tests its message for NULL */
static const char *msg_of(const char *s) { return s; }

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static const int32_t prompt[] = {0, 17, 301, 5, 99, 42, 7, 250};
#define N_PROMPT (int)(sizeof prompt / sizeof prompt[0])

/* Greedy: the prompt, then GEN tokens into out (and the logits of each step
 * into lg when not NULL, GEN x V). With force != NULL the fed tokens are
 * force's (teacher forcing) while out still gets the argmaxes. */
static ds_status greedy(ds_model *m, const int32_t *force, int32_t *out, float *lg, char *why, size_t wl) {
    ds_model_config cf;
    ds_status s = ds_model_get_config(m, &cf);
    if (s) return s;
    int V = cf.vocab_size;
    ds_context *c = NULL;
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = 128;
    float *logits = malloc((size_t)V * sizeof(float));
    if (!logits) return DS_ERR_NOMEM;
    s = ds_context_new(&c, m, &cp);
    if (!s) s = ds_context_eval(c, prompt, N_PROMPT, logits, 0);
    for (int i = 0; !s && i < GEN; i++) {
        out[i] = argmax(logits, V);
        if (lg) memcpy(lg + (size_t)i * V, logits, (size_t)V * sizeof(float));
        int32_t next = force ? force[i] : out[i];
        s = ds_context_eval(c, &next, 1, logits, 0);
    }
    if (s && why) snprintf(why, wl, "%s", c ? ds_context_errmsg(c) : ds_last_error());
    ds_context_free(c);
    free(logits);
    return s;
}

/* ==== 0: device selection ================================================= */
static void test_select(const char *path) {
    ds_model *m = NULL;
    open_opts o = {0};
    o.device = (ds_device)7;
    ds_status s = open_with(path, &o, &m);
    T_STATUS("cuda-fwd-0.1", s, DS_ERR_INVALID_ARG, ds_last_error());
    ds_model_close(m);

    warned = 0;
    o.device = DS_DEVICE_CUDA;
    s = open_with(path, &o, &m);
    T_STATUS("cuda-fwd-0.2", s, DS_OK, ds_last_error());
    if (s) return;
    have_device = ds_model_device(m) == DS_DEVICE_CUDA;
    printf("INFO cuda-fwd-0.2: runs on %s\n", ds_model_device_name(m));
    if (!have_device) {
        T_CHECK("cuda-fwd-0.2", warned == 1, "%d 'running on the CPU' warnings, want 1", warned);
        int32_t out[GEN_MAX];
        char why[512] = "";
        s = greedy(m, NULL, out, NULL, why, sizeof why);
        T_STATUS("cuda-fwd-0.2", s, DS_OK, msg_of(why));
    } else {
        T_CHECK("cuda-fwd-0.2", warned == 0, "a fallback warning with a device present");
        T_CHECK("cuda-fwd-0.2", !strncmp(ds_model_device_name(m), "cuda:0", 6), "device name '%s'",
                ds_model_device_name(m));
    }
    ds_model_close(m);
    if (!have_device) {
        T_SKIP("cuda-fwd-0.3", "no CUDA device");
        T_SKIP("cuda-fwd-0.4", "no CUDA device");
        return;
    }
    o.gpu_index = 1000;
    s = open_with(path, &o, &m);
    T_STATUS("cuda-fwd-0.3", s, DS_ERR_NO_DEVICE, ds_last_error());
    ds_model_close(m);
    o.gpu_index = 0;
    o.gpu_cache = 1000;   /* below two experts */
    s = open_with(path, &o, &m);
    T_STATUS("cuda-fwd-0.4", s, DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK("cuda-fwd-0.4", strstr(ds_last_error(), "two experts") != NULL, "message: %s", ds_last_error());
    ds_model_close(m);
}

/* ==== 1: parity with the CPU ============================================== */
static int q8_agree, q8_total, q4_agree, q4_total;

/* Q4_0: the GPU's free-running tokens b against the CPU with exact
 * activations (identical), then the CPU's default int8 activations fed b
 * (top-1 agreement, pooled). */
static void parity_q4(const char *id, const char *path, ds_model *cpu, ds_model *gpu, const unsigned char *key) {
    int32_t a[GEN_MAX], b[GEN_MAX], e[GEN_MAX];
    char why[512] = "";
    ds_model *exact = NULL;
    open_opts ox = {0};
    ox.key = key;
    ox.exact = 1;
    ds_status s = open_with(path, &ox, &exact);
    T_STATUS(id, s, DS_OK, ds_last_error());
    if (s) return;
    s = greedy(exact, NULL, e, NULL, why, sizeof why);
    if (!s) s = greedy(gpu, NULL, b, NULL, why, sizeof why);
    if (!s) s = greedy(cpu, b, a, NULL, why, sizeof why);   /* fed the GPU's tokens */
    T_STATUS(id, s, DS_OK, msg_of(why));
    if (!s) {
        int same = 0;
        while (same < GEN && e[same] == b[same]) same++;
        T_CHECK(id, same == GEN, "tokens differ from the exact CPU's from position %d of %d (cpu %d, cuda %d)", same,
                GEN, same < GEN ? e[same] : -1, same < GEN ? b[same] : -1);
        int agree = 0;
        for (int i = 0; i < GEN; i++) agree += a[i] == b[i];
        q4_agree += agree;
        q4_total += GEN;
        printf("INFO %s: top-1 agreement with int8 activations %d/%d (teacher-forced)\n", id, agree, GEN);
    }
    ds_model_close(exact);
}

static void test_parity(const char *name, const char *path, ds_quant q, const unsigned char *key) {
    char id[96];
    static const char *qn[] = {"f32", "f16", "q8", "q4"};
    snprintf(id, sizeof id, "cuda-fwd-1.%s.%s", name, qn[q]);
    if (!have_device) {
        T_SKIP(id, "no CUDA device");
        return;
    }
    if (!path) {
        T_CHECK(id, 0, "no container");
        return;
    }
    ds_model *cpu = NULL, *gpu = NULL;
    open_opts oc = {0}, og = {0};
    oc.key = og.key = key;
    og.device = DS_DEVICE_CUDA;
    ds_status s = open_with(path, &oc, &cpu);
    if (!s) s = open_with(path, &og, &gpu);
    T_STATUS(id, s, DS_OK, ds_last_error());
    if (s) {
        ds_model_close(cpu);
        ds_model_close(gpu);
        return;
    }
    if (q == DS_QUANT_Q4_0) {
        parity_q4(id, path, cpu, gpu, key);
        ds_model_close(cpu);
        ds_model_close(gpu);
        return;
    }
    int32_t a[GEN_MAX], b[GEN_MAX];
    char why[512] = "";
    s = greedy(cpu, NULL, a, NULL, why, sizeof why);
    T_STATUS(id, s, DS_OK, msg_of(why));
    if (!s) {
        if (q == DS_QUANT_Q8_0) {
            s = greedy(gpu, a, b, NULL, why, sizeof why);   /* fed the CPU's tokens */
            T_STATUS(id, s, DS_OK, msg_of(why));
            int agree = 0;
            for (int i = 0; i < GEN; i++) agree += a[i] == b[i];
            q8_agree += agree;
            q8_total += GEN;
            printf("INFO %s: top-1 agreement %d/%d (teacher-forced)\n", id, agree, GEN);
        } else {
            s = greedy(gpu, NULL, b, NULL, why, sizeof why);
            T_STATUS(id, s, DS_OK, msg_of(why));
            int same = 0;
            while (same < GEN && a[same] == b[same]) same++;
            T_CHECK(id, same == GEN, "tokens differ from position %d of %d (cpu %d, cuda %d)", same, GEN,
                    same < GEN ? a[same] : -1, same < GEN ? b[same] : -1);
        }
    }
    ds_model_close(cpu);
    ds_model_close(gpu);
}

/* ==== 2: a small VRAM budget ============================================== */
static void test_budget(const char *path) {
    if (!have_device) {
        for (int k = 1; k <= 2; k++) {
            char id[32];
            snprintf(id, sizeof id, "cuda-fwd-2.%d", k);
            T_SKIP(id, "no CUDA device");
        }
        return;
    }
    ds_model *m = NULL;
    open_opts o = {0};
    o.device = DS_DEVICE_CUDA;
    ds_status s = open_with(path, &o, &m);
    T_STATUS("cuda-fwd-2.0", s, DS_OK, ds_last_error());
    if (s) return;
    int32_t want[GEN_MAX], got[GEN_MAX];
    char why[512] = "";
    s = greedy(m, NULL, want, NULL, why, sizeof why);
    T_STATUS("cuda-fwd-2.0", s, DS_OK, msg_of(why));
    /* the slot size: the resident run's budget over its expert count */
    ds_cache_stats st;
    (void)!ds_model_gpu_cache_stats(m, &st);
    uint64_t slot = st.slot_bytes;
    ds_model_close(m);
    if (s || !slot) return;
    for (int k = 1; k <= 2; k++) {
        char id[32];
        snprintf(id, sizeof id, "cuda-fwd-2.%d", k);
        o.gpu_cache = 3 * slot;                  /* three experts: fewer than one layer has */
        o.host_cache = k == 2 ? 4 * slot : 0;    /* with k == 2 the host pages too */
        s = open_with(path, &o, &m);
        T_STATUS(id, s, DS_OK, ds_last_error());
        if (s) continue;
        s = greedy(m, NULL, got, NULL, why, sizeof why);
        T_STATUS(id, s, DS_OK, msg_of(why));
        int same = 0;
        while (same < GEN && want[same] == got[same]) same++;
        T_CHECK(id, same == GEN, "tokens differ from position %d", same);
        (void)!ds_model_gpu_cache_stats(m, &st);
        printf("INFO %s: vram slots %d, hits %llu, misses %llu, evictions %llu, uploaded %.2f MB\n", id, st.n_slots,
               (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.evictions,
               (double)st.bytes_decrypted / 1e6);
        T_CHECK(id, st.n_slots == 3 && st.misses > 0 && st.evictions > 0 && st.bytes_decrypted > 0,
                "statistics do not show paging: %d slots, %llu misses, %llu evictions", st.n_slots,
                (unsigned long long)st.misses, (unsigned long long)st.evictions);
        ds_model_close(m);
    }
}

/* ==== 3: prefill equals decode ============================================ */
static void test_batch(const char *path) {
    if (!have_device) {
        T_SKIP("cuda-fwd-3", "no CUDA device");
        return;
    }
    ds_model *m = NULL;
    open_opts o = {0};
    o.device = DS_DEVICE_CUDA;
    ds_status s = open_with(path, &o, &m);
    T_STATUS("cuda-fwd-3", s, DS_OK, ds_last_error());
    if (s) return;
    ds_model_config cf;
    (void)!ds_model_get_config(m, &cf);
    int V = cf.vocab_size;
    float *all = malloc((size_t)N_PROMPT * V * sizeof(float)), *one = malloc((size_t)V * sizeof(float));
    ds_context *c1 = NULL, *c2 = NULL;
    s = ds_context_new(&c1, m, NULL);
    if (!s) s = ds_context_new(&c2, m, NULL);
    if (!s) s = ds_context_eval(c1, prompt, N_PROMPT, all, 1);
    double maxd = 0, scale = 0;
    for (int t = 0; !s && t < N_PROMPT; t++) {
        s = ds_context_eval(c2, &prompt[t], 1, one, 0);
        for (int i = 0; !s && i < V; i++) {
            maxd = fmax(maxd, fabs((double)one[i] - all[(size_t)t * V + i]));
            scale = fmax(scale, fabs((double)one[i]));
        }
    }
    T_STATUS("cuda-fwd-3", s, DS_OK, ds_last_error());
    printf("INFO cuda-fwd-3: max |prefill - decode| %.3g (logits up to %.3g)\n", maxd, scale);
    T_CHECK("cuda-fwd-3", maxd <= 1e-4 * (scale > 1 ? scale : 1), "prefill and decode differ by %.3g", maxd);
    ds_context_free(c1);
    ds_context_free(c2);
    free(all);
    free(one);
    ds_model_close(m);
}

/* ==== 4: a tampered expert; contexts on threads =========================== */
typedef struct thread_job {
    ds_model *m;
    int32_t out[GEN_MAX];
    ds_status s;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    j->s = greedy(j->m, NULL, j->out, NULL, NULL, 0);
    return NULL;
}

static void test_errors_threads(const char *path) {
    if (!have_device) {
        T_SKIP("cuda-fwd-4.1", "no CUDA device");
        T_SKIP("cuda-fwd-4.2", "no CUDA device");
        return;
    }
    /* a copy with one byte of every routed expert's ciphertext flipped */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/tampered.dsm", tmpdir);
    ds_model *m = NULL;
    open_opts o = {0};
    o.device = DS_DEVICE_CUDA;
    ds_status s = open_with(path, &o, &m);
    if (s) {
        T_STATUS("cuda-fwd-4.1", s, DS_OK, ds_last_error());
        return;
    }
    FILE *in = fopen(path, "rb"), *out = fopen(bad, "wb");
    size_t n = 0;
    unsigned char *buf = NULL;
    if (in && out) {
        fseek(in, 0, SEEK_END);
        n = (size_t)ftell(in);
        fseek(in, 0, SEEK_SET);
        buf = malloc(n);
        if (buf && fread(buf, 1, n, in) == n) {
            size_t ns = ds_model_segment_count(m);
            for (size_t i = 0; i < ns; i++) {
                ds_segment_info si;
                if (ds_model_segment_info(m, i, &si) == DS_OK && si.kind == DS_SEGMENT_EXPERT)
                    buf[si.file_offset + 100] ^= 0x40;
            }
            fwrite(buf, 1, n, out);
        }
    }
    if (in) fclose(in);
    if (out) fclose(out);
    free(buf);

    /* the experts are checked when first used: through the VRAM cache
     * (all resident: at open; paged: at the first token) */
    ds_model *t = NULL;
    s = open_with(bad, &o, &t);
    T_STATUS("cuda-fwd-4.1", s, DS_ERR_AUTH, ds_last_error());
    ds_model_close(t);
    ds_cache_stats st;
    (void)!ds_model_gpu_cache_stats(m, &st);
    o.gpu_cache = 3 * st.slot_bytes;
    o.host_cache = 4 * st.slot_bytes;
    s = open_with(bad, &o, &t);
    T_STATUS("cuda-fwd-4.1", s, DS_OK, ds_last_error());
    if (!s) {
        int32_t toks[GEN_MAX];
        char why[512] = "";
        s = greedy(t, NULL, toks, NULL, why, sizeof why);
        T_STATUS("cuda-fwd-4.1", s, DS_ERR_AUTH, msg_of(why));
        T_CHECK("cuda-fwd-4.1", strstr(why, "expert") != NULL, "message does not name the expert: %s", why);
        s = greedy(t, NULL, toks, NULL, why, sizeof why);   /* still refused, nothing crashed */
        T_STATUS("cuda-fwd-4.1", s, DS_ERR_AUTH, msg_of(why));
        ds_model_close(t);
    }

    /* two contexts on two threads, one model */
    int32_t want[GEN_MAX];
    s = greedy(m, NULL, want, NULL, NULL, 0);
    T_STATUS("cuda-fwd-4.2", s, DS_OK, ds_last_error());
    thread_job jobs[2] = {{m, {0}, DS_OK}, {m, {0}, DS_OK}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, thread_main, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        T_STATUS("cuda-fwd-4.2", jobs[i].s, DS_OK, "thread");
        T_CHECK("cuda-fwd-4.2", !memcmp(jobs[i].out, want, (size_t)GEN * sizeof want[0]), "thread %d's tokens differ", i);
    }
    ds_model_close(m);
}

/* ==== 5: LoRA adapters ===================================================== */
static const unsigned char lora_key[32] = {9, 9, 1, 2, 3, 4};

/* The PEFT fixture `name` converted against m (bound to its file). */
static const char *lora_convert(const char *name, ds_model *m, const char *tag) {
    static char out[8][512];
    static int next;
    char *p = out[next++ % 8];
    char dir[512];
    snprintf(p, 512, "%s/%s%s.dsa", tmpdir, name, tag);
    snprintf(dir, sizeof dir, "%s/peft/%s", testdata, name);
    ds_convert_lora_params lp = ds_convert_lora_default_params();
    lp.key = lora_key;
    lp.key_len = 32;
    lp.overwrite = 1;
    if (ds_convert_lora(dir, m, p, &lp) != DS_OK) {
        printf("convert-lora %s: %s\n", name, ds_last_error());
        return NULL;
    }
    return p;
}

static ds_adapter *lora_open(ds_model *m, const char *path) {
    ds_adapter *a = NULL;
    ds_adapter_params ap = ds_adapter_default_params();
    ap.key = lora_key;
    ap.key_len = 32;
    if (!path || ds_adapter_open(&a, m, path, &ap) != DS_OK) {
        printf("adapter %s: %s\n", path ? path : "(null)", ds_last_error());
        return NULL;
    }
    return a;
}

/* Every position's logits of prompt through a new context with a (or none)
 * at scale sc; decode: the last token evaluated on its own after the rest. */
static float *lora_run(ds_model *m, ds_adapter *a, float sc, int decode) {
    ds_model_config cf;
    if (ds_model_get_config(m, &cf) != DS_OK) return NULL;
    float *out = malloc((size_t)N_PROMPT * cf.vocab_size * sizeof(float));
    ds_context *c = NULL;
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = 64;
    ds_status s = out ? ds_context_new(&c, m, &cp) : DS_ERR_NOMEM;
    if (!s && a) s = ds_context_set_adapters(c, &a, &sc, 1);
    if (!s && !decode) s = ds_context_eval(c, prompt, N_PROMPT, out, 1);
    if (!s && decode) s = ds_context_eval(c, prompt, N_PROMPT - 1, out, 1);
    if (!s && decode) s = ds_context_eval(c, prompt + N_PROMPT - 1, 1, out + (size_t)(N_PROMPT - 1) * cf.vocab_size, 0);
    if (s) {
        printf("lora run: %s\n", c ? ds_context_errmsg(c) : ds_last_error());
        free(out);
        out = NULL;
    }
    ds_context_free(c);
    return out;
}

static double lora_maxdiff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static void test_lora_case(const char *name, const char *family) {
    char id[64];
    snprintf(id, sizeof id, "cuda-fwd-5.%s", name);
    char probe[512];
    snprintf(probe, sizeof probe, "%s/peft/%s/adapter_config.json", testdata, name);
    if (access(probe, R_OK) != 0) {
        T_SKIP(id, "no PEFT fixture ($DS_TESTDATA/peft: tests/gen/make_peft.py)");
        return;
    }
    if (!have_device) {
        T_SKIP(id, "no CUDA device");
        return;
    }
    const char *path = container(family, DS_QUANT_F32);
    ds_model *cpu = NULL, *gpu = NULL;
    open_opts o = {0};
    ds_status s = path ? open_with(path, &o, &cpu) : DS_ERR_IO;
    o.device = DS_DEVICE_CUDA;
    if (!s) s = open_with(path, &o, &gpu);
    T_STATUS(id, s, DS_OK, ds_last_error());
    const char *ap = s ? NULL : lora_convert(name, cpu, "");
    ds_adapter *ac = cpu && ap ? lora_open(cpu, ap) : NULL, *ag = gpu && ap ? lora_open(gpu, ap) : NULL;
    T_CHECK(id, ac && ag, "the adapter did not open");
    ds_model_config cf;
    memset(&cf, 0, sizeof cf);
    if (gpu) (void)!ds_model_get_config(gpu, &cf);
    size_t N = (size_t)N_PROMPT * cf.vocab_size, V = (size_t)cf.vocab_size;
    float *want = ac ? lora_run(cpu, ac, 1.0f, 0) : NULL, *got = ag ? lora_run(gpu, ag, 1.0f, 0) : NULL;
    float *base = ag ? lora_run(gpu, NULL, 1.0f, 0) : NULL;
    T_CHECK(id, want && got && base, "a run failed");
    if (want && got && base) {
        double d = lora_maxdiff(got, want, N), db = lora_maxdiff(got, base, N);
        printf("INFO %s: max |cuda - cpu| %.3g, max |adapted - base| %.3g\n", id, d, db);
        T_CHECK(id, d <= 1e-4, "max |cuda - cpu| %.3g > 1e-4", d);
        T_CHECK(id, db >= 1e-2, "the adapter moved the logits by %.3g only", db);
    }
    if (!strcmp(name, "good") && got) {
        /* decode: the last token alone */
        float *dec = lora_run(gpu, ag, 1.0f, 1);
        double d = dec ? lora_maxdiff(dec + (N_PROMPT - 1) * V, got + (N_PROMPT - 1) * V, V) : 1;
        printf("INFO cuda-fwd-5.decode: max |decode - prefill| %.3g\n", d);
        T_CHECK("cuda-fwd-5.decode", dec && d <= 1e-5, "max |decode - prefill| %.3g > 1e-5", d);
        free(dec);
        /* a VRAM budget of three experts over a host expert cache */
        ds_cache_stats st;
        (void)!ds_model_gpu_cache_stats(gpu, &st);
        ds_model *pm = NULL;
        open_opts po = o;
        po.gpu_cache = 3 * st.slot_bytes;
        po.host_cache = 4 * st.slot_bytes;
        s = open_with(path, &po, &pm);
        ds_adapter *pa = s ? NULL : lora_open(pm, ap);
        float *paged = pa ? lora_run(pm, pa, 1.0f, 0) : NULL;
        T_CHECK("cuda-fwd-5.paged", paged && !memcmp(paged, got, N * sizeof(float)),
                "paged run %s (max diff %.3g)", paged ? "differs" : "failed", paged ? lora_maxdiff(paged, got, N) : 0.0);
        free(paged);
        T_STATUS("cuda-fwd-5.paged", ds_adapter_close(pa), DS_OK, ds_last_error());
        ds_model_close(pm);
        /* three sequences, three lists, one pass */
        float half = 0.5f;
        float *own[3] = {got, base, lora_run(gpu, ag, half, 0)};
        ds_context *c = NULL;
        ds_context_params cp = ds_context_default_params();
        cp.n_seq = 3;
        cp.n_ctx = 64;
        s = own[2] ? ds_context_new(&c, gpu, &cp) : DS_ERR_NOMEM;
        ds_context *q[3] = {0};
        float scs[3] = {1.0f, 1.0f, half};
        for (int i = 0; i < 3 && !s; i++) {
            q[i] = ds_context_seq(c, i);
            s = ds_context_set_adapters(q[i], &ag, &scs[i], i == 1 ? 0 : 1);
            if (!s) s = ds_context_eval(q[i], prompt, N_PROMPT - 1, NULL, 0);
        }
        float *outv = malloc(3 * V * sizeof(float));
        float *outs[3] = {outv, outv + V, outv + 2 * V};
        int32_t last[3] = {prompt[N_PROMPT - 1], prompt[N_PROMPT - 1], prompt[N_PROMPT - 1]};
        if (!s) s = outv ? ds_context_eval_batch(q, last, 3, outs) : DS_ERR_NOMEM;
        T_STATUS("cuda-fwd-5.seqs", s, DS_OK, c ? ds_context_errmsg(c) : ds_last_error());
        for (int i = 0; i < 3 && !s; i++) {
            double d = lora_maxdiff(outs[i], own[i] + (N_PROMPT - 1) * V, V);
            T_CHECK("cuda-fwd-5.seqs", d <= 1e-5, "sequence %d: the batched step differs from its own run by %.3g", i,
                    d);
        }
        /* in use: closing is refused */
        T_STATUS("cuda-fwd-5.seqs", ds_adapter_close(ag), DS_ERR_MISUSE, ds_last_error());
        free(outv);
        free(own[2]);
        ds_context_free(c);
    }
    free(want);
    free(got);
    free(base);
    T_STATUS(id, ds_adapter_close(ac), DS_OK, ds_last_error());
    T_STATUS(id, ds_adapter_close(ag), DS_OK, ds_last_error());
    ds_model_close(cpu);
    ds_model_close(gpu);
}

/* The golden token ids (tests/ref/goldens/tokens.json: "token_ids": [...]). */
static int read_golden_tokens(int32_t *tok, int cap) {
    FILE *f = fopen("tests/ref/goldens/tokens.json", "r");
    if (!f) return 0;
    char buf[4096];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    const char *p = strstr(buf, "\"token_ids\"");
    p = p ? strchr(p, '[') : NULL;
    int n = 0;
    while (p && *p && *p != ']' && n < cap) {
        p++;
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        tok[n++] = (int32_t)v;
        p = end;
        while (*p == ' ' || *p == '\n') p++;
    }
    return n;
}

static void test_lora_peft(void) {
    static const char *cases[][2] = {{"v2lite_doc", "v2lite"}, {"v2lite_attn_all", "v2lite"},
                                     {"v2lite_mlp", "v2lite"}, {"v2lite_experts", "v2lite"},
                                     {"v2_qlora", "v2"},       {"v3_all", "v3"},
                                     {"moe16b_qkvo", "moe16b"}};
    int32_t tok[64];
    int n = read_golden_tokens(tok, 64);
    const char *only = getenv("DS_CUDA_FWD_FAMILIES");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char id[64], dir[256], lp[300];
        snprintf(id, sizeof id, "cuda-fwd-6.%s", cases[k][0]);
        snprintf(dir, sizeof dir, "tests/ref/lora/%s", cases[k][0]);
        snprintf(lp, sizeof lp, "%s/logits.f32", dir);
        if (only) {
            char list[256], item[64];
            snprintf(list, sizeof list, ",%s,", only);
            snprintf(item, sizeof item, ",%s,", cases[k][1]);
            if (!strstr(list, item)) continue;
        }
        if (n < 8 || access(lp, R_OK) != 0) {
            T_SKIP(id, "no PEFT golden (run from the repository root)");
            continue;
        }
        if (!have_device) {
            T_SKIP(id, "no CUDA device");
            continue;
        }
        const char *path = container(cases[k][1], DS_QUANT_F32);
        ds_model *m = NULL;
        open_opts o = {0};
        o.device = DS_DEVICE_CUDA;
        ds_status s = path ? open_with(path, &o, &m) : DS_ERR_IO;
        T_STATUS(id, s, DS_OK, ds_last_error());
        if (s) continue;
        char out[512];
        snprintf(out, sizeof out, "%s/%s.dsa", tmpdir, cases[k][0]);
        ds_convert_lora_params cp = ds_convert_lora_default_params();
        cp.key = lora_key;
        cp.key_len = 32;
        cp.overwrite = 1;
        s = ds_convert_lora(dir, m, out, &cp);
        T_STATUS(id, s, DS_OK, ds_last_error());
        ds_adapter *a = s ? NULL : lora_open(m, out);
        ds_model_config cf;
        (void)!ds_model_get_config(m, &cf);
        size_t N = (size_t)n * (size_t)cf.vocab_size;
        float *want = malloc(N * sizeof(float)), *got = malloc(N * sizeof(float));
        FILE *f = fopen(lp, "rb");
        int ok = want && got && f && fread(want, sizeof(float), N, f) == N;
        if (f) fclose(f);
        T_CHECK(id, ok && a, "golden of %zu floats or the adapter missing", N);
        ds_context *c = NULL;
        ds_context_params xp = ds_context_default_params();
        xp.n_ctx = 64;
        if (ok && a) {
            s = ds_context_new(&c, m, &xp);
            if (!s) s = ds_context_set_adapters(c, &a, NULL, 1);
            if (!s) s = ds_context_eval(c, tok, (size_t)n, got, 1);
            T_STATUS(id, s, DS_OK, c ? ds_context_errmsg(c) : ds_last_error());
            if (!s) {
                double d = lora_maxdiff(got, want, N);
                printf("INFO %s: max |cuda - PEFT| %.3g\n", id, d);
                T_CHECK(id, d <= 1e-4, "max |cuda - PEFT| %.3g > 1e-4", d);
            }
        }
        ds_context_free(c);
        free(want);
        free(got);
        T_STATUS(id, ds_adapter_close(a), DS_OK, ds_last_error());
        ds_model_close(m);
    }
}

static void test_lora(void) {
    static const char *cases[][2] = {{"good", "v2lite"}, {"mha", "moe16b"}, {"v3", "v3"}};
    const char *only = getenv("DS_CUDA_FWD_FAMILIES");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (only) {
            char list[256], item[64];
            snprintf(list, sizeof list, ",%s,", only);
            snprintf(item, sizeof item, ",%s,", cases[k][1]);
            if (!strstr(list, item)) continue;
        }
        test_lora_case(cases[k][0], cases[k][1]);
    }
}

/* ==== 7: experts dropped at conversion ==================================== */
static void test_dropped(const char *family, ds_arch arch, int n_group, int topk_group) {
    char id[64], calib[600], path[600], dir[512];
    snprintf(id, sizeof id, "cuda-fwd-7.%s", family);
    if (!have_device) {
        T_SKIP(id, "no CUDA device");
        return;
    }
    snprintf(calib, sizeof calib, "%s/%s-calib.json", tmpdir, family);
    snprintf(path, sizeof path, "%s/%s-dropped.dsm", tmpdir, family);
    snprintf(dir, sizeof dir, "%s/%s", testdata, family);
    FILE *f = fopen(calib, "w");
    if (!f) {
        T_CHECK(id, 0, "cannot write %s", calib);
        return;
    }
    /* layer 1 drops experts 1 and 2, layer 2 experts 6 and 7 (least mass) */
    fprintf(f, "{\"format\": \"deepseek.h calibration 1\", \"config\": {\"arch\": %d, \"n_layers\": 3,"
               " \"n_routed_experts\": 8, \"hidden_size\": 64, \"moe_intermediate_size\": 32,"
               " \"first_k_dense_replace\": 1, \"moe_layer_freq\": 1, \"n_experts_per_tok\": 2, \"n_group\": %d,"
               " \"topk_group\": %d, \"vocab_size\": 512}, \"layers\": {"
               "\"1\": {\"mass\": [5, 0.1, 0.2, 6, 7, 8, 9, 10], \"count\": [1, 1, 1, 1, 1, 1, 1, 1]},"
               "\"2\": {\"mass\": [5, 6, 7, 8, 9, 10, 0.1, 0.2], \"count\": [1, 1, 1, 1, 1, 1, 1, 1]}}}",
            (int)arch, n_group, topk_group);
    fclose(f);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_F32;
    cp.key = test_key;
    cp.key_len = 32;
    cp.drop_experts = 0.25;
    cp.drop_calib_path = calib;
    ds_status s = ds_convert(dir, path, &cp);
    T_STATUS(id, s, DS_OK, ds_last_error());
    if (s) return;
    ds_model *cpu = NULL, *gpu = NULL;
    open_opts oc = {0}, og = {0};
    og.device = DS_DEVICE_CUDA;
    s = open_with(path, &oc, &cpu);
    if (!s) s = open_with(path, &og, &gpu);
    T_STATUS(id, s, DS_OK, ds_last_error());
    int32_t a[GEN_MAX], b[GEN_MAX];
    char why[512] = "";
    if (!s) s = greedy(cpu, NULL, a, NULL, why, sizeof why);
    if (!s) s = greedy(gpu, NULL, b, NULL, why, sizeof why);
    T_STATUS(id, s, DS_OK, msg_of(why));
    if (!s) {
        int same = 0;
        while (same < GEN && a[same] == b[same]) same++;
        T_CHECK(id, same == GEN, "resident: tokens differ from position %d of %d", same, GEN);
    }
    ds_cache_stats st;
    memset(&st, 0, sizeof st);
    (void)!ds_model_gpu_cache_stats(gpu, &st);
    uint64_t slot = st.slot_bytes;
    ds_model_close(gpu);
    gpu = NULL;
    if (!s && slot) {
        og.gpu_cache = 3 * slot;
        s = open_with(path, &og, &gpu);
        T_STATUS(id, s, DS_OK, ds_last_error());
        if (!s) s = greedy(gpu, NULL, b, NULL, why, sizeof why);
        T_STATUS(id, s, DS_OK, msg_of(why));
        if (!s) {
            int same = 0;
            while (same < GEN && a[same] == b[same]) same++;
            (void)!ds_model_gpu_cache_stats(gpu, &st);
            T_CHECK(id, same == GEN && st.n_slots == 3 && st.misses > 0,
                    "paged: tokens differ from position %d of %d (%d slots, %llu misses)", same, GEN, st.n_slots,
                    (unsigned long long)st.misses);
        }
    }
    ds_model_close(gpu);
    ds_model_close(cpu);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *ng = getenv("DS_CUDA_FWD_TOKENS");
    if (ng && atoi(ng) >= 1 && atoi(ng) <= GEN_MAX) GEN = atoi(ng);
    testdata = getenv("DS_TESTDATA");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/v2lite/config.json", testdata ? testdata : "");
    if (!testdata || access(probe, R_OK) != 0 || !mkdtemp(tmpdir)) {
        T_SKIP("cuda-fwd", "no generated checkpoints ($DS_TESTDATA)");
        return t_finish("test_cuda_forward");
    }
    char *v2lite16 = container("v2lite", DS_QUANT_F16);
    test_select(v2lite16);
    /* DS_CUDA_FWD_LORA_ONLY=1: the LoRA cases alone (slow emulated runs) */
    const char *drop_only = getenv("DS_CUDA_FWD_DROP_ONLY");
    if (drop_only && drop_only[0] == '1') goto dropped;
    const char *lora_only = getenv("DS_CUDA_FWD_LORA_ONLY");
    if (lora_only && lora_only[0] == '1') {
        T_SKIP("cuda-fwd-1", "DS_CUDA_FWD_LORA_ONLY");
        T_SKIP("cuda-fwd-2", "DS_CUDA_FWD_LORA_ONLY");
        T_SKIP("cuda-fwd-3", "DS_CUDA_FWD_LORA_ONLY");
        T_SKIP("cuda-fwd-4", "DS_CUDA_FWD_LORA_ONLY");
        goto lora;
    }
    /* v3e256 (256 routed experts, top-8 of 8 groups) only when named */
    static const char *families[] = {"v2lite", "v2", "v3", "moe16b", "yarn", "v3e256"};
    const char *only = getenv("DS_CUDA_FWD_FAMILIES");   /* e.g. "v2lite,moe16b" for a quick run */
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        if (!only && !strcmp(families[f], "v3e256")) continue;
        if (only) {   /* a comma-separated list */
            char list[256], item[64];
            snprintf(list, sizeof list, ",%s,", only);
            snprintf(item, sizeof item, ",%s,", families[f]);
            if (!strstr(list, item)) continue;
        }
        for (int q = DS_QUANT_F32; q <= DS_QUANT_Q4_0; q++)
            test_parity(families[f], have_device ? container(families[f], (ds_quant)q) : NULL, (ds_quant)q, NULL);
    }
    /* the trained demo model (q8, its own key) */
    {
        unsigned char key[32];
        const char *demo = "models/demo.dsm";
        if (access(demo, R_OK) == 0 && ds_key_file_read("models/demo.key", key) == DS_OK)
            test_parity("demo", demo, DS_QUANT_Q8_0, key);
        else
            T_SKIP("cuda-fwd-1.demo.q8", "models/demo.dsm not found (run from the repository root)");
    }
    if (have_device) {
        printf("INFO cuda-fwd-1.q8: top-1 agreement %d/%d (%.1f%%) over all models\n", q8_agree, q8_total,
               q8_total ? 100.0 * q8_agree / q8_total : 0.0);
        T_CHECK("cuda-fwd-1.q8", q8_total > 0 && q8_agree * 100 >= 95 * q8_total, "top-1 agreement %d/%d < 95%%",
                q8_agree, q8_total);
        printf("INFO cuda-fwd-1.q4: top-1 agreement %d/%d (%.1f%%) over all models\n", q4_agree, q4_total,
               q4_total ? 100.0 * q4_agree / q4_total : 0.0);
        T_CHECK("cuda-fwd-1.q4", q4_total > 0 && q4_agree * 100 >= 95 * q4_total, "top-1 agreement %d/%d < 95%%",
                q4_agree, q4_total);
    } else {
        T_SKIP("cuda-fwd-1.q8", "no CUDA device");
        T_SKIP("cuda-fwd-1.q4", "no CUDA device");
    }
    char *v2lite8 = container("v2lite", DS_QUANT_Q8_0);
    test_budget(v2lite16);
    test_batch(v2lite16);
    test_errors_threads(v2lite8);
lora:
    test_lora();
    test_lora_peft();
dropped:
    test_dropped("v2lite", DS_ARCH_DEEPSEEK_V2, 1, 1);
    test_dropped("v3", DS_ARCH_DEEPSEEK_V3, 4, 2);
    /* the containers */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("INFO could not remove %s\n", tmpdir);
    return t_finish("test_cuda_forward");
}
