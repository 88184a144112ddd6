/* vduse_blk.c — a test-only VDUSE parent (issue 25): runs inside the 6.12 guest, creates a VDUSE
 * virtio-blk device with the shape of vdpa_sim_blk (one queue of 256, 128 MiB), adds it to the vdpa bus
 * with the vdpa netlink command VDPA_CMD_DEV_NEW for mgmtdev "vduse", so the kernel's vhost_vdpa binds it
 * and /dev/vhost-vdpa-0 appears, then answers the kernel's control requests (status, vq state, IOTLB
 * updates) until it is killed.  It serves no I/O: the differential test drives the control plane only.
 *
 *   vduse_blk NAME     prints "VDPAD-VDUSE ready NAME" once the vdpa device exists, then serves (forked) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/vdpa.h>
#include <linux/vduse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
    printf("VDPAD-VDUSE error %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

/* ---- generic netlink: resolve the "vdpa" family, then VDPA_CMD_DEV_NEW ----------------------------- */

struct message {
    struct nlmsghdr n;
    struct genlmsghdr g;
    char attrs[512];
};

static void put_attr(struct message *m, uint16_t type, const void *data, uint16_t len)
{
    struct nlattr *a = (struct nlattr *)((char *)m + NLMSG_ALIGN(m->n.nlmsg_len));
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    memcpy((char *)a + NLA_HDRLEN, data, len);
    m->n.nlmsg_len = NLMSG_ALIGN(m->n.nlmsg_len) + NLA_ALIGN(a->nla_len);
}

/* Sends `m` and returns the reply's first message in `reply` (an error message's code in *err). */
static int exchange(int sock, struct message *m, char *reply, size_t size, int *err)
{
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(sock, m, m->n.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -1;
    ssize_t n = recv(sock, reply, size, 0);
    if (n < (ssize_t)sizeof(struct nlmsghdr))
        return -1;
    struct nlmsghdr *h = (struct nlmsghdr *)reply;
    *err = h->nlmsg_type == NLMSG_ERROR ? ((struct nlmsgerr *)NLMSG_DATA(h))->error : 0;
    return 0;
}

static uint16_t vdpa_family(int sock)
{
    struct message m = { .n = { .nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN), .nlmsg_type = GENL_ID_CTRL, .nlmsg_flags = NLM_F_REQUEST },
                         .g = { .cmd = CTRL_CMD_GETFAMILY, .version = 1 } };
    put_attr(&m, CTRL_ATTR_FAMILY_NAME, VDPA_GENL_NAME, sizeof(VDPA_GENL_NAME));
    static char reply[8192];
    int err;
    if (exchange(sock, &m, reply, sizeof(reply), &err) < 0 || err) {
        errno = -err;
        die("CTRL_CMD_GETFAMILY vdpa");
    }
    struct nlmsghdr *h = (struct nlmsghdr *)reply;
    struct nlattr *a = (struct nlattr *)((char *)NLMSG_DATA(h) + GENL_HDRLEN);
    int left = (int)h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
    while (left >= NLA_HDRLEN) {
        if (a->nla_type == CTRL_ATTR_FAMILY_ID)
            return *(uint16_t *)((char *)a + NLA_HDRLEN);
        left -= NLA_ALIGN(a->nla_len);
        a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len));
    }
    errno = ENOENT;
    die("no vdpa family id");
    return 0;
}

static void add_vdpa_device(const char *name)
{
    int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    if (sock < 0)
        die("netlink socket");
    uint16_t family = vdpa_family(sock);
    struct message m = { .n = { .nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN), .nlmsg_type = family,
                                .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK },
                         .g = { .cmd = VDPA_CMD_DEV_NEW, .version = VDPA_GENL_VERSION } };
    put_attr(&m, VDPA_ATTR_MGMTDEV_DEV_NAME, "vduse", sizeof("vduse"));
    put_attr(&m, VDPA_ATTR_DEV_NAME, name, (uint16_t)(strlen(name) + 1));
    static char reply[4096];
    int err;
    if (exchange(sock, &m, reply, sizeof(reply), &err) < 0 || err) {
        errno = -err;
        die("VDPA_CMD_DEV_NEW");
    }
    close(sock);
}

/* ---- the VDUSE device ---------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "vduse-blk0";
    int control = open("/dev/vduse/control", O_RDWR | O_CLOEXEC);
    uint64_t api = VDUSE_API_VERSION;
    if (control < 0 || ioctl(control, VDUSE_SET_API_VERSION, &api))
        die("/dev/vduse/control");
    /* vdpa_sim_blk's shape: VERSION_1, ACCESS_PLATFORM, SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH; 128 MiB. */
    size_t config_size = 60;
    struct vduse_dev_config *c = calloc(1, sizeof(*c) + config_size);
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->device_id = 2;
    c->vendor_id = 0;
    c->features = (1ULL << 32) | (1ULL << 33) | (1ULL << 1) | (1ULL << 2) | (1ULL << 6) | (1ULL << 9);
    c->vq_num = 1;
    c->vq_align = 4096;
    c->config_size = (uint32_t)config_size;
    uint64_t capacity = 0x40000;
    uint32_t size_max = 4096, seg_max = 32, blk_size = 512;
    memcpy(c->config, &capacity, 8);
    memcpy(c->config + 8, &size_max, 4);
    memcpy(c->config + 12, &seg_max, 4);
    memcpy(c->config + 20, &blk_size, 4);
    if (ioctl(control, VDUSE_CREATE_DEV, c))
        die("VDUSE_CREATE_DEV");
    char path[300];
    snprintf(path, sizeof(path), "/dev/vduse/%s", name);
    int dev = -1;
    for (int k = 0; k < 100 && dev < 0; k++) {
        dev = open(path, O_RDWR | O_CLOEXEC);
        if (dev < 0)
            usleep(20000);
    }
    if (dev < 0)
        die(path);
    struct vduse_vq_config vq = { .index = 0, .max_size = 256 };
    if (ioctl(dev, VDUSE_VQ_SETUP, &vq))
        die("VDUSE_VQ_SETUP");
    add_vdpa_device(name);
    printf("VDPAD-VDUSE ready %s\n", name);
    fflush(stdout);
    if (fork() != 0)
        return 0;
    /* The kernel's control requests: every one is answered OK; a vq's state is what the driver last set. */
    for (;;) {
        struct vduse_dev_request req;
        struct vduse_dev_response resp;
        if (read(dev, &req, sizeof(req)) != (ssize_t)sizeof(req)) {
            if (errno == EINTR)
                continue;
            die("read request");
        }
        memset(&resp, 0, sizeof(resp));
        resp.request_id = req.request_id;
        resp.result = VDUSE_REQ_RESULT_OK;
        if (req.type == VDUSE_GET_VQ_STATE) {
            struct vduse_vq_info info = { .index = req.vq_state.index };
            if (ioctl(dev, VDUSE_VQ_GET_INFO, &info) == 0) {
                resp.vq_state.index = req.vq_state.index;
                resp.vq_state.split.avail_index = info.split.avail_index;
            }
        }
        if (write(dev, &resp, sizeof(resp)) != (ssize_t)sizeof(resp))
            die("write response");
    }
}
