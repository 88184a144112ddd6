/* dpdriver.c — vdpad-dpdriver, the VMM side of `vdpad-bench datapath`: a virtio driver in C that keeps a
 * device's queues full for a while and counts what comes back.
 *
 *   vdpad-dpdriver WORKLOAD MEMORY SECONDS [DEVICE_PATH]
 *     WORKLOAD  net64, net1500 (loopback frames of that size), blk-randread4k, blk-randwrite4k, blk-seqread64k
 *     MEMORY    shared     rings and buffers in a memfd (MAP_SHARED) mapped at IOVA 1 GiB: under vdpad-run,
 *                          the preload library shares it with vdpad
 *               private    the same arena in anonymous private memory: vdpad copies with process_vm_readv
 *               reference  no device path at all: a device thread in this process walks the same rings in
 *                          the same memory and makes the same copies, with no daemon and no IOTLB (the limit)
 *
 * Prints one JSON line: {"workload", "memory", "ops", "seconds", "ops_per_s", "bytes_per_s"}.  The driver
 * polls the used rings (no call eventfd wait; its avail flags say NO_INTERRUPT) and kicks after each batch it
 * posts, the same way against vdpad and against the reference, so the two differ only in the device. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vdpad_vhost_abi.h"

#define NUM 256                /* ring size */
#define BATCH 32               /* chains posted per kick */
#define IOVA_BASE 0x40000000ULL
#define DISK_BYTES (128ULL << 20)
#define ARENA_BYTES (40ULL << 20)

struct ring {
    uint8_t *desc, *avail, *used;
    uint16_t avail_idx, used_seen;
    int kick, call;
};

static uint8_t *arena;
static int reference;
static struct ring rings[2];

static uint64_t iova_of(const void *p) { return reference ? (uint64_t)(uintptr_t)p : IOVA_BASE + (uint64_t)((const uint8_t *)p - arena); }

static void die(const char *what)
{
    fprintf(stderr, "vdpad-dpdriver: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* A memfd of `bytes` mapped shared (zero-filled, as calloc'd memory would be). */
static uint8_t *shared_memory(const char *name, size_t bytes)
{
    int m = memfd_create(name, MFD_CLOEXEC);
    if (m < 0 || ftruncate(m, (off_t)bytes)) die("memfd");
    uint8_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    if (p == MAP_FAILED) die(name);
    close(m);
    return p;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void set_desc(struct ring *r, uint16_t i, void *buf, uint32_t len, uint16_t flags, uint16_t next)
{
    uint64_t a = iova_of(buf);
    uint8_t *d = r->desc + 16 * i;
    memcpy(d, &a, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

static void post(struct ring *r, uint16_t head)
{
    ((uint16_t *)(r->avail + 4))[r->avail_idx % NUM] = head;
    r->avail_idx++;
}

static void publish(struct ring *r) { __atomic_store_n((uint16_t *)(r->avail + 2), r->avail_idx, __ATOMIC_RELEASE); }

static void kick(struct ring *r)
{
    uint64_t one = 1;
    if (write(r->kick, &one, 8) != 8)
        die("kick");
}

static uint16_t used_idx(struct ring *r) { return __atomic_load_n((uint16_t *)(r->used + 2), __ATOMIC_ACQUIRE); }
static uint32_t used_id(struct ring *r, uint16_t k) { return *(uint32_t *)(r->used + 4 + 8 * (k % NUM)); }

/* ---- the reference device: the same walk and copies as vdpad's, in this process -------------------- */

static uint8_t *ref_disk;
static int ref_blk;
static volatile int ref_stop;
static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 0x42 };

struct chain { uint16_t head; uint8_t *buf[4]; uint32_t len[4]; int n; };

static int ref_fetch(struct ring *r, uint16_t *last, struct chain *c)
{
    if (__atomic_load_n((uint16_t *)(r->avail + 2), __ATOMIC_ACQUIRE) == *last)
        return 0;
    uint16_t i = ((uint16_t *)(r->avail + 4))[*last % NUM];
    c->head = i;
    c->n = 0;
    for (;;) {
        uint8_t *d = r->desc + 16 * i;
        uint64_t a;
        uint16_t flags;
        memcpy(&a, d, 8);
        memcpy(&c->len[c->n], d + 8, 4);
        memcpy(&flags, d + 12, 2);
        c->buf[c->n++] = (uint8_t *)(uintptr_t)a;
        if (!(flags & 1) || c->n == 4)
            break;
        memcpy(&i, d + 14, 2);
    }
    (*last)++;
    return 1;
}

static void ref_complete(struct ring *r, uint16_t *used, uint16_t head, uint32_t len)
{
    uint32_t element[2] = { head, len };
    memcpy(r->used + 4 + 8 * (*used % NUM), element, 8);
    (*used)++;
    __atomic_store_n((uint16_t *)(r->used + 2), *used, __ATOMIC_RELEASE);
}

static void *ref_device(void *unused)
{
    (void)unused;
    uint16_t last[2] = { 0, 0 }, used[2] = { 0, 0 };
    struct pollfd p[2] = { { .fd = rings[0].kick, .events = POLLIN }, { .fd = rings[1].kick, .events = POLLIN } };
    while (!ref_stop) {
        if (poll(p, ref_blk ? 1 : 2, 100) <= 0)
            continue;
        uint64_t v;
        for (int k = 0; k < (ref_blk ? 1 : 2); k++)
            if (p[k].revents && read(p[k].fd, &v, 8) < 0)
                die("reference kick");
        int served = 1;
        while (served && !ref_stop) {
            served = 0;
            struct chain c, rx;
            if (ref_blk) {
                for (int n = 0; n < 64 && ref_fetch(&rings[0], &last[0], &c); n++, served = 1) {
                    uint32_t type, status_len = 1;
                    uint64_t sector;
                    memcpy(&type, c.buf[0], 4);
                    memcpy(&sector, c.buf[0] + 8, 8);
                    uint8_t *disk = ref_disk + sector * 512;
                    if (type == 0) memcpy(c.buf[1], disk, c.len[1]);
                    else memcpy(disk, c.buf[1], c.len[1]);
                    *c.buf[2] = 0;
                    ref_complete(&rings[0], &used[0], c.head, (type == 0 ? c.len[1] : 0) + status_len);
                }
            } else {
                /* A TX frame waits for an RX buffer, as vdpad's does. */
                for (int n = 0; n < 64; n++) {
                    if (__atomic_load_n((uint16_t *)(rings[0].avail + 2), __ATOMIC_ACQUIRE) == last[0]) break;
                    if (!ref_fetch(&rings[1], &last[1], &c)) break;
                    ref_fetch(&rings[0], &last[0], &rx);
                    uint32_t len = c.len[0] < rx.len[0] ? c.len[0] : rx.len[0];
                    if (memcmp(c.buf[0] + 12, mac, 6) == 0) memcpy(rx.buf[0], c.buf[0], len);
                    ref_complete(&rings[1], &used[1], c.head, 0);
                    ref_complete(&rings[0], &used[0], rx.head, len);
                    served = 1;
                }
            }
            if (served) {
                /* An interrupt per queue that did not ask for none (a full barrier, then avail->flags), as vdpad's run. */
                uint64_t one = 1;
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                for (int k = 0; k < (ref_blk ? 1 : 2); k++)
                    if (!(__atomic_load_n((uint16_t *)rings[k].avail, __ATOMIC_ACQUIRE) & 1) && write(rings[k].call, &one, 8) != 8)
                        die("reference call");
            }
        }
    }
    return NULL;
}

/* ---- setting a device up through vhost-vdpa ---------------------------------------------------------- */

static void vring(int fd, uint32_t q, struct ring *r, uint8_t *pages)
{
    r->desc = pages;
    r->avail = pages + 4096;
    r->used = pages + 8192;
    r->kick = eventfd(0, EFD_CLOEXEC);
    r->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    /* VRING_AVAIL_F_NO_INTERRUPT: this driver polls its used rings, as a NAPI driver does while busy, so it asks
     * for no interrupt (vdpa_sim and vdpad honour it; the reference device too). */
    __atomic_store_n((uint16_t *)r->avail, 1, __ATOMIC_RELEASE);
    if (reference)
        return;
    struct vhost_vring_state st = { .index = q, .num = NUM };
    struct vhost_vring_addr addr = { .index = q, .desc_user_addr = iova_of(r->desc), .avail_user_addr = iova_of(r->avail),
                                     .used_user_addr = iova_of(r->used) };
    struct vhost_vring_file kickf = { .index = q, .fd = r->kick }, callf = { .index = q, .fd = r->call };
    if (ioctl(fd, VHOST_SET_VRING_NUM, &st) || ioctl(fd, VHOST_SET_VRING_ADDR, &addr) || ioctl(fd, VHOST_SET_VRING_KICK, &kickf) ||
        ioctl(fd, VHOST_SET_VRING_CALL, &callf))
        die("vring setup");
}

static void start_device(int fd, int blk)
{
    uint64_t backend = 0x6, features = (1ULL << 32) | (1ULL << 33) | (blk ? 0 : 1ULL << 5);  /* VERSION_1, ACCESS_PLATFORM, MAC */
    uint8_t status = 0xb;
    if (reference)
        return;
    if (ioctl(fd, VHOST_SET_OWNER, NULL) || ioctl(fd, VHOST_SET_BACKEND_FEATURES, &backend) || ioctl(fd, VHOST_SET_FEATURES, &features) ||
        ioctl(fd, VHOST_VDPA_SET_STATUS, &status))
        die("negotiation");
    struct vhost_msg_v2 v2;
    memset(&v2, 0, sizeof(v2));
    v2.type = VHOST_IOTLB_MSG_V2;
    v2.iotlb.iova = IOVA_BASE;
    v2.iotlb.size = ARENA_BYTES;
    v2.iotlb.uaddr = (uint64_t)(uintptr_t)arena;
    v2.iotlb.perm = 3;
    v2.iotlb.type = VHOST_IOTLB_UPDATE;
    if (write(fd, &v2, sizeof(v2)) != (ssize_t)sizeof(v2))
        die("IOTLB update");
}

static pthread_t ref_thread;

/* DRIVER_OK and the queues enabled; in the reference, the device thread started, once the rings and their
 * kick eventfds exist (it polls those: started earlier, it would wait on eventfds nobody kicks). */
static void go(int fd, int nq)
{
    uint8_t status = 0xf;
    if (reference) {
        if (pthread_create(&ref_thread, NULL, ref_device, NULL))
            die("device thread");
        return;
    }
    if (ioctl(fd, VHOST_VDPA_SET_STATUS, &status))
        die("DRIVER_OK");
    for (int q = 0; q < nq; q++) {
        struct vhost_vring_state st = { .index = (uint32_t)q, .num = 1 };
        if (ioctl(fd, VHOST_VDPA_SET_VRING_ENABLE, &st))
            die("enable");
    }
}

/* ---- the workloads ------------------------------------------------------------------------------------ */

static uint64_t run_net(int fd, uint32_t frame, double seconds, double *elapsed)
{
    struct ring *rx = &rings[0], *tx = &rings[1];
    uint8_t *buffers = arena + 65536;  /* rx 256 × 2 KiB, then tx 256 × 2 KiB */
    start_device(fd, 0);
    vring(fd, 0, rx, arena);
    vring(fd, 1, tx, arena + 16384);
    go(fd, 2);
    uint32_t len = 12 + frame;  /* virtio_net_hdr_v1, then the frame to the device's MAC */
    for (uint16_t i = 0; i < NUM; i++) {
        uint8_t *t = buffers + (NUM + i) * 2048;
        memset(t, 0, 12);
        memcpy(t + 12, mac, 6);
        memcpy(t + 18, mac, 6);
        for (uint32_t k = 24; k < len; k++) t[k] = (uint8_t)k;
        set_desc(rx, i, buffers + i * 2048, 2048, 2, 0);
        set_desc(tx, i, t, len, 0, 0);
        post(rx, i);
    }
    publish(rx);
    kick(rx);
    uint64_t received = 0;
    uint16_t tx_free = NUM, next_tx = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        int posted = 0;
        while (tx_free > 0 && posted < BATCH) {
            post(tx, next_tx);
            next_tx = (uint16_t)((next_tx + 1) % NUM);
            tx_free--;
            posted++;
        }
        if (posted) {
            publish(tx);
            kick(tx);
        }
        for (uint16_t u = used_idx(tx); tx->used_seen != u; tx->used_seen++) tx_free++;
        int returned = 0;
        for (uint16_t u = used_idx(rx); rx->used_seen != u; rx->used_seen++, returned++) post(rx, (uint16_t)used_id(rx, rx->used_seen));
        if (returned) {
            received += (uint64_t)returned;
            publish(rx);
            kick(rx);
        }
    }
    *elapsed = now() - start;
    return received;
}

static uint64_t run_blk(int fd, int write_, uint32_t size, int sequential, double seconds, double *elapsed, uint64_t *bytes)
{
    struct ring *q = &rings[0];
    uint8_t *headers = arena + 16384, *statuses = arena + 32768, *data = arena + (1 << 20);
    start_device(fd, 1);
    vring(fd, 0, q, arena);
    go(fd, 1);
    enum { INFLIGHT = 64 };
    uint64_t sectors = DISK_BYTES / 512, next_sector = 0, done = 0, rng = 0x9E3779B97F4A7C15ULL;
    for (uint16_t s = 0; s < INFLIGHT; s++) {
        set_desc(q, (uint16_t)(3 * s), headers + 16 * s, 16, 1, (uint16_t)(3 * s + 1));
        set_desc(q, (uint16_t)(3 * s + 1), data + (uint64_t)s * size, size, (uint16_t)(1 | (write_ ? 0 : 2)), (uint16_t)(3 * s + 2));
        set_desc(q, (uint16_t)(3 * s + 2), statuses + s, 1, 2, 0);
        memset(data + (uint64_t)s * size, (int)s, size);
    }
    uint16_t ready[INFLIGHT];
    int nready = INFLIGHT;
    for (int s = 0; s < INFLIGHT; s++) ready[s] = (uint16_t)s;
    double start = now(), end = start + seconds;
    while (now() < end) {
        int posted = 0;
        while (nready > 0 && posted < BATCH) {
            uint16_t s = ready[--nready];
            uint64_t sector;
            if (sequential) {
                sector = next_sector;
                next_sector = (next_sector + size / 512) % sectors;
            } else {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                sector = (rng % (sectors - size / 512)) & ~7ULL;
            }
            uint32_t type = write_ ? 1 : 0;
            memcpy(headers + 16 * s, &type, 4);
            memset(headers + 16 * s + 4, 0, 4);
            memcpy(headers + 16 * s + 8, &sector, 8);
            post(q, (uint16_t)(3 * s));
            posted++;
        }
        if (posted) {
            publish(q);
            kick(q);
        }
        for (uint16_t u = used_idx(q); q->used_seen != u; q->used_seen++, done++) ready[nready++] = (uint16_t)(used_id(q, q->used_seen) / 3);
    }
    *elapsed = now() - start;
    *bytes = done * size;
    return done;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: vdpad-dpdriver net64|net1500|blk-randread4k|blk-randwrite4k|blk-seqread64k shared|private|reference SECONDS [DEVICE]\n");
        return 2;
    }
    const char *workload = argv[1], *memory = argv[2];
    double seconds = atof(argv[3]);
    reference = strcmp(memory, "reference") == 0;
    /* The reference walks the same memory as a shared run: a memfd mapped shared (private anonymous memory
     * would get transparent huge pages that shmem here does not, and measure the memory, not the device). */
    if (strcmp(memory, "shared") == 0 || reference) {
        arena = shared_memory("vdpad-dpdriver", ARENA_BYTES);
    } else {
        arena = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (arena == MAP_FAILED) die("arena");
    memset(arena, 0, ARENA_BYTES);
    int fd = -1;
    if (!reference && (fd = open(argc > 4 ? argv[4] : "/dev/vhost-vdpa-0", O_RDWR | O_CLOEXEC)) < 0) die("open");
    int blk = strncmp(workload, "blk", 3) == 0;
    if (reference) {
        ref_blk = blk;
        ref_disk = shared_memory("the reference's disk", DISK_BYTES);  /* as vdpad's RAM disk: a memfd mapped shared */
    }
    uint64_t ops, bytes;
    double elapsed;
    if (strcmp(workload, "net64") == 0 || strcmp(workload, "net1500") == 0) {
        uint32_t frame = strcmp(workload, "net64") == 0 ? 64 : 1500;
        ops = run_net(fd, frame, seconds, &elapsed);
        bytes = ops * frame;
    } else if (strcmp(workload, "blk-randread4k") == 0) {
        ops = run_blk(fd, 0, 4096, 0, seconds, &elapsed, &bytes);
    } else if (strcmp(workload, "blk-randwrite4k") == 0) {
        ops = run_blk(fd, 1, 4096, 0, seconds, &elapsed, &bytes);
    } else if (strcmp(workload, "blk-seqread64k") == 0) {
        ops = run_blk(fd, 0, 65536, 1, seconds, &elapsed, &bytes);
    } else {
        fprintf(stderr, "vdpad-dpdriver: unknown workload %s\n", workload);
        return 2;
    }
    if (reference) {
        ref_stop = 1;
        pthread_join(ref_thread, NULL);
    }
    printf("{\"workload\":\"%s\",\"memory\":\"%s\",\"ops\":%llu,\"seconds\":%.3f,\"ops_per_s\":%.0f,\"bytes_per_s\":%.0f}\n", workload,
           reference ? "reference" : memory, (unsigned long long)ops, elapsed, (double)ops / elapsed, (double)bytes / elapsed);
    if (fd >= 0) close(fd);
    return 0;
}
