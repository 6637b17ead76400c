/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * keys.c — ds-server's API keys (see keys.h for the file format).
 *
 * Why a fast keyed hash and not crypto_pwhash: the hash is checked on every
 * request, against every key (each has its own salt), and Argon2id with
 * even its interactive limits costs tens of milliseconds and 64 MiB per
 * check. A slow hash protects low-entropy secrets (passwords); API tokens
 * are random strings of 128 bits or more (`ds-server --hash-key` warns
 * below 16 characters), which no offline search can find from a BLAKE2b
 * hash however fast it is. The salt keeps equal tokens from having equal
 * hashes and precomputed tables from applying.
 */
#define _POSIX_C_SOURCE 200809L
#include "keys.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

static const char *const role_names[N_ROLE] = {"inference", "metrics", "admin"};

const char *keys_role_name(int role) { return role >= 0 && role < N_ROLE ? role_names[role] : "none"; }

int keys_role_perms(int role) {
    switch (role) {
    case ROLE_INFERENCE: return PERM_INFERENCE;
    case ROLE_METRICS: return PERM_METRICS;
    case ROLE_ADMIN: return PERM_INFERENCE | PERM_METRICS | PERM_ADMIN;
    default: return 0;
    }
}

int keys_name_ok(const char *s, size_t n) {
    if (n < 1 || n > KEYS_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

void keys_free(keyset *ks) {
    if (!ks) return;
    free(ks->keys);
    ks->keys = NULL;
    ks->n = 0;
}

/* ==== The parser ========================================================== */

static int fail(char *err, size_t len, const char *file, size_t line, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static int fail(char *err, size_t len, const char *file, size_t line, const char *fmt, ...) {
    if (err && len) {
        int n = line ? snprintf(err, len, "%s:%zu: ", file, line) : snprintf(err, len, "%s: ", file);
        if (n < 0) n = 0;
        if ((size_t)n < len) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, len - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int unhex(const char *s, unsigned char *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
        if (a < 0 || b < 0) return 0;
        out[i] = (unsigned char)(a << 4 | b);
    }
    return 1;
}

/* "$ds1$<32 hex>$<64 hex>" */
static int parse_hash(const char *s, size_t n, key_entry *k) {
    if (n != KEYS_HASH_CHARS || memcmp(s, "$ds1$", 5) != 0 || s[5 + 2 * KEYS_SALT_BYTES] != '$') return 0;
    return unhex(s + 5, k->salt, KEYS_SALT_BYTES) && unhex(s + 6 + 2 * KEYS_SALT_BYTES, k->hash, KEYS_HASH_BYTES);
}

/* A decimal number in [1, hi] (no sign, no leading zeros beyond "0"). */
static int parse_count(const char *s, size_t n, uint64_t hi, uint64_t *out) {
    if (n < 1 || n > 20) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (v < 1 || v > hi) return 0;
    *out = v;
    return 1;
}

int keys_parse(const char *text, size_t len, const char *file, keyset *out, char *err, size_t err_len) {
    out->keys = NULL;
    out->n = 0;
    if (err && err_len) err[0] = '\0';
    if (!file) file = "keys file";
    if (len > KEYS_FILE_MAX) return fail(err, err_len, file, 0, "over %u bytes", KEYS_FILE_MAX);
    if (len && memchr(text, '\0', len)) {
        const char *z = memchr(text, '\0', len);
        size_t line = 1;
        for (const char *p = text; p < z; p++) line += *p == '\n';
        return fail(err, err_len, file, line, "a NUL byte (is this a text file?)");
    }
    size_t cap = 0;
    size_t line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        line++;
        const char *q = p, *le = eol;
        p = eol < end ? eol + 1 : end;
        if (le > q && le[-1] == '\r') le--;
        /* fields */
        const char *f[8];
        size_t fl[8], nf = 0;
        int too_many = 0;
        while (q < le) {
            while (q < le && (*q == ' ' || *q == '\t')) q++;
            if (q >= le) break;
            const char *s = q;
            while (q < le && *q != ' ' && *q != '\t') q++;
            if (nf < 8) {
                f[nf] = s;
                fl[nf] = (size_t)(q - s);
                nf++;
            } else {
                too_many = 1;
            }
        }
        if (nf == 0 || f[0][0] == '#') continue;
        if (too_many) {
            keys_free(out);
            return fail(err, err_len, file, line, "more than 8 fields (want NAME ROLE HASH [option=N]...)");
        }
        if (nf < 3) {
            keys_free(out);
            return fail(err, err_len, file, line, "%zu field%s; want NAME ROLE HASH [max_concurrent=N] "
                        "[tokens_per_minute=N]", nf, nf == 1 ? "" : "s");
        }
        for (size_t i = 0; i < nf; i++)
            for (size_t j = 0; j < fl[i]; j++)
                if ((unsigned char)f[i][j] < 0x20 || (unsigned char)f[i][j] == 0x7f) {
                    keys_free(out);
                    return fail(err, err_len, file, line, "field %zu holds a control character", i + 1);
                }
        key_entry k;
        memset(&k, 0, sizeof k);
        if (!keys_name_ok(f[0], fl[0])) {
            keys_free(out);
            return fail(err, err_len, file, line, "field 1 (the name) must be 1 to %d of A-Z a-z 0-9 . _ -",
                        KEYS_NAME_MAX);
        }
        memcpy(k.name, f[0], fl[0]);
        k.name[fl[0]] = '\0';
        k.role = -1;
        for (int r = 0; r < N_ROLE; r++)
            if (fl[1] == strlen(role_names[r]) && !memcmp(f[1], role_names[r], fl[1])) k.role = r;
        if (k.role < 0) {
            keys_free(out);
            return fail(err, err_len, file, line, "field 2 (the role of key %s) is not inference, metrics or admin",
                        k.name);
        }
        if (!parse_hash(f[2], fl[2], &k)) {
            keys_free(out);
            return fail(err, err_len, file, line,
                        "field 3 (the hash of key %s) is not $ds1$<32 hex digits>$<64 hex digits>; make it with "
                        "ds-server --hash-key",
                        k.name);
        }
        int have_mc = 0, have_tpm = 0;
        for (size_t i = 3; i < nf; i++) {
            const char *eq = memchr(f[i], '=', fl[i]);
            size_t kl = eq ? (size_t)(eq - f[i]) : fl[i];
            const char *v = eq ? eq + 1 : NULL;
            size_t vl = eq ? fl[i] - kl - 1 : 0;
            uint64_t x;
            if (kl == 14 && !memcmp(f[i], "max_concurrent", 14)) {
                if (have_mc++) {
                    keys_free(out);
                    return fail(err, err_len, file, line, "max_concurrent given twice for key %s", k.name);
                }
                if (!v || !parse_count(v, vl, KEYS_MAX_CONCURRENT_MAX, &x)) {
                    keys_free(out);
                    return fail(err, err_len, file, line, "max_concurrent of key %s must be a whole number from 1 "
                                "to %u", k.name, KEYS_MAX_CONCURRENT_MAX);
                }
                k.max_concurrent = (uint32_t)x;
            } else if (kl == 17 && !memcmp(f[i], "tokens_per_minute", 17)) {
                if (have_tpm++) {
                    keys_free(out);
                    return fail(err, err_len, file, line, "tokens_per_minute given twice for key %s", k.name);
                }
                if (!v || !parse_count(v, vl, KEYS_TPM_MAX, &x)) {
                    keys_free(out);
                    return fail(err, err_len, file, line, "tokens_per_minute of key %s must be a whole number from "
                                "1 to %llu", k.name, (unsigned long long)KEYS_TPM_MAX);
                }
                k.tokens_per_minute = x;
            } else {
                keys_free(out);
                return fail(err, err_len, file, line, "field %zu of key %s is not max_concurrent=N or "
                            "tokens_per_minute=N", i + 1, k.name);
            }
        }
        for (size_t i = 0; i < out->n; i++)
            if (!strcmp(out->keys[i].name, k.name)) {
                keys_free(out);
                return fail(err, err_len, file, line, "key name %s is used twice", k.name);
            }
        if (out->n == KEYS_MAX) {
            keys_free(out);
            return fail(err, err_len, file, line, "more than %d keys", KEYS_MAX);
        }
        if (out->n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            key_entry *nk = realloc(out->keys, nc * sizeof *nk);
            if (!nk) {
                keys_free(out);
                fail(err, err_len, file, line, "out of memory");
                return -2;
            }
            out->keys = nk;
            cap = nc;
        }
        out->keys[out->n++] = k;
    }
    if (out->n == 0) return fail(err, err_len, file, 0, "no keys (want lines NAME ROLE HASH)");
    return 0;
}

int keys_load(const char *path, keyset *out, int *mode, char *err, size_t err_len) {
    out->keys = NULL;
    out->n = 0;
    *mode = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, err_len, path, 0, "%s", strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0) *mode = (int)(sb.st_mode & 07777);
    char *buf = malloc(KEYS_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        fail(err, err_len, path, 0, "out of memory");
        return -2;
    }
    size_t n = fread(buf, 1, KEYS_FILE_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    int rc;
    if (rerr) rc = fail(err, err_len, path, 0, "read error");
    else if (n > KEYS_FILE_MAX) rc = fail(err, err_len, path, 0, "over %u bytes", KEYS_FILE_MAX);
    else rc = keys_parse(buf, n, path, out, err, err_len);
    free(buf);
    return rc;
}

/* ==== Hashes ============================================================== */

static void token_hash(const char *token, size_t len, const unsigned char salt[KEYS_SALT_BYTES],
                       unsigned char out[KEYS_HASH_BYTES]) {
    crypto_generichash(out, KEYS_HASH_BYTES, (const unsigned char *)token, len, salt, KEYS_SALT_BYTES);
}

int keys_hash(const char *token, size_t len, char *out) {
    if (sodium_init() < 0) return -1;
    unsigned char salt[KEYS_SALT_BYTES], h[KEYS_HASH_BYTES];
    randombytes_buf(salt, sizeof salt);
    token_hash(token, len, salt, h);
    memcpy(out, "$ds1$", 5);
    sodium_bin2hex(out + 5, 2 * KEYS_SALT_BYTES + 1, salt, sizeof salt);
    out[5 + 2 * KEYS_SALT_BYTES] = '$';
    sodium_bin2hex(out + 6 + 2 * KEYS_SALT_BYTES, 2 * KEYS_HASH_BYTES + 1, h, sizeof h);
    sodium_memzero(h, sizeof h);
    return 0;
}

const key_entry *keys_match(const keyset *ks, const char *token, size_t len) {
    const key_entry *found = NULL;
    if (!ks || sodium_init() < 0) return NULL;
    unsigned char h[KEYS_HASH_BYTES];
    for (size_t i = 0; i < ks->n; i++) {
        token_hash(token, len, ks->keys[i].salt, h);
        int eq = sodium_memcmp(h, ks->keys[i].hash, KEYS_HASH_BYTES) == 0;
        if (eq && !found) found = &ks->keys[i];
    }
    sodium_memzero(h, sizeof h);
    return found;
}

/* ==== Usage =============================================================== */
/*
 * Tokens are charged into 60 one-second buckets (ring by second), so a
 * key's record has a fixed size however many requests it makes; "the last
 * 60 s" is the buckets of the 60 whole seconds up to now.
 */

#define WINDOW 60

struct key_usage {
    struct key_usage *next;
    char name[KEYS_NAME_MAX + 1];
    uint32_t running;                   /* admitted requests not yet done */
    double run_avg;                     /* moving mean of how long a request ran (s) */
    int n_done;
    uint64_t tokens[WINDOW];
    long long second[WINDOW];           /* the whole second each bucket holds */
};

static pthread_mutex_t usage_mu = PTHREAD_MUTEX_INITIALIZER;
static key_usage *usage_head;

key_usage *keys_usage_get(const char *name) {
    pthread_mutex_lock(&usage_mu);
    key_usage *u = usage_head;
    while (u && strcmp(u->name, name) != 0) u = u->next;
    if (!u && (u = calloc(1, sizeof *u)) != NULL) {
        snprintf(u->name, sizeof u->name, "%s", name);
        for (int i = 0; i < WINDOW; i++) u->second[i] = -1;
        u->next = usage_head;
        usage_head = u;
    }
    pthread_mutex_unlock(&usage_mu);
    return u;
}

void keys_usage_free_all(void) {
    pthread_mutex_lock(&usage_mu);
    while (usage_head) {
        key_usage *n = usage_head->next;
        free(usage_head);
        usage_head = n;
    }
    pthread_mutex_unlock(&usage_mu);
}

/* Sum of the buckets still in the window at second `now_s`. usage_mu held. */
static uint64_t window_sum(const key_usage *u, long long now_s) {
    uint64_t sum = 0;
    for (int i = 0; i < WINDOW; i++)
        if (u->second[i] > now_s - WINDOW) sum += u->tokens[i];
    return sum;
}

int keys_usage_admit(key_usage *u, uint32_t max_concurrent, uint64_t tokens_per_minute, double now,
                     unsigned *retry_after) {
    *retry_after = 0;
    pthread_mutex_lock(&usage_mu);
    int res = KEYS_ADMITTED;
    if (max_concurrent && u->running >= max_concurrent) {
        /* one of the running requests will likely end in about the time
         * requests of this key have taken (1 s before any has ended) */
        double s = u->n_done ? ceil(u->run_avg) : 1;
        *retry_after = s < 1 ? 1 : s > 3600 ? 3600 : (unsigned)s;
        res = KEYS_OVER_CONCURRENT;
    } else if (tokens_per_minute) {
        long long now_s = (long long)floor(now);
        uint64_t sum = window_sum(u, now_s);
        if (sum >= tokens_per_minute) {
            /* the bucket of second s leaves the window at s + 60: the
             * earliest second after which the rest is under the budget */
            long long s = now_s - WINDOW + 1;
            for (; s <= now_s; s++) {
                int i = (int)(((s % WINDOW) + WINDOW) % WINDOW);
                if (u->second[i] == s) sum -= u->tokens[i];
                if (sum < tokens_per_minute) break;
            }
            double wait = (double)(s + WINDOW) - now;
            *retry_after = wait <= 1 ? 1 : wait >= 60 ? 60 : (unsigned)ceil(wait);
            res = KEYS_OVER_TOKENS;
        }
    }
    if (res == KEYS_ADMITTED) u->running++;
    pthread_mutex_unlock(&usage_mu);
    return res;
}

void keys_usage_done(key_usage *u, uint64_t tokens, double seconds, double now) {
    pthread_mutex_lock(&usage_mu);
    if (u->running) u->running--;
    u->run_avg = u->n_done ? u->run_avg + (seconds - u->run_avg) / 8 : seconds;
    if (u->n_done < 1000000) u->n_done++;
    if (tokens) {
        long long now_s = (long long)floor(now);
        int i = (int)(((now_s % WINDOW) + WINDOW) % WINDOW);
        if (u->second[i] != now_s) {
            u->second[i] = now_s;
            u->tokens[i] = 0;
        }
        u->tokens[i] = tokens > UINT64_MAX - u->tokens[i] ? UINT64_MAX : u->tokens[i] + tokens;
    }
    pthread_mutex_unlock(&usage_mu);
}

uint64_t keys_usage_tokens(key_usage *u, double now) {
    pthread_mutex_lock(&usage_mu);
    uint64_t s = window_sum(u, (long long)floor(now));
    pthread_mutex_unlock(&usage_mu);
    return s;
}
