/* blkcheck.c — runs inside a test guest (static): checks a block device end to end with O_DIRECT, so every
 * byte goes through the device and none through the guest's page cache.
 *
 *   blkcheck DEV    the size; patterns written at several offsets and sizes (the first and the last sector
 *                   among them) and read back; BLKDISCARD and BLKZEROOUT where the device offers them
 *
 * One line on stdout: VDPAD-BLK size=BYTES patterns=N/M discard=ok|unsupported|failed zeroout=ok|failed
 * and exit status 0 when everything held.  The patterns stay on the disk: the last one is at offset
 * 0x200000 (seed 7, 64 KiB), which the host's test reads from a backing file.
 *
 *   blkcheck DEV loop   until killed: 64 KiB patterns written and read back in turn over 64 slots from
 *                       0x1000000, every slot read again once a second; one line a second:
 *                       VDPAD-DISK n=WRITES bad=MISMATCHES gap_ms=LONGEST_WRITE_AND_READ (a daemon restart's
 *                       pause shows in gap_ms, a lost or torn write in bad). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static uint8_t *buffer, *readback;

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t k = 0; k < n; k++)
        p[k] = (uint8_t)(seed * 131 + k * 7 + (k >> 9));
}

/* Writes `n` bytes of pattern `seed` at `offset`, reads them back; 1 when intact. */
static int pattern(int fd, uint64_t offset, size_t n, unsigned seed)
{
    fill(buffer, n, seed);
    memset(readback, 0, n);
    if (pwrite(fd, buffer, n, (off_t)offset) != (ssize_t)n) {
        printf("pwrite %zu at %#llx: %s\n", n, (unsigned long long)offset, strerror(errno));
        return 0;
    }
    if (pread(fd, readback, n, (off_t)offset) != (ssize_t)n) {
        printf("pread %zu at %#llx: %s\n", n, (unsigned long long)offset, strerror(errno));
        return 0;
    }
    return memcmp(buffer, readback, n) == 0;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static _Noreturn void loop(int fd)
{
    enum { SLOTS = 64, SLOT = 65536 };
    const uint64_t base = 0x1000000;
    unsigned seeds[SLOTS] = { 0 }, n = 0, bad = 0;
    double gap = 0, last_print = now_ms();
    for (unsigned seq = 1;; seq++) {
        unsigned slot = seq % SLOTS;
        double started = now_ms();
        if (!pattern(fd, base + (uint64_t)slot * SLOT, SLOT, seq))
            bad++;
        seeds[slot] = seq;
        n++;
        if (now_ms() - started > gap)
            gap = now_ms() - started;
        if (now_ms() - last_print >= 1000) {
            for (unsigned k = 0; k < SLOTS; k++) {
                if (!seeds[k])
                    continue;
                fill(buffer, SLOT, seeds[k]);
                if (pread(fd, readback, SLOT, (off_t)(base + (uint64_t)k * SLOT)) != SLOT || memcmp(buffer, readback, SLOT) != 0)
                    bad++;
            }
            last_print = now_ms();
            printf("VDPAD-DISK n=%u bad=%u gap_ms=%.0f\n", n, bad, gap);
            fflush(stdout);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: blkcheck DEV\n");
        return 2;
    }
    int fd = open(argv[1], O_RDWR | O_DIRECT);
    uint64_t size = 0;
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) != 0) {
        printf("VDPAD-BLK error=%s\n", strerror(errno));
        return 1;
    }
    if (posix_memalign((void **)&buffer, 4096, 1 << 20) || posix_memalign((void **)&readback, 4096, 1 << 20))
        return 1;
    if (argc > 2 && strcmp(argv[2], "loop") == 0)
        loop(fd);
    struct { uint64_t offset; size_t n; } cases[] = {
        { 0, 512 }, { 4096, 4096 }, { 1 << 20, 1 << 20 }, { 0x3000000 + 512, 8192 }, { size - 512, 512 },
        { size - 65536, 65536 }, { 0x200000, 65536 },
    };
    unsigned total = sizeof(cases) / sizeof(cases[0]), good = 0;
    for (unsigned k = 0; k < total; k++)
        good += pattern(fd, cases[k].offset, cases[k].n, k + 1);

    /* DISCARD keeps vdpa_sim_blk's data: only that it is accepted is checked. */
    uint64_t range[2] = { 0x4000000, 1 << 20 };
    const char *discard = ioctl(fd, BLKDISCARD, range) == 0 ? "ok" : errno == EOPNOTSUPP ? "unsupported" : "failed";

    /* WRITE_ZEROES (or the kernel's fallback) over a pattern: zeroes read back. */
    const char *zeroout = "failed";
    uint64_t zrange[2] = { 0x5000000, 65536 };
    if (pattern(fd, zrange[0], zrange[1], 99) && ioctl(fd, BLKZEROOUT, zrange) == 0 &&
        pread(fd, readback, zrange[1], (off_t)zrange[0]) == (ssize_t)zrange[1]) {
        int zero = 1;
        for (size_t k = 0; k < zrange[1]; k++)
            zero &= readback[k] == 0;
        zeroout = zero ? "ok" : "failed";
    }
    printf("VDPAD-BLK size=%llu patterns=%u/%u discard=%s zeroout=%s\n", (unsigned long long)size, good, total, discard, zeroout);
    fflush(stdout);
    close(fd);
    return good == total && strcmp(discard, "failed") != 0 && strcmp(zeroout, "ok") == 0 ? 0 : 1;
}
