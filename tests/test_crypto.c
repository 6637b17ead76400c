/*
 * test_crypto.c — chunk sealing and opening, associated data binding, key
 * derivation, the no-AES path, and key files.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

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
    T_CHECK("crypto-1.3", memcmp(keys_a.enc, keys_b.enc, 32) != 0 && memcmp(keys_a.check, keys_b.check, 32) != 0,
            "subkeys do not depend on the salt");
    T_CHECK("crypto-1.4", memcmp(keys_a.enc, keys_a.check, 32) != 0, "encryption key equals key check");
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

int main(void) {
    test_seal_open();
    test_passphrase();
    test_key_files();
    return t_finish("test_crypto");
}
