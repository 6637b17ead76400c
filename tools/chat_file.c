/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * chat_file.c — a conversation as a JSON file (see chat_file.h).
 */
#include "tools/chat_file.h"

#include "tools/server/json.h"

#include <stdlib.h>
#include <string.h>

/* The roles a file may hold, as the static strings the messages point to. */
static const char *const roles[] = {"system", "user", "assistant"};

void chat_file_free(ds_chat_message *msg, size_t n) {
    if (!msg) return;
    for (size_t i = 0; i < n; i++) free((char *)msg[i].content);
    free(msg);
}

int chat_file_parse(const char *text, size_t len, ds_chat_message **msg, size_t *n, char *err, size_t err_len) {
    *msg = NULL;
    *n = 0;
    sj_value *root = NULL;
    int oom = 0;
    char perr[160];
    sj_doc *doc = sj_parse(text, len, &root, perr, sizeof perr, &oom);
    if (!doc) {
        if (oom) return -2;
        snprintf(err, err_len, "not valid JSON: %s", perr);
        return -1;
    }
    int rc = -1;
    ds_chat_message *out = NULL;
    size_t k = 0;
    const sj_value *arr = sj_get(root, "messages");
    if (root->type != SJ_OBJECT) {
        snprintf(err, err_len, "want an object {\"messages\": [...]}, not %s", sj_type_name(root->type));
        goto done;
    }
    if (!arr || arr->type != SJ_ARRAY) {
        snprintf(err, err_len, "want a \"messages\" array%s%s", arr ? ", not " : "", arr ? sj_type_name(arr->type) : "");
        goto done;
    }
    if (arr->u.arr.n > CHAT_FILE_MAX_MESSAGES) {
        snprintf(err, err_len, "%zu messages: at most %d", arr->u.arr.n, CHAT_FILE_MAX_MESSAGES);
        goto done;
    }
    /* calloc of at least one, so that an empty conversation is not NULL */
    out = calloc(arr->u.arr.n ? arr->u.arr.n : 1, sizeof *out);
    if (!out) {
        rc = -2;
        goto done;
    }
    for (k = 0; k < arr->u.arr.n; k++) {
        const sj_value *m = arr->u.arr.items[k];
        if (m->type != SJ_OBJECT) {
            snprintf(err, err_len, "messages[%zu]: want an object, not %s", k, sj_type_name(m->type));
            goto done;
        }
        const sj_value *role = sj_get(m, "role"), *content = sj_get(m, "content");
        if (!role || role->type != SJ_STRING) {
            snprintf(err, err_len, "messages[%zu]: want a string \"role\"", k);
            goto done;
        }
        const char *r = NULL;
        for (size_t j = 0; j < sizeof roles / sizeof roles[0]; j++)
            if (role->u.str.len == strlen(roles[j]) && !memcmp(role->u.str.s, roles[j], role->u.str.len)) r = roles[j];
        if (!r) {
            /* the role is shown only when it is short, printable text */
            int show = role->u.str.len <= 32;
            for (size_t j = 0; show && j < role->u.str.len; j++)
                show = (unsigned char)role->u.str.s[j] >= 0x20 && (unsigned char)role->u.str.s[j] < 0x7f;
            snprintf(err, err_len, "messages[%zu].role: want system, user or assistant, not %s%s%s", k,
                     show ? "\"" : "", show ? role->u.str.s : "that", show ? "\"" : "");
            goto done;
        }
        if (!content || content->type != SJ_STRING) {
            snprintf(err, err_len, "messages[%zu]: want a string \"content\"", k);
            goto done;
        }
        if (memchr(content->u.str.s, 0, content->u.str.len)) {
            snprintf(err, err_len, "messages[%zu].content holds a NUL character", k);
            goto done;
        }
        char *copy = malloc(content->u.str.len + 1);
        if (!copy) {
            rc = -2;
            goto done;
        }
        memcpy(copy, content->u.str.s, content->u.str.len + 1);
        out[k].role = r;
        out[k].content = copy;
    }
    rc = 0;
done:
    if (rc) {
        chat_file_free(out, k);
    } else {
        *msg = out;
        *n = k;
    }
    sj_doc_free(doc);
    return rc;
}

int chat_file_write(FILE *f, const ds_chat_message *msg, size_t n) {
    sbuf b = {0};
    sb_puts(&b, "{\"messages\": [");
    for (size_t i = 0; i < n; i++) {
        const char *c = msg[i].content ? msg[i].content : "";
        sb_puts(&b, i ? ",\n  {\"role\": " : "\n  {\"role\": ");
        sb_json_str(&b, msg[i].role, strlen(msg[i].role));
        sb_puts(&b, ", \"content\": ");
        sb_json_str(&b, c, strlen(c));
        sb_putc(&b, '}');
    }
    sb_puts(&b, n ? "\n]}\n" : "]}\n");
    int rc = b.oom || fwrite(b.data, 1, b.len, f) != b.len ? -1 : 0;
    sb_free(&b);
    return rc;
}
