/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * ds_bench.c — `ds bench`: prefill and decode throughput, peak resident
 * memory and the expert pager's statistics of one model, at one expert-cache
 * budget or over a sweep of budgets.
 *
 *     ds bench <model.dsm> [--key-file F | --passphrase-env VAR] [--cache-mb M]
 *              [--prompt-tokens P] [--gen-tokens G] [--threads N] [--prefetch auto|always|off]
 *              [--evict lru|lfu] [--sweep 100,50,25,12.5] [--out DIR] [--repeat R] [--no-huge-pages]
 *
 * One run: open the model with the budget, evaluate P deterministic token ids
 * as one batch (prefill), then G greedy decode steps, one token each. The
 * pager statistics are reset after the prefill, so the decode figures are the
 * decode's own. With --sweep each budget (a percentage of the routed experts'
 * plaintext bytes; 100 = every expert resident, no cache) runs with the
 * prefetch mode asked for (auto by default) and without, each run in a fresh process (this program re-executed
 * through /proc/self/exe, the figures coming back through a pipe), because
 * the peak resident set (VmHWM) is a per-process high-water mark. The sweep
 * writes DIR/sweep.csv (one row per budget and prefetch setting, the run with
 * the median decode speed when --repeat > 1), DIR/sweep_runs.csv (every run)
 * and, when gnuplot is installed, DIR/sweep.png.
 *
 * Uses only the public API in deepseek.h. Exit status: 0 success, 1 a run
 * failed, 2 the command line was wrong. Key bytes and passphrase copies are
 * wiped with ds_memzero.
 */
#define _POSIX_C_SOURCE 200809L

#include "deepseek.h"
#include "tools/cli.h"
#include "tools/server/json.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int ds_cmd_bench(int argc, char **argv);
extern const char ds_bench_help[];

#define BENCH_USAGE 2
#define MAX_SWEEP 32
#define MAX_REPEAT 100

const char ds_bench_help[] =
    "usage: ds bench <model.dsm> [options]\n"
    "\n"
    "Prefill and decode speed, peak resident memory and expert-pager statistics.\n"
    "A run evaluates P deterministic token ids as one batch, then G greedy decode\n"
    "steps; the pager statistics cover the decode only.\n"
    "\n"
    "  -m, --model FILE      the model, instead of the positional <model.dsm>\n"
    "  --key-file F          the file's 32-byte key\n"
    "  --passphrase-env VAR  the file's passphrase, read from this environment variable\n"
    "  --cache-mb M          expert cache budget in MiB (0 = all experts resident, the default)\n"
    "  -p, --prompt-tokens P prompt length (default 128; -p as llama-bench's)\n"
    "  -n, --gen-tokens G    decode steps (default 64; -n as llama-bench's)\n"
    "  -t, --threads N       compute threads (default 0 = all CPUs)\n"
    "  --prefetch MODE       auto (default): decrypt guesses ahead when that overlaps with\n"
    "                        compute (ciphertext on storage, or a CPU beyond --threads);\n"
    "                        always: whenever a guess is good enough; off: on demand only\n"
    "  --no-prefetch         the same as --prefetch off (with --sweep: only runs without)\n"
    "  --evict lru|lfu       eviction policy (default lfu)\n"
    "  --exact-act           F32 activations with int8 weights (default: int8 activations)\n"
    "  --allow-plaintext     with a key, measure a plaintext (unencrypted) file anyway\n"
    "  --mlock               lock the keys, dense weights and expert cache into RAM\n"
    "  --no-huge-pages       weights and expert cache in 4 KiB pages (default: 2 MiB transparent\n"
    "                        huge pages where the kernel gives them; the run says how many)\n"
    "  --page-cache-mb M     ciphertext of recent experts the page cache may keep (MiB;\n"
    "                        default 0 = dropped after each decrypt)\n"
    "  --sweep P1,P2,...     budgets as percentages of the routed experts' bytes (100 =\n"
    "                        resident); each runs with the prefetch mode and without, in its own\n"
    "                        process; writes DIR/sweep.csv, DIR/sweep_runs.csv and\n"
    "                        DIR/sweep.png (gnuplot)\n"
    "  --out DIR             where --sweep writes (default: the current directory)\n"
    "  --device cpu|cuda     where the forward pass runs (default cpu)\n"
    "  --gpu N               CUDA device number (default 0)\n"
    "  --gpu-cache-mb M      VRAM expert cache in MiB (default 0 = every expert on the device)\n"
    "  --peak-gbs B          the memory's peak bandwidth in GB/s (e.g. 4800 for an H200's\n"
    "                        HBM): decode is also reported as a share of the bound it sets\n"
    "  -r, --repeat R        runs per setting; the one with the median decode speed is\n"
    "                        reported (default 1; -r as llama-bench's)\n"
    "  --json                the figures as one JSON object on stdout (the text goes to\n"
    "                        stderr): a single run's, or with --sweep every setting's (\"runs\")\n"
    "  --lora FILE, --lora-scaled FILE S, --lora-key-file F\n"
    "                        measure with LoRA adapters applied (as for ds run); the report\n"
    "                        names each (\"adapter\" lines; \"adapters\" in --json)\n"
    "\n"
    "MB and GB are 10^6 and 10^9 bytes. Hit rate = (hits + prefetch hits) / all\n"
    "lookups; prediction accuracy = predicted experts used / predicted. Decrypt\n"
    "time is summed over threads (the prefetch thread's included); compute per\n"
    "token is the fully resident run's decode time when the sweep has 100%,\n"
    "else decode time minus the time spent waiting for experts.\n";

/* ==== Small helpers ======================================================= */

/* A finite decimal number, the whole string. */
static int parse_double(const char *s, double *out) {
    char *end = NULL;
    if (!s || !*s) return 0;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* "Vm...:  123 kB" from /proc/self/status, in kB; 0 when unavailable. */
static uint64_t proc_status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t v = 0;
    size_t n = strlen(field);
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = strtoull(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

/* mkdir -p */
static int make_dirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* ==== Options ============================================================= */

typedef struct bench_opts {
    const char *model;
    const char *key_file, *pass_env;
    uint64_t cache_bytes, page_cache_bytes, gpu_cache_bytes;
    int prompt_tokens, gen_tokens, threads, prefetch, repeat, exact_act, no_huge_pages;
    int allow_plaintext, mlock;
    ds_device device;
    int gpu_index;
    double peak_gbs;
    ds_evict_policy evict;
    double sweep[MAX_SWEEP];
    int n_sweep;
    const char *out_dir;
    int json;                     /* --json */
    lora_opts lora;               /* --lora, --lora-scaled, --lora-key-file */
    /* hidden: a sweep's child run */
    int child_fd;                 /* -1: not a child */
    double child_pct;
} bench_opts;

/* What one run measured (travels through the pipe: same binary both ends). */
typedef struct run_result {
    int ok;
    double pct;                   /* budget as % of the routed experts (100 = resident) */
    uint64_t budget_bytes;        /* 0 = resident */
    int prefetch;
    int n_prompt, n_gen;
    double open_s, prefill_s, decode_s;
    ds_cache_stats prefill, decode;
    uint64_t rss_open_kb;         /* VmRSS after open */
    uint64_t hwm_kb;              /* VmHWM at the end */
    uint64_t token_hash;          /* FNV-1a of the generated ids */
    ds_cache_stats gpu;           /* the VRAM expert cache over the decode */
    uint64_t touched_bytes;       /* weight bytes a decode token reads (estimate) */
    char device[128];
    uint64_t expert_bytes;        /* the routed experts' plaintext, all layers */
    uint64_t dense_bytes;         /* everything else */
    ds_huge_page_info huge;       /* after the decode */
    int n_lora;                   /* the adapters applied (o->lora), as opened */
    int lora_rank[DS_MAX_ADAPTERS];
    uint64_t lora_params[DS_MAX_ADAPTERS];
    char lora_targets[DS_MAX_ADAPTERS][256];
} run_result;

static int parse_sweep(const char *s, bench_opts *o) {
    const char *p = s;
    o->n_sweep = 0;
    while (*p) {
        char item[64];
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof item || o->n_sweep == MAX_SWEEP) return 0;
        memcpy(item, p, n);
        item[n] = '\0';
        double v;
        if (!parse_double(item, &v) || !(v > 0) || v > 100) return 0;
        o->sweep[o->n_sweep++] = v;
        p += n;
        if (*p == ',') {
            p++;
            if (!*p) return 0;
        }
    }
    return o->n_sweep > 0;
}

/* Matches "--name value" or "--name=value"; *bad on a missing value. */
static int opt_val(int argc, char **argv, int *i, const char *name, const char **val, int *bad) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        usage_error("bench", "option %s needs a value", name);
        *bad = 1;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

/* Returns 0, or BENCH_USAGE (message printed), or -1 for --help. */
static int parse_opts(int argc, char **argv, bench_opts *o) {
    memset(o, 0, sizeof *o);
    o->prompt_tokens = 128;
    o->gen_tokens = 64;
    o->prefetch = DS_PREFETCH_AUTO;
    o->repeat = 1;
    o->evict = DS_EVICT_LFU_DECAY;
    o->out_dir = ".";
    o->child_fd = -1;
    const char *cache_s = NULL, *pcache_s = NULL, *p_s = NULL, *g_s = NULL, *t_s = NULL, *ev_s = NULL, *sw_s = NULL, *r_s = NULL,
               *out_s = NULL, *cfd_s = NULL, *cpct_s = NULL, *cbud_s = NULL, *cpf_s = NULL,
               *dev_s = NULL, *gc_s = NULL, *gi_s = NULL, *pk_s = NULL, *pf_s = NULL;
    int only_pos = 0, bad = 0, no_pf = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (o->model) return usage_error("bench", "too many arguments ('%s'), or the model given twice", a);
            o->model = a;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
        {
            argscan as = {"bench", argc, argv, i, 0, 0};
            if (lora_option(&as, &o->lora)) {
                if (as.bad) return BENCH_USAGE;
                i = as.i;
                continue;
            }
        }
        if (!strcmp(a, "--no-prefetch")) {
            if (no_pf++) return usage_error("bench", "option --no-prefetch given twice");
            continue;
        }
        if (!strcmp(a, "--exact-act") || !strcmp(a, "--exact-activations")) {
            o->exact_act = 1;
            continue;
        }
        if (!strcmp(a, "--allow-plaintext")) {
            o->allow_plaintext = 1;
            continue;
        }
        if (!strcmp(a, "--mlock")) {
            o->mlock = 1;
            continue;
        }
        if (!strcmp(a, "--no-huge-pages")) {
            o->no_huge_pages = 1;
            continue;
        }
        if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        }
        /* -m/--model: the model as an option (llama.cpp's spelling) */
        if (opt_val(argc, argv, &i, "-m", &v, &bad) || opt_val(argc, argv, &i, "--model", &v, &bad)) {
            if (bad) return BENCH_USAGE;
            if (o->model) return usage_error("bench", "the model is given twice ('%s' and '%s')", o->model, v);
            if (!v[0]) return usage_error("bench", "-m/--model needs a file name");
            o->model = v;
            continue;
        }
        const char **slot = NULL;
        const char *name = NULL;
        static const char *names[] = {"--key-file", "--passphrase-env", "--cache-mb", "--prompt-tokens",
                                      "--gen-tokens", "--threads", "--evict", "--sweep", "--out", "--repeat",
                                      "--x-child-fd", "--x-pct", "--x-budget", "--x-prefetch", "--page-cache-mb",
                                      "--device", "--gpu-cache-mb", "--gpu", "--peak-gbs", "--prefetch",
                                      /* llama-bench's spellings */
                                      "-p", "-n", "-t", "-r"};
        const char **slots[] = {&o->key_file, &o->pass_env, &cache_s, &p_s, &g_s, &t_s, &ev_s, &sw_s,
                                &out_s, &r_s, &cfd_s, &cpct_s, &cbud_s, &cpf_s, &pcache_s,
                                &dev_s, &gc_s, &gi_s, &pk_s, &pf_s, &p_s, &g_s, &t_s, &r_s};
        /* the name an alias's value is reported under (--prompt-tokens for -p, ...) */
        static const char *const canon[] = {"--prompt-tokens", "--gen-tokens", "--threads", "--repeat"};
        for (size_t k = 0; k < sizeof names / sizeof names[0] && !slot; k++)
            if (opt_val(argc, argv, &i, names[k], &v, &bad)) {
                slot = slots[k];
                name = names[k][1] == '-' ? names[k] : canon[k - (sizeof names / sizeof names[0] - 4)];
            }
        if (bad) return BENCH_USAGE;
        if (!slot) return usage_error("bench", "unknown option '%s'", a);
        if (*slot) return usage_error("bench", "option %s given twice", name);
        *slot = v;
    }
    if (!o->model) return usage_error("bench", "missing <model.dsm>");
    int lrc = lora_opts_check("bench", &o->lora);
    if (lrc) return lrc;
    if (pf_s && no_pf) return usage_error("bench", "--prefetch and --no-prefetch exclude each other");
    if (no_pf) o->prefetch = DS_PREFETCH_OFF;
    if (pf_s && (o->prefetch = parse_prefetch(pf_s)) < 0)
        return usage_error("bench", "--prefetch takes auto, always or off, not '%s'", pf_s);
    if (o->key_file && o->pass_env) return usage_error("bench", "--key-file and --passphrase-env exclude each other");
    if (o->key_file && !o->key_file[0]) return usage_error("bench", "--key-file needs a file name");
    if (o->pass_env && !o->pass_env[0]) return usage_error("bench", "--passphrase-env needs a variable name");
    if (out_s) {
        if (!out_s[0]) return usage_error("bench", "--out needs a directory");
        o->out_dir = out_s;
    }
    uint64_t v;
    if (cache_s) {
        if (!parse_u64(cache_s, UINT64_MAX >> 20, &v))
            return usage_error("bench", "--cache-mb needs a whole number of MiB (0 = all experts resident), not '%s'", cache_s);
        o->cache_bytes = v << 20;
    }
    if (pcache_s) {
        if (!parse_u64(pcache_s, UINT64_MAX >> 20, &v))
            return usage_error("bench", "--page-cache-mb needs a whole number of MiB, not '%s'", pcache_s);
        o->page_cache_bytes = v << 20;
    }
    if (dev_s) {
        if (!strcmp(dev_s, "cpu")) o->device = DS_DEVICE_CPU;
        else if (!strcmp(dev_s, "cuda")) o->device = DS_DEVICE_CUDA;
        else return usage_error("bench", "--device must be cpu or cuda, not '%s'", dev_s);
    }
    if (gc_s) {
        if (!parse_u64(gc_s, UINT64_MAX >> 20, &v))
            return usage_error("bench", "--gpu-cache-mb needs a whole number of MiB (0 = every expert on the device), not '%s'", gc_s);
        o->gpu_cache_bytes = v << 20;
    }
    if (gi_s) {
        if (!parse_u64(gi_s, 1024, &v)) return usage_error("bench", "--gpu needs a CUDA device number, not '%s'", gi_s);
        o->gpu_index = (int)v;
    }
    if ((gc_s || gi_s) && o->device != DS_DEVICE_CUDA) return usage_error("bench", "--gpu-cache-mb and --gpu need --device cuda");
    if (pk_s && (!parse_double(pk_s, &o->peak_gbs) || !(o->peak_gbs > 0)))
        return usage_error("bench", "--peak-gbs needs a bandwidth in GB/s above 0, not '%s'", pk_s);
    if (p_s) {
        if (!parse_u64(p_s, 1u << 20, &v) || v == 0)
            return usage_error("bench", "--prompt-tokens needs a whole number from 1 to 1048576, not '%s'", p_s);
        o->prompt_tokens = (int)v;
    }
    if (g_s) {
        if (!parse_u64(g_s, 1u << 20, &v) || v == 0)
            return usage_error("bench", "--gen-tokens needs a whole number from 1 to 1048576, not '%s'", g_s);
        o->gen_tokens = (int)v;
    }
    if (t_s) {
        if (!parse_u64(t_s, 4096, &v)) return usage_error("bench", "--threads needs a whole number from 0 to 4096, not '%s'", t_s);
        o->threads = (int)v;
    }
    if (ev_s && !parse_evict(ev_s, &o->evict)) return usage_error("bench", "--evict must be lru or lfu, not '%s'", ev_s);
    if (r_s) {
        if (!parse_u64(r_s, MAX_REPEAT, &v) || v == 0)
            return usage_error("bench", "--repeat needs a whole number from 1 to %d, not '%s'", MAX_REPEAT, r_s);
        o->repeat = (int)v;
    }
    if (sw_s) {
        if (!parse_sweep(sw_s, o))
            return usage_error("bench", "--sweep needs up to %d comma-separated percentages in (0, 100], e.g. 100,50,25,12.5, "
                         "not '%s'",
                         MAX_SWEEP, sw_s);
        if (cache_s) return usage_error("bench", "--sweep and --cache-mb exclude each other");
    }
    if (cfd_s) {   /* a sweep's child: budget and prefetch given exactly */
        double pct = 0;
        uint64_t bud = 0, pf = 0;
        if (!parse_u64(cfd_s, 1u << 20, &v) || !cpct_s || !parse_double(cpct_s, &pct) || !cbud_s ||
            !parse_u64(cbud_s, UINT64_MAX, &bud) || !cpf_s || !parse_u64(cpf_s, DS_PREFETCH_ALWAYS, &pf))
            return usage_error("bench", "bad internal child arguments");
        o->child_fd = (int)v;
        o->child_pct = pct;
        o->cache_bytes = bud;
        o->prefetch = (int)pf;
        o->n_sweep = 0;
    }
    return 0;
}

/* ==== One run ============================================================= */

/* The library's warnings (CUDA asked for but absent, ...) go to stderr. */
static void bench_log(void *user, ds_log_level level, const char *msg) {
    (void)user;
    if (level <= DS_LOG_WARN) fprintf(stderr, "ds bench: %s: %s\n", level == DS_LOG_ERROR ? "error" : "warning", msg);
}

/* Opens the model: key file or passphrase when the file is encrypted; the
 * secret is wiped before returning. Prints the failure. */
static ds_model *bench_open(const bench_opts *o, uint64_t budget, int prefetch, int load_weights, lora_set *ls) {
    ds_file_info fi;
    ds_status st = ds_file_info_read(o->model, &fi);
    if (st != DS_OK) {
        char hint[PATH_HINT_MAX];
        fail("bench", "%s%s", errmsg(st), model_path_hint(o->model, hint, sizeof hint));
        return NULL;
    }
    ds_model_params mp = ds_model_default_params();
    secret sec;
    memset(&sec, 0, sizeof sec);
    if (fi.cipher != DS_CIPHER_NONE) {
        /* the sweep's re-executed children read the passphrase variable too */
        key_opts ko = {.key_file = o->key_file, .pass_env = o->pass_env, .keep_env = 1};
        if (!o->key_file && !o->pass_env) {
            fail("bench", "%s is encrypted: give --key-file F or --passphrase-env VAR", o->model);
            return NULL;
        }
        if (secret_load("bench", &ko, &sec)) {
            secret_wipe(&sec);
            return NULL;
        }
        secret_params(&sec, &mp);
    }
    mp.load_weights = load_weights;
    mp.expert_cache_bytes = budget;
    mp.prefetch = (ds_prefetch_mode)prefetch;
    mp.evict_policy = o->evict;
    mp.n_threads = o->threads;
    mp.exact_activations = o->exact_act;
    mp.allow_plaintext = o->allow_plaintext;
    mp.mlock = o->mlock;
    mp.huge_pages = !o->no_huge_pages;
    mp.page_cache_bytes = o->page_cache_bytes;
    mp.log = bench_log;
    mp.device = o->device;
    mp.gpu_index = o->gpu_index;
    mp.gpu_cache_bytes = o->gpu_cache_bytes;
    ds_model *m = NULL;
    st = ds_model_open(&m, o->model, &mp);
    if (st != DS_OK) {
        secret_wipe(&sec);
        fail("bench", "%s", errmsg(st));
        return NULL;
    }
    /* the adapters, with the model's key unless --lora-key-file */
    if (ls && lora_open("bench", &o->lora, m, &sec, o->allow_plaintext, ls)) {
        secret_wipe(&sec);
        ds_model_close(m);
        return NULL;
    }
    secret_wipe(&sec);
    return m;
}

/* Prompt ids: BOS, then a fixed pseudo-random walk over the vocabulary. */
static void make_prompt(int32_t *ids, int n, int n_vocab, int32_t bos) {
    uint32_t x = 0x9e3779b9u;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = (int32_t)((x >> 8) % (uint32_t)n_vocab);
    }
    if (bos >= 0 && bos < n_vocab) ids[0] = bos;
}

/* Opens, prefills, decodes. Returns 0 or EXIT_FAILURE (message printed). */
static int bench_once(const bench_opts *o, uint64_t budget, int prefetch, double pct, run_result *r) {
    memset(r, 0, sizeof *r);
    r->pct = pct;
    r->budget_bytes = budget;
    r->prefetch = prefetch;   /* as asked; without a cache there is nothing to prefetch */
    r->n_prompt = o->prompt_tokens;
    r->n_gen = o->gen_tokens;
    double t0 = now_s();
    lora_set ls;
    memset(&ls, 0, sizeof ls);
    ds_model *m = bench_open(o, budget, prefetch, 1, &ls);
    if (!m) return EXIT_FAILURE;
    r->n_lora = (int)ls.n;
    for (size_t i = 0; i < ls.n; i++) {
        ds_adapter_info ai;
        if (ds_adapter_get_info(ls.a[i], &ai) != DS_OK) continue;
        r->lora_rank[i] = ai.rank;
        r->lora_params[i] = ai.n_params;
        snprintf(r->lora_targets[i], sizeof r->lora_targets[i], "%s", ai.targets);
    }
    r->open_s = now_s() - t0;
    r->rss_open_kb = proc_status_kb("VmRSS");
    snprintf(r->device, sizeof r->device, "%s", ds_model_device_name(m));
    size_t nseg = ds_model_segment_count(m);
    uint64_t embed_bytes = 0, n_expert_segs = 0;
    for (size_t i = 0; i < nseg; i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) != DS_OK) continue;
        if (si.kind == DS_SEGMENT_EXPERT) {
            r->expert_bytes += si.plain_bytes;
            n_expert_segs++;
        } else {
            r->dense_bytes += si.plain_bytes;
            if (si.layer < 0) embed_bytes += si.plain_bytes;
        }
    }
    if (r->pct <= 0)
        r->pct = budget && r->expert_bytes ? 100.0 * (double)budget / (double)r->expert_bytes : 100.0;
    ds_model_config cfg;
    ds_status st = ds_model_get_config(m, &cfg);
    ds_context *c = NULL;
    ds_sampler *smp = NULL;
    float *logits = NULL;
    int32_t *ids = NULL;
    int rc = EXIT_FAILURE;
    if (st != DS_OK) {
        fail("bench", "%s", errmsg(st));
        goto done;
    }
    {
        /* a decode token reads every dense weight but the embedding table
         * (one row of it), and n_experts_per_tok experts per MoE layer */
        int n_moe = cfg.n_routed_experts > 0 ? (int)(n_expert_segs / (uint64_t)cfg.n_routed_experts) : 0;
        uint64_t per_expert = n_expert_segs ? r->expert_bytes / n_expert_segs : 0;
        r->touched_bytes = r->dense_bytes - embed_bytes + (uint64_t)n_moe * (uint64_t)cfg.n_experts_per_tok * per_expert;
        if (cfg.tie_word_embeddings) r->touched_bytes += embed_bytes;
    }
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = o->prompt_tokens + o->gen_tokens + 1;
    cp.n_threads = o->threads;
    if ((st = ds_context_new(&c, m, &cp)) != DS_OK) {
        fail("bench", "%s", errmsg(st));
        goto done;
    }
    if (lora_apply("bench", &ls, c)) goto done;
    int trained = ctx_beyond_trained(m, cp.n_ctx);
    if (trained)
        fprintf(stderr, "ds bench: warning: %d prompt + %d decode tokens go beyond the %d positions the model was "
                "trained for (max_position_embeddings)\n", o->prompt_tokens, o->gen_tokens, trained);
    ds_sampler_params sp = ds_sampler_default_params();
    sp.temperature = 0;   /* greedy */
    if ((st = ds_sampler_new(&smp, &sp)) != DS_OK) {
        fail("bench", "%s", errmsg(st));
        goto done;
    }
    logits = malloc((size_t)cfg.vocab_size * sizeof *logits);
    ids = malloc((size_t)o->prompt_tokens * sizeof *ids);
    if (!logits || !ids) {
        fail("bench", "out of memory");
        goto done;
    }
    const ds_tokenizer *tok = ds_model_tokenizer(m);
    int nv = ds_tokenizer_vocab_size(tok);
    if (nv <= 0 || nv > cfg.vocab_size) nv = cfg.vocab_size;
    make_prompt(ids, o->prompt_tokens, nv, ds_tokenizer_bos(tok));

    double t1 = now_s();
    if ((st = ds_context_eval(c, ids, (size_t)o->prompt_tokens, logits, 0)) != DS_OK) {
        fail("bench", "prefill: %s", errmsg(st));
        goto done;
    }
    double t2 = now_s();
    r->prefill_s = t2 - t1;
    if ((st = ds_model_cache_stats(m, &r->prefill)) != DS_OK) {
        fail("bench", "%s", errmsg(st));
        goto done;
    }
    ds_model_cache_stats_reset(m);
    uint64_t h = 1469598103934665603ull;
    int32_t next = 0;
    t2 = now_s();
    for (int i = 0; i < o->gen_tokens; i++) {
        if ((st = ds_sampler_sample(smp, logits, cfg.vocab_size, NULL, 0, &next)) != DS_OK) {
            fail("bench", "sampling: %s", errmsg(st));
            goto done;
        }
        h = (h ^ (uint64_t)(uint32_t)next) * 1099511628211ull;
        if ((st = ds_context_eval(c, &next, 1, logits, 0)) != DS_OK) {
            fail("bench", "decode step %d: %s", i + 1, errmsg(st));
            goto done;
        }
    }
    r->decode_s = now_s() - t2;
    if ((st = ds_model_cache_stats(m, &r->decode)) != DS_OK) {
        fail("bench", "%s", errmsg(st));
        goto done;
    }
    if ((st = ds_model_gpu_cache_stats(m, &r->gpu)) != DS_OK) {
        fail("bench", "%s", errmsg(st));
        goto done;
    }
    r->token_hash = h;
    r->hwm_kb = proc_status_kb("VmHWM");
    if ((st = ds_model_huge_page_info(m, &r->huge)) != DS_OK) {
        fail("bench", "%s", errmsg(st));
        goto done;
    }
    r->ok = 1;
    rc = 0;
done:
    free(logits);
    free(ids);
    ds_sampler_free(smp);
    ds_context_free(c);
    lora_close(&ls);
    ds_model_close(m);
    return rc;
}

/* ==== Derived figures ===================================================== */

static double hit_rate(const run_result *r) {
    const ds_cache_stats *s = &r->decode;
    if (!r->budget_bytes) return 1.0;   /* resident: every lookup finds its expert */
    return ratio((double)(s->hits + s->prefetch_hits), (double)(s->hits + s->misses + s->prefetch_hits));
}
static double pred_acc(const run_result *r) {
    return ratio((double)r->decode.predicted_hits, (double)r->decode.predicted);
}
static double decrypt_gbs(const run_result *r) {
    return ratio((double)r->decode.bytes_decrypted / 1e9, r->decode.decrypt_seconds);
}
static double prefill_tps(const run_result *r) { return ratio(r->n_prompt, r->prefill_s); }
static double decode_tps(const run_result *r) { return ratio(r->n_gen, r->decode_s); }
static double per_tok_ms(const run_result *r, double secs) { return ratio(secs * 1e3, r->n_gen); }
static double rss_mb(uint64_t kb) { return (double)kb * 1024.0 / 1e6; }

static void print_run(const bench_opts *o, const run_result *r, double compute_ms) {
    const ds_cache_stats *s = &r->decode;
    printf("model          %s: routed experts %.1f MB, dense %.1f MB\n", o->model, (double)r->expert_bytes / 1e6,
           (double)r->dense_bytes / 1e6);
    if (r->budget_bytes)
        printf("budget         %.1f MiB = %.1f MB (%.1f%% of the routed experts): %d slots of %.2f MB, prefetch %s, "
               "evict %s, page-cache tier %llu MiB\n",
               (double)r->budget_bytes / 1048576.0, (double)r->budget_bytes / 1e6, r->pct, s->n_slots, (double)s->slot_bytes / 1e6,
               prefetch_name(r->prefetch), evict_name(o->evict),
               (unsigned long long)(o->page_cache_bytes >> 20));
    else
        printf("budget         all experts resident (no expert cache)\n");
    printf("device         %s\n", r->device);
    if (!r->n_lora) printf("adapters       none\n");
    for (int i = 0; i < r->n_lora; i++)
        printf("adapter        %s: scale %g, rank %d, targets %s, %llu parameters\n", o->lora.path[i],
               (double)o->lora.scale[i], r->lora_rank[i], r->lora_targets[i], (unsigned long long)r->lora_params[i]);
    printf("open           %.2f s, resident after open %.1f MB\n", r->open_s, rss_mb(r->rss_open_kb));
    printf("prefill        %d tokens in %.3f s: %.2f tok/s\n", r->n_prompt, r->prefill_s, prefill_tps(r));
    printf("decode         %d tokens in %.3f s: %.2f tok/s, %.2f ms/token\n", r->n_gen, r->decode_s,
           decode_tps(r), per_tok_ms(r, r->decode_s));
    printf("peak RSS       %.1f MB (VmHWM)\n", rss_mb(r->hwm_kb));
    {
        const ds_huge_page_info *hp = &r->huge;
        char now[64] = "unknown";
        if (hp->measured) snprintf(now, sizeof now, "%.1f MB", (double)hp->huge_bytes / 1e6);
        printf("huge pages     %s: asked for %.1f MB of weight memory, refused %.1f MB%s%s; in 2 MiB pages after "
               "the decode: %s (AnonHugePages)\n",
               hp->requested ? "on" : "off (--no-huge-pages)", (double)hp->advised_bytes / 1e6,
               (double)hp->refused_bytes / 1e6, hp->error ? ": " : "", hp->error ? strerror(hp->error) : "", now);
    }
    {
        double gbs = ratio((double)r->touched_bytes * decode_tps(r), 1e9);
        printf("weights/token  %.1f MB read per decode token (estimate): %.1f GB/s effective", (double)r->touched_bytes / 1e6,
               gbs);
        if (o->peak_gbs > 0)
            printf(", %.1f%% of the %.0f GB/s bound (%.1f tok/s)", 100.0 * gbs / o->peak_gbs, o->peak_gbs,
                   ratio(o->peak_gbs * 1e9, (double)r->touched_bytes));
        printf("\n");
    }
    if (strncmp(r->device, "cuda", 4) == 0) {
        const ds_cache_stats *g = &r->gpu;
        if (g->n_slots)
            printf("vram cache     %d slots of %.2f MB (%.1f MB): hits %llu, misses %llu (%.1f%%), evictions %llu, "
                   "uploaded %.1f MB, staging %.3f s\n",
                   g->n_slots, (double)g->slot_bytes / 1e6, (double)g->budget_bytes / 1e6,
                   (unsigned long long)g->hits, (unsigned long long)g->misses,
                   100.0 * ratio((double)g->hits, (double)(g->hits + g->misses)), (unsigned long long)g->evictions,
                   (double)g->bytes_decrypted / 1e6, g->wait_seconds);
        else
            printf("vram cache     every routed expert in device memory (%.1f MB)\n", (double)g->budget_bytes / 1e6);
    }
    if (!r->budget_bytes) {
        printf("compute        %.2f ms/token (resident: all decode time is compute)\n", per_tok_ms(r, r->decode_s));
        return;
    }
    printf("prefill pager  %llu misses, %llu prefetch hits, %.1f MB decrypted in %.3f s\n",
           (unsigned long long)r->prefill.misses, (unsigned long long)r->prefill.prefetch_hits,
           (double)r->prefill.bytes_decrypted / 1e6, r->prefill.decrypt_seconds);
    printf("decode pager   hits %llu, misses %llu, prefetch hits %llu (issued %llu, wasted %llu, dropped %llu, "
           "guesses skipped %llu, in memory %llu, joined %llu), evictions %llu\n",
           (unsigned long long)s->hits, (unsigned long long)s->misses, (unsigned long long)s->prefetch_hits,
           (unsigned long long)s->prefetch_issued, (unsigned long long)s->prefetch_wasted,
           (unsigned long long)s->prefetch_dropped, (unsigned long long)s->prefetch_skipped,
           (unsigned long long)s->prefetch_in_memory, (unsigned long long)s->fills_joined,
           (unsigned long long)s->evictions);
    printf("hit rate       %.1f%%\n", 100.0 * hit_rate(r));
    printf("prediction     %.1f%% accurate (%llu of %llu predicted experts used)\n", 100.0 * pred_acc(r),
           (unsigned long long)s->predicted_hits, (unsigned long long)s->predicted);
    printf("decrypted      %.1f MB in %.3f s (%.2f GB/s, summed over threads); waited %.3f s\n",
           (double)s->bytes_decrypted / 1e6, s->decrypt_seconds, decrypt_gbs(r), s->wait_seconds);
    double dec = per_tok_ms(r, r->decode_s), decr = per_tok_ms(r, s->decrypt_seconds);
    double comp = compute_ms >= 0 ? compute_ms : per_tok_ms(r, r->decode_s - s->wait_seconds);
    printf("per token      decode %.2f ms; compute %.2f ms (%s); decrypt %.2f ms; wait %.2f ms\n", dec, comp,
           compute_ms >= 0 ? "resident run" : "decode - wait", decr, per_tok_ms(r, s->wait_seconds));
    printf("overlap        max(compute, decrypt) = %.2f ms, compute + decrypt = %.2f ms, measured %.2f ms\n",
           comp > decr ? comp : decr, comp + decr, dec);
}

/* ==== JSON (--json) ======================================================= */

/* A number; JSON has no NaN or infinity. */
static void jnum(sbuf *b, const char *key, double v) {
    if (isfinite(v)) sb_printf(b, ", \"%s\": %.9g", key, v);
    else sb_printf(b, ", \"%s\": null", key);
}
static void ju64(sbuf *b, const char *key, uint64_t v) { sb_printf(b, ", \"%s\": %llu", key, (unsigned long long)v); }
static void jstr(sbuf *b, const char *key, const char *v) {
    sb_printf(b, ", \"%s\": ", key);
    sb_json_str(b, v, strlen(v));
}

static void json_cache_stats(sbuf *b, const char *key, const ds_cache_stats *s) {
    sb_printf(b, ", \"%s\": {\"n_slots\": %d", key, s->n_slots);
    ju64(b, "slot_bytes", s->slot_bytes);
    ju64(b, "budget_bytes", s->budget_bytes);
    ju64(b, "hits", s->hits);
    ju64(b, "misses", s->misses);
    ju64(b, "prefetch_issued", s->prefetch_issued);
    ju64(b, "prefetch_hits", s->prefetch_hits);
    ju64(b, "prefetch_wasted", s->prefetch_wasted);
    ju64(b, "prefetch_dropped", s->prefetch_dropped);
    ju64(b, "prefetch_skipped", s->prefetch_skipped);
    ju64(b, "prefetch_in_memory", s->prefetch_in_memory);
    ju64(b, "fills_joined", s->fills_joined);
    ju64(b, "evictions", s->evictions);
    ju64(b, "bytes_decrypted", s->bytes_decrypted);
    jnum(b, "decrypt_seconds", s->decrypt_seconds);
    jnum(b, "wait_seconds", s->wait_seconds);
    ju64(b, "predicted", s->predicted);
    ju64(b, "predicted_hits", s->predicted_hits);
    sb_putc(b, '}');
}

/* One run's figures: what print_run writes, as an object. compute_ms < 0:
 * decode time less waiting, as print_run has it. */
static void json_run(sbuf *b, const bench_opts *o, const run_result *r, double compute_ms) {
    const ds_cache_stats *s = &r->decode;
    double gbs = ratio((double)r->touched_bytes * decode_tps(r), 1e9);
    sb_printf(b, "{\"budget_pct\": %.9g", r->pct);
    ju64(b, "budget_bytes", r->budget_bytes);
    sb_printf(b, ", \"resident\": %s", r->budget_bytes ? "false" : "true");
    jstr(b, "prefetch", prefetch_name(r->prefetch));
    jstr(b, "evict", evict_name(o->evict));
    jstr(b, "device", r->device);
    sb_puts(b, ", \"adapters\": [");
    for (int i = 0; i < r->n_lora; i++) {
        sb_puts(b, i ? ", {\"path\": " : "{\"path\": ");
        sb_json_str(b, o->lora.path[i], strlen(o->lora.path[i]));
        sb_printf(b, ", \"scale\": %.9g, \"rank\": %d", (double)o->lora.scale[i], r->lora_rank[i]);
        jstr(b, "targets", r->lora_targets[i]);
        ju64(b, "params", r->lora_params[i]);
        sb_putc(b, '}');
    }
    sb_putc(b, ']');
    sb_printf(b, ", \"threads\": %d, \"prompt_tokens\": %d, \"gen_tokens\": %d", o->threads, r->n_prompt, r->n_gen);
    ju64(b, "expert_bytes", r->expert_bytes);
    ju64(b, "dense_bytes", r->dense_bytes);
    jnum(b, "open_seconds", r->open_s);
    jnum(b, "rss_after_open_mb", rss_mb(r->rss_open_kb));
    jnum(b, "prefill_seconds", r->prefill_s);
    jnum(b, "prefill_tok_s", prefill_tps(r));
    jnum(b, "decode_seconds", r->decode_s);
    jnum(b, "decode_tok_s", decode_tps(r));
    jnum(b, "decode_ms_per_token", per_tok_ms(r, r->decode_s));
    jnum(b, "peak_rss_mb", rss_mb(r->hwm_kb));
    ju64(b, "weight_bytes_per_token", r->touched_bytes);
    jnum(b, "effective_gbs", gbs);
    if (o->peak_gbs > 0) {
        jnum(b, "peak_gbs", o->peak_gbs);
        jnum(b, "share_of_bound", gbs / o->peak_gbs);
    }
    sb_printf(b, ", \"huge_pages\": {\"requested\": %s", r->huge.requested ? "true" : "false");
    ju64(b, "advised_bytes", r->huge.advised_bytes);
    ju64(b, "refused_bytes", r->huge.refused_bytes);
    if (r->huge.measured) ju64(b, "huge_bytes", r->huge.huge_bytes);
    else sb_puts(b, ", \"huge_bytes\": null");
    sb_putc(b, '}');
    jnum(b, "hit_rate", hit_rate(r));
    jnum(b, "prediction_accuracy", pred_acc(r));
    jnum(b, "decrypt_gbs", decrypt_gbs(r));
    jnum(b, "compute_ms_per_token", compute_ms >= 0 ? compute_ms : per_tok_ms(r, r->decode_s - s->wait_seconds));
    jnum(b, "decrypt_ms_per_token", per_tok_ms(r, s->decrypt_seconds));
    jnum(b, "wait_ms_per_token", per_tok_ms(r, s->wait_seconds));
    json_cache_stats(b, "prefill_pager", &r->prefill);
    json_cache_stats(b, "decode_pager", s);
    if (strncmp(r->device, "cuda", 4) == 0) json_cache_stats(b, "vram_cache", &r->gpu);
    sb_printf(b, ", \"tokens_hash\": \"%016llx\"}", (unsigned long long)r->token_hash);
}

/* Writes the buffer and a newline to stdout. Returns 0 or EXIT_FAILURE. */
static int json_emit(sbuf *b) {
    sb_putc(b, '\n');
    int bad = b->oom || fwrite(b->data, 1, b->len, stdout) != b->len || fflush(stdout) != 0;
    if (b->oom) fail("bench", "out of memory");
    else if (bad) fail("bench", "writing to stdout: %s", strerror(errno));
    sb_free(b);
    return bad ? EXIT_FAILURE : 0;
}

/* ==== Sweep =============================================================== */

/* Runs one setting in a fresh process: this program re-executed with the
 * hidden --x-* options, the result written to a pipe. If exec fails, the
 * forked child runs it itself after resetting its high-water mark. */
static int run_child(const bench_opts *o, double pct, uint64_t budget, int prefetch, run_result *r) {
    int fds[2];
    memset(r, 0, sizeof *r);
    if (pipe(fds) != 0) return fail("bench", "pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return fail("bench", "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        char fd_s[32], pct_s[64], bud_s[32], pf_s[16], p_s[32], g_s[32], t_s[32];
        snprintf(fd_s, sizeof fd_s, "%d", fds[1]);
        snprintf(pct_s, sizeof pct_s, "%.17g", pct);
        snprintf(bud_s, sizeof bud_s, "%llu", (unsigned long long)budget);
        snprintf(pf_s, sizeof pf_s, "%d", prefetch);
        snprintf(p_s, sizeof p_s, "%d", o->prompt_tokens);
        snprintf(g_s, sizeof g_s, "%d", o->gen_tokens);
        snprintf(t_s, sizeof t_s, "%d", o->threads);
        char *args[48 + 3 * DS_MAX_ADAPTERS + 2];
        int n = 0;
        args[n++] = (char *)"ds";
        args[n++] = (char *)"bench";
        args[n++] = (char *)"--x-child-fd";
        args[n++] = fd_s;
        args[n++] = (char *)"--x-pct";
        args[n++] = pct_s;
        args[n++] = (char *)"--x-budget";
        args[n++] = bud_s;
        args[n++] = (char *)"--x-prefetch";
        args[n++] = pf_s;
        args[n++] = (char *)"--prompt-tokens";
        args[n++] = p_s;
        args[n++] = (char *)"--gen-tokens";
        args[n++] = g_s;
        args[n++] = (char *)"--threads";
        args[n++] = t_s;
        args[n++] = (char *)"--evict";
        args[n++] = (char *)evict_name(o->evict);
        if (o->exact_act) args[n++] = (char *)"--exact-act";
        if (o->allow_plaintext) args[n++] = (char *)"--allow-plaintext";
        if (o->mlock) args[n++] = (char *)"--mlock";
        if (o->no_huge_pages) args[n++] = (char *)"--no-huge-pages";
        char pc_s[32];
        if (o->page_cache_bytes) {
            snprintf(pc_s, sizeof pc_s, "%llu", (unsigned long long)(o->page_cache_bytes >> 20));
            args[n++] = (char *)"--page-cache-mb";
            args[n++] = pc_s;
        }
        char gc_s[32], gi_s[16];
        if (o->device == DS_DEVICE_CUDA) {
            snprintf(gc_s, sizeof gc_s, "%llu", (unsigned long long)(o->gpu_cache_bytes >> 20));
            snprintf(gi_s, sizeof gi_s, "%d", o->gpu_index);
            args[n++] = (char *)"--device";
            args[n++] = (char *)"cuda";
            args[n++] = (char *)"--gpu-cache-mb";
            args[n++] = gc_s;
            args[n++] = (char *)"--gpu";
            args[n++] = gi_s;
        }
        if (o->key_file) {
            args[n++] = (char *)"--key-file";
            args[n++] = (char *)o->key_file;
        }
        if (o->pass_env) {
            args[n++] = (char *)"--passphrase-env";
            args[n++] = (char *)o->pass_env;
        }
        for (int i = 0; i < o->lora.n; i++) {
            args[n++] = (char *)(o->lora.scale_s[i] ? "--lora-scaled" : "--lora");
            args[n++] = (char *)o->lora.path[i];
            if (o->lora.scale_s[i]) args[n++] = (char *)o->lora.scale_s[i];
        }
        if (o->lora.key_file) {
            args[n++] = (char *)"--lora-key-file";
            args[n++] = (char *)o->lora.key_file;
        }
        args[n++] = (char *)"--";
        args[n++] = (char *)o->model;
        args[n] = NULL;
        execv("/proc/self/exe", args);
        /* no /proc/self/exe: measure here, from a reset high-water mark */
        int cr = open("/proc/self/clear_refs", O_WRONLY);
        if (cr >= 0) {
            ssize_t w = write(cr, "5", 1);
            (void)w;
            close(cr);
        }
        run_result rr;
        int rc = bench_once(o, budget, prefetch, pct, &rr);
        ssize_t w = write(fds[1], &rr, sizeof rr);
        (void)w;
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t k = read(fds[0], (char *)r + got, sizeof *r - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != sizeof *r || !r->ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        r->ok = 0;
        if (WIFSIGNALED(status)) return fail("bench", "the run at %g%% was killed by signal %d", pct, WTERMSIG(status));
        return fail("bench", "the run at %g%% (prefetch %s) failed", pct, prefetch_name(prefetch));
    }
    return 0;
}

/* The child side: run, write the result, exit status. */
static int child_main(const bench_opts *o) {
    run_result r;
    int rc = bench_once(o, o->cache_bytes, o->prefetch, o->child_pct, &r);
    size_t done = 0;
    while (done < sizeof r) {
        ssize_t k = write(o->child_fd, (const char *)&r + done, sizeof r - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return fail("bench", "writing the result: %s", strerror(errno));
        done += (size_t)k;
    }
    close(o->child_fd);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Index (among n) of the run with the median decode speed. */
static int median_run(const run_result *rs, int n) {
    double v[MAX_REPEAT];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (rs[i].ok) v[k++] = decode_tps(&rs[i]);
    if (!k) return -1;
    qsort(v, (size_t)k, sizeof v[0], cmp_double);
    double med = v[(k - 1) / 2];
    for (int i = 0; i < n; i++)
        if (rs[i].ok && decode_tps(&rs[i]) == med) return i;
    return -1;
}

static const char csv_header[] =
    "budget_pct,budget_mb,prefetch,decode_tok_s,prefill_tok_s,hit_rate,peak_rss_mb,decrypt_gbs,wait_s,"
    "prediction_accuracy,n_slots,slot_mb,evict,threads,prompt_tokens,gen_tokens,decode_ms_per_tok,"
    "compute_ms_per_tok,decrypt_ms_per_tok,wait_ms_per_tok,hits,misses,prefetch_hits,prefetch_issued,"
    "prefetch_wasted,prefetch_dropped,evictions,bytes_decrypted,decrypt_s,predicted,predicted_hits,"
    "prefill_bytes_decrypted,prefill_decrypt_s,open_s,rss_after_open_mb,tokens_hash,repeat,prefetch_skipped,"
    "prefetch_in_memory,fills_joined\n";

static void csv_row(FILE *f, const bench_opts *o, const run_result *r, double compute_ms, int repeat) {
    const ds_cache_stats *s = &r->decode;
    fprintf(f, "%g,%.3f,%d,%.4f,%.4f,%.6f,%.3f,%.4f,%.6f,%.6f,%d,%.4f,%s,%d,%d,%d,%.4f,%.4f,%.4f,%.4f,", r->pct,
            (double)r->budget_bytes / 1e6, r->prefetch, decode_tps(r), prefill_tps(r), hit_rate(r),
            rss_mb(r->hwm_kb), decrypt_gbs(r), s->wait_seconds, pred_acc(r), s->n_slots, (double)s->slot_bytes / 1e6,
            evict_name(o->evict), o->threads, r->n_prompt, r->n_gen,
            per_tok_ms(r, r->decode_s), compute_ms, per_tok_ms(r, s->decrypt_seconds),
            per_tok_ms(r, s->wait_seconds));
    fprintf(f, "%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%.6f,%llu,%llu,%llu,%.6f,%.4f,%.3f,%016llx,%d,%llu,%llu,%llu\n",
            (unsigned long long)s->hits, (unsigned long long)s->misses, (unsigned long long)s->prefetch_hits,
            (unsigned long long)s->prefetch_issued, (unsigned long long)s->prefetch_wasted,
            (unsigned long long)s->prefetch_dropped, (unsigned long long)s->evictions,
            (unsigned long long)s->bytes_decrypted, s->decrypt_seconds, (unsigned long long)s->predicted,
            (unsigned long long)s->predicted_hits, (unsigned long long)r->prefill.bytes_decrypted,
            r->prefill.decrypt_seconds, r->open_s, rss_mb(r->rss_open_kb), (unsigned long long)r->token_hash,
            repeat, (unsigned long long)s->prefetch_skipped, (unsigned long long)s->prefetch_in_memory,
            (unsigned long long)s->fills_joined);
}

static FILE *open_out(const char *dir, const char *name, char *path, size_t len) {
    snprintf(path, len, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) fail("bench", "cannot write %s: %s", path, strerror(errno));
    return f;
}

static int close_out(FILE *f, const char *path) {
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return fail("bench", "writing %s failed", path);
    return 0;
}

/* A gnuplot single-quoted string ('' stands for one quote). */
static void gp_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s == '\n' || *s == '\r') continue;
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* The plot: decode tok/s and hit rate against the budget, prefetch on/off.
 * Returns 0 when drawn, 1 when gnuplot is missing or failed (said why). */
static int plot(const bench_opts *o, const run_result *rows, const int *have, int n_rows) {
    FILE *txt = o->json ? stderr : stdout;   /* --json: stdout holds only the object */
    char gp[4200], png[4200];
    FILE *f = open_out(o->out_dir, "sweep.gp", gp, sizeof gp);
    if (!f) return 1;
    snprintf(png, sizeof png, "%s/sweep.png", o->out_dir);
    const char *base = strrchr(o->model, '/');
    base = base ? base + 1 : o->model;
    fprintf(f, "# generated by ds bench --sweep: gnuplot %s\n", gp);
    int count[3] = {0, 0, 0};
    for (int pf = DS_PREFETCH_ALWAYS; pf >= 0; pf--) {
        fprintf(f, "$pf%d << EOD\n", pf);
        for (int i = 0; i < n_rows; i++)
            if (have[i] && rows[i].prefetch == pf) {
                fprintf(f, "%g %.4f %.4f\n", rows[i].pct, decode_tps(&rows[i]), 100.0 * hit_rate(&rows[i]));
                count[pf]++;
            }
        fprintf(f, "EOD\n");
    }
    fprintf(f, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1200,480 font ',10' } "
               "else { set terminal png size 1200,480 }\nset output ");
    gp_quote(f, png);
    char title[512];
    snprintf(title, sizeof title, "ds bench: %s (%d prompt + %d decode tokens, %d threads, evict %s)", base,
             o->prompt_tokens, o->gen_tokens, o->threads, evict_name(o->evict));
    fprintf(f, "\nset multiplot layout 1,2 title ");
    gp_quote(f, title);
    fprintf(f, "\nset logscale x 2\nset xrange [*:*] reverse\nset grid\nset key bottom left\n"
               "set xlabel 'expert cache budget (%% of routed-expert bytes)'\n"
               "set xtics (100, 50, 25, 12.5, 6.25, 3.125)\n");
    static const char *ylabel[2] = {"decode tokens/s", "expert cache hit rate (%)"};
    for (int panel = 0; panel < 2; panel++) {
        fprintf(f, "set ylabel '%s'\nset yrange [0:%s]\nplot", ylabel[panel], panel ? "105" : "*");
        const char *sep = " ";
        for (int pf = DS_PREFETCH_ALWAYS; pf >= 0; pf--) {
            if (!count[pf]) continue;
            fprintf(f, "%s$pf%d using 1:%d with linespoints lw 2 pt %d title 'prefetch %s'", sep, pf, panel + 2,
                    pf ? 5 + 2 * pf : 5, prefetch_name(pf));
            sep = ", ";
        }
        fprintf(f, "\n");
    }
    fprintf(f, "unset multiplot\n");
    if (close_out(f, gp)) return 1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return fail("bench", "fork: %s", strerror(errno));
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", gp, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
        fprintf(txt, "gnuplot is not installed (Debian: apt-get install gnuplot-nox): no plot; the script is %s\n", gp);
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(txt, "gnuplot failed on %s: no plot\n", gp);
        return 1;
    }
    fprintf(txt, "plot           %s\n", png);
    return 0;
}

static int sweep_main(const bench_opts *o) {
    FILE *txt = o->json ? stderr : stdout;   /* --json: stdout holds only the object */
    /* the routed experts' plaintext bytes, from the segment table */
    ds_model *m = bench_open(o, 0, 0, 0, NULL);
    if (!m) return EXIT_FAILURE;
    uint64_t experts = 0, dense = 0;
    size_t nseg = ds_model_segment_count(m);
    for (size_t i = 0; i < nseg; i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) != DS_OK) continue;
        if (si.kind == DS_SEGMENT_EXPERT) experts += si.plain_bytes;
        else dense += si.plain_bytes;
    }
    ds_model_close(m);
    if (!experts) return fail("bench", "%s has no routed experts: nothing to sweep", o->model);
    if (make_dirs(o->out_dir) != 0) return fail("bench", "cannot create %s: %s", o->out_dir, strerror(errno));
    fprintf(txt, "model %s: routed experts %.1f MB, dense %.1f MB; %d prompt + %d decode tokens, %d threads, evict %s, "
           "%d run(s) per setting\n",
           o->model, (double)experts / 1e6, (double)dense / 1e6, o->prompt_tokens, o->gen_tokens, o->threads,
           evict_name(o->evict), o->repeat);
    for (int i = 0; i < o->lora.n; i++)
        fprintf(txt, "adapter %s: scale %g (in every run)\n", o->lora.path[i], (double)o->lora.scale[i]);

    int n_set = 0;
    run_result rows[2 * MAX_SWEEP];
    int have[2 * MAX_SWEEP];
    static run_result runs[2 * MAX_SWEEP][MAX_REPEAT];
    int failures = 0;
    for (int i = 0; i < o->n_sweep; i++) {
        double pct = o->sweep[i];
        uint64_t budget = pct >= 100 ? 0 : (uint64_t)((double)experts * pct / 100.0);
        for (int pf = o->prefetch; pf >= 0; pf = pf ? 0 : -1) {   /* the mode asked for, then off */
            int k = n_set++;
            for (int rep = 0; rep < o->repeat; rep++) {
                run_result *r = &runs[k][rep];
                if (run_child(o, pct, budget, pf, r) != 0) {
                    failures++;
                    continue;
                }
                fprintf(txt, "  %6g%%  prefetch %-3s  run %d: prefill %8.2f tok/s, decode %8.3f tok/s, hit rate %5.1f%%, "
                       "peak RSS %8.1f MB\n",
                       pct, prefetch_name(pf), rep + 1, prefill_tps(r), decode_tps(r), 100.0 * hit_rate(r),
                       rss_mb(r->hwm_kb));
                fflush(stdout);
            }
            int med = median_run(runs[k], o->repeat);
            have[k] = med >= 0;
            if (med >= 0) rows[k] = runs[k][med];
            else memset(&rows[k], 0, sizeof rows[k]);
            rows[k].pct = pct;
            rows[k].prefetch = pf;
        }
    }

    /* compute per token: the fully resident run's decode time */
    double resident_ms = -1;
    for (int k = 0; k < n_set; k++)
        if (have[k] && !rows[k].budget_bytes) {
            resident_ms = per_tok_ms(&rows[k], rows[k].decode_s);
            break;
        }
    uint64_t ref_hash = 0;
    int hash_differs = 0;
    for (int k = 0; k < n_set; k++)
        if (have[k]) {
            if (!ref_hash) ref_hash = rows[k].token_hash;
            else if (rows[k].token_hash != ref_hash) hash_differs = 1;
        }

    fprintf(txt, "\n%8s %9s %6s %6s %10s %10s %9s %7s %7s %7s %7s %7s %8s %8s %7s %9s\n", "budget%", "budget MB",
           "slots", "pf", "prefill/s", "decode/s", "ms/tok", "hit%", "misses", "pfhits", "wasted", "dropped",
           "dec GB/s", "wait s", "pred%", "peak MB");
    for (int k = 0; k < n_set; k++) {
        const run_result *r = &rows[k];
        if (!have[k]) {
            fprintf(txt, "%8g %9s  failed\n", r->pct, "");
            continue;
        }
        const ds_cache_stats *s = &r->decode;
        if (!r->budget_bytes) {
            fprintf(txt, "%8g %9s %6s %6s %10.2f %10.3f %9.2f %7s %7s %7s %7s %7s %8s %8s %7s %9.1f\n", r->pct,
                   "resident", "-", prefetch_name(r->prefetch), prefill_tps(r), decode_tps(r),
                   per_tok_ms(r, r->decode_s), "100.0", "-", "-", "-", "-", "-", "-", "-", rss_mb(r->hwm_kb));
            continue;
        }
        fprintf(txt, "%8g %9.1f %6d %6s %10.2f %10.3f %9.2f %7.1f %7llu %7llu %7llu %7llu %8.2f %8.3f %7.1f %9.1f\n",
               r->pct, (double)r->budget_bytes / 1e6, s->n_slots, prefetch_name(r->prefetch), prefill_tps(r),
               decode_tps(r), per_tok_ms(r, r->decode_s), 100.0 * hit_rate(r), (unsigned long long)s->misses,
               (unsigned long long)s->prefetch_hits, (unsigned long long)s->prefetch_wasted,
               (unsigned long long)s->prefetch_dropped, decrypt_gbs(r), s->wait_seconds, 100.0 * pred_acc(r),
               rss_mb(r->hwm_kb));
    }
    fprintf(txt, "\nper decode token (ms): compute = %s\n%8s %6s %9s %9s %9s %9s %14s %14s\n",
           resident_ms >= 0 ? "the resident run's decode time" : "decode time - wait time (no 100% run)",
           "budget%", "pf", "decode", "compute", "decrypt", "wait", "max(cmp,dec)", "cmp+dec");
    for (int k = 0; k < n_set; k++) {
        const run_result *r = &rows[k];
        if (!have[k]) continue;
        double comp = resident_ms >= 0 ? resident_ms : per_tok_ms(r, r->decode_s - r->decode.wait_seconds);
        double dec = per_tok_ms(r, r->decode.decrypt_seconds);
        fprintf(txt, "%8g %6s %9.2f %9.2f %9.2f %9.2f %14.2f %14.2f\n", r->pct, prefetch_name(r->prefetch),
               per_tok_ms(r, r->decode_s), comp, dec, per_tok_ms(r, r->decode.wait_seconds), comp > dec ? comp : dec,
               comp + dec);
    }
    if (hash_differs) fprintf(txt, "\nWARNING: the generated tokens differ between runs (tokens_hash in the CSV)\n");
    else fprintf(txt, "\ngenerated tokens identical in every run (hash %016llx)\n", (unsigned long long)ref_hash);

    /* CSV files */
    char path[4200], path2[4200];
    FILE *f = open_out(o->out_dir, "sweep.csv", path, sizeof path);
    if (!f) return EXIT_FAILURE;
    fputs(csv_header, f);
    for (int k = 0; k < n_set; k++) {
        if (!have[k]) continue;
        double comp = resident_ms >= 0 ? resident_ms
                                       : per_tok_ms(&rows[k], rows[k].decode_s - rows[k].decode.wait_seconds);
        csv_row(f, o, &rows[k], comp, 0);
    }
    if (close_out(f, path)) return EXIT_FAILURE;
    f = open_out(o->out_dir, "sweep_runs.csv", path2, sizeof path2);
    if (!f) return EXIT_FAILURE;
    fputs(csv_header, f);
    for (int k = 0; k < n_set; k++)
        for (int rep = 0; rep < o->repeat; rep++) {
            const run_result *r = &runs[k][rep];
            if (!r->ok) continue;
            double comp = resident_ms >= 0 ? resident_ms : per_tok_ms(r, r->decode_s - r->decode.wait_seconds);
            csv_row(f, o, r, comp, rep + 1);
        }
    if (close_out(f, path2)) return EXIT_FAILURE;
    fprintf(txt, "csv            %s (%s: every run)\n", path, path2);
    (void)plot(o, rows, have, n_set);
    if (o->json) {
        sbuf b = {0};
        sb_puts(&b, "{\"model\": ");
        sb_json_str(&b, o->model, strlen(o->model));
        ju64(&b, "expert_bytes", experts);
        ju64(&b, "dense_bytes", dense);
        sb_printf(&b, ", \"repeat\": %d, \"tokens_identical\": %s", o->repeat, hash_differs ? "false" : "true");
        jstr(&b, "csv", path);
        jstr(&b, "csv_runs", path2);
        sb_puts(&b, ", \"runs\": [");
        int first = 1;
        for (int k = 0; k < n_set; k++) {
            if (!have[k]) continue;
            sb_puts(&b, first ? "\n  " : ",\n  ");
            first = 0;
            json_run(&b, o, &rows[k],
                     resident_ms >= 0 ? resident_ms : per_tok_ms(&rows[k], rows[k].decode_s - rows[k].decode.wait_seconds));
        }
        sb_puts(&b, "]}");
        if (json_emit(&b)) return EXIT_FAILURE;
    }
    return failures ? EXIT_FAILURE : 0;
}

/* ==== Entry =============================================================== */

int ds_cmd_bench(int argc, char **argv) {
    bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc < 0) {
        fputs(ds_bench_help, stdout);
        return 0;
    }
    if (rc) return rc;
    if (o.child_fd >= 0) return child_main(&o);
    if (o.n_sweep) return sweep_main(&o);
    int best = -1;
    run_result rs[MAX_REPEAT];
    FILE *txt = o.json ? stderr : stdout;   /* --json: stdout holds only the object */
    for (int rep = 0; rep < o.repeat; rep++) {
        if (bench_once(&o, o.cache_bytes, o.prefetch, 0, &rs[rep]) != 0) return EXIT_FAILURE;
        if (o.repeat > 1)
            fprintf(txt, "run %d: prefill %.2f tok/s, decode %.3f tok/s\n", rep + 1, prefill_tps(&rs[rep]),
                    decode_tps(&rs[rep]));
    }
    best = median_run(rs, o.repeat);
    if (best < 0) return EXIT_FAILURE;
    if (o.json) {
        sbuf b = {0};
        sb_puts(&b, "{\"model\": ");
        sb_json_str(&b, o.model, strlen(o.model));
        sb_printf(&b, ", \"repeat\": %d, \"run\": ", o.repeat);
        json_run(&b, &o, &rs[best], -1);
        if (o.repeat > 1) {
            sb_puts(&b, ", \"decode_tok_s_all\": [");
            for (int rep = 0; rep < o.repeat; rep++) sb_printf(&b, "%s%.9g", rep ? ", " : "", decode_tps(&rs[rep]));
            sb_putc(&b, ']');
        }
        sb_putc(&b, '}');
        return json_emit(&b);
    }
    if (o.repeat > 1) printf("(the run with the median decode speed)\n");
    print_run(&o, &rs[best], -1);
    return 0;
}
