/*
 * chat.c — an interactive chat on the lower-level API: the model's chat
 * template, replies streamed token by token, and the conversation kept in the
 * context's KV cache (each turn evaluates only the tokens that are new).
 *
 *     cc -std=c11 -O2 -I. examples/chat.c dist/deepseek.c -lsodium -lm -lpthread -o chat
 *     ./chat models/demo.dsm models/demo.key [--system TEXT] [--temp T] [--max-tokens N]
 *
 * Commands at the prompt: /reset (forget the conversation), /quit. Ctrl-C
 * stops the reply being written; Ctrl-D at the prompt ends the chat.
 */
#define _POSIX_C_SOURCE 200809L
#include "deepseek.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }

typedef struct chat {
    ds_model *model;
    ds_context *ctx;
    ds_sampler *sampler;
    const ds_tokenizer *tok;
    int n_vocab;
    float *logits;
    ds_chat_message *msg;      /* the conversation; contents are owned (strdup) */
    size_t n_msg, cap_msg;
    int32_t *past;             /* the tokens the context holds, in order */
    size_t n_past, cap_past;
} chat;

static int push_message(chat *ch, const char *role, const char *content, size_t len) {
    if (ch->n_msg == ch->cap_msg) {
        size_t cap = ch->cap_msg ? 2 * ch->cap_msg : 8;
        ds_chat_message *p = realloc(ch->msg, cap * sizeof *p);
        if (!p) return -1;
        ch->msg = p, ch->cap_msg = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, content, len);
    copy[len] = '\0';
    ch->msg[ch->n_msg].role = role;
    ch->msg[ch->n_msg++].content = copy;
    return 0;
}

static void drop_messages(chat *ch, size_t keep) {
    while (ch->n_msg > keep) free((void *)ch->msg[--ch->n_msg].content);
}

static int remember(chat *ch, const int32_t *ids, size_t n) {
    if (ch->n_past + n > ch->cap_past) {
        size_t cap = 2 * (ch->n_past + n) + 64;
        int32_t *p = realloc(ch->past, cap * sizeof *p);
        if (!p) return -1;
        ch->past = p, ch->cap_past = cap;
    }
    memcpy(ch->past + ch->n_past, ids, n * sizeof *ids);
    ch->n_past += n;
    return 0;
}

/* Renders the conversation with the model's template and brings the context
 * up to date: when what it already holds is a prefix of the new rendering,
 * only the rest is evaluated; otherwise it starts afresh. */
static ds_status feed_conversation(chat *ch) {
    size_t len = 0, n = 0;
    ds_status st = ds_tokenizer_apply_chat_template(ch->tok, ch->msg, ch->n_msg, 1, NULL, 0, &len);
    if (st != DS_OK && st != DS_ERR_LIMIT) return st;
    char *text = malloc(len + 1);
    if (!text) return DS_ERR_NOMEM;
    st = ds_tokenizer_apply_chat_template(ch->tok, ch->msg, ch->n_msg, 1, text, len + 1, &len);
    /* the rendering starts with the BOS text, so no DS_TOKENIZE_BOS here */
    if (st == DS_OK) st = ds_tokenizer_encode(ch->tok, text, len, 0, NULL, 0, &n);
    if (st == DS_ERR_LIMIT) st = DS_OK;
    int32_t *ids = st == DS_OK ? malloc((n + 1) * sizeof *ids) : NULL;
    if (st == DS_OK && !ids) st = DS_ERR_NOMEM;
    if (st == DS_OK) st = ds_tokenizer_encode(ch->tok, text, len, 0, ids, n, &n);
    free(text);
    if (st != DS_OK) {
        free(ids);
        return st;
    }
    size_t same = 0;
    while (same < ch->n_past && same < n && ch->past[same] == ids[same]) same++;
    if (same < ch->n_past || same == n) {   /* diverged (or nothing new): start over */
        ds_context_reset(ch->ctx);
        ch->n_past = same = 0;
    }
    st = ds_context_eval(ch->ctx, ids + same, n - same, ch->logits, 0);
    if (st == DS_OK && remember(ch, ids + same, n - same) != 0) st = DS_ERR_NOMEM;
    free(ids);
    return st;
}

/* Samples and streams one reply; its text goes into *reply (malloc'd). */
static ds_status reply(chat *ch, int max_tokens, char **reply_out, size_t *reply_len) {
    ds_detok_state dst = {{0}, 0};
    char piece[512];
    char *text = NULL;
    size_t len = 0, cap = 0, plen = 0;
    ds_status st = DS_OK;
    int32_t eos = ds_tokenizer_eos(ch->tok);
    for (int i = 0; i < max_tokens && !g_stop; i++) {
        int32_t t;
        if ((st = ds_sampler_sample(ch->sampler, ch->logits, ch->n_vocab, ch->past, ch->n_past, &t)) != DS_OK) break;
        if (t == eos) {
            /* the EOS ends the assistant turn in the template: keep it in the cache */
            if ((st = ds_context_eval(ch->ctx, &t, 1, ch->logits, 0)) == DS_OK && remember(ch, &t, 1) != 0)
                st = DS_ERR_NOMEM;
            break;
        }
        if ((st = ds_tokenizer_decode_stream(ch->tok, &dst, t, piece, sizeof piece, &plen)) != DS_OK) break;
        fwrite(piece, 1, plen, stdout);
        fflush(stdout);
        if (len + plen + 1 > cap) {
            cap = 2 * (len + plen) + 256;
            char *p = realloc(text, cap);
            if (!p) { st = DS_ERR_NOMEM; break; }
            text = p;
        }
        memcpy(text + len, piece, plen);
        len += plen;
        if ((st = ds_context_eval(ch->ctx, &t, 1, ch->logits, 0)) != DS_OK) break;
        if (remember(ch, &t, 1) != 0) { st = DS_ERR_NOMEM; break; }
    }
    if (st == DS_OK && ds_tokenizer_decode_stream(ch->tok, &dst, -1, piece, sizeof piece, &plen) == DS_OK) {
        fwrite(piece, 1, plen, stdout);   /* a character left incomplete, as U+FFFD */
    }
    putchar('\n');
    *reply_out = text;
    *reply_len = len;
    return st;
}

int main(int argc, char **argv) {
    const char *system = NULL;
    float temp = 0.7f;
    int max_tokens = 256;
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.dsm KEYFILE [--system TEXT] [--temp T] [--max-tokens N]\n", argv[0]);
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--system") && i + 1 < argc) system = argv[++i];
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc) temp = strtof(argv[++i], NULL);
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc) max_tokens = atoi(argv[++i]);
        else {
            fprintf(stderr, "%s: unknown or incomplete option '%s'\n", argv[0], argv[i]);
            return 2;
        }
    }
    chat ch;
    memset(&ch, 0, sizeof ch);
    unsigned char key[DS_KEY_BYTES];
    ds_status st = ds_key_file_read(argv[2], key);
    if (st == DS_OK) {
        ds_model_params mp = ds_model_default_params();
        mp.key = key, mp.key_len = sizeof key;
        st = ds_model_open(&ch.model, argv[1], &mp);
    }
    ds_memzero(key, sizeof key);
    if (st == DS_OK) st = ds_context_new(&ch.ctx, ch.model, NULL);
    if (st == DS_OK) {
        ds_sampler_params sp = ds_sampler_default_params();
        sp.temperature = temp, sp.top_p = 0.95f, sp.repetition_penalty = 1.1f, sp.seed = 1;
        st = ds_sampler_new(&ch.sampler, &sp);
    }
    if (st == DS_OK) {
        ds_model_config cfg;
        ch.tok = ds_model_tokenizer(ch.model);
        if ((st = ds_model_get_config(ch.model, &cfg)) == DS_OK) {
            /* sample only ids the tokenizer knows (the vocabulary may be padded) */
            int tv = ds_tokenizer_vocab_size(ch.tok);
            ch.n_vocab = tv < cfg.vocab_size ? tv : cfg.vocab_size;
            if (!(ch.logits = malloc((size_t)cfg.vocab_size * sizeof *ch.logits))) st = DS_ERR_NOMEM;
        }
    }
    size_t keep = 0;
    if (st == DS_OK && system && push_message(&ch, "system", system, strlen(system)) == 0) keep = 1;
    if (st != DS_OK) fprintf(stderr, "error: %s: %s\n", ds_status_string(st), ds_last_error());
    signal(SIGINT, on_sigint);

    char line[4096];
    while (st == DS_OK) {
        fputs("> ", stdout);
        fflush(stdout);
        g_stop = 0;
        if (!fgets(line, sizeof line, stdin)) break;
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n == 0) continue;
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            drop_messages(&ch, keep);
            continue;
        }
        if (push_message(&ch, "user", line, n) != 0) { st = DS_ERR_NOMEM; break; }
        char *text = NULL;
        size_t len = 0;
        st = feed_conversation(&ch);
        if (st == DS_OK) st = reply(&ch, max_tokens, &text, &len);
        if (st == DS_OK && push_message(&ch, "assistant", text ? text : "", len) != 0) st = DS_ERR_NOMEM;
        free(text);
        if (st == DS_ERR_LIMIT) {   /* the context is full: start a new conversation */
            fprintf(stderr, "(context full: conversation cleared)\n");
            drop_messages(&ch, keep);
            ds_context_reset(ch.ctx);
            ch.n_past = 0;
            st = DS_OK;
        } else if (st != DS_OK) {
            fprintf(stderr, "error: %s: %s\n", ds_status_string(st), ds_last_error());
        }
    }
    drop_messages(&ch, 0);
    free(ch.msg);
    free(ch.past);
    free(ch.logits);
    ds_sampler_free(ch.sampler);
    ds_context_free(ch.ctx);
    (void)ds_model_close(ch.model);
    return st == DS_OK ? 0 : 1;
}
