/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * jsonmask.h — constrained decoding to a JSON object, for ds-server's
 * response_format {"type": "json_object"}.
 *
 * An incremental validator reads the output byte by byte and says whether
 * the text so far is a prefix of some JSON object (RFC 8259, valid UTF-8, no
 * leading whitespace, \u escapes with paired surrogates, at most JM_MAX_DEPTH
 * levels of nesting, at most JM_MAX_WS whitespace bytes in a row). Before each
 * token is sampled, jm_mask keeps the logits of exactly the tokens whose
 * bytes keep the text such a prefix, and whose text still leaves room to
 * close the object within the tokens left: every other token (and every
 * added or special token) gets -infinity. So the output is a complete JSON
 * object whenever the token budget allows one at all, whatever the model
 * prefers, even a model with random weights.
 *
 * The vocabulary is indexed once (jm_vocab_new): token ids sorted by their
 * bytes, each with the length of the prefix it shares with the one before.
 * A mask then walks the sorted list keeping the validator's state after each
 * prefix byte, so a shared prefix is read once, and a prefix that fails
 * rules out every token after it that shares it without reading them.
 */
#ifndef SERVER_JSONMASK_H
#define SERVER_JSONMASK_H

#include <stddef.h>
#include <stdint.h>

#include "deepseek.h"

#define JM_MAX_DEPTH 32
#define JM_MAX_WS 12              /* whitespace bytes in a row between tokens (room for indentation) */

/* The validator's state: the text read so far, summed up. Plain data, copied
 * freely. */
typedef struct jm_state {
    uint32_t stack;               /* bit i: level i + 1 is an object (else an array) */
    uint8_t depth;                /* open objects and arrays */
    uint8_t mode;                 /* what may come next (jsonmask.c) */
    uint8_t aux;                  /* literal: letters left; \u: hex digits left; UTF-8: bytes left */
    uint8_t lit;                  /* literal: which one (0 true, 1 false, 2 null) */
    uint8_t lo, hi;               /* UTF-8: the range of the next continuation byte */
    uint8_t key;                  /* the string being read is an object key */
    uint8_t hx;                   /* \u escapes: surrogate pairing (jsonmask.c) */
    uint8_t ws;                   /* whitespace bytes in a row so far */
} jm_state;

/* The state before any text. */
void jm_init(jm_state *s);
/* Reads one byte: 1 and the new state when the text stays a prefix of a JSON
 * object, else 0 (s unchanged). */
int jm_byte(jm_state *s, unsigned char c);
/* Reads n bytes (stops at the first one that does not fit: returns 0). */
int jm_bytes(jm_state *s, const unsigned char *p, size_t n);
/* 1 once the object is complete (nothing more may follow). */
int jm_done(const jm_state *s);
/* The fewest bytes that complete the object from this state. */
int jm_cost(const jm_state *s);

/* The vocabulary, indexed for masks (read-only once built: one index serves
 * every request). */
typedef struct jm_vocab jm_vocab;

/* Indexes the tokenizer's ids below n_vocab. Returns NULL when out of
 * memory, with a message in err. */
jm_vocab *jm_vocab_new(const ds_tokenizer *t, int n_vocab, char *err, size_t err_len);
void jm_vocab_free(jm_vocab *v);

/* Per-request scratch for jm_mask (a state per byte of the longest token
 * and a flag per id). NULL when out of memory. */
typedef struct jm_scratch jm_scratch;
jm_scratch *jm_scratch_new(const jm_vocab *v);
void jm_scratch_free(jm_scratch *s);

/* Masks logits[0, n_vocab) for the next token from state s, with
 * tokens_left tokens that may still be generated, this one included (each
 * token's end state must be completable in tokens_left - 1 more, one byte
 * each at worst). eos (-1: none) is allowed only when the object is
 * complete. Returns the number of tokens left allowed (0: nothing fits). */
int jm_mask(const jm_vocab *v, jm_scratch *sc, const jm_state *s, int tokens_left, int32_t eos, float *logits,
            int n_vocab);

#endif /* SERVER_JSONMASK_H */
