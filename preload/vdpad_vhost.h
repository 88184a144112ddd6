/*
 * vdpad_vhost.h — what the parts of libvdpad-vhost.so share (not installed).
 *
 * libvdpad-vhost.so makes vdpad's devices look like /dev/vhost-vdpa-N to an
 * unmodified VMM (QEMU), the way umockdev lets programs talk to mocked
 * devices.  Loaded with LD_PRELOAD into the VMM's process, so it is C with
 * no runtime of its own: libc, libdl and json-c for the replies (json-c reads
 * integers up to 2^64−1 exactly, which the replies use: iova_last, masks).
 *
 * Only the paths named in VDPAD_VHOST_DEVICES ("/dev/vhost-vdpa-0=vdpa0,…")
 * are taken over.  open() connects to vdpad (VDPAD_SOCKET, else the system
 * socket, then the per-user one) and calls its `open` method, so a device
 * owned elsewhere fails right there with EBUSY, as the kernel's open does
 * (R34).  The fd the VMM gets is that connection's socket, and the session
 * talks on a close-on-exec dup of its own, so the connection lives as long as
 * the VMM holds any name for it (a dup, the original closed) and no longer: a
 * VMM that exits without close() releases the device, because the daemon sees
 * the EOF.
 * Each vhost / vhost-vdpa ioctl becomes its JSON-RPC method, with the
 * kernel's struct layouts in and out and the kernel's errno; write() takes
 * struct vhost_msg / vhost_msg_v2 with R1's framing (so do writev and pwrite;
 * reads, poll, epoll, fstat, F_GETFL and socket calls answer as for the
 * kernel's file, none reaching the connection); kick and call eventfds
 * travel with SCM_RIGHTS.  Everything else passes through untouched.
 *
 * The parts, one file each:
 *   interpose.c  the libc entry points taken over (open, close, dup, fcntl, ioctl, the reads and writes, poll,
 *                select, epoll_ctl, the socket calls, fstat, mmap, munmap, mremap)
 *   session.c    sessions and the fd table, the configuration, the connection to vdpad
 *   rpc.c        one JSON-RPC exchange: send, read the reply, the kernel's errno
 *   ioctl.c      the ioctl table and the IOTLB write() path: the kernel's structs to methods
 *   file.c       the file's other calls as the VFS answers them: reads, gathered writes, poll, select, epoll
 *   record.c     VDPAD_VHOST_RECORD: every call as a JSON line
 *   store.c      the store agent: ring-index stores vdpad asks for, inside this process
 *   memory.c     the VMM's shared file mappings, shared with vdpad so its data path needs no system call
 *
 * Thread safety: one mutex guards the fd table, one per session guards its
 * request/reply exchange (QEMU issues ioctls from its main and vCPU threads).
 */
#ifndef VDPAD_VHOST_H
#define VDPAD_VHOST_H

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vdpad_vhost_abi.h"

/* Every function shared between the parts stays inside the library; one part's own are static. */
#define HIDDEN __attribute__((visibility("hidden")))

/* ---- the real libc entry points (interpose.c) ---- */
extern HIDDEN int (*real_open)(const char *, int, ...);
extern HIDDEN int (*real_openat)(int, const char *, int, ...);
extern HIDDEN int (*real_close)(int);
extern HIDDEN int (*real_close_range)(unsigned int, unsigned int, int);
extern HIDDEN int (*real_ioctl)(int, unsigned long, ...);
extern HIDDEN ssize_t (*real_write)(int, const void *, size_t);
extern HIDDEN int (*real_poll)(struct pollfd *, nfds_t, int);
extern HIDDEN int (*real_ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
extern HIDDEN int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
extern HIDDEN int (*real_pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *);
extern HIDDEN void *(*real_mmap)(void *, size_t, int, int, int, off_t);
extern HIDDEN int (*real_munmap)(void *, size_t);
extern HIDDEN void *(*real_mremap)(void *, size_t, size_t, int, ...);
extern HIDDEN int (*real_dup)(int);
extern HIDDEN int (*real_dup2)(int, int);
extern HIDDEN int (*real_dup3)(int, int, int);
extern HIDDEN int (*real_fcntl)(int, int, ...);
extern HIDDEN unsigned long forks;
HIDDEN void resolve_real(void);
#define RESOLVE() resolve_real()

/* ---- sessions (session.c) ---- */

struct session {
    int sock;                    /* the connection, a descriptor of the session's own (the VMM's fds are others) */
    int refs;                    /* fds that name this session */
    int access_mode;             /* open's O_ACCMODE bits, which F_GETFL reports */
    int readable, writable;      /* the access mode's FMODE_READ and FMODE_WRITE: reads are EBADF without the
                                    first, IOTLB messages need the second */
    pthread_mutex_t lock;        /* one exchange at a time */
    char device[64];
    char path[256];              /* the path the VMM opened, which /proc/self/fd/N names (readlink) */
    unsigned long long next_id;
    char *buf;                   /* bytes read and not yet consumed */
    size_t buf_len, buf_cap;
    pid_t opener;                /* the process whose open() made the session (0 until the daemon said yes) */
    unsigned long forks_at_open; /* `forks` when it opened: a fork since may have given a child the file */
    pid_t owner;                 /* the process that called VHOST_SET_OWNER (0: none yet; a second one is EBUSY,
                                    and a forked child is not the owner, R42: vhost's owner is an mm) */
    uint64_t acked_backend;      /* for R1: the v2 asid counts only with IOTLB_ASID acked */
    uint32_t device_id, nvqs, ngroups, nas, config_size, vq_num_max;
    uint32_t *busyloop;          /* per vq: vhost stores the value and never uses it (R44) */
    struct timespec opened;      /* for the record's times */
    int reply_wait_ms;           /* how long a reply may take (0: as long as it takes): the last close's bound */
    unsigned long long record_base;  /* the first host address mapped (anonymised records) */
    uint64_t iova_first, iova_last;
    unsigned int minor;          /* the number the device's path ends with, fstat's minor */
    uint64_t *shared_ids;        /* the shared regions vdpad was given for this session (memory.c) */
    size_t shared_count;         /* guarded by lock */
};

/* ---- shared functions, by the file that defines them (interpose.c's are above) ---- */

/* session.c */
HIDDEN int table_extent(void);
HIDDEN int any_named(void);
HIDDEN struct session *lookup(int fd);
HIDDEN void session_free(struct session *s);
HIDDEN struct session *acquire(int fd);
HIDDEN void release(struct session *s);
HIDDEN void bind_fd(int fd, struct session *s);
HIDDEN int mapped_device(const char *path, char *out, size_t out_size);
HIDDEN void say(const char *fmt, ...);
HIDDEN int connect_daemon(int cloexec, char *tried, size_t tried_size);
HIDDEN void for_each_session(void (*body)(struct session *, void *), void *context);

/* rpc.c */
HIDDEN json_object *member(json_object *o, const char *key);
HIDDEN json_object *call(struct session *s, const char *method, int pass_fd, int *err, const char *fmt, ...);
HIDDEN int simple(struct session *s, const char *method, const char *fmt, ...);
HIDDEN uint64_t u64_of(json_object *o, const char *key);

/* record.c */
HIDDEN void record(struct session *s, const char *method, const char *params, json_object *reply);

/* store.c */
HIDDEN void start_store_agent(struct session *s);

/* memory.c */
HIDDEN void note_mapping(void *addr, size_t len, int flags, int fd, off_t off);
HIDDEN void forget_mappings(void *addr, size_t len);
HIDDEN void share_covering(struct session *s, uint64_t uaddr, uint64_t size);

/* ioctl.c */
HIDDEN int fail(int err);
HIDDEN int needs_owner(unsigned long request);
HIDDEN int owns(const struct session *s);
HIDDEN int copy_from_vmm(void *to, const void *from, size_t n);
HIDDEN int copy_to_vmm(void *to, const void *from, size_t n);
HIDDEN int vdpa_ioctl(struct session *s, unsigned long request, void *arg);
HIDDEN ssize_t iotlb_write(struct session *s, const struct iovec *iov, int count, size_t total);

/* file.c */
HIDDEN ssize_t file_read(const struct session *s);
HIDDEN ssize_t file_write(struct session *s, const void *buf, size_t count);
HIDDEN ssize_t file_writev(struct session *s, const struct iovec *iov, int count, int flags);
HIDDEN int file_poll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask);
HIDDEN int file_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv, const struct timespec *timeout,
                       const sigset_t *mask, int is_pselect);
HIDDEN int file_epoll_ctl(int epfd, int op, const struct epoll_event *event);

#endif
