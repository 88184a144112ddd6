/* memory.c — the VMM's shared file mappings (docs/datapath.md "Shared guest memory").
 *
 * Every MAP_SHARED mapping of a regular file the VMM makes (QEMU's memory-backend-memfd,share=on and
 * memory-backend-file,share=on) is noted with a duplicate of its descriptor.  The first IOTLB update that
 * points into one shares it with vdpad (`share_memory`, the descriptor with SCM_RIGHTS), once per region
 * and session, so vdpad reaches those buffers by one offset instead of a system call.  Before the VMM
 * unmaps or remaps any part of a region (munmap, mremap, mmap MAP_FIXED over it), every session it was
 * shared with is told (`unshare_memory`) and the region is forgotten: vdpad never writes where the VMM no
 * longer looks.  VDPAD_VHOST_SHARE=0 turns sharing off (the data path then copies with process_vm_readv). */
#include "vdpad_vhost.h"

#include <sys/stat.h>

struct region {
    uint64_t start, size, offset;
    uint64_t id;  /* a session remembers the ids it was given, so an unmap knows whom to tell */
    int fd;       /* our duplicate: the VMM may close its own */
};

static pthread_mutex_t regions_lock = PTHREAD_MUTEX_INITIALIZER;
static struct region *regions;
static size_t region_count, region_cap;
static uint64_t next_id = 1;

static int sharing_enabled(void)
{
    const char *v = getenv("VDPAD_VHOST_SHARE");
    return !(v && strcmp(v, "0") == 0);
}

/* Removes the regions that meet [start, start+len) from the table, into `gone` (the caller frees it). */
static size_t take_overlapping(uint64_t start, uint64_t len, struct region **gone)
{
    uint64_t end = len > UINT64_MAX - start ? UINT64_MAX : start + len;
    size_t n = 0, kept = 0;
    *gone = NULL;
    pthread_mutex_lock(&regions_lock);
    for (size_t k = 0; k < region_count; k++) {
        struct region r = regions[k];
        if (r.start < end && start < r.start + r.size) {
            struct region *grown = realloc(*gone, sizeof(**gone) * (n + 1));
            if (grown) {
                *gone = grown;
                (*gone)[n++] = r;
                continue;
            }
        }
        regions[kept++] = r;
    }
    region_count = kept;
    pthread_mutex_unlock(&regions_lock);
    return n;
}

/* Tells every session that had `r` that it is gone. */
static void unshare_everywhere(struct session *s, void *context)
{
    const struct region *r = context;
    int had = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t k = 0; k < s->shared_count; k++)
        if (s->shared_ids[k] == r->id) {
            s->shared_ids[k] = s->shared_ids[--s->shared_count];
            had = 1;
            break;
        }
    pthread_mutex_unlock(&s->lock);
    if (had)
        simple(s, "unshare_memory", "\"addr\":%llu,\"size\":%llu", (unsigned long long)r->start, (unsigned long long)r->size);
}

HIDDEN void forget_mappings(void *addr, size_t len)
{
    struct region *gone;
    size_t n = take_overlapping((uint64_t)(uintptr_t)addr, len, &gone);
    for (size_t k = 0; k < n; k++) {
        for_each_session(unshare_everywhere, &gone[k]);
        real_close(gone[k].fd);
    }
    free(gone);
}

HIDDEN void note_mapping(void *addr, size_t len, int flags, int fd, off_t off)
{
    struct stat st;
    if (addr == MAP_FAILED || fd < 0 || !(flags & MAP_SHARED) || len == 0 || !sharing_enabled())
        return;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    int copy = real_fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return;
    pthread_mutex_lock(&regions_lock);
    if (region_count == region_cap) {
        size_t cap = region_cap ? region_cap * 2 : 16;
        struct region *grown = realloc(regions, sizeof(*regions) * cap);
        if (!grown) {
            pthread_mutex_unlock(&regions_lock);
            real_close(copy);
            return;
        }
        regions = grown;
        region_cap = cap;
    }
    regions[region_count++] = (struct region){ (uint64_t)(uintptr_t)addr, len, (uint64_t)off, next_id++, copy };
    pthread_mutex_unlock(&regions_lock);
}

static int session_has(struct session *s, uint64_t id)
{
    for (size_t k = 0; k < s->shared_count; k++)
        if (s->shared_ids[k] == id)
            return 1;
    return 0;
}

/* Called with s->lock not held, before an IOTLB update of [uaddr, uaddr+size): shares each region that
 * meets it and this session has not been given yet.  A refusal is logged once and the update goes on (the
 * data path then reaches those addresses through process_vm_readv, as for private memory). */
HIDDEN void share_covering(struct session *s, uint64_t uaddr, uint64_t size)
{
    uint64_t end = size > UINT64_MAX - uaddr ? UINT64_MAX : uaddr + size;
    for (;;) {
        struct region r;
        int found = 0;
        pthread_mutex_lock(&regions_lock);
        pthread_mutex_lock(&s->lock);
        for (size_t k = 0; k < region_count && !found; k++) {
            r = regions[k];
            if (r.start < end && uaddr < r.start + r.size && !session_has(s, r.id)) {
                found = 1;
                r.fd = real_fcntl(r.fd, F_DUPFD_CLOEXEC, 0);  /* ours for the call: an unmap meanwhile closes the table's */
                /* Noted before the call, so an unmap racing it tells vdpad to drop it. */
                uint64_t *grown = realloc(s->shared_ids, sizeof(*grown) * (s->shared_count + 1));
                if (grown) {
                    s->shared_ids = grown;
                    s->shared_ids[s->shared_count++] = r.id;
                }
            }
        }
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&regions_lock);
        if (!found)
            return;
        if (r.fd < 0)
            continue;
        int err;
        json_object *reply = call(s, "share_memory", r.fd, &err, "\"addr\":%llu,\"size\":%llu,\"offset\":%llu",
                                  (unsigned long long)r.start, (unsigned long long)r.size, (unsigned long long)r.offset);
        real_close(r.fd);
        if (reply)
            json_object_put(reply);
        else
            say("vdpad did not take the shared memory at %#llx (+%llu bytes): %s; its buffers are copied with process_vm_readv",
                (unsigned long long)r.start, (unsigned long long)r.size, strerror(err));
    }
}
