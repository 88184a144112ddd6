/* vdpad_shim.h — the few Linux calls Swift's Glibc module does not export
 * (<sys/eventfd.h>, process_vm_readv/writev of <sys/uio.h> behind _GNU_SOURCE),
 * declared here so the data path calls them directly instead of looking them
 * up with dlsym; and the accesses to a VMM's shared memory that must survive
 * the VMM truncating the file under them (SIGBUS) and be single atomic
 * stores and loads (ring indexes), which Swift cannot express on raw memory. */
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

/* Copies `n` bytes from `src` to `dst` where one of them is a VMM's shared file mapping: 0, or -1 when
 * the access faulted (SIGBUS: the VMM truncated the file under the mapping).  The fault is caught in the
 * calling thread only; a SIGBUS anywhere else still ends the process as it would without vdpad. */
int vdpad_guarded_copy(void *dst, const void *src, size_t n);

/* Zeroes `n` bytes at `dst` in a shared file mapping (a RAM disk's file): 0, or -1 when it faulted (as above). */
int vdpad_guarded_zero(void *dst, size_t n);

/* A ring index in shared memory: a 16-bit load with acquire order (the driver's avail idx, before the
 * entries it publishes), a 16-bit store with release order (the used idx, after the entries): the virtio
 * spec's barriers.  `address` must be 2-aligned.  0, or -1 when the access faulted (as above). */
int vdpad_guarded_load_acquire_u16(const void *address, unsigned short *value);
int vdpad_guarded_store_release_u16(void *address, unsigned short value);

/* The ring walker's fixed-size accesses in shared memory, each a plain load or store rather than a copy (whose
 * start-up costs more than a 16-byte move): a descriptor's 16 bytes read into `out`, a used element's 8 bytes
 * written.  0, or -1 when the access faulted (as above). */
int vdpad_guarded_load_16_bytes(const void *address, void *out);
int vdpad_guarded_store_u64(void *address, unsigned long long value);

/* open(2)'s O_NOATIME (fcntl.h declares it only with _GNU_SOURCE): a file read without stamping its access time. */
#define VDPAD_O_NOATIME 01000000

/* memfd_create(2) with MFD_CLOEXEC: the journal, inbox and outbox files a restart keeps (docs/restart.md). */
int vdpad_memfd(const char *name);

/* A journal's committed length in its shared mapping: stored with release order after the records it covers,
 * read with acquire order — a process that dies at any instruction leaves either length, never a torn one. */
void vdpad_store_release_u64(void *address, unsigned long long value);
unsigned long long vdpad_load_acquire_u64(const void *address);

#endif
