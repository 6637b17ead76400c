/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * file.c — an opened container: open it, check the header, derive the keys,
 * authenticate the metadata, check the directories against the architecture,
 * decrypt the dense segments and bind the weights; segment reads (preadv,
 * never through a mapping) and page-cache hints for the layers above (pager,
 * devices); the model's read-only queries and verify. ds_model_open
 * (model.c) drives it.
 */
#include "engine.h"
#include "tokenizer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* ==== Names ============================================================== */
DS_API const char *ds_cipher_name(ds_cipher c) {
    switch (c) {
    case DS_CIPHER_NONE: return "none (integrity only)";
    case DS_CIPHER_AES256GCM: return "AES-256-GCM";
    }
    return "unknown";
}

/* Records a failure on the handle and as the thread's last error. */
static ds_status dsi_model_fail(const ds_model *m, const dsi_err *e) {
    if (m) memcpy(&((ds_model *)m)->err, e, sizeof *e);
    return dsi_publish(e);
}

/* ==== Public header ====================================================== */
static ds_status dsi_read_exact(int fd, uint8_t *buf, size_t n, uint64_t off, size_t *got) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, buf + done, n - done, (dsi_off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return DS_ERR_IO;
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return DS_OK;
}

DS_API ds_status ds_file_info_read(const char *path, ds_file_info *out) {
    dsi_err e = {0};
    if (!path || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_file_info_read: path or out is NULL");
        return dsi_publish(&e);
    }
    memset(out, 0, sizeof *out);
    dsi_file_id id;
    int fd = dsi_open_regular(path, &id, &e);
    if (fd < 0) {
        dsi_prefix(&e, "%s", path);
        return dsi_publish(&e);
    }
    uint8_t buf[DSI_HEADER_AREA];
    size_t got = 0;
    dsi_header h;
    ds_status s;
    /* no key here: the header's MAC cannot be checked (ds_model_open does) */
    if (dsi_read_exact(fd, buf, sizeof buf, 0, &got)) {
        s = dsi_fail(&e, DS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    } else if ((s = dsi_header_parse(buf, got, &h, &e)) != DS_OK || (s = dsi_header_check(&h, &e)) != DS_OK) {
        dsi_prefix(&e, "%s", path);
    } else if (id.size < h.file_bytes) {
        s = dsi_fail(&e, DS_ERR_TRUNCATED, "%s: truncated: %llu of %llu bytes", path, (unsigned long long)id.size,
                     (unsigned long long)h.file_bytes);
    } else {
        out->format_version = h.version;
        out->cipher = (ds_cipher)h.cipher;
        out->kdf = (ds_kdf)h.kdf;
        out->chunk_bytes = h.chunk_bytes;
        out->file_bytes = h.file_bytes;
        out->meta_offset = h.meta_offset;
        out->meta_bytes = h.meta_bytes;
        out->argon_opslimit = h.argon_ops;
        out->argon_memlimit = h.argon_mem;
    }
    close(fd);
    return s ? dsi_publish(&e) : DS_OK;
}

/* ==== Reads of the file ================================================== */
/*
 * The file is read with preadv(), never through a mapping: a byte of a
 * mapping that the file no longer has (truncated, or rewritten shorter by
 * cp while the model runs) kills the process with SIGBUS, and a paged model
 * reads experts for as long as it runs. A chunk's ciphertext is read into
 * the place its plaintext goes and opened there (the crypto layer opens in
 * place), so no buffer is needed besides the destination.
 */
DSI_DATA ssize_t (*dsi_file_read_hook)(int fd, const struct iovec *iov, int iovcnt, dsi_off_t off);

/* Reads iov[0..n) at off until done, the end of the file or an error.
 * Returns the bytes read; *err is 0 or the errno of the failed read. The
 * iovecs are consumed. */
static uint64_t dsi_preadv_full(int fd, struct iovec *iov, int n, uint64_t off, int *err) {
    uint64_t done = 0;
    *err = 0;
    while (n > 0) {
        if (!iov->iov_len) {
            iov++;
            n--;
            continue;
        }
        ssize_t (*hook)(int, const struct iovec *, int, dsi_off_t) =
            __atomic_load_n(&dsi_file_read_hook, __ATOMIC_ACQUIRE);
        ssize_t r = hook ? hook(fd, iov, n, (dsi_off_t)(off + done)) : dsi_preadv(fd, iov, n, (dsi_off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            *err = errno ? errno : EIO;
            break;
        }
        if (r == 0) break;
        done += (uint64_t)r;
        for (size_t k = (size_t)r; k;) {   /* past what was read */
            size_t t = k < iov->iov_len ? k : iov->iov_len;
            iov->iov_base = (uint8_t *)iov->iov_base + t;
            iov->iov_len -= t;
            k -= t;
            if (!iov->iov_len) {
                iov++;
                n--;
            }
        }
    }
    return done;
}

/* The app's read callback (DSI_SOURCE_IO), as dsi_preadv_full reads a
 * descriptor: iov[0..n) at off until done, the end of the data (the callback
 * returns 0) or a failure (a negative return, or more bytes than asked for),
 * which why describes. Returns the bytes read; the iovecs are consumed. */
static uint64_t dsi_io_read(const ds_model_io *io, struct iovec *iov, int n, uint64_t off, char *why, size_t wl) {
    uint64_t done = 0;
    for (int i = 0; i < n; i++) {
        while (iov[i].iov_len) {
            size_t want = iov[i].iov_len;
            int64_t r = io->read_at(io->user, iov[i].iov_base, want, off + done);
            if (r == 0) return done;
            if (r < 0) {
                /* -errno names its error; -1 (or anything past the errno
                 * range) is an unnamed failure */
                if (r < -1 && r >= -4095)
                    snprintf(why, wl, "the read callback failed: %s (it returned %lld)", strerror((int)-r), (long long)r);
                else
                    snprintf(why, wl, "the read callback failed (it returned %lld)", (long long)r);
                return done;
            }
            if ((uint64_t)r > want) {
                snprintf(why, wl, "the read callback returned %lld bytes for a read of %zu", (long long)r, want);
                return done;
            }
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + r;
            iov[i].iov_len -= (size_t)r;
            done += (uint64_t)r;
        }
    }
    return done;
}

/* Every read of the container: iov[0..n) at off from m's source until done,
 * the end of the data or a failure. Returns the bytes read; why is "" or
 * says what failed (the errno's text for a descriptor). The iovecs are
 * consumed. */
static uint64_t dsi_source_read(const ds_model *m, struct iovec *iov, int n, uint64_t off, char *why, size_t wl) {
    why[0] = 0;
    if (m->src == DSI_SOURCE_IO) return dsi_io_read(&m->io, iov, n, off, why, wl);
    int err = 0;
    uint64_t got = dsi_preadv_full(m->fd, iov, n, off, &err);
    if (err) snprintf(why, wl, "%s", strerror(err));
    return got;
}

/* Whether the file differs from what was opened (size or modification
 * time); its size now in *size (0 when fstat fails). A callback source has
 * no file to ask: never changed. */
static bool dsi_file_changed(const ds_model *m, uint64_t *size) {
    struct stat st;
    *size = 0;
    if (m->src == DSI_SOURCE_IO || fstat(m->fd, &st) != 0) return false;
    *size = (uint64_t)st.st_size;
    int64_t sec, nsec;
    dsi_stat_mtime(&st, &sec, &nsec);
    return *size != m->open_size || sec != m->open_mtime_sec || nsec != m->open_mtime_nsec;
}

/* "segment 37 (layer 3 expert 5)", or "the metadata". */
static void dsi_read_what(const ds_model *m, uint32_t seg, char *buf, size_t len) {
    if (seg >= m->meta.n_segments) {
        snprintf(buf, len, "the metadata");
        return;
    }
    char name[64];
    dsi_segment_describe(&m->meta.segments[seg], m->cfg.n_layers, name, sizeof name);
    snprintf(buf, len, "segment %u (%s)", seg, name);
}

/* After ds_model_open, messages start with the file's name (during the
 * open, ds_model_open adds it). */
static ds_status dsi_name_file(const ds_model *m, dsi_err *e) {
    return m->opened ? dsi_prefix(e, "%s", m->path) : e->status;
}

/* Reads a (na bytes) then b (nb bytes) from the file at off, part of segment
 * seg (DSI_META_SEGMENT: the metadata), for the message. A short read or a
 * failed one is an error naming the file, the segment and the offset. */
static ds_status dsi_file_read(const ds_model *m, void *a, size_t na, void *b, size_t nb, uint64_t off, uint32_t seg,
                               dsi_err *e) {
    struct iovec iov[2] = {{a, na}, {b, nb}};
    char why[160];
    uint64_t want = (uint64_t)na + nb, got = dsi_source_read(m, iov, 2, off, why, sizeof why);
    if (got == want) return DS_OK;
    char what[96];
    dsi_read_what(m, seg, what, sizeof what);
    if (m->src == DSI_SOURCE_IO) {   /* no file to stat: the callback's word */
        if (why[0])
            dsi_fail(e, DS_ERR_IO, "cannot read %s (%llu bytes at offset %llu): %s", what, (unsigned long long)want,
                     (unsigned long long)off, why);
        else
            dsi_fail(e, DS_ERR_TRUNCATED,
                     "short read of %s: %llu of %llu bytes at offset %llu (the read callback returned 0, the end of "
                     "the data, inside the %llu bytes the source was opened with)",
                     what, (unsigned long long)got, (unsigned long long)want, (unsigned long long)off,
                     (unsigned long long)m->open_size);
        return dsi_name_file(m, e);
    }
    uint64_t now = 0;
    bool changed = dsi_file_changed(m, &now);
    if (why[0])
        dsi_fail(e, DS_ERR_IO, "cannot read %s (%llu bytes at offset %llu): %s%s", what, (unsigned long long)want,
                 (unsigned long long)off, why, changed ? "; the model file changed since it was opened" : "");
    else if (now < off + want)
        dsi_fail(e, DS_ERR_TRUNCATED,
                 "model file changed or truncated since it was opened: %s lies past the end of the file (bytes %llu "
                 "to %llu wanted; the file has %llu bytes now, %llu at open)",
                 what, (unsigned long long)off, (unsigned long long)(off + want), (unsigned long long)now,
                 (unsigned long long)m->open_size);
    else
        dsi_fail(e, DS_ERR_TRUNCATED, "short read of %s: %llu of %llu bytes at offset %llu (the file has %llu)%s", what,
                 (unsigned long long)got, (unsigned long long)want, (unsigned long long)off, (unsigned long long)now,
                 changed ? "; the model file changed since it was opened" : "");
    return dsi_name_file(m, e);
}

/* ==== Page cache ========================================================= */
static uint64_t dsi_page_bytes(void) {
    long pg = sysconf(_SC_PAGESIZE);
    return pg > 0 ? (uint64_t)pg : 4096;
}

/* With m->drop_read: asks the OS to drop the file's pages over [off, end),
 * read and opened just now, from the page cache. Reads go front to back, so
 * off is rounded down to its page (what an earlier window or segment left of
 * that page is done). end is rounded up only where nothing after it can share
 * its page: never inside a segment (the next window starts in that page, and
 * drops it when done), and at a segment's end (seg_end) only when the next
 * segment, which starts on a DSI_SEG_ALIGN boundary, cannot start inside it
 * (always with 4 KiB pages; with larger pages the page is left for the next
 * segment's read to drop). A page dropped too early would only be read
 * again. Dirty pages (a file just written) stay until written back. */
static void dsi_file_drop_read(const ds_model *m, uint64_t off, uint64_t end, bool seg_end) {
    if (!m->drop_read || end <= off) return;
    uint64_t page = dsi_page_bytes();
    uint64_t a = off / page * page, b = end / page * page;
    if (seg_end && end % page) {
        uint64_t next = (end + DSI_SEG_ALIGN - 1) / DSI_SEG_ALIGN * DSI_SEG_ALIGN;
        if (next % page == 0) b += page;
    }
    if (b > a) dsi_file_release(m, a, b - a);   /* a callback source: its release */
}

/* ==== Segments =========================================================== */
/* Opens chunk c of segment seg into out (its plaintext length). Every chunk
 * but the last is full, so chunk c starts at c * (chunk_bytes + tag). */
static ds_status dsi_open_chunk_at(const ds_model *m, uint32_t seg, uint32_t c, uint8_t *out, dsi_err *e) {
    const dsi_segment *s = &m->meta.segments[seg];
    uint32_t cb = m->hdr.chunk_bytes;
    uint64_t done = (uint64_t)c * cb;
    size_t n = (size_t)(s->plain_bytes - done < cb ? s->plain_bytes - done : cb);
    dsi_chunk_ad ad = {seg, s->kind, s->layer, s->expert, c, s->plain_bytes, c + 1 == s->n_chunks, NULL, 0};
    uint8_t tag[DSI_TAG_BYTES];
    ds_status st = dsi_file_read(m, out, n, tag, sizeof tag, s->offset + (uint64_t)c * ((uint64_t)cb + DSI_TAG_BYTES),
                                 seg, e);
    if (st) return st;   /* the message names the file and the segment */
    st = dsi_chunk_open(m->keys, &ad, out, out, n, tag, e);
    if (st) {
        char what[96];
        uint64_t now = 0;
        dsi_read_what(m, seg, what, sizeof what);
        dsi_prefix(e, "%s", what);
        if (dsi_file_changed(m, &now)) {
            if (now == m->open_size) dsi_prefix(e, "model file changed since it was opened (rewritten in place)");
            else
                dsi_prefix(e, "model file changed since it was opened (%llu bytes now, %llu at open)",
                           (unsigned long long)now, (unsigned long long)m->open_size);
        }
        dsi_name_file(m, e);
    }
    return st;
}

DSI_FUNC ds_status dsi_segment_read_chunks(const ds_model *m, uint32_t seg, uint8_t *dst, uint32_t c0, uint32_t c1,
                                           dsi_err *e) {
    for (uint32_t c = c0; c < c1; c++) {
        ds_status st = dsi_open_chunk_at(m, seg, c, dst + (uint64_t)c * m->hdr.chunk_bytes, e);
        if (st) return st;
    }
    return DS_OK;
}

DSI_FUNC ds_status dsi_segment_read(const ds_model *m, uint32_t seg, uint8_t *dst, size_t dst_len, dsi_err *e) {
    if (seg >= m->meta.n_segments) return dsi_fail(e, DS_ERR_INVALID_ARG, "segment %u does not exist", seg);
    const dsi_segment *s = &m->meta.segments[seg];
    if (dst && dst_len < s->plain_bytes)
        return dsi_fail(e, DS_ERR_INVALID_ARG, "buffer of %zu bytes for a segment of %llu", dst_len,
                        (unsigned long long)s->plain_bytes);
    uint32_t cb = m->hdr.chunk_bytes;
    uint8_t *scratch = NULL;
    if (!dst) {
        /* authenticate-only still has to read and open somewhere: one chunk of scratch */
        scratch = dsi_malloc(&m->al, cb);
        if (!scratch) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for a %u-byte chunk", cb);
    }
    ds_status st = DS_OK;
    /* within a memory budget, each window's ciphertext leaves the page
     * cache once opened, so reading the dense part at open never holds more
     * than a window of it beside its plaintext; not when the segment was in
     * memory already (tmpfs, or cached for someone else) */
    bool drop = m->drop_read && !dsi_file_in_memory(m, s->offset, s->stored_bytes);
    /* windows of 8 chunks, each asked for ahead in large reads */
    const uint32_t win = 8;
    uint64_t stride = (uint64_t)cb + DSI_TAG_BYTES;
    for (uint32_t c0 = 0; c0 < s->n_chunks && !st; c0 += win) {
        uint32_t c1 = c0 + win < s->n_chunks ? c0 + win : s->n_chunks;
        uint64_t w0 = s->offset + (uint64_t)c0 * stride;
        uint64_t w1 = c1 == s->n_chunks ? s->offset + s->stored_bytes : s->offset + (uint64_t)c1 * stride;
        dsi_file_willneed(m, w0, w1 - w0);
        for (uint32_t c = c0; c < c1 && !st; c++)
            st = dsi_open_chunk_at(m, seg, c, dst ? dst + (uint64_t)c * cb : scratch, e);
        if (drop) dsi_file_drop_read(m, w0, w1, c1 == s->n_chunks);
    }
    if (st && dst) sodium_memzero(dst, s->plain_bytes);   /* no half-authenticated plaintext */
    if (scratch) {
        sodium_memzero(scratch, cb);
        dsi_free(&m->al, scratch);
    }
    return st;
}

DSI_FUNC long dsi_model_find_segment(const ds_model *m, uint32_t kind, int layer, int expert) {
    /* Expert segments of a layer are contiguous and ordered by expert index in
     * files we write, but do not rely on it: a binary search would need that
     * guarantee checked at open, so scan (only used off the hot path). */
    for (size_t i = 0; i < m->meta.n_segments; i++) {
        const dsi_segment *s = &m->meta.segments[i];
        if (s->kind == kind && s->layer == layer && s->expert == expert) return (long)i;
    }
    return -1;
}

DSI_FUNC ds_status dsi_model_read_expert(const ds_model *m, int layer, int expert, uint8_t *dst, size_t dst_len,
                                         uint32_t *seg, dsi_err *e) {
    long i = dsi_model_find_segment(m, DS_SEGMENT_EXPERT, layer, expert);
    if (i < 0) return dsi_fail(e, DS_ERR_INVALID_ARG, "no routed expert %d in layer %d", expert, layer);
    if (seg) *seg = (uint32_t)i;
    return dsi_segment_read(m, (uint32_t)i, dst, dst_len, e);
}

DSI_FUNC const uint8_t *dsi_model_tensor_data(const ds_model *m, size_t index) {
    if (index >= m->meta.n_tensors || !m->weights_loaded) return NULL;
    const dsi_tensor *t = &m->meta.tensors[index];
    const dsi_secure_buf *b = &m->dense[t->segment];
    if (!b->ptr) return NULL;
    return (const uint8_t *)b->ptr + t->offset;
}

/* ==== Directory checks =================================================== */
/* Tensor names sorted once for lookups (and to refuse duplicates). */
static int dsi_cmp_tensor_index(const void *a, const void *b) {
    const dsi_tensor *x = *(const dsi_tensor *const *)a, *y = *(const dsi_tensor *const *)b;
    return strcmp(x->name, y->name);
}



static ds_status dsi_check_directory(ds_model *m, dsi_err *e) {
    size_t n = m->meta.n_tensors;
    m->sorted = dsi_calloc(&m->al, n, sizeof *m->sorted);
    if (!m->sorted) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for the tensor index");
    for (size_t i = 0; i < n; i++) m->sorted[i] = &m->meta.tensors[i];
    qsort(m->sorted, n, sizeof *m->sorted, dsi_cmp_tensor_index);
    for (size_t i = 1; i < n; i++)
        if (strcmp(m->sorted[i - 1]->name, m->sorted[i]->name) == 0)
            return dsi_fail(e, DS_ERR_CORRUPT, "tensor directory lists %s twice", m->sorted[i]->name);

    /* Every tensor the architecture needs is there, with its shape, in the
     * segment it belongs to. */
    dsi_model_file f = dsi_model_file_of(m);
    dsi_tensor_spec *specs = NULL;
    size_t ns = 0;
    ds_status s = dsi_arch_tensor_specs(&m->cfg, &m->al, &specs, &ns, e);
    if (s) return s;
    dsi_drop_specs(f.drop, specs, &ns);   /* dropped experts have no tensors; their routers fewer rows */
    for (size_t i = 0; i < ns && !s; i++) {
        const dsi_tensor_spec *sp = &specs[i];
        const dsi_tensor *t = dsi_file_tensor(&f, sp->name, NULL);
        if (!t) {
            s = dsi_fail(e, DS_ERR_MISSING_TENSOR, "tensor %s is missing from the container", sp->name);
            break;
        }
        const dsi_segment *sg = &m->meta.segments[t->segment];
        bool shape_ok = (int)t->n_dims == sp->n_dims;
        for (int d = 0; shape_ok && d < sp->n_dims; d++) shape_ok = t->dims[d] == sp->dims[d];
        if (!shape_ok)
            s = dsi_fail(e, DS_ERR_SHAPE, "tensor %s: expected %llux%llu, got %llux%llu", sp->name,
                         (unsigned long long)sp->dims[0], (unsigned long long)(sp->n_dims > 1 ? sp->dims[1] : 1),
                         (unsigned long long)t->dims[0], (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 1));
        else if (sp->keep_f32 && t->dtype != DS_DTYPE_F32)
            s = dsi_fail(e, DS_ERR_SHAPE, "tensor %s: expected F32, got %s", sp->name, ds_dtype_name(t->dtype));
        else if (sg->kind != sp->seg_kind || sg->layer != sp->layer || sg->expert != sp->expert)
            s = dsi_fail(e, DS_ERR_CORRUPT, "tensor %s is stored in the wrong segment", sp->name);
    }
    dsi_free(&m->al, specs);
    return s;
}

/* ==== Open and close ===================================================== */
/* The header's MAC, compared with the stored one. The fuzzing build skips
 * the comparison (as it skips chunk tags) so that inputs reach the checks
 * behind it. */
static ds_status dsi_header_authenticate(const dsi_header *h, const dsi_keys *k, dsi_err *e) {
    uint8_t mac[32];
    dsi_header_mac(h->raw, k->header, mac);
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    if (sodium_memcmp(mac, h->mac, 32) != 0)
        return dsi_fail(e, DS_ERR_AUTH, "header modified: the header does not match its authentication code; a "
                                        "field was changed after the file was sealed");
#endif
    return DS_OK;
}

/* Keys, in the order the format documents: the plaintext policy, the key
 * derivation (its parameters were checked against the caps when the header
 * was parsed), the key check, then the header's MAC. */
static ds_status dsi_model_keys(ds_model *m, const ds_model_params *p, dsi_err *e) {
    const dsi_header *h = &m->hdr;
    if (h->cipher == DS_CIPHER_NONE && (p->key || p->passphrase) && !p->allow_plaintext)
        return dsi_fail(e, DS_ERR_PLAINTEXT,
                        "this model file is not encrypted (plaintext: its integrity tags come from its public salt, "
                        "so anyone who can write the file could have made it) but a key was given; refusing it: set "
                        "allow_plaintext (ds: --allow-plaintext) to open a plaintext file anyway");
    ds_status s = dsi_secure_alloc(&m->keybuf, sizeof(dsi_keys), 0, e);
    if (s) return s;
    dsi_model_mlock(m, &m->keybuf);   /* before the keys are in it */
    m->keys = (dsi_keys *)m->keybuf.ptr;
    if (h->cipher == DS_CIPHER_NONE) {
        if ((s = dsi_keys_derive(m->keys, DS_CIPHER_NONE, NULL, 0, h->salt, e))) return s;
        return dsi_header_authenticate(h, m->keys, e);
    }

    uint8_t master[32];
    if (h->kdf == DS_KDF_ARGON2ID) {
        if (!p->passphrase)
            return dsi_fail(e, p->key ? DS_ERR_INVALID_ARG : DS_ERR_NEED_KEY,
                            "this model is sealed with a passphrase; pass it instead of a key");
        s = dsi_passphrase_key(master, p->passphrase, p->passphrase_len, h->argon_salt, h->argon_ops, h->argon_mem, e);
    } else {
        if (!p->key)
            return dsi_fail(e, p->passphrase ? DS_ERR_INVALID_ARG : DS_ERR_NEED_KEY,
                            "this model is encrypted; a %d-byte key is needed", DS_KEY_BYTES);
        if (p->key_len != DS_KEY_BYTES)
            return dsi_fail(e, DS_ERR_INVALID_ARG, "key must be %d bytes, got %zu", DS_KEY_BYTES, p->key_len);
        memcpy(master, p->key, 32);
    }
    if (!s) s = dsi_keys_derive(m->keys, (ds_cipher)h->cipher, master, 32, h->salt, e);
    sodium_memzero(master, sizeof master);
    if (s) return s;
    /* the check depends on the master key alone: with a raw key a mismatch
     * is a wrong key; with a passphrase it may also be an edit of the
     * Argon2id parameters or salt, which change the master key */
    if (sodium_memcmp(m->keys->check, h->key_check, 32) != 0)
        return h->kdf == DS_KDF_ARGON2ID
                   ? dsi_fail(e, DS_ERR_WRONG_KEY,
                              "wrong passphrase, or the header's key-derivation parameters (Argon2id salt, opslimit, "
                              "memlimit) were changed: the derived key does not match this model's key check")
                   : dsi_fail(e, DS_ERR_WRONG_KEY, "wrong key: it does not match this model's key check");
    return dsi_header_authenticate(h, m->keys, e);
}

#define DSI_WILLNEED_PIECE ((uint64_t)128 << 10)

/* Asks for [off, off + len) of the file in large asynchronous reads of
 * exactly that range, before it is read and decrypted (the reads themselves
 * are of one chunk each, and read-ahead is off: see dsi_file_open). */
DSI_FUNC void dsi_file_willneed(const ds_model *m, uint64_t off, uint64_t len) {
    uint64_t size = m->hdr.file_bytes;
    if (m->fd < 0 || off >= size) return;   /* a callback source reads when asked */
    if (len > size - off) len = size - off;
    uint64_t a = off & ~(uint64_t)(DSI_SEG_ALIGN - 1), end = off + len;
    /* Linux reads at most max(read-ahead window, largest device request)
     * per call (128 KiB to a few MiB) and ignores the rest, which would then
     * be read one chunk at a time: ask in pieces no larger */
    for (; a < end; a += DSI_WILLNEED_PIECE) {
        uint64_t n = end - a < DSI_WILLNEED_PIECE ? end - a : DSI_WILLNEED_PIECE;
#if DSI_HAVE_FADVISE
        (void)posix_fadvise(m->fd, (off_t)a, (off_t)n, POSIX_FADV_WILLNEED);
#else
        (void)n;   /* no read-ahead hint on this platform (port.h) */
#endif
    }
}

/* Whether [off, off + len) of the file is in memory already (the page cache,
 * or a file on tmpfs): true when 8 pages spread over it are all resident.
 * mincore() looks at the page cache through m->probe_map without touching a
 * page (no fault, so none past the end of a shrunk file). Linux (>= 5.2)
 * shows the page cache to mincore() only for a file the process owns or may
 * write; for others it reports only pages mapped here, which is none, and
 * the answer is false. */
#define DSI_IN_MEMORY_PROBES 8
DSI_FUNC bool dsi_file_in_memory(const ds_model *m, uint64_t off, uint64_t len) {
#if !DSI_HAVE_MINCORE
    (void)m; (void)off; (void)len;
    return false;   /* no residency probe on this platform (port.h) */
#else
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    uint64_t size = m->hdr.file_bytes;
    if (!m->probe_map || !len || off >= size) return false;
    if (len > size - off) len = size - off;
    for (int k = 0; k < DSI_IN_MEMORY_PROBES; k++) {
        uint64_t at = off + len / DSI_IN_MEMORY_PROBES * (uint64_t)k;
        uint64_t a = at & ~(uint64_t)(page - 1);
        /* one page, one byte of answer; room for more, because qemu-user
         * emulating a larger guest page (-p 65536 on a 4 KiB host) passes
         * the call through and gets one byte per host page */
        dsi_mincore_vec v[64] = {0};
        if (mincore((uint8_t *)m->probe_map + a, (size_t)page, v) != 0 || !(v[0] & 1)) return false;
    }
    return true;
#endif
}

/* After the pager has decrypted an expert: its ciphertext leaves the page
 * cache, or the app's storage layer is told it may let go of it. */
DSI_FUNC void dsi_file_release(const ds_model *m, uint64_t off, uint64_t len) {
    if (m->src == DSI_SOURCE_IO) {
        if (m->io.release) m->io.release(m->io.user, off, len);
        return;
    }
#if DSI_HAVE_FADVISE
    (void)posix_fadvise(m->fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
#endif   /* else the OS evicts the ciphertext when it likes (port.h) */
}

/* ==== Locked memory ====================================================== */
DSI_FUNC void dsi_model_mlock(ds_model *m, dsi_secure_buf *b) {
    if (!m->mlock || !b->ptr || b->locked) return;
    int err = dsi_secure_lock(b);
    if (!err) {
        m->mlock_locked += b->size;
        return;
    }
    m->mlock_failed += b->size;
    if (!m->mlock_errno) m->mlock_errno = err;
}

DSI_FUNC ds_status dsi_model_alloc(ds_model *m, dsi_secure_buf *b, size_t size, dsi_err *e) {
    ds_status s = dsi_secure_alloc(b, size, m->huge_pages ? DSI_SECURE_HUGE : 0, e);
    if (s) return s;
    if (b->huge) {
        m->huge_advised += b->size;
    } else if (b->huge_error) {
        m->huge_refused += b->size;
        if (!m->huge_errno) m->huge_errno = b->huge_error;
    }
    dsi_model_mlock(m, b);   /* before any plaintext is in it */
    return DS_OK;
}

static ds_status dsi_model_metadata(ds_model *m, dsi_err *e) {
    const dsi_header *h = &m->hdr;
    size_t n = (size_t)h->meta_plain_bytes;
    uint8_t *plain = dsi_malloc(&m->al, n);
    if (!plain) return dsi_fail(e, DS_ERR_NOMEM, "out of memory for %zu bytes of metadata", n);
    dsi_chunk_ad ad = {DSI_META_SEGMENT, 0, -1, -1, 0, h->meta_plain_bytes, 0, h->raw, DSI_HEADER_BYTES};
    uint64_t stored = 0;
    uint32_t nch = 0;
    dsi_stored_bytes(h->meta_plain_bytes, h->chunk_bytes, &stored, &nch);
    uint64_t at = h->meta_offset;
    bool drop = m->drop_read && !dsi_file_in_memory(m, h->meta_offset, stored);
    dsi_file_willneed(m, h->meta_offset, stored);
    for (uint32_t c = 0; c < nch; c++) {
        uint64_t done = (uint64_t)c * h->chunk_bytes;
        size_t len = (size_t)(n - done < h->chunk_bytes ? n - done : h->chunk_bytes);
        uint8_t tag[DSI_TAG_BYTES];
        ad.chunk = c;
        ad.last = c + 1 == nch;
        ds_status s = dsi_file_read(m, plain + done, len, tag, sizeof tag, at, DSI_META_SEGMENT, e);
        if (s) {
            sodium_memzero(plain, n);
            dsi_free(&m->al, plain);
            return s;
        }
        s = dsi_chunk_open(m->keys, &ad, plain + done, plain + done, len, tag, e);   /* in place */
        if (s) {
            sodium_memzero(plain, n);
            dsi_free(&m->al, plain);
            return dsi_fail(e, DS_ERR_AUTH, "metadata failed authentication: the header or metadata was modified or "
                                            "damaged");
        }
        at += len + DSI_TAG_BYTES;
    }
    if (drop) {
        dsi_file_drop_read(m, h->meta_offset, h->meta_offset + stored, true);
        dsi_file_drop_read(m, 0, DSI_HEADER_AREA, true);   /* the header's page(s), read before */
    }
    ds_status s = dsi_meta_parse(plain, n, h->file_bytes, h->chunk_bytes, h->meta_offset, &m->al, &m->meta, e);
    if (s) {
        sodium_memzero(plain, n);
        dsi_free(&m->al, plain);
        return dsi_prefix(e, "metadata");
    }
    m->meta.plain = plain;
    m->meta.plain_len = n;
    return DS_OK;
}

/* The resident segments' place in dense_mem: a page multiple (at least a
 * page, as a buffer of its own would have). */
static uint64_t dsi_dense_piece(const dsi_segment *s, uint64_t page) {
    uint64_t n = s->plain_bytes ? s->plain_bytes : 1;
    return (n + page - 1) / page * page;   /* plain_bytes was checked against the file's size */
}

DSI_FUNC uint64_t dsi_segment_held_bytes(const dsi_segment *s) { return dsi_dense_piece(s, dsi_page_bytes()); }

DSI_FUNC ds_status dsi_file_load_dense(ds_model *m, bool experts_too, const ds_model_params *p, dsi_err *e) {
    m->dense = dsi_calloc(&m->al, m->meta.n_segments, sizeof *m->dense);
    if (!m->dense) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t page = pg > 0 ? (uint64_t)pg : 4096;
    uint64_t total = 0, done = 0, bytes = 0, mem = 0;
    for (size_t i = 0; i < m->meta.n_segments; i++) {
        const dsi_segment *s = &m->meta.segments[i];
        if (s->kind == DS_SEGMENT_EXPERT && !experts_too) continue;   /* paged by the expert cache */
        total++;
        if (!dsi_add_u64(mem, dsi_dense_piece(s, page), &mem) || mem > SIZE_MAX)
            return dsi_fail(e, DS_ERR_NOMEM, "the resident segments' plaintext is too large for this address space");
    }
    /* One mapping for them all: a buffer per segment would leave each one's
     * last partial 2 MiB in small pages, and a segment under 2 MiB none at
     * all (norms, a small model's layers) */
    ds_status st = mem ? dsi_model_alloc(m, &m->dense_mem, (size_t)mem, e) : DS_OK;
    if (st) return dsi_prefix(e, "resident weights (%llu bytes)", (unsigned long long)mem);
    uint64_t at = 0;
    for (size_t i = 0; i < m->meta.n_segments; i++) {
        const dsi_segment *s = &m->meta.segments[i];
        if (s->kind == DS_SEGMENT_EXPERT && !experts_too) continue;
        dsi_secure_buf *b = &m->dense[i];
        b->ptr = (uint8_t *)m->dense_mem.ptr + at;
        b->size = (size_t)dsi_dense_piece(s, page);
        b->dontdump = m->dense_mem.dontdump;
        b->locked = m->dense_mem.locked;
        b->huge = m->dense_mem.huge;
        at += b->size;
        if ((st = dsi_segment_read(m, (uint32_t)i, b->ptr, b->size, e))) return st;
        bytes += s->plain_bytes;
        if (p->progress && p->progress(p->progress_user, ++done, total, bytes))
            return dsi_fail(e, DS_ERR_CANCELLED, "opening cancelled by the progress callback after %llu of %llu segments",
                            (unsigned long long)done, (unsigned long long)total);
    }
    m->weights_loaded = true;
    if (m->hdr.adapter) return DS_OK;   /* lora.c binds an adapter's matrices */
    dsi_model_file f = dsi_model_file_of(m);
    return dsi_arch_bind(&f, &m->cfg, &m->al, &m->w, e);
}

DSI_FUNC void dsi_file_close(ds_model *m) {
    dsi_arch_unbind(&m->w, m->cfg.n_layers, &m->al);
    ds_tokenizer_free(m->tok);
    m->tok = NULL;
    dsi_secure_free(&m->dense_mem);   /* wipes every resident segment */
    if (m->dense) {
        dsi_free(&m->al, m->dense);   /* views into dense_mem */
        m->dense = NULL;
    }
    dsi_free(&m->al, m->sorted);
    m->sorted = NULL;
    dsi_meta_free(&m->meta);
    dsi_drop_free(&m->drop, &m->al);
    m->has_drop = false;
    dsi_secure_free(&m->keybuf);
    if (m->probe_map) munmap(m->probe_map, (size_t)m->hdr.file_bytes);
    m->probe_map = NULL;
    if (m->fd >= 0) close(m->fd);
    m->fd = -1;
    dsi_free(&m->al, m->path);
    m->path = NULL;
}

/* ==== Open ================================================================ */
/* The source's side of an open: m->path (its name for messages), m->fd or
 * m->io, and what the source is now (*id: size; for a file its identity and
 * modification time). A path is opened here; the app's descriptor is checked
 * (open, readable, a regular file) and duplicated, so that the model owns
 * what it closes and the app may close its own whenever it likes; the
 * app's callbacks are copied. */
static ds_status dsi_source_open(ds_model *m, const dsi_source *src, dsi_file_id *id, dsi_err *e) {
    memset(id, 0, sizeof *id);
    if (!(m->path = dsi_strndup(&m->al, src->name, strlen(src->name)))) return dsi_fail(e, DS_ERR_NOMEM, "out of memory");
    m->src = src->kind;
    if (src->kind == DSI_SOURCE_IO) {
        m->io = *src->io;
        m->io.name = NULL;   /* not kept: m->path has it */
        id->size = m->io.size;
        return DS_OK;
    }
    if (src->kind == DSI_SOURCE_PATH) {
        /* a FIFO, a directory or a device is refused here, without blocking */
        m->fd = dsi_open_regular(src->name, id, e);
        return m->fd < 0 ? e->status : DS_OK;
    }
    int fl = fcntl(src->fd, F_GETFL);
    if (fl < 0)
        return dsi_fail(e, errno == EBADF ? DS_ERR_INVALID_ARG : DS_ERR_IO, "not an open descriptor: %s",
                        strerror(errno));
#ifdef O_PATH
    if ((fl & O_PATH) == O_PATH)
        return dsi_fail(e, DS_ERR_IO, "the descriptor was opened with O_PATH: it cannot be read");
#endif
    if ((fl & O_ACCMODE) == O_WRONLY)
        return dsi_fail(e, DS_ERR_IO, "the descriptor is not open for reading (it was opened write-only)");
    /* a FIFO, a socket, a directory or a device is refused, as for a path */
    ds_status s = dsi_fd_regular(src->fd, id, e);
    if (s) return s;
    m->fd = fcntl(src->fd, F_DUPFD_CLOEXEC, 0);
    if (m->fd < 0) return dsi_fail(e, DS_ERR_IO, "cannot duplicate the descriptor: %s", strerror(errno));
    return DS_OK;
}

/* The container src names, up to its metadata and config: a model's
 * (adapter false) or an adapter's. */
static ds_status dsi_file_open_container(ds_model *m, const dsi_source *src, const ds_model_params *p, bool adapter,
                                         dsi_err *e) {
    ds_status s = DS_OK;
    dsi_file_id id;
    uint8_t head[DSI_HEADER_AREA];
    char why[160];
    if ((s = dsi_source_open(m, src, &id, e))) return s;
    /* what there is of the header area (a callback is never asked past its size) */
    struct iovec hv = {head, (size_t)(m->src == DSI_SOURCE_IO && id.size < sizeof head ? id.size : sizeof head)};
    size_t got = (size_t)dsi_source_read(m, &hv, 1, 0, why, sizeof why);
    if (why[0]) return dsi_fail(e, DS_ERR_IO, "cannot read: %s", why);
    /* checksum, version, Argon2id caps; then the key check and the MAC;
     * only then are the header's fields believed */
    if ((s = dsi_header_parse(head, got, &m->hdr, e))) return s;
    if (m->hdr.adapter != adapter)
        return dsi_fail(e, DS_ERR_NOT_ADAPTER,
                        adapter ? "this is a model (.dsm), not a LoRA adapter"
                                : "this is a LoRA adapter (.dsa), not a model: open its base model and apply the "
                                  "adapter to it (ds_adapter_open; ds: --lora FILE)");
    if ((s = dsi_model_keys(m, p, e))) return s;
    if ((s = dsi_header_check(&m->hdr, e))) return s;
    if (id.size < m->hdr.file_bytes)
        return dsi_fail(e, DS_ERR_TRUNCATED, "truncated: the %s has %llu of its %llu bytes",
                        m->src == DSI_SOURCE_IO ? "source" : "file", (unsigned long long)id.size,
                        (unsigned long long)m->hdr.file_bytes);
    if (id.size > m->hdr.file_bytes)
        return dsi_fail(e, DS_ERR_CORRUPT, "%llu unexpected bytes after the end of the container",
                        (unsigned long long)(id.size - m->hdr.file_bytes));
    m->open_size = id.size;
    m->open_mtime_sec = id.mtime_sec;
    m->open_mtime_nsec = id.mtime_nsec;
    /* Reads are of exactly what is wanted, each range asked for ahead
     * (dsi_file_willneed): read-ahead around a read of one expert would pull
     * its neighbours into the page cache, where they stay until read (seen
     * as pager-1.8 failing with 4 suites at once). */
#if DSI_HAVE_FADVISE
    if (m->fd >= 0) (void)posix_fadvise(m->fd, 0, 0, POSIX_FADV_RANDOM);
#endif
    /* a view for mincore() alone (dsi_file_in_memory): never read through;
     * a callback source has none, so its bytes always count as storage */
#if DSI_HAVE_MINCORE
    if (m->fd >= 0 && m->hdr.file_bytes <= SIZE_MAX) {
        void *map = mmap(NULL, (size_t)m->hdr.file_bytes, PROT_READ, MAP_SHARED, m->fd, 0);
        m->probe_map = map == MAP_FAILED ? NULL : map;
    }
#endif
    if ((s = dsi_model_metadata(m, e))) return s;
    if ((s = dsi_config_parse(m->meta.config_json, m->meta.config_len, &m->al, &m->cfg, e))) {
        dsi_prefix(e, "config.json");
        return s;
    }
    if (adapter != (m->meta.adapter_json != NULL))
        return dsi_fail(e, DS_ERR_CORRUPT, "metadata: %s", adapter ? "an adapter without its adapter record"
                                                                    : "a model with an adapter record");
    if (m->meta.experts_json && !adapter) {   /* experts dropped at conversion */
        if ((s = dsi_drop_parse(m->meta.experts_json, m->meta.experts_len, &m->cfg, &m->al, &m->drop, e)))
            return s;
        m->has_drop = true;
    }
    return DS_OK;
}

DSI_FUNC ds_status dsi_file_open_adapter(ds_model *f, const char *path, const ds_adapter_params *p, dsi_err *e) {
    ds_model_params mp;   /* what the key derivation reads of it */
    memset(&mp, 0, sizeof mp);
    mp.key = p->key;
    mp.key_len = p->key_len;
    mp.passphrase = p->passphrase;
    mp.passphrase_len = p->passphrase_len;
    mp.allow_plaintext = p->allow_plaintext;
    dsi_source src = {DSI_SOURCE_PATH, path, -1, NULL};   /* adapters open from a path only */
    return dsi_file_open_container(f, &src, &mp, true, e);
}

DSI_FUNC ds_status dsi_file_open(ds_model *m, const dsi_source *src, const ds_model_params *p, dsi_err *e) {
    /* as model.c decides it once the device is known (a CUDA device that
     * is missing leaves the CPU with every expert resident: then the
     * metadata alone was dropped) */
    m->drop_read = p->expert_cache_bytes != 0 || (p->device == DS_DEVICE_CUDA && p->gpu_cache_bytes == 0);
    ds_status s = dsi_file_open_container(m, src, p, false, e);
    if (s) return s;
    {
        /* the tokenizer lives in the metadata: built for every open, and
         * the config's tokenizer summary comes from it (one parse) */
        ds_allocator a = {m->al.malloc_fn, m->al.realloc_fn, m->al.free_fn, m->al.user};
        if ((s = ds_tokenizer_new(&m->tok, m->meta.tokenizer_json, m->meta.tokenizer_len, m->meta.tokcfg_json,
                                  m->meta.tokcfg_len, &a))) {
            dsi_fail(e, s, "%s", ds_last_error());
            return s;
        }
        dsi_tokenizer_summary(m->tok, &m->cfg);
        if ((s = dsi_tokenizer_check_vocab(m->tok, m->cfg.vocab_size, e))) return s;
    }
    if ((s = dsi_check_directory(m, e))) return s;
    return DS_OK;
}

/* ==== Queries ============================================================ */
DS_API ds_status ds_model_id(const ds_model *m, unsigned char id[DS_MODEL_ID_BYTES]) {
    dsi_err e = {0};
    if (!m || !id) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_id: NULL argument");
        return dsi_publish(&e);
    }
    dsi_model_id_of(&m->hdr, id);
    return DS_OK;
}

DS_API ds_status ds_model_expert_pruning(const ds_model *m, ds_expert_pruning *out) {
    dsi_err e = {0};
    if (!m || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_expert_pruning: NULL argument");
        return dsi_publish(&e);
    }
    memset(out, 0, sizeof *out);
    if (!m->has_drop) return DS_OK;
    out->pruned = 1;
    out->ratio = m->drop.ratio;
    out->json = m->meta.experts_json;
    out->json_len = m->meta.experts_len;
    int lmoe = 0;
    while (lmoe < m->cfg.n_layers && !dsi_config_is_moe_layer(&m->cfg, lmoe)) lmoe++;
    if (lmoe < m->cfg.n_layers) out->n_dropped = m->cfg.n_routed_experts - m->drop.n_kept[lmoe];
    /* the informational calibration fields (checked JSON at open) */
    dsi_json_doc *doc = NULL;
    if (dsi_json_parse(m->meta.experts_json, m->meta.experts_len, &m->al, &doc, &e) == DS_OK) {
        const dsi_json *cal = dsi_json_get(dsi_json_root(doc), "calib");
        const char *str;
        size_t sl;
        int64_t v;
        if (cal && dsi_json_get_str(cal, "file", &str, &sl) == 1)
            snprintf(out->calib_file, sizeof out->calib_file, "%.*s", (int)sl, str);
        if (cal && dsi_json_get_str(cal, "text", &str, &sl) == 1)
            snprintf(out->calib_text, sizeof out->calib_text, "%.*s", (int)sl, str);
        if (cal && dsi_json_get_int(cal, "n_tokens", &v) == 1 && v > 0) out->calib_tokens = (uint64_t)v;
        dsi_json_free(doc);
    }
    return DS_OK;
}

DS_API ds_status ds_model_layer_experts(const ds_model *m, int layer, unsigned char *present, size_t n) {
    dsi_err e = {0};
    if (!m || !present) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_layer_experts: NULL argument");
        return dsi_publish(&e);
    }
    int E = m->cfg.n_routed_experts;
    if (layer < 0 || layer >= m->cfg.n_layers || !dsi_config_is_moe_layer(&m->cfg, layer) || n < (size_t)E) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_layer_experts: layer %d is not a MoE layer of %d, or n %zu < %d "
                 "experts", layer, m->cfg.n_layers, n, E);
        return dsi_publish(&e);
    }
    for (int x = 0; x < E; x++) present[x] = !dsi_expert_dropped(m->has_drop ? &m->drop : NULL, layer, x);
    return DS_OK;
}

DS_API ds_status ds_model_get_config(const ds_model *m, ds_model_config *out) {
    dsi_err e = {0};
    if (!m || !out) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_get_config: NULL argument");
        return dsi_publish(&e);
    }
    *out = m->cfg;
    return DS_OK;
}

DS_API ds_status ds_model_get_pruning(const ds_model *m, const char **json, size_t *len) {
    dsi_err e = {0};
    if (!m || !json || !len) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_get_pruning: NULL argument");
        return dsi_publish(&e);
    }
    *json = m->meta.prune_json;
    *len = m->meta.prune_json ? m->meta.prune_len : 0;
    return DS_OK;
}

DS_API size_t ds_model_tensor_count(const ds_model *m) { return m ? m->meta.n_tensors : 0; }
DS_API size_t ds_model_segment_count(const ds_model *m) { return m ? m->meta.n_segments : 0; }

DS_API ds_status ds_model_tensor_info(const ds_model *m, size_t i, ds_tensor_info *out) {
    dsi_err e = {0};
    if (!m || !out || i >= m->meta.n_tensors) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_tensor_info: bad handle or index %zu", i);
        return dsi_publish(&e);
    }
    const dsi_tensor *t = &m->meta.tensors[i];
    out->name = t->name;
    out->dtype = (ds_dtype)t->dtype;
    out->n_dims = (int)t->n_dims;
    memcpy(out->dims, t->dims, sizeof out->dims);
    out->segment = t->segment;
    out->offset = t->offset;
    out->nbytes = t->nbytes;
    /* the class, as the architecture's tensor list has it: routed experts
     * live in expert segments; the router is each MoE layer's gate */
    size_t nl = strlen(t->name);
    static const char *const router[] = {".mlp.gate.weight", ".mlp.gate.e_score_correction_bias"};
    out->param_class = DS_PARAM_CORE;
    if (m->meta.segments[t->segment].kind == DS_SEGMENT_EXPERT) out->param_class = DS_PARAM_EXPERT;
    for (int k = 0; k < 2; k++)
        if (nl > strlen(router[k]) && strcmp(t->name + nl - strlen(router[k]), router[k]) == 0)
            out->param_class = DS_PARAM_ROUTER;
    return DS_OK;
}

DS_API ds_status ds_model_tensor_find(const ds_model *m, const char *name, size_t *index) {
    dsi_err e = {0};
    if (!m || !name || !index) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_tensor_find: NULL argument");
        return dsi_publish(&e);
    }
    dsi_model_file f = dsi_model_file_of(m);
    if (!dsi_file_tensor(&f, name, index)) {
        dsi_fail(&e, DS_ERR_MISSING_TENSOR, "no tensor named %s", name);
        return dsi_publish(&e);
    }
    return DS_OK;
}

DS_API ds_status ds_model_segment_info(const ds_model *m, size_t i, ds_segment_info *out) {
    dsi_err e = {0};
    if (!m || !out || i >= m->meta.n_segments) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_segment_info: bad handle or index %zu", i);
        return dsi_publish(&e);
    }
    const dsi_segment *s = &m->meta.segments[i];
    out->kind = (ds_segment_kind)s->kind;
    out->layer = s->layer;
    out->expert = s->expert;
    out->file_offset = s->offset;
    out->plain_bytes = s->plain_bytes;
    out->stored_bytes = s->stored_bytes;
    out->n_chunks = s->n_chunks;
    return DS_OK;
}

DS_API void ds_model_segment_name(const ds_model *m, size_t i, char *buf, size_t len) {
    if (!buf || !len) return;
    if (!m || i >= m->meta.n_segments) {
        snprintf(buf, len, "?");
        return;
    }
    dsi_segment_describe(&m->meta.segments[i], m->cfg.n_layers, buf, len);
}

DS_API ds_status ds_model_tensor_read_f32(const ds_model *m, size_t index, float *dst, size_t n_elements) {
    dsi_err e = {0};
    if (!m || !dst || index >= m->meta.n_tensors) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_tensor_read_f32: bad handle, buffer or index");
        return dsi_publish(&e);
    }
    const dsi_tensor *t = &m->meta.tensors[index];
    uint64_t rows = t->n_dims == 2 ? t->dims[0] : 1, cols = t->dims[t->n_dims - 1], count = 0;
    if (!dsi_mul_u64(rows, cols, &count) || count != n_elements) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "tensor %s has %llu elements, buffer holds %zu", t->name,
                 (unsigned long long)count, n_elements);
        return dsi_model_fail(m, &e);
    }
    const uint8_t *src = dsi_model_tensor_data(m, index);
    dsi_secure_buf tmp = {0};
    if (!src) {
        /* not resident (an expert, or a metadata-only open): decrypt the segment */
        const dsi_segment *s = &m->meta.segments[t->segment];
        if (dsi_secure_alloc(&tmp, (size_t)s->plain_bytes, 0, &e) ||
            dsi_segment_read(m, t->segment, tmp.ptr, tmp.size, &e)) {
            dsi_secure_free(&tmp);
            return dsi_model_fail(m, &e);
        }
        src = (const uint8_t *)tmp.ptr + t->offset;
    }
    uint64_t rb = 0;
    (void)dsi_tensor_row_bytes((ds_dtype)t->dtype, rows, cols, t->nbytes, &rb);   /* checked when opened */
    for (uint64_t r = 0; r < rows; r++) dsi_dtype_decode_row((ds_dtype)t->dtype, src + r * rb, dst + r * cols, (size_t)cols);
    dsi_secure_free(&tmp);
    return DS_OK;
}

/* ==== Verify ============================================================= */
typedef struct dsi_verify_job {
    const ds_model *m;
    size_t next;              /* next segment to take (atomic) */
    size_t done;              /* segments finished (atomic) */
    uint64_t bytes;           /* stored bytes checked (atomic) */
    size_t first_bad;         /* lowest failing segment index (under lock) */
    dsi_err err;              /* its message */
    pthread_mutex_t lock;
    int stop;                 /* set on cancellation */
} dsi_verify_job;

/* Authenticates segment i and records the lowest failing index. */
static void dsi_verify_one(dsi_verify_job *j, size_t i) {
    const ds_model *m = j->m;
    dsi_err e = {0};
    if (dsi_segment_read(m, (uint32_t)i, NULL, 0, &e)) {
        pthread_mutex_lock(&j->lock);
        if (i < j->first_bad) {
            j->first_bad = i;
            j->err = e;
        }
        pthread_mutex_unlock(&j->lock);
    }
    /* within a memory budget (m->drop_read) dsi_segment_read has let go of
     * the file's pages as it went; otherwise they stay cached, as for any
     * file read through */
    const dsi_segment *sg = &m->meta.segments[i];
    __atomic_fetch_add(&j->bytes, sg->stored_bytes, __ATOMIC_RELAXED);
    __atomic_fetch_add(&j->done, 1, __ATOMIC_RELAXED);
}

static void *dsi_verify_worker(void *arg) {
    dsi_verify_job *j = arg;
    while (!__atomic_load_n(&j->stop, __ATOMIC_RELAXED)) {
        size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        if (i >= j->m->meta.n_segments) break;
        dsi_verify_one(j, i);
    }
    return NULL;
}

/* The bytes no tag covers (the rest of the header page, the padding between
 * segments) must be zero, so that a flipped bit anywhere in the file is
 * reported by verify. */
static ds_status dsi_check_padding(const ds_model *m, dsi_err *e) {
    uint8_t buf[DSI_SEG_ALIGN];
    uint64_t from = DSI_HEADER_BYTES;
    for (size_t i = 0; i <= m->meta.n_segments; i++) {
        uint64_t to = i < m->meta.n_segments ? m->meta.segments[i].offset : m->hdr.meta_offset;
        uint32_t seg = i < m->meta.n_segments ? (uint32_t)i : DSI_META_SEGMENT;
        for (uint64_t o = from; o < to;) {
            size_t n = (size_t)(to - o < sizeof buf ? to - o : sizeof buf);
            ds_status s = dsi_file_read(m, buf, n, NULL, 0, o, seg, e);
            if (s) return s;
            for (size_t k = 0; k < n; k++)
                if (buf[k]) {
                    char name[64] = "the metadata";
                    if (i < m->meta.n_segments)
                        dsi_segment_describe(&m->meta.segments[i], m->cfg.n_layers, name, sizeof name);
                    return dsi_fail(e, DS_ERR_CORRUPT,
                                    "non-zero padding byte at offset %llu (before %s): the file was modified",
                                    (unsigned long long)(o + k), name);
                }
            o += n;
        }
        if (i < m->meta.n_segments) from = m->meta.segments[i].offset + m->meta.segments[i].stored_bytes;
    }
    return DS_OK;
}

DS_API ds_status ds_model_verify(const ds_model *m, int n_threads, ds_progress_fn progress, void *user) {
    dsi_err e = {0};
    if (!m) {
        dsi_fail(&e, DS_ERR_INVALID_ARG, "ds_model_verify: model is NULL");
        return dsi_publish(&e);
    }
    if (dsi_check_padding(m, &e)) return dsi_model_fail(m, &e);
    dsi_verify_job j;
    memset(&j, 0, sizeof j);
    j.m = m;
    j.first_bad = SIZE_MAX;
    pthread_mutex_init(&j.lock, NULL);
    int nt = n_threads > 0 ? n_threads : m->n_threads;
    if (nt > 64) nt = 64;
    pthread_t th[64];
    int started = 0;
    for (int i = 1; i < nt; i++) {
        if (pthread_create(&th[started], NULL, dsi_verify_worker, &j) != 0) break;
        started++;
    }
    /* The calling thread works too and reports progress between segments. */
    size_t total = m->meta.n_segments;
    while (!__atomic_load_n(&j.stop, __ATOMIC_RELAXED)) {
        size_t k = __atomic_fetch_add(&j.next, 1, __ATOMIC_RELAXED);
        if (k >= total) break;
        dsi_verify_one(&j, k);
        if (progress && progress(user, __atomic_load_n(&j.done, __ATOMIC_RELAXED), total,
                                 __atomic_load_n(&j.bytes, __ATOMIC_RELAXED)))
            __atomic_store_n(&j.stop, 1, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&j.lock);
    if (j.first_bad != SIZE_MAX) return dsi_model_fail(m, &j.err);
    if (j.stop) {
        dsi_fail(&e, DS_ERR_CANCELLED, "verify cancelled after %zu of %zu segments", j.done, total);
        return dsi_model_fail(m, &e);
    }
    if (progress) (void)progress(user, total, total, j.bytes);
    return DS_OK;
}
