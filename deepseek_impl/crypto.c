/*
 * crypto.c — the one small crypto interface the rest of the library uses:
 * key derivation, and sealing/opening one chunk with its associated data.
 *
 * Provider: libsodium (AES-256-GCM with AES-NI, BLAKE2b, Argon2id).
 *
 * Keys. The user's 32-byte master key never touches data directly. For each
 * file (random 32-byte salt) we derive with keyed BLAKE2b-256:
 *     enc   = H(master, "deepseek.h dsm v1 enc"   || salt)   AEAD key
 *     check = H(master, "deepseek.h dsm v1 check" || salt)   stored in the header
 * so a wrong key is told apart from damaged data, and a segment copied from
 * another file sealed with the same master key fails to authenticate.
 * Plaintext files (cipher none) derive an integrity key from the salt alone;
 * their chunks carry BLAKE2b-128 tags over the same associated data.
 *
 * Nonces. AES-GCM nonce = u32 segment index || u64 chunk index (LE): unique
 * within a file, and keys are unique per file.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* ==== Initialisation ===================================================== */
DSI_FUNC ds_status dsi_crypto_init(dsi_err *e) {
    if (sodium_init() < 0) return dsi_fail(e, DS_ERR_CRYPTO, "libsodium failed to initialise");
    return DS_OK;
}

static bool dsi_aes_available(void) {
    return crypto_aead_aes256gcm_is_available() && (dsi_cpu_features() & DSI_CPU_AES);
}

/* ==== Key derivation ===================================================== */
static void dsi_kdf(uint8_t out[32], const uint8_t *key, size_t key_len, const char *label,
                    const uint8_t salt[DSI_SALT_BYTES]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, key_len, 32);
    crypto_generichash_update(&st, (const unsigned char *)label, strlen(label));
    crypto_generichash_update(&st, salt, DSI_SALT_BYTES);
    crypto_generichash_final(&st, out, 32);
    sodium_memzero(&st, sizeof st);
}

DSI_FUNC ds_status dsi_keys_derive(dsi_keys *k, ds_cipher cipher, const uint8_t *master, size_t master_len,
                                   const uint8_t salt[DSI_SALT_BYTES], dsi_err *e) {
    ds_status s = dsi_crypto_init(e);
    if (s) return s;
    memset(k, 0, sizeof *k);
    k->cipher = cipher;
    if (cipher == DS_CIPHER_NONE) {
        dsi_kdf(k->enc, NULL, 0, "deepseek.h dsm v1 integrity", salt);
        return DS_OK;
    }
    if (cipher != DS_CIPHER_AES256GCM) return dsi_fail(e, DS_ERR_UNSUPPORTED, "unknown cipher id %d", (int)cipher);
    if (!master || master_len != DS_KEY_BYTES)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "a key must be exactly %d bytes (got %zu)", DS_KEY_BYTES, master_len);
    if (!dsi_aes_available())
        return dsi_fail(e, DS_ERR_NO_AES,
                        "this CPU lacks the AES-NI and PCLMUL instructions that AES-256-GCM needs; "
                        "re-seal the model for this machine or use a CPU with AES support");
    dsi_kdf(k->enc, master, master_len, "deepseek.h dsm v1 enc", salt);
    dsi_kdf(k->check, master, master_len, "deepseek.h dsm v1 check", salt);
    if (sizeof k->aes_state < crypto_aead_aes256gcm_statebytes())
        return dsi_fail(e, DS_ERR_INTERNAL, "AES-GCM state larger than expected");
    crypto_aead_aes256gcm_beforenm((crypto_aead_aes256gcm_state *)(void *)k->aes_state, k->enc);
    return DS_OK;
}

DSI_FUNC ds_status dsi_passphrase_key(uint8_t out[32], const char *pw, size_t pw_len, const uint8_t salt[16],
                                      uint64_t opslimit, uint64_t memlimit, dsi_err *e) {
    ds_status s = dsi_crypto_init(e);
    if (s) return s;
    if (opslimit < crypto_pwhash_OPSLIMIT_MIN || opslimit > crypto_pwhash_OPSLIMIT_MAX ||
        memlimit < crypto_pwhash_MEMLIMIT_MIN || memlimit > (uint64_t)SIZE_MAX)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "Argon2id parameters out of range (ops %llu, mem %llu bytes)",
                        (unsigned long long)opslimit, (unsigned long long)memlimit);
    if (crypto_pwhash(out, 32, pw, pw_len, salt, opslimit, (size_t)memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return dsi_fail(e, DS_ERR_NOMEM, "Argon2id could not allocate %llu bytes of memory",
                        (unsigned long long)memlimit);
    return DS_OK;
}

/* ==== Chunks ============================================================= */
static void dsi_ad_bytes(const dsi_chunk_ad *ad, uint8_t out[DSI_AD_BYTES]) {
    memcpy(out, "DSM1", 4);
    dsi_wr32(out + 4, ad->segment);
    dsi_wr32(out + 8, ad->kind);
    dsi_wr32(out + 12, (uint32_t)ad->layer);
    dsi_wr32(out + 16, (uint32_t)ad->expert);
    dsi_wr32(out + 20, ad->last);
    dsi_wr64(out + 24, ad->chunk);
    dsi_wr64(out + 32, ad->seg_plain_bytes);
}

static void dsi_nonce(const dsi_chunk_ad *ad, uint8_t n[DSI_NONCE_BYTES]) {
    dsi_wr32(n, ad->segment);
    dsi_wr64(n + 4, ad->chunk);
}

/* Integrity tag for plaintext files: BLAKE2b-128(key, ad || extra || data). */
static void dsi_integrity_tag(const dsi_keys *k, const uint8_t *adb, const dsi_chunk_ad *ad, const uint8_t *data,
                              size_t n, uint8_t tag[DSI_TAG_BYTES]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, k->enc, 32, DSI_TAG_BYTES);
    crypto_generichash_update(&st, adb, DSI_AD_BYTES);
    if (ad->extra_len) crypto_generichash_update(&st, ad->extra, ad->extra_len);
    crypto_generichash_update(&st, data, n);
    crypto_generichash_final(&st, tag, DSI_TAG_BYTES);
}

/* The AD buffer: fixed part plus the optional extra bytes (the header, for
 * metadata). Small enough for the stack in every use. */
#define DSI_AD_MAX (DSI_AD_BYTES + DSI_HEADER_BYTES)

DSI_FUNC ds_status dsi_chunk_seal(const dsi_keys *k, const dsi_chunk_ad *ad, const uint8_t *in, uint8_t *out,
                                  size_t n, uint8_t tag[DSI_TAG_BYTES], dsi_err *e) {
    uint8_t adb[DSI_AD_MAX], nonce[DSI_NONCE_BYTES];
    if (ad->extra_len > DSI_AD_MAX - DSI_AD_BYTES) return dsi_fail(e, DS_ERR_INTERNAL, "associated data too long");
    dsi_ad_bytes(ad, adb);
    if (k->cipher == DS_CIPHER_NONE) {
        if (out != in) memmove(out, in, n);
        dsi_integrity_tag(k, adb, ad, out, n, tag);
        return DS_OK;
    }
    if (ad->extra_len) memcpy(adb + DSI_AD_BYTES, ad->extra, ad->extra_len);
    dsi_nonce(ad, nonce);
    unsigned long long maclen = 0;
    if (crypto_aead_aes256gcm_encrypt_detached_afternm(out, tag, &maclen, in, n, adb, DSI_AD_BYTES + ad->extra_len,
                                                        NULL, nonce,
                                                        (const crypto_aead_aes256gcm_state *)(const void *)k->aes_state) != 0)
        return dsi_fail(e, DS_ERR_CRYPTO, "AES-256-GCM encryption failed");
    return DS_OK;
}

DSI_FUNC ds_status dsi_chunk_open(const dsi_keys *k, const dsi_chunk_ad *ad, const uint8_t *in, uint8_t *out,
                                  size_t n, const uint8_t tag[DSI_TAG_BYTES], dsi_err *e) {
    uint8_t adb[DSI_AD_MAX], nonce[DSI_NONCE_BYTES];
    if (ad->extra_len > DSI_AD_MAX - DSI_AD_BYTES) return dsi_fail(e, DS_ERR_INTERNAL, "associated data too long");
    dsi_ad_bytes(ad, adb);
    if (k->cipher == DS_CIPHER_NONE) {
        uint8_t want[DSI_TAG_BYTES];
        dsi_integrity_tag(k, adb, ad, in, n, want);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
        if (sodium_memcmp(want, tag, DSI_TAG_BYTES) != 0)
            return dsi_fail(e, DS_ERR_AUTH, "integrity check failed for chunk %llu",
                            (unsigned long long)ad->chunk);
#endif
        if (out && out != in) memcpy(out, in, n);
        return DS_OK;
    }
    if (ad->extra_len) memcpy(adb + DSI_AD_BYTES, ad->extra, ad->extra_len);
    dsi_nonce(ad, nonce);
    if (!out) return dsi_fail(e, DS_ERR_INTERNAL, "AES-GCM open needs an output buffer");
    if (crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL, in, n, tag, adb, DSI_AD_BYTES + ad->extra_len, nonce,
                                                        (const crypto_aead_aes256gcm_state *)(const void *)k->aes_state) != 0)
        return dsi_fail(e, DS_ERR_AUTH, "authentication failed for chunk %llu", (unsigned long long)ad->chunk);
    return DS_OK;
}

/* ==== Random keys and key files ========================================= */
DS_API ds_status ds_key_generate(unsigned char key[DS_KEY_BYTES]) {
    dsi_err e = {0};
    if (!key) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_key_generate: key is NULL");
        return dsi_publish(&e);
    }
    if (dsi_crypto_init(&e)) return dsi_publish(&e);
    randombytes_buf(key, DS_KEY_BYTES);
    return DS_OK;
}

#ifndef DS_NO_STDIO
static int dsi_hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

DS_API ds_status ds_key_file_write(const char *path, const unsigned char key[DS_KEY_BYTES]) {
    dsi_err e = {0};
    if (!path || !key) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_key_file_write: path or key is NULL");
        return dsi_publish(&e);
    }
    /* O_EXCL: never overwrite (a lost key cannot be recovered); 0600: owner only. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST) dsi_fail(&e, DS_ERR_EXISTS, "%s: file exists; refusing to overwrite a key file", path);
        else dsi_fail(&e, DS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        return dsi_publish(&e);
    }
    (void)fchmod(fd, 0600); /* in case the umask cleared bits we asked for (it only clears) */
    size_t off = 0;
    while (off < DS_KEY_BYTES) {
        ssize_t w = write(fd, key + off, DS_KEY_BYTES - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            dsi_fail(&e, DS_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            close(fd);
            unlink(path);
            return dsi_publish(&e);
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        dsi_fail(&e, DS_ERR_IO, "%s: cannot flush: %s", path, strerror(errno));
        unlink(path);
        return dsi_publish(&e);
    }
    return DS_OK;
}

DS_API ds_status ds_key_file_read(const char *path, unsigned char key[DS_KEY_BYTES]) {
    dsi_err e = {0};
    if (!path || !key) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_key_file_read: path or key is NULL");
        return dsi_publish(&e);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dsi_fail(&e, DS_ERR_IO, "%s: cannot open key file: %s", path, strerror(errno));
        return dsi_publish(&e);
    }
    /* 32 raw bytes, or 64 hex digits with an optional trailing newline. */
    unsigned char buf[80];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            dsi_fail(&e, DS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            close(fd);
            sodium_memzero(buf, sizeof buf);
            return dsi_publish(&e);
        }
        if (r == 0) break;
        len += (size_t)r;
        if (len == sizeof buf) break;
    }
    close(fd);
    ds_status s = DS_OK;
    if (len == DS_KEY_BYTES) {
        memcpy(key, buf, DS_KEY_BYTES);
    } else {
        size_t n = len;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
        bool ok = n == 2 * DS_KEY_BYTES;
        for (size_t i = 0; ok && i < DS_KEY_BYTES; i++) {
            int hi = dsi_hexval(buf[2 * i]), lo = dsi_hexval(buf[2 * i + 1]);
            if (hi < 0 || lo < 0) ok = false;
            else key[i] = (unsigned char)(hi * 16 + lo);
        }
        if (!ok) {
            sodium_memzero(key, DS_KEY_BYTES);
            s = dsi_fail(&e, DS_ERR_INVALID_ARG,
                         "%s: not a key file (expected 32 raw bytes or 64 hex digits, found %zu%s bytes)", path, len,
                         len == sizeof buf ? "+" : "");
        }
    }
    sodium_memzero(buf, sizeof buf);
    return s ? dsi_publish(&e) : DS_OK;
}
#endif /* DS_NO_STDIO */
