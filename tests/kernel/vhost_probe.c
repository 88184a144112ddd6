/* vhost_probe.c — one scripted list of vhost-vdpa calls, run against the real Linux 6.12 vhost_vdpa (in a
 * guest, on a VDUSE virtio-blk device) and against vdpad (on the host, through libvdpad-vhost.so, on a
 * vdpasim_blk device), printing one line per call so the two transcripts can be compared line by line
 * (tests/qemu/test_kernel612.py; issue 25).  The list follows docs/kernel-rules.md's edge-case tables:
 * ioctls and IOTLB writes of every kind, in and out of order, before and after SET_OWNER, with and
 * without DRIVER_OK (sections A–F), arguments the kernel cannot reach (G), the file as a file — a forked
 * child, a dup, O_NONBLOCK, other ioctl types (H) — its opens and closes (I), and its other calls: reads,
 * gathered and positioned writes, lseek, poll, select, epoll, fstat, the status flags, socket calls, and
 * the path's stat, access and /proc/self/fd link (J).
 *
 *   vhost_probe PATH     lines "N NAME r=RET e=ERRNO [v=VALUE]", then "end"
 *
 * Static (no libc beyond what the guest's kernel ABI needs): the guest runs it from its initramfs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../preload/vdpad_vhost_abi.h"

static int fd, step;

static const char *errno_name(int e)
{
    static const struct { int e; const char *n; } names[] = {
        { 0, "0" }, { EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EIO, "EIO" }, { EBADF, "EBADF" }, { ENOMEM, "ENOMEM" },
        { EFAULT, "EFAULT" }, { EBUSY, "EBUSY" }, { EEXIST, "EEXIST" }, { ENODEV, "ENODEV" }, { EINVAL, "EINVAL" },
        { ENOTTY, "ENOTTY" }, { ENOSPC, "ENOSPC" }, { E2BIG, "E2BIG" }, { ERANGE, "ERANGE" }, { EOPNOTSUPP, "EOPNOTSUPP" },
        { ENOBUFS, "ENOBUFS" }, { ESPIPE, "ESPIPE" }, { ENOTSOCK, "ENOTSOCK" }, { EACCES, "EACCES" }, { 524, "ENOTSUPP" },
    };
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (names[k].e == e)
            return names[k].n;
    static char other[16];
    snprintf(other, sizeof(other), "E%d", e);
    return other;
}

/* One line: the step, what was called, its return and errno (0 on success), and what it read. */
static void line(const char *name, long r, const char *value)
{
    int e = r < 0 ? errno : 0;
    printf("%d %s r=%ld e=%s%s%s\n", ++step, name, r < 0 ? -1 : r, errno_name(e), value ? " v=" : "", value ? value : "");
    fflush(stdout);
}

#define CALL(name, expr) do { errno = 0; long r_ = (long)(expr); line(name, r_, NULL); } while (0)
#define IOCTL(name, request, arg) CALL(name, ioctl(fd, request, arg))

/* A stat's line: the file's type, permissions and minor (the major is the parent's dynamic one on Linux, 0 in
 * vdpad: not compared), read from the mode and minor given once `call` has filled them. */
static void stat_line(const char *name, long r, unsigned mode, unsigned rdev_minor)
{
    char b[48];
    snprintf(b, sizeof b, "%s,%03o,minor=%u", S_ISCHR(mode) ? "chr" : S_ISSOCK(mode) ? "sock" : "other", mode & 07777, rdev_minor);
    line(name, r, r == 0 ? b : NULL);
}
#define STAT(name, call, mode, rdev_minor) do { errno = 0; long r_ = (long)(call); stat_line(name, r_, mode, rdev_minor); } while (0)
#define IOCTL_U64(name, request) do { uint64_t v_ = 0; errno = 0; long r_ = ioctl(fd, request, &v_); char b_[32]; snprintf(b_, sizeof b_, "0x%llx", (unsigned long long)v_); line(name, r_, r_ == 0 ? b_ : NULL); } while (0)
#define IOCTL_U32(name, request) do { uint32_t v_ = 0; errno = 0; long r_ = ioctl(fd, request, &v_); char b_[32]; snprintf(b_, sizeof b_, "%u", v_); line(name, r_, r_ == 0 ? b_ : NULL); } while (0)

static void vring_state(const char *name, unsigned long request, uint32_t index, uint32_t num, int show)
{
    struct vhost_vring_state st = { .index = index, .num = num };
    errno = 0;
    long r = ioctl(fd, request, &st);
    char b[32];
    snprintf(b, sizeof b, "%u", st.num);
    line(name, r, r == 0 && show ? b : NULL);
}

static void vring_areas(const char *name, uint64_t desc, uint64_t avail, uint64_t used, uint64_t log, uint32_t flags)
{
    struct vhost_vring_addr a = { .index = 0, .flags = flags, .desc_user_addr = desc, .avail_user_addr = avail,
                                  .used_user_addr = used, .log_guest_addr = log };
    IOCTL(name, VHOST_SET_VRING_ADDR, &a);
}

static void vring_addr(const char *name, uint64_t avail, uint32_t flags) { vring_areas(name, 0x10000, avail, 0x12000, 0, flags); }

static void vq_file(const char *name, unsigned long request, uint32_t index, int file)
{
    struct vhost_vring_file f = { .index = index, .fd = file };
    IOCTL(name, request, &f);
}

static void vring_file(const char *name, unsigned long request, int file) { vq_file(name, request, 0, file); }

static void config(const char *name, uint32_t off, uint32_t len)
{
    unsigned char buf[sizeof(struct vhost_vdpa_config) + 256];  /* room for any length the probe asks */
    struct vhost_vdpa_config *c = (void *)buf;
    c->off = off;
    c->len = len;
    errno = 0;
    long r = ioctl(fd, VHOST_VDPA_GET_CONFIG, c);
    char hex[2 * 64 + 1] = "";
    for (uint32_t k = 0; r == 0 && k < len && k < 64; k++) snprintf(hex + 2 * k, 3, "%02x", c->buf[k]);
    line(name, r, r == 0 ? hex : NULL);
}

/* SET_CONFIG of `len` zero bytes at `off` (the probe writes only lengths the kernel refuses). */
static void set_config(const char *name, uint32_t off, uint32_t len)
{
    unsigned char buf[sizeof(struct vhost_vdpa_config) + 256] = { 0 };
    struct vhost_vdpa_config *c = (void *)buf;
    c->off = off;
    c->len = len;
    IOCTL(name, VHOST_VDPA_SET_CONFIG, c);
}

/* SET_MEM_TABLE with `n` regions of `size` bytes at guest address `gpa` (vhost's own table, never read by
 * vhost-vdpa, but validated by vhost_set_memory in its order). */
static void mem_table(const char *name, uint32_t n, uint32_t padding, uint64_t gpa, uint64_t size, uint64_t uaddr)
{
    static unsigned char buf[sizeof(struct vhost_memory) + 65 * sizeof(struct vhost_memory_region)];
    struct vhost_memory *m = (void *)buf;
    memset(buf, 0, sizeof(buf));
    m->nregions = n;
    m->padding = padding;
    for (uint32_t k = 0; k < n && k < 65; k++)
        m->regions[k] = (struct vhost_memory_region){ .guest_phys_addr = gpa + k * size, .memory_size = size, .userspace_addr = uaddr };
    IOCTL(name, VHOST_SET_MEM_TABLE, m);
}

static void status(const char *name, uint8_t s)
{
    IOCTL(name, VHOST_VDPA_SET_STATUS, &s);
}

/* One IOTLB message of `len` bytes (72 for a whole vhost_msg_v2). */
static void iotlb(const char *name, uint32_t outer, uint32_t asid, uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr,
                  uint8_t perm, size_t len)
{
    struct vhost_msg_v2 m;
    memset(&m, 0, sizeof(m));
    m.type = outer;
    m.asid = asid;
    m.iotlb.iova = iova;
    m.iotlb.size = size;
    m.iotlb.uaddr = uaddr;
    m.iotlb.perm = perm;
    m.iotlb.type = type;
    errno = 0;
    line(name, (long)write(fd, &m, len), NULL);
}

/* An IOTLB message (v2) built for the gathering and positioned writes of section J. */
static struct vhost_msg_v2 message(uint8_t type, uint64_t iova, uint64_t uaddr)
{
    struct vhost_msg_v2 m;
    memset(&m, 0, sizeof(m));
    m.type = VHOST_IOTLB_MSG_V2;
    m.iotlb = (struct vhost_iotlb_msg){ .iova = iova, .size = 0x1000, .uaddr = uaddr, .perm = 3 /* RW */, .type = type };
    return m;
}

/* writev of `m` cut at the offsets given (ascending, within 72), each piece its own iovec; a piece whose start is
 * `hole` is pointed at `elsewhere` instead. */
static void writev_pieces(const char *name, const struct vhost_msg_v2 *m, const size_t *cuts, int ncuts, int hole, void *elsewhere)
{
    struct iovec iov[8];
    size_t at = 0;
    for (int k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : sizeof(*m);
        iov[k] = (struct iovec){ k == hole ? elsewhere : (uint8_t *)m + at, end - at };
        at = end;
    }
    errno = 0;
    line(name, (long)writev(fd, iov, ncuts + 1), NULL);
}

static void poll_line(const char *name, short events)
{
    struct pollfd p = { .fd = fd, .events = events };
    errno = 0;
    long r = poll(&p, 1, 0);
    char b[16];
    snprintf(b, sizeof b, "0x%x", (unsigned)p.revents);
    line(name, r, r >= 0 ? b : NULL);
}

/* F_GETFL's flags, as a line. */
static void status_flags(const char *name)
{
    errno = 0;
    long r = fcntl(fd, F_GETFL);
    char b[16];
    snprintf(b, sizeof b, "0x%lx", r);
    line(name, r, r >= 0 ? b : NULL);
}

/* Reopen the device with `flags` for section J's calls (SET_OWNER too when `own`). */
static int reopen(const char *path, const char *name, int flags, int own)
{
    close(fd);
    errno = 0;
    fd = open(path, flags | O_CLOEXEC);
    line(name, fd < 0 ? -1 : 0, NULL);
    if (fd >= 0 && own)
        IOCTL("SET_OWNER", VHOST_SET_OWNER, NULL);
    return fd;
}

int main(int argc, char **argv)
{
    fd = open(argc > 1 ? argv[1] : "/dev/vhost-vdpa-0", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("0 open r=-1 e=%s\n", errno_name(errno));
        return 1;
    }
    /* IOTLB updates point into a shared file mapping: the only memory VDUSE maps by user address. */
    int memfd = memfd_create("vhost_probe", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, 1 << 20))
        return 1;
    uint8_t *ram = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (ram == MAP_FAILED)
        return 1;
    uint64_t u = (uint64_t)(uintptr_t)ram;
    int kick = eventfd(0, EFD_CLOEXEC), call = eventfd(0, EFD_CLOEXEC), cfg = eventfd(0, EFD_CLOEXEC), pipes[2];
    if (pipe(pipes))
        return 1;
    struct vhost_vdpa_iova_range range;
    struct vhost_memory mem = { 0 };
    uint64_t u64;

    /* A. Before SET_OWNER: the getters, status and SUSPEND need no owner (R41); the rest is EPERM; IOTLB
     *    writes EFAULT (R5) after R1/R2's checks. */
    IOCTL_U32("GET_DEVICE_ID", VHOST_VDPA_GET_DEVICE_ID);
    IOCTL_U64("GET_FEATURES", VHOST_GET_FEATURES);
    IOCTL_U32("GET_VQS_COUNT", VHOST_VDPA_GET_VQS_COUNT);
    { uint16_t v = 0; errno = 0; long r = ioctl(fd, VHOST_VDPA_GET_VRING_NUM, &v); char b[16]; snprintf(b, sizeof b, "%u", v); line("GET_VRING_NUM", r, r == 0 ? b : NULL); }
    IOCTL_U32("GET_CONFIG_SIZE", VHOST_VDPA_GET_CONFIG_SIZE);
    { errno = 0; long r = ioctl(fd, VHOST_VDPA_GET_IOVA_RANGE, &range); char b[48]; snprintf(b, sizeof b, "0x%llx-0x%llx", (unsigned long long)range.first, (unsigned long long)range.last); line("GET_IOVA_RANGE", r, r == 0 ? b : NULL); }
    IOCTL_U32("GET_GROUP_NUM", VHOST_VDPA_GET_GROUP_NUM);
    IOCTL_U32("GET_AS_NUM", VHOST_VDPA_GET_AS_NUM);
    IOCTL_U64("GET_BACKEND_FEATURES", VHOST_GET_BACKEND_FEATURES);
    { uint8_t s = 0xff; errno = 0; long r = ioctl(fd, VHOST_VDPA_GET_STATUS, &s); char b[8]; snprintf(b, sizeof b, "0x%x", s); line("GET_STATUS", r, r == 0 ? b : NULL); }
    vring_state("SET_VRING_NUM before owner", VHOST_SET_VRING_NUM, 0, 16, 0);
    vring_state("GET_VRING_BASE before owner", VHOST_GET_VRING_BASE, 0, 0, 1);
    vring_state("GET_VRING_GROUP before owner", VHOST_VDPA_GET_VRING_GROUP, 0, 0, 1);
    IOCTL("SET_MEM_TABLE before owner", VHOST_SET_MEM_TABLE, &mem);
    IOCTL("RESET_OWNER before owner", VHOST_RESET_OWNER, NULL);
    vring_state("GET_VRING_SIZE before owner", VHOST_VDPA_GET_VRING_SIZE, 0, 0, 1);
    IOCTL("unknown 0x99 before owner", _IO(VHOST_VIRTIO, 0x99), NULL);
    iotlb("UPDATE before owner", 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0x1000, u, 3, 72);
    iotlb("UPDATE size 0 before owner", 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0, u, 3, 72);
    iotlb("BATCH_BEGIN before owner", 2, 0, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72);
    IOCTL("SUSPEND before DRIVER_OK", VHOST_VDPA_SUSPEND, NULL);
    IOCTL("SET_LOG_BASE", VHOST_SET_LOG_BASE, &u64);

    /* B. The owner, backend features, config, features, status. */
    IOCTL("SET_OWNER", VHOST_SET_OWNER, NULL);
    IOCTL("SET_OWNER again", VHOST_SET_OWNER, NULL);
    u64 = 1ULL << 20;
    IOCTL("SET_BACKEND_FEATURES unknown bit", VHOST_SET_BACKEND_FEATURES, &u64);
    u64 = 0x6;
    IOCTL("SET_BACKEND_FEATURES MSG_V2|BATCH", VHOST_SET_BACKEND_FEATURES, &u64);
    config("GET_CONFIG capacity", 0, 8);
    config("GET_CONFIG len 0", 0, 0);
    config("GET_CONFIG off 200", 200, 1);
    u64 = (1ULL << 32) | (1ULL << 33);
    IOCTL("SET_FEATURES VERSION_1|ACCESS_PLATFORM", VHOST_SET_FEATURES, &u64);
    status("SET_STATUS 0x1", 0x1);
    status("SET_STATUS 0x3", 0x3);
    status("SET_STATUS 0xb", 0xb);
    { uint8_t s = 0; errno = 0; long r = ioctl(fd, VHOST_VDPA_GET_STATUS, &s); char b[8]; snprintf(b, sizeof b, "0x%x", s); line("GET_STATUS after 0xb", r, r == 0 ? b : NULL); }

    /* C. Vrings (R58–R65) and groups. */
    vring_state("SET_VRING_NUM 3", VHOST_SET_VRING_NUM, 0, 3, 0);
    vring_state("SET_VRING_NUM 0", VHOST_SET_VRING_NUM, 0, 0, 0);
    vring_state("SET_VRING_NUM 65536", VHOST_SET_VRING_NUM, 0, 65536, 0);
    vring_state("SET_VRING_NUM 256", VHOST_SET_VRING_NUM, 0, 256, 0);
    vring_addr("SET_VRING_ADDR avail odd", 0x11001, 0);
    vring_addr("SET_VRING_ADDR flags 2", 0x11000, 2);
    vring_addr("SET_VRING_ADDR", 0x11000, 0);
    vring_state("SET_VRING_BASE 0x10000", VHOST_SET_VRING_BASE, 0, 0x10000, 0);
    vring_state("SET_VRING_BASE 5", VHOST_SET_VRING_BASE, 0, 5, 0);
    vring_state("GET_VRING_BASE", VHOST_GET_VRING_BASE, 0, 0, 1);
    vring_state("GET_VRING_GROUP 0", VHOST_VDPA_GET_VRING_GROUP, 0, 0, 1);
    vring_state("GET_VRING_GROUP 1", VHOST_VDPA_GET_VRING_GROUP, 1, 0, 1);
    vring_state("SET_GROUP_ASID 0 0", VHOST_VDPA_SET_GROUP_ASID, 0, 0, 0);
    vring_state("GET_VRING_DESC_GROUP 0", VHOST_VDPA_GET_VRING_DESC_GROUP, 0, 0, 1);
    vring_state("GET_VRING_SIZE 0", VHOST_VDPA_GET_VRING_SIZE, 0, 0, 1);
    vring_state("GET_VRING_SIZE 3", VHOST_VDPA_GET_VRING_SIZE, 3, 0, 1);
    vring_file("SET_VRING_KICK eventfd", VHOST_SET_VRING_KICK, kick);
    vring_file("SET_VRING_CALL eventfd", VHOST_SET_VRING_CALL, call);
    vring_file("SET_VRING_KICK pipe", VHOST_SET_VRING_KICK, pipes[0]);
    vring_file("SET_VRING_KICK closed fd", VHOST_SET_VRING_KICK, 1000);
    vring_file("SET_VRING_KICK -1", VHOST_SET_VRING_KICK, -1);
    vring_file("SET_VRING_KICK eventfd again", VHOST_SET_VRING_KICK, kick);
    vring_state("SET_VRING_ENABLE 1", VHOST_VDPA_SET_VRING_ENABLE, 0, 1, 0);
    IOCTL("SET_CONFIG_CALL eventfd", VHOST_VDPA_SET_CONFIG_CALL, &cfg);

    /* D. IOTLB writes (R1–R21, edge #4, #14). */
    iotlb("UPDATE rw", 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0x10000, u, 3, 72);
    iotlb("UPDATE overlap", 2, 0, VHOST_IOTLB_UPDATE, 0x108000, 0x1000, u, 3, 72);
    iotlb("UPDATE perm 0", 2, 0, VHOST_IOTLB_UPDATE, 0x200000, 0x1000, u + 0x10000, 0, 72);
    iotlb("UPDATE perm 7", 2, 0, VHOST_IOTLB_UPDATE, 0x300000, 0x1000, u + 0x20000, 7, 72);
    iotlb("INVALIDATE 1 byte", 2, 0, VHOST_IOTLB_INVALIDATE, 0x100000, 1, 0, 0, 72);
    iotlb("INVALIDATE size 0 inside", 2, 0, VHOST_IOTLB_INVALIDATE, 0x300800, 0, 0, 0, 72);
    iotlb("UPDATE where it was", 2, 0, VHOST_IOTLB_UPDATE, 0x300000, 0x1000, u + 0x20000, 3, 72);
    iotlb("INVALIDATE size 0 at 0", 2, 0, VHOST_IOTLB_INVALIDATE, 0, 0, 0, 0, 72);
    iotlb("UPDATE where perm 0 was", 2, 0, VHOST_IOTLB_UPDATE, 0x200000, 0x1000, u + 0x10000, 1, 72);
    iotlb("BATCH_BEGIN", 2, 0, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72);
    iotlb("UPDATE in batch", 2, 0, VHOST_IOTLB_UPDATE, 0x400000, 0x1000, u + 0x30000, 3, 72);
    iotlb("BATCH_END", 2, 0, VHOST_IOTLB_BATCH_END, 0, 0, 0, 0, 72);
    iotlb("UPDATE v1", 1, 0, VHOST_IOTLB_UPDATE, 0x500000, 0x1000, u + 0x40000, 3, 72);
    iotlb("UPDATE 40 bytes", 2, 0, VHOST_IOTLB_UPDATE, 0x600000, 0x1000, u + 0x50000, 3, 40);
    iotlb("UPDATE 39 bytes", 2, 0, VHOST_IOTLB_UPDATE, 0x700000, 0x1000, u + 0x60000, 3, 39);
    iotlb("outer type 3", 3, 0, VHOST_IOTLB_UPDATE, 0x700000, 0x1000, u + 0x60000, 3, 72);
    iotlb("MISS", 2, 0, VHOST_IOTLB_MISS, 0x700000, 0x1000, u, 3, 72);
    iotlb("UPDATE asid 1 unacked", 2, 1, VHOST_IOTLB_UPDATE, 0x800000, 0x1000, u + 0x70000, 3, 72);
    iotlb("UPDATE size 0", 2, 0, VHOST_IOTLB_UPDATE, 0x900000, 0, u, 3, 72);

    /* E. DRIVER_OK, changes while running, suspend, reset. */
    status("SET_STATUS 0xf", 0xf);
    vring_state("SET_VRING_BASE while running", VHOST_SET_VRING_BASE, 0, 7, 0);
    vring_addr("SET_VRING_ADDR while running", 0x11000, 0);
    IOCTL("SUSPEND", VHOST_VDPA_SUSPEND, NULL);
    IOCTL("RESUME", VHOST_VDPA_RESUME, NULL);
    vring_state("GET_VRING_BASE while running", VHOST_GET_VRING_BASE, 0, 0, 1);
    status("SET_STATUS 0x7", 0x7);
    status("SET_STATUS 0", 0);
    { uint8_t s = 0xff; errno = 0; long r = ioctl(fd, VHOST_VDPA_GET_STATUS, &s); char b[8]; snprintf(b, sizeof b, "0x%x", s); line("GET_STATUS after reset", r, r == 0 ? b : NULL); }
    vring_state("GET_VRING_BASE after reset", VHOST_GET_VRING_BASE, 0, 0, 1);
    { errno = 0; void *p = mmap(NULL, 4096, PROT_WRITE, MAP_SHARED, fd, 0); line("mmap doorbell", p == MAP_FAILED ? -1 : 0, NULL); }

    /* F. The rest of vhost's own checks, owner set, after the reset: the memory table (vhost_set_memory's
     *    order), the vring class past nvqs and its unknown commands (R43, R44), the error eventfd, config
     *    ranges (R47), features after FEATURES_OK (R54), backend bits (R29), ASIDs past nas (R6), batches. */
    mem_table("SET_MEM_TABLE padding and 65 regions", 65, 1, 0, 0x1000, u);
    mem_table("SET_MEM_TABLE 65 regions", 65, 0, 0, 0x1000, u);
    mem_table("SET_MEM_TABLE 0 regions", 0, 0, 0, 0, 0);
    mem_table("SET_MEM_TABLE region size 0", 1, 0, 0x1000, 0, u);
    mem_table("SET_MEM_TABLE region wraps", 1, 0, 0xfffffffffffff000ULL, 0x2000, u);
    mem_table("SET_MEM_TABLE 2 regions", 2, 0, 0, 0x1000, u);
    IOCTL("RESET_OWNER after owner", VHOST_RESET_OWNER, NULL);
    vring_state("unknown 0x99 vq 0", _IO(VHOST_VIRTIO, 0x99), 0, 0, 0);
    vring_state("unknown 0x99 vq 5", _IO(VHOST_VIRTIO, 0x99), 5, 0, 0);
    vring_state("SET_VRING_ENDIAN", _IOW(VHOST_VIRTIO, 0x13, struct vhost_vring_state), 0, 0, 0);
    vring_state("GET_VRING_ENDIAN", _IOW(VHOST_VIRTIO, 0x14, struct vhost_vring_state), 0, 0, 1);
    vring_state("SET_VRING_BUSYLOOP_TIMEOUT 50", VHOST_SET_VRING_BUSYLOOP_TIMEOUT, 0, 50, 0);
    vring_state("GET_VRING_BUSYLOOP_TIMEOUT", VHOST_GET_VRING_BUSYLOOP_TIMEOUT, 0, 0, 1);
    vring_file("SET_VRING_ERR eventfd", VHOST_SET_VRING_ERR, call);
    vring_file("SET_VRING_ERR pipe", VHOST_SET_VRING_ERR, pipes[0]);
    vring_file("SET_VRING_ERR closed fd", VHOST_SET_VRING_ERR, 1000);
    vring_file("SET_VRING_ERR -1", VHOST_SET_VRING_ERR, -1);
    vring_state("SET_VRING_NUM vq 1", VHOST_SET_VRING_NUM, 1, 16, 0);
    vring_state("SET_VRING_ENABLE vq 1", VHOST_VDPA_SET_VRING_ENABLE, 1, 1, 0);
    vring_state("GET_VRING_BASE vq 1", VHOST_GET_VRING_BASE, 1, 0, 1);
    vq_file("SET_VRING_KICK vq 1", VHOST_SET_VRING_KICK, 1, kick);
    vring_areas("SET_VRING_ADDR used 2-aligned", 0x10000, 0x11000, 0x12002, 0, 0);
    vring_areas("SET_VRING_ADDR log 2-aligned", 0x10000, 0x11000, 0x12000, 0x2, 0);
    vring_areas("SET_VRING_ADDR desc odd", 0x10001, 0x11000, 0x12000, 0, 0);
    vring_file("SET_VRING_CALL -1", VHOST_SET_VRING_CALL, -1);
    { int f = pipes[0]; IOCTL("SET_CONFIG_CALL pipe", VHOST_VDPA_SET_CONFIG_CALL, &f); }
    { int f = 1000; IOCTL("SET_CONFIG_CALL closed fd", VHOST_VDPA_SET_CONFIG_CALL, &f); }
    { int f = -1; IOCTL("SET_CONFIG_CALL -1", VHOST_VDPA_SET_CONFIG_CALL, &f); }
    config("GET_CONFIG len 200", 0, 200);
    set_config("SET_CONFIG len 0", 0, 0);
    set_config("SET_CONFIG off 200", 200, 1);
    set_config("SET_CONFIG len 200", 0, 200);
    u64 = (1ULL << 32) | (1ULL << 33);
    IOCTL("SET_FEATURES after reset", VHOST_SET_FEATURES, &u64);
    status("SET_STATUS 0x3 after reset", 0x3);
    status("SET_STATUS 0xb after reset", 0xb);
    IOCTL("SET_FEATURES after FEATURES_OK", VHOST_SET_FEATURES, &u64);
    status("SET_STATUS 0 again", 0);
    u64 = 0x86;
    IOCTL("SET_BACKEND_FEATURES DESC_ASID without IOTLB_ASID", VHOST_SET_BACKEND_FEATURES, &u64);
    u64 = 0xe;
    IOCTL("SET_BACKEND_FEATURES MSG_V2|BATCH|IOTLB_ASID", VHOST_SET_BACKEND_FEATURES, &u64);
    vring_state("SET_GROUP_ASID 0 1", VHOST_VDPA_SET_GROUP_ASID, 0, 1, 0);
    iotlb("UPDATE asid 1", 2, 1, VHOST_IOTLB_UPDATE, 0xa00000, 0x1000, u + 0x80000, 3, 72);
    iotlb("INVALIDATE asid 1", 2, 1, VHOST_IOTLB_INVALIDATE, 0xa00000, 0x1000, 0, 0, 72);
    iotlb("BATCH_BEGIN asid 1", 2, 1, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72);
    iotlb("UPDATE asid 0 acked", 2, 0, VHOST_IOTLB_UPDATE, 0xa00000, 0x1000, u + 0x80000, 3, 72);
    iotlb("BATCH_END without BEGIN", 2, 0, VHOST_IOTLB_BATCH_END, 0, 0, 0, 0, 72);
    iotlb("BATCH_BEGIN asid 0", 2, 0, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72);
    iotlb("BATCH_BEGIN again", 2, 0, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72);
    iotlb("UPDATE asid 1 in a batch of 0", 2, 1, VHOST_IOTLB_UPDATE, 0xb00000, 0x1000, u + 0x90000, 3, 72);
    iotlb("UPDATE in the batch", 2, 0, VHOST_IOTLB_UPDATE, 0xb00000, 0x1000, u + 0x90000, 3, 72);
    iotlb("BATCH_END asid 0", 2, 0, VHOST_IOTLB_BATCH_END, 0, 0, 0, 0, 72);
    iotlb("UPDATE wraps", 2, 0, VHOST_IOTLB_UPDATE, 0xfffffffffffff000ULL, 0x2000, u + 0xa0000, 3, 72);
    iotlb("UPDATE last page", 2, 0, VHOST_IOTLB_UPDATE, 0xfffffffffffff000ULL, 0x1000, u + 0xa0000, 3, 72);
    iotlb("IOTLB type 9", 2, 0, 9, 0xc00000, 0x1000, u, 3, 72);
    iotlb("INVALIDATE everything", 2, 0, VHOST_IOTLB_INVALIDATE, 0, 0xffffffffffffffffULL, 0, 0, 72);
    iotlb("UPDATE where everything was", 2, 0, VHOST_IOTLB_UPDATE, 0x100000, 0x10000, u, 3, 72);
    iotlb("UPDATE over the last page", 2, 0, VHOST_IOTLB_UPDATE, 0xfffffffffffff000ULL, 0x1000, u + 0xa0000, 3, 72);
    iotlb("UPDATE adjacent", 2, 0, VHOST_IOTLB_UPDATE, 0x110000, 0x1000, u + 0x10000, 3, 72);
    iotlb("UPDATE identical", 2, 0, VHOST_IOTLB_UPDATE, 0x110000, 0x1000, u + 0x10000, 3, 72);
    iotlb("UPDATE last byte shared", 2, 0, VHOST_IOTLB_UPDATE, 0x10f000, 0x1001, u + 0x20000, 3, 72);
    iotlb("INVALIDATE half an entry", 2, 0, VHOST_IOTLB_INVALIDATE, 0x100000, 0x8000, 0, 0, 72);
    iotlb("UPDATE in its other half", 2, 0, VHOST_IOTLB_UPDATE, 0x108000, 0x1000, u + 0x8000, 3, 72);
    iotlb("INVALIDATE whose end wraps", 2, 0, VHOST_IOTLB_INVALIDATE, 0x200000, 0xffffffffffffffffULL, 0, 0, 72);
    iotlb("UPDATE where the wrap left it", 2, 0, VHOST_IOTLB_UPDATE, 0x110000, 0x1000, u + 0x10000, 3, 72);
    iotlb("UPDATE unaligned", 2, 0, VHOST_IOTLB_UPDATE, 0x300001, 0x1001, u + 0x30001, 3, 72);
    u64 = 0;
    IOCTL("SET_BACKEND_FEATURES 0", VHOST_SET_BACKEND_FEATURES, &u64);
    iotlb("UPDATE v2 with nothing acked", 2, 1, VHOST_IOTLB_UPDATE, 0x400000, 0x1000, u + 0x40000, 3, 72);
    iotlb("BATCH_BEGIN with nothing acked", 2, 0, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0, 0, 72);
    iotlb("BATCH_END with nothing acked", 2, 0, VHOST_IOTLB_BATCH_END, 0, 0, 0, 0, 72);
    u64 = 0x46;
    IOCTL("SET_BACKEND_FEATURES ENABLE_AFTER_DRIVER_OK", VHOST_SET_BACKEND_FEATURES, &u64);
    vring_state("SET_VRING_NUM 32768", VHOST_SET_VRING_NUM, 0, 32768, 0);
    vring_state("SET_VRING_NUM 65535", VHOST_SET_VRING_NUM, 0, 65535, 0);
    vring_state("SET_VRING_ENABLE 2", VHOST_VDPA_SET_VRING_ENABLE, 0, 2, 0);
    vring_state("SET_VRING_ENABLE 0", VHOST_VDPA_SET_VRING_ENABLE, 0, 0, 0);
    status("SET_STATUS 0x80", 0x80);
    { uint8_t s = 0; errno = 0; long r = ioctl(fd, VHOST_VDPA_GET_STATUS, &s); char b[8]; snprintf(b, sizeof b, "0x%x", s); line("GET_STATUS after 0x80", r, r == 0 ? b : NULL); }
    status("SET_STATUS 0x1 clearing FAILED", 0x1);
    status("SET_STATUS 0x81", 0x81);
    status("SET_STATUS 0x81 again", 0x81);
    status("SET_STATUS 0 after FAILED", 0);
    u64 = 1ULL << 32;
    IOCTL("SET_FEATURES without ACCESS_PLATFORM", VHOST_SET_FEATURES, &u64);
    u64 = (1ULL << 32) | (1ULL << 33) | (1ULL << 0);
    IOCTL("SET_FEATURES a bit not offered", VHOST_SET_FEATURES, &u64);
    IOCTL_U64("GET_FEATURES after SET_FEATURES", VHOST_GET_FEATURES);

    /* G. Arguments the kernel cannot read or write: NULL, an address nothing is mapped at, a read-only page,
     *    a structure whose variable part runs into a page nothing may touch.  copy_from_user / copy_to_user fault
     *    (EFAULT) where the command touches them, and only there (SET_LOG_BASE reads nothing). */
    void *volatile bad = (void *)16, *volatile nowhere = NULL;  /* volatile: the compiler must not judge the calls */
    /* A page, then one nothing may touch (PROT_NONE, so no later mapping lands there). */
    uint8_t *pages = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED || mprotect(pages + 4096, 4096, PROT_NONE))
        return 1;
    uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ro == MAP_FAILED)
        return 1;
    IOCTL("GET_FEATURES NULL", VHOST_GET_FEATURES, NULL);
    IOCTL("GET_FEATURES unmapped", VHOST_GET_FEATURES, bad);
    IOCTL("GET_FEATURES read-only", VHOST_GET_FEATURES, ro);
    IOCTL("SET_FEATURES unmapped", VHOST_SET_FEATURES, bad);
    IOCTL("GET_BACKEND_FEATURES read-only", VHOST_GET_BACKEND_FEATURES, ro);
    IOCTL("SET_BACKEND_FEATURES unmapped", VHOST_SET_BACKEND_FEATURES, bad);
    IOCTL("GET_DEVICE_ID read-only", VHOST_VDPA_GET_DEVICE_ID, ro);
    IOCTL("GET_STATUS read-only", VHOST_VDPA_GET_STATUS, ro);
    IOCTL("SET_STATUS unmapped", VHOST_VDPA_SET_STATUS, bad);
    IOCTL("GET_VRING_NUM read-only", VHOST_VDPA_GET_VRING_NUM, ro);
    IOCTL("GET_CONFIG_SIZE unmapped", VHOST_VDPA_GET_CONFIG_SIZE, bad);
    IOCTL("GET_VQS_COUNT read-only", VHOST_VDPA_GET_VQS_COUNT, ro);
    IOCTL("GET_GROUP_NUM unmapped", VHOST_VDPA_GET_GROUP_NUM, bad);
    IOCTL("GET_AS_NUM read-only", VHOST_VDPA_GET_AS_NUM, ro);
    IOCTL("GET_IOVA_RANGE read-only", VHOST_VDPA_GET_IOVA_RANGE, ro);
    IOCTL("SET_CONFIG_CALL unmapped", VHOST_VDPA_SET_CONFIG_CALL, bad);
    IOCTL("SET_LOG_BASE NULL", VHOST_SET_LOG_BASE, NULL);
    IOCTL("SET_MEM_TABLE unmapped", VHOST_SET_MEM_TABLE, bad);
    {
        struct vhost_memory *m = (void *)(pages + 4096 - sizeof(struct vhost_memory));
        m->nregions = 1;
        m->padding = 0;
        IOCTL("SET_MEM_TABLE regions unmapped", VHOST_SET_MEM_TABLE, m);
    }
    IOCTL("GET_CONFIG unmapped", VHOST_VDPA_GET_CONFIG, bad);
    IOCTL("GET_CONFIG read-only", VHOST_VDPA_GET_CONFIG, ro);
    {
        struct vhost_vdpa_config *c = (void *)(pages + 4096 - sizeof(struct vhost_vdpa_config));
        c->off = 0;
        c->len = 8;
        IOCTL("GET_CONFIG buf unmapped", VHOST_VDPA_GET_CONFIG, c);
        IOCTL("SET_CONFIG buf unmapped", VHOST_VDPA_SET_CONFIG, c);
        c->len = 0;
        IOCTL("GET_CONFIG len 0 buf unmapped", VHOST_VDPA_GET_CONFIG, c);
    }
    IOCTL("SET_VRING_NUM unmapped", VHOST_SET_VRING_NUM, bad);
    IOCTL("GET_VRING_BASE read-only", VHOST_GET_VRING_BASE, ro);
    IOCTL("SET_VRING_ADDR unmapped", VHOST_SET_VRING_ADDR, bad);
    {
        struct vhost_vring_addr *a = (void *)(pages + 4096 - 8);  /* index and flags readable, the rest not */
        a->index = 0;
        a->flags = 0;
        IOCTL("SET_VRING_ADDR half unmapped", VHOST_SET_VRING_ADDR, a);
    }
    IOCTL("SET_VRING_KICK unmapped", VHOST_SET_VRING_KICK, bad);
    IOCTL("RESET_OWNER unmapped", VHOST_RESET_OWNER, bad);
    IOCTL("SET_VRING_BUSYLOOP_TIMEOUT read-only", VHOST_SET_VRING_BUSYLOOP_TIMEOUT, ro);
    IOCTL("GET_VRING_BUSYLOOP_TIMEOUT read-only", VHOST_GET_VRING_BUSYLOOP_TIMEOUT, ro);
    CALL("write NULL", write(fd, nowhere, 72));
    CALL("write unmapped", write(fd, bad, 72));
    {
        uint8_t *m = pages + 4096 - 8;  /* type and asid readable, the body not */
        uint32_t v2 = 2;
        memcpy(m, &v2, 4);
        memset(m + 4, 0, 4);
        CALL("write body unmapped", write(fd, m, 72));
    }

    /* H. Another process and another descriptor on the same file (R42): a forked child shares the file but not
     *    the owner's mm — what needs no owner answers, the rest is EPERM (EFAULT for an IOTLB write), and
     *    SET_OWNER EBUSY; a dup is the same file, owner included; then commands of other types than vhost's,
     *    and O_NONBLOCK on the file.  The child's lines count in the parent's steps (it sends its last step back
     *    through a pipe). */
    int steps[2];
    if (pipe(steps))
        return 1;
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        IOCTL_U32("child: GET_DEVICE_ID", VHOST_VDPA_GET_DEVICE_ID);
        { uint8_t s = 0xff; errno = 0; long r = ioctl(fd, VHOST_VDPA_GET_STATUS, &s); char b[8]; snprintf(b, sizeof b, "0x%x", s); line("child: GET_STATUS", r, r == 0 ? b : NULL); }
        IOCTL("child: GET_FEATURES", VHOST_GET_FEATURES, &u64);  /* the value is the parent's offer */
        vring_state("child: GET_VRING_BASE", VHOST_GET_VRING_BASE, 0, 0, 1);
        vring_state("child: SET_VRING_NUM", VHOST_SET_VRING_NUM, 0, 64, 0);
        mem_table("child: SET_MEM_TABLE", 0, 0, 0, 0, 0);
        IOCTL("child: SET_OWNER", VHOST_SET_OWNER, NULL);
        iotlb("child: UPDATE", 2, 0, VHOST_IOTLB_UPDATE, 0xd00000, 0x1000, u, 3, 72);
        fflush(stdout);
        _exit(write(steps[1], &step, sizeof(step)) == sizeof(step) ? 0 : 1);
    }
    if (child < 0 || waitpid(child, NULL, 0) != child || read(steps[0], &step, sizeof(step)) != sizeof(step))
        return 1;
    vring_state("GET_VRING_BASE after the child", VHOST_GET_VRING_BASE, 0, 0, 1);
    iotlb("UPDATE where the child tried", 2, 0, VHOST_IOTLB_UPDATE, 0xd00000, 0x1000, u, 3, 72);
    int twin = dup(fd), original = fd;
    fd = twin;
    vring_state("dup: GET_VRING_BASE", VHOST_GET_VRING_BASE, 0, 0, 1);
    iotlb("dup: INVALIDATE", 2, 0, VHOST_IOTLB_INVALIDATE, 0xd00000, 0x1000, 0, 0, 72);
    IOCTL("dup: SET_OWNER", VHOST_SET_OWNER, NULL);
    close(original);
    vring_state("dup after closing the original: GET_VRING_BASE", VHOST_GET_VRING_BASE, 0, 0, 1);
    /* Commands of other types reach vhost-vdpa as its unknown ones do (the VFS takes FIONBIO itself). */
    { int on = 0; IOCTL("FIONBIO 0", FIONBIO, &on); }
    { int on = 1; IOCTL("FIOASYNC 1", FIOASYNC, &on); }
    { int on = 0; IOCTL("FIOASYNC 0", FIOASYNC, &on); }
    vring_state("TCGETS vq 0", TCGETS, 0, 0, 0);
    vring_state("TCGETS vq 9", TCGETS, 9, 0, 0);
    IOCTL("FIONREAD NULL", FIONREAD, NULL);
    /* O_NONBLOCK on the file changes only read() (IOTLB messages vhost-vdpa never sends): every call goes on. */
    { errno = 0; int flags = fcntl(fd, F_GETFL); line("F_SETFL O_NONBLOCK", fcntl(fd, F_SETFL, flags | O_NONBLOCK), NULL); }
    vring_state("non-blocking: GET_VRING_BASE", VHOST_GET_VRING_BASE, 0, 0, 1);
    iotlb("non-blocking: UPDATE", 2, 0, VHOST_IOTLB_UPDATE, 0xd00000, 0x1000, u, 3, 72);
    iotlb("non-blocking: INVALIDATE", 2, 0, VHOST_IOTLB_INVALIDATE, 0xd00000, 0x1000, 0, 0, 72);

    /* I. One open file at a time (vhost_vdpa_open: EBUSY), and what a new one finds after the last close
     *    (release: reset, tables gone, owner gone). */
    { errno = 0; int other = open(argc > 1 ? argv[1] : "/dev/vhost-vdpa-0", O_RDWR | O_CLOEXEC); line("open while open", other < 0 ? -1 : 0, NULL); if (other >= 0) close(other); }
    close(fd);
    fd = open(argc > 1 ? argv[1] : "/dev/vhost-vdpa-0", O_RDWR | O_CLOEXEC);
    line("open after close", fd < 0 ? -1 : 0, NULL);
    if (fd < 0)
        return 1;
    { uint8_t s = 0xff; errno = 0; long r = ioctl(fd, VHOST_VDPA_GET_STATUS, &s); char b[8]; snprintf(b, sizeof b, "0x%x", s); line("GET_STATUS after reopen", r, r == 0 ? b : NULL); }
    vring_state("GET_VRING_BASE after reopen, no owner", VHOST_GET_VRING_BASE, 0, 0, 1);
    IOCTL("SET_OWNER after reopen", VHOST_SET_OWNER, NULL);
    vring_state("GET_VRING_BASE after reopen", VHOST_GET_VRING_BASE, 0, 0, 1);
    iotlb("UPDATE where the last file mapped", 2, 0, VHOST_IOTLB_UPDATE, 0x110000, 0x1000, u + 0x10000, 3, 72);
    iotlb("UPDATE asid 1 after reopen", 2, 1, VHOST_IOTLB_UPDATE, 0xe00000, 0x1000, u, 3, 72);
    /* A forked child that still holds the file keeps it open after the parent's last close: the device is
     *    not released (a second open EBUSY) until the child is gone. */
    int go[2];
    if (pipe(go))
        return 1;
    fflush(stdout);
    pid_t holder = fork();
    if (holder == 0) {
        char c;
        _exit(read(go[0], &c, 1) == 1 ? 0 : 1);  /* holds the inherited fd until told to go */
    }
    if (holder < 0)
        return 1;
    close(fd);
    { errno = 0; int other = open(argc > 1 ? argv[1] : "/dev/vhost-vdpa-0", O_RDWR | O_CLOEXEC); line("open while a child holds the closed file", other < 0 ? -1 : 0, NULL); if (other >= 0) close(other); }
    if (write(go[1], "x", 1) != 1 || waitpid(holder, NULL, 0) != holder)
        return 1;
    fd = open(argc > 1 ? argv[1] : "/dev/vhost-vdpa-0", O_RDWR | O_CLOEXEC);
    line("open once the child is gone", fd < 0 ? -1 : 0, NULL);
    if (fd < 0)
        return 1;
    /* The access mode is the VFS's: a file opened read-only takes every ioctl, and no write (EBADF). */
    close(fd);
    fd = open(argc > 1 ? argv[1] : "/dev/vhost-vdpa-0", O_RDONLY | O_CLOEXEC);
    line("open read-only", fd < 0 ? -1 : 0, NULL);
    if (fd < 0)
        return 1;
    IOCTL("read-only: SET_OWNER", VHOST_SET_OWNER, NULL);
    vring_state("read-only: GET_VRING_BASE", VHOST_GET_VRING_BASE, 0, 0, 1);
    iotlb("read-only: UPDATE", 2, 0, VHOST_IOTLB_UPDATE, 0xe00000, 0x1000, u, 3, 72);

    /* J. The file's other calls, which the VFS answers from vhost-vdpa's file operations: write_iter and no
     *    read, poll or llseek — reads fail by the access mode (EBADF) or for want of a read (EINVAL); writev and
     *    pwrite carry an IOTLB message as write does, gathered across the pieces; poll finds the file always
     *    ready; epoll cannot watch it. */
    char rbuf[8];
    struct iovec riov = { rbuf, sizeof(rbuf) };
    CALL("read-only: read", read(fd, rbuf, sizeof(rbuf)));
    status_flags("read-only: F_GETFL");
    const char *path = argc > 1 ? argv[1] : "/dev/vhost-vdpa-0";
    if (reopen(path, "open write-only", O_WRONLY, 1) < 0)
        return 1;
    CALL("write-only: read", read(fd, rbuf, sizeof(rbuf)));
    status_flags("write-only: F_GETFL");
    iotlb("write-only: UPDATE", 2, 0, VHOST_IOTLB_UPDATE, 0xe00000, 0x1000, u, 3, 72);
    if (reopen(path, "open with access mode 3", O_ACCMODE, 1) < 0)
        return 1;
    CALL("access mode 3: read", read(fd, rbuf, sizeof(rbuf)));
    status_flags("access mode 3: F_GETFL");
    iotlb("access mode 3: UPDATE", 2, 0, VHOST_IOTLB_UPDATE, 0xe00000, 0x1000, u, 3, 72);
    vring_state("access mode 3: GET_VRING_BASE", VHOST_GET_VRING_BASE, 0, 0, 1);
    if (reopen(path, "open read-write", O_RDWR, 1) < 0)
        return 1;
    /* The file's status flags: what open() left (the access mode, O_LARGEFILE on 64-bit) and what F_SETFL may
     * change (O_APPEND, O_NONBLOCK, O_NOATIME, O_ASYNC; O_DIRECT only where the file can do direct I/O). */
    status_flags("F_GETFL");
    CALL("F_SETFL O_APPEND|O_NOATIME", fcntl(fd, F_SETFL, O_APPEND | O_NOATIME));
    status_flags("F_GETFL after O_APPEND|O_NOATIME");
    CALL("F_SETFL O_DIRECT", fcntl(fd, F_SETFL, O_DIRECT));
    status_flags("F_GETFL after O_DIRECT");
    CALL("F_SETFL O_ASYNC", fcntl(fd, F_SETFL, O_ASYNC));
    status_flags("F_GETFL after O_ASYNC");
    CALL("F_SETFL 0", fcntl(fd, F_SETFL, 0));
    status_flags("F_GETFL after 0");
    iotlb("UPDATE after the status flags", 2, 0, VHOST_IOTLB_UPDATE, 0xe00000, 0x1000, u, 3, 72);
    CALL("read", read(fd, rbuf, sizeof(rbuf)));
    CALL("read 0 bytes", read(fd, rbuf, 0));
    CALL("read NULL", read(fd, nowhere, 8));
    CALL("pread", pread(fd, rbuf, sizeof(rbuf), 0));
    CALL("pread at -1", pread(fd, rbuf, sizeof(rbuf), -1));
    CALL("readv", readv(fd, &riov, 1));
    CALL("preadv", preadv(fd, &riov, 1, 0));
    CALL("write 0 bytes", write(fd, rbuf, 0));
    CALL("write a kernel address", write(fd, (void *)0xffff888000000000ULL, 72));
    {
        struct vhost_msg_v2 m = message(VHOST_IOTLB_UPDATE, 0xf00000, u);
        struct vhost_msg_v2 inval = message(VHOST_IOTLB_INVALIDATE, 0xf00000, 0);
        writev_pieces("writev UPDATE in two pieces", &m, (size_t[]){ 8 }, 1, -1, NULL);
        writev_pieces("writev INVALIDATE in four pieces", &inval, (size_t[]){ 2, 4, 30 }, 3, -1, NULL);
        writev_pieces("writev UPDATE with its asid unmapped", &m, (size_t[]){ 4, 8 }, 2, 1, bad);
        writev_pieces("writev INVALIDATE with its body unmapped", &inval, (size_t[]){ 8 }, 1, 1, bad);
        writev_pieces("writev INVALIDATE with its type unmapped", &inval, (size_t[]){ 4 }, 1, 0, bad);
        writev_pieces("writev INVALIDATE past its end unmapped", &inval, (size_t[]){ 40 }, 1, 1, bad);
        struct iovec two[2] = { { &inval, 40 }, { (uint8_t *)&inval + 40, 0 } };
        CALL("writev 40 bytes", writev(fd, two, 1));
        two[0].iov_len = 4;
        two[1].iov_len = 4;
        CALL("writev 8 bytes", writev(fd, two, 2));
        CALL("writev no pieces", writev(fd, two, 0));
        struct iovec empty[2] = { { &inval, 0 }, { bad, 0 } };
        CALL("writev empty pieces", writev(fd, empty, 2));
        errno = 0;
        static struct iovec many[1025];  /* UIO_MAXIOV is 1024 */
        for (int k = 0; k < 1025; k++) many[k] = (struct iovec){ &inval, k == 0 ? sizeof(inval) : 0 };
        line("writev 1025 pieces", (long)writev(fd, many, 1025), NULL);
        CALL("writev pieces unmapped", writev(fd, bad, 1));
        struct iovec negative = { &inval, (size_t)-1 };
        CALL("writev a negative length", writev(fd, &negative, 1));
        CALL("pwrite UPDATE at 4096", pwrite(fd, &m, sizeof(m), 4096));
        CALL("pwrite INVALIDATE at 0", pwrite(fd, &inval, sizeof(inval), 0));
        CALL("pwrite at -1", pwrite(fd, &inval, sizeof(inval), -1));
        struct iovec whole = { &m, sizeof(m) };
        CALL("pwritev UPDATE", pwritev(fd, &whole, 1, 0));
        whole.iov_base = &inval;
        CALL("pwritev INVALIDATE", pwritev(fd, &whole, 1, 8));
        /* The v2 calls: an offset of -1 is the file's position, their flags are judged once there is something
         * to write (kiocb_set_rw_flags), before the message is read. */
        CALL("preadv2 at -1", preadv2(fd, &riov, 1, -1, 0));
        whole.iov_base = &m;
        CALL("pwritev2 UPDATE at -1", pwritev2(fd, &whole, 1, -1, 0));
        whole.iov_base = &inval;
        CALL("pwritev2 INVALIDATE HIPRI|DSYNC|SYNC|APPEND", pwritev2(fd, &whole, 1, 0, 0x17));
        CALL("pwritev2 NOWAIT", pwritev2(fd, &whole, 1, 0, 0x8));
        CALL("pwritev2 APPEND|NOAPPEND", pwritev2(fd, &whole, 1, 0, 0x30));
        CALL("pwritev2 ATOMIC", pwritev2(fd, &whole, 1, 0, 0x40));
        CALL("pwritev2 a flag unknown", pwritev2(fd, &whole, 1, 0, 0x80));
        CALL("pwritev2 no pieces NOWAIT", pwritev2(fd, &whole, 0, 0, 0x8));
        CALL("pwritev2 at -2", pwritev2(fd, &whole, 1, -2, 0));
    }
    CALL("lseek SEEK_SET", lseek(fd, 0, SEEK_SET));
    CALL("lseek SEEK_CUR", lseek(fd, 0, SEEK_CUR));
    poll_line("poll IN|OUT", POLLIN | POLLOUT);
    poll_line("poll PRI|RDNORM|WRNORM|RDHUP", POLLPRI | POLLRDNORM | POLLWRNORM | POLLRDHUP);
    poll_line("poll nothing", 0);
    {
        struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = pipes[0], .events = POLLIN } };
        struct timespec no_wait = { 0, 0 };
        errno = 0;
        long r = ppoll(p, 2, &no_wait, NULL);
        char b[32];
        snprintf(b, sizeof b, "0x%x,0x%x", (unsigned)p[0].revents, (unsigned)p[1].revents);
        line("ppoll the file and an empty pipe", r, r >= 0 ? b : NULL);
    }
    {
        fd_set rd, wr;
        FD_ZERO(&rd);
        FD_ZERO(&wr);
        FD_SET(fd, &rd);
        FD_SET(fd, &wr);
        struct timeval no_wait = { 0, 0 };
        errno = 0;
        long r = select(fd + 1, &rd, &wr, NULL, &no_wait);
        char b[16];
        snprintf(b, sizeof b, "%d,%d", FD_ISSET(fd, &rd) ? 1 : 0, FD_ISSET(fd, &wr) ? 1 : 0);
        line("select read and write", r, r >= 0 ? b : NULL);
    }
    /* Longer arrays: the file twice among 100 entries, and select over 101 descriptors with a dup at 100. */
    {
        struct pollfd p[100];
        for (int k = 0; k < 100; k++) p[k] = (struct pollfd){ .fd = -1 };
        p[3] = (struct pollfd){ .fd = fd, .events = POLLOUT };
        p[97] = (struct pollfd){ .fd = fd, .events = POLLIN | POLLPRI };
        errno = 0;
        long r = poll(p, 100, 0);
        char b[32];
        snprintf(b, sizeof b, "0x%x,0x%x", (unsigned)p[3].revents, (unsigned)p[97].revents);
        line("poll 100 entries, the file twice", r, r >= 0 ? b : NULL);
        int high = dup2(fd, 100);
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(fd, &rd);
        FD_SET(100, &rd);
        struct timeval no_wait = { 0, 0 };
        errno = 0;
        r = high == 100 ? select(101, &rd, NULL, NULL, &no_wait) : -1;
        snprintf(b, sizeof b, "%d,%d", FD_ISSET(fd, &rd) ? 1 : 0, FD_ISSET(100, &rd) ? 1 : 0);
        line("select 101 descriptors, the file and its dup at 100", r, r >= 0 ? b : NULL);
        close(100);
    }
    /* Waiting: the file asked for nothing (or for exceptions only) never wakes a poll or a select, which wait
     * for the pipe a child writes a moment later. */
    {
        int later[2];
        if (pipe(later))
            return 1;
        fflush(stdout);
        pid_t writer = fork();
        if (writer == 0) {
            usleep(50000);
            _exit(write(later[1], "x", 1) == 1 ? 0 : 1);
        }
        struct pollfd p[2] = { { .fd = fd, .events = 0 }, { .fd = later[0], .events = POLLIN } };
        errno = 0;
        long r = poll(p, 2, 5000);
        char b[32];
        snprintf(b, sizeof b, "0x%x,0x%x", (unsigned)p[0].revents, (unsigned)p[1].revents);
        line("poll the file for nothing and a pipe written later", r, r >= 0 ? b : NULL);
        char c;
        if (waitpid(writer, NULL, 0) != writer || read(later[0], &c, 1) != 1)
            return 1;
        writer = fork();
        if (writer == 0) {
            usleep(50000);
            _exit(write(later[1], "x", 1) == 1 ? 0 : 1);
        }
        fd_set rd, ex;
        FD_ZERO(&rd);
        FD_ZERO(&ex);
        FD_SET(later[0], &rd);
        FD_SET(fd, &ex);
        struct timeval wait = { 5, 0 };
        errno = 0;
        r = select((fd > later[0] ? fd : later[0]) + 1, &rd, NULL, &ex, &wait);
        snprintf(b, sizeof b, "%d,%d", FD_ISSET(later[0], &rd) ? 1 : 0, FD_ISSET(fd, &ex) ? 1 : 0);
        line("select the file for exceptions and a pipe written later", r, r >= 0 ? b : NULL);
        if (waitpid(writer, NULL, 0) != writer)
            return 1;
        close(later[0]);
        close(later[1]);
    }
    {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN };
        CALL("epoll_ctl ADD", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
        CALL("epoll_ctl DEL", epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL));
        close(ep);
    }
    {
        struct stat st;
        struct statx sx;
        STAT("fstat", fstat(fd, &st), st.st_mode, minor(st.st_rdev));
        STAT("fstatat AT_EMPTY_PATH", fstatat(fd, "", &st, AT_EMPTY_PATH), st.st_mode, minor(st.st_rdev));
        STAT("statx AT_EMPTY_PATH", statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_MODE, &sx), sx.stx_mode, sx.stx_rdev_minor);
    }
    /* Socket calls: the file is no socket (ENOTSOCK), whatever the call; none reaches a connection. */
    {
        char one = 'x';
        struct iovec iov = { &one, 1 };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
        struct mmsghdr mm = { .msg_hdr = msg };
        struct sockaddr_un addr = { .sun_family = AF_UNIX, .sun_path = "/nowhere" };
        socklen_t len = sizeof(addr);
        int type = 0;
        socklen_t tlen = sizeof(type);
        CALL("send", send(fd, &one, 1, MSG_DONTWAIT));
        CALL("recv", recv(fd, &one, 1, MSG_DONTWAIT));
        CALL("sendto", sendto(fd, &one, 1, MSG_DONTWAIT, NULL, 0));
        CALL("recvfrom", recvfrom(fd, &one, 1, MSG_DONTWAIT, NULL, NULL));
        CALL("sendmsg", sendmsg(fd, &msg, MSG_DONTWAIT));
        CALL("recvmsg", recvmsg(fd, &msg, MSG_DONTWAIT));
        CALL("sendmmsg", sendmmsg(fd, &mm, 1, MSG_DONTWAIT));
        CALL("recvmmsg", recvmmsg(fd, &mm, 1, MSG_DONTWAIT, NULL));
        CALL("getsockopt SO_TYPE", getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen));
        CALL("setsockopt SO_RCVBUF", setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &type, sizeof(type)));
        CALL("getsockname", getsockname(fd, (struct sockaddr *)&addr, &len));
        CALL("getpeername", getpeername(fd, (struct sockaddr *)&addr, &len));
        CALL("bind", bind(fd, (struct sockaddr *)&addr, sizeof(addr)));
        CALL("connect", connect(fd, (struct sockaddr *)&addr, sizeof(addr)));
        CALL("listen", listen(fd, 1));
        CALL("accept4", accept4(fd, NULL, NULL, SOCK_NONBLOCK));
        CALL("shutdown", shutdown(fd, SHUT_RDWR));
    }
    iotlb("UPDATE after the socket calls", 2, 0, VHOST_IOTLB_UPDATE, 0xe10000, 0x1000, u, 3, 72);
    /* The device's path: a node as devtmpfs makes it. */
    {
        struct stat st;
        struct statx sx;
        STAT("stat the path", stat(path, &st), st.st_mode, minor(st.st_rdev));
        STAT("lstat the path", lstat(path, &st), st.st_mode, minor(st.st_rdev));
        STAT("fstatat the path", fstatat(AT_FDCWD, path, &st, 0), st.st_mode, minor(st.st_rdev));
        STAT("statx the path", statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &sx), sx.stx_mode, sx.stx_rdev_minor);
        CALL("stat the path into NULL", stat(path, (struct stat *)nowhere));
        CALL("access R_OK|W_OK", access(path, R_OK | W_OK));
        CALL("access X_OK", access(path, X_OK));
        CALL("faccessat F_OK", faccessat(AT_FDCWD, path, F_OK, 0));
        char link[64], target[80] = "";
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        errno = 0;
        long r = readlink(link, target, sizeof(target) - 1);
        line("readlink /proc/self/fd/N", r, r >= 0 ? target : NULL);
        memset(target, 0, sizeof(target));
        errno = 0;
        r = readlink(link, target, 4);
        line("readlink /proc/self/fd/N into 4 bytes", r, r >= 0 ? target : NULL);
    }
    printf("end\n");
    return 0;
}
