/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * test_alloc.c — allocation-failure simulation (as SQLite's malloc fault
 * tests): an allocator that fails the Nth allocation, looped over N until the
 * call succeeds. Every failing run must return DS_ERR_NOMEM (or the status of
 * a failure it caused) with a message, and leave no allocation behind.
 *
 * And the secure buffers that hold plaintext weights (dsi_secure_alloc),
 * which need no test data:
 *  alloc-3.1: with DSI_SECURE_HUGE, a buffer of 2 MiB or more starts on a
 *             2 MiB boundary and is no larger than its size rounded up to a
 *             page (nothing more can become resident); MADV_HUGEPAGE took
 *             (VmFlags "hg") where the kernel has transparent huge pages
 *             (/sys/kernel/mm/transparent_hugepage), else it is refused with
 *             an errno and the buffer has ordinary pages
 *  alloc-3.2: it is still MADV_DONTDUMP (VmFlags "dd") and holds what is
 *             written to it
 *  alloc-3.3: where THP is enabled (always or madvise), touching it gave
 *             huge pages (dsi_huge_bytes, AnonHugePages); skipped when the
 *             kernel had none to give (fragmented memory)
 *  alloc-3.4: freeing wipes all of it before unmapping (dsi_secure_unmap_hook)
 *  alloc-3.5: without the flag (ds_model_params.huge_pages 0) the same size is
 *             page-aligned, DONTDUMP, not "hg", works and is wiped on free
 *  alloc-3.6: with the flag, a buffer under 2 MiB is neither aligned to it
 *             nor advised, and no refusal is recorded
 */
#include "../deepseek_impl/internal.h"
#include "test.h"
#include "fail_alloc.h"

#include <sys/mman.h>
#include <unistd.h>

/* ==== 3: secure buffers and huge pages ==================================== */
/* The VmFlags line of the mapping of /proc/self/smaps that holds p ("" when
 * none does). */
static void vm_flags(const void *p, char *out, size_t len) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0;
    out[0] = '\0';
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        unsigned long long lo, hi;
        char dash;
        if (sscanf(line, "%llx%c%llx ", &lo, &dash, &hi) == 3 && dash == '-') {
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        } else if (in && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, len, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static int has_flag(const char *flags, const char *flag) {
    size_t n = strlen(flag);
    for (const char *q = flags; (q = strstr(q, flag)) != NULL; q += n)
        if ((q == flags || q[-1] == ' ') && (q[n] == ' ' || q[n] == '\n' || !q[n])) return 1;
    return 0;
}

/* What /sys/kernel/mm/transparent_hugepage/enabled says: -1 absent (no
 * THP in this kernel), 0 never, 1 madvise or always. */
static int thp_mode(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char line[128] = "";
    if (!f) return -1;
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    fclose(f);
    return strstr(line, "[never]") ? 0 : 1;
}

static const void *unmapped_ptr;
static size_t unmapped_len, unmapped_nonzero;
static int unmapped_calls;
static void unmap_hook(void *p, size_t len) {
    const unsigned char *b = p;
    size_t nz = 0;
    for (size_t i = 0; i < len; i++) nz += b[i] != 0;
    unmapped_ptr = p;
    unmapped_len = len;
    unmapped_nonzero = nz;
    unmapped_calls++;
    munmap(p, len);
}

static void fill(dsi_secure_buf *b) {
    unsigned char *p = b->ptr;
    for (size_t i = 0; i < b->size; i++) p[i] = (unsigned char)(i * 131u + 7u) | 1u;
}

static size_t mismatches(const dsi_secure_buf *b) {
    const unsigned char *p = b->ptr;
    size_t bad = 0;
    for (size_t i = 0; i < b->size; i++) bad += p[i] != ((unsigned char)(i * 131u + 7u) | 1u);
    return bad;
}

/* Frees b through the hook and checks the wipe (case id). */
static void free_checked(const char *id, dsi_secure_buf *b) {
    const void *p = b->ptr;
    size_t len = b->size;
    unmapped_calls = 0;
    unmapped_nonzero = 1;
    dsi_secure_unmap_hook = unmap_hook;
    dsi_secure_free(b);
    dsi_secure_unmap_hook = NULL;
    T_CHECK(id, unmapped_calls == 1 && unmapped_ptr == p && unmapped_len == len && unmapped_nonzero == 0,
            "free: %d unmaps of %p+%zu (want %p+%zu), %zu bytes not wiped", unmapped_calls, unmapped_ptr,
            unmapped_len, p, len, unmapped_nonzero);
    T_CHECK(id, b->ptr == NULL && b->size == 0, "the freed buffer still points at %p", b->ptr);
}

static void test_secure_buffers(void) {
    const size_t H = DSI_HUGE_PAGE_BYTES, size = 4 * H + 12345;
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096, want_len = (size + page - 1) / page * page;
    int thp = thp_mode();
    dsi_err e = {0};
    char flags[512];

    /* 3.1-3.4: asked for huge pages */
    dsi_secure_buf b;
    ds_status s = dsi_secure_alloc(&b, size, DSI_SECURE_HUGE, &e);
    T_STATUS("alloc-3.1", s, DS_OK, e.msg);
    if (s) return;
    T_CHECK("alloc-3.1", b.size == want_len, "mapped %zu bytes for %zu, want %zu", b.size, size, want_len);
    vm_flags(b.ptr, flags, sizeof flags);
#ifdef DSI_MADV_HUGE
    T_CHECK("alloc-3.1", (uintptr_t)b.ptr % H == 0, "%p is not 2 MiB aligned", b.ptr);
    if (thp >= 0)
        T_CHECK("alloc-3.1", b.huge && !b.huge_error && has_flag(flags, "hg"),
                "a THP kernel: huge %d, error %d (%s), VmFlags:%s", b.huge, b.huge_error, strerror(b.huge_error),
                flags);
    else
        T_CHECK("alloc-3.1", !b.huge && b.huge_error != 0, "no THP: huge %d, error %d", b.huge, b.huge_error);
#else
    (void)thp;   /* no transparent huge pages in this build (port.h): ordinary pages, and ENOSYS says why */
    T_CHECK("alloc-3.1", !b.huge && b.huge_error == ENOSYS, "no MADV_HUGEPAGE: huge %d, error %d", b.huge,
            b.huge_error);
#endif
#if DSI_LINUX
    T_CHECK("alloc-3.2", b.dontdump && has_flag(flags, "dd"), "dontdump %d, VmFlags:%s", b.dontdump, flags);
#elif defined(DSI_MADV_NODUMP)
    T_CHECK("alloc-3.2", b.dontdump, "dontdump %d", b.dontdump);
#else
    T_CHECK("alloc-3.2", !b.dontdump, "dontdump %d without a core-dump exclusion call", b.dontdump);
#endif
    fill(&b);
    T_CHECK("alloc-3.2", mismatches(&b) == 0, "the buffer does not hold what was written");
    uint64_t hb = 0;
    const void *ptr[1] = {b.ptr};
    size_t len[1] = {b.size};
    bool measured = dsi_huge_bytes(ptr, len, 1, &hb);
    printf("INFO alloc-3.3: THP %s; %llu of %zu bytes in huge pages (AnonHugePages)%s\n",
           thp < 0 ? "absent" : thp ? "enabled" : "never", (unsigned long long)hb, b.size,
           measured ? "" : " (smaps unreadable)");
    T_CHECK("alloc-3.3", !measured || hb <= b.size, "%llu huge bytes in a %zu-byte buffer", (unsigned long long)hb,
            b.size);
    if (thp == 1 && b.huge && measured && hb == 0)
        T_SKIP("alloc-3.3", "the kernel gave no huge page on touch (fragmented memory?)");
    else if (thp == 1 && b.huge)
        T_CHECK("alloc-3.3", measured && hb >= 2 * H, "%llu bytes in huge pages, want >= %zu",
                (unsigned long long)hb, 2 * H);
    else
        T_SKIP("alloc-3.3", "transparent huge pages absent or never");
    free_checked("alloc-3.4", &b);

    /* 3.5: the off switch */
    s = dsi_secure_alloc(&b, size, 0, &e);
    T_STATUS("alloc-3.5", s, DS_OK, e.msg);
    if (s) return;
    vm_flags(b.ptr, flags, sizeof flags);
    T_CHECK("alloc-3.5", (uintptr_t)b.ptr % page == 0 && b.size == want_len && !b.huge && !b.huge_error,
            "%p+%zu huge %d error %d", b.ptr, b.size, b.huge, b.huge_error);
#if DSI_LINUX
    T_CHECK("alloc-3.5", b.dontdump && has_flag(flags, "dd") && !has_flag(flags, "hg"), "dontdump %d, VmFlags:%s",
            b.dontdump, flags);
#elif defined(DSI_MADV_NODUMP)
    T_CHECK("alloc-3.5", b.dontdump, "dontdump %d", b.dontdump);
#else
    T_CHECK("alloc-3.5", !b.dontdump, "dontdump %d without a core-dump exclusion call", b.dontdump);
#endif
    fill(&b);
    T_CHECK("alloc-3.5", mismatches(&b) == 0, "the buffer does not hold what was written");
    free_checked("alloc-3.5", &b);

    /* 3.6: small */
    s = dsi_secure_alloc(&b, H - page, DSI_SECURE_HUGE, &e);
    T_STATUS("alloc-3.6", s, DS_OK, e.msg);
    if (s) return;
    vm_flags(b.ptr, flags, sizeof flags);
    T_CHECK("alloc-3.6", b.size == H - page && !b.huge && !b.huge_error && !has_flag(flags, "hg"),
            "%zu bytes: huge %d error %d VmFlags:%s", b.size, b.huge, b.huge_error, flags);
    fill(&b);
    T_CHECK("alloc-3.6", mismatches(&b) == 0, "the buffer does not hold what was written");
    free_checked("alloc-3.6", &b);
}

static const ds_allocator failing = {f_malloc, f_realloc, f_free, NULL};

int main(void) {
    test_secure_buffers();
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

    /* 4: a LoRA adapter (routed experts, shared experts, the dense MLP)
     * opened over the model, applied and evaluated: the allocations after
     * the model's open fail in turn */
    char dsa[512];
    snprintf(dsa, sizeof dsa, "/tmp/ds-test-alloc-%d.dsa", (int)getpid());
    ds_model *m = NULL;
    fail_at = -1;
    ds_convert_lora_params lp = ds_convert_lora_default_params();
    lp.key = key;
    lp.key_len = 32;
    lp.overwrite = 1;
    if (ds_model_open(&m, out, &mp) || ds_convert_lora("tests/ref/lora/v2lite_experts", m, dsa, &lp)) {
        T_SKIP("alloc-4", ds_last_error());
    } else {
        ds_adapter_params ap = ds_adapter_default_params();
        ap.key = key;
        ap.key_len = 32;
        long base_live = live, base_count = count;
        int32_t tok[4] = {0, 70, 263, 265};
        runs = bad = leaks = 0;
        for (fail_at = base_count;; fail_at++) {
            count = base_count;
            ds_adapter *a = NULL;
            ds_context *c = NULL;
            ds_status s = ds_adapter_open(&a, m, dsa, &ap);
            if (!s) s = ds_context_new(&c, m, NULL);
            if (!s) s = ds_context_set_adapters(c, &a, NULL, 1);
            if (!s) s = ds_context_eval(c, tok, 4, NULL, 0);
            runs++;
            ds_context_free(c);
            if (ds_adapter_close(a) != DS_OK && !bad++) snprintf(first, sizeof first, "close refused");
            if (live != base_live) leaks++;
            if (s == DS_OK) break;
            if (s != DS_ERR_NOMEM || !*ds_last_error())
                if (!bad++) snprintf(first, sizeof first, "N=%ld: status %d: %s", fail_at, s, ds_last_error());
            if (fail_at > base_count + 100000) break;
        }
        printf("INFO alloc-4: %ld runs, each failing allocation in turn\n", runs);
        T_CHECK("alloc-4.1", bad == 0, "%ld of %ld failing runs misreported; first %s", bad, runs, first);
        T_CHECK("alloc-4.2", leaks == 0, "%ld runs leaked allocations", leaks);
        T_CHECK("alloc-4.3", runs > 10 && fail_at <= base_count + 100000, "never succeeded (%ld runs)", runs);
    }
    fail_at = -1;
    ds_model_close(m);
    unlink(dsa);

    /* 5: the LoRA converter and merge, which allocate through the base's
     * allocator (the base itself opened without failures) */
    char peft[600], aout[600], mout[600];
    snprintf(peft, sizeof peft, "%s/peft/good/adapter_config.json", td);
    snprintf(aout, sizeof aout, "/tmp/ds-test-alloc-%d.dsa", (int)getpid());
    snprintf(mout, sizeof mout, "/tmp/ds-test-alloc-%d-merged.dsm", (int)getpid());
    ds_model *mb = NULL;
    fail_at = -1;
    if (access(peft, R_OK) != 0) {
        T_SKIP("alloc-5", "no PEFT fixtures ($DS_TESTDATA/peft)");
    } else if (ds_model_open(&mb, out, &mp) != DS_OK) {
        T_CHECK("alloc-5.0", 0, "base: %s", ds_last_error());
    } else {
        snprintf(peft, sizeof peft, "%s/peft/good", td);
        ds_convert_lora_params lp5 = ds_convert_lora_default_params();
        lp5.key = key;
        lp5.key_len = 32;
        for (int which = 0; which < 2; which++) {
            ds_adapter *a = NULL;
            ds_adapter_params ap = ds_adapter_default_params();
            ap.key = key;
            ap.key_len = 32;
            fail_at = -1;
            if (which && ds_adapter_open(&a, mb, aout, &ap) != DS_OK) {
                T_CHECK("alloc-5.0", 0, "adapter: %s", ds_last_error());
                break;
            }
            runs = bad = leaks = 0;
            const char *o = which ? mout : aout;
            for (fail_at = 0;; fail_at++) {
                count = 0;
                long live0 = live;
                ds_status s = which ? ds_lora_merge(a, 1.0f, o, &lp5) : ds_convert_lora(peft, mb, o, &lp5);
                runs++;
                if (live != live0) leaks++;
                if (s == DS_OK) break;
                if (s != DS_ERR_NOMEM || !*ds_last_error() || access(o, F_OK) == 0)
                    if (!bad++) snprintf(first, sizeof first, "N=%ld: status %d: %s", fail_at, s, ds_last_error());
                if (fail_at > 100000) break;
            }
            long last = fail_at;
            fail_at = -1;
            if (a) (void)ds_adapter_close(a);
            T_CHECK(which ? "alloc-5.4" : "alloc-5.1", bad == 0, "%ld of %ld failing runs misreported; first %s", bad,
                    runs, first);
            T_CHECK(which ? "alloc-5.5" : "alloc-5.2", leaks == 0, "%ld runs leaked allocations", leaks);
            T_CHECK(which ? "alloc-5.6" : "alloc-5.3", last < 100000 && runs > 5, "never succeeded (%ld runs)", runs);
        }
        ds_model_close(mb);
    }
    unlink(aout);
    unlink(mout);
    unlink(out);
    return t_finish("test_alloc");
}
