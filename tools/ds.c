/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * ds.c — the deepseek.h command-line tool.
 *
 *     ds convert <hf_dir|model.gguf> <out.dsm> [--quant f32|f16|q8|q4] [--quant-experts T] [--quant-core T] [--quant-router T]
 *                [--key-file F | --passphrase-env VAR | --no-encrypt] [--chunk-kb N] [--force]
 *                [--drop-experts R --calib STATS.json]
 *     ds calibrate <model.dsm> [key] --file TEXT --out STATS.json [--ctx N] [--threads N] [--cache-mb M]
 *     ds keygen  <file>
 *     ds inspect <model.dsm> [--key-file F | --passphrase-env VAR] [--allow-plaintext] [--json]
 *                [--plan [--mem SIZE] [--ctx N] [--seqs N]]
 *     ds verify  <model.dsm> [--key-file F | --passphrase-env VAR] [--allow-plaintext] [--threads N]
 *     ds run     <model.dsm> [key] -p PROMPT | -f FILE [-n N] [--temp T] [--top-k K] [--top-p P]
 *                [--min-p P] [--repeat-penalty R] [--seed S] [--threads N] [--ctx N]
 *                [--cache-mb M] [--evict lru|lfu] [--prefetch auto|always|off]
 *                [--ignore-eos] [-r STR]... [--no-display-prompt] [--json]
 *     ds chat    <model.dsm> [key] [--system TEXT] [sampling and model options as run]
 *     (llama.cpp's spellings too: -m/--model FILE for the model, -t, -c/--ctx-size,
 *     -s, --n-predict, -n -1; man/ds.1 has them all)
 *     ds tokenize <model.dsm> [key] [--bos] TEXT
 *     ds logits  <model.dsm> [key] --tokens 1,2,3 --out FILE
 *     ds perplexity <model.dsm> [key] --file TEXT [--ctx N] [--chunks K] [--kl-divergence BASE.dsm]
 *                [--json] [--threads N] [--cache-mb M] [model options as run]
 *
 * A program, not the library: it prints, and it exits with
 *     0  success
 *     1  the operation failed ("ds <cmd>: <message>" on stderr)
 *     2  the command line was wrong (usage on stderr)
 *
 * It uses only the public API in deepseek.h. Secrets (key bytes, passphrase
 * copies) are wiped with ds_memzero before exit; a passphrase is only ever
 * read from an environment variable, never from argv (which other users can
 * see in ps).
 */
#define _POSIX_C_SOURCE 200809L

#include "deepseek.h"
#include "tools/chat_file.h"
#include "tools/cli.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char cli_prog[] = "ds";

/* ==== Small helpers ======================================================= */

/* Decimal megabytes (10^6), as in "MB/s"; GB likewise (10^9). */
static double mb(uint64_t bytes) { return (double)bytes / 1e6; }

/* ==== Terminal progress line ============================================== */
/*
 * One line on stderr, redrawn in place with '\r' at most ten times a second,
 * and only when stderr is a terminal (logs and pipes get no spam). The
 * library may report from worker threads, hence the mutex.
 */
typedef struct progress {
    pthread_mutex_t mu;
    int enabled;              /* stderr is a terminal */
    double t0, last_draw;
    int width;                /* characters of the line on screen (0 = none) */
    const char *what;         /* "tensors" or "segments" */
    const char *verb;         /* "written" or "checked" */
} progress;

static void progress_init(progress *p, const char *what, const char *verb) {
    pthread_mutex_init(&p->mu, NULL);
    p->enabled = isatty(STDERR_FILENO);
    p->t0 = now_s();
    p->last_draw = 0;
    p->width = 0;
    p->what = what;
    p->verb = verb;
}

/* Erases the line (caller holds the mutex or is single-threaded). */
static void progress_clear_locked(progress *p) {
    if (p->width > 0) {
        fprintf(stderr, "\r%*s\r", p->width, "");
        fflush(stderr);
        p->width = 0;
    }
}

static void progress_clear(progress *p) {
    pthread_mutex_lock(&p->mu);
    progress_clear_locked(p);
    pthread_mutex_unlock(&p->mu);
}

static void progress_destroy(progress *p) {
    progress_clear(p);
    pthread_mutex_destroy(&p->mu);
}

/* The ds_progress_fn shared by convert and verify. */
static int progress_cb(void *user, uint64_t done, uint64_t total, uint64_t bytes) {
    progress *p = user;
    if (p->enabled) {
        pthread_mutex_lock(&p->mu);
        double t = now_s();
        if (t - p->last_draw >= 0.1 || (total && done == total)) {
            double el = t - p->t0;
            char line[160];
            int n = snprintf(line, sizeof line, "%s %llu/%llu, %.1f MB %s, %.1f MB/s", p->what,
                             (unsigned long long)done, (unsigned long long)total, mb(bytes), p->verb,
                             el > 0 ? mb(bytes) / el : 0.0);
            if (n < 0) n = 0;
            if (n >= (int)sizeof line) n = (int)sizeof line - 1;
            /* pad over a longer previous line */
            fprintf(stderr, "\r%s%*s", line, p->width > n ? p->width - n : 0, "");
            fflush(stderr);
            if (n > p->width) p->width = n;
            p->last_draw = t;
        }
        pthread_mutex_unlock(&p->mu);
    }
    return g_interrupted ? 1 : 0;
}

/* ==== Log callback ======================================================== */

typedef struct log_ctx {
    const char *cmd;
    ds_log_level max;         /* messages above this level are dropped */
    progress *prog;           /* cleared before a message, may be NULL */
} log_ctx;

static void log_cb(void *user, ds_log_level level, const char *msg) {
    log_ctx *l = user;
    const char *tag = "notice";
    if (level > l->max) return;
    if (level == DS_LOG_ERROR) tag = "error";
    else if (level == DS_LOG_WARN) tag = "warning";
    else if (level == DS_LOG_DEBUG) tag = "debug";
    if (l->prog) pthread_mutex_lock(&l->prog->mu);
    if (l->prog) progress_clear_locked(l->prog);
    fprintf(stderr, "ds %s: %s: %s\n", l->cmd, tag, msg);
    if (l->prog) pthread_mutex_unlock(&l->prog->mu);
}

/* ==== Names for enums ===================================================== */

static const char *kdf_name(ds_kdf k) {
    switch (k) {
    case DS_KDF_NONE: return "none";
    case DS_KDF_RAW_KEY: return "raw-key";
    case DS_KDF_ARGON2ID: return "argon2id";
    }
    return "unknown";
}

static const char *arch_name(ds_arch a) {
    switch (a) {
    case DS_ARCH_DEEPSEEK_V2: return "DeepseekV2ForCausalLM";
    case DS_ARCH_DEEPSEEK_V3: return "DeepseekV3ForCausalLM";
    case DS_ARCH_DEEPSEEK_MOE: return "DeepseekForCausalLM";
    case DS_ARCH_UNKNOWN: break;
    }
    return "unknown";
}

static const char *topk_name(ds_topk_method t) {
    switch (t) {
    case DS_TOPK_GREEDY: return "greedy";
    case DS_TOPK_GROUP_LIMITED_GREEDY: return "group_limited_greedy";
    case DS_TOPK_NOAUX_TC: return "noaux_tc";
    }
    return "unknown";
}

static const char *scoring_name(ds_scoring s) {
    switch (s) {
    case DS_SCORING_SOFTMAX: return "softmax";
    case DS_SCORING_SIGMOID: return "sigmoid";
    }
    return "unknown";
}

static const char *segkind_name(ds_segment_kind k) {
    switch (k) {
    case DS_SEGMENT_DENSE: return "dense";
    case DS_SEGMENT_EXPERT: return "expert";
    }
    return "unknown";
}

/* The integer and float fields of ds_model_config, in print order. */
#define DS_CFG_INTS(X)                                                                         \
    X(vocab_size) X(hidden_size) X(intermediate_size) X(moe_intermediate_size) X(n_layers)     \
    X(n_heads) X(n_kv_heads) X(n_routed_experts) X(n_shared_experts) X(n_experts_per_tok)      \
    X(first_k_dense_replace) X(moe_layer_freq) X(q_lora_rank) X(kv_lora_rank)                  \
    X(qk_nope_head_dim) X(qk_rope_head_dim) X(v_head_dim) X(head_dim) X(n_group) X(topk_group) \
    X(norm_topk_prob) X(max_position_embeddings) X(rope_scaling_yarn)                          \
    X(rope_original_max_position) X(tie_word_embeddings) X(bos_token_id) X(eos_token_id)
#define DS_CFG_FLOATS(X)                                                                       \
    X(routed_scaling_factor) X(rms_norm_eps) X(rope_theta) X(rope_factor) X(rope_beta_fast)    \
    X(rope_beta_slow) X(rope_mscale) X(rope_mscale_all_dim)

/* ==== JSON output helpers (inspect --json) ================================ */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* JSON has no NaN or infinity. */
static void json_float(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

/* `, "adapters": [{"path": ..., "scale": ...}, ...]` for a --json line. */
static void json_adapters(FILE *f, const lora_set *ls) {
    fputs(", \"adapters\": [", f);
    for (size_t j = 0; j < ls->n; j++) {
        fprintf(f, "%s{\"path\": ", j ? ", " : "");
        json_str(f, ls->path[j]);
        fputs(", \"scale\": ", f);
        json_float(f, ls->scale[j]);
        fputs("}", f);
    }
    fputs("]", f);
}

/* ==== The model path ===================================================== */

/* -m/--model: the model as an option (llama.cpp's spelling) instead of the
 * positional argument. Returns 1 when the current argument was it. */
static int model_path_option(argscan *a, const char **path) {
    const char *v;
    if (!is_opt(a, "-m", &v) && !is_opt(a, "--model", &v)) return 0;
    if (a->bad) return 1;
    if (*path) {
        a->bad = 1;
        usage_error(a->cmd, "the model is given twice ('%s' and '%s')", *path, v);
    } else if (!v[0]) {
        a->bad = 1;
        usage_error(a->cmd, "-m/--model needs a file name");
    } else {
        *path = v;
    }
    return 1;
}

/* A positional model path; *path may already hold one from -m. Returns 0 or
 * EXIT_USAGE (message printed). */
static int model_path_positional(const char *cmd, const char **path, const char *arg, const char *extra) {
    if (*path) return usage_error(cmd, "too many arguments ('%s')%s", arg, extra);
    *path = arg;
    return 0;
}

/* ==== ds keygen =========================================================== */

static const char keygen_help[] =
    "usage: ds keygen <file>\n"
    "\n"
    "Writes a new random 32-byte key (from the OS CSPRNG) to <file> with mode\n"
    "0600. Refuses to overwrite an existing file.\n";

static int cmd_keygen(int argc, char **argv) {
    argscan a = {"keygen", argc, argv, 0, 0, 0};
    const char *path = NULL;
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        int pos = is_positional(&a);
        if (pos < 0) continue;
        if (pos) {
            if (path) return usage_error("keygen", "too many arguments ('%s')", argv[a.i]);
            path = argv[a.i];
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(keygen_help, stdout);
            return 0;
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (!path) return usage_error("keygen", "missing <file>");

    unsigned char key[DS_KEY_BYTES];
    ds_status st = ds_key_generate(key);
    if (st == DS_OK) st = ds_key_file_write(path, key);
    ds_memzero(key, sizeof key);
    if (st == DS_ERR_EXISTS) {
        const char *m = errmsg(st);
        if (strstr(m, "exist")) return fail("keygen", "%s", m);
        return fail("keygen", "%s: file exists; refusing to overwrite it", path);
    }
    if (st != DS_OK) return fail("keygen", "%s", errmsg(st));
    printf("wrote a %d-byte key to %s (mode 0600)\n", DS_KEY_BYTES, path);
    return 0;
}

/* ==== ds convert ========================================================== */

static const char convert_help[] =
    "usage: ds convert <hf_dir> <out.dsm> [options]\n"
    "       ds convert <model.gguf> <out.dsm> [options]\n"
    "\n"
    "Converts a Hugging Face DeepSeek checkpoint (config.json, tokenizer.json,\n"
    "safetensors), or a llama.cpp GGUF file (architecture deepseek2 or deepseek),\n"
    "into a sealed container. Exactly one of these is required:\n"
    "  --key-file F          encrypt (AES-256-GCM) with the 32-byte key in F\n"
    "  --passphrase-env VAR  encrypt with a passphrase (Argon2id) read from the\n"
    "                        environment variable VAR (never from the command line)\n"
    "  --no-encrypt          plaintext container, integrity tags only\n"
    "(--encrypt is accepted and only insists on --key-file or --passphrase-env.)\n"
    "Options:\n"
    "  --quant f32|f16|q8|q4 storage of the weight matrices (default q8; for a GGUF,\n"
    "                        each tensor keeps its type: F32, F16, Q8_0 and Q4_0 are\n"
    "                        copied, BF16 becomes F16, Q4_1, Q5_x and K-quants Q8_0);\n"
    "                        q4 is Q4_0, llama.cpp's 4-bit blocks (q8_0 and q4_0\n"
    "                        also work)\n"
    "The precision recipe, by class of parameters (each defaults to --quant,\n"
    "except the router, F32 unless asked; norms and biases are always F32):\n"
    "  --quant-experts T     routed experts (the paged part)\n"
    "  --quant-core T        embeddings, attention, dense and shared FFNs, head\n"
    "  --quant-router T      each MoE layer's gate (default f32)\n"
"  e.g. --quant-experts q4 --quant-core q8: 4-bit experts, 8-bit core\n"
    "Pruning (of the checkpoint's values, before quantization; never the\n"
    "embeddings, the LM head, the router, norms or biases):\n"
    "  --prune R             in each weight matrix of n entries, zero the floor(R*n)\n"
    "                        of smallest |w| (0 <= R < 1; ties: the earlier entry\n"
    "                        in row-major order first)\n"
    "  --prune-structured N:M  zero the N of smallest |w| in every M consecutive\n"
    "                        weights of a row (e.g. 2:4; M in 2, 4, 8, 16, 32)\n"
    "  --prune-only core|experts  prune only attention and dense/shared FFNs, or\n"
    "                        only routed experts (default both)\n"
    "  --prune-storage auto|dense  auto (default): pruned Q8_0 matrices stored\n"
    "                        sparse where that is smaller (2:4 packed, or masked\n"
    "                        rows); dense: keep the zeros in Q8_0\n"
    "  --chunk-kb N          plaintext KiB per sealed chunk (default 1024)\n"
    "Expert pruning (MoE):\n"
    "  --drop-experts R      drop, in each MoE layer, the floor(R * n_routed_experts)\n"
    "                        routed experts with the least routing mass (R in [0, 1);\n"
    "                        ties: fewer selections, then the higher id go first)\n"
    "  --calib STATS.json    the routing statistics to rank them by (ds calibrate)\n"
    "  --argon-ops N         Argon2id opslimit (default 2, libsodium INTERACTIVE; at most 8)\n"
    "  --argon-mem-mb N      Argon2id memory in MiB (default 64, libsodium INTERACTIVE;\n"
    "                        at most 1024: the runtime refuses larger values)\n"
    "  --force               replace <out.dsm> if it exists (never one of the inputs)\n"
    "  -v, --verbose         also print the converter's debug messages\n"
    "An existing <out.dsm> is refused without --force; the new file is written\n"
    "beside it and renamed into place only when complete.\n"
    "Progress is shown on stderr when it is a terminal. MB = 10^6 bytes.\n";

static int cmd_convert(int argc, char **argv) {
    const char *cmd = "convert";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    key_opts ko = {0};
    const char *pos[2] = {0}, *quant_s = NULL, *chunk_s = NULL, *ops_s = NULL, *mem_s = NULL;
    const char *qexp_s = NULL, *qcore_s = NULL, *qrouter_s = NULL;
    const char *prune_s = NULL, *prune_nm_s = NULL, *prune_only_s = NULL, *prune_storage_s = NULL;
    const char *drop_s = NULL, *calib_s = NULL;
    int npos = 0, verbose = 0, force = 0;

    /* ---- parse the command line ---- */
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            if (npos == 2) return usage_error(cmd, "too many arguments ('%s')", argv[a.i]);
            pos[npos++] = argv[a.i];
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(convert_help, stdout);
            return 0;
        } else if (key_option(&a, &ko, 1)) {
        } else if (is_opt(&a, "--quant", &v)) {
            set_once(&a, &quant_s, v, "--quant");
        } else if (is_opt(&a, "--quant-experts", &v)) {
            set_once(&a, &qexp_s, v, "--quant-experts");
        } else if (is_opt(&a, "--quant-core", &v)) {
            set_once(&a, &qcore_s, v, "--quant-core");
        } else if (is_opt(&a, "--quant-router", &v)) {
            set_once(&a, &qrouter_s, v, "--quant-router");
        } else if (is_opt(&a, "--prune", &v)) {
            set_once(&a, &prune_s, v, "--prune");
        } else if (is_opt(&a, "--prune-structured", &v)) {
            set_once(&a, &prune_nm_s, v, "--prune-structured");
        } else if (is_opt(&a, "--prune-only", &v)) {
            set_once(&a, &prune_only_s, v, "--prune-only");
        } else if (is_opt(&a, "--prune-storage", &v)) {
            set_once(&a, &prune_storage_s, v, "--prune-storage");
        } else if (is_opt(&a, "--chunk-kb", &v)) {
            set_once(&a, &chunk_s, v, "--chunk-kb");
        } else if (is_opt(&a, "--drop-experts", &v)) {
            set_once(&a, &drop_s, v, "--drop-experts");
        } else if (is_opt(&a, "--calib", &v)) {
            set_once(&a, &calib_s, v, "--calib");
        } else if (is_opt(&a, "--argon-ops", &v)) {
            set_once(&a, &ops_s, v, "--argon-ops");
        } else if (is_opt(&a, "--argon-mem-mb", &v)) {
            set_once(&a, &mem_s, v, "--argon-mem-mb");
        } else if (is_flag(&a, "--force")) {
            force = 1;
        } else if (is_flag(&a, "--verbose") || is_flag(&a, "-v")) {
            verbose = 1;
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (npos < 2) return usage_error(cmd, "needs <hf_dir> and <out.dsm>");

    ds_convert_params cp = ds_convert_default_params();
    cp.quant = DS_QUANT_Q8_0;
    {
        /* a GGUF keeps its tensors' types unless --quant says otherwise */
        struct stat gst;
        FILE *f = stat(pos[0], &gst) == 0 && S_ISREG(gst.st_mode) ? fopen(pos[0], "rb") : NULL;
        char mg[4] = {0};
        if (f && fread(mg, 1, 4, f) == 4 && memcmp(mg, "GGUF", 4) == 0) cp.quant = DS_QUANT_KEEP;
        if (f) fclose(f);
    }
    cp.overwrite = force;
    const char *const qv[4] = {quant_s, qexp_s, qcore_s, qrouter_s};
    static const char *const qo[4] = {"--quant", "--quant-experts", "--quant-core", "--quant-router"};
    ds_quant *const qd[4] = {&cp.quant, &cp.quant_experts, &cp.quant_core, &cp.quant_router};
    for (int i = 0; i < 4; i++) {
        const char *q = qv[i];
        if (!q) continue;
        if (strcmp(q, "f32") == 0) *qd[i] = DS_QUANT_F32;
        else if (strcmp(q, "f16") == 0) *qd[i] = DS_QUANT_F16;
        else if (strcmp(q, "q8") == 0 || strcmp(q, "q8_0") == 0) *qd[i] = DS_QUANT_Q8_0;
        else if (strcmp(q, "q4") == 0 || strcmp(q, "q4_0") == 0) *qd[i] = DS_QUANT_Q4_0;
        else return usage_error(cmd, "%s must be f32, f16, q8 or q4, not '%s'", qo[i], q);
    }
    if (prune_s) {
        char *end = NULL;
        errno = 0;
        double r = strtod(prune_s, &end);
        if (errno || !end || end == prune_s || *end || !(r >= 0.0 && r < 1.0))
            return usage_error(cmd, "--prune needs a fraction R with 0 <= R < 1 (e.g. 0.3), not '%s'", prune_s);
        cp.prune = r;
    }
    if (prune_nm_s) {
        int n = 0, m = 0, used = 0;
        if (sscanf(prune_nm_s, "%d:%d%n", &n, &m, &used) != 2 || prune_nm_s[used] || n <= 0 || n >= m ||
            !(m == 2 || m == 4 || m == 8 || m == 16 || m == 32))
            return usage_error(cmd, "--prune-structured needs N:M with M one of 2, 4, 8, 16, 32 and 0 < N < M "
                               "(e.g. 2:4), not '%s'", prune_nm_s);
        if (prune_s) return usage_error(cmd, "--prune and --prune-structured are exclusive: choose one");
        cp.prune_n = n;
        cp.prune_m = m;
    }
    if (prune_only_s) {
        if (strcmp(prune_only_s, "core") == 0) cp.prune_classes = DS_PRUNE_CORE;
        else if (strcmp(prune_only_s, "experts") == 0) cp.prune_classes = DS_PRUNE_EXPERTS;
        else return usage_error(cmd, "--prune-only must be core or experts, not '%s'", prune_only_s);
    }
    if (prune_storage_s) {
        if (strcmp(prune_storage_s, "auto") == 0) cp.prune_storage = DS_PRUNE_STORAGE_AUTO;
        else if (strcmp(prune_storage_s, "dense") == 0) cp.prune_storage = DS_PRUNE_STORAGE_DENSE;
        else return usage_error(cmd, "--prune-storage must be auto or dense, not '%s'", prune_storage_s);
    }
    if ((prune_only_s || prune_storage_s) && !prune_s && !prune_nm_s)
        return usage_error(cmd, "--prune-only and --prune-storage need --prune R or --prune-structured N:M");
    if (chunk_s) {
        uint64_t kb;
        /* the chunk size is a uint32_t of bytes */
        if (!parse_u64(chunk_s, UINT32_MAX / 1024, &kb) || kb == 0)
            return usage_error(cmd, "--chunk-kb needs a positive whole number of KiB, not '%s'", chunk_s);
        cp.chunk_bytes = (uint32_t)(kb * 1024);
    }
    if (drop_s) {
        char *end = NULL;
        errno = 0;
        double r = strtod(drop_s, &end);
        if (!*drop_s || !end || *end || errno)
            return usage_error(cmd, "--drop-experts needs a fraction in [0, 1), not '%s'", drop_s);
        cp.drop_experts = r;   /* the range is the library's to check (a named error) */
        if (!calib_s) return usage_error(cmd, "--drop-experts needs --calib STATS.json (ds calibrate makes one)");
    }
    if (calib_s) cp.drop_calib_path = calib_s;
    if (ops_s) {
        uint64_t v;
        if (!parse_u64(ops_s, UINT32_MAX, &v) || v == 0)
            return usage_error(cmd, "--argon-ops needs a positive whole number, not '%s'", ops_s);
        cp.argon_opslimit = v;
    }
    if (mem_s) {
        uint64_t v;
        if (!parse_u64(mem_s, (uint64_t)1 << 22, &v) || v == 0)
            return usage_error(cmd, "--argon-mem-mb needs a positive whole number of MiB, not '%s'", mem_s);
        cp.argon_memlimit = v << 20;
    }
    int rc = key_opts_check(cmd, &ko);
    if (rc) return rc;
    if (!ko.key_file && !ko.pass_env && !ko.no_encrypt)
        return usage_error(cmd, "one of --key-file F, --passphrase-env VAR or --no-encrypt is required");
    if ((ops_s || mem_s) && !ko.pass_env)
        return usage_error(cmd, "--argon-ops and --argon-mem-mb only apply with --passphrase-env");

    /* ---- key material ---- */
    secret sec;
    if (secret_load(cmd, &ko, &sec)) {
        secret_wipe(&sec);
        return EXIT_FAILURE;
    }
    cp.encrypt = !ko.no_encrypt;
    if (sec.have_key) {
        cp.key = sec.key;
        cp.key_len = sizeof sec.key;
    } else if (sec.pass) {
        cp.passphrase = sec.pass;
        cp.passphrase_len = sec.pass_len;
    }

    /* ---- run the converter ---- */
    progress prog;
    progress_init(&prog, "tensors", "written");
    /* notices (skipped tensors, ...) are worth showing; debug only with -v */
    log_ctx lc = {cmd, verbose ? DS_LOG_DEBUG : DS_LOG_INFO, &prog};
    cp.progress = progress_cb;
    cp.progress_user = &prog;
    cp.log = log_cb;
    cp.log_user = &lc;
    install_signals();

    double t0 = now_s();
    ds_status st = ds_convert(pos[0], pos[1], &cp);
    double el = now_s() - t0;
    progress_destroy(&prog);
    secret_wipe(&sec);

    if (st == DS_ERR_CANCELLED && g_interrupted) return fail(cmd, "interrupted; no output written");
    if (st != DS_OK) return fail(cmd, "%s", errmsg(st));

    /* ---- summary ---- */
    struct stat sb;
    uint64_t size = 0;
    if (stat(pos[1], &sb) == 0) size = (uint64_t)sb.st_size;
    printf("wrote %s: %.1f MB in %.2f s (%.1f MB/s)\n", pos[1], mb(size), el, el > 0 ? mb(size) / el : 0.0);
    return 0;
}

/* ==== Opening a model (inspect, verify) =================================== */

/* Opens `path` metadata-only with the given secret. On failure prints the
 * message (with a hint when the kind of key does not fit the file) and
 * returns NULL. */
static ds_model *open_meta(const char *cmd, const char *path, const ds_file_info *fi, const secret *sec,
                           int allow_plaintext, log_ctx *lc, int n_threads) {
    ds_model_params mp = ds_model_default_params();
    ds_model *m = NULL;
    mp.load_weights = 0;
    mp.n_threads = n_threads;
    mp.log = log_cb;
    mp.log_user = lc;
    /* the secret goes to the library even for a plaintext file: given a key,
     * the library refuses plaintext unless --allow-plaintext */
    secret_params(sec, &mp);
    mp.allow_plaintext = allow_plaintext;
    ds_status st = ds_model_open(&m, path, &mp);
    if (st != DS_OK) {
        /* name the right option when the kind of secret does not fit the
         * file (unless the library's message already says so) */
        const char *msg = errmsg(st), *hint = "";
        if (fi->kdf == DS_KDF_ARGON2ID && sec->have_key && !strstr(msg, "--passphrase-env"))
            hint = " (the file is sealed with a passphrase: use --passphrase-env VAR)";
        else if (fi->kdf == DS_KDF_RAW_KEY && sec->pass && !strstr(msg, "--key-file"))
            hint = " (the file is sealed with a key: use --key-file F)";
        else if (st == DS_ERR_NOT_ADAPTER && !strcmp(cmd, "inspect"))
            hint = " (to inspect an adapter: ds inspect ADAPTER.dsa --base BASE.dsm)";
        fail(cmd, "%s%s", msg, hint);
        return NULL;
    }
    return m;
}

/* ==== ds inspect ========================================================== */

static const char inspect_help[] =
    "usage: ds inspect <model.dsm> [--key-file F | --passphrase-env VAR] [--json]\n"
    "       ds inspect <model.dsm> [key] --plan [--mem SIZE] [--ctx N] [--seqs N] [--json]\n"
    "       ds inspect <adapter.dsa> --base <base.dsm> [--key-file F | --passphrase-env VAR] [--json]\n"
    "\n"
    "Without a key, prints the public header (format, cipher, KDF, chunk size,\n"
    "sizes). With the key (or for a plaintext container) also prints the model's\n"
    "identity (ds_model_id: what adapters are bound to), config, tokenizer\n"
    "summary, tensor directory and segment table, and says whether the header\n"
    "was authenticated. Nothing is decrypted beyond the metadata.\n"
    "A LoRA adapter is read over its base (--base; one key for both, or\n"
    "--adapter-key-file F for the adapter's own): base id, r, lora_alpha, scale,\n"
    "targets, parameters, dtype and the size of its tensors.\n"
    "  -m, --model FILE  the model, instead of the positional <model.dsm>\n"
    "  --json            one JSON object on stdout instead of text\n"
    "  --plan            instead of the directories, the memory plan (ds_model_memory_plan):\n"
    "                    resident (dense) bytes, routed-expert bytes and slot size, one\n"
    "                    context, all-resident total and the least budget that runs;\n"
    "                    needs the key (the segment directory is in the sealed metadata)\n"
    "  --mem SIZE        with --plan: fit a budget: 8G, 8192M, 1.5GiB, 8589934592 (K, M, G, T\n"
    "                    are powers of 1024; KB, MB, GB, TB of 1000): the --cache-mb to use,\n"
    "                    the experts it holds and the expected hit rate (uniform routing).\n"
    "                    A budget too small prints a 'does not fit' line and still exits 0\n"
    "  -c, --ctx N       with --plan: the context in tokens (default min(4096, the model's maximum))\n"
    "  --seqs N          with --plan: sequences of the context, each with its KV cache\n"
    "                    (ds-server: --max-concurrent; default 1)\n"
    "  --allow-plaintext with a key, open a plaintext (unencrypted) file anyway\n"
    "  -v, --verbose     also print the library's notices\n";

/* ---- the memory plan (--plan) ---- */

static double mib(uint64_t bytes) { return (double)bytes / 1048576.0; }

static void print_plan_text(const char *path, const ds_memory_plan *p) {
    if (p->n_seq > 1)
        printf("memory plan      %s, one context of %d sequences of %d tokens (MiB = 2^20 bytes)\n", path, p->n_seq,
               p->n_ctx);
    else
        printf("memory plan      %s, one context of %d tokens (MiB = 2^20 bytes)\n", path, p->n_ctx);
    printf("  %-22s %12.1f MiB  dense segments: held by every open\n", "resident", mib(p->resident_bytes));
    if (p->n_experts)
        printf("  %-22s %12.1f MiB  %llu experts in %d layers, %.2f MiB each on average; a cache slot (the "
               "largest) %.2f MiB\n",
               "routed experts", mib(p->expert_bytes), (unsigned long long)p->n_experts, p->n_expert_layers,
               mib(p->expert_bytes) / (double)p->n_experts, mib(p->slot_bytes));
    else
        printf("  %-22s %12.1f MiB  none: nothing to page\n", "routed experts", 0.0);
    printf("  %-22s %12.1f MiB  KV cache %.1f MiB (%llu bytes per token) + scratch %.1f MiB\n", "context",
           mib(p->context_bytes), mib(p->kv_bytes), (unsigned long long)p->kv_bytes_per_token,
           mib(p->scratch_bytes));
    printf("  %-22s %12.1f MiB  resident + experts + context (no --cache-mb)\n", "all resident",
           mib(p->full_bytes));
    if (p->n_experts)
        printf("  %-22s %12.1f MiB  resident + context + 2 cache slots (--cache-mb %llu)\n", "least paged",
               mib(p->min_paged_bytes), (unsigned long long)((2 * p->slot_bytes + (1u << 20) - 1) >> 20));
    printf("  %-22s %12.1f MiB  the least --mem that fits, slack included\n", "least budget",
           mib(p->min_mem_bytes));
    if (!p->mem_bytes) return;
    printf("budget           %llu bytes (%.1f MiB)\n", (unsigned long long)p->mem_bytes, mib(p->mem_bytes));
    printf("  %-22s %12.1f MiB  64 MiB + 1/64 of the budget: tokenizer, per-thread buffers, the program\n",
           "slack", mib(p->slack_bytes));
    if (!p->fits) {
        printf("  %-22s does not fit: %.1f MiB short (%llu bytes); the least budget is %.1f MiB\n", "verdict",
               mib(p->shortfall_bytes), (unsigned long long)p->shortfall_bytes, mib(p->min_mem_bytes));
        return;
    }
    if (p->all_resident) {
        printf("  %-22s fits with every expert resident: no --cache-mb\n", "verdict");
        printf("  %-22s 100%% of expert lookups from memory\n", "expected hits");
        return;
    }
    printf("  %-22s fits with an expert cache\n", "verdict");
    printf("  %-22s --cache-mb %llu  (%llu bytes: %llu of %llu experts, %.1f%% of the routed-expert bytes)\n",
           "expert cache", (unsigned long long)(p->cache_bytes >> 20), (unsigned long long)p->cache_bytes,
           (unsigned long long)p->cache_slots, (unsigned long long)p->n_experts,
           p->expert_bytes ? 100.0 * (double)p->cache_bytes / (double)p->expert_bytes : 0.0);
    printf("  %-22s %.1f%% of expert lookups from the cache, under uniform routing (a cache of C of N\n"
           "  %-22s experts serves C/N); real routing is skewed: ds bench --sweep measures it\n",
           "expected hits", 100.0 * p->hit_rate, "");
    if (p->n_seq > 1)
        printf("  %-22s ds-server --model MODEL --cache-mb %llu --max-concurrent %d --ctx %d\n", "use",
               (unsigned long long)(p->cache_bytes >> 20), p->n_seq, p->n_ctx);
    else
        printf("  %-22s ds run MODEL --cache-mb %llu --ctx %d; ds bench MODEL --cache-mb %llu measures the hits\n",
               "use", (unsigned long long)(p->cache_bytes >> 20), p->n_ctx, (unsigned long long)(p->cache_bytes >> 20));
}

static void print_plan_json(const ds_memory_plan *p) {
    printf(",\n  \"plan\": {\"n_ctx\": %d, \"n_seq\": %d, \"resident_bytes\": %llu, \"expert_bytes\": %llu, "
           "\"n_experts\": %llu, \"n_expert_layers\": %d, \"slot_bytes\": %llu, \"kv_bytes_per_token\": %llu, \"kv_bytes\": %llu, "
           "\"scratch_bytes\": %llu, \"context_bytes\": %llu, \"full_bytes\": %llu, \"min_paged_bytes\": %llu, "
           "\"min_mem_bytes\": %llu",
           p->n_ctx, p->n_seq, (unsigned long long)p->resident_bytes, (unsigned long long)p->expert_bytes,
           (unsigned long long)p->n_experts, p->n_expert_layers, (unsigned long long)p->slot_bytes,
           (unsigned long long)p->kv_bytes_per_token, (unsigned long long)p->kv_bytes,
           (unsigned long long)p->scratch_bytes, (unsigned long long)p->context_bytes,
           (unsigned long long)p->full_bytes, (unsigned long long)p->min_paged_bytes,
           (unsigned long long)p->min_mem_bytes);
    if (p->mem_bytes) {
        printf(", \"mem_bytes\": %llu, \"slack_bytes\": %llu, \"fits\": %s, \"all_resident\": %s, "
               "\"shortfall_bytes\": %llu, \"cache_bytes\": %llu, \"cache_mb\": %llu, \"cache_slots\": %llu, "
               "\"cache_share\": ",
               (unsigned long long)p->mem_bytes, (unsigned long long)p->slack_bytes, p->fits ? "true" : "false",
               p->all_resident ? "true" : "false", (unsigned long long)p->shortfall_bytes,
               (unsigned long long)p->cache_bytes, (unsigned long long)(p->cache_bytes >> 20),
               (unsigned long long)p->cache_slots);
        json_float(stdout, p->cache_share);
        printf(", \"hit_rate\": ");
        json_float(stdout, p->hit_rate);
        printf(", \"hit_model\": \"uniform\"");
    }
    printf("}");
}

/* Sums over the segment table. */
typedef struct seg_totals {
    uint64_t dense_bytes, expert_bytes, stored_bytes;
    size_t n_dense, n_expert;
} seg_totals;

static seg_totals segment_totals(const ds_model *m) {
    seg_totals t = {0};
    size_t n = ds_model_segment_count(m);
    for (size_t i = 0; i < n; i++) {
        ds_segment_info si;
        if (ds_model_segment_info(m, i, &si) != DS_OK) continue;
        t.stored_bytes += si.stored_bytes;
        if (si.kind == DS_SEGMENT_EXPERT) {
            t.expert_bytes += si.plain_bytes;
            t.n_expert++;
        } else {
            t.dense_bytes += si.plain_bytes;
            t.n_dense++;
        }
    }
    return t;
}

/* "1408x2048" */
static void dims_str(const ds_tensor_info *ti, char *buf, size_t len) {
    size_t at = 0;
    buf[0] = 0;
    for (int d = 0; d < ti->n_dims && d < 4 && at < len; d++) {
        int n = snprintf(buf + at, len - at, "%s%llu", d ? "x" : "", (unsigned long long)ti->dims[d]);
        if (n < 0) break;
        at += (size_t)n;
    }
}

/* ---- text output ---- */

static void print_header_text(const char *path, const ds_file_info *fi) {
    printf("file             %s\n", path);
    printf("format version   %u\n", fi->format_version);
    printf("cipher           %s\n", ds_cipher_name(fi->cipher));
    printf("kdf              %s\n", kdf_name(fi->kdf));
    printf("chunk size       %u bytes (%u KiB)\n", fi->chunk_bytes, fi->chunk_bytes / 1024);
    printf("file size        %llu bytes (%.1f MB)\n", (unsigned long long)fi->file_bytes, mb(fi->file_bytes));
    printf("metadata         offset %llu, %llu bytes\n", (unsigned long long)fi->meta_offset,
           (unsigned long long)fi->meta_bytes);
    if (fi->kdf == DS_KDF_ARGON2ID)
        printf("argon2id         opslimit %llu, memlimit %llu bytes (%llu MiB)\n",
               (unsigned long long)fi->argon_opslimit, (unsigned long long)fi->argon_memlimit,
               (unsigned long long)(fi->argon_memlimit >> 20));
}

/* ---- parameters by class (the converter's recipe: DS_PARAM_*) ---- */
typedef struct class_totals {
    uint64_t params[3], bytes[3];
    unsigned dtypes[3];           /* bit t: some tensor of the class is ds_dtype t */
} class_totals;

static const char *const class_names[3] = {"core", "experts", "router"};

static class_totals class_totals_of(const ds_model *m) {
    class_totals t;
    memset(&t, 0, sizeof t);
    size_t nt = ds_model_tensor_count(m);
    for (size_t i = 0; i < nt; i++) {
        ds_tensor_info ti;
        if (ds_model_tensor_info(m, i, &ti) != DS_OK || ti.param_class < 0 || ti.param_class > 2) continue;
        uint64_t n = 1;
        for (int d = 0; d < ti.n_dims && d < 4; d++) n *= ti.dims[d];
        t.params[ti.param_class] += n;
        t.bytes[ti.param_class] += ti.nbytes;
        if ((unsigned)ti.dtype < 16) t.dtypes[ti.param_class] |= 1u << ti.dtype;
    }
    return t;
}

/* "Q4_0+F32": the formats of a class, widest last */
static void class_dtypes(unsigned bits, char *buf, size_t len) {
    static const ds_dtype order[] = {DS_DTYPE_Q4_0, DS_DTYPE_Q8_0_SP, DS_DTYPE_Q8_0_24, DS_DTYPE_Q8_0,
                                     DS_DTYPE_F16, DS_DTYPE_F32};
    buf[0] = 0;
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
        if (bits & (1u << order[k]))
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? "+" : "", ds_dtype_name(order[k]));
    if (!buf[0]) snprintf(buf, len, "-");
}

/* The model's identity (ds_model_id) in hex; "?" when it cannot be had. */
static void model_id_hex(const ds_model *m, char out[2 * DS_MODEL_ID_BYTES + 1]) {
    unsigned char id[DS_MODEL_ID_BYTES];
    if (ds_model_id(m, id) != DS_OK) {
        strcpy(out, "?");
        return;
    }
    ds_hex(id, sizeof id, out);
}

static void print_model_text(const ds_model *m, const ds_model_config *c, uint64_t file_bytes) {
    char idh[2 * DS_MODEL_ID_BYTES + 1];
    model_id_hex(m, idh);
    printf("identity         %s\n", idh);
    /* ---- config ---- */
    printf("\nconfig\n");
    printf("  %-28s %s\n", "architecture", arch_name(c->arch));
#define X(f) printf("  %-28s %d\n", #f, c->f);
    DS_CFG_INTS(X)
#undef X
    printf("  %-28s %s\n", "topk_method", topk_name(c->topk_method));
    printf("  %-28s %s\n", "scoring_func", scoring_name(c->scoring_func));
#define X(f) printf("  %-28s %g\n", #f, (double)c->f);
    DS_CFG_FLOATS(X)
#undef X

    /* ---- tokenizer ---- */
    printf("\ntokenizer\n");
    printf("  %-28s %d\n", "vocab entries", c->tok_vocab);
    printf("  %-28s %d\n", "merges", c->tok_merges);
    printf("  %-28s %d\n", "added tokens", c->tok_added);
    printf("  %-28s %s\n", "chat template", c->has_chat_template ? "yes" : "no");

    /* ---- dropped experts ---- */
    ds_expert_pruning ep;
    if (ds_model_expert_pruning(m, &ep) == DS_OK && ep.pruned) {
        printf("\nexperts dropped at conversion\n");
        printf("  %-28s %g (%d of %d routed experts per MoE layer)\n", "ratio", ep.ratio, ep.n_dropped,
               c->n_routed_experts);
        printf("  %-28s %s%s%s", "calibration", ep.calib_file[0] ? ep.calib_file : "?",
               ep.calib_text[0] ? " (text " : "", ep.calib_text);
        if (ep.calib_tokens) printf("%s%llu tokens", ep.calib_text[0] ? ", " : " (", (unsigned long long)ep.calib_tokens);
        printf("%s\n", ep.calib_text[0] || ep.calib_tokens ? ")" : "");
        unsigned char *present = malloc((size_t)c->n_routed_experts + 1);
        for (int l = 0; present && l < c->n_layers; l++) {
            if (ds_model_layer_experts(m, l, present, (size_t)c->n_routed_experts) != DS_OK) continue;
            int nd = 0;
            for (int x = 0; x < c->n_routed_experts; x++) nd += !present[x];
            printf("  layer %-4d kept %d, dropped %d:", l, c->n_routed_experts - nd, nd);
            for (int x = 0; x < c->n_routed_experts; x++)
                if (!present[x]) printf(" %d", x);
            printf("\n");
        }
        free(present);
    }

    /* ---- tensor directory ---- */
    size_t nt = ds_model_tensor_count(m);
    int w = 4;
    for (size_t i = 0; i < nt; i++) {
        ds_tensor_info ti;
        if (ds_model_tensor_info(m, i, &ti) == DS_OK && ti.name && (int)strlen(ti.name) > w)
            w = (int)strlen(ti.name);
    }
    printf("\ntensors (%zu)\n", nt);
    printf("  %-*s %-5s %-20s %7s %12s %12s\n", w, "name", "dtype", "dims", "segment", "offset", "bytes");
    for (size_t i = 0; i < nt; i++) {
        ds_tensor_info ti;
        char dims[96];
        if (ds_model_tensor_info(m, i, &ti) != DS_OK) {
            printf("  (tensor %zu: %s)\n", i, ds_last_error());
            continue;
        }
        dims_str(&ti, dims, sizeof dims);
        printf("  %-*s %-5s %-20s %7u %12llu %12llu\n", w, ti.name ? ti.name : "?", ds_dtype_name(ti.dtype), dims,
               ti.segment, (unsigned long long)ti.offset, (unsigned long long)ti.nbytes);
    }

    /* ---- segment table ---- */
    size_t ns = ds_model_segment_count(m);
    printf("\nsegments (%zu)\n", ns);
    printf("  %6s  %-24s %-6s %14s %12s %12s %7s\n", "index", "name", "kind", "file offset", "plain", "stored",
           "chunks");
    for (size_t i = 0; i < ns; i++) {
        ds_segment_info si;
        char name[64];
        if (ds_model_segment_info(m, i, &si) != DS_OK) {
            printf("  %6zu  (%s)\n", i, ds_last_error());
            continue;
        }
        ds_model_segment_name(m, i, name, sizeof name);
        printf("  %6zu  %-24s %-6s %14llu %12llu %12llu %7u\n", i, name, segkind_name(si.kind),
               (unsigned long long)si.file_offset, (unsigned long long)si.plain_bytes,
               (unsigned long long)si.stored_bytes, si.n_chunks);
    }

    /* ---- totals ---- */
    seg_totals t = segment_totals(m);
    printf("\ntotals\n");
    printf("  %-28s %llu (%.1f MB) in %zu segments\n", "dense bytes", (unsigned long long)t.dense_bytes,
           mb(t.dense_bytes), t.n_dense);
    printf("  %-28s %llu (%.1f MB)\n", "expert bytes", (unsigned long long)t.expert_bytes, mb(t.expert_bytes));
    printf("  %-28s %zu\n", "expert segments", t.n_expert);
    printf("  %-28s %llu (%.1f MB)\n", "stored bytes", (unsigned long long)t.stored_bytes, mb(t.stored_bytes));

    /* ---- by class: core (attention, dense and shared FFNs, embeddings,
     * head, norms), routed experts, router ---- */
    class_totals ct = class_totals_of(m);
    uint64_t all = ct.params[0] + ct.params[1] + ct.params[2];
    printf("\nparameters by class\n");
    printf("  %-8s %14s %7s %14s %10s %7s  %s\n", "class", "parameters", "share", "bytes", "MB", "file", "formats");
    for (int k = 0; k < 3; k++) {
        char fmts[64];
        class_dtypes(ct.dtypes[k], fmts, sizeof fmts);
        printf("  %-8s %14llu %6.1f%% %14llu %10.1f %6.1f%%  %s\n", class_names[k], (unsigned long long)ct.params[k],
               all ? 100.0 * (double)ct.params[k] / (double)all : 0.0, (unsigned long long)ct.bytes[k],
               mb(ct.bytes[k]), file_bytes ? 100.0 * (double)ct.bytes[k] / (double)file_bytes : 0.0, fmts);
    }

    /* ---- pruning (ds convert --prune / --prune-structured) ---- */
    const char *pj = NULL;
    size_t pjl = 0;
    if (ds_model_get_pruning(m, &pj, &pjl) == DS_OK && pj) {
        printf("\npruning\n  ");
        for (size_t i = 0; i < pjl; i++) putchar(pj[i] >= 0x20 && pj[i] < 0x7f ? pj[i] : '?');
        printf("\n");
    }
}

/* ---- JSON output ---- */

/* auth: what the open proved of the header (the "auth" field) */
static void print_header_json(const char *path, const ds_file_info *fi, const char *auth) {
    printf("{\n  \"file\": ");
    json_str(stdout, path);
    printf(",\n  \"header\": {\"format_version\": %u, \"cipher\": ", fi->format_version);
    json_str(stdout, ds_cipher_name(fi->cipher));
    printf(", \"kdf\": ");
    json_str(stdout, kdf_name(fi->kdf));
    printf(", \"chunk_bytes\": %u, \"file_bytes\": %llu, \"meta_offset\": %llu, \"meta_bytes\": %llu",
           fi->chunk_bytes, (unsigned long long)fi->file_bytes, (unsigned long long)fi->meta_offset,
           (unsigned long long)fi->meta_bytes);
    if (fi->kdf == DS_KDF_ARGON2ID)
        printf(", \"argon_opslimit\": %llu, \"argon_memlimit\": %llu", (unsigned long long)fi->argon_opslimit,
               (unsigned long long)fi->argon_memlimit);
    printf(", \"auth\": ");
    json_str(stdout, auth);
    printf("}");
}

static void print_model_json(const ds_model *m, const ds_model_config *c, uint64_t file_bytes) {
    char idh[2 * DS_MODEL_ID_BYTES + 1];
    model_id_hex(m, idh);
    printf(",\n  \"model_id\": \"%s\"", idh);
    /* ---- config ---- */
    printf(",\n  \"config\": {\"architecture\": ");
    json_str(stdout, arch_name(c->arch));
#define X(f) printf(", \"" #f "\": %d", c->f);
    DS_CFG_INTS(X)
#undef X
    printf(", \"topk_method\": ");
    json_str(stdout, topk_name(c->topk_method));
    printf(", \"scoring_func\": ");
    json_str(stdout, scoring_name(c->scoring_func));
#define X(f) printf(", \"" #f "\": "), json_float(stdout, (double)c->f);
    DS_CFG_FLOATS(X)
#undef X
    printf("},\n  \"tokenizer\": {\"vocab\": %d, \"merges\": %d, \"added\": %d, \"chat_template\": %s}",
           c->tok_vocab, c->tok_merges, c->tok_added, c->has_chat_template ? "true" : "false");

    /* ---- dropped experts (null: every expert is there) ---- */
    ds_expert_pruning ep;
    if (ds_model_expert_pruning(m, &ep) == DS_OK && ep.pruned) {
        printf(",\n  \"experts_dropped\": {\"ratio\": ");
        json_float(stdout, ep.ratio);
        printf(", \"per_layer\": %d, \"calib_file\": ", ep.n_dropped);
        json_str(stdout, ep.calib_file);
        printf(", \"calib_text\": ");
        json_str(stdout, ep.calib_text);
        printf(", \"calib_tokens\": %llu, \"layers\": {", (unsigned long long)ep.calib_tokens);
        unsigned char *present = malloc((size_t)c->n_routed_experts + 1);
        int first = 1;
        for (int l = 0; present && l < c->n_layers; l++) {
            if (ds_model_layer_experts(m, l, present, (size_t)c->n_routed_experts) != DS_OK) continue;
            printf("%s\"%d\": [", first ? "" : ", ", l);
            first = 0;
            int f1 = 1;
            for (int x = 0; x < c->n_routed_experts; x++)
                if (!present[x]) {
                    printf("%s%d", f1 ? "" : ", ", x);
                    f1 = 0;
                }
            printf("]");
        }
        free(present);
        printf("}}");
    } else {
        printf(",\n  \"experts_dropped\": null");
    }

    /* ---- tensors ---- */
    size_t nt = ds_model_tensor_count(m);
    printf(",\n  \"tensors\": [");
    for (size_t i = 0; i < nt; i++) {
        ds_tensor_info ti;
        if (ds_model_tensor_info(m, i, &ti) != DS_OK) continue;
        printf("%s\n    {\"name\": ", i ? "," : "");
        json_str(stdout, ti.name ? ti.name : "");
        printf(", \"dtype\": ");
        json_str(stdout, ds_dtype_name(ti.dtype));
        printf(", \"class\": ");
        json_str(stdout, ti.param_class >= 0 && ti.param_class <= 2 ? class_names[ti.param_class] : "?");
        printf(", \"dims\": [");
        for (int d = 0; d < ti.n_dims && d < 4; d++)
            printf("%s%llu", d ? ", " : "", (unsigned long long)ti.dims[d]);
        printf("], \"segment\": %u, \"offset\": %llu, \"bytes\": %llu}", ti.segment, (unsigned long long)ti.offset,
               (unsigned long long)ti.nbytes);
    }
    printf("\n  ]");

    /* ---- segments ---- */
    size_t ns = ds_model_segment_count(m);
    printf(",\n  \"segments\": [");
    for (size_t i = 0; i < ns; i++) {
        ds_segment_info si;
        char name[64];
        if (ds_model_segment_info(m, i, &si) != DS_OK) continue;
        ds_model_segment_name(m, i, name, sizeof name);
        printf("%s\n    {\"index\": %zu, \"name\": ", i ? "," : "", i);
        json_str(stdout, name);
        printf(", \"kind\": ");
        json_str(stdout, segkind_name(si.kind));
        printf(", \"layer\": %d, \"expert\": %d, \"file_offset\": %llu, \"plain_bytes\": %llu, "
               "\"stored_bytes\": %llu, \"chunks\": %u}",
               si.layer, si.expert, (unsigned long long)si.file_offset, (unsigned long long)si.plain_bytes,
               (unsigned long long)si.stored_bytes, si.n_chunks);
    }
    printf("\n  ]");

    /* ---- totals ---- */
    seg_totals t = segment_totals(m);
    printf(",\n  \"totals\": {\"dense_bytes\": %llu, \"expert_bytes\": %llu, \"expert_segments\": %zu, "
           "\"dense_segments\": %zu, \"stored_bytes\": %llu}",
           (unsigned long long)t.dense_bytes, (unsigned long long)t.expert_bytes, t.n_expert, t.n_dense,
           (unsigned long long)t.stored_bytes);

    /* ---- by class ---- */
    class_totals ct = class_totals_of(m);
    uint64_t all = ct.params[0] + ct.params[1] + ct.params[2];
    printf(",\n  \"classes\": {");
    for (int k = 0; k < 3; k++) {
        char fmts[64];
        class_dtypes(ct.dtypes[k], fmts, sizeof fmts);
        printf("%s\"%s\": {\"parameters\": %llu, \"parameter_share\": ", k ? ", " : "", class_names[k],
               (unsigned long long)ct.params[k]);
        json_float(stdout, all ? (double)ct.params[k] / (double)all : 0.0);
        printf(", \"bytes\": %llu, \"file_share\": ", (unsigned long long)ct.bytes[k]);
        json_float(stdout, file_bytes ? (double)ct.bytes[k] / (double)file_bytes : 0.0);
        printf(", \"formats\": ");
        json_str(stdout, fmts);
        printf("}");
    }
    printf("}");
    /* the pruning record, as a string (the file's bytes, not re-parsed here) */
    const char *pj = NULL;
    size_t pjl = 0;
    if (ds_model_get_pruning(m, &pj, &pjl) == DS_OK && pj) {
        char *z = malloc(pjl + 1);
        if (z) {
            memcpy(z, pj, pjl);
            z[pjl] = 0;
            printf(",\n  \"pruning\": ");
            json_str(stdout, z);
            free(z);
        }
    }
}

static int cmd_inspect(int argc, char **argv) {
    const char *cmd = "inspect";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    key_opts ko = {0};
    const char *path = NULL, *base_path = NULL, *akey_path = NULL, *mem_s = NULL, *ctx_s = NULL,
               *seqs_s = NULL;
    int json = 0, verbose = 0, plan = 0;

    /* ---- parse the command line ---- */
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            int rc = model_path_positional(cmd, &path, argv[a.i], "");
            if (rc) return rc;
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(inspect_help, stdout);
            return 0;
        } else if (model_path_option(&a, &path) || key_option(&a, &ko, 0)) {
        } else if (is_opt(&a, "--base", &v)) {
            set_once(&a, &base_path, v, "--base");
        } else if (is_opt(&a, "--adapter-key-file", &v)) {
            set_once(&a, &akey_path, v, "--adapter-key-file");
        } else if (is_flag(&a, "--json")) {
            json = 1;
        } else if (is_flag(&a, "--plan")) {
            plan = 1;
        } else if (is_opt(&a, "--mem", &v)) {
            set_once(&a, &mem_s, v, "--mem");
        } else if (is_opt(&a, "--ctx", &v) || is_opt(&a, "-c", &v)) {
            set_once(&a, &ctx_s, v, "--ctx");
        } else if (is_opt(&a, "--seqs", &v)) {
            set_once(&a, &seqs_s, v, "--seqs");
        } else if (is_flag(&a, "--verbose") || is_flag(&a, "-v")) {
            verbose = 1;
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (!path) return usage_error(cmd, "missing <model.dsm>");
    int rc = key_opts_check(cmd, &ko);
    if (rc) return rc;
    if (akey_path && !base_path) return usage_error(cmd, "--adapter-key-file goes with --base (an adapter)");
    uint64_t mem = 0, nctx = 0, nseq = 0;
    if ((mem_s || ctx_s || seqs_s) && !plan)
        return usage_error(cmd, "%s goes with --plan", mem_s ? "--mem" : ctx_s ? "--ctx" : "--seqs");
    if (plan && base_path) return usage_error(cmd, "--plan is for a model, not an adapter (--base)");
    if (mem_s && (!parse_size(mem_s, &mem) || mem == 0))
        return usage_error(cmd,
                           "--mem needs a size above 0 such as 8G, 8192M or 8589934592 (K, M, G, T: powers of "
                           "1024; KB, MB, GB, TB: of 1000), not '%s'",
                           mem_s);
    if (ctx_s && (!parse_u64(ctx_s, 1u << 22, &nctx) || nctx == 0))
        return usage_error(cmd, "--ctx needs a whole number of tokens from 1 to 4194304, not '%s'", ctx_s);
    if (seqs_s && (!parse_u64(seqs_s, 256, &nseq) || nseq == 0))
        return usage_error(cmd, "--seqs needs a whole number from 1 to 256, not '%s'", seqs_s);
    if (base_path) {
        /* an adapter, over its base: ds lora info */
        char *largv[12];
        int n = 0;
        largv[n++] = "lora";
        largv[n++] = "info";
        largv[n++] = (char *)path;
        largv[n++] = "--base";
        largv[n++] = (char *)base_path;
        if (ko.key_file) largv[n++] = "--key-file", largv[n++] = (char *)ko.key_file;
        if (ko.pass_env) largv[n++] = "--passphrase-env", largv[n++] = (char *)ko.pass_env;
        if (akey_path) largv[n++] = "--adapter-key-file", largv[n++] = (char *)akey_path;
        if (json) largv[n++] = "--json";
        largv[n] = NULL;
        return ds_cmd_lora(n, largv);
    }

    /* ---- public header: needs no key ---- */
    ds_file_info fi;
    char hint[PATH_HINT_MAX];
    ds_status st = ds_file_info_read(path, &fi);
    if (st != DS_OK) return fail(cmd, "%s%s", errmsg(st), model_path_hint(path, hint, sizeof hint));

    int have_secret = ko.key_file || ko.pass_env;
    int full = have_secret || fi.cipher == DS_CIPHER_NONE;
    if (plan && !full)
        return fail(cmd, "--plan needs the key: the segment directory is in the sealed metadata (give --key-file F "
                         "or --passphrase-env VAR)");
    secret sec;
    memset(&sec, 0, sizeof sec);
    ds_model *m = NULL;
    ds_model_config cfg;
    /* the library's open notices are chatter here; warnings are not */
    log_ctx lc = {cmd, verbose ? DS_LOG_DEBUG : DS_LOG_WARN, NULL};

    /* ---- with a key (or plaintext): open metadata-only ---- */
    if (full) {
        if (have_secret && secret_load(cmd, &ko, &sec)) {
            secret_wipe(&sec);
            return EXIT_FAILURE;
        }
        m = open_meta(cmd, path, &fi, &sec, ko.allow_plaintext, &lc, 0);
        secret_wipe(&sec);
        if (!m) return EXIT_FAILURE;
        st = ds_model_get_config(m, &cfg);
        if (st != DS_OK) {
            rc = fail(cmd, "%s", errmsg(st));
            ds_model_close(m);
            return rc;
        }
    }

    /* ---- print ---- */
    /* an open checked the header's MAC; what it proves depends on the cipher */
    const char *auth = !m ? "not checked (no key)"
                       : fi.cipher == DS_CIPHER_NONE ? "unauthenticated (plaintext file: checksum only)"
                                                     : "authenticated with the key";
    if (plan) {
        ds_memory_plan mp;
        ds_memory_plan_params pp = ds_memory_plan_default_params();
        pp.n_ctx = (int)nctx;
        pp.n_seq = (int)nseq;
        pp.mem_bytes = mem;
        st = ds_model_memory_plan(m, &pp, &mp);
        if (st != DS_OK) {
            rc = fail(cmd, "%s", errmsg(st));
            ds_model_close(m);
            return rc;
        }
        if (json) {
            print_header_json(path, &fi, auth);
            print_plan_json(&mp);
            printf(",\n  \"locked\": false\n}\n");
        } else {
            print_plan_text(path, &mp);
        }
    } else if (json) {
        print_header_json(path, &fi, auth);
        if (m) print_model_json(m, &cfg, fi.file_bytes);
        printf(",\n  \"locked\": %s\n}\n", m ? "false" : "true");
    } else {
        print_header_text(path, &fi);
        printf("header           %s\n", auth);
        if (m) print_model_text(m, &cfg, fi.file_bytes);
        else printf("\n(encrypted: give --key-file F or --passphrase-env VAR to see the config, tensors and segments)\n");
    }
    ds_model_close(m);
    if (fflush(stdout) != 0) return fail(cmd, "writing to stdout: %s", strerror(errno));
    return 0;
}

/* ==== ds verify =========================================================== */

static const char verify_help[] =
    "usage: ds verify <model.dsm> [--key-file F | --passphrase-env VAR] [--threads N]\n"
    "\n"
    "Authenticates the header and every chunk of every segment (nothing\n"
    "decrypted is kept). Exits 0 only when all pass; otherwise names the first\n"
    "bad segment. With a key, a plaintext (unencrypted) file is refused.\n"
    "  -m, --model FILE  the model, instead of the positional <model.dsm>\n"
    "  -t, --threads N   worker threads (default 0 = all online CPUs)\n"
    "  --allow-plaintext with a key, verify a plaintext file anyway\n"
    "  -v, --verbose     also print the library's notices\n";

static int cmd_verify(int argc, char **argv) {
    const char *cmd = "verify";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    key_opts ko = {0};
    const char *path = NULL, *threads_s = NULL;
    int verbose = 0;

    /* ---- parse the command line ---- */
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            int rc = model_path_positional(cmd, &path, argv[a.i], "");
            if (rc) return rc;
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(verify_help, stdout);
            return 0;
        } else if (model_path_option(&a, &path) || key_option(&a, &ko, 0)) {
        } else if (is_opt(&a, "--threads", &v) || is_opt(&a, "-t", &v)) {
            set_once(&a, &threads_s, v, "--threads");
        } else if (is_flag(&a, "--verbose") || is_flag(&a, "-v")) {
            verbose = 1;
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (!path) return usage_error(cmd, "missing <model.dsm>");
    int rc = key_opts_check(cmd, &ko);
    if (rc) return rc;
    uint64_t threads = 0;
    if (threads_s && !parse_u64(threads_s, 4096, &threads))
        return usage_error(cmd, "--threads needs a whole number from 0 to 4096, not '%s'", threads_s);

    /* ---- header, key, open ---- */
    ds_file_info fi;
    char hint[PATH_HINT_MAX];
    ds_status st = ds_file_info_read(path, &fi);
    if (st != DS_OK) return fail(cmd, "%s%s", errmsg(st), model_path_hint(path, hint, sizeof hint));
    int have_secret = ko.key_file || ko.pass_env;
    if (fi.cipher != DS_CIPHER_NONE && !have_secret)
        return fail(cmd, "%s is encrypted: give --key-file F or --passphrase-env VAR", path);

    secret sec;
    memset(&sec, 0, sizeof sec);
    if (have_secret && secret_load(cmd, &ko, &sec)) {
        secret_wipe(&sec);
        return EXIT_FAILURE;
    }
    progress prog;
    progress_init(&prog, "segments", "checked");
    log_ctx lc = {cmd, verbose ? DS_LOG_DEBUG : DS_LOG_WARN, &prog};
    ds_model *m = open_meta(cmd, path, &fi, &sec, ko.allow_plaintext, &lc, (int)threads);
    secret_wipe(&sec);
    if (!m) {
        progress_destroy(&prog);
        return EXIT_FAILURE;
    }

    /* ---- authenticate everything ---- */
    size_t nseg = ds_model_segment_count(m);
    seg_totals t = segment_totals(m);
    install_signals();
    double t0 = now_s();
    prog.t0 = t0;
    st = ds_model_verify(m, (int)threads, progress_cb, &prog);
    double el = now_s() - t0;
    progress_destroy(&prog);
    if (st != DS_OK) {
        /* the message names the first bad segment; copy it before close */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", errmsg(st));
        if (!strcmp(msg, ds_status_string(st)) && ds_model_errmsg(m)[0])
            snprintf(msg, sizeof msg, "%s", ds_model_errmsg(m));
        ds_model_close(m);
        if (st == DS_ERR_CANCELLED && g_interrupted) return fail(cmd, "interrupted");
        return fail(cmd, "%s", msg);
    }
    ds_model_close(m);
    printf("verified %zu segments, %.1f MB in %.2f s (%.2f GB/s)\n", nseg, mb(t.stored_bytes), el,
           el > 0 ? (double)t.stored_bytes / 1e9 / el : 0.0);
    printf("header %s\n", fi.cipher == DS_CIPHER_NONE ? "checksum ok (plaintext file: not authenticated)"
                                                      : "authenticated with the key");
    return 0;
}

/* ==== Inference commands: shared options ================================== */
/*
 * run, chat, tokenize and logits open a model the same way, from the model
 * options of tools/cli.h (model_option, model_opts_check).
 */

/* Opens a model for the inference commands: checks that an encrypted file
 * has a secret, loads it, opens (with or without the weights) and wipes the
 * secret. Prints the message and returns NULL on failure. */
static ds_model *open_model_lora(const char *cmd, const char *path, const model_opts *o, int load_weights, log_ctx *lc,
                                 const lora_opts *lo, lora_set *ls) {
    ds_file_info fi;
    ds_status st = ds_file_info_read(path, &fi);
    if (st != DS_OK) {
        char hint[PATH_HINT_MAX];
        fail(cmd, "%s%s", errmsg(st), model_path_hint(path, hint, sizeof hint));
        return NULL;
    }
    int have_secret = o->ko.key_file || o->ko.pass_env;
    if (fi.cipher != DS_CIPHER_NONE && !have_secret) {
        fail(cmd, "%s is encrypted: give --key-file F or --passphrase-env VAR", path);
        return NULL;
    }
    secret sec;
    memset(&sec, 0, sizeof sec);
    /* loaded for a plaintext file too: given a key, the library refuses
     * plaintext unless --allow-plaintext (model_opts_params passes it) */
    if ((o->ko.key_file || o->ko.pass_env) && secret_load(cmd, &o->ko, &sec)) {
        secret_wipe(&sec);
        return NULL;
    }
    ds_model_params mp = ds_model_default_params();
    ds_model *m = NULL;
    mp.load_weights = load_weights;
    model_opts_params(o, &mp);
    mp.log = log_cb;
    mp.log_user = lc;
    secret_params(&sec, &mp);
    st = ds_model_open(&m, path, &mp);
    if (st == DS_OK && lo && lo->n) {
        /* the adapters, with the model's key unless --lora-key-file */
        if (lora_open(cmd, lo, m, &sec, o->ko.allow_plaintext, ls)) {
            secret_wipe(&sec);
            ds_model_close(m);
            return NULL;
        }
    }
    secret_wipe(&sec);
    if (st != DS_OK) {
        const char *msg = errmsg(st), *hint = "";
        if (fi.kdf == DS_KDF_ARGON2ID && o->ko.key_file && !strstr(msg, "--passphrase-env"))
            hint = " (the file is sealed with a passphrase: use --passphrase-env VAR)";
        else if (fi.kdf == DS_KDF_RAW_KEY && o->ko.pass_env && !strstr(msg, "--key-file"))
            hint = " (the file is sealed with a key: use --key-file F)";
        fail(cmd, "%s%s", msg, hint);
        return NULL;
    }
    return m;
}

static ds_model *open_model(const char *cmd, const char *path, const model_opts *o, int load_weights, log_ctx *lc) {
    return open_model_lora(cmd, path, o, load_weights, lc, NULL, NULL);
}

/* A context of n_ctx tokens on m. Returns 0, or EXIT_FAILURE (message
 * printed). */
static int new_context(const char *cmd, ds_model *m, const model_opts *o, int n_ctx, ds_context **c) {
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_threads = o->threads;
    ds_status st = ds_context_new(c, m, &cp);
    if (st != DS_OK) return fail(cmd, "%s", errmsg(st));
    /* allowed (YaRN-style scaling may carry a model further), but said */
    int n = ds_context_n_ctx(*c), trained = ctx_beyond_trained(m, n);
    if (trained)
        fprintf(stderr, "ds %s: warning: a context of %d tokens is beyond the %d positions the model was trained for "
                "(max_position_embeddings); what it makes past position %d is unreliable\n", cmd, n, trained, trained);
    return 0;
}

/* Opens the model with its weights, the adapters of lo (--lora) into ls,
 * and a context on it applying them. Returns 0, or EXIT_FAILURE with
 * nothing left open. */
static int open_inference(const char *cmd, const char *path, const model_opts *o, int n_ctx, log_ctx *lc,
                          const lora_opts *lo, lora_set *ls, ds_model **m, ds_context **c) {
    memset(ls, 0, sizeof *ls);
    *m = open_model_lora(cmd, path, o, 1, lc, lo, ls);
    *c = NULL;
    if (!*m) return EXIT_FAILURE;
    int rc = new_context(cmd, *m, o, n_ctx, c);
    if (!rc) rc = lora_apply(cmd, ls, *c);
    if (rc) {
        ds_context_free(*c);
        *c = NULL;
        lora_close(ls);
        ds_model_close(*m);
        *m = NULL;
    }
    return rc;
}

/* Frees what open_inference made: the context, then the adapters, then the
 * model (an adapter holds the model, a context's sequences the adapters). */
static void close_inference(ds_context *c, lora_set *ls, ds_model *m) {
    ds_context_free(c);
    lora_close(ls);
    ds_model_close(m);
}

/* ==== Sampling options (run, chat) ======================================== */

/* Most -r/--reverse-prompt strings a command line may give. */
#define MAX_REVERSE 16

typedef struct sample_opts {
    const char *n_s, *temp_s, *top_k_s, *top_p_s, *min_p_s, *rep_s, *rep_n_s, *freq_s, *pres_s, *seed_s;
    int ignore_eos;                      /* --ignore-eos */
    const char *rev[MAX_REVERSE];        /* -r/--reverse-prompt, in order */
    int n_rev;
    uint64_t seed;                       /* the seed used (set by sample_opts_make) */
} sample_opts;

/* -n, -s, -r and --n-predict are llama.cpp's spellings. */
static int sample_option(argscan *a, sample_opts *o) {
    const char *v;
    if (is_opt(a, "-n", &v) || is_opt(a, "--n-predict", &v) || is_opt(a, "--max-tokens", &v))
        return set_once(a, &o->n_s, v, "-n"), 1;
    if (is_flag(a, "--ignore-eos")) return o->ignore_eos = 1, 1;
    if (is_opt(a, "-r", &v) || is_opt(a, "--reverse-prompt", &v)) {
        if (a->bad) return 1;
        if (!v[0]) {
            a->bad = 1;
            usage_error(a->cmd, "-r/--reverse-prompt needs a non-empty string");
        } else if (o->n_rev == MAX_REVERSE) {
            a->bad = 1;
            usage_error(a->cmd, "at most %d -r/--reverse-prompt strings", MAX_REVERSE);
        } else {
            o->rev[o->n_rev++] = v;
        }
        return 1;
    }
    if (is_opt(a, "-s", &v)) return set_once(a, &o->seed_s, v, "--seed"), 1;
    if (is_opt(a, "--temp", &v)) return set_once(a, &o->temp_s, v, "--temp"), 1;
    if (is_opt(a, "--top-k", &v)) return set_once(a, &o->top_k_s, v, "--top-k"), 1;
    if (is_opt(a, "--top-p", &v)) return set_once(a, &o->top_p_s, v, "--top-p"), 1;
    if (is_opt(a, "--min-p", &v)) return set_once(a, &o->min_p_s, v, "--min-p"), 1;
    if (is_opt(a, "--repeat-penalty", &v)) return set_once(a, &o->rep_s, v, "--repeat-penalty"), 1;
    if (is_opt(a, "--repeat-last-n", &v)) return set_once(a, &o->rep_n_s, v, "--repeat-last-n"), 1;
    if (is_opt(a, "--frequency-penalty", &v)) return set_once(a, &o->freq_s, v, "--frequency-penalty"), 1;
    if (is_opt(a, "--presence-penalty", &v)) return set_once(a, &o->pres_s, v, "--presence-penalty"), 1;
    if (is_opt(a, "--seed", &v)) return set_once(a, &o->seed_s, v, "--seed"), 1;
    return 0;
}

/* Strict float parse: a whole finite decimal number, nothing around it. */
static int parse_float(const char *s, float *out) {
    if (!s || !*s || !(s[0] == '-' || s[0] == '+' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) return 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || !isfinite(v) || v > 3.4e38 || v < -3.4e38) return 0;
    *out = (float)v;
    return 1;
}

/* A seed when none is given: differs from run to run. */
static uint64_t fresh_seed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 40);
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

/* Builds the sampler and the token budget. Bad values are usage errors
 * (exit 2): the library's validation names the parameter. */
static int sample_opts_make(const char *cmd, sample_opts *o, int default_n, ds_sampler **out, int *max_tokens) {
    ds_sampler_params sp = ds_sampler_default_params();
    uint64_t v;
    *out = NULL;
    *max_tokens = default_n;
    if (o->n_s) {
        /* -1 (llama.cpp's): no limit but the end of sequence and the context */
        if (!strcmp(o->n_s, "-1")) *max_tokens = -1;
        else if (parse_u64(o->n_s, INT32_MAX, &v)) *max_tokens = (int)v;
        else
            return usage_error(cmd, "-n needs a whole number of tokens, or -1 for no limit (until the end of "
                                    "sequence or a full context), not '%s'", o->n_s);
    }
    struct {
        const char *s, *name;
        float *dst;
    } fl[] = {{o->temp_s, "--temp", &sp.temperature},          {o->top_p_s, "--top-p", &sp.top_p},
              {o->min_p_s, "--min-p", &sp.min_p},              {o->rep_s, "--repeat-penalty", &sp.repetition_penalty},
              {o->freq_s, "--frequency-penalty", &sp.frequency_penalty},
              {o->pres_s, "--presence-penalty", &sp.presence_penalty}};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
        if (fl[i].s && !parse_float(fl[i].s, fl[i].dst))
            return usage_error(cmd, "%s needs a number, not '%s'", fl[i].name, fl[i].s);
    if (o->top_k_s) {
        if (!parse_u64(o->top_k_s, INT32_MAX, &v))
            return usage_error(cmd, "--top-k needs a whole number (0 = off), not '%s'", o->top_k_s);
        sp.top_k = (int)v;
    }
    if (o->rep_n_s) {
        if (!parse_u64(o->rep_n_s, INT32_MAX, &v))
            return usage_error(cmd, "--repeat-last-n needs a whole number (0 = all), not '%s'", o->rep_n_s);
        sp.penalty_last_n = (int)v;
    }
    if (o->seed_s) {
        if (!parse_u64(o->seed_s, UINT64_MAX, &v))
            return usage_error(cmd, "--seed needs a whole number, not '%s'", o->seed_s);
        sp.seed = v;
    } else {
        sp.seed = fresh_seed();
    }
    o->seed = sp.seed;
    ds_status st = ds_sampler_new(out, &sp);
    if (st == DS_ERR_INVALID_ARG) return usage_error(cmd, "%s", errmsg(st));
    if (st != DS_OK) return fail(cmd, "%s", errmsg(st));
    return 0;
}

/* ==== Streaming output ==================================================== */

/* What the token callback of run and chat carries. */
typedef struct stream {
    const char *cmd;
    int write_failed;
    char *text;               /* the text so far (NUL-terminated) when keep, else NULL */
    size_t len, cap;
    int keep;                 /* collect into text (chat's reply, run --json, -r) */
    int oom;
    int quiet;                /* print nothing (run --json) */
    const char *const *rev;   /* -r strings: stop once the text ends with one */
    int n_rev;
    int rev_hit;              /* index of the one that stopped it, or -1 */
    int32_t *ids;             /* the generated ids when keep_ids (run --json) */
    size_t n_ids, cap_ids;
    int keep_ids;
} stream;

static void stream_init(stream *s, const char *cmd) {
    memset(s, 0, sizeof *s);
    s->cmd = cmd;
    s->rev_hit = -1;
}

static void stream_free(stream *s) {
    free(s->text);
    free(s->ids);
    s->text = NULL;
    s->ids = NULL;
}

/* Appends len bytes to the kept text. 0 when out of memory. */
static int stream_keep(stream *s, const char *piece, size_t len) {
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + len + 1) cap *= 2;
        char *p = realloc(s->text, cap);
        if (!p) return 0;
        s->text = p;
        s->cap = cap;
    }
    memcpy(s->text + s->len, piece, len);
    s->len += len;
    s->text[s->len] = '\0';
    return 1;
}

/* The first -r string that ends within the text's last `added` bytes (an
 * occurrence that the piece just added completed), or -1. Like llama.cpp's
 * reverse prompt, the string counts when a token carries more text after it. */
static int stream_reverse_hit(const stream *s, size_t added) {
    for (int i = 0; i < s->n_rev; i++) {
        size_t L = strlen(s->rev[i]);
        if (L > s->len) continue;
        /* occurrences ending after len - added: starts from len - added - L + 1 */
        size_t from = s->len - added + 1 > L ? s->len - added + 1 - L : 0;
        for (size_t q = from; q + L <= s->len; q++)
            if (!memcmp(s->text + q, s->rev[i], L)) return i;
    }
    return -1;
}

/* ds_token_fn: prints the piece at once (streaming) and keeps it where
 * asked. A -r string at the end of the text or Ctrl-C stops the generation. */
static int on_piece(void *user, int32_t token, const char *piece, size_t len) {
    stream *s = user;
    if (token >= 0 && s->keep_ids) {
        if (s->n_ids == s->cap_ids) {
            size_t cap = s->cap_ids ? s->cap_ids * 2 : 64;
            int32_t *p = realloc(s->ids, cap * sizeof *p);
            if (!p) {
                s->oom = 1;
                return 1;
            }
            s->ids = p;
            s->cap_ids = cap;
        }
        s->ids[s->n_ids++] = token;
    }
    if (len) {
        if (!s->quiet && (fwrite(piece, 1, len, stdout) != len || fflush(stdout) != 0)) {
            s->write_failed = 1;
            return 1;
        }
        if (s->keep || s->n_rev) {
            if (!stream_keep(s, piece, len)) {
                s->oom = 1;
                return 1;
            }
            if (s->n_rev && (s->rev_hit = stream_reverse_hit(s, len)) >= 0) return 1;
        }
    }
    return g_interrupted ? 1 : 0;
}

/* ids[1..got] hold a prompt's tokens, ids[0] is free: one leading BOS where
 * the tokenizer adds one and the text did not begin with it, else the tokens
 * moved down. The prompt's length. */
static size_t place_bos(const ds_tokenizer *tok, int32_t *ids, size_t got) {
    int32_t bos = ds_tokenizer_adds_bos(tok) ? ds_tokenizer_bos(tok) : -1;
    if (bos >= 0 && !(got > 0 && ids[1] == bos)) {
        ids[0] = bos;
        return got + 1;
    }
    memmove(ids, ids + 1, got * sizeof *ids);
    return got;
}

/* Tokenizes a prompt as ds_generate does: the text as it is (token texts in
 * it are tokens), with one leading BOS where the tokenizer adds one (not
 * doubled when the text begins with the BOS token's text). *ids is
 * malloc'd. */
static ds_status encode_prompt(const ds_tokenizer *tok, const char *text, int32_t **ids, size_t *n) {
    size_t len = strlen(text), cap = len + 2, got = 0;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return DS_ERR_NOMEM;
    /* byte-level BPE: at most one id per byte, so one pass fits */
    ds_status st = ds_tokenizer_encode(tok, text, len, 0, *ids + 1, cap - 1, &got);
    if (st != DS_OK) {
        free(*ids);
        *ids = NULL;
        return st;
    }
    *n = place_bos(tok, *ids, got);
    return DS_OK;
}

/* The generation loop of run and chat on a tokenized prompt: continues the
 * context with it (only what follows the prefix the context holds is
 * evaluated), then generates at most max_tokens tokens (-1: no limit but the
 * end of sequence and the context; 0: none, the prompt is only evaluated,
 * which stops with DS_STOP_LENGTH). `echo` (may be NULL) is written to
 * stdout once the prompt is in, before the first generated text. */
static ds_status generate_ids(ds_context *c, ds_sampler *smp, const int32_t *ids, size_t n, int max_tokens,
                              int ignore_eos, const char *echo, stream *out, ds_generate_stats *gs) {
    ds_generate_params gp = ds_generate_default_params();
    gp.max_tokens = max_tokens > 0 ? max_tokens : 0;   /* the library's 0 is "no limit" */
    gp.on_token = on_piece;
    gp.user = out;
    gp.ignore_eos = ignore_eos;
    ds_generator *g = NULL;
    memset(gs, 0, sizeof *gs);
    gs->n_prompt = n > INT32_MAX ? INT32_MAX : (int)n;
    ds_status st = ds_generator_new(&g, c, smp, ids, n, &gp);
    if (st != DS_OK) return st;
    if (echo && echo[0] && !out->quiet) {
        size_t len = strlen(echo);
        if (fwrite(echo, 1, len, stdout) != len || fflush(stdout) != 0) out->write_failed = 1;
    }
    while (st == DS_OK && max_tokens != 0 && !out->write_failed && ds_generator_stop_reason(g) == DS_STOP_NONE)
        st = ds_generator_next(g, NULL, NULL);
    ds_generator_stats(g, gs);
    if (st == DS_OK && max_tokens == 0 && gs->stop_reason == DS_STOP_NONE) gs->stop_reason = DS_STOP_LENGTH;
    ds_generator_free(g);
    return st;
}

/* The prompt rate counts the tokens evaluated (a chat turn reuses the ones
 * the context already held). */
static void print_stats(const ds_generate_stats *gs) {
    fflush(stdout);   /* the text first, then the stats line */
    fprintf(stderr, "prompt: %d tokens, %.2f tok/s; generated: %d tokens, %.2f tok/s\n", gs->n_prompt,
            gs->prompt_seconds > 0 ? gs->n_evaluated / gs->prompt_seconds : 0.0, gs->n_generated,
            gs->generate_seconds > 0 ? gs->n_generated / gs->generate_seconds : 0.0);
}

/* ds_abort_fn: Ctrl-C also stops a prompt pass under way. */
static int interrupted(void *user) {
    (void)user;
    return g_interrupted ? 1 : 0;
}

/* ==== ds run ============================================================== */

/* The whole of FILE ("-": stdin) as a string; NULL (message printed) when it
 * cannot be read or holds a NUL byte. `what` names the contents in that
 * message ("the prompt"). */
static char *read_text(const char *cmd, const char *file, const char *what) {
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f) {
        fail(cmd, "%s: %s", file, strerror(errno));
        return NULL;
    }
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - 1 - len, f);
        if (len < cap - 1) break;
        char *b2 = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!b2) free(buf);
        buf = b2;
        cap *= 2;
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || err || memchr(buf, 0, len)) {
        if (buf && !err) fail(cmd, "%s: %s contains a NUL byte", file, what);
        else fail(cmd, "%s: %s", file, !buf ? "out of memory" : "read error");
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

/* Why a generation stopped: the library's name for it, except where the
 * command knows more (a -r string; Ctrl-C or SIGTERM). */
static const char *stop_name(const ds_generate_stats *gs, const stream *out) {
    if (out->rev_hit >= 0) return "reverse_prompt";
    if (gs->stop_reason == DS_STOP_ABORT || (gs->stop_reason == DS_STOP_CALLBACK && g_interrupted))
        return "interrupted";
    return ds_stop_reason_name(gs->stop_reason);
}

/* "stopped: NAME (what it means)" on stderr, after the statistics line. */
static void print_stop(const ds_generate_stats *gs, const stream *out, int max_tokens, int n_ctx) {
    const char *name = stop_name(gs, out);
    fflush(stdout);
    fprintf(stderr, "stopped: %s", name);
    if (out->rev_hit >= 0) fprintf(stderr, " (the text ends with the reverse prompt '%s')", out->rev[out->rev_hit]);
    else if (!strcmp(name, "interrupted")) fprintf(stderr, " (a stop signal: Ctrl-C or SIGTERM)");
    else if (gs->stop_reason == DS_STOP_EOS) fprintf(stderr, " (the model's end-of-sequence token)");
    else if (gs->stop_reason == DS_STOP_LENGTH && max_tokens == 0) fprintf(stderr, " (-n 0: the prompt only)");
    else if (gs->stop_reason == DS_STOP_LENGTH) fprintf(stderr, " (-n %d tokens generated)", max_tokens);
    else if (gs->stop_reason == DS_STOP_CONTEXT_FULL)
        fprintf(stderr, " (the context of %d tokens is full; -c N gives a larger one)", n_ctx);
    fputc('\n', stderr);
}

static const char run_help[] =
    "usage: ds run <model.dsm> [--key-file F | --passphrase-env VAR] -p PROMPT | -f FILE [options]\n"
    "       ds run -m <model.dsm> ... (the same)\n"
    "\n"
    "Generates a continuation of PROMPT, streaming it to stdout as it comes after\n"
    "the prompt itself (as llama.cpp does; --no-display-prompt leaves it out), and\n"
    "ends with two lines on stderr:\n"
    "    prompt: N tokens, X tok/s; generated: N tokens, Y tok/s\n"
    "    stopped: REASON (what it means)\n"
    "REASON is eos (the model's end-of-sequence token), length (-n tokens\n"
    "generated), context_full (the context is full), reverse_prompt (-r) or\n"
    "interrupted (Ctrl-C).\n"
    "Options (llama.cpp's spellings beside ours):\n"
    "  -m, --model FILE          the model, instead of the positional <model.dsm>\n"
    "  -p, --prompt TEXT         the prompt (this or -f is required)\n"
    "  -f, --file, --prompt-file FILE  the prompt is the contents of FILE (- = stdin), read\n"
    "                            once the model is open\n"
    "  -n, --n-predict, --max-tokens N  most tokens to generate (default 128; -1 = until the\n"
    "                            end of sequence or a full context; 0 = only evaluate the prompt)\n"
    "  --ignore-eos              never sample the end-of-sequence token (go on to -n or a full context)\n"
    "  -r, --reverse-prompt STR  stop once the generated text ends with STR (it is printed); may\n"
    "                            be given up to 16 times\n"
    "  --no-display-prompt       print only the generated text, not the prompt before it\n"
    "  --display-prompt          print the prompt before the generated text (the default)\n"
    "  --json                    print nothing while generating, then one JSON object on stdout:\n"
    "                            model, adapters (path, scale), text, tokens (the generated ids),\n"
    "                            n_prompt, n_generated, stop_reason, reverse_prompt, seed,\n"
    "                            timings (prompt_n, prompt_ms,\n"
    "                            prompt_per_second, predicted_n, predicted_ms, predicted_per_second)\n"
    "  --temp T                  temperature; 0 = greedy (default 1)\n"
    "  --top-k K                 keep the K most likely tokens (0 = off, default)\n"
    "  --top-p P                 nucleus: the smallest set with mass P, 0 < P <= 1 (default 1 = off)\n"
    "  --min-p P                 drop tokens below P x the most likely one (default 0 = off)\n"
    "  --repeat-penalty R        CTRL-style repetition penalty (default 1 = off)\n"
    "  --repeat-last-n N         tokens the penalties look back over (default 64; 0 = all)\n"
    "  --frequency-penalty F     subtract F per earlier occurrence (default 0)\n"
    "  --presence-penalty F      subtract F once per token seen (default 0)\n"
    "  -s, --seed S              random seed (default: a fresh one each run)\n"
    "  -t, --threads N           compute threads (default 0 = all online CPUs)\n"
    "  -c, --ctx-size, --ctx N   context size in tokens (default min(4096, model maximum)); a\n"
    "                            context beyond the length the model was trained for\n"
    "                            (max_position_embeddings) is warned about\n"
    "  --cache-mb M              routed-expert cache budget in MiB (default 0 = all resident)\n"
    "  --evict lru|lfu           the cache's eviction: lfu (default) keeps the most used experts\n"
    "                            (counts halve over 32 tokens); lru the most recently used\n"
    "  --prefetch auto|always|off  decrypt the next layer's likely experts ahead: auto (default)\n"
    "                            when that overlaps with compute (ciphertext read from storage,\n"
    "                            or a CPU beyond --threads); always; or off (on demand only)\n"
    "  --device cpu|cuda         where the forward pass runs (default cpu; cuda needs a build\n"
    "                            with make CUDA=1 and a GPU, else it runs on the CPU and says so)\n"
    "  --gpu N                   CUDA device number (default 0)\n"
    "  --gpu-cache-mb M          VRAM expert cache in MiB (default 0 = all experts on the device)\n"
    "  --allow-plaintext         with a key, run a plaintext (unencrypted) file anyway; without\n"
    "                            it a plaintext file is refused when a key is given (anyone who\n"
    "                            can write the file could have made it)\n"
    "  --mlock                   lock the keys, the dense weights and the expert cache into RAM (never\n"
    "                            swapped); a warning says how much the OS refused (ulimit -l)\n"
    "  --exact-activations       products with Q8_0/Q4_0 weights take F32 activations instead of\n"
    "                            int8 ones quantized per block of 32 (slower; for checks)\n"
    "  --no-huge-pages           keep the weights and the expert cache in 4 KiB pages (default: they\n"
    "                            ask for 2 MiB transparent huge pages where the kernel has them)\n"
    "  -v, --verbose             also print the library's notices\n"
    "LoRA adapters (llama.cpp's spellings; files made by ds convert-lora for this very model):\n"
    "  --lora FILE               apply the adapter FILE (.dsa) at its trained scale; may be\n"
    "                            given up to 8 times (DS_MAX_ADAPTERS), with --lora-scaled\n"
    "  --lora-scaled FILE S      apply FILE with its scale times S (0 = as if absent, 1 = --lora)\n"
    "  --lora-key-file F         the adapters' key when they are not sealed with the model's\n"
    "                            (default: --key-file or --passphrase-env, the model's)\n";

/* The figures of a run, as llama.cpp's server names them in "timings". */
static void json_timings(FILE *f, const ds_generate_stats *gs) {
    fprintf(f, "{\"prompt_n\": %d, \"prompt_ms\": ", gs->n_evaluated);
    json_float(f, gs->prompt_seconds * 1e3);
    fprintf(f, ", \"prompt_per_second\": ");
    json_float(f, gs->prompt_seconds > 0 ? gs->n_evaluated / gs->prompt_seconds : 0.0);
    fprintf(f, ", \"predicted_n\": %d, \"predicted_ms\": ", gs->n_generated);
    json_float(f, gs->generate_seconds * 1e3);
    fprintf(f, ", \"predicted_per_second\": ");
    json_float(f, gs->generate_seconds > 0 ? gs->n_generated / gs->generate_seconds : 0.0);
    fputc('}', f);
}

static int cmd_run(int argc, char **argv) {
    const char *cmd = "run";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    model_opts mo;
    lora_opts lo;
    lora_set ls;
    sample_opts so;
    memset(&mo, 0, sizeof mo);
    memset(&lo, 0, sizeof lo);
    memset(&ls, 0, sizeof ls);
    memset(&so, 0, sizeof so);
    const char *path = NULL, *prompt = NULL, *prompt_file = NULL;
    int display = -1, json = 0;

    /* ---- parse the command line ---- */
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            int rc = model_path_positional(cmd, &path, argv[a.i], "; the prompt goes after -p");
            if (rc) return rc;
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(run_help, stdout);
            return 0;
        } else if (model_path_option(&a, &path)) {
        } else if (is_opt(&a, "-p", &v) || is_opt(&a, "--prompt", &v)) {
            set_once(&a, &prompt, v, "-p");
        } else if (is_opt(&a, "-f", &v) || is_opt(&a, "--file", &v) || is_opt(&a, "--prompt-file", &v)) {
            set_once(&a, &prompt_file, v, "-f");
        } else if (is_flag(&a, "--display-prompt") || is_flag(&a, "--no-display-prompt")) {
            int d = is_flag(&a, "--display-prompt");
            if (display >= 0 && display != d)
                return usage_error(cmd, "--display-prompt and --no-display-prompt exclude each other");
            display = d;
        } else if (is_flag(&a, "--json")) {
            json = 1;
        } else if (lora_option(&a, &lo)) {
        } else if (model_option(&a, &mo, MO_THREADS | MO_CTX | MO_CACHE) || sample_option(&a, &so)) {
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (!path) return usage_error(cmd, "missing <model.dsm> (or -m FILE)");
    if (!prompt && !prompt_file) return usage_error(cmd, "missing -p PROMPT (or -f FILE)");
    if (prompt && prompt_file) return usage_error(cmd, "-p and -f both give the prompt: use one");
    if (prompt_file && !prompt_file[0]) return usage_error(cmd, "-f needs a file name (- = stdin)");
    if (json && display == 1) return usage_error(cmd, "--json prints one JSON object: no --display-prompt with it");
    int rc = model_opts_check(cmd, &mo);
    if (rc) return rc;
    if ((rc = lora_opts_check(cmd, &lo)) != 0) return rc;
    ds_sampler *smp = NULL;
    int max_tokens = 0;
    if ((rc = sample_opts_make(cmd, &so, 128, &smp, &max_tokens)) != 0) return rc;

    /* ---- model and context ---- */
    log_ctx lc = {cmd, mo.verbose ? DS_LOG_DEBUG : DS_LOG_WARN, NULL};
    ds_model *m = NULL;
    ds_context *c = NULL;
    if ((rc = open_inference(cmd, path, &mo, mo.n_ctx, &lc, &lo, &ls, &m, &c)) != 0) {
        ds_sampler_free(smp);
        return rc;
    }
    /* the prompt from a file is read now, with the model open (a pipe's
     * writer can wait for this; the open may take long) */
    char *file_text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    stream out;
    stream_init(&out, cmd);
    if (prompt_file && !(prompt = file_text = read_text(cmd, prompt_file, "the prompt"))) {
        rc = EXIT_FAILURE;
        goto done;
    }
    ds_status st = encode_prompt(ds_model_tokenizer(m), prompt, &ids, &n_ids);
    if (st != DS_OK) {
        rc = fail(cmd, "the prompt: %s", st == DS_ERR_NOMEM ? "out of memory" : errmsg(st));
        goto done;
    }
    if (n_ids == 0) {
        rc = fail(cmd, "the prompt is empty and the model's tokenizer adds no BOS token");
        goto done;
    }

    /* ---- generate, streaming (or quietly, for --json) ---- */
    install_signals();
    ds_context_set_abort(c, interrupted, NULL);
    out.quiet = json;
    out.keep = json;
    out.keep_ids = json;
    out.rev = so.rev;
    out.n_rev = so.n_rev;
    ds_generate_stats gs;
    st = generate_ids(c, smp, ids, n_ids, max_tokens, so.ignore_eos, display != 0 ? prompt : NULL, &out, &gs);
    if (!json && (st == DS_OK || gs.n_generated > 0)) putchar('\n');
    if (st != DS_OK) {
        rc = fail(cmd, "%s", errmsg(st));
    } else if (out.write_failed) {
        rc = fail(cmd, "writing to stdout: %s", strerror(errno));
    } else if (out.oom) {
        rc = fail(cmd, "out of memory");
    } else {
        print_stats(&gs);
        print_stop(&gs, &out, max_tokens, ds_context_n_ctx(c));
        if (json) {
            printf("{\"model\": ");
            json_str(stdout, path);
            json_adapters(stdout, &ls);
            printf(", \"text\": ");
            json_str(stdout, out.text ? out.text : "");
            printf(", \"tokens\": [");
            for (size_t i = 0; i < out.n_ids; i++) printf("%s%ld", i ? ", " : "", (long)out.ids[i]);
            printf("], \"n_prompt\": %d, \"n_reused\": %d, \"n_generated\": %d, \"stop_reason\": ", gs.n_prompt,
                   gs.n_reused, gs.n_generated);
            json_str(stdout, stop_name(&gs, &out));
            printf(", \"reverse_prompt\": ");
            if (out.rev_hit >= 0) json_str(stdout, out.rev[out.rev_hit]);
            else printf("null");
            printf(", \"seed\": %llu, \"n_ctx\": %d, \"timings\": ", (unsigned long long)so.seed,
                   ds_context_n_ctx(c));
            json_timings(stdout, &gs);
            printf("}\n");
        }
    }
done:
    stream_free(&out);
    free(ids);
    close_inference(c, &ls, m);
    ds_sampler_free(smp);
    free(file_text);
    return rc;
}

/* ==== ds chat ============================================================= */

/* Line editing where the build found libedit (the Makefile defines
 * DS_HAVE_LIBEDIT); plain reads otherwise. */
#ifdef DS_HAVE_LIBEDIT
#include <editline/readline.h>
#define CHAT_EDITING "this build has it"
#else
#define CHAT_EDITING "this build has not: install libedit-dev and rebuild"
#endif

/* What /help prints; the help text lists them too. */
#define CHAT_COMMANDS                                                                          \
    "  /help         list these commands\n"                                                     \
    "  /reset        forget the conversation (the --system message stays)\n"                    \
    "  /save FILE    write the conversation to FILE as JSON: {\"messages\": [{\"role\": ...,\n" \
    "                \"content\": ...}, ...]}\n"                                                \
    "  /load FILE    replace the conversation with the one in FILE (as /save writes it)\n"       \
    "  /exit, /quit  quit (as does end of input)\n"

static const char chat_help[] =
    "usage: ds chat <model.dsm> [--key-file F | --passphrase-env VAR] [options]\n"
    "       ds chat -m <model.dsm> ... (the same)\n"
    "\n"
    "An interactive conversation: each line read from stdin is a user message;\n"
    "the reply streams to stdout. The conversation is rendered with the model's\n"
    "chat template; the messages are tokenized as text, so a line holding the text\n"
    "of a control token (end of sentence, the User and Assistant markers, ...) does\n"
    "not become that token. On a terminal, lines can be edited and recalled (arrow\n"
    "keys, history) where ds was built with libedit (" CHAT_EDITING "); there\n"
    "Ctrl-C at the prompt drops the line. Ctrl-C stops a reply; Ctrl-D ends the chat.\n"
    "Commands on a line of their own (an unknown /command is refused, not sent;\n"
    "start a line with // to send one that begins with /):\n"
    CHAT_COMMANDS
    "Options:\n"
    "  -m, --model FILE          the model, instead of the positional <model.dsm>\n"
    "  --system TEXT             a system message at the start of the conversation\n"
    "  -n, --n-predict N         most tokens per reply (default 512; -1 = until the end of\n"
    "                            sequence or a full context)\n"
    "  --ignore-eos              never sample the end-of-sequence token\n"
    "  -r, --reverse-prompt STR  end a reply once its text ends with STR (up to 16 times)\n"
    "  --stats                   a statistics line on stderr after each reply\n"
    "  --special-in-content      let control-token text in messages become the tokens\n"
    "  --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n,\n"
    "  --frequency-penalty, --presence-penalty, -s/--seed, -t/--threads, -c/--ctx-size/--ctx,\n"
    "  --cache-mb, --evict, --prefetch, --device, --gpu, --gpu-cache-mb, --allow-plaintext,\n"
    "  --mlock, --exact-activations, --no-huge-pages, -v/--verbose, --lora FILE,\n"
    "  --lora-scaled FILE S, --lora-key-file F\n"
    "                            as for ds run\n";

/* The conversation: messages with owned contents. */
typedef struct chat_log {
    ds_chat_message *msg;
    size_t n, cap;
} chat_log;

static int chat_push(chat_log *h, const char *role, const char *text) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        ds_chat_message *p = realloc(h->msg, cap * sizeof *p);
        if (!p) return 0;
        h->msg = p;
        h->cap = cap;
    }
    char *copy = strdup(text ? text : "");
    if (!copy) return 0;
    h->msg[h->n].role = role;
    h->msg[h->n].content = copy;
    h->n++;
    return 1;
}

static void chat_pop(chat_log *h) {
    if (h->n) free((char *)h->msg[--h->n].content);
}

/* Keeps the first `keep` messages (the system message). */
static void chat_truncate(chat_log *h, size_t keep) {
    while (h->n > keep) chat_pop(h);
}

/* Tokenizes the conversation with the generation prompt into *ids (*n of
 * them; capacity *cap): the template's markup with its tokens, the messages
 * as text unless flags say otherwise. One leading BOS, not doubled, as
 * ds_generate gives a prompt (the template renders it already). */
static ds_status chat_encode(const ds_tokenizer *tok, const chat_log *h, int flags, int32_t **ids, size_t *cap,
                             size_t *n) {
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t got = 0;
        ds_status st = *cap > 1 ? ds_tokenizer_encode_chat(tok, h->msg, h->n, 1, flags, *ids + 1, *cap - 1, &got)
                                : ds_tokenizer_encode_chat(tok, h->msg, h->n, 1, flags, NULL, 0, &got);
        if (st == DS_OK) {
            *n = place_bos(tok, *ids, got);
            return DS_OK;
        }
        if (st != DS_ERR_LIMIT) return st;
        size_t ncap = got + 2 > *cap * 2 ? got + 2 : *cap * 2;
        int32_t *p = realloc(*ids, ncap * sizeof *p);
        if (!p) return DS_ERR_NOMEM;
        *ids = p;
        *cap = ncap;
    }
    return DS_ERR_INTERNAL;
}

/* Reads one line of input into *line (malloc'd; *cap its size), without the
 * line break: through libedit, with history, on a terminal where the build
 * has it; else with getline, after a "> " prompt on a terminal. -1 at the
 * end of input (or Ctrl-C at the prompt). */
#ifdef DS_HAVE_LIBEDIT
/* rl_getc_function: a byte of input. Ctrl-C (SIGINT) comes out as Ctrl-U
 * (kill the line) and Return, so that libedit ends the read as usual with an
 * empty line and chat_read_line offers a new one; another stop signal
 * (SIGTERM) ends it as the end of input does. */
static int chat_getc(FILE *f) {
    static int pending_return;
    unsigned char c;
    if (pending_return) {
        pending_return = 0;
        return '\r';
    }
    for (;;) {
        ssize_t k = read(fileno(f), &c, 1);
        /* NUL bytes are dropped: libedit's decoder takes one for the start
         * of a character and swallows what follows (Ctrl-D included), and
         * Linux hands one over for a Ctrl-D typed while the terminal
         * changes mode */
        if (k == 1 && c == 0) continue;
        if (k == 1) return c;
        if (k < 0 && errno == EINTR && !g_interrupted) continue;
        if (k < 0 && errno == EINTR && g_interrupted == SIGINT) {
            pending_return = 1;
            return 0x15;
        }
        return EOF;
    }
}
#endif

static ssize_t chat_read_line(int tty, char **line, size_t *cap) {
#ifdef DS_HAVE_LIBEDIT
    if (tty) {
        static int ready;
        if (!ready) {
            /* our handlers, not libedit's: a stop signal interrupts the read */
            rl_catch_signals = 0;
            rl_getc_function = chat_getc;
            ready = 1;
        }
        char *l = readline("> ");
        while (g_interrupted == SIGINT) {
            /* Ctrl-C at the prompt dropped the line, as in a shell */
            free(l);
            g_interrupted = 0;
            l = readline("> ");
        }
        if (!l || g_interrupted) {
            free(l);
            return -1;   /* end of input, or SIGTERM */
        }
        if (l[0]) add_history(l);
        size_t n = strlen(l);
        if (n + 1 > *cap) {
            char *p = realloc(*line, n + 1);
            if (!p) {
                free(l);
                errno = ENOMEM;
                return -1;
            }
            *line = p;
            *cap = n + 1;
        }
        memcpy(*line, l, n + 1);
        free(l);
        return (ssize_t)n;
    }
#endif
    if (tty) {
        fputs("> ", stdout);
        fflush(stdout);
    }
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) return -1;
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = '\0';
    return n;
}

/* /save FILE: the conversation as JSON (tools/chat_file.h). Says what it did
 * on stderr; a failure is reported, not fatal. */
static void chat_save(const char *cmd, const chat_log *h, const char *file) {
    FILE *f = fopen(file, "w");
    if (!f) {
        fprintf(stderr, "ds %s: /save: %s: %s\n", cmd, file, strerror(errno));
        return;
    }
    int bad = chat_file_write(f, h->msg, h->n) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad) fprintf(stderr, "ds %s: /save: %s: %s\n", cmd, file, strerror(err));
    else fprintf(stderr, "(saved %zu message%s to %s)\n", h->n, h->n == 1 ? "" : "s", file);
}

/* /load FILE: replaces the conversation with the file's, once the whole file
 * has been read and checked; on any problem the conversation is left as it
 * was and the problem said. Returns 0, or -1 when out of memory (fatal). */
static int chat_load(const char *cmd, chat_log *h, size_t *keep, const char *file) {
    char *text = read_text(cmd, file, "the conversation");   /* says why on failure */
    if (!text) return 0;
    ds_chat_message *msg = NULL;
    size_t n = 0;
    char err[256];
    int rc = chat_file_parse(text, strlen(text), &msg, &n, err, sizeof err);
    free(text);
    if (rc == -2) return -1;
    if (rc) {
        fprintf(stderr, "ds %s: /load: %s: %s; the conversation is unchanged\n", cmd, file, err);
        return 0;
    }
    /* the contents move over as they are: the log owns malloc'd copies too */
    chat_truncate(h, 0);
    free(h->msg);
    h->msg = msg;
    h->n = h->cap = n;
    *keep = n > 0 && !strcmp(msg[0].role, "system");
    fprintf(stderr, "(loaded %zu message%s from %s)\n", n, n == 1 ? "" : "s", file);
    return 0;
}

/* A /command line: does it (or says why not). Returns 1 to quit, -1 on a
 * fatal failure (message printed), else 0. */
static int chat_command(const char *cmd, const char *line, chat_log *h, size_t *keep) {
    const char *arg = line + strcspn(line, " \t");
    size_t name_len = (size_t)(arg - line);
    arg += strspn(arg, " \t");
#define IS(name) (name_len == strlen(name) && !strncmp(line, name, name_len))
    if (IS("/exit") || IS("/quit")) return 1;
    if (IS("/help")) {
        fputs("commands:\n" CHAT_COMMANDS "a line that begins with // is sent with one / less\n", stderr);
    } else if (IS("/reset")) {
        chat_truncate(h, *keep);
        fprintf(stderr, "(conversation cleared)\n");
    } else if (IS("/save") || IS("/load")) {
        if (!arg[0]) fprintf(stderr, "ds %s: %.5s needs a file name: %.5s FILE\n", cmd, line, line);
        else if (!strcmp(arg, "-")) fprintf(stderr, "ds %s: %.5s takes a file, not - (stdin holds the chat)\n", cmd, line);
        else if (IS("/save")) chat_save(cmd, h, arg);
        else if (chat_load(cmd, h, keep, arg)) return fail(cmd, "out of memory"), -1;
    } else {
        fprintf(stderr, "ds %s: unknown command '%.*s' (not sent to the model); /help lists the commands, and a "
                "line that begins with // is sent with one / less\n", cmd, (int)(name_len > 64 ? 64 : name_len), line);
    }
#undef IS
    return 0;
}

static int cmd_chat(int argc, char **argv) {
    const char *cmd = "chat";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    model_opts mo;
    lora_opts lo;
    lora_set ls;
    sample_opts so;
    memset(&mo, 0, sizeof mo);
    memset(&lo, 0, sizeof lo);
    memset(&ls, 0, sizeof ls);
    memset(&so, 0, sizeof so);
    const char *path = NULL, *system = NULL;
    int stats = 0, chat_flags = 0;

    /* ---- parse the command line ---- */
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            int rc = model_path_positional(cmd, &path, argv[a.i], "");
            if (rc) return rc;
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(chat_help, stdout);
            return 0;
        } else if (model_path_option(&a, &path)) {
        } else if (is_opt(&a, "--system", &v)) {
            set_once(&a, &system, v, "--system");
        } else if (is_flag(&a, "--stats")) {
            stats = 1;
        } else if (is_flag(&a, "--special-in-content")) {
            chat_flags = DS_CHAT_SPECIAL_IN_CONTENT;
        } else if (lora_option(&a, &lo)) {
        } else if (model_option(&a, &mo, MO_THREADS | MO_CTX | MO_CACHE) || sample_option(&a, &so)) {
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (!path) return usage_error(cmd, "missing <model.dsm> (or -m FILE)");
    int rc = model_opts_check(cmd, &mo);
    if (rc) return rc;
    if ((rc = lora_opts_check(cmd, &lo)) != 0) return rc;
    ds_sampler *smp = NULL;
    int max_tokens = 0;
    if ((rc = sample_opts_make(cmd, &so, 512, &smp, &max_tokens)) != 0) return rc;

    log_ctx lc = {cmd, mo.verbose ? DS_LOG_DEBUG : DS_LOG_WARN, NULL};
    ds_model *m = NULL;
    ds_context *c = NULL;
    if ((rc = open_inference(cmd, path, &mo, mo.n_ctx, &lc, &lo, &ls, &m, &c)) != 0) {
        ds_sampler_free(smp);
        return rc;
    }
    const ds_tokenizer *tok = ds_model_tokenizer(m);

    chat_log hist = {NULL, 0, 0};
    size_t keep = 0;
    char *line = NULL;
    int32_t *ids = NULL;
    size_t line_cap = 0, ids_cap = 0, n_ids = 0;
    int tty = isatty(STDIN_FILENO);
    if (system && system[0]) {
        if (!chat_push(&hist, "system", system)) {
            rc = fail(cmd, "out of memory");
            goto done;
        }
        keep = 1;
    }
    install_signals();
    ds_context_set_abort(c, interrupted, NULL);

    /* ---- one turn per line ---- */
    for (;;) {
        g_interrupted = 0;
        errno = 0;
        ssize_t n = chat_read_line(tty, &line, &line_cap);
        if (n < 0) {
            if (errno == ENOMEM) rc = fail(cmd, "out of memory");
            if (tty) putchar('\n');
            break;   /* end of input, or Ctrl-C at the prompt */
        }
        if (n == 0) continue;
        const char *text = line;
        if (line[0] == '/' && line[1] == '/') {
            text = line + 1;   /* "//..." sends "/..." */
        } else if (line[0] == '/') {
            int r = chat_command(cmd, line, &hist, &keep);
            if (r < 0) rc = EXIT_FAILURE;
            if (r) break;
            continue;
        }
        if (!chat_push(&hist, "user", text)) {
            rc = fail(cmd, "out of memory");
            break;
        }

        /* The whole conversation, tokenized each turn: the loop continues
         * the context, so only what follows the turns it already holds (this
         * turn) is evaluated. */
        ds_status st = chat_encode(tok, &hist, chat_flags, &ids, &ids_cap, &n_ids);
        if (st != DS_OK) {
            rc = fail(cmd, "chat template: %s", st == DS_ERR_NOMEM ? "out of memory" : errmsg(st));
            break;
        }
        stream out;
        stream_init(&out, cmd);
        out.keep = 1;
        out.rev = so.rev;
        out.n_rev = so.n_rev;
        ds_generate_stats gs;
        st = generate_ids(c, smp, ids, n_ids, max_tokens, so.ignore_eos, NULL, &out, &gs);
        if (gs.n_generated > 0 || st == DS_OK) putchar('\n');
        fflush(stdout);
        if (st == DS_ERR_LIMIT) {
            /* the conversation outgrew the context: drop this turn, go on */
            fprintf(stderr, "ds %s: %s; /reset starts a new conversation\n", cmd, errmsg(st));
            chat_pop(&hist);
            stream_free(&out);
            continue;
        }
        if (st != DS_OK || out.write_failed || out.oom) {
            rc = st != DS_OK ? fail(cmd, "%s", errmsg(st))
                 : out.oom   ? fail(cmd, "out of memory")
                             : fail(cmd, "writing to stdout: %s", strerror(errno));
            stream_free(&out);
            break;
        }
        if (stats) print_stats(&gs);
        int pushed = chat_push(&hist, "assistant", out.text ? out.text : "");
        stream_free(&out);
        if (!pushed) {
            rc = fail(cmd, "out of memory");
            break;
        }
    }

done:
    chat_truncate(&hist, 0);
    free(hist.msg);
    free(line);
    free(ids);
    close_inference(c, &ls, m);
    ds_sampler_free(smp);
    return rc;
}

/* ==== ds tokenize ========================================================= */

static const char tokenize_help[] =
    "usage: ds tokenize <model.dsm> [--key-file F | --passphrase-env VAR] [--bos] [--no-special] TEXT\n"
    "\n"
    "Prints the token ids of TEXT (UTF-8) as one line of space-separated\n"
    "integers. Only the metadata is decrypted (the tokenizer lives there).\n"
    "  -m, --model FILE  the model, instead of the positional <model.dsm> (TEXT is then\n"
    "                 the one argument)\n"
    "  --bos          prepend the begin-of-sentence token\n"
    "  --no-special   treat special-token text as plain text\n";

static int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    model_opts mo;
    memset(&mo, 0, sizeof mo);
    const char *pos[2] = {0}, *model = NULL;
    int npos = 0, flags = 0;

    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            if (npos == 2) return usage_error(cmd, "too many arguments ('%s'); quote the text", argv[a.i]);
            pos[npos++] = argv[a.i];
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(tokenize_help, stdout);
            return 0;
        } else if (model_path_option(&a, &model)) {
        } else if (is_flag(&a, "--bos")) {
            flags |= DS_TOKENIZE_BOS;
        } else if (is_flag(&a, "--no-special")) {
            flags |= DS_TOKENIZE_NO_SPECIAL;
        } else if (model_option(&a, &mo, 0)) {
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    /* with -m, the one positional argument is the text */
    if (model && npos == 2) return usage_error(cmd, "too many arguments ('%s'); quote the text", pos[1]);
    if (model) pos[1] = pos[0], pos[0] = model, npos++;
    if (npos < 2) return usage_error(cmd, "needs <model.dsm> (or -m FILE) and TEXT");
    int rc = model_opts_check(cmd, &mo);
    if (rc) return rc;

    log_ctx lc = {cmd, mo.verbose ? DS_LOG_DEBUG : DS_LOG_WARN, NULL};
    ds_model *m = open_model(cmd, pos[0], &mo, 0, &lc);
    if (!m) return EXIT_FAILURE;
    const ds_tokenizer *tok = ds_model_tokenizer(m);
    const char *text = pos[1];
    size_t len = strlen(text), n = 0, cap = len + 2;
    int32_t *ids = malloc(cap * sizeof *ids);
    ds_status st = ids ? ds_tokenizer_encode(tok, text, len, flags, ids, cap, &n) : DS_ERR_NOMEM;
    if (st == DS_ERR_LIMIT && n > cap) {
        int32_t *p = realloc(ids, n * sizeof *ids);
        if (p) {
            ids = p;
            cap = n;
            st = ds_tokenizer_encode(tok, text, len, flags, ids, cap, &n);
        } else {
            st = DS_ERR_NOMEM;
        }
    }
    if (st == DS_OK) {
        for (size_t i = 0; i < n; i++) printf("%s%ld", i ? " " : "", (long)ids[i]);
        putchar('\n');
    } else {
        rc = fail(cmd, "%s", st == DS_ERR_NOMEM ? "out of memory" : errmsg(st));
    }
    free(ids);
    ds_model_close(m);
    return rc;
}

/* ==== ds logits =========================================================== */

static const char logits_help[] =
    "usage: ds logits <model.dsm> [--key-file F | --passphrase-env VAR] --tokens ID,ID,... --out FILE\n"
    "\n"
    "Evaluates the token ids from an empty context and writes the logits of\n"
    "every position to FILE: n_tokens x vocab_size float32 values,\n"
    "little-endian, row by row (no header). The file is written beside FILE\n"
    "under a temporary name and renamed into place when complete.\n"
    "  --tokens LIST   comma-separated token ids, e.g. 0,1234,42\n"
    "  -o, --out FILE  where to write\n"
    "  -m, --model FILE  the model, instead of the positional <model.dsm>\n"
    "  -t, --threads N, --cache-mb M, --evict, --prefetch, --device, --gpu, --gpu-cache-mb,\n"
    "  --allow-plaintext, --mlock, --no-huge-pages, -v/--verbose   as for ds run\n"
    "  --lora FILE, --lora-scaled FILE S, --lora-key-file F   LoRA adapters, as for ds run\n"
    "  --exact-activations   products with Q8_0/Q4_0 weights take F32 activations\n"
    "                  (not quantized to int8 per block): slower, for checks\n";

/* Strict "1,2,3": decimal ids, single commas, nothing else. */
static int parse_token_list(const char *s, int32_t **out, size_t *n) {
    size_t count = 1;
    *out = NULL;
    *n = 0;
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) count += *p == ',';
    int32_t *ids = malloc(count * sizeof *ids);
    if (!ids) return -1;
    size_t k = 0;
    const char *p = s;
    for (;;) {
        const char *q = p;
        uint64_t v = 0;
        while (*q >= '0' && *q <= '9') {
            v = v * 10 + (uint64_t)(*q - '0');
            if (v > INT32_MAX) {
                free(ids);
                return 0;
            }
            q++;
        }
        if (q == p || (*q != ',' && *q != '\0')) {
            free(ids);
            return 0;
        }
        ids[k++] = (int32_t)v;
        if (*q == '\0') break;
        p = q + 1;
    }
    *out = ids;
    *n = k;
    return 1;
}

/* Writes n floats as little-endian float32. */
static int write_f32le(FILE *f, const float *x, size_t n) {
    const uint32_t one = 1;
    if (*(const unsigned char *)&one == 1) return fwrite(x, sizeof *x, n, f) == n;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                              (unsigned char)(u >> 24)};
        if (fwrite(b, 1, 4, f) != 4) return 0;
    }
    return 1;
}

/* Writes the data to a temporary file beside path, then renames it. */
static int write_file_atomic(const char *cmd, const char *path, const float *x, size_t n) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return fail(cmd, "out of memory");
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = fail(cmd, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    /* mkstemp makes the file 0600; give it the mode a plain create would */
    mode_t um = umask(0);
    umask(um);
    (void)fchmod(fd, 0666 & ~um);
    FILE *f = fdopen(fd, "wb");
    int ok = f && write_f32le(f, x, n);
    if (f) ok = (fflush(f) == 0) && ok && fsync(fileno(f)) == 0;
    int err = errno;
    if (f) {
        if (fclose(f) != 0) ok = 0;
    } else {
        close(fd);
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        return fail(cmd, "%s: %s", path, strerror(err));
    }
    free(tmp);
    return 0;
}

static int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    model_opts mo;
    lora_opts lo;
    lora_set ls;
    memset(&mo, 0, sizeof mo);
    memset(&lo, 0, sizeof lo);
    memset(&ls, 0, sizeof ls);
    const char *path = NULL, *tokens_s = NULL, *out_path = NULL;

    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            int rc = model_path_positional(cmd, &path, argv[a.i], "");
            if (rc) return rc;
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(logits_help, stdout);
            return 0;
        } else if (model_path_option(&a, &path)) {
        } else if (is_opt(&a, "--tokens", &v)) {
            set_once(&a, &tokens_s, v, "--tokens");
        } else if (is_opt(&a, "--out", &v) || is_opt(&a, "-o", &v)) {
            set_once(&a, &out_path, v, "--out");
        } else if (lora_option(&a, &lo)) {
        } else if (model_option(&a, &mo, MO_THREADS | MO_CACHE)) {
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (!path) return usage_error(cmd, "missing <model.dsm>");
    if (!tokens_s) return usage_error(cmd, "missing --tokens ID,ID,...");
    if (!out_path || !out_path[0]) return usage_error(cmd, "missing --out FILE");
    int rc = model_opts_check(cmd, &mo);
    if (rc) return rc;
    if ((rc = lora_opts_check(cmd, &lo)) != 0) return rc;
    int32_t *ids = NULL;
    size_t n = 0;
    int pr = parse_token_list(tokens_s, &ids, &n);
    if (pr < 0) return fail(cmd, "out of memory");
    if (pr == 0)
        return usage_error(cmd, "--tokens needs comma-separated token ids (0 to 2147483647), not '%s'", tokens_s);
    if (n > (1u << 22)) {
        free(ids);
        return usage_error(cmd, "--tokens: %zu ids is more than a context can hold", n);
    }

    /* ---- a context exactly as long as the input ---- */
    log_ctx lc = {cmd, mo.verbose ? DS_LOG_DEBUG : DS_LOG_WARN, NULL};
    ds_model *m = NULL;
    ds_context *c = NULL;
    if ((rc = open_inference(cmd, path, &mo, (int)n, &lc, &lo, &ls, &m, &c)) != 0) {
        free(ids);
        return rc;
    }
    ds_model_config cfg;
    ds_status st = ds_model_get_config(m, &cfg);
    float *logits = NULL;
    if (st != DS_OK) {
        rc = fail(cmd, "%s", errmsg(st));
    } else if ((size_t)cfg.vocab_size > SIZE_MAX / sizeof(float) / n ||
               !(logits = malloc(n * (size_t)cfg.vocab_size * sizeof *logits))) {
        rc = fail(cmd, "out of memory for %zu x %d logits", n, cfg.vocab_size);
    } else if ((st = ds_context_eval(c, ids, n, logits, 1)) != DS_OK) {
        rc = fail(cmd, "%s", errmsg(st));
    } else if ((rc = write_file_atomic(cmd, out_path, logits, n * (size_t)cfg.vocab_size)) == 0) {
        printf("wrote %zu x %d float32 logits to %s\n", n, cfg.vocab_size, out_path);
    }
    free(logits);
    free(ids);
    close_inference(c, &ls, m);
    return rc;
}

/* ==== ds perplexity ======================================================= */
/*
 * llama.cpp's llama-perplexity method (tools/perplexity/perplexity.cpp),
 * written again over the public context API:
 *
 *   - the whole text is tokenized once, with BOS in front when the tokenizer
 *     adds one, and special-token text read as plain text;
 *   - it is cut into consecutive windows of n_ctx tokens (the last, partial
 *     window is dropped); when the tokenizer adds BOS, the first token of
 *     every window is replaced by BOS (replaced, not inserted: a window is
 *     n_ctx positions);
 *   - each window is evaluated from an empty context, and only its second
 *     half is scored: for i in [n_ctx/2, n_ctx - 1), the negative
 *     log-likelihood of token i+1 under the softmax of the logits at i;
 *   - perplexity = exp(mean NLL). Its uncertainty is llama.cpp's:
 *         s = sqrt((mean(nll^2) - mean(nll)^2) / (N - 1))
 *     (the population variance over N - 1: the sample standard deviation
 *     over sqrt(N), the standard error of the mean NLL) and then
 *         E = P * s
 *     (first order: dP = exp'(mean) ds). The same standard error is given
 *     for every mean below (KL, the log ratio of perplexities).
 *
 * Unlike llama-perplexity, which wants 2 x n_ctx tokens, one whole window is
 * enough here: it scores n_ctx - 1 - n_ctx/2 positions. And the numbers are
 * computed in double (log-softmax with the maximum subtracted, two-pass
 * variance) over the exact logits: llama.cpp's KL mode reads the base model's
 * log-probabilities back from a file where they are rounded to 16 bits and
 * drops terms with p_base < e^-16; here both models run side by side.
 *
 * The numbers live in tools/ because they are a few lines over the public
 * API (ds_context_eval with all_logits); nothing in the library needs them.
 */

static const char perplexity_help[] =
    "usage: ds perplexity <model.dsm> [--key-file F | --passphrase-env VAR] --file TEXT [options]\n"
    "\n"
    "The perplexity of the model on a text, computed as llama.cpp's llama-perplexity\n"
    "does. TEXT (- = stdin) is tokenized whole (special-token text as plain text),\n"
    "with BOS in front when the model's tokenizer adds one (tokenizer_config.json's\n"
    "add_bos_token), and cut into consecutive windows of --ctx tokens; the last,\n"
    "partial window is dropped. With BOS, the first token of every window is\n"
    "replaced by BOS, so every window starts as a document does. Each window is\n"
    "evaluated from an empty context and only its second half is scored: the\n"
    "negative log-likelihood (NLL) of token i+1 from the logits at i, for i from\n"
    "ctx/2 to ctx-2 (ctx-1-ctx/2 positions a window). One full window is enough.\n"
    "\n"
    "A line per window on stderr gives the running estimate ([3/40] 7.1234); the\n"
    "last line on stdout is\n"
    "    perplexity: P +/- E\n"
    "with P = exp(mean NLL) and E = P * sqrt((mean(NLL^2) - mean(NLL)^2) / (N-1))\n"
    "over the N scored positions (llama.cpp's standard error).\n"
    "\n"
    "  -f, --file TEXT        the text to score (required)\n"
    "  -m, --model FILE       the model, instead of the positional <model.dsm>\n"
    "  -c, --ctx-size, --ctx N  window in tokens, 3 to the model's maximum context (default 512)\n"
    "  --chunks K             score only the first K windows (default 0 = all)\n"
    "  --kl-divergence BASE   also evaluate BASE.dsm (typically the F16 file of the same\n"
    "                         weights; the key options open both) on the same windows, and\n"
    "                         print over the scored positions: the perplexity of both, the\n"
    "                         mean ln(PPL/PPL(base)), the mean KL(base || model) with its\n"
    "                         standard error, its percentiles (max, 99.9, 99, 95, 90,\n"
    "                         median, 10, min), and how often the two argmax tokens agree.\n"
    "                         Both must have the same vocabulary and tokenize the text alike\n"
    "  --json                 one JSON object on stdout instead of the text summary: model,\n"
    "                         file, n_ctx, n_tokens, bos (-1: none), windows, n_scored,\n"
    "                         perplexity, stderr, mean_nll, mean_nll_stderr, seconds; with\n"
    "                         --kl-divergence also base, ppl_base, ppl_base_stderr,\n"
    "                         ln_ppl_ratio(_stderr), kl_mean, kl_stderr, kl_max, kl_p99_9,\n"
    "                         kl_p99, kl_p95, kl_p90, kl_median, kl_p10, kl_min, top1_agree,\n"
    "                         top1_agree_stderr\n"
    "  -t, --threads N, --cache-mb M, --evict, --prefetch, --device, --gpu, --gpu-cache-mb,\n"
    "  --allow-plaintext, --mlock, --exact-activations, --no-huge-pages, -v/--verbose\n"
    "                         as for ds run\n"
    "  --lora FILE, --lora-scaled FILE S, --lora-key-file F\n"
    "                         LoRA adapters, as for ds run: applied to the model only, never\n"
    "                         to --kl-divergence's BASE. With BASE the very file the adapters\n"
    "                         were made for (the same path), the KL figures measure how far\n"
    "                         the adapters move the model; --json adds \"adapters\"\n"
    "Memory: the logits of a window, ctx x vocab floats (twice with --kl-divergence).\n";

/* ---- the numbers ---- */

/* log(sum_i exp(x_i)) over n >= 1 logits, in double, the largest subtracted
 * first; *argmax receives the index of the largest (the first of equals).
 * Not finite when a logit is not. */
static double log_sum_exp(const float *x, int n, int *argmax) {
    int im = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[im]) im = i;
    double mx = x[im], s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    *argmax = im;
    return mx + log(s);
}

/* KL(P || Q) = sum_i p_i (log p_i - log q_i) with P = softmax(base) and
 * Q = softmax(model), given the log-sum-exp of each row. A p_i that
 * underflows to 0 adds nothing (p log p -> 0). */
static double kl_row(const float *base, double lse_base, const float *model, double lse_model, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        double lp = (double)base[i] - lse_base, lq = (double)model[i] - lse_model;
        s += exp(lp) * (lp - lq);
    }
    return s;
}

typedef struct mean_se {
    double mean, se;
} mean_se;

/* The mean of x[0..n) and its standard error as llama-perplexity gives it:
 * sqrt(var / (n - 1)) with var the population variance (0 when n < 2).
 * Two passes, so a small spread around a large mean keeps its digits. */
static mean_se mean_stderr(const double *x, size_t n) {
    mean_se r = {0, 0};
    if (n == 0) return r;
    double s = 0, v = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    r.mean = s / (double)n;
    for (size_t i = 0; i < n; i++) v += (x[i] - r.mean) * (x[i] - r.mean);
    v /= (double)n;
    r.se = n > 1 && v > 0 ? sqrt(v / (double)(n - 1)) : 0;
    return r;
}

/* The fraction-quantile of n >= 1 sorted values: linear interpolation
 * between the ranks around fraction * (n - 1) (llama-perplexity's, and
 * numpy.percentile's default); fraction 0.5 is the median. */
static double quantile(const double *sorted, size_t n, double fraction) {
    if (fraction <= 0) return sorted[0];
    if (fraction >= 1) return sorted[n - 1];
    double p = fraction * (double)(n - 1);
    size_t i = (size_t)p;
    double f = p - (double)i;
    return i + 1 < n ? (1 - f) * sorted[i] + f * sorted[i + 1] : sorted[i];
}

static int cmp_double_asc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- the models ---- */

/* Opens a model and a context of n_ctx positions for it, after checking that
 * n_ctx fits the model's maximum context. Returns 0, or EXIT_FAILURE
 * (message printed) with nothing left open. */
static int open_scorer(const char *cmd, const char *path, const model_opts *o, int n_ctx, log_ctx *lc,
                       const lora_opts *lo, lora_set *ls, ds_model **m, ds_context **c, ds_model_config *cfg) {
    *c = NULL;
    memset(ls, 0, sizeof *ls);
    if (!(*m = open_model_lora(cmd, path, o, 1, lc, lo, ls))) return EXIT_FAILURE;
    ds_status st = ds_model_get_config(*m, cfg);
    int rc = 0;
    if (st != DS_OK) {
        rc = fail(cmd, "%s", errmsg(st));
    } else if (cfg->max_position_embeddings > 0 && n_ctx > cfg->max_position_embeddings) {
        rc = fail(cmd, "--ctx %d is larger than the maximum context of %s (%d tokens)", n_ctx, path,
                  cfg->max_position_embeddings);
    } else if (cfg->vocab_size < 1) {
        rc = fail(cmd, "%s: vocabulary size %d", path, cfg->vocab_size);
    } else if ((rc = new_context(cmd, *m, o, n_ctx, c)) == 0 && (rc = lora_apply(cmd, ls, *c)) == 0) {
        ds_context_set_abort(*c, interrupted, NULL);
    }
    if (rc) {
        ds_context_free(*c);
        *c = NULL;
        lora_close(ls);
        ds_model_close(*m);
        *m = NULL;
    }
    return rc;
}

/* Encodes the whole text as llama-perplexity does: BOS in front when the
 * tokenizer adds one, special-token text as plain text. *ids is malloc'd.
 * Returns 0 or EXIT_FAILURE (message printed). */
static int tokenize_text(const char *cmd, const char *file, const ds_tokenizer *tok, const char *text, int32_t **ids,
                         size_t *n) {
    size_t len = strlen(text), cap = len + 2;
    int flags = DS_TOKENIZE_BOS | DS_TOKENIZE_NO_SPECIAL;
    *ids = malloc(cap * sizeof **ids);
    ds_status st = *ids ? ds_tokenizer_encode(tok, text, len, flags, *ids, cap, n) : DS_ERR_NOMEM;
    if (st == DS_ERR_LIMIT && *n > cap) {   /* cannot happen (a token takes a byte) but costs nothing */
        int32_t *p = realloc(*ids, *n * sizeof *p);
        if (p) {
            *ids = p;
            cap = *n;
            st = ds_tokenizer_encode(tok, text, len, flags, *ids, cap, n);
        } else {
            st = DS_ERR_NOMEM;
        }
    }
    if (st != DS_OK) {
        free(*ids);
        *ids = NULL;
        return fail(cmd, "%s: %s", file, st == DS_ERR_NOMEM ? "out of memory" : errmsg(st));
    }
    return 0;
}

static void print_mean_se(const char *label, mean_se v) {
    printf("%-32s: %12.6f +/- %12.6f\n", label, v.mean, v.se);
}

static int cmd_perplexity(int argc, char **argv) {
    const char *cmd = "perplexity";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    model_opts mo;
    lora_opts lo;
    lora_set ls;
    memset(&mo, 0, sizeof mo);
    memset(&lo, 0, sizeof lo);
    memset(&ls, 0, sizeof ls);
    const char *path = NULL, *file = NULL, *chunks_s = NULL, *base_path = NULL;
    int json = 0;

    /* ---- parse the command line ---- */
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            int rc = model_path_positional(cmd, &path, argv[a.i], "; the text goes after --file");
            if (rc) return rc;
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(perplexity_help, stdout);
            return 0;
        } else if (model_path_option(&a, &path)) {
        } else if (is_opt(&a, "--file", &v) || is_opt(&a, "-f", &v)) {
            set_once(&a, &file, v, "--file");
        } else if (is_opt(&a, "--chunks", &v)) {
            set_once(&a, &chunks_s, v, "--chunks");
        } else if (is_opt(&a, "--kl-divergence", &v)) {
            set_once(&a, &base_path, v, "--kl-divergence");
        } else if (is_flag(&a, "--json")) {
            json = 1;
        } else if (lora_option(&a, &lo)) {
        } else if (model_option(&a, &mo, MO_THREADS | MO_CTX | MO_CACHE)) {
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (!path) return usage_error(cmd, "missing <model.dsm>");
    if (!file || !file[0]) return usage_error(cmd, "missing --file TEXT");
    if (base_path && !base_path[0]) return usage_error(cmd, "--kl-divergence needs a model file");
    int rc = model_opts_check(cmd, &mo);
    if (rc) return rc;
    if ((rc = lora_opts_check(cmd, &lo)) != 0) return rc;
    int n_ctx = mo.ctx_s ? mo.n_ctx : 512;
    if (n_ctx < 3)   /* ctx - 1 - ctx/2 scored positions a window: none below 3 */
        return usage_error(cmd, "--ctx %d scores no position: a window needs at least 3 tokens", n_ctx);
    uint64_t max_chunks = 0;
    if (chunks_s && !parse_u64(chunks_s, INT32_MAX, &max_chunks))
        return usage_error(cmd, "--chunks needs a whole number of windows (0 = all), not '%s'", chunks_s);

    /* ---- the text, then the models (a typo in the path fails fast) ---- */
    char *text = read_text(cmd, file, "the text");
    if (!text) return EXIT_FAILURE;
    install_signals();
    log_ctx lc = {cmd, mo.verbose ? DS_LOG_DEBUG : DS_LOG_WARN, NULL};
    ds_model *m = NULL, *mbase = NULL;
    ds_context *c = NULL, *cb = NULL;
    ds_model_config cfg, cfg_b;
    int32_t *ids = NULL, *ids_b = NULL, *win = NULL;
    float *logits = NULL, *logits_b = NULL;
    double *nll = NULL, *nll_b = NULL, *kl = NULL, *diff = NULL;
    size_t n_ids = 0, n_ids_b = 0, n_same_top = 0;
    if ((rc = open_scorer(cmd, path, &mo, n_ctx, &lc, &lo, &ls, &m, &c, &cfg)) != 0) goto done;
    lora_describe(stderr, "adapter ", &ls);
    if (base_path) {
        /* the adapters apply to the model, never to the base: with the
         * base the same file, this measures what the adapters change */
        lora_set none;
        if ((rc = open_scorer(cmd, base_path, &mo, n_ctx, &lc, NULL, &none, &mbase, &cb, &cfg_b)) != 0) goto done;
        if (cfg_b.vocab_size != cfg.vocab_size) {
            rc = fail(cmd, "--kl-divergence: the vocabularies differ: %s has %d tokens, %s has %d", path,
                      cfg.vocab_size, base_path, cfg_b.vocab_size);
            goto done;
        }
    }
    const int V = cfg.vocab_size;
    const ds_tokenizer *tok = ds_model_tokenizer(m);
    if ((rc = tokenize_text(cmd, file, tok, text, &ids, &n_ids)) != 0) goto done;
    if (base_path) {
        if ((rc = tokenize_text(cmd, file, ds_model_tokenizer(mbase), text, &ids_b, &n_ids_b)) != 0) goto done;
        size_t k = 0;
        while (k < n_ids && k < n_ids_b && ids[k] == ids_b[k]) k++;
        if (k < n_ids || k < n_ids_b) {
            rc = fail(cmd, "--kl-divergence: %s and %s tokenize %s differently (%zu and %zu tokens, the first "
                      "difference at token %zu): the models must share a tokenizer", path, base_path, file, n_ids,
                      n_ids_b, k);
            goto done;
        }
    }
    int32_t bos = ds_tokenizer_adds_bos(tok) ? ds_tokenizer_bos(tok) : -1;

    /* ---- the windows ---- */
    size_t n_win = n_ids / (size_t)n_ctx;
    if (n_win == 0) {
        rc = fail(cmd, "%s: the text is %zu tokens%s; a window of --ctx %d needs at least %d", file, n_ids,
                  bos >= 0 ? " with BOS" : "", n_ctx, n_ctx);
        goto done;
    }
    if (max_chunks > 0 && max_chunks < n_win) n_win = (size_t)max_chunks;
    const int first = n_ctx / 2, per_win = n_ctx - 1 - first;
    size_t n_scored = n_win * (size_t)per_win;   /* <= n_ids: no overflow */
    size_t row_floats = (size_t)n_ctx * (size_t)V;
    if ((size_t)V > SIZE_MAX / sizeof(float) / (size_t)n_ctx) {
        rc = fail(cmd, "out of memory for %d x %d logits", n_ctx, V);
        goto done;
    }
    win = malloc((size_t)n_ctx * sizeof *win);
    logits = malloc(row_floats * sizeof *logits);
    nll = malloc(n_scored * sizeof *nll);
    if (base_path) {
        logits_b = malloc(row_floats * sizeof *logits_b);
        nll_b = malloc(n_scored * sizeof *nll_b);
        kl = malloc(n_scored * sizeof *kl);
        diff = malloc(n_scored * sizeof *diff);
    }
    if (!win || !logits || !nll || (base_path && (!logits_b || !nll_b || !kl || !diff))) {
        rc = fail(cmd, "out of memory for %d x %d logits%s", n_ctx, V, base_path ? " (twice)" : "");
        goto done;
    }
    fprintf(stderr, "%s: %zu tokens%s; %zu window%s of %d tokens", file, n_ids, bos >= 0 ? " with BOS" : "", n_win,
            n_win == 1 ? "" : "s", n_ctx);
    if (n_win < n_ids / (size_t)n_ctx) fprintf(stderr, " (the first of %zu)", n_ids / (size_t)n_ctx);
    fprintf(stderr, ", %d positions scored in each\n", per_win);

    double t0 = now_s(), sum_nll = 0, sum_nll_b = 0, sum_kl = 0;
    size_t k = 0;   /* scored positions so far */
    for (size_t w = 0; w < n_win; w++) {
        memcpy(win, ids + w * (size_t)n_ctx, (size_t)n_ctx * sizeof *win);
        if (bos >= 0) win[0] = bos;
        ds_status st;
        ds_context_reset(c);
        if ((st = ds_context_eval(c, win, (size_t)n_ctx, logits, 1)) != DS_OK) {
            rc = fail(cmd, "%s: window %zu: %s", path, w + 1, errmsg(st));
            goto done;
        }
        if (base_path) {
            ds_context_reset(cb);
            if ((st = ds_context_eval(cb, win, (size_t)n_ctx, logits_b, 1)) != DS_OK) {
                rc = fail(cmd, "%s: window %zu: %s", base_path, w + 1, errmsg(st));
                goto done;
            }
        }
        for (int i = first; i < n_ctx - 1; i++, k++) {
            const float *row = logits + (size_t)i * (size_t)V;
            int32_t next = win[i + 1];
            int top;
            double lse = log_sum_exp(row, V, &top);
            nll[k] = lse - (double)row[next];
            if (!isfinite(nll[k])) {
                rc = fail(cmd, "%s: window %zu, position %d: the logits are not finite", path, w + 1, i);
                goto done;
            }
            sum_nll += nll[k];
            if (base_path) {
                const float *rb = logits_b + (size_t)i * (size_t)V;
                int top_b;
                double lse_b = log_sum_exp(rb, V, &top_b);
                nll_b[k] = lse_b - (double)rb[next];
                if (!isfinite(nll_b[k])) {
                    rc = fail(cmd, "%s: window %zu, position %d: the logits are not finite", base_path, w + 1, i);
                    goto done;
                }
                kl[k] = kl_row(rb, lse_b, row, lse, V);
                diff[k] = nll[k] - nll_b[k];
                n_same_top += top == top_b;
                sum_nll_b += nll_b[k];
                sum_kl += kl[k];
            }
        }
        /* the running estimates, as llama-perplexity prints them */
        if (base_path)
            fprintf(stderr, "[%zu/%zu] %.4f, base %.4f, KL %.6f, same top %.3f%%\n", w + 1, n_win,
                    exp(sum_nll / (double)k), exp(sum_nll_b / (double)k), sum_kl / (double)k,
                    100.0 * (double)n_same_top / (double)k);
        else
            fprintf(stderr, "[%zu/%zu] %.4f\n", w + 1, n_win, exp(sum_nll / (double)k));
        if (w == 0 && n_win > 1)
            fprintf(stderr, "%.2f s a window, about %.0f s to go\n", now_s() - t0,
                    (now_s() - t0) * (double)(n_win - 1));
    }
    double secs = now_s() - t0;
    fprintf(stderr, "%zu windows, %zu tokens evaluated%s in %.2f s (%.1f tok/s)\n", n_win,
            n_win * (size_t)n_ctx, base_path ? " by each model" : "", secs,
            secs > 0 ? (double)(n_win * (size_t)n_ctx) * (base_path ? 2 : 1) / secs : 0.0);

    /* ---- the statistics ---- */
    mean_se lp = mean_stderr(nll, n_scored);
    double ppl = exp(lp.mean), ppl_se = ppl * lp.se;
    mean_se lpb = {0, 0}, lr = {0, 0}, klm = {0, 0};
    double q[8] = {0}, same = 0, same_se = 0;
    static const double qf[8] = {1, 0.999, 0.99, 0.95, 0.90, 0.5, 0.10, 0};
    static const char *const qname[8] = {"Maximum", "99.9%  ", "99.0%  ", "95.0%  ",
                                         "90.0%  ", "Median ", "10.0%  ", "Minimum"};
    static const char *const qkey[8] = {"kl_max", "kl_p99_9", "kl_p99", "kl_p95",
                                        "kl_p90", "kl_median", "kl_p10", "kl_min"};
    if (base_path) {
        lpb = mean_stderr(nll_b, n_scored);
        lr = mean_stderr(diff, n_scored);   /* = sqrt(se^2 + se_base^2 - 2 cov), llama.cpp's form */
        klm = mean_stderr(kl, n_scored);
        qsort(kl, n_scored, sizeof *kl, cmp_double_asc);
        for (int j = 0; j < 8; j++) q[j] = quantile(kl, n_scored, qf[j]);
        same = (double)n_same_top / (double)n_scored;
        same_se = n_scored > 1 ? sqrt(same * (1 - same) / (double)(n_scored - 1)) : 0;
    }
    if (json) {
        printf("{\"model\": ");
        json_str(stdout, path);
        json_adapters(stdout, &ls);
        printf(", \"file\": ");
        json_str(stdout, file);
        printf(", \"n_ctx\": %d, \"n_tokens\": %zu, \"bos\": %ld, \"windows\": %zu, \"n_scored\": %zu, \"perplexity\": ",
               n_ctx, n_ids, (long)bos, n_win, n_scored);
        json_float(stdout, ppl);
        printf(", \"stderr\": ");
        json_float(stdout, ppl_se);
        printf(", \"mean_nll\": ");
        json_float(stdout, lp.mean);
        printf(", \"mean_nll_stderr\": ");
        json_float(stdout, lp.se);
        if (base_path) {
            printf(", \"base\": ");
            json_str(stdout, base_path);
            const struct {
                const char *key;
                double v;
            } f[] = {{"ppl_base", exp(lpb.mean)},     {"ppl_base_stderr", exp(lpb.mean) * lpb.se},
                     {"ln_ppl_ratio", lr.mean},       {"ln_ppl_ratio_stderr", lr.se},
                     {"kl_mean", klm.mean},           {"kl_stderr", klm.se},
                     {"top1_agree", same},            {"top1_agree_stderr", same_se}};
            for (size_t j = 0; j < sizeof f / sizeof f[0]; j++) {
                printf(", \"%s\": ", f[j].key);
                json_float(stdout, f[j].v);
            }
            for (int j = 0; j < 8; j++) {
                printf(", \"%s\": ", qkey[j]);
                json_float(stdout, q[j]);
            }
        }
        printf(", \"seconds\": %.3f}\n", secs);
    } else {
        if (base_path) {
            /* llama-perplexity's KL summary, Q = the model */
            printf("model: %s\n", path);
            lora_describe(stdout, "       adapter ", &ls);   /* on the model only */
            printf("base:  %s\n%zu positions scored in %zu windows of %d tokens\n\n", base_path, n_scored, n_win,
                   n_ctx);
            printf("====== Perplexity statistics ======\n");
            print_mean_se("Mean PPL(model)", (mean_se){ppl, ppl_se});
            print_mean_se("Mean PPL(base)", (mean_se){exp(lpb.mean), exp(lpb.mean) * lpb.se});
            print_mean_se("Mean ln(PPL(model)/PPL(base))", lr);
            print_mean_se("Mean PPL(model)/PPL(base)", (mean_se){exp(lr.mean), exp(lr.mean) * lr.se});
            printf("\n====== KL divergence statistics ======\n");
            /* (two more digits than llama-perplexity: a Q8_0 file's KL is about 1e-4) */
            printf("Mean    KLD: %12.8f +/- %12.8f\n", klm.mean, klm.se);
            for (int j = 0; j < 8; j++) printf("%s KLD: %12.8f\n", qname[j], q[j]);
            printf("\n====== Token probability statistics ======\n");
            printf("Same top p: %7.3f +/- %6.3f %%\n\n", 100 * same, 100 * same_se);
        }
        printf("perplexity: %.4f +/- %.5f\n", ppl, ppl_se);
    }

done:
    free(diff);
    free(kl);
    free(nll_b);
    free(nll);
    free(logits_b);
    free(logits);
    free(win);
    free(ids_b);
    free(ids);
    ds_context_free(cb);
    ds_model_close(mbase);
    close_inference(c, &ls, m);
    free(text);
    return rc;
}

/* ==== main ================================================================ */

/* ==== ds calibrate ======================================================== */
static const char calibrate_help[] =
    "usage: ds calibrate <model.dsm> [--key-file F | --passphrase-env VAR] --file TEXT --out STATS.json [options]\n"
    "\n"
    "Runs the model over a text and records, for every MoE layer, each routed\n"
    "expert's routing mass (the sum over tokens of the weight the router gave it,\n"
    "as the forward pass applies it) and selection count: the statistics\n"
    "`ds convert --drop-experts R --calib STATS.json` ranks experts by. The text\n"
    "is tokenized as ds perplexity does (BOS in front when the tokenizer adds\n"
    "one, special-token text as plain text) and cut into windows of --ctx\n"
    "tokens, each evaluated from an empty context with BOS first; a last,\n"
    "shorter window is evaluated too. Every token counts.\n"
    "  --file TEXT       the text (required)\n"
    "  --out FILE        where the JSON goes (required; replaced if it exists)\n"
    "  -c, --ctx N       tokens per window (default 512)\n"
    "  -t, --threads N   threads\n"
    "  --cache-mb M      expert cache (MB) for a model larger than memory\n"
    "  -v, --verbose     also print the library's notices\n"
    "The file: {\"format\": \"deepseek.h calibration 1\", \"model_id\": hex,\n"
    "\"config\": {the fingerprint convert checks}, \"text\", \"n_tokens\",\n"
    "\"n_ctx\", \"windows\", \"top_k\", \"layers\": {\"L\": {\"mass\": [E],\n"
    "\"count\": [E]}}} (README.md, \"Expert pruning\").\n";

typedef struct calib_acc {
    int n_layers, E;
    double *mass;      /* (n_layers, E) */
    uint64_t *count;   /* (n_layers, E) */
    uint64_t tokens_seen;   /* token-layer observations, for the sanity line */
} calib_acc;

static void calib_observe(void *user, int layer, int n_tokens, int k, const int *experts, const float *weights) {
    calib_acc *a = user;
    if (layer < 0 || layer >= a->n_layers) return;
    for (int i = 0; i < n_tokens * k; i++) {
        int x = experts[i];
        if (x < 0 || x >= a->E) continue;
        a->mass[(size_t)layer * a->E + x] += (double)weights[i];
        a->count[(size_t)layer * a->E + x]++;
    }
    a->tokens_seen += (uint64_t)n_tokens;
}

static int cmd_calibrate(int argc, char **argv) {
    const char *cmd = "calibrate";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    model_opts mo;
    memset(&mo, 0, sizeof mo);
    const char *path = NULL, *file = NULL, *out = NULL;
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            int rc = model_path_positional(cmd, &path, argv[a.i], "; the text goes after --file");
            if (rc) return rc;
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(calibrate_help, stdout);
            return 0;
        } else if (model_path_option(&a, &path)) {
        } else if (is_opt(&a, "--file", &v) || is_opt(&a, "-f", &v)) {
            set_once(&a, &file, v, "--file");
        } else if (is_opt(&a, "--out", &v) || is_opt(&a, "-o", &v)) {
            set_once(&a, &out, v, "--out");
        } else if (model_option(&a, &mo, MO_THREADS | MO_CTX | MO_CACHE)) {
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (!path) return usage_error(cmd, "missing <model.dsm>");
    if (!file || !file[0]) return usage_error(cmd, "missing --file TEXT");
    if (!out || !out[0]) return usage_error(cmd, "missing --out STATS.json");
    int rc = model_opts_check(cmd, &mo);
    if (rc) return rc;
    int n_ctx = mo.ctx_s ? mo.n_ctx : 512;
    if (n_ctx < 1) return usage_error(cmd, "--ctx must be at least 1");

    char *text = read_text(cmd, file, "the text");
    if (!text) return EXIT_FAILURE;
    install_signals();
    log_ctx lc = {cmd, mo.verbose ? DS_LOG_DEBUG : DS_LOG_WARN, NULL};
    ds_model *m = NULL;
    ds_context *c = NULL;
    ds_model_config cfg;
    lora_set ls;
    int32_t *ids = NULL, *win = NULL;
    size_t n_ids = 0;
    calib_acc acc;
    memset(&acc, 0, sizeof acc);
    FILE *f = NULL;
    if ((rc = open_scorer(cmd, path, &mo, n_ctx, &lc, NULL, &ls, &m, &c, &cfg)) != 0) goto done;
    if (cfg.n_routed_experts < 1) {
        rc = fail(cmd, "%s has no routed experts to calibrate", path);
        goto done;
    }
    const ds_tokenizer *tok = ds_model_tokenizer(m);
    if ((rc = tokenize_text(cmd, file, tok, text, &ids, &n_ids)) != 0) goto done;
    if (n_ids == 0) {
        rc = fail(cmd, "%s: the text has no tokens", file);
        goto done;
    }
    int32_t bos = ds_tokenizer_adds_bos(tok) ? ds_tokenizer_bos(tok) : -1;
    acc.n_layers = cfg.n_layers;
    acc.E = cfg.n_routed_experts;
    acc.mass = calloc((size_t)cfg.n_layers * (size_t)cfg.n_routed_experts, sizeof *acc.mass);
    acc.count = calloc((size_t)cfg.n_layers * (size_t)cfg.n_routed_experts, sizeof *acc.count);
    win = malloc((size_t)n_ctx * sizeof *win);
    if (!acc.mass || !acc.count || !win) {
        rc = fail(cmd, "out of memory");
        goto done;
    }
    ds_status st = ds_context_set_routing_observer(c, calib_observe, &acc);
    if (st != DS_OK) {
        rc = fail(cmd, "%s", errmsg(st));
        goto done;
    }
    size_t n_win = (n_ids + (size_t)n_ctx - 1) / (size_t)n_ctx;
    double t0 = now_s();
    for (size_t w = 0; w < n_win; w++) {
        size_t n = n_ids - w * (size_t)n_ctx < (size_t)n_ctx ? n_ids - w * (size_t)n_ctx : (size_t)n_ctx;
        memcpy(win, ids + w * (size_t)n_ctx, n * sizeof *win);
        if (bos >= 0) win[0] = bos;
        ds_context_reset(c);
        if ((st = ds_context_eval(c, win, n, NULL, 0)) != DS_OK) {
            rc = fail(cmd, "%s: window %zu: %s", path, w + 1, errmsg(st));
            goto done;
        }
        fprintf(stderr, "[%zu/%zu] %zu tokens\n", w + 1, n_win, n);
    }
    double secs = now_s() - t0;
    fprintf(stderr, "%zu tokens in %zu window%s in %.2f s\n", n_ids, n_win, n_win == 1 ? "" : "s", secs);

    /* ---- the file ---- */
    f = fopen(out, "w");
    if (!f) {
        rc = fail(cmd, "%s: %s", out, strerror(errno));
        goto done;
    }
    char idh[2 * DS_MODEL_ID_BYTES + 1];
    model_id_hex(m, idh);
    fprintf(f, "{\n  \"format\": \"deepseek.h calibration 1\",\n  \"model_id\": \"%s\",\n  \"model\": ", idh);
    json_str(f, path);
    fprintf(f, ",\n  \"config\": {");
    fprintf(f, "\"arch\": %d, \"n_layers\": %d, \"n_routed_experts\": %d, \"hidden_size\": %d, "
            "\"moe_intermediate_size\": %d, \"first_k_dense_replace\": %d, \"moe_layer_freq\": %d, "
            "\"n_experts_per_tok\": %d, \"n_group\": %d, \"topk_group\": %d, \"vocab_size\": %d},\n",
            (int)cfg.arch, cfg.n_layers, cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size,
            cfg.first_k_dense_replace, cfg.moe_layer_freq, cfg.n_experts_per_tok, cfg.n_group, cfg.topk_group,
            cfg.vocab_size);
    fprintf(f, "  \"text\": ");
    json_str(f, file);
    fprintf(f, ",\n  \"n_tokens\": %zu,\n  \"n_ctx\": %d,\n  \"windows\": %zu,\n  \"top_k\": %d,\n  \"layers\": {",
            n_ids, n_ctx, n_win, cfg.n_experts_per_tok);
    int first = 1, n_moe = 0;
    for (int l = 0; l < cfg.n_layers; l++) {
        unsigned char *present = malloc((size_t)cfg.n_routed_experts);
        int moe = present && ds_model_layer_experts(m, l, present, (size_t)cfg.n_routed_experts) == DS_OK;
        free(present);
        if (!moe) continue;
        fprintf(f, "%s\n    \"%d\": {\"mass\": [", first ? "" : ",", l);
        first = 0;
        n_moe++;
        for (int x = 0; x < cfg.n_routed_experts; x++)
            fprintf(f, "%s%.17g", x ? ", " : "", acc.mass[(size_t)l * cfg.n_routed_experts + x]);
        fprintf(f, "], \"count\": [");
        for (int x = 0; x < cfg.n_routed_experts; x++)
            fprintf(f, "%s%llu", x ? ", " : "", (unsigned long long)acc.count[(size_t)l * cfg.n_routed_experts + x]);
        fprintf(f, "]}");
    }
    fprintf(f, "\n  }\n}\n");
    if (fclose(f) != 0) {
        f = NULL;
        rc = fail(cmd, "%s: %s", out, strerror(errno));
        goto done;
    }
    f = NULL;
    printf("wrote %s: %zu tokens, %d MoE layers' routing\n", out, n_ids, n_moe);
done:
    if (f) fclose(f);
    free(acc.mass);
    free(acc.count);
    free(win);
    free(ids);
    free(text);
    ds_context_free(c);
    ds_model_close(m);
    return rc;
}

static const char main_help[] =
    "usage: ds <command> [arguments]\n"
    "\n"
    "Commands:\n"
    "  convert <hf_dir> <out.dsm>   convert a Hugging Face checkpoint (or a GGUF) into a container\n"
    "  convert-lora <peft_dir> <out.dsa> --base <base.dsm>   convert a PEFT LoRA adapter for a base\n"
    "  lora merge <base.dsm> <adapter.dsa> <out.dsm>   bake an adapter into a copy of its base\n"
    "  keygen <file>                write a new random key file (mode 0600)\n"
    "  inspect <model.dsm>          print the header, identity, config, tensors and segments\n"
    "                               (an adapter: inspect <adapter.dsa> --base <base.dsm>)\n"
    "  verify <model.dsm>           authenticate every segment of a container\n"
    "  run <model.dsm> -p PROMPT    generate text from a prompt\n"
    "  chat <model.dsm>             an interactive conversation (lines on stdin)\n"
    "  tokenize <model.dsm> TEXT    print the token ids of TEXT\n"
    "  logits <model.dsm> --tokens IDS --out FILE   write the logits of every position\n"
    "  perplexity <model.dsm> --file TEXT   perplexity on a text, as llama-perplexity (--kl-divergence)\n"
    "  calibrate <model.dsm> --file TEXT --out STATS.json   routing statistics for convert --drop-experts\n"
    "  bench <model.dsm>            speed, peak memory and expert-pager figures (--sweep)\n"
    "\n"
    "  ds <command> --help          options of one command (man ds: all of them)\n"
    "  The model may also come as -m/--model FILE, and -t, -c, -s, -f, -n -1, -r,\n"
    "  --ignore-eos work as in llama.cpp.\n"
    "  ds --version                 library version and source id\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

typedef struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} subcommand;


static const subcommand commands[] = {
    {"convert", cmd_convert, convert_help},
    {"convert-lora", ds_cmd_convert_lora, ds_convert_lora_help},
    {"lora", ds_cmd_lora, ds_lora_help},
    {"keygen", cmd_keygen, keygen_help},
    {"inspect", cmd_inspect, inspect_help},
    {"verify", cmd_verify, verify_help},
    {"run", cmd_run, run_help},
    {"chat", cmd_chat, chat_help},
    {"tokenize", cmd_tokenize, tokenize_help},
    {"logits", cmd_logits, logits_help},
    {"perplexity", cmd_perplexity, perplexity_help},
    {"calibrate", cmd_calibrate, calibrate_help},
    {"bench", ds_cmd_bench, ds_bench_help},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(main_help, stderr);
        return EXIT_USAGE;
    }
    const char *c = argv[1];
    if (!strcmp(c, "--help") || !strcmp(c, "-h")) {
        fputs(main_help, stdout);
        return 0;
    }
    if (!strcmp(c, "--version") || !strcmp(c, "-V")) {
        printf("ds %s (library %s, source %s)\n", DS_VERSION_STRING, ds_version_string(), ds_source_id());
        return 0;
    }
    if (!strcmp(c, "help")) {
        /* "ds help <command>" */
        if (argc == 2) {
            fputs(main_help, stdout);
            return 0;
        }
        for (size_t i = 0; i < N_COMMANDS; i++)
            if (!strcmp(argv[2], commands[i].name)) {
                fputs(commands[i].help, stdout);
                return 0;
            }
        fprintf(stderr, "ds: unknown command '%s'\nTry 'ds --help'.\n", argv[2]);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(c, commands[i].name)) {
            int rc = commands[i].fn(argc - 1, argv + 1);
            if (fflush(stdout) != 0 && rc == 0) {
                fprintf(stderr, "ds %s: writing to stdout: %s\n", c, strerror(errno));
                rc = EXIT_FAILURE;
            }
            return rc;
        }
    if (c[0] == '-') fprintf(stderr, "ds: unknown option '%s'\nTry 'ds --help'.\n", c);
    else fprintf(stderr, "ds: unknown command '%s'\nTry 'ds --help'.\n", c);
    return EXIT_USAGE;
}
