/* store.c — the store agent: a thread in the VMM that performs the ring-index stores vdpad asks for. */
#include "vdpad_vhost.h"

/* ---- the store agent ------------------------------------------------------ */

/* vdpad's data path writes a ring's used idx in this process's memory.  From outside, process_vm_writev
 * promises no single 16-bit store, and a torn idx can show the driver a stale entry; so the library lends
 * vdpad a thread that does that one store from inside, as one aligned atomic store (docs/protocol.md §5.6).
 * Requests are {u64 address, u16 value, u8 tag, 5 bytes 0} on a SOCK_SEQPACKET pair; the answer is one byte:
 * the tag when the store is done (1 for a request without one), 0 when refused.  The tag lets vdpad tell its
 * answer from a late one to a request it gave up on — or that a vdpad which died, and was restarted on this
 * same socket, never read.  The thread ends when vdpad closes its end (the session ended). */
static void *store_agent(void *arg)
{
    int fd = (int)(intptr_t)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);  /* the VMM's signals stay with the VMM's threads */
    uint8_t request[16];
    for (;;) {
        ssize_t n = recv(fd, request, sizeof(request), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(request))
            break;
        uint64_t address;
        uint16_t value;
        memcpy(&address, request, 8);
        memcpy(&value, request + 8, 2);
        uint8_t ack = 0;
        if (address && address % 2 == 0) {
            __atomic_thread_fence(__ATOMIC_SEQ_CST);  /* the used element vdpad wrote before is visible first */
            __atomic_store_n((uint16_t *)(uintptr_t)address, value, __ATOMIC_RELEASE);
            ack = request[10] ? request[10] : 1;
        }
        if (send(fd, &ack, 1, MSG_NOSIGNAL) != 1)
            break;
    }
    real_close(fd);
    return NULL;
}

/* Starts the agent and hands vdpad its end; an older vdpad without set_store_agent just goes without. */
HIDDEN void start_store_agent(struct session *s)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0)
        return;
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    int started = pthread_create(&thread, &attributes, store_agent, (void *)(intptr_t)pair[0]) == 0;
    pthread_attr_destroy(&attributes);
    if (!started) {
        real_close(pair[0]);
        real_close(pair[1]);
        return;
    }
    int err;
    json_object *r = call(s, "set_store_agent", pair[1], &err, "");
    if (r)
        json_object_put(r);
    real_close(pair[1]);  /* vdpad holds its own copy now; if it refused, the agent sees EOF and ends */
}
