/* ioctl.c — the ioctl table and the IOTLB write() path: the kernel's structs in and out, each call
 * its JSON-RPC method, the kernel's errno back. */
#include "vdpad_vhost.h"

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

HIDDEN int vdpa_ioctl(struct session *s, unsigned long request, void *arg)
{
    struct vhost_vring_state *state = arg;
    int err;
    json_object *r;
    char vq[48];

    switch (request) {
    case VHOST_GET_FEATURES:
        if (!(r = call(s, "get_features", -1, &err, ""))) return fail(err);
        *(uint64_t *)arg = u64_of(r, "mask");
        json_object_put(r);
        return 0;
    case VHOST_SET_FEATURES:
        return simple(s, "set_features", "\"features\":%llu", (unsigned long long)*(uint64_t *)arg);
    case VHOST_SET_OWNER:
        /* open() claimed the device already; the kernel refuses a second SET_OWNER (R42, edge #77). */
        if (s->owner_set) return fail(EBUSY);
        s->owner_set = 1;
        return 0;
    case VHOST_SET_MEM_TABLE: {
        /* Validated and stored by vhost, never read by vhost-vdpa (R41); vhost_dev_ioctl's, so the owner's. */
        const struct vhost_memory *m = arg;
        if (!m) return fail(EFAULT);
        /* vhost_set_memory's order: padding, count (vhost's max_mem_regions, 64 by default), then each region
         * into an interval tree, which refuses one whose last byte wraps below its first (size 0 but at 0). */
        if (m->padding) return fail(EOPNOTSUPP);
        if (m->nregions > 64) return fail(E2BIG);
        for (uint32_t k = 0; k < m->nregions; k++) {
            uint64_t first = m->regions[k].guest_phys_addr, last = first + m->regions[k].memory_size - 1;
            if (last < first) return fail(EFAULT);
        }
        return 0;
    }
    case VHOST_SET_LOG_BASE:
    case VHOST_SET_LOG_FD:
        return fail(ENOTTY);
    case VHOST_GET_BACKEND_FEATURES:
        if (!(r = call(s, "get_backend_features", -1, &err, ""))) return fail(err);
        *(uint64_t *)arg = u64_of(member(r, "offered"), "mask");
        json_object_put(r);
        return 0;
    case VHOST_SET_BACKEND_FEATURES: {
        uint64_t features = *(uint64_t *)arg;
        if (!(r = call(s, "set_backend_features", -1, &err, "\"features\":%llu", (unsigned long long)features))) return fail(err);
        json_object_put(r);
        s->acked_backend = features;
        return 0;
    }
    case VHOST_VDPA_GET_DEVICE_ID: *(uint32_t *)arg = s->device_id; return 0;
    case VHOST_VDPA_GET_VRING_NUM: *(uint16_t *)arg = (uint16_t)s->vq_num_max; return 0;
    case VHOST_VDPA_GET_CONFIG_SIZE: *(uint32_t *)arg = s->config_size; return 0;
    case VHOST_VDPA_GET_VQS_COUNT: *(uint32_t *)arg = s->nvqs; return 0;
    case VHOST_VDPA_GET_GROUP_NUM: *(uint32_t *)arg = s->ngroups; return 0;
    case VHOST_VDPA_GET_AS_NUM: *(uint32_t *)arg = s->nas; return 0;
    case VHOST_VDPA_GET_IOVA_RANGE: {
        struct vhost_vdpa_iova_range *range = arg;
        range->first = s->iova_first;
        range->last = s->iova_last;
        return 0;
    }
    case VHOST_VDPA_GET_STATUS:
        if (!(r = call(s, "get_status", -1, &err, ""))) return fail(err);
        *(uint8_t *)arg = (uint8_t)u64_of(r, "status");
        json_object_put(r);
        return 0;
    case VHOST_VDPA_SET_STATUS:
        return simple(s, "set_status", "\"status\":%u", (unsigned)*(uint8_t *)arg);
    case VHOST_VDPA_GET_CONFIG:
    case VHOST_VDPA_SET_CONFIG: {
        struct vhost_vdpa_config *c = arg;
        /* R47: the header is read first (EFAULT); the range is the daemon's to judge (read_config answers
         * EINVAL as the kernel does), and buf is touched only for a range it accepted. */
        if (!c) return fail(EFAULT);
        if (!(r = call(s, "read_config", -1, &err, "\"offset\":%u,\"length\":%u", c->off, c->len))) return fail(err);
        if (request == VHOST_VDPA_SET_CONFIG) {
            json_object_put(r);
            char *hex = malloc(2 * (size_t)c->len + 1);
            if (!hex) return fail(ENOMEM);
            for (uint32_t k = 0; k < c->len; k++) snprintf(hex + 2 * k, 3, "%02x", c->buf[k]);
            int result = simple(s, "write_config", "\"offset\":%u,\"data\":\"%s\"", c->off, hex);
            free(hex);
            return result;
        }
        const char *data = json_object_get_string(member(r, "data"));
        for (uint32_t k = 0; data && k < c->len && data[2 * k] && data[2 * k + 1]; k++)
            c->buf[k] = (uint8_t)(hex_digit(data[2 * k]) << 4 | hex_digit(data[2 * k + 1]));
        json_object_put(r);
        return 0;
    }
    case VHOST_VDPA_SET_CONFIG_CALL:
        return pass_eventfd(s, "set_config_call", *(int *)arg, "");
    case VHOST_VDPA_SUSPEND: return simple(s, "suspend", "");
    case VHOST_VDPA_RESUME: return simple(s, "resume", "");
    default:
        break;
    }

    /* The vring class (R44): the index at offset 0, ENOBUFS past nvqs, then the command. */
    if (!state) return fail(EFAULT);
    if (state->index >= s->nvqs) return fail(ENOBUFS);
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
    case VHOST_SET_VRING_ADDR: {
        const struct vhost_vring_addr *a = arg;
        return simple(s, "set_vring", "%s,\"desc\":%llu,\"driver\":%llu,\"device_area\":%llu,\"flags\":%u,\"log\":%llu", vq,
               (unsigned long long)a->desc_user_addr, (unsigned long long)a->avail_user_addr,
               (unsigned long long)a->used_user_addr, a->flags, (unsigned long long)a->log_guest_addr);
    }
    case VHOST_VDPA_SET_VRING_ENABLE:
        return simple(s, "set_vring", "%s,\"ready\":%s", vq, state->num ? "true" : "false");
    case VHOST_SET_VRING_KICK:
    case VHOST_SET_VRING_CALL: {
        const struct vhost_vring_file *f = arg;
        return pass_eventfd(s, request == VHOST_SET_VRING_KICK ? "set_vring_kick" : "set_vring_call", f->fd, vq);
    }
    case VHOST_SET_VRING_ERR: {
        /* Stored by vhost and never signalled (R44), but taken as the kick is: EBADF, EINVAL for no eventfd. */
        int err = eventfd_error(((const struct vhost_vring_file *)arg)->fd);
        return err ? fail(err) : 0;
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


HIDDEN ssize_t iotlb_write(struct session *s, const void *buf, size_t count)
{
    const uint8_t *b = buf;
    uint32_t type, asid = 0;
    int err;
    json_object *r;
    /* R1: 4 bytes of outer type, then (v2) the asid honoured only with IOTLB_ASID acked, then 32 bytes. */
    if (count < 4) return fail(EINVAL);
    memcpy(&type, b, 4);
    if (type != VHOST_IOTLB_MSG && type != VHOST_IOTLB_MSG_V2) return fail(EINVAL);
    if (count < 8 + sizeof(struct vhost_iotlb_msg)) return fail(EINVAL);
    if (type == VHOST_IOTLB_MSG_V2 && (s->acked_backend & (1ULL << VHOST_BACKEND_F_IOTLB_ASID)))
        memcpy(&asid, b + 4, 4);
    struct vhost_iotlb_msg m;
    memcpy(&m, b + 8, sizeof(m));
    switch (m.type) {
    case VHOST_IOTLB_UPDATE:
    case VHOST_IOTLB_INVALIDATE:
        /* R2: an UPDATE of size 0 is refused before the handler, not squashed; an INVALIDATE of size 0 goes
         * on (vdpad's unmap removes what the kernel's does: the entry holding iova − 1 and iova, or all). */
        if (m.type == VHOST_IOTLB_UPDATE && m.size == 0) return fail(EINVAL);
        if (!s->owner_set) return fail(EFAULT);  /* R5: the handler's owner check (EPERM), squashed (R3) */
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
        if (!s->owner_set) return fail(EFAULT);  /* R5, R3 */
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
