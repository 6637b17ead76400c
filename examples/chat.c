/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * chat.c — an interactive chat on the public API: each turn tokenizes the
 * whole conversation with the model's chat template (ds_tokenizer_encode_chat:
 * the messages as text, so a user who types the text of the end-of-sentence
 * token or of the Assistant marker gets those characters, not the control
 * tokens) and hands the ids to ds_generate_tokens, which continues the
 * context: what it already holds (the turns so far) is kept, and only the new
 * turn is evaluated. Replies stream token by token.
 *
 *     cc -std=c11 -O2 -I. examples/chat.c dist/deepseek.c -lsodium -lm -lpthread -o chat
 *     ./chat models/demo.dsm models/demo.key [--system TEXT] [--temp T] [--max-tokens N]
 *
 * Commands at the prompt: /reset (forget the conversation), /quit. Ctrl-C
 * stops the reply being written (or the prompt being read in); Ctrl-D at the
 * prompt ends the chat.
 */
#define _POSIX_C_SOURCE 200809L
#include "deepseek.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }
/* ds_abort_fn: Ctrl-C stops the evaluation, in the prompt pass too. */
static int stop_requested(void *user) { (void)user; return g_stop != 0; }

typedef struct chat {
    ds_model *model;
    ds_context *ctx;
    ds_sampler *sampler;
    const ds_tokenizer *tok;
    ds_chat_message *msg;      /* the conversation; contents are owned (malloc) */
    size_t n_msg, cap_msg;
    char *reply;               /* the reply being written */
    size_t reply_len, reply_cap;
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

/* ds_token_fn: prints each piece as it comes and keeps the reply. */
static int on_token(void *user, int32_t token, const char *piece, size_t len) {
    chat *ch = user;
    (void)token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    if (ch->reply_len + len + 1 > ch->reply_cap) {
        size_t cap = 2 * (ch->reply_len + len) + 256;
        char *p = realloc(ch->reply, cap);
        if (!p) return 1;
        ch->reply = p, ch->reply_cap = cap;
    }
    memcpy(ch->reply + ch->reply_len, piece, len);
    ch->reply_len += len;
    ch->reply[ch->reply_len] = '\0';
    return 0;
}

/* One turn: the conversation tokenized with the generation prompt (it
 * begins with the template's BOS), then the one generation loop. */
static ds_status turn(chat *ch, int max_tokens) {
    size_t n = 0;
    ds_status st = ds_tokenizer_encode_chat(ch->tok, ch->msg, ch->n_msg, 1, 0, NULL, 0, &n);
    if (st != DS_OK && st != DS_ERR_LIMIT) return st;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return DS_ERR_NOMEM;
    st = ds_tokenizer_encode_chat(ch->tok, ch->msg, ch->n_msg, 1, 0, ids, n, &n);
    ch->reply_len = 0;
    if (st == DS_OK) {
        ds_generate_params gp = ds_generate_default_params();
        gp.max_tokens = max_tokens;   /* 0: until EOS or a full context */
        gp.on_token = on_token;
        gp.user = ch;
        st = ds_generate_tokens(ch->ctx, ch->sampler, ids, n, &gp, NULL);
    }
    free(ids);
    putchar('\n');
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
        ch.tok = ds_model_tokenizer(ch.model);
        ds_context_set_abort(ch.ctx, stop_requested, NULL);
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
        st = turn(&ch, max_tokens);
        if (st == DS_OK && push_message(&ch, "assistant", ch.reply ? ch.reply : "", ch.reply_len) != 0)
            st = DS_ERR_NOMEM;
        if (st == DS_ERR_LIMIT) {   /* the conversation outgrew the context: start a new one */
            fprintf(stderr, "(context full: conversation cleared)\n");
            drop_messages(&ch, keep);
            st = DS_OK;
        } else if (st != DS_OK) {
            fprintf(stderr, "error: %s: %s\n", ds_status_string(st), ds_last_error());
        }
    }
    drop_messages(&ch, 0);
    free(ch.msg);
    free(ch.reply);
    ds_sampler_free(ch.sampler);
    ds_context_free(ch.ctx);
    (void)ds_model_close(ch.model);
    return st == DS_OK ? 0 : 1;
}
