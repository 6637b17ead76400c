/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * ds_lora.c — the LoRA commands of ds:
 *
 *     ds convert-lora <peft_dir> <out.dsa> --base <base.dsm> (--key-file F | --passphrase-env VAR | --no-encrypt)
 *                     [--base-key-file F2 | --base-passphrase-env VAR2] [--f16] [--force] [-v]
 *     ds lora merge <base.dsm> <adapter.dsa> <out.dsm> (--key-file F | --passphrase-env VAR)
 *                   [--adapter-key-file F2] [--scale S] [--force] [-v]
 *     ds lora info <adapter.dsa> --base <base.dsm> [keys]   (what ds inspect prints for an adapter)
 *
 * Uses only the public API in deepseek.h. Key bytes and passphrase copies
 * are wiped (secret_wipe).
 */
#define _POSIX_C_SOURCE 200809L

#include "deepseek.h"
#include "tools/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Warnings and errors (the library's notices on opening are chatter here). */
static void lora_log_warn(void *user, ds_log_level level, const char *msg) {
    if (level <= DS_LOG_WARN) fprintf(stderr, "ds %s: %s: %s\n", (const char *)user,
                                      level == DS_LOG_ERROR ? "error" : "warning", msg);
}

/* Notices too (-v). */
static void lora_log(void *user, ds_log_level level, const char *msg) {
    const char *cmd = user;
    if (level > DS_LOG_INFO) return;
    fprintf(stderr, "ds %s: %s: %s\n", cmd,
            level == DS_LOG_ERROR ? "error" : level == DS_LOG_WARN ? "warning" : "notice", msg);
}

/* Opens a model (metadata only unless load) with a secret. */
static ds_model *lora_open_base(const char *cmd, const char *path, const secret *s, int load) {
    ds_model_params mp = ds_model_default_params();
    mp.load_weights = load;
    mp.log = lora_log_warn;
    mp.log_user = (void *)cmd;
    secret_params(s, &mp);
    ds_model *m = NULL;
    char hint[PATH_HINT_MAX];
    ds_status st = ds_model_open(&m, path, &mp);
    if (st != DS_OK) {
        fail(cmd, "base %s: %s%s", path, errmsg(st), model_path_hint(path, hint, sizeof hint));
        return NULL;
    }
    return m;
}

static ds_adapter *lora_open_adapter(const char *cmd, ds_model *base, const char *path, const secret *s) {
    ds_adapter_params ap = ds_adapter_default_params();
    if (s->have_key) {
        ap.key = s->key;
        ap.key_len = sizeof s->key;
    } else if (s->pass) {
        ap.passphrase = s->pass;
        ap.passphrase_len = s->pass_len;
    }
    ds_adapter *a = NULL;
    ds_status st = ds_adapter_open(&a, base, path, &ap);
    if (st != DS_OK) {
        fail(cmd, "%s", errmsg(st));
        return NULL;
    }
    return a;
}

/* "--base-key-file F" / "--base-passphrase-env VAR" (and the adapter's)
 * into a second key_opts. */
static int second_key_option(argscan *a, key_opts *k, const char *file_opt, const char *env_opt) {
    const char *v;
    if (is_opt(a, file_opt, &v)) return set_once(a, &k->key_file, v, file_opt), 1;
    if (is_opt(a, env_opt, &v)) return set_once(a, &k->pass_env, v, env_opt), 1;
    return 0;
}

void ds_hex(const unsigned char *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = 0;
}

/* ==== ds convert-lora ===================================================== */

const char ds_convert_lora_help[] =
    "usage: ds convert-lora <peft_dir> <out.dsa> --base <base.dsm> [options]\n"
    "\n"
    "Converts a PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)\n"
    "into a sealed adapter bound to one base model: the converted .dsm it was\n"
    "made for (another conversion of the same checkpoint is another base: convert\n"
    "the adapter again for it). Every target module, tensor, shape and rank is\n"
    "checked against the base's architecture; nothing is written on an error.\n"
    "Exactly one of these seals the adapter:\n"
    "  --key-file F          AES-256-GCM with the 32-byte key in F\n"
    "  --passphrase-env VAR  a passphrase (Argon2id) from the environment variable VAR\n"
    "  --no-encrypt          plaintext, integrity tags only\n"
    "Options:\n"
    "  --base FILE           the base model (required)\n"
    "  --base-key-file F     the base's key, when it is not the adapter's\n"
    "  --base-passphrase-env VAR   the base's passphrase, when it is not the adapter's\n"
    "  --f16                 store A and B as F16 (default F32)\n"
    "  --force               replace <out.dsa> if it exists (never an input)\n"
    "  -v, --verbose         say what was converted\n";

int ds_cmd_convert_lora(int argc, char **argv) {
    const char *cmd = "convert-lora";
    argscan a = {cmd, argc, argv, 0, 0, 0};
    key_opts ko = {0}, bko = {0};
    const char *pos[2] = {0}, *base_path = NULL;
    int npos = 0, f16 = 0, force = 0, verbose = 0;
    for (a.i = 1; a.i < argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            if (npos == 2) return usage_error(cmd, "too many arguments ('%s')", argv[a.i]);
            pos[npos++] = argv[a.i];
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(ds_convert_lora_help, stdout);
            return 0;
        } else if (key_option(&a, &ko, 1)) {
        } else if (second_key_option(&a, &bko, "--base-key-file", "--base-passphrase-env")) {
        } else if (is_opt(&a, "--base", &v)) {
            set_once(&a, &base_path, v, "--base");
        } else if (is_flag(&a, "--f16")) {
            f16 = 1;
        } else if (is_flag(&a, "--force")) {
            force = 1;
        } else if (is_flag(&a, "--verbose") || is_flag(&a, "-v")) {
            verbose = 1;
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (npos < 2) return usage_error(cmd, "needs <peft_dir> and <out.dsa>");
    if (!base_path) return usage_error(cmd, "--base <base.dsm> is required (the model the adapter is for)");
    int rc = key_opts_check(cmd, &ko);
    if (!rc) rc = key_opts_check(cmd, &bko);
    if (rc) return rc;
    if (!ko.key_file && !ko.pass_env && !ko.no_encrypt)
        return usage_error(cmd, "one of --key-file F, --passphrase-env VAR or --no-encrypt is required");
    if (bko.key_file && bko.pass_env)
        return usage_error(cmd, "--base-key-file and --base-passphrase-env exclude each other");

    secret sec, bsec;
    memset(&bsec, 0, sizeof bsec);
    if (secret_load(cmd, &ko, &sec) || ((bko.key_file || bko.pass_env) && secret_load(cmd, &bko, &bsec))) {
        secret_wipe(&sec);
        secret_wipe(&bsec);
        return EXIT_FAILURE;
    }
    /* the base's key defaults to the adapter's */
    const secret *base_sec = bko.key_file || bko.pass_env ? &bsec : &sec;
    ds_model *base = lora_open_base(cmd, base_path, base_sec, 0);
    ds_status st = DS_ERR_IO;
    if (base) {
        ds_convert_lora_params p = ds_convert_lora_default_params();
        p.encrypt = !ko.no_encrypt;
        if (sec.have_key) {
            p.key = sec.key;
            p.key_len = sizeof sec.key;
        } else if (sec.pass) {
            p.passphrase = sec.pass;
            p.passphrase_len = sec.pass_len;
        }
        p.dtype = f16 ? DS_LORA_F16 : DS_LORA_F32;
        p.overwrite = force;
        p.log = verbose ? lora_log : lora_log_warn;
        p.log_user = (void *)cmd;
        st = ds_convert_lora(pos[0], base, pos[1], &p);
        if (st != DS_OK) fail(cmd, "%s", errmsg(st));
        ds_model_close(base);
    }
    secret_wipe(&sec);
    secret_wipe(&bsec);
    if (st != DS_OK) return EXIT_FAILURE;
    struct stat sb;
    printf("wrote %s: %.3f MB\n", pos[1], stat(pos[1], &sb) == 0 ? (double)sb.st_size / 1e6 : 0.0);
    return 0;
}

/* ==== ds lora ============================================================= */

const char ds_lora_help[] =
    "usage: ds lora merge <base.dsm> <adapter.dsa> <out.dsm> [options]\n"
    "       ds lora info <adapter.dsa> --base <base.dsm> [options]\n"
    "\n"
    "merge: bakes the adapter into a copy of its base: each adapted matrix\n"
    "becomes W + scale * s * B A (s = lora_alpha / r, or / sqrt(r) with rsLoRA),\n"
    "re-encoded in the base's type (Q8_0 and Q4_0 take the rounding that\n"
    "brings); every other tensor and record is copied. The new model has an\n"
    "identity of its own (adapters for the base do not apply to it).\n"
    "info: the adapter's record (what ds inspect prints for an adapter).\n"
    "Options:\n"
    "  --key-file F | --passphrase-env VAR   the key of the base, the adapter and\n"
    "                        (merge) the new model\n"
    "  --no-encrypt          (merge) write the new model in plaintext\n"
    "  --adapter-key-file F  the adapter's key, when it is not the base's\n"
    "  --adapter-passphrase-env VAR   the adapter's passphrase, likewise\n"
    "  --base FILE           (info) the base model\n"
    "  --scale S             (merge) the adapter's weight (default 1)\n"
    "  --json                (info) one JSON object on stdout\n"
    "  --force               (merge) replace <out.dsm> if it exists (never an input)\n";

/* Prints an adapter's record (ds inspect, ds lora info). */
int ds_lora_print_info(const ds_adapter *a, const char *path, int json) {
    ds_adapter_info in;
    ds_status st = ds_adapter_get_info(a, &in);
    if (st != DS_OK) return fail("inspect", "%s", errmsg(st));
    char id[2 * DS_MODEL_ID_BYTES + 1];
    ds_hex(in.base_id, sizeof in.base_id, id);
    double share = in.base_params ? 100.0 * (double)in.n_params / (double)in.base_params : 0;
    const char *dt = in.dtype == DS_DTYPE_F16 ? "f16" : "f32";
    if (json) {
        printf("{\n  \"path\": \"%s\",\n  \"kind\": \"lora adapter\",\n  \"base_id\": \"%s\",\n  \"r\": %d,\n"
               "  \"lora_alpha\": %g,\n  \"use_rslora\": %s,\n  \"scale\": %g,\n  \"targets\": \"%s\",\n"
               "  \"n_params\": %llu,\n  \"base_params\": %llu,\n  \"dtype\": \"%s\",\n  \"bytes\": %llu,\n"
               "  \"resident_bytes\": %llu\n}\n",
               path, id, in.rank, (double)in.alpha, in.rslora ? "true" : "false", (double)in.scale, in.targets,
               (unsigned long long)in.n_params, (unsigned long long)in.base_params, dt,
               (unsigned long long)in.bytes, (unsigned long long)in.resident_bytes);
    } else {
        printf("file             %s (LoRA adapter)\n", path);
        printf("base id          %s\n", id);
        printf("rank r           %d\n", in.rank);
        printf("lora_alpha       %g%s\n", (double)in.alpha, in.rslora ? " (rsLoRA)" : "");
        printf("scale            %g (alpha / %s)\n", (double)in.scale, in.rslora ? "sqrt(r)" : "r");
        printf("targets          %s\n", in.targets);
        printf("parameters       %llu (%.3f%% of the base's %llu)\n", (unsigned long long)in.n_params, share,
               (unsigned long long)in.base_params);
        printf("dtype            %s\n", dt);
        printf("tensors          %.3f MB of A and B, %.3f MB resident\n", (double)in.bytes / 1e6,
               (double)in.resident_bytes / 1e6);
    }
    return fflush(stdout) != 0 ? fail("inspect", "writing to stdout failed") : 0;
}

int ds_cmd_lora(int argc, char **argv) {
    const char *cmd = "lora";
    if (argc < 2 || (strcmp(argv[1], "merge") && strcmp(argv[1], "info"))) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            fputs(ds_lora_help, stdout);
            return 0;
        }
        return usage_error(cmd, "needs a subcommand: merge or info");
    }
    int merge = !strcmp(argv[1], "merge");
    cmd = merge ? "lora merge" : "lora info";
    argscan a = {cmd, argc - 1, argv + 1, 0, 0, 0};
    key_opts ko = {0}, ako = {0};
    const char *pos[3] = {0}, *scale_s = NULL, *base_path = NULL;
    int npos = 0, force = 0, json = 0, want = merge ? 3 : 1;
    for (a.i = 1; a.i < a.argc && !a.bad; a.i++) {
        const char *v;
        int p = is_positional(&a);
        if (p < 0) continue;
        if (p) {
            if (npos == want) return usage_error(cmd, "too many arguments ('%s')", a.argv[a.i]);
            pos[npos++] = a.argv[a.i];
        } else if (is_flag(&a, "--help") || is_flag(&a, "-h")) {
            fputs(ds_lora_help, stdout);
            return 0;
        } else if (key_option(&a, &ko, merge)) {
        } else if (second_key_option(&a, &ako, "--adapter-key-file", "--adapter-passphrase-env")) {
        } else if (merge && is_opt(&a, "--scale", &v)) {
            set_once(&a, &scale_s, v, "--scale");
        } else if (!merge && is_opt(&a, "--base", &v)) {
            set_once(&a, &base_path, v, "--base");
        } else if (merge && is_flag(&a, "--force")) {
            force = 1;
        } else if (!merge && is_flag(&a, "--json")) {
            json = 1;
        } else {
            return unknown_option(&a);
        }
    }
    if (a.bad) return EXIT_USAGE;
    if (npos < want)
        return usage_error(cmd, merge ? "needs <base.dsm> <adapter.dsa> <out.dsm>" : "needs <adapter.dsa>");
    if (!merge) {
        if (!base_path) return usage_error(cmd, "--base <base.dsm> is required");
        pos[1] = pos[0];
        pos[0] = base_path;
    }
    float scale = 1.0f;
    if (scale_s) {
        char *end;
        double d = strtod(scale_s, &end);
        if (!*scale_s || *end || !isfinite(d)) return usage_error(cmd, "--scale needs a number, not '%s'", scale_s);
        scale = (float)d;
    }
    int rc = key_opts_check(cmd, &ko);
    if (!rc) rc = key_opts_check(cmd, &ako);
    if (rc) return rc;
    if (merge && !ko.key_file && !ko.pass_env && !ko.no_encrypt)
        return usage_error(cmd, "one of --key-file F, --passphrase-env VAR or --no-encrypt is required");
    secret sec, asec;
    memset(&asec, 0, sizeof asec);
    if (secret_load(cmd, &ko, &sec) || ((ako.key_file || ako.pass_env) && secret_load(cmd, &ako, &asec))) {
        secret_wipe(&sec);
        secret_wipe(&asec);
        return EXIT_FAILURE;
    }
    rc = EXIT_FAILURE;
    ds_model *base = lora_open_base(cmd, pos[0], &sec, 1);
    ds_adapter *ad = base ? lora_open_adapter(cmd, base, pos[1], ako.key_file || ako.pass_env ? &asec : &sec) : NULL;
    if (ad && !merge) {
        rc = ds_lora_print_info(ad, pos[1], json);
    } else if (ad) {
        ds_convert_lora_params p = ds_convert_lora_default_params();
        p.encrypt = !ko.no_encrypt;
        if (sec.have_key) {
            p.key = sec.key;
            p.key_len = sizeof sec.key;
        } else if (sec.pass) {
            p.passphrase = sec.pass;
            p.passphrase_len = sec.pass_len;
        }
        p.overwrite = force;
        p.log = lora_log;
        p.log_user = (void *)cmd;
        ds_status st = ds_lora_merge(ad, scale, pos[2], &p);
        if (st != DS_OK) fail(cmd, "%s", errmsg(st));
        else {
            struct stat sb;
            printf("wrote %s: %.1f MB (%s merged at scale %g)\n", pos[2],
                   stat(pos[2], &sb) == 0 ? (double)sb.st_size / 1e6 : 0.0, pos[1], (double)scale);
            rc = 0;
        }
    }
    if (ad) (void)ds_adapter_close(ad);
    ds_model_close(base);
    secret_wipe(&sec);
    secret_wipe(&asec);
    return rc;
}
