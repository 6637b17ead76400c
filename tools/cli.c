/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * cli.c — the command-line plumbing shared by ds (tools/ds.c,
 * tools/ds_bench.c) and ds-server (tools/server/server.c); see cli.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "tools/cli.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ==== Messages and values =============================================== */

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *errmsg(ds_status s) {
    const char *m = ds_last_error();
    return (m && m[0]) ? m : ds_status_string(s);
}

/* "<prog> <cmd>: " or "<prog>: ". */
static void who(const char *cmd) {
    if (cmd) fprintf(stderr, "%s %s: ", cli_prog, cmd);
    else fprintf(stderr, "%s: ", cli_prog);
}

int fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    who(cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_FAILURE;
}

int usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    who(cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd) fprintf(stderr, "\nTry '%s %s --help'.\n", cli_prog, cmd);
    else fprintf(stderr, "\nTry '%s --help'.\n", cli_prog);
    return EXIT_USAGE;
}

/* Strict unsigned parse: only decimal digits, no sign, no spaces, no
 * suffix, no overflow, value <= max. Returns 1 on success. */
int parse_u64(const char *s, uint64_t max, uint64_t *out) {
    uint64_t v = 0;
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (v > max) return 0;
    *out = v;
    return 1;
}

int parse_size(const char *s, uint64_t *out) {
    uint64_t whole = 0, frac = 0, scale = 1, mult = 1;
    const char *p = s;
    if (!s || *p < '0' || *p > '9') return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10) return 0;
        whole = whole * 10 + d;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale >= 1000000000u) continue;   /* beyond a billionth: ignored */
            frac = frac * 10 + (unsigned)(*p - '0');
            scale *= 10;
        }
    }
    if (*p) {
        static const char units[] = "kmgtp";
        const char *u = strchr(units, *p | 0x20);
        if (!u || !*u) return 0;
        int n = (int)(u - units) + 1;
        p++;
        uint64_t base = 1024;
        if (*p == 'i' && (p[1] == 'B' || p[1] == 'b') && !p[2]) p += 2;   /* KiB: binary */
        else if ((*p == 'B' || *p == 'b') && !p[1]) p++, base = 1000;     /* KB: decimal, as dd */
        if (*p) return 0;
        for (int i = 0; i < n; i++) mult *= base;
    } else if (scale > 1) {
        return 0;   /* a fraction of a byte */
    }
    if (whole > UINT64_MAX / mult) return 0;
    uint64_t v = whole * mult, f = 0;
    /* frac / scale of mult, without overflow: mult <= 2^50, frac < 1e9 */
    if (frac) f = (uint64_t)((long double)frac * (long double)mult / (long double)scale);
    if (v > UINT64_MAX - f) return 0;
    *out = v + f;
    return 1;
}

int parse_evict(const char *s, ds_evict_policy *out) {
    if (!strcmp(s, "lru")) *out = DS_EVICT_LRU;
    else if (!strcmp(s, "lfu")) *out = DS_EVICT_LFU_DECAY;
    else return 0;
    return 1;
}

const char *evict_name(ds_evict_policy p) { return p == DS_EVICT_LRU ? "lru" : "lfu"; }

int parse_prefetch(const char *s) {
    static const char *const names[] = {"off", "auto", "always"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

const char *prefetch_name(int mode) {
    return mode == DS_PREFETCH_OFF ? "off" : mode == DS_PREFETCH_AUTO ? "auto" : "always";
}

/* ==== Command-line scanning =============================================== */

/* Is the current argument the flag `name` (no value)? */
int is_flag(argscan *a, const char *name) {
    return !a->only_pos && strcmp(a->argv[a->i], name) == 0;
}

/* Is the current argument the option `name` taking a value? On a match
 * stores the value (consuming the next argument when not "--name=value") and
 * returns 1; reports a usage error and sets a->bad when the value is absent. */
int is_opt(argscan *a, const char *name, const char **val) {
    const char *arg = a->argv[a->i];
    size_t n = strlen(name);
    if (a->only_pos || strncmp(arg, name, n) != 0) return 0;
    if (arg[n] == '=') {
        *val = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') return 0;
    if (a->i + 1 >= a->argc) {
        usage_error(a->cmd, "option %s needs a value", name);
        a->bad = 1;
        *val = NULL;
        return 1;
    }
    *val = a->argv[++a->i];
    return 1;
}

/* Option that must not be repeated (a second --quant is probably a typo). */
int set_once(argscan *a, const char **slot, const char *val, const char *name) {
    if (a->bad) return 0;
    if (*slot) {
        usage_error(a->cmd, "option %s given twice", name);
        a->bad = 1;
        return 0;
    }
    *slot = val;
    return 1;
}

/* Is the current argument a positional one? (A lone "-" counts as one.) */
int is_positional(argscan *a) {
    const char *arg = a->argv[a->i];
    if (a->only_pos) return 1;
    if (strcmp(arg, "--") == 0) {
        a->only_pos = 1;
        return -1; /* consumed; not itself a positional */
    }
    return arg[0] != '-' || arg[1] == '\0';
}

int unknown_option(argscan *a) {
    a->bad = 1;
    return usage_error(a->cmd, "unknown option '%s'", a->argv[a->i]);
}

/* ==== Keys and passphrases ================================================ */

void secret_wipe(secret *s) {
    ds_memzero(s->key, sizeof s->key);
    if (s->pass) {
        ds_memzero(s->pass, s->pass_len);
        free(s->pass);
    }
    s->pass = NULL;
    s->pass_len = 0;
    s->have_key = 0;
}

/* Recognises --key-file / --passphrase-env (and --no-encrypt when allowed).
 * Returns 1 when the current argument was one of them. */
int key_option(argscan *a, key_opts *k, int allow_no_encrypt) {
    const char *v;
    if (is_opt(a, "--key-file", &v)) {
        set_once(a, &k->key_file, v, "--key-file");
        return 1;
    }
    if (is_opt(a, "--passphrase-env", &v)) {
        set_once(a, &k->pass_env, v, "--passphrase-env");
        return 1;
    }
    if (allow_no_encrypt && is_flag(a, "--no-encrypt")) {
        k->no_encrypt = 1;
        return 1;
    }
    /* "--encrypt" (as in DESIGN.md's example) only insists on a key */
    if (allow_no_encrypt && is_flag(a, "--encrypt")) {
        k->encrypt = 1;
        return 1;
    }
    if (!allow_no_encrypt && is_flag(a, "--allow-plaintext")) {
        k->allow_plaintext = 1;
        return 1;
    }
    return 0;
}

/* Checks the key options are not contradictory. Returns 0 or EXIT_USAGE. */
int key_opts_check(const char *cmd, const key_opts *k) {
    int n = (k->key_file != NULL) + (k->pass_env != NULL) + (k->no_encrypt != 0);
    /* --no-encrypt is named only where it was given (convert) */
    if (n > 1 && !k->no_encrypt) return usage_error(cmd, "--key-file and --passphrase-env exclude each other");
    if (n > 1)
        return usage_error(cmd, "--key-file, --passphrase-env and --no-encrypt exclude each other");
    if (k->encrypt && k->no_encrypt) return usage_error(cmd, "--encrypt and --no-encrypt exclude each other");
    if (k->pass_env && !k->pass_env[0]) return usage_error(cmd, "--passphrase-env needs a variable name");
    if (k->key_file && !k->key_file[0]) return usage_error(cmd, "--key-file needs a file name");
    return 0;
}

extern char **environ;

/* Overwrites the value of every `name=` entry of the environment with zeros
 * in place, then removes the variable. The strings of the initial
 * environment lie in the block that /proc/PID/environ shows (unsetenv alone
 * only drops the pointer to them). */
static void env_wipe(const char *name) {
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=') ds_memzero(*e + n + 1, strlen(*e + n + 1));
    unsetenv(name);
}

/* Loads the key file or copies the passphrase out of the environment (and
 * clears it there). Returns 0 or EXIT_FAILURE (message printed). */
int secret_load(const char *cmd, const key_opts *k, secret *s) {
    memset(s, 0, sizeof *s);
    if (k->key_file) {
        ds_status st = ds_key_file_read(k->key_file, s->key);
        if (st != DS_OK) return fail(cmd, "%s", errmsg(st));
        s->have_key = 1;
    } else if (k->pass_env) {
        const char *p = getenv(k->pass_env);
        if (!p) return fail(cmd, "environment variable %s (the passphrase) is not set", k->pass_env);
        if (!p[0]) return fail(cmd, "environment variable %s (the passphrase) is empty", k->pass_env);
        s->pass_len = strlen(p);
        s->pass = malloc(s->pass_len + 1);
        if (!s->pass) return fail(cmd, "out of memory");
        memcpy(s->pass, p, s->pass_len + 1);
        if (!k->keep_env) env_wipe(k->pass_env);
    }
    return 0;
}

void secret_params(const secret *s, ds_model_params *mp) {
    if (s->have_key) {
        mp->key = s->key;
        mp->key_len = sizeof s->key;
    } else if (s->pass) {
        mp->passphrase = s->pass;
        mp->passphrase_len = s->pass_len;
    }
}

/* ==== Model options ===================================================== */

/* Recognises the model options (those allowed by the flags). Returns 1 when
 * the current argument was one of them. */
int model_option(argscan *a, model_opts *o, int which) {
    const char *v;
    if (key_option(a, &o->ko, 0)) return 1;
    /* -t, -c and --ctx-size: llama.cpp's spellings */
    if ((which & MO_THREADS) && (is_opt(a, "--threads", &v) || is_opt(a, "-t", &v)))
        return set_once(a, &o->threads_s, v, "--threads"), 1;
    if ((which & MO_CTX) && (is_opt(a, "--ctx", &v) || is_opt(a, "--ctx-size", &v) || is_opt(a, "-c", &v)))
        return set_once(a, &o->ctx_s, v, "--ctx"), 1;
    if ((which & MO_CACHE) && is_opt(a, "--cache-mb", &v)) return set_once(a, &o->cache_s, v, "--cache-mb"), 1;
    if ((which & MO_CACHE) && is_opt(a, "--evict", &v)) return set_once(a, &o->evict_s, v, "--evict"), 1;
    if ((which & MO_CACHE) && is_opt(a, "--prefetch", &v)) return set_once(a, &o->prefetch_s, v, "--prefetch"), 1;
    if ((which & MO_CACHE) && is_opt(a, "--device", &v)) return set_once(a, &o->device_s, v, "--device"), 1;
    if ((which & MO_CACHE) && is_opt(a, "--gpu-cache-mb", &v))
        return set_once(a, &o->gpu_cache_s, v, "--gpu-cache-mb"), 1;
    if ((which & MO_CACHE) && is_opt(a, "--gpu", &v)) return set_once(a, &o->gpu_s, v, "--gpu"), 1;
    if (is_flag(a, "--exact-activations")) {
        o->exact = 1;
        return 1;
    }
    if ((which & MO_CACHE) && is_flag(a, "--mlock")) {
        o->mlock = 1;
        return 1;
    }
    if ((which & MO_CACHE) && is_flag(a, "--no-huge-pages")) {
        o->no_huge_pages = 1;
        return 1;
    }
    if (is_flag(a, "--verbose") || is_flag(a, "-v")) {
        o->verbose = 1;
        return 1;
    }
    return 0;
}

/* Parses the numbers. Returns 0 or EXIT_USAGE. */
int model_opts_check(const char *cmd, model_opts *o) {
    int rc = key_opts_check(cmd, &o->ko);
    if (rc) return rc;
    uint64_t v;
    if (o->threads_s) {
        if (!parse_u64(o->threads_s, 4096, &v))
            return usage_error(cmd, "--threads needs a whole number from 0 to 4096, not '%s'", o->threads_s);
        o->threads = (int)v;
    }
    if (o->ctx_s) {
        if (!parse_u64(o->ctx_s, 1u << 22, &v) || v == 0)
            return usage_error(cmd, "--ctx needs a whole number of tokens from 1 to 4194304, not '%s'", o->ctx_s);
        o->n_ctx = (int)v;
    }
    if (o->cache_s) {
        if (!parse_u64(o->cache_s, UINT64_MAX >> 20, &v))
            return usage_error(cmd, "--cache-mb needs a whole number of MiB (0 = all experts resident), not '%s'",
                               o->cache_s);
        o->cache_bytes = v << 20;
    }
    o->evict = ds_model_default_params().evict_policy;
    if (o->evict_s && !parse_evict(o->evict_s, &o->evict))
        return usage_error(cmd, "--evict is lru or lfu, not '%s'", o->evict_s);
    o->prefetch = ds_model_default_params().prefetch;
    if (o->prefetch_s && (o->prefetch = parse_prefetch(o->prefetch_s)) < 0)
        return usage_error(cmd, "--prefetch is auto, always or off, not '%s'", o->prefetch_s);
    if (o->device_s) {
        if (!strcmp(o->device_s, "cpu")) o->device = DS_DEVICE_CPU;
        else if (!strcmp(o->device_s, "cuda")) o->device = DS_DEVICE_CUDA;
        else return usage_error(cmd, "--device is cpu or cuda, not '%s'", o->device_s);
    }
    if (o->gpu_cache_s) {
        if (!parse_u64(o->gpu_cache_s, UINT64_MAX >> 20, &v))
            return usage_error(cmd, "--gpu-cache-mb needs a whole number of MiB (0 = all experts on the device), not '%s'",
                               o->gpu_cache_s);
        o->gpu_cache_bytes = v << 20;
    }
    if (o->gpu_s) {
        if (!parse_u64(o->gpu_s, 1024, &v))
            return usage_error(cmd, "--gpu needs a CUDA device number from 0 to 1024, not '%s'", o->gpu_s);
        o->gpu_index = (int)v;
    }
    if ((o->gpu_cache_s || o->gpu_s) && o->device != DS_DEVICE_CUDA)
        return usage_error(cmd, "--gpu-cache-mb and --gpu need --device cuda");
    return 0;
}

void model_opts_params(const model_opts *o, ds_model_params *mp) {
    mp->n_threads = o->threads;
    mp->expert_cache_bytes = o->cache_bytes;
    mp->evict_policy = o->evict;
    mp->prefetch = (ds_prefetch_mode)o->prefetch;   /* parse_prefetch checked it */
    mp->device = o->device;
    mp->gpu_index = o->gpu_index;
    mp->gpu_cache_bytes = o->gpu_cache_bytes;
    mp->allow_plaintext = o->ko.allow_plaintext;
    mp->mlock = o->mlock;
    mp->exact_activations = o->exact;
    mp->huge_pages = !o->no_huge_pages;
}

/* ==== LoRA adapters ===================================================== */

int parse_lora_scale(const char *s, float *out) {
    char *end = NULL;
    if (!s || !*s || isspace((unsigned char)*s)) return 0;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v) || fabs(v) > 1e6) return 0;
    *out = (float)v;
    return 1;
}

int lora_option(argscan *a, lora_opts *o) {
    const char *v;
    int scaled = 0;
    if (is_opt(a, "--lora-key-file", &v)) {
        set_once(a, &o->key_file, v, "--lora-key-file");
        return 1;
    }
    if (!is_opt(a, "--lora", &v) && !(scaled = is_opt(a, "--lora-scaled", &v))) return 0;
    if (a->bad) return 1;
    const char *s = NULL;
    if (scaled) {
        /* llama.cpp's form: two values, the file then the scale */
        if (a->i + 1 >= a->argc) {
            usage_error(a->cmd, "option --lora-scaled needs a file and a scale: --lora-scaled FILE S");
            a->bad = 1;
            return 1;
        }
        s = a->argv[++a->i];
    }
    if (!v[0]) {
        usage_error(a->cmd, "%s needs an adapter file", scaled ? "--lora-scaled" : "--lora");
        a->bad = 1;
        return 1;
    }
    if (o->n >= DS_MAX_ADAPTERS) {
        usage_error(a->cmd, "at most %d adapters (--lora, --lora-scaled) at once (DS_MAX_ADAPTERS)", DS_MAX_ADAPTERS);
        a->bad = 1;
        return 1;
    }
    o->path[o->n] = v;
    o->scale_s[o->n] = s;
    o->n++;
    return 1;
}

int lora_opts_check(const char *cmd, lora_opts *o) {
    for (int i = 0; i < o->n; i++) {
        o->scale[i] = 1.0f;
        if (o->scale_s[i] && !parse_lora_scale(o->scale_s[i], &o->scale[i]))
            return usage_error(cmd, "--lora-scaled %s: the scale must be a number (e.g. 0.5; 0 = off), not '%s'",
                               o->path[i], o->scale_s[i]);
    }
    if (o->key_file && !o->key_file[0]) return usage_error(cmd, "--lora-key-file needs a file name");
    if (o->key_file && !o->n) return usage_error(cmd, "--lora-key-file without --lora or --lora-scaled");
    return 0;
}

int lora_params(const char *cmd, const char *key_file, const secret *model_secret, int allow_plaintext,
                secret *own, ds_adapter_params *ap) {
    *ap = ds_adapter_default_params();
    memset(own, 0, sizeof *own);
    ap->allow_plaintext = allow_plaintext;
    if (key_file) {
        ds_status st = ds_key_file_read(key_file, own->key);
        if (st != DS_OK) return fail(cmd, "--lora-key-file: %s", errmsg(st));
        own->have_key = 1;
        model_secret = own;
    }
    if (model_secret && model_secret->have_key) {
        ap->key = model_secret->key;
        ap->key_len = sizeof model_secret->key;
    } else if (model_secret && model_secret->pass) {
        ap->passphrase = model_secret->pass;
        ap->passphrase_len = model_secret->pass_len;
    }
    return 0;
}

int lora_open(const char *cmd, const lora_opts *o, ds_model *m, const secret *model_secret, int allow_plaintext,
              lora_set *ls) {
    memset(ls, 0, sizeof *ls);
    if (!o || !o->n) return 0;
    secret own;
    ds_adapter_params ap;
    int rc = lora_params(cmd, o->key_file, model_secret, allow_plaintext, &own, &ap);
    for (int i = 0; !rc && i < o->n; i++) {
        ds_status st = ds_adapter_open(&ls->a[i], m, o->path[i], &ap);
        if (st != DS_OK) {
            /* the library's message names the file ("adapter PATH: ..."); a
             * failure before it opened it may not */
            const char *msg = errmsg(st);
            const char *hint = (st == DS_ERR_WRONG_KEY || st == DS_ERR_NEED_KEY) && !o->key_file
                                   ? " (adapters are opened with the model's key: one sealed with another key needs "
                                     "--lora-key-file F)"
                                   : "";
            rc = strstr(msg, o->path[i]) ? fail(cmd, "%s%s", msg, hint)
                                         : fail(cmd, "adapter %s: %s%s", o->path[i], msg, hint);
            break;
        }
        ls->scale[i] = o->scale[i];
        ls->path[i] = o->path[i];
        ls->n = (size_t)i + 1;
    }
    secret_wipe(&own);
    if (rc) lora_close(ls);
    return rc;
}

int lora_apply(const char *cmd, const lora_set *ls, ds_context *c) {
    if (!ls || !ls->n) return 0;
    int n = ds_context_n_seq(c);
    for (int i = 0; i < n; i++) {
        ds_status st = ds_context_set_adapters(ds_context_seq(c, i), ls->a, ls->scale, ls->n);
        if (st != DS_OK) return fail(cmd, "applying the adapters: %s", errmsg(st));
    }
    return 0;
}

void lora_close(lora_set *ls) {
    if (!ls) return;
    for (size_t i = 0; i < ls->n; i++) (void)ds_adapter_close(ls->a[i]);
    memset(ls, 0, sizeof *ls);
}

void lora_describe(FILE *f, const char *prefix, const lora_set *ls) {
    for (size_t i = 0; ls && i < ls->n; i++) {
        ds_adapter_info ai;
        if (ds_adapter_get_info(ls->a[i], &ai) != DS_OK) continue;
        fprintf(f, "%s%s: scale %g (rank %d, alpha %g%s, targets %s, %llu parameters, %s)\n", prefix, ls->path[i],
                (double)ls->scale[i], ai.rank, (double)ai.alpha, ai.rslora ? ", rsLoRA" : "", ai.targets,
                (unsigned long long)ai.n_params, ai.dtype == DS_DTYPE_F16 ? "F16" : "F32");
    }
}

/* ==== Model paths and the trained length ================================ */

/* Does the directory hold config.json and at least one *.safetensors? */
static int is_hf_dir(const char *path) {
    DIR *d = opendir(path);
    int config = 0, tensors = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (!strcmp(e->d_name, "config.json")) config = 1;
        else if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors")) tensors = 1;
    }
    closedir(d);
    return config && tensors;
}

const char *model_path_hint(const char *path, char *buf, size_t len) {
    struct stat sb;
    if (!path || !len || stat(path, &sb) != 0) return "";
    buf[0] = '\0';
    if (S_ISDIR(sb.st_mode) && is_hf_dir(path)) {
        snprintf(buf, len, " (this is a Hugging Face checkpoint: convert it first with `ds convert %s out.dsm`)", path);
    } else if (S_ISREG(sb.st_mode)) {
        /* a GGUF file begins with the bytes "GGUF" */
        char magic[4] = {0};
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t got = fread(magic, 1, sizeof magic, f);
            fclose(f);
            if (got == 4 && !memcmp(magic, "GGUF", 4))
                snprintf(buf, len, " (this is a GGUF file: convert it first with `ds convert %s out.dsm`)", path);
        }
    }
    return buf;
}

int ctx_beyond_trained(const ds_model *m, int n_ctx) {
    ds_model_config cfg;
    if (!m || ds_model_get_config(m, &cfg) != DS_OK) return 0;
    return cfg.max_position_embeddings > 0 && n_ctx > cfg.max_position_embeddings ? cfg.max_position_embeddings : 0;
}

/* ==== Stop signals ====================================================== */

static const int stop_signals[] = {SIGINT, SIGTERM};
#define N_STOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

volatile sig_atomic_t g_interrupted;

static void on_signal(int sig) {
    g_interrupted = sig;   /* which one: ds chat treats Ctrl-C at its prompt apart */
}

void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++) sigaction(stop_signals[i], &sa, NULL);
}

void block_stop_signals(sigset_t *set) {
    sigemptyset(set);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++) sigaddset(set, stop_signals[i]);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}
