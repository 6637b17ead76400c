/* SPDX-License-Identifier: MIT */
/* Copyright (c) 2026 the deepseek.h authors */
/*
 * port.h — what differs between Linux, the other POSIX systems (macOS,
 * FreeBSD) and Windows (mingw-w64). Included by base.h, so every library
 * file sees it. docs/platforms.md lists, per platform, what is used and
 * what is skipped.
 *
 * The rule: Linux compiles exactly the calls it always made. Elsewhere a
 * call with an equivalent gets it; a call without one (a page-cache hint,
 * core-dump exclusion, transparent huge pages, the mincore probe) is
 * skipped, and whatever reports on it says it did not take effect.
 *
 *   DSI_LINUX     1 on Linux, unless DSI_PORTABLE is defined: the test switch
 *                 (make check-posix) that builds this Linux machine's copy
 *                 as for a POSIX system without the Linux extras, so the
 *                 fallbacks run here for real.
 *   DSI_WINDOWS   1 on Windows (_WIN32): the POSIX names the library uses
 *                 (pread, fsync, mmap of anonymous memory, ...) are mapped
 *                 below to dsi_w32_* functions written on the Win32 API.
 *   dsi_off_t     a 64-bit file offset everywhere (mingw-w64's off_t has 32
 *                 bits unless _FILE_OFFSET_BITS is 64).
 */
#ifndef DS_PORT_H
#define DS_PORT_H

#if defined(__linux__) && !defined(DSI_PORTABLE)
#  define DSI_LINUX 1
#else
#  define DSI_LINUX 0
#endif
#if defined(_WIN32)
#  define DSI_WINDOWS 1
#else
#  define DSI_WINDOWS 0
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#if !DSI_WINDOWS
/* ==== POSIX ============================================================= */
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

typedef off_t dsi_off_t;

/* Core-dump exclusion for plaintext buffers: MADV_DONTDUMP (Linux),
 * MADV_NOCORE (FreeBSD); none on macOS. */
#if DSI_LINUX && defined(MADV_DONTDUMP)
#  define DSI_MADV_NODUMP MADV_DONTDUMP
#elif !DSI_LINUX && !defined(DSI_PORTABLE) && defined(MADV_NOCORE)
#  define DSI_MADV_NODUMP MADV_NOCORE
#endif
/* Transparent huge pages: Linux only (FreeBSD promotes superpages by
 * itself; macOS has none for ordinary memory). */
#if DSI_LINUX && defined(MADV_HUGEPAGE)
#  define DSI_MADV_HUGE MADV_HUGEPAGE
#endif
/* posix_fadvise: Linux and FreeBSD; macOS has none (no POSIX_FADV_*). */
#if defined(POSIX_FADV_WILLNEED) && !defined(DSI_PORTABLE)
#  define DSI_HAVE_FADVISE 1
#else
#  define DSI_HAVE_FADVISE 0
#endif
/* mincore's vector: unsigned char on Linux, char on macOS and the BSDs. */
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__) || defined(__DragonFly__)
typedef char dsi_mincore_vec;
#else
typedef unsigned char dsi_mincore_vec;
#endif
#define DSI_HAVE_MINCORE 1

/* A modification time with nanoseconds: st_mtim (POSIX 2008: Linux,
 * FreeBSD), st_mtimespec (macOS). */
DSI_INLINE void dsi_stat_mtime(const struct stat *st, int64_t *sec, int64_t *nsec) {
#if defined(__APPLE__)
    *sec = (int64_t)st->st_mtimespec.tv_sec;
    *nsec = (int64_t)st->st_mtimespec.tv_nsec;
#else
    *sec = (int64_t)st->st_mtim.tv_sec;
    *nsec = (int64_t)st->st_mtim.tv_nsec;
#endif
}

/* A file's identity (device, inode) for "is the output one of the inputs". */
DSI_INLINE void dsi_fd_identity(int fd, const struct stat *st, uint64_t *dev, uint64_t *ino) {
    (void)fd;
    *dev = (uint64_t)st->st_dev;
    *ino = (uint64_t)st->st_ino;
}

/* preadv: Linux and FreeBSD; macOS has it only from 11. Elsewhere the first
 * iovec is read alone (a short read: every caller loops until done). */
DSI_INLINE ssize_t dsi_preadv(int fd, const struct iovec *iov, int n, dsi_off_t off) {
#if DSI_LINUX || (defined(__FreeBSD__) && !defined(DSI_PORTABLE))
    return preadv(fd, iov, n, off);
#else
    return n > 0 ? pread(fd, iov[0].iov_base, iov[0].iov_len, off) : 0;
#endif
}

#else
/* ==== Windows (mingw-w64) =============================================== */
#ifndef WIN32_LEAN_AND_MEAN
#  define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#  define NOMINMAX
#endif
#include <windows.h>
#include <io.h>
#include <stdio.h>
#include <unistd.h>

typedef int64_t dsi_off_t;
typedef unsigned char dsi_mincore_vec;

/* struct stat with a 64-bit st_size, as mingw-w64 itself does under
 * _FILE_OFFSET_BITS=64: the CRT's default one truncates a model file's
 * size to 32 bits. */
#undef stat
#undef fstat
#define stat _stat64
#define fstat _fstat64
#define DSI_HAVE_FADVISE 0
#define DSI_HAVE_MINCORE 0   /* no page-cache residency probe: every read counts as storage */

struct iovec {
    void *iov_base;
    size_t iov_len;
};

/* Every descriptor the library opens is binary (text mode would translate
 * CR/LF and stop at ^Z) and not inherited by child processes: every open()
 * in the library passes O_CLOEXEC, which carries both here. */
#undef O_CLOEXEC
#define O_CLOEXEC (O_BINARY | O_NOINHERIT)
#ifndef O_NONBLOCK
#  define O_NONBLOCK 0   /* no FIFOs to open without blocking */
#endif
#ifndef S_ISSOCK
#  define S_ISSOCK(m) 0
#endif
#ifndef S_ISFIFO
#  define S_ISFIFO(m) 0
#endif
#ifndef S_ISBLK
#  define S_ISBLK(m) 0
#endif

DSI_INLINE void dsi_stat_mtime(const struct stat *st, int64_t *sec, int64_t *nsec) {
    *sec = (int64_t)st->st_mtime;
    *nsec = 0;
}

DSI_INLINE HANDLE dsi_w32_handle(int fd) { return (HANDLE)_get_osfhandle(fd); }

/* The CRT's st_ino is always 0: the volume serial number and NTFS file
 * index say which file it is (the stat fields where the handle cannot). */
DSI_INLINE void dsi_fd_identity(int fd, const struct stat *st, uint64_t *dev, uint64_t *ino) {
    BY_HANDLE_FILE_INFORMATION fi;
    HANDLE h = dsi_w32_handle(fd);
    if (h != INVALID_HANDLE_VALUE && GetFileInformationByHandle(h, &fi)) {
        *dev = (uint64_t)fi.dwVolumeSerialNumber;
        *ino = ((uint64_t)fi.nFileIndexHigh << 32) | fi.nFileIndexLow;
        return;
    }
    *dev = (uint64_t)st->st_dev;
    *ino = (uint64_t)st->st_ino;
}

/* errno for the thread's last Win32 error. */
DSI_INLINE int dsi_w32_errno(void) {
    switch (GetLastError()) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND: return ENOENT;
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION: return EACCES;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS: return EEXIST;
    case ERROR_INVALID_HANDLE: return EBADF;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_WORKING_SET_QUOTA: return ENOMEM;
    case ERROR_DISK_FULL: return ENOSPC;
    case ERROR_NOT_SUPPORTED:
    case ERROR_CALL_NOT_IMPLEMENTED: return ENOSYS;
    default: return EIO;
    }
}

/* The handle, the OVERLAPPED that carries the offset, and the length of one
 * call (at most 1 GiB) for a read or write of n bytes at off; false (errno
 * EBADF) for a bad descriptor or a negative offset. */
DSI_INLINE bool dsi_w32_at(int fd, dsi_off_t off, size_t n, HANDLE *h, OVERLAPPED *ov, DWORD *want) {
    *h = dsi_w32_handle(fd);
    if (*h == INVALID_HANDLE_VALUE || off < 0) {
        errno = EBADF;
        return false;
    }
    memset(ov, 0, sizeof *ov);
    ov->Offset = (DWORD)((uint64_t)off & 0xffffffffu);
    ov->OffsetHigh = (DWORD)((uint64_t)off >> 32);
    *want = n > ((size_t)1 << 30) ? (DWORD)1 << 30 : (DWORD)n;
    return true;
}

/* pread/pwrite: ReadFile/WriteFile at an explicit offset (OVERLAPPED on a
 * synchronous handle). At most 1 GiB per call; callers loop. */
DSI_INLINE ssize_t dsi_w32_pread(int fd, void *buf, size_t n, dsi_off_t off) {
    HANDLE h;
    OVERLAPPED ov;
    DWORD want, got = 0;
    if (!dsi_w32_at(fd, off, n, &h, &ov, &want)) return -1;
    if (!ReadFile(h, buf, want, &got, &ov)) {
        if (GetLastError() == ERROR_HANDLE_EOF) return 0;
        errno = dsi_w32_errno();
        return -1;
    }
    return (ssize_t)got;
}

DSI_INLINE ssize_t dsi_w32_pwrite(int fd, const void *buf, size_t n, dsi_off_t off) {
    HANDLE h;
    OVERLAPPED ov;
    DWORD want, put = 0;
    if (!dsi_w32_at(fd, off, n, &h, &ov, &want)) return -1;
    if (!WriteFile(h, buf, want, &put, &ov)) {
        errno = dsi_w32_errno();
        return -1;
    }
    return (ssize_t)put;
}

DSI_INLINE ssize_t dsi_preadv(int fd, const struct iovec *iov, int n, dsi_off_t off) {
    return n > 0 ? dsi_w32_pread(fd, iov[0].iov_base, iov[0].iov_len, off) : 0;
}

DSI_INLINE int dsi_w32_fsync(int fd) {
    HANDLE h = dsi_w32_handle(fd);
    if (h == INVALID_HANDLE_VALUE) { errno = EBADF; return -1; }
    if (!FlushFileBuffers(h)) { errno = dsi_w32_errno(); return -1; }
    return 0;
}

/* rename over an existing file, as POSIX rename does (the CRT's refuses). */
DSI_INLINE int dsi_w32_rename(const char *from, const char *to) {
    if (MoveFileExA(from, to, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) return 0;
    errno = dsi_w32_errno();
    return -1;
}

/* link: a hard link (NTFS); fails where the file system has none, and the
 * converter then renames. */
DSI_INLINE int dsi_w32_link(const char *from, const char *to) {
    if (CreateHardLinkA(to, from, NULL)) return 0;
    errno = dsi_w32_errno();
    return -1;
}

/* The sysconf names the library asks for. */
#define _SC_PAGESIZE 1
#define _SC_NPROCESSORS_ONLN 2
DSI_INLINE long dsi_w32_sysconf(int name) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    if (name == _SC_PAGESIZE) return (long)si.dwPageSize;
    if (name == _SC_NPROCESSORS_ONLN) return (long)si.dwNumberOfProcessors;
    errno = EINVAL;
    return -1;
}

/* fcntl for the three requests file.c and util.c make of a descriptor. The
 * CRT does not keep the access mode; a descriptor is taken as readable (a
 * write-only one fails at its first read). */
#define F_GETFL 3
#define F_SETFL 4
#ifndef F_DUPFD_CLOEXEC
#  define F_DUPFD_CLOEXEC 1030
#endif
DSI_INLINE int dsi_w32_fcntl(int fd, int cmd, ...) {
    if (dsi_w32_handle(fd) == INVALID_HANDLE_VALUE) { errno = EBADF; return -1; }
    if (cmd == F_GETFL) return O_RDONLY;
    if (cmd == F_SETFL) return 0;
    if (cmd == F_DUPFD_CLOEXEC) return _dup(fd);
    errno = EINVAL;
    return -1;
}

/* Memory: anonymous read-write pages (VirtualAlloc) are all the library maps
 * on Windows; a file view (only for the mincore probe) is refused, so the
 * probe is never made. */
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define MAP_PRIVATE 2
#define MAP_ANONYMOUS 0x20
#define MAP_FAILED ((void *)-1)
DSI_INLINE void *dsi_w32_mmap(void *addr, size_t len, int prot, int flags, int fd, dsi_off_t off) {
    (void)addr; (void)prot; (void)off;
    if (!(flags & MAP_ANONYMOUS) || fd != -1) { errno = ENOSYS; return MAP_FAILED; }
    void *p = VirtualAlloc(NULL, len, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    if (!p) { errno = ENOMEM; return MAP_FAILED; }
    return p;
}
/* The whole allocation only (VirtualFree cannot release part of one). */
DSI_INLINE int dsi_w32_munmap(void *p, size_t len) {
    (void)len;
    if (!VirtualFree(p, 0, MEM_RELEASE)) { errno = EINVAL; return -1; }
    return 0;
}
/* VirtualLock: bounded by the process's minimum working set (about 200 KiB
 * by default); larger buffers fail with ENOMEM, which the mlock report shows. */
DSI_INLINE int dsi_w32_mlock(const void *p, size_t len) {
    if (!VirtualLock((void *)p, len)) { errno = dsi_w32_errno(); return -1; }
    return 0;
}
DSI_INLINE int dsi_w32_mincore(void *p, size_t len, dsi_mincore_vec *v) {
    (void)p; (void)len; (void)v;
    errno = ENOSYS;
    return -1;
}

/* Function-like, so that fields of the same names (ds_model_params.mlock)
 * are left alone. */
#define pread(fd, buf, n, off) dsi_w32_pread(fd, buf, n, off)
#define pwrite(fd, buf, n, off) dsi_w32_pwrite(fd, buf, n, off)
#define fsync(fd) dsi_w32_fsync(fd)
#define rename(from, to) dsi_w32_rename(from, to)
#define link(from, to) dsi_w32_link(from, to)
#define lstat(path, st) stat(path, st)
#define fchmod(fd, mode) ((void)(fd), (void)(mode), 0)
#define sysconf(name) dsi_w32_sysconf(name)
#define fcntl(...) dsi_w32_fcntl(__VA_ARGS__)
#define mmap(addr, len, prot, flags, fd, off) dsi_w32_mmap(addr, len, prot, flags, fd, off)
#define munmap(p, len) dsi_w32_munmap(p, len)
#define mlock(p, len) dsi_w32_mlock(p, len)
#define mincore(p, len, v) dsi_w32_mincore(p, len, v)
#endif /* DSI_WINDOWS */

#endif /* DS_PORT_H */
