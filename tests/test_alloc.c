/*
 * test_alloc.c — allocation-failure simulation (as SQLite's malloc fault
 * tests): an allocator that fails the Nth allocation, looped over N until the
 * call succeeds. Every failing run must return DS_ERR_NOMEM (or the status of
 * a failure it caused) with a message, and leave no allocation behind.
 */
#include "../deepseek_impl/internal.h"
#include "test.h"

#include <unistd.h>

static long fail_at = -1;   /* fail the allocation with this index; -1 = never */
static long count;          /* allocations so far in this run */
static long live;           /* allocations not yet freed */

static void *f_malloc(size_t n, void *u) {
    (void)u;
    if (count++ == fail_at) return NULL;
    void *p = malloc(n);
    if (p) live++;
    return p;
}

static void *f_realloc(void *p, size_t n, void *u) {
    (void)u;
    if (count++ == fail_at) return NULL;
    void *q = realloc(p, n);
    if (q && !p) live++;
    return q;
}

static void f_free(void *p, void *u) {
    (void)u;
    if (p) live--;
    free(p);
}

static const ds_allocator failing = {f_malloc, f_realloc, f_free, NULL};

int main(void) {
    const char *td = getenv("DS_TESTDATA");
    char dir[512], out[512];
    snprintf(dir, sizeof dir, "%s/v2lite", td ? td : "");
    snprintf(out, sizeof out, "/tmp/ds-test-alloc-%d.dsm", (int)getpid());
    char probe[600];
    snprintf(probe, sizeof probe, "%s/config.json", dir);
    if (!td || access(probe, R_OK) != 0) {
        T_SKIP("alloc", "no generated checkpoints ($DS_TESTDATA)");
        return t_finish("test_alloc");
    }
    unsigned char key[32] = {1, 2, 3};

    /* 1: the converter */
    ds_convert_params cp = ds_convert_default_params();
    cp.key = key;
    cp.key_len = 32;
    cp.allocator = failing;
    long runs = 0, bad = 0, leaks = 0;
    char first[600] = "";
    for (fail_at = 0;; fail_at++) {
        count = live = 0;
        ds_status s = ds_convert(dir, out, &cp);
        runs++;
        if (live) leaks++;
        if (s == DS_OK) break;
        if (s != DS_ERR_NOMEM || !*ds_last_error() || access(out, F_OK) == 0) {
            if (!bad++) snprintf(first, sizeof first, "N=%ld: status %d: %s", fail_at, s, ds_last_error());
        }
        if (fail_at > 100000) break;
    }
    T_CHECK("alloc-1.1", bad == 0, "%ld of %ld failing runs misreported; first %s", bad, runs, first);
    T_CHECK("alloc-1.2", leaks == 0, "%ld runs leaked allocations", leaks);
    T_CHECK("alloc-1.3", fail_at < 100000 && runs > 10, "converter never succeeded (%ld runs)", runs);

    /* 2: opening (with weights) and reading a tensor */
    ds_model_params mp = ds_model_default_params();
    mp.key = key;
    mp.key_len = 32;
    mp.allocator = failing;
    runs = bad = leaks = 0;
    for (fail_at = 0;; fail_at++) {
        count = live = 0;
        ds_model *m = NULL;
        ds_status s = ds_model_open(&m, out, &mp);
        runs++;
        if (s == DS_OK) {
            ds_model_close(m);
            if (live) leaks++;
            break;
        }
        if (live) leaks++;
        if (s != DS_ERR_NOMEM || m != NULL || !*ds_last_error())
            if (!bad++) snprintf(first, sizeof first, "N=%ld: status %d: %s", fail_at, s, ds_last_error());
        if (fail_at > 100000) break;
    }
    T_CHECK("alloc-2.1", bad == 0, "%ld of %ld failing opens misreported; first %s", bad, runs, first);
    T_CHECK("alloc-2.2", leaks == 0, "%ld opens leaked allocations", leaks);
    T_CHECK("alloc-2.3", fail_at < 100000 && runs > 10, "open never succeeded (%ld runs)", runs);
    unlink(out);
    return t_finish("test_alloc");
}
