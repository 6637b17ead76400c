/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * cli.h — the command-line plumbing the tools share: tools/ds.c and
 * tools/ds_bench.c (the ds tool) and tools/server/server.c (ds-server) link
 * tools/cli.c. Messages, option scanning, keys and passphrases, the model
 * options, the stop signals. Not part of the library.
 */
#ifndef DS_TOOLS_CLI_H
#define DS_TOOLS_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "deepseek.h"

#define EXIT_USAGE 2

#if defined(__GNUC__) || defined(__clang__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/* ==== Messages ============================================================ */

/* The program's name in messages ("ds", "ds-server"): each program defines
 * it once. */
extern const char cli_prog[];

/* "<prog> <cmd>: <message>" on stderr ("<prog>: <message>" when cmd is
 * NULL); returns EXIT_FAILURE. */
int fail(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* A usage problem: the message as fail() writes it, a pointer to --help;
 * returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* The library's message for the last failure, or the status text if the
 * library left none. */
const char *errmsg(ds_status s);

/* Seconds on a monotonic clock. */
double now_s(void);

/* ==== Values ============================================================== */

/* Strict unsigned parse: decimal digits only, <= max. 1 = ok. */
int parse_u64(const char *s, uint64_t max, uint64_t *out);

/* A size in bytes: digits with an optional fraction and unit, as dd
 * reads them: K, M, G, T, P (or KiB, MiB, ...) are powers of 1024, KB, MB,
 * GB, TB, PB powers of 1000; case-insensitive. "8G", "8192M", "1.5GiB",
 * "8589934592". No sign, no spaces. 1 = ok (0 is a valid result here). */
int parse_size(const char *s, uint64_t *out);

/* --evict values: "lru" or "lfu" -> *out, 1 = ok; and back. */
int parse_evict(const char *s, ds_evict_policy *out);
const char *evict_name(ds_evict_policy p);

/* --prefetch values: "auto", "always", "off" -> a ds_prefetch_mode, or -1;
 * and back. */
int parse_prefetch(const char *s);
const char *prefetch_name(int mode);

/* ==== Command-line scanning =============================================== */
/*
 * A program walks its argv with these. Options may come before or after the
 * positional arguments; "--opt value" and "--opt=value" both work; "--" ends
 * the options. Anything starting with '-' that no one knows is a usage error.
 */
typedef struct argscan {
    const char *cmd;    /* the subcommand in messages, or NULL */
    int argc;
    char **argv;
    int i;              /* index of the current argument */
    int only_pos;       /* after "--" */
    int bad;            /* a usage error was already reported (exit 2) */
} argscan;

/* Is the current argument the flag `name` (no value)? */
int is_flag(argscan *a, const char *name);
/* Is it the option `name` taking a value? On a match stores the value
 * (consuming the next argument when not "--name=value") and returns 1;
 * reports a usage error and sets a->bad when the value is absent. */
int is_opt(argscan *a, const char *name, const char **val);
/* Stores an option that must not be repeated; 0 (and a->bad) if it was. */
int set_once(argscan *a, const char **slot, const char *val, const char *name);
/* Is it a positional argument? 1 yes, 0 no, -1 it was "--" (consumed). */
int is_positional(argscan *a);
/* Reports the current argument as unknown; returns EXIT_USAGE. */
int unknown_option(argscan *a);

/* ==== Keys and passphrases ================================================ */

/* Where the key material comes from; at most one of the three. */
typedef struct key_opts {
    const char *key_file;
    const char *pass_env;     /* name of the environment variable */
    int no_encrypt;           /* convert only */
    int encrypt;              /* convert only: explicit --encrypt */
    int allow_plaintext;      /* --allow-plaintext (not convert): open a plaintext file even with a key
                                 (ds_model_params.allow_plaintext); ds-server: serve one at all */
    int keep_env;             /* leave the passphrase variable set (ds bench: its children read it) */
} key_opts;

/* Secret material held by a tool; wiped by secret_wipe. */
typedef struct secret {
    unsigned char key[DS_KEY_BYTES];
    int have_key;
    char *pass;               /* malloc'd copy of the passphrase */
    size_t pass_len;
} secret;

/* Recognises --key-file / --passphrase-env, and --no-encrypt, --encrypt when
 * allow_no_encrypt (convert) or else --allow-plaintext. Returns 1 when the
 * current argument was one of them. */
int key_option(argscan *a, key_opts *k, int allow_no_encrypt);
/* Checks the key options are not contradictory. Returns 0 or EXIT_USAGE. */
int key_opts_check(const char *cmd, const key_opts *k);
/* Loads the key file or copies the passphrase out of the environment. The
 * passphrase variable is then overwritten in place and unset (unless
 * keep_env), so that /proc/PID/environ and child processes no longer show
 * it. Returns 0 or EXIT_FAILURE (message printed); wipe s either way. */
int secret_load(const char *cmd, const key_opts *k, secret *s);
void secret_wipe(secret *s);
/* Points mp's key or passphrase at s (which must outlive the open). */
void secret_params(const secret *s, ds_model_params *mp);

/* ==== Model options ======================================================= */
/*
 * The options that say how to open a model and run contexts on it, shared by
 * the ds inference commands and ds-server.
 */
typedef struct model_opts {
    key_opts ko;
    const char *threads_s, *ctx_s, *cache_s, *evict_s, *prefetch_s, *device_s, *gpu_cache_s, *gpu_s;
    int verbose;
    int mlock;                /* --mlock */
    int exact;                /* --exact-activations: F32 activations for int8/4-bit weights */
    int no_huge_pages;        /* --no-huge-pages */
    /* parsed */
    int threads, n_ctx;
    uint64_t cache_bytes, gpu_cache_bytes;
    ds_evict_policy evict;
    int prefetch;
    ds_device device;
    int gpu_index;
} model_opts;

/* Recognises the model options (those allowed by `which`). Returns 1 when
 * the current argument was one of them. */
enum { MO_THREADS = 1, MO_CTX = 2, MO_CACHE = 4 };
int model_option(argscan *a, model_opts *o, int which);
/* Parses the numbers. Returns 0 or EXIT_USAGE. */
int model_opts_check(const char *cmd, model_opts *o);
/* Copies the parsed options into model parameters (threads, expert cache,
 * eviction, prefetch, device, allow_plaintext, mlock, huge_pages); the key and the log are
 * the caller's. */
void model_opts_params(const model_opts *o, ds_model_params *mp);

/* ==== LoRA adapters (--lora, --lora-scaled, --lora-key-file) ============== */
/*
 * llama.cpp's spellings: --lora FILE (scale 1) and --lora-scaled FILE S, each
 * repeatable up to DS_MAX_ADAPTERS in all, applied together in the order
 * given. An adapter is opened with the model's key or passphrase (it is
 * usually sealed with the base's), or with --lora-key-file F's key.
 */
typedef struct lora_opts {
    int n;
    const char *path[DS_MAX_ADAPTERS];
    const char *scale_s[DS_MAX_ADAPTERS];   /* --lora-scaled's S; NULL for --lora */
    float scale[DS_MAX_ADAPTERS];           /* parsed by lora_opts_check (1 for --lora) */
    const char *key_file;                   /* --lora-key-file */
} lora_opts;

/* The adapters open over one model. */
typedef struct lora_set {
    size_t n;
    ds_adapter *a[DS_MAX_ADAPTERS];
    float scale[DS_MAX_ADAPTERS];
    const char *path[DS_MAX_ADAPTERS];      /* lora_opts's, for messages */
} lora_set;

/* Recognises --lora FILE, --lora-scaled FILE S and --lora-key-file F.
 * Returns 1 when the current argument was one of them (a->bad on a usage
 * error). */
int lora_option(argscan *a, lora_opts *o);
/* Parses a scale: a finite decimal number. 1 = ok. */
int parse_lora_scale(const char *s, float *out);
/* Parses the scales. Returns 0 or EXIT_USAGE. */
int lora_opts_check(const char *cmd, lora_opts *o);
/* The parameters an adapter is opened with: the key of --lora-key-file
 * (loaded into *own, which the caller wipes) or else the model's secret;
 * allow_plaintext as the model's. Returns 0 or EXIT_FAILURE (message
 * printed). */
int lora_params(const char *cmd, const char *key_file, const secret *model_secret, int allow_plaintext,
                secret *own, ds_adapter_params *ap);
/* Opens every adapter of o over m (ds_adapter_open) with the parameters
 * lora_params gives. Returns 0, or EXIT_FAILURE with a message naming the
 * file and nothing left open. */
int lora_open(const char *cmd, const lora_opts *o, ds_model *m, const secret *model_secret, int allow_plaintext,
              lora_set *ls);
/* Applies the set to every sequence of c's context. Returns 0 or
 * EXIT_FAILURE (message printed). */
int lora_apply(const char *cmd, const lora_set *ls, ds_context *c);
/* Closes the adapters (after the contexts that applied them are freed,
 * before the model). */
void lora_close(lora_set *ls);
/* One line per adapter on f: "<prefix>PATH: scale S (rank R, alpha A,
 * targets T, N parameters)". */
void lora_describe(FILE *f, const char *prefix, const lora_set *ls);

/* ==== Model paths and the trained length ================================== */

/* When `path` is not a container but something `ds convert` takes (a
 * directory with config.json and *.safetensors: a Hugging Face checkpoint;
 * a GGUF file), a hint to append to the failure's message, written into buf:
 * " (this is a Hugging Face checkpoint: convert it first with `ds convert
 * DIR out.dsm`)"; "" otherwise. */
const char *model_path_hint(const char *path, char *buf, size_t len);
#define PATH_HINT_MAX 4200   /* room for the hint with a path of PATH_MAX */

/* The length the model was trained for (its config's max_position_embeddings,
 * YaRN's scaling included) when n_ctx goes beyond it; 0 when it does not. */
int ctx_beyond_trained(const ds_model *m, int n_ctx);

/* ==== Stop signals (SIGINT, SIGTERM) ====================================== */

/* Set by the handler install_signals() installs (to the signal's number);
 * long operations poll it and ask the library to stop. */
extern volatile sig_atomic_t g_interrupted;
void install_signals(void);

/* For a program that waits for a stop signal with sigwait: blocks the stop
 * signals in the calling thread (call it before any thread exists, so that
 * threads inherit the mask), fills *set with them, and ignores SIGPIPE (a
 * client that goes away is an error on its socket, not the end). */
void block_stop_signals(sigset_t *set);

/* ==== ds bench (tools/ds_bench.c) ========================================= */

int ds_cmd_bench(int argc, char **argv);
extern const char ds_bench_help[];
/* tools/ds_lora.c: ds convert-lora, ds lora (merge, info); the adapter's
 * record as ds inspect prints it. */
int ds_cmd_convert_lora(int argc, char **argv);
extern const char ds_convert_lora_help[];
int ds_cmd_lora(int argc, char **argv);
extern const char ds_lora_help[];
struct ds_adapter;
int ds_lora_print_info(const struct ds_adapter *a, const char *path, int json);
/* n bytes as 2n lowercase hex digits and a NUL into out. */
void ds_hex(const unsigned char *b, size_t n, char *out);

#endif
