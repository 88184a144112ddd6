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

/* ---- guarded access to shared guest memory ------------------------------- */

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>

/* The thread's landing point while it copies from or to a shared mapping; NULL outside a copy. */
static __thread sigjmp_buf *guard;
/* What SIGBUS did before (the Swift runtime's backtracer, or the default): a fault outside a copy gets it. */
static struct sigaction previous;

static void on_sigbus(int signo, siginfo_t *info, void *context)
{
    (void)info;
    (void)context;
    if (guard)
        siglongjmp(*guard, 1);  /* SA_NODEFER: SIGBUS is not left blocked in this thread */
    /* Not ours: the handler from before, as if this one never existed (the fault repeats when this returns). */
    sigaction(signo, &previous, NULL);
}

static void install(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &previous);
}

static pthread_once_t installed = PTHREAD_ONCE_INIT;

/* The mask is not saved (sigsetjmp's second argument 0): a system call per copy would cost more than a
 * 64-byte frame's copy, and SA_NODEFER leaves nothing to restore. */
#define GUARDED(body) \
    do { \
        sigjmp_buf landing; \
        pthread_once(&installed, install); \
        if (sigsetjmp(landing, 0)) { \
            guard = NULL; \
            return -1; \
        } \
        guard = &landing; \
        __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the access stays between the two stores to guard */ \
        body; \
        __atomic_signal_fence(__ATOMIC_SEQ_CST); \
        guard = NULL; \
        return 0; \
    } while (0)

int vdpad_guarded_copy(void *dst, const void *src, size_t n) { GUARDED(memcpy(dst, src, n)); }

int vdpad_guarded_zero(void *dst, size_t n) { GUARDED(memset(dst, 0, n)); }

int vdpad_guarded_load_acquire_u16(const void *address, unsigned short *value)
{
    GUARDED(*value = __atomic_load_n((const unsigned short *)address, __ATOMIC_ACQUIRE));
}

int vdpad_guarded_store_release_u16(void *address, unsigned short value)
{
    GUARDED(__atomic_store_n((unsigned short *)address, value, __ATOMIC_RELEASE));
}

#include <sys/mman.h>

int vdpad_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

void vdpad_store_release_u64(void *address, unsigned long long value) {
    __atomic_store_n((unsigned long long *)address, value, __ATOMIC_RELEASE);
}

unsigned long long vdpad_load_acquire_u64(const void *address) {
    return __atomic_load_n((const unsigned long long *)address, __ATOMIC_ACQUIRE);
}
