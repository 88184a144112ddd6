/* vdpad_shim.h — the few Linux calls Swift's Glibc module does not export
 * (<sys/eventfd.h>, process_vm_readv/writev of <sys/uio.h> behind _GNU_SOURCE),
 * declared here so the data path calls them directly instead of looking them
 * up with dlsym. */
#ifndef VDPAD_SHIM_H
#define VDPAD_SHIM_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* eventfd(2): a counter file descriptor (EFD_CLOEXEC | EFD_NONBLOCK as `flags` allows). */
int vdpad_eventfd(unsigned int initval, int flags);

/* process_vm_readv(2) / process_vm_writev(2): copy between this process and `pid`. */
ssize_t vdpad_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                               const struct iovec *remote, unsigned long riovcnt);
ssize_t vdpad_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                                const struct iovec *remote, unsigned long riovcnt);

#endif
