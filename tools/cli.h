/*
 * cli.h — what the two files of the ds tool (tools/ds.c, tools/ds_bench.c)
 * share. Not part of the library.
 */
#ifndef DS_TOOLS_CLI_H
#define DS_TOOLS_CLI_H

#include <stdint.h>

#include "deepseek.h"

/* Strict unsigned parse (tools/ds.c): decimal digits only, <= max. 1 = ok. */
int parse_u64(const char *s, uint64_t max, uint64_t *out);

/* --evict values (tools/ds.c): "lru" or "lfu" -> *out, 1 = ok; and back. */
int parse_evict(const char *s, ds_evict_policy *out);
const char *evict_name(ds_evict_policy p);

/* --prefetch values (tools/ds.c): "auto", "always", "off" -> a ds_prefetch_mode,
 * or -1; and back. */
int parse_prefetch(const char *s);
const char *prefetch_name(int mode);

/* `ds bench` (tools/ds_bench.c). */
int ds_cmd_bench(int argc, char **argv);
extern const char ds_bench_help[];

#endif
