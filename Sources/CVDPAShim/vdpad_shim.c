/* vdpad_shim.c — see include/vdpad_shim.h. */
#define _GNU_SOURCE
#include "vdpad_shim.h"

#include <sys/eventfd.h>
#include <sys/uio.h>

int vdpad_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

ssize_t vdpad_process_vm_readv(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                               const struct iovec *remote, unsigned long riovcnt) {
    return process_vm_readv(pid, local, liovcnt, remote, riovcnt, 0);
}

ssize_t vdpad_process_vm_writev(pid_t pid, const struct iovec *local, unsigned long liovcnt,
                                const struct iovec *remote, unsigned long riovcnt) {
    return process_vm_writev(pid, local, liovcnt, remote, riovcnt, 0);
}
