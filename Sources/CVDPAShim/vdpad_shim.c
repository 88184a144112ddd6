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
#include <ucontext.h>

/* What SIGBUS did before (the Swift runtime's backtracer, or the default): a fault outside a copy gets it. */
static struct sigaction previous;

#if defined(__x86_64__)

/* Each guarded access is an instruction (two for a descriptor) at a known address, or any instruction of the copy
 * routine, in a leaf routine that keeps nothing on the stack: a SIGBUS there (a VMM truncated the file under the
 * mapping) moves the thread to `vdpad_guard_failed`, which returns -1 to the routine's caller — the kernel's
 * exception-table fixup, in user space.  No sigsetjmp and no thread-local landing per access: a 64-byte frame's
 * copy costs a call, a test of its placement and a `rep movsb`.
 *
 * The copy is `rep movsb` but in one placement: on AMD Zen 4, the test machines' CPU (and in glibc's memcpy from
 * 4 KiB up, which uses it), a `rep movsb` whose destination is 1 to 63 bytes past its source modulo 4 KiB runs 10
 * to 16 times slower — 55 ns instead of 4 for a 76-byte frame, 20 µs instead of 1.5 for 64 KiB — and a guest's
 * buffers fall there as often as chance puts them.  There the copy is 16-byte moves: overlapping from both ends up
 * to 128 bytes, a loop beyond.  Elsewhere `rep movsb` is as fast or faster (an aligned 76-byte copy: 7 ns against
 * 9–12), so it stays (docs/performance.md). */
int vdpad_copy_unguarded_entry(void *dst, const void *src, size_t n);
extern const char vdpad_copy_end[];
int vdpad_zero_unguarded_entry(void *dst, size_t n);
int vdpad_load_u16_entry(const void *address, unsigned short *value);
int vdpad_store_u16_entry(void *address, unsigned short value);
int vdpad_load_16_bytes_entry(const void *address, void *out);
int vdpad_store_u64_entry(void *address, unsigned long long value);
extern const char vdpad_fault_zero[], vdpad_fault_load[], vdpad_fault_store[], vdpad_fault_load16a[],
    vdpad_fault_load16b[], vdpad_fault_store64[], vdpad_guard_failed[];

__asm__(".text\n"
        ".p2align 4\n"
        "vdpad_copy_unguarded_entry:\n" /* rdi dst, rsi src, rdx n; rax, rcx, r8, xmm0-7: all the caller's to lose */
        "    lea -1(%rdi), %rax\n" /* (dst - src - 1) mod 4 KiB < 63: dst is 1 to 63 bytes past src */
        "    sub %rsi, %rax\n"
        "    and $4095, %eax\n"
        "    cmp $63, %eax\n"
        "    jb .Lcopy_moves\n"
        "    mov %rdx, %rcx\n"
        "    rep movsb\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".Lcopy_moves:\n"
        "    cmp $16, %rdx\n"
        "    jb .Lcopy_small\n"
        "    cmp $32, %rdx\n"
        "    ja .Lcopy_over32\n"
        "    movdqu (%rsi), %xmm0\n"
        "    movdqu -16(%rsi,%rdx), %xmm1\n"
        "    movdqu %xmm0, (%rdi)\n"
        "    movdqu %xmm1, -16(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".Lcopy_over32:\n"
        "    cmp $64, %rdx\n"
        "    ja .Lcopy_over64\n"
        "    movdqu (%rsi), %xmm0\n"
        "    movdqu 16(%rsi), %xmm1\n"
        "    movdqu -32(%rsi,%rdx), %xmm2\n"
        "    movdqu -16(%rsi,%rdx), %xmm3\n"
        "    movdqu %xmm0, (%rdi)\n"
        "    movdqu %xmm1, 16(%rdi)\n"
        "    movdqu %xmm2, -32(%rdi,%rdx)\n"
        "    movdqu %xmm3, -16(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".Lcopy_over64:\n"
        "    cmp $128, %rdx\n"
        "    ja .Lcopy_over128\n"
        "    movdqu (%rsi), %xmm0\n"
        "    movdqu 16(%rsi), %xmm1\n"
        "    movdqu 32(%rsi), %xmm2\n"
        "    movdqu 48(%rsi), %xmm3\n"
        "    movdqu -64(%rsi,%rdx), %xmm4\n"
        "    movdqu -48(%rsi,%rdx), %xmm5\n"
        "    movdqu -32(%rsi,%rdx), %xmm6\n"
        "    movdqu -16(%rsi,%rdx), %xmm7\n"
        "    movdqu %xmm0, (%rdi)\n"
        "    movdqu %xmm1, 16(%rdi)\n"
        "    movdqu %xmm2, 32(%rdi)\n"
        "    movdqu %xmm3, 48(%rdi)\n"
        "    movdqu %xmm4, -64(%rdi,%rdx)\n"
        "    movdqu %xmm5, -48(%rdi,%rdx)\n"
        "    movdqu %xmm6, -32(%rdi,%rdx)\n"
        "    movdqu %xmm7, -16(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".Lcopy_over128:\n"
        "    lea (%rdi,%rdx), %r8\n"
        "    movdqu -64(%rsi,%rdx), %xmm4\n"
        "    movdqu -48(%rsi,%rdx), %xmm5\n"
        "    movdqu -32(%rsi,%rdx), %xmm6\n"
        "    movdqu -16(%rsi,%rdx), %xmm7\n"
        "    lea -64(%rdx), %rcx\n"
        ".Lcopy_loop:\n"
        "    movdqu (%rsi), %xmm0\n"
        "    movdqu 16(%rsi), %xmm1\n"
        "    movdqu 32(%rsi), %xmm2\n"
        "    movdqu 48(%rsi), %xmm3\n"
        "    movdqu %xmm0, (%rdi)\n"
        "    movdqu %xmm1, 16(%rdi)\n"
        "    movdqu %xmm2, 32(%rdi)\n"
        "    movdqu %xmm3, 48(%rdi)\n"
        "    add $64, %rsi\n"
        "    add $64, %rdi\n"
        "    sub $64, %rcx\n"
        "    ja .Lcopy_loop\n"
        "    movdqu %xmm4, -64(%r8)\n"
        "    movdqu %xmm5, -48(%r8)\n"
        "    movdqu %xmm6, -32(%r8)\n"
        "    movdqu %xmm7, -16(%r8)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".Lcopy_small:\n"
        "    cmp $8, %rdx\n"
        "    jb .Lcopy_under8\n"
        "    mov (%rsi), %rax\n"
        "    mov -8(%rsi,%rdx), %rcx\n"
        "    mov %rax, (%rdi)\n"
        "    mov %rcx, -8(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".Lcopy_under8:\n"
        "    cmp $4, %rdx\n"
        "    jb .Lcopy_under4\n"
        "    mov (%rsi), %eax\n"
        "    mov -4(%rsi,%rdx), %ecx\n"
        "    mov %eax, (%rdi)\n"
        "    mov %ecx, -4(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".Lcopy_under4:\n"
        "    test %rdx, %rdx\n"
        "    jz .Lcopy_done\n"
        "    cmp $1, %rdx\n"
        "    je .Lcopy_one\n"
        "    movzwl (%rsi), %eax\n"
        "    movzwl -2(%rsi,%rdx), %ecx\n"
        "    mov %ax, (%rdi)\n"
        "    mov %cx, -2(%rdi,%rdx)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".Lcopy_one:\n"
        "    movzbl (%rsi), %eax\n"
        "    mov %al, (%rdi)\n"
        ".Lcopy_done:\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        "vdpad_copy_end:\n"
        ".p2align 4\n"
        "vdpad_zero_unguarded_entry:\n" /* rdi dst, rsi n */
        "    mov %rsi, %rcx\n"
        "    xor %eax, %eax\n"
        "vdpad_fault_zero:\n"
        "    rep stosb\n"
        "    ret\n"
        ".p2align 4\n"
        "vdpad_load_u16_entry:\n" /* x86-64 is TSO: a plain load is an acquire load */
        "vdpad_fault_load:\n"
        "    movzwl (%rdi), %eax\n"
        "    mov %ax, (%rsi)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".p2align 4\n"
        "vdpad_store_u16_entry:\n" /* and a plain store a release store */
        "vdpad_fault_store:\n"
        "    mov %si, (%rdi)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".p2align 4\n"
        "vdpad_load_16_bytes_entry:\n" /* rdi address, rsi out */
        "vdpad_fault_load16a:\n"
        "    mov (%rdi), %rax\n"
        "vdpad_fault_load16b:\n"
        "    mov 8(%rdi), %rdx\n"
        "    mov %rax, (%rsi)\n"
        "    mov %rdx, 8(%rsi)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".p2align 4\n"
        "vdpad_store_u64_entry:\n" /* rdi address, rsi value */
        "vdpad_fault_store64:\n"
        "    mov %rsi, (%rdi)\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".p2align 4\n"
        "vdpad_guard_failed:\n"
        "    mov $-1, %eax\n"
        "    ret\n");

static void on_sigbus(int signo, siginfo_t *info, void *context)
{
    (void)info;
    greg_t *pc = &((ucontext_t *)context)->uc_mcontext.gregs[REG_RIP];
    const char *at = (const char *)*pc;
    int in_copy = at >= (const char *)vdpad_copy_unguarded_entry && at < vdpad_copy_end;  /* any of its moves */
    if (in_copy || at == vdpad_fault_zero || at == vdpad_fault_load || at == vdpad_fault_store ||
        at == vdpad_fault_load16a || at == vdpad_fault_load16b || at == vdpad_fault_store64) {
        *pc = (greg_t)vdpad_guard_failed;
        return;
    }
    /* Not ours: the handler from before, as if this one never existed (the fault repeats when this returns). */
    sigaction(signo, &previous, NULL);
}

#else

/* Elsewhere: a landing point per access (sigsetjmp without the mask: a system call per copy would cost more than
 * a 64-byte frame's copy, and SA_NODEFER leaves nothing to restore). */
static __thread sigjmp_buf *guard;

static void on_sigbus(int signo, siginfo_t *info, void *context)
{
    (void)info;
    (void)context;
    if (guard)
        siglongjmp(*guard, 1);
    sigaction(signo, &previous, NULL);
}

#endif

/* Either handler goes in the same way, chained to the one before it. */
static void install(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &previous);
}

static pthread_once_t installed_once = PTHREAD_ONCE_INIT;
static int installed;

/* The handler goes in at the first guarded access (after the Swift runtime set its own, which it then passes
 * faults on to); a flag test per access after that. */
static inline void ensure_installed(void)
{
    if (!__atomic_load_n(&installed, __ATOMIC_ACQUIRE)) {
        pthread_once(&installed_once, install);
        __atomic_store_n(&installed, 1, __ATOMIC_RELEASE);
    }
}

#if defined(__x86_64__)

int vdpad_guarded_copy(void *dst, const void *src, size_t n)
{
    ensure_installed();
    return vdpad_copy_unguarded_entry(dst, src, n);
}

int vdpad_guarded_zero(void *dst, size_t n)
{
    ensure_installed();
    return vdpad_zero_unguarded_entry(dst, n);
}

int vdpad_guarded_load_acquire_u16(const void *address, unsigned short *value)
{
    ensure_installed();
    return vdpad_load_u16_entry(address, value);
}

int vdpad_guarded_store_release_u16(void *address, unsigned short value)
{
    ensure_installed();
    return vdpad_store_u16_entry(address, value);
}

int vdpad_guarded_load_16_bytes(const void *address, void *out)
{
    ensure_installed();
    return vdpad_load_16_bytes_entry(address, out);
}

int vdpad_guarded_store_u64(void *address, unsigned long long value)
{
    ensure_installed();
    return vdpad_store_u64_entry(address, value);
}

#else

#define GUARDED(body) \
    do { \
        sigjmp_buf landing; \
        ensure_installed(); \
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

int vdpad_guarded_load_16_bytes(const void *address, void *out) { GUARDED(memcpy(out, address, 16)); }

int vdpad_guarded_store_u64(void *address, unsigned long long value) { GUARDED(memcpy(address, &value, 8)); }

#endif

#include <sys/mman.h>

int vdpad_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

void vdpad_store_release_u64(void *address, unsigned long long value) {
    __atomic_store_n((unsigned long long *)address, value, __ATOMIC_RELEASE);
}

unsigned long long vdpad_load_acquire_u64(const void *address) {
    return __atomic_load_n((const unsigned long long *)address, __ATOMIC_ACQUIRE);
}
