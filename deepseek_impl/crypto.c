/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * crypto.c — the one small crypto interface the rest of the library uses:
 * key derivation, and sealing/opening one chunk with its associated data.
 *
 * Providers. AES-256-GCM comes from libsodium or from OpenSSL's libcrypto,
 * chosen when the library is compiled:
 *     -DDS_CRYPTO_OPENSSL=0     libsodium only (crypto_aead_aes256gcm_*); the
 *                               default on x86, where it uses AES-NI + PCLMUL
 *     -DDS_CRYPTO_OPENSSL=1     OpenSSL only (EVP AES-256-GCM; link -lcrypto)
 *     -DDS_CRYPTO_OPENSSL=2     both, chosen per key at run time: libsodium
 *                               where it offers AES-256-GCM on this CPU, else
 *                               OpenSSL; the default on every other CPU
 *                               (AArch64: link -lcrypto)
 * The automatic form exists for ARM: libsodium before 1.0.19 (Debian 12
 * ships 1.0.18) implements AES-256-GCM only with the x86 instructions, so on
 * an AArch64 CPU with the ARMv8 AES and PMULL instructions a libsodium-only
 * build would refuse every sealed model; OpenSSL's ARMv8 code opens it, and
 * a newer libsodium is taken when it is there.
 * Only the three AEAD steps below ("Provider") differ: the key schedule, seal
 * and open. Key derivation (keyed BLAKE2b), Argon2id, random keys and the
 * CIPHER_NONE integrity tags use libsodium in every build, so libsodium stays
 * a dependency. Both providers write and read the same bytes (test_crypto
 * checks golden ciphertexts made with an independent implementation, and
 * tests/test_crypto_cross.sh seals with one build and opens with the other).
 * OpenSSL is there for speed too: its AES-GCM is 2-4x faster per core than
 * libsodium 1.0.18's (tests/bench/bench_crypto.c), and decryption is what
 * the expert pager waits for.
 *
 * AES instructions. Both providers refuse AES-256-GCM with DS_ERR_NO_AES when
 * the CPU lacks AES instructions (DSI_CPU_AES: AES-NI + PCLMUL on x86, AES +
 * PMULL on AArch64; the tests mask it to check the
 * refusal). OpenSSL would fall back to a table-based software AES, but that is
 * several times slower and not constant-time, so the library keeps the same
 * clear refusal in both builds: a model that opens with one build opens with
 * the other on the same machine.
 *
 * Keys. The user's 32-byte master key never touches data directly. For each
 * file (random 32-byte salt) we derive with keyed BLAKE2b-256:
 *     enc    = H(master, "deepseek.h dsm v1 enc" || salt)      AEAD key
 *     header = H(master, "deepseek.h dsm v2 header" || salt)   key of the header's MAC
 *     check  = H(master, "deepseek.h dsm v2 key check")        stored in the header
 * so a wrong key is told apart from damaged data, and a segment copied from
 * another file sealed with the same master key fails to authenticate. The
 * check has no salt in it on purpose: no header field can change it, so with
 * the right key an edited header (salt included) fails the header's MAC and
 * reads "header modified", never "wrong key". The price: files sealed with
 * the same master key carry the same check, which tells that they share a
 * key (and nothing about the key: it is a keyed hash of a constant).
 * Plaintext files (cipher none) derive an integrity key, and their header
 * key, from the salt alone (so anyone can recompute them: integrity against
 * accidents only); their chunks carry BLAKE2b-128 tags over the same
 * associated data.
 *
 * Nonces. AES-GCM nonce (12 bytes) = u32 segment index || u64 chunk index
 * (LE): unique within a file, and keys are unique per file. Tags are 16 bytes.
 */
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* DSI_OSSL: OpenSSL's AEAD is compiled in; DSI_SODIUM_AEAD: libsodium's. */
#if defined(DS_CRYPTO_OPENSSL)
#  define DSI_CRYPTO_MODE DS_CRYPTO_OPENSSL
#elif defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#  define DSI_CRYPTO_MODE 0
#else
#  define DSI_CRYPTO_MODE 2
#endif
#if DSI_CRYPTO_MODE != 0 && DSI_CRYPTO_MODE != 1 && DSI_CRYPTO_MODE != 2
#  error "DS_CRYPTO_OPENSSL must be 0 (libsodium), 1 (OpenSSL) or 2 (both, chosen at run time)"
#endif
#define DSI_OSSL (DSI_CRYPTO_MODE != 0)
#define DSI_SODIUM_AEAD (DSI_CRYPTO_MODE != 1)
#if DSI_OSSL
#  include <openssl/err.h>
#  include <openssl/evp.h>
#  include <openssl/opensslv.h>
#endif

/* ==== Initialisation ===================================================== */
DSI_FUNC ds_status dsi_crypto_init(dsi_err *e) {
    if (sodium_init() < 0) return dsi_fail(e, DS_ERR_CRYPTO, "libsodium failed to initialise");
    return DS_OK;
}

/* ==== Provider: AES-256-GCM ============================================== */
/*
 * Three steps, one implementation per provider:
 *   dsi_aead_expand(k)                     key schedule into k, after k->enc is set
 *   dsi_aead_seal(k, nonce, ad, in -> out, tag)
 *   dsi_aead_open(k, nonce, ad, in -> out, tag)   DS_ERR_AUTH on a bad tag, out wiped
 * in == out is allowed for both. ad is the fixed 40 bytes plus the extra bytes.
 */
#if DSI_OSSL

/*
 * OpenSSL. An EVP_CIPHER_CTX must not be shared between threads, and the
 * model's keys are (several contexts and the prefetch thread open chunks at
 * once), so each call makes its own context, initialises it with the key and
 * nonce and frees it (which wipes its copy of the key schedule). Measured on
 * a Xeon (Ice Lake) with OpenSSL 3.0: a fresh context per call costs about
 * 0.1 us over reusing one, 2% on a 1 MiB chunk and 7% on a 4 KiB one, and
 * leaves no key schedule behind between calls (nothing in dsi_keys needs
 * freeing). What does matter is fetching the cipher once: the implicit fetch
 * of EVP_aes_256_gcm() in every init costs about 0.4 us more and takes a lock
 * that all threads share. The fetched cipher is kept for the life of the
 * process, like libsodium's one-time initialisation.
 */
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static EVP_CIPHER *dsi_gcm_cipher;   /* fetched once (atomic), never freed */

static const EVP_CIPHER *dsi_ossl_cipher(void) {
    EVP_CIPHER *c = __atomic_load_n(&dsi_gcm_cipher, __ATOMIC_ACQUIRE);
    if (c) return c;
    c = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!c) return NULL;
    EVP_CIPHER *expected = NULL;
    if (!__atomic_compare_exchange_n(&dsi_gcm_cipher, &expected, c, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        EVP_CIPHER_free(c);   /* another thread won the race: use its copy */
        return expected;
    }
    return c;
}
#else
static const EVP_CIPHER *dsi_ossl_cipher(void) { return EVP_aes_256_gcm(); }
#endif

/* Fails with OpenSSL's reason appended, and clears the thread's OpenSSL
 * error queue so the entries this call left do not confuse the application's
 * own OpenSSL error checks later. */
static ds_status dsi_ossl_fail(dsi_err *e, const char *what) {
    char reason[256];
    unsigned long code = ERR_peek_last_error();
    if (code) ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    return dsi_fail(e, DS_ERR_CRYPTO, "AES-256-GCM (%s): %s: %s", OpenSSL_version(OPENSSL_VERSION), what,
                    code ? reason : "no detail from OpenSSL");
}

/* EVP takes int lengths: feed big buffers in pieces (chunks are <= 64 MiB,
 * but the interface takes size_t). */
#define DSI_EVP_PIECE ((size_t)1 << 30)

static ds_status dsi_ossl_expand(dsi_keys *k, dsi_err *e) {
    (void)k;   /* the schedule is made per call from k->enc */
    if (!dsi_ossl_cipher()) return dsi_ossl_fail(e, "the cipher is not available");
    return DS_OK;
}

static ds_status dsi_ossl_seal(const dsi_keys *k, const uint8_t nonce[DSI_NONCE_BYTES], const uint8_t *adb,
                               size_t ad_len, const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[DSI_TAG_BYTES],
                               dsi_err *e) {
    const EVP_CIPHER *cipher = dsi_ossl_cipher();
    if (!cipher) return dsi_ossl_fail(e, "the cipher is not available");
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (!x) return dsi_ossl_fail(e, "cannot allocate a cipher context");
    const char *step = "init";
    int len = 0;
    uint8_t fin[32];
    /* GCM's default nonce length in EVP is 12 bytes, the length we use */
    if (EVP_EncryptInit_ex(x, cipher, NULL, k->enc, nonce) != 1) goto fail;
    step = "associated data";
    if (EVP_EncryptUpdate(x, NULL, &len, adb, (int)ad_len) != 1) goto fail;
    step = "encrypt";
    for (size_t done = 0; done < n;) {
        size_t piece = n - done < DSI_EVP_PIECE ? n - done : DSI_EVP_PIECE;
        if (EVP_EncryptUpdate(x, out + done, &len, in + done, (int)piece) != 1 || (size_t)len != piece) goto fail;
        done += piece;
    }
    step = "final";
    if (EVP_EncryptFinal_ex(x, fin, &len) != 1 || len != 0) goto fail;
    step = "tag";
    if (EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, DSI_TAG_BYTES, tag) != 1) goto fail;
    EVP_CIPHER_CTX_free(x);
    return DS_OK;
fail:
    EVP_CIPHER_CTX_free(x);
    sodium_memzero(tag, DSI_TAG_BYTES);
    return dsi_ossl_fail(e, step);
}

static ds_status dsi_ossl_open(const dsi_keys *k, const uint8_t nonce[DSI_NONCE_BYTES], const uint8_t *adb,
                               size_t ad_len, const uint8_t *in, uint8_t *out, size_t n,
                               const uint8_t tag[DSI_TAG_BYTES], uint64_t chunk, dsi_err *e) {
    const EVP_CIPHER *cipher = dsi_ossl_cipher();
    if (!cipher) return dsi_ossl_fail(e, "the cipher is not available");
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    if (!x) return dsi_ossl_fail(e, "cannot allocate a cipher context");
    const char *step = "init";
    int len = 0;
    uint8_t fin[32], want[DSI_TAG_BYTES];
    memcpy(want, tag, DSI_TAG_BYTES);   /* SET_TAG takes a non-const pointer */
    if (EVP_DecryptInit_ex(x, cipher, NULL, k->enc, nonce) != 1) goto fail;
    step = "tag";
    if (EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, DSI_TAG_BYTES, want) != 1) goto fail;
    step = "associated data";
    if (EVP_DecryptUpdate(x, NULL, &len, adb, (int)ad_len) != 1) goto fail;
    step = "decrypt";
    for (size_t done = 0; done < n;) {
        size_t piece = n - done < DSI_EVP_PIECE ? n - done : DSI_EVP_PIECE;
        if (EVP_DecryptUpdate(x, out + done, &len, in + done, (int)piece) != 1 || (size_t)len != piece) goto fail;
        done += piece;
    }
    /* Final compares the tag; a mismatch is the only way it fails once the
     * updates went through. Nothing it leaves in the queue is ours to keep. */
    if (EVP_DecryptFinal_ex(x, fin, &len) != 1) {
        EVP_CIPHER_CTX_free(x);
        ERR_clear_error();
        sodium_memzero(out, n);   /* no unauthenticated plaintext, as libsodium */
        return dsi_fail(e, DS_ERR_AUTH, "authentication failed for chunk %llu", (unsigned long long)chunk);
    }
    EVP_CIPHER_CTX_free(x);
    return DS_OK;
fail:
    EVP_CIPHER_CTX_free(x);
    sodium_memzero(out, n);
    return dsi_ossl_fail(e, step);
}

#endif /* OpenSSL */

#if DSI_SODIUM_AEAD /* libsodium */

/*
 * libsodium. crypto_aead_aes256gcm_beforenm expands the key once into
 * k->aes_state (which lives in the model's secure buffer, wiped on close);
 * the *_afternm calls only read it, so threads can share it.
 */
static ds_status dsi_sod_expand(dsi_keys *k, dsi_err *e) {
    if (!crypto_aead_aes256gcm_is_available())
        return dsi_fail(e, DS_ERR_NO_AES,
                        "libsodium %s offers AES-256-GCM on this CPU only with the x86 AES-NI and PCLMUL "
                        "instructions; build with the OpenSSL provider (-DDS_CRYPTO_OPENSSL=2 or 1, -lcrypto)",
                        sodium_version_string());
    if (sizeof k->aes_state < crypto_aead_aes256gcm_statebytes())
        return dsi_fail(e, DS_ERR_INTERNAL, "AES-GCM state larger than expected");
    crypto_aead_aes256gcm_beforenm((crypto_aead_aes256gcm_state *)(void *)k->aes_state, k->enc);
    return DS_OK;
}

static ds_status dsi_sod_seal(const dsi_keys *k, const uint8_t nonce[DSI_NONCE_BYTES], const uint8_t *adb,
                               size_t ad_len, const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[DSI_TAG_BYTES],
                               dsi_err *e) {
    unsigned long long maclen = 0;
    if (crypto_aead_aes256gcm_encrypt_detached_afternm(out, tag, &maclen, in, n, adb, ad_len, NULL, nonce,
                                                        (const crypto_aead_aes256gcm_state *)(const void *)k->aes_state) != 0)
        return dsi_fail(e, DS_ERR_CRYPTO, "AES-256-GCM encryption failed");
    return DS_OK;
}

static ds_status dsi_sod_open(const dsi_keys *k, const uint8_t nonce[DSI_NONCE_BYTES], const uint8_t *adb,
                               size_t ad_len, const uint8_t *in, uint8_t *out, size_t n,
                               const uint8_t tag[DSI_TAG_BYTES], uint64_t chunk, dsi_err *e) {
    if (crypto_aead_aes256gcm_decrypt_detached_afternm(out, NULL, in, n, tag, adb, ad_len, nonce,
                                                        (const crypto_aead_aes256gcm_state *)(const void *)k->aes_state) != 0) {
        sodium_memzero(out, n);   /* libsodium wipes too; be sure in every version */
        return dsi_fail(e, DS_ERR_AUTH, "authentication failed for chunk %llu", (unsigned long long)chunk);
    }
    return DS_OK;
}

#endif /* libsodium */

/* The dispatch: which provider a key uses is settled by dsi_aead_expand and
 * kept in k->provider. */
enum { DSI_PROV_SODIUM = 1, DSI_PROV_OPENSSL = 2 };

static ds_status dsi_aead_expand(dsi_keys *k, dsi_err *e) {
#if DSI_CRYPTO_MODE == 2
    if (crypto_aead_aes256gcm_is_available()) {
        k->provider = DSI_PROV_SODIUM;
        return dsi_sod_expand(k, e);
    }
    k->provider = DSI_PROV_OPENSSL;
    return dsi_ossl_expand(k, e);
#elif DSI_CRYPTO_MODE == 1
    k->provider = DSI_PROV_OPENSSL;
    return dsi_ossl_expand(k, e);
#else
    k->provider = DSI_PROV_SODIUM;
    return dsi_sod_expand(k, e);
#endif
}

static ds_status dsi_aead_seal(const dsi_keys *k, const uint8_t nonce[DSI_NONCE_BYTES], const uint8_t *adb,
                               size_t ad_len, const uint8_t *in, uint8_t *out, size_t n, uint8_t tag[DSI_TAG_BYTES],
                               dsi_err *e) {
#if DSI_OSSL
    if (k->provider == DSI_PROV_OPENSSL) return dsi_ossl_seal(k, nonce, adb, ad_len, in, out, n, tag, e);
#endif
#if DSI_SODIUM_AEAD
    if (k->provider == DSI_PROV_SODIUM) return dsi_sod_seal(k, nonce, adb, ad_len, in, out, n, tag, e);
#endif
    return dsi_fail(e, DS_ERR_INTERNAL, "AES-256-GCM key used before its schedule was made");
}

static ds_status dsi_aead_open(const dsi_keys *k, const uint8_t nonce[DSI_NONCE_BYTES], const uint8_t *adb,
                               size_t ad_len, const uint8_t *in, uint8_t *out, size_t n,
                               const uint8_t tag[DSI_TAG_BYTES], uint64_t chunk, dsi_err *e) {
#if DSI_OSSL
    if (k->provider == DSI_PROV_OPENSSL) return dsi_ossl_open(k, nonce, adb, ad_len, in, out, n, tag, chunk, e);
#endif
#if DSI_SODIUM_AEAD
    if (k->provider == DSI_PROV_SODIUM) return dsi_sod_open(k, nonce, adb, ad_len, in, out, n, tag, chunk, e);
#endif
    return dsi_fail(e, DS_ERR_INTERNAL, "AES-256-GCM key used before its schedule was made");
}

DSI_FUNC const char *dsi_crypto_provider(const dsi_keys *k) {
    if (k->cipher != DS_CIPHER_AES256GCM) return "libsodium (BLAKE2b tags)";
    return k->provider == DSI_PROV_OPENSSL ? "OpenSSL" : "libsodium";
}


/* ==== Key derivation ===================================================== */
/* H(key, label || salt); salt may be NULL (the key check). */
static void dsi_kdf(uint8_t out[32], const uint8_t *key, size_t key_len, const char *label,
                    const uint8_t salt[DSI_SALT_BYTES]) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, key_len, 32);
    crypto_generichash_update(&st, (const unsigned char *)label, strlen(label));
    if (salt) crypto_generichash_update(&st, salt, DSI_SALT_BYTES);
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
        dsi_kdf(k->header, NULL, 0, "deepseek.h dsm v2 header", salt);
        return DS_OK;
    }
    if (cipher != DS_CIPHER_AES256GCM) return dsi_fail(e, DS_ERR_UNSUPPORTED, "unknown cipher id %d", (int)cipher);
    if (!master || master_len != DS_KEY_BYTES)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "a key must be exactly %d bytes (got %zu)", DS_KEY_BYTES, master_len);
    /* The same refusal in both builds (see the top of this file). */
    if (!(dsi_cpu_features() & DSI_CPU_AES))
        return dsi_fail(e, DS_ERR_NO_AES,
                        "this CPU lacks the AES instructions that AES-256-GCM needs "
                        "(AES-NI + PCLMUL on x86, AES + PMULL on ARM); "
                        "re-seal the model for this machine or use a CPU with AES support");
    dsi_kdf(k->enc, master, master_len, "deepseek.h dsm v1 enc", salt);
    dsi_kdf(k->header, master, master_len, "deepseek.h dsm v2 header", salt);
    dsi_kdf(k->check, master, master_len, "deepseek.h dsm v2 key check", NULL);
    s = dsi_aead_expand(k, e);
    if (s) sodium_memzero(k, sizeof *k);
    return s;
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
    return dsi_aead_seal(k, nonce, adb, DSI_AD_BYTES + ad->extra_len, in, out, n, tag, e);
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
    return dsi_aead_open(k, nonce, adb, DSI_AD_BYTES + ad->extra_len, in, out, n, tag, ad->chunk, e);
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
