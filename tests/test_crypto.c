/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_crypto.c — chunk sealing and opening, associated data binding, key
 * derivation, the no-AES path, key files, and golden ciphertexts that pin the
 * bytes on disk whichever AES-GCM provider the library was built with
 * (libsodium, or OpenSSL with -DDS_CRYPTO_OPENSSL=1).
 *
 *   test_crypto                   the tests
 *   test_crypto --dump FILE       seal a deterministic set of chunks into FILE
 *   test_crypto --open-dump FILE  open a dump (made by either provider) and
 *                                 check every plaintext; exit 0 when all pass
 * tests/test_crypto_cross.sh compares the dumps of the two builds.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

static dsi_keys keys_a, keys_b, keys_none;

static void test_seal_open(void) {
    dsi_err e = {0};
    uint8_t master[32], salt[32], salt2[32];
    for (int i = 0; i < 32; i++) {
        master[i] = (uint8_t)i;
        salt[i] = (uint8_t)(100 + i);
        salt2[i] = (uint8_t)(200 + i);
    }
    T_STATUS("crypto-1.1", dsi_keys_derive(&keys_a, DS_CIPHER_AES256GCM, master, 32, salt, &e), DS_OK, e.msg);
    T_STATUS("crypto-1.2", dsi_keys_derive(&keys_b, DS_CIPHER_AES256GCM, master, 32, salt2, &e), DS_OK, e.msg);
    T_CHECK("crypto-1.3", memcmp(keys_a.enc, keys_b.enc, 32) != 0 && memcmp(keys_a.header, keys_b.header, 32) != 0,
            "subkeys do not depend on the salt");
    /* the key check depends on the key alone (no header field, the salt
     * included, can make the right key look wrong) */
    T_CHECK("crypto-1.3b", memcmp(keys_a.check, keys_b.check, 32) == 0, "the key check depends on the salt");
    T_CHECK("crypto-1.4", memcmp(keys_a.enc, keys_a.check, 32) != 0 && memcmp(keys_a.enc, keys_a.header, 32) != 0 &&
                              memcmp(keys_a.header, keys_a.check, 32) != 0,
            "two of the encryption key, header key and key check are equal");
    T_STATUS("crypto-1.5", dsi_keys_derive(&keys_a, DS_CIPHER_AES256GCM, master, 31, salt, &e), DS_ERR_INVALID_ARG,
             e.msg);
    dsi_keys_derive(&keys_a, DS_CIPHER_AES256GCM, master, 32, salt, &e);
    dsi_keys_derive(&keys_none, DS_CIPHER_NONE, NULL, 0, salt, &e);

    enum { N = 5000 };
    static uint8_t plain[N], sealed[N], opened[N];
    for (int i = 0; i < N; i++) plain[i] = (uint8_t)(i * 7 + 3);
    dsi_chunk_ad ad = {3, DS_SEGMENT_EXPERT, 2, 5, 1, 123456, 0, NULL, 0};
    uint8_t tag[16];
    T_STATUS("crypto-2.1", dsi_chunk_seal(&keys_a, &ad, plain, sealed, N, tag, &e), DS_OK, e.msg);
    T_CHECK("crypto-2.2", memcmp(plain, sealed, N) != 0, "ciphertext equals plaintext");
    T_STATUS("crypto-2.3", dsi_chunk_open(&keys_a, &ad, sealed, opened, N, tag, &e), DS_OK, e.msg);
    T_CHECK("crypto-2.4", memcmp(plain, opened, N) == 0, "round trip differs");

    /* every field of the associated data is bound */
    dsi_chunk_ad bad;
    const char *ids[] = {"crypto-3.1", "crypto-3.2", "crypto-3.3", "crypto-3.4", "crypto-3.5", "crypto-3.6", "crypto-3.7"};
    for (int f = 0; f < 7; f++) {
        bad = ad;
        switch (f) {
        case 0: bad.segment++; break;
        case 1: bad.kind = DS_SEGMENT_DENSE; break;
        case 2: bad.layer++; break;
        case 3: bad.expert++; break;
        case 4: bad.chunk++; break;
        case 5: bad.seg_plain_bytes++; break;
        case 6: bad.last = 1; break;
        }
        T_STATUS(ids[f], dsi_chunk_open(&keys_a, &bad, sealed, opened, N, tag, &e), DS_ERR_AUTH, e.msg);
    }
    /* flipped ciphertext bit, flipped tag bit, other file's key */
    sealed[N / 2] ^= 1;
    T_STATUS("crypto-3.8", dsi_chunk_open(&keys_a, &ad, sealed, opened, N, tag, &e), DS_ERR_AUTH, e.msg);
    sealed[N / 2] ^= 1;
    tag[0] ^= 0x80;
    T_STATUS("crypto-3.9", dsi_chunk_open(&keys_a, &ad, sealed, opened, N, tag, &e), DS_ERR_AUTH, e.msg);
    tag[0] ^= 0x80;
    T_STATUS("crypto-3.10", dsi_chunk_open(&keys_b, &ad, sealed, opened, N, tag, &e), DS_ERR_AUTH, e.msg);
    /* extra associated data (the header, for metadata) is bound too */
    uint8_t hdr[256] = {1, 2, 3};
    dsi_chunk_ad ax = ad;
    ax.extra = hdr;
    ax.extra_len = sizeof hdr;
    dsi_chunk_seal(&keys_a, &ax, plain, sealed, N, tag, &e);
    T_STATUS("crypto-3.11", dsi_chunk_open(&keys_a, &ax, sealed, opened, N, tag, &e), DS_OK, e.msg);
    hdr[100] ^= 1;
    T_STATUS("crypto-3.12", dsi_chunk_open(&keys_a, &ax, sealed, opened, N, tag, &e), DS_ERR_AUTH, e.msg);

    /* integrity-only files: data stays readable, damage is caught */
    T_STATUS("crypto-4.1", dsi_chunk_seal(&keys_none, &ad, plain, sealed, N, tag, &e), DS_OK, e.msg);
    T_CHECK("crypto-4.2", memcmp(plain, sealed, N) == 0, "cipher none changed the data");
    T_STATUS("crypto-4.3", dsi_chunk_open(&keys_none, &ad, sealed, opened, N, tag, &e), DS_OK, e.msg);
    sealed[7] ^= 4;
    T_STATUS("crypto-4.4", dsi_chunk_open(&keys_none, &ad, sealed, opened, N, tag, &e), DS_ERR_AUTH, e.msg);
    sealed[7] ^= 4;
    bad = ad;
    bad.segment = 4;
    T_STATUS("crypto-4.5", dsi_chunk_open(&keys_none, &bad, sealed, opened, N, tag, &e), DS_ERR_AUTH, e.msg);

    /* a CPU without AES: clear refusal, not a crash */
    dsi_cpu_features_mask(DSI_CPU_AES);
    dsi_keys k;
    T_STATUS("crypto-5.1", dsi_keys_derive(&k, DS_CIPHER_AES256GCM, master, 32, salt, &e), DS_ERR_NO_AES, e.msg);
    T_CHECK("crypto-5.2", strstr(e.msg, "AES") != NULL, "message does not mention AES: %s", e.msg);
    dsi_cpu_features_mask(0);
}

/* ==== Golden ciphertexts ================================================== */
/*
 * Made with an independent implementation (Python's hashlib BLAKE2b and the
 * `cryptography` package's AESGCM, i.e. OpenSSL underneath), by this script:
 *
 *   import hashlib, struct
 *   from cryptography.hazmat.primitives.ciphers.aead import AESGCM
 *   master = bytes(range(32)); salt = bytes(100 + i for i in range(32))
 *   kdf = lambda key, label: hashlib.blake2b(label + salt, digest_size=32, key=key).digest()
 *   enc = kdf(master, b"deepseek.h dsm v1 enc"); header = kdf(master, b"deepseek.h dsm v2 header")
 *   check = hashlib.blake2b(b"deepseek.h dsm v2 key check", digest_size=32, key=master).digest()
 *   integ = kdf(b"", b"deepseek.h dsm v1 integrity"); nheader = kdf(b"", b"deepseek.h dsm v2 header")
 *   print("enc", enc.hex()); print("check", check.hex()); print("integrity", integ.hex())
 *   print("header", header.hex()); print("none header", nheader.hex())
 *   hdr = bytes((i ^ 0x5a) & 0xff for i in range(256))
 *   # (n, segment, kind, layer, expert, chunk, seg_plain_bytes, last, extra)
 *   V = [(0, 0, 1, -1, -1, 0, 0, 1, b""), (1, 3, 2, 2, 5, 1, 123456, 0, b""),
 *        (16, 3, 2, 2, 5, 1, 123456, 0, b""), (5000, 3, 2, 2, 5, 1, 123456, 0, b""),
 *        (5000, 0xffffffff, 0, 0, 0, 0, 5000, 1, hdr),
 *        ((1 << 20) + 3, 70000, 2, 59, 255, (1 << 32) + 2, (5 << 32) + 7, 1, b"")]
 *   for (n, seg, kind, layer, expert, chunk, spb, last, extra) in V:
 *       pt = bytes((i * 7 + 3) & 0xff for i in range(n))
 *       ad = b"DSM1" + struct.pack("<IIiiIQQ", seg, kind, layer, expert, last, chunk, spb) + extra
 *       nonce = struct.pack("<IQ", seg, chunk)
 *       out = AESGCM(enc).encrypt(nonce, pt, ad)
 *       ct, tag = out[:-16], out[-16:]
 *       itag = hashlib.blake2b(ad + pt, digest_size=16, key=integ).digest()
 *       print(n, hashlib.blake2b(ct, digest_size=32).hexdigest(), tag.hex(), itag.hex())
 *
 * The last vector has a chunk index above 2^32, which checks the nonce's
 * byte order beyond the low word.
 */
typedef struct golden_vec {
    size_t n;
    dsi_chunk_ad ad;
    int with_header;           /* extra AD: the 256 bytes (i ^ 0x5a) */
    const char *ct_hash;       /* BLAKE2b-256 of the ciphertext */
    const char *tag;           /* AES-GCM tag */
    const char *itag;          /* CIPHER_NONE integrity tag */
} golden_vec;

static const golden_vec golden[] = {
    {0, {0, 1, -1, -1, 0, 0, 1, NULL, 0}, 0, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8",
     "dd2cb13b659718b1eefd4095af7e5303", "6b6629ccd381ad8f26b5cf96be8616ec"},
    {1, {3, 2, 2, 5, 1, 123456, 0, NULL, 0}, 0, "623e5d17329d20549d5ebe7a2e8688b98ed7db0b8fb983b2b22a644c218313cd",
     "feab9b7975610adde08b44495a758fc2", "64a55c5e6319f3f60a581c84b1398a14"},
    {16, {3, 2, 2, 5, 1, 123456, 0, NULL, 0}, 0, "3d41064f8953e146389a3063a42aee9c14af61d16537927086390a16b274a9a4",
     "44a035f490d72192f9fa090ee5752867", "ef568d1312701c7e054a4af8e9e99ade"},
    {5000, {3, 2, 2, 5, 1, 123456, 0, NULL, 0}, 0, "a32ca491ede4f4f151d10c4260f795c836e2baed67d3ac588d88c02910abd2cf",
     "4345d8f73747295927e50d82e1206cc1", "16dcc55be3582320e58bd8a2bee1cde8"},
    {5000, {0xffffffffu, 0, 0, 0, 0, 5000, 1, NULL, 0}, 1,
     "9bb5daeba5766d48cb12c8565ed6d758a2404c289c0aa3a7299a017030850dbf", "35b2e294482bdf66c1bc020011e8c26b",
     "f98f186171ecff1ea8e0f49d659385eb"},
    {(1u << 20) + 3, {70000, 2, 59, 255, ((uint64_t)1 << 32) + 2, ((uint64_t)5 << 32) + 7, 1, NULL, 0}, 0,
     "418dc33def9399e8e9a8c6b74921daf67e761d531967cd070cb3ae7d8f6a29bc", "057c9940799b50a7894289864b45766a",
     "b36cb4211acd7a4983e6d6c7d1796b21"},
};

static void to_hex(const uint8_t *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static void test_golden(void) {
    dsi_err e = {0};
    uint8_t master[32], salt[32], hdr[256];
    for (int i = 0; i < 32; i++) {
        master[i] = (uint8_t)i;
        salt[i] = (uint8_t)(100 + i);
    }
    for (int i = 0; i < 256; i++) hdr[i] = (uint8_t)(i ^ 0x5a);
    static dsi_keys k, kn;
    char hex[129];
    T_STATUS("crypto-8.1", dsi_keys_derive(&k, DS_CIPHER_AES256GCM, master, 32, salt, &e), DS_OK, e.msg);
    T_STATUS("crypto-8.2", dsi_keys_derive(&kn, DS_CIPHER_NONE, NULL, 0, salt, &e), DS_OK, e.msg);
    to_hex(k.enc, 32, hex);
    T_CHECK("crypto-8.3", strcmp(hex, "03bb608cce7c5fff660ca35ee0af5a371b693a7edfd8d21f47f38b8300fd1bdc") == 0,
            "enc key %s", hex);
    to_hex(k.check, 32, hex);
    T_CHECK("crypto-8.4", strcmp(hex, "b229f9b508c916752a046f87f186b5b0fc4eefb2490e7a449b0c377030901456") == 0,
            "key check %s", hex);
    to_hex(kn.enc, 32, hex);
    T_CHECK("crypto-8.5", strcmp(hex, "47ff317715c309dfcf5dfc6ac40d1e597ccd9505ddc2cbc254ddb3414543643c") == 0,
            "integrity key %s", hex);
    to_hex(k.header, 32, hex);
    T_CHECK("crypto-8.5b", strcmp(hex, "28859e3f6a1b2a78f6c8ce28a3003cb97e049457b66f6815593e23dc59f3e01f") == 0,
            "header key %s", hex);
    to_hex(kn.header, 32, hex);
    T_CHECK("crypto-8.5c", strcmp(hex, "78f3287ad1598b7cb402805df27045886a9f6df0f659981d2439fd025141e99b") == 0,
            "plaintext header key %s", hex);
    /* the header MAC: hashlib.blake2b(hdr[:192], digest_size=32, key=header) */
    uint8_t mac[32];
    dsi_header_mac(hdr, k.header, mac);
    to_hex(mac, 32, hex);
    T_CHECK("crypto-8.5d", strcmp(hex, "a18344d7f1503ea06239623ca757ab202c88082db05171646a01e19a3d1a750b") == 0,
            "header MAC %s", hex);

    size_t max = (1u << 20) + 3;
    uint8_t *plain = malloc(max), *ct = malloc(max + 1), *back = malloc(max + 1);
    if (!plain || !ct || !back) {
        T_SKIP("crypto-8.6", "out of memory");
        free(plain);
        free(ct);
        free(back);
        return;
    }
    for (size_t i = 0; i < max; i++) plain[i] = (uint8_t)(i * 7 + 3);
    for (size_t v = 0; v < sizeof golden / sizeof golden[0]; v++) {
        const golden_vec *g = &golden[v];
        dsi_chunk_ad ad = g->ad;
        if (g->with_header) {
            ad.extra = hdr;
            ad.extra_len = sizeof hdr;
        }
        char id[32];
        uint8_t tag[16], h[32];
        snprintf(id, sizeof id, "crypto-8.6.%zu", v);
        T_STATUS(id, dsi_chunk_seal(&k, &ad, plain, ct, g->n, tag, &e), DS_OK, e.msg);
        crypto_generichash(h, 32, ct, g->n, NULL, 0);
        to_hex(h, 32, hex);
        snprintf(id, sizeof id, "crypto-8.7.%zu", v);
        T_CHECK(id, strcmp(hex, g->ct_hash) == 0, "n=%zu: ciphertext hash %s, want %s", g->n, hex, g->ct_hash);
        to_hex(tag, 16, hex);
        snprintf(id, sizeof id, "crypto-8.8.%zu", v);
        T_CHECK(id, strcmp(hex, g->tag) == 0, "n=%zu: tag %s, want %s", g->n, hex, g->tag);
        memset(back, 0xee, g->n + 1);
        snprintf(id, sizeof id, "crypto-8.9.%zu", v);
        T_STATUS(id, dsi_chunk_open(&k, &ad, ct, back, g->n, tag, &e), DS_OK, e.msg);
        snprintf(id, sizeof id, "crypto-8.10.%zu", v);
        T_CHECK(id, memcmp(back, plain, g->n) == 0 && back[g->n] == 0xee, "n=%zu: round trip differs or overran",
                g->n);
        snprintf(id, sizeof id, "crypto-8.11.%zu", v);
        T_STATUS(id, dsi_chunk_seal(&kn, &ad, plain, ct, g->n, tag, &e), DS_OK, e.msg);
        to_hex(tag, 16, hex);
        snprintf(id, sizeof id, "crypto-8.12.%zu", v);
        T_CHECK(id, strcmp(hex, g->itag) == 0, "n=%zu: integrity tag %s, want %s", g->n, hex, g->itag);
    }

    /* in place (in == out) both ways, as the converter seals */
    const golden_vec *g = &golden[3];
    dsi_chunk_ad ad = g->ad;
    uint8_t tag[16], h[32];
    memcpy(ct, plain, g->n);
    T_STATUS("crypto-9.1", dsi_chunk_seal(&k, &ad, ct, ct, g->n, tag, &e), DS_OK, e.msg);
    crypto_generichash(h, 32, ct, g->n, NULL, 0);
    to_hex(h, 32, hex);
    T_CHECK("crypto-9.2", strcmp(hex, g->ct_hash) == 0, "in-place ciphertext differs: %s", hex);
    T_STATUS("crypto-9.3", dsi_chunk_open(&k, &ad, ct, ct, g->n, tag, &e), DS_OK, e.msg);
    T_CHECK("crypto-9.4", memcmp(ct, plain, g->n) == 0, "in-place open differs");
    /* a failed open leaves no unauthenticated plaintext behind */
    dsi_chunk_seal(&k, &ad, plain, ct, g->n, tag, &e);
    tag[15] ^= 1;
    memset(back, 0xee, g->n);
    T_STATUS("crypto-9.5", dsi_chunk_open(&k, &ad, ct, back, g->n, tag, &e), DS_ERR_AUTH, e.msg);
    size_t nz = 0;
    for (size_t i = 0; i < g->n; i++) nz += back[i] != 0;
    T_CHECK("crypto-9.6", nz == 0, "%zu bytes of output left after a failed open", nz);
    T_CHECK("crypto-9.7", strstr(e.msg, "chunk 1") != NULL, "message does not name the chunk: %s", e.msg);
    free(plain);
    free(ct);
    free(back);
}

/* ==== Dumps for the cross-provider test ==================================== */
/*
 * A deterministic set of chunks: keys, salts, associated data and sizes from
 * a fixed xorshift sequence (sizes 0..70000 plus a few whole chunk sizes).
 * Dump record: u64 n, then the ciphertext (n bytes) and the tag (16).
 */
#define DUMP_VECTORS 160

static uint64_t xs_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Vector i: its keys, associated data, extra bytes (into hdr) and plaintext
 * (into plain, which holds at least 1 MiB). Returns the length. */
static size_t dump_vector(int i, dsi_keys *k, dsi_chunk_ad *ad, uint8_t hdr[256], uint8_t *plain, dsi_err *e) {
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)(i + 1) * 0x2545f4914f6cdd1dull;
    uint8_t master[32], salt[32];
    for (int j = 0; j < 32; j++) {
        master[j] = (uint8_t)xs_next(&s);
        salt[j] = (uint8_t)xs_next(&s);
    }
    if (dsi_keys_derive(k, DS_CIPHER_AES256GCM, master, 32, salt, e)) return 0;
    static const size_t whole[] = {4096, 65536, 262144, 1u << 20};
    size_t n = i % 8 == 7 ? whole[(i / 8) % 4] : (size_t)(xs_next(&s) % 70001);
    memset(ad, 0, sizeof *ad);
    ad->segment = (uint32_t)xs_next(&s);
    ad->kind = (uint32_t)(xs_next(&s) % 3);
    ad->layer = (int32_t)(xs_next(&s) % 200) - 1;
    ad->expert = (int32_t)(xs_next(&s) % 300) - 1;
    uint64_t shift = xs_next(&s) % 64;   /* two draws: keep their order fixed */
    ad->chunk = xs_next(&s) >> shift;
    ad->seg_plain_bytes = xs_next(&s);
    ad->last = (uint32_t)(xs_next(&s) & 1);
    if (i % 5 == 0) {
        for (int j = 0; j < 256; j++) hdr[j] = (uint8_t)xs_next(&s);
        ad->extra = hdr;
        ad->extra_len = 1 + (size_t)(xs_next(&s) % 256);
    }
    for (size_t j = 0; j < n; j++) plain[j] = (uint8_t)(j % 8 == 0 ? xs_next(&s) : (uint64_t)j * 131);
    return n;
}

static int dump_main(const char *path, int open_mode) {
    FILE *f = fopen(path, open_mode ? "rb" : "wb");
    if (!f) {
        printf("FAIL crypto-dump: cannot open %s\n", path);
        return 1;
    }
    static dsi_keys k;
    size_t cap = 1u << 20;
    uint8_t *plain = malloc(cap), *ct = malloc(cap), *back = malloc(cap), hdr[256], tag[16];
    int bad = 0;
    for (int i = 0; i < DUMP_VECTORS && !bad && plain && ct && back; i++) {
        dsi_err e = {0};
        dsi_chunk_ad ad;
        size_t n = dump_vector(i, &k, &ad, hdr, plain, &e);
        if (e.status) {
            printf("FAIL crypto-dump.%d: %s\n", i, e.msg);
            bad = 1;
        } else if (!open_mode) {
            uint8_t len[8];
            dsi_wr64(len, n);
            if (dsi_chunk_seal(&k, &ad, plain, ct, n, tag, &e) || fwrite(len, 8, 1, f) != 1 ||
                fwrite(ct, 1, n, f) != n || fwrite(tag, 16, 1, f) != 1) {
                printf("FAIL crypto-dump.%d: seal or write failed: %s\n", i, e.msg);
                bad = 1;
            }
        } else {
            uint8_t len[8];
            if (fread(len, 8, 1, f) != 1 || dsi_rd64(len) != n || fread(ct, 1, n, f) != n || fread(tag, 16, 1, f) != 1) {
                printf("FAIL crypto-dump.%d: dump is short or has another length\n", i);
                bad = 1;
            } else if (dsi_chunk_open(&k, &ad, ct, back, n, tag, &e) || memcmp(back, plain, n) != 0) {
                printf("FAIL crypto-dump.%d: open failed or differs (n=%zu): %s\n", i, n, e.msg);
                bad = 1;
            }
        }
    }
    if (!plain || !ct || !back) {
        printf("FAIL crypto-dump: out of memory\n");
        bad = 1;
    }
    if (fclose(f) != 0) bad = 1;
    free(plain);
    free(ct);
    free(back);
    return bad;
}

static void test_passphrase(void) {
    dsi_err e = {0};
    uint8_t k1[32], k2[32], k3[32], salt[16] = {9};
    T_STATUS("crypto-6.1", dsi_passphrase_key(k1, "correct horse", 13, salt, 1, 8192, &e), DS_OK, e.msg);
    dsi_passphrase_key(k2, "correct horse", 13, salt, 1, 8192, &e);
    dsi_passphrase_key(k3, "correct horsf", 13, salt, 1, 8192, &e);
    T_CHECK("crypto-6.2", memcmp(k1, k2, 32) == 0 && memcmp(k1, k3, 32) != 0, "Argon2id not deterministic/keyed");
    T_STATUS("crypto-6.3", dsi_passphrase_key(k1, "x", 1, salt, 0, 8192, &e), DS_ERR_INVALID_ARG, e.msg);
}

static void test_key_files(void) {
    char dir[] = "/tmp/ds-test-keys-XXXXXX";
    if (!mkdtemp(dir)) {
        T_SKIP("crypto-7", "cannot make a temporary directory");
        return;
    }
    char path[256], hex[256], bad[256];
    snprintf(path, sizeof path, "%s/k", dir);
    snprintf(hex, sizeof hex, "%s/hex", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    unsigned char key[32], back[32];
    T_STATUS("crypto-7.1", ds_key_generate(key), DS_OK, ds_last_error());
    T_STATUS("crypto-7.2", ds_key_file_write(path, key), DS_OK, ds_last_error());
    struct stat st;
    T_CHECK("crypto-7.3", stat(path, &st) == 0 && (st.st_mode & 0777) == 0600 && st.st_size == 32,
            "key file mode %o size %lld", (unsigned)(st.st_mode & 0777), (long long)st.st_size);
    T_STATUS("crypto-7.4", ds_key_file_write(path, key), DS_ERR_EXISTS, ds_last_error());
    T_STATUS("crypto-7.5", ds_key_file_read(path, back), DS_OK, ds_last_error());
    T_CHECK("crypto-7.6", memcmp(key, back, 32) == 0, "key read back differs");
    FILE *f = fopen(hex, "w");
    for (int i = 0; i < 32; i++) fprintf(f, "%02X", key[i]);
    fprintf(f, "\n");
    fclose(f);
    memset(back, 0, 32);
    T_STATUS("crypto-7.7", ds_key_file_read(hex, back), DS_OK, ds_last_error());
    T_CHECK("crypto-7.8", memcmp(key, back, 32) == 0, "hex key differs");
    f = fopen(bad, "w");
    fprintf(f, "not a key\n");
    fclose(f);
    T_STATUS("crypto-7.9", ds_key_file_read(bad, back), DS_ERR_INVALID_ARG, ds_last_error());
    T_CHECK("crypto-7.10", strstr(ds_last_error(), "not a key file") != NULL, "message: %s", ds_last_error());
    snprintf(bad, sizeof bad, "%s/missing", dir);
    T_STATUS("crypto-7.11", ds_key_file_read(bad, back), DS_ERR_IO, ds_last_error());
    unlink(path);
    unlink(hex);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    unlink(bad);
    rmdir(dir);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) return dump_main(argv[2], 0);
    if (argc == 3 && strcmp(argv[1], "--open-dump") == 0) return dump_main(argv[2], 1);
    test_seal_open();
    test_golden();
    test_passphrase();
    test_key_files();
    return t_finish("test_crypto");
}
