/* ioctl.c — the ioctl table and the IOTLB write() path: the kernel's structs in and out, each call
 * its JSON-RPC method, the kernel's errno back. */
#include "vdpad_vhost.h"

#include <sys/uio.h>

/* ---- ioctl ---------------------------------------------------------------- */

HIDDEN int fail(int err)
{
    errno = err;
    return -1;
}

static int hex_digit(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* What eventfd_ctx_fdget answers for an fd the kernel keeps itself (SET_VRING_ERR): 0 for an eventfd or −1
 * (unbind), EBADF for no open file, EINVAL for a file of another kind — told by its /proc name, as vdpad tells
 * the eventfds it is passed; without /proc it cannot tell and accepts. */
static int eventfd_error(int fd)
{
    if (fd == -1) return 0;
    if (real_fcntl(fd, F_GETFD) < 0) return EBADF;
    char path[40], name[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, name, sizeof(name) - 1);
    if (n < 0) return 0;
    name[n] = 0;
    return strcmp(name, "anon_inode:[eventfd]") == 0 ? 0 : EINVAL;
}

/* SET_VRING_KICK / SET_VRING_CALL / SET_CONFIG_CALL: fd −1 unbinds; otherwise the fd travels with the request. */
static int pass_eventfd(struct session *s, const char *method, int fd, const char *vq_param)
{
    int err;
    json_object *r;
    if (fd == -1) {
        r = call(s, method, -1, &err, "%s%s\"unset\":true", vq_param, vq_param[0] ? "," : "");
    } else {
        if (real_fcntl(fd, F_GETFD) < 0)
            return fail(EBADF);  /* the kernel's fdget fails first */
        r = call(s, method, fd, &err, "%s", vq_param);
    }
    if (!r)
        return fail(err);
    json_object_put(r);
    return 0;
}

/* Whether the kernel wants the file's owner before `request` (R41): vhost-vdpa answers its own getters,
 * status, config, features, backend features, SET_CONFIG_CALL, SUSPEND and RESUME (and refuses the log
 * ioctls) without asking; everything else goes through vhost_dev_ioctl, which after SET_OWNER checks the
 * owner before it reads any argument — the vring class, SET_MEM_TABLE, RESET_OWNER, GET_VRING_SIZE and
 * every unknown command are EPERM until SET_OWNER. */
HIDDEN int needs_owner(unsigned long request)
{
    switch (request) {
    case VHOST_GET_FEATURES: case VHOST_SET_FEATURES: case VHOST_SET_OWNER: case VHOST_SET_LOG_BASE: case VHOST_SET_LOG_FD:
    case VHOST_GET_BACKEND_FEATURES: case VHOST_SET_BACKEND_FEATURES: case VHOST_VDPA_GET_DEVICE_ID:
    case VHOST_VDPA_GET_VRING_NUM: case VHOST_VDPA_GET_CONFIG_SIZE: case VHOST_VDPA_GET_VQS_COUNT:
    case VHOST_VDPA_GET_GROUP_NUM: case VHOST_VDPA_GET_AS_NUM: case VHOST_VDPA_GET_IOVA_RANGE: case VHOST_VDPA_GET_STATUS:
    case VHOST_VDPA_SET_STATUS: case VHOST_VDPA_GET_CONFIG: case VHOST_VDPA_SET_CONFIG: case VHOST_VDPA_SET_CONFIG_CALL:
    case VHOST_VDPA_SUSPEND: case VHOST_VDPA_RESUME:
        return 0;
    default:
        return 1;
    }
}

/* ---- the VMM's memory, as copy_from_user and copy_to_user reach it ------------------------------------ */

/* The kernel copies an ioctl's argument in and out with copy_from_user / copy_to_user, and a write's message
 * with copy_from_iter: an address it cannot read or write is an error (EFAULT, EINVAL for a write), never the
 * VMM's death.  process_vm_readv/writev on this very process answer the same way, so every argument passes
 * through them — one system call each way, beside the round trip to the daemon most commands make anyway.
 *
 * `read_vmm` reads [from, from+n) in pieces of the sizes given, as the kernel's successive copies would, and
 * answers how many bytes they got: process_vm_readv moves a piece whole or not at all and stops at the first
 * that faults, so one call tells which of the kernel's copies would have failed. */
static size_t read_vmm(void *to, const void *from, const size_t *sizes, int pieces)
{
    struct iovec remote[3];
    size_t n = 0;
    for (int k = 0; k < pieces; k++) {
        remote[k] = (struct iovec){ (uint8_t *)from + n, sizes[k] };
        n += sizes[k];
    }
    if (n == 0) return 0;
    struct iovec local = { to, n };
    ssize_t r = process_vm_readv(getpid(), &local, 1, remote, (unsigned long)pieces, 0);
    return r < 0 ? 0 : (size_t)r;
}

HIDDEN int copy_from_vmm(void *to, const void *from, size_t n)
{
    return n == 0 || read_vmm(to, from, &n, 1) == n ? 0 : EFAULT;
}

HIDDEN int copy_to_vmm(void *to, const void *from, size_t n)
{
    if (n == 0) return 0;
    struct iovec local = { (void *)from, n }, remote = { to, n };
    return process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)n ? 0 : EFAULT;
}

/* An ioctl's fixed-size argument, copied in and out of the VMM's memory around the command. */
union ioctl_arg {
    uint64_t u64;
    uint32_t u32;
    uint16_t u16;
    uint8_t u8;
    int fd;
    struct vhost_vring_state state;
    struct vhost_vring_addr addr;
    struct vhost_vring_file file;
    struct vhost_vdpa_iova_range range;
    struct vhost_vdpa_config config;
    struct vhost_memory memory;
};

/* The device's commands (vhost_vdpa_unlocked_ioctl and vhost_dev_ioctl; `argument_bytes` names them), on
 * `a`, the argument's bytes the kernel reads before it acts; `user` is the argument in the VMM, for a
 * variable part (config bytes, memory regions). */
static int device_ioctl(struct session *s, unsigned long request, union ioctl_arg *a, void *user)
{
    int err;
    json_object *r;
    switch (request) {
    case VHOST_GET_FEATURES:
        if (!(r = call(s, "get_features", -1, &err, ""))) return fail(err);
        a->u64 = u64_of(r, "mask");
        json_object_put(r);
        return 0;
    case VHOST_SET_FEATURES:
        return simple(s, "set_features", "\"features\":%llu", (unsigned long long)a->u64);
    case VHOST_SET_OWNER:
        /* open() claimed the device already; the kernel refuses a second SET_OWNER (R42, edge #77). */
        if (s->owner) return fail(EBUSY);
        s->owner = getpid();
        return 0;
    case VHOST_SET_MEM_TABLE: {
        /* Validated and stored by vhost, never read by vhost-vdpa (R41); vhost_dev_ioctl's, so the owner's.
         * vhost_set_memory's order: padding, count (vhost's max_mem_regions, 64 by default), the regions
         * copied in (EFAULT), then each put in an interval tree, which refuses one whose last byte wraps
         * below its first (size 0 but at 0). */
        if (a->memory.padding) return fail(EOPNOTSUPP);
        if (a->memory.nregions > 64) return fail(E2BIG);
        struct vhost_memory_region regions[64];
        size_t bytes = a->memory.nregions * sizeof(regions[0]);
        if (copy_from_vmm(regions, (uint8_t *)user + sizeof(struct vhost_memory), bytes)) return fail(EFAULT);
        for (uint32_t k = 0; k < a->memory.nregions; k++) {
            uint64_t first = regions[k].guest_phys_addr, last = first + regions[k].memory_size - 1;
            if (last < first) return fail(EFAULT);
        }
        return 0;
    }
    case VHOST_SET_LOG_BASE:
    case VHOST_SET_LOG_FD:
        return fail(ENOTTY);
    case VHOST_GET_BACKEND_FEATURES:
        if (!(r = call(s, "get_backend_features", -1, &err, ""))) return fail(err);
        a->u64 = u64_of(member(r, "offered"), "mask");
        json_object_put(r);
        return 0;
    case VHOST_SET_BACKEND_FEATURES:
        if (!(r = call(s, "set_backend_features", -1, &err, "\"features\":%llu", (unsigned long long)a->u64))) return fail(err);
        json_object_put(r);
        s->acked_backend = a->u64;
        return 0;
    case VHOST_VDPA_GET_DEVICE_ID: a->u32 = s->device_id; return 0;
    case VHOST_VDPA_GET_VRING_NUM: a->u16 = (uint16_t)s->vq_num_max; return 0;
    case VHOST_VDPA_GET_CONFIG_SIZE: a->u32 = s->config_size; return 0;
    case VHOST_VDPA_GET_VQS_COUNT: a->u32 = s->nvqs; return 0;
    case VHOST_VDPA_GET_GROUP_NUM: a->u32 = s->ngroups; return 0;
    case VHOST_VDPA_GET_AS_NUM: a->u32 = s->nas; return 0;
    case VHOST_VDPA_GET_IOVA_RANGE:
        a->range.first = s->iova_first;
        a->range.last = s->iova_last;
        return 0;
    case VHOST_VDPA_GET_STATUS:
        if (!(r = call(s, "get_status", -1, &err, ""))) return fail(err);
        a->u8 = (uint8_t)u64_of(r, "status");
        json_object_put(r);
        return 0;
    case VHOST_VDPA_SET_STATUS:
        return simple(s, "set_status", "\"status\":%u", (unsigned)a->u8);
    case VHOST_VDPA_GET_CONFIG:
    case VHOST_VDPA_SET_CONFIG: {
        /* R47: the header first (EFAULT), then the range, the daemon's to judge (read_config answers EINVAL
         * as the kernel does); the bytes are copied only for a range it accepted (EFAULT then). */
        uint32_t off = a->config.off, len = a->config.len;
        if (!(r = call(s, "read_config", -1, &err, "\"offset\":%u,\"length\":%u", off, len))) return fail(err);
        uint8_t *bytes = malloc(len ? len : 1);
        if (!bytes) {
            json_object_put(r);
            return fail(ENOMEM);
        }
        uint8_t *buf = (uint8_t *)user + sizeof(struct vhost_vdpa_config);
        int result = 0;
        if (request == VHOST_VDPA_SET_CONFIG) {
            json_object_put(r);
            char *hex = malloc(2 * (size_t)len + 1);
            if (!hex) result = fail(ENOMEM);
            else if (copy_from_vmm(bytes, buf, len)) result = fail(EFAULT);
            else {
                for (uint32_t k = 0; k < len; k++) snprintf(hex + 2 * k, 3, "%02x", bytes[k]);
                hex[2 * (size_t)len] = 0;
                result = simple(s, "write_config", "\"offset\":%u,\"data\":\"%s\"", off, hex);
            }
            free(hex);
        } else {
            const char *data = json_object_get_string(member(r, "data"));
            memset(bytes, 0, len);
            for (uint32_t k = 0; data && k < len && data[2 * k] && data[2 * k + 1]; k++)
                bytes[k] = (uint8_t)(hex_digit(data[2 * k]) << 4 | hex_digit(data[2 * k + 1]));
            json_object_put(r);
            if (copy_to_vmm(buf, bytes, len)) result = fail(EFAULT);
        }
        free(bytes);
        return result;
    }
    case VHOST_VDPA_SET_CONFIG_CALL:
        return pass_eventfd(s, "set_config_call", a->fd, "");
    case VHOST_VDPA_SUSPEND: return simple(s, "suspend", "");
    case VHOST_VDPA_RESUME: return simple(s, "resume", "");
    default:
        return fail(ENOTTY);  /* not reached: argument_bytes sends only the commands above */
    }
}

/* The vring class (vhost_vdpa_vring_ioctl, then vhost_vring_ioctl), on `a` read whole and its index checked. */
static int vring_ioctl(struct session *s, unsigned long request, union ioctl_arg *a)
{
    struct vhost_vring_state *state = &a->state;
    int err;
    json_object *r;
    char vq[48];
    snprintf(vq, sizeof(vq), "\"vq\":%u", state->index);
    switch (request) {
    case VHOST_SET_VRING_NUM:
        return simple(s, "set_vring", "%s,\"num\":%u", vq, state->num);
    case VHOST_SET_VRING_BASE:
        return simple(s, "set_vring", "%s,\"base\":%u", vq, state->num);
    case VHOST_GET_VRING_BASE:
        if (!(r = call(s, "get_vring", -1, &err, "%s", vq))) return fail(err);
        state->num = (uint32_t)u64_of(r, "base");
        json_object_put(r);
        return 0;
    case VHOST_SET_VRING_ADDR:
        return simple(s, "set_vring", "%s,\"desc\":%llu,\"driver\":%llu,\"device_area\":%llu,\"flags\":%u,\"log\":%llu", vq,
               (unsigned long long)a->addr.desc_user_addr, (unsigned long long)a->addr.avail_user_addr,
               (unsigned long long)a->addr.used_user_addr, a->addr.flags, (unsigned long long)a->addr.log_guest_addr);
    case VHOST_VDPA_SET_VRING_ENABLE:
        return simple(s, "set_vring", "%s,\"ready\":%s", vq, state->num ? "true" : "false");
    case VHOST_SET_VRING_KICK:
    case VHOST_SET_VRING_CALL:
        return pass_eventfd(s, request == VHOST_SET_VRING_KICK ? "set_vring_kick" : "set_vring_call", a->file.fd, vq);
    case VHOST_SET_VRING_ERR: {
        /* Stored by vhost and never signalled (R44), but taken as the kick is: EBADF, EINVAL for no eventfd. */
        int e = eventfd_error(a->file.fd);
        return e ? fail(e) : 0;
    }
    case VHOST_SET_VRING_BUSYLOOP_TIMEOUT:  /* stored by vhost, used by no vhost-vdpa path (R44) */
        if (s->busyloop) s->busyloop[state->index] = state->num;
        return 0;
    case VHOST_GET_VRING_BUSYLOOP_TIMEOUT:
        state->num = s->busyloop ? s->busyloop[state->index] : 0;
        return 0;
    case VHOST_VDPA_GET_VRING_GROUP:
    case VHOST_VDPA_GET_VRING_DESC_GROUP:
        if (!(r = call(s, request == VHOST_VDPA_GET_VRING_GROUP ? "get_vring_group" : "get_vring_desc_group", -1, &err, "%s", vq)))
            return fail(err);
        state->num = (uint32_t)u64_of(r, "group");
        json_object_put(r);
        return 0;
    case VHOST_VDPA_SET_GROUP_ASID:
        return simple(s, "set_group_asid", "\"group\":%u,\"asid\":%u", state->index, state->num);
    case VHOST_VDPA_GET_VRING_SIZE:
        /* The device's kernel version decides: ENOTTY on 6.7/6.8 (R43), the parent's answer from 6.9 (R46). */
        if (!(r = call(s, "get_vring_size", -1, &err, "%s", vq))) return fail(err);
        state->num = (uint32_t)u64_of(r, "size");
        json_object_put(r);
        return 0;
    default:
        /* RESET_OWNER, VRING_ENDIAN and every unknown command (R43). */
        return fail(ENOTTY);
    }
}

/* How many bytes of a command's argument the kernel reads before it acts (copy_from_user, get_user) and
 * writes when it is done (copy_to_user); 1 for the device's commands, 0 for the vring class, which every
 * command the device does not know joins (R43). */
static int argument_bytes(unsigned long request, size_t *in, size_t *out)
{
    *in = *out = 0;
    switch (request) {
    case VHOST_SET_OWNER: case VHOST_SET_LOG_BASE: case VHOST_SET_LOG_FD: case VHOST_VDPA_SUSPEND: case VHOST_VDPA_RESUME:
        return 1;
    case VHOST_GET_FEATURES: case VHOST_GET_BACKEND_FEATURES: *out = 8; return 1;
    case VHOST_SET_FEATURES: case VHOST_SET_BACKEND_FEATURES: *in = 8; return 1;
    case VHOST_VDPA_GET_DEVICE_ID: case VHOST_VDPA_GET_CONFIG_SIZE: case VHOST_VDPA_GET_VQS_COUNT:
    case VHOST_VDPA_GET_GROUP_NUM: case VHOST_VDPA_GET_AS_NUM: *out = 4; return 1;
    case VHOST_VDPA_GET_VRING_NUM: *out = 2; return 1;
    case VHOST_VDPA_GET_STATUS: *out = 1; return 1;
    case VHOST_VDPA_SET_STATUS: *in = 1; return 1;
    case VHOST_VDPA_GET_IOVA_RANGE: *out = sizeof(struct vhost_vdpa_iova_range); return 1;
    case VHOST_VDPA_SET_CONFIG_CALL: *in = sizeof(int); return 1;
    case VHOST_VDPA_GET_CONFIG: case VHOST_VDPA_SET_CONFIG: *in = sizeof(struct vhost_vdpa_config); return 1;
    case VHOST_SET_MEM_TABLE: *in = sizeof(struct vhost_memory); return 1;
    case VHOST_SET_VRING_ADDR: *in = sizeof(struct vhost_vring_addr); return 0;
    case VHOST_SET_VRING_NUM: case VHOST_SET_VRING_BASE: case VHOST_VDPA_SET_VRING_ENABLE: case VHOST_VDPA_SET_GROUP_ASID:
    case VHOST_SET_VRING_BUSYLOOP_TIMEOUT: *in = sizeof(struct vhost_vring_state); return 0;
    case VHOST_SET_VRING_KICK: case VHOST_SET_VRING_CALL: case VHOST_SET_VRING_ERR: *in = sizeof(struct vhost_vring_file); return 0;
    case VHOST_GET_VRING_BASE: case VHOST_VDPA_GET_VRING_GROUP: case VHOST_VDPA_GET_VRING_DESC_GROUP: case VHOST_VDPA_GET_VRING_SIZE:
    case VHOST_GET_VRING_BUSYLOOP_TIMEOUT: *out = sizeof(struct vhost_vring_state); return 0;
    default: return 0;
    }
}

/* Whether the calling process is the file's owner (vhost_dev_check_owner: the owner's mm is the caller's;
 * threads share it, a forked child has its own). */
HIDDEN int owns(const struct session *s)
{
    return s->owner != 0 && s->owner == getpid();
}

HIDDEN int vdpa_ioctl(struct session *s, unsigned long request, void *user)
{
    union ioctl_arg a;
    memset(&a, 0, sizeof(a));
    size_t in, out;
    int r;
    if (argument_bytes(request, &in, &out)) {
        if (copy_from_vmm(&a, user, in)) return fail(EFAULT);
        r = device_ioctl(s, request, &a, user);
    } else {
        /* The vring class (R44): the index at offset 0 read first (EFAULT), ENOBUFS past nvqs, then the
         * command, which reads the rest (EFAULT) — both pieces in one read. */
        size_t pieces[2] = { sizeof(uint32_t), in > sizeof(uint32_t) ? in - sizeof(uint32_t) : 0 };
        size_t got = read_vmm(&a, user, pieces, pieces[1] ? 2 : 1);
        if (got < pieces[0]) return fail(EFAULT);
        if (a.state.index >= s->nvqs) return fail(ENOBUFS);
        if (got < pieces[0] + pieces[1]) return fail(EFAULT);
        r = vring_ioctl(s, request, &a);
    }
    if (r == 0 && copy_to_vmm(user, &a, out)) return fail(EFAULT);
    return r;
}


/* Copies [at, at+n) of the bytes a write carries — the VMM's pieces `iov`, in order, as the kernel's iov_iter
 * walks them — into `to` with one process_vm_readv, and answers how many leading bytes it got (a piece that
 * cannot be read ends the copy, as copy_from_iter stops there).  n is at most a message's 40 bytes. */
static size_t gather(const struct iovec *iov, int count, size_t at, void *to, size_t n)
{
    struct iovec remote[40];
    int k = 0;
    size_t want = n;
    for (int i = 0; i < count && want > 0 && k < 40; i++) {
        size_t len = iov[i].iov_len;
        if (at >= len) {
            at -= len;
            continue;
        }
        size_t take = len - at < want ? len - at : want;
        remote[k++] = (struct iovec){ (uint8_t *)iov[i].iov_base + at, take };
        want -= take;
        at = 0;
    }
    if (k == 0) return 0;
    struct iovec local = { to, n - want };
    ssize_t r = process_vm_readv(getpid(), &local, 1, remote, (unsigned long)k, 0);
    return r < 0 ? 0 : (size_t)r;
}

HIDDEN ssize_t iotlb_write(struct session *s, const struct iovec *iov, int count, size_t total)
{
    uint32_t type, asid = 0;
    int err;
    json_object *r;
    /* R1: 4 bytes of outer type, then 4 the kernel reads as the asid (v2 with IOTLB_ASID acked) or steps over,
     * then the 32 of the message; each copied from the VMM as copy_from_iter does, so a part that is short or
     * cannot be read is EINVAL.  One copy takes the three; when it stopped in four the kernel steps over, the
     * body is copied on its own, so a piece there that cannot be read changes nothing, as in the kernel. */
    struct {
        uint32_t type, asid;
        struct vhost_iotlb_msg m;
    } head;
    size_t got = gather(iov, count, 0, &head, total < sizeof(head) ? total : sizeof(head));
    if (got < 4) return fail(EINVAL);
    type = head.type;
    if (type != VHOST_IOTLB_MSG && type != VHOST_IOTLB_MSG_V2) return fail(EINVAL);
    int honours_asid = type == VHOST_IOTLB_MSG_V2 && (s->acked_backend & (1ULL << VHOST_BACKEND_F_IOTLB_ASID));
    if (honours_asid && got < 8) return fail(EINVAL);
    if (honours_asid) asid = head.asid;
    size_t body = got >= 8 ? got - 8 : total <= 8 ? 0 : gather(iov, count, 8, &head.m, total - 8 < sizeof(head.m) ? total - 8 : sizeof(head.m));
    if (body < sizeof(head.m)) return fail(EINVAL);
    struct vhost_iotlb_msg m = head.m;
    switch (m.type) {
    case VHOST_IOTLB_UPDATE:
    case VHOST_IOTLB_INVALIDATE:
        /* R2: an UPDATE of size 0 is refused before the handler, not squashed; an INVALIDATE of size 0 goes
         * on (vdpad's unmap removes what the kernel's does: the entry holding iova − 1 and iova, or all). */
        if (m.type == VHOST_IOTLB_UPDATE && m.size == 0) return fail(EINVAL);
        if (!owns(s)) return fail(EFAULT);  /* R5: the handler's owner check (EPERM), squashed (R3) */
        if (m.type == VHOST_IOTLB_UPDATE) {
            share_covering(s, m.uaddr, m.size);
            r = call(s, "map", -1, &err, "\"asid\":%u,\"iova\":%llu,\"size\":%llu,\"addr\":%llu,\"perm\":%u", asid,
                     (unsigned long long)m.iova, (unsigned long long)m.size, (unsigned long long)m.uaddr, m.perm);
        } else {
            r = call(s, "unmap", -1, &err, "\"asid\":%u,\"iova\":%llu,\"size\":%llu", asid,
                     (unsigned long long)m.iova, (unsigned long long)m.size);
        }
        break;
    case VHOST_IOTLB_BATCH_BEGIN:
    case VHOST_IOTLB_BATCH_END:
        if (!owns(s)) return fail(EFAULT);  /* R5, R3 */
        r = call(s, m.type == VHOST_IOTLB_BATCH_BEGIN ? "batch_begin" : "batch_end", -1, &err, "\"asid\":%u", asid);
        break;
    default:
        return fail(EFAULT);  /* MISS, ACCESS_FAIL, unknown: EINVAL inside, EFAULT outside (R6, R10) */
    }
    if (!r)
        return fail(err == EIO ? EIO : EFAULT);  /* R3: every handler error is EFAULT to userspace */
    json_object_put(r);
    return (ssize_t)sizeof(struct vhost_msg_v2);  /* R1: always 72 on success */
}
