/* interpose.c — the libc entry points libvdpad-vhost.so takes over for the paths it serves (open, stat and
 * access of the path, readlink of /proc/self/fd/N; close, dup, fcntl, ioctl, mmap, fstat, the socket calls;
 * the reads and writes, poll, select and epoll_ctl: file.c) and to follow the VMM's shared file mappings
 * (mmap, munmap, mremap: memory.c); everything else passes to the real ones.  The fortified variants (_FORTIFY_SOURCE's __read_chk
 * and kin, which Debian's QEMU calls) are taken too: they check the buffer and go on to the entry point. */
#include "vdpad_vhost.h"

/* ---- the real libc entry points ---------------------------------------- */

HIDDEN int (*real_open)(const char *, int, ...);
HIDDEN int (*real_openat)(int, const char *, int, ...);
HIDDEN int (*real_close)(int);
HIDDEN int (*real_close_range)(unsigned int, unsigned int, int);
HIDDEN int (*real_ioctl)(int, unsigned long, ...);
HIDDEN ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_pread64)(int, void *, size_t, off_t);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_preadv64)(int, const struct iovec *, int, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static ssize_t (*real_preadv64v2)(int, const struct iovec *, int, off_t, int);
static ssize_t (*real_pwritev64v2)(int, const struct iovec *, int, off_t, int);
HIDDEN int (*real_poll)(struct pollfd *, nfds_t, int);
HIDDEN int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
HIDDEN int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
HIDDEN int (*real_pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_fstat)(int, struct stat *);
static int (*real___fxstat)(int, int, struct stat *);
static int (*real_fstat64)(int, struct stat64 *);
static int (*real___fxstat64)(int, int, struct stat64 *);
static int (*real_fstatat)(int, const char *, struct stat *, int);
static int (*real_fstatat64)(int, const char *, struct stat64 *, int);
static int (*real_statx)(int, const char *, int, unsigned int, struct statx *);
static int (*real_stat)(const char *, struct stat *);
static int (*real_lstat)(const char *, struct stat *);
static int (*real_stat64)(const char *, struct stat64 *);
static int (*real_lstat64)(const char *, struct stat64 *);
static int (*real___xstat)(int, const char *, struct stat *);
static int (*real___lxstat)(int, const char *, struct stat *);
static int (*real_access)(const char *, int);
static ssize_t (*real_readlink)(const char *, char *, size_t);
static ssize_t (*real_readlinkat)(int, const char *, char *, size_t);
static int (*real_faccessat)(int, const char *, int, int);
HIDDEN void *(*real_mmap)(void *, size_t, int, int, int, off_t);
HIDDEN int (*real_munmap)(void *, size_t);
HIDDEN void *(*real_mremap)(void *, size_t, size_t, int, ...);
HIDDEN int (*real_dup)(int);
HIDDEN int (*real_dup2)(int, int);
HIDDEN int (*real_dup3)(int, int, int);
HIDDEN int (*real_fcntl)(int, int, ...);

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static void resolve_socket_calls(void);

/* Forks since the library loaded (the parent's count): a session opened before the last of them may be held by
 * a child too, and its last close here must not release it (session_free).  vfork and posix_spawn run no fork
 * handlers, and need none: their child execs, which closes every copy (the library's are close-on-exec). */
HIDDEN unsigned long forks;
static void forked(void) { __atomic_add_fetch(&forks, 1, __ATOMIC_RELAXED); }

static void resolve(void)
{
    real_open = dlsym(RTLD_NEXT, "open");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_close = dlsym(RTLD_NEXT, "close");
    real_close_range = dlsym(RTLD_NEXT, "close_range");
    real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    real_write = dlsym(RTLD_NEXT, "write");
    real_read = dlsym(RTLD_NEXT, "read");
    real_pread64 = dlsym(RTLD_NEXT, "pread64");
    real_readv = dlsym(RTLD_NEXT, "readv");
    real_preadv64 = dlsym(RTLD_NEXT, "preadv64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_pwritev64 = dlsym(RTLD_NEXT, "pwritev64");
    real_preadv64v2 = dlsym(RTLD_NEXT, "preadv64v2");
    real_pwritev64v2 = dlsym(RTLD_NEXT, "pwritev64v2");
    real_poll = dlsym(RTLD_NEXT, "poll");
    real_ppoll = dlsym(RTLD_NEXT, "ppoll");
    real_select = dlsym(RTLD_NEXT, "select");
    real_pselect = dlsym(RTLD_NEXT, "pselect");
    real_epoll_ctl = dlsym(RTLD_NEXT, "epoll_ctl");
    real_fstat = dlsym(RTLD_NEXT, "fstat");
    real___fxstat = dlsym(RTLD_NEXT, "__fxstat");
    real_fstat64 = dlsym(RTLD_NEXT, "fstat64");
    real___fxstat64 = dlsym(RTLD_NEXT, "__fxstat64");
    real_fstatat = dlsym(RTLD_NEXT, "fstatat");
    real_fstatat64 = dlsym(RTLD_NEXT, "fstatat64");
    real_statx = dlsym(RTLD_NEXT, "statx");
    real_stat = dlsym(RTLD_NEXT, "stat");
    real_lstat = dlsym(RTLD_NEXT, "lstat");
    real_stat64 = dlsym(RTLD_NEXT, "stat64");
    real_lstat64 = dlsym(RTLD_NEXT, "lstat64");
    real___xstat = dlsym(RTLD_NEXT, "__xstat");
    real___lxstat = dlsym(RTLD_NEXT, "__lxstat");
    real_access = dlsym(RTLD_NEXT, "access");
    real_readlink = dlsym(RTLD_NEXT, "readlink");
    real_readlinkat = dlsym(RTLD_NEXT, "readlinkat");
    real_faccessat = dlsym(RTLD_NEXT, "faccessat");
    real_mmap = dlsym(RTLD_NEXT, "mmap");
    real_munmap = dlsym(RTLD_NEXT, "munmap");
    real_mremap = dlsym(RTLD_NEXT, "mremap");
    real_dup = dlsym(RTLD_NEXT, "dup");
    real_dup2 = dlsym(RTLD_NEXT, "dup2");
    real_dup3 = dlsym(RTLD_NEXT, "dup3");
    real_fcntl = dlsym(RTLD_NEXT, "fcntl");
    resolve_socket_calls();
    pthread_atfork(NULL, forked, NULL);
}

HIDDEN void resolve_real(void) { pthread_once(&resolve_once, resolve); }


/* ---- open ---------------------------------------------------------------- */

/* The number a path such as /dev/vhost-vdpa-3 ends with: the minor fstat reports (0 for a path without one). */
static unsigned int path_minor(const char *path)
{
    size_t n = strlen(path), k = n;
    while (k > 0 && path[k - 1] >= '0' && path[k - 1] <= '9')
        k--;
    return k < n ? (unsigned int)strtoul(path + k, NULL, 10) : 0;
}

static int open_session(const char *path, const char *device, int flags)
{
    char tried[256];
    int err;
    int sock = connect_daemon(flags & O_CLOEXEC, tried, sizeof(tried));
    if (sock < 0) {
        say("no vdpad answers on %s (%s); start it or set VDPAD_SOCKET", tried, strerror(errno));
        errno = ENODEV;
        return -1;
    }
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        real_close(sock);
        errno = ENOMEM;
        return -1;
    }
    /* The session talks on a descriptor of its own, so that whatever the VMM does to its names for the file —
     * closes the one open() gave while a dup lives on, dup2()s over it — the connection goes on until the last
     * name is closed, as the kernel's file does.  Close-on-exec: an exec'd child keeps only the names it was
     * given. */
    s->sock = real_fcntl(sock, F_DUPFD_CLOEXEC, 0);
    if (s->sock < 0) {
        int e = errno;
        free(s);
        real_close(sock);
        errno = e;
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &s->opened);
    pthread_mutex_init(&s->lock, NULL);
    snprintf(s->device, sizeof(s->device), "%s", device);
    snprintf(s->path, sizeof(s->path), "%s", path);
    json_object *r = call(s, "open", -1, &err, "");
    if (!r) {
        if (err == EBUSY)
            say("%s is owned by another session (R34)", device);
        else if (err == ENODEV)
            say("vdpad has no device %s (vdpad-cli dev show)", device);
        else
            say("vdpad refused to open %s: %s", device, strerror(err));
        session_free(s);
        real_close(sock);
        errno = err;
        return -1;
    }
    s->nvqs = (uint32_t)u64_of(r, "nvqs");
    s->ngroups = (uint32_t)u64_of(r, "ngroups");
    s->nas = (uint32_t)u64_of(r, "nas");
    s->iova_first = u64_of(r, "iova_first");
    s->iova_last = u64_of(r, "iova_last");
    s->device_id = (uint32_t)u64_of(r, "device_id");
    s->config_size = (uint32_t)u64_of(r, "config_size");
    s->vq_num_max = (uint32_t)u64_of(r, "vq_num_max");
    json_object_put(r);
    s->busyloop = calloc(s->nvqs ? s->nvqs : 1, sizeof(*s->busyloop));
    s->opener = getpid();
    s->forks_at_open = __atomic_load_n(&forks, __ATOMIC_RELAXED);
    /* The VFS's FMODE_READ and FMODE_WRITE; access mode 3 gives neither (ioctls only). */
    s->readable = (flags & O_ACCMODE) == O_RDONLY || (flags & O_ACCMODE) == O_RDWR;
    s->writable = (flags & O_ACCMODE) == O_WRONLY || (flags & O_ACCMODE) == O_RDWR;
    s->access_mode = flags & O_ACCMODE;
    s->minor = path_minor(path);
    start_store_agent(s);
    bind_fd(sock, s);
    return sock;
}

static int open_common(const char *path, int flags, mode_t mode, int dirfd, int at)
{
    char device[64];
    RESOLVE();
    if (mapped_device(path, device, sizeof(device)))
        return open_session(path, device, flags);
    return at ? real_openat(dirfd, path, flags, mode) : real_open(path, flags, mode);
}

#define MODE_ARG(flags) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { va_list ap; va_start(ap, flags); mode = va_arg(ap, mode_t); va_end(ap); }

int open(const char *path, int flags, ...) { MODE_ARG(flags); return open_common(path, flags, mode, AT_FDCWD, 0); }
int open64(const char *path, int flags, ...) { MODE_ARG(flags); return open_common(path, flags | O_LARGEFILE, mode, AT_FDCWD, 0); }
int __open_2(const char *path, int flags) { return open_common(path, flags, 0, AT_FDCWD, 0); }
int __open64_2(const char *path, int flags) { return open_common(path, flags | O_LARGEFILE, 0, AT_FDCWD, 0); }
int openat(int dirfd, const char *path, int flags, ...) { MODE_ARG(flags); return open_common(path, flags, mode, dirfd, 1); }
int openat64(int dirfd, const char *path, int flags, ...) { MODE_ARG(flags); return open_common(path, flags | O_LARGEFILE, mode, dirfd, 1); }
int __openat_2(int dirfd, const char *path, int flags) { return open_common(path, flags, 0, dirfd, 1); }
int __openat64_2(int dirfd, const char *path, int flags) { return open_common(path, flags | O_LARGEFILE, 0, dirfd, 1); }

/* The session `fd` names runs `call` (an expression using `s`) with errno kept past the release; any other fd
 * gets `otherwise`. */
#define ON_SESSION(fd, call, otherwise) \
    do { \
        RESOLVE(); \
        struct session *s = acquire(fd); \
        if (!s) return otherwise; \
        ssize_t r_ = call; \
        int saved_ = errno; \
        release(s); \
        errno = saved_; \
        return r_; \
    } while (0)

/* ---- close and the dup family -------------------------------------------- */

int close(int fd)
{
    RESOLVE();
    if (lookup(fd))
        bind_fd(fd, NULL);
    return real_close(fd);
}

int close_range(unsigned int first, unsigned int last, int flags)
{
    RESOLVE();
    if (!(flags & CLOSE_RANGE_CLOEXEC)) {
        int top = table_extent();
        for (unsigned int fd = first; fd <= last && fd < (unsigned int)top; fd++)
            if (lookup((int)fd))
                bind_fd((int)fd, NULL);
    }
    if (!real_close_range) {
        errno = ENOSYS;
        return -1;
    }
    return real_close_range(first, last, flags);
}

static int duplicated(int oldfd, int newfd)
{
    struct session *s = acquire(oldfd);
    if (newfd >= 0 && newfd != oldfd)
        bind_fd(newfd, s);  /* a duplicate names the same session; one that named another drops it */
    if (s)
        release(s);
    return newfd;
}

int dup(int fd) { RESOLVE(); return duplicated(fd, real_dup(fd)); }
int dup2(int fd, int newfd) { RESOLVE(); return duplicated(fd, real_dup2(fd, newfd)); }
int dup3(int fd, int newfd, int flags) { RESOLVE(); return duplicated(fd, real_dup3(fd, newfd, flags)); }

/* The file's status flags, as the kernel's file has them: the access mode it was opened with and O_LARGEFILE
 * (open's on 64-bit), where the socket says O_RDWR; never O_ASYNC, which only a file with a fasync op can have
 * (vhost-vdpa has none, so F_SETFL leaves it out without an error) — and which on the socket would send the VMM
 * SIGIO at every reply of the daemon. */
static int session_fcntl(struct session *s, int fd, int cmd, void *arg)
{
    if (cmd == F_SETFL)
        return real_fcntl(fd, F_SETFL, (long)(intptr_t)arg & ~O_ASYNC);
    enum { kernel_o_largefile = 0100000 };  /* libc's O_LARGEFILE is 0 on 64-bit: the flag is implied */
    int r = real_fcntl(fd, F_GETFL);
    return r < 0 ? r : (r & ~(O_ACCMODE | O_ASYNC)) | s->access_mode | kernel_o_largefile;
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (cmd == F_GETFL || cmd == F_SETFL)
        ON_SESSION(fd, session_fcntl(s, fd, cmd, arg), real_fcntl(fd, cmd, arg));
    RESOLVE();
    int r = real_fcntl(fd, cmd, arg);
    if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0)
        duplicated(fd, r);
    return r;
}

int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));


/* The VFS answers these itself, for any file: close-on-exec and O_NONBLOCK are the descriptor's and the file's
 * own flags, which the VMM's socket holds as the device's file would; FIOASYNC would need a fasync that
 * vhost-vdpa does not have (ENOTTY to turn it on, nothing to turn it off).  Every other command, of whatever
 * type, is vhost-vdpa's to answer, as an unknown one when it is not its own (R43). */
static int session_ioctl(struct session *s, int fd, unsigned long request, void *arg)
{
    if (request == FIOCLEX || request == FIONCLEX || request == FIONBIO)
        return real_ioctl(fd, request, arg);
    if (request == FIOASYNC) {
        int on;
        return copy_from_vmm(&on, arg, sizeof(on)) ? fail(EFAULT) : on ? fail(ENOTTY) : 0;
    }
    if (needs_owner(request) && !owns(s))
        return fail(EPERM);  /* before the argument is read, as vhost_dev_ioctl checks the owner first (R41, R42) */
    return vdpa_ioctl(s, request, arg);  /* the argument copied in and out as the kernel does: EFAULT where it cannot */
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    ON_SESSION(fd, session_ioctl(s, fd, request, arg), real_ioctl(fd, request, arg));
}

/* ---- reads and writes: the IOTLB messages (B1), no reads (file.c) ------------------------------------ */

/* pread and pwrite refuse a negative offset before they look at the fd (ksys_pread64); vhost-vdpa's file has
 * FMODE_PREAD and FMODE_PWRITE, so an offset is otherwise ignored. */
#define NEGATIVE_OFFSET(off) do { if ((off) < 0) { errno = EINVAL; return -1; } } while (0)

ssize_t read(int fd, void *buf, size_t n) { ON_SESSION(fd, file_read(s), real_read(fd, buf, n)); }
ssize_t readv(int fd, const struct iovec *iov, int count) { ON_SESSION(fd, file_read(s), real_readv(fd, iov, count)); }
ssize_t pread64(int fd, void *buf, size_t n, off_t off) { NEGATIVE_OFFSET(off); ON_SESSION(fd, file_read(s), real_pread64(fd, buf, n, off)); }
ssize_t pread(int fd, void *buf, size_t n, off_t off) __attribute__((alias("pread64")));
ssize_t preadv64(int fd, const struct iovec *iov, int count, off_t off)
{
    NEGATIVE_OFFSET(off);
    ON_SESSION(fd, file_read(s), real_preadv64(fd, iov, count, off));
}
ssize_t preadv(int fd, const struct iovec *iov, int count, off_t off) __attribute__((alias("preadv64")));

ssize_t write(int fd, const void *buf, size_t n) { ON_SESSION(fd, file_write(s, buf, n), real_write(fd, buf, n)); }
ssize_t writev(int fd, const struct iovec *iov, int count) { ON_SESSION(fd, file_writev(s, iov, count, 0), real_writev(fd, iov, count)); }
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    NEGATIVE_OFFSET(off);
    ON_SESSION(fd, file_write(s, buf, n), real_pwrite64(fd, buf, n, off));
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) __attribute__((alias("pwrite64")));
ssize_t pwritev64(int fd, const struct iovec *iov, int count, off_t off)
{
    NEGATIVE_OFFSET(off);
    ON_SESSION(fd, file_writev(s, iov, count, 0), real_pwritev64(fd, iov, count, off));
}
ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t off) __attribute__((alias("pwritev64")));

/* The v2 calls take -1 for the file's position (any other negative offset is EINVAL) and flags. */
ssize_t preadv64v2(int fd, const struct iovec *iov, int count, off_t off, int flags)
{
    if (off < -1) { errno = EINVAL; return -1; }
    ON_SESSION(fd, file_read(s), real_preadv64v2(fd, iov, count, off, flags));
}
ssize_t preadv2(int fd, const struct iovec *iov, int count, off_t off, int flags) __attribute__((alias("preadv64v2")));
ssize_t pwritev64v2(int fd, const struct iovec *iov, int count, off_t off, int flags)
{
    if (off < -1) { errno = EINVAL; return -1; }
    ON_SESSION(fd, file_writev(s, iov, count, flags), real_pwritev64v2(fd, iov, count, off, flags));
}
ssize_t pwritev2(int fd, const struct iovec *iov, int count, off_t off, int flags) __attribute__((alias("pwritev64v2")));

extern void __chk_fail(void) __attribute__((noreturn));
ssize_t __read_chk(int fd, void *buf, size_t n, size_t room) { if (n > room) __chk_fail(); return read(fd, buf, n); }
ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t room) { if (n > room) __chk_fail(); return pread64(fd, buf, n, off); }
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t room) __attribute__((alias("__pread64_chk")));

/* ---- poll, select, epoll_ctl (file.c) ------------------------------------------------------------------ */

/* While no fd names a session, these are the real calls and cost one load; file_* answer -2 for an array that
 * names none. */
int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
    RESOLVE();
    int r = any_named() && n > 0 ? file_poll(fds, n, timeout, mask) : -2;
    return r != -2 ? r : real_ppoll(fds, n, timeout, mask);
}

int poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    RESOLVE();
    if (!any_named() || n == 0) return real_poll(fds, n, timeout_ms);
    struct timespec t = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000 };
    int r = file_poll(fds, n, timeout_ms < 0 ? NULL : &t, NULL);
    return r != -2 ? r : real_poll(fds, n, timeout_ms);
}

int __poll_chk(struct pollfd *fds, nfds_t n, int timeout_ms, size_t room)
{
    if (room / sizeof(*fds) < n) __chk_fail();
    return poll(fds, n, timeout_ms);
}

int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask, size_t room)
{
    if (room / sizeof(*fds) < n) __chk_fail();
    return ppoll(fds, n, timeout, mask);
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
    RESOLVE();
    int r = any_named() ? file_select(nfds, rd, wr, ex, tv, NULL, NULL, 0) : -2;
    return r != -2 ? r : real_select(nfds, rd, wr, ex, tv);
}

int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *timeout, const sigset_t *mask)
{
    RESOLVE();
    int r = any_named() ? file_select(nfds, rd, wr, ex, NULL, timeout, mask, 1) : -2;
    return r != -2 ? r : real_pselect(nfds, rd, wr, ex, timeout, mask);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)
{
    RESOLVE();
    return lookup(fd) ? file_epoll_ctl(epfd, op, event) : real_epoll_ctl(epfd, op, fd, event);
}

/* ---- socket calls: the file is no socket ----------------------------------------------------------------- */

/* The session's fd is a socket and the kernel's file is not: every socket call on it is ENOTSOCK, as for any
 * other file (sockfd_lookup), and none reaches the session's connection — a recv would take the daemon's
 * replies, a send or a shutdown would end the session. */
#define NOT_A_SOCKET(fd, real_call) \
    do { \
        RESOLVE(); \
        if (lookup(fd)) { \
            errno = ENOTSOCK; \
            return -1; \
        } \
        return real_call; \
    } while (0)

#define REAL(name, ret, ...) static ret (*real_##name)(__VA_ARGS__)
REAL(send, ssize_t, int, const void *, size_t, int);
REAL(recv, ssize_t, int, void *, size_t, int);
REAL(sendto, ssize_t, int, const void *, size_t, int, const struct sockaddr *, socklen_t);
REAL(recvfrom, ssize_t, int, void *, size_t, int, struct sockaddr *, socklen_t *);
REAL(sendmsg, ssize_t, int, const struct msghdr *, int);
REAL(recvmsg, ssize_t, int, struct msghdr *, int);
REAL(sendmmsg, int, int, struct mmsghdr *, unsigned int, int);
REAL(recvmmsg, int, int, struct mmsghdr *, unsigned int, int, struct timespec *);
REAL(getsockopt, int, int, int, int, void *, socklen_t *);
REAL(setsockopt, int, int, int, int, const void *, socklen_t);
REAL(getsockname, int, int, struct sockaddr *, socklen_t *);
REAL(getpeername, int, int, struct sockaddr *, socklen_t *);
REAL(bind, int, int, const struct sockaddr *, socklen_t);
REAL(connect, int, int, const struct sockaddr *, socklen_t);
REAL(listen, int, int, int);
REAL(accept, int, int, struct sockaddr *, socklen_t *);
REAL(accept4, int, int, struct sockaddr *, socklen_t *, int);
REAL(shutdown, int, int, int);

static void resolve_socket_calls(void)
{
#define RESOLVE_ONE(name) real_##name = dlsym(RTLD_NEXT, #name)
    RESOLVE_ONE(send); RESOLVE_ONE(recv); RESOLVE_ONE(sendto); RESOLVE_ONE(recvfrom); RESOLVE_ONE(sendmsg);
    RESOLVE_ONE(recvmsg); RESOLVE_ONE(sendmmsg); RESOLVE_ONE(recvmmsg); RESOLVE_ONE(getsockopt); RESOLVE_ONE(setsockopt);
    RESOLVE_ONE(getsockname); RESOLVE_ONE(getpeername); RESOLVE_ONE(bind); RESOLVE_ONE(connect); RESOLVE_ONE(listen);
    RESOLVE_ONE(accept); RESOLVE_ONE(accept4); RESOLVE_ONE(shutdown);
#undef RESOLVE_ONE
}

ssize_t send(int fd, const void *b, size_t n, int flags) { NOT_A_SOCKET(fd, real_send(fd, b, n, flags)); }
ssize_t recv(int fd, void *b, size_t n, int flags) { NOT_A_SOCKET(fd, real_recv(fd, b, n, flags)); }
ssize_t sendto(int fd, const void *b, size_t n, int flags, const struct sockaddr *to, socklen_t len)
{
    NOT_A_SOCKET(fd, real_sendto(fd, b, n, flags, to, len));
}
ssize_t recvfrom(int fd, void *b, size_t n, int flags, struct sockaddr *from, socklen_t *len)
{
    NOT_A_SOCKET(fd, real_recvfrom(fd, b, n, flags, from, len));
}
ssize_t sendmsg(int fd, const struct msghdr *m, int flags) { NOT_A_SOCKET(fd, real_sendmsg(fd, m, flags)); }
ssize_t recvmsg(int fd, struct msghdr *m, int flags) { NOT_A_SOCKET(fd, real_recvmsg(fd, m, flags)); }
int sendmmsg(int fd, struct mmsghdr *m, unsigned int n, int flags) { NOT_A_SOCKET(fd, real_sendmmsg(fd, m, n, flags)); }
int recvmmsg(int fd, struct mmsghdr *m, unsigned int n, int flags, struct timespec *t) { NOT_A_SOCKET(fd, real_recvmmsg(fd, m, n, flags, t)); }
int getsockopt(int fd, int level, int name, void *v, socklen_t *len) { NOT_A_SOCKET(fd, real_getsockopt(fd, level, name, v, len)); }
int setsockopt(int fd, int level, int name, const void *v, socklen_t len) { NOT_A_SOCKET(fd, real_setsockopt(fd, level, name, v, len)); }
int getsockname(int fd, struct sockaddr *a, socklen_t *len) { NOT_A_SOCKET(fd, real_getsockname(fd, a, len)); }
int getpeername(int fd, struct sockaddr *a, socklen_t *len) { NOT_A_SOCKET(fd, real_getpeername(fd, a, len)); }
int bind(int fd, const struct sockaddr *a, socklen_t len) { NOT_A_SOCKET(fd, real_bind(fd, a, len)); }
int connect(int fd, const struct sockaddr *a, socklen_t len) { NOT_A_SOCKET(fd, real_connect(fd, a, len)); }
int listen(int fd, int backlog) { NOT_A_SOCKET(fd, real_listen(fd, backlog)); }
int accept(int fd, struct sockaddr *a, socklen_t *len) { NOT_A_SOCKET(fd, real_accept(fd, a, len)); }
int accept4(int fd, struct sockaddr *a, socklen_t *len, int flags) { NOT_A_SOCKET(fd, real_accept4(fd, a, len, flags)); }
int shutdown(int fd, int how) { NOT_A_SOCKET(fd, real_shutdown(fd, how)); }

/* ---- fstat: a character device ------------------------------------------------------------------------ */

/* The session's fd is a socket; fstat — and fstatat or statx of the fd itself (AT_EMPTY_PATH, path "") —
 * report the device node the VMM opened: a character device, mode crw-------, its minor the path's number.
 * vdpad's devices have no device number, so the major is 0; the inode and times stay the socket's. */
static int node_stat(const char *path, struct stat *st);

static int as_device(int fd, int r, struct stat *st)
{
    struct session *s = r == 0 ? acquire(fd) : NULL;
    if (s) {
        st->st_mode = S_IFCHR | S_IRUSR | S_IWUSR;
        st->st_rdev = makedev(0, s->minor);
        st->st_size = 0;
        release(s);
    }
    return r;
}

int fstat(int fd, struct stat *st) { RESOLVE(); return as_device(fd, real_fstat(fd, st), st); }
int __fxstat(int ver, int fd, struct stat *st) { RESOLVE(); return as_device(fd, real___fxstat(ver, fd, st), st); }
/* On x86-64 struct stat64 is struct stat. */
int fstat64(int fd, struct stat64 *st) { RESOLVE(); return as_device(fd, real_fstat64(fd, st), (struct stat *)st); }
int __fxstat64(int ver, int fd, struct stat64 *st) { RESOLVE(); return as_device(fd, real___fxstat64(ver, fd, st), (struct stat *)st); }

/* Whether a *at call names the fd itself: AT_EMPTY_PATH with "" (read only once the real call succeeded). */
static int the_fd_itself(int r, const char *path, int flags) { return r == 0 && (flags & AT_EMPTY_PATH) && path[0] == 0; }

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
    RESOLVE();
    int r = node_stat(path, st);
    if (r != -2) return r;
    r = real_fstatat(dirfd, path, st, flags);
    return the_fd_itself(r, path, flags) ? as_device(dirfd, r, st) : r;
}

int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
    RESOLVE();
    int r = node_stat(path, (struct stat *)st);
    if (r != -2) return r;
    r = real_fstatat64(dirfd, path, st, flags);
    return the_fd_itself(r, path, flags) ? as_device(dirfd, r, (struct stat *)st) : r;
}

/* statx's view of the device node whose minor is `minor`. */
static void device_statx(struct statx *stx, unsigned int minor)
{
    stx->stx_mode = S_IFCHR | S_IRUSR | S_IWUSR;
    stx->stx_rdev_major = 0;
    stx->stx_rdev_minor = minor;
    stx->stx_size = 0;
}

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
    RESOLVE();
    char device[64];
    if (mapped_device(path, device, sizeof(device))) {
        struct statx node = { .stx_mask = STATX_BASIC_STATS, .stx_nlink = 1, .stx_uid = geteuid(), .stx_gid = getegid(),
                              .stx_blksize = 4096 };
        device_statx(&node, path_minor(path));
        return copy_to_vmm(stx, &node, sizeof(node)) ? fail(EFAULT) : 0;
    }
    int r = real_statx(dirfd, path, flags, mask, stx);
    struct session *s = the_fd_itself(r, path, flags) ? acquire(dirfd) : NULL;
    if (s) {
        device_statx(stx, s->minor);
        release(s);
    }
    return r;
}

/* ---- /proc/self/fd/N: the path the VMM opened ----------------------------------------------------------- */

/* The session named by a /proc/self/fd/N (or /proc/PID/fd/N of this process) link, or NULL; held. */
static struct session *fd_link_session(const char *path)
{
    int fd, end = 0;
    char self[32];
    if (sscanf(path, "/proc/self/fd/%d%n", &fd, &end) != 1 || path[end]) {
        snprintf(self, sizeof(self), "/proc/%d/fd/", (int)getpid());
        size_t n = strlen(self);
        end = 0;
        if (strncmp(path, self, n) != 0 || sscanf(path + n, "%d%n", &fd, &end) != 1 || path[n + end]) return NULL;
    }
    return acquire(fd);
}

/* readlink of a session's fd link names the device node, as for the kernel's file, not "socket:[inode]":
 * the bytes that fit, unterminated; a buffer of no bytes EINVAL, one that cannot be written EFAULT. */
static ssize_t session_link(struct session *s, char *buf, size_t size)
{
    size_t n = strlen(s->path) < size ? strlen(s->path) : size;
    int err = size == 0 ? EINVAL : copy_to_vmm(buf, s->path, n);
    release(s);
    return err ? fail(err) : (ssize_t)n;
}

ssize_t readlink(const char *path, char *buf, size_t size)
{
    RESOLVE();
    struct session *s = fd_link_session(path);
    return s ? session_link(s, buf, size) : real_readlink(path, buf, size);
}

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
    RESOLVE();
    struct session *s = path[0] == '/' ? fd_link_session(path) : NULL;
    return s ? session_link(s, buf, size) : real_readlinkat(dirfd, path, buf, size);
}

ssize_t __readlink_chk(const char *path, char *buf, size_t size, size_t room)
{
    if (size > room) __chk_fail();
    return readlink(path, buf, size);
}

ssize_t __readlinkat_chk(int dirfd, const char *path, char *buf, size_t size, size_t room)
{
    if (size > room) __chk_fail();
    return readlinkat(dirfd, path, buf, size);
}

/* ---- the device's path: a node as devtmpfs would have it ------------------------------------------------ */

/* A path taken over (VDPAD_VHOST_DEVICES) names no file on the host; stat and access find the device node the
 * kernel's vhost-vdpa would have made: a character device, mode crw------- and owned by whoever runs the VMM
 * (the open must succeed for it), minor the path's number, major 0 as fstat says.  Answers 0 with `st` filled
 * (-1 and EFAULT when it cannot be written), or -2 for any other path. */
static int node_stat(const char *path, struct stat *st)
{
    char device[64];
    if (!path || !mapped_device(path, device, sizeof(device))) return -2;
    struct stat node = { .st_mode = S_IFCHR | S_IRUSR | S_IWUSR, .st_nlink = 1, .st_uid = geteuid(), .st_gid = getegid(),
                         .st_rdev = makedev(0, path_minor(path)), .st_blksize = 4096 };
    return copy_to_vmm(st, &node, sizeof(node)) ? fail(EFAULT) : 0;
}

#define NODE_OR(path, st, real_call) \
    do { \
        RESOLVE(); \
        int r_ = node_stat(path, (struct stat *)(st)); \
        return r_ != -2 ? r_ : real_call; \
    } while (0)

int stat(const char *path, struct stat *st) { NODE_OR(path, st, real_stat(path, st)); }
int lstat(const char *path, struct stat *st) { NODE_OR(path, st, real_lstat(path, st)); }
int stat64(const char *path, struct stat64 *st) { NODE_OR(path, st, real_stat64(path, st)); }
int lstat64(const char *path, struct stat64 *st) { NODE_OR(path, st, real_lstat64(path, st)); }
int __xstat(int ver, const char *path, struct stat *st) { NODE_OR(path, st, real___xstat(ver, path, st)); }
int __lxstat(int ver, const char *path, struct stat *st) { NODE_OR(path, st, real___lxstat(ver, path, st)); }

/* Read and write are the owner's; a node with no execute bit is EACCES to X_OK, even for root. */
static int node_access(const char *path, int mode)
{
    char device[64];
    if (!path || !mapped_device(path, device, sizeof(device))) return -2;
    if (mode & X_OK) {
        errno = EACCES;
        return -1;
    }
    return 0;
}

int access(const char *path, int mode) { RESOLVE(); int r = node_access(path, mode); return r != -2 ? r : real_access(path, mode); }
int faccessat(int dirfd, const char *path, int mode, int flags)
{
    RESOLVE();
    int r = node_access(path, mode);
    return r != -2 ? r : real_faccessat(dirfd, path, mode, flags);
}


/* ---- mmap: the notification area (R68), and the VMM's shared file mappings -- */

static void *mmap_common(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    RESOLVE();
    if (!lookup(fd)) {
        if (flags & MAP_FIXED)
            forget_mappings(addr, len);  /* replaced: vdpad must stop using what was there */
        void *mapped = real_mmap(addr, len, prot, flags, fd, off);
        note_mapping(mapped, len, flags, fd, off);
        return mapped;
    }
    long page = sysconf(_SC_PAGESIZE);
    if (len != (size_t)page || !(flags & MAP_SHARED) || (prot & PROT_READ) || off / page > 65535) {
        errno = EINVAL;
        return MAP_FAILED;
    }
    errno = 524;  /* ENOTSUPP: vdpa_sim has no doorbell to map; the VMM falls back to the kick eventfd */
    return MAP_FAILED;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) { return mmap_common(addr, len, prot, flags, fd, off); }
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) { return mmap_common(addr, len, prot, flags, fd, off); }

int munmap(void *addr, size_t len)
{
    RESOLVE();
    forget_mappings(addr, len);
    return real_munmap(addr, len);
}

void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    void *target = flags & MREMAP_FIXED ? va_arg(ap, void *) : NULL;
    va_end(ap);
    RESOLVE();
    forget_mappings(old, old_len);  /* a moved or resized region is shared again only if it is mapped anew */
    if (flags & MREMAP_FIXED)
        forget_mappings(target, new_len);
    return flags & MREMAP_FIXED ? real_mremap(old, old_len, new_len, flags, target) : real_mremap(old, old_len, new_len, flags);
}
