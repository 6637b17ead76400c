/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * model.c — ds_model_open and ds_model_close: the container (file.c), the
 * expert pager (pager.c) and the device the forward pass runs on (cpu.c or
 * cuda.c), chosen once here; the model's parameters and statistics.
 */
#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#if !DSI_WINDOWS
#include <sys/resource.h>
#endif

#include <sodium.h>

DS_API ds_model_params ds_model_default_params(void) {
    ds_model_params p;
    memset(&p, 0, sizeof p);
    p.load_weights = 1;
    p.prefetch = DS_PREFETCH_AUTO;
    p.evict_policy = DS_EVICT_LFU_DECAY;
    p.device = DS_DEVICE_CPU;
    p.huge_pages = 1;
    p.magic = DSI_MODEL_PARAMS_MAGIC;
    return p;
}

/* The checks that need no file: the struct came from
 * ds_model_default_params() (zero is not the default of load_weights,
 * prefetch or evict_policy, so a zeroed struct would quietly open a model
 * differently), and each enum field holds one of its values. */
static ds_status dsi_model_params_check(const ds_model_params *p, const char *fn, dsi_err *e) {
    if (dsi_params_check_magic(p->magic, DSI_MODEL_PARAMS_MAGIC, fn, "ds_model_params", "ds_model", e))
        return e->status;
    if ((unsigned)p->prefetch > DS_PREFETCH_ALWAYS)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "%s: prefetch is %d; want 0 (off), 1 (auto) or 2 (always)", fn,
                        (int)p->prefetch);
    if ((unsigned)p->evict_policy > DS_EVICT_LFU_DECAY)
        return dsi_fail(e, DS_ERR_INVALID_ARG,
                        "%s: evict_policy is %d; want 0 (DS_EVICT_LRU) or 1 (DS_EVICT_LFU_DECAY)", fn,
                        (int)p->evict_policy);
    if ((unsigned)p->device > DS_DEVICE_CUDA)
        return dsi_fail(e, DS_ERR_INVALID_ARG,
                        "%s: device is %d; want 0 (DS_DEVICE_CPU) or 1 (DS_DEVICE_CUDA)", fn, (int)p->device);
    return DS_OK;
}

DS_API const char *ds_model_errmsg(const ds_model *m) { return m ? m->err.msg : "no model"; }
DS_API const ds_tokenizer *ds_model_tokenizer(const ds_model *m) { return m ? m->tok : NULL; }
DS_API ds_device ds_model_device(const ds_model *m) { return m ? m->device : DS_DEVICE_CPU; }
DS_API const char *ds_model_device_name(const ds_model *m) {
    return !m ? "no model" : m->device_name[0] ? m->device_name : "cpu";
}

/* ==== Weights, pager, device ============================================= */
/* After the file is open: the device is chosen (a CUDA device that is asked
 * for but missing leaves the CPU, with a notice), the dense segments are
 * decrypted (the routed experts too when there is no expert cache and they
 * are not going straight to device memory), the weights bound, the expert
 * cache made, and the device sets up its per-model state. */
static ds_status dsi_model_weights(ds_model *m, const ds_model_params *p, dsi_err *e) {
    ds_status s = dsi_cuda_probe(m, p, e);
    if (s) return s;
    m->dev = m->device == DS_DEVICE_CUDA ? dsi_cuda_device() : dsi_cpu_device();
    if (!m->dev || m->dev->version != DSI_DEVICE_VERSION)
        return dsi_fail(e, DS_ERR_BACKEND, "the %s device's table has version %d; this library knows %d",
                        m->device == DS_DEVICE_CUDA ? "CUDA" : "CPU", m->dev ? m->dev->version : -1,
                        DSI_DEVICE_VERSION);
    /* with gpu_cache_bytes 0 every expert goes to device memory at open,
     * decrypted one at a time into staging: none stays on the host */
    bool experts_on_host = !(m->device == DS_DEVICE_CUDA && p->gpu_cache_bytes == 0);
    /* within a memory budget the ciphertext read at open leaves the page
     * cache as it is opened (file.c); a resident model leaves it cached, as
     * a program reading a file does: it is the OS's to reclaim, and a model
     * opened again soon (a restarted server) opens from memory */
    m->drop_read = p->expert_cache_bytes != 0 || !experts_on_host;
    if ((s = dsi_file_load_dense(m, p->expert_cache_bytes == 0 && experts_on_host, p, e))) return s;
    if (p->expert_cache_bytes &&
        (s = dsi_pager_new(m, p->expert_cache_bytes, p->page_cache_bytes, p->prefetch,
                           p->evict_policy, e)))
        return s;
    return m->dev->model_new(m, p, &m->dev_model, e);
}

/* The outcome of ds_model_params.mlock, in the log: what was locked, and
 * what the OS refused and why. */
static void dsi_model_mlock_report(const ds_model *m) {
    if (!m->mlock) return;
    if (!m->mlock_failed) {
        dsi_log(m->log, m->log_user, DS_LOG_INFO, "mlock: %llu bytes locked into RAM (keys, dense weights, expert cache)",
                (unsigned long long)m->mlock_locked);
        return;
    }
    char lim[64] = "unknown";
#if !DSI_WINDOWS
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY) snprintf(lim, sizeof lim, "unlimited");
        else snprintf(lim, sizeof lim, "%llu bytes", (unsigned long long)rl.rlim_cur);
    }
#endif
    dsi_log(m->log, m->log_user, DS_LOG_WARN,
            "mlock: %llu of %llu bytes could not be locked into RAM (%s; RLIMIT_MEMLOCK is %s): that plaintext may "
            "be written to swap",
            (unsigned long long)m->mlock_failed, (unsigned long long)(m->mlock_failed + m->mlock_locked),
            strerror(m->mlock_errno), lim);
}

/* The weight memory: the resident segments and the host expert cache. */
static int dsi_model_weight_ranges(const ds_model *m, const void *ptr[2], size_t len[2]) {
    int n = 0;
    if (m->dense_mem.ptr) {
        ptr[n] = m->dense_mem.ptr;
        len[n++] = m->dense_mem.size;
    }
    const dsi_secure_buf *cache = dsi_pager_mem(m->pager);
    if (cache && cache->ptr) {
        ptr[n] = cache->ptr;
        len[n++] = cache->size;
    }
    return n;
}

/* The outcome of ds_model_params.huge_pages, in the log (debug level: the
 * weights work either way). */
static void dsi_model_huge_report(const ds_model *m) {
    if (!m->huge_pages || !m->log) return;
    const void *ptr[2];
    size_t len[2];
    uint64_t huge = 0;
    bool measured = dsi_huge_bytes(ptr, len, dsi_model_weight_ranges(m, ptr, len), &huge);
    if (m->huge_refused)
        dsi_log(m->log, m->log_user, DS_LOG_DEBUG,
                "huge pages: refused for %llu bytes of weight memory (madvise MADV_HUGEPAGE: %s): ordinary pages",
                (unsigned long long)m->huge_refused, strerror(m->huge_errno));
    if (m->huge_advised) {
        char now[64] = "unknown";
        if (measured) snprintf(now, sizeof now, "%llu", (unsigned long long)huge);
        dsi_log(m->log, m->log_user, DS_LOG_DEBUG,
                "huge pages: asked for %llu bytes of weight memory; %s bytes in huge pages after open (AnonHugePages)",
                (unsigned long long)m->huge_advised, now);
    }
}

static void dsi_model_free(ds_model *m) {
    if (!m) return;
    if (m->dev) m->dev->model_free(m, m->dev_model);
    m->dev_model = NULL;
    dsi_pager_free(m);
    dsi_file_close(m);
    dsi_alloc al = m->al;
    sodium_memzero(m, sizeof *m);
    dsi_free(&al, m);
}

/* The open itself, whatever the source (out and the source checked; fn
 * names the public function in messages about params). */
static ds_status dsi_model_open_source(ds_model **out, const dsi_source *src, const ds_model_params *params,
                                       const char *fn) {
    dsi_err e = {0};
    *out = NULL;
    ds_model_params defaults = ds_model_default_params();
    const ds_model_params *p = params ? params : &defaults;
    if (dsi_model_params_check(p, fn, &e)) return dsi_publish(&e);
    dsi_alloc al;
    if (dsi_alloc_init(&al, &p->allocator, &e) || dsi_crypto_init(&e)) return dsi_publish(&e);
    ds_model *m = dsi_calloc(&al, 1, sizeof *m);
    if (!m) {
        dsi_fail(&e, DS_ERR_NOMEM, "out of memory");
        return dsi_publish(&e);
    }
    m->al = al;
    m->fd = -1;
    m->log = p->log;
    m->log_user = p->log_user;
    m->n_threads = p->n_threads > 0 ? p->n_threads : dsi_num_cpus();
    m->exact_act = p->exact_activations != 0;
    m->expert_cache_bytes = p->expert_cache_bytes;
    m->mlock = p->mlock != 0;
    m->huge_pages = p->huge_pages != 0;

    ds_status s = dsi_file_open(m, src, p, &e);
    if (s) goto fail;
    if (p->load_weights && (s = dsi_model_weights(m, p, &e))) goto fail;
    m->opened = true;
    dsi_model_mlock_report(m);
    dsi_model_huge_report(m);
    if (m->device == DS_DEVICE_CPU)
        snprintf(m->device_name, sizeof m->device_name, "cpu (%d threads, %s)", m->n_threads,
                 dsi_cpu_kernels_name());
    dsi_log(m->log, m->log_user, DS_LOG_INFO, "opened %s: %zu tensors in %zu segments, cipher %s (%s)", m->path,
            m->meta.n_tensors, m->meta.n_segments, ds_cipher_name((ds_cipher)m->hdr.cipher),
            dsi_crypto_provider(m->keys));
    *out = m;
    return DS_OK;
fail:
    dsi_prefix(&e, "%s", src->name);
    dsi_model_free(m);
    return dsi_publish(&e);
}

DS_API ds_status ds_model_open(ds_model **out, const char *path, const ds_model_params *params) {
    dsi_err e = {0};
    if (!out || !path) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_open: out and path must not be NULL");
        return dsi_publish(&e);
    }
    dsi_source src = {DSI_SOURCE_PATH, path, -1, NULL};
    return dsi_model_open_source(out, &src, params, "ds_model_open");
}

DS_API ds_status ds_model_open_fd(ds_model **out, int fd, const ds_model_params *params) {
    dsi_err e = {0};
    if (out) *out = NULL;
    if (!out || fd < 0) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_open_fd: %s", !out ? "out must not be NULL"
                                                                    : "fd is negative; want an open, readable descriptor");
        return dsi_publish(&e);
    }
    char name[32];
    snprintf(name, sizeof name, "<fd %d>", fd);
    dsi_source src = {DSI_SOURCE_FD, name, fd, NULL};
    return dsi_model_open_source(out, &src, params, "ds_model_open_fd");
}

DS_API ds_status ds_model_open_io(ds_model **out, const ds_model_io *io, const ds_model_params *params) {
    dsi_err e = {0};
    if (out) *out = NULL;
    if (!out || !io || !io->read_at || !io->size) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_open_io: %s",
                 !out ? "out must not be NULL" : !io ? "io must not be NULL"
                 : !io->read_at ? "io->read_at must not be NULL"
                                : "io->size is 0; want the container's size in bytes");
        return dsi_publish(&e);
    }
    dsi_source src = {DSI_SOURCE_IO, io->name && io->name[0] ? io->name : "<io>", -1, io};
    return dsi_model_open_source(out, &src, params, "ds_model_open_io");
}

DS_API ds_status ds_model_close(ds_model *m) {
    dsi_err e = {0};
    if (!m) return DS_OK;
    int live = __atomic_load_n(&m->n_contexts, __ATOMIC_ACQUIRE);
    if (live > 0) {
        dsi_fail(&e, DS_ERR_MISUSE, "ds_model_close: %d context(s) still use this model; free them first", live);
        memcpy(&m->err, &e, sizeof e);
        return dsi_publish(&e);
    }
    int adapters = __atomic_load_n(&m->n_adapters, __ATOMIC_ACQUIRE);
    if (adapters > 0) {
        dsi_fail(&e, DS_ERR_MISUSE, "ds_model_close: %d LoRA adapter(s) are still open over this model; close them "
                                    "first", adapters);
        memcpy(&m->err, &e, sizeof e);
        return dsi_publish(&e);
    }
    dsi_model_free(m);
    return DS_OK;
}

/* ==== Statistics ========================================================= */
DS_API ds_status ds_model_cache_stats(const ds_model *m, ds_cache_stats *out) {
    dsi_err e = {0};
    if (!m || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_cache_stats: NULL argument");
        return dsi_publish(&e);
    }
    dsi_pager_stats(m, out, false);
    return DS_OK;
}

DS_API ds_status ds_model_gpu_cache_stats(const ds_model *m, ds_cache_stats *out) {
    dsi_err e = {0};
    if (!m || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_gpu_cache_stats: NULL argument");
        return dsi_publish(&e);
    }
    memset(out, 0, sizeof *out);
    if (m->dev) m->dev->cache_stats(m, out, false);
    return DS_OK;
}

DS_API void ds_model_cache_stats_reset(ds_model *m) {
    if (!m) return;
    if (m->dev) m->dev->cache_stats(m, NULL, true);
    dsi_pager_stats(m, NULL, true);
}

DS_API ds_status ds_model_mlock_info(const ds_model *m, ds_mlock_info *out) {
    dsi_err e = {0};
    if (!m || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_mlock_info: NULL argument");
        return dsi_publish(&e);
    }
    memset(out, 0, sizeof *out);
    out->requested = m->mlock;
    out->locked_bytes = m->mlock_locked;
    out->refused_bytes = m->mlock_failed;
    out->error = m->mlock_errno;
    return DS_OK;
}

DS_API ds_status ds_model_huge_page_info(const ds_model *m, ds_huge_page_info *out) {
    dsi_err e = {0};
    if (!m || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_huge_page_info: NULL argument");
        return dsi_publish(&e);
    }
    memset(out, 0, sizeof *out);
    out->requested = m->huge_pages;
    out->advised_bytes = m->huge_advised;
    out->refused_bytes = m->huge_refused;
    out->error = m->huge_errno;
    const void *ptr[2];
    size_t len[2];
    out->measured = dsi_huge_bytes(ptr, len, dsi_model_weight_ranges(m, ptr, len), &out->huge_bytes);
    return DS_OK;
}
