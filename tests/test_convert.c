/*
 * test_convert.c — the converter's error paths on damaged checkpoints (each a
 * distinct status and a message that names the problem, and no output file
 * left behind), its notices and progress, and its parameter checks
 * (convert-4: a ds_convert_params not made by ds_convert_default_params(),
 * zeroed or put together by hand, is refused naming it; quant out of range
 * is refused naming the field).
 *
 * Works on copies of $DS_TESTDATA/v2lite with one thing broken at a time.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <dirent.h>
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
    /* converting onto an existing file replaces it atomically */
    T_STATUS("convert-3.8", ds_convert(vdir, out, &cp), DS_OK, ds_last_error());
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
    static const int bad_quant[] = {-1, DS_QUANT_Q8_0 + 1};
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

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    return t_finish("test_convert");
}
