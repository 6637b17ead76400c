/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * chat_file.h — a conversation as a JSON file, for `ds chat`'s /save and
 * /load (tools/ds.c):
 *
 *     {"messages": [{"role": "system", "content": "Be brief."},
 *                   {"role": "user", "content": "hello"},
 *                   {"role": "assistant", "content": "Hello!"}]}
 *
 * the shape of an OpenAI chat request's messages. Reading is strict (the
 * parser of tools/server/json.c): roles are system, user or assistant,
 * contents are strings without NUL characters, and anything else is refused
 * with a message that says where. Not part of the library.
 */
#ifndef DS_TOOLS_CHAT_FILE_H
#define DS_TOOLS_CHAT_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "deepseek.h"

/* Most messages a file may hold (a bound on hostile input). */
#define CHAT_FILE_MAX_MESSAGES 100000

/* Parses len bytes of a conversation file. On success returns 0 and sets
 * *msg to a malloc'd array of *n messages whose roles are static strings and
 * whose contents are malloc'd (free with chat_file_free). On failure returns
 * -1 with a message in err ("messages[2].role: want system, user or
 * assistant, not \"tool\"") or -2 when out of memory; *msg is NULL. */
int chat_file_parse(const char *text, size_t len, ds_chat_message **msg, size_t *n, char *err, size_t err_len);

/* Frees what chat_file_parse returned. */
void chat_file_free(ds_chat_message *msg, size_t n);

/* Writes the conversation as one JSON object and a newline. Returns 0, or -1
 * when out of memory or the write failed (errno says which for a write). */
int chat_file_write(FILE *f, const ds_chat_message *msg, size_t n);

#endif
