/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * keys.h — ds-server's API keys: the --keys-file format, its parser, the
 * salted token hashes, and the per-key usage (concurrency, tokens per
 * minute). Used by tools/server/server.c; the parser is fuzzed by
 * tests/fuzz/fuzz_keys.c.
 *
 * A keys file holds one key per line:
 *
 *     NAME ROLE HASH [max_concurrent=N] [tokens_per_minute=N]
 *
 * fields separated by spaces or tabs; blank lines and lines whose first
 * non-blank character is '#' are skipped; a trailing CR is ignored.
 *   NAME  1 to 64 of [A-Za-z0-9._-], unique in the file
 *   ROLE  inference | metrics | admin
 *   HASH  $ds1$<salt: 32 hex digits>$<64 hex digits>: the token's
 *         BLAKE2b-256 keyed with the 16-byte salt (crypto_generichash),
 *         printed by `ds-server --hash-key`
 * The file holds no usable secret: a hash does not let anyone make a
 * request. Error messages name the file and line and the field by its
 * position, never by its text: a token pasted into the wrong field must not
 * reach a log.
 */
#ifndef DS_SERVER_KEYS_H
#define DS_SERVER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define KEYS_NAME_MAX 64
#define KEYS_SALT_BYTES 16
#define KEYS_HASH_BYTES 32
#define KEYS_HASH_CHARS (5 + 2 * KEYS_SALT_BYTES + 1 + 2 * KEYS_HASH_BYTES)   /* "$ds1$" salt "$" hash */
#define KEYS_MAX 10000                  /* keys in one file */
#define KEYS_FILE_MAX (1u << 20)        /* bytes in one file */
#define KEYS_TOKEN_MAX 4096             /* bytes in one token */
#define KEYS_MAX_CONCURRENT_MAX 100000u
#define KEYS_TPM_MAX 1000000000000ull

/* Roles, and what each may do. */
enum { ROLE_INFERENCE, ROLE_METRICS, ROLE_ADMIN, N_ROLE };
enum { PERM_INFERENCE = 1, PERM_METRICS = 2, PERM_ADMIN = 4 };   /* PERM_ADMIN: the adapter endpoints */
const char *keys_role_name(int role);
int keys_role_perms(int role);

typedef struct key_entry {
    char name[KEYS_NAME_MAX + 1];
    int role;                              /* ROLE_* */
    unsigned char salt[KEYS_SALT_BYTES];
    unsigned char hash[KEYS_HASH_BYTES];
    uint32_t max_concurrent;               /* 0: no limit */
    uint64_t tokens_per_minute;            /* 0: no limit */
} key_entry;

typedef struct keyset {
    key_entry *keys;                       /* (n) in file order */
    size_t n;
} keyset;

/* Parses a keys file's text (len bytes, NUL bytes refused). `file` names it
 * in messages. Returns 0 with *out filled (free with keys_free), -1 with
 * "file:line: what" in err, or -2 when memory runs out (err says so). */
int keys_parse(const char *text, size_t len, const char *file, keyset *out, char *err, size_t err_len);

/* Reads and parses the file at path. Returns as keys_parse; -1 also when the
 * file cannot be read or is over KEYS_FILE_MAX bytes. *mode gets the file's
 * permission bits (for a warning when others may read it). */
int keys_load(const char *path, keyset *out, int *mode, char *err, size_t err_len);

void keys_free(keyset *ks);

/* The HASH field for a token, with a fresh random salt, into out
 * (KEYS_HASH_CHARS + 1 bytes). Returns 0, or -1 when libsodium cannot start. */
int keys_hash(const char *token, size_t len, char *out);

/* The first key whose hash the token matches, or NULL. Every key is
 * checked (no early exit) and the hashes are compared in constant time. */
const key_entry *keys_match(const keyset *ks, const char *token, size_t len);

/* Is this a well-formed key name? */
int keys_name_ok(const char *s, size_t n);

/* ---- usage: one record per key name, kept across reloads ---- */

typedef struct key_usage key_usage;

/* The usage record of a name (made on first use; they live until
 * keys_usage_free_all). NULL when memory runs out. Thread-safe. */
key_usage *keys_usage_get(const char *name);
void keys_usage_free_all(void);

/* Admission of one request under the limits (0: none). Returns 0 (admitted:
 * counted as running until keys_usage_done), KEYS_OVER_CONCURRENT or
 * KEYS_OVER_TOKENS, with *retry_after (seconds, 1..3600) when refused.
 * now: monotonic seconds. Thread-safe. */
enum { KEYS_ADMITTED = 0, KEYS_OVER_CONCURRENT = 1, KEYS_OVER_TOKENS = 2 };
int keys_usage_admit(key_usage *u, uint32_t max_concurrent, uint64_t tokens_per_minute, double now,
                     unsigned *retry_after);

/* An admitted request ended: no longer running; tokens charged at `now`;
 * seconds: how long it ran (the estimate for a concurrency refusal's
 * Retry-After). */
void keys_usage_done(key_usage *u, uint64_t tokens, double seconds, double now);

/* Tokens charged in the 60 s before now (for tests and logs). */
uint64_t keys_usage_tokens(key_usage *u, double now);

#endif
