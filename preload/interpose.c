/* interpose.c — the libc entry points libvdpad-vhost.so takes over for the paths it serves
 * (open, close, dup, fcntl, ioctl, write, mmap) and to follow the VMM's shared file mappings
 * (mmap, munmap, mremap: memory.c); everything else passes to the real ones. */
#include "vdpad_vhost.h"

/* ---- the real libc entry points ---------------------------------------- */

HIDDEN int (*real_open)(const char *, int, ...);
HIDDEN int (*real_openat)(int, const char *, int, ...);
HIDDEN int (*real_close)(int);
HIDDEN int (*real_close_range)(unsigned int, unsigned int, int);
HIDDEN int (*real_ioctl)(int, unsigned long, ...);
HIDDEN ssize_t (*real_write)(int, const void *, size_t);
HIDDEN void *(*real_mmap)(void *, size_t, int, int, int, off_t);
HIDDEN int (*real_munmap)(void *, size_t);
HIDDEN void *(*real_mremap)(void *, size_t, size_t, int, ...);
HIDDEN int (*real_dup)(int);
HIDDEN int (*real_dup2)(int, int);
HIDDEN int (*real_dup3)(int, int, int);
HIDDEN int (*real_fcntl)(int, int, ...);

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

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
    real_mmap = dlsym(RTLD_NEXT, "mmap");
    real_munmap = dlsym(RTLD_NEXT, "munmap");
    real_mremap = dlsym(RTLD_NEXT, "mremap");
    real_dup = dlsym(RTLD_NEXT, "dup");
    real_dup2 = dlsym(RTLD_NEXT, "dup2");
    real_dup3 = dlsym(RTLD_NEXT, "dup3");
    real_fcntl = dlsym(RTLD_NEXT, "fcntl");
    pthread_atfork(NULL, forked, NULL);
}

HIDDEN void resolve_real(void) { pthread_once(&resolve_once, resolve); }


/* ---- open ---------------------------------------------------------------- */

static int open_session(const char *device, int flags)
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
    s->writable = (flags & O_ACCMODE) != O_RDONLY;
    start_store_agent(s);
    bind_fd(sock, s);
    return sock;
}

static int open_common(const char *path, int flags, mode_t mode, int dirfd, int at)
{
    char device[64];
    RESOLVE();
    if (mapped_device(path, device, sizeof(device)))
        return open_session(device, flags);
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

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    RESOLVE();
    int r = real_fcntl(fd, cmd, arg);
    if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0)
        duplicated(fd, r);
    return r;
}

int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));


int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    RESOLVE();
    struct session *s = acquire(fd);
    if (!s)
        return real_ioctl(fd, request, arg);
    int r;
    /* The VFS answers these itself, for any file: close-on-exec and O_NONBLOCK are the descriptor's and the
     * file's own flags, which the VMM's socket holds as the device's file would; FIOASYNC would need a fasync
     * that vhost-vdpa does not have (ENOTTY to turn it on, nothing to turn it off).  Every other command, of
     * whatever type, is vhost-vdpa's to answer, as an unknown one when it is not its own (R43). */
    if (request == FIOCLEX || request == FIONCLEX || request == FIONBIO)
        r = real_ioctl(fd, request, arg);
    else if (request == FIOASYNC) {
        int on;
        r = copy_from_vmm(&on, arg, sizeof(on)) ? fail(EFAULT) : on ? fail(ENOTTY) : 0;
    } else if (needs_owner(request) && !owns(s))
        r = fail(EPERM);  /* before the argument is read, as vhost_dev_ioctl checks the owner first (R41, R42) */
    else  /* the argument is copied in and out as the kernel does: an address it cannot reach is EFAULT */
        r = vdpa_ioctl(s, request, arg);
    int saved = errno;
    release(s);
    errno = saved;
    return r;
}

/* ---- write: the IOTLB messages (B1) --------------------------------------- */

ssize_t write(int fd, const void *buf, size_t count)
{
    RESOLVE();
    struct session *s = acquire(fd);
    if (!s)
        return real_write(fd, buf, count);
    /* The VFS refuses a write to a file not opened for writing before vhost sees it. */
    ssize_t r = s->writable ? iotlb_write(s, buf, count) : fail(EBADF);
    int saved = errno;
    release(s);
    errno = saved;
    return r;
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
