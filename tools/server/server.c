/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * server.c — ds-server, an OpenAI-compatible HTTP server for deepseek.h
 * models, on libmicrohttpd. It uses only the public API in deepseek.h.
 *
 * ---------------------------------------------------------------------------
 * Build (make builds it as build/ds-server where pkg-config finds
 * libmicrohttpd; Debian: apt-get install libmicrohttpd-dev):
 *
 *     cc -std=c11 -O2 -I. tools/server/server.c tools/server/json.c tools/cli.c \
 *        dist/deepseek.c -lmicrohttpd -lsodium -lm -lpthread -o ds-server
 *
 * The command line (messages, key loading, the model options, the stop
 * signals) is tools/cli.c, shared with the ds tool.
 *
 * Run:
 *
 *     ds-server --model model.dsm --key-file vendor.key [--port 8080] [--host 127.0.0.1]
 *               [--api-key-file token.txt] [--cache-mb N] [--max-concurrent N]
 *               [--threads N] [--ctx N] [--max-body BYTES] [--max-tokens N]
 *               [--evict lru|lfu] [--prefetch auto|always|off]
 *               [--device cpu|cuda [--gpu-cache-mb N] [--gpu N]]
 *               [--model-name NAME] [--passphrase-env VAR] [--log-prompts] [--verbose]
 *               [--header-timeout S] [--body-timeout S] [--max-conns N] [--max-conns-per-client N]
 *               [--allow-special-in-content] [--queue N] [--queue-timeout S] [--cors ORIGIN]
 *               [--keys-file F] [--audit-log PATH]
 *               [--lora NAME=FILE]... [--lora-scaled NAME=FILE S]... [--lora-key-file F]
 *     printf '%s\n' "$TOKEN" | ds-server --hash-key    (the HASH field of a --keys-file line)
 *
 * Endpoints (all bodies JSON; errors are {"error":{"message","type","param","code"}}):
 *
 *     POST /v1/chat/completions  OpenAI chat completions: messages rendered with
 *                                the model's chat template; max_tokens (or
 *                                max_completion_tokens), temperature, top_p, seed,
 *                                stop (string or array), presence_penalty,
 *                                frequency_penalty, stream, stream_options.include_usage;
 *                                extensions: top_k, min_p, repetition_penalty,
 *                                ignore_eos. stream: true answers with server-sent
 *                                events (chat.completion.chunk), ending "data: [DONE]".
 *     POST /v1/completions       the same for a raw prompt (text_completion objects)
 *     POST /generate             {"prompt": "...", "max_tokens": N, ...} ->
 *                                {"text": "...", "finish_reason", "prompt_tokens",
 *                                 "completion_tokens", "total_tokens", "seconds"}
 *     GET  /v1/models            the one model ("id" = --model-name or the file's
 *                                base name), and BASE:NAME for each LoRA adapter
 *                                loaded; GET /v1/models/{id} likewise
 *     GET, POST /v1/adapters     (admin) the adapters loaded; load one:
 *                                {"name", "path", "scale"}
 *     GET, DELETE /v1/adapters/{name}  (admin) one adapter; unload it (409
 *                                while requests use it)
 *     GET  /health               {"status":"ok",...}; never needs the API token. 503
 *                                {"status":"degraded","reason":...} once a generation
 *                                failed reading the model file (changed, truncated,
 *                                unreadable under the running server)
 *     POST /tokenize             {"content": "...", "add_special", "parse_special"} ->
 *                                {"tokens": [...]}; POST /detokenize the reverse
 *                                (llama-server's shapes)
 *     GET  /props                model file, n_ctx, slots, chat template, version
 *     GET  /metrics              Prometheus text format: requests by endpoint and
 *                                code, tokens, tokens/s, latency histogram, expert
 *                                cache counters, the wait queue, resident memory;
 *                                time to first token, inter-token latency, batch
 *                                size, token log-probability, KV cache use, FLOPs
 *                                per token, errors by kind, model-file failures
 *                                (see "Monitoring"; deploy/ has the dashboard and
 *                                alert rules built on them)
 *
 *     curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \
 *          -d '{"model":"demo","messages":[{"role":"user","content":"Hi"}],"max_tokens":32}'
 *
 * Behaviour:
 *   - --api-key-file F: every endpoint but /health wants "Authorization: Bearer
 *     <the token in F>" (compared in constant time); otherwise 401.
 *   - --keys-file F: keys with roles (inference: all but /metrics; metrics:
 *     /metrics only; admin: all; else 403) and optional per-key limits
 *     (max_concurrent, tokens_per_minute: 429 with Retry-After); the file
 *     holds salted hashes (tools/server/keys.c), is reread on SIGHUP (kept
 *     as it was when the new text does not parse).
 *   - Every answer has X-Request-Id: the client's own when sane, else made.
 *   - Limits: a body over --max-body bytes is 413 (at once when Content-Length
 *     says so); max_tokens over --max-tokens or a bad parameter is 400; a
 *     generation while all --max-concurrent contexts are busy waits in a
 *     FIFO queue of --queue places (16) for at most --queue-timeout s (60):
 *     429 with Retry-After when the queue is full, 503 queue_timeout with
 *     Retry-After when the wait runs out (see "the pool and its wait queue").
 *   - logit_bias, logprobs / top_logprobs and response_format json_object
 *     (constrained decoding to one JSON object) are done through the
 *     library's logits hook (tools/server/logits.c, jsonmask.c). Request
 *     fields the server does not implement (n > 1, json_schema, suffix,
 *     tools, ...) are 400 unsupported, never silently ignored.
 *   - --cors ORIGIN: Access-Control-Allow-Origin on every answer, OPTIONS
 *     preflights answered 204 without the API key.
 *   - The port is bound before the model loads: a busy port fails at once.
 *   - Unknown paths are 404, a known path with the wrong method 405.
 *   - --max-concurrent slots are the sequences of one context; a request
 *     takes a free one (the one holding the longest prefix of its prompt)
 *     and gives it back at the end, also when a streaming client goes away
 *     mid-stream. The running generations decode together, one token each
 *     per pass (continuous batching: see "Continuous batching" below).
 *   - LoRA adapters: a request whose "model" is BASE:NAME runs with adapter
 *     NAME (ds_context_set_adapters on its slot's sequence, set under the
 *     pool's lock as the slot is taken); an unknown NAME is 404
 *     model_not_found. A slot keeps its last adapter, and a request prefers
 *     the slot that holds the longest prefix of its prompt under the same
 *     adapter (a slot taken with another adapter forgets its tokens).
 *   - Audit log on stderr: a line when the model is loaded and one per request
 *     (time, remote address, method, endpoint, status, token counts, latency,
 *     request id, key). With --audit-log PATH the request lines go to PATH
 *     instead, as JSON records, with records of the operational events
 *     (schema: docs/server.md).
 *     Prompt text only with --log-prompts; keys and API tokens never.
 *   - A client that stops reading a stream holds its context until it reads
 *     again, leaves, or 120 s pass without progress (the connection timeout).
 *   - Slow clients (the connection guard): a request head must be complete
 *     within --header-timeout s (10) of the connection's opening or of its
 *     previous request's end, a body within --body-timeout s (30) of its
 *     head, else the connection is closed, however steadily bytes trickle
 *     in. One client (IPv4 address, IPv6 /64) holds at most
 *     --max-conns-per-client connections (32), the server --max-conns (512);
 *     at most 3/4 of those may be waiting for a request head (past that the
 *     one waiting longest is closed), so /health and authenticated requests
 *     get in while slow unauthenticated connections are open. Refusals and
 *     closes are logged with the client's address.
 *   - A failure inside the server (library error, out of memory) answers 500
 *     "internal error; request id req-..." (also in X-Request-Id); the detail
 *     is logged under that id. 4xx answers keep their specific messages.
 *   - --passphrase-env: the variable is cleared from the environment once
 *     read (also from /proc/PID/environ).
 *   - The model's chat template must be one deepseek.h knows (DeepSeek V2,
 *     V2.5, V3, R1); roles system/developer, user, assistant; text only.
 *     Message contents are tokenized as text (ds_tokenizer_encode_chat): the
 *     text of a control token in a message (end of sentence, the User and
 *     Assistant markers, "</think>", ...) is not that token, so a client
 *     cannot end a turn or speak for another role; --allow-special-in-content
 *     turns this off (trusted clients only). /v1/completions prompts are raw
 *     text, tokens and all.
 *   - SIGINT/SIGTERM: stop accepting, end running generations, free the
 *     contexts, close the model, exit 0.
 *
 * Exit status: 0 after a clean shutdown, 1 when the model, a key file or the
 * listening socket fails, 2 for a bad command line.
 * ---------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE 1

#include "deepseek.h"
#include "json.h"
#include "keys.h"
#include "logits.h"
#include "tools/cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define MAX_STOPS 4
#define STREAM_BLOCK (16 * 1024)
#define DS_SERVER_MAX_SLOTS 256         /* --max-concurrent: sequences of one context (ds_context_eval_batch's bound) */
#define MAX_SERVER_ADAPTERS 64          /* LoRA adapters loaded at once (--lora, POST /v1/adapters) */

const char cli_prog[] = "ds-server";

/* ==== Small helpers ======================================================= */

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: spreads a counter into well-mixed 64-bit values. */
static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Compares a presented token with the secret in time that depends only on
 * the secret's length. Returns 1 when equal. */
static int token_equal(const char *given, size_t given_len, const char *secret, size_t secret_len) {
    volatile unsigned char d = (unsigned char)(given_len != secret_len);
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        d |= (unsigned char)(g ^ (unsigned char)secret[i]);
    }
    return d == 0;
}

/* "address:port" ("[v6]:port") of a socket address, or "-". */
static void format_addr(const struct sockaddr *sa, char *buf, size_t len) {
    char host[INET6_ADDRSTRLEN] = "";
    snprintf(buf, len, "-");
    if (!sa) return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    }
}

/* ==== Audit log =========================================================== */
/* One line per event on stderr, written with a single fwrite so lines from
 * different connection threads never interleave. */

static void audit(const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static void audit(const char *fmt, ...) {
    char line[8192];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ ds-server: ", ts.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    n += k;
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
    fflush(stderr);
}

/* ---- --audit-log: JSON lines ----
 * One object per line: a "request" record per request (instead of the
 * request line above) and an "event" record per operational event (beside
 * its line above). Each line is one write(2) on a descriptor opened with
 * O_APPEND, so lines never interleave, also with another process appending
 * to the same file; the mutex orders them and keeps a SIGHUP reopen (log
 * rotation) from closing the descriptor under a write. The file is created
 * 0600: with --log-prompts it holds what the users wrote. */

static struct {
    pthread_mutex_t mu;
    int fd;                               /* under mu: SIGHUP swaps it */
    const char *path;                     /* NULL: no --audit-log; set before any thread, then read freely */
} A = {PTHREAD_MUTEX_INITIALIZER, -1, NULL};

/* Opens (creating 0600) the audit log for appending. Returns the descriptor
 * or -1 with errno set. */
static int audit_open(const char *path) {
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
}

/* Starts a record in b: {"time":"<RFC 3339 UTC, ms>","type":"<type>" */
static void audit_begin(sbuf *b, const char *type) {
    struct timespec ts;
    struct tm tm;
    char t[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + n, sizeof t - n, ".%03ldZ", ts.tv_nsec / 1000000);
    sb_printf(b, "{\"time\":\"%s\",\"type\":\"%s\"", t, type);
}

/* Ends the record in b and writes it as one line; frees b. */
static void audit_end(sbuf *b) {
    sb_puts(b, "}\n");
    pthread_mutex_lock(&A.mu);
    if (A.fd >= 0) {
        if (b->oom) {
            static const char oom[] = "{\"type\":\"event\",\"event\":\"lost\",\"error\":\"out of memory for an "
                                      "audit record\"}\n";
            if (write(A.fd, oom, sizeof oom - 1) < 0) {
            }
        } else {
            size_t off = 0;
            while (off < b->len) {
                ssize_t w = write(A.fd, b->data + off, b->len - off);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) break;
                off += (size_t)w;
            }
        }
    }
    pthread_mutex_unlock(&A.mu);
    sb_free(b);
}

/* A JSON string member ,"key":"value" (null for NULL). */
static void jstr(sbuf *b, const char *key, const char *v) {
    sb_printf(b, ",\"%s\":", key);
    if (v) sb_json_str(b, v, strlen(v));
    else sb_puts(b, "null");
}

/* An event record with no more members than the name (more: build it with
 * audit_begin / audit_end). */
static void audit_event(const char *event) {
    if (!A.path) return;
    sbuf b = {0};
    audit_begin(&b, "event");
    jstr(&b, "event", event);
    audit_end(&b);
}

/* ==== Connection guard ==================================================== */
/*
 * Keeps slow or greedy clients from taking every connection (slowloris).
 * MHD's own timeout counts idle time only, so a client sending a header byte
 * every few seconds would hold its connection, and its thread, for ever.
 * Every connection is tracked from accept to close (MHD_OPTION_NOTIFY_CONNECTION)
 * in one of these phases:
 *   waiting  for a complete request head, from accept or from the end of the
 *            previous request on a kept-alive connection: --header-timeout in all
 *   body     reading the request body: --body-timeout in all
 *   answer   generating and sending the response: MHD's idle timeout only
 * A watchdog thread shuts down the socket of a connection past its phase's
 * deadline; the connection's thread then reads the end of the stream and MHD
 * closes it. At accept (the accept policy callback, which sees the address):
 * one client (an IPv4 address, or an IPv6 /64) gets at most
 * --max-conns-per-client connections and the server at most --max-conns; and
 * at most 3/4 of --max-conns may be waiting for their request head: when that
 * many are, the one that has waited longest is closed to make room. So a
 * flood of slow connections cannot take the last quarter, which stays for
 * connections past their head (/health, authenticated requests), and a new
 * connection is accepted while any waiting one can be dropped. Every refusal
 * and every close by the guard is logged with the client's address.
 */

enum { PH_WAITING, PH_BODY, PH_ANSWER, PH_CLOSING };

typedef struct guard_conn {
    struct guard_conn *prev, *next;
    int fd;
    unsigned char client[17];             /* family + address (IPv6: its /64): what the per-client cap counts */
    char remote[64];                      /* "address:port" for the log */
    int phase;
    double since;                         /* when the phase began (monotonic seconds) */
    int timed_out;                        /* closed by the guard mid-request: logged as 408 */
} guard_conn;

typedef struct guard {
    pthread_mutex_t mu;
    pthread_cond_t cv;                    /* a connection came or changed phase, or stop */
    guard_conn *head;
    unsigned n_conns;
    unsigned max_conns, max_per_client, max_waiting;
    double header_timeout, body_timeout;
    int stop;
    pthread_t thread;
} guard;

static guard G;

/* The per-client key of an address: IPv4 (also as IPv4-mapped IPv6) by
 * address, IPv6 by /64, since one host commonly holds a whole /64. */
static void client_key(const struct sockaddr *sa, unsigned char key[17]) {
    memset(key, 0, 17);
    if (!sa) return;
    if (sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            key[0] = 4;
            memcpy(key + 1, a->s6_addr + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a->s6_addr, 8);
        }
    }
}

/* Shuts the connection's socket (its thread sees the end of the stream and
 * MHD closes it) and logs why. G.mu held. The fd is still the connection's:
 * MHD closes it only after MHD_CONNECTION_NOTIFY_CLOSED, which takes G.mu. */
static void guard_close(guard_conn *c, const char *why) {
    if (c->phase == PH_BODY) c->timed_out = 1;
    c->phase = PH_CLOSING;
    shutdown(c->fd, SHUT_RDWR);
    audit("closed remote=%s reason=\"%s\"", c->remote, why);
}

/* MHD's accept policy callback: the per-client and total caps, and room
 * among the connections waiting for their request head. */
static enum MHD_Result guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    (void)cls;
    (void)addrlen;
    unsigned char key[17];
    char remote[64];
    client_key(addr, key);
    format_addr(addr, remote, sizeof remote);
    pthread_mutex_lock(&G.mu);
    unsigned same = 0, waiting = 0;
    guard_conn *oldest = NULL;
    for (guard_conn *c = G.head; c; c = c->next) {
        if (!memcmp(c->client, key, sizeof key)) same++;
        if (c->phase == PH_WAITING) {
            waiting++;
            if (!oldest || c->since <= oldest->since) oldest = c;   /* the list runs newest first */
        }
    }
    enum MHD_Result ok = MHD_YES;
    if (G.n_conns >= G.max_conns) {
        audit("refused remote=%s reason=\"connection limit: %u connections open (--max-conns)\"", remote, G.n_conns);
        ok = MHD_NO;
    } else if (same >= G.max_per_client) {
        audit("refused remote=%s reason=\"per-client limit: %u connections from this client "
              "(--max-conns-per-client)\"", remote, same);
        ok = MHD_NO;
    } else if (waiting >= G.max_waiting && oldest) {
        char why[160];
        snprintf(why, sizeof why, "evicted: %u connections waiting for a request head, the most allowed; "
                 "this one waited longest", waiting);
        guard_close(oldest, why);
    }
    pthread_mutex_unlock(&G.mu);
    return ok;
}

/* MHD_OPTION_NOTIFY_CONNECTION: a connection was accepted or is closing. Both
 * come from MHD's listening thread (or from MHD_stop_daemon), STARTED before
 * the connection's own thread exists. */
static void guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                         enum MHD_ConnectionNotificationCode code) {
    (void)cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        guard_conn *c = calloc(1, sizeof *c);
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ad = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (!c || !fd) {
            /* untracked: only MHD's idle timeout applies; say so */
            free(c);
            audit("warning: a connection is not tracked by the connection guard (out of memory)");
            return;
        }
        c->fd = fd->connect_fd;
        client_key(ad ? ad->client_addr : NULL, c->client);
        format_addr(ad ? ad->client_addr : NULL, c->remote, sizeof c->remote);
        c->phase = PH_WAITING;
        c->since = now_mono();
        pthread_mutex_lock(&G.mu);
        c->next = G.head;
        if (G.head) G.head->prev = c;
        G.head = c;
        G.n_conns++;
        pthread_cond_signal(&G.cv);
        pthread_mutex_unlock(&G.mu);
        *socket_context = c;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        guard_conn *c = *socket_context;
        if (!c) return;
        pthread_mutex_lock(&G.mu);
        if (c->prev) c->prev->next = c->next;
        else G.head = c->next;
        if (c->next) c->next->prev = c->prev;
        G.n_conns--;
        pthread_mutex_unlock(&G.mu);
        free(c);
        *socket_context = NULL;
    }
}

static guard_conn *guard_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The connection enters a phase (its deadline counts from now). */
static void guard_phase(struct MHD_Connection *conn, int phase) {
    guard_conn *c = guard_of(conn);
    if (!c) return;
    pthread_mutex_lock(&G.mu);
    if (c->phase != PH_CLOSING) {
        c->phase = phase;
        c->since = now_mono();
        pthread_cond_signal(&G.cv);
    }
    pthread_mutex_unlock(&G.mu);
}

/* Was the connection's request cut off by the body deadline? */
static int guard_timed_out(struct MHD_Connection *conn) {
    guard_conn *c = guard_of(conn);
    if (!c) return 0;
    pthread_mutex_lock(&G.mu);
    int t = c->timed_out;
    pthread_mutex_unlock(&G.mu);
    return t;
}

/* The watchdog: closes connections past their deadline, sleeping until the
 * next one (or until a connection comes or changes phase). */
static void *guard_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&G.mu);
    while (!G.stop) {
        double now = now_mono(), next = -1;
        for (guard_conn *c = G.head; c; c = c->next) {
            if (c->phase != PH_WAITING && c->phase != PH_BODY) continue;
            double limit = c->phase == PH_WAITING ? G.header_timeout : G.body_timeout;
            if (now >= c->since + limit) {
                char why[128];
                snprintf(why, sizeof why, "%s not complete within %.0f s (--%s-timeout)",
                         c->phase == PH_WAITING ? "request head" : "request body", limit,
                         c->phase == PH_WAITING ? "header" : "body");
                guard_close(c, why);
            } else if (next < 0 || c->since + limit < next) {
                next = c->since + limit;
            }
        }
        if (next < 0) {
            pthread_cond_wait(&G.cv, &G.mu);
        } else {
            struct timespec ts;
            ts.tv_sec = (time_t)next;
            ts.tv_nsec = (long)((next - (double)ts.tv_sec) * 1e9);
            if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
            pthread_cond_timedwait(&G.cv, &G.mu, &ts);
        }
    }
    pthread_mutex_unlock(&G.mu);
    return NULL;
}

/* Sets up the guard and starts its watchdog. Returns 0 or -1 (message printed). */
static int guard_start(unsigned max_conns, unsigned max_per_client, unsigned header_timeout, unsigned body_timeout) {
    pthread_condattr_t ca;
    memset(&G, 0, sizeof G);
    G.max_conns = max_conns;
    G.max_per_client = max_per_client;
    G.max_waiting = max_conns - max_conns / 4;
    G.header_timeout = header_timeout;
    G.body_timeout = body_timeout;
    pthread_mutex_init(&G.mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);   /* the deadlines are on now_mono's clock */
    pthread_cond_init(&G.cv, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&G.thread, NULL, guard_main, NULL);
    if (e) {
        fprintf(stderr, "ds-server: cannot start the connection watchdog thread: %s\n", strerror(e));
        return -1;
    }
    return 0;
}

/* Stops the watchdog (after MHD_stop_daemon: no connection is left). */
static void guard_stop(void) {
    pthread_mutex_lock(&G.mu);
    G.stop = 1;
    pthread_cond_signal(&G.cv);
    pthread_mutex_unlock(&G.mu);
    pthread_join(G.thread, NULL);
    pthread_cond_destroy(&G.cv);
    pthread_mutex_destroy(&G.mu);
}

/* ==== Endpoints and metrics =============================================== */

enum {
    EP_CHAT,
    EP_COMPLETIONS,
    EP_GENERATE,
    EP_MODELS,
    EP_MODEL,       /* /v1/models/{id} */
    EP_HEALTH,
    EP_METRICS,
    EP_TOKENIZE,
    EP_DETOKENIZE,
    EP_PROPS,
    EP_ADAPTERS,    /* /v1/adapters: GET lists, POST loads (admin) */
    EP_ADAPTER,     /* /v1/adapters/{name}: GET, DELETE unloads (admin) */
    EP_OTHER,       /* unknown path */
    N_EP
};

static const char *const ep_name[N_EP] = {"/v1/chat/completions", "/v1/completions", "/generate", "/v1/models",
                                          "/v1/models/{id}", "/health", "/metrics", "/tokenize", "/detokenize",
                                          "/props", "/v1/adapters", "/v1/adapters/{name}", "other"};

/* Status codes the server answers with; anything else counts as "other". */
static const int codes[] = {200, 204, 400, 401, 403, 404, 405, 408, 409, 413, 429, 500, 503};
#define N_CODE ((int)(sizeof codes / sizeof codes[0]) + 1)

static int code_index(int status) {
    for (int i = 0; i < N_CODE - 1; i++)
        if (codes[i] == status) return i;
    return N_CODE - 1;
}

/* Request latency buckets (seconds). */
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
#define N_BUCKET ((int)(sizeof buckets / sizeof buckets[0]))

/* Queue wait buckets (seconds): 0 (a context was free) falls in the first. */
static const double qbuckets[] = {0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};

/* Why a generation request was turned away without a context. */
enum { QR_FULL, QR_TIMEOUT, QR_SHUTDOWN, N_QREJECT };
static const char *const q_reject_name[N_QREJECT] = {"full", "timeout", "shutdown"};

/* ---- monitoring: the latency, batch and quality histograms and the error
 * kinds (see "Monitoring" below for where each is observed) ---- */

/* Time to first token (seconds): from the request's arrival, so a wait in
 * the queue and the prompt pass count. */
static const double ttft_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
/* Between two tokens of one sequence (seconds). */
static const double itl_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/* Sequences decoded in one forward pass. */
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
/* Log-probability of a generated token (nats; always <= 0). */
static const double logprob_bounds[] = {-20, -15, -10, -8, -6, -5, -4, -3, -2.5, -2,
                                        -1.5, -1, -0.75, -0.5, -0.25, -0.1, -0.01, 0};
#define N_BOUNDS(a) ((int)(sizeof(a) / sizeof(a)[0]))
#define HISTO_MAX 24
_Static_assert(N_BOUNDS(qbuckets) <= HISTO_MAX && N_BOUNDS(ttft_bounds) <= HISTO_MAX && N_BOUNDS(itl_bounds) <= HISTO_MAX &&
                   N_BOUNDS(batch_bounds) <= HISTO_MAX && N_BOUNDS(logprob_bounds) <= HISTO_MAX,
               "a histogram has more buckets than struct histo holds");

/* One histogram's counts; its bucket bounds are one of the arrays above. */
typedef struct histo {
    uint64_t n[HISTO_MAX + 1];            /* per bucket (not cumulative); n[n_bounds] = +Inf */
    double sum;
    uint64_t count;
} histo;

/* Counts v in h: the first bucket whose bound is >= v (bounds ascending). */
static void histo_observe(histo *h, const double *bounds, int n_bounds, double v) {
    int b = 0;
    while (b < n_bounds && !(v <= bounds[b])) b++;   /* NaN lands in +Inf */
    h->n[b]++;
    if (v == v) h->sum += v;
    h->count++;
}

/* What went wrong with a request, for ds_server_errors_total{kind}. Every
 * kind is always exported (0 until it happens), so rates and alerts never
 * meet an absent series. */
enum {
    EK_BAD_REQUEST,       /* 400: a malformed body or parameter, a prompt over the context */
    EK_NOT_FOUND,         /* 404, 405: no such endpoint or model, wrong method */
    EK_TOO_LARGE,         /* 413 */
    EK_AUTH,              /* 401: no or a wrong API key */
    EK_FORBIDDEN,         /* 403: a key whose role may not do this */
    EK_RATE_LIMITED,      /* 429 other than a full queue (a per-key limit) */
    EK_QUEUE_FULL,        /* 429: every slot busy and the queue full */
    EK_QUEUE_TIMEOUT,     /* 503: --queue-timeout passed in the queue */
    EK_SHUTTING_DOWN,     /* 503, or a stream cut: the server was stopping */
    EK_UNAVAILABLE,       /* another 503 */
    EK_REQUEST_TIMEOUT,   /* 408: the body deadline */
    EK_CLIENT_GONE,       /* the client left before its answer (499) or in the middle of a stream */
    EK_MODEL_ERROR,       /* a generation failed reading the model file (authentication, I/O, truncation) */
    EK_INTERNAL,          /* any other failure inside the server (500, or an error event in a stream) */
    EK_OTHER,             /* a status none of the above covers */
    N_EK
};
static const char *const ek_name[N_EK] = {"bad_request", "not_found", "too_large", "auth", "forbidden",
                                          "rate_limited", "queue_full", "queue_timeout", "shutting_down",
                                          "unavailable", "request_timeout", "client_gone", "model_error",
                                          "internal", "other"};

/* Why reading the model file failed under a generation. */
enum { MF_AUTH, MF_IO, MF_TRUNCATED, MF_CORRUPT, N_MF };
static const char *const mf_name[N_MF] = {"auth", "io", "truncated", "corrupt"};

typedef struct metrics {
    pthread_mutex_t mu;
    uint64_t requests[N_EP][N_CODE];
    uint64_t hist[N_EP][N_BUCKET + 1];    /* per bucket (not cumulative); last = +Inf */
    double hist_sum[N_EP];
    uint64_t hist_count[N_EP];
    uint64_t prompt_tokens, generated_tokens;
    uint64_t prompt_reused;               /* prompt tokens a slot already held (not evaluated again) */
    double prompt_seconds, generate_seconds;
    double last_tps;                      /* generated tokens / decode seconds, last request */
    uint64_t streams_aborted;
    /* the wait queue */
    histo qwait;                          /* bounds: qbuckets */
    uint64_t q_rejected[N_QREJECT];       /* by reason, see q_reject_name */
    uint64_t q_abandoned;                 /* the client left while waiting */
    /* monitoring */
    histo ttft, itl, batch, logprob;      /* bounds: ttft_bounds, itl_bounds, batch_bounds, logprob_bounds */
    uint64_t errors[N_EK];                /* by kind, see ek_name */
    uint64_t model_failures[N_MF];        /* by reason, see mf_name */
} metrics;

/* ==== Server state ======================================================== */

typedef struct server {
    ds_model *model;
    const ds_tokenizer *tok;
    ds_model_config cfg;
    double active_params;                 /* weights one token's forward pass multiplies with (model_active_params) */
    char model_id[256];
    long long created;                    /* start time, Unix seconds */
    double start_wall;

    /* the slots: one per concurrent generation, each a sequence of one
     * context (ds_context_seq) so that their tokens decode in one pass */
    pthread_mutex_t pool_mu;
    ds_context *root;                     /* the context; ctx[i] = its sequence i */
    ds_context **ctx;
    unsigned char *busy;
    double *taken_at;                     /* (n_slots) when each busy context was taken (now_mono) */
    atomic_int *kv_held;                  /* (n_slots) tokens each context holds, as its user last noted
                                             (metrics_kv_note): read by /metrics without the context */
    int n_slots, n_busy;
    int n_ctx;                            /* tokens per context */

    /* the wait queue (under pool_mu): requests waiting for a context, oldest first */
    struct waiter *q_head, *q_tail;
    int n_queued;
    int queue_max;                        /* --queue */
    double queue_timeout;                 /* --queue-timeout, seconds */
    double hold_avg;                      /* how long a generation holds its context: moving mean, seconds */
    int n_held;                           /* contexts given back so far (hold_avg is meaningless at 0) */

    /* LoRA adapters (under pool_mu): the ones loaded, and the one each
     * slot's sequence applies (ds_context_set_adapters), so that a request
     * takes a slot that already applies its adapter and reuses its prompt */
    struct lora_entry *lora[MAX_SERVER_ADAPTERS];
    int n_lora;
    struct lora_entry **slot_lora;        /* (n_slots) NULL: the base alone */
    secret lora_secret;                   /* what adapters are opened with: the model's key or passphrase, or
                                             --lora-key-file's key; kept for POST /v1/adapters, wiped at exit */
    int lora_plaintext;                   /* --allow-plaintext */

    /* limits and options */
    size_t max_body;
    int max_tokens;
    int log_prompts;
    int chat_flags;                       /* ds_tokenizer_encode_chat flags */

    /* bearer token of --api-key-file (NULL = none): the key named "default" */
    char *token;
    size_t token_len;
    /* --keys-file (NULL = none): the keys, replaced whole on SIGHUP under
     * keys_mu; a request copies what it needs of its key, so the old set
     * can be freed at once */
    const char *keys_file;
    pthread_mutex_t keys_mu;
    keyset keys;

    uint64_t id_base;
    atomic_uint_fast64_t id_counter;
    atomic_int stopping;
    atomic_int stop_answers;              /* requests stopped in the queue whose 503 is not yet sent */

    metrics met;
} server;

static server S;

/* ---- the pool and its wait queue ----
 *
 * A generation request takes a free context; with none free it waits in a
 * bounded FIFO (--queue places) for at most --queue-timeout seconds. MHD runs
 * one thread per connection, so a waiting request blocks only its own
 * connection's thread: /health, /metrics and the other connections go on.
 * A context given back goes straight to the oldest waiter (handed over
 * under pool_mu, never marked free in between), so a request arriving
 * meanwhile cannot overtake the queue: the order is strict FIFO, and a
 * request takes a free context only when nobody waits. Each waiter sleeps on
 * its own condition variable and wakes at least every QUEUE_POLL seconds to
 * see whether its client has gone (its socket reads end-of-stream or an
 * error) or its time is up; a waiter that leaves unlinks itself and holds no
 * context, so no context is ever handed to a request nobody waits for.
 */

#define QUEUE_POLL 0.1

typedef struct waiter {
    struct waiter *next;
    pthread_cond_t cv;                    /* on CLOCK_MONOTONIC: the deadlines are now_mono's */
    ds_context *ctx;                      /* the context handed over; NULL while waiting */
    struct lora_entry *want;              /* the adapter it asks for (NULL: none) */
    int failed;                           /* handed a slot whose adapter could not be applied */
} waiter;

/* How pool_acquire ended. */
enum { ACQ_OK, ACQ_FULL, ACQ_TIMEOUT, ACQ_GONE, ACQ_STOPPING, ACQ_ERROR };

/* Has the client of this socket gone? End of stream or an error on a
 * non-blocking peek says so; bytes or nothing to read yet say it is there.
 * (A client that half-closes its side after sending a request counts as
 * gone.) */
static int client_gone(int fd) {
    char b;
    if (fd < 0) return 0;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* ---- LoRA adapters ----
 * An adapter loaded (--lora at start, POST /v1/adapters later) is an entry
 * in S.lora. A request naming it ("model": "BASE:name") holds a reference
 * from the lookup until its slot is given back (gen_end), so it cannot be
 * unloaded under it: DELETE answers 409 while references are held. A slot
 * keeps the adapter of its last request (its tokens were computed under
 * it); DELETE takes it off the free slots that still apply it. */
typedef struct lora_entry {
    char name[KEYS_NAME_MAX + 1];
    char *path;
    float scale;                          /* the multiplier on the adapter's own alpha / r */
    ds_adapter *a;
    ds_adapter_info info;
    int refs;                             /* requests holding it (under pool_mu) */
    long long loaded;                     /* Unix seconds */
} lora_entry;

/* The adapter named name, or NULL. pool_mu held. */
static lora_entry *lora_find_locked(const char *name) {
    for (int i = 0; i < S.n_lora; i++)
        if (!strcmp(S.lora[i]->name, name)) return S.lora[i];
    return NULL;
}

/* The adapter named name with a reference taken, or NULL. */
static lora_entry *lora_get(const char *name) {
    pthread_mutex_lock(&S.pool_mu);
    lora_entry *e = lora_find_locked(name);
    if (e) e->refs++;
    pthread_mutex_unlock(&S.pool_mu);
    return e;
}

static void lora_put(lora_entry *e) {
    if (!e) return;
    pthread_mutex_lock(&S.pool_mu);
    e->refs--;
    pthread_mutex_unlock(&S.pool_mu);
}

static void lora_entry_free(lora_entry *e) {
    if (!e) return;
    (void)ds_adapter_close(e->a);
    free(e->path);
    free(e);
}

/* Makes slot i's sequence apply want (NULL: none). A change forgets the
 * slot's tokens (ds_context_set_adapters: they were computed under the other
 * list), so the prompt reuse counted later is what really is reused. The
 * slot is free or being handed over: no pass reads its sequence. pool_mu
 * held. Returns 0, or -1 (logged). */
static int slot_bind(int i, lora_entry *want) {
    if (S.slot_lora[i] == want) return 0;
    ds_status st = want ? ds_context_set_adapters(S.ctx[i], &want->a, &want->scale, 1)
                        : ds_context_set_adapters(S.ctx[i], NULL, NULL, 0);
    if (st != DS_OK) {
        audit("internal error: slot %d: applying adapter %s: %s", i, want ? want->name : "(none)", errmsg(st));
        return -1;
    }
    S.slot_lora[i] = want;
    atomic_store(&S.kv_held[i], ds_context_n_past(S.ctx[i]));
    return 0;
}

/* How many leading tokens of ids (n) slot i holds. pool_mu held, slot free. */
static size_t slot_prefix(int i, const int32_t *ids, size_t n) {
    int held = 0;
    const int32_t *h = ds_context_tokens(S.ctx[i], &held);
    size_t k = 0;
    while (k < n && k < (size_t)held && h[k] == ids[k]) k++;
    return k;
}

/* Marks slot i taken from now, applying want (NULL: the base alone). pool_mu
 * held. NULL when the adapter could not be applied (the slot stays free). */
static ds_context *slot_take(int i, lora_entry *want) {
    if (slot_bind(i, want) != 0) return NULL;
    if (!S.busy[i]) {
        S.busy[i] = 1;
        S.n_busy++;
    }
    S.taken_at[i] = now_mono();
    return S.ctx[i];
}

/* Unlinks w from the queue. pool_mu held. */
static void queue_unlink(waiter *w) {
    waiter **pp = &S.q_head, *prev = NULL;
    while (*pp && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return;
    *pp = w->next;
    if (S.q_tail == w) S.q_tail = prev;
    S.n_queued--;
}

/* A context for a generation: a free one at once when nobody waits (the one
 * that holds the longest prefix of the prompt ids, n_ids of them, so that
 * the least is evaluated again; of equals, the least recently used), else after waiting in the queue (then the
 * first slot to come free). fd is the client's socket (-1: not watched).
 * Returns ACQ_OK with *out set, or why not: ACQ_FULL (the queue is full),
 * ACQ_TIMEOUT (--queue-timeout passed), ACQ_GONE (the client left),
 * ACQ_STOPPING (shutdown). *waited: seconds spent waiting (0 when a
 * context was free or the queue full). */
static int pool_acquire(int fd, const int32_t *ids, size_t n_ids, lora_entry *want, ds_context **out,
                        double *waited) {
    double t0 = now_mono();
    *out = NULL;
    *waited = 0;
    pthread_mutex_lock(&S.pool_mu);
    if (!S.q_head) {
        int best = -1, best_same = 0;
        size_t best_k = 0;
        for (int i = 0; i < S.n_slots; i++)
            if (!S.busy[i]) {
                /* a slot holds a usable prefix only under the same adapter
                 * (taking it with another one forgets its tokens) */
                int same = S.slot_lora[i] == want;
                size_t k = same ? slot_prefix(i, ids, n_ids) : 0;
                /* ties: a slot that applies the adapter already (another
                 * one's tokens stay for its users), then the one used least
                 * recently, whose tokens are the least likely to be asked
                 * for again */
                if (best < 0 || k > best_k ||
                    (k == best_k && (same > best_same ||
                                     (same == best_same && S.taken_at[i] < S.taken_at[best])))) {
                    best = i;
                    best_k = k;
                    best_same = same;
                }
            }
        if (best >= 0) {
            *out = slot_take(best, want);
            pthread_mutex_unlock(&S.pool_mu);
            return *out ? ACQ_OK : ACQ_ERROR;
        }
    }
    if (S.n_queued >= S.queue_max) {
        pthread_mutex_unlock(&S.pool_mu);
        return ACQ_FULL;
    }
    waiter w;
    memset(&w, 0, sizeof w);
    w.want = want;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (S.q_tail) S.q_tail->next = &w;
    else S.q_head = &w;
    S.q_tail = &w;
    S.n_queued++;
    double deadline = t0 + S.queue_timeout;
    int res, gone = 0;
    for (;;) {
        if (w.ctx) {                      /* handed over (and unlinked) by pool_give */
            *out = w.ctx;
            res = ACQ_OK;
            break;
        }
        if (w.failed) {                   /* handed over, but its adapter could not be applied */
            res = ACQ_ERROR;
            break;
        }
        double now = now_mono();
        res = atomic_load(&S.stopping) ? ACQ_STOPPING
              : now >= deadline        ? ACQ_TIMEOUT
              : gone                   ? ACQ_GONE
                                       : -1;
        if (res >= 0) {
            /* counted before it leaves the queue: shutdown waits until the
             * queue is empty and no such answer is pending, and this request
             * is always in one of the two (on_completed counts it off) */
            if (res == ACQ_STOPPING) atomic_fetch_add(&S.stop_answers, 1);
            queue_unlink(&w);
            break;
        }
        double wake = now + QUEUE_POLL < deadline ? now + QUEUE_POLL : deadline;
        struct timespec ts;
        ts.tv_sec = (time_t)wake;
        ts.tv_nsec = (long)((wake - (double)ts.tv_sec) * 1e9);
        if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
        pthread_cond_timedwait(&w.cv, &S.pool_mu, &ts);
        if (!w.ctx) {
            /* the socket is looked at without the lock (a context handed
             * over meanwhile still wins: w.ctx is checked first) */
            pthread_mutex_unlock(&S.pool_mu);
            gone = client_gone(fd);
            pthread_mutex_lock(&S.pool_mu);
        }
    }
    pthread_mutex_unlock(&S.pool_mu);
    pthread_cond_destroy(&w.cv);
    *waited = now_mono() - t0;
    return res;
}

/* Gives a context back: to the oldest waiter when there is one, else to
 * the free slots. */
static void pool_give(ds_context *c) {
    if (!c) return;
    pthread_mutex_lock(&S.pool_mu);
    for (int i = 0; i < S.n_slots; i++)
        if (S.ctx[i] == c && S.busy[i]) {
            double held = now_mono() - S.taken_at[i];
            S.hold_avg = S.n_held ? S.hold_avg + (held - S.hold_avg) / 8 : held;
            S.n_held++;
            waiter *w = S.q_head;
            if (w) {
                queue_unlink(w);
                w->ctx = slot_take(i, w->want);   /* stays busy: it changes hands */
                if (!w->ctx) {
                    w->failed = 1;
                    S.busy[i] = 0;
                    S.n_busy--;
                }
                pthread_cond_signal(&w->cv);
            } else {
                S.busy[i] = 0;
                S.n_busy--;
            }
        }
    pthread_mutex_unlock(&S.pool_mu);
}

/* Wakes every waiter (shutdown: they answer 503 at once). */
static void queue_wake_all(void) {
    pthread_mutex_lock(&S.pool_mu);
    for (waiter *w = S.q_head; w; w = w->next) pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&S.pool_mu);
}

static int pool_busy(void) {
    pthread_mutex_lock(&S.pool_mu);
    int n = S.n_busy;
    pthread_mutex_unlock(&S.pool_mu);
    return n;
}

static int queue_depth(void) {
    pthread_mutex_lock(&S.pool_mu);
    int n = S.n_queued;
    pthread_mutex_unlock(&S.pool_mu);
    return n;
}

/* Retry-After for a request turned away (a full queue, a wait timed out):
 * about when the requests waiting now will have been served, so that a
 * retry then finds a context with little waiting. The contexts come back
 * about every hold_avg / n_slots seconds (hold_avg: the moving mean time a
 * generation held its context, each new one weighing 1/8; before any came
 * back, the time the longest running one has held its context so far), and
 * the queue is that many contexts long, plus one for the retry. At least
 * 1 s, at most 3600. */
static unsigned retry_after_s(void) {
    pthread_mutex_lock(&S.pool_mu);
    double hold = S.hold_avg;
    if (!S.n_held) {
        double now = now_mono();
        hold = 0;
        for (int i = 0; i < S.n_slots; i++)
            if (S.busy[i] && now - S.taken_at[i] > hold) hold = now - S.taken_at[i];
    }
    double s = ceil(hold * (S.n_queued + 1) / S.n_slots);
    pthread_mutex_unlock(&S.pool_mu);
    return s < 1 ? 1 : s > 3600 ? 3600 : (unsigned)s;
}

/* The queue's metrics for one generation request: its wait (all but a
 * full queue's refusals, which did not wait) and why it was turned away. */
static void queue_account(int acq, double waited) {
    metrics *m = &S.met;
    pthread_mutex_lock(&m->mu);
    if (acq != ACQ_FULL) histo_observe(&m->qwait, qbuckets, N_BOUNDS(qbuckets), waited);
    if (acq == ACQ_FULL) m->q_rejected[QR_FULL]++;
    else if (acq == ACQ_TIMEOUT) m->q_rejected[QR_TIMEOUT]++;
    else if (acq == ACQ_STOPPING) m->q_rejected[QR_SHUTDOWN]++;
    else if (acq == ACQ_GONE) m->q_abandoned++;
    pthread_mutex_unlock(&m->mu);
}

/* ==== Monitoring ========================================================== */
/*
 * The observations behind /metrics beyond request counts, in the three
 * dimensions an operator watches: performance (time to first token,
 * inter-token latency, the batch size of each decode step, the KV cache's
 * fill, the FLOPs a token costs), quality (the log-probability of each
 * generated token: its mean drifts when a model or adapter goes wrong) and
 * stability (errors by kind, failures reading the model file). Each is one
 * call from the place where the event happens, so the generation code can
 * be rearranged (a batched decode step calls metrics_batch_step with its
 * number of sequences) without touching how the numbers are kept. All take
 * S.met.mu (or, for the KV fill, write an atomic): callable from any thread.
 */

/* histo_observe under S.met.mu. */
#define METRICS_OBSERVE(h, bounds, v)                                                                              \
    do {                                                                                                           \
        pthread_mutex_lock(&S.met.mu);                                                                             \
        histo_observe(&S.met.h, bounds, N_BOUNDS(bounds), (v));                                                   \
        pthread_mutex_unlock(&S.met.mu);                                                                           \
    } while (0)

/* Seconds from a request's arrival to its first generated token. */
static void metrics_first_token(double seconds) { METRICS_OBSERVE(ttft, ttft_bounds, seconds); }

/* Seconds between two consecutive tokens of one sequence. */
static void metrics_inter_token(double seconds) { METRICS_OBSERVE(itl, itl_bounds, seconds); }

/* One decode step (a forward pass over generated tokens) of n_seqs sequences. */
static void metrics_batch_step(int n_seqs) { METRICS_OBSERVE(batch, batch_bounds, (double)n_seqs); }

/* The log-probability (natural log, under the model's distribution before
 * sampling adjustments) of one generated token. */
static void metrics_token_logprob(double lp) { METRICS_OBSERVE(logprob, logprob_bounds, lp); }

/* A library status seen by a generation: the model-file failures (a chunk
 * that fails authentication, an I/O error, a truncated or corrupt file)
 * are counted; every other status is not this counter's business. */
static void metrics_model_status(ds_status st) {
    int k = st == DS_ERR_AUTH ? MF_AUTH : st == DS_ERR_IO ? MF_IO : st == DS_ERR_TRUNCATED ? MF_TRUNCATED
            : st == DS_ERR_CORRUPT ? MF_CORRUPT : -1;
    if (k < 0) return;
    pthread_mutex_lock(&S.met.mu);
    S.met.model_failures[k]++;
    pthread_mutex_unlock(&S.met.mu);
}

/* Notes how many tokens context c holds now (its KV cache's fill), for
 * /metrics to read without touching the context, which belongs to whoever
 * generates with it. Called by that user after each change. */
static void metrics_kv_note(const ds_context *c) {
    for (int i = 0; i < S.n_slots; i++)
        if (S.ctx[i] == c) atomic_store(&S.kv_held[i], ds_context_n_past(c));
}

/* The weights one token's forward pass multiplies with, from the config:
 * per layer the two norms, the attention projections (MLA: the query, its
 * LoRA and norm when there is one, the compressed KV and its norm, the KV
 * up-projection, the output; multi-head attention: q, k, v, o), and the MLP
 * (dense: gate, up, down; MoE: the router, the correction bias under
 * noaux_tc, the shared experts and the top-k routed ones); then the final
 * norm and the head. The embedding matrix is left out (a token reads one
 * row of it). This is tools/model_sizes.py's "active parameters", except
 * that the head counts also when it is tied to the embeddings (the product
 * is computed either way). A matrix-vector product costs 2 FLOPs per
 * weight, so a token costs about 2 x this, plus attention over the context
 * (2 x n_heads x head dims x the tokens held per layer), left out. */
static double model_active_params(const ds_model_config *c) {
    double H = c->hidden_size, nh = c->n_heads, total = 0;
    for (int l = 0; l < c->n_layers; l++) {
        total += 2 * H;   /* input and post-attention norms */
        if (c->arch != DS_ARCH_DEEPSEEK_MOE) {
            double qk = (double)c->qk_nope_head_dim + c->qk_rope_head_dim, R = c->kv_lora_rank, ql = c->q_lora_rank;
            total += ql > 0 ? H * ql + ql + ql * nh * qk : H * nh * qk;
            total += H * (R + c->qk_rope_head_dim) + R + R * nh * ((double)c->qk_nope_head_dim + c->v_head_dim) +
                     nh * c->v_head_dim * H;
        } else {
            double hd = c->head_dim, kv = (double)c->n_kv_heads * hd;
            total += 2 * H * nh * hd + 2 * H * kv;
        }
        int moe = c->n_routed_experts > 0 && c->moe_layer_freq > 0 && l >= c->first_k_dense_replace &&
                  l % c->moe_layer_freq == 0;
        if (moe)
            total += H * c->n_routed_experts + (c->topk_method == DS_TOPK_NOAUX_TC ? c->n_routed_experts : 0) +
                     3 * H * c->moe_intermediate_size * ((double)c->n_shared_experts + c->n_experts_per_tok);
        else
            total += 3 * H * c->intermediate_size;
    }
    return total + H + (double)c->vocab_size * H;   /* final norm, head */
}

/* A fresh request or completion id ("chatcmpl-" + 24 hex digits). */
static void make_id(char *buf, size_t len, const char *prefix) {
    uint64_t n = atomic_fetch_add(&S.id_counter, 1);
    uint64_t a = mix64(S.id_base ^ n), b = mix64(a + n);
    snprintf(buf, len, "%s%016llx%08llx", prefix, (unsigned long long)a, (unsigned long long)(b >> 32));
}

/* ==== Requests ============================================================ */

/* Per-request state. The connection holds one reference until MHD reports
 * the request completed; a streaming response holds another until MHD frees
 * it. Whoever lets go last writes the audit line and the metrics, so a
 * stream is accounted for once it has really ended. */
typedef struct req {
    atomic_int refs;
    int ep;
    char method[16];
    char path[160];                       /* for the log of unknown paths */
    char remote[64];
    char rid[72];                         /* request id: the client's X-Request-Id when sane, else made */
    /* the caller: its key (by the bearer token), that key's role, and
     * what the role may do (PERM_*; both when the server has no keys) */
    char key[KEYS_NAME_MAX + 1];          /* "" when no key was given or none is needed */
    int role;                             /* ROLE_*, or -1 */
    int perms;
    key_usage *usage;                     /* admitted under its key's limits: counted until released */
    char *completion_log;                 /* --log-prompts with --audit-log only */
    double t0;
    sbuf body;
    int too_large;
    int responded;
    /* outcome */
    int status;
    int stream;
    int aborted;                          /* the client left mid-stream */
    int prompt_tokens, completion_tokens;
    int reused_tokens;                    /* of the prompt, held by the slot already */
    double prompt_seconds, generate_seconds;
    const char *finish;
    char *prompt_log;                     /* --log-prompts only */
    int stop_answer;                      /* stopped in the queue: counted in S.stop_answers */
    double queued;                        /* seconds waited in the queue; < 0: did not wait */
    unsigned retry_after;                 /* a Retry-After header (seconds) on the answer; 0: none */
    const char *err_code;                 /* the error answer's "code" (static text); NULL: none */
    ds_status gen_err;                    /* how the generation failed (DS_OK: it did not) */
    char adapter[KEYS_NAME_MAX + 1];      /* the LoRA adapter a generation asked for ("": none) */
} req;

/* The request's record in --audit-log (the schema is in docs/server.md). */
static void audit_request(const req *r, double lat, int gen_ep) {
    sbuf b = {0};
    audit_begin(&b, "request");
    jstr(&b, "request_id", r->rid);
    jstr(&b, "key", r->key[0] ? r->key : NULL);
    jstr(&b, "role", r->role >= 0 ? keys_role_name(r->role) : NULL);
    jstr(&b, "remote", r->remote);
    jstr(&b, "method", r->method);
    jstr(&b, "endpoint", ep_name[r->ep]);
    jstr(&b, "path", r->path);
    sb_printf(&b, ",\"status\":%d,\"stream\":%s", r->status, r->stream ? "true" : "false");
    int tokens = gen_ep && (r->status == 200 || r->prompt_tokens);
    sb_printf(&b, ",\"prompt_tokens\":%d,\"reused_tokens\":%d,\"completion_tokens\":%d", tokens ? r->prompt_tokens : 0,
              tokens ? r->reused_tokens : 0, tokens ? r->completion_tokens : 0);
    sb_printf(&b, ",\"latency_s\":%.6f", lat);
    if (r->queued >= 0) sb_printf(&b, ",\"queued_s\":%.6f", r->queued);
    else sb_puts(&b, ",\"queued_s\":null");
    const char *finish = tokens ? (r->aborted ? "client_abort" : r->finish) : NULL;
    jstr(&b, "finish_reason", finish);
    jstr(&b, "adapter", r->adapter[0] ? r->adapter : NULL);
    if (S.log_prompts) {
        jstr(&b, "prompt", r->prompt_log);
        jstr(&b, "completion", r->completion_log);
    }
    audit_end(&b);
}

/* The kind of error a finished request counts as in ds_server_errors_total,
 * or -1 for none. A failed generation is judged by the library's status
 * (also when the failure came as an error event in a 200 stream); other
 * answers by their status code and, where one code has several causes, by
 * the error code. */
static int error_kind(const req *r) {
    if (r->gen_err != DS_OK && (r->status == 200 || r->status >= 500)) {
        switch (r->gen_err) {
        case DS_ERR_AUTH:
        case DS_ERR_IO:
        case DS_ERR_TRUNCATED:
        case DS_ERR_CORRUPT: return EK_MODEL_ERROR;
        case DS_ERR_CANCELLED: return EK_SHUTTING_DOWN;
        default: return r->status == 200 || r->status == 500 ? EK_INTERNAL : EK_UNAVAILABLE;
        }
    }
    const char *code = r->err_code ? r->err_code : "";
    switch (r->status) {
    case 200: return r->aborted ? EK_CLIENT_GONE : -1;
    case 400: return EK_BAD_REQUEST;
    case 401: return EK_AUTH;
    case 403: return EK_FORBIDDEN;
    case 404:
    case 405: return EK_NOT_FOUND;
    case 408: return EK_REQUEST_TIMEOUT;
    case 413: return EK_TOO_LARGE;
    case 429: return !strcmp(code, "server_busy") ? EK_QUEUE_FULL : EK_RATE_LIMITED;
    case 499: return EK_CLIENT_GONE;
    case 500: return EK_INTERNAL;
    case 503: return !strcmp(code, "queue_timeout")   ? EK_QUEUE_TIMEOUT
                     : !strcmp(code, "shutting_down") ? EK_SHUTTING_DOWN
                                                      : EK_UNAVAILABLE;
    default: return r->status >= 200 && r->status < 400 ? -1 : EK_OTHER;
    }
}

static void req_account(req *r) {
    double lat = now_mono() - r->t0;
    metrics *m = &S.met;
    pthread_mutex_lock(&m->mu);
    m->requests[r->ep][code_index(r->status)]++;
    int b = 0;
    while (b < N_BUCKET && lat > buckets[b]) b++;
    m->hist[r->ep][b]++;
    m->hist_sum[r->ep] += lat;
    m->hist_count[r->ep]++;
    if (r->status == 200 && r->prompt_tokens > 0) {   /* a refused prompt was never evaluated */
        m->prompt_tokens += (uint64_t)r->prompt_tokens;
        m->prompt_reused += (uint64_t)r->reused_tokens;
        m->prompt_seconds += r->prompt_seconds;
    }
    if (r->completion_tokens > 0) {
        m->generated_tokens += (uint64_t)r->completion_tokens;
        m->generate_seconds += r->generate_seconds;
        if (r->generate_seconds > 0) m->last_tps = r->completion_tokens / r->generate_seconds;
    }
    if (r->aborted) m->streams_aborted++;
    int ek = error_kind(r);
    if (ek >= 0) m->errors[ek]++;
    pthread_mutex_unlock(&m->mu);

    int gen_ep = r->ep == EP_CHAT || r->ep == EP_COMPLETIONS || r->ep == EP_GENERATE;
    if (r->usage) {
        /* the key's budget is charged what was evaluated: the prompt and
         * the tokens generated, whether or not the answer got through */
        uint64_t used = r->status == 200 || r->completion_tokens > 0 || r->aborted
                            ? (uint64_t)(r->prompt_tokens > 0 ? r->prompt_tokens : 0) +
                                  (uint64_t)(r->completion_tokens > 0 ? r->completion_tokens : 0)
                            : 0;
        keys_usage_done(r->usage, used, lat, now_mono());
        r->usage = NULL;
    }
    if (A.path) {
        audit_request(r, lat, gen_ep);
        return;
    }

    sbuf line = {0};
    sb_printf(&line, "request remote=%s method=%s endpoint=%s", r->remote, r->method, ep_name[r->ep]);
    if (r->ep == EP_OTHER || r->ep == EP_MODEL || r->ep == EP_ADAPTER) {
        sb_puts(&line, " path=");
        sb_json_str(&line, r->path, strlen(r->path));
    }
    sb_printf(&line, " status=%d", r->status);
    if (gen_ep && (r->status == 200 || r->prompt_tokens)) {
        sb_printf(&line, " stream=%d prompt_tokens=%d completion_tokens=%d reused_tokens=%d", r->stream,
                  r->prompt_tokens, r->completion_tokens, r->reused_tokens);
        if (r->finish) sb_printf(&line, " finish=%s", r->aborted ? "client_abort" : r->finish);
        else if (r->aborted) sb_puts(&line, " finish=client_abort");
        if (r->completion_tokens > 0 && r->generate_seconds > 0)
            sb_printf(&line, " tok_per_s=%.1f", r->completion_tokens / r->generate_seconds);
    }
    sb_printf(&line, " latency_ms=%.1f", lat * 1e3);
    if (r->queued >= 0) sb_printf(&line, " queued_ms=%.1f", r->queued * 1e3);
    if (r->rid[0]) sb_printf(&line, " request_id=%s", r->rid);
    if (r->key[0]) sb_printf(&line, " key=%s", r->key);
    if (r->adapter[0]) sb_printf(&line, " adapter=%s", r->adapter);
    if (r->prompt_log) {
        sb_puts(&line, " prompt=");
        sb_json_str(&line, r->prompt_log, strlen(r->prompt_log));
    }
    if (!line.oom) audit("%s", line.data);
    sb_free(&line);
}

static void req_release(req *r) {
    if (!r) return;
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    req_account(r);
    sb_free(&r->body);
    free(r->prompt_log);
    free(r->completion_log);
    free(r);
}

static int route(const char *url) {
    if (!strcmp(url, "/v1/chat/completions")) return EP_CHAT;
    if (!strcmp(url, "/v1/completions")) return EP_COMPLETIONS;
    if (!strcmp(url, "/generate")) return EP_GENERATE;
    if (!strcmp(url, "/v1/models")) return EP_MODELS;
    if (!strncmp(url, "/v1/models/", 11) && url[11]) return EP_MODEL;
    if (!strcmp(url, "/health")) return EP_HEALTH;
    if (!strcmp(url, "/metrics")) return EP_METRICS;
    if (!strcmp(url, "/tokenize")) return EP_TOKENIZE;
    if (!strcmp(url, "/detokenize")) return EP_DETOKENIZE;
    if (!strcmp(url, "/props")) return EP_PROPS;
    if (!strcmp(url, "/v1/adapters")) return EP_ADAPTERS;
    if (!strncmp(url, "/v1/adapters/", 13) && url[13]) return EP_ADAPTER;
    return EP_OTHER;
}

static int ep_is_post(int ep) {
    return ep == EP_CHAT || ep == EP_COMPLETIONS || ep == EP_GENERATE || ep == EP_TOKENIZE || ep == EP_DETOKENIZE;
}

/* The endpoints that generate (a key's max_concurrent and tokens_per_minute
 * count these). */
static int ep_is_generation(int ep) { return ep == EP_CHAT || ep == EP_COMPLETIONS || ep == EP_GENERATE; }

/* ==== Responses =========================================================== */

/* Something failed inside the server (a library error, out of memory): the
 * detail, which may name files, segments or internal state, goes to the log
 * under a fresh request id; msg gets what the client is told instead. */
static void internal_error(req *r, const char *detail, char *msg, size_t len) {
    if (!r->rid[0]) make_id(r->rid, sizeof r->rid, "req-");
    sbuf line = {0};
    sb_printf(&line, "internal error request_id=%s remote=%s endpoint=%s detail=", r->rid, r->remote, ep_name[r->ep]);
    sb_json_str(&line, detail, strlen(detail));
    audit("%s", line.oom ? "internal error (and out of memory for its log line)" : line.data);
    sb_free(&line);
    snprintf(msg, len, "internal error; request id %s", r->rid);
}

/* ---- CORS (--cors ORIGIN): browsers on that origin (or any, with "*") may
 * call the API. Every answer says so; an OPTIONS preflight of a known path is
 * answered 204 without the API key (browsers never send one there). ---- */
static const char *cors_origin;   /* NULL: off */

static void add_cors(struct MHD_Response *resp) {
    if (!cors_origin) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", cors_origin);
    if (strcmp(cors_origin, "*")) MHD_add_response_header(resp, "Vary", "Origin");
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id, Retry-After");
}

static enum MHD_Result reply_preflight(struct MHD_Connection *conn, req *r);

/* Queues body (taken) as the response with this status. */
static enum MHD_Result reply_json(struct MHD_Connection *conn, req *r, int status, sbuf *body) {
    size_t len = 0;
    char *data = sb_take(body, &len);
    if (!data) {
        char msg[128], oom[288];
        internal_error(r, "out of memory for a response", msg, sizeof msg);
        snprintf(oom, sizeof oom,
                 "{\"error\":{\"message\":\"%s\",\"type\":\"server_error\",\"param\":null,"
                 "\"code\":\"internal_error\"}}",
                 msg);
        status = 500;
        data = strdup(oom);
        if (!data) return MHD_NO;
        len = strlen(data);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    add_cors(resp);
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->rid[0]) MHD_add_response_header(resp, "X-Request-Id", r->rid);
    if (r->retry_after) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", r->retry_after);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (status == 405) {
        const char *allow = r->ep == EP_ADAPTERS  ? "GET, HEAD, POST"
                            : r->ep == EP_ADAPTER ? "GET, HEAD, DELETE"
                            : ep_is_post(r->ep)   ? "POST"
                                                  : "GET, HEAD";
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    r->status = status;
    r->responded = 1;
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static const char *error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    case 500:
    case 503: return "server_error";
    default: return "invalid_request_error";
    }
}

/* Writes {"error":{...}} into b. */
static void error_body(sbuf *b, int status, const char *code, const char *param, const char *msg) {
    sb_puts(b, "{\"error\":{\"message\":");
    sb_json_str(b, msg, strlen(msg));
    sb_printf(b, ",\"type\":\"%s\",\"param\":", error_type(status));
    if (param) sb_json_str(b, param, strlen(param));
    else sb_puts(b, "null");
    sb_puts(b, ",\"code\":");
    if (code) sb_json_str(b, code, strlen(code));
    else sb_puts(b, "null");
    sb_puts(b, "}}");
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, req *r, int status, const char *code,
                                   const char *param, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

static enum MHD_Result reply_error(struct MHD_Connection *conn, req *r, int status, const char *code,
                                   const char *param, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sbuf b = {0};
    error_body(&b, status, code, param, msg);
    r->err_code = code;
    return reply_json(conn, r, status, &b);
}

/* Answers 500 for an internal failure: a generic message with the request id
 * (also in X-Request-Id); the detail only in the log. */
static enum MHD_Result reply_internal(struct MHD_Connection *conn, req *r, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static enum MHD_Result reply_internal(struct MHD_Connection *conn, req *r, const char *fmt, ...) {
    char detail[1024], msg[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    internal_error(r, detail, msg, sizeof msg);
    sbuf b = {0};
    error_body(&b, 500, "internal_error", NULL, msg);
    return reply_json(conn, r, 500, &b);
}

/* ==== Request parameters ================================================== */

enum { KIND_CHAT, KIND_COMPLETION, KIND_GENERATE };

typedef struct gen_params {
    int kind;
    int max_tokens;
    ds_sampler_params sp;
    int stream, include_usage, ignore_eos;
    int cache_prompt;                     /* 1 (default): keep what the slot holds of the prompt */
    const char *stop[MAX_STOPS];          /* point into the request's JSON document */
    size_t stop_len[MAX_STOPS];
    int n_stop;
    /* logits (parse_logit_params, lc_begin) */
    const sj_value *logit_bias;           /* the request's map (in its document); NULL: none */
    int logprobs;                         /* report log-probabilities */
    int top_logprobs;                     /* with this many alternatives per token (0..20) */
    int json_object;                      /* response_format {"type": "json_object"} */
} gen_params;

/* A parameter problem: the message for the 400 answer. */
typedef struct perr {
    char msg[512];
    const char *param;
    const char *code;
} perr;

static int bad(perr *e, const char *param, const char *code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int bad(perr *e, const char *param, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->param = param;
    e->code = code;
    return 0;
}

/* A member that is present and not null (null means "default" in the
 * OpenAI API). */
static const sj_value *opt(const sj_value *obj, const char *key) {
    const sj_value *v = sj_get(obj, key);
    return v && v->type != SJ_NULL ? v : NULL;
}

/* Optional number in [lo, hi]; returns 0 (and fills e) when present but bad. */
static int get_number(const sj_value *obj, const char *key, double lo, double hi, double *out, int *present,
                      perr *e) {
    const sj_value *v = opt(obj, key);
    *present = 0;
    if (!v) return 1;
    if (v->type != SJ_NUMBER)
        return bad(e, key, "invalid_type", "'%s' must be a number, not %s", key, sj_type_name(v->type));
    if (!(v->u.num >= lo && v->u.num <= hi))
        return bad(e, key, "invalid_value", "'%s' is %g; it must be between %g and %g", key, v->u.num, lo, hi);
    *out = v->u.num;
    *present = 1;
    return 1;
}

/* Optional integer (a JSON number with an integral value) in [lo, hi]. */
static int get_int(const sj_value *obj, const char *key, double lo, double hi, double *out, int *present,
                   perr *e) {
    const sj_value *v = opt(obj, key);
    *present = 0;
    if (!v) return 1;
    if (v->type != SJ_NUMBER || v->u.num != floor(v->u.num))
        return bad(e, key, "invalid_type", "'%s' must be an integer, not %s", key,
                   v->type == SJ_NUMBER ? "a fraction" : sj_type_name(v->type));
    if (!(v->u.num >= lo && v->u.num <= hi))
        return bad(e, key, "invalid_value", "'%s' is %.0f; it must be between %.0f and %.0f", key, v->u.num, lo,
                   hi);
    *out = v->u.num;
    *present = 1;
    return 1;
}

static int get_bool(const sj_value *obj, const char *key, int *out, perr *e) {
    const sj_value *v = opt(obj, key);
    if (!v) return 1;
    if (v->type != SJ_TRUE && v->type != SJ_FALSE)
        return bad(e, key, "invalid_type", "'%s' must be a boolean, not %s", key, sj_type_name(v->type));
    *out = v->type == SJ_TRUE;
    return 1;
}

/* A string without NUL bytes (the library takes C strings). */
static int plain_string(const sj_value *v) { return v->type == SJ_STRING && strlen(v->u.str.s) == v->u.str.len; }

/* ==== Logits: logit_bias, logprobs, response_format ======================= */
/*
 * What a request asks of the logits (tools/server/logits.c does it, through
 * the library's logits hook, with tools/server/jsonmask.c for JSON):
 *   logit_bias      {"<token id>": bias in [-100, 100], ...}: added to the
 *                   logit; -100 bans the token, +100 selects it (only the
 *                   +100 ids may then come)
 *   logprobs        chat: true, with top_logprobs 0..20 alternatives per
 *                   token; completions: an integer 0..5, the alternatives.
 *                   The log-probability of a token is the log-softmax at
 *                   temperature 1 of the logits after logit_bias and the
 *                   JSON mask (ds_generator_last): the sampler's temperature,
 *                   penalties and truncations do not change it
 *   response_format {"type": "text"} (the default) or {"type": "json_object"}:
 *                   the output is a JSON object (constrained decoding; the
 *                   generation ends when the object is complete);
 *                   json_schema is refused
 */

#define MAX_LOGIT_BIAS 1024

/* The generation's logits work is set up lazily: the vocabulary index for
 * JSON is built once, by the first json_object request. */
static pthread_once_t jv_once = PTHREAD_ONCE_INIT;
static jm_vocab *jv_index;
static char jv_err[160];

/* The ids a generation may sample: the tokenizer's (a padded model
 * vocabulary's extra ids never come). */
static int sample_vocab(void) {
    int n_tok = ds_tokenizer_vocab_size(S.tok);
    return n_tok > 0 && n_tok < S.cfg.vocab_size ? n_tok : S.cfg.vocab_size;
}

static void jv_build(void) { jv_index = jm_vocab_new(S.tok, sample_vocab(), jv_err, sizeof jv_err); }


static int parse_logit_params(const sj_value *root, int kind, gen_params *g, perr *e) {
    double d;
    int have;
    /* ---- logit_bias ---- */
    const sj_value *lb = opt(root, "logit_bias");
    if (lb) {
        if (lb->type != SJ_OBJECT)
            return bad(e, "logit_bias", "invalid_type", "'logit_bias' must be an object, not %s",
                       sj_type_name(lb->type));
        if (lb->u.obj.n > MAX_LOGIT_BIAS)
            return bad(e, "logit_bias", "invalid_value", "'logit_bias' has %zu entries; at most %d", lb->u.obj.n,
                       MAX_LOGIT_BIAS);
        int V = sample_vocab();
        for (size_t i = 0; i < lb->u.obj.n; i++) {
            const sj_member *m = &lb->u.obj.members[i];
            uint64_t id;
            if (!parse_u64(m->key, (uint64_t)V - 1, &id) || strlen(m->key) != m->key_len)
                return bad(e, "logit_bias", "invalid_value",
                           "'logit_bias' key '%.40s' is not a token id from 0 to %d", m->key, V - 1);
            if (m->value->type != SJ_NUMBER || !(m->value->u.num >= -100 && m->value->u.num <= 100))
                return bad(e, "logit_bias", "invalid_value",
                           "'logit_bias' value for token %llu must be a number from -100 to 100",
                           (unsigned long long)id);
        }
        if (lb->u.obj.n) g->logit_bias = lb;
    }
    /* ---- logprobs ---- */
    const sj_value *lp = opt(root, "logprobs");
    const sj_value *tlp = opt(root, "top_logprobs");
    if (kind == KIND_GENERATE) {
        if ((lp && lp->type != SJ_FALSE) || tlp)
            return bad(e, lp ? "logprobs" : "top_logprobs", "unsupported",
                       "'%s' is not supported on /generate; use /v1/completions or /v1/chat/completions",
                       lp ? "logprobs" : "top_logprobs");
    } else if (kind == KIND_CHAT) {
        if (!get_bool(root, "logprobs", &g->logprobs, e)) return 0;
        if (!get_int(root, "top_logprobs", 0, LC_MAX_TOP, &d, &have, e)) return 0;
        if (have && !g->logprobs && d > 0)
            return bad(e, "top_logprobs", "invalid_value", "'top_logprobs' needs 'logprobs': true");
        g->top_logprobs = have ? (int)d : 0;
    } else {
        if (tlp)
            return bad(e, "top_logprobs", "unsupported",
                       "/v1/completions takes the number of alternatives as 'logprobs' (0 to 5), not 'top_logprobs'");
        if (!get_int(root, "logprobs", 0, 5, &d, &have, e)) return 0;
        g->logprobs = have;
        g->top_logprobs = have ? (int)d : 0;
    }
    /* ---- response_format ---- */
    const sj_value *rf = opt(root, "response_format");
    if (rf) {
        if (rf->type != SJ_OBJECT)
            return bad(e, "response_format", "invalid_type", "'response_format' must be an object, not %s",
                       sj_type_name(rf->type));
        const sj_value *rt = sj_get(rf, "type");
        if (!rt || !plain_string(rt))
            return bad(e, "response_format", "invalid_type", "'response_format' needs a string 'type'");
        if (!strcmp(rt->u.str.s, "json_object")) {
            g->json_object = 1;
        } else if (!strcmp(rt->u.str.s, "json_schema")) {
            return bad(e, "response_format", "unsupported",
                       "'response_format' type 'json_schema' is not supported: only \"text\" and \"json_object\" "
                       "(any JSON object, no schema)");
        } else if (strcmp(rt->u.str.s, "text")) {
            return bad(e, "response_format", "invalid_value",
                       "'response_format' type '%.40s' is unknown: \"text\" or \"json_object\"", rt->u.str.s);
        }
    }
    return 1;
}

/* The parameters shared by the three generation endpoints. */
static int parse_gen_params(const sj_value *root, int kind, gen_params *g, perr *e) {
    double d;
    int have;
    memset(g, 0, sizeof *g);
    g->kind = kind;
    g->sp = ds_sampler_default_params();
    g->max_tokens = S.max_tokens;

    /* max_tokens (max_completion_tokens in the newer chat API wins) */
    const char *mt_key = opt(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    const sj_value *mt = opt(root, mt_key);
    if (mt) {
        if (mt->type != SJ_NUMBER || mt->u.num != floor(mt->u.num))
            return bad(e, mt_key, "invalid_type", "'%s' must be an integer, not %s", mt_key,
                       mt->type == SJ_NUMBER ? "a fraction" : sj_type_name(mt->type));
        if (mt->u.num < 0) return bad(e, mt_key, "invalid_value", "'%s' must not be negative", mt_key);
        if (mt->u.num > S.max_tokens)
            return bad(e, mt_key, "max_tokens_exceeded", "'%s' is %.0f, above this server's limit of %d", mt_key,
                       mt->u.num, S.max_tokens);
        g->max_tokens = (int)mt->u.num;
    }

    if (!get_number(root, "temperature", 0, 2, &d, &have, e)) return 0;
    if (have) g->sp.temperature = (float)d;
    if (!get_number(root, "top_p", 0, 1, &d, &have, e)) return 0;
    if (have) {
        if (d > 0) g->sp.top_p = (float)d;
        else g->sp.temperature = 0;   /* top_p 0 keeps only the most likely token */
    }
    if (!get_int(root, "top_k", 0, 1 << 30, &d, &have, e)) return 0;
    if (have) g->sp.top_k = (int)d;
    if (!get_number(root, "min_p", 0, 0.999999, &d, &have, e)) return 0;
    if (have) g->sp.min_p = (float)d;
    if (!get_number(root, "presence_penalty", -2, 2, &d, &have, e)) return 0;
    if (have) g->sp.presence_penalty = (float)d;
    if (!get_number(root, "frequency_penalty", -2, 2, &d, &have, e)) return 0;
    if (have) g->sp.frequency_penalty = (float)d;
    if (!get_number(root, "repetition_penalty", 1e-3, 100, &d, &have, e)) return 0;
    if (have) g->sp.repetition_penalty = (float)d;
    if (!get_int(root, "seed", -9223372036854775808.0, 18446744073709551615.0, &d, &have, e)) return 0;
    if (have) g->sp.seed = d < 0 ? (uint64_t)(int64_t)d : (d >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)d);
    else g->sp.seed = mix64(S.id_base ^ (atomic_fetch_add(&S.id_counter, 1) * 0x2545F4914F6CDD1Dull));

    /* stop: a string or an array of up to four strings */
    const sj_value *st = opt(root, "stop");
    if (st) {
        const sj_value *one[1] = {st};
        const sj_value *const *items = one;
        size_t n = 1;
        if (st->type == SJ_ARRAY) {
            items = (const sj_value *const *)st->u.arr.items;
            n = st->u.arr.n;
            if (n > MAX_STOPS)
                return bad(e, "stop", "invalid_value", "'stop' has %zu sequences; at most %d", n, MAX_STOPS);
        }
        for (size_t i = 0; i < n; i++) {
            if (!plain_string(items[i]))
                return bad(e, "stop", "invalid_type", "'stop' must be a string or an array of strings");
            if (items[i]->u.str.len == 0) continue;
            g->stop[g->n_stop] = items[i]->u.str.s;
            g->stop_len[g->n_stop++] = items[i]->u.str.len;
        }
    }

    if (!get_bool(root, "stream", &g->stream, e)) return 0;
    if (kind == KIND_GENERATE && g->stream)
        return bad(e, "stream", "unsupported", "/generate does not stream; use /v1/completions");
    const sj_value *so = opt(root, "stream_options");
    if (so) {
        if (so->type != SJ_OBJECT)
            return bad(e, "stream_options", "invalid_type", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &g->include_usage, e)) return 0;
    }
    if (!get_bool(root, "ignore_eos", &g->ignore_eos, e)) return 0;
    g->cache_prompt = 1;
    if (!get_bool(root, "cache_prompt", &g->cache_prompt, e)) return 0;

    /* things this server does not do: say so rather than ignore them */
    if (!get_int(root, "n", 1, 1, &d, &have, e))
        return bad(e, "n", "unsupported", "only n = 1 is supported");
    if (!get_int(root, "best_of", 1, 1, &d, &have, e))
        return bad(e, "best_of", "unsupported", "only best_of = 1 is supported");
    if (!parse_logit_params(root, kind, g, e)) return 0;
    int echo = 0;
    if (!get_bool(root, "echo", &echo, e)) return 0;
    if (echo) return bad(e, "echo", "unsupported", "echo is not supported");
    const sj_value *tools = opt(root, "tools");
    if (tools && !(tools->type == SJ_ARRAY && tools->u.arr.n == 0))
        return bad(e, "tools", "unsupported", "tools are not supported");
    const sj_value *fns = opt(root, "functions");
    if (fns && !(fns->type == SJ_ARRAY && fns->u.arr.n == 0))
        return bad(e, "functions", "unsupported", "'functions' (function calling) is not supported");
    /* suffix (insertion after the completion): empty is no suffix */
    const sj_value *sf = opt(root, "suffix");
    if (sf && sf->type != SJ_STRING)
        return bad(e, "suffix", "invalid_type", "'suffix' must be a string, not %s", sj_type_name(sf->type));
    if (sf && sf->u.str.len)
        return bad(e, "suffix", "unsupported", "'suffix' is not supported (only an empty string)");
    const sj_value *model = opt(root, "model");
    if (model && model->type != SJ_STRING)
        return bad(e, "model", "invalid_type", "'model' must be a string, not %s", sj_type_name(model->type));
    return 1;
}

/* Tokenizes the chat (the contents as text, unless --allow-special-in-content)
 * into *ids_out (malloc); len is the rendered text's length (one id per byte
 * at most). */
static int encode_chat(const ds_chat_message *cm, size_t n, size_t len, int32_t **ids_out, size_t *n_out, perr *e,
                       int *server_err) {
    size_t cap = len + 1, got = 0;
    int32_t *ids = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *p = realloc(ids, cap * sizeof *ids);
        if (!p) {
            free(ids);
            *server_err = 1;
            return bad(e, NULL, NULL, "out of memory");
        }
        ids = p;
        ds_status st = ds_tokenizer_encode_chat(S.tok, cm, n, 1, S.chat_flags, ids, cap, &got);
        if (st == DS_OK) {
            *ids_out = ids;
            *n_out = got;
            return 1;
        }
        if (st != DS_ERR_LIMIT || got <= cap) {
            free(ids);
            if (st == DS_ERR_INVALID_ARG) return bad(e, "messages", "invalid_value", "tokenize: %s", errmsg(st));
            *server_err = 1;
            return bad(e, NULL, NULL, "tokenize: %s", errmsg(st));
        }
        cap = got;
    }
    free(ids);
    *server_err = 1;
    return bad(e, NULL, NULL, "tokenize: the ids did not fit");
}

/* Renders the chat messages with the model's template into *out (malloc),
 * the text the log shows, and tokenizes them into *ids (malloc). */
static int render_chat(const sj_value *root, char **out, int32_t **ids, size_t *n_ids, perr *e, int *server_err) {
    *out = NULL;
    *ids = NULL;
    *n_ids = 0;
    *server_err = 0;
    const sj_value *msgs = sj_get(root, "messages");
    if (!msgs) return bad(e, "messages", "missing_required_parameter", "'messages' is required");
    if (msgs->type != SJ_ARRAY)
        return bad(e, "messages", "invalid_type", "'messages' must be an array, not %s", sj_type_name(msgs->type));
    if (msgs->u.arr.n == 0) return bad(e, "messages", "invalid_value", "'messages' must not be empty");
    size_t n = msgs->u.arr.n;
    ds_chat_message *cm = calloc(n, sizeof *cm);
    char **owned = calloc(n, sizeof *owned);
    char *buf = NULL;
    int ok = 0;
    if (!cm || !owned) {
        *server_err = 1;
        bad(e, NULL, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const sj_value *m = msgs->u.arr.items[i];
        char where[48];
        snprintf(where, sizeof where, "messages[%zu]", i);
        if (m->type != SJ_OBJECT) {
            bad(e, "messages", "invalid_type", "%s must be an object, not %s", where, sj_type_name(m->type));
            goto done;
        }
        const sj_value *role = sj_get(m, "role");
        if (!role || !plain_string(role)) {
            bad(e, "messages", "invalid_type", "%s.role must be a string", where);
            goto done;
        }
        const char *r = role->u.str.s;
        if (!strcmp(r, "developer")) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            bad(e, "messages", "unsupported", "%s.role '%.40s' is not supported (system, user, assistant)", where,
                role->u.str.s);
            goto done;
        }
        cm[i].role = r;
        const sj_value *content = sj_get(m, "content");
        if (!content || content->type == SJ_NULL) {
            cm[i].content = "";
        } else if (content->type == SJ_STRING) {
            if (!plain_string(content)) {
                bad(e, "messages", "invalid_value", "%s.content contains a NUL character", where);
                goto done;
            }
            cm[i].content = content->u.str.s;
        } else if (content->type == SJ_ARRAY) {
            /* content parts: only text parts, joined */
            sbuf t = {0};
            for (size_t k = 0; k < content->u.arr.n; k++) {
                const sj_value *part = content->u.arr.items[k];
                const sj_value *type = sj_get(part, "type"), *text = sj_get(part, "text");
                if (part->type != SJ_OBJECT || !type || type->type != SJ_STRING || strcmp(type->u.str.s, "text") ||
                    !text || !plain_string(text)) {
                    sb_free(&t);
                    bad(e, "messages", "unsupported",
                        "%s.content[%zu] must be a text part {\"type\":\"text\",\"text\":...}", where, k);
                    goto done;
                }
                sb_put(&t, text->u.str.s, text->u.str.len);
            }
            sb_put(&t, "", 0);
            if (t.oom) {
                sb_free(&t);
                *server_err = 1;
                bad(e, NULL, NULL, "out of memory");
                goto done;
            }
            owned[i] = sb_take(&t, NULL);
            cm[i].content = owned[i] ? owned[i] : "";
        } else {
            bad(e, "messages", "invalid_type", "%s.content must be a string or an array of text parts, not %s", where,
                sj_type_name(content->type));
            goto done;
        }
    }
    /* render, growing the buffer once if needed */
    size_t cap = 4096, len = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        char *nb = realloc(buf, cap);
        if (!nb) {
            *server_err = 1;
            bad(e, NULL, NULL, "out of memory");
            goto done;
        }
        buf = nb;
        ds_status st = ds_tokenizer_apply_chat_template(S.tok, cm, n, 1, buf, cap, &len);
        if (st == DS_OK && len < cap) {
            ok = 1;
            break;
        }
        if (st == DS_ERR_UNSUPPORTED) {
            bad(e, "messages", "unsupported", "chat template: %s", errmsg(st));
            goto done;
        }
        if (st != DS_OK && st != DS_ERR_LIMIT) {
            *server_err = 1;
            bad(e, NULL, NULL, "chat template: %s", errmsg(st));
            goto done;
        }
        cap = len + 1 > cap * 2 ? len + 1 : cap * 2;
    }
    if (!ok) {
        *server_err = 1;
        bad(e, NULL, NULL, "chat template: the rendered text did not fit");
    }
    if (ok) ok = encode_chat(cm, n, len, ids, n_ids, e, server_err);
done:
    if (owned)
        for (size_t i = 0; i < n; i++) free(owned[i]);
    free(owned);
    free(cm);
    if (ok) *out = buf;
    else free(buf);
    return ok;
}

static int get_prompt(const sj_value *root, char **out, perr *e) {
    const sj_value *p = sj_get(root, "prompt");
    *out = NULL;
    if (!p) return bad(e, "prompt", "missing_required_parameter", "'prompt' is required");
    if (p->type == SJ_ARRAY) {
        if (p->u.arr.n != 1 || p->u.arr.items[0]->type != SJ_STRING)
            return bad(e, "prompt", "unsupported", "'prompt' must be a string (or an array of one string)");
        p = p->u.arr.items[0];
    }
    if (p->type != SJ_STRING)
        return bad(e, "prompt", "invalid_type", "'prompt' must be a string, not %s", sj_type_name(p->type));
    if (!plain_string(p)) return bad(e, "prompt", "invalid_value", "'prompt' contains a NUL character");
    *out = strdup(p->u.str.s);
    if (!*out) return bad(e, NULL, NULL, "out of memory");
    return 1;
}

/* ==== Generation ========================================================== */
/*
 * The library's generation loop (ds_generator), one token per step, since a
 * streaming response pulls one event at a time: tokenize with one leading
 * BOS, continue the slot's context (only what follows the prefix it already
 * holds from its last request is evaluated), then each step samples a token,
 * applies the stop sequences (holding back text that may be the start of
 * one) and evaluates it. Shutdown cancels a prompt pass under way.
 */
typedef struct gen {
    ds_context *ctx;                      /* from the pool; NULL once given back */
    ds_sampler *smp;
    ds_generator *it;                     /* the loop; NULL once finished */
    int32_t *ids;                         /* (n_prompt) the prompt's tokens */
    size_t n_prompt;
    int n_gen, n_reused;
    int active;                           /* counted in B.n_active: asks the batcher for its tokens */
    int asked;                            /* waits for the pass that advances it (under B.mu) */
    sbuf text;                            /* generated text (cut at a stop sequence) */
    int done;
    const char *finish;                   /* "stop" or "length" */
    ds_status err;                        /* DS_OK, or why generation failed */
    char errmsg[256];
    double prompt_seconds, gen_t0, generate_seconds;
    double t_arrival;                     /* when the request arrived (now_mono), for the time to first token */
    double t_last_token;                  /* when the last token came (now_mono); 0 before the first */
    lc_ctl *lc;                           /* logit_bias, logprobs, JSON (lc_begin); NULL: none asked */
    lora_entry *lora;                     /* the adapter asked for, referenced until gen_end; NULL: none */
    char adapter[KEYS_NAME_MAX + 1];      /* its name ("": the base), for the answers */
} gen;

/* Set for good when a generation fails reading the model file (truncated,
 * changed or unreadable under the running server): the model is degraded,
 * /health answers 503 until a restart, and the audit log has the library's
 * message (file and segment) once. */
static atomic_int model_degraded;

/* g failed in `what` with st; detail is the library's message (NULL: this
 * thread's, errmsg(st)). */
static void gen_fail_msg(gen *g, ds_status st, const char *what, const char *detail) {
    if (!detail) detail = errmsg(st);
    metrics_model_status(st);
    if ((st == DS_ERR_IO || st == DS_ERR_TRUNCATED || st == DS_ERR_AUTH || st == DS_ERR_CORRUPT) &&
        !atomic_exchange(&model_degraded, 1))
        audit("model degraded: %s: %s", what, detail);
    g->err = st;
    snprintf(g->errmsg, sizeof g->errmsg, "%s: %s", what, detail);
    g->done = 1;
}

static void gen_fail(gen *g, ds_status st, const char *what) { gen_fail_msg(g, st, what, NULL); }

/* The metrics of g's decode step, which ended with status st: the context's
 * fill and, when the step sampled a token, the time since the request
 * arrived (the first token) or since the token before. (The step's batch
 * size is the leader's to count: batch_next.) */
static void gen_observe_token(gen *g, ds_status st) {
    metrics_kv_note(g->ctx);
    if (st != DS_OK || !g->it) return;
    ds_generate_stats gs;
    ds_generator_stats(g->it, &gs);
    if (gs.n_generated <= g->n_gen) return;   /* no token this step: a prompt chunk, EOS or a stop */
    double now = now_mono();
    if (g->t_last_token > 0) metrics_inter_token(now - g->t_last_token);
    else if (g->t_arrival > 0) metrics_first_token(now - g->t_arrival);
    g->t_last_token = now;
}
/* Frees the text and the logprobs (after gen_end). */
static void gen_drop(gen *g) {
    sb_free(&g->text);
    lc_free(g->lc);
    free(g->lc);
    g->lc = NULL;
}

static void batch_leave(gen *g);

/* Gives the context back and frees everything but the text. */
static void gen_end(gen *g) {
    batch_leave(g);
    ds_generator_free(g->it);
    g->it = NULL;
    if (g->ctx) pool_give(g->ctx);
    g->ctx = NULL;
    lora_put(g->lora);                    /* after the slot: an unload then finds it free */
    g->lora = NULL;
    ds_sampler_free(g->smp);
    g->smp = NULL;
    free(g->ids);
    g->ids = NULL;
}

/* ds_abort_fn of the pool's contexts. */
static int server_stopping(void *user) {
    (void)user;
    return atomic_load(&S.stopping) ? 1 : 0;
}

/* Copies the loop's counters and, once it stopped, its outcome. */
static void gen_sync(gen *g) {
    ds_generate_stats gs;
    ds_generator_stats(g->it, &gs);
    g->n_gen = gs.n_generated;
    g->n_reused = gs.n_reused;
    g->prompt_seconds = gs.prompt_seconds;
    switch (gs.stop_reason) {
    case DS_STOP_NONE: return;
    case DS_STOP_EOS:
    case DS_STOP_STRING:
    case DS_STOP_CALLBACK: g->finish = g->lc && g->lc->json_stuck ? "length" : "stop"; break;
    case DS_STOP_LENGTH:
    case DS_STOP_CONTEXT_FULL: g->finish = "length"; break;
    case DS_STOP_ABORT:
        g->err = DS_ERR_CANCELLED;
        snprintf(g->errmsg, sizeof g->errmsg, "the server is shutting down");
        break;
    }
    g->done = 1;
    g->generate_seconds = gs.generate_seconds;
}

/* ==== Continuous batching ================================================
 *
 * The slots are the sequences of one context, whose scratch one thread at a
 * time may use: every pass over the model is a decode step
 * (ds_generator_step): the next token of every generation that asks, and the
 * next PROMPT_CHUNK tokens of each prompt still being evaluated (the
 * generators defer their prompts), in one forward pass, so the weights
 * stream once for all of them and a new request's prompt does not stall the
 * others. Requests keep running on their own MHD threads; the batcher only
 * decides who drives the engine. A generation that wants its next token puts
 * itself in `want` and waits. The first asker to find the engine free leads
 * the step: it waits up to BATCH_GATHER seconds for the other active
 * generations to ask too (a stream whose client reads slowly holds the
 * others back no longer than that), takes every one that asked, runs the
 * step without the lock, and wakes them; each reads its own text. A
 * generation joins (active) once its generator is made and leaves when it
 * stops or its request ends. A request with max_tokens 0 evaluates its
 * prompt in a pass of its own, between steps (engine_take), ahead of the
 * next step.
 */
#define BATCH_GATHER 0.002
#define PROMPT_CHUNK 128               /* prompt tokens of one request a pass evaluates */

typedef struct batcher {
    pthread_mutex_t mu;
    pthread_cond_t cv;                    /* on CLOCK_MONOTONIC */
    int busy;                             /* a pass runs (or its leader gathers) */
    int n_prefill;                        /* prefills waiting for the engine */
    int n_active;                         /* generations that will ask for tokens */
    gen **want;                           /* (n_slots) those waiting for their next token */
    int n_want;
} batcher;

static batcher B = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL, 0};

static int batch_init(int n_slots) {
    B.want = calloc((size_t)n_slots, sizeof *B.want);
    if (!B.want) return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&B.cv);
    pthread_cond_init(&B.cv, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

/* The engine for a prefill: after the pass under way, ahead of the next step. */
static void engine_take(void) {
    pthread_mutex_lock(&B.mu);
    B.n_prefill++;
    while (B.busy) pthread_cond_wait(&B.cv, &B.mu);
    B.n_prefill--;
    B.busy = 1;
    pthread_mutex_unlock(&B.mu);
}

/* g joins the batch: the steps wait (a little) for it to ask. B.mu held. */
static void batch_join_locked(gen *g) {
    if (g && !g->active) {
        g->active = 1;
        B.n_active++;
    }
}

/* Gives the engine back after a prefill; g (when its generation goes on)
 * joins the batch. */
static void engine_give(gen *g) {
    pthread_mutex_lock(&B.mu);
    B.busy = 0;
    batch_join_locked(g);
    pthread_cond_broadcast(&B.cv);
    pthread_mutex_unlock(&B.mu);
}

static void batch_join(gen *g) {
    pthread_mutex_lock(&B.mu);
    batch_join_locked(g);
    pthread_cond_broadcast(&B.cv);
    pthread_mutex_unlock(&B.mu);
}

/* g asks for no more tokens (it stopped, or its request ends). */
static void batch_leave(gen *g) {
    pthread_mutex_lock(&B.mu);
    if (g->active) {
        g->active = 0;
        B.n_active--;
        pthread_cond_broadcast(&B.cv);   /* a leader may be waiting for it to ask */
    }
    pthread_mutex_unlock(&B.mu);
}

/* Advances g by one token in the next decode step; returns when that step
 * is done (led by this thread or another). */
static void batch_next(gen *g) {
    pthread_mutex_lock(&B.mu);
    g->asked = 1;
    B.want[B.n_want++] = g;
    pthread_cond_broadcast(&B.cv);
    while (g->asked) {
        if (B.busy || B.n_prefill) {
            pthread_cond_wait(&B.cv, &B.mu);
            continue;
        }
        /* lead: gather the others, then step them all */
        B.busy = 1;
        double deadline = now_mono() + BATCH_GATHER;
        struct timespec ts;
        ts.tv_sec = (time_t)deadline;
        ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
        if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
        while (B.n_want < B.n_active && !atomic_load(&S.stopping))
            if (pthread_cond_timedwait(&B.cv, &B.mu, &ts) == ETIMEDOUT) break;
        int n = B.n_want, fed = 0;
        gen *batch[DS_SERVER_MAX_SLOTS];
        ds_generator *its[DS_SERVER_MAX_SLOTS];
        for (int i = 0; i < n; i++) {
            batch[i] = B.want[i];
            its[i] = batch[i]->it;
            /* one that sampled a token already feeds it back in this pass
             * (the others evaluate a chunk of their prompt) */
            ds_generate_stats gs;
            ds_generator_stats(its[i], &gs);
            fed += gs.n_generated > 0 && gs.stop_reason == DS_STOP_NONE && ds_generator_status(its[i]) == DS_OK;
        }
        B.n_want = 0;
        pthread_mutex_unlock(&B.mu);
        /* each generator's outcome is its own (ds_generator_status), read by
         * its request's thread: the step's status only repeats the first */
        ds_status st = ds_generator_step(its, (size_t)n);
        (void)st;
        if (fed) metrics_batch_step(fed);
        pthread_mutex_lock(&B.mu);
        for (int i = 0; i < n; i++) batch[i]->asked = 0;
        B.busy = 0;
        pthread_cond_broadcast(&B.cv);
    }
    pthread_mutex_unlock(&B.mu);
}


/* Sets up the request's logits work (logits.h), when it asks for any:
 * g->lc stays NULL otherwise. The JSON constraint needs to know how many
 * tokens can still come: max_tokens, or what the context holds after the
 * prompt (and the one token sampled when it is full). */
static ds_status lc_begin(gen *g, const gen_params *p, int n_ctx) {
    if (!p->logit_bias && !p->logprobs && !p->json_object) return DS_OK;
    lc_ctl *c = calloc(1, sizeof *c);
    if (!c) return DS_ERR_NOMEM;
    g->lc = c;
    c->tok = S.tok;
    c->n_top = p->logprobs ? p->top_logprobs : -1;
    c->n_prompt = g->n_prompt;
    c->eos = ds_tokenizer_eos(S.tok);
    int room = n_ctx - (int)g->n_prompt + 1;
    c->limit = p->max_tokens > 0 && p->max_tokens < room ? p->max_tokens : room;
    if (p->logit_bias) {
        const sj_value *lb = p->logit_bias;
        c->bias = calloc(lb->u.obj.n, sizeof *c->bias);
        c->save = calloc(lb->u.obj.n, sizeof *c->save);
        if (!c->bias || !c->save) return DS_ERR_NOMEM;
        for (size_t i = 0; i < lb->u.obj.n; i++) {
            uint64_t id = 0;
            parse_u64(lb->u.obj.members[i].key, INT32_MAX, &id);   /* checked by parse_logit_params */
            c->bias[i].id = (int32_t)id;
            c->bias[i].bias = (float)lb->u.obj.members[i].value->u.num;
            if (c->bias[i].bias >= 100) c->exclusive = 1;
        }
        c->n_bias = (int)lb->u.obj.n;
    }
    if (p->json_object) {
        pthread_once(&jv_once, jv_build);
        if (!jv_index) {
            audit("JSON output: %s", jv_err);
            return DS_ERR_NOMEM;
        }
        c->jv = jv_index;
        c->js = jm_scratch_new(jv_index);
        if (!c->js) return DS_ERR_NOMEM;
        jm_init(&c->json);
    }
    return DS_OK;
}

/* After a step: the token it sampled and its log-probability, for the
 * quality monitor and, when asked, the logprobs report. The EOS that ends a
 * generation is not part of the answer: left out of both. Returns 0 when out
 * of memory. */
static int gen_note(gen *g) {
    int32_t tok;
    float lp;
    if (ds_generator_last(g->it, &tok, &lp) != DS_OK || tok < 0) return 1;
    if (ds_generator_stop_reason(g->it) == DS_STOP_EOS && tok == ds_tokenizer_eos(S.tok)) return 1;
    metrics_token_logprob(lp);
    if (g->lc && g->lc->n_top >= 0) return lc_record_token(g->lc, tok, lp);
    return 1;
}

/* Sets up, before a slot is taken: the sampler, and the prompt's ids (a
 * chat's n_ids ids when ids is set, else its text tokenized). Returns DS_OK,
 * DS_ERR_LIMIT (prompt too long for the context; g->errmsg says so), or
 * another error; gen_end frees what was made either way. */
static ds_status gen_prepare(gen *g, const char *prompt, const int32_t *ids, size_t n_ids, const gen_params *p) {
    memset(g, 0, sizeof *g);
    int n_ctx = S.n_ctx;

    ds_status st = ds_sampler_new(&g->smp, &p->sp);
    if (st != DS_OK) {
        gen_fail(g, st, "sampler");
        return st;
    }

    /* ---- tokenize (a chat comes tokenized): one leading BOS, not doubled ---- */
    size_t len = ids ? 0 : strlen(prompt), got = 0, cap = (ids ? n_ids : len) + 2;
    g->ids = malloc(cap * sizeof *g->ids);
    if (!g->ids) {
        gen_fail(g, DS_ERR_NOMEM, "tokenize");
        return DS_ERR_NOMEM;
    }
    if (ids) {
        if (n_ids) memcpy(g->ids + 1, ids, n_ids * sizeof *ids);
        got = n_ids;
        st = DS_OK;
    } else {
        st = ds_tokenizer_encode(S.tok, prompt, len, 0, g->ids + 1, cap - 1, &got);
    }
    if (st == DS_ERR_LIMIT && got > cap - 1) {
        int32_t *p2 = realloc(g->ids, (got + 2) * sizeof *p2);
        if (!p2) {
            gen_fail(g, DS_ERR_NOMEM, "tokenize");
            return DS_ERR_NOMEM;
        }
        g->ids = p2;
        cap = got + 2;
        st = ds_tokenizer_encode(S.tok, prompt, len, 0, g->ids + 1, cap - 1, &got);
    }
    if (st != DS_OK) {
        gen_fail(g, st, "tokenize");
        return st;
    }
    int32_t bos = ds_tokenizer_adds_bos(S.tok) ? ds_tokenizer_bos(S.tok) : -1;
    if (bos >= 0 && !(got > 0 && g->ids[1] == bos)) {
        g->ids[0] = bos;
        g->n_prompt = got + 1;
    } else {
        memmove(g->ids, g->ids + 1, got * sizeof *g->ids);
        g->n_prompt = got;
    }
    if (g->n_prompt == 0) {
        g->err = DS_ERR_INVALID_ARG;
        snprintf(g->errmsg, sizeof g->errmsg, "the prompt is empty and the tokenizer has no BOS token");
        g->done = 1;
        return DS_ERR_INVALID_ARG;
    }
    if (n_ctx <= 0 || g->n_prompt > (size_t)n_ctx) {
        g->err = DS_ERR_LIMIT;
        snprintf(g->errmsg, sizeof g->errmsg, "the prompt is %zu tokens; this server's context is %d tokens",
                 g->n_prompt, n_ctx);
        g->done = 1;
        return DS_ERR_LIMIT;
    }
    return DS_OK;
}

/* Prefills on the slot ctx (it stays with g either way; gen_end gives it
 * back): only what the slot does not hold of the prompt already, unless
 * cache_prompt is off. Returns DS_OK or the error (in g). */
static ds_status gen_begin(gen *g, ds_context *ctx, const gen_params *p) {
    g->ctx = ctx;
    ds_status st;
    ds_generate_params gp = ds_generate_default_params();
    gp.max_tokens = p->max_tokens;   /* 0 is handled below: the loop reads it as no limit */
    gp.stop = p->stop;
    gp.n_stop = (size_t)p->n_stop;
    gp.ignore_eos = p->ignore_eos;
    if ((st = lc_begin(g, p, S.n_ctx)) != DS_OK) {
        gen_fail(g, st, "logits");
        return st;
    }
    if (g->lc) {
        gp.on_logits = lc_on_logits;
        gp.logits_user = g->lc;
    }
    ds_context_set_abort(ctx, server_stopping, NULL);
    if (!p->cache_prompt) ds_context_reset(ctx);   /* (the slot is this request's: no pass reads it) */
    if (p->max_tokens > 0) {
        /* the prompt is evaluated in the decode passes, in chunks, beside
         * the other generations' tokens: a new request does not stall them */
        gp.defer_prompt = 1;
        gp.prompt_chunk = PROMPT_CHUNK;
        st = ds_generator_new(&g->it, ctx, g->smp, g->ids, g->n_prompt, &gp);
        metrics_kv_note(ctx);
        if (st != DS_OK) {
            gen_fail(g, st, "prompt evaluation");
            return st;
        }
        g->gen_t0 = now_mono();
        gen_sync(g);
        batch_join(g);
        return DS_OK;
    }
    /* max_tokens 0: only the prompt, now (a pass of its own, between steps) */
    engine_take();
    st = ds_generator_new(&g->it, ctx, g->smp, g->ids, g->n_prompt, &gp);
    metrics_kv_note(ctx);
    if (st != DS_OK) {
        engine_give(NULL);
        gen_fail(g, st, "prompt evaluation");
        return st;
    }
    g->gen_t0 = now_mono();
    gen_sync(g);
    if (!g->done && p->max_tokens == 0) {
        g->done = 1;
        g->finish = "length";
    }
    engine_give(g->done ? NULL : g);
    return DS_OK;
}

/* One token. *out, *out_len: the text released by this step (possibly empty). */
static void gen_step(gen *g, const char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (g->done) return;
    if (atomic_load(&S.stopping)) {
        g->err = DS_ERR_CANCELLED;
        snprintf(g->errmsg, sizeof g->errmsg, "the server is shutting down");
        g->done = 1;
        batch_leave(g);
        return;
    }
    const char *t = NULL;
    size_t n = 0;
    batch_next(g);
    ds_status st = ds_generator_status(g->it);
    gen_observe_token(g, st);
    if (st != DS_OK) {
        gen_sync(g);
        batch_leave(g);
        /* the message is the generator's: the step may have run on another thread */
        gen_fail_msg(g, st, "generation", ds_generator_errmsg(g->it));
        return;
    }
    ds_generator_text(g->it, &t, &n);
    size_t at = g->text.len;
    sb_put(&g->text, t, n);
    if (g->text.oom || !gen_note(g)) {
        gen_fail(g, DS_ERR_NOMEM, "text");
        return;
    }
    gen_sync(g);
    if (g->done) batch_leave(g);
    if (n) {
        *out = g->text.data + at;
        *out_len = n;
    }
}

/* Copies the outcome into the request for the log and metrics. */
static void gen_account(req *r, const gen *g) {
    r->prompt_tokens = (int)g->n_prompt;
    r->reused_tokens = g->n_reused;
    r->completion_tokens = g->n_gen;
    r->prompt_seconds = g->prompt_seconds;
    r->generate_seconds = g->done ? g->generate_seconds : g->gen_t0 > 0 ? now_mono() - g->gen_t0 : 0;
    r->finish = g->err ? "error" : g->finish;
    if (S.log_prompts && A.path && !r->completion_log && g->text.data)
        r->completion_log = strndup(g->text.data, g->text.len);
    r->gen_err = g->err;
}

/* ==== Response bodies ===================================================== */

static void put_usage(sbuf *b, const gen *g) {
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%d,\"total_tokens\":%zu}", g->n_prompt,
              g->n_gen, g->n_prompt + (size_t)g->n_gen);
}

/* A token's text for a logprobs report (its bytes; those that are not
 * valid UTF-8 alone, a part of a character, come out as U+FFFD: "bytes"
 * has them exactly). */
static void put_token_text(sbuf *b, int32_t id) {
    const char *t = "";
    size_t n = 0;
    if (ds_tokenizer_token_bytes(S.tok, id, &t, &n, NULL) != DS_OK) n = 0;
    sb_json_str(b, t, n);
}

static void put_token_bytes(sbuf *b, int32_t id) {
    const char *t = "";
    size_t n = 0;
    if (ds_tokenizer_token_bytes(S.tok, id, &t, &n, NULL) != DS_OK) n = 0;
    sb_putc(b, '[');
    for (size_t i = 0; i < n; i++) sb_printf(b, "%s%u", i ? "," : "", (unsigned)(unsigned char)t[i]);
    sb_putc(b, ']');
}

/* "logprobs": the tokens recorded since the last report (then forgotten),
 * in OpenAI's shape for a chat (content[]: token, logprob, bytes,
 * top_logprobs[]) or a completion (tokens, token_logprobs, top_logprobs
 * maps, text_offset in bytes from the completion's start); null when not
 * asked for. */
static void put_logprobs(sbuf *b, int kind, lc_ctl *c) {
    if (!c || c->n_top < 0) {
        sb_puts(b, "null");
        return;
    }
    const lc_record *r = c->rec;
    size_t n = c->n_rec;
    if (kind == KIND_CHAT) {
        sb_puts(b, "{\"content\":[");
        for (size_t i = 0; i < n; i++) {
            sb_puts(b, i ? ",{\"token\":" : "{\"token\":");
            put_token_text(b, r[i].id);
            sb_printf(b, ",\"logprob\":%.9g,\"bytes\":", r[i].logprob);
            put_token_bytes(b, r[i].id);
            sb_puts(b, ",\"top_logprobs\":[");
            for (int k = 0; k < r[i].n_top; k++) {
                sb_puts(b, k ? ",{\"token\":" : "{\"token\":");
                put_token_text(b, r[i].top[k].id);
                sb_printf(b, ",\"logprob\":%.9g,\"bytes\":", r[i].top[k].logprob);
                put_token_bytes(b, r[i].top[k].id);
                sb_putc(b, '}');
            }
            sb_puts(b, "]}");
        }
        sb_puts(b, "],\"refusal\":null}");
    } else {
        sb_puts(b, "{\"tokens\":[");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_putc(b, ',');
            put_token_text(b, r[i].id);
        }
        sb_puts(b, "],\"token_logprobs\":[");
        for (size_t i = 0; i < n; i++) sb_printf(b, "%s%.9g", i ? "," : "", r[i].logprob);
        /* the alternatives, and the sampled token (OpenAI: up to logprobs + 1) */
        sb_puts(b, "],\"top_logprobs\":[");
        for (size_t i = 0; i < n; i++) {
            sb_puts(b, i ? ",{" : "{");
            int in_top = 0;
            for (int k = 0; k < r[i].n_top; k++) {
                if (k) sb_putc(b, ',');
                put_token_text(b, r[i].top[k].id);
                sb_printf(b, ":%.9g", r[i].top[k].logprob);
                in_top |= r[i].top[k].id == r[i].id;
            }
            if (!in_top) {
                if (r[i].n_top) sb_putc(b, ',');
                put_token_text(b, r[i].id);
                sb_printf(b, ":%.9g", r[i].logprob);
            }
            sb_putc(b, '}');
        }
        sb_puts(b, "],\"text_offset\":[");
        for (size_t i = 0; i < n; i++) {
            const char *t;
            size_t len = 0;
            sb_printf(b, "%s%zu", i ? "," : "", c->text_off);
            if (ds_tokenizer_token_bytes(S.tok, r[i].id, &t, &len, NULL) == DS_OK) c->text_off += len;
        }
        sb_puts(b, "]}");
    }
    c->n_rec = 0;
}

/* "model" is the one asked for: BASE, or BASE:name with an adapter. */
static void put_head(sbuf *b, const char *id, const char *object, long long created, const char *adapter) {
    sb_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", id, object, created);
    if (adapter && adapter[0]) {
        sbuf m = {0};
        sb_printf(&m, "%s:%s", S.model_id, adapter);
        if (!m.oom) sb_json_str(b, m.data, m.len);
        else sb_json_str(b, S.model_id, strlen(S.model_id));
        sb_free(&m);
    } else {
        sb_json_str(b, S.model_id, strlen(S.model_id));
    }
}

static void body_complete(sbuf *b, int kind, const char *id, long long created, gen *g) {
    const char *text = g->text.data ? g->text.data : "";
    if (kind == KIND_GENERATE) {
        sb_puts(b, "{\"text\":");
        sb_json_str(b, text, g->text.len);
        sb_printf(b, ",\"finish_reason\":\"%s\",\"prompt_tokens\":%zu,\"completion_tokens\":%d,\"total_tokens\":%zu,"
                     "\"seconds\":%.6f,\"tokens_per_second\":%.3f}",
                  g->finish, g->n_prompt, g->n_gen, g->n_prompt + (size_t)g->n_gen,
                  g->prompt_seconds + g->generate_seconds,
                  g->generate_seconds > 0 ? g->n_gen / g->generate_seconds : 0.0);
        return;
    }
    if (kind == KIND_CHAT) {
        put_head(b, id, "chat.completion", created, g->adapter);
        sb_puts(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_str(b, text, g->text.len);
        sb_puts(b, "},\"logprobs\":");
        put_logprobs(b, kind, g->lc);
        sb_printf(b, ",\"finish_reason\":\"%s\"}],", g->finish);
    } else {
        put_head(b, id, "text_completion", created, g->adapter);
        sb_puts(b, ",\"choices\":[{\"text\":");
        sb_json_str(b, text, g->text.len);
        sb_puts(b, ",\"index\":0,\"logprobs\":");
        put_logprobs(b, kind, g->lc);
        sb_printf(b, ",\"finish_reason\":\"%s\"}],", g->finish);
    }
    put_usage(b, g);
    sb_puts(b, ",\"system_fingerprint\":\"deepseek.h-" DS_VERSION_STRING "\"}");
}

/* One server-sent event: a chunk with this text (or, with finish, the last
 * chunk with its finish_reason) and the logprobs of lp's tokens not yet
 * reported (lp NULL: "logprobs": null). */
static void sse_chunk(sbuf *b, int kind, const char *id, long long created, const char *text, size_t len,
                      int role, const char *finish, lc_ctl *lp, const char *adapter) {
    sb_puts(b, "data: ");
    if (kind == KIND_CHAT) {
        put_head(b, id, "chat.completion.chunk", created, adapter);
        sb_puts(b, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (role) sb_puts(b, "\"role\":\"assistant\",\"content\":\"\"");
        else if (text) {
            sb_puts(b, "\"content\":");
            sb_json_str(b, text, len);
        }
        sb_puts(b, "},\"logprobs\":");
        put_logprobs(b, kind, lp);
        sb_puts(b, ",\"finish_reason\":");
    } else {
        put_head(b, id, "text_completion", created, adapter);
        sb_puts(b, ",\"choices\":[{\"text\":");
        sb_json_str(b, text ? text : "", text ? len : 0);
        sb_puts(b, ",\"index\":0,\"logprobs\":");
        put_logprobs(b, kind, lp);
        sb_puts(b, ",\"finish_reason\":");
    }
    if (finish) sb_printf(b, "\"%s\"", finish);
    else sb_puts(b, "null");
    sb_puts(b, "}]}\n\n");
}

/* ==== Streaming =========================================================== */

typedef struct stream {
    req *r;
    gen g;
    int kind;
    char id[48];
    long long created;
    int include_usage;
    int phase;                            /* 0 start, 1 generating, 2 finished */
    sbuf out;                             /* bytes not yet handed to MHD */
    size_t out_pos;
    char *prompt;
} stream;

/* Appends the next event(s) to st->out. */
static void stream_produce(stream *st) {
    if (st->phase == 0) {
        st->phase = 1;
        if (st->kind == KIND_CHAT) {
            sse_chunk(&st->out, st->kind, st->id, st->created, NULL, 0, 1, NULL, NULL, st->g.adapter);
            return;
        }
    }
    const char *text;
    size_t len;
    gen_step(&st->g, &text, &len);
    if (len) sse_chunk(&st->out, st->kind, st->id, st->created, text, len, 0, NULL, st->g.lc, st->g.adapter);
    if (!st->g.done) return;
    if (st->g.err) {
        sb_puts(&st->out, "data: ");
        if (st->g.err == DS_ERR_CANCELLED) {
            error_body(&st->out, 503, "shutting_down", NULL, st->g.errmsg);
        } else {
            char msg[128];
            internal_error(st->r, st->g.errmsg, msg, sizeof msg);
            error_body(&st->out, 500, "internal_error", NULL, msg);
        }
        sb_puts(&st->out, "\n\n");
    } else {
        sse_chunk(&st->out, st->kind, st->id, st->created, NULL, 0, 0, st->g.finish, st->g.lc, st->g.adapter);
        if (st->include_usage) {
            sb_puts(&st->out, "data: ");
            put_head(&st->out, st->id, st->kind == KIND_CHAT ? "chat.completion.chunk" : "text_completion",
                     st->created, st->g.adapter);
            sb_puts(&st->out, ",\"choices\":[],");
            put_usage(&st->out, &st->g);
            sb_puts(&st->out, "}\n\n");
        }
    }
    sb_puts(&st->out, "data: [DONE]\n\n");
    gen_account(st->r, &st->g);
    gen_end(&st->g);                      /* the context is free for the next request now */
    st->phase = 2;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    while (st->out_pos >= st->out.len) {
        sb_reset(&st->out);
        st->out_pos = 0;
        if (st->phase == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        stream_produce(st);
        if (st->out.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->out.len - st->out_pos;
    if (n > max) n = max;
    memcpy(buf, st->out.data + st->out_pos, n);
    st->out_pos += n;
    return (ssize_t)n;
}

/* MHD is done with the response: normal end, client gone, or shutdown. */
static void stream_free(void *cls) {
    stream *st = cls;
    if (st->phase != 2) {
        st->r->aborted = 1;
        gen_account(st->r, &st->g);
        gen_end(&st->g);
    }
    gen_drop(&st->g);
    sb_free(&st->out);
    free(st->prompt);
    req_release(st->r);
    free(st);
}

/* ==== Endpoint handlers =================================================== */

/* The adapter a request's "model" asks for: name in "BASE:name", where
 * BASE is this server's model id; NULL for the base (the id itself, or any
 * other name: the server serves one model, and clients send what they
 * like there). */
static const char *model_adapter(const char *model) {
    size_t n = strlen(S.model_id);
    if (strncmp(model, S.model_id, n) != 0 || model[n] != ':') return NULL;
    return model + n + 1;
}

static enum MHD_Result handle_generation(struct MHD_Connection *conn, req *r) {
    int kind = r->ep == EP_CHAT ? KIND_CHAT : r->ep == EP_COMPLETIONS ? KIND_COMPLETION : KIND_GENERATE;
    char err[160];
    int oom = 0;
    sj_value *root = NULL;
    sj_doc *doc = sj_parse(r->body.data ? r->body.data : "", r->body.len, &root, err, sizeof err, &oom);
    if (!doc) {
        if (oom) return reply_internal(conn, r, "out of memory parsing the request");
        return reply_error(conn, r, 400, "invalid_json", NULL, "malformed JSON in the request body: %s", err);
    }
    enum MHD_Result ret;
    perr pe = {{0}, NULL, NULL};
    gen_params gp;
    lora_entry *le = NULL;                /* the adapter asked for, until g0 holds it */
    char *prompt = NULL;
    int32_t *chat_ids = NULL;             /* a chat's prompt, tokenized */
    size_t n_chat_ids = 0;
    int server_err = 0;
    if (root->type != SJ_OBJECT) {
        ret = reply_error(conn, r, 400, "invalid_type", NULL, "the request body must be a JSON object, not %s",
                          sj_type_name(root->type));
        goto out;
    }
    if (!parse_gen_params(root, kind, &gp, &pe) ||
        !(kind == KIND_CHAT ? render_chat(root, &prompt, &chat_ids, &n_chat_ids, &pe, &server_err)
                            : get_prompt(root, &prompt, &pe))) {
        if (server_err || !pe.code) ret = reply_internal(conn, r, "%s", pe.msg);
        else ret = reply_error(conn, r, 400, pe.code, pe.param, "%s", pe.msg);
        goto out;
    }
    r->stream = gp.stream;
    if (S.log_prompts) r->prompt_log = strdup(prompt);
    if (atomic_load(&S.stopping)) {
        ret = reply_error(conn, r, 503, "shutting_down", NULL, "the server is shutting down");
        goto out;
    }

    /* ---- "model": "BASE:name" asks for the adapter name (referenced from
     * here until the slot is given back, so it cannot be unloaded meanwhile) ---- */
    {
        const sj_value *mv = opt(root, "model");
        const char *adapter = mv ? model_adapter(mv->u.str.s) : NULL;
        if (adapter) {
            if (!(le = lora_get(adapter))) {
                ret = reply_error(conn, r, 404, "model_not_found", "model",
                                  "the model '%.200s' does not exist: no adapter named '%.64s' is loaded "
                                  "(GET /v1/models lists the models)", mv->u.str.s, adapter);
                goto out;
            }
            snprintf(r->adapter, sizeof r->adapter, "%s", le->name);
        }
    }

    /* ---- the prompt's tokens (a prompt too long is refused before it waits) ---- */
    gen g0;
    ds_status st = gen_prepare(&g0, prompt, chat_ids, n_chat_ids, &gp);
    if (st != DS_OK) {
        gen_account(r, &g0);
        r->finish = NULL;
        gen_end(&g0);
        gen_drop(&g0);
        if (st == DS_ERR_LIMIT)
            ret = reply_error(conn, r, 400, "context_length_exceeded", kind == KIND_CHAT ? "messages" : "prompt",
                              "%s", g0.errmsg);
        else if (st == DS_ERR_INVALID_ARG)
            ret = reply_error(conn, r, 400, "invalid_value", NULL, "%s", g0.errmsg);
        else
            ret = reply_internal(conn, r, "%s", g0.errmsg);
        goto out;
    }
    g0.lora = le;                         /* gen_end lets go of it */
    le = NULL;
    if (g0.lora) snprintf(g0.adapter, sizeof g0.adapter, "%s", g0.lora->name);

    /* ---- a slot, after waiting in the queue if need be ---- */
    ds_context *ctx;
    double waited;
    const union MHD_ConnectionInfo *fdi = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int acq = pool_acquire(fdi ? fdi->connect_fd : -1, g0.ids, g0.n_prompt, g0.lora, &ctx, &waited);
    if (acq != ACQ_OK) {
        gen_end(&g0);
        gen_drop(&g0);
    }
    if (acq != ACQ_FULL && (acq != ACQ_OK || waited > 0)) r->queued = waited;
    queue_account(acq, waited);
    if (acq == ACQ_FULL) {
        r->retry_after = retry_after_s();
        if (S.queue_max)
            ret = reply_error(conn, r, 429, "server_busy", NULL,
                              "all %d generation slots are busy and all %d places in the queue taken; retry in "
                              "%u s", S.n_slots, S.queue_max, r->retry_after);
        else
            ret = reply_error(conn, r, 429, "server_busy", NULL,
                              "all %d generation slots are busy (this server has no queue); retry in %u s",
                              S.n_slots, r->retry_after);
        goto out;
    }
    if (acq == ACQ_TIMEOUT) {
        r->retry_after = retry_after_s();
        ret = reply_error(conn, r, 503, "queue_timeout", NULL,
                          "no generation slot came free within %.0f s (--queue-timeout); retry in %u s",
                          S.queue_timeout, r->retry_after);
        goto out;
    }
    if (acq == ACQ_STOPPING) {
        r->stop_answer = 1;
        ret = reply_error(conn, r, 503, "shutting_down", NULL, "the server is shutting down");
        goto out;
    }
    if (acq == ACQ_GONE) {
        ret = MHD_NO;                     /* nobody to answer: MHD closes the connection (logged as 499) */
        goto out;
    }
    if (acq == ACQ_ERROR) {
        ret = reply_internal(conn, r, "applying adapter %s to a slot failed", r->adapter);
        goto out;
    }
    st = gen_begin(&g0, ctx, &gp);
    g0.t_arrival = r->t0;
    if (st != DS_OK) {
        gen_account(r, &g0);
        r->finish = NULL;
        gen_end(&g0);
        gen_drop(&g0);
        if (st == DS_ERR_LIMIT)
            ret = reply_error(conn, r, 400, "context_length_exceeded", kind == KIND_CHAT ? "messages" : "prompt",
                              "%s", g0.errmsg);
        else if (st == DS_ERR_INVALID_ARG)
            ret = reply_error(conn, r, 400, "invalid_value", NULL, "%s", g0.errmsg);
        else
            ret = reply_internal(conn, r, "%s", g0.errmsg);
        goto out;
    }

    char id[48];
    make_id(id, sizeof id, kind == KIND_CHAT ? "chatcmpl-" : "cmpl-");
    long long created = (long long)time(NULL);

    if (!gp.stream) {
        /* ---- whole answer at once ---- */
        const char *t;
        size_t n;
        while (!g0.done) gen_step(&g0, &t, &n);
        gen_account(r, &g0);
        gen_end(&g0);
        sbuf b = {0};
        if (g0.err) {
            gen_drop(&g0);
            if (g0.err == DS_ERR_CANCELLED)
                ret = reply_error(conn, r, 503, "shutting_down", NULL, "%s", g0.errmsg);
            else
                ret = reply_internal(conn, r, "%s", g0.errmsg);
            goto out;
        }
        body_complete(&b, kind, id, created, &g0);
        gen_drop(&g0);
        ret = reply_json(conn, r, 200, &b);
        goto out;
    }

    /* ---- streaming: MHD pulls one event at a time ---- */
    stream *sm = calloc(1, sizeof *sm);
    if (!sm) {
        gen_end(&g0);
        gen_drop(&g0);
        ret = reply_internal(conn, r, "out of memory for a stream");
        goto out;
    }
    sm->g = g0;
    sm->kind = kind;
    snprintf(sm->id, sizeof sm->id, "%s", id);
    sm->created = created;
    sm->include_usage = gp.include_usage;
    sm->prompt = prompt;
    prompt = NULL;
    atomic_fetch_add(&r->refs, 1);
    sm->r = r;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, sm, stream_free);
    if (!resp) {
        stream_free(sm);
        ret = reply_internal(conn, r, "out of memory for a stream");
        goto out;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_add_response_header(resp, "X-Request-Id", r->rid);
    add_cors(resp);
    r->status = 200;
    r->responded = 1;
    ret = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
out:
    lora_put(le);
    free(prompt);
    free(chat_ids);
    sj_doc_free(doc);
    return ret;
}

static enum MHD_Result handle_health(struct MHD_Connection *conn, req *r) {
    sbuf b = {0};
    int degraded = atomic_load(&model_degraded);
    if (degraded)
        sb_puts(&b, "{\"status\":\"degraded\",\"reason\":\"the model file changed, was truncated or cannot be read "
                    "since the server started; restart the server once the file is restored\",\"model\":");
    else
        sb_puts(&b, "{\"status\":\"ok\",\"model\":");
    sb_json_str(&b, S.model_id, strlen(S.model_id));
    sb_printf(&b, ",\"slots\":%d,\"busy\":%d,\"queued\":%d}", S.n_slots, pool_busy(), queue_depth());
    return reply_json(conn, r, degraded ? 503 : 200, &b);
}

/* The base model's object, or (e not NULL) an adapter's, "BASE:name" with
 * the base as its "parent" (vLLM's form for LoRA adapters). pool_mu held
 * for e. */
static void put_model(sbuf *b, const lora_entry *e) {
    sb_puts(b, "{\"id\":");
    if (e) {
        sbuf m = {0};
        sb_printf(&m, "%s:%s", S.model_id, e->name);
        sb_json_str(b, m.data ? m.data : "", m.len);
        sb_free(&m);
    } else {
        sb_json_str(b, S.model_id, strlen(S.model_id));
    }
    sb_printf(b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"deepseek.h\",\"context_length\":%d",
              e ? e->loaded : S.created, S.n_ctx);
    if (e) {
        sb_puts(b, ",\"parent\":");
        sb_json_str(b, S.model_id, strlen(S.model_id));
        sb_puts(b, ",\"adapter\":");
        sb_json_str(b, e->name, strlen(e->name));
    }
    sb_putc(b, '}');
}

static enum MHD_Result handle_models(struct MHD_Connection *conn, req *r, const char *url) {
    sbuf b = {0};
    pthread_mutex_lock(&S.pool_mu);
    if (r->ep == EP_MODEL) {
        const char *want = url + strlen("/v1/models/"), *adapter = model_adapter(want);
        const lora_entry *e = adapter ? lora_find_locked(adapter) : NULL;
        if (strcmp(want, S.model_id) != 0 && !e) {
            pthread_mutex_unlock(&S.pool_mu);
            return reply_error(conn, r, 404, "model_not_found", "model", "the model '%.200s' does not exist", want);
        }
        put_model(&b, e);
    } else {
        sb_puts(&b, "{\"object\":\"list\",\"data\":[");
        put_model(&b, NULL);
        for (int i = 0; i < S.n_lora; i++) {
            sb_putc(&b, ',');
            put_model(&b, S.lora[i]);
        }
        sb_puts(&b, "]}");
    }
    pthread_mutex_unlock(&S.pool_mu);
    return reply_json(conn, r, 200, &b);
}

/* ==== LoRA adapters: load, list, unload (the admin role) ================== */

static sj_doc *body_object(struct MHD_Connection *conn, req *r, sj_value **root, enum MHD_Result *ret);

/* An adapter as GET /v1/adapters shows it. pool_mu held. */
static void put_adapter(sbuf *b, const lora_entry *e) {
    int slots = 0;
    for (int i = 0; i < S.n_slots; i++) slots += S.slot_lora[i] == e;
    sb_puts(b, "{\"name\":");
    sb_json_str(b, e->name, strlen(e->name));
    sb_puts(b, ",\"model\":");
    sbuf m = {0};
    sb_printf(&m, "%s:%s", S.model_id, e->name);
    sb_json_str(b, m.data ? m.data : "", m.len);
    sb_free(&m);
    jstr(b, "path", e->path);
    sb_printf(b, ",\"scale\":%.9g,\"rank\":%d,\"alpha\":%.9g,\"rslora\":%s", (double)e->scale, e->info.rank,
              (double)e->info.alpha, e->info.rslora ? "true" : "false");
    jstr(b, "targets", e->info.targets);
    jstr(b, "dtype", e->info.dtype == DS_DTYPE_F16 ? "F16" : "F32");
    sb_printf(b, ",\"params\":%llu,\"bytes\":%llu,\"resident_bytes\":%llu,\"created\":%lld,\"in_use\":%d,"
              "\"slots\":%d}",
              (unsigned long long)e->info.n_params, (unsigned long long)e->info.bytes,
              (unsigned long long)e->info.resident_bytes, e->loaded, e->refs, slots);
}

/* Opens the adapter at path as name with the server's adapter key. NULL
 * (with the status in *st and the message in err) on failure. */
static lora_entry *lora_open_entry(const char *name, const char *path, float scale, ds_status *st, char *err,
                                   size_t len) {
    ds_adapter_params ap = ds_adapter_default_params();
    ap.allow_plaintext = S.lora_plaintext;
    if (S.lora_secret.have_key) {
        ap.key = S.lora_secret.key;
        ap.key_len = sizeof S.lora_secret.key;
    } else if (S.lora_secret.pass) {
        ap.passphrase = S.lora_secret.pass;
        ap.passphrase_len = S.lora_secret.pass_len;
    }
    lora_entry *e = calloc(1, sizeof *e);
    if (e) e->path = strdup(path);
    if (!e || !e->path) {
        free(e);
        *st = DS_ERR_NOMEM;
        snprintf(err, len, "out of memory");
        return NULL;
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    e->scale = scale;
    e->loaded = (long long)time(NULL);
    *st = ds_adapter_open(&e->a, S.model, path, &ap);
    if (*st == DS_OK) *st = ds_adapter_get_info(e->a, &e->info);
    if (*st != DS_OK) {
        const char *msg = errmsg(*st);
        /* the library names the file ("adapter PATH: ...") once it got that far */
        const char *hint = *st == DS_ERR_WRONG_KEY || *st == DS_ERR_NEED_KEY
                               ? " (adapters are opened with the model's key, or --lora-key-file's)"
                               : "";
        if (strstr(msg, path)) snprintf(err, len, "%s%s", msg, hint);
        else snprintf(err, len, "adapter %s: %s%s", path, msg, hint);
        lora_entry_free(e);
        return NULL;
    }
    return e;
}

/* Adds e to the adapters loaded. 0, or 1 (the name is taken), 2 (full). */
static int lora_insert(lora_entry *e) {
    pthread_mutex_lock(&S.pool_mu);
    int rc = lora_find_locked(e->name) ? 1 : S.n_lora >= MAX_SERVER_ADAPTERS ? 2 : 0;
    if (!rc) S.lora[S.n_lora++] = e;
    pthread_mutex_unlock(&S.pool_mu);
    return rc;
}

/* The audit trail of an adapter loaded (who: the key, NULL at start). */
static void audit_adapter_loaded(const lora_entry *e, const char *who) {
    audit("adapter loaded name=%s path=%s scale=%g rank=%d alpha=%g targets=%s bytes=%llu%s%s", e->name, e->path,
          (double)e->scale, e->info.rank, (double)e->info.alpha, e->info.targets,
          (unsigned long long)e->info.bytes, who ? " key=" : "", who ? who : "");
    if (!A.path) return;
    sbuf b = {0};
    audit_begin(&b, "event");
    jstr(&b, "event", "adapter_loaded");
    jstr(&b, "name", e->name);
    jstr(&b, "path", e->path);
    sb_printf(&b, ",\"scale\":%.9g,\"rank\":%d,\"alpha\":%.9g", (double)e->scale, e->info.rank, (double)e->info.alpha);
    jstr(&b, "targets", e->info.targets);
    sb_printf(&b, ",\"bytes\":%llu", (unsigned long long)e->info.bytes);
    jstr(&b, "key", who);
    audit_end(&b);
}

static void audit_adapter_event(const char *event, const char *name, const char *path, const char *who,
                                const char *error) {
    if (error)
        audit("adapter load failed name=%s path=%s key=%s error=\"%s\"", name, path ? path : "", who ? who : "-",
              error);
    else
        audit("adapter unloaded name=%s%s%s", name, who ? " key=" : "", who ? who : "");
    if (!A.path) return;
    sbuf b = {0};
    audit_begin(&b, "event");
    jstr(&b, "event", event);
    jstr(&b, "name", name);
    if (path) jstr(&b, "path", path);
    jstr(&b, "key", who);
    if (error) jstr(&b, "error", error);
    audit_end(&b);
}

static enum MHD_Result handle_adapters_list(struct MHD_Connection *conn, req *r) {
    sbuf b = {0};
    sb_puts(&b, "{\"object\":\"list\",\"data\":[");
    pthread_mutex_lock(&S.pool_mu);
    for (int i = 0; i < S.n_lora; i++) {
        if (i) sb_putc(&b, ',');
        put_adapter(&b, S.lora[i]);
    }
    pthread_mutex_unlock(&S.pool_mu);
    sb_puts(&b, "]}");
    return reply_json(conn, r, 200, &b);
}

static enum MHD_Result handle_adapter_get(struct MHD_Connection *conn, req *r, const char *url) {
    const char *name = url + strlen("/v1/adapters/");
    sbuf b = {0};
    pthread_mutex_lock(&S.pool_mu);
    const lora_entry *e = lora_find_locked(name);
    if (e) put_adapter(&b, e);
    pthread_mutex_unlock(&S.pool_mu);
    if (!e) {
        sb_free(&b);
        return reply_error(conn, r, 404, "adapter_not_found", NULL, "no adapter named '%.64s' is loaded", name);
    }
    return reply_json(conn, r, 200, &b);
}

/* POST /v1/adapters {"name", "path", "scale"}: opens the file (outside the
 * lock: it reads and decrypts) and adds it under its name. */
static enum MHD_Result handle_adapter_load(struct MHD_Connection *conn, req *r) {
    sj_value *root = NULL;
    enum MHD_Result ret;
    sj_doc *doc = body_object(conn, r, &root, &ret);
    if (!doc) return ret;
    const sj_value *nv = sj_get(root, "name"), *pv = sj_get(root, "path"), *sv = opt(root, "scale");
    double scale = 1;
    char err[1024];
    ds_status st;
    lora_entry *e = NULL;
    if (!nv || nv->type != SJ_STRING || !plain_string(nv) || !keys_name_ok(nv->u.str.s, nv->u.str.len)) {
        ret = reply_error(conn, r, 400, nv ? "invalid_value" : "missing_required_parameter", "name",
                          "'name' must be 1 to 64 of A-Z a-z 0-9 . _ -");
    } else if (!pv || pv->type != SJ_STRING || !plain_string(pv) || !pv->u.str.len) {
        ret = reply_error(conn, r, 400, pv ? "invalid_value" : "missing_required_parameter", "path",
                          "'path' must be the adapter file's path on the server (a non-empty string)");
    } else if (sv && (sv->type != SJ_NUMBER || !isfinite(sv->u.num) || fabs(sv->u.num) > 1e6)) {
        ret = reply_error(conn, r, 400, "invalid_value", "scale", "'scale' must be a number from -1e6 to 1e6");
    } else {
        const char *name = nv->u.str.s, *path = pv->u.str.s;
        if (sv) scale = sv->u.num;
        pthread_mutex_lock(&S.pool_mu);
        int taken = lora_find_locked(name) != NULL;
        pthread_mutex_unlock(&S.pool_mu);
        if (taken) {
            ret = reply_error(conn, r, 409, "adapter_exists", "name",
                              "an adapter named '%s' is loaded already (DELETE /v1/adapters/%s first)", name, name);
        } else if (!(e = lora_open_entry(name, path, (float)scale, &st, err, sizeof err))) {
            audit_adapter_event("adapter_load_failed", name, path, r->key[0] ? r->key : NULL, err);
            ret = st == DS_ERR_NOMEM ? reply_internal(conn, r, "%s", err)
                                     : reply_error(conn, r, 400, "adapter_invalid", "path", "%s", err);
        } else {
            int ins = lora_insert(e);
            if (ins) {
                if (ins == 1)
                    ret = reply_error(conn, r, 409, "adapter_exists", "name",
                                      "an adapter named '%s' was loaded meanwhile", name);
                else
                    ret = reply_error(conn, r, 409, "too_many_adapters", "name",
                                      "%d adapters are loaded, the most this server holds (unload one first)",
                                      MAX_SERVER_ADAPTERS);
                lora_entry_free(e);
            } else {
                audit_adapter_loaded(e, r->key[0] ? r->key : NULL);
                sbuf b = {0};
                pthread_mutex_lock(&S.pool_mu);
                put_adapter(&b, e);
                pthread_mutex_unlock(&S.pool_mu);
                ret = reply_json(conn, r, 200, &b);
            }
        }
    }
    sj_doc_free(doc);
    return ret;
}

/* Takes adapter e off the server. pool_mu held. 0 done; otherwise the
 * requests that hold it (it stays). */
static int lora_remove_locked(lora_entry *e) {
    if (e->refs > 0) return e->refs;
    /* the free slots that still apply it (no request holds it: none is busy
     * with it) forget it, and the tokens they held under it */
    for (int i = 0; i < S.n_slots; i++)
        if (S.slot_lora[i] == e && slot_bind(i, NULL) != 0) return 1;
    ds_status st = ds_adapter_close(e->a);
    if (st != DS_OK) {
        audit("internal error: closing adapter %s: %s", e->name, errmsg(st));
        return 1;
    }
    e->a = NULL;
    int k = 0;
    while (k < S.n_lora && S.lora[k] != e) k++;
    for (; k + 1 < S.n_lora; k++) S.lora[k] = S.lora[k + 1];
    S.n_lora--;
    return 0;
}

static enum MHD_Result handle_adapter_unload(struct MHD_Connection *conn, req *r, const char *url) {
    const char *name = url + strlen("/v1/adapters/");
    pthread_mutex_lock(&S.pool_mu);
    lora_entry *e = lora_find_locked(name);
    int busy = e ? lora_remove_locked(e) : 0;
    pthread_mutex_unlock(&S.pool_mu);
    if (!e) return reply_error(conn, r, 404, "adapter_not_found", NULL, "no adapter named '%.64s' is loaded", name);
    if (busy)
        return reply_error(conn, r, 409, "adapter_in_use", NULL,
                           "adapter '%s' is in use by %d request%s; retry when they have ended", e->name, busy,
                           busy == 1 ? "" : "s");
    audit_adapter_event("adapter_unloaded", e->name, e->path, r->key[0] ? r->key : NULL, NULL);
    sbuf b = {0};
    sb_puts(&b, "{\"name\":");
    sb_json_str(&b, e->name, strlen(e->name));
    sb_puts(&b, ",\"object\":\"adapter\",\"deleted\":true}");
    lora_entry_free(e);
    return reply_json(conn, r, 200, &b);
}

/* Prometheus label value: backslash, quote and newline escaped. */
static void put_label(sbuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\') sb_puts(b, "\\\\");
        else if (*s == '"') sb_puts(b, "\\\"");
        else if (*s == '\n') sb_puts(b, "\\n");
        else sb_putc(b, *s);
    }
}

static void put_family(sbuf *b, const char *name, const char *type, const char *help) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The samples of a histogram without labels (its family lines written). */
static void put_histo(sbuf *b, const char *name, const histo *h, const double *bounds, int n_bounds) {
    uint64_t cum = 0;
    for (int k = 0; k < n_bounds; k++) {
        cum += h->n[k];
        sb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[k], (unsigned long long)cum);
    }
    cum += h->n[n_bounds];
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    sb_printf(b, "%s_sum %.6f\n", name, h->sum);
    sb_printf(b, "%s_count %llu\n", name, (unsigned long long)h->count);
}

static long long resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, rss = -1;
    if (f) {
        if (fscanf(f, "%lld %lld", &size, &rss) != 2) rss = -1;
        fclose(f);
    }
    return rss < 0 ? -1 : rss * (long long)sysconf(_SC_PAGESIZE);
}

static enum MHD_Result handle_metrics(struct MHD_Connection *conn, req *r) {
    metrics m;
    pthread_mutex_lock(&S.met.mu);
    memcpy(&m, &S.met, sizeof m);
    pthread_mutex_unlock(&S.met.mu);
    ds_cache_stats cs;
    int have_cs = ds_model_cache_stats(S.model, &cs) == DS_OK;
    sbuf b = {0};

    put_family(&b, "ds_server_requests_total", "counter", "HTTP requests answered, by endpoint and status code.");
    for (int e = 0; e < N_EP; e++)
        for (int c = 0; c < N_CODE; c++)
            if (m.requests[e][c]) {
                sb_printf(&b, "ds_server_requests_total{endpoint=\"%s\",code=\"", ep_name[e]);
                if (c < N_CODE - 1) sb_printf(&b, "%d", codes[c]);
                else sb_puts(&b, "other");
                sb_printf(&b, "\"} %llu\n", (unsigned long long)m.requests[e][c]);
            }

    put_family(&b, "ds_server_request_duration_seconds", "histogram",
               "Time from the request's arrival to the end of its response (streams: the last event).");
    for (int e = 0; e < N_EP; e++) {
        if (!m.hist_count[e]) continue;
        uint64_t cum = 0;
        for (int k = 0; k < N_BUCKET; k++) {
            cum += m.hist[e][k];
            sb_printf(&b, "ds_server_request_duration_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %llu\n", ep_name[e],
                      buckets[k], (unsigned long long)cum);
        }
        cum += m.hist[e][N_BUCKET];
        sb_printf(&b, "ds_server_request_duration_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %llu\n", ep_name[e],
                  (unsigned long long)cum);
        sb_printf(&b, "ds_server_request_duration_seconds_sum{endpoint=\"%s\"} %.6f\n", ep_name[e], m.hist_sum[e]);
        sb_printf(&b, "ds_server_request_duration_seconds_count{endpoint=\"%s\"} %llu\n", ep_name[e],
                  (unsigned long long)m.hist_count[e]);
    }

    put_family(&b, "ds_server_prompt_tokens_total", "counter",
               "Prompt tokens of answered requests (those reused from a slot's cache included).");
    sb_printf(&b, "ds_server_prompt_tokens_total %llu\n", (unsigned long long)m.prompt_tokens);
    put_family(&b, "ds_server_prompt_tokens_reused_total", "counter",
               "Prompt tokens a slot already held from an earlier request, not evaluated again (cache_prompt).");
    sb_printf(&b, "ds_server_prompt_tokens_reused_total %llu\n", (unsigned long long)m.prompt_reused);
    put_family(&b, "ds_server_generated_tokens_total", "counter", "Tokens generated.");
    sb_printf(&b, "ds_server_generated_tokens_total %llu\n", (unsigned long long)m.generated_tokens);
    put_family(&b, "ds_server_prompt_seconds_total", "counter", "Time spent evaluating prompts.");
    sb_printf(&b, "ds_server_prompt_seconds_total %.6f\n", m.prompt_seconds);
    put_family(&b, "ds_server_generation_seconds_total", "counter",
               "Time spent generating tokens (rate of generated tokens over this is the decode speed).");
    sb_printf(&b, "ds_server_generation_seconds_total %.6f\n", m.generate_seconds);
    put_family(&b, "ds_server_tokens_per_second", "gauge", "Decode speed of the last finished generation.");
    sb_printf(&b, "ds_server_tokens_per_second %.3f\n", m.last_tps);
    put_family(&b, "ds_server_streams_aborted_total", "counter", "Streaming responses the client left early.");
    sb_printf(&b, "ds_server_streams_aborted_total %llu\n", (unsigned long long)m.streams_aborted);
    put_family(&b, "ds_server_slots", "gauge", "Generation slots (contexts), --max-concurrent.");
    sb_printf(&b, "ds_server_slots %d\n", S.n_slots);
    put_family(&b, "ds_server_slots_busy", "gauge", "Generation slots in use.");
    sb_printf(&b, "ds_server_slots_busy %d\n", pool_busy());
    put_family(&b, "ds_server_queue_depth", "gauge", "Generation requests waiting in the queue for a slot.");
    sb_printf(&b, "ds_server_queue_depth %d\n", queue_depth());
    put_family(&b, "ds_server_queue_capacity", "gauge", "Places in the queue, --queue.");
    sb_printf(&b, "ds_server_queue_capacity %d\n", S.queue_max);
    put_family(&b, "ds_server_queue_wait_seconds", "histogram",
               "Time generation requests waited for a slot (0 when one was free; also those that timed out, "
               "left or were stopped while waiting).");
    put_histo(&b, "ds_server_queue_wait_seconds", &m.qwait, qbuckets, N_BOUNDS(qbuckets));
    put_family(&b, "ds_server_queue_rejected_total", "counter",
               "Generation requests turned away without a slot: the queue was full (429), the wait timed out "
               "(503), or the server was shutting down (503).");
    for (int k = 0; k < N_QREJECT; k++)
        sb_printf(&b, "ds_server_queue_rejected_total{reason=\"%s\"} %llu\n", q_reject_name[k],
                  (unsigned long long)m.q_rejected[k]);
    put_family(&b, "ds_server_queue_abandoned_total", "counter",
               "Generation requests whose client went away while they waited in the queue.");
    sb_printf(&b, "ds_server_queue_abandoned_total %llu\n", (unsigned long long)m.q_abandoned);

    /* ---- monitoring: performance, quality, stability ---- */
    put_family(&b, "ds_server_time_to_first_token_seconds", "histogram",
               "Time from a generation request's arrival to its first generated token (queue wait and prompt "
               "included).");
    put_histo(&b, "ds_server_time_to_first_token_seconds", &m.ttft, ttft_bounds, N_BOUNDS(ttft_bounds));
    put_family(&b, "ds_server_inter_token_latency_seconds", "histogram",
               "Time between two consecutive generated tokens of one sequence.");
    put_histo(&b, "ds_server_inter_token_latency_seconds", &m.itl, itl_bounds, N_BOUNDS(itl_bounds));
    put_family(&b, "ds_server_batch_size", "histogram", "Sequences decoded together in one decode step.");
    put_histo(&b, "ds_server_batch_size", &m.batch, batch_bounds, N_BOUNDS(batch_bounds));
    put_family(&b, "ds_server_token_logprob", "histogram",
               "Log-probability (nats) of each generated token under the model; exp(-mean) is the perplexity.");
    put_histo(&b, "ds_server_token_logprob", &m.logprob, logprob_bounds, N_BOUNDS(logprob_bounds));
    {
        long long held = 0;
        for (int i = 0; S.kv_held && i < S.n_slots; i++) held += atomic_load(&S.kv_held[i]);
        put_family(&b, "ds_server_kv_cache_tokens", "gauge",
                   "Tokens held in the KV caches of all slots (an idle slot keeps its last request's for reuse).");
        sb_printf(&b, "ds_server_kv_cache_tokens %lld\n", held);
    }
    put_family(&b, "ds_server_kv_cache_capacity_tokens", "gauge", "Tokens the KV caches of all slots can hold.");
    sb_printf(&b, "ds_server_kv_cache_capacity_tokens %lld\n", (long long)S.n_slots * S.n_ctx);
    put_family(&b, "ds_server_model_active_parameters", "gauge",
               "Weights one token's forward pass multiplies with (top-k routed experts, not all), from the config.");
    sb_printf(&b, "ds_server_model_active_parameters %.0f\n", S.active_params);
    put_family(&b, "ds_server_model_flops_per_token", "gauge",
               "Estimated FLOPs of one token's forward pass: 2 x the active parameters (attention over the "
               "context not included).");
    sb_printf(&b, "ds_server_model_flops_per_token %.0f\n", 2 * S.active_params);
    put_family(&b, "ds_server_errors_total", "counter",
               "Requests that ended in an error, by kind (every kind always present).");
    for (int k = 0; k < N_EK; k++)
        sb_printf(&b, "ds_server_errors_total{kind=\"%s\"} %llu\n", ek_name[k], (unsigned long long)m.errors[k]);
    put_family(&b, "ds_server_model_failures_total", "counter",
               "Generations that failed reading the model file, by reason: auth (a chunk failed authentication: "
               "tampered or damaged), io, truncated, corrupt.");
    for (int k = 0; k < N_MF; k++)
        sb_printf(&b, "ds_server_model_failures_total{reason=\"%s\"} %llu\n", mf_name[k],
                  (unsigned long long)m.model_failures[k]);
    put_family(&b, "ds_server_model_degraded", "gauge",
               "1 once a generation failed reading the model file (/health answers 503 until a restart), else 0.");
    sb_printf(&b, "ds_server_model_degraded %d\n", atomic_load(&model_degraded) ? 1 : 0);

    put_family(&b, "ds_server_info", "gauge", "The model served and the library version.");
    sb_puts(&b, "ds_server_info{model=\"");
    put_label(&b, S.model_id);
    sb_puts(&b, "\",version=\"" DS_VERSION_STRING "\"} 1\n");

    if (have_cs) {
        put_family(&b, "ds_expert_cache_hits_total", "counter", "Routed experts found in the expert cache.");
        sb_printf(&b, "ds_expert_cache_hits_total %llu\n", (unsigned long long)cs.hits);
        put_family(&b, "ds_expert_cache_misses_total", "counter",
                   "Routed experts decrypted while the forward pass waited.");
        sb_printf(&b, "ds_expert_cache_misses_total %llu\n", (unsigned long long)cs.misses);
        put_family(&b, "ds_expert_cache_decrypted_bytes_total", "counter", "Bytes of experts decrypted.");
        sb_printf(&b, "ds_expert_cache_decrypted_bytes_total %llu\n", (unsigned long long)cs.bytes_decrypted);
        put_family(&b, "ds_expert_cache_evictions_total", "counter", "Experts evicted from the cache.");
        sb_printf(&b, "ds_expert_cache_evictions_total %llu\n", (unsigned long long)cs.evictions);
        put_family(&b, "ds_expert_cache_prefetch_issued_total", "counter", "Experts queued for prefetch.");
        sb_printf(&b, "ds_expert_cache_prefetch_issued_total %llu\n", (unsigned long long)cs.prefetch_issued);
        put_family(&b, "ds_expert_cache_prefetch_hits_total", "counter", "Prefetched experts later used.");
        sb_printf(&b, "ds_expert_cache_prefetch_hits_total %llu\n", (unsigned long long)cs.prefetch_hits);
        put_family(&b, "ds_expert_cache_decrypt_seconds_total", "counter", "Time spent decrypting experts.");
        sb_printf(&b, "ds_expert_cache_decrypt_seconds_total %.6f\n", cs.decrypt_seconds);
        put_family(&b, "ds_expert_cache_wait_seconds_total", "counter",
                   "Time the forward pass waited for experts.");
        sb_printf(&b, "ds_expert_cache_wait_seconds_total %.6f\n", cs.wait_seconds);
        put_family(&b, "ds_expert_cache_budget_bytes", "gauge", "Expert cache budget (0: all experts resident).");
        sb_printf(&b, "ds_expert_cache_budget_bytes %llu\n", (unsigned long long)cs.budget_bytes);
        put_family(&b, "ds_expert_cache_slots", "gauge", "Expert cache slots (0: all experts resident).");
        sb_printf(&b, "ds_expert_cache_slots %d\n", cs.n_slots);
    }
    long long rss = resident_bytes();
    if (rss >= 0) {
        put_family(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        sb_printf(&b, "process_resident_memory_bytes %lld\n", rss);
    }
    put_family(&b, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.");
    sb_printf(&b, "process_start_time_seconds %.3f\n", S.start_wall);

    size_t len = 0;
    char *data = sb_take(&b, &len);
    if (!data) return reply_internal(conn, r, "out of memory for the metrics");
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(resp, "X-Request-Id", r->rid);
    add_cors(resp);
    r->status = 200;
    r->responded = 1;
    enum MHD_Result ret = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ==== Tokens and properties ============================================== */
/*
 * llama-server's shapes:
 *   POST /tokenize    {"content": "...", "add_special": false, "parse_special": true}
 *                     -> {"tokens": [ids]}; add_special puts the BOS token first
 *                     (when the tokenizer adds one); parse_special false
 *                     reads special-token text as plain text
 *   POST /detokenize  {"tokens": [ids]} -> {"content": "..."}
 *   GET  /props       the model file's base name, the context size, the slots,
 *                     whether a chat template is there, the version
 */

static char model_file[256];             /* the --model file's base name, for /props */

/* Parses the body of /tokenize or /detokenize: a JSON object, else an
 * answer is queued (*ret) and NULL returned. */
static sj_doc *body_object(struct MHD_Connection *conn, req *r, sj_value **root, enum MHD_Result *ret) {
    char err[160];
    int oom = 0;
    sj_doc *doc = sj_parse(r->body.data ? r->body.data : "", r->body.len, root, err, sizeof err, &oom);
    if (!doc) {
        *ret = oom ? reply_internal(conn, r, "out of memory parsing the request")
                   : reply_error(conn, r, 400, "invalid_json", NULL, "malformed JSON in the request body: %s", err);
        return NULL;
    }
    if ((*root)->type != SJ_OBJECT) {
        *ret = reply_error(conn, r, 400, "invalid_type", NULL, "the request body must be a JSON object, not %s",
                           sj_type_name((*root)->type));
        sj_doc_free(doc);
        return NULL;
    }
    return doc;
}

static enum MHD_Result do_tokenize(struct MHD_Connection *conn, req *r, const sj_value *root) {
    perr pe = {{0}, NULL, NULL};
    int add_special = 0, parse_special = 1;
    const sj_value *c = sj_get(root, "content");
    if (!c) return reply_error(conn, r, 400, "missing_required_parameter", "content", "'content' is required");
    if (c->type != SJ_STRING)
        return reply_error(conn, r, 400, "invalid_type", "content", "'content' must be a string, not %s",
                           sj_type_name(c->type));
    if (!get_bool(root, "add_special", &add_special, &pe) || !get_bool(root, "parse_special", &parse_special, &pe))
        return reply_error(conn, r, 400, pe.code, pe.param, "%s", pe.msg);
    int flags = (add_special ? DS_TOKENIZE_BOS : 0) | (parse_special ? 0 : DS_TOKENIZE_NO_SPECIAL);
    /* byte-level BPE: at most one id per byte, and a BOS */
    size_t cap = c->u.str.len + 2, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return reply_internal(conn, r, "out of memory for %zu token ids", cap);
    ds_status st = ds_tokenizer_encode(S.tok, c->u.str.s, c->u.str.len, flags, ids, cap, &n);
    if (st == DS_ERR_LIMIT && n > cap) {
        int32_t *p = realloc(ids, n * sizeof *ids);
        if (!p) {
            free(ids);
            return reply_internal(conn, r, "out of memory for %zu token ids", n);
        }
        ids = p;
        cap = n;
        st = ds_tokenizer_encode(S.tok, c->u.str.s, c->u.str.len, flags, ids, cap, &n);
    }
    if (st != DS_OK) {
        free(ids);
        if (st == DS_ERR_INVALID_ARG || st == DS_ERR_LIMIT)
            return reply_error(conn, r, 400, "invalid_value", "content", "tokenize: %s", errmsg(st));
        return reply_internal(conn, r, "tokenize: %s", errmsg(st));
    }
    sbuf b = {0};
    sb_puts(&b, "{\"tokens\":[");
    for (size_t i = 0; i < n; i++) sb_printf(&b, "%s%ld", i ? "," : "", (long)ids[i]);
    sb_puts(&b, "]}");
    free(ids);
    return reply_json(conn, r, 200, &b);
}

static enum MHD_Result do_detokenize(struct MHD_Connection *conn, req *r, const sj_value *root) {
    const sj_value *t = sj_get(root, "tokens");
    if (!t) return reply_error(conn, r, 400, "missing_required_parameter", "tokens", "'tokens' is required");
    if (t->type != SJ_ARRAY)
        return reply_error(conn, r, 400, "invalid_type", "tokens", "'tokens' must be an array of token ids, not %s",
                           sj_type_name(t->type));
    int V = ds_tokenizer_vocab_size(S.tok);
    size_t n = t->u.arr.n;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return reply_internal(conn, r, "out of memory for %zu token ids", n);
    for (size_t i = 0; i < n; i++) {
        const sj_value *v = t->u.arr.items[i];
        if (v->type != SJ_NUMBER || v->u.num != floor(v->u.num) || v->u.num < 0 || v->u.num >= V) {
            free(ids);
            return reply_error(conn, r, 400, "invalid_value", "tokens", "tokens[%zu] is not a token id from 0 to %d",
                               i, V - 1);
        }
        ids[i] = (int32_t)v->u.num;
    }
    size_t len = 0;
    ds_status st = ds_tokenizer_decode(S.tok, ids, n, NULL, 0, &len);
    char *text = st == DS_ERR_LIMIT || st == DS_OK ? malloc(len + 1) : NULL;
    if (text) st = ds_tokenizer_decode(S.tok, ids, n, text, len + 1, &len);
    free(ids);
    if (!text || st != DS_OK) {
        free(text);
        return reply_internal(conn, r, "detokenize: %s", text ? errmsg(st) : "out of memory");
    }
    sbuf b = {0};
    sb_puts(&b, "{\"content\":");
    sb_json_str(&b, text, len);
    sb_puts(&b, "}");
    free(text);
    return reply_json(conn, r, 200, &b);
}

static enum MHD_Result handle_tokens(struct MHD_Connection *conn, req *r) {
    sj_value *root = NULL;
    enum MHD_Result ret;
    sj_doc *doc = body_object(conn, r, &root, &ret);
    if (!doc) return ret;
    ret = r->ep == EP_TOKENIZE ? do_tokenize(conn, r, root) : do_detokenize(conn, r, root);
    sj_doc_free(doc);
    return ret;
}

static enum MHD_Result handle_props(struct MHD_Connection *conn, req *r) {
    sbuf b = {0};
    sb_puts(&b, "{\"model\":");
    sb_json_str(&b, S.model_id, strlen(S.model_id));
    sb_puts(&b, ",\"model_path\":");
    sb_json_str(&b, model_file, strlen(model_file));
    sb_printf(&b, ",\"n_ctx\":%d,\"total_slots\":%d,\"queue\":%d,\"max_tokens\":%d,\"vocab_size\":%d,"
                  "\"chat_template\":%s,\"bos_token\":%ld,\"eos_token\":%ld,"
                  "\"default_generation_settings\":{\"n_ctx\":%d,\"max_tokens\":%d},"
                  "\"build_info\":\"deepseek.h %s\",\"cors\":%s}",
              S.n_ctx, S.n_slots, S.queue_max, S.max_tokens, sample_vocab(), S.cfg.has_chat_template ? "true" : "false",
              (long)(ds_tokenizer_adds_bos(S.tok) ? ds_tokenizer_bos(S.tok) : -1), (long)ds_tokenizer_eos(S.tok),
              S.n_ctx, S.max_tokens, ds_version_string(), cors_origin ? "true" : "false");
    return reply_json(conn, r, 200, &b);
}

/* 204 to a CORS preflight: what a browser may send to this path. */
static enum MHD_Result reply_preflight(struct MHD_Connection *conn, req *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    add_cors(resp);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                            r->ep == EP_ADAPTERS  ? "GET, HEAD, POST, OPTIONS"
                            : r->ep == EP_ADAPTER ? "GET, HEAD, DELETE, OPTIONS"
                            : ep_is_post(r->ep)   ? "POST, OPTIONS"
                                                  : "GET, HEAD, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    r->status = 204;
    r->responded = 1;
    enum MHD_Result ret = MHD_queue_response(conn, 204, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ==== MHD callbacks ======================================================= */

/* Who is calling: the key the bearer token belongs to. Fills r->key,
 * r->role and r->perms, and *lim with the key's limits. Returns 1 for a
 * known key (or a server without keys, which is open: no key, every
 * permission), 0 for a missing or unknown token.
 *   --api-key-file alone: its token is the key "default", role inference,
 *     which also opens /metrics (as before roles existed);
 *   --keys-file: each token's key and role; with --api-key-file beside
 *     it, "default" is role inference and no more. */
static int authenticate(struct MHD_Connection *conn, req *r, key_entry *lim) {
    memset(lim, 0, sizeof *lim);
    if (!S.token && !S.keys_file) {
        r->perms = PERM_INFERENCE | PERM_METRICS;
        return 1;
    }
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return 0;
    while (*h == ' ' || *h == '\t') h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return 0;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    if (n == 0 || n > KEYS_TOKEN_MAX) return 0;
    if (S.token && token_equal(h, n, S.token, S.token_len)) {
        snprintf(r->key, sizeof r->key, "default");
        r->role = ROLE_INFERENCE;
        r->perms = S.keys_file ? PERM_INFERENCE : PERM_INFERENCE | PERM_METRICS;
        return 1;
    }
    if (!S.keys_file) return 0;
    pthread_mutex_lock(&S.keys_mu);
    const key_entry *k = keys_match(&S.keys, h, n);
    if (k) *lim = *k;
    pthread_mutex_unlock(&S.keys_mu);
    if (!k) return 0;
    snprintf(r->key, sizeof r->key, "%s", lim->name);
    r->role = lim->role;
    r->perms = keys_role_perms(lim->role);
    return 1;
}

/* The request id: the client's X-Request-Id when it is 1 to 64 of
 * [A-Za-z0-9._-] (so it can be quoted anywhere unescaped), else a new one. */
static void request_id(struct MHD_Connection *conn, req *r) {
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (h && keys_name_ok(h, strlen(h))) snprintf(r->rid, sizeof r->rid, "%s", h);
    else make_id(r->rid, sizeof r->rid, "req-");
}

static void remote_address(struct MHD_Connection *conn, char *buf, size_t len) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    format_addr(ci ? ci->client_addr : NULL, buf, len);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)cls;
    (void)version;
    req *r = *con_cls;

    /* ---- first call: headers only. Everything that needs no body is
     * answered now, before any body is read ---- */
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        atomic_init(&r->refs, 1);
        r->t0 = now_mono();
        r->queued = -1;
        r->ep = route(url);
        snprintf(r->method, sizeof r->method, "%s", method);
        for (char *p = r->method; *p; p++)   /* methods are tokens; keep the log clean */
            if (*p < 'A' || *p > 'Z') *p = '?';
        snprintf(r->path, sizeof r->path, "%s", url);
        remote_address(conn, r->remote, sizeof r->remote);
        r->role = -1;
        request_id(conn, r);
        *con_cls = r;

        int is_get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
        int is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
        int is_delete = !strcmp(method, MHD_HTTP_METHOD_DELETE);
        if (r->ep == EP_OTHER)
            return reply_error(conn, r, 404, "not_found", NULL, "no such endpoint: %s %.100s", r->method, url);
        if (cors_origin && !strcmp(method, MHD_HTTP_METHOD_OPTIONS)) return reply_preflight(conn, r);
        int allowed = r->ep == EP_ADAPTERS  ? is_get || is_post
                      : r->ep == EP_ADAPTER ? is_get || is_delete
                      : ep_is_post(r->ep)   ? is_post
                                            : is_get;
        if (!allowed)
            return reply_error(conn, r, 405, "method_not_allowed", NULL, "%s does not accept %s (use %s)",
                               ep_name[r->ep], r->method,
                               r->ep == EP_ADAPTERS  ? "GET or POST"
                               : r->ep == EP_ADAPTER ? "GET or DELETE"
                               : ep_is_post(r->ep)   ? "POST"
                                                     : "GET");
        if (r->ep != EP_HEALTH) {
            key_entry lim;
            if (!authenticate(conn, r, &lim))
                return reply_error(conn, r, 401, "invalid_api_key", NULL,
                                   "missing or wrong API key: send \"Authorization: Bearer <token>\"");
            int need = r->ep == EP_METRICS                              ? PERM_METRICS
                       : r->ep == EP_ADAPTERS || r->ep == EP_ADAPTER ? PERM_ADMIN
                                                                       : PERM_INFERENCE;
            if (need == PERM_ADMIN && !S.keys_file)
                return reply_error(conn, r, 403, "permission_denied", NULL,
                                   "%s needs a key of role admin, and this server has no --keys-file",
                                   ep_name[r->ep]);
            if (!(r->perms & need))
                return reply_error(conn, r, 403, "permission_denied", NULL, "the key %s (role %s) may not use %s",
                                   r->key, keys_role_name(r->role), ep_name[r->ep]);
            if (ep_is_generation(r->ep) && (lim.max_concurrent || lim.tokens_per_minute)) {
                key_usage *u = keys_usage_get(r->key);
                if (!u) return reply_internal(conn, r, "out of memory for the usage of key %s", r->key);
                int adm = keys_usage_admit(u, lim.max_concurrent, lim.tokens_per_minute, now_mono(), &r->retry_after);
                if (adm == KEYS_OVER_CONCURRENT)
                    return reply_error(conn, r, 429, "key_concurrency_limit", NULL,
                                       "the key %s has %u requests running, its limit (max_concurrent); retry in %u s",
                                       r->key, (unsigned)lim.max_concurrent, r->retry_after);
                if (adm == KEYS_OVER_TOKENS)
                    return reply_error(conn, r, 429, "key_token_limit", NULL,
                                       "the key %s used its %llu tokens of the last 60 s (tokens_per_minute); retry "
                                       "in %u s", r->key, (unsigned long long)lim.tokens_per_minute, r->retry_after);
                r->usage = u;
            }
        }
        if (r->ep == EP_HEALTH) return handle_health(conn, r);
        if (r->ep == EP_MODELS || r->ep == EP_MODEL) return handle_models(conn, r, url);
        if (r->ep == EP_METRICS) return handle_metrics(conn, r);
        if (r->ep == EP_PROPS) return handle_props(conn, r);
        if (r->ep == EP_ADAPTER) return is_delete ? handle_adapter_unload(conn, r, url) : handle_adapter_get(conn, r, url);
        if (r->ep == EP_ADAPTERS && is_get) return handle_adapters_list(conn, r);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t n;
        if (cl && parse_u64(cl, UINT64_MAX, &n) && n > S.max_body)
            return reply_error(conn, r, 413, "request_too_large", NULL,
                               "the request body is %llu bytes; this server takes at most %zu",
                               (unsigned long long)n, S.max_body);
        return MHD_YES;
    }

    /* ---- body data ---- */
    if (*upload_data_size) {
        if (!r->too_large) {
            if (*upload_data_size > S.max_body - r->body.len) {
                r->too_large = 1;    /* keep reading, answer 413 at the end */
                sb_free(&r->body);
            } else {
                sb_put(&r->body, upload_data, *upload_data_size);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->responded) return MHD_YES;

    /* ---- the whole body is here ---- */
    if (r->too_large)
        return reply_error(conn, r, 413, "request_too_large", NULL, "the request body is over %zu bytes",
                           S.max_body);
    if (r->body.oom) return reply_internal(conn, r, "out of memory for the request body");
    if (r->ep == EP_TOKENIZE || r->ep == EP_DETOKENIZE) return handle_tokens(conn, r);
    if (r->ep == EP_ADAPTERS) return handle_adapter_load(conn, r);
    return handle_generation(conn, r);
}

/* The access handler as MHD sees it: on_request, with the connection guard
 * told where the request is. The head is complete at the first call (the
 * body deadline starts, or none when the answer is queued at once); the body
 * at the last (upload_data_size 0), before the answer is generated. */
static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
    int first = *con_cls == NULL;
    if (first) guard_phase(conn, PH_BODY);
    else if (*upload_data_size == 0) guard_phase(conn, PH_ANSWER);
    enum MHD_Result ret = on_request(cls, conn, url, method, version, upload_data, upload_data_size, con_cls);
    const req *r = *con_cls;
    if (first && r && r->responded) guard_phase(conn, PH_ANSWER);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    guard_phase(conn, PH_WAITING);     /* a kept-alive connection waits for its next request head */
    req *r = *con_cls;
    *con_cls = NULL;
    if (!r) return;
    if (r->stop_answer) atomic_fetch_sub(&S.stop_answers, 1);
    if (!r->responded) {
        /* the client left before an answer ("other" in the metrics), or the
         * body deadline cut it off */
        r->status = guard_timed_out(conn) ? 408 : 499;
    } else if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && r->stream && !r->finish) {
        r->aborted = 1;
    }
    req_release(r);
}

/* The client of the connection the calling thread serves (MHD runs one
 * thread per connection), set once its request line is read: MHD's own
 * messages (a malformed request, a header too large) carry no address. */
static _Thread_local char tls_remote[64];

/* MHD_OPTION_URI_LOG_CALLBACK: called in the connection's thread when a
 * request line has been read. Returns the request's initial con_cls (none). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    (void)cls;
    (void)uri;
    remote_address(conn, tls_remote, sizeof tls_remote);
    return NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    if (tls_remote[0]) audit("httpd: %s remote=%s", msg, tls_remote);
    else audit("httpd: %s", msg);
}

static void on_ds_log(void *user, ds_log_level level, const char *msg) {
    int verbose = *(const int *)user;
    if (level > (verbose ? DS_LOG_DEBUG : DS_LOG_WARN)) return;
    audit("library %s: %s", level == DS_LOG_ERROR ? "error" : level == DS_LOG_WARN ? "warning" : "notice", msg);
}

/* ==== Command line ======================================================== */

static const char usage_text[] =
    "usage: ds-server --model M.dsm [--key-file F | --passphrase-env VAR] [options]\n"
    "\n"
    "An OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions,\n"
    "/generate, /tokenize, /detokenize; GET /v1/models, /props, /health, /metrics\n"
    "(Prometheus); /v1/adapters (LoRA adapters, admin). The port is taken before the model loads: a busy port fails at once.\n"
    "Options:\n"
    "  -m, --model M         the .dsm container to serve (required)\n"
    "  --key-file F          its 32-byte key (raw or 64 hex digits)\n"
    "  --passphrase-env VAR  or a passphrase from this environment variable\n"
    "  --allow-plaintext     serve a plaintext (unencrypted) model; without it the server\n"
    "                        refuses one, key or not (anyone who can write the file could\n"
    "                        have made it)\n"
    "  --host H              address to listen on (default 127.0.0.1)\n"
    "  --port P              TCP port (default 8080; 0 = any free port, printed at start)\n"
    "  --api-key-file K      require \"Authorization: Bearer <token in K>\" (all but /health): the key\n"
    "                        named default, role inference (alone, it also opens /metrics)\n"
    "  --keys-file F         API keys with roles, one a line: NAME ROLE HASH [max_concurrent=N]\n"
    "                        [tokens_per_minute=N]; ROLE inference, metrics or admin; HASH from\n"
    "                        --hash-key. Reread on SIGHUP (a bad file keeps the keys loaded)\n"
    "  --hash-key            read a token from stdin, print its HASH field for --keys-file, exit\n"
    "  --max-concurrent N    generations at once, decoded together in one pass (default 2); more wait\n"
    "                        in the queue\n"
    "  --queue N             generation requests that may wait for a context, first come first served\n"
    "                        (default 16; 0 = none); past that 429 with Retry-After\n"
    "  --queue-timeout S     longest wait in the queue (default 60); then 503 with Retry-After\n"
    "  --max-tokens N        largest max_tokens a request may ask for (default 1024)\n"
    "  --max-body BYTES      largest request body (default 1048576); larger get 413\n"
    "  --header-timeout S    a request head must be complete S seconds after the connection opened\n"
    "                        or its previous request ended, else it is closed (default 10)\n"
    "  --body-timeout S      a request body must be complete S seconds after its head (default 30)\n"
    "  --max-conns N         connections at once (default 512, or 4 x --max-concurrent + 128 if more);\n"
    "                        at most 3/4 of them waiting for a request head (more: the one waiting\n"
    "                        longest is closed), the rest kept for requests past their head\n"
    "  --max-conns-per-client N  connections at once from one IPv4 address or IPv6 /64 (default 32)\n"
    "  -c, --ctx-size, --ctx N  tokens per context (default min(4096, the model's maximum)); more\n"
    "                        than the model was trained for (max_position_embeddings) is refused\n"
    "                        unless --allow-long-ctx\n"
    "  --allow-long-ctx      serve a context beyond the model's trained length anyway (it is\n"
    "                        advertised as n_ctx; past the trained length the text is unreliable)\n"
    "  --cache-mb N          routed-expert cache budget in MiB (default 0 = all resident)\n"
    "  --evict lru|lfu       which cached expert to drop first (default lfu)\n"
    "  --prefetch auto|always|off  decrypt experts ahead (default auto)\n"
    "  -t, --threads N       compute threads per generation (default 0 = all CPUs)\n"
    "  --device cpu|cuda     where generations run (default cpu; cuda needs make CUDA=1 and a GPU,\n"
    "                        else the server runs on the CPU and logs why)\n"
    "  --gpu-cache-mb N      VRAM expert cache in MiB with --device cuda (default 0 = every expert)\n"
    "  --gpu N               the CUDA device with --device cuda (default 0)\n"
    "  --mlock               lock the keys, the dense weights and the expert cache into RAM (never\n"
    "                        swapped); the audit log says what was locked and what the OS refused\n"
    "  --no-huge-pages       keep the weights and the expert cache in 4 KiB pages (default: 2 MiB\n"
    "                        transparent huge pages where the kernel has them; the audit log says\n"
    "                        how many bytes it gave)\n"
    "  --exact-activations   F32 activations with Q8_0/Q4_0 weights instead of int8 ones (slower;\n"
    "                        for checks)\n"
    "  --model-name NAME     the model id in responses (default: the file's base name)\n"
    "  --lora NAME=FILE      load the LoRA adapter FILE (.dsa, made by ds convert-lora for this very\n"
    "                        model) as NAME: listed in /v1/models as BASE:NAME, applied to a\n"
    "                        request whose \"model\" is BASE:NAME; may be given up to 64 times\n"
    "  --lora-scaled NAME=FILE S  the same, its scale times S (llama.cpp's --lora-scaled)\n"
    "  --lora-key-file F     the adapters' key when they are not sealed with the model's (also for\n"
    "                        POST /v1/adapters). Admin keys (--keys-file) load and unload adapters\n"
    "                        at run time: GET/POST /v1/adapters, GET/DELETE /v1/adapters/NAME\n"
    "  --audit-log PATH      append a JSON line per request and per operational event to PATH\n"
    "                        (created mode 0600; reopened on SIGHUP, for log rotation)\n"
    "  --cors ORIGIN         let browser pages from ORIGIN (\"https://app.example\", or * for any)\n"
    "                        call the API: Access-Control-Allow-Origin on every answer, OPTIONS\n"
    "                        preflights answered 204 (default: off)\n"
    "  --log-prompts         also write prompt text (and to --audit-log the completion) to the audit\n"
    "                        log (off by default)\n"
    "  --allow-special-in-content  let chat message text become control tokens: a message holding\n"
    "                        the end-of-sentence or User marker text gets that token (default: off,\n"
    "                        message contents are tokenized as plain text; trusted clients only)\n"
    "  -v, --verbose         also log the library's notices\n"
    "  -h, --help            this text\n"
    "  --version             print the version\n";

typedef struct options {
    const char *model, *host, *api_key_file, *model_name, *keys_file, *audit_log, *cors;
    uint64_t port, max_concurrent, max_tokens, max_body;
    uint64_t header_timeout, body_timeout, max_conns, max_per_client;
    uint64_t queue, queue_timeout;
    model_opts mo;                /* key, threads, context, expert cache, device (tools/cli.h) */
    int log_prompts;
    int special_in_content;
    int allow_long_ctx;           /* --allow-long-ctx */
    /* --lora NAME=FILE, --lora-scaled NAME=FILE S, --lora-key-file F */
    const char *lora_spec[MAX_SERVER_ADAPTERS];
    const char *lora_scale_s[MAX_SERVER_ADAPTERS];   /* NULL: 1 */
    int n_lora;
    const char *lora_key_file;
} options;

/* Reads the API token: the file's text without surrounding whitespace. */
static int read_token(const char *path, char **out, size_t *out_len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ds-server: --api-key-file %s: %s\n", path, strerror(errno));
        return 0;
    }
    char buf[4097];
    size_t n = fread(buf, 1, sizeof buf, f);
    int toolong = n == sizeof buf;
    fclose(f);
    if (toolong) {
        ds_memzero(buf, sizeof buf);
        fprintf(stderr, "ds-server: --api-key-file %s: longer than 4096 bytes\n", path);
        return 0;
    }
    size_t a = 0, b = n;
    while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\n' || buf[a] == '\r')) a++;
    while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\n' || buf[b - 1] == '\r')) b--;
    int ok = b > a;
    for (size_t i = a; i < b && ok; i++)
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] == 0x7f) ok = 0;
    if (!ok) {
        ds_memzero(buf, sizeof buf);
        fprintf(stderr, "ds-server: --api-key-file %s: want one token of printable characters without spaces\n",
                path);
        return 0;
    }
    *out = malloc(b - a + 1);
    if (!*out) {
        ds_memzero(buf, sizeof buf);
        fprintf(stderr, "ds-server: out of memory\n");
        return 0;
    }
    memcpy(*out, buf + a, b - a);
    (*out)[b - a] = '\0';
    *out_len = b - a;
    ds_memzero(buf, sizeof buf);
    return 1;
}

/* --hash-key: reads one line from stdin, the token (surrounding whitespace
 * ignored), and prints the HASH field of a --keys-file line for it. read(2)
 * rather than stdio, so no copy of the token stays in a buffer we cannot
 * wipe. Returns 1 when done, 0 (with a message) when not. */
static int hash_key(void) {
    char buf[KEYS_TOKEN_MAX + 2];
    size_t n = 0;
    while (n < sizeof buf && !memchr(buf, '\n', n)) {
        ssize_t k = read(0, buf + n, sizeof buf - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            fprintf(stderr, "ds-server: --hash-key: reading stdin: %s\n", strerror(errno));
            return 0;
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    char *nl = memchr(buf, '\n', n);
    size_t a = 0, b = nl ? (size_t)(nl - buf) : n;
    int ok = nl || n < sizeof buf;
    while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r')) a++;
    while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r')) b--;
    if (b - a > KEYS_TOKEN_MAX || b == a) ok = 0;
    for (size_t i = a; i < b && ok; i++)
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] == 0x7f) ok = 0;
    char out[KEYS_HASH_CHARS + 1];
    if (ok && keys_hash(buf + a, b - a, out) != 0) {
        ds_memzero(buf, sizeof buf);
        fprintf(stderr, "ds-server: --hash-key: libsodium cannot start\n");
        return 0;
    }
    ds_memzero(buf, sizeof buf);
    if (!ok) {
        fprintf(stderr, "ds-server: --hash-key: want one line on stdin, a token of 1 to %d printable characters "
                "without spaces\n", KEYS_TOKEN_MAX);
        return 0;
    }
    if (b - a < 16)
        fprintf(stderr, "ds-server: --hash-key: warning: the token has only %zu characters; a token should be "
                "random, at least 16 characters (e.g. head -c 24 /dev/urandom | base64)\n", b - a);
    printf("%s\n", out);
    return fflush(stdout) == 0;
}

static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->port = 8080;
    o->max_concurrent = 2;
    o->max_tokens = 1024;
    o->max_body = 1 << 20;
    o->header_timeout = 10;
    o->body_timeout = 30;
    o->max_conns = 512;
    o->max_per_client = 32;
    o->queue = 16;
    o->queue_timeout = 60;
    /* -m: llama.cpp's spelling of --model */
    static const char *const str_name[] = {"--model", "--host", "--api-key-file", "--model-name", "-m",
                                           "--keys-file", "--audit-log", "--cors"};
    const char **str_slot[] = {&o->model, &o->host, &o->api_key_file, &o->model_name, &o->model,
                               &o->keys_file, &o->audit_log, &o->cors};
    static const struct {
        const char *name;
        uint64_t lo, hi;
    } num[] = {
        {"--port", 0, 65535}, {"--max-concurrent", 1, DS_SERVER_MAX_SLOTS}, {"--max-tokens", 1, 1 << 24},
        {"--max-body", 64, (uint64_t)1 << 32}, {"--header-timeout", 1, 3600}, {"--body-timeout", 1, 86400},
        {"--max-conns", 16, 16384}, {"--max-conns-per-client", 1, 16384}, {"--queue", 0, 4096},
        {"--queue-timeout", 1, 3600},
    };
    uint64_t *num_slot[] = {&o->port, &o->max_concurrent, &o->max_tokens, &o->max_body,
                            &o->header_timeout, &o->body_timeout, &o->max_conns, &o->max_per_client,
                            &o->queue, &o->queue_timeout};
    const char *num_s[sizeof num / sizeof num[0]] = {NULL};   /* as given; [6] is --max-conns */
    argscan a = {.cmd = NULL, .argc = argc, .argv = argv, .i = 1};
    for (; a.i < argc && !a.bad; a.i++) {
        const char *v;
        size_t k;
        if (is_flag(&a, "-h") || is_flag(&a, "--help")) {
            fputs(usage_text, stdout);
            return -1;
        }
        if (is_flag(&a, "--version")) {
            printf("ds-server (deepseek.h %s)\n", ds_version_string());
            return -1;
        }
        if (is_flag(&a, "--hash-key")) return hash_key() ? -1 : 1;
        if (is_flag(&a, "--log-prompts")) {
            o->log_prompts = 1;
            continue;
        }
        if (is_flag(&a, "--allow-special-in-content")) {
            o->special_in_content = 1;
            continue;
        }
        if (is_flag(&a, "--allow-long-ctx")) {
            o->allow_long_ctx = 1;
            continue;
        }
        if (is_opt(&a, "--lora-key-file", &v)) {
            set_once(&a, &o->lora_key_file, v, "--lora-key-file");
            continue;
        }
        {
            int scaled = 0;
            if (is_opt(&a, "--lora", &v) || (scaled = is_opt(&a, "--lora-scaled", &v))) {
                if (a.bad) break;
                const char *sc = NULL;
                if (scaled) {
                    if (a.i + 1 >= argc)
                        return usage_error(NULL, "--lora-scaled needs a name=file and a scale: --lora-scaled NAME=FILE S");
                    sc = argv[++a.i];
                }
                if (o->n_lora >= MAX_SERVER_ADAPTERS)
                    return usage_error(NULL, "at most %d adapters (--lora, --lora-scaled)", MAX_SERVER_ADAPTERS);
                o->lora_spec[o->n_lora] = v;
                o->lora_scale_s[o->n_lora++] = sc;
                continue;
            }
        }
        if (model_option(&a, &o->mo, MO_THREADS | MO_CTX | MO_CACHE)) continue;
        for (k = 0; k < sizeof str_name / sizeof str_name[0]; k++)
            if (is_opt(&a, str_name[k], &v)) break;
        if (k < sizeof str_name / sizeof str_name[0]) {
            if (set_once(&a, str_slot[k], v, str_slot[k] == &o->model ? "--model" : str_name[k]) && !*v)
                return usage_error(NULL, "option %s needs a non-empty value", str_name[k]);
            continue;
        }
        for (k = 0; k < sizeof num / sizeof num[0]; k++)
            if (is_opt(&a, num[k].name, &v)) break;
        if (k < sizeof num / sizeof num[0]) {
            set_once(&a, &num_s[k], v, num[k].name);
            continue;
        }
        int pos = is_positional(&a);
        if (pos < 0) continue;
        if (pos) return usage_error(NULL, "unexpected argument '%s' (the model goes after --model)", argv[a.i]);
        return unknown_option(&a);
    }
    if (a.bad) return EXIT_USAGE;
    for (size_t k = 0; k < sizeof num / sizeof num[0]; k++) {
        if (!num_s[k]) continue;
        uint64_t v;
        if (!parse_u64(num_s[k], UINT64_MAX, &v) || v < num[k].lo || v > num[k].hi)
            return usage_error(NULL, "%s needs a whole number from %llu to %llu, not '%s'", num[k].name,
                               (unsigned long long)num[k].lo, (unsigned long long)num[k].hi, num_s[k]);
        *num_slot[k] = v;
    }
    /* by default, room for a stream per slot and as many connections again,
     * and for every queued request */
    if (!num_s[6] && o->max_conns < 4 * o->max_concurrent + o->queue + 128)
        o->max_conns = 4 * o->max_concurrent + o->queue + 128;
    int rc = model_opts_check(NULL, &o->mo);
    if (rc) return rc;
    for (int i = 0; i < o->n_lora; i++) {
        const char *sp = o->lora_spec[i], *eq = strchr(sp, '=');
        float f;
        if (!eq || !keys_name_ok(sp, (size_t)(eq - sp)) || !eq[1])
            return usage_error(NULL, "--lora wants NAME=FILE (NAME: 1 to 64 of A-Z a-z 0-9 . _ -), not '%s'", sp);
        for (int j = 0; j < i; j++)
            if (!strncmp(o->lora_spec[j], sp, (size_t)(eq - sp) + 1))
                return usage_error(NULL, "--lora: the name '%.*s' is given twice", (int)(eq - sp), sp);
        if (o->lora_scale_s[i] && !parse_lora_scale(o->lora_scale_s[i], &f))
            return usage_error(NULL, "--lora-scaled %s: the scale must be a number (e.g. 0.5), not '%s'", sp,
                               o->lora_scale_s[i]);
    }
    if (o->lora_key_file && !o->lora_key_file[0]) return usage_error(NULL, "--lora-key-file needs a file name");
    if (!o->host) o->host = "127.0.0.1";
    if (!o->model) return usage_error(NULL, "missing --model M.dsm");
    /* the origin goes into a header as it is */
    for (const char *c = o->cors; c && *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
            return usage_error(NULL, "--cors wants an origin such as https://app.example (or *), without spaces or "
                                     "control characters");
    /* plaintext is refused by default: with a key the library refuses it
     * (allow_plaintext 0); without a key only a plaintext file could open */
    if (!o->mo.ko.key_file && !o->mo.ko.pass_env && !o->mo.ko.allow_plaintext)
        return usage_error(NULL, "no --key-file or --passphrase-env: only a plaintext model could be served, and "
                                 "the server refuses plaintext models unless --allow-plaintext is given");
    return 0;
}

/* ==== Keys and the audit log: load, reload ================================ */

/* Reads the keys file into *out. A file others may write is refused (they
 * could give themselves a key), one others may read is loaded with a
 * warning (its hashes open nothing, but the names and limits are nobody
 * else's business). Returns 0, or -1 with "file:line: why" in err. */
static int load_keys(const char *path, keyset *out, char *err, size_t len) {
    int mode = 0;
    int rc = keys_load(path, out, &mode, err, len);
    if (rc) return -1;
    if (mode & 022) {
        keys_free(out);
        snprintf(err, len, "%s: others may write it (mode %04o); chmod go-w %s", path, (unsigned)mode, path);
        return -1;
    }
    for (size_t i = 0; S.token && i < out->n; i++)
        if (!strcmp(out->keys[i].name, "default")) {
            keys_free(out);
            snprintf(err, len, "%s: the key name default is the --api-key-file token's; rename the key", path);
            return -1;
        }
    if (mode & 004)
        audit("warning: the keys file %s is readable by every user (mode %04o); chmod 600 it", path, (unsigned)mode);
    return 0;
}

/* The keys_reloaded (or keys_loaded) event. */
static void audit_keys_event(const char *event, size_t n, const char *error) {
    if (!A.path) return;
    sbuf b = {0};
    audit_begin(&b, "event");
    jstr(&b, "event", event);
    jstr(&b, "file", S.keys_file);
    if (error) sb_puts(&b, ",\"keys\":null");
    else sb_printf(&b, ",\"keys\":%zu", n);
    jstr(&b, "error", error);
    audit_end(&b);
}

/* SIGHUP: the keys file read again and swapped in whole, or, when it does
 * not parse, the keys kept as they were; the audit log reopened (after a
 * rotation renamed it). Requests already authorized run on: they hold a
 * copy of what they need of their key. */
static void reload(void) {
    if (A.path) {
        int fd = audit_open(A.path);
        if (fd < 0) {
            audit("audit log %s: cannot reopen: %s; still writing to the file open before", A.path, strerror(errno));
        } else {
            pthread_mutex_lock(&A.mu);
            int old = A.fd;
            A.fd = fd;
            pthread_mutex_unlock(&A.mu);
            close(old);
            audit("audit log %s reopened", A.path);
            audit_event("audit_log_reopened");
        }
    }
    if (S.keys_file) {
        char err[512];
        keyset ks;
        if (load_keys(S.keys_file, &ks, err, sizeof err) != 0) {
            pthread_mutex_lock(&S.keys_mu);
            size_t n = S.keys.n;
            pthread_mutex_unlock(&S.keys_mu);
            audit("keys reload failed: %s; keeping the %zu keys loaded before", err, n);
            audit_keys_event("keys_reloaded", 0, err);
        } else {
            pthread_mutex_lock(&S.keys_mu);
            keyset old = S.keys;
            S.keys = ks;
            pthread_mutex_unlock(&S.keys_mu);
            keys_free(&old);
            audit("keys reloaded file=%s keys=%zu", S.keys_file, ks.n);
            audit_keys_event("keys_reloaded", ks.n, NULL);
        }
    }
    if (!A.path && !S.keys_file) audit("SIGHUP: no --keys-file or --audit-log to reload");
}

/* The startup event: the version and the options that shape the service
 * (paths, limits); nothing secret (no key, token or passphrase: their
 * files' paths at most). */
static void audit_startup(const options *o) {
    if (!A.path) return;
    sbuf b = {0};
    audit_begin(&b, "event");
    jstr(&b, "event", "startup");
    jstr(&b, "version", ds_version_string());
    sb_printf(&b, ",\"pid\":%ld,\"options\":{\"model\":", (long)getpid());
    sb_json_str(&b, o->model, strlen(o->model));
    jstr(&b, "host", o->host);
    sb_printf(&b, ",\"port\":%llu", (unsigned long long)o->port);
    jstr(&b, "model_key", o->mo.ko.key_file ? "key_file" : o->mo.ko.pass_env ? "passphrase_env" : "none");
    jstr(&b, "api_key_file", o->api_key_file);
    jstr(&b, "keys_file", o->keys_file);
    sb_printf(&b, ",\"max_concurrent\":%llu,\"queue\":%llu,\"queue_timeout_s\":%llu,\"max_tokens\":%llu,"
              "\"max_body\":%llu,\"n_ctx\":%d,\"threads\":%d,\"cache_mb\":%llu,\"log_prompts\":%s,"
              "\"allow_special_in_content\":%s,\"allow_plaintext\":%s}",
              (unsigned long long)o->max_concurrent, (unsigned long long)o->queue,
              (unsigned long long)o->queue_timeout, (unsigned long long)o->max_tokens,
              (unsigned long long)o->max_body, o->mo.n_ctx, o->mo.threads,
              (unsigned long long)(o->mo.cache_bytes >> 20), o->log_prompts ? "true" : "false",
              o->special_in_content ? "true" : "false", o->mo.ko.allow_plaintext ? "true" : "false");
    audit_end(&b);
}

/* ==== main ================================================================ */

/* Takes the port before the model loads (a busy port or a wrong address
 * fails at once, not after a long load): a bound, listening socket that MHD
 * is given later (MHD_OPTION_LISTEN_SOCKET). Connections made while the
 * model loads wait in the socket's backlog and are answered once it is in.
 * Returns the socket, or -1 with a message printed. */
static int listen_first(const struct addrinfo *ai, const char *host, unsigned port) {
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* an IPv6 address serves IPv6 only, as MHD's own sockets do */
        if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        fprintf(stderr, "ds-server: cannot listen on %s port %u: %s%s\n", host, port, strerror(e),
                e == EADDRINUSE ? " (another program has it: pick another --port, or stop that one)" : "");
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    /* Block the stop signals before any thread exists (the library's and
     * MHD's threads inherit the mask); main waits for them with sigwait. */
    sigset_t stop_sigs;
    block_stop_signals(&stop_sigs);
    /* and SIGHUP, which main also takes with sigwait: reload */
    sigaddset(&stop_sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);

    options o;
    int guard_on = 0, lfd = -1;
    unsigned bound_port = 0;
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) return 0;
    if (rc) return rc;

    memset(&S, 0, sizeof S);
    pthread_mutex_init(&S.pool_mu, NULL);
    pthread_mutex_init(&S.met.mu, NULL);
    pthread_mutex_init(&S.keys_mu, NULL);
    S.max_body = (size_t)o.max_body;
    S.max_tokens = (int)o.max_tokens;
    S.queue_max = (int)o.queue;
    S.queue_timeout = (double)o.queue_timeout;
    S.log_prompts = o.log_prompts;
    S.chat_flags = o.special_in_content ? DS_CHAT_SPECIAL_IN_CONTENT : 0;
    S.start_wall = now_wall();
    S.created = (long long)S.start_wall;
    atomic_init(&S.id_counter, 1);
    atomic_init(&S.stopping, 0);
    atomic_init(&S.stop_answers, 0);
    {
        unsigned char rnd[DS_KEY_BYTES];
        if (ds_key_generate(rnd) == DS_OK) memcpy(&S.id_base, rnd, sizeof S.id_base);
        else S.id_base = mix64((uint64_t)getpid() ^ (uint64_t)(S.start_wall * 1e6));
        ds_memzero(rnd, sizeof rnd);
    }

    if (o.api_key_file && !read_token(o.api_key_file, &S.token, &S.token_len)) return 1;
    if (o.keys_file) {
        char err[512];
        if (load_keys(o.keys_file, &S.keys, err, sizeof err) != 0) {
            fprintf(stderr, "ds-server: --keys-file %s\n", err);
            return 1;
        }
        S.keys_file = o.keys_file;
    }
    if (o.audit_log) {
        if ((A.fd = audit_open(o.audit_log)) < 0) {
            fprintf(stderr, "ds-server: --audit-log %s: %s\n", o.audit_log, strerror(errno));
            return 1;
        }
        A.path = o.audit_log;
        struct stat sb;
        if (fstat(A.fd, &sb) == 0 && (sb.st_mode & 077))
            audit("warning: the audit log %s is open to other users (mode %04o); chmod 600 it", o.audit_log,
                  (unsigned)(sb.st_mode & 07777));
    }
    audit_startup(&o);
    if (S.keys_file) {
        audit("keys loaded file=%s keys=%zu", S.keys_file, S.keys.n);
        audit_keys_event("keys_loaded", S.keys.n, NULL);
    }

    /* the address first: a typo should not wait for a model to load */
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%u", (unsigned)o.port);
    int gai = getaddrinfo(o.host, port_s, &hints, &ai);
    if (gai != 0 || !ai) {
        fprintf(stderr, "ds-server: --host %s: %s\n", o.host, gai_strerror(gai));
        rc = 1;
        goto out;
    }
    int ai_family = ai->ai_family;
    lfd = listen_first(ai, o.host, (unsigned)o.port);
    freeaddrinfo(ai);
    ai = NULL;
    if (lfd < 0) {
        rc = 1;
        goto out;
    }
    cors_origin = o.cors;
    {
        /* the port the socket has (--port 0: the system picked it) */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(lfd, (struct sockaddr *)&ss, &sl) == 0)
            bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                        : ((struct sockaddr_in *)&ss)->sin_port);
    }

    /* ---- the model ---- */
    secret sec;
    if (secret_load(NULL, &o.mo.ko, &sec)) {
        secret_wipe(&sec);
        rc = 1;
        goto out;
    }
    ds_model_params mp = ds_model_default_params();
    model_opts_params(&o.mo, &mp);
    secret_params(&sec, &mp);
    mp.log = on_ds_log;
    mp.log_user = &o.mo.verbose;
    double t0 = now_mono();
    ds_status st = ds_model_open(&S.model, o.model, &mp);
    /* the key adapters are opened with, kept for POST /v1/adapters: the
     * model's, or --lora-key-file's */
    S.lora_plaintext = o.mo.ko.allow_plaintext;
    if (st == DS_OK) {
        if (o.lora_key_file) {
            ds_status ks = ds_key_file_read(o.lora_key_file, S.lora_secret.key);
            if (ks != DS_OK) {
                secret_wipe(&sec);
                fprintf(stderr, "ds-server: --lora-key-file: %s\n", errmsg(ks));
                rc = 1;
                goto out;
            }
            S.lora_secret.have_key = 1;
        } else {
            S.lora_secret = sec;          /* takes the passphrase copy over */
            memset(&sec, 0, sizeof sec);
        }
    }
    secret_wipe(&sec);
    if (st != DS_OK) {
        char hint[PATH_HINT_MAX];
        fprintf(stderr, "ds-server: cannot open model %s: %s: %s%s\n", o.model, ds_status_string(st), errmsg(st),
                model_path_hint(o.model, hint, sizeof hint));
        rc = 1;
        goto out;
    }
    if ((st = ds_model_get_config(S.model, &S.cfg)) != DS_OK) {
        fprintf(stderr, "ds-server: %s: %s\n", o.model, ds_model_errmsg(S.model));
        rc = 1;
        goto out;
    }
    /* a context beyond the trained length would be advertised (context_length
     * in /v1/models) as if it worked: refused unless asked for */
    int trained = ctx_beyond_trained(S.model, o.mo.n_ctx);
    if (trained && !o.allow_long_ctx) {
        fprintf(stderr, "ds-server: --ctx %d is beyond the %d positions %s was trained for (max_position_embeddings); "
                "give --allow-long-ctx to serve it anyway\n", o.mo.n_ctx, trained, o.model);
        rc = 1;
        goto out;
    }
    if (trained)
        audit("warning: n_ctx %d is beyond the %d positions the model was trained for (--allow-long-ctx)", o.mo.n_ctx,
              trained);
    S.tok = ds_model_tokenizer(S.model);
    snprintf(model_file, sizeof model_file, "%s", strrchr(o.model, '/') ? strrchr(o.model, '/') + 1 : o.model);
    if (o.model_name) {
        snprintf(S.model_id, sizeof S.model_id, "%s", o.model_name);
    } else {
        const char *base = strrchr(o.model, '/');   /* (model_file, below, is the same) */
        base = base ? base + 1 : o.model;
        snprintf(S.model_id, sizeof S.model_id, "%s", base);
        size_t n = strlen(S.model_id);
        if (n > 4 && !strcmp(S.model_id + n - 4, ".dsm")) S.model_id[n - 4] = '\0';
    }

    /* ---- the context pool ---- */
    S.n_slots = (int)o.max_concurrent;
    S.ctx = calloc((size_t)S.n_slots, sizeof *S.ctx);
    S.busy = calloc((size_t)S.n_slots, 1);
    S.taken_at = calloc((size_t)S.n_slots, sizeof *S.taken_at);
    S.kv_held = calloc((size_t)S.n_slots, sizeof *S.kv_held);
    S.slot_lora = calloc((size_t)S.n_slots, sizeof *S.slot_lora);
    if (!S.ctx || !S.busy || !S.taken_at || !S.kv_held || !S.slot_lora) {
        fprintf(stderr, "ds-server: out of memory\n");
        rc = 1;
        goto out;
    }
    ds_context_params cp = ds_context_default_params();
    cp.n_ctx = o.mo.n_ctx;
    cp.n_threads = o.mo.threads;
    cp.n_seq = S.n_slots;
    if ((st = ds_context_new(&S.root, S.model, &cp)) != DS_OK) {
        fprintf(stderr, "ds-server: a context of %d sequences: %s\n", S.n_slots, errmsg(st));
        rc = 1;
        goto out;
    }
    for (int i = 0; i < S.n_slots; i++) S.ctx[i] = ds_context_seq(S.root, i);
    if (batch_init(S.n_slots) != 0) {
        fprintf(stderr, "ds-server: out of memory\n");
        rc = 1;
        goto out;
    }
    S.n_ctx = ds_context_n_ctx(S.root);
    for (int i = 0; i < S.n_slots; i++) atomic_init(&S.kv_held[i], 0);
    S.active_params = model_active_params(&S.cfg);
    audit("model loaded path=%s id=%s layers=%d experts=%d vocab=%d n_ctx=%d slots=%d expert_cache_mb=%llu "
          "device=\"%s\" seconds=%.2f auth=%s",
          o.model, S.model_id, S.cfg.n_layers, S.cfg.n_routed_experts, S.cfg.vocab_size, S.n_ctx, S.n_slots,
          (unsigned long long)(o.mo.cache_bytes >> 20), ds_model_device_name(S.model), now_mono() - t0,
          S.token || S.keys_file ? "bearer" : "none");
    if (A.path) {
        sbuf b = {0};
        audit_begin(&b, "event");
        jstr(&b, "event", "model_opened");
        jstr(&b, "path", o.model);
        jstr(&b, "model", S.model_id);
        sb_printf(&b, ",\"layers\":%d,\"experts\":%d,\"vocab\":%d,\"n_ctx\":%d,\"slots\":%d", S.cfg.n_layers,
                  S.cfg.n_routed_experts, S.cfg.vocab_size, S.n_ctx, S.n_slots);
        jstr(&b, "device", ds_model_device_name(S.model));
        sb_printf(&b, ",\"seconds\":%.3f", now_mono() - t0);
        audit_end(&b);
    }
    /* ---- the adapters named at start ---- */
    for (int i = 0; i < o.n_lora; i++) {
        const char *eq = strchr(o.lora_spec[i], '=');
        char name[KEYS_NAME_MAX + 1], err[1024];
        snprintf(name, sizeof name, "%.*s", (int)(eq - o.lora_spec[i]), o.lora_spec[i]);
        float scale = 1;
        if (o.lora_scale_s[i]) (void)parse_lora_scale(o.lora_scale_s[i], &scale);   /* checked by parse_args */
        lora_entry *e = lora_open_entry(name, eq + 1, scale, &st, err, sizeof err);
        if (!e) {
            fprintf(stderr, "ds-server: --lora %s: %s\n", name, err);
            rc = 1;
            goto out;
        }
        if (lora_insert(e) != 0) {   /* (names checked unique by parse_args) */
            lora_entry_free(e);
            fprintf(stderr, "ds-server: --lora %s: cannot add it\n", name);
            rc = 1;
            goto out;
        }
        audit_adapter_loaded(e, NULL);
    }
    /* without --keys-file no one may load an adapter later: the key is not
     * kept past the start */
    if (!S.keys_file) secret_wipe(&S.lora_secret);

    ds_mlock_info mli;
    if (o.mo.mlock && ds_model_mlock_info(S.model, &mli) == DS_OK)
        audit("mlock locked_bytes=%llu refused_bytes=%llu%s%s%s", (unsigned long long)mli.locked_bytes,
              (unsigned long long)mli.refused_bytes, mli.error ? " error=\"" : "", mli.error ? strerror(mli.error) : "",
              mli.error ? "\"" : "");
    ds_huge_page_info hpi;
    if (!o.mo.no_huge_pages && ds_model_huge_page_info(S.model, &hpi) == DS_OK)
        audit("huge_pages advised_bytes=%llu refused_bytes=%llu huge_bytes=%llu%s%s%s",
              (unsigned long long)hpi.advised_bytes, (unsigned long long)hpi.refused_bytes,
              (unsigned long long)hpi.huge_bytes, hpi.error ? " error=\"" : "", hpi.error ? strerror(hpi.error) : "",
              hpi.error ? "\"" : "");

    /* ---- listen ---- */
    /* a descriptor per connection, and some to spare for the model, the log
     * and MHD's own */
    struct rlimit rl;
    rlim_t need = (rlim_t)o.max_conns + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
            fprintf(stderr, "ds-server: --max-conns %u needs %llu open files; the limit (ulimit -n) is %llu\n",
                    (unsigned)o.max_conns, (unsigned long long)need, (unsigned long long)rl.rlim_max);
            rc = 1;
            goto out;
        }
        rl.rlim_cur = need;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (guard_start((unsigned)o.max_conns, (unsigned)o.max_per_client, (unsigned)o.header_timeout,
                    (unsigned)o.body_timeout)) {
        rc = 1;
        goto out;
    }
    guard_on = 1;
    /* Thread per connection: a generation runs in its connection's thread
     * (the body of a response is produced as MHD pulls it). MHD's own
     * connection limit is one above the guard's, so that the guard, which
     * logs the address, is the one that refuses. MHD's timeout is the idle
     * one (a client that stops reading a stream); the guard's are totals. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                     MHD_USE_POLL;
    if (ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)o.port, guard_accept, NULL, on_access, NULL, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        NULL, MHD_OPTION_LISTEN_SOCKET, lfd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, guard_notify, NULL, MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o.max_conns + 1, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_END);
    if (d) lfd = -1;   /* MHD's now: it closes it */
    if (!d) {
        fprintf(stderr, "ds-server: cannot listen on %s port %u (in use, or not an address of this host?)\n",
                o.host, (unsigned)o.port);
        rc = 1;
        goto out;
    }
    unsigned port = bound_port;
    int v6 = strchr(o.host, ':') != NULL;
    audit("listening on http://%s%s%s:%u", v6 ? "[" : "", o.host, v6 ? "]" : "", port);
    audit("connections max=%u per_client=%u waiting_for_head=%u header_timeout_s=%u body_timeout_s=%u "
          "idle_timeout_s=120", G.max_conns, G.max_per_client, G.max_waiting, (unsigned)o.header_timeout,
          (unsigned)o.body_timeout);
    audit("queue places=%d timeout_s=%.0f", S.queue_max, S.queue_timeout);
    if (A.path) {
        sbuf b = {0};
        audit_begin(&b, "event");
        jstr(&b, "event", "listening");
        jstr(&b, "host", o.host);
        sb_printf(&b, ",\"port\":%u", port);
        audit_end(&b);
    }

    /* ---- serve until SIGINT/SIGTERM; SIGHUP reloads ---- */
    int sig = 0;
    for (;;) {
        if (sigwait(&stop_sigs, &sig) != 0) continue;
        if (sig != SIGHUP) break;
        reload();
    }
    audit("signal %d: shutting down", sig);
    if (A.path) {
        sbuf b = {0};
        audit_begin(&b, "event");
        jstr(&b, "event", "shutdown");
        sb_printf(&b, ",\"signal\":%d", sig);
        audit_end(&b);
    }
    atomic_store(&S.stopping, 1);
    /* the requests waiting in the queue answer 503 at once; MHD_stop_daemon
     * shuts every connection's socket, so give those answers up to 2 s to
     * be sent first */
    queue_wake_all();
    for (int i = 0; i < 200 && (queue_depth() > 0 || atomic_load(&S.stop_answers) > 0); i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    MHD_stop_daemon(d);

out:
    if (guard_on) guard_stop();
    if (ai) freeaddrinfo(ai);
    if (lfd >= 0) close(lfd);
    if (S.ctx) {
        ds_context_free(S.root);   /* and its sequences */
        free(S.ctx);
    }
    /* the adapters after the contexts that applied them, before the model */
    for (int i = 0; i < S.n_lora; i++) lora_entry_free(S.lora[i]);
    S.n_lora = 0;
    free(S.slot_lora);
    secret_wipe(&S.lora_secret);
    free(S.busy);
    free(S.taken_at);
    free(S.kv_held);
    if (S.model) {
        st = ds_model_close(S.model);
        if (st != DS_OK) {
            fprintf(stderr, "ds-server: closing the model: %s\n", errmsg(st));
            if (!rc) rc = 1;
        }
    }
    if (S.token) {
        ds_memzero(S.token, S.token_len);
        free(S.token);
    }
    jm_vocab_free(jv_index);
    pthread_mutex_destroy(&S.pool_mu);
    pthread_mutex_destroy(&S.met.mu);
    keys_free(&S.keys);
    keys_usage_free_all();
    pthread_mutex_destroy(&S.keys_mu);
    if (!rc) {
        audit("stopped");
        audit_event("stopped");
    }
    if (A.fd >= 0) close(A.fd);
    return rc;
}
