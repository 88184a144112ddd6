/* file.c — the file's other calls, answered as the VFS answers them for vhost-vdpa, whose file operations are
 * write_iter, unlocked_ioctl and mmap, and nothing else: no read, no poll, no llseek.  So
 *   reads       EBADF on a file not opened for reading, else EINVAL (the VFS finds no way to read);
 *   writes      write, writev, pwrite, pwritev(2) carry one IOTLB message, gathered across the pieces (ioctl.c);
 *   poll/select the file is always ready to read and to write (the VFS's DEFAULT_POLLMASK), never for more;
 *   epoll_ctl   EPERM: epoll watches only files that can be polled.
 * Without these the VMM's calls would reach the session's socket: a read would take the daemon's replies, a
 * writev would put raw bytes into the JSON-RPC stream, poll would find the file not readable.  Each is checked
 * in the VFS's order (tests/kernel/vhost_probe.c, section J, holds them to Linux 6.12's answers). */
#include "vdpad_vhost.h"

#define MAX_IOVECS 1024                                  /* UIO_MAXIOV */
#define MAX_RW_COUNT ((size_t)0x7ffff000)                /* INT_MAX & PAGE_MASK: the most one write moves */
#define USER_END (((uintptr_t)1 << 47) - 4096)           /* x86-64's TASK_SIZE_MAX with 4-level paging */
#define ALWAYS_READY (POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM)  /* DEFAULT_POLLMASK */

/* access_ok: the range lies in user space (whether anything is mapped there is the copy's to find). */
static int user_range(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p, e = a + n;
    return e >= a && e <= USER_END;
}

HIDDEN ssize_t file_read(const struct session *s)
{
    return fail(s->readable ? EINVAL : EBADF);
}

/* vfs_write: the access mode, then the buffer's range and the count, before vhost reads the message. */
HIDDEN ssize_t file_write(struct session *s, const void *buf, size_t count)
{
    if (!s->writable) return fail(EBADF);
    if (!user_range(buf, count)) return fail(EFAULT);
    if ((ssize_t)count < 0) return fail(EINVAL);
    struct iovec one = { (void *)buf, count < MAX_RW_COUNT ? count : MAX_RW_COUNT };
    return iotlb_write(s, &one, 1, one.iov_len);
}

/* kiocb_set_rw_flags for pwritev2's flags on this file: RWF_HIPRI, DSYNC, SYNC, APPEND and NOAPPEND are taken
 * (not both of the last two); NOWAIT and ATOMIC need what the file does not have (FMODE_NOWAIT,
 * FMODE_CAN_ATOMIC_WRITE), and Linux 6.12 knows no other. */
static int rw_flags_error(int flags)
{
    if (flags & ~0x7f) return EOPNOTSUPP;
    if ((flags & 0x30) == 0x30) return EINVAL;          /* RWF_APPEND | RWF_NOAPPEND */
    return flags & (0x08 | 0x40) ? EOPNOTSUPP : 0;      /* RWF_NOWAIT, RWF_ATOMIC */
}

/* vfs_writev: the access mode, then import_iovec (at most UIO_MAXIOV pieces, the array copied in — EFAULT —,
 * no negative length — EINVAL —, each piece in user space — EFAULT); nothing to write is 0, without vhost;
 * then pwritev2's `flags`. */
HIDDEN ssize_t file_writev(struct session *s, const struct iovec *uiov, int count, int flags)
{
    if (!s->writable) return fail(EBADF);
    if ((unsigned)count > MAX_IOVECS) return fail(EINVAL);
    struct iovec stack[8], *iov = (size_t)count <= sizeof(stack) / sizeof(stack[0]) ? stack : malloc(sizeof(*iov) * count);
    if (!iov) return fail(ENOMEM);
    int err = copy_from_vmm(iov, uiov, sizeof(*iov) * count);
    for (int k = 0; k < count && !err; k++)
        if ((ssize_t)iov[k].iov_len < 0) err = EINVAL;
    size_t total = 0;
    for (int k = 0; k < count && !err; k++) {
        if (!user_range(iov[k].iov_base, iov[k].iov_len)) err = EFAULT;
        if (iov[k].iov_len > MAX_RW_COUNT - total) iov[k].iov_len = MAX_RW_COUNT - total;
        total += iov[k].iov_len;
    }
    if (!err && total > 0) err = rw_flags_error(flags);
    ssize_t r = err ? fail(err) : total == 0 ? 0 : iotlb_write(s, iov, count, total);
    int saved = errno;
    if (iov != stack) free(iov);
    errno = saved;
    return r;
}

/* ---- poll and select ---------------------------------------------------------------------------------- */

/* A copy of the VMM's array, on the stack while small: poll's pollfds, select's bitmaps. */
struct scratch {
    void *p;
    unsigned char small[512];
};

static void *scratch_take(struct scratch *sc, size_t n)
{
    sc->p = n <= sizeof(sc->small) ? sc->small : malloc(n);
    return sc->p;
}

static void scratch_drop(struct scratch *sc)
{
    if (sc->p != sc->small) free(sc->p);
}

/* The arrays of poll and select are read in place, unlike an ioctl's argument (copied with process_vm_readv,
 * so that a bad pointer is EFAULT, ioctl.c): they are the VMM's main loop's, polled thousands of times a second,
 * where a copy would add 2 µs to a ppoll of 1.5 µs over 20 fds and the look in place costs 40–80 ns
 * (scripts/bench-preload.sh).  An array outside user space or NULL goes to the real call for its EFAULT; one
 * that is unmapped faults here where the kernel would answer EFAULT (docs/vmm.md). */
static int names_a_session(const struct pollfd *fds, nfds_t n)
{
    for (nfds_t k = 0; k < n; k++)
        if (fds[k].fd >= 0 && lookup(fds[k].fd)) return 1;
    return 0;
}

/* poll and ppoll (timeout NULL: as long as it takes) over an array naming sessions: each session's entry
 * answers at once with the events it asked for that the file always has; the other entries are polled by the
 * kernel, without waiting if a session answered.  Answers -2 when the array names no session — the caller
 * makes the real call. */
HIDDEN int file_poll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
    struct scratch sc;
    if (n > 65536 || !fds || !user_range(fds, sizeof(*fds) * n) || !names_a_session(fds, n)) return -2;
    struct pollfd *mine = scratch_take(&sc, (sizeof(*mine) + sizeof(short)) * n);
    if (!mine) return -2;
    memcpy(mine, fds, sizeof(*mine) * n);
    int sessions = 0, ready = 0;
    short *answers = (short *)(mine + n);  /* each session's revents; -1 for the kernel's entries */
    for (nfds_t k = 0; k < n; k++) {
        answers[k] = -1;
        if (mine[k].fd < 0 || !lookup(mine[k].fd)) continue;
        answers[k] = mine[k].events & ALWAYS_READY;
        ready += answers[k] != 0;
        sessions++;
        mine[k].fd = -1;  /* the kernel leaves an entry with a negative fd alone (revents 0) */
    }
    if (!sessions) {
        scratch_drop(&sc);
        return -2;
    }
    static const struct timespec now = { 0, 0 };
    int r = real_ppoll(mine, n, ready ? &now : timeout, mask);
    int saved = errno;
    if (r >= 0) {
        for (nfds_t k = 0; k < n; k++)
            if (answers[k] >= 0) {
                mine[k].fd = fds[k].fd;
                mine[k].revents = answers[k];
            }
        memcpy(fds, mine, sizeof(*mine) * n);
        r += ready;
    }
    scratch_drop(&sc);
    errno = saved;
    return r;
}

/* select and pselect: a session in the read or write set is ready in it at once (never in the exception set,
 * which asks for POLLPRI); the other descriptors are the kernel's, without waiting if a session was ready.
 * select waits `tv` (the kernel writes the time left back into it), pselect `timeout` with `mask`.  -2 as
 * file_poll. */
HIDDEN int file_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv, const struct timespec *timeout,
                       const sigset_t *mask, int is_pselect)
{
    if (nfds <= 0 || nfds > 65536) return -2;
    size_t words = ((size_t)nfds + 63) / 64, bytes = words * 8;
    fd_set *sets[3] = { rd, wr, ex };
    struct scratch sc;
    uint64_t *copy = scratch_take(&sc, 5 * bytes);  /* the three sets, then the sessions found in two of them */
    if (!copy) return -2;
    for (int k = 0; k < 3; k++) {
        if (sets[k] && !user_range(sets[k], bytes)) {
            scratch_drop(&sc);
            return -2;
        }
        if (sets[k]) memcpy(copy + k * words, sets[k], bytes);
        else memset(copy + k * words, 0, bytes);
    }
    /* Which session descriptors each of the read and write sets holds: taken out for the kernel's call. */
    int ready = 0, sessions = 0;
    uint64_t *rd_bits = copy, *wr_bits = copy + words;
    uint64_t *found[2] = { copy + 3 * words, copy + 4 * words };
    memset(found[0], 0, 2 * bytes);
    for (int fd = 0; fd < nfds; fd++) {
        uint64_t bit = 1ULL << (fd % 64);
        int in_rd = (rd_bits[fd / 64] & bit) != 0, in_wr = (wr_bits[fd / 64] & bit) != 0;
        int in_ex = (copy[2 * words + fd / 64] & bit) != 0;
        if (!(in_rd || in_wr || in_ex) || !lookup(fd)) continue;
        sessions++;
        if (in_rd) found[0][fd / 64] |= bit, ready++;
        if (in_wr) found[1][fd / 64] |= bit, ready++;
        rd_bits[fd / 64] &= ~bit;
        wr_bits[fd / 64] &= ~bit;
        copy[2 * words + fd / 64] &= ~bit;
    }
    if (!sessions) {
        scratch_drop(&sc);
        return -2;
    }
    fd_set *mine[3];
    for (int k = 0; k < 3; k++)
        mine[k] = sets[k] ? (fd_set *)(void *)(copy + k * words) : NULL;
    static const struct timespec now_ts = { 0, 0 };
    struct timeval now_tv = { 0, 0 };
    int r = is_pselect ? real_pselect(nfds, mine[0], mine[1], mine[2], ready ? &now_ts : timeout, mask)
                       : real_select(nfds, mine[0], mine[1], mine[2], ready ? &now_tv : tv);
    int saved = errno;
    if (r >= 0) {
        for (size_t w = 0; w < words; w++) {
            rd_bits[w] |= found[0][w];
            wr_bits[w] |= found[1][w];
        }
        r += ready;
        for (int k = 0; k < 3; k++)
            if (sets[k]) memcpy(sets[k], copy + k * words, bytes);
    }
    scratch_drop(&sc);
    errno = saved;
    return r;
}

/* epoll_ctl on a session: the event is copied in first (ADD, MOD: EFAULT), then the epoll fd is looked up
 * (EBADF), then the file is found unpollable (EPERM), for every op. */
HIDDEN int file_epoll_ctl(int epfd, int op, const struct epoll_event *event)
{
    struct epoll_event ev;
    if ((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && copy_from_vmm(&ev, event, sizeof(ev))) return fail(EFAULT);
    if (real_fcntl(epfd, F_GETFD) < 0) return fail(EBADF);
    return fail(EPERM);
}
