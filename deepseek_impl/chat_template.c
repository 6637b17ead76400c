/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * chat_template.c — ds_tokenizer_apply_chat_template and
 * ds_tokenizer_encode_chat: the chat templates of the DeepSeek V2 and V3
 * families, rendered without a Jinja engine (the templates differ only in a
 * few literal choices, which we read off the template text). The layer above
 * the tokenizer: it reads the tokenizer's tokenizer_config.json parts through
 * tokenizer.h and nothing else.
 *
 * The renderer records where each message's content lies in the text, so
 * that ds_tokenizer_encode_chat can encode the contents as plain text (no
 * added or special token matched inside them: a message cannot close its
 * turn or open another role's) while the rest of the text, the template's own
 * markup, is encoded with its tokens. The text itself is the same either way.
 *
 * Only system/user/assistant messages; tool calls are not supported:
 *
 *   V2 (V2-Chat, V2-Lite-Chat):
 *       bos, then per message: system "C\n\n", user "User: C\n\n",
 *       assistant "Assistant: C" + eos; generation prompt "Assistant:".
 *   V2.5 (V2-Chat-0628, V2.5):
 *       bos, then system "C\n\n", user "<｜User｜>C", assistant
 *       "<｜Assistant｜>C" + eos; generation prompt "<｜Assistant｜>".
 *   V3 (V3, R1): bos + the system prompt (V3: all system messages joined
 *       by "\n\n"; R1: the last one), then user "<｜User｜>C", assistant
 *       "<｜Assistant｜>C<｜end▁of▁sentence｜>" (R1: C after its last
 *       "</think>"); generation prompt "<｜Assistant｜>" (R1: + "<think>\n").
 */
#include "tokenizer.h"

/* ==== Template families =================================================== */
enum { CHAT_NONE, CHAT_V2, CHAT_V25, CHAT_V3 };

typedef struct ct_family {
    int chat;                   /* CHAT_* */
    bool join_systems;          /* V3: systems joined with "\n\n" (else the last wins) */
    bool strip_think;           /* R1: assistant content after the last "</think>" */
    bool think_prompt;          /* R1: generation prompt ends with "<think>\n" */
} ct_family;

/* Chooses the family from the Jinja text. The tokenizer is immutable and
 * shared between threads, so this runs on every call rather than caching:
 * a few substring searches, small beside the rendering. */
static ct_family ct_detect(const char *tpl) {
    ct_family f = {CHAT_NONE, false, false, false};
    if (!tpl) return f;
    if (strstr(tpl, "'User: ' + message['content']")) { f.chat = CHAT_V2; return f; }
    if (strstr(tpl, "<\xEF\xBD\x9CUser\xEF\xBD\x9C>") && strstr(tpl, "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>")) {
        if (strstr(tpl, "ns.system_prompt")) {
            f.chat = CHAT_V3;
            f.join_systems = strstr(tpl, "is_first_sp") != NULL;
            f.strip_think = strstr(tpl, "split('</think>')") != NULL;
            f.think_prompt = strstr(tpl, "\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C><think>\\n'") != NULL;
        } else {
            f.chat = CHAT_V25;
        }
    }
    return f;
}

/* ==== Rendering =========================================================== */
#define CT_USER "<\xEF\xBD\x9CUser\xEF\xBD\x9C>"
#define CT_ASSISTANT "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"
#define CT_EOS_LIT "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"

/* The rendered text and, when spans is set, where each message's content
 * lies in it (at most one span per message, in order, none empty). */
typedef struct ct_out {
    dsi_buf b;
    dsi_span *spans;            /* NULL: not recorded */
    size_t n_spans;
} ct_out;

/* Template markup: BOS and EOS, role markers, separators, the generation prompt. */
static void ct_put(ct_out *o, const char *s) { dsi_buf_put(&o->b, s, strlen(s)); }

/* A message's content (all of it, or the part the template keeps). */
static void ct_content(ct_out *o, const char *c) {
    size_t n = strlen(c), at = o->b.len;
    dsi_buf_put(&o->b, c, n);
    if (o->spans && n && !o->b.failed) o->spans[o->n_spans++] = (dsi_span){at, at + n};
}

/* Checks the arguments both entry points share and renders the chat into o
 * (its buffer initialised here with the tokenizer's allocator; o->spans, when
 * set, has room for n spans). */
static ds_status ct_render(const ds_tokenizer *t, const ds_chat_message *msgs, size_t n, int add_generation_prompt,
                           ct_out *o, dsi_err *e) {
    dsi_chat_source src;
    dsi_tokenizer_chat_source(t, &src);
    dsi_buf_init(&o->b, src.al);
    o->n_spans = 0;
    const ct_family f = ct_detect(src.tpl);
    if (f.chat == CHAT_NONE) return dsi_fail(e, DS_ERR_UNSUPPORTED, "chat template: none, or not of the DeepSeek V2/V3 families");
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content)
            return dsi_fail(e, DS_ERR_INVALID_ARG, "chat template: message %zu has no role or content", i);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return dsi_fail(e, DS_ERR_UNSUPPORTED, "chat template: message %zu: role \"%.32s\" is not supported", i, r);
    }
    if (src.bos) dsi_buf_put(&o->b, src.bos, src.bos_len);
    if (f.chat == CHAT_V3) {
        bool first = true;
        const char *last = NULL;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(msgs[i].role, "system")) continue;
            if (f.join_systems) {
                if (!first) ct_put(o, "\n\n");
                ct_content(o, msgs[i].content);
                first = false;
            } else last = msgs[i].content;
        }
        if (last) ct_content(o, last);
    }
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role, *c = msgs[i].content;
        if (!strcmp(r, "system")) {
            if (f.chat != CHAT_V3) { ct_content(o, c); ct_put(o, "\n\n"); }
        } else if (!strcmp(r, "user")) {
            if (f.chat == CHAT_V2) { ct_put(o, "User: "); ct_content(o, c); ct_put(o, "\n\n"); }
            else { ct_put(o, CT_USER); ct_content(o, c); }
        } else {
            if (f.chat == CHAT_V2) ct_put(o, "Assistant: ");
            else ct_put(o, CT_ASSISTANT);
            if (f.chat == CHAT_V3 && f.strip_think) {
                const char *k = c, *g;
                while ((g = strstr(k, "</think>"))) k = g + 8;
                c = k;
            }
            ct_content(o, c);
            if (f.chat == CHAT_V3) ct_put(o, CT_EOS_LIT);
            else if (src.eos) dsi_buf_put(&o->b, src.eos, src.eos_len);
        }
    }
    if (add_generation_prompt) {
        if (f.chat == CHAT_V2) ct_put(o, "Assistant:");
        else {
            ct_put(o, CT_ASSISTANT);
            if (f.chat == CHAT_V3 && f.think_prompt) ct_put(o, "<think>\n");
        }
    }
    return o->b.failed ? dsi_fail(e, DS_ERR_NOMEM, "chat template: out of memory") : DS_OK;
}

DS_API ds_status ds_tokenizer_apply_chat_template(const ds_tokenizer *t, const ds_chat_message *msgs, size_t n,
                                                  int add_generation_prompt, char *buf, size_t cap, size_t *len_out) {
    dsi_err e = {DS_OK, ""};
    if (len_out) *len_out = 0;
    if (!t || !len_out || (!msgs && n) || (!buf && cap)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_apply_chat_template: NULL argument");
        return dsi_publish(&e);
    }
    ct_out o = {0};
    ds_status st = ct_render(t, msgs, n, add_generation_prompt, &o, &e);
    if (!st) st = dsi_tokenizer_copy_out(o.b.data, o.b.len, buf, cap, len_out, &e, "ds_tokenizer_apply_chat_template");
    dsi_buf_free(&o.b);
    return st ? dsi_publish(&e) : DS_OK;
}

/* ==== Encoding ============================================================ */
/* The rendered text encoded with the contents as plain spans: the template's
 * markup is the only place an added or special token can come from. */
DS_API ds_status ds_tokenizer_encode_chat(const ds_tokenizer *t, const ds_chat_message *msgs, size_t n,
                                          int add_generation_prompt, int flags, int32_t *ids, size_t cap,
                                          size_t *n_out) {
    dsi_err e = {DS_OK, ""};
    if (n_out) *n_out = 0;
    if (!t || !n_out || (!msgs && n) || (!ids && cap)) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_encode_chat: NULL argument");
        return dsi_publish(&e);
    }
    if (flags & ~DS_CHAT_SPECIAL_IN_CONTENT) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_tokenizer_encode_chat: unknown flags 0x%x", (unsigned)flags);
        return dsi_publish(&e);
    }
    dsi_chat_source src;
    dsi_tokenizer_chat_source(t, &src);
    ct_out o = {0};
    ds_status st = DS_OK;
    if (!(flags & DS_CHAT_SPECIAL_IN_CONTENT)) {
        o.spans = dsi_calloc(src.al, n ? n : 1, sizeof *o.spans);
        if (!o.spans) st = dsi_fail(&e, DS_ERR_NOMEM, "chat template: out of memory for %zu messages", n);
    }
    if (!st) st = ct_render(t, msgs, n, add_generation_prompt, &o, &e);
    if (!st)
        st = dsi_tokenizer_encode_plain(t, (const char *)o.b.data, o.b.len, 0, o.spans, o.n_spans, ids, cap, n_out,
                                        &e, "ds_tokenizer_encode_chat");
    dsi_buf_free(&o.b);
    dsi_free(src.al, o.spans);
    return st ? dsi_publish(&e) : DS_OK;
}
