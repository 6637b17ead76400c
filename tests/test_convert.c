/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_convert.c — the converter's error paths on damaged checkpoints (each a
 * distinct status and a message that names the problem, and no output file
 * left behind), its notices and progress, and its parameter checks
 * (convert-4: a ds_convert_params not made by ds_convert_default_params(),
 * zeroed or put together by hand, is refused naming it; quant out of range
 * is refused naming the field); convert-5: an existing output (refused
 * without overwrite, untouched on failure) and an output that is one of the
 * inputs (refused always); convert-6: tokenizers the runtime's loader or the
 * model's vocabulary refuse; convert-7: inputs that are not regular files.
 *
 * Works on copies of $DS_TESTDATA/v2lite with one thing broken at a time.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-convert-XXXXXX";
static unsigned char key[32];

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_file(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b, 1, n, f);
    fclose(f);
}

/* A fresh copy of the v2lite checkpoint in tmpdir/ck; returns its path. */
static const char *fresh_copy(void) {
    static char dir[600];
    static const char *files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"};
    snprintf(dir, sizeof dir, "%s/ck", tmpdir);
    mkdir(dir, 0755);
    for (size_t i = 0; i < 4; i++) {
        char src[600], dst[700];
        snprintf(src, sizeof src, "%s/v2lite/%s", testdata, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        size_t n = 0;
        char *b = read_file(src, &n);
        if (b) write_file(dst, b, n);
        free(b);
    }
    return dir;
}

static char *ck_file(const char *name) {
    static char p[700];
    snprintf(p, sizeof p, "%s/ck/%s", tmpdir, name);
    return p;
}

/* True when the output directory holds neither the output nor a temp file. */
static bool nothing_left(const char *out) {
    if (access(out, F_OK) == 0) return false;
    DIR *d = opendir(tmpdir);
    if (!d) return false;
    bool clean = true;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) clean = false;
    closedir(d);
    return clean;
}

static int log_saw_mtp;
static void log_cb(void *user, ds_log_level lvl, const char *msg) {
    (void)user;
    (void)lvl;
    if (strstr(msg, "multi-token")) log_saw_mtp = 1;
}

static ds_status run(const char *dir, const char *out) {
    ds_convert_params cp = ds_convert_default_params();
    cp.key = key;
    cp.key_len = 32;
    cp.log = log_cb;
    return ds_convert(dir, out, &cp);
}

/* Expect a failure with status `want`, a message containing `needle`, and no
 * output left behind. */
static void expect_fail(const char *id, const char *dir, ds_status want, const char *needle) {
    char out[700];
    snprintf(out, sizeof out, "%s/out.dsm", tmpdir);
    ds_status s = run(dir, out);
    T_STATUS(id, s, want, ds_last_error());
    if (needle) T_CHECK(id, strstr(ds_last_error(), needle) != NULL, "message lacks '%s': %s", needle, ds_last_error());
    T_CHECK(id, nothing_left(out), "output or temporary file left behind");
}

/* Replaces the first occurrence of `from` in a file by `to`. */
static bool edit_text(const char *path, const char *from, const char *to) {
    size_t n = 0;
    char *b = read_file(path, &n);
    if (!b) return false;
    char *hit = strstr(b, from);
    if (!hit) {
        free(b);
        return false;
    }
    size_t fl = strlen(from), tl = strlen(to);
    char *nb = malloc(n - fl + tl + 1);
    size_t pre = (size_t)(hit - b);
    memcpy(nb, b, pre);
    memcpy(nb + pre, to, tl);
    memcpy(nb + pre + tl, hit + fl, n - pre - fl);
    write_file(path, nb, n - fl + tl);
    free(b);
    free(nb);
    return true;
}

/* Rewrites the safetensors header through `edit` (same data section); the
 * new header is padded with spaces to its old length when shorter. */
static bool edit_st_header(bool (*edit)(char *hdr, size_t len)) {
    const char *path = ck_file("model.safetensors");
    size_t n = 0;
    char *b = read_file(path, &n);
    if (!b) return false;
    uint64_t hl = dsi_rd64((uint8_t *)b);
    bool ok = hl + 8 <= n && edit(b + 8, (size_t)hl);
    if (ok) write_file(path, b, n);
    free(b);
    return ok;
}

static bool rename_up_proj(char *h, size_t len) {
    (void)len;
    char *p = strstr(h, "experts.3.up_proj.weight");
    if (!p) return false;
    p[9] = 'q';  /* up_proj -> uq_proj, same length */
    return true;
}

/* Swaps the two dims of the first 2-D tensor whose dims differ but print with
 * the same number of digits: same bytes, wrong shape. */
static bool swap_shape(char *h, size_t len) {
    char *p = h;
    while ((p = strstr(p, "\"shape\"")) && (size_t)(p - h) < len) {
        char *lb = strchr(p, '[');
        unsigned long a, b;
        int na = 0, nb = 0;
        if (lb && sscanf(lb, "[%lu%n", &a, &na) == 1) {
            char *q = lb + na;
            while (*q == ' ' || *q == ',') q++;
            if (sscanf(q, "%lu%n", &b, &nb) == 1 && q[nb] == ']' && a != b) {
                char sa[32], sb[32];
                int la = snprintf(sa, sizeof sa, "%lu", a), lbn = snprintf(sb, sizeof sb, "%lu", b);
                if (la == lbn) {
                    memcpy(lb + 1, sb, (size_t)la);
                    memcpy(q, sa, (size_t)la);
                    return true;
                }
            }
        }
        p++;
    }
    return false;
}

static bool break_json(char *h, size_t len) {
    (void)len;
    h[0] = 'x';
    return true;
}

static bool bad_dtype(char *h, size_t len) {
    char *p = strstr(h, "\"F32\"");
    if (!p) p = strstr(h, "\"BF16\"");
    if (!p) p = strstr(h, "\"F16\"");
    if (!p || (size_t)(p - h) >= len) return false;
    if (p[1] == 'B') memcpy(p, "\"I16\" ", 6);
    else if (p[1] == 'F' && p[2] == '3') memcpy(p, "\"I32\"", 5);
    else memcpy(p, "\"I16\"", 5);
    return true;
}

static bool grow_offset(char *h, size_t len) {
    /* the largest end offset gains a leading digit: far beyond the file */
    char *p = h, *best = NULL;
    unsigned long long bestv = 0;
    while ((p = strstr(p, "\"data_offsets\"")) && (size_t)(p - h) < len) {
        char *c = strchr(p, ',');
        unsigned long long v;
        if (c && sscanf(c + 1, " %llu", &v) == 1 && v >= bestv) {
            bestv = v;
            best = c + 1;
        }
        p++;
    }
    if (!best) return false;
    while (*best == ' ') best++;
    *best = '9';
    return true;
}

static int cancel_after;
static int progress_cb(void *user, uint64_t done, uint64_t total, uint64_t bytes) {
    (void)bytes;
    uint64_t *last = user;
    last[0] = done;
    last[1] = total;
    return cancel_after >= 0 && done >= (uint64_t)cancel_after;
}

/* ==== 5: the output: existing files, inputs ============================== */
static bool same_bytes(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = read_file(a, &na), *y = read_file(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* Runs the converter with overwrite on or off. */
static ds_status run_ow(const char *dir, const char *out, int overwrite) {
    ds_convert_params cp = ds_convert_default_params();
    cp.key = key;
    cp.key_len = 32;
    cp.overwrite = overwrite;
    return ds_convert(dir, out, &cp);
}

static bool no_temp_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool clean = true;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) clean = false;
    closedir(d);
    return clean;
}

static void test_output(void) {
    const char *dir = fresh_copy();
    char out[700], keep[700];
    snprintf(out, sizeof out, "%s/existing.dsm", tmpdir);
    snprintf(keep, sizeof keep, "%s/existing.copy", tmpdir);
    const char precious[] = "precious bytes that must survive\n";
    write_file(out, precious, sizeof precious - 1);
    write_file(keep, precious, sizeof precious - 1);
    /* 5.1: an existing output is refused without overwrite, untouched */
    ds_status s = run_ow(dir, out, 0);
    T_STATUS("convert-5.1", s, DS_ERR_EXISTS, ds_last_error());
    T_CHECK("convert-5.1", strstr(ds_last_error(), "--force") && strstr(ds_last_error(), out), "message: %s",
            ds_last_error());
    T_CHECK("convert-5.1", same_bytes(out, keep) && no_temp_in(tmpdir), "the existing file was changed or a temporary left");
    /* 5.2: a failed conversion with overwrite leaves the existing file as it was */
    T_CHECK("convert-5.2", edit_text(ck_file("config.json"), "DeepseekV2ForCausalLM", "LlamaForCausalLM"), "edit");
    s = run_ow(dir, out, 1);
    T_STATUS("convert-5.2", s, DS_ERR_ARCH, ds_last_error());
    T_CHECK("convert-5.2", same_bytes(out, keep) && no_temp_in(tmpdir), "a failed conversion changed the existing file");
    /* 5.3: with overwrite it is replaced by a container */
    dir = fresh_copy();
    s = run_ow(dir, out, 1);
    T_STATUS("convert-5.3", s, DS_OK, ds_last_error());
    ds_file_info fi;
    T_STATUS("convert-5.3", ds_file_info_read(out, &fi), DS_OK, ds_last_error());
    T_CHECK("convert-5.3", no_temp_in(tmpdir), "a temporary file was left");
    unlink(out);
    unlink(keep);

    /* 5.4-5.8: the output is one of the inputs: refused even with overwrite,
     * the input intact */
    char copy[700], hard[700], soft[700];
    snprintf(copy, sizeof copy, "%s/shard.copy", tmpdir);
    {
        size_t n = 0;
        char *b = read_file(ck_file("model.safetensors"), &n);
        if (b) write_file(copy, b, n);
        free(b);
    }
    snprintf(hard, sizeof hard, "%s/hard.dsm", tmpdir);
    snprintf(soft, sizeof soft, "%s/soft.dsm", tmpdir);
    T_CHECK("convert-5.4", link(ck_file("model.safetensors"), hard) == 0 && symlink(ck_file("model.safetensors"), soft) == 0,
            "cannot make links");
    static const struct { const char *id, *what; } cases[] = {
        {"convert-5.5", "the shard"}, {"convert-5.6", "a hard link to the shard"},
        {"convert-5.7", "a symbolic link to the shard"}, {"convert-5.8", "config.json"},
    };
    const char *targets[] = {ck_file("model.safetensors"), hard, soft, NULL};
    char cfg_path[700], cfg_copy[700];
    snprintf(cfg_path, sizeof cfg_path, "%s", ck_file("config.json"));
    snprintf(cfg_copy, sizeof cfg_copy, "%s/config.copy", tmpdir);
    {
        size_t n = 0;
        char *b = read_file(cfg_path, &n);
        if (b) write_file(cfg_copy, b, n);
        free(b);
    }
    targets[3] = cfg_path;
    char shard_path[700];
    snprintf(shard_path, sizeof shard_path, "%s", ck_file("model.safetensors"));
    targets[0] = shard_path;
    for (int i = 0; i < 4; i++) {
        for (int ow = 0; ow <= 1; ow++) {
            s = run_ow(dir, targets[i], ow);
            T_CHECK(cases[i].id, ow ? s == DS_ERR_INVALID_ARG : (s == DS_ERR_INVALID_ARG || s == DS_ERR_EXISTS),
                    "output = %s, overwrite %d: status %d, message %s", cases[i].what, ow, (int)s, ds_last_error());
            if (ow)
                T_CHECK(cases[i].id, strstr(ds_last_error(), "is the input") != NULL, "message: %s", ds_last_error());
        }
        struct stat st;
        T_CHECK(cases[i].id, same_bytes(shard_path, copy) && same_bytes(cfg_path, cfg_copy) &&
                                 lstat(soft, &st) == 0 && S_ISLNK(st.st_mode) && no_temp_in(tmpdir) &&
                                 no_temp_in(dir),
                "an input was changed, a link replaced or a temporary file left (output = %s)", cases[i].what);
    }
    /* the input is still a working checkpoint */
    snprintf(out, sizeof out, "%s/after.dsm", tmpdir);
    T_STATUS("convert-5.9", run_ow(dir, out, 0), DS_OK, ds_last_error());
    unlink(out);
    unlink(hard);
    unlink(soft);
    unlink(copy);
    unlink(cfg_copy);
}

/* ==== 6: the tokenizer, as the runtime loads it =========================== */
/* Edits tokenizer.json of a fresh copy; the runtime's loader must refuse it
 * (or want_loader_ok: accept it, and the model's vocabulary refuse it), and
 * the converter must refuse it with the loader's message, leaving nothing. */
static void expect_tok_refused(const char *id, const char *from, const char *to, bool want_loader_ok,
                               const char *needle) {
    const char *dir = fresh_copy();
    if (!edit_text(ck_file("tokenizer.json"), from, to)) {
        T_CHECK(id, 0, "edit of tokenizer.json failed ('%s' not found)", from);
        return;
    }
    size_t n = 0, cn = 0;
    char *tj = read_file(ck_file("tokenizer.json"), &n), *cj = read_file(ck_file("tokenizer_config.json"), &cn);
    ds_tokenizer *t = NULL;
    ds_status ls = ds_tokenizer_new(&t, tj, n, cj, cn, NULL);
    char loader_msg[600];
    snprintf(loader_msg, sizeof loader_msg, "%s", ds_last_error());
    ds_tokenizer_free(t);
    free(tj);
    free(cj);
    if (want_loader_ok) T_CHECK(id, ls == DS_OK, "the runtime's loader refuses it: %s", loader_msg);
    else T_CHECK(id, ls != DS_OK, "the runtime's loader accepts it");
    char out[700];
    snprintf(out, sizeof out, "%s/out.dsm", tmpdir);
    ds_status s = run(dir, out);
    if (want_loader_ok) {
        T_STATUS(id, s, DS_ERR_CONFIG, ds_last_error());
    } else {
        T_STATUS(id, s, ls, ds_last_error());
        T_CHECK(id, strstr(ds_last_error(), loader_msg) != NULL, "not the loader's message ('%s'): %s", loader_msg,
                ds_last_error());
    }
    if (needle) T_CHECK(id, strstr(ds_last_error(), needle) != NULL, "message lacks '%s': %s", needle, ds_last_error());
    T_CHECK(id, strstr(ds_last_error(), "tokenizer.json") != NULL, "message does not name the file: %s", ds_last_error());
    T_CHECK(id, nothing_left(out), "output or temporary file left behind");
}

static void test_tokenizer_check(void) {
    expect_tok_refused("convert-6.1", "\"h e\"", "\"h zzqq\"", false, "zzqq");            /* merge, unknown token */
    expect_tok_refused("convert-6.2", "\"!\": 3,", "\"!\": -3,", false, NULL);             /* negative id */
    expect_tok_refused("convert-6.3", "\"!\": 3,", "\"!\": 99999999,", false, NULL);       /* huge id */
    expect_tok_refused("convert-6.4", "\"type\": \"BPE\"", "\"type\": \"Unigram\"", false, "Unigram");
    expect_tok_refused("convert-6.5", "\"Regex\": \"\\\\p{N}{1,3}\"", "\"Regex\": \"(\\\\p{N}{1,3}\"", false, NULL);
    /* an added token beyond config.json's vocab_size (512): the loader
     * gives it id 512, which the model cannot embed */
    expect_tok_refused("convert-6.6", "\"added_tokens\": [",
                       "\"added_tokens\": [{\"id\": 512, \"content\": \"<extra>\", \"special\": true},", true,
                       "vocab_size 512");
    /* an id written beyond it (the content is in the vocabulary) */
    expect_tok_refused("convert-6.7", "\"added_tokens\": [", "\"added_tokens\": [{\"id\": 9999, \"content\": \"!\"},",
                       true, "9999");
    /* two added tokens with one id */
    expect_tok_refused("convert-6.8", "\"id\": 490,", "\"id\": 489,", false, "both have id 489");
}

/* ==== 7: inputs that are not regular files ================================ */
static void on_alarm(int sig) { (void)sig; }

static void test_not_regular(void) {
    /* the alarm turns a blocked open of a FIFO into EINTR (no restart), so
     * code without the check fails here instead of hanging */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    static const char *names[] = {"config.json", "tokenizer.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof id, "convert-7.%d", i + 1);
        const char *dir = fresh_copy();
        unlink(ck_file(names[i]));
        if (mkfifo(ck_file(names[i]), 0600) != 0) {
            T_SKIP(id, "mkfifo failed");
            continue;
        }
        alarm(10);
        expect_fail(id, dir, DS_ERR_IO, "not a regular file");
        alarm(0);
        unlink(ck_file(names[i]));
    }
    const char *dir = fresh_copy();
    unlink(ck_file("tokenizer.json"));
    mkdir(ck_file("tokenizer.json"), 0755);
    expect_fail("convert-7.4", dir, DS_ERR_IO, "directory");
    rmdir(ck_file("tokenizer.json"));
    if (access("/dev/zero", R_OK) == 0) {
        dir = fresh_copy();
        unlink(ck_file("model.safetensors"));
        T_CHECK("convert-7.5", symlink("/dev/zero", ck_file("model.safetensors")) == 0, "symlink");
        expect_fail("convert-7.5", dir, DS_ERR_IO, "character device");
        unlink(ck_file("model.safetensors"));
    }
}

/* 9: expert pruning (drop_experts, drop_calib_path) through the API: the
 * parameters' errors, the ranking rule, the queries on the result and the
 * routing observer. (tests/test_drop_experts.sh checks the logits.) */
static int obs_calls, obs_bad, obs_sum[8];
static const unsigned char *obs_present;   /* layer 1's experts */
static void obs_cb(void *user, int layer, int n_tokens, int k, const int *experts, const float *weights) {
    (void)user;
    (void)weights;
    obs_calls++;
    if (layer < 0 || layer >= 8 || k != 2) {
        obs_bad++;
        return;
    }
    obs_sum[layer] += n_tokens * k;
    for (int i = 0; i < n_tokens * k; i++)
        if (experts[i] < 0 || experts[i] >= 8 || (layer == 1 && !obs_present[experts[i]])) obs_bad++;
}

static void write_calib(const char *path, int n_routed, const char *tail) {
    /* v2lite: 3 layers (1 dense), 8 experts, top-2, ungrouped; layer 1:
     * experts 2 and 5 least mass; layer 2: equal mass, expert 6 and 7 fewer
     * selections, tie between 6 and 7 broken by the count, then 0 and 1 by
     * the id (the higher first) */
    char b[1400];
    snprintf(b, sizeof b,
             "{\"format\": \"deepseek.h calibration 1\", \"model_id\": \"00\", \"text\": \"t.txt\", \"n_tokens\": 10,"
             " \"config\": {\"arch\": %d, \"n_layers\": 3, \"n_routed_experts\": %d, \"hidden_size\": 64,"
             " \"moe_intermediate_size\": 32, \"first_k_dense_replace\": 1, \"moe_layer_freq\": 1,"
             " \"n_experts_per_tok\": 2, \"n_group\": 1, \"topk_group\": 1, \"vocab_size\": 512},"
             " \"layers\": {\"1\": {\"mass\": [5, 6, 0.5, 7, 8, 0.25, 9, 10], \"count\": [1, 1, 1, 1, 1, 1, 1, 1]},"
             " \"2\": {\"mass\": [1, 1, 1, 1, 1, 1, 1, 1], \"count\": [3, 3, 4, 4, 4, 4, 2, 1]}}%s",
             (int)DS_ARCH_DEEPSEEK_V2, n_routed, tail);
    write_file(path, b, strlen(b));
}

static void test_drop_experts(const char *dir) {
    char out[700], calib[700];
    snprintf(out, sizeof out, "%s/drop.dsm", tmpdir);
    snprintf(calib, sizeof calib, "%s/calib.json", tmpdir);
    ds_convert_params p = ds_convert_default_params();
    p.encrypt = 0;
    p.quant = DS_QUANT_F32;
    const double bad_r[] = {-0.1, 1.0, 2.0, NAN};
    for (size_t i = 0; i < sizeof bad_r / sizeof bad_r[0]; i++) {
        p.drop_experts = bad_r[i];
        p.drop_calib_path = calib;
        ds_status st = ds_convert(dir, out, &p);
        T_CHECK("convert-9.1", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "outside [0, 1)") && nothing_left(out),
                "R %g: status %d '%s'", bad_r[i], (int)st, ds_last_error());
    }
    p.drop_experts = 0.25;
    p.drop_calib_path = NULL;
    ds_status st = ds_convert(dir, out, &p);
    T_CHECK("convert-9.2", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "calibration") && nothing_left(out),
            "no calibration file: status %d '%s'", (int)st, ds_last_error());
    p.drop_calib_path = calib;
    write_calib(calib, 16, "}");
    st = ds_convert(dir, out, &p);
    T_CHECK("convert-9.3", st == DS_ERR_CALIBRATION && strstr(ds_last_error(), "another model") && nothing_left(out),
            "another model: status %d '%s'", (int)st, ds_last_error());
    write_calib(calib, 8, "");   /* the closing brace missing */
    st = ds_convert(dir, out, &p);
    T_CHECK("convert-9.4", st == DS_ERR_JSON && strstr(ds_last_error(), "calib.json") && nothing_left(out),
            "malformed: status %d '%s'", (int)st, ds_last_error());
    write_calib(calib, 8, "}");
    p.drop_experts = 0.8;   /* 6 of 8: 2 left = top_k, allowed */
    st = ds_convert(dir, out, &p);
    T_STATUS("convert-9.5", st, DS_OK, ds_last_error());
    unlink(out);
    p.drop_experts = 0.9;   /* 7 of 8: 1 left < top_k */
    st = ds_convert(dir, out, &p);
    T_CHECK("convert-9.5", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "num_experts_per_tok") && nothing_left(out),
            "too few left: status %d '%s'", (int)st, ds_last_error());
    T_CHECK("convert-9.5", ds_status_string(DS_ERR_CALIBRATION) && strstr(ds_status_string(DS_ERR_CALIBRATION), "calibration"),
            "status string");

    p.drop_experts = 0.25;
    st = ds_convert(dir, out, &p);
    T_STATUS("convert-9.6", st, DS_OK, ds_last_error());
    if (st != DS_OK) return;
    ds_model *m = NULL;
    ds_model_params mp = ds_model_default_params();
    mp.allow_plaintext = 1;
    st = ds_model_open(&m, out, &mp);
    T_STATUS("convert-9.6", st, DS_OK, ds_last_error());
    if (st != DS_OK) return;
    ds_expert_pruning ep;
    st = ds_model_expert_pruning(m, &ep);
    T_CHECK("convert-9.6", st == DS_OK && ep.pruned == 1 && ep.ratio == 0.25 && ep.n_dropped == 2 &&
                               !strcmp(ep.calib_file, "calib.json") && !strcmp(ep.calib_text, "t.txt") &&
                               ep.calib_tokens == 10 && ep.json && ep.json_len > 0,
            "pruning info: %d %d %g %d '%s' '%s'", (int)st, ep.pruned, ep.ratio, ep.n_dropped, ep.calib_file,
            ep.calib_text);
    unsigned char l1[8], l2[8];
    st = ds_model_layer_experts(m, 1, l1, 8);
    ds_status st2 = ds_model_layer_experts(m, 2, l2, 8);
    /* layer 1: least mass 5 (0.25) and 2 (0.5); layer 2: equal mass, fewest
     * selections 7 (1) and 6 (2) */
    static const unsigned char w1[8] = {1, 1, 0, 1, 1, 0, 1, 1}, w2[8] = {1, 1, 1, 1, 1, 1, 0, 0};
    T_CHECK("convert-9.7", st == DS_OK && st2 == DS_OK && !memcmp(l1, w1, 8) && !memcmp(l2, w2, 8),
            "kept experts: %d %d", (int)st, (int)st2);
    T_STATUS("convert-9.7", ds_model_layer_experts(m, 0, l1, 8), DS_ERR_INVALID_ARG, "a dense layer");
    T_STATUS("convert-9.7", ds_model_layer_experts(m, 1, l1, 7), DS_ERR_INVALID_ARG, "short n");
    T_STATUS("convert-9.8", ds_context_set_routing_observer(NULL, obs_cb, NULL), DS_ERR_INVALID_ARG, "NULL context");
    ds_context *c = NULL;
    st = ds_context_new(&c, m, NULL);
    T_STATUS("convert-9.8", st, DS_OK, ds_last_error());
    if (st == DS_OK) {
        obs_present = w1;
        T_STATUS("convert-9.8", ds_context_set_routing_observer(c, obs_cb, NULL), DS_OK, ds_last_error());
        int32_t tok[12];
        for (int i = 0; i < 12; i++) tok[i] = 3 + 37 * i;
        st = ds_context_eval(c, tok, 12, NULL, 0);
        T_STATUS("convert-9.8", st, DS_OK, ds_last_error());
        T_CHECK("convert-9.8", obs_calls == 2 && obs_bad == 0 && obs_sum[0] == 0 && obs_sum[1] == 24 && obs_sum[2] == 24,
                "observer: %d calls, %d bad, sums %d %d %d", obs_calls, obs_bad, obs_sum[0], obs_sum[1], obs_sum[2]);
        /* 9.9: paged through an expert cache of 3 slots (evicting) = resident */
        int V = 512;
        float *ref = malloc((size_t)12 * V * sizeof(float)), *got = malloc((size_t)12 * V * sizeof(float));
        ds_context_reset(c);
        T_STATUS("convert-9.9", ds_context_set_routing_observer(c, NULL, NULL), DS_OK, ds_last_error());
        st = ref && got ? ds_context_eval(c, tok, 12, ref, 1) : DS_ERR_NOMEM;
        T_STATUS("convert-9.9", st, DS_OK, ds_last_error());
        ds_context_free(c);
        c = NULL;
        ds_model *mp2 = NULL;
        ds_model_params pp = mp;
        pp.expert_cache_bytes = 3 * 28672;   /* an F32 expert of 32 x 64 x 3 is 24 KiB: 3 slots of 28 KiB */
        st = ds_model_open(&mp2, out, &pp);
        T_STATUS("convert-9.9", st, DS_OK, ds_last_error());
        ds_cache_stats cs;
        memset(&cs, 0, sizeof cs);
        if (st == DS_OK && ref && got) {
            ds_context *c2 = NULL;
            st = ds_context_new(&c2, mp2, NULL);
            T_STATUS("convert-9.9", st, DS_OK, ds_last_error());
            for (int i = 0; st == DS_OK && i < 12; i++) {   /* token by token: each its own choice */
                st = ds_context_eval(c2, tok + i, 1, got + (size_t)i * V, 0);
            }
            T_STATUS("convert-9.9", st, DS_OK, ds_last_error());
            float md = 0;
            for (size_t i = 0; i < (size_t)12 * V; i++) md = fmaxf(md, fabsf(got[i] - ref[i]));
            T_CHECK("convert-9.9", st == DS_OK && md <= 1e-4f, "paged vs resident: max |diff| %g", (double)md);
            T_STATUS("convert-9.9", ds_model_cache_stats(mp2, &cs), DS_OK, ds_last_error());
            T_CHECK("convert-9.9", cs.n_slots == 3 && cs.misses > 0 && cs.evictions > 0,
                    "cache stats: %d slots, %llu misses, %llu evictions", cs.n_slots, (unsigned long long)cs.misses,
                    (unsigned long long)cs.evictions);
            ds_context_free(c2);
        }
        ds_model_close(mp2);
        free(ref);
        free(got);
    }
    ds_model_close(m);
    unlink(out);
}

int main(void) {
    testdata = getenv("DS_TESTDATA");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/v2lite/config.json", testdata ? testdata : "");
    if (!testdata || access(probe, R_OK) != 0 || !mkdtemp(tmpdir)) {
        T_SKIP("convert", "no generated checkpoints ($DS_TESTDATA)");
        return t_finish("test_convert");
    }
    for (int i = 0; i < 32; i++) key[i] = (unsigned char)(7 * i);
    const char *dir;

    /* 1: config and tokenizer files */
    dir = fresh_copy();
    T_CHECK("convert-1.1", edit_text(ck_file("config.json"), "DeepseekV2ForCausalLM", "LlamaForCausalLM"), "edit");
    expect_fail("convert-1.1", dir, DS_ERR_ARCH, "LlamaForCausalLM");
    dir = fresh_copy();
    T_CHECK("convert-1.2", edit_text(ck_file("config.json"), "}", ",}"), "edit");
    expect_fail("convert-1.2", dir, DS_ERR_JSON, "config.json");
    dir = fresh_copy();
    unlink(ck_file("config.json"));
    expect_fail("convert-1.3", dir, DS_ERR_IO, "config.json");
    dir = fresh_copy();
    T_CHECK("convert-1.4", edit_text(ck_file("tokenizer.json"), "{", "{{"), "edit");
    expect_fail("convert-1.4", dir, DS_ERR_JSON, "tokenizer.json");
    dir = fresh_copy();
    T_CHECK("convert-1.5", edit_text(ck_file("config.json"), "\"hidden_size\": 64", "\"hidden_size\": \"64\""),
            "edit (config.json formatting changed?)");
    expect_fail("convert-1.5", dir, DS_ERR_CONFIG, "hidden_size");
    dir = fresh_copy();
    T_CHECK("convert-1.6", edit_text(ck_file("config.json"), "\"hidden_size\": 64", "\"hidden_size\": 48"), "edit");
    expect_fail("convert-1.6", dir, DS_ERR_SHAPE, "expected");

    /* 2: safetensors */
    dir = fresh_copy();
    T_CHECK("convert-2.1", edit_st_header(rename_up_proj), "edit");
    expect_fail("convert-2.1", dir, DS_ERR_MISSING_TENSOR, "experts.3.up_proj.weight");
    dir = fresh_copy();
    T_CHECK("convert-2.2", edit_st_header(swap_shape), "edit");
    expect_fail("convert-2.2", dir, DS_ERR_SHAPE, "expected");
    dir = fresh_copy();
    T_CHECK("convert-2.3", edit_st_header(break_json), "edit");
    expect_fail("convert-2.3", dir, DS_ERR_JSON, "model.safetensors");
    dir = fresh_copy();
    T_CHECK("convert-2.4", edit_st_header(bad_dtype), "edit");
    expect_fail("convert-2.4", dir, DS_ERR_SHAPE, "not supported");
    dir = fresh_copy();
    T_CHECK("convert-2.5", edit_st_header(grow_offset), "edit");
    expect_fail("convert-2.5", dir, DS_ERR_SAFETENSORS, "model.safetensors");
    {
        /* header length beyond the limit, and beyond the file */
        dir = fresh_copy();
        size_t n = 0;
        char *b = read_file(ck_file("model.safetensors"), &n);
        dsi_wr64((uint8_t *)b, (uint64_t)1 << 40);
        write_file(ck_file("model.safetensors"), b, n);
        expect_fail("convert-2.6", dir, DS_ERR_LIMIT, "model.safetensors");
        dsi_wr64((uint8_t *)b, (uint64_t)n);
        write_file(ck_file("model.safetensors"), b, n);
        char out[700];
        snprintf(out, sizeof out, "%s/out.dsm", tmpdir);
        ds_status s = run(dir, out);
        T_CHECK("convert-2.7", s == DS_ERR_TRUNCATED || s == DS_ERR_SAFETENSORS, "status %d: %s", s, ds_last_error());
        T_CHECK("convert-2.7", nothing_left(out), "output left behind");
        /* data section cut short */
        dsi_wr64((uint8_t *)b, dsi_rd64((const uint8_t *)b));
        free(b);
        dir = fresh_copy();
        b = read_file(ck_file("model.safetensors"), &n);
        write_file(ck_file("model.safetensors"), b, n - 100);
        s = run(dir, out);
        T_CHECK("convert-2.8", s == DS_ERR_TRUNCATED || s == DS_ERR_SAFETENSORS, "status %d: %s", s, ds_last_error());
        T_CHECK("convert-2.8", nothing_left(out), "output left behind");
        free(b);
    }
    dir = fresh_copy();
    unlink(ck_file("model.safetensors"));
    expect_fail("convert-2.9", dir, DS_ERR_IO, "model.safetensors");

    /* 3: parameters, cancellation, notices */
    char out[700], vdir[600];
    snprintf(out, sizeof out, "%s/out.dsm", tmpdir);
    snprintf(vdir, sizeof vdir, "%s/v2lite", testdata);
    ds_convert_params cp = ds_convert_default_params();
    T_STATUS("convert-3.1", ds_convert(vdir, out, &cp), DS_ERR_INVALID_ARG, ds_last_error());
    cp.key = key;
    cp.key_len = 32;
    cp.passphrase = "pw";
    cp.passphrase_len = 2;
    T_STATUS("convert-3.2", ds_convert(vdir, out, &cp), DS_ERR_INVALID_ARG, ds_last_error());
    cp.passphrase = NULL;
    cp.chunk_bytes = 100;
    T_STATUS("convert-3.3", ds_convert(vdir, out, &cp), DS_ERR_INVALID_ARG, ds_last_error());
    cp.chunk_bytes = 0;
    uint64_t seen[2] = {0, 0};
    cp.progress = progress_cb;
    cp.progress_user = seen;
    cancel_after = 3;
    T_STATUS("convert-3.4", ds_convert(vdir, out, &cp), DS_ERR_CANCELLED, ds_last_error());
    T_CHECK("convert-3.4", nothing_left(out), "cancelled conversion left a file");
    cancel_after = -1;
    T_STATUS("convert-3.5", ds_convert(vdir, out, &cp), DS_OK, ds_last_error());
    T_CHECK("convert-3.6", seen[0] == seen[1] && seen[1] > 0, "last progress %llu/%llu", (unsigned long long)seen[0],
            (unsigned long long)seen[1]);
    T_CHECK("convert-3.7", access(out, R_OK) == 0, "no output after success");
    /* converting onto an existing file: refused, unless overwrite, which
     * replaces it atomically */
    T_STATUS("convert-3.8", ds_convert(vdir, out, &cp), DS_ERR_EXISTS, ds_last_error());
    cp.overwrite = 1;
    T_STATUS("convert-3.8b", ds_convert(vdir, out, &cp), DS_OK, ds_last_error());
    cp.overwrite = 0;
    unlink(out);

    char v3dir[600];
    snprintf(v3dir, sizeof v3dir, "%s/v3", testdata);
    log_saw_mtp = 0;
    T_STATUS("convert-3.9", run(v3dir, out), DS_OK, ds_last_error());
    T_CHECK("convert-3.10", log_saw_mtp, "no notice about the skipped MTP layer");
    unlink(out);

    /* 4: the struct's zeros are not its defaults (quant F32, encrypt 0) */
    ds_convert_params zero;
    memset(&zero, 0, sizeof zero);
    ds_status st = ds_convert(vdir, out, &zero);
    T_CHECK("convert-4.1", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "ds_convert_default_params()") &&
                               nothing_left(out),
            "zeroed params: status %d, message '%s'", (int)st, ds_last_error());
    ds_convert_params d = ds_convert_default_params(), byhand = zero;
    byhand.quant = d.quant;
    byhand.encrypt = d.encrypt;
    byhand.key = key;
    byhand.key_len = 32;
    st = ds_convert(vdir, out, &byhand);
    T_CHECK("convert-4.2", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "ds_convert_default_params()") &&
                               nothing_left(out) && d.quant == DS_QUANT_Q8_0 && d.encrypt == 1 && d.magic != 0,
            "params set by hand: status %d, message '%s'", (int)st, ds_last_error());
    static const int bad_quant[] = {-1, DS_QUANT_Q4_0 + 1};
    for (int i = 0; i < 2; i++) {
        ds_convert_params q = ds_convert_default_params();
        q.key = key;
        q.key_len = 32;
        q.quant = (ds_quant)bad_quant[i];
        char want[32];
        snprintf(want, sizeof want, "quant is %d", bad_quant[i]);
        st = ds_convert(vdir, out, &q);
        T_CHECK("convert-4.3", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), want) && nothing_left(out),
                "quant %d: status %d, message '%s'", bad_quant[i], (int)st, ds_last_error());
    }
    /* 4.4: the recipe's fields: DS_QUANT_INHERIT is allowed there (and
     * DS_QUANT_KEEP, for GGUF input: 4.6), other values outside the formats
     * are refused naming the field */
    static const int bad_class[] = {-3, DS_QUANT_Q4_0 + 1};
    for (int i = 0; i < 2; i++)
        for (int f = 0; f < 3; f++) {
            ds_convert_params q = ds_convert_default_params();
            q.key = key;
            q.key_len = 32;
            ds_quant *field[3] = {&q.quant_experts, &q.quant_core, &q.quant_router};
            static const char *const fname[3] = {"quant_experts", "quant_core", "quant_router"};
            *field[f] = (ds_quant)bad_class[i];
            char want[48];
            snprintf(want, sizeof want, "%s is %d", fname[f], bad_class[i]);
            st = ds_convert(vdir, out, &q);
            T_CHECK("convert-4.4", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), want) && nothing_left(out),
                    "%s %d: status %d, message '%s'", fname[f], bad_class[i], (int)st, ds_last_error());
        }
    for (int f = 0; f < 4; f++) {
        /* 4.6: DS_QUANT_KEEP keeps a GGUF's types; a checkpoint directory has none to keep */
        ds_convert_params q = ds_convert_default_params();
        q.key = key;
        q.key_len = 32;
        ds_quant *field[4] = {&q.quant, &q.quant_experts, &q.quant_core, &q.quant_router};
        *field[f] = DS_QUANT_KEEP;
        st = ds_convert(vdir, out, &q);
        T_CHECK("convert-4.6", st == DS_ERR_INVALID_ARG && strstr(ds_last_error(), "DS_QUANT_KEEP is for GGUF input") &&
                                   nothing_left(out),
                "field %d: status %d, message '%s'", f, (int)st, ds_last_error());
    }
    {
        ds_convert_params d2 = ds_convert_default_params();
        T_CHECK("convert-4.5", d2.quant_experts == DS_QUANT_INHERIT && d2.quant_core == DS_QUANT_INHERIT &&
                                   d2.quant_router == DS_QUANT_F32,
                "recipe defaults %d %d %d", (int)d2.quant_experts, (int)d2.quant_core, (int)d2.quant_router);
    }

    test_output();
    test_tokenizer_check();
    test_not_regular();
    test_drop_experts(vdir);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    return t_finish("test_convert");
}
