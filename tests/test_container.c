/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_container.c — converting the generated checkpoints, reading every
 * tensor back against values numpy computed independently
 * (expected.safetensors), and every kind of bad container: wrong key, flipped
 * bits anywhere, swapped and spliced segments, truncation, other formats,
 * newer versions, a CPU without AES; the header's MAC and the Argon2id caps
 * (container-8), plaintext files where a key is given (container-9), model
 * paths that are not regular files (container-10); the directory entries of
 * the pruned formats (container-20: Q8_0_24 rows exactly, Q8_0_SP strides
 * and the guard; needs no generated data).
 *
 * Needs $DS_TESTDATA (made by tests/gen/make_checkpoint.py --all).
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

static const char *testdata;
static char tmpdir[] = "/tmp/ds-test-container-XXXXXX";
static unsigned char key[32], key2[32];

/* ==== helpers ============================================================ */
static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_file(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b, 1, n, f);
    fclose(f);
}

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static ds_status convert(const char *family, ds_quant q, int mode, const char *out, uint32_t chunk) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", testdata, family);
    ds_convert_params cp = ds_convert_default_params();
    cp.quant = q;
    cp.chunk_bytes = chunk;
    cp.overwrite = 1;   /* the round trips reuse one path */
    if (mode == 0) cp.encrypt = 0;
    else if (mode == 1) {
        cp.key = key;
        cp.key_len = 32;
    } else {
        cp.passphrase = "open sesame";
        cp.passphrase_len = 11;
        cp.argon_opslimit = 1;
        cp.argon_memlimit = 1 << 16;
    }
    return ds_convert(dir, out, &cp);
}

static ds_status open_model(const char *path, const unsigned char *k, int load, ds_model **m) {
    ds_model_params mp = ds_model_default_params();
    mp.key = k;
    mp.key_len = k ? 32 : 0;
    mp.load_weights = load;
    mp.n_threads = 2;
    return ds_model_open(m, path, &mp);
}

/* open + verify; returns the first failing status */
static ds_status open_verify(const char *path, const unsigned char *k) {
    ds_model *m = NULL;
    ds_status s = open_model(path, k, 0, &m);
    if (!s) s = ds_model_verify(m, 2, NULL, NULL);
    ds_model_close(m);
    return s;
}

/* ==== round trips ======================================================== */
static float half_round(float x) {
#if defined(__FLT16_MAX__)
    return (float)(_Float16)x;   /* the compiler's conversion: independent of ours */
#else
    return dsi_f16_to_f32(dsi_f32_to_f16(x));
#endif
}

static void round_trip(const char *family, ds_quant q, const char *id) {
    char exp_path[512];
    snprintf(exp_path, sizeof exp_path, "%s/%s/expected.safetensors", testdata, family);
    const char *out = tmp_path("rt.dsm");
    ds_status s = convert(family, q, 1, out, 0);
    T_STATUS(id, s, DS_OK, ds_last_error());
    if (s) return;
    ds_model *m = NULL;
    s = open_model(out, key, 1, &m);
    T_STATUS(id, s, DS_OK, ds_last_error());
    if (s) return;
    dsi_alloc al;
    dsi_err e = {0};
    dsi_alloc_init(&al, NULL, &e);
    dsi_st_header *h = NULL;
    s = dsi_st_open(exp_path, &al, &h, &e);
    T_STATUS(id, s, DS_OK, e.msg);
    if (s) {
        ds_model_close(m);
        return;
    }
    int fd = open(exp_path, O_RDONLY);
    size_t bad = 0, checked = 0;
    char first_bad[256] = "";
    T_CHECK(id, h->n == ds_model_tensor_count(m), "expected %zu tensors, container has %zu", h->n,
            ds_model_tensor_count(m));
    for (size_t i = 0; i < h->n; i++) {
        const dsi_st_tensor *t = &h->t[i];
        size_t idx;
        if (ds_model_tensor_find(m, t->name, &idx) != DS_OK) {
            bad++;
            snprintf(first_bad, sizeof first_bad, "%s missing", t->name);
            continue;
        }
        ds_tensor_info ti;
        (void)!ds_model_tensor_info(m, idx, &ti);
        size_t n = (size_t)((t->end - t->begin) / 4);
        float *want = malloc(n * 4), *got = malloc(n * 4);
        if (pread(fd, want, n * 4, (off_t)(h->data_start + t->begin)) != (ssize_t)(n * 4) ||
            ds_model_tensor_read_f32(m, idx, got, n) != DS_OK) {
            bad++;
            snprintf(first_bad, sizeof first_bad, "%s unreadable: %s", t->name, ds_last_error());
        } else {
            size_t cols = (size_t)ti.dims[ti.n_dims - 1];
            for (size_t b = 0; b < n; b += 32) {
                float amax = 0;
                for (size_t k = b; k < b + 32 && k < n; k++) amax = fmaxf(amax, fabsf(want[k]));
                for (size_t k = b; k < b + 32 && k < n; k++) {
                    bool ok;
                    if (ti.dtype == DS_DTYPE_F32) ok = got[k] == want[k];
                    else if (ti.dtype == DS_DTYPE_F16) ok = got[k] == half_round(want[k]);
                    else ok = fabsf(got[k] - want[k]) <= amax / 127.0f * 0.5f * (1.0f + 2e-3f) + 1e-30f;
                    if (!ok && !bad++)
                        snprintf(first_bad, sizeof first_bad, "%s [%zu,%zu] %s: got %g want %g", t->name, k / cols,
                                 k % cols, ds_dtype_name(ti.dtype), (double)got[k], (double)want[k]);
                }
            }
            checked++;
        }
        free(want);
        free(got);
    }
    T_CHECK(id, bad == 0 && checked == h->n, "%zu mismatches in %zu tensors; first: %s", bad, checked, first_bad);
    close(fd);
    dsi_st_free(h);
    ds_model_close(m);
}

/* ==== bad containers ===================================================== */
static uint8_t *orig;
static size_t orig_len;

static ds_status try_bytes(const uint8_t *b, size_t n, const unsigned char *k, int verify) {
    const char *p = tmp_path("bad.dsm");
    write_file(p, b, n);
    if (verify) return open_verify(p, k);
    ds_model *m = NULL;
    ds_status s = open_model(p, k, 1, &m);
    ds_model_close(m);
    return s;
}

static void test_header_damage(void) {
    uint8_t *b = malloc(orig_len);
    /* 2.1: every header field: magic, version, sizes, cipher, salt, key check, checksum */
    static const struct { size_t off; ds_status want; const char *id; } cases[] = {
        {0, DS_ERR_NOT_DSM, "container-2.1a"},   {8, DS_ERR_CORRUPT, "container-2.1b"},
        {12, DS_ERR_CORRUPT, "container-2.1c"},  {16, DS_ERR_CORRUPT, "container-2.1d"},
        {24, DS_ERR_CORRUPT, "container-2.1e"},  {33, DS_ERR_CORRUPT, "container-2.1f"},
        {40, DS_ERR_CORRUPT, "container-2.1g"},  {70, DS_ERR_CORRUPT, "container-2.1h"},
        {130, DS_ERR_CORRUPT, "container-2.1i"}, {200, DS_ERR_CORRUPT, "container-2.1j"},
        {230, DS_ERR_CORRUPT, "container-2.1k"}, {255, DS_ERR_CORRUPT, "container-2.1l"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(b, orig, orig_len);
        b[cases[i].off] ^= 0x10;
        T_STATUS(cases[i].id, try_bytes(b, orig_len, key, 0), cases[i].want, ds_last_error());
    }
    /* 2.2: deliberate edits with a recomputed checksum */
    dsi_header h;
    dsi_err e = {0};
    memcpy(b, orig, orig_len);
    T_STATUS("container-2.2a", dsi_header_parse(b, orig_len, &h, &e), DS_OK, e.msg);
    h.version = DS_FORMAT_VERSION + 1;
    dsi_header_write(&h, NULL, b);
    T_STATUS("container-2.2b", try_bytes(b, orig_len, key, 0), DS_ERR_VERSION, ds_last_error());
    T_CHECK("container-2.2c", strstr(ds_last_error(), "newer") != NULL, "message: %s", ds_last_error());
    memcpy(b, orig, orig_len);
    dsi_header_parse(b, orig_len, &h, &e);
    h.argon_ops = 7;   /* unused for raw keys, but covered by the header's MAC */
    dsi_header_write(&h, NULL, b);
    T_STATUS("container-2.2d", try_bytes(b, orig_len, key, 0), DS_ERR_AUTH, ds_last_error());
    memcpy(b, orig, orig_len);
    dsi_header_parse(b, orig_len, &h, &e);
    h.salt[0] ^= 1;    /* the key check does not depend on the salt: the MAC catches it */
    dsi_header_write(&h, NULL, b);
    T_STATUS("container-2.2e", try_bytes(b, orig_len, key, 0), DS_ERR_AUTH, ds_last_error());
    T_CHECK("container-2.2e", strstr(ds_last_error(), "header modified") != NULL, "message: %s", ds_last_error());
    memcpy(b, orig, orig_len);
    dsi_header_parse(b, orig_len, &h, &e);
    h.cipher = DS_CIPHER_NONE;  /* downgrade to "plaintext" */
    h.kdf = DS_KDF_NONE;
    dsi_header_write(&h, NULL, b);
    T_STATUS("container-2.2f", try_bytes(b, orig_len, NULL, 0), DS_ERR_AUTH, ds_last_error());
    /* with the vendor's key the downgraded file is refused as plaintext */
    T_STATUS("container-2.2g", try_bytes(b, orig_len, key, 0), DS_ERR_PLAINTEXT, ds_last_error());
    free(b);
}

static void test_keys(const char *path) {
    ds_model *m = NULL;
    T_STATUS("container-3.1", open_model(path, key2, 0, &m), DS_ERR_WRONG_KEY, ds_last_error());
    T_CHECK("container-3.2", m == NULL && strstr(ds_last_error(), "wrong key"), "message: %s", ds_last_error());
    T_STATUS("container-3.3", open_model(path, NULL, 0, &m), DS_ERR_NEED_KEY, ds_last_error());
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = 16;
    T_STATUS("container-3.4", ds_model_open(&m, path, &mp), DS_ERR_INVALID_ARG, ds_last_error());
    mp.key = NULL;
    mp.passphrase = "x";
    mp.passphrase_len = 1;
    T_STATUS("container-3.5", ds_model_open(&m, path, &mp), DS_ERR_INVALID_ARG, ds_last_error());
    dsi_cpu_features_mask(DSI_CPU_AES);
    T_STATUS("container-3.6", open_model(path, key, 0, &m), DS_ERR_NO_AES, ds_last_error());
    dsi_cpu_features_mask(0);
    T_STATUS("container-3.7", open_model(tmp_path("does-not-exist.dsm"), key, 0, &m), DS_ERR_IO, ds_last_error());
    ds_allocator half = {0};
    half.malloc_fn = NULL;
    half.free_fn = (void (*)(void *, void *))1;
    mp = ds_model_default_params();
    mp.allocator = half;
    T_STATUS("container-3.8", ds_model_open(&m, path, &mp), DS_ERR_INVALID_ARG, ds_last_error());
}

/* Flips a bit in each chunk (data and tag) of every segment; verify must
 * fail and name that segment. */
static void test_segment_damage(ds_model *ref) {
    uint8_t *b = malloc(orig_len);
    size_t nseg = ds_model_segment_count(ref), bad_status = 0, bad_name = 0, cases = 0, dense_ok = 0, dense_cases = 0;
    char first[600] = "";
    for (size_t i = 0; i < nseg; i++) {
        ds_segment_info si;
        (void)!ds_model_segment_info(ref, i, &si);
        char name[64], want[96];
        ds_model_segment_name(ref, i, name, sizeof name);
        snprintf(want, sizeof want, "(%s)", name);
        for (int where = 0; where < 3; where++) {
            uint64_t off = si.file_offset + (where == 0 ? 0 : where == 1 ? si.stored_bytes / 2 : si.stored_bytes - 1);
            memcpy(b, orig, orig_len);
            b[off] ^= 0x04;
            ds_status s = try_bytes(b, orig_len, key, 1);
            cases++;
            if (s != DS_ERR_AUTH) bad_status++;
            if (!strstr(ds_last_error(), want)) {
                if (!bad_name++) snprintf(first, sizeof first, "segment %zu %s: %s", i, name, ds_last_error());
            }
            if (si.kind == DS_SEGMENT_DENSE && where == 1) {
                /* a full open decrypts dense segments and must refuse too */
                dense_cases++;
                if (try_bytes(b, orig_len, key, 0) == DS_ERR_AUTH) dense_ok++;
            }
        }
    }
    T_CHECK("container-4.1", bad_status == 0 && cases > 0, "%zu of %zu flipped chunks not reported as DS_ERR_AUTH",
            bad_status, cases);
    T_CHECK("container-4.2", bad_name == 0, "%zu messages do not name the segment; first: %s", bad_name, first);
    T_CHECK("container-4.3", dense_ok == dense_cases && dense_cases > 0, "%zu of %zu damaged dense segments opened",
            dense_cases - dense_ok, dense_cases);

    /* padding between segments (no tag covers it): verify still notices */
    {
        ds_segment_info s0, s1;
        (void)!ds_model_segment_info(ref, 0, &s0);
        (void)!ds_model_segment_info(ref, 1, &s1);
        uint64_t gap = s0.file_offset + s0.stored_bytes;
        if (gap < s1.file_offset) {
            memcpy(b, orig, orig_len);
            b[gap] ^= 1;
            T_STATUS("container-4.11", try_bytes(b, orig_len, key, 1), DS_ERR_CORRUPT, ds_last_error());
        } else {
            T_SKIP("container-4.11", "no padding after segment 0");
        }
        memcpy(b, orig, orig_len);
        b[1000] ^= 1;   /* the unused rest of the header page */
        T_STATUS("container-4.12", try_bytes(b, orig_len, key, 1), DS_ERR_CORRUPT, ds_last_error());
    }

    /* metadata at the tail */
    ds_file_info fi;
    (void)!ds_file_info_read(tmp_path("good.dsm"), &fi);
    memcpy(b, orig, orig_len);
    b[fi.meta_offset + fi.meta_bytes / 2] ^= 1;
    T_STATUS("container-4.4", try_bytes(b, orig_len, key, 0), DS_ERR_AUTH, ds_last_error());
    T_CHECK("container-4.5", strstr(ds_last_error(), "metadata") != NULL, "message: %s", ds_last_error());

    /* two expert segments of the same size swapped */
    size_t a = SIZE_MAX, c = SIZE_MAX;
    for (size_t i = 0; i < nseg && c == SIZE_MAX; i++) {
        ds_segment_info si, sj;
        (void)!ds_model_segment_info(ref, i, &si);
        if (si.kind != DS_SEGMENT_EXPERT) continue;
        for (size_t j = i + 1; j < nseg; j++) {
            (void)!ds_model_segment_info(ref, j, &sj);
            if (sj.kind == DS_SEGMENT_EXPERT && sj.stored_bytes == si.stored_bytes) {
                a = i;
                c = j;
                break;
            }
        }
    }
    if (c != SIZE_MAX) {
        ds_segment_info sa, sc;
        (void)!ds_model_segment_info(ref, a, &sa);
        (void)!ds_model_segment_info(ref, c, &sc);
        memcpy(b, orig, orig_len);
        memcpy(b + sa.file_offset, orig + sc.file_offset, sa.stored_bytes);
        memcpy(b + sc.file_offset, orig + sa.file_offset, sa.stored_bytes);
        T_STATUS("container-4.6", try_bytes(b, orig_len, key, 1), DS_ERR_AUTH, ds_last_error());
        char name[64];
        ds_model_segment_name(ref, a, name, sizeof name);
        T_CHECK("container-4.7", strstr(ds_last_error(), name) != NULL, "message does not name %s: %s", name,
                ds_last_error());
    } else {
        T_SKIP("container-4.6", "no two expert segments of equal size");
    }

    /* a segment spliced in from another file sealed with the same key */
    const char *other = tmp_path("other.dsm");
    T_STATUS("container-4.8", convert("v2lite", DS_QUANT_Q8_0, 1, other, 4096), DS_OK, ds_last_error());
    size_t olen = 0;
    uint8_t *ob = read_file(other, &olen);
    if (ob && olen == orig_len) {
        size_t victim = nseg - 2;   /* an expert or dense segment near the end */
        ds_segment_info sv;
        (void)!ds_model_segment_info(ref, victim, &sv);
        memcpy(b, orig, orig_len);
        memcpy(b + sv.file_offset, ob + sv.file_offset, sv.stored_bytes);
        T_STATUS("container-4.9", try_bytes(b, orig_len, key, 1), DS_ERR_AUTH, ds_last_error());
        /* the other file on its own is fine with the same key */
        T_STATUS("container-4.10", open_verify(other, key), DS_OK, ds_last_error());
    } else {
        T_CHECK("container-4.9", 0, "second conversion has a different size (%zu vs %zu)", olen, orig_len);
    }
    free(ob);
    free(b);
}

static void test_truncation_and_formats(void) {
    static const size_t cuts[] = {0, 5, 12, 100, 4096, 5000};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        ds_status s = try_bytes(orig, cuts[i], key, 0);
        ds_status want = cuts[i] < 8 ? DS_ERR_NOT_DSM : DS_ERR_TRUNCATED;
        char id[32];
        snprintf(id, sizeof id, "container-5.%zu", i + 1);
        T_STATUS(id, s, want, ds_last_error());
    }
    T_STATUS("container-5.7", try_bytes(orig, orig_len / 2, key, 0), DS_ERR_TRUNCATED, ds_last_error());
    T_STATUS("container-5.8", try_bytes(orig, orig_len - 1, key, 0), DS_ERR_TRUNCATED, ds_last_error());
    uint8_t *b = malloc(orig_len + 10);
    memcpy(b, orig, orig_len);
    memset(b + orig_len, 0, 10);
    T_STATUS("container-5.9", try_bytes(b, orig_len + 10, key, 0), DS_ERR_CORRUPT, ds_last_error());
    free(b);

    /* other formats */
    char st[512];
    snprintf(st, sizeof st, "%s/v2lite/model.safetensors", testdata);
    ds_model *m = NULL;
    T_STATUS("container-6.1", open_model(st, key, 0, &m), DS_ERR_NOT_DSM, ds_last_error());
    T_CHECK("container-6.2", strstr(ds_last_error(), "safetensors") != NULL, "message: %s", ds_last_error());
    uint8_t gguf[64] = "GGUF\3\0\0\0";
    T_STATUS("container-6.3", try_bytes(gguf, sizeof gguf, key, 0), DS_ERR_NOT_DSM, ds_last_error());
    T_CHECK("container-6.4", strstr(ds_last_error(), "GGUF") != NULL, "message: %s", ds_last_error());
    const char *txt = "hello, this is not a model at all, just some text\n";
    T_STATUS("container-6.5", try_bytes((const uint8_t *)txt, strlen(txt), key, 0), DS_ERR_NOT_DSM, ds_last_error());
    ds_file_info fi;
    T_STATUS("container-6.6", ds_file_info_read(st, &fi), DS_ERR_NOT_DSM, ds_last_error());
}

static void test_plain_and_passphrase(void) {
    /* integrity-only container: opens without a key, damage still caught */
    const char *plain = tmp_path("plain.dsm");
    T_STATUS("container-7.1", convert("v2lite", DS_QUANT_F16, 0, plain, 0), DS_OK, ds_last_error());
    T_STATUS("container-7.2", open_verify(plain, NULL), DS_OK, ds_last_error());
    size_t n = 0;
    uint8_t *b = read_file(plain, &n);
    if (b) {
        b[DSI_HEADER_AREA + 100] ^= 1;
        T_STATUS("container-7.3", try_bytes(b, n, NULL, 1), DS_ERR_AUTH, ds_last_error());
        free(b);
    }
    ds_file_info fi;
    T_STATUS("container-7.4", ds_file_info_read(plain, &fi), DS_OK, ds_last_error());
    T_CHECK("container-7.5", fi.cipher == DS_CIPHER_NONE && fi.kdf == DS_KDF_NONE, "cipher %d kdf %d", fi.cipher, fi.kdf);

    const char *pw = tmp_path("pw.dsm");
    T_STATUS("container-7.6", convert("v2lite", DS_QUANT_Q8_0, 2, pw, 0), DS_OK, ds_last_error());
    ds_model_params mp = ds_model_default_params();
    mp.passphrase = "open sesame";
    mp.passphrase_len = 11;
    ds_model *m = NULL;
    T_STATUS("container-7.7", ds_model_open(&m, pw, &mp), DS_OK, ds_last_error());
    ds_model_close(m);
    m = NULL;
    mp.passphrase = "open sesamE";
    T_STATUS("container-7.8", ds_model_open(&m, pw, &mp), DS_ERR_WRONG_KEY, ds_last_error());
    T_STATUS("container-7.9", open_model(pw, key, 0, &m), DS_ERR_INVALID_ARG, ds_last_error());
    T_STATUS("container-7.10", ds_file_info_read(pw, &fi), DS_OK, ds_last_error());
    T_CHECK("container-7.11", fi.kdf == DS_KDF_ARGON2ID && fi.argon_opslimit == 1, "kdf %d ops %llu", fi.kdf,
            (unsigned long long)fi.argon_opslimit);
}

/* ==== 8: the header authenticated with the key ============================ */
/* A copy of src with its header edited by edit(h), the checksum recomputed
 * and the MAC left as it was: what someone without the key can do. */
static uint8_t *edited(const uint8_t *src, size_t n, void (*edit)(dsi_header *)) {
    uint8_t *b = malloc(n);
    memcpy(b, src, n);
    dsi_header h;
    dsi_err e = {0};
    if (dsi_header_parse(b, n, &h, &e) != DS_OK) printf("note: edited(): %s\n", e.msg);
    edit(&h);
    dsi_header_write(&h, NULL, b);
    return b;
}
static void ed_meta_offset(dsi_header *h) { h->meta_offset += DSI_SEG_ALIGN; h->file_bytes += DSI_SEG_ALIGN; }
static void ed_flags(dsi_header *h) { h->flags = 1; }
static void ed_chunk(dsi_header *h) { h->chunk_bytes *= 2; }
static void ed_file_bytes(dsi_header *h) { h->file_bytes += 1; }
static void ed_meta_plain(dsi_header *h) { h->meta_plain_bytes -= 1; }
static void ed_kdf_argon(dsi_header *h) { h->kdf = DS_KDF_ARGON2ID; h->argon_ops = 1; h->argon_mem = 8192; }
static void ed_ops_over(dsi_header *h) { h->argon_ops = DS_MAX_ARGON_OPS + 1; }
static void ed_mem_over(dsi_header *h) { h->argon_mem = (uint64_t)8 << 30; }
static void ed_ops_within(dsi_header *h) { h->argon_ops += 1; }
static void ed_argon_salt(dsi_header *h) { h->argon_salt[3] ^= 0x40; }
static void ed_version1(dsi_header *h) { h->version = 1; }

static void test_header_auth(void) {
    static const struct {
        void (*edit)(dsi_header *);
        const char *id, *what;
    } cases[] = {
        {ed_meta_offset, "container-8.1", "meta_offset"}, {ed_flags, "container-8.2", "flags"},
        {ed_chunk, "container-8.3", "chunk size"},        {ed_file_bytes, "container-8.4", "file_bytes"},
        {ed_meta_plain, "container-8.5", "meta_plain_bytes"},
    };
    /* each edit, with the right raw key: "header modified", not "wrong key"
     * and not a complaint about the edited field; with a wrong key: "wrong
     * key" (the key is checked first) */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *b = edited(orig, orig_len, cases[i].edit);
        T_STATUS(cases[i].id, try_bytes(b, orig_len, key, 1), DS_ERR_AUTH, ds_last_error());
        T_CHECK(cases[i].id, strstr(ds_last_error(), "header modified") != NULL, "%s edited: %s", cases[i].what,
                ds_last_error());
        char id[48];
        snprintf(id, sizeof id, "%s.wrong-key", cases[i].id);
        T_STATUS(id, try_bytes(b, orig_len, key2, 0), DS_ERR_WRONG_KEY, ds_last_error());
        T_CHECK(id, strstr(ds_last_error(), "wrong key") != NULL, "message: %s", ds_last_error());
        free(b);
    }
    /* a reserved byte set, the checksum recomputed (the MAC covers it) */
    uint8_t *b = malloc(orig_len);
    memcpy(b, orig, orig_len);
    b[170] = 1;
    crypto_generichash(b + DSI_HEADER_BYTES - 32, 32, b, DSI_HEADER_BYTES - 32, NULL, 0);
    T_STATUS("container-8.6", try_bytes(b, orig_len, key, 0), DS_ERR_AUTH, ds_last_error());
    T_CHECK("container-8.6", strstr(ds_last_error(), "header modified") != NULL, "message: %s", ds_last_error());
    free(b);
    /* the kind of key: a raw-key file turned into a passphrase file asks for
     * a passphrase, and one given fails the key check */
    b = edited(orig, orig_len, ed_kdf_argon);
    write_file(tmp_path("bad.dsm"), b, orig_len);
    {
        ds_model_params mp = ds_model_default_params();
        mp.passphrase = "x";
        mp.passphrase_len = 1;
        ds_model *m = NULL;
        T_STATUS("container-8.7", ds_model_open(&m, tmp_path("bad.dsm"), &mp), DS_ERR_WRONG_KEY, ds_last_error());
        ds_model_close(m);
    }
    free(b);
    /* an unedited file with a wrong key */
    T_STATUS("container-8.8", try_bytes(orig, orig_len, key2, 0), DS_ERR_WRONG_KEY, ds_last_error());
    T_CHECK("container-8.8", strstr(ds_last_error(), "wrong key") != NULL, "message: %s", ds_last_error());
    /* version 1 (no MAC) is refused with a way out */
    b = edited(orig, orig_len, ed_version1);
    T_STATUS("container-8.9", try_bytes(b, orig_len, key, 0), DS_ERR_VERSION, ds_last_error());
    T_CHECK("container-8.9", strstr(ds_last_error(), "re-convert") != NULL, "message: %s", ds_last_error());
    free(b);

    /* passphrase files: the Argon2id parameters */
    const char *pw = tmp_path("pw-hdr.dsm");
    T_STATUS("container-8.10", convert("v2lite", DS_QUANT_Q8_0, 2, pw, 0), DS_OK, ds_last_error());
    size_t n = 0;
    uint8_t *pb = read_file(pw, &n);
    if (!pb) return;
    const char *bad = tmp_path("bad.dsm");
    ds_model_params mp = ds_model_default_params();
    mp.passphrase = "open sesame";
    mp.passphrase_len = 11;
    mp.load_weights = 0;
    ds_model *m = NULL;
    ds_file_info fi;
    /* above the caps: refused before the KDF runs. Without a passphrase at
     * all, and by ds_file_info_read (which never derives a key), the status
     * is the cap's too: the refusal does not come from running the KDF */
    static const struct {
        void (*edit)(dsi_header *);
        const char *id, *cap;
    } caps[] = {{ed_ops_over, "container-8.11", "DS_MAX_ARGON_OPS"}, {ed_mem_over, "container-8.12", "DS_MAX_ARGON_MEM"}};
    for (int i = 0; i < 2; i++) {
        b = edited(pb, n, caps[i].edit);
        write_file(bad, b, n);
        T_STATUS(caps[i].id, ds_model_open(&m, bad, &mp), DS_ERR_LIMIT, ds_last_error());
        T_CHECK(caps[i].id, strstr(ds_last_error(), caps[i].cap) != NULL, "message does not name %s: %s", caps[i].cap,
                ds_last_error());
        ds_model_params none = ds_model_default_params();
        char id[48];
        snprintf(id, sizeof id, "%s.no-passphrase", caps[i].id);
        T_STATUS(id, ds_model_open(&m, bad, &none), DS_ERR_LIMIT, ds_last_error());
        snprintf(id, sizeof id, "%s.info", caps[i].id);
        T_STATUS(id, ds_file_info_read(bad, &fi), DS_ERR_LIMIT, ds_last_error());
        free(b);
    }
    /* within the caps: the derived key changes; with the right passphrase
     * the message says that the parameters may have been changed */
    static const struct {
        void (*edit)(dsi_header *);
        const char *id;
    } kd[] = {{ed_ops_within, "container-8.13"}, {ed_argon_salt, "container-8.14"}};
    for (int i = 0; i < 2; i++) {
        b = edited(pb, n, kd[i].edit);
        write_file(bad, b, n);
        T_STATUS(kd[i].id, ds_model_open(&m, bad, &mp), DS_ERR_WRONG_KEY, ds_last_error());
        T_CHECK(kd[i].id, strstr(ds_last_error(), "key-derivation parameters") != NULL, "message: %s", ds_last_error());
        free(b);
    }
    /* other fields of a passphrase file: header modified */
    b = edited(pb, n, ed_flags);
    write_file(bad, b, n);
    T_STATUS("container-8.15", ds_model_open(&m, bad, &mp), DS_ERR_AUTH, ds_last_error());
    T_CHECK("container-8.15", strstr(ds_last_error(), "header modified") != NULL, "message: %s", ds_last_error());
    free(b);
    free(pb);
    /* the converter does not write what the runtime refuses */
    ds_convert_params cp = ds_convert_default_params();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/v2lite", testdata);
    cp.passphrase = "x";
    cp.passphrase_len = 1;
    cp.argon_opslimit = DS_MAX_ARGON_OPS + 1;
    T_STATUS("container-8.16", ds_convert(dir, tmp_path("pw-over.dsm"), &cp), DS_ERR_LIMIT, ds_last_error());
    cp.argon_opslimit = 1;
    cp.argon_memlimit = DS_MAX_ARGON_MEM + 1;
    T_STATUS("container-8.17", ds_convert(dir, tmp_path("pw-over.dsm"), &cp), DS_ERR_LIMIT, ds_last_error());
    T_CHECK("container-8.17", access(tmp_path("pw-over.dsm"), F_OK) != 0, "a file was written");
}

/* ==== 9: a plaintext file where a key is given ============================ */
static void test_plaintext_policy(void) {
    const char *plain = tmp_path("plain9.dsm");
    T_STATUS("container-9.0", convert("v2lite", DS_QUANT_F16, 0, plain, 0), DS_OK, ds_last_error());
    ds_model *m = NULL;
    /* with the key: refused, the message says what and how to allow it */
    T_STATUS("container-9.1", open_model(plain, key, 0, &m), DS_ERR_PLAINTEXT, ds_last_error());
    T_CHECK("container-9.1", m == NULL && strstr(ds_last_error(), "not encrypted") &&
                                 strstr(ds_last_error(), "allow_plaintext"),
            "message: %s", ds_last_error());
    ds_model_params mp = ds_model_default_params();
    mp.passphrase = "open sesame";
    mp.passphrase_len = 11;
    T_STATUS("container-9.2", ds_model_open(&m, plain, &mp), DS_ERR_PLAINTEXT, ds_last_error());
    /* asked for explicitly: it opens */
    mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = 32;
    mp.allow_plaintext = 1;
    T_STATUS("container-9.3", ds_model_open(&m, plain, &mp), DS_OK, ds_last_error());
    ds_model_close(m);
    m = NULL;
    /* no key at all: a plaintext file opens (what --no-encrypt is for) */
    T_STATUS("container-9.4", open_model(plain, NULL, 1, &m), DS_OK, ds_last_error());
    ds_model_close(m);
    m = NULL;
    /* allow_plaintext does not weaken an encrypted file */
    mp.key = key2;
    T_STATUS("container-9.5", ds_model_open(&m, tmp_path("good.dsm"), &mp), DS_ERR_WRONG_KEY, ds_last_error());
    mp.key = key;
    T_STATUS("container-9.6", ds_model_open(&m, tmp_path("good.dsm"), &mp), DS_OK, ds_last_error());
    ds_model_close(m);
    m = NULL;
    /* a plaintext file's header edited (checksum recomputed) is caught too,
     * with its public key: against accidents, not attackers */
    size_t n = 0;
    uint8_t *pb = read_file(plain, &n);
    if (pb) {
        uint8_t *b = edited(pb, n, ed_flags);
        T_STATUS("container-9.7", try_bytes(b, n, NULL, 0), DS_ERR_AUTH, ds_last_error());
        free(b);
        free(pb);
    }
}

/* ==== 10: model paths that are not regular files ========================= */
/* A FIFO with no writer blocks open(2) unless O_NONBLOCK. The alarm turns a
 * hang of the code under test into a failed call (EINTR: the handler does
 * not restart calls), so that code without the check fails this test rather
 * than hanging it; no assertion depends on time. */
static void on_alarm(int sig) { (void)sig; }

static void test_not_regular(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    ds_model *m = NULL;
    ds_file_info fi;
    const char *fifo = tmp_path("fifo.dsm");
    if (mkfifo(fifo, 0600) != 0) {
        T_SKIP("container-10.1", "mkfifo failed");
    } else {
        alarm(10);
        ds_status s = open_model(fifo, key, 0, &m);
        alarm(0);
        T_STATUS("container-10.1", s, DS_ERR_IO, ds_last_error());
        T_CHECK("container-10.1", strstr(ds_last_error(), "FIFO") && strstr(ds_last_error(), "not a regular file"),
                "message: %s", ds_last_error());
        alarm(10);
        s = ds_file_info_read(fifo, &fi);
        alarm(0);
        T_STATUS("container-10.2", s, DS_ERR_IO, ds_last_error());
        T_CHECK("container-10.2", strstr(ds_last_error(), "not a regular file"), "message: %s", ds_last_error());
    }
    T_STATUS("container-10.3", open_model(tmpdir, key, 0, &m), DS_ERR_IO, ds_last_error());
    T_CHECK("container-10.3", strstr(ds_last_error(), "directory"), "message: %s", ds_last_error());
    T_STATUS("container-10.4", ds_file_info_read(tmpdir, &fi), DS_ERR_IO, ds_last_error());
    if (access("/dev/zero", R_OK) == 0) {
        T_STATUS("container-10.5", open_model("/dev/zero", key, 0, &m), DS_ERR_IO, ds_last_error());
        T_CHECK("container-10.5", strstr(ds_last_error(), "character device"), "message: %s", ds_last_error());
        T_STATUS("container-10.6", ds_file_info_read("/dev/zero", &fi), DS_ERR_IO, ds_last_error());
    } else {
        T_SKIP("container-10.5", "no /dev/zero");
    }
    /* a symbolic link to a regular file is a regular file */
    const char *link = tmp_path("link.dsm");
    T_CHECK("container-10.7", symlink(tmp_path("good.dsm"), link) == 0, "symlink: %s", strerror(errno));
    T_STATUS("container-10.7", open_model(link, key, 0, &m), DS_OK, ds_last_error());
    ds_model_close(m);
}

/* ==== 20: directory entries of the pruned formats ========================= */
/* Metadata with one tensor (dtype, rows x cols in nbytes) in one dense
 * segment, through dsi_meta_parse: its status. */
static ds_status one_tensor_meta(ds_dtype dt, uint64_t rows, uint64_t cols, uint64_t nbytes) {
    dsi_alloc al;
    dsi_err e = {0};
    if (dsi_alloc_init(&al, NULL, &e)) return DS_ERR_NOMEM;
    const uint32_t chunk = 65536;
    dsi_segment sg = {DS_SEGMENT_DENSE, -1, -1, 0, DSI_HEADER_AREA, (nbytes + 63) / 64 * 64, 0};
    if (!dsi_stored_bytes(sg.plain_bytes, chunk, &sg.stored_bytes, &sg.n_chunks)) return DS_ERR_LIMIT;
    uint64_t meta_offset = (sg.offset + sg.stored_bytes + DSI_SEG_ALIGN - 1) / DSI_SEG_ALIGN * DSI_SEG_ALIGN;
    dsi_buf meta, t;
    dsi_buf_init(&meta, &al);
    dsi_buf_init(&t, &al);
    dsi_meta_record(&meta, DSI_REC_CONFIG_JSON, "{}", 2);
    dsi_meta_record(&meta, DSI_REC_TOKENIZER_JSON, "{}", 2);
    dsi_buf_u32(&t, 1);
    dsi_buf_u32(&t, 0);
    uint64_t dims[2] = {rows, cols};
    dsi_meta_tensor(&t, "w", (uint32_t)dt, 2, dims, 0, 0, nbytes);
    dsi_meta_record(&meta, DSI_REC_TENSORS, t.data, t.len);
    dsi_meta_segments(&meta, &sg, 1, &al);
    dsi_meta m;
    ds_status s = meta.failed || t.failed ? DS_ERR_NOMEM
                                          : dsi_meta_parse(meta.data, meta.len, meta_offset + (1u << 20), chunk,
                                                           meta_offset, &al, &m, &e);
    if (s == DS_OK) dsi_meta_free(&m);
    else if (s != DS_ERR_CORRUPT) printf("INFO container-20: %s\n", e.msg);
    dsi_buf_free(&t);
    dsi_buf_free(&meta);
    return s;
}

static void test_pruned_entries(void) {
    /* 2:4: 22 bytes a block, rows x that exactly */
    T_STATUS("container-20.1", one_tensor_meta(DS_DTYPE_Q8_0_24, 3, 64, 3 * 44), DS_OK, "2:4 3x64");
    T_STATUS("container-20.1", one_tensor_meta(DS_DTYPE_Q8_0_24, 3, 64, 3 * 44 + 1), DS_ERR_CORRUPT, "2:4 + 1 byte");
    /* SP: rows * stride + cols, nb*6 <= stride <= nb*6 + cols */
    T_STATUS("container-20.2", one_tensor_meta(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 30 + 64), DS_OK, "SP stride 30");
    T_STATUS("container-20.2", one_tensor_meta(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 12 + 64), DS_OK, "SP stride 12");
    T_STATUS("container-20.2", one_tensor_meta(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 76 + 64), DS_OK, "SP stride 76");
    T_STATUS("container-20.3", one_tensor_meta(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 11 + 64), DS_ERR_CORRUPT, "SP stride 11");
    T_STATUS("container-20.3", one_tensor_meta(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 77 + 64), DS_ERR_CORRUPT, "SP stride 77");
    T_STATUS("container-20.3", one_tensor_meta(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 30 + 65), DS_ERR_CORRUPT, "SP ragged");
    T_STATUS("container-20.3", one_tensor_meta(DS_DTYPE_Q8_0_SP, 3, 64, 3 * 30), DS_ERR_CORRUPT, "SP without guard");
    T_STATUS("container-20.3", one_tensor_meta(DS_DTYPE_Q8_0_SP, 3, 48, 3 * 9 + 48), DS_ERR_CORRUPT, "SP 48 columns");
    T_STATUS("container-20.4", one_tensor_meta((ds_dtype)6, 3, 64, 3 * 30 + 64), DS_ERR_CORRUPT, "dtype 6");
}

int main(void) {
    test_pruned_entries();   /* needs no generated data */
    testdata = getenv("DS_TESTDATA");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/v2lite/config.json", testdata ? testdata : "");
    if (!testdata || access(probe, R_OK) != 0 || !mkdtemp(tmpdir)) {
        T_SKIP("container", "no generated checkpoints ($DS_TESTDATA)");
        return t_finish("test_container");
    }
    for (int i = 0; i < 32; i++) {
        key[i] = (unsigned char)(i * 13 + 1);
        key2[i] = key[i];
    }
    key2[31] ^= 1;

    /* 1: every family, every quantization, read back against numpy's values */
    static const char *families[] = {"v2lite", "v2", "v3", "moe16b", "v2lite_sharded", "yarn"};
    static const ds_quant quants[] = {DS_QUANT_F32, DS_QUANT_F16, DS_QUANT_Q8_0};
    static const char *qn[] = {"f32", "f16", "q8"};
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (int q = 0; q < 3; q++) {
            char id[64];
            snprintf(id, sizeof id, "container-1.%zu.%s(%s)", f + 1, qn[q], families[f]);
            round_trip(families[f], quants[q], id);
        }

    /* 2-6: damage to a q8 container with small chunks (several per segment) */
    char good[512];
    snprintf(good, sizeof good, "%s", tmp_path("good.dsm"));
    ds_status s = convert("v2lite", DS_QUANT_Q8_0, 1, good, 4096);
    T_STATUS("container-2.0", s, DS_OK, ds_last_error());
    orig = read_file(good, &orig_len);
    ds_model *ref = NULL;
    if (!s && orig && open_model(good, key, 1, &ref) == DS_OK) {
        T_STATUS("container-2.00", open_verify(good, key), DS_OK, ds_last_error());
        test_header_damage();
        test_keys(good);
        test_segment_damage(ref);
        test_truncation_and_formats();
        test_header_auth();
        test_plaintext_policy();
        test_not_regular();
        ds_model_close(ref);
    }
    test_plain_and_passphrase();
    free(orig);

    /* leave nothing behind */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmpdir);
    return t_finish("test_container");
}
