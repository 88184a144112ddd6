/* frames.c — runs inside a test guest (static, no libc beyond the kernel's ABI needs): sends frames with
 * sequence numbers and checksums on a NIC through an AF_PACKET socket and checks what comes back.
 *
 *   frames IFACE N    N frames to the NIC's own MAC (sizes 60…1514), N/10 to broadcast, N/10 to a foreign MAC;
 *                     each is sent and then waited for (up to 2 s; 300 ms for a foreign one, which must not come)
 *   frames IFACE loop frames to its own MAC until killed, each waited for (a live migration's traffic): every
 *                     second a line "VDPAD-LOOP n=SENT back=INTACT lost=L bad=B gap_ms=G mem=ok|BAD" — G the
 *                     longest wait for a frame so far, mem whether 16 MiB written at the start still hold their
 *                     pattern (the guest's memory survived whatever moved it)
 *
 * One line on stdout, for the host's test to parse:
 *   VDPAD-FRAMES own=R/S intact=I broadcast=R/S foreign=R/S sent=T received=U
 * and exit status 0 when every frame to its own MAC and to broadcast came back intact and no foreign one did.
 * The EtherType is 0x88B5 (local experimental): the guest's own stack ignores the frames. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETHERTYPE_TEST 0x88B5
#define MAGIC 0x56445041u /* "VDPA" */

/* FNV-1a over the payload after the checksum field. */
static uint32_t checksum(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t k = 0; k < n; k++)
        h = (h ^ p[k]) * 16777619u;
    return h;
}

/* dst, src, type, then {magic, seq, len, checksum} and a pattern of `len` bytes seeded by seq. */
static size_t build(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint32_t seq, uint32_t len)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = ETHERTYPE_TEST >> 8;
    f[13] = ETHERTYPE_TEST & 0xFF;
    uint8_t *payload = f + 14 + 16;
    for (uint32_t k = 0; k < len; k++)
        payload[k] = (uint8_t)(seq * 31 + k * 7 + (k >> 8));
    uint32_t header[4] = { htonl(MAGIC), htonl(seq), htonl(len), htonl(checksum(payload, len)) };
    memcpy(f + 14, header, 16);
    return 14 + 16 + len;
}

/* Whether `f` (n bytes) is frame `seq` intact: its header, its length, its checksum. */
static int intact(const uint8_t *f, size_t n, uint32_t seq)
{
    uint32_t header[4];
    if (n < 30)
        return 0;
    memcpy(header, f + 14, 16);
    uint32_t len = ntohl(header[2]);
    return ntohl(header[0]) == MAGIC && ntohl(header[1]) == seq && n >= 30 + len && ntohl(header[3]) == checksum(f + 30, len);
}

static int sock, ifindex;
static unsigned sent, received;

static void send_frame(const uint8_t *f, size_t n, const uint8_t *dst)
{
    struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE_TEST), .sll_ifindex = ifindex, .sll_halen = 6 };
    memcpy(to.sll_addr, dst, 6);
    if (sendto(sock, f, n, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)n)
        sent++;
    else
        printf("sendto: %s\n", strerror(errno));
}

/* Waits up to `ms` for frame `seq` to come back (frames the guest sent itself, PACKET_OUTGOING, are skipped);
 * returns 1 intact, -1 back but damaged, 0 not back. */
static int wait_frame(uint32_t seq, int ms)
{
    static uint8_t buf[2048];
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        int left = ms - (int)((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        struct pollfd p = { .fd = sock, .events = POLLIN };
        if (left <= 0 || poll(&p, 1, left) != 1)
            return 0;
        struct sockaddr_ll from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(sock, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n < 0 || from.sll_pkttype == PACKET_OUTGOING)
            continue;
        received++;
        uint32_t header[2];
        if (n >= 22) {
            memcpy(header, buf + 14, 8);
            if (ntohl(header[0]) == MAGIC && ntohl(header[1]) == seq)
                return intact(buf, (size_t)n, seq) ? 1 : -1;
        }
    }
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The loop mode: frames until killed, one progress line a second. */
static int loop(const uint8_t *mac)
{
    enum { MEM = 16 << 20 };
    uint8_t *mem = malloc(MEM);
    if (!mem)
        return 1;
    for (size_t k = 0; k < MEM; k++) mem[k] = (uint8_t)(k * 2654435761u >> 13);
    uint32_t sum = checksum(mem, MEM);
    static uint8_t frame[2048];
    unsigned n = 0, back = 0, lost = 0, bad = 0;
    double gap = 0, last_print = now_ms();
    for (uint32_t seq = 1;; seq++) {
        uint32_t len = 30 + (seq * 97) % 1000;
        double sent_at = now_ms();
        send_frame(frame, build(frame, mac, mac, seq, len), mac);
        n++;
        int r = wait_frame(seq, 2000);
        double waited = now_ms() - sent_at;
        if (waited > gap) gap = waited;
        back += r == 1;
        bad += r == -1;
        lost += r == 0;
        if (now_ms() - last_print >= 1000) {
            last_print = now_ms();
            printf("VDPAD-LOOP n=%u back=%u lost=%u bad=%u gap_ms=%.0f mem=%s\n", n, back, lost, bad, gap,
                   checksum(mem, MEM) == sum ? "ok" : "BAD");
            fflush(stdout);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: frames IFACE N\n");
        return 2;
    }
    unsigned n = (unsigned)atoi(argv[2]);  /* 0 for "loop" */
    sock = socket(AF_PACKET, SOCK_RAW, htons(ETHERTYPE_TEST));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
    if (sock < 0 || ioctl(sock, SIOCGIFINDEX, &ifr) != 0) {
        printf("VDPAD-FRAMES error=%s\n", strerror(errno));
        return 1;
    }
    ifindex = ifr.ifr_ifindex;
    if (ioctl(sock, SIOCGIFHWADDR, &ifr) != 0) {
        printf("VDPAD-FRAMES error=%s\n", strerror(errno));
        return 1;
    }
    /* The foreign MAC differs from any 02:… MAC at its first byte: vdpa_sim_net compares MACs with strncmp, so
     * 02:00:… would pass its filter as the device's own (kernel-rules D7, kept by vdpad). */
    uint8_t mac[6], broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, foreign[6] = { 0x06, 0x11, 0x22, 0x33, 0x44, 0x55 };
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    struct sockaddr_ll here = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE_TEST), .sll_ifindex = ifindex };
    if (bind(sock, (struct sockaddr *)&here, sizeof(here)) != 0) {
        printf("VDPAD-FRAMES error=bind %s\n", strerror(errno));
        return 1;
    }
    if (strcmp(argv[2], "loop") == 0)
        return loop(mac);
    static uint8_t frame[2048];
    unsigned own = 0, good = 0, bcast = 0, alien = 0, seq = 0;
    for (unsigned k = 0; k < n; k++, seq++) {
        uint32_t len = 30 + (k * 97) % (1514 - 60);  /* frames of 60…1514 bytes */
        send_frame(frame, build(frame, mac, mac, seq, len), mac);
        int r = wait_frame(seq, 2000);
        own += r != 0;
        good += r == 1;
    }
    for (unsigned k = 0; k < n / 10; k++, seq++) {
        send_frame(frame, build(frame, broadcast, mac, seq, 100), broadcast);
        bcast += wait_frame(seq, 2000) == 1;
    }
    for (unsigned k = 0; k < n / 10; k++, seq++) {
        send_frame(frame, build(frame, foreign, mac, seq, 100), foreign);
        alien += wait_frame(seq, 300) != 0;
    }
    printf("VDPAD-FRAMES own=%u/%u intact=%u broadcast=%u/%u foreign=%u/%u sent=%u received=%u\n", own, n, good, bcast, n / 10,
           alien, n / 10, sent, received);
    fflush(stdout);
    return own == n && good == n && bcast == n / 10 && alien == 0 ? 0 : 1;
}
