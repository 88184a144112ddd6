/*
 * vmm_probe — a tiny VMM that opens /dev/vhost-vdpa-N as QEMU would and
 * checks every answer against the kernel's (docs/kernel-rules.md R1–R36, R41–R70).
 * Run under vdpad-run, so the path is a vdpad device; the preload library
 * is what is under test.  Debian's QEMU 7.2 cannot put a block device on
 * vhost-vdpa, so this is how vdpasim_blk is proven.
 *
 *   vmm_probe blk  PATH        the kernel's sequence on a vdpasim_blk device
 *   vmm_probe net  PATH        the same on a vdpasim_net device (config, CVQ index)
 *   vmm_probe threads PATH     two threads issuing ioctls on one fd (and a dup of it)
 *   vmm_probe cvq PATH         a MAC_ADDR_SET through the control queue, served by vdpad's data path
 *   vmm_probe cvq-asid1 PATH   the same with the CVQ's group in ASID 1 at made-up IOVAs (QEMU 10's shadow CVQ)
 *   vmm_probe cvq-gates PATH   D1 (kick on a vq not enabled dropped) and D2 (kick while suspended served at RESUME)
 *   vmm_probe cvq-evil PATH    a descriptor loop, an unmapped buffer, a kick storm, then a good command
 *   vmm_probe cvq-bench PATH N control-command latency, kick to call
 *   vmm_probe net-loop PATH    frames through a net device's data queues: to its MAC and broadcast back, a foreign one dropped
 *   vmm_probe blk-io PATH      a block device's request queue: OUT, IN of the same sectors, FLUSH, GET_ID, a range off the disk
 *   vmm_probe owner-gate PATH  calls before and after SET_OWNER, perm 0 and 7, INVALIDATE of size 0 (issue 25's causes)
 *   vmm_probe net-loop-shared PATH, blk-io-shared PATH
 *                              the same on a memfd shared with vdpad and mapped at an IOVA of its own; at the end
 *                              the memory is unmapped (vdpad is told to drop it)
 *   vmm_probe hold PATH N      maps N pages inside an open batch, prints "mapped", then waits (to be killed)
 *   vmm_probe bench PATH N     N GET_VRING_BASE ioctls; prints the mean ns per ioctl
 *   vmm_probe poll-bench PATH N  ppoll over 20 pipes with the session open, through the library and as a bare
 *                              system call, 5 rounds of N each; prints the medians
 *   vmm_probe close-later PATH owns the file, prints "ready", waits for a line on stdin, closes it and prints how
 *                              long close() took ("closed in N ms"): the test stops the daemon meanwhile
 *   vmm_probe killed-owner PATH N
 *                              N times: a child opens and owns the file, is killed with SIGKILL and reaped, and
 *                              the file is opened again at once (the kernel released it as the child died)
 *   vmm_probe reopen PATH N    N times: own the file, map, close it, open it again at once (the kernel released
 *                              it in close(): never EBUSY, and the new file finds no owner and no mapping)
 *
 * Exit status 0 when every check held; each failed check prints a line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../preload/vdpad_vhost_abi.h"

static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)
/* An ioctl that must fail with `err`. */
#define EXPECT_ERRNO(call, err) do { errno = 0; long r_ = (long)(call); CHECK(r_ == -1 && errno == (err), "%s: got %ld errno %d (%s), want errno %d", #call, r_, errno, strerror(errno), err); } while (0)
#define EXPECT_OK(call) do { errno = 0; long r_ = (long)(call); CHECK(r_ == 0, "%s: got %ld errno %d (%s)", #call, r_, errno, strerror(errno)); } while (0)

static int iotlb(int fd, uint32_t outer, uint32_t asid, uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm, size_t len)
{
    struct vhost_msg_v2 m;
    memset(&m, 0, sizeof(m));
    m.type = outer;
    m.asid = asid;
    m.iotlb.type = type;
    m.iotlb.iova = iova;
    m.iotlb.size = size;
    m.iotlb.uaddr = uaddr;
    m.iotlb.perm = perm;
    return (int)write(fd, &m, len);
}

static void common_sequence(int fd, uint32_t want_id, uint64_t want_features, uint32_t want_vqs, uint32_t want_config)
{
    uint32_t u32;
    uint64_t u64;
    uint16_t u16;
    uint8_t status;
    struct vhost_vdpa_iova_range range;

    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_DEVICE_ID, &u32));
    CHECK(u32 == want_id, "device id %u, want %u (R45)", u32, want_id);
    EXPECT_OK(ioctl(fd, VHOST_GET_FEATURES, &u64));
    CHECK(u64 == want_features, "features 0x%llx, want 0x%llx (R53)", (unsigned long long)u64, (unsigned long long)want_features);
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_VQS_COUNT, &u32));
    CHECK(u32 == want_vqs, "vqs %u", u32);
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_CONFIG_SIZE, &u32));
    CHECK(u32 == want_config, "config size %u", u32);
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_VRING_NUM, &u16));
    CHECK(u16 == 256, "vring num max %u", u16);
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_IOVA_RANGE, &range));
    CHECK(range.first == 0 && range.last == UINT64_MAX, "iova range");
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_STATUS, &status));
    CHECK(status == 0, "status %u after open", status);

    EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_OWNER, NULL), EBUSY);  /* R42, edge #77 */

    EXPECT_OK(ioctl(fd, VHOST_GET_BACKEND_FEATURES, &u64));
    CHECK(u64 == 0x17e, "backend offer 0x%llx (R27)", (unsigned long long)u64);
    u64 = 0x1;
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_BACKEND_FEATURES, &u64), EOPNOTSUPP);  /* R28 */
    u64 = 0x6;
    EXPECT_OK(ioctl(fd, VHOST_SET_BACKEND_FEATURES, &u64));

    status = 0x3;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_STATUS, &status));
    u64 = (1ULL << 32);  /* VERSION_1 without ACCESS_PLATFORM */
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_FEATURES, &u64), EINVAL);  /* R54, edge #52 */
    u64 = (1ULL << 32) | (1ULL << 33);
    EXPECT_OK(ioctl(fd, VHOST_SET_FEATURES, &u64));
    status = 0xb;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_STATUS, &status));
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_FEATURES, &u64), EBUSY);  /* edge #54 */
    status = 0x3;
    EXPECT_ERRNO(ioctl(fd, VHOST_VDPA_SET_STATUS, &status), EINVAL);  /* edge #55 */

    /* Vrings (R44, R58–R64). */
    struct vhost_vring_state st = { .index = want_vqs, .num = 64 };
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_VRING_NUM, &st), ENOBUFS);  /* edge #68 */
    st.index = 0;
    st.num = 3;
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_VRING_NUM, &st), EINVAL);  /* edge #59 */
    st.num = 128;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_NUM, &st));
    struct vhost_vring_addr addr = { .index = 0, .desc_user_addr = 0x10000, .avail_user_addr = 0x11001, .used_user_addr = 0x12000 };
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_VRING_ADDR, &addr), EINVAL);  /* edge #62 */
    addr.avail_user_addr = 0x11000;
    addr.flags = 2;
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_VRING_ADDR, &addr), EOPNOTSUPP);  /* edge #61 */
    addr.flags = 0;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_ADDR, &addr));
    st.num = 0x10000;
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_VRING_BASE, &st), EINVAL);  /* edge #65 */
    st.num = 7;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_BASE, &st));
    st.num = 0;
    EXPECT_OK(ioctl(fd, VHOST_GET_VRING_BASE, &st));
    CHECK(st.num == 7, "GET_VRING_BASE %u (R61)", st.num);
    int kick = eventfd(0, EFD_CLOEXEC), call = eventfd(0, EFD_CLOEXEC);
    struct vhost_vring_file file = { .index = 0, .fd = kick };
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_KICK, &file));
    file.fd = call;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_CALL, &file));
    int pipes[2];
    if (pipe(pipes) == 0) {
        file.fd = pipes[0];
        EXPECT_ERRNO(ioctl(fd, VHOST_SET_VRING_CALL, &file), EINVAL);  /* edge #70 */
        close(pipes[0]);
        close(pipes[1]);
    }
    file.fd = 1000;  /* not open */
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_VRING_KICK, &file), EBADF);
    file.fd = -1;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_CALL, &file));  /* edge #69 */
    st.num = 1;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_VRING_ENABLE, &st));

    /* IOTLB writes (B1–B5). */
    char page[4096] __attribute__((aligned(4096)));
    uint64_t uaddr = (uint64_t)(uintptr_t)page;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72) == 72, "BATCH_BEGIN");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0x10000, uaddr, 3, 72) == 72, "UPDATE");
    CHECK(iotlb(fd, 1, 0, VHOST_IOTLB_UPDATE, 0x200000, 0x1000, uaddr, 1, 72) == 72, "v1 UPDATE");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x300000, 0x1000, uaddr, 1, 40) == 72, "40 bytes are enough, 72 comes back (R1)");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_BATCH_END, 0, 0, 0, 0, 72) == 72, "BATCH_END");
    errno = 0;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x100800, 0x10, uaddr, 3, 72) == -1 && errno == EFAULT, "overlap: EFAULT (R3, R11)");
    errno = 0;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x900000, 0, uaddr, 3, 72) == -1 && errno == EINVAL, "size 0: EINVAL (R2)");
    errno = 0;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x900000, 1, uaddr, 3, 39) == -1 && errno == EINVAL, "39 bytes: EINVAL (R1)");
    errno = 0;
    CHECK(iotlb(fd, 3, 0, VHOST_IOTLB_UPDATE, 0x900000, 1, uaddr, 3, 72) == -1 && errno == EINVAL, "outer type 3: EINVAL (R1)");
    errno = 0;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_MISS, 0x900000, 1, uaddr, 3, 72) == -1 && errno == EFAULT, "MISS: EFAULT (R10)");
    /* IOTLB_ASID not acked: the v2 asid is ignored (R1), as the kernel does. */
    CHECK(iotlb(fd, 2, 5, VHOST_IOTLB_INVALIDATE, 0x200000, 1, 0, 0, 72) == 72, "asid ignored without IOTLB_ASID");

    st.index = 0;
    st.num = 50;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_BUSYLOOP_TIMEOUT, &st));  /* stored (R44) */
    st.num = 0;
    EXPECT_OK(ioctl(fd, VHOST_GET_VRING_BUSYLOOP_TIMEOUT, &st));
    CHECK(st.num == 50, "busyloop timeout read back %u", st.num);

    /* The rest of the surface. */
    EXPECT_ERRNO(ioctl(fd, VHOST_RESET_OWNER, NULL), EFAULT);  /* edge #76 */
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_LOG_BASE, &u64), ENOTTY);  /* edge #78 */
    /* edge #80 on 6.9+ (the device's default kernel 6.12, R46): GET_VRING_SIZE exists; vdpa_sim has no get_vq_size. */
    EXPECT_ERRNO(ioctl(fd, _IOWR(VHOST_VIRTIO, 0x82, struct vhost_vring_state), &st), EOPNOTSUPP);
    void *doorbell = mmap(NULL, 4096, PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(doorbell == MAP_FAILED && errno == 524, "mmap: ENOTSUPP (edge #81), got errno %d", errno);
    doorbell = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(doorbell == MAP_FAILED && errno == EINVAL, "mmap with PROT_READ: EINVAL (edge #82)");
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SUSPEND, NULL));  /* vdpa_sim has the op (R66) */
    EXPECT_OK(ioctl(fd, VHOST_VDPA_RESUME, NULL));

    /* Reset (R69). */
    status = 0;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_STATUS, &status));
    st.index = 0;
    EXPECT_OK(ioctl(fd, VHOST_GET_VRING_BASE, &st));
    CHECK(st.num == 0, "base after reset %u (edge #66, vdpa_sim)", st.num);
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_STATUS, &status));
    CHECK(status == 0, "status after reset");
    close(kick);
    close(call);
}

static void blk(int fd)
{
    common_sequence(fd, 2, 0x308007646ULL, 1, 96);
    unsigned char buf[sizeof(struct vhost_vdpa_config) + 96];
    struct vhost_vdpa_config *c = (void *)buf;
    c->off = 0;
    c->len = 96;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_CONFIG, c));
    uint64_t capacity;
    uint32_t blk_size;
    memcpy(&capacity, c->buf, 8);
    memcpy(&blk_size, c->buf + 20, 4);
    CHECK(capacity == 0x40000 && blk_size == 512, "capacity %llu blk_size %u (R52)", (unsigned long long)capacity, blk_size);
    c->off = 0;
    c->len = 8;
    memset(c->buf, 0xff, 8);
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_CONFIG, c));  /* edge #49: accepted, lost */
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_CONFIG, c));
    memcpy(&capacity, c->buf, 8);
    CHECK(capacity == 0x40000, "a write to blk config is lost");
    c->off = 90;
    c->len = 8;
    EXPECT_ERRNO(ioctl(fd, VHOST_VDPA_GET_CONFIG, c), EINVAL);  /* R47 */
    EXPECT_ERRNO(ioctl(fd, VHOST_VDPA_SET_CONFIG, c), EINVAL);  /* R47: the daemon judges the range, buf untouched */
    c->len = 0;
    EXPECT_ERRNO(ioctl(fd, VHOST_VDPA_GET_CONFIG, c), EINVAL);  /* edge #45 */
    EXPECT_ERRNO(ioctl(fd, VHOST_VDPA_SET_CONFIG, c), EINVAL);
    c->off = 0;
    c->len = 0xFFFFFFF0u;  /* a length the buffer does not have: refused before buf is read */
    EXPECT_ERRNO(ioctl(fd, VHOST_VDPA_SET_CONFIG, c), EINVAL);
}

static void net(int fd)
{
    common_sequence(fd, 1, 0x308830028ULL, 3, 24);
    unsigned char buf[sizeof(struct vhost_vdpa_config) + 8];
    struct vhost_vdpa_config *c = (void *)buf;
    c->off = 0;
    c->len = 6;
    memcpy(c->buf, "\x02\x11\x22\x33\x44\x55", 6);
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_CONFIG, c));
    c->len = 8;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_CONFIG, c));
    CHECK(memcmp(c->buf, "\x02\x11\x22\x33\x44\x55\x01\x00", 8) == 0, "mac written and LINK_UP (R51)");
    struct vhost_vring_state st = { .index = 2 };
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_VRING_GROUP, &st));
    CHECK(st.num == 1, "the CVQ is in group 1 (R23)");
    st.index = 1;
    st.num = 1;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_GROUP_ASID, &st));
    EXPECT_ERRNO(ioctl(fd, VHOST_VDPA_GET_VRING_DESC_GROUP, &st), EOPNOTSUPP);  /* R24 on vdpa_sim */
    int config = eventfd(0, EFD_CLOEXEC);
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_CONFIG_CALL, &config));
    close(config);
}

/* A control queue in this process's memory, for the modes below. */
enum { CVQ_NUM = 64 };
static struct { uint8_t bytes[4096]; } __attribute__((aligned(4096))) cvq_pages[4];
static int cvq_kick = -1, cvq_call = -1;
static uint16_t cvq_avail_idx;

/* Posts one MAC_ADDR_SET chain (descriptors 0 and 1) at IOVA base, or a looping chain, or one at an unmapped IOVA. */
static void cvq_post(uint64_t base, int evil)
{
    uint8_t *avail = cvq_pages[0].bytes + 16 * CVQ_NUM, *out = cvq_pages[2].bytes;
    const uint8_t command[8] = { 1, 1, 0x02, 0xAA, 0xBB, 0xCC, 0xDD, (uint8_t)cvq_avail_idx };
    memcpy(out, command, 8);
    /* Each post has its own pair of descriptors, so one the device has not walked yet (a slow run on a
     * loaded machine) is never rewritten under it by the next post. */
    uint16_t head = (uint16_t)(2 * (cvq_avail_idx % (CVQ_NUM / 2)));
    uint8_t *desc = cvq_pages[0].bytes + 16 * head;
    uint64_t out_iova = evil == 2 ? 0x7f0000000000ULL : base + 0x2000, in_iova = base + 0x3000;
    uint32_t len = 8;
    /* evil 1: the second descriptor is readable and points back at the first: a loop */
    uint16_t f = 1, nx = (uint16_t)(head + 1);
    memcpy(desc, &out_iova, 8); memcpy(desc + 8, &len, 4); memcpy(desc + 12, &f, 2); memcpy(desc + 14, &nx, 2);
    len = 1; f = evil == 1 ? 1 : 2; nx = evil == 1 ? head : 0;
    memcpy(desc + 16, &in_iova, 8); memcpy(desc + 24, &len, 4); memcpy(desc + 28, &f, 2); memcpy(desc + 30, &nx, 2);
    memcpy(avail + 4 + 2 * (cvq_avail_idx % CVQ_NUM), &head, 2);
    __atomic_store_n((uint16_t *)(avail + 2), ++cvq_avail_idx, __ATOMIC_RELEASE);
}

static void cvq_kick_it(void)
{
    uint64_t one = 1;
    CHECK(write(cvq_kick, &one, 8) == 8, "kick");
}

/* Whether the call eventfd fires within `ms`; drains it. */
static int cvq_called(int ms)
{
    struct pollfd p = { .fd = cvq_call, .events = POLLIN };
    if (poll(&p, 1, ms) != 1) return 0;
    uint64_t v;
    return read(cvq_call, &v, 8) == 8;
}

static uint16_t cvq_used_idx(void) { return __atomic_load_n((uint16_t *)(cvq_pages[1].bytes + 2), __ATOMIC_ACQUIRE); }

/* Features, status, the CVQ ring (in ASID 1 at made-up IOVAs when `isolate`), kick and call bound; DRIVER_OK;
 * the vq enabled when `enable`.  Returns the CVQ index; base is the ring's IOVA. */
static uint32_t cvq_setup(int fd, int isolate, int enable, uint64_t *base)
{
    uint64_t u64;
    uint8_t status;
    *base = isolate ? 0x1000 : (uint64_t)(uintptr_t)cvq_pages;
    EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));
    u64 = 0x3e;  /* MSG_V2, BATCH, IOTLB_ASID, SUSPEND, RESUME */
    EXPECT_OK(ioctl(fd, VHOST_SET_BACKEND_FEATURES, &u64));
    u64 = (1ULL << 32) | (1ULL << 33) | (1ULL << 17) | (1ULL << 23);  /* VERSION_1, ACCESS_PLATFORM, CTRL_VQ, CTRL_MAC_ADDR */
    EXPECT_OK(ioctl(fd, VHOST_SET_FEATURES, &u64));
    status = 0xb;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_STATUS, &status));
    uint32_t nvqs;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_VQS_COUNT, &nvqs));
    uint32_t q = nvqs - 1;
    if (isolate) {
        struct vhost_vring_state g = { .index = q };
        EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_VRING_GROUP, &g));
        g.index = g.num;
        g.num = 1;
        EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_GROUP_ASID, &g));
        for (int k = 0; k < 4; k++)
            CHECK(iotlb(fd, 2, 1, VHOST_IOTLB_UPDATE, *base + 0x1000 * (uint64_t)k, 0x1000, (uint64_t)(uintptr_t)cvq_pages[k].bytes, 3, 72) == 72,
                  "map page %d in ASID 1", k);
    }
    struct vhost_vring_state st = { .index = q, .num = CVQ_NUM };
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_NUM, &st));
    st.num = 0;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_BASE, &st));
    struct vhost_vring_addr addr = { .index = q, .desc_user_addr = *base, .avail_user_addr = *base + 16 * CVQ_NUM, .used_user_addr = *base + 0x1000 };
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_ADDR, &addr));
    cvq_kick = eventfd(0, EFD_CLOEXEC);
    cvq_call = eventfd(0, EFD_CLOEXEC);
    struct vhost_vring_file file = { .index = q, .fd = cvq_kick };
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_KICK, &file));
    file.fd = cvq_call;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_CALL, &file));
    status = 0xf;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_STATUS, &status));
    if (enable) {
        st.num = 1;
        EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_VRING_ENABLE, &st));
    }
    return q;
}

/* The gates (docs/kernel-rules.md): D1 a kick on a vq not enabled is dropped, not replayed at enable; D2 a kick while
 * suspended is served at RESUME. */
static void cvq_gates(int fd)
{
    uint64_t base;
    uint32_t q = cvq_setup(fd, 0, 0, &base);
    cvq_post(base, 0);
    cvq_kick_it();
    CHECK(!cvq_called(300) && cvq_used_idx() == 0, "D1: a kick on a vq not enabled is dropped");
    struct vhost_vring_state st = { .index = q, .num = 1 };
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_VRING_ENABLE, &st));
    CHECK(!cvq_called(300), "D1: not replayed at enable");
    cvq_kick_it();
    CHECK(cvq_called(5000) && cvq_used_idx() == 1, "served at the next kick");
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SUSPEND, NULL));
    cvq_post(base, 0);
    cvq_kick_it();
    CHECK(!cvq_called(300) && cvq_used_idx() == 1, "D2: nothing served while suspended");
    EXPECT_OK(ioctl(fd, VHOST_VDPA_RESUME, NULL));
    CHECK(cvq_called(5000) && cvq_used_idx() == 2, "D2: the kick is served at RESUME");
}

/* A hostile VMM: a descriptor loop and an unmapped buffer cost one error each; the queue and the device go on. */
static void cvq_evil(int fd)
{
    uint64_t base;
    cvq_setup(fd, 1, 1, &base);
    cvq_post(base, 1);
    cvq_kick_it();
    usleep(200000);
    cvq_post(base, 2);
    cvq_kick_it();
    usleep(200000);
    for (int k = 0; k < 10000; k++) cvq_kick_it();  /* a kick storm: the eventfd coalesces */
    cvq_post(base, 0);
    cvq_kick_it();
    CHECK(cvq_called(5000), "a good command after the bad ones is served");
    uint32_t id;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_DEVICE_ID, &id));
}

/* Control-command latency, kick to call, over `n` commands. */
static void cvq_bench(int fd, long n)
{
    uint64_t base;
    cvq_setup(fd, 1, 1, &base);
    struct timespec t0, t1;
    double total = 0, worst = 0;
    for (long k = 0; k < n; k++) {
        cvq_post(base, 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cvq_kick_it();
        if (!cvq_called(5000)) { failures++; break; }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double us = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
        total += us;
        if (us > worst) worst = us;
    }
    printf("control command, kick to call: %.1f us mean, %.1f us worst over %ld\n", total / (double)n, worst, n);
}

/* The control queue served by vdpad's data path: a split ring in this process's memory, in ASID 1 at
 * made-up IOVAs when `isolate` (as QEMU 10's shadow CVQ does), a MAC_ADDR_SET command, a kick, the call, the ack. */
static void cvq(int fd, int isolate)
{
    uint64_t base;
    uint32_t q = cvq_setup(fd, isolate, 1, &base);
    uint8_t *used = cvq_pages[1].bytes, *out = cvq_pages[2].bytes, *in = cvq_pages[3].bytes;
    in[0] = 0xFF;
    cvq_post(base, 0);
    cvq_kick_it();
    CHECK(cvq_called(5000), "the call eventfd was signalled within 5 s");
    uint32_t used_id, used_len;
    memcpy(&used_id, used + 4, 4);
    memcpy(&used_len, used + 8, 4);
    CHECK(cvq_used_idx() == 1 && used_id == 0 && used_len == 1, "used idx %u id %u len %u", cvq_used_idx(), used_id, used_len);
    CHECK(in[0] == 0, "ack %u (VIRTIO_NET_OK)", in[0]);
    unsigned char buf[sizeof(struct vhost_vdpa_config) + 6];
    struct vhost_vdpa_config *c = (void *)buf;
    c->off = 0;
    c->len = 6;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_CONFIG, c));
    CHECK(memcmp(c->buf, out + 2, 6) == 0, "the config MAC is the one the command set");
    struct vhost_vring_state st = { .index = q };
    EXPECT_OK(ioctl(fd, VHOST_GET_VRING_BASE, &st));
    CHECK(st.num == 1, "GET_VRING_BASE follows the device: %u", st.num);
}

/* The kernel's owner gate (R41, R5) and the three IOTLB answers issue 25 found on a real 6.12 kernel
 * (perm stored as given, edge #14; INVALIDATE of size 0, R2 corrected). */
static void owner_gate(int fd)
{
    struct vhost_vring_state st = { .index = 0, .num = 16 };
    struct vhost_memory mem = { 0 };
    uint32_t u32;
    uint8_t status;
    static char page[4096] __attribute__((aligned(4096)));
    uint64_t uaddr = (uint64_t)(uintptr_t)page;
    /* Before SET_OWNER: the vring class, SET_MEM_TABLE and unknown commands are EPERM, even with a NULL
     * argument (the owner is checked first); the getters, status and SUSPEND need no owner. */
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_VRING_NUM, &st), EPERM);
    EXPECT_ERRNO(ioctl(fd, VHOST_GET_VRING_BASE, &st), EPERM);
    EXPECT_ERRNO(ioctl(fd, VHOST_VDPA_GET_VRING_GROUP, &st), EPERM);
    EXPECT_ERRNO(ioctl(fd, VHOST_SET_MEM_TABLE, &mem), EPERM);
    EXPECT_ERRNO(ioctl(fd, VHOST_RESET_OWNER, NULL), EPERM);  /* edge #76 without the owner */
    EXPECT_ERRNO(ioctl(fd, _IOWR(VHOST_VIRTIO, 0x82, struct vhost_vring_state), NULL), EPERM);  /* edge #80 */
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_DEVICE_ID, &u32));
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_STATUS, &status));
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SUSPEND, NULL));
    /* IOTLB writes: the handler's owner check is EPERM, squashed to EFAULT (R5, R3); R1 and R2 come first. */
    errno = 0;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0x1000, uaddr, 3, 72) == -1 && errno == EFAULT, "UPDATE before SET_OWNER: EFAULT");
    errno = 0;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72) == -1 && errno == EFAULT, "BATCH_BEGIN before SET_OWNER: EFAULT");
    errno = 0;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0, uaddr, 3, 72) == -1 && errno == EINVAL, "size 0 UPDATE: EINVAL first (R2)");
    EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_NUM, &st));
    EXPECT_OK(ioctl(fd, VHOST_GET_VRING_BASE, &st));
    /* perm 0 and 7 are stored as given (edge #14). */
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0x1000, uaddr, 0, 72) == 72, "perm 0: 72");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x200000, 0x2000, uaddr, 7, 72) == 72, "perm 7: 72");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x400000, 0x1000, uaddr, 3, 72) == 72, "rw: 72");
    /* INVALIDATE of size 0 (R2, corrected): at 0x201000 it takes [0x200000, 0x201fff], which holds 0x200fff and
     * 0x201000; at 0 every entry.  An UPDATE of the same range then finds no overlap. */
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_INVALIDATE, 0x201000, 0, 0, 0, 72) == 72, "INVALIDATE size 0 at 0x201000: 72");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x200000, 0x2000, uaddr, 3, 72) == 72, "the straddling entry went");
    errno = 0;
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0x1000, uaddr, 3, 72) == -1 && errno == EFAULT, "the others stayed (EEXIST)");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_INVALIDATE, 0, 0, 0, 0, 72) == 72, "INVALIDATE size 0 at 0: 72");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0x1000, uaddr, 3, 72) == 72, "every entry went");
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x400000, 0x1000, uaddr, 3, 72) == 72, "every entry went");
}

struct thread_arg { int fd; int rounds; int bad; };

static void *hammer(void *p)
{
    struct thread_arg *a = p;
    for (int k = 0; k < a->rounds; k++) {
        struct vhost_vring_state st = { .index = (uint32_t)(k % 2) };
        uint32_t id;
        if (ioctl(a->fd, VHOST_GET_VRING_BASE, &st) != 0 || st.num != 0) a->bad++;
        if (ioctl(a->fd, VHOST_VDPA_GET_DEVICE_ID, &id) != 0 || id != 1) a->bad++;
        uint8_t status;
        if (ioctl(a->fd, VHOST_VDPA_GET_STATUS, &status) != 0) a->bad++;
    }
    return NULL;
}

static void threads(int fd)
{
    EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));  /* GET_VRING_BASE is the owner's (R41) */
    int copy = dup(fd);  /* a duplicated fd keeps working, and shares the session */
    struct thread_arg a = { fd, 2000, 0 }, b = { copy, 2000, 0 };
    pthread_t ta, tb;
    pthread_create(&ta, NULL, hammer, &a);
    pthread_create(&tb, NULL, hammer, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.bad == 0 && b.bad == 0, "concurrent ioctls: %d and %d wrong answers", a.bad, b.bad);
    close(copy);
    uint32_t id;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_DEVICE_ID, &id));  /* the original still works after the dup is closed */
}

static void hold(int fd, long pages)
{
    static char page[4096] __attribute__((aligned(4096)));
    uint64_t u64 = 0x6;
    EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));
    EXPECT_OK(ioctl(fd, VHOST_SET_BACKEND_FEATURES, &u64));
    CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72) == 72, "BATCH_BEGIN");
    for (long k = 0; k < pages; k++)
        CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, (uint64_t)k << 12, 4096, (uint64_t)(uintptr_t)page, 3, 72) == 72, "UPDATE %ld", k);
    printf("mapped\n");
    fflush(stdout);
    for (;;)
        pause();  /* killed here, mid-batch */
}

static void reopen(int fd, const char *path, long n)
{
    static char page[4096] __attribute__((aligned(4096)));
    for (long k = 0; k < n; k++) {
        EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));
        CHECK(iotlb(fd, 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 4096, (uint64_t)(uintptr_t)page, 3, 72) == 72, "UPDATE %ld", k);
        EXPECT_OK(close(fd));
        fd = open(path, O_RDWR | O_CLOEXEC);
        CHECK(fd >= 0, "open %ld right after close: %s", k, strerror(errno));
        if (fd < 0)
            return;
    }
    close(fd);
}

static void close_later(int fd)
{
    EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof(line), stdin)) return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    EXPECT_OK(close(fd));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("closed in %ld ms\n", (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
}

static void killed_owner(int fd, const char *path, long n)
{
    close(fd);
    for (long k = 0; k < n; k++) {
        int ready[2];
        if (pipe(ready)) return;
        pid_t child = fork();
        if (child == 0) {
            int own = open(path, O_RDWR | O_CLOEXEC);
            char ok = own >= 0 && ioctl(own, VHOST_SET_OWNER, NULL) == 0;
            if (write(ready[1], &ok, 1) != 1) _exit(1);
            for (;;) pause();
        }
        char ok = 0;
        CHECK(child > 0 && read(ready[0], &ok, 1) == 1 && ok, "round %ld: the child owns the file", k);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        close(ready[0]);
        close(ready[1]);
        int again = open(path, O_RDWR | O_CLOEXEC);
        CHECK(again >= 0, "round %ld: open after the owner was killed and reaped: %s", k, strerror(errno));
        if (again < 0) return;
        close(again);
    }
}

static void bench(int fd, long n)
{
    struct timespec t0, t1;
    struct vhost_vring_state st = { .index = 0 };
    EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));  /* GET_VRING_BASE is the owner's (R41): EPERM before */
    for (int k = 0; k < 1000; k++) ioctl(fd, VHOST_GET_VRING_BASE, &st);  /* warm-up */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < n; k++)
        if (ioctl(fd, VHOST_GET_VRING_BASE, &st) != 0) failures++;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n;
    printf("ioctl GET_VRING_BASE through libvdpad-vhost: %.0f ns mean over %ld\n", ns, n);
}

/* What the library's poll costs a VMM's main loop while a session is open (it then looks for the session's fds
 * in every array): ppoll over 20 pipes (none ready, no wait) through the library and as a bare system call,
 * alternating, five rounds each; prints the medians. */
static int by_ns(const void *a, const void *b) { return *(const double *)a < *(const double *)b ? -1 : *(const double *)a > *(const double *)b; }

static void poll_bench(long n)
{
    struct pollfd p[20];
    for (int k = 0; k < 20; k++) {
        int ends[2];
        CHECK(pipe(ends) == 0, "pipe");
        p[k] = (struct pollfd){ .fd = ends[0], .events = POLLIN };
    }
    double ns[2][5];
    struct timespec none = { 0, 0 };
    for (int k = 0; k < 1000; k++) ppoll(p, 20, &none, NULL);  /* warm-up */
    for (int round = 0; round < 10; round++) {
        int bare = round % 2;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long k = 0; k < n; k++)
            if ((bare ? syscall(SYS_ppoll, p, 20, &none, NULL, 8) : ppoll(p, 20, &none, NULL)) != 0) failures++;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ns[bare][round / 2] = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n;
    }
    qsort(ns[0], 5, sizeof(double), by_ns);
    qsort(ns[1], 5, sizeof(double), by_ns);
    printf("ppoll over 20 pipes with a session open: %.0f ns through the library, %.0f ns as a system call (medians of 5 x %ld)\n",
           ns[0][2], ns[1][2], n);
}

/* ---- data queues ----
 * Rings and buffers live in one arena: static memory with IOVA = address (the device's ASID 0 is identity until
 * the first map: vdpad copies through process_vm_readv), or, in the "-shared" modes, a memfd mapped MAP_SHARED and
 * mapped into ASID 0 at an IOVA of its own (so vdpad reaches it through the region the preload library shares,
 * and nothing works if it took an IOVA for an address). */

#define DQ_NUM 16
#define DQ_ARENA_PAGES 32
#define DQ_IOVA_BASE 0x40000000ULL
struct dq {
    uint8_t *desc, *avail, *used;
    uint16_t avail_idx;
    int kick, call;
};
static uint8_t dq_static[DQ_ARENA_PAGES * 4096] __attribute__((aligned(4096)));
static uint8_t *dq_arena = dq_static;
static int dq_shared;
#define dq_page(n) (dq_arena + 4096 * (n))
#define dq_buffer(k) (dq_page(8) + 2048 * (k))  /* 16 buffers of 2 KiB: pages 8–15 */

static uint64_t dq_iova(const void *p)
{
    return dq_shared ? DQ_IOVA_BASE + (uint64_t)((const uint8_t *)p - dq_arena) : (uint64_t)(uintptr_t)p;
}

/* The "-shared" modes: the arena becomes a memfd's shared mapping (before the device is opened or after:
 * the preload library notes it either way and shares it at the first IOTLB update that covers it). */
static void dq_share_arena(void)
{
    int mfd = memfd_create("vmm_probe.ram", MFD_CLOEXEC);
    CHECK(mfd >= 0 && ftruncate(mfd, sizeof dq_static) == 0, "memfd");
    void *p = mmap(NULL, sizeof dq_static, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    CHECK(p != MAP_FAILED, "mmap of the memfd");
    close(mfd);  /* the VMM may close its descriptor: the library keeps its own */
    dq_arena = p;
    dq_shared = 1;
}

static void dq_init(int fd, uint32_t q, struct dq *r, int slot)
{
    r->desc = dq_page(3 * slot);
    r->avail = dq_page(3 * slot + 1);
    r->used = dq_page(3 * slot + 2);
    r->avail_idx = 0;
    struct vhost_vring_state st = { .index = q, .num = DQ_NUM };
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_NUM, &st));
    st.num = 0;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_BASE, &st));
    struct vhost_vring_addr addr = { .index = q, .desc_user_addr = dq_iova(r->desc), .avail_user_addr = dq_iova(r->avail),
                                     .used_user_addr = dq_iova(r->used) };
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_ADDR, &addr));
    r->kick = eventfd(0, EFD_CLOEXEC);
    r->call = eventfd(0, EFD_CLOEXEC);
    struct vhost_vring_file file = { .index = q, .fd = r->kick };
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_KICK, &file));
    file.fd = r->call;
    EXPECT_OK(ioctl(fd, VHOST_SET_VRING_CALL, &file));
}

static void dq_enable(int fd, uint32_t q)
{
    struct vhost_vring_state st = { .index = q, .num = 1 };
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_VRING_ENABLE, &st));
}

/* Descriptor `i` of `r`: one buffer, chained to i+1 when `more`. */
static void dq_desc(struct dq *r, uint16_t i, void *buf, uint32_t len, int writable, int more)
{
    uint64_t a = dq_iova(buf);
    uint16_t f = (uint16_t)((more ? 1 : 0) | (writable ? 2 : 0)), nx = (uint16_t)(i + 1);
    uint8_t *d = r->desc + 16 * i;
    memcpy(d, &a, 8); memcpy(d + 8, &len, 4); memcpy(d + 12, &f, 2); memcpy(d + 14, &nx, 2);
}

static void dq_post(struct dq *r, uint16_t head)
{
    memcpy(r->avail + 4 + 2 * (r->avail_idx % DQ_NUM), &head, 2);
    __atomic_store_n((uint16_t *)(r->avail + 2), ++r->avail_idx, __ATOMIC_RELEASE);
}

static void dq_kick(struct dq *r)
{
    uint64_t one = 1;
    CHECK(write(r->kick, &one, 8) == 8, "kick");
}

/* Waits (up to `ms`) until the used idx reaches `want`. */
static int dq_wait(struct dq *r, uint16_t want, int ms)
{
    for (int t = 0; t < ms; t += 10) {
        if (__atomic_load_n((uint16_t *)(r->used + 2), __ATOMIC_ACQUIRE) >= want) return 1;
        struct pollfd p = { .fd = r->call, .events = POLLIN };
        if (poll(&p, 1, 10) == 1) { uint64_t v; (void)!read(r->call, &v, 8); }
    }
    return __atomic_load_n((uint16_t *)(r->used + 2), __ATOMIC_ACQUIRE) >= want;
}

static uint32_t dq_used_len(struct dq *r, int n) { uint32_t v; memcpy(&v, r->used + 8 + 8 * n, 4); return v; }

/* The driver's first steps on a data-path device: owner, backend features, `features`, FEATURES_OK. */
static void dq_negotiate(int fd, uint64_t features)
{
    uint64_t u64 = 0x3e;  /* MSG_V2, BATCH, IOTLB_ASID, SUSPEND, RESUME */
    EXPECT_OK(ioctl(fd, VHOST_SET_OWNER, NULL));
    EXPECT_OK(ioctl(fd, VHOST_SET_BACKEND_FEATURES, &u64));
    EXPECT_OK(ioctl(fd, VHOST_SET_FEATURES, &features));
    uint8_t status = 0xb;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_STATUS, &status));
    if (dq_shared)
        CHECK(iotlb(fd, VHOST_IOTLB_MSG_V2, 0, VHOST_IOTLB_UPDATE, DQ_IOVA_BASE, sizeof dq_static, (uint64_t)(uintptr_t)dq_arena,
                    3 /* RW */, sizeof(struct vhost_msg_v2)) == 72, "IOTLB update of the shared arena");
}

/* Net: RX buffers posted, then three frames sent: to the device's MAC and to broadcast they come back intact (a
 * zeroed virtio-net header in front, as sent), to a foreign MAC it is dropped; TX completes all three. */
static void net_loop(int fd)
{
    dq_negotiate(fd, (1ULL << 32) | (1ULL << 33) | (1ULL << 5));  /* VERSION_1, ACCESS_PLATFORM, MAC */
    uint8_t status;
    unsigned char cbuf[sizeof(struct vhost_vdpa_config) + 6];
    struct vhost_vdpa_config *c = (void *)cbuf;
    c->off = 0;
    c->len = 6;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_GET_CONFIG, c));
    uint8_t mac[6], foreign[6], broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    memcpy(mac, c->buf, 6);
    memcpy(foreign, mac, 6);
    foreign[0] ^= 0x04;  /* still unicast; differs at the first byte, so no prefix of 00s can match it */
    struct dq rx, tx;
    dq_init(fd, 0, &rx, 0);
    dq_init(fd, 1, &tx, 1);
    status = 0xf;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_STATUS, &status));
    dq_enable(fd, 0);
    dq_enable(fd, 1);
    for (uint16_t k = 0; k < 4; k++) {
        memset(dq_buffer(k), 0xEE, 2048);
        dq_desc(&rx, k, dq_buffer(k), 2048, 1, 0);
        dq_post(&rx, k);
    }
    dq_kick(&rx);
    const uint8_t *dsts[3] = { mac, foreign, broadcast };
    uint32_t lens[3] = { 1514, 60, 100 };
    for (uint16_t k = 0; k < 3; k++) {
        uint8_t *f = dq_buffer(8 + k);
        memset(f, 0, 12);  /* virtio_net_hdr_v1, all zero */
        memcpy(f + 12, dsts[k], 6);
        memcpy(f + 18, mac, 6);
        f[24] = 0x88; f[25] = 0xB5; f[26] = (uint8_t)k;
        for (uint32_t i = 27; i < 12 + lens[k]; i++) f[i] = (uint8_t)(i * 13 + k);
        dq_desc(&tx, k, f, 12 + lens[k], 0, 0);
        dq_post(&tx, k);
    }
    dq_kick(&tx);
    CHECK(dq_wait(&tx, 3, 5000), "TX completes all three frames (used idx %u)", *(uint16_t *)(tx.used + 2));
    CHECK(dq_wait(&rx, 2, 5000), "two frames come back (used idx %u)", *(uint16_t *)(rx.used + 2));
    CHECK(*(uint16_t *)(rx.used + 2) == 2, "the foreign frame is dropped");
    CHECK(dq_used_len(&rx, 0) == 12 + lens[0] && memcmp(dq_buffer(0), dq_buffer(8), 12 + lens[0]) == 0, "the frame to its MAC, intact");
    CHECK(dq_used_len(&rx, 1) == 12 + lens[2] && memcmp(dq_buffer(1), dq_buffer(10), 12 + lens[2]) == 0, "the broadcast, intact");
    CHECK(dq_used_len(&tx, 0) == 0, "TX used.len is 0");
}

/* Block: OUT of a pattern at sector 8, IN of the same sectors, FLUSH, GET_ID, and an IN off the disk (IOERR). */
static void blk_request(struct dq *r, uint16_t head, uint32_t type, uint64_t sector, void *data, uint32_t len, int data_writable, uint8_t *status_byte)
{
    uint8_t *h = dq_page(20) + 16 * (head / 3);  /* the request headers: page 20 */
    memset(h, 0, 16);
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    *status_byte = 0xEE;
    dq_desc(r, head, h, 16, 0, 1);
    if (len) {
        dq_desc(r, (uint16_t)(head + 1), data, len, data_writable, 1);
        dq_desc(r, (uint16_t)(head + 2), status_byte, 1, 1, 0);
    } else {
        dq_desc(r, (uint16_t)(head + 1), status_byte, 1, 1, 0);
    }
    dq_post(r, head);
}

static void blk_io(int fd)
{
    dq_negotiate(fd, (1ULL << 32) | (1ULL << 33) | (1ULL << 9));  /* VERSION_1, ACCESS_PLATFORM, FLUSH */
    uint8_t status;
    struct dq q;
    dq_init(fd, 0, &q, 0);
    status = 0xf;
    EXPECT_OK(ioctl(fd, VHOST_VDPA_SET_STATUS, &status));
    dq_enable(fd, 0);
    uint8_t *out = dq_page(21), *in = dq_page(22), *id = dq_page(23), *statuses = dq_page(24);
    for (int i = 0; i < 2048; i++) out[i] = (uint8_t)(i * 7 + 1);
    memset(in, 0, 2048);
    blk_request(&q, 0, 1, 8, out, 2048, 0, &statuses[0]);        /* OUT */
    blk_request(&q, 3, 0, 8, in, 2048, 1, &statuses[1]);         /* IN */
    blk_request(&q, 6, 4, 0, NULL, 0, 0, &statuses[2]);          /* FLUSH */
    blk_request(&q, 9, 8, 0, id, 20, 1, &statuses[3]);           /* GET_ID */
    blk_request(&q, 12, 0, 0x3ffff, in, 1024, 1, &statuses[4]);  /* IN past the end: IOERR */
    dq_kick(&q);
    CHECK(dq_wait(&q, 5, 5000), "five requests complete (used idx %u)", *(uint16_t *)(q.used + 2));
    CHECK(statuses[0] == 0 && statuses[1] == 0 && statuses[2] == 0 && statuses[3] == 0, "OK, OK, OK, OK: %u %u %u %u",
          statuses[0], statuses[1], statuses[2], statuses[3]);
    CHECK(memcmp(in, out, 2048) == 0, "the sectors read back as written");
    CHECK(memcmp(id, "vdpa_blk_sim", 12) == 0, "GET_ID");
    CHECK(statuses[4] == 1, "IN past the end is IOERR (%u)", statuses[4]);
    CHECK(dq_used_len(&q, 0) == 1 && dq_used_len(&q, 1) == 2049 && dq_used_len(&q, 3) == 21, "used lengths %u %u %u",
          dq_used_len(&q, 0), dq_used_len(&q, 1), dq_used_len(&q, 3));
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: vmm_probe blk|net|threads|hold|bench PATH [N]\n");
        return 2;
    }
    if (strstr(argv[1], "-shared")) dq_share_arena();
    int fd = open(argv[2], O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("open %s: %s\n", argv[2], strerror(errno));
        return 3;
    }
    if (strcmp(argv[1], "blk") == 0) blk(fd);
    else if (strcmp(argv[1], "net") == 0) net(fd);
    else if (strcmp(argv[1], "threads") == 0) threads(fd);
    else if (strcmp(argv[1], "owner-gate") == 0) owner_gate(fd);
    else if (strcmp(argv[1], "cvq") == 0) cvq(fd, 0);
    else if (strcmp(argv[1], "cvq-asid1") == 0) cvq(fd, 1);
    else if (strcmp(argv[1], "cvq-gates") == 0) cvq_gates(fd);
    else if (strcmp(argv[1], "cvq-evil") == 0) cvq_evil(fd);
    else if (strcmp(argv[1], "cvq-bench") == 0) cvq_bench(fd, argc > 3 ? atol(argv[3]) : 10000);
    else if (strcmp(argv[1], "net-loop") == 0 || strcmp(argv[1], "net-loop-shared") == 0) net_loop(fd);
    else if (strcmp(argv[1], "blk-io") == 0 || strcmp(argv[1], "blk-io-shared") == 0) blk_io(fd);
    else if (strcmp(argv[1], "hold") == 0) hold(fd, argc > 3 ? atol(argv[3]) : 1000);
    else if (strcmp(argv[1], "bench") == 0) bench(fd, argc > 3 ? atol(argv[3]) : 100000);
    else if (strcmp(argv[1], "poll-bench") == 0) poll_bench(argc > 3 ? atol(argv[3]) : 100000);
    else if (strcmp(argv[1], "close-later") == 0) close_later(fd);
    else if (strcmp(argv[1], "killed-owner") == 0) killed_owner(fd, argv[2], argc > 3 ? atol(argv[3]) : 100);
    else if (strcmp(argv[1], "reopen") == 0) reopen(fd, argv[2], argc > 3 ? atol(argv[3]) : 100);
    else return 2;
    if (dq_shared)
        CHECK(munmap(dq_arena, sizeof dq_static) == 0, "munmap of the shared arena");
    close(fd);
    if (failures) printf("%d checks failed\n", failures);
    else printf("ok\n");
    return failures ? 1 : 0;
}
